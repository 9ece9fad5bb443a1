/* The piece store: blob table, data files, piece writes/reads/leases, batched durable flushes,
 * verification and recovery on open (see peer/piece_store.h, docs/peer-cache.md). */
#include "store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "cf/digest.h"
#include "cf/file_io.h"
#include "cf/hex.h"
#include "cf/log.h"

#define DEFAULT_MAP_SIZE     (1ull << 30)
#define DEFAULT_FLUSH_PIECES 64
#define DEFAULT_FLUSH_BYTES  (64ull << 20)
#define DEFAULT_FLUSH_DELAY  200
#define DEFAULT_MAX_OPEN     256
#define VERIFY_CHUNK         (1u << 20)

uint64_t peer_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void hexname(const uint8_t digest[PEER_DIGEST_LEN], char out[2 * PEER_DIGEST_LEN + 1])
{
    cf_hex_encode(digest, PEER_DIGEST_LEN, out);
}

void peer_blob_path(const peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], char *buf,
                    size_t len)
{
    char hex[2 * PEER_DIGEST_LEN + 1];
    hexname(digest, hex);
    snprintf(buf, len, "%s/data/%.2s/%s", s->dir, hex, hex);
}

/* --- blob table (chained hash on the digest, which is already uniformly distributed) --- */

static size_t slot_of(const peer_store *s, const uint8_t *d)
{
    uint64_t h;
    memcpy(&h, d, sizeof(h));
    return (size_t)h & (s->table_size - 1);
}

peer_blob *peer_blob_find(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN])
{
    for (peer_blob *b = s->table[slot_of(s, digest)]; b; b = b->next)
        if (!memcmp(b->digest, digest, PEER_DIGEST_LEN)) return b;
    return NULL;
}

static int table_insert(peer_store *s, peer_blob *b)
{
    if (s->nblobs + 1 > s->table_size) {
        size_t nsize = s->table_size * 2;
        peer_blob **nt = calloc(nsize, sizeof(*nt));
        if (!nt) return -ENOMEM;
        for (size_t i = 0; i < s->table_size; i++) {
            peer_blob *x = s->table[i], *nx;
            for (; x; x = nx) {
                nx = x->next;
                uint64_t h;
                memcpy(&h, x->digest, sizeof(h));
                size_t j = (size_t)h & (nsize - 1);
                x->next = nt[j];
                nt[j] = x;
            }
        }
        free(s->table);
        s->table = nt;
        s->table_size = nsize;
    }
    size_t i = slot_of(s, b->digest);
    b->next = s->table[i];
    s->table[i] = b;
    s->nblobs++;
    s->bytes_used += b->bytes_have;
    return 0;
}

void peer_blob_unlink_table(peer_store *s, peer_blob *b)
{
    peer_blob **pp = &s->table[slot_of(s, b->digest)];
    while (*pp && *pp != b) pp = &(*pp)->next;
    if (*pp) *pp = b->next;
    b->next = NULL;
    b->deleted = 1;
    s->nblobs--;
    s->bytes_used -= b->bytes_have;
    uint64_t pend = b->n_have - b->n_durable;
    s->pending_pieces -= pend < s->pending_pieces ? pend : s->pending_pieces;
    /* pending_bytes is approximate for removed blobs; the next flush recomputes nothing from
     * it, it only triggers flushes. */
}

void peer_blob_free(peer_store *s, peer_blob *b)
{
    if (b->fd >= 0) {
        close(b->fd);
        s->open_files--;
    }
    free(b->have);
    free(b->durable);
    free(b->origin);
    free(b);
}

static void maybe_close_fd(peer_store *s, peer_blob *b)
{
    if (b->refs == 0 && b->fd >= 0 && !b->dirty && b->n_have == b->n_durable &&
        s->open_files > s->max_open_files) {
        close(b->fd);
        b->fd = -1;
        s->open_files--;
    }
}

void peer_blob_unref(peer_store *s, peer_blob *b)
{
    b->refs--;
    if (b->refs == 0 && b->deleted)
        peer_blob_free(s, b);
    else
        maybe_close_fd(s, b);
}

/* Under s->lock: opens the data file if needed. */
static int blob_fd(peer_store *s, peer_blob *b, cf_err *err)
{
    if (b->fd >= 0) return 0;
    char path[PATH_MAX];
    peer_blob_path(s, b->digest, path, sizeof(path));
    b->fd = open(path, O_RDWR | O_CLOEXEC);
    if (b->fd < 0)
        return cf_err_set(err, -errno, "blob data file %s: open: %s", path, strerror(errno));
    s->open_files++;
    return 0;
}

static peer_blob *blob_new(const uint8_t *digest, uint64_t length, uint32_t piece_size,
                           const char *origin, size_t origin_len)
{
    peer_blob *b = calloc(1, sizeof(*b));
    if (!b) return NULL;
    memcpy(b->digest, digest, PEER_DIGEST_LEN);
    b->length = length;
    b->piece_size = piece_size;
    b->piece_count = (uint32_t)proto_piece_count(length, piece_size);
    size_t n = proto_bitmap_nbytes(b->piece_count);
    b->have = calloc(n ? n : 1, 1);
    b->durable = calloc(n ? n : 1, 1);
    b->origin = malloc(origin_len + 1);
    if (!b->have || !b->durable || !b->origin) {
        free(b->have);
        free(b->durable);
        free(b->origin);
        free(b);
        return NULL;
    }
    memcpy(b->origin, origin, origin_len);
    b->origin[origin_len] = 0;
    b->fd = -1;
    return b;
}

void peer_blob_to_rec(const peer_blob *b, peer_rec *r)
{
    memset(r, 0, sizeof(*r));
    r->flags = b->flags;
    r->pdig_algo = b->pdig_algo;
    r->piece_size = b->piece_size;
    r->length = b->length;
    r->piece_count = b->piece_count;
    r->pin_count = b->pin_count;
    r->created_ms = b->created_ms;
    r->last_access_ms = b->last_access_ms;
    r->origin = b->origin;
    r->origin_len = (uint16_t)strlen(b->origin);
    r->bitmap = b->durable;
    r->bitmap_len = (uint32_t)proto_bitmap_nbytes(b->piece_count);
}

static void blob_info(const peer_blob *b, peer_blob_info *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->digest, b->digest, PEER_DIGEST_LEN);
    out->length = b->length;
    out->piece_size = b->piece_size;
    out->piece_count = b->piece_count;
    out->pieces_written = b->n_have;
    out->pieces_durable = b->n_durable;
    out->bytes_written = b->bytes_have;
    out->complete = b->n_have == b->piece_count;
    out->verified = !!(b->flags & PEER_REC_F_VERIFIED);
    out->is_private = !!(b->flags & PEER_REC_F_PRIVATE);
    out->has_piece_digests = !!(b->flags & PEER_REC_F_PDIGESTS);
    out->pin_count = b->pin_count;
    out->in_use = b->refs;
    out->created_ms = b->created_ms;
    out->last_access_ms = b->last_access_ms;
    snprintf(out->origin, sizeof(out->origin), "%s", b->origin);
}

static void short_hex(const uint8_t *d, char out[17])
{
    cf_hex_encode(d, 8, out);
}

/* Writes one record in its own transaction. Caller holds idx_lock (not lock); r points into
 * memory that stays valid (guaranteed by idx_lock: only idx_lock holders change it). */
