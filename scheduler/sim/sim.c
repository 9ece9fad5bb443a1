/* chunkfly-sched-sim: N simulated peer daemons in one process, speaking the real protocol
 * (proto_conn over TCP) to one or more chunkfly-schedulers, for integration tests.
 *
 * Each simulated peer announces its host, picks a scheduler per task by rendezvous hashing
 * (proto_rendezvous_pick over the schedulers it can reach), registers, and "downloads": every
 * --piece-ms it fetches one piece per task, from the origin if it holds a grant for it, else
 * from a candidate parent that has it (the sim knows every simulated peer's real bitmap), and
 * reports it. Connections that drop are retried; after a reconnect the peer re-announces and
 * re-registers its tasks with its bitmap (soft state).
 *
 * Faults (--fault): kill-granted (the first peer to get a grant disconnects), hang-granted (it
 * stops fetching but keeps heartbeating), freeze-granted (it stops everything, connection
 * open), kill-parent (the peer listed most as a candidate disconnects).
 *
 * Prints "key=value" result lines; exit 0 when every live peer completed every task with no
 * invariant broken (no double grant while the holder is alive, nobody its own parent, no dead
 * parent offered after the scheduler learned of the death). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cf/log.h"
#include "flow_sim.h"
#include "proto/conn.h"
#include "proto/handshake.h"
#include "proto/msg.h"
#include "proto/piece.h"
#include "proto/rendezvous.h"

#define MAX_SCHED 8
#define MIB       (1u << 20)

enum fault { F_NONE, F_KILL_GRANTED, F_HANG_GRANTED, F_FREEZE_GRANTED, F_KILL_PARENT };

struct ptask {
    uint8_t *have, *granted;
    uint32_t nhave;
    int *cands;
    int ncands;
    int sched;            /* scheduler it is registered on, -1 none */
    uint64_t progress_ms; /* last piece or (re-)registration */
    int answered;
    int ever_answered; /* later registrations say "rs" (re-registration), as chunkfly-peer does */
    int finished_sent;
};

struct speer;
struct pconn {
    proto_conn *c;
    struct speer *p;
    int si, ready;
    proto_sched_health h;
};

struct speer {
    int idx;
    char id[32];
    struct pconn conns[MAX_SCHED];
    struct ptask *pt;
    int dead, hung, frozen;
    uint64_t hb_seq;
};

struct stask {
    char id[PROTO_TASK_ID_LEN + 1];
    uint64_t len;
    uint32_t pc;
    uint32_t *origin_fetch;
    int *grant_holder;
};

static struct {
    uv_loop_t *loop;
    int n_sched;
    char *sched[MAX_SCHED];
    struct sockaddr_storage sched_addr[MAX_SCHED];
    int n_peers, n_tasks;
    uint32_t pieces, piece_ms;
    enum fault fault;
    uint32_t fault_after_ms;
    uint32_t timeout_s;
    struct speer *peers;
    struct stask *tasks;
    uv_timer_t fetch_timer, hb_timer, retry_timer, fault_timer, deadline;
    int victim;
    uint64_t fault_at;
    int fault_armed, fault_done;
    uint64_t start_ms;
    /* results */
    uint64_t grants, grant_violations, regranted, self_parent, stale_cands, reparented;
    uint64_t waits, errors, bad_answers, reconnects, cand_msgs, reschedules;
    size_t max_cands;
    int finished;
    int rc;
} g;

static uint64_t now(void)
{
    return uv_now(g.loop);
}

static int peer_index(const char *host_id)
{
    int i;
    if (sscanf(host_id, "sim-%d", &i) != 1 || i < 0 || i >= g.n_peers) return -1;
    return i;
}

static void send_msg(struct pconn *pc, const proto_msg *m)
{
    cf_err err = {0};
    if (!pc->c) return;
    int rc = proto_conn_send(pc->c, m, NULL, 0, &err);
    if (rc && rc != -ENOTCONN)
        fprintf(stderr, "sim: %s: send %s: %s\n", pc->p->id, proto_msg_type_name(m->type),
                cf_err_str(&err, rc));
}

