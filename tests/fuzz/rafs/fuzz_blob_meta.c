/* libFuzzer: the ci array + 4 KiB header, as an on-disk blob.meta cache file and as the
 * stored ci of a data blob (header at the end of the input, ci right before it, stored with
 * the compressor the header names): decoded directly, and loaded through a memory blob source
 * the way check/mount load a data blob's ci (decompression included). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rafs/blob.h"
#include "rafs/blob_source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rafs_blob_meta *m;
    if (rafs_blob_meta_parse_cache(data, size, NULL, &m, NULL) == 0) rafs_blob_meta_free(m);
    if (size < RAFS_CI_HEADER_SIZE) return 0;
    struct rafs_ci_header_info h;
    const uint8_t *hdr = data + size - RAFS_CI_HEADER_SIZE;
    if (rafs_ci_header_parse(hdr, &h, NULL)) return 0;
    size_t avail = size - RAFS_CI_HEADER_SIZE;
    if (h.ci_compressor == RAFS_COMP_NONE && h.ci_uncompressed_size <= avail &&
        rafs_blob_meta_decode(&h, hdr - h.ci_uncompressed_size, h.ci_uncompressed_size, avail, 0,
                              &m, NULL) == 0)
        rafs_blob_meta_free(m);
    /* a blob-table entry that agrees with the header, ci stored just before it */
    struct rafs_blob_info bi;
    memset(&bi, 0, sizeof(bi));
    strcpy(bi.id, "fuzz");
    bi.features = h.features;
    bi.chunk_count = h.entries;
    bi.ci_compressor = h.ci_compressor;
    bi.ci_compressed_size = h.ci_compressed_size;
    bi.ci_uncompressed_size = h.ci_uncompressed_size;
    bi.ci_offset = h.ci_offset;
    rafs_blob_source *src;
    if (rafs_blob_source_from_mem(data, size, false, &src, NULL)) return 0;
    if (rafs_blob_meta_load(src, &bi, &m, NULL) == 0) rafs_blob_meta_free(m);
    rafs_blob_source_close(src);
    return 0;
}