static int commit_rec(peer_store *s, const uint8_t *digest, const peer_rec *r, cf_err *err)
{
    MDB_txn *txn;
    int rc = peer_index_begin(&s->ix, &txn, err);
    if (rc) return rc;
    rc = peer_index_put_blob(&s->ix, txn, digest, r, err);
    if (rc) {
        peer_index_abort(txn);
        return rc;
    }
    return peer_index_commit(&s->ix, txn, err);
}

/* --- open / recovery --- */

struct load_ctx {
    peer_store *s;
    int rc;
    cf_err *err;
    uint8_t (*bad)[PEER_DIGEST_LEN];
    size_t nbad;
};

static int load_one(void *arg, const uint8_t digest[32], const peer_rec *r, const cf_err *why)
{
    struct load_ctx *c = arg;
    char hex[17];
    short_hex(digest, hex);
    if (!r || proto_piece_size_check(r->piece_size) || r->piece_count > PROTO_MAX_PIECES ||
        r->length > (uint64_t)INT64_MAX) {
        cf_warn("cache: dropping malformed index record for blob %s...: %s", hex,
                why ? why->msg : "piece size, count or length out of range");
        void *nb = realloc(c->bad, (c->nbad + 1) * PEER_DIGEST_LEN);
        if (!nb) return c->rc = -ENOMEM;
        c->bad = nb;
        memcpy(c->bad[c->nbad++], digest, PEER_DIGEST_LEN);
        return 0;
    }
    peer_blob *b = blob_new(digest, r->length, r->piece_size, r->origin, r->origin_len);
    if (!b) return c->rc = -ENOMEM;
    memcpy(b->durable, r->bitmap, r->bitmap_len);
    memcpy(b->have, r->bitmap, r->bitmap_len);
    for (uint32_t i = 0; i < b->piece_count; i++)
        if (proto_bit_get(b->have, i)) {
            b->n_have++;
            b->bytes_have += proto_piece_len(b->length, b->piece_size, i);
        }
    b->n_durable = b->n_have;
    b->flags = r->flags;
    b->pdig_algo = r->pdig_algo;
    b->pin_count = r->pin_count;
    b->created_ms = r->created_ms;
    b->last_access_ms = r->last_access_ms;
    int rc = table_insert(c->s, b);
    if (rc) {
        peer_blob_free(c->s, b);
        return c->rc = rc;
    }
    return 0;
}

/* Creates (or resets) a blob's data file: sparse, `length` bytes, durable directory entry. */
static int create_data_file(peer_store *s, const uint8_t *digest, uint64_t length, cf_err *err)
{
    char path[PATH_MAX];
    peer_blob_path(s, digest, path, sizeof(path));
    char *slash = strrchr(path, '/');
    *slash = 0;
    int rc = cf_mkdir_p(path, 0700);
    if (rc == 0) rc = cf_fsync_parent(path);
    *slash = '/';
    if (rc)
        return cf_err_set(err, rc, "cache: cannot create directory for %s: %s", path,
                          strerror(-rc));
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return cf_err_set(err, -errno, "cache: create %s: %s", path, strerror(errno));
    /* ftruncate makes a sparse file: blocks are allocated only as pieces arrive. fsync makes
     * the size durable, so later fdatasync calls need not flush metadata. */
    if (ftruncate(fd, (off_t)length) || fsync(fd)) {
        rc = -errno;
        close(fd);
        unlink(path);
        return cf_err_set(err, rc, "cache: preallocate %s to %llu bytes: %s", path,
                          (unsigned long long)length, strerror(-rc));
    }
    close(fd);
    rc = cf_fsync_parent(path);
    if (rc) return cf_err_set(err, rc, "cache: fsync directory of %s: %s", path, strerror(-rc));
    return 0;
}

/* Removes data files the index does not know (written before a crash interrupted creation,
 * or left by an eviction whose unlink did not happen) and fixes sizes of known ones. Marks
 * blobs whose file exists with fd = -2 (reset by the caller). */
static int scan_data_dir(peer_store *s)
{
    char dpath[PATH_MAX];
    snprintf(dpath, sizeof(dpath), "%s/data", s->dir);
    DIR *d = opendir(dpath);
    if (!d) return errno == ENOENT ? 0 : -errno;
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int sfd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d2 = sfd >= 0 ? fdopendir(sfd) : NULL;
        if (!d2) {
            if (sfd >= 0) close(sfd);
            continue; /* not a directory: not ours, leave it */
        }
        struct dirent *f;
        int removed = 0;
        while (!rc && (f = readdir(d2))) {
            if (!strcmp(f->d_name, ".") || !strcmp(f->d_name, "..")) continue;
            uint8_t dg[PEER_DIGEST_LEN];
            peer_blob *b = NULL;
            if (strlen(f->d_name) == 2 * PEER_DIGEST_LEN &&
                cf_hex_is_lower(f->d_name, 2 * PEER_DIGEST_LEN) &&
                !cf_hex_decode(f->d_name, 2 * PEER_DIGEST_LEN, dg, PEER_DIGEST_LEN) &&
                !strncmp(e->d_name, f->d_name, 2))
                b = peer_blob_find(s, dg);
            struct stat st;
            if (b && fstatat(sfd, f->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISREG(st.st_mode)) {
                if ((uint64_t)st.st_size != b->length) {
                    cf_warn("cache: data/%s/%s has %lld bytes, index says %llu: resizing",
                            e->d_name, f->d_name, (long long)st.st_size,
                            (unsigned long long)b->length);
                    int fd = openat(sfd, f->d_name, O_RDWR | O_CLOEXEC);
                    if (fd < 0 || ftruncate(fd, (off_t)b->length) || fsync(fd)) rc = -errno;
                    if (fd >= 0) close(fd);
                }
                b->fd = -2; /* "file seen"; the caller resets it */
                continue;
            }
            cf_info("cache: removing data/%s/%s: not in the index (interrupted create or "
                    "evict)",
                    e->d_name, f->d_name);
            if (unlinkat(sfd, f->d_name, 0) == 0) removed++;
        }
        if (removed) fsync(sfd);
        closedir(d2);
    }
    closedir(d);
    return rc;
}

