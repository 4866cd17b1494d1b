/* check_req.c: a request's life between its connection and its handler.
 *
 * The tests play both owners of a jsond_req. Their own small handlers play
 * the handler: one replies at once, one from a loop timer, one never
 * replies by itself but has a cancel hook, one holds the request so the
 * test can reply late. The done callbacks play the connection: one takes
 * the outcome and releases at once, one keeps the request (as a connection
 * does while earlier replies are ahead of it) for the test to release or
 * cancel later. What is checked is what each side sees: how many times done
 * and the hook run and in which order, the outcome, and the timers left
 * pending in the base. Leaks show under valgrind (make check-valgrind).
 *
 * Every wait runs the loop in bounded steps with a time limit.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "req.h"
#include "stats.h"
#include "timeout.h"
#include "unit.h"

/* The server's deadline, which routes without a timeout inherit. */
static const char conf[] = "[server]\n"
                           "request_timeout = 50ms\n"
                           "[listen l]\n"
                           "requests = yes\n"
                           "[route inherit]\n" /* request_timeout: 50 ms */
                           "handler = builtin:hello\n"
                           "[route t50]\n"
                           "handler = builtin:hello\n"
                           "timeout = 50ms\n"
                           "[route t80]\n"
                           "handler = builtin:echo\n"
                           "timeout = 80ms\n"
                           "[route zero]\n"
                           "handler = builtin:sleep\n"
                           "timeout = 0\n";

/* What the "connection" saw in done. */
typedef struct result {
    int done; /* times called */
    json_t *reply;
    int failed;
    jsond_code code;
    char message[256];
    double at;        /* when, in monotonic seconds */
    int hook_at_done; /* hook runs counted when done ran */
} result;

/* What the handlers did. */
static struct {
    int runs;         /* handler calls */
    int hooks;        /* cancel hook calls */
    int done_at_hook; /* done calls counted when the hook last ran */
    jsond_req *held;  /* a request the test replies to by hand */
    result *watch;    /* whose done count the hook records */
    int stops;        /* test producer stops */
    int proceeds;     /* test producer proceeds */
    int fired;        /* handler timer callbacks */
} h;

static struct event_base *base;
static jsond_stats stats;
static jsond_config *cfg;
static jsond_req_env env;

static void setup(void)
{
    base = precise_base();
    jsond_context_set(JSOND_CTX_LOOP);
    ck_assert_int_eq(jsond_stats_init(&stats), 0);
    cfg = jsond_config_parse("t.conf", conf, sizeof conf - 1, NULL);
    ck_assert_ptr_nonnull(cfg);
    env = (jsond_req_env){.base = base, .stats = &stats, .timeouts = jsond_timeouts_new(base)};
    ck_assert_ptr_nonnull(env.timeouts);
    memset(&h, 0, sizeof h);
}

static void teardown(void)
{
    jsond_timeouts_free(env.timeouts);
    jsond_config_unref(cfg);
    jsond_stats_fini(&stats);
    event_base_free(base);
    jsond_context_set(JSOND_CTX_OTHER);
}

static int pending_events(void)
{
    return event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED);
}

/* ---- the "connection" ---------------------------------------------------- */

static void record(jsond_req *req, result *r)
{
    r->done++;
    r->reply = req->out.reply;
    req->out.reply = NULL;
    r->failed = req->out.failed;
    r->code = req->out.code;
    memcpy(r->message, req->out.message, sizeof r->message);
    r->at = now();
    r->hook_at_done = h.hooks;
}

/* Takes the outcome and lets go, as the connection does. */
static void done_cb(jsond_req *req, void *arg)
{
    record(req, arg);
    jsond_req_release(req);
}

/* Takes the outcome but keeps the request: the test lets go later. */
static void keep_cb(jsond_req *req, void *arg)
{
    record(req, arg);
}

static void result_fini(result *r)
{
    json_decref(r->reply);
    r->reply = NULL;
}

/* Route NAME of config C, run by the test handler FN: as the registry
 * resolves it, with FN in place of the builtin. jsond_req_new copies it. */
static const jsond_handler *handler(jsond_config *c, const char *name, jsond_async_fn fn)
{
    static jsond_handler made;
    const cfg_route *route = jsond_config_route(c, name);
    ck_assert_ptr_nonnull(route);
    made = *jsond_handler_of(route);
    made.async_fn = fn;
    return &made;
}

