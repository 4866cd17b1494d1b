/* check_builtin.c: the built-in handlers, driven directly.
 *
 * Each test builds a request with jsond_req_new() on a real event base, runs
 * the handler on the "loop" (this thread, marked JSOND_CTX_LOOP), and looks
 * at what reached the done callback: the reply JSON, or the error code and
 * message. Handlers that reply later (sleep) are driven by running the loop
 * with every wait bounded. Run under valgrind (CK_FORK=no) to see that a
 * cancelled request leaves nothing behind.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "builtin.h"
#include "config.h"
#include "req.h"
#include "stats.h"
#include "unit.h"

/* What the done callback saw. */
typedef struct result {
    int done; /* times called */
    json_t *reply;
    int failed;
    jsond_code code;
    char message[256];
    double at; /* when, in monotonic seconds */
} result;

static struct event_base *base;
static jsond_stats stats;
static jsond_config *cfg;
static jsond_req_env env;

/* No deadline: the builtins alone are under test (check_req tests it). */
static const char conf[] = "[server]\n"
                           "request_timeout = 0\n"
                           "[listen l]\n"
                           "requests = yes\n"
                           "[route hello]\n"
                           "handler = builtin:hello\n"
                           "[route echo]\n"
                           "handler = builtin:echo\n"
                           "args = {\"ignored\": \"by echo, merged by the router\"}\n"
                           "[route health]\n"
                           "handler = builtin:health\n"
                           "[route routes]\n"
                           "handler = builtin:routes\n"
                           "[route sleep]\n"
                           "handler = builtin:sleep\n"
                           "[route stats]\n"
                           "handler = builtin:stats\n"
                           "[route big]\n"
                           "handler = builtin:big\n"
                           "[route big10]\n"
                           "handler = builtin:big\n"
                           "args = {\"max_size\": 10}\n";

static void setup(void)
{
    base = precise_base();
    jsond_context_set(JSOND_CTX_LOOP);
    ck_assert_int_eq(jsond_stats_init(&stats), 0);
    cfg = jsond_config_parse("t.conf", conf, sizeof conf - 1, NULL);
    ck_assert_ptr_nonnull(cfg);
    env = (jsond_req_env){.base = base, .stats = &stats};
}

static void teardown(void)
{
    jsond_config_unref(cfg);
    jsond_stats_fini(&stats);
    event_base_free(base);
    jsond_context_set(JSOND_CTX_OTHER);
}

/* Takes the reply, as the connection does, and frees the request. */
static void done_cb(jsond_req *req, void *arg)
{
    result *r = arg;
    r->done++;
    r->reply = req->out.reply;
    req->out.reply = NULL;
    r->failed = req->out.failed;
    r->code = req->out.code;
    memcpy(r->message, req->out.message, sizeof r->message);
    r->at = now();
    jsond_req_release(req);
}

/* Only counts: the test keeps the request, as a connection does while
 * earlier replies are still ahead of it in the pipeline. */
static void keep_cb(jsond_req *req, void *arg)
{
    (void)req;
    ++*(int *)arg;
}

static void result_fini(result *r)
{
    json_decref(r->reply);
}

/* A request for route NAME with ARGS (stolen), not yet run. */
static jsond_req *request_cb(const char *name, json_t *args, jsond_req_done_fn done, void *arg)
{
    const cfg_route *route = jsond_config_route(cfg, name);
    ck_assert_ptr_nonnull(route);
    const jsond_handler *h = jsond_handler_of(route); /* resolved at load */
    ck_assert_ptr_nonnull(h);
    jsond_req *req = jsond_req_new(cfg, route, h, args, &env, done, arg);
    ck_assert_ptr_nonnull(req);
    return req;
}

static jsond_req *request(const char *name, json_t *args, result *r)
{
    memset(r, 0, sizeof *r);
    return request_cb(name, args, done_cb, r);
}

