/* registry backend: blobs by ranged GET /v2/<repo>/blobs/sha256:<id> through the project's
 * registry client (auth, token flow, retries, Range), optionally behind a proxy
 * (backend_proxy.c) with nydusd's fallback: a read the proxy fails is retried here at once.
 *
 * Renewed credentials (mount_backend_set_auth) build new registry clients and swap them in;
 * reads in flight keep the client they started with (reference counts), so nothing is freed
 * under them and each client's token cache matches its credentials. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_internal.h"
#include "cf/base64.h"
#include "cf/log.h"
#include "proto/registry_client.h"

#define AUTH_B64_MAX 8192

struct reg_ref {
    proto_registry *r;
    int refs;
};

struct be_registry {
    char *host, *repo;
    bool plain_http;
    char *token;     /* registry_token, NULL = none */
    char **ca_files; /* copy, NULL-terminated, may be NULL */
    bool skip_verify;
    uint32_t timeout_s, connect_timeout_s, retry_limit;
    char *proxy_url; /* http forward proxy, NULL = none */
    bool proxy_http_scheme, proxy_fail_fast;

    pthread_mutex_t lock; /* guards the three below */
    struct reg_ref *direct, *via_proxy;
    char *creds; /* "user:password" or NULL; secret */
};

static void free_secret(char *s)
{
    if (s) explicit_bzero(s, strlen(s));
    free(s);
}

/* "user:password" out of base64 `auth`, malloc'd into *out. */
static int decode_auth(const char *auth, char **out, const char *what, cf_err *err)
{
    *out = NULL;
    size_t al = strlen(auth);
    if (al > AUTH_B64_MAX) return cf_err_set(err, -EINVAL, "%s: too long", what);
    size_t cap = cf_base64_decoded_max(al);
    uint8_t *dec = malloc(cap + 1);
    if (!dec) return cf_err_set(err, -ENOMEM, "out of memory");
    ssize_t n = cf_base64_decode(auth, al, dec, cap);
    if (n < 0 || !memchr(dec, ':', (size_t)n) || dec[0] == ':' || memchr(dec, 0, (size_t)n)) {
        if (n > 0) explicit_bzero(dec, (size_t)n);
        free(dec);
        return cf_err_set(err, -EINVAL, "%s is not base64 of user:password", what);
    }
    dec[n] = 0;
    *out = (char *)dec;
    return 0;
}

static void ref_put(struct be_registry *g, struct reg_ref *ref)
{
    if (!ref) return;
    pthread_mutex_lock(&g->lock);
    int last = --ref->refs == 0;
    pthread_mutex_unlock(&g->lock);
    if (last) {
        proto_registry_free(ref->r);
        free(ref);
    }
}

static struct reg_ref *ref_get(struct be_registry *g, bool via_proxy)
{
    pthread_mutex_lock(&g->lock);
    struct reg_ref *ref = via_proxy ? g->via_proxy : g->direct;
    if (ref) ref->refs++;
    pthread_mutex_unlock(&g->lock);
    return ref;
}

