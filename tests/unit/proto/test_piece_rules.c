/* The one piece-size rule and its limits (proto/piece.h), used by the scheduler, the wire and
 * the peer cache: table boundaries (1, 2 and 4 GiB, each +-1 byte), empty and tiny blobs, the
 * doubling for huge blobs, the limits check, piece counts and lengths, and the bit layout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/piece.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define TiB (1ull << 40)

/* What every result of the rule must satisfy. */
static void check_rule_result(uint64_t len)
{
    uint32_t ps = proto_piece_size_for(len);
    assert_int_equal(proto_piece_size_check(ps), 0);
    assert_true(ps >= PROTO_PIECE_SIZE_SMALL);
    uint64_t n = proto_piece_count(len, ps);
    if (len <= (uint64_t)PROTO_MAX_PIECE_SIZE * PROTO_PIECE_RULE_MAX_PIECES) {
        /* within the cap: at most 2^20 pieces, and the smallest doubling that gets there */
        assert_true(n <= PROTO_PIECE_RULE_MAX_PIECES);
        if (ps > PROTO_PIECE_SIZE_LARGE)
            assert_true(proto_piece_count(len, ps / 2) > PROTO_PIECE_RULE_MAX_PIECES);
    } else {
        assert_int_equal(ps, PROTO_MAX_PIECE_SIZE); /* capped; layout refuses past the max */
    }
    /* the layout agrees whenever the count is representable */
    uint32_t count = 0;
    cf_err err = {0};
    if (n <= PROTO_MAX_PIECES) {
        assert_int_equal(proto_piece_layout(len, ps, &count, &err), 0);
        assert_int_equal(count, n);
    } else {
        assert_int_equal(proto_piece_layout(len, ps, &count, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "pieces"));
    }
}

static void test_table_boundaries(void **state)
{
    (void)state;
    /* empty and tiny blobs */
    assert_int_equal(proto_piece_size_for(0), 1 * MiB);
    assert_int_equal(proto_piece_size_for(1), 1 * MiB);
    assert_int_equal(proto_piece_size_for(4096), 1 * MiB);
    /* 1 GiB: the last 1 MiB size */
    assert_int_equal(proto_piece_size_for(1 * GiB - 1), 1 * MiB);
    assert_int_equal(proto_piece_size_for(1 * GiB), 1 * MiB);
    assert_int_equal(proto_piece_size_for(1 * GiB + 1), 2 * MiB);
    /* 2 GiB is no boundary (an older peer-only rule moved to 4 MiB past 2 GiB) */
    assert_int_equal(proto_piece_size_for(2 * GiB - 1), 2 * MiB);
    assert_int_equal(proto_piece_size_for(2 * GiB), 2 * MiB);
    assert_int_equal(proto_piece_size_for(2 * GiB + 1), 2 * MiB);
    /* 4 GiB: the last 2 MiB size */
    assert_int_equal(proto_piece_size_for(4 * GiB - 1), 2 * MiB);
    assert_int_equal(proto_piece_size_for(4 * GiB), 2 * MiB);
    assert_int_equal(proto_piece_size_for(4 * GiB + 1), 4 * MiB);
    assert_int_equal(proto_piece_size_for(100 * GiB), 4 * MiB);
    uint64_t lens[] = {0,           1,           4096,     1 * GiB - 1, 1 * GiB,
                       1 * GiB + 1, 2 * GiB - 1, 2 * GiB,  2 * GiB + 1, 4 * GiB - 1,
                       4 * GiB,     4 * GiB + 1, 100 * GiB};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) check_rule_result(lens[i]);
}

