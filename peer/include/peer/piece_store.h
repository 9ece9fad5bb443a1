/* peer_store: the peer's content-addressed, crash-safe piece cache.
 *
 * One sparse data file per blob (<dir>/data/<2 hex>/<64 hex>, ftruncate'd to the blob length,
 * pieces written at their offsets) plus an LMDB index (<dir>/index/) that records, per blob:
 * length, piece size, the bitmap of durable pieces, verified flag, pin count, last access,
 * origin reference, and optionally the per-piece digest list. Design, on-disk format, crash
 * reasoning and the piece-size justification: docs/peer-cache.md.
 *
 * Blobs are keyed by their OCI digest, which for every blob we cache is SHA-256: callers pass
 * the 32 raw bytes (decode "sha256:<hex>" with cf_hex_decode first).
 *
 * PIECES. The piece rules are proto's (proto/piece.h), the same for the scheduler, the wire and
 * the cache: the default size proto_piece_size_for(length), the limits proto_piece_size_check()
 * (a power of two in [PROTO_MIN_PIECE_SIZE, PROTO_MAX_PIECE_SIZE]) and at most PROTO_MAX_PIECES
 * pieces, counts and lengths from proto_piece_count/proto_piece_len, and the bitmap layout
 * (proto_bit_get: piece i = bit i%8 of byte i/8). Index records with a piece size outside these
 * limits (written by older versions) are dropped at open, and their blobs fetched again.
 *
 * PIECE STATES. A piece is "written" once peer_store_write_piece() returned 0: its bytes are
 * complete in the data file (page cache) and it may be read, leased and announced. It becomes
 * "durable" at the next flush: fdatasync of the data file, then one LMDB commit setting its
 * bit. Only durable pieces are recorded in the index, so after a crash (kill -9, power loss)
 * the index never claims a piece whose bytes were not fully on disk; written-but-not-durable
 * pieces are simply fetched again. Flushes are batched: see peer_store_opts.flush_*.
 *
 * THREADS. A peer_store is one object shared by all threads. Every function is thread-safe.
 * Functions marked [blocking] may do disk I/O, fdatasync or an LMDB commit: call them from the
 * libuv thread pool (uv_queue_work), never on the loop thread. Functions marked [memory] only
 * touch in-memory state under a short internal mutex (never held across disk I/O) and are fine
 * on the loop thread. Internally, one "index" mutex serialises every change to the LMDB index
 * (LMDB has a single writer anyway) and a "state" mutex guards memory; piece bytes are read,
 * written and hashed outside both, so many pool threads can move data at once.
 *
 * ERRORS. Functions return 0 or a negative errno; those taking `cf_err *err` (may be NULL)
 * also fill a message naming the blob and what was wrong. Common codes: -EINVAL (bad
 * argument), -ENOENT (blob not in the cache), -ENODATA (piece not present), -EBADMSG (content
 * does not match its digest), -EBUSY (blob pinned/in use, or cache dir locked by another
 * process), -ENOSPC (index map or disk full), -EIO and other errnos from the kernel.
 *
 * OWNERSHIP. Strings and arrays passed in are copied; nothing passed in is kept. Arrays the
 * store returns (peer_store_list, peer_store_get_piece_digests) are malloc'd and freed by the
 * caller with free(). */
#ifndef PEER_PIECE_STORE_H
#define PEER_PIECE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cf/digest.h"
#include "cf/error.h"
#include "proto/piece.h"

#define PEER_DIGEST_LEN 32
/* Longest origin reference kept (including the NUL); longer ones are refused (-ENAMETOOLONG). */
#define PEER_ORIGIN_MAX 2048

typedef struct peer_store peer_store;
/* An in-use reference to one blob (see peer_store_blob_acquire). */
typedef struct peer_blob_ref peer_blob_ref;

