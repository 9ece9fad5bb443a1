/* client_convert (client/convert.h): OCI image -> Nydus image, registry to registry. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>

#include "cf/buf.h"
#include "cf/digest.h"
#include "cf/file_io.h"
#include "cf/hex.h"
#include "client/convert.h"
#include "convert_priv.h"
#include "proto/oci_model.h"
#include "proto/registry_client.h"
#include "proto/registry_push.h"
#include "rafs/builder.h"
#include "rafs/compressor.h"

#define CONFIG_MAX  (4u << 20)
#define PATH_CAP    4096
#define ANN_SRC_DIG "containerd.io/snapshot/nydus-source-digest"
#define ANN_SRC_REF "containerd.io/snapshot/nydus-source-reference"
#define ANN_BUILDER "containerd.io/snapshot/nydus-builder-version"

struct layer {
    const proto_oci_desc *src;
    char key[160];        /* cache key: source hex + build options */
    char blob_digest[72]; /* "sha256:<hex>" of the Nydus blob */
    uint64_t blob_size;
    char boot_path[PATH_CAP + 200];
    char meta_path[PATH_CAP + 200]; /* the blob's .blob.meta (absent: no file data) */
    long dup_of;                    /* index of an earlier layer with the same digest, or -1 */
    atomic_int phase;               /* enum phase: read by the status line */
};

/* where a layer is, for the status line (client_convert_opts.status) */
enum phase { PH_WAITING, PH_DOWNLOADING, PH_BUILDING, PH_PUSHING, PH_CHECKING, PH_DONE };

/* --chunk-dict: the dictionary's bootstrap and where its blobs come from */
struct dict_blob {
    char digest[72];
    uint64_t size;
};
struct chunk_dict {
    int on;
    char path[PATH_CAP + 200]; /* the dictionary bootstrap file */
    char key[17];              /* 16 hex of its sha256: part of the layer cache key */
    struct rafs_chunk_dict d;
    proto_registry *reg; /* bootstrap:registry:REF: REF's registry; NULL for a local file */
    proto_image_ref ref;
    struct dict_blob *blobs; /* REF's blob layers */
    size_t nblobs;
};

struct conv {
    const client_convert_opts *o;
    client_convert_result *res;
    proto_image_ref sref, tref;
    proto_registry *src, *dst;
    enum rafs_compressor comp;
    uint32_t chunk_size;
    char cache_dir[PATH_CAP], tmp_dir[PATH_CAP];
    unsigned builder_threads;
    unsigned nlayers;   /* layers of the manifest being converted (progress lines) */
    pthread_mutex_t mu; /* res counters and progress lines, shared by the layer workers */
    struct chunk_dict dict;
    struct layer *ls; /* the layers of the manifest being converted (status line) */
    size_t nls;
};

static void count(struct conv *c, unsigned *v, unsigned n)
{
    pthread_mutex_lock(&c->mu);
    *v += n;
    pthread_mutex_unlock(&c->mu);
}

static void count64(struct conv *c, uint64_t *v, uint64_t n)
{
    pthread_mutex_lock(&c->mu);
    *v += n;
    pthread_mutex_unlock(&c->mu);
}

double client_conv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void client_conv_vsay(void (*progress)(void *ctx, const char *line), void *ctx, pthread_mutex_t *mu,
                      const char *fmt, va_list ap)
{
    if (!progress) return;
    char line[1024];
    vsnprintf(line, sizeof(line), fmt, ap);
    if (mu) pthread_mutex_lock(mu);
    progress(ctx, line);
    if (mu) pthread_mutex_unlock(mu);
}

static void say(struct conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct conv *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    client_conv_vsay(c->o->progress, c->o->progress_ctx, &c->mu, fmt, ap);
    va_end(ap);
}

static void fmt_mb(uint64_t n, char *out, size_t cap)
{
    if (n >= (1u << 20))
        snprintf(out, cap, "%.1f MiB", (double)n / 1048576.0);
    else
        snprintf(out, cap, "%.1f KiB", (double)n / 1024.0);
}

/* A layer's work file in the tmp dir: <source hex>.layer (the download), .blob (its blob). */
static void work_path(const struct conv *c, const struct layer *l, const char *suffix, char *out,
                      size_t cap)
{
    snprintf(out, cap, "%s/%s%s", c->tmp_dir, l->src->digest + 7, suffix);
}

/* Size of a work file being written (the download; the blob being built, which the builder
 * writes as <name>.tmp.XXXXXX until it renames it): how far it got. */
static uint64_t work_file_size(const struct conv *c, const struct layer *l, const char *suffix)
{
    char path[PATH_CAP + 100];
    struct stat st;
    work_path(c, l, suffix, path, sizeof(path));
    if (stat(path, &st) == 0) return (uint64_t)st.st_size;
    size_t len = strlen(path);
    if (len + sizeof(".tmp.*") > sizeof(path)) return 0;
    memcpy(path + len, ".tmp.*", sizeof(".tmp.*"));
    glob_t g;
    uint64_t n = 0;
    if (glob(path, GLOB_NOSORT, NULL, &g) == 0) {
        if (g.gl_pathc && stat(g.gl_pathv[0], &st) == 0) n = (uint64_t)st.st_size;
        globfree(&g);
    }
    return n;
}

/* One status line of the layers in flight, handed to o->status. */
static void status_emit(struct conv *c)
{
    if (!c->o->status || !c->ls) return;
    char line[1024], a[32], b[32];
    size_t done = 0, len = 0;
    for (size_t i = 0; i < c->nls; i++) done += atomic_load(&c->ls[i].phase) == PH_DONE;
    len = (size_t)snprintf(line, sizeof(line), "layers %zu/%zu done", done, c->nls);
    for (size_t i = 0; i < c->nls && len < sizeof(line); i++) {
        const struct layer *l = &c->ls[i];
        char what[96];
        switch (atomic_load(&l->phase)) {
        case PH_DOWNLOADING:
            fmt_mb(work_file_size(c, l, ".layer"), a, sizeof(a));
            fmt_mb(l->src->size, b, sizeof(b));
            snprintf(what, sizeof(what), "downloading %s of %s", a, b);
            break;
        case PH_BUILDING:
            fmt_mb(work_file_size(c, l, ".blob"), a, sizeof(a));
            snprintf(what, sizeof(what), "building, blob %s", a);
            break;
        case PH_PUSHING:
            fmt_mb(l->blob_size, a, sizeof(a));
            snprintf(what, sizeof(what), "pushing %s", a);
            break;
        case PH_CHECKING:
            snprintf(what, sizeof(what), "converted before, checking the target");
            break;
        default:
            continue;
        }
        len += (size_t)snprintf(line + len, sizeof(line) - len, "; %zu: %s", i + 1, what);
    }
    pthread_mutex_lock(&c->mu);
    c->o->status(c->o->progress_ctx, line);
    pthread_mutex_unlock(&c->mu);
}

static void set_phase(struct conv *c, struct layer *l, enum phase ph)
{
    atomic_store(&l->phase, (int)ph);
    status_emit(c);
}

/* refreshes the status line every 0.5 s while layers convert (byte counts move) */
struct ticker {
    struct conv *c;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

static void *ticker_main(void *arg)
{
    struct ticker *tk = arg;
    pthread_mutex_lock(&tk->mu);
    while (!tk->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 500000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&tk->cv, &tk->mu, &ts);
        if (tk->stop) break;
        pthread_mutex_unlock(&tk->mu);
        status_emit(tk->c);
        pthread_mutex_lock(&tk->mu);
    }
    pthread_mutex_unlock(&tk->mu);
    return NULL;
}

