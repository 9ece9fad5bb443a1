/* Every on-disk structure, flag and magic of Nydus RAFS v6 (an EROFS image plus Nydus tables)
 * and of Nydus data blobs, in one place, with compile-time size/offset checks against
 * ../shared/docs/nydus-format.md (section numbers in comments).
 *
 * All multi-byte integers on disk are LITTLE-ENDIAN. The structs below mirror the byte layout
 * exactly (no implicit padding); read/write them with memcpy and convert fields with
 * rafs_le16/32/64() / rafs_to_le*(). Never cast a pointer into untrusted data to these types. */
#ifndef RAFS_ONDISK_H
#define RAFS_ONDISK_H

#include <assert.h>
#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

static inline uint16_t rafs_le16(uint16_t v)
{
    return le16toh(v);
}
static inline uint32_t rafs_le32(uint32_t v)
{
    return le32toh(v);
}
static inline uint64_t rafs_le64(uint64_t v)
{
    return le64toh(v);
}
static inline uint16_t rafs_to_le16(uint16_t v)
{
    return htole16(v);
}
static inline uint32_t rafs_to_le32(uint32_t v)
{
    return htole32(v);
}
static inline uint64_t rafs_to_le64(uint64_t v)
{
    return htole64(v);
}

/* ---- Geometry (§2.1) --------------------------------------------------------------------- */
#define RAFS_BLOCK_SIZE         4096u
#define RAFS_BLOCK_BITS         12
#define RAFS_SUPER_OFFSET       1024u
#define RAFS_EXT_SUPER_OFFSET   1152u
#define RAFS_DEVTABLE_OFFSET    1408u
#define RAFS_DEVT_SLOTOFF       11u  /* 11 * 128 = 1408 */
#define RAFS_ROOT_NID           128u /* first meta block left empty so nid 0 is never used */
#define RAFS_MAX_BLOBS          254u /* device id = blob index + 1 must fit a byte (< 255) */
#define RAFS_MIN_CHUNK_SIZE     0x1000u
#define RAFS_MAX_CHUNK_SIZE     0x1000000u
#define RAFS_DEFAULT_CHUNK_SIZE 0x100000u
#define RAFS_MAX_CI_INDEX       0xffffffu /* 24-bit ci index in chunk index entries */

/* ---- EROFS superblock at byte 1024, 128 bytes (§2.2) --------------------------------------- */
#define EROFS_SUPER_MAGIC                   0xE0F5E1E2u
#define EROFS_FEATURE_COMPAT_RAFS_V6        0x40000000u
#define EROFS_FEATURE_INCOMPAT_CHUNKED_FILE 0x4u
#define EROFS_FEATURE_INCOMPAT_DEVICE_TABLE 0x8u
#define RAFS_V6_FEATURE_INCOMPAT                                                                   \
    (EROFS_FEATURE_INCOMPAT_CHUNKED_FILE | EROFS_FEATURE_INCOMPAT_DEVICE_TABLE)

struct erofs_super_block {
    uint32_t magic;
    uint32_t checksum;
    uint32_t feature_compat;
    uint8_t blkszbits;
    uint8_t extslots;
    uint16_t root_nid;
    uint64_t inos;
    uint64_t build_time;
    uint32_t build_time_nsec;
    uint32_t blocks;
    uint32_t meta_blkaddr;
    uint32_t xattr_blkaddr;
    uint8_t uuid[16];
    uint8_t volume_name[16];
    uint32_t feature_incompat;
    uint16_t u1; /* available compression algorithms / lz4 max distance */
    uint16_t extra_devices;
    uint16_t devt_slotoff;
    uint8_t reserved[38];
};
static_assert(sizeof(struct erofs_super_block) == 128, "erofs sb size");
static_assert(offsetof(struct erofs_super_block, root_nid) == 14, "root_nid");
static_assert(offsetof(struct erofs_super_block, inos) == 16, "inos");
static_assert(offsetof(struct erofs_super_block, blocks) == 36, "blocks");
static_assert(offsetof(struct erofs_super_block, meta_blkaddr) == 40, "meta_blkaddr");
static_assert(offsetof(struct erofs_super_block, feature_incompat) == 80, "feature_incompat");
static_assert(offsetof(struct erofs_super_block, extra_devices) == 86, "extra_devices");
static_assert(offsetof(struct erofs_super_block, devt_slotoff) == 88, "devt_slotoff");

