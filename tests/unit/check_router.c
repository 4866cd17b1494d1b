/* check_router.c: route lookup, a listener's `routes` list, and args.
 *
 * Configs are parsed from text. Every request the router builds is run:
 * the routes under test are builtin:echo, which replies with the args it
 * was given, so each test compares what a handler really receives. One
 * helper, route_call(), is the only caller of the router: a change of its
 * signature is a change there.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <check.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "req.h"
#include "router.h"
#include "stats.h"

static const char conf[] =
    "[listen open]\n"
    "address = 127.0.0.1:0\n"
    "requests = yes\n"
    "[listen limited]\n"
    "address = 127.0.0.1:0\n"
    "on_connect = hello\n" /* not in its own routes list: on_connect is not restricted */
    "requests = yes\n"
    "routes = echo, defaults\n"
    "[route hello]\n"
    "handler = builtin:hello\n"
    "[route echo]\n"
    "handler = builtin:echo\n"
    "[route defaults]\n"
    "handler = builtin:echo\n"
    "args = {\"a\": 1, \"b\": {\"c\": 2}, \"keep\": \"d\"}\n"
    "[route fixed]\n"
    "handler = builtin:echo\n"
    "args = {\"f\": \"default\", \"g\": 1, \"n\": {\"y\": 0}}\n"
    "fixed_args = {\"f\": \"fixed\", \"n\": {\"x\": 1}}\n"
    "[route onlyfixed]\n"
    "handler = builtin:echo\n"
    "fixed_args = {\"limit\": 10}\n";

static struct event_base *base;
static jsond_stats stats;
static jsond_config *cfg;

/* What the done callback saw. */
typedef struct result {
    int done;
    json_t *reply;
    int failed;
    const char *route; /* the route the request ran as */
} result;

static void done_cb(jsond_req *req, void *arg)
{
    result *r = arg;
    r->done++;
    r->reply = req->out.reply;
    req->out.reply = NULL;
    r->failed = req->out.failed;
    r->route = jsond_req_route(req);
    jsond_req_release(req);
}

static const cfg_listen *listener(const char *name)
{
    for (size_t i = 0; i < cfg->nlistens; i++)
        if (strcmp(cfg->listens[i].name, name) == 0)
            return &cfg->listens[i];
    ck_abort_msg("no listener %s", name);
    return NULL;
}

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    ck_assert_msg(j != NULL, "bad JSON in the test: %s: %s", text, err.text);
    return j;
}

/* The one call of the router. Routes `name` on listener `lst` (NULL: no
 * listener restriction, as for on_connect) with `args` (stolen; NULL: none
 * given). On success the request is run and its reply returned (the
 * caller's reference) with *code untouched; else NULL with *code set. */
static json_t *route_call(const cfg_listen *lst, const char *name, json_t *args, jsond_code *code,
                          const char **ran_as)
{
    result r = {0};
    jsond_req_env env = {.base = base, .stats = &stats};
    jsond_req *req =
        jsond_router_route(cfg, lst, jsond_config_route(cfg, name), args, &env, done_cb, &r, code);
    if (!req)
        return NULL;
    jsond_req_run(req);
    ck_assert_int_eq(r.done, 1); /* echo and hello reply at once */
    ck_assert_int_eq(r.failed, 0);
    ck_assert_ptr_nonnull(r.reply);
    if (ran_as)
        *ran_as = r.route;
    return r.reply;
}

/* Expects route `name` to be callable and its handler to receive (echo:
 * reply) exactly `want` (JSON text) for `args` (JSON text, or NULL). */
static void expect_args(const cfg_listen *lst, const char *name, const char *args, const char *want)
{
    jsond_code code = (jsond_code)-1;
    json_t *got = route_call(lst, name, args ? parse(args) : NULL, &code, NULL);
    ck_assert_msg(got != NULL, "%s %s: not routed (code %d)", name, args ? args : "", code);
    json_t *expect = parse(want);
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    ck_assert_msg(json_equal(got, expect), "%s %s: handler got %s, want %s", name,
                  args ? args : "(none)", g, want);
    free(g);
    json_decref(expect);
    json_decref(got);
}

static void expect_not_found(const cfg_listen *lst, const char *name)
{
    jsond_code code = (jsond_code)-1;
    /* The router takes the args whatever happens: a reference of our own
     * shows that it let go of its one. */
    json_t *args = json_pack("{s:i}", "a", 1);
    json_incref(args);
    json_t *got = route_call(lst, name, args, &code, NULL);
    ck_assert_msg(got == NULL, "%s was routed", name);
    ck_assert_int_eq(code, JSOND_NOT_FOUND);
    ck_assert_int_eq(args->refcount, 1);
    json_decref(args);
}

