/* check_handler.c: the handler registry: routes resolved once, at load.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "config.h"
#include "handler.h"

static char rendered[4096];

/* Parses TEXT as "t.conf" through the public loader (the registry) and
 * returns its errors as "LINE: message\n" lines ("" when valid). */
static const char *errors_of(const char *text)
{
    jsond_errors *errs = jsond_errors_new();
    jsond_config *cfg = jsond_config_parse("t.conf", text, strlen(text), errs);
    size_t n = jsond_errors_count(errs), used = 0;
    rendered[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const jsond_error *e = jsond_errors_get(errs, i);
        used +=
            (size_t)snprintf(rendered + used, sizeof rendered - used, "%d: %s\n", e->line, e->text);
        ck_assert_uint_lt(used, sizeof rendered);
    }
    ck_assert((cfg == NULL) == (n > 0));
    jsond_config_unref(cfg);
    jsond_errors_free(errs);
    return rendered;
}

#define LISTEN "[listen l]\nrequests = yes\n"

START_TEST(test_builtins_resolved)
{
    static const char text[] = LISTEN "[server]\nrequest_timeout = 2s\n"
                                      "[route hello]\nhandler = builtin:hello\n"
                                      "[route sleep]\nhandler = builtin:sleep\ntimeout = 50ms\n"
                                      "[route big]\ntimeout = 0\nhandler = builtin:big\n";
    jsond_config *cfg = jsond_config_parse("t.conf", text, sizeof text - 1, NULL);
    ck_assert_ptr_nonnull(cfg);
    static const struct {
        const char *route, *builtin;
        unsigned timeout_ms;
    } want[] = {{"hello", "hello", 2000}, {"sleep", "sleep", 50}, {"big", "big", 0}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const cfg_route *r = jsond_config_route(cfg, want[i].route);
        const jsond_handler *h = jsond_handler_of(r);
        ck_assert_ptr_nonnull(h);
        jsond_handler impl = {0};
        jsond_builtin_impl(jsond_builtin_find(want[i].builtin), &impl);
        ck_assert_int_eq(h->color, impl.color);
        ck_assert_ptr_eq(h->async_fn, impl.async_fn);
        ck_assert_ptr_eq(h->sync_fn, impl.sync_fn);
        ck_assert_uint_eq(h->timeout_ms, want[i].timeout_ms);
        /* Without a pool key, a dual handler runs its async half on the loop. */
        ck_assert_uint_eq(h->pool, JSOND_ON_LOOP);
    }
    jsond_config_unref(cfg);
}
END_TEST

/* Where a client's request runs: a sync handler on its route's pool (the
 * default one without a pool key), a dual one on the pool its route names,
 * else on the loop; the index is into the config's pools. */
