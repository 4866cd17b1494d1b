/* server.c: listeners, accepting, the set of open connections, shutdown.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "alloc.h"
#include "conn.h"
#include "inbox.h"
#include "jsond.h"
#include "pool.h"
#include "req.h"
#include "stats.h"
#include "watch.h"
#include "timeout.h"

/* Refused connections (over max_connections) lingering at once, each
 * reading its client's input to end-of-stream so that the refusal line is
 * not destroyed by a reset; past this many, a refusal is a plain close. */
#define MAX_REFUSALS 64

/* After EMFILE/ENFILE, accepting pauses this long before trying again:
 * the listening socket stays readable, so retrying at once would spin. */
#define ACCEPT_BACKOFF_MS 100

/* While shutting down with no connection left, or while a pool that a
 * reload removed finishes its queue, how often to look whether the pools
 * have finished their last jobs (they tell nobody). */
#define POOL_CHECK_MS 10

/* A server that abandoned workers on its way out stays here, reachable:
 * they may still use its inbox, its pools and its requests' environment.
 * volatile: nothing reads it, and the compiler would drop the store, which
 * leak checkers then report as a leak. */
static jsond_server *volatile abandoned;

typedef struct listener {
    jsond_server *srv;
    const cfg_listen *cfg;
    evutil_socket_t fd;
    ssize_t given; /* its socket is srv->given[given], owned by the server; -1: bound here */
    struct event *ev;
    int unlink_path; /* a unix socket file we created, */
    dev_t dev;       /* this one: removed at close only if it is still there */
    ino_t ino;
    jsond_addr bound; /* the address it got: port 0 in the config is a real port here */
} listener;

typedef struct node {
    struct node *prev, *next;
    jsond_server *srv;
    jsond_conn *c;
} node;

/* A connection refused over max_connections, after its one line: its
 * write side is shut, and its input is read and discarded until
 * end-of-stream, an error or linger_timeout, then it is closed. One read
 * event and one timer each, and no more than MAX_REFUSALS at once. */
typedef struct refusal {
    struct refusal *prev, *next;
    jsond_server *srv;
    evutil_socket_t fd;
    struct event *read_ev;
    struct event *timer; /* NULL with linger_timeout = 0: until end-of-stream */
} refusal;

/* A listening socket passed in (systemd's socket activation). It lives as
 * long as the server, whichever listener serves it: a reload may hand it
 * from one to another, and closing it would lose the port for good. */
typedef struct given {
    evutil_socket_t fd;
    char *name;
    jsond_addr addr;
    char text[160]; /* addr, formatted: how listeners' addresses are compared */
} given;

struct jsond_server {
    struct event_base *base;
    given *given; /* the passed sockets; each must be served by a listener */
    size_t ngiven;
    jsond_config *cfg;      /* the config in force; connections hold their own */
    unsigned max_conns_cap; /* from the descriptor limit; 0: none */
    listener **ls;          /* one per [listen] of cfg, in its order */
    size_t nls;
    node *conns;
    refusal *refusals; /* lingering refused connections */
    unsigned nrefusals;
    unsigned max_conns;
    struct event *backoff;
    int paused_logged;
    int draining;
    struct event *drain_timer;
    struct event *drain_check;
    void (*drained)(void *arg);
    void *drained_arg;
    jsond_stats stats;
    jsond_timeouts *timeouts; /* the loop's timer queues, shared by every connection */
    jsond_inbox *inbox;       /* outcomes from the pools' threads */
    jsond_pool **pools;       /* the config in force's pools, by index in its `pools` */
    size_t npools;
    jsond_pool **retired;     /* pools a reload removed, finishing their queues: */
    size_t nretired;          /* each is freed once idle */
    jsond_req_env env;        /* what requests share; env.pools is pools */
    struct event *pool_check; /* waiting for retired pools, or for all at shutdown */
    jsond_watch *watch;       /* the loop's: its callbacks timed, and its watchdog */
};

/* Removes the unix socket at `path` if it is still the very socket file
 * (dev, ino) we bound, or, with ino 0, any socket: never anything else,
 * whatever has been put there meanwhile. */
static void unlink_socket(const char *path, dev_t dev, ino_t ino)
{
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        (!ino || (st.st_dev == dev && st.st_ino == ino)))
        unlink(path);
}

/* Stops accepting and releases the socket; NULL is fine. Connections it
 * accepted carry on. */
static void listener_free(listener *l)
{
    if (!l)
        return;
    if (l->ev)
        event_free(l->ev);
    if (l->fd >= 0 && l->given < 0)
        close(l->fd);
    if (l->unlink_path)
        unlink_socket(jsond_addr_unix_path(&l->cfg->address), l->dev, l->ino);
    free(l);
}

/* ---- connections ------------------------------------------------------ */

static void drained_now_cb(evutil_socket_t fd, short what, void *arg);
static void pool_check_cb(evutil_socket_t fd, short what, void *arg);

static int pools_idle(jsond_server *srv)
{
    for (size_t i = 0; i < srv->npools; i++)
        if (!jsond_pool_idle(srv->pools[i]))
            return 0;
    return srv->nretired == 0;
}

/* Frees the retired pools whose threads have all left (a drained thread
 * leaves once the queue is empty, so the join never waits on a job), and
 * looks again later while some have not. */
