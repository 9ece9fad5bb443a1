/* The chunk cache (see mount/blob_cache.h): missing chunks are claimed (one fetcher per chunk,
 * others wait), grouped into runs of blob-adjacent chunks up to amplify_io, fetched (runs in
 * parallel), verified, written to .blob.data and only then marked ready in the chunk_map. */
#include "mount/blob_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cf/file_io.h"
#include "cf/log.h"
#include "chunk_map.h"
#include "rafs/blob.h"

#define DEFAULT_AMPLIFY (1u << 20)
#define DEFAULT_THREADS 4u
#define MAX_THREADS     16u
#define CLAIM_ATTEMPTS  3   /* rounds of "wait for another fetcher, then try ourselves" */
#define FILL_BATCH      256 /* chunks per round of mount_blob_cache_fill_file */

struct cblob {
    const struct rafs_blob_info *bi;
    int data_fd;
    char *data_path; /* NULL without work_dir */
    struct mount_chunk_map map;
    pthread_mutex_t mu; /* inflight[], src */
    pthread_cond_t cv;  /* an inflight flag was cleared */
    uint8_t *inflight;  /* per chunk: 1 while some thread fetches it */
    pthread_mutex_t open_mu;
    rafs_blob_source *src; /* opened on the first miss */
    /* blob address space index (read_blob): chunk refs by ci index, built once */
    struct rafs_chunk_ref *index;
    uint8_t *indexed;
};

struct mount_blob_cache {
    const rafs_image *img;
    uint32_t nblobs;
    struct cblob *blobs;
    uint64_t amplify;
    unsigned threads;
    mount_blob_open_fn open_blob;
    void *open_ctx;
    enum rafs_compressor compressor;
    enum rafs_digester digester;
    pthread_mutex_t index_mu;
    int index_built;  /* 1 once built (read under index_mu or after it was seen set) */
    unsigned running; /* atomic: read calls in progress */
    struct mount_blob_cache_stats st;
};

#define STAT_ADD(c, f, n) __atomic_add_fetch(&(c)->st.f, (n), __ATOMIC_RELAXED)

