/* check_decode.c: the decoder (decode.h) accepts exactly what json_loadb
 * accepts and builds the same documents.
 *
 * Two property tests. Random documents (prop.h's generator, with duplicate
 * keys spliced in) dumped by json_dumps with varied flags must decode to a
 * document json_equal to json_loadb's and dumped to the same bytes (which
 * catches key order, -0.0 and reals). Random mutations of such texts (bits
 * flipped, bytes inserted, deleted or replaced by NUL, high bytes, digits or
 * punctuation, slices copied, escapes and truncations) must be accepted by
 * jsond_decode() and jsond_decode_fields() exactly when json_loadb accepts
 * them, with and without JSON_DECODE_ANY. Then each of jansson's rules by
 * hand, and jsond_decode_fields().
 *
 * Environment: JSOND_DECODE_SEED sets the first seed (default fixed, so a
 * run is repeatable; it is printed), JSOND_DECODE_DOCS the number of
 * documents of each property test. Under valgrind the count shrinks.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "prop.h"

#define DOCS          2000
#define DOCS_VALGRIND 150
#define MUTANTS       12 /* per text */
#define SEED          20261207
#define MARK                                                                                       \
    "\x01"                                                                                         \
    "dup\x02" /* a key no generated document holds */

static unsigned long docs(void)
{
    return env_or("JSOND_DECODE_DOCS", under_valgrind() ? DOCS_VALGRIND : DOCS);
}

static unsigned long long seed0(void)
{
    return env_or("JSOND_DECODE_SEED", SEED);
}

/* `s` for a failure message: C escapes, cut at 300 bytes. */
static const char *show(const char *s, size_t len)
{
    static char out[1300];
    size_t o = 0;
    for (size_t i = 0; i < len && i < 300; i++) {
        unsigned c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02x", c);
    }
    out[o] = '\0';
    return out;
}

/* Both decoders accept `text` or both refuse it; when they accept, the
 * documents are equal and dump to the same bytes. */
static void compare(const char *how, unsigned long long seed, const char *s, size_t len,
                    size_t flags)
{
    json_t *want = json_loadb(s, len, flags, NULL);
    json_t *got = jsond_decode(s, len, flags);
    if (!want != !got)
        ck_abort_msg("%s: seed %llu, flags %zu: json_loadb %s, jsond_decode %s: \"%s\"", how, seed,
                     flags, want ? "accepts" : "refuses", got ? "accepts" : "refuses",
                     show(s, len));
    if (want) {
        ck_assert_msg(json_equal(want, got), "%s: seed %llu: not equal: \"%s\"", how, seed,
                      show(s, len));
        char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        ck_assert_ptr_nonnull(w);
        ck_assert_ptr_nonnull(g);
        same(how, seed, w, strlen(w), g, strlen(g));
        free(w);
        free(g);
    }
    json_decref(want);
    json_decref(got);
}

/* jsond_decode_fields() on `s` picking `names`: -1 exactly when
 * json_loadb(JSON_DECODE_ANY) refuses it, 1 for an object with each field
 * its member, 0 otherwise; nothing set but for 1. Fields at odd places are
 * raw: their text decodes to the member. */
static void compare_fields(unsigned long long seed, const char *s, size_t len,
                           const char *const *names, size_t n)
{
    jsond_field f[4];
    ck_assert_uint_le(n, 4);
    for (size_t i = 0; i < n; i++)
        f[i] = (jsond_field){.name = names[i], .name_len = strlen(names[i]), .raw = (int)(i % 2)};
    json_t *want = json_loadb(s, len, JSON_DECODE_ANY, NULL);
    int r = jsond_decode_fields(s, len, f, n);
    int expect = !want ? -1 : json_is_object(want) ? 1 : 0;
    if (r != expect)
        ck_abort_msg("fields: seed %llu: %d, not %d: \"%s\"", seed, r, expect, show(s, len));
    for (size_t i = 0; i < n; i++) {
        json_t *member = r == 1 ? json_object_get(want, names[i]) : NULL;
        json_t *got = f[i].raw && f[i].text ? jsond_decode(f[i].text, f[i].len, JSON_DECODE_ANY)
                                            : json_incref(f[i].value);
        ck_assert_msg(member ? json_equal(member, got) : !got && !f[i].value && !f[i].text,
                      "fields: seed %llu: member \"%s\" of \"%s\"", seed, show(names[i], 20),
                      show(s, len));
        ck_assert(!f[i].raw || !f[i].value);
        json_decref(got);
        json_decref(f[i].value);
    }
    json_decref(want);
}

