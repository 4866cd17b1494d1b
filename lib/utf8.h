/* utf8.h: the byte-level checks that the encoder, the decoder and proto.c
 * share, so that they agree on what a JSON string may hold.
 *
 * jansson accepts UTF-8 by utf8_check_first/utf8_check_full: no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing past U+10FFFF, nothing
 * truncated. jsond_utf8_len() is that rule, byte ranges instead of a decoded
 * value. jsond_plain_run() finds, 16 bytes at a time (SSE2) or 8 (portable
 * SWAR), the run of bytes a JSON string holds as they are both in the text
 * and in the value: printable ASCII but '"' and '\\'. The encoder copies
 * such a run without escaping it, the decoder without unescaping it.
 *
 * Thread: any; nothing here holds state.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_UTF8_H
#define JSOND_UTF8_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Bytes of the valid UTF-8 character at s (n > 0 bytes left), or 0. */
static inline size_t jsond_utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        lo = s[0] == 0xe0 ? 0xa0 : 0x80; /* no overlong forms */
        hi = s[0] == 0xed ? 0x9f : 0xbf; /* no surrogates */
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        lo = s[0] == 0xf0 ? 0x90 : 0x80;
        hi = s[0] == 0xf4 ? 0x8f : 0xbf; /* up to U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Writes code point c (at most U+10FFFF, no surrogate) as UTF-8 at q; the
 * number of bytes. */
static inline size_t jsond_utf8_put(unsigned char *q, uint32_t c)
{
    if (c < 0x80) {
        q[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        q[0] = (unsigned char)(0xC0 | (c >> 6));
        q[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        q[0] = (unsigned char)(0xE0 | (c >> 12));
        q[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        q[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    q[0] = (unsigned char)(0xF0 | (c >> 18));
    q[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    q[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    q[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

/* The length of the run of bytes at `s` (at most n) that are not '"',
 * '\\', a control byte, or a byte of a UTF-8 sequence (which is checked on
 * its own). */
static inline size_t jsond_plain_run(const unsigned char *s, size_t n)
{
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(' ');
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        /* Signed: bytes >= 0x80 are negative, below ' ' too. */
        __m128i bad =
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                         _mm_cmplt_epi8(v, space));
        unsigned m = (unsigned)_mm_movemask_epi8(bad);
        if (m)
            return i + (size_t)__builtin_ctz(m);
    }
#endif
    /* SWAR: a byte's high bit is set in `bad` if it is < 0x20, '"', '\\'
     * or >= 0x80. The borrows of the subtractions can set false bits only
     * above a true one, so the lowest set bit is exact. */
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    for (; i + 8 <= n; i += 8) {
        uint64_t w, q, b;
        memcpy(&w, s + i, 8);
        q = w ^ (ones * '"');
        b = w ^ (ones * '\\');
        uint64_t bad =
            (((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b) | w) & highs;
        if (bad) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return i + (size_t)(__builtin_ctzll(bad) >> 3);
#else
            break;
#endif
        }
    }
    for (; i < n; i++) {
        unsigned c = s[i];
        if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
            break;
    }
    return i;
}

#endif /* JSOND_UTF8_H */
