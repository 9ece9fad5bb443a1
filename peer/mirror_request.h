/* The registry mirror's request parsing (mirror.c), pure and allocation-free so it can be fuzzed:
 * the request target (origin-form "/v2/..." or absolute-form "http://host/v2/..."), the Range
 * header and the choice of the upstream registry against the allow-list. */
#ifndef PEER_MIRROR_REQUEST_H
#define PEER_MIRROR_REQUEST_H

#include <stddef.h>
#include <stdint.h>

enum mirror_kind {
    MIRROR_V2_ROOT,  /* /v2/ */
    MIRROR_BLOB,     /* /v2/<name>/blobs/sha256:<hex> */
    MIRROR_MANIFEST, /* /v2/<name>/manifests/<tag|digest> */
    MIRROR_OTHER,    /* any other /v2/ path (tags list, referrers, uploads) */
};

#define MIRROR_HOST_MAX 256

struct mirror_target {
    enum mirror_kind kind;
    char abs_host[MIRROR_HOST_MAX]; /* host of an absolute-form target, "" else */
    char ns[MIRROR_HOST_MAX];       /* ?ns=HOST, "" when absent */
    char name[256];                 /* repository (BLOB, MANIFEST) */
    char ref[136];                  /* digest (BLOB) or tag/digest (MANIFEST) */
    char path[1024];                /* the origin-form path + query (for proxying) */
};

/* Parses a request target. Returns 0, or the HTTP status to answer (400 malformed, 404 not a
 * /v2/ path) with *why set to a static message. */
int mirror_parse_target(const char *target, struct mirror_target *t, const char **why);

/* A Range header value. Returns 0 = no range (hdr NULL): whole blob; 1 = one range, *first and
 * *last (inclusive; UINT64_MAX when open-ended "bytes=a-"); or the HTTP status to answer: 400
 * (malformed, several ranges) or 416 (not satisfiable whatever the length: last < first, a
 * suffix range "bytes=-n", numbers past 2^63). *why is set on errors. */
int mirror_parse_range(const char *hdr, uint64_t *first, uint64_t *last, const char **why);

/* Picks the upstream: the absolute-form host, else ?ns=, else `header` (X-Chunkfly-Upstream, may
 * be NULL), else `def` (may be NULL or ""). It must be on `allow` (entries separated by commas or
 * spaces, each "[http://|https://]host[:port]", matched case-insensitively on host[:port];
 * "docker.io" also matches "registry-1.docker.io" and back). On success *out is the allow-list
 * entry's scheme prefix (if any) + the API host ("docker.io" -> "registry-1.docker.io") and 0 is
 * returned; else 403 (not allowed, or none given) or 400 (bad host) with *why. */
int mirror_pick_upstream(const struct mirror_target *t, const char *header, const char *def,
                         const char *allow, char *out, size_t out_size, const char **why);

/* The path + query to send upstream: t->path without the ns= parameter (ours, not the
 * registry's). 0, or -ENOSPC. */
int mirror_upstream_path(const struct mirror_target *t, char *out, size_t out_size);

/* The user:password of an "Authorization: Basic <base64>" value, for the task's origin
 * credentials. Returns 1 and out filled, 0 for no header or another scheme (Bearer: a token the
 * origin client cannot use), or 400 with *why (bad base64, no ':', too long). */
int mirror_basic_creds(const char *authorization, char *out, size_t out_size, const char **why);

#endif
