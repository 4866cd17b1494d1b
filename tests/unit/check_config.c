/* check_config.c: the config parser, against jsond.conf(5).
 *
 * Most cases parse a string and compare the whole error list, rendered as
 * "LINE: message" lines, with what the operator must see: exact lines and
 * exact messages, all of them, not only the first.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* mkstemp, mkdtemp */

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* ---- helpers ------------------------------------------------------------ */

static char rendered[1 << 16];

/* A config must have a [listen] section. Most cases are about something
 * else: when TEXT has none, a bare "[listen zz]" (no keys: it declares the
 * name only, so it cannot add an error) is appended after it, on lines of
 * its own past the text's, so line numbers are those of TEXT. The appended
 * section counts in cfg->nlistens: cases check nlistens with that in mind.
 * The returned copy is the caller's to free. */
#define AUTO_LISTEN "\n[listen zz]\n"

static char *with_listener(const char *text, size_t len, size_t *outlen)
{
    int has = 0;
    for (size_t i = 0; i + 7 <= len && !has; i++)
        has = memcmp(text + i, "[listen", 7) == 0;
    size_t extra = has ? 0 : strlen(AUTO_LISTEN);
    char *t = malloc(len + extra + 1);
    ck_assert_ptr_nonnull(t);
    memcpy(t, text, len);
    memcpy(t + len, AUTO_LISTEN, extra);
    t[len + extra] = '\0';
    *outlen = len + extra;
    return t;
}

/* Parses exactly TEXT (LEN bytes) as "t.conf" and returns its errors as
 * "LINE: message\n" lines ("" when valid). Checks that a config comes back
 * exactly when there is no error, and that every error names the file. */
static const char *errors_of_raw(const char *text, size_t len)
{
    jsond_errors *errs = jsond_errors_new();
    jsond_config *cfg = jsond_config_parse("t.conf", text, len, errs);
    size_t n = jsond_errors_count(errs), used = 0;
    rendered[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const jsond_error *e = jsond_errors_get(errs, i);
        ck_assert_str_eq(e->file, "t.conf");
        used +=
            (size_t)snprintf(rendered + used, sizeof rendered - used, "%d: %s\n", e->line, e->text);
        ck_assert_uint_lt(used, sizeof rendered);
    }
    ck_assert_msg((cfg == NULL) == (n > 0), "config returned with errors, or NULL without: %s",
                  rendered);
    jsond_config_unref(cfg);
    jsond_errors_free(errs);
    return rendered;
}

/* errors_of_raw() of TEXT with a listener appended if it has none. */
static const char *errors_of_len(const char *text, size_t len)
{
    size_t n;
    char *t = with_listener(text, len, &n);
    errors_of_raw(t, n);
    free(t);
    return rendered;
}

static const char *errors_of(const char *text)
{
    return errors_of_len(text, strlen(text));
}

/* Parses TEXT (a listener appended if it has none), which must be valid. */
static jsond_config *parse_ok(const char *text)
{
    size_t n;
    char *t = with_listener(text, strlen(text), &n);
    jsond_errors *errs = jsond_errors_new();
    jsond_config *cfg = jsond_config_parse("t.conf", t, n, errs);
    const jsond_error *e = jsond_errors_get(errs, 0);
    ck_assert_msg(cfg != NULL, "unexpected error: %d: %s", e ? e->line : 0, e ? e->text : "");
    ck_assert_uint_eq(jsond_errors_count(errs), 0);
    jsond_errors_free(errs);
    free(t);
    return cfg;
}

/* The error list of "[SECTION]\nKEY = VALUE\n" (the key is on line 2). */
static const char *errors_of_key(const char *section, const char *key, const char *value)
{
    char text[512];
    snprintf(text, sizeof text, "[%s]\n%s = %s\n", section, key, value);
    return errors_of(text);
}

static jsond_config *parse_key(const char *section, const char *key, const char *value)
{
    char text[512];
    snprintf(text, sizeof text, "[%s]\n%s = %s\n", section, key, value);
    return parse_ok(text);
}

static char *srcdir_path(const char *rel)
{
    /* `make check` sets JSOND_SRCDIR; by hand, run from the top build dir. */
    const char *top = getenv("JSOND_SRCDIR");
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", top ? top : ".", rel);
    return path;
}

#define ROUTE_HELLO "[route hello]\nhandler = builtin:hello\n"
#define LISTEN_L    "[listen l]\n"

/* ---- values ------------------------------------------------------------- */

START_TEST(test_every_key)
{
    jsond_config *cfg = parse_ok("[server]\n"
                                 "max_connections = 500\n"
                                 "max_request_size = 1M\n"
                                 "idle_timeout = 90s\n"
                                 "write_timeout = 2m\n"
                                 "output_buffer = 64K\n"
                                 "shutdown_timeout = 3s\n"
                                 "linger_timeout = 250ms\n"
                                 "max_pipeline = 16\n"
                                 "request_timeout = 2s\n"
                                 "stall_warning = 250ms\n"
                                 "log_level = debug\n"
                                 "[listen main]\n"
                                 "address = 127.0.0.1:8080\n"
                                 "on_connect = big10m\n"
                                 "requests = yes\n"
                                 "routes = big10m\n"
                                 "protocol = jsonrpc\n"
                                 "[route big10m]\n"
                                 "handler = builtin:big\n"
                                 "args = {\"size\": 10000000}\n"
                                 "fixed_args = {\"max_size\": 104857600}\n"
                                 "timeout = 0\n"
                                 "[route hello]\n"
                                 "handler = builtin:hello\n"
                                 "pool = legacy\n"
                                 "[pool legacy]\n"
                                 "threads = 16\n"
                                 "queue_limit = 1000\n");
    char buf[64];
    ck_assert_uint_eq(cfg->server.max_connections, 500);
    ck_assert_uint_eq(jsond_config_max_connections(cfg), 500);
    ck_assert_uint_eq(cfg->server.max_request_size, 1048576);
    ck_assert_uint_eq(cfg->server.idle_timeout_ms, 90000);
    ck_assert_uint_eq(cfg->server.max_pipeline, 16);
    ck_assert_uint_eq(cfg->server.write_timeout_ms, 120000);
    ck_assert_uint_eq(cfg->server.output_buffer, 65536);
    ck_assert_uint_eq(cfg->server.shutdown_timeout_ms, 3000);
    ck_assert_uint_eq(cfg->server.linger_timeout_ms, 250);
    ck_assert_int_eq(cfg->server.log_level, JSOND_LOG_DEBUG);
    ck_assert_int_eq(jsond_config_log_level(cfg), JSOND_LOG_DEBUG);
    ck_assert_str_eq(jsond_config_source(cfg), "t.conf");
    ck_assert_str_eq(cfg->source, "t.conf");

    ck_assert_uint_eq(cfg->nlistens, 1);
    const cfg_listen *l = &cfg->listens[0];
    ck_assert_str_eq(l->name, "main");
    ck_assert_int_eq(l->line, 13);
    ck_assert_int_eq(l->has_address, 1);
    ck_assert_str_eq(jsond_addr_format(&l->address, buf, sizeof buf), "127.0.0.1:8080");
    ck_assert_str_eq(l->on_connect, "big10m");
    ck_assert_int_eq(l->requests, 1);
    ck_assert_int_eq(l->all_routes, 0);
    ck_assert_uint_eq(l->nroutes, 1);
    ck_assert_str_eq(l->routes[0], "big10m");
    ck_assert_int_eq(l->protocol, JSOND_PROTOCOL_JSONRPC);

    ck_assert_uint_eq(cfg->server.request_timeout_ms, 2000);
    ck_assert_uint_eq(cfg->server.stall_warning_ms, 250);
    ck_assert_uint_eq(cfg->nroutes, 2);
    const cfg_route *r = jsond_config_route(cfg, "big10m");
    ck_assert_ptr_eq(r, &cfg->routes[0]);
    ck_assert_int_eq(r->line, 19);
    /* timeout = 0 is "no deadline", not "the server's". */
    ck_assert_uint_eq(jsond_route_timeout(cfg, r), 0);
    ck_assert_uint_eq(jsond_route_timeout(cfg, jsond_config_route(cfg, "hello")), 2000);
    ck_assert_str_eq(r->handler, "builtin:big");
    ck_assert_int_eq(json_integer_value(json_object_get(r->args, "size")), 10000000);
    ck_assert_int_eq(json_integer_value(json_object_get(r->fixed_args, "max_size")), 104857600);
    ck_assert_ptr_null(jsond_config_route(cfg, "nope"));
    ck_assert_ptr_null(r->pool);
    ck_assert_str_eq(jsond_config_route(cfg, "hello")->pool, "legacy");

    ck_assert_uint_eq(cfg->npools, 2); /* the implicit default, then legacy */
    const cfg_pool *p = jsond_config_pool(cfg, "legacy");
    ck_assert_ptr_eq(p, &cfg->pools[1]);
    ck_assert_str_eq(p->file, "t.conf");
    ck_assert_int_eq(p->line, 27);
    ck_assert_uint_eq(p->threads, 16);
    ck_assert_uint_eq(p->queue_limit, 1000);
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_defaults)
{
    jsond_config *cfg = parse_ok("");
    ck_assert_uint_eq(cfg->server.max_connections, 10000);
    ck_assert_uint_eq(cfg->server.max_request_size, 65536);
    ck_assert_uint_eq(cfg->server.idle_timeout_ms, 60000);
    ck_assert_uint_eq(cfg->server.write_timeout_ms, 30000);
    ck_assert_uint_eq(cfg->server.output_buffer, 1048576);
    ck_assert_uint_eq(cfg->server.shutdown_timeout_ms, 10000);
    ck_assert_uint_eq(cfg->server.linger_timeout_ms, 5000);
    ck_assert_uint_eq(cfg->server.max_pipeline, 128);
    ck_assert_uint_eq(cfg->server.request_timeout_ms, 60000);
    ck_assert_uint_eq(cfg->server.stall_warning_ms, 100);
    ck_assert_int_eq(cfg->server.log_level, JSOND_LOG_INFO);
    ck_assert_uint_eq(cfg->nlistens, 1); /* the AUTO_LISTEN, which has no keys */
    ck_assert_int_eq(cfg->listens[0].has_address, 0);
    ck_assert_uint_eq(cfg->nroutes, 0);
    jsond_config_unref(cfg);

    /* A listener's keys default too; args are absent, not empty. */
    cfg = parse_ok("[listen x]\naddress = [::1]:0\non_connect = hello\n" ROUTE_HELLO);
    ck_assert_int_eq(cfg->listens[0].requests, 0);
    ck_assert_int_eq(cfg->listens[0].all_routes, 1);
    ck_assert_ptr_null(cfg->listens[0].routes);
    ck_assert_uint_eq(cfg->listens[0].nroutes, 0);
    ck_assert_int_eq(cfg->listens[0].protocol, JSOND_PROTOCOL_AUTO);
    ck_assert(jsond_listen_allows(&cfg->listens[0], "hello"));
    ck_assert(jsond_listen_allows(&cfg->listens[0], "anything"));
    ck_assert_str_eq(cfg->listens[0].on_connect, "hello");
    ck_assert_ptr_null(cfg->routes[0].args);
    ck_assert_ptr_null(cfg->routes[0].fixed_args);
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_empty_sections)
{
    /* A section with no keys declares its name; a listener without an
     * address opens no socket of its own (systemd's). */
    jsond_config *cfg = parse_ok("[server]\n[listen x]\n[listen y] ; trailing comment\n");
    ck_assert_uint_eq(cfg->nlistens, 2);
    ck_assert_str_eq(cfg->listens[0].name, "x");
    ck_assert_int_eq(cfg->listens[0].has_address, 0);
    ck_assert_str_eq(cfg->listens[1].name, "y");
    ck_assert_int_eq(cfg->listens[1].line, 3);
    jsond_config_unref(cfg);

    /* Names: the whole allowed alphabet, and the maximum length. */
    cfg = parse_ok("[listen A-z_0.9]\n[route "
                   "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl]\n"
                   "handler = builtin:hello\n");
    ck_assert_str_eq(cfg->listens[0].name, "A-z_0.9");
    ck_assert_uint_eq(strlen(cfg->routes[0].name), 64);
    jsond_config_unref(cfg);
}
END_TEST

static const struct {
    const char *text;
    size_t bytes;
} sizes[] = {
    {"4K", 4096},    {"4k", 4096},          {"4096", 4096},     {"1M", 1048576},
    {"3m", 3145728}, {"1G", 1073741824},    {"1g", 1073741824}, {"1024M", 1073741824},
    {"5000", 5000},  {"1048576K", 1 << 30}, {"0004K", 4096},
};

START_TEST(test_sizes)
{
    jsond_config *cfg = parse_key("server", "output_buffer", sizes[_i].text);
    ck_assert_msg(cfg->server.output_buffer == sizes[_i].bytes, "%s gave %zu", sizes[_i].text,
                  cfg->server.output_buffer);
    jsond_config_unref(cfg);
}
END_TEST

static const struct {
    const char *text;
    unsigned ms;
} durations[] = {
    {"0", 0},          {"0s", 0},           {"0ms", 0},           {"250ms", 250},
    {"30", 30000},     {"30s", 30000},      {"2m", 120000},       {"1h", 3600000},
    {"24h", 86400000}, {"1440m", 86400000}, {"86400s", 86400000}, {"86400000ms", 86400000},
};

