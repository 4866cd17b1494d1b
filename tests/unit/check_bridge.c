/* check_bridge.c: requests whose handler runs on a pool thread, and streams
 * fed from one.
 *
 * The tests play the connection (done callbacks, on the loop) and give the
 * requests test handlers that run on a real pool: one returns a value, one
 * returns nothing, one replies an error and returns something anyway, one
 * waits at a gate the test opens, one polls jsond_req_expired(). What is
 * checked is what each side sees, and on which thread: outcomes reach the
 * connection on the loop thread only, a queued job that is cancelled never
 * runs, a running one finishes and is counted late, and a stream's worker
 * blocks while the reader does not read.
 *
 * Every wait is bounded: the loop runs in steps with a time limit, and a
 * gate that is never opened is opened by the teardown.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "inbox.h"
#include "output.h"
#include "pool.h"
#include "req.h"
#include "stats.h"
#include "timeout.h"
#include "unit.h"

/* The smallest output_buffer: a stream's queue holds 4 KB at most. */
static const char conf[] = "[server]\noutput_buffer = 4K\n"
                           "[listen l]\nrequests = yes\n"
                           "[route r]\nhandler = builtin:records\n";

/* What the "connection" saw. */
typedef struct result {
    int done;
    json_t *reply;
    int failed;
    jsond_code code;
    char message[256];
    const jsond_producer_ops *ops; /* a stream, taken over */
    void *self;
    int on_loop; /* done ran on the loop thread */
} result;

static struct event_base *base;
static jsond_stats stats;
static jsond_config *cfg;
static jsond_inbox *inbox;
static jsond_pool *pool;
static jsond_req_env env;
static pthread_t loop_thread;

static int out_events; /* DRAINED events of the test's output; -100 on an error */

/* What the handlers did, seen from the workers: atomics. */
static atomic_int runs, on_worker, stopped_early, pushed;

/* A gate handlers wait at until the test opens it. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_waiting;

static void gate_pass(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_waiting++;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    gate_waiting--;
    pthread_mutex_unlock(&gate_lock);
}

static void gate_set(int open)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = open;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

/* Waits (bounded) until `n` handlers wait at the gate. */
static void gate_wait_for(int n)
{
    double end = now() + 10.0;
    pthread_mutex_lock(&gate_lock);
    while (gate_waiting < n && now() < end) {
        pthread_mutex_unlock(&gate_lock);
        usleep(1000);
        pthread_mutex_lock(&gate_lock);
    }
    int got = gate_waiting;
    pthread_mutex_unlock(&gate_lock);
    ck_assert_int_eq(got, n);
}

static void make_pool(unsigned threads, unsigned queue_limit)
{
    pool = jsond_pool_new(inbox, "p", threads, queue_limit);
    ck_assert_ptr_nonnull(pool);
}

static void setup(void)
{
    ck_assert_int_eq(jsond_threads_init(), 0);
    base = precise_base();
    loop_thread = pthread_self();
    jsond_context_set(JSOND_CTX_LOOP);
    ck_assert_int_eq(jsond_stats_init(&stats), 0);
    cfg = jsond_config_parse("t.conf", conf, sizeof conf - 1, NULL);
    ck_assert_ptr_nonnull(cfg);
    inbox = jsond_inbox_new(base);
    ck_assert_ptr_nonnull(inbox);
    pool = NULL;
    env = (jsond_req_env){.base = base,
                          .stats = &stats,
                          .timeouts = jsond_timeouts_new(base),
                          .inbox = inbox,
                          .pools = &pool};
    ck_assert_ptr_nonnull(env.timeouts);
    atomic_store(&runs, 0);
    atomic_store(&on_worker, 0);
    atomic_store(&stopped_early, 0);
    atomic_store(&pushed, 0);
    out_events = 0;
    gate_set(0);
}

