/* Internals shared by the reader's .c files (not installed, not for other libraries). */
#ifndef RAFS_READER_PRIV_H
#define RAFS_READER_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "rafs/blob.h"
#include "rafs/reader.h"

/* One chunk-table record, decoded, sorted by (blob_index, ci_index) for lookups. */
struct rafs_ct_entry {
    uint32_t blob_index;
    uint32_t ci_index;
    uint32_t flags;
    uint32_t compressed_size, uncompressed_size;
    uint64_t compressed_offset, uncompressed_offset;
    uint32_t crc32;
    uint8_t digest[32];
};

struct rafs_image {
    uint8_t *data;
    size_t len;
    int mapped; /* data is a read-only mapping of the file (munmap), else heap (free) */
    struct rafs_super_info sb;
    uint64_t meta_base; /* meta_blkaddr * 4096 */
    struct rafs_blob_info *blobs;
    struct rafs_blob_meta **metas; /* per blob, optional (attached) */
    struct rafs_ct_entry *ct;      /* sorted */
    uint64_t ct_count;
};

/* Decoded inode: stat plus where its pieces live in the bootstrap. */
struct rafs_inode {
    struct rafs_stat st;
    uint64_t off;        /* byte offset of the inode */
    uint32_t isize;      /* 32 or 64 */
    uint32_t xattr_size; /* inline xattr bytes following the inode */
    uint32_t i_u;
};

int rafs_inode_read(const rafs_image *img, uint64_t nid, struct rafs_inode *ino, cf_err *err);
/* Flat (PLAIN/INLINE) data block `blk` of a dir/symlink: pointer and valid length. */
int rafs_inode_flat_block(const rafs_image *img, const struct rafs_inode *ino, uint64_t blk,
                          const uint8_t **ptr, uint32_t *len, cf_err *err);
/* Checked add / multiply: false on overflow. */
static inline bool rafs_add_ok(uint64_t a, uint64_t b, uint64_t *r)
{
    return !__builtin_add_overflow(a, b, r);
}
static inline bool rafs_mul_ok(uint64_t a, uint64_t b, uint64_t *r)
{
    return !__builtin_mul_overflow(a, b, r);
}
/* true when [off, off+len) lies inside [0, total) */
static inline bool rafs_range_ok(uint64_t off, uint64_t len, uint64_t total)
{
    uint64_t end;
    return rafs_add_ok(off, len, &end) && end <= total;
}
static inline uint16_t rafs_get16(const uint8_t *p)
{
    uint16_t v;
    __builtin_memcpy(&v, p, 2);
    return rafs_le16(v);
}
static inline uint32_t rafs_get32(const uint8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return rafs_le32(v);
}
static inline uint64_t rafs_get64(const uint8_t *p)
{
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return rafs_le64(v);
}

const struct rafs_ct_entry *rafs_ct_lookup(const rafs_image *img, uint32_t blob, uint32_t ci);

#endif
