/* Unit tests for proto/common: errors, numbers, config, hex, digests (incl. BLAKE3 vectors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cf/buf.h"
#include "cf/config.h"
#include "cf/digest.h"
#include "cf/error.h"
#include "cf/hex.h"
#include "cf/parse_number.h"

static void test_parse_size(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(cf_parse_size("64M", &v), 0);
    assert_int_equal(v, 64ull << 20);
    assert_int_equal(cf_parse_size("0x100000", &v), 0);
    assert_int_equal(v, 0x100000);
    assert_int_equal(cf_parse_size("10GiB", &v), 0);
    assert_int_equal(v, 10ull << 30);
    assert_int_equal(cf_parse_size("12", &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(cf_parse_size("12Q", &v), -EINVAL);
    assert_int_equal(cf_parse_size("", &v), -EINVAL);
    assert_int_equal(cf_parse_size("-1", &v), -EINVAL);
    assert_int_equal(cf_parse_size("99999999999999999T", &v), -ERANGE);
    assert_int_equal(cf_parse_duration_ms("500ms", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(cf_parse_duration_ms("2s", &v), 0);
    assert_int_equal(v, 2000);
}

static void test_config(void **state)
{
    (void)state;
    cf_config *c = cf_config_new();
    cf_err err = {0};
    assert_int_equal(cf_config_load_string(c,
                                           "# c\nlisten = 127.0.0.1:1\n[cache]\nquota = 1G\n"
                                           "scheduler = a\nscheduler = b\n",
                                           "t", &err),
                     0);
    assert_string_equal(cf_config_get(c, "listen"), "127.0.0.1:1");
    uint64_t q;
    assert_int_equal(cf_config_get_size(c, "cache.quota", 0, &q, &err), 0);
    assert_int_equal(q, 1ull << 30);
    assert_int_equal(cf_config_count(c, "cache.scheduler"), 2);
    assert_string_equal(cf_config_get_nth(c, "cache.scheduler", 1), "b");
    cf_config_set(c, "listen", "x");
    assert_string_equal(cf_config_get(c, "listen"), "x");
    const char *allowed[] = {"listen", "cache.quota", NULL};
    assert_int_equal(cf_config_check_keys(c, allowed, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "cache.scheduler"));
    assert_int_equal(cf_config_load_string(c, "novalue\n", "f.conf", &err), -EINVAL);
    assert_non_null(strstr(err.msg, "f.conf:1"));
    cf_config_free(c);

    /* flags over a file: a flag replaces the file's values, the list key adds up */
    cf_config *f = cf_config_new(), *fl = cf_config_new();
    assert_int_equal(
        cf_config_load_string(f, "root = /a\nhttp = h1\nhttp = h2\nlevel = info\n", "f", &err), 0);
    cf_config_set(fl, "root", "/b");
    cf_config_add(fl, "http", "h3");
    const char *keys[] = {"root", "http", "level", NULL};
    assert_int_equal(cf_config_override(f, fl, keys, "http"), 0);
    assert_string_equal(cf_config_get(f, "root"), "/b");
    assert_int_equal(cf_config_count(f, "root"), 1);
    assert_int_equal(cf_config_count(f, "http"), 3);
    assert_string_equal(cf_config_get_nth(f, "http", 2), "h3");
    assert_string_equal(cf_config_get(f, "level"), "info");
    cf_config_free(f);
    cf_config_free(fl);
}

static void test_hex_buf(void **state)
{
    (void)state;
    uint8_t in[3] = {0x00, 0xab, 0xff}, out[3];
    char s[7];
    cf_hex_encode(in, 3, s);
    assert_string_equal(s, "00abff");
    assert_int_equal(cf_hex_decode("00ABff", 6, out, 3), 0);
    assert_memory_equal(in, out, 3);
    assert_int_equal(cf_hex_decode("0g", 2, out, 1), -EINVAL);
    cf_buf b = {0};
    for (int i = 0; i < 1000; i++) assert_int_equal(cf_buf_append(&b, "xy", 2), 0);
    assert_int_equal(b.len, 2000);
    cf_buf_free(&b);
}

static void hex_of(enum cf_digest_algo a, const void *d, size_t n, char *out)
{
    uint8_t dg[32];
    assert_int_equal(cf_digest(a, d, n, dg), 0);
    cf_hex_encode(dg, 32, out);
}