static jsond_req *request(const char *route_name, jsond_async_fn fn, json_t *args,
                          jsond_req_done_fn done, result *r)
{
    memset(r, 0, sizeof *r);
    h.watch = r;
    const cfg_route *route = jsond_config_route(cfg, route_name);
    ck_assert_ptr_nonnull(route);
    jsond_req *req = jsond_req_new(cfg, route, handler(cfg, route_name, fn),
                                   args ? args : json_object(), &env, done, r);
    ck_assert_ptr_nonnull(req);
    return req;
}

/* Runs the loop until `*counter` reaches `want` or `limit_s` passed. */
static void run_until(const int *counter, int want, double limit_s)
{
    double end = now() + limit_s;
    while (*counter < want && now() < end)
        if (event_base_loop(base, EVLOOP_ONCE) == 1)
            return; /* nothing pending: it will never come */
}

static void nothing_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop for `s` seconds, firing whatever is due, with a timer of
 * its own so the wait is bounded even when nothing else is pending. */
static void run_for(double s)
{
    struct event *stop = evtimer_new(base, nothing_cb, NULL);
    ck_assert_ptr_nonnull(stop);
    struct timeval tv = {0, (suseconds_t)(s * 1e6)};
    ck_assert_int_eq(evtimer_add(stop, &tv), 0);
    double end = now() + s;
    for (int i = 0; i < 100000 && evtimer_pending(stop, NULL) && now() < end + 2.0; i++)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(stop);
}

/* ---- the handlers -------------------------------------------------------- */

/* Replies {"n": 1} at once. */
static void reply_now(jsond_req *req, json_t *args)
{
    (void)args;
    h.runs++;
    jsond_reply(req, json_pack("{s:i}", "n", 1));
}

static void error_now(jsond_req *req, json_t *args)
{
    (void)args;
    h.runs++;
    jsond_reply_error(req, JSOND_BAD_REQUEST, "bad %s", "thing");
}

/* Replies {"later": ms} from a loop timer (jsond_req_timer) after args.ms.
 * The timer's arg is a malloc'ed copy of ms, so a callback or hook that
 * never runs leaks. */
static void later_timer_cb(jsond_req *req, void *arg)
{
    int ms = *(int *)arg;
    h.fired++;
    free(arg);
    jsond_reply(req, json_pack("{s:i}", "later", ms));
}

static void later_cancel_cb(jsond_req *req, void *arg)
{
    h.hooks++;
    h.done_at_hook = h.watch ? h.watch->done : -1;
    free(arg); /* the reply drops the timer: its callback never runs */
    jsond_reply(req, json_pack("{s:s}", "discarded", "yes"));
}

static void reply_later(jsond_req *req, json_t *args)
{
    h.runs++;
    int *ms = malloc(sizeof *ms);
    ck_assert_ptr_nonnull(ms);
    *ms = (int)json_integer_value(json_object_get(args, "ms"));
    ck_assert_ptr_nonnull(jsond_req_timer(req, (unsigned)*ms, later_timer_cb, ms));
    jsond_req_on_cancel(req, later_cancel_cb, ms);
}

/* Arms timers of 10 ms and 1 s, then cancels the first and replies at
 * once: neither may fire, and none stays pending. */
static void count_timer_cb(jsond_req *req, void *arg)
{
    (void)req;
    (void)arg;
    h.fired++;
}