static void reap_retired(jsond_server *srv)
{
    size_t kept = 0;
    for (size_t i = 0; i < srv->nretired; i++) {
        jsond_pool *pool = srv->retired[i];
        jsond_pool_stats st;
        jsond_pool_get_stats(pool, &st);
        if (st.live == 0) {
            jsond_log(JSOND_LOG_INFO, "pool %s (removed) has finished its queue",
                      jsond_pool_name(pool));
            jsond_pool_free(pool);
        } else {
            srv->retired[kept++] = pool;
        }
    }
    srv->nretired = kept;
    struct timeval tv = jsond_ms_tv(POOL_CHECK_MS);
    if (kept && event_add(srv->pool_check, &tv) < 0)
        jsond_log(JSOND_LOG_ERROR,
                  "cannot arm the pool check: %zu removed pools are kept until "
                  "the next reload or the exit",
                  kept);
}

/* Shutdown ends once no connection is left and no worker runs a job: only
 * then can what they use be freed. */
static void finish_drain(jsond_server *srv)
{
    if (!srv->draining || srv->stats.conns.open != 0 || !srv->drained)
        return;
    if (!pools_idle(srv)) {
        struct timeval tv = jsond_ms_tv(POOL_CHECK_MS);
        if (srv->pool_check && event_add(srv->pool_check, &tv) == 0)
            return;
        jsond_log(JSOND_LOG_ERROR, "cannot wait for the pools: stopping now");
    }
    void (*done)(void *) = srv->drained;
    srv->drained = NULL;
    done(srv->drained_arg);
}

static void conn_closed_cb(jsond_conn *c, jsond_conn_end how, void *arg)
{
    (void)c;
    node *n = arg;
    jsond_server *srv = n->srv;
    if (n->prev)
        n->prev->next = n->next;
    else
        srv->conns = n->next;
    if (n->next)
        n->next->prev = n->prev;
    free(n);
    srv->stats.conns.open--;
    switch (how) {
    case JSOND_CONN_DONE:
        break;
    case JSOND_CONN_DROPPED:
        srv->stats.conns.dropped++;
        break;
    case JSOND_CONN_RESET:
        srv->stats.conns.reset++;
        break;
    case JSOND_CONN_CUT:
        srv->stats.conns.cut++;
        break;
    }
    finish_drain(srv);
}

static void serve(listener *l, evutil_socket_t fd, const struct sockaddr_storage *ss, socklen_t len)
{
    jsond_server *srv = l->srv;
    jsond_addr peer = {.len = len};
    memcpy(&peer.ss, ss, sizeof peer.ss);
    size_t pushed = 0;
    if (jsond_conn_push(fd, &peer, srv->cfg, l->cfg, &srv->stats, &pushed) == 1) {
        srv->stats.conns.accepted++;
        return;
    }
    node *n = calloc(1, sizeof *n);
    jsond_conn *c = n ? jsond_conn_new(srv->base, fd, &peer, srv->cfg, l->cfg, &srv->cfg,
                                       &srv->stats, &srv->env, conn_closed_cb, n)
                      : NULL;
    if (!c) {
        jsond_log(JSOND_LOG_ERROR, "out of memory: a connection to %s closed", l->cfg->name);
        if (!n)
            close(fd);
        free(n);
        srv->stats.conns.refused++;
        return;
    }
    n->srv = srv;
    n->c = c;
    n->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = n;
    srv->conns = n;
    srv->stats.conns.open++;
    srv->stats.conns.accepted++;
    jsond_conn_start(c, pushed);
}

/* ---- refusing --------------------------------------------------------- */

static const char busy_plain[] =
    "{\"error\":{\"code\":\"busy\",\"message\":\"too many connections\"}}\n";
static const char busy_jsonrpc[] =
    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32001,\"message\":\"too many connections\","
    "\"data\":{\"code\":\"busy\"}},\"id\":null}\n";

static void refusal_free(refusal *r)
{
    jsond_server *srv = r->srv;
    if (r->prev)
        r->prev->next = r->next;
    else
        srv->refusals = r->next;
    if (r->next)
        r->next->prev = r->prev;
    srv->nrefusals--;
    if (r->read_ev)
        event_free(r->read_ev);
    if (r->timer)
        event_free(r->timer);
    close(r->fd);
    free(r);
}

static void refusal_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    jsond_watch_frame f;
    jsond_watch_enter(&f, "refusal", NULL);
    /* Freed at end-of-stream or an error, and also when the client keeps
     * sending: a refused flood is not worth more reads. */
    if (jsond_conn_discard(fd) != 0)
        refusal_free(arg);
    jsond_watch_leave(&f);
}

static void refusal_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_watch_frame f;
    jsond_watch_enter(&f, "refusal timer", NULL);
    refusal_free(arg);
    jsond_watch_leave(&f);
}

/* Over max_connections: one line, then the closing rule in small. The
 * line fits any fresh socket's send buffer, so one nonblocking send says
 * it; then a close with the client's request unread would make the kernel
 * send a reset that destroys the line, so the write side is shut and the
 * input drained first. */
static void refuse(listener *l, evutil_socket_t fd)
{
    jsond_server *srv = l->srv;
    int rpc = l->cfg->protocol == JSOND_PROTOCOL_JSONRPC;
    const char *line = rpc ? busy_jsonrpc : busy_plain;
    size_t len = rpc ? sizeof busy_jsonrpc - 1 : sizeof busy_plain - 1;
    unsigned ms = srv->cfg->server.linger_timeout_ms;
    refusal *r = NULL;
    srv->stats.conns.refused++;
    if (send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 || srv->nrefusals >= MAX_REFUSALS)
        goto close_now;
    shutdown(fd, SHUT_WR);
    if (!(r = calloc(1, sizeof *r)))
        goto close_now;
    r->srv = srv;
    r->fd = fd;
    r->read_ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, refusal_read_cb, r);
    r->timer = ms ? evtimer_new(srv->base, refusal_timer_cb, r) : NULL;
    if (!r->read_ev || (ms && !r->timer) || event_add(r->read_ev, NULL) < 0 ||
        (r->timer && jsond_timeouts_add(srv->timeouts, r->timer, ms) < 0)) {
        jsond_log(JSOND_LOG_WARNING, "listener %s: cannot watch a refused connection: closed",
                  l->cfg->name);
        goto close_now;
    }
    r->next = srv->refusals;
    if (srv->refusals)
        srv->refusals->prev = r;
    srv->refusals = r;
    srv->nrefusals++;
    return;
