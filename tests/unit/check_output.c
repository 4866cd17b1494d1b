/* check_output.c: the write path, and the time bomb it exists to defuse.
 *
 * The classic bug: an event-driven server does a plain send() of a 10 MB
 * JSON text on a nonblocking socket; the kernel takes part of it and the
 * rest fails with EAGAIN. These tests first show that bomb on a real TCP
 * loopback socket (whose buffers they size themselves, far below 10 MB,
 * so nothing depends on the host's tcp_wmem), then push the same text
 * (and a 50 MB producer) through jsond_output to the same kind of peer:
 * the call returns at once, memory stays bounded by the watermark, every
 * byte arrives in order once the peer reads, and a write from a thread
 * that is not the loop is refused.
 *
 * Every loop here is bounded in iterations and in time; no sleep orders
 * anything (a short poll() on the peer only saves CPU while waiting).
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "jsond.h"
#include "output.h"

#define BOMB_SIZE      (10 * 1000 * 1000) /* the 10 MB JSON text */
#define PRODUCER_SIZE  (50 * 1000 * 1000) /* the 50 MB producer */
#define HIGH_WATER     (256 * 1024)       /* the producer test's watermark */
#define CHUNK          (16 * 1024)        /* what the test producer appends at a time */
#define TIMEOUT_MS     200                /* the write-timeout test's timeout */
#define PUMP_LIMIT_MS  40000              /* any transfer here must finish within this */
#define PUMP_MAX_ITERS 2000000L
#define SETTLE_ITERS   1000 /* loop turns allowed to reach a steady state */
/* The socket buffers asked for on both ends. The kernel's own defaults
 * (tcp_wmem, tcp_rmem, autotuning) differ from host to host, and a large
 * one could take the whole 10 MB at once; fixed small buffers make "the
 * kernel holds far less than the text" true everywhere. */
#define SOCK_BUF (64 * 1024)

static const char BEFORE[] = "[\"queued before the producer\",";
static const char AFTER[] = ",\"queued after the producer\"]\n";

/* ---- helpers ------------------------------------------------------------ */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    ck_assert_int_ge(flags, 0);
    ck_assert_int_eq(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
}

/* A connected TCP pair over 127.0.0.1, both ends nonblocking: `writer` is
 * the server's side, `peer` the client that reads (or does not). The
 * writer's send buffer and the peer's receive buffer are SOCK_BUF (set
 * explicitly, which also turns autotuning off), so what the kernels can
 * hold in flight is bounded by the test, not by the host. */