/* Runs route NAME with ARGS (stolen; NULL: {}) and expects a reply at once. */
static void call(const char *name, json_t *args, result *r)
{
    jsond_req_run(request(name, args ? args : json_object(), r));
    ck_assert_int_eq(r->done, 1);
}

/* The same, expecting a JSON reply equal to WANT (stolen). */
static void call_expect(const char *name, json_t *args, json_t *want)
{
    result r;
    call(name, args, &r);
    ck_assert_int_eq(r.failed, 0);
    ck_assert_ptr_nonnull(r.reply);
    char *got = json_dumps(r.reply, JSON_COMPACT | JSON_SORT_KEYS);
    char *exp = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_str_eq(got, exp);
    free(got);
    free(exp);
    json_decref(want);
    result_fini(&r);
}

/* The same, expecting an error reply. */
static void call_error(const char *name, json_t *args, jsond_code code, const char *message)
{
    result r;
    call(name, args, &r);
    ck_assert_int_eq(r.failed, 1);
    ck_assert_ptr_null(r.reply);
    ck_assert_str_eq(jsond_code_name(r.code), jsond_code_name(code));
    ck_assert_str_eq(r.message, message);
    result_fini(&r);
}

/* Runs the loop until every result in R[0..n) is done or `limit_s` passed. */
static void run_until_done(result *r, size_t n, double limit_s)
{
    double end = now() + limit_s;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += r[i].done != 0;
        if (done == n || now() > end)
            return;
        /* EVLOOP_ONCE waits for the next timer; 1 means none is pending. */
        if (event_base_loop(base, EVLOOP_ONCE) == 1)
            return;
    }
}

static int pending_events(void)
{
    return event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED);
}

/* ---- the table ---------------------------------------------------------- */

START_TEST(test_find)
{
    static const struct {
        const char *name;
        jsond_color color;
    } want[] = {
        {"hello", JSOND_COLOR_ASYNC},  {"big", JSOND_COLOR_ASYNC},    {"echo", JSOND_COLOR_ASYNC},
        {"health", JSOND_COLOR_ASYNC}, {"routes", JSOND_COLOR_ASYNC}, {"stats", JSOND_COLOR_ASYNC},
        {"sleep", JSOND_COLOR_DUAL},   {"records", JSOND_COLOR_SYNC},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const jsond_builtin *b = jsond_builtin_find(want[i].name);
        ck_assert_msg(b != NULL, "no builtin %s", want[i].name);
        jsond_handler h = {0};
        jsond_builtin_impl(b, &h);
        ck_assert_msg(h.color == want[i].color, "%s is %s", want[i].name,
                      jsond_color_name(h.color));
        /* A colour promises the halves it names, and only those. */
        ck_assert_int_eq(h.sync_fn != NULL, h.color != JSOND_COLOR_ASYNC);
        ck_assert_int_eq(h.async_fn != NULL, h.color != JSOND_COLOR_SYNC);
    }
    ck_assert_ptr_null(jsond_builtin_find("nope"));
    ck_assert_ptr_null(jsond_builtin_find(""));
    ck_assert_ptr_null(jsond_builtin_find("Hello"));
}
END_TEST

/* ---- hello, big ---------------------------------------------------------- */

START_TEST(test_hello)
{
    call_expect("hello", NULL, json_pack("{s:s,s:s}", "msg", "Hello World", "data", "x"));
}
END_TEST

