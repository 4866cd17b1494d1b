/* pool.h: a thread pool for blocking code (a bulkhead).
 *
 * A number of worker threads take jobs from one bounded FIFO queue; both
 * sizes can change while it runs (jsond_pool_resize()).
 * A job's `run` is called on a worker thread (jsond_context() is
 * JSOND_CTX_WORKER there, every signal blocked); once it returns, its `done`
 * is called on the loop thread through the loop's inbox. Submitting never
 * blocks: a pool whose threads are all busy and whose queue holds
 * `queue_limit` jobs refuses the job at once (the caller replies `busy`), as
 * nginx's thread pool does. A job given to an idle thread never counts
 * against queue_limit, so queue_limit 0 means "run now or refuse".
 *
 * Ownership: a job belongs to the pool from a successful submit until its
 * `done` is called, or until jsond_pool_cancel() returns 1. The caller keeps
 * the memory alive that long and must not touch the job's private fields.
 *
 * Shutdown: jsond_pool_drain() (refuse new work, let the queue run out), wait
 * on the loop until jsond_pool_idle() (a timer, never a blocking wait), then
 * jsond_pool_free() joins the threads. A worker stuck in a job never ends, so
 * jsond_pool_free() would block forever: past its shutdown deadline the
 * caller abandons such a pool instead (jsond_pool_abandon(), and never frees
 * anything its running jobs may touch); jsond_pool_get_stats()'s `busy` says
 * how many are still running. Free the pool before the inbox it posts to:
 * the inbox also joins the threads a shrink retired, and a `done` still in
 * it may use the pool, whose memory lasts until the last such `done` ran.
 *
 * Threads: "loop thread" below means the thread that runs the inbox's event
 * loop, and that thread alone creates, resizes, drains and frees a pool.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_POOL_H
#define JSOND_POOL_H

#include <stdint.h>

#include "inbox.h"

typedef struct jsond_pool jsond_pool;
typedef struct jsond_job jsond_job;
typedef void (*jsond_job_fn)(jsond_job *job);

/* A job: embed it in your own struct (offsetof recovers it). Set `run` and
 * `done`; the rest is the pool's. */
struct jsond_job {
    jsond_job_fn run;  /* on a worker thread; may block */
    jsond_job_fn done; /* on the loop thread, once run has returned; may free the job */
    /* Private to the pool. */
    jsond_inbox_item item;
    jsond_job *prev, *next;
    jsond_pool *pool;
    uint64_t queued_ns;
    int state;
};

/* A pool of `threads` (>= 1) workers and room for `queue_limit` waiting jobs,
 * whose `done` callbacks run through `inbox` (on its loop). `name` (copied,
 * up to 64 bytes) names it in stats and in the threads' names. Returns NULL
 * and sets errno (EINVAL for 0 threads, or why a thread could not start).
 * Loop thread. Calls jsond_threads_init(). */
jsond_pool *jsond_pool_new(jsond_inbox *inbox, const char *name, unsigned threads,
                           unsigned queue_limit);

/* Drains the pool if that was not done, waits for every queued and running
 * job to finish, joins the threads and frees the pool. Blocks while a job
 * runs: call it once jsond_pool_idle() is true, never with a stuck worker
 * (see the top of this file). The `done` of the last jobs may still be in the
 * inbox: they run on its next pass, or are handed to `done` by
 * jsond_inbox_free(), and the pool's memory lasts until the last of them has
 * returned (a `done` may still call jsond_pool_note()). Loop thread. NULL
 * does nothing. */
void jsond_pool_free(jsond_pool *pool);

/* Sets the pool's sizes, keeping every queued and running job. More
 * threads start at once; with fewer, threads over the new count retire as
 * they finish their current job (an idle one at once), and the inbox joins
 * them. A queue_limit below the jobs already queued keeps them and refuses
 * new ones (EBUSY) until the pool is below its new size. Returns 0, or -1
 * with errno: EINVAL (0 threads), ESHUTDOWN (draining), or why a thread
 * could not start; then the sizes are the old ones again (threads started
 * by this call retire like any others over the count). Only a growth
 * starts threads, so a resize to no more threads than are alive cannot
 * fail on a pool that is not draining. Loop thread. */
