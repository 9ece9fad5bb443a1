/* The default piece-size rule (see peer/piece_size.h and docs/peer-cache.md "Piece size"). */
#include "peer/piece_size.h"

#include <errno.h>

uint32_t peer_piece_size_for(uint64_t content_length)
{
    /* One piece per KiB of blob, rounded up to a power of two, within [1 MiB, 4 MiB]. */
    uint64_t want = content_length / 1024 + (content_length % 1024 != 0);
    uint64_t p = PEER_PIECE_SIZE_MIN_DEFAULT;
    while (p < want && p < PEER_PIECE_SIZE_MAX_DEFAULT) p <<= 1;
    return (uint32_t)p;
}

uint64_t peer_piece_count(uint64_t length, uint32_t piece_size)
{
    if (piece_size == 0) return 0;
    return length / piece_size + (length % piece_size != 0);
}

uint32_t peer_piece_len(uint64_t length, uint32_t piece_size, uint64_t index)
{
    if (index >= peer_piece_count(length, piece_size)) return 0;
    uint64_t off = index * (uint64_t)piece_size;
    uint64_t rest = length - off;
    return rest < piece_size ? (uint32_t)rest : piece_size;
}

int peer_piece_size_check(uint32_t piece_size)
{
    if (piece_size < PEER_PIECE_SIZE_MIN || piece_size > PEER_PIECE_SIZE_MAX ||
        piece_size % PEER_PIECE_SIZE_ALIGN != 0)
        return -EINVAL;
    return 0;
}
