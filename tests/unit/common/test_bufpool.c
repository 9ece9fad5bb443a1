/* Unit tests for cf_bufpool: a returned buffer is reused for a fitting size (not for one it is
 * more than twice as big as, nor too small for), capacities cover the request, the pool keeps
 * at most CF_BUFPOOL_MAX_BYTES, trim empties it, and concurrent get/put from threads is safe. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cf/bufpool.h"

static void test_reuse(void **state)
{
    (void)state;
    cf_bufpool_trim();
    uint8_t *a = cf_bufpool_get(1 << 20);
    assert_non_null(a);
    assert_true(cf_bufpool_cap(a) >= 1 << 20);
    assert_int_equal((uintptr_t)a % 64, 0);
    memset(a, 0xa5, 1 << 20);
    cf_bufpool_put(a);
    assert_int_equal(cf_bufpool_held(), cf_bufpool_cap(a));
    uint8_t *b = cf_bufpool_get((1 << 20) - 100); /* fits: the same buffer */
    assert_ptr_equal(a, b);
    assert_int_equal(cf_bufpool_held(), 0);
    cf_bufpool_put(b);
    uint8_t *small = cf_bufpool_get(4096); /* the 1 MiB one is more than twice too big */
    assert_ptr_not_equal(small, b);
    uint8_t *big = cf_bufpool_get(2 << 20); /* too small for this */
    assert_ptr_not_equal(big, b);
    assert_true(cf_bufpool_cap(big) >= 2 << 20);
    cf_bufpool_put(small);
    cf_bufpool_put(big);
    cf_bufpool_put(NULL);
    cf_bufpool_trim();
    assert_int_equal(cf_bufpool_held(), 0);
}

static void test_bounded(void **state)
{
    (void)state;
    cf_bufpool_trim();
    enum { N = 40 };
    void *v[N];
    for (int i = 0; i < N; i++) assert_non_null(v[i] = cf_bufpool_get(4 << 20));
    for (int i = 0; i < N; i++) cf_bufpool_put(v[i]);
    assert_true(cf_bufpool_held() <= CF_BUFPOOL_MAX_BYTES);
    assert_true(cf_bufpool_held() >= CF_BUFPOOL_MAX_BYTES - (4u << 20));
    cf_bufpool_trim();
    assert_int_equal(cf_bufpool_held(), 0);
}

static void *churn(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)(64 << 10) * (1 + i % 5);
        uint8_t *p = cf_bufpool_get(n);
        if (!p) return (void *)1;
        p[0] = p[n - 1] = (uint8_t)i;
        cf_bufpool_put(p);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t th[4];
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&th[i], NULL, churn, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_null(r);
    }
    assert_true(cf_bufpool_held() <= CF_BUFPOOL_MAX_BYTES);
    cf_bufpool_trim();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
