/* check_conn.c: one connection, from its first request to its close.
 *
 * Each test gives one end of a socketpair(AF_UNIX, SOCK_STREAM) to a
 * jsond_conn and plays the client on the other: it writes request lines,
 * turns the loop (EVLOOP_ONCE | EVLOOP_NONBLOCK) and reads what comes back,
 * until the bytes it expects have arrived, the end of the stream, or a time
 * limit. What is checked is what a client sees: the reply lines, their order
 * and timing, the end of the stream; and what the server sees: the closed
 * callback (once, and how) and the route counters.
 *
 * Every wait is bounded in time; a short poll() on the client's end only
 * saves CPU while the loop has nothing to do.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "builtin.h"
#include "config.h"
#include "conn.h"
#include "jsond.h"
#include "stats.h"
#include "timeout.h"
#include "unit.h"

#define LIMIT_S 20.0 /* no single wait here may take longer */

static struct event_base *base;
static jsond_stats stats;
static jsond_timeouts *timeouts;
static jsond_config *cfg;     /* the connection's config, and */
static jsond_config *current; /* the one in force (the same here) */
static jsond_conn *conn;      /* NULL once closed */
static int peer = -1;         /* the client's end */

static int closed_count;
static jsond_conn_end closed_how;

static struct evbuffer *got; /* bytes received, not taken yet */
static size_t got_scanned;   /* bytes of `got` known to hold no '\n' */
static int peer_eof;         /* the server's end shut its side */
static int peer_errno;       /* a read error on the client's end */
static int reading;          /* pump() reads the client's end */

static void quiet_sink(jsond_log_level level, const char *msg, void *arg)
{
    (void)level;
    (void)msg;
    (void)arg;
}

static jsond_req_env env; /* no inbox, no pools: every handler here runs on the loop */

static void setup(void)
{
    base = precise_base();
    jsond_context_set(JSOND_CTX_LOOP);
    jsond_log_set_sink(quiet_sink, NULL);
    ck_assert_int_eq(jsond_stats_init(&stats), 0);
    timeouts = jsond_timeouts_new(base);
    ck_assert_ptr_nonnull(timeouts);
    got = evbuffer_new();
    ck_assert_ptr_nonnull(got);
    got_scanned = 0;
    peer_eof = peer_errno = 0;
    closed_count = 0;
    reading = 1;
    conn = NULL;
    cfg = current = NULL;
    peer = -1;
}

static void teardown(void)
{
    if (conn)
        jsond_conn_close(conn, JSOND_CONN_CUT);
    if (peer >= 0)
        close(peer);
    evbuffer_free(got);
    jsond_config_unref(cfg);
    jsond_timeouts_free(timeouts);
    jsond_stats_fini(&stats);
    event_base_free(base);
    jsond_log_set_sink(NULL, NULL);
    jsond_context_set(JSOND_CTX_OTHER);
}

static void closed_cb(jsond_conn *c, jsond_conn_end how, void *arg)
{
    (void)arg;
    ck_assert_ptr_eq(c, conn);
    closed_count++;
    closed_how = how;
    conn = NULL;
}

static void set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    ck_assert_int_ge(flags, 0);
    ck_assert_int_eq(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
}

/* Serves one connection with a config made of `server` keys and `listen`
 * keys around the routes every test uses. */
static void open_conn(const char *server, const char *listen)
{
    char text[2048];
    int n = snprintf(text, sizeof text,
                     "[server]\n%s\n"
                     "[listen l]\n%s%s\n"
                     "[route hello]\nhandler = builtin:hello\n"
                     "[route sleep]\nhandler = builtin:sleep\n"
                     "[route echo]\nhandler = builtin:echo\n"
                     "[route big]\nhandler = builtin:big\n"
                     "[route made]\nhandler = builtin:made_hello\n",
                     server, strstr(listen, "requests") ? "" : "requests = yes\n", listen);
    ck_assert(n > 0 && (size_t)n < sizeof text);
    jsond_errors *errs = jsond_errors_new();
    cfg = jsond_config_parse("t.conf", text, (size_t)n, errs);
    ck_assert_msg(cfg != NULL, "config: %s",
                  jsond_errors_count(errs) ? jsond_errors_get(errs, 0)->text : "?");
    jsond_errors_free(errs);
    current = cfg;
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    set_nonblocking(sv[0]);
    set_nonblocking(sv[1]);
    peer = sv[1];
    env = (jsond_req_env){.base = base, .stats = &stats, .timeouts = timeouts};
    jsond_addr unix_peer = {.ss.ss_family = AF_UNIX, .len = sizeof(sa_family_t)};
    conn = jsond_conn_new(base, sv[0], &unix_peer, cfg, &cfg->listens[0], &current, &stats, &env,
                          closed_cb, NULL);
    ck_assert_ptr_nonnull(conn);
    jsond_conn_start(conn, 0);
    ck_assert_int_eq(closed_count, 0);
}

/* ---- the client --------------------------------------------------------- */

/* One turn of the loop, then whatever the client's end has to read; when
 * nothing came, a short wait for `events` on the client's end (0: none). */
static void pump_for(short events)
{
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    int moved = 0;
    for (int i = 0; reading && peer >= 0 && !peer_eof && !peer_errno && i < 256; i++) {
        int n = evbuffer_read(got, peer, 256 * 1024);
        if (n > 0) {
            moved = 1;
            continue;
        }
        if (n == 0)
            peer_eof = 1;
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            peer_errno = errno;
        break;
    }
    if (events && !moved && peer >= 0 && !peer_eof && !peer_errno) {
        struct pollfd p = {.fd = peer, .events = events};
        poll(&p, 1, 1);
    }
}

static void pump(void)
{
    pump_for(POLLIN);
}

/* Writes all of `data`, turning the loop while the socket is full. */
static void send_bytes(const char *data, size_t len)
{
    size_t off = 0;
    double end = now() + LIMIT_S;
    while (off < len) {
        ck_assert_msg(now() < end, "sent %zu of %zu bytes", off, len);
        ssize_t n = send(peer, data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        ck_assert_msg(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR),
                      "send: %s", strerror(errno));
        /* No wait: the socket is writable again only once the server has
         * read a quarter of its buffer, many loop turns away. */
        pump_for(0);
    }
}

