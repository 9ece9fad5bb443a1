/* Scheduler client: one mesh connection per scheduler of the table, opened when a task first
 * needs it. The table is the numeric `scheduler` entries plus every address the name entries
 * resolve to (uv_getaddrinfo, re-resolved every scheduler_resolve_interval); a change is
 * reported (on_table_changed) so that tasks move to their new rendezvous pick before the links
 * that left close. Each task goes to the scheduler proto_rendezvous_pick() chooses among the
 * healthy ones; health follows docs/protocol.md §7 (failed connect or missed heartbeat replies
 * make a scheduler unhealthy, it is retried after timing.scheduler_retry). Links and task
 * messages are reported to the registered sched_handler (the tasks), which re-registers tasks
 * elsewhere (or falls back to the origin) when a link drops; this file knows no task. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cf/log.h"
#include "daemon_internal.h"
#include "proto/handshake.h"

static void link_connect(struct sched_link *l);

/* A link that left the table (its tasks have moved): say goodbye and close. The slot is free
 * once on_close has run. */
static void link_retire(struct sched_link *l)
{
    l->active = 0;
    l->retiring = 1;
    if (!l->c) {
        l->retiring = 0; /* nothing to close: free now */
        return;
    }
    if (l->ready) {
        proto_msg m = {.type = PROTO_MSG_LEAVE_HOST};
        m.u.leave_host.host_id = l->d->host_id;
        proto_conn_send(l->c, &m, NULL, 0, NULL);
        proto_conn_close_after_flush(l->c, 0, "left the scheduler table");
    } else {
        proto_conn_close(l->c, 0, "left the scheduler table");
    }
}

int sched_client_send(peer_daemon *d, int idx, const proto_msg *m)
{
    if (idx < 0 || (size_t)idx >= d->n_sched_slots) return -EINVAL;
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
    return idx >= 0 && (size_t)idx < d->n_sched_slots && d->sched[idx].ready;
}

int sched_client_pick(peer_daemon *d, const char *task_id)
{
    /* the candidates in address order: ties (never seen) break alike on every peer */
    const char *addrs[PEER_MAX_SCHEDULERS];
    proto_sched_health health[PEER_MAX_SCHEDULERS];
    size_t n = d->n_sched_active;
    for (size_t i = 0; i < n; i++) {
        addrs[i] = d->sched[d->sched_order[i]].addr;
        health[i] = d->sched_health[d->sched_order[i]];
    }
    int k = proto_rendezvous_pick(task_id, addrs, health, n, &d->o.timing);
    return k < 0 ? k : d->sched_order[k];
}

int sched_client_register(peer_daemon *d, const char *task_id, uint64_t length, const char *origin,
                          int resync, int *idx_out)
{
    size_t n = d->n_sched_active;
    if (!n || d->stopping) return -ENOENT;
    for (size_t attempt = 0; attempt < n; attempt++) {
        int idx = sched_client_pick(d, task_id);
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
    if (l->retiring) return; /* left the table: nothing it says matters any more */
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
    if (l->retiring) { /* left the table: the slot is free now */
        l->retiring = 0;
        cf_info("scheduler %s: closed (left the table)", l->addr);
        return;
    }
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
    for (size_t i = 0; i < d->n_sched_slots; i++) {
        struct sched_link *l = &d->sched[i];
        proto_sched_health *h = &d->sched_health[i];
        if (!l->active) continue;
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

/* ---- the table: numeric entries + what the names resolve to ---- */

int peer_sched_entry_parse(const char *entry, char *host, size_t hostsz, char *port, size_t portsz)
{
    struct sockaddr_storage ss;
    if (proto_addr_parse(entry, &ss) == 0) return 0;
    const char *colon = strrchr(entry, ':');
    if (!colon || colon == entry) return -EINVAL;
    size_t hl = (size_t)(colon - entry), pl = strlen(colon + 1);
    if (hl > 253 || pl < 1 || pl > 5) return -EINVAL;
    unsigned long pn = 0;
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9') return -EINVAL;
        pn = pn * 10 + (unsigned long)(*p - '0');
    }
    if (pn == 0 || pn > 65535) return -EINVAL;
    /* a DNS-style name: letters, digits, '-', '_', '.' (no IP literal that failed above) */
    int alpha = 0;
    for (size_t i = 0; i < hl; i++) {
        char ch = entry[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_')
            alpha = 1;
        else if (!(ch >= '0' && ch <= '9') && ch != '.')
            return -EINVAL;
    }
    if (!alpha || entry[0] == '.' || entry[0] == '-') return -EINVAL;
    if (host) {
        if (hostsz <= hl || portsz <= pl) return -EINVAL;
        memcpy(host, entry, hl);
        host[hl] = 0;
        memcpy(port, colon + 1, pl + 1);
    }
    return 1;
}

static int cmp_addr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds s to the sorted, duplicate-free list[0..*n) of capacity cap; 1 if it was full. */
static int addr_set_add(const char **list, size_t *n, size_t cap, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i], s) == 0) return 0;
    if (*n == cap) return 1;
    list[(*n)++] = s;
    qsort(list, *n, sizeof(*list), cmp_addr);
    return 0;
}

