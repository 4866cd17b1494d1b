/* loadgen.c: a load generator for jsond's request mode, and for its peers.
 *
 *     loadgen [-c CONNS] [-b BATCH] [-d SECONDS | -n REQUESTS] [-r LINE] [-S PID] HOST PORT
 *
 * Opens CONNS connections (default 1) and on each pipelines batches: it
 * writes BATCH request lines (default 100 `hello`) at once, reads the
 * BATCH replies, and repeats, for SECONDS (default 5) or until REQUESTS
 * requests in all have been answered. A batch in progress when the time is
 * up is finished, so every request counted was answered. Prints one line:
 *
 *     requests=N seconds=S rps=R bytes=B conns=C batch=K
 *
 * A reply is counted at its newline: compact JSON has no other (nor has
 * redis's `+PONG\r\n`, so `-r PING` drives redis-server the same way).
 *
 * Other modes, for tests/bench/peers.py:
 *
 *     loadgen -P [-c CONNS] [-d SECONDS | -n CONNECTIONS] [-S PID] HOST PORT
 *         push: each of CONNS clients connects, reads to end-of-stream,
 *         closes, and again; prints
 *         connections=N seconds=S cps=R bytes=B conns=C
 *     loadgen -B [-r LINE] [-S PID] HOST PORT
 *         bulk: one connection; sends LINE if given (and shuts its
 *         side down), reads to end-of-stream as fast as it can (1 MB
 *         reads); prints
 *         bytes=B seconds=S mbps=M (MB of 10^6 bytes)
 *     loadgen -L [-d SECONDS | -n REQUESTS] [-r LINE] [-S PID] HOST PORT
 *         latency: one connection, one request at a time (default 5,000);
 *         prints requests=N seconds=S p50_us=X p99_us=Y max_us=Z
 *
 * -S PID reads the server's CPU time (utime + stime of /proc/PID/stat,
 * every thread) when the clock starts and when it stops, and appends
 * server_cpu=SECONDS server_us=X to the line: X is the server's CPU
 * microseconds per request, per connection, or per MB in bulk mode. On
 * a 2-core machine the client saturates first at push, so connections
 * per second alone cannot tell servers apart: their CPU per connection can.
 *
 * Exit status 1 when a connection fails or closes early, 2 for a usage
 * error.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

typedef struct gen gen;

typedef struct client {
    gen *g;
    struct bufferevent *bev;
    unsigned long long pending; /* replies owed for the batch in flight */
    int done;
} client;

