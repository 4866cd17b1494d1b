/* router.c: route lookup and argument merging.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include "handler.h"
#include "router.h"

json_t *jsond_router_args(const cfg_route *route, json_t *args)
{
    if (json_is_array(args))
        return args;
    /* Nothing to merge: the client's object is the args, uncopied. */
    if (!route->args && !route->fixed_args && (!args || json_is_object(args)))
        return args ? args : json_object();
    json_t *merged = route->args ? json_deep_copy(route->args) : json_object();
    if (!merged)
        goto fail;
    if (args && json_object_update(merged, args) < 0)
        goto fail;
    if (route->fixed_args && json_object_update(merged, route->fixed_args) < 0)
        goto fail;
    json_decref(args);
    return merged;
fail:
    json_decref(merged);
    json_decref(args);
    return NULL;
}

jsond_req *jsond_router_route(jsond_config *cfg, const cfg_listen *lst, const cfg_route *route,
                              json_t *args, const jsond_req_env *env, jsond_req_done_fn done,
                              void *arg, jsond_code *code)
{
    if (!route || (lst && !jsond_listen_allows(lst, route->name))) {
        json_decref(args);
        *code = JSOND_NOT_FOUND;
        return NULL;
    }
    /* Resolved when the config was loaded. A config read without the
     * registry has none: a bug, reported as `internal` rather than trusted. */
    const jsond_handler *h = jsond_handler_of(route);
    json_t *merged = jsond_router_args(route, args);
    jsond_req *req = h && merged ? jsond_req_new(cfg, route, h, merged, env, done, arg) : NULL;
    if (!req) {
        if (!h)
            json_decref(merged);
        *code = JSOND_INTERNAL;
    }
    return req;
}