static void report_piece(struct speer *p, int t, uint32_t piece, const char *parent)
{
    struct ptask *pt = &p->pt[t];
    if (pt->sched < 0) return;
    proto_piece_run run = {piece, 1};
    proto_msg m = {.type = PROTO_MSG_PIECE_REPORT};
    m.u.piece_report.task_id = g.tasks[t].id;
    m.u.piece_report.runs = &run;
    m.u.piece_report.n_runs = 1;
    m.u.piece_report.parent_id = parent;
    send_msg(&p->conns[pt->sched], &m);
}

static void send_register(struct speer *p, int t, int si)
{
    struct ptask *pt = &p->pt[t];
    struct pconn *pc = &p->conns[si];
    pt->sched = si;
    pt->answered = 0;
    pt->progress_ms = now();
    pt->ncands = 0;
    proto_msg m = {.type = PROTO_MSG_REGISTER_TASK};
    m.u.register_task.task_id = g.tasks[t].id;
    m.u.register_task.content_length = g.tasks[t].len;
    m.u.register_task.origin = "sim.example/blob";
    m.u.register_task.resync = pt->ever_answered;
    send_msg(pc, &m);
    if (pt->nhave) {
        /* soft state: tell the (possibly new) scheduler what we already hold */
        proto_bitmap b = {0};
        proto_piece_run *runs = NULL;
        size_t n = 0;
        if (proto_bitmap_init(&b, g.tasks[t].pc) == 0) {
            for (uint32_t i = 0; i < g.tasks[t].pc; i++)
                if (pt->have[i]) proto_bitmap_set(&b, i);
            if (proto_bitmap_delta(NULL, &b, &runs, &n) == 0 && n) {
                proto_msg r = {.type = PROTO_MSG_PIECE_REPORT};
                r.u.piece_report.task_id = g.tasks[t].id;
                r.u.piece_report.runs = runs;
                r.u.piece_report.n_runs = n;
                r.u.piece_report.parent_id = "";
                /* "" would count as origin fetches there; these were reported before, so
                 * name ourselves as the source to keep the origin counters honest */
                r.u.piece_report.parent_id = p->id;
                send_msg(pc, &r);
            }
            free(runs);
            proto_bitmap_free(&b);
        }
        if (pt->nhave == g.tasks[t].pc) {
            proto_msg f = {.type = PROTO_MSG_TASK_FINISHED};
            f.u.task_finished.task_id = g.tasks[t].id;
            f.u.task_finished.content_length = g.tasks[t].len;
            send_msg(pc, &f);
        }
    }
}

static int pick_sched(struct speer *p, int t)
{
    const char *addrs[MAX_SCHED];
    proto_sched_health h[MAX_SCHED];
    for (int i = 0; i < g.n_sched; i++) {
        addrs[i] = g.sched[i];
        h[i] = p->conns[i].h;
    }
    return proto_rendezvous_pick(g.tasks[t].id, addrs, h, (size_t)g.n_sched, NULL);
}

static void kill_peer(struct speer *p, const char *why)
{
    if (p->dead) return;
    fprintf(stderr, "sim: fault: %s %s\n", why, p->id);
    p->dead = 1;
    for (int i = 0; i < g.n_sched; i++)
        if (p->conns[i].c) proto_conn_close(p->conns[i].c, 0, "killed by the simulator");
}

/* ---- incoming messages ---- */

static int task_index(const char *id)
{
    for (int t = 0; t < g.n_tasks; t++)
        if (strcmp(g.tasks[t].id, id) == 0) return t;
    return -1;
}

static int peer_faulty(int i)
{
    struct speer *q = &g.peers[i];
    return q->dead || q->hung || q->frozen;
}

static void on_grant(struct speer *p, const proto_back_to_source *b)
{
    int t = task_index(b->task_id);
    if (t < 0) return;
    struct stask *st = &g.tasks[t];
    struct ptask *pt = &p->pt[t];
    for (size_t r = 0; r < b->n_runs; r++) {
        for (uint32_t i = b->runs[r].start; i < b->runs[r].start + b->runs[r].count; i++) {
            if (i >= st->pc) {
                g.bad_answers++;
                continue;
            }
            g.grants++;
            int prev = st->grant_holder[i];
            if (prev >= 0 && prev != p->idx) {
                struct speer *q = &g.peers[prev];
                if (q->pt[t].granted[i] && !q->pt[t].have[i]) {
                    if (!peer_faulty(prev))
                        g.grant_violations++;
                    else
                        g.regranted++;
                }
            }
            st->grant_holder[i] = p->idx;
            if (!pt->have[i]) pt->granted[i] = 1;
        }
    }
    if ((g.fault == F_KILL_GRANTED || g.fault == F_HANG_GRANTED || g.fault == F_FREEZE_GRANTED) &&
        !g.fault_armed) {
        g.fault_armed = 1;
        g.victim = p->idx;
        g.fault_at = now() + g.fault_after_ms;
    }
}

