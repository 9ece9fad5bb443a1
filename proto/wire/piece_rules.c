/* The piece rules: the one piece-size rule, piece counts and lengths (proto/piece.h). */
#include "proto/piece.h"

#include <errno.h>

uint32_t proto_piece_size_for(uint64_t content_length)
{
    uint64_t ps;
    if (content_length <= PROTO_PIECE_RULE_SMALL_BLOB)
        ps = PROTO_PIECE_SIZE_SMALL;
    else if (content_length <= PROTO_PIECE_RULE_LARGE_BLOB)
        ps = PROTO_PIECE_SIZE_MEDIUM;
    else
        ps = PROTO_PIECE_SIZE_LARGE;
    /* huge blobs: keep the bitmap within PROTO_PIECE_RULE_MAX_PIECES */
    while (ps < PROTO_MAX_PIECE_SIZE &&
           proto_piece_count(content_length, (uint32_t)ps) > PROTO_PIECE_RULE_MAX_PIECES)
        ps *= 2;
    return (uint32_t)ps;
}

int proto_piece_size_check(uint32_t piece_size)
{
    if (piece_size < PROTO_MIN_PIECE_SIZE || piece_size > PROTO_MAX_PIECE_SIZE) return -EINVAL;
    if (piece_size & (piece_size - 1)) return -EINVAL;
    return 0;
}

uint64_t proto_piece_count(uint64_t content_length, uint32_t piece_size)
{
    if (piece_size == 0) return 0;
    return content_length / piece_size + (content_length % piece_size != 0);
}

uint32_t proto_piece_len(uint64_t content_length, uint32_t piece_size, uint32_t index)
{
    if (piece_size == 0) return 0;
    uint64_t start = (uint64_t)index * piece_size;
    if (start >= content_length) return 0;
    uint64_t left = content_length - start;
    return left < piece_size ? (uint32_t)left : piece_size;
}

int proto_piece_layout(uint64_t content_length, uint32_t piece_size, uint32_t *count, cf_err *err)
{
    if (proto_piece_size_check(piece_size) < 0)
        return cf_err_set(err, -EINVAL, "piece size %u is not a power of two in [%u, %u]",
                          piece_size, PROTO_MIN_PIECE_SIZE, PROTO_MAX_PIECE_SIZE);
    uint64_t n = proto_piece_count(content_length, piece_size);
    if (n > PROTO_MAX_PIECES)
        return cf_err_set(err, -EINVAL, "%llu bytes in %u-byte pieces make %llu pieces (max %u)",
                          (unsigned long long)content_length, piece_size, (unsigned long long)n,
                          PROTO_MAX_PIECES);
    *count = (uint32_t)n;
    return 0;
}

uint32_t proto_bits_count(const uint8_t *bits, uint32_t nbits)
{
    uint32_t n = 0;
    size_t full = nbits / 8;
    for (size_t i = 0; i < full; i++) n += (uint32_t)__builtin_popcount(bits[i]);
    for (uint32_t i = (uint32_t)full * 8; i < nbits; i++) n += proto_bit_get(bits, i);
    return n;
}