START_TEST(test_big)
{
    result r;
    call("big", json_pack("{s:i}", "size", 10), &r);
    ck_assert_int_eq(r.failed, 0);
    ck_assert_ptr_null(r.reply);
    /* The reply is a producer; drain it by hand. */
    int done = 0;
    jsond_req *req = request_cb("big", json_pack("{s:i}", "size", 70000), keep_cb, &done);
    jsond_req_run(req);
    ck_assert_int_eq(done, 1);
    ck_assert_ptr_nonnull(req->out.ops);
    struct evbuffer *out = evbuffer_new();
    int rc;
    while ((rc = req->out.ops->proceed(req->out.self, out, 16384)) == 0)
        ;
    ck_assert_int_eq(rc, 1);
    ck_assert_uint_eq(evbuffer_get_length(out),
                      70000 + strlen("{\"msg\":\"Hello World\",\"data\":\"\"}"));
    evbuffer_free(out);
    jsond_req_release(req);

    /* The cap is the route's own: a client's max_size cannot raise it. */
    call_error("big10", json_pack("{s:i}", "size", 11), JSOND_BAD_REQUEST,
               "size 11 exceeds max_size 10");
    call_error("big10", json_pack("{s:i,s:I}", "size", 11, "max_size", (json_int_t)1 << 40),
               JSOND_BAD_REQUEST, "size 11 exceeds max_size 10");
    call("big10", json_pack("{s:i}", "size", 10), &r);
    ck_assert_int_eq(r.failed, 0);
    call_error("big", json_pack("{s:s}", "size", "10"), JSOND_BAD_REQUEST,
               "'size' must be a non-negative integer");
    call_error("big", json_pack("[i]", 10), JSOND_BAD_REQUEST, "args must be a JSON object");
}
END_TEST

/* ---- echo ---------------------------------------------------------------- */

START_TEST(test_echo)
{
    call_expect("echo", json_pack("{s:i,s:[i,s],s:n}", "a", 1, "b", 2, "c", "z"),
                json_pack("{s:i,s:[i,s],s:n}", "a", 1, "b", 2, "c", "z"));
    call_expect("echo", NULL, json_object());
    /* JSON-RPC params by position reach the handler as the array. */
    call_expect("echo", json_pack("[i,s,{}]", 1, "two"), json_pack("[i,s,{}]", 1, "two"));
}
END_TEST

/* ---- health -------------------------------------------------------------- */

START_TEST(test_health)
{
    call_expect("health", NULL, json_pack("{s:s}", "status", "ok"));
    stats.draining = 1;
    call_expect("health", NULL, json_pack("{s:s}", "status", "draining"));
    stats.draining = 0;
    call_expect("health", json_pack("{s:i}", "ignored", 1), json_pack("{s:s}", "status", "ok"));
}
END_TEST

/* ---- stats --------------------------------------------------------------- */

static json_int_t int_at(const json_t *obj, const char *path)
{
    char key[64];
    const char *dot;
    while ((dot = strchr(path, '.'))) {
        snprintf(key, sizeof key, "%.*s", (int)(dot - path), path);
        obj = json_object_get(obj, key);
        ck_assert_msg(obj != NULL, "no %s", key);
        path = dot + 1;
    }
    const json_t *v = json_object_get(obj, path);
    ck_assert_msg(json_is_integer(v), "%s is not an integer", path);
    return json_integer_value(v);
}