static void test_huge_blobs_double(void **state)
{
    (void)state;
    /* 4 MiB pieces up to 2^20 of them (4 TiB), then doubled while the count is above 2^20 */
    assert_int_equal(proto_piece_size_for(4 * TiB - 1), 4 * MiB);
    assert_int_equal(proto_piece_size_for(4 * TiB), 4 * MiB);
    assert_int_equal(proto_piece_count(4 * TiB, 4 * MiB), PROTO_PIECE_RULE_MAX_PIECES);
    assert_int_equal(proto_piece_size_for(4 * TiB + 1), 8 * MiB);
    assert_int_equal(proto_piece_size_for(8 * TiB), 8 * MiB);
    assert_int_equal(proto_piece_size_for(8 * TiB + 1), 16 * MiB);
    assert_int_equal(proto_piece_size_for(16 * TiB), 16 * MiB);
    /* past 16 TiB the size stays at the cap: more pieces, up to PROTO_MAX_PIECES (64 TiB) */
    assert_int_equal(proto_piece_size_for(16 * TiB + 1), PROTO_MAX_PIECE_SIZE);
    assert_int_equal(proto_piece_size_for(64 * TiB), PROTO_MAX_PIECE_SIZE);
    assert_int_equal(proto_piece_size_for(UINT64_MAX), PROTO_MAX_PIECE_SIZE);
    uint32_t n;
    assert_int_equal(proto_piece_layout(64 * TiB, PROTO_MAX_PIECE_SIZE, &n, NULL), 0);
    assert_int_equal(n, PROTO_MAX_PIECES);
    assert_int_equal(proto_piece_layout(64 * TiB + 1, PROTO_MAX_PIECE_SIZE, &n, NULL), -EINVAL);

    /* Every length 2^k - 1, 2^k, 2^k + 1 (and UINT64_MAX): valid sizes, within 2^20 pieces up
     * to the cap, never smaller for a longer blob. */
    uint32_t prev = 0;
    for (int k = 0; k < 64; k++) {
        uint64_t p = 1ull << k;
        uint64_t v[3] = {p - 1, p, p + 1};
        for (int j = 0; j < 3; j++) {
            check_rule_result(v[j]);
            uint32_t ps = proto_piece_size_for(v[j]);
            assert_true(ps >= prev);
            prev = ps;
        }
    }
    check_rule_result(UINT64_MAX);
    check_rule_result(UINT64_MAX - 1);
}

