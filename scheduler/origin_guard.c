/* Origin protection: back-to-source grants.
 *
 * A piece no holder usable by the child holds ("orphan" for that child: holders it reported bad,
 * banned or leaving hosts do not count) may be fetched from the origin only by a peer
 * holding a grant for it; at most origin_per_piece (M) grants exist per piece and at most
 * origin_peers peers of a task hold grants at once. Everybody else gets parents (the granted
 * peers count as parents for the pieces they are fetching: cut-through) or waits. A grant
 * without progress for stall_ms, or whose peer leaves, moves to another peer of the task. */
#include <stdlib.h>

#include "cf/log.h"
#include "sched_internal.h"

static int grow_runs(sched *s, size_t need)
{
    if (need <= s->runs_cap) return 0;
    size_t nc = s->runs_cap ? s->runs_cap * 2 : 16;
    while (nc < need) nc *= 2;
    struct sched_run *nr = realloc(s->runs, nc * sizeof(*nr));
    if (!nr) return -1;
    s->runs = nr;
    s->runs_cap = nc;
    return 0;
}

static void grant_list_add(sched *s, sched_task *t)
{
    if (t->in_grant_list) return;
    t->in_grant_list = 1;
    t->gprev = NULL;
    t->gnext = s->grant_tasks;
    if (s->grant_tasks) s->grant_tasks->gprev = t;
    s->grant_tasks = t;
}

static void grant_list_del(sched *s, sched_task *t)
{
    if (!t->in_grant_list) return;
    if (t->gprev)
        t->gprev->gnext = t->gnext;
    else
        s->grant_tasks = t->gnext;
    if (t->gnext) t->gnext->gprev = t->gprev;
    t->in_grant_list = 0;
    t->gnext = t->gprev = NULL;
}

static void drop_grant(sched_task *t, sched_peer *p, uint32_t i, unsigned M)
{
    sched_peer **g = &t->grant[(size_t)i * M];
    unsigned left = 0, hit = 0;
    for (unsigned j = 0; j < M; j++) {
        if (g[j] == p) {
            g[j] = NULL;
            hit = 1;
        } else if (g[j]) {
            left++;
        }
    }
    if (!hit) return;
    if (!left) t->pieces_granted--;
    if (--p->n_grants == 0) t->granted_peers--;
}

/* How long a fetcher may go without an origin piece before its grants move: stall_ms, or 3x
 * the wait its fetchers have needed for an origin piece in this task (a slow origin link
 * shared by several fetchers: at 25 Mbit/s and 8 fetchers a 1 MiB piece takes ~2.7 s each,
 * and 5 s moved honest grants, fetching them twice), at most 8x stall_ms. */
static uint64_t stall_limit_ms(const sched *s, const sched_task *t)
{
    uint64_t limit = s->cfg.stall_ms;
    if (t->origin_gaps >= 4) { /* a few waits seen: one slow first piece is not a pace */
        uint64_t want = 3 * t->origin_gap_ms;
        if (want > limit) limit = want;
        if (limit > 8ull * s->cfg.stall_ms) limit = 8ull * s->cfg.stall_ms;
    }
    return limit;
}

/* No origin piece from q for the stall limit, in this task or in any other task of its host: a
 * host whose origin pieces keep landing elsewhere is busy, not stuck (its link to the origin is
 * shared by its tasks), and moving its grants would fetch its in-flight pieces a second time. */
static int grant_stalled(const sched *s, const sched_peer *q, uint64_t now_ms)
{
    uint64_t limit = stall_limit_ms(s, q->task);
    return now_ms > q->grant_progress_ms && now_ms - q->grant_progress_ms > limit &&
           now_ms > q->host->origin_progress_ms + limit;
}

/* A grant counts (occupies one of the M slots of its piece) only while its holder can still
 * deliver: not leaving or banned, heard from within the heartbeat expiry, not stalled. The
 * periodic checks move such grants anyway; this closes the gap until the next tick. */