/* ---- Nydus extended superblock at byte 1152, 256 bytes (§2.3) ------------------------------ */
#define RAFS_FLAG_COMPRESSION_NONE     0x1ull
#define RAFS_FLAG_COMPRESSION_LZ4      0x2ull
#define RAFS_FLAG_HASH_BLAKE3          0x4ull
#define RAFS_FLAG_HASH_SHA256          0x8ull
#define RAFS_FLAG_EXPLICIT_UID_GID     0x10ull
#define RAFS_FLAG_HAS_XATTR            0x20ull
#define RAFS_FLAG_COMPRESSION_GZIP     0x40ull
#define RAFS_FLAG_COMPRESSION_ZSTD     0x80ull
#define RAFS_FLAG_INLINED_CHUNK_DIGEST 0x100ull
#define RAFS_FLAG_TARTFS_MODE          0x200ull
#define RAFS_FLAG_ENCRYPTION_NONE      0x01000000ull
#define RAFS_FLAG_ENCRYPTION_AES128XTS 0x02000000ull
#define RAFS_FLAG_COMPRESSION_MASK                                                                 \
    (RAFS_FLAG_COMPRESSION_NONE | RAFS_FLAG_COMPRESSION_LZ4 | RAFS_FLAG_COMPRESSION_GZIP |         \
     RAFS_FLAG_COMPRESSION_ZSTD)
#define RAFS_FLAG_HASH_MASK (RAFS_FLAG_HASH_BLAKE3 | RAFS_FLAG_HASH_SHA256)

struct rafs_v6_super_ext {
    uint64_t s_flags;
    uint64_t s_blob_table_offset;
    uint32_t s_blob_table_size;
    uint32_t s_chunk_size;
    uint64_t s_chunk_table_offset;
    uint64_t s_chunk_table_size;
    uint64_t s_prefetch_table_offset;
    uint32_t s_prefetch_table_size;
    uint32_t s_padding;
    uint8_t s_reserved[200];
};
static_assert(sizeof(struct rafs_v6_super_ext) == 256, "ext sb size");
static_assert(offsetof(struct rafs_v6_super_ext, s_chunk_size) == 20, "chunk_size");
static_assert(offsetof(struct rafs_v6_super_ext, s_chunk_table_offset) == 24, "ct off");
static_assert(offsetof(struct rafs_v6_super_ext, s_prefetch_table_offset) == 40, "pf off");
static_assert(offsetof(struct rafs_v6_super_ext, s_prefetch_table_size) == 48, "pf size");

/* ---- EROFS device slot, 128 bytes, at 1408 + 128*i (§2.4) ---------------------------------- */
#define RAFS_BLOB_ID_LEN          64
#define RAFS_MAPPED_BLKADDR_ALIGN (512u * 1024u)

struct erofs_deviceslot {
    uint8_t tag[64]; /* blob id, 64 ASCII hex chars, no NUL */
    uint32_t blocks; /* uncompressed_size / 4096 */
    uint32_t mapped_blkaddr;
    uint8_t reserved[56];
};
static_assert(sizeof(struct erofs_deviceslot) == 128, "devslot size");

/* ---- Nydus blob table entry, 256 bytes (§2.5) ---------------------------------------------- */
enum rafs_compressor {
    RAFS_COMP_NONE = 0,
    RAFS_COMP_LZ4_BLOCK = 1,
    RAFS_COMP_GZIP = 2,
    RAFS_COMP_ZSTD = 3
};
enum rafs_digester { RAFS_DIGEST_BLAKE3 = 0, RAFS_DIGEST_SHA256 = 1 };