struct gen {
    struct event_base *base;
    client *clients;
    unsigned nclients, connected, finished;
    unsigned batch;
    char *payload; /* one batch of request lines */
    size_t payload_len;
    int stopping;                 /* time is up, or the count is reached */
    unsigned long long remaining; /* requests still to send, with -n */
    int by_count;
    unsigned seconds;
    struct event *deadline; /* with -d */
    unsigned long long replies, bytes;
    double t0, t1;
    int failed;
    long server;       /* -S: the server's pid, or 0 */
    double cpu0, cpu1; /* its CPU seconds at t0 and t1 */
    struct sockaddr_storage ss;
    socklen_t sslen;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The CPU seconds (user and system, every thread) of process `pid`, from
 * /proc/PID/stat; 0 for no pid, -1 when it cannot be read. */
static double cpu_s(long pid)
{
    if (!pid)
        return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces */
    unsigned long long utime, stime;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void clock_start(gen *g)
{
    g->cpu0 = cpu_s(g->server);
    g->t0 = now_s();
}

static void clock_stop(gen *g)
{
    g->t1 = now_s();
    g->cpu1 = cpu_s(g->server);
}

/* With -S, the server's CPU time over the run and per unit of work. */
static void print_server(const gen *g, double units)
{
    if (!g->server)
        return;
    double cpu = g->cpu1 - g->cpu0;
    if (g->cpu0 < 0 || g->cpu1 < 0)
        printf(" server_cpu=-1 server_us=-1");
    else
        printf(" server_cpu=%.3f server_us=%.3f", cpu, units > 0 ? cpu * 1e6 / units : 0.0);
}

static void finish(client *c)
{
    gen *g = c->g;
    if (c->done)
        return;
    c->done = 1;
    if (++g->finished == g->nclients) {
        clock_stop(g);
        event_base_loopbreak(g->base);
    }
}

/* Sends the next batch, or finishes the client when there is none. */
static void next_batch(client *c)
{
    gen *g = c->g;
    unsigned n = g->batch;
    if (g->stopping) {
        finish(c);
        return;
    }
    if (g->by_count) {
        if (g->remaining == 0) {
            finish(c);
            return;
        }
        if (g->remaining < n)
            n = (unsigned)g->remaining;
        g->remaining -= n;
    }
    size_t len = g->payload_len / g->batch * n;
    if (bufferevent_write(c->bev, g->payload, len) < 0) {
        fprintf(stderr, "loadgen: out of memory\n");
        g->failed = 1;
        event_base_loopbreak(g->base);
        return;
    }
    c->pending = n;
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    client *c = arg;
    gen *g = c->g;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    unsigned long long lines = 0;
    struct evbuffer_iovec stackv[64], *vec = stackv;
    int n = evbuffer_peek(in, -1, NULL, NULL, 0);
    if (n > 64 && !(vec = malloc((size_t)n * sizeof *vec))) {
        fprintf(stderr, "loadgen: out of memory\n");
        g->failed = 1;
        event_base_loopbreak(g->base);
        return;
    }
    n = evbuffer_peek(in, -1, NULL, vec, n);
    for (int i = 0; i < n; i++) {
        const char *p = vec[i].iov_base, *end = p + vec[i].iov_len;
        while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            lines++;
            p++;
        }
    }
    if (vec != stackv)
        free(vec);
    evbuffer_drain(in, len);
    g->bytes += len;
    if (lines > c->pending) {
        fprintf(stderr, "loadgen: %llu replies for %llu requests\n", lines, c->pending);
        g->failed = 1;
        event_base_loopbreak(g->base);
        return;
    }
    c->pending -= lines;
    g->replies += lines;
    if (c->pending == 0)
        next_batch(c);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg);

/* Every connection is up: the clock starts now. */
static void start(gen *g)
{
    if (!g->by_count) {
        struct timeval tv = {(time_t)g->seconds, 0};
        g->deadline = evtimer_new(g->base, deadline_cb, g);
        if (!g->deadline || evtimer_add(g->deadline, &tv) < 0) {
            fprintf(stderr, "loadgen: cannot arm the timer\n");
            g->failed = 1;
            event_base_loopbreak(g->base);
            return;
        }
    }
    clock_start(g);
    for (unsigned i = 0; i < g->nclients; i++)
        next_batch(&g->clients[i]);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    client *c = arg;
    gen *g = c->g;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (++g->connected == g->nclients)
            start(g);
        return;
    }
    if (what & BEV_EVENT_EOF)
        fprintf(stderr, "loadgen: the server closed a connection\n");
    else
        fprintf(stderr, "loadgen: connection error: %s\n", strerror(errno));
    g->failed = 1;
    event_base_loopbreak(g->base);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    gen *g = arg;
    (void)fd;
    (void)what;
    g->stopping = 1;
}

/* ---- -P: push ----------------------------------------------------------- */

typedef struct pusher {
    gen *g;
    struct event *ev; /* storage for event_assign, one per client */
    evutil_socket_t fd;
    int done;
} pusher;

static void push_done(pusher *c)
{
    gen *g = c->g;
    c->done = 1;
    if (++g->finished == g->nclients) {
        clock_stop(g);
        event_base_loopbreak(g->base);
    }
}

static void push_fail(gen *g, const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    g->failed = 1;
    event_base_loopbreak(g->base);
}

static void push_read_cb(evutil_socket_t fd, short what, void *arg);

/* Opens the client's next connection, or finishes it. */
static void push_connect(pusher *c)
{
    gen *g = c->g;
    if (g->stopping || (g->by_count && g->remaining == 0)) {
        push_done(c);
        return;
    }
    if (g->by_count)
        g->remaining--;
    c->fd = socket(g->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        push_fail(g, "socket");
        return;
    }
    if (connect(c->fd, (struct sockaddr *)&g->ss, g->sslen) < 0 && errno != EINPROGRESS) {
        push_fail(g, "connect");
        return;
    }
    /* Readable when the push arrives, at its end, or on an error. */
    if (event_assign(c->ev, g->base, c->fd, EV_READ | EV_PERSIST, push_read_cb, c) < 0 ||
        event_add(c->ev, NULL) < 0)
        push_fail(g, "event_add");
}

static void push_read_cb(evutil_socket_t fd, short what, void *arg)
{
    pusher *c = arg;
    gen *g = c->g;
    char buf[16384];
    (void)what;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            g->bytes += (unsigned long long)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            push_fail(g, "read");
            return;
        }
        event_del(c->ev);
        close(fd);
        c->fd = -1;
        g->replies++;
        push_connect(c);
        return;
    }
}

static void push_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    gen *g = arg;
    (void)fd;
    (void)what;
    g->stopping = 1;
}

