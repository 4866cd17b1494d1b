/* check_exec.c: exec:COMMAND, its argv split and its program found at load.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "exec.h"
#include "handler.h"

/* Splits `cmd` and renders its words as "<w1><w2>...", or "error: WHY". */
static const char *split(const char *cmd)
{
    static char out[512];
    char why[256];
    char **argv = jsond_exec_split(cmd, why, sizeof why);
    if (!argv) {
        snprintf(out, sizeof out, "error: %s", why);
        return out;
    }
    size_t used = 0;
    out[0] = '\0';
    for (char **a = argv; *a; a++)
        used += (size_t)snprintf(out + used, sizeof out - used, "<%s>", *a);
    free(argv);
    return out;
}

static const struct {
    const char *cmd, *want;
} cases[] = {
    {"/bin/prog", "</bin/prog>"},
    {"  prog \t a   b  ", "<prog><a><b>"},
    {"prog 'a b' 'x\"y\\z'", "<prog><a b><x\"y\\z>"},
    {"prog ''", "<prog><>"},
    {"prog \"a b\" \"q\\\"q\" \"s\\\\s\" \"k\\n\"", "<prog><a b><q\"q><s\\s><k\\n>"},
    {"prog \"\"", "<prog><>"},
    {"prog a\\ b \\'c \\\\", "<prog><a b><'c><\\>"},
    {"prog ab'cd'\"ef\"g", "<prog><abcdefg>"},
    {"/bin/sh -c 'echo \"$1\" >&2' sh", "</bin/sh><-c><echo \"$1\" >&2><sh>"},
    {"prog 'open", "error: exec: unterminated ' quote"},
    {"prog \"open", "error: exec: unterminated \" quote"},
    {"prog \"esc\\\"", "error: exec: unterminated \" quote"},
    {"prog a\\", "error: exec: the command ends with a backslash"},
    {"", "error: exec: no program given"},
    {" \t ", "error: exec: no program given"},
};

START_TEST(test_split)
{
    ck_assert_str_eq(split(cases[_i].cmd), cases[_i].want);
}
END_TEST

/* The errors of TEXT, read as "dir/t.conf" through the registry, as
 * "LINE: message\n" lines ("" when valid). */
static const char *errors_of(const char *text)
{
    static char rendered[2048];
    jsond_errors *errs = jsond_errors_new();
    jsond_config *cfg = jsond_config_parse("/nonexistent-dir/t.conf", text, strlen(text), errs);
    size_t n = jsond_errors_count(errs), used = 0;
    rendered[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const jsond_error *e = jsond_errors_get(errs, i);
        used +=
            (size_t)snprintf(rendered + used, sizeof rendered - used, "%d: %s\n", e->line, e->text);
    }
    ck_assert((cfg == NULL) == (n > 0));
    jsond_config_unref(cfg);
    jsond_errors_free(errs);
    return rendered;
}

#define LISTEN "[listen l]\nrequests = yes\n"

START_TEST(test_resolve)
{
    /* An absolute path and a bare name in PATH: sync, on the default pool. */
    ck_assert_str_eq(errors_of(LISTEN "[route a]\nhandler = exec:/bin/cat -u\n"
                                      "[route b]\nhandler = exec:sh -c 'exit 0'\n"),
                     "");
    /* A relative path resolves against the config file's directory. */
    ck_assert_str_eq(errors_of(LISTEN "[route r]\npool = default\nhandler = exec:./prog\n"),
                     "5: exec: cannot run '/nonexistent-dir/./prog': No such file or directory\n");
    ck_assert_str_eq(errors_of(LISTEN "[route r]\nhandler = exec:no-such-program-jsond\n"),
                     "4: exec: no executable 'no-such-program-jsond' in PATH\n");
    ck_assert_str_eq(errors_of(LISTEN "[route r]\nhandler = exec:/etc/passwd\n"),
                     "4: exec: cannot run '/etc/passwd': Permission denied\n");
    ck_assert_str_eq(errors_of(LISTEN "[route r]\nhandler = exec:/bin\n"),
                     "4: exec: cannot run '/bin': Is a directory\n");
    ck_assert_str_eq(errors_of(LISTEN "[route r]\nhandler = exec:/bin/sh -c 'x\n"),
                     "4: exec: unterminated ' quote\n");
    ck_assert_str_eq(errors_of(LISTEN "[route r]\nhandler = exec:\n"),
                     "4: exec: no program given\n");
}
END_TEST

START_TEST(test_resolved_sync)
{
    const char *text = LISTEN "[pool p]\n[route r]\npool = p\nhandler = exec:/bin/cat\n";
    jsond_config *cfg = jsond_config_parse("t.conf", text, strlen(text), NULL);
    ck_assert_ptr_nonnull(cfg);
    const cfg_route *r = jsond_config_route(cfg, "r");
    const jsond_handler *h = jsond_handler_of(r);
    ck_assert_int_eq(h->color, JSOND_COLOR_SYNC);
    ck_assert_ptr_nonnull(h->sync_fn);
    ck_assert_ptr_nonnull(h->data);
    ck_assert_str_eq(cfg->pools[h->pool].name, "p");
    ck_assert_uint_eq(r->max_output, 16u << 20);
    jsond_config_unref(cfg);
}
END_TEST

static Suite *exec_suite(void)
{
    Suite *s = suite_create("exec");
    TCase *tc = tcase_create("exec");
    tcase_add_loop_test(tc, test_split, 0, sizeof cases / sizeof cases[0]);
    tcase_add_test(tc, test_resolve);
    tcase_add_test(tc, test_resolved_sync);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(exec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
