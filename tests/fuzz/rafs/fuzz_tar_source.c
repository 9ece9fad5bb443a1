/* libFuzzer target: arbitrary bytes as a layer tar (plain or compressed) through the builder's
 * tar source, blob writer and bootstrap writer: paths, hard links, xattrs, types and sizes come
 * from untrusted headers. Errors are fine; crashes, leaks and UB are not. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cf/buf.h"
#include "cf/log.h"
#include "rafs/builder.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd_null = -1;
    if (fd_null < 0) {
        cf_log_set_level(CF_LOG_OFF);
        fd_null = open("/dev/null", O_WRONLY);
    }
    int mfd = memfd_create("tar", 0);
    if (mfd < 0) return 0;
    if (write(mfd, data, size) != (ssize_t)size) {
        close(mfd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
    struct rafs_tree t;
    struct rafs_chunk_table ct = {0};
    rafs_blob_writer *w = NULL;
    struct rafs_blob_opts o = {.chunk_size = 0x1000,
                               .compressor = RAFS_COMP_LZ4_BLOCK,
                               .digester = RAFS_DIGEST_BLAKE3,
                               .blob_toc = 1};
    cf_err err = {0};
    if (rafs_tree_init(&t) == 0) {
        if (rafs_blob_writer_new(&o, fd_null, -1, 0, &ct, &w, &err) == 0 &&
            rafs_tar_source_read(path, &t, w, NULL, &err) == 0 &&
            rafs_blob_writer_write_meta(w, &err) == 0) {
            struct rafs_blob_result r;
            rafs_blob_writer_preview(w, &r);
            struct rafs_boot_blob bb = {
                .id = "x", .chunk_count = r.chunk_count, .uncompressed_size = r.uncompressed_size};
            struct rafs_boot_opts bo = {.chunk_size = o.chunk_size,
                                        .compressor = o.compressor,
                                        .digester = o.digester,
                                        .blobs = &bb,
                                        .nblobs = r.chunk_count ? 1 : 0};
            cf_buf boot = {0};
            rafs_bootstrap_build(&t, &ct, &bo, &boot, &err);
            cf_buf_free(&boot);
        }
        rafs_blob_writer_free(w);
        rafs_chunk_table_free(&ct);
        rafs_tree_free(&t);
    }
    close(mfd);
    return 0;
}
