/* Blob access checks: one verdict table per daemon (access_check.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/random.h>

#include "access_check.h"
#include "daemon_internal.h"

#define PA_SLOTS      1024
#define PA_OK_MS      60000 /* an accepted credential is asked again after a minute */
#define PA_REFUSED_MS 10000 /* 401/403 (and an anonymous 404); a credential's 404 is not kept */
#define PA_MAX_JOBS   8     /* checks in the thread pool at most (UV_THREADPOOL_SIZE is 16) */

enum { E_FREE, E_PENDING, E_OK, E_REFUSED };

struct pa_entry {
    uint8_t key[CF_DIGEST_LEN];
    int state;
    int status;     /* E_REFUSED: the registry's 401/403/404 */
    char *www_auth; /* E_REFUSED: its WWW-Authenticate, NULL when none */
    uint64_t expires_ms;
};

struct peer_access {
    uint8_t salt[32];
    int stopped; /* peer_access_stop ran: the last job frees the table */
    int jobs;    /* checks in the thread pool */
    peer_access_wait *waiters;
    struct pa_entry e[PA_SLOTS];
};

struct pa_job {
    peer_daemon *d;
    struct peer_access *a;
    uint8_t key[CF_DIGEST_LEN];
    enum peer_access_kind kind;
    char registry[256], repo[256];
    int scheme;
    char digest[PROTO_TASK_ID_LEN + 1];
    char *secret; /* BASIC "user:password", BEARER token */
    int rc;
    cf_err err;
    long status;
    char *www_auth;
};

static void entry_clear(struct pa_entry *e)
{
    free(e->www_auth);
    memset(e, 0, sizeof(*e));
}

static void make_key(const struct peer_access *a, const peer_access_cred *c, const char *origin,
                     const char *digest, uint8_t out[CF_DIGEST_LEN])
{
    cf_digest_ctx x;
    if (cf_digest_init(&x, CF_DIGEST_SHA256)) { /* no memory: a key no request shares */
        memset(out, 0xff, CF_DIGEST_LEN);
        return;
    }
    static const char kinds[] = "ANBT";
    cf_digest_update(&x, a->salt, sizeof(a->salt));
    cf_digest_update(&x, &kinds[c->kind], 1);
    if (c->kind == PEER_ACCESS_BASIC || c->kind == PEER_ACCESS_BEARER)
        cf_digest_update(&x, c->secret, strlen(c->secret) + 1); /* secrets hold no NUL */
    cf_digest_update(&x, origin, strlen(origin) + 1);
    cf_digest_update(&x, digest, strlen(digest));
    cf_digest_final(&x, out);
}

/* The live entry of key (expired ones are dropped), or NULL. */
static struct pa_entry *find(struct peer_access *a, const uint8_t *key, uint64_t now)
{
    for (size_t i = 0; i < PA_SLOTS; i++) {
        struct pa_entry *e = &a->e[i];
        if (e->state == E_FREE || memcmp(e->key, key, CF_DIGEST_LEN) != 0) continue;
        if (e->state != E_PENDING && now >= e->expires_ms) {
            entry_clear(e);
            return NULL;
        }
        return e;
    }
    return NULL;
}

/* A slot for a new pending key: a free or expired one, else the verdict that expires first;
 * NULL when every slot waits for a check. */
static struct pa_entry *slot(struct peer_access *a, uint64_t now)
{
    struct pa_entry *victim = NULL;
    for (size_t i = 0; i < PA_SLOTS; i++) {
        struct pa_entry *e = &a->e[i];
        if (e->state == E_FREE) return e;
        if (e->state == E_PENDING) continue;
        if (now >= e->expires_ms) {
            entry_clear(e);
            return e;
        }
        if (!victim || e->expires_ms < victim->expires_ms) victim = e;
    }
    if (victim) entry_clear(victim);
    return victim;
}

static void job_free(struct pa_job *j)
{
    if (j->secret) explicit_bzero(j->secret, strlen(j->secret));
    free(j->secret);
    free(j->www_auth);
    free(j);
}

