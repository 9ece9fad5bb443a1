/* libFuzzer: the ci array + 4 KiB header, as an on-disk blob.meta cache file and as the
 * stored ci of a data blob (header at the end of the input, ci right before it, stored with
 * the compressor the header names). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rafs/blob.h"

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
    return 0;
}
