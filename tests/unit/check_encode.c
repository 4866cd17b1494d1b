/* check_encode.c: the encoder (encode.h) writes json_dumps's bytes exactly,
 * in one go or stopped and resumed at any limit, and stays within its bound.
 *
 * The property test builds thousands of random documents from a seeded
 * PRNG (deep nesting, unicode and control characters in keys and strings,
 * long safe runs across 8- and 16-byte boundaries, extreme integers, reals
 * of every kind, empty containers, scalars at the top) and compares every
 * byte with json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY); a failure names
 * the document's seed and the first differing offset.
 *
 * Environment: JSOND_ENCODE_SEED sets the first seed (default fixed, so a
 * run is repeatable), JSOND_ENCODE_DOCS the number of documents. Under
 * valgrind (found by its preload library in LD_PRELOAD, which check-valgrind
 * brings) the default count and the big string shrink, to stay quick.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <check.h>
#include <event2/buffer.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "encode.h"
#include "prop.h"

#define DOCS          5000
#define DOCS_VALGRIND 300
#define BIG_STRING    (64u << 20)
#define BIG_VALGRIND  (8u << 20)
#define BIG_LIMIT     (1u << 20)

/* Moves all of `b` to the end of `t`. */
static void drain_into(text *t, struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    if (!n)
        return;
    if (t->n + n > t->cap) {
        t->cap = (t->n + n) * 2;
        t->p = realloc(t->p, t->cap);
        if (!t->p)
            ck_abort_msg("out of memory");
    }
    if (evbuffer_remove(b, t->p + t->n, n) != (int)n)
        ck_abort_msg("evbuffer_remove failed");
    t->n += n;
}

/* Runs an encoder to the end with `limit`, draining after every call and
 * checking the bound; the text in `t`. 1 done or -1 failed. */
static int run_drained(json_t *doc, size_t limit, size_t prefill, text *t)
{
    struct evbuffer *b = evbuffer_new();
    jsond_encoder *e = jsond_encoder_new(doc);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(e);
    static const char junk[64] = {0};
    int r;
    for (;;) {
        /* Check's asserts cost a write each (in a forked test): this loop
         * runs a million times, so it tests first and asserts on failure. */
        if (evbuffer_add(b, junk, prefill) < 0)
            ck_abort_msg("out of memory");
        size_t before = evbuffer_get_length(b);
        r = jsond_encoder_run(e, b, limit);
        size_t after = evbuffer_get_length(b);
        if (r == 0 && (after <= before || after < limit))
            ck_abort_msg("returned 0 with %zu bytes, %zu before, limit %zu", after, before, limit);
        if (after > (limit > before ? limit : before) + JSOND_ENCODE_STEP)
            ck_abort_msg("%zu bytes, %zu before, limit %zu", after, before, limit);
        evbuffer_drain(b, prefill);
        drain_into(t, b);
        if (r != 0)
            break;
    }
    ck_assert_int_eq(jsond_encoder_run(e, b, limit), r); /* it stays done or failed */
    jsond_encoder_free(e);
    evbuffer_free(b);
    return r;
}

/* Every way to encode `doc` gives json_dumps's bytes, or fails where it
 * returns NULL. */
static void check_doc(json_t *doc, unsigned long long seed)
{
    char *want = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t wlen = want ? strlen(want) : 0;
    ck_assert_msg(want != NULL, "seed %llu: json_dumps failed on a generated document", seed);

    struct evbuffer *b = evbuffer_new();
    ck_assert_int_eq(jsond_encode(b, doc), 0);
    size_t n = evbuffer_get_length(b);
    same("jsond_encode", seed, want, wlen, (const char *)evbuffer_pullup(b, -1), n);
    evbuffer_free(b);

    /* The dumper's path: after a prefix, into a small buffer that spills. */
    char small[48];
    size_t len = 5;
    struct evbuffer *spill = NULL;
    memcpy(small, "head:", 5);
    ck_assert_int_eq(jsond_encode_buf(doc, small, sizeof small, &len, &spill, SIZE_MAX), 0);
    text t = {0};
    if (spill) {
        drain_into(&t, spill);
        evbuffer_free(spill);
    }
    put(&t, small, len);
    ck_assert(t.n >= 5 && memcmp(t.p, "head:", 5) == 0);
    same("jsond_encode_buf", seed, want, wlen, t.p + 5, t.n - 5);
    t.n = 0;

    static const size_t limits[] = {1, 7, 4096};
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
        ck_assert_int_eq(run_drained(doc, limits[i], i == 1 ? 3 : 0, &t), 1);
        char how[64];
        snprintf(how, sizeof how, "run, limit %zu", limits[i]);
        same(how, seed, want, wlen, t.p, t.n);
        t.n = 0;
    }
    free(t.p);
    free(want);
}

