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
#define NAME(s)                                                                                    \
    {                                                                                              \
        (s), sizeof(s) - 1                                                                         \
    }
static const struct {
    const char *s;
    size_t n;
} field_names[NFIELDS] = {NAME("jsonrpc"), NAME("method"), NAME("params"),
                          NAME("id"),      NAME("route"),  NAME("args")};

/* What a request object's members say. The strings (jsonrpc, method,
 * route) are read in place when the line gives them without escapes: a
 * small request then builds no value for its envelope. */
typedef struct envelope {
    int has[NFIELDS];       /* the member is there */
    json_t *v[NFIELDS];     /* params, id, args: new references */
    const char *s[NFIELDS]; /* jsonrpc, method, route: a string's bytes, NULL if not one */
    size_t n[NFIELDS];
    json_t *held[NFIELDS]; /* what s[i] is in, when it was unescaped */
    const char *idtext;    /* the id, when kept as its text (then not in v) */
    size_t idlen;
} envelope;

static int is_text_field(int i)
{
    return i == F_JSONRPC || i == F_METHOD || i == F_ROUTE;
}

/* The envelope of batch member `obj` (which outlives it). */
static void envelope_of(json_t *obj, envelope *e)
{
    memset(e, 0, sizeof *e);
    for (int i = 0; i < NFIELDS; i++) {
        json_t *v = json_object_get(obj, field_names[i].s);
        e->has[i] = v != NULL;
        if (!is_text_field(i)) {
            e->v[i] = json_incref(v);
        } else if (json_is_string(v)) {
            e->s[i] = json_string_value(v);
            e->n[i] = json_string_length(v);
        }
    }
}

static void envelope_drop(envelope *e)
{
    for (int i = 0; i < NFIELDS; i++) {
        json_decref(e->v[i]);
        json_decref(e->held[i]);
    }
}

/* Whether the n bytes at t, a valid JSON number, are an integer as "%lld"
 * writes it: digits only (a NUL may follow a number, see decode.h), and
 * not -0, which is 0. */
static int is_integer_text(const char *t, size_t n)
{
    size_t i = t[0] == '-';
    if (i && n == 2 && t[1] == '0')
        return 0;
    for (; i < n; i++)
        if (t[i] < '0' || t[i] > '9')
            return 0;
    return 1;
}

/* The id, whose valid JSON text is the n bytes at t: kept as that text when
 * it is what json_dumps() writes for it (see jsond_proto_call), else
 * decoded. -1 out of memory. */
static int envelope_id(envelope *e, const char *t, size_t n)
{
    if (n <= JSOND_ID_TEXT_MAX && (t[0] == '"' ? !memchr(t, '\\', n) : is_integer_text(t, n))) {
        e->idtext = t;
        e->idlen = n;
        return 0;
    }
    return (e->v[F_ID] = jsond_decode(t, n, JSON_DECODE_ANY)) ? 0 : -1;
}

/* The envelope of the request object `line`: 1, or -1 when the line is
 * not valid JSON (or out of memory). */
static int envelope_decode(const char *line, size_t len, envelope *e)
{
    jsond_field f[NFIELDS];
    for (int i = 0; i < NFIELDS; i++) { /* jsond_decode_fields() sets the rest */
        f[i].name = field_names[i].s;
        f[i].name_len = field_names[i].n;
        f[i].raw = is_text_field(i) || i == F_ID;
    }
    if (jsond_decode_fields(line, len, f, NFIELDS) != 1)
        return -1;
    /* Every member set here, not memset: on the request path a memset of
     * this size is a `rep stos`, slow to start. */
    e->idtext = NULL;
    e->idlen = 0;
    for (int i = 0; i < NFIELDS; i++) {
        e->v[i] = f[i].value;
        e->has[i] = f[i].value || f[i].text;
        e->s[i] = NULL;
        e->n[i] = 0;
        e->held[i] = NULL;
        const char *t = f[i].text;
        if (!t || t[0] != '"' || i == F_ID) {
            continue; /* absent, not a string, or the id (below) */
        } else if (!memchr(t, '\\', f[i].len)) {
            e->s[i] = t + 1; /* valid JSON: the bytes between the quotes */
            e->n[i] = f[i].len - 2;
        } else if ((e->held[i] = jsond_decode(t, f[i].len, JSON_DECODE_ANY))) {
            e->s[i] = json_string_value(e->held[i]);
            e->n[i] = json_string_length(e->held[i]);
        }
    }
    if (f[F_ID].text && envelope_id(e, f[F_ID].text, f[F_ID].len) < 0) {
        envelope_drop(e);
        return -1;
    }
    return 1;
}

/* Takes the reference in e->v[i] (jansson's counts are atomic: a
 * reference moved costs nothing, one taken and dropped two locked
 * operations). The parsers below take what they keep; the caller drops
 * the envelope with what is left. */
static json_t *take(envelope *e, int i)
{
    json_t *v = e->v[i];
    e->v[i] = NULL;
    return v;
}

/* Moves the id (if any) into the call. */
static void take_id(envelope *e, jsond_proto_call *c)
{
    c->id = take(e, F_ID);
    c->idlen = e->idlen;
    if (e->idlen)
        memcpy(c->idtext, e->idtext, e->idlen);
}

