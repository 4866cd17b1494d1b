/* exec.h: the exec:COMMAND handler kind, a legacy program as a handler.
 *
 * The program runs once per request on its route's pool (it is SYNC): the
 * request's args go to its stdin as one JSON text and a newline, its stdout
 * is the reply. jsond.conf(5) documents the quoting of COMMAND, how its
 * program is found, and the failures.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_EXEC_H
#define JSOND_EXEC_H

#include <stddef.h>

#include "handler.h"

/* Splits `cmd` into a NULL-terminated argv (one allocation, freed with
 * free()): blanks separate words; '...' is literal; "..." takes \" and \\
 * as escapes; outside quotes a backslash escapes the next character. An
 * unterminated quote, a trailing backslash or no word at all: NULL, with a
 * one-line reason in `why` (empty: out of memory). Any thread. */
char **jsond_exec_split(const char *cmd, char *why, size_t size);

/* The exec:ARG resolver (handler.c's kinds table): splits ARG, finds its
 * program (a relative path against the directory of the route's config
 * file, a bare name in PATH) and checks it is an executable file, now, so
 * a config naming a missing program fails at load. The thread loading the
 * config. */
int jsond_exec_resolve(jsond_handler *h, const jsond_config *cfg, const cfg_route *route,
                       const char *arg, char *why, size_t size);

#endif /* JSOND_EXEC_H */
