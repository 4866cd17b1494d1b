/* jsond.c: the daemon: command line, log sink, signals, the main loop.
 *
 * Everything that knows about a process lives here; libjsond knows no
 * signals, no stderr and no exit codes. Exit status: 0 after a clean
 * shutdown, 1 for a bad config or a failed start, 2 for a usage error.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "jsond.h"

#define DEFAULT_CONFIG SYSCONFDIR "/jsond/jsond.conf"

/* Descriptors kept back from max_connections for listeners, the loop's own
 * fds, logging and pools, as redis keeps 32. */
#define RESERVED_FDS 32

/* The signal the watchdog sends the loop thread for its stack: one jsond
 * has no other use for, ignored by default (so one that arrives before the
 * handler, or from outside, harms nothing), and sent by the kernel only to
 * a socket's owner (F_SETOWN), which jsond never sets. */
#define STACK_SIGNAL SIGURG

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static void usage(FILE *out)
{
    fprintf(out, "usage: jsond [-c FILE] [-t] [-l LEVEL] [-V] [-h]\n"
                 "  -c FILE   config file (default " DEFAULT_CONFIG ";\n"
                 "            the built-in default config when that does not exist)\n"
                 "  -t        check the config, print every problem as FILE:LINE: message\n"
                 "  -l LEVEL  log level: debug, info, notice, warning, error\n"
                 "            (overrides log_level in the config, across reloads)\n"
                 "  -V        print the version and exit\n"
                 "  -h        print this help and exit\n");
}

/* ---- log sinks ---------------------------------------------------------- */

/* Under systemd, stderr is a journal stream: "<N>" prefixes set the priority
 * and the journal adds its own timestamps. JOURNAL_STREAM names the stream's
 * device:inode so a redirected stderr is not mistaken for it. */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    char *end;
    if (!js || fstat(STDERR_FILENO, &st) < 0)
        return 0;
    unsigned long long dev = strtoull(js, &end, 10);
    if (*end != ':')
        return 0;
    unsigned long long ino = strtoull(end + 1, &end, 10);
    return *end == '\0' && st.st_dev == (dev_t)dev && st.st_ino == (ino_t)ino;
}

static void journal_sink(jsond_log_level level, const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "<%d>%s\n", (int)level, msg);
}

static void stderr_sink(jsond_log_level level, const char *msg, void *arg)
{
    (void)arg;
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    /* One fprintf per line: stdio locks the stream, so lines from several
     * threads never interleave. */
    fprintf(stderr, "%s.%03ld [%s] %s\n", when, ts.tv_nsec / 1000000, jsond_log_level_name(level),
            msg);
}

/* ---- config ------------------------------------------------------------- */

/* Prints every problem as FILE:LINE: message: on stderr for -t, else
 * through the log. */
static void report(const jsond_errors *errs, int to_log)
{
    for (size_t i = 0; i < jsond_errors_count(errs); i++) {
        const jsond_error *e = jsond_errors_get(errs, i);
        char where[600];
        if (e->line > 0)
            snprintf(where, sizeof where, "%s:%d", e->file, e->line);
        else
            snprintf(where, sizeof where, "%s", e->file);
        if (to_log)
            jsond_log(JSOND_LOG_ERROR, "%s: %s", where, e->text);
        else
            fprintf(stderr, "%s: %s\n", where, e->text);
    }
}

/* Where the config comes from, decided once at start: -c FILE, else the
 * default path, else (no -c and no file there) the built-in default, which
 * is logged. NULL means the built-in default. A reload re-reads the same
 * source: a file gone missing meanwhile (a package upgrade replacing it)
 * fails the reload, and never switches to the built-in default, which
 * listens on every interface. */
static const char *config_source(const char *path, int quiet)
{
    if (path)
        return path;
    if (access(DEFAULT_CONFIG, F_OK) < 0 && errno == ENOENT) {
        if (!quiet)
            jsond_log(JSOND_LOG_NOTICE, "no config at %s, using the built-in default",
                      DEFAULT_CONFIG);
        return NULL;
    }
    return DEFAULT_CONFIG;
}

/* Loads the config from `source` (see config_source()). NULL with the
 * problems in `errs` on failure. */
static jsond_config *load_config(const char *source, jsond_errors *errs)
{
    return source ? jsond_config_load(source, errs) : jsond_config_default();
}