static void short_digest(const char *d, char *out)
{
    snprintf(out, 20, "%.19s", d); /* "sha256:" + 12 hex */
}

/* sha256 of a whole file, streamed. */
int client_conv_file_sha256(const char *path, char out[72], uint64_t *size, cf_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cf_err_set(err, -errno, "%s: %s", path, strerror(errno));
    cf_digest_ctx h;
    if (cf_digest_init(&h, CF_DIGEST_SHA256) < 0) {
        close(fd);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    static __thread uint8_t buf[1 << 16];
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            cf_digest_abort(&h);
            close(fd);
            return cf_err_set(err, -e, "reading %s: %s", path, strerror(e));
        }
        if (n == 0) break;
        cf_digest_update(&h, buf, (size_t)n);
        total += (uint64_t)n;
    }
    close(fd);
    uint8_t md[CF_DIGEST_LEN];
    char hex[2 * CF_DIGEST_LEN + 1];
    cf_digest_final(&h, md);
    cf_hex_encode(md, sizeof(md), hex);
    snprintf(out, 72, "sha256:%s", hex);
    if (size) *size = total;
    return 0;
}

/* ---- small blobs into memory (config) ---- */

int client_conv_mem_cap_write(void *ctx, const void *data, size_t len)
{
    struct mem_cap *m = ctx;
    if (m->b.len + len > m->max) return -EFBIG;
    return cf_buf_append(&m->b, data, len) < 0 ? -ENOMEM : 0;
}

/* ---- the work dir cache: <cache>/<key>.json {blob, size, registry, repo} + <key>.boot ---- */
static int cache_load(struct conv *c, struct layer *l, char *from_reg, char *from_repo)
{
    char path[PATH_CAP + 200];
    snprintf(path, sizeof(path), "%s/%s.json", c->cache_dir, l->key);
    json_t *j = json_load_file(path, 0, NULL);
    if (!j) return 0;
    const char *d = json_string_value(json_object_get(j, "blob"));
    const char *reg = json_string_value(json_object_get(j, "registry"));
    const char *repo = json_string_value(json_object_get(j, "repository"));
    json_int_t size = json_integer_value(json_object_get(j, "size"));
    int ok = d && reg && repo && proto_registry_check_digest(d) == 0 && size > 0 &&
             strlen(reg) < 256 && strlen(repo) < 256 && access(l->boot_path, R_OK) == 0;
    if (ok) {
        snprintf(l->blob_digest, sizeof(l->blob_digest), "%s", d);
        l->blob_size = (uint64_t)size;
        strcpy(from_reg, reg);
        strcpy(from_repo, repo);
    }
    json_decref(j);
    return ok;
}

static int cache_store(struct conv *c, const struct layer *l, cf_err *err)
{
    json_t *j = json_pack("{s:s, s:I, s:s, s:s, s:s}", "blob", l->blob_digest, "size",
                          (json_int_t)l->blob_size, "registry", c->tref.registry, "repository",
                          c->tref.repo, "source", l->src->digest);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return cf_err_set(err, -ENOMEM, "out of memory");
    char path[PATH_CAP + 200];
    snprintf(path, sizeof(path), "%s/%s.json", c->cache_dir, l->key);
    int rc = cf_write_file_atomic(path, s, strlen(s), 0644, err);
    free(s);
    return rc;
}

/* ---- one layer ---- */
static int layer_media_ok(const char *mt)
{
    static const char *ok[] = {"application/vnd.oci.image.layer.v1.tar",
                               "application/vnd.oci.image.layer.v1.tar+gzip",
                               "application/vnd.oci.image.layer.v1.tar+zstd",
                               "application/vnd.docker.image.rootfs.diff.tar.gzip",
                               "application/vnd.docker.image.rootfs.diff.tar",
                               NULL};
    for (int i = 0; ok[i]; i++)
        if (strcmp(mt, ok[i]) == 0) return 1;
    return 0;
}

