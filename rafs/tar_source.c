/* Tar layer source (libarchive): plain, gzip or zstd tar from a file, FIFO or stdin; every
 * entry type, PAX/GNU long names, xattrs, hard links and sparse entries (holes read back as
 * zeros by archive_read_data). File data is streamed straight into the blob writer's chunk
 * buffers, so memory does not grow with the layer size. */
#include <archive.h>
#include <archive_entry.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cf/log.h"
#include "rafs/builder.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void rafs_progress_tick(struct rafs_progress *pr, int force)
{
    if (!pr) return;
    double t = now_s();
    if (pr->start == 0) pr->start = pr->last_report = t;
    if (!force && t - pr->last_report < 5.0) return;
    pr->last_report = t;
    double el = t - pr->start;
    cf_info("%s: %llu entries, %.1f MiB of file data, %.1f MiB/s", force ? "done" : "progress",
            (unsigned long long)pr->entries, pr->bytes / 1048576.0,
            el > 0 ? pr->bytes / 1048576.0 / el : 0.0);
}

static int feed_data(struct archive *a, rafs_blob_writer *w, struct rafs_inode *ino, uint64_t size,
                     const char *path, struct rafs_progress *pr, cf_err *err)
{
    int rc = rafs_blob_writer_begin_file(w, ino, size, err);
    if (rc) return cf_err_wrap(err, rc, "'%s'", path);
    for (;;) {
        void *buf;
        size_t avail;
        if ((rc = rafs_blob_writer_buf(w, &buf, &avail, err))) return rc;
        if (!avail) break;
        la_ssize_t n = archive_read_data(a, buf, avail);
        if (n < 0)
            return cf_err_set(err, -EBADMSG, "tar entry '%s': reading data: %s", path,
                              archive_error_string(a) ? archive_error_string(a) : "error");
        if (n == 0) {
            rafs_blob_writer_end_file(w, NULL);
            return cf_err_set(err, -EBADMSG, "tar entry '%s': data ends early (truncated tar?)",
                              path);
        }
        if ((rc = rafs_blob_writer_advance(w, (size_t)n, err))) return rc;
        if (pr) {
            pr->bytes += (uint64_t)n;
            rafs_progress_tick(pr, 0);
        }
    }
    rc = rafs_blob_writer_end_file(w, err);
    return rc ? cf_err_wrap(err, rc, "tar entry '%s'", path) : 0;
}

