/* check_proto.c: request lines and reply envelopes (lib/proto.c).
 *
 * proto is pure functions over bytes and json_t, so every form, every
 * error path and every envelope is checked here without a socket: the
 * replies are compared as the exact compact JSON that goes on the wire.
 * Reserved `rpc.` names are the router's business, not proto's: they parse
 * like any other name.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "proto.h"

#define AUTO 0
#define SEEN JSOND_PROTO_RPC_SEEN
#define ONLY JSOND_PROTO_RPC_ONLY

/* ---- helpers ------------------------------------------------------------ */

static jsond_request req;

/* Parses LINE (LEN bytes) under MODE into `req`; parsing must not fail. */
static void parse_len(const char *line, size_t len, int mode)
{
    jsond_request_fini(&req);
    ck_assert_int_eq(jsond_proto_parse(line, len, mode, &req), 0);
    ck_assert_uint_ge(req.ncalls, 1);
    ck_assert_ptr_nonnull(req.calls);
}

static void parse(const char *line, int mode)
{
    parse_len(line, strlen(line), mode);
}

static void teardown(void)
{
    jsond_request_fini(&req);
}

/* Compact text of `v` (NULL: "(none)"), in a rotating static buffer. */
static const char *text(const json_t *v)
{
    static char bufs[4][4096];
    static int next;
    char *buf = bufs[next++ % 4];
    if (!v)
        return "(none)";
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    ck_assert_ptr_nonnull(s);
    snprintf(buf, sizeof bufs[0], "%s", s);
    free(s);
    return buf;
}

/* The compact text of the id of `c`, as text() shows a value. */
static const char *id_text(const jsond_proto_call *c)
{
    json_t *id = jsond_proto_id(c);
    const char *t = text(id);
    json_decref(id);
    return t;
}

/* Takes `doc` and returns its compact text. */
static const char *take_text(json_t *doc)
{
    ck_assert_ptr_nonnull(doc);
    const char *t = text(doc);
    json_decref(doc);
    return t;
}

/* Takes `result` and returns the text of the reply to `call` made of it. */
static const char *result_text(const jsond_proto_call *call, json_t *result)
{
    static char buf[4096];
    jsond_dumper d;
    jsond_dumper_init(&d, NULL);
    ck_assert_int_eq(jsond_proto_dump_result(&d, call, result), 0);
    json_decref(result);
    ck_assert_ptr_null(d.spill);
    ck_assert_uint_lt(d.n, sizeof buf);
    memcpy(buf, d.buf, d.n);
    buf[d.n] = '\0';
    return buf;
}

/* The single call of `req`, a call that parsed: route, args, id. */
static const jsond_proto_call *ok_call(const char *route, const char *args, const char *id)
{
    ck_assert_uint_eq(req.ncalls, 1);
    ck_assert_int_eq(req.batch, 0);
    const jsond_proto_call *c = &req.calls[0];
    ck_assert_msg(!c->failed, "failed: %s", c->message ? c->message : "");
    ck_assert_str_eq(c->route, route);
    ck_assert_str_eq(text(c->args), args);
    ck_assert_str_eq(id_text(c), id);
    return c;
}

