/* make_blob_cache BOOTSTRAP BLOB_DIR OUT_DIR: writes OUT_DIR/<blob id>.blob.data for every blob:
 * each chunk decompressed (and digest-checked) at its uncompressed offset, i.e. the flat
 * "uncompressed blob" that EROFS addresses through device= / fscache. Lets tests mount the
 * bootstrap with real data and compare file contents with the kernel's reads. */
#include <fcntl.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf/file_io.h"
#include "rafs/blob.h"
#include "rafs/reader.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: make_blob_cache BOOTSTRAP BLOB_DIR OUT_DIR\n");
        return 2;
    }
    cf_err err = {0};
    rafs_image *img;
    rafs_blob_set *blobs;
    if (rafs_image_open(argv[1], &img, &err) ||
        rafs_blob_set_open_dir(img, argv[2], &blobs, &err)) {
        fprintf(stderr, "make_blob_cache: %s\n", err.msg);
        return 1;
    }
    uint8_t *buf = malloc(RAFS_MAX_CHUNK_SIZE);
    int rc = buf ? 0 : 1;
    for (uint32_t b = 0; !rc && b < rafs_image_blob_count(img); b++) {
        const struct rafs_blob_info *bi = rafs_image_blob(img, b);
        const rafs_blob_source *src = rafs_blob_set_get(blobs, b);
        struct rafs_blob_meta *m = NULL;
        struct rafs_blob_toc toc;
        char out[4096];
        if (rafs_blob_meta_load(src, bi, &m, &err) ||
            ((bi->features & RAFS_BLOB_HAS_TOC) &&
             (rafs_blob_toc_read(src, &toc, &err) ||
              rafs_blob_meta_load_digests(src, &toc, m, &err)))) {
            fprintf(stderr, "make_blob_cache: %s\n", err.msg);
            rafs_blob_meta_free(m);
            rc = 1;
            break;
        }
        snprintf(out, sizeof(out), "%s/%s.blob.data", argv[3], bi->id);
        int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (ofd < 0 || ftruncate(ofd, (off_t)bi->uncompressed_size) != 0) {
            perror(out);
            rc = 1;
        }
        for (uint32_t i = 0; !rc && i < m->count; i++) {
            struct rafs_chunk_ref r = {.blob_index = b, .blob_id = bi->id, .ci_index = i};
            r.compressed_offset = m->ci[i].compressed_offset;
            r.compressed_size = m->ci[i].compressed_size;
            r.uncompressed_offset = m->ci[i].uncompressed_offset;
            r.uncompressed_size = m->ci[i].uncompressed_size;
            r.compressed = (m->ci[i].flags & RAFS_CI_V2_COMPRESSED) != 0;
            if (m->digests) {
                r.has_digest = 1;
                memcpy(r.digest, m->digests[i], 32);
            }
            if (rafs_chunk_read(src, &r, bi->compressor, bi->digester, buf, &err) ||
                cf_pwrite_full(ofd, buf, r.uncompressed_size, r.uncompressed_offset)) {
                fprintf(stderr, "make_blob_cache: %s\n", err.msg[0] ? err.msg : "write failed");
                rc = 1;
            }
        }
        if (ofd >= 0) close(ofd);
        rafs_blob_meta_free(m);
    }
    free(buf);
    rafs_blob_set_close(blobs);
    rafs_image_close(img);
    return rc;
}
