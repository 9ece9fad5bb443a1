/* The local API on the unix socket (docs/peer.md, "Local API"; messages in docs/protocol.md §3),
 * a front end over the range reader: LOCAL_READ answers with LOCAL_DATA frames as soon as the
 * reader has the next verified bytes (or, when the client set "uv", the next stored bytes:
 * cut-through for a reader that checks its chunks itself), in order, sent with sendfile from
 * the data file (or from memory when the cache is full) and paced by the client's socket
 * (on_drain);
 * LOCAL_PREFETCH is an empty read that downloads the whole blob and answers LOCAL_OK once the
 * blob's cache entry is open; STAT, PIN, UNPIN and LIST answer from the cache (LIST also with
 * the task snapshot). Every failure is an ERROR frame carrying the request id and a message
 * the caller can show. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access_check.h"
#include "cf/digest.h"
#include "cf/log.h"
#include "daemon_internal.h"
#include "proto/error_code.h"
#include "range_reader.h"

#define LOCAL_CHUNK    (1u << 20) /* LOCAL_DATA payload per frame */
#define HELLO_TIMEOUT  10000
#define REFUSED_LINGER 1000 /* ms a refused caller has to read its ERROR */
/* A read waiting for verification (the whole blob may take minutes) gets an empty LOCAL_DATA
 * at its position this often, so that a client's idle timeout measures a stalled daemon, not a
 * long wait for the blob's check. */
#define KEEPALIVE_MS 10000
/* Reads (and prefetches) one connection may have outstanding: each holds a range reader and a
 * reference on its blob, so a client pipelining requests it never waits for is refused BUSY
 * past this, not given unbounded memory. */
#define LOCAL_MAX_READS 256

struct lread {
    struct lread *next;
    struct lconn *lc;
    peer_range_reader *rr;
    uint64_t req_id;
    int prefetch;
    int accept_fd;    /* "fd": hand over the data file once the blob is verified */
    uint64_t pos;     /* blob offset of the next byte to send */
    uint64_t sent_ms; /* when a frame was last sent (keepalive) */
};

/* A read or prefetch waiting for the registry's verdict on its caller (see "access" below). */
struct lauth {
    peer_access_wait w; /* first member: the verdict callback gets &w */
    struct lauth *next;
    struct lconn *lc;
    uint64_t req_id;
    int prefetch;
    int unverified_ok; /* the request's "uv": passed on to the read once allowed */
    int accept_fd;     /* the request's "fd", likewise */
    int stage;         /* 0: is the blob public (anonymous check); 1: the caller's credentials */
    int cached;        /* the node holds or fetches the blob already */
    int held_private;  /* its cache record says the origin refused an anonymous read */
    int same_registry; /* the caller named the registry the blob was recorded from */
    uint64_t busy_since_ms; /* 0, or when the table first had no room: retried by the tick */
    char task_id[PROTO_TASK_ID_LEN + 1];
    char *origin, *creds; /* the caller's; creds wiped when freed */
    uint64_t offset, length;
    char check_origin[PROTO_MAX_ORIGIN_LEN + 1]; /* "[scheme://]registry/repo" asked */
};

struct lconn {
    struct lconn *next;
    peer_daemon *d;
    proto_conn *c;
    int refused; /* the caller's uid/gid is not allowed: nothing is read from it */
    int hello_done;
    int closed;
    int jobs; /* thread-pool jobs holding this lconn */
    uint32_t peer_mp;
    uint64_t accepted_ms;
    struct lread *reads;
    struct lauth *auths;
};

static int send_msg(struct lconn *lc, const proto_msg *m)
{
    if (lc->closed) return -ENOTCONN;
    return proto_conn_send(lc->c, m, NULL, 0, NULL);
}

static void send_error(struct lconn *lc, uint32_t code, uint64_t req_id, const char *task_id,
                       const char *msg)
{
    if (!lc->closed) proto_conn_send_error(lc->c, code, req_id, task_id, msg);
}

static void send_ok(struct lconn *lc, uint64_t req_id)
{
    proto_msg m = {.type = PROTO_MSG_LOCAL_OK};
    m.u.local_ok.req_id = req_id;
    send_msg(lc, &m);
}

