/* prop.h: what the property tests of the encoder and the decoder share: a
 * seeded generator of random documents (deep nesting, unicode and control
 * characters in keys and strings, long plain runs across 8- and 16-byte
 * boundaries, extreme integers, reals of every kind, empty containers) and
 * a byte comparison that names the first difference.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_PROP_H
#define JSOND_PROP_H

#include <check.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* Under valgrind (found by its preload library in LD_PRELOAD, which
 * check-valgrind brings), the tests shrink their counts to stay quick. */
static inline int under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

static inline unsigned long env_or(const char *name, unsigned long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoul(v, NULL, 0) : dflt;
}

/* ---- a seeded generator (splitmix64) ---------------------------------- */

typedef struct rng {
    uint64_t s;
    int nodes;    /* left in this document's budget */
    int loadable; /* no NUL in strings and keys: jansson loads no \u0000 */
} rng;

static inline uint64_t next64(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static inline unsigned below(rng *r, unsigned n)
{
    return (unsigned)(next64(r) % n);
}

typedef struct text {
    char *p;
    size_t n, cap;
} text;

static inline void put(text *t, const void *p, size_t n)
{
    if (t->n + n > t->cap) {
        t->cap = (t->n + n) * 2 + 64;
        t->p = realloc(t->p, t->cap);
        if (!t->p)
            ck_abort_msg("out of memory");
    }
    memcpy(t->p + t->n, p, n);
    t->n += n;
}

static inline void put_utf8(text *t, uint32_t c)
{
    unsigned char b[4];
    put(t, b, jsond_utf8_put(b, c));
}

/* Valid UTF-8 of every byte class, in pieces of random kinds. */
static inline void gen_text(rng *r, text *t, size_t pieces)
{
    static const char specials[] = "\"\\/\b\f\n\r\t\x7f";
    for (size_t i = 0; i < pieces; i++) {
        unsigned kind = below(r, 16);
        if (kind < 5) { /* a safe run, of a length that crosses 8/16 */
            size_t len = below(r, 8) == 0 ? below(r, 3000) : below(r, 40);
            for (size_t j = 0; j < len; j++) {
                char c = (char)(' ' + below(r, 95));
                if (c == '"' || c == '\\')
                    c = 'x';
                put(t, &c, 1);
            }
        } else if (kind < 7) { /* a control byte, NUL included unless loadable */
            char c = (char)(r->loadable ? 1 + below(r, 0x1F) : below(r, 0x20));
            put(t, &c, 1);
        } else if (kind < 9) {
            put(t, &specials[below(r, sizeof specials - 1)], 1);
        } else if (kind < 11) {
            put_utf8(t, 0x80 + below(r, 0x800 - 0x80));
        } else if (kind < 13) {
            uint32_t c = 0x800 + below(r, 0x10000 - 0x800);
            put_utf8(t, c >= 0xD800 && c <= 0xDFFF ? 0x2028 : c);
        } else if (kind < 14) {
            put_utf8(t, 0x10000 + below(r, 0x110000 - 0x10000));
        } else if (kind < 15) {
            static const uint32_t edges[] = {0x7F,   0x80,   0x7FF,   0x800,    0xFFFF, 0xFFFE,
                                             0xD7FF, 0xE000, 0x10000, 0x10FFFF, 0xFEFF};
            put_utf8(t, edges[below(r, sizeof edges / sizeof *edges)]);
        } else {
            put(t, "é\"\\\x01", r->loadable ? 5 : 6); /* 6: its NUL too */
        }
    }
}

static inline json_t *gen_string(rng *r, size_t pieces)
{
    text t = {0};
    gen_text(r, &t, pieces);
    json_t *s = json_stringn(t.p ? t.p : "", t.n);
    free(t.p);
    ck_assert_ptr_nonnull(s);
    return s;
}

static inline json_int_t gen_integer(rng *r)
{
    static const json_int_t specials[] = {0,
                                          1,
                                          -1,
                                          9,
                                          10,
                                          -10,
                                          99,
                                          100,
                                          INT64_MAX,
                                          INT64_MIN,
                                          INT64_MAX - 1,
                                          INT64_MIN + 1,
                                          999999999,
                                          1000000000,
                                          -999999999999999999,
                                          4294967296,
                                          2147483647,
                                          -2147483648};
    switch (below(r, 4)) {
    case 0:
        return specials[below(r, sizeof specials / sizeof *specials)];
    case 1:
        return (json_int_t)next64(r);
    case 2:
        return (json_int_t)(next64(r) >> below(r, 64));
    default:
        return (json_int_t)below(r, 2000) - 1000;
    }
}

static inline double gen_real(rng *r)
{
    static const double specials[] = {0.0,
                                      -0.0,
                                      1.0,
                                      -1.0,
                                      0.5,
                                      1.25,
                                      0.1,
                                      0.375,
                                      1e22,
                                      1e21,
                                      1e17,
                                      1e16,
                                      9007199254740992.0,
                                      9007199254740993.0,
                                      123456789012345678.0,
                                      99999999999999999.0,
                                      1e-4,
                                      1e-5,
                                      0.0001234,
                                      1e100,
                                      -1e-300,
                                      5e-324,
                                      DBL_MIN,
                                      DBL_MAX,
                                      -DBL_MAX,
                                      1.00000762939453125, /* a tie at 17 digits */
                                      3.0517578125e-05,
                                      1.7976931348623157e308,
                                      2.2250738585072014e-308,
                                      0.30000000000000004};
    uint64_t bits;
    double v;
    switch (below(r, 7)) {
    case 0:
        return specials[below(r, sizeof specials / sizeof *specials)];
    case 1: /* any finite bit pattern */
        do {
            bits = next64(r);
            memcpy(&v, &bits, sizeof v);
        } while (!isfinite(v));
        return v;
    case 2: /* a short binary fraction: the encoder's exact path */
        return ldexp((double)(int64_t)(next64(r) >> below(r, 64)), -(int)below(r, 80));
    case 3: /* an integer, maybe beyond 2^53 */
        return ldexp((double)(next64(r) >> 11), (int)below(r, 90) - 10);
    case 4: /* decimal-looking values */
        return (double)((int64_t)below(r, 2000000) - 1000000) / (double)(1u << below(r, 12)) /
               (below(r, 2) ? 1.0 : 1000.0);
    case 5: /* powers of ten, around the %g switch points */
        return pow(10.0, (int)below(r, 50) - 25) * (below(r, 2) ? 1.0 : -3.0);
    default:
        return (double)(int64_t)below(r, 100000) * 0.01;
    }
}

static inline json_t *gen(rng *r, int depth, int maxdepth)
{
    unsigned kind = below(r, depth >= maxdepth || r->nodes <= 0 ? 7 : 10);
    r->nodes--;
    switch (kind) {
    case 0:
        return json_null();
    case 1:
        return below(r, 2) ? json_true() : json_false();
    case 2:
    case 3:
        return json_integer(gen_integer(r));
    case 4:
        return json_real(gen_real(r));
    case 5:
    case 6:
        return gen_string(r, below(r, 6));
    case 7:
    case 8: {
        json_t *a = json_array();
        size_t n = below(r, 4) ? below(r, 6) : below(r, 30);
        for (size_t i = 0; i < n; i++)
            ck_assert_int_eq(json_array_append_new(a, gen(r, depth + 1, maxdepth)), 0);
        return a;
    }
    default: {
        json_t *o = json_object();
        size_t n = below(r, 4) ? below(r, 6) : below(r, 30);
        for (size_t i = 0; i < n; i++) {
            text k = {0};
            gen_text(r, &k, below(r, 3));
            ck_assert_int_eq(
                json_object_setn_new(o, k.p ? k.p : "", k.n, gen(r, depth + 1, maxdepth)), 0);
            free(k.p);
        }
        return o;
    }
    }
}

/* ---- comparing -------------------------------------------------------- */

static inline void same(const char *how, unsigned long long seed, const char *want, size_t wlen,
                        const char *got, size_t glen)
{
    if (wlen == glen && memcmp(want, got, wlen) == 0)
        return;
    size_t i = 0;
    while (i < wlen && i < glen && want[i] == got[i])
        i++;
    size_t from = i > 20 ? i - 20 : 0;
    ck_abort_msg("%s: seed %llu: first difference at byte %zu (want %zu bytes, got %zu): "
                 "want \"%.*s\" got \"%.*s\"",
                 how, seed, i, wlen, glen, (int)(wlen - from < 60 ? wlen - from : 60), want + from,
                 (int)(glen - from < 60 ? glen - from : 60), got + from);
}

#endif /* JSOND_PROP_H */
