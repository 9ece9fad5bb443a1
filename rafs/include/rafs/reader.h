/* RAFS v6 bootstrap reader: random access to the filesystem metadata of a Nydus image
 * (an EROFS image whose regular files are chunks stored in data blobs).
 *
 * Model: the whole bootstrap is read into memory (at most RAFS_BOOTSTRAP_MAX_SIZE bytes) and
 * validated once at open time (superblock, extended superblock, device table, blob table,
 * prefetch table, chunk table). Inodes, directories, xattrs and chunk indexes are validated
 * lazily, each time they are read: every accessor bounds-checks what it touches and returns
 * -EBADMSG with a message naming the nid/offset on malformed data. rafs_walk() visits the
 * whole tree iteratively (no recursion) and detects directory loops.
 *
 * Errors: every int function returns 0 (or a documented positive value) on success, else a
 * negative errno: -EBADMSG malformed bootstrap, -ENOENT no such path/name, -ENOTDIR, -EISDIR,
 * -EINVAL wrong inode type or argument, -ENODATA missing xattr or chunk info, -ERANGE buffer too
 * small, -ENOTSUP valid but unsupported (RAFS v5, tarfs, encryption, compressed EROFS layouts),
 * -ELOOP directory loop / too deep, -ENAMETOOLONG path over RAFS_PATH_MAX, -E2BIG too many
 * chunks for one rafs_file_map() call, -ENOMEM, -EIO/-EFBIG from file reads. `cf_err *err` may
 * be NULL. Documentation of the rules checked: docs/rafs-reader.md.
 *
 * Threads: a rafs_image is immutable after rafs_image_open*() and rafs_image_attach_blob_meta()
 * calls; any number of threads may then call the read-only accessors concurrently.
 * Ownership: the caller owns the rafs_image and frees it with rafs_image_close(). Pointers
 * returned into the image (blob info, blob ids) live until rafs_image_close(). */
#ifndef RAFS_READER_H
#define RAFS_READER_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"
#include "rafs/ondisk.h"

#define RAFS_BOOTSTRAP_MAX_SIZE (1ull << 30) /* refuse larger bootstraps (-EFBIG) */
#define RAFS_PATH_MAX           4096         /* longest path rafs_walk() builds */
#define RAFS_MAX_DEPTH          1024         /* deepest directory nesting accepted */
#define RAFS_MAP_MAX_CHUNKS     (1u << 20)   /* chunks one rafs_file_map() call returns */

typedef struct rafs_image rafs_image;
struct rafs_blob_meta; /* rafs/blob.h */

/* ---- Version detection ------------------------------------------------------------------ */
/* Returns 6 for a RAFS v6 (EROFS) bootstrap, 5 for RAFS v5 (magic 0x52414653 + version 0x500
 * at offset 0), or -EBADMSG when neither magic is present. Only looks at the magics. */
int rafs_detect_version(const void *buf, size_t len, cf_err *err);

/* What a RAFS v5 bootstrap says about itself (recognition only; no tree access). */
struct rafs_v5_info {
    uint32_t fs_version; /* 0x500 */
    uint32_t chunk_size; /* sb block_size */
    uint64_t flags;      /* RAFS_FLAG_* */
    uint64_t inodes_count;
    uint32_t inode_table_entries;
    uint32_t blob_count; /* ids in the blob table */
    char first_blob_id[RAFS_BLOB_ID_LEN + 1];
};
/* Parses the v5 superblock and blob table (bounds-checked). 0 or -EBADMSG. */
int rafs_v5_probe(const void *buf, size_t len, struct rafs_v5_info *out, cf_err *err);

/* ---- Open / close ----------------------------------------------------------------------- */
/* Opens a RAFS v6 bootstrap file. RAFS v5 files fail with -ENOTSUP ("RAFS v5 ... only
 * recognised"). *out is set only on success. */
int rafs_image_open(const char *path, rafs_image **out, cf_err *err);
/* Same from memory; the buffer is copied, the caller keeps ownership of `buf`. */
int rafs_image_open_buf(const void *buf, size_t len, rafs_image **out, cf_err *err);
void rafs_image_close(rafs_image *img);

/* Superblock facts. */
struct rafs_super_info {
    uint64_t bootstrap_size;
    uint64_t flags;      /* RAFS_FLAG_* from the extended superblock */
    uint32_t chunk_size; /* ext-SB s_chunk_size: the unit of chunk indexes */
    enum rafs_compressor compressor;
    enum rafs_digester digester;
    uint64_t root_nid;
    uint64_t inos; /* sb inos: number of inodes the builder assigned */
    uint32_t meta_blkaddr;
    uint32_t blocks;     /* sb blocks */
    uint64_t build_time; /* used as mtime of compact inodes, as the kernel does */
    uint32_t build_time_nsec;
    uint32_t blob_count;
    uint64_t chunk_table_offset, chunk_table_count;
    uint64_t prefetch_table_offset;
    uint32_t prefetch_count;
};
const struct rafs_super_info *rafs_image_super(const rafs_image *img);
/* Raw bootstrap bytes (owned by the image). */
const uint8_t *rafs_image_data(const rafs_image *img, size_t *len);

