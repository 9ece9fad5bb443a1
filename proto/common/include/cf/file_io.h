/* Whole-buffer file I/O that retries short reads/writes and EINTR, and crash-safe replacement
 * of a file (write to a temporary name, fsync, rename, fsync the directory). */
#ifndef CF_FILE_IO_H
#define CF_FILE_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cf/error.h"

/* Return 0, -EIO-style negative errno, or -ENODATA when EOF comes before `len` bytes. */
int cf_read_full(int fd, void *buf, size_t len);
int cf_pread_full(int fd, void *buf, size_t len, uint64_t off);
int cf_write_full(int fd, const void *buf, size_t len);
int cf_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* Copies len bytes of in at in_off to out at out_off inside the kernel (copy_file_range), or
 * through a buffer where the kernel cannot (other filesystems, old kernels). Returns 0, -EIO
 * when in ends early, or a negative errno. Blocking. */
int cf_copy_range(int in, uint64_t in_off, int out, uint64_t out_off, uint64_t len);

/* Reads a whole regular file into memory (caller frees *out). Files larger than `max_len`
 * are refused with -EFBIG so untrusted paths cannot exhaust memory. */
int cf_read_file(const char *path, size_t max_len, uint8_t **out, size_t *out_len, cf_err *err);

/* Atomically replaces `path` with `data`: no reader ever sees a partial file, and after a
 * crash either the old or the new content is there. */
int cf_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, cf_err *err);

/* fsync the directory holding `path` (after a rename or create). */
int cf_fsync_parent(const char *path);

/* mkdir -p. Returns 0 or negative errno. */
int cf_mkdir_p(const char *path, mode_t mode);

#endif
