/* What the snapshotter knows of Nydus images (private to the core): the labels containerd
 * passes, the nydusd config handed to chunkfly-mount for an image, the blob ids an image
 * reads and their cache files. */
#ifndef SNAP_NYDUS_H
#define SNAP_NYDUS_H

#include <stddef.h>

#include "snapshotter/snap_core.h"

/* Set by containerd's unpacker on every layer (the chain id the layer commits to). */
#define SNAP_LABEL_REF "containerd.io/snapshot.ref"
/* Layer annotations of Nydus images (nydusify, chunkfly convert), inherited as labels. */
#define SNAP_LABEL_NYDUS_BLOB      "containerd.io/snapshot/nydus-blob"
#define SNAP_LABEL_NYDUS_BOOTSTRAP "containerd.io/snapshot/nydus-bootstrap"
/* The image reference: from `ctr-remote images rpull` and from CRI. */
#define SNAP_LABEL_STARGZ_REF "containerd.io/snapshot/remote/stargz.reference"
#define SNAP_LABEL_CRI_REF    "containerd.io/snapshot/cri.image-ref"
/* The layer's digest, from the same two sources. */
#define SNAP_LABEL_STARGZ_DIGEST "containerd.io/snapshot/remote/stargz.digest"
#define SNAP_LABEL_CRI_DIGEST    "containerd.io/snapshot/cri.layer-digest"

typedef struct snap_nydus_opts {
    char *cache_dir, *peer_socket, *docker_config;
    char **plain_http; /* NULL-terminated */
} snap_nydus_opts;

int snap_nydus_opts_init(snap_nydus_opts *o, const snap_core_opts *co, const char *cache_dir,
                         cf_err *err);
void snap_nydus_opts_fini(snap_nydus_opts *o);

/* The nydusd v1 JSON config for the image of bootstrap snapshot `boot` (registry backend from
 * its reference label, credentials from docker config.json, the local peer as proxy, the
 * shared blob cache). *out is malloc'd. -EINVAL when the labels name no image. */
int snap_nydus_config(const snap_nydus_opts *o, const snap_rec *boot, char **out, cf_err *err);

/* The base64 "user:password" that docker config.json holds for the registry of boot's image,
 * or *out = NULL when it holds none (read anew on every call: credentials get renewed). */
int snap_nydus_auth(const snap_nydus_opts *o, const snap_rec *boot, char **out, cf_err *err);

/* For a Nydus data layer about to become a remote snapshot: -ENOENT with a message when the
 * registry says (HEAD 404) that the layer's blob does not exist, so the pull fails at once
 * instead of the container's reads later. 0 when it exists, when the labels do not say which
 * image and layer it is, or when the registry cannot be asked (logged: the peer may have it). */
int snap_nydus_check_blob(const snap_nydus_opts *o, const snap_kv *labels, size_t n, cf_err *err);

/* The blob ids in a bootstrap's blob table (malloc'd strings in a malloc'd array). */
int snap_nydus_blob_ids(const char *bootstrap, char ***ids, size_t *n, cf_err *err);

/* Deletes the cache files of one blob (<id>, <id>.blob.data, .chunk_map, .blob.meta...). */
void snap_nydus_drop_cache(const snap_nydus_opts *o, const char *blob_id);

#endif
