/* lineserver.c: one libevent loop's ceiling, a peer for tests/bench/peers.py.
 *
 *     lineserver [-p PORT]
 *
 * Listens on 127.0.0.1:PORT (default 0: any free port), prints `port=N`
 * and answers every line it reads, whatever it holds, with the fixed hello
 * line {"msg":"Hello World","data":"x"}. Nothing is parsed, allocated or
 * queued per request: a read of up to 64 KB, a count of its newlines, and
 * one write of that many replies from a static buffer. What jsond does on
 * top of this (parse, route, call, serialize) is what a pipelined `hello`
 * on jsond costs more. Runs until killed.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELLO     "{\"msg\":\"Hello World\",\"data\":\"x\"}\n"
#define HELLO_LEN (sizeof HELLO - 1)
#define REPLIES   2048 /* replies in the static buffer */

static char replies[REPLIES * HELLO_LEN];

typedef struct conn {
    struct event *ev;
    unsigned long long owed; /* replies counted but not yet written */
    size_t partial;          /* bytes of the next reply already written */
} conn;

static void drop(conn *c)
{
    evutil_socket_t fd = event_get_fd(c->ev);
    event_free(c->ev);
    close(fd);
    free(c);
}

/* Writes what is owed; 0 when all of it went, 1 when the socket is full,
 * -1 on an error. */
static int flush(conn *c, evutil_socket_t fd)
{
    while (c->owed) {
        size_t len = c->owed < REPLIES ? (size_t)c->owed * HELLO_LEN : sizeof replies;
        len -= c->partial;
        ssize_t n = write(fd, replies + c->partial, len);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 1 : -1;
        size_t done = c->partial + (size_t)n;
        c->owed -= done / HELLO_LEN;
        c->partial = done % HELLO_LEN;
    }
    return 0;
}

static void conn_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    if (what & EV_WRITE) {
        int r = flush(c, fd);
        if (r < 0) {
            drop(c);
            return;
        }
        if (r == 0) { /* drained: back to reading */
            event_del(c->ev);
            event_assign(c->ev, event_get_base(c->ev), fd, EV_READ | EV_PERSIST, conn_cb, c);
            event_add(c->ev, NULL);
        }
        return;
    }
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        drop(c);
        return;
    }
    for (const char *p = buf, *end = buf + n; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        c->owed++;
    int r = flush(c, fd);
    if (r < 0) {
        drop(c);
    } else if (r > 0) { /* the client is slow: stop reading until it catches up */
        event_del(c->ev);
        event_assign(c->ev, event_get_base(c->ev), fd, EV_WRITE | EV_PERSIST, conn_cb, c);
        event_add(c->ev, NULL);
    }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    (void)sa;
    (void)len;
    (void)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->ev = event_new(evconnlistener_get_base(l), fd, EV_READ | EV_PERSIST, conn_cb, c);
    if (!c->ev || event_add(c->ev, NULL) < 0) {
        if (c->ev)
            event_free(c->ev);
        free(c);
        close(fd);
    }
}

int main(int argc, char **argv)
{
    unsigned port = 0;
    int opt;
    while ((opt = getopt(argc, argv, "p:")) != -1) {
        if (opt != 'p') {
            fprintf(stderr, "usage: lineserver [-p PORT]\n");
            return 2;
        }
        port = (unsigned)strtoul(optarg, NULL, 10);
    }
    for (size_t i = 0; i < REPLIES; i++)
        memcpy(replies + i * HELLO_LEN, HELLO, HELLO_LEN);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct event_base *base = event_base_new();
    if (!base)
        return 1;
    struct evconnlistener *l =
        evconnlistener_new_bind(base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                1024, (struct sockaddr *)&sin, sizeof sin);
    if (!l) {
        fprintf(stderr, "lineserver: cannot listen: %s\n", strerror(errno));
        return 1;
    }
    socklen_t sl = sizeof sin;
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &sl);
    printf("port=%u\n", (unsigned)ntohs(sin.sin_port));
    fflush(stdout);
    event_base_dispatch(base);
    evconnlistener_free(l);
    event_base_free(base);
    return 0;
}