static void send_str(const char *s)
{
    send_bytes(s, strlen(s));
}

/* The next reply line (without its '\n'), malloc'ed, and when it was
 * complete; NULL at end-of-stream or on the time limit. */
static char *take_line_at(double limit_s, double *at)
{
    double end = now() + limit_s;
    for (;;) {
        size_t len = evbuffer_get_length(got), eol = 0;
        if (got_scanned < len) {
            struct evbuffer_ptr from, p;
            ck_assert_int_eq(evbuffer_ptr_set(got, &from, got_scanned, EVBUFFER_PTR_SET), 0);
            p = evbuffer_search_eol(got, &from, &eol, EVBUFFER_EOL_LF);
            if (p.pos >= 0) {
                if (at)
                    *at = now();
                char *line = malloc((size_t)p.pos + 1);
                ck_assert_ptr_nonnull(line);
                evbuffer_remove(got, line, (size_t)p.pos);
                line[p.pos] = '\0';
                evbuffer_drain(got, eol);
                got_scanned = 0;
                return line;
            }
            got_scanned = len;
        }
        if (peer_eof || peer_errno || now() > end)
            return NULL;
        pump();
    }
}

static char *take_line(void)
{
    char *line = take_line_at(LIMIT_S, NULL);
    ck_assert_msg(line != NULL, "no reply line (eof %d, errno %d, %zu bytes pending)", peer_eof,
                  peer_errno, evbuffer_get_length(got));
    return line;
}

/* The next reply line, which must be exactly `want`. */
static void expect_line(const char *want)
{
    char *line = take_line();
    ck_assert_str_eq(line, want);
    free(line);
}

/* The next reply line, parsed. */
static json_t *take_json(void)
{
    char *line = take_line();
    json_error_t jerr;
    json_t *doc = json_loads(line, 0, &jerr);
    ck_assert_msg(doc != NULL, "reply is not JSON: %s", jerr.text);
    free(line);
    return doc;
}

/* End-of-stream on the client's end, with nothing more before it. */
static void expect_eof(void)
{
    double end = now() + LIMIT_S;
    while (!peer_eof && !peer_errno && now() < end)
        pump();
    ck_assert_msg(peer_eof, "no end-of-stream (errno %d)", peer_errno);
    ck_assert_uint_eq(evbuffer_get_length(got), 0);
}

/* Nothing arrives for `s` seconds. */
static void expect_silence(double s)
{
    double end = now() + s;
    while (now() < end)
        pump();
    ck_assert_uint_eq(evbuffer_get_length(got), 0);
    ck_assert(!peer_eof);
}

static void wait_closed(void)
{
    double end = now() + LIMIT_S;
    while (!closed_count && now() < end)
        pump();
    ck_assert_int_eq(closed_count, 1);
}

/* The client closes with a reply unread (the kernel reports a reset): the
 * connection is gone at once, and nothing it armed is left behind. */