static void setup(void)
{
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    jsond_context_set(JSOND_CTX_LOOP);
    ck_assert_int_eq(jsond_stats_init(&stats), 0);
    jsond_errors *errs = jsond_errors_new();
    cfg = jsond_config_parse("t.conf", conf, sizeof conf - 1, errs);
    ck_assert_msg(cfg != NULL, "config: %s",
                  jsond_errors_count(errs) ? jsond_errors_get(errs, 0)->text : "?");
    jsond_errors_free(errs);
}

static void teardown(void)
{
    jsond_config_unref(cfg);
    jsond_stats_fini(&stats);
    event_base_free(base);
    jsond_context_set(JSOND_CTX_OTHER);
}

/* ---- lookup --------------------------------------------------------------- */

START_TEST(test_found_runs_that_route)
{
    jsond_code code = (jsond_code)-1;
    const char *ran_as = NULL;
    json_t *reply = route_call(listener("open"), "hello", NULL, &code, &ran_as);
    ck_assert_ptr_nonnull(reply);
    ck_assert_str_eq(ran_as, "hello");
    json_t *hello = parse("{\"msg\": \"Hello World\", \"data\": \"x\"}");
    ck_assert(json_equal(reply, hello));
    json_decref(hello);
    json_decref(reply);
    ck_assert_int_eq(code, (jsond_code)-1); /* untouched on success */

    /* Another route of the same config is that one, not the first. */
    reply = route_call(listener("open"), "echo", parse("{\"k\": [1]}"), &code, &ran_as);
    ck_assert_ptr_nonnull(reply);
    ck_assert_str_eq(ran_as, "echo");
    json_decref(reply);
}
END_TEST

START_TEST(test_not_found)
{
    const cfg_listen *open = listener("open");
    expect_not_found(open, "nosuch");
    expect_not_found(open, "");
    expect_not_found(open, "Hello");  /* names are case-sensitive */
    expect_not_found(open, "hello "); /* and exact */
    expect_not_found(open, "hell");
    expect_not_found(NULL, "nosuch");
    expect_not_found(listener("limited"), "nosuch");
}
END_TEST

/* The router runs what the registry resolved at load and looks nothing up
 * by name: a config read without the registry has nothing to run, and that
 * is a bug, reported as internal rather than guessed at. */
START_TEST(test_unresolved_is_internal)
{
    static const char text[] = "[listen l]\nrequests = yes\n[route r]\nhandler = builtin:echo\n";
    jsond_config *raw = jsond_config_read_text("u.conf", text, sizeof text - 1, NULL, NULL);
    ck_assert_ptr_nonnull(raw);
    jsond_req_env env = {.base = base, .stats = &stats};
    jsond_code code = (jsond_code)-1;
    json_t *args = json_object();
    json_incref(args);
    ck_assert_ptr_null(
        jsond_router_route(raw, NULL, jsond_config_route(raw, "r"), args, &env, NULL, NULL, &code));
    ck_assert_int_eq(code, JSOND_INTERNAL);
    ck_assert_int_eq(args->refcount, 1); /* taken and released all the same */
    json_decref(args);
    jsond_config_unref(raw);
}
END_TEST

/* ---- a listener's routes list ------------------------------------------- */

START_TEST(test_listener_routes_restrict)
{
    const cfg_listen *lim = listener("limited");
    expect_args(lim, "echo", "{\"a\": 1}", "{\"a\": 1}");
    expect_args(lim, "defaults", NULL, "{\"a\": 1, \"b\": {\"c\": 2}, \"keep\": \"d\"}");
    /* Routes that exist but are not in its list are not found there ... */
    expect_not_found(lim, "hello");
    expect_not_found(lim, "fixed");
    expect_not_found(lim, "onlyfixed");
    /* ... and are found where nothing restricts them. */
    expect_args(listener("open"), "fixed", NULL, "{\"f\": \"fixed\", \"g\": 1, \"n\": {\"x\": 1}}");
    expect_args(listener("open"), "onlyfixed", NULL, "{\"limit\": 10}");
}
END_TEST

START_TEST(test_no_listener_is_unrestricted)
{
    /* on_connect routes with no listener: `limited` pushes hello, which its
     * own routes list does not name. */
    ck_assert_str_eq(listener("limited")->on_connect, "hello");
    jsond_code code = (jsond_code)-1;
    const char *ran_as = NULL;
    json_t *reply = route_call(NULL, "hello", NULL, &code, &ran_as);
    ck_assert_ptr_nonnull(reply);
    ck_assert_str_eq(ran_as, "hello");
    json_decref(reply);
    expect_args(NULL, "fixed", "{\"f\": 2}", "{\"f\": \"fixed\", \"g\": 1, \"n\": {\"x\": 1}}");
}
END_TEST

