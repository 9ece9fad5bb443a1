/* Streaming Nydus data-blob writer: chunking, a parallel digest+compress pipeline with a
 * bounded ring of in-flight chunks (output order preserved), in-layer dedup, ci v1 array and
 * header, blob.digest, reverse-tar headers and TOC, and the blob id (SHA-256 of every byte
 * written except the blob.digest array, as nydus-image computes it; nydus-format.md §3). */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "cf/digest.h"
#include "rafs/digester.h"
#include "cf/file_io.h"
#include "cf/hex.h"
#include "cf/log.h"
#include "rafs/builder.h"
#include "rafs/compressor.h"

enum { SLOT_FREE, SLOT_FILLING, SLOT_QUEUED, SLOT_DONE };

struct slot {
    uint8_t *raw, *out;
    size_t len, out_len;
    int compressed, rc, state;
    uint8_t digest[32];
    struct rafs_inode *ino;
    uint64_t pos, file_off;
};

struct rafs_blob_writer {
    struct rafs_blob_opts o;
    int fd, cache_fd;
    uint32_t blob_index;
    struct rafs_chunk_table *ct;
    const struct rafs_chunk_dict *dict; /* or NULL */
    struct rafs_chunk_table *dict_used; /* the dictionary's chunks this build references */
    uint32_t base;                      /* ct index of this blob's ci index 0 */
    uint32_t nchunks;                   /* stored (distinct) chunks */
    EVP_MD_CTX *sha;                    /* running blob-id hash */
    /* sha256 of every byte written (the blob's OCI digest): the blob-id hash until the first
     * byte it skips, then a copy of it fed everything: no second pass over the blob */
    EVP_MD_CTX *file_sha;
    uint64_t written, comp_off, uncomp_off, file_bytes;
    uint32_t dedup_chunks;
    uint64_t dedup_bytes;
    size_t out_cap;

    struct slot *slots;
    unsigned nslots, head, count;
    int filling; /* slot index being filled, -1 none */

    pthread_t *th;
    unsigned nth;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    unsigned *jobq;
    unsigned jq_head, jq_count;
    int stop;
    ZSTD_CCtx *cctx;         /* for synchronous mode */
    uint8_t zero_digest[32]; /* digest of a full all-zero chunk (sparse/zero data shortcut) */
    int zero_stored;         /* a zero chunk is in the blob: later ones need no compression */

    struct rafs_inode *cur;
    uint64_t cur_size, cur_fed;

    /* tail state */
    int meta_done, finished;
    struct rafs_toc_entry toc[6];
    unsigned ntoc;
    struct rafs_blob_result res;
    uint8_t *ci; /* uncompressed ci array, kept for the cache .blob.meta */
    struct rafs_ci_header *cihdr;
};

static int all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t z[256];
    for (; n >= sizeof(z); p += sizeof(z), n -= sizeof(z))
        if (memcmp(p, z, sizeof(z))) return 0;
    return !memcmp(p, z, n);
}

static void process(struct rafs_blob_writer *w, struct slot *s, ZSTD_CCtx *cc)
{
    s->compressed = 0;
    /* Sparse files and zero-filled regions: a full zero chunk always has the same digest and,
     * once stored, is deduplicated, so skip hashing (and compressing) it again. */
    if (s->len == w->o.chunk_size && all_zero(s->raw, s->len)) {
        memcpy(s->digest, w->zero_digest, 32);
        if (__atomic_load_n(&w->zero_stored, __ATOMIC_ACQUIRE)) return;
    } else {
        s->rc = cf_digest(rafs_cf_digest_algo(w->o.digester), s->raw, s->len, s->digest);
        if (s->rc) return;
    }
    if (w->o.compressor == RAFS_COMP_ZSTD) {
        size_t n = ZSTD_compressCCtx(cc, s->out, w->out_cap, s->raw, s->len, w->o.zstd_level);
        if (!ZSTD_isError(n) && n < s->len) {
            s->out_len = n;
            s->compressed = 1;
        }
    } else if (w->o.compressor == RAFS_COMP_LZ4_BLOCK) {
        size_t n;
        if (!rafs_compress(RAFS_COMP_LZ4_BLOCK, 0, s->raw, s->len, s->out, w->out_cap, &n) &&
            n < s->len) {
            s->out_len = n;
            s->compressed = 1;
        }
    }
}

