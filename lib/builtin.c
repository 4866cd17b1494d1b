/* builtin.c: the handlers compiled into jsond.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "output.h"
#include "req.h"

struct jsond_builtin {
    const char *name;
    jsond_async_fn fn;
};

/* ---- hello: the classic object ---------------------------------------- */

static void hello_run(jsond_req *req, json_t *args)
{
    (void)args;
    jsond_reply(req, json_pack("{s:s,s:s}", "msg", "Hello World", "data", "x"));
}

/* ---- big: the same object with `size` x's, produced piece by piece ----- */

#define BIG_DEFAULT_SIZE 10000000
#define BIG_DEFAULT_MAX  (1024LL * 1024 * 1024)
#define BIG_HEAD         "{\"msg\":\"Hello World\",\"data\":\""
#define BIG_TAIL         "\"}"

/* The x's are referenced, not copied, into the output: a 1 GB reply costs
 * chain headers, never a copy of its payload. */
static char xs[64 * 1024];

typedef struct big {
    json_int_t left;
    int started;
} big;

static int big_proceed(void *self, struct evbuffer *out, size_t want)
{
    big *b = self;
    if (!b->started) {
        b->started = 1;
        if (evbuffer_add_reference(out, BIG_HEAD, sizeof BIG_HEAD - 1, NULL, NULL) < 0)
            return -1;
    }
    while (b->left > 0 && want > 0) {
        size_t n = sizeof xs;
        if ((json_int_t)n > b->left)
            n = (size_t)b->left;
        if (evbuffer_add_reference(out, xs, n, NULL, NULL) < 0)
            return -1;
        b->left -= (json_int_t)n;
        want = n < want ? want - n : 0;
    }
    if (b->left > 0)
        return 0;
    return evbuffer_add_reference(out, BIG_TAIL, sizeof BIG_TAIL - 1, NULL, NULL) < 0 ? -1 : 1;
}

static void big_stop(void *self)
{
    free(self);
}

static const jsond_producer_ops big_ops = {big_proceed, big_stop};

/* Reads an optional non-negative integer arg; -1 with an error reply sent. */
static int int_arg(jsond_req *req, json_t *args, const char *key, json_int_t dflt, json_int_t *out)
{
    json_t *v = json_object_get(args, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        jsond_reply_error(req, JSOND_BAD_REQUEST, "'%s' must be a non-negative integer", key);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

static void big_run(jsond_req *req, json_t *args)
{
    json_int_t size, max;
    if (int_arg(req, args, "size", BIG_DEFAULT_SIZE, &size) < 0 ||
        int_arg(req, args, "max_size", BIG_DEFAULT_MAX, &max) < 0)
        return;
    if (size > max) {
        jsond_reply_error(req, JSOND_BAD_REQUEST, "size %lld exceeds max_size %lld",
                          (long long)size, (long long)max);
        return;
    }
    big *b = calloc(1, sizeof *b);
    if (!b) {
        jsond_reply_error(req, JSOND_INTERNAL, "out of memory");
        return;
    }
    if (!xs[0])
        memset(xs, 'x', sizeof xs); /* loop thread only: no race */
    b->left = size;
    jsond_reply_producer(req, &big_ops, b);
}

/* ---- the table ------------------------------------------------------- */

static const jsond_builtin builtins[] = {
    {"hello", hello_run},
    {"big", big_run},
};

const jsond_builtin *jsond_builtin_find(const char *name)
{
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(builtins[i].name, name) == 0)
            return &builtins[i];
    return NULL;
}

jsond_async_fn jsond_builtin_fn(const jsond_builtin *b)
{
    return b->fn;
}