static void tcp_pair(int *writer, int *peer)
{
    int size = SOCK_BUF;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof sin;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(lfd, 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(listen(lfd, 1), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    *peer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(*peer, 0);
    /* Before connect(): the window scale is chosen at the handshake. */
    ck_assert_int_eq(setsockopt(*peer, SOL_SOCKET, SO_RCVBUF, &size, sizeof size), 0);
    ck_assert_int_eq(connect(*peer, (struct sockaddr *)&sin, sizeof sin), 0);
    *writer = accept(lfd, NULL, NULL);
    ck_assert_int_ge(*writer, 0);
    ck_assert_int_eq(setsockopt(*writer, SOL_SOCKET, SO_SNDBUF, &size, sizeof size), 0);
    close(lfd);
    set_nonblocking(*writer);
    set_nonblocking(*peer);
}

/* What the kernels can hold between `writer` and `peer`: the writer's send
 * buffer and the peer's receive buffer, as the kernel sized them. */
static size_t in_flight_max(int writer, int peer)
{
    int snd = 0, rcv = 0;
    socklen_t len = sizeof snd;
    ck_assert_int_eq(getsockopt(writer, SOL_SOCKET, SO_SNDBUF, &snd, &len), 0);
    len = sizeof rcv;
    ck_assert_int_eq(getsockopt(peer, SOL_SOCKET, SO_RCVBUF, &rcv, &len), 0);
    return (size_t)snd + (size_t)rcv;
}

/* Position-dependent bytes: a chunk delivered twice, dropped or out of
 * order shows up as a mismatch. */
static unsigned char pattern_at(size_t i)
{
    uint32_t x = (uint32_t)i * 0x9E3779B1u;
    return (unsigned char)(x >> 24);
}

/* A JSON text of exactly `len` bytes (newline included):
 * {"msg":"Hello World","data":"<letters>"}\n. */
static char *json_text(size_t len)
{
    static const char head[] = "{\"msg\":\"Hello World\",\"data\":\"";
    static const char tail[] = "\"}\n";
    ck_assert_uint_gt(len, sizeof head + sizeof tail);
    char *t = malloc(len);
    ck_assert_ptr_nonnull(t);
    memcpy(t, head, sizeof head - 1);
    size_t end = len - (sizeof tail - 1);
    for (size_t i = sizeof head - 1; i < end; i++)
        t[i] = (char)('a' + pattern_at(i) % 26);
    memcpy(t + end, tail, sizeof tail - 1);
    return t;
}

typedef struct events {
    int drained, room, timeout, error;
    double when_ms; /* of the last event */
} events;

static void record_cb(jsond_output *out, jsond_output_event ev, void *arg)
{
    (void)out;
    events *e = arg;
    e->when_ms = now_ms();
    switch (ev) {
    case JSOND_OUTPUT_DRAINED:
        e->drained++;
        break;
    case JSOND_OUTPUT_ROOM:
        e->room++;
        break;
    case JSOND_OUTPUT_TIMEOUT:
        e->timeout++;
        break;
    case JSOND_OUTPUT_ERROR:
        e->error++;
        break;
    }
}

/* Called on every turn of pump(), e.g. to watch the buffer level. */
typedef void (*pump_hook)(void *arg);

/* Turns the loop and reads from `peer` until `len` bytes have arrived,
 * checking each against `expect`. Bounded in turns and time. */
static void pump(struct event_base *base, int peer, const unsigned char *expect, size_t len,
                 pump_hook hook, void *hook_arg)
{
    static unsigned char buf[256 * 1024];
    size_t got = 0;
    double deadline = now_ms() + PUMP_LIMIT_MS;
    for (long i = 0; got < len; i++) {
        ck_assert_msg(i < PUMP_MAX_ITERS && now_ms() < deadline,
                      "transfer stalled: %zu of %zu bytes after %ld turns", got, len, i);
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (hook)
            hook(hook_arg);
        size_t before = got;
        for (int r = 0; r < 64 && got < len; r++) {
            ssize_t n = recv(peer, buf, sizeof buf, 0);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                break;
            ck_assert_msg(n > 0, "peer: %s after %zu of %zu bytes",
                          n == 0 ? "end-of-stream" : strerror(errno), got, len);
            ck_assert_msg(got + (size_t)n <= len, "more bytes than were written");
            ck_assert_msg(memcmp(buf, expect + got, (size_t)n) == 0,
                          "bytes %zu..%zu differ from what was written", got, got + (size_t)n);
            got += (size_t)n;
        }
        if (got == before) {
            /* Nothing to read yet: wait a little for the loop's next write. */
            struct pollfd p = {.fd = peer, .events = POLLIN};
            poll(&p, 1, 1);
        }
    }
}

/* Turns the loop until sending stops making progress: the peer is not
 * reading, so the kernel buffers are full. Returns the turns it took. */
static int settle(struct event_base *base, jsond_output *out)
{
    uint64_t last = UINT64_MAX;
    int still = 0, i;
    for (i = 0; i < SETTLE_ITERS && still < 5; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        uint64_t s = jsond_output_sent(out);
        still = s == last ? still + 1 : 0;
        last = s;
    }
    ck_assert_int_lt(i, SETTLE_ITERS);
    return i;
}

/* ---- a log sink that keeps what it is given ------------------------------ */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[16384];

static void capture_sink(jsond_log_level level, const char *msg, void *arg)
{
    (void)level;
    (void)arg;
    pthread_mutex_lock(&log_lock);
    size_t used = strlen(log_text);
    snprintf(log_text + used, sizeof log_text - used, "%s\n", msg);
    pthread_mutex_unlock(&log_lock);
}

static void setup(void)
{
    log_text[0] = '\0';
    jsond_log_set_sink(capture_sink, NULL);
    jsond_log_set_level(JSOND_LOG_DEBUG);
    jsond_context_set(JSOND_CTX_LOOP);
}

static void teardown(void)
{
    jsond_log_set_sink(NULL, NULL);
    jsond_context_set(JSOND_CTX_OTHER);
}

/* ---- (1) the time bomb, shown -------------------------------------------- */

START_TEST(test_plain_send_is_a_time_bomb)
{
    int w, peer;
    tcp_pair(&w, &peer);
    char *text = json_text(BOMB_SIZE);

    /* The premise, and all that is assumed of the kernel: it can hold far
     * less than the text (a slow peer's buffers are full). No byte count
     * below depends on the host's socket buffer sizes. */
    size_t room = in_flight_max(w, peer);
    ck_assert_msg(room < BOMB_SIZE / 4, "the kernel may hold %zu bytes", room);

    /* What a blocking-style send_json() does: one send() of the whole text.
     * The kernel takes what fits and says so: a short count. */
    ssize_t n = send(w, text, BOMB_SIZE, MSG_NOSIGNAL);
    ck_assert_msg(n > 0 && n < BOMB_SIZE, "first send() of %d bytes returned %zd", BOMB_SIZE, n);
    fprintf(stderr,
            "plain send(): %zd of %d bytes taken (kernel buffers %zu), the rest would be lost\n", n,
            BOMB_SIZE, room);
    /* And its retry: the kernel is full (a few more bytes may slip in as
     * ACKs come back, hence the bounded loop), then EAGAIN, with most of
     * the text never sent. */
    size_t total = (size_t)n;
    int i;
    for (i = 0; i < 1000; i++) {
        n = send(w, text + total, BOMB_SIZE - total, MSG_NOSIGNAL);
        if (n < 0)
            break;
        total += (size_t)n;
    }
    ck_assert_int_eq(n, -1);
    ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK, "send failed with %s, not EAGAIN",
                  strerror(errno));
    ck_assert_uint_lt(total, BOMB_SIZE);

    free(text);
    close(w);
    close(peer);
}
END_TEST

/* ---- (2) the same text through the write path ---------------------------- */

START_TEST(test_output_write_returns_at_once_and_delivers)
{
    int w, peer;
    tcp_pair(&w, &peer);
    char *text = json_text(BOMB_SIZE);
    json_error_t jerr;
    json_t *doc = json_loadb(text, BOMB_SIZE, 0, &jerr);
    ck_assert_msg(doc != NULL, "the test's text is not JSON: %s", jerr.text);
    json_decref(doc);

    struct event_base *base = event_base_new();
    ck_assert_ptr_nonnull(base);
    events ev = {0};
    jsond_output_opts opts = {.high_water = HIGH_WATER, .timeout_ms = 0};
    jsond_output *out = jsond_output_new(base, w, &opts, record_cb, &ev);
    ck_assert_ptr_nonnull(out);

    /* The call queues and returns: nothing is written from inside it. */
    ck_assert_int_eq(jsond_output_write(out, text, BOMB_SIZE), 0);
    ck_assert_uint_eq(jsond_output_buffered(out), BOMB_SIZE);
    ck_assert_uint_eq(jsond_output_sent(out), 0);
    ck_assert(!jsond_output_idle(out));

    /* The loop writes what the kernel takes; the peer reads nothing, so
     * most of the text stays buffered and nothing fails or blocks. */
    settle(base, out);
    ck_assert_uint_gt(jsond_output_sent(out), 0);
    ck_assert_uint_lt(jsond_output_sent(out), BOMB_SIZE);
    ck_assert_uint_gt(jsond_output_buffered(out), 0);
    ck_assert_uint_eq(jsond_output_buffered(out) + jsond_output_sent(out), BOMB_SIZE);
    ck_assert_int_eq(ev.drained + ev.room + ev.timeout + ev.error, 0);
    ck_assert(jsond_output_full(out));

    /* The peer reads: every byte arrives, in order; the output reports room
     * once when it falls below its watermark, then DRAINED. */
    pump(base, peer, (const unsigned char *)text, BOMB_SIZE, NULL, NULL);
    ck_assert_int_eq(ev.room, 1);
    ck_assert_int_eq(ev.drained, 1);
    ck_assert_int_eq(ev.timeout + ev.error, 0);
    ck_assert(jsond_output_idle(out));
    ck_assert_uint_eq(jsond_output_buffered(out), 0);
    ck_assert_uint_eq(jsond_output_sent(out), BOMB_SIZE);

    jsond_output_free(out);
    event_base_free(base);
    free(text);
    close(w);
    close(peer);
}
END_TEST

/* ---- producers ----------------------------------------------------------- */

typedef struct producer_stats {
    int stops;
    int proceeds_after_stop;
    long proceeds;
    size_t produced;
    size_t peak_in_proceed; /* the most the output held right after a proceed */
} producer_stats;

typedef struct test_producer {
    producer_stats *st;
    size_t total, pos;
} test_producer;

static int tp_proceed(void *self, struct evbuffer *out, size_t want)
{
    test_producer *p = self;
    unsigned char chunk[CHUNK];
    p->st->proceeds++;
    if (p->st->stops)
        p->st->proceeds_after_stop++;
    /* Whole chunks while more is wanted: at most one chunk past `want`. */
    while (p->pos < p->total && want > 0) {
        size_t n = p->total - p->pos < CHUNK ? p->total - p->pos : CHUNK;
        for (size_t i = 0; i < n; i++)
            chunk[i] = pattern_at(p->pos + i);
        if (evbuffer_add(out, chunk, n) < 0)
            return -1;
        p->pos += n;
        p->st->produced += n;
        want = n < want ? want - n : 0;
    }
    size_t len = evbuffer_get_length(out);
    if (len > p->st->peak_in_proceed)
        p->st->peak_in_proceed = len;
    return p->pos == p->total ? 1 : 0;
}

static void tp_stop(void *self)
{
    test_producer *p = self;
    p->st->stops++;
    free(p);
}

static const jsond_producer_ops tp_ops = {.proceed = tp_proceed, .stop = tp_stop};

static test_producer *tp_new(producer_stats *st, size_t total)
{
    test_producer *p = calloc(1, sizeof *p);
    ck_assert_ptr_nonnull(p);
    p->st = st;
    p->total = total;
    return p;
}

typedef struct watch {
    jsond_output *out;
    size_t peak;
} watch;

static void watch_level(void *arg)
{
    watch *wt = arg;
    size_t b = jsond_output_buffered(wt->out);
    if (b > wt->peak)
        wt->peak = b;
}

START_TEST(test_producer_memory_bounded_and_in_order)
{
    int w, peer;
    tcp_pair(&w, &peer);
    size_t total = (sizeof BEFORE - 1) + PRODUCER_SIZE + (sizeof AFTER - 1);
    unsigned char *expect = malloc(total);
    ck_assert_ptr_nonnull(expect);
    memcpy(expect, BEFORE, sizeof BEFORE - 1);
    for (size_t i = 0; i < PRODUCER_SIZE; i++)
        expect[sizeof BEFORE - 1 + i] = pattern_at(i);
    memcpy(expect + sizeof BEFORE - 1 + PRODUCER_SIZE, AFTER, sizeof AFTER - 1);

    struct event_base *base = event_base_new();
    ck_assert_ptr_nonnull(base);
    events ev = {0};
    jsond_output_opts opts = {.high_water = HIGH_WATER, .timeout_ms = 0};
    jsond_output *out = jsond_output_new(base, w, &opts, record_cb, &ev);
    ck_assert_ptr_nonnull(out);
    producer_stats st = {0};

    ck_assert_int_eq(jsond_output_write(out, BEFORE, sizeof BEFORE - 1), 0);
    ck_assert_int_eq(jsond_output_produce(out, &tp_ops, tp_new(&st, PRODUCER_SIZE)), 0);
    ck_assert_int_eq(jsond_output_write(out, AFTER, sizeof AFTER - 1), 0);
    /* Queued, not produced: the producer runs from the loop. */
    ck_assert_int_eq(st.proceeds, 0);
    ck_assert_uint_eq(jsond_output_buffered(out), sizeof BEFORE - 1);

    /* A peer that does not read: the producer makes about a watermark's
     * worth past what the kernel holds, and then waits. */
    watch wt = {out, 0};
    settle(base, out);
    watch_level(&wt);
    ck_assert_uint_lt(st.produced, PRODUCER_SIZE / 2);
    ck_assert_uint_gt(jsond_output_buffered(out), 0);
    ck_assert_int_eq(ev.drained + ev.timeout + ev.error, 0);

    pump(base, peer, expect, total, watch_level, &wt);
    /* Right after a proceed the output holds less than the watermark plus
     * the one chunk the producer may overshoot by; the bytes queued after
     * the producer join the buffer when it completes, so the level seen
     * between turns may exceed that by their size only. */
    fprintf(stderr,
            "producer: %d bytes through a %d-byte watermark; peak buffered %zu (%zu "
            "right after a proceed), %ld proceeds\n",
            PRODUCER_SIZE, HIGH_WATER, wt.peak, st.peak_in_proceed, st.proceeds);
    ck_assert_uint_le(st.peak_in_proceed, HIGH_WATER + CHUNK);
    ck_assert_uint_le(wt.peak, HIGH_WATER + CHUNK + (sizeof AFTER - 1));
    ck_assert_uint_eq(st.produced, PRODUCER_SIZE);
    ck_assert_int_eq(st.stops, 1);
    ck_assert_int_eq(st.proceeds_after_stop, 0);
    ck_assert_int_eq(ev.drained, 1);
    ck_assert_int_eq(ev.timeout + ev.error, 0);
    ck_assert(jsond_output_idle(out));

    jsond_output_free(out);
    ck_assert_int_eq(st.stops, 1);
    event_base_free(base);
    free(expect);
    close(w);
    close(peer);
}
END_TEST

START_TEST(test_producer_stopped_when_freed_mid_reply)
{
    int w, peer;
    tcp_pair(&w, &peer);
    struct event_base *base = event_base_new();
    ck_assert_ptr_nonnull(base);
    events ev = {0};
    jsond_output_opts opts = {.high_water = HIGH_WATER, .timeout_ms = 0};
    jsond_output *out = jsond_output_new(base, w, &opts, record_cb, &ev);
    ck_assert_ptr_nonnull(out);
    producer_stats active = {0}, queued = {0};

    ck_assert_int_eq(jsond_output_produce(out, &tp_ops, tp_new(&active, PRODUCER_SIZE)), 0);
    ck_assert_int_eq(jsond_output_produce(out, &tp_ops, tp_new(&queued, PRODUCER_SIZE)), 0);
    settle(base, out);
    ck_assert_int_gt(active.proceeds, 0);
    ck_assert_uint_gt(jsond_output_sent(out), 0);
    ck_assert_int_eq(active.stops + queued.stops, 0);

    /* The connection goes away mid-reply: both are released, once. */
    jsond_output_free(out);
    ck_assert_int_eq(active.stops, 1);
    ck_assert_int_eq(queued.stops, 1);
    ck_assert_int_eq(queued.proceeds, 0);
    ck_assert_int_eq(ev.drained + ev.timeout + ev.error, 0);

    event_base_free(base);
    close(w);
    close(peer);
}
END_TEST

/* ---- the write timeout ---------------------------------------------------- */

static void guard_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* ---- a producer that waits ------------------------------------------------ */

/* Gives its parts one at a time: each proceed adds the part it was fed and
 * then waits for the next (WAIT); after the last, DONE. */
typedef struct waiter {
    const char *const *parts;
    size_t nparts, fed, given;
    int proceeds, stops;
} waiter;

static jsond_produce waiter_proceed(void *self, struct evbuffer *out, size_t want)
{
    (void)want;
    waiter *w = self;
    w->proceeds++;
    while (w->given < w->fed) {
        const char *p = w->parts[w->given++];
        ck_assert_int_eq(evbuffer_add(out, p, strlen(p)), 0);
    }
    return w->given == w->nparts ? JSOND_PRODUCE_DONE : JSOND_PRODUCE_WAIT;
}

static void waiter_stop(void *self)
{
    ((waiter *)self)->stops++;
}

static const jsond_producer_ops waiter_ops = {.proceed = waiter_proceed, .stop = waiter_stop};

START_TEST(test_producer_waits_until_woken)
{
    /* "Nothing yet" is not a failure: the output asks no more until woken
     * (no spinning), blames no wait on the peer (write_timeout does not
     * fire), and what is written behind the producer stays behind it. */
    static const char *const parts[] = {"[1", ",2", ",3]"};
    static const char after[] = "\n";
    int w, peer;
    tcp_pair(&w, &peer);
    struct event_base *base = event_base_new();
    ck_assert_ptr_nonnull(base);
    events ev = {0};
    jsond_output_opts opts = {.high_water = HIGH_WATER, .timeout_ms = 50};
    jsond_output *out = jsond_output_new(base, w, &opts, record_cb, &ev);
    ck_assert_ptr_nonnull(out);
    waiter wt = {.parts = parts, .nparts = 3, .fed = 1};
    ck_assert_int_eq(jsond_output_produce(out, &waiter_ops, &wt), 0);
    ck_assert_int_eq(jsond_output_write(out, after, sizeof after - 1), 0);
    pump(base, peer, (const unsigned char *)"[1", 2, NULL, NULL);
    int asked = wt.proceeds;
    /* Four timeouts' worth of loop turns: not asked again, not timed out. */
    double until = now_ms() + 4 * opts.timeout_ms;
    while (now_ms() < until) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        struct pollfd p = {.fd = peer, .events = POLLIN};
        ck_assert_int_eq(poll(&p, 1, 5), 0); /* nothing more is sent */
    }
    ck_assert_int_eq(wt.proceeds, asked);
    ck_assert_int_eq(ev.timeout + ev.error + ev.drained, 0);
    ck_assert(jsond_output_full(out));
    /* Fed and woken, twice: the rest arrives, then the bytes behind it. */
    wt.fed = 2;
    jsond_output_wake(out);
    pump(base, peer, (const unsigned char *)",2", 2, NULL, NULL);
    wt.fed = 3;
    jsond_output_wake(out);
    pump(base, peer, (const unsigned char *)",3]\n", 4, NULL, NULL);
    ck_assert_int_eq(wt.stops, 1);
    ck_assert(jsond_output_idle(out));
    ck_assert_int_eq(ev.drained, 1);
    ck_assert_int_eq(ev.timeout + ev.error, 0);
    jsond_output_free(out);
    event_base_free(base);
    close(w);
    close(peer);
}
END_TEST