/* A message never repeats client bytes: it is ASCII text of ours. */
static void assert_clean_message(const char *message)
{
    ck_assert_ptr_nonnull(message);
    ck_assert_uint_gt(strlen(message), 0);
    for (const char *p = message; *p; p++)
        ck_assert_msg((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
                      "message has byte 0x%02x", (unsigned char)*p);
}

/* Call I failed with CODE, RPC_CODE (0: a plain error) and id ID. */
static const jsond_proto_call *failed_call_at(size_t i, jsond_code code, int rpc_code,
                                              const char *id)
{
    ck_assert_uint_lt(i, req.ncalls);
    const jsond_proto_call *c = &req.calls[i];
    ck_assert_int_eq(c->failed, 1);
    ck_assert_ptr_null(c->route);
    ck_assert_ptr_null(c->args);
    ck_assert_int_eq(c->code, code);
    ck_assert_int_eq(c->rpc, rpc_code != 0);
    ck_assert_int_eq(c->silent, 0);
    if (rpc_code)
        ck_assert_int_eq(c->rpc_code, rpc_code);
    ck_assert_str_eq(id_text(c), id);
    assert_clean_message(c->message);
    return c;
}

/* The single call of `req` failed as a plain bad_request with no id. */
static void plain_bad_request(void)
{
    ck_assert_uint_eq(req.ncalls, 1);
    ck_assert_int_eq(req.batch, 0);
    ck_assert_int_eq(req.rpc, 0);
    failed_call_at(0, JSOND_BAD_REQUEST, 0, "(none)");
}

/* The error reply the connection sends for call I of `req`. */
static const char *error_reply(size_t i)
{
    const jsond_proto_call *c = &req.calls[i];
    return take_text(jsond_proto_error(c, c->code, 0, c->message));
}

/* ---- the four forms ----------------------------------------------------- */

START_TEST(test_shorthand)
{
    parse("hello", AUTO);
    const jsond_proto_call *c = ok_call("hello", "(none)", "(none)");
    ck_assert_int_eq(c->rpc, 0);
    ck_assert_int_eq(c->silent, 0);
    ck_assert_int_eq(req.rpc, 0);

    parse("big {\"size\": 10}", AUTO);
    ok_call("big", "{\"size\":10}", "(none)");
    parse("big \t  {\"size\":10, \"max_size\": 20}", AUTO);
    ok_call("big", "{\"size\":10,\"max_size\":20}", "(none)");
    parse("big\t{}", AUTO);
    ok_call("big", "{}", "(none)");
    /* Every character a config name may have, and the longest name. */
    parse("Az09_.-", AUTO);
    ok_call("Az09_.-", "(none)", "(none)");
    char name[66];
    memset(name, 'n', 64);
    name[64] = '\0';
    parse(name, AUTO);
    ok_call(name, "(none)", "(none)");
    /* Not proto's job to refuse reserved or unknown names: the router's. */
    parse("rpc.discover", AUTO);
    ok_call("rpc.discover", "(none)", "(none)");
    /* Lines that do not start with { or [ are names, even JSON-ish ones. */
    parse("null", AUTO);
    ok_call("null", "(none)", "(none)");
    parse("5", AUTO);
    ok_call("5", "(none)", "(none)");
}
END_TEST

START_TEST(test_route_object)
{
    parse("{\"route\": \"big\", \"args\": {\"size\": 7}, \"id\": 7}", AUTO);
    const jsond_proto_call *c = ok_call("big", "{\"size\":7}", "7");
    ck_assert_int_eq(c->rpc, 0);
    ck_assert_int_eq(c->silent, 0);
    ck_assert_int_eq(req.rpc, 0);
    parse("{\"route\": \"hello\"}", AUTO);
    ok_call("hello", "(none)", "(none)");
    /* Members the protocol does not know are ignored. */
    parse("{\"route\": \"hello\", \"method\": \"x\", \"params\": [1]}", AUTO);
    ok_call("hello", "(none)", "(none)");
    /* Still plain on a connection that has used JSON-RPC. */
    parse("{\"route\": \"hello\", \"id\": 1}", SEEN);
    c = ok_call("hello", "(none)", "1");
    ck_assert_int_eq(c->rpc, 0);
    ck_assert_int_eq(req.rpc, 0);
}
END_TEST

/* A plain request's id is echoed whatever JSON it is. */
static const char *const plain_ids[] = {
    "7", "-1", "1.5", "\"s\"", "\"\"", "null", "true", "false", "{\"a\":[1]}", "[1,\"x\"]", "{}",
};

START_TEST(test_route_object_ids)
{
    char line[256];
    snprintf(line, sizeof line, "{\"id\": %s, \"route\": \"hello\"}", plain_ids[_i]);
    parse(line, AUTO);
    ok_call("hello", "(none)", plain_ids[_i]);
    /* ... also when the request is bad. */
    snprintf(line, sizeof line, "{\"id\": %s, \"args\": {}}", plain_ids[_i]);
    parse(line, AUTO);
    failed_call_at(0, JSOND_BAD_REQUEST, 0, plain_ids[_i]);
    char want[512];
    snprintf(want, sizeof want,
             "{\"error\":{\"code\":\"bad_request\",\"message\":\"%s\"},\"id\":%s}",
             req.calls[0].message, plain_ids[_i]);
    ck_assert_str_eq(error_reply(0), want);
}
END_TEST

START_TEST(test_jsonrpc)
{
    parse("{\"jsonrpc\": \"2.0\", \"method\": \"big\", \"params\": {\"size\": 3}, \"id\": 7}",
          AUTO);
    const jsond_proto_call *c = ok_call("big", "{\"size\":3}", "7");
    ck_assert_int_eq(c->rpc, 1);
    ck_assert_int_eq(c->silent, 0);
    ck_assert_int_eq(req.rpc, 1);
    /* params by position: the array itself. */
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"params\":[42,23],\"id\":1}", AUTO);
    ok_call("subtract", "[42,23]", "1");
    /* no params */
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":\"abc\"}", AUTO);
    ok_call("hello", "(none)", "\"abc\"");
    /* id null is a request (answered with id null), not a notification */
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":null}", AUTO);
    c = ok_call("hello", "(none)", "null");
    ck_assert_int_eq(c->silent, 0);
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":-2.5}", AUTO);
    ok_call("hello", "(none)", "-2.5");
    /* the same on every kind of connection */
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":0}", SEEN);
    ok_call("hello", "(none)", "0");
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":0}", ONLY);
    ok_call("hello", "(none)", "0");
    ck_assert_int_eq(req.rpc, 1);
    /* reserved names pass through proto: the router refuses them */
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"rpc.discover\",\"id\":0}", AUTO);
    ok_call("rpc.discover", "(none)", "0");
}
END_TEST

START_TEST(test_notification)
{
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"update\",\"params\":[1,2,3,4,5]}", AUTO);
    const jsond_proto_call *c = ok_call("update", "[1,2,3,4,5]", "(none)");
    ck_assert_int_eq(c->rpc, 1);
    ck_assert_int_eq(c->silent, 1);
    ck_assert_int_eq(req.rpc, 1);
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"foobar\"}", ONLY);
    c = ok_call("foobar", "(none)", "(none)");
    ck_assert_int_eq(c->silent, 1);
}
END_TEST

START_TEST(test_whitespace)
{
    parse("  \t hello \t ", AUTO);
    ok_call("hello", "(none)", "(none)");
    parse("\t big   {\"size\": 1}  \t", AUTO);
    ok_call("big", "{\"size\":1}", "(none)");
    parse(" \t{\"route\":\"hello\",\"id\":1}\t ", AUTO);
    ok_call("hello", "(none)", "1");
    parse("  [ ]  ", SEEN);
    failed_call_at(0, JSOND_BAD_REQUEST, -32600, "null");
    /* JSON's own whitespace inside */
    parse("{ \"route\" :\t\"hello\" , \"args\" : { } }", AUTO);
    ok_call("hello", "{}", "(none)");
}
END_TEST

/* ---- error paths -------------------------------------------------------- */

