/* RAFS v5 recognition: the 8 KiB v5 superblock and its blob table are parsed (bounds-checked)
 * so tools can say clearly what a v5 bootstrap is; the v5 tree itself is not read
 * (nydus-format.md §4). */
#include <errno.h>
#include <string.h>

#include "reader_priv.h"

int rafs_v5_probe(const void *buf, size_t len, struct rafs_v5_info *out, cf_err *err)
{
    const uint8_t *p = buf;
    memset(out, 0, sizeof(*out));
    if (len < RAFS_V5_SUPER_SIZE)
        return cf_err_set(err, -EBADMSG, "RAFS v5: %zu bytes, smaller than the 8 KiB superblock",
                          len);
    if (rafs_get32(p) != RAFS_V5_MAGIC || rafs_get32(p + 4) != RAFS_V5_VERSION)
        return cf_err_set(err, -EBADMSG, "RAFS v5: bad magic/version 0x%08x/0x%x", rafs_get32(p),
                          rafs_get32(p + 4));
    if (rafs_get32(p + 8) != RAFS_V5_SUPER_SIZE)
        return cf_err_set(err, -EBADMSG, "RAFS v5: superblock size %u (expected 8192)",
                          rafs_get32(p + 8));
    out->fs_version = RAFS_V5_VERSION;
    out->chunk_size = rafs_get32(p + 12);
    out->flags = rafs_get64(p + 16);
    out->inodes_count = rafs_get64(p + 24);
    out->inode_table_entries = rafs_get32(p + 56);
    uint64_t it_off = rafs_get64(p + 32);
    uint64_t bt_off = rafs_get64(p + 48);
    uint32_t bt_size = rafs_get32(p + 64);
    if (out->chunk_size < RAFS_MIN_CHUNK_SIZE || out->chunk_size > RAFS_MAX_CHUNK_SIZE ||
        (out->chunk_size & (out->chunk_size - 1)))
        return cf_err_set(err, -EBADMSG, "RAFS v5: chunk size 0x%x invalid", out->chunk_size);
    if (!rafs_range_ok(it_off, (uint64_t)out->inode_table_entries * 4, len))
        return cf_err_set(err, -EBADMSG,
                          "RAFS v5: inode table (%u entries at %llu) past end of file",
                          out->inode_table_entries, (unsigned long long)it_off);
    if (!rafs_range_ok(bt_off, bt_size, len))
        return cf_err_set(err, -EBADMSG, "RAFS v5: blob table [%llu, +%u) past end of file",
                          (unsigned long long)bt_off, bt_size);
    /* blob table: { u32 readahead_offset, u32 readahead_size, id } separated by NUL */
    const uint8_t *b = p + bt_off, *end = b + bt_size;
    while (end - b >= 8) {
        const uint8_t *id = b + 8, *z = memchr(id, 0, (size_t)(end - id));
        size_t idlen = z ? (size_t)(z - id) : (size_t)(end - id);
        if (idlen == 0) break; /* padding */
        if (out->blob_count == 0) {
            size_t n = idlen < RAFS_BLOB_ID_LEN ? idlen : RAFS_BLOB_ID_LEN;
            memcpy(out->first_blob_id, id, n);
            out->first_blob_id[n] = 0;
        }
        out->blob_count++;
        if (!z) break;
        b = z + 1;
    }
    return 0;
}