static void on_candidates(struct speer *p, const proto_candidates *c)
{
    int t = task_index(c->task_id);
    if (t < 0) return;
    struct ptask *pt = &p->pt[t];
    g.cand_msgs++;
    if (c->n_candidates > g.max_cands) g.max_cands = c->n_candidates;
    int had_victim = 0, has_victim = 0;
    for (int i = 0; i < pt->ncands; i++) had_victim |= g.fault_done && pt->cands[i] == g.victim;
    pt->ncands = 0;
    for (size_t i = 0; i < c->n_candidates; i++) {
        int q = peer_index(c->candidates[i].host_id);
        if (q < 0) {
            g.bad_answers++;
            continue;
        }
        if (q == p->idx) g.self_parent++;
        if (g.fault_done && q == g.victim) {
            has_victim = 1;
            /* the scheduler learns of a kill when the TCP connection drops: allow 500 ms */
            if (g.peers[q].dead && now() > g.fault_at + 500) g.stale_cands++;
        }
        pt->cands[pt->ncands++] = q;
    }
    if (had_victim && !has_victim) g.reparented++;
}

static void on_frame(proto_conn *c, const proto_frame_header *h, const uint8_t *body,
                     const uint8_t *payload)
{
    (void)payload;
    struct pconn *pc = proto_conn_data(c);
    struct speer *p = pc->p;
    proto_msg m;
    cf_err err = {0};
    if (proto_msg_decode(h->type, body, h->body_len, h->payload_len, &m, &err)) {
        fprintf(stderr, "sim: %s: undecodable %s: %s\n", p->id, proto_msg_type_name(h->type),
                err.msg);
        g.bad_answers++;
        return;
    }
    if (p->dead || p->frozen) {
        proto_msg_free(&m);
        return;
    }
    switch (m.type) {
    case PROTO_MSG_HELLO: {
        pc->ready = 1;
        proto_sched_health_connect_ok(&pc->h);
        const char *addrs[1] = {"127.0.0.1"};
        proto_msg a = {.type = PROTO_MSG_ANNOUNCE_HOST};
        a.u.announce_host.host_id = p->id;
        a.u.announce_host.addrs = addrs;
        a.u.announce_host.n_addrs = 1;
        a.u.announce_host.upload_port = (uint16_t)(20000 + p->idx);
        a.u.announce_host.upload_slots = 8;
        a.u.announce_host.free_disk = 1ull << 34;
        a.u.announce_host.idc = "sim";
        send_msg(pc, &a);
        break;
    }
    case PROTO_MSG_REGISTER_ANSWER: {
        int t = task_index(m.u.register_answer.task_id);
        if (t < 0 || m.u.register_answer.piece_count != g.tasks[t].pc ||
            m.u.register_answer.piece_size != MIB) {
            g.bad_answers++;
            break;
        }
        p->pt[t].answered = 1;
        p->pt[t].ever_answered = 1;
        break;
    }
    case PROTO_MSG_BACK_TO_SOURCE:
        on_grant(p, &m.u.back_to_source);
        break;
    case PROTO_MSG_CANDIDATES:
        on_candidates(p, &m.u.candidates);
        break;
    case PROTO_MSG_WAIT:
        g.waits++;
        break;
    case PROTO_MSG_HEARTBEAT_REPLY:
        break;
    case PROTO_MSG_ERROR:
        g.errors++;
        fprintf(stderr, "sim: %s: ERROR %u from scheduler: %s\n", p->id, m.u.error.code,
                m.u.error.message);
        break;
    default:
        g.bad_answers++;
    }
    proto_msg_free(&m);
}

static void on_close(proto_conn *c, int status, const char *reason)
{
    struct pconn *pc = proto_conn_data(c);
    struct speer *p = pc->p;
    (void)status;
    (void)reason;
    pc->c = NULL;
    pc->ready = 0;
    if (!p->dead) proto_sched_health_connect_failed(&pc->h, now());
    /* the scheduler forgot us: our registrations there are gone */
    for (int t = 0; t < g.n_tasks; t++) {
        struct ptask *pt = &p->pt[t];
        if (pt->sched != pc->si) continue;
        pt->sched = -1;
        pt->answered = 0;
        pt->ncands = 0;
        memset(pt->granted, 0, g.tasks[t].pc);
    }
}

