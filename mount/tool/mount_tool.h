/* chunkfly-mount's daemon life cycle (tool-internal). */
#ifndef MOUNT_TOOL_H
#define MOUNT_TOOL_H

#ifndef CHUNKFLY_GIT_COMMIT
#define CHUNKFLY_GIT_COMMIT "unknown"
#endif

#include <stdbool.h>
#include <stddef.h>

struct mount_tool_opts {
    const char *mountpoint, *bootstrap, *config, *blob_dir, *cache_dir, *apisock, *id;
    const char *supervisor;
    const char *metrics_listen; /* HOST:PORT, Prometheus */
    const char *image;          /* --image REF (dedicated mode, bootstrap from the registry) */
    const char *platform;       /* --platform OS/ARCH[/VARIANT] for --image */
    bool plain_http;            /* --plain-http for --image */
    unsigned threads;
    bool allow_other;
    bool erofs;            /* kernel-EROFS mode */
    bool log_to_file;      /* errors go to stderr too */
    const char **prefetch; /* image paths */
    size_t nprefetch;
};

/* Checks everything, mounts, serves until SIGTERM/SIGINT or umount, unmounts. Returns the
 * process exit code (0 ok, 1 error, message on stderr / the log). */
int mount_tool_run(const struct mount_tool_opts *o);

#endif