typedef struct peer_store_opts {
    const char *dir;     /* cache directory; created if missing (required) */
    uint64_t quota_high; /* evict when cached bytes exceed this; 0 = no quota */
    uint64_t quota_low;  /* ... down to this (<= quota_high; 0 with a quota = 90% of high) */
    uint64_t map_size;   /* LMDB map size (sparse); 0 = 1 GiB */
    /* Automatic flush thresholds, checked after each written piece: flush when this many
     * pieces (0 = 64) or bytes (0 = 64 MiB) are pending, or the oldest pending piece is older
     * than flush_delay_ms (0 = 200 ms). The daemon should also call peer_store_flush() from a
     * timer every flush_delay_ms so a quiet store does not keep pieces pending. */
    uint32_t flush_pieces;
    uint64_t flush_bytes;
    uint32_t flush_delay_ms;
    uint32_t max_open_files; /* idle data-file descriptors kept open (0 = 256) */
} peer_store_opts;

/* One blob as the cache sees it (a snapshot: it may change right after it is returned). */
typedef struct peer_blob_info {
    uint8_t digest[PEER_DIGEST_LEN];
    uint64_t length;
    uint32_t piece_size;
    uint32_t piece_count;
    uint32_t pieces_written; /* readable now (durable + pending) */
    uint32_t pieces_durable; /* recorded in the index */
    uint64_t bytes_written;  /* sum of the written pieces' lengths */
    int complete;            /* all pieces written */
    int verified;            /* whole-blob SHA-256 matched (peer_store_verify/mark_verified) */
    int has_piece_digests;   /* a per-piece digest list is stored */
    int is_private;          /* its origin refused an anonymous read (peer_store_set_private) */
    uint32_t pin_count;      /* persistent pins */
    uint32_t in_use;         /* current acquire()/lease references (not persistent) */
    uint64_t created_ms;     /* Unix time in ms */
    uint64_t last_access_ms; /* Unix time in ms: last read, lease or write */
    char origin[PEER_ORIGIN_MAX]; /* origin reference (URL, "registry/repo"), may be "" */
} peer_blob_info;

typedef struct peer_store_stats {
    uint64_t bytes_used;        /* sum of written pieces of all blobs (what the quota counts) */
    uint64_t bytes_pending;     /* written, not yet durable */
    uint64_t blobs_atime_dirty; /* blobs whose last access awaits a flush (LRU after restart) */
    uint64_t blobs;
    uint64_t blobs_complete;
    uint64_t blobs_verified;
    uint64_t quota_high, quota_low;
    /* Counters since open: */
    uint64_t read_hits, read_misses; /* peer_store_read calls served / refused -ENODATA */
    uint64_t bytes_read;
    uint64_t leases; /* peer_store_lease_piece successes */
    uint64_t pieces_written;
    uint64_t bytes_written;
    uint64_t flushes; /* LMDB commits made by flushes */
    uint64_t evictions, bytes_evicted;
    uint64_t purges;
    /* Written pieces lost because the fdatasync of their data file failed (monotonic since
     * open). Such pieces are removed from the written bitmap and are absent again: they must
     * be fetched and written again. A daemon that announced them (to the scheduler or to
     * children) should notice this counter grow and re-read the bitmap of its blobs with
     * peer_store_bitmap(). Other blobs of the same flush are not affected. */
    uint64_t pieces_dropped;
} peer_store_stats;

/* A present piece handed out for zero-copy sending (sendfile(sock, fd, &offset, length)).
 * While the lease is held the blob is "in use": it is never evicted and `fd` stays open and
 * valid even if the blob is purged meanwhile (the unlinked file stays readable). Do not close
 * `fd`; release the lease with peer_store_lease_release() exactly once. */
typedef struct peer_piece_lease {
    int fd;
    uint64_t offset; /* byte offset of the piece in the blob and in fd */
    uint32_t length; /* piece length (the last piece may be short) */
    uint32_t piece;  /* piece index */
    void *priv;      /* internal */
} peer_piece_lease;

/* --- lifetime --- */

/* [blocking] Opens (creating if needed) the cache at opts->dir and recovers it: takes an
 * exclusive lock on <dir>/lock (-EBUSY if another process holds it), loads the index,
 * removes data files that have no index entry, re-creates missing data files (their pieces are
 * then marked absent) and clears stale LMDB readers. *out is freed by peer_store_close(). */
