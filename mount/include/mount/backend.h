/* Where chunkfly-mount gets a data blob's (compressed) bytes: localfs, a registry, or a proxy
 * in front of the registry (the node's peer over its local API, or an HTTP forward proxy such
 * as the peer's registry mirror), with nydusd's fallback semantics. Every blob is handed out as
 * a rafs_blob_source (rafs/blob_source.h), so the reader never knows which backend it uses.
 *
 * Bytes from a backend are NOT verified: the caller checks every chunk against its digest
 * (that is why the peer may stream unverified cut-through bytes).
 *
 * Health and fallback (proxy configured with fallback): reads go to the proxy while it is
 * healthy; a failed read or failed health check marks it unhealthy and the read is retried on
 * the registry at once (bounded time: the configured timeouts); health is re-checked every
 * check_interval seconds and reads go back to the proxy when it answers again. Counters say
 * how many bytes each path served.
 *
 * Threads: a mount_backend and the sources it opens may be used from any number of threads.
 * Ownership: mount_backend_new copies what it needs from the config. Sources opened with
 * mount_backend_open_blob are closed by the caller with rafs_blob_source_close() before
 * mount_backend_free(). Errors: 0 or a negative errno with a message naming the blob, the
 * backend and what to do (-ENOENT blob not found, -EACCES refused credentials, -ETIMEDOUT,
 * -EIO, -ENOTSUP). */
#ifndef MOUNT_BACKEND_H
#define MOUNT_BACKEND_H

#include <stdint.h>

#include "cf/error.h"
#include "mount/config.h"
#include "rafs/blob_source.h"

typedef struct mount_backend mount_backend;

int mount_backend_new(const struct mount_backend_config *cfg, mount_backend **out, cf_err *err);
void mount_backend_free(mount_backend *b);

/* A source for blob `blob_id` (64 lowercase hex, as in the bootstrap's blob table). `size`
 * is the compressed blob size when the caller knows it (blob table), else 0: the backend then
 * learns it (HEAD / stat) on the first size() call. */
int mount_backend_open_blob(mount_backend *b, const char *blob_id, uint64_t size,
                            rafs_blob_source **out, cf_err *err);

/* Renewed registry credentials (API PUT /api/v1/config {"registry_auth": base64}). */
int mount_backend_set_auth(mount_backend *b, const char *auth_b64, cf_err *err);

struct mount_backend_stats {
    uint64_t bytes_from_proxy, bytes_from_registry, bytes_from_localfs;
    uint64_t requests, errors, fallbacks; /* fallbacks: reads moved from proxy to registry */
    int proxy_healthy;                    /* 1, 0, or -1 when no proxy is configured */
};
void mount_backend_stats(const mount_backend *b, struct mount_backend_stats *out);

#endif