static void teardown(void)
{
    gate_set(1); /* whatever a test left waiting goes on */
    jsond_pool_free(pool);
    jsond_inbox_free(inbox); /* the last completions release their requests */
    jsond_timeouts_free(env.timeouts);
    jsond_config_unref(cfg);
    jsond_stats_fini(&stats);
    event_base_free(base);
    jsond_context_set(JSOND_CTX_OTHER);
}

/* Runs the loop until `*counter` reaches `want` or `limit_s` passed. */
static void run_until(const int *counter, int want, double limit_s)
{
    double end = now() + limit_s;
    while (*counter < want && now() < end)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(200);
}

static void run_for(double s)
{
    int never = 0;
    run_until(&never, 1, s);
}

/* Takes the outcome and lets go, as the connection does. */
static void done_cb(jsond_req *req, void *arg)
{
    result *r = arg;
    r->done++;
    r->on_loop = pthread_equal(pthread_self(), loop_thread) && jsond_context() == JSOND_CTX_LOOP;
    r->reply = req->out.reply;
    req->out.reply = NULL;
    r->failed = req->out.failed;
    r->code = req->out.code;
    memcpy(r->message, req->out.message, sizeof r->message);
    r->ops = req->out.ops;
    r->self = req->out.self;
    req->out.ops = NULL;
    jsond_req_release(req);
}

static void result_fini(result *r)
{
    json_decref(r->reply);
    if (r->ops)
        r->ops->stop(r->self);
}

/* A request run by the sync handler `fn` on the test's pool. */
static jsond_req *request(jsond_sync_fn fn, unsigned timeout_ms, json_t *args, result *r)
{
    memset(r, 0, sizeof *r);
    jsond_handler h = {
        .color = JSOND_COLOR_SYNC, .sync_fn = fn, .pool = 0, .timeout_ms = timeout_ms};
    jsond_req *req = jsond_req_new(cfg, jsond_config_route(cfg, "r"), &h,
                                   args ? args : json_object(), &env, done_cb, r);
    ck_assert_ptr_nonnull(req);
    return req;
}

static void note_run(void)
{
    atomic_fetch_add(&runs, 1);
    if (jsond_context() == JSOND_CTX_WORKER && !pthread_equal(pthread_self(), loop_thread))
        atomic_fetch_add(&on_worker, 1);
}

/* ---- the handlers ------------------------------------------------------- */

static json_t *returns_value(jsond_req *req, json_t *args)
{
    (void)req;
    (void)args;
    note_run();
    return json_pack("{s:s}", "from", "worker");
}

static json_t *returns_null(jsond_req *req, json_t *args)
{
    (void)req;
    (void)args;
    note_run();
    return NULL;
}

/* Replies an error, then returns a value all the same: the first reply
 * wins, and the value is freed (valgrind would see it leak). */
static json_t *errs_then_returns(jsond_req *req, json_t *args)
{
    (void)args;
    note_run();
    jsond_reply_error(req, JSOND_HANDLER_FAILED, "no luck %d", 7);
    jsond_reply(req, json_pack("{s:i}", "second", 2)); /* discarded */
    return json_pack("{s:i}", "ignored", 1);
}

static json_t *waits_at_gate(jsond_req *req, json_t *args)
{
    (void)req;
    (void)args;
    note_run();
    gate_pass();
    return json_pack("{s:b}", "passed", 1);
}

/* Long sync code that stops early once nobody wants its reply. */
static json_t *polls_expired(jsond_req *req, json_t *args)
{
    (void)args;
    note_run();
    double end = now() + 10.0;
    while (!jsond_req_expired(req) && now() < end)
        usleep(1000);
    if (jsond_req_expired(req))
        atomic_fetch_add(&stopped_early, 1);
    return json_pack("{s:s}", "too", "late");
}

/* ---- replies ------------------------------------------------------------ */

