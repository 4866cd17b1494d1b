/* encode.c: the incremental serializer (see encode.h).
 *
 * The walk is a loop over an explicit stack of open containers, so that it
 * can return in the middle of any document and take up again where it
 * stopped; every step first makes room for what it writes and only then
 * changes the state, so a step cut short is simply taken again.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "utf8.h"

/* Most documents nest no deeper than this; deeper ones move to the heap. */
#define INLINE_FRAMES 16
/* Space is reserved in the evbuffer in chunks of a quarter of the text so
 * far, as a power of two from FIRST_CHUNK to MAX_CHUNK: a small text does
 * not pin a large chain, and the chain left part-used at the end holds at
 * most a quarter more than the text. */
#define FIRST_CHUNK 4096
#define MAX_CHUNK   ((size_t)256 * 1024)
/* A chunk is asked for this much under its power of two, for libevent's
 * chain header: a chain is allocated at the next power of two that holds
 * both, so asking for the whole power would take twice the memory. */
#define CHAIN_SLACK 128
/* The room a string keeps for its widest piece: an escape (6 bytes) or a
 * UTF-8 character (4), and the closing '":'. */
#define STR_ROOM 8
/* The longest token written whole (a real is at most 26 bytes). */
#define TOKEN_ROOM 40
/* A safe run is scanned and copied this much at a time, so the copy reads
 * what the scan has just brought into the cache. */
#define RUN_BLOCK ((size_t)16 * 1024)
/* jansson's MAX_REAL_STR_LENGTH. */
#define REAL_BUF 100

#if JSOND_ENCODE_STEP < TOKEN_ROOM
#error "JSOND_ENCODE_STEP must hold the longest token"
#endif

typedef struct frame {
    const json_t *c;
    int obj;
    void *iter;  /* object: the next member, NULL after the last */
    size_t i, n; /* array: the next index and the size; object: members written */
} frame;

/* Where the text goes: a caller's buffer (out == NULL) until it is full, or
 * space reserved in an evbuffer. */
typedef struct sink {
    char *p, *end, *base; /* the space being written and its start */
    struct evbuffer *out;
    size_t limit;
    size_t total; /* bytes committed so far, in this call and before */
    int wrote;    /* a chunk was committed in this call */
    char *buf;    /* the caller's buffer, its length and its spill */
    size_t *len;
    struct evbuffer **spill;
    int full; /* no spill, and the caller's buffer is full */
} sink;

typedef struct state {
    const json_t *next;  /* the value to write next; NULL: go on in the top frame */
    const char *s;       /* the string being written, NULL when none */
    size_t slen, spos;   /* its length and how much of it is written */
    const json_t *value; /* when it is a key: the member's value */
    frame *stack;
    size_t depth, cap;
    int done, failed;
    size_t total; /* bytes written so far */
    frame frames[INLINE_FRAMES];
} state;

struct jsond_encoder {
    state st;
    json_t *doc;
};

static char nowhere[1]; /* p, end and base when no space is reserved */

/* ---- the output ------------------------------------------------------- */

static int commit(sink *k)
{
    if (k->p != k->base) {
        struct evbuffer_iovec v = {.iov_base = k->base, .iov_len = (size_t)(k->p - k->base)};
        k->wrote = 1;
        k->total += v.iov_len;
        if (evbuffer_commit_space(k->out, &v, 1) < 0)
            return -1;
    }
    k->p = k->end = k->base = nowhere;
    return 0;
}

/* Makes room for `need` bytes (at most JSOND_ENCODE_STEP): 1 there is, 0
 * stop here (the limit is reached and this call has written), -1 out of
 * memory. */
