/* RAFS v6 inodes: compact (32 B) and extended (64 B) EROFS inodes, their data layouts
 * (FLAT_PLAIN / FLAT_INLINE for directories and symlinks, CHUNK_BASED for regular files) and
 * symlink targets. Every extent is checked against the bootstrap size (nydus-format.md §2.6-7). */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "reader_priv.h"

static int log2u(uint32_t v)
{
    int b = 0;
    while (v > 1) {
        v >>= 1;
        b++;
    }
    return b;
}

/* Where the flat data of a dir/symlink lives; shared by validation and block access. */
static int flat_geometry(const struct rafs_inode *ino, uint64_t *full_blocks, uint64_t *tail_len)
{
    uint64_t size = ino->st.size;
    uint64_t nblocks = size / RAFS_BLOCK_SIZE + (size % RAFS_BLOCK_SIZE != 0);
    if (ino->st.layout == EROFS_INODE_FLAT_INLINE && nblocks) {
        /* as the kernel: the last block of an inline inode is stored after the inode */
        *full_blocks = nblocks - 1;
        *tail_len = size - (nblocks - 1) * RAFS_BLOCK_SIZE;
    } else {
        *full_blocks = nblocks;
        *tail_len = 0;
    }
    return 0;
}

static int check_flat(const rafs_image *img, const struct rafs_inode *ino, uint64_t nid,
                      cf_err *err)
{
    uint64_t full, tail;
    flat_geometry(ino, &full, &tail);
    if (full) {
        uint64_t start = (uint64_t)ino->i_u * RAFS_BLOCK_SIZE;
        if (ino->i_u == 0 || !rafs_range_ok(start, full * RAFS_BLOCK_SIZE, img->len))
            return cf_err_set(err, -EBADMSG,
                              "inode nid %llu: data blocks [%u, +%llu) outside bootstrap",
                              (unsigned long long)nid, ino->i_u, (unsigned long long)full);
    }
    if (tail) {
        uint64_t toff = ino->off + ino->isize + ino->xattr_size;
        if (!rafs_range_ok(toff, tail, img->len) ||
            (toff % RAFS_BLOCK_SIZE) + tail > RAFS_BLOCK_SIZE)
            return cf_err_set(err, -EBADMSG,
                              "inode nid %llu: inline tail of %llu bytes at %llu crosses a block "
                              "boundary or the end of the bootstrap",
                              (unsigned long long)nid, (unsigned long long)tail,
                              (unsigned long long)toff);
    }
    return 0;
}