static void timers_then_reply(jsond_req *req, json_t *args)
{
    (void)args;
    h.runs++;
    jsond_timer *t = jsond_req_timer(req, 10, count_timer_cb, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(jsond_req_timer(req, 1000, count_timer_cb, NULL));
    ck_assert_int_eq(pending_events(), 2);
    jsond_timer_cancel(t);
    jsond_timer_cancel(NULL);
    ck_assert_int_eq(pending_events(), 1);
    jsond_reply(req, json_pack("{s:i}", "n", 1));
    ck_assert_int_eq(pending_events(), 0);
}

/* A timer and no cancel hook: a cancel leaves the timer, whose callback
 * replies late; that reply is discarded and lets go. */
static void timer_no_hook(jsond_req *req, json_t *args)
{
    (void)args;
    h.runs++;
    int *ms = malloc(sizeof *ms);
    ck_assert_ptr_nonnull(ms);
    *ms = 20;
    ck_assert_ptr_nonnull(jsond_req_timer(req, 20, later_timer_cb, ms));
}

/* Never replies by itself; its hook replies (and that reply is discarded).
 * The hook holds a malloc'ed token, so a hook that never runs leaks. */
static void never_cancel_cb(jsond_req *req, void *arg)
{
    h.hooks++;
    h.done_at_hook = h.watch ? h.watch->done : -1;
    free(arg);
    jsond_reply(req, json_pack("{s:s}", "discarded", "yes"));
}

static void never(jsond_req *req, json_t *args)
{
    (void)args;
    h.runs++;
    void *token = malloc(16);
    ck_assert_ptr_nonnull(token);
    jsond_req_on_cancel(req, never_cancel_cb, token);
}

/* Holds the request for the test to reply to; a hook that only counts
 * (the late reply the test gives is what lets go). */
static void count_cancel_cb(jsond_req *req, void *arg)
{
    (void)req;
    (void)arg;
    h.hooks++;
    h.done_at_hook = h.watch ? h.watch->done : -1;
}

static void hold_with_hook(jsond_req *req, json_t *args)
{
    (void)args;
    h.runs++;
    h.held = req;
    jsond_req_on_cancel(req, count_cancel_cb, NULL);
}

/* Holds the request, with no cancel hook at all. */
static void hold(jsond_req *req, json_t *args)
{
    (void)args;
    h.runs++;
    h.held = req;
}

/* A producer of "[1]" that counts its calls; self is a malloc'ed byte. */
static jsond_produce test_proceed(void *self, struct evbuffer *out, size_t want)
{
    (void)self;
    (void)want;
    h.proceeds++;
    evbuffer_add(out, "[1]", 3);
    return JSOND_PRODUCE_DONE;
}

static void test_stop(void *self)
{
    h.stops++;
    free(self);
}

static const jsond_producer_ops test_ops = {.proceed = test_proceed, .stop = test_stop};

static void *producer_self(void)
{
    void *p = malloc(1);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void producer_now(jsond_req *req, json_t *args)
{
    (void)args;
    h.runs++;
    jsond_reply_producer(req, &test_ops, producer_self());
}

/* ---- replies at once and later ------------------------------------------- */

START_TEST(test_reply_at_once)
{
    /* On a route with a deadline: a reply given inside the call arms none. */
    result r;
    jsond_req_run(request("t50", reply_now, NULL, done_cb, &r));
    ck_assert_int_eq(h.runs, 1);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.failed, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(r.reply, "n")), 1);
    ck_assert_int_eq(pending_events(), 0);
    ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1);
    ck_assert_uint_eq(jsond_timeouts_count(env.timeouts), 0);
    result_fini(&r);

    /* An error given at once, the same. */
    jsond_req_run(request("inherit", error_now, NULL, done_cb, &r));
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.failed, 1);
    ck_assert_int_eq(r.code, JSOND_BAD_REQUEST);
    ck_assert_str_eq(r.message, "bad thing");
    ck_assert_ptr_null(r.reply);
    ck_assert_int_eq(pending_events(), 0);
    ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1);

    /* A producer given at once: done sees it; the request stops it when
     * freed, since this "connection" did not take it. */
    jsond_req *req = request("t50", producer_now, NULL, keep_cb, &r);
    jsond_req_run(req);
    ck_assert_int_eq(r.done, 1);
    ck_assert_ptr_eq(req->out.ops, &test_ops);
    ck_assert_int_eq(pending_events(), 0);
    ck_assert_int_eq(h.stops, 0);
    jsond_req_release(req);
    ck_assert_int_eq(h.stops, 1);
    ck_assert_int_eq(h.proceeds, 0);
}
END_TEST

START_TEST(test_reply_later)
{
    result r;
    double t0 = now();
    jsond_req_run(request("t80", reply_later, json_pack("{s:i}", "ms", 10), done_cb, &r));
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(pending_events(), 2); /* the handler's timer and the deadline */
    run_until(&r.done, 1, 5.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.failed, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(r.reply, "later")), 10);
    ck_assert_msg(r.at - t0 >= 0.010, "replied after %.3f s", r.at - t0);
    /* The deadline was disarmed by the reply. */
    ck_assert_int_eq(pending_events(), 0);
    run_for(0.120);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(h.hooks, 0);
    result_fini(&r);
}
END_TEST

/* ---- the handler's timers ------------------------------------------------- */

START_TEST(test_timers_dropped_by_reply)
{
    result r;
    jsond_req_run(request("t80", timers_then_reply, NULL, done_cb, &r));
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(pending_events(), 0);
    run_for(0.030);
    ck_assert_int_eq(h.fired, 0);
    result_fini(&r);
}
END_TEST

