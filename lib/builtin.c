/* builtin.c: the handlers compiled into jsond.
 *
 * Most are async: they run on the loop thread and never block. sleep is
 * dual: on the loop it arms a timer and replies from it, on a worker it
 * blocks in nanosleep like the legacy call it stands in for. records is
 * sync: a legacy generator that streams its output.
 *
 * They see a request only through accessors: the public ones any handler
 * module has (jsond.h), and for stats, health, routes and big's cap, the
 * few of req.h that only the server's own handlers get.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <event2/buffer.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "builtin.h"
#include "handler.h"
#include "req.h"
#include "stats.h"

/* ---- hello: the classic object ---------------------------------------- */

/* Clients get these bytes as they are; a call from another handler gets
 * them parsed. */
#define HELLO_TEXT "{\"msg\":\"Hello World\",\"data\":\"x\"}"

static void hello_run(jsond_req *req, json_t *args)
{
    (void)args;
    jsond_reply(req, json_loads(HELLO_TEXT, 0, NULL));
}

/* ---- big: the same object with `size` x's, produced piece by piece ----- */

#define BIG_DEFAULT_SIZE 10000000
#define BIG_DEFAULT_MAX  (1024LL * 1024 * 1024)
#define BIG_HEAD         "{\"msg\":\"Hello World\",\"data\":\""
#define BIG_TAIL         "\"}"

/* The x's are referenced, not copied, into the output: a 1 GB reply costs
 * chain headers, never a copy of its payload. Initialised statically: any
 * thread may read it, and none writes it. */
#define X16  "xxxxxxxxxxxxxxxx"
#define X256 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16
#define X4K  X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256
#define X64K X4K X4K X4K X4K X4K X4K X4K X4K X4K X4K X4K X4K X4K X4K X4K X4K
static const char xs[] = X64K;
#define XS_LEN (sizeof xs - 1)

typedef struct big {
    json_int_t left;
    int started;
} big;

static jsond_produce big_proceed(void *self, struct evbuffer *out, size_t want)
{
    big *b = self;
    if (!b->started) {
        b->started = 1;
        if (evbuffer_add_reference(out, BIG_HEAD, sizeof BIG_HEAD - 1, NULL, NULL) < 0)
            return JSOND_PRODUCE_ERROR;
    }
    while (b->left > 0 && want > 0) {
        size_t n = XS_LEN;
        if ((json_int_t)n > b->left)
            n = (size_t)b->left;
        if (evbuffer_add_reference(out, xs, n, NULL, NULL) < 0)
            return JSOND_PRODUCE_ERROR;
        b->left -= (json_int_t)n;
        want = n < want ? want - n : 0;
    }
    if (b->left > 0)
        return JSOND_PRODUCE_MORE;
    if (evbuffer_add_reference(out, BIG_TAIL, sizeof BIG_TAIL - 1, NULL, NULL) < 0)
        return JSOND_PRODUCE_ERROR;
    return JSOND_PRODUCE_DONE;
}

static void big_stop(void *self)
{
    free(self);
}

static const jsond_producer_ops big_ops = {.proceed = big_proceed, .stop = big_stop};

/* Reads an optional non-negative integer arg; -1 with an error reply sent.
 * Named args need an object: JSON-RPC params by position are refused. The
 * messages name only our own keys, never the client's bytes. */
static int int_arg(jsond_req *req, json_t *args, const char *key, json_int_t dflt, json_int_t *out)
{
    if (!json_is_object(args)) {
        jsond_reply_error(req, JSOND_BAD_REQUEST, "args must be a JSON object");
        return -1;
    }
    json_t *v = json_object_get(args, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        jsond_reply_error(req, JSOND_BAD_REQUEST, "'%s' must be a non-negative integer", key);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

/* An arg bounded by a cap `key` that comes from the route's config only
 * (fixed_args, else args): a client that sends its own cap cannot raise
 * it. -1 with an error reply sent. */
static int capped_arg(jsond_req *req, json_t *args, const char *name, json_int_t dflt,
                      const char *key, json_int_t dflt_cap, json_int_t *out)
{
    if (int_arg(req, args, name, dflt, out) < 0)
        return -1;
    const cfg_route *r = jsond_req_route_config(req);
    json_t *v = json_object_get(r->fixed_args, key);
    if (!v)
        v = json_object_get(r->args, key);
    json_int_t cap = dflt_cap;
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            jsond_reply_error(req, JSOND_HANDLER_FAILED,
                              "route %s: '%s' must be a non-negative integer", r->name, key);
            return -1;
        }
        cap = json_integer_value(v);
    }
    if (*out > cap) {
        jsond_reply_error(req, JSOND_BAD_REQUEST, "%s %lld exceeds %s %lld", name, (long long)*out,
                          key, (long long)cap);
        return -1;
    }
    return 0;
}

