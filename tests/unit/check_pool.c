/* check_pool.c: the thread pool: the bulkhead refuses at once when full, jobs
 * run on deaf worker threads and complete on the loop, a queued job can be
 * cancelled, drain finishes what was queued, every job runs exactly once, and
 * a resize keeps every queued job.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "jsond.h"
#include "pool.h"
#include "unit.h"

static struct event_base *base;
static jsond_inbox *inbox;
static pthread_t loop_thread;
static int dones, dones_wanted;

/* A gate that blocking jobs wait on; every wait is bounded (10 s). */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open;

static void gate_set(int open)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = open;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void gate_wait(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&gate_lock);
    while (!gate_open && pthread_cond_timedwait(&gate_cond, &gate_lock, &until) == 0)
        ;
    pthread_mutex_unlock(&gate_lock);
}

/* Tickets: a ticketed job takes one before it returns, so jobs finish one
 * by one as tests hand tickets out. Bounded like the gate. */
static int tickets;

static void tickets_give(int n)
{
    pthread_mutex_lock(&gate_lock);
    tickets += n;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void ticket_take(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&gate_lock);
    while (!tickets && !gate_open && pthread_cond_timedwait(&gate_cond, &gate_lock, &until) == 0)
        ;
    if (tickets)
        tickets--;
    pthread_mutex_unlock(&gate_lock);
}

typedef struct {
    jsond_job job;
    int id, gated, ticketed;
    /* Written by the worker in run, read on the loop after done: the inbox
     * orders the two. */
    int runs, run_on_loop, run_ctx, signals_blocked, run_order;
    int dones, done_on_loop;
} tjob;

#define TJOB(j) ((tjob *)((char *)(j)-offsetof(tjob, job)))

static atomic_int run_counter;

static void tjob_run(jsond_job *j)
{
    tjob *t = TJOB(j);
    t->run_order = atomic_fetch_add(&run_counter, 1);
    t->runs++;
    t->run_on_loop = pthread_equal(pthread_self(), loop_thread);
    t->run_ctx = jsond_context();
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    t->signals_blocked = sigismember(&mask, SIGTERM) && sigismember(&mask, SIGINT) &&
                         sigismember(&mask, SIGHUP) && sigismember(&mask, SIGUSR1);
    if (t->gated)
        gate_wait();
    if (t->ticketed)
        ticket_take();
}

static void tjob_done(jsond_job *j)
{
    tjob *t = TJOB(j);
    t->dones++;
    t->done_on_loop = pthread_equal(pthread_self(), loop_thread);
    if (++dones == dones_wanted)
        event_base_loopbreak(base);
}

static void tjob_init(tjob *v, int n, int gated)
{
    for (int i = 0; i < n; i++)
        v[i] = (tjob){.job = {.run = tjob_run, .done = tjob_done}, .id = i, .gated = gated};
}

static void setup(void)
{
    base = precise_base();
    inbox = jsond_inbox_new(base);
    ck_assert_ptr_nonnull(inbox);
    loop_thread = pthread_self();
    jsond_context_set(JSOND_CTX_LOOP);
    dones = dones_wanted = 0;
    tickets = 0;
    atomic_store(&run_counter, 0);
    gate_set(0);
}

static void teardown(void)
{
    gate_set(1);
    jsond_inbox_free(inbox);
    event_base_free(base);
}

/* Runs the loop until `want` dones, at most 30 s. */
static void run_until_dones(int want)
{
    dones_wanted = want;
    if (dones >= want)
        return;
    struct timeval limit = {30, 0};
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    ck_assert_int_eq(dones, want);
}

/* Polls the pool's stats until `busy` threads run a job, at most 10 s. */
static void wait_busy(jsond_pool *pool, unsigned busy)
{
    jsond_pool_stats st;
    double until = now() + 10;
    do {
        jsond_pool_get_stats(pool, &st);
        if (st.busy == busy)
            return;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    } while (now() < until);
    ck_abort_msg("pool: %u busy, waited for %u", st.busy, busy);
}

/* Polls the pool's stats until `live` threads are left, at most 10 s. */
static void wait_live(jsond_pool *pool, unsigned live)
{
    jsond_pool_stats st;
    double until = now() + 10;
    do {
        jsond_pool_get_stats(pool, &st);
        if (st.live == live)
            return;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    } while (now() < until);
    ck_abort_msg("pool: %u live, waited for %u", st.live, live);
}