START_TEST(test_timer_cancelled_request)
{
    /* With a hook: the hook's reply drops the timer; it never fires. */
    result r;
    jsond_req *req = request("t80", reply_later, json_pack("{s:i}", "ms", 20), done_cb, &r);
    jsond_req_run(req);
    jsond_req_cancel(req);
    ck_assert_int_eq(h.hooks, 1);
    ck_assert_int_eq(pending_events(), 0);
    run_for(0.040);
    ck_assert_int_eq(h.fired, 0);
    ck_assert_int_eq(r.done, 0);

    /* Without one: the timer stays and fires; its late reply is discarded
     * and frees the request (the allocation checkers see a leak if not). */
    req = request("t80", timer_no_hook, NULL, done_cb, &r);
    jsond_req_run(req);
    jsond_req_cancel(req);
    ck_assert_int_eq(pending_events(), 1);
    run_until(&h.fired, 1, 5.0);
    ck_assert_int_eq(h.fired, 1);
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(pending_events(), 0);
}
END_TEST

/* ---- the deadline ---------------------------------------------------------- */

/* Runs `never` on ROUTE with done_cb and checks the timeout seen at `ms`. */
static void expect_deadline(const char *route, unsigned ms)
{
    result r;
    char want[64];
    snprintf(want, sizeof want, "no reply within %u ms", ms);
    double t0 = now();
    jsond_req_run(request(route, never, NULL, done_cb, &r));
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(pending_events(), 1);
    run_until(&r.done, 1, 5.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.failed, 1);
    ck_assert_int_eq(r.code, JSOND_TIMEOUT);
    ck_assert_str_eq(jsond_code_name(r.code), "timeout");
    ck_assert_str_eq(r.message, want);
    ck_assert_ptr_null(r.reply);
    ck_assert_msg(r.at - t0 >= ms / 1000.0, "timed out after %.3f s", r.at - t0);
    ck_assert_msg(r.at - t0 < ms / 100.0 + 1.0, "timed out after %.3f s", r.at - t0);
    /* The hook ran once, after done; its reply was discarded. */
    ck_assert_int_eq(r.hook_at_done, 0);
    ck_assert_int_eq(h.hooks, 1);
    ck_assert_int_eq(h.done_at_hook, 1);
    ck_assert_int_eq(pending_events(), 0);
    run_for(0.020);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(h.hooks, 1);
    h.hooks = 0;
}

START_TEST(test_deadline)
{
    expect_deadline("t50", 50);
    expect_deadline("t80", 80);
    expect_deadline("inherit", 50);
}
END_TEST

