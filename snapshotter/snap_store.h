/* LMDB store of snapshot records (private to the core). Key: the snapshot's name; value: the
 * protobuf Record of snapshots.proto. A write transaction groups the changes of one call, so
 * a crash leaves either all of them or none. */
#ifndef SNAP_STORE_H
#define SNAP_STORE_H

#include <lmdb.h>

#include "snapshotter/snap_core.h"

typedef struct snap_store {
    MDB_env *env;
    MDB_dbi snaps, meta;
} snap_store;

int snap_store_open(snap_store *s, const char *dir, cf_err *err);
void snap_store_close(snap_store *s);

int snap_store_begin(snap_store *s, int write, MDB_txn **txn, cf_err *err);
int snap_store_commit(MDB_txn *txn, cf_err *err); /* aborts on failure */

/* 0, -ENOENT, -EBADMSG (a record that does not decode). */
int snap_store_get(snap_store *s, MDB_txn *txn, const char *name, snap_rec *out, cf_err *err);
int snap_store_put(snap_store *s, MDB_txn *txn, const snap_rec *r, cf_err *err);
int snap_store_del(snap_store *s, MDB_txn *txn, const char *name, cf_err *err);
int snap_store_next_id(snap_store *s, MDB_txn *txn, uint64_t *id, cf_err *err);
/* Every record (malloc'd array). */
int snap_store_all(snap_store *s, MDB_txn *txn, snap_rec **out, size_t *n, cf_err *err);

#endif
