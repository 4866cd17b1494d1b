/* stream.c: a JSON array fed item by item (see stream.h), and the public
 * streaming API of jsond.h.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dump.h"
#include "output.h"
#include "req.h"
#include "stream.h"
#include "watch.h"

/* A producer that waits is woken at once for the first bytes, then at most
 * once per WAKE_GAP for more: a generator of small items would otherwise
 * cost the loop a wake-up and a socket write per item. The end, a failure
 * and room are never delayed. */
#define WAKE_GAP_NS 1000000
#define WAKE_GAP_US 1000

struct jsond_stream {
    char route[JSOND_NAME_MAX + 1];
    size_t high_water;
    unsigned wait_ms;
    jsond_inbox *inbox;
    struct event_base *base;

    pthread_mutex_t lock; /* guards the fields down to `wake` */
    pthread_cond_t room;  /* the loop took bytes, or the producer stopped */
    struct evbuffer *queue;
    int refs;          /* the handler's side, the producer, a posted wake */
    int ended;         /* the handler closed the array */
    int failed;        /* the handler gave up: the producer cuts the reply */
    int gone;          /* the producer stopped: nobody reads any more */
    int waiting;       /* the producer said WAIT: wake it on new bytes */
    int wake_posted;   /* `wake` is in the inbox */
    int wake_later;    /* and it is a paced one (WAKE_GAP) */
    int paced;         /* a paced wake waits for its timer: half a queue hurries it */
    uint64_t woken_ns; /* when the last wake was posted */
    jsond_inbox_item wake;

    /* The handler's thread only. */
    jsond_dumper item; /* an item being serialized, outside the lock */
    int started, handed, logged;
    uint64_t bytes;

    /* The loop thread only: the output to wake while the producer runs, and
     * the timer of a paced wake (holding a reference while armed). */
    jsond_output *out;
    struct event *pace;
    int pace_armed;
};

static void unref(jsond_stream *s)
{
    pthread_mutex_lock(&s->lock);
    int left = --s->refs;
    pthread_mutex_unlock(&s->lock);
    if (left)
        return;
    evbuffer_free(s->queue);
    if (s->item.spill)
        evbuffer_free(s->item.spill);
    pthread_cond_destroy(&s->room);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void pace_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_stream *s = arg;
    s->pace_armed = 0;
    pthread_mutex_lock(&s->lock);
    s->paced = 0;
    pthread_mutex_unlock(&s->lock);
    if (s->out)
        jsond_output_wake(s->out);
    unref(s);
}

static void pace_cb(evutil_socket_t fd, short what, void *arg)
{
    jsond_watch_frame f;
    jsond_watch_enter(&f, "stream pace", NULL);
    pace_run(fd, what, arg);
    jsond_watch_leave(&f);
}

/* On the loop: bytes came, the end, or a failure. A paced wake waits for
 * its timer, which takes over the reference; a failure fails the output
 * even if it is not asking (the connection closes). */
static void wake_cb(jsond_inbox_item *item)
{
    jsond_stream *s = (jsond_stream *)(void *)((char *)item - offsetof(jsond_stream, wake));
    pthread_mutex_lock(&s->lock);
    s->wake_posted = 0;
    int later = s->wake_later, failed = s->failed;
    s->paced = later && !failed && !s->pace_armed;
    pthread_mutex_unlock(&s->lock);
    if (s->out && failed) {
        jsond_output_abort(s->out);
    } else if (s->out && later && !s->pace_armed) {
        struct timeval tv = {0, WAKE_GAP_US};
        if (!s->pace)
            s->pace = evtimer_new(s->base, pace_cb, s);
        if (s->pace && evtimer_add(s->pace, &tv) == 0) {
            s->pace_armed = 1;
            return;
        }
        jsond_output_wake(s->out);
    } else if (s->out) {
        jsond_output_wake(s->out);
    }
    unref(s);
}

static void wake_drop(jsond_inbox_item *item)
{
    unref((jsond_stream *)(void *)((char *)item - offsetof(jsond_stream, wake)));
}

/* Under the lock, after the queue or the state changed. `urgent`: the end,
 * a failure; a failure is told even to a producer that is not waiting (its
 * output may be stuck on a reader that takes nothing, and would never ask).
 * Half a queue is urgent too: the pace's timer runs on the loop's clock,
 * whose tick (4 ms) would otherwise leave a fast handler waiting for room. */
