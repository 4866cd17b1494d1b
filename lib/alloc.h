/* alloc.h: a per-thread cache of small blocks for jansson's values.
 *
 * A small JSON-RPC request builds and frees about seven jansson values
 * (its params object, its hash buckets, members, strings), each a malloc()
 * and a free(): in glibc about 130 instructions a pair, a seventh of the
 * request. jansson takes its allocator process-wide (json_set_alloc_funcs),
 * so the server installs this one: a freed block of up to
 * JSOND_ALLOC_SMALL bytes is kept on its thread's list for the next
 * allocation of its size class (16-byte steps; a block's class is its
 * usable size, which malloc may round up, so blocks under
 * JSOND_ALLOC_SMALL + 16 usable bytes), up to JSOND_ALLOC_DEPTH blocks a
 * class; the rest go back to free(). glibc's own per-thread cache
 * keeps 7 a size, which a pipelined batch overflows into its locked
 * bins.
 *
 * Every block is a genuine malloc() block, found by its usable size
 * (malloc_usable_size): jansson's values may be made by one thread and
 * freed by another (a worker's reply, freed on the loop), and a module may
 * free() what json_dumps() returned, as jansson documents, whichever
 * allocator made it. A thread's cache is released when the thread ends;
 * the loop thread releases its own with jsond_alloc_thread_done().
 *
 * Thread: any; each thread has its own cache, nothing is shared.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_ALLOC_H
#define JSOND_ALLOC_H

#include <stddef.h>

#define JSOND_ALLOC_SMALL 256
#define JSOND_ALLOC_DEPTH 64

/* Makes jansson allocate through the caches from now on (idempotent).
 * Blocks made before are plain malloc() blocks, as the cache's are. */
void jsond_alloc_install(void);

/* Frees the calling thread's cached blocks; what it frees later goes to
 * free() at once. For a thread whose end runs no destructor: the main
 * thread, before exit. */
void jsond_alloc_thread_done(void);

/* Blocks the calling thread's cache holds (for tests). */
size_t jsond_alloc_cached(void);

/* The allocator's two halves, as jansson calls them. */
void *jsond_alloc(size_t size);
void jsond_alloc_free(void *p);

#endif /* JSOND_ALLOC_H */