START_TEST(test_random_documents)
{
    unsigned long docs = env_or("JSOND_ENCODE_DOCS", under_valgrind() ? DOCS_VALGRIND : DOCS);
    unsigned long long seed0 = env_or("JSOND_ENCODE_SEED", 20261202);
    for (unsigned long i = 0; i < docs; i++) {
        unsigned long long seed = seed0 + i;
        rng r = {.s = seed, .nodes = 1 + (int)(seed % 7 == 0 ? 2000 : 200)};
        json_t *doc = gen(&r, 0, (int)below(&r, 21));
        ck_assert_ptr_nonnull(doc);
        check_doc(doc, seed);
        json_decref(doc);
    }
}
END_TEST

/* Scalars at the top (JSON_ENCODE_ANY) and the corner values one by one. */
START_TEST(test_scalars)
{
    rng r = {.s = 7};
    json_t *docs[] = {json_null(),
                      json_true(),
                      json_false(),
                      json_integer(0),
                      json_integer(INT64_MIN),
                      json_integer(INT64_MAX),
                      json_real(0.0),
                      json_real(-0.0),
                      json_real(1e22),
                      json_real(1.0),
                      json_real(1e-7),
                      json_real(123.456),
                      json_real(5e-324),
                      json_real(DBL_MAX),
                      json_string(""),
                      json_stringn("\0", 1),
                      json_string("\x1f\x7f/"),
                      json_object(),
                      json_array()};
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        ck_assert_ptr_nonnull(docs[i]);
        check_doc(docs[i], i);
        json_decref(docs[i]);
    }
    /* Every real kind, many times: they are the hard part. */
    for (int i = 0; i < 20000; i++) {
        json_t *v = json_real(gen_real(&r));
        check_doc(v, 1000000 + (unsigned long long)i);
        json_decref(v);
    }
}
END_TEST

/* ---- behaviour -------------------------------------------------------- */

/* Invalid UTF-8 fails as json_dumps fails, whichever path, whichever limit. */
START_TEST(test_invalid_utf8_fails)
{
    static const char *const bad[] = {
        "\x80",
        "ab\xbf",
        "\xc0\x80",
        "\xc1\xbf",
        "\xe0\x80\x80",
        "\xed\xa0\x80",
        "\xf0\x80\x80\x80",
        "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80",
        "\xff",
        "x\xc3",
        "\xe2\x82",
        "\xc3(",
        "0123456789abcdef\xfe",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *doc = json_pack("[s,o]", "ok", json_stringn_nocheck(bad[i], strlen(bad[i])));
        ck_assert_ptr_nonnull(doc);
        ck_assert_ptr_null(json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY));
        struct evbuffer *b = evbuffer_new();
        ck_assert_int_eq(jsond_encode(b, doc), -1);
        evbuffer_free(b);
        text t = {0};
        ck_assert_int_eq(run_drained(doc, 1, 0, &t), -1);
        free(t.p);
        json_decref(doc);
    }
    /* The edges that are valid pass. */
    json_t *ok = json_stringn_nocheck("\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80"
                                      "\xf4\x8f\xbf\xbf",
                                      20);
    check_doc(ok, 0);
    json_decref(ok);
}
END_TEST

/* jansson emits an unterminated key for an invalid UTF-8 key (it ignores
 * the error); the encoder refuses rather than send broken JSON. */