START_TEST(test_stats)
{
    stats.conns.accepted = 7;
    stats.conns.refused = 1;
    stats.conns.dropped = 2;
    stats.conns.reset = 3;
    stats.conns.cut = 4;
    stats.conns.open = 5;
    stats.conns.bytes_out = 1000;
    stats.bytes_in = 300;
    jsond_stats_request(&stats, "hello");
    jsond_stats_request(&stats, "hello");
    jsond_stats_error(&stats, "hello", JSOND_BAD_REQUEST);
    jsond_stats_request(&stats, NULL);
    jsond_stats_error(&stats, NULL, JSOND_NOT_FOUND);
    jsond_stats_error(&stats, NULL, JSOND_NOT_FOUND);

    result r;
    call("stats", NULL, &r);
    ck_assert_int_eq(r.failed, 0);
    const json_t *s = r.reply;
    ck_assert(json_is_integer(json_object_get(s, "uptime_ms")));
    ck_assert(json_integer_value(json_object_get(s, "uptime_ms")) >= 0);
    ck_assert_int_eq(int_at(s, "connections.open"), 5);
    ck_assert_int_eq(int_at(s, "connections.total"), 7);
    ck_assert_int_eq(int_at(s, "connections.refused"), 1);
    ck_assert_int_eq(int_at(s, "connections.dropped"), 2);
    ck_assert_int_eq(int_at(s, "connections.reset"), 3);
    ck_assert_int_eq(int_at(s, "connections.cut"), 4);
    ck_assert_int_eq(int_at(s, "bytes.in"), 300);
    ck_assert_int_eq(int_at(s, "bytes.out"), 1000);
    ck_assert_int_eq(int_at(s, "requests.total"), 3);
    ck_assert_int_eq(int_at(s, "requests.errors"), 3);
    ck_assert_int_eq(int_at(s, "requests.routes.hello.requests"), 2);
    ck_assert_int_eq(int_at(s, "requests.routes.hello.errors.bad_request"), 1);
    /* Requests for routes that do not exist share one bucket. */
    const json_t *routes = json_object_get(json_object_get(s, "requests"), "routes");
    ck_assert_uint_eq(json_object_size(routes), 2);
    const json_t *unknown = json_object_get(routes, "(unknown)");
    ck_assert_int_eq(int_at(unknown, "requests"), 1);
    ck_assert_int_eq(int_at(unknown, "errors.not_found"), 2);

    /* The reply is a snapshot: counting goes on without changing it. */
    jsond_stats_request(&stats, "hello");
    jsond_stats_request(&stats, "echo");
    ck_assert_int_eq(int_at(s, "requests.routes.hello.requests"), 2);
    ck_assert_uint_eq(json_object_size(routes), 2);
    result_fini(&r);
}
END_TEST

/* Calls between routes: counted per route, every route shows the three
 * counters, and a route only handlers called has a bucket of its own. */
START_TEST(test_stats_calls)
{
    jsond_stats_request(&stats, "hello");
    jsond_stats_call(&stats, "hello", JSOND_CALLED);
    jsond_stats_call(&stats, "hello", JSOND_CALLED);
    jsond_stats_call(&stats, "hello", JSOND_CALL_ADAPTED);
    jsond_stats_call(&stats, "inner", JSOND_CALL_REFUSED);
    result r;
    call("stats", NULL, &r);
    ck_assert_int_eq(r.failed, 0);
    const json_t *s = r.reply;
    ck_assert_int_eq(int_at(s, "requests.routes.hello.requests"), 1);
    ck_assert_int_eq(int_at(s, "requests.routes.hello.calls"), 2);
    ck_assert_int_eq(int_at(s, "requests.routes.hello.adapted"), 1);
    ck_assert_int_eq(int_at(s, "requests.routes.hello.refused_wrong_color"), 0);
    ck_assert_int_eq(int_at(s, "requests.routes.inner.requests"), 0);
    ck_assert_int_eq(int_at(s, "requests.routes.inner.calls"), 0);
    ck_assert_int_eq(int_at(s, "requests.routes.inner.refused_wrong_color"), 1);
    /* A snapshot: later calls do not change it. */
    jsond_stats_call(&stats, "hello", JSOND_CALLED);
    ck_assert_int_eq(int_at(s, "requests.routes.hello.calls"), 2);
    result_fini(&r);
}
END_TEST

/* ---- routes -------------------------------------------------------------- */