int peer_store_open(const peer_store_opts *opts, peer_store **out, cf_err *err);

/* [blocking] Flushes pending pieces and access times, then frees everything. All leases and
 * acquired references must have been released; the store must not be used by other threads
 * any more. NULL is a no-op. */
void peer_store_close(peer_store *s);

/* --- blobs --- */

/* [blocking] Creates the blob entry (data file preallocated as a sparse file of `length`
 * bytes, index record committed) or returns the existing one. piece_size 0 means
 * proto_piece_size_for(length); any other size must pass proto_piece_size_check() (-EINVAL)
 * and give at most PROTO_MAX_PIECES pieces (-EFBIG). For an existing blob `length` must match
 * (else -EEXIST: the same digest cannot have two lengths) and piece_size must match unless 0
 * (else -EEXIST: the caller must use the cached piece size, reported in *info). A non-empty
 * `origin` (may be NULL) replaces the stored one. info may be NULL. */
int peer_store_blob_open(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], uint64_t length,
                         uint32_t piece_size, const char *origin, peer_blob_info *info,
                         cf_err *err);

/* [memory] Snapshot of one blob. -ENOENT when not cached. */
int peer_store_blob_info(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN],
                         peer_blob_info *info);

/* [memory] Copies the written-pieces bitmap: bit i (byte i/8, bit i%8, LSB first) is set when
 * piece i is written. `bits_len` must be >= (piece_count+7)/8 (else -ERANGE, with
 * *piece_count set so the caller can size the buffer). piece_count may not be NULL. */
int peer_store_bitmap(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], uint8_t *bits,
                      size_t bits_len, uint32_t *piece_count);

/* [blocking] Writes one whole piece (`len` must equal its length) and marks it written.
 * If a per-piece digest list is stored, the bytes are checked first (-EBADMSG on mismatch,
 * nothing written). Writing an already written piece is a no-op returning 0. May run an
 * automatic flush and eviction; a failure of that flush is logged, not returned (the piece is
 * written and stays pending; peer_store_flush reports the error). -ENOENT if the blob is not
 * cached.
 * Full disk: when the write fails with ENOSPC (or EDQUOT), least-recently-used blobs that are
 * neither pinned nor in use (never this blob) are evicted until the file system has room for
 * the piece, and the write is retried once; if it still fails the result is -ENOSPC (message
 * names the cache directory and what was evicted) and the piece is not written. */
int peer_store_write_piece(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], uint32_t piece,
                           const void *data, size_t len, cf_err *err);

/* [blocking] Makes every written piece durable (one fdatasync per dirty data file, then one
 * LMDB commit) and persists batched last-access times; then evicts if over quota. Cheap when
 * nothing is pending.
 * A failed fdatasync affects only its own blob: that blob's written-but-not-durable pieces
 * are dropped (absent again, counted in peer_store_stats.pieces_dropped) while every other
 * blob of the flush is committed as usual; the flush then returns the error (-EIO, ...) naming
 * the blob. If the commit itself fails, nothing is lost: the pieces stay written and pending
 * for the next flush. A commit that fails because the file system is full (not the index map)
 * first evicts unused blobs as peer_store_write_piece does, then is tried once more. */
int peer_store_flush(peer_store *s, cf_err *err);

/* [blocking] Reads `len` bytes at `off` of the blob into buf. Succeeds only when every piece
 * overlapping the range is written; otherwise returns -ENODATA and lists the missing pieces
 * in missing[0..missing_cap) (missing may be NULL), their total count in *n_missing (may be
 * NULL). -EINVAL if the range is outside the blob. Updates last access (batched). */
int peer_store_read(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], uint64_t off, void *buf,
                    size_t len, uint32_t *missing, size_t missing_cap, size_t *n_missing,
                    cf_err *err);

/* [memory] Leases a written piece for zero-copy upload (see peer_piece_lease). Opens the data
 * file if it is not open (that one open(2) is the only I/O). -ENODATA if the piece is not
 * written, -ENOENT if the blob is unknown, -EINVAL if piece is out of range. */