/* A registry client for `creds` (may be NULL), direct or through the forward proxy. */
static int client_new(const struct be_registry *g, const char *creds, bool via_proxy,
                      struct reg_ref **out, cf_err *err)
{
    *out = NULL;
    char *user = NULL;
    const char *pass = NULL;
    if (creds) {
        if (!(user = strdup(creds))) return cf_err_set(err, -ENOMEM, "out of memory");
        char *c = strchr(user, ':');
        *c = 0;
        pass = c + 1;
    }
    proto_registry_opts o = {
        .scheme = (g->plain_http || (via_proxy && g->proxy_http_scheme))
                      ? PROTO_REGISTRY_SCHEME_HTTP
                      : PROTO_REGISTRY_SCHEME_HTTPS,
        .username = user,
        .password = pass,
        .docker_config = "", /* nydusd's config carries its own credentials */
        .connect_timeout_ms = (long)g->connect_timeout_s * 1000,
        /* nydusd's "timeout": a request making no progress for this long fails. */
        .stall_timeout_ms = (long)g->timeout_s * 1000,
        .max_retries = g->retry_limit ? (int)g->retry_limit : -1,
        .retry_base_ms = 100,
        /* retries stay within the configured timeout, so a dead registry fails in bounded time */
        .retry_budget_ms = (long)g->timeout_s * 1000,
        .insecure_tls = g->skip_verify,
        .bearer_token = g->token,
        .extra_ca_files = (const char *const *)g->ca_files,
        .user_agent = "chunkfly-mount/" CHUNKFLY_VERSION,
    };
    if (via_proxy) {
        o.proxy = g->proxy_url;
        /* With a fallback, a failing proxy must fail fast: the registry is next. */
        if (g->proxy_fail_fast) o.max_retries = -1;
    }
    struct reg_ref *ref = calloc(1, sizeof(*ref));
    int rc = ref ? proto_registry_new(g->host, &o, &ref->r, err)
                 : cf_err_set(err, -ENOMEM, "out of memory");
    free_secret(user);
    if (rc < 0) {
        free(ref);
        return rc;
    }
    ref->refs = 1;
    *out = ref;
    return 0;
}

/* Builds fresh clients for `creds` and swaps them in. */
static int clients_swap(struct be_registry *g, char *creds, cf_err *err)
{
    struct reg_ref *d = NULL, *p = NULL;
    int rc = client_new(g, creds, false, &d, err);
    if (!rc && g->proxy_url) rc = client_new(g, creds, true, &p, err);
    if (rc) {
        ref_put(g, d);
        free_secret(creds);
        return rc;
    }
    pthread_mutex_lock(&g->lock);
    struct reg_ref *od = g->direct, *op = g->via_proxy;
    char *oc = g->creds;
    g->direct = d;
    g->via_proxy = p;
    g->creds = creds;
    pthread_mutex_unlock(&g->lock);
    ref_put(g, od);
    ref_put(g, op);
    free_secret(oc);
    return 0;
}