static void on_connect(proto_conn *c)
{
    struct pconn *pc = proto_conn_data(c);
    proto_hello h;
    proto_hello_init(&h, pc->p->id, PROTO_ROLE_PEER, 0, 0);
    proto_msg m = {.type = PROTO_MSG_HELLO};
    m.u.hello = h;
    send_msg(pc, &m);
}

static void connect_one(struct speer *p, int si)
{
    struct pconn *pc = &p->conns[si];
    if (pc->c || p->dead) return;
    proto_conn_cbs cbs = {.on_frame = on_frame, .on_connect = on_connect, .on_close = on_close};
    proto_conn_opts o = {.idle_timeout_ms = 0};
    int rc =
        proto_conn_connect_tcp(g.loop, (struct sockaddr *)&g.sched_addr[si], &o, &cbs, pc, &pc->c);
    if (rc) {
        pc->c = NULL;
        proto_sched_health_connect_failed(&pc->h, now());
    }
}

/* ---- timers ---- */

static void finish(int ok);

static void check_done(void)
{
    for (int i = 0; i < g.n_peers; i++) {
        struct speer *p = &g.peers[i];
        if (p->dead || p->hung || p->frozen) continue;
        for (int t = 0; t < g.n_tasks; t++)
            if (!p->pt[t].finished_sent) return;
    }
    finish(1);
}

static void fetch_one(struct speer *p, int t)
{
    struct stask *st = &g.tasks[t];
    struct ptask *pt = &p->pt[t];
    int target = pick_sched(p, t);
    if (target < 0) return;
    if (pt->sched != target) {
        if (!p->conns[target].ready) return;
        send_register(p, t, target);
        return;
    }
    if (!pt->answered || pt->finished_sent) return;
    if (pt->nhave == st->pc) {
        proto_msg f = {.type = PROTO_MSG_TASK_FINISHED};
        f.u.task_finished.task_id = st->id;
        f.u.task_finished.content_length = st->len;
        send_msg(&p->conns[pt->sched], &f);
        pt->finished_sent = 1;
        return;
    }
    /* 1. a granted piece from the origin */
    for (uint32_t i = 0; i < st->pc; i++) {
        if (!pt->granted[i] || pt->have[i]) continue;
        pt->granted[i] = 0;
        pt->have[i] = 1;
        pt->nhave++;
        st->origin_fetch[i]++;
        pt->progress_ms = now();
        report_piece(p, t, i, "");
        return;
    }
    /* 2. a piece from a live candidate that has it (random start spreads the load) */
    uint32_t off = (uint32_t)rand() % (st->pc ? st->pc : 1);
    for (int k = 0; k < pt->ncands; k++) {
        struct speer *q = &g.peers[pt->cands[k]];
        if (q->dead || q->frozen) continue;
        for (uint32_t j = 0; j < st->pc; j++) {
            uint32_t i = (off + j) % st->pc;
            if (pt->have[i] || !q->pt[t].have[i]) continue;
            pt->have[i] = 1;
            pt->nhave++;
            pt->progress_ms = now();
            report_piece(p, t, i, q->id);
            return;
        }
    }
    /* stuck for a while with nothing granted: ask for a new schedule (re-register), as a
     * real peer does when its candidates run dry */
    int granted = 0;
    for (uint32_t i = 0; i < st->pc && !granted; i++) granted = pt->granted[i] && !pt->have[i];
    if (!granted && now() - pt->progress_ms > 1500) {
        g.reschedules++;
        send_register(p, t, pt->sched);
    }
}

static void on_fetch(uv_timer_t *tm)
{
    (void)tm;
    for (int i = 0; i < g.n_peers; i++) {
        struct speer *p = &g.peers[i];
        if (p->dead || p->hung || p->frozen) continue;
        for (int t = 0; t < g.n_tasks; t++) fetch_one(p, t);
    }
    check_done();
}

