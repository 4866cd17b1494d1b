/* conn.c: a connection's life: requests in, replies out in order, and a
 * close that never loses output.
 *
 * Each request line becomes a slot in a FIFO; a slot holds one reply per
 * call (a batch has several). Handlers fill slots in any order; a single
 * reply at the head goes to the output once complete, and a batch at the
 * head becomes a producer that writes its members in order as they finish,
 * so replies leave in request order. max_pipeline bounds the calls in
 * flight (batch members count): a batch's members start as room allows,
 * and reading stops while any wait, while the output is full, or at the
 * bound. It resumes from a deferred event, never from inside a handler's
 * reply.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "addr.h"
#include "conn.h"
#include "dump.h"
#include "encode.h"
#include "handler.h"
#include "output.h"
#include "proto.h"
#include "router.h"
#include "timeout.h"
#include "watch.h"

/* Bytes read per readable event: bounded work per callback, so a client
 * streaming requests cannot hold the loop. */
#define READ_SLICE ((size_t)64 * 1024)
/* Reads per event while discarding input during a linger. */
#define DISCARD_READS 16
/* Batch members started, and written, per pass: a 64 KB line can hold
 * thousands of calls, and one callback must not run them all. */
#define BATCH_BURST 64

typedef struct slot slot;

/* One call's reply, once its handler has given it. */
typedef struct reply {
    slot *s;
    jsond_proto_call *call;
    jsond_req *req;    /* running, until it replies */
    int given;         /* the outcome below is here */
    int counted;       /* in the connection's calls in flight */
    int begun;         /* a batch member whose bytes have started */
    json_t *doc;       /* the reply document (`wrap`: the handler's result), or */
    int wrap;          /* doc goes out in the call's envelope (jsond_proto_dump_result) */
    const char *fixed; /* a fixed reply, written at once (see give_fixed), or */
    size_t fixed_len;
    struct evbuffer *bytes;        /* a batch member's, serialized when given, or */
    const jsond_producer_ops *ops; /* a producer, with the envelope around it */
    void *self;
    char *prefix, *suffix;
} reply;

/* One request line: a single call, or a JSON-RPC batch. A batch at the head
 * of the queue becomes a producer of the output (streaming): it writes each
 * member as soon as it and every member before it are done. */
struct slot {
    slot *next;
    jsond_conn *c;
    reply *replies; /* &one, or a batch's */
    reply one;
    size_t started; /* calls dispatched so far */
    size_t owed;    /* started calls not answered yet (+1 while a line is filled) */
    size_t turn;    /* streaming: the next member to write */
    size_t written; /* streaming: replies written (not notifications) */
    int streaming;
    jsond_request request; /* last: push_slot zeroes what comes before it */
};

typedef enum conn_state {
    SERVING,   /* reading requests, or making the push reply */
    CLOSING,   /* no more requests: finish the replies, then the closing rule */
    LINGERING, /* output sent and shut; discarding input until EOF */
} conn_state;

struct jsond_conn {
    evutil_socket_t fd;
    struct event_base *base;
    conn_state state;
    jsond_config *cfg; /* the snapshot at accept: the connection's settings */
    const cfg_listen *lst;
    jsond_config *const *current; /* the config in force: requests route on it */
    jsond_stats *stats;
    const jsond_req_env *env; /* what its requests share */
    jsond_timeouts *timeouts; /* the env's */
    jsond_addr addr;          /* the peer's, named in logs as peer_name() formats it */
    char peer[64];            /* "" until a log line needs it */
    size_t pushed;            /* bytes of the push reply sent from the accept callback */
    jsond_output *out;
    struct evbuffer *in;
    size_t scanned;          /* bytes of `in` known to hold no '\n' */
    struct event *read_ev;   /* reading requests, or discarding while lingering */
    struct event *hup_ev;    /* not reading: a reset still ends the connection, */
    evutil_socket_t hup_fd;  /* watched on a duplicate of fd (or -1) */
    struct event *resume_ev; /* deferred: parse what is buffered, re-arm reading */
    struct event *timer;     /* idle_timeout while serving, linger_timeout after */
    slot *head, *tail;       /* lines whose replies are not in the output yet */
    slot *spare;             /* a freed slot kept for the next line */
    slot *pending;           /* a batch with members not started yet */
    slot *batch;             /* the batch the output is streaming */
    int batch_burst;         /* it stopped at its burst: wake it next pass */
    unsigned calls;          /* calls started and not written yet: max_pipeline */
    int eof;                 /* the client shut its side: no more input */
    int draining;            /* the server is shutting down */
    int rpc_seen;            /* the client has sent a JSON-RPC request */
    int processing;          /* in process(): lines are being run */
    /* Set deep inside a reply's path, where closing would free the
     * connection under its callers; the resume event closes it. */
    int doomed;
    jsond_conn_end doom_how;
    jsond_conn_closed_fn closed;
    void *closed_arg;
    /* Where read_ev, resume_ev and timer live: no allocation each. */
    struct event read_store, resume_store, timer_store;
};

static const char *const end_names[] = {"done", "dropped", "reset", "cut"};

/* Formatting an address costs about as much as the rest of a push: done
 * only for a log line that is written. */
static void format_peer(const jsond_addr *a, char *buf, size_t size)
{
    if (a->ss.ss_family == AF_UNIX)
        snprintf(buf, size, "unix");
    else
        jsond_addr_format(a, buf, size);
}

static const char *peer_name(jsond_conn *c)
{
    if (!c->peer[0])
        format_peer(&c->addr, c->peer, sizeof c->peer);
    return c->peer;
}

static void log_closed(const char *peer, jsond_conn_end how, unsigned long long bytes_out)
{
    jsond_log(JSOND_LOG_DEBUG, "connection from %s closed (%s, %llu bytes out)", peer,
              end_names[how], bytes_out);
}

