/* builtin.h: the handlers compiled into jsond (handler = builtin:NAME).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_BUILTIN_H
#define JSOND_BUILTIN_H

#include "jsond.h"

typedef struct jsond_builtin jsond_builtin;

/* The built-in handler called NAME (without "builtin:"), or NULL. */
const jsond_builtin *jsond_builtin_find(const char *name);

/* Its implementation (all builtins of this version are async). */
jsond_async_fn jsond_builtin_fn(const jsond_builtin *b);

#endif /* JSOND_BUILTIN_H */