static void close_peer_expect_reset(void)
{
    close(peer);
    peer = -1;
    wait_closed();
    ck_assert_int_eq(closed_how, JSOND_CONN_RESET);
    ck_assert_int_eq(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
}

static json_int_t route_requests(const char *route)
{
    return json_integer_value(json_object_get(json_object_get(stats.routes, route), "requests"));
}

/* ---- order ----------------------------------------------------------------- */

START_TEST(test_reply_order)
{
    /* The sleep finishes last but was asked first: it is answered first. */
    open_conn("request_timeout = 0", "");
    double t0 = now(), t_sleep, t_hello;
    send_str("sleep {\"ms\":50}\nhello\necho {\"a\":[1,2]}\n");
    char *a = take_line_at(LIMIT_S, &t_sleep);
    char *b = take_line_at(LIMIT_S, &t_hello);
    char *c = take_line_at(LIMIT_S, NULL);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(a, "{\"slept_ms\":50}");
    ck_assert_str_eq(b, "{\"msg\":\"Hello World\",\"data\":\"x\"}");
    ck_assert_str_eq(c, "{\"a\":[1,2]}");
    free(a);
    free(b);
    free(c);
    ck_assert_msg(t_sleep - t0 >= 0.050, "sleep replied after %.3f s", t_sleep - t0);
    ck_assert(t_hello >= t_sleep);
    /* All three ran at once: hello was not held back from running. */
    ck_assert_int_eq(route_requests("hello"), 1);
    ck_assert_int_eq(route_requests("echo"), 1);
    ck_assert_int_eq(closed_count, 0);
}
END_TEST

/* ---- fixed replies ------------------------------------------------------------ */

/* hello's reply is fixed: a bare "hello" line takes the fast path (no
 * parse, nothing queued), every other form the general one. Each gets the
 * same bytes in its own envelope, in order, and each is counted. */
START_TEST(test_fixed_replies)
{
    open_conn("request_timeout = 0", "");
    static const char *const lines[][2] = {
        {"hello\n", "{\"msg\":\"Hello World\",\"data\":\"x\"}"},
        {"hello {\"a\":1}\n", "{\"msg\":\"Hello World\",\"data\":\"x\"}"},
        {"  hello\t\r\n", "{\"msg\":\"Hello World\",\"data\":\"x\"}"},
        {"{\"route\":\"hello\",\"id\":4}\n", "{\"msg\":\"Hello World\",\"data\":\"x\"}"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":\"q\"}\n",
         "{\"jsonrpc\":\"2.0\",\"result\":{\"msg\":\"Hello World\",\"data\":\"x\"},\"id\":\"q\"}"},
        {"[{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":1},{\"jsonrpc\":\"2.0\",\"method\":"
         "\"hello\",\"id\":2}]\n",
         "[{\"jsonrpc\":\"2.0\",\"result\":{\"msg\":\"Hello World\",\"data\":\"x\"},\"id\":1},"
         "{\"jsonrpc\":\"2.0\",\"result\":{\"msg\":\"Hello World\",\"data\":\"x\"},\"id\":2}]"},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        send_str(lines[i][0]);
        char *line = take_line_at(LIMIT_S, NULL);
        ck_assert_ptr_nonnull(line);
        ck_assert_str_eq(line, lines[i][1]);
        free(line);
    }
    ck_assert_int_eq(route_requests("hello"), 7);
    /* Behind a slower reply, a fixed one waits its turn (a copy: the
     * config it came from may be gone by then). */
    send_str("sleep {\"ms\":30}\nhello\nhello\n");
    char *a = take_line_at(LIMIT_S, NULL), *b = take_line_at(LIMIT_S, NULL),
         *c = take_line_at(LIMIT_S, NULL);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(a, "{\"slept_ms\":30}");
    ck_assert_str_eq(b, "{\"msg\":\"Hello World\",\"data\":\"x\"}");
    ck_assert_str_eq(c, "{\"msg\":\"Hello World\",\"data\":\"x\"}");
    free(a);
    free(b);
    free(c);
    ck_assert_int_eq(route_requests("hello"), 9);
    ck_assert_int_eq(closed_count, 0);
}
END_TEST

/* A listener that does not offer hello refuses it on both paths. */
START_TEST(test_fixed_not_offered)
{
    open_conn("", "routes = echo");
    send_str("hello\n{\"route\":\"hello\"}\n");
    for (int i = 0; i < 2; i++) {
        char *line = take_line_at(LIMIT_S, NULL);
        ck_assert_ptr_nonnull(line);
        ck_assert_str_eq(line,
                         "{\"error\":{\"code\":\"not_found\",\"message\":\"no route 'hello'\"}}");
        free(line);
    }
}
END_TEST

/* ---- batches and max_pipeline ------------------------------------------------ */

START_TEST(test_pipeline_bounds_batch)
{
    /* Five 30 ms sleeps, two at a time: three rounds, one array, in order.
     * Member 2k can start only once member 2k-2 has finished, 30 ms after
     * it started: at time t at most 2 * (t / 30 ms + 1) have started. */
    open_conn("request_timeout = 0\nmax_pipeline = 2", "");
    char line[1024] = "[";
    for (int i = 1; i <= 5; i++)
        snprintf(line + strlen(line), sizeof line - strlen(line),
                 "%s{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":30},\"id\":%d}",
                 i > 1 ? "," : "", i);
    strcat(line, "]\n");
    double t0 = now();
    send_str(line);
    json_int_t first = 0;
    while (evbuffer_search(got, "\n", 1, NULL).pos < 0 && !peer_eof && now() < t0 + LIMIT_S) {
        pump();
        json_int_t started = route_requests("sleep");
        double elapsed = now() - t0;
        ck_assert_msg(started <= 2 * ((json_int_t)(elapsed / 0.030) + 1),
                      "%lld sleeps started after %.3f s", (long long)started, elapsed);
        if (!first && started) {
            first = started; /* the pass that read the line starts a full pipeline */
            ck_assert_int_eq(first, 2);
        }
    }
    double t_reply;
    char *text = take_line_at(LIMIT_S, &t_reply);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(t_reply - t0 >= 0.090, "batch answered after %.3f s", t_reply - t0);
    json_t *doc = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ck_assert(json_is_array(doc));
    ck_assert_uint_eq(json_array_size(doc), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *want = json_pack("{s:s,s:{s:i},s:i}", "jsonrpc", "2.0", "result", "slept_ms", 30,
                                 "id", (int)i + 1);
        ck_assert_msg(json_equal(json_array_get(doc, i), want), "member %zu: %s", i, text);
        json_decref(want);
    }
    json_decref(doc);
    free(text);
    ck_assert_int_eq(route_requests("sleep"), 5);
    expect_silence(0.020);
}
END_TEST

START_TEST(test_batch_notifications)
{
    open_conn("request_timeout = 0", "");
    /* Notifications get no reply, even when they fail. */
    send_str("[{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":1},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"hello\"},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"nope\"},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":5}},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"a\":1},\"id\":\"b\"}]\n");
    expect_line(
        "[{\"jsonrpc\":\"2.0\",\"result\":{\"msg\":\"Hello World\",\"data\":\"x\"},\"id\":1},"
        "{\"jsonrpc\":\"2.0\",\"result\":{\"a\":1},\"id\":\"b\"}]");
    /* A batch of notifications only writes nothing at all: the next line
     * read is the reply to the request after it. */
    send_str("[{\"jsonrpc\":\"2.0\",\"method\":\"hello\"},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":20}},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"nope\"}]\n");
    expect_silence(0.050);
    send_str("{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":9}\n");
    expect_line(
        "{\"jsonrpc\":\"2.0\",\"result\":{\"msg\":\"Hello World\",\"data\":\"x\"},\"id\":9}");
    ck_assert_int_eq(route_requests("hello"), 4);
    ck_assert_int_eq(route_requests("sleep"), 2);
    expect_silence(0.020);
}
END_TEST

START_TEST(test_batch_1500)
{
    /* Far more calls than max_pipeline on one line: all run, none refused. */
    enum { N = 1500 };
    open_conn("request_timeout = 0\nmax_request_size = 1M", "");
    struct evbuffer *line = evbuffer_new();
    ck_assert_ptr_nonnull(line);
    for (int i = 0; i < N; i++)
        evbuffer_add_printf(line, "%s{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":%d}",
                            i ? "," : "[", i);
    evbuffer_add(line, "]\n", 2);
    size_t len = evbuffer_get_length(line);
    ck_assert_uint_gt(len, 64 * 1024);
    send_bytes((const char *)evbuffer_pullup(line, -1), len);
    evbuffer_free(line);
    json_t *doc = take_json();
    ck_assert(json_is_array(doc));
    ck_assert_uint_eq(json_array_size(doc), N);
    json_t *hello = json_pack("{s:s,s:s}", "msg", "Hello World", "data", "x");
    for (size_t i = 0; i < N; i++) {
        json_t *m = json_array_get(doc, i);
        ck_assert_msg(json_integer_value(json_object_get(m, "id")) == (json_int_t)i,
                      "member %zu is out of order", i);
        ck_assert_msg(json_equal(json_object_get(m, "result"), hello), "member %zu failed", i);
    }
    json_decref(hello);
    json_decref(doc);
    ck_assert_int_eq(route_requests("hello"), N);
    /* The connection serves on afterwards. */
    send_str("hello\n");
    expect_line("{\"msg\":\"Hello World\",\"data\":\"x\"}");
}
END_TEST

