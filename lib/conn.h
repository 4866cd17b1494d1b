/* conn.h: one client connection, from accept to close.
 *
 * A connection pushes its listener's on_connect reply, then (requests =
 * yes) reads request lines, runs them, and writes their replies in request
 * order whatever order handlers finish in. It stops reading while its
 * output is full or max_pipeline calls are in flight, so a client that
 * floods requests meets TCP back-pressure. Every close follows the closing
 * rule (DESIGN.md, "Closing a connection"). Loop thread only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_CONN_H
#define JSOND_CONN_H

#include <event2/event.h>

#include "addr.h"
#include "config.h"
#include "req.h"
#include "stats.h"

typedef struct jsond_conn jsond_conn;

/* How a connection ended, for the server's counters. */
typedef enum jsond_conn_end {
    JSOND_CONN_DONE,    /* closed by the closing rule */
    JSOND_CONN_DROPPED, /* the peer took nothing for write_timeout */
    JSOND_CONN_RESET,   /* the peer reset, or a write failed: its requests are cancelled */
    JSOND_CONN_CUT,     /* cut by the server (shutdown_timeout) */
} jsond_conn_end;

/* Called once, as the connection closes, just before it is freed. */
typedef void (*jsond_conn_closed_fn)(jsond_conn *c, jsond_conn_end how, void *arg);

/* Takes over the accepted, nonblocking socket `fd` (closed with the
 * connection) to serve it by `lst` of `cfg` (a reference is held: its
 * settings last the connection's life), counting into `stats`. Each request
 * is routed on `*current`, the config in force when its line is parsed
 * (reloads change it) and run in `env` (the server's: the loop's timer
 * queues, inbox and pools). `peer`, the client's address, names it in logs.
 * NULL on failure (fd closed). */
jsond_conn *jsond_conn_new(struct event_base *base, evutil_socket_t fd, const jsond_addr *peer,
                           jsond_config *cfg, const cfg_listen *lst, jsond_config *const *current,
                           jsond_stats *stats, const jsond_req_env *env,
                           jsond_conn_closed_fn closed, void *arg);

/* A push listener's (requests = no) fixed reply (hello, file:), made from the accept
 * callback as nginx does, before any connection exists: one send() and,
 * when it took every byte and the closing rule allows, close(). Returns 1
 * when that was all (fd closed; the request and its bytes counted in
 * `stats`, the close logged). Returns 0 when the socket needs a connection:
 * the reply is not fixed, or the send() took *sent bytes of it and no more,
 * or the peer's input means the connection must linger; the caller passes
 * *sent to jsond_conn_start(). Loop thread. */
int jsond_conn_push(evutil_socket_t fd, const jsond_addr *peer, const jsond_config *cfg,
                    const cfg_listen *lst, jsond_stats *stats, size_t *sent);

/* Starts serving; `pushed`: the bytes of its push reply jsond_conn_push()
 * sent (0: none, the connection makes its push itself). The connection may
 * close (and `closed` run) before this returns, so the caller must be ready
 * for that first. */
void jsond_conn_start(jsond_conn *c, size_t pushed);

/* The server is shutting down: a connection with nothing in progress closes
 * now; one with replies in progress stops reading, answers lines it has
 * read but not parsed with shutting_down, finishes, then closes. */
void jsond_conn_shutdown(jsond_conn *c);

/* The closing rule's discard: reads and throws away what a peer whose
 * reply is out still sends, at most a bounded amount per call (fairness to
 * the other connections). Returns -1 at end-of-stream or an error (the
 * socket may be closed now), 0 when nothing more is there yet, 1 when the
 * bound was reached with input still coming. Loop thread. */
int jsond_conn_discard(evutil_socket_t fd);

/* Closes at once, counted as `how`. */
void jsond_conn_close(jsond_conn *c, jsond_conn_end how);

#endif /* JSOND_CONN_H */
