/* The proxy in front of the registry backend, with nydusd's semantics (mount/backend.h):
 *   proxy.url = unix:PATH        the local chunkfly-peer's local API (client_local_read): the
 *                                mesh serves the blob, the registry is the peer's origin;
 *   proxy.url = http://HOST:PORT an HTTP forward proxy (e.g. the peer's registry mirror): the
 *                                registry client sends absolute-form requests to it.
 * Health: a read that fails marks the proxy unhealthy (with fallback the read goes to the
 * registry at once); a checker thread probes it every check_interval seconds (ping_url, else
 * the peer's handshake or the proxy's /v2/) and marks it healthy again when it answers. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "backend_internal.h"
#include "cf/log.h"
#include "client/local_api_client.h"

#define POOL_MAX     8    /* idle connections to the peer kept for reuse */
#define CHECK_MAX_MS 3000 /* a health probe never takes longer than this */

enum proxy_kind { PROXY_UNIX, PROXY_HTTP };

struct be_proxy {
    enum proxy_kind kind;
    char *url;      /* as configured, for messages */
    char *sock;     /* PROXY_UNIX: the peer's socket path */
    char *ping_url; /* NULL = the kind's own probe */
    bool fallback;
    uint32_t interval_s;
    int timeout_ms, check_timeout_ms;
    int healthy; /* __atomic: 1 = reads go to the proxy */

    pthread_mutex_t lock; /* guards the pool, stop */
    client_local *idle[POOL_MAX];
    int n_idle;
    uint64_t generation; /* bumped on failure: older connections are not pooled again */
    bool stop;
    pthread_cond_t wake;
    pthread_t checker;
    bool checker_started;
};

static void pool_flush(struct be_proxy *p)
{
    client_local *old[POOL_MAX];
    pthread_mutex_lock(&p->lock);
    int n = p->n_idle;
    memcpy(old, p->idle, sizeof(old));
    p->n_idle = 0;
    p->generation++;
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < n; i++) client_local_close(old[i]);
}

static int pool_get(struct be_proxy *p, client_local **out, uint64_t *gen, cf_err *err)
{
    pthread_mutex_lock(&p->lock);
    *gen = p->generation;
    *out = p->n_idle ? p->idle[--p->n_idle] : NULL;
    pthread_mutex_unlock(&p->lock);
    if (*out) return 0;
    /* cut-through: every chunk read through the daemon is checked against its digest here */
    client_local_opts o = {
        .idle_timeout_ms = p->timeout_ms, .node_id = "chunkfly-mount", .unverified_ok = true};
    return client_local_connect(p->sock, &o, out, err);
}

