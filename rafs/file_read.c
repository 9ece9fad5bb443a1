/* File content of a RAFS image through its blob sources (one per blob, e.g. the local files
 * DIR/<blob id>): map the range to chunks, read and verify each chunk, copy the wanted bytes.
 * Used by inspect --manifest, unpack-style tools and the coming FUSE reader. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reader_priv.h"

struct rafs_blob_set {
    uint32_t count;
    rafs_blob_source **src;
};

void rafs_blob_set_close(rafs_blob_set *set)
{
    if (!set) return;
    for (uint32_t i = 0; i < set->count; i++) rafs_blob_source_close(set->src[i]);
    free(set->src);
    free(set);
}

int rafs_blob_set_new(const rafs_image *img, rafs_blob_set **out, cf_err *err)
{
    uint32_t n = rafs_image_blob_count(img);
    rafs_blob_set *set = calloc(1, sizeof(*set));
    if (!set || !(set->src = calloc(n ? n : 1, sizeof(*set->src)))) {
        free(set);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    set->count = n;
    *out = set;
    return 0;
}

int rafs_blob_set_put(rafs_blob_set *set, uint32_t idx, rafs_blob_source *src, cf_err *err)
{
    if (idx >= set->count) {
        rafs_blob_source_close(src);
        return cf_err_set(err, -EINVAL, "blob index %u out of range (%u blobs)", idx, set->count);
    }
    rafs_blob_source_close(set->src[idx]);
    set->src[idx] = src;
    return 0;
}

const rafs_blob_source *rafs_blob_set_get(const rafs_blob_set *set, uint32_t idx)
{
    return idx < set->count ? set->src[idx] : NULL;
}

int rafs_blob_set_open_dir(const rafs_image *img, const char *dir, rafs_blob_set **out, cf_err *err)
{
    rafs_blob_set *set;
    int rc = rafs_blob_set_new(img, &set, err);
    if (rc) return rc;
    for (uint32_t i = 0; i < set->count; i++) {
        const struct rafs_blob_info *bi = rafs_image_blob(img, i);
        char path[4096];
        rafs_blob_source *src;
        if (strchr(bi->id, '/') || !strcmp(bi->id, ".") || !strcmp(bi->id, "..")) {
            rafs_blob_set_close(set);
            return cf_err_set(err, -EBADMSG, "blob id '%s' cannot be a file name", bi->id);
        }
        snprintf(path, sizeof(path), "%s/%s", dir, bi->id);
        if ((rc = rafs_blob_source_open_path(path, &src, NULL))) {
            rafs_blob_set_close(set);
            return cf_err_set(err, rc, "data blob %s: %s", path,
                              rc == -EINVAL ? "not a regular file" : cf_err_str(NULL, rc));
        }
        set->src[i] = src;
    }
    *out = set;
    return 0;
}

int rafs_file_read(const rafs_image *img, const rafs_blob_set *set, uint64_t nid, uint64_t offset,
                   void *buf, size_t len, size_t *nread, cf_err *err)
{
    struct rafs_stat st;
    uint64_t count;
    *nread = 0;
    int rc = rafs_stat(img, nid, &st, err);
    if (rc) return rc;
    if ((rc = rafs_file_chunk_count(img, nid, &count, err))) return rc;
    if (offset >= st.size || len == 0) return 0;
    if (len > st.size - offset) len = (size_t)(st.size - offset);
    uint64_t cs = img->sb.chunk_size;
    uint8_t *chunk = NULL;
    size_t done = 0;
    while (done < len) {
        uint64_t pos = offset + done, idx = pos / cs;
        struct rafs_chunk_ref ref;
        if ((rc = rafs_file_chunk(img, nid, idx, &ref, err))) break;
        const struct rafs_blob_info *bi = &img->blobs[ref.blob_index];
        const rafs_blob_source *src = rafs_blob_set_get(set, ref.blob_index);
        if (!src) {
            rc = cf_err_set(err, -ENOENT, "blob %s not open", bi->id);
            break;
        }
        if (!chunk && !(chunk = malloc(cs))) {
            rc = cf_err_set(err, -ENOMEM, "out of memory");
            break;
        }
        if ((rc = rafs_chunk_read(src, &ref, bi->compressor, bi->digester, chunk, err))) break;
        uint64_t in = pos - ref.file_offset;
        size_t n = (size_t)(ref.uncompressed_size - in);
        if (n > len - done) n = len - done;
        memcpy((uint8_t *)buf + done, chunk + in, n);
        done += n;
    }
    free(chunk);
    *nread = done;
    return rc;
}
