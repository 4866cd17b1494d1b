/* loadgen.c: a load generator for jsond's request mode.
 *
 *     loadgen [-c CONNS] [-b BATCH] [-d SECONDS | -n REQUESTS] [-r LINE] HOST PORT
 *
 * Opens CONNS connections (default 1) and on each pipelines batches: it
 * writes BATCH request lines (default 100 `hello`) at once, reads the
 * BATCH replies, and repeats, for SECONDS (default 5) or until REQUESTS
 * requests in all have been answered. A batch in progress when the time is
 * up is finished, so every request counted was answered. Prints one line:
 *
 *     requests=N seconds=S rps=R bytes=B conns=C batch=K
 *
 * A reply is counted at its newline: compact JSON has no other. Exit
 * status 1 when a connection fails or closes early, 2 for a usage error.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void finish(client *c)
{
    gen *g = c->g;
    if (c->done)
        return;
    c->done = 1;
    if (++g->finished == g->nclients) {
        g->t1 = now_s();
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
    g->t0 = now_s();
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

static void usage(void)
{
    fprintf(stderr, "usage: loadgen [-c CONNS] [-b BATCH] [-d SECONDS | -n REQUESTS] [-r LINE] "
                    "HOST PORT\n");
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
    int opt, rc = 1;
    while ((opt = getopt(argc, argv, "c:b:d:n:r:")) != -1) {
        switch (opt) {
        case 'c':
            conns = (unsigned)number(optarg, 1, 100000);
            break;
        case 'b':
            g.batch = (unsigned)number(optarg, 1, 1000000);
            break;
        case 'd':
            g.seconds = (unsigned)number(optarg, 1, 86400);
            break;
        case 'n':
            g.remaining = number(optarg, 1, 1ULL << 50);
            g.by_count = 1;
            break;
        case 'r':
            line = optarg;
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
    printf("requests=%llu seconds=%.3f rps=%.0f bytes=%llu conns=%u batch=%u\n", g.replies, took,
           took > 0 ? (double)g.replies / took : 0.0, g.bytes, conns, g.batch);
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