static void pool_put(struct be_proxy *p, client_local *c, uint64_t gen, bool reusable)
{
    pthread_mutex_lock(&p->lock);
    if (reusable && gen == p->generation && p->n_idle < POOL_MAX) {
        p->idle[p->n_idle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    client_local_close(c);
}

/* ---- health ----------------------------------------------------------------------------- */

static size_t discard(char *data, size_t size, size_t n, void *ctx)
{
    (void)data;
    (void)ctx;
    return size * n;
}

/* GET url straight (never through a proxy). With need_2xx, only a 2xx answer is healthy;
 * otherwise any HTTP answer proves the server alive. */
static int http_probe(const char *url, bool need_2xx, int timeout_ms, cf_err *err)
{
    CURL *h = curl_easy_init();
    if (!h) return cf_err_set(err, -ENOMEM, "out of memory");
    char eb[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, eb);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (cc != CURLE_OK)
        return cf_err_set(err, -EHOSTDOWN, "health check %s: %s", url,
                          eb[0] ? eb : curl_easy_strerror(cc));
    if (need_2xx && (status < 200 || status > 299))
        return cf_err_set(err, -EHOSTDOWN, "health check %s: HTTP %ld", url, status);
    return 0;
}

static int probe(struct be_proxy *p, cf_err *err)
{
    if (p->ping_url) return http_probe(p->ping_url, true, p->check_timeout_ms, err);
    if (p->kind == PROXY_HTTP) {
        char url[1100];
        size_t n = strlen(p->url);
        snprintf(url, sizeof(url), "%s%sv2/", p->url, n && p->url[n - 1] == '/' ? "" : "/");
        return http_probe(url, false, p->check_timeout_ms, err);
    }
    /* The peer's own check: it accepts a connection and completes the handshake. */
    client_local_opts o = {.idle_timeout_ms = p->check_timeout_ms, .node_id = "chunkfly-mount"};
    client_local *c = NULL;
    int rc = client_local_connect(p->sock, &o, &c, err);
    client_local_close(c);
    return rc;
}

static void *checker_main(void *arg)
{
    struct be_proxy *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += p->interval_s;
        while (!p->stop && pthread_cond_timedwait(&p->wake, &p->lock, &until) == 0) {
        }
        if (p->stop) break;
        pthread_mutex_unlock(&p->lock);
        cf_err e = {0};
        int ok = probe(p, &e) == 0;
        int was = __atomic_exchange_n(&p->healthy, ok, __ATOMIC_ACQ_REL);
        if (ok && !was)
            cf_info("proxy %s is healthy again: reads go through it", p->url);
        else if (!ok && was) {
            cf_warn("proxy %s failed its health check (%s)%s", p->url, e.msg,
                    p->fallback ? ": reads go to the registry" : "");
            pool_flush(p);
        }
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- the backend's interface ------------------------------------------------------------ */

void be_proxy_free(struct be_proxy *p)
{
    if (!p) return;
    if (p->checker_started) {
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->checker, NULL);
    }
    pool_flush(p);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p->url);
    free(p->sock);
    free(p->ping_url);
    free(p);
}

int be_proxy_new(const struct mount_backend_config *cfg, struct be_proxy **out, cf_err *err)
{
    *out = NULL;
    const struct mount_proxy_config *pc = &cfg->proxy;
    struct be_proxy *p = calloc(1, sizeof(*p));
    if (!p) return cf_err_set(err, -ENOMEM, "out of memory");
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &ca);
    pthread_condattr_destroy(&ca);
    p->kind = strncmp(pc->url, "unix:", 5) == 0 ? PROXY_UNIX : PROXY_HTTP;
    p->fallback = pc->fallback;
    p->interval_s = pc->check_interval ? pc->check_interval : 5;
    p->timeout_ms = (int)(cfg->timeout_s ? cfg->timeout_s : 5) * 1000;
    p->check_timeout_ms = p->timeout_ms < CHECK_MAX_MS ? p->timeout_ms : CHECK_MAX_MS;
    p->healthy = 1; /* as nydusd: trusted until it fails */
    int oom =
        !(p->url = strdup(pc->url)) || (pc->ping_url && !(p->ping_url = strdup(pc->ping_url)));
    if (!oom && p->kind == PROXY_UNIX) {
        const char *path = pc->url + 5;
        if (strncmp(path, "//", 2) == 0) path += 2; /* unix:///run/x.sock */
        oom = !(p->sock = strdup(path));
    }
    if (oom) {
        be_proxy_free(p);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    int rc = pthread_create(&p->checker, NULL, checker_main, p);
    if (rc) {
        be_proxy_free(p);
        return cf_err_set(err, -rc, "proxy %s: cannot start the health checker", pc->url);
    }
    p->checker_started = true;
    *out = p;
    return 0;
}

bool be_proxy_usable(const struct be_proxy *p)
{
    return !p->fallback || __atomic_load_n(&p->healthy, __ATOMIC_ACQUIRE);
}

bool be_proxy_fallback(const struct be_proxy *p)
{
    return p->fallback;
}

int be_proxy_healthy(const struct be_proxy *p)
{
    return __atomic_load_n(&p->healthy, __ATOMIC_ACQUIRE);
}

void be_proxy_mark_failed(mount_backend *b, const cf_err *why)
{
    struct be_proxy *p = b->proxy;
    if (__atomic_exchange_n(&p->healthy, 0, __ATOMIC_ACQ_REL)) {
        const char *reason = why && why->msg[0] ? why->msg : "error";
        size_t ul = strlen(p->url);
        /* the reason may already name the proxy ("proxy unix:/x: ...") */
        if (strncmp(reason, "proxy ", 6) == 0 && strncmp(reason + 6, p->url, ul) == 0 &&
            strncmp(reason + 6 + ul, ": ", 2) == 0)
            reason += 8 + ul;
        cf_warn("proxy %s failed (%s): reads go to the registry until it is healthy again "
                "(checked every %u s)",
                p->url, reason, p->interval_s);
        pool_flush(p);
    }
}

struct peer_sink {
    uint8_t *buf;
    uint64_t off;
    size_t len, got;
};

static int peer_data(void *ctx, uint64_t offset, const void *data, size_t len)
{
    struct peer_sink *k = ctx;
    /* The client checks that frames continue each other within the range; check anyway
     * before writing into the caller's buffer. */
    if (offset < k->off || offset - k->off > k->len || len > k->len - (offset - k->off))
        return -EBADMSG;
    memcpy(k->buf + (offset - k->off), data, len);
    if (offset - k->off + len > k->got) k->got = (size_t)(offset - k->off + len);
    return 0;
}

/* "[http://]host/repo@sha256:<hex>", what the peer fetches from when the mesh cannot help. */
static void peer_origin(mount_backend *b, const char *digest, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s/%s@%s", be_registry_plain_http(b->registry) ? "http://" : "",
             be_registry_host(b->registry), be_registry_repo(b->registry), digest);
}

