/* libFuzzer target for the registry client's parsers of untrusted bytes: the WWW-Authenticate
 * challenge, the token server's JSON answer, docker config.json and image references. The
 * first byte picks the parser (so each keeps its own corpus shape); the rest is the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cf/log.h"
#include "proto/registry_auth.h"
#include "proto/registry_client.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cf_log_set_level(CF_LOG_OFF); /* the credsStore warning would flood the output */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned sel = data[0] % 4;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    cf_err err = {0};
    switch (sel) {
    case 0: {
        proto_auth_challenge c;
        if (proto_auth_parse_challenge(s, n, &c, &err) == 0) {
            /* outputs are NUL-terminated within their arrays */
            if (!memchr(c.realm, 0, sizeof(c.realm)) || !memchr(c.scope, 0, sizeof(c.scope)))
                abort();
        }
        break;
    }
    case 1: {
        char *t = NULL;
        long ttl;
        if (proto_auth_parse_token(s, n, &t, &ttl, &err) == 0) {
            if (!t || strlen(t) > PROTO_TOKEN_MAX || ttl < 1) abort();
            for (const char *p = t; *p; p++)
                if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) abort();
        }
        free(t);
        break;
    }
    case 2: {
        char *u = NULL, *p = NULL;
        if (proto_docker_config_parse(s, n, "127.0.0.1:5000", &u, &p, &err) == 0) {
            if (!u || !p) abort();
        }
        free(u);
        free(p);
        char *u2 = NULL, *p2 = NULL;
        proto_docker_config_parse(s, n, "registry-1.docker.io", &u2, &p2, NULL);
        free(u2);
        free(p2);
        break;
    }
    default: {
        char *str = malloc(n + 1);
        if (!str) return 0;
        memcpy(str, s, n);
        str[n] = '\0';
        proto_image_ref r;
        if (proto_image_ref_parse(str, &r, &err) == 0) {
            if (proto_registry_check_repo(r.repo) != 0) abort();
            if (r.digest[0] && proto_registry_check_digest(r.digest) != 0) abort();
        }
        free(str);
        break;
    }
    }
    return 0;
}
