/* timeout.c: one libevent common-timeout queue per duration.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <pthread.h>
#include <stdlib.h>

#include "timeout.h"

/* libevent's own limit (MAX_COMMON_TIMEOUTS in event.c). */
#define MAX_QUEUES 256

typedef struct queue {
    unsigned ms;
    const struct timeval *tv; /* libevent's magic timeval for the queue */
} queue;

struct jsond_timeouts {
    struct event_base *base;
    unsigned n;
    int full; /* libevent refused one more: heap timers from now on */
    queue q[MAX_QUEUES];
};

jsond_timeouts *jsond_timeouts_new(struct event_base *base)
{
    jsond_timeouts *t = calloc(1, sizeof *t);
    if (t)
        t->base = base;
    return t;
}

void jsond_timeouts_free(jsond_timeouts *t)
{
    /* The queues belong to the base, which frees them with itself. */
    free(t);
}

/* The queue of `ms`, made on first use; NULL when there can be no more. A
 * config has a handful of durations: a linear scan beats hashing. */
static const struct timeval *queue_of(jsond_timeouts *t, unsigned ms)
{
    for (unsigned i = 0; i < t->n; i++)
        if (t->q[i].ms == ms)
            return t->q[i].tv;
    if (t->full || t->n == MAX_QUEUES)
        return NULL;
    struct timeval tv = jsond_timer_tv(ms);
    const struct timeval *common = event_base_init_common_timeout(t->base, &tv);
    if (!common) {
        t->full = 1; /* another user of the base took the rest */
        return NULL;
    }
    t->q[t->n].ms = ms;
    t->q[t->n].tv = common;
    t->n++;
    return common;
}

static pthread_once_t tick_once = PTHREAD_ONCE_INIT;
static long tick_us;

static void read_tick(void)
{
    struct timespec res;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0)
        tick_us = (long)res.tv_sec * 1000000 + (res.tv_nsec + 999) / 1000;
}

struct timeval jsond_timer_tv(unsigned ms)
{
    pthread_once(&tick_once, read_tick);
    long us = (long)(ms % 1000) * 1000 + tick_us;
    struct timeval tv = {(time_t)(ms / 1000 + (unsigned long)us / 1000000),
                         (suseconds_t)(us % 1000000)};
    return tv;
}

int jsond_timeouts_add(jsond_timeouts *t, struct event *ev, unsigned ms)
{
    const struct timeval *common = t ? queue_of(t, ms) : NULL;
    if (common)
        return event_add(ev, common);
    struct timeval tv = jsond_timer_tv(ms);
    return event_add(ev, &tv);
}

unsigned jsond_timeouts_count(const jsond_timeouts *t)
{
    return t ? t->n : 0;
}