/* ---- documents and their texts ---------------------------------------- */

static size_t dump_flags(rng *r)
{
    size_t flags = JSON_ENCODE_ANY;
    if (below(r, 2))
        flags |= JSON_COMPACT;
    else
        flags |= JSON_INDENT(below(r, 5));
    if (below(r, 3) == 0)
        flags |= JSON_ENSURE_ASCII;
    if (below(r, 4) == 0)
        flags |= JSON_SORT_KEYS;
    if (below(r, 4) == 0)
        flags |= JSON_ESCAPE_SLASH;
    if (below(r, 4) == 0)
        flags |= JSON_REAL_PRECISION(1 + below(r, 17));
    return flags;
}

/* Some object in `doc` with members, or NULL: a random walk down. */
static json_t *some_object(rng *r, json_t *doc)
{
    json_t *found = NULL;
    for (json_t *j = doc; j;) {
        size_t n = json_is_object(j) ? json_object_size(j) : json_array_size(j);
        if (json_is_object(j) && n && (!found || below(r, 2)))
            found = j;
        if (!n)
            break;
        size_t k = below(r, (unsigned)n);
        if (json_is_array(j)) {
            j = json_array_get(j, k);
        } else {
            void *it = json_object_iter(j);
            while (k--)
                it = json_object_iter_next(j, it);
            j = json_object_iter_value(it);
        }
    }
    return found;
}

/* The text of `doc` with a duplicate of one of its keys, before or after
 * it: a member under MARK is added to some object, and its name in the text
 * becomes the key's. Plain json_dumps when `doc` has no object. */
static char *dump_with_duplicate(rng *r, json_t *doc, size_t flags)
{
    json_t *obj = some_object(r, doc);
    if (!obj)
        return json_dumps(doc, flags);
    void *it = json_object_iter(obj);
    for (size_t k = below(r, (unsigned)json_object_size(obj)); k; k--)
        it = json_object_iter_next(obj, it);
    json_t *key = json_string(json_object_iter_key(it));
    json_t *mark = json_string(MARK);
    json_t *value = gen(r, 0, 2);
    if (below(r, 2)) { /* after the key: its value replaces the key's */
        ck_assert_int_eq(json_object_set_new(obj, MARK, value), 0);
    } else { /* before it: the key's value wins, at the mark's place */
        json_t *copy = json_copy(obj);
        ck_assert_int_eq(json_object_clear(obj), 0);
        ck_assert_int_eq(json_object_set_new(obj, MARK, value), 0);
        ck_assert_int_eq(json_object_update(obj, copy), 0);
        json_decref(copy);
    }
    size_t sflags = JSON_ENCODE_ANY | (flags & (JSON_ENSURE_ASCII | JSON_ESCAPE_SLASH));
    char *all = json_dumps(doc, flags), *ktext = json_dumps(key, sflags),
         *mtext = json_dumps(mark, sflags);
    char *at = strstr(all, mtext);
    ck_assert_ptr_nonnull(at);
    size_t before = (size_t)(at - all), klen = strlen(ktext), mlen = strlen(mtext);
    char *out = malloc(strlen(all) - mlen + klen + 1);
    ck_assert_ptr_nonnull(out);
    memcpy(out, all, before);
    memcpy(out + before, ktext, klen);
    strcpy(out + before + klen, at + mlen);
    free(all);
    free(ktext);
    free(mtext);
    json_decref(key);
    json_decref(mark);
    return out;
}

