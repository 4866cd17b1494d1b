/* proto.c: request lines in, reply envelopes out.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "decode.h"
#include "proto.h"
#include "utf8.h"

#define RPC_PARSE_ERROR     (-32700)
#define RPC_INVALID_REQUEST (-32600)
#define RPC_NOT_FOUND       (-32601)
#define RPC_INVALID_PARAMS  (-32602)
#define RPC_INTERNAL        (-32603)
#define RPC_SERVER_BASE     (-32000) /* too_large .. shutting_down: -32000 .. -32005 */

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

static void fail(jsond_proto_call *c, jsond_code code, int rpc_code, const char *message)
{
    c->failed = 1;
    c->code = code;
    c->rpc_code = rpc_code;
    c->message = message;
}

/* A line that is not a request and not JSON: bad_request, or a JSON-RPC
 * parse error (id null) once JSON-RPC is in use, so a JSON-RPC client
 * always gets a JSON-RPC answer. */
static void not_json(jsond_proto_call *c, int mode, const char *message)
{
    if (mode & (JSOND_PROTO_RPC_SEEN | JSOND_PROTO_RPC_ONLY)) {
        c->rpc = 1;
        c->id = json_null();
        fail(c, JSOND_BAD_REQUEST, RPC_PARSE_ERROR, "parse error");
    } else {
        fail(c, JSOND_BAD_REQUEST, 0, message);
    }
}

static int set_route(jsond_proto_call *c, const char *name, size_t len)
{
    if (len < sizeof c->name) {
        memcpy(c->name, name, len);
        c->name[len] = '\0';
        c->route = c->name;
    } else {
        c->route = strndup(name, len);
    }
    return c->route ? 0 : -1;
}

/* The members of a request object that say what it is, by their keys. */
enum { F_JSONRPC, F_METHOD, F_PARAMS, F_ID, F_ROUTE, F_ARGS, NFIELDS };
static const char *const field_names[NFIELDS] = {"jsonrpc", "method", "params",
                                                 "id",      "route",  "args"};

/* The members of a batch member `obj`: new references. */
static void fields_of(json_t *obj, json_t *f[NFIELDS])
{
    for (int i = 0; i < NFIELDS; i++)
        f[i] = json_incref(json_object_get(obj, field_names[i]));
}

static void fields_drop(json_t *f[NFIELDS])
{
    for (int i = 0; i < NFIELDS; i++)
        json_decref(f[i]);
}

/* Takes the reference in f[i] (jansson's counts are atomic: a reference
 * moved costs nothing, one taken and dropped two locked operations). */
static json_t *take(json_t *f[NFIELDS], int i)
{
    json_t *v = f[i];
    f[i] = NULL;
    return v;
}

/* The parsers below take what they keep from `f` (see take()); the caller
 * drops what is left. */

/* {"jsonrpc": "2.0", "method": ..., "params": ..., "id": ...} */
static int parse_rpc(json_t *f[NFIELDS], jsond_proto_call *c)
{
    json_t *version = f[F_JSONRPC], *method = f[F_METHOD], *params = f[F_PARAMS], *id = f[F_ID];
    int id_ok = !id || json_is_string(id) || json_is_number(id) || json_is_null(id);
    c->rpc = 1;
    if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0 ||
        !json_is_string(method) || (params && !json_is_object(params) && !json_is_array(params)) ||
        !id_ok) {
        /* Answered even without an id: the spec wants an invalid request
         * reported, with id null when it cannot be read. */
        c->id = id && id_ok ? take(f, F_ID) : json_null();
        fail(c, JSOND_BAD_REQUEST, RPC_INVALID_REQUEST, "invalid request");
        return 0;
    }
    c->id = take(f, F_ID);
    c->silent = !id;
    c->args = take(f, F_PARAMS);
    return set_route(c, json_string_value(method), json_string_length(method));
}

/* {"route": ..., "args": {...}, "id": ...} */
static int parse_plain(json_t *f[NFIELDS], jsond_proto_call *c)
{
    json_t *route = f[F_ROUTE], *args = f[F_ARGS];
    c->id = take(f, F_ID);
    if (!json_is_string(route)) {
        fail(c, JSOND_BAD_REQUEST, 0, "a request object needs a string 'route'");
        return 0;
    }
    if (args && !json_is_object(args)) {
        fail(c, JSOND_BAD_REQUEST, 0, "'args' must be a JSON object");
        return 0;
    }
    c->args = take(f, F_ARGS);
    return set_route(c, json_string_value(route), json_string_length(route));
}

static int parse_object(json_t *f[NFIELDS], int mode, jsond_proto_call *c)
{
    if (f[F_JSONRPC])
        return parse_rpc(f, c);
    if (mode & JSOND_PROTO_RPC_ONLY) {
        c->rpc = 1;
        c->id = json_null();
        fail(c, JSOND_BAD_REQUEST, RPC_INVALID_REQUEST, "invalid request");
        return 0;
    }
    return parse_plain(f, c);
}