/* A call leaves the connection's count once its reply is in the output. */
static void retire(reply *r)
{
    if (r->counted) {
        r->counted = 0;
        r->s->c->calls--;
    }
}

static void drop_outcome(reply *r)
{
    if (r->ops)
        r->ops->stop(r->self);
    r->ops = NULL;
    json_decref(r->doc);
    r->doc = NULL;
    r->wrap = 0;
    r->fixed = NULL;
    if (r->bytes)
        evbuffer_free(r->bytes);
    r->bytes = NULL;
    free(r->prefix);
    free(r->suffix);
    r->prefix = r->suffix = NULL;
}

static void slot_free(slot *s)
{
    jsond_conn *c = s->c;
    for (size_t i = 0; i < s->request.ncalls; i++) {
        reply *r = &s->replies[i];
        if (r->req)
            jsond_req_cancel(r->req);
        retire(r);
        drop_outcome(r);
    }
    if (c->pending == s)
        c->pending = NULL;
    if (c->batch == s)
        c->batch = NULL;
    if (s->replies != &s->one)
        free(s->replies);
    jsond_request_fini(&s->request);
    /* Pipelined lines take a slot each, one after another: keeping one
     * spares an allocation and calloc's slow path per request. */
    if (!c->spare)
        c->spare = s;
    else
        free(s);
}

/* Stops watching for a reset while paused (see pause_reading). */
static void unwatch_hangup(jsond_conn *c)
{
    if (c->hup_ev) {
        event_free(c->hup_ev);
        c->hup_ev = NULL;
    }
    if (c->hup_fd >= 0) {
        close(c->hup_fd);
        c->hup_fd = -1;
    }
}

/* Releases everything the connection holds, whatever it got to. */
static void conn_free(jsond_conn *c)
{
    while (c->head) {
        slot *s = c->head;
        c->head = s->next;
        slot_free(s);
    }
    jsond_output_free(c->out); /* stops a streaming batch: its slot goes */
    free(c->spare);
    if (c->in)
        evbuffer_free(c->in);
    if (c->read_ev)
        event_del(c->read_ev);
    unwatch_hangup(c);
    if (c->resume_ev)
        event_del(c->resume_ev);
    if (c->timer)
        event_del(c->timer);
    close(c->fd);
    jsond_config_unref(c->cfg);
    free(c);
}

void jsond_conn_close(jsond_conn *c, jsond_conn_end how)
{
    if (jsond_log_get_level() >= JSOND_LOG_DEBUG)
        log_closed(peer_name(c), how, c->pushed + jsond_output_sent(c->out));
    c->closed(c, how, c->closed_arg);
    conn_free(c);
}

static void schedule_resume(jsond_conn *c)
{
    event_active(c->resume_ev, EV_TIMEOUT, 1);
}

static void doom(jsond_conn *c, jsond_conn_end how)
{
    if (!c->doomed) {
        c->doomed = 1;
        c->doom_how = how;
    }
    schedule_resume(c);
}

/* A timer that cannot be armed would leave the connection waiting forever:
 * it closes instead. */
static void arm_timer(jsond_conn *c, unsigned ms)
{
    if (!ms) {
        event_del(c->timer);
    } else if (jsond_timeouts_add(c->timeouts, c->timer, ms) < 0) {
        jsond_log(JSOND_LOG_ERROR, "%s: cannot arm a timer: closing", peer_name(c));
        doom(c, JSOND_CONN_RESET);
    }
}

/* Reading paused: the socket is still watched, so a client that resets
 * while its requests wait is gone at once, not at their deadlines. libevent
 * reports a reset (EPOLLERR) as readable and writable, never as EV_CLOSED
 * alone, and a level-triggered read would fire for as long as unread
 * requests wait: so the watch is edge-triggered, on a duplicate of the
 * socket (libevent refuses to mix edge- and level-triggered events on one
 * descriptor, and the output's write event is level-triggered). It fires
 * once per arrival while paused. Without a descriptor to spare, the
 * deadlines still bound the wait. */
static void conn_hup_cb(evutil_socket_t fd, short what, void *arg);

static void pause_reading(jsond_conn *c)
{
    event_del(c->read_ev);
    if (c->eof || c->hup_ev)
        return; /* after end-of-stream there is no edge left to see */
    c->hup_fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
    if (c->hup_fd >= 0)
        c->hup_ev = event_new(c->base, c->hup_fd, EV_READ | EV_ET | EV_PERSIST, conn_hup_cb, c);
    if (!c->hup_ev || event_add(c->hup_ev, NULL) < 0) {
        jsond_log(JSOND_LOG_DEBUG, "%s: cannot watch for a reset while paused", peer_name(c));
        unwatch_hangup(c);
    }
}

static int resume_reading(jsond_conn *c)
{
    unwatch_hangup(c);
    return event_add(c->read_ev, NULL);
}

/* ---- closing ---------------------------------------------------------- */

/* The closing rule's question, asked before any shutdown() (whose FIN
 * would count as unacknowledged): 1 to close now, 0 to linger. Input left
 * unread makes close() send a reset, which can destroy the replies on
 * their way; so can input that arrives before the peer has acknowledged
 * them all. So: close now only when no input is pending and the peer has
 * every byte. One getsockopt() tells both, from the socket's memory: the
 * receive queue and its backlog hold no input (nor a FIN: that costs a
 * linger that sees end-of-stream at once), and for TCP the write queue
 * holds no unacknowledged byte, for a unix socket the peer has read them
 * all. A socket that cannot say (a kernel before 4.6) lingers. */
