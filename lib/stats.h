/* stats.h: the server's counters, read by the stats route and at exit.
 *
 * Loop thread only: every counter here is bumped by loop code, so no
 * atomics; the pools keep their own, under their locks. The exception is
 * the calls between routes, which workers make too: they are counted under
 * a lock of their own, which the request path never takes.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_STATS_H
#define JSOND_STATS_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "jsond.h"
#include "pool.h"

typedef struct jsond_stats {
    jsond_server_stats conns; /* connection counters and bytes out */
    uint64_t bytes_in;
    uint64_t requests;
    uint64_t errors;
    double started;           /* CLOCK_MONOTONIC seconds */
    int draining;             /* the server is shutting down */
    json_t *routes;           /* {route: {"requests": N, "errors": {code: N}}} */
    jsond_pool *const *pools; /* the pools of the config in force (set by */
    size_t npools;            /* the server), for "pools" */
    /* The last route counted and its "requests" counter: pipelined
     * traffic asks for one route again and again, and a name compare is
     * cheaper than two hash lookups. Buckets are never removed, so the
     * pointer stays valid. */
    char last_route[72];
    json_t *last_requests;
    uint64_t stalls; /* loop callbacks over stall_warning */
    uint64_t worst_stall_ns;
    char worst_stall_route[72]; /* "" when no route ran in it */
    pthread_mutex_t calls_lock;
    json_t *calls; /* {route: {"calls": N, ...}}, under calls_lock */
} jsond_stats;

/* What jsond_call counts, per route: a call made to it (as the target), a
 * call it made that was adapted or refused (as the caller). */
typedef enum jsond_call_event {
    JSOND_CALLED,
    JSOND_CALL_ADAPTED,
    JSOND_CALL_REFUSED,
} jsond_call_event;

int jsond_stats_init(jsond_stats *st);
void jsond_stats_fini(jsond_stats *st);

/* Counts one request of `route` (NULL: a route that does not exist; all of
 * those share one bucket, so clients cannot grow the table). */
void jsond_stats_request(jsond_stats *st, const char *route);

/* Counts an error reply with `code` to a request of `route` (NULL as above). */
void jsond_stats_error(jsond_stats *st, const char *route, jsond_code code);

/* Counts a loop callback of `ns` over stall_warning in which `route` ran
 * (NULL: none ran). Loop thread. */
void jsond_stats_stall(jsond_stats *st, const char *route, uint64_t ns);

/* Counts `ev` for `route`. Any thread. */
void jsond_stats_call(jsond_stats *st, const char *route, jsond_call_event ev);

/* The stats route's reply (documented in jsond(8)). Loop thread. */
json_t *jsond_stats_json(const jsond_stats *st);

#endif /* JSOND_STATS_H */