int jsond_pool_resize(jsond_pool *pool, unsigned threads, unsigned queue_limit);

/* Queues `job` for a worker. Returns 0, or -1 with errno EBUSY (every thread
 * busy and queue_limit jobs waiting; counted as rejected) or ESHUTDOWN (the
 * pool is draining). Never blocks. Any thread. */
int jsond_pool_submit(jsond_pool *pool, jsond_job *job);

/* Takes a job that is still queued out of the queue: returns 1, and then
 * `done` will not be called (the job is the caller's again). Returns 0 when a
 * worker already has it: `done` will be called as usual. Only for a job
 * submitted to this pool whose `done` has not run. Any thread. */
int jsond_pool_cancel(jsond_pool *pool, jsond_job *job);

/* Gives up on a pool whose workers may never return (stuck in legacy code
 * past the shutdown deadline): it is drained, its threads are detached (the
 * idle ones exit on their own, nobody joins them) and it is never freed,
 * since a stuck worker still uses it, its inbox and its job. Loop thread,
 * once, instead of jsond_pool_free(). */
void jsond_pool_abandon(jsond_pool *pool);

/* Stops taking work: later submits fail with ESHUTDOWN; queued jobs still
 * run, then the threads exit. Never blocks. Loop thread. */
void jsond_pool_drain(jsond_pool *pool);

/* 1 when no job is queued or running (after a drain: free will not block),
 * 0 otherwise. Any thread. */
int jsond_pool_idle(jsond_pool *pool);

/* What the pool's owner counts in the pool's stats: requests whose deadline
 * hit a queued or running job, and outcomes that came after their request
 * was cancelled (and were discarded). */
typedef enum jsond_pool_event {
    JSOND_POOL_TIMED_OUT,
    JSOND_POOL_LATE,
} jsond_pool_event;
void jsond_pool_note(jsond_pool *pool, jsond_pool_event what);

/* Calls `fn` for each job running now, under the pool's lock (fn must not
 * call the pool). For the log of a shutdown that abandons them. Any
 * thread. */
void jsond_pool_running(jsond_pool *pool, void (*fn)(jsond_job *job, void *arg), void *arg);

/* The name given to jsond_pool_new(). */
const char *jsond_pool_name(const jsond_pool *pool);

/* A snapshot of the pool's counters. Times are over the last
 * JSOND_POOL_SAMPLES jobs that started (queue wait) or finished (run time);
 * 0 before any. */
#define JSOND_POOL_SAMPLES 1024
typedef struct jsond_pool_stats {
    unsigned threads; /* worker threads wanted (the last size given) */
    unsigned live;    /* threads running: more than `threads` while a shrink waits for jobs */
    unsigned queue_limit;
    unsigned busy;       /* threads running a job */
    unsigned queued;     /* jobs waiting for a thread */
    unsigned queue_peak; /* most jobs ever waiting with every thread busy */
    uint64_t submitted;  /* jobs accepted */
    uint64_t completed;  /* jobs whose run returned */
    uint64_t rejected;   /* submits refused because the pool was full */
    uint64_t cancelled;  /* queued jobs taken out by jsond_pool_cancel() */
    uint64_t timed_out;  /* jsond_pool_note() counts */
    uint64_t late;
    double queue_wait_p50_ms, queue_wait_p99_ms;
    double run_p50_ms, run_p99_ms;
} jsond_pool_stats;

/* Fills `out`. Any thread (the loop reads it for `stats`); it sorts up to
 * 2 x JSOND_POOL_SAMPLES numbers, outside the pool's lock. */
void jsond_pool_get_stats(jsond_pool *pool, jsond_pool_stats *out);

#endif /* JSOND_POOL_H */
