/* libFuzzer target for chunkfly-mount's API request bodies (mount/tool/api_body.h: the JSON of
 * POST /api/v1/mount and PUT /api/v1/config): any bytes must give a parsed body or an error,
 * never a crash or a leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "api_body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mount_api_mount_body b;
    cf_err err = {0};
    mount_api_parse_mount_body(data, size, &b, &err);
    mount_api_mount_body_free(&b);
    char *auth = NULL;
    if (mount_api_parse_config_body(data, size, &auth, &err) == 0) free(auth);
    return 0;
}
