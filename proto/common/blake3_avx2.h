/* Internal to cf: BLAKE3 constants and the 8-way AVX2 chunk compressor used by blake3.c. */
#ifndef CF_BLAKE3_AVX2_H
#define CF_BLAKE3_AVX2_H

#include <stdint.h>

extern const uint32_t cf_blake3_iv[8];
extern const uint8_t cf_blake3_msg_schedule[7][16];

/* True when this CPU runs the AVX2 path (checked once). */
int cf_blake3_have_avx2(void);

/* Chaining values of 8 consecutive whole 1 KiB chunks at `input`, with chunk counters
 * counter..counter+7, keyed by `key` (the IV for plain hashing). out[i] is the 32-byte
 * little-endian cv of chunk i. Only call when cf_blake3_have_avx2(). */
void cf_blake3_avx2_chunks8(const uint32_t key[8], const uint8_t *input, uint64_t counter,
                            uint8_t out[8][32]);

#endif
