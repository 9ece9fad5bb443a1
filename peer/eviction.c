/* Quota enforcement: LRU eviction between the high and low watermarks, and the removal of
 * blobs (shared with purge). Usage is the sum of written pieces of our own blobs, never the
 * filesystem's fill level (see docs/peer-cache.md "Quota"). */
#include "store_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf/log.h"

/* Deletes the records of v[0..n) in one transaction. */
static int delete_records(peer_store *s, peer_blob **v, size_t n, cf_err *err)
{
    MDB_txn *txn;
    int rc = peer_index_begin(&s->ix, &txn, err);
    for (size_t i = 0; !rc && i < n; i++) rc = peer_index_del_blob(&s->ix, txn, v[i]->digest, err);
    if (!rc)
        rc = peer_index_commit(&s->ix, txn, err);
    else
        peer_index_abort(txn);
    return rc;
}

int peer_store_remove_blobs(peer_store *s, peer_blob **v, size_t n, cf_err *err)
{
    /* Record first, file second: after a crash in between, open() finds a file without a
     * record and deletes it. The reverse order could leave a record whose pieces are gone. */
    int rc = delete_records(s, v, n, err);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        peer_blob_path(s, v[i]->digest, path, sizeof(path));
        if (unlink(path) && errno != ENOENT)
            cf_warn("cache: unlink %s: %s (removed at next open)", path, strerror(errno));
    }
    /* A disk too full for the index commit has room once the files are gone (unlinked and
     * closed; a blob still referenced keeps its file until released). */
    if (rc == -ENOSPC) {
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < n; i++)
            if (v[i]->refs == 0 && v[i]->fd >= 0) {
                close(v[i]->fd);
                v[i]->fd = -1;
                s->open_files--;
            }
        pthread_mutex_unlock(&s->lock);
    }
    if (rc == -ENOSPC && !delete_records(s, v, n, NULL)) {
        cf_info("cache: disk full: %zu index record(s) deleted once their data files were "
                "removed",
                n);
        cf_err_clear(err);
        rc = 0;
    }
    if (rc)
        cf_error("cache: could not delete %zu index record(s): %s; their data files are removed "
                 "anyway and the records will be reset to empty at the next open",
                 n, cf_err_str(err, rc));
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++)
        if (v[i]->refs == 0) peer_blob_free(s, v[i]); /* else the last unref frees it */
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int by_last_access(const void *a, const void *b)
{
    const peer_blob *x = *(peer_blob *const *)a, *y = *(peer_blob *const *)b;
    if (x->last_access_ms != y->last_access_ms)
        return x->last_access_ms < y->last_access_ms ? -1 : 1;
    if (x->created_ms != y->created_ms) return x->created_ms < y->created_ms ? -1 : 1;
    return memcmp(x->digest, y->digest, PEER_DIGEST_LEN);
}

int peer_store_evict(peer_store *s, uint64_t target, cf_err *err)
{
    pthread_mutex_lock(&s->idx_lock);
    pthread_mutex_lock(&s->lock);
    uint64_t goal = target;
    if (target == UINT64_MAX) {
        if (!s->quota_high || s->bytes_used <= s->quota_high) goto none;
        goal = s->quota_low;
    }
    if (s->bytes_used <= goal) goto none;

    peer_blob **cand = malloc((s->nblobs ? s->nblobs : 1) * sizeof(*cand));
    if (!cand) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->idx_lock);
        return -ENOMEM;
    }
    size_t nc = 0;
    for (size_t i = 0; i < s->table_size; i++)
        for (peer_blob *b = s->table[i]; b; b = b->next)
            if (b->refs == 0 && b->pin_count == 0 && b->bytes_have > 0) cand[nc++] = b;
    qsort(cand, nc, sizeof(*cand), by_last_access);
    size_t k = 0;
    uint64_t freed = 0;
    while (k < nc && s->bytes_used > goal) {
        freed += cand[k]->bytes_have;
        s->st.bytes_evicted += cand[k]->bytes_have;
        s->st.evictions++;
        peer_blob_unlink_table(s, cand[k]);
        k++;
    }
    uint64_t left = s->bytes_used, now = peer_now_ms();
    /* Every write re-checks the quota; say it once a minute, not once per piece. */
    int warn = left > goal && now - s->last_evict_warn_ms >= 60000;
    if (warn) s->last_evict_warn_ms = now;
    pthread_mutex_unlock(&s->lock);
    if (warn)
        cf_warn("cache: usage %llu bytes stays above %llu after evicting %zu blob(s): the rest "
                "is pinned or in use",
                (unsigned long long)left, (unsigned long long)goal, k);
    if (k) cf_info("cache: evicted %zu blob(s), %llu bytes (LRU)", k, (unsigned long long)freed);
    int rc = k ? peer_store_remove_blobs(s, cand, k, err) : 0;
    free(cand);
    pthread_mutex_unlock(&s->idx_lock);
    return rc ? rc : (int)(k > INT_MAX ? INT_MAX : k);
none:
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->idx_lock);
    return 0;
}
