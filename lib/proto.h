/* proto.h: the wire protocol, as pure functions over bytes and json_t.
 *
 * A request line is one of four forms, told apart by its first byte:
 *
 *     hello                                  route name
 *     big {"size": 10}                       route name, JSON args
 *     {"route": "big", "args": {...}, "id": 7}
 *     {"jsonrpc": "2.0", "method": "big", "params": {...}, "id": 7}
 *
 * plus JSON-RPC 2.0 batches (a JSON array). Parsing never fails as a whole:
 * a malformed line becomes a call that carries its error reply, so every
 * line gets exactly the replies the protocol promises, in order. No reply
 * text ever echoes raw client bytes.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_PROTO_H
#define JSOND_PROTO_H

#include <jansson.h>

#include "config.h"
#include "dump.h"
#include "jsond.h"

/* The longest id kept as its text (see jsond_proto_call). */
#define JSOND_ID_TEXT_MAX 40

/* One call of a request line (not jsond_call(), the bridge's call between
 * routes: this is what the client sent). */
typedef struct jsond_proto_call {
    char *route;                   /* NULL when the call failed to parse; `name` or malloc'ed */
    char name[JSOND_NAME_MAX + 1]; /* a route name that fits, with no allocation */
    json_t *args;                  /* object, array (JSON-RPC params by position), or NULL */
    /* The request's id: NULL when it had none, or when it is in `idtext`.
     * An integer or a string without escapes is kept as the client wrote
     * it, which is what json_dumps() writes for it: its reply repeats the
     * bytes, and no value is built (see jsond_proto_id). */
    json_t *id;
    size_t idlen; /* 0: no id text */
    char idtext[JSOND_ID_TEXT_MAX];
    int rpc;    /* reply with JSON-RPC 2.0 envelopes */
    int silent; /* a JSON-RPC notification: no reply, even on error */
    /* A call that failed to parse carries the error to reply with. */
    int failed;
    jsond_code code;
    int rpc_code; /* the JSON-RPC code, when it is not the code's default */
    const char *message;
} jsond_proto_call;

/* One request line: a call, or the members of a batch. A single call is
 * `one`, inside the request, so a request must not move once parsed. */
typedef struct jsond_request {
    jsond_proto_call *calls; /* &one, or the batch's members */
    size_t ncalls;
    int batch; /* replies go out as one JSON array (none if all are silent) */
    int rpc;   /* the line was JSON-RPC: later parse errors become -32700 */
    jsond_proto_call one;
} jsond_request;

/* Modes of a connection, for jsond_proto_parse(). */
enum {
    /* The connection has sent a JSON-RPC request: a line that is not JSON
     * is answered with -32700, and any array is a batch. */
    JSOND_PROTO_RPC_SEEN = 1,
    /* The listener has protocol = jsonrpc: as above, and a JSON object that
     * is not JSON-RPC is an invalid request (-32600). */
    JSOND_PROTO_RPC_ONLY = 2,
};

/* Parses one line (without its line ending) under `mode` (JSOND_PROTO_*
 * flags) into `out`, which must stay where it is (see jsond_request).
 * Returns 0, or -1 when out of memory. */
int jsond_proto_parse(const char *line, size_t len, int mode, jsond_request *out);

/* Makes `out` a request of one empty call, for a line that is never parsed:
 * the caller fills in the call's failure. */
void jsond_request_one(jsond_request *out);

/* Releases what `r` holds and leaves it without calls (to fini again is
 * harmless); it is filled anew only by jsond_proto_parse() or
 * jsond_request_one(). */
void jsond_request_fini(jsond_request *r);

/* Appends the reply to `call` made of the handler's `result`: the result as
 * it is (plain), or in a JSON-RPC envelope written around it, so that no
 * document is built for the envelope. The bytes are json_dumps()'s of the
 * envelope document. 0, or -1 or 1 as jsond_dump(). */
int jsond_proto_dump_result(jsond_dumper *d, const jsond_proto_call *call, const json_t *result);

/* An error reply for `call`. `params` marks a bad_request raised by the
 * handler (JSON-RPC -32602) rather than by the protocol (-32600). */
json_t *jsond_proto_error(const jsond_proto_call *call, jsond_code code, int params,
                          const char *message);

/* For a reply made by a producer: the bytes that go before and after the
 * producer's own (a JSON-RPC envelope; empty for plain replies). Both are
 * malloc'ed; -1 when out of memory. */
int jsond_proto_wrap(const jsond_proto_call *call, char **prefix, char **suffix);

/* The id of `call` as a value (a new reference), or NULL when it had none
 * (or out of memory). */
json_t *jsond_proto_id(const jsond_proto_call *call);

/* The JSON-RPC error code for a jsond code. */
int jsond_proto_rpc_code(jsond_code code, int params);

#endif /* JSOND_PROTO_H */