static int grant_live(const sched *s, const sched_peer *q, uint64_t now_ms)
{
    uint64_t silent = (uint64_t)s->cfg.heartbeat_ms * s->cfg.heartbeat_misses;
    if (sched_host_shunned(q->host, now_ms)) return 0;
    if (grant_stalled(s, q, now_ms)) return 0;
    return !(now_ms > q->host->last_seen_ms && now_ms - q->host->last_seen_ms > silent);
}

static int push_unusable(sched *s, size_t n, sched_peer *q)
{
    if (n == s->unusable_cap) {
        size_t nc = s->unusable_cap ? s->unusable_cap * 2 : 16;
        sched_peer **nu = realloc(s->unusable, nc * sizeof(*nu));
        if (!nu) return -1;
        s->unusable = nu;
        s->unusable_cap = nc;
    }
    s->unusable[n] = q;
    return 0;
}

/* Sources of p's task that p cannot use as parents, into s->unusable: first those nobody may use
 * (leaving, banned; *n_shunned of them), then those p reported bad. Scans only when there can be
 * any. On ENOMEM returns 0 (every holder counts as usable: origin protection wins). */
static size_t collect_unusable(sched *s, const sched_peer *p, uint64_t now_ms, size_t *n_shunned)
{
    const sched_task *t = p->task;
    size_t n = 0;
    *n_shunned = 0;
    if (s->bans.n || s->n_dying) {
        for (uint32_t k = 0; k < t->n_src; k++) {
            sched_peer *q = t->src[k];
            if (q == p || !sched_host_shunned(q->host, now_ms)) continue;
            if (push_unusable(s, n++, q)) return 0;
        }
    }
    *n_shunned = n;
    if (p->n_bad) {
        for (uint32_t k = 0; k < t->n_src; k++) {
            sched_peer *q = t->src[k];
            if (q == p || sched_host_shunned(q->host, now_ms) || !sched_is_blocked(p, q->host))
                continue;
            if (push_unusable(s, n++, q)) {
                *n_shunned = 0;
                return 0;
            }
        }
    }
    return n;
}