static void read_end(struct lread *r)
{
    for (struct lread **pp = &r->lc->reads; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    peer_range_close(r->rr);
    free(r);
}

/* Sends what the reader has while the socket takes it; returns 1 when the read ended (freed). */
static int serve_read(struct lread *r)
{
    struct lconn *lc = r->lc;
    peer_daemon *d = lc->d;
    uint32_t mp = lc->peer_mp < LOCAL_CHUNK ? lc->peer_mp : LOCAL_CHUNK;
    while (!lc->closed && (r->prefetch || !proto_conn_congested(lc->c))) {
        peer_range_span sp;
        int rc = peer_range_next(r->rr, mp, &sp);
        if (rc == -EAGAIN) return 0;
        if (rc == 1) { /* a prefetch whose entry is open, or an empty read */
            if (r->prefetch) {
                send_ok(lc, r->req_id);
            } else {
                proto_msg m = {.type = PROTO_MSG_LOCAL_DATA};
                m.u.local_data.req_id = r->req_id;
                m.u.local_data.offset = sp.offset;
                m.u.local_data.last = true;
                send_msg(lc, &m);
            }
            read_end(r);
            return 1;
        }
        if (rc < 0) {
            const char *msg;
            uint32_t code = peer_range_error(r->rr, &msg);
            if (!r->prefetch) d->m.local_read_errors++;
            send_error(lc, code, r->req_id, peer_range_task_id(r->rr), msg);
            read_end(r);
            return 1;
        }
        cf_err err = {0};
        if (r->accept_fd) {
            int ffd;
            uint64_t flen;
            rc = peer_range_take_file(r->rr, &sp, &ffd, &flen);
            if (rc == 0) {
                proto_msg m = {.type = PROTO_MSG_LOCAL_FILE};
                m.u.local_file = (proto_local_file){
                    .req_id = r->req_id,
                    .offset = sp.offset,
                    .length = flen,
                    .file_offset = sp.offset}; /* data files are laid out at blob offsets */
                rc = proto_conn_send_fd(lc->c, &m, ffd, &err);
                close(ffd);
                if (rc) {
                    cf_warn("local API: read of %s: %s", peer_range_task_id(r->rr),
                            cf_err_str(&err, rc));
                    proto_conn_close(lc->c, rc, "cannot pass the file");
                    return 0;
                }
                d->m.bytes_served_local += flen;
                d->m.local_files_passed++;
                read_end(r);
                return 1;
            }
            if (rc != -EAGAIN) r->accept_fd = 0; /* cannot reopen the file: frames from now on */
        }
        proto_msg m = {.type = PROTO_MSG_LOCAL_DATA};
        m.u.local_data.req_id = r->req_id;
        m.u.local_data.offset = sp.offset;
        m.u.local_data.last = sp.last;
        /* sent before consume: the conn dups the fd / copies the bytes */
        rc = sp.fd >= 0 ? proto_conn_send_file(lc->c, &m, sp.fd, sp.file_offset, sp.length, &err)
                        : proto_conn_send(lc->c, &m, sp.data, sp.length, &err);
        peer_range_consume(r->rr, &sp);
        if (rc) {
            cf_warn("local API: read of %s: %s", peer_range_task_id(r->rr), cf_err_str(&err, rc));
            proto_conn_close(lc->c, rc, "cannot send data");
            return 0;
        }
        d->m.bytes_served_local += sp.length;
        r->pos = sp.offset + sp.length;
        r->sent_ms = pd_now(d);
        if (sp.last) {
            read_end(r);
            return 1;
        }
    }
    return 0;
}

static void on_read_ready(peer_range_reader *rr, void *arg)
{
    (void)rr;
    serve_read(arg);
}

/* Starts the read once the caller may have the blob (or the blob is not known here yet and
 * its task will fetch it with the caller's credentials). */
static void start_read(struct lconn *lc, const proto_local_read *q, int prefetch)
{
    peer_daemon *d = lc->d;
    cf_err err = {0};
    struct lread *r = calloc(1, sizeof(*r));
    if (!r) {
        send_error(lc, PROTO_E_INTERNAL, q->req_id, q->task_id, "out of memory");
        return;
    }
    static const peer_range_cbs cbs = {.on_ready = on_read_ready};
    /* a prefetch is an empty read of the whole blob: done once the entry is open */
    unsigned flags = prefetch ? PEER_RANGE_PREFETCH : PEER_RANGE_WHOLE;
    if (q->unverified_ok) flags |= PEER_RANGE_UNVERIFIED;
    int rc = peer_range_open(d, q->task_id, q->origin, q->credentials, prefetch ? 0 : q->offset,
                             prefetch ? 0 : q->length, flags, &cbs, r, &r->rr, &err);
    if (rc) {
        free(r);
        if (!prefetch) d->m.local_read_errors++;
        send_error(lc, proto_error_from_errno(rc, PROTO_E_INTERNAL), q->req_id, q->task_id,
                   cf_err_str(&err, rc));
        return;
    }
    if (!prefetch && peer_range_was_cached(r->rr)) d->m.local_read_hits++;
    r->lc = lc;
    r->req_id = q->req_id;
    r->prefetch = prefetch;
    /* descriptors go over plain unix sockets only (proto_conn_send_fd) */
    r->accept_fd = !prefetch && q->accept_fd;
    r->pos = q->offset;
    r->sent_ms = pd_now(d);
    r->next = lc->reads;
    lc->reads = r;
    serve_read(r);
}

/* ---- access: a private blob only to a caller the registry accepts ----
 * Bytes of a blob the node already holds or fetches came with somebody's credentials, so
 * before serving them the registry the blob was recorded from is asked (access_check.h, the
 * verdicts shared with the mirror and remembered briefly): anonymously first (a public blob is
 * served to anyone), then, for a private one, with the caller's `cr` or, when it gives none
 * and api_node_credentials allows, with the node's own identity. A blob not known here yet is
 * checked the same way against the caller's origin, so that a caller without credentials
 * cannot have the node's fetch a private blob for it against the policy. */

static void lauth_free(struct lauth *a)
{
    for (struct lauth **pp = &a->lc->auths; *pp; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    if (a->creds) {
        explicit_bzero(a->creds, strlen(a->creds));
        free(a->creds);
    }
    free(a->origin);
    free(a);
}

static void lauth_serve(struct lauth *a)
{
    proto_local_read q = {.req_id = a->req_id,
                          .task_id = a->task_id,
                          .origin = a->origin,
                          .credentials = a->creds,
                          .offset = a->offset,
                          .length = a->length,
                          .unverified_ok = a->unverified_ok,
                          .accept_fd = a->accept_fd};
    start_read(a->lc, &q, a->prefetch);
}

static void lauth_refuse(struct lauth *a, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lauth_refuse(struct lauth *a, uint32_t code, const char *fmt, ...)
{
    char msg[CF_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    peer_daemon *d = a->lc->d;
    if (code == PROTO_E_AUTH) d->m.local_access_refused++;
    if (!a->prefetch) d->m.local_read_errors++;
    send_error(a->lc, code, a->req_id, a->task_id, msg);
}

/* Blobs this daemon has seen refused anonymously, per origin checked: for PRIVATE_MS a read
 * goes straight to its caller's check (a private blob read lazily would otherwise cost an
 * anonymous HEAD every time the table's 10 s refusal expires); and, whenever seen since the
 * start (or recorded in the blob's cache record, PEER_REC_F_PRIVATE, before a restart), a held
 * blob is not served while the registry cannot be asked. */
#define PRIVATE_MS 60000

static void private_key(const struct lauth *a, uint8_t out[32])
{
    cf_digest_ctx c;
    memset(out, 0, 32);
    if (cf_digest_init(&c, CF_DIGEST_SHA256)) return;
    cf_digest_update(&c, a->check_origin, strlen(a->check_origin) + 1);
    cf_digest_update(&c, a->task_id, strlen(a->task_id));
    cf_digest_final(&c, out);
}

static struct api_private *private_find(peer_daemon *d, const struct lauth *a, int by_key)
{
    uint8_t dg[32], key[32];
    proto_task_id_to_digest(a->task_id, dg);
    if (by_key) private_key(a, key);
    for (unsigned i = 0; i < d->api_private_n; i++) {
        struct api_private *p = &d->api_private[i];
        if (memcmp(p->digest, dg, 32) == 0 && (!by_key || memcmp(p->key, key, 32) == 0)) return p;
    }
    return NULL;
}

static int private_recent(peer_daemon *d, const struct lauth *a)
{
    struct api_private *p = private_find(d, a, 1);
    return p && pd_now(d) - p->seen_ms < PRIVATE_MS;
}

static void private_note(peer_daemon *d, const struct lauth *a)
{
    struct api_private *p = private_find(d, a, 1);
    if (!p) {
        p = &d->api_private[d->api_private_next];
        d->api_private_next = (d->api_private_next + 1) % PEER_API_PRIVATE_MAX;
        if (d->api_private_n < PEER_API_PRIVATE_MAX) d->api_private_n++;
        proto_task_id_to_digest(a->task_id, p->digest);
        private_key(a, p->key);
    }
    p->seen_ms = pd_now(d);
}

/* The registry could not be asked for this origin a moment ago: a held blob is served for
 * UNKNOWN_MS without asking again (each lazy read would otherwise wait for the registry's
 * timeout during an outage). */
#define UNKNOWN_MS 10000

static int unknown_recent(peer_daemon *d, const struct lauth *a)
{
    uint8_t key[32];
    private_key(a, key);
    uint64_t now = pd_now(d);
    for (unsigned i = 0; i < PEER_API_UNKNOWN_MAX; i++)
        if (d->api_unknown[i].until_ms > now && memcmp(d->api_unknown[i].key, key, 32) == 0)
            return 1;
    return 0;
}

static void unknown_note(peer_daemon *d, const struct lauth *a)
{
    struct api_unknown *u = &d->api_unknown[d->api_unknown_next];
    d->api_unknown_next = (d->api_unknown_next + 1) % PEER_API_UNKNOWN_MAX;
    private_key(a, u->key);
    u->until_ms = pd_now(d) + UNKNOWN_MS;
}

static void lauth_step(struct lauth *a);

/* The anonymous verdict is also kept in the blob's cache record (PEER_REC_F_PRIVATE), so that a
 * restarted daemon whose registry is away still knows a held blob is private. */
struct private_job {
    peer_daemon *d;
    uint8_t digest[32];
    int is_private;
};

static void private_work(void *p)
{
    struct private_job *j = p;
    cf_err e = {0};
    int rc = peer_store_set_private(j->d->store, j->digest, j->is_private, &e);
    if (rc && rc != -ENOENT) cf_warn("cache: recording a blob's privacy: %s", cf_err_str(&e, rc));
}

static void private_done(void *p, int cancelled)
{
    (void)cancelled;
    free(p);
}

static void private_record(peer_daemon *d, const struct lauth *a, int is_private)
{
    struct private_job *j = calloc(1, sizeof(*j));
    if (!j) return; /* only the restart case loses the fact: the verdict itself stands */
    j->d = d;
    j->is_private = is_private;
    proto_task_id_to_digest(a->task_id, j->digest);
    if (pd_queue_work(d, j, private_work, private_done)) free(j);
}

static void lauth_verdict(struct lauth *a, const peer_access_verdict *v)
{
    peer_daemon *d = a->lc->d;
    if (a->stage == 0) {
        if (v->state == PEER_ACCESS_OK) { /* public: anyone */
            if (a->held_private) private_record(d, a, 0);
            lauth_serve(a);
            lauth_free(a);
            return;
        }
        if (v->state == PEER_ACCESS_UNKNOWN) {
            /* cannot tell: a blob the node holds keeps being served while the registry is
             * away (running containers read it lazily), unless it was seen private; a blob not
             * held would need the registry anyway */
            if (a->cached && !a->held_private && !private_find(d, a, 0)) {
                unknown_note(d, a);
                lauth_serve(a);
            } else {
                lauth_refuse(a, PROTO_E_ORIGIN, "%s (%s)", v->msg, a->check_origin);
            }
            lauth_free(a);
            return;
        }
        private_note(d, a);
        if (a->cached && !a->held_private) private_record(d, a, 1);
        a->stage = 1;
        lauth_step(a);
        return;
    }
    if (v->state == PEER_ACCESS_OK) {
        lauth_serve(a);
    } else if (v->state == PEER_ACCESS_REFUSED) {
        lauth_refuse(a, PROTO_E_AUTH, "%s: registry %s refused %s for this private blob (HTTP %d)",
                     a->task_id, a->check_origin,
                     a->creds ? "the credentials given (cr)" : "this node's credentials",
                     v->status);
    } else {
        lauth_refuse(a, PROTO_E_ORIGIN,
                     "%s (%s): a private blob is served only after the "
                     "registry accepted the caller",
                     v->msg, a->check_origin);
    }
    lauth_free(a);
}

static void lauth_done(peer_access_wait *w, const peer_access_verdict *v)
{
    lauth_verdict((struct lauth *)w, v);
}

/* Asks the table for the current stage's verdict (answers now or when the check ends). */
static void lauth_step(struct lauth *a)
{
    peer_daemon *d = a->lc->d;
    peer_access_cred c = {.kind = PEER_ACCESS_ANON};
    if (a->stage == 0 && private_recent(d, a)) a->stage = 1;
    if (a->stage == 0 && a->cached && !a->held_private && !private_find(d, a, 0) &&
        unknown_recent(d, a)) {
        lauth_serve(a); /* the registry was away a moment ago: served as the cache was */
        lauth_free(a);
        return;
    }
    if (a->stage == 1) {
        if (a->creds) {
            if (!a->same_registry) {
                lauth_refuse(a, PROTO_E_AUTH,
                             "%s is a private blob recorded from %s: credentials are checked "
                             "only with that registry (name it in the origin)",
                             a->task_id, a->check_origin);
                lauth_free(a);
                return;
            }
            c.kind = PEER_ACCESS_BASIC;
            c.secret = a->creds;
        } else if (d->o.api_node_creds) {
            c.kind = PEER_ACCESS_NODE;
        } else {
            lauth_refuse(a, PROTO_E_AUTH,
                         "%s is a private blob of %s: give credentials (user:password) the "
                         "registry accepts (this daemon does not lend its own: "
                         "api_node_credentials = false)",
                         a->task_id, a->check_origin);
            lauth_free(a);
            return;
        }
    }
    peer_access_verdict v;
    a->w.done = lauth_done;
    int rc = peer_access_check(d, &c, a->check_origin, a->task_id, &a->w, &v);
    if (rc >= 0) a->busy_since_ms = 0;
    if (rc == 1) {
        lauth_verdict(a, &v);
    } else if (rc == -EBUSY && (!a->busy_since_ms ||
                                pd_now(d) - a->busy_since_ms < d->o.origin_timeout_ms + 2000u)) {
        /* every check slot is taken (a burst of first reads: a snapshotter mounting many
         * layers): wait for room, the tick asks again */
        if (!a->busy_since_ms) a->busy_since_ms = pd_now(d);
    } else if (rc < 0) {
        lauth_refuse(a, rc == -EBUSY ? PROTO_E_BUSY : PROTO_E_INTERNAL,
                     "%s: cannot check access with the registry: %s", a->task_id,
                     rc == -EBUSY ? "too many access checks in flight" : strerror(-rc));
        lauth_free(a);
    }
}

/* The origin to check: the registry the blob was recorded from (a running task's origin, else
 * the cache record's), never one the caller names freely, with the caller's repository when the
 * caller names that same registry (a registry answers per repository, and the caller may read
 * the blob through its own); a blob unknown here: the caller's origin. 0, or -EINVAL when the
 * caller's origin is unusable (the read then fails with the usual message). */
static int check_origin(peer_daemon *d, struct lauth *a)
{
    const char *rec = NULL;
    struct task *t = task_find(d, a->task_id);
    if (t && t->state != T_FAILED && t->origin[0]) rec = t->origin;
    peer_blob_info bi;
    uint8_t dg[32];
    proto_task_id_to_digest(a->task_id, dg);
    int held = peer_store_blob_info(d->store, dg, &bi) == 0;
    if (!rec && held && bi.origin[0]) rec = bi.origin;
    a->cached = held || (t && t->state != T_FAILED);
    a->held_private = held && bi.is_private;
    proto_image_ref cref = {0}, rref;
    int cscheme = 0, rscheme = 0;
    int have_c = a->origin && a->origin[0] && origin_parse(a->origin, &cref, &cscheme, NULL) == 0;
    if (a->origin && a->origin[0] && !have_c) return -EINVAL;
    if (have_c && cref.digest[0] && strcmp(cref.digest, a->task_id) != 0) return -EINVAL;
    if (!rec || origin_parse(rec, &rref, &rscheme, NULL)) {
        if (!have_c) return -EINVAL;
        rref = cref; /* nothing recorded: the caller's origin */
        rscheme = cscheme;
    }
    a->same_registry = have_c && strcasecmp(cref.registry, rref.registry) == 0;
    const char *pfx = rscheme == PROTO_REGISTRY_SCHEME_HTTP    ? "http://"
                      : rscheme == PROTO_REGISTRY_SCHEME_HTTPS ? "https://"
                                                               : "";
    int n = snprintf(a->check_origin, sizeof(a->check_origin), "%s%s/%s", pfx, rref.registry,
                     a->same_registry ? cref.repo : rref.repo);
    return n > 0 && (size_t)n < sizeof(a->check_origin) ? 0 : -EINVAL;
}

static void handle_read(struct lconn *lc, const proto_local_read *q, int prefetch)
{
    peer_daemon *d = lc->d;
    if (!prefetch) d->m.local_reads++;
    unsigned outstanding = 0;
    for (struct lread *r = lc->reads; r; r = r->next) outstanding++;
    for (struct lauth *a = lc->auths; a; a = a->next) outstanding++;
    if (outstanding >= LOCAL_MAX_READS) {
        if (!prefetch) d->m.local_read_errors++;
        char msg[96];
        snprintf(msg, sizeof(msg),
                 "too many reads outstanding on this connection (%d): wait for answers",
                 LOCAL_MAX_READS);
        send_error(lc, PROTO_E_BUSY, q->req_id, q->task_id, msg);
        return;
    }
    struct lauth *a = calloc(1, sizeof(*a));
    if (!a || (q->origin && !(a->origin = strdup(q->origin))) ||
        (q->credentials && q->credentials[0] && !(a->creds = strdup(q->credentials)))) {
        if (a) {
            free(a->origin);
            free(a);
        }
        send_error(lc, PROTO_E_INTERNAL, q->req_id, q->task_id, "out of memory");
        return;
    }
    a->lc = lc;
    a->req_id = q->req_id;
    a->prefetch = prefetch;
    a->unverified_ok = q->unverified_ok;
    a->accept_fd = q->accept_fd;
    a->offset = q->offset;
    a->length = q->length;
    a->next = lc->auths;
    lc->auths = a;
    if (strlen(q->task_id) != PROTO_TASK_ID_LEN) {
        start_read(lc, q, prefetch); /* bad id: refused there with its message */
        lauth_free(a);
        return;
    }
    memcpy(a->task_id, q->task_id, PROTO_TASK_ID_LEN + 1);
    if (check_origin(d, a)) {
        start_read(lc, q, prefetch); /* bad origin: refused there with its message */
        lauth_free(a);
        return;
    }
    lauth_step(a);
}

static void entry_from_info(const peer_blob_info *bi, char *id, proto_local_entry *e)
{
    proto_task_id_from_digest(bi->digest, id);
    e->task_id = id;
    e->content_length = bi->length;
    e->piece_size = bi->piece_size;
    e->piece_count = bi->piece_count;
    e->pieces_have = bi->pieces_written;
    e->pinned = bi->pin_count > 0;
    e->complete = bi->complete && bi->verified;
}

static void handle_stat(struct lconn *lc, const proto_local_task *q)
{
    peer_blob_info bi;
    uint8_t digest[32];
    proto_task_id_to_digest(q->task_id, digest);
    if (peer_store_blob_info(lc->d->store, digest, &bi)) {
        send_error(lc, proto_error_from_errno(-ENOENT, PROTO_E_INTERNAL), q->req_id, q->task_id,
                   "blob not in the cache");
        return;
    }
    char id[PROTO_TASK_ID_LEN + 1];
    proto_msg m = {.type = PROTO_MSG_LOCAL_STAT_REPLY};
    m.u.local_stat_reply.req_id = q->req_id;
    entry_from_info(&bi, id, &m.u.local_stat_reply.entry);
    send_msg(lc, &m);
}

/* The task snapshot in LOCAL_LIST_REPLY "tk" form; *out and *wire_parents freed by the caller. */
static int list_tasks(peer_daemon *d, proto_local_task_info **out, size_t *n,
                      proto_local_parent **wire_parents)
{
    task_status *ts = NULL;
    task_status_parent *tp = NULL;
    size_t nt = 0, np = 0;
    if (tasks_snapshot(d, PROTO_MAX_LIST_TASKS, &ts, &nt, &tp, &np)) return -ENOMEM;
    *out = calloc(nt ? nt : 1, sizeof(**out));
    *wire_parents = calloc(np ? np : 1, sizeof(**wire_parents));
    if (!*out || !*wire_parents) {
        free(*out);
        free(*wire_parents);
        free(ts);
        free(tp);
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < nt; i++) {
        proto_local_task_info *e = &(*out)[i];
        e->task_id = ts[i].id;
        e->state = ts[i].state;
        e->content_length = ts[i].length;
        e->piece_count = ts[i].piece_count;
        e->pieces_have = ts[i].pieces_have;
        e->from_parents = ts[i].from_parents;
        e->from_origin = ts[i].from_origin;
        e->origin_mode = ts[i].origin_mode;
        e->readers = (uint32_t)ts[i].readers;
        e->error = ts[i].error;
        e->parents = &(*wire_parents)[k];
        for (size_t j = 0; j < ts[i].n_parents; j++) {
            const task_status_parent *sp = &tp[ts[i].first_parent + j];
            if (!sp->host_id[0] || !sp->addr[0]) continue; /* both required on the wire */
            proto_local_parent *p = &(*wire_parents)[k++];
            p->host_id = sp->host_id;
            p->addr = sp->addr;
            p->served = sp->served;
            p->banned = sp->banned;
            p->down = sp->down;
            e->n_parents++;
        }
    }
    free(ts);
    free(tp);
    *n = nt;
    return 0;
}

static void handle_list(struct lconn *lc, uint64_t req_id)
{
    peer_blob_info *all = NULL;
    size_t n = 0;
    if (peer_store_list(lc->d->store, &all, &n)) {
        send_error(lc, PROTO_E_INTERNAL, req_id, NULL, "cannot list the cache");
        return;
    }
    if (n > PROTO_MAX_LIST_ENTRIES) n = PROTO_MAX_LIST_ENTRIES;
    proto_local_entry *e = calloc(n ? n : 1, sizeof(*e));
    char(*ids)[PROTO_TASK_ID_LEN + 1] = calloc(n ? n : 1, sizeof(*ids));
    proto_local_task_info *tasks = NULL;
    proto_local_parent *parents = NULL;
    size_t n_tasks = 0;
    if (!e || !ids || list_tasks(lc->d, &tasks, &n_tasks, &parents)) {
        free(e);
        free(ids);
        free(all);
        send_error(lc, PROTO_E_INTERNAL, req_id, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) entry_from_info(&all[i], ids[i], &e[i]);
    proto_msg m = {.type = PROTO_MSG_LOCAL_LIST_REPLY};
    m.u.local_list_reply.req_id = req_id;
    m.u.local_list_reply.entries = e;
    m.u.local_list_reply.n_entries = n;
    m.u.local_list_reply.tasks = tasks;
    m.u.local_list_reply.n_tasks = n_tasks;
    cf_err err = {0};
    int rc;
    /* over the body limit (thousands of blobs/tasks): send fewer tasks, then fewer blobs */
    for (;;) {
        cf_err_clear(&err);
        rc = lc->closed ? 0 : proto_conn_send(lc->c, &m, NULL, 0, &err);
        if (rc == -EINVAL && m.u.local_list_reply.n_tasks) { /* a task we cannot describe */
            cf_warn("local API: list without tasks: %s", cf_err_str(&err, rc));
            m.u.local_list_reply.n_tasks = 0;
            continue;
        }
        if (rc != -EMSGSIZE) break;
        if (m.u.local_list_reply.n_tasks)
            m.u.local_list_reply.n_tasks /= 2;
        else if (m.u.local_list_reply.n_entries)
            m.u.local_list_reply.n_entries /= 2;
        else
            break;
    }
    if (rc) send_error(lc, PROTO_E_INTERNAL, req_id, NULL, cf_err_str(&err, rc));
    free(e);
    free(ids);
    free(all);
    free(tasks);
    free(parents);
}

struct pin_job {
    struct lconn *lc;
    uint64_t req_id;
    uint8_t digest[32];
    char task_id[PROTO_TASK_ID_LEN + 1];
    int unpin, rc;
    cf_err err;
};

static void pin_work(void *p)
{
    struct pin_job *j = p;
    peer_store *s = j->lc->d->store;
    j->rc =
        j->unpin ? peer_store_unpin(s, j->digest, &j->err) : peer_store_pin(s, j->digest, &j->err);
}

static void lconn_maybe_free(struct lconn *lc)
{
    if (lc->closed && lc->jobs == 0) free(lc);
}

static void pin_done(void *p, int cancelled)
{
    struct pin_job *j = p;
    struct lconn *lc = j->lc;
    lc->jobs--;
    if (!lc->closed && !cancelled) {
        if (j->rc == 0)
            send_ok(lc, j->req_id);
        else
            send_error(lc, proto_error_from_errno(j->rc, PROTO_E_INTERNAL), j->req_id, j->task_id,
                       cf_err_str(&j->err, j->rc));
    }
    free(j);
    lconn_maybe_free(lc);
}

static void handle_pin(struct lconn *lc, const proto_local_task *q, int unpin)
{
    struct pin_job *j = calloc(1, sizeof(*j));
    if (!j) {
        send_error(lc, PROTO_E_INTERNAL, q->req_id, q->task_id, "out of memory");
        return;
    }
    j->lc = lc;
    j->req_id = q->req_id;
    j->unpin = unpin;
    snprintf(j->task_id, sizeof(j->task_id), "%s", q->task_id);
    proto_task_id_to_digest(q->task_id, j->digest);
    lc->jobs++;
    if (pd_queue_work(lc->d, j, pin_work, pin_done)) {
        lc->jobs--;
        free(j);
        send_error(lc, PROTO_E_INTERNAL, q->req_id, q->task_id, "cannot queue work");
    }
}

static void on_frame(proto_conn *c, const proto_frame_header *h, const uint8_t *body,
                     const uint8_t *payload)
{
    (void)payload;
    struct lconn *lc = proto_conn_data(c);
    peer_daemon *d = lc->d;
    if (lc->refused) return; /* reading is paused; frames already parsed are dropped */
    proto_msg m;
    cf_err err = {0};
    int rc = proto_msg_decode(h->type, body, h->body_len, h->payload_len, &m, &err);
    if (rc) {
        d->m.bad_frames++;
        send_error(lc, rc == -ENOTSUP ? PROTO_E_UNEXPECTED : PROTO_E_BAD_MESSAGE, 0, NULL,
                   cf_err_str(&err, rc));
        if (rc != -ENOTSUP) proto_conn_close_after_flush(c, -EBADMSG, "bad frame");
        return;
    }
    if (!lc->hello_done) {
        uint32_t pmax;
        if (pd_serve_hello(d, c, &m, 0, &pmax) == 0) {
            lc->peer_mp = pmax;
            lc->hello_done = 1;
            proto_conn_set_max_body(c, 0);
        }
        proto_msg_free(&m);
        return;
    }
    switch (m.type) {
    case PROTO_MSG_LOCAL_READ:
        handle_read(lc, &m.u.local_read, 0);
        break;
    case PROTO_MSG_LOCAL_PREFETCH:
        handle_read(lc, &m.u.local_prefetch, 1);
        break;
    case PROTO_MSG_LOCAL_STAT:
        handle_stat(lc, &m.u.local_task);
        break;
    case PROTO_MSG_LOCAL_PIN:
        handle_pin(lc, &m.u.local_task, 0);
        break;
    case PROTO_MSG_LOCAL_UNPIN:
        handle_pin(lc, &m.u.local_task, 1);
        break;
    case PROTO_MSG_LOCAL_LIST:
        handle_list(lc, m.u.local_list.req_id);
        break;
    default:
        send_error(lc, PROTO_E_UNEXPECTED, 0, NULL, "message not handled on the local API");
        break;
    }
    proto_msg_free(&m);
}

static void on_drain(proto_conn *c)
{
    struct lconn *lc = proto_conn_data(c);
    struct lread *next;
    for (struct lread *r = lc->reads; r; r = next) {
        next = r->next;
        if (!r->prefetch) serve_read(r);
    }
}

static void on_close(proto_conn *c, int status, const char *reason)
{
    (void)status;
    (void)reason;
    struct lconn *lc = proto_conn_data(c);
    peer_daemon *d = lc->d;
    while (lc->reads) read_end(lc->reads);
    while (lc->auths) {
        peer_access_cancel(d, &lc->auths->w);
        lauth_free(lc->auths);
    }
    for (struct lconn **pp = &d->lconns; *pp; pp = &(*pp)->next)
        if (*pp == lc) {
            *pp = lc->next;
            break;
        }
    d->n_lconns--;
    lc->closed = 1;
    lconn_maybe_free(lc);
}

/* ---- who may call: SO_PEERCRED against root, our uid and the configured uids/groups ---- */

static int id_listed(const uint32_t *ids, size_t n, uint32_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

/* The supplementary groups of pid from /proc (SO_PEERCRED carries the primary gid only): 1 when
 * one of them is allowed. Read at accept time, while the caller waits for its HELLO answer. */
static int proc_groups_allowed(const peer_daemon *d, pid_t pid)
{
    char path[64], line[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    int ok = 0;
    while (!ok && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Groups:", 7) != 0) continue;
        char *p = line + 7, *end;
        for (;;) {
            unsigned long g = strtoul(p, &end, 10);
            if (end == p) break;
            if (id_listed(d->api_gids, d->n_api_gids, (uint32_t)g)) ok = 1;
            p = end;
        }
        break;
    }
    fclose(f);
    return ok;
}

static int caller_allowed(const peer_daemon *d, const struct ucred *uc)
{
    if (uc->uid == 0 || uc->uid == geteuid()) return 1;
    if (id_listed(d->api_uids, d->n_api_uids, uc->uid)) return 1;
    if (id_listed(d->api_gids, d->n_api_gids, uc->gid)) return 1;
    return d->n_api_gids && proc_groups_allowed(d, uc->pid);
}

/* Accepts one caller: its fd (non-blocking, close-on-exec) and credentials; -errno when the
 * accept or SO_PEERCRED failed (nothing to close). */
static int accept_caller(uv_stream_t *server, int *fd, struct ucred *uc)
{
    uv_pipe_t *p = malloc(sizeof(*p));
    if (!p) return -ENOMEM;
    int rc = uv_pipe_init(server->loop, p, 0);
    if (rc) {
        free(p);
        return rc;
    }
    /* libuv holds the accepted socket: take it through a pipe handle, keep a dup of its fd */
    uv_os_fd_t ufd = -1;
    rc = uv_accept(server, (uv_stream_t *)p);
    if (!rc) rc = uv_fileno((uv_handle_t *)p, &ufd);
    socklen_t len = sizeof(*uc);
    if (!rc && getsockopt(ufd, SOL_SOCKET, SO_PEERCRED, uc, &len) != 0) rc = -errno;
    if (!rc && (*fd = fcntl(ufd, F_DUPFD_CLOEXEC, 3)) < 0) rc = -errno;
    uv_close((uv_handle_t *)p, (uv_close_cb)free);
    return rc;
}

static void on_connection(uv_stream_t *server, int status)
{
    peer_daemon *d = server->data;
    if (status < 0 || d->stopping) return;
    int fd = -1;
    struct ucred uc;
    int rc = accept_caller(server, &fd, &uc);
    if (rc) {
        cf_warn("local API: cannot accept a caller: %s", uv_strerror(rc));
        return;
    }
    struct lconn *lc = calloc(1, sizeof(*lc));
    if (!lc) {
        close(fd);
        return;
    }
    lc->d = d;
    lc->peer_mp = PROTO_MAX_PAYLOAD;
    lc->accepted_ms = pd_now(d);
    lc->refused = !caller_allowed(d, &uc);
    proto_conn_opts co = {.idle_timeout_ms = d->o.timing.idle_timeout_ms,
                          .high_watermark = 2u << 20,
                          .max_payload = 4096,
                          .max_body = PROTO_PRE_HELLO_MAX_BODY};
    proto_conn_cbs cbs = {.on_frame = on_frame, .on_drain = on_drain, .on_close = on_close};
    if (proto_conn_open(d->loop, fd, &co, &cbs, lc, &lc->c)) { /* fd closed by it */
        free(lc);
        return;
    }
    lc->next = d->lconns;
    d->lconns = lc;
    d->n_lconns++;
    if (d->n_lconns > d->o.local_max_conns) {
        send_error(lc, PROTO_E_BUSY, 0, NULL, "too many local connections");
        proto_conn_close_after_flush(lc->c, -EBUSY, "too many connections");
        return;
    }
    if (lc->refused) {
        /* before any other work: nothing is read, one ERROR is queued; the caller closes
         * after reading it, else the tick closes the connection after REFUSED_LINGER (closing
         * at once would make its HELLO write fail with EPIPE before it reads why) */
        d->m.local_callers_refused++;
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "uid %u (gid %u) may not use this daemon's local API "
                 "(allowed: root, uid %u, api_allow_uids, api_allow_gids)",
                 (unsigned)uc.uid, (unsigned)uc.gid, (unsigned)geteuid());
        uint64_t now = pd_now(d);
        if (now - d->api_refused_log_ms >= 1000 || !d->api_refused_log_ms) {
            d->api_refused_log_ms = now;
            cf_warn("local API: refused pid %d: %s", (int)uc.pid, msg);
        }
        proto_conn_pause_read(lc->c);
        send_error(lc, PROTO_E_AUTH, 0, NULL, msg);
        return;
    }
}

/* Parses a list of uids or user names (group ids or names when groups), comma or space
 * separated, into ids. 0 or -EINVAL naming the bad entry. */
static int parse_ids(const char *key, const char *list, int groups, uint32_t *ids, size_t *n,
                     cf_err *err)
{
    *n = 0;
    size_t l;
    for (const char *p, *cur = list; (p = cf_config_list_next(&cur, &l));) {
        char name[256];
        if (l >= sizeof(name)) return cf_err_set(err, -EINVAL, "%s: entry too long", key);
        memcpy(name, p, l);
        name[l] = 0;
        char *end;
        unsigned long v = strtoul(name, &end, 10);
        if (*end || name[0] == '-') {
            if (groups) {
                struct group *g = getgrnam(name);
                if (!g) return cf_err_set(err, -EINVAL, "%s: no group '%s'", key, name);
                v = g->gr_gid;
            } else {
                struct passwd *pw = getpwnam(name);
                if (!pw) return cf_err_set(err, -EINVAL, "%s: no user '%s'", key, name);
                v = pw->pw_uid;
            }
        } else if (v > UINT32_MAX - 1) {
            return cf_err_set(err, -EINVAL, "%s: %s is not an id", key, name);
        }
        if (*n >= PEER_API_ALLOW_MAX)
            return cf_err_set(err, -EINVAL, "%s: at most %d entries", key, PEER_API_ALLOW_MAX);
        ids[(*n)++] = (uint32_t)v;
    }
    return 0;
}

static int mkdir_parent(const char *path)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = 0;
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(dir, 0755);
        *p = '/';
    }
    if (mkdir(dir, 0755) && errno != EEXIST) return -errno;
    return 0;
}

/* Connections that never complete HELLO (slowloris) are closed; reads waiting long for
 * verified bytes get a keepalive (an empty LOCAL_DATA at their position, not the last). */
void local_api_tick(peer_daemon *d)
{
    uint64_t now = pd_now(d);
    for (struct lconn *lc = d->lconns; lc; lc = lc->next) {
        if (lc->closed) continue;
        /* reads that found no room for their access check ask again (each may end) */
        struct lauth *next;
        for (struct lauth *a = lc->auths; a; a = next) {
            next = a->next;
            if (a->busy_since_ms && !a->w.waiting) lauth_step(a);
        }
        if (!lc->hello_done) {
            if (lc->refused && now - lc->accepted_ms > REFUSED_LINGER)
                proto_conn_close(lc->c, -EACCES, "caller not allowed");
            else if (now - lc->accepted_ms > HELLO_TIMEOUT)
                proto_conn_close(lc->c, -ETIMEDOUT, "no HELLO in time");
            continue;
        }
        for (struct lread *r = lc->reads; r && !lc->closed; r = r->next) {
            if (r->prefetch || now - r->sent_ms < KEEPALIVE_MS || proto_conn_congested(lc->c))
                continue;
            proto_msg m = {.type = PROTO_MSG_LOCAL_DATA};
            m.u.local_data.req_id = r->req_id;
            m.u.local_data.offset = r->pos;
            send_msg(lc, &m);
            r->sent_ms = now;
        }
    }
}

int local_api_start(peer_daemon *d, cf_err *err)
{
    const char *path = d->o.api_socket;
    int rc = mkdir_parent(path);
    if (rc) return cf_err_set(err, rc, "api socket %s: cannot create its directory", path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return cf_err_set(err, -EEXIST, "api socket %s exists and is not a socket", path);
        unlink(path); /* stale socket of a previous run (the cache lock proves we are alone) */
    }
    uv_pipe_init(d->loop, &d->api_listen, 0);
    d->api_listen.data = d;
    rc = uv_pipe_bind(&d->api_listen, path);
    if (!rc) rc = uv_listen((uv_stream_t *)&d->api_listen, 64, on_connection);
    if (rc) {
        uv_close((uv_handle_t *)&d->api_listen, NULL);
        return cf_err_set(err, rc, "api socket %s: %s", path, uv_strerror(rc));
    }
    chmod(path, 0660);
    d->api_listening = 1;
    _Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t),
                   "ids are 32-bit");
    rc = parse_ids("api_allow_uids", d->o.api_allow_uids, 0, (uint32_t *)d->api_uids,
                   &d->n_api_uids, err);
    if (!rc && d->o.api_allow_gids)
        rc = parse_ids("api_allow_gids", d->o.api_allow_gids, 1, (uint32_t *)d->api_gids,
                       &d->n_api_gids, err);
    else if (!rc && lstat(path, &st) == 0) { /* default: the socket's group (mode 0660) */
        d->api_gids[0] = st.st_gid;
        d->n_api_gids = 1;
    }
    return rc;
}

void local_api_stop(peer_daemon *d)
{
    if (d->api_listening) {
        uv_close((uv_handle_t *)&d->api_listen, NULL);
        d->api_listening = 0;
        unlink(d->o.api_socket);
    }
    for (struct lconn *lc = d->lconns; lc; lc = lc->next) {
        send_error(lc, PROTO_E_SHUTDOWN, 0, NULL, "daemon is shutting down");
        proto_conn_close_after_flush(lc->c, 0, "shutting down");
    }
}