START_TEST(test_value_from_worker)
{
    make_pool(2, 4);
    result r;
    jsond_req_run(request(returns_value, 1000, NULL, &r));
    ck_assert_int_eq(r.done, 0); /* never inline: the job runs elsewhere */
    run_until(&r.done, 1, 10.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.on_loop, 1);
    ck_assert_int_eq(atomic_load(&on_worker), 1);
    ck_assert_int_eq(r.failed, 0);
    ck_assert_str_eq(json_string_value(json_object_get(r.reply, "from")), "worker");
    run_for(0.02);
    ck_assert_int_eq(r.done, 1);
    result_fini(&r);
}
END_TEST

START_TEST(test_null_is_internal)
{
    make_pool(1, 0);
    result r;
    jsond_req_run(request(returns_null, 1000, NULL, &r));
    run_until(&r.done, 1, 10.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.failed, 1);
    ck_assert_int_eq(r.code, JSOND_INTERNAL);
    ck_assert_str_eq(r.message, "route r: the handler returned no reply");
    result_fini(&r);
}
END_TEST

START_TEST(test_error_from_worker_wins)
{
    make_pool(1, 0);
    result r;
    jsond_req_run(request(errs_then_returns, 1000, NULL, &r));
    run_until(&r.done, 1, 10.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.on_loop, 1);
    ck_assert_int_eq(r.failed, 1);
    ck_assert_int_eq(r.code, JSOND_HANDLER_FAILED);
    ck_assert_str_eq(r.message, "no luck 7");
    ck_assert_ptr_null(r.reply);
    result_fini(&r);
}
END_TEST

/* ---- a full pool ---------------------------------------------------------- */

START_TEST(test_busy_at_once)
{
    make_pool(1, 1);
    result a, b, c;
    jsond_req_run(request(waits_at_gate, 0, NULL, &a));
    gate_wait_for(1);                                   /* a runs */
    jsond_req_run(request(waits_at_gate, 0, NULL, &b)); /* queued */
    jsond_req_run(request(waits_at_gate, 0, NULL, &c)); /* no room */
    ck_assert_int_eq(c.done, 1);                        /* at once, inside run */
    ck_assert_int_eq(c.failed, 1);
    ck_assert_int_eq(c.code, JSOND_BUSY);
    ck_assert_str_eq(c.message, "pool p is full");
    ck_assert_int_eq(a.done + b.done, 0);
    gate_set(1);
    run_until(&b.done, 1, 10.0);
    run_until(&a.done, 1, 10.0);
    ck_assert_int_eq(a.failed + b.failed, 0);
    jsond_pool_stats st;
    jsond_pool_get_stats(pool, &st);
    ck_assert_uint_eq(st.rejected, 1);
    ck_assert_int_eq(atomic_load(&runs), 2);
    result_fini(&a);
    result_fini(&b);
    result_fini(&c);
}
END_TEST

/* A job given to an idle thread never counts against queue_limit: with a
 * limit of 0, one job per thread runs and the next is busy. */
START_TEST(test_queue_limit_zero)
{
    make_pool(2, 0);
    result a, b, c;
    jsond_req_run(request(waits_at_gate, 0, NULL, &a));
    jsond_req_run(request(waits_at_gate, 0, NULL, &b));
    jsond_req_run(request(waits_at_gate, 0, NULL, &c));
    ck_assert_int_eq(a.done + b.done, 0);
    ck_assert_int_eq(c.done, 1);
    ck_assert_int_eq(c.code, JSOND_BUSY);
    gate_wait_for(2);
    gate_set(1);
    run_until(&a.done, 1, 10.0);
    run_until(&b.done, 1, 10.0);
    ck_assert_int_eq(a.failed + b.failed, 0);
    result_fini(&a);
    result_fini(&b);
    result_fini(&c);
}
END_TEST

/* ---- deadlines and cancels -------------------------------------------------- */