START_TEST(test_durations)
{
    /* write_timeout has the widest range: 0..24h, both ends included. */
    jsond_config *cfg = parse_key("server", "write_timeout", durations[_i].text);
    ck_assert_msg(cfg->server.write_timeout_ms == durations[_i].ms, "%s gave %u",
                  durations[_i].text, cfg->server.write_timeout_ms);
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_uint_and_bool_and_level)
{
    static const char *const bools[] = {"no", "off", "false", "yes", "on", "true"};
    char text[256];
    jsond_config *cfg = parse_key("server", "max_connections", "1");
    ck_assert_uint_eq(cfg->server.max_connections, 1);
    jsond_config_unref(cfg);
    cfg = parse_key("server", "max_connections", "1000000");
    ck_assert_uint_eq(cfg->server.max_connections, 1000000);
    jsond_config_unref(cfg);
    for (size_t i = 0; i < 6; i++) {
        snprintf(text, sizeof text, "[listen x]\non_connect = hello\nrequests = %s\n" ROUTE_HELLO,
                 bools[i]);
        cfg = parse_ok(text);
        ck_assert_int_eq(cfg->listens[0].requests, i >= 3);
        jsond_config_unref(cfg);
    }
    static const char *const protocols[] = {"auto", "jsonrpc"};
    for (int i = 0; i < 2; i++) {
        snprintf(text, sizeof text, "[listen x]\nrequests = yes\nprotocol = %s\n", protocols[i]);
        cfg = parse_ok(text);
        ck_assert_int_eq(cfg->listens[0].protocol,
                         i ? JSOND_PROTOCOL_JSONRPC : JSOND_PROTOCOL_AUTO);
        jsond_config_unref(cfg);
    }
    static const char *const levels[] = {"debug", "info", "notice", "warning", "error"};
    static const jsond_log_level want[] = {JSOND_LOG_DEBUG, JSOND_LOG_INFO, JSOND_LOG_NOTICE,
                                           JSOND_LOG_WARNING, JSOND_LOG_ERROR};
    for (size_t i = 0; i < 5; i++) {
        cfg = parse_key("server", "log_level", levels[i]);
        ck_assert_int_eq(cfg->server.log_level, want[i]);
        jsond_config_unref(cfg);
    }
}
END_TEST

START_TEST(test_addresses)
{
    char buf[128];
    static const char *const ok[] = {"0.0.0.0:25000", "[::]:25000", "[::1]:0",
                                     "unix:/run/jsond/jsond.sock"};
    char text[256];
    for (size_t i = 0; i < 4; i++) {
        snprintf(text, sizeof text, "[listen a]\nrequests = yes\naddress = %s\n", ok[i]);
        jsond_config *cfg = parse_ok(text);
        ck_assert_int_eq(cfg->listens[0].has_address, 1);
        ck_assert_str_eq(jsond_addr_format(&cfg->listens[0].address, buf, sizeof buf), ok[i]);
        jsond_config_unref(cfg);
    }
    /* The address parser's reason is part of the message. */
    ck_assert_str_eq(errors_of_key("listen a", "address", "localhost:25000"),
                     "2: bad address 'localhost:25000': bad IPv4 address (names are not "
                     "resolved)\n");
    ck_assert_str_eq(errors_of_key("listen a", "address", "1.2.3.4:65536"),
                     "2: bad address '1.2.3.4:65536': port must be a number from 0 to 65535\n");
    ck_assert_str_eq(errors_of_key("listen a", "address", "[::1]80"),
                     "2: bad address '[::1]80': expected [IPv6]:PORT\n");
    ck_assert_str_eq(errors_of_key("listen a", "address", "[::g]:80"),
                     "2: bad address '[::g]:80': bad IPv6 address\n");
    /* A value starting with '[' is JSON to the grammar, whatever the key. */
    ck_assert_str_eq(errors_of_key("listen a", "address", "[::1:80"), "2: unbalanced JSON value\n");
}
END_TEST

static const struct {
    const char *value;
    size_t n;
    const char *names[3];
} route_lists[] = {
    {"a", 1, {"a"}},
    {"a,b", 2, {"a", "b"}},
    {"a b", 2, {"a", "b"}},
    {"a, b", 2, {"a", "b"}},
    {"a ,b", 2, {"a", "b"}},
    {"a\t,\t b  c", 3, {"a", "b", "c"}},
    {"c,a b", 3, {"c", "a", "b"}},
};

START_TEST(test_route_lists)
{
    char text[256];
    snprintf(text, sizeof text,
             "[listen x]\nrequests = yes\nroutes = %s ; comment\n"
             "[route a]\nhandler = builtin:hello\n[route b]\nhandler = builtin:echo\n"
             "[route c]\nhandler = builtin:hello\n[route d]\nhandler = builtin:hello\n",
             route_lists[_i].value);
    jsond_config *cfg = parse_ok(text);
    const cfg_listen *l = &cfg->listens[0];
    ck_assert_int_eq(l->all_routes, 0);
    ck_assert_uint_eq(l->nroutes, route_lists[_i].n);
    for (size_t i = 0; i < route_lists[_i].n; i++) {
        ck_assert_str_eq(l->routes[i], route_lists[_i].names[i]);
        ck_assert(jsond_listen_allows(l, route_lists[_i].names[i]));
    }
    ck_assert(!jsond_listen_allows(l, "d"));
    ck_assert(!jsond_listen_allows(l, ""));
    ck_assert(!jsond_listen_allows(l, "a,b"));
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_route_list_all)
{
    /* `*` is the default spelled out, and allows any name. */
    jsond_config *cfg = parse_ok("[listen x]\nrequests = yes\nroutes = *\n");
    ck_assert_int_eq(cfg->listens[0].all_routes, 1);
    ck_assert_uint_eq(cfg->listens[0].nroutes, 0);
    ck_assert(jsond_listen_allows(&cfg->listens[0], "not-even-defined"));
    jsond_config *dflt = parse_ok("[listen x]\nrequests = yes\n");
    ck_assert(jsond_config_equal(cfg, dflt));
    jsond_config_unref(dflt);
    jsond_config_unref(cfg);
}
END_TEST

/* ---- ranges ------------------------------------------------------------- */

static const struct {
    const char *key, *value, *want;
} out_of_range[] = {
    {"max_connections", "0", "2: max_connections = 0 is out of range (1..1000000)\n"},
    {"max_connections", "1000001", "2: max_connections = 1000001 is out of range (1..1000000)\n"},
    {"max_connections", "99999999999999999999",
     "2: max_connections = 99999999999999999999 is out of range (1..1000000)\n"},
    {"output_buffer", "4095", "2: output_buffer = 4095 is out of range (4K..1G)\n"},
    {"output_buffer", "3K", "2: output_buffer = 3K is out of range (4K..1G)\n"},
    {"output_buffer", "1025M", "2: output_buffer = 1025M is out of range (4K..1G)\n"},
    {"output_buffer", "1073741825", "2: output_buffer = 1073741825 is out of range (4K..1G)\n"},
    {"output_buffer", "2g", "2: output_buffer = 2g is out of range (4K..1G)\n"},
    {"output_buffer", "99999999999999999999G",
     "2: output_buffer = 99999999999999999999G is out of range (4K..1G)\n"},
    /* Fits in 64 bits as a number, overflows once multiplied by its unit. */
    {"output_buffer", "17179869184G", "2: output_buffer = 17179869184G is out of range (4K..1G)\n"},
    {"write_timeout", "86400001ms", "2: write_timeout = 86400001ms is out of range (0..24h)\n"},
    {"write_timeout", "1441m", "2: write_timeout = 1441m is out of range (0..24h)\n"},
    {"write_timeout", "25h", "2: write_timeout = 25h is out of range (0..24h)\n"},
    {"write_timeout", "86401", "2: write_timeout = 86401 is out of range (0..24h)\n"},
    {"write_timeout", "5124095576031h",
     "2: write_timeout = 5124095576031h is out of range (0..24h)\n"},
    {"write_timeout", "18446744073709551615ms",
     "2: write_timeout = 18446744073709551615ms is out of range (0..24h)\n"},
    {"write_timeout", "18446744073709551616ms",
     "2: write_timeout = 18446744073709551616ms is out of range (0..24h)\n"},
    {"shutdown_timeout", "61m", "2: shutdown_timeout = 61m is out of range (0..1h)\n"},
    {"linger_timeout", "3601s", "2: linger_timeout = 3601s is out of range (0..1h)\n"},
    {"max_request_size", "0", "2: max_request_size = 0 is out of range (1..1G)\n"},
    {"max_request_size", "1025M", "2: max_request_size = 1025M is out of range (1..1G)\n"},
    {"max_request_size", "1073741825",
     "2: max_request_size = 1073741825 is out of range (1..1G)\n"},
    {"idle_timeout", "86400001ms", "2: idle_timeout = 86400001ms is out of range (0..24h)\n"},
    {"idle_timeout", "25h", "2: idle_timeout = 25h is out of range (0..24h)\n"},
    {"stall_warning", "61m", "2: stall_warning = 61m is out of range (0..1h)\n"},
    {"stall_warning", "3600001ms", "2: stall_warning = 3600001ms is out of range (0..1h)\n"},
    {"max_pipeline", "0", "2: max_pipeline = 0 is out of range (1..65536)\n"},
    {"max_pipeline", "65537", "2: max_pipeline = 65537 is out of range (1..65536)\n"},
};

START_TEST(test_out_of_range)
{
    ck_assert_str_eq(errors_of_key("server", out_of_range[_i].key, out_of_range[_i].value),
                     out_of_range[_i].want);
}
END_TEST

START_TEST(test_range_maxima)
{
    jsond_config *cfg = parse_ok("[server]\nshutdown_timeout = 1h\nlinger_timeout = 3600s\n"
                                 "output_buffer = 1G\nmax_request_size = 1G\n"
                                 "idle_timeout = 24h\nmax_pipeline = 65536\n");
    ck_assert_uint_eq(cfg->server.shutdown_timeout_ms, 3600000);
    ck_assert_uint_eq(cfg->server.linger_timeout_ms, 3600000);
    ck_assert_uint_eq(cfg->server.output_buffer, 1073741824);
    ck_assert_uint_eq(cfg->server.max_request_size, 1073741824);
    ck_assert_uint_eq(cfg->server.idle_timeout_ms, 86400000);
    ck_assert_uint_eq(cfg->server.max_pipeline, 65536);
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_range_minima)
{
    jsond_config *cfg = parse_ok("[server]\nmax_request_size = 1\nidle_timeout = 0\n"
                                 "max_pipeline = 1\n");
    ck_assert_uint_eq(cfg->server.max_request_size, 1);
    ck_assert_uint_eq(cfg->server.idle_timeout_ms, 0);
    ck_assert_uint_eq(cfg->server.max_pipeline, 1);
    jsond_config_unref(cfg);
}
END_TEST

/* ---- bad values --------------------------------------------------------- */

static const struct {
    const char *section, *key, *value, *want;
} bad_values[] = {
    {"server", "max_connections", "ten", "2: bad integer 'ten' for max_connections\n"},
    {"server", "max_connections", "-1", "2: bad integer '-1' for max_connections\n"},
    {"server", "max_connections", "+5", "2: bad integer '+5' for max_connections\n"},
    {"server", "max_connections", "10k", "2: bad integer '10k' for max_connections\n"},
    {"server", "max_connections", "", "2: bad integer '' for max_connections\n"},
    {"server", "output_buffer", "1KB", "2: bad size '1KB' for output_buffer (e.g. 64K, 1M)\n"},
    {"server", "output_buffer", "1.5M", "2: bad size '1.5M' for output_buffer (e.g. 64K, 1M)\n"},
    {"server", "output_buffer", "M", "2: bad size 'M' for output_buffer (e.g. 64K, 1M)\n"},
    {"server", "output_buffer", "99999999999999999999X",
     "2: bad size '99999999999999999999X' for output_buffer (e.g. 64K, 1M)\n"},
    {"server", "stall_warning", "fast",
     "2: bad duration 'fast' for stall_warning (e.g. 500ms, 30s, 5m, 1h)\n"},
    {"server", "write_timeout", "5 s",
     "2: bad duration '5 s' for write_timeout (e.g. 500ms, 30s, 5m, 1h)\n"},
    {"server", "write_timeout", "1d",
     "2: bad duration '1d' for write_timeout (e.g. 500ms, 30s, 5m, 1h)\n"},
    {"server", "write_timeout", "5S",
     "2: bad duration '5S' for write_timeout (e.g. 500ms, 30s, 5m, 1h)\n"},
    {"server", "log_level", "verbose",
     "2: bad log level 'verbose' for log_level (debug, info, notice, warning, error)\n"},
    {"listen a", "requests", "maybe",
     "2: bad boolean 'maybe' for requests (yes/no, on/off, true/false)\n"},
    {"listen a", "on_connect", "no such",
     "2: bad route name 'no such' for on_connect (1 to 64 of A-Z a-z 0-9 _ . -)\n"},
    {"listen a", "protocol", "bogus", "2: bad protocol 'bogus' for protocol (auto, jsonrpc)\n"},
    {"listen a", "protocol", "JSONRPC", "2: bad protocol 'JSONRPC' for protocol (auto, jsonrpc)\n"},
    {"server", "policy", "lenient", "2: bad policy 'lenient' for policy (adaptive, strict)\n"},
    {"route r", "policy", "Strict",
     "1: [route r] has no handler\n2: bad policy 'Strict' for policy (adaptive, strict)\n"},
    {"listen a", "routes", "",
     "2: bad route list '' for routes (* or route names separated by commas or blanks)\n"},
    {"listen a", "routes", ",",
     "2: bad route list ',' for routes (* or route names separated by commas or blanks)\n"},
    {"listen a", "routes", "a,,b",
     "2: bad route list 'a,,b' for routes (* or route names separated by commas or blanks)\n"},
    {"listen a", "routes", "a, , b",
     "2: bad route list 'a, , b' for routes (* or route names separated by commas or blanks)\n"},
    {"listen a", "routes", ", a",
     "2: bad route list ', a' for routes (* or route names separated by commas or blanks)\n"},
    {"listen a", "routes", "a,",
     "2: bad route list 'a,' for routes (* or route names separated by commas or blanks)\n"},
    /* Only the names in error are shown; the others are not checked any
     * further (no "not defined" for them). */
    {"listen a", "routes", "a, b!c",
     "2: bad route name 'b!c' in routes (1 to 64 of A-Z a-z 0-9 _ . -)\n"},
    {"listen a", "routes", "*, a",
     "2: bad route name '*' in routes (1 to 64 of A-Z a-z 0-9 _ . -)\n"},
    {"listen a", "routes", "a *",
     "2: bad route name '*' in routes (1 to 64 of A-Z a-z 0-9 _ . -)\n"},
    {"listen a", "routes", "a;b",
     "2: bad route name 'a;b' in routes (1 to 64 of A-Z a-z 0-9 _ . -)\n"},
    {"listen a", "routes", "a, b a", "2: route 'a' is listed twice in routes\n"},
    {"route r", "handler", "hello",
     "2: bad handler 'hello' (builtin:NAME, file:PATH, exec:COMMAND or module:PATH.so:NAME)\n"},
    {"route r", "handler", "ftp:x",
     "2: bad handler 'ftp:x' (builtin:NAME, file:PATH, exec:COMMAND or module:PATH.so:NAME)\n"},
    {"route r", "handler", "builtin:nope", "2: unknown builtin handler 'nope'\n"},
    {"route r", "handler", "builtin:", "2: unknown builtin handler ''\n"},
    {"route r", "handler", "file:/etc/jsond/x.json",
     "2: cannot open file '/etc/jsond/x.json': No such file or directory\n"},
    {"route r", "handler", "exec:/nonexistent/prog",
     "2: exec: cannot run '/nonexistent/prog': No such file or directory\n"},
    {"route r", "max_output", "0",
     "1: [route r] has no handler\n2: max_output = 0 is out of range (1..1G)\n"},
    {"route r", "handler", "module:/x.so:f",
     "2: handler kind 'module' is not supported by this version\n"},
};

