/* The upload server: serves whole pieces the cache holds to other peers (docs/peer.md,
 * "Uploading"). Mesh protocol over TCP (proto_conn; the transport is a proto_conn, so TLS can
 * wrap it later without touching this file's logic).
 *
 * Limits: upload_max_connections connections; upload_slots pieces being sent at once across all
 * connections (a request without a free slot is answered BUSY at once, so the child tries
 * another parent); upload_bandwidth through a token bucket. Each connection has at most one
 * piece in its write queue (high watermark 1 byte: on_drain = the piece left), so a slow reader
 * holds one slot and no memory: piece bytes go from the data file with sendfile(2). Its further
 * requests wait in a short FIFO and then in the socket (reading pauses). A piece not drained
 * within upload_piece_timeout, or a connection without HELLO after 10 s, is closed. A front end:
 * it learns of new pieces as a piece listener of the tasks, and reads pieces from the cache.
 *
 * Private blobs (docs/security.md): a blob's bits (AVAIL) and pieces go to a connection only
 * once it is granted that task: the blob is public (an anonymous HEAD at its recorded registry
 * succeeds), the requester's proven host id is in private_peers, or it showed a pull token the
 * registry accepts for that blob (ACCESS). Else ERROR AUTH, never data. While a check runs the
 * message that needs it is held and reading paused (one check per connection at a time); the
 * registry's answer is kept in the daemon's verdict table (access_check.h). */
#include <errno.h>
#include <fnmatch.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access_check.h"
#include "cf/log.h"
#include "daemon_internal.h"

#define MAX_PENDING   8
#define MAX_SUBS      64
#define HELLO_TIMEOUT 10000
#define MAX_GRANTS    64
#define GRANT_MS      60000 /* a grant is checked again after this (the verdict table's 60 s) */

/* A task this connection may read. */
struct grant {
    char task_id[PROTO_TASK_ID_LEN + 1];
    uint64_t until_ms;
};

struct upreq {
    uint64_t req_id;
    uint32_t piece;
    uint8_t digest[32];
    char task_id[PROTO_TASK_ID_LEN + 1];
};

struct upconn {
    struct upconn *next;
    peer_daemon *d;
    proto_conn *c;
    int hello_done;
    int pumping;
    int piece_in_queue; /* holds an upload slot */
    int read_paused;
    uint64_t accepted_ms, piece_sent_ms;
    struct upreq q[MAX_PENDING];
    int q_head, q_len;
    char subs[MAX_SUBS][PROTO_TASK_ID_LEN + 1];
    int n_subs;
    char host_id[PROTO_MAX_ID_LEN + 1]; /* from HELLO: proven by the certificate over TLS */
    int trusted;                        /* host_id is in private_peers */
    struct grant grants[MAX_GRANTS];
    int n_grants;
    /* a message waiting for an access verdict (reading paused meanwhile) */
    proto_msg held;
    int holding, auth_paused;
    peer_access_wait wait;
};

static int send_msg(struct upconn *uc, const proto_msg *m)
{
    return proto_conn_send(uc->c, m, NULL, 0, NULL);
}

static void send_error(struct upconn *uc, uint32_t code, uint64_t req_id, const char *task_id,
                       const char *msg)
{
    proto_conn_send_error(uc->c, code, req_id, task_id, msg);
}

static void up_pump(struct upconn *uc);

static void on_bucket_timer(uv_timer_t *tm)
{
    peer_daemon *d = tm->data;
    d->bucket_timer_on = 0;
    for (struct upconn *uc = d->upconns; uc; uc = uc->next) up_pump(uc);
}

#ifdef CHUNKFLY_FAULTS
/* Test-only (CHUNKFLY_FAULTS builds, CHUNKFLY_FAULT_CORRUPT_UPLOAD=1): serve the piece with
 * flipped bytes through a read+modify+send path. The pread runs on the loop: this code never
 * exists in production builds. */
static int send_corrupt(struct upconn *uc, const proto_msg *m, const peer_piece_lease *l)
{
    uint8_t *buf = malloc(l->length ? l->length : 1);
    if (!buf) return -ENOMEM;
    ssize_t n = pread(l->fd, buf, l->length, (off_t)l->offset);
    if (n != (ssize_t)l->length) {
        free(buf);
        return -EIO;
    }
    for (uint32_t i = 0; i < l->length; i += 4096) buf[i] ^= 0x5a;
    int rc = proto_conn_send(uc->c, m, buf, l->length, NULL);
    free(buf);
    return rc;
}
#endif

