/* router.h: from a route name and args to a request ready to run.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_ROUTER_H
#define JSOND_ROUTER_H

#include "req.h"

/* Checks that `route` of `cfg` (as the caller looked it up, NULL when no
 * route has the name) may be called on listener `lst` (NULL: no listener
 * restriction, for on_connect) and builds its args: the route's
 * `args` under the caller's `args` (stolen; NULL means {}), its
 * `fixed_args` over them, so a client can never change a fixed arg. Args
 * given as an array (JSON-RPC params by position) are passed as they are.
 * Returns the request, or NULL with *code set (JSOND_NOT_FOUND,
 * JSOND_INTERNAL). */
jsond_req *jsond_router_route(jsond_config *cfg, const cfg_listen *lst, const cfg_route *route,
                              json_t *args, const jsond_req_env *env, jsond_req_done_fn done,
                              void *arg, jsond_code *code);

/* The args a request for `route` runs with, merged as above from the
 * caller's (stolen); NULL when out of memory. Any thread. */
json_t *jsond_router_args(const cfg_route *route, json_t *args);

#endif /* JSOND_ROUTER_H */
