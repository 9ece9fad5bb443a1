/* Piece rules (the one piece-size rule and its limits) and the piece bitmap.
 *
 * A task (one blob, id "sha256:<hex>") is split into pieces of `piece_size` bytes, chosen by the
 * scheduler (authoritative; every peer uses the size from its REGISTER_ANSWER). Piece i covers
 * bytes [i*piece_size, min((i+1)*piece_size, content_length)); only the last may be shorter.
 * piece_size is a power of two in [PROTO_MIN_PIECE_SIZE, PROTO_MAX_PIECE_SIZE] and a task has at
 * most PROTO_MAX_PIECES pieces (so a full bitmap fits in one frame body). These are the only
 * limits: the scheduler, the peer's cache and the tools all check sizes with
 * proto_piece_size_check().
 *
 * The default rule (proto_piece_size_for), used by the scheduler when it registers a task and by
 * a peer that fetches a blob without a scheduler (so its cache can be shared later):
 *   length <= 1 GiB          -> 1 MiB   (a lazy 4 KiB read pulls about one Nydus chunk)
 *   1 GiB < length <= 4 GiB  -> 2 MiB
 *   length > 4 GiB           -> 4 MiB, doubled while the blob would have > 2^20 pieces
 * Why: docs/peer-cache.md, "Piece size".
 *
 * Bitmap wire form: ceil(n/8) bytes, piece i = bit (i % 8) of byte i / 8 (LSB first); bits past
 * n must be zero. Runs (proto_piece_run) describe sets of pieces compactly (deltas, grants).
 *
 * proto_bitmap owns its `bits` (proto_bitmap_free). Not thread-safe; no global state. */
#ifndef PROTO_PIECE_H
#define PROTO_PIECE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

#define PROTO_MIN_PIECE_SIZE (64u << 10)
#define PROTO_MAX_PIECE_SIZE (16u << 20) /* == PROTO_MAX_PAYLOAD */
#define PROTO_MAX_PIECES     (1u << 22)  /* bitmap <= 512 KiB */

/* The default rule's steps (see above). */
#define PROTO_PIECE_SIZE_SMALL      (1u << 20) /* 1 MiB */
#define PROTO_PIECE_SIZE_MEDIUM     (2u << 20) /* 2 MiB */
#define PROTO_PIECE_SIZE_LARGE      (4u << 20) /* 4 MiB */
#define PROTO_PIECE_RULE_SMALL_BLOB (1ull << 30)
#define PROTO_PIECE_RULE_LARGE_BLOB (4ull << 30)
#define PROTO_PIECE_RULE_MAX_PIECES (1u << 20)

/* The default piece size for a blob of content_length bytes (table above); always passes
 * proto_piece_size_check(). Pure. */
uint32_t proto_piece_size_for(uint64_t content_length);

/* 0 if piece_size is a power of two within limits, else -EINVAL. */
int proto_piece_size_check(uint32_t piece_size);
/* ceil(content_length / piece_size); piece_size must be > 0. Returns UINT64_MAX-safe value. */
uint64_t proto_piece_count(uint64_t content_length, uint32_t piece_size);
/* Length of piece `index` (0 if index is past the end). */
uint32_t proto_piece_len(uint64_t content_length, uint32_t piece_size, uint32_t index);
/* Checks piece_size and that the piece count is <= PROTO_MAX_PIECES; fills *count.
 * Returns 0 or -EINVAL (message in err). */
int proto_piece_layout(uint64_t content_length, uint32_t piece_size, uint32_t *count, cf_err *err);

/* The one bit layout, for every piece bitmap in the project (wire, cache index, tasks): piece
 * i = bit (i % 8) of byte i / 8. No bounds checks: callers own the sizes. */
static inline bool proto_bit_get(const uint8_t *bits, uint32_t i)
{
    return (bits[i >> 3] >> (i & 7)) & 1u;
}
static inline void proto_bit_set(uint8_t *bits, uint32_t i)
{
    bits[i >> 3] |= (uint8_t)(1u << (i & 7));
}
static inline void proto_bit_clear(uint8_t *bits, uint32_t i)
{
    bits[i >> 3] &= (uint8_t) ~(1u << (i & 7));
}
/* Set bits among the first nbits. */
uint32_t proto_bits_count(const uint8_t *bits, uint32_t nbits);

typedef struct proto_piece_run {
    uint32_t start;
    uint32_t count; /* >= 1 */
} proto_piece_run;

typedef struct proto_bitmap {
    uint8_t *bits;  /* owned; ceil(nbits/8) bytes */
    uint32_t nbits; /* number of pieces */
} proto_bitmap;

/* Bytes of a bitmap of n pieces: ceil(n/8). */
size_t proto_bitmap_nbytes(uint32_t nbits);

/* All-clear bitmap of nbits (0..PROTO_MAX_PIECES). Returns 0, -EINVAL (too many), -ENOMEM.
 * A zero-initialised proto_bitmap is a valid empty bitmap. */
int proto_bitmap_init(proto_bitmap *b, uint32_t nbits);
void proto_bitmap_free(proto_bitmap *b);
/* Copies wire bytes (untrusted): len must equal proto_bitmap_nbytes(nbits) and bits past nbits
 * must be zero. Returns 0, -EBADMSG (message in err), -EINVAL, -ENOMEM. */
int proto_bitmap_from_bytes(proto_bitmap *b, uint32_t nbits, const uint8_t *bytes, size_t len,
                            cf_err *err);

/* Index checks: set/clear return -ERANGE when i >= nbits; test returns false then. */
int proto_bitmap_set(proto_bitmap *b, uint32_t i);
int proto_bitmap_clear(proto_bitmap *b, uint32_t i);
bool proto_bitmap_test(const proto_bitmap *b, uint32_t i);
uint32_t proto_bitmap_count(const proto_bitmap *b);
bool proto_bitmap_full(const proto_bitmap *b);
/* First clear bit at or after `from`, or UINT32_MAX. */
uint32_t proto_bitmap_next_clear(const proto_bitmap *b, uint32_t from);
/* dst |= src (same nbits, else -EINVAL). */
int proto_bitmap_or(proto_bitmap *dst, const proto_bitmap *src);

/* Runs of set pieces in `now` that are not set in `before` (before may be NULL = empty; same
 * nbits, else -EINVAL). *runs is malloc'ed (caller frees; NULL when *n_runs == 0).
 * Returns 0 or -ENOMEM/-EINVAL. Use proto_bitmap_delta(NULL, b, ...) for "all set pieces". */
int proto_bitmap_delta(const proto_bitmap *before, const proto_bitmap *now, proto_piece_run **runs,
                       size_t *n_runs);
/* Sets every piece in runs. Untrusted runs: each must have count >= 1 and end <= nbits, checked
 * before anything changes. Returns 0 or -ERANGE (message in err). */
int proto_bitmap_apply_runs(proto_bitmap *b, const proto_piece_run *runs, size_t n_runs,
                            cf_err *err);
/* Total pieces covered by runs (saturating at UINT64_MAX never happens for valid runs). */
uint64_t proto_runs_total(const proto_piece_run *runs, size_t n_runs);

#endif
