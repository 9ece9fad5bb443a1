/* libFuzzer target for the registry mirror's request parsing (peer/mirror_request.h): the
 * input is split at '\n' into request target, Range header, X-Chunkfly-Upstream header,
 * default upstream, allow-list and Authorization header; every parser must return a status or
 * success with NUL-terminated, in-bounds results. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mirror_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *f[6] = {0};
    char *p = buf;
    for (int i = 0; i < 6; i++) {
        f[i] = p;
        char *nl = p ? strchr(p, '\n') : NULL;
        if (nl) *nl = 0;
        p = nl ? nl + 1 : NULL;
        if (!p) {
            for (int j = i + 1; j < 6; j++) f[j] = NULL;
            break;
        }
    }
    const char *why = NULL;
    struct mirror_target t;
    int st = mirror_parse_target(f[0], &t, &why);
    if (st == 0) {
        if (strlen(t.name) >= sizeof(t.name) || strlen(t.ref) >= sizeof(t.ref) ||
            strlen(t.ns) >= sizeof(t.ns) || strlen(t.abs_host) >= sizeof(t.abs_host))
            abort();
        char path[64];
        if (mirror_upstream_path(&t, path, sizeof(path)) == 0) {
            const char *q = strchr(path, '?'); /* no ns= parameter left in the query */
            if (strlen(path) >= sizeof(path) ||
                (q &&
                 (strncmp(q + 1, "ns=", 3) == 0 || strstr(q, "&ns=") || strcmp(q + 1, "ns") == 0)))
                abort();
        }
        char up[MIRROR_HOST_MAX + 16];
        if (mirror_pick_upstream(&t, f[2], f[3], f[4], up, sizeof(up), &why) == 0 &&
            strlen(up) >= sizeof(up))
            abort();
    } else if ((st != 400 && st != 404) || !why) {
        abort();
    }
    uint64_t a = 0, b = 0;
    st = mirror_parse_range(f[1], &a, &b, &why);
    if (st == 1 && (b < a || a > INT64_MAX)) abort();
    if (st > 1 && st != 400 && st != 416) abort();
    char creds[64];
    st = mirror_basic_creds(f[5], creds, sizeof(creds), &why);
    if (st == 1 && (strlen(creds) >= sizeof(creds) || !strchr(creds, ':'))) abort();
    free(buf);
    return 0;
}
