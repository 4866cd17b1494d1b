/* decode.c: the decoder (see decode.h).
 *
 * One recursive descent serves both ways of reading a value: building it
 * (`out` not NULL) and only checking it (`out` NULL, for the members
 * jsond_decode_fields() skips), so that what they accept cannot differ.
 * Each rule names the part of jansson's load.c it follows.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "utf8.h"

/* Escaped strings are unescaped into a scratch buffer of this size on the
 * stack, or on the heap once they need more. */
#define SCRATCH 512
/* A real's text is copied here, to end it with the NUL strtod() needs. */
#define REAL_BUF 64

#if JSON_INTEGER_IS_LONG_LONG
#define JINT_MAX LLONG_MAX /* strtoll()'s range, as jansson's json_strtoint */
#else
#define JINT_MAX LONG_MAX
#endif

typedef struct parser {
    const unsigned char *p, *end;
    size_t depth;       /* values open, the one being read included */
    unsigned char *buf; /* the scratch; below `top`, escaped keys whose */
    size_t top, cap;    /* values are being read */
    unsigned char small[SCRATCH];
} parser;

static int is_digit(unsigned c)
{
    return c - '0' < 10;
}

static void skip_space(parser *ps)
{
    const unsigned char *p = ps->p, *end = ps->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

/* Whether only white space is left (jansson's "end of file expected"). */
static int at_end(parser *ps)
{
    skip_space(ps);
    return ps->p == ps->end;
}

/* jansson's lexer reads the byte after a number or a literal and puts it
 * back; a NUL put back is lost (stream_get() takes a NUL in its buffer for
 * an empty buffer), so one NUL there is skipped. */
static const unsigned char *past_nul(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p == '\0' ? p + 1 : p;
}

/* ---- strings ---------------------------------------------------------- */

/* Makes the scratch hold at least `need` bytes, keeping its first `used`:
 * -1 out of memory. */
static int reserve(parser *ps, size_t used, size_t need)
{
    if (need <= ps->cap)
        return 0;
    size_t cap = ps->cap * 2 > need ? ps->cap * 2 : need;
    unsigned char *b = ps->buf == ps->small ? malloc(cap) : realloc(ps->buf, cap);
    if (!b)
        return -1;
    if (ps->buf == ps->small)
        memcpy(b, ps->small, used);
    ps->buf = b;
    ps->cap = cap;
    return 0;
}

/* The four hex digits at p (either case), or -1. */
static int32_t hex4(const unsigned char *p, const unsigned char *end)
{
    int32_t v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], lower = c | 0x20;
        if (is_digit(c))
            v = v << 4 | (int32_t)(c - '0');
        else if (lower - 'a' < 6)
            v = v << 4 | (int32_t)(lower - 'a' + 10);
        else
            return -1;
    }
    return v;
}

/* Past the bytes a string holds as they are: plain runs and valid UTF-8
 * characters. It stops at '"', '\\', a control byte, invalid UTF-8 or the
 * end. */
static const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end)
{
    for (;;) {
        size_t len;
        p += jsond_plain_run(p, (size_t)(end - p));
        if (p == end || *p < 0x80 || !(len = jsond_utf8_len(p, (size_t)(end - p))))
            return p;
        p += len;
    }
}

/* The escape after a '\\' at *pp, unescaped at q (room for 4 bytes); *pp
 * moves past it. Its length, or 0 if invalid: an unknown escape, a lone or
 * unpaired surrogate, or \u0000 (jansson refuses a NUL in keys and, without
 * JSON_ALLOW_NUL, in strings). */
static size_t unescape(const unsigned char **pp, const unsigned char *end, unsigned char *q)
{
    const unsigned char *p = *pp + 1;
    int32_t c;
    if (p == end)
        return 0;
    *pp = p + 1;
    switch (*p) {
    case '"':
    case '\\':
    case '/':
        *q = *p;
        return 1;
    case 'b':
        *q = '\b';
        return 1;
    case 'f':
        *q = '\f';
        return 1;
    case 'n':
        *q = '\n';
        return 1;
    case 'r':
        *q = '\r';
        return 1;
    case 't':
        *q = '\t';
        return 1;
    case 'u':
        break;
    default:
        return 0;
    }
    p++;
    if ((c = hex4(p, end)) <= 0 || (c >= 0xDC00 && c <= 0xDFFF))
        return 0;
    p += 4;
    if (c >= 0xD800 && c <= 0xDBFF) {
        int32_t low = end - p >= 2 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2, end) : -1;
        if (low < 0xDC00 || low > 0xDFFF)
            return 0;
        p += 6;
        c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
    }
    *pp = p;
    return jsond_utf8_put(q, (uint32_t)c);
}

