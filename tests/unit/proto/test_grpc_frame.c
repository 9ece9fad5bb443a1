/* gRPC message framing: prefix encoding, a message cut at every byte boundary, the empty body,
 * the limit checked on the prefix (before allocating), compressed and bad flags, a second
 * message, truncated bodies, and grpc-message percent-encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cf/grpc.h"
#include "grpc_frame.h"

static void test_prefix_encode(void **state)
{
    (void)state;
    uint8_t p[CF_GRPC_PREFIX_LEN];
    cf_grpc_prefix_encode(p, 0x01020304);
    assert_memory_equal(p, "\x00\x01\x02\x03\x04", 5);
    cf_grpc_prefix_encode(p, 0);
    assert_memory_equal(p, "\x00\x00\x00\x00\x00", 5);
}

/* "\0\0\0\0\5hello" fed in two pieces split at every position gives "hello". */
static void test_split_everywhere(void **state)
{
    (void)state;
    const uint8_t wire[] = "\x00\x00\x00\x00\x05hello";
    size_t n = sizeof(wire) - 1;
    for (size_t cut = 0; cut <= n; cut++) {
        cf_grpc_reader r;
        cf_grpc_reader_init(&r, 100);
        assert_int_equal(cf_grpc_reader_feed(&r, wire, cut, NULL), 0);
        assert_int_equal(cf_grpc_reader_feed(&r, wire + cut, n - cut, NULL), 0);
        const uint8_t *m;
        size_t len;
        assert_int_equal(cf_grpc_reader_end(&r, &m, &len, NULL), 0);
        assert_int_equal(len, 5);
        assert_memory_equal(m, "hello", 5);
        cf_grpc_reader_free(&r);
    }
}

static void test_empty(void **state)
{
    (void)state;
    const uint8_t *m;
    size_t len = 99;
    cf_grpc_reader r;
    /* no body at all: a zero-length message */
    cf_grpc_reader_init(&r, 10);
    assert_int_equal(cf_grpc_reader_end(&r, &m, &len, NULL), 0);
    assert_int_equal(len, 0);
    assert_non_null(m);
    cf_grpc_reader_free(&r);
    /* an explicit zero-length message */
    cf_grpc_reader_init(&r, 0);
    assert_int_equal(cf_grpc_reader_feed(&r, (const uint8_t *)"\0\0\0\0\0", 5, NULL), 0);
    assert_int_equal(cf_grpc_reader_end(&r, &m, &len, NULL), 0);
    assert_int_equal(len, 0);
    cf_grpc_reader_free(&r);
}

static void test_limit(void **state)
{
    (void)state;
    cf_grpc_reader r;
    cf_err err = {0};
    cf_grpc_reader_init(&r, 4);
    assert_int_equal(cf_grpc_reader_feed(&r, (const uint8_t *)"\0\0\0\0\4abcd", 9, NULL), 0);
    cf_grpc_reader_free(&r);
    /* 4 GiB - 1 announced: refused on the prefix, nothing allocated */
    cf_grpc_reader_init(&r, 4);
    assert_int_equal(cf_grpc_reader_feed(&r, (const uint8_t *)"\0\xff\xff\xff\xff", 5, &err),
                     -EMSGSIZE);
    assert_null(r.msg.data);
    assert_non_null(strstr(err.msg, "4294967295"));
    assert_int_equal(cf_grpc_status_of_errno(-EMSGSIZE), CF_GRPC_RESOURCE_EXHAUSTED);
    cf_grpc_reader_free(&r);
    cf_grpc_reader_init(&r, 4);
    assert_int_equal(cf_grpc_reader_feed(&r, (const uint8_t *)"\0\0\0\0\5", 5, NULL), -EMSGSIZE);
    cf_grpc_reader_free(&r);
}

/* Readers sharing a budget: the second message that does not fit is refused on its prefix;
 * freeing a reader gives its bytes back. */
