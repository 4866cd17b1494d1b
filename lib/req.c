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
                         jsond_req_done_fn done, void *arg)
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

void jsond_req_cancel(jsond_req *req)
{
    if (req->replied)
        jsond_req_free(req);
    else
        req->done = NULL;
}

/* Hands the reply over, or drops it if nobody waits any more. */
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
    if (req->replied) {
        jsond_log(JSOND_LOG_ERROR, "route '%s' replied twice; the second reply is dropped",
                  req->route->name);
        json_decref(reply);
        return;
    }
    req->reply = reply; /* NULL (out of memory) becomes an internal error */
    complete(req);
}

void jsond_reply_error(jsond_req *req, jsond_code code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jsond_reply(req,
                json_pack("{s:{s:s,s:s}}", "error", "code", jsond_code_name(code), "message", msg));
}

void jsond_reply_producer(jsond_req *req, const jsond_producer_ops *ops, void *self)
{
    if (req->replied) {
        ops->stop(self);
        return;
    }
    req->ops = ops;
    req->self = self;
    complete(req);
}

const char *jsond_req_route(const jsond_req *req)
{
    return req->route->name;
}