static void test_sha256(void **state)
{
    (void)state;
    char h[65];
    hex_of(CF_DIGEST_SHA256, "abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* Official BLAKE3 test vectors (test_vectors.json): input byte i = i % 251. */
static void test_blake3_vectors(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        const char *hash;
    } v[] = {
        {0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
        {1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"},
        {1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"},
        {1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"},
        {1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"},
        {2048, "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a"},
        {2049, "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030"},
        {3072, "b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2"},
        {3073, "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3"},
        {4096, "015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969"},
        {4097, "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995"},
        {5120, "9cadc15fed8b5d854562b26a9536d9707cadeda9b143978f319ab34230535833"},
        {8192, "aae792484c8efe4f19e2ca7d371d8c467ffb10748d8a5a1ae579948f718a2a63"},
        {31744, "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47"},
        {102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085"},
    };
    uint8_t *in = malloc(102400);
    for (size_t i = 0; i < 102400; i++) in[i] = (uint8_t)(i % 251);
    for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
        char h[65];
        hex_of(CF_DIGEST_BLAKE3, in, v[k].len, h);
        if (strcmp(h, v[k].hash) != 0) fail_msg("len %zu: got %s want %s", v[k].len, h, v[k].hash);
        /* streaming in odd pieces must agree */
        cf_digest_ctx ctx;
        cf_digest_init(&ctx, CF_DIGEST_BLAKE3);
        for (size_t off = 0; off < v[k].len;) {
            size_t n = (off * 7 + 13) % 977 + 1;
            if (n > v[k].len - off) n = v[k].len - off;
            cf_digest_update(&ctx, in + off, n);
            off += n;
        }
        uint8_t dg[32];
        cf_digest_final(&ctx, dg);
        cf_hex_encode(dg, 32, h);
        assert_string_equal(h, v[k].hash);
    }
    free(in);
}

/* Portable BLAKE3 of `len` bytes fed in pieces of at most 997 bytes: never takes the 8-chunk
 * SIMD path (that needs more than 8 KiB in one update at a chunk boundary). */
static void blake3_portable(const uint8_t *p, size_t len, uint8_t out[32])
{
    cf_blake3_hasher h;
    cf_blake3_init(&h);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < 997 ? len - off : 997;
        cf_blake3_update(&h, p + off, n);
        off += n;
    }
    cf_blake3_final(&h, out, 32);
}

/* The 8-way SIMD path (used for large updates on CPUs with AVX2) must agree with the portable
 * compressor for every shape: chunk counts around 8-chunk batches, partial last chunks,
 * unaligned input, and batches that start at a non-zero chunk counter. */
static void test_blake3_simd_matches_portable(void **state)
{
    (void)state;
    size_t max = 4u << 20;
    uint8_t *p = malloc(max + 4096);
    assert_non_null(p);
    for (size_t i = 0; i < max + 4096; i++) p[i] = (uint8_t)(i * 2654435761u >> 13);
    size_t lens[] = {0,
                     1,
                     1023,
                     1024,
                     1025,
                     8 * 1024 - 1,
                     8 * 1024,
                     8 * 1024 + 1,
                     9 * 1024,
                     16 * 1024,
                     16 * 1024 + 1,
                     17 * 1024 + 5,
                     65536,
                     65536 + 64,
                     100000,
                     262144 - 1,
                     524288 + 1024,
                     1u << 20,
                     max - 1,
                     max};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (size_t off = 0; off < 2; off++) { /* aligned and unaligned input */
            uint8_t a[32], b[32], c[32];
            blake3_portable(p + off, lens[i], a);
            cf_blake3(p + off, lens[i], b); /* one update: SIMD batches from chunk 0 */
            if (memcmp(a, b, 32)) fail_msg("one-shot mismatch at len %zu off %zu", lens[i], off);
            /* 3 chunks first, then the rest in one update: batches start at counter 3 */
            cf_blake3_hasher h;
            cf_blake3_init(&h);
            size_t first = lens[i] < 3072 ? lens[i] : 3072;
            cf_blake3_update(&h, p + off, first);
            cf_blake3_update(&h, p + off + first, lens[i] - first);
            cf_blake3_final(&h, c, 32);
            if (memcmp(a, c, 32)) fail_msg("split mismatch at len %zu off %zu", lens[i], off);
        }
    }
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),     cmocka_unit_test(test_config),
        cmocka_unit_test(test_hex_buf),        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_blake3_vectors), cmocka_unit_test(test_blake3_simd_matches_portable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