static void *worker(void *arg)
{
    struct rafs_blob_writer *w = arg;
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && !w->jq_count) pthread_cond_wait(&w->cv_work, &w->mu);
        if (w->stop) break;
        unsigned i = w->jobq[w->jq_head];
        w->jq_head = (w->jq_head + 1) % w->nslots;
        w->jq_count--;
        pthread_mutex_unlock(&w->mu);
        struct slot *s = &w->slots[i];
        if (!cc && w->o.compressor == RAFS_COMP_ZSTD)
            s->rc = -ENOMEM;
        else
            process(w, s, cc);
        pthread_mutex_lock(&w->mu);
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&w->cv_done);
    }
    pthread_mutex_unlock(&w->mu);
    ZSTD_freeCCtx(cc);
    return NULL;
}

/* Writes blob bytes; `hash` = feed the blob-id hasher. */
static int out_write(struct rafs_blob_writer *w, const void *p, size_t n, int hash, cf_err *err)
{
    int rc = cf_write_full(w->fd, p, n);
    if (rc)
        return cf_err_set(err, rc, "writing data blob at offset %llu: %s",
                          (unsigned long long)w->written, strerror(-rc));
    if (!hash && !w->file_sha) {
        w->file_sha = EVP_MD_CTX_new();
        if (!w->file_sha || !EVP_MD_CTX_copy_ex(w->file_sha, w->sha))
            return cf_err_set(err, -ENOMEM, "sha256 context copy failed");
    }
    if (hash) EVP_DigestUpdate(w->sha, p, n);
    if (w->file_sha) EVP_DigestUpdate(w->file_sha, p, n);
    w->written += n;
    return 0;
}

int rafs_blob_writer_new(const struct rafs_blob_opts *o, int fd, int cache_fd, uint32_t blob_index,
                         struct rafs_chunk_table *chunks, rafs_blob_writer **out, cf_err *err)
{
    if (o->chunk_size < RAFS_MIN_CHUNK_SIZE || o->chunk_size > RAFS_MAX_CHUNK_SIZE ||
        (o->chunk_size & (o->chunk_size - 1)))
        return cf_err_set(err, -EINVAL,
                          "chunk size 0x%x must be a power of two between 0x1000 and 0x1000000",
                          o->chunk_size);
    if (o->compressor != RAFS_COMP_NONE && o->compressor != RAFS_COMP_ZSTD &&
        o->compressor != RAFS_COMP_LZ4_BLOCK)
        return cf_err_set(err, -ENOTSUP, "compressor %s is not supported for chunks",
                          rafs_compressor_name(o->compressor));
    struct rafs_blob_writer *w = calloc(1, sizeof(*w));
    if (!w) return -ENOMEM;
    w->o = *o;
    if (!w->o.zstd_level) w->o.zstd_level = 3;
    w->fd = fd;
    w->cache_fd = cache_fd;
    w->blob_index = blob_index;
    w->ct = chunks;
    w->base = chunks->n;
    w->filling = -1;
    w->out_cap = rafs_compress_bound(RAFS_COMP_ZSTD, o->chunk_size);
    size_t lz = rafs_compress_bound(RAFS_COMP_LZ4_BLOCK, o->chunk_size);
    if (lz > w->out_cap) w->out_cap = lz;
    w->nth = o->threads;
    w->nslots = o->max_inflight ? o->max_inflight : 2 * w->nth + 2;
    if (w->nslots < 2) w->nslots = 2;
    int rc = -ENOMEM;
    w->sha = EVP_MD_CTX_new();
    w->slots = calloc(w->nslots, sizeof(*w->slots));
    w->jobq = calloc(w->nslots, sizeof(*w->jobq));
    if (!w->sha || !w->slots || !w->jobq || !EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL))
        goto fail;
    for (unsigned i = 0; i < w->nslots; i++) {
        w->slots[i].raw = malloc(o->chunk_size);
        w->slots[i].out = malloc(w->out_cap);
        if (!w->slots[i].raw || !w->slots[i].out) goto fail;
    }
    if (!w->nth && !(w->cctx = ZSTD_createCCtx())) goto fail;
    memset(w->slots[0].raw, 0, o->chunk_size);
    if ((rc = cf_digest(rafs_cf_digest_algo(o->digester), w->slots[0].raw, o->chunk_size,
                        w->zero_digest)))
        goto fail;
    rc = -ENOMEM;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv_work, NULL);
    pthread_cond_init(&w->cv_done, NULL);
    if (w->nth) {
        w->th = calloc(w->nth, sizeof(*w->th));
        if (!w->th) goto fail_threads;
        for (unsigned i = 0; i < w->nth; i++) {
            if (pthread_create(&w->th[i], NULL, worker, w)) {
                w->nth = i;
                rc = -EAGAIN;
                goto fail_threads;
            }
        }
    }
    *out = w;
    return 0;