START_TEST(test_pipeline_bounds_lines)
{
    /* max_pipeline counts calls across lines too: five sleep lines, two at
     * a time; the replies still come in order. */
    open_conn("request_timeout = 0\nmax_pipeline = 2", "");
    double t0 = now();
    send_str("sleep {\"ms\":30}\nsleep {\"ms\":31}\nsleep {\"ms\":32}\nsleep {\"ms\":33}\n"
             "sleep {\"ms\":34}\n");
    for (int i = 0; i < 5; i++) {
        while (evbuffer_search(got, "\n", 1, NULL).pos < 0 && !peer_eof && now() < t0 + LIMIT_S) {
            pump();
            json_int_t started = route_requests("sleep");
            double elapsed = now() - t0;
            ck_assert_msg(started <= 2 * ((json_int_t)(elapsed / 0.030) + 1),
                          "%lld sleeps started after %.3f s", (long long)started, elapsed);
        }
        char want[32];
        snprintf(want, sizeof want, "{\"slept_ms\":%d}", 30 + i);
        expect_line(want);
    }
    ck_assert_msg(now() - t0 >= 0.090, "answered after %.3f s", now() - t0);
}
END_TEST

START_TEST(test_batch_edge_cases)
{
    open_conn("request_timeout = 0", "");
    /* Before any JSON-RPC, an array is no batch: bad_request. */
    send_str("[]\n");
    expect_line("{\"error\":{\"code\":\"bad_request\",\"message\":\"an array is accepted only "
                "as a JSON-RPC batch\"}}");
    json_t *doc;
    /* Members made by producers stream inside the array, in order. */
    send_str("[{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"params\":{\"size\":200000},\"id\":1},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":10},\"id\":2},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"params\":{\"size\":3},\"id\":3},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.x\",\"id\":4}]\n");
    doc = take_json();
    ck_assert(json_is_array(doc));
    ck_assert_uint_eq(json_array_size(doc), 4);
    for (size_t i = 0; i < 4; i++)
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(doc, i), "id")),
                         (json_int_t)i + 1);
    const char *data = json_string_value(
        json_object_get(json_object_get(json_array_get(doc, 0), "result"), "data"));
    ck_assert_ptr_nonnull(data);
    ck_assert_uint_eq(strlen(data), 200000);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(doc, 2), "result"), "data")),
                     "xxx");
    ck_assert_int_eq(json_integer_value(
                         json_object_get(json_object_get(json_array_get(doc, 3), "error"), "code")),
                     -32601);
    json_decref(doc);
    /* Once JSON-RPC is spoken, an empty batch is one -32600 error, not an
     * array. */
    send_str("[]\n");
    doc = take_json();
    ck_assert(json_is_object(doc));
    ck_assert(json_is_null(json_object_get(doc, "id")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(doc, "error"), "code")),
                     -32600);
    json_decref(doc);
    /* A single line after a batch waits for the whole array. */
    send_str(
        "[{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":40},\"id\":1}]\nhello\n");
    expect_line("[{\"jsonrpc\":\"2.0\",\"result\":{\"slept_ms\":40},\"id\":1}]");
    expect_line("{\"msg\":\"Hello World\",\"data\":\"x\"}");
}
END_TEST

/* ---- long lines -------------------------------------------------------------- */

/* jansson allocations of at least a page, counted while a hook is in. */
static int page_allocs;

static void *page_counting_malloc(size_t size)
{
    if (size >= 4096)
        page_allocs++;
    return malloc(size);
}

/* The jansson allocations of a page or more that one request line (with
 * `args`) to `route` costs, from its write until its reply is read. */
static int page_allocs_of(const char *route, const char *args)
{
    char line[16384];
    ck_assert_int_lt(snprintf(line, sizeof line, "%s %s\n", route, args), (int)sizeof line);
    page_allocs = 0;
    json_set_alloc_funcs(page_counting_malloc, free);
    send_str(line);
    char *reply = take_line();
    json_set_alloc_funcs(malloc, free);
    free(reply);
    return page_allocs;
}

START_TEST(test_reply_serialized_once)
{
    /* An 8 KB reply, larger than the stack buffer replies are made in, is
     * serialized in one pass straight into the output: no jansson buffer
     * holds its text. json_dumps() would grow one to its size. Measured
     * against `hello` with the same args, which parses them alike and
     * replies 32 bytes. */
    open_conn("request_timeout = 0", "");
    char args[8200];
    int n = snprintf(args, sizeof args, "{\"s\":\"%8000d\"}", 7);
    ck_assert(n > 0 && (size_t)n < sizeof args);
    int parse_only = page_allocs_of("hello", args);
    ck_assert_int_gt(parse_only, 0); /* the hook sees the request's own */
    ck_assert_int_eq(page_allocs_of("echo", args), parse_only);
}
END_TEST

START_TEST(test_long_line)
{
    /* An 8 MB line arrives in many reads and is answered whole. */
    enum { SIZE = 8 * 1024 * 1024 };
    open_conn("request_timeout = 0\nmax_request_size = 16M", "");
    static const char head[] = "echo {\"s\":\"";
    char *line = malloc(sizeof head + SIZE + 4);
    ck_assert_ptr_nonnull(line);
    size_t n = sizeof head - 1;
    memcpy(line, head, n);
    memset(line + n, 'x', SIZE);
    n += SIZE;
    memcpy(line + n, "\"}\n", 3);
    n += 3;
    for (size_t off = 0; off < n; off += 65536)
        send_bytes(line + off, n - off < 65536 ? n - off : 65536);
    free(line);
    char *reply = take_line();
    ck_assert_uint_eq(strlen(reply), SIZE + strlen("{\"s\":\"\"}"));
    ck_assert(strncmp(reply, "{\"s\":\"", 6) == 0);
    ck_assert_str_eq(reply + 6 + SIZE, "\"}");
    ck_assert(strspn(reply + 6, "x") == SIZE);
    free(reply);
    send_str("hello\n");
    expect_line("{\"msg\":\"Hello World\",\"data\":\"x\"}");
}
END_TEST

