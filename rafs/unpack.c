/* `unpack`: a RAFS image (bootstrap + data blobs) back to a PAX tar, via the reader API. */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf/log.h"
#include "rafs/blob.h"
#include "rafs/builder.h"
#include "rafs/reader.h"

struct first_path {
    uint64_t nid;
    char *path;
};

struct uctx {
    rafs_image *img;
    struct archive *a;
    rafs_blob_set *blobs;
    uint8_t *buf;
    size_t buf_cap;
    struct first_path *seen; /* hard-link groups: nid -> first path */
    size_t nseen, cap;
    cf_err *err;
    enum rafs_compressor comp;
    enum rafs_digester dig;
    int have_last; /* u->buf holds chunk (last_blob, last_ci), already verified */
    uint32_t last_blob, last_ci;
};

static int add_xattr(const char *name, const void *value, size_t len, void *ctx)
{
    archive_entry_xattr_add_entry(ctx, name, value, len);
    return 0;
}

static int write_data(struct uctx *u, const struct rafs_walk_entry *e)
{
    uint64_t n;
    int rc = rafs_file_chunk_count(u->img, e->nid, &n, u->err);
    if (rc) return rc;
    for (uint64_t i = 0; i < n; i++) {
        struct rafs_chunk_ref ref;
        if ((rc = rafs_file_chunk(u->img, e->nid, i, &ref, u->err))) return rc;
        const rafs_blob_source *src = rafs_blob_set_get(u->blobs, ref.blob_index);
        if (!src)
            return cf_err_set(u->err, -ENOENT, "'%s': blob %u (%s) not available", e->path,
                              ref.blob_index, ref.blob_id);
        if (ref.uncompressed_size > u->buf_cap) {
            uint8_t *nb = realloc(u->buf, ref.uncompressed_size);
            if (!nb) return -ENOMEM;
            u->buf = nb;
            u->buf_cap = ref.uncompressed_size;
        }
        /* runs of one deduplicated chunk (zeros, sparse files) are read and verified once */
        if (!(u->have_last && u->last_blob == ref.blob_index && u->last_ci == ref.ci_index)) {
            u->have_last = 0;
            rc = rafs_chunk_read(src, &ref, u->comp, u->dig, u->buf, u->err);
            if (rc)
                return cf_err_wrap(u->err, rc, "'%s' chunk %llu", e->path, (unsigned long long)i);
            u->have_last = 1;
            u->last_blob = ref.blob_index;
            u->last_ci = ref.ci_index;
        }
        uint64_t want = e->st->size - ref.file_offset;
        size_t len = ref.uncompressed_size < want ? ref.uncompressed_size : (size_t)want;
        if (archive_write_data(u->a, u->buf, len) != (la_ssize_t)len)
            return cf_err_set(u->err, -EIO, "writing tar: %s", archive_error_string(u->a));
    }
    return 0;
}

/* archive_write_header(), accepting one warning: a path or link target that is not text in the
 * current locale ("Can't translate pathname '...' to UTF-8"; the tool never calls setlocale, so
 * that is any non-ASCII name). libarchive has then written that header in binary mode (raw
 * bytes, "hdrcharset=BINARY"), which is what unpack wants: RAFS names are bytes, and every path
 * must come out byte for byte whatever the locale (LANG unset too). Any other warning is still
 * an error, as before. */
static int write_header(struct archive *a, struct archive_entry *ae)
{
    int r = archive_write_header(a, ae);
    if (r == ARCHIVE_WARN) {
        const char *msg = archive_error_string(a);
        if (msg && strncmp(msg, "Can't translate ", 16) == 0) {
            cf_debug("tar header written with raw bytes: %s", msg);
            return ARCHIVE_OK;
        }
    }
    return r;
}

