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
#include <unistd.h>

#include "conn.h"
#include "jsond.h"
#include "timeout.h"

/* Accepts per readable event: enough to empty a burst, few enough that one
 * busy listener does not starve the connections already open. */
#define ACCEPT_BURST 64
/* After EMFILE/ENFILE, accepting pauses this long before trying again:
 * the listening socket stays readable, so retrying at once would spin. */
#define ACCEPT_BACKOFF_MS 100

typedef struct listener {
    jsond_server *srv;
    const cfg_listen *cfg;
    evutil_socket_t fd;
    struct event *ev;
    int unlink_path; /* a unix socket file we created */
} listener;

typedef struct node {
    struct node *prev, *next;
    jsond_server *srv;
    jsond_conn *c;
} node;

struct jsond_server {
    struct event_base *base;
    jsond_config *cfg;
    listener *ls;
    size_t nls;
    node *conns;
    unsigned max_conns;
    struct event *backoff;
    int paused_logged;
    int draining;
    struct event *drain_timer;
    struct event *drain_check;
    void (*drained)(void *arg);
    void *drained_arg;
    jsond_server_stats st;
};

static void close_listener(listener *l)
{
    if (l->ev) {
        event_free(l->ev);
        l->ev = NULL;
    }
    if (l->fd >= 0) {
        close(l->fd);
        l->fd = -1;
    }
    if (l->unlink_path) {
        unlink(((const struct sockaddr_un *)&l->cfg->address.ss)->sun_path);
        l->unlink_path = 0;
    }
}

/* ---- connections ------------------------------------------------------ */

static void finish_drain(jsond_server *srv)
{
    if (srv->draining && srv->st.open == 0 && srv->drained) {
        void (*done)(void *) = srv->drained;
        srv->drained = NULL;
        done(srv->drained_arg);
    }
}

static void conn_closed_cb(jsond_conn *c, jsond_conn_end how, uint64_t bytes_out, void *arg)
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
    srv->st.open--;
    srv->st.bytes_out += bytes_out;
    switch (how) {
    case JSOND_CONN_DONE:
        break;
    case JSOND_CONN_DROPPED:
        srv->st.dropped++;
        break;
    case JSOND_CONN_RESET:
        srv->st.reset++;
        break;
    case JSOND_CONN_CUT:
        srv->st.cut++;
        break;
    }
    finish_drain(srv);
}

static void serve(listener *l, evutil_socket_t fd, const struct sockaddr_storage *ss, socklen_t len)
{
    jsond_server *srv = l->srv;
    char peer[64] = "unix";
    if (ss->ss_family != AF_UNIX) {
        jsond_addr a = {.len = len};
        memcpy(&a.ss, ss, sizeof a.ss);
        jsond_addr_format(&a, peer, sizeof peer);
    }
    node *n = calloc(1, sizeof *n);
    jsond_conn *c =
        n ? jsond_conn_new(srv->base, fd, peer, srv->cfg, l->cfg, conn_closed_cb, n) : NULL;
    if (!c) {
        jsond_log(JSOND_LOG_ERROR, "out of memory: connection from %s closed", peer);
        if (!n)
            close(fd);
        free(n);
        srv->st.refused++;
        return;
    }
    n->srv = srv;
    n->c = c;
    n->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = n;
    srv->conns = n;
    srv->st.open++;
    srv->st.accepted++;
    jsond_conn_start(c);
}

/* ---- accepting -------------------------------------------------------- */

static void set_accepting(jsond_server *srv, int on)
{
    for (size_t i = 0; i < srv->nls; i++) {
        if (!srv->ls[i].ev)
            continue;
        if (on)
            event_add(srv->ls[i].ev, NULL);
        else
            event_del(srv->ls[i].ev);
    }
}

static void backoff_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    set_accepting(arg, 1);
}

static void pause_accepting(jsond_server *srv, int err)
{
    if (!srv->paused_logged) {
        jsond_log(JSOND_LOG_WARNING, "accept failed: %s; pausing accepts until descriptors free up",
                  strerror(err));
        srv->paused_logged = 1;
    }
    set_accepting(srv, 0);
    struct timeval tv = jsond_ms_tv(ACCEPT_BACKOFF_MS);
    event_add(srv->backoff, &tv);
}

static void listener_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    listener *l = arg;
    jsond_server *srv = l->srv;
    for (int i = 0; i < ACCEPT_BURST && l->ev; i++) {
        struct sockaddr_storage ss = {0}; /* unix peers fill in little */
        socklen_t len = sizeof ss;
        evutil_socket_t cfd =
            accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(srv, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                jsond_log(JSOND_LOG_WARNING, "accept on %s: %s", l->cfg->name, strerror(errno));
            return;
        }
        if (srv->paused_logged) {
            jsond_log(JSOND_LOG_NOTICE, "accepting again");
            srv->paused_logged = 0;
        }
        if (srv->st.open >= srv->max_conns) {
            /* Nothing was read or written: the close is a plain FIN. */
            close(cfd);
            srv->st.refused++;
            continue;
        }
        serve(l, cfd, &ss, len);
    }
}

/* ---- binding ---------------------------------------------------------- */

/* A unix socket file left by a process that died is removed; one that still
 * answers belongs to a live server and is left alone. */
