/* chunkfly-mount's configuration: nydusd's v1 JSON config (what nydus-snapshotter writes, see
 * ../shared/docs/runtime-contracts.md §1), parsed into one plain struct.
 *
 * Rules: every key nydusd or nydus-snapshotter sends is accepted; keys that matter to us are
 * used, the others are accepted and ignored (listed in docs/mount.md). A key that neither
 * nydusd nor we know is an error naming its JSON path ("device.backend.config.hots: unknown
 * key"). Wrong types and impossible values are errors naming the key too.
 *
 * Ownership: mount_config_parse() allocates *out; free it with mount_config_free(). Strings in
 * the struct are owned by it. Errors: 0, -EINVAL (bad key/type/value, message names it),
 * -EBADMSG (not JSON, with line:column), -ENOTSUP (a backend type we do not serve: oss, s3),
 * -ENOMEM. */
#ifndef MOUNT_CONFIG_H
#define MOUNT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

enum mount_backend_type {
    MOUNT_BACKEND_LOCALFS = 1, /* blobs are files in a directory */
    MOUNT_BACKEND_REGISTRY,    /* OCI distribution: GET /v2/<repo>/blobs/sha256:<id> + Range */
};

struct mount_proxy_config {
    char *url;               /* NULL = none; "http://HOST:PORT" forward proxy; "unix:PATH" peer */
    bool fallback;           /* to the registry when the proxy is unhealthy (nydusd default) */
    char *ping_url;          /* health check URL; NULL = derive (/v2/ or the peer's own check) */
    uint32_t check_interval; /* seconds between health checks (nydusd default 5) */
    bool use_http;           /* accepted (nydusd: talk plain http to the proxy) */
};

struct mount_backend_config {
    enum mount_backend_type type;
    /* localfs */
    char *dir;        /* blob directory: <dir>/<blob_id> */
    char *blob_file;  /* one explicit blob file (nydusd localfs.blob_file) */
    char **alt_dirs;  /* NULL-terminated, may be NULL: more directories to look in */
    /* registry */
    char *host;       /* "registry:5000" */
    char *repo;       /* "library/busybox" */
    char *scheme;     /* "http" | "https" (default https) */
    char *auth;       /* base64 "user:pass" or NULL; secret: never logged */
    char *registry_token; /* bearer token or NULL; secret: never logged */
    bool skip_verify; /* TLS: do not verify the registry's certificate */
    char **ca_cert_files; /* NULL-terminated, may be NULL */
    uint32_t timeout_s, connect_timeout_s; /* 0 = defaults (nydusd: 5 s, 5 s) */
    uint32_t retry_limit;
    struct mount_proxy_config proxy;
};

struct mount_cache_config {
    bool enabled;       /* device.cache.type == "blobcache" (else no persistent cache) */
    char *work_dir;     /* device.cache.config.work_dir */
    bool compressed;    /* accepted; we always cache uncompressed chunks (nydus-format §6.4) */
    bool disable_indexed_map; /* accepted */
};

struct mount_prefetch_config {
    bool enable;
    bool prefetch_all;
    uint32_t threads_count;
    uint64_t merging_size;   /* bytes */
    uint64_t bandwidth_rate; /* bytes/s, 0 = unlimited */
};

struct mount_config {
    char *id;                 /* device.id, may be NULL */
    struct mount_backend_config backend;
    struct mount_cache_config cache;
    struct mount_prefetch_config prefetch;
    char *mode;               /* "direct" | "cached" (accepted) */
    bool digest_validate;     /* accepted: chunks are always verified */
    bool enable_xattr;        /* serve xattrs (default true for us) */
    uint64_t amplify_io;      /* bytes: merge adjacent missing chunks up to this (default 1 MiB) */
    bool iostats_files, access_pattern, latest_read_files; /* accepted */
    /* id_mapping [inside, outside, count] (user-namespace remapped ids), when given. */
    bool has_id_mapping;
    uint32_t id_mapping[3];
};

int mount_config_parse(const char *json, size_t len, struct mount_config **out, cf_err *err);
int mount_config_load(const char *path, struct mount_config **out, cf_err *err);
void mount_config_free(struct mount_config *c);

#endif
