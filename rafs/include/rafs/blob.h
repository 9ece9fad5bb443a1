/* Nydus data-blob reader: the chunk compression-info ("ci") array with its 4 KiB header, the
 * reverse-tar tail with its table of contents (rafs.blob.toc), the blob.digest array, the
 * inline bootstrap (image.boot), and single-chunk reads with decompression + digest check.
 *
 * All parsers treat their input as untrusted: sizes and offsets are checked (overflow-safe)
 * against the blob size and against the blob-table entry when one is given; allocations are
 * capped (RAFS_CI_MAX_SIZE, RAFS_TOC_MAX_SIZE, RAFS_BOOTSTRAP_MAX_SIZE).
 * Blob bytes come from a rafs_blob_source (rafs/blob_source.h: a local file, memory, and later
 * the peer or a registry); the blob size is the source's size. These functions only read
 * through the source and never close it.
 * Errors: -EBADMSG malformed data (with a message), -ENOENT missing TOC entry, -ENOTSUP valid
 * but unsupported (encrypted chunks, gzip), -ENOMEM, -ENODATA blob shorter than a read needs,
 * or the source's errno (-EIO...).
 * Threads: parsed objects are immutable; sources allow concurrent reads, so several threads may
 * read chunks from one source concurrently. */
#ifndef RAFS_BLOB_H
#define RAFS_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"
#include "rafs/blob_source.h"
#include "rafs/ondisk.h"
#include "rafs/reader.h"

#define RAFS_CI_MAX_SIZE     (256ull << 20) /* decoded ci array + contexts */
#define RAFS_TOC_MAX_SIZE    4096u          /* TOC entries + its tar header, as nydusd */
#define RAFS_TOC_MAX_ENTRIES ((RAFS_TOC_MAX_SIZE - RAFS_TAR_BLOCK) / RAFS_TOC_ENTRY_SIZE)

/* ---- ci header + array ------------------------------------------------------------------ */
struct rafs_ci_header_info {
    uint32_t features;
    enum rafs_compressor ci_compressor;
    uint32_t entries;
    uint64_t ci_offset, ci_compressed_size, ci_uncompressed_size;
    uint64_t zran_offset, zran_size;
    uint32_t zran_count;
};
/* Checks both magics, compressor, sizes (entries vs uncompressed size for v1/v2). */
int rafs_ci_header_parse(const void *hdr4096, struct rafs_ci_header_info *out, cf_err *err);

/* One decoded ci entry. */
struct rafs_ci {
    uint64_t compressed_offset;
    uint32_t compressed_size;
    uint64_t uncompressed_offset;
    uint32_t uncompressed_size;
    uint8_t flags; /* RAFS_CI_V2_* (v1: COMPRESSED derived from sizes) */
    uint64_t data; /* v2 data word (zran/batch index + offset, or crc32) */
};

/* Decoded blob metadata; free with rafs_blob_meta_free(). */
struct rafs_blob_meta {
    struct rafs_ci_header_info hdr;
    uint32_t count;
    struct rafs_ci *ci;     /* count entries */
    uint8_t (*digests)[32]; /* blob.digest array (count entries) or NULL */
    uint8_t *ctx;           /* ZRAN/BATCH context bytes (hdr.zran_size) or NULL */
};
void rafs_blob_meta_free(struct rafs_blob_meta *m);

/* Decodes an uncompressed ci array (plus trailing ZRAN/BATCH contexts) described by `hdr`.
 * Each entry is validated: uncompressed offsets 4 KiB aligned and non-overlapping in order,
 * sizes in [1, 16 MiB], compressed extent inside [0, data_end) when data_end != 0,
 * uncompressed extent inside uncompressed_size when != 0. */
int rafs_blob_meta_decode(const struct rafs_ci_header_info *hdr, const void *ci, size_t len,
                          uint64_t data_end, uint64_t uncompressed_size,
                          struct rafs_blob_meta **out, cf_err *err);

