/* Mesh listener: proto_conn connections from peer daemons <-> the scheduling core. */
#include "sched/sched_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/log.h"
#include "proto/conn.h"
#include "proto/handshake.h"
#include "proto/msg.h"
#include "proto/piece.h"

const uint32_t sched_lat_bounds_us[SCHED_LAT_BUCKETS - 1] = {50,   100,  250,   500,  1000,
                                                             2500, 5000, 10000, 50000};

struct sconn {
    proto_conn *c;
    sched_server *srv;
    struct sconn *prev, *next;
    sched_host *host;
    uint64_t accepted_ms;
    int hello_done;
};

struct sched_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listener_open, port;
    uv_timer_t tick;
    int tick_open;
    sched *core;
    struct sched_server_opts opts;
    char *node_id;
    proto_hello hello;
    struct sconn *conns;
    struct sched_server_stats st;
    int closing;
    void (*close_cb)(void *);
    void *close_arg;
    /* scratch for building answers */
    cf_buf bits;
    proto_piece_run *runs;
    size_t runs_cap;
};

void sched_server_opts_default(struct sched_server_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->node_id = "chunkfly-scheduler";
    sched_config_default(&o->core);
    proto_timing_defaults(&o->timing);
    o->tick_ms = 250;
    o->handshake_timeout_ms = 10000;
    o->max_connections = 65536;
    o->check_source = 1;
}

/* True when ip (numeric text) is the address the conn comes from. */
static int is_source(const proto_conn *c, const char *ip)
{
    char src[64];
    snprintf(src, sizeof(src), "%s", proto_conn_peer_name(c)); /* "ip:port" or "[ip6]:port" */
    char *p = src[0] == '[' ? strchr(src, ']') : strrchr(src, ':');
    if (!p) return 0;
    *p = 0;
    const char *s = src[0] == '[' ? src + 1 : src;
    unsigned char a[16], b[16];
    if (uv_inet_pton(AF_INET, s, a) == 0)
        return uv_inet_pton(AF_INET, ip, b) == 0 && !memcmp(a, b, 4);
    if (uv_inet_pton(AF_INET6, s, a) == 0)
        return uv_inet_pton(AF_INET6, ip, b) == 0 && !memcmp(a, b, 16);
    return 0;
}

static uint64_t now_ms(const sched_server *s)
{
    return uv_now(s->loop);
}

static int send_msg(struct sconn *sc, const proto_msg *m)
{
    cf_err err = {0};
    int rc = proto_conn_send(sc->c, m, NULL, 0, &err);
    if (rc == 0) {
        sc->srv->st.frames_out++;
        return 0;
    }
    sc->srv->st.send_failures++;
    if (rc == -ENOBUFS) {
        /* the peer does not read its answers: drop it rather than queue without bound */
        cf_warn("conn %s: send queue full, closing", proto_conn_peer_name(sc->c));
        proto_conn_close(sc->c, -ENOBUFS, "send queue full");
    } else if (rc != -ENOTCONN) {
        cf_warn("conn %s: cannot send %s: %s", proto_conn_peer_name(sc->c),
                proto_msg_type_name(m->type), cf_err_str(&err, rc));
    }
    return rc;
}

static void send_error(struct sconn *sc, uint32_t code, const char *task_id, const char *text,
                       int close)
{
    proto_msg m = {.type = PROTO_MSG_ERROR};
    m.u.error.code = code;
    m.u.error.message = text;
    m.u.error.task_id = task_id;
    send_msg(sc, &m);
    if (close) proto_conn_close_after_flush(sc->c, -EBADMSG, text);
}

/* ---- decisions from the core ---- */

