/* `create` end to end: source -> tree + blob -> bootstrap(s), with every output written under
 * a temporary name and renamed into place only when the whole build succeeded. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf/buf.h"
#include "cf/digest.h"
#include "cf/file_io.h"
#include "cf/hex.h"
#include "cf/log.h"
#include "rafs/builder.h"

struct out_file {
    char tmp[PATH_MAX];
    int fd;
    int direct; /* FIFO / device: written in place */
};

static int out_open(struct out_file *f, const char *path, cf_err *err)
{
    struct stat st;
    f->fd = -1;
    f->direct = 0;
    f->tmp[0] = 0;
    if (!stat(path, &st) && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode))
            return cf_err_set(err, -EISDIR, "output '%s' is a directory", path);
        f->fd = open(path, O_WRONLY | O_CLOEXEC);
        if (f->fd < 0)
            return cf_err_set(err, -errno, "opening output '%s': %s", path, strerror(errno));
        f->direct = 1;
        return 0;
    }
    if (snprintf(f->tmp, sizeof(f->tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(f->tmp))
        return cf_err_set(err, -ENAMETOOLONG, "output path '%s' too long", path);
    f->fd = mkostemp(f->tmp, O_CLOEXEC);
    if (f->fd < 0) {
        int e = errno;
        f->tmp[0] = 0;
        return cf_err_set(err, -e, "creating output next to '%s': %s", path, strerror(e));
    }
    fchmod(f->fd, 0644);
    return 0;
}

static int out_commit(struct out_file *f, const char *final, cf_err *err)
{
    if (f->fd >= 0 && close(f->fd)) {
        f->fd = -1;
        return cf_err_set(err, -errno, "closing '%s': %s", final, strerror(errno));
    }
    f->fd = -1;
    if (f->direct) return 0;
    if (rename(f->tmp, final))
        return cf_err_set(err, -errno, "renaming to '%s': %s", final, strerror(errno));
    f->tmp[0] = 0;
    return 0;
}

static void out_abort(struct out_file *f)
{
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (!f->direct && f->tmp[0]) unlink(f->tmp);
    f->tmp[0] = 0;
}

static void fill_boot_blob(struct rafs_boot_blob *b, const struct rafs_blob_result *r,
                           const struct rafs_blob_opts *o, const char *id)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->id, sizeof(b->id), "%s", id);
    b->chunk_count = r->chunk_count;
    b->features = r->features;
    b->compressor = o->compressor;
    b->digester = o->digester;
    b->ci_compressor = r->ci_compressor;
    b->compressed_size = r->blob_size;
    b->uncompressed_size = r->uncompressed_size;
    b->toc_size = r->toc_size;
    memcpy(b->toc_digest, r->toc_digest, 32);
    b->ci_offset = r->ci_offset;
    b->ci_compressed_size = r->ci_compressed_size;
    b->ci_uncompressed_size = r->ci_uncompressed_size;
}

/* Sets every dictionary reference (RAFS_CHUNK_DICT_REF | i) of the tree to base + i. */
static void resolve_dict_refs(struct rafs_node *n, uint32_t base, unsigned depth)
{
    struct rafs_inode *ino = n->inode;
    for (uint64_t i = 0; i < ino->nchunks; i++)
        if (ino->chunks[i] & RAFS_CHUNK_DICT_REF)
            ino->chunks[i] = base + (ino->chunks[i] & ~RAFS_CHUNK_DICT_REF);
    if (depth > RAFS_TREE_MAX_DEPTH) return;
    for (size_t i = 0; i < n->nchildren; i++) resolve_dict_refs(n->children[i], base, depth + 1);
}

/* After the blob's own chunks are final: the dictionary chunks used join the chunk table,
 * their blobs the blob table (after the layer's blob when it has chunks, in first use order,
 * as nydus-image allocates them). bbs has room for 1 + dict->nblobs entries. */
static int add_dict_chunks(const struct rafs_create_opts *o, struct rafs_tree *t,
                           struct rafs_chunk_table *ct, const struct rafs_chunk_table *used,
                           int has_blob, struct rafs_boot_blob *bbs, uint32_t *nblobs,
                           struct rafs_create_result *res, cf_err *err)
{
    const struct rafs_chunk_dict *d = o->chunk_dict;
    uint32_t *slot = malloc((d->nblobs ? d->nblobs : 1) * sizeof(*slot));
    if (!slot) return cf_err_set(err, -ENOMEM, "out of memory");
    for (uint32_t i = 0; i < d->nblobs; i++) slot[i] = UINT32_MAX;
    uint32_t nb = has_blob ? 1 : 0, base = ct->n;
    int rc = 0;
    for (uint32_t i = 0; i < used->n && rc == 0; i++) {
        struct rafs_chunk c = used->v[i];
        if (slot[c.blob_index] == UINT32_MAX) {
            slot[c.blob_index] = nb;
            bbs[nb++] = d->blobs[c.blob_index];
        }
        c.blob_index = slot[c.blob_index];
        uint32_t idx;
        rc = rafs_chunk_table_add(ct, &c, &idx);
        if (rc) rc = cf_err_set(err, rc, "chunk table: %s", strerror(-rc));
        res->dict_bytes += c.uncompressed_size;
    }
    free(slot);
    if (rc) return rc;
    resolve_dict_refs(t->root, base, 0);
    res->dict_chunks = used->n;
    res->dict_blobs = nb - (has_blob ? 1 : 0);
    *nblobs = nb;
    return 0;
}