#define RAFS_BLOB_ALIGNED                    0x00000001u
#define RAFS_BLOB_INLINED_FS_META            0x00000002u
#define RAFS_BLOB_CHUNK_INFO_V2              0x00000004u
#define RAFS_BLOB_ZRAN                       0x00000008u
#define RAFS_BLOB_SEPARATE                   0x00000010u
#define RAFS_BLOB_INLINED_CHUNK_DIGEST       0x00000020u
#define RAFS_BLOB_TARFS                      0x00000040u
#define RAFS_BLOB_BATCH                      0x00000080u
#define RAFS_BLOB_ENCRYPTED                  0x00000100u
#define RAFS_BLOB_IS_CHUNKDICT_GENERATED     0x00000200u
#define RAFS_BLOB_IS_SEPARATED_WITH_PREFETCH 0x00000400u
#define RAFS_BLOB_EXTERNAL                   0x00000800u
#define RAFS_BLOB_INCOMPAT_RESERVED_MASK     0x0000F000u
#define RAFS_BLOB_HAS_TAR_HEADER             0x10000000u
#define RAFS_BLOB_HAS_TOC                    0x20000000u
#define RAFS_BLOB_CAP_TAR_TOC                0x40000000u
#define RAFS_BLOB_V5_NO_EXT_BLOB_TABLE       0x80000000u
/* Typical values written by nydus-image (§2.5.1). */
#define RAFS_BLOB_FEATURES_PLAIN (RAFS_BLOB_CAP_TAR_TOC | RAFS_BLOB_ALIGNED) /* 0x40000001 */
#define RAFS_BLOB_FEATURES_TOC                                                                     \
    (RAFS_BLOB_CAP_TAR_TOC | RAFS_BLOB_HAS_TOC | RAFS_BLOB_HAS_TAR_HEADER |                        \
     RAFS_BLOB_INLINED_CHUNK_DIGEST | RAFS_BLOB_ALIGNED) /* 0x70000021 */

struct rafs_v6_blob {
    uint8_t blob_id[64];
    uint32_t blob_index;
    uint32_t chunk_size;
    uint32_t chunk_count;
    uint32_t compression_algo; /* enum rafs_compressor */
    uint32_t digest_algo;      /* enum rafs_digester */
    uint32_t features;         /* RAFS_BLOB_* */
    uint64_t compressed_size;
    uint64_t uncompressed_size;
    uint32_t blob_toc_size;
    uint32_t ci_compressor;
    uint64_t ci_offset;
    uint64_t ci_compressed_size;
    uint64_t ci_uncompressed_size;
    uint8_t blob_toc_digest[32];
    uint8_t blob_meta_digest[32];
    uint64_t blob_meta_size;
    uint64_t cipher_iv;
    uint32_t cipher_algo;
    uint8_t reserved[36];
};
static_assert(sizeof(struct rafs_v6_blob) == 256, "blob entry size");
static_assert(offsetof(struct rafs_v6_blob, features) == 84, "features");
static_assert(offsetof(struct rafs_v6_blob, compressed_size) == 88, "compressed_size");
static_assert(offsetof(struct rafs_v6_blob, blob_toc_size) == 104, "toc size");
static_assert(offsetof(struct rafs_v6_blob, ci_offset) == 112, "ci_offset");
static_assert(offsetof(struct rafs_v6_blob, blob_toc_digest) == 136, "toc digest");
static_assert(offsetof(struct rafs_v6_blob, blob_meta_digest) == 168, "meta digest");
static_assert(offsetof(struct rafs_v6_blob, blob_meta_size) == 200, "meta size");
static_assert(offsetof(struct rafs_v6_blob, cipher_algo) == 216, "cipher algo");

/* ---- Inodes (§2.6) ------------------------------------------------------------------------- */
#define EROFS_INODE_LAYOUT_COMPACT          0
#define EROFS_INODE_LAYOUT_EXTENDED         1
#define EROFS_INODE_FLAT_PLAIN              0
#define EROFS_INODE_FLAT_COMPRESSION_LEGACY 1
#define EROFS_INODE_FLAT_INLINE             2
#define EROFS_INODE_FLAT_COMPRESSION        3
#define EROFS_INODE_CHUNK_BASED             4
#define EROFS_I_VERSION_BIT                 0
#define EROFS_I_DATALAYOUT_BIT              1
#define EROFS_I_DATALAYOUT_MASK             0x7
#define RAFS_ISLOT_SIZE                     32u /* nid unit */
/* i_format helpers: version bit 0, layout bits 1..3. */
#define RAFS_I_FORMAT(layout_ext, datalayout)                                                      \
    ((uint16_t)(((layout_ext)&1) | ((datalayout) << EROFS_I_DATALAYOUT_BIT)))
