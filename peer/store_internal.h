/* Internal: the piece store's in-memory state, shared by piece_store.c and eviction.c.
 *
 * Locking (see docs/peer-cache.md "Threads"):
 *   idx_lock  serialises every change to the LMDB index (and to the durable bitmaps, pins,
 *             verified flags and data-file creation/removal). Taken first.
 *   lock      guards everything in memory below. Taken second, never held across disk I/O,
 *             fdatasync or an LMDB commit.
 * A blob with refs > 0 is never freed and its fd never closed; I/O on piece bytes runs outside
 * both locks while holding a ref. */
#ifndef PEER_STORE_INTERNAL_H
#define PEER_STORE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "cache_index.h"
#include "peer/piece_store.h"

typedef struct peer_blob {
    uint8_t digest[PEER_DIGEST_LEN];
    uint64_t length;
    uint32_t piece_size, piece_count;
    uint8_t *have;    /* written pieces (readable) */
    uint8_t *durable; /* pieces committed to the index (subset of have) */
    uint32_t n_have, n_durable;
    uint64_t bytes_have;
    uint32_t pin_count;
    uint32_t refs; /* acquire/lease/in-flight I/O */
    int fd;        /* -1 when closed */
    uint8_t flags; /* PEER_REC_F_* */
    uint8_t pdig_algo;
    uint64_t created_ms, last_access_ms;
    char *origin;           /* NUL-terminated, never NULL */
    int dirty;              /* pieces written since the last flush snapshot */
    int atime_dirty;        /* last_access_ms not yet persisted */
    int deleted;            /* out of the table; freed when refs drops to 0 */
    uint32_t sync_fails;    /* failed fdatasyncs (a write running meanwhile writes again) */
    struct peer_blob *next; /* hash chain */
} peer_blob;

struct peer_store {
    char *dir;
    int lock_fd;
    peer_index ix;
    pthread_mutex_t idx_lock;
    pthread_mutex_t lock;

    peer_blob **table;
    size_t table_size; /* power of two */
    size_t nblobs;

    uint64_t quota_high, quota_low;
    uint32_t flush_pieces;
    uint64_t flush_bytes;
    uint32_t flush_delay_ms;
    uint32_t max_open_files;
    uint32_t open_files;

    uint64_t bytes_used;
    uint64_t pending_pieces, pending_bytes;
    uint64_t oldest_pending_ms; /* 0 = nothing pending */
    uint64_t last_evict_warn_ms;
    peer_store_stats st; /* counters */
};

uint64_t peer_now_ms(void);

/* Under s->lock. */
peer_blob *peer_blob_find(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN]);
void peer_blob_unlink_table(peer_store *s, peer_blob *b); /* marks deleted, adjusts usage */
void peer_blob_unref(peer_store *s, peer_blob *b);        /* frees deleted blobs at 0 */
void peer_blob_free(peer_store *s, peer_blob *b);         /* closes fd, frees */
/* Under s->lock: fills a record describing b's durable state. Its pointers (origin, durable
 * bitmap) stay valid while the caller holds idx_lock. */
void peer_blob_to_rec(const peer_blob *b, peer_rec *r);

/* Path of a blob's data file; buf of PATH_MAX. */
void peer_blob_path(const peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], char *buf,
                    size_t len);

/* Removes blobs already unlinked from the table (caller holds idx_lock, not lock): deletes
 * their records in one transaction, then their data files, then drops the table's reference. */
int peer_store_remove_blobs(peer_store *s, peer_blob **v, size_t n, cf_err *err);

#endif
