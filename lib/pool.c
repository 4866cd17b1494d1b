/* pool.c: a thread pool for blocking code (see pool.h for the contract).
 *
 * One mutex guards the queue and every counter; workers sleep on one
 * condition variable. The queue is a doubly linked list through the jobs
 * themselves, so submit, take and cancel are O(1) and allocate nothing.
 *
 * Fullness is counted, not tracked per thread: idle threads take queued jobs
 * in FIFO order, so of the `queued` jobs, (threads - busy) are as good as
 * handed to a thread already and only the rest wait. The pool is full when
 * busy + queued >= threads + queue_limit.
 *
 * Completion goes through the inbox: the worker marks the job done under the
 * lock, then posts it, and from then on never touches it (the loop may free
 * it as soon as `done` runs). A `done` may still use the pool (its stats),
 * so the pool's memory outlives jsond_pool_free() until the last posted
 * `done` has run (or been dropped by jsond_inbox_free()).
 *
 * Resizing sets the target `nthreads`; `live` counts the threads in their
 * loop. Growing starts threads at once. While live > nthreads, a thread that
 * is between jobs retires: it unlinks itself and posts itself to the inbox,
 * whose callback joins it on the loop (a retired thread is never left
 * unjoined, and nobody waits on a busy one). Draining threads stay on the
 * list, for jsond_pool_free() to join.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsond.h"
#include "pool.h"
#include "timeout.h"

enum { JOB_IDLE = 0, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

/* The last JSOND_POOL_SAMPLES durations, in microseconds. */
typedef struct {
    uint32_t v[JSOND_POOL_SAMPLES];
    unsigned n, next;
} samples;

/* A worker thread. Its item joins and frees it on the loop once it has
 * retired; `tid` is written and read on the loop only. */
typedef struct worker {
    jsond_inbox_item item;
    pthread_t tid;
    jsond_pool *pool;
    struct worker *prev, *next; /* in pool->workers, under its lock */
} worker;

struct jsond_pool {
    char name[65]; /* a config NAME: up to 64 bytes */
    jsond_inbox *inbox;

    pthread_mutex_t lock; /* everything below */
    pthread_cond_t work;  /* a job was queued, the pool is draining or shrinking */
    unsigned nthreads, queue_limit;
    worker *workers; /* threads not retired: joined by jsond_pool_free() */
    unsigned live;   /* threads in their loop (lags nthreads while shrinking) */
    jsond_job *head, *tail;
    jsond_job *running; /* the jobs workers run now, linked through next */
    unsigned busy, queued, queue_peak;
    unsigned posted; /* jobs whose `done` is in the inbox */
    int draining;
    int freed; /* jsond_pool_free() ran: the last posted `done` frees the memory */
    uint64_t submitted, completed, rejected, cancelled, timed_out, late;
    samples wait_us, run_us;
};