#define RAFS_I_FORMAT_VERSION(f)    ((f)&1)
#define RAFS_I_FORMAT_DATALAYOUT(f) (((f) >> EROFS_I_DATALAYOUT_BIT) & EROFS_I_DATALAYOUT_MASK)

struct erofs_inode_compact {
    uint16_t i_format;
    uint16_t i_xattr_icount;
    uint16_t i_mode;
    uint16_t i_nlink;
    uint32_t i_size;
    uint32_t i_reserved;
    uint32_t i_u; /* raw_blkaddr / rdev / chunk format */
    uint32_t i_ino;
    uint16_t i_uid;
    uint16_t i_gid;
    uint32_t i_reserved2;
};
static_assert(sizeof(struct erofs_inode_compact) == 32, "compact inode");

struct erofs_inode_extended {
    uint16_t i_format;
    uint16_t i_xattr_icount;
    uint16_t i_mode;
    uint16_t i_reserved;
    uint64_t i_size;
    uint32_t i_u;
    uint32_t i_ino;
    uint32_t i_uid;
    uint32_t i_gid;
    uint64_t i_mtime;
    uint32_t i_mtime_nsec;
    uint32_t i_nlink;
    uint8_t i_reserved2[16];
};
static_assert(sizeof(struct erofs_inode_extended) == 64, "extended inode");
static_assert(offsetof(struct erofs_inode_extended, i_u) == 16, "i_u");
static_assert(offsetof(struct erofs_inode_extended, i_mtime) == 32, "i_mtime");
static_assert(offsetof(struct erofs_inode_extended, i_nlink) == 44, "i_nlink");

/* Chunk format in i_u of CHUNK_BASED inodes (§2.10). */
#define EROFS_CHUNK_FORMAT_BLKBITS_MASK 0x1F
#define EROFS_CHUNK_FORMAT_INDEXES      0x20

/* ---- Directory entries (§2.8) -------------------------------------------------------------- */
enum erofs_file_type {
    EROFS_FT_UNKNOWN = 0,
    EROFS_FT_REG_FILE = 1,
    EROFS_FT_DIR = 2,
    EROFS_FT_CHRDEV = 3,
    EROFS_FT_BLKDEV = 4,
    EROFS_FT_FIFO = 5,
    EROFS_FT_SOCK = 6,
    EROFS_FT_SYMLINK = 7,
    EROFS_FT_MAX
};

/* The dirent file_type for an inode's i_mode (S_IFMT bits; anything else is UNKNOWN). */
static inline uint8_t rafs_mode_to_ftype(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG:
        return EROFS_FT_REG_FILE;
    case S_IFDIR:
        return EROFS_FT_DIR;
    case S_IFCHR:
        return EROFS_FT_CHRDEV;
    case S_IFBLK:
        return EROFS_FT_BLKDEV;
    case S_IFIFO:
        return EROFS_FT_FIFO;
    case S_IFSOCK:
        return EROFS_FT_SOCK;
    case S_IFLNK:
        return EROFS_FT_SYMLINK;
    }
    return EROFS_FT_UNKNOWN;
}

struct erofs_dirent {
    uint64_t nid;
    uint16_t nameoff;
    uint8_t file_type;
    uint8_t reserved;
} __attribute__((packed));
static_assert(sizeof(struct erofs_dirent) == 12, "dirent");
#define EROFS_NAME_LEN 255

/* ---- Inline xattrs (§2.9) ------------------------------------------------------------------ */
struct erofs_xattr_ibody_header {
    uint32_t h_reserved;
    uint8_t h_shared_count;
    uint8_t h_reserved2[7];
};
static_assert(sizeof(struct erofs_xattr_ibody_header) == 12, "xattr ibody header");

struct erofs_xattr_entry {
    uint8_t e_name_len;
    uint8_t e_name_index;
    uint16_t e_value_size;
    /* followed by name suffix and value, whole entry padded to 4 bytes */
};
static_assert(sizeof(struct erofs_xattr_entry) == 4, "xattr entry");
enum {
    EROFS_XATTR_INDEX_USER = 1,
    EROFS_XATTR_INDEX_POSIX_ACL_ACCESS = 2,
    EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT = 3,
    EROFS_XATTR_INDEX_TRUSTED = 4,
    EROFS_XATTR_INDEX_LUSTRE = 5,
    EROFS_XATTR_INDEX_SECURITY = 6
};
/* bytes of inline xattrs for a given i_xattr_icount */
#define RAFS_XATTR_IBODY_SIZE(icount) ((icount) ? 12u + ((uint32_t)(icount)-1u) * 4u : 0u)