static int close_now(evutil_socket_t fd, const cfg_listen *lst)
{
    uint32_t m[SK_MEMINFO_VARS];
    socklen_t len = sizeof m;
    /* A kernel may know fewer fields than these headers: the ones read
     * here are enough. */
    if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, m, &len) < 0 ||
        len < (SK_MEMINFO_BACKLOG + 1) * sizeof *m)
        return 0;
    int unacked =
        lst->address.ss.ss_family == AF_UNIX ? SK_MEMINFO_WMEM_ALLOC : SK_MEMINFO_WMEM_QUEUED;
    return m[SK_MEMINFO_RMEM_ALLOC] == 0 && m[SK_MEMINFO_BACKLOG] == 0 && m[unacked] == 0;
}

/* The closing rule. Output is drained when this runs. */
static void begin_close(jsond_conn *c)
{
    if (c->eof || close_now(c->fd, c->lst)) {
        /* close() sends the FIN itself: no shutdown() first. */
        jsond_conn_close(c, JSOND_CONN_DONE);
        return;
    }
    shutdown(c->fd, SHUT_WR);
    c->state = LINGERING;
    event_del(c->resume_ev);
    if (resume_reading(c) < 0) {
        jsond_conn_close(c, JSOND_CONN_DONE);
        return;
    }
    arm_timer(c, c->cfg->server.linger_timeout_ms);
}

/* Done with requests: the closing rule runs once every reply is out. */
static void stop_requests(jsond_conn *c)
{
    if (c->state == SERVING)
        c->state = CLOSING;
    pause_reading(c);
    event_del(c->timer);
    schedule_resume(c);
}

int jsond_conn_discard(evutil_socket_t fd)
{
    char buf[16384];
    for (int i = 0; i < DISCARD_READS; i++) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        return -1; /* end-of-stream, or the peer reset */
    }
    return 1;
}

/* ---- serializing ------------------------------------------------------ */

/* The reply that stands in when even an error reply cannot be made (out of
 * memory): shaped by the protocol the call speaks, its id unknown. */
static const char *oom_text(const jsond_proto_call *call)
{
    return call->rpc ? "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32603,\"message\":\"out of "
                       "memory\",\"data\":{\"code\":\"internal\"}},\"id\":null}"
                     : "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
}

/* Appends `r`'s document while it fits the dumper's buffer: a handler's
 * result in its envelope, or an error reply as it is. 1: it does not fit. */
static int dump_doc(jsond_dumper *d, const reply *r)
{
    return r->wrap ? jsond_proto_dump_result(d, r->call, r->doc) : jsond_dump(d, r->doc);
}

/* A document too large for the dumper's buffer goes out through the
 * encoder as a producer, written into the output as room allows, so that
 * its text never exists whole. Out of memory the document is dropped: the
 * reply says so. */
static void produce_doc(reply *r)
{
    jsond_encoder *e = jsond_encoder_new(r->doc);
    if (e && (!r->wrap || jsond_proto_wrap(r->call, &r->prefix, &r->suffix) == 0)) {
        r->ops = &jsond_encoder_producer;
        r->self = e;
    } else {
        jsond_encoder_free(e);
    }
    json_decref(r->doc);
    r->doc = NULL;
    r->wrap = 0;
}

/* Appends `r`'s bytes to `dst` (a batch member that fits, or the reply
 * that stands in when out of memory). */
static int dump_to(struct evbuffer *dst, reply *r)
{
    if (r->bytes)
        return evbuffer_add_buffer(dst, r->bytes);
    const char *text = oom_text(r->call);
    return evbuffer_add(dst, text, strlen(text));
}

/* ---- replies, in order ------------------------------------------------ */

/* Writes an envelope's part; NULL is none. */
static int write_part(jsond_output *out, const char *part)
{
    return part ? jsond_output_write(out, part, strlen(part)) : 0;
}

/* Writes `r`'s reply, which is not a document small enough for the
 * dumper (see write_reply). */
static int write_body(jsond_output *out, reply *r)
{
    if (r->fixed) {
        int failed = write_part(out, r->prefix) < 0;
        failed = failed || jsond_output_write(out, r->fixed, r->fixed_len) < 0;
        return failed ? -1 : write_part(out, r->suffix);
    }
    if (r->bytes)
        return jsond_output_write_buffer(out, r->bytes);
    if (!r->ops) {
        const char *text = oom_text(r->call);
        return jsond_output_write(out, text, strlen(text));
    }
    const jsond_producer_ops *ops = r->ops;
    r->ops = NULL; /* the output owns the producer from here, even on failure */
    if (write_part(out, r->prefix) < 0) {
        ops->stop(r->self);
        return -1;
    }
    if (jsond_output_produce(out, ops, r->self) < 0)
        return -1;
    return write_part(out, r->suffix);
}

/* Writes `r`'s reply and the line end after it: a document that fits the
 * dumper in one write, a larger one through the encoder. */
static int write_reply(jsond_output *out, reply *r)
{
    if (r->doc) {
        jsond_dumper d;
        jsond_dumper_init_bounded(&d, NULL, JSOND_DUMP_BUF);
        int rc = dump_doc(&d, r);
        if (rc == 0)
            rc = jsond_dump_bytes(&d, "\n", 1);
        if (rc == 0)
            return jsond_output_write(out, d.buf, d.n);
        if (rc > 0)
            produce_doc(r);
        else
            drop_outcome(r); /* said as out of memory */
    }
    return write_body(out, r) < 0 ? -1 : jsond_output_write(out, "\n", 1);
}

/* A batch's members, written by the output in order as they are done: the
 * batch is one JSON array, with nothing at all if every member was a
 * notification. */
