/* RAFS v6 image builder: the in-memory filesystem tree, the streaming data-blob writer and the
 * bootstrap writer behind `chunkfly-image create` and `merge`.
 *
 * Flow of `create`: a source (tar via libarchive, or a directory) adds nodes to a rafs_tree and
 * streams each regular file's bytes into a rafs_blob_writer, which cuts chunks, digests and
 * compresses them on a small thread pool (bounded number of in-flight chunks, output order
 * preserved) and appends them to the blob fd sequentially (never seeks, so the fd may be a
 * FIFO). rafs_blob_writer_finish() writes the blob tail (ci array + header, optional tar
 * headers, blob.digest, inline bootstrap, TOC). rafs_bootstrap_build() lays out the tree as an
 * EROFS image. Memory: chunk buffers are bounded; metadata grows with the number of files.
 *
 * Errors: 0 or negative errno (-EINVAL bad option/input, -EBADMSG malformed source, -EIO,
 * -ENOMEM, -ENOTSUP unsupported feature, -ENAMETOOLONG), with a message in `cf_err`.
 * Threads: none of these objects is thread-safe; the blob writer owns its worker threads. */
#ifndef RAFS_BUILDER_H
#define RAFS_BUILDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "cf/error.h"
#include "rafs/ondisk.h"

/* ---- In-memory tree (fs_tree.c) ---------------------------------------------------------- */
struct rafs_xattr {
    char *name; /* full name, e.g. "security.capability" */
    uint8_t *value;
    size_t value_len;
};

/* One stored chunk of a data blob (one bootstrap chunk-table record). */
struct rafs_chunk {
    uint8_t digest[32];
    uint32_t blob_index;
    uint32_t ci_index;
    uint32_t flags; /* RAFS_CHUNK_COMPRESSED */
    uint32_t compressed_size, uncompressed_size;
    uint64_t compressed_offset, uncompressed_offset, file_offset;
};

/* A growable chunk table with lookup by (digest, blob_index, uncompressed size). */
struct rafs_chunk_table {
    struct rafs_chunk *v;
    uint32_t n, cap;
    uint32_t *hash; /* open addressing, UINT32_MAX = empty */
    uint32_t hash_cap;
};
/* Appends a chunk; *idx receives its position. 0 / -ENOMEM / -EFBIG (too many chunks). */
int rafs_chunk_table_add(struct rafs_chunk_table *t, const struct rafs_chunk *c, uint32_t *idx);
struct rafs_chunk_ref;
/* The builder's chunk for a chunk read from an existing bootstrap (reader.h), in blob
 * blob_index of the new table (merge, chunk dictionaries). */
void rafs_chunk_from_ref(struct rafs_chunk *c, const struct rafs_chunk_ref *r, uint32_t blob_index);
/* Returns the index of a chunk with the same digest, blob and uncompressed size, or -1. */
int64_t rafs_chunk_table_find(const struct rafs_chunk_table *t, const uint8_t digest[32],
                              uint32_t blob_index, uint32_t uncompressed_size);
void rafs_chunk_table_free(struct rafs_chunk_table *t);

/* An inode: shared by every dirent of a hard-link group (refcount = number of dirents). */
struct rafs_inode {
    uint32_t mode, uid, gid;
    uint32_t rdev; /* Linux new_encode_dev() value */
    uint64_t mtime;
    uint32_t mtime_nsec;
    uint64_t size; /* regular: file size; symlink: target length */
    char *symlink; /* symlink target (NUL-terminated) */
    struct rafs_xattr *xattrs;
    size_t nxattrs;
    uint32_t *chunks; /* regular: ceil(size/chunk_size) indexes into the chunk table */
    uint64_t nchunks;
    uint32_t refs; /* dirents pointing here */
    /* layout scratch (bootstrap_writer.c) */
    uint64_t nid;
    uint32_t ino;
    int placed;
};

struct rafs_node {
    char *name; /* "" for the root */
    struct rafs_node *parent;
    struct rafs_node **children;
    size_t nchildren, cap;
    struct rafs_inode *inode;
    struct rafs_node *hnext; /* hash chain (fs_tree.c) */
};

#define RAFS_TREE_MAX_DEPTH 1024 /* deepest path accepted (the reader's RAFS_MAX_DEPTH) */

