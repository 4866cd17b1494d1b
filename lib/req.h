/* req.h: a request in flight, between the connection and its handler.
 *
 * A request has two owners: the connection, which wants its outcome, and
 * the handler, which owes it (for a sync handler: the pool job that runs
 * it). Each holds a reference from jsond_req_run() on; the request is freed
 * when both have let go. Its state says where it stands:
 *
 *   QUEUED    waiting in its pool for a thread (sync handlers);
 *   RUNNING   the handler owes the reply;
 *   REPLIED   the outcome went to the connection (through `done`);
 *   CANCELLED nobody wants it: the client is gone or the deadline passed.
 *
 * A cancel never frees a request a worker still holds: a queued job is
 * taken out of its pool, a running one finishes and its late outcome is
 * discarded (and counted by its pool). Every state change, every reference
 * and the connection's callbacks happen on the loop thread: a worker only
 * records its outcome in `made` and hands the request back through the
 * loop's inbox. The state is atomic so that a worker can read it
 * (jsond_req_expired) and claim a queued request (QUEUED -> RUNNING) without
 * racing a cancel.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_REQ_H
#define JSOND_REQ_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdatomic.h>

#include "config.h"
#include "handler.h"
#include "inbox.h"
#include "jsond.h"
#include "pool.h"
#include "producer.h"
#include "stats.h"
#include "timeout.h"

typedef struct jsond_stream jsond_stream;
typedef void (*jsond_req_done_fn)(jsond_req *req, void *arg);

/* What requests of one loop share: the loop (for timers and deadlines),
 * the server's counters (read-only, for stats and health), the inbox that
 * brings outcomes back from other threads, and the pools of the config in
 * force, by their index in its `pools`. Owned by the server. */
typedef struct jsond_req_env {
    struct event_base *base;
    jsond_stats *stats;
    jsond_timeouts *timeouts;
    jsond_inbox *inbox;
    jsond_pool *const *pools;
} jsond_req_env;

typedef enum jsond_req_state {
    JSOND_REQ_QUEUED,
    JSOND_REQ_RUNNING,
    JSOND_REQ_REPLIED,
    JSOND_REQ_CANCELLED,
} jsond_req_state;

/* An outcome: a JSON value, a producer that makes it piece by piece, or an
 * error (code and message; the connection shapes the envelope). */
typedef struct jsond_outcome {
    json_t *reply;
    const jsond_producer_ops *ops;
    void *self;
    int failed;
    jsond_code code;
    char message[256]; /* last: see jsond_req's `out` */
} jsond_outcome;

struct jsond_req {
    jsond_config *cfg; /* the snapshot the request was resolved on (a reference) */
    const cfg_route *route;
    jsond_handler h; /* what runs it, as resolved at load (a copy) */
    json_t *args;
    const jsond_req_env *env;
    jsond_pool *pool; /* where its sync half runs, or NULL: on the loop */
    jsond_req_done_fn done;
    void *done_arg;
    jsond_cancel_fn cancel; /* the handler's, for a reply still owed */
    void *cancel_arg;
    jsond_timer *timers; /* the handler's, armed: freed when it replies */
    atomic_int state;    /* jsond_req_state */
    int refs;            /* the connection's and the handler's; loop thread */
    int armed;           /* the deadline is pending */
    /* Off the loop: the worker running the handler (or a thread replying
     * for an async one) records here, then hands the request to the loop:
     * the job's own completion, or `handoff` (a reply from a foreign thread,
     * a stream that starts while its handler still runs). */
    jsond_outcome *made; /* allocated for sync handlers and foreign replies only */
    int made_given;
    int ran; /* the sync half was called */
    jsond_job job;
    jsond_inbox_item handoff;
    jsond_stream *stream; /* the handler's side of its stream, if any */
    /* A call between routes (call.c). */
    unsigned depth;      /* 0: a client's request; else how deep a call */
    jsond_req *caller;   /* an inline call's caller, on the same thread, */
    uint64_t expires_ns; /* and its deadline as jsond_now_ns() (0: none);
                          * a sync request sets it too, for its calls */
    /* A call running on the loop is linked to the loop request that waits
     * for it (its parent), which cancels it when it is cancelled itself. A
     * loop caller is held until it was told through call_fn. */
    jsond_req *parent;
    jsond_call_fn call_fn;
    void *call_arg;
    int linked;
    jsond_req *calls; /* the calls waited for, linked */
    jsond_req *call_prev, *call_next;
    /* Last: a request made anew is zeroed up to out.message, which is
     * written when `failed` is set, and the deadline, assigned when armed. */
    jsond_outcome out;     /* what the connection takes; loop thread */
    struct event deadline; /* assigned on first use: most replies come at once */
};