static const char TOO_LARGE[] =
    "{\"error\":{\"code\":\"too_large\",\"message\":\"request line too long\"}}";

START_TEST(test_too_large)
{
    /* A line over max_request_size: too_large, then the close; the lines
     * before it are answered first. */
    open_conn("request_timeout = 0\nmax_request_size = 1K", "");
    char line[3000];
    memset(line, 'a', sizeof line - 1);
    line[sizeof line - 2] = '\n';
    line[sizeof line - 1] = '\0';
    send_str("hello\n");
    send_str(line);
    expect_line("{\"msg\":\"Hello World\",\"data\":\"x\"}");
    expect_line(TOO_LARGE);
    expect_eof();
    /* The server lingers for the client's end, then closes as it should. */
    shutdown(peer, SHUT_WR);
    wait_closed();
    ck_assert_int_eq(closed_how, JSOND_CONN_DONE);
}
END_TEST

START_TEST(test_too_large_without_newline)
{
    /* No '\n' needed: more than max_request_size buffered is enough. */
    open_conn("request_timeout = 0\nmax_request_size = 1K", "");
    char line[4096];
    memset(line, 'b', sizeof line);
    send_bytes(line, sizeof line);
    expect_line(TOO_LARGE);
    expect_eof();
    shutdown(peer, SHUT_WR);
    wait_closed();
    ck_assert_int_eq(closed_how, JSOND_CONN_DONE);
}
END_TEST

START_TEST(test_max_line_fits)
{
    /* Exactly max_request_size bytes, with or without a '\r', fits. */
    open_conn("request_timeout = 0\nmax_request_size = 1K", "");
    char line[1024 + 3];
    static const char head[] = "echo {\"s\":\"";
    size_t n = sizeof head - 1;
    memcpy(line, head, n);
    memset(line + n, 'y', 1024 - n - 2);
    memcpy(line + 1024 - 2, "\"}\r\n", 4);
    send_bytes(line, 1024 + 2);
    char *reply = take_line();
    ck_assert_uint_eq(strlen(reply), 1024 - strlen("echo "));
    free(reply);
    memcpy(line + 1024 - 2, "\"}\n", 3);
    send_bytes(line, 1024 + 1);
    reply = take_line();
    ck_assert_uint_eq(strlen(reply), 1024 - strlen("echo "));
    free(reply);
    ck_assert_int_eq(closed_count, 0);
}
END_TEST

/* ---- closing ------------------------------------------------------------------ */

START_TEST(test_half_close)
{
    /* The client shuts its side after its request: the reply still comes,
     * then the end of the stream, and the connection closes cleanly. */
    open_conn("request_timeout = 0", "");
    send_str("sleep {\"ms\":50}\n");
    ck_assert_int_eq(shutdown(peer, SHUT_WR), 0);
    expect_line("{\"slept_ms\":50}");
    expect_eof();
    wait_closed();
    ck_assert_int_eq(closed_how, JSOND_CONN_DONE);
    for (int i = 0; i < 20; i++)
        pump();
    ck_assert_int_eq(closed_count, 1);
}
END_TEST

START_TEST(test_half_close_last_line_unterminated)
{
    /* At the end of the stream, a last line without '\n' is a request. */
    open_conn("request_timeout = 0", "");
    send_str("hello\nhello");
    ck_assert_int_eq(shutdown(peer, SHUT_WR), 0);
    expect_line("{\"msg\":\"Hello World\",\"data\":\"x\"}");
    expect_line("{\"msg\":\"Hello World\",\"data\":\"x\"}");
    expect_eof();
    wait_closed();
    ck_assert_int_eq(closed_how, JSOND_CONN_DONE);
}
END_TEST

START_TEST(test_closed_done)
{
    open_conn("", "");
    send_str("hello\n");
    expect_line("{\"msg\":\"Hello World\",\"data\":\"x\"}");
    ck_assert_int_eq(closed_count, 0);
    shutdown(peer, SHUT_WR);
    expect_eof();
    wait_closed();
    ck_assert_int_eq(closed_how, JSOND_CONN_DONE);
    for (int i = 0; i < 20; i++)
        pump();
    ck_assert_int_eq(closed_count, 1);
}
END_TEST

START_TEST(test_closed_reset)
{
    /* The client reads a little of a big reply and goes away with unread
     * data: the server's next write fails (EPIPE/ECONNRESET). */
    open_conn("request_timeout = 0", "");
    send_str("big {\"size\": 50000000}\n");
    double end = now() + LIMIT_S;
    while (evbuffer_get_length(got) < 256 * 1024 && !peer_eof && now() < end)
        pump();
    ck_assert_uint_ge(evbuffer_get_length(got), 256 * 1024);
    ck_assert_int_eq(closed_count, 0);
    close(peer);
    peer = -1;
    wait_closed();
    ck_assert_int_eq(closed_how, JSOND_CONN_RESET);
    for (int i = 0; i < 20; i++)
        pump();
    ck_assert_int_eq(closed_count, 1);
}
END_TEST

START_TEST(test_closed_reset_mid_sleep)
{
    /* The client goes away, leaving a reply unread, while a request runs:
     * the server's read fails (ECONNRESET), the connection closes at once,
     * and the handler's timer is cancelled with it (nothing is left pending
     * in the loop). A plain close would read as a half-close, after which
     * the server rightly finishes the request. */
    open_conn("request_timeout = 0", "");
    reading = 0;
    send_str("hello\nsleep {\"ms\":10000}\n");
    double end = now() + LIMIT_S;
    struct pollfd p = {.fd = peer, .events = POLLIN};
    while ((route_requests("sleep") == 0 || poll(&p, 1, 0) != 1) && now() < end)
        pump();
    ck_assert_int_eq(route_requests("sleep"), 1);
    ck_assert_int_eq(closed_count, 0);
    close_peer_expect_reset();
}
END_TEST

START_TEST(test_idle_timeout)
{
    /* A request in flight is not idleness; after its reply, idle_timeout
     * closes the connection cleanly. */
    open_conn("request_timeout = 0\nidle_timeout = 50ms", "");
    double t0 = now(), at;
    send_str("sleep {\"ms\":120}\n");
    char *line = take_line_at(LIMIT_S, &at);
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(line, "{\"slept_ms\":120}");
    free(line);
    expect_eof();
    ck_assert_msg(now() - at >= 0.040, "closed %.3f s after the reply", now() - at);
    ck_assert(now() - t0 < 5.0);
    shutdown(peer, SHUT_WR);
    wait_closed();
    ck_assert_int_eq(closed_how, JSOND_CONN_DONE);
}
END_TEST

