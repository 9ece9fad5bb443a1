/* libFuzzer target: stateful sequences of peer messages into the scheduling core (sched.h), no
 * network. Four fake hosts; every step builds a message from a few input bytes (or takes a
 * raw body), encodes it and decodes it again with proto_msg_decode (what a connection hands
 * the server), then applies it as sched_server.c does (ANNOUNCE_HOST first, then
 * REGISTER_TASK, PIECE_REPORT, TASK_FINISHED, TASK_FAILED, LEAVE_TASK, BAD_PARENT, HEARTBEAT,
 * LEAVE_HOST, DIGESTS_PUBLISH, ERROR DIGEST_MISMATCH), with time moving on and ticks.
 *
 * Checked after every step: each decision names a child and parents of the same task (never
 * the child itself, at most max_candidates), grants lie within the task; a host is in at most
 * max_tasks_per_host tasks; the per-piece state of all tasks stays within the state budget;
 * the stats gauges agree with what iteration finds. Leaks are found by LeakSanitizer (the core
 * is freed at the end of each input). Input: a sequence of steps
 *   [op][host][task][a][b][c][d]   (7 bytes; op 0xff: [type][len][len bytes of raw body])
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/buf.h"
#include "proto/msg.h"
#include "proto/piece.h"
#include "sched/sched.h"

#define N_HOSTS 4
#define N_TASKS 6

struct fake {
    sched *s;
    sched_host *host[N_HOSTS]; /* NULL until announced, and after it left/expired */
    unsigned max_candidates;
};

static char task_ids[N_TASKS][PROTO_TASK_ID_LEN + 1];
static const char *host_ids[N_HOSTS] = {"10.0.0.1-a", "10.0.0.2-b", "10.0.0.3-c", "10.0.0.4-d"};

static void on_decide(void *ctx, const struct sched_decision *d)
{
    struct fake *f = ctx;
    if (!d->peer) abort();
    sched_task *t = sched_peer_task(d->peer);
    if (d->n_parents > f->max_candidates) abort();
    for (size_t i = 0; i < d->n_parents; i++) {
        if (d->parents[i] == d->peer || sched_peer_task(d->parents[i]) != t) abort();
        if (sched_peer_host(d->parents[i]) == sched_peer_host(d->peer)) abort();
    }
    uint32_t pc = sched_task_piece_count(t);
    for (size_t i = 0; i < d->n_grant; i++)
        if (!d->grant[i].count || d->grant[i].start >= pc ||
            d->grant[i].count > pc - d->grant[i].start)
            abort();
}

static void on_host_gone(void *ctx, sched_host *h)
{
    struct fake *f = ctx;
    for (int i = 0; i < N_HOSTS; i++)
        if (f->host[i] == h) f->host[i] = NULL;
}

struct tally {
    uint64_t tasks, pieces;
};
static void count_task(void *arg, const sched_task *t)
{
    struct tally *c = arg;
    c->tasks++;
    c->pieces += sched_task_piece_count(t);
}
struct hcount {
    uint64_t hosts;
    unsigned max_peers;
};
static void count_host(void *arg, const sched_host *h)
{
    struct hcount *c = arg;
    struct sched_host_view v;
    sched_host_view_get(h, &v);
    c->hosts++;
    if (v.peers > c->max_peers) c->max_peers = v.peers;
}

/* The message as a connection would deliver it: encoded, then decoded. 0 = *out to free. */
static int roundtrip(const proto_msg *m, cf_buf *b, proto_msg *out)
{
    cf_buf_reset(b);
    if (proto_msg_encode_body(m, b, NULL)) return -1;
    return proto_msg_decode(m->type, b->data, b->len, 0, out, NULL);
}