static int refill(sink *k, size_t need)
{
    if (!k->out) {
        /* The caller's buffer is full: its bytes go to the spill, and the
         * rest of the text follows there. */
        size_t used = (size_t)(k->p - k->buf);
        if (!k->spill) {
            k->full = 1;
            return -1;
        }
        if (!*k->spill && !(*k->spill = evbuffer_new()))
            return -1;
        if (used && evbuffer_add(*k->spill, k->buf, used) < 0)
            return -1;
        *k->len = 0;
        k->total += used;
        k->out = *k->spill;
        k->p = k->end = k->base = nowhere;
    } else if (commit(k) < 0) {
        return -1;
    }
    size_t have = evbuffer_get_length(k->out);
    if (have >= k->limit && k->wrote)
        return 0;
    size_t to_limit = have < k->limit ? k->limit - have : 0;
    size_t chunk = FIRST_CHUNK;
    while (chunk < MAX_CHUNK && chunk * 4 <= k->total)
        chunk *= 2;
    size_t size = to_limit < chunk ? to_limit : chunk - CHAIN_SLACK;
    if (size < JSOND_ENCODE_STEP)
        size = JSOND_ENCODE_STEP;
    if (size < need)
        size = need;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(k->out, (ev_ssize_t)size, &v, 1) != 1 || v.iov_len < size)
        return -1;
    /* All the chain's free space, as far as the limit: what is left unused
     * in a chain is memory held for nothing. */
    if (size < to_limit)
        size = v.iov_len < to_limit ? v.iov_len : to_limit;
    k->p = k->base = v.iov_base;
    k->end = k->p + size;
    return 1;
}

static inline int room(sink *k, size_t need)
{
    return (size_t)(k->end - k->p) >= need ? 1 : refill(k, need);
}

/* ---- strings ---------------------------------------------------------- */

/* Writes the escape of ASCII byte `c` at `p`; its length. */
static size_t put_escape(char *p, unsigned c)
{
    static const char hex[] = "0123456789ABCDEF"; /* jansson's "\\u%04X" */
    p[0] = '\\';
    switch (c) {
    case '"':
    case '\\':
        p[1] = (char)c;
        return 2;
    case '\b':
        p[1] = 'b';
        return 2;
    case '\f':
        p[1] = 'f';
        return 2;
    case '\n':
        p[1] = 'n';
        return 2;
    case '\r':
        p[1] = 'r';
        return 2;
    case '\t':
        p[1] = 't';
        return 2;
    default:
        p[1] = 'u';
        p[2] = '0';
        p[3] = '0';
        p[4] = hex[c >> 4];
        p[5] = hex[c & 15];
        return 6;
    }
}

/* Writes the rest of the string being written and its closing quote (and
 * ':' after a key): 1 done, 0 stopped (st->spos says where), -1 invalid
 * UTF-8 or out of memory. */
static int put_string(state *st, sink *k)
{
    const unsigned char *s = (const unsigned char *)st->s;
    size_t i = st->spos, n = st->slen;
    int r;
    while (i < n) {
        if ((size_t)(k->end - k->p) < STR_ROOM) {
            st->spos = i;
            if ((r = refill(k, STR_ROOM)) != 1)
                return r;
        }
        size_t space = (size_t)(k->end - k->p);
        size_t take = n - i < space ? n - i : space;
        if (take > RUN_BLOCK)
            take = RUN_BLOCK;
        size_t run = jsond_plain_run(s + i, take);
        memcpy(k->p, s + i, run);
        k->p += run;
        i += run;
        if (run == take || (size_t)(k->end - k->p) < STR_ROOM)
            continue;
        if (s[i] < 0x80) {
            k->p += put_escape(k->p, s[i]);
            i++;
        } else {
            size_t len = jsond_utf8_len(s + i, n - i);
            if (!len)
                return -1;
            memcpy(k->p, s + i, len);
            k->p += len;
            i += len;
        }
    }
    st->spos = i;
    if ((r = room(k, 2)) != 1)
        return r;
    *k->p++ = '"';
    if (st->value) {
        *k->p++ = ':';
        st->next = st->value;
        st->value = NULL;
    }
    st->s = NULL;
    return 1;
}

/* ---- numbers ---------------------------------------------------------- */

static const char digit_pairs[] = "00010203040506070809"
                                  "10111213141516171819"
                                  "20212223242526272829"
                                  "30313233343536373839"
                                  "40414243444546474849"
                                  "50515253545556575859"
                                  "60616263646566676869"
                                  "70717273747576777879"
                                  "80818283848586878889"
                                  "90919293949596979899";

/* Writes the decimal digits of `u` ending just before `end`; their start. */
static char *put_digits(char *end, uint64_t u)
{
    while (u >= 100) {
        end -= 2;
        memcpy(end, digit_pairs + 2 * (u % 100), 2);
        u /= 100;
    }
    if (u >= 10) {
        end -= 2;
        memcpy(end, digit_pairs + 2 * u, 2);
    } else {
        *--end = (char)('0' + u);
    }
    return end;
}

