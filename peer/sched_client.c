/* Scheduler client: one mesh connection per configured scheduler, opened when a task first
 * needs it. Each task goes to the scheduler proto_rendezvous_pick() chooses among the healthy
 * ones; health follows docs/protocol.md §7 (failed connect or missed heartbeat replies make a
 * scheduler unhealthy, it is retried after timing.scheduler_retry). Links and task messages are
 * reported to the registered sched_handler (the tasks), which re-registers tasks elsewhere (or
 * falls back to the origin) when a link drops; this file knows no task. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cf/log.h"
#include "daemon_internal.h"
#include "proto/handshake.h"

static void link_connect(struct sched_link *l);

int sched_client_send(peer_daemon *d, int idx, const proto_msg *m)
{
    if (idx < 0 || (size_t)idx >= d->o.n_schedulers) return -EINVAL;
    struct sched_link *l = &d->sched[idx];
    if (!l->c || !l->ready) return -ENOTCONN;
    cf_err err = {0};
    int rc = proto_conn_send(l->c, m, NULL, 0, &err);
    if (rc)
        cf_debug("scheduler %s: cannot send %s: %s", l->addr, proto_msg_type_name(m->type),
                 cf_err_str(&err, rc));
    return rc;
}

int sched_client_link_ready(peer_daemon *d, int idx)
{
    return idx >= 0 && (size_t)idx < d->o.n_schedulers && d->sched[idx].ready;
}

int sched_client_register(peer_daemon *d, const char *task_id, uint64_t length, const char *origin,
                          int resync, int *idx_out)
{
    size_t n = d->o.n_schedulers;
    if (!n || d->stopping) return -ENOENT;
    for (size_t attempt = 0; attempt < n; attempt++) {
        int idx = proto_rendezvous_pick(task_id, d->sched_addrs, d->sched_health, n, &d->o.timing);
        if (idx < 0) return -ENOENT;
        struct sched_link *l = &d->sched[idx];
        *idx_out = idx;
        if (l->ready) {
            proto_msg m = {.type = PROTO_MSG_REGISTER_TASK};
            m.u.register_task.task_id = task_id;
            m.u.register_task.content_length = length;
            m.u.register_task.origin = origin;
            m.u.register_task.resync = resync != 0;
            sched_client_send(d, idx, &m);
            return 0;
        }
        if (l->c) return 0; /* connecting: the handler registers it when ready */
        link_connect(l);
        if (l->c) return 0;
        /* immediate connect failure marked it unhealthy: pick again */
    }
    return -ENOENT;
}

static uint64_t free_disk(peer_daemon *d)
{
    struct statvfs sv;
    if (statvfs(d->o.cache_dir, &sv)) return 0;
    return (uint64_t)sv.f_bavail * sv.f_frsize;
}

static void announce(struct sched_link *l)
{
    peer_daemon *d = l->d;
    char hostname[128] = "";
    gethostname(hostname, sizeof(hostname) - 1);
    const char *addrs[1] = {d->adv_ip};
    proto_msg m = {.type = PROTO_MSG_ANNOUNCE_HOST};
    m.u.announce_host.host_id = d->host_id;
    m.u.announce_host.hostname = hostname;
    m.u.announce_host.addrs = addrs;
    m.u.announce_host.n_addrs = 1;
    m.u.announce_host.upload_port = d->adv_port;
    m.u.announce_host.upload_slots = d->o.upload_slots;
    m.u.announce_host.upload_bw = d->o.upload_bw;
    m.u.announce_host.free_disk = free_disk(d);
    sched_client_send(d, l->idx, &m);
}

static void on_link_ready(struct sched_link *l)
{
    peer_daemon *d = l->d;
    cf_info("scheduler %s: connected", l->addr);
    proto_sched_health_connect_ok(&d->sched_health[l->idx]);
    l->hb_acked = l->hb_seq;
    announce(l);
    d->sched_h->on_link_ready(d, l->idx);
}