static int run_push(gen *g, unsigned conns)
{
    int rc = 1;
    pusher *cs = calloc(conns, sizeof *cs);
    if (!cs) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    g->nclients = conns;
    for (unsigned i = 0; i < conns; i++) {
        cs[i].g = g;
        cs[i].fd = -1;
        if (!(cs[i].ev = malloc(event_get_struct_event_size()))) {
            fprintf(stderr, "loadgen: out of memory\n");
            goto end;
        }
    }
    if (!g->by_count) {
        struct timeval tv = {(time_t)g->seconds, 0};
        g->deadline = evtimer_new(g->base, push_deadline_cb, g);
        if (!g->deadline || evtimer_add(g->deadline, &tv) < 0) {
            fprintf(stderr, "loadgen: cannot arm the timer\n");
            goto end;
        }
    }
    clock_start(g);
    for (unsigned i = 0; i < conns && !g->failed; i++)
        push_connect(&cs[i]);
    if (!g->failed && g->finished < conns)
        event_base_dispatch(g->base);
    if (g->failed || g->finished != conns)
        goto end;
    double took = g->t1 - g->t0;
    printf("connections=%llu seconds=%.3f cps=%.0f bytes=%llu conns=%u", g->replies, took,
           took > 0 ? (double)g->replies / took : 0.0, g->bytes, conns);
    print_server(g, (double)g->replies);
    printf("\n");
    rc = 0;
end:
    for (unsigned i = 0; i < conns; i++) {
        if (cs[i].fd >= 0) {
            event_del(cs[i].ev);
            close(cs[i].fd);
        }
        free(cs[i].ev);
    }
    free(cs);
    return rc;
}

/* ---- -B and -L: one blocking connection ------------------------------- */

static int dial(gen *g)
{
    int fd = socket(g->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&g->ss, g->sslen) < 0) {
        fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int put_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "loadgen: write: %s\n", strerror(errno));
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int run_bulk(gen *g, const char *line, int send_line)
{
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    int rc = 1;
    if (!buf) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    clock_start(g);
    int fd = dial(g);
    if (fd < 0)
        goto end;
    /* The request, then the end of ours: a server in request mode closes
     * once it has answered. */
    if (send_line && (put_all(fd, line, strlen(line)) < 0 || put_all(fd, "\n", 1) < 0 ||
                      shutdown(fd, SHUT_WR))) {
        close(fd);
        goto end;
    }
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n > 0) {
            g->bytes += (unsigned long long)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "loadgen: read: %s\n", strerror(errno));
            close(fd);
            goto end;
        }
        break;
    }
    clock_stop(g);
    close(fd);
    double took = g->t1 - g->t0;
    printf("bytes=%llu seconds=%.3f mbps=%.1f", g->bytes, took,
           took > 0 ? (double)g->bytes / 1e6 / took : 0.0);
    print_server(g, (double)g->bytes / 1e6);
    printf("\n");
    rc = 0;
end:
    free(buf);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The nearest-rank percentile p (0..100) of n sorted values. */
static double rank(const double *v, size_t n, unsigned p)
{
    size_t i = (n * p + 99) / 100;
    return v[i ? i - 1 : 0];
}

static int run_latency(gen *g, const char *line)
{
    size_t l = strlen(line), cap = g->by_count ? (size_t)g->remaining : 65536, n = 0;
    char *req = malloc(l + 1), buf[65536];
    double *lat = malloc(cap * sizeof *lat);
    int rc = 1, fd = -1;
    if (!req || !lat) {
        fprintf(stderr, "loadgen: out of memory\n");
        goto end;
    }
    memcpy(req, line, l);
    req[l] = '\n';
    if ((fd = dial(g)) < 0)
        goto end;
    clock_start(g);
    double stop = g->t0 + g->seconds;
    while (g->by_count ? n < g->remaining : now_s() < stop) {
        if (n == cap) {
            double *more = realloc(lat, 2 * cap * sizeof *lat);
            if (!more) {
                fprintf(stderr, "loadgen: out of memory\n");
                goto end;
            }
            lat = more;
            cap *= 2;
        }
        double t = now_s();
        if (put_all(fd, req, l + 1) < 0)
            goto end;
        for (int got = 0; !got;) {
            ssize_t r = read(fd, buf, sizeof buf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                fprintf(stderr, "loadgen: %s\n", r ? strerror(errno) : "the server closed");
                goto end;
            }
            g->bytes += (unsigned long long)r;
            got = memchr(buf, '\n', (size_t)r) != NULL;
        }
        lat[n++] = (now_s() - t) * 1e6;
    }
    clock_stop(g);
    if (n == 0) {
        fprintf(stderr, "loadgen: no request made\n");
        goto end;
    }
    qsort(lat, n, sizeof *lat, cmp_double);
    printf("requests=%zu seconds=%.3f p50_us=%.1f p99_us=%.1f max_us=%.1f", n, g->t1 - g->t0,
           rank(lat, n, 50), rank(lat, n, 99), lat[n - 1]);
    print_server(g, (double)n);
    printf("\n");
    rc = 0;
end:
    if (fd >= 0)
        close(fd);
    free(req);
    free(lat);
    return rc;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen [-c CONNS] [-b BATCH] [-d SECONDS | -n REQUESTS] [-r LINE] "
            "[-S PID] HOST PORT\n"
            "       loadgen -P [-c CONNS] [-d SECONDS | -n CONNECTIONS] [-S PID] HOST PORT\n"
            "       loadgen -B [-r LINE] [-S PID] HOST PORT\n"
            "       loadgen -L [-d SECONDS | -n REQUESTS] [-r LINE] [-S PID] HOST PORT\n");
    exit(2);
}

