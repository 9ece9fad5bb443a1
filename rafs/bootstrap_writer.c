/* RAFS v6 bootstrap writer: lays out a rafs_tree as an EROFS image with Nydus tables
 * (nydus-format.md §2). Layout: block 0 = superblock + extended superblock + device table;
 * then blob table + prefetch table; meta area (first block unused, so root nid = 128) with
 * 64-byte extended inodes in BFS order, inline xattrs, inline dir/symlink tails and chunk
 * indexes; then full directory/symlink blocks; then the 80-byte chunk table sorted by digest. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cf/buf.h"
#include "cf/log.h"
#include "rafs/builder.h"
#include "rafs/compressor.h"

#define BS              RAFS_BLOCK_SIZE
#define ROUND_UP(x, a)  ((((uint64_t)(x)) + (a)-1) / (a) * (a))
#define MAX_XATTR_IBODY (BS - sizeof(struct erofs_inode_extended))

struct lay {
    struct rafs_node *node; /* first dirent of the inode (directories: the only one) */
    struct rafs_inode *ino;
    uint64_t off;   /* absolute byte offset of the inode */
    uint32_t xsize; /* inline xattr bytes */
    uint64_t dsize; /* dir: dirent bytes; symlink: target length */
    int inl;        /* FLAT_INLINE */
    uint32_t blkaddr, nblocks;
    uint32_t nlink;
};

struct dent {
    const char *name;
    size_t len;
    struct rafs_inode *ino;
    uint8_t type;
};

static int xattr_split(const char *name, uint8_t *index, const char **suffix)
{
    static const struct {
        const char *p;
        uint8_t idx;
        int whole;
    } map[] = {
        {"system.posix_acl_access", EROFS_XATTR_INDEX_POSIX_ACL_ACCESS, 1},
        {"system.posix_acl_default", EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT, 1},
        {"user.", EROFS_XATTR_INDEX_USER, 0},
        {"trusted.", EROFS_XATTR_INDEX_TRUSTED, 0},
        {"security.", EROFS_XATTR_INDEX_SECURITY, 0},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        size_t l = strlen(map[i].p);
        if (map[i].whole ? !strcmp(name, map[i].p) : !strncmp(name, map[i].p, l)) {
            *index = map[i].idx;
            *suffix = name + l;
            return 0;
        }
    }
    return -EINVAL;
}

static int xattr_cmp(const void *a, const void *b)
{
    return strcmp(((const struct rafs_xattr *)a)->name, ((const struct rafs_xattr *)b)->name);
}

/* Bytes of the inline xattr body (0 without xattrs), checked to fit next to the inode. */
static int xattr_size(struct rafs_inode *ino, const char *path, uint32_t *out, cf_err *err)
{
    *out = 0;
    if (!ino->nxattrs) return 0;
    qsort(ino->xattrs, ino->nxattrs, sizeof(*ino->xattrs), xattr_cmp);
    uint64_t sz = sizeof(struct erofs_xattr_ibody_header);
    for (size_t i = 0; i < ino->nxattrs; i++) {
        uint8_t idx = 0;
        const char *suf = "";
        if (xattr_split(ino->xattrs[i].name, &idx, &suf))
            return cf_err_set(err, -EINVAL, "'%s': xattr '%s' has an unsupported prefix", path,
                              ino->xattrs[i].name);
        if (strlen(suf) > 255)
            return cf_err_set(err, -EINVAL, "'%s': xattr name '%s' too long", path,
                              ino->xattrs[i].name);
        sz +=
            ROUND_UP(sizeof(struct erofs_xattr_entry) + strlen(suf) + ino->xattrs[i].value_len, 4);
    }
    if (sz > MAX_XATTR_IBODY)
        return cf_err_set(err, -E2BIG, "'%s': xattrs take %llu bytes, at most %zu fit inline", path,
                          (unsigned long long)sz, (size_t)MAX_XATTR_IBODY);
    *out = (uint32_t)sz;
    return 0;
}