int rafs_inode_read(const rafs_image *img, uint64_t nid, struct rafs_inode *ino, cf_err *err)
{
    uint64_t off;
    memset(ino, 0, sizeof(*ino));
    if (!rafs_mul_ok(nid, RAFS_ISLOT_SIZE, &off) || !rafs_add_ok(off, img->meta_base, &off) ||
        !rafs_range_ok(off, sizeof(struct erofs_inode_compact), img->len))
        return cf_err_set(err, -EBADMSG, "inode nid %llu: outside bootstrap",
                          (unsigned long long)nid);
    const uint8_t *p = img->data + off;
    uint16_t fmt = rafs_get16(p);
    if (fmt & ~0xFu)
        return cf_err_set(err, -EBADMSG, "inode nid %llu: unknown i_format bits 0x%04x",
                          (unsigned long long)nid, fmt);
    struct rafs_stat *st = &ino->st;
    st->ino = nid;
    st->extended = RAFS_I_FORMAT_VERSION(fmt);
    st->layout = RAFS_I_FORMAT_DATALAYOUT(fmt);
    ino->off = off;
    if (st->extended) {
        struct erofs_inode_extended di;
        if (!rafs_range_ok(off, sizeof(di), img->len))
            return cf_err_set(err, -EBADMSG, "inode nid %llu: extended inode past end of bootstrap",
                              (unsigned long long)nid);
        memcpy(&di, p, sizeof(di));
        ino->isize = 64;
        st->xattr_icount = rafs_le16(di.i_xattr_icount);
        st->mode = rafs_le16(di.i_mode);
        st->size = rafs_le64(di.i_size);
        ino->i_u = rafs_le32(di.i_u);
        st->i_ino = rafs_le32(di.i_ino);
        st->uid = rafs_le32(di.i_uid);
        st->gid = rafs_le32(di.i_gid);
        st->mtime = rafs_le64(di.i_mtime);
        st->mtime_nsec = rafs_le32(di.i_mtime_nsec);
        st->nlink = rafs_le32(di.i_nlink);
    } else {
        struct erofs_inode_compact dc;
        memcpy(&dc, p, sizeof(dc));
        ino->isize = 32;
        st->xattr_icount = rafs_le16(dc.i_xattr_icount);
        st->mode = rafs_le16(dc.i_mode);
        st->nlink = rafs_le16(dc.i_nlink);
        st->size = rafs_le32(dc.i_size);
        ino->i_u = rafs_le32(dc.i_u);
        st->i_ino = rafs_le32(dc.i_ino);
        st->uid = rafs_le16(dc.i_uid);
        st->gid = rafs_le16(dc.i_gid);
        /* compact inodes carry no mtime: the kernel reports the superblock build time */
        st->mtime = img->sb.build_time;
        st->mtime_nsec = img->sb.build_time_nsec;
    }
    ino->xattr_size = RAFS_XATTR_IBODY_SIZE(st->xattr_icount);
    if (!rafs_range_ok(off, (uint64_t)ino->isize + ino->xattr_size, img->len))
        return cf_err_set(err, -EBADMSG, "inode nid %llu: %u bytes of xattrs past end of bootstrap",
                          (unsigned long long)nid, ino->xattr_size);

    int ft = rafs_mode_to_ftype(st->mode);
    unsigned lay = st->layout;
    switch (ft) {
    case EROFS_FT_DIR:
    case EROFS_FT_SYMLINK:
        if (lay != EROFS_INODE_FLAT_PLAIN && lay != EROFS_INODE_FLAT_INLINE)
            return cf_err_set(err, lay == 1 || lay == 3 ? -ENOTSUP : -EBADMSG,
                              "inode nid %llu: %s with data layout %u (expected flat plain/inline)",
                              (unsigned long long)nid, ft == EROFS_FT_DIR ? "directory" : "symlink",
                              lay);
        if (ft == EROFS_FT_DIR && st->size < 2 * sizeof(struct erofs_dirent) + 3)
            return cf_err_set(err, -EBADMSG,
                              "inode nid %llu: directory size %llu too small for . and ..",
                              (unsigned long long)nid, (unsigned long long)st->size);
        if (ft == EROFS_FT_DIR && st->size > img->len)
            return cf_err_set(err, -EBADMSG,
                              "inode nid %llu: directory size %llu exceeds bootstrap",
                              (unsigned long long)nid, (unsigned long long)st->size);
        if (ft == EROFS_FT_SYMLINK && (st->size == 0 || st->size >= RAFS_PATH_MAX))
            return cf_err_set(err, -EBADMSG,
                              "inode nid %llu: symlink target length %llu not in [1, 4095]",
                              (unsigned long long)nid, (unsigned long long)st->size);
        return check_flat(img, ino, nid, err);
    case EROFS_FT_REG_FILE: {
        if (lay != EROFS_INODE_CHUNK_BASED)
            return cf_err_set(err, lay == 1 || lay == 3 ? -ENOTSUP : -EBADMSG,
                              "inode nid %llu: regular file with data layout %u (RAFS needs "
                              "chunk-based)",
                              (unsigned long long)nid, lay);
        uint32_t cf = ino->i_u;
        if ((cf & ~0x3Fu) || !(cf & EROFS_CHUNK_FORMAT_INDEXES))
            return cf_err_set(
                err, -EBADMSG,
                "inode nid %llu: chunk format 0x%x (need 8-byte indexes, no other bits)",
                (unsigned long long)nid, cf);
        uint32_t bits = RAFS_BLOCK_BITS + (cf & EROFS_CHUNK_FORMAT_BLKBITS_MASK);
        if (bits < (uint32_t)log2u(img->sb.chunk_size))
            return cf_err_set(
                err, -EBADMSG,
                "inode nid %llu: chunk bits %u smaller than superblock chunk size 0x%x",
                (unsigned long long)nid, bits, img->sb.chunk_size);
        /* the index array must fit the bootstrap: this also bounds the file size */
        uint64_t n = st->size / img->sb.chunk_size + (st->size % img->sb.chunk_size != 0);
        uint64_t ioff = (off + ino->isize + ino->xattr_size + 7) & ~7ull;
        uint64_t bytes;
        if (!rafs_mul_ok(n, 8, &bytes) || !rafs_range_ok(ioff, bytes, img->len))
            return cf_err_set(
                err, -EBADMSG,
                "inode nid %llu: %llu chunk indexes for size %llu run past the end of "
                "the bootstrap",
                (unsigned long long)nid, (unsigned long long)n, (unsigned long long)st->size);
        return 0;
    }
    case EROFS_FT_CHRDEV:
    case EROFS_FT_BLKDEV:
    case EROFS_FT_FIFO:
    case EROFS_FT_SOCK:
        if (lay != EROFS_INODE_FLAT_PLAIN && lay != EROFS_INODE_FLAT_INLINE)
            return cf_err_set(err, -EBADMSG, "inode nid %llu: special file with data layout %u",
                              (unsigned long long)nid, lay);
        if (ft == EROFS_FT_CHRDEV || ft == EROFS_FT_BLKDEV) st->rdev = ino->i_u;
        st->size = 0;
        return 0;
    default:
        return cf_err_set(err, -EBADMSG, "inode nid %llu: unknown file type in mode 0%o",
                          (unsigned long long)nid, st->mode);
    }
}