START_TEST(test_deadline_kept_then_released)
{
    /* The connection keeps the timed-out request for a while (earlier
     * replies are ahead of it), then lets go either way. */
    result r;
    jsond_req *req = request("t50", never, NULL, keep_cb, &r);
    jsond_req_run(req);
    run_until(&r.done, 1, 5.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.code, JSOND_TIMEOUT);
    ck_assert_int_eq(h.hooks, 1);
    ck_assert_int_eq(req->state, JSOND_REQ_CANCELLED);
    jsond_req_release(req);

    req = request("t50", never, NULL, keep_cb, &r);
    jsond_req_run(req);
    run_until(&r.done, 1, 5.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(h.hooks, 2);
    jsond_req_cancel(req); /* the hook has run: not again */
    ck_assert_int_eq(h.hooks, 2);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(pending_events(), 0);
}
END_TEST

START_TEST(test_deadline_without_hook)
{
    /* No hook: the timeout is reported all the same, and the handler's
     * late reply is discarded and frees the request. */
    result r;
    jsond_req_run(request("t50", hold, NULL, done_cb, &r));
    ck_assert_ptr_nonnull(h.held);
    run_until(&r.done, 1, 5.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.code, JSOND_TIMEOUT);
    ck_assert_str_eq(r.message, "no reply within 50 ms");
    ck_assert_int_eq(pending_events(), 0);
    jsond_reply(h.held, json_pack("{s:i}", "late", 1));
    ck_assert_int_eq(r.done, 1);

    /* The same with a late error, and with a late producer. */
    jsond_req_run(request("t50", hold, NULL, done_cb, &r));
    run_until(&r.done, 1, 5.0);
    ck_assert_int_eq(r.done, 1);
    jsond_reply_error(h.held, JSOND_INTERNAL, "late");
    ck_assert_int_eq(r.done, 1);

    jsond_req_run(request("t50", hold, NULL, done_cb, &r));
    run_until(&r.done, 1, 5.0);
    ck_assert_int_eq(r.done, 1);
    jsond_reply_producer(h.held, &test_ops, producer_self());
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(h.stops, 1);
    ck_assert_int_eq(h.proceeds, 0);
}
END_TEST

START_TEST(test_no_deadline)
{
    /* timeout = 0 on the route wins over request_timeout. */
    const cfg_route *zero = jsond_config_route(cfg, "zero");
    const cfg_route *inherit = jsond_config_route(cfg, "inherit");
    ck_assert_uint_eq(jsond_route_timeout(cfg, zero), 0);
    ck_assert_uint_eq(jsond_route_timeout(cfg, inherit), 50);
    ck_assert_uint_eq(jsond_route_timeout(cfg, jsond_config_route(cfg, "t80")), 80);

    result r;
    jsond_req *req = request("zero", never, NULL, done_cb, &r);
    jsond_req_run(req);
    ck_assert_int_eq(pending_events(), 0);
    ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1);
    run_for(0.100);
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(h.hooks, 0);
    jsond_req_cancel(req);
    ck_assert_int_eq(h.hooks, 1);
    ck_assert_int_eq(r.done, 0);

    /* A route without timeout inherits request_timeout: armed. */
    req = request("inherit", never, NULL, done_cb, &r);
    jsond_req_run(req);
    ck_assert_int_eq(pending_events(), 1);
    jsond_req_cancel(req);
    ck_assert_int_eq(pending_events(), 0);
    ck_assert_int_eq(h.hooks, 2);

    /* request_timeout = 0: no deadline, unless the route sets its own. */
    static const char text[] = "[server]\nrequest_timeout = 0\n[listen l]\nrequests = yes\n"
                               "[route a]\nhandler = builtin:hello\n"
                               "[route b]\nhandler = builtin:hello\ntimeout = 50ms\n";
    jsond_config *other = jsond_config_parse("u.conf", text, sizeof text - 1, NULL);
    ck_assert_ptr_nonnull(other);
    memset(&r, 0, sizeof r);
    h.watch = &r;
    req = jsond_req_new(other, jsond_config_route(other, "a"), handler(other, "a", never),
                        json_object(), &env, done_cb, &r);
    ck_assert_ptr_nonnull(req);
    jsond_req_run(req);
    ck_assert_int_eq(pending_events(), 0);
    jsond_req_cancel(req);
    ck_assert_int_eq(h.hooks, 3);
    req = jsond_req_new(other, jsond_config_route(other, "b"), handler(other, "b", never),
                        json_object(), &env, done_cb, &r);
    ck_assert_ptr_nonnull(req);
    jsond_req_run(req);
    /* The request holds its own reference: the snapshot may go. */
    jsond_config_unref(other);
    ck_assert_int_eq(pending_events(), 1);
    run_until(&r.done, 1, 5.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.code, JSOND_TIMEOUT);
    ck_assert_str_eq(r.message, "no reply within 50 ms");
    ck_assert_int_eq(h.hooks, 4);
}
END_TEST

/* ---- cancels ----------------------------------------------------------- */

START_TEST(test_cancel_running)
{
    /* The client goes away: the hook runs (and replies), done never does,
     * the deadline is disarmed. */
    result r;
    jsond_req *req = request("t50", reply_later, json_pack("{s:i}", "ms", 10000), done_cb, &r);
    jsond_req_run(req);
    ck_assert_int_eq(pending_events(), 2);
    jsond_req_cancel(req);
    ck_assert_int_eq(h.hooks, 1);
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(pending_events(), 0);
    run_for(0.100);
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(h.hooks, 1);
}
END_TEST

/* The ways a handler can reply late, after the connection cancelled. */
enum { LATE_REPLY, LATE_ERROR, LATE_PRODUCER, LATE_NULL };

START_TEST(test_cancel_then_late_reply)
{
    result r;
    jsond_req *req = request("t50", hold_with_hook, NULL, done_cb, &r);
    jsond_req_run(req);
    ck_assert_ptr_eq(h.held, req);
    ck_assert_int_eq(pending_events(), 1);
    jsond_req_cancel(req);
    ck_assert_int_eq(h.hooks, 1);
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(pending_events(), 0);
    /* The handler still holds it: its late reply is discarded, and frees. */
    switch (_i) {
    case LATE_REPLY:
        jsond_reply(h.held, json_pack("{s:i}", "late", 1));
        break;
    case LATE_ERROR:
        jsond_reply_error(h.held, JSOND_HANDLER_FAILED, "late %d", 1);
        break;
    case LATE_PRODUCER:
        jsond_reply_producer(h.held, &test_ops, producer_self());
        ck_assert_int_eq(h.stops, 1);
        ck_assert_int_eq(h.proceeds, 0);
        break;
    case LATE_NULL:
        jsond_reply(h.held, NULL);
        break;
    }
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(h.hooks, 1);
    run_for(0.080);
    ck_assert_int_eq(r.done, 0);
    ck_assert_int_eq(h.hooks, 1);
}
END_TEST