START_TEST(test_bad_values)
{
    ck_assert_str_eq(
        errors_of_key(bad_values[_i].section, bad_values[_i].key, bad_values[_i].value),
        bad_values[_i].want);
}
END_TEST

/* The calling route's policy applies: its own, else the server's. */
START_TEST(test_policy)
{
    jsond_config *cfg =
        parse_ok(ROUTE_HELLO "[route s]\nhandler = builtin:hello\npolicy = strict\n"
                             "[route a]\nhandler = builtin:hello\npolicy = adaptive\n");
    ck_assert_int_eq(cfg->server.policy, JSOND_POLICY_ADAPTIVE);
    ck_assert_int_eq(jsond_route_policy(cfg, jsond_config_route(cfg, "hello")),
                     JSOND_POLICY_ADAPTIVE);
    ck_assert_int_eq(jsond_route_policy(cfg, jsond_config_route(cfg, "s")), JSOND_POLICY_STRICT);
    jsond_config_unref(cfg);
    cfg = parse_ok("[server]\npolicy = strict\n" ROUTE_HELLO
                   "[route a]\nhandler = builtin:hello\npolicy = adaptive\n");
    ck_assert_int_eq(jsond_route_policy(cfg, jsond_config_route(cfg, "hello")),
                     JSOND_POLICY_STRICT);
    ck_assert_int_eq(jsond_route_policy(cfg, jsond_config_route(cfg, "a")), JSOND_POLICY_ADAPTIVE);
    /* A route's own policy is part of its effect. */
    ck_assert(
        !jsond_config_route_equal(jsond_config_route(cfg, "hello"), jsond_config_route(cfg, "a")));
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_json_values)
{
    ck_assert_str_eq(errors_of(ROUTE_HELLO "args = 5\n"), "3: args must be a JSON object\n");
    ck_assert_str_eq(errors_of(ROUTE_HELLO "fixed_args = [1, 2]\n"),
                     "3: fixed_args must be a JSON object\n");
    ck_assert_str_eq(errors_of(ROUTE_HELLO "args = \"x\"\n"), "3: args must be a JSON object\n");
    ck_assert_str_eq(errors_of(ROUTE_HELLO "args = {\"a\": 1, \"a\": 2}\n"),
                     "3: bad JSON in args: duplicate object key near '\"a\"'\n");
    ck_assert_str_eq(errors_of(ROUTE_HELLO "args = {\"a\": 1} junk\n"),
                     "3: bad JSON in args: end of file expected near 'junk'\n");
    /* Nested and empty objects are fine. */
    jsond_config *cfg = parse_ok(ROUTE_HELLO "args = {}\nfixed_args = {\"a\": {\"b\": [1, {}]}}\n");
    ck_assert_uint_eq(json_object_size(cfg->routes[0].args), 0);
    json_t *want = json_pack("{s:{s:[i,{}]}}", "a", "b", 1);
    ck_assert(json_equal(cfg->routes[0].fixed_args, want));
    json_decref(want);
    jsond_config_unref(cfg);
}
END_TEST

/* ---- syntax and structure errors, each at its line ----------------------- */

static const struct {
    const char *text, *want;
} structure[] = {
    {"[server]\nmax_connections 5\n", "2: syntax error: expected 'key = value' or '[section]'\n"},
    {"[server]\n= 5\n", "2: syntax error: expected 'key = value' or '[section]'\n"},
    {"\n\n[frobs]\n", "3: unknown section [frobs]\n"},
    {"[]\n", "1: unknown section []\n"},
    {"[listen a b]\n", "1: bad section name 'a b' (1 to 64 of A-Z a-z 0-9 _ . -)\n"},
    {"[listen a/b]\n", "1: bad section name 'a/b' (1 to 64 of A-Z a-z 0-9 _ . -)\n"},
    {"[route abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm]\n",
     "1: bad section name "
     "'abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl...' (1 to 64 of A-Z "
     "a-z 0-9 _ . -)\n"},
    {"[listen]\n", "1: [listen] needs a name\n"},
    {"[server main]\n", "1: [server] takes no name\n"},
    {"[server\n", "1: missing ']' in section header\n"},
    {"[server] x\n", "1: unexpected text after ']'\n"},
    {"[listen a]\nport = 5\n", "2: unknown key 'port' in [listen]\n"},
    {"[server]\naddress = 1.2.3.4:5\n", "2: unknown key 'address' in [server]\n"},
    {"address = 1.2.3.4:5\n[listen a]\n", "1: key 'address' outside any section\n"},
    {"; first a comment\nfoo = 1\n", "2: key 'foo' outside any section\n"},
    {"[listen a]\n[route hello]\nhandler = builtin:hello\n[listen a]\n",
     "4: duplicate section [listen a] (first at line 1)\n"},
    {"[server]\n\n[server]\n", "3: duplicate section [server] (first at line 1)\n"},
    {"[listen a]\naddress = 1.2.3.4:5\naddress = 1.2.3.4:6\n",
     "3: duplicate key 'address' (first at line 2)\n"},
    /* A bad first value still counts as set. */
    {"[server]\nmax_connections = x\nmax_connections = 5\n",
     "2: bad integer 'x' for max_connections\n3: duplicate key 'max_connections' (first at line "
     "2)\n"},
    {"[listen a]\non_connect = nope\n", "2: route 'nope' is not defined\n"},
    {"[route r]\nargs = {}\n[route s]\nhandler = builtin:hello\n", "1: [route r] has no handler\n"},
    {"[route r]\n", "1: [route r] has no handler\n"},
    {"[route rpc.discover]\nhandler = builtin:hello\n",
     "1: route name 'rpc.discover' is reserved (rpc. prefix)\n"},
    /* on_connect = none: no push; "none" is no route name. A listener
     * that neither pushes nor reads requests is still an error. */
    {"[listen a]\non_connect = none\nrequests = yes\n", ""},
    {"[listen a]\nrequests = yes\non_connect = none ; no push\n" ROUTE_HELLO, ""},
    {"[listen a]\naddress = 1.2.3.4:5\non_connect = none\n",
     "1: listener a has neither on_connect nor requests = yes\n"},
    {"[listen a]\nrequests = yes\n[route none]\nhandler = builtin:hello\n",
     "3: route name 'none' is reserved (on_connect = none means no push)\n"},
    {"[listen a]\nrequests = yes\nroutes = none\n", "3: route 'none' is not defined\n"},
    {"[listen a]\nrequests = yes\non_connect = None\n", "3: route 'None' is not defined\n"},
    /* A [listen] may be called rpc.x: only route names are reserved. */
    {"[listen rpc.x]\n[route rpc]\nhandler = builtin:hello\n", ""},
    /* A listener must push or read requests; a bare [listen NAME] only
     * declares its name. */
    {"[listen a]\nrequests = yes\n", ""},
    {"[listen a]\n; nothing\n", ""},
    {"[listen a]\naddress = 1.2.3.4:5\n",
     "1: listener a has neither on_connect nor requests = yes\n"},
    {"[route r]\nhandler = builtin:hello\n[listen a]\nrequests = no\nroutes = r\n[listen b]\n"
     "protocol = jsonrpc\n",
     "3: listener a has neither on_connect nor requests = yes\n"
     "6: listener b has neither on_connect nor requests = yes\n"},
    /* Not on top of an error in the section: the bad line may be the one. */
    {"[listen a]\nrequests = maybe\n",
     "2: bad boolean 'maybe' for requests (yes/no, on/off, true/false)\n"},
    {"[listen a]\non_connect = bad!\n",
     "2: bad route name 'bad!' for on_connect (1 to 64 of A-Z a-z 0-9 _ . -)\n"},
    /* routes: every name defined (before or after), each once. */
    {"[listen a]\nrequests = yes\nroutes = hello, nope other\n" ROUTE_HELLO,
     "3: route 'nope' is not defined\n3: route 'other' is not defined\n"},
    {"[listen a]\nrequests = yes\nroutes = hello,hello\n" ROUTE_HELLO,
     "3: route 'hello' is listed twice in routes\n"},
    {"[pool]\n", "1: [pool] needs a name\n"},
    {"[pool a/b]\n", "1: bad section name 'a/b' (1 to 64 of A-Z a-z 0-9 _ . -)\n"},
    {"[pool p]\nthreads = 2\n[pool p]\n", "3: duplicate section [pool p] (first at line 1)\n"},
    {"[pool p]\nthreads = 2\nthreads = 3\n", "3: duplicate key 'threads' (first at line 2)\n"},
    {"[pool p]\nhandler = builtin:hello\n", "2: unknown key 'handler' in [pool]\n"},
    {"[pool p]\nthreads = four\n", "2: bad integer 'four' for threads\n"},
    /* include: the rest is in the "include" case, with real files. */
    {"include =\n", "1: include needs a file name or a glob\n"},
    {ROUTE_HELLO "include = ; nothing\n", "3: include needs a file name or a glob\n"},
    {"include = /nonexistent/x.conf\n",
     "1: cannot open included file '/nonexistent/x.conf': No such file or directory\n"},
    {"include = /nonexistent/*.conf\n" ROUTE_HELLO, ""},
    {"Include = x.conf\n", "1: key 'Include' outside any section\n"},
    {"[server]\nstall_warning = 20ms\nstall_warning = 0\n",
     "3: duplicate key 'stall_warning' (first at line 2)\n"},
    {ROUTE_HELLO "pool = legacy\n", "3: pool 'legacy' is not defined\n"},
    {ROUTE_HELLO "pool = a b\n",
     "3: bad pool name 'a b' for pool (1 to 64 of A-Z a-z 0-9 _ . -)\n"},
    {ROUTE_HELLO "timeout = 25h\n", "3: timeout = 25h is out of range (0..24h)\n"},
    /* Keys are case-sensitive, and echoed keys are made printable and cut. */
    {"[server]\nLog_Level = info\n", "2: unknown key 'Log_Level' in [server]\n"},
    {"[server]\nk\x01\xff = 1\n", "2: unknown key 'k?"
                                  "?' in [server]\n"},
};

START_TEST(test_structure)
{
    ck_assert_str_eq(errors_of(structure[_i].text), structure[_i].want);
}
END_TEST

START_TEST(test_all_errors_reported)
{
    /* One of each, in one file: every one is reported at its own line, in
     * line order, and parsing goes on after each. */
    const char *text = "max_connections = 5\n"     /* 1: outside any section */
                       "[server]\n"                /* 2 */
                       "max_connections = 0\n"     /* 3: out of range */
                       "output_buffer = lots\n"    /* 4: bad size */
                       "log_level = info\n"        /* 5 */
                       "log_level = debug\n"       /* 6: duplicate */
                       "[listen a]\n"              /* 7 */
                       "on_connect = missing\n"    /* 8: dangling, found at EOF */
                       "bogus\n"                   /* 9: syntax */
                       "[route r]\n"               /* 10: no handler */
                       "args = {\n"                /* 11 */
                       "  \"a\": 1,\n"             /* 12 */
                       "  \"b\": ]\n"              /* 13: JSON syntax */
                       "[weird]\n"                 /* 14: unknown section */
                       "ignored = 1\n"             /* 15: in a bad section: ignored */
                       "[route ok]\n"              /* 16 */
                       "handler = builtin:hello\n" /* 17 */
                       "pool = legacy\n"           /* 18: undefined, found at EOF */
                       "[listen a]\n";             /* 19: duplicate section */
    ck_assert_str_eq(errors_of(text), "1: key 'max_connections' outside any section\n"
                                      "3: max_connections = 0 is out of range (1..1000000)\n"
                                      "4: bad size 'lots' for output_buffer (e.g. 64K, 1M)\n"
                                      "6: duplicate key 'log_level' (first at line 5)\n"
                                      "8: route 'missing' is not defined\n"
                                      "9: syntax error: expected 'key = value' or '[section]'\n"
                                      "10: [route r] has no handler\n"
                                      "13: bad JSON in args: unexpected token near ']'\n"
                                      "14: unknown section [weird]\n"
                                      "18: pool 'legacy' is not defined\n"
                                      "19: duplicate section [listen a] (first at line 7)\n");
}
END_TEST