static void on_decide(void *ctx, const struct sched_decision *d)
{
    sched_server *s = ctx;
    sched_host *h = sched_peer_host(d->peer);
    struct sconn *sc = sched_host_conn(h);
    if (!sc) return;
    sched_task *t = sched_peer_task(d->peer);
    const char *tid = sched_task_id(t);
    if (d->n_grant) {
        if (d->n_grant > s->runs_cap) {
            proto_piece_run *nr = realloc(s->runs, d->n_grant * sizeof(*nr));
            if (!nr) return;
            s->runs = nr;
            s->runs_cap = d->n_grant;
        }
        for (size_t i = 0; i < d->n_grant; i++) {
            s->runs[i].start = d->grant[i].start;
            s->runs[i].count = d->grant[i].count;
        }
        proto_msg m = {.type = PROTO_MSG_BACK_TO_SOURCE};
        m.u.back_to_source.task_id = tid;
        m.u.back_to_source.runs = s->runs;
        m.u.back_to_source.n_runs = d->n_grant;
        m.u.back_to_source.stall_ms = d->stall_ms;
        if (send_msg(sc, &m)) return;
    }
    if (d->n_parents) {
        uint32_t pc = sched_task_piece_count(t);
        size_t nb = proto_bitmap_nbytes(pc);
        cf_buf_reset(&s->bits);
        if (cf_buf_reserve(&s->bits, nb * d->n_parents + 1)) return;
        proto_candidate cands[SCHED_MAX_CANDIDATES];
        for (size_t i = 0; i < d->n_parents && i < SCHED_MAX_CANDIDATES; i++) {
            uint8_t *b = s->bits.data + i * nb;
            sched_peer_bitmap(d->parents[i], b, nb);
            sched_host *ph = sched_peer_host(d->parents[i]);
            cands[i].host_id = sched_host_id(ph);
            cands[i].addr = sched_host_addr(ph);
            cands[i].bits = b;
            cands[i].bits_len = nb;
        }
        proto_msg m = {.type = PROTO_MSG_CANDIDATES};
        m.u.candidates.task_id = tid;
        m.u.candidates.piece_count = pc;
        m.u.candidates.candidates = cands;
        m.u.candidates.n_candidates = d->n_parents;
        if (send_msg(sc, &m)) return;
    }
    if (d->wait_ms) {
        proto_msg m = {.type = PROTO_MSG_WAIT};
        m.u.wait.task_id = tid;
        m.u.wait.retry_after_ms = d->wait_ms;
        send_msg(sc, &m);
    }
}

static void on_host_gone(void *ctx, sched_host *h)
{
    (void)ctx;
    struct sconn *sc = sched_host_conn(h);
    if (!sc) return;
    sc->host = NULL;
    /* the daemon must reconnect and re-announce to be scheduled again */
    proto_conn_close(sc->c, -ETIMEDOUT, "host expired (missed heartbeats)");
}

/* ---- message handlers ---- */

static void handle_announce(struct sconn *sc, const proto_announce_host *a)
{
    sched_server *s = sc->srv;
    if (a->n_addrs == 0) {
        send_error(sc, PROTO_E_BAD_MESSAGE, NULL, "announce without an address", 1);
        return;
    }
    if (sc->host && strcmp(sched_host_id(sc->host), a->host_id) != 0) {
        send_error(sc, PROTO_E_UNEXPECTED, NULL, "a connection carries one host", 1);
        return;
    }
    /* with TLS a host id is bound to the certificate: nobody can announce (or take over) a host
     * whose certificate they do not hold */
    const char *cert_id = proto_conn_peer_identity(sc->c);
    if (proto_conn_is_tls(sc->c) && (!cert_id || strcmp(cert_id, a->host_id) != 0)) {
        char msg[PROTO_MAX_ID_LEN * 2 + 96];
        snprintf(msg, sizeof(msg),
                 "host id '%s' differs from this connection's certificate identity '%s'",
                 a->host_id, cert_id ? cert_id : "?");
        cf_warn("conn %s: %s", proto_conn_peer_name(sc->c), msg);
        s->st.identity_refused++;
        send_error(sc, PROTO_E_IDENTITY, NULL, msg, 1);
        return;
    }
    /* ... and so is its address: no one can announce a certificate's host at another address */
    if (proto_conn_is_tls(sc->c) && s->opts.check_source && !is_source(sc->c, a->addrs[0])) {
        char msg[PROTO_MAX_ADDR_LEN + 160];
        snprintf(msg, sizeof(msg),
                 "announced address %s is not this connection's source %s (check_source = false "
                 "for peers behind NAT)",
                 a->addrs[0], proto_conn_peer_name(sc->c));
        cf_warn("conn %s: %s", proto_conn_peer_name(sc->c), msg);
        s->st.identity_refused++;
        send_error(sc, PROTO_E_IDENTITY, NULL, msg, 1);
        return;
    }
    char addr[PROTO_MAX_ADDR_LEN + 16];
    if (strchr(a->addrs[0], ':'))
        snprintf(addr, sizeof(addr), "[%s]:%u", a->addrs[0], a->upload_port);
    else
        snprintf(addr, sizeof(addr), "%s:%u", a->addrs[0], a->upload_port);
    struct sched_host_info info = {.host_id = a->host_id,
                                   .addr = addr,
                                   .idc = a->idc,
                                   .zone = a->zone,
                                   .rack = a->rack,
                                   .upload_slots = a->upload_slots,
                                   .upload_bw = a->upload_bw};
    sched_host *h = NULL;
    int rc = sched_host_announce(s->core, &info, now_ms(s), &h);
    if (rc) {
        send_error(sc, PROTO_E_INTERNAL, NULL, "cannot record host", 1);
        return;
    }
    struct sconn *old = sched_host_conn(h);
    if (old && old != sc) {
        /* the daemon reconnected: the new connection takes the host over */
        old->host = NULL;
        proto_conn_close(old->c, 0, "host reconnected");
    }
    sched_host_set_conn(h, sc);
    sc->host = h;
}