int peer_store_open(const peer_store_opts *o, peer_store **out, cf_err *err)
{
    *out = NULL;
    if (!o || !o->dir || !*o->dir) return cf_err_set(err, -EINVAL, "cache: no directory given");
    if (o->quota_high && o->quota_low > o->quota_high)
        return cf_err_set(err, -EINVAL,
                          "cache: low watermark %llu is above the high watermark %llu",
                          (unsigned long long)o->quota_low, (unsigned long long)o->quota_high);
    peer_store *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    s->lock_fd = -1;
    s->dir = strdup(o->dir);
    s->table_size = 64;
    s->table = calloc(s->table_size, sizeof(*s->table));
    if (!s->dir || !s->table) {
        free(s->dir);
        free(s->table);
        free(s);
        return -ENOMEM;
    }
    if (strlen(s->dir) > PATH_MAX - 200) {
        free(s->dir);
        free(s->table);
        free(s);
        return cf_err_set(err, -ENAMETOOLONG, "cache directory path too long");
    }
    pthread_mutex_init(&s->idx_lock, NULL);
    pthread_mutex_init(&s->lock, NULL);
    s->quota_high = o->quota_high;
    s->quota_low = o->quota_high ? (o->quota_low ? o->quota_low : o->quota_high / 10 * 9) : 0;
    s->flush_pieces = o->flush_pieces ? o->flush_pieces : DEFAULT_FLUSH_PIECES;
    s->flush_bytes = o->flush_bytes ? o->flush_bytes : DEFAULT_FLUSH_BYTES;
    s->flush_delay_ms = o->flush_delay_ms ? o->flush_delay_ms : DEFAULT_FLUSH_DELAY;
    s->max_open_files = o->max_open_files ? o->max_open_files : DEFAULT_MAX_OPEN;
    uint64_t map = o->map_size ? o->map_size : DEFAULT_MAP_SIZE;

    char path[PATH_MAX];
    int rc = cf_mkdir_p(s->dir, 0700);
    if (rc) {
        cf_err_set(err, rc, "cache directory %s: cannot create: %s", s->dir, strerror(-rc));
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/lock", s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        rc = cf_err_set(err, -errno, "cache lock file %s: %s", path, strerror(errno));
        goto fail;
    }
    /* One process per cache dir: two daemons would each trust their own in-memory state. */
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB)) {
        rc = errno == EWOULDBLOCK
                 ? cf_err_set(err, -EBUSY,
                              "cache directory %s is in use by another process (lock %s held)",
                              s->dir, path)
                 : cf_err_set(err, -errno, "cache lock %s: %s", path, strerror(errno));
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/index", s->dir);
    if ((rc = cf_mkdir_p(path, 0700))) {
        cf_err_set(err, rc, "cache index directory %s: %s", path, strerror(-rc));
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/data", s->dir);
    if ((rc = cf_mkdir_p(path, 0700))) {
        cf_err_set(err, rc, "cache data directory %s: %s", path, strerror(-rc));
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/index", s->dir);
    if ((rc = peer_index_open(&s->ix, path, map, err))) goto fail;

    struct load_ctx lc = {s, 0, err, NULL, 0};
    rc = peer_index_foreach(&s->ix, load_one, &lc, err);
    if (!rc) rc = lc.rc;
    if (!rc && lc.nbad) {
        MDB_txn *txn;
        rc = peer_index_begin(&s->ix, &txn, err);
        for (size_t i = 0; !rc && i < lc.nbad; i++)
            rc = peer_index_del_blob(&s->ix, txn, lc.bad[i], err);
        if (!rc)
            rc = peer_index_commit(&s->ix, txn, err);
        else
            peer_index_abort(txn);
    }
    free(lc.bad);
    if (rc) goto fail;

    if ((rc = scan_data_dir(s))) {
        cf_err_set(err, rc, "cache %s: scanning data files: %s", s->dir, strerror(-rc));
        goto fail;
    }
    /* Index entries without a data file (deleted behind our back): recreate empty. */
    for (size_t i = 0; i < s->table_size; i++)
        for (peer_blob *b = s->table[i]; b; b = b->next) {
            if (b->fd == -2) {
                b->fd = -1;
                continue;
            }
            char hex[2 * PEER_DIGEST_LEN + 1];
            hexname(b->digest, hex);
            cf_warn("cache: data file of blob %s is missing: recreating it empty", hex);
            if ((rc = create_data_file(s, b->digest, b->length, err))) goto fail;
            s->bytes_used -= b->bytes_have;
            memset(b->have, 0, proto_bitmap_nbytes(b->piece_count));
            memset(b->durable, 0, proto_bitmap_nbytes(b->piece_count));
            b->n_have = b->n_durable = 0;
            b->bytes_have = 0;
            b->flags &= (uint8_t)~PEER_REC_F_VERIFIED;
            peer_rec r;
            peer_blob_to_rec(b, &r);
            if ((rc = commit_rec(s, b->digest, &r, err))) goto fail;
        }
    cf_info("cache %s: %zu blob(s), %llu bytes", s->dir, s->nblobs,
            (unsigned long long)s->bytes_used);
    *out = s;
    if (s->quota_high && s->bytes_used > s->quota_high) peer_store_evict(s, UINT64_MAX, NULL);
    return 0;
fail:
    peer_store_close(s);
    return rc ? rc : -EIO;
}

void peer_store_close(peer_store *s)
{
    if (!s) return;
    if (s->ix.env) {
        cf_err e = {0};
        if (peer_store_flush(s, &e)) cf_error("cache %s: final flush: %s", s->dir, e.msg);
    }
    for (size_t i = 0; i < s->table_size; i++) {
        peer_blob *b = s->table[i], *nb;
        for (; b; b = nb) {
            nb = b->next;
            if (b->refs)
                cf_warn("cache: closing with blob in use (%u reference(s) leaked)", b->refs);
            peer_blob_free(s, b);
        }
    }
    peer_index_close(&s->ix);
    if (s->lock_fd >= 0) close(s->lock_fd);
    pthread_mutex_destroy(&s->idx_lock);
    pthread_mutex_destroy(&s->lock);
    free(s->table);
    free(s->dir);
    free(s);
}

/* --- blobs --- */

static int digest_hex_err(cf_err *err, int code, const uint8_t *digest, const char *what)
{
    char hex[2 * PEER_DIGEST_LEN + 1];
    hexname(digest, hex);
    return cf_err_set(err, code, "blob sha256:%s: %s", hex, what);
}

int peer_store_blob_open(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], uint64_t length,
                         uint32_t piece_size, const char *origin, peer_blob_info *info, cf_err *err)
{
    size_t olen = origin ? strlen(origin) : 0;
    if (olen >= PEER_ORIGIN_MAX)
        return digest_hex_err(err, -ENAMETOOLONG, digest, "origin reference too long");
    uint32_t ps = piece_size ? piece_size : proto_piece_size_for(length);
    if (proto_piece_size_check(ps))
        return cf_err_set(err, -EINVAL, "piece size %u invalid: must be a power of two in [%u, %u]",
                          ps, PROTO_MIN_PIECE_SIZE, PROTO_MAX_PIECE_SIZE);
    if (proto_piece_count(length, ps) > PROTO_MAX_PIECES || length > (uint64_t)INT64_MAX)
        return cf_err_set(err, -EFBIG, "blob of %llu bytes needs more than %u pieces of %u",
                          (unsigned long long)length, PROTO_MAX_PIECES, ps);
    int rc = 0;
    pthread_mutex_lock(&s->idx_lock);
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    if (b) {
        if (b->length != length) {
            pthread_mutex_unlock(&s->lock);
            char msg[160];
            snprintf(msg, sizeof(msg), "cached with length %llu, asked for %llu",
                     (unsigned long long)b->length, (unsigned long long)length);
            rc = digest_hex_err(err, -EEXIST, digest, msg);
            goto out;
        }
        if (piece_size && b->piece_size != piece_size) {
            pthread_mutex_unlock(&s->lock);
            char msg[160];
            snprintf(msg, sizeof(msg), "cached with piece size %u, asked for %u", b->piece_size,
                     piece_size);
            rc = digest_hex_err(err, -EEXIST, digest, msg);
            goto out;
        }
        b->last_access_ms = peer_now_ms();
        b->atime_dirty = 1;
        int new_origin = olen && strcmp(b->origin, origin);
        if (new_origin) {
            char *o = strdup(origin);
            if (o) {
                free(b->origin);
                b->origin = o;
            }
        }
        if (info) blob_info(b, info);
        peer_rec r;
        peer_blob_to_rec(b, &r); /* pointers stay valid: only idx_lock holders change them */
        pthread_mutex_unlock(&s->lock);
        if (new_origin) rc = commit_rec(s, digest, &r, err);
        goto out;
    }
    pthread_mutex_unlock(&s->lock);

    b = blob_new(digest, length, ps, origin ? origin : "", olen);
    if (!b) {
        rc = -ENOMEM;
        goto out;
    }
    b->created_ms = b->last_access_ms = peer_now_ms();
    /* File first, record second: a crash in between leaves an orphan file that open()
     * removes, never a record without its file. */
    if ((rc = create_data_file(s, digest, length, err))) {
        peer_blob_free(s, b);
        goto out;
    }
    peer_rec r;
    peer_blob_to_rec(b, &r);
    if ((rc = commit_rec(s, digest, &r, err))) {
        char path[PATH_MAX];
        peer_blob_path(s, digest, path, sizeof(path));
        unlink(path);
        peer_blob_free(s, b);
        goto out;
    }
    pthread_mutex_lock(&s->lock);
    rc = table_insert(s, b);
    if (rc == 0 && info) blob_info(b, info);
    pthread_mutex_unlock(&s->lock);
    if (rc) peer_blob_free(s, b); /* record stays; reloaded next open */
out:
    pthread_mutex_unlock(&s->idx_lock);
    return rc;
}

int peer_store_blob_info(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], peer_blob_info *info)
{
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    if (b) blob_info(b, info);
    pthread_mutex_unlock(&s->lock);
    return b ? 0 : -ENOENT;
}