START_TEST(test_cancel_without_hook)
{
    /* No hook: cancel just lets go; the handler's later reply frees. */
    result r;
    jsond_req *req = request("t50", hold, NULL, done_cb, &r);
    jsond_req_run(req);
    jsond_req_cancel(req);
    ck_assert_int_eq(pending_events(), 0);
    jsond_reply(h.held, json_pack("{s:i}", "late", 1));
    ck_assert_int_eq(r.done, 0);
}
END_TEST

START_TEST(test_cancel_after_reply)
{
    /* The reply came (done ran) but the connection kept the request and
     * then goes away instead of releasing: the hook must not run (the
     * handler let go when it replied), and everything is freed. */
    result r;
    jsond_req *req = request("t50", reply_later, json_pack("{s:i}", "ms", 5), keep_cb, &r);
    jsond_req_run(req);
    run_until(&r.done, 1, 5.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(req->state, JSOND_REQ_REPLIED);
    ck_assert_int_eq(pending_events(), 0);
    jsond_req_cancel(req);
    ck_assert_int_eq(h.hooks, 0);
    ck_assert_int_eq(r.done, 1);
    result_fini(&r);

    /* A reply at once, kept, then cancelled: the same. */
    req = request("t50", reply_now, NULL, keep_cb, &r);
    jsond_req_run(req);
    ck_assert_int_eq(r.done, 1);
    jsond_req_cancel(req);
    ck_assert_int_eq(r.done, 1);
    result_fini(&r);

    /* A producer kept and never taken: cancelling stops it once. */
    req = request("t50", producer_now, NULL, keep_cb, &r);
    jsond_req_run(req);
    ck_assert_int_eq(r.done, 1);
    jsond_req_cancel(req);
    ck_assert_int_eq(h.stops, 1);
    ck_assert_int_eq(h.proceeds, 0);
    run_for(0.080);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(h.hooks, 0);
}
END_TEST

START_TEST(test_release_inside_done_then_handler_returns)
{
    /* done runs inside the handler's call and releases there: the request
     * must survive until the handler returns (jsond_req_run holds it). */
    result r;
    jsond_req *req = request("zero", reply_now, NULL, done_cb, &r);
    jsond_req_run(req);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(h.runs, 1);
    result_fini(&r);
}
END_TEST

/* ---- deadlines on the loop's queues ----------------------------------------- */

START_TEST(test_deadline_queues)
{
    /* N requests with one duration share one queue; inherit has the same
     * 50 ms as t50. A second duration makes a second queue. */
    enum { N = 20 };
    result r[N + 1];
    int total = 0;
    for (int i = 0; i < N; i++) {
        jsond_req_run(request(i % 2 ? "t50" : "inherit", never, NULL, done_cb, &r[i]));
        ck_assert_uint_eq(jsond_timeouts_count(env.timeouts), 1);
    }
    ck_assert_int_eq(pending_events(), N);
    jsond_req_run(request("t80", never, NULL, done_cb, &r[N]));
    ck_assert_uint_eq(jsond_timeouts_count(env.timeouts), 2);
    h.watch = NULL;
    double end = now() + 5.0;
    while (now() < end) {
        total = 0;
        for (int i = 0; i <= N; i++)
            total += r[i].done;
        if (total == N + 1 || event_base_loop(base, EVLOOP_ONCE) == 1)
            break;
    }
    for (int i = 0; i <= N; i++) {
        ck_assert_int_eq(r[i].done, 1);
        ck_assert_int_eq(r[i].code, JSOND_TIMEOUT);
    }
    /* The 50 ms ones came before the 80 ms one. */
    for (int i = 0; i < N; i++)
        ck_assert(r[i].at <= r[N].at);
    ck_assert_int_eq(h.hooks, N + 1);
    ck_assert_int_eq(pending_events(), 0);
    ck_assert_uint_eq(jsond_timeouts_count(env.timeouts), 2);
}
END_TEST

/* ---- jsond_timeouts alone --------------------------------------------------- */

#define NTIMERS 300

typedef struct timer_rec {
    struct event *ev;
    unsigned ms;
    double fired; /* monotonic seconds */
    long pass;    /* loop pass it fired in */
    int order;    /* rank in the firing sequence, from 1 */
} timer_rec;

static timer_rec timers[NTIMERS];
static int fired_count;
static long loop_pass;

static void timer_fire_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    timer_rec *t = arg;
    t->fired = now();
    t->pass = loop_pass;
    t->order = ++fired_count;
}