static void handle_register(struct sconn *sc, const proto_register_task *r)
{
    sched_server *s = sc->srv;
    sched_task *t = sched_task_find(s->core, r->task_id);
    if (t && sched_task_length(t) != r->content_length) {
        char msg[160];
        snprintf(msg, sizeof(msg), "content length %llu differs from the task's %llu",
                 (unsigned long long)r->content_length, (unsigned long long)sched_task_length(t));
        send_error(sc, PROTO_E_MISMATCH, r->task_id, msg, 0);
        return;
    }
    uint32_t ps = t ? sched_task_piece_size(t) : proto_piece_size_for(r->content_length);
    uint64_t pc = proto_piece_count(r->content_length, ps);
    if (pc > PROTO_MAX_PIECES) {
        send_error(sc, PROTO_E_RANGE, r->task_id, "content length too large", 0);
        return;
    }
    proto_msg m = {.type = PROTO_MSG_REGISTER_ANSWER};
    m.u.register_answer.task_id = r->task_id;
    m.u.register_answer.piece_size = ps;
    m.u.register_answer.content_length = r->content_length;
    m.u.register_answer.piece_count = (uint32_t)pc;
    m.u.register_answer.has_digests = t && sched_task_digests(t);
    if (send_msg(sc, &m)) return;
    cf_err err = {0};
    if (r->resync) sched_note_reregistration(s->core, r->task_id, now_ms(s));
    int rc =
        sched_register(s->core, sc->host, r->task_id, r->content_length, now_ms(s), NULL, &err);
    if (rc)
        send_error(sc,
                   rc == -ENOMEM   ? PROTO_E_INTERNAL
                   : rc == -ENOSPC ? PROTO_E_NO_SPACE
                                   : PROTO_E_MISMATCH,
                   r->task_id, cf_err_str(&err, rc), 0);
}

static void handle_report(struct sconn *sc, const proto_piece_report *r)
{
    sched_server *s = sc->srv;
    /* proto_piece_run and sched_run are both {start, count}: copy, do not alias */
    struct sched_run stackbuf[64];
    struct sched_run *runs = stackbuf;
    if (r->n_runs > 64) {
        runs = malloc(r->n_runs * sizeof(*runs));
        if (!runs) {
            send_error(sc, PROTO_E_INTERNAL, r->task_id, "out of memory", 0);
            return;
        }
    }
    for (size_t i = 0; i < r->n_runs; i++) {
        runs[i].start = r->runs[i].start;
        runs[i].count = r->runs[i].count;
    }
    cf_err err = {0};
    int rc = sched_report_pieces(s->core, sc->host, r->task_id, runs, r->n_runs, r->parent_id,
                                 now_ms(s), &err);
    if (runs != stackbuf) free(runs);
    if (rc)
        send_error(sc, rc == -ENOENT ? PROTO_E_UNKNOWN_TASK : PROTO_E_RANGE, r->task_id,
                   cf_err_str(&err, rc), 0);
}