int peer_store_bitmap(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], uint8_t *bits,
                      size_t bits_len, uint32_t *piece_count)
{
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    if (!b) {
        rc = -ENOENT;
    } else {
        *piece_count = b->piece_count;
        size_t n = proto_bitmap_nbytes(b->piece_count);
        if (bits_len < n)
            rc = -ERANGE;
        else if (n)
            memcpy(bits, b->have, n);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Under lock: looks up a live blob and takes a reference. */
static peer_blob *get_ref(peer_store *s, const uint8_t *digest)
{
    peer_blob *b = peer_blob_find(s, digest);
    if (b) b->refs++;
    return b;
}

int peer_store_blob_acquire(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN],
                            peer_blob_ref **ref)
{
    pthread_mutex_lock(&s->lock);
    peer_blob *b = get_ref(s, digest);
    pthread_mutex_unlock(&s->lock);
    *ref = (peer_blob_ref *)b;
    return b ? 0 : -ENOENT;
}

void peer_store_blob_release(peer_store *s, peer_blob_ref *ref)
{
    if (!ref) return;
    pthread_mutex_lock(&s->lock);
    peer_blob_unref(s, (peer_blob *)ref);
    pthread_mutex_unlock(&s->lock);
}

/* --- writes and flushes --- */

static int check_piece_digest(peer_store *s, peer_blob *b, uint32_t piece, const void *data,
                              size_t len, cf_err *err)
{
    uint8_t want[PEER_DIGEST_LEN], got[PEER_DIGEST_LEN];
    uint8_t algo;
    int rc = peer_index_get_pdigest(&s->ix, b->digest, &algo, NULL, NULL, piece, want, err);
    if (rc == -ENOENT) return 0; /* list removed meanwhile (purge) */
    if (rc) return rc;
    if ((rc = cf_digest((enum cf_digest_algo)algo, data, len, got))) return rc;
    if (memcmp(want, got, PEER_DIGEST_LEN)) {
        char hw[65], hg[65], hb[65];
        cf_hex_encode(want, 32, hw);
        cf_hex_encode(got, 32, hg);
        hexname(b->digest, hb);
        return cf_err_set(err, -EBADMSG, "blob sha256:%s piece %u: %s %s, expected %s", hb, piece,
                          cf_digest_algo_name((enum cf_digest_algo)algo), hg, hw);
    }
    return 0;
}

/* Room for a piece write that failed with ENOSPC/EDQUOT: evicts least-recently-used blobs that
 * are neither pinned nor in use (the writer holds a reference on the blob being written, so it
 * is never a candidate) until the filesystem of the cache has room for `len` more bytes, or
 * nothing evictable is left. Uses the quota eviction (peer_store_evict) with a target below the
 * current usage. Returns the number of blobs evicted; *freed = their bytes. */
#define ROOM_SLACK (64u << 10) /* file-system metadata, the index's next pages */

/* Bytes available to us on the cache's file system (UINT64_MAX when unknown). */
static uint64_t disk_avail(const peer_store *s)
{
    struct statvfs sv;
    return statvfs(s->dir, &sv) ? UINT64_MAX : (uint64_t)sv.f_bavail * sv.f_frsize;
}

static uint32_t evict_for_room(peer_store *s, size_t len, uint64_t *freed)
{
    uint32_t total = 0;
    *freed = 0;
    for (;;) {
        uint64_t need = (uint64_t)len + ROOM_SLACK, avail = disk_avail(s);
        uint64_t deficit = avail < need ? need - avail : 0;
        if (!deficit) {
            if (total) break;
            deficit = need; /* EDQUOT, or the space went elsewhere: free at least one piece */
        }
        pthread_mutex_lock(&s->lock);
        uint64_t used = s->bytes_used, n0 = s->st.evictions, b0 = s->st.bytes_evicted;
        pthread_mutex_unlock(&s->lock);
        /* Counted from the stats, not the result: when the disk is too full even for the
         * index commit, the data files are removed all the same (see peer_store_remove_blobs). */
        peer_store_evict(s, used > deficit ? used - deficit : 0, NULL);
        pthread_mutex_lock(&s->lock);
        uint64_t n = s->st.evictions - n0;
        *freed += s->st.bytes_evicted - b0;
        pthread_mutex_unlock(&s->lock);
        if (!n) break;
        total += (uint32_t)n;
    }
    return total;
}

/* Writes the piece's bytes (outside both locks, the caller holds a reference on b). A full disk
 * (ENOSPC, or EDQUOT) first makes room by evicting unused blobs, then retries once; if there is
 * still no room the result is -ENOSPC. */
static int write_bytes(peer_store *s, peer_blob *b, uint32_t piece, int fd, const void *data,
                       size_t len, uint64_t off, cf_err *err)
{
    int rc = cf_pwrite_full(fd, data, len, off);
    if (!rc) return 0;
    char hb[65];
    hexname(b->digest, hb);
    if (rc != -ENOSPC && rc != -EDQUOT)
        return cf_err_set(err, rc, "blob sha256:%s piece %u: write at offset %llu: %s", hb, piece,
                          (unsigned long long)off, strerror(-rc));
    int first = rc;
    uint64_t freed = 0;
    uint32_t evicted = evict_for_room(s, len, &freed);
    cf_warn("cache %s: %s writing piece %u of blob %s: evicted %u unused blob(s), %llu bytes, "
            "and retrying",
            s->dir, strerror(-first), piece, hb, evicted, (unsigned long long)freed);
    rc = cf_pwrite_full(fd, data, len, off);
    if (rc == -ENOSPC || rc == -EDQUOT)
        return cf_err_set(err, -ENOSPC,
                          "blob sha256:%s piece %u: no space for %zu bytes in the cache directory "
                          "%s (%s) even after evicting %u unused blob(s) (%llu bytes): the rest "
                          "is pinned or in use; free disk space, unpin blobs or lower the quota",
                          hb, piece, len, s->dir, strerror(-first), evicted,
                          (unsigned long long)freed);
    if (rc)
        return cf_err_set(err, rc, "blob sha256:%s piece %u: write at offset %llu: %s", hb, piece,
                          (unsigned long long)off, strerror(-rc));
    return 0;
}

int peer_store_write_piece(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], uint32_t piece,
                           const void *data, size_t len, cf_err *err)
{
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    if (!b) {
        pthread_mutex_unlock(&s->lock);
        return digest_hex_err(err, -ENOENT, digest, "not in the cache (open it first)");
    }
    uint32_t plen = proto_piece_len(b->length, b->piece_size, piece);
    if (piece >= b->piece_count || len != plen) {
        pthread_mutex_unlock(&s->lock);
        char msg[160];
        snprintf(msg, sizeof(msg), "piece %u of %zu bytes: blob has %u pieces, this one %u bytes",
                 piece, len, b->piece_count, plen);
        return digest_hex_err(err, -EINVAL, digest, msg);
    }
    if (proto_bit_get(b->have, piece)) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    int rc = blob_fd(s, b, err);
    if (rc) {
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    b->refs++;
    int check = !!(b->flags & PEER_REC_F_PDIGESTS);
    uint64_t off = (uint64_t)piece * b->piece_size;
    int fd = b->fd;
    uint32_t gen = b->sync_fails;
    pthread_mutex_unlock(&s->lock);

    if (check) rc = check_piece_digest(s, b, piece, data, len, err);
    for (int attempt = 0;; attempt++) {
        if (!rc) rc = write_bytes(s, b, piece, fd, data, len, off, err);
        pthread_mutex_lock(&s->lock);
        if (rc || b->deleted || b->sync_fails == gen || proto_bit_get(b->have, piece)) break;
        /* A flush of this blob failed while we wrote: our pages may have been in the failed
         * writeback, and the next fdatasync would not say so (the error is reported once).
         * Write again; the next fdatasync covers the new pages. A disk that keeps failing
         * gets a few tries, then the caller serves the bytes without caching them. */
        if (attempt >= 3) {
            rc = digest_hex_err(err, -EIO, digest, "write lost by 4 failed fdatasyncs in a row");
            break;
        }
        gen = b->sync_fails;
        pthread_mutex_unlock(&s->lock);
    }

    /* s->lock is held here. */
    uint64_t now = peer_now_ms();
    if (!rc && !b->deleted && !proto_bit_get(b->have, piece)) {
        proto_bit_set(b->have, piece);
        b->n_have++;
        b->bytes_have += len;
        b->dirty = 1;
        b->last_access_ms = now;
        b->atime_dirty = 1;
        s->bytes_used += len;
        s->pending_pieces++;
        s->pending_bytes += len;
        if (!s->oldest_pending_ms) s->oldest_pending_ms = now;
        s->st.pieces_written++;
        s->st.bytes_written += len;
    }
    peer_blob_unref(s, b);
    int need_flush = s->pending_pieces >= s->flush_pieces || s->pending_bytes >= s->flush_bytes ||
                     (s->oldest_pending_ms && now - s->oldest_pending_ms >= s->flush_delay_ms);
    int need_evict = s->quota_high && s->bytes_used > s->quota_high;
    pthread_mutex_unlock(&s->lock);
    if (rc) return rc;
    if (need_flush) {
        /* The piece is written either way; a failed flush leaves it pending (retried by the
         * next flush) and is reported by the daemon's own flush calls, not as a write error. */
        cf_err fe = {0};
        int frc = peer_store_flush(s, &fe); /* evicts too */
        if (frc) cf_warn("cache: automatic flush failed: %s", cf_err_str(&fe, frc));
        return 0;
    }
    if (need_evict) peer_store_evict(s, UINT64_MAX, NULL);
    return 0;
}

#ifdef CHUNKFLY_FAULTS
/* Test-only (CHUNKFLY_FAULTS builds): CHUNKFLY_FAULT_FSYNC_FAIL=<64-hex digest or a prefix of
 * it, "sha256:" optional> makes a flush's fdatasync of that blob's data file fail with EIO,
 * CHUNKFLY_FAULT_FSYNC_FAIL_COUNT times (default 1), then work again. Changing or unsetting
 * either variable re-arms the count. */
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static char fault_spec[256];
static unsigned long fault_done;

static int fault_fsync_fail(const uint8_t *digest)
{
    const char *want = getenv("CHUNKFLY_FAULT_FSYNC_FAIL");
    const char *cnt = getenv("CHUNKFLY_FAULT_FSYNC_FAIL_COUNT");
    char spec[256], hex[2 * PEER_DIGEST_LEN + 1];
    snprintf(spec, sizeof(spec), "%s/%s", want ? want : "", cnt ? cnt : "");
    if (want && !strncmp(want, "sha256:", 7)) want += 7;
    size_t n = want ? strlen(want) : 0;
    unsigned long limit = cnt && *cnt ? strtoul(cnt, NULL, 10) : 1, done = 0;
    hexname(digest, hex);
    int hit = 0;
    pthread_mutex_lock(&fault_lock);
    if (strcmp(spec, fault_spec)) {
        snprintf(fault_spec, sizeof(fault_spec), "%s", spec);
        fault_done = 0;
    }
    if (n && n <= 2 * PEER_DIGEST_LEN && !strncasecmp(hex, want, n) && fault_done < limit) {
        done = ++fault_done;
        hit = 1;
    }
    pthread_mutex_unlock(&fault_lock);
    if (hit)
        cf_warn("cache: test fault CHUNKFLY_FAULT_FSYNC_FAIL: fdatasync of blob %s fails with EIO "
                "(%lu of %lu)",
                hex, done, limit);
    return hit;
}
#endif

/* fdatasync of a blob's data file (and the test-only fault hook). 0 or -errno. */
static int sync_data(const peer_blob *b, int fd)
{
#ifdef CHUNKFLY_FAULTS
    if (fault_fsync_fail(b->digest)) return -EIO;
#else
    (void)b;
#endif
    return fdatasync(fd) ? -errno : 0;
}

struct flush_item {
    peer_blob *b;
    uint8_t *snap; /* have-bitmap at snapshot time; NULL when only atime is dirty */
    int fd;
    int sync_rc;
    int atime;       /* its last access time was dirty */
    uint8_t *newdur; /* durable bitmap to commit */
    peer_rec rec;    /* record to commit (built under lock) */
};

/* Under s->lock, after b's fdatasync failed: the kernel may have dropped the dirty pages, so
 * every written piece that is not durable is unknown now. They go back to absent (the caller
 * fetches them again; peer_store_stats.pieces_dropped counts them), and a write running
 * concurrently writes its piece again (sync_fails). Returns the number of pieces dropped. */
static uint32_t drop_unsynced(peer_store *s, peer_blob *b)
{
    uint32_t dropped = 0;
    for (uint32_t p = 0; p < b->piece_count; p++)
        if (proto_bit_get(b->have, p) && !proto_bit_get(b->durable, p)) {
            uint32_t pl = proto_piece_len(b->length, b->piece_size, p);
            proto_bit_clear(b->have, p);
            if (s->pending_pieces) s->pending_pieces--;
            b->n_have--;
            b->bytes_have -= pl;
            s->bytes_used -= pl;
            dropped++;
        }
    b->sync_fails++;
    s->st.pieces_dropped += dropped;
    return dropped;
}

/* One flush (steps below). *commit_rc: the commit's own result. */
static int flush_once(peer_store *s, cf_err *err, int *commit_rc)
{
    pthread_mutex_lock(&s->idx_lock);
    pthread_mutex_lock(&s->lock);
    size_t n = 0, cap = 0;
    struct flush_item *v = NULL;
    int rc = 0, left_pending = 0;
    /* 0. Snapshot the dirty blobs. One left out (no memory) keeps its dirty flags. */
    for (size_t i = 0; i < s->table_size && !rc; i++)
        for (peer_blob *b = s->table[i]; b && !rc; b = b->next) {
            if (!b->dirty && !b->atime_dirty) continue;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                void *nv = realloc(v, nc * sizeof(*v));
                if (!nv) {
                    rc = -ENOMEM;
                    break;
                }
                v = nv;
                cap = nc;
            }
            struct flush_item *it = &v[n];
            memset(it, 0, sizeof(*it));
            it->b = b;
            it->fd = -1;
            size_t bl = proto_bitmap_nbytes(b->piece_count);
            if (b->dirty && b->fd >= 0) {
                it->snap = malloc(bl ? bl : 1);
                if (!it->snap) {
                    rc = -ENOMEM;
                    break;
                }
                memcpy(it->snap, b->have, bl);
                it->fd = b->fd;
                b->dirty = 0;
            }
            it->atime = b->atime_dirty;
            b->atime_dirty = 0;
            b->refs++;
            n++;
        }
    if (rc) {
        cf_err_set(err, rc, "cache: flush: out of memory; the rest waits for the next flush");
        left_pending = 1;
    }
    uint64_t oldest = s->oldest_pending_ms;
    s->oldest_pending_ms = 0;
    s->pending_bytes = 0;
    pthread_mutex_unlock(&s->lock);

    /* 1. Make the bytes durable: one fdatasync per data file with new pieces. */
    for (size_t i = 0; i < n; i++)
        if (v[i].snap) v[i].sync_rc = sync_data(v[i].b, v[i].fd);

    /* 2. Build the records: durable |= pieces the sync covered. A failed sync costs only its
     * own blob's unsynced pieces; every other blob is committed all the same. */
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        struct flush_item *it = &v[i];
        peer_blob *b = it->b;
        if (b->deleted) continue;
        size_t bl = proto_bitmap_nbytes(b->piece_count);
        if (it->sync_rc) {
            char hb[65];
            hexname(b->digest, hb);
            uint32_t dropped = drop_unsynced(s, b);
            cf_error("cache: fdatasync of blob %s failed (%s): dropped its %u unsynced piece(s), "
                     "to be fetched again",
                     hb, strerror(-it->sync_rc), dropped);
            if (!rc)
                rc = cf_err_set(err, it->sync_rc,
                                "cache: fdatasync of blob %s: %s (%u unsynced piece(s) dropped)",
                                hb, strerror(-it->sync_rc), dropped);
            free(it->snap);
            it->snap = NULL; /* its record is still committed: durable bits as before */
        }
        it->newdur = malloc(bl ? bl : 1);
        if (!it->newdur) {
            if (!rc) rc = cf_err_set(err, -ENOMEM, "cache: flush: out of memory");
            continue; /* stays pending (step 4) */
        }
        memcpy(it->newdur, b->durable, bl);
        if (it->snap)
            for (size_t k = 0; k < bl; k++) it->newdur[k] |= it->snap[k] & b->have[k];
        peer_blob_to_rec(b, &it->rec);
        it->rec.bitmap = it->newdur;
    }
    pthread_mutex_unlock(&s->lock);

    /* 3. One commit for all of them. b's other record fields only change under idx_lock. */
    MDB_txn *txn = NULL;
    int crc = 0;
    if (n) crc = peer_index_begin(&s->ix, &txn, rc ? NULL : err);
    for (size_t i = 0; i < n && !crc; i++) {
        if (!v[i].newdur) continue;
        crc = peer_index_put_blob(&s->ix, txn, v[i].b->digest, &v[i].rec, rc ? NULL : err);
    }
    if (txn) {
        if (crc)
            peer_index_abort(txn);
        else
            crc = peer_index_commit(&s->ix, txn, rc ? NULL : err);
    }
    if (!rc) rc = crc;

    /* 4. Apply: pieces now durable. Whatever was not committed (commit failed, no memory)
     * stays pending for the next flush. */
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        struct flush_item *it = &v[i];
        peer_blob *b = it->b;
        if (!b->deleted) {
            if (!crc && it->newdur) {
                size_t bl = proto_bitmap_nbytes(b->piece_count);
                uint32_t before = b->n_durable;
                memcpy(b->durable, it->newdur, bl);
                b->n_durable = proto_bits_count(b->durable, b->piece_count);
                uint64_t gained = b->n_durable - before;
                s->pending_pieces -= gained < s->pending_pieces ? gained : s->pending_pieces;
            } else {
                if (it->snap) b->dirty = 1;
                if (it->atime) b->atime_dirty = 1;
            }
            if (b->dirty) left_pending = 1;
        }
        free(it->snap);
        free(it->newdur);
        peer_blob_unref(s, b);
    }
    if (n && !crc) s->st.flushes++;
    if (left_pending && !s->oldest_pending_ms)
        s->oldest_pending_ms = oldest ? oldest : peer_now_ms();
    int evict = s->quota_high && s->bytes_used > s->quota_high;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->idx_lock);
    free(v);
    if (evict) peer_store_evict(s, UINT64_MAX, NULL);
    *commit_rc = crc;
    return rc;
}