START_TEST(test_routes)
{
    static const char *const names[] = {"hello", "echo",  "health", "routes",
                                        "sleep", "stats", "big",    "big10"};
    result r;
    call("routes", NULL, &r);
    ck_assert_int_eq(r.failed, 0);
    ck_assert_uint_eq(json_object_size(r.reply), 1);
    const json_t *list = json_object_get(r.reply, "routes");
    ck_assert_uint_eq(json_array_size(list), sizeof names / sizeof names[0]);
    /* In config order, every field of every entry. */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char handler[64];
        snprintf(handler, sizeof handler, "builtin:%.*s", (int)strcspn(names[i], "1"), names[i]);
        /* sleep is dual; with no pool key its async half runs on the loop. */
        const char *color = strcmp(names[i], "sleep") == 0 ? "dual" : "async";
        json_t *want =
            json_pack("{s:s,s:s,s:s,s:s,s:n,s:s,s:s}", "name", names[i], "handler", handler, "kind",
                      "builtin", "color", color, "pool", "runs_on", "loop", "policy", "adaptive");
        ck_assert_msg(json_equal(json_array_get(list, i), want), "entry %zu", i);
        json_decref(want);
    }
    result_fini(&r);

    /* The listing is of the request's own config snapshot. */
    static const char other[] = "[route b]\nhandler = builtin:stats\n"
                                "[route a]\nhandler = builtin:routes\n"
                                "[listen l]\n"; /* a config must have one */
    jsond_config *old = cfg;
    cfg = jsond_config_parse("u.conf", other, sizeof other - 1, NULL);
    ck_assert_ptr_nonnull(cfg);
    call_expect("a", NULL,
                json_pack("{s:[{s:s,s:s,s:s,s:s,s:n,s:s,s:s},{s:s,s:s,s:s,s:s,s:n,s:s,s:s}]}",
                          "routes", "name", "b", "handler", "builtin:stats", "kind", "builtin",
                          "color", "async", "pool", "runs_on", "loop", "policy", "adaptive", "name",
                          "a", "handler", "builtin:routes", "kind", "builtin", "color", "async",
                          "pool", "runs_on", "loop", "policy", "adaptive"));
    jsond_config_unref(cfg);
    cfg = old;
}
END_TEST

/* ---- sleep --------------------------------------------------------------- */

START_TEST(test_sleep)
{
    result r;
    double t0 = now();
    jsond_req_run(request("sleep", json_pack("{s:i}", "ms", 50), &r));
    /* The handler returned at once: the wait is a timer on the loop. */
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(pending_events(), 1);
    run_until_done(&r, 1, 5.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.failed, 0);
    ck_assert_msg(r.at - t0 >= 0.050, "replied after %.3f s", r.at - t0);
    ck_assert_msg(r.at - t0 < 2.0, "replied after %.3f s", r.at - t0);
    ck_assert_int_eq(json_integer_value(json_object_get(r.reply, "slept_ms")), 50);
    ck_assert_uint_eq(json_object_size(r.reply), 1);
    ck_assert_int_eq(pending_events(), 0);
    result_fini(&r);
}
END_TEST

START_TEST(test_sleep_default_and_zero)
{
    /* Even 0 ms replies from the loop, never from inside the call. */
    result r[2];
    jsond_req_run(request("sleep", json_object(), &r[0]));
    jsond_req_run(request("sleep", json_pack("{s:i}", "ms", 0), &r[1]));
    ck_assert_int_eq(r[0].done + r[1].done, 0);
    run_until_done(r, 2, 5.0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(r[i].done, 1);
        ck_assert_int_eq(json_integer_value(json_object_get(r[i].reply, "slept_ms")), 0);
        result_fini(&r[i]);
    }
}
END_TEST

START_TEST(test_sleep_concurrent)
{
    /* Two sleeps overlap on one loop: the shorter replies first, and the
     * pair takes about as long as the longer one, not the sum. */
    result r[2];
    double t0 = now();
    jsond_req_run(request("sleep", json_pack("{s:i}", "ms", 200), &r[0]));
    jsond_req_run(request("sleep", json_pack("{s:i}", "ms", 50), &r[1]));
    run_until_done(r, 2, 5.0);
    ck_assert_int_eq(r[0].done, 1);
    ck_assert_int_eq(r[1].done, 1);
    ck_assert(r[1].at < r[0].at);
    ck_assert_msg(r[1].at - t0 >= 0.050, "%.3f", r[1].at - t0);
    ck_assert_msg(r[0].at - t0 >= 0.200, "%.3f", r[0].at - t0);
    ck_assert_msg(r[0].at - t0 < 2.0, "%.3f", r[0].at - t0);
    result_fini(&r[0]);
    result_fini(&r[1]);
}
END_TEST