static int open_blob_files(struct cblob *b, const char *work_dir, cf_err *err)
{
    const struct rafs_blob_info *bi = b->bi;
    bool fresh = false;
    char *map_path = NULL;
    if (strchr(bi->id, '/') || !strcmp(bi->id, ".") || !strcmp(bi->id, "..") || !bi->id[0])
        return cf_err_set(err, -EBADMSG, "blob id '%s' cannot be a file name", bi->id);
    if (work_dir) {
        size_t n = strlen(work_dir) + strlen(bi->id) + 32;
        b->data_path = malloc(n);
        map_path = malloc(n);
        if (!b->data_path || !map_path) {
            free(map_path);
            return cf_err_set(err, -ENOMEM, "out of memory");
        }
        snprintf(b->data_path, n, "%s/%s.blob.data", work_dir, bi->id);
        snprintf(map_path, n, "%s/%s.blob.data.chunk_map", work_dir, bi->id);
        b->data_fd = open(b->data_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    } else {
        const char *tmp = getenv("TMPDIR");
        b->data_fd = open(tmp && *tmp ? tmp : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    }
    int rc = 0;
    struct stat st;
    if (b->data_fd < 0 || fstat(b->data_fd, &st) < 0) {
        rc = cf_err_set(err, -errno, "cache file %s: %s", b->data_path ? b->data_path : "(tmp)",
                        strerror(errno));
        goto out;
    }
    /* A data file that is new, or has not the blob's size, cannot back any ready bit. */
    fresh = (uint64_t)st.st_size != bi->uncompressed_size || st.st_size == 0;
    if (fresh && ftruncate(b->data_fd, (off_t)bi->uncompressed_size) < 0) {
        rc = cf_err_set(err, -errno, "cache file %s: truncate to %llu: %s", b->data_path,
                        (unsigned long long)bi->uncompressed_size, strerror(errno));
        goto out;
    }
    rc = mount_chunk_map_open(&b->map, map_path, bi->chunk_count, fresh, err);
    if (!rc && !(b->inflight = calloc(bi->chunk_count ? bi->chunk_count : 1, 1)))
        rc = cf_err_set(err, -ENOMEM, "out of memory");
out:
    free(map_path);
    return rc;
}

void mount_blob_cache_free(mount_blob_cache *c)
{
    if (!c) return;
    for (uint32_t i = 0; i < c->nblobs; i++) {
        struct cblob *b = &c->blobs[i];
        if (b->data_fd >= 0) close(b->data_fd);
        free(b->data_path);
        mount_chunk_map_close(&b->map);
        free(b->inflight);
        rafs_blob_source_close(b->src);
        free(b->index);
        free(b->indexed);
        pthread_mutex_destroy(&b->mu);
        pthread_mutex_destroy(&b->open_mu);
        pthread_cond_destroy(&b->cv);
    }
    free(c->blobs);
    pthread_mutex_destroy(&c->index_mu);
    free(c);
}

int mount_blob_cache_new(const rafs_image *img, const struct mount_blob_cache_opts *o,
                         mount_blob_cache **out, cf_err *err)
{
    *out = NULL;
    if (!o->open_blob) return cf_err_set(err, -EINVAL, "blob cache: no open_blob function");
    if (o->work_dir) {
        int rc = cf_mkdir_p(o->work_dir, 0755);
        if (rc) return cf_err_set(err, rc, "cache directory %s: %s", o->work_dir, strerror(-rc));
    }
    mount_blob_cache *c = calloc(1, sizeof(*c));
    if (!c) return cf_err_set(err, -ENOMEM, "out of memory");
    const struct rafs_super_info *sb = rafs_image_super(img);
    c->img = img;
    c->nblobs = rafs_image_blob_count(img);
    c->amplify = o->amplify_io ? o->amplify_io : DEFAULT_AMPLIFY;
    c->threads = o->fetch_threads ? o->fetch_threads : DEFAULT_THREADS;
    if (c->threads > MAX_THREADS) c->threads = MAX_THREADS;
    c->open_blob = o->open_blob;
    c->open_ctx = o->open_ctx;
    c->compressor = sb->compressor;
    c->digester = sb->digester;
    pthread_mutex_init(&c->index_mu, NULL);
    c->blobs = calloc(c->nblobs ? c->nblobs : 1, sizeof(*c->blobs));
    if (!c->blobs) {
        free(c);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    int rc = 0;
    for (uint32_t i = 0; i < c->nblobs; i++) {
        struct cblob *b = &c->blobs[i];
        b->bi = rafs_image_blob(img, i);
        b->data_fd = -1;
        pthread_mutex_init(&b->mu, NULL);
        pthread_mutex_init(&b->open_mu, NULL);
        pthread_cond_init(&b->cv, NULL);
    }
    for (uint32_t i = 0; i < c->nblobs && !rc; i++)
        rc = open_blob_files(&c->blobs[i], o->work_dir, err);
    if (rc) {
        mount_blob_cache_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

unsigned mount_blob_cache_reads_running(const mount_blob_cache *c)
{
    return __atomic_load_n(&c->running, __ATOMIC_RELAXED);
}

const char *mount_blob_cache_data_path(const mount_blob_cache *c, uint32_t blob)
{
    return blob < c->nblobs ? c->blobs[blob].data_path : NULL;
}

int mount_blob_cache_blob_complete(const mount_blob_cache *c, uint32_t blob)
{
    return blob < c->nblobs && mount_chunk_map_complete(&c->blobs[blob].map);
}

void mount_blob_cache_get_stats(const mount_blob_cache *c, struct mount_blob_cache_stats *out)
{
    out->bytes_read = __atomic_load_n(&c->st.bytes_read, __ATOMIC_RELAXED);
    out->backend_reads = __atomic_load_n(&c->st.backend_reads, __ATOMIC_RELAXED);
    out->backend_bytes = __atomic_load_n(&c->st.backend_bytes, __ATOMIC_RELAXED);
    out->backend_errors = __atomic_load_n(&c->st.backend_errors, __ATOMIC_RELAXED);
    out->chunks_fetched = __atomic_load_n(&c->st.chunks_fetched, __ATOMIC_RELAXED);
    out->chunks_hit = __atomic_load_n(&c->st.chunks_hit, __ATOMIC_RELAXED);
    out->chunks_waited = __atomic_load_n(&c->st.chunks_waited, __ATOMIC_RELAXED);
    out->verify_failures = __atomic_load_n(&c->st.verify_failures, __ATOMIC_RELAXED);
    out->reads = __atomic_load_n(&c->st.reads, __ATOMIC_RELAXED);
    out->read_ns = __atomic_load_n(&c->st.read_ns, __ATOMIC_RELAXED);
    out->chunks_ready = out->chunks_total = 0;
    for (uint32_t i = 0; i < c->nblobs; i++) {
        out->chunks_ready += __atomic_load_n(&c->blobs[i].map.ready, __ATOMIC_RELAXED);
        out->chunks_total += c->blobs[i].map.count;
    }
}

/* ---- fetching ------------------------------------------------------------------------------ */

static int get_source(mount_blob_cache *c, struct cblob *b, const rafs_blob_source **out,
                      cf_err *err)
{
    pthread_mutex_lock(&b->open_mu);
    int rc = 0;
    if (!b->src) {
        rc = c->open_blob(c->open_ctx, b->bi, &b->src, err);
        if (rc) {
            b->src = NULL;
            STAT_ADD(c, backend_errors, 1);
            cf_error("blob %s: cannot open its source: %s", b->bi->id, cf_err_str(err, rc));
        }
    }
    *out = b->src;
    pthread_mutex_unlock(&b->open_mu);
    return rc;
}

/* One backend read covering refs[first..first+n) (same blob, compressed-adjacent). */
struct run {
    const struct rafs_chunk_ref *const *refs;
    size_t n;
    int rc;
    cf_err err;
};

static int store_chunk(mount_blob_cache *c, struct cblob *b, const struct rafs_chunk_ref *r,
                       const uint8_t *comp, uint8_t *tmp, cf_err *err)
{
    int rc;
    if (!r->has_digest) {
        STAT_ADD(c, verify_failures, 1);
        rc = cf_err_set(err, -EIO, "chunk %u of blob %s has no digest in the image: not served",
                        r->ci_index, b->bi->id);
        cf_error("%s", err ? err->msg : "chunk without digest");
        return rc;
    }
    cf_err derr = {0};
    rc = rafs_chunk_decode(comp, r, c->compressor, c->digester, tmp, &derr);
    if (rc) {
        STAT_ADD(c, verify_failures, 1);
        cf_error("blob %s chunk %u: %s: not cached", b->bi->id, r->ci_index, derr.msg);
        return cf_err_set(err, -EIO, "blob %s chunk %u: %s", b->bi->id, r->ci_index, derr.msg);
    }
    rc = cf_pwrite_full(b->data_fd, tmp, r->uncompressed_size, r->uncompressed_offset);
    if (rc) {
        cf_error("blob %s chunk %u: writing the cache: %s", b->bi->id, r->ci_index, strerror(-rc));
        return cf_err_set(err, rc, "blob %s chunk %u: writing the cache: %s", b->bi->id,
                          r->ci_index, strerror(-rc));
    }
    /* Data first, then the bit: a crash in between leaves a chunk that is fetched again. */
    mount_chunk_map_set_ready(&b->map, r->ci_index);
    STAT_ADD(c, chunks_fetched, 1);
    return 0;
}

static void do_run(mount_blob_cache *c, struct run *run)
{
    const struct rafs_chunk_ref *f = run->refs[0], *l = run->refs[run->n - 1];
    struct cblob *b = &c->blobs[f->blob_index];
    uint64_t start = f->compressed_offset;
    uint64_t len = l->compressed_offset + l->compressed_size - start;
    uint8_t *comp = NULL, *tmp = NULL;
    const rafs_blob_source *src;
    run->rc = get_source(c, b, &src, &run->err);
    if (run->rc) return;
    uint32_t maxu = 0; /* the biggest chunk of the run, not RAFS_MAX_CHUNK_SIZE: most are small */
    for (size_t i = 0; i < run->n; i++)
        if (run->refs[i]->uncompressed_size > maxu) maxu = run->refs[i]->uncompressed_size;
    comp = malloc(len);
    tmp = malloc(maxu ? maxu : 1);
    if (!comp || !tmp) {
        run->rc = cf_err_set(&run->err, -ENOMEM, "out of memory");
        goto out;
    }
    STAT_ADD(c, backend_reads, 1);
    int rc = rafs_blob_source_read_full(src, comp, len, start);
    if (rc) {
        STAT_ADD(c, backend_errors, 1);
        run->rc = cf_err_set(&run->err, rc == -ENODATA ? -EIO : rc,
                             "blob %s: reading %llu bytes at %llu (chunks %u..%u): %s", b->bi->id,
                             (unsigned long long)len, (unsigned long long)start, f->ci_index,
                             l->ci_index, rc == -ENODATA ? "blob too short" : strerror(-rc));
        cf_error("%s", run->err.msg);
        goto out;
    }
    STAT_ADD(c, backend_bytes, len);
    for (size_t i = 0; i < run->n; i++) {
        const struct rafs_chunk_ref *r = run->refs[i];
        cf_err e = {0};
        rc = store_chunk(c, b, r, comp + (r->compressed_offset - start), tmp, &e);
        if (rc && !run->rc) {
            run->rc = rc;
            run->err = e;
        }
    }
out:
    free(comp);
    free(tmp);
}

struct run_pool {
    mount_blob_cache *c;
    struct run *runs;
    size_t nruns;
    size_t next; /* atomic */
};

static void *run_worker(void *arg)
{
    struct run_pool *p = arg;
    for (;;) {
        size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= p->nruns) break;
        do_run(p->c, &p->runs[i]);
    }
    return NULL;
}

static int cmp_ref_blob_off(const void *a, const void *b)
{
    const struct rafs_chunk_ref *x = *(const struct rafs_chunk_ref *const *)a;
    const struct rafs_chunk_ref *y = *(const struct rafs_chunk_ref *const *)b;
    if (x->blob_index != y->blob_index) return x->blob_index < y->blob_index ? -1 : 1;
    if (x->compressed_offset != y->compressed_offset)
        return x->compressed_offset < y->compressed_offset ? -1 : 1;
    return 0;
}

/* Fetches the claimed chunks (sorted here), in runs, concurrently. Returns the first error. */
static int fetch_claimed(mount_blob_cache *c, const struct rafs_chunk_ref **cl, size_t n,
                         cf_err *err)
{
    qsort(cl, n, sizeof(*cl), cmp_ref_blob_off);
    struct run *runs = calloc(n, sizeof(*runs));
    if (!runs) return cf_err_set(err, -ENOMEM, "out of memory");
    size_t nr = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        uint64_t end = cl[i]->compressed_offset + cl[i]->compressed_size;
        while (j < n && cl[j]->blob_index == cl[i]->blob_index && cl[j]->compressed_offset == end &&
               end + cl[j]->compressed_size - cl[i]->compressed_offset <= c->amplify) {
            end += cl[j]->compressed_size;
            j++;
        }
        runs[nr].refs = cl + i;
        runs[nr].n = j - i;
        nr++;
        i = j;
    }
    struct run_pool pool = {.c = c, .runs = runs, .nruns = nr};
    pthread_t th[MAX_THREADS];
    unsigned nth = 0;
    while (nth + 1 < c->threads && nth + 1 < nr) {
        if (pthread_create(&th[nth], NULL, run_worker, &pool)) break;
        nth++;
    }
    run_worker(&pool);
    for (unsigned t = 0; t < nth; t++) pthread_join(th[t], NULL);
    int rc = 0;
    for (size_t i = 0; i < nr && !rc; i++) {
        if (runs[i].rc) {
            rc = runs[i].rc;
            if (err) *err = runs[i].err;
        }
    }
    free(runs);
    return rc;
}

/* Makes refs[0..n) ready: claim what is missing, fetch it, wait for chunks other threads are
 * fetching, and try those ourselves when their fetch failed. */
static int ensure_ready(mount_blob_cache *c, const struct rafs_chunk_ref *refs, size_t n,
                        cf_err *err)
{
    const struct rafs_chunk_ref **claimed = malloc((n ? n : 1) * sizeof(*claimed));
    const struct rafs_chunk_ref **waiting = malloc((n ? n : 1) * sizeof(*waiting));
    if (!claimed || !waiting) {
        free(claimed);
        free(waiting);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    int rc = 0;
    for (int attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        size_t nc = 0, nw = 0;
        for (size_t i = 0; i < n; i++) {
            const struct rafs_chunk_ref *r = &refs[i];
            if (r->blob_index >= c->nblobs) {
                rc = cf_err_set(err, -EIO, "chunk names blob %u of %u", r->blob_index, c->nblobs);
                goto done;
            }
            struct cblob *b = &c->blobs[r->blob_index];
            if (mount_chunk_map_is_ready(&b->map, r->ci_index)) {
                if (attempt == 0) STAT_ADD(c, chunks_hit, 1);
                continue;
            }
            bool mine = false;
            for (size_t k = 0; k < nc && !mine; k++)
                mine =
                    claimed[k]->blob_index == r->blob_index && claimed[k]->ci_index == r->ci_index;
            if (mine) continue; /* the same chunk twice in one request (dedup) */
            pthread_mutex_lock(&b->mu);
            if (mount_chunk_map_is_ready(&b->map, r->ci_index)) {
                /* became ready meanwhile */
            } else if (b->inflight[r->ci_index]) {
                waiting[nw++] = r;
            } else {
                b->inflight[r->ci_index] = 1;
                claimed[nc++] = r;
            }
            pthread_mutex_unlock(&b->mu);
        }
        if (nc) {
            rc = fetch_claimed(c, claimed, nc, err);
            for (size_t k = 0; k < nc; k++) {
                struct cblob *b = &c->blobs[claimed[k]->blob_index];
                pthread_mutex_lock(&b->mu);
                b->inflight[claimed[k]->ci_index] = 0;
                pthread_cond_broadcast(&b->cv);
                pthread_mutex_unlock(&b->mu);
            }
            if (rc) goto done; /* our own fetch failed: report it, do not loop */
        }
        if (!nw) goto done;
        bool all = true;
        for (size_t k = 0; k < nw; k++) {
            struct cblob *b = &c->blobs[waiting[k]->blob_index];
            STAT_ADD(c, chunks_waited, 1);
            pthread_mutex_lock(&b->mu);
            while (b->inflight[waiting[k]->ci_index]) pthread_cond_wait(&b->cv, &b->mu);
            pthread_mutex_unlock(&b->mu);
            if (!mount_chunk_map_is_ready(&b->map, waiting[k]->ci_index)) all = false;
        }
        if (all) goto done;
    }
    rc = cf_err_set(err, -EIO, "chunks could not be fetched after %d attempts", CLAIM_ATTEMPTS);
done:
    free(claimed);
    free(waiting);
    return rc;
}

/* ---- reads --------------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* An on-demand read counts as running (prefetch waits while any runs) and is timed. */
static uint64_t read_begin(mount_blob_cache *c)
{
    uint64_t t0 = now_ns();
    __atomic_add_fetch(&c->running, 1, __ATOMIC_RELAXED);
    return t0;
}

static void read_end(mount_blob_cache *c, uint64_t t0)
{
    __atomic_sub_fetch(&c->running, 1, __ATOMIC_RELAXED);
    STAT_ADD(c, reads, 1);
    STAT_ADD(c, read_ns, now_ns() - t0);
}

static int map_file(mount_blob_cache *c, uint64_t nid, uint64_t offset, size_t len,
                    struct mount_blob_extent **ext, size_t *n, size_t *total, cf_err *err);

/* Copies the extents' bytes to buf (they total `total` bytes). */
static int read_extents(const struct mount_blob_extent *ext, size_t n, void *buf, cf_err *err)
{
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = cf_pread_full(ext[i].fd, (uint8_t *)buf + done, ext[i].len, (off_t)ext[i].offset);
        if (rc)
            return cf_err_set(err, -EIO, "reading the cache at %llu+%zu: %s",
                              (unsigned long long)ext[i].offset, ext[i].len, strerror(-rc));
        done += ext[i].len;
    }
    return 0;
}

/* The extents lie inside their cache files: a file cut short behind the daemon's back (it is
 * created at the blob's full size) must not be mapped, or a splicing reader would send a short
 * reply, which the kernel takes for the end of the file. */
static int extents_backed(const struct mount_blob_extent *e, size_t n, cf_err *err)
{
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (fstat(e[i].fd, &st) != 0 || (uint64_t)st.st_size < e[i].offset + e[i].len)
            return cf_err_set(err, -EIO,
                              "cache file shorter than the %zu bytes mapped at %llu (cut short "
                              "outside the daemon?)",
                              e[i].len, (unsigned long long)e[i].offset);
    }
    return 0;
}

int mount_blob_cache_read_file(mount_blob_cache *c, uint64_t nid, uint64_t offset, void *buf,
                               size_t len, size_t *nread, cf_err *err)
{
    struct mount_blob_extent *ext = NULL;
    size_t n = 0, total = 0;
    *nread = 0;
    uint64_t t0 = read_begin(c);
    int rc = map_file(c, nid, offset, len, &ext, &n, &total, err);
    if (!rc) rc = read_extents(ext, n, buf, err);
    read_end(c, t0);
    free(ext);
    if (!rc) *nread = total;
    return rc;
}

int mount_blob_cache_map_file(mount_blob_cache *c, uint64_t nid, uint64_t offset, size_t len,
                              struct mount_blob_extent **ext, size_t *n, size_t *total, cf_err *err)
{
    uint64_t t0 = read_begin(c);
    int rc = map_file(c, nid, offset, len, ext, n, total, err);
    read_end(c, t0);
    return rc;
}

static int map_file(mount_blob_cache *c, uint64_t nid, uint64_t offset, size_t len,
                    struct mount_blob_extent **ext, size_t *next, size_t *total, cf_err *err)
{
    struct rafs_chunk_ref *refs = NULL;
    size_t n = 0, ne = 0;
    *ext = NULL;
    *next = *total = 0;
    int rc = rafs_file_map(c->img, nid, offset, len, &refs, &n, err);
    if (rc) return rc;
    /* Only after this are the bytes behind the extents verified: every chunk is ready. */
    rc = ensure_ready(c, refs, n, err);
    struct mount_blob_extent *e = NULL;
    if (!rc && n && !(e = malloc(n * sizeof(*e)))) rc = cf_err_set(err, -ENOMEM, "out of memory");
    size_t done = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const struct rafs_chunk_ref *r = &refs[i];
        uint64_t in = offset + done - r->file_offset; /* offset + done lies in this chunk */
        uint64_t take = r->uncompressed_size - in;
        if (take > len - done) take = len - done;
        int fd = c->blobs[r->blob_index].data_fd;
        uint64_t at = r->uncompressed_offset + in;
        if (ne && e[ne - 1].fd == fd && e[ne - 1].offset + e[ne - 1].len == at)
            e[ne - 1].len += take; /* the next chunk follows in the same cache file */
        else
            e[ne++] = (struct mount_blob_extent){fd, at, take};
        done += take;
    }
    free(refs);
    if (!rc) rc = extents_backed(e, ne, err);
    if (rc) {
        free(e);
        return rc;
    }
    *ext = e;
    *next = ne;
    *total = done;
    STAT_ADD(c, bytes_read, done);
    return 0;
}

int mount_blob_cache_fill_file(mount_blob_cache *c, uint64_t nid, cf_err *err)
{
    uint64_t count;
    int rc = rafs_file_chunk_count(c->img, nid, &count, err);
    uint32_t cs = rafs_image_super(c->img)->chunk_size;
    for (uint64_t i = 0; !rc && i < count; i += FILL_BATCH) {
        struct rafs_chunk_ref *refs = NULL;
        size_t n = 0;
        rc = rafs_file_map(c->img, nid, i * cs, (uint64_t)FILL_BATCH * cs, &refs, &n, err);
        if (!rc) rc = ensure_ready(c, refs, n, err);
        free(refs);
    }
    return rc;
}

/* The blob address index: every chunk referenced by a file, by (blob, ci index). */
struct index_walk {
    mount_blob_cache *c;
    cf_err *err;
};

static int index_file(const struct rafs_walk_entry *e, void *ctx)
{
    struct index_walk *w = ctx;
    mount_blob_cache *c = w->c;
    if ((e->st->mode & 0170000) != 0100000 || e->st->size == 0) return 0;
    uint64_t count;
    int rc = rafs_file_chunk_count(c->img, e->nid, &count, w->err);
    uint32_t cs = rafs_image_super(c->img)->chunk_size;
    for (uint64_t i = 0; !rc && i < count; i += 4096) {
        struct rafs_chunk_ref *refs = NULL;
        size_t n = 0;
        rc = rafs_file_map(c->img, e->nid, i * cs, 4096ull * cs, &refs, &n, w->err);
        for (size_t k = 0; !rc && k < n; k++) {
            struct cblob *b = &c->blobs[refs[k].blob_index];
            if (refs[k].ci_index < b->bi->chunk_count && !b->indexed[refs[k].ci_index]) {
                b->index[refs[k].ci_index] = refs[k];
                b->indexed[refs[k].ci_index] = 1;
            }
        }
        free(refs);
    }
    return rc;
}

static int build_index(mount_blob_cache *c, cf_err *err)
{
    pthread_mutex_lock(&c->index_mu);
    int rc = 0;
    if (__atomic_load_n(&c->index_built, __ATOMIC_ACQUIRE)) goto out;
    for (uint32_t i = 0; i < c->nblobs && !rc; i++) {
        struct cblob *b = &c->blobs[i];
        uint32_t n = b->bi->chunk_count ? b->bi->chunk_count : 1;
        if (!(b->index = calloc(n, sizeof(*b->index))) || !(b->indexed = calloc(n, 1)))
            rc = cf_err_set(err, -ENOMEM, "out of memory for the chunk index");
    }
    struct index_walk w = {c, err};
    if (!rc) rc = rafs_walk(c->img, index_file, &w, err);
    if (!rc) __atomic_store_n(&c->index_built, 1, __ATOMIC_RELEASE);
    if (rc) {
        for (uint32_t i = 0; i < c->nblobs; i++) {
            free(c->blobs[i].index);
            free(c->blobs[i].indexed);
            c->blobs[i].index = NULL;
            c->blobs[i].indexed = NULL;
        }
    }
out:
    pthread_mutex_unlock(&c->index_mu);
    return rc;
}

static int map_blob(mount_blob_cache *c, uint32_t blob, uint64_t offset, size_t len,
                    struct mount_blob_extent *ext, cf_err *err);

int mount_blob_cache_read_blob(mount_blob_cache *c, uint32_t blob, uint64_t offset, void *buf,
                               size_t len, size_t *nread, cf_err *err)
{
    struct mount_blob_extent e;
    *nread = 0;
    uint64_t t0 = read_begin(c);
    int rc = map_blob(c, blob, offset, len, &e, err);
    if (!rc && e.len) rc = read_extents(&e, 1, buf, err);
    read_end(c, t0);
    if (!rc) *nread = e.len;
    return rc;
}

int mount_blob_cache_map_blob(mount_blob_cache *c, uint32_t blob, uint64_t offset, size_t len,
                              struct mount_blob_extent *ext, cf_err *err)
{
    uint64_t t0 = read_begin(c);
    int rc = map_blob(c, blob, offset, len, ext, err);
    read_end(c, t0);
    return rc;
}

static int map_blob(mount_blob_cache *c, uint32_t blob, uint64_t offset, size_t len,
                    struct mount_blob_extent *ext, cf_err *err)
{
    *ext = (struct mount_blob_extent){-1, offset, 0};
    if (blob >= c->nblobs)
        return cf_err_set(err, -EINVAL, "blob index %u out of range (%u blobs)", blob, c->nblobs);
    struct cblob *b = &c->blobs[blob];
    uint64_t size = b->bi->uncompressed_size;
    if (offset >= size || len == 0) return 0;
    if (len > size - offset) len = (size_t)(size - offset);
    int rc = 0;
    if (!mount_chunk_map_complete(&b->map)) {
        if (!__atomic_load_n(&c->index_built, __ATOMIC_ACQUIRE) && (rc = build_index(c, err)))
            return rc;
        /* ci order is uncompressed order (rafs_blob_meta_decode enforces it in blobs): the
         * first chunk ending after offset, by binary search over the indexed entries */
        uint32_t lo = 0, hi = b->bi->chunk_count;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2, m = mid;
            while (m < hi && !b->indexed[m]) m++;
            if (m == hi) {
                hi = mid;
            } else if (b->index[m].uncompressed_offset + b->index[m].uncompressed_size <= offset) {
                lo = m + 1;
            } else {
                hi = mid;
            }
        }
        size_t cap = 16, n = 0;
        struct rafs_chunk_ref *refs = malloc(cap * sizeof(*refs));
        if (!refs) return cf_err_set(err, -ENOMEM, "out of memory");
        for (uint32_t i = lo; i < b->bi->chunk_count; i++) {
            if (!b->indexed[i]) continue;
            if (b->index[i].uncompressed_offset >= offset + len) break;
            if (n == cap) {
                struct rafs_chunk_ref *nr = realloc(refs, 2 * cap * sizeof(*refs));
                if (!nr) {
                    free(refs);
                    return cf_err_set(err, -ENOMEM, "out of memory");
                }
                refs = nr;
                cap *= 2;
            }
            refs[n++] = b->index[i];
        }
        rc = ensure_ready(c, refs, n, err);
        free(refs);
        if (rc) return rc;
    }
    struct mount_blob_extent e = {b->data_fd, offset, len};
    if ((rc = extents_backed(&e, 1, err))) return rc;
    *ext = e;
    STAT_ADD(c, bytes_read, len);
    return 0;
}
