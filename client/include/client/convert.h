/* Registry-to-registry conversion of an OCI/Docker image into a Nydus (RAFS v6) image, as
 * `nydusify convert` does (docs/convert.md; the packaging is ../shared/docs/nydus-format.md §5
 * and runtime-contracts.md §3).
 *
 * Flow: the source manifest (an index: each platform in turn, see merge_platform), then per layer:
 * the compressed layer is streamed to a file in the work dir (gzip, zstd or plain tar: libarchive
 * reads them), built into a Nydus blob + layer bootstrap with the RAFS builder (rafs_create;
 * blob-inline-meta, blob-toc, whiteouts kept for the merge), the blob pushed unless the target
 * has it; then the bootstraps are merged (whiteouts and opaque dirs applied), the bootstrap
 * layer (deterministic gzip tar of image/ + image/image.boot) and the config (diff_ids = blob
 * digests + the bootstrap tar's uncompressed digest, one more history entry) are pushed, and
 * the manifest last (an index after its manifests): an error before that publishes nothing.
 * Memory: `workers` layers are processed at a time (a layer's upload overlaps the next one's
 * download and build); layer and blob bytes go through files, never held whole in memory
 * (each builder's chunk pipeline and the upload's pread are bounded).
 * Re-runs: <work_dir>/cache/ maps a source layer digest (and the build options) to its blob
 * digest and keeps the layer bootstrap, so a layer converted before is not rebuilt: the target
 * is asked (HEAD) and the blob is mounted from the repository it was pushed to, or rebuilt
 * only when neither has it.
 * Threads: one conversion per call, blocking; the call starts workers - 1 threads (and the
 * builders' compression threads) and joins them before returning.
 * Errors: 0 or a negative errno with `err` naming the step, the layer and the registry. */
#ifndef CLIENT_CONVERT_H
#define CLIENT_CONVERT_H

#include <stdint.h>

#include "cf/error.h"
#include "proto/registry_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct client_convert_opts {
    const char *source, *target; /* image references ("host:port/repo:tag") */
    /* "os/arch[/variant]": the one platform taken from an index; NULL = every platform */
    const char *platform;
    int source_insecure, target_insecure; /* skip TLS verification (loopback is plain http) */
    const char *docker_config;            /* credentials; NULL = the default docker config */
    const char *work_dir;                 /* required: layer/blob files and the cache */
    const char *compressor;               /* "zstd" (default), "lz4_block", "none" */
    uint32_t chunk_size;                  /* 0 = 1 MiB; power of two 4 KiB .. 16 MiB */
    unsigned threads; /* builder compression threads per layer; 0 = one per core */
    unsigned workers; /* layers converted at the same time; 0 = 2, at most 16 */
    /* One line per step (layer built/cached/pushed), from the calling thread or a layer
     * worker, never two at once; may be NULL. */
    void (*progress)(void *ctx, const char *line);
    void *progress_ctx;
    /* The live state of the layers in flight, for a terminal's status line ("layers 1/5 done;
     * 2: downloading 40.1/200.0 MiB; 3: building, blob 12.0 MiB"): called on every layer step
     * and every 0.5 s while layers convert, from a layer worker or a ticker thread, never two
     * at once nor together with `progress`; line NULL: the layers are done, clear it. Gets
     * progress_ctx. May be NULL. */
    void (*status)(void *ctx, const char *line);
    /* An index source is converted platform by platform (every image manifest, or only
     * `platform`'s) and a target index pushed after its manifests. merge_platform: that index
     * also lists the original manifests, the Nydus ones marked (artifactType, config media type
     * and platform os.features "nydus.remoteimage.v1"), as nydusify --merge-platform; it needs
     * an index source. Without it and with `platform`, an index gives one Nydus manifest. */
    int merge_platform;
    /* The merged bootstrap's prefetch table: absolute paths (NULL-terminated; a path not in
     * the image is skipped with a warning). NULL or empty = "/" (the whole image), as nydusify
     * feeds nydus-image merge when --prefetch-patterns gives nothing. */
    const char *const *prefetch;
    /* with_referrer: each Nydus manifest gets `subject` = its source manifest's descriptor
     * (mediaType, digest, size; no platform), as nydusify --with-referrer. oci: a Docker
     * source's manifest, config, bootstrap layer and manifest list get OCI media types in
     * the target (nydusify --oci); without it Docker stays Docker, OCI stays OCI. */
    int with_referrer, oci;
    /* nydusify --chunk-dict: "bootstrap:registry:REF" (a Nydus image: its bootstrap, for an
     * index the host's platform or `platform`), "bootstrap:local:PATH" or "bootstrap:PATH" (a
     * bootstrap file whose blobs the target repository already holds). Chunks found in it
     * are not stored again; the dictionary blobs the image uses become layers of the target
     * manifest (after the image's blobs), copied or mounted into the target repository
     * (REF's blobs) when missing. NULL = none. */
    const char *chunk_dict;
} client_convert_opts;