static void test_budget(void **state)
{
    (void)state;
    size_t budget = 10;
    cf_grpc_reader a, b;
    cf_err err = {0};
    cf_grpc_reader_init(&a, 100);
    cf_grpc_reader_init(&b, 100);
    a.budget = b.budget = &budget;
    assert_int_equal(cf_grpc_reader_feed(&a, (const uint8_t *)"\0\0\0\0\6ab", 7, NULL), 0);
    assert_int_equal(budget, 4);
    assert_int_equal(cf_grpc_reader_feed(&b, (const uint8_t *)"\0\0\0\0\5", 5, &err), -EMSGSIZE);
    assert_non_null(strstr(err.msg, "leave only 4 bytes"));
    assert_null(b.msg.data);
    cf_grpc_reader_free(&b);
    assert_int_equal(budget, 4);
    cf_grpc_reader_free(&a);
    assert_int_equal(budget, 10);
    cf_grpc_reader_free(&a); /* twice: nothing more given back */
    assert_int_equal(budget, 10);
    cf_grpc_reader_init(&b, 100);
    b.budget = &budget;
    assert_int_equal(cf_grpc_reader_feed(&b, (const uint8_t *)"\0\0\0\0\5", 5, NULL), 0);
    assert_int_equal(budget, 5);
    cf_grpc_reader_free(&b);
    assert_int_equal(budget, 10);
}

static void test_flags(void **state)
{
    (void)state;
    cf_grpc_reader r;
    cf_err err = {0};
    cf_grpc_reader_init(&r, 100);
    assert_int_equal(cf_grpc_reader_feed(&r, (const uint8_t *)"\1\0\0\0\1x", 6, &err), -ENOTSUP);
    assert_non_null(strstr(err.msg, "compressed"));
    assert_int_equal(cf_grpc_status_of_errno(-ENOTSUP), CF_GRPC_UNIMPLEMENTED);
    cf_grpc_reader_free(&r);
    cf_grpc_reader_init(&r, 100);
    assert_int_equal(cf_grpc_reader_feed(&r, (const uint8_t *)"\2\0\0\0\1x", 6, NULL), -EBADMSG);
    assert_int_equal(cf_grpc_status_of_errno(-EBADMSG), CF_GRPC_INTERNAL);
    cf_grpc_reader_free(&r);
}

static void test_second_message(void **state)
{
    (void)state;
    cf_grpc_reader r;
    cf_err err = {0};
    cf_grpc_reader_init(&r, 100);
    assert_int_equal(cf_grpc_reader_feed(&r, (const uint8_t *)"\0\0\0\0\1a\0\0\0\0\1b", 12, &err),
                     -EBADMSG);
    assert_non_null(strstr(err.msg, "more than one"));
    cf_grpc_reader_free(&r);
    /* even a zero-length first message */
    cf_grpc_reader_init(&r, 100);
    assert_int_equal(cf_grpc_reader_feed(&r, (const uint8_t *)"\0\0\0\0\0\0", 6, NULL), -EBADMSG);
    cf_grpc_reader_free(&r);
}

static void test_truncated(void **state)
{
    (void)state;
    const uint8_t *m;
    size_t len;
    cf_grpc_reader r;
    cf_err err = {0};
    cf_grpc_reader_init(&r, 100);
    assert_int_equal(cf_grpc_reader_feed(&r, (const uint8_t *)"\0\0\0", 3, NULL), 0);
    assert_int_equal(cf_grpc_reader_end(&r, &m, &len, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "prefix"));
    cf_grpc_reader_free(&r);
    cf_grpc_reader_init(&r, 100);
    assert_int_equal(cf_grpc_reader_feed(&r, (const uint8_t *)"\0\0\0\0\4ab", 7, NULL), 0);
    assert_int_equal(cf_grpc_reader_end(&r, &m, &len, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "2 of 4"));
    cf_grpc_reader_free(&r);
}

static void test_percent_encode(void **state)
{
    (void)state;
    cf_buf b = {0};
    assert_int_equal(cf_grpc_percent_encode(&b, "ok 100% \xc3\xa9t\xc3\xa9\n~", 100), 0);
    assert_string_equal((char *)b.data, "ok 100%25 %C3%A9t%C3%A9%0A~");
    assert_int_equal(b.len, strlen((char *)b.data) + 1);
    cf_buf_reset(&b);
    assert_int_equal(cf_grpc_percent_encode(&b, "abcdef", 3), 0);
    assert_string_equal((char *)b.data, "abc");
    cf_buf_reset(&b);
    assert_int_equal(cf_grpc_percent_encode(&b, "", 3), 0);
    assert_string_equal((char *)b.data, "");
    cf_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_encode),  cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_empty),          cmocka_unit_test(test_limit),
        cmocka_unit_test(test_budget),         cmocka_unit_test(test_flags),
        cmocka_unit_test(test_second_message), cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_percent_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
