/* libFuzzer: the reverse-tar tail of a blob (TOC at the end), read through a memory blob
 * source, then every entry read back (decompression + SHA-256), the tar chain walked, and the
 * TOC'd ci array and blob.digest loaded. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "rafs/blob.h"
#include "rafs/blob_source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rafs_blob_toc toc;
    rafs_blob_source *src;
    if (rafs_blob_source_from_mem(data, size, false, &src, NULL)) return 0;
    if (rafs_blob_toc_read(src, &toc, NULL) == 0) {
        for (uint32_t i = 0; i < toc.count; i++) {
            uint8_t *out;
            size_t len;
            if (rafs_blob_toc_read_item(src, &toc.items[i], 1 << 20, &out, &len, NULL) == 0)
                free(out);
        }
        rafs_blob_tar_verify(src, &toc, NULL);
        struct rafs_blob_meta *m;
        if (rafs_blob_meta_load_toc(src, &toc, NULL, &m, NULL) == 0) {
            rafs_blob_meta_load_digests(src, &toc, m, NULL);
            rafs_blob_meta_free(m);
        }
        uint8_t *boot;
        size_t blen;
        if (rafs_blob_read_bootstrap(src, &toc, &boot, &blen, NULL) == 0) free(boot);
    }
    rafs_blob_source_close(src);
    return 0;
}