static jsond_produce batch_proceed(void *self, struct evbuffer *buf, size_t want)
{
    slot *s = self;
    jsond_conn *c = s->c;
    size_t start = evbuffer_get_length(buf);
    for (int n = 0; s->turn < s->request.ncalls; n++) {
        reply *r = &s->replies[s->turn];
        if (!r->given)
            return JSOND_PRODUCE_WAIT; /* given() wakes us */
        if (n == BATCH_BURST) {
            c->batch_burst = 1; /* the resume pass wakes us */
            schedule_resume(c);
            return JSOND_PRODUCE_WAIT;
        }
        if (r->call->silent) {
            drop_outcome(r);
        } else {
            if (!r->begun) {
                r->begun = 1;
                if (r->doc)
                    produce_doc(r); /* it did not fit when given */
                if (r->ops && r->ops->bind)
                    r->ops->bind(r->self, c->out); /* its feeder wakes the batch */
                if (evbuffer_add(buf, s->written++ ? "," : "[", 1) < 0 ||
                    (r->ops ? r->prefix && evbuffer_add(buf, r->prefix, strlen(r->prefix)) < 0
                            : dump_to(buf, r) < 0))
                    return JSOND_PRODUCE_ERROR;
            }
            if (r->ops) {
                size_t have = evbuffer_get_length(buf) - start;
                jsond_produce rc = r->ops->proceed(r->self, buf, want > have ? want - have : 1);
                if (rc != JSOND_PRODUCE_DONE)
                    return rc; /* a member that waits is woken like the batch */
                r->ops->stop(r->self);
                r->ops = NULL;
                if (r->suffix && evbuffer_add(buf, r->suffix, strlen(r->suffix)) < 0)
                    return JSOND_PRODUCE_ERROR;
            }
            drop_outcome(r);
        }
        retire(r);
        s->turn++;
        if (c->pending == s)
            schedule_resume(c); /* a call fewer in flight: room to start one */
        if (s->turn < s->request.ncalls && evbuffer_get_length(buf) - start >= want)
            return JSOND_PRODUCE_MORE;
    }
    if (s->written && evbuffer_add(buf, "]\n", 2) < 0)
        return JSOND_PRODUCE_ERROR;
    return JSOND_PRODUCE_DONE;
}

static void batch_stop(void *self)
{
    slot *s = self;
    s->c->batch = NULL;
    slot_free(s);
}

static const jsond_producer_ops batch_ops = {.proceed = batch_proceed, .stop = batch_stop};

/* Moves the slots at the head to the output: complete single replies, and
 * a batch as soon as it is at the head. */
static void flush(jsond_conn *c)
{
    while (c->head && (c->head->request.batch || c->head->owed == 0)) {
        slot *s = c->head;
        c->head = s->next;
        if (!c->head)
            c->tail = NULL;
        int rc;
        if (s->request.batch) {
            s->streaming = 1;
            c->batch = s;
            rc = jsond_output_produce(c->out, &batch_ops, s); /* frees s on failure */
        } else {
            reply *r = &s->replies[0];
            rc = r->call->silent ? 0 : write_reply(c->out, r);
            slot_free(s);
        }
        if (rc < 0) {
            jsond_log(JSOND_LOG_ERROR, "cannot queue a reply to %s", peer_name(c));
            doom(c, JSOND_CONN_RESET);
            return;
        }
    }
    /* Within process(), which re-arms the timer and goes on with the
     * pass itself, there is nothing more to do per reply. */
    if (c->processing)
        return;
    /* Idleness counts from the last reply, not from a request that took
     * longer than idle_timeout to answer. */
    if (!c->head && !c->batch && c->state == SERVING && c->lst->requests)
        arm_timer(c, c->cfg->server.idle_timeout_ms);
    schedule_resume(c);
}

/* The outcome of `r` is here: a single reply at the head goes out, a
 * streaming batch is woken when it waits for this very member. */
static void given(reply *r)
{
    slot *s = r->s;
    r->given = 1;
    s->owed--;
    if (s->request.batch) {
        /* A member may wait behind slower ones: as bytes it holds a tenth
         * of its tree's memory, and a notification's reply none at all. One
         * larger than the output buffer stays a tree, encoded when written,
         * so that its text never exists whole. */
        if (r->call->silent) {
            drop_outcome(r);
        } else if (r->doc && (r->bytes = evbuffer_new())) {
            jsond_dumper d;
            jsond_dumper_init_bounded(&d, r->bytes, s->c->cfg->server.output_buffer);
            if (dump_doc(&d, r) == 0 && evbuffer_add(r->bytes, d.buf, d.n) == 0) {
                json_decref(r->doc);
                r->doc = NULL;
                r->wrap = 0;
            } else {
                evbuffer_free(r->bytes); /* the doc is tried again when written */
                r->bytes = NULL;
            }
        }
    }
    if (s->streaming) {
        if (r == &s->replies[s->turn])
            jsond_output_wake(s->c->out);
    } else if (s->owed == 0 && s == s->c->head) {
        flush(s->c);
    }
}

/* Gives an error reply; `route` names the stats bucket (NULL: unknown). */
static void give_error(reply *r, const char *route, jsond_code code, int params,
                       const char *message)
{
    jsond_stats_error(r->s->c->stats, route, code);
    r->doc = jsond_proto_error(r->call, code, params, message);
    given(r);
}

static void reply_done_cb(jsond_req *req, void *arg)
{
    reply *r = arg;
    r->req = NULL;
    jsond_outcome *o = &req->out;
    if (o->failed) {
        give_error(r, req->route->name, o->code, 1, o->message);
    } else if (!o->ops && !o->reply) {
        /* NULL is how a handler says it ran out of memory. */
        give_error(r, req->route->name, JSOND_INTERNAL, 0, "out of memory");
    } else {
        if (o->ops) {
            r->ops = o->ops;
            r->self = o->self;
            o->ops = NULL;
            if (jsond_proto_wrap(r->call, &r->prefix, &r->suffix) < 0) {
                r->ops->stop(r->self);
                r->ops = NULL;
            }
        } else {
            r->doc = o->reply;
            r->wrap = 1;
            o->reply = NULL;
        }
        /* Out of memory on any path above leaves no doc: it is said so. */
        given(r);
    }
    jsond_req_release(req);
}

