/* The chunkfly-mount daemons the snapshotter starts and supervises (private to the core).
 * FUSE mode: one shared daemon, DIR = the root; its FUSE mount at DIR/mnt holds every attached
 * image under /<name>. EROFS mode: one daemon per image, DIR = ROOT/erofs/<id>; the kernel's
 * EROFS mount of the image is DIR/mnt. Either way the HTTP API is on DIR/mount.sock and the pid
 * in DIR/mount.pid, so a restarted snapshotter adopts the daemon (it runs in its own session
 * and outlives the snapshotter: running containers keep reading). */
#ifndef SNAP_MOUNTD_H
#define SNAP_MOUNTD_H

#include <sys/types.h>

#include "cf/error.h"

typedef struct snap_mountd {
    char *bin, *dir, *mnt, *sock, *pidfile, *log;
    char *config_file; /* EROFS mode: DIR/config.json, written by the caller before ensure */
    char *bootstrap;   /* EROFS mode: the image's bootstrap */
    int erofs;
    pid_t pid;
    int pidfd;    /* readable once the daemon has exited; -1 when none */
    int is_child; /* started by this process: reap it */
    int fuse_fd;  /* FUSE mode: our duplicate of its /dev/fuse (snap_fuse_guard.h), or -1 */
} snap_mountd;

/* bootstrap: NULL for the shared FUSE daemon, the image's bootstrap for an EROFS one. */
int snap_mountd_init(snap_mountd *d, const char *bin, const char *dir, const char *bootstrap,
                     cf_err *err);
void snap_mountd_fini(snap_mountd *d); /* forgets the daemon, leaves it running */

/* Nonzero while the daemon runs. */
int snap_mountd_alive(snap_mountd *d);
/* Adopts a running daemon (pid file + API answering) or starts one (a dead one's mount is
 * detached first). Returns 0 when adopted, 1 when started (images must be re-attached). */
int snap_mountd_ensure(snap_mountd *d, cf_err *err);

/* Stops the daemon (SIGTERM, then SIGKILL after 5 s): an EROFS daemon unmounts its image. */
void snap_mountd_stop(snap_mountd *d);

/* POST /api/v1/mount?mountpoint=/<name>. -EEXIST when that name is already attached. */
int snap_mountd_attach(snap_mountd *d, const char *name, const char *bootstrap,
                       const char *config_json, cf_err *err);
/* DELETE /api/v1/mount?mountpoint=/<name>; -ENOENT when not attached. */
int snap_mountd_detach(snap_mountd *d, const char *name, cf_err *err);
/* PUT /api/v1/config?id=/<name> with {"registry_auth": b64}: renewed credentials. */
int snap_mountd_set_auth(snap_mountd *d, const char *name, const char *auth_b64, cf_err *err);

#endif