START_TEST(test_too_many_errors)
{
    /* A binary file given by mistake must not print a million lines. */
    static char text[300 * 4 + 1];
    for (size_t i = 0; i < 300; i++)
        strcpy(text + i * 4, "xx\n\n");
    const char *got = errors_of(text);
    size_t lines = 0;
    for (const char *p = got; (p = strchr(p, '\n')); p++)
        lines++;
    ck_assert_uint_eq(lines, 101);
    ck_assert_ptr_nonnull(strstr(got, "\n199: syntax error"));
    ck_assert_ptr_nonnull(strstr(got, "\n199: too many errors, giving up\n"));
    ck_assert_ptr_null(strstr(got, "\n201:"));
}
END_TEST

START_TEST(test_nul_bytes)
{
    static const char text[] = "[server]\nmax_connections = 5\0 0\n[listen a]\nx\0\n"
                               "[route r]\nhandler = builtin:hello\nargs = {\n\"a\": \"\0\"\n}\n";
    ck_assert_str_eq(errors_of_len(text, sizeof text - 1),
                     "2: NUL byte in line (not a text file?)\n"
                     "4: NUL byte in line (not a text file?)\n"
                     "8: NUL byte in line (not a text file?)\n");
    /* Arbitrary bytes: errors, never a crash (valgrind watches). */
    char junk[4096];
    unsigned x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245 + 12345;
        junk[i] = (char)(x >> 16);
    }
    ck_assert_str_ne(errors_of_len(junk, sizeof junk), "");
}
END_TEST

START_TEST(test_errs_null)
{
    ck_assert_ptr_null(jsond_config_parse("t.conf", "[bad\n", 5, NULL));
    ck_assert_ptr_null(jsond_config_load("/nonexistent/jsond.conf", NULL));
    jsond_config *cfg = jsond_config_parse(NULL, LISTEN_L, strlen(LISTEN_L), NULL);
    ck_assert_ptr_nonnull(cfg);
    jsond_config_unref(cfg);
}
END_TEST

/* ---- comments, JSON over lines, line endings ---------------------------- */

START_TEST(test_comments)
{
    jsond_config *cfg = parse_ok("; comment\n"
                                 "  # indented comment\n"
                                 "\t\n"
                                 "[server] # header comment\n"
                                 "max_connections = 7 ; after a value\n"
                                 "log_level=error\t# after a tab\n"
                                 "[listen a];header comment without a blank\n"
                                 "address = unix:/tmp/a;b#c\t; a comment\n"
                                 "requests = yes\n"
                                 "[route r]\n"
                                 "handler =  builtin:hello   \n"
                                 "args = {\"s\": \"x ; y # z\", \"t\": \"\\\" ; q\"} ; real\n");
    ck_assert_uint_eq(cfg->server.max_connections, 7);
    ck_assert_str_eq(((const struct sockaddr_un *)&cfg->listens[0].address.ss)->sun_path,
                     "/tmp/a;b#c");
    ck_assert_str_eq(cfg->routes[0].handler, "builtin:hello");
    ck_assert_str_eq(json_string_value(json_object_get(cfg->routes[0].args, "s")), "x ; y # z");
    ck_assert_str_eq(json_string_value(json_object_get(cfg->routes[0].args, "t")), "\" ; q");
    jsond_config_unref(cfg);
    /* "error#..." is one word: a bad log level, not "error" plus a comment. */
    ck_assert_str_eq(errors_of("[server]\nlog_level = error#x\n"),
                     "2: bad log level 'error#x' for log_level (debug, info, notice, warning, "
                     "error)\n");
}
END_TEST

START_TEST(test_json_multiline)
{
    jsond_config *cfg = parse_ok("[route r]\n"
                                 "handler = builtin:big\n"
                                 "args = {           ; a comment on the first line\n"
                                 "  # a comment line inside the value\n"
                                 "  \"size\": 100,   ; more\n"
                                 "  \"list\": [1,\n"
                                 "     2, \"]\"],\n"
                                 "  \"o\": {\"a\": \"{\"}\n"
                                 "}\n"
                                 "fixed_args = {\"max_size\": 1000}\n"
                                 "[listen a]\n"
                                 "on_connect = r\n");
    json_t *want =
        json_pack("{s:i,s:[i,i,s],s:{s:s}}", "size", 100, "list", 1, 2, "]", "o", "a", "{");
    ck_assert(json_equal(cfg->routes[0].args, want));
    json_decref(want);
    ck_assert_int_eq(json_integer_value(json_object_get(cfg->routes[0].fixed_args, "max_size")),
                     1000);
    ck_assert_str_eq(cfg->listens[0].on_connect, "r");
    ck_assert_int_eq(cfg->listens[0].line, 11);
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_json_errors)
{
    /* A JSON error is reported at its own line inside the value, and the
     * value's lines are consumed: line 8 parses normally. */
    ck_assert_str_eq(errors_of("[route r]\n"
                               "handler = builtin:hello\n"
                               "args = {\n"
                               "  \"a\": 1,\n"
                               "  ; comment\n"
                               "  \"b\": ,\n"
                               "}\n"
                               "port = 1\n"),
                     "6: bad JSON in args: unexpected token near ','\n"
                     "8: unknown key 'port' in [route]\n");
    /* Never balanced: reported where the value starts. */
    ck_assert_str_eq(errors_of("[route r]\nhandler = builtin:hello\nargs = {\"a\": [1,\n\n"
                               "[listen a]\n"),
                     "0: no [listen] section: this config would serve nothing\n"
                     "3: unbalanced JSON value\n");
    /* Brackets inside strings and after a comment do not count. */
    ck_assert_str_eq(errors_of("[route r]\nhandler = builtin:hello\nargs = {\"a\": \"}\" ; }\n"),
                     "0: no [listen] section: this config would serve nothing\n" /* eaten */
                     "3: unbalanced JSON value\n");
    /* The values of unknown keys and bad sections are consumed whole too. */
    ck_assert_str_eq(errors_of("[route r]\nhandler = builtin:hello\nextra = {\n[listen a]\n}\n"
                               "[bad]\nx = [\n[listen b]\n]\n" LISTEN_L),
                     "3: unknown key 'extra' in [route]\n6: unknown section [bad]\n");
}
END_TEST

START_TEST(test_crlf)
{
    jsond_config *cfg = parse_ok("[server]\r\n"
                                 "max_connections = 9\r\n"
                                 "write_timeout = 1s ; c\r\n"
                                 "[listen a]\r\n"
                                 "address = 127.0.0.1:1\r\n"
                                 "on_connect = r\r\n"
                                 "[route r]\r\n"
                                 "handler = builtin:hello\r\n"
                                 "args = {\r\n"
                                 "  \"a\": 1\r\n"
                                 "}\r\n");
    ck_assert_uint_eq(cfg->server.max_connections, 9);
    ck_assert_uint_eq(cfg->server.write_timeout_ms, 1000);
    ck_assert_str_eq(cfg->listens[0].on_connect, "r");
    ck_assert_str_eq(cfg->routes[0].handler, "builtin:hello");
    ck_assert_int_eq(json_integer_value(json_object_get(cfg->routes[0].args, "a")), 1);
    jsond_config_unref(cfg);
    /* Line numbers count CRLF lines like LF ones; no final newline is fine. */
    ck_assert_str_eq(errors_of("[server]\r\n\r\nmax_connections = 0"),
                     "3: max_connections = 0 is out of range (1..1000000)\n");
}
END_TEST

START_TEST(test_long_line)
{
    /* No line buffer to overflow or to cut at: a 10,000-character value. */
    size_t n = 10000;
    char *text = malloc(n + 100), *p = text;
    p += sprintf(p, "%s", ROUTE_HELLO "args = {\"s\": \"");
    memset(p, 'x', n);
    p += n;
    sprintf(p, "\"}\n");
    jsond_config *cfg = parse_ok(text);
    ck_assert_uint_eq(json_string_length(json_object_get(cfg->routes[0].args, "s")), n);
    jsond_config_unref(cfg);

    /* A long bad value is echoed cut to 64 bytes. */
    sprintf(text, "[server]\nlog_level = ");
    memset(text + strlen(text), 'v', n);
    text[21 + n] = '\0';
    ck_assert_str_eq(errors_of(text),
                     "2: bad log level "
                     "'vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv..."
                     "' for log_level (debug, info, notice, warning, error)\n");
    free(text);
}
END_TEST

/* ---- pools --------------------------------------------------------------- */

START_TEST(test_pool_implicit_default)
{
    /* Not declared: a pool default with the documented values, first. */
    jsond_config *cfg = parse_ok(ROUTE_HELLO "[pool b]\n[pool a]\nthreads = 2\n");
    ck_assert_uint_eq(cfg->npools, 3);
    const cfg_pool *d = &cfg->pools[0];
    ck_assert_str_eq(d->name, "default");
    ck_assert_ptr_null(d->file);
    ck_assert_int_eq(d->line, 0);
    ck_assert_uint_eq(d->threads, 4);
    ck_assert_uint_eq(d->queue_limit, 256);
    ck_assert_ptr_eq(jsond_config_pool(cfg, "default"), d);
    /* Declared ones follow in file order, with the defaults they omit. */
    ck_assert_str_eq(cfg->pools[1].name, "b");
    ck_assert_int_eq(cfg->pools[1].line, 3);
    ck_assert_str_eq(cfg->pools[1].file, "t.conf");
    ck_assert_uint_eq(cfg->pools[1].threads, 4);
    ck_assert_uint_eq(cfg->pools[1].queue_limit, 256);
    ck_assert_str_eq(cfg->pools[2].name, "a");
    ck_assert_int_eq(cfg->pools[2].line, 4);
    ck_assert_uint_eq(cfg->pools[2].threads, 2);
    ck_assert_uint_eq(cfg->pools[2].queue_limit, 256);
    ck_assert_ptr_eq(jsond_config_pool(cfg, "a"), &cfg->pools[2]);
    ck_assert_ptr_null(jsond_config_pool(cfg, "A"));
    ck_assert_ptr_null(jsond_config_pool(cfg, "nope"));
    /* A route without a pool key has none of its own. */
    ck_assert_ptr_null(cfg->routes[0].pool);
    jsond_config_unref(cfg);

    /* A config without any pool has the default alone. */
    cfg = parse_ok("");
    ck_assert_uint_eq(cfg->npools, 1);
    ck_assert_str_eq(cfg->pools[0].name, "default");
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_pool_declared_default)
{
    /* [pool default] replaces the implicit one: its values, its place in
     * file order, its position, and no second default. */
    jsond_config *cfg = parse_ok("[pool a]\nthreads = 1\n"
                                 "[pool default]\nthreads = 8\nqueue_limit = 0\n"
                                 "[pool z]\n");
    ck_assert_uint_eq(cfg->npools, 3);
    ck_assert_str_eq(cfg->pools[0].name, "a");
    ck_assert_str_eq(cfg->pools[1].name, "default");
    ck_assert_str_eq(cfg->pools[2].name, "z");
    const cfg_pool *d = jsond_config_pool(cfg, "default");
    ck_assert_ptr_eq(d, &cfg->pools[1]);
    ck_assert_str_eq(d->file, "t.conf");
    ck_assert_int_eq(d->line, 3);
    ck_assert_uint_eq(d->threads, 8);
    ck_assert_uint_eq(d->queue_limit, 0);
    jsond_config_unref(cfg);

    /* Declared without keys: the same values as the implicit one, so the
     * same effect, though now it has a place. */
    cfg = parse_ok("[pool default]\n");
    ck_assert_uint_eq(cfg->npools, 1);
    ck_assert_int_eq(cfg->pools[0].line, 1);
    ck_assert_uint_eq(cfg->pools[0].threads, 4);
    ck_assert_uint_eq(cfg->pools[0].queue_limit, 256);
    jsond_config *implicit = parse_ok("");
    ck_assert(jsond_config_equal(cfg, implicit));
    ck_assert(jsond_config_equal(implicit, cfg));
    jsond_config_unref(implicit);
    jsond_config_unref(cfg);

    /* Declared twice is a duplicate like any section. */
    ck_assert_str_eq(errors_of("[pool default]\nthreads = 2\n\n[pool default]\n"),
                     "4: duplicate section [pool default] (first at line 1)\n");
}
END_TEST

static const struct {
    const char *key, *value, *want;
} pool_bad[] = {
    {"threads", "0", "2: threads = 0 is out of range (1..1024)\n"},
    {"threads", "1025", "2: threads = 1025 is out of range (1..1024)\n"},
    {"threads", "4294967297", "2: threads = 4294967297 is out of range (1..1024)\n"},
    {"queue_limit", "1000001", "2: queue_limit = 1000001 is out of range (0..1000000)\n"},
    {"threads", "-1", "2: bad integer '-1' for threads\n"},
    {"threads", "4 threads", "2: bad integer '4 threads' for threads\n"},
    {"queue_limit", "1K", "2: bad integer '1K' for queue_limit\n"},
    {"queue_limit", "", "2: bad integer '' for queue_limit\n"},
};