static void handle_digests_publish(struct sconn *sc, const proto_digest_list *l)
{
    sched_server *s = sc->srv;
    sched_task *t = sched_task_find(s->core, l->task_id);
    sched_peer *p = t ? sched_find_peer(s->core, sc->host, l->task_id) : NULL;
    if (!p) {
        send_error(sc, PROTO_E_UNKNOWN_TASK, l->task_id, "task not registered by this host", 0);
        return;
    }
    if (sched_peer_have(p) != sched_task_piece_count(t)) {
        send_error(sc, PROTO_E_UNEXPECTED, l->task_id,
                   "digest list accepted only from a host holding every piece", 0);
        return;
    }
    cf_err err = {0};
    int rc = proto_digest_list_check(l, l->task_id, sched_task_piece_size(t), sched_task_length(t),
                                     &err);
    if (!rc) rc = sched_task_set_digests(t, l->digests, (size_t)l->piece_count * 32, sc->host);
    if (rc == -EPERM) {
        send_error(sc, PROTO_E_DIGEST_MISMATCH, l->task_id,
                   "this host's digest list for the task was contradicted by the origin", 0);
        return;
    }
    if (rc == -EEXIST) {
        cf_warn("task %s: host %s published a digest list that differs from the first one",
                l->task_id, sched_host_id(sc->host));
        send_error(sc, PROTO_E_DIGEST_MISMATCH, l->task_id, "differs from the stored list", 0);
        return;
    }
    if (rc) {
        send_error(sc, PROTO_E_MISMATCH, l->task_id, cf_err_str(&err, rc), 0);
        return;
    }
    proto_msg m = {.type = PROTO_MSG_DIGESTS_ACK};
    m.u.digests_ack.task_id = l->task_id;
    send_msg(sc, &m);
}

/* ERROR DIGEST_MISMATCH {t} from a peer of the task: the origin's bytes disagree with the task's
 * digest list. The origin is authoritative, so the list goes (anyone in the task can ask: losing
 * a list only costs checking pieces against the blob's sha256 at the end, never correctness). */
static void handle_peer_error(struct sconn *sc, const proto_error *e)
{
    sched_server *s = sc->srv;
    if (e->code != PROTO_E_DIGEST_MISMATCH || !e->task_id || !e->task_id[0]) return;
    sched_task *t = sched_task_find(s->core, e->task_id);
    if (!t || !sched_find_peer(s->core, sc->host, e->task_id)) return;
    if (sched_task_discredit_digests(t)) {
        s->st.digest_lists_discredited++;
        cf_warn("task %s: host %s reports origin bytes that disagree with the digest list: "
                "list dropped",
                e->task_id, sched_host_id(sc->host));
    }
}

static void handle_digests_fetch(struct sconn *sc, const proto_digests_fetch *f)
{
    sched_task *t = sched_task_find(sc->srv->core, f->task_id);
    if (!t || !sched_task_digests(t) || sched_task_piece_size(t) != f->piece_size) {
        send_error(sc, PROTO_E_NOT_FOUND, f->task_id, "no digest list for this piece size", 0);
        return;
    }
    proto_msg m = {.type = PROTO_MSG_DIGESTS};
    m.u.digests.task_id = f->task_id;
    m.u.digests.piece_size = sched_task_piece_size(t);
    m.u.digests.piece_count = sched_task_piece_count(t);
    m.u.digests.digests = sched_task_digests(t);
    send_msg(sc, &m);
}

static void handle_hello(struct sconn *sc, const proto_hello *h)
{
    cf_err err = {0};
    uint32_t version = 0, peer_max = 0;
    int rc = proto_handshake_check(&sc->srv->hello, h, &version, &peer_max, &err);
    if (rc) {
        sc->srv->st.handshakes_failed++;
        proto_msg m;
        proto_handshake_refusal(&m, &err);
        send_msg(sc, &m);
        proto_conn_close_after_flush(sc->c, rc, cf_err_str(&err, rc));
        return;
    }
    proto_conn_set_peer_max_payload(sc->c, peer_max);
    proto_msg m = {.type = PROTO_MSG_HELLO};
    m.u.hello = sc->srv->hello;
    if (send_msg(sc, &m) == 0) {
        sc->hello_done = 1;
        proto_conn_set_max_body(sc->c, 0);
    }
}

