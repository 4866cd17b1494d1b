/* config.h: the parsed config's layout, for the library's own modules.
 *
 * A jsond_config is immutable once jsond_config_parse() returns it, so any
 * thread may read it without locks while it holds a reference. Durations are
 * milliseconds (0 disables a timeout), sizes are bytes.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_CONFIG_H
#define JSOND_CONFIG_H

#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>

#include "addr.h"
#include "jsond.h"

#define JSOND_NAME_MAX 64

typedef struct cfg_server {
    unsigned max_connections;
    unsigned write_timeout_ms;
    size_t output_buffer;
    unsigned shutdown_timeout_ms;
    unsigned linger_timeout_ms;
    jsond_log_level log_level;
    size_t max_request_size;     /* request line, without its line ending */
    unsigned idle_timeout_ms;    /* request mode: no request for this long */
    unsigned max_pipeline;       /* calls in flight per connection (batch members count) */
    unsigned request_timeout_ms; /* from a request's start to its reply or first byte */
    int policy;                  /* JSOND_POLICY_ADAPTIVE or _STRICT */
    unsigned stall_warning_ms;   /* a loop callback longer than this is a stall; 0: not watched */
} cfg_server;

/* What jsond_call does with a call whose target's colour differs from the
 * caller's context: adapt it, or refuse it with wrong_color. A route's own
 * policy may be INHERIT: the server's applies. */
enum { JSOND_POLICY_ADAPTIVE = 0, JSOND_POLICY_STRICT = 1, JSOND_POLICY_INHERIT = 2 };

/* A route's timeout when it has none of its own: the server's applies. */
#define JSOND_TIMEOUT_INHERIT UINT_MAX

/* [listen] protocol */
enum { JSOND_PROTOCOL_AUTO = 0, JSOND_PROTOCOL_JSONRPC = 1 };

typedef struct cfg_listen {
    char name[JSOND_NAME_MAX + 1];
    const char *file; /* where its [listen NAME] header is (in cfg->files), */
    int line;         /* and its line, for messages */
    int has_address;  /* 0: declared only (no socket of its own) */
    jsond_addr address;
    char *on_connect; /* route name, or NULL */
    int requests;     /* boolean: read requests (after the push, if any) */
    int all_routes;   /* routes = * (the default) */
    char **routes;    /* otherwise the route names callable here */
    size_t nroutes;
    int protocol;     /* JSOND_PROTOCOL_* */
    int address_line; /* of its address key (same file as the header), or 0 */
} cfg_listen;

/* The pool a route's sync work runs on when it names none. */
#define JSOND_POOL_DEFAULT "default"

typedef struct cfg_pool {
    char name[JSOND_NAME_MAX + 1];
    const char *file; /* where its [pool NAME] header is, or NULL for the implicit default */
    int line;         /* 0 for the implicit default */
    unsigned threads;
    unsigned queue_limit; /* jobs waiting while every thread is busy; more get busy */
} cfg_pool;

/* A route's handler as the resolver made it (the handler registry's
 * struct, handler.h): config carries it and never looks inside. */
struct jsond_handler;

typedef struct cfg_route {
    char name[JSOND_NAME_MAX + 1];
    const char *file;    /* where its [route NAME] header is (in cfg->files), */
    int line;            /* and its line, for messages */
    char *handler;       /* as written, e.g. "builtin:hello" */
    int handler_line;    /* of its handler key (in the header's file) */
    json_t *args;        /* object or NULL: defaults under request args */
    json_t *fixed_args;  /* object or NULL: merged over request args */
    unsigned timeout_ms; /* overrides request_timeout; JSOND_TIMEOUT_INHERIT: none given */
    char *pool;          /* the pool key, or NULL when not given */
    int policy;          /* JSOND_POLICY_*, INHERIT when not given */
    size_t max_output;   /* exec: stdout beyond this fails the request */
    /* Set once at load by the resolver, NULL without one; owned by the
     * config, freed with it. */
    struct jsond_handler *impl;
} cfg_route;