typedef struct arm_ctx {
    jsond_timeouts *t;
    int failures;
} arm_ctx;

/* Arms every timer from inside one callback, so they all count from the
 * same cached loop time; in a shuffled order, so the queues are made in
 * an order unrelated to the durations. */
static void arm_all_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    arm_ctx *a = arg;
    for (int k = 0; k < NTIMERS; k++) {
        int i = (k * 7) % NTIMERS; /* 7 and 300 are coprime: a permutation */
        if (jsond_timeouts_add(a->t, timers[i].ev, timers[i].ms) != 0)
            a->failures++;
    }
}

START_TEST(test_timeouts_many_durations)
{
    jsond_timeouts *t = env.timeouts;
    ck_assert_uint_eq(jsond_timeouts_count(t), 0);
    for (int i = 0; i < NTIMERS; i++) {
        timers[i] = (timer_rec){.ms = (unsigned)(i + 1)};
        timers[i].ev = evtimer_new(base, timer_fire_cb, &timers[i]);
        ck_assert_ptr_nonnull(timers[i].ev);
    }
    fired_count = 0;
    loop_pass = 0;
    arm_ctx a = {t, 0};
    double t0 = now(); /* no later than the loop time the timers count from */
    ck_assert_int_eq(event_base_once(base, -1, EV_TIMEOUT, arm_all_cb, &a, NULL), 0);
    ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
    ck_assert_int_eq(a.failures, 0);
    ck_assert_int_eq(fired_count, 0);
    ck_assert_int_eq(pending_events(), NTIMERS);
    /* libevent allows 256 queues per base: the rest went to the heap. */
    unsigned queues = jsond_timeouts_count(t);
    ck_assert_uint_le(queues, 256);
    ck_assert_uint_ge(queues, 200);

    double end = now() + 10.0;
    while (fired_count < NTIMERS && now() < end) {
        loop_pass++;
        if (event_base_loop(base, EVLOOP_ONCE) == 1)
            break;
    }
    ck_assert_int_eq(fired_count, NTIMERS);
    for (int i = 0; i < NTIMERS; i++) {
        timer_rec *r = &timers[i];
        ck_assert_msg(r->fired >= t0 + r->ms / 1000.0, "%u ms timer fired after %.4f s", r->ms,
                      r->fired - t0);
        /* In order: a longer duration never fires in an earlier pass than
         * a shorter one (within one pass, libevent may run expired timers
         * from the heap before those of a queue). */
        if (i > 0)
            ck_assert_msg(timers[i - 1].pass <= r->pass, "%u ms fired in pass %ld, %u ms in %ld",
                          timers[i - 1].ms, timers[i - 1].pass, r->ms, r->pass);
    }
    /* Fired in duration order as far as passes tell: the firing ranks of
     * consecutive passes never interleave. */
    for (int i = 1; i < NTIMERS; i++)
        if (timers[i - 1].pass < timers[i].pass)
            ck_assert_int_lt(timers[i - 1].order, timers[i].order);

    /* Arming the same durations again makes no more queues. */
    for (int i = 0; i < NTIMERS; i++)
        ck_assert_int_eq(jsond_timeouts_add(t, timers[i].ev, timers[i].ms), 0);
    ck_assert_uint_eq(jsond_timeouts_count(t), queues);
    for (int i = 0; i < NTIMERS; i++)
        event_free(timers[i].ev);
    ck_assert_int_eq(pending_events(), 0);
}
END_TEST

START_TEST(test_timeouts_null)
{
    /* Without queues: a heap timer, which fires all the same. */
    ck_assert_uint_eq(jsond_timeouts_count(NULL), 0);
    timer_rec r = {.ms = 20};
    r.ev = evtimer_new(base, timer_fire_cb, &r);
    ck_assert_ptr_nonnull(r.ev);
    fired_count = 0;
    double t0 = now();
    ck_assert_int_eq(jsond_timeouts_add(NULL, r.ev, 20), 0);
    run_until(&fired_count, 1, 5.0);
    ck_assert_int_eq(fired_count, 1);
    ck_assert(r.fired - t0 >= 0.020);
    /* Re-arming replaces the pending timer rather than adding one. */
    ck_assert_int_eq(jsond_timeouts_add(env.timeouts, r.ev, 1000), 0);
    ck_assert_int_eq(jsond_timeouts_add(env.timeouts, r.ev, 10), 0);
    ck_assert_int_eq(pending_events(), 1);
    t0 = now();
    run_until(&fired_count, 2, 5.0);
    ck_assert_int_eq(fired_count, 2);
    ck_assert(r.fired - t0 < 0.9);
    ck_assert_int_eq(pending_events(), 0);
    event_free(r.ev);
}
END_TEST