START_TEST(test_write_timeout_drops)
{
    /* A client that takes nothing of a big reply for write_timeout is
     * dropped. */
    open_conn("request_timeout = 0\nwrite_timeout = 100ms", "");
    reading = 0;
    double t0 = now();
    send_str("big {\"size\": 50000000}\n");
    double end = now() + LIMIT_S;
    while (!closed_count && now() < end)
        pump();
    ck_assert_int_eq(closed_count, 1);
    ck_assert_int_eq(closed_how, JSOND_CONN_DROPPED);
    ck_assert_msg(now() - t0 >= 0.100, "dropped after %.3f s", now() - t0);
}
END_TEST

START_TEST(test_push)
{
    /* on_connect with requests = no: the push, then the close. */
    open_conn("", "on_connect = hello\nrequests = no");
    expect_line("{\"msg\":\"Hello World\",\"data\":\"x\"}");
    expect_eof();
    shutdown(peer, SHUT_WR);
    wait_closed();
    ck_assert_int_eq(closed_how, JSOND_CONN_DONE);
}
END_TEST

START_TEST(test_push_then_requests)
{
    open_conn("", "on_connect = hello\nrequests = yes");
    send_str("echo {\"a\":1}\n");
    expect_line("{\"msg\":\"Hello World\",\"data\":\"x\"}");
    expect_line("{\"a\":1}");
    ck_assert_int_eq(closed_count, 0);
}
END_TEST

START_TEST(test_shutdown)
{
    /* A shutdown lets the request in flight finish, then closes. */
    open_conn("request_timeout = 0", "");
    send_str("sleep {\"ms\":40}\n");
    double end = now() + LIMIT_S;
    while (route_requests("sleep") == 0 && now() < end)
        pump();
    jsond_conn_shutdown(conn);
    ck_assert_int_eq(closed_count, 0);
    expect_line("{\"slept_ms\":40}");
    expect_eof();
    shutdown(peer, SHUT_WR);
    wait_closed();
    ck_assert_int_eq(closed_how, JSOND_CONN_DONE);
}
END_TEST

START_TEST(test_shutdown_idle)
{
    /* Nothing in progress: the connection closes at once. */
    open_conn("request_timeout = 0", "");
    jsond_conn_shutdown(conn);
    for (int i = 0; i < 20 && !closed_count; i++)
        pump();
    ck_assert_int_eq(closed_count, 1);
    ck_assert_int_eq(closed_how, JSOND_CONN_DONE);
    expect_eof();
}
END_TEST

/* ---- deadlines ------------------------------------------------------------------ */

START_TEST(test_request_timeout)
{
    open_conn("request_timeout = 50ms", "");
    double t0 = now(), at;
    send_str("sleep {\"ms\": 10000}\n");
    char *line = take_line_at(LIMIT_S, &at);
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(line,
                     "{\"error\":{\"code\":\"timeout\",\"message\":\"no reply within 50 ms\"}}");
    free(line);
    ck_assert_msg(at - t0 >= 0.050, "timed out after %.3f s", at - t0);
    ck_assert_msg(at - t0 < 0.500, "timed out after %.3f s", at - t0);
    /* The connection serves on; the sleeper's timer went with the cancel. */
    send_str("{\"route\":\"hello\",\"id\":3}\n");
    expect_line("{\"msg\":\"Hello World\",\"data\":\"x\"}");
    ck_assert_int_eq(closed_count, 0);
    /* JSON-RPC envelopes carry the id and the -32002 code. */
    send_str("{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":10000},\"id\":4}\n");
    json_t *doc = take_json();
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "id")), 4);
    json_t *err = json_object_get(doc, "error");
    ck_assert_int_eq(json_integer_value(json_object_get(err, "code")), -32002);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(err, "data"), "code")),
                     "timeout");
    json_decref(doc);
}
END_TEST

START_TEST(test_batch_member_timeout)
{
    /* A batch member past its deadline gets its timeout error in its
     * place; the members around it are answered as usual. */
    open_conn("request_timeout = 50ms\nmax_pipeline = 2", "");
    send_str("[{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":1},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":10000},\"id\":2},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":10000}},"
             "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":5},\"id\":4}]\n");
    json_t *doc = take_json();
    ck_assert_uint_eq(json_array_size(doc), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(doc, 0), "id")), 1);
    json_t *m = json_array_get(doc, 1);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "id")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(m, "error"), "code")),
                     -32002);
    m = json_array_get(doc, 2);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "id")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(m, "result"), "slept_ms")),
                     5);
    json_decref(doc);
    ck_assert_int_eq(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 2);
}
END_TEST

START_TEST(test_reset_mid_batch)
{
    /* The client goes away while a batch streams, some members still
     * running: one close, counted as reset, nothing left pending. */
    open_conn("request_timeout = 0\nmax_pipeline = 4", "");
    reading = 0;
    send_str(
        "hello\n[{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"params\":{\"size\":1000000},\"id\":1},"
        "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":10000},\"id\":2},"
        "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":10000},\"id\":3},"
        "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":10000},\"id\":4},"
        "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":{\"ms\":10000},\"id\":5},"
        "{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"id\":6}]\nhello\n");
    double end = now() + LIMIT_S;
    while (route_requests("sleep") < 3 && now() < end)
        pump();
    ck_assert_int_ge(route_requests("sleep"), 3);
    for (int i = 0; i < 50; i++)
        pump();
    ck_assert_int_eq(closed_count, 0);
    close_peer_expect_reset();
}
END_TEST