static int add_entry(struct archive *a, struct archive_entry *e, struct rafs_tree *t,
                     rafs_blob_writer *w, struct rafs_progress *pr, cf_err *err)
{
    const char *path = archive_entry_pathname(e);
    if (!path) return cf_err_set(err, -EBADMSG, "tar entry without a usable path name");
    const char *hl = archive_entry_hardlink(e);
    int rc;
    if (hl) {
        struct rafs_node *target = rafs_tree_lookup(t, hl);
        if (!target)
            return cf_err_set(err, -EBADMSG, "tar entry '%s': hard link to missing '%s'", path, hl);
        if (S_ISDIR(target->inode->mode))
            return cf_err_set(err, -EBADMSG, "tar entry '%s': hard link to directory '%s'", path,
                              hl);
        struct rafs_inode *ino = target->inode;
        ino->refs++; /* keep it alive if `path` currently names the target itself */
        rc = rafs_tree_add(t, path, ino, NULL, err);
        rafs_inode_put(ino);
        return rc ? cf_err_wrap(err, rc, "tar entry '%s'", path) : 0;
    }
    struct rafs_inode *ino = rafs_inode_new();
    if (!ino) return -ENOMEM;
    ino->mode = archive_entry_mode(e);
    ino->uid = (uint32_t)archive_entry_uid(e);
    ino->gid = (uint32_t)archive_entry_gid(e);
    ino->mtime = archive_entry_mtime_is_set(e) ? (uint64_t)archive_entry_mtime(e) : 0;
    ino->mtime_nsec = archive_entry_mtime_is_set(e) ? (uint32_t)archive_entry_mtime_nsec(e) : 0;
    switch (ino->mode & S_IFMT) {
    case S_IFREG:
    case S_IFDIR:
    case S_IFIFO:
    case S_IFSOCK:
        break;
    case S_IFCHR:
    case S_IFBLK:
        ino->rdev = rafs_encode_dev((uint32_t)archive_entry_rdevmajor(e),
                                    (uint32_t)archive_entry_rdevminor(e));
        break;
    case S_IFLNK: {
        const char *target = archive_entry_symlink(e);
        ino->symlink = strdup(target ? target : "");
        if (!ino->symlink) {
            rafs_inode_put(ino);
            return -ENOMEM;
        }
        ino->size = strlen(ino->symlink);
        if (ino->size > 4095) {
            rafs_inode_put(ino);
            return cf_err_set(err, -ENAMETOOLONG, "tar entry '%s': symlink target too long", path);
        }
        break;
    }
    default:
        rafs_inode_put(ino);
        return cf_err_set(err, -EBADMSG, "tar entry '%s': unsupported file type 0%o", path,
                          ino->mode & S_IFMT);
    }
    const char *xn;
    const void *xv;
    size_t xl;
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &xn, &xv, &xl) == ARCHIVE_OK) {
        cf_err xe = {0};
        rc = rafs_inode_set_xattr(ino, xn, xv, xl, &xe);
        if (rc == -EINVAL) { /* e.g. macOS names without a namespace: skipped, as nydus-image */
            cf_warn("tar entry '%s': %s; xattr skipped", path, xe.msg);
            continue;
        }
        if (rc) {
            rafs_inode_put(ino);
            return cf_err_set(err, rc, "tar entry '%s': %s", path, cf_err_str(&xe, rc));
        }
    }
    if (S_ISREG(ino->mode)) {
        la_int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
        if (size < 0) {
            rafs_inode_put(ino);
            return cf_err_set(err, -EBADMSG, "tar entry '%s': negative size", path);
        }
        rc = feed_data(a, w, ino, (uint64_t)size, path, pr, err);
        if (rc) {
            rafs_inode_put(ino);
            return rc;
        }
    }
    rc = rafs_tree_add(t, path, ino, NULL, err);
    rafs_inode_put(ino);
    return rc ? cf_err_wrap(err, rc, "tar entry '%s'", path) : 0;
}

int rafs_tar_source_read(const char *path, struct rafs_tree *t, rafs_blob_writer *w,
                         struct rafs_progress *pr, cf_err *err)
{
    struct archive *a = archive_read_new();
    if (!a) return -ENOMEM;
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_gnutar(a);
    archive_read_support_format_empty(a); /* a 0-byte layer is an empty tree */
    int r;
    if (!strcmp(path, "-") || !strcmp(path, "/dev/stdin"))
        r = archive_read_open_fd(a, 0, 1 << 20);
    else
        r = archive_read_open_filename(a, path, 1 << 20);
    if (r != ARCHIVE_OK) {
        int rc = cf_err_set(err, -EIO, "opening tar '%s': %s", path,
                            archive_error_string(a) ? archive_error_string(a) : "error");
        archive_read_free(a);
        return rc;
    }
    int rc = 0;
    for (;;) {
        struct archive_entry *e;
        r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r == ARCHIVE_WARN) {
            cf_warn("tar '%s': %s", path, archive_error_string(a));
        } else if (r != ARCHIVE_OK) {
            rc = cf_err_set(err, -EBADMSG, "reading tar '%s' after %llu entries: %s", path,
                            pr ? (unsigned long long)pr->entries : 0ull,
                            archive_error_string(a) ? archive_error_string(a) : "error");
            break;
        }
        if ((rc = add_entry(a, e, t, w, pr, err))) break;
        if (pr) pr->entries++;
    }
    if (!rc && archive_read_close(a) != ARCHIVE_OK)
        rc = cf_err_set(err, -EBADMSG, "tar '%s': %s", path, archive_error_string(a));
    archive_read_free(a);
    return rc;
}
