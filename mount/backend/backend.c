/* The backend dispatcher (mount/backend.h): builds the per-type part from the config, hands out
 * blob sources and sums the counters. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend_internal.h"
#include "cf/hex.h"

int be_check_blob_id(const char *blob_id, const char *backend, cf_err *err)
{
    if (!blob_id || strlen(blob_id) != 64 || !cf_hex_is_lower(blob_id, 64))
        return cf_err_set(err, -EINVAL, "%s backend: blob id \"%.80s\" is not 64 lowercase hex",
                          backend, blob_id ? blob_id : "(null)");
    return 0;
}

int mount_backend_new(const struct mount_backend_config *cfg, mount_backend **out, cf_err *err)
{
    *out = NULL;
    mount_backend *b = calloc(1, sizeof(*b));
    if (!b) return cf_err_set(err, -ENOMEM, "out of memory");
    b->type = cfg->type;
    int rc;
    switch (cfg->type) {
    case MOUNT_BACKEND_LOCALFS:
        rc = be_localfs_new(cfg, &b->localfs, err);
        break;
    case MOUNT_BACKEND_REGISTRY:
        rc = be_registry_new(cfg, &b->registry, err);
        if (!rc && cfg->proxy.url) rc = be_proxy_new(cfg, &b->proxy, err);
        break;
    default:
        rc = cf_err_set(err, -ENOTSUP, "backend type %d is not supported", (int)cfg->type);
        break;
    }
    if (rc) {
        mount_backend_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

void mount_backend_free(mount_backend *b)
{
    if (!b) return;
    be_proxy_free(b->proxy); /* first: stops its health checker */
    be_registry_free(b->registry);
    be_localfs_free(b->localfs);
    free(b);
}

int mount_backend_open_blob(mount_backend *b, const char *blob_id, uint64_t size,
                            rafs_blob_source **out, cf_err *err)
{
    *out = NULL;
    switch (b->type) {
    case MOUNT_BACKEND_LOCALFS:
        return be_localfs_open(b, blob_id, size, out, err);
    case MOUNT_BACKEND_REGISTRY:
        return be_registry_open(b, blob_id, size, out, err);
    default:
        return cf_err_set(err, -ENOTSUP, "backend type %d is not supported", (int)b->type);
    }
}

int mount_backend_set_auth(mount_backend *b, const char *auth_b64, cf_err *err)
{
    if (b->type != MOUNT_BACKEND_REGISTRY)
        return cf_err_set(err, -EINVAL, "registry_auth: this image's backend is not a registry");
    if (!auth_b64 || !auth_b64[0])
        return cf_err_set(err, -EINVAL, "registry_auth: empty (base64 of user:password)");
    return be_registry_set_auth(b->registry, auth_b64, err);
}

void mount_backend_stats(const mount_backend *b, struct mount_backend_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->bytes_from_proxy = __atomic_load_n(&b->st.bytes_from_proxy, __ATOMIC_RELAXED);
    out->bytes_from_registry = __atomic_load_n(&b->st.bytes_from_registry, __ATOMIC_RELAXED);
    out->bytes_from_localfs = __atomic_load_n(&b->st.bytes_from_localfs, __ATOMIC_RELAXED);
    out->requests = __atomic_load_n(&b->st.requests, __ATOMIC_RELAXED);
    out->errors = __atomic_load_n(&b->st.errors, __ATOMIC_RELAXED);
    out->fallbacks = __atomic_load_n(&b->st.fallbacks, __ATOMIC_RELAXED);
    out->proxy_healthy = b->proxy ? be_proxy_healthy(b->proxy) : -1;
}
