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
 *   builtin:test_block       async: blocks the loop, the bug the loop's
 *                            watch exists to catch. Args {"ms": N, "how":
 *                            "spin" (busy-waits on the clock, no system
 *                            call) | "sleep" (nanosleep)}; replies
 *                            {"blocked_ms": N}.
 *
 *   builtin:test_tree        async: a large reply document from small args,
 *                            {"n": N, "len": L}: an array of N strings of L
 *                            'x's each (N * L at most 256 MB).
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wrong on purpose: blocks the loop thread for the whole time. A sleep cut
 * short by a signal (the watchdog's, for the stack) goes on sleeping. Not
 * static: the watchdog's stack names it (the test daemon is linked with
 * -rdynamic, which exports only external functions). */
void jsond_test_block(jsond_req *req, json_t *args);

void jsond_test_block(jsond_req *req, json_t *args)
{
    json_int_t ms = json_integer_value(json_object_get(args, "ms"));
    const char *how = json_string_value(json_object_get(args, "how"));
    if (ms < 0 || ms > 60000 || !how || (strcmp(how, "spin") && strcmp(how, "sleep"))) {
        jsond_reply_error(req, JSOND_BAD_REQUEST,
                          "test_block takes \"ms\" (0..60000) and \"how\": \"spin\" or \"sleep\"");
        return;
    }
    uint64_t end = now_ns() + (uint64_t)ms * 1000000u;
    if (how[1] == 'p') {
        while (now_ns() < end)
            ;
    } else {
        struct timespec left = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
        while (nanosleep(&left, &left) < 0 && errno == EINTR)
            ;
    }
    jsond_reply(req, json_pack("{s:I}", "blocked_ms", ms));
}

static void tree_run(jsond_req *req, json_t *args)
{
    json_int_t n = json_integer_value(json_object_get(args, "n"));
    json_int_t len = json_integer_value(json_object_get(args, "len"));
    if (n < 0 || len < 0 || (len && n > ((json_int_t)256 << 20) / len)) {
        jsond_reply_error(req, JSOND_BAD_REQUEST, "test_tree takes \"n\" and \"len\" >= 0");
        return;
    }
    char *text = malloc((size_t)len + 1);
    json_t *tree = json_array();
    if (!text) {
        json_decref(tree);
        tree = NULL;
    } else {
        memset(text, 'x', (size_t)len);
        text[len] = '\0';
    }
    for (json_int_t i = 0; tree && i < n; i++) {
        if (json_array_append_new(tree, json_stringn_nocheck(text, (size_t)len)) < 0) {
            json_decref(tree);
            tree = NULL;
        }
    }
    free(text);
    jsond_reply(req, tree); /* NULL: out of memory */
}

static const jsond_builtin handlers[] = {
    {"test_call_sync", JSOND_COLOR_SYNC, call_sync, NULL, NULL},
    {"test_call_async", JSOND_COLOR_ASYNC, NULL, call_async, NULL},
    {"test_call_dual", JSOND_COLOR_DUAL, call_sync, call_async, NULL},
    {"test_block", JSOND_COLOR_ASYNC, NULL, jsond_test_block, NULL},
    {"test_tree", JSOND_COLOR_ASYNC, NULL, tree_run, NULL},
};

void jsond_test_handlers_add(void);

void jsond_test_handlers_add(void)
{
    jsond_builtin_add_tests(handlers, sizeof handlers / sizeof handlers[0]);
}