static void xattr_write(const struct rafs_inode *ino, uint8_t *p)
{
    p += sizeof(struct erofs_xattr_ibody_header); /* all zero: no shared xattrs */
    for (size_t i = 0; i < ino->nxattrs; i++) {
        uint8_t idx = 0;
        const char *suf = "";
        xattr_split(ino->xattrs[i].name, &idx, &suf); /* validated by xattr_size() */
        size_t nl = strlen(suf), vl = ino->xattrs[i].value_len;
        struct erofs_xattr_entry e = {(uint8_t)nl, idx, rafs_to_le16((uint16_t)vl)};
        memcpy(p, &e, sizeof(e));
        memcpy(p + sizeof(e), suf, nl);
        if (vl) memcpy(p + sizeof(e) + nl, ino->xattrs[i].value, vl);
        p += ROUND_UP(sizeof(e) + nl + vl, 4);
    }
}

static int dent_cmp(const void *a, const void *b)
{
    const struct dent *x = a, *y = b;
    size_t l = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, l);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Sorted entries of a directory incl. "." and ".." (caller frees). */
static struct dent *dir_entries(struct rafs_node *d, size_t *n)
{
    struct dent *v = malloc((d->nchildren + 2) * sizeof(*v));
    if (!v) return NULL;
    v[0] = (struct dent){".", 1, d->inode, EROFS_FT_DIR};
    v[1] = (struct dent){"..", 2, d->parent ? d->parent->inode : d->inode, EROFS_FT_DIR};
    for (size_t i = 0; i < d->nchildren; i++) {
        struct rafs_node *c = d->children[i];
        v[i + 2] =
            (struct dent){c->name, strlen(c->name), c->inode, rafs_mode_to_ftype(c->inode->mode)};
    }
    *n = d->nchildren + 2;
    qsort(v, *n, sizeof(*v), dent_cmp);
    return v;
}

/* Packs dirents into 4 KiB blocks (§2.8); returns d_size. With out != NULL writes them (out
 * has room for ceil(d_size/4096) blocks, zeroed). */
static uint64_t dir_pack(const struct dent *v, size_t n, uint8_t *out)
{
    uint64_t total = 0;
    size_t i = 0;
    while (i < n) {
        size_t k = 0, used = 0;
        while (i + k < n && used + sizeof(struct erofs_dirent) + v[i + k].len <= BS) {
            used += sizeof(struct erofs_dirent) + v[i + k].len;
            k++;
        }
        if (out) {
            uint8_t *blk = out + total;
            size_t nameoff = k * sizeof(struct erofs_dirent);
            for (size_t j = 0; j < k; j++) {
                struct erofs_dirent de = {rafs_to_le64(v[i + j].ino->nid),
                                          rafs_to_le16((uint16_t)nameoff), v[i + j].type, 0};
                memcpy(blk + j * sizeof(de), &de, sizeof(de));
                memcpy(blk + nameoff, v[i + j].name, v[i + j].len);
                nameoff += v[i + j].len;
            }
        }
        i += k;
        total += (i < n) ? BS : used;
    }
    return total;
}

/* "/a/b" of a dirent, for messages (truncated from the left when longer than cap). */
static void node_path(const struct rafs_node *n, char *buf, size_t cap)
{
    size_t pos = cap - 1;
    buf[pos] = 0;
    if (!n->parent) {
        snprintf(buf, cap, "/");
        return;
    }
    for (; n && n->parent; n = n->parent) {
        size_t l = strlen(n->name);
        if (l + 1 > pos) break;
        pos -= l;
        memcpy(buf + pos, n->name, l);
        buf[--pos] = '/';
    }
    memmove(buf, buf + pos, cap - pos);
}

static int chunk_cmp(const void *a, const void *b)
{
    const struct rafs_chunk *x = *(struct rafs_chunk *const *)a,
                            *y = *(struct rafs_chunk *const *)b;
    int c = memcmp(x->digest, y->digest, 32);
    if (c) return c;
    return (x->blob_index > y->blob_index) - (x->blob_index < y->blob_index);
}

