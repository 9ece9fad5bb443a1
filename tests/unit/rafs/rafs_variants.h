/* Hand-made variants of the real fixture v6/rafs-v6-2.2.boot (root nid 128 with dirents
 * ".", "..", "lib.rs" (nid 133), "sync_io.rs" (nid 136)), to exercise symlinks, whiteouts, hard
 * links, xattrs and corrupt trees with real nydus-written bytes around them. The kernel mounts
 * the valid variants too, which gives an independent view to compare with.
 * Each function patches a 20480-byte copy in place; returns 0, or -1 when the input is not the
 * expected fixture (offsets below were decoded by hand, nydus-format.md §2.15). */
#ifndef RAFS_VARIANTS_H
#define RAFS_VARIANTS_H

#include <stdint.h>
#include <string.h>

#define RV_SIZE       20480u
#define RV_ROOT       0x3000u /* root inode (extended, inline dirents at +64) */
#define RV_DIRENTS    0x3040u /* ".", "..", "lib.rs", "sync_io.rs" */
#define RV_LIB        0x30a0u /* nid 133 */
#define RV_SYNC       0x3100u /* nid 136, chunk index at +64 */
#define RV_FREE_BLOCK 2u      /* block 2 (0x2000) is the unused first meta block */

static inline void rv_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void rv_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void rv_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline int rv_is_fixture(const uint8_t *b, size_t len)
{
    return len == RV_SIZE && b[RV_ROOT] == 0x05 && b[RV_LIB] == 0x09 && b[RV_SYNC] == 0x09 &&
           b[RV_DIRENTS + 36] == 136 && memcmp(b + RV_DIRENTS + 48 + 3, "lib.rs", 6) == 0;
}

/* sync_io.rs becomes an inline symlink to "lib.rs" */
static inline int rv_symlink(uint8_t *b, size_t len)
{
    if (!rv_is_fixture(b, len)) return -1;
    rv_put16(b + RV_SYNC, 0x0005); /* extended, FLAT_INLINE */
    rv_put16(b + RV_SYNC + 4, 0120777);
    rv_put64(b + RV_SYNC + 8, 6);
    rv_put32(b + RV_SYNC + 16, 0);
    memset(b + RV_SYNC + 64, 0, 8);
    memcpy(b + RV_SYNC + 64, "lib.rs", 6);
    b[RV_DIRENTS + 36 + 10] = 7; /* EROFS_FT_SYMLINK */
    return 0;
}

/* sync_io.rs becomes an overlayfs whiteout: char device 0:0 */
static inline int rv_whiteout(uint8_t *b, size_t len)
{
    if (!rv_is_fixture(b, len)) return -1;
    rv_put16(b + RV_SYNC, 0x0001); /* extended, FLAT_PLAIN */
    rv_put16(b + RV_SYNC + 4, 020000);
    rv_put64(b + RV_SYNC + 8, 0);
    rv_put32(b + RV_SYNC + 16, 0);
    b[RV_DIRENTS + 36 + 10] = 3; /* EROFS_FT_CHRDEV */
    return 0;
}

/* "sync_io.rs" becomes a second name of lib.rs (nid 133, nlink 2) */
static inline int rv_hardlink(uint8_t *b, size_t len)
{
    if (!rv_is_fixture(b, len)) return -1;
    rv_put64(b + RV_DIRENTS + 36, 133);
    rv_put32(b + RV_LIB + 44, 2);
    return 0;
}

/* root dirents move to the free block 2 (FLAT_PLAIN) and the root gets inline xattrs:
 * user.foo=bar, trusted.overlay.opaque=y, security.test=xyzw (+ a POSIX ACL when acl) */
static inline int rv_xattr(uint8_t *b, size_t len, int acl)
{
    if (!rv_is_fixture(b, len)) return -1;
    uint8_t *blk = b + RV_FREE_BLOCK * 4096u;
    memcpy(blk, b + RV_DIRENTS, 67);
    memset(b + RV_DIRENTS, 0, 0x60);
    rv_put16(b + RV_ROOT, 0x0001); /* extended, FLAT_PLAIN */
    rv_put32(b + RV_ROOT + 16, RV_FREE_BLOCK);
    uint8_t *x = b + RV_ROOT + 64, *p = x + 12;
    p[0] = 3, p[1] = 1, rv_put16(p + 2, 3),
    memcpy(p + 4,
           "foo"
           "bar",
           6),
    p += 12;
    p[0] = 14, p[1] = 4, rv_put16(p + 2, 1),
    memcpy(p + 4,
           "overlay.opaque"
           "y",
           15),
    p += 20;
    p[0] = 4, p[1] = 6, rv_put16(p + 2, 4),
    memcpy(p + 4,
           "test"
           "xyzw",
           8),
    p += 12;
    if (acl) {
        /* version 2, one ACL_USER_OBJ entry rw- */
        static const uint8_t v[] = {2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff};
        p[0] = 0, p[1] = 2, rv_put16(p + 2, sizeof(v)), memcpy(p + 4, v, sizeof(v)), p += 16;
    }
    uint32_t total = (uint32_t)(p - x);
    rv_put16(b + RV_ROOT + 2, (uint16_t)((total - 12) / 4 + 1));
    return 0;
}

/* sync_io.rs becomes a FIFO (kind 'p') or a socket (kind 's') */
static inline int rv_special(uint8_t *b, size_t len, char kind)
{
    if (!rv_is_fixture(b, len)) return -1;
    rv_put16(b + RV_SYNC, 0x0001);
    rv_put16(b + RV_SYNC + 4, kind == 'p' ? 010640 : 0140755);
    rv_put64(b + RV_SYNC + 8, 0);
    rv_put32(b + RV_SYNC + 16, 0);
    b[RV_DIRENTS + 36 + 10] = kind == 'p' ? 5 : 6;
    return 0;
}

/* lib.rs becomes a 32-byte compact inode (chunk index moves to the next 8-byte boundary);
 * compact inodes have no mtime: readers report the superblock build time (0 here) */
static inline int rv_compact(uint8_t *b, size_t len)
{
    if (!rv_is_fixture(b, len)) return -1;
    uint8_t idx[8];
    memcpy(idx, b + RV_LIB + 64, 8);
    memset(b + RV_LIB, 0, 0x60);
    rv_put16(b + RV_LIB, 0x0008); /* compact, CHUNK_BASED */
    rv_put16(b + RV_LIB + 4, 0100600);
    rv_put16(b + RV_LIB + 6, 1); /* nlink */
    rv_put32(b + RV_LIB + 8, 16931);
    rv_put32(b + RV_LIB + 16, 0x28); /* chunk format: indexes, 1 MiB */
    rv_put32(b + RV_LIB + 20, 2);
    rv_put16(b + RV_LIB + 24, 1000); /* uid */
    rv_put16(b + RV_LIB + 26, 100);  /* gid */
    memcpy(b + RV_LIB + 32, idx, 8);
    return 0;
}

/* "sync_io.rs" becomes a directory entry pointing back at the root: a directory loop */
static inline int rv_loop(uint8_t *b, size_t len)
{
    if (!rv_is_fixture(b, len)) return -1;
    rv_put64(b + RV_DIRENTS + 36, 128);
    b[RV_DIRENTS + 36 + 10] = 2;
    return 0;
}

/* "." of the root points at lib.rs */
static inline int rv_bad_dot(uint8_t *b, size_t len)
{
    if (!rv_is_fixture(b, len)) return -1;
    rv_put64(b + RV_DIRENTS, 133);
    return 0;
}

#endif