START_TEST(test_pool_bad_values)
{
    ck_assert_str_eq(errors_of_key("pool p", pool_bad[_i].key, pool_bad[_i].value),
                     pool_bad[_i].want);
}
END_TEST

START_TEST(test_pool_ranges)
{
    /* Both ends of each range are accepted. */
    jsond_config *cfg = parse_ok("[pool lo]\nthreads = 1\nqueue_limit = 0\n"
                                 "[pool hi]\nthreads = 1024\nqueue_limit = 1000000\n");
    const cfg_pool *lo = jsond_config_pool(cfg, "lo"), *hi = jsond_config_pool(cfg, "hi");
    ck_assert_uint_eq(lo->threads, 1);
    ck_assert_uint_eq(lo->queue_limit, 0);
    ck_assert_uint_eq(hi->threads, 1024);
    ck_assert_uint_eq(hi->queue_limit, 1000000);
    jsond_config_unref(cfg);
    /* Each error at its own line, every one reported. */
    ck_assert_str_eq(errors_of("[pool a]\nthreads = 1024\n[pool b]\n\nqueue_limit = 1000001\n"
                               "threads = 0\n[pool default]\nthreads = 1025\n"),
                     "5: queue_limit = 1000001 is out of range (0..1000000)\n"
                     "6: threads = 0 is out of range (1..1024)\n"
                     "8: threads = 1025 is out of range (1..1024)\n");
}
END_TEST

START_TEST(test_route_pool)
{
    /* Stored as written; the pool may be declared before or after. */
    jsond_config *cfg = parse_ok("[pool early]\n"
                                 "[route a]\nhandler = builtin:sleep\npool = early\n"
                                 "[route b]\nhandler = builtin:sleep\npool = late ; comment\n"
                                 "[route c]\nhandler = builtin:sleep\n"
                                 "[pool late]\nthreads = 1\n");
    ck_assert_str_eq(jsond_config_route(cfg, "a")->pool, "early");
    ck_assert_str_eq(jsond_config_route(cfg, "b")->pool, "late");
    ck_assert_ptr_null(jsond_config_route(cfg, "c")->pool);
    ck_assert_uint_eq(jsond_config_pool(cfg, jsond_config_route(cfg, "b")->pool)->threads, 1);
    jsond_config_unref(cfg);

    /* default needs no [pool] section; it is stored, not dropped: a
     * route that names it differs from one that names none. */
    cfg = parse_ok(ROUTE_HELLO "pool = default\n");
    ck_assert_str_eq(cfg->routes[0].pool, "default");
    ck_assert_uint_eq(cfg->npools, 1);
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_pool_undefined)
{
    /* Found at the end, reported at the pool key's line, in line order
     * among the other errors. Names are case-sensitive, and a route or a
     * listener of that name is no pool. */
    ck_assert_str_eq(errors_of("[route r]\nhandler = builtin:hello\npool = nope\n"
                               "[route s]\nhandler = builtin:hello\n\npool = legacy\n"
                               "[pool Legacy]\n"
                               "[route t]\nhandler = builtin:hello\npool = s\n"
                               "[listen zz]\n"
                               "[route u]\nhandler = builtin:hello\npool = zz\n"
                               "[server]\nmax_connections = 0\n"),
                     "3: pool 'nope' is not defined\n"
                     "7: pool 'legacy' is not defined\n"
                     "11: pool 's' is not defined\n"
                     "15: pool 'zz' is not defined\n"
                     "17: max_connections = 0 is out of range (1..1000000)\n");
    /* A pool whose header is in error is not declared. */
    ck_assert_str_eq(errors_of("[pool a b]\n" ROUTE_HELLO "pool = a\n"),
                     "1: bad section name 'a b' (1 to 64 of A-Z a-z 0-9 _ . -)\n"
                     "4: pool 'a' is not defined\n");
}
END_TEST

START_TEST(test_route_equal_pool)
{
    jsond_config *cfg = parse_ok("[pool p]\n[pool q]\n"
                                 "[route nopool]\nhandler = builtin:sleep\n"
                                 "[route p1]\nhandler = builtin:sleep\npool = p\n"
                                 "[route p2]\nhandler = builtin:sleep\npool = p\n"
                                 "[route q]\nhandler = builtin:sleep\npool = q\n"
                                 "[route d]\nhandler = builtin:sleep\npool = default\n");
    ck_assert(
        jsond_config_route_equal(jsond_config_route(cfg, "p1"), jsond_config_route(cfg, "p2")));
    ck_assert(
        !jsond_config_route_equal(jsond_config_route(cfg, "p1"), jsond_config_route(cfg, "q")));
    ck_assert(
        !jsond_config_route_equal(jsond_config_route(cfg, "q"), jsond_config_route(cfg, "p1")));
    ck_assert(!jsond_config_route_equal(jsond_config_route(cfg, "nopool"),
                                        jsond_config_route(cfg, "p1")));
    ck_assert(!jsond_config_route_equal(jsond_config_route(cfg, "p1"),
                                        jsond_config_route(cfg, "nopool")));
    ck_assert(
        !jsond_config_route_equal(jsond_config_route(cfg, "nopool"), jsond_config_route(cfg, "d")));
    jsond_config_unref(cfg);
}
END_TEST

/* ---- the default, equality, references, files --------------------------- */

START_TEST(test_on_connect_none)
{
    jsond_config *cfg = parse_ok("[listen a]\nrequests = yes\non_connect = none\n");
    ck_assert_ptr_null(cfg->listens[0].on_connect);
    ck_assert_int_eq(cfg->listens[0].requests, 1);
    /* The same effect as no on_connect at all. */
    jsond_config *same = parse_ok("[listen a]\nrequests = yes\n");
    ck_assert(jsond_config_equal(cfg, same));
    jsond_config_unref(same);
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_must_serve)
{
    /* No [listen] section: an empty file (/dev/null), comments only, a
     * file cut short before its first listener. At line 0: no line is at
     * fault, the file is. */
    static const char *const none[] = {
        "",
        "; only comments\n# and more\n",
        ("[server]\nmax_connections = 5\n" ROUTE_HELLO),
        "[server]\nmax_conn",
    };
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        const char *want = i < 3 ? "0: no [listen] section: this config would serve nothing\n"
                                 : "0: no [listen] section: this config would serve nothing\n"
                                   "2: syntax error: expected 'key = value' or '[section]'\n";
        ck_assert_str_eq(errors_of_raw(none[i], strlen(none[i])), want);
    }
    /* A [listen] with no address (for a socket systemd passes) is one; a
     * bad [listen] header has been reported already: no second error. */
    ck_assert_str_eq(errors_of_raw("[listen a]\n", 11), "");
    ck_assert_str_eq(errors_of_raw("[listen a b]\n", 13),
                     "1: bad section name 'a b' (1 to 64 of A-Z a-z 0-9 _ . -)\n");

    /* Two listeners on one address: an error at the second's address
     * line, naming the first's. Port 0 is a port each, unix paths too. */
    static const struct {
        const char *a, *b, *want;
    } same[] = {
        {"127.0.0.1:8080", "127.0.0.1:8080",
         "5: listener b: address 127.0.0.1:8080 is also listener a's (line 2)\n"},
        {"[::1]:8080", "[::1]:8080",
         "5: listener b: address [::1]:8080 is also listener a's "
         "(line 2)\n"},
        {"unix:/nonexistent/s", "unix:/nonexistent/s",
         "5: listener b: address unix:/nonexistent/s is also listener a's (line 2)\n"},
        {"127.0.0.1:0", "127.0.0.1:0", ""},
        {"[::1]:0", "[::1]:0", ""},
        {"127.0.0.1:8080", "127.0.0.2:8080", ""},
        {"127.0.0.1:8080", "[::1]:8080", ""},
        {"0.0.0.0:8080", "[::]:8080", ""},
    };
    char text[512];
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        snprintf(text, sizeof text,
                 "[listen a]\naddress = %s\nrequests = yes\n[listen b]\naddress = %s\n"
                 "requests = yes\n",
                 same[i].a, same[i].b);
        ck_assert_str_eq(errors_of_raw(text, strlen(text)), same[i].want);
    }
    /* Three on one address: each later one names the first. */
    ck_assert_str_eq(errors_of("[listen a]\naddress = 127.0.0.1:1\nrequests = yes\n"
                               "[listen b]\nrequests = yes\naddress = 127.0.0.1:1\n"
                               "[listen c]\naddress = 127.0.0.1:1\nrequests = yes\n"),
                     "6: listener b: address 127.0.0.1:1 is also listener a's (line 2)\n"
                     "8: listener c: address 127.0.0.1:1 is also listener a's (line 2)\n");
}
END_TEST

