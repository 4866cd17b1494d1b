/* req.c: a request's life from dispatch to reply.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "req.h"

jsond_req *jsond_req_new(jsond_config *cfg, const cfg_route *route, const jsond_handler *h,
                         json_t *args, const jsond_req_env *env, jsond_req_done_fn done, void *arg)
{
    jsond_req *req = calloc(1, sizeof *req);
    if (!req) {
        json_decref(args);
        return NULL;
    }
    req->cfg = jsond_config_ref(cfg);
    req->route = route;
    req->h = *h;
    req->args = args;
    req->env = *env;
    req->done = done;
    req->done_arg = arg;
    req->state = JSOND_REQ_RUNNING;
    req->refs = 2;
    return req;
}

/* ---- the handler's timers --------------------------------------------- */

struct jsond_timer {
    struct event ev;
    jsond_req *req;
    jsond_timer_fn fn;
    void *arg;
    jsond_timer *prev, *next; /* in req->timers */
};

static void timer_free(jsond_timer *t)
{
    event_del(&t->ev);
    if (t->prev)
        t->prev->next = t->next;
    else
        t->req->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    free(t);
}

/* The handler has replied: nothing it armed may call it back any more. */
static void drop_timers(jsond_req *req)
{
    jsond_timer *t = req->timers;
    req->timers = NULL;
    while (t) {
        jsond_timer *next = t->next;
        event_del(&t->ev);
        free(t);
        t = next;
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_timer *t = arg;
    jsond_req *req = t->req;
    jsond_timer_fn fn = t->fn;
    void *fn_arg = t->arg;
    timer_free(t); /* first: `fn` may reply, and the request go with it */
    fn(req, fn_arg);
}

jsond_timer *jsond_req_timer(jsond_req *req, unsigned ms, jsond_timer_fn fn, void *arg)
{
    jsond_timer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    struct timeval tv = jsond_ms_tv(ms);
    if (evtimer_assign(&t->ev, req->env.base, timer_cb, t) < 0 || evtimer_add(&t->ev, &tv) < 0) {
        free(t);
        return NULL;
    }
    t->req = req;
    t->fn = fn;
    t->arg = arg;
    t->next = req->timers;
    if (t->next)
        t->next->prev = t;
    req->timers = t;
    return t;
}

void jsond_timer_cancel(jsond_timer *t)
{
    if (t)
        timer_free(t);
}

/* ---- the request --------------------------------------------------------- */

static void req_free(jsond_req *req)
{
    drop_timers(req);
    if (req->armed)
        event_del(&req->deadline);
    if (req->ops)
        req->ops->stop(req->self);
    json_decref(req->reply);
    json_decref(req->args);
    jsond_config_unref(req->cfg);
    free(req);
}

static void unref(jsond_req *req)
{
    if (--req->refs == 0)
        req_free(req);
}

static void disarm(jsond_req *req)
{
    if (req->armed) {
        event_del(&req->deadline);
        req->armed = 0;
    }
}

/* The reply is no longer wanted: the handler is told, and whatever it
 * replies from now on is discarded. */
static void cancel(jsond_req *req)
{
    req->state = JSOND_REQ_CANCELLED;
    disarm(req);
    if (req->cancel)
        req->cancel(req, req->cancel_arg); /* replies: that drops its reference */
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_req *req = arg;
    req->armed = 0;
    unsigned ms = req->h.timeout_ms;
    snprintf(req->message, sizeof req->message, "no reply within %u ms", ms);
    req->failed = 1;
    req->code = JSOND_TIMEOUT;
    req->state = JSOND_REQ_REPLIED;
    req->refs++; /* the connection may let go in `done`; the cancel needs it */
    req->done(req, req->done_arg);
    cancel(req);
    unref(req);
}

void jsond_req_run(jsond_req *req)
{
    req->refs++; /* a reply inside the handler must not free it under us */
    req->h.async_fn(req, req->args);
    unsigned ms = req->h.timeout_ms;
    if (req->state == JSOND_REQ_RUNNING && ms > 0) {
        /* Armed after the call, so a handler that replies at once costs no
         * timer; the clock is the loop's, read before the call. */
        event_assign(&req->deadline, req->env.base, -1, 0, deadline_cb, req);
        if (jsond_timeouts_add(req->env.timeouts, &req->deadline, ms) == 0)
            req->armed = 1;
        else
            jsond_log(JSOND_LOG_ERROR, "route %s: cannot arm its deadline", req->route->name);
    }
    unref(req);
}

void jsond_req_on_cancel(jsond_req *req, jsond_cancel_fn fn, void *arg)
{
    req->cancel = fn;
    req->cancel_arg = arg;
}

void jsond_req_cancel(jsond_req *req)
{
    req->done = NULL;
    if (req->state == JSOND_REQ_RUNNING)
        cancel(req);
    unref(req);
}

void jsond_req_release(jsond_req *req)
{
    unref(req);
}

/* Hands the outcome over and lets go of the handler's reference. A reply
 * that comes after a cancel (a late one) is discarded by the callers
 * instead. Handlers reply exactly once. */
static void complete(jsond_req *req)
{
    req->state = JSOND_REQ_REPLIED;
    disarm(req);
    drop_timers(req);
    req->done(req, req->done_arg);
    unref(req);
}

/* A reply after the cancel: the handler is done all the same. */
static void late(jsond_req *req)
{
    drop_timers(req);
    unref(req);
}

void jsond_reply(jsond_req *req, json_t *reply)
{
    if (req->state != JSOND_REQ_RUNNING) {
        json_decref(reply);
        late(req);
        return;
    }
    req->reply = reply; /* NULL (out of memory) becomes an internal error */
    complete(req);
}

void jsond_reply_error(jsond_req *req, jsond_code code, const char *fmt, ...)
{
    if (req->state != JSOND_REQ_RUNNING) {
        late(req);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req->message, sizeof req->message, fmt, ap);
    va_end(ap);
    req->failed = 1;
    req->code = code;
    complete(req);
}

void jsond_reply_producer(jsond_req *req, const jsond_producer_ops *ops, void *self)
{
    if (req->state != JSOND_REQ_RUNNING) {
        ops->stop(self);
        late(req);
        return;
    }
    req->ops = ops;
    req->self = self;
    complete(req);
}

const char *jsond_req_route(const jsond_req *req)
{
    return req->route->name;
}

const jsond_stats *jsond_req_stats(const jsond_req *req)
{
    return req->env.stats;
}

const jsond_config *jsond_req_config(const jsond_req *req)
{
    return req->cfg;
}

const cfg_route *jsond_req_route_config(const jsond_req *req)
{
    return req->route;
}