void jsond_request_one(jsond_request *out)
{
    memset(out, 0, sizeof *out);
    out->calls = &out->one;
    out->ncalls = 1;
}

/* Makes `r` a request of one call, the one inside it: no allocation. */
static jsond_proto_call *one_call(jsond_request *r)
{
    r->calls = &r->one;
    r->ncalls = 1;
    return &r->one;
}

static int alloc_calls(jsond_request *r, size_t n)
{
    if (n == 1) {
        one_call(r);
        return 0;
    }
    r->calls = calloc(n, sizeof *r->calls);
    if (!r->calls)
        return -1;
    r->ncalls = n;
    return 0;
}

static int has_rpc_member(json_t *array)
{
    size_t i;
    json_t *v;
    json_array_foreach(array, i,
                       v) if (json_is_object(v) && json_object_get(v, "jsonrpc")) return 1;
    return 0;
}

/* A request object: only the members that say what it is are built (the
 * rest is validated and skipped). */
static int parse_request_object(const char *line, size_t len, int mode, jsond_request *r)
{
    jsond_field fields[NFIELDS];
    json_t *f[NFIELDS];
    for (int i = 0; i < NFIELDS; i++)
        fields[i].name = field_names[i];
    jsond_proto_call *c = one_call(r);
    if (jsond_decode_fields(line, len, fields, NFIELDS) != 1) {
        not_json(c, mode, "request is not valid JSON");
        return 0;
    }
    for (int i = 0; i < NFIELDS; i++)
        f[i] = fields[i].value;
    int rc = parse_object(f, mode, c);
    r->rpc = c->rpc;
    fields_drop(f);
    return rc;
}

/* A JSON-RPC batch (a JSON array). */
static int parse_batch(const char *line, size_t len, int mode, jsond_request *r)
{
    json_t *doc = jsond_decode(line, len, 0);
    int rpc = (mode & (JSOND_PROTO_RPC_SEEN | JSOND_PROTO_RPC_ONLY)) != 0, rc = 0;
    if (!doc) {
        not_json(one_call(r), mode, "request is not valid JSON");
        return 0;
    }
    if (!rpc && !has_rpc_member(doc)) {
        fail(one_call(r), JSOND_BAD_REQUEST, 0, "an array is accepted only as a JSON-RPC batch");
    } else if (json_array_size(doc) == 0) {
        jsond_proto_call *c = one_call(r);
        r->rpc = c->rpc = 1;
        c->id = json_null();
        fail(c, JSOND_BAD_REQUEST, RPC_INVALID_REQUEST, "invalid request");
    } else {
        r->rpc = r->batch = 1;
        rc = alloc_calls(r, json_array_size(doc));
        for (size_t i = 0; rc == 0 && i < r->ncalls; i++) {
            json_t *member = json_array_get(doc, i), *f[NFIELDS];
            jsond_proto_call *c = &r->calls[i];
            if (json_is_object(member) && json_object_get(member, "jsonrpc")) {
                fields_of(member, f);
                rc = parse_rpc(f, c);
                fields_drop(f);
            } else {
                c->rpc = 1;
                c->id = json_null();
                fail(c, JSOND_BAD_REQUEST, RPC_INVALID_REQUEST, "invalid request");
            }
        }
    }
    json_decref(doc);
    return rc;
}

/* hello   or   big {"size": 10}. A jsonrpc listener speaks JSON-RPC only:
 * there, as a plain request object or a JSON scalar is an invalid request,
 * a line that is not JSON at all is a parse error. */
static int parse_shorthand(const char *line, size_t len, int mode, jsond_request *r)
{
    jsond_proto_call *c = one_call(r);
    size_t n = 0;
    if (mode & JSOND_PROTO_RPC_ONLY) {
        /* A JSON scalar (123, "x", null) is JSON, just not a request. */
        json_t *scalar = jsond_decode(line, len, JSON_DECODE_ANY);
        if (scalar) {
            json_decref(scalar);
            c->rpc = 1;
            c->id = json_null();
            fail(c, JSOND_BAD_REQUEST, RPC_INVALID_REQUEST, "invalid request");
        } else {
            not_json(c, mode, "not a JSON-RPC request");
        }
        return 0;
    }
    while (n < len && !is_space(line[n]))
        n++;
    if (!jsond_config_valid_name(line, n)) {
        not_json(c, mode, "not a route name or a JSON request");
        return 0;
    }
    const char *rest = line + n;
    size_t restlen = len - n;
    while (restlen && is_space(*rest)) {
        rest++;
        restlen--;
    }
    if (restlen) {
        c->args = jsond_decode(rest, restlen, 0);
        if (!json_is_object(c->args)) {
            json_decref(c->args);
            c->args = NULL;
            not_json(c, mode, "args after a route name must be a JSON object");
            return 0;
        }
    }
    return set_route(c, line, n);
}

