/* builtin.c: the handlers compiled into jsond.
 *
 * All of them are async: they run on the loop thread and never block. One
 * that waits (sleep) arms a timer on the loop and replies from it.
 *
 * They see a request only through accessors: the public ones any handler
 * module has (jsond.h), and for stats, health, routes and big's cap, the
 * few of req.h that only the server's own handlers get.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "handler.h"
#include "req.h"
#include "stats.h"

struct jsond_builtin {
    const char *name;
    jsond_async_fn fn;
};

/* ---- hello: the classic object ---------------------------------------- */

static void hello_run(jsond_req *req, json_t *args)
{
    (void)args;
    jsond_reply(req, json_pack("{s:s,s:s}", "msg", "Hello World", "data", "x"));
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

static const jsond_producer_ops big_ops = {big_proceed, big_stop};

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

/* The cap comes from the route's config only (fixed_args, else args): a
 * client that sends its own max_size cannot raise it. */
static int big_max(jsond_req *req, json_int_t *max)
{
    const cfg_route *r = jsond_req_route_config(req);
    json_t *v = json_object_get(r->fixed_args, "max_size");
    if (!v)
        v = json_object_get(r->args, "max_size");
    if (!v) {
        *max = BIG_DEFAULT_MAX;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        jsond_reply_error(req, JSOND_HANDLER_FAILED,
                          "route %s: 'max_size' must be a non-negative integer", r->name);
        return -1;
    }
    *max = json_integer_value(v);
    return 0;
}

static void big_run(jsond_req *req, json_t *args)
{
    json_int_t size, max;
    if (int_arg(req, args, "size", BIG_DEFAULT_SIZE, &size) < 0 || big_max(req, &max) < 0)
        return;
    if (size > max) {
        jsond_reply_error(req, JSOND_BAD_REQUEST, "size %lld exceeds max_size %lld",
                          (long long)size, (long long)max);
        return;
    }
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

static json_t *route_json(const cfg_route *r)
{
    /* The config accepts only KIND:ARG handlers, so the colon is there. */
    size_t kind = strcspn(r->handler, ":");
    /* Every handler of this version is async, as resolved at load: it runs
     * on the loop, in no pool. */
    const jsond_handler *h = jsond_handler_of(r);
    return json_pack("{s:s,s:s,s:s%,s:s,s:n}", "name", r->name, "handler", r->handler, "kind",
                     r->handler, kind, "color", jsond_color_name(h ? h->color : JSOND_COLOR_ASYNC),
                     "pool");
}

static void routes_run(jsond_req *req, json_t *args)
{
    (void)args;
    const jsond_config *cfg = jsond_req_config(req);
    json_t *list = json_array();
    for (size_t i = 0; list && i < cfg->nroutes; i++) {
        if (json_array_append_new(list, route_json(&cfg->routes[i])) < 0) {
            json_decref(list);
            list = NULL;
        }
    }
    /* A NULL reply (out of memory) becomes an internal error. */
    jsond_reply(req, json_pack("{s:o}", "routes", list));
}

/* ---- sleep: reply after `ms` milliseconds, from a timer ---------------- */

#define SLEEP_MAX_MS 3600000 /* one hour */

/* The reply is made when the timer is armed, so the timer can only hand
 * it over; the cancel hook drops it instead. One of the two runs. */
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
    if (int_arg(req, args, "ms", 0, &ms) < 0)
        return;
    if (ms > SLEEP_MAX_MS) {
        jsond_reply_error(req, JSOND_BAD_REQUEST, "'ms' must be at most %d", SLEEP_MAX_MS);
        return;
    }
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

/* ---- the table ------------------------------------------------------- */

static const jsond_builtin builtins[] = {
    {"hello", hello_run},   {"big", big_run},     {"echo", echo_run},   {"health", health_run},
    {"routes", routes_run}, {"sleep", sleep_run}, {"stats", stats_run},
};

const jsond_builtin *jsond_builtin_find(const char *name)
{
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(builtins[i].name, name) == 0)
            return &builtins[i];
    return NULL;
}

jsond_async_fn jsond_builtin_fn(const jsond_builtin *b)
{
    return b->fn;
}
