/* Full reads/writes with EINTR and short-I/O handling, and atomic file replacement. */
#include "cf/file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cf_read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -ENODATA;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int cf_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -ENODATA;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int cf_write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int cf_copy_range(int in, uint64_t in_off, int out, uint64_t out_off, uint64_t len)
{
    while (len > 0) {
        loff_t io = (loff_t)in_off, oo = (loff_t)out_off;
        ssize_t n = copy_file_range(in, &io, out, &oo, len < (1u << 30) ? len : (1u << 30), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
                      errno == EBADF))
            break; /* not between these two: copy through memory below */
        if (n < 0) return -errno;
        if (n == 0) return -EIO;
        in_off += (uint64_t)n;
        out_off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    if (len == 0) return 0;
    size_t cap = len < (1u << 20) ? (size_t)len : (1u << 20);
    uint8_t *buf = malloc(cap);
    if (!buf) return -ENOMEM;
    int rc = 0;
    while (len > 0 && rc == 0) {
        size_t n = len < cap ? (size_t)len : cap;
        ssize_t got = pread(in, buf, n, (off_t)in_off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            rc = -errno;
        } else if (got == 0) {
            rc = -EIO;
        } else {
            rc = cf_pwrite_full(out, buf, (size_t)got, out_off);
            in_off += (uint64_t)got;
            out_off += (uint64_t)got;
            len -= (uint64_t)got;
        }
    }
    free(buf);
    return rc;
}

int cf_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int cf_read_file(const char *path, size_t max_len, uint8_t **out, size_t *out_len, cf_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cf_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return cf_err_set(err, -e, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cf_err_set(err, -EINVAL, "%s is not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_len) {
        close(fd);
        return cf_err_set(err, -EFBIG, "%s is too large (%lld bytes, limit %zu)", path,
                          (long long)st.st_size, max_len);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return cf_err_set(err, -ENOMEM, "out of memory reading %s", path);
    }
    int rc = cf_read_full(fd, buf, len);
    close(fd);
    if (rc) {
        free(buf);
        return cf_err_set(err, rc, "cannot read %s: %s", path,
                          rc == -ENODATA ? "file shrank while reading" : strerror(-rc));
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int cf_fsync_parent(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return -ENOMEM;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0) return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int cf_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, cf_err *err)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return cf_err_set(err, -ENOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return cf_err_set(err, -e, "cannot create %s: %s", path, strerror(e));
    }
    int rc = cf_write_full(fd, data, len);
    if (!rc && fsync(fd) != 0) rc = -errno;
    if (close(fd) != 0 && !rc) rc = -errno;
    if (!rc && rename(tmp, path) != 0) rc = -errno;
    if (rc) {
        unlink(tmp);
        free(tmp);
        return cf_err_set(err, rc, "cannot write %s: %s", path, strerror(-rc));
    }
    free(tmp);
    cf_fsync_parent(path);
    return 0;
}

int cf_mkdir_p(const char *path, mode_t mode)
{
    char *p = strdup(path);
    if (!p) return -ENOMEM;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return -e;
        }
        *s = '/';
    }
    int rc = (mkdir(p, mode) != 0 && errno != EEXIST) ? -errno : 0;
    free(p);
    return rc;
}