/* How a config's handlers are resolved: the handler registry is the one the
 * library's loaders use (jsond_handler_resolver()). config.c knows only this
 * hook, so it stays pure data and never depends on what runs a handler. */
typedef struct jsond_config_resolver {
    /* Called once per route that has a handler, after every file is read
     * (even when some lines failed, so all problems are reported at once).
     * Returns the resolved handler, or NULL with a one-line reason in
     * `why` (empty: out of memory); it becomes an error at the route's
     * handler line. */
    struct jsond_handler *(*resolve)(const jsond_config *cfg, const cfg_route *route, char *why,
                                     size_t size);
    /* Frees what `resolve` returned. */
    void (*release)(struct jsond_handler *h);
} jsond_config_resolver;

/* The deadline of a request for `route` of `cfg`, in ms (0: none). */
unsigned jsond_route_timeout(const jsond_config *cfg, const cfg_route *route);

/* The policy that applies to calls made by `route`'s handler. */
int jsond_route_policy(const jsond_config *cfg, const cfg_route *route);

struct jsond_config {
    atomic_int refs;
    char *source; /* file name, or "(built-in)" */
    char **files; /* every file read: source, then the included ones */
    size_t nfiles;
    cfg_server server;
    cfg_listen *listens; /* in file order */
    size_t nlistens;
    /* Declared pools in file order; when no [pool default] is declared, an
     * implicit one with the table's defaults comes first. */
    cfg_pool *pools;
    size_t npools;
    cfg_route *routes; /* in file order */
    size_t nroutes;
    /* Routes by name, for the request path: open addressing, each slot a
     * route's index + 1 (0: empty). Built once the file is read; NULL
     * while parsing, or without memory, and then names are scanned. */
    uint32_t *route_index;
    size_t route_mask;
    const jsond_config_resolver *resolver; /* what resolved the routes, or NULL */
};

/* jsond_config_load() and jsond_config_parse() with handlers resolved by
 * `res` (NULL: not resolved, every route's impl stays NULL). The public
 * loaders are these with the handler registry (handler.c): there is one
 * code path, so `jsond -t` and a reload cannot disagree. */
jsond_config *jsond_config_read(const char *path, const jsond_config_resolver *res,
                                jsond_errors *errs);
jsond_config *jsond_config_read_text(const char *name, const char *text, size_t len,
                                     const jsond_config_resolver *res, jsond_errors *errs);

/* 1 when two routes have the same effect: every key of the [route] table
 * compared (not the name or source position), so a new key counts. */
int jsond_config_route_equal(const cfg_route *a, const cfg_route *b);

/* Echoed input is cut to JSOND_SHOW_MAX bytes and made printable: a config
 * can be a binary file given by mistake, and messages end up in terminals
 * and logs. Writes s[0..n) so into `out` (JSOND_SHOW_BUF bytes) and
 * returns it. */
#define JSOND_SHOW_MAX 64
#define JSOND_SHOW_BUF (JSOND_SHOW_MAX + 4)
const char *jsond_config_show(char *out, size_t size, const char *s, size_t n);

/* The route called NAME, or NULL. */
const cfg_route *jsond_config_route(const jsond_config *cfg, const char *name);

/* The pool called NAME (declared, or the implicit default), or NULL. */
const cfg_pool *jsond_config_pool(const jsond_config *cfg, const char *name);

/* 1 when s[0..n) is a valid section NAME ([A-Za-z0-9_.-]{1,64}): the only
 * route names that can exist, and so the only ones a reply may repeat. */
int jsond_config_valid_name(const char *s, size_t n);

/* 1 when route NAME may be called on listener `lst` (its `routes` list). */
int jsond_listen_allows(const cfg_listen *lst, const char *name);

#endif /* JSOND_CONFIG_H */
