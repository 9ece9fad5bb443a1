/* chunkfly-mount's FUSE filesystem (libfuse3 low level, multithreaded): serves RAFS images
 * read-only, their file bytes through a mount_blob_cache.
 *
 * Modes: dedicated (one image at the mount's root, as `nydusd --bootstrap`) or shared (the
 * root is a directory whose entries are the attached images, each at /<name>, as nydusd's
 * shared daemon with `POST /api/v1/mount?mountpoint=/<name>`).
 *
 * What the kernel sees: inode numbers (st_ino) are the images' nids (stable across mounts);
 * the hard links of a file share one inode; modes, owners (uid/gid as stored, as the kernel's
 * EROFS shows them), times, device numbers, symlink targets and xattrs come from the image; all
 * writes fail with EROFS (mounted "ro"); the image is immutable, so entry/attr timeouts are
 * long and the page cache is kept across opens. FUSE node ids: 1 = the root; otherwise
 * (slot << 56) | (nid + 2) where slot is the image's attach slot.
 *
 * Threads: mount_fs_run() serves requests on up to `max_threads` threads. mount_fs_attach /
 * mount_fs_detach may be called from any thread while it runs (shared mode).
 * Ownership: attach takes the image, its cache and an owner object (also on failure); the fs
 * frees them on detach or mount_fs_free(). Errors: 0 or a negative errno with a message. */
#ifndef MOUNT_FUSE_FS_H
#define MOUNT_FUSE_FS_H

#include <stdbool.h>
#include <stdint.h>

#include "cf/error.h"
#include "mount/blob_cache.h"
#include "rafs/reader.h"

typedef struct mount_fs mount_fs;

struct mount_fs_opts {
    bool shared; /* root lists attached images */
    /* Blob devices (kernel-EROFS mode): instead of the image's tree, the root holds one
     * read-only regular file per data blob of the (dedicated) image, named by blob id, whose
     * bytes are the blob's uncompressed address space (mount_blob_cache_read_blob): the
     * `device=` files the kernel's EROFS reads. */
    bool blob_devices;
    bool enable_xattr; /* serve xattrs (else none are listed) */
    double timeout_s;  /* entry/attr/negative-entry timeout; 0 = 1 day */
};

int mount_fs_new(const struct mount_fs_opts *o, mount_fs **out, cf_err *err);

/* Attaches an image: in dedicated mode `name` is NULL and only one image may be attached; in
 * shared mode `name` is one path component (what follows the '/' of the API's mountpoint).
 * `release(owner)` (may be NULL) runs after the image and cache are freed: whatever they
 * depend on (the backend their blob sources came from) is released there. On failure, img,
 * cache and owner are released at once too. -EEXIST when the name (or, dedicated, the root)
 * is taken, -ENOSPC when 255 images are attached, -EINVAL for a bad name. */
typedef void (*mount_fs_release_fn)(void *owner);
int mount_fs_attach(mount_fs *fs, const char *name, rafs_image *img, mount_blob_cache *cache,
                    mount_fs_release_fn release, void *owner, cf_err *err);
/* Detaches (waits for requests on it to end). -ENOENT when not attached. */
int mount_fs_detach(mount_fs *fs, const char *name, cf_err *err);

/* Visits every attached image (name "" in dedicated mode), under a read lock. */
typedef void (*mount_fs_visit_fn)(const char *name, const rafs_image *img,
                                  const mount_blob_cache *cache, void *owner, void *ctx);
void mount_fs_foreach(mount_fs *fs, mount_fs_visit_fn fn, void *ctx);

struct mount_fs_mount_opts {
    bool allow_other;
    unsigned max_threads; /* 0 = libfuse default (10) */
    const char *fsname;   /* shown in /proc/mounts; NULL = "chunkfly" */
    /* The mount's readahead (its bdi's read_ahead_kb), set once the kernel's INIT is done: the
     * kernel caps a FUSE mount at 128 KiB, a disk usually reads ahead far more, and sequential
     * reads then go in 128 KiB requests one after another. 0 = leave the kernel's value. */
    unsigned read_ahead_kb;
};
/* Mounts the filesystem at `mountpoint` (a FUSE mount of type fuse.rafs). */
int mount_fs_mount(mount_fs *fs, const char *mountpoint, const struct mount_fs_mount_opts *o,
                   cf_err *err);
/* Serves requests until mount_fs_stop() or an external umount. Returns 0 or a negative errno.
 * Installs a no-op SIGUSR2 handler (mount_fs_stop wakes this thread with it). */
int mount_fs_run(mount_fs *fs);
/* Ends mount_fs_run() and returns once it has (at most ~5 s); any thread except the one in
 * mount_fs_run(), not from a signal handler (the tool waits for signals in a thread). */
void mount_fs_stop(mount_fs *fs);
/* Unmounts (after mount_fs_run has returned); mount_fs_free does it too. */
void mount_fs_unmount(mount_fs *fs);
/* Unmounts (if mounted) and frees everything, attached images included. NULL-safe. */
void mount_fs_free(mount_fs *fs);

/* Lazily detaches a dead FUSE mount at `path` (left by a killed daemon: stat fails with
 * ENOTCONN). Returns 1 when one was cleaned, 0 when there was none, or a negative errno. */
int mount_fs_clean_stale(const char *path, cf_err *err);

#endif
