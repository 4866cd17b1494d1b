/* jsond.h: the public interface of libjsond.
 *
 * jsond is a JSON-over-TCP server. An event loop owns every socket; handlers
 * never see one. This header is the only one installed: everything a daemon
 * or a handler module needs is declared here, every struct behind it is
 * opaque.
 *
 * Thread rules are stated per function. "Loop thread" is the thread that
 * runs the event base a server was created on; jsond_context() tells any
 * code where it runs. Only the functions declared here are exported.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_H
#define JSOND_H

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define JSOND_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define JSOND_PRINTF(fmt, args)
#endif

/* ---- Version ---------------------------------------------------------- */

/* The library's version string, e.g. "0.1.0". */
const char *jsond_version(void);

/* ---- Context: the colour of the running code -------------------------- */

typedef enum jsond_ctx {
    JSOND_CTX_OTHER = 0, /* a thread jsond does not own (the default) */
    JSOND_CTX_LOOP,      /* the event loop thread: must never block */
    JSOND_CTX_WORKER,    /* a pool thread: may block */
} jsond_ctx;

/* Where the calling thread runs. Any thread; never blocks. */
jsond_ctx jsond_context(void);

/* Marks the calling thread. The server calls this for its loop thread and
 * pools for their workers; a thread starts as JSOND_CTX_OTHER. */
void jsond_context_set(jsond_ctx ctx);

/* Makes libevent thread-aware (evthread_use_pthreads), once per process:
 * pools hand work back to the loop from their threads. Call it before
 * creating the event base a server will use, so the base gets its locks.
 * Any thread; returns 0, or -1 if libevent could not enable threading. */
int jsond_threads_init(void);

/* ---- Logging: one path, a sink the program installs -------------------- */

typedef enum jsond_log_level {
    JSOND_LOG_ERROR = 3, /* values are syslog priorities */
    JSOND_LOG_WARNING = 4,
    JSOND_LOG_NOTICE = 5,
    JSOND_LOG_INFO = 6,
    JSOND_LOG_DEBUG = 7,
} jsond_log_level;

/* Receives every message at or above the current level, already formatted,
 * without a trailing newline. May be called from any thread, concurrently. */
typedef void (*jsond_log_sink)(jsond_log_level level, const char *msg, void *arg);

/* Installs the sink (NULL restores the default: plain lines on stderr). Call
 * before starting threads. */
void jsond_log_set_sink(jsond_log_sink sink, void *arg);

/* Messages below `level` are dropped before formatting. Any thread. */
void jsond_log_set_level(jsond_log_level level);
jsond_log_level jsond_log_get_level(void);

/* Parses "debug", "info", "notice", "warning", "error". Returns 0 on success,
 * -1 for an unknown name. */
int jsond_log_level_parse(const char *name, jsond_log_level *out);
const char *jsond_log_level_name(jsond_log_level level);

void jsond_log(jsond_log_level level, const char *fmt, ...) JSOND_PRINTF(2, 3);
void jsond_vlog(jsond_log_level level, const char *fmt, va_list ap) JSOND_PRINTF(2, 0);

/* ---- Errors: returned, never printed ------------------------------------ */

/* One problem, located. `line` is 0 when no line applies. */
typedef struct jsond_error {
    char file[512];
    int line;
    char text[512];
} jsond_error;

/* An ordered list of problems, so a config check can report all of them. */
typedef struct jsond_errors jsond_errors;

jsond_errors *jsond_errors_new(void);
void jsond_errors_free(jsond_errors *errs);
size_t jsond_errors_count(const jsond_errors *errs);
/* The i-th error, in the order they were found; NULL past the end. */
const jsond_error *jsond_errors_get(const jsond_errors *errs, size_t i);
/* Appends one; `file` may be NULL, and `errs` too (nothing is kept). Returns
 * -1 only when out of memory. */
int jsond_errors_add(jsond_errors *errs, const char *file, int line, const char *fmt, ...)
    JSOND_PRINTF(4, 5);

/* ---- Config: an immutable, reference-counted snapshot ----------------- */

typedef struct jsond_config jsond_config;

/* Reads and validates FILE, and the files its include lines name (relative
 * to FILE's directory). On any problem returns NULL and appends every
 * problem found (not only the first) to `errs`, each naming its own
 * FILE:LINE, in reading order. `errs` may be NULL. */
jsond_config *jsond_config_load(const char *path, jsond_errors *errs);

/* The same, from memory; `name` is used in error messages. Include lines
 * are relative to the current directory (the text has none of its own). */
jsond_config *jsond_config_parse(const char *name, const char *text, size_t len,
                                 jsond_errors *errs);

/* The built-in default config (listen on 0.0.0.0:25000 and [::]:25000, push
 * `hello`). Equals the installed conf/jsond.conf. */
