/* encode.c: the encoder's throughput against jansson's json_dumps.
 *
 * For each document, the best of several runs of json_dumps(JSON_COMPACT)
 * and of the encoder writing into an evbuffer that is drained whenever it
 * holds its 1 MB limit, as a connection's output would be. One line per
 * document, for scripts:
 *   encode doc=NAME bytes=N jansson_mbps=X jsond_mbps=Y ratio=R
 * The encoder's bytes are checked against json_dumps's once; a difference
 * exits 1. `encode [runs]`: 5 runs unless given.
 *
 * Then the small reply's path (hello: {"msg":"Hello World","data":"x"}, 33
 * bytes), a million times: jsond_dump (dump.h, now the encoder) against
 * what dump.c did before, json_dump_callback into the same stack buffer.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <event2/buffer.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docs.h"
#include "dump.h"
#include "encode.h"

#define LIMIT (1u << 20)

/* Reals without a short binary form (i / 10.0): the encoder's snprintf path,
 * for comparison. */
static json_t *reals(int n)
{
    json_t *doc = json_array();
    for (int i = 0; doc && i < n; i++)
        json_array_append_new(doc, json_real(i / 10.0));
    return doc;
}

/* The encoder's text, drained as it goes; into `copy` if given. -1 failed. */
static int encode_drained(json_t *doc, struct evbuffer *out, char *copy)
{
    jsond_encoder *e = jsond_encoder_new(doc);
    size_t at = 0;
    int r;
    if (!e)
        return -1;
    do {
        r = jsond_encoder_run(e, out, LIMIT);
        size_t n = evbuffer_get_length(out);
        if (copy)
            evbuffer_copyout(out, copy + at, n);
        at += n;
        evbuffer_drain(out, n); /* the socket took it */
    } while (r == 0);
    jsond_encoder_free(e);
    return r < 0 ? -1 : 0;
}

static int bench(const char *name, json_t *doc, int runs)
{
    char *want = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!want)
        return -1;
    size_t len = strlen(want);
    char *got = malloc(len + 1);
    struct evbuffer *out = evbuffer_new();
    if (!got || !out || encode_drained(doc, out, got) < 0 || memcmp(got, want, len) != 0) {
        fprintf(stderr, "encode: %s: the encoder's bytes differ from json_dumps's\n", name);
        return -1;
    }
    free(got);
    free(want);

    double jansson = 1e9, jsond = 1e9;
    for (int i = 0; i < runs; i++) {
        double t0 = now();
        char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
        double t1 = now();
        free(text);
        double t2 = now();
        if (encode_drained(doc, out, NULL) < 0)
            return -1;
        double t3 = now();
        jansson = t1 - t0 < jansson ? t1 - t0 : jansson;
        jsond = t3 - t2 < jsond ? t3 - t2 : jsond;
    }
    evbuffer_free(out);
    printf("encode doc=%s bytes=%zu jansson_mbps=%.0f jsond_mbps=%.0f ratio=%.1f\n", name, len,
           (double)len / jansson / 1e6, (double)len / jsond / 1e6, jansson / jsond);
    fflush(stdout);
    return 0;
}

static int old_dump_cb(const char *p, size_t len, void *data)
{
    return jsond_dump_bytes(data, p, len);
}

static int bench_small(json_t *doc, int runs)
{
    const int iters = 1000000;
    size_t len = 0;
    double old = 1e9, new = 1e9;
    for (int r = 0; r < runs; r++) {
        jsond_dumper d = {.n = 0, .spill = NULL};
        double t0 = now();
        for (int i = 0; i < iters; i++) {
            d.n = 0;
            if (json_dump_callback(doc, old_dump_cb, &d, JSON_COMPACT | JSON_ENCODE_ANY) < 0)
                return -1;
        }
        double t1 = now();
        len = d.n;
        for (int i = 0; i < iters; i++) {
            d.n = 0;
            if (jsond_dump(&d, doc) < 0)
                return -1;
        }
        double t2 = now();
        if (d.n != len || d.spill)
            return -1;
        old = t1 - t0 < old ? t1 - t0 : old;
        new = t2 - t1 < new ? t2 - t1 : new;
    }
    printf("encode doc=hello bytes=%zu jansson_mbps=%.0f jsond_mbps=%.0f ratio=%.1f "
           "jansson_ns=%.0f jsond_ns=%.0f\n",
           len, (double)len * iters / old / 1e6, (double)len * iters / new / 1e6, old / new,
           old / iters * 1e9, new / iters * 1e9);
    return 0;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    json_t *docs[3] = {string10m(), records(200000), reals(100000)};
    static const char *const names[3] = {"string10m", "records200k", "reals100k"};
    int rc = 0;
    for (int i = 0; i < 3; i++) {
        if (!docs[i] || bench(names[i], docs[i], runs < 1 ? 1 : runs) < 0)
            rc = 1;
        json_decref(docs[i]);
    }
    json_t *hello = json_pack("{s:s,s:s}", "msg", "Hello World", "data", "x");
    if (!hello || bench_small(hello, runs < 1 ? 1 : runs) < 0)
        rc = 1;
    json_decref(hello);
    return rc;
}
