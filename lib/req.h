/* req.h: a request in flight, between the connection and its handler.
 *
 * A request has two owners: the connection, which wants its outcome, and
 * the handler, which owes it. Each holds a reference from jsond_req_run()
 * on; the request is freed when both have let go. Its state says whether
 * the outcome is still wanted: RUNNING until the handler replies (the
 * connection is told through `done`), or until it is cancelled (the
 * client is gone, or the deadline passed). A cancel runs the handler's
 * cancel hook, and a reply that comes after it is discarded: a cancel
 * never frees a request its handler still holds.
 *
 * Loop thread only in this version.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_REQ_H
#define JSOND_REQ_H

#include <event2/event.h>
#include <event2/event_struct.h>

#include "config.h"
#include "handler.h"
#include "jsond.h"
#include "producer.h"
#include "stats.h"
#include "timeout.h"

typedef void (*jsond_req_done_fn)(jsond_req *req, void *arg);

/* What a handler may use besides its args: the loop it runs on (for
 * timers) and the server's counters (read-only, for stats and health);
 * what the request itself uses: the loop's deadline queues. */
typedef struct jsond_req_env {
    struct event_base *base;
    const jsond_stats *stats;
    jsond_timeouts *timeouts;
} jsond_req_env;

typedef enum jsond_req_state {
    JSOND_REQ_RUNNING,   /* the handler owes the reply */
    JSOND_REQ_REPLIED,   /* the reply went to the connection */
    JSOND_REQ_CANCELLED, /* nobody wants the reply: it is discarded */
} jsond_req_state;

struct jsond_req {
    jsond_config *cfg; /* the snapshot the request was resolved on (a reference) */
    const cfg_route *route;
    jsond_handler h; /* what runs it, as resolved at load (a copy) */
    json_t *args;
    jsond_req_env env;
    jsond_req_done_fn done;
    void *done_arg;
    jsond_cancel_fn cancel; /* the handler's, for a reply still owed */
    void *cancel_arg;
    jsond_timer *timers; /* the handler's, armed: freed when it replies */
    jsond_req_state state;
    int refs;              /* the connection's and the handler's */
    int armed;             /* the deadline is pending */
    struct event deadline; /* assigned on first use: most replies come at once */
    /* The outcome: a JSON value, a producer that makes it piece by piece,
     * or an error (code and message; the connection shapes the envelope). */
    json_t *reply;
    const jsond_producer_ops *ops;
    void *self;
    int failed;
    jsond_code code;
    char message[256];
};

/* A request for `route` of `cfg` (a new reference is taken), run by `h`
 * (copied), with `args` (stolen). NULL when out of memory; `args` is
 * released then too. */
jsond_req *jsond_req_new(jsond_config *cfg, const cfg_route *route, const jsond_handler *h,
                         json_t *args, const jsond_req_env *env, jsond_req_done_fn done, void *arg);

/* Runs the handler; `done` may be called before this returns. A handler
 * that has not replied by then is given the route's deadline. */
void jsond_req_run(jsond_req *req);

/* Replies with a producer: the reply's bytes (without the final newline)
 * come from `ops` once the connection is ready for them. Ownership of
 * `self` passes to the request. */
void jsond_reply_producer(jsond_req *req, const jsond_producer_ops *ops, void *self);

/* The connection no longer wants the reply and lets go of the request: a
 * running handler is cancelled. */
void jsond_req_cancel(jsond_req *req);

/* The connection has taken the outcome (from `done`) and lets go. */
void jsond_req_release(jsond_req *req);

/* For the builtins, which belong to the server: what no handler module
 * gets. The server's counters (read-only, for stats and health). */
const jsond_stats *jsond_req_stats(const jsond_req *req);

/* The config snapshot the request was resolved on, and its route there
 * (for caps set only in the route's config). Valid while `req` is. */
const jsond_config *jsond_req_config(const jsond_req *req);
const cfg_route *jsond_req_route_config(const jsond_req *req);

#endif /* JSOND_REQ_H */