START_TEST(test_random_documents)
{
    unsigned long n = docs();
    unsigned long long s0 = seed0();
    printf("check_decode: documents from seed %llu, %lu of them\n", s0, n);
    for (unsigned long i = 0; i < n; i++) {
        unsigned long long seed = s0 + i;
        rng r = {.s = seed, .nodes = 1 + (int)(seed % 7 == 0 ? 1000 : 100), .loadable = 1};
        json_t *doc = gen(&r, 0, (int)below(&r, 12));
        ck_assert_ptr_nonnull(doc);
        size_t flags = dump_flags(&r);
        char *t = below(&r, 3) ? json_dumps(doc, flags) : dump_with_duplicate(&r, doc, flags);
        ck_assert_ptr_nonnull(t);
        size_t len = strlen(t);
        compare("document", seed, t, len, 0);
        compare("document, any", seed, t, len, JSON_DECODE_ANY);
        /* The generator's documents all load, so the test compares values;
         * but for a real rounded past DBL_MAX by JSON_REAL_PRECISION. */
        json_error_t err;
        json_t *loaded = json_loadb(t, len, JSON_DECODE_ANY, &err);
        ck_assert_msg(loaded || json_error_code(&err) == json_error_numeric_overflow,
                      "seed %llu: jansson refuses \"%s\": %s", seed, show(t, len), err.text);
        json_decref(loaded);
        free(t);
        json_decref(doc);
    }
}
END_TEST

/* ---- mutations -------------------------------------------------------- */

/* A byte that matters to the grammar, or any byte. */
static char interesting(rng *r)
{
    static const char bytes[] = "\0 \t\n\r\f{}[]:,\"\\/-+.eE0123456789uUtrfalsn\x7f";
    switch (below(r, 3)) {
    case 0:
        return bytes[below(r, sizeof bytes - 1)];
    case 1:
        return (char)(0x80 + below(r, 0x80));
    default:
        return (char)below(r, 256);
    }
}

/* A piece to insert: an escape (surrogates often), a broken UTF-8
 * sequence, a number at a boundary, or an interesting byte. */
static size_t piece(rng *r, char *p)
{
    static const char *const pieces[] = {"\\ud83d",
                                         "\\ude00",
                                         "\\uD800",
                                         "\\udbff\\udfff",
                                         "\\u0000",
                                         "\\u00e9",
                                         "\\u",
                                         "\\x",
                                         "\xc0\x80",
                                         "\xe0\x9f\xbf",
                                         "\xed\xa0\x80",
                                         "\xf4\x90\x80\x80",
                                         "\xf0\x9f\x98",
                                         "\xc3",
                                         "9223372036854775808",
                                         "-9223372036854775809",
                                         "1e400",
                                         "1e-400",
                                         "-0",
                                         "0.0e0",
                                         "true",
                                         "nul",
                                         "[]",
                                         "{}",
                                         "\"\":",
                                         ",",
                                         "\xef\xbb\xbf"};
    if (below(r, 3))
        return (size_t)(*p = interesting(r), 1);
    const char *s = pieces[below(r, sizeof pieces / sizeof *pieces)];
    memcpy(p, s, strlen(s));
    return strlen(s);
}

/* One to three random edits of t, in place (t->cap is big enough). */
static void mutate(rng *r, text *t)
{
    for (unsigned m = 1 + below(r, 3); m; m--) {
        size_t at = t->n ? below(r, (unsigned)t->n) : 0;
        char ins[32];
        size_t k;
        switch (below(r, 6)) {
        case 0: /* flip a bit */
            if (t->n)
                t->p[at] ^= (char)(1u << below(r, 8));
            break;
        case 1: /* replace a byte */
            if (t->n)
                t->p[at] = interesting(r);
            break;
        case 2: /* delete a byte */
            if (t->n) {
                memmove(t->p + at, t->p + at + 1, t->n - at - 1);
                t->n--;
            }
            break;
        case 3: /* truncate */
            t->n = at;
            break;
        case 4: /* copy a slice elsewhere */
            k = t->n ? below(r, 16) : 0;
            if (k > t->n - at)
                k = t->n - at;
            memcpy(ins, t->p + at, k);
            at = t->n ? below(r, (unsigned)t->n + 1) : 0;
            memmove(t->p + at + k, t->p + at, t->n - at);
            memcpy(t->p + at, ins, k);
            t->n += k;
            break;
        default: /* insert */
            k = piece(r, ins);
            memmove(t->p + at + k, t->p + at, t->n - at);
            memcpy(t->p + at, ins, k);
            t->n += k;
            break;
        }
    }
}