int rafs_bootstrap_build(struct rafs_tree *t, const struct rafs_chunk_table *chunks,
                         const struct rafs_boot_opts *o, struct cf_buf *out, cf_err *err)
{
    int rc = 0;
    if (o->nblobs > RAFS_MAX_BLOBS)
        return cf_err_set(err, -EINVAL, "%u data blobs: RAFS v6 supports at most %u", o->nblobs,
                          RAFS_MAX_BLOBS);
    rafs_tree_sort(t);
    /* BFS order of dirents */
    size_t nn = t->nodes, qh = 0, qt = 0;
    struct rafs_node **q = malloc(nn * sizeof(*q));
    struct lay *L = calloc(nn, sizeof(*L));
    struct rafs_chunk **sorted = NULL;
    uint32_t *pf = NULL;
    uint8_t *img = NULL;
    size_t nl = 0, npf = 0;
    if (!q || !L) {
        rc = -ENOMEM;
        goto out;
    }
    q[qt++] = t->root;
    while (qh < qt) {
        struct rafs_node *n = q[qh++];
        n->inode->placed = 0;
        for (size_t i = 0; i < n->nchildren && qt < nn; i++) q[qt++] = n->children[i];
    }
    /* one layout record per inode, in BFS order of its first dirent */
    int has_xattr = 0;
    for (size_t i = 0; i < qt; i++) {
        struct rafs_inode *ino = q[i]->inode;
        if (ino->placed) continue;
        ino->placed = 1;
        ino->ino = (uint32_t)(nl + 1);
        struct lay *l = &L[nl++];
        l->node = q[i];
        l->ino = ino;
        if (ino->nxattrs) {
            char path[1024];
            node_path(q[i], path, sizeof(path));
            if ((rc = xattr_size(ino, path, &l->xsize, err))) goto out;
        }
        if (ino->nxattrs) has_xattr = 1;
        if (S_ISDIR(ino->mode)) {
            size_t ne;
            struct dent *v = dir_entries(q[i], &ne);
            if (!v) {
                rc = -ENOMEM;
                goto out;
            }
            l->dsize = dir_pack(v, ne, NULL);
            free(v);
            l->nlink = 2;
            for (size_t c = 0; c < q[i]->nchildren; c++)
                if (S_ISDIR(q[i]->children[c]->inode->mode)) l->nlink++;
        } else {
            l->nlink = ino->refs;
            if (S_ISLNK(ino->mode)) l->dsize = ino->symlink ? strlen(ino->symlink) : 0;
        }
    }
    /* prefetch entries (resolved now, nids filled in later) */
    struct rafs_inode **pfi = NULL;
    size_t npl = 0;
    if (o->prefetch) {
        while (o->prefetch[npl]) npl++;
        pfi = calloc(npl ? npl : 1, sizeof(*pfi));
        if (!pfi) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < npl; i++) {
            struct rafs_node *n = rafs_tree_lookup(t, o->prefetch[i]);
            if (!n) {
                cf_warn("prefetch: '%s' not found in the image, ignored", o->prefetch[i]);
                continue;
            }
            int dup = 0;
            for (size_t j = 0; j < npf; j++) dup |= pfi[j] == n->inode;
            if (!dup) pfi[npf++] = n->inode;
        }
    }
    uint64_t blob_table_off = ROUND_UP(RAFS_DEVTABLE_OFFSET + 128ull * o->nblobs, BS);
    uint64_t pf_off = blob_table_off + 256ull * o->nblobs;
    uint64_t meta = ROUND_UP(pf_off + 4ull * npf, BS);
    if (meta / BS > UINT32_MAX) {
        rc = cf_err_set(err, -EFBIG, "metadata too large");
        free(pfi);
        goto out;
    }
    /* place inodes */
    uint64_t pos = BS; /* relative to meta; first block left empty (root nid 128) */
    for (size_t i = 0; i < nl; i++) {
        struct lay *l = &L[i];
        uint32_t head = (uint32_t)sizeof(struct erofs_inode_extended) + l->xsize;
        uint64_t total = head, unit = head;
        if (S_ISREG(l->ino->mode)) {
            total = ROUND_UP(head, 8) + 8 * l->ino->nchunks;
        } else if (S_ISDIR(l->ino->mode) || S_ISLNK(l->ino->mode)) {
            uint64_t tail = l->dsize % BS;
            l->inl = tail && head + tail <= BS;
            if (l->inl) total = unit = head + tail;
            l->nblocks = (uint32_t)(l->inl ? l->dsize / BS : (l->dsize + BS - 1) / BS);
        }
        pos = ROUND_UP(pos, RAFS_ISLOT_SIZE);
        if (pos % BS + unit > BS) pos = ROUND_UP(pos, BS);
        l->off = meta + pos;
        l->ino->nid = pos / RAFS_ISLOT_SIZE;
        pos += total;
    }
    uint64_t cur = ROUND_UP(meta + pos, BS);
    for (size_t i = 0; i < nl; i++) {
        if (!L[i].nblocks) continue;
        if (cur / BS > UINT32_MAX) {
            rc = cf_err_set(err, -EFBIG, "metadata too large");
            free(pfi);
            goto out;
        }
        L[i].blkaddr = (uint32_t)(cur / BS);
        cur += (uint64_t)L[i].nblocks * BS;
    }
    uint64_t ct_off = chunks->n ? ROUND_UP(cur, BS) : 0;
    uint64_t ct_size = (uint64_t)chunks->n * sizeof(struct rafs_v5_chunk_info);
    uint64_t file_size = ROUND_UP((ct_off ? ct_off : cur) + ct_size, BS);
    if (file_size > RAFS_BOOTSTRAP_MAX_SIZE_BUILDER) {
        rc =
            cf_err_set(err, -EFBIG, "bootstrap would be %llu bytes", (unsigned long long)file_size);
        free(pfi);
        goto out;
    }
    img = calloc(1, file_size);
    if (!img) {
        rc = -ENOMEM;
        free(pfi);
        goto out;
    }
    /* superblock */
    uint64_t blocks_total = 0;
    for (uint32_t b = 0; b < o->nblobs; b++) blocks_total += o->blobs[b].uncompressed_size / BS;
    struct erofs_super_block sb = {0};
    sb.magic = rafs_to_le32(EROFS_SUPER_MAGIC);
    sb.feature_compat = rafs_to_le32(EROFS_FEATURE_COMPAT_RAFS_V6);
    sb.blkszbits = RAFS_BLOCK_BITS;
    sb.root_nid = rafs_to_le16((uint16_t)t->root->inode->nid);
    sb.inos = rafs_to_le64(nl);
    sb.blocks = rafs_to_le32((uint32_t)blocks_total);
    sb.meta_blkaddr = rafs_to_le32((uint32_t)(meta / BS));
    sb.feature_incompat = rafs_to_le32(RAFS_V6_FEATURE_INCOMPAT);
    sb.extra_devices = rafs_to_le16((uint16_t)o->nblobs);
    sb.devt_slotoff = rafs_to_le16(RAFS_DEVT_SLOTOFF);
    memcpy(img + RAFS_SUPER_OFFSET, &sb, sizeof(sb));
    struct rafs_v6_super_ext ext = {0};
    uint64_t flags =
        rafs_compressor_flag(o->compressor) |
        (o->digester == RAFS_DIGEST_SHA256 ? RAFS_FLAG_HASH_SHA256 : RAFS_FLAG_HASH_BLAKE3) |
        RAFS_FLAG_EXPLICIT_UID_GID | RAFS_FLAG_ENCRYPTION_NONE;
    if (has_xattr) flags |= RAFS_FLAG_HAS_XATTR;
    if (o->inlined_chunk_digest) flags |= RAFS_FLAG_INLINED_CHUNK_DIGEST;
    ext.s_flags = rafs_to_le64(flags);
    ext.s_blob_table_offset = rafs_to_le64(blob_table_off);
    ext.s_blob_table_size = rafs_to_le32(256u * o->nblobs);
    ext.s_chunk_size = rafs_to_le32(o->chunk_size);
    ext.s_chunk_table_offset = rafs_to_le64(ct_off);
    ext.s_chunk_table_size = rafs_to_le64(ct_size);
    ext.s_prefetch_table_offset = rafs_to_le64(npf ? pf_off : 0);
    ext.s_prefetch_table_size = rafs_to_le32((uint32_t)(4 * npf));
    memcpy(img + RAFS_EXT_SUPER_OFFSET, &ext, sizeof(ext));
    /* device slots + blob table */
    uint64_t mapped = ROUND_UP(file_size, RAFS_MAPPED_BLKADDR_ALIGN);
    for (uint32_t b = 0; b < o->nblobs; b++) {
        const struct rafs_boot_blob *bb = &o->blobs[b];
        struct erofs_deviceslot ds = {0};
        size_t idl = strlen(bb->id);
        memcpy(ds.tag, bb->id, idl > 64 ? 64 : idl);
        ds.blocks = rafs_to_le32((uint32_t)(bb->uncompressed_size / BS));
        ds.mapped_blkaddr = rafs_to_le32((uint32_t)(mapped / BS));
        mapped = ROUND_UP(mapped + bb->uncompressed_size, RAFS_MAPPED_BLKADDR_ALIGN);
        memcpy(img + RAFS_DEVTABLE_OFFSET + 128 * b, &ds, sizeof(ds));
        struct rafs_v6_blob e = {0};
        memcpy(e.blob_id, bb->id, idl > 64 ? 64 : idl);
        e.blob_index = rafs_to_le32(b);
        e.chunk_size = rafs_to_le32(o->chunk_size);
        e.chunk_count = rafs_to_le32(bb->chunk_count);
        e.compression_algo = rafs_to_le32(bb->compressor);
        e.digest_algo = rafs_to_le32(bb->digester);
        e.features = rafs_to_le32(bb->features);
        e.compressed_size = rafs_to_le64(bb->compressed_size);
        e.uncompressed_size = rafs_to_le64(bb->uncompressed_size);
        e.blob_toc_size = rafs_to_le32(bb->toc_size);
        e.ci_compressor = rafs_to_le32(bb->ci_compressor);
        e.ci_offset = rafs_to_le64(bb->ci_offset);
        e.ci_compressed_size = rafs_to_le64(bb->ci_compressed_size);
        e.ci_uncompressed_size = rafs_to_le64(bb->ci_uncompressed_size);
        memcpy(e.blob_toc_digest, bb->toc_digest, 32);
        memcpy(img + blob_table_off + 256 * b, &e, sizeof(e));
    }
    for (size_t i = 0; i < npf; i++) {
        uint32_t v = rafs_to_le32((uint32_t)pfi[i]->nid);
        memcpy(img + pf_off + 4 * i, &v, 4);
    }
    free(pfi);
    /* inodes and their data */
    uint32_t chunk_fmt =
        EROFS_CHUNK_FORMAT_INDEXES | (uint32_t)(__builtin_ctz(o->chunk_size) - RAFS_BLOCK_BITS);
    for (size_t i = 0; i < nl; i++) {
        struct lay *l = &L[i];
        struct rafs_inode *ino = l->ino;
        struct erofs_inode_extended di = {0};
        uint32_t layout = EROFS_INODE_FLAT_PLAIN, iu = 0;
        uint64_t size = 0;
        uint8_t *p = img + l->off;
        uint32_t head = (uint32_t)sizeof(di) + l->xsize;
        if (S_ISREG(ino->mode)) {
            layout = EROFS_INODE_CHUNK_BASED;
            iu = chunk_fmt;
            size = ino->size;
            uint8_t *ci = p + ROUND_UP(head, 8);
            for (uint64_t c = 0; c < ino->nchunks; c++) {
                const struct rafs_chunk *ch = &chunks->v[ino->chunks[c]];
                struct rafs_v6_chunk_index x = {
                    rafs_to_le16((uint16_t)(ch->ci_index & 0xffff)),
                    rafs_to_le16((uint16_t)((ch->blob_index + 1) | ((ch->ci_index >> 16) << 8))),
                    rafs_to_le32((uint32_t)(ch->uncompressed_offset / BS))};
                memcpy(ci + 8 * c, &x, sizeof(x));
            }
        } else if (S_ISDIR(ino->mode) || S_ISLNK(ino->mode)) {
            size = l->dsize;
            layout = l->inl ? EROFS_INODE_FLAT_INLINE : EROFS_INODE_FLAT_PLAIN;
            iu = l->blkaddr;
            uint8_t *data = calloc(1, ROUND_UP(l->dsize ? l->dsize : 1, BS));
            if (!data) {
                rc = -ENOMEM;
                goto out;
            }
            if (S_ISDIR(ino->mode)) {
                size_t ne;
                struct dent *v = dir_entries(l->node, &ne);
                if (!v) {
                    free(data);
                    rc = -ENOMEM;
                    goto out;
                }
                dir_pack(v, ne, data);
                free(v);
            } else if (l->dsize) {
                memcpy(data, ino->symlink, l->dsize);
            }
            uint64_t full = (uint64_t)l->nblocks * BS;
            if (full)
                memcpy(img + (uint64_t)l->blkaddr * BS, data, full > l->dsize ? l->dsize : full);
            if (l->inl) memcpy(p + head, data + full, l->dsize - full);
            free(data);
        } else if (S_ISCHR(ino->mode) || S_ISBLK(ino->mode)) {
            iu = ino->rdev;
        }
        di.i_format = rafs_to_le16(RAFS_I_FORMAT(EROFS_INODE_LAYOUT_EXTENDED, layout));
        di.i_xattr_icount = rafs_to_le16((uint16_t)(l->xsize ? (l->xsize - 12) / 4 + 1 : 0));
        di.i_mode = rafs_to_le16((uint16_t)ino->mode);
        di.i_size = rafs_to_le64(size);
        di.i_u = rafs_to_le32(iu);
        di.i_ino = rafs_to_le32(ino->ino);
        di.i_uid = rafs_to_le32(ino->uid);
        di.i_gid = rafs_to_le32(ino->gid);
        di.i_mtime = rafs_to_le64(ino->mtime);
        di.i_mtime_nsec = rafs_to_le32(ino->mtime_nsec);
        di.i_nlink = rafs_to_le32(l->nlink);
        memcpy(p, &di, sizeof(di));
        if (l->xsize) xattr_write(ino, p + sizeof(di));
    }
    /* chunk table sorted by (digest, blob) */
    if (chunks->n) {
        sorted = malloc((size_t)chunks->n * sizeof(*sorted));
        if (!sorted) {
            rc = -ENOMEM;
            goto out;
        }
        for (uint32_t i = 0; i < chunks->n; i++) sorted[i] = &chunks->v[i];
        qsort(sorted, chunks->n, sizeof(*sorted), chunk_cmp);
        for (uint32_t i = 0; i < chunks->n; i++) {
            const struct rafs_chunk *c = sorted[i];
            struct rafs_v5_chunk_info r = {0};
            memcpy(r.block_id, c->digest, 32);
            r.blob_index = rafs_to_le32(c->blob_index);
            r.flags = rafs_to_le32(c->flags);
            r.compressed_size = rafs_to_le32(c->compressed_size);
            r.uncompressed_size = rafs_to_le32(c->uncompressed_size);
            r.compressed_offset = rafs_to_le64(c->compressed_offset);
            r.uncompressed_offset = rafs_to_le64(c->uncompressed_offset);
            r.file_offset = rafs_to_le64(c->file_offset);
            r.index = rafs_to_le32(c->ci_index);
            memcpy(img + ct_off + sizeof(r) * i, &r, sizeof(r));
        }
    }
    free(out->data);
    out->data = img;
    out->len = out->cap = file_size;
    img = NULL;
    cf_debug("bootstrap: %zu inodes, %u chunks, %llu bytes", nl, chunks->n,
             (unsigned long long)file_size);