/* [thread pool] */
static void job_work(void *p)
{
    struct pa_job *j = p;
    struct origin_client *oc = NULL;
    int basic = j->kind == PEER_ACCESS_BASIC;
    /* Anonymous, the node's identity and Basic credentials go through the registry client (its
     * token flow, as the blob's task would fetch); a Bearer token is sent as is. Raw requests
     * never use the client object's credentials. */
    if (j->kind == PEER_ACCESS_ANON)
        j->rc = origin_client_anon(j->d, j->registry, j->scheme, &oc, &j->err);
    else
        j->rc =
            origin_client_get(j->d, j->registry, j->scheme, basic ? j->secret : NULL, &oc, &j->err);
    if (j->rc) return;
    if (j->kind != PEER_ACCESS_BEARER) {
        uint64_t size;
        j->rc = proto_registry_blob_size(oc->reg, j->repo, j->digest, &size, &j->err);
        if (j->rc == 0) {
            j->status = 200;
            return;
        }
        if (j->rc == -ENOENT) { /* the registry, with these credentials, knows no such blob */
            cf_err_clear(&j->err);
            j->rc = 0;
            j->status = 404;
            return;
        }
        if (j->rc != -EACCES) return;
        cf_err_clear(&j->err);
        j->rc = 0;
        if (j->kind == PEER_ACCESS_ANON) {
            j->status = 401;
            return;
        }
        /* refused: ask once more with the credentials as given for the status and the
         * WWW-Authenticate a mirror client must get */
    }
    char path[PROTO_TASK_ID_LEN + 300];
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", j->repo, j->digest);
    char user[512] = "", *pass = NULL;
    if (basic) {
        snprintf(user, sizeof(user), "%s", j->secret);
        if ((pass = strchr(user, ':'))) *pass++ = 0;
    }
    proto_registry_raw_req q = {.method = "HEAD",
                                .path = path,
                                .bearer = j->kind == PEER_ACCESS_BEARER ? j->secret : NULL,
                                .username = basic ? user : NULL,
                                .password = pass};
    proto_registry_raw r = {0};
    j->rc = proto_registry_raw_get(oc->reg, &q, &r, &j->err);
    explicit_bzero(user, sizeof(user));
    if (!j->rc) {
        j->status = r.status;
        /* the registry client accepted nothing above: never let a 200 here open the blob */
        if (j->kind != PEER_ACCESS_BEARER && r.status >= 200 && r.status < 300) j->status = 403;
        if (r.www_authenticate[0]) j->www_auth = strdup(r.www_authenticate);
    }
    proto_registry_raw_free(&r);
}

/* Calls every waiter of key with v; each call may cancel or add waiters, so scan from the
 * head after each. */
static void answer(struct peer_access *a, const uint8_t *key, const peer_access_verdict *v)
{
    for (;;) {
        peer_access_wait **pp = &a->waiters;
        while (*pp && memcmp((*pp)->key, key, CF_DIGEST_LEN) != 0) pp = &(*pp)->next;
        if (!*pp) return;
        peer_access_wait *w = *pp;
        *pp = w->next;
        w->next = NULL;
        w->waiting = 0;
        w->done(w, v);
    }
}

static void job_done(void *p, int cancelled)
{
    struct pa_job *j = p;
    struct peer_access *a = j->a;
    peer_daemon *d = j->d;
    a->jobs--;
    if (a->stopped) {
        if (!a->jobs) free(a);
        job_free(j);
        return;
    }
    char msg[CF_ERR_MSG_MAX + 64];
    peer_access_verdict v = {.state = PEER_ACCESS_UNKNOWN, .msg = msg};
    if (cancelled) {
        snprintf(msg, sizeof(msg), "shutting down");
    } else if (j->rc) {
        snprintf(msg, sizeof(msg), "cannot check access with the registry: %s",
                 cf_err_str(&j->err, j->rc));
    } else if (j->status >= 200 && j->status < 300) {
        v.state = PEER_ACCESS_OK;
        v.msg = "";
    } else if (j->status == 401 || j->status == 403 || j->status == 404) {
        v.state = PEER_ACCESS_REFUSED;
        v.status = (int)j->status;
        v.www_auth = j->www_auth;
        snprintf(msg, sizeof(msg), "%s",
                 j->kind == PEER_ACCESS_ANON ? "the blob is not public"
                 : j->status == 404          ? "blob unknown to the registry"
                                             : "the registry refused access to this blob");
    } else {
        snprintf(msg, sizeof(msg), "the registry answered %ld to an access check", j->status);
    }
    uint64_t now = pd_now(d);
    struct pa_entry *e = find(a, j->key, now);
    if (e) {
        /* a credential's 404 is not kept (the blob may be pushed a moment later); an anonymous
         * one is (a blob nobody may see anonymously stays private for the while) */
        if (v.state == PEER_ACCESS_OK ||
            (v.state == PEER_ACCESS_REFUSED && (v.status != 404 || j->kind == PEER_ACCESS_ANON))) {
            e->state = v.state == PEER_ACCESS_OK ? E_OK : E_REFUSED;
            e->status = v.status;
            e->www_auth = j->www_auth; /* the entry owns it now */
            j->www_auth = NULL;
            v.www_auth = e->www_auth;
            e->expires_ms = now + (v.state == PEER_ACCESS_OK ? PA_OK_MS : PA_REFUSED_MS);
        } else {
            entry_clear(e); /* not remembered: the next request asks again */
            e = NULL;
        }
    }
    answer(a, j->key, &v);
    job_free(j);
}