int rafs_inode_flat_block(const rafs_image *img, const struct rafs_inode *ino, uint64_t blk,
                          const uint8_t **ptr, uint32_t *len, cf_err *err)
{
    uint64_t full, tail;
    flat_geometry(ino, &full, &tail);
    if (blk < full) {
        uint64_t rem = ino->st.size - blk * RAFS_BLOCK_SIZE;
        *ptr = img->data + (uint64_t)ino->i_u * RAFS_BLOCK_SIZE + blk * RAFS_BLOCK_SIZE;
        *len = rem < RAFS_BLOCK_SIZE ? (uint32_t)rem : RAFS_BLOCK_SIZE;
        return 0;
    }
    if (blk == full && tail) {
        *ptr = img->data + ino->off + ino->isize + ino->xattr_size;
        *len = (uint32_t)tail;
        return 0;
    }
    return cf_err_set(err, -EINVAL, "inode nid %llu: block %llu past size",
                      (unsigned long long)ino->st.ino, (unsigned long long)blk);
}

int rafs_stat(const rafs_image *img, uint64_t nid, struct rafs_stat *st, cf_err *err)
{
    struct rafs_inode ino;
    int rc = rafs_inode_read(img, nid, &ino, err);
    if (rc) return rc;
    *st = ino.st;
    return 0;
}

int rafs_readlink(const rafs_image *img, uint64_t nid, char *buf, size_t cap, size_t *len,
                  cf_err *err)
{
    struct rafs_inode ino;
    int rc = rafs_inode_read(img, nid, &ino, err);
    if (rc) return rc;
    if ((ino.st.mode & S_IFMT) != S_IFLNK)
        return cf_err_set(err, -EINVAL, "inode nid %llu is not a symlink", (unsigned long long)nid);
    size_t n = (size_t)ino.st.size, done = 0;
    *len = n;
    if (cap < n) return cf_err_set(err, -ERANGE, "symlink target of %zu bytes", n);
    for (uint64_t blk = 0; done < n; blk++) {
        const uint8_t *p;
        uint32_t l;
        rc = rafs_inode_flat_block(img, &ino, blk, &p, &l, err);
        if (rc) return rc;
        memcpy(buf + done, p, l);
        done += l;
    }
    if (memchr(buf, 0, n))
        return cf_err_set(err, -EBADMSG, "inode nid %llu: symlink target contains a NUL byte",
                          (unsigned long long)nid);
    if (cap > n) buf[n] = 0;
    return 0;
}
