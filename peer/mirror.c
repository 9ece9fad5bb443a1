/* The registry mirror (docs/mirror.md), a front end over the range reader like local_api.c:
 * GET/HEAD /v2/<name>/blobs/sha256:<hex> is answered from the blob's download task (task id =
 * the digest, origin = the upstream registry picked per request), streamed as the reader has the
 * bytes (cut-through, in order) and paced by the client's socket (a few spans queued). The whole
 * blob is verified by the task when complete; the client (containerd) checks the digest at the
 * end. /v2/ answers 200; manifests and other /v2/ paths are proxied to the upstream with the
 * client's Authorization (a 401 and its WWW-Authenticate go back unchanged); manifests by digest
 * are checked against it and, when fetched without credentials, kept in memory (bounded).
 * Errors are OCI error JSON. */
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>

#include "access_check.h"
#include "cf/digest.h"
#include "cf/hex.h"
#include "cf/log.h"
#include "daemon_internal.h"
#include "mirror_request.h"
#include "proto/error_code.h"
#include "proto/http_server.h"
#include "range_reader.h"

#define MIRROR_SPAN     (1u << 20) /* bytes per span at most (a piece, usually) */
#define MIRROR_WRITES   2          /* spans queued per response (cache spans: one fd dup each) */
#define MIRROR_MEM_MAX  (1u << 20) /* bytes of memory spans queued (copied by proto_http) */
#define MIRROR_LOOP_HDR "X-Chunkfly-Mirror"
#define MIRROR_UP_HDR   "X-Chunkfly-Upstream"
#define API_VERSION_HDR "Docker-Distribution-API-Version"

struct mreq {
    struct mreq *next;
    peer_daemon *d;
    proto_http_res *res; /* NULL once the client went away */
    peer_range_reader *rr;
    char digest[PROTO_TASK_ID_LEN + 1];
    uint64_t first;                  /* requested offset */
    uint64_t req_end;                /* requested end (exclusive), UINT64_MAX = to the blob's end */
    int ranged, head;                /* Range given; HEAD */
    int started;                     /* status line sent */
    int in_serve;                    /* serve() is on the stack: a write's completion only counts */
    int writes_pending;              /* spans not yet taken by the kernel (at most MIRROR_WRITES) */
    uint32_t mem_pending;            /* bytes of them copied from memory spans */
    uint32_t mem_len[MIRROR_WRITES]; /* per queued span, in order (0 = sendfile): proto_http
                                      * completes a response's writes in order */
    unsigned q_first;
    uint64_t deadline_ms; /* the answer must have started by then */
    /* authorization (see "blob authorization" below) */
    peer_access_wait wait;
    char *creds; /* Basic "user:password" the upstream accepted: for a new task */
    char origin[PROTO_MAX_ORIGIN_LEN + 1];
};

static void oci_error(proto_http_res *res, int status, const char *code, const char *msg)
{
    char body[512];
    char esc[300];
    size_t o = 0;
    for (const char *s = msg; *s && o + 2 < sizeof(esc); s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') esc[o++] = '\\';
        esc[o++] = ch < ' ' ? ' ' : (char)ch;
    }
    esc[o] = 0;
    int n = snprintf(body, sizeof(body),
                     "{\"errors\":[{\"code\":\"%s\",\"message\":\"%s\",\"detail\":null}]}\n", code,
                     esc);
    proto_http_set_header(res, API_VERSION_HDR, "registry/2.0");
    proto_http_respond(res, status, "application/json", body, (size_t)n);
}

static const char *code_for(int status)
{
    switch (status) {
    case 400:
        return "UNSUPPORTED";
    case 401:
        return "UNAUTHORIZED";
    case 403:
        return "DENIED";
    case 404:
        return "NOT_FOUND";
    case 416:
        return "RANGE_INVALID";
    case 508:
        return "LOOP_DETECTED";
    default:
        return "UNAVAILABLE";
    }
}

