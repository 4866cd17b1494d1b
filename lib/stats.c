/* stats.c: counters and their JSON form.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <string.h>
#include <time.h>

#include "stats.h"

/* Requests for routes that do not exist all land here. */
#define UNKNOWN_BUCKET "(unknown)"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int jsond_stats_init(jsond_stats *st)
{
    memset(st, 0, sizeof *st);
    st->started = now();
    st->routes = json_object();
    return st->routes ? 0 : -1;
}

void jsond_stats_fini(jsond_stats *st)
{
    json_decref(st->routes);
    st->routes = NULL;
}

/* The bucket of `route`, made on first use. NULL only when out of memory:
 * a counter then stays behind, the request does not fail. */
static json_t *bucket(jsond_stats *st, const char *route)
{
    const char *key = route ? route : UNKNOWN_BUCKET;
    json_t *b = json_object_get(st->routes, key);
    if (!b) {
        b = json_pack("{s:I,s:{}}", "requests", (json_int_t)0, "errors");
        if (!b || json_object_set_new(st->routes, key, b) < 0)
            return NULL;
    }
    return b;
}

static void bump(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v)
        json_integer_set(v, json_integer_value(v) + 1);
    else
        json_object_set_new(obj, key, json_integer(1));
}

void jsond_stats_request(jsond_stats *st, const char *route)
{
    st->requests++;
    json_t *b = bucket(st, route);
    if (b)
        bump(b, "requests");
}

void jsond_stats_error(jsond_stats *st, const char *route, jsond_code code)
{
    st->errors++;
    json_t *b = bucket(st, route);
    if (b)
        bump(json_object_get(b, "errors"), jsond_code_name(code));
}

static json_t *pool_json(jsond_pool *pool)
{
    jsond_pool_stats ps;
    jsond_pool_get_stats(pool, &ps);
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:{s:f,s:f},s:{s:f,s:f}}", "threads",
                     (json_int_t)ps.threads, "queue_limit", (json_int_t)ps.queue_limit, "busy",
                     (json_int_t)ps.busy, "queued", (json_int_t)ps.queued, "queue_peak",
                     (json_int_t)ps.queue_peak, "rejected", (json_int_t)ps.rejected, "timed_out",
                     (json_int_t)ps.timed_out, "late", (json_int_t)ps.late, "queue_wait_ms", "p50",
                     ps.queue_wait_p50_ms, "p99", ps.queue_wait_p99_ms, "run_ms", "p50",
                     ps.run_p50_ms, "p99", ps.run_p99_ms);
}

json_t *jsond_stats_json(const jsond_stats *st)
{
    const jsond_server_stats *c = &st->conns;
    json_t *pools = json_object();
    for (size_t i = 0; pools && i < st->npools; i++) {
        if (json_object_set_new(pools, jsond_pool_name(st->pools[i]), pool_json(st->pools[i])) <
            0) {
            json_decref(pools);
            pools = NULL;
        }
    }
    /* The routes are copied: a reply is a snapshot, and it may wait behind
     * slower ones in the pipeline while counting goes on. */
    return json_pack("{s:I,s:{s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I},s:{s:I,s:I,s:o},s:o}",
                     "uptime_ms", (json_int_t)((now() - st->started) * 1000), "connections", "open",
                     (json_int_t)c->open, "total", (json_int_t)c->accepted, "refused",
                     (json_int_t)c->refused, "dropped", (json_int_t)c->dropped, "reset",
                     (json_int_t)c->reset, "cut", (json_int_t)c->cut, "bytes", "in",
                     (json_int_t)st->bytes_in, "out", (json_int_t)c->bytes_out, "requests", "total",
                     (json_int_t)st->requests, "errors", (json_int_t)st->errors, "routes",
                     json_deep_copy(st->routes), "pools", pools);
}