close_now:
    if (r) {
        if (r->read_ev)
            event_free(r->read_ev);
        if (r->timer)
            event_free(r->timer);
        free(r);
    }
    close(fd);
}

/* ---- accepting -------------------------------------------------------- */

/* Starts or stops accepting on every listener. A listener whose event
 * cannot be added would silently stop accepting: that is logged, and the
 * backoff timer retries it (and logs again) until it works. */
static void set_accepting(jsond_server *srv, int on)
{
    int failed = 0;
    for (size_t i = 0; i < srv->nls; i++) {
        if (!srv->ls[i] || !srv->ls[i]->ev)
            continue;
        if (!on) {
            event_del(srv->ls[i]->ev);
        } else if (event_add(srv->ls[i]->ev, NULL) < 0) {
            jsond_log(JSOND_LOG_ERROR, "listener %s: cannot watch its socket: retrying in %d ms",
                      srv->ls[i]->cfg->name, ACCEPT_BACKOFF_MS);
            failed = 1;
        }
    }
    if (failed) {
        struct timeval tv = jsond_ms_tv(ACCEPT_BACKOFF_MS);
        if (event_add(srv->backoff, &tv) < 0)
            jsond_log(JSOND_LOG_ERROR, "cannot arm the accept retry timer: listeners that could "
                                       "not be watched stay idle until the next reload");
    }
}

static void backoff_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_watch_frame f;
    jsond_watch_enter(&f, "accept backoff", NULL);
    set_accepting(arg, 1);
    jsond_watch_leave(&f);
}

static void pause_accepting(jsond_server *srv, int err)
{
    if (!srv->paused_logged) {
        jsond_log(JSOND_LOG_WARNING, "accept failed: %s; pausing accepts until descriptors free up",
                  strerror(err));
        srv->paused_logged = 1;
    }
    struct timeval tv = jsond_ms_tv(ACCEPT_BACKOFF_MS);
    /* Without the timer nothing would resume accepting: keep accepting
     * (and spinning on EMFILE) rather than stop for good. */
    if (event_add(srv->backoff, &tv) < 0) {
        jsond_log(JSOND_LOG_ERROR, "cannot arm the accept backoff timer: accepting on");
        return;
    }
    set_accepting(srv, 0);
}

/* One connection per readable event, as nginx does by default: the
 * listener is level-triggered, so epoll reports it again at once while more
 * wait. Accepting on until EAGAIN would cost a failing accept4 per event,
 * and events mostly find one connection: push hello on 50 clients made
 * 0.81 failing calls per connection, to save 0.19 epoll_waits. */
static void accept_one(listener *l, evutil_socket_t fd)
{
    jsond_server *srv = l->srv;
    struct sockaddr_storage ss = {0}; /* unix peers fill in little */
    socklen_t len = sizeof ss;
    evutil_socket_t cfd = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            pause_accepting(srv, errno);
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
            jsond_log(JSOND_LOG_WARNING, "accept on %s: %s", l->cfg->name, strerror(errno));
        return;
    }
    if (srv->paused_logged) {
        jsond_log(JSOND_LOG_NOTICE, "accepting again");
        srv->paused_logged = 0;
    }
    if (srv->stats.conns.open >= srv->max_conns)
        refuse(l, cfd);
    else
        serve(l, cfd, &ss, len);
}

static void listener_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    jsond_watch_frame f;
    jsond_watch_enter(&f, "accept", NULL);
    accept_one(arg, fd);
    jsond_watch_leave(&f);
}

/* ---- binding ---------------------------------------------------------- */

/* A unix socket file left by a process that died is removed; one that still
 * answers belongs to a live server and is left alone. The probe never
 * blocks the loop: a nonblocking connect to a live server whose backlog is
 * full says EAGAIN (live), not a wait; ECONNREFUSED means nobody listens. */
static int unix_stale(const jsond_addr *a)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int stale = connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno == ECONNREFUSED;
    close(fd);
    return stale;
}