/* The rest of a string for scan_string(), from `p`, where its first run
 * of plain ASCII (starting at `from`) stopped: UTF-8, escapes, or an error.
 * Out of line, so that the common case keeps few registers. */
__attribute__((noinline)) static int scan_rest(parser *ps, const unsigned char *from,
                                               const unsigned char *p, const char **s, size_t *n)
{
    const unsigned char *end = ps->end;
    p = skip_plain(p, end);
    if (p < end && *p == '"') {
        *s = (const char *)from;
        *n = (size_t)(p - from);
        ps->p = p + 1;
        return 0;
    }
    size_t at = ps->top;
    for (;;) {
        size_t run = (size_t)(p - from), len;
        if (p == end || (*p != '"' && *p != '\\') || reserve(ps, at, at + run + 4) < 0)
            return -1;
        memcpy(ps->buf + at, from, run);
        at += run;
        if (*p == '"')
            break;
        if (!(len = unescape(&p, end, ps->buf + at)))
            return -1;
        at += len;
        from = p;
        p = skip_plain(p, end);
    }
    *s = (const char *)ps->buf + ps->top;
    *n = at - ps->top;
    ps->p = p + 1;
    return 1;
}

/* The string whose opening quote is at ps->p, decoded into *s and *n; ps->p
 * moves past it. 0: *s is in the text (no escapes, nothing copied); 1: in
 * the scratch at ps->top; -1 invalid or out of memory. */
static inline int scan_string(parser *ps, const char **s, size_t *n)
{
    const unsigned char *end = ps->end, *from = ps->p + 1;
    const unsigned char *p = from + jsond_plain_run(from, (size_t)(end - from));
    if (p < end && *p == '"') {
        *s = (const char *)from;
        *n = (size_t)(p - from);
        ps->p = p + 1;
        return 0;
    }
    return scan_rest(ps, from, p, s, n);
}

/* ---- numbers and literals --------------------------------------------- */

/* strtod() of the n bytes at s, as jansson's jsonp_strtod(): in the
 * locale's decimal point, an overflow (+-HUGE_VAL, ERANGE) refused and an
 * underflow taken. -1 refused or out of memory. */
static int to_real(const unsigned char *s, size_t n, double *v)
{
    char small[REAL_BUF], *b = n < sizeof small ? small : malloc(n + 1);
    if (!b)
        return -1;
    memcpy(b, s, n);
    b[n] = '\0';
    char point = *localeconv()->decimal_point;
    if (point != '.') {
        char *dot = memchr(b, '.', n);
        if (dot)
            *dot = point;
    }
    errno = 0;
    *v = strtod(b, NULL);
    int overflow = isinf(*v) && errno == ERANGE;
    if (b != small)
        free(b);
    return overflow ? -1 : 0;
}

/* A number, as jansson's lex_scan_number(): '-'?, then '0' not followed by
 * a digit or [1-9][0-9]*; an integer (in json_int_t's range) unless '.',
 * 'e' or 'E' follows, else a real: '.' and digits, then 'e' or 'E', a sign
 * and digits. */
