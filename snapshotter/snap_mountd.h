/* The shared chunkfly-mount the snapshotter starts and supervises (private to the core).
 * One FUSE mount at ROOT/mnt holds every attached image under /<name>; its HTTP API is on
 * ROOT/mount.sock; its pid in ROOT/mount.pid so a restarted snapshotter adopts it (it runs in
 * its own session and outlives the snapshotter, so running containers keep reading). */
#ifndef SNAP_MOUNTD_H
#define SNAP_MOUNTD_H

#include <sys/types.h>

#include "cf/error.h"

typedef struct snap_mountd {
    char *bin, *mnt, *sock, *pidfile, *log;
    pid_t pid;
    int pidfd;    /* readable once the daemon has exited; -1 when none */
    int is_child; /* started by this process: reap it */
} snap_mountd;

int snap_mountd_init(snap_mountd *d, const char *bin, const char *root, cf_err *err);
void snap_mountd_fini(snap_mountd *d); /* forgets the daemon, leaves it running */

/* Nonzero while the daemon runs. */
int snap_mountd_alive(snap_mountd *d);
/* Adopts a running daemon (pid file + API answering) or starts one (a dead one's mount is
 * detached first). Returns 0 when adopted, 1 when started (images must be re-attached). */
int snap_mountd_ensure(snap_mountd *d, cf_err *err);

/* POST /api/v1/mount?mountpoint=/<name>. -EEXIST when that name is already attached. */
int snap_mountd_attach(snap_mountd *d, const char *name, const char *bootstrap,
                       const char *config_json, cf_err *err);
/* DELETE /api/v1/mount?mountpoint=/<name>; -ENOENT when not attached. */
int snap_mountd_detach(snap_mountd *d, const char *name, cf_err *err);
/* PUT /api/v1/config?id=/<name> with {"registry_auth": b64}: renewed credentials. */
int snap_mountd_set_auth(snap_mountd *d, const char *name, const char *auth_b64, cf_err *err);

#endif