START_TEST(test_unix_path_in_the_way)
{
    /* Only a socket is ever replaced: a file at a unix listener's path is
     * an error at its address line, so `jsond -t` sees it too. */
    char dir[] = "/tmp/check_config.XXXXXX", text[256], want[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(text, sizeof text, "[listen a]\nrequests = yes\naddress = unix:%s/f\n", dir);
    ck_assert_str_eq(errors_of(text), "");
    char path[64];
    snprintf(path, sizeof path, "%s/f", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("data\n", f);
    fclose(f);
    snprintf(want, sizeof want,
             "3: 'unix:%s' is a regular file, not a socket: jsond replaces only a stale "
             "socket\n",
             path);
    ck_assert_str_eq(errors_of(text), want);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_default_equals_conf)
{
    jsond_errors *errs = jsond_errors_new();
    jsond_config *def = jsond_config_default();
    const char *path = srcdir_path("conf/jsond.conf");
    jsond_config *conf = jsond_config_load(path, errs);
    const jsond_error *e = jsond_errors_get(errs, 0);
    ck_assert_msg(conf != NULL, "%s:%d: %s", e ? e->file : path, e ? e->line : 0, e ? e->text : "");
    ck_assert_ptr_nonnull(def);
    ck_assert_str_eq(jsond_config_source(def), "(built-in)");
    ck_assert_str_eq(jsond_config_source(conf), path);
    ck_assert(jsond_config_equal(def, conf));
    ck_assert(jsond_config_equal(conf, def));

    /* What the default is, as DESIGN.md states it. */
    char buf[64];
    ck_assert_uint_eq(def->nlistens, 2);
    ck_assert_str_eq(def->listens[0].name, "v4");
    ck_assert_str_eq(jsond_addr_format(&def->listens[0].address, buf, sizeof buf), "0.0.0.0:25000");
    ck_assert_str_eq(def->listens[1].name, "v6");
    ck_assert_str_eq(jsond_addr_format(&def->listens[1].address, buf, sizeof buf), "[::]:25000");
    for (size_t i = 0; i < 2; i++) {
        ck_assert_str_eq(def->listens[i].on_connect, "hello");
        ck_assert_int_eq(def->listens[i].requests, 0);
        ck_assert_int_eq(def->listens[i].all_routes, 1);
        ck_assert_int_eq(def->listens[i].protocol, JSOND_PROTOCOL_AUTO);
    }
    ck_assert_uint_eq(def->nroutes, 1);
    ck_assert_str_eq(jsond_config_route(def, "hello")->handler, "builtin:hello");
    ck_assert_ptr_null(jsond_config_route(def, "hello")->pool);
    ck_assert_uint_eq(def->npools, 1);
    ck_assert_str_eq(def->pools[0].name, "default");
    ck_assert_ptr_null(def->pools[0].file);
    ck_assert_uint_eq(def->pools[0].threads, 4);
    ck_assert_uint_eq(def->pools[0].queue_limit, 256);

    /* The default text is what jsond_config_default() parses. */
    const char *text = jsond_config_default_text();
    jsond_config *again = jsond_config_parse("x", text, strlen(text), errs);
    ck_assert(jsond_config_equal(def, again));
    ck_assert_uint_eq(jsond_errors_count(errs), 0);
    jsond_config_unref(again);
    jsond_config_unref(conf);
    jsond_config_unref(def);
    jsond_errors_free(errs);
}
END_TEST

/* A config made of the sections of `equal_base`, section `at` replaced. */
static const char *const equal_base[] = {
    "[server]\nmax_connections = 5\n",
    "[listen a]\naddress = 127.0.0.1:1\non_connect = r\n",
    "[listen b]\n",
    "[route r]\nhandler = builtin:hello\nargs = {\"a\": 1, \"b\": 2}\n",
    "[route s]\nhandler = builtin:big\n",
    "[pool p]\nthreads = 2\n",
};

static const struct {
    size_t at;
    const char *with;
} equal_differ[] = {
    {0, "[server]\nmax_connections = 6\n"},
    {0, "[server]\nlog_level = debug\n"},
    {1, "[listen a]\naddress = 127.0.0.1:2\non_connect = r\n"},
    {1, "[listen a]\naddress = [::1]:1\non_connect = r\n"},
    {1, "[listen a]\non_connect = r\n"},
    {1, "[listen a]\naddress = 127.0.0.1:1\non_connect = s\n"},
    {1, "[listen a]\naddress = 127.0.0.1:1\nrequests = yes\n"},
    {1, "[listen a]\naddress = 127.0.0.1:1\non_connect = r\nrequests = yes\n"},
    {1, "[listen a]\naddress = 127.0.0.1:1\non_connect = r\nroutes = r\n"},
    {1, "[listen a]\naddress = 127.0.0.1:1\non_connect = r\nprotocol = jsonrpc\n"},
    {0, "[server]\nmax_connections = 5\nmax_request_size = 1K\n"},
    {0, "[server]\nmax_connections = 5\nidle_timeout = 0\n"},
    {0, "[server]\nmax_connections = 5\nmax_pipeline = 1\n"},
    {0, "[server]\nmax_connections = 5\npolicy = strict\n"},
    {2, "[listen c]\n"},
    {2, ""},
    {3, "[route r]\nhandler = builtin:big\nargs = {\"a\": 1, \"b\": 2}\n"},
    {3, "[route r]\nhandler = builtin:hello\nargs = {\"a\": 1}\n"},
    {3, "[route r]\nhandler = builtin:hello\nargs = {\"a\": 1, \"b\": \"2\"}\n"},
    {3, "[route r]\nhandler = builtin:hello\n"},
    {3, "[route r]\nhandler = builtin:hello\nargs = {\"a\": 1, \"b\": 2}\nfixed_args = {}\n"},
    {4, "[route t]\nhandler = builtin:hello\n"},
    /* Pools: their values, and which exist; a route's pool key, where
     * none and default differ (a dual handler runs on the loop without). */
    {5, "[pool p]\nthreads = 3\n"},
    {5, "[pool p]\nthreads = 2\nqueue_limit = 255\n"},
    {5, "[pool p]\nthreads = 2\n[pool q]\n"},
    {5, ""},
    {5, "[pool q]\nthreads = 2\n"},
    {5, "[pool p]\nthreads = 2\n[pool default]\nthreads = 5\n"},
    {4, "[route s]\nhandler = builtin:big\npool = p\n"},
    {4, "[route s]\nhandler = builtin:big\npool = default\n"},
};

START_TEST(test_equal)
{
    char text[1024] = "";
    for (size_t i = 0; i < sizeof equal_base / sizeof equal_base[0]; i++)
        strcat(text, equal_base[i]);
    jsond_config *a = parse_ok(text);
    /* Same values, other order, other spelling, comments: the same effect. */
    jsond_config *b = parse_ok("[route s]\nhandler = builtin:big\n"
                               "[route r] ; moved\nargs = {\"b\": 2,\n \"a\": 1}\n"
                               "handler = builtin:hello\n"
                               "[listen b]\n"
                               "[listen a]\non_connect = r\naddress = 127.0.0.1:1\n"
                               "[server]\nmax_connections = 5\nwrite_timeout = 30000ms\n"
                               "[pool default] ; the implicit one, declared, elsewhere\n"
                               "threads = 4\n"
                               "[pool p]\nqueue_limit = 256\nthreads = 2\n");
    ck_assert_str_eq(b->pools[0].name, "default");
    ck_assert_ptr_nonnull(b->pools[0].file);
    ck_assert_str_eq(a->pools[0].name, "default");
    ck_assert_ptr_null(a->pools[0].file);
    ck_assert(jsond_config_equal(a, b));
    ck_assert(jsond_config_equal(b, a));
    jsond_config_unref(b);

    for (size_t i = 0; i < sizeof equal_differ / sizeof equal_differ[0]; i++) {
        text[0] = '\0';
        for (size_t j = 0; j < sizeof equal_base / sizeof equal_base[0]; j++)
            strcat(text, j == equal_differ[i].at ? equal_differ[i].with : equal_base[j]);
        b = parse_ok(text);
        ck_assert_msg(!jsond_config_equal(a, b), "equal to: %s", text);
        ck_assert_msg(!jsond_config_equal(b, a), "equal to: %s", text);
        jsond_config_unref(b);
    }
    jsond_config_unref(a);
}
END_TEST

START_TEST(test_equal_route_lists)
{
    /* A list is a set: order and spelling do not matter, members do. */
    static const char *const routes = "[route r]\nhandler = builtin:hello\n"
                                      "[route s]\nhandler = builtin:hello\n"
                                      "[route t]\nhandler = builtin:hello\n";
    static const char *const same[] = {"r, s", "s r", "s,r"};
    static const char *const differ[] = {"r", "r, s, t", "r, t", "*"};
    char text[512];
    snprintf(text, sizeof text, "[listen a]\nrequests = yes\nroutes = r,s\n%s", routes);
    jsond_config *a = parse_ok(text);
    for (size_t i = 0; i < 3; i++) {
        snprintf(text, sizeof text, "[listen a]\nrequests = yes\nroutes = %s\n%s", same[i], routes);
        jsond_config *b = parse_ok(text);
        ck_assert_msg(jsond_config_equal(a, b), "not equal to: %s", same[i]);
        ck_assert_msg(jsond_config_equal(b, a), "not equal to: %s", same[i]);
        jsond_config_unref(b);
    }
    for (size_t i = 0; i < 4; i++) {
        snprintf(text, sizeof text, "[listen a]\nrequests = yes\nroutes = %s\n%s", differ[i],
                 routes);
        jsond_config *b = parse_ok(text);
        ck_assert_msg(!jsond_config_equal(a, b), "equal to: %s", differ[i]);
        ck_assert_msg(!jsond_config_equal(b, a), "equal to: %s", differ[i]);
        jsond_config_unref(b);
    }
    jsond_config_unref(a);
}
END_TEST

START_TEST(test_refcount)
{
    jsond_config *cfg = jsond_config_default();
    ck_assert_int_eq(atomic_load(&cfg->refs), 1);
    ck_assert_ptr_eq(jsond_config_ref(cfg), cfg);
    ck_assert_int_eq(atomic_load(&cfg->refs), 2);
    jsond_config_unref(cfg);
    /* Still alive: valgrind would see a use after free here otherwise. */
    ck_assert_int_eq(atomic_load(&cfg->refs), 1);
    ck_assert_str_eq(cfg->routes[0].handler, "builtin:hello");
    jsond_config_unref(cfg); /* freed: valgrind would report a leak otherwise */
    jsond_config_unref(NULL);
}
END_TEST

START_TEST(test_load_missing)
{
    jsond_errors *errs = jsond_errors_new();
    ck_assert_ptr_null(jsond_config_load("/nonexistent/dir/jsond.conf", errs));
    ck_assert_uint_eq(jsond_errors_count(errs), 1);
    const jsond_error *e = jsond_errors_get(errs, 0);
    ck_assert_str_eq(e->file, "/nonexistent/dir/jsond.conf");
    ck_assert_int_eq(e->line, 0);
    ck_assert_str_eq(e->text, "cannot open: No such file or directory");
    jsond_errors_free(errs);
}
END_TEST

START_TEST(test_load_file)
{
    char dir[] = "/tmp/check_config.XXXXXX", path[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/jsond.conf", dir);

    /* A directory is no config file. */
    jsond_errors *errs = jsond_errors_new();
    ck_assert_ptr_null(jsond_config_load(dir, errs));
    ck_assert_uint_eq(jsond_errors_count(errs), 1);
    ck_assert_str_eq(jsond_errors_get(errs, 0)->text, "cannot read: Is a directory");
    jsond_errors_free(errs);

    /* Bigger than any read chunk, so the file is read in several pieces. */
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("[server]\nmax_connections = 42\n", f);
    for (int i = 0; i < 20000; i++)
        fputs("; padding padding padding padding padding padding padding\n", f);
    fputs("[listen a]\naddress = 127.0.0.1:0\nbogus = 1\n", f);
    ck_assert_int_eq(fclose(f), 0);

    errs = jsond_errors_new();
    ck_assert_ptr_null(jsond_config_load(path, errs));
    ck_assert_uint_eq(jsond_errors_count(errs), 1);
    const jsond_error *e = jsond_errors_get(errs, 0);
    ck_assert_str_eq(e->file, path);
    ck_assert_int_eq(e->line, 20005);
    ck_assert_str_eq(e->text, "unknown key 'bogus' in [listen]");
    jsond_errors_free(errs);

    /* Fixed, with mkstemp's unpredictable name this time. */
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s/XXXXXX", dir);
    int fd = mkstemp(tmp);
    ck_assert_int_ge(fd, 0);
    static const char good[] = "[server]\nmax_connections = 42\n[listen a]\n";
    ck_assert_int_eq(write(fd, good, sizeof good - 1), (ssize_t)(sizeof good - 1));
    close(fd);
    jsond_config *cfg = jsond_config_load(tmp, NULL);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(jsond_config_source(cfg), tmp);
    ck_assert_uint_eq(jsond_config_max_connections(cfg), 42);
    ck_assert_str_eq(cfg->listens[0].name, "a");
    jsond_config_unref(cfg);

    ck_assert_int_eq(unlink(tmp), 0);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* ---- include, with real files ------------------------------------------ */

/* Each include test runs in a fresh directory: put() makes files (and the
 * directories on their way), the teardown removes them all. */
static char tdir[64];
static char made[128][512];
static int nmade;

static void remember(const char *path)
{
    for (int i = 0; i < nmade; i++)
        if (strcmp(made[i], path) == 0)
            return;
    ck_assert_int_lt(nmade, 128);
    snprintf(made[nmade++], sizeof made[0], "%s", path);
}

static void tdir_setup(void)
{
    snprintf(tdir, sizeof tdir, "/tmp/check_config.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tdir));
    nmade = 0;
}

static void tdir_teardown(void)
{
    /* Newest first: files before the directories that hold them. */
    while (nmade > 0)
        remove(made[--nmade]);
    rmdir(tdir);
}

/* TDIR/REL, in one of a few static buffers. */
static const char *tpath(const char *rel)
{
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", tdir, rel);
    return b;
}

static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tdir, rel);
    for (char *p = path + strlen(tdir) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(path, 0700) == 0)
            remember(path);
        else
            ck_assert_int_eq(errno, EEXIST);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    remember(path);
}

/* The errors as "FILE:LINE: message\n" lines, "TDIR/" left out wherever it
 * appears. The config goes to *out when wanted, else is dropped. */
static const char *render(jsond_config *cfg, jsond_errors *errs, jsond_config **out)
{
    size_t n = jsond_errors_count(errs), used = 0, plen;
    char prefix[80];
    rendered[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const jsond_error *e = jsond_errors_get(errs, i);
        used += (size_t)snprintf(rendered + used, sizeof rendered - used, "%s:%d: %s\n", e->file,
                                 e->line, e->text);
        ck_assert_uint_lt(used, sizeof rendered);
    }
    ck_assert_msg((cfg == NULL) == (n > 0), "config returned with errors, or NULL without: %s",
                  rendered);
    jsond_errors_free(errs);
    if (out)
        *out = cfg;
    else
        jsond_config_unref(cfg);
    plen = (size_t)snprintf(prefix, sizeof prefix, "%s/", tdir);
    char *r = rendered, *w = rendered;
    while (*r) {
        if (strncmp(r, prefix, plen) == 0)
            r += plen;
        else
            *w++ = *r++;
    }
    *w = '\0';
    return rendered;
}

static const char *load_errors(const char *path, jsond_config **out)
{
    jsond_errors *errs = jsond_errors_new();
    return render(jsond_config_load(path, errs), errs, out);
}

START_TEST(test_include_sorted)
{
    /* Several files, read at the include line in sorted order, wherever
     * they were created from; only the matching names. */
    put("jsond.conf", "[listen a]\n"
                      "on_connect = a\n"
                      "include = conf.d/*.conf ; the drop-ins\n"
                      "[route top]\n"
                      "handler = builtin:hello\n");
    put("conf.d/b.conf", "[route b]\nhandler = builtin:echo\n");
    put("conf.d/a.conf", "; a comment first\n[route a]\nhandler = builtin:hello\n");
    put("conf.d/c.conf.bak", "not a config\n");
    put("conf.d/.hidden.conf", "not a config either\n");
    jsond_config *cfg;
    ck_assert_str_eq(load_errors(tpath("jsond.conf"), &cfg), "");
    ck_assert_str_eq(jsond_config_source(cfg), tpath("jsond.conf"));
    ck_assert_uint_eq(cfg->nroutes, 3);
    ck_assert_str_eq(cfg->routes[0].name, "a");
    ck_assert_str_eq(cfg->routes[0].file, tpath("conf.d/a.conf"));
    ck_assert_int_eq(cfg->routes[0].line, 2);
    ck_assert_str_eq(cfg->routes[1].name, "b");
    ck_assert_str_eq(cfg->routes[1].file, tpath("conf.d/b.conf"));
    ck_assert_int_eq(cfg->routes[1].line, 1);
    ck_assert_str_eq(cfg->routes[2].name, "top");
    ck_assert_str_eq(cfg->routes[2].file, tpath("jsond.conf"));
    ck_assert_int_eq(cfg->routes[2].line, 4);
    ck_assert_str_eq(cfg->listens[0].file, tpath("jsond.conf"));
    ck_assert_str_eq(cfg->listens[0].on_connect, "a");
    ck_assert_uint_eq(cfg->nfiles, 3);
    jsond_config_unref(cfg);

    /* The second definition is the error, and names the first: b.conf is
     * read after a.conf, and both after the lines before the include. */
    put("jsond.conf", "[server]\n"
                      "include = conf.d/*.conf\n" LISTEN_L);
    put("conf.d/b.conf", "[route b]\nhandler = builtin:echo\n"
                         "[route a]\nhandler = builtin:echo\n"
                         "[server]\n");
    ck_assert_str_eq(load_errors(tpath("jsond.conf"), NULL),
                     "conf.d/b.conf:3: duplicate section [route a] (first at conf.d/a.conf:2)\n"
                     "conf.d/b.conf:5: duplicate section [server] (first at jsond.conf:1)\n");
}
END_TEST

START_TEST(test_include_relative)
{
    char cwd[4096];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    /* Relative to the including file's directory, at every level: not to
     * the top file's, not to the current directory. */
    put("etc/jsond.conf", "include = sub/x.conf\n" LISTEN_L);
    put("etc/sub/x.conf", "include = y.conf\n");
    put("etc/sub/y.conf", "[route y]\nhandler = builtin:hello\n");
    put("etc/y.conf", "decoy\n");
    put("sub/x.conf", "decoy\n");
    put("y.conf", "decoy\n");

    jsond_config *cfg;
    ck_assert_int_eq(chdir("/"), 0);
    ck_assert_str_eq(load_errors(tpath("etc/jsond.conf"), &cfg), "");
    ck_assert_str_eq(cfg->routes[0].name, "y");
    ck_assert_str_eq(cfg->routes[0].file, tpath("etc/sub/y.conf"));
    jsond_config_unref(cfg);

    /* A relative top file: names stay relative, as given. */
    ck_assert_int_eq(chdir(tdir), 0);
    ck_assert_str_eq(load_errors("etc/jsond.conf", &cfg), "");
    ck_assert_str_eq(cfg->routes[0].file, "etc/sub/y.conf");
    jsond_config_unref(cfg);
    ck_assert_int_eq(chdir("etc"), 0);
    ck_assert_str_eq(load_errors("jsond.conf", &cfg), "");
    ck_assert_str_eq(cfg->routes[0].file, "sub/y.conf");
    jsond_config_unref(cfg);

    /* Text from memory has no directory: relative to the current one. */
    ck_assert_int_eq(chdir(tdir), 0);
    jsond_errors *errs = jsond_errors_new();
    ck_assert_str_eq(
        render(jsond_config_parse("mem", "include = sub/x.conf\n" LISTEN_L, 32, errs), errs, NULL),
        "sub/x.conf:1: syntax error: expected 'key = value' or '[section]'\n");
    errs = jsond_errors_new();
    ck_assert_str_eq(
        render(jsond_config_parse("mem", "include = etc/sub/y*.conf\n" LISTEN_L, 37, errs), errs,
               &cfg),
        "");
    ck_assert_str_eq(cfg->routes[0].file, "etc/sub/y.conf");
    jsond_config_unref(cfg);

    /* A directory with glob characters in its name is only a name. */
    put("a[1]/jsond.conf", "include = *.conf\n"
                           "[listen l]\non_connect = z\n");
    put("a[1]/z.conf", "[route z]\nhandler = builtin:hello\n");
    put("a1/z.conf", "decoy\n");
    ck_assert_str_eq(load_errors(tpath("a[1]/jsond.conf"), NULL),
                     "a[1]/jsond.conf:1: include cycle: a[1]/jsond.conf -> a[1]/jsond.conf\n");
    put("a[1]/jsond.conf", "include = z*.conf\n"
                           "[listen l]\non_connect = z\n");
    ck_assert_str_eq(load_errors(tpath("a[1]/jsond.conf"), NULL), "");
    ck_assert_int_eq(chdir(cwd), 0);
}
END_TEST

START_TEST(test_include_nothing)
{
    /* A glob matching nothing is fine: a missing or empty conf.d, say. */
    put("jsond.conf", "include = conf.d/*.conf\n"
                      "include = none-*.conf\n"
                      "include = /nonexistent-dir/*/x?.conf\n" ROUTE_HELLO LISTEN_L);
    jsond_config *cfg;
    ck_assert_str_eq(load_errors(tpath("jsond.conf"), &cfg), "");
    ck_assert_uint_eq(cfg->nroutes, 1);
    ck_assert_uint_eq(cfg->nfiles, 1);
    jsond_config_unref(cfg);
    put("conf.d/README", "not matched\n");
    ck_assert_str_eq(load_errors(tpath("jsond.conf"), NULL), "");
}
END_TEST

START_TEST(test_include_missing)
{
    /* A plain path (no * ? [) must exist: the error is at the include line
     * and names the path. So must what a glob matched be readable. */
    put("jsond.conf", ROUTE_HELLO "include = missing.conf\n"
                                  "include = /nonexistent/x.conf\n"
                                  "include = sub\n"
                                  "include = sub/*.conf\n");
    put("sub/dir.conf/x", "");
    put("sub/ok.conf", "[listen ok]\non_connect = hello\n");
    jsond_config *cfg = NULL;
    ck_assert_str_eq(
        load_errors(tpath("jsond.conf"), &cfg),
        "jsond.conf:3: cannot open included file 'missing.conf': No such file or directory\n"
        "jsond.conf:4: cannot open included file '/nonexistent/x.conf': No such file or "
        "directory\n"
        "jsond.conf:5: cannot read included file 'sub': Is a directory\n"
        "jsond.conf:6: cannot read included file 'sub/dir.conf': Is a directory\n");
    ck_assert_ptr_null(cfg);
}
END_TEST

/* Makes TDIR/REL with `make` (mkfifo, a symlink to /dev/zero, a sparse
 * file of `size` bytes): things put() cannot. */
static const char *special(const char *rel, const char *kind, off_t size)
{
    const char *path = tpath(rel);
    if (strcmp(kind, "fifo") == 0) {
        ck_assert_int_eq(mkfifo(path, 0600), 0);
    } else if (strcmp(kind, "zero") == 0) {
        ck_assert_int_eq(symlink("/dev/zero", path), 0);
    } else {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, size), 0);
        close(fd);
    }
    remember(path);
    return path;
}

START_TEST(test_only_regular_files)
{
    /* A FIFO with no writer would block open() and read() forever, and a
     * device like /dev/zero would fill memory: only regular files are read,
     * and anything else is an error at the line that named it. The alarm
     * bounds the test should the FIFO still be opened for a blocking read. */
    alarm(20);
    put("conf.d/00.conf", ROUTE_HELLO);
    special("conf.d/10-fifo.conf", "fifo", 0);
    special("conf.d/20-zero.conf", "zero", 0);
    put("conf.d/30-dir.conf/x", "");
    put("jsond.conf", "[listen a]\non_connect = hello\n"
                      "include = conf.d/*.conf\n"
                      "include = conf.d/10-fifo.conf\n");
    ck_assert_str_eq(load_errors(tpath("jsond.conf"), NULL),
                     "jsond.conf:3: cannot read included file 'conf.d/10-fifo.conf': not a "
                     "regular file (a FIFO)\n"
                     "jsond.conf:3: cannot read included file 'conf.d/20-zero.conf': not a "
                     "regular file (a character device)\n"
                     "jsond.conf:3: cannot read included file 'conf.d/30-dir.conf': Is a "
                     "directory\n"
                     "jsond.conf:4: cannot read included file 'conf.d/10-fifo.conf': not a "
                     "regular file (a FIFO)\n");
    /* The top file: its name and line 0, as "cannot open" is. */
    ck_assert_str_eq(load_errors(tpath("conf.d/10-fifo.conf"), NULL),
                     "conf.d/10-fifo.conf:0: cannot read: not a regular file (a FIFO)\n");
    ck_assert_str_eq(load_errors("/dev/zero", NULL),
                     "/dev/zero:0: cannot read: not a regular file (a character device)\n");
    ck_assert_str_eq(load_errors(tpath("conf.d/20-zero.conf"), NULL),
                     "conf.d/20-zero.conf:0: cannot read: not a regular file (a character "
                     "device)\n");
    alarm(0);
}
END_TEST

START_TEST(test_size_limits)
{
    /* One file: at most 16M. Sparse files: the size is checked before a
     * byte is read. */
    special("big.conf", "size", 16 * 1024 * 1024 + 1);
    put("jsond.conf", "[listen a]\non_connect = hello\n" ROUTE_HELLO "include = big.conf\n");
    ck_assert_str_eq(load_errors(tpath("jsond.conf"), NULL),
                     "jsond.conf:5: cannot read included file 'big.conf': larger than 16M, the "
                     "limit for one config file\n");
    ck_assert_str_eq(load_errors(tpath("big.conf"), NULL),
                     "big.conf:0: cannot read: larger than 16M, the limit for one config file\n");
    /* All the files of one config: at most 64M. Four files of 15M (each
     * one NUL error: they are read) and the fifth is one too many. */
    char name[32];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "many/%d.conf", i);
        if (i == 0)
            put(name, "");
        special(name, "size", 15 * 1024 * 1024);
    }
    put("all.conf", "[listen a]\non_connect = hello\n" ROUTE_HELLO "include = many/*.conf\n");
    const char *got = load_errors(tpath("all.conf"), NULL);
    ck_assert_msg(strstr(got, "all.conf:5: cannot read included file 'many/4.conf': the config's "
                              "files add up to more than 64M, the limit\n"),
                  "%s", got);
    ck_assert_msg(!strstr(got, "'many/3.conf'"), "%s", got);
}
END_TEST