/* "%lld" (JSON_INTEGER_FORMAT). */
static size_t put_integer(char *p, json_int_t v)
{
    char tmp[24], *end = tmp + sizeof tmp;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char *q = put_digits(end, u);
    if (v < 0)
        *--q = '-';
    memcpy(p, q, (size_t)(end - q));
    return (size_t)(end - q);
}

/* jansson's jsonp_dtostr() at precision 17, for the values the fast path
 * leaves: snprintf, the locale's decimal point made '.', ".0" added to what
 * looks like an integer, and the exponent's '+' and leading zeros dropped. */
static size_t real_slow(char *b, double v)
{
    int ret = snprintf(b, REAL_BUF, "%.17g", v);
    if (ret < 0 || ret >= REAL_BUF)
        return 0;
    size_t len = (size_t)ret;
    const char *point = localeconv()->decimal_point;
    if (*point != '.') {
        char *pos = strchr(b, *point);
        if (pos)
            *pos = '.';
    }
    if (!strchr(b, '.') && !strchr(b, 'e')) {
        if (len + 3 >= REAL_BUF)
            return 0;
        memcpy(b + len, ".0", 3);
        len += 2;
    }
    char *start = strchr(b, 'e');
    if (start) {
        start++;
        char *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - b) + 1);
            len -= (size_t)(end - start);
        }
    }
    return len;
}

#if defined(__SIZEOF_INT128__)
__extension__ typedef unsigned __int128 u128;

static const uint64_t pow5[28] = {
    1u,
    5u,
    25u,
    125u,
    625u,
    3125u,
    15625u,
    78125u,
    390625u,
    1953125u,
    9765625u,
    48828125u,
    244140625u,
    1220703125u,
    6103515625u,
    30517578125u,
    152587890625u,
    762939453125u,
    3814697265625u,
    19073486328125u,
    95367431640625u,
    476837158203125u,
    2384185791015625u,
    11920928955078125u,
    59604644775390625u,
    298023223876953125u,
    1490116119384765625u,
    7450580596923828125u,
};

static int bits128(u128 x)
{
    uint64_t hi = (uint64_t)(x >> 64), lo = (uint64_t)x;
    return hi ? 128 - __builtin_clzll(hi) : lo ? 64 - __builtin_clzll(lo) : 0;
}

/* Writes the decimal digits of `x` at `d`; their count. */
static int u128_digits(char *d, u128 x)
{
    const uint64_t e19 = 10000000000000000000u;
    uint64_t part[3];
    int n = 0, len;
    while (x >> 64 || (uint64_t)x >= e19) {
        part[n++] = (uint64_t)(x % e19);
        x /= e19;
    }
    char tmp[20], *end = tmp + sizeof tmp, *q = put_digits(end, (uint64_t)x);
    len = (int)(end - q);
    memcpy(d, q, (size_t)len);
    while (n > 0) {
        q = put_digits(end, part[--n]);
        while (q > tmp + 1)
            *--q = '0';
        memcpy(d + len, tmp + 1, 19);
        len += 19;
    }
    return len;
}

/* "%.17g" as jsonp_dtostr() makes it, exactly, for the finite values whose
 * binary value has a short exact decimal expansion (every integer below
 * 2^127, and fractions like 1.25 or 0.375 with few binary places): they are
 * m * 10^k with m below 2^128, so the 17 significant digits are rounded
 * (half to even, as glibc does) from exact digits. 0 for the others. */