static void record_latency(sched_server *s, uint64_t ns)
{
    uint64_t us = ns / 1000;
    s->st.lat_count++;
    s->st.lat_sum_us += us;
    unsigned b = 0;
    while (b < SCHED_LAT_BUCKETS - 1 && us > sched_lat_bounds_us[b]) b++;
    s->st.lat_bucket[b]++;
}

static void on_frame(proto_conn *c, const proto_frame_header *fh, const uint8_t *body,
                     const uint8_t *payload)
{
    (void)payload;
    struct sconn *sc = proto_conn_data(c);
    sched_server *s = sc->srv;
    uint64_t t0 = uv_hrtime();
    s->st.frames_in++;
    proto_msg m;
    cf_err err = {0};
    int rc = proto_msg_decode(fh->type, body, fh->body_len, fh->payload_len, &m, &err);
    if (rc == -ENOTSUP) {
        s->st.frames_bad++;
        send_error(sc, PROTO_E_UNEXPECTED, NULL, "unknown message type", 0);
        return;
    }
    if (rc) {
        s->st.frames_bad++;
        cf_debug("conn %s: bad %s frame: %s", proto_conn_peer_name(c),
                 proto_msg_type_name(fh->type), cf_err_str(&err, rc));
        send_error(sc, PROTO_E_BAD_MESSAGE, NULL, cf_err_str(&err, rc), 1);
        return;
    }
    if (!sc->hello_done) {
        if (m.type == PROTO_MSG_HELLO)
            handle_hello(sc, &m.u.hello);
        else
            send_error(sc, PROTO_E_UNEXPECTED, NULL, "HELLO expected first", 1);
        proto_msg_free(&m);
        return;
    }
    if (!sc->host && m.type != PROTO_MSG_ANNOUNCE_HOST && m.type != PROTO_MSG_DIGESTS_FETCH &&
        m.type != PROTO_MSG_HELLO) {
        send_error(sc, PROTO_E_UNKNOWN_HOST, NULL, "ANNOUNCE_HOST expected first", 0);
        proto_msg_free(&m);
        return;
    }
    int decision = 0;
    uint64_t now = now_ms(s);
    switch (m.type) {
    case PROTO_MSG_ANNOUNCE_HOST:
        handle_announce(sc, &m.u.announce_host);
        break;
    case PROTO_MSG_REGISTER_TASK:
        handle_register(sc, &m.u.register_task);
        decision = 1;
        break;
    case PROTO_MSG_PIECE_REPORT:
        handle_report(sc, &m.u.piece_report);
        decision = 1;
        break;
    case PROTO_MSG_TASK_FINISHED: {
        int r2 = sched_task_finished(s->core, sc->host, m.u.task_finished.task_id, now, &err);
        if (r2)
            send_error(sc, PROTO_E_UNEXPECTED, m.u.task_finished.task_id, cf_err_str(&err, r2), 0);
        decision = 1;
        break;
    }
    case PROTO_MSG_TASK_FAILED:
        sched_leave_task(s->core, sc->host, m.u.task_failed.task_id, now);
        decision = 1;
        break;
    case PROTO_MSG_LEAVE_TASK:
        sched_leave_task(s->core, sc->host, m.u.leave_task.task_id, now);
        decision = 1;
        break;
    case PROTO_MSG_BAD_PARENT:
        if (sched_bad_parent(s->core, sc->host, m.u.bad_parent.task_id, m.u.bad_parent.parent_id,
                             m.u.bad_parent.reason == PROTO_BAD_PARENT_DIGEST_MISMATCH ||
                                 m.u.bad_parent.reason == PROTO_BAD_PARENT_OTHER,
                             now))
            send_error(sc, PROTO_E_UNKNOWN_TASK, m.u.bad_parent.task_id, "task not registered", 0);
        decision = 1;
        break;
    case PROTO_MSG_LEAVE_HOST: {
        sched_host *h = sc->host;
        sc->host = NULL;
        sched_host_set_conn(h, NULL);
        sched_host_leave(s->core, h, now);
        break;
    }
    case PROTO_MSG_HEARTBEAT: {
        sched_host_heartbeat(s->core, sc->host, UINT32_MAX, now);
        proto_msg r = {.type = PROTO_MSG_HEARTBEAT_REPLY};
        r.u.heartbeat_reply.seq = m.u.heartbeat.seq;
        send_msg(sc, &r);
        break;
    }
    case PROTO_MSG_DIGESTS_PUBLISH:
        handle_digests_publish(sc, &m.u.digests);
        break;
    case PROTO_MSG_DIGESTS_FETCH:
        handle_digests_fetch(sc, &m.u.digests_fetch);
        break;
    case PROTO_MSG_ERROR:
        handle_peer_error(sc, &m.u.error);
        break;
    default:
        send_error(sc, PROTO_E_UNEXPECTED, NULL, "message not handled by a scheduler", 0);
        break;
    }
    if (sc->host) sched_host_heartbeat(s->core, sc->host, UINT32_MAX, now); /* any frame = alive */
    proto_msg_free(&m);
    if (decision) record_latency(s, uv_hrtime() - t0);
}