/* Gives the fixed reply of `h` (see jsond_handler), wrapped for JSON-RPC.
 * Its bytes belong to the config in force, which a reload may free before
 * a reply waiting behind others is written: only a reply that the caller
 * writes before returning to the loop (a single call at the head of the
 * queue) keeps the pointer; any other gets a copy. */
static void give_fixed(reply *r, const jsond_handler *h)
{
    slot *s = r->s;
    r->fixed = h->fixed;
    r->fixed_len = h->fixed_len;
    if (r->call->rpc && jsond_proto_wrap(r->call, &r->prefix, &r->suffix) < 0)
        r->fixed = NULL; /* said as out of memory */
    if (r->fixed && (s->request.batch || s != s->c->head)) {
        r->bytes = evbuffer_new();
        if (!r->bytes || (r->prefix && evbuffer_add(r->bytes, r->prefix, strlen(r->prefix)) < 0) ||
            evbuffer_add(r->bytes, r->fixed, r->fixed_len) < 0 ||
            (r->suffix && evbuffer_add(r->bytes, r->suffix, strlen(r->suffix)) < 0)) {
            if (r->bytes)
                evbuffer_free(r->bytes);
            r->bytes = NULL;
        }
        r->fixed = NULL;
        free(r->prefix);
        free(r->suffix);
        r->prefix = r->suffix = NULL;
    }
    given(r);
}

/* The handler of `route` when its reply is fixed and a client of `lst`
 * (NULL: the push, which any route may make) may ask for it, else NULL. */
static const jsond_handler *fixed_handler(const cfg_listen *lst, const cfg_route *route)
{
    if (!route || (lst && !jsond_listen_allows(lst, route->name)))
        return NULL;
    const jsond_handler *h = jsond_handler_of(route);
    return h && h->fixed ? h : NULL;
}

/* Runs one call; its reply may be given before this returns. */
static void dispatch(jsond_conn *c, reply *r, const cfg_listen *lst)
{
    jsond_proto_call *call = r->call;
    r->s->started++;
    r->counted = 1;
    c->calls++;
    if (call->failed) {
        give_error(r, NULL, call->code, 0, call->message);
        return;
    }
    jsond_config *cfg = *c->current;
    const cfg_route *route = jsond_config_route(cfg, call->route);
    const char *bucket = route ? route->name : NULL;
    jsond_stats_request(c->stats, bucket);
    if (c->draining) {
        give_error(r, bucket, JSOND_SHUTTING_DOWN, 0, "the server is shutting down");
        return;
    }
    const jsond_handler *fixed = fixed_handler(lst, route);
    if (fixed) {
        give_fixed(r, fixed);
        return;
    }
    /* No route has an rpc.* name, which JSON-RPC reserves: the config
     * refuses them, so such a method is not found like any other. */
    jsond_code code = JSOND_NOT_FOUND;
    jsond_req *req =
        jsond_router_route(cfg, lst, route, call->args, c->env, reply_done_cb, r, &code);
    call->args = NULL; /* the router took them */
    if (!req) {
        char msg[128] = "no such route";
        if (jsond_config_valid_name(call->route, strlen(call->route)))
            snprintf(msg, sizeof msg, "no route '%s'", call->route);
        give_error(r, bucket, code, 0, code == JSOND_NOT_FOUND ? msg : "out of memory");
        return;
    }
    r->req = req;
    jsond_req_run(req);
}

/* Queues a slot for a request line parsed from `line` under `mode`, or,
 * with `line` NULL, for one empty call that the caller fills in. NULL when
 * out of memory. A single call and its reply live in the slot itself. */
static slot *push_slot(jsond_conn *c, const char *line, size_t len, int mode)
{
    slot *s = c->spare;
    if (s) {
        c->spare = NULL;
        /* The request is set whole below, by its parser or as one call. */
        memset(s, 0, offsetof(slot, request));
    } else if (!(s = calloc(1, sizeof *s))) {
        return NULL;
    }
    if (!line)
        jsond_request_one(&s->request);
    else if (jsond_proto_parse(line, len, mode, &s->request) < 0) {
        free(s);
        return NULL;
    }
    size_t n = s->request.ncalls;
    s->replies = n == 1 ? &s->one : calloc(n, sizeof *s->replies);
    if (!s->replies) {
        jsond_request_fini(&s->request);
        free(s);
        return NULL;
    }
    s->c = c;
    s->owed = n;
    for (size_t i = 0; i < n; i++) {
        s->replies[i].s = s;
        s->replies[i].call = &s->request.calls[i];
    }
    if (c->tail)
        c->tail->next = s;
    else
        c->head = s;
    c->tail = s;
    return s;
}

/* Starts the members of the pending batch while calls may run: fewer than
 * max_pipeline in flight, room in the output, at most a burst per pass. */
static void start_members(jsond_conn *c)
{
    slot *s = c->pending;
    for (int n = 0; s && s->started < s->request.ncalls; n++) {
        if (c->calls >= c->cfg->server.max_pipeline || !jsond_output_room(c->out))
            return; /* a member written, or room, resumes us */
        if (n == BATCH_BURST) {
            schedule_resume(c);
            return;
        }
        dispatch(c, &s->replies[s->started], c->lst);
    }
    c->pending = NULL;
}

/* Queues one request line and runs its call, or starts its batch. -1: out
 * of memory. */