static void up_pump(struct upconn *uc)
{
    peer_daemon *d = uc->d;
    if (uc->pumping || !uc->hello_done || d->stopping) return;
    uc->pumping = 1;
    while (uc->q_len && !uc->piece_in_queue) {
        struct upreq *r = &uc->q[uc->q_head];
        peer_piece_lease lease;
        cf_err err = {0};
        int rc = peer_store_lease_piece(d->store, r->digest, r->piece, &lease, &err);
        if (rc) {
            d->m.upload_refused++;
            send_error(uc,
                       rc == -ENOENT   ? PROTO_E_UNKNOWN_TASK
                       : rc == -EINVAL ? PROTO_E_RANGE
                                       : PROTO_E_NOT_FOUND,
                       r->req_id, r->task_id, rc == -ENODATA ? "piece not held" : "not held");
        } else if (d->slots_used >= d->o.upload_slots) {
            peer_store_lease_release(d->store, &lease);
            d->m.upload_busy++;
            send_error(uc, PROTO_E_BUSY, r->req_id, r->task_id, "no free upload slot");
        } else if (!peer_token_bucket_take(&d->bucket, lease.length, pd_now(d))) {
            peer_store_lease_release(d->store, &lease);
            if (!d->bucket_timer_on) {
                d->bucket_timer_on = 1;
                uv_timer_start(&d->bucket_timer, on_bucket_timer,
                               peer_token_bucket_wait_ms(&d->bucket, pd_now(d)), 0);
            }
            break; /* keep the request; retried when tokens are back */
        } else {
            proto_msg m = {.type = PROTO_MSG_PIECE_DATA};
            m.u.piece_data.req_id = r->req_id;
            m.u.piece_data.task_id = r->task_id;
            m.u.piece_data.piece = r->piece;
            /* account first: the queue may drain (on_drain) inside the send call */
            uc->piece_in_queue = 1;
            d->slots_used++;
            uc->piece_sent_ms = pd_now(d);
#ifdef CHUNKFLY_FAULTS
            if (d->faults_corrupt)
                rc = send_corrupt(uc, &m, &lease);
            else
#endif
                rc = proto_conn_send_file(uc->c, &m, lease.fd, lease.offset, lease.length, &err);
            peer_store_lease_release(d->store, &lease); /* the conn holds its own dup of fd */
            if (rc) {
                if (uc->piece_in_queue) {
                    uc->piece_in_queue = 0;
                    d->slots_used--;
                }
                cf_warn("upload to %s: %s", proto_conn_peer_name(uc->c), cf_err_str(&err, rc));
                proto_conn_close(uc->c, rc, "cannot queue piece");
                break;
            }
            d->m.pieces_served++;
            d->m.bytes_served_peers += lease.length;
        }
        uc->q_head = (uc->q_head + 1) % MAX_PENDING;
        uc->q_len--;
    }
    if (uc->read_paused && !uc->holding && uc->q_len < MAX_PENDING / 2 &&
        proto_conn_resume_read(uc->c) == 0)
        uc->read_paused = 0;
    uc->pumping = 0;
}

static void on_drain(proto_conn *c)
{
    struct upconn *uc = proto_conn_data(c);
    if (uc->piece_in_queue) {
        uc->piece_in_queue = 0;
        uc->d->slots_used--;
    }
    up_pump(uc);
}

static void handle_avail_query(struct upconn *uc, const proto_avail_query *q)
{
    peer_daemon *d = uc->d;
    uint8_t digest[32];
    proto_task_id_to_digest(q->task_id, digest);
    uint32_t pc = 0;
    int rc = peer_store_bitmap(d->store, digest, NULL, 0, &pc);
    if (rc == -ENOENT) {
        send_error(uc, PROTO_E_UNKNOWN_TASK, 0, q->task_id, "blob not held");
        return;
    }
    size_t nb = proto_bitmap_nbytes(pc);
    uint8_t *bits = calloc(1, nb ? nb : 1);
    if (!bits) return;
    rc = peer_store_bitmap(d->store, digest, bits, nb ? nb : 1, &pc);
    if (rc == 0) {
        proto_msg m = {.type = PROTO_MSG_AVAIL};
        m.u.avail.task_id = q->task_id;
        m.u.avail.piece_count = pc;
        m.u.avail.bits = bits;
        m.u.avail.bits_len = nb;
        send_msg(uc, &m);
    }
    free(bits);
    if (q->subscribe) {
        for (int i = 0; i < uc->n_subs; i++)
            if (strcmp(uc->subs[i], q->task_id) == 0) return;
        if (uc->n_subs < MAX_SUBS)
            snprintf(uc->subs[uc->n_subs++], PROTO_TASK_ID_LEN + 1, "%s", q->task_id);
    }
}