START_TEST(test_mutations)
{
    unsigned long n = docs();
    unsigned long long s0 = seed0();
    printf("check_decode: mutations from seed %llu, %lu texts, %d each\n", s0, n, MUTANTS);
    for (unsigned long i = 0; i < n; i++) {
        unsigned long long seed = s0 + i;
        rng r = {.s = seed ^ 0x5eed, .loadable = 1};
        r.nodes = 1 + (int)below(&r, 30);
        json_t *doc = gen(&r, 0, (int)below(&r, 6));
        size_t flags = dump_flags(&r);
        char *orig = below(&r, 3) ? json_dumps(doc, flags) : dump_with_duplicate(&r, doc, flags);
        size_t olen = strlen(orig);
        /* Field names: two keys of the top object (if any), one absent. */
        const char *names[3] = {"no such key", "no such key", "absent"};
        void *it = json_is_object(doc) ? json_object_iter(doc) : NULL;
        for (size_t k = 0; it && k < 2; k++, it = json_object_iter_next(doc, it))
            names[k] = json_object_iter_key(it);
        text t = {.p = malloc(olen + 3 * 3 * 32 + 1), .n = 0, .cap = olen + 3 * 3 * 32 + 1};
        ck_assert_ptr_nonnull(t.p);
        for (int m = 0; m < MUTANTS; m++) {
            memcpy(t.p, orig, olen);
            t.n = olen;
            mutate(&r, &t);
            compare("mutant", seed, t.p, t.n, 0);
            compare("mutant, any", seed, t.p, t.n, JSON_DECODE_ANY);
            compare_fields(seed, t.p, t.n, names, 3);
        }
        free(t.p);
        free(orig);
        json_decref(doc);
    }
}
END_TEST

/* ---- jansson's rules, one by one --------------------------------------- */

typedef struct hand {
    const char *s;
    size_t n;
    int any; /* with JSON_DECODE_ANY */
    int ok;  /* json_loadb accepts it */
} hand;

#define CASE(lit, any, ok)                                                                         \
    {                                                                                              \
        lit, sizeof lit - 1, any, ok                                                               \
    }
#define OK(lit)      CASE(lit, 0, 1)
#define BAD(lit)     CASE(lit, 0, 0)
#define ANY_OK(lit)  CASE(lit, 1, 1)
#define ANY_BAD(lit) CASE(lit, 1, 0)

