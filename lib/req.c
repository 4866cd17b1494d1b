/* req.c: a request's life from dispatch to reply, on the loop or on a
 * pool thread and back.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "req.h"
#include "stream.h"
#include "watch.h"

/* The request whose sync half this thread is running, so that a reply from
 * inside the handler is recorded for the loop rather than handed over. */
static _Thread_local jsond_req *running_here __attribute__((tls_model("initial-exec")));

/* A freed request kept for the next: pipelined requests are made and freed
 * one after another, and this spares an allocation and calloc's slow path
 * (about 300 instructions for these 800 bytes) per request. Only the loop
 * thread keeps one; jsond_req_spare_drop() frees it. */
static _Thread_local jsond_req *spare __attribute__((tls_model("initial-exec")));

static void handoff_cb(jsond_inbox_item *item);

jsond_req *jsond_req_new(jsond_config *cfg, const cfg_route *route, const jsond_handler *h,
                         json_t *args, const jsond_req_env *env, jsond_req_done_fn done, void *arg)
{
    jsond_req *req = spare;
    if (req) {
        spare = NULL;
        memset(req, 0, offsetof(jsond_req, out.message)); /* see jsond_req */
    } else if (!(req = calloc(1, sizeof *req))) {
        json_decref(args);
        return NULL;
    }
    req->cfg = jsond_config_ref(cfg);
    req->route = route;
    req->h = *h;
    req->args = args;
    req->env = env;
    req->pool = h->pool == JSOND_ON_LOOP ? NULL : env->pools[h->pool];
    req->done = done;
    req->done_arg = arg;
    atomic_init(&req->state, JSOND_REQ_RUNNING);
    req->refs = 2;
    req->handoff.run = req->handoff.drop = handoff_cb;
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
    jsond_watch_frame f;
    jsond_watch_enter(&f, "handler timer", req->route->name);
    timer_free(t); /* first: `fn` may reply, and the request go with it */
    fn(req, fn_arg);
    jsond_watch_leave(&f);
}

