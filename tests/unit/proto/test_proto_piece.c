/* Piece rules and the piece bitmap: set/test/count, wire bytes, deltas as runs, applying runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/piece.h"

static void test_piece_rules(void **state)
{
    (void)state;
    assert_int_equal(proto_piece_size_check(4u << 20), 0);
    assert_int_equal(proto_piece_size_check(64u << 10), 0);
    assert_int_equal(proto_piece_size_check(16u << 20), 0);
    assert_int_equal(proto_piece_size_check(32u << 20), -EINVAL);
    assert_int_equal(proto_piece_size_check(32u << 10), -EINVAL);
    assert_int_equal(proto_piece_size_check(3u << 20), -EINVAL);
    assert_int_equal(proto_piece_count(0, 1u << 20), 0);
    assert_int_equal(proto_piece_count(1, 1u << 20), 1);
    assert_int_equal(proto_piece_count(1u << 20, 1u << 20), 1);
    assert_int_equal(proto_piece_count((1u << 20) + 1, 1u << 20), 2);
    assert_int_equal(proto_piece_len((1u << 20) + 5, 1u << 20, 0), 1u << 20);
    assert_int_equal(proto_piece_len((1u << 20) + 5, 1u << 20, 1), 5);
    assert_int_equal(proto_piece_len((1u << 20) + 5, 1u << 20, 2), 0);
    uint32_t n;
    cf_err err = {0};
    assert_int_equal(proto_piece_layout(10ull << 30, 4u << 20, &n, &err), 0);
    assert_int_equal(n, 2560);
    /* 1 PiB in 64 KiB pieces: too many */
    assert_int_equal(proto_piece_layout(1ull << 50, 64u << 10, &n, &err), -EINVAL);
    assert_int_equal(proto_piece_layout(100, 5000, &n, &err), -EINVAL);
}

static void test_bitmap_basic(void **state)
{
    (void)state;
    proto_bitmap b = {0};
    assert_int_equal(proto_bitmap_count(&b), 0);
    assert_int_equal(proto_bitmap_init(&b, 21), 0);
    assert_int_equal(proto_bitmap_nbytes(21), 3);
    assert_false(proto_bitmap_test(&b, 0));
    assert_int_equal(proto_bitmap_set(&b, 0), 0);
    assert_int_equal(proto_bitmap_set(&b, 20), 0);
    assert_int_equal(proto_bitmap_set(&b, 21), -ERANGE);
    assert_false(proto_bitmap_test(&b, 21));
    assert_false(proto_bitmap_test(&b, UINT32_MAX));
    assert_true(proto_bitmap_test(&b, 20));
    assert_int_equal(b.bits[2], 0x10); /* LSB-first */
    assert_int_equal(proto_bitmap_count(&b), 2);
    assert_int_equal(proto_bitmap_next_clear(&b, 0), 1);
    for (uint32_t i = 0; i < 21; i++) proto_bitmap_set(&b, i);
    assert_true(proto_bitmap_full(&b));
    assert_int_equal(proto_bitmap_next_clear(&b, 0), UINT32_MAX);
    assert_int_equal(proto_bitmap_clear(&b, 17), 0);
    assert_int_equal(proto_bitmap_next_clear(&b, 3), 17);
    assert_int_equal(proto_bitmap_count(&b), 20);
    proto_bitmap_free(&b);
    assert_int_equal(proto_bitmap_init(&b, PROTO_MAX_PIECES + 1), -EINVAL);
    assert_int_equal(proto_bitmap_init(&b, 0), 0);
    assert_true(proto_bitmap_full(&b));
    proto_bitmap_free(&b);
}

static void test_bitmap_bytes(void **state)
{
    (void)state;
    proto_bitmap b;
    cf_err err = {0};
    uint8_t ok[2] = {0xff, 0x01};
    assert_int_equal(proto_bitmap_from_bytes(&b, 9, ok, 2, &err), 0);
    assert_int_equal(proto_bitmap_count(&b), 9);
    proto_bitmap_free(&b);
    uint8_t spill[2] = {0xff, 0x02};
    assert_int_equal(proto_bitmap_from_bytes(&b, 9, spill, 2, &err), -EBADMSG);
    assert_int_equal(proto_bitmap_from_bytes(&b, 9, ok, 1, &err), -EBADMSG);
    assert_int_equal(proto_bitmap_from_bytes(&b, 9, ok, 3, &err), -EBADMSG);
    assert_int_equal(proto_bitmap_from_bytes(&b, 0, ok, 0, &err), 0);
    proto_bitmap_free(&b);
}

static void test_bitmap_delta(void **state)
{
    (void)state;
    proto_bitmap before, now, re;
    assert_int_equal(proto_bitmap_init(&before, 100), 0);
    assert_int_equal(proto_bitmap_init(&now, 100), 0);
    proto_bitmap_set(&before, 5);
    for (uint32_t i = 3; i < 10; i++) proto_bitmap_set(&now, i);
    proto_bitmap_set(&now, 50);
    proto_bitmap_set(&now, 99);
    proto_piece_run *runs;
    size_t n;
    assert_int_equal(proto_bitmap_delta(&before, &now, &runs, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(runs[0].start, 3);
    assert_int_equal(runs[0].count, 2);
    assert_int_equal(runs[1].start, 6);
    assert_int_equal(runs[1].count, 4);
    assert_int_equal(runs[2].start, 50);
    assert_int_equal(runs[3].start, 99);
    assert_int_equal(proto_runs_total(runs, n), 8);
    /* before + delta == now | before */
    assert_int_equal(proto_bitmap_init(&re, 100), 0);
    proto_bitmap_set(&re, 5);
    assert_int_equal(proto_bitmap_apply_runs(&re, runs, n, NULL), 0);
    assert_int_equal(proto_bitmap_or(&now, &before), 0);
    assert_memory_equal(re.bits, now.bits, proto_bitmap_nbytes(100));
    free(runs);
    /* all set pieces */
    assert_int_equal(proto_bitmap_delta(NULL, &now, &runs, &n), 0);
    assert_int_equal(n, 3);
    free(runs);
    /* no change */
    assert_int_equal(proto_bitmap_delta(&now, &now, &runs, &n), 0);
    assert_int_equal(n, 0);
    assert_null(runs);
    /* bad runs leave the bitmap untouched */
    proto_piece_run bad[] = {{0, 1}, {99, 2}};
    proto_bitmap_free(&re);
    proto_bitmap_init(&re, 100);
    cf_err err = {0};
    assert_int_equal(proto_bitmap_apply_runs(&re, bad, 2, &err), -ERANGE);
    assert_int_equal(proto_bitmap_count(&re), 0);
    proto_piece_run zero[] = {{0, 0}};
    assert_int_equal(proto_bitmap_apply_runs(&re, zero, 1, &err), -ERANGE);
    proto_piece_run wrap[] = {{UINT32_MAX, 2}};
    assert_int_equal(proto_bitmap_apply_runs(&re, wrap, 1, &err), -ERANGE);
    /* size mismatch */
    proto_bitmap other;
    proto_bitmap_init(&other, 8);
    assert_int_equal(proto_bitmap_delta(&other, &now, &runs, &n), -EINVAL);
    assert_int_equal(proto_bitmap_or(&other, &now), -EINVAL);
    proto_bitmap_free(&other);
    proto_bitmap_free(&re);
    proto_bitmap_free(&before);
    proto_bitmap_free(&now);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_piece_rules),
        cmocka_unit_test(test_bitmap_basic),
        cmocka_unit_test(test_bitmap_bytes),
        cmocka_unit_test(test_bitmap_delta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
