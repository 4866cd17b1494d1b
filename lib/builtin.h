/* builtin.h: the handlers compiled into jsond (handler = builtin:NAME).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_BUILTIN_H
#define JSOND_BUILTIN_H

#include "handler.h"

typedef struct jsond_builtin jsond_builtin;

/* The built-in handler called NAME (without "builtin:"), or NULL. */
const jsond_builtin *jsond_builtin_find(const char *name);

/* Fills in its colour and functions (not where it runs). */
void jsond_builtin_impl(const jsond_builtin *b, jsond_handler *h);

#endif /* JSOND_BUILTIN_H */
