/* output.c: nonblocking, buffered, back-pressured writes on the loop.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <errno.h>
#include <stdlib.h>
#include <event2/event_struct.h>
#include <string.h>

#include "jsond.h"
#include "output.h"
#include "timeout.h"
#include "watch.h"

/* At most this much is written per writable event, so one fast reader of a
 * 1 GB reply cannot starve the other connections on the loop (redis caps its
 * writes per event for the same reason). */
#define WRITE_SLICE ((ev_ssize_t)512 * 1024)

/* Queued behind the active producer: a producer, or bytes written after it. */
typedef struct item {
    struct item *next;
    const jsond_producer_ops *ops;
    void *self;
    struct evbuffer *bytes;
} item;

struct jsond_output {
    evutil_socket_t fd;
    jsond_output_opts opts;
    jsond_output_cb cb;
    void *arg;
    struct evbuffer *buf;          /* ready for the kernel */
    const jsond_producer_ops *ops; /* the active producer, or NULL */
    void *self;
    item *head, *tail;
    struct event *write_ev;
    struct event *timer;
    int waiting; /* the active producer said WAIT and has not been woken */
    int aborted; /* jsond_output_abort(): fail on the next callback */
    int failed;
    uint64_t sent;
    struct event write_store, timer_store; /* where write_ev and timer live */
};

static const char *ctx_name(jsond_ctx ctx)
{
    return ctx == JSOND_CTX_WORKER ? "a worker" : "a foreign";
}

/* The write path's guard: the time bomb (a socket write from code that may
 * block, or from a thread racing the loop) is refused where it would go off. */
static int on_loop(size_t len)
{
    jsond_ctx ctx = jsond_context();
    if (ctx == JSOND_CTX_LOOP)
        return 1;
    jsond_log(JSOND_LOG_ERROR, "write of %zu bytes refused: called from %s thread, not the loop",
              len, ctx_name(ctx));
    errno = EPERM;
    return 0;
}

static void stop_active(jsond_output *out)
{
    if (out->ops) {
        out->ops->stop(out->self);
        out->ops = NULL;
        out->self = NULL;
        out->waiting = 0;
    }
}

/* Makes the next queued item current: bytes join the buffer, a producer
 * becomes active. */
static void advance(jsond_output *out)
{
    while (out->head && !out->ops) {
        item *it = out->head;
        out->head = it->next;
        if (!out->head)
            out->tail = NULL;
        if (it->bytes) {
            evbuffer_add_buffer(out->buf, it->bytes);
            evbuffer_free(it->bytes);
        } else {
            out->ops = it->ops;
            out->self = it->self;
        }
        free(it);
    }
}

/* Asks producers for more until the watermark is reached or the active one
 * waits. */
static int fill(jsond_output *out)
{
    size_t len;
    while (out->ops && !out->waiting &&
           (len = evbuffer_get_length(out->buf)) < out->opts.high_water) {
        jsond_produce r = out->ops->proceed(out->self, out->buf, out->opts.high_water - len);
        switch (r) {
        case JSOND_PRODUCE_MORE:
            if (evbuffer_get_length(out->buf) > len)
                break;
            /* Asking again would spin the loop forever. */
            jsond_log(JSOND_LOG_ERROR, "a producer made no progress; its reply is cut");
            return -1;
        case JSOND_PRODUCE_WAIT:
            out->waiting = 1;
            break;
        case JSOND_PRODUCE_DONE:
            stop_active(out);
            advance(out);
            break;
        default:
            return -1;
        }
    }
    return 0;
}

int jsond_output_idle(const jsond_output *out)
{
    return !out->ops && !out->head && evbuffer_get_length(out->buf) == 0;
}

int jsond_output_full(const jsond_output *out)
{
    return out->ops || out->head || evbuffer_get_length(out->buf) >= out->opts.high_water;
}

int jsond_output_room(const jsond_output *out)
{
    return evbuffer_get_length(out->buf) < out->opts.high_water;
}

static int arm_timer(jsond_output *out)
{
    if (!out->opts.timeout_ms)
        return 0;
    return jsond_timeouts_add(out->opts.timeouts, out->timer, out->opts.timeout_ms);
}

static void fail(jsond_output *out, jsond_output_event ev)
{
    out->failed = 1;
    event_del(out->write_ev);
    event_del(out->timer);
    out->cb(out, ev, out->arg);
}

static void output_write_run(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    jsond_output *out = arg;
    int was_full = jsond_output_full(out), had_room = jsond_output_room(out), progress = 0;
    if (out->aborted || fill(out) < 0) {
        fail(out, JSOND_OUTPUT_ERROR);
        return;
    }
    if (evbuffer_get_length(out->buf) > 0) {
        int n = evbuffer_write_atmost(out->buf, fd, WRITE_SLICE);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            fail(out, JSOND_OUTPUT_ERROR);
            return;
        }
        if (n > 0) {
            out->sent += (uint64_t)n;
            if (out->opts.bytes_out)
                *out->opts.bytes_out += (unsigned long long)n;
            progress = 1;
        }
        if (fill(out) < 0) {
            fail(out, JSOND_OUTPUT_ERROR);
            return;
        }
    }
    if (jsond_output_idle(out)) {
        event_del(out->write_ev);
        event_del(out->timer);
        out->cb(out, JSOND_OUTPUT_DRAINED, out->arg); /* may free out */
        return;
    }
    if (evbuffer_get_length(out->buf) == 0) {
        /* Only a waiting producer is left: the socket has nothing to take,
         * and the peer is not to blame for the wait. wake() kicks us. */
        event_del(out->write_ev);
        event_del(out->timer);
    } else {
        /* Bytes left: write_timeout runs, restarted by progress (the peer
         * is reading). A write that took everything arms nothing. */
        int watched = event_pending(out->write_ev, EV_WRITE, NULL);
        if ((!watched && event_add(out->write_ev, NULL) < 0) ||
            ((progress || !event_pending(out->timer, EV_TIMEOUT, NULL)) && arm_timer(out) < 0)) {
            jsond_log(JSOND_LOG_ERROR, "cannot watch a socket for writing");
            fail(out, JSOND_OUTPUT_ERROR);
            return;
        }
    }
    /* Room for more output: whoever pauses on full() or room() resumes. */
    if ((was_full && !jsond_output_full(out)) || (!had_room && jsond_output_room(out)))
        out->cb(out, JSOND_OUTPUT_ROOM, out->arg); /* may free out */
}