static int number(parser *ps, json_t **out)
{
    const unsigned char *start = ps->p, *end = ps->end, *p = start;
    int neg = *p == '-', big = 0;
    unsigned long long u = 0, limit = (unsigned long long)JINT_MAX + (unsigned)neg;
    p += neg;
    if (p == end || !is_digit(*p))
        return -1;
    if (*p == '0') {
        if (++p < end && is_digit(*p))
            return -1;
    } else {
        for (; p < end && is_digit(*p); p++) {
            unsigned d = *p - '0';
            if (u > (limit - d) / 10)
                big = 1;
            else
                u = u * 10 + d;
        }
    }
    if (p == end || (*p != '.' && *p != 'e' && *p != 'E')) {
        if (big)
            return -1;
        ps->p = past_nul(p, end);
        /* -(u - 1) - 1: -u without overflow when u is JINT_MAX + 1. */
        if (out && !(*out = json_integer(neg && u ? -(json_int_t)(u - 1) - 1 : (json_int_t)u)))
            return -1;
        return 0;
    }
    if (*p == '.') {
        if (++p == end || !is_digit(*p))
            return -1;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        if (++p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return -1;
        while (p < end && is_digit(*p))
            p++;
    }
    double v;
    if (to_real(start, (size_t)(p - start), &v) < 0)
        return -1;
    ps->p = past_nul(p, end);
    if (out && !(*out = json_real(v)))
        return -1;
    return 0;
}

/* true, false or null: jansson lexes a run of letters, so "truex" is one
 * invalid token, not true and then x. */
static int literal(parser *ps, json_t **out)
{
    const unsigned char *s = ps->p, *end = ps->end, *p = s;
    json_t *v;
    while (p < end && (unsigned)(*p | 0x20) - 'a' < 26)
        p++;
    size_t n = (size_t)(p - s);
    if (n == 4 && memcmp(s, "true", 4) == 0)
        v = json_true();
    else if (n == 5 && memcmp(s, "false", 5) == 0)
        v = json_false();
    else if (n == 4 && memcmp(s, "null", 4) == 0)
        v = json_null();
    else
        return -1;
    ps->p = past_nul(p, end);
    if (out)
        *out = v;
    return 0;
}

/* ---- containers ------------------------------------------------------- */

static int parse_value(parser *ps, json_t **out);

/* Whether the n bytes at a and b are the same: up to 8 in two loads of
 * each (overlapping when shorter), for the short keys of an envelope. */
static int same_bytes(const char *a, const char *b, size_t n)
{
    if (n >= 4 && n <= 8) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, a, 4);
        memcpy(&a1, a + n - 4, 4);
        memcpy(&b0, b, 4);
        memcpy(&b1, b + n - 4, 4);
        return a0 == b0 && a1 == b1;
    }
    if (n >= 2 && n < 4) {
        uint16_t a0, a1, b0, b1;
        memcpy(&a0, a, 2);
        memcpy(&a1, a + n - 2, 2);
        memcpy(&b0, b, 2);
        memcpy(&b1, b + n - 2, 2);
        return a0 == b0 && a1 == b1;
    }
    return memcmp(a, b, n) == 0;
}

/* The field named exactly `key`, or NULL. */
static jsond_field *find_field(jsond_field *fields, size_t nfields, const char *key, size_t klen)
{
    for (size_t i = 0; i < nfields; i++)
        if (fields[i].name_len == klen && same_bytes(fields[i].name, key, klen))
            return &fields[i];
    return NULL;
}

/* Past the opening bracket at ps->p: 1 when `close` follows at once. */
static int open_container(parser *ps, unsigned char close)
{
    ps->p++;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return 1;
    }
    return 0;
}

/* After a member or an element: 1 `close` ends the container, 0 a ','
 * comes before the next, -1 anything else. */
static int next_item(parser *ps, unsigned char close)
{
    skip_space(ps);
    if (ps->p == ps->end)
        return -1;
    unsigned char c = *ps->p++;
    return c == close ? 1 : c == ',' ? 0 : -1;
}

/* A member of the object at ps->p (at its key): into `obj`, or into the
 * field its key names, or checked only. */
static int member(parser *ps, json_t *obj, jsond_field *fields, size_t nfields)
{
    const char *key;
    size_t klen, mark = ps->top;
    skip_space(ps);
    if (ps->p == ps->end || *ps->p != '"')
        return -1;
    int scratch = scan_string(ps, &key, &klen);
    if (scratch < 0)
        return -1;
    ps->top += scratch ? klen : 0; /* keep the key while its value is read */
    jsond_field *f = fields ? find_field(fields, nfields, key, klen) : NULL;
    skip_space(ps);
    if (ps->p == ps->end || *ps->p != ':')
        return -1;
    ps->p++;
    json_t *v = NULL;
    skip_space(ps);
    const unsigned char *start = ps->p;
    if (parse_value(ps, obj || (f && !f->raw) ? &v : NULL) < 0)
        return -1;
    if (scratch) {
        key = (const char *)ps->buf + mark; /* the scratch may have moved */
        ps->top = mark;
    }
    if (f && f->raw) {
        f->text = (const char *)start;
        f->len = (size_t)(ps->p - start);
        return 0;
    }
    if (f) {
        json_decref(f->value);
        f->value = v;
        return 0;
    }
    return obj ? json_object_setn_new_nocheck(obj, key, klen, v) : 0;
}

