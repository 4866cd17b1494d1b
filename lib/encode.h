/* encode.h: an incremental JSON serializer that writes straight into an
 * evbuffer and can stop and resume anywhere.
 *
 * jansson's json_dumps() builds the whole text in one growing string, so a
 * 1 GB reply costs 1 GB (and more while the string doubles) before its first
 * byte is written. The encoder walks the json_t with an explicit stack and
 * writes compact text into space reserved in the output evbuffer: a caller
 * stops it once enough is buffered and runs it again once the socket has
 * taken that, so the text never exists whole.
 *
 * Its bytes are exactly json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY)'s:
 * insertion key order, jansson's escapes (\uXXXX in upper case, '/' and
 * U+007F as they are, UTF-8 passed through), "%lld" integers and "%.17g"
 * reals with jansson's ".0" and exponent rules. It fails where json_dumps
 * returns NULL: invalid UTF-8 in a string (made with json_stringn_nocheck),
 * a reference cycle, a NULL document. One deliberate difference: jansson
 * ignores an invalid UTF-8 *key* and emits broken JSON (an unterminated key);
 * the encoder fails instead.
 *
 * Strings are copied in runs: the bytes that need no escape are found 16 at a
 * time (SSE2) or 8 at a time (portable SWAR) and copied with one memcpy.
 *
 * The document must not change while an encoder walks it. An encoder belongs
 * to one thread at a time; nothing here is shared or locked.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_ENCODE_H
#define JSOND_ENCODE_H

#include <event2/buffer.h>
#include <jansson.h>
#include <stddef.h>

#include "producer.h"

/* How far past its limit one jsond_encoder_run() may take the buffer: it
 * checks the limit between reserved chunks and sizes the last chunk to end
 * at the limit, unless less than this is left before it. */
#define JSOND_ENCODE_STEP 64

typedef struct jsond_encoder jsond_encoder;

/* An encoder for `doc`, which it holds a reference to until freed. NULL out
 * of memory. */
jsond_encoder *jsond_encoder_new(json_t *doc);

/* Drops the reference and the encoder's state. NULL is fine. */
void jsond_encoder_free(jsond_encoder *e);

/* Appends more of the text to `out`, until `out` holds at least `limit`
 * bytes or the text is complete. Returns 1 done (the text is complete), 0
 * more to come (call again, typically once `out` has drained), -1 failed
 * (out of memory, or a document json_dumps refuses; part of the text may
 * be in `out`, and every later call fails too).
 *
 * The bound: a call appends at least one byte unless it returns 1 or -1, and
 * leaves at most max(limit, length before the call) + JSOND_ENCODE_STEP bytes
 * in `out`. A string is cut wherever the limit falls (an escape or a UTF-8
 * character stays whole). */
int jsond_encoder_run(jsond_encoder *e, struct evbuffer *out, size_t limit);

/* One shot: appends the whole text of `doc` to `out`. It is built in a stack
 * buffer, added at once when small, and continued in `out` once that is
 * full. 0, or -1 as jsond_encoder_run(). */
int jsond_encode(struct evbuffer *out, const json_t *doc);

/* One shot into a caller's buffer, for jsond_dumper: the text so far is
 * `*spill` (if not NULL) followed by buf[0 .. *len). The text of `doc` goes
 * after it in `buf` (of `cap` bytes) while it fits; past that, buf's bytes
 * move to the end of `*spill` (made when NULL), *len becomes 0 and the rest
 * follows in `*spill`. 0, or -1 as jsond_encoder_run() (part of the text may
 * have been added). The text is cut short, returning 1, when `spill` is NULL
 * and it does not fit `buf`, or once `*spill` holds `limit` bytes (SIZE_MAX:
 * no bound); what was written then is a part, to be thrown away. */
int jsond_encode_buf(const json_t *doc, char *buf, size_t cap, size_t *len, struct evbuffer **spill,
                     size_t limit);

/* An encoder as a producer (producer.h) whose `self` is a jsond_encoder:
 * proceed runs it with a limit `want` bytes past what `out` holds, stop
 * frees it. */
extern const jsond_producer_ops jsond_encoder_producer;

#endif /* JSOND_ENCODE_H */
