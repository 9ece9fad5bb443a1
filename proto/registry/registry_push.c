/* Push half of the registry client (registry_push.h): blob HEAD with push rights,
 * cross-repository mount, monolithic and chunked uploads, manifest PUT. The HTTP exchange
 * (bodies, retries, redirects) is reg_http_do; authentication is reg_request_scope. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/hex.h"
#include "cf/log.h"
#include "proto/registry_push.h"
#include "registry_internal.h"

#define PUSH_META_TIMEOUT_MS 30000
#define CHUNK_DEFAULT        (4u << 20)
#define CHUNK_MAX            (64u << 20)
#define URL_MAX              (REG_ORIGIN_MAX + 4096 + 128)

static void push_scope(const char *repo, char *out, size_t cap)
{
    snprintf(out, cap, "repository:%s:pull,push", repo);
}

/* An upload answer's error: 400 DIGEST_INVALID / MANIFEST_* are -EBADMSG, the rest as usual. */
static int push_error(proto_registry *r, const struct reg_resp *s, const char *what,
                      const char *repo, cf_err *err)
{
    cf_err e = {0};
    int rc = reg_status_error(r, s, what, repo, &e);
    if (s->status == 400) rc = -EBADMSG;
    return cf_err_set(err, rc, "%s", e.msg);
}

/* Location of an upload answer as an absolute URL (registries answer with a path). */
static int upload_url(proto_registry *r, const struct reg_resp *s, const char *what, char *out,
                      size_t cap, cf_err *err)
{
    const char *loc = s->location;
    if (!loc[0])
        return cf_err_set(err, -EPROTO, "registry %s: %s: HTTP %ld without a Location header",
                          r->host, what, s->status);
    if (reg_location_url(r->base, loc, out, cap) < 0)
        return cf_err_set(err, -EPROTO, "registry %s: %s: Location too long", r->host, what);
    return 0;
}

/* One authenticated exchange for a push. */
static int push_do(proto_registry *r, const char *repo, const char *scope, struct reg_req *q,
                   struct reg_resp *s, cf_err *err)
{
    memset(s, 0, sizeof(*s));
    return reg_request_scope(r, repo, scope, q, s, err);
}

int proto_registry_blob_exists(proto_registry *r, const char *repo, const char *digest,
                               uint64_t *size, cf_err *err)
{
    int rc = reg_check_names(r, repo, digest, err);
    if (rc < 0) return rc;
    char url[1024], scope[320], what[96];
    snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", r->base, repo, digest);
    snprintf(what, sizeof(what), "blob %s", digest);
    push_scope(repo, scope, sizeof(scope));
    struct reg_resp s;
    struct reg_req q = {.method = "HEAD", .url = url, .total_timeout_ms = PUSH_META_TIMEOUT_MS};
    rc = push_do(r, repo, scope, &q, &s, err);
    if (rc < 0) return rc;
    if (s.status == 404) return 0;
    if (s.status != 200) return reg_status_error(r, &s, what, repo, err);
    if (size) *size = s.content_length < 0 ? 0 : (uint64_t)s.content_length;
    return 1;
}

/* DELETE of an upload session we do not use (best effort: it expires anyway). */
static void upload_cancel(proto_registry *r, const char *repo, const char *scope, const char *url)
{
    struct reg_resp s;
    struct reg_req q = {.method = "DELETE", .url = url, .total_timeout_ms = PUSH_META_TIMEOUT_MS};
    if (push_do(r, repo, scope, &q, &s, NULL) == 0 && s.status >= 300)
        cf_debug("registry %s: cancelling an upload in %s: HTTP %ld", r->host, repo, s.status);
}

int proto_registry_blob_mount(proto_registry *r, const char *repo, const char *digest,
                              const char *from_repo, cf_err *err)
{
    int rc = reg_check_names(r, repo, digest, err);
    if (rc < 0) return rc;
    if (proto_registry_check_repo(from_repo) < 0)
        return cf_err_set(err, -EINVAL, "registry %s: bad repository name \"%.200s\"", r->host,
                          from_repo ? from_repo : "");
    char url[1024], scope[640], what[160], loc[URL_MAX];
    snprintf(url, sizeof(url), "%s/v2/%s/blobs/uploads/?mount=%s&from=%s", r->base, repo, digest,
             from_repo);
    snprintf(scope, sizeof(scope), "repository:%s:pull,push repository:%s:pull", repo, from_repo);
    snprintf(what, sizeof(what), "mount of blob %s from %s", digest, from_repo);
    struct reg_resp s;
    struct reg_req q = {.method = "POST", .url = url, .total_timeout_ms = PUSH_META_TIMEOUT_MS};
    rc = push_do(r, repo, scope, &q, &s, err);
    if (rc < 0) return rc;
    if (s.status == 201) return 1;
    if (s.status != 202) return push_error(r, &s, what, repo, err);
    if (upload_url(r, &s, what, loc, sizeof(loc), NULL) == 0) upload_cancel(r, repo, scope, loc);
    return 0;
}

