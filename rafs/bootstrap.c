/* RAFS v6 bootstrap open: superblock, extended superblock, device table, blob table,
 * prefetch table and chunk table, validated as nydusd does (nydus-format.md §2.2-§2.12). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf/file_io.h"
#include "cf/hex.h"
#include "cf/log.h"
#include "rafs/compressor.h"
#include "reader_priv.h"

int rafs_detect_version(const void *buf, size_t len, cf_err *err)
{
    const uint8_t *p = buf;
    if (len >= RAFS_SUPER_OFFSET + sizeof(struct erofs_super_block) &&
        rafs_get32(p + RAFS_SUPER_OFFSET) == EROFS_SUPER_MAGIC)
        return 6;
    if (len >= 8 && rafs_get32(p) == RAFS_V5_MAGIC && rafs_get32(p + 4) == RAFS_V5_VERSION)
        return 5;
    if (len < RAFS_SUPER_OFFSET + sizeof(struct erofs_super_block) && len < RAFS_V5_SUPER_SIZE)
        return cf_err_set(err, -EBADMSG, "not a RAFS bootstrap: only %zu bytes", len);
    return cf_err_set(err, -EBADMSG,
                      "not a RAFS bootstrap: no EROFS magic 0x%08x at offset 1024 and no RAFS v5 "
                      "magic 0x%08x at offset 0",
                      EROFS_SUPER_MAGIC, RAFS_V5_MAGIC);
}

static int image_fail(rafs_image *img, int rc)
{
    rafs_image_close(img);
    return rc;
}

void rafs_image_close(rafs_image *img)
{
    if (!img) return;
    if (img->metas) {
        for (uint32_t i = 0; i < img->sb.blob_count; i++) rafs_blob_meta_free(img->metas[i]);
        free(img->metas);
    }
    free(img->blobs);
    free(img->ct);
    if (img->mapped)
        munmap(img->data, img->len);
    else
        free(img->data);
    free(img);
}

static int parse_super(rafs_image *img, cf_err *err)
{
    const uint8_t *d = img->data;
    uint64_t len = img->len;
    struct erofs_super_block sb;
    struct rafs_v6_super_ext ext;

    if (len < RAFS_BLOCK_SIZE)
        return cf_err_set(err, -EBADMSG, "bootstrap too small: %llu bytes (< 4096)",
                          (unsigned long long)len);
    if (len % RAFS_BLOCK_SIZE)
        return cf_err_set(err, -EBADMSG, "bootstrap size %llu is not a multiple of 4096",
                          (unsigned long long)len);
    memcpy(&sb, d + RAFS_SUPER_OFFSET, sizeof(sb));
    memcpy(&ext, d + RAFS_EXT_SUPER_OFFSET, sizeof(ext));

    if (rafs_le32(sb.magic) != EROFS_SUPER_MAGIC)
        return cf_err_set(err, -EBADMSG, "superblock: bad magic 0x%08x", rafs_le32(sb.magic));
    if (rafs_le32(sb.checksum) != 0)
        return cf_err_set(err, -EBADMSG, "superblock: checksum 0x%08x must be 0",
                          rafs_le32(sb.checksum));
    if (!(rafs_le32(sb.feature_compat) & EROFS_FEATURE_COMPAT_RAFS_V6))
        return cf_err_set(err, -EBADMSG,
                          "superblock: feature_compat 0x%08x lacks RAFS_V6 bit 0x40000000",
                          rafs_le32(sb.feature_compat));
    if (sb.blkszbits == 9)
        return cf_err_set(err, -ENOTSUP, "superblock: 512-byte blocks (tarfs mode) not supported");
    if (sb.blkszbits != RAFS_BLOCK_BITS)
        return cf_err_set(err, -EBADMSG, "superblock: blkszbits %u (expected 12)", sb.blkszbits);
    if (sb.extslots != 0)
        return cf_err_set(err, -EBADMSG, "superblock: extslots %u must be 0", sb.extslots);
    if (rafs_le64(sb.inos) == 0) return cf_err_set(err, -EBADMSG, "superblock: inos is 0");
    if (rafs_le32(sb.xattr_blkaddr) != 0)
        return cf_err_set(err, -EBADMSG,
                          "superblock: xattr_blkaddr %u must be 0 (no shared xattrs)",
                          rafs_le32(sb.xattr_blkaddr));
    if (rafs_le32(sb.feature_incompat) != RAFS_V6_FEATURE_INCOMPAT)
        return cf_err_set(err, -EBADMSG,
                          "superblock: feature_incompat 0x%08x (expected 0x0000000c: chunked "
                          "files + device table)",
                          rafs_le32(sb.feature_incompat));
    if (rafs_le16(sb.u1) != 0)
        return cf_err_set(err, -EBADMSG, "superblock: compression field u1 0x%04x must be 0",
                          rafs_le16(sb.u1));
    if (rafs_le16(sb.devt_slotoff) != RAFS_DEVT_SLOTOFF)
        return cf_err_set(err, -EBADMSG, "superblock: devt_slotoff %u (expected 11 = offset 1408)",
                          rafs_le16(sb.devt_slotoff));
    uint32_t ndev = rafs_le16(sb.extra_devices);
    if (ndev > RAFS_MAX_BLOBS)
        return cf_err_set(err, -EBADMSG, "superblock: extra_devices %u > %u", ndev, RAFS_MAX_BLOBS);
    uint32_t blocks = rafs_le32(sb.blocks);
    if (ndev == 0 && blocks != 0 && blocks != 4096)
        return cf_err_set(err, -EBADMSG, "superblock: blocks %u with no extra device", blocks);
    uint64_t meta_base = (uint64_t)rafs_le32(sb.meta_blkaddr) * RAFS_BLOCK_SIZE;
    if (meta_base > len || meta_base == 0)
        return cf_err_set(err, -EBADMSG,
                          "superblock: meta_blkaddr %u outside bootstrap (%llu bytes)",
                          rafs_le32(sb.meta_blkaddr), (unsigned long long)len);

    uint64_t flags = rafs_le64(ext.s_flags);
    enum rafs_compressor comp;
    if (rafs_compressor_from_flags(flags, &comp) != 0)
        return cf_err_set(err, -EBADMSG,
                          "extended superblock: flags 0x%llx must hold exactly one compression bit",
                          (unsigned long long)flags);
    uint64_t h = flags & RAFS_FLAG_HASH_MASK;
    if (h != RAFS_FLAG_HASH_BLAKE3 && h != RAFS_FLAG_HASH_SHA256)
        return cf_err_set(err, -EBADMSG,
                          "extended superblock: flags 0x%llx must hold exactly one hash bit",
                          (unsigned long long)flags);
    if (flags & RAFS_FLAG_TARTFS_MODE)
        return cf_err_set(err, -ENOTSUP, "extended superblock: tarfs mode not supported");
    uint32_t chunk_size = rafs_le32(ext.s_chunk_size);
    if (chunk_size < RAFS_MIN_CHUNK_SIZE || chunk_size > RAFS_MAX_CHUNK_SIZE ||
        (chunk_size & (chunk_size - 1)))
        return cf_err_set(err, -EBADMSG,
                          "extended superblock: chunk size 0x%x not a power of two in "
                          "[4 KiB, 16 MiB]",
                          chunk_size);

    uint64_t root = rafs_le16(sb.root_nid);
    img->meta_base = meta_base;
    img->sb.bootstrap_size = len;
    img->sb.flags = flags;
    img->sb.chunk_size = chunk_size;
    img->sb.compressor = comp;
    img->sb.digester = h == RAFS_FLAG_HASH_BLAKE3 ? RAFS_DIGEST_BLAKE3 : RAFS_DIGEST_SHA256;
    img->sb.root_nid = root;
    img->sb.inos = rafs_le64(sb.inos);
    img->sb.meta_blkaddr = rafs_le32(sb.meta_blkaddr);
    img->sb.blocks = blocks;
    img->sb.build_time = rafs_le64(sb.build_time);
    img->sb.build_time_nsec = rafs_le32(sb.build_time_nsec);
    img->sb.blob_count = ndev;

    /* blob table */
    uint64_t bt_off = rafs_le64(ext.s_blob_table_offset);
    uint64_t bt_size = rafs_le32(ext.s_blob_table_size);
    if (bt_size != (uint64_t)ndev * sizeof(struct rafs_v6_blob))
        return cf_err_set(err, -EBADMSG,
                          "extended superblock: blob table size %llu != 256 * extra_devices (%u)",
                          (unsigned long long)bt_size, ndev);
    if (ndev) {
        if (bt_off % RAFS_BLOCK_SIZE || bt_off < RAFS_BLOCK_SIZE ||
            !rafs_range_ok(bt_off, bt_size, len))
            return cf_err_set(err, -EBADMSG,
                              "extended superblock: blob table [%llu, +%llu) not 4 KiB aligned "
                              "or outside bootstrap (%llu bytes)",
                              (unsigned long long)bt_off, (unsigned long long)bt_size,
                              (unsigned long long)len);
        if (RAFS_DEVTABLE_OFFSET + (uint64_t)ndev * sizeof(struct erofs_deviceslot) > bt_off)
            return cf_err_set(err, -EBADMSG,
                              "device table (%u slots) overlaps the blob table at %llu", ndev,
                              (unsigned long long)bt_off);
    }
    /* prefetch table */
    uint64_t pf_off = rafs_le64(ext.s_prefetch_table_offset);
    uint32_t pf_size = rafs_le32(ext.s_prefetch_table_size);
    if (pf_size % 4)
        return cf_err_set(err, -EBADMSG,
                          "extended superblock: prefetch table size %u not a multiple of 4",
                          pf_size);
    if (pf_size && (pf_off < RAFS_BLOCK_SIZE || !rafs_range_ok(pf_off, pf_size, len)))
        return cf_err_set(err, -EBADMSG,
                          "extended superblock: prefetch table [%llu, +%u) outside bootstrap",
                          (unsigned long long)pf_off, pf_size);
    img->sb.prefetch_table_offset = pf_off;
    img->sb.prefetch_count = pf_size / 4;
    /* chunk table */
    uint64_t ct_off = rafs_le64(ext.s_chunk_table_offset);
    uint64_t ct_size = rafs_le64(ext.s_chunk_table_size);
    if (ct_size % sizeof(struct rafs_v5_chunk_info))
        return cf_err_set(err, -EBADMSG,
                          "extended superblock: chunk table size %llu not a multiple of 80",
                          (unsigned long long)ct_size);
    if (ct_size && (ct_off % RAFS_BLOCK_SIZE || ct_off < RAFS_BLOCK_SIZE ||
                    !rafs_range_ok(ct_off, ct_size, len)))
        return cf_err_set(err, -EBADMSG,
                          "extended superblock: chunk table [%llu, +%llu) not 4 KiB aligned or "
                          "outside bootstrap",
                          (unsigned long long)ct_off, (unsigned long long)ct_size);
    img->sb.chunk_table_offset = ct_off;
    img->sb.chunk_table_count = ct_size / sizeof(struct rafs_v5_chunk_info);

    /* root inode must at least lie inside the file (full checks happen on read) */
    uint64_t root_off;
    if (!rafs_mul_ok(root, RAFS_ISLOT_SIZE, &root_off) ||
        !rafs_add_ok(root_off, meta_base, &root_off) || !rafs_range_ok(root_off, 32, len))
        return cf_err_set(err, -EBADMSG, "superblock: root nid %llu outside bootstrap",
                          (unsigned long long)root);
    return 0;
}