/* Shorthand lines that are not a name (plus args): plain bad_request. */
static const struct {
    const char *line;
    size_t len; /* 0: strlen */
} bad_shorthand[] = {
    {"", 0},
    {"hel/lo", 0},
    {"\"hello\"", 0},
    {"h\xc3\xa9llo", 0},            /* UTF-8, but not a config name */
    {"hel\xfflo", 0},               /* invalid UTF-8 */
    {"hel\0lo", 6},                 /* a NUL byte */
    {"hello\0", 6},                 /* a trailing NUL byte */
    {"\x01\x02\x7f", 0},            /* control bytes */
    {"hello world", 0},             /* args that are not JSON */
    {"big {", 0},                   /* args that are not JSON */
    {"big [1]", 0},                 /* args that are not an object */
    {"big 5", 0},                   /* args that are not an object */
    {"big null", 0},                /* args that are not an object */
    {"big \"x\"", 0},               /* args that are not an object */
    {"big {} {}", 0},               /* two JSON texts */
    {"big {\"a\":\"\xff\"}", 0},    /* invalid UTF-8 in a JSON string */
    {"big {\"a\":\"\\u0000\"}", 0}, /* NUL inside a JSON string */
    {"hello\r", 0},                 /* a stray \r is not a blank */
};

START_TEST(test_bad_shorthand)
{
    size_t len = bad_shorthand[_i].len ? bad_shorthand[_i].len : strlen(bad_shorthand[_i].line);
    parse_len(bad_shorthand[_i].line, len, AUTO);
    plain_bad_request();
    ck_assert_str_eq(text(req.calls[0].args), "(none)");
    /* The reply is valid JSON and carries no id. */
    const char *reply = error_reply(0);
    json_t *doc = json_loads(reply, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "error"), "code")),
                     "bad_request");
    ck_assert_ptr_null(json_object_get(doc, "id"));
    json_decref(doc);
}
END_TEST

START_TEST(test_valid_name)
{
    char name[66];
    memset(name, 'n', 65);
    ck_assert_int_eq(jsond_config_valid_name("hello", 5), 1);
    ck_assert_int_eq(jsond_config_valid_name("Az09_.-", 7), 1);
    ck_assert_int_eq(jsond_config_valid_name(name, 64), 1);
    ck_assert_int_eq(jsond_config_valid_name(name, 65), 0);
    ck_assert_int_eq(jsond_config_valid_name("", 0), 0);
    ck_assert_int_eq(jsond_config_valid_name("hello world", 11), 0);
    ck_assert_int_eq(jsond_config_valid_name("hello world", 5), 1); /* only `len` bytes count */
    ck_assert_int_eq(jsond_config_valid_name("h\xc3\xa9", 3), 0);
    ck_assert_int_eq(jsond_config_valid_name("a'b", 3), 0);
    ck_assert_int_eq(jsond_config_valid_name("a\0b", 3), 0);
}
END_TEST

START_TEST(test_name_too_long)
{
    char name[80];
    memset(name, 'n', 65);
    name[65] = '\0';
    parse(name, AUTO);
    plain_bad_request();
}
END_TEST

/* On a connection that has used JSON-RPC, or a jsonrpc listener, a line
 * that is neither JSON nor a request is a parse error (-32700, id null). */
START_TEST(test_bad_shorthand_rpc)
{
    size_t len = bad_shorthand[_i].len ? bad_shorthand[_i].len : strlen(bad_shorthand[_i].line);
    int modes[] = {SEEN, ONLY};
    /* A JSON scalar is JSON: on a jsonrpc listener, an invalid request. */
    int scalar = strcmp(bad_shorthand[_i].line, "\"hello\"") == 0;
    for (size_t m = 0; m < 2; m++) {
        parse_len(bad_shorthand[_i].line, len, modes[m]);
        ck_assert_uint_eq(req.ncalls, 1);
        ck_assert_int_eq(req.batch, 0);
        failed_call_at(0, JSOND_BAD_REQUEST, scalar && modes[m] == ONLY ? -32600 : -32700, "null");
    }
}
END_TEST

/* A jsonrpc listener speaks JSON-RPC only: a shorthand request is not
 * JSON (-32700), a plain request object is an invalid request (-32600). */
/* The envelope's strings, read in place or unescaped: the same either way. */
START_TEST(test_envelope_strings)
{
    parse("{\"jsonrpc\":\"2\\u002e0\",\"method\":\"ec\\u0068o\",\"id\":1}", AUTO);
    ok_call("echo", "(none)", "1");
    ck_assert_int_eq(req.calls[0].rpc, 1);
    parse("{\"route\":\"h\\u0065llo\",\"id\":2}", AUTO);
    ok_call("hello", "(none)", "2");
    /* a long method name, escaped or not, goes to the heap */
    char line[512], name[200];
    memset(name, 'm', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"method\":\"%s\\u0021\",\"id\":3}", name);
    parse(line, AUTO);
    ck_assert_uint_eq(strlen(req.calls[0].route), sizeof name);
    ck_assert_int_eq(req.calls[0].route[sizeof name - 1], '!');
    /* not strings, or not the version */
    static const char *const bad[] = {
        "{\"jsonrpc\":\"2.0\",\"method\":5,\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"method\":[\"echo\"],\"id\":1}",
        "{\"jsonrpc\":2.0,\"method\":\"echo\",\"id\":1}",
        "{\"jsonrpc\":\"2.00\",\"method\":\"echo\",\"id\":1}",
        "{\"jsonrpc\":\"2.\\u0030 \",\"method\":\"echo\",\"id\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        parse(bad[i], AUTO);
        failed_call_at(0, JSOND_BAD_REQUEST, -32600, "1");
    }
    parse("{\"route\":7}", AUTO);
    failed_call_at(0, JSOND_BAD_REQUEST, 0, "(none)");
}
END_TEST

