/* docs.h: what the encoder's and the decoder's benchmarks share: the clock
 * and the big documents they measure, so that their figures are of the
 * same texts.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_BENCH_DOCS_H
#define JSOND_BENCH_DOCS_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* {"msg":"Hello World","data":"<10,000,000 x's>"} */
static inline json_t *string10m(void)
{
    size_t n = 10 * 1000 * 1000;
    char *x = malloc(n);
    if (!x)
        return NULL;
    memset(x, 'x', n);
    json_t *doc = json_pack("{s:s,s:s%}", "msg", "Hello World", "data", x, n);
    free(x);
    return doc;
}

/* 200,000 five-field records. */
static inline json_t *records(int n)
{
    json_t *doc = json_array();
    for (int i = 0; doc && i < n; i++) {
        char name[32], email[64];
        snprintf(name, sizeof name, "user-%d", i);
        snprintf(email, sizeof email, "user-%d@example.com", i);
        if (json_array_append_new(doc,
                                  json_pack("{s:i,s:s,s:s,s:f,s:b}", "id", i, "name", name, "email",
                                            email, "score", 1.25, "active", i % 3 != 0)) < 0) {
            json_decref(doc);
            return NULL;
        }
    }
    return doc;
}

#endif /* JSOND_BENCH_DOCS_H */
