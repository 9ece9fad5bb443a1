/* Inline extended attributes of RAFS v6 inodes (no shared xattr area): 12-byte ibody header,
 * then 4-byte-aligned entries with a name-prefix index (nydus-format.md §2.9). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "reader_priv.h"

static const char *prefix_of(uint8_t index)
{
    switch (index) {
    case EROFS_XATTR_INDEX_USER:
        return "user.";
    case EROFS_XATTR_INDEX_POSIX_ACL_ACCESS:
        return "system.posix_acl_access";
    case EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT:
        return "system.posix_acl_default";
    case EROFS_XATTR_INDEX_TRUSTED:
        return "trusted.";
    case EROFS_XATTR_INDEX_SECURITY:
        return "security.";
    }
    return NULL;
}

int rafs_xattr_foreach(const rafs_image *img, uint64_t nid, rafs_xattr_fn fn, void *ctx,
                       cf_err *err)
{
    struct rafs_inode ino;
    int rc = rafs_inode_read(img, nid, &ino, err);
    if (rc) return rc;
    if (!ino.xattr_size) return 0;
    const uint8_t *p = img->data + ino.off + ino.isize;
    uint32_t end = ino.xattr_size, pos = sizeof(struct erofs_xattr_ibody_header);
    if (p[4] != 0)
        return cf_err_set(err, -EBADMSG,
                          "inode nid %llu: %u shared xattrs, but there is no shared "
                          "xattr area",
                          (unsigned long long)nid, p[4]);
    char name[EROFS_NAME_LEN + 32];
    while (pos < end) {
        if (end - pos < sizeof(struct erofs_xattr_entry))
            return cf_err_set(err, -EBADMSG, "inode nid %llu: truncated xattr entry at +%u",
                              (unsigned long long)nid, pos);
        uint8_t nlen = p[pos], idx = p[pos + 1];
        uint16_t vlen = rafs_get16(p + pos + 2);
        uint32_t esz = (4u + nlen + vlen + 3u) & ~3u;
        if (esz > end - pos)
            return cf_err_set(err, -EBADMSG,
                              "inode nid %llu: xattr entry at +%u (name %u, value %u bytes) runs "
                              "past the %u-byte xattr area",
                              (unsigned long long)nid, pos, nlen, vlen, end);
        const char *pre = prefix_of(idx);
        if (!pre)
            return cf_err_set(err, -EBADMSG,
                              "inode nid %llu: xattr entry at +%u has unknown name "
                              "index %u",
                              (unsigned long long)nid, pos, idx);
        int acl =
            idx == EROFS_XATTR_INDEX_POSIX_ACL_ACCESS || idx == EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT;
        if ((!acl && nlen == 0) || (acl && nlen != 0))
            return cf_err_set(err, -EBADMSG,
                              "inode nid %llu: xattr entry at +%u: bad name length %u",
                              (unsigned long long)nid, pos, nlen);
        const uint8_t *n = p + pos + 4;
        if (memchr(n, 0, nlen))
            return cf_err_set(err, -EBADMSG, "inode nid %llu: xattr name contains NUL",
                              (unsigned long long)nid);
        snprintf(name, sizeof(name), "%s%.*s", pre, (int)nlen, (const char *)n);
        rc = fn(name, n + nlen, vlen, ctx);
        if (rc) return rc;
        pos += esz;
    }
    return 0;
}

struct list_ctx {
    char *buf;
    size_t cap, len;
};

static int list_cb(const char *name, const void *v, size_t vl, void *c)
{
    (void)v;
    (void)vl;
    struct list_ctx *l = c;
    size_t n = strlen(name) + 1;
    if (l->buf && l->len + n <= l->cap) memcpy(l->buf + l->len, name, n);
    l->len += n;
    return 0;
}

int rafs_listxattr(const rafs_image *img, uint64_t nid, char *buf, size_t cap, size_t *len,
                   cf_err *err)
{
    struct list_ctx l = {buf, cap, 0};
    int rc = rafs_xattr_foreach(img, nid, list_cb, &l, err);
    if (rc) return rc;
    *len = l.len;
    if (buf && l.len > cap) return cf_err_set(err, -ERANGE, "xattr list needs %zu bytes", l.len);
    return 0;
}

struct get_ctx {
    const char *name;
    void *buf;
    size_t cap, len;
    int found;
};

static int get_cb(const char *name, const void *v, size_t vl, void *c)
{
    struct get_ctx *g = c;
    if (strcmp(name, g->name)) return 0;
    g->found = 1;
    g->len = vl;
    if (g->buf && vl <= g->cap) memcpy(g->buf, v, vl);
    return 1;
}

int rafs_getxattr(const rafs_image *img, uint64_t nid, const char *name, void *buf, size_t cap,
                  size_t *len, cf_err *err)
{
    struct get_ctx g = {name, buf, cap, 0, 0};
    int rc = rafs_xattr_foreach(img, nid, get_cb, &g, err);
    if (rc < 0) return rc;
    if (!g.found) return cf_err_set(err, -ENODATA, "no xattr %s", name);
    *len = g.len;
    if (buf && g.len > cap)
        return cf_err_set(err, -ERANGE, "xattr %s needs %zu bytes", name, g.len);
    return 0;
}
