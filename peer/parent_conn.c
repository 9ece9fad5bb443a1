/* Connections to parents' upload servers, a piece source: one per parent address, shared by
 * every task that downloads from it. Pieces are requested by number (PIECE_REQUEST), several in
 * flight per connection, each with its own deadline (piece_timeout); AVAIL_QUERY with subscribe
 * keeps the requester's view of the parent's bitmap current. Every reply is matched to an
 * outstanding request id; anything else is dropped. Results go to the registered
 * pconn_handler (the tasks), never to a task by name. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/log.h"
#include "daemon_internal.h"
#include "proto/handshake.h"

static void pconn_unlink(struct pconn *pc)
{
    peer_daemon *d = pc->d;
    for (struct pconn **pp = &d->pconns; *pp; pp = &(*pp)->next)
        if (*pp == pc) {
            *pp = pc->next;
            break;
        }
    pc->next = NULL;
    d->pconn_h->on_closed(d, pc); /* requesters must not use it any more */
}

static struct preq *take_req(struct pconn *pc, uint64_t req_id)
{
    for (struct preq **pp = &pc->reqs; *pp; pp = &(*pp)->next) {
        struct preq *r = *pp;
        if (r->req_id == req_id) {
            *pp = r->next;
            pc->n_inflight--;
            return r;
        }
    }
    return NULL;
}

static void on_frame(proto_conn *c, const proto_frame_header *hdr, const uint8_t *body,
                     const uint8_t *payload)
{
    struct pconn *pc = proto_conn_data(c);
    peer_daemon *d = pc->d;
    proto_msg m;
    cf_err err = {0};
    int rc = proto_msg_decode(hdr->type, body, hdr->body_len, hdr->payload_len, &m, &err);
    if (rc) {
        d->m.bad_frames++;
        cf_warn("parent %s: bad %s frame: %s", pc->addr, proto_msg_type_name(hdr->type),
                cf_err_str(&err, rc));
        proto_conn_close(c, -EBADMSG, "bad frame from parent");
        return;
    }
    if (!pc->ready) {
        proto_hello ours;
        proto_hello_init(&ours, d->host_id, PROTO_ROLE_PEER, PROTO_CAP_AVAIL_PUSH, 0);
        uint32_t ver, pmax;
        rc = m.type == PROTO_MSG_HELLO ? proto_handshake_check(&ours, &m.u.hello, &ver, &pmax, &err)
                                       : cf_err_set(&err, -EPROTO, "parent answered %s to HELLO",
                                                    proto_msg_type_name(m.type));
        proto_msg_free(&m);
        if (rc) {
            cf_warn("parent %s: %s", pc->addr, cf_err_str(&err, rc));
            proto_conn_close(c, rc, "handshake failed");
            return;
        }
        proto_conn_set_peer_max_payload(c, pmax);
        pc->ready = 1;
        return;
    }
    const struct pconn_handler *h = d->pconn_h;
    struct preq *r;
    switch (m.type) {
    case PROTO_MSG_PIECE_DATA:
        r = take_req(pc, m.u.piece_data.req_id);
        if (!r) break; /* late answer to a timed-out request */
        if (r->piece != m.u.piece_data.piece || strcmp(r->task_id, m.u.piece_data.task_id) != 0)
            /* answers something we did not ask: treat as bad bytes from this parent */
            h->on_failed(r->owner, r->tp, r->piece, PROTO_E_MISMATCH);
        else
            h->on_piece(r->owner, r->tp, r->piece, payload, hdr->payload_len,
                        proto_conn_take_frame(c));
        free(r);
        break;
    case PROTO_MSG_ERROR:
        r = m.u.error.req_id ? take_req(pc, m.u.error.req_id) : NULL;
        if (r) {
            h->on_failed(r->owner, r->tp, r->piece, (int)m.u.error.code);
            free(r);
        } else {
            cf_debug("parent %s: error %u: %s", pc->addr, m.u.error.code, m.u.error.message);
            /* an answer to ACCESS or AVAIL_QUERY (a private blob): the task decides */
            if (m.u.error.task_id[0])
                h->on_task_error(d, pc, m.u.error.task_id, m.u.error.req_id, (int)m.u.error.code,
                                 m.u.error.message);
        }
        break;
    case PROTO_MSG_ACCESS_OK:
        h->on_access_ok(d, pc, m.u.access_ok.task_id, m.u.access_ok.req_id);
        break;
    case PROTO_MSG_AVAIL:
        h->on_avail(d, pc, m.u.avail.task_id, m.u.avail.piece_count, m.u.avail.bits,
                    m.u.avail.bits_len, NULL, 0);
        break;
    case PROTO_MSG_AVAIL_UPDATE:
        h->on_avail(d, pc, m.u.avail_update.task_id, 0, NULL, 0, m.u.avail_update.runs,
                    m.u.avail_update.n_runs);
        break;
    default:
        break;
    }
    proto_msg_free(&m);
}

static void on_close(proto_conn *c, int status, const char *reason)
{
    struct pconn *pc = proto_conn_data(c);
    peer_daemon *d = pc->d;
    pconn_unlink(pc);
    if (!d->stopping)
        cf_info("parent %s (%s): connection closed: %s", pc->addr, pc->host_id, reason);
    struct preq *r = pc->reqs;
    pc->reqs = NULL;
    while (r) {
        struct preq *next = r->next;
        if (!d->stopping)
            d->pconn_h->on_failed(r->owner, r->tp, r->piece, status ? status : -EPIPE);
        free(r);
        r = next;
    }
    free(pc);
}

