/* handler.c: the handler registry, and the public config loaders.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "exec.h"
#include "file.h"
#include "handler.h"

/* builtin:NAME: one of the table in builtin.c. */
static int resolve_builtin(jsond_handler *h, const jsond_config *cfg, const cfg_route *route,
                           const char *arg, char *why, size_t size)
{
    (void)cfg;
    (void)route;
    char s[JSOND_SHOW_BUF];
    const jsond_builtin *b = jsond_builtin_find(arg);
    if (!b) {
        snprintf(why, size, "unknown builtin handler '%s'",
                 jsond_config_show(s, sizeof s, arg, strlen(arg)));
        return -1;
    }
    jsond_builtin_impl(b, h);
    return 0;
}

/* Handler kinds (config checked the KIND:ARG form); NULL: recognised, not
 * supported by this version. */
static const struct handler_kind {
    const char *name;
    /* Fills in `h` for `route` of `cfg` from ARG, or returns -1 with a
     * one-line reason in `why`. */
    int (*resolve)(jsond_handler *h, const jsond_config *cfg, const cfg_route *route,
                   const char *arg, char *why, size_t size);
} kinds[] = {
    {"builtin", resolve_builtin},
    {"file", jsond_file_resolve},
    {"exec", jsond_exec_resolve},
    {"module", NULL},
};

static struct jsond_handler *resolve(const jsond_config *cfg, const cfg_route *route, char *why,
                                     size_t size)
{
    const char *v = route->handler, *colon = strchr(v, ':');
    size_t n = colon ? (size_t)(colon - v) : strlen(v);
    const struct handler_kind *kind = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0] && !kind; i++)
        if (strlen(kinds[i].name) == n && memcmp(v, kinds[i].name, n) == 0)
            kind = &kinds[i];
    if (!kind || !kind->resolve) {
        char s[JSOND_SHOW_BUF];
        snprintf(why, size, "handler kind '%s' is not supported by this version",
                 jsond_config_show(s, sizeof s, v, n));
        return NULL;
    }
    jsond_handler *h = calloc(1, sizeof *h);
    if (!h)
        return NULL; /* `why` empty: out of memory */
    if (kind->resolve(h, cfg, route, v + n + 1, why, size) < 0) {
        free(h);
        return NULL;
    }
    /* A sync handler runs on its route's pool; a dual one there too when
     * the route names a pool, else its async half on the loop. The config
     * checked that the pool is defined, and `default` always is. */
    h->pool = JSOND_ON_LOOP;
    if (h->color == JSOND_COLOR_SYNC || (h->color == JSOND_COLOR_DUAL && route->pool)) {
        const cfg_pool *p = jsond_config_pool(cfg, route->pool ? route->pool : JSOND_POOL_DEFAULT);
        h->pool = p ? (size_t)(p - cfg->pools) : 0;
    }
    h->timeout_ms = jsond_route_timeout(cfg, route);
    return h;
}

const char *jsond_color_name(jsond_color color)
{
    static const char *const names[] = {
        [JSOND_COLOR_SYNC] = "sync", [JSOND_COLOR_ASYNC] = "async", [JSOND_COLOR_DUAL] = "dual"};
    return (unsigned)color < sizeof names / sizeof names[0] ? names[color] : "?";
}

static void release(struct jsond_handler *h)
{
    if (h->data_free)
        h->data_free(h->data);
    free(h);
}

static const jsond_config_resolver registry = {resolve, release};

const jsond_config_resolver *jsond_handler_resolver(void)
{
    return &registry;
}

const jsond_handler *jsond_handler_of(const cfg_route *route)
{
    return route->impl;
}

/* ---- the public loaders ---------------------------------------------------
 * They live here, not in config.c: a loaded config is one whose handlers
 * the registry resolved, and config.c must not depend on the registry. */

jsond_config *jsond_config_load(const char *path, jsond_errors *errs)
{
    return jsond_config_read(path, &registry, errs);
}

jsond_config *jsond_config_parse(const char *name, const char *text, size_t len, jsond_errors *errs)
{
    return jsond_config_read_text(name, text, len, &registry, errs);
}

jsond_config *jsond_config_default(void)
{
    const char *text = jsond_config_default_text();
    return jsond_config_parse("(built-in)", text, strlen(text), NULL);
}
