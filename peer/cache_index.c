/* The LMDB index of the piece store: record encoding and transactions (see cache_index.h). */
#include "cache_index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cf/log.h"
#include "proto/piece.h"

#define FORMAT_KEY "format"
#define FORMAT_VAL "chunkfly-peer-cache 1"

int peer_index_errno(int rc)
{
    if (rc == 0) return 0;
    if (rc > 0) return -rc; /* LMDB passes through system errnos */
    switch (rc) {
    case MDB_NOTFOUND:
        return -ENOENT;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case MDB_READERS_FULL:
        return -ENOSPC;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return -EBADMSG;
    default:
        return -EIO;
    }
}

static int lmdb_fail(cf_err *err, int rc, const char *what)
{
    int e = peer_index_errno(rc);
    if (rc == MDB_MAP_FULL)
        return cf_err_set(err, e, "cache index: %s: LMDB map full; raise the index map size", what);
    return cf_err_set(err, e, "cache index: %s: %s", what, mdb_strerror(rc));
}

int peer_index_open(peer_index *ix, const char *dir, uint64_t map_size, cf_err *err)
{
    memset(ix, 0, sizeof(*ix));
    int rc = mdb_env_create(&ix->env);
    if (rc) return lmdb_fail(err, rc, "mdb_env_create");
    ix->map_size = map_size;
    if ((rc = mdb_env_set_mapsize(ix->env, (size_t)map_size)) ||
        (rc = mdb_env_set_maxdbs(ix->env, 4)) || (rc = mdb_env_set_maxreaders(ix->env, 256)))
        goto fail;
    /* MDB_NOTLS: read txns are used from libuv pool threads, not bound to one thread. Full
     * sync on commit (no MDB_NOSYNC): a commit is the point where pieces become durable. */
    rc = mdb_env_open(ix->env, dir, MDB_NOTLS, 0600);
    if (rc) {
        cf_err_set(err, peer_index_errno(rc), "cache index %s: cannot open LMDB environment: %s",
                   dir, mdb_strerror(rc));
        mdb_env_close(ix->env);
        ix->env = NULL;
        return err ? err->code : peer_index_errno(rc);
    }
    int dead = 0;
    mdb_reader_check(ix->env, &dead); /* slots of readers killed with -9 */
    if (dead) cf_info("cache index %s: cleared %d stale reader slot(s)", dir, dead);

    MDB_txn *txn;
    if ((rc = mdb_txn_begin(ix->env, NULL, 0, &txn))) goto fail;
    if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &ix->meta)) ||
        (rc = mdb_dbi_open(txn, "blobs", MDB_CREATE, &ix->blobs)) ||
        (rc = mdb_dbi_open(txn, "pdigest", MDB_CREATE, &ix->pdigest))) {
        mdb_txn_abort(txn);
        goto fail;
    }
    MDB_val k = {strlen(FORMAT_KEY), FORMAT_KEY}, v;
    rc = mdb_get(txn, ix->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        v.mv_size = strlen(FORMAT_VAL);
        v.mv_data = FORMAT_VAL;
        rc = mdb_put(txn, ix->meta, &k, &v, 0);
    } else if (rc == 0 &&
               (v.mv_size != strlen(FORMAT_VAL) || memcmp(v.mv_data, FORMAT_VAL, v.mv_size))) {
        int n = v.mv_size > 64 ? 64 : (int)v.mv_size;
        cf_err_set(err, -ENOTSUP,
                   "cache index %s: format \"%.*s\", this build reads \"%s\"; remove the cache "
                   "directory to start afresh",
                   dir, n, (const char *)v.mv_data, FORMAT_VAL);
        mdb_txn_abort(txn);
        mdb_env_close(ix->env);
        ix->env = NULL;
        return -ENOTSUP;
    }
    if (rc) {
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn))) goto fail;
    return 0;
fail:
    lmdb_fail(err, rc, dir);
    mdb_env_close(ix->env);
    ix->env = NULL;
    return peer_index_errno(rc);
}

void peer_index_close(peer_index *ix)
{
    if (ix->env) mdb_env_close(ix->env);
    ix->env = NULL;
}

/* --- record encoding: fixed 48-byte little-endian header, origin, bitmap --- */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