static void big_run(jsond_req *req, json_t *args)
{
    json_int_t size;
    if (capped_arg(req, args, "size", BIG_DEFAULT_SIZE, "max_size", BIG_DEFAULT_MAX, &size) < 0)
        return;
    big *b = calloc(1, sizeof *b);
    if (!b) {
        jsond_reply_error(req, JSOND_INTERNAL, "out of memory");
        return;
    }
    b->left = size;
    jsond_reply_producer(req, &big_ops, b);
}

/* ---- echo: the args as they came (merged with the route's) ----------- */

static void echo_run(jsond_req *req, json_t *args)
{
    jsond_reply(req, json_incref(args));
}

/* ---- health: up, or on the way down --------------------------------- */

static void health_run(jsond_req *req, json_t *args)
{
    (void)args;
    jsond_reply(req,
                json_pack("{s:s}", "status", jsond_req_stats(req)->draining ? "draining" : "ok"));
}

/* ---- stats: the server's counters (shape in jsond(8)) --------------- */

static void stats_run(jsond_req *req, json_t *args)
{
    (void)args;
    jsond_reply(req, jsond_stats_json(jsond_req_stats(req)));
}

/* ---- routes: the routes of the request's config, in file order ------- */

static json_t *route_json(const jsond_config *cfg, const cfg_route *r)
{
    /* The config accepts only KIND:ARG handlers, so the colon is there. */
    size_t kind = strcspn(r->handler, ":");
    const jsond_handler *h = jsond_handler_of(r);
    if (!h)
        return NULL; /* a config read without the registry: a bug */
    const char *runs_on = h->pool == JSOND_ON_LOOP ? "loop" : cfg->pools[h->pool].name;
    const char *policy = jsond_route_policy(cfg, r) == JSOND_POLICY_STRICT ? "strict" : "adaptive";
    return json_pack("{s:s,s:s,s:s%,s:s,s:s?,s:s,s:s}", "name", r->name, "handler", r->handler,
                     "kind", r->handler, kind, "color", jsond_color_name(h->color), "pool", r->pool,
                     "runs_on", runs_on, "policy", policy);
}

static void routes_run(jsond_req *req, json_t *args)
{
    (void)args;
    const jsond_config *cfg = jsond_req_config(req);
    json_t *list = json_array();
    for (size_t i = 0; list && i < cfg->nroutes; i++) {
        if (json_array_append_new(list, route_json(cfg, &cfg->routes[i])) < 0) {
            json_decref(list);
            list = NULL;
        }
    }
    /* A NULL reply (out of memory) becomes an internal error. */
    jsond_reply(req, json_pack("{s:o}", "routes", list));
}

/* ---- sleep: reply after `ms` milliseconds ------------------------------ */

#define SLEEP_MAX_MS 3600000 /* one hour */

/* -1 with an error reply sent. */
static int sleep_ms(jsond_req *req, json_t *args, json_int_t *ms)
{
    if (int_arg(req, args, "ms", 0, ms) < 0)
        return -1;
    if (*ms > SLEEP_MAX_MS) {
        jsond_reply_error(req, JSOND_BAD_REQUEST, "'ms' must be at most %d", SLEEP_MAX_MS);
        return -1;
    }
    return 0;
}

/* The async half: a timer on the loop. The reply is made when the timer is
 * armed, so the timer can only hand it over; the cancel hook drops it
 * instead. One of the two runs. */
static void sleep_timer_cb(jsond_req *req, void *arg)
{
    jsond_reply(req, arg);
}

/* The connection went away mid-sleep: the reply is owed all the same (it
 * is what lets go of the request, and the timer with it), but nobody reads
 * it, so it is empty. */
static void sleep_cancel_cb(jsond_req *req, void *arg)
{
    json_decref(arg);
    jsond_reply(req, NULL);
}

