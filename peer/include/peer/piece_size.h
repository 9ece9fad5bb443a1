/* The default piece-size rule: how a blob of a given length is cut into pieces.
 *
 * The scheduler decides a task's piece size (every peer of a task must agree on it); this is
 * the documented default it, the seed and the peer cache all use when nothing else is given.
 * Justification and measurements: docs/peer-cache.md, "Piece size".
 *
 *   length <= 1 GiB          -> 1 MiB   (a lazy 4 KiB read pulls about one Nydus chunk)
 *   1 GiB < length <= 2 GiB  -> 2 MiB
 *   length > 2 GiB           -> 4 MiB   (cap: keeps random reads of huge blobs cheap)
 *
 * i.e. next_pow2(ceil(length / 1024)) clamped to [PEER_PIECE_SIZE_MIN_DEFAULT,
 * PEER_PIECE_SIZE_MAX_DEFAULT]. Pure functions, thread-safe, usable on the loop thread. */
#ifndef PEER_PIECE_SIZE_H
#define PEER_PIECE_SIZE_H

#include <stdint.h>

#define PEER_PIECE_SIZE_MIN_DEFAULT (1u << 20) /* 1 MiB */
#define PEER_PIECE_SIZE_MAX_DEFAULT (4u << 20) /* 4 MiB */
/* Limits any piece size must respect (the store refuses others with -EINVAL). */
#define PEER_PIECE_SIZE_MIN   (4u << 10)  /* 4 KiB */
#define PEER_PIECE_SIZE_MAX   (64u << 20) /* 64 MiB */
#define PEER_PIECE_SIZE_ALIGN (4u << 10)  /* piece sizes are multiples of 4 KiB */

/* Default piece size for a blob of `content_length` bytes (see table above). Never 0. */
uint32_t peer_piece_size_for(uint64_t content_length);

/* Number of pieces of a blob: ceil(length / piece_size); 0 for an empty blob. piece_size must
 * be non-zero. */
uint64_t peer_piece_count(uint64_t length, uint32_t piece_size);

/* Length of piece `index` (the last one may be short); 0 when index is out of range. */
uint32_t peer_piece_len(uint64_t length, uint32_t piece_size, uint64_t index);

/* 0 when piece_size is within [PEER_PIECE_SIZE_MIN, PEER_PIECE_SIZE_MAX] and a multiple of
 * PEER_PIECE_SIZE_ALIGN, else -EINVAL. */
int peer_piece_size_check(uint32_t piece_size);

#endif
