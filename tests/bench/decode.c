/* decode.c: the decoder's throughput against jansson's json_loadb.
 *
 * For the encoder's big documents (docs.h), dumped compact, the best of
 * several runs of json_loadb(0) and of jsond_decode(0). One line per
 * document, for scripts:
 *   decode doc=NAME bytes=N jansson_mbps=X jsond_mbps=Y ratio=R
 * Then a small JSON-RPC request, a million times: json_loadb, jsond_decode
 * and jsond_decode_fields picking jsonrpc, method, params and id:
 *   decode doc=request bytes=N jansson_ns=X jsond_ns=Y fields_ns=Z ratio=R
 * Each decoder's document is checked equal to json_loadb's once; a
 * difference exits 1. `decode [runs]`: 5 runs unless given.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "docs.h"

#define REQUEST                                                                                    \
    "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"a\":1,\"b\":\"xy\"},\"id\":1}"
#define ITERS 1000000

static int bench(const char *name, json_t *doc, int runs)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    if (!text)
        return -1;
    size_t len = strlen(text);
    json_t *want = json_loadb(text, len, 0, NULL), *got = jsond_decode(text, len, 0);
    int same = want && got && json_equal(want, got);
    json_decref(want);
    json_decref(got);
    if (!same) {
        fprintf(stderr, "decode: %s: the decoder's document differs from json_loadb's\n", name);
        free(text);
        return -1;
    }
    double jansson = 1e9, jsond = 1e9;
    for (int i = 0; i < runs; i++) {
        double t0 = now();
        json_decref(json_loadb(text, len, 0, NULL));
        double t1 = now();
        json_decref(jsond_decode(text, len, 0));
        double t2 = now();
        jansson = t1 - t0 < jansson ? t1 - t0 : jansson;
        jsond = t2 - t1 < jsond ? t2 - t1 : jsond;
    }
    printf("decode doc=%s bytes=%zu jansson_mbps=%.0f jsond_mbps=%.0f ratio=%.1f\n", name, len,
           (double)len / jansson / 1e6, (double)len / jsond / 1e6, jansson / jsond);
    fflush(stdout);
    free(text);
    return 0;
}

/* The four envelope members, as the request path would pick them. */
static int pick(jsond_field *f)
{
    static const char *const names[] = {"jsonrpc", "method", "params", "id"};
    for (int i = 0; i < 4; i++) {
        f[i].name = names[i];
        f[i].name_len = strlen(names[i]);
    }
    return jsond_decode_fields(REQUEST, sizeof REQUEST - 1, f, 4);
}

static int bench_request(int runs)
{
    const size_t len = sizeof REQUEST - 1;
    jsond_field f[4];
    json_t *want = json_loadb(REQUEST, len, 0, NULL), *got = jsond_decode(REQUEST, len, 0);
    int same = json_equal(want, got) && pick(f) == 1;
    for (int i = 0; i < 4; i++) {
        same = same && json_equal(f[i].value, json_object_get(want, f[i].name));
        json_decref(f[i].value);
    }
    json_decref(want);
    json_decref(got);
    if (!same) {
        fprintf(stderr, "decode: request: the decoders' values differ from json_loadb's\n");
        return -1;
    }
    double jansson = 1e9, jsond = 1e9, fields = 1e9;
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        for (int i = 0; i < ITERS; i++)
            json_decref(json_loadb(REQUEST, len, 0, NULL));
        double t1 = now();
        for (int i = 0; i < ITERS; i++)
            json_decref(jsond_decode(REQUEST, len, 0));
        double t2 = now();
        for (int i = 0; i < ITERS; i++) {
            if (pick(f) != 1)
                return -1;
            for (int k = 0; k < 4; k++)
                json_decref(f[k].value);
        }
        double t3 = now();
        jansson = t1 - t0 < jansson ? t1 - t0 : jansson;
        jsond = t2 - t1 < jsond ? t2 - t1 : jsond;
        fields = t3 - t2 < fields ? t3 - t2 : fields;
    }
    printf("decode doc=request bytes=%zu jansson_ns=%.0f jsond_ns=%.0f fields_ns=%.0f "
           "ratio=%.1f\n",
           len, jansson / ITERS * 1e9, jsond / ITERS * 1e9, fields / ITERS * 1e9, jansson / jsond);
    return 0;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    runs = runs < 1 ? 1 : runs;
    json_t *docs[2] = {string10m(), records(200000)};
    static const char *const names[2] = {"string10m", "records200k"};
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (!docs[i] || bench(names[i], docs[i], runs) < 0)
            rc = 1;
        json_decref(docs[i]);
    }
    if (bench_request(runs) < 0)
        rc = 1;
    return rc;
}