static size_t real_fast(char *p, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int neg = (int)(bits >> 63), be = (int)((bits >> 52) & 0x7FF);
    uint64_t m = bits & ((UINT64_C(1) << 52) - 1);
    char *q = p;
    if (neg)
        *q++ = '-';
    if (be == 0 && m == 0) {
        q[0] = '0';
        q[1] = '.';
        q[2] = '0';
        return (size_t)(q - p) + 3;
    }
    if (be == 0 || be == 0x7FF)
        return 0; /* subnormal (left to snprintf), or not finite */
    m |= UINT64_C(1) << 52;
    unsigned tz = (unsigned)__builtin_ctzll(m);
    int e = be - 1075 + (int)tz;
    m >>= tz;
    u128 x;
    if (e >= 0) {
        if (e > 74)
            return 0;
        x = (u128)m << e; /* below 2^127 */
        e = 0;
    } else {
        int k = -e;
        if (k > 54)
            return 0;
        u128 f = (u128)pow5[k > 27 ? 27 : k] * pow5[k > 27 ? k - 27 : 0];
        if (bits128(f) + bits128(m) > 128)
            return 0;
        x = f * m; /* v = x * 10^e exactly */
    }
    char d[40];
    int nd = u128_digits(d, x), exp10 = nd - 1 + e;
    if (nd > 17) {
        int up = d[17] > '5';
        if (d[17] == '5') {
            up = (d[16] - '0') & 1;
            for (int j = 18; j < nd && !up; j++)
                up = d[j] != '0';
        }
        nd = 17;
        if (up) {
            int j = 16;
            while (j >= 0 && d[j] == '9')
                d[j--] = '0';
            if (j < 0) {
                d[0] = '1';
                exp10++;
            } else {
                d[j]++;
            }
        }
    }
    while (nd > 1 && d[nd - 1] == '0')
        nd--;
    if (exp10 < -4 || exp10 >= 17) {
        *q++ = d[0];
        if (nd > 1) {
            *q++ = '.';
            memcpy(q, d + 1, (size_t)nd - 1);
            q += nd - 1;
        }
        *q++ = 'e';
        if (exp10 < 0) {
            *q++ = '-';
            exp10 = -exp10;
        }
        char tmp[8], *end = tmp + sizeof tmp, *s = put_digits(end, (uint64_t)exp10);
        memcpy(q, s, (size_t)(end - s));
        q += end - s;
    } else if (exp10 >= 0) {
        int ip = exp10 + 1;
        if (nd <= ip) {
            memcpy(q, d, (size_t)nd);
            memset(q + nd, '0', (size_t)(ip - nd));
            q += ip;
            *q++ = '.';
            *q++ = '0';
        } else {
            memcpy(q, d, (size_t)ip);
            q += ip;
            *q++ = '.';
            memcpy(q, d + ip, (size_t)(nd - ip));
            q += nd - ip;
        }
    } else {
        int zeros = -exp10 - 1;
        *q++ = '0';
        *q++ = '.';
        memset(q, '0', (size_t)zeros);
        q += zeros;
        memcpy(q, d, (size_t)nd);
        q += nd;
    }
    return (size_t)(q - p);
}
#else
static size_t real_fast(char *p, double v)
{
    (void)p;
    (void)v;
    return 0;
}
#endif

/* jansson's text for a real into b (REAL_BUF bytes); 0 if it has none. */
static size_t put_real(char *b, double v)
{
    if (!isfinite(v))
        return 0; /* json_real() refuses these; jansson would write "nan.0" */
    size_t len = real_fast(b, v);
    return len ? len : real_slow(b, v);
}

/* ---- the walk --------------------------------------------------------- */

static void state_init(state *st, const json_t *doc)
{
    st->next = doc;
    st->s = NULL;
    st->slen = st->spos = 0;
    st->value = NULL;
    st->stack = st->frames;
    st->depth = 0;
    st->cap = INLINE_FRAMES;
    st->done = 0;
    st->failed = !doc;
    st->total = 0;
}

static void state_clear(state *st)
{
    if (st->stack != st->frames)
        free(st->stack);
    st->stack = st->frames;
}

/* Opens container `c`: -1 if it is its own ancestor (json_dumps refuses
 * cycles) or out of memory. */
static int push(state *st, const json_t *c, int obj, void *iter, size_t n)
{
    for (size_t d = 0; d < st->depth; d++)
        if (st->stack[d].c == c)
            return -1;
    if (st->depth == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : INLINE_FRAMES;
        frame *f =
            st->stack == st->frames ? malloc(cap * sizeof *f) : realloc(st->stack, cap * sizeof *f);
        if (!f)
            return -1;
        if (st->stack == st->frames)
            memcpy(f, st->frames, sizeof st->frames);
        st->stack = f;
        st->cap = cap;
    }
    st->stack[st->depth++] = (frame){.c = c, .obj = obj, .iter = iter, .i = 0, .n = n};
    return 0;
}

