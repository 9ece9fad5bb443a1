/* The registry client: options, credentials, the auth flow (anonymous -> Basic or Bearer as
 * the 401 challenge asks), the token cache, and the blob/manifest calls. The HTTP exchange
 * itself (redirects, retries, ranges) is in registry_http.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "cf/file_io.h"
#include "cf/hex.h"
#include "cf/log.h"
#include "registry_internal.h"

#define TOKEN_ANSWER_MAX (64u << 10)
#define META_TIMEOUT_MS  30000 /* manifests, HEADs and tokens are small */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void proto_registry_global_cleanup(void)
{
    curl_global_cleanup();
}

static int is_loopback_host(const char *host)
{
    if (strncmp(host, "localhost", 9) == 0 && (host[9] == '\0' || host[9] == ':')) return 1;
    if (strncmp(host, "127.", 4) == 0) return 1;
    if (strncmp(host, "[::1]", 5) == 0) return 1;
    return 0;
}

static char *dup_or_null(const char *s, int *oom)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = 1;
    return d;
}

static void free_secret(char *s)
{
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

const char *proto_registry_host(const proto_registry *r)
{
    return r->host;
}

int proto_registry_plain_http(const proto_registry *r)
{
    return strncmp(r->base, "http://", 7) == 0;
}

#define CA_FILE_MAX (16u << 20)

static int ca_append(cf_buf *b, const char *path, cf_err *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = cf_read_file(path, CA_FILE_MAX, &data, &len, err);
    if (rc < 0) return rc;
    if (cf_buf_append(b, data, len) < 0 || cf_buf_append(b, "\n", 1) < 0) rc = -ENOMEM;
    free(data);
    return rc < 0 ? cf_err_set(err, rc, "out of memory") : 0;
}

/* The CA store plus the extra files, as one PEM bundle in memory: curl takes either a file or
 * a blob, and the extra files must add to the system store, not replace it. */
static int ca_bundle(proto_registry *r, const char *const *extra, cf_err *err)
{
    cf_buf b = {0};
    const char *base = r->ca_file;
    CURL *h = NULL;
    if (!base && (h = curl_easy_init())) {
        char *def = NULL;
        if (curl_easy_getinfo(h, CURLINFO_CAINFO, &def) == CURLE_OK) base = def;
    }
    int rc = 0;
    if (base) {
        cf_err e = {0};
        rc = ca_append(&b, base, &e);
        if (rc == -ENOENT) rc = 0; /* no system bundle: only the extra files */
        if (rc < 0) cf_err_set(err, rc, "registry %s: CA store: %s", r->host, e.msg);
    }
    if (h) curl_easy_cleanup(h);
    for (size_t i = 0; rc == 0 && extra[i]; i++) {
        cf_err e = {0};
        rc = ca_append(&b, extra[i], &e);
        if (rc < 0) cf_err_set(err, rc, "registry %s: CA file: %s", r->host, e.msg);
    }
    if (rc < 0) {
        cf_buf_free(&b);
        return rc;
    }
    r->ca_pem = (char *)b.data;
    r->ca_pem_len = b.len;
    return 0;
}

int proto_registry_new(const char *host, const proto_registry_opts *opts, proto_registry **out,
                       cf_err *err)
{
    proto_registry_opts def = {0};
    if (!opts) opts = &def;
    *out = NULL;
    if (!host || !host[0] || strlen(host) >= sizeof(((proto_registry *)0)->host) ||
        strpbrk(host, "/?#@ \t\r\n"))
        return cf_err_set(err, -EINVAL, "registry host \"%.100s\" is not host[:port]",
                          host ? host : "");
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return cf_err_set(err, -EIO, "libcurl initialisation failed: %s",
                          curl_easy_strerror(curl_init_rc));
    proto_registry *r = calloc(1, sizeof(*r));
    if (!r) return cf_err_set(err, -ENOMEM, "out of memory");
    strcpy(r->host, host);
    const char *scheme;
    switch (opts->scheme) {
    case PROTO_REGISTRY_SCHEME_HTTP:
        scheme = "http";
        break;
    case PROTO_REGISTRY_SCHEME_HTTPS:
        scheme = "https";
        break;
    default:
        scheme = is_loopback_host(host) ? "http" : "https";
    }
    snprintf(r->base, sizeof(r->base), "%s://%s", scheme, host);
    if (reg_url_origin(r->base, r->origin, sizeof(r->origin)) < 0) {
        free(r);
        return cf_err_set(err, -EINVAL, "registry host \"%.100s\" is not host[:port]", host);
    }
    r->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 5000;
    r->stall_timeout_ms = opts->stall_timeout_ms > 0 ? opts->stall_timeout_ms : 10000;
    r->low_speed_bytes = opts->low_speed_bytes > 0 ? opts->low_speed_bytes : 1;
    r->total_timeout_ms = opts->total_timeout_ms > 0 ? opts->total_timeout_ms : 0;
    r->max_retries = opts->max_retries < 0 ? 0 : opts->max_retries > 0 ? opts->max_retries : 4;
    r->retry_base_ms = opts->retry_base_ms > 0 ? opts->retry_base_ms : 200;
    r->retry_budget_ms = opts->retry_budget_ms > 0 ? opts->retry_budget_ms : 10000;
    r->insecure_tls = opts->insecure_tls;
    r->http_configured = opts->scheme == PROTO_REGISTRY_SCHEME_HTTP && !opts->http_not_configured;
    int oom = 0;
    r->insecure_key = dup_or_null(opts->insecure_key ? opts->insecure_key : "plain_http", &oom);
    r->ca_file = dup_or_null(opts->ca_file, &oom);
    r->user_agent =
        dup_or_null(opts->user_agent ? opts->user_agent : "chunkfly/" CHUNKFLY_VERSION, &oom);
    r->bearer_token = dup_or_null(opts->bearer_token, &oom);
    r->proxy = dup_or_null(opts->proxy, &oom);
    r->username = dup_or_null(opts->username, &oom);
    r->password = dup_or_null(opts->username ? (opts->password ? opts->password : "") : NULL, &oom);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->flight_done, NULL);
    if (oom) {
        proto_registry_free(r);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    if (opts->extra_ca_files && opts->extra_ca_files[0]) {
        int rc = ca_bundle(r, opts->extra_ca_files, err);
        if (rc < 0) {
            proto_registry_free(r);
            return rc;
        }
    }
    if (!opts->username && !(opts->docker_config && !opts->docker_config[0])) {
        char *u = NULL, *p = NULL;
        int rc = proto_docker_config_load(opts->docker_config, host, &u, &p, err);
        if (rc == 0) {
            r->username = u;
            r->password = p;
            cf_debug("registry %s: using credentials of user %s from docker config", host, u);
        } else if (rc < 0) {
            proto_registry_free(r);
            return rc;
        }
    }
    *out = r;
    return 0;
}

void proto_registry_free(proto_registry *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_idle; i++) curl_easy_cleanup(r->idle[i]);
    struct reg_token *t = r->tokens;
    while (t) {
        struct reg_token *n = t->next;
        free(t->scope);
        free_secret(t->token);
        free(t);
        t = n;
    }
    pthread_cond_destroy(&r->flight_done);
    pthread_mutex_destroy(&r->lock);
    free_secret(r->username);
    free_secret(r->password);
    free_secret(r->bearer_token);
    free(r->proxy);
    free(r->ca_pem);
    free(r->ca_file);
    free(r->insecure_key);
    free(r->user_agent);
    free(r);
}