/* piece_listener: a piece stored by any task goes to the connections subscribed to its task */
static void on_piece_stored(struct piece_listener *l, const char *task_id, uint32_t piece)
{
    peer_daemon *d = (peer_daemon *)((char *)l - offsetof(peer_daemon, up_listener));
    for (struct upconn *uc = d->upconns; uc; uc = uc->next) {
        for (int i = 0; i < uc->n_subs; i++) {
            if (strcmp(uc->subs[i], task_id) != 0) continue;
            /* a subscriber that stops reading must not make us queue updates without bound */
            if (proto_conn_queued(uc->c) >
                (1u << 20) + (uc->piece_in_queue ? PROTO_MAX_PAYLOAD : 0))
                break;
            proto_piece_run run = {piece, 1};
            proto_msg m = {.type = PROTO_MSG_AVAIL_UPDATE};
            m.u.avail_update.task_id = task_id;
            m.u.avail_update.runs = &run;
            m.u.avail_update.n_runs = 1;
            send_msg(uc, &m);
            break;
        }
    }
}

/* ---- private blobs ---- */

static struct grant *grant_find(struct upconn *uc, const char *task_id, uint64_t now)
{
    for (int i = 0; i < uc->n_grants; i++) {
        struct grant *g = &uc->grants[i];
        if (strcmp(g->task_id, task_id) != 0) continue;
        if (now < g->until_ms) return g;
        *g = uc->grants[--uc->n_grants]; /* expired: checked again */
        return NULL;
    }
    return NULL;
}

static void grant_add(struct upconn *uc, const char *task_id, uint64_t now)
{
    if (grant_find(uc, task_id, now)) return;
    struct grant *g = NULL;
    if (uc->n_grants < MAX_GRANTS) {
        g = &uc->grants[uc->n_grants++];
    } else { /* full: the one that expires first goes (it is only checked again) */
        g = &uc->grants[0];
        for (int i = 1; i < MAX_GRANTS; i++)
            if (uc->grants[i].until_ms < g->until_ms) g = &uc->grants[i];
    }
    snprintf(g->task_id, sizeof(g->task_id), "%s", task_id);
    g->until_ms = now + GRANT_MS;
}

/* private_peers: comma separated globs over host ids */
static int in_trust_group(const char *list, const char *host_id)
{
    if (!list || !host_id[0]) return 0;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, ",");
        while (n && p[n - 1] == ' ') n--;
        char glob[PROTO_MAX_ID_LEN + 1];
        if (n && n < sizeof(glob)) {
            memcpy(glob, p, n);
            glob[n] = 0;
            if (fnmatch(glob, host_id, 0) == 0) return 1;
        }
        p += strcspn(p, ",");
    }
    return 0;
}

static void refuse(struct upconn *uc, uint64_t req_id, const char *task_id, const char *msg)
{
    uc->d->m.upload_auth_refused++;
    cf_debug("upload %s (%s): %s: %s", proto_conn_peer_name(uc->c), uc->host_id, task_id, msg);
    send_error(uc, PROTO_E_AUTH, req_id, task_id, msg);
}

static void on_verdict(peer_access_wait *w, const peer_access_verdict *v);

/* Holds m (now the connection's) until w's verdict; reading pauses. */
static void hold(struct upconn *uc, proto_msg *m)
{
    uc->held = *m;
    memset(m, 0, sizeof(*m)); /* the caller's proto_msg_free is a no-op now */
    uc->holding = 1;
    if (!uc->read_paused) {
        proto_conn_pause_read(uc->c);
        uc->read_paused = 1;
    }
}

enum gate { GATE_OK, GATE_DONE }; /* serve now; answered or held */