size_t peer_rec_size(const peer_rec *r)
{
    return PEER_REC_HDR_LEN + (size_t)r->origin_len + r->bitmap_len;
}

void peer_rec_encode(const peer_rec *r, uint8_t *b)
{
    memset(b, 0, PEER_REC_HDR_LEN);
    b[0] = PEER_REC_VERSION;
    b[1] = r->flags;
    b[2] = r->pdig_algo;
    put_u32(b + 4, r->piece_size);
    put_u64(b + 8, r->length);
    put_u32(b + 16, r->piece_count);
    put_u32(b + 20, r->pin_count);
    put_u64(b + 24, r->created_ms);
    put_u64(b + 32, r->last_access_ms);
    put_u16(b + 40, r->origin_len);
    put_u32(b + 44, r->bitmap_len);
    if (r->origin_len) memcpy(b + PEER_REC_HDR_LEN, r->origin, r->origin_len);
    if (r->bitmap_len) memcpy(b + PEER_REC_HDR_LEN + r->origin_len, r->bitmap, r->bitmap_len);
}

int peer_rec_decode(const uint8_t *b, size_t len, peer_rec *r, cf_err *err)
{
    if (len < PEER_REC_HDR_LEN)
        return cf_err_set(err, -EBADMSG, "record of %zu bytes, shorter than its %d-byte header",
                          len, PEER_REC_HDR_LEN);
    if (b[0] != PEER_REC_VERSION)
        return cf_err_set(err, -EBADMSG, "record version %u, expected %u", b[0], PEER_REC_VERSION);
    memset(r, 0, sizeof(*r));
    r->flags = b[1];
    r->pdig_algo = b[2];
    r->piece_size = get_u32(b + 4);
    r->length = get_u64(b + 8);
    r->piece_count = get_u32(b + 16);
    r->pin_count = get_u32(b + 20);
    r->created_ms = get_u64(b + 24);
    r->last_access_ms = get_u64(b + 32);
    r->origin_len = get_u16(b + 40);
    r->bitmap_len = get_u32(b + 44);
    if (r->piece_size == 0) return cf_err_set(err, -EBADMSG, "record has piece size 0");
    uint64_t count = proto_piece_count(r->length, r->piece_size);
    if (count != r->piece_count)
        return cf_err_set(err, -EBADMSG,
                          "record: %u pieces, but length %llu / piece size %u "
                          "gives %llu",
                          r->piece_count, (unsigned long long)r->length, r->piece_size,
                          (unsigned long long)count);
    if (r->bitmap_len != proto_bitmap_nbytes(r->piece_count))
        return cf_err_set(err, -EBADMSG, "record: bitmap of %u bytes for %u pieces", r->bitmap_len,
                          r->piece_count);
    if ((uint64_t)PEER_REC_HDR_LEN + r->origin_len + r->bitmap_len != len)
        return cf_err_set(err, -EBADMSG, "record of %zu bytes, fields need %llu", len,
                          (unsigned long long)PEER_REC_HDR_LEN + r->origin_len + r->bitmap_len);
    r->origin = (const char *)b + PEER_REC_HDR_LEN;
    r->bitmap = b + PEER_REC_HDR_LEN + r->origin_len;
    /* Bits past piece_count must be clear, so counting bits counts pieces. */
    if (r->piece_count % 8 && (r->bitmap[r->bitmap_len - 1] >> (r->piece_count % 8)))
        return cf_err_set(err, -EBADMSG, "record: bitmap has bits past piece %u", r->piece_count);
    return 0;
}

/* --- transactions --- */

int peer_index_begin(peer_index *ix, MDB_txn **txn, cf_err *err)
{
    int rc = mdb_txn_begin(ix->env, NULL, 0, txn);
    return rc ? lmdb_fail(err, rc, "begin write transaction") : 0;
}

int peer_index_commit(peer_index *ix, MDB_txn *txn, cf_err *err)
{
    (void)ix;
    int rc = mdb_txn_commit(txn);
    return rc ? lmdb_fail(err, rc, "commit") : 0;
}

void peer_index_abort(MDB_txn *txn)
{
    if (txn) mdb_txn_abort(txn);
}