static int slot_of(peer_daemon *d, const char *addr)
{
    for (size_t i = 0; i < d->n_sched_slots; i++)
        if (d->sched[i].active && strcmp(d->sched[i].addr, addr) == 0) return (int)i;
    return -1;
}

/* Makes the table the union of the numeric entries and the names' addresses. */
static void table_update(peer_daemon *d)
{
    const char *want[PEER_MAX_SCHEDULERS];
    size_t n = 0;
    int full = 0;
    for (size_t i = 0; i < d->o.n_schedulers; i++)
        if (peer_sched_entry_parse(d->o.schedulers[i], NULL, 0, NULL, 0) == 0)
            full |= addr_set_add(want, &n, PEER_MAX_SCHEDULERS, d->o.schedulers[i]);
    for (size_t k = 0; k < d->n_sched_names; k++)
        for (size_t j = 0; j < d->sched_names[k].n; j++)
            full |= addr_set_add(want, &n, PEER_MAX_SCHEDULERS, d->sched_names[k].addrs[j]);
    if (full)
        cf_warn("more than %d scheduler addresses: using the first %d by address",
                PEER_MAX_SCHEDULERS, PEER_MAX_SCHEDULERS);
    int left[PEER_MAX_SCHEDULERS];
    size_t n_left = 0, n_joined = 0;
    for (size_t i = 0; i < d->n_sched_slots; i++) {
        struct sched_link *l = &d->sched[i];
        if (!l->active) continue;
        int keep = 0;
        for (size_t j = 0; j < n && !keep; j++) keep = strcmp(want[j], l->addr) == 0;
        if (keep) continue;
        l->active = 0;   /* no longer a candidate; connected until its tasks have moved */
        l->retiring = 1; /* (link_retire below) not reused by this update */
        left[n_left++] = (int)i;
        cf_info("scheduler %s: left the table", l->addr);
    }
    /* new slots in config order (numeric entries first: their slots are their positions in the
     * config, as a task's "scheduler" in /status always was), then the names' addresses */
    const char *join[2 * PEER_MAX_SCHEDULERS];
    size_t n_join = 0;
    for (size_t i = 0; i < d->o.n_schedulers; i++)
        if (peer_sched_entry_parse(d->o.schedulers[i], NULL, 0, NULL, 0) == 0)
            join[n_join++] = d->o.schedulers[i];
    for (size_t j = 0; j < n; j++) join[n_join++] = want[j];
    for (size_t k = 0; k < n_join; k++) {
        const char *a = join[k];
        int wanted = 0;
        for (size_t j = 0; j < n && !wanted; j++) wanted = strcmp(want[j], a) == 0;
        if (!wanted || slot_of(d, a) >= 0) continue;
        size_t i = 0;
        while (i < PEER_MAX_SCHEDULERS &&
               (d->sched[i].active || d->sched[i].retiring || d->sched[i].c))
            i++;
        if (i == PEER_MAX_SCHEDULERS) { /* every slot still closing: next resolution */
            cf_warn("scheduler %s: no free slot yet", a);
            continue;
        }
        struct sched_link *l = &d->sched[i];
        memset(l, 0, sizeof(*l));
        l->d = d;
        l->idx = (int)i;
        snprintf(l->addr, sizeof(l->addr), "%s", a);
        l->active = 1;
        proto_sched_health_init(&d->sched_health[i]);
        if (i >= d->n_sched_slots) d->n_sched_slots = i + 1;
        n_joined++;
        cf_info("scheduler %s: joined the table", l->addr);
    }
    d->n_sched_active = 0;
    for (size_t j = 0; j < n; j++) {
        int i = slot_of(d, want[j]);
        if (i >= 0) d->sched_order[d->n_sched_active++] = i;
    }
    if (!n_left && !n_joined) return;
    cf_info("scheduler table: %zu scheduler(s), %zu joined, %zu left", d->n_sched_active, n_joined,
            n_left);
    if (d->sched_h) d->sched_h->on_table_changed(d);
    for (size_t k = 0; k < n_left; k++) link_retire(&d->sched[left[k]]);
}

