/* The default piece-size rule and piece arithmetic. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "peer/piece_size.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static void test_rule_table(void **state)
{
    (void)state;
    assert_int_equal(peer_piece_size_for(0), MiB);
    assert_int_equal(peer_piece_size_for(4096), MiB);
    assert_int_equal(peer_piece_size_for(100 * MiB), MiB);
    assert_int_equal(peer_piece_size_for(GiB), MiB);
    assert_int_equal(peer_piece_size_for(GiB + 1), 2 * MiB);
    assert_int_equal(peer_piece_size_for(2 * GiB), 2 * MiB);
    assert_int_equal(peer_piece_size_for(2 * GiB + 1), 4 * MiB);
    assert_int_equal(peer_piece_size_for(100 * GiB), 4 * MiB);
    assert_int_equal(peer_piece_size_for(UINT64_MAX), 4 * MiB);
    for (uint64_t len = 1; len < 64 * GiB; len = len * 3 + 7)
        assert_int_equal(peer_piece_size_check(peer_piece_size_for(len)), 0);
}

static void test_piece_arith(void **state)
{
    (void)state;
    assert_int_equal(peer_piece_count(0, 4096), 0);
    assert_int_equal(peer_piece_count(1, 4096), 1);
    assert_int_equal(peer_piece_count(4096, 4096), 1);
    assert_int_equal(peer_piece_count(4097, 4096), 2);
    assert_int_equal(peer_piece_len(4097, 4096, 0), 4096);
    assert_int_equal(peer_piece_len(4097, 4096, 1), 1);
    assert_int_equal(peer_piece_len(4097, 4096, 2), 0);
    assert_int_equal(peer_piece_len(8192, 4096, 1), 4096);
    assert_int_equal(peer_piece_size_check(4096), 0);
    assert_int_equal(peer_piece_size_check(64u << 20), 0);
    assert_int_equal(peer_piece_size_check(0), -EINVAL);
    assert_int_equal(peer_piece_size_check(4095), -EINVAL);
    assert_int_equal(peer_piece_size_check(6000), -EINVAL);
    assert_int_equal(peer_piece_size_check((64u << 20) + 4096), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_table),
        cmocka_unit_test(test_piece_arith),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