/* ---- Chunk index entry in a CHUNK_BASED inode, 8 bytes (§2.10) ----------------------------- */
struct rafs_v6_chunk_index {
    uint16_t advise;    /* low 16 bits of ci index */
    uint16_t device_id; /* low byte: blob_index + 1; high byte: ci index bits 16..23 */
    uint32_t blkaddr;   /* uncompressed offset / 4096 */
};
static_assert(sizeof(struct rafs_v6_chunk_index) == 8, "chunk index");
#define RAFS_CHUNK_INDEX_BLOB(device_id) ((uint32_t)((device_id)&0xff) - 1u)
#define RAFS_CHUNK_INDEX_CI(advise, device_id)                                                     \
    ((((uint32_t)(device_id) >> 8) << 16) | (uint32_t)(advise))

/* ---- Bootstrap chunk table entry (RafsV5ChunkInfo), 80 bytes (§2.11) ----------------------- */
#define RAFS_CHUNK_COMPRESSED 0x1u
#define RAFS_CHUNK_HOLE       0x2u
#define RAFS_CHUNK_ENCRYPTED  0x4u
#define RAFS_CHUNK_BATCH      0x8u
#define RAFS_CHUNK_HAS_CRC32  0x10u

struct rafs_v5_chunk_info {
    uint8_t block_id[32];
    uint32_t blob_index;
    uint32_t flags;
    uint32_t compressed_size;
    uint32_t uncompressed_size;
    uint64_t compressed_offset;
    uint64_t uncompressed_offset;
    uint64_t file_offset;
    uint32_t index;
    uint32_t crc32;
};
static_assert(sizeof(struct rafs_v5_chunk_info) == 80, "chunk info");
static_assert(offsetof(struct rafs_v5_chunk_info, compressed_offset) == 48, "c off");
static_assert(offsetof(struct rafs_v5_chunk_info, index) == 72, "index");

/* ---- Blob compression-context ("ci") header, 4096 bytes (§3.3) ----------------------------- */
#define RAFS_CI_MAGIC       0xB10BB10Bu
#define RAFS_CI_HEADER_SIZE 4096u
struct rafs_ci_header {
    uint32_t s_magic;
    uint32_t s_features;
    uint32_t s_ci_compressor;
    uint32_t s_ci_entries;
    uint64_t s_ci_offset;
    uint64_t s_ci_compressed_size;
    uint64_t s_ci_uncompressed_size;
    uint64_t s_ci_zran_offset;
    uint64_t s_ci_zran_size;
    uint32_t s_ci_zran_count;
    uint8_t s_reserved[4032];
    uint32_t s_magic2;
};
static_assert(sizeof(struct rafs_ci_header) == 4096, "ci header");
static_assert(offsetof(struct rafs_ci_header, s_ci_zran_count) == 56, "zran count");
static_assert(offsetof(struct rafs_ci_header, s_magic2) == 4092, "magic2");

/* ci v1 entry, 16 bytes (§3.4): see rafs_ci_v1_* decode helpers in rafs/blob_meta.h */
struct rafs_ci_v1 {
    uint64_t uncomp_info;
    uint64_t comp_info;
};
static_assert(sizeof(struct rafs_ci_v1) == 16, "ci v1");
/* ci v2 entry, 24 bytes (§3.4) */
struct rafs_ci_v2 {
    uint64_t uncomp_info;
    uint64_t comp_info;
    uint64_t data;
};
static_assert(sizeof(struct rafs_ci_v2) == 24, "ci v2");
#define RAFS_CI_V2_COMPRESSED 0x01u
#define RAFS_CI_V2_ZRAN       0x02u
#define RAFS_CI_V2_BATCH      0x04u
#define RAFS_CI_V2_ENCRYPTED  0x08u
#define RAFS_CI_V2_HAS_CRC32  0x10u