START_TEST(test_write_timeout_fires_when_peer_reads_nothing)
{
    int w, peer;
    tcp_pair(&w, &peer);
    struct event_base *base = event_base_new();
    ck_assert_ptr_nonnull(base);
    events ev = {0};
    jsond_output_opts opts = {.high_water = HIGH_WATER, .timeout_ms = TIMEOUT_MS};
    jsond_output *out = jsond_output_new(base, w, &opts, record_cb, &ev);
    ck_assert_ptr_nonnull(out);
    producer_stats st = {0};

    /* A guard far past the timeout bounds the wait. */
    int guard_fired = 0;
    struct event *guard = evtimer_new(base, guard_cb, &guard_fired);
    struct timeval gtv = {TIMEOUT_MS * 50 / 1000, 0};
    ck_assert_int_eq(evtimer_add(guard, &gtv), 0);

    double start = now_ms();
    ck_assert_int_eq(jsond_output_produce(out, &tp_ops, tp_new(&st, PRODUCER_SIZE)), 0);
    for (int i = 0; i < SETTLE_ITERS && !ev.timeout && !guard_fired; i++)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert_msg(!guard_fired, "no TIMEOUT within %d ms", TIMEOUT_MS * 50);
    ck_assert_int_eq(ev.timeout, 1);
    ck_assert_int_eq(ev.drained + ev.error, 0);
    /* Not before the peer has taken nothing for timeout_ms. */
    ck_assert_msg(ev.when_ms - start >= TIMEOUT_MS, "TIMEOUT after %.0f ms", ev.when_ms - start);
    fprintf(stderr, "write timeout of %d ms fired after %.0f ms\n", TIMEOUT_MS, ev.when_ms - start);
    ck_assert_uint_lt(jsond_output_sent(out), PRODUCER_SIZE);

    /* A failed output takes nothing more. */
    errno = 0;
    ck_assert_int_eq(jsond_output_write(out, "x", 1), -1);
    ck_assert_int_eq(errno, EPIPE);

    jsond_output_free(out);
    ck_assert_int_eq(st.stops, 1);
    event_free(guard);
    event_base_free(base);
    close(w);
    close(peer);
}
END_TEST