static int bind_listener(listener *l, jsond_errors *errs)
{
    const jsond_addr *a = &l->cfg->address;
    const char *path = jsond_addr_unix_path(a), *what = NULL;
    char text[160];
    jsond_addr_format(a, text, sizeof text);
    int family = a->ss.ss_family, one = 1;
    l->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0)
        goto fail;
    if (family != AF_UNIX)
        setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* [::] must not also take IPv4: the default config binds 0.0.0.0 too. */
    if (family == AF_INET6 && setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
        goto fail;
    if (bind(l->fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        if (family != AF_UNIX || errno != EADDRINUSE)
            goto fail;
        /* Only a stale socket is replaced: a file, say, put there since the
         * config was checked stays, byte for byte. */
        if (jsond_addr_unix_check(a, &what) < 0 || !unix_stale(a)) {
            errno = EADDRINUSE;
            goto fail;
        }
        unlink_socket(path, 0, 0);
        if (bind(l->fd, (const struct sockaddr *)&a->ss, a->len) < 0)
            goto fail;
    }
    if (family == AF_UNIX) {
        struct stat st;
        if (lstat(path, &st) == 0) {
            l->unlink_path = 1;
            l->dev = st.st_dev;
            l->ino = st.st_ino;
        }
    }
    if (listen(l->fd, SOMAXCONN) < 0)
        goto fail;
    l->bound = *a;
    jsond_addr bound = {.len = sizeof bound.ss};
    if (family != AF_UNIX && getsockname(l->fd, (struct sockaddr *)&bound.ss, &bound.len) == 0) {
        l->bound = bound;
        jsond_addr_format(&bound, text, sizeof text);
    }
    jsond_log(JSOND_LOG_NOTICE, "listening on %s %s", l->cfg->name, text);
    return 0;
fail:
    if (errs && what)
        jsond_errors_add(errs, l->cfg->file, l->cfg->line,
                         "listener %s: cannot listen on %s: %s is there, not a socket",
                         l->cfg->name, text, what);
    else if (errs)
        jsond_errors_add(errs, l->cfg->file, l->cfg->line, "listener %s: cannot listen on %s: %s",
                         l->cfg->name, text, strerror(errno));
    return -1;
}

/* Closes a listener a reload does not keep, saying so, as its opening was. */
static void stop_listening(listener *l, const char *why)
{
    char text[160];
    jsond_log(JSOND_LOG_NOTICE, "stopped listening on %s %s%s", l->cfg->name,
              jsond_addr_format(&l->bound, text, sizeof text), why);
    listener_free(l);
}

/* Serves the passed socket srv->given[k] for l. */
static void adopt_listener(listener *l, ssize_t k)
{
    const given *g = &l->srv->given[k];
    l->fd = g->fd;
    l->given = k;
    l->bound = g->addr;
    char text[160];
    if (l->cfg->has_address &&
        strcmp(jsond_addr_format(&l->cfg->address, text, sizeof text), g->text) != 0)
        jsond_log(JSOND_LOG_WARNING,
                  "listener %s: serving the socket passed in on %s, not its address %s",
                  l->cfg->name, g->text, text);
    jsond_log(JSOND_LOG_NOTICE, "listening on %s %s (passed in as fd %d, named %s)", l->cfg->name,
              g->text, (int)g->fd, g->name);
}

/* A listener for `lc`, accepting on the passed socket srv->given[k], or, k
 * < 0, on one bound here; NULL with the reason in errs. */
static listener *listener_open(jsond_server *srv, const cfg_listen *lc, ssize_t k,
                               jsond_errors *errs)
{
    listener *l = calloc(1, sizeof *l);
    if (!l) {
        if (errs)
            jsond_errors_add(errs, lc->file, lc->line, "listener %s: out of memory", lc->name);
        return NULL;
    }
    l->srv = srv;
    l->cfg = lc;
    l->fd = -1;
    l->given = -1;
    if (k >= 0)
        adopt_listener(l, k);
    else if (bind_listener(l, errs) < 0)
        goto fail;
    l->ev = event_new(srv->base, l->fd, EV_READ | EV_PERSIST, listener_accept_cb, l);
    if (!l->ev || (!srv->draining && event_add(l->ev, NULL) < 0)) {
        if (errs)
            jsond_errors_add(errs, lc->file, lc->line, "listener %s: cannot watch its socket",
                             lc->name);
        goto fail;
    }
    return l;
fail:
    listener_free(l);
    return NULL;
}

/* The open listener, not yet `taken` by another of the new config's
 * listeners, that `lc` keeps in matching pass `pass`, or -1. Pass 0: the
 * same configured address and name (several listeners may say port 0 on one
 * host); 1: a bound address that is what `lc` asks for (the config now
 * names the port that port 0 got); 2: the same configured address. The one
 * found is marked taken. */
static ssize_t find_listener(listener **ls, size_t n, char *taken, const cfg_listen *lc, int pass)
{
    for (size_t i = 0; i < n; i++) {
        if (!ls[i] || taken[i] || ls[i]->given >= 0)
            continue;
        int match = pass == 1 ? jsond_addr_equal(&ls[i]->bound, &lc->address)
                              : jsond_addr_equal(&ls[i]->cfg->address, &lc->address) &&
                                    (pass == 2 || strcmp(ls[i]->cfg->name, lc->name) == 0);
        if (match) {
            taken[i] = 1;
            return (ssize_t)i;
        }
    }
    return -1;
}

/* Which passed socket each of `cfg`'s listeners serves (gv[i], -1 for
 * none): the socket named like the listener (FileDescriptorName=), else,
 * for a socket whose name no listener has, the listener with its address.
 * A socket no listener takes is an error: its clients would wait in a
 * backlog nobody accepts from. Returns 0, or -1 with the reasons in errs. */
static int match_given(const jsond_server *srv, const jsond_config *cfg, ssize_t *gv,
                       jsond_errors *errs)
{
    size_t n = cfg->nlistens;
    int failed = 0;
    for (size_t i = 0; i < n; i++)
        gv[i] = -1;
    for (int by_address = 0; by_address < 2; by_address++) {
        for (size_t k = 0; k < srv->ngiven; k++) {
            const given *g = &srv->given[k];
            size_t i;
            for (i = 0; i < n && strcmp(cfg->listens[i].name, g->name) != 0; i++)
                ;
            if (by_address != (i == n))
                continue;
            if (by_address) {
                char text[160];
                for (i = 0; i < n; i++)
                    if (gv[i] < 0 && cfg->listens[i].has_address &&
                        strcmp(jsond_addr_format(&cfg->listens[i].address, text, sizeof text),
                               g->text) == 0)
                        break;
            }
            if (i < n && gv[i] < 0) {
                gv[i] = (ssize_t)k;
                continue;
            }
            failed = 1;
            if (i < n)
                jsond_errors_add(errs, cfg->files[0], 0,
                                 "listener %s: two sockets passed in are named for it (fds %d "
                                 "and %d)",
                                 cfg->listens[i].name, (int)srv->given[gv[i]].fd, (int)g->fd);
            else
                jsond_errors_add(errs, cfg->files[0], 0,
                                 "the socket passed in as fd %d (%s, named %s) matches no "
                                 "listener: name a [listen] section like it, or give one its "
                                 "address",
                                 (int)g->fd, g->text, g->name);
        }
    }
    return failed ? -1 : 0;
}

/* The current listener serving passed socket k, marked taken, or -1. */
static ssize_t find_adopted(listener **ls, size_t n, char *taken, ssize_t k)
{
    for (size_t i = 0; i < n; i++) {
        if (ls[i] && !taken[i] && ls[i]->given == k) {
            taken[i] = 1;
            return (ssize_t)i;
        }
    }
    return -1;
}

/* Makes the listeners of `cfg` out of the current ones: a listener whose
 * address is unchanged keeps its socket (no connection attempt is refused
 * across a reload), new addresses are bound first, and only when every one
 * is bound do removed ones close. A passed socket goes to the listener
 * that matches it, and is never closed. On failure nothing has changed. */
static int switch_listeners(jsond_server *srv, jsond_config *cfg, jsond_errors *errs,
                            jsond_reload_summary *sum)
{
    size_t n = cfg->nlistens, serving = 0;
    listener **ls = calloc(n ? n : 1, sizeof(listener *));
    ssize_t *kept = calloc(n ? n : 1, sizeof *kept);
    ssize_t *gv = calloc(n ? n : 1, sizeof *gv);
    char *taken = calloc(srv->nls ? srv->nls : 1, 1);
    int failed = !ls || !kept || !gv || !taken;
    if (failed)
        jsond_errors_add(errs, cfg->files[0], 0, "out of memory");
    else if (match_given(srv, cfg, gv, errs) < 0)
        failed = 1;
    /* A config that would close every listener serves nothing: refused,
     * at start and on a reload alike (the old config stays). */
    for (size_t i = 0; !failed && i < n; i++)
        serving += cfg->listens[i].has_address || gv[i] >= 0;
    if (!failed && !serving) {
        jsond_errors_add(errs, cfg->files[0], 0,
                         "no listener has an address: this config would serve nothing");
        failed = 1;
    }
    for (size_t i = 0; !failed && i < n; i++)
        kept[i] = gv[i] >= 0 ? find_adopted(srv->ls, srv->nls, taken, gv[i]) : -1;
    for (int pass = 0; !failed && pass < 3; pass++)
        for (size_t i = 0; i < n; i++)
            if (kept[i] < 0 && gv[i] < 0 && cfg->listens[i].has_address)
                kept[i] = find_listener(srv->ls, srv->nls, taken, &cfg->listens[i], pass);
    for (size_t i = 0; !failed && i < n; i++) {
        const cfg_listen *lc = &cfg->listens[i];
        if (kept[i] >= 0 || (!lc->has_address && gv[i] < 0))
            continue;
        /* Bind them all, so one run reports every address that fails. */
        if (!(ls[i] = listener_open(srv, lc, gv[i], errs)))
            failed = 1;
    }
    free(gv);
    if (failed) {
        for (size_t i = 0; ls && i < n; i++)
            if (ls[i])
                stop_listening(ls[i], " (another listener failed)");
        free(ls);
        free(kept);
        free(taken);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const cfg_listen *lc = &cfg->listens[i];
        if (kept[i] >= 0) {
            ls[i] = srv->ls[kept[i]];
            srv->ls[kept[i]] = NULL;
            ls[i]->cfg = lc; /* new connections get the new keys */
            sum->listeners_kept++;
        } else if (ls[i]) {
            sum->listeners_opened++;
        } else {
            jsond_log(JSOND_LOG_WARNING, "listener %s has no address and no socket: ignored",
                      lc->name);
        }
    }
    for (size_t i = 0; i < srv->nls; i++) {
        if (srv->ls[i]) {
            stop_listening(srv->ls[i], "");
            sum->listeners_closed++;
        }
    }
    free(srv->ls);
    free(kept);
    free(taken);
    srv->ls = ls;
    srv->nls = n;
    return 0;
}

/* ---- pools ------------------------------------------------------------- */

static jsond_pool *find_pool(jsond_pool *const *pools, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(jsond_pool_name(pools[i]), name) == 0)
            return pools[i];
    return NULL;
}