START_TEST(test_rpc_only)
{
    parse("hello", ONLY);
    failed_call_at(0, JSOND_BAD_REQUEST, -32700, "null");
    parse("big {\"size\": 1}", ONLY);
    failed_call_at(0, JSOND_BAD_REQUEST, -32700, "null");
    parse("{\"route\":\"hello\",\"id\":5}", ONLY);
    failed_call_at(0, JSOND_BAD_REQUEST, -32600, "null");
    ck_assert_int_eq(req.rpc, 1);
    /* Valid JSON that is not a request: -32600, as the JSON-RPC spec says,
     * not a parse error. */
    static const char *const scalars[] = {"123", "\"x\"", "null", "true", "-1.5e3"};
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        parse(scalars[i], ONLY);
        failed_call_at(0, JSOND_BAD_REQUEST, -32600, "null");
    }
    parse("12x", ONLY);
    failed_call_at(0, JSOND_BAD_REQUEST, -32700, "null");
    /* Elsewhere 123 is a route name like any other. */
    parse("123", SEEN);
    ck_assert_str_eq(req.calls[0].route, "123");
    /* On an auto connection that has used JSON-RPC, shorthand still works. */
    parse("hello", SEEN);
    ok_call("hello", "(none)", "(none)");
}
END_TEST

START_TEST(test_bad_route_object)
{
    const char *lines[] = {
        "{}",
        "{\"id\": 1}",
        "{\"route\": 5, \"id\": 1}",
        "{\"route\": null, \"id\": 1}",
        "{\"route\": [\"hello\"], \"id\": 1}",
        "{\"route\": \"hello\", \"args\": [1], \"id\": 1}",
        "{\"route\": \"hello\", \"args\": \"x\", \"id\": 1}",
        "{\"route\": \"hello\", \"args\": null, \"id\": 1}",
        "{\"route\": \"hello\", \"args\": 3, \"id\": 1}",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        parse(lines[i], AUTO);
        ck_assert_int_eq(req.rpc, 0);
        failed_call_at(0, JSOND_BAD_REQUEST, 0, i == 0 ? "(none)" : "1");
    }
}
END_TEST

/* JSON-RPC objects that are not valid requests: -32600, with the id when
 * it is a valid one, else null; answered even without an id. */
static const struct {
    const char *line;
    const char *id;
} bad_rpc[] = {
    {"{\"jsonrpc\":\"2.0\",\"method\":1,\"params\":\"bar\"}", "null"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":\"bar\",\"id\":3}", "3"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":5,\"id\":\"x\"}", "\"x\""},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":null,\"id\":3}", "3"},
    {"{\"jsonrpc\":\"2.0\",\"params\":{},\"id\":3}", "3"},
    {"{\"jsonrpc\":\"2.0\",\"method\":null,\"id\":3}", "3"},
    {"{\"jsonrpc\":\"1.0\",\"method\":\"m\",\"id\":3}", "3"},
    {"{\"jsonrpc\":2.0,\"method\":\"m\",\"id\":3}", "3"},
    {"{\"jsonrpc\":null,\"method\":\"m\",\"id\":3}", "3"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":{\"a\":1}}", "null"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":[1]}", "null"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":true}", "null"},
    {"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":false}", "null"},
    {"{\"jsonrpc\":\"2.0\"}", "null"},
};

START_TEST(test_bad_jsonrpc)
{
    int modes[] = {AUTO, SEEN, ONLY};
    for (size_t m = 0; m < 3; m++) {
        parse(bad_rpc[_i].line, modes[m]);
        ck_assert_uint_eq(req.ncalls, 1);
        ck_assert_int_eq(req.batch, 0);
        ck_assert_int_eq(req.rpc, 1);
        failed_call_at(0, JSOND_BAD_REQUEST, -32600, bad_rpc[_i].id);
        char want[512];
        snprintf(want, sizeof want,
                 "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"%s\",\"data\":{"
                 "\"code\":\"bad_request\"}},\"id\":%s}",
                 req.calls[0].message, bad_rpc[_i].id);
        ck_assert_str_eq(error_reply(0), want);
    }
}
END_TEST

/* Lines that start like JSON but are not: bad_request, or a parse error
 * once JSON-RPC is in use. */
static const struct {
    const char *line;
    size_t len; /* 0: strlen */
} not_json[] = {
    {"{", 0},
    {"[", 0},
    {"{\"route\": \"hello\"", 0},
    {"{\"jsonrpc\": \"2.0\", \"method\": \"foobar, \"params\": \"bar\", \"baz]", 0},
    {"[{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [1,2,4], \"id\": \"1\"},"
     "{\"jsonrpc\": \"2.0\", \"method\"]",
     0},
    {"{\"route\": \"hello\"} x", 0},
    {"{\"route\": \"hello\"}{}", 0},
    {"{\"route\": \"hel\xfflo\"}", 0},
    {"{\"route\": \"hel\0lo\"}", sizeof "{\"route\": \"hel\0lo\"}" - 1},
    {"{\"route\": \"hello\"}\0", sizeof "{\"route\": \"hello\"}\0" - 1},
    {"{\"route\": \"a\\u0000b\"}", 0},
    {"{\"route\": 'hello'}", 0},
    {"[1,]", 0},
    {"{\x80\x81}", 0},
};

START_TEST(test_not_json)
{
    size_t len = not_json[_i].len ? not_json[_i].len : strlen(not_json[_i].line);
    parse_len(not_json[_i].line, len, AUTO);
    plain_bad_request();
    parse_len(not_json[_i].line, len, SEEN);
    ck_assert_uint_eq(req.ncalls, 1);
    ck_assert_int_eq(req.batch, 0);
    failed_call_at(0, JSOND_BAD_REQUEST, -32700, "null");
    char want[512];
    snprintf(want, sizeof want,
             "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32700,\"message\":\"%s\",\"data\":{"
             "\"code\":\"bad_request\"}},\"id\":null}",
             req.calls[0].message);
    ck_assert_str_eq(error_reply(0), want);
    parse_len(not_json[_i].line, len, ONLY);
    failed_call_at(0, JSOND_BAD_REQUEST, -32700, "null");
}
END_TEST

