/* context.c: which colour of code the calling thread may run.
 *
 * The only mutable global state in the library: one thread-local word. It is
 * what lets the write path refuse a call from off the loop, and lets a plain
 * function know whether it may block.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include "jsond.h"

/* initial-exec, as watch.c's: read on every reply, and libjsond is loaded
 * with the program, so no __tls_get_addr() call per read. */
static _Thread_local jsond_ctx thread_ctx __attribute__((tls_model("initial-exec"))) =
    JSOND_CTX_OTHER;

jsond_ctx jsond_context(void)
{
    return thread_ctx;
}

void jsond_context_set(jsond_ctx ctx)
{
    thread_ctx = ctx;
}
