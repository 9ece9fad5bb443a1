/* BLAKE3 from the public specification (portable C, one compression function).
 * Tree hashing: 1024-byte chunks are compressed into chaining values that are merged
 * pairwise on a stack; the number of completed chunks decides how many merges happen, the
 * last (root) node is finalised lazily so that output can be extended. */
#include "cf/blake3.h"

#include "blake3_avx2.h"

#include <string.h>

enum {
    CHUNK_START = 1 << 0,
    CHUNK_END = 1 << 1,
    PARENT = 1 << 2,
    ROOT = 1 << 3,
};

const uint32_t cf_blake3_iv[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                                  0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};

const uint8_t cf_blake3_msg_schedule[7][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
    {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
    {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

static inline uint32_t rotr32(uint32_t w, unsigned c)
{
    return (w >> c) | (w << (32 - c));
}

static inline uint32_t load32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void store32(uint8_t *p, uint32_t w)
{
    p[0] = (uint8_t)w;
    p[1] = (uint8_t)(w >> 8);
    p[2] = (uint8_t)(w >> 16);
    p[3] = (uint8_t)(w >> 24);
}

static inline void g(uint32_t *s, int a, int b, int c, int d, uint32_t x, uint32_t y)
{
    s[a] = s[a] + s[b] + x;
    s[d] = rotr32(s[d] ^ s[a], 16);
    s[c] = s[c] + s[d];
    s[b] = rotr32(s[b] ^ s[c], 12);
    s[a] = s[a] + s[b] + y;
    s[d] = rotr32(s[d] ^ s[a], 8);
    s[c] = s[c] + s[d];
    s[b] = rotr32(s[b] ^ s[c], 7);
}

static void compress_state(uint32_t state[16], const uint32_t cv[8], const uint8_t block[64],
                           uint8_t block_len, uint64_t counter, uint8_t flags)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++) m[i] = load32(block + 4 * i);
    memcpy(state, cv, 32);
    state[8] = cf_blake3_iv[0];
    state[9] = cf_blake3_iv[1];
    state[10] = cf_blake3_iv[2];
    state[11] = cf_blake3_iv[3];
    state[12] = (uint32_t)counter;
    state[13] = (uint32_t)(counter >> 32);
    state[14] = block_len;
    state[15] = flags;
    for (int r = 0; r < 7; r++) {
        const uint8_t *s = cf_blake3_msg_schedule[r];
        g(state, 0, 4, 8, 12, m[s[0]], m[s[1]]);
        g(state, 1, 5, 9, 13, m[s[2]], m[s[3]]);
        g(state, 2, 6, 10, 14, m[s[4]], m[s[5]]);
        g(state, 3, 7, 11, 15, m[s[6]], m[s[7]]);
        g(state, 0, 5, 10, 15, m[s[8]], m[s[9]]);
        g(state, 1, 6, 11, 12, m[s[10]], m[s[11]]);
        g(state, 2, 7, 8, 13, m[s[12]], m[s[13]]);
        g(state, 3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
}

/* Compress in place: cv becomes the new chaining value. */
static void compress_in_place(uint32_t cv[8], const uint8_t block[64], uint8_t block_len,
                              uint64_t counter, uint8_t flags)
{
    uint32_t st[16];
    compress_state(st, cv, block, block_len, counter, flags);
    for (int i = 0; i < 8; i++) cv[i] = st[i] ^ st[i + 8];
}

/* Everything needed to produce (extendable) output from one node. */
typedef struct output {
    uint32_t cv[8];
    uint8_t block[64];
    uint8_t block_len;
    uint64_t counter;
    uint8_t flags;
} output;

static void output_cv(const output *o, uint8_t out[32])
{
    uint32_t cv[8];
    memcpy(cv, o->cv, 32);
    compress_in_place(cv, o->block, o->block_len, o->counter, o->flags);
    for (int i = 0; i < 8; i++) store32(out + 4 * i, cv[i]);
}

static void output_root_bytes(const output *o, uint8_t *out, size_t out_len)
{
    uint64_t block_counter = 0;
    while (out_len > 0) {
        uint32_t st[16];
        compress_state(st, o->cv, o->block, o->block_len, block_counter, o->flags | ROOT);
        uint8_t words[64];
        for (int i = 0; i < 8; i++) {
            store32(words + 4 * i, st[i] ^ st[i + 8]);
            store32(words + 32 + 4 * i, st[i + 8] ^ o->cv[i]);
        }
        size_t n = out_len < 64 ? out_len : 64;
        memcpy(out, words, n);
        out += n;
        out_len -= n;
        block_counter++;
    }
}

static void chunk_init(cf_blake3_chunk_state *c, const uint32_t key[8], uint64_t counter)
{
    memcpy(c->cv, key, 32);
    c->chunk_counter = counter;
    memset(c->buf, 0, sizeof(c->buf));
    c->buf_len = 0;
    c->blocks_compressed = 0;
    c->flags = 0;
}

static size_t chunk_len(const cf_blake3_chunk_state *c)
{
    return (size_t)CF_BLAKE3_BLOCK_LEN * c->blocks_compressed + c->buf_len;
}

static uint8_t chunk_start_flag(const cf_blake3_chunk_state *c)
{
    return c->blocks_compressed == 0 ? CHUNK_START : 0;
}

static void chunk_update(cf_blake3_chunk_state *c, const uint8_t *in, size_t len)
{
    while (len > 0) {
        if (c->buf_len == CF_BLAKE3_BLOCK_LEN) {
            compress_in_place(c->cv, c->buf, CF_BLAKE3_BLOCK_LEN, c->chunk_counter,
                              c->flags | chunk_start_flag(c));
            c->blocks_compressed++;
            c->buf_len = 0;
            memset(c->buf, 0, sizeof(c->buf));
        }
        size_t want = CF_BLAKE3_BLOCK_LEN - c->buf_len;
        size_t take = len < want ? len : want;
        memcpy(c->buf + c->buf_len, in, take);
        c->buf_len = (uint8_t)(c->buf_len + take);
        in += take;
        len -= take;
    }
}

static output chunk_output(const cf_blake3_chunk_state *c)
{
    output o;
    memcpy(o.cv, c->cv, 32);
    memcpy(o.block, c->buf, 64);
    o.block_len = c->buf_len;
    o.counter = c->chunk_counter;
    o.flags = c->flags | chunk_start_flag(c) | CHUNK_END;
    return o;
}

static output parent_output(const uint8_t left_right[64], const uint32_t key[8])
{
    output o;
    memcpy(o.cv, key, 32);
    memcpy(o.block, left_right, 64);
    o.block_len = CF_BLAKE3_BLOCK_LEN;
    o.counter = 0;
    o.flags = PARENT;
    return o;
}

void cf_blake3_init(cf_blake3_hasher *h)
{
    memcpy(h->key, cf_blake3_iv, 32);
    chunk_init(&h->chunk, h->key, 0);
    h->cv_stack_len = 0;
}

static void push_cv(cf_blake3_hasher *h, const uint8_t cv[32])
{
    memcpy(h->cv_stack + (size_t)h->cv_stack_len * 32, cv, 32);
    h->cv_stack_len++;
}

/* Merge completed subtrees: after chunk number `total_chunks` completes, there are as many
 * merges as trailing zero bits of total_chunks. */
static void add_chunk_cv(cf_blake3_hasher *h, uint8_t new_cv[32], uint64_t total_chunks)
{
    while ((total_chunks & 1) == 0) {
        h->cv_stack_len--;
        uint8_t block[64];
        memcpy(block, h->cv_stack + (size_t)h->cv_stack_len * 32, 32);
        memcpy(block + 32, new_cv, 32);
        output o = parent_output(block, h->key);
        output_cv(&o, new_cv);
        total_chunks >>= 1;
    }
    push_cv(h, new_cv);
}

void cf_blake3_update(cf_blake3_hasher *h, const void *data, size_t len)
{
    const uint8_t *in = data;
    while (len > 0) {
        if (chunk_len(&h->chunk) == CF_BLAKE3_CHUNK_LEN) {
            output o = chunk_output(&h->chunk);
            uint8_t cv[32];
            output_cv(&o, cv);
            uint64_t total = h->chunk.chunk_counter + 1;
            add_chunk_cv(h, cv, total);
            chunk_init(&h->chunk, h->key, total);
        }
        /* Fast path: at a chunk boundary with more than 8 whole chunks left (so the final
         * chunk, which must stay open for the root, is never among them), hash 8 at once. */
        while (chunk_len(&h->chunk) == 0 && len > 8 * CF_BLAKE3_CHUNK_LEN &&
               cf_blake3_have_avx2()) {
            uint8_t cvs[8][32];
            uint64_t ctr = h->chunk.chunk_counter;
            cf_blake3_avx2_chunks8(h->key, in, ctr, cvs);
            for (int i = 0; i < 8; i++) add_chunk_cv(h, cvs[i], ctr + (uint64_t)i + 1);
            chunk_init(&h->chunk, h->key, ctr + 8);
            in += 8 * CF_BLAKE3_CHUNK_LEN;
            len -= 8 * CF_BLAKE3_CHUNK_LEN;
        }
        size_t want = CF_BLAKE3_CHUNK_LEN - chunk_len(&h->chunk);
        size_t take = len < want ? len : want;
        chunk_update(&h->chunk, in, take);
        in += take;
        len -= take;
    }
}

void cf_blake3_final(const cf_blake3_hasher *h, uint8_t *out, size_t out_len)
{
    output o = chunk_output(&h->chunk);
    size_t remaining = h->cv_stack_len;
    while (remaining > 0) {
        remaining--;
        uint8_t block[64];
        memcpy(block, h->cv_stack + remaining * 32, 32);
        output_cv(&o, block + 32);
        o = parent_output(block, h->key);
    }
    output_root_bytes(&o, out, out_len);
}

void cf_blake3(const void *data, size_t len, uint8_t out[CF_BLAKE3_OUT_LEN])
{
    cf_blake3_hasher h;
    cf_blake3_init(&h);
    cf_blake3_update(&h, data, len);
    cf_blake3_final(&h, out, CF_BLAKE3_OUT_LEN);
}