/* For AVAIL_QUERY and PIECE_REQUEST of task_id: may this connection see the blob? */
static enum gate gate(struct upconn *uc, proto_msg *m, const char *task_id, uint64_t req_id)
{
    peer_daemon *d = uc->d;
    uint64_t now = pd_now(d);
    if (uc->trusted || grant_find(uc, task_id, now)) return GATE_OK;
    uint8_t digest[32];
    proto_task_id_to_digest(task_id, digest);
    peer_blob_info info;
    if (peer_store_blob_info(d->store, digest, &info) == -ENOENT)
        return GATE_OK; /* not held: answered "unknown task" as before, nothing leaks */
    if (!info.origin[0]) {
        refuse(uc, req_id, task_id, "private: no registry recorded for this blob");
        return GATE_DONE;
    }
    static const peer_access_cred anon = {.kind = PEER_ACCESS_ANON};
    peer_access_verdict v;
    uc->wait.done = on_verdict;
    int rc = peer_access_check(d, &anon, info.origin, task_id, &uc->wait, &v);
    if (rc == 0) {
        hold(uc, m);
        return GATE_DONE;
    }
    if (rc == 1 && v.state == PEER_ACCESS_OK) {
        grant_add(uc, task_id, now);
        return GATE_OK;
    }
    if (rc < 0)
        send_error(uc, PROTO_E_BUSY, req_id, task_id, "access checks busy, retry later");
    else
        refuse(uc, req_id, task_id, "private blob: send ACCESS with a pull token");
    return GATE_DONE;
}

static void handle_access(struct upconn *uc, proto_msg *m)
{
    peer_daemon *d = uc->d;
    const proto_access *a = &m->u.access;
    uint64_t now = pd_now(d);
    proto_msg ok = {.type = PROTO_MSG_ACCESS_OK};
    ok.u.access_ok.req_id = a->req_id;
    ok.u.access_ok.task_id = a->task_id;
    if (uc->trusted || grant_find(uc, a->task_id, now)) {
        send_msg(uc, &ok);
        return;
    }
    uint8_t digest[32];
    proto_task_id_to_digest(a->task_id, digest);
    peer_blob_info info;
    if (peer_store_blob_info(d->store, digest, &info) == -ENOENT) {
        send_error(uc, PROTO_E_UNKNOWN_TASK, a->req_id, a->task_id, "blob not held");
        return;
    }
    proto_image_ref rec, proof;
    int scheme;
    if (!info.origin[0] || origin_parse(info.origin, &rec, &scheme, NULL)) {
        refuse(uc, a->req_id, a->task_id, "private: no registry recorded for this blob");
        return;
    }
    /* The proof's registry must be the one this blob came from: a registry of the requester's
     * choosing could say yes to anything. The repository may differ (the registry answers for
     * that repository and this digest). */
    cf_err err = {0};
    if (proto_image_ref_parse(a->repo_ref, &proof, &err) || strchr(a->repo_ref, '@') ||
        strcmp(proof.registry, rec.registry) != 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "proof refused: this blob comes from registry %s, not '%.256s'",
                 rec.registry, a->repo_ref);
        refuse(uc, a->req_id, a->task_id, msg);
        return;
    }
    char origin[PROTO_MAX_ORIGIN_LEN + 1];
    snprintf(origin, sizeof(origin), "%s%s/%s",
             scheme == PROTO_REGISTRY_SCHEME_HTTP    ? "http://"
             : scheme == PROTO_REGISTRY_SCHEME_HTTPS ? "https://"
                                                     : "",
             rec.registry, proof.repo);
    peer_access_cred c = {.kind = PEER_ACCESS_BEARER, .secret = a->token};
    peer_access_verdict v;
    uc->wait.done = on_verdict;
    int rc = peer_access_check(d, &c, origin, a->task_id, &uc->wait, &v);
    if (rc == 0) {
        hold(uc, m);
        return;
    }
    if (rc == 1 && v.state == PEER_ACCESS_OK) {
        grant_add(uc, a->task_id, now);
        send_msg(uc, &ok);
        return;
    }
    if (rc < 0)
        send_error(uc, PROTO_E_BUSY, a->req_id, a->task_id, "access checks busy, retry later");
    else
        refuse(uc, a->req_id, a->task_id, "proof refused by the registry");
}

