/* check_inbox.c: the loop's inbox: items posted from any thread run once, on
 * the loop thread, in each poster's order; one wake-up per burst; a bounded
 * number of items per pass; free hands what never ran to `drop`.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "inbox.h"
#include "unit.h"

/* An item that knows who posted it and in which order. */
typedef struct {
    jsond_inbox_item item;
    int thread, seq;
    int ran, dropped;
} test_item;

#define ITEM(p) ((test_item *)((char *)(p)-offsetof(test_item, item)))

/* The loop's view: only the loop thread touches it once the loop runs. */
static struct event_base *base;
static jsond_inbox *inbox;
static pthread_t loop_thread;
static int last_seq[8];
static int total_ran, expected, wrong_thread, out_of_order;
static int dropped_order[8], ndropped;

static void setup(void)
{
    base = precise_base();
    inbox = jsond_inbox_new(base);
    ck_assert_ptr_nonnull(inbox);
    loop_thread = pthread_self();
    for (int i = 0; i < 8; i++)
        last_seq[i] = -1;
    total_ran = expected = wrong_thread = out_of_order = ndropped = 0;
}

static void teardown(void)
{
    jsond_inbox_free(inbox);
    event_base_free(base);
}

static void item_run(jsond_inbox_item *p)
{
    test_item *it = ITEM(p);
    if (!pthread_equal(pthread_self(), loop_thread))
        wrong_thread++;
    if (it->seq != last_seq[it->thread] + 1)
        out_of_order++;
    last_seq[it->thread] = it->seq;
    it->ran++;
    if (++total_ran == expected)
        event_base_loopbreak(base);
}

static void item_drop(jsond_inbox_item *p)
{
    test_item *it = ITEM(p);
    it->dropped++;
    if (ndropped < 8)
        dropped_order[ndropped] = it->seq;
    ndropped++;
}

static void init_items(test_item *v, int n, int thread)
{
    for (int i = 0; i < n; i++) {
        v[i] =
            (test_item){.item = {.run = item_run, .drop = item_drop}, .thread = thread, .seq = i};
    }
}

/* Runs the loop until `expected` items ran, or 30 s: every wait is bounded. */
static void run_until_expected(void)
{
    struct timeval limit = {30, 0};
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
}

#define THREADS    4
#define PER_THREAD 5000

typedef struct {
    test_item *items;
    int n;
} poster_arg;

static void *poster(void *arg)
{
    poster_arg *a = arg;
    for (int i = 0; i < a->n; i++)
        jsond_inbox_post(inbox, &a->items[i].item);
    return NULL;
}

START_TEST(test_posts_from_threads_run_once_on_loop_in_order)
{
    static test_item items[THREADS][PER_THREAD];
    poster_arg args[THREADS];
    pthread_t t[THREADS];
    expected = THREADS * PER_THREAD;
    for (int i = 0; i < THREADS; i++) {
        init_items(items[i], PER_THREAD, i);
        args[i] = (poster_arg){items[i], PER_THREAD};
        ck_assert_int_eq(pthread_create(&t[i], NULL, poster, &args[i]), 0);
    }
    double t0 = now();
    run_until_expected();
    double elapsed = now() - t0;
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);

    ck_assert_int_eq(total_ran, expected);
    ck_assert_int_eq(wrong_thread, 0);
    ck_assert_int_eq(out_of_order, 0);
    for (int i = 0; i < THREADS; i++) {
        ck_assert_int_eq(last_seq[i], PER_THREAD - 1);
        for (int j = 0; j < PER_THREAD; j++)
            ck_assert_int_eq(items[i][j].ran, 1);
    }
    jsond_inbox_stats st;
    jsond_inbox_get_stats(inbox, &st);
    ck_assert_uint_eq(st.posted, (uint64_t)expected);
    ck_assert_uint_eq(st.ran, (uint64_t)expected);
    /* A pass runs at most a batch, so there were at least this many. */
    ck_assert_uint_ge(st.passes, (uint64_t)(expected + JSOND_INBOX_BATCH - 1) / JSOND_INBOX_BATCH);
    ck_assert_uint_ge(st.wakeups, 1);
    ck_assert_uint_le(st.wakeups, st.passes + 1);
    printf("inbox: %d items from %d threads in %.1f ms: %llu wake-ups, %llu passes\n", expected,
           THREADS, elapsed * 1e3, (unsigned long long)st.wakeups, (unsigned long long)st.passes);
}
END_TEST

