/* Upload bandwidth token bucket: rate, burst, debt, wait times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "peer/token_bucket.h"

static void test_unlimited(void **state)
{
    (void)state;
    peer_token_bucket b;
    peer_token_bucket_init(&b, 0, 0, 0);
    for (int i = 0; i < 1000; i++) assert_true(peer_token_bucket_take(&b, 16u << 20, 0));
    assert_int_equal(peer_token_bucket_wait_ms(&b, 0), 0);
}

static void test_rate_and_debt(void **state)
{
    (void)state;
    peer_token_bucket b;
    /* 1 MB/s, burst 256 KB: a 1 MB piece passes on a positive balance, then waits out its debt */
    peer_token_bucket_init(&b, 1000000, 256000, 1000);
    assert_true(peer_token_bucket_take(&b, 1000000, 1000));
    assert_false(peer_token_bucket_take(&b, 1, 1000));
    uint64_t w = peer_token_bucket_wait_ms(&b, 1000);
    assert_true(w >= 744 && w <= 746); /* debt 744000 bytes at 1 MB/s */
    assert_false(peer_token_bucket_take(&b, 1, 1000 + w - 2));
    assert_true(peer_token_bucket_take(&b, 1, 1000 + w));
}

static void test_long_run_rate(void **state)
{
    (void)state;
    peer_token_bucket b;
    peer_token_bucket_init(&b, 4000000, 1000000, 0);
    uint64_t sent = 0, now = 0;
    while (now < 10000) {
        if (peer_token_bucket_take(&b, 65536, now))
            sent += 65536;
        else
            now += peer_token_bucket_wait_ms(&b, now);
    }
    /* 10 s at 4 MB/s plus one burst and one piece of slack */
    assert_true(sent >= 39000000 && sent <= 41100000);
}

static void test_idle_caps_at_burst(void **state)
{
    (void)state;
    peer_token_bucket b;
    peer_token_bucket_init(&b, 1000, 5000, 0);
    assert_true(peer_token_bucket_take(&b, 5000, 0));
    /* an hour idle refills only to the burst */
    assert_true(peer_token_bucket_take(&b, 5000, 3600000));
    assert_false(peer_token_bucket_take(&b, 1, 3600000));
    /* clock going backwards changes nothing */
    assert_false(peer_token_bucket_take(&b, 1, 10));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_rate_and_debt),
        cmocka_unit_test(test_long_run_rate),
        cmocka_unit_test(test_idle_caps_at_burst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