fail_threads:
    rafs_blob_writer_free(w);
    return cf_err_set(err, rc, "starting %u compression threads failed", o->threads);
fail:
    rc = cf_err_set(err, rc, "allocating %u chunk buffers of %u bytes", w->nslots, o->chunk_size);
    if (w->slots)
        for (unsigned i = 0; i < w->nslots; i++) {
            free(w->slots[i].raw);
            free(w->slots[i].out);
        }
    free(w->slots);
    free(w->jobq);
    if (w->sha) EVP_MD_CTX_free(w->sha);
    EVP_MD_CTX_free(w->file_sha);
    free(w);
    return rc;
}

void rafs_blob_writer_free(rafs_blob_writer *w)
{
    if (!w) return;
    if (w->th) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_broadcast(&w->cv_work);
        pthread_mutex_unlock(&w->mu);
        for (unsigned i = 0; i < w->nth; i++) pthread_join(w->th[i], NULL);
        free(w->th);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv_work);
    pthread_cond_destroy(&w->cv_done);
    for (unsigned i = 0; i < w->nslots; i++) {
        free(w->slots[i].raw);
        free(w->slots[i].out);
    }
    free(w->slots);
    free(w->jobq);
    ZSTD_freeCCtx(w->cctx);
    EVP_MD_CTX_free(w->sha);
    EVP_MD_CTX_free(w->file_sha);
    free(w->ci);
    free(w->cihdr);
    free(w);
}

void rafs_blob_writer_set_dict(rafs_blob_writer *w, const struct rafs_chunk_dict *dict,
                               struct rafs_chunk_table *used)
{
    w->dict = dict;
    w->dict_used = used;
}

