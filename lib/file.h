/* file.h: handler = file:PATH, a JSON file served as it was at load.
 *
 * The file is read, parsed and validated when its config is loaded (at
 * start and on every reload): an invalid one fails that load, and a reload
 * keeps the config in force. Its compact serialization is kept with the
 * route and handed to the output by reference, never serialized again.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_FILE_H
#define JSOND_FILE_H

#include "handler.h"

/* The largest file a file: route serves. Its bytes are held in memory for
 * as long as its config is. */
#define JSOND_FILE_MAX (16L * 1024 * 1024)

/* The registry's resolver for file:PATH (handler.c's kinds[]): a relative
 * PATH is relative to the directory of the config file that defines
 * `route`. Fills in `h`, or returns -1 with a one-line reason in `why`. */
int jsond_file_resolve(jsond_handler *h, const jsond_config *cfg, const cfg_route *route,
                       const char *arg, char *why, size_t size);

#endif /* JSOND_FILE_H */
