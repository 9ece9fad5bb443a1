/* 8-way AVX2 BLAKE3 chunk compression: eight 1 KiB chunks hashed in parallel lanes (one
 * chunk per 32-bit lane), so whole-chunk input runs several times faster than the portable
 * compressor. Written from the BLAKE3 specification; the portable path in blake3.c checks it
 * (tests compare both on every size class). Selected at run time by CPU support. */
#include "blake3_avx2.h"

#include <string.h>

#include "cf/blake3.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

enum { CHUNK_START = 1, CHUNK_END = 2 };

int cf_blake3_have_avx2(void)
{
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    return cached;
}

#define AVX2 __attribute__((target("avx2")))

AVX2 static inline __m256i rot16(__m256i x)
{
    return _mm256_shuffle_epi8(x, _mm256_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3,
                                                  2, 13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0,
                                                  3, 2));
}
AVX2 static inline __m256i rot8(__m256i x)
{
    return _mm256_shuffle_epi8(x, _mm256_set_epi8(12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2,
                                                  1, 12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3,
                                                  2, 1));
}
#define ROTR12(x) _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20))
#define ROTR7(x)  _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25))
#define GV(a, b, c, d, x, y)                                                                       \
    do {                                                                                           \
        v[a] = _mm256_add_epi32(_mm256_add_epi32(v[a], v[b]), x);                                  \
        v[d] = rot16(_mm256_xor_si256(v[d], v[a]));                                                \
        v[c] = _mm256_add_epi32(v[c], v[d]);                                                       \
        v[b] = ROTR12(_mm256_xor_si256(v[b], v[c]));                                               \
        v[a] = _mm256_add_epi32(_mm256_add_epi32(v[a], v[b]), y);                                  \
        v[d] = rot8(_mm256_xor_si256(v[d], v[a]));                                                 \
        v[c] = _mm256_add_epi32(v[c], v[d]);                                                       \
        v[b] = ROTR7(_mm256_xor_si256(v[b], v[c]));                                                \
    } while (0)

/* 8x8 transpose of 32-bit lanes: r[i] word j -> out[j] lane i. */
AVX2 static inline void transpose8(__m256i r[8])
{
    __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

AVX2 void cf_blake3_avx2_chunks8(const uint32_t key[8], const uint8_t *p, uint64_t counter,
                                 uint8_t out[8][32])
{
    __m256i h[8], v[16], m[16];
    for (int i = 0; i < 8; i++) h[i] = _mm256_set1_epi32((int)key[i]);
    int32_t lo[8], hi[8];
    for (int i = 0; i < 8; i++) { /* 64-bit counters: the high word may differ per lane */
        lo[i] = (int32_t)(uint32_t)(counter + (uint64_t)i);
        hi[i] = (int32_t)(uint32_t)((counter + (uint64_t)i) >> 32);
    }
    __m256i ctr_lo = _mm256_loadu_si256((const __m256i *)lo);
    __m256i ctr_hi = _mm256_loadu_si256((const __m256i *)hi);
    for (unsigned b = 0; b < 16; b++) {
        for (int half = 0; half < 2; half++) {
            __m256i r[8];
            for (int c = 0; c < 8; c++)
                r[c] = _mm256_loadu_si256((const __m256i *)(p + (size_t)c * CF_BLAKE3_CHUNK_LEN +
                                                            b * CF_BLAKE3_BLOCK_LEN + half * 32));
            transpose8(r);
            for (int j = 0; j < 8; j++) m[half * 8 + j] = r[j];
        }
        for (int i = 0; i < 8; i++) v[i] = h[i];
        for (int i = 0; i < 4; i++) v[8 + i] = _mm256_set1_epi32((int)cf_blake3_iv[i]);
        v[12] = ctr_lo;
        v[13] = ctr_hi;
        v[14] = _mm256_set1_epi32((int)CF_BLAKE3_BLOCK_LEN);
        v[15] = _mm256_set1_epi32((b == 0 ? CHUNK_START : 0) | (b == 15 ? CHUNK_END : 0));
        for (int rd = 0; rd < 7; rd++) {
            const uint8_t *s = cf_blake3_msg_schedule[rd];
            GV(0, 4, 8, 12, m[s[0]], m[s[1]]);
            GV(1, 5, 9, 13, m[s[2]], m[s[3]]);
            GV(2, 6, 10, 14, m[s[4]], m[s[5]]);
            GV(3, 7, 11, 15, m[s[6]], m[s[7]]);
            GV(0, 5, 10, 15, m[s[8]], m[s[9]]);
            GV(1, 6, 11, 12, m[s[10]], m[s[11]]);
            GV(2, 7, 8, 13, m[s[12]], m[s[13]]);
            GV(3, 4, 9, 14, m[s[14]], m[s[15]]);
        }
        for (int i = 0; i < 8; i++) h[i] = _mm256_xor_si256(v[i], v[i + 8]);
    }
    transpose8(h); /* h[c] = cv of chunk c; x86 is little-endian like the BLAKE3 output */
    for (int c = 0; c < 8; c++) _mm256_storeu_si256((__m256i *)out[c], h[c]);
}

#else
int cf_blake3_have_avx2(void)
{
    return 0;
}

void cf_blake3_avx2_chunks8(const uint32_t key[8], const uint8_t *input, uint64_t counter,
                            uint8_t out[8][32])
{
    (void)key, (void)input, (void)counter;
    memset(out, 0, 8 * 32);
}
#endif