/* Nesting far deeper than any request: refused, not a stack overflow. */
START_TEST(test_deep_nesting)
{
    const size_t depth = 100000;
    char *line = malloc(2 * depth + 16);
    ck_assert_ptr_nonnull(line);
    memset(line, '[', depth);
    memset(line + depth, ']', depth);
    parse_len(line, 2 * depth, AUTO);
    plain_bad_request();
    parse_len(line, 2 * depth, SEEN);
    failed_call_at(0, JSOND_BAD_REQUEST, -32700, "null");
    /* unbalanced */
    parse_len(line, depth, SEEN);
    failed_call_at(0, JSOND_BAD_REQUEST, -32700, "null");
    /* objects */
    size_t n = 0;
    for (size_t i = 0; i < depth / 5; i++) {
        memcpy(line + n, "{\"a\":", 5);
        n += 5;
    }
    parse_len(line, n, AUTO);
    plain_bad_request();
    /* as args of a shorthand request */
    memcpy(line, "echo ", 5);
    parse_len(line, n, AUTO);
    plain_bad_request();
    free(line);
}
END_TEST

/* ---- arrays and batches ------------------------------------------------- */

/* On a plain connection an array is a request only as a JSON-RPC batch. */
START_TEST(test_array_on_plain_connection)
{
    const char *lines[] = {"[]", "[1,2,3]", "[{\"route\":\"hello\"}]", "[\"hello\"]",
                           "[{\"method\":\"x\",\"id\":1}]"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        parse(lines[i], AUTO);
        plain_bad_request();
    }
    /* a member with a "jsonrpc" member makes it a batch */
    parse("[{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":1}, 5]", AUTO);
    ck_assert_int_eq(req.batch, 1);
    ck_assert_int_eq(req.rpc, 1);
    ck_assert_uint_eq(req.ncalls, 2);
    ck_assert_str_eq(req.calls[0].route, "hello");
    failed_call_at(1, JSOND_BAD_REQUEST, -32600, "null");
}
END_TEST

START_TEST(test_empty_batch)
{
    int modes[] = {SEEN, ONLY};
    for (size_t m = 0; m < 2; m++) {
        parse("[]", modes[m]);
        /* one error, not an array of them */
        ck_assert_uint_eq(req.ncalls, 1);
        ck_assert_int_eq(req.batch, 0);
        ck_assert_int_eq(req.rpc, 1);
        failed_call_at(0, JSOND_BAD_REQUEST, -32600, "null");
    }
}
END_TEST

START_TEST(test_invalid_batch_members)
{
    parse("[1,2,3]", SEEN);
    ck_assert_int_eq(req.batch, 1);
    ck_assert_uint_eq(req.ncalls, 3);
    for (size_t i = 0; i < 3; i++)
        failed_call_at(i, JSOND_BAD_REQUEST, -32600, "null");
    parse("[1]", ONLY);
    ck_assert_int_eq(req.batch, 1);
    ck_assert_uint_eq(req.ncalls, 1);
    failed_call_at(0, JSOND_BAD_REQUEST, -32600, "null");
    /* nested batches and plain objects are invalid members */
    parse("[[],{\"route\":\"hello\",\"id\":4},{\"foo\":\"boo\"},null,\"x\"]", SEEN);
    ck_assert_uint_eq(req.ncalls, 5);
    for (size_t i = 0; i < 5; i++)
        failed_call_at(i, JSOND_BAD_REQUEST, -32600, "null");
}
END_TEST

/* The specification's "rpc call Batch" example, in order. */
START_TEST(test_mixed_batch)
{
    parse("[{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [1,2,4], \"id\": \"1\"},"
          "{\"jsonrpc\": \"2.0\", \"method\": \"notify_hello\", \"params\": [7]},"
          "{\"jsonrpc\": \"2.0\", \"method\": \"subtract\", \"params\": [42,23], \"id\": \"2\"},"
          "{\"foo\": \"boo\"},"
          "{\"jsonrpc\": \"2.0\", \"method\": \"foo.get\", \"params\": {\"name\": \"myself\"}, "
          "\"id\": \"5\"},"
          "{\"jsonrpc\": \"2.0\", \"method\": \"get_data\", \"id\": \"9\"},"
          "{\"jsonrpc\": \"2.0\", \"method\": 1, \"id\": 10}]",
          AUTO);
    ck_assert_int_eq(req.batch, 1);
    ck_assert_int_eq(req.rpc, 1);
    ck_assert_uint_eq(req.ncalls, 7);
    const char *routes[] = {"sum", "notify_hello", "subtract", NULL, "foo.get", "get_data", NULL};
    const char *args[] = {"[1,2,4]", "[7]", "[42,23]", NULL, "{\"name\":\"myself\"}",
                          "(none)",  NULL};
    const char *ids[] = {"\"1\"", "(none)", "\"2\"", "null", "\"5\"", "\"9\"", "10"};
    for (size_t i = 0; i < 7; i++) {
        const jsond_proto_call *c = &req.calls[i];
        ck_assert_int_eq(c->rpc, 1);
        if (!routes[i]) {
            failed_call_at(i, JSOND_BAD_REQUEST, -32600, ids[i]);
            continue;
        }
        ck_assert_int_eq(c->failed, 0);
        ck_assert_str_eq(c->route, routes[i]);
        ck_assert_str_eq(text(c->args), args[i]);
        ck_assert_str_eq(id_text(c), ids[i]);
        ck_assert_int_eq(c->silent, i == 1);
    }
}
END_TEST

START_TEST(test_all_notifications_batch)
{
    parse("[{\"jsonrpc\": \"2.0\", \"method\": \"notify_sum\", \"params\": [1,2,4]},"
          "{\"jsonrpc\": \"2.0\", \"method\": \"notify_hello\", \"params\": [7]}]",
          SEEN);
    ck_assert_int_eq(req.batch, 1);
    ck_assert_uint_eq(req.ncalls, 2);
    for (size_t i = 0; i < 2; i++) {
        ck_assert_int_eq(req.calls[i].silent, 1);
        ck_assert_int_eq(req.calls[i].failed, 0);
        ck_assert_str_eq(id_text(&req.calls[i]), "(none)");
    }
}
END_TEST

