/* errors.c: a list of located problems, returned to the caller to print.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsond.h"

struct jsond_errors {
    jsond_error *v;
    size_t n, cap;
};

jsond_errors *jsond_errors_new(void)
{
    return calloc(1, sizeof(jsond_errors));
}

void jsond_errors_free(jsond_errors *errs)
{
    if (!errs)
        return;
    free(errs->v);
    free(errs);
}

size_t jsond_errors_count(const jsond_errors *errs)
{
    return errs ? errs->n : 0;
}

const jsond_error *jsond_errors_get(const jsond_errors *errs, size_t i)
{
    return errs && i < errs->n ? &errs->v[i] : NULL;
}

int jsond_errors_add(jsond_errors *errs, const char *file, int line, const char *fmt, ...)
{
    if (!errs)
        return 0;
    if (errs->n == errs->cap) {
        size_t cap = errs->cap ? errs->cap * 2 : 8;
        jsond_error *v = realloc(errs->v, cap * sizeof *v);
        if (!v)
            return -1;
        errs->v = v;
        errs->cap = cap;
    }
    jsond_error *e = &errs->v[errs->n++];
    snprintf(e->file, sizeof e->file, "%s", file ? file : "");
    e->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof e->text, fmt, ap);
    va_end(ap);
    return 0;
}