out:
    free(img);
    free(sorted);
    free(pf);
    free(q);
    free(L);
    return rc;
}

int rafs_prefetch_read(FILE *f, char ***out, cf_err *err)
{
    size_t n = 0;
    char **v = calloc(1, sizeof(*v)), *line = NULL;
    size_t cap = 0;
    ssize_t len;
    *out = NULL;
    if (!v) return cf_err_set(err, -ENOMEM, "out of memory");
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = 0;
        if (!len) continue;
        if (line[0] != '/') {
            cf_warn("prefetch path '%s' is not absolute, ignored", line);
            continue;
        }
        char **nv = realloc(v, (n + 2) * sizeof(*v));
        if (!nv || !(nv[n] = strdup(line))) {
            if (nv) v = nv;
            free(line);
            rafs_prefetch_free(v);
            return cf_err_set(err, -ENOMEM, "out of memory");
        }
        v = nv;
        v[++n] = NULL;
    }
    int rd_err = ferror(f);
    free(line);
    if (rd_err) {
        rafs_prefetch_free(v);
        return cf_err_set(err, -EIO, "reading the prefetch list: %s", strerror(errno));
    }
    *out = v;
    return 0;
}

void rafs_prefetch_free(char **list)
{
    if (!list) return;
    for (char **p = list; *p; p++) free(*p);
    free(list);
}