static void verdict_of(const struct pa_entry *e, peer_access_verdict *v)
{
    v->state = e->state == E_OK ? PEER_ACCESS_OK : PEER_ACCESS_REFUSED;
    v->status = e->status;
    v->www_auth = e->www_auth;
    v->msg = e->state == E_OK ? "" : "the registry refused access to this blob";
}

static int cred_ok(const peer_access_cred *c)
{
    if (c->kind == PEER_ACCESS_BASIC || c->kind == PEER_ACCESS_BEARER)
        return c->secret && c->secret[0];
    return c->kind == PEER_ACCESS_ANON || c->kind == PEER_ACCESS_NODE;
}

int peer_access_lookup(peer_daemon *d, const peer_access_cred *c, const char *origin,
                       const char *digest, peer_access_verdict *now)
{
    struct peer_access *a = d->access;
    if (!a || !cred_ok(c)) return 0;
    uint8_t key[CF_DIGEST_LEN];
    make_key(a, c, origin, digest, key);
    struct pa_entry *e = find(a, key, pd_now(d));
    if (!e || e->state == E_PENDING) return 0;
    verdict_of(e, now);
    return 1;
}

int peer_access_check(peer_daemon *d, const peer_access_cred *c, const char *origin,
                      const char *digest, peer_access_wait *w, peer_access_verdict *now)
{
    struct peer_access *a = d->access;
    if (!a) return -ESHUTDOWN;
    if (!cred_ok(c)) return -EINVAL;
    uint64_t t = pd_now(d);
    make_key(a, c, origin, digest, w->key);
    struct pa_entry *e = find(a, w->key, t);
    if (e && e->state != E_PENDING) {
        verdict_of(e, now);
        return 1;
    }
    if (!e) {
        if (a->jobs >= PA_MAX_JOBS) return -EBUSY;
        proto_image_ref ref;
        int scheme;
        if (origin_parse(origin, &ref, &scheme, NULL)) return -EINVAL;
        if (!(e = slot(a, t))) return -EBUSY;
        struct pa_job *j = calloc(1, sizeof(*j));
        if (!j) return -ENOMEM;
        j->d = d;
        j->a = a;
        j->kind = c->kind;
        j->scheme = scheme;
        memcpy(j->key, w->key, CF_DIGEST_LEN);
        snprintf(j->digest, sizeof(j->digest), "%s", digest);
        snprintf(j->registry, sizeof(j->registry), "%s", ref.registry);
        snprintf(j->repo, sizeof(j->repo), "%s", ref.repo);
        if (c->secret && (c->kind == PEER_ACCESS_BASIC || c->kind == PEER_ACCESS_BEARER) &&
            !(j->secret = strdup(c->secret))) {
            job_free(j);
            return -ENOMEM;
        }
        if (pd_queue_work(d, j, job_work, job_done)) {
            job_free(j);
            return -ENOMEM;
        }
        a->jobs++;
        memcpy(e->key, w->key, CF_DIGEST_LEN);
        e->state = E_PENDING;
    }
    w->waiting = 1;
    w->next = a->waiters;
    a->waiters = w;
    return 0;
}

void peer_access_cancel(peer_daemon *d, peer_access_wait *w)
{
    struct peer_access *a = d->access;
    if (!w->waiting) return;
    w->waiting = 0;
    if (!a) return;
    for (peer_access_wait **pp = &a->waiters; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    w->next = NULL;
}

int peer_access_start(peer_daemon *d, cf_err *err)
{
    if (!(d->access = calloc(1, sizeof(*d->access))))
        return cf_err_set(err, -ENOMEM, "access checks: out of memory");
    /* the keys are salted so the table tells nothing about a credential */
    if (getrandom(d->access->salt, sizeof(d->access->salt), 0) !=
        (ssize_t)sizeof(d->access->salt)) {
        int e = errno;
        free(d->access);
        d->access = NULL;
        return cf_err_set(err, -e, "access checks: getrandom: %s", strerror(e));
    }
    return 0;
}

void peer_access_stop(peer_daemon *d)
{
    struct peer_access *a = d->access;
    d->access = NULL;
    if (!a) return;
    /* the front ends closed first: their requests are gone or going; nobody is called */
    while (a->waiters) {
        peer_access_wait *w = a->waiters;
        a->waiters = w->next;
        w->next = NULL;
        w->waiting = 0;
    }
    for (size_t i = 0; i < PA_SLOTS; i++) entry_clear(&a->e[i]);
    a->stopped = 1;
    if (!a->jobs) free(a);
}