int rafs_create(const struct rafs_create_opts *o, struct rafs_create_result *res, cf_err *err)
{
    memset(res, 0, sizeof(*res));
    if (!o->blob && !o->blob_dir)
        return cf_err_set(err, -EINVAL, "no data blob output: give --blob or --blob-dir");
    if (!o->bootstrap && !o->blob_dir && !o->blob_opts.inline_meta)
        return cf_err_set(
            err, -EINVAL,
            "no bootstrap output: give --bootstrap, --blob-dir or --blob-inline-meta");
    if (o->blob_id && (strlen(o->blob_id) == 0 || strlen(o->blob_id) > RAFS_BLOB_ID_LEN))
        return cf_err_set(err, -EINVAL, "--blob-id must be 1..64 characters");
    char blob_final[PATH_MAX] = "", cache_data_final[PATH_MAX], cache_meta_final[PATH_MAX];
    struct out_file blob = {.fd = -1}, cdata = {.fd = -1}, cmeta = {.fd = -1}, bootf = {.fd = -1};
    struct rafs_tree tree;
    struct rafs_chunk_table ct = {0}, dict_used = {0};
    struct rafs_boot_blob *bbs = NULL;
    rafs_blob_writer *w = NULL;
    cf_buf boot = {0}, inl = {0};
    int rc = rafs_tree_init(&tree);
    if (rc) return rc;
    char tmpl[PATH_MAX];
    if (o->blob) {
        snprintf(blob_final, sizeof(blob_final), "%s", o->blob);
        rc = out_open(&blob, o->blob, err);
    } else {
        rc = cf_mkdir_p(o->blob_dir, 0755);
        if (rc)
            rc = cf_err_set(err, rc, "creating blob dir '%s': %s", o->blob_dir, strerror(-rc));
        else {
            snprintf(tmpl, sizeof(tmpl), "%s/blob", o->blob_dir);
            rc = out_open(&blob, tmpl, err);
        }
    }
    if (rc) goto fail;
    /* the bootstrap output is opened now so an unusable path fails before any work */
    int want_boot = o->bootstrap || !o->blob_opts.inline_meta;
    if (want_boot) {
        if (o->bootstrap) {
            rc = out_open(&bootf, o->bootstrap, err);
        } else {
            snprintf(tmpl, sizeof(tmpl), "%s/bootstrap", o->blob_dir);
            rc = out_open(&bootf, tmpl, err);
        }
        if (rc) goto fail;
    }
    if (o->blob_cache_dir) {
        rc = cf_mkdir_p(o->blob_cache_dir, 0755);
        if (rc) {
            rc = cf_err_set(err, rc, "creating blob cache dir '%s': %s", o->blob_cache_dir,
                            strerror(-rc));
            goto fail;
        }
        snprintf(tmpl, sizeof(tmpl), "%s/blob.data", o->blob_cache_dir);
        if ((rc = out_open(&cdata, tmpl, err))) goto fail;
    }
    if (o->chunk_dict && (rc = rafs_chunk_dict_check(o->chunk_dict, o->blob_opts.chunk_size,
                                                     o->blob_opts.digester, "--chunk-dict", err)))
        goto fail;
    bbs = calloc(1 + (o->chunk_dict ? o->chunk_dict->nblobs : 0), sizeof(*bbs));
    if (!bbs) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    rc = rafs_blob_writer_new(&o->blob_opts, blob.fd, cdata.fd, 0, &ct, &w, err);
    if (rc) goto fail;
    if (o->chunk_dict) rafs_blob_writer_set_dict(w, o->chunk_dict, &dict_used);
    struct rafs_progress pr = {0};
    rafs_progress_tick(&pr, 0);
    rc = o->source_is_dir ? rafs_dir_source_read(o->source, &tree, w, &pr, err)
                          : rafs_tar_source_read(o->source, &tree, w, &pr, err);
    if (rc) goto fail;
    if ((rc = rafs_blob_writer_write_meta(w, err))) goto fail;
    res->entries = pr.entries;
    struct rafs_blob_result pre;
    rafs_blob_writer_preview(w, &pre);
    res->has_blob = pre.chunk_count > 0;
    uint32_t nbb = res->has_blob ? 1 : 0;
    if (dict_used.n &&
        (rc = add_dict_chunks(o, &tree, &ct, &dict_used, res->has_blob, bbs, &nbb, res, err)))
        goto fail;
    int all_digest = o->blob_opts.blob_toc;
    for (uint32_t i = res->has_blob ? 1 : 0; i < nbb; i++)
        if (!(bbs[i].features & RAFS_BLOB_INLINED_CHUNK_DIGEST)) all_digest = 0;
    struct rafs_boot_opts bo = {.chunk_size = o->blob_opts.chunk_size,
                                .compressor = o->blob_opts.compressor,
                                .digester = o->blob_opts.digester,
                                .inlined_chunk_digest = all_digest,
                                .blobs = bbs,
                                .nblobs = nbb,
                                .prefetch = o->prefetch};
    if (o->blob_opts.inline_meta) {
        /* As nydus-image: the embedded bootstrap names the blob by a placeholder (or the
         * given --blob-id) and records the blob size before the bootstrap, with the TOC size
         * and digest unknown (zero): merge / the runtime substitute the OCI layer's values. */
        char ph[RAFS_BLOB_ID_LEN + 1];
        memset(ph, 'x', RAFS_BLOB_ID_LEN);
        ph[RAFS_BLOB_ID_LEN] = 0;
        if (res->has_blob) {
            fill_boot_blob(&bbs[0], &pre, &o->blob_opts, o->blob_id ? o->blob_id : ph);
            bbs[0].compressed_size = pre.size_before_boot;
            bbs[0].toc_size = 0;
        }
        if ((rc = rafs_bootstrap_build(&tree, &ct, &bo, &inl, err))) goto fail;
    }
    rc = rafs_blob_writer_finish(w, inl.data, inl.len, &res->blob, err);
    if (rc) goto fail;
    snprintf(res->blob_id, sizeof(res->blob_id), "%s", o->blob_id ? o->blob_id : res->blob.blob_id);
    if (o->blob_cache_dir) {
        if (ftruncate(cdata.fd, (off_t)res->blob.uncompressed_size)) {
            rc = cf_err_set(err, -errno, "sizing blob cache data: %s", strerror(errno));
            goto fail;
        }
        snprintf(tmpl, sizeof(tmpl), "%s/blob.meta", o->blob_cache_dir);
        if ((rc = out_open(&cmeta, tmpl, err))) goto fail;
        if ((rc = rafs_blob_writer_cache_meta(w, cmeta.fd, err))) goto fail;
    } else if (o->blob_meta && res->has_blob) {
        if ((rc = out_open(&cmeta, o->blob_meta, err))) goto fail;
        if ((rc = rafs_blob_writer_cache_meta(w, cmeta.fd, err))) goto fail;
    }
    if (want_boot) {
        if (res->has_blob) fill_boot_blob(&bbs[0], &res->blob, &o->blob_opts, res->blob_id);
        if ((rc = rafs_bootstrap_build(&tree, &ct, &bo, &boot, err))) goto fail;
        if (o->bootstrap) {
            snprintf(res->bootstrap_path, sizeof(res->bootstrap_path), "%s", o->bootstrap);
        } else {
            uint8_t d[32];
            char hex[65];
            cf_sha256(boot.data, boot.len, d);
            cf_hex_encode(d, 32, hex);
            snprintf(res->bootstrap_path, sizeof(res->bootstrap_path), "%s/%s", o->blob_dir, hex);
        }
        if ((rc = cf_write_full(bootf.fd, boot.data, boot.len))) {
            rc = cf_err_set(err, rc, "writing bootstrap '%s': %s", res->bootstrap_path,
                            strerror(-rc));
            goto fail;
        }
        res->bootstrap_size = boot.len;
    }
    /* everything built: move outputs into place */
    if (!o->blob) {
        snprintf(blob_final, sizeof(blob_final), "%s/%s", o->blob_dir, res->blob_id);
    }
    if ((rc = out_commit(&blob, blob_final, err))) goto fail;
    snprintf(res->blob_path, sizeof(res->blob_path), "%s", blob_final);
    if (o->blob_cache_dir) {
        snprintf(cache_data_final, sizeof(cache_data_final), "%s/%s.blob.data", o->blob_cache_dir,
                 res->blob_id);
        snprintf(cache_meta_final, sizeof(cache_meta_final), "%s/%s.blob.meta", o->blob_cache_dir,
                 res->blob_id);
        if ((rc = out_commit(&cdata, cache_data_final, err))) goto fail;
        if ((rc = out_commit(&cmeta, cache_meta_final, err))) goto fail;
    }
    if (!o->blob_cache_dir && cmeta.fd >= 0 && (rc = out_commit(&cmeta, o->blob_meta, err)))
        goto fail;
    if (want_boot && (rc = out_commit(&bootf, res->bootstrap_path, err))) goto fail;
    rafs_progress_tick(&pr, 1);
    rafs_blob_writer_free(w);
    rafs_chunk_table_free(&ct);
    rafs_chunk_table_free(&dict_used);
    free(bbs);
    rafs_tree_free(&tree);
    cf_buf_free(&boot);
    cf_buf_free(&inl);
    return 0;
fail:
    out_abort(&blob);
    out_abort(&bootf);
    out_abort(&cdata);
    out_abort(&cmeta);
    rafs_blob_writer_free(w);
    rafs_chunk_table_free(&ct);
    rafs_chunk_table_free(&dict_used);
    free(bbs);
    rafs_tree_free(&tree);
    cf_buf_free(&boot);
    cf_buf_free(&inl);
    return rc;
}