START_TEST(test_shutdown_unparsed_lines)
{
    /* Lines read but not parsed when the shutdown comes get shutting_down;
     * the one in flight finishes; then the close. max_pipeline = 1 keeps
     * the later lines unparsed while the sleep runs. */
    open_conn("request_timeout = 0\nmax_pipeline = 1", "");
    send_str("sleep {\"ms\":40}\nhello\n{\"route\":\"echo\",\"id\":7}\n");
    double end = now() + LIMIT_S;
    while (route_requests("sleep") == 0 && now() < end)
        pump();
    for (int i = 0; i < 5; i++)
        pump(); /* the rest is read, but held */
    ck_assert_int_eq(route_requests("hello"), 0);
    jsond_conn_shutdown(conn);
    expect_line("{\"slept_ms\":40}");
    expect_line("{\"error\":{\"code\":\"shutting_down\",\"message\":\"the server is shutting "
                "down\"}}");
    expect_line("{\"error\":{\"code\":\"shutting_down\",\"message\":\"the server is shutting "
                "down\"},\"id\":7}");
    expect_eof();
    shutdown(peer, SHUT_WR);
    wait_closed();
    ck_assert_int_eq(closed_how, JSOND_CONN_DONE);
}
END_TEST

/* ---- JSON-RPC ---------------------------------------------------------------------- */

START_TEST(test_jsonrpc_scalar)
{
    open_conn("request_timeout = 0", "protocol = jsonrpc");
    send_str("123\n");
    json_t *doc = take_json();
    ck_assert_str_eq(json_string_value(json_object_get(doc, "jsonrpc")), "2.0");
    ck_assert(json_is_null(json_object_get(doc, "id")));
    json_t *err = json_object_get(doc, "error");
    ck_assert_int_eq(json_integer_value(json_object_get(err, "code")), -32600);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(err, "data"), "code")),
                     "bad_request");
    json_decref(doc);
    /* A line that is not JSON at all: -32700. */
    send_str("hello\n");
    doc = take_json();
    ck_assert(json_is_null(json_object_get(doc, "id")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(doc, "error"), "code")),
                     -32700);
    json_decref(doc);
    ck_assert_int_eq(closed_count, 0);
}
END_TEST

/* ---- out of memory ------------------------------------------------------------------ */

/* A handler says it ran out of memory by replying NULL; the connection
 * answers with an internal error shaped like any other (the call's id, the
 * JSON-RPC envelope, its place in a batch) and counts it. The NULL is made
 * real: jansson's allocator is hooked to fail under made_hello below (route
 * made), hello as a handler that builds its reply does it (builtin:hello's
 * reply is fixed, made at load, and allocates nothing):
 *     json_pack("{s:s,s:s}", "msg", "Hello World", "data", "x")
 * copies "Hello World" with json_string: one jansson allocation of exactly
 * strlen("Hello World") + 1 = 12 bytes. Refused, json_pack fails, and
 * hello replies NULL.
 *
 * The rule (refuse every jansson allocation of 12 bytes, only while armed:
 * from just before the request is written until its reply has been read)
 * is deterministic: jansson sizes its allocations by the documents alone,
 * never by addresses or timing, and while armed the loop serves only the
 * request written. Checked by experiment (jansson 2.14) and counted by every
 * test below, so a change in jansson or in the request path shows here:
 * - the successful path makes exactly one 12-byte allocation (OOM_COUNT):
 *   made_hello's copy of "Hello World", seen in a backtrace from the hook
 *   (made_hello, json_pack, json_stringn_nocheck). jansson's other
 *   allocations on the path are structs (integers, strings, arrays,
 *   objects: 24 to 40 bytes; hashtable entries, which hold their key: 58
 *   and up; buckets: 128), the parser's buffer (16, then doubling), the
 *   copy of each string token (its length + 3: the quotes and the NUL) and
 *   the copy of each string built (its length + 1). So no string token in
 *   these requests has 9 characters, and no string built on the path but
 *   "Hello World" has 11 ("internal", the error's code, takes 9 bytes, "out
 *   of memory" 14);
 * - the failing path refuses exactly one (OOM_FAIL): building the error
 *   reply and counting it make no 12-byte allocation, or the count would
 *   be 2 and the reply would be conn.c's last resort without an id. */
#define OOM_SIZE (sizeof "Hello World")

static void made_hello(jsond_req *req, json_t *args)
{
    (void)args;
    jsond_reply(req, json_pack("{s:s,s:s}", "msg", "Hello World", "data", "x"));
}

static const jsond_builtin test_builtins[] = {
    {"made_hello", JSOND_COLOR_ASYNC, NULL, made_hello, NULL}};

typedef enum oom_mode {
    OOM_OFF,   /* jansson's default allocator */
    OOM_COUNT, /* the hook counts what the rule matches, and refuses nothing */
    OOM_FAIL,  /* the hook refuses what the rule matches */
} oom_mode;

static oom_mode oom_armed;
static int oom_matched; /* allocations the rule matched while armed */

static void *oom_malloc(size_t size)
{
    if (oom_armed != OOM_OFF && size == OOM_SIZE) {
        oom_matched++;
        if (oom_armed == OOM_FAIL)
            return NULL;
    }
    return malloc(size);
}

static void oom_arm(oom_mode mode)
{
    oom_armed = mode;
    json_set_alloc_funcs(oom_malloc, free);
}

/* Also run by the teardown: a failed assertion leaves the hook in place. */
static void oom_disarm(void)
{
    json_set_alloc_funcs(malloc, free);
    oom_armed = OOM_OFF;
}

static void oom_teardown(void)
{
    oom_disarm();
    teardown();
}

/* Writes `request` (a line) and reads its reply line, the allocator in
 * `mode` from just before the write until the reply is read; the
 * allocations the rule matched in *matched. */
static char *oom_call(const char *request, oom_mode mode, int *matched)
{
    oom_matched = 0;
    if (mode != OOM_OFF)
        oom_arm(mode);
    send_str(request);
    char *line = take_line_at(LIMIT_S, NULL);
    *matched = oom_matched;
    oom_disarm();
    ck_assert_msg(line != NULL, "no reply line (eof %d, errno %d, %zu bytes pending)", peer_eof,
                  peer_errno, evbuffer_get_length(got));
    return line;
}

/* `request` four times: without the hook, then with it counting, the reply
 * `ok` both times; armed, the reply `oom`; without the hook again, `ok`.
 * The rule matches one allocation each time it is in place. */