static int push_blob_file(struct conv *c, const char *path, const char *digest, uint64_t size,
                          int *pushed, cf_err *err)
{
    *pushed = 0;
    int rc = proto_registry_blob_exists(c->dst, c->tref.repo, digest, NULL, err);
    if (rc < 0) return rc;
    if (rc == 1) {
        count(c, &c->res->blobs_present, 1);
        return 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cf_err_set(err, -errno, "%s: %s", path, strerror(errno));
    rc = proto_registry_blob_push_fd(c->dst, c->tref.repo, fd, 0, size, digest, err);
    close(fd);
    if (rc < 0) return rc;
    *pushed = 1;
    count(c, &c->res->blobs_pushed, 1);
    count64(c, &c->res->pushed_bytes, size);
    return 0;
}

static int build_layer(struct conv *c, struct layer *l, unsigned idx, cf_err *err)
{
    char src_path[PATH_CAP + 100], blob_path[PATH_CAP + 100], sd[20], a[32], b[32];
    work_path(c, l, ".layer", src_path, sizeof(src_path));
    work_path(c, l, ".blob", blob_path, sizeof(blob_path));
    short_digest(l->src->digest, sd);
    double t0 = client_conv_now();
    int fd = open(src_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    set_phase(c, l, PH_DOWNLOADING);
    if (fd < 0) return cf_err_set(err, -errno, "%s: %s", src_path, strerror(errno));
    int rc = proto_registry_blob_get_fd(c->src, c->sref.repo, l->src->digest, 0, 0,
                                        PROTO_REGISTRY_VERIFY, fd, 0, NULL, err);
    close(fd);
    if (rc < 0) {
        unlink(src_path);
        return cf_err_wrap(err, rc, "layer %u (%s): download", idx, sd);
    }
    double t1 = client_conv_now();
    set_phase(c, l, PH_BUILDING);
    struct rafs_create_opts co = {.source = src_path,
                                  .bootstrap = l->boot_path,
                                  .blob = blob_path,
                                  .blob_meta = l->meta_path,
                                  .whiteout = RAFS_WHITEOUT_NONE};
    co.blob_opts.chunk_size = c->chunk_size;
    co.blob_opts.compressor = c->comp;
    co.blob_opts.digester = RAFS_DIGEST_BLAKE3;
    co.blob_opts.zstd_level = 3;
    co.blob_opts.blob_toc = 1;
    co.blob_opts.inline_meta = 1;
    co.blob_opts.threads = c->builder_threads;
    co.chunk_dict = c->dict.on ? &c->dict.d : NULL;
    struct rafs_create_result cr;
    memset(&cr, 0, sizeof(cr));
    rc = rafs_create(&co, &cr, err);
    unlink(src_path);
    if (rc == 0 && cr.blob.dedup_chunks) {
        count(c, &c->res->dedup_chunks, cr.blob.dedup_chunks);
        count64(c, &c->res->dedup_bytes, cr.blob.dedup_bytes);
    }
    if (rc == 0 && cr.dict_chunks) {
        count(c, &c->res->dict_chunks, cr.dict_chunks);
        count64(c, &c->res->dict_bytes, cr.dict_bytes);
    }
    if (rc < 0) {
        unlink(blob_path);
        return cf_err_wrap(err, rc, "layer %u (%s): building the Nydus blob", idx, sd);
    }
    { /* the builder hashed the bytes as it wrote them */
        char fh[2 * sizeof(cr.blob.file_sha256) + 1];
        cf_hex_encode(cr.blob.file_sha256, sizeof(cr.blob.file_sha256), fh);
        snprintf(l->blob_digest, sizeof(l->blob_digest), "sha256:%s", fh);
        l->blob_size = cr.blob.blob_size;
    }
    double t2 = client_conv_now();
    set_phase(c, l, PH_PUSHING);
    int pushed = 0;
    if (rc == 0) rc = push_blob_file(c, blob_path, l->blob_digest, l->blob_size, &pushed, err);
    unlink(blob_path);
    if (rc < 0) return cf_err_wrap(err, rc, "layer %u (%s): pushing its blob", idx, sd);
    count(c, &c->res->built, 1);
    fmt_mb(l->src->size, a, sizeof(a));
    fmt_mb(l->blob_size, b, sizeof(b));
    char bd[20];
    short_digest(l->blob_digest, bd);
    double t3 = client_conv_now();
    /* remembered before it is reported: a line printed means a re-run will not build it again */
    if ((rc = cache_store(c, l, err)) < 0) return rc;
    say(c, "layer %u/%u %s %s -> blob %s %s: built in %.1f s (download %.1f s), %s in %.1f s", idx,
        c->nlayers, sd, a, bd, b, t2 - t1, t1 - t0, pushed ? "pushed" : "already in the target",
        t3 - t2);
    return 0;
}

static int do_layer(struct conv *c, struct layer *l, unsigned idx, cf_err *err)
{
    char sd[20];
    short_digest(l->src->digest, sd);
    if (!layer_media_ok(l->src->media_type))
        return cf_err_set(err, -ENOTSUP,
                          "layer %u (%s): media type %s cannot be converted (tar, tar+gzip or "
                          "tar+zstd layers only)",
                          idx, sd, l->src->media_type);
    /* a dictionary changes the layer's blob and bootstrap: its digest is part of the key */
    snprintf(l->key, sizeof(l->key), "%s-%s-%x%s%s", l->src->digest + 7,
             rafs_compressor_name(c->comp), c->chunk_size, c->dict.on ? "-d" : "",
             c->dict.on ? c->dict.key : "");
    snprintf(l->boot_path, sizeof(l->boot_path), "%s/%s.boot", c->cache_dir, l->key);
    snprintf(l->meta_path, sizeof(l->meta_path), "%s/%s.meta", c->cache_dir, l->key);
    char from_reg[256], from_repo[256];
    if (!cache_load(c, l, from_reg, from_repo)) return build_layer(c, l, idx, err);
    set_phase(c, l, PH_CHECKING);
    /* Converted before: the target may have the blob, or the repository it went to. */
    char bd[20];
    short_digest(l->blob_digest, bd);
    int rc = proto_registry_blob_exists(c->dst, c->tref.repo, l->blob_digest, NULL, err);
    if (rc < 0) return cf_err_wrap(err, rc, "layer %u (%s)", idx, sd);
    const char *how = "already in the target";
    if (rc == 0 && strcmp(from_reg, c->tref.registry) == 0 && strcmp(from_repo, c->tref.repo)) {
        rc = proto_registry_blob_mount(c->dst, c->tref.repo, l->blob_digest, from_repo, err);
        if (rc < 0) return cf_err_wrap(err, rc, "layer %u (%s): mounting its blob", idx, sd);
        if (rc == 1) {
            how = "mounted from the repository it was pushed to";
            count(c, &c->res->blobs_mounted, 1);
        }
    } else if (rc == 1) {
        count(c, &c->res->blobs_present, 1);
    }
    if (rc == 0) return build_layer(c, l, idx, err); /* lost everywhere: build it again */
    count(c, &c->res->cached, 1);
    if ((rc = cache_store(c, l, err)) < 0) return rc;
    say(c, "layer %u/%u %s -> blob %s: converted before, %s", idx, c->nlayers, sd, bd, how);
    return 0;
}

/* ---- the bootstrap layer: gzip tar of image/, image/image.boot and, per blob with data,
 * image/<blob hex>.blob.meta (as nydusify packs fs version 6), deterministic ---- */
static int tar_file(struct archive *a, struct archive_entry *e, const char *name, const char *path,
                    const char *out, cf_err *err)
{
    struct stat st;
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0 || fstat(in, &st) < 0) {
        int e2 = errno;
        if (in >= 0) close(in);
        return cf_err_set(err, -e2, "%s: %s", path, strerror(e2));
    }
    archive_entry_clear(e);
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0444);
    archive_entry_set_size(e, st.st_size);
    archive_entry_set_mtime(e, 0, 0);
    int rc = 0;
    if (archive_write_header(a, e) != ARCHIVE_OK)
        rc = cf_err_set(err, -EIO, "writing %s: %s", out, archive_error_string(a));
    static __thread char buf[1 << 16];
    while (rc == 0) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = cf_err_set(err, -errno, "reading %s: %s", path, strerror(errno));
        if (n <= 0) break;
        if (archive_write_data(a, buf, (size_t)n) != n)
            rc = cf_err_set(err, -EIO, "writing %s: %s", out, archive_error_string(a));
    }
    close(in);
    return rc;
}

static int boot_tgz(const char *boot, const struct layer *ls, size_t n, const char *out,
                    cf_err *err)
{
    struct archive *a = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    int rc = 0;
    if (!a || !e) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    /* no gzip timestamp: the same bootstrap always gives the same layer digest */
    if (archive_write_set_format_gnutar(a) != ARCHIVE_OK ||
        archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
        archive_write_set_filter_option(a, "gzip", "timestamp", NULL) < ARCHIVE_WARN ||
        archive_write_open_filename(a, out) != ARCHIVE_OK) {
        rc = cf_err_set(err, -EIO, "writing %s: %s", out, archive_error_string(a));
        goto out;
    }
    archive_entry_set_pathname(e, "image");
    archive_entry_set_filetype(e, AE_IFDIR);
    archive_entry_set_perm(e, 0755);
    archive_entry_set_mtime(e, 0, 0);
    if (archive_write_header(a, e) != ARCHIVE_OK) {
        rc = cf_err_set(err, -EIO, "writing %s: %s", out, archive_error_string(a));
        goto out;
    }
    rc = tar_file(a, e, "image/image.boot", boot, out, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (ls[i].dup_of >= 0 || access(ls[i].meta_path, R_OK) != 0) continue; /* no data */
        int seen = 0; /* two source layers may give the same blob (same tar, other compression) */
        for (size_t j = 0; j < i && !seen; j++)
            seen = !strcmp(ls[j].blob_digest, ls[i].blob_digest);
        if (seen) continue;
        char name[96];
        snprintf(name, sizeof(name), "image/%s.blob.meta", ls[i].blob_digest + 7);
        rc = tar_file(a, e, name, ls[i].meta_path, out, err);
    }
    if (rc == 0 && archive_write_close(a) != ARCHIVE_OK)
        rc = cf_err_set(err, -EIO, "writing %s: %s", out, archive_error_string(a));
out:
    if (e) archive_entry_free(e);
    if (a) archive_write_free(a);
    return rc;
}

/* sha256 of the decompressed bytes of a gzip file (the layer's diff_id). */
int client_conv_gunzip_sha256(const char *path, char out[72], cf_err *err)
{
    struct archive *a = archive_read_new();
    struct archive_entry *e;
    if (!a) return cf_err_set(err, -ENOMEM, "out of memory");
    int rc = 0;
    cf_digest_ctx h;
    if (cf_digest_init(&h, CF_DIGEST_SHA256) < 0) {
        archive_read_free(a);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    archive_read_support_filter_gzip(a);
    archive_read_support_format_raw(a);
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK ||
        archive_read_next_header(a, &e) != ARCHIVE_OK) {
        rc = cf_err_set(err, -EIO, "reading %s: %s", path, archive_error_string(a));
    } else {
        static __thread char buf[1 << 16];
        for (;;) {
            la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
            if (n < 0) {
                rc = cf_err_set(err, -EIO, "reading %s: %s", path, archive_error_string(a));
                break;
            }
            if (n == 0) break;
            cf_digest_update(&h, buf, (size_t)n);
        }
    }
    archive_read_free(a);
    if (rc < 0) {
        cf_digest_abort(&h);
        return rc;
    }
    uint8_t md[CF_DIGEST_LEN];
    char hex[2 * CF_DIGEST_LEN + 1];
    cf_digest_final(&h, md);
    cf_hex_encode(md, sizeof(md), hex);
    snprintf(out, 72, "sha256:%s", hex);
    return 0;
}