/* POST /v2/<repo>/blobs/uploads/: the session URL into loc. */
static int upload_start(proto_registry *r, const char *repo, const char *scope, char *loc,
                        size_t cap, cf_err *err)
{
    char url[1024], what[128];
    snprintf(url, sizeof(url), "%s/v2/%s/blobs/uploads/", r->base, repo);
    snprintf(what, sizeof(what), "starting a blob upload");
    struct reg_resp s;
    struct reg_req q = {.method = "POST", .url = url, .total_timeout_ms = PUSH_META_TIMEOUT_MS};
    int rc = push_do(r, repo, scope, &q, &s, err);
    if (rc < 0) return rc;
    if (s.status != 202) return push_error(r, &s, what, repo, err);
    return upload_url(r, &s, what, loc, cap, err);
}

/* PUT <loc>?digest=: completes the upload with the given body (may be empty). */
static int upload_finish(proto_registry *r, const char *repo, const char *scope, const char *loc,
                         const char *digest, struct reg_req *q, cf_err *err)
{
    char url[URL_MAX + 96], what[128];
    int n = snprintf(url, sizeof(url), "%s%cdigest=%s", loc, strchr(loc, '?') ? '&' : '?', digest);
    if (n < 0 || (size_t)n >= sizeof(url))
        return cf_err_set(err, -EPROTO, "registry %s: upload URL too long", r->host);
    snprintf(what, sizeof(what), "upload of blob %s", digest);
    q->method = "PUT";
    q->url = url;
    q->content_type = "application/octet-stream";
    struct reg_resp s;
    int rc = push_do(r, repo, scope, q, &s, err);
    if (rc < 0) return cf_err_wrap(err, rc, "uploading blob %s to %s", digest, repo);
    if (s.status != 201) return push_error(r, &s, what, repo, err);
    return 0;
}

int proto_registry_blob_push_fd(proto_registry *r, const char *repo, int fd, uint64_t offset,
                                uint64_t size, const char *digest, cf_err *err)
{
    int rc = reg_check_names(r, repo, digest, err);
    if (rc < 0) return rc;
    if (fd < 0) return cf_err_set(err, -EINVAL, "registry %s: blob upload without a file", r->host);
    char scope[320], loc[URL_MAX];
    push_scope(repo, scope, sizeof(scope));
    rc = upload_start(r, repo, scope, loc, sizeof(loc), err);
    if (rc < 0) return rc;
    struct reg_req q = {.body_kind = REG_BODY_FD,
                        .body_fd = fd,
                        .body_off = offset,
                        .body_len = size,
                        .total_timeout_ms = r->total_timeout_ms};
    return upload_finish(r, repo, scope, loc, digest, &q, err);
}