static void expect_oom(const char *request, const char *ok, const char *oom)
{
    static const oom_mode modes[] = {OOM_OFF, OOM_COUNT, OOM_FAIL, OOM_OFF};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        int matched;
        char *line = oom_call(request, modes[i], &matched);
        ck_assert_str_eq(line, modes[i] == OOM_FAIL ? oom : ok);
        free(line);
        ck_assert_int_eq(matched, modes[i] == OOM_OFF ? 0 : 1);
    }
    ck_assert_int_eq(closed_count, 0);
}

/* The stats count the one refusal: an internal error of route made, and
 * no other error anywhere. */
static void expect_oom_counted(void)
{
    json_t *doc = jsond_stats_json(&stats);
    ck_assert_ptr_nonnull(doc);
    json_t *requests = json_object_get(doc, "requests");
    ck_assert_int_eq(json_integer_value(json_object_get(requests, "errors")), 1);
    json_t *routes = json_object_get(requests, "routes");
    json_t *made = json_object_get(routes, "made");
    ck_assert_int_eq(json_integer_value(json_object_get(made, "requests")), 4);
    json_t *want = json_pack("{s:i}", "internal", 1);
    char *text = json_dumps(routes, JSON_COMPACT);
    ck_assert_msg(json_equal(json_object_get(made, "errors"), want), "routes: %s", text);
    const char *route;
    json_t *bucket;
    json_object_foreach(routes, route, bucket)
    {
        if (strcmp(route, "made") != 0)
            ck_assert_msg(json_object_size(json_object_get(bucket, "errors")) == 0, "routes: %s",
                          text);
    }
    free(text);
    json_decref(want);
    json_decref(doc);
    ck_assert_uint_eq(stats.errors, 1);
}

START_TEST(test_oom_reply_line)
{
    open_conn("request_timeout = 0", "");
    expect_oom("{\"route\":\"made\",\"id\":7}\n", "{\"msg\":\"Hello World\",\"data\":\"x\"}",
               "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"},\"id\":7}");
    expect_oom_counted();
}
END_TEST

START_TEST(test_oom_reply_jsonrpc)
{
    open_conn("request_timeout = 0", "");
    expect_oom("{\"jsonrpc\":\"2.0\",\"method\":\"made\",\"id\":7}\n",
               "{\"jsonrpc\":\"2.0\",\"result\":{\"msg\":\"Hello World\",\"data\":\"x\"},\"id\":7}",
               "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32603,\"message\":\"out of memory\","
               "\"data\":{\"code\":\"internal\"}},\"id\":7}");
    expect_oom_counted();
}
END_TEST

START_TEST(test_oom_reply_batch)
{
    /* The error takes the member's place; the members around it, answered
     * before and after it, are intact. */
    open_conn("request_timeout = 0", "");
    expect_oom("[{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"a\":1},\"id\":1},"
               "{\"jsonrpc\":\"2.0\",\"method\":\"made\",\"id\":7},"
               "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"b\":[2]},\"id\":\"c\"}]\n",
               "[{\"jsonrpc\":\"2.0\",\"result\":{\"a\":1},\"id\":1},"
               "{\"jsonrpc\":\"2.0\",\"result\":{\"msg\":\"Hello World\",\"data\":\"x\"},\"id\":7},"
               "{\"jsonrpc\":\"2.0\",\"result\":{\"b\":[2]},\"id\":\"c\"}]",
               "[{\"jsonrpc\":\"2.0\",\"result\":{\"a\":1},\"id\":1},"
               "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32603,\"message\":\"out of memory\","
               "\"data\":{\"code\":\"internal\"}},\"id\":7},"
               "{\"jsonrpc\":\"2.0\",\"result\":{\"b\":[2]},\"id\":\"c\"}]");
    expect_oom_counted();
    ck_assert_int_eq(route_requests("echo"), 8);
}
END_TEST

static Suite *conn_suite(void)
{
    Suite *s = suite_create("conn");
    TCase *tc = tcase_create("requests");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_reply_order);
    tcase_add_test(tc, test_fixed_replies);
    tcase_add_test(tc, test_fixed_not_offered);
    tcase_add_test(tc, test_pipeline_bounds_batch);
    tcase_add_test(tc, test_batch_notifications);
    tcase_add_test(tc, test_batch_1500);
    tcase_add_test(tc, test_pipeline_bounds_lines);
    tcase_add_test(tc, test_batch_edge_cases);
    tcase_add_test(tc, test_request_timeout);
    tcase_add_test(tc, test_jsonrpc_scalar);
    tcase_add_test(tc, test_batch_member_timeout);
    suite_add_tcase(s, tc);

    tc = tcase_create("lines");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_long_line);
    tcase_add_test(tc, test_reply_serialized_once);
    tcase_add_test(tc, test_too_large);
    tcase_add_test(tc, test_too_large_without_newline);
    tcase_add_test(tc, test_max_line_fits);
    suite_add_tcase(s, tc);

    tc = tcase_create("closing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_half_close);
    tcase_add_test(tc, test_half_close_last_line_unterminated);
    tcase_add_test(tc, test_closed_done);
    tcase_add_test(tc, test_closed_reset);
    tcase_add_test(tc, test_closed_reset_mid_sleep);
    tcase_add_test(tc, test_idle_timeout);
    tcase_add_test(tc, test_write_timeout_drops);
    tcase_add_test(tc, test_push);
    tcase_add_test(tc, test_push_then_requests);
    tcase_add_test(tc, test_shutdown);
    tcase_add_test(tc, test_shutdown_idle);
    tcase_add_test(tc, test_reset_mid_batch);
    tcase_add_test(tc, test_shutdown_unparsed_lines);
    suite_add_tcase(s, tc);

    tc = tcase_create("oom");
    tcase_add_checked_fixture(tc, setup, oom_teardown);
    tcase_add_test(tc, test_oom_reply_line);
    tcase_add_test(tc, test_oom_reply_jsonrpc);
    tcase_add_test(tc, test_oom_reply_batch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    jsond_builtin_add_tests(test_builtins, sizeof test_builtins / sizeof test_builtins[0]);
    /* As the daemon does: a write to a closed peer is an error, not a death. */
    signal(SIGPIPE, SIG_IGN);
    SRunner *sr = srunner_create(conn_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