/* ---- token cache (callers hold r->lock) ---- */

static struct reg_token **token_find(proto_registry *r, const char *scope)
{
    struct reg_token **pp = &r->tokens;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->scope, scope) == 0) return pp;
    return NULL;
}

static void token_unlink(struct reg_token **pp)
{
    struct reg_token *t = *pp;
    *pp = t->next;
    free(t->scope);
    free_secret(t->token);
    free(t);
}

static void token_store(proto_registry *r, const char *scope, const char *tok, long ttl_s)
{
    double now = reg_now();
    struct reg_token **pp = token_find(r, scope);
    if (pp) token_unlink(pp);
    int n = 0;
    /* drop expired, keep at most REG_TOKENS_MAX (the list is most recently used first) */
    for (pp = &r->tokens; *pp;) {
        if ((*pp)->expires_at <= now || n >= REG_TOKENS_MAX - 1) {
            token_unlink(pp);
            continue;
        }
        n++;
        pp = &(*pp)->next;
    }
    struct reg_token *t = calloc(1, sizeof(*t));
    if (!t) return;
    t->scope = strdup(scope);
    t->token = strdup(tok);
    if (!t->scope || !t->token) {
        free(t->scope);
        free_secret(t->token);
        free(t);
        return;
    }
    /* Renew a little early so a token does not expire in flight. */
    double margin = ttl_s > 20 ? 10 : ttl_s / 2.0;
    t->expires_at = now + (double)ttl_s - margin;
    t->next = r->tokens;
    r->tokens = t;
}

