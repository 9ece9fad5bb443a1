/* Private to mount/backend: the backend object the dispatcher (backend.c) hands out, and the
 * per-type parts (backend_localfs.c, backend_registry.c, backend_proxy.c). */
#ifndef MOUNT_BACKEND_INTERNAL_H
#define MOUNT_BACKEND_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mount/backend.h"

struct be_localfs;
struct be_registry;
struct be_proxy;

/* Counters, updated with __atomic builtins from any thread. */
struct be_counters {
    uint64_t bytes_from_proxy, bytes_from_registry, bytes_from_localfs;
    uint64_t requests, errors, fallbacks;
};

struct mount_backend {
    enum mount_backend_type type;
    struct be_counters st;
    struct be_localfs *localfs;   /* MOUNT_BACKEND_LOCALFS */
    struct be_registry *registry; /* MOUNT_BACKEND_REGISTRY */
    struct be_proxy *proxy;       /* registry with proxy.url, else NULL */
    int64_t last_log_s;           /* __atomic: rate limit of failure messages */
};

static inline void be_count(uint64_t *c, uint64_t n)
{
    __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* Blob ids name files and URL paths: 64 lowercase hex only (no path tricks). 0 or -EINVAL. */
int be_check_blob_id(const char *blob_id, const char *backend, cf_err *err);

int be_localfs_new(const struct mount_backend_config *cfg, struct be_localfs **out, cf_err *err);
void be_localfs_free(struct be_localfs *l);
int be_localfs_open(mount_backend *b, const char *blob_id, uint64_t size, rafs_blob_source **out,
                    cf_err *err);

/* ---- registry (backend_registry.c) ---- */
int be_registry_new(const struct mount_backend_config *cfg, struct be_registry **out, cf_err *err);
void be_registry_free(struct be_registry *g);
int be_registry_open(mount_backend *b, const char *blob_id, uint64_t size, rafs_blob_source **out,
                     cf_err *err);
int be_registry_set_auth(struct be_registry *g, const char *auth_b64, cf_err *err);
const char *be_registry_host(const struct be_registry *g);
const char *be_registry_repo(const struct be_registry *g);
bool be_registry_plain_http(const struct be_registry *g);
/* "user:password" (malloc'd, a secret: explicit_bzero + free it) or NULL. */
char *be_registry_creds(struct be_registry *g);
/* Bytes [off, off+len) into buf, *got of them (fewer only at the blob's end); directly or
 * through the HTTP forward proxy. */
int be_registry_read(struct be_registry *g, bool via_proxy, const char *digest, void *buf,
                     size_t len, uint64_t off, size_t *got, cf_err *err);
int be_registry_size(struct be_registry *g, bool via_proxy, const char *digest, uint64_t *size,
                     cf_err *err);

/* ---- proxy (backend_proxy.c) ---- */
int be_proxy_new(const struct mount_backend_config *cfg, struct be_proxy **out, cf_err *err);
void be_proxy_free(struct be_proxy *p);
/* Reads go to the proxy: healthy, or no fallback configured. */
bool be_proxy_usable(const struct be_proxy *p);
bool be_proxy_fallback(const struct be_proxy *p);
int be_proxy_healthy(const struct be_proxy *p);
/* A read through the proxy failed: unhealthy until the checker sees it answer again. */
void be_proxy_mark_failed(mount_backend *b, const cf_err *why);
int be_proxy_read(mount_backend *b, const char *digest, void *buf, size_t len, uint64_t off,
                  size_t *got, cf_err *err);
int be_proxy_size(mount_backend *b, const char *digest, uint64_t *size, cf_err *err);

#endif
