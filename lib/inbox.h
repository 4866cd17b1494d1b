/* inbox.h: the loop's inbox, how other threads hand work to an event loop.
 *
 * One inbox per event loop. Any thread posts an item (an intrusive node with
 * a callback); the loop runs the callbacks on its own thread, in the order
 * each poster posted them. This is the done-list of nginx's thread pool and
 * memcached's thread.c: posting is a short mutex-protected append, and the
 * loop is woken through an eventfd written only when the list goes from
 * empty to non-empty, so a burst of posts costs one write and one wake-up.
 *
 * The loop runs at most JSOND_INBOX_BATCH items per pass; if more are left
 * it schedules another pass instead of looping, so sockets and timers get
 * their turn between passes (the loop never does unbounded work in one
 * callback).
 *
 * Nothing here touches the event base off the loop thread: posters take the
 * inbox's mutex and write the eventfd, nothing else.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_INBOX_H
#define JSOND_INBOX_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

/* The most items one pass of the loop runs. */
#define JSOND_INBOX_BATCH 64

typedef struct jsond_inbox jsond_inbox;
typedef struct jsond_inbox_item jsond_inbox_item;

/* An item's callback; it gets the item back (embed the item in your own
 * struct and recover it with offsetof). The item belongs to the inbox from
 * jsond_inbox_post() until its callback is called; the callback may free it
 * or post it again. */
typedef void (*jsond_inbox_fn)(jsond_inbox_item *item);

struct jsond_inbox_item {
    jsond_inbox_fn run;     /* called on the loop thread */
    jsond_inbox_fn drop;    /* called by jsond_inbox_free() for an item never run; may be NULL */
    jsond_inbox_item *next; /* the inbox's: do not touch */
};

/* An inbox whose items run on the thread that runs `base`. Returns NULL (and
 * sets errno) on failure. Loop thread (or before the loop runs). */
jsond_inbox *jsond_inbox_new(struct event_base *base);

/* Frees the inbox. Call it on the loop thread (or once the loop has
 * stopped), and only once every thread that might post has stopped posting
 * (pools freed, workers joined): a post racing with free is a use after
 * free. Items still queued are not run: each is handed to its `drop`
 * callback, in order, so their owners can release them. NULL does nothing. */
void jsond_inbox_free(jsond_inbox *inbox);

/* Queues `item` (its `run` set) to run on the loop thread. Any thread,
 * including the loop's own; never blocks on the loop and cannot fail. Items
 * from one thread run in the order they were posted. */
void jsond_inbox_post(jsond_inbox *inbox, jsond_inbox_item *item);

/* What the inbox has done so far. Loop thread. */
typedef struct jsond_inbox_stats {
    uint64_t posted;  /* items posted */
    uint64_t ran;     /* items whose callback has run */
    uint64_t wakeups; /* eventfd writes: one per burst that found the list empty */
    uint64_t passes;  /* passes of the loop that ran at least one item */
} jsond_inbox_stats;
void jsond_inbox_get_stats(jsond_inbox *inbox, jsond_inbox_stats *out);

#endif /* JSOND_INBOX_H */