/* ---- Blobs ------------------------------------------------------------------------------ */
struct rafs_blob_info {
    uint32_t index;                /* position in the blob table; EROFS device = index+1 */
    char id[RAFS_BLOB_ID_LEN + 1]; /* NUL-terminated */
    uint32_t chunk_size, chunk_count;
    enum rafs_compressor compressor;
    enum rafs_digester digester;
    uint32_t features; /* RAFS_BLOB_* */
    uint64_t compressed_size, uncompressed_size;
    uint32_t toc_size;      /* TOC entries + 512, 0 if unknown */
    uint8_t toc_digest[32]; /* SHA-256, all zeros if unknown */
    int has_toc_digest;
    enum rafs_compressor ci_compressor;
    uint64_t ci_offset, ci_compressed_size, ci_uncompressed_size;
    uint8_t meta_digest[32]; /* ZRAN/separate: sha256 of meta blob */
    uint64_t meta_size;
    uint32_t cipher_algo;
    uint32_t dev_blocks, dev_mapped_blkaddr; /* from the device slot */
};
uint32_t rafs_image_blob_count(const rafs_image *img);
/* NULL when idx is out of range. */
const struct rafs_blob_info *rafs_image_blob(const rafs_image *img, uint32_t idx);
/* Writes a space-separated list of feature names ("aligned blob-toc ...") into buf. */
void rafs_blob_features_str(uint32_t features, char *buf, size_t cap);

/* Prefetch table: nids (v6). *count receives the number of entries; returns a pointer into
 * the image (entries are little-endian u32 on disk: use rafs_image_prefetch_nid). */
uint32_t rafs_image_prefetch_count(const rafs_image *img);
uint64_t rafs_image_prefetch_nid(const rafs_image *img, uint32_t i);

/* Attaches the decoded ci array (+ blob.digest) of blob `idx` so that rafs_file_map() can
 * resolve chunks absent from the bootstrap chunk table and fill digests from blob.digest.
 * The image takes ownership of `meta` (also on error). Not thread-safe with readers. */
int rafs_image_attach_blob_meta(rafs_image *img, uint32_t idx, struct rafs_blob_meta *meta,
                                cf_err *err);

/* ---- Inodes ----------------------------------------------------------------------------- */
struct rafs_stat {
    uint64_t ino;  /* = nid, as the kernel and nydusd use it */
    uint32_t mode; /* POSIX mode incl. type bits */
    /* uid/gid as stored (what the kernel shows); without RAFS_FLAG_EXPLICIT_UID_GID nydusd
     * substitutes its own euid/egid: that choice is left to the caller */
    uint32_t uid, gid;
    uint32_t nlink;
    uint64_t size;
    uint64_t mtime;
    uint32_t mtime_nsec;
    uint32_t rdev;  /* Linux new_encode_dev() value for chr/blk, else 0 */
    uint32_t i_ino; /* builder's inode number (informational) */
    uint16_t xattr_icount;
    uint8_t layout;   /* EROFS_INODE_FLAT_PLAIN / FLAT_INLINE / CHUNK_BASED */
    uint8_t extended; /* 1 for 64-byte inodes */
};
/* Reads and validates inode `nid` (position, layout vs type, data extents inside the file). */
int rafs_stat(const rafs_image *img, uint64_t nid, struct rafs_stat *st, cf_err *err);
/* Major/minor of a Linux new_encode_dev() value. */
static inline uint32_t rafs_rdev_major(uint32_t rdev)
{
    return (rdev & 0xfff00u) >> 8;
}
static inline uint32_t rafs_rdev_minor(uint32_t rdev)
{
    return (rdev & 0xffu) | ((rdev >> 12) & 0xfff00u);
}

/* Absolute or root-relative path ("/a/b", "a/b", "/" = root). Does not follow symlinks;
 * "." and ".." components are resolved through the dirents. */
int rafs_lookup(const rafs_image *img, const char *path, uint64_t *nid, cf_err *err);
/* One name in directory `dir_nid` (binary search as EROFS does). */
int rafs_lookup_child(const rafs_image *img, uint64_t dir_nid, const char *name, size_t len,
                      uint64_t *nid, cf_err *err);

/* ---- Directories ------------------------------------------------------------------------ */
struct rafs_dirent {
    uint64_t nid;
    uint8_t file_type; /* EROFS_FT_* */
    uint16_t name_len;
    char name[EROFS_NAME_LEN + 1]; /* NUL-terminated copy */
};
/* Iterator state; fields are private. Holds no resources: no close function. */
typedef struct rafs_dir_iter {
    const rafs_image *img;
    uint64_t nid;
    uint64_t size;
    uint64_t blk;      /* current block index */
    uint32_t entry;    /* next entry in the current block */
    uint32_t nentries; /* entries in the current block, 0 = not loaded */
    const uint8_t *bp; /* current block bytes */
    uint32_t blen;     /* valid bytes in it */
    uint32_t i_u;      /* raw block address of the full blocks */
    uint64_t tail_off; /* inline tail offset (FLAT_INLINE) */
    uint8_t layout;
} rafs_dir_iter;
/* -ENOTDIR if nid is not a directory. */
int rafs_dir_open(const rafs_image *img, uint64_t nid, rafs_dir_iter *it, cf_err *err);
/* Returns 1 and fills *out, 0 at the end, or a negative errno on malformed blocks.
 * Entries come in on-disk order (sorted, "." and ".." included). */
