/* builtin.h: the handlers compiled into jsond (handler = builtin:NAME).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_BUILTIN_H
#define JSOND_BUILTIN_H

#include "handler.h"

/* A handler compiled in: its name (without "builtin:"), colour and
 * functions. */
typedef struct jsond_builtin {
    const char *name;
    jsond_color color;
    jsond_sync_fn sync_fn;
    jsond_async_fn async_fn;
    const char *fixed; /* its constant reply, compact, and '\n'; or NULL (see jsond_handler) */
} jsond_builtin;

/* The built-in handler called NAME (without "builtin:"), or NULL. */
const jsond_builtin *jsond_builtin_find(const char *name);

/* More builtins, found after jsond's own: the test daemon's handlers
 * (tests/testd.c), which jsond itself never has. Once, before any config
 * is read. */
void jsond_builtin_add_tests(const jsond_builtin *table, size_t n);

/* Fills in its colour and functions (not where it runs). */
void jsond_builtin_impl(const jsond_builtin *b, jsond_handler *h);

#endif /* JSOND_BUILTIN_H */
