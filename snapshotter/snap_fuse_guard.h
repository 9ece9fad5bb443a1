/* The FUSE connection guard (private to the core). When a FUSE daemon dies, the kernel aborts
 * its connection and every reader gets ENOTCONN. The snapshotter keeps a duplicate of the
 * daemon's /dev/fuse descriptor (pidfd_getfd), so the connection outlives the daemon; once the
 * daemon is gone, a thread asks the kernel to queue again what the dead daemon had taken
 * (FUSE_NOTIFY_RESEND, Linux 6.9+) and answers every request with EIO until the last user of
 * the old mount is gone. Containers reading through a killed chunkfly-mount thus get EIO at
 * once, never a hang. */
#ifndef SNAP_FUSE_GUARD_H
#define SNAP_FUSE_GUARD_H

#include <sys/types.h>

/* A duplicate of process pidfd's /dev/fuse descriptor, or a negative errno. */
int snap_fuse_guard_grab(int pidfd, pid_t pid);
/* The daemon is dead: serve EIO on fd (taken over; closed when the connection ends). */
void snap_fuse_guard_start(int fd);

#endif