int peer_store_lease_piece(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], uint32_t piece,
                           peer_piece_lease *lease, cf_err *err);
/* [memory] Ends a lease; lease->fd must not be used afterwards. */
void peer_store_lease_release(peer_store *s, peer_piece_lease *lease);

/* [memory] In-use reference for a download or upload in progress: while held the blob is
 * never evicted (a purge still removes it; the reference then points at the removed blob and
 * only keeps its memory alive). *ref is released exactly once with peer_store_blob_release;
 * it names this blob instance, so a blob purged and re-created meanwhile is not confused with
 * it. -ENOENT if not cached. */
int peer_store_blob_acquire(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN],
                            peer_blob_ref **ref);
/* [memory] NULL is a no-op. */
void peer_store_blob_release(peer_store *s, peer_blob_ref *ref);

/* [blocking] Persistent pins: a pinned blob is never evicted (e.g. images the node must keep).
 * unpin of an unpinned blob returns -EINVAL. */
int peer_store_pin(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], cf_err *err);
int peer_store_unpin(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], cf_err *err);

/* --- integrity --- */

/* [blocking] Verifies the whole blob: all pieces must be written (-ENODATA otherwise); flushes
 * them, hashes the data file with SHA-256 and compares with the blob digest. Match: marks the
 * blob verified (committed) and returns 0. Mismatch: purges the blob and returns -EBADMSG with
 * both digests in the message. */
int peer_store_verify(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], cf_err *err);

/* [blocking] Marks the blob verified without re-reading it, for callers that hashed the bytes
 * while streaming them in. All pieces must be written (-ENODATA); they are flushed first. */
int peer_store_mark_verified(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], cf_err *err);

/* [blocking] Records whether the blob's origin refused an anonymous read (is_private = 1) or
 * allowed it (0), so that a restarted daemon still knows a held blob is private while its
 * registry cannot be asked. Committed only when it changes. -ENOENT when not cached. */
int peer_store_set_private(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], int is_private,
                           cf_err *err);

/* [blocking] Stores the per-piece digest list (count must equal piece_count, -EINVAL else).
 * Meant for a trusted list (computed after the whole-blob digest matched, or bound to it);
 * from then on every written piece is checked against it. Replaces a previous list. */
int peer_store_set_piece_digests(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN],
                                 enum cf_digest_algo algo, const uint8_t *digests, uint32_t count,
                                 cf_err *err);

/* [blocking] Fetches the whole list (*out malloc'd, count*32 bytes, caller frees) or one entry.
 * -ENOENT if the blob is unknown, -ENODATA if it has no list. */
int peer_store_get_piece_digests(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN],
                                 enum cf_digest_algo *algo, uint8_t **out, uint32_t *count,
                                 cf_err *err);
int peer_store_get_piece_digest(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN],
                                uint32_t piece, enum cf_digest_algo *algo,
                                uint8_t out[PEER_DIGEST_LEN], cf_err *err);

/* [blocking] Removes the blob (index record first, then the data file), even when pinned or
 * in use: outstanding leases keep reading the unlinked file until released. Use after a
 * whole-blob mismatch or on operator request. -ENOENT if not cached. */
int peer_store_purge(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], cf_err *err);

/* --- listing, quota --- */

/* [memory] All blobs (*out malloc'd array of *n entries, caller frees; NULL when 0). */
int peer_store_list(peer_store *s, peer_blob_info **out, size_t *n);

/* [memory] Current usage and counters. */
void peer_store_stats_get(peer_store *s, peer_store_stats *out);

/* [blocking] Evicts least-recently-accessed blobs that are neither pinned nor in use until
 * bytes_used <= target (UINT64_MAX = use quota_low; only runs when over quota_high in that
 * case). Returns the number of blobs evicted, or a negative errno. Also called automatically
 * after each flush. */
int peer_store_evict(peer_store *s, uint64_t target, cf_err *err);

#endif