static void sleep_run(jsond_req *req, json_t *args)
{
    json_int_t ms;
    if (sleep_ms(req, args, &ms) < 0)
        return;
    json_t *reply = json_pack("{s:I}", "slept_ms", ms);
    if (!reply) {
        jsond_reply_error(req, JSOND_INTERNAL, "out of memory");
        return;
    }
    /* At most an hour: fits an unsigned. */
    if (!jsond_req_timer(req, (unsigned)ms, sleep_timer_cb, reply)) {
        json_decref(reply);
        jsond_reply_error(req, JSOND_INTERNAL, "cannot arm a timer");
        return;
    }
    jsond_req_on_cancel(req, sleep_cancel_cb, reply);
}

/* The sync half: the stand-in for a blocking legacy call, which nothing
 * interrupts (it does not poll jsond_req_expired: a stuck worker is what
 * shutdown must cope with). */
static json_t *sleep_block(jsond_req *req, json_t *args)
{
    json_int_t ms;
    if (sleep_ms(req, args, &ms) < 0)
        return NULL;
    struct timespec t = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    /* 0 ms is no sleep at all, not a trip through the scheduler. */
    while (ms > 0 && nanosleep(&t, &t) < 0 && errno == EINTR)
        ;
    return json_pack("{s:I}", "slept_ms", ms);
}

/* ---- records: a legacy generator of unbounded output ------------------- */

#define RECORDS_DEFAULT_COUNT 1000
#define RECORDS_DEFAULT_SIZE  64
#define RECORDS_MAX_COUNT     100000000LL
#define RECORDS_MAX_SIZE      (1024LL * 1024)

/* [{"i": 0, "data": "xx..."}, ...]: one object reused, its "i" updated,
 * as a generator walking a table would. */
static json_t *records_run(jsond_req *req, json_t *args)
{
    json_int_t count, size;
    if (capped_arg(req, args, "count", RECORDS_DEFAULT_COUNT, "max_count", RECORDS_MAX_COUNT,
                   &count) < 0 ||
        capped_arg(req, args, "size", RECORDS_DEFAULT_SIZE, "max_size", RECORDS_MAX_SIZE, &size) <
            0)
        return NULL;
    char *data = malloc((size_t)size + 1);
    json_t *item = data ? json_object() : NULL;
    json_t *i = json_integer(0);
    if (data) {
        memset(data, 'x', (size_t)size);
        data[size] = '\0';
    }
    if (!item || !i || json_object_set(item, "i", i) < 0 ||
        json_object_set_new(item, "data", json_stringn_nocheck(data, (size_t)size)) < 0 ||
        jsond_stream_begin(req) < 0) {
        json_decref(i);
        json_decref(item);
        free(data);
        jsond_reply_error(req, JSOND_INTERNAL, "out of memory");
        return NULL;
    }
    free(data);
    /* The item is serialized before jsond_stream_item returns, so one
     * object serves for all; a failure means the client is gone. */
    for (json_int_t n = 0; n < count; n++) {
        json_integer_set(i, n);
        if (jsond_stream_item(req, json_incref(item)) < 0)
            break;
    }
    jsond_stream_end(req);
    json_decref(i);
    json_decref(item);
    return NULL;
}

/* ---- the table ------------------------------------------------------- */

#define ASYNC(name, fn)                                                                            \
    {                                                                                              \
        name, JSOND_COLOR_ASYNC, NULL, fn, NULL                                                    \
    }
static const jsond_builtin builtins[] = {
    {"hello", JSOND_COLOR_ASYNC, NULL, hello_run, HELLO_TEXT "\n"},
    ASYNC("big", big_run),
    ASYNC("echo", echo_run),
    ASYNC("health", health_run),
    {"records", JSOND_COLOR_SYNC, records_run, NULL, NULL},
    ASYNC("routes", routes_run),
    {"sleep", JSOND_COLOR_DUAL, sleep_block, sleep_run, NULL},
    ASYNC("stats", stats_run),
};

static const jsond_builtin *tests;
static size_t ntests;

void jsond_builtin_add_tests(const jsond_builtin *table, size_t n)
{
    tests = table;
    ntests = n;
}

static const jsond_builtin *find_in(const jsond_builtin *table, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

const jsond_builtin *jsond_builtin_find(const char *name)
{
    const jsond_builtin *b = find_in(builtins, sizeof builtins / sizeof builtins[0], name);
    return b ? b : find_in(tests, ntests, name);
}

void jsond_builtin_impl(const jsond_builtin *b, jsond_handler *h)
{
    h->color = b->color;
    h->sync_fn = b->sync_fn;
    h->async_fn = b->async_fn;
    h->fixed = b->fixed;
    h->fixed_len = b->fixed ? strlen(b->fixed) - 1 : 0; /* without its '\n' */
}
