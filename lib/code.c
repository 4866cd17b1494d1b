/* code.c: the wire protocol's error codes by name.
 *
 * A leaf: proto (error envelopes) and stats (errors per code) both name
 * codes, and neither should depend on the request module to do it.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include "jsond.h"

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