START_TEST(test_must_serve_files)
{
    /* In another file, the first is named with its file. */
    put("jsond.conf", "[listen a]\naddress = 127.0.0.1:1\nrequests = yes\n"
                      "include = conf.d/*.conf\n");
    put("conf.d/x.conf", "[listen b]\nrequests = yes\naddress = 127.0.0.1:1\n");
    ck_assert_str_eq(load_errors(tpath("jsond.conf"), NULL),
                     "conf.d/x.conf:3: listener b: address 127.0.0.1:1 is also listener a's "
                     "(jsond.conf:2)\n");
    put("empty.conf", "");
    ck_assert_str_eq(load_errors(tpath("empty.conf"), NULL),
                     "empty.conf:0: no [listen] section: this config would serve nothing\n");
    ck_assert_str_eq(load_errors("/dev/null", NULL),
                     "/dev/null:0: cannot read: not a regular file (a character device)\n");
}
END_TEST

START_TEST(test_include_errors)
{
    /* Every problem names its own file and line, and all come in reading
     * order: as if each included file were pasted at its include line. */
    put("main.conf", "bogus1\n"                  /* 1 */
                     "[route r]\n"               /* 2 */
                     "handler = builtin:hello\n" /* 3 */
                     "include = conf.d/*.conf\n" /* 4 */
                     "[listen l]\n"              /* 5 */
                     "on_connect = nowhere\n"    /* 6 */
                     "bogus2\n");                /* 7 */
    put("conf.d/1.conf", "[route s]\n"
                         "handler = builtin:nope\n"
                         "[listen m]\n"
                         "on_connect = missing\n");
    put("conf.d/2.conf", "[route t]\n"
                         "handler = builtin:hello\n"
                         "args = {\n"
                         "  \"a\": ,\n"
                         "}\n"
                         "[server]\n"
                         "max_connections = 0\n"
                         "include = 3.inc\n");
    put("conf.d/3.inc", "[route u]\n");
    ck_assert_str_eq(load_errors(tpath("main.conf"), NULL),
                     "main.conf:1: syntax error: expected 'key = value' or '[section]'\n"
                     "conf.d/1.conf:2: unknown builtin handler 'nope'\n"
                     "conf.d/1.conf:4: route 'missing' is not defined\n"
                     "conf.d/2.conf:4: bad JSON in args: unexpected token near ','\n"
                     "conf.d/2.conf:7: max_connections = 0 is out of range (1..1000000)\n"
                     "conf.d/3.inc:1: [route u] has no handler\n"
                     "main.conf:6: route 'nowhere' is not defined\n"
                     "main.conf:7: syntax error: expected 'key = value' or '[section]'\n");
}
END_TEST

START_TEST(test_include_cycles)
{
    put("self.conf", ROUTE_HELLO "include = self.conf\n" LISTEN_L);
    ck_assert_str_eq(load_errors(tpath("self.conf"), NULL),
                     "self.conf:3: include cycle: self.conf -> self.conf\n");
    put("a.conf", "include = b.conf\n" LISTEN_L);
    put("b.conf", "\ninclude = c.conf\n");
    put("c.conf", ROUTE_HELLO "include = a.conf\n");
    ck_assert_str_eq(load_errors(tpath("a.conf"), NULL),
                     "c.conf:3: include cycle: a.conf -> b.conf -> c.conf -> a.conf\n");
    /* Files are compared, not names. */
    put("sub/z", "");
    put("d.conf", "include = sub/../d.conf\n" LISTEN_L);
    ck_assert_str_eq(load_errors(tpath("d.conf"), NULL),
                     "d.conf:1: include cycle: d.conf -> sub/../d.conf\n");
    /* The classic: a glob next to the file matches the file itself. */
    put("all/x.conf", "include = *.conf\n" LISTEN_L);
    put("all/y.conf", ROUTE_HELLO);
    ck_assert_str_eq(load_errors(tpath("all/x.conf"), NULL),
                     "all/x.conf:1: include cycle: all/x.conf -> all/x.conf\n");
    /* The same file twice is no cycle, but its sections are defined twice. */
    put("twice.conf", "include = r.conf\ninclude = r.conf\n" LISTEN_L);
    put("r.conf", ROUTE_HELLO);
    ck_assert_str_eq(load_errors(tpath("twice.conf"), NULL),
                     "r.conf:1: duplicate section [route hello] (first at r.conf:1)\n");

    /* No cycle, but too deep: d0 includes d1 ... includes d17. */
    char name[32], text[64];
    for (int i = 0; i < 18; i++) {
        snprintf(name, sizeof name, "deep/d%d.conf", i);
        snprintf(text, sizeof text, "[listen l%d]\ninclude = d%d.conf\n", i, i + 1);
        put(name, i < 17 ? text : ROUTE_HELLO);
    }
    ck_assert_str_eq(load_errors(tpath("deep/d0.conf"), NULL),
                     "deep/d16.conf:2: includes nested too deeply (more than 16 levels)\n");
    jsond_config *cfg;
    ck_assert_str_eq(load_errors(tpath("deep/d1.conf"), &cfg), "");
    ck_assert_uint_eq(cfg->nfiles, 17);
    ck_assert_uint_eq(cfg->nlistens, 16);
    jsond_config_unref(cfg);
}
END_TEST