struct rafs_tree {
    struct rafs_node *root;
    struct rafs_node **hash; /* (parent, name) -> node */
    size_t hash_cap, hash_used;
    uint64_t nodes;
};

/* Creates a tree with a root directory (mode 040755, owner 0, mtime 0). */
int rafs_tree_init(struct rafs_tree *t);
void rafs_tree_free(struct rafs_tree *t);
/* A zeroed inode holding one reference (the caller's): after rafs_tree_add() the caller drops
 * its own reference with rafs_inode_put(). */
struct rafs_inode *rafs_inode_new(void);
/* Drops one reference; frees the inode at zero. */
void rafs_inode_put(struct rafs_inode *ino);
/* Adds a full-name xattr (copies name and value). -EINVAL for prefixes EROFS cannot store
 * (only user., trusted., security., system.posix_acl_access/default are allowed). */
int rafs_inode_set_xattr(struct rafs_inode *ino, const char *name, const void *value, size_t len,
                         cf_err *err);
/* Child `name` of dir, or NULL. */
struct rafs_node *rafs_tree_child(struct rafs_tree *t, struct rafs_node *dir, const char *name);
/* Finds a node by relative or absolute path ("a/b", "/a/b", "" or "/" = root). */
struct rafs_node *rafs_tree_lookup(struct rafs_tree *t, const char *path);
/* Adds (or replaces) the entry at `path`, creating missing parent directories (mode 0755).
 * Takes its own reference on `ino` on success (the caller keeps and drops its own).
 * -ELOOP for paths deeper than RAFS_TREE_MAX_DEPTH. When an
 * existing directory is replaced by a directory, its children are kept. -EINVAL for bad paths
 * ("..", empty components), -ENOTDIR when a parent is not a directory. */
int rafs_tree_add(struct rafs_tree *t, const char *path, struct rafs_inode *ino,
                  struct rafs_node **out, cf_err *err);
/* Unlinks node (and its whole subtree). The root cannot be removed. */
void rafs_tree_remove(struct rafs_tree *t, struct rafs_node *n);
/* Removes every child of dir (opaque directory). */
void rafs_tree_clear_dir(struct rafs_tree *t, struct rafs_node *dir);
/* Sorts children of every directory bytewise (done by the bootstrap writer). */
void rafs_tree_sort(struct rafs_tree *t);

/* ---- Data blob writer (blob_writer.c) ---------------------------------------------------- */
struct rafs_blob_opts {
    uint32_t chunk_size; /* power of two, 4 KiB .. 16 MiB */
    enum rafs_compressor compressor;
    enum rafs_digester digester;
    int zstd_level;        /* 3 as nydus-image */
    int blob_toc;          /* --features blob-toc */
    int inline_meta;       /* --blob-inline-meta */
    unsigned threads;      /* 0 = compress in the calling thread */
    unsigned max_inflight; /* chunks in flight; 0 = default (2 per thread + 2) */
};

struct rafs_blob_result {
    char blob_id[RAFS_BLOB_ID_LEN + 1]; /* sha256 of the blob minus the blob.digest bytes */
    uint64_t blob_size;                 /* bytes written to the blob fd */
    uint8_t file_sha256[32];            /* sha256 of those bytes (the blob's OCI digest) */
    uint64_t data_size;                 /* compressed chunk data bytes */
    uint64_t uncompressed_size;         /* 4 KiB aligned address space */
    uint32_t chunk_count;
    uint64_t ci_offset, ci_compressed_size, ci_uncompressed_size;
    enum rafs_compressor ci_compressor;
    uint32_t features;
    uint32_t toc_size; /* 0 without blob-toc */
    uint8_t toc_digest[32];
    uint64_t size_before_boot; /* inline meta: blob size before the bootstrap */
    uint64_t file_bytes;       /* file bytes fed (before dedup) */
    uint32_t dedup_chunks;     /* chunks found again in this blob: stored once */
    uint64_t dedup_bytes;      /* their uncompressed bytes (not stored again) */
};

typedef struct rafs_blob_writer rafs_blob_writer;