static void on_frame(proto_conn *c, const proto_frame_header *h, const uint8_t *body,
                     const uint8_t *payload)
{
    (void)payload;
    struct sched_link *l = proto_conn_data(c);
    peer_daemon *d = l->d;
    proto_msg m;
    cf_err err = {0};
    int rc = proto_msg_decode(h->type, body, h->body_len, h->payload_len, &m, &err);
    if (rc) {
        d->m.bad_frames++;
        cf_warn("scheduler %s: bad %s frame: %s", l->addr, proto_msg_type_name(h->type),
                cf_err_str(&err, rc));
        if (rc != -ENOTSUP) proto_conn_close(c, -EBADMSG, "bad frame from scheduler");
        return;
    }
    if (!l->ready) {
        if (m.type != PROTO_MSG_HELLO) {
            cf_warn("scheduler %s: refused the handshake (%s)", l->addr,
                    m.type == PROTO_MSG_ERROR ? m.u.error.message : proto_msg_type_name(m.type));
            proto_msg_free(&m);
            proto_conn_close(c, -EPROTO, "handshake refused");
            return;
        }
        proto_hello ours;
        proto_hello_init(&ours, d->host_id, PROTO_ROLE_PEER,
                         PROTO_CAP_DIGEST_LIST | PROTO_CAP_AVAIL_PUSH, 0);
        uint32_t ver, pmax;
        rc = proto_handshake_check(&ours, &m.u.hello, &ver, &pmax, &err);
        proto_msg_free(&m);
        if (rc) {
            cf_warn("scheduler %s: %s", l->addr, cf_err_str(&err, rc));
            proto_conn_close(c, rc, "incompatible scheduler");
            return;
        }
        proto_conn_set_peer_max_payload(c, pmax);
        l->ready = 1;
        l->connecting = 0;
        on_link_ready(l);
        return;
    }
    switch (m.type) {
    case PROTO_MSG_REGISTER_ANSWER:
    case PROTO_MSG_CANDIDATES:
    case PROTO_MSG_BACK_TO_SOURCE:
    case PROTO_MSG_WAIT:
    case PROTO_MSG_DIGESTS:
    case PROTO_MSG_DIGESTS_ACK:
        d->sched_h->on_task_msg(d, l->idx, &m);
        break;
    case PROTO_MSG_HEARTBEAT_REPLY:
        if (m.u.heartbeat_reply.seq <= l->hb_seq) l->hb_acked = m.u.heartbeat_reply.seq;
        proto_sched_health_reply(&d->sched_health[l->idx]);
        break;
    case PROTO_MSG_ERROR:
        if (m.u.error.code == PROTO_E_UNKNOWN_HOST) {
            announce(l); /* the scheduler forgot us (restart): announce, then re-register */
            d->sched_h->on_host_unknown(d, l->idx);
        } else if (m.u.error.task_id[0]) {
            d->sched_h->on_task_msg(d, l->idx, &m);
        } else if (m.u.error.code == PROTO_E_IDENTITY) {
            cf_error("scheduler %s refused our host id: %s", l->addr, m.u.error.message);
        } else {
            cf_info("scheduler %s: error %u: %s", l->addr, m.u.error.code, m.u.error.message);
        }
        break;
    default:
        cf_debug("scheduler %s: ignoring %s", l->addr, proto_msg_type_name(m.type));
        break;
    }
    proto_msg_free(&m);
}

static void on_connect(proto_conn *c)
{
    struct sched_link *l = proto_conn_data(c);
    proto_hello h;
    proto_hello_init(&h, l->d->host_id, PROTO_ROLE_PEER,
                     PROTO_CAP_DIGEST_LIST | PROTO_CAP_AVAIL_PUSH, 0);
    proto_msg m = {.type = PROTO_MSG_HELLO};
    m.u.hello = h;
    if (proto_conn_send(c, &m, NULL, 0, NULL)) proto_conn_close(c, -EIO, "cannot send HELLO");
}