START_TEST(test_deadline_queued_and_running)
{
    make_pool(1, 4);
    result a, b;
    jsond_req_run(request(waits_at_gate, 50, NULL, &a));
    gate_wait_for(1);
    jsond_req_run(request(returns_value, 50, NULL, &b)); /* waits behind a */
    double t0 = now();
    run_until(&a.done, 1, 10.0);
    run_until(&b.done, 1, 10.0);
    ck_assert_msg(now() - t0 < 5.0, "deadlines after %.3f s", now() - t0);
    ck_assert_int_eq(a.code, JSOND_TIMEOUT);
    ck_assert_str_eq(a.message, "no reply within 50 ms");
    ck_assert_int_eq(b.code, JSOND_TIMEOUT);
    ck_assert_str_eq(b.message, "still queued in pool p after 50 ms");
    /* The running one finishes later; its outcome is late. The queued
     * one was taken out of the queue and never runs. */
    gate_set(1);
    double end = now() + 10.0;
    jsond_pool_stats st;
    do {
        run_for(0.005);
        jsond_pool_get_stats(pool, &st);
    } while (st.late < 1 && now() < end);
    ck_assert_uint_eq(st.late, 1);
    ck_assert_uint_eq(st.timed_out, 2);
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_int_eq(atomic_load(&runs), 1);
    ck_assert_int_eq(a.done + b.done, 2);
    result_fini(&a);
    result_fini(&b);
}
END_TEST

/* The connection goes away: a queued job is taken back (never runs, no
 * done), a running one stops early when it polls, and is counted late. */
START_TEST(test_cancel_queued_and_running)
{
    make_pool(1, 4);
    result a, b;
    jsond_req *ra = request(polls_expired, 0, NULL, &a);
    jsond_req *rb = request(returns_value, 0, NULL, &b);
    jsond_req_run(ra);
    double end = now() + 10.0;
    while (atomic_load(&runs) < 1 && now() < end)
        usleep(1000);
    jsond_req_run(rb);
    ck_assert_int_eq(jsond_req_expired(ra), 0);
    jsond_req_cancel(rb);
    jsond_req_cancel(ra);
    jsond_pool_stats st;
    do {
        run_for(0.005);
        jsond_pool_get_stats(pool, &st);
    } while (st.late < 1 && now() < end);
    ck_assert_int_eq(atomic_load(&stopped_early), 1);
    ck_assert_uint_eq(st.late, 1);
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_int_eq(atomic_load(&runs), 1);
    ck_assert_int_eq(a.done + b.done, 0);
}
END_TEST

/* A pool that drains refuses new work with shutting_down. */
START_TEST(test_draining_pool)
{
    make_pool(1, 4);
    jsond_pool_drain(pool);
    result r;
    jsond_req_run(request(returns_value, 0, NULL, &r));
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.code, JSOND_SHUTTING_DOWN);
    ck_assert_int_eq(atomic_load(&runs), 0);
    result_fini(&r);
}
END_TEST

/* ---- streams ---------------------------------------------------------------- */

#define ITEMS 20000

/* ITEMS items {"i": N}, counted as they are accepted. */
static json_t *streams(jsond_req *req, json_t *args)
{
    (void)args;
    note_run();
    if (jsond_stream_begin(req) < 0)
        return NULL;
    for (int i = 0; i < ITEMS; i++) {
        if (jsond_stream_item(req, json_pack("{s:i}", "i", i)) < 0)
            break;
        atomic_fetch_add(&pushed, 1);
    }
    jsond_stream_end(req);
    return NULL;
}

static void out_cb(jsond_output *out, jsond_output_event ev, void *arg)
{
    (void)out;
    (void)arg;
    if (ev == JSOND_OUTPUT_DRAINED)
        out_events++;
    else
        out_events = -100;
}

static int socket_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    for (int i = 0; i < 2; i++)
        fcntl(sv[i], F_SETFL, fcntl(sv[i], F_GETFL) | O_NONBLOCK);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    return 0;
}

/* Reads what is there into `got`; -1 at end-of-stream. */
static int drain_peer(int fd, struct evbuffer *got)
{
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        evbuffer_add(got, buf, (size_t)n);
    return n == 0 ? -1 : 0;
}