/* The object at ps->p, as jansson's parse_object(): into *out, or only into
 * the `fields` it names (jsond_decode_fields), or checked only. */
static int parse_object(parser *ps, json_t **out, jsond_field *fields, size_t nfields)
{
    json_t *obj = NULL;
    if (out && !(obj = json_object()))
        return -1;
    int r = open_container(ps, '}');
    while (r == 0 && (r = member(ps, obj, fields, nfields)) == 0)
        r = next_item(ps, '}');
    if (r < 0) {
        json_decref(obj);
        return -1;
    }
    if (out)
        *out = obj;
    return 0;
}

/* The array at ps->p, as jansson's parse_array(). */
static int parse_array(parser *ps, json_t **out)
{
    json_t *arr = NULL, *v = NULL;
    if (out && !(arr = json_array()))
        return -1;
    int r = open_container(ps, ']');
    while (r == 0) {
        skip_space(ps); /* after a ',' */
        if (parse_value(ps, arr ? &v : NULL) < 0 || (arr && json_array_append_new(arr, v) < 0))
            r = -1;
        else
            r = next_item(ps, ']');
    }
    if (r < 0) {
        json_decref(arr);
        return -1;
    }
    if (out)
        *out = arr;
    return 0;
}

/* A value, as jansson's parse_value(): every value counts a level of depth,
 * a scalar too, so JSON_PARSER_MAX_DEPTH empty arrays nest, but a scalar in
 * as many does not. White space before it is the caller's to skip: a
 * member's value, whose text starts after it, skips it once. */
static int parse_value(parser *ps, json_t **out)
{
    int r;
    if (++ps->depth > JSON_PARSER_MAX_DEPTH || ps->p == ps->end)
        return -1;
    switch (*ps->p) {
    case '{':
        r = parse_object(ps, out, NULL, 0);
        break;
    case '[':
        r = parse_array(ps, out);
        break;
    case '"': {
        const char *s;
        size_t n;
        r = scan_string(ps, &s, &n);
        if (r >= 0 && out && !(*out = json_stringn_nocheck(s, n)))
            r = -1;
        break;
    }
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        r = number(ps, out);
        break;
    default:
        r = literal(ps, out);
        break;
    }
    if (r < 0)
        return -1;
    ps->depth--;
    return 0;
}

/* ---- the API ---------------------------------------------------------- */

static void parser_init(parser *ps, const char *text, size_t len)
{
    ps->p = (const unsigned char *)text;
    ps->end = ps->p + len;
    ps->depth = 0;
    ps->buf = ps->small;
    ps->top = 0;
    ps->cap = sizeof ps->small;
}

static void parser_fini(parser *ps)
{
    if (ps->buf != ps->small)
        free(ps->buf);
}

json_t *jsond_decode(const char *text, size_t len, size_t flags)
{
    parser ps;
    json_t *doc = NULL;
    if (!text || (flags & ~(size_t)JSON_DECODE_ANY))
        return NULL;
    parser_init(&ps, text, len);
    skip_space(&ps);
    /* Without JSON_DECODE_ANY, only an object or an array at the top. */
    if (((flags & JSON_DECODE_ANY) || (ps.p < ps.end && (*ps.p == '{' || *ps.p == '['))) &&
        parse_value(&ps, &doc) == 0 && !at_end(&ps)) {
        json_decref(doc);
        doc = NULL;
    }
    parser_fini(&ps);
    return doc;
}

int jsond_decode_fields(const char *text, size_t len, jsond_field *fields, size_t nfields)
{
    parser ps;
    int r;
    for (size_t i = 0; i < nfields; i++) {
        fields[i].value = NULL;
        fields[i].text = NULL;
        fields[i].len = 0;
    }
    if (!text)
        return -1;
    parser_init(&ps, text, len);
    skip_space(&ps);
    if (ps.p < ps.end && *ps.p == '{') {
        ps.depth = 1; /* the object's own level, as parse_value() counts */
        r = parse_object(&ps, NULL, fields, nfields) == 0 && at_end(&ps) ? 1 : -1;
    } else {
        r = parse_value(&ps, NULL) == 0 && at_end(&ps) ? 0 : -1;
    }
    parser_fini(&ps);
    if (r < 0) {
        for (size_t i = 0; i < nfields; i++) {
            json_decref(fields[i].value);
            fields[i].value = NULL;
            fields[i].text = NULL;
            fields[i].len = 0;
        }
    }
    return r;
}