/* Stores a finished chunk (in stream order): dedup or append to the blob. */
static int commit(struct rafs_blob_writer *w, struct slot *s, cf_err *err)
{
    if (s->rc) return cf_err_set(err, s->rc, "digest/compression of a chunk failed");
    if (w->dict) { /* the dictionary first, as nydus-image: its chunk is not stored again */
        int64_t d = rafs_chunk_table_find(&w->dict->chunks, s->digest, 0, (uint32_t)s->len);
        if (d >= 0) {
            struct rafs_chunk c = w->dict->chunks.v[d];
            c.blob_index = w->dict->blob_of[d];
            int64_t u =
                rafs_chunk_table_find(w->dict_used, c.digest, c.blob_index, c.uncompressed_size);
            uint32_t idx = (uint32_t)u;
            if (u < 0) {
                c.file_offset = s->file_off;
                int rc = rafs_chunk_table_add(w->dict_used, &c, &idx);
                if (rc) return cf_err_set(err, rc, "chunk table: %s", strerror(-rc));
                if (idx >= RAFS_CHUNK_DICT_REF)
                    return cf_err_set(err, -EFBIG, "too many dictionary chunks");
            }
            s->ino->chunks[s->pos] = RAFS_CHUNK_DICT_REF | idx;
            return 0;
        }
    }
    int64_t found = rafs_chunk_table_find(w->ct, s->digest, w->blob_index, (uint32_t)s->len);
    if (found >= 0) {
        s->ino->chunks[s->pos] = (uint32_t)found;
        w->dedup_chunks++;
        w->dedup_bytes += s->len;
        return 0;
    }
    if (w->nchunks > RAFS_MAX_CI_INDEX)
        return cf_err_set(err, -EFBIG, "more than %u distinct chunks in one blob",
                          RAFS_MAX_CI_INDEX + 1);
    struct rafs_chunk c = {0};
    memcpy(c.digest, s->digest, 32);
    c.blob_index = w->blob_index;
    c.ci_index = w->nchunks;
    c.flags = s->compressed ? RAFS_CHUNK_COMPRESSED : 0;
    c.uncompressed_size = (uint32_t)s->len;
    c.compressed_size = (uint32_t)(s->compressed ? s->out_len : s->len);
    c.compressed_offset = w->comp_off;
    c.uncompressed_offset = w->uncomp_off;
    c.file_offset = s->file_off;
    if (c.compressed_offset + c.compressed_size > 0xFFFFFFFFFFull ||
        c.uncompressed_offset + s->len > (1ull << 44))
        return cf_err_set(err, -EFBIG, "data blob larger than the ci v1 format can address");
    int rc = out_write(w, s->compressed ? s->out : s->raw, c.compressed_size, 1, err);
    if (rc) return rc;
    if (w->cache_fd >= 0) {
        rc = cf_pwrite_full(w->cache_fd, s->raw, s->len, c.uncompressed_offset);
        if (rc) return cf_err_set(err, rc, "writing blob cache data: %s", strerror(-rc));
    }
    uint32_t idx;
    rc = rafs_chunk_table_add(w->ct, &c, &idx);
    if (rc) return cf_err_set(err, rc, "chunk table: %s", strerror(-rc));
    s->ino->chunks[s->pos] = idx;
    w->comp_off += c.compressed_size;
    w->uncomp_off += ((uint64_t)s->len + RAFS_BLOCK_SIZE - 1) & ~(uint64_t)(RAFS_BLOCK_SIZE - 1);
    w->nchunks++;
    /* workers seeing this may skip compressing further zero chunks: they dedup to this one */
    if (s->len == w->o.chunk_size && !memcmp(s->digest, w->zero_digest, 32))
        __atomic_store_n(&w->zero_stored, 1, __ATOMIC_RELEASE);
    return 0;
}

/* Waits for the oldest in-flight chunk and commits it. */
static int retire_one(struct rafs_blob_writer *w, cf_err *err)
{
    struct slot *s = &w->slots[w->head];
    if (w->nth) {
        pthread_mutex_lock(&w->mu);
        while (s->state != SLOT_DONE) pthread_cond_wait(&w->cv_done, &w->mu);
        pthread_mutex_unlock(&w->mu);
    }
    int rc = commit(w, s, err);
    s->state = SLOT_FREE;
    w->head = (w->head + 1) % w->nslots;
    w->count--;
    return rc;
}

static void submit(struct rafs_blob_writer *w, struct slot *s, unsigned idx)
{
    if (!w->nth) {
        process(w, s, w->cctx);
        s->state = SLOT_DONE;
        return;
    }
    pthread_mutex_lock(&w->mu);
    s->state = SLOT_QUEUED;
    w->jobq[(w->jq_head + w->jq_count) % w->nslots] = idx;
    w->jq_count++;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
}