static uint32_t retry_ms(const peer_daemon *d)
{
    /* an unresolvable name is retried sooner than a resolved one is refreshed */
    uint32_t iv = d->o.sched_resolve_interval_ms;
    return iv < 5000 ? iv : 5000;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct sched_name *nm = req->data;
    peer_daemon *d = nm->d;
    nm->busy = 0;
    if (d->stopping) {
        uv_freeaddrinfo(res);
        return;
    }
    const char *got[PEER_MAX_SCHEDULERS];
    char buf[PEER_MAX_SCHEDULERS][PROTO_MAX_ADDR_LEN + 1];
    size_t n = 0, nb = 0;
    for (struct addrinfo *ai = status == 0 ? res : NULL; ai; ai = ai->ai_next) {
        char ip[64];
        if (nb == PEER_MAX_SCHEDULERS) break;
        if (ai->ai_family == AF_INET &&
            !uv_ip4_name((struct sockaddr_in *)ai->ai_addr, ip, sizeof(ip)))
            snprintf(buf[nb], sizeof(buf[nb]), "%s:%s", ip, nm->port);
        else if (ai->ai_family == AF_INET6 &&
                 !uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, ip, sizeof(ip)))
            snprintf(buf[nb], sizeof(buf[nb]), "[%s]:%s", ip, nm->port);
        else
            continue;
        if (addr_set_add(got, &n, PEER_MAX_SCHEDULERS, buf[nb]) == 0) nb++;
    }
    uv_freeaddrinfo(res);
    uint64_t now = pd_now(d);
    if (status || n == 0) {
        nm->next_ms = now + retry_ms(d);
        if (!nm->failing) {
            if (nm->resolved)
                cf_warn("scheduler %s:%s: cannot resolve the name (%s): keeping its %zu last "
                        "address(es), retrying every %u ms",
                        nm->host, nm->port, status ? uv_strerror(status) : "no address", nm->n,
                        retry_ms(d));
            else
                cf_warn("scheduler %s:%s: cannot resolve the name (%s): retrying every %u ms; "
                        "meanwhile its tasks use the other schedulers or the origin",
                        nm->host, nm->port, status ? uv_strerror(status) : "no address",
                        retry_ms(d));
        }
        nm->failing = 1;
        return;
    }
    nm->next_ms = now + d->o.sched_resolve_interval_ms;
    if (nm->failing || !nm->resolved)
        cf_info("scheduler %s:%s: resolved to %zu address(es)", nm->host, nm->port, n);
    nm->failing = 0;
    nm->resolved = 1;
    for (size_t i = 0; i < n; i++) snprintf(nm->addrs[i], sizeof(nm->addrs[i]), "%s", got[i]);
    nm->n = n;
    table_update(d); /* (also adds what found no free slot last time) */
}