static void mreq_free(struct mreq *m)
{
    peer_daemon *d = m->d;
    for (struct mreq **pp = &d->mreqs; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    peer_access_cancel(d, &m->wait);
    peer_range_close(m->rr);
    if (m->creds) explicit_bzero(m->creds, strlen(m->creds));
    free(m->creds);
    free(m);
}

/* Detaches m from its response before the response is ended: proto_http_end may start the
 * connection's next request at once, on the same response object. */
static proto_http_res *mreq_detach(struct mreq *m)
{
    proto_http_res *res = m->res;
    if (res) proto_http_on_abort(res, NULL, NULL);
    m->res = NULL;
    return res;
}

/* The response ended (or the client is gone): detach from the connection. */
static void mreq_done(struct mreq *m)
{
    if (m->res) proto_http_on_abort(m->res, NULL, NULL);
    m->res = NULL;
    mreq_free(m);
}

static void on_abort(proto_http_res *res, void *arg)
{
    (void)res;
    struct mreq *m = arg;
    m->res = NULL;
    if (!m->in_serve) mreq_free(m); /* else serve() frees it */
}

static void serve(struct mreq *m);

static void on_written(proto_http_res *res, int status, void *arg)
{
    (void)res;
    struct mreq *m = arg;
    m->mem_pending -= m->mem_len[m->q_first];
    m->q_first = (m->q_first + 1) % MIRROR_WRITES;
    m->writes_pending--;
    if (status < 0 || !m->res || m->in_serve) return; /* the abort callback frees; serve loops */
    serve(m);
}

/* A failure after the status line: the body cannot be finished, so the connection is closed
 * (the client sees a short body, never wrong bytes presented as complete). */
static void fail_midstream(struct mreq *m, const char *msg)
{
    cf_warn("mirror: %s: %s", m->digest, msg);
    m->d->m.mirror_errors++;
    proto_http_res *res = m->res;
    mreq_done(m);
    if (res) proto_http_abort(res);
}

static int start_response(struct mreq *m, uint64_t len, uint64_t end)
{
    proto_http_res *r = m->res;
    char v[96];
    proto_http_set_header(r, API_VERSION_HDR, "registry/2.0");
    proto_http_set_header(r, "Docker-Content-Digest", m->digest);
    proto_http_set_header(r, "Accept-Ranges", "bytes");
    snprintf(v, sizeof(v), "\"%s\"", m->digest);
    proto_http_set_header(r, "ETag", v);
    int status = 200;
    uint64_t first = m->head ? 0 : m->first;
    if (m->ranged && !m->head) {
        status = 206;
        snprintf(v, sizeof(v), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, end ? end - 1 : 0,
                 len);
        proto_http_set_header(r, "Content-Range", v);
    }
    m->started = 1;
    return proto_http_start(r, status, "application/octet-stream",
                            (int64_t)(m->head ? len : end - first));
}

/* Sends what the reader has while the client takes it: cache spans with sendfile (zero-copy,
 * the connection holds a dup of the data file's fd until the kernel took the bytes; the reader's
 * in-use reference keeps the blob from eviction meanwhile), memory spans copied; at most
 * MIRROR_WRITES spans queued, so the client's pace holds back the reader. proto_http may
 * complete a write (on_written) or lose the connection (on_abort) inside the calls below: both
 * only mark m while in_serve is set. */
static void serve(struct mreq *m)
{
    peer_daemon *d = m->d;
    if (m->in_serve) return;
    m->in_serve = 1;
    while (m->res && m->writes_pending < MIRROR_WRITES && m->mem_pending < MIRROR_MEM_MAX) {
        peer_range_span sp;
        int rc = peer_range_next(m->rr, MIRROR_SPAN, &sp);
        if (rc == -EAGAIN) break;
        uint64_t len = 0;
        if (rc < 0) {
            const char *msg;
            uint32_t code = peer_range_error(m->rr, &msg);
            if (m->started) {
                fail_midstream(m, msg);
                return;
            }
            d->m.mirror_errors++;
            int err = proto_error_to_errno(code);
            int status = err == -ENOENT ? 404 : err == -ERANGE ? 416 : err == -EACCES ? 401 : 502;
            const char *oci = status == 404 ? "BLOB_UNKNOWN" : code_for(status);
            if (status == 416 && peer_range_blob_length(m->rr, &len) == 0) {
                char v[64];
                snprintf(v, sizeof(v), "bytes */%" PRIu64, len);
                proto_http_set_header(m->res, "Content-Range", v);
            }
            if (status == 401) {
                /* this node cannot fetch it (a client's Bearer token is not given to the
                 * task): the client, which the upstream accepted, asks it itself */
                status = 404;
                oci = "BLOB_UNKNOWN";
            }
            oci_error(mreq_detach(m), status, oci, msg); /* msg lives in the reader */
            mreq_done(m);
            return;
        }
        if (!m->started) {
            peer_range_blob_length(m->rr, &len);
            if (start_response(m, len, m->req_end < len ? m->req_end : len)) {
                fail_midstream(m, "cannot start the response");
                return;
            }
        }
        if (rc == 1 && m->writes_pending) break; /* on_written must not outlive m */
        if (rc == 1 || m->head) {
            proto_http_end(mreq_detach(m));
            mreq_done(m);
            return;
        }
        uint32_t mem = sp.fd >= 0 ? 0 : sp.length;
        m->mem_len[(m->q_first + (unsigned)m->writes_pending) % MIRROR_WRITES] = mem;
        m->mem_pending += mem;
        m->writes_pending++;
        /* a complete, verified blob: the rest of the range is one sendfile region of its data
         * file (laid out at blob offsets, never rewritten), as a file server sends a file,
         * instead of a span per piece */
        int whole = -1;
        uint64_t sent = sp.length, at = sp.file_offset;
        if (sp.fd >= 0 && peer_range_take_file(m->rr, &sp, &whole, &sent) != 0) whole = -1;
        if (whole >= 0) {
            rc = proto_http_sendfile(m->res, whole, at, sent, on_written, m);
            close(whole); /* proto_http keeps its own dup */
        } else if (sp.fd >= 0) {
            rc = proto_http_sendfile(m->res, sp.fd, sp.file_offset, sp.length, on_written, m);
        } else {
            rc = proto_http_write(m->res, sp.data, sp.length, on_written, m);
        }
        if (whole < 0) peer_range_consume(m->rr, &sp);
        if (!m->res) break; /* the connection closed inside the call */
        if (rc) {
            fail_midstream(m, rc == -EMFILE ? "out of file descriptors" : "cannot write");
            return;
        }
        d->m.mirror_bytes += sent;
    }
    m->in_serve = 0;
    if (!m->res) mreq_free(m); /* the connection went away meanwhile */
}

static void on_ready(peer_range_reader *rr, void *arg)
{
    (void)rr;
    serve(arg);
}

/* The request's upstream (allow-listed) into up, or an OCI error answered: -1. */
static int pick_upstream(peer_daemon *d, proto_http_res *res, const proto_http_req *req,
                         const struct mirror_target *t, char *up, size_t up_size)
{
    const char *why = "";
    int st = mirror_pick_upstream(t, proto_http_header_get(req, MIRROR_UP_HDR),
                                  d->o.mirror_default_upstream, d->o.mirror_upstreams, up, up_size,
                                  &why);
    if (!st) return 0;
    oci_error(res, st, code_for(st), why);
    return -1;
}

/* ---- blob authorization ----
 * Before a byte of a blob goes to a client the upstream must have said, for this repository,
 * that this client may read it (access_check.h): with the client's own Authorization (the
 * header sent only to the upstream), or, for a client without one, with the node's own
 * identity (anonymous or docker_config: a blob this node can read is served to every local
 * client, docs/mirror.md). A request over the check bound gets 503 and containerd goes to the
 * upstream itself. */

static int open_blob(struct mreq *m);

static void answer_verdict(struct mreq *m, const peer_access_verdict *v)
{
    peer_daemon *d = m->d;
    if (v->state == PEER_ACCESS_OK) {
        open_blob(m);
        return;
    }
    d->m.mirror_errors++;
    proto_http_res *res = mreq_detach(m);
    if (v->state == PEER_ACCESS_REFUSED) {
        if (v->www_auth) proto_http_set_header(res, "WWW-Authenticate", v->www_auth);
        oci_error(res, v->status, v->status == 404 ? "BLOB_UNKNOWN" : code_for(v->status),
                  v->status == 404 ? "blob unknown to the upstream"
                                   : "the upstream refused access to this blob");
    } else {
        oci_error(res, 502, "UNAVAILABLE", v->msg);
    }
    mreq_done(m);
}

static void on_verdict(peer_access_wait *w, const peer_access_verdict *v)
{
    struct mreq *m = (struct mreq *)((char *)w - offsetof(struct mreq, wait));
    if (!m->res) { /* gone meanwhile (in_serve cannot be set: no data was sent) */
        mreq_free(m);
        return;
    }
    answer_verdict(m, v);
}

/* Decides whether m's client may read the blob: answers at once from the table, or waits for
 * a check (m->wait). */
static void authorize(struct mreq *m, const char *authz)
{
    peer_daemon *d = m->d;
    const char *why = "";
    char creds[512] = "";
    peer_access_cred c = {.kind = PEER_ACCESS_NODE};
    if (authz) {
        if (strncasecmp(authz, "Bearer ", 7) == 0) {
            const char *bearer = authz + 7;
            while (*bearer == ' ') bearer++;
            c = (peer_access_cred){.kind = PEER_ACCESS_BEARER, .secret = bearer};
        } else {
            int st = mirror_basic_creds(authz, creds, sizeof(creds), &why);
            if (st > 1 || st == 0) {
                explicit_bzero(creds, sizeof(creds));
                d->m.mirror_errors++;
                oci_error(mreq_detach(m), st > 1 ? st : 400, "UNSUPPORTED",
                          st > 1 ? why : "unsupported Authorization scheme (Basic or Bearer)");
                mreq_done(m);
                return;
            }
            c = (peer_access_cred){.kind = PEER_ACCESS_BASIC, .secret = creds};
        }
    }
    peer_access_verdict v;
    static const peer_access_cred node = {.kind = PEER_ACCESS_NODE};
    if (peer_access_lookup(d, &node, m->origin, m->digest, &v) == 1 && v.state == PEER_ACCESS_OK) {
        explicit_bzero(creds, sizeof(creds));
        answer_verdict(m, &v);
        return;
    }
    /* Basic credentials the upstream accepts for this blob may start its task; never others
     * (a task started with wrong credentials would fail its other readers too) */
    if (c.kind == PEER_ACCESS_BASIC && !(m->creds = strdup(creds))) {
        explicit_bzero(creds, sizeof(creds));
        oci_error(mreq_detach(m), 503, "UNAVAILABLE", "out of memory");
        mreq_done(m);
        return;
    }
    m->wait.done = on_verdict;
    int rc = peer_access_check(d, &c, m->origin, m->digest, &m->wait, &v);
    explicit_bzero(creds, sizeof(creds));
    if (rc == 0) return;
    if (rc < 0) {
        d->m.mirror_errors++;
        oci_error(mreq_detach(m), 503, "UNAVAILABLE",
                  rc == -EBUSY ? "too many access checks in flight"
                               : "cannot start an access check");
        mreq_done(m);
        return;
    }
    answer_verdict(m, &v);
}

/* The client may read the blob: read it through its task. */
static int open_blob(struct mreq *m)
{
    peer_daemon *d = m->d;
    static const peer_range_cbs cbs = {.on_ready = on_ready};
    cf_err err = {0};
    uint64_t first = m->first;
    /* HEAD: an empty read, done once the length is known; GET: to the blob's end at most */
    uint64_t len = m->head ? 0 : m->req_end == UINT64_MAX ? UINT64_MAX - first : m->req_end - first;
    /* Cut-through: containerd (and every OCI client) checks a blob's digest as it reads it and
     * refuses a mismatch, so unverified bytes cost nothing but a retry (docs/mirror.md). */
    unsigned flags = PEER_RANGE_CLAMP | PEER_RANGE_UNVERIFIED | (m->head ? 0 : PEER_RANGE_WHOLE);
    /* A client's credentials reach the task only when the upstream accepted them for this
     * blob; the task uses them on this node only (origin fetches), and what it caches is served
     * to other clients only after their own check. */
    int rc = peer_range_open(d, m->digest, m->origin, m->creds, m->head ? 0 : first, len, flags,
                             &cbs, m, &m->rr, &err);
    if (m->creds) {
        explicit_bzero(m->creds, strlen(m->creds));
        free(m->creds);
        m->creds = NULL;
    }
    if (rc) {
        d->m.mirror_errors++;
        oci_error(mreq_detach(m), rc == -ESHUTDOWN ? 503 : 400,
                  rc == -ESHUTDOWN ? "UNAVAILABLE" : "UNSUPPORTED", cf_err_str(&err, rc));
        mreq_done(m);
        return rc;
    }
    if (peer_range_was_cached(m->rr)) d->m.mirror_hits++;
    serve(m);
    return 0;
}

static void serve_blob(peer_daemon *d, proto_http_res *res, const proto_http_req *req,
                       const struct mirror_target *t)
{
    char up[MIRROR_HOST_MAX + 16];
    if (pick_upstream(d, res, req, t, up, sizeof(up))) return;
    const char *why = "";
    int st;
    uint64_t first = 0, last = UINT64_MAX;
    int ranged = 0;
    if (!req->is_head) {
        st = mirror_parse_range(proto_http_header_get(req, "Range"), &first, &last, &why);
        if (st > 1) {
            oci_error(res, st, code_for(st), why);
            return;
        }
        ranged = st == 1;
    }
    if (!d->access) {
        oci_error(res, 503, "UNAVAILABLE", "the mirror is stopping");
        return;
    }
    struct mreq *m = calloc(1, sizeof(*m));
    if (!m) {
        oci_error(res, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    int n = snprintf(m->origin, sizeof(m->origin), "%s/%s", up, t->name);
    if (n < 0 || (size_t)n >= sizeof(m->origin)) {
        free(m);
        oci_error(res, 400, "NAME_INVALID", "repository name too long");
        return;
    }
    m->d = d;
    m->res = res;
    m->head = req->is_head;
    m->ranged = ranged;
    m->first = first;
    m->req_end = last == UINT64_MAX ? UINT64_MAX : last + 1;
    m->deadline_ms = pd_now(d) + d->o.origin_timeout_ms + d->o.register_timeout_ms + 2000;
    memcpy(m->digest, t->ref, PROTO_TASK_ID_LEN); /* checked: sha256:<64 hex> */
    m->digest[PROTO_TASK_ID_LEN] = 0;
    m->next = d->mreqs;
    d->mreqs = m;
    proto_http_on_abort(res, on_abort, m);
    authorize(m, proto_http_header_get(req, "Authorization"));
}

/* ---- manifests and other /v2/ paths: proxied to the upstream (thread pool) ---- */

#define MCACHE_MAX_BYTES (16u << 20) /* manifests cached by digest, in memory */

struct mcache_entry {
    struct mcache_entry *next;
    char digest[PROTO_TASK_ID_LEN + 1];
    char ctype[128];
    uint8_t *body;
    size_t len;
};

struct pjob {
    peer_daemon *d;
    proto_http_res *res; /* NULL once the client went away */
    char host[MIRROR_HOST_MAX];
    int scheme;
    char path[1024];
    char accept[1024];
    char *bearer;
    char creds[512]; /* "user:password" from a Basic Authorization */
    int has_creds, head;
    char digest[PROTO_TASK_ID_LEN + 1]; /* a manifest by digest: "" otherwise */
    int rc;
    cf_err err;
    proto_registry_raw raw;
};

static void pjob_free(struct pjob *j)
{
    proto_registry_raw_free(&j->raw);
    if (j->bearer) explicit_bzero(j->bearer, strlen(j->bearer));
    free(j->bearer);
    explicit_bzero(j->creds, sizeof(j->creds));
    free(j);
}

static void pjob_abort(proto_http_res *res, void *arg)
{
    (void)res;
    ((struct pjob *)arg)->res = NULL;
}

static void pjob_work(void *p)
{
    struct pjob *j = p;
    struct origin_client *oc = NULL;
    /* the client object's own credentials are never sent: raw requests carry the client's */
    j->rc = origin_client_get(j->d, j->host, j->scheme, NULL, &oc, &j->err);
    if (j->rc) return;
    char *pass = NULL;
    if (j->has_creds && (pass = strchr(j->creds, ':'))) *pass++ = 0;
    proto_registry_raw_req q = {.method = j->head ? "HEAD" : "GET",
                                .path = j->path,
                                .accept = j->accept[0] ? j->accept : NULL,
                                .bearer = j->bearer,
                                .username = j->has_creds ? j->creds : NULL,
                                .password = pass};
    j->rc = proto_registry_raw_get(oc->reg, &q, &j->raw, &j->err);
    origin_client_put(j->d, oc);
}

static int sha256_is(const uint8_t *b, size_t n, const char *digest)
{
    uint8_t md[CF_DIGEST_LEN];
    char hex[2 * CF_DIGEST_LEN + 1];
    if (cf_sha256(b, n, md) < 0) return 0;
    cf_hex_encode(md, sizeof(md), hex);
    return strncmp(digest, "sha256:", 7) == 0 && strcmp(digest + 7, hex) == 0;
}

static void mcache_put(peer_daemon *d, const char *digest, const char *ctype, const uint8_t *b,
                       size_t n)
{
    if (n > MCACHE_MAX_BYTES / 4 || d->stopping) return;
    for (struct mcache_entry *e = d->mcache; e; e = e->next)
        if (strcmp(e->digest, digest) == 0) return;
    struct mcache_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->body = malloc(n ? n : 1))) {
        free(e);
        return;
    }
    memcpy(e->body, b, n);
    e->len = n;
    snprintf(e->digest, sizeof(e->digest), "%s", digest);
    snprintf(e->ctype, sizeof(e->ctype), "%s", ctype);
    e->next = d->mcache;
    d->mcache = e;
    d->mcache_bytes += n;
    /* over the bound: drop the oldest (the list's tail) */
    while (d->mcache_bytes > MCACHE_MAX_BYTES && d->mcache && d->mcache->next) {
        struct mcache_entry **pp = &d->mcache;
        while ((*pp)->next) pp = &(*pp)->next;
        d->mcache_bytes -= (*pp)->len;
        free((*pp)->body);
        free(*pp);
        *pp = NULL;
    }
}

static void mcache_free(peer_daemon *d)
{
    while (d->mcache) {
        struct mcache_entry *e = d->mcache;
        d->mcache = e->next;
        free(e->body);
        free(e);
    }
    d->mcache_bytes = 0;
}

static int mcache_serve(peer_daemon *d, proto_http_res *res, const char *digest, int head)
{
    for (struct mcache_entry **pp = &d->mcache; *pp; pp = &(*pp)->next) {
        struct mcache_entry *e = *pp;
        if (strcmp(e->digest, digest) != 0) continue;
        *pp = e->next; /* most recent first */
        e->next = d->mcache;
        d->mcache = e;
        d->m.mirror_manifest_hits++;
        proto_http_set_header(res, API_VERSION_HDR, "registry/2.0");
        proto_http_set_header(res, "Docker-Content-Digest", e->digest);
        (void)head; /* HEAD: the server drops the body, Content-Length stays */
        proto_http_respond(res, 200, e->ctype[0] ? e->ctype : NULL, e->body, e->len);
        return 1;
    }
    return 0;
}

static void pjob_done(void *p, int cancelled)
{
    struct pjob *j = p;
    peer_daemon *d = j->d;
    proto_http_res *res = j->res;
    if (res) proto_http_on_abort(res, NULL, NULL); /* before the response ends (mreq_detach) */
    if (cancelled || !res) {
        if (res) oci_error(res, 503, "UNAVAILABLE", "shutting down");
        pjob_free(j);
        return;
    }
    if (j->rc) {
        d->m.mirror_errors++;
        oci_error(res, 502, "UNAVAILABLE", cf_err_str(&j->err, j->rc));
        pjob_free(j);
        return;
    }
    proto_registry_raw *r = &j->raw;
    if (j->digest[0] && r->status == 200 && !j->head) {
        if (!sha256_is(r->body, r->len, j->digest)) {
            d->m.mirror_errors++;
            oci_error(res, 502, "UNAVAILABLE", "the upstream's manifest does not match its digest");
            pjob_free(j);
            return;
        }
        /* only what the upstream gave without credentials is served to anyone from memory */
        if (!j->bearer && !j->has_creds) mcache_put(d, j->digest, r->content_type, r->body, r->len);
    }
    proto_http_set_header(res, API_VERSION_HDR, "registry/2.0");
    if (r->docker_digest[0]) proto_http_set_header(res, "Docker-Content-Digest", r->docker_digest);
    if (r->www_authenticate[0]) proto_http_set_header(res, "WWW-Authenticate", r->www_authenticate);
    const char *ct = r->content_type[0] ? r->content_type : NULL;
    int status = r->status >= 200 && r->status <= 599 ? (int)r->status : 502;
    if (j->head) {
        proto_http_start(res, status, ct, r->content_length >= 0 ? r->content_length : 0);
        proto_http_end(res);
    } else {
        proto_http_respond(res, status, ct, r->body, r->len);
    }
    pjob_free(j);
}

static void serve_proxy(peer_daemon *d, proto_http_res *res, const proto_http_req *req,
                        const struct mirror_target *t)
{
    char up[MIRROR_HOST_MAX + 16];
    if (pick_upstream(d, res, req, t, up, sizeof(up))) return;
    const char *why = "";
    int st;
    int by_digest = t->kind == MIRROR_MANIFEST && strncmp(t->ref, "sha256:", 7) == 0;
    if (by_digest && mcache_serve(d, res, t->ref, req->is_head)) return;
    struct pjob *j = calloc(1, sizeof(*j));
    if (!j) {
        oci_error(res, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    j->d = d;
    j->head = req->is_head;
    const char *h = up;
    if (strncmp(h, "http://", 7) == 0) {
        j->scheme = PROTO_REGISTRY_SCHEME_HTTP;
        h += 7;
    } else if (strncmp(h, "https://", 8) == 0) {
        j->scheme = PROTO_REGISTRY_SCHEME_HTTPS;
        h += 8;
    }
    if (strlen(h) >= sizeof(j->host)) {
        pjob_free(j);
        oci_error(res, 400, "UNSUPPORTED", "upstream name too long");
        return;
    }
    memcpy(j->host, h, strlen(h) + 1);
    if (by_digest) { /* checked: sha256:<64 hex> */
        memcpy(j->digest, t->ref, PROTO_TASK_ID_LEN);
        j->digest[PROTO_TASK_ID_LEN] = 0;
    }
    const char *acc = proto_http_header_get(req, "Accept");
    if (acc && strlen(acc) < sizeof(j->accept)) snprintf(j->accept, sizeof(j->accept), "%s", acc);
    const char *auth = proto_http_header_get(req, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *tok = auth + 7;
        while (*tok == ' ') tok++;
        if (!(j->bearer = strdup(tok))) {
            pjob_free(j);
            oci_error(res, 503, "UNAVAILABLE", "out of memory");
            return;
        }
    } else {
        st = mirror_basic_creds(auth, j->creds, sizeof(j->creds), &why);
        if (st > 1) {
            pjob_free(j);
            oci_error(res, st, code_for(st), why);
            return;
        }
        j->has_creds = st == 1;
    }
    if (mirror_upstream_path(t, j->path, sizeof(j->path))) {
        pjob_free(j);
        oci_error(res, 400, "UNSUPPORTED", "request target too long");
        return;
    }
    j->res = res;
    proto_http_on_abort(res, pjob_abort, j);
    if (pd_queue_work(d, j, pjob_work, pjob_done)) {
        proto_http_on_abort(res, NULL, NULL);
        pjob_free(j);
        oci_error(res, 503, "UNAVAILABLE", "cannot queue work");
    }
}

static void on_v2(proto_http_res *res, const proto_http_req *req, void *arg)
{
    peer_daemon *d = arg;
    d->m.mirror_requests++;
    if (proto_http_header_get(req, MIRROR_LOOP_HDR)) {
        oci_error(res, 508, "LOOP_DETECTED", "the request already passed a Chunkfly mirror");
        return;
    }
    struct mirror_target t;
    const char *why = "";
    int st = mirror_parse_target(req->target, &t, &why);
    if (st) {
        oci_error(res, st, st == 404 ? "NOT_FOUND" : "NAME_INVALID", why);
        return;
    }
    switch (t.kind) {
    case MIRROR_V2_ROOT:
        proto_http_set_header(res, API_VERSION_HDR, "registry/2.0");
        proto_http_respond(res, 200, "application/json", "{}\n", 3);
        return;
    case MIRROR_BLOB:
        serve_blob(d, res, req, &t);
        return;
    case MIRROR_MANIFEST:
    case MIRROR_OTHER:
        serve_proxy(d, res, req, &t);
        return;
    }
}

/* Answers that have not started by their deadline get a 504, so the client moves on to the
 * next host instead of hanging; but only while the task is stuck: a task still storing pieces
 * (other parts of the blob, on a busy mesh) gets more time, since sending the client to the
 * registry costs the origin the whole blob again. */
void mirror_tick(peer_daemon *d)
{
    uint64_t now = pd_now(d);
    struct mreq *next;
    for (struct mreq *m = d->mreqs; m; m = next) {
        next = m->next;
        if (m->started || !m->res || now < m->deadline_ms) continue;
        uint64_t progress = m->rr ? peer_range_task_progress_ms(m->rr) : 0;
        if (progress && now - progress < d->o.origin_timeout_ms) continue;
        d->m.mirror_errors++;
        oci_error(mreq_detach(m), 504, "UNAVAILABLE", "the blob did not start arriving in time");
        mreq_done(m);
    }
}

int mirror_start(peer_daemon *d, cf_err *err)
{
    const char *addr = d->o.mirror_listen;
    if (!addr || !addr[0]) return 0;
    char ip[64];
    uint16_t port;
    if (pd_split_host(addr, ip, sizeof(ip), &port))
        return cf_err_set(err, -EINVAL, "mirror_listen '%s': expected numeric ip:port", addr);
    struct proto_http_limits hl;
    proto_http_limits_default(&hl);
    hl.max_connections = d->o.mirror_max_conns;
    int rc = proto_http_server_new(d->loop, &hl, &d->mirror_http);
    if (rc) return cf_err_set(err, rc, "mirror: out of memory");
    rc = proto_http_route(d->mirror_http, "GET", "/*", on_v2, d); /* absolute form too */
    if (!rc) rc = proto_http_listen(d->mirror_http, ip, port, err);
    if (rc && !d->o.mirror_listen_set) {
        /* the default port is taken (another peer on this host): run without the mirror */
        cf_warn("mirror: %s: %s; the mirror is off (set mirror_listen)", addr, cf_err_str(err, rc));
        cf_err_clear(err);
        proto_http_server_close(d->mirror_http, NULL, NULL);
        d->mirror_http = NULL;
        return 0;
    }
    if (!rc)
        cf_info("mirror: registry mirror on http://%s (upstreams: %s)", addr,
                d->o.mirror_upstreams && d->o.mirror_upstreams[0] ? d->o.mirror_upstreams : "none");
    return rc;
}

int mirror_port(const peer_daemon *d)
{
    return d->mirror_http ? proto_http_port(d->mirror_http) : 0;
}

void mirror_stop(peer_daemon *d)
{
    if (d->mirror_http) proto_http_server_close(d->mirror_http, NULL, NULL);
    d->mirror_http = NULL;
    mcache_free(d);
}