/* {"jsonrpc": "2.0", "method": ..., "params": ..., "id": ...} */
static int parse_rpc(envelope *e, jsond_proto_call *c)
{
    json_t *params = e->v[F_PARAMS], *id = e->v[F_ID];
    /* An id kept as text is a string or an integer. */
    int id_ok = !id || json_is_string(id) || json_is_number(id) || json_is_null(id);
    c->rpc = 1;
    if (!e->s[F_JSONRPC] || e->n[F_JSONRPC] != 3 || memcmp(e->s[F_JSONRPC], "2.0", 3) != 0 ||
        !e->s[F_METHOD] || (params && !json_is_object(params) && !json_is_array(params)) ||
        !id_ok) {
        /* Answered even without an id: the spec wants an invalid request
         * reported, with id null when it cannot be read. */
        if (e->has[F_ID] && id_ok)
            take_id(e, c);
        else
            c->id = json_null();
        fail(c, JSOND_BAD_REQUEST, RPC_INVALID_REQUEST, "invalid request");
        return 0;
    }
    take_id(e, c);
    c->silent = !e->has[F_ID];
    c->args = take(e, F_PARAMS);
    return set_route(c, e->s[F_METHOD], e->n[F_METHOD]);
}

/* {"route": ..., "args": {...}, "id": ...} */
static int parse_plain(envelope *e, jsond_proto_call *c)
{
    json_t *args = e->v[F_ARGS];
    take_id(e, c);
    if (!e->s[F_ROUTE]) {
        fail(c, JSOND_BAD_REQUEST, 0, "a request object needs a string 'route'");
        return 0;
    }
    if (args && !json_is_object(args)) {
        fail(c, JSOND_BAD_REQUEST, 0, "'args' must be a JSON object");
        return 0;
    }
    c->args = take(e, F_ARGS);
    return set_route(c, e->s[F_ROUTE], e->n[F_ROUTE]);
}

static int parse_object(envelope *e, int mode, jsond_proto_call *c)
{
    if (e->has[F_JSONRPC])
        return parse_rpc(e, c);
    if (mode & JSOND_PROTO_RPC_ONLY) {
        c->rpc = 1;
        c->id = json_null();
        fail(c, JSOND_BAD_REQUEST, RPC_INVALID_REQUEST, "invalid request");
        return 0;
    }
    return parse_plain(e, c);
}

/* An empty request: what its parser fills in starts cleared. Field by
 * field, not memset: a call's name and id text are read only when set, and
 * on the request path a memset of this size is a `rep stos`, slow to start. */
static void request_init(jsond_request *r)
{
    jsond_proto_call *c = &r->one;
    r->calls = NULL;
    r->ncalls = 0;
    r->batch = r->rpc = 0;
    c->route = NULL;
    c->args = c->id = NULL;
    c->idlen = 0;
    c->rpc = c->silent = c->failed = 0;
    c->code = JSOND_BAD_REQUEST; /* read only once `failed` is set */
    c->rpc_code = 0;
    c->message = NULL;
}

void jsond_request_one(jsond_request *out)
{
    request_init(out);
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
    envelope e;
    jsond_proto_call *c = one_call(r);
    if (envelope_decode(line, len, &e) < 0) {
        not_json(c, mode, "request is not valid JSON");
        return 0;
    }
    int rc = parse_object(&e, mode, c);
    r->rpc = c->rpc;
    envelope_drop(&e);
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
            json_t *member = json_array_get(doc, i);
            jsond_proto_call *c = &r->calls[i];
            if (json_is_object(member) && json_object_get(member, "jsonrpc")) {
                envelope e;
                envelope_of(member, &e);
                rc = parse_rpc(&e, c);
                envelope_drop(&e);
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
    request_init(out);
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
    /* No calls left, so a second fini frees nothing; the rest is set anew
     * by whatever parses into `r` next. */
    r->calls = NULL;
    r->ncalls = 0;
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

json_t *jsond_proto_id(const jsond_proto_call *call)
{
    if (call->idlen)
        return jsond_decode(call->idtext, call->idlen, JSON_DECODE_ANY);
    return json_incref(call->id);
}

static int has_id(const jsond_proto_call *call)
{
    return call->id || call->idlen;
}

/* The id of a JSON-RPC reply: the request's, or null. */
static json_t *rpc_id(const jsond_proto_call *call)
{
    return has_id(call) ? jsond_proto_id(call) : json_null();
}

/* Its text, malloc'ed; NULL out of memory. */
static char *rpc_id_text(const jsond_proto_call *call)
{
    if (call->idlen)
        return strndup(call->idtext, call->idlen);
    json_t *id = rpc_id(call);
    char *text = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(id);
    return text;
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
    if ((rc = call->idlen ? jsond_dump_bytes(d, call->idtext, call->idlen)
                          : jsond_dump(d, call->id ? call->id : json_null())) != 0)
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
    if (err && has_id(call) && json_object_set_new(err, "id", jsond_proto_id(call)) < 0) {
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
        char *idtext = rpc_id_text(call);
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
