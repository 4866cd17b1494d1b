/* check_alloc: the small-block cache jansson allocates through: a freed
 * block serves the next allocation of its class on its thread, a class
 * keeps at most JSOND_ALLOC_DEPTH, big blocks and a finished thread do not
 * cache, and every block stays a malloc() block (free() takes it, and
 * json_dumps()'s text).
 *
 * Each test runs in a thread of its own: a thread's cache is its own, and
 * jsond_alloc_thread_done() ends caching on it for good. ASan and valgrind
 * runs check that a thread's end frees its cache.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

static void in_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, fn, arg), 0);
    void *failed = NULL;
    ck_assert_int_eq(pthread_join(t, &failed), 0);
    ck_assert_msg(failed == NULL, "%s", (const char *)failed);
}

/* A check in a test thread: the message comes back through join. */
#define T_CHECK(cond)                                                                              \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return (void *)(__FILE__ ": " #cond);                                                  \
    } while (0)

static void *reuse(void *arg)
{
    (void)arg;
    char *p = jsond_alloc(40);
    T_CHECK(p != NULL);
    memset(p, 'x', 40);
    jsond_alloc_free(p);
    T_CHECK(jsond_alloc_cached() == 1);
    /* Any size of its 16-byte class (33..48) gets it back. */
    char *q = jsond_alloc(33);
    T_CHECK(q == p);
    T_CHECK(jsond_alloc_cached() == 0);
    /* Another class does not. */
    jsond_alloc_free(q);
    char *r = jsond_alloc(100);
    T_CHECK(r != p);
    jsond_alloc_free(r);
    jsond_alloc_thread_done();
    return NULL;
}

START_TEST(test_a_freed_block_serves_its_class)
{
    in_thread(reuse, NULL);
}
END_TEST

static void *bounded(void *arg)
{
    (void)arg;
    void *blocks[JSOND_ALLOC_DEPTH + 10];
    for (size_t i = 0; i < sizeof blocks / sizeof *blocks; i++)
        T_CHECK((blocks[i] = jsond_alloc(24)) != NULL);
    for (size_t i = 0; i < sizeof blocks / sizeof *blocks; i++)
        jsond_alloc_free(blocks[i]);
    T_CHECK(jsond_alloc_cached() == JSOND_ALLOC_DEPTH);
    /* Past the last class: straight back to free(). */
    void *big = jsond_alloc(JSOND_ALLOC_SMALL + 16);
    T_CHECK(big != NULL);
    jsond_alloc_free(big);
    T_CHECK(jsond_alloc_cached() == JSOND_ALLOC_DEPTH);
    /* Done: the cache is freed, and nothing is cached after. */
    jsond_alloc_thread_done();
    T_CHECK(jsond_alloc_cached() == 0);
    void *p = jsond_alloc(24);
    jsond_alloc_free(p);
    T_CHECK(jsond_alloc_cached() == 0);
    return NULL;
}

START_TEST(test_a_class_keeps_at_most_depth)
{
    in_thread(bounded, NULL);
}
END_TEST

static void *cache_and_end(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++)
        jsond_alloc_free(jsond_alloc((size_t)(16 * (i + 1))));
    T_CHECK(jsond_alloc_cached() == 10);
    return NULL; /* the thread's end frees them: the leak checkers see */
}

START_TEST(test_a_thread_end_frees_its_cache)
{
    for (int i = 0; i < 3; i++)
        in_thread(cache_and_end, NULL);
}
END_TEST

static void *free_here(void *arg)
{
    jsond_alloc_free(arg);
    T_CHECK(jsond_alloc_cached() == 1); /* the freeing thread keeps it */
    jsond_alloc_thread_done();
    return NULL;
}

static void *cross(void *arg)
{
    (void)arg;
    void *p = jsond_alloc(64);
    T_CHECK(p != NULL);
    in_thread(free_here, p);
    T_CHECK(jsond_alloc_cached() == 0);
    return NULL;
}

START_TEST(test_a_block_freed_on_another_thread_is_cached_there)
{
    in_thread(cross, NULL);
}
END_TEST

static void *plain_blocks(void *arg)
{
    (void)arg;
    /* The cache's blocks are malloc()'s: free() takes them, and the cache
     * takes malloc()'s. */
    void *a = jsond_alloc(48);
    T_CHECK(a != NULL);
    free(a);
    void *b = malloc(48);
    T_CHECK(b != NULL);
    jsond_alloc_free(b);
    T_CHECK(jsond_alloc_cached() == 1);
    /* jansson through the cache: a module may free() json_dumps()'s text. */
    jsond_alloc_install();
    json_t *doc = json_pack("{s:i,s:s,s:[i,i]}", "a", 1, "b", "xy", "c", 2, 3);
    T_CHECK(doc != NULL);
    char *text = json_dumps(doc, JSON_COMPACT);
    T_CHECK(text != NULL && strcmp(text, "{\"a\":1,\"b\":\"xy\",\"c\":[2,3]}") == 0);
    free(text);
    json_decref(doc);
    T_CHECK(jsond_alloc_cached() > 1); /* the document's values */
    json_t *again = json_pack("{s:i,s:s}", "a", 1, "b", "xy");
    T_CHECK(again != NULL && json_integer_value(json_object_get(again, "a")) == 1);
    json_decref(again);
    jsond_alloc_thread_done();
    return NULL;
}

START_TEST(test_blocks_are_malloc_blocks)
{
    in_thread(plain_blocks, NULL);
}
END_TEST

static Suite *alloc_suite(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("alloc");
    tcase_add_test(tc, test_a_freed_block_serves_its_class);
    tcase_add_test(tc, test_a_class_keeps_at_most_depth);
    tcase_add_test(tc, test_a_thread_end_frees_its_cache);
    tcase_add_test(tc, test_a_block_freed_on_another_thread_is_cached_there);
    tcase_add_test(tc, test_blocks_are_malloc_blocks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(alloc_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
