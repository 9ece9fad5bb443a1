/* Private to client/: helpers shared by convert.c and check.c. */
#ifndef CLIENT_CONVERT_PRIV_H
#define CLIENT_CONVERT_PRIV_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "cf/buf.h"
#include "cf/error.h"
#include "proto/oci_model.h"
#include "proto/registry_client.h"

/* Seconds on the monotonic clock. */
double client_conv_now(void);
/* Formats one progress line and hands it to progress(ctx, line) (under mu when not NULL); nothing
 * when progress is NULL. */
void client_conv_vsay(void (*progress)(void *ctx, const char *line), void *ctx, pthread_mutex_t *mu,
                      const char *fmt, va_list ap);

/* A proto_registry_write_fn into b, failing with -EFBIG past max bytes. */
struct mem_cap {
    cf_buf b;
    size_t max;
};
int client_conv_mem_cap_write(void *ctx, const void *data, size_t len);

/* "sha256:<hex>" of a file's bytes (and its size, may be NULL). */
int client_conv_file_sha256(const char *path, char out[72], uint64_t *size, cf_err *err);
/* "sha256:<hex>" of the decompressed bytes of a gzip file. */
int client_conv_gunzip_sha256(const char *path, char out[72], cf_err *err);

/* The image manifest of ref: an index is followed to `platform` ("os/arch[/variant]", NULL =
 * this host's) with proto_oci_index_select's flags. Fills *m (free with
 * proto_oci_manifest_free), the manifest's digest and its size in bytes (size may be NULL). */
int client_conv_resolve(proto_registry *r, const proto_image_ref *ref, const char *platform,
                        unsigned select_flags, proto_oci_manifest *m, char digest[72], size_t *size,
                        cf_err *err);

/* image/image.boot (or a legacy image.boot) of a Nydus bootstrap layer (gzip tar file tgz)
 * written to out (check.c). -ENOENT when absent, -EBADMSG for a bad tar. */
int client_conv_extract_boot(const char *tgz, const char *out, cf_err *err);

#endif