/* `fd` receives the blob (written sequentially, never seeks; caller keeps ownership).
 * `cache_fd` (or -1) receives the uncompressed 4 KiB-aligned view (<id>.blob.data), written
 * with pwrite. `chunks` receives the stored chunks (blob_index = blob_index). */
int rafs_blob_writer_new(const struct rafs_blob_opts *o, int fd, int cache_fd, uint32_t blob_index,
                         struct rafs_chunk_table *chunks, rafs_blob_writer **out, cf_err *err);
/* Starts a regular file of `size` bytes: allocates ino->chunks. Data must follow with
 * buf/advance until exactly `size` bytes were given, then end_file. */
int rafs_blob_writer_begin_file(rafs_blob_writer *w, struct rafs_inode *ino, uint64_t size,
                                cf_err *err);
/* Space to write the next file bytes into (at most the rest of the current chunk and of the
 * file); *avail = 0 once the file is complete. */
int rafs_blob_writer_buf(rafs_blob_writer *w, void **buf, size_t *avail, cf_err *err);
int rafs_blob_writer_advance(rafs_blob_writer *w, size_t n, cf_err *err);
/* -EBADMSG when fewer bytes than announced were given. */
int rafs_blob_writer_end_file(rafs_blob_writer *w, cf_err *err);
/* Chunks found in dict (same digest and uncompressed size) are not stored: each gets an
 * entry in `used` (blob_index = its blob in dict->blobs) and the inode's chunk index
 * RAFS_CHUNK_DICT_REF | <index in used>, which the caller resolves once the blob is written
 * (rafs_create does). dict and used must outlive the writer; call before any file. */
#define RAFS_CHUNK_DICT_REF 0x80000000u
struct rafs_chunk_dict;
void rafs_blob_writer_set_dict(rafs_blob_writer *w, const struct rafs_chunk_dict *dict,
                               struct rafs_chunk_table *used);
/* Drains the pipeline; afterwards the chunk table is final (needed to build the bootstrap). */
int rafs_blob_writer_flush(rafs_blob_writer *w, cf_err *err);
/* Writes the tail up to (excluding) the inline bootstrap: "image.blob" tar header, ci array +
 * header, blob.digest. Implies flush. Idempotent. */
int rafs_blob_writer_write_meta(rafs_blob_writer *w, cf_err *err);
/* Writes the rest of the tail (calls write_meta first if needed). `boot` (inline meta only)
 * is the bootstrap to embed. Fills *res (blob id = running SHA-256 of the blob minus the
 * blob.digest bytes). */
int rafs_blob_writer_finish(rafs_blob_writer *w, const void *boot, size_t boot_len,
                            struct rafs_blob_result *res, cf_err *err);
/* After write_meta: fills the parts of *res known before the inline bootstrap (chunk count,
 * sizes, features, ci offset, size_before_boot) so the embedded bootstrap can describe the
 * blob. blob_id is left empty. */
void rafs_blob_writer_preview(rafs_blob_writer *w, struct rafs_blob_result *res);
/* Writes <blob_id>.blob.meta content (decoded ci array padded to 4 KiB + 4 KiB header). */
int rafs_blob_writer_cache_meta(rafs_blob_writer *w, int fd, cf_err *err);
void rafs_blob_writer_free(rafs_blob_writer *w);

/* ---- Bootstrap writer (bootstrap_writer.c) ----------------------------------------------- */
struct rafs_boot_blob {
    char id[RAFS_BLOB_ID_LEN + 1];
    uint32_t chunk_count;
    uint32_t features;
    enum rafs_compressor compressor, ci_compressor;
    enum rafs_digester digester;
    uint64_t compressed_size, uncompressed_size;
    uint32_t toc_size;
    uint8_t toc_digest[32];
    uint64_t ci_offset, ci_compressed_size, ci_uncompressed_size;
};

#define RAFS_BOOTSTRAP_MAX_SIZE_BUILDER (1ull << 30) /* refuse to build larger bootstraps */

struct rafs_boot_opts {
    uint32_t chunk_size;
    enum rafs_compressor compressor;
    enum rafs_digester digester;
    int inlined_chunk_digest; /* every blob has a blob.digest array */
    const struct rafs_boot_blob *blobs;
    uint32_t nblobs;
    const char *const *prefetch; /* absolute paths; NULL-terminated list or NULL */
};