static void on_heartbeat(uv_timer_t *tm)
{
    (void)tm;
    for (int i = 0; i < g.n_peers; i++) {
        struct speer *p = &g.peers[i];
        if (p->dead || p->frozen) continue;
        for (int s = 0; s < g.n_sched; s++) {
            if (!p->conns[s].ready) continue;
            proto_msg m = {.type = PROTO_MSG_HEARTBEAT};
            m.u.heartbeat.host_id = p->id;
            m.u.heartbeat.seq = ++p->hb_seq;
            send_msg(&p->conns[s], &m);
        }
    }
}

static void on_retry(uv_timer_t *tm)
{
    (void)tm;
    for (int i = 0; i < g.n_peers; i++)
        for (int s = 0; s < g.n_sched; s++)
            if (!g.peers[i].conns[s].c && !g.peers[i].dead && !g.peers[i].frozen) {
                g.reconnects++;
                connect_one(&g.peers[i], s);
            }
}

static void on_fault(uv_timer_t *tm)
{
    (void)tm;
    if (g.fault_done) return;
    if (g.fault == F_KILL_PARENT) {
        if (now() - g.start_ms < g.fault_after_ms) return;
        int count[4096] = {0}, best = -1;
        for (int i = 0; i < g.n_peers && i < 4096; i++)
            for (int t = 0; t < g.n_tasks; t++)
                for (int k = 0; k < g.peers[i].pt[t].ncands; k++) {
                    int q = g.peers[i].pt[t].cands[k];
                    if (q < 4096 && ++count[q] > (best >= 0 ? count[best] : 0)) best = q;
                }
        if (best < 0) return;
        g.victim = best;
        g.fault_at = now();
        g.fault_done = 1;
        fprintf(stderr, "sim: kill-parent: %s is a candidate in %d lists\n", g.peers[best].id,
                count[best]);
        kill_peer(&g.peers[best], "kill-parent");
        return;
    }
    if (!g.fault_armed || now() < g.fault_at) return;
    struct speer *v = &g.peers[g.victim];
    g.fault_done = 1;
    g.fault_at = now();
    if (g.fault == F_KILL_GRANTED)
        kill_peer(v, "kill-granted");
    else if (g.fault == F_HANG_GRANTED) {
        fprintf(stderr, "sim: fault: hang-granted %s\n", v->id);
        v->hung = 1;
    } else if (g.fault == F_FREEZE_GRANTED) {
        fprintf(stderr, "sim: fault: freeze-granted %s\n", v->id);
        v->frozen = 1;
    }
}

static void on_deadline(uv_timer_t *tm)
{
    (void)tm;
    fprintf(stderr, "sim: timeout after %u s\n", g.timeout_s);
    finish(0);
}

static void finish(int ok)
{
    if (g.finished) return;
    g.finished = 1;
    uint64_t total = 0, maxf = 0, missing = 0;
    int complete = 0, live = 0;
    for (int t = 0; t < g.n_tasks; t++)
        for (uint32_t i = 0; i < g.tasks[t].pc; i++) {
            total += g.tasks[t].origin_fetch[i];
            if (g.tasks[t].origin_fetch[i] > maxf) maxf = g.tasks[t].origin_fetch[i];
        }
    for (int i = 0; i < g.n_peers; i++) {
        struct speer *p = &g.peers[i];
        if (p->dead || p->hung || p->frozen) continue;
        live++;
        int all = 1;
        for (int t = 0; t < g.n_tasks; t++) {
            if (!p->pt[t].finished_sent) all = 0;
            missing += g.tasks[t].pc - p->pt[t].nhave;
        }
        complete += all;
    }
    if (g.grant_violations || g.self_parent || g.stale_cands || g.bad_answers) ok = 0;
    printf("ok=%d\ncomplete=%d\nlive=%d\nmissing_pieces=%llu\norigin_fetches=%llu\n"
           "max_fetch_per_piece=%llu\ngrants=%llu\ngrant_violations=%llu\nregranted=%llu\n"
           "self_parent=%llu\nstale_candidates=%llu\nreparented=%llu\ncandidate_msgs=%llu\n"
           "reschedules=%llu\nwaits=%llu\nerrors=%llu\nbad_answers=%llu\nreconnects=%llu\nelapsed_"
           "ms=%llu\n",
           ok, complete, live, (unsigned long long)missing, (unsigned long long)total,
           (unsigned long long)maxf, (unsigned long long)g.grants,
           (unsigned long long)g.grant_violations, (unsigned long long)g.regranted,
           (unsigned long long)g.self_parent, (unsigned long long)g.stale_cands,
           (unsigned long long)g.reparented, (unsigned long long)g.cand_msgs,
           (unsigned long long)g.reschedules, (unsigned long long)g.waits,
           (unsigned long long)g.errors, (unsigned long long)g.bad_answers,
           (unsigned long long)g.reconnects, (unsigned long long)(now() - g.start_ms));
    printf("max_candidates_seen=%zu\n", g.max_cands);
    for (int t = 0; t < g.n_tasks; t++) {
        /* where the first live peer has the task registered (the swarm agrees by rendezvous) */
        int si = -1;
        for (int i = 0; i < g.n_peers && si < 0; i++)
            if (!peer_faulty(i)) si = g.peers[i].pt[t].sched;
        printf("task %s %s\n", g.tasks[t].id, si >= 0 ? g.sched[si] : "-");
    }
    fflush(stdout);
    g.rc = ok ? 0 : 1;
    for (int i = 0; i < g.n_peers; i++)
        for (int s = 0; s < g.n_sched; s++)
            if (g.peers[i].conns[s].c) proto_conn_close(g.peers[i].conns[s].c, 0, "sim done");
    uv_close((uv_handle_t *)&g.fetch_timer, NULL);
    uv_close((uv_handle_t *)&g.hb_timer, NULL);
    uv_close((uv_handle_t *)&g.retry_timer, NULL);
    uv_close((uv_handle_t *)&g.fault_timer, NULL);
    uv_close((uv_handle_t *)&g.deadline, NULL);
}