static void apply(struct fake *f, int hi, const proto_msg *m, uint64_t now)
{
    sched *s = f->s;
    sched_host *h = f->host[hi];
    cf_err err = {0};
    if (m->type == PROTO_MSG_ANNOUNCE_HOST) {
        const proto_announce_host *a = &m->u.announce_host;
        /* the server binds a connection to one host id (and TLS to the certificate's) */
        if (a->n_addrs == 0 || strcmp(a->host_id, host_ids[hi]) != 0) return;
        char addr[PROTO_MAX_ADDR_LEN + 16];
        snprintf(addr, sizeof(addr), "%s:%u", a->addrs[0], a->upload_port);
        struct sched_host_info info = {.host_id = a->host_id,
                                       .addr = addr,
                                       .idc = a->idc,
                                       .zone = a->zone,
                                       .rack = a->rack,
                                       .upload_slots = a->upload_slots,
                                       .upload_bw = a->upload_bw};
        sched_host *nh = NULL;
        if (sched_host_announce(s, &info, now, &nh) == 0) {
            f->host[hi] = nh;
            sched_host_set_conn(nh, f);
        }
        return;
    }
    if (!h) return; /* ANNOUNCE_HOST expected first */
    switch (m->type) {
    case PROTO_MSG_REGISTER_TASK: {
        const proto_register_task *r = &m->u.register_task;
        sched_task *t = sched_task_find(s, r->task_id);
        if (t && sched_task_length(t) != r->content_length) break;
        uint32_t ps = t ? sched_task_piece_size(t) : proto_piece_size_for(r->content_length);
        if (proto_piece_count(r->content_length, ps) > PROTO_MAX_PIECES) break;
        sched_register(s, h, r->task_id, r->content_length, now, NULL, &err);
        break;
    }
    case PROTO_MSG_PIECE_REPORT: {
        const proto_piece_report *r = &m->u.piece_report;
        struct sched_run *runs = malloc((r->n_runs ? r->n_runs : 1) * sizeof(*runs));
        if (!runs) break;
        for (size_t i = 0; i < r->n_runs; i++)
            runs[i] = (struct sched_run){r->runs[i].start, r->runs[i].count};
        sched_report_pieces(s, h, r->task_id, runs, r->n_runs, r->parent_id, now, &err);
        free(runs);
        break;
    }
    case PROTO_MSG_TASK_FINISHED:
        sched_task_finished(s, h, m->u.task_finished.task_id, now, &err);
        break;
    case PROTO_MSG_TASK_FAILED:
        sched_leave_task(s, h, m->u.task_failed.task_id, now);
        break;
    case PROTO_MSG_LEAVE_TASK:
        sched_leave_task(s, h, m->u.leave_task.task_id, now);
        break;
    case PROTO_MSG_BAD_PARENT:
        sched_bad_parent(s, h, m->u.bad_parent.task_id, m->u.bad_parent.parent_id,
                         m->u.bad_parent.reason == PROTO_BAD_PARENT_DIGEST_MISMATCH ||
                             m->u.bad_parent.reason == PROTO_BAD_PARENT_OTHER,
                         now);
        break;
    case PROTO_MSG_LEAVE_HOST:
        f->host[hi] = NULL;
        sched_host_set_conn(h, NULL);
        sched_host_leave(s, h, now);
        return;
    case PROTO_MSG_HEARTBEAT:
        break;
    case PROTO_MSG_DIGESTS_PUBLISH: {
        const proto_digest_list *l = &m->u.digests;
        sched_task *t = sched_task_find(s, l->task_id);
        sched_peer *p = t ? sched_find_peer(s, h, l->task_id) : NULL;
        if (!p || sched_peer_have(p) != sched_task_piece_count(t)) break;
        if (proto_digest_list_check(l, l->task_id, sched_task_piece_size(t), sched_task_length(t),
                                    NULL) == 0)
            sched_task_set_digests(t, l->digests, (size_t)l->piece_count * 32, h);
        break;
    }
    case PROTO_MSG_ERROR: {
        const proto_error *e = &m->u.error;
        if (e->code != PROTO_E_DIGEST_MISMATCH || !e->task_id || !e->task_id[0]) break;
        sched_task *t = sched_task_find(s, e->task_id);
        if (t && sched_find_peer(s, h, e->task_id)) sched_task_discredit_digests(t);
        break;
    }
    default:
        break;
    }
    if (f->host[hi]) sched_host_heartbeat(s, f->host[hi], UINT32_MAX, now); /* any frame */
}