/* A request for `route` of `cfg` (a new reference is taken), run by `h`
 * (copied) on the loop or on its pool in `env` (the server's, which
 * outlives every request), with `args` (stolen). NULL when out of memory;
 * `args` is released then too. Loop thread, as everything here that says
 * nothing else; any thread for an `h` without a pool (env's pools are the
 * loop's). */
jsond_req *jsond_req_new(jsond_config *cfg, const cfg_route *route, const jsond_handler *h,
                         json_t *args, const jsond_req_env *env, jsond_req_done_fn done, void *arg);

/* Runs the handler, or queues it on its pool (a full pool replies busy,
 * a draining one shutting_down); `done` may be called before this returns.
 * A request not replied to by then is given the route's deadline. */
void jsond_req_run(jsond_req *req);

/* Runs the sync half of a request made on this thread (a call between
 * routes, run inline), moves its outcome into `out` and frees the request:
 * it never reached the loop. The thread that made it. */
void jsond_req_run_here(jsond_req *req, jsond_outcome *out);

/* Links `call`, about to run on the loop, to `parent`, a request whose
 * handler waits for it: a cancel of the parent ends the call with
 * `timeout` before its handler is told. Loop thread. */
void jsond_req_link_call(jsond_req *parent, jsond_req *call);

/* Releases what an outcome holds. */
void jsond_outcome_drop(jsond_outcome *o);

/* A called request cannot stream (only JSON values cross a call): replies
 * handler_failed for it and returns 1; 0 for a client's request. Where the
 * handler runs. */
int jsond_req_refuse_stream(jsond_req *req);

/* Replies with a producer: the reply's bytes (without the final newline)
 * come from `ops` once the connection is ready for them. Ownership of
 * `self` passes to the request. Any thread, as jsond_reply(); from a sync
 * handler's worker it is handed to the loop at once, not when the handler
 * returns: a stream starts while its handler still runs. */
void jsond_reply_producer(jsond_req *req, const jsond_producer_ops *ops, void *self);

/* The connection no longer wants the reply and lets go of the request: a
 * running handler is cancelled. */
void jsond_req_cancel(jsond_req *req);

/* The connection has taken the outcome (from `done`) and lets go. */
void jsond_req_release(jsond_req *req);

/* Frees the request the calling thread keeps for the next (see req.c).
 * The loop thread, when its server goes. */
void jsond_req_spare_drop(void);

/* An extra reference, for code that uses the request after its reply (a
 * stream on the loop), and its release. */
void jsond_req_hold(jsond_req *req);
void jsond_req_unhold(jsond_req *req);

/* The route of the request a pool job runs, for logs. Any thread that may
 * look at the job (jsond_pool_running). */
const char *jsond_req_job_route(const jsond_job *job);

/* For the builtins, which belong to the server: what no handler module
 * gets. The server's counters (read-only, for stats and health). */
const jsond_stats *jsond_req_stats(const jsond_req *req);

/* What the route's handler kind made of it at load (handler.h's `data`).
 * Any thread holding `req`. */
const void *jsond_req_handler_data(const jsond_req *req);

/* The config snapshot the request was resolved on, and its route there
 * (for caps set only in the route's config). Valid while `req` is. */
const jsond_config *jsond_req_config(const jsond_req *req);
const cfg_route *jsond_req_route_config(const jsond_req *req);

#endif /* JSOND_REQ_H */