static const hand hands[] = {
    /* white space and the top */
    OK("[]"),
    OK("{}"),
    OK(" \t\n\r[ \t\n\r] \t\n\r"),
    BAD("\f[]"),
    BAD("[]\v"),
    BAD(""),
    ANY_BAD(""),
    ANY_BAD(" \n"),
    BAD("1"),
    ANY_OK("1"),
    ANY_OK(" \"x\" "),
    BAD("\"x\""),
    ANY_OK("null"),
    BAD("[1] x"),
    BAD("[1]]"),
    BAD("[1],"),
    BAD("[][]"),
    ANY_BAD("1 2"),
    BAD("\xef\xbb\xbf[]"),
    /* numbers */
    ANY_BAD("-"),
    BAD("[-]"),
    BAD("[01]"),
    BAD("[-01]"),
    BAD("[00]"),
    BAD("[1.]"),
    BAD("[1.e5]"),
    BAD("[1e]"),
    BAD("[1e+]"),
    BAD("[1E-]"),
    BAD("[.5]"),
    BAD("[+1]"),
    BAD("[0x1]"),
    BAD("[1.5.3]"),
    BAD("[- 1]"),
    OK("[1.5e+3]"),
    OK("[1E-3]"),
    OK("[0e0]"),
    OK("[-0]"),
    OK("[-0.0]"),
    OK("[0.0e-0]"),
    ANY_OK("-0"),
    ANY_OK("-0.0"),
    ANY_OK("1e5"),
    OK("[9223372036854775807]"),
    BAD("[9223372036854775808]"),
    OK("[-9223372036854775808]"),
    BAD("[-9223372036854775809]"),
    OK("[9223372036854775806,-9223372036854775807]"),
    BAD("[99999999999999999999]"),
    BAD("[1e400]"),
    BAD("[-1e400]"),
    OK("[1e-400]"),
    OK("[-1e-400]"),
    OK("[1.7976931348623157e308]"),
    BAD("[1.8e308]"),
    OK("[4.9e-324]"),
    OK("[2e-324]"),
    OK("[0.000000000000000000000000000000000000000000000000000000000000000000000000000001]"),
    OK("[123456789012345678901234567890123456789012345678901234567890.1234567890123456789]"),
    /* literals */
    OK("[true,false,null]"),
    BAD("[truex]"),
    BAD("[tru]"),
    BAD("[True]"),
    BAD("[nul]"),
    BAD("[null1]"),
    BAD("[nulll]"),
    ANY_BAD("truefalse"),
    ANY_OK("false"),
    /* containers */
    BAD("[1,]"),
    BAD("{\"a\":1,}"),
    BAD("[,1]"),
    BAD("{,}"),
    BAD("{\"a\"}"),
    BAD("{\"a\":}"),
    BAD("{1:2}"),
    BAD("{\"a\" 1}"),
    BAD("[1 2]"),
    BAD("{\"a\":1 \"b\":2}"),
    BAD("["),
    BAD("{"),
    BAD("{\"a\":1"),
    BAD("[1"),
    BAD("]"),
    BAD("{\"a\";1}"),
    BAD("{'a':1}"),
    OK("{\"a\":1,\"b\":2,\"a\":3}"),
    OK("{\"\":0}"),
    /* strings and escapes */
    BAD("[\"\\u0000\"]"),
    BAD("{\"\\u0000\":1}"),
    BAD("[\"a\\u0000b\"]"),
    BAD("{\"a\\u0000\":1}"),
    OK("[\"\\ud83d\\ude00\"]"),
    OK("[\"\\uD83D\\uDE00\"]"),
    BAD("[\"\\ud83d\"]"),
    BAD("[\"\\ude00\"]"),
    BAD("[\"\\ud83d\\u0041\"]"),
    BAD("[\"\\ud83dx\"]"),
    BAD("[\"\\ud83d\\n\"]"),
    BAD("[\"\\ud83d\\ud83d\"]"),
    BAD("[\"\\ude00\\ud83d\"]"),
    OK("[\"\\u00e9\\u00E9\\u0001\\u001f\\uffff\"]"),
    BAD("[\"\\u12\"]"),
    BAD("[\"\\u12g4\"]"),
    BAD("[\"\\x\"]"),
    BAD("[\"\\'\"]"),
    BAD("[\"\\U0041\"]"),
    OK("[\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"]"),
    BAD("[\"a\tb\"]"),
    BAD("[\"a\nb\"]"),
    BAD("[\"\x1f\"]"),
    OK("[\"\x7f\"]"),
    BAD("[\"abc]"),
    BAD("[\"\\"),
    BAD("[\"\\u00"),
    BAD("[\"\\ud83d\\u"),
    BAD("[\"\\ud83d\\ude0"),
    /* UTF-8, in strings and out */
    OK("[\"\xc3\xa9\"]"),
    BAD("[\"\xc0\x80\"]"),
    BAD("[\"\xc1\xbf\"]"),
    BAD("[\"\xe0\x80\x80\"]"),
    BAD("[\"\xe0\x9f\xbf\"]"),
    BAD("[\"\xed\xa0\x80\"]"),
    BAD("[\"\xed\xbf\xbf\"]"),
    BAD("[\"\xf0\x8f\xbf\xbf\"]"),
    BAD("[\"\xf4\x90\x80\x80\"]"),
    BAD("[\"\xf5\x80\x80\x80\"]"),
    BAD("[\"\xff\"]"),
    BAD("[\"\x80\"]"),
    BAD("[\"\xe2\x82\"]"),
    BAD("[\"\xe2\x82"),
    BAD("[\"\xc3(\"]"),
    OK("[\"\xf4\x8f\xbf\xbf\xef\xbf\xbf\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80\"]"),
    BAD("[\xc3\xa9]"),
    BAD("[1]\xc3\xa9"),
    /* NUL: refused everywhere but right after a number or a literal, where
     * jansson's lexer loses the one byte it put back */
    OK("[1\0]"),
    OK("[true\0]"),
    OK("[false\0,null\0]"),
    OK("[1.5\0,2]"),
    OK("[1e5\0]"),
    OK("{\"a\":null\0}"),
    OK("[-0\0]"),
    ANY_OK("1\0"),
    ANY_OK("null\0"),
    ANY_OK("2\0 "),
    BAD("[1\0\0]"),
    BAD("[1 \0]"),
    BAD("[\"a\"\0]"),
    BAD("[]\0"),
    BAD("\0[]"),
    BAD("[\0]"),
    BAD("[\"a\0\"]"),
    BAD("[-\0]"),
    BAD("[1.\0]"),
    BAD("[1,\0 2]"),
    BAD("{\"a\"\0:1}"),
    ANY_BAD("\0"),
    ANY_BAD("1\0\0"),
    ANY_BAD("1 \0"),
};

