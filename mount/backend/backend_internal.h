/* Private to mount/backend: the backend object the dispatcher (backend.c) hands out, and the
 * per-type parts (backend_localfs.c, backend_registry.c, backend_proxy.c). */
#ifndef MOUNT_BACKEND_INTERNAL_H
#define MOUNT_BACKEND_INTERNAL_H

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

#endif