int rafs_blob_writer_begin_file(rafs_blob_writer *w, struct rafs_inode *ino, uint64_t size,
                                cf_err *err)
{
    if (w->cur) return cf_err_set(err, -EINVAL, "blob writer: previous file not ended");
    if (size > (1ull << 44))
        return cf_err_set(err, -EFBIG, "file of %llu bytes is larger than RAFS supports",
                          (unsigned long long)size);
    uint64_t n = (size + w->o.chunk_size - 1) / w->o.chunk_size;
    free(ino->chunks);
    ino->chunks = NULL;
    ino->nchunks = n;
    ino->size = size;
    if (n && !(ino->chunks = calloc(n, sizeof(uint32_t))))
        return cf_err_set(err, -ENOMEM, "chunk list of %llu entries", (unsigned long long)n);
    w->cur = ino;
    w->cur_size = size;
    w->cur_fed = 0;
    return 0;
}

int rafs_blob_writer_buf(rafs_blob_writer *w, void **buf, size_t *avail, cf_err *err)
{
    if (!w->cur) return cf_err_set(err, -EINVAL, "blob writer: no file started");
    if (w->cur_fed == w->cur_size) {
        *avail = 0;
        *buf = NULL;
        return 0;
    }
    if (w->filling < 0) {
        if (w->count == w->nslots) {
            int rc = retire_one(w, err);
            if (rc) return rc;
        }
        unsigned i = (w->head + w->count) % w->nslots;
        w->count++;
        struct slot *s = &w->slots[i];
        s->state = SLOT_FILLING;
        s->len = 0;
        s->rc = 0;
        s->ino = w->cur;
        s->file_off = w->cur_fed;
        s->pos = w->cur_fed / w->o.chunk_size;
        w->filling = (int)i;
    }
    struct slot *s = &w->slots[w->filling];
    uint64_t room = w->o.chunk_size - s->len, left = w->cur_size - w->cur_fed;
    *avail = (size_t)(room < left ? room : left);
    *buf = s->raw + s->len;
    return 0;
}

int rafs_blob_writer_advance(rafs_blob_writer *w, size_t n, cf_err *err)
{
    if (w->filling < 0) return n ? cf_err_set(err, -EINVAL, "blob writer: no buffer") : 0;
    struct slot *s = &w->slots[w->filling];
    if (n > w->o.chunk_size - s->len || n > w->cur_size - w->cur_fed)
        return cf_err_set(err, -EINVAL, "blob writer: advance past the buffer");
    s->len += n;
    w->cur_fed += n;
    w->file_bytes += n;
    if (s->len == w->o.chunk_size || w->cur_fed == w->cur_size) {
        submit(w, s, (unsigned)w->filling);
        w->filling = -1;
    }
    return 0;
}

int rafs_blob_writer_end_file(rafs_blob_writer *w, cf_err *err)
{
    if (!w->cur) return 0;
    if (w->cur_fed != w->cur_size) {
        uint64_t fed = w->cur_fed, size = w->cur_size;
        w->cur = NULL;
        return cf_err_set(err, -EBADMSG, "file data ended after %llu of %llu bytes",
                          (unsigned long long)fed, (unsigned long long)size);
    }
    w->cur = NULL;
    return 0;
}

int rafs_blob_writer_flush(rafs_blob_writer *w, cf_err *err)
{
    if (w->filling >= 0) return cf_err_set(err, -EINVAL, "blob writer: unfinished chunk");
    while (w->count) {
        int rc = retire_one(w, err);
        if (rc) return rc;
    }
    return 0;
}

