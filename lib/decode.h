/* decode.h: a strict JSON decoder that builds jansson trees, faster than
 * json_loadb().
 *
 * json_loadb() reads its text a byte at a time through a stream of
 * callbacks and copies every token into a growing buffer before it makes a
 * value of it: on the request path that costs about as much as all the
 * rest. The decoder reads the text in place: a string without escapes goes
 * from the text to json_stringn_nocheck() in one copy, found 16 bytes at a
 * time; integers are read by hand; nothing is allocated but the values (and
 * a scratch buffer for long escaped strings).
 *
 * It accepts exactly what json_loadb(text, len, flags, NULL) accepts, with
 * flags 0 or JSON_DECODE_ANY, and builds the same tree: the same values, a
 * duplicate key's last value at its first place, the same depth limit
 * (JSON_PARSER_MAX_DEPTH values deep, scalars counted), strtod()'s reals
 * (overflow refused, underflow accepted). That includes one quirk of
 * jansson's lexer: a single NUL byte right after a number or a literal is
 * ignored ("[1\0]" is [1]), because the byte the lexer reads past the token
 * and puts back is lost when it is NUL.
 *
 * Thread: any; nothing is shared. It recurses once a nesting level, as
 * jansson does, so the depth limit bounds the stack.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_DECODE_H
#define JSOND_DECODE_H

#include <jansson.h>
#include <stddef.h>

/* Like json_loadb(text, len, flags, NULL), flags 0 or JSON_DECODE_ANY (any
 * other flag: NULL). NULL when the text is not valid JSON (or out of
 * memory). The text need not end in a NUL. */
json_t *jsond_decode(const char *text, size_t len, size_t flags);

typedef struct jsond_field {
    const char *name; /* the member's key, decoded (escapes undone) */
    size_t name_len;  /* strlen(name): keys are told apart by length first */
    json_t *value;    /* set by jsond_decode_fields(): a new reference, or NULL */
    /* Set by the caller: the member's value is validated but not built;
     * its text is given instead, in place within the decoded text (NULL
     * when absent). For a member read cheaper than built, such as a short
     * string. */
    int raw;
    const char *text;
    size_t len;
} jsond_field;

/* For the envelope of a request. When `text` is a JSON object, decodes only
 * the members whose key is one of fields[i].name into fields[i].value (a new
 * reference; a later duplicate key replaces an earlier one, as in jansson);
 * every other member is validated and skipped without building anything.
 * Every fields[i].value (or, raw, .text and .len) is set, NULL when the
 * member is absent (what it held before is overwritten, not released).
 *
 * Returns 1 when `text` is a valid JSON object; 0 when it is valid JSON (as
 * with JSON_DECODE_ANY) but not an object, and nothing is set (for an array,
 * the caller then uses jsond_decode()); -1 when it is not valid JSON (or out
 * of memory), and every fields[i].value is NULL (anything set was released). */
int jsond_decode_fields(const char *text, size_t len, jsond_field *fields, size_t nfields);

#endif /* JSOND_DECODE_H */
