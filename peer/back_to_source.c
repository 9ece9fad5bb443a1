/* Back to source: origin references, the shared registry clients, and piece fetches from the
 * origin registry with HTTP Range (proto_registry, always in the libuv thread pool; the task's
 * piece jobs call bts_get_range and then check and store the bytes like a parent's). Registry
 * clients are created in the pool too (reading a docker
 * config.json is file I/O) and shared by every task of the same registry, scheme and
 * credentials (the client is thread-safe and keeps its connections alive). The cache is
 * bounded (ORIGIN_CLIENTS_MAX unused clients, least recently used evicted), keyed by a digest
 * (no credentials in keys), and an evicted client's credentials and tokens are wiped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cf/digest.h"
#include "cf/log.h"
#include "daemon_internal.h"

/* ---- registry clients ---- */

static uv_mutex_t origins_lock;
static uv_once_t origins_once = UV_ONCE_INIT;
static void origins_init(void)
{
    uv_mutex_init(&origins_lock);
}

int origin_parse(const char *origin, proto_image_ref *ref, int *scheme, cf_err *err)
{
    *scheme = 0;
    if (strncmp(origin, "http://", 7) == 0) {
        *scheme = PROTO_REGISTRY_SCHEME_HTTP;
        origin += 7;
    } else if (strncmp(origin, "https://", 8) == 0) {
        *scheme = PROTO_REGISTRY_SCHEME_HTTPS;
        origin += 8;
    }
    return proto_image_ref_parse(origin, ref, err);
}

/* Callers hold origins_lock. */
static struct origin_client *origin_find(peer_daemon *d, const uint8_t key[32])
{
    for (struct origin_client *oc = d->origins; oc; oc = oc->next)
        if (memcmp(oc->key, key, 32) == 0) return oc;
    return NULL;
}

static void origin_client_free(struct origin_client *oc)
{
    proto_registry_free(oc->reg); /* wipes its credentials and cached tokens */
    explicit_bzero(oc->key, sizeof(oc->key));
    free(oc);
}

/* Unused clients beyond ORIGIN_CLIENTS_MAX, least recently used first, unlinked onto *gone
 * (freed by the caller, outside the lock: freeing closes connections). Clients in use stay,
 * even past the bound: their holders release them soon. Callers hold origins_lock. */
static void origin_evict(peer_daemon *d, struct origin_client **gone)
{
    while (d->n_origins > ORIGIN_CLIENTS_MAX) {
        struct origin_client **victim = NULL;
        for (struct origin_client **pp = &d->origins; *pp; pp = &(*pp)->next)
            if ((*pp)->refs == 0 && (!victim || (*pp)->last_used < (*victim)->last_used))
                victim = pp;
        if (!victim) return;
        struct origin_client *oc = *victim;
        *victim = oc->next;
        d->n_origins--;
        oc->next = *gone;
        *gone = oc;
    }
}

static struct origin_client *origin_take(peer_daemon *d, struct origin_client *oc)
{
    oc->refs++;
    oc->last_used = ++d->origins_clock;
    return oc;
}

/* Whether `prefix``host` is an entry of list (comma or space separated; case-insensitive). */
static int listed(const char *list, const char *prefix, const char *host)
{
    size_t pl = strlen(prefix), hl = strlen(host), l;
    for (const char *p, *cur = list; (p = cf_config_list_next(&cur, &l));)
        if (l == pl + hl && strncasecmp(p, prefix, pl) == 0 && strncasecmp(p + pl, host, hl) == 0)
            return 1;
    return 0;
}

/* A registry the operator configured as plain http: origin_plain_http, the plain_http list, or
 * an "http://" entry of mirror_upstreams. An "http://" origin prefix from a local caller is not
 * configuration: over it credentials go to loopback registries only (proto_registry_opts). */
static int http_configured(const peer_daemon *d, const char *registry)
{
    return d->o.origin_plain_http || listed(d->o.plain_http, "", registry) ||
           listed(d->o.mirror_upstreams, "http://", registry);
}