/* What a config's pools become, before anything is swapped in. A pool
 * whose threads grow has grown already (undone on abort); the rest of each
 * resize cannot fail, and is done at commit. */
typedef struct pool_plan {
    jsond_pool **by_index; /* one per pool of the config */
    jsond_pool **fresh;    /* those started for it */
    size_t nfresh;
    unsigned *grown_from; /* per pool of the config: its threads before it grew, or 0 */
    char *changed;        /* per pool of the config: a running pool with new sizes */
    size_t npools;
    unsigned resized, removed;
} pool_plan;

static void plan_abort(pool_plan *p)
{
    for (size_t i = 0; i < p->nfresh; i++)
        jsond_pool_free(p->fresh[i]); /* idle: no job was ever given to it */
    /* A shrink back to threads it had cannot fail; the extra ones retire. */
    for (size_t i = 0; p->grown_from && i < p->npools; i++) {
        if (p->grown_from[i]) {
            jsond_pool_stats st;
            jsond_pool_get_stats(p->by_index[i], &st);
            (void)jsond_pool_resize(p->by_index[i], p->grown_from[i], st.queue_limit);
        }
    }
    free(p->fresh);
    free(p->grown_from);
    free(p->changed);
    free(p->by_index);
    memset(p, 0, sizeof *p);
}

/* Matches the pools of `cfg` with the running ones by name. A new name
 * starts a pool (even when a removed pool of that name still finishes its
 * queue); a running pool keeps its threads and its queue, and is resized
 * when its sizes changed. On failure nothing has changed. */
