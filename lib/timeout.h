/* timeout.h: durations (milliseconds) as libevent timers, cheaply.
 *
 * A daemon arms the same few durations over and over (request_timeout,
 * idle_timeout, write_timeout, each route's timeout), once per request.
 * libevent's common timeouts keep one FIFO queue per duration, so arming
 * one is O(1) and never touches the heap or the kernel's timer: the
 * queue's head alone sits in the heap. libevent allows 256 of them per
 * event base and never frees them, so a jsond_timeouts hands out one per
 * distinct duration while that lasts, and a plain heap timer after.
 *
 * Loop thread only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_TIMEOUT_H
#define JSOND_TIMEOUT_H

#include <event2/event.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

/* Monotonic nanoseconds: what pools and streams measure waits with. Any
 * thread. */
static inline uint64_t jsond_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The same clock at the kernel's tick (a few ms), for a fraction of the
 * cost: for spans only compared with thresholds of milliseconds. Any
 * thread. */
static inline uint64_t jsond_coarse_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline struct timeval jsond_ms_tv(unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* A timer of `ms` as libevent should be given it so that it never fires
 * early: ms plus the coarse clock's tick. jsond's loop keeps libevent on
 * that clock (a precise one costs a timerfd_settime() per loop pass), and a
 * timer armed just before a tick could otherwise fire up to a tick short.
 * So timers fire from ms to ms + two ticks (8 ms here) after arming. Any
 * thread. */
struct timeval jsond_timer_tv(unsigned ms);

typedef struct jsond_timeouts jsond_timeouts;

/* The queues of `base`'s durations. NULL when out of memory. */
jsond_timeouts *jsond_timeouts_new(struct event_base *base);
void jsond_timeouts_free(jsond_timeouts *t);

/* (Re)arms the timer event `ev` of `t`'s base to fire in `ms` ms (ms > 0),
 * on the queue of that duration. `t` may be NULL: a heap timer then. A
 * duration computed per call (a remaining time) belongs in the heap: give
 * it to event_add() directly, or it would take a queue of its own.
 * Returns event_add()'s result. */
int jsond_timeouts_add(jsond_timeouts *t, struct event *ev, unsigned ms);

/* How many queues `t` has made (for tests). */
unsigned jsond_timeouts_count(const jsond_timeouts *t);

#endif /* JSOND_TIMEOUT_H */