/* The next step in the open container on top. */
static int step(state *st, sink *k)
{
    frame *f = &st->stack[st->depth - 1];
    int r;
    if ((r = room(k, 2)) != 1)
        return r;
    if (!f->obj) {
        if (f->i == f->n) {
            *k->p++ = ']';
            st->depth--;
            return 1;
        }
        if (!(st->next = json_array_get(f->c, f->i)))
            return -1;
        if (f->i++)
            *k->p++ = ',';
        return 1;
    }
    if (!f->iter) {
        *k->p++ = '}';
        st->depth--;
        return 1;
    }
    void *iter = f->iter;
    if (!(st->value = json_object_iter_value(iter)))
        return -1;
    st->s = json_object_iter_key(iter);
#if JANSSON_VERSION_HEX >= 0x020e00
    st->slen = json_object_iter_key_len(iter);
#else
    st->slen = strlen(st->s);
#endif
    st->spos = 0;
    f->iter = json_object_iter_next((json_t *)f->c, iter);
    if (f->i++)
        *k->p++ = ',';
    *k->p++ = '"';
    return 1;
}

/* Writes the value st->next. */
static int value(state *st, sink *k)
{
    const json_t *j = st->next;
    char b[REAL_BUF];
    size_t len;
    int r;
    if ((r = room(k, TOKEN_ROOM)) != 1)
        return r;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        void *iter = json_object_iter((json_t *)j);
        if (!iter) {
            memcpy(k->p, "{}", 2);
            k->p += 2;
            break;
        }
        if (push(st, j, 1, iter, 0) < 0)
            return -1;
        *k->p++ = '{';
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        if (!n) {
            memcpy(k->p, "[]", 2);
            k->p += 2;
            break;
        }
        if (push(st, j, 0, NULL, n) < 0)
            return -1;
        *k->p++ = '[';
        break;
    }
    case JSON_STRING:
        *k->p++ = '"';
        st->s = json_string_value(j);
        st->slen = json_string_length(j);
        st->spos = 0;
        break;
    case JSON_INTEGER:
        k->p += put_integer(k->p, json_integer_value(j));
        break;
    case JSON_REAL:
        if (!(len = put_real(b, json_real_value(j))))
            return -1;
        if ((r = room(k, len)) != 1)
            return r;
        memcpy(k->p, b, len);
        k->p += len;
        break;
    case JSON_TRUE:
        memcpy(k->p, "true", 4);
        k->p += 4;
        break;
    case JSON_FALSE:
        memcpy(k->p, "false", 5);
        k->p += 5;
        break;
    case JSON_NULL:
        memcpy(k->p, "null", 4);
        k->p += 4;
        break;
    default:
        return -1;
    }
    st->next = NULL;
    return 1;
}

/* Writes until the text is complete (1), the sink says stop (0), or it
 * fails (-1). */
static int encode(state *st, sink *k)
{
    int r;
    if (st->failed)
        return -1;
    for (;;) {
        if (st->s)
            r = put_string(st, k);
        else if (st->next)
            r = value(st, k);
        else if (st->depth)
            r = step(st, k);
        else
            return 1;
        if (r != 1)
            return r;
    }
}

/* ---- the API ---------------------------------------------------------- */

jsond_encoder *jsond_encoder_new(json_t *doc)
{
    jsond_encoder *e = malloc(sizeof *e);
    if (!e)
        return NULL;
    state_init(&e->st, doc);
    e->doc = json_incref(doc);
    return e;
}

void jsond_encoder_free(jsond_encoder *e)
{
    if (!e)
        return;
    state_clear(&e->st);
    json_decref(e->doc);
    free(e);
}

int jsond_encoder_run(jsond_encoder *e, struct evbuffer *out, size_t limit)
{
    state *st = &e->st;
    if (st->failed)
        return -1;
    if (st->done)
        return 1;
    sink k = {.p = nowhere,
              .end = nowhere,
              .base = nowhere,
              .out = out,
              .limit = limit,
              .total = st->total};
    int r = encode(st, &k);
    if (commit(&k) < 0)
        r = -1;
    st->total = k.total;
    if (r < 0) {
        st->failed = 1;
        state_clear(st);
    } else if (r == 1) {
        st->done = 1;
        state_clear(st);
    }
    return r;
}

/* The quick path, for the small documents most replies are: a plain
 * recursive walk into the caller's buffer of what needs no state kept (no
 * reals, strings without escapes, little nesting). 0 written, -1 left to
 * the encoder (what was written is then a part, to be thrown away). Its
 * bytes are the encoder's for what it takes: the same digits, the same
 * member order, strings as they are between quotes. */
