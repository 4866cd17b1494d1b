/* call.c: calls between routes (jsond_call, jsond_call_async).
 *
 * Where a target runs follows from its colour and the caller's context,
 * never from a hand-off that could wait on itself:
 *
 *   caller on     target sync          target async          target dual
 *   a worker      inline, this thread  the loop; worker      sync half inline
 *                                      waits (adapted)
 *   the loop      its pool (adapted)   the loop              async half, loop
 *
 * Under the calling route's `policy = strict` the two adapted cases are
 * refused with wrong_color instead. A blocking wait is never performed on
 * the loop: the blocking form is refused there whatever the policy.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "req.h"
#include "router.h"
#include "stats.h"
#include "timeout.h"

/* Deeper calls are refused: this is what cuts off a loop (A -> B -> A). */
#define MAX_DEPTH 8

static json_t *error_json(jsond_code code, const char *fmt, ...) JSOND_PRINTF(2, 3);

/* An error as a plain-mode client sees it. */
static json_t *error_json(jsond_code code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return json_pack("{s:{s:s,s:s}}", "error", "code", jsond_code_name(code), "message", msg);
}

/* What the caller gets of a target's outcome (taken from `o`). */
static json_t *outcome_json(jsond_outcome *o)
{
    json_t *r = o->reply;
    o->reply = NULL;
    if (o->failed) {
        json_decref(r);
        r = error_json(o->code, "%s", o->message);
    } else if (!r) {
        r = error_json(JSOND_INTERNAL, "out of memory"); /* a NULL reply says so */
    }
    jsond_outcome_drop(o);
    return r;
}

/* Checks a call of `name` by `caller` running on the loop or not: returns
 * the target route, and counts the call, or NULL with the error reply in
 * *err (NULL when out of memory). *adapted says the target runs in the
 * other colour's context. */
static const cfg_route *admit(jsond_req *caller, const char *name, int on_loop, int *adapted,
                              json_t **err)
{
    const char *from = caller->route->name;
    const cfg_route *route = jsond_config_route(caller->cfg, name);
    const jsond_handler *h = route ? jsond_handler_of(route) : NULL;
    *adapted = 0;
    if (!route) {
        *err = jsond_config_valid_name(name, strlen(name))
                   ? error_json(JSOND_NOT_FOUND, "no route '%s'", name)
                   : error_json(JSOND_NOT_FOUND, "no such route");
        return NULL;
    }
    if (!h) { /* a config read without the registry: a bug, not trusted */
        *err = error_json(JSOND_INTERNAL, "route %s has no handler", name);
        return NULL;
    }
    if (caller->depth + 1 > MAX_DEPTH) {
        *err = error_json(JSOND_INTERNAL, "route %s: calls nested deeper than %d", from, MAX_DEPTH);
        return NULL;
    }
    if (h->color != JSOND_COLOR_DUAL && (h->color == JSOND_COLOR_ASYNC) != on_loop) {
        if (jsond_route_policy(caller->cfg, caller->route) == JSOND_POLICY_STRICT) {
            jsond_stats_call(caller->env->stats, from, JSOND_CALL_REFUSED);
            jsond_log(JSOND_LOG_WARNING,
                      "route %s: call to %s refused: %s is %s, the caller runs on %s "
                      "(policy strict)",
                      from, route->name, route->name, jsond_color_name(h->color),
                      on_loop ? "the loop" : "a worker");
            *err = error_json(
                JSOND_WRONG_COLOR, "route %s may not call %s route %s from %s (policy strict)",
                from, jsond_color_name(h->color), route->name, on_loop ? "the loop" : "a worker");
            return NULL;
        }
        jsond_stats_call(caller->env->stats, from, JSOND_CALL_ADAPTED);
        *adapted = 1;
    }
    jsond_stats_call(caller->env->stats, route->name, JSOND_CALLED);
    return route;
}

/* A called request for `route` run by `h`, or NULL (out of memory). */
static jsond_req *new_call(jsond_req *caller, const cfg_route *route, const jsond_handler *h,
                           json_t *args, jsond_req_done_fn done, void *arg)
{
    json_t *merged = jsond_router_args(route, args);
    jsond_req *req =
        merged ? jsond_req_new(caller->cfg, route, h, merged, caller->env, done, arg) : NULL;
    if (req)
        req->depth = caller->depth + 1;
    return req;
}

/* A call's deadline from a worker: the target's own, or what is left of
 * the caller's when that is earlier. 0: none. */
static uint64_t call_expiry(const jsond_req *caller, unsigned timeout_ms, uint64_t now)
{
    uint64_t own = timeout_ms ? now + (uint64_t)timeout_ms * 1000000 : 0;
    uint64_t theirs = caller->expires_ns;
    if (!own || (theirs && theirs < own))
        return theirs;
    return own;
}

/* ---- the blocking form, off the loop ------------------------------------ */

/* A sync target (or a dual one's sync half) runs right here: no queue, no
 * thread of its pool, so a pool of one thread can call itself. */
static json_t *call_inline(jsond_req *caller, const cfg_route *route, json_t *args)
{
    jsond_handler h = *jsond_handler_of(route);
    h.pool = JSOND_ON_LOOP; /* runs here; the pool table is the loop's */
    uint64_t now = jsond_now_ns(), expires = call_expiry(caller, h.timeout_ms, now);
    if (jsond_req_expired(caller) || (expires && now >= expires)) {
        json_decref(args);
        return error_json(JSOND_TIMEOUT, "no time left to call %s", route->name);
    }
    jsond_req *req = new_call(caller, route, &h, args, NULL, NULL);
    if (!req)
        return error_json(JSOND_INTERNAL, "out of memory");
    req->caller = caller;
    req->expires_ns = expires;
    jsond_outcome out;
    jsond_req_run_here(req, &out);
    if (expires && !out.failed && jsond_now_ns() >= expires) {
        jsond_outcome_drop(&out); /* a late reply, as a pool discards one */
        return error_json(JSOND_TIMEOUT, "no reply within %u ms",
                          (unsigned)((expires - now + 999999) / 1000000));
    }
    return outcome_json(&out);
}