static int run_line(jsond_conn *c, const char *line, size_t len, const cfg_listen *lst)
{
    int mode = (c->rpc_seen ? JSOND_PROTO_RPC_SEEN : 0) |
               (lst && lst->protocol == JSOND_PROTOCOL_JSONRPC ? JSOND_PROTO_RPC_ONLY : 0);
    slot *s = push_slot(c, line, len, mode);
    if (!s)
        return -1;
    c->rpc_seen |= s->request.rpc;
    if (s->request.batch) {
        c->pending = s;
        start_members(c);
        flush(c);
    } else {
        /* Held while the handler runs: a reply given at once must not
         * write and free the slot under us. */
        s->owed++;
        dispatch(c, &s->replies[0], lst);
        s->owed--;
        if (s->owed == 0 && s == c->head)
            flush(c);
    }
    return 0;
}

/* The fast path for what most pipelined traffic is: a plain line that is
 * just a route name, whose route has a fixed reply (see give_fixed), with
 * no reply queued before it. Its bytes go to the output at once, with
 * nothing parsed, allocated or queued; anything else takes the general
 * path. 1 when taken, 0 when not, -1 when the output failed. Inline: with
 * the push as a second caller the compiler stopped inlining it into the
 * read loop (+1.7% instructions per pipelined hello, callgrind). */
static inline int run_fixed(jsond_conn *c, const char *line, size_t len)
{
    if (c->head || c->draining || c->rpc_seen || c->lst->protocol == JSOND_PROTOCOL_JSONRPC ||
        len > JSOND_NAME_MAX || !jsond_config_valid_name(line, len))
        return 0;
    char name[JSOND_NAME_MAX + 1];
    memcpy(name, line, len);
    name[len] = '\0';
    const cfg_route *route = jsond_config_route(*c->current, name);
    const jsond_handler *h = fixed_handler(c->lst, route);
    if (!h)
        return 0;
    jsond_stats_request(c->stats, route->name);
    return jsond_output_write(c->out, h->fixed, h->fixed_len + 1) < 0 ? -1 : 1; /* and '\n' */
}

/* The reply to a line over max_request_size; no more requests after it. */
static int too_large(jsond_conn *c)
{
    jsond_log(JSOND_LOG_INFO, "%s sent a request line over %zu bytes: closing", peer_name(c),
              c->cfg->server.max_request_size);
    slot *s = push_slot(c, NULL, 0, 0);
    if (!s)
        return -1;
    /* The line is never parsed, so its id is unknown: the error is shaped by
     * the protocol the client speaks, with id null under JSON-RPC. */
    jsond_proto_call *call = &s->request.calls[0];
    call->rpc = c->rpc_seen || c->lst->protocol == JSOND_PROTOCOL_JSONRPC;
    call->failed = 1;
    call->code = JSOND_TOO_LARGE;
    call->message = "request line too long";
    evbuffer_drain(c->in, evbuffer_get_length(c->in));
    c->scanned = 0;
    stop_requests(c);
    dispatch(c, &s->replies[0], c->lst);
    return 0;
}

/* 1 when no more requests may be started now. */
static int paused(const jsond_conn *c)
{
    return c->calls >= c->cfg->server.max_pipeline || c->pending || jsond_output_full(c->out);
}

/* The next complete line: its length without the line ending in *len and
 * with it in *take. The search resumes where the last one stopped, so a
 * long line arriving in many reads costs one scan, not one per read. */
static int next_line(jsond_conn *c, size_t *len, size_t *take)
{
    size_t buffered = evbuffer_get_length(c->in), eol = 0;
    struct evbuffer_ptr from, p;
    struct evbuffer_iovec first;
    const char *nl;
    /* Pipelined lines mostly end in the first chain: one memchr there
     * costs a third of libevent's search, which starts from a position. */
    if (c->scanned == 0 && evbuffer_peek(c->in, -1, NULL, &first, 1) > 0 &&
        (nl = memchr(first.iov_base, '\n', first.iov_len))) {
        *len = (size_t)(nl - (const char *)first.iov_base);
        *take = *len + 1;
        return 1;
    }
    if (c->scanned >= buffered) {
        p.pos = -1;
    } else if (evbuffer_ptr_set(c->in, &from, c->scanned, EVBUFFER_PTR_SET) < 0) {
        return -1;
    } else {
        p = evbuffer_search_eol(c->in, &from, &eol, EVBUFFER_EOL_LF);
    }
    if (p.pos >= 0) {
        *len = (size_t)p.pos;
        *take = *len + eol;
        return 1;
    }
    c->scanned = buffered;
    if (c->eof && !c->draining && buffered > 0) { /* the last line needs no '\n' */
        *len = *take = buffered;
        return 1;
    }
    return 0;
}

/* Runs the complete lines buffered, as far as back-pressure allows; *ran
 * says whether it ran any. Returns 1 when it stopped for back-pressure, 0
 * when no complete line is left (at end-of-stream a last line without '\n'
 * counts as complete). */
static int process_lines(jsond_conn *c, int *ran)
{
    size_t max = c->cfg->server.max_request_size;
    while (c->state == SERVING && !c->doomed) {
        start_members(c);
        if (paused(c))
            return 1;
        size_t len, take;
        int found = next_line(c, &len, &take);
        if (found <= 0) {
            /* +1: a line of exactly max bytes may still get its '\r' */
            if ((found < 0 || evbuffer_get_length(c->in) > max + 1) && too_large(c) < 0)
                doom(c, JSOND_CONN_RESET);
            return 0;
        }
        if (len > max + 1) {
            if (too_large(c) < 0)
                doom(c, JSOND_CONN_RESET);
            return 0;
        }
        const char *line = (const char *)evbuffer_pullup(c->in, (ev_ssize_t)take);
        if (!line) {
            doom(c, JSOND_CONN_RESET);
            return 0;
        }
        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (len > max) {
            if (too_large(c) < 0)
                doom(c, JSOND_CONN_RESET);
            return 0;
        }
        int blank = 1;
        for (size_t i = 0; i < len && blank; i++)
            blank = line[i] == ' ' || line[i] == '\t';
        if (!blank) {
            *ran = 1;
            int fast = run_fixed(c, line, len);
            if (fast < 0 || (!fast && run_line(c, line, len, c->lst) < 0)) {
                doom(c, JSOND_CONN_RESET);
                return 0;
            }
        }
        evbuffer_drain(c->in, take);
        c->scanned = 0;
    }
    return 0;
}

