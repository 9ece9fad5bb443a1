/* OCI image model: parsers of untrusted registry documents and the Nydus view of an image.
 *
 * Documents: OCI image manifest and Docker v2 schema 2 manifest (proto_oci_manifest), OCI image
 * index and Docker manifest list (proto_oci_index), image config (proto_oci_config). Selecting
 * a platform's manifest from an index, and the Nydus view of a manifest (which layer is the
 * bootstrap, which are data blobs, the RAFS version), with the refusals a reader needs.
 * Used by `chunkfly-mount --image`; written to serve the converter and the snapshotter too.
 *
 * Threads: pure functions over caller-owned memory, no global state; thread-safe.
 * Ownership: a parsed document owns every string and array it points to (malloc'd); free it
 * with its *_free function, which is safe on a zeroed struct and leaves the struct zeroed.
 * Descriptors inside a document point into it and live as long as it does; a proto_nydus_view
 * points into the manifest it was made from.
 * Bounds: documents over PROTO_OCI_DOC_MAX bytes are refused (-EFBIG); every array and string
 * has a cap below (over it: -EBADMSG naming the field); digests must be "sha256:<64 lowercase
 * hex>" (they end up in URLs and file names); sizes are integers in [0, 2^62].
 * Errors: 0 or a negative errno, with `err` (may be NULL) saying what and where:
 *   -EBADMSG     not JSON, wrong types, missing required fields, a bad digest, over a cap
 *   -EFBIG       document over PROTO_OCI_DOC_MAX
 *   -ENOTSUP     a recognised but unsupported thing: Docker schema 1 manifests, digests other
 *                than sha256, and in the Nydus view RAFS v5, zran (`--oci-ref`) and encrypted
 *                images (the message names it)
 *   -EMEDIUMTYPE the document is valid but not what was asked for: an index where a manifest
 *                was expected (or the reverse), or (Nydus view) an image that is not Nydus
 *   -ENOENT      no index entry for the wanted platform (the message lists what there is)
 *   -ENOMEM
 */
#ifndef PROTO_OCI_MODEL_H
#define PROTO_OCI_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- media types and annotation keys ---- */
#define PROTO_OCI_MT_MANIFEST     "application/vnd.oci.image.manifest.v1+json"
#define PROTO_OCI_MT_INDEX        "application/vnd.oci.image.index.v1+json"
#define PROTO_OCI_MT_CONFIG       "application/vnd.oci.image.config.v1+json"
#define PROTO_OCI_MT_LAYER_GZIP   "application/vnd.oci.image.layer.v1.tar+gzip"
#define PROTO_DOCKER_MT_MANIFEST  "application/vnd.docker.distribution.manifest.v2+json"
#define PROTO_DOCKER_MT_LIST      "application/vnd.docker.distribution.manifest.list.v2+json"
#define PROTO_DOCKER_MT_CONFIG    "application/vnd.docker.container.image.v1+json"
#define PROTO_DOCKER_MT_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define PROTO_NYDUS_MT_BLOB       "application/vnd.oci.image.layer.nydus.blob.v1"
#define PROTO_NYDUS_MT_CONFIG     "application/vnd.nydus.image.config.v1+json"
#define PROTO_NYDUS_ARTIFACT_TYPE "application/vnd.nydus.image.manifest.v1+json"
#define PROTO_NYDUS_OS_FEATURE    "nydus.remoteimage.v1"
#define PROTO_NYDUS_ANN_BOOTSTRAP "containerd.io/snapshot/nydus-bootstrap"
#define PROTO_NYDUS_ANN_BLOB      "containerd.io/snapshot/nydus-blob"
#define PROTO_NYDUS_ANN_FS_VER    "containerd.io/snapshot/nydus-fs-version"
#define PROTO_NYDUS_ANN_REF       "containerd.io/snapshot/nydus-ref" /* zran: data in OCI layer */
#define PROTO_NYDUS_ANN_ENCRYPTED "containerd.io/snapshot/nydus-encrypted-blob"

/* ---- caps ---- */
#define PROTO_OCI_DOC_MAX         (4u << 20) /* == PROTO_MANIFEST_MAX */
#define PROTO_OCI_MAX_ENTRIES     4096       /* layers, index entries, diff_ids */
#define PROTO_OCI_MAX_ANNOTATIONS 256        /* per descriptor or document */
#define PROTO_OCI_MAX_STRING      4096       /* an annotation key or value */

typedef struct proto_oci_kv {
    char *key, *value; /* owned by the document */
} proto_oci_kv;

/* Platform (index entries, image config). Empty strings when absent. */
typedef struct proto_oci_platform {
    char os[32];           /* "linux" */
    char arch[32];         /* GOARCH names: "amd64", "arm64", "arm" */
    char variant[16];      /* "v7", "v8", "" */
    char os_version[64];
    int nydus_feature;     /* os.features lists "nydus.remoteimage.v1" */
} proto_oci_platform;

typedef struct proto_oci_desc {
    char media_type[128];
    char digest[72]; /* "sha256:<64 hex>" */
    uint64_t size;
    char artifact_type[128]; /* "" when absent */
    int has_platform;
    proto_oci_platform platform;
    size_t n_annotations;
    proto_oci_kv *annotations; /* owned by the document */
} proto_oci_desc;