/* ---- replies ------------------------------------------------------------ */

START_TEST(test_result_plain)
{
    parse("{\"route\":\"echo\",\"id\":7}", AUTO);
    /* a plain reply is the handler's JSON as it is, without the id */
    ck_assert_str_eq(result_text(&req.calls[0], json_pack("{s:i}", "n", 1)), "{\"n\":1}");
    parse("hello", AUTO);
    ck_assert_str_eq(result_text(&req.calls[0], json_array()), "[]");
}
END_TEST

START_TEST(test_result_rpc)
{
    const char *ids[] = {"7", "\"x\"", "null", "1.5"};
    for (size_t i = 0; i < 4; i++) {
        char line[256], want[256];
        snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":%s}", ids[i]);
        parse(line, AUTO);
        snprintf(want, sizeof want, "{\"jsonrpc\":\"2.0\",\"result\":{\"n\":1},\"id\":%s}", ids[i]);
        ck_assert_str_eq(result_text(&req.calls[0], json_pack("{s:i}", "n", 1)), want);
    }
    /* a result that is not an object */
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1}", AUTO);
    ck_assert_str_eq(result_text(&req.calls[0], json_integer(19)),
                     "{\"jsonrpc\":\"2.0\",\"result\":19,\"id\":1}");
    /* the same bytes as json_dumps of the envelope as a document */
    const char *docs[] = {"[]", "{}", "\"\\u00e9\\n\\ud83d\\ude00\"", "-1e-300",
                          "[{\"b\":[null,true]}]"};
    const char *more_ids[] = {"\"\\u0001\\u00ff\"", "-9223372036854775808", "1e300"};
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        for (size_t k = 0; k < sizeof more_ids / sizeof *more_ids; k++) {
            char line[256];
            snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":%s}",
                     more_ids[k]);
            parse(line, AUTO);
            json_t *result = json_loads(docs[i], JSON_DECODE_ANY, NULL);
            json_t *env = json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "result", result, "id",
                                    jsond_proto_id(&req.calls[0]));
            char *want = json_dumps(env, JSON_COMPACT | JSON_ENCODE_ANY);
            ck_assert_str_eq(result_text(&req.calls[0], result), want);
            free(want);
            json_decref(env);
        }
    }
    /* the envelope of a notification, should one be asked for: id null */
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"m\"}", AUTO);
    ck_assert_str_eq(result_text(&req.calls[0], json_null()),
                     "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":null}");
}
END_TEST

START_TEST(test_error_plain)
{
    parse("hello", AUTO);
    ck_assert_str_eq(take_text(jsond_proto_error(&req.calls[0], JSOND_NOT_FOUND, 0, "no route")),
                     "{\"error\":{\"code\":\"not_found\",\"message\":\"no route\"}}");
    parse("{\"route\":\"x\",\"id\":[1,{\"a\":null}]}", AUTO);
    ck_assert_str_eq(take_text(jsond_proto_error(&req.calls[0], JSOND_BUSY, 0, "m")),
                     "{\"error\":{\"code\":\"busy\",\"message\":\"m\"},\"id\":[1,{\"a\":null}]}");
    parse("{\"route\":\"x\",\"id\":null}", AUTO);
    ck_assert_str_eq(take_text(jsond_proto_error(&req.calls[0], JSOND_TIMEOUT, 1, "m")),
                     "{\"error\":{\"code\":\"timeout\",\"message\":\"m\"},\"id\":null}");
    /* `params` changes nothing in a plain reply */
    parse("{\"route\":\"x\",\"id\":1}", AUTO);
    ck_assert_str_eq(take_text(jsond_proto_error(&req.calls[0], JSOND_BAD_REQUEST, 1, "m")),
                     "{\"error\":{\"code\":\"bad_request\",\"message\":\"m\"},\"id\":1}");
}
END_TEST

/* Every jsond code, in a JSON-RPC reply: the table of DESIGN.md. */
static const struct {
    jsond_code code;
    const char *name;
    int rpc;        /* params = 0 */
    int rpc_params; /* params = 1 */
} codes[] = {
    {JSOND_BAD_REQUEST, "bad_request", -32600, -32602},
    {JSOND_NOT_FOUND, "not_found", -32601, -32601},
    {JSOND_TOO_LARGE, "too_large", -32000, -32000},
    {JSOND_BUSY, "busy", -32001, -32001},
    {JSOND_TIMEOUT, "timeout", -32002, -32002},
    {JSOND_HANDLER_FAILED, "handler_failed", -32003, -32003},
    {JSOND_WRONG_COLOR, "wrong_color", -32004, -32004},
    {JSOND_SHUTTING_DOWN, "shutting_down", -32005, -32005},
    {JSOND_INTERNAL, "internal", -32603, -32603},
};

START_TEST(test_rpc_codes)
{
    ck_assert_str_eq(jsond_code_name(codes[_i].code), codes[_i].name);
    ck_assert_int_eq(jsond_proto_rpc_code(codes[_i].code, 0), codes[_i].rpc);
    ck_assert_int_eq(jsond_proto_rpc_code(codes[_i].code, 1), codes[_i].rpc_params);
    char want[512];
    for (int params = 0; params < 2; params++) {
        parse("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":\"q\"}", AUTO);
        snprintf(want, sizeof want,
                 "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":%d,\"message\":\"it \\\"failed\\\"\","
                 "\"data\":{\"code\":\"%s\"}},\"id\":\"q\"}",
                 params ? codes[_i].rpc_params : codes[_i].rpc, codes[_i].name);
        ck_assert_str_eq(
            take_text(jsond_proto_error(&req.calls[0], codes[_i].code, params, "it \"failed\"")),
            want);
        /* plain: the name, and the id only when there is one */
        parse("hello", AUTO);
        snprintf(want, sizeof want, "{\"error\":{\"code\":\"%s\",\"message\":\"m\"}}",
                 codes[_i].name);
        ck_assert_str_eq(take_text(jsond_proto_error(&req.calls[0], codes[_i].code, params, "m")),
                         want);
    }
}
END_TEST