START_TEST(test_invalid_key_fails)
{
    json_t *doc = json_object();
    ck_assert_int_eq(json_object_setn_new_nocheck(doc, "a\xff", 2, json_integer(1)), 0);
    struct evbuffer *b = evbuffer_new();
    ck_assert_int_eq(jsond_encode(b, doc), -1);
    evbuffer_free(b);
    json_decref(doc);
}
END_TEST

/* There is no NaN or infinite real to encode: jansson refuses to make one. */
START_TEST(test_nan_cannot_exist)
{
    ck_assert_ptr_null(json_real(NAN));
    ck_assert_ptr_null(json_real(INFINITY));
    ck_assert_ptr_null(json_real(-INFINITY));
    json_t *r = json_real(1.0);
    ck_assert_int_eq(json_real_set(r, NAN), -1);
    check_doc(r, 0);
    json_decref(r);
    /* And a NULL document fails as json_dumps(NULL) does. */
    ck_assert_ptr_null(json_dumps(NULL, JSON_ENCODE_ANY));
    struct evbuffer *b = evbuffer_new();
    ck_assert_int_eq(jsond_encode(b, NULL), -1);
    jsond_encoder *e = jsond_encoder_new(NULL);
    ck_assert_int_eq(jsond_encoder_run(e, b, 100), -1);
    jsond_encoder_free(e);
    evbuffer_free(b);
}
END_TEST

START_TEST(test_cycle_fails)
{
    json_t *a = json_array(), *b = json_array();
    ck_assert_int_eq(json_array_append(b, a), 0);
    ck_assert_int_eq(json_array_append_new(a, json_object()), 0);
    ck_assert_int_eq(json_array_append(a, b), 0); /* a -> b -> a */
    ck_assert_ptr_null(json_dumps(a, JSON_COMPACT));
    struct evbuffer *buf = evbuffer_new();
    ck_assert_int_eq(jsond_encode(buf, a), -1);
    evbuffer_free(buf);
    json_array_clear(a);
    json_decref(a);
    json_decref(b);

    /* The same subtree twice is no cycle. */
    json_t *leaf = json_pack("{s:i}", "k", 1);
    json_t *dag = json_pack("[O,O,{s:O}]", leaf, leaf, "x", leaf);
    check_doc(dag, 0);
    json_decref(dag);
    json_decref(leaf);
}
END_TEST

/* Deeper than the frames kept inline. */
START_TEST(test_deep)
{
    json_t *doc = json_string("bottom");
    for (int i = 0; i < 1000; i++)
        doc = i % 2 ? json_pack("[o,i]", doc, i) : json_pack("{s:o}", "k", doc);
    check_doc(doc, 0);
    json_decref(doc);
}
END_TEST

/* A run that returned 0 left `out` at or past its limit, by at most
 * JSOND_ENCODE_STEP, appended something, and the next run resumes. */
START_TEST(test_limit_respected)
{
    json_t *doc = json_array();
    for (int i = 0; i < 20000; i++)
        json_array_append_new(doc, json_pack("{s:i,s:s,s:f}", "id", i, "s", "a\"b\ncé", "f", 0.5));
    char *want = json_dumps(doc, JSON_COMPACT);
    static const size_t limits[] = {1, 63, 64, 65, 1000, 65536, 1 << 20};
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
        text t = {0};
        ck_assert_int_eq(run_drained(doc, limits[i], 0, &t), 1);
        same("limit", limits[i], want, strlen(want), t.p, t.n);
        free(t.p);
    }
    /* Undrained: it stops as soon as the limit is reached. */
    struct evbuffer *b = evbuffer_new();
    jsond_encoder *e = jsond_encoder_new(doc);
    size_t limit = 10000;
    int r, calls = 0;
    while ((r = jsond_encoder_run(e, b, limit)) == 0) {
        size_t n = evbuffer_get_length(b);
        if (n < limit || n > limit + JSOND_ENCODE_STEP)
            ck_abort_msg("%zu bytes, limit %zu", n, limit);
        limit = n + 777;
        calls++;
    }
    ck_assert_int_eq(r, 1);
    ck_assert_int_gt(calls, 100);
    ck_assert_uint_eq(evbuffer_get_length(b), strlen(want));
    ck_assert_int_eq(memcmp(evbuffer_pullup(b, -1), want, strlen(want)), 0);
    jsond_encoder_free(e);
    evbuffer_free(b);
    free(want);
    json_decref(doc);
}
END_TEST