/* Chunks overlapping [offset, offset+len) of the blob's uncompressed address space (what an
 * fscache READ or a blob-cache fill asks for): *first = index of the first ci entry, *count =
 * number of consecutive entries (0 when the range only covers gaps). Binary search; relies on
 * the ordering rafs_blob_meta_decode() enforces. */
void rafs_blob_meta_find(const struct rafs_blob_meta *m, uint64_t offset, uint64_t len,
                         uint32_t *first, uint32_t *count);

/* Reads the ci array + header from a data blob (at bi->ci_offset, inside the source's size),
 * decompresses it, checks that the header equals the blob-table entry `bi`, decodes. */
int rafs_blob_meta_load(const rafs_blob_source *src, const struct rafs_blob_info *bi,
                        struct rafs_blob_meta **out, cf_err *err);

/* Parses an on-disk blob.meta cache file (§6.4): uncompressed ci (+contexts) zero-padded to
 * 4 KiB, then the 4 KiB header; size must be round_up(ci_uncompressed_size, 4096) + 4096.
 * `bi` may be NULL (no cross-check). */
int rafs_blob_meta_parse_cache(const void *buf, size_t len, const struct rafs_blob_info *bi,
                               struct rafs_blob_meta **out, cf_err *err);

/* ---- TOC -------------------------------------------------------------------------------- */
struct rafs_toc_item {
    char name[17]; /* NUL-terminated */
    uint32_t flags;
    enum rafs_compressor compressor;
    uint8_t digest[32]; /* SHA-256 of the uncompressed content */
    uint64_t compressed_offset, compressed_size, uncompressed_size;
};
struct rafs_blob_toc {
    uint32_t count;
    struct rafs_toc_item items[RAFS_TOC_MAX_ENTRIES];
    uint64_t offset;    /* of the entry array in the blob */
    uint32_t size;      /* entries + 512-byte tar header (= blob_toc_size) */
    uint8_t digest[32]; /* SHA-256 over entries + tar header (= blob_toc_digest) */
};
/* Parses the TOC from the last `tail_len` bytes of a blob of `blob_size` bytes (pass at
 * least min(blob_size, RAFS_TOC_MAX_SIZE) bytes). The last 512 bytes must be the tar header
 * "rafs.blob.toc" (valid checksum, octal size = 128*n); each entry's extent must lie before
 * the TOC; unknown flags and duplicate names are rejected. */
int rafs_blob_toc_parse(const void *tail, size_t tail_len, uint64_t blob_size,
                        struct rafs_blob_toc *out, cf_err *err);
/* Reads the tail (min(size, RAFS_TOC_MAX_SIZE) bytes) of the source and parses it. */
int rafs_blob_toc_read(const rafs_blob_source *src, struct rafs_blob_toc *out, cf_err *err);
/* Compares the TOC with a blob-table entry: size and digest when the table has them. */
int rafs_blob_toc_verify(const struct rafs_blob_toc *toc, const struct rafs_blob_info *bi,
                         cf_err *err);
const struct rafs_toc_item *rafs_blob_toc_find(const struct rafs_blob_toc *toc, const char *name);
/* Walks the reverse-tar chain of a HAS_TAR_HEADER blob from its end back to byte 0: every
 * 512-byte header must be valid (ustar magic, checksum, regular member, printable name) with
 * its data directly before it, the chain must end exactly at offset 0 and hold at most 16
 * members. With a TOC, each member must be named in it and start where its entry starts, and the
 * "image.blob" digest (SHA-256 of all bytes up to and including its tar header) is checked by
 * reading the chunk data region. Returns the member count or a negative errno. */
int rafs_blob_tar_verify(const rafs_blob_source *src, const struct rafs_blob_toc *toc, cf_err *err);
/* Reads one TOC entry, decompresses it (none/zstd/lz4_block) to uncompressed_size
 * (<= max_len, else -EFBIG) and verifies its SHA-256. *out is malloc'd (caller frees). */
int rafs_blob_toc_read_item(const rafs_blob_source *src, const struct rafs_toc_item *item,
                            size_t max_len, uint8_t **out, size_t *out_len, cf_err *err);