static int blob_id_ok(const uint8_t *p, size_t n, char *out)
{
    size_t l = 0;
    while (l < n && p[l]) l++;
    if (l == 0) return 0;
    for (size_t i = 0; i < l; i++)
        if (p[i] < 0x21 || p[i] > 0x7e) return 0;
    for (size_t i = l; i < n; i++)
        if (p[i]) return 0;
    memcpy(out, p, l);
    out[l] = 0;
    return 1;
}

static int parse_blobs(rafs_image *img, cf_err *err)
{
    uint32_t n = img->sb.blob_count;
    if (!n) return 0;
    img->blobs = calloc(n, sizeof(*img->blobs));
    img->metas = calloc(n, sizeof(*img->metas));
    if (!img->blobs || !img->metas) return cf_err_set(err, -ENOMEM, "out of memory");
    struct rafs_v6_super_ext ext;
    memcpy(&ext, img->data + RAFS_EXT_SUPER_OFFSET, sizeof(ext));
    uint64_t bt_off = rafs_le64(ext.s_blob_table_offset);

    for (uint32_t i = 0; i < n; i++) {
        struct rafs_v6_blob b;
        struct erofs_deviceslot ds;
        struct rafs_blob_info *bi = &img->blobs[i];
        memcpy(&b, img->data + bt_off + (uint64_t)i * sizeof(b), sizeof(b));
        memcpy(&ds, img->data + RAFS_DEVTABLE_OFFSET + (uint64_t)i * sizeof(ds), sizeof(ds));
        if (!blob_id_ok(b.blob_id, sizeof(b.blob_id), bi->id))
            return cf_err_set(err, -EBADMSG,
                              "blob table entry %u: blob id is empty or not printable ASCII", i);
        if (memcmp(ds.tag, b.blob_id, sizeof(ds.tag)) != 0)
            return cf_err_set(err, -EBADMSG, "device slot %u: tag differs from blob table id %s", i,
                              bi->id);
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(img->blobs[j].id, bi->id))
                return cf_err_set(err, -EBADMSG,
                                  "blob table: duplicate blob id %s (entries %u and %u)", bi->id, j,
                                  i);
        bi->index = rafs_le32(b.blob_index);
        bi->chunk_size = rafs_le32(b.chunk_size);
        bi->chunk_count = rafs_le32(b.chunk_count);
        uint32_t ca = rafs_le32(b.compression_algo), da = rafs_le32(b.digest_algo);
        uint32_t cca = rafs_le32(b.ci_compressor);
        bi->features = rafs_le32(b.features);
        bi->compressed_size = rafs_le64(b.compressed_size);
        bi->uncompressed_size = rafs_le64(b.uncompressed_size);
        bi->toc_size = rafs_le32(b.blob_toc_size);
        bi->ci_offset = rafs_le64(b.ci_offset);
        bi->ci_compressed_size = rafs_le64(b.ci_compressed_size);
        bi->ci_uncompressed_size = rafs_le64(b.ci_uncompressed_size);
        memcpy(bi->toc_digest, b.blob_toc_digest, 32);
        static const uint8_t zero[32];
        bi->has_toc_digest = memcmp(bi->toc_digest, zero, 32) != 0;
        memcpy(bi->meta_digest, b.blob_meta_digest, 32);
        bi->meta_size = rafs_le64(b.blob_meta_size);
        bi->cipher_algo = rafs_le32(b.cipher_algo);
        bi->dev_blocks = rafs_le32(ds.blocks);
        bi->dev_mapped_blkaddr = rafs_le32(ds.mapped_blkaddr);

        const char *id = bi->id;
        if (bi->index != i)
            return cf_err_set(err, -EBADMSG, "blob %s: blob_index %u at table position %u", id,
                              bi->index, i);
        if (bi->chunk_size != img->sb.chunk_size)
            return cf_err_set(err, -EBADMSG,
                              "blob %s: chunk size 0x%x differs from superblock 0x%x", id,
                              bi->chunk_size, img->sb.chunk_size);
        if (bi->chunk_count > (1u << 24))
            return cf_err_set(err, -EBADMSG, "blob %s: chunk count %u > 2^24", id, bi->chunk_count);
        if (ca > RAFS_COMP_ZSTD || cca > RAFS_COMP_ZSTD)
            return cf_err_set(err, -EBADMSG, "blob %s: unknown compressor %u / ci compressor %u",
                              id, ca, cca);
        if (da > RAFS_DIGEST_SHA256)
            return cf_err_set(err, -EBADMSG, "blob %s: unknown digest algorithm %u", id, da);
        bi->compressor = (enum rafs_compressor)ca;
        bi->digester = (enum rafs_digester)da;
        bi->ci_compressor = (enum rafs_compressor)cca;
        if (!(bi->features & RAFS_BLOB_ALIGNED))
            return cf_err_set(err, -EBADMSG,
                              "blob %s: features 0x%08x lack ALIGNED (required by v6)", id,
                              bi->features);
        if (bi->features & (RAFS_BLOB_INCOMPAT_RESERVED_MASK | RAFS_BLOB_V5_NO_EXT_BLOB_TABLE))
            return cf_err_set(err, -EBADMSG, "blob %s: unknown incompatible feature bits in 0x%08x",
                              id, bi->features);
        if (bi->features & RAFS_BLOB_TARFS)
            return cf_err_set(err, -ENOTSUP, "blob %s: tarfs blobs not supported", id);
        if (bi->uncompressed_size > (1ull << 44))
            return cf_err_set(err, -EBADMSG, "blob %s: uncompressed size %llu > 2^44", id,
                              (unsigned long long)bi->uncompressed_size);
        if (bi->cipher_algo > 3)
            return cf_err_set(err, -EBADMSG, "blob %s: unknown cipher %u", id, bi->cipher_algo);
        if (bi->ci_compressed_size > bi->ci_uncompressed_size)
            return cf_err_set(err, -EBADMSG,
                              "blob %s: ci compressed size %llu > uncompressed size %llu", id,
                              (unsigned long long)bi->ci_compressed_size,
                              (unsigned long long)bi->ci_uncompressed_size);
        uint64_t esz = (bi->features & RAFS_BLOB_CHUNK_INFO_V2) ? 24 : 16;
        uint64_t need = (uint64_t)bi->chunk_count * esz;
        int extra = (bi->features & (RAFS_BLOB_ZRAN | RAFS_BLOB_BATCH)) != 0;
        if (bi->ci_uncompressed_size &&
            (extra ? bi->ci_uncompressed_size < need : bi->ci_uncompressed_size != need))
            return cf_err_set(err, -EBADMSG,
                              "blob %s: ci uncompressed size %llu inconsistent with %u chunks of "
                              "%llu bytes",
                              id, (unsigned long long)bi->ci_uncompressed_size, bi->chunk_count,
                              (unsigned long long)esz);
        if (bi->ci_uncompressed_size > RAFS_CI_MAX_SIZE)
            return cf_err_set(err, -EBADMSG, "blob %s: ci size %llu over limit", id,
                              (unsigned long long)bi->ci_uncompressed_size);
        uint64_t blocks = (bi->uncompressed_size + RAFS_BLOCK_SIZE - 1) / RAFS_BLOCK_SIZE;
        if (bi->dev_blocks != blocks)
            return cf_err_set(err, -EBADMSG,
                              "device slot %u: blocks %u != blob uncompressed size %llu / 4096", i,
                              bi->dev_blocks, (unsigned long long)bi->uncompressed_size);
    }
    return 0;
}