/* ---- descriptors -------------------------------------------------------- */

/* Raises the soft descriptor limit to the hard one and returns how many
 * connections fit besides the RESERVED_FDS (0: no limit), with the limit in
 * *limit. Computed once, at start: it caps max_connections of every config
 * put in force, so a reload can raise max_connections up to it (and not
 * only up to the first config's value). */
static unsigned descriptor_capacity(unsigned long long *limit)
{
    struct rlimit rl;
    *limit = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            jsond_log(JSOND_LOG_WARNING, "cannot raise the descriptor limit from %llu: %s",
                      (unsigned long long)old, strerror(errno));
            rl.rlim_cur = old;
        }
    }
    *limit = (unsigned long long)rl.rlim_cur;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur - RESERVED_FDS >= UINT_MAX)
        return 0;
    return rl.rlim_cur > RESERVED_FDS ? (unsigned)(rl.rlim_cur - RESERVED_FDS) : 1;
}

/* Says so when the config's max_connections does not fit the descriptor
 * capacity: at start and at every reload that puts a config in force. */
static void log_capacity(const jsond_config *cfg, unsigned cap, unsigned long long limit)
{
    unsigned wanted = jsond_config_max_connections(cfg);
    if (cap && wanted > cap)
        jsond_log(JSOND_LOG_WARNING,
                  "max_connections lowered from %u to %u: the descriptor limit is %llu", wanted,
                  cap, limit);
}

/* ---- systemd notification ------------------------------------------------
 *
 * Type=notify: READY=1 once every listener is bound, RELOADING=1 ...
 * READY=1 around a reload, STOPPING=1 when shutdown starts, STATUS= a
 * one-line summary refreshed every STATUS_INTERVAL, and WATCHDOG=1 while
 * the loop is fresh. Outside systemd (no NOTIFY_SOCKET) sd_notify() does
 * nothing; its errors are ignored: a lost notification must not stop
 * serving. Without libsystemd all of this compiles to nothing. */

#define STATUS_INTERVAL 5 /* seconds */

#ifdef HAVE_SYSTEMD
#define HAVE_NOTIFY 1
static void notify(const char *msg)
{
    (void)sd_notify(0, msg);
}
#else
#define HAVE_NOTIFY 0
static void notify(const char *msg)
{
    (void)msg;
}
#endif

/* The STATUS= line: connections open, requests per second since the last
 * one, and jobs waiting in the pools. Loop thread (the server's counters
 * are the loop's). */
typedef struct status_state {
    const jsond_server *srv;
    struct event *timer;
    unsigned long long requests; /* at the last refresh */
    double at_ms;                /* when it was */
} status_state;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Sends `head` (e.g. "READY=1\n", or "") followed by the STATUS= line. */
static void notify_status(status_state *s, const char *head)
{
    if (!HAVE_NOTIFY || !s->srv)
        return;
    jsond_server_stats st;
    jsond_server_get_stats(s->srv, &st);
    double t = now_ms(), secs = (t - s->at_ms) / 1e3;
    double rate = secs > 0 ? (double)(st.requests - s->requests) / secs : 0;
    s->requests = st.requests;
    s->at_ms = t;
    char msg[256];
    snprintf(msg, sizeof msg,
             "%sSTATUS=%u connections open, %.1f requests/s, %u jobs queued; %llu connections "
             "accepted, %llu refused",
             head, st.open, rate, st.queued, st.accepted, st.refused);
    notify(msg);
}

static void status_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    notify_status(arg, "");
}

/* The watchdog keep-alive runs on its own thread, not on a loop timer. A
 * timer would go quiet while the loop is stuck too, but its pings would
 * measure the loop's load, not its health: a timer runs only after the
 * ready events of its iteration, so a busy but healthy loop pings late,
 * and a stuck one is judged only by systemd's timeout. The thread pings on
 * its own clock, every WATCHDOG_USEC/2, and only while
 * jsond_server_fresh() says the loop has not been in one callback for
 * more than that half interval (the heartbeat the stall watchdog reads):
 * a loop stuck in a handler stops the pings, and systemd restarts jsond
 * (WatchdogSec=, Restart=on-failure) after the stall has been logged. */
typedef struct keepalive {
    const jsond_server *srv;
    unsigned long long usec; /* WATCHDOG_USEC */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC: signalled to stop */
    int stop, running;
} keepalive;