static int unix_stale(const jsond_addr *a)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int stale = connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno == ECONNREFUSED;
    close(fd);
    return stale;
}

static int bind_listener(listener *l, jsond_errors *errs, const char *source)
{
    const jsond_addr *a = &l->cfg->address;
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
        if (family != AF_UNIX || errno != EADDRINUSE || !unix_stale(a))
            goto fail;
        unlink(((const struct sockaddr_un *)&a->ss)->sun_path);
        if (bind(l->fd, (const struct sockaddr *)&a->ss, a->len) < 0)
            goto fail;
    }
    if (family == AF_UNIX)
        l->unlink_path = 1;
    if (listen(l->fd, SOMAXCONN) < 0)
        goto fail;
    jsond_addr bound = {.len = sizeof bound.ss};
    if (getsockname(l->fd, (struct sockaddr *)&bound.ss, &bound.len) == 0 && family != AF_UNIX)
        jsond_addr_format(&bound, text, sizeof text);
    jsond_log(JSOND_LOG_NOTICE, "listening on %s %s", l->cfg->name, text);
    return 0;
fail:
    if (errs)
        jsond_errors_add(errs, source, l->cfg->line, "listener %s: cannot listen on %s: %s",
                         l->cfg->name, text, strerror(errno));
    close_listener(l);
    return -1;
}

jsond_server *jsond_server_new(struct event_base *base, jsond_config *cfg, unsigned max_connections,
                               jsond_errors *errs)
{
    jsond_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    srv->base = base;
    srv->cfg = jsond_config_ref(cfg);
    srv->max_conns = cfg->server.max_connections;
    if (max_connections && max_connections < srv->max_conns)
        srv->max_conns = max_connections;
    srv->ls = calloc(cfg->nlistens ? cfg->nlistens : 1, sizeof *srv->ls);
    srv->backoff = evtimer_new(base, backoff_cb, srv);
    if (!srv->ls || !srv->backoff)
        goto fail;
    int failed = 0;
    for (size_t i = 0; i < cfg->nlistens; i++) {
        listener *l = &srv->ls[srv->nls++];
        l->srv = srv;
        l->cfg = &cfg->listens[i];
        l->fd = -1;
        if (!l->cfg->has_address) {
            jsond_log(JSOND_LOG_WARNING, "listener %s has no address and no socket: ignored",
                      l->cfg->name);
            continue;
        }
        /* Bind them all, so one run reports every address that fails. */
        if (bind_listener(l, errs, cfg->source) < 0) {
            failed = 1;
            continue;
        }
        l->ev = event_new(base, l->fd, EV_READ | EV_PERSIST, listener_accept_cb, l);
        if (!l->ev || event_add(l->ev, NULL) < 0)
            goto fail;
    }
    if (failed)
        goto fail;
    jsond_context_set(JSOND_CTX_LOOP);
    return srv;
fail:
    jsond_server_free(srv);
    return NULL;
}

/* ---- stopping --------------------------------------------------------- */

static void cut_all(jsond_server *srv)
{
    while (srv->conns)
        jsond_conn_close(srv->conns->c, JSOND_CONN_CUT);
}

static void drain_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_server *srv = arg;
    jsond_log(JSOND_LOG_WARNING, "shutdown_timeout: cutting %u connections", srv->st.open);
    cut_all(srv);
}

static void drained_now_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    finish_drain(arg);
}

void jsond_server_shutdown(jsond_server *srv, void (*done)(void *arg), void *arg)
{
    if (srv->draining)
        return;
    srv->draining = 1;
    srv->drained = done;
    srv->drained_arg = arg;
    event_del(srv->backoff);
    for (size_t i = 0; i < srv->nls; i++)
        close_listener(&srv->ls[i]);
    for (node *n = srv->conns, *next; n; n = next) {
        next = n->next; /* the shutdown may close and unlink n */
        jsond_conn_shutdown(n->c);
    }
    unsigned ms = srv->cfg->server.shutdown_timeout_ms;
    if (srv->st.open)
        jsond_log(JSOND_LOG_NOTICE, "waiting for %u replies in progress", srv->st.open);
    if (srv->st.open && ms) {
        struct timeval tv = jsond_ms_tv(ms);
        srv->drain_timer = evtimer_new(srv->base, drain_timer_cb, srv);
        if (srv->drain_timer)
            event_add(srv->drain_timer, &tv);
    }
    /* Reported from the loop, never from inside the caller. */
    srv->drain_check = evtimer_new(srv->base, drained_now_cb, srv);
    if (srv->drain_check)
        event_active(srv->drain_check, EV_TIMEOUT, 1);
}

void jsond_server_free(jsond_server *srv)
{
    if (!srv)
        return;
    srv->drained = NULL;
    cut_all(srv);
    for (size_t i = 0; i < srv->nls; i++)
        close_listener(&srv->ls[i]);
    if (srv->drain_timer)
        event_free(srv->drain_timer);
    if (srv->drain_check)
        event_free(srv->drain_check);
    if (srv->backoff)
        event_free(srv->backoff);
    free(srv->ls);
    jsond_config_unref(srv->cfg);
    free(srv);
}

void jsond_server_get_stats(const jsond_server *srv, jsond_server_stats *st)
{
    *st = srv->st;
}
