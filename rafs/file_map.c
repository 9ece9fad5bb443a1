/* File range -> chunk references: the 8-byte chunk indexes of CHUNK_BASED inodes (counted
 * with the extended-superblock chunk size), resolved through the bootstrap chunk table or an
 * attached blob ci array (nydus-format.md §2.10, §2.11). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "reader_priv.h"

static int reg_inode(const rafs_image *img, uint64_t nid, struct rafs_inode *ino, uint64_t *n,
                     cf_err *err)
{
    int rc = rafs_inode_read(img, nid, ino, err);
    if (rc) return rc;
    if ((ino->st.mode & S_IFMT) != S_IFREG)
        return cf_err_set(err, (ino->st.mode & S_IFMT) == S_IFDIR ? -EISDIR : -EINVAL,
                          "inode nid %llu is not a regular file", (unsigned long long)nid);
    uint64_t cs = img->sb.chunk_size;
    *n = ino->st.size / cs + (ino->st.size % cs != 0);
    return 0;
}

int rafs_file_chunk_count(const rafs_image *img, uint64_t nid, uint64_t *count, cf_err *err)
{
    struct rafs_inode ino;
    return reg_inode(img, nid, &ino, count, err);
}

static int chunk_at(const rafs_image *img, const struct rafs_inode *ino, uint64_t n, uint64_t idx,
                    struct rafs_chunk_ref *ref, cf_err *err)
{
    unsigned long long nid = (unsigned long long)ino->st.ino;
    if (idx >= n)
        return cf_err_set(err, -EINVAL, "inode nid %llu: chunk %llu of %llu", nid,
                          (unsigned long long)idx, (unsigned long long)n);
    uint64_t ioff = ((ino->off + ino->isize + ino->xattr_size + 7) & ~7ull) + idx * 8;
    const uint8_t *e = img->data + ioff; /* in range: checked by rafs_inode_read */
    uint16_t advise = rafs_get16(e), dev = rafs_get16(e + 2);
    uint32_t blkaddr = rafs_get32(e + 4);
    uint32_t devno = dev & 0xff;
    if (blkaddr == 0xFFFFFFFFu)
        return cf_err_set(err, -EBADMSG,
                          "inode nid %llu: chunk %llu is a hole (never written by "
                          "RAFS builders)",
                          nid, (unsigned long long)idx);
    if (devno == 0 || devno > img->sb.blob_count)
        return cf_err_set(err, -EBADMSG,
                          "inode nid %llu: chunk %llu names device %u (image has %u blobs)", nid,
                          (unsigned long long)idx, devno, img->sb.blob_count);
    uint32_t blob = devno - 1, ci = RAFS_CHUNK_INDEX_CI(advise, dev);
    const struct rafs_blob_info *bi = &img->blobs[blob];
    if (ci >= bi->chunk_count)
        return cf_err_set(err, -EBADMSG,
                          "inode nid %llu: chunk %llu has ci index %u >= chunk count %u of blob %s",
                          nid, (unsigned long long)idx, ci, bi->chunk_count, bi->id);
    uint64_t cs = img->sb.chunk_size;
    uint64_t fo = idx * cs;
    uint64_t rem = ino->st.size - fo;
    uint32_t want = rem < cs ? (uint32_t)rem : (uint32_t)cs;

    memset(ref, 0, sizeof(*ref));
    ref->blob_index = blob;
    ref->blob_id = bi->id;
    ref->ci_index = ci;
    ref->file_offset = fo;
    const struct rafs_ct_entry *ct = rafs_ct_lookup(img, blob, ci);
    const struct rafs_blob_meta *m = img->metas ? img->metas[blob] : NULL;
    if (ct) {
        ref->compressed_offset = ct->compressed_offset;
        ref->compressed_size = ct->compressed_size;
        ref->uncompressed_offset = ct->uncompressed_offset;
        ref->uncompressed_size = ct->uncompressed_size;
        ref->flags = ct->flags;
        ref->crc32 = ct->crc32;
        ref->has_digest = 1;
        memcpy(ref->digest, ct->digest, 32);
    } else if (m) {
        const struct rafs_ci *c = &m->ci[ci];
        ref->compressed_offset = c->compressed_offset;
        ref->compressed_size = c->compressed_size;
        ref->uncompressed_offset = c->uncompressed_offset;
        ref->uncompressed_size = c->uncompressed_size;
        if (c->flags & RAFS_CI_V2_COMPRESSED) ref->flags |= RAFS_CHUNK_COMPRESSED;
        if (c->flags & RAFS_CI_V2_ENCRYPTED) ref->flags |= RAFS_CHUNK_ENCRYPTED;
        if (c->flags & RAFS_CI_V2_BATCH) ref->flags |= RAFS_CHUNK_BATCH;
        if (c->flags & RAFS_CI_V2_HAS_CRC32) {
            ref->flags |= RAFS_CHUNK_HAS_CRC32;
            ref->crc32 = (uint32_t)c->data;
        }
        if (m->digests) {
            ref->has_digest = 1;
            memcpy(ref->digest, m->digests[ci], 32);
        }
    } else {
        return cf_err_set(err, -ENODATA,
                          "inode nid %llu: chunk %llu (blob %s ci %u) is not in the bootstrap "
                          "chunk table; the blob's ci array is needed",
                          nid, (unsigned long long)idx, bi->id, ci);
    }
    ref->compressed = (ref->flags & RAFS_CHUNK_COMPRESSED) != 0;
    if ((uint64_t)blkaddr * RAFS_BLOCK_SIZE != ref->uncompressed_offset)
        return cf_err_set(err, -EBADMSG,
                          "inode nid %llu: chunk %llu block address %u disagrees with chunk info "
                          "uncompressed offset 0x%llx",
                          nid, (unsigned long long)idx, blkaddr,
                          (unsigned long long)ref->uncompressed_offset);
    if (ref->uncompressed_size != want)
        return cf_err_set(err, -EBADMSG,
                          "inode nid %llu: chunk %llu is %u bytes, file size %llu needs %u", nid,
                          (unsigned long long)idx, ref->uncompressed_size,
                          (unsigned long long)ino->st.size, want);
    return 0;
}

