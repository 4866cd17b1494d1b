/* producer.h: a reply made piece by piece (the h2o generator model).
 *
 * A reply too big to hold, or one whose parts are not all known yet (a
 * batch whose members are still running, a stream fed by a worker), is a
 * producer. The output that owns it asks it for more only while less than
 * its watermark is buffered, so memory stays bounded whatever the reply's
 * size. A producer that has nothing to give yet says so (WAIT) and is asked
 * again only once whoever feeds it calls jsond_output_wake() on the output.
 *
 * Loop thread only: an output calls its producers from its write path.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_PRODUCER_H
#define JSOND_PRODUCER_H

#include <event2/buffer.h>
#include <stddef.h>

/* What proceed() reports. */
typedef enum jsond_produce {
    JSOND_PRODUCE_ERROR = -1, /* cannot go on: the connection closes (part of
                                 the reply may be on the wire already) */
    JSOND_PRODUCE_MORE = 0,   /* appended at least one byte; more remains */
    JSOND_PRODUCE_DONE = 1,   /* the reply is complete (this call may add nothing) */
    JSOND_PRODUCE_WAIT = 2,   /* nothing more for now (this call may have added
                                 some): ask again after jsond_output_wake() */
} jsond_produce;

struct jsond_output;

typedef struct jsond_producer_ops {
    /* Appends roughly `want` more bytes of the reply to `out` (a little
     * more is tolerated) and says how it stands. MORE without a byte
     * added is taken for a bug and cuts the reply: asking again would spin
     * the loop. */
    jsond_produce (*proceed)(void *self, struct evbuffer *out, size_t want);
    /* Releases the producer. Called exactly once: after the proceed that
     * said DONE or ERROR, or when the output is freed before that. */
    void (*stop)(void *self);
    /* Optional (NULL: none): names the output that will ask, before the
     * first proceed, so a producer fed from elsewhere knows whom to wake. */
    void (*bind)(void *self, struct jsond_output *out);
} jsond_producer_ops;

#endif /* JSOND_PRODUCER_H */
