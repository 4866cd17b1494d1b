/* watch.h: the loop's watch: how long each loop callback runs, and a
 * watchdog thread that notices a loop stuck in one.
 *
 * Every callback jsond registers on its loop, and every handler call made
 * there, runs between jsond_watch_enter() and jsond_watch_leave(): two
 * clock reads (vDSO) and a few stores. A callback longer than the stall
 * threshold is reported once, when it ends, to the watch's stall function,
 * naming the route that ran in it (the route of the longest handler call or
 * handler timer inside it). The watchdog thread reads the start of the
 * current callback and the route's name (copied, under a seqlock, so a
 * config freed meanwhile cannot hurt it) and logs a callback that has not
 * returned after the threshold, with the loop thread's stack, then once a
 * second until it returns.
 *
 * One watch per loop. The modules find it through a thread-local pointer
 * (jsond_watch_attach()), so no struct carries it; on a thread without one
 * (a module's unit test) enter and leave do nothing.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_WATCH_H
#define JSOND_WATCH_H

#include <stdint.h>

typedef struct jsond_watch jsond_watch;

/* A callback that ran `ns` nanoseconds, over the threshold. `route` is NULL
 * when no handler ran in it, and valid only during the call; `what` is the
 * kind of callback ("read", "timer", ...). Loop thread. */
typedef void (*jsond_stall_fn)(const char *route, const char *what, uint64_t ns, void *arg);

/* Room for a route name: JSOND_NAME_MAX (64) and its NUL, in words. */
#define JSOND_WATCH_NAME 72

/* One callback's record, on the stack of the code it wraps. No route
 * pointer is kept past enter: the request may go, with its config, before
 * the callback ends. */
typedef struct jsond_watch_frame {
    jsond_watch *w; /* NULL: no watch on this thread */
    uint64_t start_ns;
    int nested; /* inside another frame: timed on the coarse clock */
    const char *what, *prev_what;
    int prev_routed, saved;
    char prev_name[JSOND_WATCH_NAME]; /* the enclosing route's, if `saved` */
} jsond_watch_frame;

/* A watch with threshold `stall_ms` (0: nothing is reported). NULL when out
 * of memory. */
jsond_watch *jsond_watch_new(unsigned stall_ms, jsond_stall_fn fn, void *arg);

/* Stops the watchdog (joins it) and frees. Loop thread, outside any frame. */
void jsond_watch_free(jsond_watch *w);

/* Makes `w` the calling thread's watch (NULL: none). The loop thread. */
void jsond_watch_attach(jsond_watch *w);

/* A new threshold (a reload). Loop thread; the watchdog sees it next time
 * it looks. */
void jsond_watch_set_stall(jsond_watch *w, unsigned stall_ms);

/* Starts the watchdog thread. The calling thread is the loop's: `signo`, if
 * not 0, is sent to it to log its stack, and its handler is installed here
 * (the process must leave that signal to jsond). Returns 0, or -1 with
 * errno. Once per watch; one watch per process may use a signal. */
int jsond_watch_start(jsond_watch *w, int signo);

/* 1 if the loop is not in one callback for more than `max_ms` (an idle
 * loop is fresh), else 0. Any thread. */
int jsond_watch_fresh(const jsond_watch *w, unsigned max_ms);

/* Brackets a callback or a handler call: `what` is a string literal,
 * `route` the running request's route name, or NULL (the enclosing
 * frame's route, if any, stays). Loop thread. */
void jsond_watch_enter(jsond_watch_frame *f, const char *what, const char *route);
void jsond_watch_leave(jsond_watch_frame *f);

#endif /* JSOND_WATCH_H */