static int plan_pools(jsond_server *srv, const jsond_config *cfg, pool_plan *p, jsond_errors *errs)
{
    memset(p, 0, sizeof *p);
    size_t n = cfg->npools ? cfg->npools : 1;
    p->npools = cfg->npools;
    p->by_index = calloc(n, sizeof(jsond_pool *));
    p->fresh = calloc(n, sizeof(jsond_pool *));
    p->grown_from = calloc(n, sizeof(unsigned));
    p->changed = calloc(n, 1);
    if (!p->by_index || !p->fresh || !p->grown_from || !p->changed) {
        jsond_errors_add(errs, cfg->files[0], 0, "out of memory");
        plan_abort(p);
        return -1;
    }
    int failed = 0;
    for (size_t i = 0; i < cfg->npools; i++) {
        const cfg_pool *cp = &cfg->pools[i];
        const char *file = cp->file ? cp->file : cfg->files[0];
        jsond_pool *old = find_pool(srv->pools, srv->npools, cp->name);
        if (old) {
            jsond_pool_stats st;
            jsond_pool_get_stats(old, &st);
            p->by_index[i] = old;
            if (st.threads == cp->threads && st.queue_limit == cp->queue_limit)
                continue;
            p->resized++;
            p->changed[i] = 1;
            if (cp->threads <= st.threads)
                continue;
            if (jsond_pool_resize(old, cp->threads, st.queue_limit) < 0) {
                jsond_errors_add(errs, file, cp->line, "cannot grow pool '%s' to %u threads: %s",
                                 cp->name, cp->threads, strerror(errno));
                failed = 1;
                continue;
            }
            p->grown_from[i] = st.threads;
            continue;
        }
        jsond_pool *pool = jsond_pool_new(srv->inbox, cp->name, cp->threads, cp->queue_limit);
        if (!pool) {
            jsond_errors_add(errs, file, cp->line, "cannot start pool '%s': %s", cp->name,
                             strerror(errno));
            failed = 1;
            continue;
        }
        p->by_index[i] = p->fresh[p->nfresh++] = pool;
    }
    for (size_t i = 0; i < srv->npools; i++)
        if (!jsond_config_pool(cfg, jsond_pool_name(srv->pools[i])))
            p->removed++;
    if (failed) {
        plan_abort(p);
        return -1;
    }
    return 0;
}

/* Puts the plan in force: resizes, and removed pools stop taking work and
 * wait in `retired` (room made beforehand) until their queues run out.
 * Cannot fail. */
static void plan_commit(jsond_server *srv, const jsond_config *cfg, pool_plan *p,
                        jsond_reload_summary *sum)
{
    for (size_t i = 0; i < cfg->npools; i++) {
        const cfg_pool *cp = &cfg->pools[i];
        /* A shrink, a new queue_limit, or the rest of a growth. */
        if (p->changed[i])
            (void)jsond_pool_resize(p->by_index[i], cp->threads, cp->queue_limit);
    }
    for (size_t i = 0; i < srv->npools; i++) {
        jsond_pool *pool = srv->pools[i];
        if (jsond_config_pool(cfg, jsond_pool_name(pool)))
            continue;
        jsond_pool_drain(pool);
        srv->retired[srv->nretired++] = pool;
    }
    sum->pools_added = (unsigned)p->nfresh;
    sum->pools_resized = p->resized;
    sum->pools_removed = p->removed;
    free(p->fresh);
    free(p->grown_from);
    free(p->changed);
    free(srv->pools);
    srv->pools = p->by_index;
    srv->npools = cfg->npools;
    srv->env.pools = srv->pools;
    srv->stats.pools = srv->pools;
    srv->stats.npools = srv->npools;
    reap_retired(srv); /* watches the removed ones until their threads are gone */
}

/* Puts `cfg`'s pools and listeners in force, or neither. */
static int switch_config(jsond_server *srv, jsond_config *cfg, jsond_errors *errs,
                         jsond_reload_summary *sum)
{
    pool_plan plan;
    if (plan_pools(srv, cfg, &plan, errs) < 0)
        return -1;
    jsond_pool **room =
        plan.removed ? realloc(srv->retired, (srv->nretired + plan.removed) * sizeof(jsond_pool *))
                     : srv->retired;
    if (room)
        srv->retired = room; /* the same pools, with room */
    if ((plan.removed && !room) || switch_listeners(srv, cfg, errs, sum) < 0) {
        if (plan.removed && !room)
            jsond_errors_add(errs, cfg->files[0], 0, "out of memory");
        plan_abort(&plan);
        return -1;
    }
    plan_commit(srv, cfg, &plan, sum);
    return 0;
}

static void log_abandoned(jsond_job *job, void *arg)
{
    jsond_log(JSOND_LOG_WARNING, "abandoning a worker of pool %s running route %s",
              jsond_pool_name(arg), jsond_req_job_route(job));
}

/* Stops the pools and frees each once its threads are joined, or, when a
 * worker is still running (stuck in legacy code past shutdown_timeout),
 * abandons it: its workers may still use it, the inbox and the requests
 * they hold. Returns 1 when a pool was abandoned: the inbox stays then. */
static int pools_free(jsond_server *srv)
{
    int abandoned_any = 0;
    for (size_t i = 0; i < srv->npools + srv->nretired; i++) {
        jsond_pool *pool = i < srv->npools ? srv->pools[i] : srv->retired[i - srv->npools];
        jsond_pool_drain(pool);
        if (jsond_pool_idle(pool)) {
            jsond_pool_free(pool);
            continue;
        }
        jsond_pool_running(pool, log_abandoned, pool);
        jsond_pool_abandon(pool);
        abandoned_any = 1;
    }
    if (abandoned_any)
        return 1; /* the arrays stay: the abandoned are in them */
    /* The last jobs' completions, never run: their requests are released. */
    jsond_inbox_free(srv->inbox);
    srv->inbox = NULL;
    free(srv->pools);
    free(srv->retired);
    srv->pools = srv->retired = NULL;
    srv->npools = srv->nretired = 0;
    return 0;
}