START_TEST(test_burst_costs_one_wakeup)
{
    static test_item items[1000];
    init_items(items, 1000, 0);
    /* A burst from another thread while the loop is not looking. */
    poster_arg a = {items, 1000};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, poster, &a), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    jsond_inbox_stats st;
    jsond_inbox_get_stats(inbox, &st);
    ck_assert_uint_eq(st.posted, 1000);
    ck_assert_uint_eq(st.wakeups, 1);

    expected = 1000;
    run_until_expected();
    ck_assert_int_eq(total_ran, 1000);

    /* The list is empty again: the next burst costs exactly one more. */
    static test_item more[10];
    init_items(more, 10, 1);
    for (int i = 0; i < 10; i++)
        jsond_inbox_post(inbox, &more[i].item);
    jsond_inbox_get_stats(inbox, &st);
    ck_assert_uint_eq(st.wakeups, 2);
    expected = 1010;
    run_until_expected();
    ck_assert_int_eq(total_ran, 1010);
    ck_assert_int_eq(out_of_order, 0);
}
END_TEST

START_TEST(test_a_pass_runs_at_most_a_batch)
{
    enum { N = 3 * JSOND_INBOX_BATCH + 8 };
    static test_item items[N];
    init_items(items, N, 0);
    for (int i = 0; i < N; i++)
        jsond_inbox_post(inbox, &items[i].item);

    /* One round of the loop: the eventfd's callback runs one batch and
     * leaves the rest for a later round. */
    int expect = 0;
    for (int pass = 0; pass < 4; pass++) {
        ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
        expect += pass < 3 ? JSOND_INBOX_BATCH : 8;
        ck_assert_int_eq(total_ran, expect);
    }
    ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
    ck_assert_int_eq(total_ran, N);
    ck_assert_int_eq(out_of_order, 0);
    jsond_inbox_stats st;
    jsond_inbox_get_stats(inbox, &st);
    ck_assert_uint_eq(st.wakeups, 1);
    ck_assert_uint_eq(st.passes, 4);
}
END_TEST

/* Another event, ready while the inbox has a backlog, runs between passes. */
static int other_ran_after;
static void other_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    other_ran_after = total_ran;
}

START_TEST(test_other_events_run_between_passes)
{
    enum { N = 10 * JSOND_INBOX_BATCH };
    static test_item items[N];
    init_items(items, N, 0);
    for (int i = 0; i < N; i++)
        jsond_inbox_post(inbox, &items[i].item);
    other_ran_after = -1;
    struct event *other = evtimer_new(base, other_cb, NULL);
    ck_assert_ptr_nonnull(other);
    struct timeval zero = {0, 0};
    ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
    ck_assert_int_eq(total_ran, JSOND_INBOX_BATCH);
    event_add(other, &zero); /* ready now, with 9 batches still queued */
    expected = N;
    run_until_expected();
    event_free(other);
    ck_assert_int_eq(total_ran, N);
    ck_assert_int_ge(other_ran_after, JSOND_INBOX_BATCH);
    ck_assert_int_lt(other_ran_after, N);
}
END_TEST

/* A callback may post again: the new item runs on a later pass. */
static test_item repost_item;
static int repost_left;
static void repost_run(jsond_inbox_item *p)
{
    item_run(p);
    ITEM(p)->seq++;
    if (repost_left-- > 0)
        jsond_inbox_post(inbox, p);
}

START_TEST(test_callback_may_post_again)
{
    repost_item = (test_item){.item = {.run = repost_run}, .seq = 0};
    repost_left = 199;
    expected = 200;
    jsond_inbox_post(inbox, &repost_item.item);
    run_until_expected();
    ck_assert_int_eq(total_ran, 200);
    ck_assert_int_eq(out_of_order, 0);
}
END_TEST

START_TEST(test_free_drops_what_never_ran)
{
    static test_item items[5];
    init_items(items, 5, 0);
    for (int i = 0; i < 5; i++)
        jsond_inbox_post(inbox, &items[i].item);
    test_item silent = {.item = {.run = item_run, .drop = NULL}, .seq = 9};
    jsond_inbox_post(inbox, &silent.item);
    jsond_inbox_free(inbox);
    inbox = NULL;
    ck_assert_int_eq(total_ran, 0);
    ck_assert_int_eq(ndropped, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(dropped_order[i], i);
        ck_assert_int_eq(items[i].dropped, 1);
        ck_assert_int_eq(items[i].ran, 0);
    }
    jsond_inbox_free(NULL);
}
END_TEST

static Suite *inbox_suite(void)
{
    Suite *s = suite_create("inbox");
    TCase *tc = tcase_create("inbox");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_posts_from_threads_run_once_on_loop_in_order);
    tcase_add_test(tc, test_burst_costs_one_wakeup);
    tcase_add_test(tc, test_a_pass_runs_at_most_a_batch);
    tcase_add_test(tc, test_other_events_run_between_passes);
    tcase_add_test(tc, test_callback_may_post_again);
    tcase_add_test(tc, test_free_drops_what_never_ran);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(inbox_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