static void wake_locked(jsond_stream *s, int urgent)
{
    if (!urgent && s->paced && evbuffer_get_length(s->queue) >= s->high_water / 2) {
        urgent = 1;
        s->paced = 0;
        s->waiting = 1; /* the output waits still: its paced wake has not come */
    }
    if (!s->waiting && !(urgent && s->failed))
        return;
    uint64_t now = jsond_now_ns();
    int later = !urgent && now - s->woken_ns < WAKE_GAP_NS;
    if (s->wake_posted) {
        s->wake_later &= later; /* an urgent one is not paced */
        return;
    }
    s->waiting = 0;
    s->wake_posted = 1;
    s->wake_later = later;
    s->woken_ns = now;
    s->refs++;
    jsond_inbox_post(s->inbox, &s->wake);
}

jsond_stream *jsond_stream_new(const char *route, size_t high_water, unsigned wait_ms,
                               struct event_base *base, jsond_inbox *inbox)
{
    jsond_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->route, sizeof s->route, "%s", route);
    s->high_water = high_water;
    s->wait_ms = wait_ms;
    s->inbox = inbox;
    s->base = base;
    s->refs = 1;
    s->wake.run = wake_cb;
    s->wake.drop = wake_drop;
    pthread_condattr_t ca;
    int ok = pthread_condattr_init(&ca) == 0;
    if (ok) {
        /* Waits are measured on the monotonic clock: a clock step must not
         * end one early or stretch it. */
        ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
             pthread_cond_init(&s->room, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    if (!ok) {
        free(s);
        return NULL;
    }
    if (pthread_mutex_init(&s->lock, NULL) != 0 || !(s->queue = evbuffer_new())) {
        pthread_cond_destroy(&s->room);
        free(s);
        return NULL;
    }
    return s;
}

/* ---- the loop's side: a producer ------------------------------------------ */

static jsond_produce stream_proceed(void *self, struct evbuffer *out, size_t want)
{
    jsond_stream *s = self;
    jsond_produce rc = JSOND_PRODUCE_MORE;
    pthread_mutex_lock(&s->lock);
    size_t had = evbuffer_get_length(s->queue);
    if (had && evbuffer_remove_buffer(s->queue, out, want) < 0)
        rc = JSOND_PRODUCE_ERROR;
    size_t left = evbuffer_get_length(s->queue);
    if (had >= s->high_water && left < s->high_water)
        pthread_cond_signal(&s->room);
    if (rc == JSOND_PRODUCE_ERROR || left) {
        /* as decided */
    } else if (s->ended) {
        rc = JSOND_PRODUCE_DONE;
    } else if (s->failed) {
        rc = JSOND_PRODUCE_ERROR;
    } else {
        s->waiting = 1;
        rc = JSOND_PRODUCE_WAIT;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void stream_stop(void *self)
{
    jsond_stream *s = self;
    int armed = s->pace_armed; /* a timer that will not fire: its reference goes too */
    s->out = NULL;
    if (s->pace) {
        event_free(s->pace);
        s->pace = NULL;
        s->pace_armed = 0;
    }
    pthread_mutex_lock(&s->lock);
    s->gone = 1;
    s->refs -= armed; /* never the last: the producer's is still held */
    pthread_cond_broadcast(&s->room);
    pthread_mutex_unlock(&s->lock);
    unref(s);
}

static void stream_bind(void *self, jsond_output *out)
{
    ((jsond_stream *)self)->out = out;
}

static const jsond_producer_ops stream_ops = {
    .proceed = stream_proceed, .stop = stream_stop, .bind = stream_bind};

const jsond_producer_ops *jsond_stream_producer(jsond_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->refs++;
    pthread_mutex_unlock(&s->lock);
    s->handed = 1;
    return &stream_ops;
}

int jsond_stream_handed(const jsond_stream *s)
{
    return s->handed;
}

/* ---- the handler's side ----------------------------------------------------- */

/* The deadline of one wait for room, on the monotonic clock. */
static struct timespec wait_until(unsigned ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* Appends the serialized item once there is room. Under the lock. */
static int append_locked(jsond_stream *s, int may_block, const char **why)
{
    if (may_block && !s->gone && evbuffer_get_length(s->queue) >= s->high_water) {
        struct timespec until = wait_until(s->wait_ms);
        while (!s->gone && evbuffer_get_length(s->queue) >= s->high_water) {
            if (pthread_cond_timedwait(&s->room, &s->lock, &until) == ETIMEDOUT &&
                evbuffer_get_length(s->queue) >= s->high_water) {
                *why = "no room for write_timeout";
                return -1;
            }
        }
    }
    if (s->gone) {
        *why = "the client is gone";
        return -1;
    }
    jsond_dumper *d = &s->item;
    size_t n = d->n + (d->spill ? evbuffer_get_length(d->spill) : 0);
    if ((d->spill && evbuffer_add_buffer(s->queue, d->spill) < 0) ||
        evbuffer_add(s->queue, d->buf, d->n) < 0) {
        *why = "out of memory";
        return -1;
    }
    d->n = 0;
    s->bytes += n;
    wake_locked(s, 0);
    return 0;
}

/* Appends `text`, then `item` (if any, borrowed), as one piece; with `end`,
 * that closes the array. A failure fails the stream, so the loop's side
 * cuts the reply, and is logged once. */
static int append(jsond_stream *s, const char *text, const json_t *item, int may_block, int end)
{
    const char *why = "out of memory";
    int rc = -1;
    if (jsond_dump_bytes(&s->item, text, strlen(text)) == 0 &&
        (!item || jsond_dump(&s->item, item) == 0)) {
        pthread_mutex_lock(&s->lock);
        rc = append_locked(s, may_block, &why);
        if (rc == 0 && end) {
            s->ended = 1;
            wake_locked(s, 1);
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (rc == 0)
        return 0;
    s->item.n = 0;
    if (s->item.spill)
        evbuffer_drain(s->item.spill, evbuffer_get_length(s->item.spill));
    pthread_mutex_lock(&s->lock);
    s->failed = 1;
    wake_locked(s, 1);
    pthread_mutex_unlock(&s->lock);
    if (!s->logged) {
        s->logged = 1;
        jsond_log(JSOND_LOG_INFO, "route %s: stream stopped after %llu bytes: %s", s->route,
                  (unsigned long long)s->bytes, why);
    }
    return -1;
}

int jsond_stream_push(jsond_stream *s, json_t *item, int may_block)
{
    int rc = append(s, s->started ? "," : "[", item, may_block, 0);
    s->started = 1;
    json_decref(item);
    return rc;
}

int jsond_stream_finish(jsond_stream *s)
{
    return append(s, s->started ? "]" : "[]", NULL, 0, 1);
}

void jsond_stream_release(jsond_stream *s)
{
    pthread_mutex_lock(&s->lock);
    if (!s->ended) {
        s->failed = 1;
        wake_locked(s, 1);
    }
    pthread_mutex_unlock(&s->lock);
    unref(s);
}

/* ---- the public API (jsond.h) ----------------------------------------------- */

int jsond_stream_begin(jsond_req *req)
{
    if (req->stream || jsond_req_expired(req) || jsond_req_refuse_stream(req))
        return -1;
    const cfg_server *sv = &req->cfg->server;
    unsigned wait_ms = sv->write_timeout_ms ? sv->write_timeout_ms : 60000;
    req->stream = jsond_stream_new(req->route->name, sv->output_buffer, wait_ms, req->env->base,
                                   req->env->inbox);
    if (!req->stream)
        return -1;
    /* On the loop the reply is handed over at the first item, and the
     * request would go with it: the stream holds it until its end. */
    if (jsond_context() == JSOND_CTX_LOOP)
        jsond_req_hold(req);
    return 0;
}

/* The reply starts with the first piece of the array. */
static int hand_over(jsond_req *req)
{
    if (jsond_stream_handed(req->stream))
        return 0;
    if (jsond_req_expired(req))
        return -1;
    jsond_reply_producer(req, jsond_stream_producer(req->stream), req->stream);
    return 0;
}

int jsond_stream_item(jsond_req *req, json_t *item)
{
    if (!req->stream || hand_over(req) < 0) {
        json_decref(item);
        return -1;
    }
    return jsond_stream_push(req->stream, item, jsond_context() != JSOND_CTX_LOOP);
}

int jsond_stream_end(jsond_req *req)
{
    jsond_stream *s = req->stream;
    if (!s)
        return -1;
    int rc = hand_over(req) < 0 ? -1 : jsond_stream_finish(s);
    req->stream = NULL;
    jsond_stream_release(s);
    if (jsond_context() == JSOND_CTX_LOOP)
        jsond_req_unhold(req);
    return rc;
}