/* A call that failed to parse keeps its own JSON-RPC code. */
START_TEST(test_error_of_failed_call)
{
    parse("{", SEEN);
    ck_assert_str_eq(take_text(jsond_proto_error(&req.calls[0], JSOND_BAD_REQUEST, 1, "p")),
                     "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32700,\"message\":\"p\",\"data\":{"
                     "\"code\":\"bad_request\"}},\"id\":null}");
    parse("[5]", SEEN);
    ck_assert_str_eq(take_text(jsond_proto_error(&req.calls[0], JSOND_BAD_REQUEST, 0, "i")),
                     "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"i\",\"data\":{"
                     "\"code\":\"bad_request\"}},\"id\":null}");
    /* A notification that failed to run stays silent: the connection's
     * business; the envelope, if asked for, has id null. */
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"foobar\"}", AUTO);
    ck_assert_int_eq(req.calls[0].silent, 1);
    ck_assert_str_eq(take_text(jsond_proto_error(&req.calls[0], JSOND_NOT_FOUND, 0, "n")),
                     "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32601,\"message\":\"n\",\"data\":{"
                     "\"code\":\"not_found\"}},\"id\":null}");
}
END_TEST

/* A message may quote a name cut to fit, in the middle of a character:
 * the reply keeps every valid character and marks each bad byte '?'. */
static const struct {
    const char *message;
    const char *want; /* as JSON text */
} messages[] = {
    {"no route 'a\xc3'", "\"no route 'a?'\""},
    {"no route '\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80'",
     "\"no route '\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80'\""},
    {"cut \xe4\xb8", "\"cut ??\""},
    {"cut \xf0\x9f\x98", "\"cut ???\""},
    {"overlong \xc0\x80 \xe0\x80\x80", "\"overlong ?? ???\""},
    {"surrogate \xed\xa0\x80", "\"surrogate ???\""},
    {"too high \xf4\x90\x80\x80", "\"too high ????\""},
    {"stray \x80\xbf \xff\xfe", "\"stray ?? ??\""},
};

START_TEST(test_error_message_not_utf8)
{
    char want[256];
    parse("{\"route\":\"x\",\"id\":3}", AUTO);
    snprintf(want, sizeof want, "{\"error\":{\"code\":\"not_found\",\"message\":%s},\"id\":3}",
             messages[_i].want);
    ck_assert_str_eq(
        take_text(jsond_proto_error(&req.calls[0], JSOND_NOT_FOUND, 0, messages[_i].message)),
        want);
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"id\":3}", AUTO);
    snprintf(want, sizeof want,
             "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32601,\"message\":%s,\"data\":{\"code\":"
             "\"not_found\"}},\"id\":3}",
             messages[_i].want);
    ck_assert_str_eq(
        take_text(jsond_proto_error(&req.calls[0], JSOND_NOT_FOUND, 0, messages[_i].message)),
        want);
}
END_TEST

/* Every kind of id, kept as the client's text (an integer, a string without
 * escapes, short enough) or as a value: each reply carries exactly what
 * json_dumps() writes for it. */
static const struct {
    const char *id;
    int as_text;
} ids[] = {
    {"7", 1},
    {"0", 1},
    {"-12", 1},
    {"-9223372036854775808", 1},
    {"9223372036854775807", 1},
    {"\"\"", 1},
    {"\"a/b \x7f\xc3\xa9\xf0\x9f\x98\x80\"", 1},
    {"\"01234567890123456789012345678901234567\"", 1}, /* 40 bytes, the most kept */
    {"\"012345678901234567890123456789012345678\"", 0},
    {"-0", 0},
    {"1.5", 0},
    {"1e3", 0},
    {"-0.0", 0},
    {"\"a\\\"b\\u00e9\\/\"", 0},
    {"null", 0},
};

START_TEST(test_ids)
{
    char line[256], want[512];
    json_t *id = json_loads(ids[_i].id, JSON_DECODE_ANY, NULL);
    ck_assert_ptr_nonnull(id);
    char *id_json = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
    /* JSON-RPC: the result, the error and the wrapped producer's envelope */
    snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":%s}", ids[_i].id);
    parse(line, AUTO);
    ck_assert_int_eq(req.calls[0].idlen != 0, ids[_i].as_text);
    ck_assert_str_eq(id_text(&req.calls[0]), id_json);
    snprintf(want, sizeof want, "{\"jsonrpc\":\"2.0\",\"result\":{\"n\":1},\"id\":%s}", id_json);
    ck_assert_str_eq(result_text(&req.calls[0], json_pack("{s:i}", "n", 1)), want);
    snprintf(want, sizeof want,
             "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32601,\"message\":\"n\",\"data\":{"
             "\"code\":\"not_found\"}},\"id\":%s}",
             id_json);
    ck_assert_str_eq(take_text(jsond_proto_error(&req.calls[0], JSOND_NOT_FOUND, 0, "n")), want);
    char *prefix, *suffix;
    ck_assert_int_eq(jsond_proto_wrap(&req.calls[0], &prefix, &suffix), 0);
    snprintf(want, sizeof want, ",\"id\":%s}", id_json);
    ck_assert_str_eq(suffix, want);
    free(prefix);
    free(suffix);
    /* an invalid request keeps its id */
    snprintf(line, sizeof line, "{\"jsonrpc\":\"1.0\",\"method\":\"m\",\"id\":%s}", ids[_i].id);
    parse(line, AUTO);
    failed_call_at(0, JSOND_BAD_REQUEST, -32600, id_json);
    /* plain: the error */
    snprintf(line, sizeof line, "{\"route\":\"x\",\"id\":%s}", ids[_i].id);
    parse(line, AUTO);
    ck_assert_int_eq(req.calls[0].idlen != 0, ids[_i].as_text);
    snprintf(want, sizeof want, "{\"error\":{\"code\":\"busy\",\"message\":\"m\"},\"id\":%s}",
             id_json);
    ck_assert_str_eq(take_text(jsond_proto_error(&req.calls[0], JSOND_BUSY, 0, "m")), want);
    /* in a batch, ids are values */
    snprintf(line, sizeof line, "[{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":%s}]", ids[_i].id);
    parse(line, AUTO);
    ck_assert_uint_eq(req.calls[0].idlen, 0);
    ck_assert_str_eq(id_text(&req.calls[0]), id_json);
    free(id_json);
    json_decref(id);
}
END_TEST