size_t sched_origin_grant(sched *s, sched_peer *p, uint64_t now_ms)
{
    sched_task *t = p->task;
    const unsigned M = s->cfg.origin_per_piece;
    if (p->stalled || p->finished) return 0;
    if (now_ms < t->hold_until_ms) return 0; /* recovery hold: holders are re-announcing */
    /* a piece is in the mesh for p only through a holder p can use (docs/scheduler.md) */
    size_t n_sh, n_u = collect_unusable(s, p, now_ms, &n_sh);
    sched_peer *const *u = s->unusable;
    if (t->pieces_in_mesh == t->n_pieces && n_u == 0) return 0;
    /* the origin_peers cap spreads a burst over few fetchers; it does not apply to pieces that
     * only p cannot get (it reported their holders bad): nobody else will fetch them for p */
    int capped = p->n_grants == 0 && t->granted_peers >= s->cfg.origin_peers;
    /* first copies go to fast uplinks: a host announcing less than half the task's fastest
     * uplink takes no new window while another peer holds one (the others would get those
     * pieces at its pace; mixed links, docs/benchmarks.md) */
    if (p->n_grants == 0 && t->granted_peers && p->host->upload_bw &&
        p->host->upload_bw < t->max_upload_bw / 2)
        capped = 1;
    if (capped && n_u == n_sh) return 0;
    /* first copies of a blob of few pieces are split between origin_peers fetchers, not
     * given whole to the first one, so every fetcher has pieces to upload early (a lone peer
     * just asks again); pieces only p cannot get keep the whole window */
    uint32_t share = (t->n_pieces + s->cfg.origin_peers - 1) / s->cfg.origin_peers; /* >= 1 */
    if (share > s->cfg.grant_window) share = s->cfg.grant_window;
    size_t n_runs = 0;
    uint32_t granted = 0, shared = 0;
    for (uint32_t i = 0; i < t->n_pieces && granted < s->cfg.grant_window; i++) {
        if (peer_has(p, i)) continue;
        uint32_t held = t->holders[i];
        int only_p_lacks = 0; /* others can use a holder of i, p cannot */
        if (held) {
            if (held > n_u) continue; /* some holder is usable */
            uint32_t shunned = 0, blocked = 0;
            for (size_t k = 0; k < n_sh; k++) shunned += (uint32_t)peer_has(u[k], i);
            for (size_t k = n_sh; k < n_u; k++) blocked += (uint32_t)peer_has(u[k], i);
            if (held > shunned + blocked) continue;
            only_p_lacks = held > shunned;
        }
        if (capped && !only_p_lacks) continue;
        if (!only_p_lacks && shared >= share) continue;
        sched_peer **g = &t->grant[(size_t)i * M];
        unsigned live = 0, mine = 0, slot = M;
        for (unsigned j = 0; j < M; j++) {
            if (g[j] == p)
                mine = 1;
            else if (g[j] && grant_live(s, g[j], now_ms))
                live++;
            else if (slot == M || (g[slot] && !g[j]))
                slot = j; /* prefer an empty slot over a dead grant */
        }
        if (mine || live >= M || slot == M) continue;
        if (grow_runs(s, n_runs + 1)) break;
        if (g[slot]) { /* its holder cannot deliver: take the slot over */
            drop_grant(t, g[slot], i, M);
            s->st.grants_moved++;
        }
        unsigned used = 0;
        for (unsigned j = 0; j < M; j++) used += g[j] != NULL;
        g[slot] = p;
        if (used == 0) t->pieces_granted++;
        granted++;
        shared += !only_p_lacks;
        if (n_runs && s->runs[n_runs - 1].start + s->runs[n_runs - 1].count == i)
            s->runs[n_runs - 1].count++;
        else
            s->runs[n_runs++] = (struct sched_run){i, 1};
    }
    if (!granted) return 0;
    if (p->n_grants == 0) t->granted_peers++;
    p->n_grants += granted;
    sched_source_add(t, p);
    p->grant_progress_ms = now_ms;
    s->st.grants_pieces += granted;
    grant_list_add(s, t);
    return n_runs;
}

void sched_origin_piece_done(sched *s, sched_peer *p, uint32_t i, uint64_t now_ms)
{
    sched_task *t = p->task;
    const unsigned M = s->cfg.origin_per_piece;
    /* a stalled fetcher adds no gap while it is silent: its own limit does not grow with it;
     * pieces of one report (same instant) are one wait */
    uint64_t gap = now_ms > p->grant_progress_ms ? now_ms - p->grant_progress_ms : 0;
    if (gap) {
        t->origin_gap_ms = t->origin_gaps++ ? (7 * t->origin_gap_ms + gap) / 8 : gap;
    }
    p->grant_progress_ms = now_ms;
    p->host->origin_progress_ms = now_ms;
    int mine = 0;
    for (unsigned j = 0; j < M; j++) mine |= t->grant[(size_t)i * M + j] == p;
    if (mine)
        drop_grant(t, p, i, M);
    else if (!peer_has(p, i))
        s->st.origin_unsolicited++;
}

uint32_t sched_origin_release(sched *s, sched_peer *p)
{
    sched_task *t = p->task;
    const unsigned M = s->cfg.origin_per_piece;
    uint32_t freed = 0;
    for (uint32_t i = 0; i < t->n_pieces && p->n_grants; i++) {
        uint32_t before = p->n_grants;
        drop_grant(t, p, i, M);
        freed += before - p->n_grants;
    }
    return freed;
}

