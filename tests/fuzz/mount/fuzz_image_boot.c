/* libFuzzer target for chunkfly-mount --image's bootstrap-layer extraction
 * (image_extract_boot, mount/tool/image_pull.c): the input is the layer's bytes (a gzip tar);
 * whatever it holds, extraction must stay within its caps and never write outside out_fd. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cf/file_io.h"
#include "cf/log.h"
#include "image_pull.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cf_log_set_level(CF_LOG_OFF);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int in = memfd_create("layer", MFD_CLOEXEC), out = memfd_create("boot", MFD_CLOEXEC);
    if (in < 0 || out < 0) abort();
    if (cf_write_full(in, data, size) || lseek(in, 0, SEEK_SET) < 0) abort();
    cf_err err = {0};
    int rc = image_extract_boot(in, out, &err);
    if (rc < 0 && !err.msg[0]) abort(); /* every refusal says why */
    close(in);
    close(out);
    return 0;
}