/* Reads a prefetch list as nydus-image `--prefetch-policy fs` and nydusify
 * `--prefetch-patterns` take it on stdin: absolute paths, one per line (trailing CR and
 * spaces trimmed, empty lines skipped; a relative path is ignored with a warning, as
 * nydus-image does). *out: a malloc'd NULL-terminated array (free with rafs_prefetch_free),
 * possibly empty. 0, or -ENOMEM / -EIO (read error) with a message. */
int rafs_prefetch_read(FILE *f, char ***out, cf_err *err);
void rafs_prefetch_free(char **list);

/* Lays out `t` (sorted in place) and produces the bootstrap in *out (caller frees with
 * cf_buf-free semantics: free(out->data)). */
struct cf_buf;
int rafs_bootstrap_build(struct rafs_tree *t, const struct rafs_chunk_table *chunks,
                         const struct rafs_boot_opts *o, struct cf_buf *out, cf_err *err);

/* ---- Chunk dictionary (chunk_dict.c), as nydus-image --chunk-dict ----------------------- */
/* The chunks of an existing bootstrap (a "dictionary" image) by digest: a build that meets a
 * chunk of the same digest and uncompressed size stores nothing and points at the
 * dictionary's blob instead (the new bootstrap's blob table gains that blob, first use order,
 * after the layer's own blob). Read-only once loaded: one dictionary may serve several
 * builds on several threads at once. */
struct rafs_chunk_dict {
    struct rafs_chunk_table chunks; /* lookup table: every blob_index is 0 (use blob_of) */
    uint32_t *blob_of;              /* per entry of chunks: its blob in blobs[] */
    struct rafs_boot_blob *blobs;   /* the dictionary's blob table */
    uint32_t nblobs;
    uint32_t chunk_size;
    enum rafs_compressor compressor;
    enum rafs_digester digester;
};
/* "bootstrap=PATH" or "PATH" (nydus-image's syntax): *path points into arg. -EINVAL with a
 * message for another type. */
int rafs_chunk_dict_arg(const char *arg, const char **path, cf_err *err);
/* Loads every chunk of every regular file of the bootstrap at path (the first blob holding a
 * digest wins). Errors: the reader's, -ENOMEM. */
int rafs_chunk_dict_load(const char *path, struct rafs_chunk_dict *d, cf_err *err);
void rafs_chunk_dict_free(struct rafs_chunk_dict *d);
/* -EINVAL with a message naming `what` when a build with these options cannot use d (chunk
 * size or digester differ: no digest could match; a compressor differing is fine). */
int rafs_chunk_dict_check(const struct rafs_chunk_dict *d, uint32_t chunk_size,
                          enum rafs_digester digester, const char *what, cf_err *err);
/* A blob table entry of a merged/new bootstrap from a reader's blob (the inline-meta feature
 * dropped: the bootstrap is no longer inside that blob). */
struct rafs_blob_info;
void rafs_boot_blob_from_info(const struct rafs_blob_info *bi, struct rafs_boot_blob *b);

/* ---- Sources ----------------------------------------------------------------------------- */
enum rafs_whiteout_spec { RAFS_WHITEOUT_OCI, RAFS_WHITEOUT_OVERLAYFS, RAFS_WHITEOUT_NONE };

struct rafs_progress {
    uint64_t entries, bytes;
    double start;
    double last_report;
};

/* Reads a tar (plain, gzip, zstd...) from `path` (file, FIFO, /dev/stdin) into the tree and
 * the blob writer. */
int rafs_tar_source_read(const char *path, struct rafs_tree *t, rafs_blob_writer *w,
                         struct rafs_progress *pr, cf_err *err);
/* Walks a directory into the tree and the blob writer. */
int rafs_dir_source_read(const char *path, struct rafs_tree *t, rafs_blob_writer *w,
                         struct rafs_progress *pr, cf_err *err);
/* Periodic progress line on stderr at info level (rate limited). */
void rafs_progress_tick(struct rafs_progress *pr, int force);