START_TEST(test_sleep_cancel)
{
    /* The connection goes away mid-sleep: the hook frees the timer and the
     * request, and done is never called (valgrind checks the frees). */
    result r;
    jsond_req *req = request("sleep", json_pack("{s:i}", "ms", 10000), &r);
    jsond_req_run(req);
    ck_assert_int_eq(pending_events(), 1);
    jsond_req_cancel(req);
    ck_assert_int_eq(pending_events(), 0);
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1);
    ck_assert_int_eq(r.done, 0);

    /* The longest sleep allowed is armed as well, then cancelled. */
    req = request("sleep", json_pack("{s:i}", "ms", 3600000), &r);
    jsond_req_run(req);
    ck_assert_int_eq(r.done, 0);
    jsond_req_cancel(req);
    ck_assert_int_eq(pending_events(), 0);
}
END_TEST

START_TEST(test_sleep_cancel_after_reply)
{
    /* Replied, but the connection goes away before sending the reply: the
     * request is freed, and the sleeper's hook (freed with its timer) must
     * not run again (valgrind would see it). */
    int done = 0;
    jsond_req *req = request_cb("sleep", json_pack("{s:i}", "ms", 1), keep_cb, &done);
    jsond_req_run(req);
    ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE), 0);
    ck_assert_int_eq(done, 1);
    ck_assert_int_eq(json_integer_value(json_object_get(req->out.reply, "slept_ms")), 1);
    ck_assert_int_eq(pending_events(), 0);
    jsond_req_cancel(req);
    ck_assert_int_eq(done, 1);
}
END_TEST

static const struct {
    const char *args; /* JSON */
    const char *message;
} sleep_bad[] = {
    {"{\"ms\": -1}", "'ms' must be a non-negative integer"},
    {"{\"ms\": 1.5}", "'ms' must be a non-negative integer"},
    {"{\"ms\": \"50\"}", "'ms' must be a non-negative integer"},
    {"{\"ms\": \"\\u00ff\\ufffd\"}", "'ms' must be a non-negative integer"},
    {"{\"ms\": null}", "'ms' must be a non-negative integer"},
    {"{\"ms\": 3600001}", "'ms' must be at most 3600000"},
    {"{\"ms\": 9223372036854775807}", "'ms' must be at most 3600000"},
    {"[50]", "args must be a JSON object"},
};

START_TEST(test_sleep_bad_args)
{
    json_t *args = json_loads(sleep_bad[_i].args, 0, NULL);
    ck_assert_ptr_nonnull(args);
    call_error("sleep", args, JSOND_BAD_REQUEST, sleep_bad[_i].message);
    ck_assert_int_eq(pending_events(), 0);
}
END_TEST

static Suite *builtin_suite(void)
{
    Suite *s = suite_create("builtin");
    TCase *tc = tcase_create("immediate");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_find);
    tcase_add_test(tc, test_hello);
    tcase_add_test(tc, test_big);
    tcase_add_test(tc, test_echo);
    tcase_add_test(tc, test_health);
    tcase_add_test(tc, test_stats);
    tcase_add_test(tc, test_stats_calls);
    tcase_add_test(tc, test_routes);
    suite_add_tcase(s, tc);

    tc = tcase_create("sleep");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sleep);
    tcase_add_test(tc, test_sleep_default_and_zero);
    tcase_add_test(tc, test_sleep_concurrent);
    tcase_add_test(tc, test_sleep_cancel);
    tcase_add_test(tc, test_sleep_cancel_after_reply);
    tcase_add_loop_test(tc, test_sleep_bad_args, 0, sizeof sleep_bad / sizeof sleep_bad[0]);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(builtin_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
