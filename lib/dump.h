/* dump.h: JSON serialized into a buffer on the stack, spilling into an
 * evbuffer only when it does not fit.
 *
 * Most replies and stream items are small: one pass of the encoder
 * (encode.h) into JSOND_DUMP_BUF bytes, then one copy to where they go. A
 * larger one spills its head into `spill` (given, or made on the first
 * overflow), whose chains then move without a copy. Whatever thread owns
 * the dumper; nothing here is shared.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_DUMP_H
#define JSOND_DUMP_H

#include <event2/buffer.h>
#include <jansson.h>
#include <stddef.h>
#include <string.h>

#define JSOND_DUMP_BUF 4096

typedef struct jsond_dumper {
    char buf[JSOND_DUMP_BUF];
    size_t n;               /* bytes in buf: the text's tail */
    struct evbuffer *spill; /* its head, if it did not fit; NULL or given */
    size_t max;             /* if not 0, the most text it may hold, spill included */
} jsond_dumper;

/* Starts an empty text, with its head going to `spill` (NULL: made when
 * needed). The buffer is left as it is: zeroing 4 KB per reply would cost
 * more than a small reply's whole encoding. */
static inline void jsond_dumper_init(jsond_dumper *d, struct evbuffer *spill)
{
    d->n = 0;
    d->spill = spill;
    d->max = 0;
}

/* Starts an empty text of at most about `max` bytes, for a caller with a
 * better way to write a larger one (the encoder, writing as the output
 * takes it): JSOND_DUMP_BUF keeps it in the buffer, and nothing spills;
 * more lets `spill` (NULL: made when needed) take the head. The appends
 * below return 1 when the text goes past that; what the dumper then holds
 * is a part, to be thrown away. */
static inline void jsond_dumper_init_bounded(jsond_dumper *d, struct evbuffer *spill, size_t max)
{
    jsond_dumper_init(d, spill);
    d->max = max;
}

/* jsond_dump_bytes() of bytes that do not fit the buffer. */
int jsond_dump_spill(jsond_dumper *d, const char *p, size_t len);

/* Appends raw bytes. 0, -1 out of memory, or (bounded) 1 past the bound.
 * Inline: most appends are a few constant bytes (an envelope's), copied
 * then without a call. */
static inline int jsond_dump_bytes(jsond_dumper *d, const char *p, size_t len)
{
    if (d->n + len <= sizeof d->buf) {
        memcpy(d->buf + d->n, p, len);
        d->n += len;
        return 0;
    }
    return jsond_dump_spill(d, p, len);
}

/* Appends `doc`, compact, exactly as json_dumps(JSON_COMPACT |
 * JSON_ENCODE_ANY) writes it. 0, or -1 out of memory or a document
 * json_dumps refuses (see encode.h); part of it may have been appended.
 * Bounded: 1 when it does not fit. */
int jsond_dump(jsond_dumper *d, const json_t *doc);

#endif /* JSOND_DUMP_H */
