/* `chunkfly-sched-sim flow`: a flow-level mesh simulator running the real policy code.
 *
 * One process, one virtual clock, a heap of events. The scheduler is the real scheduling core
 * (sched_core: sched_host_announce, sched_register, sched_report_pieces, sched_task_finished,
 * sched_bad_parent, sched_host_heartbeat, sched_tick) and every node's downloader is the real
 * piece policy (peer_policy: pp_next, pp_grant, pp_add_candidate, pp_parent_avail,
 * pp_origin_run...), called as peer/download_task.c calls them. The bytes move through the flow
 * model of flow_net.h (per-node up/down capacity, an origin uplink, max-min or per-link fair).
 *
 * What the node model does (mirroring the daemon; constants from peer_daemon_opts_load's
 * defaults, proto_timing and peer/download_timing.h; the scheduler's tick from
 * sched_server_opts_default):
 *  - join: ANNOUNCE_HOST (upload_slots, upload_bw), REGISTER_TASK; one reader (`chunkfly get`)
 *    streams the blob from its start: wants = [first missing piece, last] (range_reader.c), and
 *    the task fetches the whole blob (fetch_whole_blob).
 *  - task_pump: pp_next until it says no; a parent pick is a PIECE_REQUEST on that parent's
 *    connection (the first one also subscribes: AVAIL bitmap back, then one AVAIL_UPDATE per
 *    piece the parent stores, as upload_server.c sends them); an origin pick becomes an origin
 *    run of up to ORIGIN_RUN_BYTES of consecutive pieces (pp_origin_run), one flow that
 *    delivers its pieces as their bytes complete.
 *  - a parent serves a request when it has a free upload slot, else answers BUSY (the child
 *    calls pp_request_failed(PP_FAIL_BUSY)); a piece it does not hold is NOT_HELD.
 *  - each stored piece: pp_piece_stored, one PIECE_REPORT to the scheduler (the daemon sends
 *    one per piece), AVAIL_UPDATE to subscribers, TASK_FINISHED when complete. Finished nodes
 *    stay and serve.
 *  - scheduler answers: BACK_TO_SOURCE -> pp_grant (and whole), CANDIDATES -> pp_add_candidate
 *    (re-ask in 2 s), WAIT -> re-ask later; the daemon's tick (250 ms) re-registers a task with
 *    nothing in flight once re-ask time passed, goes to the origin after mesh_stall without
 *    progress, and pumps; heartbeats every timing.heartbeat_interval with the free slots.
 *  - latency: every message and request takes the one-way latency of both ends (the
 *    scheduler and the origin have none of their own); a piece arrives one latency after its
 *    last byte left the sender.
 * Not modelled: piece timeouts and connection loss (nothing fails), the digest list and
 * hashing, disk, CPU of the peers, the registry's per-request cost, TCP dynamics (see
 * flow_net.h), more than one task, hosts leaving, the scheduler's own CPU as a bottleneck
 * (its CPU time is measured, not charged to the clock).
 *
 * Output: key=value lines on stdout (see --help); --csv writes per-second per-node bytes. */
#include "flow_sim.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cf/config.h"
#include "cf/log.h"
#include "download_timing.h"
#include "flow_net.h"
#include "peer/daemon.h"
#include "piece_policy.h"
#include "proto/piece.h"
#include "proto/timing.h"
#include "sched/sched.h"
#include "sched/sched_server.h"

#define ORIGIN (-1)
#define US     1000000ull

static const char *const task_id =
    "sha256:0000000000000000000000000000000000000000000000000000000000000001";

enum ev_type {
    EV_JOIN,
    EV_SCHED_TICK,
    EV_NODE_TICK,
    EV_AT_SCHED,   /* a node's message reaches the scheduler (p: struct smsg) */
    EV_DECISION,   /* a scheduler decision reaches node a (p: struct dmsg) */
    EV_REQUEST,    /* child b's PIECE_REQUEST for piece c (slot d) reaches parent a */
    EV_FAILED,     /* parent's error for piece c (slot d, why in b) reaches child a */
    EV_SUBSCRIBE,  /* child b subscribes at parent a */
    EV_AVAIL,      /* parent b's AVAIL (p: bitmap) or AVAIL_UPDATE (piece c) reaches child a */
    EV_ORIGIN_REQ, /* node a's origin run (first c, count d) reaches the origin */
    EV_MARK,       /* flow a (version c) reached its mark */
    EV_PIECE,      /* piece c reaches node a from slot b (d: see on_mark) */
};

struct ev {
    uint64_t t, seq;
    int type, a, b;
    uint32_t c, d;
    void *p;
};

enum smsg_type { SM_ANNOUNCE, SM_REGISTER, SM_REPORT, SM_FINISHED, SM_BAD_PARENT };
struct smsg {
    int type, node;
    uint32_t piece;
    int from; /* report: parent node index or ORIGIN; bad parent: the parent */
};

struct dmsg {
    int n_parents;
    int parents[SCHED_MAX_CANDIDATES];
    uint8_t *bits; /* n_parents bitmaps of nb bytes */
    proto_piece_run *runs;
    size_t n_runs;
    uint32_t wait_ms;
};

/* What a flow carries. */
struct xfer {
    int src, dst;
    int slot;             /* child's parent slot; PP_ORIGIN for origin runs */
    uint32_t first, n, k; /* pieces [first, first+n), k delivered so far */
};

struct node {
    int idx, cls;
    char id[16], addr[32];
    double up, down; /* bytes/s */
    uint64_t lat_us, join_us, done_us;
    int joined, registered, finished;
    sched_host *h;
    pp_task pp;
    uint32_t cursor; /* the reader: first piece it has not read */
    uint64_t reask_at_ms, last_progress_ms, next_hb_ms;
    uint32_t slots_used;
    int *subs, n_subs, cap_subs;
    uint64_t bytes_in, bytes_out, from_origin, dup_bytes, busy, refused;
};

