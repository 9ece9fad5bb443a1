/* libFuzzer: the reverse-tar tail of a blob (TOC at the end), parsed from a memory file, then
 * every entry read back (decompression + SHA-256) and the tar chain walked. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cf/file_io.h"
#include "rafs/blob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rafs_blob_toc toc;
    size_t tail = size < RAFS_TOC_MAX_SIZE ? size : RAFS_TOC_MAX_SIZE;
    if (rafs_blob_toc_parse(data + size - tail, tail, size, &toc, NULL)) return 0;
    int fd = memfd_create("fuzz_toc", 0);
    if (fd < 0) return 0;
    if (cf_write_full(fd, data, size) == 0) {
        for (uint32_t i = 0; i < toc.count; i++) {
            uint8_t *out;
            size_t len;
            if (rafs_blob_toc_read_item(fd, &toc.items[i], 1 << 20, &out, &len, NULL) == 0)
                free(out);
        }
        rafs_blob_tar_verify(fd, size, &toc, NULL);
        struct rafs_blob_meta *m;
        if (rafs_blob_meta_load_toc(fd, &toc, NULL, &m, NULL) == 0) {
            rafs_blob_meta_load_digests(fd, &toc, m, NULL);
            rafs_blob_meta_free(m);
        }
    }
    close(fd);
    return 0;
}