/* 512-byte GNU tar header naming the blob section just written (§3.2). */
static void tar_header(uint8_t h[512], const char *name, uint64_t size)
{
    memset(h, 0, 512);
    snprintf((char *)h, 100, "%s", name);
    if (size < 077777777777ull) {
        char tmp[16];
        snprintf(tmp, sizeof(tmp), "%011llo", (unsigned long long)size);
        memcpy(h + 124, tmp, 12);
    } else { /* base-256 for sizes >= 8 GiB */
        h[124] = 0x80;
        for (int i = 0; i < 8; i++) h[135 - i] = (uint8_t)(size >> (8 * i));
    }
    memcpy(h + 136, "00000000000", 12);
    h[156] = '0';
    memcpy(h + 257, "ustar  ", 8);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    char ck[9];
    snprintf(ck, sizeof(ck), "%07o", sum & 07777777);
    memcpy(h + 148, ck, 8);
}

static int write_tar_header(struct rafs_blob_writer *w, const char *name, uint64_t size,
                            cf_err *err)
{
    uint8_t h[512];
    tar_header(h, name, size);
    return out_write(w, h, sizeof(h), 1, err);
}

static void toc_add(struct rafs_blob_writer *w, const char *name, uint32_t flags,
                    const uint8_t digest[32], uint64_t off, uint64_t csize, uint64_t usize)
{
    struct rafs_toc_entry *e = &w->toc[w->ntoc++];
    memset(e, 0, sizeof(*e));
    e->flags = rafs_to_le32(flags);
    memcpy(e->name, name, strlen(name));
    memcpy(e->uncompressed_digest, digest, 32);
    e->compressed_offset = rafs_to_le64(off);
    e->compressed_size = rafs_to_le64(csize);
    e->uncompressed_size = rafs_to_le64(usize);
}

static uint32_t toc_flag(enum rafs_compressor c)
{
    return c == RAFS_COMP_ZSTD        ? RAFS_TOC_FLAG_ZSTD
           : c == RAFS_COMP_LZ4_BLOCK ? RAFS_TOC_FLAG_LZ4_BLOCK
                                      : RAFS_TOC_FLAG_NONE;
}