int peer_store_flush(peer_store *s, cf_err *err)
{
    int crc = 0;
    int rc = flush_once(s, err, &crc);
    /* A full file system (not a full index map) fails the commit when the index needs new
     * pages: make room as a piece write does, then commit again; the pieces are pending. */
    if (crc != -ENOSPC || disk_avail(s) >= ROOM_SLACK) return rc;
    uint64_t freed = 0;
    uint32_t n = evict_for_room(s, 0, &freed);
    cf_warn("cache %s: disk full while committing the index: evicted %u unused blob(s), %llu "
            "bytes%s",
            s->dir, n, (unsigned long long)freed, n ? ", committing again" : "");
    if (!n) return rc;
    if (rc != crc) {
        /* An earlier error (a failed fdatasync) stays the one reported. */
        flush_once(s, NULL, &crc);
        return rc;
    }
    cf_err_clear(err);
    return flush_once(s, err, &crc);
}

/* --- reads and leases --- */

int peer_store_read(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], uint64_t off, void *buf,
                    size_t len, uint32_t *missing, size_t missing_cap, size_t *n_missing,
                    cf_err *err)
{
    if (n_missing) *n_missing = 0;
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    if (!b) {
        pthread_mutex_unlock(&s->lock);
        return digest_hex_err(err, -ENOENT, digest, "not in the cache");
    }
    if (off > b->length || len > b->length - off) {
        uint64_t blen = b->length;
        pthread_mutex_unlock(&s->lock);
        char msg[160];
        snprintf(msg, sizeof(msg), "read of %zu bytes at %llu is past the end (%llu bytes)", len,
                 (unsigned long long)off, (unsigned long long)blen);
        return digest_hex_err(err, -EINVAL, digest, msg);
    }
    if (len == 0) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    uint32_t first = (uint32_t)(off / b->piece_size);
    uint32_t last = (uint32_t)((off + len - 1) / b->piece_size);
    size_t nm = 0;
    for (uint32_t p = first; p <= last; p++)
        if (!proto_bit_get(b->have, p)) {
            if (missing && nm < missing_cap) missing[nm] = p;
            nm++;
        }
    if (nm) {
        s->st.read_misses++;
        pthread_mutex_unlock(&s->lock);
        if (n_missing) *n_missing = nm;
        char msg[160];
        snprintf(msg, sizeof(msg), "%zu of pieces %u..%u not present", nm, first, last);
        return digest_hex_err(err, -ENODATA, digest, msg);
    }
    int rc = blob_fd(s, b, err);
    if (rc) {
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    b->refs++;
    b->last_access_ms = peer_now_ms();
    b->atime_dirty = 1; /* persisted by the next flush, not here */
    int fd = b->fd;
    pthread_mutex_unlock(&s->lock);

    rc = cf_pread_full(fd, buf, len, off);
    if (rc) {
        char msg[160];
        snprintf(msg, sizeof(msg), "read of %zu bytes at %llu: %s", len, (unsigned long long)off,
                 strerror(-rc));
        digest_hex_err(err, rc == -ENODATA ? -EIO : rc, digest, msg);
        if (rc == -ENODATA) rc = -EIO; /* short file: not "missing piece" */
    }
    pthread_mutex_lock(&s->lock);
    if (!rc) {
        s->st.read_hits++;
        s->st.bytes_read += len;
    }
    peer_blob_unref(s, b);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int peer_store_lease_piece(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], uint32_t piece,
                           peer_piece_lease *lease, cf_err *err)
{
    memset(lease, 0, sizeof(*lease));
    lease->fd = -1;
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    int rc = 0;
    if (!b) {
        rc = digest_hex_err(err, -ENOENT, digest, "not in the cache");
    } else if (piece >= b->piece_count) {
        char msg[96];
        snprintf(msg, sizeof(msg), "piece %u out of range (%u pieces)", piece, b->piece_count);
        rc = digest_hex_err(err, -EINVAL, digest, msg);
    } else if (!proto_bit_get(b->have, piece)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "piece %u not present", piece);
        rc = digest_hex_err(err, -ENODATA, digest, msg);
    } else if (!(rc = blob_fd(s, b, err))) {
        b->refs++;
        b->last_access_ms = peer_now_ms();
        b->atime_dirty = 1;
        lease->fd = b->fd;
        lease->offset = (uint64_t)piece * b->piece_size;
        lease->length = proto_piece_len(b->length, b->piece_size, piece);
        lease->piece = piece;
        lease->priv = b;
        s->st.leases++;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void peer_store_lease_release(peer_store *s, peer_piece_lease *lease)
{
    if (!lease || !lease->priv) return;
    pthread_mutex_lock(&s->lock);
    peer_blob_unref(s, lease->priv);
    pthread_mutex_unlock(&s->lock);
    lease->priv = NULL;
    lease->fd = -1;
}

/* --- pins --- */

static int change_pin(peer_store *s, const uint8_t *digest, int delta, cf_err *err)
{
    int rc = 0;
    pthread_mutex_lock(&s->idx_lock);
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    if (!b)
        rc = digest_hex_err(err, -ENOENT, digest, "not in the cache");
    else if (delta < 0 && b->pin_count == 0)
        rc = digest_hex_err(err, -EINVAL, digest, "unpin of a blob that is not pinned");
    else
        b->pin_count += (uint32_t)delta;
    peer_rec r;
    if (!rc) peer_blob_to_rec(b, &r);
    pthread_mutex_unlock(&s->lock);
    if (!rc) {
        rc = commit_rec(s, digest, &r, err);
        if (rc) {
            pthread_mutex_lock(&s->lock);
            b->pin_count -= (uint32_t)delta;
            pthread_mutex_unlock(&s->lock);
        }
    }
    pthread_mutex_unlock(&s->idx_lock);
    return rc;
}

int peer_store_set_private(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], int is_private,
                           cf_err *err)
{
    int rc = 0, changed = 0;
    pthread_mutex_lock(&s->idx_lock);
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    uint8_t old = b ? b->flags : 0;
    peer_rec r;
    if (!b) {
        rc = digest_hex_err(err, -ENOENT, digest, "not in the cache");
    } else {
        if (is_private)
            b->flags |= PEER_REC_F_PRIVATE;
        else
            b->flags &= (uint8_t)~PEER_REC_F_PRIVATE;
        changed = b->flags != old;
        if (changed) peer_blob_to_rec(b, &r);
    }
    pthread_mutex_unlock(&s->lock);
    if (changed && (rc = commit_rec(s, digest, &r, err))) {
        pthread_mutex_lock(&s->lock);
        b->flags = old;
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&s->idx_lock);
    return rc;
}

int peer_store_pin(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], cf_err *err)
{
    return change_pin(s, digest, 1, err);
}

