/* check_watch.c: the loop's watch: a callback over the threshold is
 * reported once, when the outermost one ends, blaming the slowest route
 * that ran in it (a copy: the route's memory may be gone by then); calls
 * between routes restore the caller's route; the heartbeat; the watchdog
 * logs a stuck callback with the loop thread's stack, then "still".
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsond.h"
#include "unit.h"
#include "watch.h"

#if defined(__SANITIZE_THREAD__)
#define TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN 1
#endif
#endif

static int reports;
static char blamed[JSOND_WATCH_NAME];
static const char *blamed_what;
static uint64_t blamed_ns;

static void stall(const char *route, const char *what, uint64_t ns, void *arg)
{
    (void)arg;
    reports++;
    snprintf(blamed, sizeof blamed, "%s", route ? route : "(none)");
    blamed_what = what;
    blamed_ns = ns;
}

static void spin_ms(unsigned ms)
{
    double end = now() + ms / 1e3;
    while (now() < end)
        ;
}

static jsond_watch *w;

static void setup(void)
{
    reports = 0;
    blamed[0] = '\0';
    w = jsond_watch_new(10, stall, NULL);
    ck_assert_ptr_nonnull(w);
    jsond_watch_attach(w);
}

static void teardown(void)
{
    jsond_watch_free(w);
    w = NULL;
}

START_TEST(test_no_watch_is_a_no_op)
{
    jsond_watch_attach(NULL);
    jsond_watch_frame f;
    jsond_watch_enter(&f, "read", "a");
    spin_ms(20);
    jsond_watch_leave(&f);
    ck_assert_int_eq(reports, 0);
}
END_TEST

START_TEST(test_fast_is_not_reported)
{
    for (int i = 0; i < 1000; i++) {
        jsond_watch_frame f, h;
        jsond_watch_enter(&f, "read", NULL);
        jsond_watch_enter(&h, "handler", "a");
        jsond_watch_leave(&h);
        jsond_watch_leave(&f);
    }
    ck_assert_int_eq(reports, 0);
}
END_TEST

START_TEST(test_slowest_route_blamed_once)
{
    char *b = strdup("b"); /* a request's route, freed before the callback ends */
    jsond_watch_frame f, h1, h2, h3;
    jsond_watch_enter(&f, "read", NULL);
    jsond_watch_enter(&h1, "handler", "a");
    spin_ms(15);
    jsond_watch_leave(&h1);
    jsond_watch_enter(&h2, "handler", b);
    free(b);
    spin_ms(40);
    jsond_watch_leave(&h2);
    jsond_watch_enter(&h3, "handler", "c");
    jsond_watch_leave(&h3);
    ck_assert_int_eq(reports, 0); /* not until the callback ends */
    jsond_watch_leave(&f);
    ck_assert_int_eq(reports, 1);
    ck_assert_str_eq(blamed, "b");
    ck_assert_str_eq(blamed_what, "read");
    ck_assert_uint_ge(blamed_ns, 55 * 1000000ULL);
}
END_TEST

START_TEST(test_no_route_ran)
{
    jsond_watch_frame f;
    jsond_watch_enter(&f, "accept", NULL);
    spin_ms(20);
    jsond_watch_leave(&f);
    ck_assert_int_eq(reports, 1);
    ck_assert_str_eq(blamed, "(none)");
    ck_assert_str_eq(blamed_what, "accept");
}
END_TEST

START_TEST(test_call_restores_caller)
{
    /* a calls b on the loop; b is quick, a is then slow: a is to blame. */
    jsond_watch_frame f, a, b;
    jsond_watch_enter(&f, "handler timer", "a");
    jsond_watch_enter(&a, "handler", "a");
    jsond_watch_enter(&b, "handler", "b");
    jsond_watch_leave(&b);
    spin_ms(20);
    jsond_watch_leave(&a);
    jsond_watch_leave(&f);
    ck_assert_int_eq(reports, 1);
    ck_assert_str_eq(blamed, "a");
}
END_TEST

START_TEST(test_zero_is_off)
{
    jsond_watch_set_stall(w, 0);
    jsond_watch_frame f;
    jsond_watch_enter(&f, "read", "a");
    spin_ms(20);
    jsond_watch_leave(&f);
    ck_assert_int_eq(reports, 0);
}
END_TEST

START_TEST(test_heartbeat)
{
    ck_assert_int_eq(jsond_watch_fresh(w, 0), 1); /* idle: fresh */
    jsond_watch_frame f;
    jsond_watch_enter(&f, "read", NULL);
    spin_ms(30);
    ck_assert_int_eq(jsond_watch_fresh(w, 10), 0);
    ck_assert_int_eq(jsond_watch_fresh(w, 10000), 1);
    jsond_watch_leave(&f);
    ck_assert_int_eq(jsond_watch_fresh(w, 10), 1);
}
END_TEST

/* ---- the watchdog ------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int stalled_logs, still_logs, frame_logs;

static void sink(jsond_log_level level, const char *msg, void *arg)
{
    (void)level;
    (void)arg;
    pthread_mutex_lock(&log_lock);
    if (strstr(msg, "the loop is stalled") && strstr(msg, "(handler, route sleepy)"))
        stalled_logs++;
    if (strstr(msg, "the loop is still stalled") && strstr(msg, "route sleepy"))
        still_logs++;
    if (strstr(msg, "watchdog:   #"))
        frame_logs++;
    pthread_mutex_unlock(&log_lock);
}

START_TEST(test_watchdog)
{
    jsond_log_set_sink(sink, NULL);
    jsond_watch_set_stall(w, 50);
    ck_assert_int_eq(jsond_watch_start(w, SIGURG), 0);
    ck_assert_int_eq(jsond_watch_start(w, SIGURG), -1);
    jsond_watch_frame f;
    jsond_watch_enter(&f, "handler", "sleepy");
    /* In a system call, where the signal finds the thread at once. */
    struct timespec left = {1, 300000000};
    while (nanosleep(&left, &left) < 0 && errno == EINTR)
        ;
    jsond_watch_leave(&f);
    jsond_watch_free(w); /* joins the watchdog: its logs are all in */
    w = NULL;
    jsond_log_set_sink(NULL, NULL);
    ck_assert_int_eq(stalled_logs, 1);
    ck_assert_int_ge(still_logs, 1);
#ifndef TSAN
    ck_assert_int_ge(frame_logs, 3);
#endif
    ck_assert_int_eq(reports, 1);
    ck_assert_str_eq(blamed, "sleepy");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("watch");
    TCase *tc = tcase_create("watch");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_no_watch_is_a_no_op);
    tcase_add_test(tc, test_fast_is_not_reported);
    tcase_add_test(tc, test_slowest_route_blamed_once);
    tcase_add_test(tc, test_no_route_ran);
    tcase_add_test(tc, test_call_restores_caller);
    tcase_add_test(tc, test_zero_is_off);
    tcase_add_test(tc, test_heartbeat);
    tcase_add_test(tc, test_watchdog);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