/* ---- (3) writes from the wrong context are refused ----------------------- */

typedef struct attempt {
    jsond_output *out;
    int set_ctx;
    jsond_ctx ctx;
    jsond_ctx seen;
    int write_r, write_errno;
    int produce_r, produce_errno;
    producer_stats st;
} attempt;

static void *attempt_thread(void *arg)
{
    attempt *a = arg;
    if (a->set_ctx)
        jsond_context_set(a->ctx);
    a->seen = jsond_context();
    errno = 0;
    a->write_r = jsond_output_write(a->out, "{\"from\":\"a thread\"}\n", 20);
    a->write_errno = errno;
    errno = 0;
    a->produce_r = jsond_output_produce(a->out, &tp_ops, tp_new(&a->st, PRODUCER_SIZE));
    a->produce_errno = errno;
    return NULL;
}

static void check_refused(int set_ctx, jsond_ctx ctx, const char *who)
{
    int w, peer;
    tcp_pair(&w, &peer);
    struct event_base *base = event_base_new();
    ck_assert_ptr_nonnull(base);
    events ev = {0};
    jsond_output_opts opts = {.high_water = HIGH_WATER, .timeout_ms = 0};
    jsond_output *out = jsond_output_new(base, w, &opts, record_cb, &ev);
    ck_assert_ptr_nonnull(out);

    attempt a = {.out = out, .set_ctx = set_ctx, .ctx = ctx};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, attempt_thread, &a), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);

    ck_assert_int_eq(a.seen, ctx);
    ck_assert_int_eq(a.write_r, -1);
    ck_assert_int_eq(a.write_errno, EPERM);
    ck_assert_int_eq(a.produce_r, -1);
    ck_assert_int_eq(a.st.stops, 1); /* a refused producer is still released */
    ck_assert_int_eq(a.st.proceeds, 0);
    /* Nothing was queued, and the loop has nothing to write. */
    ck_assert_uint_eq(jsond_output_buffered(out), 0);
    ck_assert(jsond_output_idle(out));
    event_base_loop(base, EVLOOP_NONBLOCK);
    ck_assert_uint_eq(jsond_output_sent(out), 0);
    char b;
    ck_assert_int_eq(recv(peer, &b, 1, 0), -1);
    ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);

    pthread_mutex_lock(&log_lock);
    char text[sizeof log_text];
    memcpy(text, log_text, sizeof text);
    pthread_mutex_unlock(&log_lock);
    ck_assert_msg(strstr(text, "write of 20 bytes refused") != NULL, "log: %s", text);
    ck_assert_msg(strstr(text, who) != NULL, "log does not name %s: %s", who, text);

    /* The loop thread itself may still write. */
    ck_assert_int_eq(jsond_output_write(out, "{}\n", 3), 0);
    pump(base, peer, (const unsigned char *)"{}\n", 3, NULL, NULL);
    ck_assert_int_eq(ev.drained, 1);

    jsond_output_free(out);
    event_base_free(base);
    close(w);
    close(peer);
}

START_TEST(test_write_from_foreign_thread_refused)
{
    check_refused(0, JSOND_CTX_OTHER, "foreign");
}
END_TEST

START_TEST(test_write_from_worker_thread_refused)
{
    check_refused(1, JSOND_CTX_WORKER, "worker");
}
END_TEST

static Suite *output_suite(void)
{
    Suite *s = suite_create("output");
    TCase *tc = tcase_create("time bomb");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_plain_send_is_a_time_bomb);
    tcase_add_test(tc, test_output_write_returns_at_once_and_delivers);
    suite_add_tcase(s, tc);

    tc = tcase_create("producers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_producer_memory_bounded_and_in_order);
    tcase_add_test(tc, test_producer_stopped_when_freed_mid_reply);
    tcase_add_test(tc, test_producer_waits_until_woken);
    tcase_add_test(tc, test_write_timeout_fires_when_peer_reads_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("context");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_write_from_foreign_thread_refused);
    tcase_add_test(tc, test_write_from_worker_thread_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* A peer that goes away must cost an EPIPE, not the test process. */
    signal(SIGPIPE, SIG_IGN);
    SRunner *sr = srunner_create(output_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