int rafs_blob_writer_write_meta(rafs_blob_writer *w, cf_err *err)
{
    if (w->meta_done) return 0;
    int rc = rafs_blob_writer_flush(w, err);
    if (rc) return rc;
    int tar = w->o.blob_toc || w->o.inline_meta;
    struct rafs_blob_result *r = &w->res;
    memset(r, 0, sizeof(*r));
    r->features = RAFS_BLOB_ALIGNED | RAFS_BLOB_CAP_TAR_TOC;
    if (tar) r->features |= RAFS_BLOB_HAS_TAR_HEADER;
    if (w->o.blob_toc) r->features |= RAFS_BLOB_HAS_TOC | RAFS_BLOB_INLINED_CHUNK_DIGEST;
    if (w->o.inline_meta) r->features |= RAFS_BLOB_INLINED_FS_META;
    r->data_size = w->comp_off;
    r->uncompressed_size = w->uncomp_off;
    r->chunk_count = w->nchunks;
    r->file_bytes = w->file_bytes;
    r->dedup_chunks = w->dedup_chunks;
    r->dedup_bytes = w->dedup_bytes;
    uint8_t dg[32];
    if (tar) {
        if ((rc = write_tar_header(w, RAFS_TOC_NAME_BLOB, w->comp_off, err))) return rc;
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        unsigned l = 32;
        if (!c || !EVP_MD_CTX_copy_ex(c, w->sha) || !EVP_DigestFinal_ex(c, dg, &l)) {
            EVP_MD_CTX_free(c);
            return cf_err_set(err, -ENOMEM, "sha256 context copy failed");
        }
        EVP_MD_CTX_free(c);
        toc_add(w, RAFS_TOC_NAME_BLOB, RAFS_TOC_FLAG_NONE, dg, 0, w->comp_off, w->uncomp_off);
    }
    /* ci array v1 in ci-index order */
    size_t cilen = (size_t)w->nchunks * sizeof(struct rafs_ci_v1);
    w->ci = malloc(cilen ? cilen : 1);
    w->cihdr = calloc(1, sizeof(*w->cihdr));
    if (!w->ci || !w->cihdr) return -ENOMEM;
    for (uint32_t i = 0; i < w->nchunks; i++) {
        const struct rafs_chunk *c = &w->ct->v[w->base + i];
        struct rafs_ci_v1 e = {
            rafs_to_le64(rafs_ci_v1_pack_uncomp(c->uncompressed_offset, c->uncompressed_size)),
            rafs_to_le64(rafs_ci_v1_pack_comp(c->compressed_offset, c->compressed_size))};
        memcpy(w->ci + i * sizeof(e), &e, sizeof(e));
    }
    const uint8_t *ci_out = w->ci;
    size_t ci_out_len = cilen;
    r->ci_compressor = RAFS_COMP_NONE;
    uint8_t *cbuf = NULL;
    if (cilen && w->o.compressor != RAFS_COMP_NONE) {
        size_t cap = rafs_compress_bound(w->o.compressor, cilen), n;
        cbuf = malloc(cap);
        if (!cbuf) return -ENOMEM;
        if (!rafs_compress(w->o.compressor, w->o.zstd_level, w->ci, cilen, cbuf, cap, &n) &&
            n < cilen) {
            ci_out = cbuf;
            ci_out_len = n;
            r->ci_compressor = w->o.compressor;
        }
    }
    r->ci_offset = w->written;
    r->ci_compressed_size = ci_out_len;
    r->ci_uncompressed_size = cilen;
    struct rafs_ci_header *h = w->cihdr;
    h->s_magic = rafs_to_le32(RAFS_CI_MAGIC);
    h->s_magic2 = rafs_to_le32(RAFS_CI_MAGIC);
    h->s_features = rafs_to_le32(r->features);
    h->s_ci_compressor = rafs_to_le32(r->ci_compressor);
    h->s_ci_entries = rafs_to_le32(w->nchunks);
    h->s_ci_offset = rafs_to_le64(r->ci_offset);
    h->s_ci_compressed_size = rafs_to_le64(ci_out_len);
    h->s_ci_uncompressed_size = rafs_to_le64(cilen);
    rc = out_write(w, ci_out, ci_out_len, 1, err);
    free(cbuf);
    if (rc) return rc;
    if ((rc = out_write(w, h, sizeof(*h), 1, err))) return rc;
    if (tar) {
        cf_sha256(w->ci, cilen, dg);
        toc_add(w, RAFS_TOC_NAME_META, toc_flag(r->ci_compressor), dg, r->ci_offset, ci_out_len,
                cilen);
        cf_sha256(h, sizeof(*h), dg);
        toc_add(w, RAFS_TOC_NAME_META_HEADER, RAFS_TOC_FLAG_NONE, dg, r->ci_offset + ci_out_len,
                sizeof(*h), sizeof(*h));
        if ((rc = write_tar_header(w, RAFS_TOC_NAME_META, ci_out_len + sizeof(*h), err))) return rc;
    }
    if (w->o.blob_toc) {
        /* The digest array is not fed to the blob-id hasher (nydus-image does the same). */
        size_t dlen = (size_t)w->nchunks * 32;
        uint8_t *d = malloc(dlen ? dlen : 1);
        if (!d) return -ENOMEM;
        for (uint32_t i = 0; i < w->nchunks; i++)
            memcpy(d + 32 * i, w->ct->v[w->base + i].digest, 32);
        uint64_t off = w->written;
        rc = out_write(w, d, dlen, 0, err);
        cf_sha256(d, dlen, dg);
        free(d);
        if (rc) return rc;
        toc_add(w, RAFS_TOC_NAME_DIGEST, RAFS_TOC_FLAG_NONE, dg, off, dlen, dlen);
        if ((rc = write_tar_header(w, RAFS_TOC_NAME_DIGEST, dlen, err))) return rc;
    }
    r->size_before_boot = w->written;
    r->blob_size = w->written;
    w->meta_done = 1;
    return 0;
}

void rafs_blob_writer_preview(rafs_blob_writer *w, struct rafs_blob_result *res)
{
    *res = w->res;
    res->blob_id[0] = 0;
}

