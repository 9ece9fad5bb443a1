/* Internal: the LMDB index of the piece store (see docs/peer-cache.md "Index format").
 *
 * Three named databases in one environment at <cache dir>/index/:
 *   "meta"    "format" -> "chunkfly-peer-cache 1"
 *   "blobs"   32-byte blob digest -> encoded peer_rec (little-endian, versioned)
 *   "pdigest" 32-byte blob digest -> algo byte + piece_count * 32 digest bytes
 *
 * Thread rules: the environment is opened with MDB_NOTLS, so read transactions may run on any
 * thread concurrently with the writer. Write transactions must be serialised by the caller
 * (the store's index mutex); LMDB would block otherwise. */
#ifndef PEER_CACHE_INDEX_H
#define PEER_CACHE_INDEX_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

#define PEER_REC_VERSION    1
#define PEER_REC_HDR_LEN    48
#define PEER_REC_F_VERIFIED 0x01u
#define PEER_REC_F_PDIGESTS 0x02u
#define PEER_REC_F_PRIVATE  0x04u /* its origin refused an anonymous read (docs/security.md) */

/* A decoded blob record. `origin` and `bitmap` point into the source buffer (LMDB memory or
 * the caller's encode input): copy them before the transaction ends. */
typedef struct peer_rec {
    uint8_t flags;
    uint8_t pdig_algo;
    uint32_t piece_size;
    uint64_t length;
    uint32_t piece_count;
    uint32_t pin_count;
    uint64_t created_ms;
    uint64_t last_access_ms;
    const char *origin;
    uint16_t origin_len;
    const uint8_t *bitmap; /* durable pieces, (piece_count+7)/8 bytes */
    uint32_t bitmap_len;
} peer_rec;

typedef struct peer_index {
    MDB_env *env;
    MDB_dbi meta, blobs, pdigest;
    uint64_t map_size;
} peer_index;

/* Opens/creates the environment in `dir` (an existing directory). */
int peer_index_open(peer_index *ix, const char *dir, uint64_t map_size, cf_err *err);
void peer_index_close(peer_index *ix);

/* Encoded size of r, and encoding into buf (size >= peer_rec_size(r)). */
size_t peer_rec_size(const peer_rec *r);
void peer_rec_encode(const peer_rec *r, uint8_t *buf);
/* Validates every field and length; -EBADMSG with a message when malformed. */
int peer_rec_decode(const uint8_t *buf, size_t len, peer_rec *r, cf_err *err);

/* Write transactions (caller serialises). */
int peer_index_begin(peer_index *ix, MDB_txn **txn, cf_err *err);
int peer_index_commit(peer_index *ix, MDB_txn *txn, cf_err *err); /* always ends txn */
void peer_index_abort(MDB_txn *txn);
int peer_index_put_blob(peer_index *ix, MDB_txn *txn, const uint8_t digest[32], const peer_rec *r,
                        cf_err *err);
/* Deletes the blob record and its digest list; absent entries are not an error. */
int peer_index_del_blob(peer_index *ix, MDB_txn *txn, const uint8_t digest[32], cf_err *err);
int peer_index_put_pdigest(peer_index *ix, MDB_txn *txn, const uint8_t digest[32], uint8_t algo,
                           const uint8_t *digests, uint32_t count, cf_err *err);

/* Read side (own read transaction). -ENOENT when absent. */
int peer_index_get_pdigest(peer_index *ix, const uint8_t digest[32], uint8_t *algo, uint8_t **out,
                           uint32_t *count, uint32_t only_piece, uint8_t one[32], cf_err *err);

/* Calls fn for every blob record (in one read transaction). A non-zero return of fn stops the
 * walk and is returned. Malformed records are reported through fn with rec == NULL. */
typedef int (*peer_index_fn)(void *arg, const uint8_t digest[32], const peer_rec *rec,
                             const cf_err *why);
int peer_index_foreach(peer_index *ix, peer_index_fn fn, void *arg, cf_err *err);

/* LMDB rc -> negative errno (MDB_MAP_FULL -> -ENOSPC, MDB_NOTFOUND -> -ENOENT, ...). */
int peer_index_errno(int rc);

#endif
