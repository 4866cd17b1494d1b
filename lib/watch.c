/* watch.c: the loop's watch (see watch.h).
 *
 * Shared with the watchdog thread, all atomic: `since` (the start of the
 * outermost callback running, 0 when the loop waits for events), `what`
 * (a string literal), `routed` and the route's name, a copy under a seqlock
 * written only when the route changes (a pipelined run of one route writes
 * it once). Everything else is the loop's.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "jsond.h"
#include "timeout.h"
#include "watch.h"

#define NAME_WORDS (JSOND_WATCH_NAME / 8)
_Static_assert(JSOND_WATCH_NAME >= JSOND_NAME_MAX + 1 && JSOND_WATCH_NAME % 8 == 0,
               "a route name fits the watch's copy");
#define MS         1000000ULL
#define REPEAT_NS  (1000 * MS) /* "still stalled" once a second */
#define MAX_FRAMES 64

struct jsond_watch {
    /* shared with the watchdog */
    _Atomic uint64_t since;
    _Atomic(const char *) what;
    atomic_int routed;
    atomic_uint seq;
    _Atomic uint64_t name[NAME_WORDS];
    _Atomic uint64_t stall_ns;
    /* the loop's */
    unsigned depth;
    int routed_now; /* a route runs in the innermost frame: `shown` */
    const char *what_now;
    char shown[JSOND_WATCH_NAME]; /* what `name` holds */
    char blame[JSOND_WATCH_NAME]; /* the slowest route in this callback so far */
    uint64_t blame_ns;
    jsond_stall_fn fn;
    void *arg;
    /* the watchdog */
    pthread_t loop, thread;
    int started, stop, signo;
    pthread_mutex_t lock;
    pthread_cond_t wake;
};

/* initial-exec: libjsond is loaded with the program, and this is read on
 * every callback. */
static _Thread_local jsond_watch *current __attribute__((tls_model("initial-exec")));

/* The stack the signal handler takes for the watchdog: addresses only,
 * named by the watchdog thread (backtrace_symbols() allocates, which a
 * signal handler may not), and no descriptor spent on it. The handler
 * writes `frames` only after moving `stack_state` from ASKED to TAKING, so
 * a signal that comes after the watchdog gave up on it writes nothing. */
enum { STACK_IDLE, STACK_ASKED, STACK_TAKING, STACK_TAKEN };
static atomic_int stack_state = STACK_IDLE;
static void *stack_frames[MAX_FRAMES];
static int stack_nframes;

jsond_watch *jsond_watch_new(unsigned stall_ms, jsond_stall_fn fn, void *arg)
{
    jsond_watch *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    atomic_store(&w->stall_ns, (uint64_t)stall_ms * MS);
    w->fn = fn;
    w->arg = arg;
    return w;
}

void jsond_watch_attach(jsond_watch *w)
{
    current = w;
}

void jsond_watch_set_stall(jsond_watch *w, unsigned stall_ms)
{
    atomic_store_explicit(&w->stall_ns, (uint64_t)stall_ms * MS, memory_order_relaxed);
}

/* ---- the loop's side ------------------------------------------------------ */

/* Sets the name the watchdog reads; it stays when no route runs (only
 * `routed` changes), so a pipelined run of one route writes it once. */