#define QUICK_DEPTH 8
static int quick(const json_t *j, char **pp, char *end, int depth)
{
    char *p = *pp;
    size_t n;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        void *iter = json_object_iter((json_t *)j);
        if (depth == QUICK_DEPTH || end - p < 2)
            return -1;
        *p++ = '{';
        for (int first = 1; iter; first = 0, iter = json_object_iter_next((json_t *)j, iter)) {
            const char *key = json_object_iter_key(iter);
            n = json_object_iter_key_len(iter);
            if ((size_t)(end - p) < n + 4 || jsond_plain_run((const unsigned char *)key, n) != n)
                return -1;
            if (!first)
                *p++ = ',';
            *p++ = '"';
            memcpy(p, key, n);
            p += n;
            *p++ = '"';
            *p++ = ':';
            if (quick(json_object_iter_value(iter), &p, end, depth + 1) < 0)
                return -1;
        }
        if (p == end)
            return -1;
        *p++ = '}';
        break;
    }
    case JSON_ARRAY: {
        size_t size = json_array_size(j);
        if (depth == QUICK_DEPTH || end - p < 2)
            return -1;
        *p++ = '[';
        for (size_t i = 0; i < size; i++) {
            if (i && p < end)
                *p++ = ',';
            if (quick(json_array_get(j, i), &p, end, depth + 1) < 0)
                return -1;
        }
        if (p == end)
            return -1;
        *p++ = ']';
        break;
    }
    case JSON_STRING:
        n = json_string_length(j);
        if ((size_t)(end - p) < n + 2 ||
            jsond_plain_run((const unsigned char *)json_string_value(j), n) != n)
            return -1;
        *p++ = '"';
        memcpy(p, json_string_value(j), n);
        p += n;
        *p++ = '"';
        break;
    case JSON_INTEGER:
        if (end - p < TOKEN_ROOM)
            return -1;
        p += put_integer(p, json_integer_value(j));
        break;
    case JSON_TRUE:
    case JSON_FALSE:
    case JSON_NULL:
        n = json_is_true(j) ? 4 : json_is_false(j) ? 5 : 4;
        if ((size_t)(end - p) < n)
            return -1;
        memcpy(p, json_is_true(j) ? "true" : json_is_false(j) ? "false" : "null", n);
        p += n;
        break;
    default: /* a real: the encoder's rules */
        return -1;
    }
    *pp = p;
    return 0;
}

int jsond_encode_buf(const json_t *doc, char *buf, size_t cap, size_t *len, struct evbuffer **spill,
                     size_t limit)
{
    char *p = buf + *len;
    if (doc && quick(doc, &p, buf + cap, 0) == 0) {
        *len = (size_t)(p - buf);
        return 0;
    }
    state st;
    state_init(&st, doc);
    sink k = {.p = buf + *len,
              .end = buf + cap,
              .base = buf + *len,
              .out = NULL,
              .limit = limit,
              .total = 0,
              .buf = buf,
              .len = len,
              .spill = spill,
              .full = 0};
    int r = encode(&st, &k);
    if (k.out) {
        if (commit(&k) < 0)
            r = -1;
    } else {
        *len = (size_t)(k.p - buf);
    }
    state_clear(&st);
    return k.full || r == 0 ? 1 : r == 1 ? 0 : -1;
}

int jsond_encode(struct evbuffer *out, const json_t *doc)
{
    char buf[4096];
    size_t n = 0;
    struct evbuffer *spill = out;
    if (jsond_encode_buf(doc, buf, sizeof buf, &n, &spill, SIZE_MAX) < 0)
        return -1;
    return n ? evbuffer_add(out, buf, n) : 0;
}

static jsond_produce producer_proceed(void *self, struct evbuffer *out, size_t want)
{
    size_t have = evbuffer_get_length(out);
    int r = jsond_encoder_run(self, out, want > SIZE_MAX - have ? SIZE_MAX : have + want);
    return r < 0 ? JSOND_PRODUCE_ERROR : r ? JSOND_PRODUCE_DONE : JSOND_PRODUCE_MORE;
}

static void producer_stop(void *self)
{
    jsond_encoder_free(self);
}

const jsond_producer_ops jsond_encoder_producer = {
    .proceed = producer_proceed,
    .stop = producer_stop,
    .bind = NULL,
};