typedef struct client_convert_result {
    char manifest_digest[72];       /* the pushed Nydus manifest */
    unsigned layers, built, cached; /* source layers; rebuilt; reused from the cache */
    unsigned blobs_pushed, blobs_present, blobs_mounted;
    uint64_t source_bytes; /* compressed source layers */
    uint64_t target_bytes; /* Nydus blobs + bootstrap layer */
    uint64_t pushed_bytes; /* bytes actually uploaded */
    uint32_t dict_chunks;  /* chunks of built layers found in the chunk dictionary */
    uint64_t dict_bytes;   /* their uncompressed bytes, not stored again */
    uint32_t dedup_chunks; /* chunks of built layers stored once within their layer's blob */
    uint64_t dedup_bytes;  /* their uncompressed bytes, not stored again */
    double seconds;
    unsigned platforms; /* image manifests converted (1 unless the source is an index) */
} client_convert_result;

int client_convert(const client_convert_opts *o, client_convert_result *res, cf_err *err);

/* `chunkfly check SOURCE TARGET` (check.c): TARGET is a well-formed Nydus image of SOURCE.
 *  - structure: every layer but the last a Nydus blob layer (media type, nydus-blob "true"),
 *    the last the bootstrap layer (gzip tar, nydus-bootstrap "true", fs version "6"), config
 *    diff_ids = the blob digests + the bootstrap tar's uncompressed digest;
 *  - bootstrap: every blob of its table is a layer of the manifest and present (fetched with
 *    its digest checked), every chunk read and checked against its digest (rafs_unpack);
 *  - tree: the target's filesystem equals the source's layers applied in order (OCI
 *    whiteouts and opaque dirs): type, mode bits, owner, size and content sha256, symlink
 *    target, device numbers, xattrs, hard-link groups (mtimes are not compared).
 * Problems found are reported through `progress` ("PROBLEM: ...", the first 20) and counted;
 * the call then fails with -EBADMSG. Other errors (registry, download) as client_convert.
 * Memory: both trees' metadata (not file contents) are held; files go to WORK/check. */
typedef struct client_check_opts {
    const char *source, *target, *platform;
    int source_insecure, target_insecure;
    const char *docker_config, *work_dir;
    void (*progress)(void *ctx, const char *line);
    void *progress_ctx;
} client_check_opts;

typedef struct client_check_result {
    unsigned blobs;    /* data blobs fetched and checked */
    uint64_t entries;  /* entries of the target tree */
    unsigned problems; /* differences and packaging faults found */
    double seconds;
} client_check_result;

int client_check(const client_check_opts *o, client_check_result *res, cf_err *err);

/* `chunkfly convert --all REGISTRY` (convert_all.c): what a registry holds to convert.
 * Walks the catalog and each repository's tags (proto/registry_catalog.h), keeps the
 * repositories matching repo_filter (POSIX extended regex, unanchored; NULL = all), drops tags
 * ending in suffix (targets), keeps the refs of shard `shard` of `shards` (a ref "repo:tag"
 * belongs to shard sha256("repo:tag")'s first 8 bytes, big-endian, mod shards: disjoint shards
 * covering the catalog, stable across runs and machines), and marks a ref done when its target
 * (same repository, tag + suffix) exists and records the source's manifest digest in
 * containerd.io/snapshot/nydus-source-digest (a manifest's or an index's annotations).
 * Threads: blocking; one call per thread. Errors: as client_convert (registry, -EINVAL for a
 * bad regex or shard). The list is malloc'd: free(*out). */
typedef struct client_convert_all_opts {
    const char *registry;    /* "host[:port]" */
    const char *repo_filter; /* regex on repository names, NULL = every repository */
    const char *suffix;      /* target tag suffix; NULL = "-nydus" */
    unsigned shard, shards;  /* shard index in [0, shards); shards 0 = 1 */
    int insecure;
    const char *docker_config;
} client_convert_all_opts;

typedef struct client_convert_ref {
    char repo[256], tag[129], target_tag[129];
    char source_digest[72]; /* the source's manifest (or index) digest */
    int done;               /* the target records this source digest: nothing to do */
} client_convert_ref;

int client_convert_all_list(const client_convert_all_opts *o, client_convert_ref **out, size_t *n,
                            cf_err *err);
/* The shard of "repo:tag" among shards (> 0). */
unsigned client_convert_shard_of(const char *repo, const char *tag, unsigned shards);

/* "Converted before?" in two halves, for `--all` and chunkfly-convertd (blocking, 0 or a
 * negative errno as registry_client.h):
 * the digest client_convert records in nydus-source-digest for the source `ref` converted with
 * `platform`: the source's manifest or index digest, or with `platform` and an index source,
 * that platform's manifest digest; */
int client_convert_source_digest(proto_registry *r, const proto_image_ref *ref,
                                 const char *platform, char out[72], cf_err *err);
/* and the digest a target (repo:reference, a Nydus manifest or index) records, "" when the
 * target is absent, unreadable or records none. */
int client_convert_recorded_source(proto_registry *r, const char *repo, const char *reference,
                                   char out[72], cf_err *err);

#ifdef __cplusplus
}
#endif

#endif
