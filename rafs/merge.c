/* `merge`: per-layer bootstraps (lowest first) -> one bootstrap, as nydus-image merge does.
 * Each layer is read with the reader API in two passes: first its whiteouts (OCI `.wh.<name>`,
 * `.wh..wh..opq`; overlayfs char 0/0 and trusted.overlay.opaque=y) are applied to the tree
 * built from the layers below, then its entries are added on top. Chunks keep their blob
 * positions; the blob table lists only blobs still referenced, in layer order. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf/buf.h"
#include "cf/file_io.h"
#include "cf/hex.h"
#include "cf/log.h"
#include "cf/parse_number.h"
#include "rafs/builder.h"
#include "rafs/reader.h"

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

struct nid_map { /* nid -> inode, for hard links inside one layer */
    uint64_t *keys;
    struct rafs_inode **vals;
    size_t cap, used;
};

static struct rafs_inode *nm_get(struct nid_map *m, uint64_t nid)
{
    if (!m->cap) return NULL;
    for (size_t i = (nid * 0x9E3779B97F4A7C15ull) & (m->cap - 1); m->vals[i];
         i = (i + 1) & (m->cap - 1))
        if (m->keys[i] == nid) return m->vals[i];
    return NULL;
}

static int nm_put(struct nid_map *m, uint64_t nid, struct rafs_inode *v)
{
    if ((m->used + 1) * 2 > m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 256;
        uint64_t *k = calloc(nc, sizeof(*k));
        struct rafs_inode **vv = calloc(nc, sizeof(*vv));
        if (!k || !vv) {
            free(k);
            free(vv);
            return -ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->vals[i]) continue;
            size_t j = (m->keys[i] * 0x9E3779B97F4A7C15ull) & (nc - 1);
            while (vv[j]) j = (j + 1) & (nc - 1);
            k[j] = m->keys[i];
            vv[j] = m->vals[i];
        }
        free(m->keys);
        free(m->vals);
        m->keys = k;
        m->vals = vv;
        m->cap = nc;
    }
    size_t i = (nid * 0x9E3779B97F4A7C15ull) & (m->cap - 1);
    while (m->vals[i]) i = (i + 1) & (m->cap - 1);
    m->keys[i] = nid;
    m->vals[i] = v;
    m->used++;
    return 0;
}

static void nm_free(struct nid_map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

struct layer_ctx {
    struct rafs_tree *t;
    rafs_image *img;
    struct rafs_chunk_table *ct;
    const uint32_t *blob_map; /* source blob index -> merged index */
    uint32_t nblobs_src;
    struct nid_map nm;
    int pass;
    cf_err *err;
};

static int is_overlay_whiteout(const struct rafs_stat *st)
{
    return S_ISCHR(st->mode) && st->rdev == 0;
}

static int is_overlay_opaque(rafs_image *img, uint64_t nid)
{
    char v[8];
    size_t len;
    if (rafs_getxattr(img, nid, "trusted.overlay.opaque", v, sizeof(v), &len, NULL)) return 0;
    return len == 1 && v[0] == 'y';
}

/* Path of the parent directory of e (relative), for whiteout targets. */
static void parent_path(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= cap) n = cap - 1;
    memcpy(out, path, n);
    out[n] = 0;
}

static int copy_xattr(const char *name, const void *value, size_t len, void *ctx)
{
    return rafs_inode_set_xattr(ctx, name, value, len, NULL);
}