int proto_registry_blob_push_stream(proto_registry *r, const char *repo, proto_registry_read_fn fn,
                                    void *ctx, size_t chunk_size, char digest_out[72],
                                    uint64_t *size_out, cf_err *err)
{
    int rc = reg_check_names(r, repo, NULL, err);
    if (rc < 0) return rc;
    if (!fn || !digest_out)
        return cf_err_set(err, -EINVAL, "registry %s: stream upload without a reader", r->host);
    if (chunk_size == 0) chunk_size = CHUNK_DEFAULT;
    if (chunk_size > CHUNK_MAX) chunk_size = CHUNK_MAX;
    char scope[320], loc[URL_MAX], what[160];
    push_scope(repo, scope, sizeof(scope));
    uint8_t *buf = malloc(chunk_size);
    cf_digest_ctx hash;
    if (!buf || cf_digest_init(&hash, CF_DIGEST_SHA256) < 0) {
        free(buf);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    rc = upload_start(r, repo, scope, loc, sizeof(loc), err);
    uint64_t total = 0;
    for (int eof = 0; rc == 0 && !eof;) {
        size_t have = 0;
        while (have < chunk_size) { /* fill one chunk: fewer, larger PATCHes */
            size_t got = 0;
            rc = fn(ctx, buf + have, chunk_size - have, &got);
            if (rc < 0) {
                char eb[128];
                cf_err_set(err, rc, "registry %s: upload to %s: reading the source failed: %s",
                           r->host, repo, strerror_r(-rc, eb, sizeof(eb)));
                break;
            }
            if (got == 0) {
                eof = 1;
                break;
            }
            have += got;
        }
        if (rc < 0 || have == 0) break;
        cf_digest_update(&hash, buf, have);
        char range[64];
        snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, total, total + have - 1);
        snprintf(what, sizeof(what), "upload of bytes %s", range);
        struct reg_req q = {.method = "PATCH",
                            .url = loc,
                            .total_timeout_ms = r->total_timeout_ms,
                            .body_kind = REG_BODY_MEM,
                            .body_mem = buf,
                            .body_len = have,
                            .content_type = "application/octet-stream",
                            .content_range = range};
        struct reg_resp s;
        rc = push_do(r, repo, scope, &q, &s, err);
        if (rc < 0) break;
        if (s.status != 202) {
            rc = push_error(r, &s, what, repo, err);
            break;
        }
        /* The next request goes to the Location of this answer (it carries the state). */
        char next[URL_MAX];
        rc = upload_url(r, &s, what, next, sizeof(next), err);
        if (rc < 0) break;
        memcpy(loc, next, sizeof(loc));
        total += have;
    }
    free(buf);
    if (rc < 0) {
        cf_digest_abort(&hash);
        return rc;
    }
    uint8_t md[CF_DIGEST_LEN];
    char hex[2 * CF_DIGEST_LEN + 1];
    cf_digest_final(&hash, md);
    cf_hex_encode(md, sizeof(md), hex);
    snprintf(digest_out, 72, "sha256:%s", hex);
    struct reg_req q = {.total_timeout_ms = PUSH_META_TIMEOUT_MS};
    rc = upload_finish(r, repo, scope, loc, digest_out, &q, err);
    if (rc == 0 && size_out) *size_out = total;
    return rc;
}

int proto_registry_manifest_put(proto_registry *r, const char *repo, const char *reference,
                                const char *media_type, const void *body, size_t len,
                                char digest_out[72], cf_err *err)
{
    int rc = reg_check_names(r, repo, NULL, err);
    if (rc < 0) return rc;
    int by_digest = reference && strncmp(reference, "sha256:", 7) == 0;
    if (!reference || (by_digest ? proto_registry_check_digest(reference)
                                 : proto_registry_check_tag(reference)) < 0)
        return cf_err_set(err, -EINVAL, "registry %s: bad manifest reference \"%.200s\"", r->host,
                          reference ? reference : "");
    if (!media_type || !media_type[0] || strpbrk(media_type, "\r\n") || !body ||
        len > PROTO_MANIFEST_MAX)
        return cf_err_set(err, -EINVAL, "registry %s: manifest without a media type or too large",
                          r->host);
    uint8_t md[CF_DIGEST_LEN];
    char hex[2 * CF_DIGEST_LEN + 1], digest[72];
    if (cf_sha256(body, len, md) < 0) return cf_err_set(err, -ENOMEM, "out of memory");
    cf_hex_encode(md, sizeof(md), hex);
    snprintf(digest, sizeof(digest), "sha256:%s", hex);
    if (by_digest && strcmp(digest, reference) != 0)
        return cf_err_set(err, -EINVAL, "registry %s: manifest pushed as %s but its digest is %s",
                          r->host, reference, digest);
    char url[1024], scope[320], what[200];
    snprintf(url, sizeof(url), "%s/v2/%s/manifests/%s", r->base, repo, reference);
    snprintf(what, sizeof(what), "manifest %s", reference);
    push_scope(repo, scope, sizeof(scope));
    struct reg_resp s;
    struct reg_req q = {.method = "PUT",
                        .url = url,
                        .total_timeout_ms = PUSH_META_TIMEOUT_MS,
                        .body_kind = REG_BODY_MEM,
                        .body_mem = body,
                        .body_len = len,
                        .content_type = media_type};
    rc = push_do(r, repo, scope, &q, &s, err);
    if (rc < 0) return rc;
    if (s.status != 201) return push_error(r, &s, what, repo, err);
    if (s.docker_digest[0] && strcmp(s.docker_digest, digest) != 0)
        cf_warn("registry %s: manifest %s: registry says %s, body is %s", r->host, reference,
                s.docker_digest, digest);
    if (digest_out) memcpy(digest_out, digest, 72);
    return 0;
}