START_TEST(test_runs_on)
{
    static const char text[] = LISTEN "[pool legacy]\nthreads = 2\n"
                                      "[route rec]\nhandler = builtin:records\n"
                                      "[route rec2]\nhandler = builtin:records\npool = legacy\n"
                                      "[route slow]\nhandler = builtin:sleep\npool = legacy\n"
                                      "[route quick]\nhandler = builtin:sleep\n"
                                      "[route slow2]\nhandler = builtin:sleep\npool = default\n"
                                      "[route hi]\nhandler = builtin:hello\npool = legacy\n";
    jsond_config *cfg = jsond_config_parse("t.conf", text, sizeof text - 1, NULL);
    ck_assert_ptr_nonnull(cfg);
    static const struct {
        const char *route, *runs_on;
        jsond_color color;
    } want[] = {
        {"rec", "default", JSOND_COLOR_SYNC},   {"rec2", "legacy", JSOND_COLOR_SYNC},
        {"slow", "legacy", JSOND_COLOR_DUAL},   {"quick", NULL, JSOND_COLOR_DUAL},
        {"slow2", "default", JSOND_COLOR_DUAL}, {"hi", NULL, JSOND_COLOR_ASYNC},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const jsond_handler *h = jsond_handler_of(jsond_config_route(cfg, want[i].route));
        ck_assert_ptr_nonnull(h);
        ck_assert_int_eq(h->color, want[i].color);
        if (!want[i].runs_on) {
            ck_assert_msg(h->pool == JSOND_ON_LOOP, "%s runs on a pool", want[i].route);
        } else {
            ck_assert_uint_lt(h->pool, cfg->npools);
            ck_assert_str_eq(cfg->pools[h->pool].name, want[i].runs_on);
        }
    }
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_unknown_at_handler_line)
{
    /* The handler's own line, not the header's, and in reading order among
     * the other problems, though the registry is asked only at the end. */
    ck_assert_str_eq(errors_of(LISTEN "[route r]\n"                   /* 3 */
                                      "args = {}\n"                   /* 4 */
                                      "handler = builtin:nope\n"      /* 5 */
                                      "[route s]\n"                   /* 6 */
                                      "handler = file:/x.json\n"      /* 7 */
                                      "[listen m]\non_connect = zz\n" /* 8, 9 */
                                      "[route t]\nhandler = builtin:\n" /* 10, 11 */),
                     "5: unknown builtin handler 'nope'\n"
                     "7: cannot open file '/x.json': No such file or directory\n"
                     "9: route 'zz' is not defined\n"
                     "11: unknown builtin handler ''\n");
    /* Echoed names are cut and made printable. */
    ck_assert_str_eq(errors_of(LISTEN "[route r]\nhandler = builtin:a\tb\n"),
                     "4: unknown builtin handler 'a?b'\n");
}
END_TEST

START_TEST(test_without_registry)
{
    /* config alone knows the grammar, not the names: a config read without
     * a resolver keeps the string and resolves nothing. */
    static const char text[] = LISTEN "[route r]\nhandler = builtin:nope\n";
    jsond_errors *errs = jsond_errors_new();
    jsond_config *cfg = jsond_config_read_text("t.conf", text, sizeof text - 1, NULL, errs);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_uint_eq(jsond_errors_count(errs), 0);
    ck_assert_ptr_null(jsond_handler_of(jsond_config_route(cfg, "r")));
    jsond_config_unref(cfg);
    jsond_errors_free(errs);
}
END_TEST

START_TEST(test_route_equal_walks_keys)
{
    static const char text[] = LISTEN "[route a]\nhandler = builtin:hello\n"
                                      "[route b]\nhandler = builtin:hello\n"
                                      "[route c]\nhandler = builtin:hello\ntimeout = 1s\n"
                                      "[route d]\nhandler = builtin:echo\n"
                                      "[route e]\nhandler = builtin:hello\nargs = {}\n"
                                      "[route f]\nhandler = builtin:hello\nfixed_args = {}\n";
    jsond_config *cfg = jsond_config_parse("t.conf", text, sizeof text - 1, NULL);
    ck_assert_ptr_nonnull(cfg);
    const cfg_route *a = jsond_config_route(cfg, "a");
    /* Another name, another place, the same effect. */
    ck_assert(jsond_config_route_equal(a, jsond_config_route(cfg, "b")));
    /* Every key counts, timeout included. */
    ck_assert(!jsond_config_route_equal(a, jsond_config_route(cfg, "c")));
    ck_assert(!jsond_config_route_equal(a, jsond_config_route(cfg, "d")));
    ck_assert(!jsond_config_route_equal(a, jsond_config_route(cfg, "e")));
    ck_assert(!jsond_config_route_equal(a, jsond_config_route(cfg, "f")));
    jsond_config_unref(cfg);
}
END_TEST

static Suite *handler_suite(void)
{
    Suite *s = suite_create("handler");
    TCase *tc = tcase_create("registry");
    tcase_add_test(tc, test_builtins_resolved);
    tcase_add_test(tc, test_runs_on);
    tcase_add_test(tc, test_unknown_at_handler_line);
    tcase_add_test(tc, test_without_registry);
    tcase_add_test(tc, test_route_equal_walks_keys);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(handler_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