int peer_store_unpin(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], cf_err *err)
{
    return change_pin(s, digest, -1, err);
}

/* --- integrity --- */

/* Flushes, then sets flags on a complete blob (caller holds a ref). */
static int set_verified(peer_store *s, peer_blob *b, cf_err *err)
{
    int rc = 0;
    pthread_mutex_lock(&s->idx_lock);
    pthread_mutex_lock(&s->lock);
    if (b->deleted)
        rc = digest_hex_err(err, -ENOENT, b->digest, "purged while being verified");
    else if (b->n_durable != b->piece_count)
        rc = digest_hex_err(err, -EAGAIN, b->digest, "pieces not durable yet (flush failed?)");
    else
        b->flags |= PEER_REC_F_VERIFIED;
    peer_rec r;
    if (!rc) peer_blob_to_rec(b, &r);
    pthread_mutex_unlock(&s->lock);
    if (!rc) {
        rc = commit_rec(s, b->digest, &r, err);
        if (rc) {
            pthread_mutex_lock(&s->lock);
            b->flags &= (uint8_t)~PEER_REC_F_VERIFIED;
            pthread_mutex_unlock(&s->lock);
        }
    }
    pthread_mutex_unlock(&s->idx_lock);
    return rc;
}

/* Takes a ref on a complete blob, or fails with -ENOENT/-ENODATA. */
static int ref_complete(peer_store *s, const uint8_t *digest, peer_blob **out, cf_err *err)
{
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    int rc = 0;
    if (!b) {
        rc = digest_hex_err(err, -ENOENT, digest, "not in the cache");
    } else if (b->n_have != b->piece_count) {
        char msg[96];
        snprintf(msg, sizeof(msg), "incomplete: %u of %u pieces", b->n_have, b->piece_count);
        rc = digest_hex_err(err, -ENODATA, digest, msg);
    } else if (!(rc = blob_fd(s, b, err))) {
        b->refs++;
        *out = b;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void unref_locked(peer_store *s, peer_blob *b)
{
    pthread_mutex_lock(&s->lock);
    peer_blob_unref(s, b);
    pthread_mutex_unlock(&s->lock);
}

/* Flushes before verifying b (caller holds a ref). Only b's own state matters: a failed
 * fdatasync of another blob is logged, and b is still verified when all its pieces are durable. */
static int flush_for(peer_store *s, peer_blob *b, cf_err *err)
{
    cf_err fe = {0};
    int rc = peer_store_flush(s, &fe);
    if (!rc) return 0;
    pthread_mutex_lock(&s->lock);
    int durable = !b->deleted && b->n_durable == b->piece_count;
    pthread_mutex_unlock(&s->lock);
    if (!durable) return cf_err_set(err, rc, "%s", cf_err_str(&fe, rc));
    cf_warn("cache: flush before verifying: %s (the blob verified is durable)",
            cf_err_str(&fe, rc));
    return 0;
}

int peer_store_mark_verified(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], cf_err *err)
{
    peer_blob *b = NULL;
    int rc = ref_complete(s, digest, &b, err);
    if (rc) return rc;
    rc = flush_for(s, b, err);
    if (!rc) rc = set_verified(s, b, err);
    unref_locked(s, b);
    return rc;
}

int peer_store_verify(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], cf_err *err)
{
    peer_blob *b = NULL;
    int rc = ref_complete(s, digest, &b, err);
    if (rc) return rc;
    rc = flush_for(s, b, err);
    if (rc) {
        unref_locked(s, b);
        return rc;
    }
    /* fd stays valid: we hold a ref. Hash from disk, not from what we meant to write. */
    uint8_t *buf = malloc(VERIFY_CHUNK);
    cf_digest_ctx ctx;
    if (!buf || cf_digest_init(&ctx, CF_DIGEST_SHA256)) {
        free(buf);
        unref_locked(s, b);
        return -ENOMEM;
    }
    for (uint64_t off = 0; off < b->length && !rc;) {
        size_t n = b->length - off < VERIFY_CHUNK ? (size_t)(b->length - off) : VERIFY_CHUNK;
        rc = cf_pread_full(b->fd, buf, n, off);
        if (!rc) cf_digest_update(&ctx, buf, n);
        off += n;
    }
    free(buf);
    uint8_t got[PEER_DIGEST_LEN];
    if (rc) {
        cf_digest_abort(&ctx);
        char msg[96];
        snprintf(msg, sizeof(msg), "reading data file to verify: %s", strerror(-rc));
        unref_locked(s, b);
        return digest_hex_err(err, rc == -ENODATA ? -EIO : rc, digest, msg);
    }
    cf_digest_final(&ctx, got);
    if (memcmp(got, digest, PEER_DIGEST_LEN)) {
        char hg[65], msg[160];
        cf_hex_encode(got, 32, hg);
        snprintf(msg, sizeof(msg), "content hashes to sha256:%s; blob purged", hg);
        unref_locked(s, b);
        peer_store_purge(s, digest, NULL);
        return digest_hex_err(err, -EBADMSG, digest, msg);
    }
    rc = set_verified(s, b, err);
    unref_locked(s, b);
    return rc;
}

