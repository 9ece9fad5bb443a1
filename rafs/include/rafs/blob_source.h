/* Where the reader gets blob bytes from: one small interface (ranged read + size, like
 * erofs-utils' erofs_vfops) so the same reader serves local blob files, a memory buffer (tests,
 * fuzzers), the local peer's API or a registry. Every blob function of rafs/blob.h reads through
 * a rafs_blob_source, never through a file descriptor.
 *
 * Implementing a source: fill a struct rafs_blob_source with `ops` (static, never freed) and
 * an opaque `ctx`; the reader only ever calls the three operations through the helpers below.
 *   pread(src, buf, len, off): reads up to `len` bytes at blob offset `off` into `buf`. Returns
 *     the number of bytes read, or a negative errno (-EIO, -ETIMEDOUT, ...). A short count means
 *     the blob ends there and only then (an implementation retries partial transfers and EINTR
 *     itself); 0 = `off` is at or past the end. Never reads more than `len`.
 *   size(src, *out): the blob's size in bytes; 0 or a negative errno.
 *   close(src): releases ctx and whatever the source owns, including `src` itself when the
 *     constructor allocated it (all constructors here do). May be NULL (nothing to release).
 *
 * Threads: pread and size must be safe to call from several threads at once on one source
 * (the FUSE reader is multithreaded); a source is never closed while a call is running. The
 * built-in sources satisfy this (pread(2) on one fd; plain copies out of an immutable buffer).
 *
 * Ownership: whoever creates a source closes it once with rafs_blob_source_close(), unless it
 * handed the source to an owner that says it closes it (rafs_blob_set_put). Functions that
 * take a `const rafs_blob_source *` only read through it and never close it.
 *
 * Errors: 0 or a negative errno; constructors fill `cf_err *err` (may be NULL). */
#ifndef RAFS_BLOB_SOURCE_H
#define RAFS_BLOB_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cf/error.h"

typedef struct rafs_blob_source rafs_blob_source;

struct rafs_blob_source_ops {
    ssize_t (*pread)(const rafs_blob_source *src, void *buf, size_t len, uint64_t off);
    int (*size)(const rafs_blob_source *src, uint64_t *out);
    void (*close)(rafs_blob_source *src);
};

struct rafs_blob_source {
    const struct rafs_blob_source_ops *ops;
    void *ctx; /* the implementation's state */
};

/* ---- Built-in sources ------------------------------------------------------------------- */
/* A local file: pread(2) on `fd` (retrying EINTR and short transfers), size = fstat's st_size
 * at each call. `fd` must be a regular file (else -EINVAL "not a regular file"). With
 * `own_fd`, close() closes fd; otherwise the caller keeps it open for the source's lifetime
 * and closes it after. On failure the fd is left to the caller either way. */
int rafs_blob_source_from_fd(int fd, bool own_fd, rafs_blob_source **out, cf_err *err);
/* Opens `path` read-only (O_CLOEXEC) as a local file source that owns its fd. Errors: the
 * open(2) errno, or -EINVAL for something that is not a regular file; the message is
 * "<path>: <reason>". */
int rafs_blob_source_open_path(const char *path, rafs_blob_source **out, cf_err *err);
/* `len` bytes at `buf`. Not copied: the buffer must stay valid (and, while reads run, unchanged)
 * until close. With `own_buf`, close() calls free(buf). */
int rafs_blob_source_from_mem(const void *buf, size_t len, bool own_buf, rafs_blob_source **out,
                              cf_err *err);

/* ---- Using a source ------------------------------------------------------------------- */
/* The operations, checked: rafs_blob_source_pread returns what ops->pread does (-EIO if an
 * implementation returns more than `len`). */
ssize_t rafs_blob_source_pread(const rafs_blob_source *src, void *buf, size_t len, uint64_t off);
int rafs_blob_source_size(const rafs_blob_source *src, uint64_t *out);
/* Reads exactly `len` bytes at `off`: 0, -ENODATA when the blob ends first, or the source's
 * negative errno. */
int rafs_blob_source_read_full(const rafs_blob_source *src, void *buf, size_t len, uint64_t off);
/* Calls ops->close; NULL-safe. */
void rafs_blob_source_close(rafs_blob_source *src);

#endif