static void assert_ran_once_on_worker(const tjob *t)
{
    ck_assert_int_eq(t->runs, 1);
    ck_assert_int_eq(t->dones, 1);
    ck_assert_int_eq(t->run_on_loop, 0);
    ck_assert_int_eq(t->run_ctx, JSOND_CTX_WORKER);
    ck_assert_int_eq(t->signals_blocked, 1);
    ck_assert_int_eq(t->done_on_loop, 1);
}

START_TEST(test_full_pool_refuses_at_once)
{
    jsond_pool *pool = jsond_pool_new(inbox, "legacy", 2, 3);
    ck_assert_ptr_nonnull(pool);
    ck_assert_str_eq(jsond_pool_name(pool), "legacy");
    tjob j[7];
    tjob_init(j, 7, 1);

    /* Two jobs take the two threads, three wait, the sixth is refused. */
    ck_assert_int_eq(jsond_pool_submit(pool, &j[0].job), 0);
    ck_assert_int_eq(jsond_pool_submit(pool, &j[1].job), 0);
    wait_busy(pool, 2);
    for (int i = 2; i < 5; i++)
        ck_assert_int_eq(jsond_pool_submit(pool, &j[i].job), 0);
    errno = 0;
    double t0 = now();
    ck_assert_int_eq(jsond_pool_submit(pool, &j[5].job), -1);
    ck_assert_double_lt(now() - t0, 0.1); /* refused, not waited */
    ck_assert_int_eq(errno, EBUSY);

    jsond_pool_stats st;
    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.threads, 2);
    ck_assert_uint_eq(st.busy, 2);
    ck_assert_uint_eq(st.queued, 3);
    ck_assert_uint_eq(st.queue_peak, 3);
    ck_assert_uint_eq(st.rejected, 1);
    ck_assert_uint_eq(st.submitted, 5);
    ck_assert_int_eq(jsond_pool_idle(pool), 0);

    /* A queued job can be taken back (a deadline); a running one cannot. */
    ck_assert_int_eq(jsond_pool_cancel(pool, &j[3].job), 1);
    ck_assert_int_eq(jsond_pool_cancel(pool, &j[0].job), 0);
    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.queued, 2);
    ck_assert_uint_eq(st.cancelled, 1);
    /* Its place is free again. */
    ck_assert_int_eq(jsond_pool_submit(pool, &j[5].job), 0);
    ck_assert_int_eq(jsond_pool_submit(pool, &j[6].job), -1);

    gate_set(1);
    run_until_dones(5);
    for (int i = 0; i < 6; i++) {
        if (i != 3)
            assert_ran_once_on_worker(&j[i]);
    }
    ck_assert_int_eq(j[3].runs, 0);
    ck_assert_int_eq(j[3].dones, 0);
    ck_assert_int_eq(j[6].runs, 0);

    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.busy, 0);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_uint_eq(st.queue_peak, 3);
    ck_assert_uint_eq(st.completed, 5);
    ck_assert_uint_eq(st.rejected, 2);
    ck_assert_int_eq(jsond_pool_idle(pool), 1);
    jsond_pool_free(pool);
}
END_TEST

START_TEST(test_idle_threads_do_not_count_against_queue_limit)
{
    /* queue_limit 0: run now or refuse. Jobs submitted back to back, before
     * any thread has woken, still go to the idle threads. */
    jsond_pool *pool = jsond_pool_new(inbox, "now", 2, 0);
    ck_assert_ptr_nonnull(pool);
    tjob j[3];
    tjob_init(j, 3, 1);
    ck_assert_int_eq(jsond_pool_submit(pool, &j[0].job), 0);
    ck_assert_int_eq(jsond_pool_submit(pool, &j[1].job), 0);
    ck_assert_int_eq(jsond_pool_submit(pool, &j[2].job), -1);
    ck_assert_int_eq(errno, EBUSY);
    wait_busy(pool, 2);
    jsond_pool_stats st;
    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.queue_peak, 0);
    ck_assert_uint_eq(st.rejected, 1);
    gate_set(1);
    run_until_dones(2);
    jsond_pool_free(pool);
}
END_TEST