int jsond_proto_parse(const char *line, size_t len, int mode, jsond_request *out)
{
    memset(out, 0, sizeof *out);
    while (len && is_space(*line)) {
        line++;
        len--;
    }
    while (len && is_space(line[len - 1]))
        len--;
    int rc = !len             ? parse_shorthand(line, len, mode, out)
             : line[0] == '{' ? parse_request_object(line, len, mode, out)
             : line[0] == '[' ? parse_batch(line, len, mode, out)
                              : parse_shorthand(line, len, mode, out);
    if (rc < 0)
        jsond_request_fini(out);
    return rc;
}

void jsond_request_fini(jsond_request *r)
{
    for (size_t i = 0; i < r->ncalls; i++) {
        if (r->calls[i].route != r->calls[i].name)
            free(r->calls[i].route);
        json_decref(r->calls[i].args);
        json_decref(r->calls[i].id);
    }
    if (r->calls != &r->one)
        free(r->calls);
    memset(r, 0, sizeof *r);
}

/* ---- replies ---------------------------------------------------------- */

int jsond_proto_rpc_code(jsond_code code, int params)
{
    switch (code) {
    case JSOND_BAD_REQUEST:
        return params ? RPC_INVALID_PARAMS : RPC_INVALID_REQUEST;
    case JSOND_NOT_FOUND:
        return RPC_NOT_FOUND;
    case JSOND_INTERNAL:
        return RPC_INTERNAL;
    default:
        return RPC_SERVER_BASE - (int)(code - JSOND_TOO_LARGE);
    }
}

/* The id of a JSON-RPC reply: the request's, or null. */
static json_t *rpc_id(const jsond_proto_call *call)
{
    return call->id ? json_incref(call->id) : json_null();
}

/* A JSON-RPC result envelope is RESULT_HEAD, the result, ID_HEAD, the id
 * and '}': the key order jansson keeps for {"jsonrpc","result","id"}. */
#define RESULT_HEAD "{\"jsonrpc\":\"2.0\",\"result\":"
#define ID_HEAD     ",\"id\":"

int jsond_proto_dump_result(jsond_dumper *d, const jsond_proto_call *call, const json_t *result)
{
    if (!call->rpc)
        return jsond_dump(d, result);
    int rc;
    if ((rc = jsond_dump_bytes(d, RESULT_HEAD, sizeof RESULT_HEAD - 1)) != 0 ||
        (rc = jsond_dump(d, result)) != 0 ||
        (rc = jsond_dump_bytes(d, ID_HEAD, sizeof ID_HEAD - 1)) != 0)
        return rc;
    /* json_null() is a constant: no reference to take or drop. */
    if ((rc = jsond_dump(d, call->id ? call->id : json_null())) != 0)
        return rc;
    return jsond_dump_bytes(d, "}", 1);
}

/* The message as a JSON string. A message is text of ours, but it may quote
 * a name cut to fit, perhaps in the middle of a character: each byte that
 * is not valid UTF-8 becomes '?', so the reply is never lost to its text. */
static json_t *message_string(const char *message)
{
    json_t *str = json_string(message);
    if (str)
        return str;
    size_t n = strlen(message);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < n;) {
        size_t len = jsond_utf8_len((const unsigned char *)message + i, n - i);
        if (len == 0) {
            copy[i++] = '?';
        } else {
            memcpy(copy + i, message + i, len);
            i += len;
        }
    }
    copy[n] = '\0';
    str = json_string(copy);
    free(copy);
    return str;
}

json_t *jsond_proto_error(const jsond_proto_call *call, jsond_code code, int params,
                          const char *message)
{
    json_t *text = message_string(message);
    if (!text)
        return NULL;
    if (call->rpc) {
        int rpc_code =
            call->failed && call->rpc_code ? call->rpc_code : jsond_proto_rpc_code(code, params);
        return json_pack("{s:s,s:{s:i,s:o,s:{s:s}},s:o}", "jsonrpc", "2.0", "error", "code",
                         rpc_code, "message", text, "data", "code", jsond_code_name(code), "id",
                         rpc_id(call));
    }
    json_t *err =
        json_pack("{s:{s:s,s:o}}", "error", "code", jsond_code_name(code), "message", text);
    if (err && call->id && json_object_set(err, "id", call->id) < 0) {
        json_decref(err);
        return NULL;
    }
    return err;
}

int jsond_proto_wrap(const jsond_proto_call *call, char **prefix, char **suffix)
{
    *prefix = *suffix = NULL;
    if (!call->rpc) {
        *prefix = strdup("");
        *suffix = strdup("");
    } else {
        json_t *id = rpc_id(call);
        char *idtext = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(id);
        *prefix = strdup(RESULT_HEAD);
        if (idtext && asprintf(suffix, ID_HEAD "%s}", idtext) < 0)
            *suffix = NULL;
        free(idtext);
    }
    if (*prefix && *suffix)
        return 0;
    free(*prefix);
    free(*suffix);
    *prefix = *suffix = NULL;
    return -1;
}
