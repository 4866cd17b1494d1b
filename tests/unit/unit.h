/* unit.h: what the Check programs that run an event loop share.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_UNIT_H
#define JSOND_UNIT_H

#include <check.h>
#include <event2/event.h>
#include <time.h>

/* Monotonic seconds, the clock the tests measure with. */
static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An event base on the precise clock: libevent's default may be
 * CLOCK_MONOTONIC_COARSE, whose ticks (4 ms here) fire a timer up to a
 * tick early by now(). */
static inline struct event_base *precise_base(void)
{
    struct event_config *ec = event_config_new();
    ck_assert_ptr_nonnull(ec);
    ck_assert_int_eq(event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER), 0);
    struct event_base *base = event_base_new_with_config(ec);
    event_config_free(ec);
    ck_assert_ptr_nonnull(base);
    return base;
}

#endif /* JSOND_UNIT_H */
