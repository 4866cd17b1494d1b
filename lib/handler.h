/* handler.h: the handler registry: what runs a route, resolved once.
 *
 * A route's `handler = KIND:ARG` is looked up when its config is loaded,
 * never per request: the result is stored with the config snapshot (each
 * route's `impl`), so a request finds its function, colour and deadline
 * with no string lookup, and a reload that names a handler that does not
 * exist fails before anything is swapped in. config.c does not depend on
 * this module; it calls the registry through jsond_config_resolver.
 *
 * A resolved handler is immutable and lives as long as its config: any
 * thread holding a reference to the config may read it.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_HANDLER_H
#define JSOND_HANDLER_H

#include "config.h"
#include "jsond.h"

/* A handler's colour (DESIGN.md, "Handlers, colours and the bridge"): the
 * kind of code it is, whatever runs it. */
typedef enum jsond_color {
    JSOND_COLOR_SYNC,  /* blocking code: runs on a pool thread */
    JSOND_COLOR_ASYNC, /* runs on the loop, replies now or later */
    JSOND_COLOR_DUAL,  /* both, under one name: where it runs picks the half */
} jsond_color;

/* "sync", "async" or "dual", as `routes` shows it. */
const char *jsond_color_name(jsond_color color);

/* A route's handler runs on the loop: it has no pool. */
#define JSOND_ON_LOOP ((size_t)-1)

/* A route's handler, resolved. */
typedef struct jsond_handler {
    jsond_color color;
    jsond_sync_fn sync_fn;   /* for SYNC and DUAL */
    jsond_async_fn async_fn; /* for ASYNC and DUAL */
    /* Where a client's request runs: the index of its pool in the config's
     * `pools` (a sync handler, or a dual one whose route names a pool),
     * else JSOND_ON_LOOP. */
    size_t pool;
    unsigned timeout_ms; /* the request's deadline (0: none): the route's
                          * timeout, else the server's request_timeout */
    /* What the handler kind made of the route at load (a program's argv, a
     * file's bytes), or NULL: immutable, freed with the config by
     * data_free. Handlers reach it with jsond_req_handler_data(). */
    void *data;
    void (*data_free)(void *data);
    /* A reply that never changes (hello's; a small file:'s), as compact
     * JSON made at load, owned by the handler kind (static, or in data),
     * and followed by a '\n' that fixed_len does not count, so that a
     * reply line goes out in one write. A client's request for it gets
     * these bytes, with no request made and nothing serialized. NULL: the
     * handler runs. */
    const char *fixed;
    size_t fixed_len;
} jsond_handler;

/* The largest fixed reply: bigger ones are copied per request for less
 * than they cost, and go by reference through the handler instead. */
#define JSOND_FIXED_MAX ((size_t)16 * 1024)

/* The registry, as the hook config.c calls. */
const jsond_config_resolver *jsond_handler_resolver(void);

/* The handler `route` was resolved to; NULL only for a config read without
 * the registry (jsond_config_read with no resolver). */
const jsond_handler *jsond_handler_of(const cfg_route *route);

#endif /* JSOND_HANDLER_H */