int peer_store_set_piece_digests(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN],
                                 enum cf_digest_algo algo, const uint8_t *digests, uint32_t count,
                                 cf_err *err)
{
    if (algo != CF_DIGEST_SHA256 && algo != CF_DIGEST_BLAKE3)
        return cf_err_set(err, -EINVAL, "unknown digest algorithm %d", (int)algo);
    int rc = 0;
    pthread_mutex_lock(&s->idx_lock);
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    if (!b) {
        rc = digest_hex_err(err, -ENOENT, digest, "not in the cache");
    } else if (count != b->piece_count) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%u piece digests given for %u pieces", count, b->piece_count);
        rc = digest_hex_err(err, -EINVAL, digest, msg);
    }
    pthread_mutex_unlock(&s->lock);
    if (rc) goto out;
    MDB_txn *txn;
    if ((rc = peer_index_begin(&s->ix, &txn, err))) goto out;
    uint8_t oldflags = b->flags, oldalgo = b->pdig_algo;
    peer_rec r;
    pthread_mutex_lock(&s->lock);
    b->flags |= PEER_REC_F_PDIGESTS;
    b->pdig_algo = (uint8_t)algo;
    peer_blob_to_rec(b, &r);
    pthread_mutex_unlock(&s->lock);
    rc = peer_index_put_pdigest(&s->ix, txn, digest, (uint8_t)algo, digests, count, err);
    if (!rc) rc = peer_index_put_blob(&s->ix, txn, digest, &r, err);
    if (rc)
        peer_index_abort(txn);
    else
        rc = peer_index_commit(&s->ix, txn, err);
    if (rc) {
        pthread_mutex_lock(&s->lock);
        b->flags = oldflags;
        b->pdig_algo = oldalgo;
        pthread_mutex_unlock(&s->lock);
    }