static void server_maybe_free(sched_server *s);

static void on_conn_close(proto_conn *c, int status, const char *reason)
{
    struct sconn *sc = proto_conn_data(c);
    sched_server *s = sc->srv;
    if (status == -ETIMEDOUT) s->st.idle_closed++;
    /* TLS refusals (plaintext, no or foreign certificate) end before any frame */
    if (!sc->hello_done && proto_conn_is_tls(c) && (status == -EACCES || status == -EPROTO))
        s->st.handshakes_failed++;
    cf_debug("conn %s closed: %s", proto_conn_peer_name(c), reason);
    if (sc->host) {
        sched_host *h = sc->host;
        sc->host = NULL;
        sched_host_set_conn(h, NULL);
        cf_info("host %s disconnected (%s): its peers leave", sched_host_id(h), reason);
        sched_host_leave(s->core, h, now_ms(s));
    }
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        s->conns = sc->next;
    if (sc->next) sc->next->prev = sc->prev;
    s->st.conns_open--;
    free(sc);
    server_maybe_free(s);
}

void sched_server_set_tls(sched_server *s, proto_tls *tls)
{
    if (s->opts.tls && tls) s->opts.tls = tls;
}

static void on_connection(uv_stream_t *ls, int status)
{
    sched_server *s = ls->data;
    if (status < 0) {
        cf_warn("scheduler: accept failed: %s", uv_strerror(status));
        return;
    }
    struct sconn *sc = calloc(1, sizeof(*sc));
    if (!sc) return;
    sc->srv = s;
    proto_conn_opts o = {.idle_timeout_ms = s->opts.timing.idle_timeout_ms,
                         .max_payload = 1, /* scheduler frames carry no payload */
                         .max_body = PROTO_PRE_HELLO_MAX_BODY,
                         .high_watermark = 256 << 10,
                         .max_queued = 8 << 20,
                         .tls = s->opts.tls};
    proto_conn_cbs cbs = {.on_frame = on_frame, .on_close = on_conn_close};
    int rc = proto_conn_accept(ls, &o, &cbs, sc, &sc->c);
    if (rc) {
        cf_warn("scheduler: accept: %s", uv_strerror(rc));
        free(sc);
        return;
    }
    sc->accepted_ms = now_ms(s);
    sc->next = s->conns;
    if (s->conns) s->conns->prev = sc;
    s->conns = sc;
    s->st.conns_open++;
    if (s->st.conns_open > s->opts.max_connections || s->closing) {
        s->st.conns_rejected++;
        proto_conn_close(sc->c, -EBUSY, "too many connections");
        return;
    }
    s->st.conns_accepted++;
}

static void on_tick(uv_timer_t *t)
{
    sched_server *s = t->data;
    uint64_t now = now_ms(s);
    sched_tick(s->core, now);
    for (struct sconn *sc = s->conns, *next; sc; sc = next) {
        next = sc->next;
        if (!sc->hello_done && now - sc->accepted_ms > s->opts.handshake_timeout_ms) {
            s->st.handshake_timeouts++;
            sc->hello_done = 1; /* close once */
            proto_conn_close(sc->c, -ETIMEDOUT, "no handshake");
        }
    }
}