static void *keepalive_main(void *arg)
{
    keepalive *k = arg;
    unsigned long long half_us = k->usec / 2;
    unsigned max_ms = (unsigned)(half_us / 1000) ? (unsigned)(half_us / 1000) : 1;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&k->lock);
    while (!k->stop) {
        pthread_mutex_unlock(&k->lock);
        if (jsond_server_fresh(k->srv, max_ms))
            notify("WATCHDOG=1");
        pthread_mutex_lock(&k->lock);
        unsigned long long ns = (unsigned long long)next.tv_nsec + half_us * 1000;
        next.tv_sec += (time_t)(ns / 1000000000);
        next.tv_nsec = (long)(ns % 1000000000);
        while (!k->stop && pthread_cond_timedwait(&k->cond, &k->lock, &next) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

/* Starts the keep-alive if systemd asks for one (WATCHDOG_USEC, and
 * WATCHDOG_PID unset or ours). Returns 0 (also when not asked), -1 if the
 * thread cannot start. */
static int keepalive_start(keepalive *k, const jsond_server *srv)
{
    k->srv = srv;
#ifdef HAVE_SYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return 0;
    k->usec = usec;
#endif
    if (!k->usec)
        return 0;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&k->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return -1;
    pthread_mutex_init(&k->lock, NULL);
    if (pthread_create(&k->thread, NULL, keepalive_main, k) != 0) {
        pthread_cond_destroy(&k->cond);
        pthread_mutex_destroy(&k->lock);
        return -1;
    }
    k->running = 1;
    jsond_log(JSOND_LOG_INFO, "systemd watchdog: WATCHDOG=1 every %llu ms while the loop is fresh",
              k->usec / 2000);
    return 0;
}

/* Stops the keep-alive, before the server it reads is freed. */
static void keepalive_stop(keepalive *k)
{
    if (!k->running)
        return;
    pthread_mutex_lock(&k->lock);
    k->stop = 1;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->cond);
    pthread_mutex_destroy(&k->lock);
    k->running = 0;
}

/* ---- socket activation -------------------------------------------------
 *
 * The sockets systemd passed (LISTEN_FDS, LISTEN_FDNAMES), with their
 * names, for jsond_server_new to give to the listeners. The variables are
 * unset, so exec: children do not think they were passed. Without
 * libsystemd, none: jsond binds every listener itself. */
typedef struct passed {
    jsond_socket *socks;
    char **names;
    size_t n;
} passed;

static int passed_get(passed *p)
{
    *p = (passed){0};
#ifdef HAVE_SYSTEMD
    int n = sd_listen_fds_with_names(1, &p->names);
    if (n < 0) {
        jsond_log(JSOND_LOG_ERROR, "cannot read the sockets systemd passed: %s", strerror(-n));
        return -1;
    }
    if (n > 0 && !(p->socks = calloc((size_t)n, sizeof *p->socks))) {
        jsond_log(JSOND_LOG_ERROR, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++)
        p->socks[i] = (jsond_socket){SD_LISTEN_FDS_START + i, p->names ? p->names[i] : NULL};
    p->n = (size_t)n;
    if (n > 0)
        jsond_log(JSOND_LOG_INFO, "systemd passed %d sockets", n);
#endif
    return 0;
}

static void passed_free(passed *p)
{
    for (size_t i = 0; p->names && p->names[i]; i++)
        free(p->names[i]);
    free(p->names);
    free(p->socks);
}

/* ---- signals ------------------------------------------------------------ */

typedef struct daemon_state {
    struct event_base *base;
    jsond_server *srv;
    const char *source; /* the config file, or NULL for the built-in default */
    int level_pinned;   /* -l given: reloads keep it */
    unsigned capacity;  /* connections the descriptor limit allows; 0: no limit */
    unsigned long long fd_limit;
    int stopping;
    status_state status;
} daemon_state;

static void drained_cb(void *arg)
{
    daemon_state *d = arg;
    event_base_loopbreak(d->base);
}

static void signal_stop_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    daemon_state *d = arg;
    if (d->stopping) {
        jsond_log(JSOND_LOG_NOTICE, "signal %d again: exiting at once", (int)sig);
        event_base_loopbreak(d->base);
        return;
    }
    d->stopping = 1;
    notify("STOPPING=1");
    jsond_log(JSOND_LOG_NOTICE, "signal %d: shutting down", (int)sig);
    jsond_server_shutdown(d->srv, drained_cb, d);
}

/* SIGHUP: the new config is read and checked whole, then put in force by
 * the server, or not at all. systemd hears RELOADING=1 first (with the
 * MONOTONIC_USEC= that Type=notify-reload wants from systemd 253 on), and
 * READY=1 after, whether the reload succeeded or not: the daemon serves
 * either way, and the log says which. */
static void signal_reload_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    daemon_state *d = arg;
    if (d->stopping)
        return;
    double t0 = now_ms();
    char msg[64];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)(t0 * 1e3));
    notify(msg);
    jsond_log(JSOND_LOG_NOTICE, "signal %d: reloading", (int)sig);
    jsond_errors *errs = jsond_errors_new();
    jsond_config *cfg = errs ? load_config(d->source, errs) : NULL;
    jsond_reload_summary sum;
    if (!cfg || jsond_server_reload(d->srv, cfg, &sum, errs) < 0) {
        report(errs, 1);
        jsond_log(JSOND_LOG_ERROR, "reload failed with %zu problems: the old config stays in force",
                  jsond_errors_count(errs));
    } else {
        if (!d->level_pinned)
            jsond_log_set_level(jsond_config_log_level(cfg));
        log_capacity(cfg, d->capacity, d->fd_limit);
        jsond_log(JSOND_LOG_NOTICE,
                  "reloaded %s: routes %u added, %u removed, %u changed; listeners %u opened, "
                  "%u closed, %u kept; pools %u added, %u resized, %u removed (%.3f ms)",
                  jsond_config_source(cfg), sum.routes_added, sum.routes_removed,
                  sum.routes_changed, sum.listeners_opened, sum.listeners_closed,
                  sum.listeners_kept, sum.pools_added, sum.pools_resized, sum.pools_removed,
                  now_ms() - t0);
    }
    jsond_config_unref(cfg);
    jsond_errors_free(errs);
    notify_status(&d->status, "READY=1\n");
}

