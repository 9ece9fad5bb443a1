/* client/containerd_hosts.c on arbitrary bytes: the reading of containerd's config.toml
 * (client_hosts_config_check), the marker test, and the registry / mirror argument checks
 * (whatever they accept must render to a hosts.toml that is still ours). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/containerd_hosts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    client_hosts_cfg c;
    client_hosts_config_check((const char *)data, size, "/etc/containerd/certs.d", &c);
    if (c.state != CLIENT_HOSTS_CFG_MISSING && memchr(c.value, 0, sizeof(c.value)) == NULL) abort();
    (void)client_hosts_is_ours((const char *)data, size);

    char arg[512];
    size_t n = size < sizeof(arg) - 1 ? size : sizeof(arg) - 1;
    memcpy(arg, data, n);
    arg[n] = 0;
    client_hosts_registry r;
    char mirror[320];
    if (client_hosts_registry_parse(arg, &r, NULL) == 0) {
        char *t = NULL;
        if (client_hosts_render(&r, "http://127.0.0.1:65001", &t, NULL) == 0) {
            /* a validated host never breaks the TOML: no quote, newline or backslash */
            if (strpbrk(r.dir, "\"\\\n/") || strcmp(r.dir, "..") == 0 ||
                !client_hosts_is_ours(t, strlen(t)))
                abort();
            free(t);
        }
    }
    if (client_hosts_mirror_parse(arg, mirror, sizeof(mirror), NULL) == 0 &&
        strpbrk(mirror + 8, "\"\\\n/?#@ "))
        abort();
    return 0;
}