/* A 64 MB string with a 1 MB limit: the buffer never holds more than the
 * limit and a step, and the text comes out whole, in order. */
START_TEST(test_big_string_bounded)
{
    size_t size = under_valgrind() ? BIG_VALGRIND : BIG_STRING;
    char *s = malloc(size);
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < size; i++)
        s[i] = (char)('a' + i % 26);
    s[size / 2] = '\n'; /* one escape in the middle */
    json_t *doc = json_stringn_nocheck(s, size);
    jsond_encoder *e = jsond_encoder_new(doc);
    json_decref(doc); /* the encoder holds it */
    struct evbuffer *b = evbuffer_new();
    size_t at = 0, most = 0; /* bytes of the text seen */
    int r, calls = 0;
    while ((r = jsond_encoder_run(e, b, BIG_LIMIT)) >= 0) {
        size_t n = evbuffer_get_length(b);
        most = n > most ? n : most;
        const char *p = (const char *)evbuffer_pullup(b, -1);
        for (size_t i = 0; i < n; i++, at++) {
            char c;
            if (at == 0 || at == size + 2)
                c = '"';
            else if (at - 1 < size / 2)
                c = s[at - 1];
            else if (at - 1 == size / 2)
                c = '\\';
            else if (at - 1 == size / 2 + 1)
                c = 'n';
            else
                c = s[at - 2];
            if (p[i] != c) /* Check's asserts cost a write each: only on failure */
                ck_abort_msg("byte %zu: %d, not %d", at, p[i], c);
        }
        evbuffer_drain(b, n);
        calls++;
        if (r == 1)
            break;
    }
    ck_assert_int_eq(r, 1);
    ck_assert_uint_eq(at, size + 3);
    ck_assert_uint_le(most, BIG_LIMIT + JSOND_ENCODE_STEP);
    ck_assert_int_ge(calls, (int)(size / BIG_LIMIT));
    jsond_encoder_free(e);
    evbuffer_free(b);
    free(s);
}
END_TEST

/* The encoder as a producer: `want` past what `out` holds, then done. */
START_TEST(test_producer)
{
    json_t *doc = json_pack("{s:s,s:[i,i,i]}", "msg", "Hello World", "data", 1, 2, 3);
    char *want = json_dumps(doc, JSON_COMPACT);
    jsond_encoder *e = jsond_encoder_new(doc);
    json_decref(doc);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "xx", 2);
    jsond_produce p;
    while ((p = jsond_encoder_producer.proceed(e, b, 1)) == JSOND_PRODUCE_MORE)
        ;
    ck_assert_int_eq(p, JSOND_PRODUCE_DONE);
    jsond_encoder_producer.stop(e);
    ck_assert_uint_eq(evbuffer_get_length(b), strlen(want) + 2);
    ck_assert_int_eq(memcmp(evbuffer_pullup(b, -1) + 2, want, strlen(want)), 0);
    evbuffer_free(b);
    free(want);
}
END_TEST