/* process_lines(), and the idle timer counted from the last line run:
 * armed once per pass, not once per line of a pipelined read. */
static int process(jsond_conn *c)
{
    int ran = 0;
    c->processing = 1;
    int rc = process_lines(c, &ran);
    c->processing = 0;
    if (ran && !c->doomed && c->state == SERVING)
        arm_timer(c, c->cfg->server.idle_timeout_ms);
    return rc;
}

/* Re-evaluates everything after a change: buffered lines, batch members to
 * start, whether to read, whether to close. The only place, with the event
 * callbacks, that closes: reply paths run deep inside handlers and must not
 * free the connection. */
static void conn_resume_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_conn *c = arg;
    if (c->doomed) {
        jsond_conn_close(c, c->doom_how);
        return;
    }
    if (c->state == LINGERING)
        return;
    if (c->batch_burst) {
        c->batch_burst = 0;
        jsond_output_wake(c->out);
    }
    if (c->state == SERVING && !c->lst->requests) {
        c->state = CLOSING; /* push only: the push slot is all there is */
    } else if (c->state == SERVING) {
        int held = process(c);
        if (c->doomed) {
            jsond_conn_close(c, c->doom_how);
            return;
        }
        if (c->state == SERVING) {
            if (!held && (c->eof || c->draining)) {
                stop_requests(c);
            } else if (held || c->draining) {
                pause_reading(c);
            } else if (resume_reading(c) < 0) {
                jsond_log(JSOND_LOG_ERROR, "%s: cannot watch its socket: closing", peer_name(c));
                jsond_conn_close(c, JSOND_CONN_RESET);
                return;
            }
        }
    } else {
        start_members(c); /* a batch read before the end still runs */
    }
    if (c->state == CLOSING && !c->head && jsond_output_idle(c->out))
        begin_close(c);
}

static void conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    jsond_watch_frame f;
    jsond_watch_enter(&f, "resume", NULL);
    conn_resume_run(fd, what, arg);
    jsond_watch_leave(&f);
}

/* ---- events --------------------------------------------------------- */

/* One recv() of up to READ_SLICE bytes straight into the input buffer.
 * evbuffer_read() would ask FIONREAD first and then take at most 4 KB, so a
 * long line would cost a system call more and 16 loop passes per slice. */
static ssize_t read_slice(jsond_conn *c)
{
    struct evbuffer_iovec v[2];
    int nv = evbuffer_reserve_space(c->in, READ_SLICE, v, 2);
    if (nv < 1) {
        errno = ENOMEM;
        return -1;
    }
    struct iovec iov[2];
    size_t room = READ_SLICE;
    for (int i = 0; i < nv; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len < room ? v[i].iov_len : room;
        room -= iov[i].iov_len;
    }
    ssize_t n = readv(c->fd, iov, nv);
    if (n <= 0) {
        evbuffer_commit_space(c->in, v, 0);
        return n;
    }
    size_t left = (size_t)n;
    int used = 0;
    for (; used < nv && left > 0; used++) {
        v[used].iov_len = left < iov[used].iov_len ? left : iov[used].iov_len;
        left -= v[used].iov_len;
    }
    evbuffer_commit_space(c->in, v, used);
    return n;
}

static void conn_read_run(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    jsond_conn *c = arg;
    if (c->state == LINGERING) {
        if (jsond_conn_discard(fd) < 0)
            jsond_conn_close(c, JSOND_CONN_DONE);
        return;
    }
    ssize_t n = read_slice(c);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        jsond_conn_close(c, JSOND_CONN_RESET);
        return;
    }
    if (n == 0) {
        c->eof = 1;
        event_del(c->read_ev);
    }
    c->stats->bytes_in += (uint64_t)n;
    conn_resume_run(fd, 0, c);
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    jsond_watch_frame f;
    jsond_watch_enter(&f, "read", NULL);
    conn_read_run(fd, what, arg);
    jsond_watch_leave(&f);
}

/* The peer hung up while we were not reading: a reset (or an error) means
 * it is gone, and its requests are cancelled now. A plain FIN is a
 * half-close: the replies owed are still sent. */
static void conn_hup_run(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    jsond_conn *c = arg;
    char b;
    int err = 0;
    socklen_t len = sizeof err;
    /* A reset leaves unread input readable: the socket's error says it. */
    ssize_t n = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0
                    ? (errno = err, -1)
                    : recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        jsond_log(JSOND_LOG_DEBUG, "%s went away: %s", peer_name(c), strerror(errno));
        jsond_conn_close(c, JSOND_CONN_RESET);
        return;
    }
    if (n == 0) {
        c->eof = 1; /* nothing unread before the FIN: end-of-stream now */
        unwatch_hangup(c);
        schedule_resume(c);
    }
    /* n > 0: more requests, or a FIN behind them: seen when reading resumes. */
}

static void conn_hup_cb(evutil_socket_t fd, short what, void *arg)
{
    jsond_watch_frame f;
    jsond_watch_enter(&f, "hangup", NULL);
    conn_hup_run(fd, what, arg);
    jsond_watch_leave(&f);
}