static void dispatch(struct upconn *uc, proto_msg *m)
{
    proto_conn *c = uc->c;
    switch (m->type) {
    case PROTO_MSG_PIECE_REQUEST: {
        if (uc->q_len == MAX_PENDING) { /* cannot happen while reading is paused; be safe */
            send_error(uc, PROTO_E_BUSY, m->u.piece_request.req_id, m->u.piece_request.task_id,
                       "too many requests");
            break;
        }
        if (gate(uc, m, m->u.piece_request.task_id, m->u.piece_request.req_id) != GATE_OK) break;
        struct upreq *r = &uc->q[(uc->q_head + uc->q_len) % MAX_PENDING];
        r->req_id = m->u.piece_request.req_id;
        r->piece = m->u.piece_request.piece;
        snprintf(r->task_id, sizeof(r->task_id), "%s", m->u.piece_request.task_id);
        proto_task_id_to_digest(r->task_id, r->digest);
        uc->q_len++;
        if (uc->q_len == MAX_PENDING && !uc->read_paused) {
            proto_conn_pause_read(c);
            uc->read_paused = 1;
        }
        up_pump(uc);
        break;
    }
    case PROTO_MSG_AVAIL_QUERY:
        if (gate(uc, m, m->u.avail_query.task_id, 0) != GATE_OK) break;
        handle_avail_query(uc, &m->u.avail_query);
        break;
    case PROTO_MSG_ACCESS:
        handle_access(uc, m);
        break;
    case PROTO_MSG_LEAVE_TASK:
        for (int i = 0; i < uc->n_subs; i++)
            if (strcmp(uc->subs[i], m->u.leave_task.task_id) == 0) {
                memcpy(uc->subs[i], uc->subs[--uc->n_subs], sizeof(uc->subs[i]));
                break;
            }
        break;
    default:
        send_error(uc, PROTO_E_UNEXPECTED, 0, NULL, "message not handled by a piece server");
        break;
    }
}

/* The verdict for the held message: a grant (then the message is handled as if it came now)
 * or its refusal; then reading goes on. */
static void on_verdict(peer_access_wait *w, const peer_access_verdict *v)
{
    struct upconn *uc = (struct upconn *)((char *)w - offsetof(struct upconn, wait));
    proto_msg m = uc->held;
    memset(&uc->held, 0, sizeof(uc->held));
    uc->holding = 0;
    const char *task_id = m.type == PROTO_MSG_ACCESS          ? m.u.access.task_id
                          : m.type == PROTO_MSG_PIECE_REQUEST ? m.u.piece_request.task_id
                                                              : m.u.avail_query.task_id;
    uint64_t req_id = m.type == PROTO_MSG_ACCESS          ? m.u.access.req_id
                      : m.type == PROTO_MSG_PIECE_REQUEST ? m.u.piece_request.req_id
                                                          : 0;
    if (v->state == PEER_ACCESS_OK) {
        grant_add(uc, task_id, pd_now(uc->d));
        dispatch(uc, &m);
    } else if (v->state == PEER_ACCESS_REFUSED) {
        refuse(uc, req_id, task_id,
               m.type == PROTO_MSG_ACCESS ? "proof refused by the registry"
                                          : "private blob: send ACCESS with a pull token");
    } else { /* could not tell: private by default; the message says why */
        char msg[PROTO_MAX_TEXT_LEN];
        snprintf(msg, sizeof(msg), "private (access not verified: %s)", v->msg);
        refuse(uc, req_id, task_id, msg);
    }
    proto_msg_free(&m);
    if (uc->read_paused && !uc->holding && uc->q_len < MAX_PENDING / 2 &&
        proto_conn_resume_read(uc->c) == 0)
        uc->read_paused = 0;
}

static void on_frame(proto_conn *c, const proto_frame_header *h, const uint8_t *body,
                     const uint8_t *payload)
{
    (void)payload;
    struct upconn *uc = proto_conn_data(c);
    peer_daemon *d = uc->d;
    proto_msg m;
    cf_err err = {0};
    int rc = proto_msg_decode(h->type, body, h->body_len, h->payload_len, &m, &err);
    if (rc) {
        d->m.bad_frames++;
        cf_debug("upload %s: bad %s frame: %s", proto_conn_peer_name(c),
                 proto_msg_type_name(h->type), cf_err_str(&err, rc));
        send_error(uc, rc == -ENOTSUP ? PROTO_E_UNEXPECTED : PROTO_E_BAD_MESSAGE, 0, NULL,
                   cf_err_str(&err, rc));
        proto_conn_close_after_flush(c, -EBADMSG, "bad frame");
        return;
    }
    if (!uc->hello_done) {
        uint32_t pmax;
        if (pd_serve_hello(d, c, &m, PROTO_CAP_AVAIL_PUSH, &pmax) == 0) {
            uc->hello_done = 1;
            proto_conn_set_max_body(c, 0);
            snprintf(uc->host_id, sizeof(uc->host_id), "%s", m.u.hello.node_id);
            uc->trusted = in_trust_group(d->o.private_peers, uc->host_id);
        }
        proto_msg_free(&m);
        return;
    }
    if (uc->holding) { /* reading is paused: frames already parsed wait in the conn */
        proto_msg_free(&m);
        send_error(uc, PROTO_E_BUSY, 0, NULL, "an access check is running");
        return;
    }
    dispatch(uc, &m);
    proto_msg_free(&m);
}