/* Reads "blob.meta.header" + "blob.meta" (stored as described by the TOC flags; the content
 * is the uncompressed ci array) from a TOC'd blob, e.g. a zran/ref meta blob. `bi` may be NULL;
 * when given, the header must match it. */
int rafs_blob_meta_load_toc(const rafs_blob_source *src, const struct rafs_blob_toc *toc,
                            const struct rafs_blob_info *bi, struct rafs_blob_meta **out,
                            cf_err *err);
/* Reads the blob.digest array named in the TOC into m->digests (32 * m->count bytes). */
int rafs_blob_meta_load_digests(const rafs_blob_source *src, const struct rafs_blob_toc *toc,
                                struct rafs_blob_meta *m, cf_err *err);
/* Extracts the inline bootstrap "image.boot" (zstd or none) of an inline-meta / ref blob.
 * *out malloc'd, at most RAFS_BOOTSTRAP_MAX_SIZE bytes. -ENOENT without such an entry. */
int rafs_blob_read_bootstrap(const rafs_blob_source *src, const struct rafs_blob_toc *toc,
                             uint8_t **out, size_t *out_len, cf_err *err);

/* ---- Chunk data ------------------------------------------------------------------------- */
/* Reads one chunk from a blob (compressed_size bytes at compressed_offset), decompresses it with
 * the blob's compressor when ref->compressed, and checks the digest (`digester`) when
 * ref->has_digest. `out` must hold ref->uncompressed_size bytes. Digest mismatch -> -EBADMSG
 * "chunk <ci> of blob <id>: digest mismatch". Encrypted chunks -> -ENOTSUP. */
int rafs_chunk_read(const rafs_blob_source *src, const struct rafs_chunk_ref *ref,
                    enum rafs_compressor compressor, enum rafs_digester digester, void *out,
                    cf_err *err);
/* Same from a buffer holding the compressed bytes (ref->compressed_size of them). */
int rafs_chunk_decode(const void *src, const struct rafs_chunk_ref *ref,
                      enum rafs_compressor compressor, enum rafs_digester digester, void *out,
                      cf_err *err);

/* ---- File content through blob sources ------------------------------------------------ */
/* The data blobs of an image: one source per blob-table entry (a slot may stay empty). The set
 * owns and closes its sources. Filled once, then read-only: any number of threads may call
 * rafs_blob_set_get() and rafs_file_read() on it at once. */
typedef struct rafs_blob_set rafs_blob_set;
/* An empty set with one slot per blob of `img`. Free with rafs_blob_set_close(). */
int rafs_blob_set_new(const rafs_image *img, rafs_blob_set **out, cf_err *err);
/* Stores `src` in slot `idx`; the set owns it from now on, also on failure (-EINVAL for an
 * index out of range: then it is closed at once). A source already there is closed. */
int rafs_blob_set_put(rafs_blob_set *set, uint32_t idx, rafs_blob_source *src, cf_err *err);
/* Source of blob `idx`, owned by the set; NULL if out of range or empty. */
const rafs_blob_source *rafs_blob_set_get(const rafs_blob_set *set, uint32_t idx);
/* A set of local files: opens DIR/<blob id> for every blob of the image (read-only). A missing
 * file fails with the open(2) errno naming it ("data blob DIR/ID: ..."). */
int rafs_blob_set_open_dir(const rafs_image *img, const char *dir, rafs_blob_set **out,
                           cf_err *err);
/* Closes every source and frees the set; NULL-safe. */
void rafs_blob_set_close(rafs_blob_set *set);

/* Reads up to `len` bytes of regular file `nid` at `offset` (short only at EOF; *nread tells),
 * decompressing and digest-verifying each chunk touched. An empty slot for a blob the range
 * needs: -ENOENT "blob ID not open". Thread-safe. */
int rafs_file_read(const rafs_image *img, const rafs_blob_set *set, uint64_t nid, uint64_t offset,
                   void *buf, size_t len, size_t *nread, cf_err *err);

#endif