/* The value of annotation `key` of d, or NULL. */
const char *proto_oci_desc_annotation(const proto_oci_desc *d, const char *key);

/* What a manifest-endpoint document is: from the body's "mediaType", else `content_type` (may
 * be NULL; parameters after ';' ignored), else its shape ("manifests" vs "layers"). */
enum proto_oci_kind { PROTO_OCI_KIND_MANIFEST = 1, PROTO_OCI_KIND_INDEX = 2 };
int proto_oci_kind_of(const void *body, size_t len, const char *content_type,
                      enum proto_oci_kind *kind, cf_err *err);

typedef struct proto_oci_manifest {
    char media_type[128]; /* as given, or the one implied by content type/shape */
    int docker;           /* 1: Docker v2 schema 2 */
    char artifact_type[128];
    proto_oci_desc config;
    size_t n_layers;
    proto_oci_desc *layers; /* base first */
    int has_subject;
    proto_oci_desc subject;
    size_t n_annotations;
    proto_oci_kv *annotations;
} proto_oci_manifest;

/* Parses an image manifest (OCI or Docker schema 2). An index gives -EMEDIUMTYPE, schema 1
 * -ENOTSUP. */
int proto_oci_manifest_parse(const void *body, size_t len, const char *content_type,
                             proto_oci_manifest *out, cf_err *err);
void proto_oci_manifest_free(proto_oci_manifest *m);

typedef struct proto_oci_index {
    char media_type[128];
    int docker; /* 1: Docker manifest list */
    size_t n_manifests;
    proto_oci_desc *manifests;
    size_t n_annotations;
    proto_oci_kv *annotations;
} proto_oci_index;

/* Parses an OCI index or Docker manifest list. A manifest gives -EMEDIUMTYPE. */
int proto_oci_index_parse(const void *body, size_t len, const char *content_type,
                          proto_oci_index *out, cf_err *err);
void proto_oci_index_free(proto_oci_index *ix);

/* The platform this process runs on: linux (the OS we build for) and the GOARCH name of the
 * compile-time architecture (amd64, arm64, arm/v7, 386, ppc64le, s390x, riscv64). */
void proto_oci_platform_host(proto_oci_platform *out);
/* "os/arch[/variant]" -> platform. -EINVAL on a malformed string. */
int proto_oci_platform_parse(const char *s, proto_oci_platform *out, cf_err *err);
/* "os/arch[/variant]" into buf (always NUL-terminated). */
void proto_oci_platform_str(const proto_oci_platform *p, char *buf, size_t size);

/* Selection flags */
#define PROTO_OCI_SELECT_NYDUS 0x1u /* among matches, prefer a Nydus manifest (artifactType
                                       or os.features, as nydusify --merge-platform marks it) */

/* Picks the entry of `ix` for platform `want` (NULL = host): os and arch must match, and the
 * variant when `want` has one (arm64 treats "" and "v8" alike; an entry without variant
 * matches any wanted variant as a last resort). Entries that are not manifests are skipped.
 * *out points into ix. -ENOENT (listing the platforms present) when none fits. */
int proto_oci_index_select(const proto_oci_index *ix, const proto_oci_platform *want,
                           unsigned flags, const proto_oci_desc **out, cf_err *err);

/* Image config: platform and rootfs.diff_ids (the rest is ignored). */
typedef struct proto_oci_config {
    proto_oci_platform platform; /* os, architecture, variant, os.version */
    size_t n_diff_ids;
    char (*diff_ids)[72]; /* owned; "sha256:<hex>" each */
} proto_oci_config;
int proto_oci_config_parse(const void *body, size_t len, proto_oci_config *out, cf_err *err);
void proto_oci_config_free(proto_oci_config *c);

/* ---- the Nydus view of a manifest ----
 * Bootstrap layer: the last layer annotated nydus-bootstrap "true"; failing that (images whose
 * annotations were lost), the last layer when it is a gzip tar layer (OCI or Docker) and the
 * others are Nydus blobs, as nydus-snapshotter and nydusify look for it (topmost layer).
 * Data blobs: the layers with the Nydus blob media type or the nydus-blob annotation, in
 * manifest order (a blob's digest hex is its RAFS blob id).
 * Refused: no bootstrap (-EMEDIUMTYPE "not a Nydus image"), fs version "5" (-ENOTSUP, RAFS
 * v5), zran (-ENOTSUP: a layer has nydus-ref, data stays in the OCI layers), encrypted blobs
 * (-ENOTSUP). The bootstrap's own magic is checked by its reader. */
typedef struct proto_nydus_view {
    const proto_oci_desc *bootstrap; /* points into the manifest */
    int fs_version;                  /* from the annotation: 6, or 0 when not annotated */
    size_t n_blobs;
    const proto_oci_desc **blobs; /* owned array of pointers into the manifest */
} proto_nydus_view;
int proto_nydus_view_get(const proto_oci_manifest *m, proto_nydus_view *out, cf_err *err);
void proto_nydus_view_free(proto_nydus_view *v);

#ifdef __cplusplus
}
#endif

#endif