/* Runs `streams` on a pool of one thread and hands its reply to an output
 * of 4 KB on a socket pair whose peer (sv[1]) is the reader. */
static jsond_output *start_stream(int sv[2])
{
    make_pool(1, 0);
    ck_assert_int_eq(socket_pair(sv), 0);
    jsond_output_opts opts = {.high_water = 4096, .timeouts = env.timeouts};
    jsond_output *out = jsond_output_new(base, sv[0], &opts, out_cb, NULL);
    ck_assert_ptr_nonnull(out);
    result r;
    jsond_req_run(request(streams, 0, NULL, &r));
    run_until(&r.done, 1, 10.0);
    ck_assert_int_eq(r.done, 1);
    ck_assert_ptr_nonnull(r.ops); /* the reply is a producer: the stream */
    ck_assert_int_eq(jsond_output_produce(out, r.ops, r.self), 0);
    return out;
}

/* A worker streams into an output whose reader stops reading: the worker
 * blocks, far short of the end; once the reader reads, the whole array
 * arrives, exactly. */
START_TEST(test_stream_back_pressure)
{
    int sv[2];
    jsond_output *out = start_stream(sv);
    /* Nobody reads: the kernel's buffers, the output and the stream's
     * queue fill, then the worker waits. */
    run_for(0.3);
    int stuck = atomic_load(&pushed);
    run_for(0.2);
    ck_assert_int_eq(atomic_load(&pushed), stuck);
    ck_assert_msg(stuck < ITEMS / 4, "%d items accepted with nobody reading", stuck);
    /* Reading lets it go on to the end. */
    struct evbuffer *got = evbuffer_new();
    double end = now() + 20.0;
    while (now() < end && !(out_events > 0 && atomic_load(&pushed) == ITEMS)) {
        drain_peer(sv[1], got);
        run_for(0.001);
    }
    drain_peer(sv[1], got);
    ck_assert_int_eq(atomic_load(&pushed), ITEMS);
    size_t len = evbuffer_get_length(got);
    json_error_t e;
    json_t *doc = json_loadb((const char *)evbuffer_pullup(got, -1), len, 0, &e);
    ck_assert_msg(doc != NULL, "not JSON: %s", e.text);
    ck_assert_uint_eq(json_array_size(doc), ITEMS);
    for (size_t i = 0; i < ITEMS; i += 997)
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(doc, i), "i")), i);
    json_decref(doc);
    evbuffer_free(got);
    jsond_output_free(out);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* The reader goes away mid-stream: the blocked worker's next item fails at
 * once, and it stops. */
