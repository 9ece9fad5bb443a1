/* convertd/request.c on arbitrary bytes: the bodies of POST /api/v1/conversions (the API,
 * Harbor's webhook, docker-registry's notifications), then the target rule on what it accepts.
 * Invariants: every accepted source parses as an image reference, is NUL-terminated within its
 * field, and its derived target (when not a target itself) is a tag reference again. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convertd/request.h"
#include "proto/registry_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cvd_request r;
    cf_err e = {0};
    if (cvd_request_parse(data, size, &r, &e) < 0) {
        if (!e.msg[0] || r.n_items || r.items) abort();
        return 0;
    }
    if (r.n_items > CVD_REQUEST_MAX_ITEMS) abort();
    for (size_t i = 0; i < r.n_items; i++) {
        const cvd_request_item *it = &r.items[i];
        if (!memchr(it->source, 0, sizeof(it->source)) ||
            !memchr(it->target, 0, sizeof(it->target)))
            abort();
        proto_image_ref ref;
        if (proto_image_ref_parse(it->source, &ref, NULL) < 0) abort();
        char t[CVD_REF_MAX];
        int rc = cvd_target_for(it->source, "-nydus", NULL, t, sizeof(t), NULL);
        if (rc == 0) {
            proto_image_ref tr;
            if (proto_image_ref_parse(t, &tr, NULL) < 0 || !tr.tag[0] || tr.digest[0]) abort();
            size_t n = strlen(tr.tag);
            if (n < 6 || strcmp(tr.tag + n - 6, "-nydus")) abort();
            if (cvd_target_for(t, "-nydus", NULL, t, sizeof(t), NULL) != 1) abort();
        }
    }
    cvd_request_free(&r);
    return 0;
}
