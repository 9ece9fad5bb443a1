/* BLAKE3 (256-bit output, unkeyed hash mode), implemented from the public specification
 * because Debian 12 ships no libblake3. Streaming; the hasher is a plain value (no heap). */
#ifndef CF_BLAKE3_H
#define CF_BLAKE3_H

#include <stddef.h>
#include <stdint.h>

#define CF_BLAKE3_OUT_LEN   32
#define CF_BLAKE3_BLOCK_LEN 64
#define CF_BLAKE3_CHUNK_LEN 1024
#define CF_BLAKE3_MAX_DEPTH 54

typedef struct cf_blake3_chunk_state {
    uint32_t cv[8];
    uint64_t chunk_counter;
    uint8_t buf[CF_BLAKE3_BLOCK_LEN];
    uint8_t buf_len;
    uint8_t blocks_compressed;
    uint8_t flags;
} cf_blake3_chunk_state;

typedef struct cf_blake3_hasher {
    uint32_t key[8];
    cf_blake3_chunk_state chunk;
    uint8_t cv_stack_len;
    uint8_t cv_stack[(CF_BLAKE3_MAX_DEPTH + 1) * CF_BLAKE3_OUT_LEN];
} cf_blake3_hasher;

void cf_blake3_init(cf_blake3_hasher *h);
void cf_blake3_update(cf_blake3_hasher *h, const void *data, size_t len);
/* Writes `out_len` bytes of output (extendable output; 32 is the standard digest). Does not
 * modify the hasher, so more input may follow. */
void cf_blake3_final(const cf_blake3_hasher *h, uint8_t *out, size_t out_len);
/* One-shot convenience. */
void cf_blake3(const void *data, size_t len, uint8_t out[CF_BLAKE3_OUT_LEN]);

#endif