void be_registry_free(struct be_registry *g)
{
    if (!g) return;
    ref_put(g, g->direct);
    ref_put(g, g->via_proxy);
    free_secret(g->creds);
    free(g->host);
    free(g->repo);
    free_secret(g->token);
    for (size_t i = 0; g->ca_files && g->ca_files[i]; i++) free(g->ca_files[i]);
    free(g->ca_files);
    free(g->proxy_url);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

int be_registry_new(const struct mount_backend_config *cfg, struct be_registry **out, cf_err *err)
{
    *out = NULL;
    if (!cfg->host || !cfg->repo)
        return cf_err_set(err, -EINVAL,
                          "registry backend: device.backend.config.%s is not set (the registry "
                          "HOST[:PORT] and the image's repository)",
                          cfg->host ? "repo" : "host");
    if (proto_registry_check_repo(cfg->repo) < 0)
        return cf_err_set(err, -EINVAL, "registry backend: \"%.100s\" is not a repository name",
                          cfg->repo);
    struct be_registry *g = calloc(1, sizeof(*g));
    if (!g) return cf_err_set(err, -ENOMEM, "out of memory");
    pthread_mutex_init(&g->lock, NULL);
    g->plain_http = cfg->scheme && strcmp(cfg->scheme, "http") == 0;
    g->skip_verify = cfg->skip_verify;
    g->timeout_s = cfg->timeout_s ? cfg->timeout_s : 5;
    g->connect_timeout_s = cfg->connect_timeout_s ? cfg->connect_timeout_s : 5;
    g->retry_limit = cfg->retry_limit;
    int oom = !(g->host = strdup(cfg->host)) || !(g->repo = strdup(cfg->repo)) ||
              (cfg->registry_token && !(g->token = strdup(cfg->registry_token)));
    size_t n = 0;
    while (cfg->ca_cert_files && cfg->ca_cert_files[n]) n++;
    if (!oom && n) {
        oom = !(g->ca_files = calloc(n + 1, sizeof(char *)));
        for (size_t i = 0; !oom && i < n; i++)
            oom = !(g->ca_files[i] = strdup(cfg->ca_cert_files[i]));
    }
    const char *pu = cfg->proxy.url;
    if (!oom && pu && strncmp(pu, "unix:", 5) != 0) {
        oom = !(g->proxy_url = strdup(pu));
        /* nydusd's use_http: the registry URL sent to the proxy says http, so a plain
         * forward proxy (the peer's mirror) gets an absolute URL instead of a CONNECT. */
        g->proxy_http_scheme = cfg->proxy.use_http;
        g->proxy_fail_fast = cfg->proxy.fallback;
    }
    if (oom) {
        be_registry_free(g);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    char *creds = NULL;
    int rc = 0;
    if (cfg->auth) rc = decode_auth(cfg->auth, &creds, "device.backend.config.auth", err);
    if (!rc) rc = clients_swap(g, creds, err);
    if (rc) {
        be_registry_free(g);
        return cf_err_wrap(err, rc, "registry backend %s", cfg->host);
    }
    *out = g;
    return 0;
}

int be_registry_set_auth(struct be_registry *g, const char *auth_b64, cf_err *err)
{
    char *creds = NULL;
    int rc = decode_auth(auth_b64, &creds, "registry_auth", err);
    if (rc) return rc;
    return clients_swap(g, creds, err); /* takes creds */
}

const char *be_registry_host(const struct be_registry *g)
{
    return g->host;
}

const char *be_registry_repo(const struct be_registry *g)
{
    return g->repo;
}

bool be_registry_plain_http(const struct be_registry *g)
{
    return g->plain_http;
}

char *be_registry_creds(struct be_registry *g)
{
    pthread_mutex_lock(&g->lock);
    char *c = g->creds ? strdup(g->creds) : NULL;
    pthread_mutex_unlock(&g->lock);
    return c;
}

int be_registry_read(struct be_registry *g, bool via_proxy, const char *digest, void *buf,
                     size_t len, uint64_t off, size_t *got, cf_err *err)
{
    *got = 0;
    struct reg_ref *ref = ref_get(g, via_proxy);
    if (!ref) return cf_err_set(err, -EINVAL, "registry backend: no proxy client");
    int rc = proto_registry_blob_read(ref->r, g->repo, digest, off, len, buf, got, err);
    ref_put(g, ref);
    return rc;
}

int be_registry_size(struct be_registry *g, bool via_proxy, const char *digest, uint64_t *size,
                     cf_err *err)
{
    struct reg_ref *ref = ref_get(g, via_proxy);
    if (!ref) return cf_err_set(err, -EINVAL, "registry backend: no proxy client");
    int rc = proto_registry_blob_size(ref->r, g->repo, digest, size, err);
    ref_put(g, ref);
    return rc;
}

/* ---- the blob source ------------------------------------------------------------------ */

struct remote_source {
    rafs_blob_source src; /* first: close() frees the whole struct */
    mount_backend *b;
    char digest[72];
    uint64_t size; /* 0 = not known yet; set once (atomically) */
};

/* Failures reach the reader as an errno only; the message goes to the log, at most about
 * once a second per backend so a dead registry does not flood it. */
static void log_failure(mount_backend *b, int rc, const cf_err *e, const char *digest)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec, last = __atomic_load_n(&b->last_log_s, __ATOMIC_RELAXED);
    if (now != last && __atomic_compare_exchange_n(&b->last_log_s, &last, now, false,
                                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        cf_error("blob %s: %s", digest + 7, cf_err_str(e, rc));
    else
        cf_debug("blob %s: %s", digest + 7, cf_err_str(e, rc));
}

static int source_size(struct remote_source *s, uint64_t *out, cf_err *err)
{
    uint64_t v = __atomic_load_n(&s->size, __ATOMIC_ACQUIRE);
    if (v) {
        *out = v;
        return 0;
    }
    mount_backend *b = s->b;
    int rc = -EAGAIN;
    if (b->proxy && be_proxy_usable(b->proxy)) {
        cf_err pe = {0};
        rc = be_proxy_size(b, s->digest, &v, &pe);
        /* -ENOENT: the peer holds nothing of it yet, so it cannot say the length without
         * downloading the whole blob; the registry's HEAD answers, also without fallback. */
        if (rc < 0 && rc != -ENOENT) {
            if (!be_proxy_fallback(b->proxy)) {
                if (err) *err = pe;
                return rc;
            }
            be_proxy_mark_failed(b, &pe);
        }
    }
    if (rc < 0) rc = be_registry_size(b->registry, false, s->digest, &v, err);
    if (rc < 0) return rc;
    if (v == 0)
        return cf_err_set(err, -EBADMSG, "blob %s: the registry says it is empty", s->digest);
    __atomic_store_n(&s->size, v, __ATOMIC_RELEASE);
    *out = v;
    return 0;
}

static int remote_size(const rafs_blob_source *src, uint64_t *out)
{
    struct remote_source *s = src->ctx;
    cf_err e = {0};
    int rc = source_size(s, out, &e);
    if (rc < 0) {
        be_count(&s->b->st.errors, 1);
        log_failure(s->b, rc, &e, s->digest);
    }
    return rc;
}

static ssize_t remote_pread(const rafs_blob_source *src, void *buf, size_t len, uint64_t off)
{
    struct remote_source *s = src->ctx;
    mount_backend *b = s->b;
    be_count(&b->st.requests, 1);
    cf_err e = {0};
    uint64_t size = 0;
    int rc = source_size(s, &size, &e);
    if (rc < 0) goto fail;
    if (off >= size || len == 0) return 0;
    if (len > size - off) len = (size_t)(size - off);
    if (len > SSIZE_MAX) len = SSIZE_MAX;
    size_t got = 0;
    if (b->proxy) {
        if (be_proxy_usable(b->proxy)) {
            rc = be_proxy_read(b, s->digest, buf, len, off, &got, &e);
            if (rc == 0) {
                be_count(&b->st.bytes_from_proxy, got);
                return (ssize_t)got;
            }
            if (!be_proxy_fallback(b->proxy)) goto fail;
            be_proxy_mark_failed(b, &e);
            cf_err_clear(&e);
        }
        be_count(&b->st.fallbacks, 1);
    }
    rc = be_registry_read(b->registry, false, s->digest, buf, len, off, &got, &e);
    if (rc < 0) goto fail;
    be_count(&b->st.bytes_from_registry, got);
    return (ssize_t)got;
fail:
    be_count(&b->st.errors, 1);
    log_failure(b, rc, &e, s->digest);
    return rc;
}

static void remote_close(rafs_blob_source *src)
{
    free(src->ctx);
}

static const struct rafs_blob_source_ops remote_ops = {remote_pread, remote_size, remote_close};

int be_registry_open(mount_backend *b, const char *blob_id, uint64_t size, rafs_blob_source **out,
                     cf_err *err)
{
    *out = NULL;
    int rc = be_check_blob_id(blob_id, "registry", err);
    if (rc) return rc;
    struct remote_source *s = calloc(1, sizeof(*s));
    if (!s) return cf_err_set(err, -ENOMEM, "out of memory");
    snprintf(s->digest, sizeof(s->digest), "sha256:%s", blob_id);
    s->b = b;
    s->size = size;
    s->src.ops = &remote_ops;
    s->src.ctx = s;
    *out = &s->src;
    return 0;
}