static void output_write_cb(evutil_socket_t fd, short what, void *arg)
{
    jsond_watch_frame f;
    jsond_watch_enter(&f, "write", NULL);
    output_write_run(fd, what, arg);
    jsond_watch_leave(&f);
}

static void output_timeout_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fail(arg, JSOND_OUTPUT_TIMEOUT);
}

static void output_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    jsond_watch_frame f;
    jsond_watch_enter(&f, "write timeout", NULL);
    output_timeout_run(fd, what, arg);
    jsond_watch_leave(&f);
}

/* Runs the write callback in this loop iteration rather than waiting for
 * epoll: most replies fit the socket buffer and go out in one write, with no
 * registration at all. Never writes from inside the caller, so callbacks
 * cannot re-enter it. */
static void kick(jsond_output *out)
{
    if (!event_pending(out->write_ev, EV_WRITE, NULL))
        event_active(out->write_ev, EV_WRITE, 1);
}

jsond_output *jsond_output_new(struct event_base *base, evutil_socket_t fd,
                               const jsond_output_opts *opts, jsond_output_cb cb, void *arg)
{
    jsond_output *out = calloc(1, sizeof *out);
    if (!out)
        return NULL;
    out->fd = fd;
    out->opts = *opts;
    if (out->opts.high_water == 0)
        out->opts.high_water = 1;
    out->cb = cb;
    out->arg = arg;
    out->buf = evbuffer_new();
    if (event_assign(&out->write_store, base, fd, EV_WRITE | EV_PERSIST, output_write_cb, out) == 0)
        out->write_ev = &out->write_store;
    if (evtimer_assign(&out->timer_store, base, output_timeout_cb, out) == 0)
        out->timer = &out->timer_store;
    if (!out->buf || !out->write_ev || !out->timer) {
        jsond_output_free(out);
        return NULL;
    }
    return out;
}

void jsond_output_free(jsond_output *out)
{
    if (!out)
        return;
    stop_active(out);
    while (out->head) {
        item *it = out->head;
        out->head = it->next;
        if (it->bytes)
            evbuffer_free(it->bytes);
        else
            it->ops->stop(it->self);
        free(it);
    }
    if (out->write_ev)
        event_del(out->write_ev);
    if (out->timer)
        event_del(out->timer);
    if (out->buf)
        evbuffer_free(out->buf);
    free(out);
}

static item *push_item(jsond_output *out)
{
    item *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    if (out->tail)
        out->tail->next = it;
    else
        out->head = it;
    out->tail = it;
    return it;
}

/* Where bytes written now go: the buffer, or behind a producer to keep
 * order. NULL when refused (errno set) or out of memory. */
static struct evbuffer *tail_buffer(jsond_output *out, size_t len)
{
    if (!on_loop(len))
        return NULL;
    if (out->failed) {
        errno = EPIPE;
        return NULL;
    }
    struct evbuffer *dst = out->buf;
    if (out->ops) { /* behind a producer: keep order */
        if (!out->tail || !out->tail->bytes) {
            struct evbuffer *bytes = evbuffer_new();
            item *it = bytes ? push_item(out) : NULL;
            if (!it) {
                if (bytes)
                    evbuffer_free(bytes);
                return NULL;
            }
            it->bytes = bytes;
        }
        dst = out->tail->bytes;
    }
    return dst;
}

int jsond_output_write(jsond_output *out, const void *data, size_t len)
{
    struct evbuffer *dst = tail_buffer(out, len);
    if (!dst || evbuffer_add(dst, data, len) < 0)
        return -1;
    kick(out);
    return 0;
}

int jsond_output_write_buffer(jsond_output *out, struct evbuffer *buf)
{
    struct evbuffer *dst = tail_buffer(out, evbuffer_get_length(buf));
    if (!dst || evbuffer_add_buffer(dst, buf) < 0)
        return -1;
    kick(out);
    return 0;
}

int jsond_output_produce(jsond_output *out, const jsond_producer_ops *ops, void *self)
{
    if (!on_loop(0) || out->failed) {
        ops->stop(self);
        return -1;
    }
    if (!out->ops && !out->head) {
        out->ops = ops;
        out->self = self;
    } else {
        item *it = push_item(out);
        if (!it) {
            ops->stop(self);
            return -1;
        }
        it->ops = ops;
        it->self = self;
    }
    if (ops->bind)
        ops->bind(self, out);
    kick(out);
    return 0;
}

void jsond_output_wake(jsond_output *out)
{
    if (out->waiting) {
        out->waiting = 0;
        kick(out);
    }
}

void jsond_output_abort(jsond_output *out)
{
    if (!out->failed && !out->aborted) {
        out->aborted = 1;
        event_active(out->write_ev, EV_WRITE, 1);
    }
}

size_t jsond_output_buffered(const jsond_output *out)
{
    return evbuffer_get_length(out->buf);
}

uint64_t jsond_output_sent(const jsond_output *out)
{
    return out->sent;
}