static const char *user_label(const proto_registry *r)
{
    return r->username ? r->username : "anonymous";
}

/* First code/message of a registry JSON error body, for messages ("BLOB_UNKNOWN"). */
static void error_code(const struct reg_resp *s, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *root = json_loadb(s->err_body, s->err_len, 0, NULL);
    if (!root) return;
    json_t *e = json_array_get(json_object_get(root, "errors"), 0);
    const char *c = json_string_value(json_object_get(e, "code"));
    if (c) snprintf(out, cap, " %.60s", c);
    json_decref(root);
}

static int token_fetch(proto_registry *r, const char *scope, const char *realm, const char *service,
                       char **tok, int *fresh, cf_err *err);

static struct reg_flight *flight_find(proto_registry *r, const char *scope)
{
    for (struct reg_flight *f = r->flights; f; f = f->next)
        if (strcmp(f->scope, scope) == 0) return f;
    return NULL;
}

/* Bearer token for `scope`: from the cache, from another thread's fetch of the same scope
 * (single flight: N threads starting cold cost one token request), or from the token server.
 * *tok is malloc'd; *fresh says it was just issued to this call. */
static int token_get(proto_registry *r, const char *scope, char **tok, int *fresh, cf_err *err)
{
    char realm[1024], service[256];
    *tok = NULL;
    *fresh = 0;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        struct reg_token **pp = token_find(r, scope);
        if (pp && (*pp)->expires_at > reg_now()) {
            struct reg_token *hit = *pp;
            if (pp != &r->tokens) { /* to the front: the bound evicts the least recently used */
                *pp = hit->next;
                hit->next = r->tokens;
                r->tokens = hit;
            }
            *tok = strdup(hit->token);
            pthread_mutex_unlock(&r->lock);
            return *tok ? 0 : cf_err_set(err, -ENOMEM, "out of memory");
        }
        if (!flight_find(r, scope)) break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += META_TIMEOUT_MS / 1000 + 10; /* the fetch is bounded by its timeouts */
        if (pthread_cond_timedwait(&r->flight_done, &r->lock, &until) != 0) break;
    }
    struct reg_flight me = {r->flights, scope};
    /* `me` lives on this stack frame only while listed: it is unlinked below before return. */
    // cppcheck-suppress autoVariables
    r->flights = &me;
    memcpy(realm, r->realm, sizeof(realm));
    memcpy(service, r->service, sizeof(service));
    pthread_mutex_unlock(&r->lock);

    int rc = token_fetch(r, scope, realm, service, tok, fresh, err);

    pthread_mutex_lock(&r->lock);
    for (struct reg_flight **fp = &r->flights; *fp; fp = &(*fp)->next)
        if (*fp == &me) {
            *fp = me.next;
            break;
        }
    pthread_cond_broadcast(&r->flight_done);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static int token_fetch(proto_registry *r, const char *scope, const char *realm, const char *service,
                       char **tok, int *fresh, cf_err *err)
{

    CURL *h = reg_handle_get(r);
    if (!h) return cf_err_set(err, -ENOMEM, "out of memory");
    char *es = curl_easy_escape(h, service, 0);
    cf_buf url = {0};
    int rc = -ENOMEM;
    int bad =
        !es || cf_buf_printf(&url, "%s%cservice=%s", realm, strchr(realm, '?') ? '&' : '?', es) < 0;
    /* Several space-separated scopes (a cross-repository mount needs push on one repository
     * and pull on another): one scope= parameter each, as the token protocol wants. */
    for (const char *p = scope; !bad && *p;) {
        size_t n = strcspn(p, " ");
        char *esc = n ? curl_easy_escape(h, p, (int)n) : NULL;
        if (n && (!esc || cf_buf_printf(&url, "&scope=%s", esc) < 0)) bad = 1;
        curl_free(esc);
        p += n;
        while (*p == ' ') p++;
    }
    reg_handle_put(r, h);
    curl_free(es);
    if (bad) {
        cf_buf_free(&url);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    char origin[REG_ORIGIN_MAX];
    cf_buf body = {0};
    struct reg_resp s;
    memset(&s, 0, sizeof(s));
    struct reg_req q = {.method = "GET",
                        .url = (const char *)url.data,
                        .total_timeout_ms = META_TIMEOUT_MS,
                        .buf = &body,
                        .buf_max = TOKEN_ANSWER_MAX};
    /* The token server gets the user's credentials (that is the protocol); redirects away
     * from it do not. */
    if (r->username && reg_url_origin(realm, origin, sizeof(origin)) == 0) {
        q.auth_origin = origin;
        q.basic_user = r->username;
        q.basic_pass = r->password;
    }
    rc = reg_http_do(r, &q, &s, err);
    if (rc < 0) {
        cf_err_wrap(err, rc, "getting a token from %s", realm);
        goto out;
    }
    if (s.status == 401 || s.status == 403) {
        rc = cf_err_set(err, -EACCES,
                        "registry %s: authentication failed for user %s at token server %s "
                        "(HTTP %ld)",
                        r->host, user_label(r), realm, s.status);
        goto out;
    }
    if (s.status != 200) {
        rc = cf_err_set(err, -EPROTO, "registry %s: token server %s answered HTTP %ld", r->host,
                        realm, s.status);
        goto out;
    }
    long ttl;
    rc = proto_auth_parse_token((const char *)body.data, body.len, tok, &ttl, err);
    if (rc < 0) {
        cf_err_wrap(err, rc, "registry %s: token server %s", r->host, realm);
        goto out;
    }
    *fresh = 1;
    pthread_mutex_lock(&r->lock);
    token_store(r, scope, *tok, ttl);
    pthread_mutex_unlock(&r->lock);
    cf_debug("registry %s: got a token for %s (user %s, %ld s)", r->host, scope, user_label(r),
             ttl);
out:
    if (body.data) explicit_bzero(body.data, body.len);
    cf_buf_free(&body);
    cf_buf_free(&url);
    return rc;
}

/* Runs q against the registry with authentication: anonymous first (unless a scheme was
 * already learned), then whatever the 401 challenge asks for. On return 0, s->status is the
 * final non-401 status. */
static int reg_request(proto_registry *r, const char *repo, struct reg_req *q, struct reg_resp *s,
                       cf_err *err)
{
    char scope[320];
    snprintf(scope, sizeof(scope), "repository:%s:pull", repo);
    return reg_request_scope(r, repo, scope, q, s, err);
}

int reg_request_scope(proto_registry *r, const char *repo, const char *scope, struct reg_req *q,
                      struct reg_resp *s, cf_err *err)
{
    int sent_basic = 0;
    char *tok = NULL;
    int rc = 0;
    q->auth_origin = r->origin;
    pthread_mutex_lock(&r->lock);
    int use_static = r->bearer_token && !r->bearer_refused;
    pthread_mutex_unlock(&r->lock);
    for (int round = 0; round < 4; round++) {
        pthread_mutex_lock(&r->lock);
        enum proto_auth_scheme mode = r->auth;
        pthread_mutex_unlock(&r->lock);
        int fresh = 0;
        q->basic_user = q->basic_pass = NULL;
        q->bearer = NULL;
        q->bearer_anon = 0;
        free_secret(tok);
        tok = NULL;
        if (use_static) {
            q->bearer = r->bearer_token;
        } else if (mode == PROTO_AUTH_BASIC && r->username) {
            q->basic_user = r->username;
            q->basic_pass = r->password;
            sent_basic = 1;
        } else if (mode == PROTO_AUTH_BEARER) {
            rc = token_get(r, scope, &tok, &fresh, err);
            if (rc < 0) goto out;
            q->bearer = tok;
            q->bearer_anon = !r->username; /* issued to anyone: not a secret of ours */
        }
        rc = reg_http_do(r, q, s, err);
        if (rc < 0 || s->status != 401) goto out;
        if (use_static) { /* refused (expired?): the challenge's own flow from now on */
            use_static = 0;
            pthread_mutex_lock(&r->lock);
            r->bearer_refused = 1;
            pthread_mutex_unlock(&r->lock);
            cf_debug("registry %s: the configured bearer token was refused (HTTP 401)", r->host);
        }

        proto_auth_challenge ch;
        cf_err perr = {0};
        int prc = proto_auth_parse_challenge(s->www_auth, strlen(s->www_auth), &ch, &perr);
        if (prc < 0) {
            rc = cf_err_set(err, -EACCES, "registry %s: HTTP 401 with an unusable challenge: %s",
                            r->host, perr.msg);
            goto out;
        }
        if (ch.scheme == PROTO_AUTH_BASIC) {
            if (!r->username) {
                rc = cf_err_set(err, -EACCES,
                                "registry %s: authentication required (HTTP 401, Basic) but no "
                                "credentials are configured for it (give user:password or a "
                                "docker config.json entry)",
                                r->host);
                goto out;
            }
            if (sent_basic) {
                rc = cf_err_set(err, -EACCES,
                                "registry %s: authentication failed for user %s (HTTP 401)",
                                r->host, r->username);
                goto out;
            }
            pthread_mutex_lock(&r->lock);
            r->auth = PROTO_AUTH_BASIC;
            pthread_mutex_unlock(&r->lock);
            continue;
        }
        /* Bearer */
        if (q->bearer && fresh) {
            rc = cf_err_set(err, -EACCES,
                            "registry %s: access to repository %s denied for user %s: a fresh "
                            "token was refused (HTTP 401%s%s)",
                            r->host, repo, user_label(r), ch.error[0] ? ", " : "", ch.error);
            goto out;
        }
        pthread_mutex_lock(&r->lock);
        r->auth = PROTO_AUTH_BEARER;
        snprintf(r->realm, sizeof(r->realm), "%s", ch.realm);
        snprintf(r->service, sizeof(r->service), "%s", ch.service);
        struct reg_token **pp = token_find(r, scope);
        if (pp) token_unlink(pp); /* refused or expired early */
        pthread_mutex_unlock(&r->lock);
    }
    rc = cf_err_set(err, -EACCES, "registry %s: authentication did not settle (HTTP 401)", r->host);
out:
    free_secret(tok);
    q->bearer = NULL;
    return rc;
}

int reg_status_error(proto_registry *r, const struct reg_resp *s, const char *what,
                     const char *repo, cf_err *err)
{
    char code[64];
    error_code(s, code, sizeof(code));
    switch (s->status) {
    case 404:
        return cf_err_set(err, -ENOENT, "registry %s: %s not found in repository %s (HTTP 404%s)",
                          r->host, what, repo, code);
    case 403:
        return cf_err_set(err, -EACCES,
                          "registry %s: access to %s in repository %s denied for user %s "
                          "(HTTP 403%s)",
                          r->host, what, repo, user_label(r), code);
    case 416:
        return cf_err_set(err, -ERANGE,
                          "registry %s: %s: range not satisfiable (HTTP 416, Content-Range "
                          "\"%s\")",
                          r->host, what, s->content_range);
    default:
        return cf_err_set(err, -EPROTO, "registry %s: %s in repository %s: unexpected HTTP %ld%s",
                          r->host, what, repo, s->status, code);
    }
}

int reg_check_names(proto_registry *r, const char *repo, const char *digest, cf_err *err)
{
    if (proto_registry_check_repo(repo) < 0)
        return cf_err_set(err, -EINVAL, "registry %s: bad repository name \"%.200s\"", r->host,
                          repo ? repo : "");
    if (digest && proto_registry_check_digest(digest) < 0)
        return cf_err_set(err, -EINVAL,
                          "registry %s: bad digest \"%.100s\" (want sha256:<64 lowercase hex>)",
                          r->host, digest);
    return 0;
}

int proto_registry_blob_size(proto_registry *r, const char *repo, const char *digest,
                             uint64_t *size, cf_err *err)
{
    int rc = reg_check_names(r, repo, digest, err);
    if (rc < 0) return rc;
    char url[1024], what[96];
    snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", r->base, repo, digest);
    snprintf(what, sizeof(what), "blob %s", digest);
    struct reg_resp s;
    memset(&s, 0, sizeof(s));
    struct reg_req q = {.method = "HEAD", .url = url, .total_timeout_ms = META_TIMEOUT_MS};
    rc = reg_request(r, repo, &q, &s, err);
    if (rc < 0) return rc;
    if (s.status != 200) return reg_status_error(r, &s, what, repo, err);
    if (s.content_length < 0)
        return cf_err_set(err, -EBADMSG, "registry %s: HEAD %s: no Content-Length", r->host, what);
    *size = (uint64_t)s.content_length;
    return 0;
}

int proto_registry_pull_token(proto_registry *r, const char *repo, const char *digest, char **token,
                              cf_err *err)
{
    *token = NULL;
    uint64_t size;
    /* the HEAD learns the registry's scheme (and proves the blob is in repo for us) */
    int rc = proto_registry_blob_size(r, repo, digest, &size, err);
    if (rc < 0) return rc;
    pthread_mutex_lock(&r->lock);
    enum proto_auth_scheme mode = r->auth;
    pthread_mutex_unlock(&r->lock);
    if (mode != PROTO_AUTH_BEARER)
        return cf_err_set(err, -ENOTSUP,
                          "registry %s: no token authentication (%s): there is no pull token to "
                          "show",
                          r->host, mode == PROTO_AUTH_BASIC ? "Basic" : "anonymous access");
    char scope[320];
    snprintf(scope, sizeof(scope), "repository:%s:pull", repo);
    int fresh;
    return token_get(r, scope, token, &fresh, err);
}

int proto_registry_blob_get(proto_registry *r, const char *repo, const char *digest,
                            uint64_t offset, uint64_t length, unsigned flags,
                            proto_registry_write_fn fn, void *ctx, uint64_t *delivered, cf_err *err)
{
    if (delivered) *delivered = 0;
    int rc = reg_check_names(r, repo, digest, err);
    if (rc < 0) return rc;
    if (!fn) return cf_err_set(err, -EINVAL, "registry %s: no write callback", r->host);
    if ((flags & ~PROTO_REGISTRY_VERIFY) || ((flags & PROTO_REGISTRY_VERIFY) && (offset || length)))
        return cf_err_set(err, -EINVAL, "registry %s: verify needs a whole-blob read", r->host);
    if (length && offset > UINT64_MAX - length)
        return cf_err_set(err, -EINVAL, "registry %s: range overflows", r->host);
    char url[1024], what[160];
    snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", r->base, repo, digest);
    if (offset || length)
        snprintf(what, sizeof(what), "blob %s bytes %" PRIu64 "-%s", digest, offset,
                 length ? "" : "end");
    else
        snprintf(what, sizeof(what), "blob %s", digest);
    if (length) {
        size_t l = strlen(what);
        snprintf(what + l, sizeof(what) - l, "%" PRIu64, offset + length - 1);
    }
    cf_digest_ctx hash;
    if ((flags & PROTO_REGISTRY_VERIFY) && cf_digest_init(&hash, CF_DIGEST_SHA256) < 0)
        return cf_err_set(err, -ENOMEM, "out of memory");
    struct reg_resp s;
    memset(&s, 0, sizeof(s));
    struct reg_req q = {.method = "GET",
                        .url = url,
                        .total_timeout_ms = r->total_timeout_ms,
                        .start = offset,
                        .len = length,
                        .fn = fn,
                        .ctx = ctx,
                        .hash = (flags & PROTO_REGISTRY_VERIFY) ? &hash : NULL};
    rc = reg_request(r, repo, &q, &s, err);
    if (delivered) *delivered = s.delivered;
    if (rc == 0 && s.status != 200 && s.status != 206)
        rc = reg_status_error(r, &s, what, repo, err);
    /* A 200 (range ignored) for a start past the end delivers nothing: same as a 416. */
    if (rc == 0 && s.delivered == 0 && (offset || length))
        rc = cf_err_set(err, -ERANGE, "registry %s: %s: range not satisfiable (blob is shorter)",
                        r->host, what);
    if (flags & PROTO_REGISTRY_VERIFY) {
        uint8_t md[CF_DIGEST_LEN];
        char hex[2 * CF_DIGEST_LEN + 1];
        if (rc < 0) {
            cf_digest_abort(&hash);
            return rc;
        }
        cf_digest_final(&hash, md);
        cf_hex_encode(md, sizeof(md), hex);
        if (strcmp(hex, digest + 7) != 0)
            return cf_err_set(err, -EBADMSG,
                              "registry %s: blob %s in repository %s: content digest mismatch "
                              "(got sha256:%s over %" PRIu64 " bytes)",
                              r->host, digest, repo, hex, s.delivered);
    }
    return rc;
}

struct fd_sink {
    int fd;
    uint64_t off;
};

static int fd_write(void *ctx, const void *data, size_t len)
{
    struct fd_sink *k = ctx;
    int rc = cf_pwrite_full(k->fd, data, len, k->off);
    if (rc < 0) return rc;
    k->off += len;
    return 0;
}

int proto_registry_blob_get_fd(proto_registry *r, const char *repo, const char *digest,
                               uint64_t offset, uint64_t length, unsigned flags, int fd,
                               uint64_t fd_offset, uint64_t *delivered, cf_err *err)
{
    struct fd_sink k = {fd, fd_offset};
    int rc = proto_registry_blob_get(r, repo, digest, offset, length, flags, fd_write, &k,
                                     delivered, err);
    if (rc < 0 && err && err->code == rc && strstr(err->msg, "write callback")) {
        char eb[128];
        cf_err_set(err, rc, "registry %s: writing blob %s to fd %d at offset %" PRIu64 ": %s",
                   r->host, digest, fd, k.off, strerror_r(-rc, eb, sizeof(eb)));
    }
    return rc;
}

struct mem_sink {
    uint8_t *buf;
    size_t cap, used;
};

static int mem_write(void *ctx, const void *data, size_t len)
{
    struct mem_sink *k = ctx;
    if (len > k->cap - k->used) return -EOVERFLOW; /* cannot happen: the range bounds it */
    memcpy(k->buf + k->used, data, len);
    k->used += len;
    return 0;
}

int proto_registry_blob_read(proto_registry *r, const char *repo, const char *digest,
                             uint64_t offset, size_t length, void *buf, size_t *got, cf_err *err)
{
    if (got) *got = 0;
    if (!buf || length == 0)
        return cf_err_set(err, -EINVAL, "registry %s: blob_read needs a buffer and a length",
                          r->host);
    struct mem_sink k = {buf, length, 0};
    int rc = proto_registry_blob_get(r, repo, digest, offset, length, 0, mem_write, &k, NULL, err);
    if (got) *got = k.used;
    return rc;
}

#define MANIFEST_ACCEPT                                                                            \
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "        \
    "application/vnd.docker.distribution.manifest.v2+json, "                                       \
    "application/vnd.docker.distribution.manifest.list.v2+json"

int proto_registry_manifest_get(proto_registry *r, const char *repo, const char *reference,
                                proto_manifest *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    int rc = reg_check_names(r, repo, NULL, err);
    if (rc < 0) return rc;
    int by_digest = reference && strncmp(reference, "sha256:", 7) == 0;
    if (!reference || (by_digest ? proto_registry_check_digest(reference)
                                 : proto_registry_check_tag(reference)) < 0)
        return cf_err_set(err, -EINVAL, "registry %s: bad manifest reference \"%.200s\"", r->host,
                          reference ? reference : "");
    char url[1024], what[200];
    snprintf(url, sizeof(url), "%s/v2/%s/manifests/%s", r->base, repo, reference);
    snprintf(what, sizeof(what), "manifest %s", reference);
    cf_buf body = {0};
    struct reg_resp s;
    memset(&s, 0, sizeof(s));
    struct reg_req q = {.method = "GET",
                        .url = url,
                        .accept = MANIFEST_ACCEPT,
                        .total_timeout_ms = META_TIMEOUT_MS,
                        .buf = &body,
                        .buf_max = PROTO_MANIFEST_MAX};
    rc = reg_request(r, repo, &q, &s, err);
    if (rc == 0 && s.status != 200) rc = reg_status_error(r, &s, what, repo, err);
    if (rc == 0 && cf_buf_append(&body, "", 1) < 0) rc = cf_err_set(err, -ENOMEM, "out of memory");
    if (rc < 0) {
        cf_buf_free(&body);
        return rc;
    }
    out->len = body.len - 1;
    out->body = body.data;
    uint8_t md[CF_DIGEST_LEN];
    char hex[2 * CF_DIGEST_LEN + 1];
    if (cf_sha256(out->body, out->len, md) < 0) {
        proto_manifest_free(out);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    cf_hex_encode(md, sizeof(md), hex);
    snprintf(out->digest, sizeof(out->digest), "sha256:%s", hex);
    if (by_digest && strcmp(out->digest, reference) != 0) {
        rc = cf_err_set(err, -EBADMSG,
                        "registry %s: manifest %s in repository %s: content digest mismatch "
                        "(got %s)",
                        r->host, reference, repo, out->digest);
        proto_manifest_free(out);
        return rc;
    }
    if (s.docker_digest[0] && strcmp(s.docker_digest, out->digest) != 0)
        cf_warn("registry %s: manifest %s: Docker-Content-Digest %s differs from the body's %s",
                r->host, reference, s.docker_digest, out->digest);
    size_t tl = strcspn(s.content_type, "; ");
    if (tl > 0 && tl < sizeof(out->media_type)) {
        memcpy(out->media_type, s.content_type, tl);
        out->media_type[tl] = '\0';
    }
    if (!out->media_type[0] || strcmp(out->media_type, "application/json") == 0) {
        json_t *root = json_loadb((const char *)out->body, out->len, 0, NULL);
        const char *mt = json_string_value(json_object_get(root, "mediaType"));
        if (mt && strlen(mt) < sizeof(out->media_type)) strcpy(out->media_type, mt);
        json_decref(root);
    }
    return 0;
}

void proto_manifest_free(proto_manifest *m)
{
    if (!m) return;
    free(m->body);
    m->body = NULL;
    m->len = 0;
}

int proto_registry_raw_get(proto_registry *r, const proto_registry_raw_req *rq,
                           proto_registry_raw *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    out->content_length = -1;
    if (!r || !rq || !rq->method || !rq->path ||
        (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0) ||
        strncmp(rq->path, "/v2/", 4) != 0 || strpbrk(rq->path, "\r\n #") ||
        (rq->accept && strpbrk(rq->accept, "\r\n")) ||
        (rq->bearer && strpbrk(rq->bearer, "\r\n")) || (rq->bearer && rq->username))
        return cf_err_set(err, -EINVAL, "registry %s: bad pass-through request", r ? r->host : "?");
    char url[REG_ORIGIN_MAX + 2048];
    if ((size_t)snprintf(url, sizeof(url), "%s%s", r->base, rq->path) >= sizeof(url))
        return cf_err_set(err, -EINVAL, "registry %s: path too long", r->host);
    cf_buf body = {0};
    struct reg_resp s;
    memset(&s, 0, sizeof(s));
    struct reg_req q = {.method = rq->method,
                        .url = url,
                        .auth_origin = (rq->bearer || rq->username) ? r->origin : NULL,
                        .basic_user = rq->username,
                        .basic_pass = rq->password,
                        .bearer = rq->bearer,
                        .accept = rq->accept,
                        .total_timeout_ms = META_TIMEOUT_MS,
                        .buf = &body,
                        .buf_max = rq->max_body ? rq->max_body : PROTO_MANIFEST_MAX};
    int rc = reg_http_do(r, &q, &s, err);
    if (rc < 0) {
        cf_buf_free(&body);
        return rc;
    }
    out->status = s.status;
    snprintf(out->content_type, sizeof(out->content_type), "%s", s.content_type);
    snprintf(out->docker_digest, sizeof(out->docker_digest), "%s", s.docker_digest);
    snprintf(out->www_authenticate, sizeof(out->www_authenticate), "%s", s.www_auth);
    out->content_length = s.content_length;
    if (s.status < 200 || s.status >= 300) {
        cf_buf_reset(&body);
        if (s.err_len && cf_buf_append(&body, s.err_body, s.err_len) < 0) {
            cf_buf_free(&body);
            return cf_err_set(err, -ENOMEM, "out of memory");
        }
    }
    out->body = body.data;
    out->len = body.len;
    return 0;
}

void proto_registry_raw_free(proto_registry_raw *raw)
{
    if (!raw) return;
    free(raw->body);
    raw->body = NULL;
    raw->len = 0;
}