static void test_size_limits(void **state)
{
    (void)state;
    assert_int_equal(proto_piece_size_check(PROTO_MIN_PIECE_SIZE), 0);
    assert_int_equal(proto_piece_size_check(PROTO_MAX_PIECE_SIZE), 0);
    for (uint32_t ps = PROTO_MIN_PIECE_SIZE; ps <= PROTO_MAX_PIECE_SIZE; ps *= 2)
        assert_int_equal(proto_piece_size_check(ps), 0);
    uint32_t bad[] = {0,
                      1,
                      4096, /* an older peer-only minimum */
                      PROTO_MIN_PIECE_SIZE - 1,
                      PROTO_MIN_PIECE_SIZE / 2,
                      PROTO_MIN_PIECE_SIZE + 4096, /* multiple of 4 KiB, not a power of two */
                      3u << 20,
                      (1u << 20) + 1,
                      PROTO_MAX_PIECE_SIZE + 1,
                      PROTO_MAX_PIECE_SIZE * 2u,
                      64u << 20, /* an older peer-only maximum */
                      1u << 31,
                      UINT32_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(proto_piece_size_check(bad[i]), -EINVAL);
    uint32_t n;
    cf_err err = {0};
    assert_int_equal(proto_piece_layout(100, 4096, &n, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "power of two"));
}

static void test_counts_and_lengths(void **state)
{
    (void)state;
    assert_int_equal(proto_piece_count(0, 1 * MiB), 0);
    assert_int_equal(proto_piece_count(1, 1 * MiB), 1);
    assert_int_equal(proto_piece_count(1 * MiB - 1, 1 * MiB), 1);
    assert_int_equal(proto_piece_count(1 * MiB, 1 * MiB), 1);
    assert_int_equal(proto_piece_count(1 * MiB + 1, 1 * MiB), 2);
    assert_int_equal(proto_piece_count(5, 0), 0); /* no piece size: no pieces */
    assert_int_equal(proto_piece_count(UINT64_MAX, 1), UINT64_MAX);
    assert_int_equal(proto_piece_count(UINT64_MAX, PROTO_MAX_PIECE_SIZE), (UINT64_MAX >> 24) + 1);

    /* At the rule's boundaries: counts and the last (short) piece. */
    struct {
        uint64_t len;
        uint32_t ps;
        uint64_t count;
        uint32_t last;
    } c[] = {
        {1, 1 * MiB, 1, 1},
        {1 * GiB - 1, 1 * MiB, 1024, 1 * MiB - 1},
        {1 * GiB, 1 * MiB, 1024, 1 * MiB},
        {1 * GiB + 1, 2 * MiB, 513, 1},
        {2 * GiB - 1, 2 * MiB, 1024, 2 * MiB - 1},
        {2 * GiB, 2 * MiB, 1024, 2 * MiB},
        {2 * GiB + 1, 2 * MiB, 1025, 1},
        {4 * GiB - 1, 2 * MiB, 2048, 2 * MiB - 1},
        {4 * GiB, 2 * MiB, 2048, 2 * MiB},
        {4 * GiB + 1, 4 * MiB, 1025, 1},
        {4 * TiB + 1, 8 * MiB, 524289, 1},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        assert_int_equal(proto_piece_size_for(c[i].len), c[i].ps);
        assert_int_equal(proto_piece_count(c[i].len, c[i].ps), c[i].count);
        uint32_t last = (uint32_t)(c[i].count - 1);
        assert_int_equal(proto_piece_len(c[i].len, c[i].ps, last), c[i].last);
        if (last) assert_int_equal(proto_piece_len(c[i].len, c[i].ps, last - 1), c[i].ps);
        assert_int_equal(proto_piece_len(c[i].len, c[i].ps, last + 1), 0);
        assert_int_equal(proto_piece_len(c[i].len, c[i].ps, UINT32_MAX), 0);
        /* the pieces add up to the blob */
        if (c[i].count <= 4096) {
            uint64_t sum = 0;
            for (uint32_t p = 0; p < c[i].count; p++) sum += proto_piece_len(c[i].len, c[i].ps, p);
            assert_int_equal(sum, c[i].len);
        }
    }
    assert_int_equal(proto_piece_len(0, 1 * MiB, 0), 0);
    assert_int_equal(proto_piece_len(100, 0, 0), 0);
    /* the last index a 32-bit piece number reaches, on the longest blob */
    assert_int_equal(proto_piece_len(UINT64_MAX, PROTO_MAX_PIECE_SIZE, UINT32_MAX),
                     PROTO_MAX_PIECE_SIZE);
}

static void test_bit_layout(void **state)
{
    (void)state;
    assert_int_equal(proto_bitmap_nbytes(0), 0);
    assert_int_equal(proto_bitmap_nbytes(1), 1);
    assert_int_equal(proto_bitmap_nbytes(8), 1);
    assert_int_equal(proto_bitmap_nbytes(9), 2);
    assert_int_equal(proto_bitmap_nbytes(PROTO_MAX_PIECES), PROTO_MAX_PIECES / 8);
    uint8_t bits[3] = {0};
    proto_bit_set(bits, 0);
    proto_bit_set(bits, 9);
    proto_bit_set(bits, 23);
    /* piece i = bit i % 8 of byte i / 8, LSB first */
    assert_int_equal(bits[0], 0x01);
    assert_int_equal(bits[1], 0x02);
    assert_int_equal(bits[2], 0x80);
    assert_true(proto_bit_get(bits, 9));
    assert_false(proto_bit_get(bits, 8));
    assert_int_equal(proto_bits_count(bits, 24), 3);
    assert_int_equal(proto_bits_count(bits, 23), 2); /* only the first nbits count */
    assert_int_equal(proto_bits_count(bits, 10), 2);
    proto_bit_clear(bits, 9);
    assert_false(proto_bit_get(bits, 9));
    assert_int_equal(bits[1], 0);
    assert_int_equal(proto_bits_count(bits, 24), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_boundaries), cmocka_unit_test(test_huge_blobs_double),
        cmocka_unit_test(test_size_limits),      cmocka_unit_test(test_counts_and_lengths),
        cmocka_unit_test(test_bit_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
