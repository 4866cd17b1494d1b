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

/* Where a handler can run (DESIGN.md, "Handlers, colours and the bridge").
 * Every handler of this version is async; sync and dual come with the
 * pools. */
typedef enum jsond_color {
    JSOND_COLOR_ASYNC, /* runs on the loop, replies now or later */
} jsond_color;

/* "async", as `routes` shows it. */
const char *jsond_color_name(jsond_color color);

/* A route's handler, resolved. Later versions add the sync function and the
 * pool a sync or dual handler runs on. */
typedef struct jsond_handler {
    jsond_color color;
    jsond_async_fn async_fn; /* for JSOND_COLOR_ASYNC */
    unsigned timeout_ms;     /* the request's deadline (0: none): the route's
                              * timeout, else the server's request_timeout */
} jsond_handler;

/* The registry, as the hook config.c calls. */
const jsond_config_resolver *jsond_handler_resolver(void);

/* The handler `route` was resolved to; NULL only for a config read without
 * the registry (jsond_config_read with no resolver). */
const jsond_handler *jsond_handler_of(const cfg_route *route);

#endif /* JSOND_HANDLER_H */