struct sim {
    uint32_t sched_tick_ms; /* the scheduler server's housekeeping period */
    /* options */
    int n;
    uint64_t size;
    double up_mbit, down_mbit, origin_mbit, lat_ms;
    double mixed_frac, mixed_mbit;
    int late_n;
    double late_s;
    uint64_t seed;
    const char *csv;
    enum fnet_model model;
    int model_set, reader;
    int announce_bw; /* nodes announce their uplink (the daemon's upload_bandwidth) */
    double max_s;
    /* daemon and scheduler configuration */
    struct peer_daemon_opts o;
    pp_limits lim;
    pp_liars liars;
    sched *s;
    uint32_t piece_size, pieces;
    size_t nb;
    /* state */
    struct node *nodes;
    fnet *net;
    struct ev *heap;
    size_t heap_n, heap_cap;
    uint64_t seq, now, events;
    int done_nodes, joined_nodes;
    uint64_t origin_bytes, origin_last_us; /* origin_last_us: its last piece sent */
    double sched_s;
    uint64_t sched_calls;
    double clock_cost_s; /* what one SCHED_CALL's pair of clock reads adds (subtracted) */
    int oom;
    /* --csv: bytes per second, [second][node + 1] (column 0 = origin out) */
    double *sec_in, *sec_out;
    size_t n_sec;
};

/* ---- event heap ---- */

static int ev_less(const struct ev *a, const struct ev *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void push(struct sim *S, uint64_t t, int type, int a, int b, uint32_t c, uint32_t d, void *p)
{
    if (S->heap_n == S->heap_cap) {
        size_t nc = S->heap_cap ? 2 * S->heap_cap : 1024;
        struct ev *nh = realloc(S->heap, nc * sizeof(*nh));
        if (!nh) {
            S->oom = 1;
            free(p);
            return;
        }
        S->heap = nh;
        S->heap_cap = nc;
    }
    struct ev e = {t, S->seq++, type, a, b, c, d, p};
    size_t i = S->heap_n++;
    while (i) {
        size_t par = (i - 1) / 2;
        if (!ev_less(&e, &S->heap[par])) break;
        S->heap[i] = S->heap[par];
        i = par;
    }
    S->heap[i] = e;
}

static struct ev pop(struct sim *S)
{
    struct ev top = S->heap[0], last = S->heap[--S->heap_n];
    size_t i = 0, n = S->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ev_less(&S->heap[c + 1], &S->heap[c])) c++;
        if (!ev_less(&S->heap[c], &last)) break;
        S->heap[i] = S->heap[c];
        i = c;
    }
    if (n) S->heap[i] = last;
    return top;
}

static void free_payload(struct ev *e)
{
    if (e->type == EV_DECISION && e->p) {
        struct dmsg *m = e->p;
        free(m->bits);
        free(m->runs);
    }
    free(e->p);
}

/* ---- helpers ---- */

static uint64_t now_ms(const struct sim *S)
{
    return S->now / 1000;
}