START_TEST(test_include_sections)
{
    /* Each file is whole sections: an include line ends the section before
     * it, an included file starts outside any section, and after the
     * include the including file is outside any section until its next
     * header. */
    put("x.conf", "[route x]\nhandler = builtin:hello\n");
    put("keys.conf", "handler = builtin:hello\n[route k]\nhandler = builtin:hello\n");
    put("t1.conf", "[route r]\nhandler = builtin:hello\ninclude = x.conf\nargs = {}\n" LISTEN_L);
    ck_assert_str_eq(
        load_errors(tpath("t1.conf"), NULL),
        "t1.conf:4: key 'args' outside any section (the include at line 3 ended [route r])\n");
    put("t2.conf", "include = x.conf\nargs = {}\n" LISTEN_L);
    ck_assert_str_eq(load_errors(tpath("t2.conf"), NULL),
                     "t2.conf:2: key 'args' outside any section (after the include at line 1)\n");
    put("t3.conf", "[route r]\ninclude = keys.conf\n" LISTEN_L);
    ck_assert_str_eq(load_errors(tpath("t3.conf"), NULL),
                     "t3.conf:1: [route r] has no handler\n"
                     "keys.conf:1: key 'handler' outside any section\n");

    /* After a section, or after a bad one; a header after it as usual. */
    jsond_config *cfg;
    put("t4.conf", "[server]\nmax_connections = 7\ninclude = x.conf\n"
                   "[listen l]\non_connect = x\n");
    ck_assert_str_eq(load_errors(tpath("t4.conf"), &cfg), "");
    ck_assert_uint_eq(cfg->server.max_connections, 7);
    ck_assert_str_eq(cfg->listens[0].on_connect, "x");
    ck_assert_str_eq(cfg->routes[0].name, "x");
    jsond_config_unref(cfg);
    put("t5.conf", "[bogus]\nkey = 1\ninclude = x.conf\n[listen l]\non_connect = x\n");
    ck_assert_str_eq(load_errors(tpath("t5.conf"), NULL), "t5.conf:1: unknown section [bogus]\n");

    /* The value is the rest of the line, never JSON (a glob may start with
     * '['), comments stripped. */
    put("t6.conf", "include = [wx].conf ; only x.conf\n[listen l]\non_connect = x\n");
    ck_assert_str_eq(load_errors(tpath("t6.conf"), NULL), "");
    put("t7.conf", "include = [x.conf\n[listen l]\non_connect = x\n");
    ck_assert_str_eq(load_errors(tpath("t7.conf"), NULL), "t7.conf:3: route 'x' is not defined\n");
}
END_TEST

START_TEST(test_include_pools)
{
    /* A pool declared in any file serves a route of any file; its errors
     * name their own file and line. */
    put("jsond.conf", "[route r]\nhandler = builtin:sleep\npool = legacy\n"
                      "include = conf.d/*.conf\n"
                      "[listen l]\non_connect = hello\n");
    put("conf.d/a.conf", ROUTE_HELLO "pool = default\n");
    put("conf.d/b.conf", "[pool legacy]\nthreads = 2\n");
    jsond_config *cfg;
    ck_assert_str_eq(load_errors(tpath("jsond.conf"), &cfg), "");
    ck_assert_uint_eq(cfg->npools, 2);
    ck_assert_ptr_null(cfg->pools[0].file);
    ck_assert_str_eq(cfg->pools[1].name, "legacy");
    ck_assert_str_eq(cfg->pools[1].file, tpath("conf.d/b.conf"));
    ck_assert_int_eq(cfg->pools[1].line, 1);
    ck_assert_uint_eq(cfg->pools[1].threads, 2);
    jsond_config_unref(cfg);

    put("conf.d/c.conf", "[route q]\nhandler = builtin:hello\npool = nope\n"
                         "[pool legacy]\n"
                         "[pool other]\nqueue_limit = 1000001\n");
    ck_assert_str_eq(load_errors(tpath("jsond.conf"), NULL),
                     "conf.d/c.conf:3: pool 'nope' is not defined\n"
                     "conf.d/c.conf:4: duplicate section [pool legacy] (first at "
                     "conf.d/b.conf:1)\n"
                     "conf.d/c.conf:6: queue_limit = 1000001 is out of range (0..1000000)\n");
}
END_TEST

START_TEST(test_include_installed)
{
    /* The installed jsond.conf ends by including conf.d's .conf files:
     * with conf.d/ empty it is the built-in default; a file dropped there
     * adds its sections. */
    FILE *f = fopen(srcdir_path("conf/jsond.conf"), "r");
    ck_assert_ptr_nonnull(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    ck_assert_ptr_nonnull(strstr(text, "\ninclude = conf.d/*.conf\n"));
    put("jsond.conf", text);
    put("conf.d/README", "");
    jsond_config *cfg, *def = jsond_config_default();
    ck_assert_str_eq(load_errors(tpath("jsond.conf"), &cfg), "");
    ck_assert(jsond_config_equal(cfg, def));
    jsond_config_unref(cfg);

    put("conf.d/50-api.conf", "[listen api]\naddress = 127.0.0.1:0\nrequests = yes\n"
                              "routes = hello echo\n"
                              "[route echo]\nhandler = builtin:echo\n");
    ck_assert_str_eq(load_errors(tpath("jsond.conf"), &cfg), "");
    ck_assert(!jsond_config_equal(cfg, def));
    ck_assert_uint_eq(cfg->nlistens, 3);
    ck_assert_uint_eq(cfg->nroutes, 2);
    ck_assert_str_eq(cfg->listens[2].file, tpath("conf.d/50-api.conf"));
    jsond_config_unref(cfg);

    put("conf.d/60-bad.conf", "[route hello]\nhandler = builtin:echo\n");
    ck_assert_ptr_nonnull(strstr(load_errors(tpath("jsond.conf"), NULL),
                                 "conf.d/60-bad.conf:1: duplicate section [route hello] (first "
                                 "at jsond.conf:"));
    jsond_config_unref(def);
}
END_TEST

/* ---- logging ------------------------------------------------------------ */

static char logged[8][1100];
static int nlogged;

static void capture_sink(jsond_log_level level, const char *msg, void *arg)
{
    (void)arg;
    ck_assert_int_eq(level, JSOND_LOG_INFO);
    if (nlogged < 8)
        snprintf(logged[nlogged], sizeof logged[0], "%s", msg);
    nlogged++;
}

START_TEST(test_log)
{
    jsond_config *cfg = jsond_config_default();
    nlogged = 0;
    jsond_log_set_sink(capture_sink, NULL);
    jsond_config_log(cfg);
    ck_assert_int_eq(nlogged, 5);
    ck_assert_str_eq(logged[0],
                     "[server] max_connections=10000 max_request_size=64K "
                     "idle_timeout=1m write_timeout=30s output_buffer=1M "
                     "shutdown_timeout=10s linger_timeout=5s max_pipeline=128 request_timeout=1m "
                     "log_level=info policy=adaptive stall_warning=100ms");
    ck_assert_str_eq(logged[1], "[listen v4] address=0.0.0.0:25000 on_connect=hello requests=no "
                                "routes=* protocol=auto");
    ck_assert_str_eq(logged[2], "[listen v6] address=[::]:25000 on_connect=hello requests=no "
                                "routes=* protocol=auto");
    /* The implicit default pool is logged like a declared one. */
    ck_assert_str_eq(logged[3], "[pool default] threads=4 queue_limit=256");
    ck_assert_str_eq(logged[4], "[route hello] handler=builtin:hello max_output=16M");
    jsond_config_unref(cfg);

    /* Odd values print in their best unit; huge JSON is cut, not dumped.
     * Pools come after the listeners, the implicit default first. */
    char *text = malloc(20000 + 256);
    int n = sprintf(text, "[server]\nwrite_timeout = 1500ms\noutput_buffer = 5000\n"
                          "[listen x]\nrequests = yes\nroutes = r big\nprotocol = jsonrpc\n"
                          "[route big]\nhandler = builtin:big\npool = legacy\n"
                          "[pool legacy]\nthreads = 2\nqueue_limit = 0\n"
                          "[route r]\nhandler = builtin:big\nargs = {\"s\": \"");
    memset(text + n, 'y', 20000);
    strcpy(text + n + 20000, "\"}\n");
    cfg = parse_ok(text);
    free(text);
    nlogged = 0;
    jsond_config_log(cfg);
    jsond_log_set_sink(NULL, NULL);
    ck_assert_int_eq(nlogged, 6);
    ck_assert_ptr_nonnull(strstr(logged[0], " write_timeout=1500ms output_buffer=5000 "));
    ck_assert_str_eq(logged[1], "[listen x] requests=yes routes=r,big protocol=jsonrpc");
    ck_assert_str_eq(logged[2], "[pool default] threads=4 queue_limit=256");
    ck_assert_str_eq(logged[3], "[pool legacy] threads=2 queue_limit=0");
    ck_assert_str_eq(logged[4], "[route big] handler=builtin:big pool=legacy max_output=16M");
    ck_assert_ptr_nonnull(strstr(logged[5], "[route r] handler=builtin:big args={\"s\":\"yyy"));
    ck_assert_uint_lt(strlen(logged[5]), 1024);
    ck_assert_str_eq(logged[5] + strlen(logged[5]) - 4, "y...");
    jsond_config_unref(cfg);
}
END_TEST

/* Every route is found by its name and no other, among many: the request
 * path looks routes up in a hash index built at load. */
START_TEST(test_route_lookup)
{
    size_t cap = 64 + 300 * 48, n = 0;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    n += (size_t)snprintf(text, cap, "[listen l]\naddress = 127.0.0.1:0\nrequests = yes\n");
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(text + n, cap - n, "[route r%d]\nhandler = builtin:hello\n", i);
    ck_assert_uint_lt(n, cap);
    jsond_config *cfg = parse_ok(text);
    free(text);
    for (int i = 0; i < 300; i++) {
        char name[16];
        snprintf(name, sizeof name, "r%d", i);
        const cfg_route *r = jsond_config_route(cfg, name);
        ck_assert_ptr_nonnull(r);
        ck_assert_str_eq(r->name, name);
    }
    static const char *const absent[] = {"r300", "r-1", "R1", "r01", "", "hello", "r1 "};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
        ck_assert_ptr_null(jsond_config_route(cfg, absent[i]));
    jsond_config_unref(cfg);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("values");
    tcase_add_test(tc, test_every_key);
    tcase_add_test(tc, test_route_lookup);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_empty_sections);
    tcase_add_loop_test(tc, test_sizes, 0, sizeof sizes / sizeof sizes[0]);
    tcase_add_loop_test(tc, test_durations, 0, sizeof durations / sizeof durations[0]);
    tcase_add_test(tc, test_uint_and_bool_and_level);
    tcase_add_test(tc, test_addresses);
    tcase_add_loop_test(tc, test_route_lists, 0, sizeof route_lists / sizeof route_lists[0]);
    tcase_add_test(tc, test_route_list_all);
    tcase_add_loop_test(tc, test_out_of_range, 0, sizeof out_of_range / sizeof out_of_range[0]);
    tcase_add_test(tc, test_range_maxima);
    tcase_add_test(tc, test_range_minima);
    tcase_add_loop_test(tc, test_bad_values, 0, sizeof bad_values / sizeof bad_values[0]);
    tcase_add_test(tc, test_json_values);
    tcase_add_test(tc, test_policy);
    suite_add_tcase(s, tc);

    tc = tcase_create("pools");
    tcase_add_test(tc, test_pool_implicit_default);
    tcase_add_test(tc, test_pool_declared_default);
    tcase_add_loop_test(tc, test_pool_bad_values, 0, sizeof pool_bad / sizeof pool_bad[0]);
    tcase_add_test(tc, test_pool_ranges);
    tcase_add_test(tc, test_route_pool);
    tcase_add_test(tc, test_pool_undefined);
    tcase_add_test(tc, test_route_equal_pool);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_loop_test(tc, test_structure, 0, sizeof structure / sizeof structure[0]);
    tcase_add_test(tc, test_all_errors_reported);
    tcase_add_test(tc, test_too_many_errors);
    tcase_add_test(tc, test_nul_bytes);
    tcase_add_test(tc, test_errs_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("grammar");
    tcase_add_test(tc, test_comments);
    tcase_add_test(tc, test_json_multiline);
    tcase_add_test(tc, test_json_errors);
    tcase_add_test(tc, test_crlf);
    tcase_add_test(tc, test_long_line);
    suite_add_tcase(s, tc);

    tc = tcase_create("snapshot");
    tcase_add_test(tc, test_default_equals_conf);
    tcase_add_test(tc, test_equal);
    tcase_add_test(tc, test_equal_route_lists);
    tcase_add_test(tc, test_refcount);
    tcase_add_test(tc, test_load_missing);
    tcase_add_test(tc, test_load_file);
    tcase_add_test(tc, test_unix_path_in_the_way);
    tcase_add_test(tc, test_must_serve);
    tcase_add_test(tc, test_on_connect_none);
    tcase_add_test(tc, test_log);
    suite_add_tcase(s, tc);

    tc = tcase_create("include");
    tcase_add_checked_fixture(tc, tdir_setup, tdir_teardown);
    tcase_add_test(tc, test_include_sorted);
    tcase_add_test(tc, test_include_relative);
    tcase_add_test(tc, test_include_nothing);
    tcase_add_test(tc, test_include_missing);
    tcase_add_test(tc, test_include_errors);
    tcase_add_test(tc, test_include_cycles);
    tcase_add_test(tc, test_include_sections);
    tcase_add_test(tc, test_include_installed);
    tcase_add_test(tc, test_include_pools);
    tcase_add_test(tc, test_only_regular_files);
    tcase_add_test(tc, test_size_limits);
    tcase_add_test(tc, test_must_serve_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