/* The daemon's loop runs on libevent's coarse clock, whose reading may lag
 * the real time by up to a tick: a timer counted from it would fire up to
 * a tick early, but for the tick jsond_timer_tv() adds. Armed from inside
 * a callback (from the loop's cached time) and from outside it. */
#define NCOARSE 40

typedef struct coarse_ctx {
    jsond_timeouts *t;
    timer_rec *recs;
    int failures;
} coarse_ctx;

static void arm_half_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    coarse_ctx *c = arg;
    for (int i = 0; i < NCOARSE / 2; i++)
        c->failures += jsond_timeouts_add(c->t, c->recs[i].ev, c->recs[i].ms) != 0;
}

START_TEST(test_timeouts_never_early_on_the_coarse_clock)
{
    struct event_base *coarse = event_base_new();
    ck_assert_ptr_nonnull(coarse);
    jsond_timeouts *t = jsond_timeouts_new(coarse);
    ck_assert_ptr_nonnull(t);
    timer_rec recs[NCOARSE];
    for (int i = 0; i < NCOARSE; i++) {
        recs[i] = (timer_rec){.ms = (unsigned)(i % 10 + 1)};
        recs[i].ev = evtimer_new(coarse, timer_fire_cb, &recs[i]);
        ck_assert_ptr_nonnull(recs[i].ev);
    }
    fired_count = 0;
    coarse_ctx c = {t, recs, 0};
    double t0 = now(); /* no later than the cached time of the next pass */
    ck_assert_int_eq(event_base_once(coarse, -1, EV_TIMEOUT, arm_half_cb, &c, NULL), 0);
    ck_assert_int_eq(event_base_loop(coarse, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
    ck_assert_int_eq(c.failures, 0);
    double t1 = now();
    for (int i = NCOARSE / 2; i < NCOARSE; i++) /* half on the heap */
        ck_assert_int_eq(jsond_timeouts_add(i % 2 ? t : NULL, recs[i].ev, recs[i].ms), 0);
    double end = now() + 5.0;
    while (fired_count < NCOARSE && now() < end)
        if (event_base_loop(coarse, EVLOOP_ONCE) == 1)
            break;
    ck_assert_int_eq(fired_count, NCOARSE);
    for (int i = 0; i < NCOARSE; i++) {
        double from = i < NCOARSE / 2 ? t0 : t1;
        ck_assert_msg(recs[i].fired >= from + recs[i].ms / 1000.0, "%u ms timer fired after %.4f s",
                      recs[i].ms, recs[i].fired - from);
        event_free(recs[i].ev);
    }
    jsond_timeouts_free(t);
    event_base_free(coarse);
}
END_TEST

static Suite *req_suite(void)
{
    Suite *s = suite_create("req");
    TCase *tc = tcase_create("reply");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_reply_at_once);
    tcase_add_test(tc, test_reply_later);
    tcase_add_test(tc, test_timers_dropped_by_reply);
    tcase_add_test(tc, test_timer_cancelled_request);
    tcase_add_test(tc, test_release_inside_done_then_handler_returns);
    suite_add_tcase(s, tc);

    tc = tcase_create("deadline");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_deadline);
    tcase_add_test(tc, test_deadline_kept_then_released);
    tcase_add_test(tc, test_deadline_without_hook);
    tcase_add_test(tc, test_no_deadline);
    tcase_add_test(tc, test_deadline_queues);
    suite_add_tcase(s, tc);

    tc = tcase_create("cancel");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_cancel_running);
    tcase_add_loop_test(tc, test_cancel_then_late_reply, LATE_REPLY, LATE_NULL + 1);
    tcase_add_test(tc, test_cancel_without_hook);
    tcase_add_test(tc, test_cancel_after_reply);
    suite_add_tcase(s, tc);

    tc = tcase_create("timeouts");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_timeouts_many_durations);
    tcase_add_test(tc, test_timeouts_null);
    tcase_add_test(tc, test_timeouts_never_early_on_the_coarse_clock);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(req_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