static void resolve_due(peer_daemon *d)
{
    uint64_t now = pd_now(d);
    for (size_t k = 0; k < d->n_sched_names; k++) {
        struct sched_name *nm = &d->sched_names[k];
        if (nm->busy || now < nm->next_ms) continue;
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        nm->req.data = nm;
        int rc = uv_getaddrinfo(d->loop, &nm->req, on_resolved, nm->host, nm->port, &hints);
        if (rc) {
            cf_warn("scheduler %s:%s: cannot start resolving: %s", nm->host, nm->port,
                    uv_strerror(rc));
            nm->next_ms = now + retry_ms(d);
            continue;
        }
        nm->busy = 1;
    }
}

static void on_resolve_timer(uv_timer_t *tm)
{
    resolve_due(tm->data);
}

int sched_client_init(peer_daemon *d, const struct sched_handler *h, cf_err *err)
{
    d->sched_h = h;
    uv_timer_init(d->loop, &d->hb_timer);
    d->hb_timer.data = d;
    uv_timer_init(d->loop, &d->resolve_timer);
    d->resolve_timer.data = d;
    uint32_t iv = d->o.timing.heartbeat_interval_ms;
    uv_timer_start(&d->hb_timer, on_heartbeat, iv, iv);
    size_t names = 0;
    for (size_t i = 0; i < d->o.n_schedulers; i++)
        names += peer_sched_entry_parse(d->o.schedulers[i], NULL, 0, NULL, 0) == 1;
    if (names) {
        d->sched_names = calloc(names, sizeof(*d->sched_names));
        if (!d->sched_names) return cf_err_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < d->o.n_schedulers; i++) {
            struct sched_name *nm = &d->sched_names[d->n_sched_names];
            if (peer_sched_entry_parse(d->o.schedulers[i], nm->host, sizeof(nm->host), nm->port,
                                       sizeof(nm->port)) != 1)
                continue;
            nm->d = d;
            d->n_sched_names++;
            if (!(nm->addrs = calloc(PEER_MAX_SCHEDULERS, sizeof(*nm->addrs))))
                return cf_err_set(err, -ENOMEM, "out of memory");
        }
    }
    table_update(d); /* the numeric entries, at once */
    if (d->n_sched_names) {
        resolve_due(d);
        /* the timer only looks for due names: the interval's granularity, at most 1 s */
        uint32_t tick =
            d->o.sched_resolve_interval_ms < 1000 ? d->o.sched_resolve_interval_ms : 1000;
        uv_timer_start(&d->resolve_timer, on_resolve_timer, tick, tick);
    }
    return 0;
}

void sched_client_stop(peer_daemon *d)
{
    uv_timer_stop(&d->hb_timer);
    uv_close((uv_handle_t *)&d->hb_timer, NULL);
    uv_timer_stop(&d->resolve_timer);
    uv_close((uv_handle_t *)&d->resolve_timer, NULL);
    for (size_t k = 0; k < d->n_sched_names; k++)
        if (d->sched_names[k].busy) uv_cancel((uv_req_t *)&d->sched_names[k].req);
    for (size_t i = 0; i < d->n_sched_slots; i++) {
        struct sched_link *l = &d->sched[i];
        if (!l->c || l->retiring) continue;
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

void sched_client_free(peer_daemon *d)
{
    for (size_t k = 0; k < d->n_sched_names; k++) free(d->sched_names[k].addrs);
    free(d->sched_names);
    d->sched_names = NULL;
    d->n_sched_names = 0;
}