/* A loop callback over stall_warning: logged once and counted. */
static void stalled(const char *route, const char *what, uint64_t ns, void *arg)
{
    jsond_server *srv = arg;
    jsond_log(JSOND_LOG_WARNING, "slow callback: %.1f ms in %s, route %s (stall_warning %u ms)",
              (double)ns / 1e6, what, route ? route : "none", srv->cfg->server.stall_warning_ms);
    jsond_stats_stall(&srv->stats, route, ns);
}

static void set_config(jsond_server *srv, jsond_config *cfg)
{
    jsond_config *old = srv->cfg;
    srv->cfg = jsond_config_ref(cfg);
    jsond_config_unref(old); /* freed when its last connection and request let go */
    srv->max_conns = cfg->server.max_connections;
    jsond_watch_set_stall(srv->watch, cfg->server.stall_warning_ms);
    if (srv->max_conns_cap && srv->max_conns_cap < srv->max_conns)
        srv->max_conns = srv->max_conns_cap;
}

/* Takes the passed sockets: each must be a listening stream socket; it is
 * made nonblocking (accept must never wait) and close-on-exec (exec:
 * children must not hold the port). Closed by the server's free, whatever
 * happens. */
static int take_given(jsond_server *srv, const jsond_config *cfg, const jsond_socket *socks,
                      size_t n, jsond_errors *errs)
{
    if (n && !(srv->given = calloc(n, sizeof *srv->given))) {
        for (size_t k = 0; k < n; k++)
            close(socks[k].fd);
        jsond_errors_add(errs, cfg->files[0], 0, "out of memory");
        return -1;
    }
    int failed = 0;
    for (size_t k = 0; k < n; k++) {
        given *g = &srv->given[srv->ngiven++];
        g->fd = socks[k].fd;
        g->name = strdup(socks[k].name ? socks[k].name : "");
        g->addr.len = sizeof g->addr.ss;
        int type = 0, listening = 0;
        socklen_t len = sizeof type;
        if (!g->name) {
            jsond_errors_add(errs, cfg->files[0], 0, "out of memory");
            failed = 1;
        } else if (getsockopt(g->fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM ||
                   getsockopt(g->fd, SOL_SOCKET, SO_ACCEPTCONN, &listening,
                              &(socklen_t){sizeof listening}) < 0 ||
                   !listening ||
                   getsockname(g->fd, (struct sockaddr *)&g->addr.ss, &g->addr.len) < 0) {
            jsond_errors_add(errs, cfg->files[0], 0,
                             "the socket passed in as fd %d (named %s) is not a listening "
                             "stream socket",
                             (int)g->fd, g->name);
            failed = 1;
        } else if (evutil_make_socket_nonblocking(g->fd) < 0 ||
                   evutil_make_socket_closeonexec(g->fd) < 0) {
            jsond_errors_add(errs, cfg->files[0], 0, "the socket passed in as fd %d: %s",
                             (int)g->fd, strerror(errno));
            failed = 1;
        } else {
            jsond_addr_format(&g->addr, g->text, sizeof g->text);
        }
    }
    return failed ? -1 : 0;
}

jsond_server *jsond_server_new(struct event_base *base, jsond_config *cfg, unsigned max_connections,
                               const jsond_socket *sockets, size_t nsockets, jsond_errors *errs)
{
    jsond_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        for (size_t k = 0; k < nsockets; k++)
            close(sockets[k].fd);
        return NULL;
    }
    jsond_alloc_install();
    srv->base = base;
    if (take_given(srv, cfg, sockets, nsockets, errs) < 0)
        goto fail;
    srv->max_conns_cap = max_connections;
    jsond_reload_summary sum = {0};
    if (jsond_stats_init(&srv->stats) < 0)
        goto fail;
    srv->backoff = evtimer_new(base, backoff_cb, srv);
    srv->timeouts = jsond_timeouts_new(base);
    srv->inbox = jsond_inbox_new(base);
    srv->pool_check = evtimer_new(base, pool_check_cb, srv);
    srv->env = (jsond_req_env){base, &srv->stats, srv->timeouts, srv->inbox, NULL};
    srv->watch = jsond_watch_new(cfg->server.stall_warning_ms, stalled, srv);
    if (!srv->backoff || !srv->timeouts || !srv->pool_check || !srv->watch) {
        jsond_errors_add(errs, cfg->files[0], 0, "out of memory");
        goto fail;
    }
    if (!srv->inbox) {
        jsond_errors_add(errs, cfg->files[0], 0, "cannot make the loop's inbox: %s",
                         strerror(errno));
        goto fail;
    }
    if (switch_config(srv, cfg, errs, &sum) < 0)
        goto fail;
    set_config(srv, cfg);
    jsond_context_set(JSOND_CTX_LOOP);
    jsond_watch_attach(srv->watch);
    return srv;
fail:
    jsond_server_free(srv);
    return NULL;
}

int jsond_server_reload(jsond_server *srv, jsond_config *cfg, jsond_reload_summary *sum,
                        jsond_errors *errs)
{
    memset(sum, 0, sizeof *sum);
    if (switch_config(srv, cfg, errs, sum) < 0)
        return -1;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const cfg_route *old = jsond_config_route(srv->cfg, cfg->routes[i].name);
        if (!old)
            sum->routes_added++;
        else if (!jsond_config_route_equal(old, &cfg->routes[i]))
            sum->routes_changed++;
    }
    for (size_t i = 0; i < srv->cfg->nroutes; i++)
        if (!jsond_config_route(cfg, srv->cfg->routes[i].name))
            sum->routes_removed++;
    set_config(srv, cfg);
    return 0;
}