static void on_close(proto_conn *c, int status, const char *reason)
{
    struct sched_link *l = proto_conn_data(c);
    peer_daemon *d = l->d;
    int was_ready = l->ready;
    l->c = NULL;
    l->ready = 0;
    l->connecting = 0;
    if (d->stopping) return;
    cf_warn("scheduler %s: connection %s: %s", l->addr, was_ready ? "lost" : "failed", reason);
    (void)status;
    proto_sched_health_connect_failed(&d->sched_health[l->idx], pd_now(d));
    d->sched_h->on_link_lost(d, l->idx);
}

static void link_connect(struct sched_link *l)
{
    peer_daemon *d = l->d;
    struct sockaddr_storage ss;
    if (proto_addr_parse(l->addr, &ss)) return;
    proto_conn_opts co = {.idle_timeout_ms = 0,
                          .tls = d->tls,
                          .source = d->has_mesh_src ? (struct sockaddr *)&d->mesh_src : NULL};
    proto_conn_cbs cbs = {.on_frame = on_frame, .on_connect = on_connect, .on_close = on_close};
    int rc = proto_conn_connect_tcp(d->loop, (struct sockaddr *)&ss, &co, &cbs, l, &l->c);
    if (rc) {
        l->c = NULL;
        cf_warn("scheduler %s: connect: %s", l->addr, uv_strerror(rc));
        proto_sched_health_connect_failed(&d->sched_health[l->idx], pd_now(d));
        return;
    }
    l->connecting = 1;
}

static void on_heartbeat(uv_timer_t *tm)
{
    peer_daemon *d = tm->data;
    uint64_t now = pd_now(d);
    for (size_t i = 0; i < d->o.n_schedulers; i++) {
        struct sched_link *l = &d->sched[i];
        proto_sched_health *h = &d->sched_health[i];
        if (l->ready) {
            if (l->hb_acked < l->hb_seq) {
                proto_sched_health_missed(h, now, &d->o.timing);
                if (!proto_sched_health_ok(h, &d->o.timing)) {
                    cf_warn("scheduler %s: %u heartbeats unanswered", l->addr, h->missed);
                    proto_conn_close(l->c, -ETIMEDOUT, "heartbeats unanswered");
                    continue;
                }
            }
            proto_msg m = {.type = PROTO_MSG_HEARTBEAT};
            m.u.heartbeat.host_id = d->host_id;
            m.u.heartbeat.seq = ++l->hb_seq;
            m.u.heartbeat.free_slots = d->o.upload_slots - d->slots_used;
            sched_client_send(d, l->idx, &m);
        } else if (!l->c && !proto_sched_health_ok(h, &d->o.timing) &&
                   proto_sched_health_retry_due(h, now, &d->o.timing)) {
            /* probe a scheduler that was down; tasks re-pick once it answers */
            h->down_since_ms = now;
            link_connect(l);
        }
    }
}

void sched_client_init(peer_daemon *d, const struct sched_handler *h)
{
    d->sched_h = h;
    for (size_t i = 0; i < d->o.n_schedulers; i++) {
        struct sched_link *l = &d->sched[i];
        l->d = d;
        l->idx = (int)i;
        snprintf(l->addr, sizeof(l->addr), "%s", d->o.schedulers[i]);
        proto_sched_health_init(&d->sched_health[i]);
    }
    uv_timer_init(d->loop, &d->hb_timer);
    d->hb_timer.data = d;
    uint32_t iv = d->o.timing.heartbeat_interval_ms;
    uv_timer_start(&d->hb_timer, on_heartbeat, iv, iv);
}

void sched_client_stop(peer_daemon *d)
{
    uv_timer_stop(&d->hb_timer);
    uv_close((uv_handle_t *)&d->hb_timer, NULL);
    for (size_t i = 0; i < d->o.n_schedulers; i++) {
        struct sched_link *l = &d->sched[i];
        if (!l->c) continue;
        if (l->ready) {
            proto_msg m = {.type = PROTO_MSG_LEAVE_HOST};
            m.u.leave_host.host_id = d->host_id;
            proto_conn_send(l->c, &m, NULL, 0, NULL);
            proto_conn_close_after_flush(l->c, 0, "shutting down");
        } else {
            proto_conn_close(l->c, 0, "shutting down");
        }
    }
}