static int build_inode(struct layer_ctx *lc, const struct rafs_walk_entry *e,
                       struct rafs_inode **out)
{
    const struct rafs_stat *st = e->st;
    struct rafs_inode *ino = rafs_inode_new();
    if (!ino) return -ENOMEM;
    int rc = 0;
    ino->mode = st->mode;
    ino->uid = st->uid;
    ino->gid = st->gid;
    ino->rdev = st->rdev;
    ino->mtime = st->mtime;
    ino->mtime_nsec = st->mtime_nsec;
    if (S_ISLNK(st->mode)) {
        char tgt[PATH_MAX];
        size_t len;
        if ((rc = rafs_readlink(lc->img, e->nid, tgt, sizeof(tgt) - 1, &len, lc->err))) goto fail;
        tgt[len] = 0;
        if (!(ino->symlink = strdup(tgt))) {
            rc = -ENOMEM;
            goto fail;
        }
        ino->size = len;
    }
    if (st->xattr_icount) {
        rc = rafs_xattr_foreach(lc->img, e->nid, copy_xattr, ino, lc->err);
        if (rc) {
            rc = cf_err_wrap(lc->err, rc, "'%s': xattrs", e->path);
            goto fail;
        }
    }
    if (S_ISREG(st->mode)) {
        uint64_t n;
        if ((rc = rafs_file_chunk_count(lc->img, e->nid, &n, lc->err))) goto fail;
        ino->size = st->size;
        ino->nchunks = n;
        if (n && !(ino->chunks = calloc(n, sizeof(uint32_t)))) {
            rc = -ENOMEM;
            goto fail;
        }
        for (uint64_t i = 0; i < n; i++) {
            struct rafs_chunk_ref r;
            if ((rc = rafs_file_chunk(lc->img, e->nid, i, &r, lc->err))) goto fail;
            if (!r.has_digest) {
                rc = cf_err_set(lc->err, -EBADMSG, "'%s': chunk %llu has no digest", e->path,
                                (unsigned long long)i);
                goto fail;
            }
            if (r.blob_index >= lc->nblobs_src) {
                rc = cf_err_set(lc->err, -EBADMSG, "'%s': bad blob index", e->path);
                goto fail;
            }
            uint32_t b = lc->blob_map[r.blob_index];
            int64_t f = rafs_chunk_table_find(lc->ct, r.digest, b, r.uncompressed_size);
            uint32_t idx;
            if (f >= 0) {
                idx = (uint32_t)f;
            } else {
                struct rafs_chunk c;
                rafs_chunk_from_ref(&c, &r, b);
                if ((rc = rafs_chunk_table_add(lc->ct, &c, &idx))) goto fail;
            }
            ino->chunks[i] = idx;
        }
    }
    *out = ino;
    return 0;
fail:
    rafs_inode_put(ino);
    return rc;
}

static int visit(const struct rafs_walk_entry *e, void *ctx)
{
    struct layer_ctx *lc = ctx;
    const char *name = e->name;
    int oci_wh = !strncmp(name, WH_PREFIX, strlen(WH_PREFIX));
    if (lc->pass == 0) { /* whiteouts against the lower layers */
        if (e->depth == 0) return 0;
        char target[RAFS_PATH_MAX];
        if (!strcmp(name, WH_OPAQUE)) {
            parent_path(e->path, target, sizeof(target));
            struct rafs_node *d = rafs_tree_lookup(lc->t, target);
            if (d && S_ISDIR(d->inode->mode)) rafs_tree_clear_dir(lc->t, d);
        } else if (oci_wh || is_overlay_whiteout(e->st)) {
            parent_path(e->path, target, sizeof(target));
            size_t l = strlen(target);
            snprintf(target + l, sizeof(target) - l, "%s%s", l ? "/" : "",
                     oci_wh ? name + strlen(WH_PREFIX) : name);
            struct rafs_node *n = rafs_tree_lookup(lc->t, target);
            if (n && n != lc->t->root) rafs_tree_remove(lc->t, n);
        } else if (S_ISDIR(e->st->mode) && e->st->xattr_icount &&
                   is_overlay_opaque(lc->img, e->nid)) {
            struct rafs_node *d = rafs_tree_lookup(lc->t, e->path);
            if (d && S_ISDIR(d->inode->mode)) rafs_tree_clear_dir(lc->t, d);
        }
        return 0;
    }
    if (e->depth > 0 && (oci_wh || is_overlay_whiteout(e->st))) return 0;
    struct rafs_inode *ino = NULL;
    int rc;
    if (!S_ISDIR(e->st->mode) && (ino = nm_get(&lc->nm, e->nid))) {
        ino->refs++;
    } else {
        if ((rc = build_inode(lc, e, &ino))) return rc;
        if (!S_ISDIR(e->st->mode) && e->st->nlink > 1 && (rc = nm_put(&lc->nm, e->nid, ino))) {
            rafs_inode_put(ino);
            return rc;
        }
    }
    rc = rafs_tree_add(lc->t, e->depth ? e->path : "", ino, NULL, lc->err);
    rafs_inode_put(ino);
    return rc;
}

static void mark_rec(struct rafs_node *n, uint8_t *used, unsigned depth)
{
    struct rafs_inode *ino = n->inode;
    for (uint64_t i = 0; i < ino->nchunks; i++) used[ino->chunks[i]] = 1;
    if (depth > 4096) return;
    for (size_t i = 0; i < n->nchildren; i++) mark_rec(n->children[i], used, depth + 1);
}

static void remap_rec(struct rafs_node *n, const uint32_t *map, unsigned depth)
{
    struct rafs_inode *ino = n->inode;
    if (!ino->placed) { /* remap each inode once (hard links share it) */
        ino->placed = 1;
        for (uint64_t i = 0; i < ino->nchunks; i++) ino->chunks[i] = map[ino->chunks[i]];
    }
    if (depth > 4096) return;
    for (size_t i = 0; i < n->nchildren; i++) remap_rec(n->children[i], map, depth + 1);
}

static void clear_placed(struct rafs_node *n, unsigned depth)
{
    n->inode->placed = 0;
    if (depth > 4096) return;
    for (size_t i = 0; i < n->nchildren; i++) clear_placed(n->children[i], depth + 1);
}