static const char usage[] =
    "usage: chunkfly-sched-sim --sched IP:PORT [--sched ...] [--peers 20] [--tasks 1]\n"
    "       [--pieces 64] [--piece-ms 20] [--fault none|kill-granted|hang-granted|\n"
    "       freeze-granted|kill-parent] [--fault-after MS] [--timeout S] [--log-level L]\n"
    "       chunkfly-sched-sim flow [options]   (in-process mesh simulator, flow --help)\n";

int main(int argc, char **argv)
{
    /* `chunkfly-sched-sim flow ...`: the in-process mesh simulator (flow_sim.c) */
    if (argc > 1 && strcmp(argv[1], "flow") == 0) return flow_sim_main(argc - 1, argv + 1);
    g.n_peers = 20;
    g.n_tasks = 1;
    g.pieces = 64;
    g.piece_ms = 20;
    g.fault_after_ms = 60;
    g.timeout_s = 60;
    g.victim = -1;
    cf_log_set_ident("sim");
    cf_log_set_level(CF_LOG_WARN);
    static const struct option lo[] = {
        {"sched", 1, NULL, 's'},       {"peers", 1, NULL, 'p'},    {"tasks", 1, NULL, 't'},
        {"pieces", 1, NULL, 'n'},      {"piece-ms", 1, NULL, 'm'}, {"fault", 1, NULL, 'f'},
        {"fault-after", 1, NULL, 'a'}, {"timeout", 1, NULL, 'T'},  {"log-level", 1, NULL, 'L'},
        {"help", 0, NULL, 'h'},        {"version", 0, NULL, 'V'},  {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "hV", lo, NULL)) != -1) {
        switch (ch) {
        case 'V':
            printf("chunkfly-sched-sim %s\n", CHUNKFLY_VERSION);
            return 0;
        case 's':
            if (g.n_sched == MAX_SCHED) return 2;
            if (proto_addr_parse(optarg, &g.sched_addr[g.n_sched])) {
                fprintf(stderr, "sim: --sched '%s' is not IP:PORT\n", optarg);
                return 2;
            }
            g.sched[g.n_sched++] = optarg;
            break;
        case 'p':
            g.n_peers = atoi(optarg);
            break;
        case 't':
            g.n_tasks = atoi(optarg);
            break;
        case 'n':
            g.pieces = (uint32_t)atoi(optarg);
            break;
        case 'm':
            g.piece_ms = (uint32_t)atoi(optarg);
            break;
        case 'a':
            g.fault_after_ms = (uint32_t)atoi(optarg);
            break;
        case 'T':
            g.timeout_s = (uint32_t)atoi(optarg);
            break;
        case 'L': {
            enum cf_log_level l;
            if (cf_log_parse_level(optarg, &l) == 0) cf_log_set_level(l);
            break;
        }
        case 'f':
            if (!strcmp(optarg, "none"))
                g.fault = F_NONE;
            else if (!strcmp(optarg, "kill-granted"))
                g.fault = F_KILL_GRANTED;
            else if (!strcmp(optarg, "hang-granted"))
                g.fault = F_HANG_GRANTED;
            else if (!strcmp(optarg, "freeze-granted"))
                g.fault = F_FREEZE_GRANTED;
            else if (!strcmp(optarg, "kill-parent"))
                g.fault = F_KILL_PARENT;
            else {
                fprintf(stderr, "sim: unknown fault '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (g.n_sched == 0 || g.n_peers < 1 || g.n_peers > 4096 || g.n_tasks < 1 || g.n_tasks > 1000 ||
        g.pieces < 1 || g.pieces > 4096 || g.piece_ms < 1) {
        fputs(usage, stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    srand(1);
    g.loop = uv_default_loop();
    g.tasks = calloc((size_t)g.n_tasks, sizeof(*g.tasks));
    g.peers = calloc((size_t)g.n_peers, sizeof(*g.peers));
    if (!g.tasks || !g.peers) return 1;
    for (int t = 0; t < g.n_tasks; t++) {
        uint8_t d[32] = {0};
        d[0] = 0xc0;
        d[30] = (uint8_t)(t >> 8);
        d[31] = (uint8_t)t;
        proto_task_id_from_digest(d, g.tasks[t].id);
        g.tasks[t].pc = g.pieces;
        g.tasks[t].len = (uint64_t)g.pieces * MIB - 4096; /* last piece shorter */
        g.tasks[t].origin_fetch = calloc(g.pieces, sizeof(uint32_t));
        g.tasks[t].grant_holder = malloc(g.pieces * sizeof(int));
        if (!g.tasks[t].origin_fetch || !g.tasks[t].grant_holder) return 1;
        for (uint32_t i = 0; i < g.pieces; i++) g.tasks[t].grant_holder[i] = -1;
    }
    for (int i = 0; i < g.n_peers; i++) {
        struct speer *p = &g.peers[i];
        p->idx = i;
        snprintf(p->id, sizeof(p->id), "sim-%d", i);
        p->pt = calloc((size_t)g.n_tasks, sizeof(*p->pt));
        if (!p->pt) return 1;
        for (int t = 0; t < g.n_tasks; t++) {
            p->pt[t].have = calloc(g.pieces, 1);
            p->pt[t].granted = calloc(g.pieces, 1);
            p->pt[t].cands = calloc(PROTO_MAX_CANDIDATES, sizeof(int));
            p->pt[t].sched = -1;
            if (!p->pt[t].have || !p->pt[t].granted || !p->pt[t].cands) return 1;
        }
        for (int s = 0; s < g.n_sched; s++) {
            p->conns[s].p = p;
            p->conns[s].si = s;
            proto_sched_health_init(&p->conns[s].h);
            connect_one(p, s);
        }
    }
    g.start_ms = now();
    uv_timer_init(g.loop, &g.fetch_timer);
    uv_timer_init(g.loop, &g.hb_timer);
    uv_timer_init(g.loop, &g.retry_timer);
    uv_timer_init(g.loop, &g.fault_timer);
    uv_timer_init(g.loop, &g.deadline);
    uv_timer_start(&g.fetch_timer, on_fetch, g.piece_ms, g.piece_ms);
    uv_timer_start(&g.hb_timer, on_heartbeat, 2000, 2000);
    uv_timer_start(&g.retry_timer, on_retry, 300, 300);
    uv_timer_start(&g.fault_timer, on_fault, 10, 10);
    uv_timer_start(&g.deadline, on_deadline, (uint64_t)g.timeout_s * 1000, 0);
    uv_run(g.loop, UV_RUN_DEFAULT);
    for (int t = 0; t < g.n_tasks; t++) {
        free(g.tasks[t].origin_fetch);
        free(g.tasks[t].grant_holder);
    }
    for (int i = 0; i < g.n_peers; i++) {
        for (int t = 0; t < g.n_tasks; t++) {
            free(g.peers[i].pt[t].have);
            free(g.peers[i].pt[t].granted);
            free(g.peers[i].pt[t].cands);
        }
        free(g.peers[i].pt);
    }
    free(g.peers);
    free(g.tasks);
    uv_loop_close(g.loop);
    return g.rc;
}