jsond_config *jsond_config_default(void);

/* The text the built-in default is parsed from. */
const char *jsond_config_default_text(void);

/* Reference counting; any thread. unref(NULL) does nothing. */
jsond_config *jsond_config_ref(jsond_config *cfg);
void jsond_config_unref(jsond_config *cfg);

/* 1 when both configs have the same effect (values compared, not source
 * positions), else 0. */
int jsond_config_equal(const jsond_config *a, const jsond_config *b);

/* Logs the effective settings at info level, one line per section. */
void jsond_config_log(const jsond_config *cfg);

/* The file the config was read from, not those it included ("(built-in)"
 * for the default). */
const char *jsond_config_source(const jsond_config *cfg);

/* [server] log_level. */
jsond_log_level jsond_config_log_level(const jsond_config *cfg);

/* [server] max_connections. */
unsigned jsond_config_max_connections(const jsond_config *cfg);

/* ---- Server: listeners and connections on one event loop --------------- */

struct event_base;
typedef struct jsond_server jsond_server;

/* A listening socket the process was handed ready-made (systemd's socket
 * activation): its descriptor, and its name (FileDescriptorName=) or NULL. */
typedef struct jsond_socket {
    int fd;
    const char *name;
} jsond_socket;

/* Binds every listener of `cfg` (a reference is taken) on `base`, whose
 * thread becomes the loop thread. `max_connections` caps the config's value
 * (0: no cap), for a process whose descriptor limit is lower.
 *
 * `sockets` (n of them; names are copied) are served instead of bound: each
 * by the listener named like it, else, if no listener has its name, by the
 * listener with its address. One that no listener takes, now or after a
 * reload, is an error. The server owns their descriptors from the call on,
 * and closes them only when freed.
 *
 * The first server installs jsond's allocator into jansson
 * (json_set_alloc_funcs, process-wide): a per-thread cache of small blocks,
 * each a plain malloc() block, so what json_dumps() returns may still be
 * given to free(). jsond_server_free() frees the calling thread's cache.
 *
 * On failure returns NULL with the reasons in `errs` (may be NULL); nothing
 * stays bound. Logs "listening on NAME ADDR" for each socket, with the port
 * a port of 0 was given, and "(passed in ...)" for a passed one. */
jsond_server *jsond_server_new(struct event_base *base, jsond_config *cfg, unsigned max_connections,
                               const jsond_socket *sockets, size_t nsockets, jsond_errors *errs);

/* What a reload changed, for its log line. Pools are matched by name:
 * resized ones keep their queued work, removed ones finish it first. */
typedef struct jsond_reload_summary {
    unsigned routes_added, routes_removed, routes_changed;
    unsigned listeners_opened, listeners_closed, listeners_kept;
    unsigned pools_added, pools_resized, pools_removed;
} jsond_reload_summary;

/* Puts `cfg` (a reference is taken) in force. Listeners are matched by
 * address: an unchanged address keeps its socket, so no connection attempt
 * is refused; new addresses are bound before anything changes, and one
 * that fails fails the whole reload (-1, reasons in `errs`, the old config
 * untouched). Removed listeners stop accepting; their connections carry
 * on. Requests parsed from now on use `cfg`; requests already running keep
 * the snapshot they hold. Loop thread. */
int jsond_server_reload(jsond_server *srv, jsond_config *cfg, jsond_reload_summary *sum,
                        jsond_errors *errs);

/* Graceful stop: listeners close and idle connections close at once;
 * replies in progress get shutdown_timeout to finish, then are cut. `done`
 * runs on the loop once no connection is left. Loop thread. */
void jsond_server_shutdown(jsond_server *srv, void (*done)(void *arg), void *arg);

/* Closes everything at once (connections still open are counted as cut)
 * and frees the server. NULL is fine. Loop thread. */
void jsond_server_free(jsond_server *srv);

typedef struct jsond_server_stats {
    unsigned long long accepted; /* connections served */
    unsigned long long refused;  /* closed at once: over max_connections */
    unsigned long long dropped;  /* took nothing for write_timeout */
    unsigned long long reset;    /* went away mid-reply */
    unsigned long long cut;      /* still busy when shutdown_timeout ran out */
    unsigned long long bytes_out;
    unsigned open;
    unsigned long long requests; /* requests read (batch members count) */
    unsigned queued;             /* jobs waiting for a thread, in every pool */
} jsond_server_stats;

/* Counters so far. Loop thread. */
void jsond_server_get_stats(const jsond_server *srv, jsond_server_stats *st);

/* The loop's watch. Every loop callback is timed; one longer than the
 * config's stall_warning is logged and counted when it ends, whether or not
 * a watchdog runs. */

