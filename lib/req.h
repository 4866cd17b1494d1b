/* req.h: a request in flight, between the connection and its handler.
 *
 * The connection creates a request, the router runs its handler, the handler
 * replies (now or later) and the connection is told through `done`. If the
 * connection goes away first it cancels the request, which then lives on
 * until the handler replies, and is freed without a word to anyone.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_REQ_H
#define JSOND_REQ_H

#include <event2/event.h>

#include "config.h"
#include "jsond.h"
#include "output.h"
#include "stats.h"

typedef void (*jsond_req_done_fn)(jsond_req *req, void *arg);
typedef void (*jsond_req_cancel_fn)(jsond_req *req, void *arg);

/* What a handler may use besides its args: the loop it runs on (for
 * timers) and the server's counters (read-only, for stats and health). */
typedef struct jsond_req_env {
    struct event_base *base;
    const jsond_stats *stats;
} jsond_req_env;

struct jsond_req {
    jsond_config *cfg; /* the snapshot the request was resolved on (a reference) */
    const cfg_route *route;
    jsond_async_fn fn;
    json_t *args;
    jsond_req_env env;
    jsond_req_done_fn done; /* NULL once cancelled */
    void *done_arg;
    jsond_req_cancel_fn cancel; /* the handler's, for a reply still owed */
    void *cancel_arg;
    int replied;
    /* The reply: a JSON value, a producer that makes it piece by piece, or
     * an error (code and message; the connection shapes the envelope). */
    json_t *reply;
    const jsond_producer_ops *ops;
    void *self;
    int failed;
    jsond_code code;
    char message[256];
};

/* A request for `route` of `cfg` (a new reference is taken) with `args`
 * (stolen). NULL when out of memory; `args` is released then too. */
jsond_req *jsond_req_new(jsond_config *cfg, const cfg_route *route, jsond_async_fn fn, json_t *args,
                         const jsond_req_env *env, jsond_req_done_fn done, void *arg);

/* Runs the handler. `done` may be called before this returns. */
void jsond_req_run(jsond_req *req);

/* Replies with a producer: the reply's bytes (without the final newline)
 * come from `ops` once the connection is ready for them. Ownership of
 * `self` passes to the request. */
void jsond_reply_producer(jsond_req *req, const jsond_producer_ops *ops, void *self);

/* For a handler that replies later: `fn` runs if the connection goes away
 * first, and must release what the handler holds and reply (the reply is
 * then dropped). */
void jsond_req_on_cancel(jsond_req *req, jsond_req_cancel_fn fn, void *arg);

/* The connection no longer wants the reply: frees the request now if it has
 * replied, else runs the handler's cancel hook (or waits for the reply). */
void jsond_req_cancel(jsond_req *req);

/* Frees a request whose reply has been taken. */
void jsond_req_free(jsond_req *req);

#endif /* JSOND_REQ_H */
