/* Chunk dictionary (builder.h): the chunks of an existing bootstrap, looked up by digest while
 * building, as nydus-image --chunk-dict bootstrap=PATH. Loaded through the reader (every
 * regular file's chunk references: digests from the chunk table or the blobs' digest arrays),
 * so any bootstrap the reader opens can serve. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rafs/builder.h"
#include "rafs/reader.h"

void rafs_boot_blob_from_info(const struct rafs_blob_info *bi, struct rafs_boot_blob *b)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->id, sizeof(b->id), "%s", bi->id);
    b->chunk_count = bi->chunk_count;
    b->features = bi->features & ~RAFS_BLOB_INLINED_FS_META;
    b->compressor = bi->compressor;
    b->ci_compressor = bi->ci_compressor;
    b->digester = bi->digester;
    b->compressed_size = bi->compressed_size;
    b->uncompressed_size = bi->uncompressed_size;
    b->toc_size = bi->toc_size;
    memcpy(b->toc_digest, bi->toc_digest, 32);
    b->ci_offset = bi->ci_offset;
    b->ci_compressed_size = bi->ci_compressed_size;
    b->ci_uncompressed_size = bi->ci_uncompressed_size;
}

int rafs_chunk_dict_arg(const char *arg, const char **path, cf_err *err)
{
    const char *eq = strchr(arg, '=');
    if (!eq) {
        *path = arg;
    } else if ((size_t)(eq - arg) == strlen("bootstrap") && !strncmp(arg, "bootstrap", 9)) {
        *path = eq + 1;
    } else {
        return cf_err_set(err, -EINVAL, "--chunk-dict '%s': want bootstrap=PATH or PATH", arg);
    }
    if (!**path) return cf_err_set(err, -EINVAL, "--chunk-dict '%s': no path", arg);
    return 0;
}

struct load_ctx {
    rafs_image *img;
    struct rafs_chunk_dict *d;
    cf_err *err;
};

static int load_file(const struct rafs_walk_entry *e, void *arg)
{
    struct load_ctx *lc = arg;
    if (!S_ISREG(e->st->mode)) return 0;
    uint64_t n;
    int rc = rafs_file_chunk_count(lc->img, e->nid, &n, lc->err);
    for (uint64_t i = 0; rc == 0 && i < n; i++) {
        struct rafs_chunk_ref r;
        if ((rc = rafs_file_chunk(lc->img, e->nid, i, &r, lc->err))) break;
        if (!r.has_digest || r.blob_index >= lc->d->nblobs) continue; /* cannot be matched */
        if (rafs_chunk_table_find(&lc->d->chunks, r.digest, 0, r.uncompressed_size) >= 0) continue;
        struct rafs_chunk c;
        rafs_chunk_from_ref(&c, &r, 0);
        uint32_t idx;
        if ((rc = rafs_chunk_table_add(&lc->d->chunks, &c, &idx)))
            return cf_err_set(lc->err, rc, "chunk dictionary: %s", strerror(-rc));
        if (idx % 1024 == 0) {
            uint32_t *nb = realloc(lc->d->blob_of, ((size_t)idx + 1024) * sizeof(*nb));
            if (!nb) return cf_err_set(lc->err, -ENOMEM, "out of memory");
            lc->d->blob_of = nb;
        }
        lc->d->blob_of[idx] = r.blob_index;
    }
    return rc;
}

int rafs_chunk_dict_load(const char *path, struct rafs_chunk_dict *d, cf_err *err)
{
    memset(d, 0, sizeof(*d));
    rafs_image *img = NULL;
    int rc = rafs_image_open(path, &img, err);
    if (rc) return cf_err_wrap(err, rc, "chunk dictionary");
    const struct rafs_super_info *sb = rafs_image_super(img);
    d->chunk_size = sb->chunk_size;
    d->compressor = sb->compressor;
    d->digester = sb->digester;
    d->nblobs = rafs_image_blob_count(img);
    d->blobs = calloc(d->nblobs ? d->nblobs : 1, sizeof(*d->blobs));
    if (!d->blobs) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
    } else {
        for (uint32_t i = 0; i < d->nblobs; i++)
            rafs_boot_blob_from_info(rafs_image_blob(img, i), &d->blobs[i]);
        struct load_ctx lc = {.img = img, .d = d, .err = err};
        rc = rafs_walk(img, load_file, &lc, err);
        if (rc) rc = cf_err_wrap(err, rc, "chunk dictionary '%s'", path);
    }
    rafs_image_close(img);
    if (rc) rafs_chunk_dict_free(d);
    return rc;
}

void rafs_chunk_dict_free(struct rafs_chunk_dict *d)
{
    rafs_chunk_table_free(&d->chunks);
    free(d->blob_of);
    free(d->blobs);
    memset(d, 0, sizeof(*d));
}

int rafs_chunk_dict_check(const struct rafs_chunk_dict *d, uint32_t chunk_size,
                          enum rafs_digester digester, const char *what, cf_err *err)
{
    if (d->chunk_size != chunk_size || d->digester != digester)
        return cf_err_set(err, -EINVAL,
                          "%s: the chunk dictionary has chunk size 0x%x and digester %s, this "
                          "build 0x%x and %s: no chunk could match",
                          what, d->chunk_size,
                          d->digester == RAFS_DIGEST_SHA256 ? "sha256" : "blake3", chunk_size,
                          digester == RAFS_DIGEST_SHA256 ? "sha256" : "blake3");
    return 0;
}
