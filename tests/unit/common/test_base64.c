/* Unit tests for cf_base64_decode: RFC 4648 §10 vectors padded and unpadded, binary output,
 * and each malformed form (bad character, misplaced or excess padding, impossible length,
 * small buffer); cf_base64_encode on the same vectors and round trips. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cf/base64.h"

static ssize_t dec(const char *s, uint8_t *out, size_t cap)
{
    return cf_base64_decode(s, strlen(s), out, cap);
}

static void test_vectors(void **state)
{
    (void)state;
    static const char *const v[][3] = {
        {"", "", ""},
        {"Zg==", "Zg", "f"},
        {"Zm8=", "Zm8", "fo"},
        {"Zm9v", "Zm9v", "foo"},
        {"Zm9vYg==", "Zm9vYg", "foob"},
        {"Zm9vYmE=", "Zm9vYmE", "fooba"},
        {"Zm9vYmFy", "Zm9vYmFy", "foobar"},
    };
    uint8_t out[16];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        for (int form = 0; form < 2; form++) {
            ssize_t n = dec(v[i][form], out, sizeof(out));
            assert_int_equal(n, (ssize_t)strlen(v[i][2]));
            assert_memory_equal(out, v[i][2], (size_t)n);
        }
    }
    /* "alice:s3cret", as docker config.json and nydusd's "auth" hold it */
    assert_int_equal(dec("YWxpY2U6czNjcmV0", out, sizeof(out)), 12);
    assert_memory_equal(out, "alice:s3cret", 12);
    /* binary bytes and the two last alphabet characters */
    assert_int_equal(dec("AP+/", out, sizeof(out)), 3);
    assert_memory_equal(out, "\x00\xff\xbf", 3);
    assert_true(cf_base64_decoded_max(4) >= 3 && cf_base64_decoded_max(3) >= 2);
}

static void test_malformed(void **state)
{
    (void)state;
    uint8_t out[16];
    assert_int_equal(dec("Zm9v!", out, sizeof(out)), -EINVAL);  /* bad character */
    assert_int_equal(dec("Zm 9v", out, sizeof(out)), -EINVAL);  /* whitespace */
    assert_int_equal(dec("Zm9v-_", out, sizeof(out)), -EINVAL); /* URL-safe alphabet */
    assert_int_equal(dec("Z", out, sizeof(out)), -EINVAL);      /* 6 bits: no byte */
    assert_int_equal(dec("Zm9vY", out, sizeof(out)), -EINVAL);
    assert_int_equal(dec("Zg=", out, sizeof(out)), -EINVAL);   /* padding short of a group */
    assert_int_equal(dec("Zg===", out, sizeof(out)), -EINVAL); /* three '=' */
    assert_int_equal(dec("Zm8==", out, sizeof(out)), -EINVAL); /* padding past the group */
    assert_int_equal(dec("Z=g=", out, sizeof(out)), -EINVAL);  /* '=' inside */
    assert_int_equal(dec("====", out, sizeof(out)), -EINVAL);
    assert_int_equal(dec("Zm9vYmFy", out, 5), -ENOSPC);
    assert_int_equal(dec("Zm9vYmFy", out, 6), 6);
}

static void test_encode(void **state)
{
    (void)state;
    static const char *const v[][2] = {
        {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},          {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
        {"alice:s3cret", "YWxpY2U6czNjcmV0"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t n = strlen(v[i][0]);
        assert_int_equal(cf_base64_encoded_size(n), strlen(v[i][1]) + 1);
        assert_int_equal(cf_base64_encode((const uint8_t *)v[i][0], n, out, sizeof(out)),
                         (ssize_t)strlen(v[i][1]));
        assert_string_equal(out, v[i][1]);
    }
    assert_int_equal(cf_base64_encode((const uint8_t *)"\x00\xff\xbf", 3, out, sizeof(out)), 4);
    assert_string_equal(out, "AP+/");
    assert_int_equal(cf_base64_encode((const uint8_t *)"foo", 3, out, 4), -ENOSPC);
    uint8_t all[256], back[256];
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    char enc[400];
    for (size_t n = 0; n <= 256; n += 37) {
        ssize_t e = cf_base64_encode(all, n, enc, sizeof(enc));
        assert_true(e >= 0);
        assert_int_equal(cf_base64_decode(enc, (size_t)e, back, sizeof(back)), (ssize_t)n);
        assert_memory_equal(back, all, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