START_TEST(test_drain_then_free_completes_the_queue)
{
    jsond_pool *pool = jsond_pool_new(inbox, "drain", 1, 10);
    ck_assert_ptr_nonnull(pool);
    tjob j[7];
    tjob_init(j, 7, 1);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(jsond_pool_submit(pool, &j[i].job), 0);
    wait_busy(pool, 1);
    jsond_pool_drain(pool);
    ck_assert_int_eq(jsond_pool_submit(pool, &j[6].job), -1);
    ck_assert_int_eq(errno, ESHUTDOWN);
    ck_assert_int_eq(jsond_pool_idle(pool), 0); /* free would block now */

    gate_set(1);
    jsond_pool_free(pool); /* joins: the five queued jobs run first */
    run_until_dones(6);
    for (int i = 0; i < 6; i++) {
        assert_ran_once_on_worker(&j[i]);
        ck_assert_int_eq(j[i].run_order, i); /* FIFO */
    }
    ck_assert_int_eq(j[6].runs, 0);
}
END_TEST

START_TEST(test_inbox_freed_first_still_calls_done)
{
    jsond_pool *pool = jsond_pool_new(inbox, "late", 2, 4);
    ck_assert_ptr_nonnull(pool);
    tjob j[4];
    tjob_init(j, 4, 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(jsond_pool_submit(pool, &j[i].job), 0);
    jsond_pool_free(pool);
    /* The loop never ran: the dones wait in the inbox, and its free hands
     * them over, so each job still gets exactly one. */
    ck_assert_int_eq(dones, 0);
    jsond_inbox_free(inbox);
    inbox = NULL;
    ck_assert_int_eq(dones, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(j[i].dones, 1);
}
END_TEST

/* 1,000 jobs from the loop through 4 threads and a queue of 8: what is
 * refused is submitted again from a later `done`. */
#define MANY 1000
static tjob many[MANY];
static int many_next;
static jsond_pool *many_pool;

static void feed(void)
{
    while (many_next < MANY && jsond_pool_submit(many_pool, &many[many_next].job) == 0)
        many_next++;
}

static void many_done(jsond_job *j)
{
    tjob_done(j);
    feed();
}

START_TEST(test_thousand_jobs_complete_exactly_once)
{
    many_pool = jsond_pool_new(inbox, "many", 4, 8);
    ck_assert_ptr_nonnull(many_pool);
    tjob_init(many, MANY, 0);
    for (int i = 0; i < MANY; i++)
        many[i].job.done = many_done;
    many_next = 0;
    feed();
    ck_assert_int_ge(many_next, 4);
    run_until_dones(MANY);
    ck_assert_int_eq(many_next, MANY);
    for (int i = 0; i < MANY; i++)
        assert_ran_once_on_worker(&many[i]);
    jsond_pool_stats st;
    jsond_pool_get_stats(many_pool, &st);
    ck_assert_uint_eq(st.completed, MANY);
    ck_assert_uint_eq(st.submitted, MANY);
    ck_assert_uint_le(st.queue_peak, 8);
    printf("pool: %d jobs through 4 threads, queue 8: %llu refused and resubmitted\n", MANY,
           (unsigned long long)st.rejected);
    jsond_pool_free(many_pool);
}
END_TEST

static void sleep_run(jsond_job *j)
{
    (void)j;
    struct timespec ts = {0, 5000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

START_TEST(test_stats_give_wait_and_run_percentiles)
{
    jsond_pool *pool = jsond_pool_new(inbox, "times", 1, 4);
    ck_assert_ptr_nonnull(pool);
    jsond_pool_stats st;
    jsond_pool_get_stats(pool, &st);
    ck_assert_double_eq(st.run_p99_ms, 0);
    tjob j[4];
    tjob_init(j, 4, 0);
    for (int i = 0; i < 4; i++) {
        j[i].job.run = sleep_run;
        ck_assert_int_eq(jsond_pool_submit(pool, &j[i].job), 0);
    }
    run_until_dones(4);
    jsond_pool_get_stats(pool, &st);
    /* Each runs >= 5 ms on one thread: the last waited >= 15 ms. */
    ck_assert_double_ge(st.run_p50_ms, 4.9);
    ck_assert_double_ge(st.queue_wait_p99_ms, 14.9);
    ck_assert_double_ge(st.queue_wait_p50_ms, 4.9);
    ck_assert_double_le(st.queue_wait_p50_ms, st.queue_wait_p99_ms);
    jsond_pool_free(pool);
}
END_TEST

/* The cost of one round trip, loop -> worker -> loop, against an inbox post
 * to the loop itself and a direct call. Printed, not asserted. */
#define TRIPS 5000
static int trips;
static jsond_pool *trip_pool;
static jsond_job trip_job;
static jsond_inbox_item trip_item;

static void nop_run(jsond_job *j)
{
    (void)j;
}

static void trip_done(jsond_job *j)
{
    if (++trips == TRIPS)
        event_base_loopbreak(base);
    else
        ck_assert_int_eq(jsond_pool_submit(trip_pool, j), 0);
}

static void trip_item_run(jsond_inbox_item *it)
{
    if (++trips == TRIPS)
        event_base_loopbreak(base);
    else
        jsond_inbox_post(inbox, it);
}

static void __attribute__((noinline)) direct(volatile int *n)
{
    ++*n;
}

START_TEST(test_round_trip_cost)
{
    trip_pool = jsond_pool_new(inbox, "trip", 1, 0);
    ck_assert_ptr_nonnull(trip_pool);
    struct timeval limit = {30, 0};

    trips = 0;
    trip_job = (jsond_job){.run = nop_run, .done = trip_done};
    double t0 = now();
    ck_assert_int_eq(jsond_pool_submit(trip_pool, &trip_job), 0);
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    double pool_us = (now() - t0) / TRIPS * 1e6;
    ck_assert_int_eq(trips, TRIPS);

    trips = 0;
    trip_item = (jsond_inbox_item){.run = trip_item_run};
    t0 = now();
    jsond_inbox_post(inbox, &trip_item);
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    double inbox_us = (now() - t0) / TRIPS * 1e6;
    ck_assert_int_eq(trips, TRIPS);

    volatile int n = 0;
    t0 = now();
    for (int i = 0; i < TRIPS; i++)
        direct(&n);
    double direct_us = (now() - t0) / TRIPS * 1e6;

    printf("pool round trip (loop -> worker -> loop): %.1f us; inbox post to the loop: %.2f us; "
           "direct call: %.3f us\n",
           pool_us, inbox_us, direct_us);
    jsond_pool_free(trip_pool);
}
END_TEST

START_TEST(test_new_refuses_zero_threads)
{
    errno = 0;
    ck_assert_ptr_null(jsond_pool_new(inbox, "none", 0, 1));
    ck_assert_int_eq(errno, EINVAL);
    jsond_pool_free(NULL);
}
END_TEST

START_TEST(test_resize_keeps_the_queue)
{
    jsond_pool *pool = jsond_pool_new(inbox, "resize", 2, 32);
    ck_assert_ptr_nonnull(pool);
    enum { N = 20 };
    tjob j[N + 3];
    tjob_init(j, N + 3, 1);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(jsond_pool_submit(pool, &j[i].job), 0);
    wait_busy(pool, 2);

    /* 2 -> 8: six threads start at once and take six queued jobs. */
    ck_assert_int_eq(jsond_pool_resize(pool, 8, 32), 0);
    wait_busy(pool, 8);
    jsond_pool_stats st;
    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.threads, 8);
    ck_assert_uint_eq(st.live, 8);
    ck_assert_uint_eq(st.queued, N - 8);

    /* 8 -> 1: no running job is cut; the threads retire as they finish. */
    ck_assert_int_eq(jsond_pool_resize(pool, 1, 32), 0);
    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.threads, 1);
    ck_assert_uint_eq(st.live, 8);
    ck_assert_uint_eq(st.busy, 8);
    ck_assert_uint_eq(st.queued, N - 8);
    gate_set(1);
    run_until_dones(N); /* every queued job ran: none lost */
    wait_live(pool, 1);
    for (int i = 0; i < N; i++)
        assert_ran_once_on_worker(&j[i]);
    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.completed, N);
    ck_assert_uint_eq(st.busy, 0);

    /* One thread now: of three new jobs, one runs and two wait. */
    gate_set(0);
    for (int i = N; i < N + 3; i++)
        ck_assert_int_eq(jsond_pool_submit(pool, &j[i].job), 0);
    wait_busy(pool, 1);
    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.live, 1);
    ck_assert_uint_eq(st.queued, 2);
    gate_set(1);
    run_until_dones(N + 3);
    jsond_pool_free(pool);
}
END_TEST

