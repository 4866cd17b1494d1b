/* conn.c: a connection's life: push, drain, close without losing output.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "output.h"
#include "router.h"
#include "timeout.h"

/* Bounded work per read event while lingering, so a peer streaming garbage
 * at us cannot hold the loop. */
#define DISCARD_READS 16

typedef enum conn_state {
    REPLYING,  /* a reply is being made or written */
    LINGERING, /* output sent and shut; discarding input until EOF */
} conn_state;

struct jsond_conn {
    evutil_socket_t fd;
    struct event_base *base;
    conn_state state;
    jsond_config *cfg;
    const cfg_listen *lst;
    char peer[64];
    jsond_output *out;
    jsond_req *req; /* the reply being made, until handed to the output */
    int reply_queued;
    struct event *read_ev;
    struct event *linger_timer;
    jsond_conn_closed_fn closed;
    void *closed_arg;
};

static const char *const end_names[] = {"done", "dropped", "reset", "cut"};

void jsond_conn_close(jsond_conn *c, jsond_conn_end how)
{
    jsond_log(JSOND_LOG_DEBUG, "connection from %s closed (%s, %llu bytes out)", c->peer,
              end_names[how], (unsigned long long)jsond_output_sent(c->out));
    c->closed(c, how, jsond_output_sent(c->out), c->closed_arg);
    if (c->req)
        jsond_req_cancel(c->req);
    jsond_output_free(c->out);
    if (c->read_ev)
        event_free(c->read_ev);
    if (c->linger_timer)
        event_free(c->linger_timer);
    close(c->fd);
    jsond_config_unref(c->cfg);
    free(c);
}

static void conn_discard_cb(evutil_socket_t fd, short what, void *arg)
{
    jsond_conn *c = arg;
    if (what & EV_TIMEOUT) {
        jsond_conn_close(c, JSOND_CONN_DONE);
        return;
    }
    char buf[16384];
    for (int i = 0; i < DISCARD_READS; i++) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        jsond_conn_close(c, JSOND_CONN_DONE); /* end-of-stream, or the peer reset */
        return;
    }
}

/* 1 when the peer has acknowledged every byte we sent. */
static int all_acked(evutil_socket_t fd)
{
    int queued;
    return ioctl(fd, SIOCOUTQ, &queued) == 0 && queued == 0;
}

/* The closing rule. Output is drained when this runs. */
static void begin_close(jsond_conn *c)
{
    shutdown(c->fd, SHUT_WR);
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    /* Close at once on end-of-stream or an error, or when nothing is pending
     * and the peer has every byte. If bytes are still in flight, input that
     * arrives before they are acknowledged would make close() send a reset
     * that destroys them, so wait for end-of-stream as if input were
     * pending. */
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
        (n < 0 && all_acked(c->fd))) {
        jsond_conn_close(c, JSOND_CONN_DONE);
        return;
    }
    c->read_ev = event_new(c->base, c->fd, EV_READ | EV_PERSIST, conn_discard_cb, c);
    c->linger_timer = evtimer_new(c->base, conn_discard_cb, c);
    if (!c->read_ev || !c->linger_timer || event_add(c->read_ev, NULL) < 0) {
        jsond_conn_close(c, JSOND_CONN_DONE);
        return;
    }
    unsigned ms = c->cfg->server.linger_timeout_ms;
    if (ms) {
        struct timeval tv = jsond_ms_tv(ms);
        event_add(c->linger_timer, &tv);
    }
    c->state = LINGERING;
}

static void conn_output_cb(jsond_output *out, jsond_output_event ev, void *arg)
{
    (void)out;
    jsond_conn *c = arg;
    switch (ev) {
    case JSOND_OUTPUT_DRAINED:
        if (c->reply_queued && !c->lst->requests)
            begin_close(c);
        break;
    case JSOND_OUTPUT_TIMEOUT:
        jsond_log(JSOND_LOG_INFO, "dropped %s: it took nothing for %u ms", c->peer,
                  c->cfg->server.write_timeout_ms);
        jsond_conn_close(c, JSOND_CONN_DROPPED);
        break;
    case JSOND_OUTPUT_ERROR:
        jsond_conn_close(c, JSOND_CONN_RESET);
        break;
    }
}

static const char oom_reply[] =
    "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";

/* Serializes a JSON reply as one compact line. */
static int queue_json(jsond_output *out, const json_t *reply)
{
    char *text = reply ? json_dumps(reply, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (!text)
        return jsond_output_write(out, oom_reply, sizeof oom_reply - 1);
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the terminator: one write for the whole line */
    int r = jsond_output_write(out, text, len + 1);
    free(text);
    return r;
}

static void conn_reply_cb(jsond_req *req, void *arg)
{
    jsond_conn *c = arg;
    int r;
    c->req = NULL;
    if (req->ops) {
        r = jsond_output_produce(c->out, req->ops, req->self);
        req->ops = NULL; /* the output owns the producer now */
        if (r == 0)
            r = jsond_output_write(c->out, "\n", 1);
    } else {
        r = queue_json(c->out, req->reply);
    }
    jsond_req_free(req);
    c->reply_queued = 1;
    if (r < 0) {
        jsond_log(JSOND_LOG_ERROR, "cannot queue the reply to %s", c->peer);
        jsond_conn_close(c, JSOND_CONN_RESET);
    }
}

/* Runs the on_connect route. The reply may come back before this returns. */
static void push(jsond_conn *c)
{
    jsond_code code;
    jsond_req *req = jsond_router_route(c->cfg, c->lst->on_connect, NULL, conn_reply_cb, c, &code);
    if (!req) {
        json_t *err = json_pack("{s:{s:s,s:s}}", "error", "code", jsond_code_name(code), "message",
                                "cannot run the on_connect route");
        int r = queue_json(c->out, err);
        json_decref(err);
        c->reply_queued = 1;
        if (r < 0)
            jsond_conn_close(c, JSOND_CONN_RESET);
        return;
    }
    c->req = req;
    jsond_req_run(req);
}

jsond_conn *jsond_conn_new(struct event_base *base, evutil_socket_t fd, const char *peer,
                           jsond_config *cfg, const cfg_listen *lst, jsond_conn_closed_fn closed,
                           void *arg)
{
    jsond_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->base = base;
    c->state = REPLYING;
    c->cfg = jsond_config_ref(cfg);
    c->lst = lst;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->closed = closed;
    c->closed_arg = arg;
    jsond_output_opts opts = {cfg->server.output_buffer, cfg->server.write_timeout_ms};
    c->out = jsond_output_new(base, fd, &opts, conn_output_cb, c);
    if (!c->out) {
        jsond_config_unref(c->cfg);
        close(fd);
        free(c);
        return NULL;
    }
    return c;
}

void jsond_conn_start(jsond_conn *c)
{
    if (c->lst->on_connect) {
        push(c);
    } else {
        c->reply_queued = 1;
        begin_close(c);
    }
}

void jsond_conn_shutdown(jsond_conn *c)
{
    if (c->state == LINGERING)
        jsond_conn_close(c, JSOND_CONN_DONE);
}