void sched_origin_regrant(sched *s, sched_task *t, sched_peer *except, uint64_t now_ms)
{
    if (t->n_peers == 0 || t->pieces_in_mesh == t->n_pieces) return;
    uint32_t start = (uint32_t)(sched_rand(s) % t->n_peers);
    /* prefer waiting peers: they have nothing else to do */
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t k = 0; k < t->n_peers; k++) {
            sched_peer *q = t->peers[(start + k) % t->n_peers];
            if (q == except || q->stalled || q->finished || sched_host_shunned(q->host, now_ms) ||
                q->have == t->n_pieces || (pass == 0 && !q->waiting))
                continue;
            if (q->n_grants == 0 && t->granted_peers >= s->cfg.origin_peers) return;
            uint64_t before = s->st.grants_pieces;
            if (q->waiting) {
                sched_schedule(s, q, now_ms, 1);
            } else {
                size_t n = sched_origin_grant(s, q, now_ms);
                if (n) {
                    struct sched_decision d = {
                        .peer = q, .grant = s->runs, .n_grant = n, .stall_ms = s->cfg.stall_ms};
                    sched_emit(s, &d);
                }
            }
            uint64_t moved = s->st.grants_pieces - before;
            s->st.grants_moved += moved;
            if (moved == 0 && t->granted_peers < s->cfg.origin_peers) return; /* no orphans */
        }
    }
}

void sched_origin_check_stalls(sched *s, uint64_t now_ms)
{
    sched_task *t = s->grant_tasks, *next;
    for (; t; t = next) {
        next = t->gnext;
        int freed = 0;
        sched_peer *last = NULL;
        for (uint32_t i = 0; i < t->n_peers; i++) {
            sched_peer *p = t->peers[i];
            if (!p->n_grants || !grant_stalled(s, p, now_ms)) continue;
            cf_info("task %s: host %s made no origin progress for %llu ms, moving its %u grants",
                    t->id, p->host->id, (unsigned long long)(now_ms - p->grant_progress_ms),
                    p->n_grants);
            p->stalled = 1;
            sched_host_add_failure(s, p->host, now_ms);
            freed += (int)sched_origin_release(s, p);
            last = p;
        }
        if (freed) sched_origin_regrant(s, t, last, now_ms);
        if (t->granted_peers == 0) grant_list_del(s, t);
    }
}

void sched_origin_hold(sched *s, sched_task *t, uint64_t until_ms)
{
    if (until_ms > t->hold_until_ms) t->hold_until_ms = until_ms;
    if (t->in_hold_list) return;
    s->st.grant_holds++;
    t->in_hold_list = 1;
    t->hprev = NULL;
    t->hnext = s->held_tasks;
    if (s->held_tasks) s->held_tasks->hprev = t;
    s->held_tasks = t;
}

void sched_origin_release_holds(sched *s, uint64_t now_ms)
{
    sched_task *t = s->held_tasks, *next;
    for (; t; t = next) {
        next = t->hnext;
        if (now_ms < t->hold_until_ms) continue;
        if (t->hprev)
            t->hprev->hnext = t->hnext;
        else
            s->held_tasks = t->hnext;
        if (t->hnext) t->hnext->hprev = t->hprev;
        t->in_hold_list = 0;
        t->hnext = t->hprev = NULL;
        /* the orphans left now really are orphans: grant them, waiting peers first */
        sched_origin_regrant(s, t, NULL, now_ms);
    }
}

void sched_origin_parent_shunned(sched *s, sched_host *parent, uint64_t now_ms)
{
    /* rescheduling never removes peers, so walking parent's list is safe */
    for (sched_peer *q = parent->peers; q; q = q->hnext) {
        sched_task *t = q->task;
        uint32_t freed = sched_origin_release(s, q);
        sched_reparent_children(s, q, now_ms);
        if (freed) sched_origin_regrant(s, t, q, now_ms);
        if (t->n_waiting) sched_wake_waiters(s, t, now_ms);
    }
}