/* anon: no credentials at all (not even the docker config's): what anyone may read */
static int client_get(peer_daemon *d, const char *registry, int scheme, const char *creds, int anon,
                      struct origin_client **out, cf_err *err)
{
    uv_once(&origins_once, origins_init);
    /* the key is a digest of the credentials, never the credentials themselves */
    size_t kl = strlen(registry) + 16 + (creds ? strlen(creds) : 0);
    char *ks = malloc(kl);
    if (!ks) return cf_err_set(err, -ENOMEM, "out of memory");
    int n = snprintf(ks, kl, "%s%d\n%s\n%s", anon ? "A" : "", scheme, registry,
                     !anon && creds ? creds : "");
    uint8_t key[32];
    int hrc = cf_sha256(ks, (size_t)n, key);
    explicit_bzero(ks, kl);
    free(ks);
    if (hrc) return cf_err_set(err, -ENOMEM, "out of memory");
    uv_mutex_lock(&origins_lock);
    struct origin_client *oc = origin_find(d, key);
    if (oc) {
        *out = origin_take(d, oc);
        uv_mutex_unlock(&origins_lock);
        return 0;
    }
    uv_mutex_unlock(&origins_lock);
    proto_registry_opts ro = {0};
    int configured = http_configured(d, registry);
    ro.scheme = scheme       ? (enum proto_registry_scheme)scheme
                : configured ? PROTO_REGISTRY_SCHEME_HTTP
                             : PROTO_REGISTRY_SCHEME_AUTO;
    ro.http_not_configured = !configured;
    ro.insecure_key = "plain_http (chunkfly-peer)";
    ro.docker_config = anon ? "" : d->o.docker_config;
    /* a hung or unreachable origin must turn into an error for the local caller in < 10 s */
    ro.stall_timeout_ms = d->o.origin_timeout_ms;
    ro.retry_budget_ms = d->o.origin_timeout_ms;
    ro.connect_timeout_ms = d->o.origin_timeout_ms < 5000 ? d->o.origin_timeout_ms : 5000;
    char user[512] = "", *pass = NULL;
    if (!anon && creds && creds[0]) {
        /* credentials: "user:password" (as in docker's auth field, decoded) */
        snprintf(user, sizeof(user), "%s", creds);
        pass = strchr(user, ':');
        if (pass) *pass++ = 0;
        ro.username = user;
        ro.password = pass ? pass : "";
    }
    proto_registry *reg = NULL;
    int rc = proto_registry_new(registry, &ro, &reg, err);
    explicit_bzero(user, sizeof(user));
    if (rc) return rc;
    oc = calloc(1, sizeof(*oc));
    if (!oc) {
        proto_registry_free(reg);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    memcpy(oc->key, key, sizeof(key));
    explicit_bzero(key, sizeof(key));
    oc->reg = reg;
    struct origin_client *gone = NULL;
    uv_mutex_lock(&origins_lock);
    struct origin_client *o2 = origin_find(d, oc->key);
    if (o2) { /* another thread won */
        *out = origin_take(d, o2);
        uv_mutex_unlock(&origins_lock);
        origin_client_free(oc);
        return 0;
    }
    oc->next = d->origins;
    d->origins = oc;
    d->n_origins++;
    *out = origin_take(d, oc);
    origin_evict(d, &gone);
    uv_mutex_unlock(&origins_lock);
    while (gone) {
        struct origin_client *next = gone->next;
        origin_client_free(gone);
        gone = next;
    }
    return 0;
}

int origin_client_get(peer_daemon *d, const char *registry, int scheme, const char *creds,
                      struct origin_client **out, cf_err *err)
{
    return client_get(d, registry, scheme, creds, 0, out, err);
}

int origin_client_anon(peer_daemon *d, const char *registry, int scheme, struct origin_client **out,
                       cf_err *err)
{
    return client_get(d, registry, scheme, NULL, 1, out, err);
}

void origin_client_put(peer_daemon *d, struct origin_client *oc)
{
    if (!oc) return;
    uv_once(&origins_once, origins_init);
    struct origin_client *gone = NULL;
    uv_mutex_lock(&origins_lock);
    if (oc->refs) oc->refs--;
    origin_evict(d, &gone); /* the bound may have been exceeded while all were in use */
    uv_mutex_unlock(&origins_lock);
    while (gone) {
        struct origin_client *next = gone->next;
        origin_client_free(gone);
        gone = next;
    }
}

void origin_clients_free(peer_daemon *d)
{
    while (d->origins) {
        struct origin_client *oc = d->origins;
        d->origins = oc->next;
        origin_client_free(oc);
    }
    d->n_origins = 0;
}

size_t origin_clients_count(peer_daemon *d)
{
    uv_once(&origins_once, origins_init);
    uv_mutex_lock(&origins_lock);
    size_t n = d->n_origins;
    uv_mutex_unlock(&origins_lock);
    return n;
}

/* ---- piece fetches ---- */

struct range_sink {
    uint8_t *buf;
    size_t len, got;
};

static int range_write(void *ctx, const void *data, size_t len)
{
    struct range_sink *k = ctx;
    if (len > k->len - k->got) return -EMSGSIZE;
    memcpy(k->buf + k->got, data, len);
    k->got += len;
    return 0;
}

int bts_get_range(proto_registry *reg, const char *repo, const char *task_id, uint64_t off,
                  uint32_t len, uint8_t *buf, cf_err *err)
{
    struct range_sink k = {buf, len, 0};
    uint64_t delivered = 0;
    int rc =
        proto_registry_blob_get(reg, repo, task_id, off, len, 0, range_write, &k, &delivered, err);
    if (rc) return rc;
    if (delivered != len)
        return cf_err_set(err, -EBADMSG, "origin sent %llu bytes for %u at offset %llu",
                          (unsigned long long)delivered, len, (unsigned long long)off);
    return 0;
}

static int cmp_write(void *ctx, const void *data, size_t len)
{
    cf_digest_ctx *dc = ctx;
    cf_digest_update(dc, data, len);
    return 0;
}

int bts_piece_matches(proto_registry *reg, const char *repo, const char *task_id, uint64_t off,
                      uint32_t len, const uint8_t expect[32])
{
    cf_digest_ctx dc;
    if (cf_digest_init(&dc, CF_DIGEST_SHA256)) return -ENOMEM;
    uint64_t delivered = 0;
    int rc =
        proto_registry_blob_get(reg, repo, task_id, off, len, 0, cmp_write, &dc, &delivered, NULL);
    uint8_t got[32];
    cf_digest_final(&dc, got);
    if (rc) return rc;
    if (delivered != len) return -EIO;
    return memcmp(got, expect, 32) ? -EBADMSG : 0;
}