/* ---- args ------------------------------------------------------------------ */

START_TEST(test_no_args_is_empty_object)
{
    const cfg_listen *open = listener("open");
    expect_args(open, "echo", NULL, "{}");
    expect_args(open, "echo", "{}", "{}");
    expect_args(open, "echo", "{\"x\": {\"y\": [null]}}", "{\"x\": {\"y\": [null]}}");
}
END_TEST

START_TEST(test_route_args_are_defaults_under_the_request)
{
    const cfg_listen *open = listener("open");
    expect_args(open, "defaults", NULL, "{\"a\": 1, \"b\": {\"c\": 2}, \"keep\": \"d\"}");
    expect_args(open, "defaults", "{}", "{\"a\": 1, \"b\": {\"c\": 2}, \"keep\": \"d\"}");
    /* The request's args win, key by key; a key replaces the default whole
     * (no deep merge), and null is a value like any other. */
    expect_args(open, "defaults", "{\"a\": 5, \"z\": [4]}",
                "{\"a\": 5, \"b\": {\"c\": 2}, \"keep\": \"d\", \"z\": [4]}");
    expect_args(open, "defaults", "{\"b\": {\"other\": 3}}",
                "{\"a\": 1, \"b\": {\"other\": 3}, \"keep\": \"d\"}");
    expect_args(open, "defaults", "{\"a\": null}",
                "{\"a\": null, \"b\": {\"c\": 2}, \"keep\": \"d\"}");
    /* The config's defaults are not changed by what a request sent. */
    expect_args(open, "defaults", NULL, "{\"a\": 1, \"b\": {\"c\": 2}, \"keep\": \"d\"}");
    json_t *want = parse("{\"a\": 1, \"b\": {\"c\": 2}, \"keep\": \"d\"}");
    ck_assert(json_equal(jsond_config_route(cfg, "defaults")->args, want));
    json_decref(want);
}
END_TEST

START_TEST(test_fixed_args_cannot_be_changed)
{
    const cfg_listen *open = listener("open");
    const char *all_fixed = "{\"f\": \"fixed\", \"g\": 1, \"n\": {\"x\": 1}}";
    expect_args(open, "fixed", NULL, all_fixed);
    /* Over the defaults and over the request, whatever the client sends for
     * them: a value, null, an object that would deep-merge. */
    expect_args(open, "fixed", "{\"f\": \"client\"}", all_fixed);
    expect_args(open, "fixed", "{\"f\": null, \"n\": null}", all_fixed);
    expect_args(open, "fixed", "{\"n\": {\"x\": 2, \"y\": 3}}", all_fixed);
    /* The other keys are the client's as usual. */
    expect_args(open, "fixed", "{\"g\": 2, \"h\": [1]}",
                "{\"f\": \"fixed\", \"g\": 2, \"h\": [1], \"n\": {\"x\": 1}}");
    /* fixed_args without args: merged over the request alone. */
    expect_args(open, "onlyfixed", "{\"limit\": 1000000, \"q\": 1}", "{\"limit\": 10, \"q\": 1}");
    /* The config's values are not changed either. */
    json_t *want = parse("{\"f\": \"fixed\", \"n\": {\"x\": 1}}");
    ck_assert(json_equal(jsond_config_route(cfg, "fixed")->fixed_args, want));
    json_decref(want);
    expect_args(open, "fixed", NULL, all_fixed);
}
END_TEST

START_TEST(test_positional_args_pass_untouched)
{
    /* JSON-RPC params by position reach the handler as the array itself:
     * defaults merge only into objects. */
    const cfg_listen *open = listener("open");
    expect_args(open, "echo", "[1, \"x\", {\"a\": 1}]", "[1, \"x\", {\"a\": 1}]");
    expect_args(open, "echo", "[]", "[]");
    expect_args(open, "defaults", "[1, 2]", "[1, 2]");
    expect_args(open, "defaults", "[{\"a\": 7}]", "[{\"a\": 7}]");
}
END_TEST

static Suite *router_suite(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("lookup");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_found_runs_that_route);
    tcase_add_test(tc, test_not_found);
    tcase_add_test(tc, test_unresolved_is_internal);
    tcase_add_test(tc, test_listener_routes_restrict);
    tcase_add_test(tc, test_no_listener_is_unrestricted);
    suite_add_tcase(s, tc);

    tc = tcase_create("args");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_no_args_is_empty_object);
    tcase_add_test(tc, test_route_args_are_defaults_under_the_request);
    tcase_add_test(tc, test_fixed_args_cannot_be_changed);
    tcase_add_test(tc, test_positional_args_pass_untouched);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(router_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
