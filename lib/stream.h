/* stream.h: one JSON array fed item by item, from a worker or the loop.
 *
 * A stream has two sides. The handler's side (jsond_stream_begin/item/end
 * in jsond.h, on the thread the handler runs on) serializes each item and
 * appends it to a bounded byte queue; the loop's side is a producer
 * (producer.h) that the connection's output drains as its socket takes
 * bytes. A worker that finds the queue at the watermark blocks on a
 * condition variable until the loop takes bytes: back-pressure reaches
 * legacy code, and the server holds at most about two watermarks per
 * stream (the queue and the output). On the loop the handler's side never
 * blocks. The loop is woken through its inbox when the queue gains bytes
 * while the producer waits for them: at once for the first, then at most
 * once a millisecond, so that small items reach the socket in batches.
 *
 * The stream is freed once both sides let go: the handler's through
 * jsond_stream_release(), the loop's through the producer's stop.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_STREAM_H
#define JSOND_STREAM_H

#include <jansson.h>
#include <stddef.h>

#include "inbox.h"
#include "producer.h"

typedef struct jsond_stream jsond_stream;

struct event_base;

/* The handler's side of a new stream, for route `route` (named in logs),
 * whose queue holds up to `high_water` bytes, a blocked worker waiting at
 * most `wait_ms` for room. Wake-ups go through `inbox` to the loop that
 * runs `base`. NULL when out of memory. Any thread. */
jsond_stream *jsond_stream_new(const char *route, size_t high_water, unsigned wait_ms,
                               struct event_base *base, jsond_inbox *inbox);

/* The loop's side: the producer to reply with (a reference is taken for it).
 * Handler's thread, once. */
const jsond_producer_ops *jsond_stream_producer(jsond_stream *s);

/* 1 once jsond_stream_producer() was called: the reply is on its way and
 * an error can only cut it. Handler's thread. */
int jsond_stream_handed(const jsond_stream *s);

/* Appends one item (the reference is stolen), after "[" or ",". Blocks as
 * described above when `may_block`. Returns 0, or -1 when the stream can
 * take no more: the client is gone, the wait ran out, or out of memory (the
 * reason is logged once). Handler's thread. */
int jsond_stream_push(jsond_stream *s, json_t *item, int may_block);

/* Closes the array. Returns 0, or -1 as jsond_stream_push(). */
int jsond_stream_finish(jsond_stream *s);

/* The handler lets go. A stream not finished by then fails: the producer
 * reports an error, so the client sees the array cut. Handler's thread. */
void jsond_stream_release(jsond_stream *s);

#endif /* JSOND_STREAM_H */