static void on_close(proto_conn *c, int status, const char *reason)
{
    struct upconn *uc = proto_conn_data(c);
    peer_daemon *d = uc->d;
    /* plaintext, no or foreign certificate, or a HELLO id the certificate does not prove */
    if (!uc->hello_done && proto_conn_is_tls(c) &&
        (status == -EACCES || status == -EPROTO || status == -EPERM))
        d->m.tls_refused++;
    if (uc->piece_in_queue) d->slots_used--;
    peer_access_cancel(d, &uc->wait);
    if (uc->holding) proto_msg_free(&uc->held);
    for (struct upconn **pp = &d->upconns; *pp; pp = &(*pp)->next)
        if (*pp == uc) {
            *pp = uc->next;
            break;
        }
    d->n_upconns--;
    cf_debug("upload %s closed: %s", proto_conn_peer_name(c), reason);
    free(uc);
}

static void on_connection(uv_stream_t *server, int status)
{
    peer_daemon *d = server->data;
    if (status < 0 || d->stopping) return;
    struct upconn *uc = calloc(1, sizeof(*uc));
    if (!uc) return;
    uc->d = d;
    uc->accepted_ms = pd_now(d);
    /* high watermark 1: "congested" while a piece is queued, on_drain once it left */
    proto_conn_opts co = {.idle_timeout_ms = d->o.timing.idle_timeout_ms,
                          .high_watermark = 1,
                          .low_watermark = 0,
                          .max_queued = 32u << 20,
                          .max_payload = 4096,
                          .max_body = PROTO_PRE_HELLO_MAX_BODY,
                          .tls = d->tls};
    proto_conn_cbs cbs = {.on_frame = on_frame, .on_drain = on_drain, .on_close = on_close};
    int rc = proto_conn_accept(server, &co, &cbs, uc, &uc->c);
    if (rc) {
        free(uc);
        return;
    }
    uc->next = d->upconns;
    d->upconns = uc;
    d->n_upconns++;
    if (d->n_upconns > d->o.upload_max_conns) {
        d->m.upload_refused++;
        send_error(uc, PROTO_E_BUSY, 0, NULL, "too many connections");
        proto_conn_close_after_flush(uc->c, -EBUSY, "too many connections");
    }
}

void upload_tick(peer_daemon *d)
{
    uint64_t now = pd_now(d);
    for (struct upconn *uc = d->upconns; uc; uc = uc->next) {
        if (!uc->hello_done && now - uc->accepted_ms > HELLO_TIMEOUT)
            proto_conn_close(uc->c, -ETIMEDOUT, "no HELLO in time");
        else if (uc->piece_in_queue && now - uc->piece_sent_ms > d->o.upload_piece_timeout_ms)
            proto_conn_close(uc->c, -ETIMEDOUT, "reader too slow");
    }
}

int upload_server_start(peer_daemon *d, cf_err *err)
{
    if (d->o.private_peers && d->o.private_peers[0] && !d->tls)
        cf_warn("private_peers is set without mesh TLS: host ids are not proven, so any host "
                "that claims a listed id gets private blobs (configure tls_cert/tls_key/tls_ca)");
    d->up_listener.on_piece = on_piece_stored;
    tasks_listen_pieces(d, &d->up_listener);
    struct sockaddr_storage ss;
    if (proto_addr_parse(d->o.listen, &ss))
        return cf_err_set(err, -EINVAL, "--listen '%s': expected numeric ip:port", d->o.listen);
    uv_tcp_init(d->loop, &d->up_listen);
    d->up_listen.data = d;
    int rc = uv_tcp_bind(&d->up_listen, (struct sockaddr *)&ss, 0);
    if (!rc) rc = uv_listen((uv_stream_t *)&d->up_listen, 256, on_connection);
    if (rc) {
        uv_close((uv_handle_t *)&d->up_listen, NULL);
        d->up_listen.data = NULL;
        return cf_err_set(err, rc, "upload server %s: %s", d->o.listen, uv_strerror(rc));
    }
    return 0;
}

void upload_server_stop(peer_daemon *d)
{
    if (d->up_listen.data && !uv_is_closing((uv_handle_t *)&d->up_listen))
        uv_close((uv_handle_t *)&d->up_listen, NULL);
    for (struct upconn *uc = d->upconns; uc; uc = uc->next)
        proto_conn_close(uc->c, 0, "shutting down");
}
