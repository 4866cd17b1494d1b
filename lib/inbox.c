/* inbox.c: the loop's inbox (see inbox.h for the contract).
 *
 * Two lists: `head` is shared with the posters and guarded by `lock`;
 * `local` belongs to the loop thread. A pass moves the whole shared list to
 * the local one in O(1) under the lock, then runs up to JSOND_INBOX_BATCH
 * items without it, so a callback that posts again (or a poster on another
 * thread) never waits for a callback to finish.
 *
 * The wake-up rule, and why it cannot lose an item: a poster writes the
 * eventfd only when its append made the shared list non-empty, and it writes
 * after appending. The loop reads (resets) the eventfd before it takes the
 * list. So every write is followed, on the loop, by a take that sees the item
 * that caused it. The worst a race does is one spurious wake-up that finds an
 * empty list.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "inbox.h"
#include "jsond.h"
#include "watch.h"

struct jsond_inbox {
    struct event_base *base;
    struct event *wake; /* the eventfd is readable: posters woke us */
    struct event *more; /* a zero timer: the last pass left items */
    int efd;

    pthread_mutex_t lock;
    jsond_inbox_item *head, *tail; /* shared with posters, under lock */
    uint64_t posted, wakeups;      /* under lock */

    jsond_inbox_item *local, *local_tail; /* loop thread only */
    uint64_t ran, passes;                 /* loop thread only */
};

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_status = -1; /* written once, under threads_once */

static void threads_init_once(void)
{
    threads_status = evthread_use_pthreads();
}

int jsond_threads_init(void)
{
    pthread_once(&threads_once, threads_init_once);
    return threads_status;
}

/* Runs at most one batch. Called for the eventfd (EV_READ) and for the
 * `more` timer. Loop thread. */
static void inbox_pass_run(evutil_socket_t fd, short what, void *arg)
{
    jsond_inbox *inbox = arg;

    if (what & EV_READ) {
        /* Reset the counter before taking the list (see the top of the file).
         * EAGAIN means another pass already read it: nothing to do. */
        uint64_t count;
        ssize_t n = read(fd, &count, sizeof count);
        (void)n;
    }

    pthread_mutex_lock(&inbox->lock);
    if (inbox->head) {
        if (inbox->local_tail)
            inbox->local_tail->next = inbox->head;
        else
            inbox->local = inbox->head;
        inbox->local_tail = inbox->tail;
        inbox->head = inbox->tail = NULL;
    }
    pthread_mutex_unlock(&inbox->lock);

    unsigned ran = 0;
    while (inbox->local && ran < JSOND_INBOX_BATCH) {
        jsond_inbox_item *item = inbox->local;
        inbox->local = item->next;
        if (!inbox->local)
            inbox->local_tail = NULL;
        item->next = NULL;
        ran++;
        item->run(item); /* may free or repost the item */
    }
    inbox->ran += ran;
    if (ran)
        inbox->passes++;

    /* Items left: another pass, after the loop has polled its sockets once.
     * event_active() would run us again in this same round of callbacks, with
     * no poll in between; a zero timer waits for the next round. */
    if (inbox->local) {
        static const struct timeval zero = {0, 0};
        event_add(inbox->more, &zero);
    }
}

static void inbox_pass_cb(evutil_socket_t fd, short what, void *arg)
{
    jsond_watch_frame f;
    jsond_watch_enter(&f, "inbox", NULL);
    inbox_pass_run(fd, what, arg);
    jsond_watch_leave(&f);
}

jsond_inbox *jsond_inbox_new(struct event_base *base)
{
    if (jsond_threads_init() < 0) {
        errno = ENOSYS;
        return NULL;
    }
    jsond_inbox *inbox = calloc(1, sizeof *inbox);
    if (!inbox)
        return NULL;
    inbox->base = base;
    inbox->efd = -1;
    if (pthread_mutex_init(&inbox->lock, NULL) != 0)
        goto fail_free;
    inbox->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (inbox->efd < 0)
        goto fail_lock;
    inbox->wake = event_new(base, inbox->efd, EV_READ | EV_PERSIST, inbox_pass_cb, inbox);
    inbox->more = evtimer_new(base, inbox_pass_cb, inbox);
    if (!inbox->wake || !inbox->more || event_add(inbox->wake, NULL) < 0)
        goto fail_events;
    return inbox;

fail_events:
    if (inbox->more)
        event_free(inbox->more);
    if (inbox->wake)
        event_free(inbox->wake);
    close(inbox->efd);
    errno = ENOMEM;
fail_lock:
    pthread_mutex_destroy(&inbox->lock);
fail_free:
    free(inbox);
    return NULL;
}

static void drop_list(jsond_inbox_item *item)
{
    while (item) {
        jsond_inbox_item *next = item->next;
        item->next = NULL;
        if (item->drop)
            item->drop(item);
        item = next;
    }
}

void jsond_inbox_free(jsond_inbox *inbox)
{
    if (!inbox)
        return;
    event_free(inbox->wake);
    event_free(inbox->more);
    close(inbox->efd);
    /* No poster is left (the contract), so the shared list needs no lock;
     * the local items were posted first, so they are dropped first. */
    drop_list(inbox->local);
    drop_list(inbox->head);
    pthread_mutex_destroy(&inbox->lock);
    free(inbox);
}

void jsond_inbox_post(jsond_inbox *inbox, jsond_inbox_item *item)
{
    item->next = NULL;
    pthread_mutex_lock(&inbox->lock);
    int was_empty = inbox->head == NULL;
    if (was_empty)
        inbox->head = item;
    else
        inbox->tail->next = item;
    inbox->tail = item;
    inbox->posted++;
    if (was_empty)
        inbox->wakeups++;
    pthread_mutex_unlock(&inbox->lock);

    /* Outside the lock: other posters need not wait for a system call. The
     * counter cannot overflow (the loop resets it, and we add 1 per burst),
     * so EAGAIN does not happen; EINTR is retried. */
    if (was_empty) {
        static const uint64_t one = 1;
        while (write(inbox->efd, &one, sizeof one) < 0 && errno == EINTR)
            ;
    }
}

void jsond_inbox_get_stats(jsond_inbox *inbox, jsond_inbox_stats *out)
{
    pthread_mutex_lock(&inbox->lock);
    out->posted = inbox->posted;
    out->wakeups = inbox->wakeups;
    pthread_mutex_unlock(&inbox->lock);
    out->ran = inbox->ran;
    out->passes = inbox->passes;
}