static int ct_cmp(const void *a, const void *b)
{
    const struct rafs_ct_entry *x = a, *y = b;
    if (x->blob_index != y->blob_index) return x->blob_index < y->blob_index ? -1 : 1;
    if (x->ci_index != y->ci_index) return x->ci_index < y->ci_index ? -1 : 1;
    return 0;
}

static int parse_chunk_table(rafs_image *img, cf_err *err)
{
    uint64_t n = img->sb.chunk_table_count;
    if (!n) return 0;
    img->ct = calloc(n, sizeof(*img->ct)); /* n is bounded by the bootstrap size / 80 */
    if (!img->ct)
        return cf_err_set(err, -ENOMEM, "out of memory for %llu chunk records",
                          (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        struct rafs_v5_chunk_info c;
        struct rafs_ct_entry *e = &img->ct[i];
        memcpy(&c, img->data + img->sb.chunk_table_offset + i * sizeof(c), sizeof(c));
        e->blob_index = rafs_le32(c.blob_index);
        e->ci_index = rafs_le32(c.index);
        e->flags = rafs_le32(c.flags);
        e->compressed_size = rafs_le32(c.compressed_size);
        e->uncompressed_size = rafs_le32(c.uncompressed_size);
        e->compressed_offset = rafs_le64(c.compressed_offset);
        e->uncompressed_offset = rafs_le64(c.uncompressed_offset);
        e->crc32 = rafs_le32(c.crc32);
        memcpy(e->digest, c.block_id, 32);
        if (e->blob_index >= img->sb.blob_count)
            return cf_err_set(err, -EBADMSG, "chunk table record %llu: blob index %u >= %u blobs",
                              (unsigned long long)i, e->blob_index, img->sb.blob_count);
        const struct rafs_blob_info *bi = &img->blobs[e->blob_index];
        if (e->ci_index >= bi->chunk_count)
            return cf_err_set(err, -EBADMSG,
                              "chunk table record %llu: ci index %u >= chunk count %u of blob %s",
                              (unsigned long long)i, e->ci_index, bi->chunk_count, bi->id);
        if (e->flags & ~(uint32_t)(RAFS_CHUNK_COMPRESSED | RAFS_CHUNK_ENCRYPTED | RAFS_CHUNK_BATCH |
                                   RAFS_CHUNK_HAS_CRC32))
            return cf_err_set(err, -EBADMSG, "chunk table record %llu: unknown flags 0x%x",
                              (unsigned long long)i, e->flags);
        if (e->uncompressed_size == 0 || e->uncompressed_size > RAFS_MAX_CHUNK_SIZE ||
            e->compressed_size == 0 || e->compressed_size > 2 * RAFS_MAX_CHUNK_SIZE)
            return cf_err_set(err, -EBADMSG, "chunk table record %llu: sizes %u/%u out of range",
                              (unsigned long long)i, e->compressed_size, e->uncompressed_size);
        if (!(e->flags & (RAFS_CHUNK_COMPRESSED | RAFS_CHUNK_ENCRYPTED)) &&
            e->compressed_size != e->uncompressed_size)
            return cf_err_set(err, -EBADMSG,
                              "chunk table record %llu: uncompressed chunk with sizes %u != %u",
                              (unsigned long long)i, e->compressed_size, e->uncompressed_size);
        if (e->uncompressed_offset % RAFS_BLOCK_SIZE ||
            !rafs_range_ok(e->uncompressed_offset, e->uncompressed_size, bi->uncompressed_size))
            return cf_err_set(err, -EBADMSG,
                              "chunk table record %llu: uncompressed extent [0x%llx, +0x%x) "
                              "unaligned or past blob %s size 0x%llx",
                              (unsigned long long)i, (unsigned long long)e->uncompressed_offset,
                              e->uncompressed_size, bi->id,
                              (unsigned long long)bi->uncompressed_size);
        if (!(bi->features & (RAFS_BLOB_ZRAN | RAFS_BLOB_SEPARATE)) && bi->compressed_size &&
            !rafs_range_ok(e->compressed_offset, e->compressed_size, bi->compressed_size))
            return cf_err_set(err, -EBADMSG,
                              "chunk table record %llu: compressed extent [0x%llx, +0x%x) past "
                              "blob %s size 0x%llx",
                              (unsigned long long)i, (unsigned long long)e->compressed_offset,
                              e->compressed_size, bi->id, (unsigned long long)bi->compressed_size);
    }
    qsort(img->ct, n, sizeof(*img->ct), ct_cmp);
    img->ct_count = n;
    return 0;
}

const struct rafs_ct_entry *rafs_ct_lookup(const rafs_image *img, uint32_t blob, uint32_t ci)
{
    size_t lo = 0, hi = img->ct_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct rafs_ct_entry *e = &img->ct[mid];
        if (e->blob_index < blob || (e->blob_index == blob && e->ci_index < ci))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < img->ct_count && img->ct[lo].blob_index == blob && img->ct[lo].ci_index == ci)
        return &img->ct[lo];
    return NULL;
}