START_TEST(test_shrink_retires_idle_threads_at_once)
{
    jsond_pool *pool = jsond_pool_new(inbox, "idle", 6, 0);
    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(jsond_pool_resize(pool, 2, 0), 0);
    wait_live(pool, 2);
    /* Growing again starts what is missing; a second shrink before the
     * first settled is fine too. */
    ck_assert_int_eq(jsond_pool_resize(pool, 5, 0), 0);
    wait_live(pool, 5);
    ck_assert_int_eq(jsond_pool_resize(pool, 3, 0), 0);
    ck_assert_int_eq(jsond_pool_resize(pool, 1, 0), 0);
    wait_live(pool, 1);
    jsond_pool_free(pool); /* the retired ones are joined by the inbox */
}
END_TEST

START_TEST(test_lower_queue_limit_keeps_the_queued)
{
    jsond_pool *pool = jsond_pool_new(inbox, "limit", 1, 8);
    ck_assert_ptr_nonnull(pool);
    enum { N = 9 };
    tjob j[N + 2];
    tjob_init(j, N + 2, 0);
    for (int i = 0; i < N + 2; i++)
        j[i].ticketed = 1;
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(jsond_pool_submit(pool, &j[i].job), 0);
    wait_busy(pool, 1);

    /* Room for 1 + 2 now, and 9 are in: all kept, new ones refused. */
    ck_assert_int_eq(jsond_pool_resize(pool, 1, 2), 0);
    jsond_pool_stats st;
    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.queue_limit, 2);
    ck_assert_uint_eq(st.queued, N - 1);
    errno = 0;
    ck_assert_int_eq(jsond_pool_submit(pool, &j[N].job), -1);
    ck_assert_int_eq(errno, EBUSY);

    /* Six done: three left, the pool is still full. */
    tickets_give(6);
    run_until_dones(6);
    ck_assert_int_eq(jsond_pool_submit(pool, &j[N].job), -1);
    ck_assert_int_eq(errno, EBUSY);
    /* One more: below the new limit, a job is taken again. */
    tickets_give(1);
    run_until_dones(7);
    ck_assert_int_eq(jsond_pool_submit(pool, &j[N].job), 0);
    ck_assert_int_eq(jsond_pool_submit(pool, &j[N + 1].job), -1);
    tickets_give(3);
    run_until_dones(N + 1);
    for (int i = 0; i <= N; i++)
        assert_ran_once_on_worker(&j[i]);
    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.rejected, 3);
    jsond_pool_free(pool);
}
END_TEST

