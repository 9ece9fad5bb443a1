/* Helpers shared by the piece-store unit tests: temp cache dirs and deterministic blobs. */
#ifndef STORE_TEST_UTIL_H
#define STORE_TEST_UTIL_H

#include <ftw.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf/digest.h"
#include "peer/piece_store.h"

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/peerstore.XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

/* Deterministic content: byte i of blob `seed` (xorshift of the position, cheap and varied). */
static inline uint8_t blob_byte(uint32_t seed, uint64_t i)
{
    uint64_t x = (i / 8 + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed << 32 | seed);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (uint8_t)(x >> (8 * (i % 8)));
}

typedef struct test_blob {
    uint8_t *data;
    uint64_t len;
    uint8_t digest[PEER_DIGEST_LEN];
} test_blob;

static inline void test_blob_make(test_blob *b, uint32_t seed, uint64_t len)
{
    b->len = len;
    b->data = calloc(len ? len : 1, 1);
    for (uint64_t i = 0; i < len; i++) b->data[i] = blob_byte(seed, i);
    cf_sha256(b->data, len, b->digest);
}

static inline int write_piece_of(peer_store *s, const test_blob *b, uint32_t piece_size, uint32_t p)
{
    uint64_t off = (uint64_t)p * piece_size;
    uint32_t n = proto_piece_len(b->len, piece_size, p);
    return peer_store_write_piece(s, b->digest, p, b->data + off, n, NULL);
}

static inline peer_store *open_store(const char *dir, uint64_t high, uint64_t low)
{
    peer_store_opts o = {0};
    o.dir = dir;
    o.quota_high = high;
    o.quota_low = low;
    o.map_size = 64ull << 20;
    o.flush_pieces = 1000000; /* tests flush explicitly unless they say otherwise */
    o.flush_bytes = 1ull << 40;
    o.flush_delay_ms = 1000000;
    peer_store *s = NULL;
    cf_err e = {0};
    if (peer_store_open(&o, &s, &e)) fprintf(stderr, "open %s: %s\n", dir, e.msg);
    return s;
}

#endif