static void conn_timer_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    jsond_conn *c = arg;
    if (c->state == LINGERING) {
        jsond_conn_close(c, JSOND_CONN_DONE);
        return;
    }
    if (c->head || !jsond_output_idle(c->out)) {
        /* Requests in flight are not idleness. */
        arm_timer(c, c->cfg->server.idle_timeout_ms);
        return;
    }
    jsond_log(JSOND_LOG_DEBUG, "%s idle for %u ms: closing", peer_name(c),
              c->cfg->server.idle_timeout_ms);
    stop_requests(c);
    conn_resume_run(fd, 0, c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    jsond_watch_frame f;
    jsond_watch_enter(&f, "connection timer", NULL);
    conn_timer_run(fd, what, arg);
    jsond_watch_leave(&f);
}

static void conn_output_cb(jsond_output *out, jsond_output_event ev, void *arg)
{
    (void)out;
    jsond_conn *c = arg;
    switch (ev) {
    case JSOND_OUTPUT_DRAINED:
    case JSOND_OUTPUT_ROOM:
        conn_resume_run(c->fd, 0, c);
        break;
    case JSOND_OUTPUT_TIMEOUT:
        jsond_log(JSOND_LOG_INFO, "dropped %s: it took nothing for %u ms", peer_name(c),
                  c->cfg->server.write_timeout_ms);
        jsond_conn_close(c, JSOND_CONN_DROPPED);
        break;
    case JSOND_OUTPUT_ERROR:
        jsond_conn_close(c, JSOND_CONN_RESET);
        break;
    }
}

/* ---- life ----------------------------------------------------------- */

jsond_conn *jsond_conn_new(struct event_base *base, evutil_socket_t fd, const jsond_addr *peer,
                           jsond_config *cfg, const cfg_listen *lst, jsond_config *const *current,
                           jsond_stats *stats, const jsond_req_env *env,
                           jsond_conn_closed_fn closed, void *arg)
{
    jsond_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->hup_fd = -1;
    c->base = base;
    c->state = SERVING;
    c->cfg = jsond_config_ref(cfg);
    c->lst = lst;
    c->current = current;
    c->stats = stats;
    c->env = env;
    c->timeouts = env->timeouts;
    c->addr = *peer;
    c->closed = closed;
    c->closed_arg = arg;
    jsond_output_opts opts = {cfg->server.output_buffer, cfg->server.write_timeout_ms,
                              &stats->conns.bytes_out, env->timeouts};
    c->out = jsond_output_new(base, fd, &opts, conn_output_cb, c);
    c->in = lst->requests ? evbuffer_new() : NULL; /* a push reads nothing but a linger's junk */
    if (event_assign(&c->read_store, base, fd, EV_READ | EV_PERSIST, conn_read_cb, c) == 0)
        c->read_ev = &c->read_store;
    if (event_assign(&c->resume_store, base, -1, 0, conn_resume_cb, c) == 0)
        c->resume_ev = &c->resume_store;
    if (evtimer_assign(&c->timer_store, base, conn_timer_cb, c) == 0)
        c->timer = &c->timer_store;
    if (!c->out || (lst->requests && !c->in) || !c->read_ev || !c->resume_ev || !c->timer) {
        conn_free(c);
        return NULL;
    }
    if (lst->requests && lst->address.ss.ss_family != AF_UNIX) {
        /* Replies are whole lines, written once: Nagle would only delay them. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return c;
}

int jsond_conn_push(evutil_socket_t fd, const jsond_addr *peer, const jsond_config *cfg,
                    const cfg_listen *lst, jsond_stats *stats, size_t *sent)
{
    *sent = 0;
    if (lst->requests || !lst->on_connect)
        return 0; /* a connection that reads requests is made at once */
    const cfg_route *route = jsond_config_route(cfg, lst->on_connect);
    const jsond_handler *h = fixed_handler(NULL, route);
    if (!h)
        return 0;
    size_t len = h->fixed_len + 1; /* and '\n' */
    ssize_t n = send(fd, h->fixed, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0)
        return 0; /* the connection tries again, and meets any error itself */
    *sent = (size_t)n;
    jsond_stats_request(stats, route->name);
    stats->conns.bytes_out += (unsigned long long)n;
    if ((size_t)n < len || !close_now(fd, lst))
        return 0;
    close(fd);
    if (jsond_log_get_level() >= JSOND_LOG_DEBUG) {
        char name[64];
        format_peer(peer, name, sizeof name);
        log_closed(name, JSOND_CONN_DONE, (unsigned long long)n);
    }
    return 1;
}

void jsond_conn_start(jsond_conn *c, size_t pushed)
{
    if (pushed) {
        /* jsond_conn_push() began a fixed reply: the rest, if any. */
        const jsond_handler *h =
            fixed_handler(NULL, jsond_config_route(*c->current, c->lst->on_connect));
        c->pushed = pushed;
        if (pushed <= h->fixed_len &&
            jsond_output_write(c->out, h->fixed + pushed, h->fixed_len + 1 - pushed) < 0) {
            jsond_conn_close(c, JSOND_CONN_RESET);
            return;
        }
    } else if (c->lst->on_connect) {
        /* The push is a request like any other, without an id; a fixed
         * reply takes the fast path, with nothing parsed or queued. */
        const char *name = c->lst->on_connect;
        size_t len = strlen(name);
        int fast = run_fixed(c, name, len);
        if (fast < 0 || (!fast && run_line(c, name, len, NULL) < 0)) {
            jsond_conn_close(c, JSOND_CONN_RESET);
            return;
        }
    }
    if (c->lst->requests)
        arm_timer(c, c->cfg->server.idle_timeout_ms);
    conn_resume_run(c->fd, 0, c);
}

void jsond_conn_shutdown(jsond_conn *c)
{
    if (c->state == LINGERING) {
        jsond_conn_close(c, JSOND_CONN_DONE);
        return;
    }
    /* Lines read but not parsed yet are answered with shutting_down; the
     * connection closes once its replies are out. */
    c->draining = 1;
    pause_reading(c);
    event_del(c->timer);
    conn_resume_cb(c->fd, 0, c);
}
