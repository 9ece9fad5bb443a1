/* chunkfly-mount's HTTP API on a unix socket (--apisock): the subset of nydusd's API that
 * nydus-snapshotter uses (../shared/docs/runtime-contracts.md §1), served by the project's
 * HTTP server (proto/http) on its own libuv thread. Idle connections are never closed (the
 * snapshotter treats a hang-up as the daemon's death); errors are JSON {"code","message"}. */
#ifndef MOUNT_API_H
#define MOUNT_API_H

#include <stdbool.h>

#include "cf/error.h"
#include "mount/fuse_fs.h"

struct mount_api;

struct mount_api_info {
    const char *id;         /* --id, may be NULL */
    const char *supervisor; /* --supervisor, may be NULL */
    bool shared;            /* images are attached with POST /api/v1/mount */
    const char *blob_dir;   /* --blob-dir / --cache-dir: override what POSTed configs say */
    const char *cache_dir;
    const char *metrics_listen; /* HOST:PORT for Prometheus GET /metrics (TCP), or NULL */
};

/* Binds `sock` (an old socket file there is replaced; NULL = no API) and, with
 * info->metrics_listen, a TCP listener that serves only GET /metrics (Prometheus text, one
 * series per attached image); serves both in a new thread. */
int mount_api_start(const char *sock, mount_fs *fs, const struct mount_api_info *info,
                    struct mount_api **out, cf_err *err);
/* Closes every connection, joins the thread, removes the socket file. NULL-safe. */
void mount_api_stop(struct mount_api *a);

#endif