out:
    pthread_mutex_unlock(&s->idx_lock);
    return rc;
}

static int pdig_lookup(peer_store *s, const uint8_t *digest, cf_err *err)
{
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    int rc = !b ? -ENOENT : !(b->flags & PEER_REC_F_PDIGESTS) ? -ENODATA : 0;
    pthread_mutex_unlock(&s->lock);
    if (rc == -ENOENT) return digest_hex_err(err, rc, digest, "not in the cache");
    if (rc) return digest_hex_err(err, rc, digest, "no piece digest list stored");
    return 0;
}

int peer_store_get_piece_digests(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN],
                                 enum cf_digest_algo *algo, uint8_t **out, uint32_t *count,
                                 cf_err *err)
{
    *out = NULL;
    *count = 0;
    int rc = pdig_lookup(s, digest, err);
    if (rc) return rc;
    uint8_t a = 0;
    rc = peer_index_get_pdigest(&s->ix, digest, &a, out, count, 0, NULL, err);
    if (rc == -ENOENT) return digest_hex_err(err, -ENODATA, digest, "no piece digest list");
    if (!rc && algo) *algo = (enum cf_digest_algo)a;
    return rc;
}

int peer_store_get_piece_digest(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN],
                                uint32_t piece, enum cf_digest_algo *algo,
                                uint8_t out[PEER_DIGEST_LEN], cf_err *err)
{
    int rc = pdig_lookup(s, digest, err);
    if (rc) return rc;
    uint8_t a = 0;
    rc = peer_index_get_pdigest(&s->ix, digest, &a, NULL, NULL, piece, out, err);
    if (rc == -ENOENT) return digest_hex_err(err, -ENODATA, digest, "no piece digest list");
    if (!rc && algo) *algo = (enum cf_digest_algo)a;
    return rc;
}

int peer_store_purge(peer_store *s, const uint8_t digest[PEER_DIGEST_LEN], cf_err *err)
{
    pthread_mutex_lock(&s->idx_lock);
    pthread_mutex_lock(&s->lock);
    peer_blob *b = peer_blob_find(s, digest);
    if (b) {
        peer_blob_unlink_table(s, b);
        s->st.purges++;
    }
    pthread_mutex_unlock(&s->lock);
    int rc = b ? peer_store_remove_blobs(s, &b, 1, err)
               : digest_hex_err(err, -ENOENT, digest, "not in the cache");
    pthread_mutex_unlock(&s->idx_lock);
    return rc;
}

/* --- listing --- */

int peer_store_list(peer_store *s, peer_blob_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&s->lock);
    size_t cnt = s->nblobs;
    peer_blob_info *v = cnt ? malloc(cnt * sizeof(*v)) : NULL;
    if (cnt && !v) {
        pthread_mutex_unlock(&s->lock);
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->table_size; i++)
        for (peer_blob *b = s->table[i]; b && k < cnt; b = b->next) blob_info(b, &v[k++]);
    pthread_mutex_unlock(&s->lock);
    *out = v;
    *n = k;
    return 0;
}

void peer_store_stats_get(peer_store *s, peer_store_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->st;
    out->bytes_used = s->bytes_used;
    out->bytes_pending = 0;
    out->blobs = s->nblobs;
    out->blobs_complete = out->blobs_verified = out->blobs_atime_dirty = 0;
    for (size_t i = 0; i < s->table_size; i++)
        for (peer_blob *b = s->table[i]; b; b = b->next) {
            out->blobs_complete += b->n_have == b->piece_count;
            out->blobs_verified += !!(b->flags & PEER_REC_F_VERIFIED);
            out->blobs_atime_dirty += !!b->atime_dirty;
            if (b->n_have != b->n_durable)
                for (uint32_t p = 0; p < b->piece_count; p++)
                    if (proto_bit_get(b->have, p) && !proto_bit_get(b->durable, p))
                        out->bytes_pending += proto_piece_len(b->length, b->piece_size, p);
        }
    out->quota_high = s->quota_high;
    out->quota_low = s->quota_low;
    pthread_mutex_unlock(&s->lock);
}