static void log_counters(const jsond_server *srv)
{
    jsond_server_stats st;
    jsond_server_get_stats(srv, &st);
    jsond_log(JSOND_LOG_NOTICE,
              "connections: %llu accepted, %llu refused, %llu dropped, %llu reset, %llu cut; "
              "%llu bytes out",
              st.accepted, st.refused, st.dropped, st.reset,
              st.cut + st.open /* what is still open is cut by the free that follows */,
              st.bytes_out);
}

#ifdef JSOND_TEST_HANDLERS
void jsond_test_handlers_add(void); /* tests/testd/handlers.c */
#endif

int main(int argc, char **argv)
{
    const char *path = NULL, *level_arg = NULL;
    int test_only = 0, opt;
    jsond_log_level level_override = JSOND_LOG_INFO;

#ifdef JSOND_TEST_HANDLERS
    jsond_test_handlers_add();
#endif
    while ((opt = getopt(argc, argv, ":c:tl:Vh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'l':
            level_arg = optarg;
            break;
        case 'V':
            printf("jsond %s (libevent %s, jansson %s%s)\n", jsond_version(), event_get_version(),
                   JANSSON_VERSION, HAVE_NOTIFY ? ", systemd" : "");
            return EXIT_OK;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case ':':
            fprintf(stderr, "jsond: option -%c needs an argument\n", optopt);
            usage(stderr);
            return EXIT_USAGE;
        default:
            fprintf(stderr, "jsond: unknown option -%c\n", optopt);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "jsond: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (level_arg && jsond_log_level_parse(level_arg, &level_override) < 0) {
        fprintf(stderr, "jsond: unknown log level '%s'\n", level_arg);
        usage(stderr);
        return EXIT_USAGE;
    }

    if (test_only) {
        jsond_errors *errs = jsond_errors_new();
        jsond_config *cfg = errs ? load_config(config_source(path, 1), errs) : NULL;
        report(errs, 0);
        jsond_errors_free(errs);
        if (!cfg)
            return EXIT_FAIL;
        printf("%s: configuration is valid\n", jsond_config_source(cfg));
        jsond_config_unref(cfg);
        return EXIT_OK;
    }

    jsond_log_set_sink(stderr_is_journal() ? journal_sink : stderr_sink, NULL);
    if (level_arg)
        jsond_log_set_level(level_override);
    /* A peer that vanishes mid-write must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);

    int status = EXIT_FAIL;
    daemon_state d = {.source = config_source(path, 0), .level_pinned = level_arg != NULL};
    struct event *sigs[3] = {NULL};
    keepalive ka = {0};
    passed sockets = {0};
    jsond_errors *errs = jsond_errors_new();
    jsond_config *cfg = errs ? load_config(d.source, errs) : NULL;
    if (!cfg)
        goto out;
    if (!level_arg)
        jsond_log_set_level(jsond_config_log_level(cfg));
    jsond_config_log(cfg);
    d.capacity = descriptor_capacity(&d.fd_limit);
    log_capacity(cfg, d.capacity, d.fd_limit);
    jsond_log(JSOND_LOG_DEBUG, "descriptors for up to %u connections (0: no limit)", d.capacity);

    if (jsond_threads_init() < 0) {
        jsond_log(JSOND_LOG_ERROR, "cannot make libevent thread-aware");
        goto out;
    }
    /* libevent's coarse clock (a tick is 4 ms here): its precise one costs
     * a timerfd_settime() per loop pass, a system call per push connection.
     * jsond's timers add a tick so as never to fire early (jsond_timer_tv). */
    struct event_config *ec = event_config_new();
    /* No lock on the base: only the loop thread touches it (workers hand
     * their outcomes back through the inbox's eventfd, never through
     * libevent), and a locked base pays a mutex on every event operation
     * and around every callback. */
    if (ec)
        event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    d.base = ec ? event_base_new_with_config(ec) : NULL;
    if (ec)
        event_config_free(ec);
    if (!d.base) {
        jsond_log(JSOND_LOG_ERROR, "cannot create the event loop");
        goto out;
    }
    /* Before the listeners are announced: whoever sees "listening on" may
     * signal at once, and the signal must find its handler, not kill us.
     * One that comes before the loop runs waits for it (d.srv is set by
     * then). */
    sigs[0] = evsignal_new(d.base, SIGTERM, signal_stop_cb, &d);
    sigs[1] = evsignal_new(d.base, SIGINT, signal_stop_cb, &d);
    sigs[2] = evsignal_new(d.base, SIGHUP, signal_reload_cb, &d);
    for (size_t i = 0; i < 3; i++) {
        if (!sigs[i] || evsignal_add(sigs[i], NULL) < 0) {
            jsond_log(JSOND_LOG_ERROR, "cannot install signal handlers");
            goto out;
        }
    }
    if (passed_get(&sockets) < 0)
        goto out;
    d.srv = jsond_server_new(d.base, cfg, d.capacity, sockets.socks, sockets.n, errs);
    if (!d.srv)
        goto out;
    if (jsond_server_watchdog(d.srv, STACK_SIGNAL) < 0)
        jsond_log(JSOND_LOG_WARNING,
                  "cannot start the watchdog: %s; stalls are still logged "
                  "when they end",
                  strerror(errno));
    if (keepalive_start(&ka, d.srv) < 0) {
        jsond_log(JSOND_LOG_ERROR, "cannot start the systemd watchdog keep-alive");
        goto out;
    }
    jsond_log(JSOND_LOG_NOTICE, "jsond %s started (pid %ld)", jsond_version(), (long)getpid());
    /* Every listener is bound and the watchdogs run: ready. */
    d.status = (status_state){.srv = d.srv, .at_ms = now_ms()};
    notify_status(&d.status, "READY=1\n");
    if (HAVE_NOTIFY && getenv("NOTIFY_SOCKET")) {
        struct timeval every = {STATUS_INTERVAL, 0};
        d.status.timer = event_new(d.base, -1, EV_PERSIST, status_timer_cb, &d.status);
        if (d.status.timer)
            event_add(d.status.timer, &every);
    }
    if (event_base_dispatch(d.base) < 0) {
        jsond_log(JSOND_LOG_ERROR, "event loop failed");
        goto out;
    }
    status = EXIT_OK;
out:
    report(errs, 1);
    jsond_errors_free(errs);
    passed_free(&sockets);
    keepalive_stop(&ka);
    if (d.status.timer)
        event_free(d.status.timer);
    if (d.srv) {
        log_counters(d.srv);
        jsond_server_free(d.srv);
    }
    for (size_t i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (d.base)
        event_base_free(d.base);
    jsond_config_unref(cfg);
    return status;
}