/* v1 packing (§3.4), all on host-order values */
static inline uint64_t rafs_ci_v1_uncomp_offset(uint64_t u)
{
    return u & 0x00000FFFFFFFF000ull;
}
static inline uint32_t rafs_ci_v1_uncomp_size(uint64_t u)
{
    return (uint32_t)((((u >> 8) & 0xF) << 20) | (u >> 44)) + 1u;
}
static inline uint64_t rafs_ci_v1_comp_offset(uint64_t c)
{
    return c & 0xFFFFFFFFFFull;
}
static inline uint32_t rafs_ci_v1_comp_size(uint64_t c)
{
    return (uint32_t)((((c >> 40) & 0xF) << 20) | (c >> 44)) + 1u;
}
static inline uint64_t rafs_ci_v1_pack_uncomp(uint64_t off, uint32_t size)
{
    uint64_t s = (uint64_t)size - 1;
    return (off & 0x00000FFFFFFFF000ull) | (((s >> 20) & 0xF) << 8) | ((s & 0xFFFFF) << 44);
}
static inline uint64_t rafs_ci_v1_pack_comp(uint64_t off, uint32_t size)
{
    uint64_t s = (uint64_t)size - 1;
    return (off & 0xFFFFFFFFFFull) | (((s >> 20) & 0xF) << 40) | ((s & 0xFFFFF) << 44);
}
/* v2 packing */
static inline uint64_t rafs_ci_v2_uncomp_offset(uint64_t u)
{
    return (u & 0xFFFFFFFFull) << 12;
}
static inline uint32_t rafs_ci_v2_uncomp_size(uint64_t u)
{
    return (uint32_t)((u >> 32) & 0xFFFFFFull) + 1u;
}
static inline uint8_t rafs_ci_v2_flags(uint64_t u)
{
    return (uint8_t)(u >> 56);
}
static inline uint64_t rafs_ci_v2_comp_offset(uint64_t c)
{
    return c & 0xFFFFFFFFFFull;
}
static inline uint32_t rafs_ci_v2_comp_size(uint64_t c)
{
    return (uint32_t)(c >> 40);
}

/* ---- Blob tail: 512-byte GNU tar headers and the TOC (§3.2, §3.5) -------------------------- */
#define RAFS_TAR_BLOCK                 512u
#define RAFS_TOC_ENTRY_SIZE            128u
#define RAFS_TOC_NAME_BLOB             "image.blob"
#define RAFS_TOC_NAME_META             "blob.meta"
#define RAFS_TOC_NAME_META_HEADER      "blob.meta.header"
#define RAFS_TOC_NAME_DIGEST           "blob.digest"
#define RAFS_TOC_NAME_BOOT             "image.boot"
#define RAFS_TOC_NAME_TOC              "rafs.blob.toc"
#define RAFS_TOC_FLAG_NONE             0x1u
#define RAFS_TOC_FLAG_ZSTD             0x2u
#define RAFS_TOC_FLAG_LZ4_BLOCK        0x4u
#define RAFS_TOC_FLAG_COMPRESSION_MASK 0xFu

struct rafs_toc_entry {
    uint32_t flags;
    uint32_t reserved1;
    uint8_t name[16];
    uint8_t uncompressed_digest[32];
    uint64_t compressed_offset;
    uint64_t compressed_size;
    uint64_t uncompressed_size;
    uint8_t reserved2[48]; /* ignore: early builders left garbage here */
};
static_assert(sizeof(struct rafs_toc_entry) == 128, "toc entry");
static_assert(offsetof(struct rafs_toc_entry, compressed_offset) == 56, "toc c off");

/* ---- Runtime cache chunk map header (§6.4) ------------------------------------------------- */
#define RAFS_CHUNK_MAP_MAGIC     0x424D4150u
#define RAFS_CHUNK_MAP_MAGIC2    0x434D4150u
#define RAFS_CHUNK_MAP_ALL_READY 0x4D4D4150u

/* ---- RAFS v5 superblock (§4), recognised only ---------------------------------------------- */
#define RAFS_V5_MAGIC      0x52414653u
#define RAFS_V5_VERSION    0x500u
#define RAFS_V5_SUPER_SIZE 8192u

#endif