static unsigned long long number(const char *s, unsigned long long min, unsigned long long max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    gen g = {.batch = 100, .seconds = 5};
    unsigned conns = 1;
    const char *line = "hello";
    int opt, rc = 1, mode = 0, line_given = 0, timed = 0;
    while ((opt = getopt(argc, argv, "c:b:d:n:r:S:PBL")) != -1) {
        switch (opt) {
        case 'P':
        case 'B':
        case 'L':
            if (mode && mode != opt)
                usage();
            mode = opt;
            break;
        case 'S':
            g.server = (long)number(optarg, 1, 1ULL << 31);
            break;
        case 'c':
            conns = (unsigned)number(optarg, 1, 100000);
            break;
        case 'b':
            g.batch = (unsigned)number(optarg, 1, 1000000);
            break;
        case 'd':
            g.seconds = (unsigned)number(optarg, 1, 86400);
            timed = 1;
            break;
        case 'n':
            g.remaining = number(optarg, 1, 1ULL << 50);
            g.by_count = 1;
            break;
        case 'r':
            line = optarg;
            line_given = 1;
            break;
        default:
            usage();
        }
    }
    if (argc - optind != 2 || strchr(line, '\n'))
        usage();
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sslen;
    if (mode == 'L' && !g.by_count && !timed) {
        g.remaining = 5000; /* the default: 5,000 round trips */
        g.by_count = 1;
    }
    unsigned port = (unsigned)number(argv[optind + 1], 1, 65535);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, argv[optind], &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)port);
        sslen = sizeof *sin;
    } else if (inet_pton(AF_INET6, argv[optind], &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)port);
        sslen = sizeof *sin6;
    } else {
        usage();
    }
    g.ss = ss;
    g.sslen = sslen;
    if (mode == 'B')
        return run_bulk(&g, line, line_given);
    if (mode == 'L')
        return run_latency(&g, line);
    if (mode == 'P') {
        if (!(g.base = event_base_new())) {
            fprintf(stderr, "loadgen: out of memory\n");
            return 1;
        }
        rc = run_push(&g, conns);
        if (g.deadline)
            event_free(g.deadline);
        event_base_free(g.base);
        return rc;
    }

    size_t l = strlen(line);
    g.payload_len = (l + 1) * g.batch;
    g.payload = malloc(g.payload_len);
    g.base = event_base_new();
    g.clients = calloc(conns, sizeof *g.clients);
    if (!g.payload || !g.base || !g.clients) {
        fprintf(stderr, "loadgen: out of memory\n");
        goto end;
    }
    for (unsigned i = 0; i < g.batch; i++) {
        memcpy(g.payload + i * (l + 1), line, l);
        g.payload[i * (l + 1) + l] = '\n';
    }
    g.nclients = conns;
    for (unsigned i = 0; i < conns; i++) {
        client *c = &g.clients[i];
        c->g = &g;
        c->bev = bufferevent_socket_new(g.base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!c->bev) {
            fprintf(stderr, "loadgen: out of memory\n");
            goto end;
        }
        bufferevent_setcb(c->bev, client_read_cb, NULL, client_event_cb, c);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sslen) < 0) {
            fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
            goto end;
        }
    }
    event_base_dispatch(g.base);
    if (g.failed || g.finished != g.nclients)
        goto end;
    double took = g.t1 - g.t0;
    printf("requests=%llu seconds=%.3f rps=%.0f bytes=%llu conns=%u batch=%u", g.replies, took,
           took > 0 ? (double)g.replies / took : 0.0, g.bytes, conns, g.batch);
    print_server(&g, (double)g.replies);
    printf("\n");
    rc = 0;
end:
    if (g.clients)
        for (unsigned i = 0; i < conns; i++)
            if (g.clients[i].bev)
                bufferevent_free(g.clients[i].bev);
    if (g.deadline)
        event_free(g.deadline);
    if (g.base)
        event_base_free(g.base);
    free(g.clients);
    free(g.payload);
    return rc;
}
