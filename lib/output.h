/* output.h: the write path. The only code in jsond that writes to a socket.
 *
 * Bytes are queued in memory and written by the loop when the socket is
 * writable, never with a blocking call, so a 10 MB reply to a peer that does
 * not read costs a buffer, not a stalled loop or an EAGAIN. Replies too big
 * to hold come from producers (the h2o generator model): the output asks its
 * current producer for more only while less than `high_water` bytes wait, so
 * memory stays bounded by the watermark whatever the reply's size.
 *
 * Every function here must be called on the loop thread that owns the
 * output's event base; writes from any other context are refused and logged.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_OUTPUT_H
#define JSOND_OUTPUT_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdint.h>

#include "producer.h"
#include "timeout.h"

typedef struct jsond_output jsond_output;

typedef enum jsond_output_event {
    JSOND_OUTPUT_DRAINED, /* everything queued has been written */
    JSOND_OUTPUT_ROOM,    /* no longer full (see jsond_output_full) */
    JSOND_OUTPUT_TIMEOUT, /* the peer took nothing for timeout_ms */
    JSOND_OUTPUT_ERROR,   /* the socket failed (reset, EPIPE) or a producer failed */
} jsond_output_event;

typedef void (*jsond_output_cb)(jsond_output *out, jsond_output_event ev, void *arg);

typedef struct jsond_output_opts {
    size_t high_water;             /* producers are asked for more only below this */
    unsigned timeout_ms;           /* no progress for this long: TIMEOUT (0: never) */
    unsigned long long *bytes_out; /* a shared counter to add to, or NULL */
    jsond_timeouts *timeouts;      /* the loop's timer queues, or NULL */
} jsond_output_opts;

/* Creates the output for a connected, nonblocking socket it does not own.
 * `cb` reports events; it may free the output. NULL on failure. */
jsond_output *jsond_output_new(struct event_base *base, evutil_socket_t fd,
                               const jsond_output_opts *opts, jsond_output_cb cb, void *arg);

/* Stops and releases queued producers and frees queued bytes. NULL is fine. */
void jsond_output_free(jsond_output *out);

/* Queues bytes after everything queued before. Returns at once: 0, or -1
 * when called off the loop thread (refused and logged, errno EPERM) or out
 * of memory. */
int jsond_output_write(jsond_output *out, const void *data, size_t len);

/* Moves every byte of `buf` (left empty) after everything queued before,
 * without copying. Returns as jsond_output_write(). */
int jsond_output_write_buffer(jsond_output *out, struct evbuffer *buf);

/* Queues a producer after everything queued before; its bytes follow in
 * order and bytes written later follow it. Ownership of `self` passes to the
 * output (ops->stop is always called), even when this fails. */
int jsond_output_produce(jsond_output *out, const jsond_producer_ops *ops, void *self);

/* The producer that said WAIT has more to give: it is asked again from the
 * loop (never from inside this call). Does nothing if it was not waiting. */
void jsond_output_wake(jsond_output *out);

/* The producer's feeder has failed while the socket takes nothing (it
 * would never be asked again): the output fails with JSOND_OUTPUT_ERROR,
 * from the loop (never from inside this call). */
void jsond_output_abort(jsond_output *out);

/* Bytes buffered in memory now (not counting what producers will make). */
size_t jsond_output_buffered(const jsond_output *out);

/* 1 when nothing is queued and no producer is pending. */
int jsond_output_idle(const jsond_output *out);

/* 1 while `high_water` bytes are buffered or a producer is pending: the
 * caller should stop making more output (stop reading requests) until the
 * ROOM or DRAINED event. */
int jsond_output_full(const jsond_output *out);

/* 1 while fewer than `high_water` bytes are buffered, whatever producers
 * are pending: a producer's feeder may make more. */
int jsond_output_room(const jsond_output *out);

/* Bytes handed to the kernel so far. */
uint64_t jsond_output_sent(const jsond_output *out);

#endif /* JSOND_OUTPUT_H */