jsond_timer *jsond_req_timer(jsond_req *req, unsigned ms, jsond_timer_fn fn, void *arg)
{
    jsond_timer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    struct timeval tv = jsond_timer_tv(ms);
    if (evtimer_assign(&t->ev, req->env->base, timer_cb, t) < 0 || evtimer_add(&t->ev, &tv) < 0) {
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

static jsond_req_state state_of(const jsond_req *req)
{
    return (jsond_req_state)atomic_load(&req->state);
}

static void set_state(jsond_req *req, jsond_req_state st)
{
    atomic_store(&req->state, (int)st);
}

void jsond_outcome_drop(jsond_outcome *o)
{
    if (o->ops)
        o->ops->stop(o->self);
    o->ops = NULL;
    json_decref(o->reply);
    o->reply = NULL;
}

static void req_free(jsond_req *req)
{
    drop_timers(req);
    if (req->armed)
        event_del(&req->deadline);
    if (req->stream)
        jsond_stream_release(req->stream);
    jsond_outcome_drop(&req->out);
    if (req->made) {
        jsond_outcome_drop(req->made);
        free(req->made);
    }
    json_decref(req->args);
    jsond_config_unref(req->cfg);
    if (!spare && jsond_context() == JSOND_CTX_LOOP)
        spare = req;
    else
        free(req);
}

void jsond_req_spare_drop(void)
{
    free(spare);
    spare = NULL;
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

/* Nobody wants the reply any more: whatever the handler replies from now
 * on is discarded. Returns 1 when the job was still queued and is taken
 * out of its pool: its reference is the caller's to drop then. */
static int stop(jsond_req *req, jsond_req_state *was)
{
    *was = (jsond_req_state)atomic_exchange(&req->state, JSOND_REQ_CANCELLED);
    disarm(req);
    return *was == JSOND_REQ_QUEUED && jsond_pool_cancel(req->pool, &req->job);
}

/* ---- calls a request made that run on the loop ------------------------- */

void jsond_req_link_call(jsond_req *parent, jsond_req *call)
{
    call->parent = parent;
    call->linked = 1;
    call->call_next = parent->calls;
    if (call->call_next)
        call->call_next->call_prev = call;
    parent->calls = call;
}

/* The call's outcome is on its way: cancelling its parent no longer
 * concerns it. */
static void unlink_call(jsond_req *call)
{
    if (!call->linked)
        return;
    call->linked = 0;
    if (call->call_prev)
        call->call_prev->call_next = call->call_next;
    else
        call->parent->calls = call->call_next;
    if (call->call_next)
        call->call_next->call_prev = call->call_prev;
    call->call_prev = call->call_next = NULL;
}

static void expire(jsond_req *req, const char *why);

/* After stop(): a job taken back lets go of the request (never the last
 * reference: the caller holds one); a running sync handler finishes (its
 * outcome will be late); an async one is told through its cancel hook,
 * which replies. Either way the calls it still waits for are cancelled
 * with it, so nothing it started outlives it on the loop. */
static void tell_handler(jsond_req *req, int dequeued)
{
    if (dequeued) {
        req->refs--;
        return;
    }
    for (jsond_req *call = req->calls; call; call = req->calls) {
        /* Unlinked here, not by expire(): the loop must not look at a call
         * that expire() may have freed. */
        req->calls = call->call_next;
        if (req->calls)
            req->calls->call_prev = NULL;
        call->linked = 0;
        call->call_next = NULL;
        expire(call, "its caller was cancelled");
    }
    if (!req->pool && req->cancel)
        req->cancel(req, req->cancel_arg); /* replies: that drops its reference */
}

/* The outcome goes to the connection. The caller drops the handler's
 * reference when it is time: a stream hands over while its handler runs. */
static void complete(jsond_req *req)
{
    unlink_call(req);
    set_state(req, JSOND_REQ_REPLIED);
    disarm(req);
    drop_timers(req);
    req->done(req, req->done_arg);
}

/* Ends a request nobody waits for any more: its deadline passed (`why`
 * NULL), or its caller let go (why). Its owner hears `timeout` first. */
static void expire(jsond_req *req, const char *why)
{
    unlink_call(req);
    req->refs++; /* the connection may let go in `done`; the handler after it */
    jsond_req_state was;
    int dequeued = stop(req, &was);
    unsigned ms = req->h.timeout_ms;
    jsond_outcome *o = &req->out;
    o->failed = 1;
    o->code = JSOND_TIMEOUT;
    if (why)
        snprintf(o->message, sizeof o->message, "route %s: %s", req->route->name, why);
    else if (dequeued)
        snprintf(o->message, sizeof o->message, "still queued in pool %s after %u ms",
                 jsond_pool_name(req->pool), ms);
    else
        snprintf(o->message, sizeof o->message, "no reply within %u ms", ms);
    if (req->pool && !why)
        jsond_pool_note(req->pool, JSOND_POOL_TIMED_OUT);
    req->done(req, req->done_arg); /* the client hears first */
    tell_handler(req, dequeued);
    unref(req);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_req *req = arg;
    jsond_watch_frame f;
    jsond_watch_enter(&f, "deadline", req->route->name);
    req->armed = 0;
    expire(req, NULL);
    jsond_watch_leave(&f);
}

static void arm_deadline(jsond_req *req)
{
    unsigned ms = req->h.timeout_ms;
    if (ms == 0)
        return;
    /* The clock is the loop's, read before the handler ran. */
    event_assign(&req->deadline, req->env->base, -1, 0, deadline_cb, req);
    if (jsond_timeouts_add(req->env->timeouts, &req->deadline, ms) == 0)
        req->armed = 1;
    else
        jsond_log(JSOND_LOG_ERROR, "route %s: cannot arm its deadline", req->route->name);
}

/* ---- on a pool thread ---------------------------------------------------- */

static void vrecord_error(jsond_outcome *o, jsond_code code, const char *fmt, va_list ap)
    JSOND_PRINTF(3, 0);

static void vrecord_error(jsond_outcome *o, jsond_code code, const char *fmt, va_list ap)
{
    vsnprintf(o->message, sizeof o->message, fmt, ap);
    o->failed = 1;
    o->code = code;
}

static void record_error(jsond_outcome *o, jsond_code code, const char *fmt, ...)
    JSOND_PRINTF(3, 4);

static void record_error(jsond_outcome *o, jsond_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vrecord_error(o, code, fmt, ap);
    va_end(ap);
}

/* Calls the sync half on this thread and records its outcome in `made`
 * (allocated). A call between routes nests: the caller runs here too. */
static void run_sync(jsond_req *req)
{
    req->ran = 1;
    jsond_req *outer = running_here;
    running_here = req;
    json_t *reply = req->h.sync_fn(req, req->args);
    running_here = outer;
    if (req->stream) {
        jsond_stream_release(req->stream); /* not ended: the client sees it cut */
        req->stream = NULL;
    }
    if (req->made_given) { /* replied from inside, or streamed */
        json_decref(reply);
    } else if (reply) {
        req->made->reply = reply;
    } else {
        record_error(req->made, JSOND_INTERNAL, "route %s: the handler returned no reply",
                     req->route->name);
    }
    req->made_given = 1;
}

/* The job: the sync half on a worker. Claims the request first, so a
 * cancel that took it out of the queue meanwhile wins cleanly. */
static void job_run(jsond_job *job)
{
    jsond_req *req = (jsond_req *)(void *)((char *)job - offsetof(jsond_req, job));
    int queued = JSOND_REQ_QUEUED;
    if (atomic_compare_exchange_strong(&req->state, &queued, JSOND_REQ_RUNNING))
        run_sync(req);
}

void jsond_req_run_here(jsond_req *req, jsond_outcome *out)
{
    memset(out, 0, sizeof *out);
    if (!(req->made = calloc(1, sizeof *req->made)))
        record_error(out, JSOND_INTERNAL, "out of memory");
    else
        run_sync(req);
    if (req->made) {
        *out = *req->made;
        memset(req->made, 0, sizeof *req->made);
    }
    req_free(req);
}

/* The outcome recorded off the loop becomes the connection's; without one
 * (a foreign thread could not allocate it) the reply is out of memory. */
static void take_made(jsond_req *req)
{
    if (!req->made) {
        record_error(&req->out, JSOND_INTERNAL, "out of memory");
        return;
    }
    req->out = *req->made;
    memset(req->made, 0, sizeof *req->made);
}

/* Back on the loop, once the sync half has returned (or was never run). */
static void job_done(jsond_job *job)
{
    jsond_req *req = (jsond_req *)(void *)((char *)job - offsetof(jsond_req, job));
    jsond_req_state st = state_of(req);
    if (st == JSOND_REQ_RUNNING) {
        take_made(req);
        complete(req);
    } else if (st == JSOND_REQ_CANCELLED && req->ran) {
        jsond_pool_note(req->pool, JSOND_POOL_LATE);
    }
    unref(req); /* the job's */
}

/* An outcome given off the loop, arriving on it: from a foreign thread
 * (the handler's reference goes with it), or a stream that starts while
 * its sync handler runs (the job keeps the reference). */
static void handoff_cb(jsond_inbox_item *item)
{
    jsond_req *req = (jsond_req *)(void *)((char *)item - offsetof(jsond_req, handoff));
    if (state_of(req) == JSOND_REQ_RUNNING) {
        take_made(req);
        complete(req);
    } else if (req->made) {
        jsond_outcome_drop(req->made);
    }
    if (!req->pool)
        unref(req);
}

/* Where a reply is made: on the loop, by the worker running the sync half
 * (a sync handler replies from its own thread), or by a thread replying
 * for an async handler. */
typedef enum { AT_LOOP, AT_WORKER, AT_FOREIGN } reply_site;

static reply_site site_of(const jsond_req *req)
{
    if (running_here == req) /* its sync half runs on this thread */
        return AT_WORKER;
    return jsond_context() == JSOND_CTX_LOOP ? AT_LOOP : AT_FOREIGN;
}

/* After the outcome was filled in at `site`. */
static void given(jsond_req *req, reply_site site, int now)
{
    switch (site) {
    case AT_LOOP:
        complete(req);
        unref(req);
        break;
    case AT_WORKER:
        req->made_given = 1;
        if (now)
            jsond_inbox_post(req->env->inbox, &req->handoff);
        break;
    case AT_FOREIGN:
        req->made_given = 1;
        jsond_inbox_post(req->env->inbox, &req->handoff);
        break;
    }
}

/* The outcome to fill for a reply at `site`, or NULL when it comes too
 * late (a loop reply after the cancel; a second reply from a worker) and
 * is discarded. */
static jsond_outcome *slot_for(jsond_req *req, reply_site site)
{
    if (site == AT_LOOP) {
        if (state_of(req) == JSOND_REQ_RUNNING)
            return &req->out;
        req->cancel = NULL; /* the handler is done: nothing to tell it */
        drop_timers(req);
        unref(req); /* a reply after the cancel: the handler is done all the same */
        return NULL;
    }
    if (req->made_given)
        return NULL;
    if (!req->made && !(req->made = calloc(1, sizeof *req->made))) {
        given(req, site, 0); /* handed over empty: out of memory */
        return NULL;
    }
    return req->made;
}

void jsond_req_run(jsond_req *req)
{
    if (req->pool) {
        req->job.run = job_run;
        req->job.done = job_done;
        if (!(req->made = calloc(1, sizeof *req->made))) {
            jsond_reply_error(req, JSOND_INTERNAL, "out of memory");
            return;
        }
        set_state(req, JSOND_REQ_QUEUED);
        /* For calls it makes from its worker: the loop's timer is the
         * deadline, this is what is left of it there. */
        if (req->h.timeout_ms && !req->expires_ns)
            req->expires_ns = jsond_now_ns() + (uint64_t)req->h.timeout_ms * 1000000;
        if (jsond_pool_submit(req->pool, &req->job) == 0) {
            arm_deadline(req);
            return;
        }
        set_state(req, JSOND_REQ_RUNNING);
        if (errno == EBUSY)
            jsond_reply_error(req, JSOND_BUSY, "pool %s is full", jsond_pool_name(req->pool));
        else
            jsond_reply_error(req, JSOND_SHUTTING_DOWN, "the server is shutting down");
        return;
    }
    req->refs++; /* a reply inside the handler must not free it under us */
    jsond_watch_frame f;
    jsond_watch_enter(&f, "handler", req->route->name);
    req->h.async_fn(req, req->args);
    jsond_watch_leave(&f);
    if (state_of(req) == JSOND_REQ_RUNNING)
        arm_deadline(req); /* after the call: a handler that replies at once costs no timer */
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
    jsond_req_state st = state_of(req);
    if (st == JSOND_REQ_QUEUED || st == JSOND_REQ_RUNNING) {
        int dequeued = stop(req, &st);
        tell_handler(req, dequeued);
    }
    unref(req);
}

void jsond_req_release(jsond_req *req)
{
    unref(req);
}

void jsond_req_hold(jsond_req *req)
{
    req->refs++;
}

void jsond_req_unhold(jsond_req *req)
{
    unref(req);
}

int jsond_req_expired(const jsond_req *req)
{
    if (state_of(req) == JSOND_REQ_CANCELLED)
        return 1;
    /* A call run inline has no timer of its own: its deadline is a time,
     * and its caller's expiry is its own. */
    return req->caller && ((req->expires_ns && jsond_now_ns() >= req->expires_ns) ||
                           jsond_req_expired(req->caller));
}

int jsond_req_refuse_stream(jsond_req *req)
{
    if (!req->depth)
        return 0;
    jsond_reply_error(req, JSOND_HANDLER_FAILED, "route %s streams; cannot be returned",
                      req->route->name);
    return 1;
}

void jsond_reply(jsond_req *req, json_t *reply)
{
    reply_site site = site_of(req);
    jsond_outcome *o = slot_for(req, site);
    if (!o) {
        json_decref(reply);
        return;
    }
    o->reply = reply; /* NULL (out of memory) becomes an internal error */
    given(req, site, 0);
}

void jsond_reply_error(jsond_req *req, jsond_code code, const char *fmt, ...)
{
    reply_site site = site_of(req);
    jsond_outcome *o = slot_for(req, site);
    if (!o)
        return;
    va_list ap;
    va_start(ap, fmt);
    vrecord_error(o, code, fmt, ap);
    va_end(ap);
    given(req, site, 0);
}

void jsond_reply_producer(jsond_req *req, const jsond_producer_ops *ops, void *self)
{
    if (req->depth) {
        ops->stop(self);
        jsond_req_refuse_stream(req);
        return;
    }
    reply_site site = site_of(req);
    jsond_outcome *o = slot_for(req, site);
    if (!o) {
        ops->stop(self);
        return;
    }
    o->ops = ops;
    o->self = self;
    given(req, site, 1);
}

const char *jsond_req_route(const jsond_req *req)
{
    return req->route->name;
}

const char *jsond_req_job_route(const jsond_job *job)
{
    const jsond_req *req =
        (const jsond_req *)(const void *)((const char *)job - offsetof(jsond_req, job));
    return req->route->name;
}

const jsond_stats *jsond_req_stats(const jsond_req *req)
{
    return req->env->stats;
}

const void *jsond_req_handler_data(const jsond_req *req)
{
    return req->h.data;
}

const jsond_config *jsond_req_config(const jsond_req *req)
{
    return req->cfg;
}

const cfg_route *jsond_req_route_config(const jsond_req *req)
{
    return req->route;
}