/* A NUL after a number is skipped (see decode.h): the id is the number. */
START_TEST(test_id_nul)
{
    const char line[] = "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":12\0}";
    parse_len(line, sizeof line - 1, AUTO);
    ck_assert_str_eq(id_text(&req.calls[0]), "12");
    ck_assert_str_eq(result_text(&req.calls[0], json_null()),
                     "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":12}");
}
END_TEST

/* prefix + producer bytes + suffix == the envelope jsond_proto_dump_result writes. */
static void check_wrap(const char *line, const char *want_prefix, const char *want_suffix)
{
    char *prefix = NULL, *suffix = NULL;
    parse(line, AUTO);
    ck_assert_int_eq(jsond_proto_wrap(&req.calls[0], &prefix, &suffix), 0);
    ck_assert_str_eq(prefix, want_prefix);
    ck_assert_str_eq(suffix, want_suffix);
    const char *body = "{\"msg\":\"Hello World\",\"data\":\"xx\"}";
    char whole[1024];
    snprintf(whole, sizeof whole, "%s%s%s", prefix, body, suffix);
    json_t *result = json_loads(body, 0, NULL);
    ck_assert_str_eq(whole, result_text(&req.calls[0], result));
    free(prefix);
    free(suffix);
}

START_TEST(test_wrap)
{
    check_wrap("big", "", "");
    check_wrap("{\"route\":\"big\",\"id\":7}", "", "");
    check_wrap("{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"id\":7}",
               "{\"jsonrpc\":\"2.0\",\"result\":", ",\"id\":7}");
    check_wrap("{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"id\":\"a\\\"b\\u00e9\"}",
               "{\"jsonrpc\":\"2.0\",\"result\":", ",\"id\":\"a\\\"b\xc3\xa9\"}");
    check_wrap("{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"id\":null}",
               "{\"jsonrpc\":\"2.0\",\"result\":", ",\"id\":null}");
    check_wrap("{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"id\":-0.5}",
               "{\"jsonrpc\":\"2.0\",\"result\":", ",\"id\":-0.5}");
}
END_TEST

START_TEST(test_fini)
{
    jsond_request r;
    memset(&r, 0, sizeof r);
    jsond_request_fini(&r); /* an empty request */
    const char *line = "[{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":[1],\"id\":{}},"
                       "{\"jsonrpc\":\"2.0\",\"method\":\"n\"},{\"route\":\"x\"}]";
    ck_assert_int_eq(jsond_proto_parse(line, strlen(line), SEEN, &r), 0);
    ck_assert_uint_eq(r.ncalls, 3);
    jsond_request_fini(&r);
    ck_assert_ptr_null(r.calls);
    ck_assert_uint_eq(r.ncalls, 0);
    jsond_request_fini(&r); /* twice is fine */
}
END_TEST

static Suite *proto_suite(void)
{
    Suite *s = suite_create("proto");
    TCase *tc = tcase_create("forms");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_shorthand);
    tcase_add_test(tc, test_route_object);
    tcase_add_loop_test(tc, test_route_object_ids, 0, sizeof plain_ids / sizeof plain_ids[0]);
    tcase_add_test(tc, test_jsonrpc);
    tcase_add_test(tc, test_notification);
    tcase_add_test(tc, test_whitespace);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_bad_shorthand, 0, sizeof bad_shorthand / sizeof bad_shorthand[0]);
    tcase_add_test(tc, test_valid_name);
    tcase_add_test(tc, test_name_too_long);
    tcase_add_loop_test(tc, test_bad_shorthand_rpc, 0,
                        sizeof bad_shorthand / sizeof bad_shorthand[0]);
    tcase_add_test(tc, test_rpc_only);
    tcase_add_test(tc, test_envelope_strings);
    tcase_add_test(tc, test_bad_route_object);
    tcase_add_loop_test(tc, test_bad_jsonrpc, 0, sizeof bad_rpc / sizeof bad_rpc[0]);
    tcase_add_loop_test(tc, test_not_json, 0, sizeof not_json / sizeof not_json[0]);
    tcase_add_test(tc, test_deep_nesting);
    suite_add_tcase(s, tc);

    tc = tcase_create("batches");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_array_on_plain_connection);
    tcase_add_test(tc, test_empty_batch);
    tcase_add_test(tc, test_invalid_batch_members);
    tcase_add_test(tc, test_mixed_batch);
    tcase_add_test(tc, test_all_notifications_batch);
    suite_add_tcase(s, tc);

    tc = tcase_create("replies");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_result_plain);
    tcase_add_test(tc, test_result_rpc);
    tcase_add_test(tc, test_error_plain);
    tcase_add_loop_test(tc, test_rpc_codes, 0, sizeof codes / sizeof codes[0]);
    tcase_add_test(tc, test_error_of_failed_call);
    tcase_add_loop_test(tc, test_error_message_not_utf8, 0, sizeof messages / sizeof messages[0]);
    tcase_add_test(tc, test_wrap);
    tcase_add_loop_test(tc, test_ids, 0, sizeof ids / sizeof ids[0]);
    tcase_add_test(tc, test_id_nul);
    tcase_add_test(tc, test_fini);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(proto_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
