/* libFuzzer target for chunkfly-mount's config parser (nydusd v1 JSON, mount/config.h): any
 * bytes must give a config or an error, never a crash or a leak. */
#include <stddef.h>
#include <stdint.h>

#include "mount/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mount_config *c = NULL;
    cf_err err = {0};
    if (mount_config_parse((const char *)data, size, &c, &err) == 0) mount_config_free(c);
    return 0;
}
