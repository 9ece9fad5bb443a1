/* Error reporting shared by every Chunkfly library.
 *
 * Convention (as libuv/erofs-utils): fallible functions return 0 on success or a negative errno
 * value (-EINVAL bad argument, -EIO I/O failure, -ENOMEM, -EBADMSG malformed input, -ENOENT,
 * -ENOTSUP unsupported feature...). Where a human-readable reason helps, they also take an
 * optional `cf_err *` (may be NULL) and fill it with the code and a message a user can act on.
 * Library code never prints to stdout and never calls exit(). */
#ifndef CF_ERROR_H
#define CF_ERROR_H

#include <errno.h>
#include <stdarg.h>

#define CF_ERR_MSG_MAX 512

typedef struct cf_err {
    int code;                 /* negative errno, 0 = no error */
    char msg[CF_ERR_MSG_MAX]; /* NUL-terminated, empty when code == 0 */
} cf_err;

/* Record an error and return `code` (which should be negative), so callers can write
 * `return cf_err_set(err, -EBADMSG, "inode %u: size %llu past EOF", ...);`.
 * `err` may be NULL: then only the code is returned. */
int cf_err_set(cf_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int cf_err_vset(cf_err *err, int code, const char *fmt, va_list ap);

/* Prefix an already-set message with context ("reading blob X: <old message>"). Returns
 * err->code (or `code` when err is NULL). */
int cf_err_wrap(cf_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void cf_err_clear(cf_err *err);

/* Message for printing: err->msg when set, else strerror(-code). Never NULL. */
const char *cf_err_str(const cf_err *err, int code);

#endif