int rafs_dir_next(rafs_dir_iter *it, struct rafs_dirent *out, cf_err *err);

/* ---- Symlinks and xattrs ---------------------------------------------------------------- */
/* Copies the target (not NUL-terminated unless room) into buf; *len = target length.
 * -ERANGE (with *len set) when cap < length, -EINVAL when not a symlink. */
int rafs_readlink(const rafs_image *img, uint64_t nid, char *buf, size_t cap, size_t *len,
                  cf_err *err);
/* listxattr(2) semantics: full names, each NUL-terminated, concatenated; *len = bytes needed.
 * buf may be NULL (size query). -ERANGE when cap is too small. */
int rafs_listxattr(const rafs_image *img, uint64_t nid, char *buf, size_t cap, size_t *len,
                   cf_err *err);
/* getxattr(2) semantics: -ENODATA when absent, -ERANGE (with *len) when cap is too small,
 * buf may be NULL for a size query. */
int rafs_getxattr(const rafs_image *img, uint64_t nid, const char *name, void *buf, size_t cap,
                  size_t *len, cf_err *err);
/* Calls fn(full_name, value, value_len, ctx) for each inline xattr, in on-disk order; a
 * non-zero return from fn stops and is returned. */
typedef int (*rafs_xattr_fn)(const char *name, const void *value, size_t value_len, void *ctx);
int rafs_xattr_foreach(const rafs_image *img, uint64_t nid, rafs_xattr_fn fn, void *ctx,
                       cf_err *err);

/* ---- Chunk mapping ---------------------------------------------------------------------- */
struct rafs_chunk_ref {
    uint32_t blob_index;
    const char *blob_id;        /* points into the image */
    uint32_t ci_index;          /* chunk index in the blob's ci array */
    uint64_t file_offset;       /* where this chunk starts in the file */
    uint64_t compressed_offset; /* in the blob file */
    uint32_t compressed_size;
    uint64_t uncompressed_offset; /* in the blob's uncompressed address space, 4 KiB aligned */
    uint32_t uncompressed_size;
    uint32_t flags; /* RAFS_CHUNK_* (COMPRESSED, ENCRYPTED, BATCH, HAS_CRC32) */
    uint32_t crc32; /* valid with RAFS_CHUNK_HAS_CRC32 */
    int compressed; /* data must be decompressed */
    int has_digest;
    uint8_t digest[32]; /* of the uncompressed chunk (chunk table or blob.digest) */
};
/* Number of chunk entries of regular file nid = ceil(size / ext-SB chunk size). */
int rafs_file_chunk_count(const rafs_image *img, uint64_t nid, uint64_t *count, cf_err *err);
/* Chunk `idx` of the file, validated (blob, ci index, offsets, sizes vs file size). */
int rafs_file_chunk(const rafs_image *img, uint64_t nid, uint64_t idx, struct rafs_chunk_ref *ref,
                    cf_err *err);
/* All chunks overlapping [offset, offset+len) of the file (len is clipped to the file size).
 * *out is malloc'd (caller frees; NULL when *count == 0). -E2BIG when the range covers more
 * than RAFS_MAP_MAX_CHUNKS chunks (map it in pieces or use rafs_file_chunk()). */
int rafs_file_map(const rafs_image *img, uint64_t nid, uint64_t offset, uint64_t len,
                  struct rafs_chunk_ref **out, size_t *count, cf_err *err);

/* ---- Whole-tree walk -------------------------------------------------------------------- */
struct rafs_walk_entry {
    const char *path; /* "" for the root, else "a/b" (relative, no leading '/') */
    const char *name; /* last component ("" for the root) */
    uint64_t nid;
    uint64_t parent_nid;
    uint8_t file_type; /* from the dirent (EROFS_FT_DIR for the root) */
    const struct rafs_stat *st;
    uint32_t depth; /* 0 for the root */
};
/* Pre-order walk of every dirent except "." and "..", children in on-disk (sorted) order.
 * Validates as it goes: each directory's "." and "..", dirent file type vs inode mode, sorted
 * unique names, a directory reached twice (loop or directory hard link) -> -ELOOP,
 * depth > RAFS_MAX_DEPTH or path > RAFS_PATH_MAX -> -ELOOP/-ENAMETOOLONG. Non-directories may
 * be reached several times (hard links). A non-zero return from fn stops the walk and is
 * returned. Memory: O(depth + directories). */
typedef int (*rafs_walk_fn)(const struct rafs_walk_entry *e, void *ctx);
int rafs_walk(const rafs_image *img, rafs_walk_fn fn, void *ctx, cf_err *err);

#endif