START_TEST(test_stream_reader_gone)
{
    int sv[2];
    jsond_output *out = start_stream(sv);
    run_for(0.2);
    ck_assert_int_lt(atomic_load(&pushed), ITEMS);
    jsond_output_free(out); /* the connection closes: its producer stops */
    double end = now() + 10.0;
    while (!jsond_pool_idle(pool) && now() < end)
        run_for(0.005);
    ck_assert_int_eq(jsond_pool_idle(pool), 1);
    ck_assert_int_lt(atomic_load(&pushed), ITEMS);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* A worker's wait for room is bounded by write_timeout even when the
 * output's own timeout never fires (here: none): the stream fails, the
 * output reports the error, and the worker is free. */
START_TEST(test_stream_wait_bounded)
{
    static const char short_conf[] = "[server]\noutput_buffer = 4K\nwrite_timeout = 100ms\n"
                                     "[listen l]\nrequests = yes\n"
                                     "[route r]\nhandler = builtin:records\n";
    jsond_config_unref(cfg);
    cfg = jsond_config_parse("t.conf", short_conf, sizeof short_conf - 1, NULL);
    ck_assert_ptr_nonnull(cfg);
    int sv[2];
    double t0 = now(), end = t0 + 10.0;
    jsond_output *out = start_stream(sv); /* output timeout_ms 0: never */
    while (out_events >= 0 && now() < end)
        run_for(0.005);
    ck_assert_int_eq(out_events, -100); /* JSOND_OUTPUT_ERROR: the stream failed */
    ck_assert_msg(now() - t0 >= 0.1, "gave up after %.3f s", now() - t0);
    while (!jsond_pool_idle(pool) && now() < end)
        run_for(0.005);
    ck_assert_int_eq(jsond_pool_idle(pool), 1);
    ck_assert_int_lt(atomic_load(&pushed), ITEMS);
    jsond_output_free(out);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* An async handler streams on the loop: nothing blocks (every item is
 * taken at once, far over the 4 KB watermark), the request stays held until
 * the end, and the output gets the whole array. */
static void streams_on_loop(jsond_req *req, json_t *args)
{
    (void)args;
    ck_assert_int_eq(jsond_stream_begin(req), 0);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(jsond_stream_item(req, json_pack("{s:i}", "i", i)), 0);
    ck_assert_int_eq(jsond_stream_end(req), 0);
    ck_assert_int_eq(jsond_stream_item(req, json_true()), -1); /* ended */
}

START_TEST(test_stream_on_loop)
{
    int sv[2];
    ck_assert_int_eq(socket_pair(sv), 0);
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    jsond_output_opts opts = {.high_water = 4096, .timeouts = env.timeouts};
    jsond_output *out = jsond_output_new(base, sv[0], &opts, out_cb, NULL);
    ck_assert_ptr_nonnull(out);
    result r = {0};
    jsond_handler h = {.color = JSOND_COLOR_ASYNC,
                       .async_fn = streams_on_loop,
                       .pool = JSOND_ON_LOOP,
                       .timeout_ms = 1000};
    jsond_req *req =
        jsond_req_new(cfg, jsond_config_route(cfg, "r"), &h, json_object(), &env, done_cb, &r);
    ck_assert_ptr_nonnull(req);
    jsond_req_run(req);
    ck_assert_int_eq(r.done, 1); /* handed over at the first item, inside the call */
    ck_assert_int_eq(r.on_loop, 1);
    ck_assert_ptr_nonnull(r.ops);
    ck_assert_int_eq(jsond_output_produce(out, r.ops, r.self), 0);
    r.ops = NULL;
    struct evbuffer *got = evbuffer_new();
    double end = now() + 10.0;
    while (now() < end && out_events <= 0) {
        drain_peer(sv[1], got);
        run_for(0.001);
    }
    drain_peer(sv[1], got);
    json_error_t e;
    json_t *doc =
        json_loadb((const char *)evbuffer_pullup(got, -1), evbuffer_get_length(got), 0, &e);
    ck_assert_msg(doc != NULL, "not JSON: %s", e.text);
    ck_assert_uint_eq(json_array_size(doc), 1000);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(doc, 999), "i")), 999);
    json_decref(doc);
    evbuffer_free(got);
    jsond_output_free(out);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

static Suite *bridge_suite(void)
{
    Suite *s = suite_create("bridge");
    TCase *tc = tcase_create("replies");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_value_from_worker);
    tcase_add_test(tc, test_null_is_internal);
    tcase_add_test(tc, test_error_from_worker_wins);
    suite_add_tcase(s, tc);
    tc = tcase_create("full");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_busy_at_once);
    tcase_add_test(tc, test_queue_limit_zero);
    tcase_add_test(tc, test_draining_pool);
    suite_add_tcase(s, tc);
    tc = tcase_create("cancel");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_deadline_queued_and_running);
    tcase_add_test(tc, test_cancel_queued_and_running);
    suite_add_tcase(s, tc);
    tc = tcase_create("stream");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_stream_back_pressure);
    tcase_add_test(tc, test_stream_reader_gone);
    tcase_add_test(tc, test_stream_on_loop);
    tcase_add_test(tc, test_stream_wait_bounded);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(bridge_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