/* Over TLS: the parent must prove the host id the scheduler gave for it (no one else can stand in
 * at its address). Plain conns: nothing to check. */
static void on_connect(proto_conn *c)
{
    struct pconn *pc = proto_conn_data(c);
    const char *id = proto_conn_peer_identity(c);
    if (!id || strcmp(id, pc->host_id) == 0) return;
    char msg[PROTO_MAX_ID_LEN * 2 + 64];
    snprintf(msg, sizeof(msg), "certificate identity '%s' is not the expected host '%s'", id,
             pc->host_id);
    cf_warn("parent %s: %s", pc->addr, msg);
    proto_conn_close(c, -EPERM, msg);
}

struct pconn *pconn_get(peer_daemon *d, const char *addr, const char *host_id)
{
    if (d->stopping) return NULL;
    for (struct pconn *pc = d->pconns; pc; pc = pc->next)
        if (strcmp(pc->addr, addr) == 0) return pc;
    struct sockaddr_storage ss;
    if (proto_addr_parse(addr, &ss)) return NULL;
    struct pconn *pc = calloc(1, sizeof(*pc));
    if (!pc) return NULL;
    pc->d = d;
    snprintf(pc->addr, sizeof(pc->addr), "%s", addr);
    snprintf(pc->host_id, sizeof(pc->host_id), "%s", host_id);
    /* pieces we asked for arrive in pooled buffers the task keeps (no copy) */
    proto_conn_opts co = {
        .idle_timeout_ms = d->o.timing.idle_timeout_ms, .tls = d->tls, .pooled_frames = true};
    proto_conn_cbs cbs = {.on_frame = on_frame, .on_close = on_close, .on_connect = on_connect};
    int rc = proto_conn_connect_tcp(d->loop, (struct sockaddr *)&ss, &co, &cbs, pc, &pc->c);
    if (rc) {
        cf_info("parent %s: connect: %s", addr, uv_strerror(rc));
        free(pc);
        return NULL;
    }
    /* HELLO first; later requests queue behind it and leave once connected */
    proto_msg m = {.type = PROTO_MSG_HELLO};
    proto_hello_init(&m.u.hello, d->host_id, PROTO_ROLE_PEER, PROTO_CAP_AVAIL_PUSH, 0);
    proto_conn_send(pc->c, &m, NULL, 0, NULL);
    pc->next = d->pconns;
    d->pconns = pc;
    return pc;
}

void pconn_init(peer_daemon *d, const struct pconn_handler *h)
{
    d->pconn_h = h;
}

int pconn_request(struct pconn *pc, void *owner, const char *task_id, int tp, uint32_t piece)
{
    peer_daemon *d = pc->d;
    struct preq *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->req_id = d->next_req_id++;
    r->owner = owner;
    snprintf(r->task_id, sizeof(r->task_id), "%s", task_id);
    r->piece = piece;
    r->tp = tp;
    /* the parent serves a connection's requests one after the other: each gets a full
     * piece_timeout of its own after those queued before it */
    r->deadline_ms = pd_now(d) + (uint64_t)d->o.piece_timeout_ms * (uint64_t)(pc->n_inflight + 1);
    proto_msg m = {.type = PROTO_MSG_PIECE_REQUEST};
    m.u.piece_request.req_id = r->req_id;
    m.u.piece_request.task_id = r->task_id;
    m.u.piece_request.piece = piece;
    int rc = proto_conn_send(pc->c, &m, NULL, 0, NULL);
    if (rc) {
        free(r);
        return rc;
    }
    r->next = pc->reqs;
    pc->reqs = r;
    pc->n_inflight++;
    return 0;
}

void pconn_subscribe(struct pconn *pc, const char *task_id)
{
    proto_msg m = {.type = PROTO_MSG_AVAIL_QUERY};
    m.u.avail_query.task_id = task_id;
    m.u.avail_query.subscribe = true;
    proto_conn_send(pc->c, &m, NULL, 0, NULL);
}

int pconn_send_access(struct pconn *pc, const char *task_id, uint64_t req_id, const char *repo_ref,
                      const char *token)
{
    proto_msg m = {.type = PROTO_MSG_ACCESS};
    m.u.access.req_id = req_id;
    m.u.access.task_id = task_id;
    m.u.access.repo_ref = repo_ref;
    m.u.access.token = token;
    return proto_conn_send(pc->c, &m, NULL, 0, NULL);
}

void pconn_forget_owner(peer_daemon *d, void *owner)
{
    for (struct pconn *pc = d->pconns; pc; pc = pc->next) {
        for (struct preq **pp = &pc->reqs; *pp;) {
            struct preq *r = *pp;
            if (r->owner == owner) {
                *pp = r->next;
                pc->n_inflight--;
                free(r);
            } else {
                pp = &r->next;
            }
        }
    }
}

void pconn_check_timeouts(peer_daemon *d)
{
    uint64_t now = pd_now(d);
    for (struct pconn *pc = d->pconns; pc; pc = pc->next) {
        for (struct preq *r = pc->reqs; r; r = r->next) {
            if (r->deadline_ms > now) continue;
            /* a parent that stalls on a piece is broken for every request on this connection:
             * close it; on_close hands each request back (-ETIMEDOUT) to be fetched elsewhere */
            cf_warn("parent %s: piece %u of %s timed out", pc->addr, r->piece, r->task_id);
            d->m.parent_timeouts++;
            proto_conn_close(pc->c, -ETIMEDOUT, "piece request timed out");
            break;
        }
    }
}

void pconn_close_all(peer_daemon *d)
{
    for (struct pconn *pc = d->pconns; pc; pc = pc->next) proto_conn_close(pc->c, 0, "stopping");
}
