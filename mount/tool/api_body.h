/* chunkfly-mount's API request bodies (the JSON a client POSTs or PUTs), parsed without
 * touching FUSE, the images or the daemon: the API handlers (api.c) and the libFuzzer target
 * (tests/fuzz/mount/fuzz_mount_api.c) call the same functions. Pure: no I/O, no globals, any
 * thread. Bodies are untrusted bytes: any length, not NUL-terminated. */
#ifndef MOUNT_API_BODY_H
#define MOUNT_API_BODY_H

#include <stddef.h>

#include "cf/error.h"

/* POST /api/v1/mount: {"source": BOOTSTRAP, "fs_type": "rafs", "config": NYDUSD_JSON (a string,
 * or the object itself), "prefetch_files": [PATH...]}. Every member is owned by the struct. */
struct mount_api_mount_body {
    char *source;    /* the bootstrap path, never NULL after a successful parse */
    char *config;    /* nydusd JSON text, or NULL when the body has none */
    char **prefetch; /* the string entries of prefetch_files (others are skipped), NULL-ended */
    size_t nprefetch;
};

/* Parses a POST /api/v1/mount body into *out (zeroed first; freed with
 * mount_api_mount_body_free, also after an error). Errors: -EINVAL (not a JSON object, no
 * "source"), -ENOTSUP (fs_type other than "rafs"), -ENOMEM; err says which, for a 400 answer. */
int mount_api_parse_mount_body(const void *body, size_t len, struct mount_api_mount_body *out,
                               cf_err *err);
void mount_api_mount_body_free(struct mount_api_mount_body *b);

/* PUT /api/v1/config: {"registry_auth": "<base64 user:password>"}. On success *auth is a new
 * string the caller frees. Errors: -EINVAL (no such string member, bad JSON), -ENOMEM. */
int mount_api_parse_config_body(const void *body, size_t len, char **auth, cf_err *err);

#endif
