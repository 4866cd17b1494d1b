/* stats.c: counters and their JSON form.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <stdio.h>
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
    st->calls = json_object();
    if (!st->routes || !st->calls || pthread_mutex_init(&st->calls_lock, NULL) != 0) {
        json_decref(st->routes);
        json_decref(st->calls);
        return -1;
    }
    return 0;
}

void jsond_stats_fini(jsond_stats *st)
{
    json_decref(st->routes);
    st->routes = NULL;
    json_decref(st->calls);
    st->calls = NULL;
    pthread_mutex_destroy(&st->calls_lock);
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
    if (st->last_requests && route && strcmp(route, st->last_route) == 0) {
        json_integer_set(st->last_requests, json_integer_value(st->last_requests) + 1);
        return;
    }
    json_t *b = bucket(st, route);
    if (!b)
        return;
    bump(b, "requests");
    json_t *v = json_object_get(b, "requests");
    size_t n = route ? strlen(route) : sizeof st->last_route;
    if (v && n < sizeof st->last_route) {
        memcpy(st->last_route, route, n + 1);
        st->last_requests = v;
    }
}

void jsond_stats_error(jsond_stats *st, const char *route, jsond_code code)
{
    st->errors++;
    json_t *b = bucket(st, route);
    if (b)
        bump(json_object_get(b, "errors"), jsond_code_name(code));
}

void jsond_stats_stall(jsond_stats *st, const char *route, uint64_t ns)
{
    st->stalls++;
    if (ns > st->worst_stall_ns) {
        st->worst_stall_ns = ns;
        snprintf(st->worst_stall_route, sizeof st->worst_stall_route, "%s", route ? route : "");
    }
    json_t *b = route ? bucket(st, route) : NULL;
    if (b)
        bump(b, "stalls");
}

static const char *const call_keys[] = {
    [JSOND_CALLED] = "calls",
    [JSOND_CALL_ADAPTED] = "adapted",
    [JSOND_CALL_REFUSED] = "refused_wrong_color",
};

void jsond_stats_call(jsond_stats *st, const char *route, jsond_call_event ev)
{
    pthread_mutex_lock(&st->calls_lock);
    json_t *b = json_object_get(st->calls, route);
    if (!b && json_object_set_new(st->calls, route, b = json_object()) < 0)
        b = NULL;
    if (b)
        bump(b, call_keys[ev]);
    pthread_mutex_unlock(&st->calls_lock);
}

/* Sets `key` of `obj` to a copy of integer `n`: the snapshot must not
 * share the counters that bumps change in place. */
static void set_count(json_t *obj, const char *key, json_t *n)
{
    json_object_set_new(obj, key, json_integer(json_integer_value(n)));
}

/* The routes' buckets with their call counters, every one shown (0 when
 * none): a route only ever called by handlers has a bucket too. */
static json_t *routes_json(const jsond_stats *st)
{
    json_t *routes = json_deep_copy(st->routes);
    if (!routes)
        return NULL;
    pthread_mutex_t *lock = (pthread_mutex_t *)&st->calls_lock; /* const data, its lock */
    pthread_mutex_lock(lock);
    for (void *it = json_object_iter(st->calls); it; it = json_object_iter_next(st->calls, it)) {
        const char *name = json_object_iter_key(it);
        json_t *calls = json_object_iter_value(it), *b = json_object_get(routes, name);
        if (!b &&
            json_object_set_new(
                routes, name, b = json_pack("{s:I,s:{}}", "requests", (json_int_t)0, "errors")) < 0)
            continue;
        for (void *c = json_object_iter(calls); c; c = json_object_iter_next(calls, c))
            set_count(b, json_object_iter_key(c), json_object_iter_value(c));
    }
    pthread_mutex_unlock(lock);
    json_t *zero = json_integer(0);
    for (void *it = json_object_iter(routes); it && zero; it = json_object_iter_next(routes, it)) {
        json_t *b = json_object_iter_value(it);
        for (size_t i = 0; i < sizeof call_keys / sizeof call_keys[0]; i++)
            if (!json_object_get(b, call_keys[i]))
                set_count(b, call_keys[i], zero);
        if (!json_object_get(b, "stalls"))
            set_count(b, "stalls", zero);
    }
    json_decref(zero);
    return routes;
}

static json_t *pool_json(jsond_pool *pool)
{
    jsond_pool_stats ps;
    jsond_pool_get_stats(pool, &ps);
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:{s:f,s:f},s:{s:f,s:f}}", "threads",
                     (json_int_t)ps.threads, "live", (json_int_t)ps.live, "queue_limit",
                     (json_int_t)ps.queue_limit, "busy", (json_int_t)ps.busy, "queued",
                     (json_int_t)ps.queued, "queue_peak", (json_int_t)ps.queue_peak, "rejected",
                     (json_int_t)ps.rejected, "timed_out", (json_int_t)ps.timed_out, "late",
                     (json_int_t)ps.late, "queue_wait_ms", "p50", ps.queue_wait_p50_ms, "p99",
                     ps.queue_wait_p99_ms, "run_ms", "p50", ps.run_p50_ms, "p99", ps.run_p99_ms);
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
    json_t *stalls = json_pack("{s:I,s:f,s:s?}", "count", (json_int_t)st->stalls, "worst_ms",
                               (double)st->worst_stall_ns / 1e6, "worst_route",
                               st->worst_stall_route[0] ? st->worst_stall_route : NULL);
    return json_pack("{s:I,s:{s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I},s:{s:I,s:I,s:o},s:o,s:o}",
                     "uptime_ms", (json_int_t)((now() - st->started) * 1000), "connections", "open",
                     (json_int_t)c->open, "total", (json_int_t)c->accepted, "refused",
                     (json_int_t)c->refused, "dropped", (json_int_t)c->dropped, "reset",
                     (json_int_t)c->reset, "cut", (json_int_t)c->cut, "bytes", "in",
                     (json_int_t)st->bytes_in, "out", (json_int_t)c->bytes_out, "requests", "total",
                     (json_int_t)st->requests, "errors", (json_int_t)st->errors, "routes",
                     routes_json(st), "pools", pools, "stalls", stalls);
}
