/* One mounted image of chunkfly-mount (tool-internal): where its blobs come from (backend or
 * --blob-dir), its config, its background prefetch. The FUSE filesystem holds it as the
 * owner of the image (mount_fs_attach) and calls instance_release() after freeing the image
 * and its cache. */
#ifndef MOUNT_INSTANCE_H
#define MOUNT_INSTANCE_H

#include <stdbool.h>
#include <stddef.h>

#include "cf/error.h"
#include "mount/blob_cache.h"
#include "rafs/reader.h"

struct instance;

struct instance_params {
    const char *bootstrap;       /* or NULL with image */
    const char *image;           /* --image REF: bootstrap and registry from the reference */
    const char *platform;        /* --platform for image indexes, NULL = this host */
    bool plain_http;             /* --plain-http for the image's registry */
    const char *config_path;     /* nydusd JSON file, or NULL */
    const char *config_json;     /* nydusd JSON text (API), or NULL */
    const char *blob_dir;        /* overrides the config's backend */
    const char *cache_dir;       /* overrides the config's work_dir */
    const char *const *prefetch; /* image paths (--prefetch-files / API prefetch_files) */
    size_t nprefetch;
};

/* Checks and opens everything an image needs, in this order, failing with a message before
 * anything is mounted: config, image (--image: manifest, bootstrap fetched into the cache
 * directory, a registry backend built from the reference unless the config names a registry),
 * backend, bootstrap (RAFS v5 and unsupported blob features refused), blob files
 * (--blob-dir), cache files. On success the caller attaches *img, *cache
 * and *inst to a mount_fs (release: instance_release). */
int instance_open(const struct instance_params *p, rafs_image **img, mount_blob_cache **cache,
                  struct instance **inst, cf_err *err);
bool instance_xattr(const struct instance *inst);
/* Starts the background prefetch (prefetch table / prefetch_all per config, plus paths). */
void instance_start_prefetch(struct instance *inst);
/* Stops and joins the prefetch thread (before the image is detached). */
void instance_stop_prefetch(struct instance *inst);
/* Renewed registry credentials (API PUT /api/v1/config). -ENOTSUP without a registry. */
int instance_set_auth(struct instance *inst, const char *auth_b64, cf_err *err);
/* JSON-ready backend counters; false when the image has no configured backend. */
struct instance_backend_stats {
    unsigned long long bytes_from_proxy, bytes_from_registry, bytes_from_localfs;
    unsigned long long requests, errors, fallbacks;
    int proxy_healthy;
};
bool instance_backend_stats(const struct instance *inst, struct instance_backend_stats *out);
const char *instance_bootstrap(const struct instance *inst);
void instance_release(void *inst);

#endif