static void sample_add(samples *s, uint64_t ns)
{
    uint64_t us = ns / 1000;
    s->v[s->next] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    s->next = (s->next + 1) % JSOND_POOL_SAMPLES;
    if (s->n < JSOND_POOL_SAMPLES)
        s->n++;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of `s` (sorted in place), in ms. */
static double percentile_ms(samples *s, double p)
{
    if (s->n == 0)
        return 0;
    qsort(s->v, s->n, sizeof s->v[0], cmp_u32);
    unsigned rank = (unsigned)(p * s->n + 0.999999);
    if (rank < 1)
        rank = 1;
    return s->v[rank - 1] / 1000.0;
}

static void pool_release(jsond_pool *pool)
{
    pthread_cond_destroy(&pool->work);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

/* The job's inbox callback, on the loop: and from jsond_inbox_free() too, so
 * every job that ran gets exactly one `done`. */
static void job_done_item(jsond_inbox_item *item)
{
    jsond_job *job = (jsond_job *)(void *)((char *)item - offsetof(jsond_job, item));
    jsond_pool *pool = job->pool;
    job->state = JOB_IDLE;
    job->done(job); /* may free the job, may still use the pool */
    pthread_mutex_lock(&pool->lock);
    int last = --pool->posted == 0 && pool->freed;
    pthread_mutex_unlock(&pool->lock);
    if (last)
        pool_release(pool);
}

/* A retired worker's inbox callback (or drop): it has left its loop, so the
 * join waits at most for its return. Touches no pool: it may be gone. */
static void worker_reap(jsond_inbox_item *item)
{
    worker *w = (worker *)(void *)item;
    pthread_join(w->tid, NULL);
    free(w);
}

static void worker_unlink(jsond_pool *pool, worker *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        pool->workers = w->next;
    if (w->next)
        w->next->prev = w->prev;
}

static jsond_job *queue_pop(jsond_pool *pool)
{
    jsond_job *job = pool->head;
    pool->head = job->next;
    if (pool->head)
        pool->head->prev = NULL;
    else
        pool->tail = NULL;
    job->next = job->prev = NULL;
    pool->queued--;
    return job;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    jsond_pool *pool = w->pool;

    /* Signals go to the daemon's loop (libevent's signal events), never to a
     * worker in the middle of legacy code. The creator blocked them already so
     * none can arrive before this line; this makes the rule local. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    jsond_context_set(JSOND_CTX_WORKER);

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->head && !pool->draining && pool->live <= pool->nthreads)
            pthread_cond_wait(&pool->work, &pool->lock);
        if (pool->live > pool->nthreads && !pool->draining) {
            /* Shrinking: retire between jobs. A wake-up meant for a worker
             * that takes the next job goes on to another. Posting under the
             * lock means jsond_pool_free() never sees a retiring thread. */
            worker_unlink(pool, w);
            pool->live--;
            if (pool->head)
                pthread_cond_signal(&pool->work);
            jsond_inbox_post(pool->inbox, &w->item);
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
        if (!pool->head)
            break; /* draining, and the queue has run out */
        jsond_job *job = queue_pop(pool);
        job->state = JOB_RUNNING;
        job->next = pool->running;
        if (job->next)
            job->next->prev = job;
        pool->running = job;
        pool->busy++;
        uint64_t start = jsond_now_ns();
        sample_add(&pool->wait_us, start - job->queued_ns);
        pthread_mutex_unlock(&pool->lock);

        job->run(job);

        uint64_t end = jsond_now_ns();
        pthread_mutex_lock(&pool->lock);
        if (job->prev)
            job->prev->next = job->next;
        else
            pool->running = job->next;
        if (job->next)
            job->next->prev = job->prev;
        job->next = job->prev = NULL;
        pool->busy--;
        pool->completed++;
        pool->posted++;
        sample_add(&pool->run_us, end - start);
        job->state = JOB_DONE;
        pthread_mutex_unlock(&pool->lock);
        jsond_inbox_post(pool->inbox, &job->item); /* the job is the loop's now */
        pthread_mutex_lock(&pool->lock);
    }
    pool->live--;
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Starts one more worker. Loop thread. Returns 0 or an errno. */
static int start_worker(jsond_pool *pool)
{
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return ENOMEM;
    w->pool = pool;
    w->item.run = w->item.drop = worker_reap;
    pthread_mutex_lock(&pool->lock);
    w->next = pool->workers;
    if (w->next)
        w->next->prev = w;
    pool->workers = w;
    pool->live++;
    pthread_mutex_unlock(&pool->lock);

    /* Threads inherit the creator's signal mask: block everything around
     * pthread_create so a worker is born deaf, then restore ours. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = pthread_create(&w->tid, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        pthread_mutex_lock(&pool->lock);
        worker_unlink(pool, w);
        pool->live--;
        pthread_mutex_unlock(&pool->lock);
        free(w);
        return err;
    }
    /* "jsond:NAME" shows in top -H and gdb; the kernel keeps 15 bytes. */
    char tname[16];
    snprintf(tname, sizeof tname, "jsond:%.9s", pool->name);
    pthread_setname_np(w->tid, tname);
    return 0;
}

jsond_pool *jsond_pool_new(jsond_inbox *inbox, const char *name, unsigned threads,
                           unsigned queue_limit)
{
    if (threads == 0 || !inbox || !name) {
        errno = EINVAL;
        return NULL;
    }
    if (jsond_threads_init() < 0) {
        errno = ENOSYS;
        return NULL;
    }
    jsond_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    snprintf(pool->name, sizeof pool->name, "%s", name);
    pool->inbox = inbox;
    pool->nthreads = threads;
    pool->queue_limit = queue_limit;
    if (pthread_mutex_init(&pool->lock, NULL) != 0)
        goto fail_free;
    if (pthread_cond_init(&pool->work, NULL) != 0)
        goto fail_lock;
    for (unsigned i = 0; i < threads; i++) {
        int err = start_worker(pool);
        if (err) {
            jsond_pool_free(pool);
            errno = err;
            return NULL;
        }
    }
    return pool;

fail_lock:
    pthread_mutex_destroy(&pool->lock);
fail_free:
    free(pool);
    errno = ENOMEM;
    return NULL;
}

void jsond_pool_free(jsond_pool *pool)
{
    if (!pool)
        return;
    jsond_pool_drain(pool);
    /* Draining, no thread retires: the list is every thread to join. */
    pthread_mutex_lock(&pool->lock);
    worker *w = pool->workers;
    pool->workers = NULL;
    pthread_mutex_unlock(&pool->lock);
    while (w) {
        worker *next = w->next;
        pthread_join(w->tid, NULL);
        free(w);
        w = next;
    }
    pthread_mutex_lock(&pool->lock);
    pool->freed = 1;
    int now = pool->posted == 0;
    pthread_mutex_unlock(&pool->lock);
    if (now)
        pool_release(pool);
}

int jsond_pool_resize(jsond_pool *pool, unsigned threads, unsigned queue_limit)
{
    if (threads == 0) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&pool->lock);
    if (pool->draining) {
        pthread_mutex_unlock(&pool->lock);
        errno = ESHUTDOWN;
        return -1;
    }
    unsigned old_threads = pool->nthreads, old_limit = pool->queue_limit;
    pool->nthreads = threads;
    pool->queue_limit = queue_limit;
    /* Only this thread starts workers, and none retires while live <=
     * nthreads: `missing` stays true while they start. */
    unsigned missing = threads > pool->live ? threads - pool->live : 0;
    pthread_cond_broadcast(&pool->work); /* idle threads over the target retire now */
    pthread_mutex_unlock(&pool->lock);
    for (; missing; missing--) {
        int err = start_worker(pool);
        if (err) {
            /* Back to the old sizes: the threads just started retire. */
            pthread_mutex_lock(&pool->lock);
            pool->nthreads = old_threads;
            pool->queue_limit = old_limit;
            pthread_cond_broadcast(&pool->work);
            pthread_mutex_unlock(&pool->lock);
            errno = err;
            return -1;
        }
    }
    return 0;
}

int jsond_pool_submit(jsond_pool *pool, jsond_job *job)
{
    int err = 0;
    job->item.run = job->item.drop = job_done_item;
    pthread_mutex_lock(&pool->lock);
    if (pool->draining) {
        err = ESHUTDOWN;
    } else if (pool->busy + pool->queued >= pool->nthreads + pool->queue_limit) {
        pool->rejected++;
        err = EBUSY;
    } else {
        job->state = JOB_QUEUED;
        job->pool = pool;
        job->queued_ns = jsond_now_ns();
        job->next = NULL;
        job->prev = pool->tail;
        if (pool->tail)
            pool->tail->next = job;
        else
            pool->head = job;
        pool->tail = job;
        pool->queued++;
        pool->submitted++;
        if (pool->busy + pool->queued > pool->nthreads) {
            unsigned waiting = pool->busy + pool->queued - pool->nthreads;
            if (waiting > pool->queue_peak)
                pool->queue_peak = waiting;
        }
        pthread_cond_signal(&pool->work);
    }
    pthread_mutex_unlock(&pool->lock);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

int jsond_pool_cancel(jsond_pool *pool, jsond_job *job)
{
    int removed = 0;
    pthread_mutex_lock(&pool->lock);
    if (job->state == JOB_QUEUED) {
        if (job->prev)
            job->prev->next = job->next;
        else
            pool->head = job->next;
        if (job->next)
            job->next->prev = job->prev;
        else
            pool->tail = job->prev;
        job->next = job->prev = NULL;
        job->state = JOB_IDLE;
        pool->queued--;
        pool->cancelled++;
        removed = 1;
    }
    pthread_mutex_unlock(&pool->lock);
    return removed;
}

void jsond_pool_abandon(jsond_pool *pool)
{
    jsond_pool_drain(pool);
    pthread_mutex_lock(&pool->lock);
    for (worker *w = pool->workers; w; w = w->next)
        pthread_detach(w->tid);
    pthread_mutex_unlock(&pool->lock);
}

void jsond_pool_drain(jsond_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->draining = 1;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
}

int jsond_pool_idle(jsond_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    int idle = pool->busy == 0 && pool->queued == 0;
    pthread_mutex_unlock(&pool->lock);
    return idle;
}

void jsond_pool_note(jsond_pool *pool, jsond_pool_event what)
{
    pthread_mutex_lock(&pool->lock);
    if (what == JSOND_POOL_TIMED_OUT)
        pool->timed_out++;
    else
        pool->late++;
    pthread_mutex_unlock(&pool->lock);
}

void jsond_pool_running(jsond_pool *pool, void (*fn)(jsond_job *job, void *arg), void *arg)
{
    pthread_mutex_lock(&pool->lock);
    for (jsond_job *job = pool->running; job; job = job->next)
        fn(job, arg);
    pthread_mutex_unlock(&pool->lock);
}

const char *jsond_pool_name(const jsond_pool *pool)
{
    return pool->name;
}

void jsond_pool_get_stats(jsond_pool *pool, jsond_pool_stats *out)
{
    /* Copies to sort outside the lock: workers wait for it on every job. */
    samples *copy = malloc(2 * sizeof *copy);
    pthread_mutex_lock(&pool->lock);
    *out = (jsond_pool_stats){
        .threads = pool->nthreads,
        .live = pool->live,
        .queue_limit = pool->queue_limit,
        .busy = pool->busy,
        .queued = pool->queued,
        .queue_peak = pool->queue_peak,
        .submitted = pool->submitted,
        .completed = pool->completed,
        .rejected = pool->rejected,
        .cancelled = pool->cancelled,
        .timed_out = pool->timed_out,
        .late = pool->late,
    };
    if (copy) {
        copy[0] = pool->wait_us;
        copy[1] = pool->run_us;
    }
    pthread_mutex_unlock(&pool->lock);
    if (!copy)
        return; /* counters without percentiles */
    out->queue_wait_p50_ms = percentile_ms(&copy[0], 0.50);
    out->queue_wait_p99_ms = percentile_ms(&copy[0], 0.99);
    out->run_p50_ms = percentile_ms(&copy[1], 0.50);
    out->run_p99_ms = percentile_ms(&copy[1], 0.99);
    free(copy);
}