/* jsond_dump (dump.h) appends after what the dumper holds, spilling. */
START_TEST(test_dumper)
{
    json_t *big = json_array();
    for (int i = 0; i < 2000; i++)
        json_array_append_new(big, json_integer(i));
    json_t *small = json_pack("{s:s}", "hello", "world");
    char *bigt = json_dumps(big, JSON_COMPACT), *smallt = json_dumps(small, JSON_COMPACT);
    jsond_dumper d;
    jsond_dumper_init(&d, NULL);
    ck_assert_int_eq(jsond_dump_bytes(&d, "[", 1), 0);
    ck_assert_int_eq(jsond_dump(&d, small), 0);
    ck_assert_ptr_null(d.spill); /* small: all on the stack */
    ck_assert_int_eq(jsond_dump_bytes(&d, ",", 1), 0);
    ck_assert_int_eq(jsond_dump(&d, big), 0);
    ck_assert_int_eq(jsond_dump_bytes(&d, ",", 1), 0);
    ck_assert_int_eq(jsond_dump(&d, small), 0);
    ck_assert_int_eq(jsond_dump_bytes(&d, "]", 1), 0);
    ck_assert_ptr_nonnull(d.spill);
    text t = {0}, w = {0};
    drain_into(&t, d.spill);
    put(&t, d.buf, d.n);
    put(&w, "[", 1);
    put(&w, smallt, strlen(smallt));
    put(&w, ",", 1);
    put(&w, bigt, strlen(bigt));
    put(&w, ",", 1);
    put(&w, smallt, strlen(smallt));
    put(&w, "]", 1);
    same("dumper", 0, w.p, w.n, t.p, t.n);
    evbuffer_free(d.spill);
    free(t.p);
    free(w.p);
    free(bigt);
    free(smallt);
    json_decref(big);
    json_decref(small);
}
END_TEST

/* A bounded dumper says when the text goes past its bound (1), leaving
 * what it wrote for the caller to throw away, and takes what fits. */
START_TEST(test_dumper_bounded)
{
    json_t *big = json_array(); /* 2000 x "xxxxxxxx", about 22 KB */
    for (int i = 0; i < 2000; i++)
        json_array_append_new(big, json_string("xxxxxxxx"));
    char *bigt = json_dumps(big, JSON_COMPACT);
    size_t bign = strlen(bigt);
    jsond_dumper d;
    /* no spill: the buffer's 4 KB */
    jsond_dumper_init_bounded(&d, NULL, JSOND_DUMP_BUF);
    ck_assert_int_eq(jsond_dump(&d, big), 1);
    ck_assert_ptr_null(d.spill);
    jsond_dumper_init_bounded(&d, NULL, JSOND_DUMP_BUF);
    ck_assert_int_eq(jsond_dump_bytes(&d, "[1]", 3), 0);
    ck_assert_int_eq(jsond_dump(&d, big), 1);
    char filler[JSOND_DUMP_BUF];
    memset(filler, ' ', sizeof filler);
    jsond_dumper_init_bounded(&d, NULL, JSOND_DUMP_BUF);
    ck_assert_int_eq(jsond_dump_bytes(&d, filler, sizeof filler), 0);
    ck_assert_int_eq(jsond_dump_bytes(&d, "x", 1), 1);
    /* with a spill: up to `max`, whole */
    struct evbuffer *spill = evbuffer_new();
    jsond_dumper_init_bounded(&d, spill, bign + 1);
    ck_assert_int_eq(jsond_dump(&d, big), 0);
    text t = {0};
    drain_into(&t, spill);
    put(&t, d.buf, d.n);
    same("bounded dumper", 0, bigt, bign, t.p, t.n);
    /* and past it */
    jsond_dumper_init_bounded(&d, spill, bign / 2);
    ck_assert_int_eq(jsond_dump(&d, big), 1);
    ck_assert_uint_le(evbuffer_get_length(spill), bign / 2 + JSOND_DUMP_BUF);
    evbuffer_free(spill);
    free(t.p);
    free(bigt);
    json_decref(big);
}
END_TEST

static Suite *encode_suite(void)
{
    Suite *s = suite_create("encode");
    TCase *tc = tcase_create("bytes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_random_documents);
    tcase_add_test(tc, test_scalars);
    tcase_add_test(tc, test_deep);
    tcase_add_test(tc, test_dumper);
    tcase_add_test(tc, test_dumper_bounded);
    suite_add_tcase(s, tc);

    tc = tcase_create("behaviour");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_invalid_utf8_fails);
    tcase_add_test(tc, test_invalid_key_fails);
    tcase_add_test(tc, test_nan_cannot_exist);
    tcase_add_test(tc, test_cycle_fails);
    tcase_add_test(tc, test_limit_respected);
    tcase_add_test(tc, test_big_string_bounded);
    tcase_add_test(tc, test_producer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(encode_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