int be_proxy_read(mount_backend *b, const char *digest, void *buf, size_t len, uint64_t off,
                  size_t *got, cf_err *err)
{
    struct be_proxy *p = b->proxy;
    *got = 0;
    if (p->kind == PROXY_HTTP)
        return be_registry_read(b->registry, true, digest, buf, len, off, got, err);
    client_local *c = NULL;
    uint64_t gen;
    int rc = pool_get(p, &c, &gen, err);
    if (rc < 0) return cf_err_wrap(err, rc, "proxy %s", p->url);
    char origin[700];
    peer_origin(b, digest, origin, sizeof(origin));
    char *creds = be_registry_creds(b->registry); /* to the peer only, never logged */
    struct peer_sink k = {buf, off, len, 0};
    uint64_t delivered = 0;
    rc = client_local_read(c, digest, origin, creds, off, len, peer_data, &k, &delivered, err);
    if (creds) {
        explicit_bzero(creds, strlen(creds));
        free(creds);
    }
    if (rc == 0 && k.got != len)
        rc = cf_err_set(err, -EIO, "peer delivered %zu of %zu bytes", k.got, len);
    /* After a refused request (ERROR answer) the connection is still in step; after transport
     * or framing errors it is not. Only a clean connection goes back to the pool. */
    bool reusable = rc == 0 || client_local_last_peer_code(c) != 0;
    pool_put(p, c, gen, reusable);
    if (rc < 0) return cf_err_wrap(err, rc, "proxy %s", p->url);
    *got = k.got;
    return 0;
}

int be_proxy_size(mount_backend *b, const char *digest, uint64_t *size, cf_err *err)
{
    struct be_proxy *p = b->proxy;
    if (p->kind == PROXY_HTTP) return be_registry_size(b->registry, true, digest, size, err);
    client_local *c = NULL;
    uint64_t gen;
    cf_err ce = {0};
    int rc = pool_get(p, &c, &gen, &ce);
    /* Not -ENOENT (a missing socket file): that would read as "the peer holds nothing". */
    if (rc < 0) return cf_err_set(err, -EHOSTDOWN, "proxy %s: %s", p->url, ce.msg);
    client_entry e;
    /* Only what the peer already holds: learning a length from it otherwise means starting a
     * whole-blob download (client_local_start); the registry's HEAD is cheaper. */
    rc = client_local_stat(c, digest, &e, err);
    pool_put(p, c, gen, rc == 0 || client_local_last_peer_code(c) != 0);
    if (rc < 0) return rc;
    if (e.content_length == 0)
        return cf_err_set(err, -ENOENT, "peer: length of %s unknown", digest);
    *size = e.content_length;
    return 0;
}