/* A worker waiting for a call that runs on the loop. */
typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    json_t *reply;
    jsond_req *req;
    jsond_req *root; /* the loop's request whose job the worker runs */
    jsond_inbox_item item;
} waiter;

/* Loop thread: the target has replied. The waiter is gone once told. */
static void waited_done(jsond_req *req, void *arg)
{
    waiter *w = arg;
    json_t *reply = outcome_json(&req->out);
    jsond_req_release(req);
    pthread_mutex_lock(&w->lock);
    w->reply = reply;
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Loop thread. */
static void waited_start(jsond_inbox_item *item)
{
    waiter *w = (waiter *)(void *)((char *)item - offsetof(waiter, item));
    if (jsond_req_expired(w->root)) { /* cancelled meanwhile: its calls go with it */
        jsond_reply_error(w->req, JSOND_TIMEOUT, "route %s: its caller was cancelled",
                          w->req->route->name);
        return;
    }
    jsond_req_link_call(w->root, w->req);
    jsond_req_run(w->req);
}

/* An async target runs on the loop; this worker waits for it. Its deadline
 * is the loop's timer, so the wait always ends (the inbox outlives every
 * worker still running, even past a shutdown: see pools_free in server.c,
 * so the item needs no drop). */
static json_t *call_on_loop(jsond_req *caller, const cfg_route *route, json_t *args)
{
    jsond_handler h = *jsond_handler_of(route);
    uint64_t now = jsond_now_ns(), expires = call_expiry(caller, h.timeout_ms, now);
    if (jsond_req_expired(caller) || (expires && now >= expires)) {
        json_decref(args);
        return error_json(JSOND_TIMEOUT, "no time left to call %s", route->name);
    }
    if (expires)
        h.timeout_ms = (unsigned)((expires - now + 999999) / 1000000);
    waiter w = {.done = 0, .item = {.run = waited_start}};
    for (w.root = caller; w.root->caller; w.root = w.root->caller) /* inline calls */
        ;
    if (pthread_mutex_init(&w.lock, NULL) != 0) {
        json_decref(args);
        return error_json(JSOND_INTERNAL, "out of memory");
    }
    if (pthread_cond_init(&w.cond, NULL) != 0) {
        json_decref(args);
        pthread_mutex_destroy(&w.lock);
        return error_json(JSOND_INTERNAL, "out of memory");
    }
    if (!(w.req = new_call(caller, route, &h, args, waited_done, &w))) {
        pthread_cond_destroy(&w.cond);
        pthread_mutex_destroy(&w.lock);
        return error_json(JSOND_INTERNAL, "out of memory");
    }
    jsond_inbox_post(caller->env->inbox, &w.item);
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return w.reply;
}

json_t *jsond_call(jsond_req *req, const char *route, json_t *args)
{
    if (jsond_context() == JSOND_CTX_LOOP) {
        jsond_stats_call(req->env->stats, req->route->name, JSOND_CALL_REFUSED);
        jsond_log(JSOND_LOG_ERROR,
                  "route %s: blocking call to %s on the loop thread refused "
                  "(an async handler calls with jsond_call_async)",
                  req->route->name, route);
        json_decref(args);
        return error_json(JSOND_WRONG_COLOR,
                          "route %s called %s with the blocking form on the loop thread",
                          req->route->name, route);
    }
    json_t *err;
    int adapted;
    const cfg_route *target = admit(req, route, 0, &adapted, &err);
    if (!target) {
        json_decref(args);
        return err;
    }
    return adapted ? call_on_loop(req, target, args) : call_inline(req, target, args);
}

/* ---- the callback form, on the loop ------------------------------------- */

/* Loop thread: the target has replied; its caller hears it. */
static void called_done(jsond_req *req, void *arg)
{
    (void)arg;
    jsond_req *caller = req->parent;
    req->call_fn(caller, outcome_json(&req->out), req->call_arg);
    jsond_req_release(req);
    jsond_req_unhold(caller); /* held for the callback */
}

int jsond_call_async(jsond_req *req, const char *route, json_t *args, jsond_call_fn fn, void *arg)
{
    if (jsond_context() != JSOND_CTX_LOOP) {
        jsond_log(JSOND_LOG_ERROR,
                  "route %s: jsond_call_async to %s off the loop thread refused "
                  "(a sync handler calls with jsond_call)",
                  req->route->name, route);
        json_decref(args);
        return -1;
    }
    json_t *err;
    int adapted;
    const cfg_route *target = admit(req, route, 1, &adapted, &err);
    if (!target) {
        json_decref(args);
        fn(req, err, arg);
        return 0;
    }
    jsond_handler h = *jsond_handler_of(target);
    if (!adapted)
        h.pool = JSOND_ON_LOOP; /* an async target, or a dual one's async half */
    jsond_req *call = new_call(req, target, &h, args, called_done, NULL);
    if (!call) {
        fn(req, error_json(JSOND_INTERNAL, "out of memory"), arg);
        return 0;
    }
    jsond_req_hold(req);
    call->call_fn = fn;
    call->call_arg = arg;
    jsond_req_link_call(req, call);
    jsond_req_run(call);
    return 0;
}
