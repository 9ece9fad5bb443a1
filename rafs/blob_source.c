/* Blob sources: the reader's one way to blob bytes (rafs/blob_source.h), and the two built-in
 * implementations, a local file (pread on an fd) and a memory buffer. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rafs/blob_source.h"

/* ---- local file ------------------------------------------------------------------------- */
struct fd_source {
    rafs_blob_source src; /* first: close() frees the whole struct */
    int fd;
    bool own;
};

static ssize_t fd_pread(const rafs_blob_source *src, void *buf, size_t len, uint64_t off)
{
    const struct fd_source *s = src->ctx;
    if (off >= (uint64_t)INT64_MAX) return 0; /* past any file's end */
    if (len > SSIZE_MAX) len = SSIZE_MAX;
    if (len > (uint64_t)INT64_MAX - off)
        len = (size_t)((uint64_t)INT64_MAX - off); /* no off_t overflow */
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(s->fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) break; /* end of file */
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static int fd_size(const rafs_blob_source *src, uint64_t *out)
{
    const struct fd_source *s = src->ctx;
    struct stat st;
    if (fstat(s->fd, &st) != 0) return -errno;
    *out = (uint64_t)st.st_size;
    return 0;
}

static void fd_close(rafs_blob_source *src)
{
    struct fd_source *s = src->ctx;
    if (s->own) close(s->fd);
    free(s);
}

static const struct rafs_blob_source_ops fd_ops = {fd_pread, fd_size, fd_close};

int rafs_blob_source_from_fd(int fd, bool own_fd, rafs_blob_source **out, cf_err *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return cf_err_set(err, -errno, "fd %d: %s", fd, strerror(errno));
    if (!S_ISREG(st.st_mode)) return cf_err_set(err, -EINVAL, "fd %d: not a regular file", fd);
    struct fd_source *s = calloc(1, sizeof(*s));
    if (!s) return cf_err_set(err, -ENOMEM, "out of memory");
    s->src.ops = &fd_ops;
    s->src.ctx = s;
    s->fd = fd;
    s->own = own_fd;
    *out = &s->src;
    return 0;
}

int rafs_blob_source_open_path(const char *path, rafs_blob_source **out, cf_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cf_err_set(err, -errno, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = cf_err_set(err, -errno, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = cf_err_set(err, -EINVAL, "%s: not a regular file", path);
    else if ((rc = rafs_blob_source_from_fd(fd, true, out, err)))
        rc = cf_err_wrap(err, rc, "%s", path);
    if (rc) close(fd);
    return rc;
}

/* ---- memory buffer ---------------------------------------------------------------------- */
struct mem_source {
    rafs_blob_source src;
    const uint8_t *buf;
    size_t len;
    bool own;
};

static ssize_t mem_pread(const rafs_blob_source *src, void *buf, size_t len, uint64_t off)
{
    const struct mem_source *s = src->ctx;
    if (off >= s->len) return 0;
    size_t n = s->len - (size_t)off;
    if (n > len) n = len;
    if (n > SSIZE_MAX) n = SSIZE_MAX;
    memcpy(buf, s->buf + off, n);
    return (ssize_t)n;
}

static int mem_size(const rafs_blob_source *src, uint64_t *out)
{
    const struct mem_source *s = src->ctx;
    *out = s->len;
    return 0;
}

static void mem_close(rafs_blob_source *src)
{
    struct mem_source *s = src->ctx;
    if (s->own) free((void *)s->buf);
    free(s);
}

static const struct rafs_blob_source_ops mem_ops = {mem_pread, mem_size, mem_close};

int rafs_blob_source_from_mem(const void *buf, size_t len, bool own_buf, rafs_blob_source **out,
                              cf_err *err)
{
    if (!buf && len) return cf_err_set(err, -EINVAL, "memory blob source: NULL buffer");
    struct mem_source *s = calloc(1, sizeof(*s));
    if (!s) return cf_err_set(err, -ENOMEM, "out of memory");
    s->src.ops = &mem_ops;
    s->src.ctx = s;
    s->buf = buf;
    s->len = len;
    s->own = own_buf;
    *out = &s->src;
    return 0;
}

/* ---- helpers ---------------------------------------------------------------------------- */
ssize_t rafs_blob_source_pread(const rafs_blob_source *src, void *buf, size_t len, uint64_t off)
{
    ssize_t n = src->ops->pread(src, buf, len, off);
    if (n > 0 && (size_t)n > len) return -EIO; /* a broken implementation, not a short blob */
    return n;
}

int rafs_blob_source_size(const rafs_blob_source *src, uint64_t *out)
{
    return src->ops->size(src, out);
}

int rafs_blob_source_read_full(const rafs_blob_source *src, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = rafs_blob_source_pread(src, p, len, off);
        if (n < 0) return (int)n;
        if (n == 0) return -ENODATA;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

void rafs_blob_source_close(rafs_blob_source *src)
{
    if (src && src->ops->close) src->ops->close(src);
}