static void check(struct fake *f, const struct sched_config *cfg)
{
    struct sched_stats st;
    sched_stats_get(f->s, &st);
    struct tally tl = {0};
    sched_foreach_task(f->s, count_task, &tl);
    struct hcount hc = {0};
    sched_foreach_host(f->s, count_host, &hc);
    if (st.tasks != tl.tasks || st.hosts != hc.hosts) abort();
    if (hc.max_peers > cfg->max_tasks_per_host) abort();
    if (tl.pieces > cfg->state_budget) abort(); /* >= 1 byte of state per piece */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!task_ids[0][0])
        for (int i = 0; i < N_TASKS; i++) {
            snprintf(task_ids[i], sizeof(task_ids[i]), "sha256:");
            for (int k = 0; k < 64; k++) task_ids[i][7 + k] = "0123456789abcdef"[(i * 7 + k) % 16];
            task_ids[i][71] = 0;
        }
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.max_tasks_per_host = 3;
    cfg.host_state_budget = 64u << 10;
    cfg.state_budget = 160u << 10;
    cfg.max_candidates = 3;
    struct fake f = {.max_candidates = cfg.max_candidates};
    struct sched_ops ops = {.decide = on_decide, .host_gone = on_host_gone, .ctx = &f};
    f.s = sched_new(&cfg, &ops);
    if (!f.s) return 0;
    cf_buf b = {0};
    uint64_t now = 1000;
    size_t pos = 0;
    int steps = 0;
    while (pos + 7 <= size && steps++ < 256) {
        const uint8_t *q = data + pos;
        int hi = q[1] % N_HOSTS;
        const char *tid = task_ids[q[2] % N_TASKS];
        uint32_t a = q[3], bb = q[4], c = q[5];
        now += (uint64_t)q[6] * 50; /* up to 12.7 s per step: heartbeats expire, stalls move */
        proto_msg m = {0}, d;
        int raw = q[0] == 0xff;
        if (raw) { /* a raw body of any message type */
            size_t n = q[4] | (size_t)(q[5] & 0x3) << 8;
            pos += 7;
            if (n > size - pos) n = size - pos;
            if (proto_msg_decode(q[3], data + pos, n, 0, &d, NULL) == 0) {
                apply(&f, hi, &d, now);
                proto_msg_free(&d);
            }
            pos += n;
        } else {
            pos += 7;
            const char *addr = "127.0.0.1";
            proto_piece_run runs[2] = {{a * 4, bb % 17 + 1}, {c * 16, 1}};
            static uint8_t digests[32 * 64];
            /* content lengths from 1 byte to ~1 GiB: piece counts from 1 to a few thousand */
            uint64_t cl = ((uint64_t)a << 22 | (uint64_t)bb << 14 | c) + 1;
            switch (q[0] % 11) {
            case 0:
                m.type = PROTO_MSG_ANNOUNCE_HOST;
                m.u.announce_host = (proto_announce_host){.host_id = host_ids[hi],
                                                          .addrs = &addr,
                                                          .n_addrs = 1,
                                                          .upload_port = (uint16_t)(4000 + hi),
                                                          .upload_slots = a % 8,
                                                          .rack = bb & 1 ? "r1" : "r2"};
                break;
            case 1:
            case 2:
                m.type = PROTO_MSG_REGISTER_TASK;
                m.u.register_task = (proto_register_task){
                    .task_id = tid, .content_length = cl, .origin = "r.example/a/b"};
                break;
            case 3:
            case 4:
                m.type = PROTO_MSG_PIECE_REPORT;
                m.u.piece_report =
                    (proto_piece_report){.task_id = tid,
                                         .runs = runs,
                                         .n_runs = 1 + (c & 1),
                                         .parent_id = c & 2 ? host_ids[c % N_HOSTS] : ""};
                break;
            case 5:
                m.type = PROTO_MSG_TASK_FINISHED;
                m.u.task_finished = (proto_task_finished){.task_id = tid, .verified = true};
                break;
            case 6:
                m.type = a & 1 ? PROTO_MSG_TASK_FAILED : PROTO_MSG_LEAVE_TASK;
                if (a & 1)
                    m.u.task_failed = (proto_task_failed){.task_id = tid, .code = PROTO_E_ORIGIN};
                else
                    m.u.leave_task = (proto_leave_task){.task_id = tid};
                break;
            case 7:
                m.type = PROTO_MSG_BAD_PARENT;
                m.u.bad_parent = (proto_bad_parent){.task_id = tid,
                                                    .parent_id = host_ids[a % N_HOSTS],
                                                    .reason = (uint8_t)(1 + bb % 4),
                                                    .piece = c};
                break;
            case 8:
                m.type = a & 1 ? PROTO_MSG_LEAVE_HOST : PROTO_MSG_HEARTBEAT;
                if (a & 1)
                    m.u.leave_host = (proto_leave_host){.host_id = host_ids[hi]};
                else
                    m.u.heartbeat = (proto_heartbeat){.host_id = host_ids[hi], .seq = bb};
                break;
            case 9: {
                sched_task *t = sched_task_find(f.s, tid);
                uint32_t pc = t ? sched_task_piece_count(t) : 1;
                if (pc > 64) pc = 64; /* a list that does not fit the task: refused */
                memset(digests, a, sizeof(digests));
                m.type = PROTO_MSG_DIGESTS_PUBLISH;
                m.u.digests =
                    (proto_digest_list){.task_id = tid,
                                        .piece_size = t ? sched_task_piece_size(t) : 65536,
                                        .piece_count = pc,
                                        .digests = digests};
                break;
            }
            default:
                m.type = PROTO_MSG_ERROR;
                m.u.error = (proto_error){.code = PROTO_E_DIGEST_MISMATCH,
                                          .task_id = tid,
                                          .message = "origin bytes disagree"};
                break;
            }
            if (roundtrip(&m, &b, &d) == 0) {
                apply(&f, hi, &d, now);
                proto_msg_free(&d);
            }
        }
        if (q[6] & 1) sched_tick(f.s, now);
        check(&f, &cfg);
    }
    cf_buf_free(&b);
    sched_free(f.s);
    return 0;
}
