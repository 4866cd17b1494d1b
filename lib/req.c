/* req.c: a request's life from dispatch to reply.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <stdio.h>
#include <stdlib.h>

#include "req.h"

static const char *const code_names[] = {
    [JSOND_BAD_REQUEST] = "bad_request", [JSOND_NOT_FOUND] = "not_found",
    [JSOND_TOO_LARGE] = "too_large",     [JSOND_BUSY] = "busy",
    [JSOND_TIMEOUT] = "timeout",         [JSOND_HANDLER_FAILED] = "handler_failed",
    [JSOND_WRONG_COLOR] = "wrong_color", [JSOND_SHUTTING_DOWN] = "shutting_down",
    [JSOND_INTERNAL] = "internal",
};

const char *jsond_code_name(jsond_code code)
{
    if ((unsigned)code < sizeof code_names / sizeof code_names[0])
        return code_names[code];
    return "internal";
}

jsond_req *jsond_req_new(jsond_config *cfg, const cfg_route *route, jsond_async_fn fn, json_t *args,
                         const jsond_req_env *env, jsond_req_done_fn done, void *arg)
{
    jsond_req *req = calloc(1, sizeof *req);
    if (!req) {
        json_decref(args);
        return NULL;
    }
    req->cfg = jsond_config_ref(cfg);
    req->route = route;
    req->fn = fn;
    req->args = args;
    req->env = *env;
    req->done = done;
    req->done_arg = arg;
    return req;
}

void jsond_req_free(jsond_req *req)
{
    if (!req)
        return;
    if (req->ops)
        req->ops->stop(req->self);
    json_decref(req->reply);
    json_decref(req->args);
    jsond_config_unref(req->cfg);
    free(req);
}

void jsond_req_run(jsond_req *req)
{
    req->fn(req, req->args);
}

void jsond_req_on_cancel(jsond_req *req, jsond_req_cancel_fn fn, void *arg)
{
    req->cancel = fn;
    req->cancel_arg = arg;
}

void jsond_req_cancel(jsond_req *req)
{
    if (req->replied) {
        jsond_req_free(req);
        return;
    }
    req->done = NULL;
    if (req->cancel)
        req->cancel(req, req->cancel_arg); /* replies, which frees req */
}

/* Hands the reply over, or drops it if nobody waits any more. Handlers
 * reply exactly once: the receiver may free `req` at once, so a second
 * reply could not even be detected. */
static void complete(jsond_req *req)
{
    req->replied = 1;
    if (req->done)
        req->done(req, req->done_arg);
    else
        jsond_req_free(req);
}

void jsond_reply(jsond_req *req, json_t *reply)
{
    req->reply = reply; /* NULL (out of memory) becomes an internal error */
    complete(req);
}

void jsond_reply_error(jsond_req *req, jsond_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req->message, sizeof req->message, fmt, ap);
    va_end(ap);
    req->failed = 1;
    req->code = code;
    complete(req);
}

void jsond_reply_producer(jsond_req *req, const jsond_producer_ops *ops, void *self)
{
    req->ops = ops;
    req->self = self;
    complete(req);
}

const char *jsond_req_route(const jsond_req *req)
{
    return req->route->name;
}