START_TEST(test_resize_refused)
{
    jsond_pool *pool = jsond_pool_new(inbox, "refuse", 2, 4);
    ck_assert_ptr_nonnull(pool);
    errno = 0;
    ck_assert_int_eq(jsond_pool_resize(pool, 0, 4), -1);
    ck_assert_int_eq(errno, EINVAL);
    jsond_pool_drain(pool);
    errno = 0;
    ck_assert_int_eq(jsond_pool_resize(pool, 4, 4), -1);
    ck_assert_int_eq(errno, ESHUTDOWN);
    jsond_pool_stats st;
    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.threads, 2);
    ck_assert_uint_eq(st.queue_limit, 4);
    jsond_pool_free(pool);
}
END_TEST

static Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("bulkhead");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_full_pool_refuses_at_once);
    tcase_add_test(tc, test_idle_threads_do_not_count_against_queue_limit);
    tcase_add_test(tc, test_new_refuses_zero_threads);
    suite_add_tcase(s, tc);

    tc = tcase_create("completion");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_drain_then_free_completes_the_queue);
    tcase_add_test(tc, test_inbox_freed_first_still_calls_done);
    tcase_add_test(tc, test_thousand_jobs_complete_exactly_once);
    tcase_add_test(tc, test_stats_give_wait_and_run_percentiles);
    tcase_add_test(tc, test_round_trip_cost);
    suite_add_tcase(s, tc);

    tc = tcase_create("resize");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_resize_keeps_the_queue);
    tcase_add_test(tc, test_shrink_retires_idle_threads_at_once);
    tcase_add_test(tc, test_lower_queue_limit_keeps_the_queued);
    tcase_add_test(tc, test_resize_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