int rafs_blob_writer_finish(rafs_blob_writer *w, const void *boot, size_t boot_len,
                            struct rafs_blob_result *res, cf_err *err)
{
    int rc = rafs_blob_writer_write_meta(w, err);
    if (rc) return rc;
    if (w->finished) return cf_err_set(err, -EINVAL, "blob writer: finished twice");
    struct rafs_blob_result *r = &w->res;
    uint8_t dg[32];
    if (w->o.inline_meta) {
        if (!boot) return cf_err_set(err, -EINVAL, "inline meta: no bootstrap to embed");
        const uint8_t *p = boot;
        size_t n = boot_len;
        uint8_t *cb = NULL;
        uint32_t flag = RAFS_TOC_FLAG_NONE;
        if (w->o.blob_toc) { /* zstd when it shrinks (§3.2) */
            size_t cap = ZSTD_compressBound(boot_len);
            cb = malloc(cap);
            if (!cb) return -ENOMEM;
            size_t cn = ZSTD_compress(cb, cap, boot, boot_len, w->o.zstd_level);
            if (!ZSTD_isError(cn) && cn < boot_len) {
                p = cb;
                n = cn;
                flag = RAFS_TOC_FLAG_ZSTD;
            }
        }
        uint64_t off = w->written;
        rc = out_write(w, p, n, 1, err);
        free(cb);
        if (rc) return rc;
        cf_sha256(boot, boot_len, dg);
        toc_add(w, RAFS_TOC_NAME_BOOT, flag, dg, off, n, boot_len);
        if ((rc = write_tar_header(w, RAFS_TOC_NAME_BOOT, n, err))) return rc;
    }
    if (w->o.blob_toc) {
        uint8_t buf[sizeof(w->toc) + 512];
        size_t tl = w->ntoc * sizeof(struct rafs_toc_entry);
        memcpy(buf, w->toc, tl);
        tar_header(buf + tl, RAFS_TOC_NAME_TOC, tl);
        if ((rc = out_write(w, buf, tl + 512, 1, err))) return rc;
        cf_sha256(buf, tl + 512, r->toc_digest);
        r->toc_size = (uint32_t)(tl + 512);
    }
    unsigned l = 32;
    uint8_t id[32];
    if (!w->file_sha) { /* every byte went to the blob-id hash too */
        w->file_sha = EVP_MD_CTX_new();
        if (!w->file_sha || !EVP_MD_CTX_copy_ex(w->file_sha, w->sha))
            return cf_err_set(err, -ENOMEM, "sha256 context copy failed");
    }
    EVP_DigestFinal_ex(w->file_sha, r->file_sha256, &l);
    l = 32;
    EVP_DigestFinal_ex(w->sha, id, &l);
    cf_hex_encode(id, 32, r->blob_id);
    r->blob_size = w->written;
    w->finished = 1;
    *res = *r;
    return 0;
}

int rafs_blob_writer_cache_meta(rafs_blob_writer *w, int fd, cf_err *err)
{
    if (!w->meta_done) return cf_err_set(err, -EINVAL, "blob meta not written yet");
    size_t cilen = (size_t)w->nchunks * sizeof(struct rafs_ci_v1);
    size_t padded = (cilen + RAFS_BLOCK_SIZE - 1) & ~(size_t)(RAFS_BLOCK_SIZE - 1);
    uint8_t *b = calloc(1, padded + RAFS_CI_HEADER_SIZE);
    if (!b) return -ENOMEM;
    memcpy(b, w->ci, cilen);
    /* decoded ci array + the header exactly as in the blob (readers check it against the
     * blob table) */
    memcpy(b + padded, w->cihdr, sizeof(*w->cihdr));
    int rc = cf_write_full(fd, b, padded + RAFS_CI_HEADER_SIZE);
    free(b);
    if (rc) return cf_err_set(err, rc, "writing blob.meta cache file: %s", strerror(-rc));
    return 0;
}