static int visit(const struct rafs_walk_entry *e, void *ctx)
{
    struct uctx *u = ctx;
    if (e->depth == 0) return 0; /* the root has no tar entry */
    if (S_ISSOCK(e->st->mode)) { /* tar cannot carry sockets (GNU tar skips them too) */
        cf_warn("'%s': socket skipped", e->path);
        return 0;
    }
    const struct rafs_stat *st = e->st;
    struct archive_entry *ae = archive_entry_new();
    if (!ae) return -ENOMEM;
    int rc = 0;
    archive_entry_set_pathname(ae, e->path);
    archive_entry_set_mode(ae, st->mode);
    archive_entry_set_uid(ae, st->uid);
    archive_entry_set_gid(ae, st->gid);
    archive_entry_set_mtime(ae, (time_t)st->mtime, st->mtime_nsec);
    if (S_ISREG(st->mode) && st->nlink > 1) {
        for (size_t i = 0; i < u->nseen; i++) {
            if (u->seen[i].nid == e->nid) {
                archive_entry_set_hardlink(ae, u->seen[i].path);
                archive_entry_set_size(ae, 0);
                if (write_header(u->a, ae) != ARCHIVE_OK)
                    rc = cf_err_set(u->err, -EIO, "tar header '%s': %s", e->path,
                                    archive_error_string(u->a));
                archive_entry_free(ae);
                return rc;
            }
        }
        if (u->nseen == u->cap) {
            size_t nc = u->cap ? u->cap * 2 : 64;
            struct first_path *v = realloc(u->seen, nc * sizeof(*v));
            if (!v) {
                archive_entry_free(ae);
                return -ENOMEM;
            }
            u->seen = v;
            u->cap = nc;
        }
        u->seen[u->nseen].nid = e->nid;
        if (!(u->seen[u->nseen].path = strdup(e->path))) {
            archive_entry_free(ae);
            return -ENOMEM;
        }
        u->nseen++;
    }
    if (S_ISLNK(st->mode)) {
        char tgt[PATH_MAX];
        size_t len;
        rc = rafs_readlink(u->img, e->nid, tgt, sizeof(tgt) - 1, &len, u->err);
        if (rc) goto out;
        tgt[len] = 0;
        archive_entry_set_symlink(ae, tgt);
    } else if (S_ISCHR(st->mode) || S_ISBLK(st->mode)) {
        archive_entry_set_rdevmajor(ae, rafs_rdev_major(st->rdev));
        archive_entry_set_rdevminor(ae, rafs_rdev_minor(st->rdev));
    }
    if (S_ISREG(st->mode)) archive_entry_set_size(ae, (la_int64_t)st->size);
    if (st->xattr_icount && (rc = rafs_xattr_foreach(u->img, e->nid, add_xattr, ae, u->err)))
        goto out;
    if (write_header(u->a, ae) != ARCHIVE_OK) {
        rc = cf_err_set(u->err, -EIO, "tar header '%s': %s", e->path, archive_error_string(u->a));
        goto out;
    }
    if (S_ISREG(st->mode) && st->size) rc = write_data(u, e);
out:
    archive_entry_free(ae);
    return rc;
}

int rafs_unpack(const char *bootstrap, const char *blob_file, const char *blob_dir,
                const char *out_tar, cf_err *err)
{
    struct uctx u = {.err = err};
    int rc = rafs_image_open(bootstrap, &u.img, err);
    if (rc) return rc; /* the reader's message names the file */
    const struct rafs_super_info *sb = rafs_image_super(u.img);
    u.comp = sb->compressor;
    u.dig = sb->digester;
    uint32_t nblobs = rafs_image_blob_count(u.img);
    char tmp[PATH_MAX];
    tmp[0] = 0;
    if ((rc = rafs_blob_set_new(u.img, &u.blobs, err))) goto out;
    for (uint32_t i = 0; i < nblobs; i++) {
        const struct rafs_blob_info *bi = rafs_image_blob(u.img, i);
        char p[PATH_MAX];
        if (blob_dir) {
            snprintf(p, sizeof(p), "%s/%s", blob_dir, bi->id);
            if (blob_file && access(p, R_OK)) snprintf(p, sizeof(p), "%s", blob_file);
        } else if (blob_file && nblobs == 1) {
            snprintf(p, sizeof(p), "%s", blob_file);
        } else {
            rc = cf_err_set(err, -EINVAL, "image has %u blobs: give --blob-dir", nblobs);
            goto out;
        }
        rafs_blob_source *src;
        if ((rc = rafs_blob_source_open_path(p, &src, NULL))) {
            rc = cf_err_set(err, rc, "opening blob %s: '%s': %s", bi->id, p,
                            rc == -EINVAL ? "not a regular file" : cf_err_str(NULL, rc));
            goto out;
        }
        if ((rc = rafs_blob_set_put(u.blobs, i, src, err))) goto out;
    }
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", out_tar) >= (int)sizeof(tmp)) {
        tmp[0] = 0;
        rc = cf_err_set(err, -ENAMETOOLONG, "output path too long");
        goto out;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = cf_err_set(err, -errno, "creating '%s': %s", out_tar, strerror(errno));
        tmp[0] = 0;
        goto out;
    }
    fchmod(fd, 0644);
    u.a = archive_write_new();
    archive_write_set_format_pax_restricted(u.a);
    archive_write_set_bytes_in_last_block(u.a, 1);
    if (archive_write_open_fd(u.a, fd) != ARCHIVE_OK) {
        rc = cf_err_set(err, -EIO, "tar: %s", archive_error_string(u.a));
        close(fd);
        goto out;
    }
    rc = rafs_walk(u.img, visit, &u, err);
    if (archive_write_close(u.a) != ARCHIVE_OK && !rc)
        rc = cf_err_set(err, -EIO, "finishing tar: %s", archive_error_string(u.a));
    if (close(fd) && !rc) rc = cf_err_set(err, -errno, "closing '%s'", out_tar);
    if (!rc && rename(tmp, out_tar)) rc = cf_err_set(err, -errno, "renaming to '%s'", out_tar);
    if (!rc) tmp[0] = 0;
out:
    if (tmp[0]) unlink(tmp);
    if (u.a) archive_write_free(u.a);
    rafs_blob_set_close(u.blobs);
    for (size_t i = 0; i < u.nseen; i++) free(u.seen[i].path);
    free(u.seen);
    free(u.buf);
    rafs_image_close(u.img);
    return rc;
}