/* data: heap (mapped 0) or a mapping (mapped 1), owned from here on, also on failure. */
static int open_owned(uint8_t *data, size_t len, int mapped, rafs_image **out, cf_err *err)
{
    rafs_image *img = calloc(1, sizeof(*img));
    if (!img) {
        if (mapped)
            munmap(data, len);
        else
            free(data);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    img->data = data;
    img->len = len;
    img->mapped = mapped;
    int v = rafs_detect_version(data, len, err);
    if (v < 0) return image_fail(img, v);
    if (v == 5)
        return image_fail(img, cf_err_set(err, -ENOTSUP,
                                          "this is a RAFS v5 bootstrap: v5 is recognised only "
                                          "(superblock and blob table); RAFS v6 is supported"));
    int rc = parse_super(img, err);
    if (!rc) rc = parse_blobs(img, err);
    if (!rc) rc = parse_chunk_table(img, err);
    if (!rc) {
        for (uint32_t i = 0; i < img->sb.prefetch_count; i++) {
            uint64_t nid = rafs_image_prefetch_nid(img, i);
            struct rafs_inode ino;
            rc = rafs_inode_read(img, nid, &ino, err);
            if (rc) {
                rc = cf_err_wrap(err, rc, "prefetch table entry %u", i);
                break;
            }
        }
    }
    if (!rc) {
        struct rafs_stat st;
        rc = rafs_stat(img, img->sb.root_nid, &st, err);
        if (rc)
            rc = cf_err_wrap(err, rc, "root inode");
        else if ((st.mode & 0170000) != 0040000)
            rc = cf_err_set(err, -EBADMSG, "root inode nid %llu is not a directory (mode 0%o)",
                            (unsigned long long)img->sb.root_nid, st.mode);
    }
    if (rc) return image_fail(img, rc);
    *out = img;
    return 0;
}

int rafs_image_open_buf(const void *buf, size_t len, rafs_image **out, cf_err *err)
{
    if (len > RAFS_BOOTSTRAP_MAX_SIZE)
        return cf_err_set(err, -EFBIG, "bootstrap of %zu bytes exceeds the %llu-byte limit", len,
                          (unsigned long long)RAFS_BOOTSTRAP_MAX_SIZE);
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return cf_err_set(err, -ENOMEM, "out of memory for a %zu-byte bootstrap", len);
    if (len) memcpy(copy, buf, len);
    return open_owned(copy, len, 0, out, err);
}

int rafs_image_open(const char *path, rafs_image **out, cf_err *err)
{
    /* Mapped, not read: the pages are the page cache's, shared and reclaimable, and only what
     * is touched counts (a 100k-file image's bootstrap is tens of MiB). Like nydusd, the file
     * must not change while the image is open. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cf_err_set(err, -errno, "bootstrap %s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = cf_err_set(err, -errno, "bootstrap %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = cf_err_set(err, -EINVAL, "bootstrap %s: not a regular file", path);
    else if ((uint64_t)st.st_size > RAFS_BOOTSTRAP_MAX_SIZE)
        rc = cf_err_set(err, -EFBIG, "bootstrap %s: %lld bytes exceed the %llu-byte limit", path,
                        (long long)st.st_size, (unsigned long long)RAFS_BOOTSTRAP_MAX_SIZE);
    else if (st.st_size == 0)
        rc = cf_err_set(err, -EBADMSG, "bootstrap %s: empty file", path);
    if (rc) {
        close(fd);
        return rc;
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return cf_err_set(err, -e, "bootstrap %s: mmap: %s", path, strerror(e));
    rc = open_owned(map, len, 1, out, err);
    if (rc) return cf_err_wrap(err, rc, "bootstrap %s", path);
    return 0;
}

const struct rafs_super_info *rafs_image_super(const rafs_image *img)
{
    return &img->sb;
}

const uint8_t *rafs_image_data(const rafs_image *img, size_t *len)
{
    if (len) *len = img->len;
    return img->data;
}

uint32_t rafs_image_blob_count(const rafs_image *img)
{
    return img->sb.blob_count;
}

const struct rafs_blob_info *rafs_image_blob(const rafs_image *img, uint32_t idx)
{
    return idx < img->sb.blob_count ? &img->blobs[idx] : NULL;
}

uint32_t rafs_image_prefetch_count(const rafs_image *img)
{
    return img->sb.prefetch_count;
}

uint64_t rafs_image_prefetch_nid(const rafs_image *img, uint32_t i)
{
    if (i >= img->sb.prefetch_count) return 0;
    return rafs_get32(img->data + img->sb.prefetch_table_offset + 4ull * i);
}

int rafs_image_attach_blob_meta(rafs_image *img, uint32_t idx, struct rafs_blob_meta *meta,
                                cf_err *err)
{
    if (idx >= img->sb.blob_count) {
        rafs_blob_meta_free(meta);
        return cf_err_set(err, -EINVAL, "attach blob meta: no blob %u", idx);
    }
    if (meta->count != img->blobs[idx].chunk_count) {
        uint32_t c = meta->count;
        rafs_blob_meta_free(meta);
        return cf_err_set(err, -EBADMSG, "blob %s: ci array has %u entries, blob table says %u",
                          img->blobs[idx].id, c, img->blobs[idx].chunk_count);
    }
    rafs_blob_meta_free(img->metas[idx]);
    img->metas[idx] = meta;
    return 0;
}

void rafs_blob_features_str(uint32_t f, char *buf, size_t cap)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {
        {RAFS_BLOB_ALIGNED, "aligned"},
        {RAFS_BLOB_INLINED_FS_META, "inlined-fs-meta"},
        {RAFS_BLOB_CHUNK_INFO_V2, "chunk-info-v2"},
        {RAFS_BLOB_ZRAN, "zran"},
        {RAFS_BLOB_SEPARATE, "separate"},
        {RAFS_BLOB_INLINED_CHUNK_DIGEST, "inlined-chunk-digest"},
        {RAFS_BLOB_TARFS, "tarfs"},
        {RAFS_BLOB_BATCH, "batch"},
        {RAFS_BLOB_ENCRYPTED, "encrypted"},
        {RAFS_BLOB_IS_CHUNKDICT_GENERATED, "chunkdict-generated"},
        {RAFS_BLOB_IS_SEPARATED_WITH_PREFETCH, "separated-with-prefetch-files"},
        {RAFS_BLOB_EXTERNAL, "external"},
        {RAFS_BLOB_HAS_TAR_HEADER, "tar-header"},
        {RAFS_BLOB_HAS_TOC, "blob-toc"},
        {RAFS_BLOB_CAP_TAR_TOC, "cap-tar-toc"},
    };
    size_t used = 0;
    if (cap) buf[0] = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!(f & names[i].bit)) continue;
        int n = snprintf(buf + used, cap > used ? cap - used : 0, "%s%s", used ? " " : "",
                         names[i].name);
        if (n < 0 || (size_t)n >= cap - used) return;
        used += (size_t)n;
    }
}