START_TEST(test_rules)
{
    for (size_t i = 0; i < sizeof hands / sizeof *hands; i++) {
        const hand *h = &hands[i];
        size_t flags = h->any ? JSON_DECODE_ANY : 0;
        json_t *j = json_loadb(h->s, h->n, flags, NULL);
        ck_assert_msg(!j == !h->ok, "json_loadb %s \"%s\"", j ? "accepts" : "refuses",
                      show(h->s, h->n));
        json_decref(j);
        compare("rule", i, h->s, h->n, flags);
    }
}
END_TEST

/* `n` nested arrays or objects, with `inner` in the innermost. */
static char *nest(int n, int objects, const char *inner)
{
    size_t ilen = strlen(inner), len = (size_t)n * (objects ? 6 : 2) + ilen;
    char *s = malloc(len + 1), *p = s;
    ck_assert_ptr_nonnull(s);
    for (int i = 0; i < n; i++) {
        if (objects) {
            memcpy(p, i == n - 1 ? "{" : "{\"a\":", i == n - 1 ? 1 : 5);
            p += i == n - 1 ? 1 : 5;
        } else {
            *p++ = '[';
        }
    }
    memcpy(p, inner, ilen);
    p += ilen;
    for (int i = 0; i < n; i++)
        *p++ = objects ? '}' : ']';
    *p = '\0';
    return s;
}

/* Every value is a level, a scalar too: JSON_PARSER_MAX_DEPTH (2048)
 * containers nest, one more does not, nor a scalar in as many. */
