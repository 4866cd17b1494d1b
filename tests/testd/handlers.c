/* handlers.c: the test daemon's handlers, compiled only into tests/testd/jsond
 * (jsond's own daemon, with these added as builtins): code that exercises
 * the bridge in ways no production handler should, such as calling other
 * routes by names the client sends.
 *
 *   builtin:test_call_sync   sync: calls a route with the blocking form
 *   builtin:test_call_async  async: calls a route with the callback form
 *   builtin:test_call_dual   dual: the two above under one name
 *
 * Each takes {"route": R, "args": A} and replies {"reply": R's reply}, or,
 * without "route", is a target that replies {"ran": "sync" | "async",
 * "route": its route, "context": "loop" | "worker" | "other"}. "form":
 * "callback" (sync) or "blocking" (async) makes the wrong-form call, which
 * jsond refuses. A sync route that calls itself through nested args, on a
 * pool of one thread, is the self-calling handler of issue 11.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <stdlib.h>
#include <string.h>

#include "builtin.h"

static const char *context_name(void)
{
    switch (jsond_context()) {
    case JSOND_CTX_LOOP:
        return "loop";
    case JSOND_CTX_WORKER:
        return "worker";
    default:
        return "other";
    }
}

static json_t *ran(jsond_req *req, const char *half)
{
    return json_pack("{s:s,s:s,s:s}", "ran", half, "route", jsond_req_route(req), "context",
                     context_name());
}

static int form_is(json_t *args, const char *form)
{
    const char *f = json_string_value(json_object_get(args, "form"));
    return f && strcmp(f, form) == 0;
}

static json_t *wrapped(json_t *reply)
{
    return json_pack("{s:o}", "reply", reply); /* NULL (no memory) says so */
}

static json_t *call_sync(jsond_req *req, json_t *args)
{
    const char *route = json_string_value(json_object_get(args, "route"));
    json_t *a = json_incref(json_object_get(args, "args"));
    if (!route) {
        json_decref(a);
        return ran(req, "sync");
    }
    if (form_is(args, "callback")) /* off the loop: refused, the callback never runs */
        return json_pack("{s:i}", "call_async", jsond_call_async(req, route, a, NULL, NULL));
    return wrapped(jsond_call(req, route, a));
}

/* The log says what each callback heard: a cancelled caller's reply goes
 * nowhere, and tests read it there. */
static void call_done(jsond_req *req, json_t *reply, void *arg)
{
    (void)arg;
    char *text = json_dumps(reply, JSON_COMPACT);
    jsond_log(JSOND_LOG_DEBUG, "test: route %s heard %s", jsond_req_route(req),
              text ? text : "(nothing)");
    free(text);
    jsond_reply(req, wrapped(reply));
}

static void call_async(jsond_req *req, json_t *args)
{
    const char *route = json_string_value(json_object_get(args, "route"));
    json_t *a = json_incref(json_object_get(args, "args"));
    if (!route) {
        json_decref(a);
        jsond_reply(req, ran(req, "async"));
    } else if (form_is(args, "blocking")) { /* on the loop: refused, never waits */
        jsond_reply(req, wrapped(jsond_call(req, route, a)));
    } else {
        jsond_call_async(req, route, a, call_done, NULL);
    }
}

static const jsond_builtin handlers[] = {
    {"test_call_sync", JSOND_COLOR_SYNC, call_sync, NULL},
    {"test_call_async", JSOND_COLOR_ASYNC, NULL, call_async},
    {"test_call_dual", JSOND_COLOR_DUAL, call_sync, call_async},
};

void jsond_test_handlers_add(void);

void jsond_test_handlers_add(void)
{
    jsond_builtin_add_tests(handlers, sizeof handlers / sizeof handlers[0]);
}