static json_t *desc_json(const char *mt, const char *digest, uint64_t size, json_t *ann)
{
    json_t *d =
        json_pack("{s:s, s:s, s:I}", "mediaType", mt, "digest", digest, "size", (json_int_t)size);
    if (d && ann)
        json_object_set_new(d, "annotations", ann);
    else
        json_decref(ann);
    return d;
}

/* ---- the layers, on `workers` threads (each layer: download, build, hash, push) ---- */
struct pool {
    struct conv *c;
    struct layer *ls;
    size_t n, next;
    pthread_mutex_t mu;
    int rc;
    cf_err err;
};

static void *layer_worker(void *arg)
{
    struct pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        size_t i = p->next;
        /* after a failure no new layer starts: the run fails anyway */
        int stop = p->rc < 0 || i >= p->n;
        if (!stop) p->next++;
        pthread_mutex_unlock(&p->mu);
        if (stop) return NULL;
        if (p->ls[i].dup_of >= 0) continue; /* same source layer as an earlier one */
        cf_err e = {0};
        int rc = do_layer(p->c, &p->ls[i], (unsigned)i + 1, &e);
        if (rc == 0) set_phase(p->c, &p->ls[i], PH_DONE);
        if (rc < 0) {
            pthread_mutex_lock(&p->mu);
            if (p->rc == 0) {
                p->rc = rc;
                p->err = e;
            }
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static int layers_run(struct conv *c, struct layer *ls, const proto_oci_desc *src, size_t n,
                      cf_err *err)
{
    for (size_t i = 0; i < n; i++) {
        ls[i].src = &src[i];
        ls[i].dup_of = -1;
        for (size_t j = 0; j < i && ls[i].dup_of < 0; j++)
            if (strcmp(src[j].digest, src[i].digest) == 0) ls[i].dup_of = (long)j;
        atomic_init(&ls[i].phase, ls[i].dup_of >= 0 ? PH_DONE : PH_WAITING);
    }
    c->ls = ls;
    c->nls = n;
    struct ticker tk = {.c = c};
    pthread_t tick_th;
    int ticking = 0;
    if (c->o->status) {
        pthread_mutex_init(&tk.mu, NULL);
        pthread_cond_init(&tk.cv, NULL);
        ticking = pthread_create(&tick_th, NULL, ticker_main, &tk) == 0;
        if (!ticking) {
            pthread_cond_destroy(&tk.cv);
            pthread_mutex_destroy(&tk.mu);
        }
    }
    unsigned workers = c->o->workers ? c->o->workers : 2;
    if (workers > n) workers = (unsigned)n;
    if (workers > 16) workers = 16;
    struct pool p = {.c = c, .ls = ls, .n = n};
    pthread_mutex_init(&p.mu, NULL);
    pthread_t th[16];
    unsigned started = 0;
    for (; started + 1 < workers; started++)
        if (pthread_create(&th[started], NULL, layer_worker, &p) != 0) break;
    layer_worker(&p); /* the calling thread is a worker too */
    for (unsigned i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&p.mu);
    if (ticking) {
        pthread_mutex_lock(&tk.mu);
        tk.stop = 1;
        pthread_cond_signal(&tk.cv);
        pthread_mutex_unlock(&tk.mu);
        pthread_join(tick_th, NULL);
        pthread_cond_destroy(&tk.cv);
        pthread_mutex_destroy(&tk.mu);
    }
    c->ls = NULL;
    if (c->o->status) {
        pthread_mutex_lock(&c->mu);
        c->o->status(c->o->progress_ctx, NULL);
        pthread_mutex_unlock(&c->mu);
    }
    if (p.rc < 0) {
        if (err) *err = p.err;
        return p.rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (ls[i].dup_of < 0) continue;
        const struct layer *d = &ls[ls[i].dup_of];
        memcpy(ls[i].blob_digest, d->blob_digest, sizeof(ls[i].blob_digest));
        ls[i].blob_size = d->blob_size;
        memcpy(ls[i].boot_path, d->boot_path, sizeof(ls[i].boot_path));
    }
    return 0;
}

struct mem_src {
    const char *p;
    size_t left;
};

static int mem_read(void *ctx, void *buf, size_t cap, size_t *got)
{
    struct mem_src *m = ctx;
    size_t n = m->left < cap ? m->left : cap;
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    *got = n;
    return 0;
}

/* "sha256:<hex>" of len bytes (cf_sha256 only fails on allocation: then "" ). */
static void sha256_str(const void *data, size_t len, char out[72])
{
    uint8_t md[CF_DIGEST_LEN];
    char hex[2 * CF_DIGEST_LEN + 1];
    out[0] = '\0';
    if (cf_sha256(data, len, md) < 0) return;
    cf_hex_encode(md, sizeof(md), hex);
    snprintf(out, 72, "sha256:%s", hex);
}

/* Pushes an in-memory blob (config) unless present. */
static int push_mem(struct conv *c, const char *data, size_t len, char digest[72], cf_err *err)
{
    sha256_str(data, len, digest);
    if (!digest[0]) return cf_err_set(err, -ENOMEM, "out of memory");
    int rc = proto_registry_blob_exists(c->dst, c->tref.repo, digest, NULL, err);
    if (rc != 0) {
        if (rc == 1) count(c, &c->res->blobs_present, 1);
        return rc < 0 ? rc : 0;
    }
    /* small: a one-chunk stream upload from memory */
    struct mem_src st = {data, len};
    char got[72];
    rc = proto_registry_blob_push_stream(c->dst, c->tref.repo, mem_read, &st, 0, got, NULL, err);
    if (rc == 0) {
        count(c, &c->res->blobs_pushed, 1);
        count64(c, &c->res->pushed_bytes, len);
    }
    return rc;
}

int client_conv_resolve(proto_registry *r, const proto_image_ref *ref, const char *platform,
                        unsigned select_flags, proto_oci_manifest *m, char digest[72], size_t *size,
                        cf_err *err)
{
    proto_manifest top = {0}, mf = {0};
    proto_oci_index ix = {0};
    proto_oci_platform want;
    enum proto_oci_kind kind;
    int rc = proto_registry_manifest_get(r, ref->repo, proto_image_ref_reference(ref), &top, err);
    if (rc < 0) return rc;
    rc = proto_oci_kind_of(top.body, top.len, top.media_type, &kind, err);
    const proto_manifest *mp = &top;
    if (rc == 0 && kind == PROTO_OCI_KIND_INDEX) {
        const proto_oci_desc *d;
        if (platform)
            rc = proto_oci_platform_parse(platform, &want, err);
        else
            proto_oci_platform_host(&want);
        if (rc == 0) rc = proto_oci_index_parse(top.body, top.len, top.media_type, &ix, err);
        if (rc == 0) rc = proto_oci_index_select(&ix, &want, select_flags, &d, err);
        if (rc == 0) rc = proto_registry_manifest_get(r, ref->repo, d->digest, &mf, err);
        mp = &mf;
    }
    if (rc == 0) rc = proto_oci_manifest_parse(mp->body, mp->len, mp->media_type, m, err);
    if (rc == 0) snprintf(digest, 72, "%s", mp->digest);
    if (rc == 0 && size) *size = mp->len;
    proto_oci_index_free(&ix);
    proto_manifest_free(&top);
    proto_manifest_free(&mf);
    return rc;
}

/* One blob of `from` (registry of fref) copied to the target as it is: nothing when the
 * target has it, a cross-repository mount on the same registry, else through a file in the
 * work dir. (A merged index lists the original manifests, so the target must hold them and
 * their blobs; a chunk dictionary's blobs are layers of the image.) */
static int copy_blob_from(struct conv *c, proto_registry *from, const proto_image_ref *fref,
                          const char *digest, uint64_t size, cf_err *err)
{
    int rc = proto_registry_blob_exists(c->dst, c->tref.repo, digest, NULL, err);
    if (rc != 0) {
        if (rc == 1) count(c, &c->res->blobs_present, 1);
        return rc < 0 ? rc : 0;
    }
    if (strcmp(fref->registry, c->tref.registry) == 0) {
        rc = proto_registry_blob_mount(c->dst, c->tref.repo, digest, fref->repo, err);
        if (rc < 0) return rc;
        if (rc == 1) {
            count(c, &c->res->blobs_mounted, 1);
            return 0;
        }
    }
    char path[PATH_CAP + 100];
    snprintf(path, sizeof(path), "%s/%s.copy", c->tmp_dir, digest + 7);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return cf_err_set(err, -errno, "%s: %s", path, strerror(errno));
    rc = proto_registry_blob_get_fd(from, fref->repo, digest, 0, 0, PROTO_REGISTRY_VERIFY, fd, 0,
                                    NULL, err);
    if (rc == 0) rc = proto_registry_blob_push_fd(c->dst, c->tref.repo, fd, 0, size, digest, err);
    close(fd);
    unlink(path);
    if (rc == 0) {
        count(c, &c->res->blobs_pushed, 1);
        count64(c, &c->res->pushed_bytes, size);
    }
    return rc;
}

/* --chunk-dict: the dictionary bootstrap in the work dir (a registry image's bootstrap layer
 * fetched once per bootstrap digest), loaded. */
static int dict_prepare(struct conv *c, cf_err *err)
{
    struct chunk_dict *cd = &c->dict;
    const char *a = c->o->chunk_dict;
    int rc = 0;
    if (strncmp(a, "bootstrap:", 10) != 0 || !a[10])
        return cf_err_set(err, -EINVAL,
                          "--chunk-dict %s: want bootstrap:registry:REF, bootstrap:local:PATH or "
                          "bootstrap:PATH",
                          a);
    a += 10;
    if (strncmp(a, "registry:", 9) == 0) {
        a += 9;
        proto_oci_manifest m = {0};
        proto_nydus_view v = {0};
        char dig[72], tgz[PATH_CAP + 100], tmp[PATH_CAP + 300];
        if ((rc = proto_image_ref_parse(a, &cd->ref, err)) < 0)
            return cf_err_wrap(err, rc, "--chunk-dict");
        proto_registry_opts ro = {.docker_config = c->o->docker_config,
                                  .insecure_tls = c->o->source_insecure};
        if ((rc = proto_registry_new(cd->ref.registry, &ro, &cd->reg, err)) < 0) return rc;
        rc = client_conv_resolve(cd->reg, &cd->ref, c->o->platform, PROTO_OCI_SELECT_NYDUS, &m, dig,
                                 NULL, err);
        if (rc == 0) rc = proto_nydus_view_get(&m, &v, err);
        if (rc < 0) cf_err_wrap(err, rc, "--chunk-dict %s (a Nydus image)", a);
        if (rc == 0 && !(cd->blobs = calloc(v.n_blobs ? v.n_blobs : 1, sizeof(*cd->blobs))))
            rc = cf_err_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; rc == 0 && i < v.n_blobs; i++) {
            snprintf(cd->blobs[i].digest, sizeof(cd->blobs[i].digest), "%s", v.blobs[i]->digest);
            cd->blobs[i].size = v.blobs[i]->size;
            cd->nblobs++;
        }
        if (rc == 0) {
            snprintf(cd->path, sizeof(cd->path), "%s/dict-%s.boot", c->cache_dir,
                     v.bootstrap->digest + 7);
            if (access(cd->path, R_OK) != 0) {
                snprintf(tgz, sizeof(tgz), "%s/dict.tar.gz", c->tmp_dir);
                snprintf(tmp, sizeof(tmp), "%s.tmp", cd->path);
                int fd = open(tgz, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (fd < 0) rc = cf_err_set(err, -errno, "%s: %s", tgz, strerror(errno));
                if (rc == 0) {
                    rc = proto_registry_blob_get_fd(cd->reg, cd->ref.repo, v.bootstrap->digest, 0,
                                                    0, PROTO_REGISTRY_VERIFY, fd, 0, NULL, err);
                    close(fd);
                }
                if (rc == 0) rc = client_conv_extract_boot(tgz, tmp, err);
                if (rc == 0 && rename(tmp, cd->path) != 0)
                    rc = cf_err_set(err, -errno, "%s: %s", cd->path, strerror(errno));
                unlink(tgz);
                if (rc < 0) {
                    unlink(tmp);
                    cf_err_wrap(err, rc, "--chunk-dict %s: its bootstrap", a);
                }
            }
        }
        proto_nydus_view_free(&v);
        proto_oci_manifest_free(&m);
        if (rc < 0) return rc;
    } else {
        if (strncmp(a, "local:", 6) == 0) a += 6;
        if (strlen(a) >= sizeof(cd->path))
            return cf_err_set(err, -ENAMETOOLONG, "--chunk-dict: path too long");
        snprintf(cd->path, sizeof(cd->path), "%s", a);
    }
    char d[72];
    if ((rc = rafs_chunk_dict_load(cd->path, &cd->d, err)) < 0) return rc;
    if ((rc = rafs_chunk_dict_check(&cd->d, c->chunk_size, RAFS_DIGEST_BLAKE3, "--chunk-dict",
                                    err)) < 0 ||
        (rc = client_conv_file_sha256(cd->path, d, NULL, err)) < 0)
        return rc;
    memcpy(cd->key, d + 7, 16);
    cd->key[16] = 0;
    cd->on = 1;
    say(c, "chunk dictionary %s: %u chunks in %u blobs", c->o->chunk_dict, cd->d.chunks.n,
        cd->d.nblobs);
    return 0;
}

static void dict_free(struct chunk_dict *cd)
{
    rafs_chunk_dict_free(&cd->d);
    proto_registry_free(cd->reg);
    free(cd->blobs);
}

/* A dictionary blob the image uses, into the target repository; fills b->size. */
static int dict_blob_ensure(struct conv *c, struct dict_blob *b, cf_err *err)
{
    struct chunk_dict *cd = &c->dict;
    const struct dict_blob *known = NULL;
    for (size_t i = 0; i < cd->nblobs && !known; i++)
        if (!strcmp(cd->blobs[i].digest, b->digest)) known = &cd->blobs[i];
    if (!cd->reg) { /* a local bootstrap: its blobs must be in the target already */
        int rc = proto_registry_blob_exists(c->dst, c->tref.repo, b->digest, &b->size, err);
        if (rc < 0) return rc;
        if (rc == 0)
            return cf_err_set(err, -ENOENT,
                              "chunk dictionary blob %s is not in %s/%s: push the dictionary's "
                              "image there first (or give bootstrap:registry:REF)",
                              b->digest, c->tref.registry, c->tref.repo);
        count(c, &c->res->blobs_present, 1);
        return 0;
    }
    if (!known)
        return cf_err_set(err, -EBADMSG,
                          "chunk dictionary %s: its bootstrap names blob %s, which its manifest "
                          "does not list",
                          c->o->chunk_dict, b->digest);
    b->size = known->size;
    int rc = copy_blob_from(c, cd->reg, &cd->ref, b->digest, b->size, err);
    return rc < 0 ? cf_err_wrap(err, rc, "chunk dictionary blob %.19s", b->digest) : 0;
}

/* What one converted manifest became (an index entry of the target). */
struct conv_out {
    char digest[72];
    size_t size;
    char media_type[128];
};

/* Converts the image manifest of src_ref (a tag, or a digest inside an index) and pushes the
 * Nydus manifest: by the target's tag when by_tag, else by its own digest (an index entry,
 * published by the index pushed after it). marked: for an index that also holds the
 * original manifests (config media type of Nydus, artifactType), as nydusify --merge-platform. */
static int convert_one(struct conv *c, const char *src_ref, int by_tag, int marked,
                       struct conv_out *res_out, cf_err *err)
{
    const client_convert_opts *o = c->o;
    client_convert_result *res = c->res;
    proto_oci_manifest m = {0};
    struct layer *ls = NULL;
    struct mem_cap cfgbuf = {.max = CONFIG_MAX};
    json_t *cfg = NULL, *man = NULL;
    char *cfg_s = NULL, *man_s = NULL;
    char **ids = NULL;
    size_t nids = 0, ndblobs = 0;
    struct dict_blob *dblobs = NULL;
    const char **srcs = NULL, **digs = NULL;
    int rc;

    char src_digest[72];
    proto_image_ref sref = c->sref;
    if (src_ref) snprintf(sref.digest, sizeof(sref.digest), "%s", src_ref);
    size_t src_size = 0;
    rc = client_conv_resolve(c->src, &sref, o->platform, 0, &m, src_digest, &src_size, err);
    if (rc < 0) goto out;
    {
        proto_nydus_view v = {0};
        cf_err ignored = {0};
        if (proto_nydus_view_get(&m, &v, &ignored) == 0 || ignored.code == -ENOTSUP) {
            proto_nydus_view_free(&v);
            rc = cf_err_set(err, -EINVAL, "%s is already a Nydus image: nothing to convert",
                            o->source);
            goto out;
        }
    }
    if (m.n_layers == 0) {
        rc = cf_err_set(err, -EINVAL, "%s has no layers", o->source);
        goto out;
    }
    rc = proto_registry_blob_get(c->src, c->sref.repo, m.config.digest, 0, 0, PROTO_REGISTRY_VERIFY,
                                 client_conv_mem_cap_write, &cfgbuf, NULL, err);
    if (rc < 0) {
        cf_err_wrap(err, rc, "source config");
        goto out;
    }
    cfg = json_loadb((const char *)cfgbuf.b.data, cfgbuf.b.len, 0, NULL);
    if (!json_is_object(cfg) || !json_is_object(json_object_get(cfg, "rootfs"))) {
        rc = cf_err_set(err, -EBADMSG, "source config %s is not an image config", m.config.digest);
        goto out;
    }
    res->layers += (unsigned)m.n_layers;
    c->nlayers = (unsigned)m.n_layers;
    ls = calloc(m.n_layers, sizeof(*ls));
    srcs = calloc(m.n_layers, sizeof(*srcs));
    digs = calloc(m.n_layers, sizeof(*digs));
    if (!ls || !srcs || !digs) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    char sz[32];
    uint64_t src_bytes = 0;
    for (size_t i = 0; i < m.n_layers; i++) src_bytes += m.layers[i].size;
    res->source_bytes += src_bytes;
    fmt_mb(src_bytes, sz, sizeof(sz));
    say(c, "converting %s (%s, %zu layers, %s) to %s", o->source, src_digest, m.n_layers, sz,
        o->target);
    rc = layers_run(c, ls, m.layers, m.n_layers, err);
    if (rc < 0) goto out;
    for (size_t i = 0; i < m.n_layers; i++) {
        srcs[i] = ls[i].boot_path;
        digs[i] = ls[i].blob_digest;
        res->target_bytes += ls[i].blob_size;
    }

    /* merge -> bootstrap layer */
    char merged[PATH_CAP + 64], tgz[PATH_CAP + 64], boot_digest[72], boot_diff[72];
    snprintf(merged, sizeof(merged), "%s/image.boot", c->tmp_dir);
    snprintf(tgz, sizeof(tgz), "%s/bootstrap.tar.gz", c->tmp_dir);
    struct rafs_merge_opts mo = {.sources = srcs,
                                 .nsources = m.n_layers,
                                 .blob_digests = digs,
                                 .whiteout = RAFS_WHITEOUT_OCI,
                                 .chunk_dict = c->dict.on ? c->dict.path : NULL};
    static const char *const root_only[] = {"/", NULL};
    mo.prefetch = o->prefetch && o->prefetch[0] ? o->prefetch : root_only;
    rc = rafs_merge(&mo, merged, &ids, &nids, NULL, err);
    if (rc < 0) {
        cf_err_wrap(err, rc, "merging the layer bootstraps");
        goto out;
    }
    uint64_t tgz_size;
    int pushed = 0;
    if ((rc = boot_tgz(merged, ls, m.n_layers, tgz, err)) < 0 ||
        (rc = client_conv_file_sha256(tgz, boot_digest, &tgz_size, err)) < 0 ||
        (rc = client_conv_gunzip_sha256(tgz, boot_diff, err)) < 0)
        goto out;
    rc = push_blob_file(c, tgz, boot_digest, tgz_size, &pushed, err);
    if (rc < 0) {
        cf_err_wrap(err, rc, "pushing the bootstrap layer");
        goto out;
    }
    res->target_bytes += tgz_size;
    fmt_mb(tgz_size, sz, sizeof(sz));
    say(c, "bootstrap layer %.19s %s: %s", boot_digest, sz,
        pushed ? "pushed" : "already in the target");

    /* dictionary blobs the merged bootstrap references: layers too, after the image's own
     * (as nydusify appends them), present in the target repository */
    if (c->dict.on) {
        dblobs = calloc(nids ? nids : 1, sizeof(*dblobs));
        if (!dblobs) {
            rc = cf_err_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        for (size_t j = 0; j < nids; j++) {
            int own = 0;
            for (size_t i = 0; i < m.n_layers && !own; i++) own = !strcmp(ids[j], digs[i] + 7);
            if (own) continue;
            struct dict_blob *b = &dblobs[ndblobs++];
            snprintf(b->digest, sizeof(b->digest), "sha256:%s", ids[j]);
            if ((rc = dict_blob_ensure(c, b, err)) < 0) goto out;
        }
        if (ndblobs) say(c, "chunk dictionary: %zu of its blobs used", ndblobs);
    }

    /* config: diff_ids = blob digests + the bootstrap tar's; one more history entry */
    json_t *diff = json_array();
    for (size_t i = 0; i < m.n_layers; i++) json_array_append_new(diff, json_string(digs[i]));
    for (size_t i = 0; i < ndblobs; i++) json_array_append_new(diff, json_string(dblobs[i].digest));
    json_array_append_new(diff, json_string(boot_diff));
    json_object_set_new(json_object_get(cfg, "rootfs"), "diff_ids", diff);
    json_t *hist = json_object_get(cfg, "history");
    if (!json_is_array(hist)) {
        hist = json_array();
        json_object_set_new(cfg, "history", hist);
    }
    json_array_append_new(hist, json_pack("{s:s, s:s}", "created_by", "Nydus Converter", "comment",
                                          "Nydus Bootstrap Layer"));
    cfg_s = json_dumps(cfg, JSON_COMPACT);
    char cfg_digest[72];
    if (!cfg_s) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    rc = push_mem(c, cfg_s, strlen(cfg_s), cfg_digest, err);
    if (rc < 0) {
        cf_err_wrap(err, rc, "pushing the config");
        goto out;
    }

    /* manifest, last. Docker types stay Docker unless --oci (nydusify's docker2oci). */
    int docker = m.docker && !o->oci;
    const char *man_mt = docker ? PROTO_DOCKER_MT_MANIFEST : PROTO_OCI_MT_MANIFEST;
    json_t *layers = json_array();
    for (size_t i = 0; i < m.n_layers; i++)
        json_array_append_new(layers,
                              desc_json(PROTO_NYDUS_MT_BLOB, ls[i].blob_digest, ls[i].blob_size,
                                        json_pack("{s:s}", PROTO_NYDUS_ANN_BLOB, "true")));
    for (size_t i = 0; i < ndblobs; i++)
        json_array_append_new(layers,
                              desc_json(PROTO_NYDUS_MT_BLOB, dblobs[i].digest, dblobs[i].size,
                                        json_pack("{s:s}", PROTO_NYDUS_ANN_BLOB, "true")));
    json_array_append_new(layers,
                          desc_json(docker ? PROTO_DOCKER_MT_LAYER_GZIP : PROTO_OCI_MT_LAYER_GZIP,
                                    boot_digest, tgz_size,
                                    json_pack("{s:s, s:s}", PROTO_NYDUS_ANN_BOOTSTRAP, "true",
                                              PROTO_NYDUS_ANN_FS_VER, "6")));
    man = json_pack("{s:i, s:s, s:o, s:o, s:{s:s, s:s, s:s, s:s}}", "schemaVersion", 2, "mediaType",
                    man_mt, "config",
                    desc_json(marked   ? PROTO_NYDUS_MT_CONFIG
                              : docker ? PROTO_DOCKER_MT_CONFIG
                                       : PROTO_OCI_MT_CONFIG,
                              cfg_digest, strlen(cfg_s), NULL),
                    "layers", layers, "annotations", PROTO_NYDUS_ANN_FS_VER, "6", ANN_SRC_DIG,
                    src_digest, ANN_SRC_REF, o->source, ANN_BUILDER,
                    "chunkfly-image " CHUNKFLY_VERSION);
    if (man && marked)
        json_object_set_new(man, "artifactType", json_string(PROTO_NYDUS_ARTIFACT_TYPE));
    /* --with-referrer: the source manifest as subject, without platform (some registries
     * refuse it there), as nydusify; found through the referrers API */
    if (man && o->with_referrer)
        json_object_set_new(man, "subject", desc_json(m.media_type, src_digest, src_size, NULL));
    man_s = man ? json_dumps(man, JSON_COMPACT) : NULL;
    if (!man_s) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    snprintf(res_out->media_type, sizeof(res_out->media_type), "%s", man_mt);
    res_out->size = strlen(man_s);
    sha256_str(man_s, res_out->size, res_out->digest);
    rc = proto_registry_manifest_put(c->dst, c->tref.repo,
                                     by_tag ? proto_image_ref_reference(&c->tref) : res_out->digest,
                                     man_mt, man_s, strlen(man_s), NULL, err);
    if (rc < 0) cf_err_wrap(err, rc, "pushing the manifest");
out:
    free(dblobs);
    rafs_merge_free_ids(ids, nids);
    free(cfg_s);
    free(man_s);
    json_decref(cfg);
    json_decref(man);
    cf_buf_free(&cfgbuf.b);
    free(ls);
    free(srcs);
    free(digs);
    proto_oci_manifest_free(&m);
    return rc;
}

static int is_manifest_mt(const char *mt)
{
    return strcmp(mt, PROTO_OCI_MT_MANIFEST) == 0 || strcmp(mt, PROTO_DOCKER_MT_MANIFEST) == 0;
}

/* The raw entry of index document j (its "manifests" array) with this digest, or NULL. */
static json_t *raw_entry(json_t *j, const char *digest)
{
    json_t *arr = json_object_get(j, "manifests"), *e;
    size_t i;
    json_array_foreach(arr, i, e)
    {
        const char *d = json_string_value(json_object_get(e, "digest"));
        if (d && strcmp(d, digest) == 0) return e;
    }
    return NULL;
}

static int copy_blob(struct conv *c, const char *digest, uint64_t size, cf_err *err)
{
    return copy_blob_from(c, c->src, &c->sref, digest, size, err);
}

/* The original manifest d of the source index into the target (its blobs first), by digest. */
static int copy_original(struct conv *c, const proto_oci_desc *d, cf_err *err)
{
    proto_manifest mf = {0};
    proto_oci_manifest m = {0};
    int rc = proto_registry_manifest_get(c->src, c->sref.repo, d->digest, &mf, err);
    if (rc == 0) rc = proto_oci_manifest_parse(mf.body, mf.len, mf.media_type, &m, err);
    if (rc == 0) rc = copy_blob(c, m.config.digest, m.config.size, err);
    for (size_t i = 0; rc == 0 && i < m.n_layers; i++)
        rc = copy_blob(c, m.layers[i].digest, m.layers[i].size, err);
    if (rc == 0)
        rc = proto_registry_manifest_put(c->dst, c->tref.repo, d->digest, mf.media_type, mf.body,
                                         mf.len, NULL, err);
    if (rc < 0) cf_err_wrap(err, rc, "copying the original manifest %.19s", d->digest);
    proto_oci_manifest_free(&m);
    proto_manifest_free(&mf);
    return rc;
}

/* An index source: every platform (or the one of --platform) converted, each Nydus manifest
 * pushed by digest, then the index by the target's tag, last (runtime-contracts.md §3).
 * merge: the index holds the original manifests too, the Nydus ones marked (artifactType and
 * platform os.features "nydus.remoteimage.v1"), as nydusify --merge-platform. */
static int run_index(struct conv *c, const proto_manifest *top, cf_err *err)
{
    const client_convert_opts *o = c->o;
    proto_oci_index ix = {0};
    json_t *raw = NULL, *out = NULL, *arr = NULL;
    char *body = NULL;
    const proto_oci_desc *only = NULL;
    int rc = proto_oci_index_parse(top->body, top->len, top->media_type, &ix, err);
    if (rc < 0) return cf_err_wrap(err, rc, "source %s", o->source);
    if (o->platform) {
        proto_oci_platform want;
        if ((rc = proto_oci_platform_parse(o->platform, &want, err)) < 0 ||
            (rc = proto_oci_index_select(&ix, &want, 0, &only, err)) < 0)
            goto out;
    }
    raw = json_loadb((const char *)top->body, top->len, 0, NULL);
    out = json_object();
    arr = json_array();
    if (!raw || !out || !arr) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < ix.n_manifests; i++) {
        const proto_oci_desc *d = &ix.manifests[i];
        /* attestations ("unknown/unknown"), nested indexes, Nydus entries of a merged index */
        if ((only && d != only) || !is_manifest_mt(d->media_type) ||
            strcmp(d->platform.os, "unknown") == 0 || d->platform.nydus_feature ||
            strcmp(d->artifact_type, PROTO_NYDUS_ARTIFACT_TYPE) == 0)
            continue;
        char plat[128] = "(no platform)";
        if (d->has_platform) proto_oci_platform_str(&d->platform, plat, sizeof(plat));
        say(c, "platform %s: %.19s", plat, d->digest);
        struct conv_out co = {0};
        rc = convert_one(c, d->digest, 0, o->merge_platform, &co, err);
        if (rc < 0) {
            cf_err_wrap(err, rc, "platform %s", plat);
            goto out;
        }
        if (o->merge_platform && (rc = copy_original(c, d, err)) < 0) goto out;
        c->res->platforms++;
        json_t *re = raw_entry(raw, d->digest);
        json_t *ne = json_pack("{s:s, s:s, s:I}", "mediaType", co.media_type, "digest", co.digest,
                               "size", (json_int_t)co.size);
        json_t *pl = json_deep_copy(json_object_get(re, "platform"));
        if (o->merge_platform) {
            if (re) json_array_append(arr, re);
            json_object_set_new(ne, "artifactType", json_string(PROTO_NYDUS_ARTIFACT_TYPE));
            if (!json_is_object(pl)) {
                json_decref(pl);
                pl = json_object();
            }
            json_t *feat = json_object_get(pl, "os.features");
            if (!json_is_array(feat)) {
                feat = json_array();
                json_object_set_new(pl, "os.features", feat);
            }
            json_array_append_new(feat, json_string(PROTO_NYDUS_OS_FEATURE));
        }
        if (json_is_object(pl))
            json_object_set_new(ne, "platform", pl);
        else
            json_decref(pl);
        json_array_append_new(arr, ne);
    }
    if (c->res->platforms == 0) {
        rc = cf_err_set(err, -ENOENT, "source %s: an index without image manifests to convert",
                        o->source);
        goto out;
    }
    const char *mt = ix.docker && !o->oci ? PROTO_DOCKER_MT_LIST : PROTO_OCI_MT_INDEX;
    json_object_set_new(out, "schemaVersion", json_integer(2));
    json_object_set_new(out, "mediaType", json_string(mt));
    json_object_set(out, "manifests", arr);
    /* what `convert --all` looks at to skip a source converted before */
    json_object_set_new(out, "annotations",
                        json_pack("{s:s, s:s}", ANN_SRC_DIG, top->digest, ANN_SRC_REF, o->source));
    body = json_dumps(out, JSON_COMPACT);
    if (!body) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    rc = proto_registry_manifest_put(c->dst, c->tref.repo, proto_image_ref_reference(&c->tref), mt,
                                     body, strlen(body), c->res->manifest_digest, err);
    if (rc < 0)
        cf_err_wrap(err, rc, "pushing the index");
    else
        say(c, "index %.19s: %u platform%s%s", c->res->manifest_digest, c->res->platforms,
            c->res->platforms == 1 ? "" : "s",
            o->merge_platform ? ", merged with the original manifests" : "");
out:
    free(body);
    json_decref(arr);
    json_decref(out);
    json_decref(raw);
    proto_oci_index_free(&ix);
    return rc;
}

static int run(struct conv *c, cf_err *err)
{
    proto_manifest top = {0};
    enum proto_oci_kind kind;
    int rc = proto_registry_manifest_get(c->src, c->sref.repo, proto_image_ref_reference(&c->sref),
                                         &top, err);
    if (rc == 0) rc = proto_oci_kind_of(top.body, top.len, top.media_type, &kind, err);
    if (rc < 0) {
        proto_manifest_free(&top);
        return rc;
    }
    if (kind == PROTO_OCI_KIND_INDEX && (!c->o->platform || c->o->merge_platform)) {
        rc = run_index(c, &top, err);
    } else if (c->o->merge_platform) {
        rc = cf_err_set(err, -EINVAL, "--merge-platform: source %s is not an index", c->o->source);
    } else {
        /* one image manifest (an index followed to --platform), pushed by the target's tag */
        struct conv_out co = {0};
        rc = convert_one(c, NULL, 1, 0, &co, err);
        if (rc == 0) {
            memcpy(c->res->manifest_digest, co.digest, sizeof(co.digest));
            c->res->platforms = 1;
        }
    }
    proto_manifest_free(&top);
    return rc;
}

int client_convert(const client_convert_opts *o, client_convert_result *res, cf_err *err)
{
    memset(res, 0, sizeof(*res));
    double t0 = client_conv_now();
    struct conv c = {.o = o, .res = res};
    if (!o->source || !o->target || !o->work_dir || !o->work_dir[0])
        return cf_err_set(err, -EINVAL, "convert needs a source, a target and a work dir");
    int rc;
    if ((rc = proto_image_ref_parse(o->source, &c.sref, err)) < 0)
        return cf_err_wrap(err, rc, "source");
    if ((rc = proto_image_ref_parse(o->target, &c.tref, err)) < 0)
        return cf_err_wrap(err, rc, "target");
    if (c.tref.digest[0])
        return cf_err_set(err, -EINVAL,
                          "target %s: give a tag, not a digest (the digest is the result)",
                          o->target);
    c.comp = RAFS_COMP_ZSTD;
    if (o->compressor &&
        (rafs_compressor_parse(o->compressor, &c.comp) < 0 || c.comp == RAFS_COMP_GZIP))
        return cf_err_set(err, -EINVAL, "--compressor %s: use zstd, lz4_block or none",
                          o->compressor);
    c.chunk_size = o->chunk_size ? o->chunk_size : RAFS_DEFAULT_CHUNK_SIZE;
    if (c.chunk_size < 4096 || c.chunk_size > (16u << 20) || (c.chunk_size & (c.chunk_size - 1)))
        return cf_err_set(err, -EINVAL, "--chunk-size 0x%x: a power of two, 4 KiB .. 16 MiB",
                          c.chunk_size);
    snprintf(c.cache_dir, sizeof(c.cache_dir), "%s/cache", o->work_dir);
    snprintf(c.tmp_dir, sizeof(c.tmp_dir), "%s/tmp", o->work_dir);
    if (strlen(o->work_dir) > PATH_CAP - 300 || cf_mkdir_p(c.cache_dir, 0755) < 0 ||
        cf_mkdir_p(c.tmp_dir, 0700) < 0)
        return cf_err_set(err, errno ? -errno : -EINVAL, "work dir %s: %s", o->work_dir,
                          strerror(errno ? errno : EINVAL));
    proto_registry_opts so = {.docker_config = o->docker_config,
                              .insecure_tls = o->source_insecure};
    proto_registry_opts to = {.docker_config = o->docker_config,
                              .insecure_tls = o->target_insecure};
    if ((rc = proto_registry_new(c.sref.registry, &so, &c.src, err)) < 0) return rc;
    if ((rc = proto_registry_new(c.tref.registry, &to, &c.dst, err)) < 0) {
        proto_registry_free(c.src);
        return rc;
    }
    /* One conversion per work dir at a time: they would share the tmp files. */
    char lock[PATH_CAP + 16];
    snprintf(lock, sizeof(lock), "%s/lock", o->work_dir);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) < 0) {
        rc = cf_err_set(err, errno == EWOULDBLOCK ? -EBUSY : -errno, "work dir %s: %s", o->work_dir,
                        errno == EWOULDBLOCK ? "in use by another conversion (give another "
                                               "--work-dir)"
                                             : strerror(errno));
        if (lfd >= 0) close(lfd);
        proto_registry_free(c.src);
        proto_registry_free(c.dst);
        return rc;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    c.builder_threads = o->threads ? o->threads : ncpu < 1 ? 1 : ncpu > 16 ? 16 : (unsigned)ncpu;
    pthread_mutex_init(&c.mu, NULL);
    rc = o->chunk_dict ? dict_prepare(&c, err) : 0;
    if (rc == 0) rc = run(&c, err);
    dict_free(&c.dict);
    pthread_mutex_destroy(&c.mu);
    close(lfd); /* releases the lock */
    proto_registry_free(c.src);
    proto_registry_free(c.dst);
    res->seconds = client_conv_now() - t0;
    return rc;
}