/* Starts the server's watchdog thread: it logs a loop that has been in one
 * callback longer than stall_warning, with the route running and, if
 * `signo` is not 0, the loop thread's stack, then again every second until
 * the callback returns. `signo` is a signal the program leaves to jsond:
 * its handler is installed here and the watchdog sends it to the loop
 * thread (it interrupts a system call the loop is in with EINTR). Stacks
 * name functions of the executable only when it is linked with
 * -rdynamic. Loop thread (the calling thread is the one watched), once.
 * Returns 0, or -1 with errno. */
int jsond_server_watchdog(jsond_server *srv, int signo);

/* The heartbeat: 1 if the server's loop is fresh, i.e. not in one callback
 * for more than `max_ms` (a loop waiting for events is fresh), else 0. For
 * a supervisor's keep-alive (systemd's WATCHDOG=1). Any thread, while the
 * server exists; never blocks; works with or without a watchdog. */
int jsond_server_fresh(const jsond_server *srv, unsigned max_ms);

/* ---- Handlers ------------------------------------------------------------ */

/* One request being served: its route, its args, and where its reply goes.
 * Owned by jsond; a handler holds it from the call until it replies. */
typedef struct jsond_req jsond_req;

/* Error codes of the wire protocol (DESIGN.md, "Wire protocol"). */
typedef enum jsond_code {
    JSOND_BAD_REQUEST,
    JSOND_NOT_FOUND,
    JSOND_TOO_LARGE,
    JSOND_BUSY,
    JSOND_TIMEOUT,
    JSOND_HANDLER_FAILED,
    JSOND_WRONG_COLOR,
    JSOND_SHUTTING_DOWN,
    JSOND_INTERNAL,
} jsond_code;

/* "bad_request", "not_found", ... as they appear on the wire. */
const char *jsond_code_name(jsond_code code);

/* An async handler: runs on the loop thread, must not block, and replies
 * now or later with jsond_reply() or jsond_reply_error(), exactly once.
 * `args` is borrowed for the duration of the call (json_incref to keep it). */
typedef void (*jsond_async_fn)(jsond_req *req, json_t *args);

/* A sync handler: plain blocking code, run on a pool thread (its route's
 * pool). It returns its reply (a new reference), or replies itself with
 * jsond_reply_error() or a stream and returns NULL. Returning NULL without
 * replying is answered `internal`. `args` is borrowed for the call. */
typedef json_t *(*jsond_sync_fn)(jsond_req *req, json_t *args);

/* Replies to `req` and steals the reference to `reply`. Any thread: from
 * the loop the reply is handed to the connection at once; from a sync
 * handler's own worker it is taken when the handler returns; from any
 * other thread it is handed to the loop through its inbox. Handlers never
 * write to a socket: the connection serializes and writes the reply on the
 * loop, nonblocking. A reply to a request that was cancelled meanwhile (its
 * deadline passed, its client went away) is discarded. */
void jsond_reply(jsond_req *req, json_t *reply);

/* Replies with an error object {"error": {"code": ..., "message": ...}}.
 * Any thread, as jsond_reply(). */
void jsond_reply_error(jsond_req *req, jsond_code code, const char *fmt, ...) JSOND_PRINTF(3, 4);

/* 1 once nobody wants the reply any more: the request's deadline passed or
 * its client went away. Long sync code polls it to stop early (a
 * cooperative cancel: nothing interrupts a handler). Any thread holding
 * `req`; never blocks. */
int jsond_req_expired(const jsond_req *req);

/* ---- Streaming: one JSON array, item by item ----------------------------
 * For replies too big to build (a legacy generator, a table dump): the
 * client sees one JSON text, "[item,item,...]", whatever its size, and the
 * server's memory stays bounded. A handler calls jsond_stream_begin() once,
 * then jsond_stream_item() per item, then jsond_stream_end(); it replies
 * nothing else (a sync handler returns NULL). Call them from the thread the
 * handler runs on: its worker (sync) or the loop (async).
 *
 * Nothing reaches the client before the first item or the end: an error
 * before that (jsond_reply_error(), or a sync handler that returns without
 * ending the stream) is an ordinary error reply. After it, an error closes
 * the connection mid-array: an incomplete JSON text is the only honest
 * signal left. */

/* Starts the array. Returns 0, or -1 when the request was cancelled or is
 * out of memory (stop, and return NULL). */
int jsond_stream_begin(jsond_req *req);

/* Appends one item (the reference is stolen). On a worker it blocks while
 * the connection's output holds output_buffer bytes or more: back-pressure
 * on legacy code; one such wait lasts at most write_timeout (60 s when it
 * is 0), after which the connection is closed. On the loop it never
 * blocks. Returns 0, or -1 once the client is gone (a reset, a failed
 * write, the write timeout: never a half-close alone) or the request was
 * cancelled: stop producing, and end nothing. */
int jsond_stream_item(jsond_req *req, json_t *item);