void rafs_merge_free_ids(char **ids, size_t n)
{
    if (!ids) return;
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

static int in_dict(const struct rafs_chunk_dict *d, const char *id)
{
    for (uint32_t i = 0; i < d->nblobs; i++)
        if (!strcmp(d->blobs[i].id, id)) return 1;
    return 0;
}

static int is_hex64(const char *s, size_t n)
{
    return n == 64 && cf_hex_is_lower(s, 64);
}

int rafs_merge(const struct rafs_merge_opts *o, const char *out_path, char ***blob_ids,
               size_t *nblobs, enum rafs_compressor *compressor, cf_err *err)
{
    struct rafs_tree t;
    struct rafs_chunk_table ct = {0}, ct2 = {0};
    struct rafs_boot_blob *blobs = NULL;
    uint32_t nb = 0;
    uint32_t chunk_size = 0;
    enum rafs_compressor comp = RAFS_COMP_NONE;
    enum rafs_digester dig = RAFS_DIGEST_BLAKE3;
    int all_digest = 1, rc;
    cf_buf boot = {0};
    uint8_t *used = NULL;
    uint32_t *map = NULL, *bmap = NULL;
    *blob_ids = NULL;
    *nblobs = 0;
    if (!o->nsources) return cf_err_set(err, -EINVAL, "merge: no source bootstraps");
    /* the dictionary's blob ids: such blobs of a source keep their id */
    struct rafs_chunk_dict dict = {0};
    if (o->chunk_dict) {
        rafs_image *di = NULL;
        if ((rc = rafs_image_open(o->chunk_dict, &di, err)))
            return cf_err_wrap(err, rc, "chunk dictionary");
        dict.nblobs = rafs_image_blob_count(di);
        dict.blobs = calloc(dict.nblobs ? dict.nblobs : 1, sizeof(*dict.blobs));
        for (uint32_t i = 0; dict.blobs && i < dict.nblobs; i++)
            rafs_boot_blob_from_info(rafs_image_blob(di, i), &dict.blobs[i]);
        rafs_image_close(di);
        if (!dict.blobs) return cf_err_set(err, -ENOMEM, "out of memory");
    }
    if ((rc = rafs_tree_init(&t))) {
        free(dict.blobs);
        return rc;
    }
    for (size_t s = 0; s < o->nsources; s++) {
        const char *src = o->sources[s];
        rafs_image *img = NULL;
        if ((rc = rafs_image_open(src, &img, err))) goto out; /* message names src */
        const struct rafs_super_info *sb = rafs_image_super(img);
        if (s == 0) {
            chunk_size = sb->chunk_size;
            comp = sb->compressor;
            dig = sb->digester;
        } else if (sb->chunk_size != chunk_size || sb->compressor != comp || sb->digester != dig) {
            rc = cf_err_set(err, RAFS_MERGE_INCONSISTENT,
                            "bootstrap '%s' is inconsistent with '%s': chunk size 0x%x vs 0x%x, "
                            "compressor %u vs %u, digester %u vs %u",
                            src, o->sources[0], sb->chunk_size, chunk_size, sb->compressor, comp,
                            sb->digester, dig);
            rafs_image_close(img);
            goto out;
        }
        uint32_t n = rafs_image_blob_count(img), nown = 0;
        for (uint32_t i = 0; i < n; i++) nown += !in_dict(&dict, rafs_image_blob(img, i)->id);
        if ((o->blob_digests || o->blob_sizes || o->blob_toc_digests) && nown > 1) {
            rc = cf_err_set(err, RAFS_MERGE_INCONSISTENT,
                            "bootstrap '%s' has %u blobs (not counting a chunk dictionary's); "
                            "--blob-digests needs one per source",
                            src, nown);
            rafs_image_close(img);
            goto out;
        }
        free(bmap);
        bmap = calloc(n ? n : 1, sizeof(*bmap));
        struct rafs_boot_blob *nbv = realloc(blobs, (nb + n + 1) * sizeof(*blobs));
        if (!bmap || !nbv) {
            rc = -ENOMEM;
            rafs_image_close(img);
            goto out;
        }
        blobs = nbv;
        for (uint32_t i = 0; i < n; i++) {
            const struct rafs_blob_info *bi = rafs_image_blob(img, i);
            struct rafs_boot_blob b;
            rafs_boot_blob_from_info(bi, &b);
            if (in_dict(&dict, bi->id)) {
                /* a dictionary blob: as it is */
            } else if (o->blob_digests && o->blob_digests[s]) {
                const char *d = o->blob_digests[s];
                if (!strncmp(d, "sha256:", 7)) d += 7;
                snprintf(b.id, sizeof(b.id), "%s", d);
            } else if (bi->features & RAFS_BLOB_INLINED_FS_META) {
                /* an inline-meta layer blob is named by its layer digest, which the converter
                 * uses as the extracted bootstrap's file name */
                const char *base = strrchr(src, '/');
                base = base ? base + 1 : src;
                if (is_hex64(base, strlen(base))) snprintf(b.id, sizeof(b.id), "%s", base);
            }
            if (o->blob_sizes && o->blob_sizes[s] && !in_dict(&dict, bi->id)) {
                uint64_t v;
                if (cf_parse_u64(o->blob_sizes[s], &v)) {
                    rc = cf_err_set(err, -EINVAL, "--blob-sizes: bad size '%s'", o->blob_sizes[s]);
                    rafs_image_close(img);
                    goto out;
                }
                b.compressed_size = v;
            }
            if (o->blob_toc_digests && o->blob_toc_digests[s] && !in_dict(&dict, bi->id)) {
                const char *d = o->blob_toc_digests[s];
                if (!strncmp(d, "sha256:", 7)) d += 7;
                if (strlen(d) != 64 || cf_hex_decode(d, 64, b.toc_digest, 32)) {
                    rc = cf_err_set(err, -EINVAL, "--blob-toc-digests: bad digest '%s'", d);
                    rafs_image_close(img);
                    goto out;
                }
            }
            if (!(b.features & RAFS_BLOB_INLINED_CHUNK_DIGEST)) all_digest = 0;
            uint32_t j;
            for (j = 0; j < nb; j++)
                if (!strcmp(blobs[j].id, b.id)) break;
            if (j == nb) blobs[nb++] = b;
            bmap[i] = j;
        }
        struct layer_ctx lc = {
            .t = &t, .img = img, .ct = &ct, .blob_map = bmap, .nblobs_src = n, .err = err};
        for (lc.pass = 0; lc.pass < 2 && !rc; lc.pass++) rc = rafs_walk(img, visit, &lc, err);
        nm_free(&lc.nm);
        rafs_image_close(img);
        if (rc) {
            rc = cf_err_wrap(err, rc, "merging '%s'", src);
            goto out;
        }
    }
    /* keep only chunks (and blobs) still referenced */
    used = calloc(ct.n ? ct.n : 1, 1);
    map = calloc(ct.n ? ct.n : 1, sizeof(*map));
    uint32_t *bnew = calloc(nb ? nb : 1, sizeof(*bnew));
    uint8_t *bused = calloc(nb ? nb : 1, 1);
    if (!used || !map || !bnew || !bused) {
        free(bnew);
        free(bused);
        rc = -ENOMEM;
        goto out;
    }
    mark_rec(t.root, used, 0);
    for (uint32_t i = 0; i < ct.n; i++)
        if (used[i]) bused[ct.v[i].blob_index] = 1;
    uint32_t nb2 = 0;
    for (uint32_t j = 0; j < nb; j++) {
        if (!bused[j]) continue;
        bnew[j] = nb2;
        blobs[nb2++] = blobs[j];
    }
    for (uint32_t i = 0; i < ct.n && !rc; i++) {
        if (!used[i]) continue;
        struct rafs_chunk c = ct.v[i];
        c.blob_index = bnew[c.blob_index];
        rc = rafs_chunk_table_add(&ct2, &c, &map[i]);
    }
    free(bnew);
    free(bused);
    if (rc) goto out;
    clear_placed(t.root, 0);
    remap_rec(t.root, map, 0);
    if (!all_digest) cf_debug("merge: some blobs have no blob.digest array");
    struct rafs_boot_opts bo = {.chunk_size = chunk_size,
                                .compressor = comp,
                                .digester = dig,
                                .inlined_chunk_digest = nb2 ? all_digest : 0,
                                .blobs = blobs,
                                .nblobs = nb2,
                                .prefetch = o->prefetch};
    if ((rc = rafs_bootstrap_build(&t, &ct2, &bo, &boot, err))) goto out;
    if ((rc = cf_write_file_atomic(out_path, boot.data, boot.len, 0644, err))) {
        rc = cf_err_wrap(err, rc, "writing merged bootstrap '%s'", out_path);
        goto out;
    }
    char **ids = calloc(nb2 ? nb2 : 1, sizeof(*ids));
    if (!ids) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t j = 0; j < nb2; j++) ids[j] = strdup(blobs[j].id);
    *blob_ids = ids;
    *nblobs = nb2;
    if (compressor) *compressor = comp;
out:
    free(dict.blobs);
    free(used);
    free(map);
    free(bmap);
    free(blobs);
    cf_buf_free(&boot);
    rafs_chunk_table_free(&ct);
    rafs_chunk_table_free(&ct2);
    rafs_tree_free(&t);
    return rc;
}
