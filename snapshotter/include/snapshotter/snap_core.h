/* The snapshotter core: containerd's snapshot model (active, view and committed snapshots in
 * parent chains, stored in LMDB) on overlayfs, plus Nydus images: data layers become remote
 * snapshots at once, and a container over a Nydus image gets an overlay whose lower directory
 * is that image's RAFS instance in the shared chunkfly-mount (snap_mountd.h).
 *
 * Threads: every snap_core_* call may block (LMDB, the file system, the mount daemon's API), so
 * front ends call them from the thread pool. Calls are serialised by one mutex inside the core.
 *
 * Errors: 0 or a negative errno with `err` set to a message: -ENOENT no such snapshot (or
 * parent), -EEXIST key taken (Prepare of a Nydus data layer answers -EEXIST on purpose: the
 * remote snapshot is committed under the target name, as containerd expects), -EINVAL bad
 * argument, -EBUSY the snapshot has children / is not active, others for I/O failures. */
#ifndef SNAP_CORE_H
#define SNAP_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

enum snap_kind { SNAP_UNKNOWN = 0, SNAP_VIEW = 1, SNAP_ACTIVE = 2, SNAP_COMMITTED = 3 };

typedef struct snap_kv {
    char *k, *v;
} snap_kv;

/* One snapshot. Every string is malloc'd and owned by the record (snap_rec_free). */
typedef struct snap_rec {
    uint64_t id; /* names its directory ROOT/snapshots/<id> */
    char *name;  /* containerd's key */
    char *parent;
    int kind;
    int64_t created_s, updated_s;
    int32_t created_ns, updated_ns;
    snap_kv *labels;
    size_t n_labels;
    int64_t size, inodes; /* committed: measured at commit */
} snap_rec;

void snap_rec_free(snap_rec *r); /* frees the fields, not r */
const char *snap_rec_label(const snap_rec *r, const char *key);

/* One mount for containerd (bind or overlay). */
#define SNAP_MAX_OPTS 8
typedef struct snap_mount {
    char type[16];
    char *source;
    char *options[SNAP_MAX_OPTS];
    size_t n_options;
} snap_mount;
void snap_mount_free(snap_mount *m);

typedef struct snap_core snap_core;

typedef struct snap_core_opts {
    const char *root;              /* state directory (created) */
    const char *mount_bin;         /* chunkfly-mount executable */
    const char *fs_driver;         /* "fuse" (default) or "erofs" */
    const char *peer_socket;       /* local peer's API socket, or NULL: registry directly */
    const char *docker_config;     /* NULL: $DOCKER_CONFIG/config.json or ~/.docker/config.json */
    const char *const *plain_http; /* NULL-terminated HOST:PORT list spoken to over http */
    int supervise;                 /* restart chunkfly-mount when it dies (needs snap_core_poll) */
} snap_core_opts;

/* Opens (or creates) the state under opts->root. Strings in opts are copied. */
int snap_core_open(const snap_core_opts *opts, snap_core **out, cf_err *err);
void snap_core_close(snap_core *c); /* leaves chunkfly-mount running: containers keep reading */

/* Called after open: adopt or restart chunkfly-mount and re-attach the images that snapshots
 * use, so a restarted snapshotter serves running and new containers. FUSE mode also starts (or
 * adopts) the shared daemon now, images or not (a failure there is only logged). */
int snap_core_recover(snap_core *c, cf_err *err);

/* kind: SNAP_ACTIVE (Prepare) or SNAP_VIEW (View). */
int snap_core_prepare(snap_core *c, int kind, const char *key, const char *parent,
                      const snap_kv *labels, size_t n_labels, snap_mount *out, cf_err *err);
int snap_core_mounts(snap_core *c, const char *key, snap_mount *out, cf_err *err);
int snap_core_commit(snap_core *c, const char *name, const char *key, const snap_kv *labels,
                     size_t n_labels, cf_err *err);
int snap_core_remove(snap_core *c, const char *key, cf_err *err);
int snap_core_stat(snap_core *c, const char *key, snap_rec *out, cf_err *err);
/* paths: containerd's field mask ("labels", "labels.<key>"); none = replace all labels. */
int snap_core_update(snap_core *c, const char *key, const snap_kv *labels, size_t n_labels,
                     const char *const *paths, size_t n_paths, snap_rec *out, cf_err *err);
int snap_core_usage(snap_core *c, const char *key, int64_t *size, int64_t *inodes, cf_err *err);
/* Every snapshot; *out (n entries) is freed with snap_recs_free. */
int snap_core_list(snap_core *c, snap_rec **out, size_t *n, cf_err *err);
void snap_recs_free(snap_rec *r, size_t n);
/* Deletes directories and cache files no snapshot owns; detaches unused images. */
int snap_core_cleanup(snap_core *c, cf_err *err);

/* Supervision step (thread pool, every second or when the daemon's pidfd fires): restarts a
 * dead chunkfly-mount and re-attaches its images. Returns 1 when it restarted it. */
int snap_core_check_mountd(snap_core *c, cf_err *err);

/* Counters for /metrics. */
typedef struct snap_core_stats {
    uint64_t snapshots, images_attached, mountd_restarts, attach_total, attach_errors;
    uint64_t attach_ns_total; /* sum of attach latencies */
    uint64_t errors;
} snap_core_stats;
void snap_core_get_stats(snap_core *c, snap_core_stats *out);

#endif