int peer_index_put_blob(peer_index *ix, MDB_txn *txn, const uint8_t digest[32], const peer_rec *r,
                        cf_err *err)
{
    MDB_val k = {32, (void *)digest}, v = {peer_rec_size(r), NULL};
    /* MDB_RESERVE: encode straight into the page, no temporary copy. */
    int rc = mdb_put(txn, ix->blobs, &k, &v, MDB_RESERVE);
    if (rc) return lmdb_fail(err, rc, "put blob record");
    peer_rec_encode(r, v.mv_data);
    return 0;
}

int peer_index_del_blob(peer_index *ix, MDB_txn *txn, const uint8_t digest[32], cf_err *err)
{
    MDB_val k = {32, (void *)digest};
    int rc = mdb_del(txn, ix->blobs, &k, NULL);
    if (rc && rc != MDB_NOTFOUND) return lmdb_fail(err, rc, "delete blob record");
    rc = mdb_del(txn, ix->pdigest, &k, NULL);
    if (rc && rc != MDB_NOTFOUND) return lmdb_fail(err, rc, "delete piece digests");
    return 0;
}

int peer_index_put_pdigest(peer_index *ix, MDB_txn *txn, const uint8_t digest[32], uint8_t algo,
                           const uint8_t *digests, uint32_t count, cf_err *err)
{
    MDB_val k = {32, (void *)digest}, v = {1 + (size_t)count * 32, NULL};
    int rc = mdb_put(txn, ix->pdigest, &k, &v, MDB_RESERVE);
    if (rc) return lmdb_fail(err, rc, "put piece digests");
    ((uint8_t *)v.mv_data)[0] = algo;
    memcpy((uint8_t *)v.mv_data + 1, digests, (size_t)count * 32);
    return 0;
}

int peer_index_get_pdigest(peer_index *ix, const uint8_t digest[32], uint8_t *algo, uint8_t **out,
                           uint32_t *count, uint32_t only_piece, uint8_t one[32], cf_err *err)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn);
    if (rc) return lmdb_fail(err, rc, "begin read transaction");
    MDB_val k = {32, (void *)digest}, v;
    int ret = 0;
    rc = mdb_get(txn, ix->pdigest, &k, &v);
    if (rc == MDB_NOTFOUND) {
        ret = -ENOENT;
    } else if (rc) {
        ret = lmdb_fail(err, rc, "get piece digests");
    } else if (v.mv_size < 1 || (v.mv_size - 1) % 32) {
        ret = cf_err_set(err, -EBADMSG, "piece digest list of %zu bytes is malformed", v.mv_size);
    } else {
        const uint8_t *p = v.mv_data;
        uint32_t n = (uint32_t)((v.mv_size - 1) / 32);
        if (algo) *algo = p[0];
        if (count) *count = n;
        if (one) {
            if (only_piece >= n)
                ret = cf_err_set(err, -EINVAL, "piece %u past the %u-entry digest list", only_piece,
                                 n);
            else
                memcpy(one, p + 1 + (size_t)only_piece * 32, 32);
        } else if (out) {
            *out = malloc(n ? (size_t)n * 32 : 1);
            if (!*out)
                ret = -ENOMEM;
            else
                memcpy(*out, p + 1, (size_t)n * 32);
        }
    }
    mdb_txn_abort(txn);
    return ret;
}

int peer_index_foreach(peer_index *ix, peer_index_fn fn, void *arg, cf_err *err)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn);
    if (rc) return lmdb_fail(err, rc, "begin read transaction");
    if ((rc = mdb_cursor_open(txn, ix->blobs, &cur))) {
        mdb_txn_abort(txn);
        return lmdb_fail(err, rc, "open cursor");
    }
    MDB_val k, v;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 32) continue; /* cannot even name it: not ours, leave it */
        peer_rec r;
        cf_err why = {0};
        int bad = peer_rec_decode(v.mv_data, v.mv_size, &r, &why);
        ret = fn(arg, k.mv_data, bad ? NULL : &r, bad ? &why : NULL);
        if (ret) break;
    }
    if (!ret && rc != MDB_NOTFOUND) ret = lmdb_fail(err, rc, "walk blob records");
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return ret;
}