START_TEST(test_depth)
{
    ck_assert_int_eq(JSON_PARSER_MAX_DEPTH, 2048);
    static const struct {
        int n, objects;
        const char *inner;
        int ok;
    } cases[] = {
        {2047, 0, "", 1},         {2048, 0, "", 1},         {2049, 0, "", 0},
        {2047, 0, "1", 1},        {2048, 0, "1", 0},        {2047, 0, "\"x\"", 1},
        {2048, 0, "[]", 0},       {2047, 1, "", 1},         {2048, 1, "", 1},
        {2049, 1, "", 0},         {2047, 1, "\"a\":1", 1},  {2048, 1, "\"a\":1", 0},
        {2048, 1, "\"a\":{}", 0}, {2047, 1, "\"a\":[]", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *s = nest(cases[i].n, cases[i].objects, cases[i].inner);
        json_t *j = json_loadb(s, strlen(s), 0, NULL);
        ck_assert_msg(!j == !cases[i].ok, "json_loadb, case %zu", i);
        json_decref(j);
        compare("depth", i, s, strlen(s), 0);
        /* The fields' skipped members count their depth just the same. */
        size_t len = strlen(s) + 16;
        char *in = malloc(len);
        ck_assert_ptr_nonnull(in);
        snprintf(in, len, "{\"x\":%s}", s);
        const char *names[] = {"y"};
        compare_fields(i, in, strlen(in), names, 1);
        free(in);
        free(s);
    }
}
END_TEST

/* Escaped keys and strings longer than the stack scratch, nested, so the
 * scratch grows while keys wait in it for their values; and a big string. */
START_TEST(test_long_strings)
{
    text t = {0};
    put(&t, "{", 1);
    for (int k = 0; k < 3; k++) {
        put(&t, "\"k", 2);
        for (int i = 0; i < 300 * (k + 1); i++)
            put(&t, i % 7 ? "\\u00e9x" : "\\n", i % 7 ? 7 : 2);
        put(&t, "\":{\"", 4);
        for (int i = 0; i < 2000; i++)
            put(&t, i % 5 ? "ab" : "\\\"", 2);
        put(&t, "\":[\"", 4);
        for (int i = 0; i < 5000; i++)
            put(&t, "\\ud83d\\ude00", 12);
        put(&t, "\"]},", 4);
    }
    put(&t, "\"last\":1}", 9);
    compare("long", 0, t.p, t.n, 0);
    free(t.p);

    size_t size = under_valgrind() ? 1u << 20 : 16u << 20;
    char *big = malloc(size + 4);
    ck_assert_ptr_nonnull(big);
    big[0] = '[';
    big[1] = '"';
    for (size_t i = 2; i < size + 2; i++)
        big[i] = (char)('a' + i % 26);
    memcpy(big + size / 2, "\\n\xc3\xa9", 4);
    memcpy(big + size + 2, "\"]", 2);
    compare("big", 0, big, size + 4, 0);
    free(big);
}
END_TEST

START_TEST(test_flags)
{
    ck_assert_ptr_null(jsond_decode("{}", 2, JSON_REJECT_DUPLICATES));
    ck_assert_ptr_null(jsond_decode(NULL, 0, JSON_DECODE_ANY));
    /* The text ends at len, whatever follows it. */
    json_t *j = jsond_decode("[1]]", 3, 0);
    ck_assert_ptr_nonnull(j);
    json_decref(j);
    j = jsond_decode("[12345", 3, 0);
    ck_assert_ptr_null(j);
    j = jsond_decode("1.5e3", 3, JSON_DECODE_ANY);
    ck_assert(json_is_real(j) && json_real_value(j) == 1.5);
    json_decref(j);
}
END_TEST

/* ---- jsond_decode_fields ---------------------------------------------- */

static int fields(const char *s, jsond_field *f, size_t n)
{
    return jsond_decode_fields(s, strlen(s), f, n);
}

START_TEST(test_fields)
{
    const char *req = "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"a\":1,\"b\":\"xy\"},"
                      "\"id\":1}";
    jsond_field f[] = {{.name = "jsonrpc", .name_len = 7},
                       {.name = "method", .name_len = 6},
                       {.name = "params", .name_len = 6},
                       {.name = "id", .name_len = 2},
                       {.name = "absent", .name_len = 6}};
    size_t n = sizeof f / sizeof *f;
    ck_assert_int_eq(fields(req, f, n), 1);
    ck_assert_str_eq(json_string_value(f[0].value), "2.0");
    ck_assert_str_eq(json_string_value(f[1].value), "echo");
    json_t *params = json_pack("{s:i,s:s}", "a", 1, "b", "xy");
    ck_assert(json_equal(f[2].value, params));
    json_decref(params);
    ck_assert_int_eq(json_integer_value(f[3].value), 1);
    ck_assert_ptr_null(f[4].value);
    for (size_t i = 0; i < n; i++)
        json_decref(f[i].value);

    /* The last duplicate wins; keys match decoded; prefixes do not. */
    ck_assert_int_eq(fields("{\"method\":\"a\",\"x\":1,\"method\":\"b\",\"meth\":2,"
                            "\"\\u006dethod\":\"c\",\"methodx\":3}",
                            f, n),
                     1);
    ck_assert_str_eq(json_string_value(f[1].value), "c");
    json_decref(f[1].value);
    ck_assert_int_eq(fields(" {\"me\\u0074hod\" : [\"\\ud83d\\ude00\"] } ", f, n), 1);
    ck_assert_str_eq(json_string_value(json_array_get(f[1].value, 0)), "\xf0\x9f\x98\x80");
    json_decref(f[1].value);
    ck_assert_int_eq(fields("{}", f, n), 1);
    for (size_t i = 0; i < n; i++)
        ck_assert_ptr_null(f[i].value);

    /* Raw: the value's text in place, checked but not built. */
    f[1].raw = f[3].raw = 1;
    ck_assert_int_eq(fields("{\"method\" : \"a\\u0062\" ,\"id\":[1, {}] ,\"params\":2}", f, n), 1);
    ck_assert_ptr_null(f[1].value);
    ck_assert_uint_eq(f[1].len, 9);
    ck_assert_int_eq(strncmp(f[1].text, "\"a\\u0062\"", 9), 0);
    ck_assert_uint_eq(f[3].len, 7); /* up to the value's end, no space after */
    ck_assert_int_eq(strncmp(f[3].text, "[1, {}] ", 7), 0);
    ck_assert_int_eq(json_integer_value(f[2].value), 2);
    json_decref(f[2].value);
    ck_assert_int_eq(fields("{\"method\":\"a\",\"id\":[1,]}", f, n), -1);
    ck_assert_ptr_null(f[1].text);
    ck_assert_ptr_null(f[3].text);
    f[1].raw = f[3].raw = 0;

    /* An invalid member, skipped or not, or anything invalid after a field
     * was set: -1 and nothing left set. */
    static const char *const bad[] = {
        "{\"method\":\"a\",\"junk\":[1,2,]}",
        "{\"method\":\"a\",\"junk\":1e400}",
        "{\"method\":\"a\",\"junk\":\"\\ud800\"}",
        "{\"method\":\"a\",\"junk\":{\"k\":truex}}",
        "{\"method\":\"a\",\"junk\":\"\xc0\x80\"}",
        "{\"method\":\"a\",\"junk\":01}",
        "{\"method\":\"a\",\"id\":9223372036854775808}",
        "{\"method\":\"a\"} x",
        "{\"method\":\"a\",}",
        "{\"method\":\"a\"",
        "{\"method\\u0000\":\"a\"}",
        "{\"method\":\"a\",\"params\":{\"a\":1},\"id\":1,\"x\":[",
        "[1,",
        "",
        "nul",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(fields(bad[i], f, n) == -1, "%s", bad[i]);
        for (size_t k = 0; k < n; k++)
            ck_assert_ptr_null(f[k].value);
    }

    /* Valid JSON, not an object: 0, nothing set. */
    static const char *const other[] = {"[1,2]", "[{\"method\":\"a\"}]", "\"x\"", "1", " null "};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        ck_assert_msg(fields(other[i], f, n) == 0, "%s", other[i]);
        for (size_t k = 0; k < n; k++)
            ck_assert_ptr_null(f[k].value);
    }

    /* What a field held before is overwritten, not released. */
    json_t *held = json_integer(5);
    f[0].value = held;
    ck_assert_int_eq(fields("{}", f, 1), 1);
    ck_assert_ptr_null(f[0].value);
    ck_assert_int_eq(json_integer_value(held), 5);
    json_decref(held);

    /* Names of every length the comparison treats apart, then keys that
     * differ from them in one byte anywhere, which must not replace them. */
    jsond_field g[] = {{.name = "", .name_len = 0},         {.name = "a", .name_len = 1},
                       {.name = "ab", .name_len = 2},       {.name = "abc", .name_len = 3},
                       {.name = "abcde", .name_len = 5},    {.name = "abcdefgh", .name_len = 8},
                       {.name = "abcdefghi", .name_len = 9}};
    size_t ng = sizeof g / sizeof *g;
    ck_assert_int_eq(fields("{\"\":1,\"a\":2,\"ab\":3,\"abc\":4,\"abcde\":5,\"abcdefgh\":6,"
                            "\"abcdefghi\":7,\"x\":0,\"b\":0,\"xb\":0,\"ax\":0,\"xbc\":0,\"axc\":0,"
                            "\"abx\":0,\"xbcde\":0,\"abxde\":0,\"abcdx\":0,\"xbcdefgh\":0,"
                            "\"abcdxfgh\":0,\"abcdefgx\":0,\"abcdefghx\":0,\"abcdxfghi\":0}",
                            g, ng),
                     1);
    for (size_t i = 0; i < ng; i++) {
        ck_assert_int_eq(json_integer_value(g[i].value), (json_int_t)i + 1);
        json_decref(g[i].value);
    }
}
END_TEST

static Suite *decode_suite(void)
{
    Suite *s = suite_create("decode");
    TCase *tc = tcase_create("property");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_random_documents);
    tcase_add_test(tc, test_mutations);
    suite_add_tcase(s, tc);

    tc = tcase_create("rules");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_rules);
    tcase_add_test(tc, test_depth);
    tcase_add_test(tc, test_long_strings);
    tcase_add_test(tc, test_flags);
    tcase_add_test(tc, test_fields);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(decode_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