static void set_name(jsond_watch *w, const char *route)
{
    uint64_t words[NAME_WORDS] = {0};
    strncpy(w->shown, route, sizeof w->shown - 1);
    memcpy(words, w->shown, sizeof w->shown);
    unsigned s = atomic_load_explicit(&w->seq, memory_order_relaxed);
    atomic_store_explicit(&w->seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (size_t i = 0; i < NAME_WORDS; i++)
        atomic_store_explicit(&w->name[i], words[i], memory_order_relaxed);
    atomic_store_explicit(&w->seq, s + 2, memory_order_release);
}

static void set_routed(jsond_watch *w, int routed)
{
    w->routed_now = routed;
    atomic_store_explicit(&w->routed, routed, memory_order_relaxed);
}

void jsond_watch_enter(jsond_watch_frame *f, const char *what, const char *route)
{
    jsond_watch *w = f->w = current;
    if (!w)
        return;
    /* A frame inside another (each handler of a pipelined read) only
     * decides which route to blame when the outer one turns out slow, by
     * spans of stall_warning's milliseconds: the coarse clock is enough
     * there, and two precise reads per request are a measurable share of
     * a small request's cost. The outermost frame, which the stall is
     * measured and reported by, reads the precise clock. */
    f->nested = w->depth > 0;
    f->start_ns = f->nested ? jsond_coarse_now_ns() : jsond_now_ns();
    f->prev_what = w->what_now;
    f->prev_routed = w->routed_now;
    f->saved = 0;
    f->what = w->what_now = what;
    if (w->depth++ == 0) {
        w->blame_ns = 0;
        atomic_store_explicit(&w->since, f->start_ns, memory_order_relaxed);
    }
    atomic_store_explicit(&w->what, what, memory_order_relaxed);
    if (route) {
        if (strncmp(w->shown, route, sizeof w->shown - 1) != 0) {
            if (w->routed_now) { /* a call between routes: restored on leave */
                memcpy(f->prev_name, w->shown, sizeof f->prev_name);
                f->saved = 1;
            }
            set_name(w, route);
        }
        if (!w->routed_now)
            set_routed(w, 1);
    }
}

void jsond_watch_leave(jsond_watch_frame *f)
{
    jsond_watch *w = f->w;
    if (!w)
        return;
    uint64_t ns = (f->nested ? jsond_coarse_now_ns() : jsond_now_ns()) - f->start_ns;
    uint64_t stall = atomic_load_explicit(&w->stall_ns, memory_order_relaxed);
    int slow = stall && ns > stall;
    /* The route to blame: the slowest frame a route ran in. */
    if (slow && w->routed_now && ns > w->blame_ns) {
        memcpy(w->blame, w->shown, sizeof w->blame);
        w->blame_ns = ns;
    }
    w->what_now = f->prev_what;
    atomic_store_explicit(&w->what, f->prev_what, memory_order_relaxed);
    if (f->saved)
        set_name(w, f->prev_name);
    if (w->routed_now != f->prev_routed)
        set_routed(w, f->prev_routed);
    if (--w->depth > 0)
        return;
    atomic_store_explicit(&w->since, 0, memory_order_relaxed);
    if (slow && w->fn)
        w->fn(w->blame_ns ? w->blame : NULL, f->what, ns, w->arg);
}

int jsond_watch_fresh(const jsond_watch *w, unsigned max_ms)
{
    uint64_t since = atomic_load_explicit(&w->since, memory_order_relaxed);
    uint64_t now = jsond_now_ns();
    return since == 0 || now <= since || now - since <= (uint64_t)max_ms * MS;
}

/* ---- the watchdog ------------------------------------------------------------ */

/* The route's name as the loop last published it, or "none". Retries a
 * bounded number of times: a loop moving fast is not stalled anyway. */
static void read_route(jsond_watch *w, char *buf, size_t size)
{
    uint64_t words[NAME_WORDS];
    for (int tries = 0; tries < 100; tries++) {
        if (!atomic_load_explicit(&w->routed, memory_order_relaxed))
            break;
        unsigned s1 = atomic_load_explicit(&w->seq, memory_order_acquire);
        for (size_t i = 0; i < NAME_WORDS; i++)
            words[i] = atomic_load_explicit(&w->name[i], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        unsigned s2 = atomic_load_explicit(&w->seq, memory_order_relaxed);
        if (s1 == s2 && !(s1 & 1)) {
            memcpy(buf, words, size < sizeof words ? size : sizeof words);
            buf[size - 1] = '\0';
            return;
        }
    }
    snprintf(buf, size, "none");
}

/* On the loop thread, interrupted: async-signal-safe (backtrace() was
 * called once at start, so libgcc is loaded). */
static void stack_handler(int sig)
{
    (void)sig;
    int asked = STACK_ASKED;
    if (!atomic_compare_exchange_strong(&stack_state, &asked, STACK_TAKING))
        return;
    int saved = errno;
    stack_nframes = backtrace(stack_frames, MAX_FRAMES);
    errno = saved;
    atomic_store(&stack_state, STACK_TAKEN);
}

/* Asks the loop thread for its stack and logs it, named; gives up after
 * 1 s (under TSan a thread that makes no system call gets its signal only
 * when it makes one). Watchdog thread. */
static void log_stack(jsond_watch *w)
{
    atomic_store(&stack_state, STACK_ASKED);
    if (pthread_kill(w->loop, w->signo) != 0) {
        atomic_store(&stack_state, STACK_IDLE);
        return;
    }
    uint64_t deadline = jsond_now_ns() + REPEAT_NS;
    while (atomic_load(&stack_state) != STACK_TAKEN) {
        int asked = STACK_ASKED;
        if (jsond_now_ns() > deadline &&
            atomic_compare_exchange_strong(&stack_state, &asked, STACK_IDLE)) {
            jsond_log(JSOND_LOG_WARNING, "watchdog: no stack from the loop thread within 1 s");
            return;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    /* Frame 0 is the handler, 1 the kernel's signal return. */
    int n = stack_nframes;
    char **names = n > 2 ? backtrace_symbols(stack_frames + 2, n - 2) : NULL;
    for (int i = 0; names && i < n - 2; i++)
        jsond_log(JSOND_LOG_WARNING, "watchdog:   #%d %s", i, names[i]);
    free(names);
    atomic_store(&stack_state, STACK_IDLE);
}

static void report(jsond_watch *w, uint64_t ns, int first)
{
    char route[JSOND_WATCH_NAME];
    read_route(w, route, sizeof route);
    const char *what = atomic_load_explicit(&w->what, memory_order_relaxed);
    if (first) {
        jsond_log(JSOND_LOG_WARNING,
                  "watchdog: the loop is stalled: %llu ms in one callback (%s, route %s)%s",
                  (unsigned long long)(ns / MS), what ? what : "?", route,
                  w->signo ? "; its stack:" : "");
        if (w->signo)
            log_stack(w);
    } else {
        jsond_log(JSOND_LOG_WARNING, "watchdog: the loop is still stalled: %llu ms (%s, route %s)",
                  (unsigned long long)(ns / MS), what ? what : "?", route);
    }
}

static void *watchdog_main(void *arg)
{
    jsond_watch *w = arg;
    uint64_t reported = 0, next = 0;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        uint64_t stall = atomic_load_explicit(&w->stall_ns, memory_order_relaxed);
        uint64_t since = atomic_load_explicit(&w->since, memory_order_relaxed);
        uint64_t now = jsond_now_ns();
        uint64_t wait = stall < 50 * MS ? 50 * MS : stall > REPEAT_NS ? REPEAT_NS : stall;
        if (stall && since && now > since && now - since > stall) {
            if (since != reported || now >= next) {
                int first = since != reported;
                pthread_mutex_unlock(&w->lock);
                report(w, now - since, first);
                pthread_mutex_lock(&w->lock);
                reported = since;
                next = now + REPEAT_NS;
            }
            uint64_t after = jsond_now_ns();
            wait = next > after ? next - after : 0;
            if (wait > 50 * MS) /* still see the callback end soon */
                wait = 50 * MS;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t at = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + wait;
        ts.tv_sec = (time_t)(at / 1000000000u);
        ts.tv_nsec = (long)(at % 1000000000u);
        pthread_cond_timedwait(&w->wake, &w->lock, &ts);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int jsond_watch_start(jsond_watch *w, int signo)
{
    if (w->started) {
        errno = EALREADY;
        return -1;
    }
    w->loop = pthread_self();
    w->signo = signo;
    if (signo) {
        void *frames[2];
        backtrace(frames, 2); /* loads libgcc now, not in the handler */
        struct sigaction sa = {.sa_handler = stack_handler, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        if (sigaction(signo, &sa, NULL) < 0)
            return -1;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, &ca);
    pthread_condattr_destroy(&ca);
    /* Born deaf, as pool workers are: signals are the loop's. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = pthread_create(&w->thread, NULL, watchdog_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        errno = err;
        return -1;
    }
    w->started = 1;
    return 0;
}

void jsond_watch_free(jsond_watch *w)
{
    if (!w)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->stop = 1;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
    }
    if (current == w)
        current = NULL;
    free(w);
}
