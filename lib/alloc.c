/* alloc.c: the small-block cache for jansson (see alloc.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "alloc.h"

#if defined(__SANITIZE_ADDRESS__)
#define JSOND_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JSOND_ASAN 1
#endif
#endif
#ifdef JSOND_ASAN
/* A cached block stays poisoned: a use after free is still caught. */
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define GRAIN   16 /* size classes are multiples of this */
#define CLASSES (JSOND_ALLOC_SMALL / GRAIN)
#define DEPTH   JSOND_ALLOC_DEPTH

typedef struct block {
    struct block *next;
} block;

/* Class c holds blocks of at least c * GRAIN usable bytes. */
typedef struct cache {
    block *head[CLASSES + 1];
    unsigned count[CLASSES + 1];
    int state; /* 0: not yet used, 1: caching (destructor armed), 2: done */
} cache;

/* initial-exec, as context.c's: read on every allocation. */
static _Thread_local cache thread_cache __attribute__((tls_model("initial-exec")));

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static int key_ok;

static void release(cache *k)
{
    for (size_t c = 1; c <= CLASSES; c++) {
        while (k->head[c]) {
            block *b = k->head[c];
            UNPOISON(b, sizeof *b);
            k->head[c] = b->next;
            free(b);
        }
        k->count[c] = 0;
    }
}

/* At a thread's end: its cache goes back to malloc. */
static void thread_end(void *arg)
{
    release(arg);
    ((cache *)arg)->state = 2;
}

static void make_key(void)
{
    key_ok = pthread_key_create(&key, thread_end) == 0;
}

/* A thread's first cached block arms the destructor that frees its cache;
 * without one (no key), the thread does not cache. */
static int start(cache *k)
{
    pthread_once(&key_once, make_key);
    k->state = key_ok && pthread_setspecific(key, k) == 0 ? 1 : 2;
    return k->state == 1;
}

void *jsond_alloc(size_t size)
{
    size_t c = size ? (size + GRAIN - 1) / GRAIN : 1;
    if (c > CLASSES)
        return malloc(size);
    cache *k = &thread_cache;
    block *b = k->head[c];
    if (!b)
        return malloc(c * GRAIN);
    UNPOISON(b, c * GRAIN);
    k->head[c] = b->next;
    k->count[c]--;
    return b;
}

void jsond_alloc_free(void *p)
{
    if (!p)
        return;
    size_t usable = malloc_usable_size(p), c = usable / GRAIN;
    cache *k = &thread_cache;
    if (c < 1 || c > CLASSES || k->count[c] >= DEPTH ||
        (k->state != 1 && (k->state || !start(k)))) {
        free(p);
        return;
    }
    block *b = p;
    b->next = k->head[c];
    k->head[c] = b;
    k->count[c]++;
    POISON(b, usable);
}

void jsond_alloc_install(void)
{
    json_set_alloc_funcs(jsond_alloc, jsond_alloc_free);
}

void jsond_alloc_thread_done(void)
{
    release(&thread_cache);
    thread_cache.state = 2;
}

size_t jsond_alloc_cached(void)
{
    size_t n = 0;
    for (size_t c = 1; c <= CLASSES; c++)
        n += thread_cache.count[c];
    return n;
}