int sched_server_new(uv_loop_t *loop, const struct sched_server_opts *opts, sched_server **out,
                     cf_err *err)
{
    sched_server *s = calloc(1, sizeof(*s));
    if (!s) return cf_err_set(err, -ENOMEM, "out of memory");
    s->loop = loop;
    if (opts)
        s->opts = *opts;
    else
        sched_server_opts_default(&s->opts);
    if (!s->opts.tick_ms) s->opts.tick_ms = 250;
    if (!s->opts.handshake_timeout_ms) s->opts.handshake_timeout_ms = 10000;
    if (!s->opts.max_connections) s->opts.max_connections = 65536;
    s->opts.core.heartbeat_ms = s->opts.timing.heartbeat_interval_ms;
    s->opts.core.heartbeat_misses = s->opts.timing.heartbeat_miss_limit;
    s->opts.core.stall_ms = s->opts.timing.b2s_stall_ms;
    s->node_id = strdup(s->opts.node_id ? s->opts.node_id : "chunkfly-scheduler");
    struct sched_ops ops = {.decide = on_decide, .host_gone = on_host_gone, .ctx = s};
    s->core = sched_new(&s->opts.core, &ops);
    if (!s->node_id || !s->core) {
        sched_free(s->core);
        free(s->node_id);
        free(s);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    s->opts.node_id = s->node_id;
    proto_hello_init(&s->hello, s->node_id, PROTO_ROLE_SCHEDULER, 0, 1);
    uv_timer_init(loop, &s->tick);
    s->tick.data = s;
    s->tick_open = 1;
    uv_timer_start(&s->tick, on_tick, s->opts.tick_ms, s->opts.tick_ms);
    *out = s;
    return 0;
}

int sched_server_listen(sched_server *s, const char *host, int port, cf_err *err)
{
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return cf_err_set(err, -EINVAL, "listen: '%s' is not a numeric IP address", host);
    int rc = uv_tcp_init(s->loop, &s->listener);
    if (rc) return cf_err_set(err, rc, "listen: %s", uv_strerror(rc));
    s->listener.data = s;
    s->listener_open = 1;
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
    if (!rc) rc = uv_listen((uv_stream_t *)&s->listener, 4096, on_connection);
    if (rc) return cf_err_set(err, rc, "listen on %s:%d: %s", host, port, uv_strerror(rc));
    struct sockaddr_storage b;
    int len = sizeof(b);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&b, &len);
    s->port = b.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&b)->sin6_port)
                                      : ntohs(((struct sockaddr_in *)&b)->sin_port);
    return 0;
}

int sched_server_port(const sched_server *s)
{
    return s->port;
}

uint64_t sched_server_now_ms(const sched_server *s)
{
    return uv_now(s->loop);
}

sched *sched_server_core(sched_server *s)
{
    return s->core;
}

void sched_server_stats_get(const sched_server *s, struct sched_server_stats *out)
{
    *out = s->st;
}

static void server_maybe_free(sched_server *s)
{
    if (!s->closing || s->conns || s->listener_open || s->tick_open) return;
    sched_free(s->core);
    cf_buf_free(&s->bits);
    free(s->runs);
    free(s->node_id);
    void (*cb)(void *) = s->close_cb;
    void *arg = s->close_arg;
    free(s);
    if (cb) cb(arg);
}

static void on_listener_closed(uv_handle_t *h)
{
    sched_server *s = h->data;
    s->listener_open = 0;
    server_maybe_free(s);
}

static void on_tick_closed(uv_handle_t *h)
{
    sched_server *s = h->data;
    s->tick_open = 0;
    server_maybe_free(s);
}

void sched_server_close(sched_server *s, void (*cb)(void *arg), void *arg)
{
    if (!s || s->closing) return;
    s->closing = 1;
    s->close_cb = cb;
    s->close_arg = arg;
    for (struct sconn *sc = s->conns; sc; sc = sc->next)
        proto_conn_close(sc->c, 0, "scheduler shutting down");
    uv_close((uv_handle_t *)&s->tick, on_tick_closed);
    if (s->listener_open) uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}
