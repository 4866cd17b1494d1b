/* conn.h: one client connection, from accept to close.
 *
 * A connection runs its listener's on_connect route, hands the reply to its
 * output, and closes by the closing rule (DESIGN.md, "Closing a
 * connection"): drain, shutdown(SHUT_WR), discard pending input until
 * end-of-stream or linger_timeout, close. Loop thread only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_CONN_H
#define JSOND_CONN_H

#include <event2/event.h>
#include <stdint.h>

#include "config.h"

typedef struct jsond_conn jsond_conn;

/* How a connection ended, for the server's counters. */
typedef enum jsond_conn_end {
    JSOND_CONN_DONE,    /* closed by the closing rule */
    JSOND_CONN_DROPPED, /* the peer took nothing for write_timeout */
    JSOND_CONN_RESET,   /* the peer went away mid-reply */
    JSOND_CONN_CUT,     /* cut by the server (shutdown_timeout) */
} jsond_conn_end;

/* Called once, as the connection closes, just before it is freed. */
typedef void (*jsond_conn_closed_fn)(jsond_conn *c, jsond_conn_end how, uint64_t bytes_out,
                                     void *arg);

/* Takes over the accepted, nonblocking socket `fd` (closed with the
 * connection) to serve it by `lst` of `cfg` (a reference is held). `peer`
 * names the client in logs. NULL on failure (fd closed). */
jsond_conn *jsond_conn_new(struct event_base *base, evutil_socket_t fd, const char *peer,
                           jsond_config *cfg, const cfg_listen *lst, jsond_conn_closed_fn closed,
                           void *arg);

/* Starts serving. The connection may close (and `closed` run) before this
 * returns, so the caller must be ready for that first. */
void jsond_conn_start(jsond_conn *c);

/* The server is shutting down: a connection with no reply in progress
 * closes now; one mid-reply finishes first. */
void jsond_conn_shutdown(jsond_conn *c);

/* Closes at once, counted as `how`. */
void jsond_conn_close(jsond_conn *c, jsond_conn_end how);

#endif /* JSOND_CONN_H */