/* ---- `create` end to end (builder_create.c) ----------------------------------------------- */
struct rafs_create_opts {
    const char *source;
    int source_is_dir;          /* dir-rafs; else tar-rafs */
    const char *bootstrap;      /* -B, or NULL */
    const char *blob;           /* -b (regular file or FIFO), or NULL */
    const char *blob_dir;       /* -D, or NULL */
    const char *blob_cache_dir; /* --blob-cache-dir, or NULL */
    /* Without blob_cache_dir: where to write the blob's .blob.meta content alone (decoded ci
     * array padded to 4 KiB + 4 KiB header; what nydusify puts in the bootstrap layer), only
     * when the layer has file data; NULL = none. */
    const char *blob_meta;
    const char *blob_id; /* --blob-id, or NULL */
    struct rafs_blob_opts blob_opts;
    const char *const *prefetch; /* NULL-terminated absolute paths, or NULL */
    enum rafs_whiteout_spec whiteout;
    const struct rafs_chunk_dict *chunk_dict; /* --chunk-dict, or NULL */
};

struct rafs_create_result {
    int has_blob; /* 0 when the layer holds no file data */
    char blob_id[RAFS_BLOB_ID_LEN + 1];
    char bootstrap_path[4096]; /* where the bootstrap went ("" if only inline) */
    char blob_path[4096];
    struct rafs_blob_result blob;
    uint64_t entries;
    uint64_t bootstrap_size;
    uint32_t dict_chunks; /* chunk references resolved to the dictionary */
    uint64_t dict_bytes;  /* their uncompressed bytes (not stored again) */
    uint32_t dict_blobs;  /* dictionary blobs added to the blob table */
};

/* Builds the image. Outputs are written under temporary names and renamed into place at the
 * end; on failure they are removed (a FIFO blob is written directly). */
int rafs_create(const struct rafs_create_opts *o, struct rafs_create_result *res, cf_err *err);

/* ---- `unpack` (unpack.c) ----------------------------------------------------------------- */
/* Writes the filesystem of `bootstrap` as a PAX tar to `out_tar` (temp name + rename), reading
 * chunks from `blob_file` (used for every blob when the image has one blob, or for a blob whose
 * id is unknown) or from `blob_dir`/<blob_id>. Each chunk is digest-checked. Hard links become
 * tar hard-link entries. */
int rafs_unpack(const char *bootstrap, const char *blob_file, const char *blob_dir,
                const char *out_tar, cf_err *err);

/* ---- `merge` (merge.c) ------------------------------------------------------------------- */
struct rafs_merge_opts {
    const char *const *sources; /* per-layer bootstraps, lowest layer first */
    size_t nsources;
    const char *const *blob_digests;     /* per source: replaces its blob id (or NULL) */
    const char *const *blob_sizes;       /* per source: replaces compressed_size (or NULL) */
    const char *const *blob_toc_digests; /* per source (or NULL) */
    const char *const *prefetch;         /* NULL-terminated absolute paths, or NULL */
    enum rafs_whiteout_spec whiteout;    /* OCI also honours overlayfs markers, as nydus-image */
    /* The dictionary bootstrap the layers were built with (--chunk-dict), or NULL: a source's
     * blobs named in its blob table are kept as they are (never renamed by blob_digests), so
     * a source may hold them besides its own one blob. */
    const char *chunk_dict;
};
/* Merges the layers (applying whiteouts and opaque directories) into one bootstrap written
 * to `out_path`. The blob table lists, in layer order, the blobs referenced by chunks.
 * `blob_ids` receives the merged blob ids (malloc'd array of malloc'd strings, *nblobs) and
 * `compressor` (may be NULL) the layers' chunk compressor;
 * free with rafs_merge_free_ids. -EINVAL with message on inconsistent inputs (differing chunk
 * size, compressor or digester). */
int rafs_merge(const struct rafs_merge_opts *o, const char *out_path, char ***blob_ids,
               size_t *nblobs, enum rafs_compressor *compressor, cf_err *err);
void rafs_merge_free_ids(char **ids, size_t n);
#define RAFS_MERGE_INCONSISTENT (-EXDEV) /* merge: inputs cannot be merged (exit code 2) */

/* Linux new_encode_dev() */
static inline uint32_t rafs_encode_dev(uint32_t major, uint32_t minor)
{
    return (minor & 0xffu) | (major << 8) | ((minor & ~0xffu) << 12);
}

#endif