/* ---- stopping --------------------------------------------------------- */

static void cut_all(jsond_server *srv)
{
    while (srv->conns)
        jsond_conn_close(srv->conns->c, JSOND_CONN_CUT);
}

static void drain_timer(jsond_server *srv)
{
    if (srv->stats.conns.open)
        jsond_log(JSOND_LOG_WARNING, "shutdown_timeout: cutting %u connections",
                  srv->stats.conns.open);
    cut_all(srv);
    /* Workers still running are abandoned by the free that follows. */
    if (srv->drained) {
        void (*done)(void *) = srv->drained;
        srv->drained = NULL;
        done(srv->drained_arg);
    }
}

static void drain_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_watch_frame f;
    jsond_watch_enter(&f, "shutdown timer", NULL);
    drain_timer(arg);
    jsond_watch_leave(&f);
}

static void drained_now_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_watch_frame f;
    jsond_watch_enter(&f, "drain check", NULL);
    finish_drain(arg);
    jsond_watch_leave(&f);
}

static void pool_check_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_watch_frame f;
    jsond_watch_enter(&f, "pool check", NULL);
    reap_retired(arg);
    finish_drain(arg);
    jsond_watch_leave(&f);
}

void jsond_server_shutdown(jsond_server *srv, void (*done)(void *arg), void *arg)
{
    if (srv->draining)
        return;
    srv->draining = 1;
    srv->stats.draining = 1;
    srv->drained = done;
    srv->drained_arg = arg;
    event_del(srv->backoff);
    for (size_t i = 0; i < srv->nls; i++) {
        listener_free(srv->ls[i]);
        srv->ls[i] = NULL;
    }
    /* Queued jobs still run; a request that would queue more is told the
     * server is shutting down. */
    for (size_t i = 0; i < srv->npools; i++)
        jsond_pool_drain(srv->pools[i]);
    for (node *n = srv->conns, *next; n; n = next) {
        next = n->next; /* the shutdown may close and unlink n */
        jsond_conn_shutdown(n->c);
    }
    unsigned ms = srv->cfg->server.shutdown_timeout_ms;
    if (srv->stats.conns.open)
        jsond_log(JSOND_LOG_NOTICE, "waiting for %u replies in progress", srv->stats.conns.open);
    if (ms) {
        struct timeval tv = jsond_timer_tv(ms);
        srv->drain_timer = evtimer_new(srv->base, drain_timer_cb, srv);
        if (!srv->drain_timer || event_add(srv->drain_timer, &tv) < 0)
            jsond_log(JSOND_LOG_ERROR, "cannot arm the shutdown_timeout timer: waiting for "
                                       "the replies in progress without a limit");
    }
    /* Reported from the loop, never from inside the caller. */
    srv->drain_check = evtimer_new(srv->base, drained_now_cb, srv);
    if (srv->drain_check)
        event_active(srv->drain_check, EV_TIMEOUT, 1);
    else
        finish_drain(srv); /* out of memory: report now rather than never */
}

void jsond_server_free(jsond_server *srv)
{
    if (!srv)
        return;
    srv->drained = NULL;
    cut_all(srv);
    for (refusal *r = srv->refusals, *next; r; r = next) {
        next = r->next;
        refusal_free(r);
    }
    for (size_t i = 0; i < srv->nls; i++)
        listener_free(srv->ls[i]);
    free(srv->ls);
    srv->ls = NULL;
    srv->nls = 0;
    for (size_t k = 0; k < srv->ngiven; k++) {
        close(srv->given[k].fd);
        free(srv->given[k].name);
    }
    free(srv->given);
    srv->given = NULL;
    srv->ngiven = 0;
    if (srv->drain_timer)
        event_free(srv->drain_timer);
    if (srv->drain_check)
        event_free(srv->drain_check);
    if (srv->pool_check)
        event_free(srv->pool_check);
    if (srv->backoff)
        event_free(srv->backoff);
    srv->drain_timer = srv->drain_check = srv->pool_check = srv->backoff = NULL;
    jsond_watch_free(srv->watch); /* the watchdog stops before anything else goes */
    srv->watch = NULL;
    int kept = pools_free(srv);
    /* Every request this thread will free is freed by now. */
    jsond_req_spare_drop();
    if (kept) {
        /* What the workers may touch stays: the pools, the inbox, this
         * struct (their requests' environment) and the requests' configs. */
        abandoned = srv;
        jsond_alloc_thread_done();
        return;
    }
    jsond_inbox_free(srv->inbox);
    jsond_stats_fini(&srv->stats);
    jsond_timeouts_free(srv->timeouts);
    jsond_config_unref(srv->cfg);
    free(srv);
    jsond_alloc_thread_done();
}

int jsond_server_watchdog(jsond_server *srv, int signo)
{
    return jsond_watch_start(srv->watch, signo);
}

int jsond_server_fresh(const jsond_server *srv, unsigned max_ms)
{
    return jsond_watch_fresh(srv->watch, max_ms);
}

void jsond_server_get_stats(const jsond_server *srv, jsond_server_stats *st)
{
    *st = srv->stats.conns;
    st->requests = srv->stats.requests;
    st->queued = 0;
    for (size_t i = 0; i < srv->npools; i++) {
        jsond_pool_stats ps;
        jsond_pool_get_stats(srv->pools[i], &ps);
        st->queued += ps.queued;
    }
}