int rafs_file_chunk(const rafs_image *img, uint64_t nid, uint64_t idx, struct rafs_chunk_ref *ref,
                    cf_err *err)
{
    struct rafs_inode ino;
    uint64_t n = 0;
    int rc = reg_inode(img, nid, &ino, &n, err);
    if (rc) return rc;
    return chunk_at(img, &ino, n, idx, ref, err);
}

int rafs_file_map(const rafs_image *img, uint64_t nid, uint64_t offset, uint64_t len,
                  struct rafs_chunk_ref **out, size_t *count, cf_err *err)
{
    struct rafs_inode ino;
    uint64_t n = 0;
    *out = NULL;
    *count = 0;
    int rc = reg_inode(img, nid, &ino, &n, err);
    if (rc) return rc;
    uint64_t size = ino.st.size, cs = img->sb.chunk_size;
    if (offset >= size || len == 0) return 0;
    if (len > size - offset) len = size - offset;
    uint64_t first = offset / cs, last = (offset + len - 1) / cs;
    uint64_t k = last - first + 1;
    if (k > RAFS_MAP_MAX_CHUNKS)
        return cf_err_set(err, -E2BIG,
                          "inode nid %llu: range covers %llu chunks (limit %u per call)",
                          (unsigned long long)nid, (unsigned long long)k, RAFS_MAP_MAX_CHUNKS);
    struct rafs_chunk_ref *refs = calloc((size_t)k, sizeof(*refs));
    if (!refs)
        return cf_err_set(err, -ENOMEM, "out of memory for %llu chunk refs", (unsigned long long)k);
    for (uint64_t i = 0; i < k; i++) {
        rc = chunk_at(img, &ino, n, first + i, &refs[i], err);
        if (rc) {
            free(refs);
            return rc;
        }
    }
    *out = refs;
    *count = (size_t)k;
    return 0;
}