/* Closes the array: the reply is complete. Returns 0, or -1 as
 * jsond_stream_item(). */
int jsond_stream_end(jsond_req *req);

/* ---- Calls between routes ------------------------------------------------
 * A handler may call another route of the config its request was resolved
 * on, by name, whatever listener its client came through (a listener's
 * `routes` limit clients, not handlers). The target's `args` and
 * `fixed_args` merge with the `args` given (stolen; NULL means {}) as for a
 * client's request. The reply is the target's JSON value, or an error
 * object as a plain-mode client sees it, {"error": {"code": "busy",
 * "message": "..."}}: `not_found`; `internal` past 8 nested calls;
 * `handler_failed` for a target that streams (only JSON values cross a
 * call); `wrong_color` when the calling route's policy is strict and the
 * target's colour differs from the caller's context (a dual target always
 * matches); a sync target's `busy` and `timeout`. Where the target runs:
 *
 *   from a worker (jsond_call): a sync target, or a dual target's sync
 *   half, runs inline on the calling thread, with no hand-off, so a pool
 *   never waits on itself; an async target runs on the loop (adaptive)
 *   while the worker waits.
 *   from the loop (jsond_call_async): an async target, or a dual target's
 *   async half, runs on the loop; a sync target runs on its route's pool
 *   (adaptive).
 *
 * A call's deadline is its target route's; from a worker, what is left of
 * the caller's when that is earlier. A caller that is cancelled (deadline,
 * client gone) cancels its calls running on the loop: their callbacks run
 * at once with `timeout`. Nested calls do not count against max_pipeline;
 * stats count them per route (calls, adapted, refused_wrong_color). */

/* The blocking form, for code that may block (a sync handler on its
 * worker): returns the target's reply or an error object (a new
 * reference; NULL only when out of memory). On the loop thread it blocks
 * nothing: it is refused with wrong_color, under either policy, and
 * logged with the calling route. */
json_t *jsond_call(jsond_req *req, const char *route, json_t *args);

/* The callback form, for async handlers: `fn(req, reply, arg)` runs on the
 * loop thread exactly once, perhaps before jsond_call_async() returns, with
 * the target's reply or an error object (a new reference, fn's to keep or
 * release; NULL only when out of memory). `req` stays valid until fn has
 * returned, even if it was cancelled meanwhile (its reply is then
 * discarded). Loop thread only: returns 0, or -1 (logged; fn will not run)
 * when called from any other thread. */
typedef void (*jsond_call_fn)(jsond_req *req, json_t *reply, void *arg);
int jsond_call_async(jsond_req *req, const char *route, json_t *args, jsond_call_fn fn, void *arg);

/* The route name this request was routed to. Any thread holding `req`. */
const char *jsond_req_route(const jsond_req *req);

/* For async handlers (a sync one polls jsond_req_expired() instead).
 * A cancel hook: runs on the loop thread when the reply `req` still owes is
 * no longer wanted (the client went away, or the route's deadline passed),
 * at most once, and never after the handler replied. It must release what
 * the handler holds for `req` and reply all the same (jsond_reply(req,
 * NULL) will do): that reply is discarded, but it is what lets go of the
 * handler's hold on the request. Without a hook, a cancelled request waits
 * for the handler's own reply, which is discarded too. */
typedef void (*jsond_cancel_fn)(jsond_req *req, void *arg);

/* Sets the cancel hook of `req` (fn NULL: none), replacing any earlier one.
 * Loop thread, while the reply is owed: from the handler or from a
 * callback it armed. */
void jsond_req_on_cancel(jsond_req *req, jsond_cancel_fn fn, void *arg);

/* A one-shot timer on the loop, for an async handler that replies later
 * (the loop must never block: wait with a timer, not a sleep). */
typedef struct jsond_timer jsond_timer;
typedef void (*jsond_timer_fn)(jsond_req *req, void *arg);

/* Arms a timer: `fn(req, arg)` runs on the loop thread once `ms`
 * milliseconds have passed. Returns its handle, or NULL when it cannot be
 * armed (then reply with an error). The handle belongs to the request and
 * is freed for the handler: just before `fn` runs (so `fn` must not cancel
 * it), by jsond_timer_cancel(), or when the handler replies (a timer never
 * fires after its request's reply). A cancelled request keeps its timers
 * until the handler replies, usually from its cancel hook. Loop thread,
 * while the reply is owed. */
jsond_timer *jsond_req_timer(jsond_req *req, unsigned ms, jsond_timer_fn fn, void *arg);

/* Disarms and frees `t`, a timer that has not fired and whose request has
 * not replied yet; NULL does nothing. Loop thread. */
void jsond_timer_cancel(jsond_timer *t);

#ifdef __cplusplus
}
#endif

#endif /* JSOND_H */