static uint64_t path_us(const struct sim *S, int a, int b)
{
    return (a == ORIGIN ? 0 : S->nodes[a].lat_us) + (b == ORIGIN ? 0 : S->nodes[b].lat_us);
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mono(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* CPU time spent inside the scheduling core (this thread's, so other processes on a shared
 * machine do not count; decide callbacks included: they only copy the answer). */
#define SCHED_CALL(S, call)                                                                        \
    do {                                                                                           \
        double t0_ = clock_s(CLOCK_THREAD_CPUTIME_ID);                                             \
        call;                                                                                      \
        (S)->sched_s += clock_s(CLOCK_THREAD_CPUTIME_ID) - t0_;                                    \
        (S)->sched_calls++;                                                                        \
    } while (0)

/* The mean cost of an empty SCHED_CALL (the thread CPU clock is a system call, about as long
 * as a small sched_* call): subtracted from the total so the figure is the core's. */
static double clock_cost(void)
{
    double acc = 0;
    for (int i = 0; i < 20000; i++) {
        double a = clock_s(CLOCK_THREAD_CPUTIME_ID);
        acc += clock_s(CLOCK_THREAD_CPUTIME_ID) - a;
    }
    return acc / 20000;
}

static int node_of_id(const struct sim *S, const char *id)
{
    if (id[0] != 'n') return -1;
    int i = atoi(id + 1);
    return i >= 0 && i < S->n ? i : -1;
}

static void send_sched(struct sim *S, int node, int type, uint32_t piece, int from)
{
    struct smsg *m = malloc(sizeof(*m));
    if (!m) {
        S->oom = 1;
        return;
    }
    *m = (struct smsg){type, node, piece, from};
    push(S, S->now + S->nodes[node].lat_us, EV_AT_SCHED, node, 0, 0, 0, m);
}

/* --csv: bytes moved by a flow between t0 and t1, spread over the seconds. */
static void on_bytes(void *ctx, const fnet_flow *f, uint64_t t0, uint64_t t1)
{
    struct sim *S = ctx;
    if (!S->csv) return;
    size_t last = (size_t)((t1 - 1) / US);
    if (last >= S->n_sec) {
        size_t ns = last + 64, w = (size_t)S->n + 1;
        double *ni = realloc(S->sec_in, ns * w * sizeof(double));
        if (ni) S->sec_in = ni;
        double *no = realloc(S->sec_out, ns * w * sizeof(double));
        if (no) S->sec_out = no;
        if (!ni || !no) {
            S->oom = 1;
            return;
        }
        memset(S->sec_in + S->n_sec * w, 0, (ns - S->n_sec) * w * sizeof(double));
        memset(S->sec_out + S->n_sec * w, 0, (ns - S->n_sec) * w * sizeof(double));
        S->n_sec = ns;
    }
    size_t w = (size_t)S->n + 1;
    for (uint64_t t = t0; t < t1;) {
        uint64_t sec = t / US, end = (sec + 1) * US < t1 ? (sec + 1) * US : t1;
        double b = f->rate * (double)(end - t) / 1e6;
        S->sec_out[sec * w + (size_t)(f->src + 1)] += b;
        S->sec_in[sec * w + (size_t)(f->dst + 1)] += b;
        t = end;
    }
}

static void on_rate(void *ctx, int id, fnet_flow *f, uint64_t now)
{
    struct sim *S = ctx;
    (void)now;
    uint64_t eta = fnet_eta(S->net, id);
    if (eta != UINT64_MAX) push(S, eta, EV_MARK, id, 0, f->ver, 0, NULL);
}

/* ---- the scheduler's answers ---- */

static void on_decide(void *ctx, const struct sched_decision *d)
{
    struct sim *S = ctx;
    struct node *nd = sched_host_conn(sched_peer_host(d->peer));
    if (!nd) return;
    struct dmsg *m = calloc(1, sizeof(*m));
    if (!m) goto oom;
    m->wait_ms = d->wait_ms;
    if (d->n_grant) {
        if (!(m->runs = calloc(d->n_grant, sizeof(*m->runs)))) goto oom;
        for (size_t i = 0; i < d->n_grant; i++)
            m->runs[i] = (proto_piece_run){d->grant[i].start, d->grant[i].count};
        m->n_runs = d->n_grant;
    }
    if (d->n_parents) {
        if (!(m->bits = calloc(d->n_parents, S->nb))) goto oom;
        for (size_t i = 0; i < d->n_parents && i < SCHED_MAX_CANDIDATES; i++) {
            /* the bitmap as the scheduler knows it now, as sched_server.c sends it */
            sched_peer_bitmap(d->parents[i], m->bits + i * S->nb, S->nb);
            m->parents[m->n_parents++] =
                node_of_id(S, sched_host_id(sched_peer_host(d->parents[i])));
        }
    }
    push(S, S->now + nd->lat_us, EV_DECISION, nd->idx, 0, 0, 0, m);
    return;
oom:
    if (m) free(m->runs);
    free(m);
    S->oom = 1;
}

/* ---- the node (download_task.c's calls around the policy) ---- */

static void node_pump(struct sim *S, struct node *nd)
{
    if (!nd->registered || nd->finished) return;
    pp_want want = {nd->cursor, S->pieces - 1};
    pp_env env = {.now_ms = now_ms(S), .lim = &S->lim, .liars = &S->liars, .origin_known = 1};
    pp_pick pk;
    for (int guard = 0; guard < 4 * PP_MAX_PARENTS + (int)S->lim.pieces_in_flight; guard++) {
        if (!pp_next(&nd->pp, &want, S->reader && nd->cursor < S->pieces ? 1 : 0, &env, &pk)) break;
        if (pk.parent >= 0) {
            pp_parent *pa = &nd->pp.parents[pk.parent];
            int p = node_of_id(S, pa->host_id);
            if (p < 0) {
                pp_parent_unreachable(&nd->pp, pk.parent, now_ms(S));
                continue;
            }
            if (!pa->subscribed) {
                pa->subscribed = 1;
                push(S, S->now + path_us(S, nd->idx, p), EV_SUBSCRIBE, p, nd->idx, 0, 0, NULL);
            }
            pp_request_started(&nd->pp, &pk);
            push(S, S->now + path_us(S, nd->idx, p), EV_REQUEST, p, nd->idx, pk.piece,
                 (uint32_t)pk.parent, NULL);
            continue;
        }
        uint32_t run = nd->pp.whole
                           ? pp_origin_run(&nd->pp, pk.piece, peer_origin_run_pieces(S->piece_size))
                           : 1;
        if (run > 1)
            pp_origin_run_started(&nd->pp, pk.piece, run, pk.at_ms);
        else
            pp_request_started(&nd->pp, &pk);
        push(S, S->now + path_us(S, nd->idx, ORIGIN), EV_ORIGIN_REQ, nd->idx, 0, pk.piece, run,
             NULL);
    }
}

static void start_flow(struct sim *S, int src, int dst, int slot, uint32_t first, uint32_t n)
{
    struct xfer *x = malloc(sizeof(*x));
    if (!x) {
        S->oom = 1;
        return;
    }
    *x = (struct xfer){src, dst, slot, first, n, 0};
    double size = 0;
    for (uint32_t i = 0; i < n; i++) size += proto_piece_len(S->size, S->piece_size, first + i);
    double mark = proto_piece_len(S->size, S->piece_size, first);
    int id = fnet_start(S->net, src, dst, size, mark, x, S->now);
    if (id < 0) {
        free(x);
        S->oom = 1;
    }
}

static void on_mark(struct sim *S, int id, uint32_t ver)
{
    fnet_flow *f = fnet_get(S->net, id);
    if (!f->live || f->ver != ver) return; /* stale: its rate changed since */
    fnet_advance(S->net, id, S->now);
    struct xfer *x = f->user;
    uint32_t piece = x->first + x->k;
    uint32_t len = proto_piece_len(S->size, S->piece_size, piece);
    x->k++;
    if (x->src == ORIGIN)
        S->origin_bytes += len, S->origin_last_us = S->now;
    else
        S->nodes[x->src].bytes_out += len;
    uint64_t at = S->now + path_us(S, x->src, x->dst);
    /* d: 0 = a run's piece, 1 = a run's last piece, 2 = a single request (not a run) */
    uint32_t kind = x->slot != PP_ORIGIN || x->n == 1 ? 2 : x->k == x->n;
    push(S, at, EV_PIECE, x->dst, x->slot, piece, kind, NULL);
    if (x->k < x->n) {
        f->mark += proto_piece_len(S->size, S->piece_size, x->first + x->k);
        if (f->mark > f->size) f->mark = f->size;
        uint64_t eta = fnet_eta(S->net, id);
        if (eta != UINT64_MAX) push(S, eta, EV_MARK, id, 0, f->ver, 0, NULL);
        return;
    }
    if (x->src != ORIGIN) S->nodes[x->src].slots_used--;
    free(x);
    fnet_finish(S->net, id, S->now);
}

static void on_piece(struct sim *S, struct node *nd, int slot, uint32_t piece, int kind)
{
    if (kind != 2) /* piece_write_done: j->run */
        pp_origin_run_piece_ended(&nd->pp, piece, kind);
    else
        pp_request_ended(&nd->pp, piece, slot);
    uint32_t len = proto_piece_len(S->size, S->piece_size, piece);
    nd->bytes_in += len;
    if (pp_piece_stored(&nd->pp, piece, slot) != 1) {
        nd->dup_bytes += len; /* a late duplicate (end game) */
        node_pump(S, nd);
        return;
    }
    nd->last_progress_ms = now_ms(S);
    if (slot == PP_ORIGIN) nd->from_origin += len;
    while (nd->cursor < S->pieces && proto_bit_get(nd->pp.have, nd->cursor)) nd->cursor++;
    int from = slot == PP_ORIGIN ? ORIGIN : node_of_id(S, nd->pp.parents[slot].host_id);
    send_sched(S, nd->idx, SM_REPORT, piece, from);
    for (int i = 0; i < nd->n_subs;) {
        int c = nd->subs[i];
        if (S->nodes[c].finished) { /* it asks nothing more: its connection counts no longer */
            nd->subs[i] = nd->subs[--nd->n_subs];
            continue;
        }
        push(S, S->now + path_us(S, nd->idx, c), EV_AVAIL, c, nd->idx, piece, 0, NULL);
        i++;
    }
    if (nd->pp.n_have == S->pieces) {
        nd->finished = 1;
        nd->done_us = S->now;
        S->done_nodes++;
        send_sched(S, nd->idx, SM_FINISHED, 0, 0);
        return;
    }
    node_pump(S, nd);
}

static void on_decision(struct sim *S, struct node *nd, struct dmsg *m)
{
    if (nd->finished) return;
    if (m->n_runs) {
        if (pp_grant(&nd->pp, m->runs, m->n_runs) == 0) nd->pp.whole = S->o.fetch_whole_blob;
    }
    for (int i = 0; i < m->n_parents; i++) {
        int p = m->parents[i];
        if (p < 0 || p == nd->idx) continue;
        const struct node *pn = &S->nodes[p];
        int slot = pp_add_candidate(&nd->pp, pn->id, pn->addr, m->bits + (size_t)i * S->nb, S->nb,
                                    now_ms(S));
        /* download_task.c on_candidates: subscribed at once */
        if (slot < 0 || nd->pp.parents[slot].subscribed) continue;
        nd->pp.parents[slot].subscribed = 1;
        push(S, S->now + path_us(S, nd->idx, p), EV_SUBSCRIBE, p, nd->idx, 0, 0, NULL);
    }
    if (m->n_parents) nd->reask_at_ms = now_ms(S) + PEER_REASK_MS;
    if (m->wait_ms) {
        uint32_t ms = m->wait_ms < 100 ? 100 : m->wait_ms > 10000 ? 10000 : m->wait_ms;
        if (nd->reask_at_ms < now_ms(S) + ms) nd->reask_at_ms = now_ms(S) + ms;
    }
    node_pump(S, nd);
}

static int subscribed(const struct node *par, int child)
{
    for (int i = 0; i < par->n_subs; i++)
        if (par->subs[i] == child) return 1;
    return 0;
}

static void on_request(struct sim *S, struct node *par, int child, uint32_t piece, int slot)
{
    int why = -1;
    if (!subscribed(par, child))
        why = PP_FAIL_LOST; /* its connection was refused (upload_max_connections) */
    else if (piece >= S->pieces || !proto_bit_get(par->pp.have, piece))
        why = PP_FAIL_NOT_HELD;
    else if (par->slots_used >= S->o.upload_slots)
        why = PP_FAIL_BUSY; /* upload_server.c: no free slot, BUSY at once */
    if (why >= 0) {
        par->busy += why == PP_FAIL_BUSY;
        par->refused += why == PP_FAIL_LOST;
        push(S, S->now + path_us(S, par->idx, child), EV_FAILED, child, why, piece, (uint32_t)slot,
             NULL);
        return;
    }
    par->slots_used++;
    start_flow(S, par->idx, child, slot, piece, 1);
}

static void on_failed(struct sim *S, struct node *nd, int why, uint32_t piece, int slot)
{
    pp_request_ended(&nd->pp, piece, slot);
    if (why == PP_FAIL_LOST) nd->pp.parents[slot].subscribed = 0; /* on_parent_closed */
    int reason = pp_request_failed(&nd->pp, slot, piece, (enum pp_failure)why, now_ms(S));
    if (reason)
        send_sched(S, nd->idx, SM_BAD_PARENT, piece, node_of_id(S, nd->pp.parents[slot].host_id));
    node_pump(S, nd);
}

static void on_avail(struct sim *S, struct node *nd, int from, uint32_t piece, uint8_t *bits)
{
    if (nd->finished) return;
    for (int i = 0; i < nd->pp.n_parents; i++) {
        if (node_of_id(S, nd->pp.parents[i].host_id) != from) continue;
        proto_piece_run run = {piece, 1};
        int rc = bits ? pp_parent_avail(&nd->pp, i, bits, S->nb, NULL, 0)
                      : pp_parent_avail(&nd->pp, i, NULL, 0, &run, 1);
        if (rc == 0) node_pump(S, nd);
        return;
    }
}

static void on_subscribe(struct sim *S, struct node *par, int child)
{
    if (subscribed(par, child)) return;
    if ((uint32_t)par->n_subs >= S->o.upload_max_conns) {
        par->refused++; /* upload_server.c: BUSY "too many connections", closed */
        return;
    }
    if (par->n_subs == par->cap_subs) {
        int nc = par->cap_subs ? 2 * par->cap_subs : 8;
        int *ns = realloc(par->subs, (size_t)nc * sizeof(*ns));
        if (!ns) {
            S->oom = 1;
            return;
        }
        par->subs = ns;
        par->cap_subs = nc;
    }
    par->subs[par->n_subs++] = child;
    /* AVAIL: the whole bitmap first (upload_server.c answers an AVAIL_QUERY so) */
    uint8_t *bits = malloc(S->nb);
    if (!bits) {
        S->oom = 1;
        return;
    }
    memcpy(bits, par->pp.have, S->nb);
    push(S, S->now + path_us(S, par->idx, child), EV_AVAIL, child, par->idx, 0, 0, bits);
}

static void at_sched(struct sim *S, struct smsg *m)
{
    struct node *nd = &S->nodes[m->node];
    uint64_t t = now_ms(S);
    int rc = 0;
    if (m->type != SM_ANNOUNCE && !nd->h) return;
    switch (m->type) {
    case SM_ANNOUNCE: {
        struct sched_host_info hi = {.host_id = nd->id,
                                     .addr = nd->addr,
                                     .upload_slots = S->o.upload_slots,
                                     .upload_bw =
                                         S->announce_bw ? (uint64_t)nd->up : S->o.upload_bw};
        SCHED_CALL(S, rc = sched_host_announce(S->s, &hi, t, &nd->h));
        if (rc == 0) sched_host_set_conn(nd->h, nd);
        break;
    }
    case SM_REGISTER: {
        sched_task *tk = NULL;
        SCHED_CALL(S, rc = sched_register(S->s, nd->h, task_id, S->size, t, &tk, NULL));
        if (rc == 0 && sched_task_piece_size(tk) != S->piece_size) rc = -EBADMSG;
        if (rc == 0) {
            nd->registered = 1;
            nd->last_progress_ms = t;
        } else {
            fprintf(stderr, "sim flow: REGISTER_TASK of %s refused (%d)\n", nd->id, rc);
            S->oom = 1;
        }
        break;
    }
    case SM_REPORT: {
        struct sched_run r = {m->piece, 1};
        const char *pid = m->from == ORIGIN ? "" : S->nodes[m->from].id;
        SCHED_CALL(S, rc = sched_report_pieces(S->s, nd->h, task_id, &r, 1, pid, t, NULL));
        break;
    }
    case SM_FINISHED:
        SCHED_CALL(S, rc = sched_task_finished(S->s, nd->h, task_id, t, NULL));
        break;
    case SM_BAD_PARENT:
        if (m->from >= 0)
            SCHED_CALL(S, rc = sched_bad_parent(S->s, nd->h, task_id, S->nodes[m->from].id, 0, t));
        break;
    }
    if (rc && m->type != SM_REGISTER) {
        if (m->type == SM_ANNOUNCE) nd->h = NULL;
        fprintf(stderr, "sim flow: the scheduler refused a message of %s (%d)\n", nd->id, rc);
        S->oom = 1;
    }
}

static void on_join(struct sim *S, struct node *nd)
{
    nd->joined = 1;
    S->joined_nodes++;
    nd->pp.whole = S->o.fetch_whole_blob;
    nd->next_hb_ms = now_ms(S) + S->o.timing.heartbeat_interval_ms;
    /* ANNOUNCE_HOST, then REGISTER_TASK */
    send_sched(S, nd->idx, SM_ANNOUNCE, 0, 0);
    send_sched(S, nd->idx, SM_REGISTER, 0, 0);
    push(S, S->now + PEER_TICK_MS * 1000ull, EV_NODE_TICK, nd->idx, 0, 0, 0, NULL);
}

/* peer_daemon.c on_tick -> download_task.c's sweep, and sched_client.c's heartbeat timer. */
static void on_node_tick(struct sim *S, struct node *nd)
{
    uint64_t t = now_ms(S);
    if (t >= nd->next_hb_ms && nd->h) {
        nd->next_hb_ms = t + S->o.timing.heartbeat_interval_ms;
        SCHED_CALL(S, sched_host_heartbeat(S->s, nd->h, S->o.upload_slots - nd->slots_used, t));
    }
    if (nd->finished) {
        /* a seed: only its heartbeats are left */
        push(S, nd->next_hb_ms * 1000, EV_NODE_TICK, nd->idx, 0, 0, 0, NULL);
        return;
    }
    if (nd->registered) {
        if (!nd->pp.origin_mode && t - nd->last_progress_ms > S->o.mesh_stall_ms) {
            nd->pp.origin_mode = 1;
        } else if (t >= nd->reask_at_ms && pp_wants_parents(&nd->pp, &S->liars)) {
            nd->reask_at_ms = t + PEER_REASK_SOON_MS;
            send_sched(S, nd->idx, SM_REGISTER, 0, 0);
        }
        node_pump(S, nd);
    }
    push(S, S->now + PEER_TICK_MS * 1000ull, EV_NODE_TICK, nd->idx, 0, 0, 0, NULL);
}

/* ---- options and set-up ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chunkfly-sched-sim flow [options]\n"
            "Flow-level mesh simulation: the real scheduling core (sched_core) and the real piece\n"
            "policy of every peer (peer_policy) on a virtual clock, bytes moved by a flow model\n"
            "(per-node up/down links, an origin uplink). One blob, every node `chunkfly get`s it.\n"
            "  --nodes N            nodes (default 8, max 100000)\n"
            "  --size-mib S         blob size in MiB (default 256); pieces: proto_piece_size_for\n"
            "  --up-mbit R          node uplink, Mbit/s (default 100)\n"
            "  --down-mbit R        node downlink, Mbit/s (default 100)\n"
            "  --origin-mbit R      origin uplink, Mbit/s (default: --up-mbit)\n"
            "  --latency-ms L       one-way latency of every node's link (default 0.1)\n"
            "  --mixed F:R          a fraction F of the nodes (random) has R Mbit/s up and down\n"
            "  --late N:SECONDS     N nodes (random) join SECONDS after the others\n"
            "  --seed N             random choices and join jitter (default 1)\n"
            "  --net maxmin|fair    network model (default maxmin up to 128 nodes, else fair;\n"
            "                       see scheduler/sim/flow_net.h)\n"
            "  --background         no reader: the task fetches the blob rarest-first only\n"
            "  --announce-bw        every node announces its uplink as upload_bw (as a daemon\n"
            "                       with upload_bandwidth set does; default: none announced)\n"
            "  --max-s SECONDS      give up after this much simulated time (default 100 x bound)\n"
            "  --csv FILE           per-second bytes: second,node,class,bytes_in,bytes_out\n"
            "                       (node -1 = the origin)\n"
            "Prints key=value lines: bound_s (size / one link; per class when mixed), first/\n"
            "median/last node time and ratio to the bound, late nodes from their own join,\n"
            "origin_bytes and ratio to the blob, scheduler decisions and CPU per decision (the\n"
            "thread CPU time inside sched_* calls), simulated events, wall time.\n"
            "Exit: 0 every node got every piece, 1 time limit or failure, 2 usage.\n");
}

static int parse_double(const char *opt, const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "sim flow: %s '%s': expected a number in [%g, %g]\n", opt, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_pair(const char *opt, const char *s, double min1, double max1, double min2,
                      double max2, double *a, double *b)
{
    char buf[64];
    const char *colon = strchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(buf)) {
        fprintf(stderr, "sim flow: %s '%s': expected A:B\n", opt, s);
        return -1;
    }
    memcpy(buf, s, (size_t)(colon - s));
    buf[colon - s] = 0;
    if (parse_double(opt, buf, min1, max1, a) || parse_double(opt, colon + 1, min2, max2, b))
        return -1;
    return 0;
}

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static int parse_args(struct sim *S, int argc, char **argv)
{
    static const struct option lo[] = {
        {"nodes", 1, NULL, 'n'},     {"size-mib", 1, NULL, 's'},    {"up-mbit", 1, NULL, 'u'},
        {"down-mbit", 1, NULL, 'd'}, {"origin-mbit", 1, NULL, 'o'}, {"latency-ms", 1, NULL, 'l'},
        {"mixed", 1, NULL, 'm'},     {"late", 1, NULL, 'L'},        {"seed", 1, NULL, 'S'},
        {"csv", 1, NULL, 'c'},       {"net", 1, NULL, 'N'},         {"background", 0, NULL, 'b'},
        {"max-s", 1, NULL, 'M'},     {"help", 0, NULL, 'h'},        {"announce-bw", 0, NULL, 'A'},
        {NULL, 0, NULL, 0}};
    double v, w;
    int ch;
    S->n = 8;
    S->size = 256ull << 20;
    S->up_mbit = S->down_mbit = 100;
    S->origin_mbit = -1;
    S->lat_ms = 0.1;
    S->seed = 1;
    S->reader = 1;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'n':
            if (parse_double("--nodes", optarg, 1, 100000, &v)) return 2;
            if (v != floor(v)) return fprintf(stderr, "sim flow: --nodes must be whole\n"), 2;
            S->n = (int)v;
            break;
        case 's':
            if (parse_double("--size-mib", optarg, 1, 1 << 20, &v)) return 2;
            S->size = (uint64_t)(v * (1 << 20));
            break;
        case 'u':
            if (parse_double("--up-mbit", optarg, 0.001, 1e6, &S->up_mbit)) return 2;
            break;
        case 'd':
            if (parse_double("--down-mbit", optarg, 0.001, 1e6, &S->down_mbit)) return 2;
            break;
        case 'o':
            if (parse_double("--origin-mbit", optarg, 0.001, 1e6, &S->origin_mbit)) return 2;
            break;
        case 'l':
            if (parse_double("--latency-ms", optarg, 0, 10000, &S->lat_ms)) return 2;
            break;
        case 'm':
            if (parse_pair("--mixed", optarg, 0, 1, 0.001, 1e6, &S->mixed_frac, &S->mixed_mbit))
                return 2;
            break;
        case 'L':
            if (parse_pair("--late", optarg, 0, 100000, 0, 1e6, &v, &w)) return 2;
            if (v != floor(v)) return fprintf(stderr, "sim flow: --late N must be whole\n"), 2;
            S->late_n = (int)v;
            S->late_s = w;
            break;
        case 'S':
            if (parse_double("--seed", optarg, 0, 1e15, &v)) return 2;
            S->seed = (uint64_t)v;
            break;
        case 'c':
            S->csv = optarg;
            break;
        case 'A':
            S->announce_bw = 1;
            break;
        case 'N':
            if (strcmp(optarg, "maxmin") == 0)
                S->model = FNET_MAXMIN;
            else if (strcmp(optarg, "fair") == 0)
                S->model = FNET_FAIR;
            else
                return fprintf(stderr, "sim flow: --net '%s': expected maxmin or fair\n", optarg),
                       2;
            S->model_set = 1;
            break;
        case 'b':
            S->reader = 0;
            break;
        case 'M':
            if (parse_double("--max-s", optarg, 0.001, 1e9, &S->max_s)) return 2;
            break;
        case 'h':
            usage(stdout);
            return 3;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sim flow: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (S->late_n > S->n) {
        fprintf(stderr, "sim flow: --late %d: more than the %d nodes\n", S->late_n, S->n);
        return 2;
    }
    if (S->origin_mbit < 0) S->origin_mbit = S->up_mbit;
    if (!S->model_set) S->model = S->n <= 128 ? FNET_MAXMIN : FNET_FAIR;
    return 0;
}

/* The daemon's defaults: peer_daemon_opts_load over an empty configuration. */
static int daemon_defaults(struct sim *S)
{
    cf_config *c = cf_config_new();
    if (!c) return -ENOMEM;
    cf_err err = {0};
    int rc = peer_daemon_opts_load(&S->o, c, &err);
    cf_config_free(c);
    if (rc) {
        fprintf(stderr, "sim flow: daemon defaults: %s\n", cf_err_str(&err, rc));
        return rc;
    }
    S->lim = (pp_limits){S->o.pieces_in_flight, S->o.per_parent_in_flight, S->o.origin_in_flight,
                         PEER_END_GAME_AFTER_MS};
    S->liars.ban_after = S->o.ban_after_lies;
    struct sched_server_opts so;
    sched_server_opts_default(&so);
    S->sched_tick_ms = so.tick_ms;
    return 0;
}

static int setup(struct sim *S)
{
    if (daemon_defaults(S)) return -1;
    S->piece_size = proto_piece_size_for(S->size);
    S->pieces = (uint32_t)proto_piece_count(S->size, S->piece_size);
    S->nb = proto_bitmap_nbytes(S->pieces);
    struct sched_ops ops = {.decide = on_decide, .ctx = S};
    if (!(S->s = sched_new(NULL, &ops))) return -ENOMEM;
    S->nodes = calloc((size_t)S->n, sizeof(*S->nodes));
    double *up = calloc((size_t)S->n, sizeof(double)), *down = calloc((size_t)S->n, sizeof(double));
    int *order = calloc((size_t)S->n, sizeof(int));
    if (!S->nodes || !up || !down || !order) {
        free(up), free(down), free(order);
        return -ENOMEM;
    }
    /* a seeded shuffle picks the slow class and the late joiners independently */
    uint64_t x = S->seed * 0x9e3779b97f4a7c15ull + 1;
    for (int i = 0; i < S->n; i++) order[i] = i;
    for (int i = S->n - 1; i > 0; i--) {
        int j = (int)(rnd(&x) % (uint64_t)(i + 1)), tmp = order[i];
        order[i] = order[j], order[j] = tmp;
    }
    int n_slow = (int)lround(S->mixed_frac * S->n);
    for (int i = 0; i < S->n; i++) {
        struct node *nd = &S->nodes[i];
        nd->idx = i;
        snprintf(nd->id, sizeof(nd->id), "n%d", i);
        snprintf(nd->addr, sizeof(nd->addr), "10.%d.%d.%d:4100", (i >> 16) & 255, (i >> 8) & 255,
                 i & 255);
        if (pp_task_init(&nd->pp, S->pieces)) {
            free(up), free(down), free(order);
            return -ENOMEM;
        }
        nd->pp.rng = ((S->seed << 32) ^ (uint64_t)i) * 2 + 1; /* each its own draws */
        nd->lat_us = (uint64_t)llround(S->lat_ms * 1000);
    }
    for (int k = 0; k < S->n; k++) {
        struct node *nd = &S->nodes[order[k]];
        nd->cls = k < n_slow;
        up[nd->idx] = (nd->cls ? S->mixed_mbit : S->up_mbit) * 1e6 / 8;
        down[nd->idx] = (nd->cls ? S->mixed_mbit : S->down_mbit) * 1e6 / 8;
        nd->up = up[nd->idx];
        nd->down = down[nd->idx];
    }
    /* late joiners: another shuffle */
    for (int i = S->n - 1; i > 0; i--) {
        int j = (int)(rnd(&x) % (uint64_t)(i + 1)), tmp = order[i];
        order[i] = order[j], order[j] = tmp;
    }
    for (int k = 0; k < S->n; k++) {
        struct node *nd = &S->nodes[order[k]];
        /* started "at the same instant" by a script: up to 10 ms apart */
        nd->join_us = rnd(&x) % 10000 + (k < S->late_n ? (uint64_t)llround(S->late_s * 1e6) : 0);
        push(S, nd->join_us, EV_JOIN, nd->idx, 0, 0, 0, NULL);
    }
    struct fnet_ops nops = {.on_rate = on_rate, .on_bytes = on_bytes, .ctx = S};
    S->net = fnet_new(S->n, up, down, S->origin_mbit * 1e6 / 8, S->model, &nops);
    free(up), free(down), free(order);
    if (!S->net) return -ENOMEM;
    push(S, S->sched_tick_ms * 1000ull, EV_SCHED_TICK, 0, 0, 0, 0, NULL);
    return 0;
}

static void teardown(struct sim *S)
{
    while (S->heap_n) {
        struct ev e = pop(S);
        free_payload(&e);
    }
    free(S->heap);
    if (S->net) {
        /* flows cut short by the time limit own their xfer */
        for (int id = 0; id < fnet_ids(S->net); id++) {
            fnet_flow *f = fnet_get(S->net, id);
            if (f->live) free(f->user);
        }
        fnet_free(S->net);
    }
    if (S->nodes)
        for (int i = 0; i < S->n; i++) {
            pp_task_free(&S->nodes[i].pp);
            free(S->nodes[i].subs);
        }
    free(S->nodes);
    sched_free(S->s);
    pp_liars_free(&S->liars);
    free(S->sec_in);
    free(S->sec_out);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int write_csv(struct sim *S)
{
    FILE *f = fopen(S->csv, "w");
    if (!f) {
        fprintf(stderr, "sim flow: --csv %s: %s\n", S->csv, strerror(errno));
        return -1;
    }
    fprintf(f, "second,node,class,bytes_in,bytes_out\n");
    size_t w = (size_t)S->n + 1, secs = (size_t)((S->now + US - 1) / US);
    if (secs > S->n_sec) secs = S->n_sec;
    for (size_t s = 0; s < secs; s++)
        for (size_t i = 0; i < w; i++)
            fprintf(f, "%zu,%d,%s,%.0f,%.0f\n", s, (int)i - 1,
                    i == 0                ? "origin"
                    : S->nodes[i - 1].cls ? "slow"
                                          : "fast",
                    S->sec_in[s * w + i], S->sec_out[s * w + i]);
    if (fclose(f)) {
        fprintf(stderr, "sim flow: --csv %s: %s\n", S->csv, strerror(errno));
        return -1;
    }
    return 0;
}

static void report_class(struct sim *S, const char *name, int cls, int late, double bound,
                         int *all_done)
{
    uint64_t *t = calloc((size_t)S->n, sizeof(*t));
    int k = 0;
    if (!t) return;
    for (int i = 0; i < S->n; i++) {
        struct node *nd = &S->nodes[i];
        if ((cls >= 0 && nd->cls != cls) || (late >= 0 && (nd->join_us >= 1000000) != late))
            continue;
        if (!nd->finished) {
            *all_done = 0;
            continue;
        }
        t[k++] = nd->done_us - (late == 1 ? nd->join_us : 0);
    }
    if (k) {
        qsort(t, (size_t)k, sizeof(*t), cmp_u64);
        double last = (double)t[k - 1] / 1e6;
        printf("%s_nodes=%d\n%s_first_s=%.2f\n%s_median_s=%.2f\n%s_last_s=%.2f\n"
               "%s_last_ratio=%.3f\n",
               name, k, name, (double)t[0] / 1e6, name, (double)t[k / 2] / 1e6, name, last, name,
               last / bound);
    }
    free(t);
}

int flow_sim_main(int argc, char **argv)
{
    struct sim S_ = {0}, *S = &S_;
    int rc = parse_args(S, argc, argv);
    if (rc) return rc == 3 ? 0 : rc;
    cf_log_set_level(CF_LOG_WARN);
    double wall0 = mono();
    S->clock_cost_s = clock_cost();
    if (setup(S)) {
        fprintf(stderr, "sim flow: set-up failed (out of memory?)\n");
        teardown(S);
        return 1;
    }
    double link = S->up_mbit < S->down_mbit ? S->up_mbit : S->down_mbit;
    double bound = (double)S->size * 8 / (link * 1e6);
    double slow_bound = S->mixed_mbit > 0 ? (double)S->size * 8 / (S->mixed_mbit * 1e6) : 0;
    double worst = bound > slow_bound ? bound : slow_bound;
    if (S->max_s <= 0) S->max_s = 100 * worst + S->late_s;
    uint64_t limit = (uint64_t)(S->max_s * 1e6);
    while (S->heap_n && !S->oom) {
        struct ev e = pop(S);
        if (e.t > limit) {
            free_payload(&e);
            break;
        }
        S->now = e.t;
        S->events++;
        struct node *nd = e.type == EV_SCHED_TICK || e.type == EV_MARK || e.type == EV_AT_SCHED
                              ? NULL
                              : &S->nodes[e.a];
        switch (e.type) {
        case EV_JOIN:
            on_join(S, nd);
            break;
        case EV_SCHED_TICK:
            SCHED_CALL(S, sched_tick(S->s, now_ms(S)));
            if (S->done_nodes < S->n)
                push(S, S->now + S->sched_tick_ms * 1000ull, EV_SCHED_TICK, 0, 0, 0, 0, NULL);
            break;
        case EV_NODE_TICK:
            if (S->done_nodes < S->n) on_node_tick(S, nd);
            break;
        case EV_AT_SCHED:
            at_sched(S, e.p);
            break;
        case EV_DECISION:
            on_decision(S, nd, e.p);
            break;
        case EV_REQUEST:
            on_request(S, nd, e.b, e.c, (int)e.d);
            break;
        case EV_FAILED:
            on_failed(S, nd, e.b, e.c, (int)e.d);
            break;
        case EV_SUBSCRIBE:
            on_subscribe(S, nd, e.b);
            break;
        case EV_AVAIL:
            on_avail(S, nd, e.b, e.c, e.p);
            break;
        case EV_ORIGIN_REQ:
            start_flow(S, ORIGIN, e.a, PP_ORIGIN, e.c, e.d);
            break;
        case EV_MARK:
            on_mark(S, e.a, e.c);
            break;
        case EV_PIECE:
            on_piece(S, nd, e.b, e.c, (int)e.d);
            break;
        }
        free_payload(&e);
        /* every node done: stop (seeds' heartbeats would run on forever) */
        if (S->done_nodes == S->n) break;
    }
    double wall = mono() - wall0;

    struct sched_stats st;
    sched_stats_get(S->s, &st);
    /* the clock's cost is an estimate: when it is most of the total, the figure is noise */
    double overhead = S->clock_cost_s * (double)S->sched_calls;
    double sched_cpu = S->sched_s - overhead;
    if (sched_cpu < 0) sched_cpu = 0;
    int cpu_reliable = sched_cpu > overhead;
    int all_done = S->done_nodes == S->n && !S->oom;
    uint64_t dup = 0, busy = 0, refused = 0;
    double up_cap = 0, sent = 0;
    int complete = 0;
    for (int i = 0; i < S->n; i++) {
        sent += (double)S->nodes[i].bytes_out;
        up_cap += S->nodes[i].up *
                  (double)(S->now - (S->nodes[i].join_us < S->now ? S->nodes[i].join_us : S->now)) /
                  1e6;
        complete += proto_bits_count(S->nodes[i].pp.have, S->pieces) == S->pieces;
        dup += S->nodes[i].dup_bytes;
        busy += S->nodes[i].busy;
        refused += S->nodes[i].refused;
        if (S->nodes[i].finished && S->nodes[i].pp.n_have != S->pieces) all_done = 0;
    }
    printf("nodes=%d\nsize_bytes=%llu\npiece_size=%u\npieces=%u\nnet_model=%s\nreader=%d\n"
           "latency_ms=%g\nup_mbit=%g\ndown_mbit=%g\norigin_mbit=%g\nseed=%llu\n",
           S->n, (unsigned long long)S->size, S->piece_size, S->pieces,
           S->model == FNET_MAXMIN ? "maxmin" : "fair", S->reader, S->lat_ms, S->up_mbit,
           S->down_mbit, S->origin_mbit, (unsigned long long)S->seed);
    printf(
        "daemon_pieces_in_flight=%u\ndaemon_per_parent_in_flight=%u\ndaemon_origin_in_flight=%u\n"
        "daemon_upload_slots=%u\n",
        S->o.pieces_in_flight, S->o.per_parent_in_flight, S->o.origin_in_flight, S->o.upload_slots);
    printf("bound_s=%.2f\n", bound);
    int ok = 1;
    if (S->mixed_frac > 0) {
        printf("bound_slow_s=%.2f\n", slow_bound);
        report_class(S, "fast", 0, -1, bound, &ok);
        report_class(S, "slow", 1, -1, slow_bound, &ok);
    }
    if (S->late_n > 0 && S->late_s >= 1) {
        printf("late_join_s=%g\n", S->late_s);
        report_class(S, "ontime", -1, 0, bound, &ok);
        report_class(S, "late", -1, 1, bound, &ok); /* times from their own join */
    }
    report_class(S, "all", -1, -1, bound, &ok);
    printf("nodes_complete=%d\n", complete); /* every piece in the node's bitmap */
    /* where the time goes: how busy the uplinks were until the last node finished */
    printf("node_uplink_util=%.3f\norigin_last_piece_s=%.2f\n", up_cap > 0 ? sent / up_cap : 0,
           (double)S->origin_last_us / 1e6);
    printf("nodes_done=%d\norigin_bytes=%llu\norigin_ratio=%.3f\nduplicate_bytes=%llu\n"
           "busy_answers=%llu\nrefused_connections=%llu\n",
           S->done_nodes, (unsigned long long)S->origin_bytes,
           (double)S->origin_bytes / (double)S->size, (unsigned long long)dup,
           (unsigned long long)busy, (unsigned long long)refused);
    printf("sched_decisions=%llu\nsched_candidates_sent=%llu\nsched_waits=%llu\n"
           "sched_grant_pieces=%llu\nsched_grants_moved=%llu\nsched_calls=%llu\n"
           "sched_cpu_s=%.3f\nsched_clock_overhead_ns=%.0f\nsched_us_per_decision=%.2f\n"
           "sched_cpu_reliable=%d\n",
           (unsigned long long)st.decisions, (unsigned long long)st.candidates_sent,
           (unsigned long long)st.waits, (unsigned long long)st.grants_pieces,
           (unsigned long long)st.grants_moved, (unsigned long long)S->sched_calls, sched_cpu,
           S->clock_cost_s * 1e9, st.decisions ? sched_cpu * 1e6 / (double)st.decisions : 0.0,
           cpu_reliable);
    printf("events=%llu\nsim_s=%.2f\nwall_s=%.2f\nresult=%s\n", (unsigned long long)S->events,
           (double)S->now / 1e6, wall,
           all_done && ok ? "ok"
           : S->oom       ? "failed"
                          : "timeout");
    if (S->csv && write_csv(S)) all_done = 0;
    teardown(S);
    return all_done && ok ? 0 : 1;
}
