/* Tasks and peers: registration, piece bitmaps, leaving, and the per-peer decision flow
 * (grant from the origin, candidate parents, or wait). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cf/log.h"
#include "proto/piece.h"
#include "sched_internal.h"

#define MIB (1u << 20)

void sched_config_default(struct sched_config *c)
{
    c->max_candidates = 4;
    c->origin_per_piece = 1;
    c->origin_peers = 8;
    c->grant_window = 16;
    c->stall_ms = 5000;
    c->heartbeat_ms = 2000;
    c->heartbeat_misses = 3;
    c->ban_after_tasks = 3;
    c->ban_min_reporters = 2;
    c->ban_ms = 600000;
    c->wait_retry_ms = 1000;
    c->sample_limit = 64;
    c->waiters_per_event = 16;
    c->recovery_window_ms = 5000;
    c->recovery_hold_ms = 500;
    c->max_tasks_per_host = 4096;
    c->host_state_budget = 16u << 20;
    c->state_budget = 256u << 20;
}

/* Bytes of per-piece state of a task of n pieces, and of one peer's bitmap in it. */
static uint64_t task_state_cost(const sched *s, uint64_t n)
{
    return n * (sizeof(uint32_t) + (uint64_t)s->cfg.origin_per_piece * sizeof(sched_peer *));
}

static uint64_t peer_state_cost(uint64_t n)
{
    return (n + 63) / 64 * sizeof(uint64_t) + sizeof(sched_peer);
}

sched *sched_new(const struct sched_config *cfg, const struct sched_ops *ops)
{
    sched *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    if (cfg)
        s->cfg = *cfg;
    else
        sched_config_default(&s->cfg);
    if (s->cfg.max_candidates > SCHED_MAX_CANDIDATES) s->cfg.max_candidates = SCHED_MAX_CANDIDATES;
    if (s->cfg.origin_per_piece == 0) s->cfg.origin_per_piece = 1;
    if (s->cfg.origin_peers == 0) s->cfg.origin_peers = 1;
    if (s->cfg.grant_window == 0) s->cfg.grant_window = 1;
    if (s->cfg.max_tasks_per_host == 0) s->cfg.max_tasks_per_host = 4096;
    if (s->cfg.host_state_budget == 0) s->cfg.host_state_budget = 16u << 20;
    if (s->cfg.state_budget == 0) s->cfg.state_budget = 256u << 20;
    /* bad-report memories hold 8 entries */
    if (s->cfg.ban_after_tasks > 8) s->cfg.ban_after_tasks = 8;
    if (s->cfg.ban_min_reporters > 8) s->cfg.ban_min_reporters = 8;
    if (s->cfg.sample_limit < s->cfg.max_candidates) s->cfg.sample_limit = s->cfg.max_candidates;
    if (ops) s->ops = *ops;
    s->rng = 0x9e3779b97f4a7c15ull;
    return s;
}

const struct sched_config *sched_get_config(const sched *s)
{
    return &s->cfg;
}

uint64_t sched_rand(sched *s)
{
    uint64_t x = s->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return s->rng = x;
}

static void task_free(sched *s, sched_task *t)
{
    if (t->in_grant_list) {
        if (t->gprev)
            t->gprev->gnext = t->gnext;
        else
            s->grant_tasks = t->gnext;
        if (t->gnext) t->gnext->gprev = t->gprev;
    }
    if (t->in_hold_list) {
        if (t->hprev)
            t->hprev->hnext = t->hnext;
        else
            s->held_tasks = t->hnext;
        if (t->hnext) t->hnext->hprev = t->hprev;
    }
    s->state_bytes -= t->state_bytes;
    free(t->peers);
    free(t->src);
    free(t->holders);
    free(t->grant);
    free(t->digests);
    free(t);
}

static sched_task *task_new(sched *s, const char *id, uint64_t len, uint64_t now_ms, cf_err *err)
{
    size_t idl = strlen(id);
    sched_task *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    if (idl >= sizeof(t->id)) {
        free(t);
        cf_err_set(err, -EINVAL, "task id longer than %zu bytes", sizeof(t->id) - 1);
        return NULL;
    }
    memcpy(t->id, id, idl + 1);
    t->content_length = len;
    t->piece_size = proto_piece_size_for(len); /* the one rule, proto/piece.h */
    uint64_t n = proto_piece_count(len, t->piece_size);
    if (n > PROTO_MAX_PIECES) {
        free(t);
        cf_err_set(err, -EMSGSIZE, "task %s: content length %llu needs %llu pieces (max %u)", id,
                   (unsigned long long)len, (unsigned long long)n, PROTO_MAX_PIECES);
        return NULL;
    }
    t->n_pieces = (uint32_t)n;
    t->n_words = (t->n_pieces + 63) / 64;
    t->holders = calloc(t->n_pieces ? t->n_pieces : 1, sizeof(*t->holders));
    t->grant = calloc((size_t)(t->n_pieces ? t->n_pieces : 1) * s->cfg.origin_per_piece,
                      sizeof(*t->grant));
    if (!t->holders || !t->grant || sched_map_put(&s->tasks, t->id, t)) {
        free(t->holders);
        free(t->grant);
        free(t);
        cf_err_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    s->st.tasks++;
    t->created_ms = now_ms;
    /* peers are re-announcing what they hold (scheduler restart or failover): give the holders
     * of this task a moment to re-announce before granting origin fetches */
    if (s->last_resync_ms && now_ms - s->last_resync_ms < s->cfg.recovery_window_ms)
        sched_origin_hold(s, t, now_ms + s->cfg.recovery_hold_ms);
    return t;
}

sched_task *sched_task_find(sched *s, const char *task_id)
{
    return task_id ? sched_map_get(&s->tasks, task_id) : NULL;
}

sched_peer *sched_peer_find(sched_task *t, sched_host *h)
{
    /* a host has few peers; its list is shorter than the task's */
    for (sched_peer *p = h->peers; p; p = p->hnext)
        if (p->task == t) return p;
    return NULL;
}

void sched_source_add(sched_task *t, sched_peer *p)
{
    if (p->src_idx != UINT32_MAX) return;
    if (t->n_src == t->cap_src) {
        uint32_t nc = t->cap_src ? t->cap_src * 2 : 8;
        sched_peer **n = realloc(t->src, nc * sizeof(*n));
        if (!n) return; /* not a candidate until the next chance; harmless */
        t->src = n;
        t->cap_src = nc;
    }
    p->src_idx = t->n_src;
    t->src[t->n_src++] = p;
}

static void source_del(sched_task *t, sched_peer *p)
{
    if (p->src_idx == UINT32_MAX) return;
    t->src[p->src_idx] = t->src[--t->n_src];
    t->src[p->src_idx]->src_idx = p->src_idx;
    p->src_idx = UINT32_MAX;
}

static sched_peer *peer_new(sched *s, sched_task *t, sched_host *h, uint64_t now_ms)
{
    if (t->n_peers == t->cap_peers) {
        uint32_t nc = t->cap_peers ? t->cap_peers * 2 : 8;
        sched_peer **np = realloc(t->peers, nc * sizeof(*np));
        if (!np) return NULL;
        t->peers = np;
        t->cap_peers = nc;
    }
    sched_peer *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->bits = calloc(t->n_words ? t->n_words : 1, sizeof(uint64_t));
    if (!p->bits) {
        free(p);
        return NULL;
    }
    p->host = h;
    p->task = t;
    p->idx = t->n_peers;
    p->src_idx = UINT32_MAX;
    p->last_report_ms = now_ms;
    if (h->upload_bw > t->max_upload_bw) t->max_upload_bw = h->upload_bw;
    t->peers[t->n_peers++] = p;
    p->hnext = h->peers;
    if (h->peers) h->peers->hprev = p;
    h->peers = p;
    h->n_peers++;
    s->st.peers++;
    return p;
}

void sched_emit(sched *s, const struct sched_decision *d)
{
    s->st.decisions++;
    if (d->n_parents) s->st.candidates_sent++;
    if (d->wait_ms) s->st.waits++;
    if (s->ops.decide) s->ops.decide(s->ops.ctx, d);
}

static void set_waiting(sched_peer *p, int w)
{
    if (p->waiting == w) return;
    p->waiting = (uint8_t)w;
    if (w)
        p->task->n_waiting++;
    else
        p->task->n_waiting--;
}

void sched_schedule(sched *s, sched_peer *p, uint64_t now_ms, int allow_wait)
{
    sched_task *t = p->task;
    if (p->finished || p->have == t->n_pieces || p->host->dying) {
        set_waiting(p, 0);
        return;
    }
    /* a peer still holding a window gets its next one when it reports it done
     * (sched_report_pieces), not at every re-ask: re-asking grantees (every 1-2 s while pieces
     * lack a known holder) piled up windows, up to 64 pieces on one 20 Mbit/s node */
    size_t n_runs = p->stalled || p->n_grants ? 0 : sched_origin_grant(s, p, now_ms);
    sched_peer *parents[SCHED_MAX_CANDIDATES];
    sched_set_parents(s, p, NULL, 0, now_ms); /* its own reservations must not count */
    size_t k = sched_select_parents(s, p, now_ms, parents, s->cfg.max_candidates);
    sched_set_parents(s, p, parents, k, now_ms);
    struct sched_decision d = {.peer = p,
                               .parents = parents,
                               .n_parents = k,
                               .grant = s->runs,
                               .n_grant = n_runs,
                               .stall_ms = s->cfg.stall_ms};
    if (n_runs == 0 && k == 0) {
        set_waiting(p, 1);
        if (!allow_wait) return;
        d.wait_ms = s->cfg.wait_retry_ms;
    } else {
        set_waiting(p, 0);
    }
    sched_emit(s, &d);
}

void sched_wake_waiters(sched *s, sched_task *t, uint64_t now_ms)
{
    unsigned budget = s->cfg.waiters_per_event;
    uint32_t n = t->n_peers;
    for (uint32_t i = 0; i < n && budget && t->n_waiting; i++) {
        uint32_t at = (t->waiter_cursor + i) % t->n_peers;
        sched_peer *p = t->peers[at];
        if (!p->waiting) continue;
        budget--;
        t->waiter_cursor = at + 1;
        sched_schedule(s, p, now_ms, 0);
    }
}

void sched_reparent_children(sched *s, sched_peer *gone, uint64_t now_ms)
{
    sched_task *t = gone->task;
    for (uint32_t i = 0; i < t->n_peers; i++) {
        sched_peer *q = t->peers[i];
        for (unsigned j = 0; j < q->n_parents; j++) {
            if (q->parents[j] != gone) continue;
            /* drop the edge, then find a replacement set for q */
            if (gone->host->reserved) gone->host->reserved--;
            q->parents[j] = q->parents[--q->n_parents];
            sched_schedule(s, q, now_ms, 1);
            break;
        }
    }
}

void sched_peer_remove(sched *s, sched_peer *p, uint64_t now_ms)
{
    sched_task *t = p->task;
    sched_host *h = p->host;
    uint32_t freed = sched_origin_release(s, p);
    sched_set_parents(s, p, NULL, 0, now_ms);
    set_waiting(p, 0);
    uint32_t lost = 0; /* pieces nobody holds any more */
    for (uint32_t w = 0; w < t->n_words; w++) {
        uint64_t bits = p->bits[w];
        while (bits) {
            uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (--t->holders[i] == 0) {
                t->pieces_in_mesh--;
                lost++;
            }
        }
    }
    /* unlink from the task (swap-remove) and the host */
    source_del(t, p);
    t->peers[p->idx] = t->peers[--t->n_peers];
    t->peers[p->idx]->idx = p->idx;
    if (p->hprev)
        p->hprev->hnext = p->hnext;
    else
        h->peers = p->hnext;
    if (p->hnext) p->hnext->hprev = p->hprev;
    h->n_peers--;
    s->st.peers--;
    /* children still point at p: give them new parents (p is no longer selectable) */
    sched_reparent_children(s, p, now_ms);
    uint64_t pc = peer_state_cost(t->n_pieces);
    s->state_bytes -= pc;
    h->state_bytes -= pc;
    if (t->creator == h) { /* the task's state stays counted in s until it is freed */
        h->state_bytes -= t->state_bytes;
        t->creator = NULL;
    }
    free(p->bits);
    free(p);
    if (freed) sched_origin_regrant(s, t, NULL, now_ms);
    /* peers waiting for pieces only p held would otherwise idle until their own timeout */
    if (lost && t->n_waiting) sched_wake_waiters(s, t, now_ms);
    if (t->n_peers == 0) {
        sched_map_del(&s->tasks, t->id);
        s->st.tasks--;
        task_free(s, t);
    }
}

/* Refuses (-ENOSPC, a message naming the setting) a new (host, task) pair costing `cost` bytes
 * of per-piece state when it would take the host or the scheduler over its bound. */
static int check_state_budget(sched *s, const sched_host *h, const char *task_id, uint64_t cost,
                              cf_err *err)
{
    const struct sched_config *c = &s->cfg;
    if (h->n_peers >= c->max_tasks_per_host)
        return cf_err_set(err, -ENOSPC, "host %s is in %u tasks already (max_tasks_per_host)",
                          h->id, h->n_peers);
    if (h->state_bytes + cost > c->host_state_budget)
        return cf_err_set(err, -ENOSPC,
                          "task %s: host %s would hold %llu bytes of scheduler state "
                          "(host_state_budget %llu)",
                          task_id, h->id, (unsigned long long)(h->state_bytes + cost),
                          (unsigned long long)c->host_state_budget);
    if (s->state_bytes + cost > c->state_budget)
        return cf_err_set(err, -ENOSPC,
                          "task %s: scheduler state would reach %llu bytes (state_budget %llu)",
                          task_id, (unsigned long long)(s->state_bytes + cost),
                          (unsigned long long)c->state_budget);
    return 0;
}

void sched_note_reregistration(sched *s, const char *task_id, uint64_t now_ms)
{
    s->last_resync_ms = now_ms; /* a task this creates is held (task_new) */
    sched_task *t = task_id ? sched_map_get(&s->tasks, task_id) : NULL;
    if (t && now_ms - t->created_ms < s->cfg.recovery_hold_ms && !t->in_hold_list)
        sched_origin_hold(s, t, t->created_ms + s->cfg.recovery_hold_ms);
}

int sched_register(sched *s, sched_host *h, const char *task_id, uint64_t content_length,
                   uint64_t now_ms, sched_task **task_out, cf_err *err)
{
    if (!h || !task_id || !task_id[0]) return cf_err_set(err, -EINVAL, "missing host or task");
    sched_task *t = sched_map_get(&s->tasks, task_id);
    if (t && t->content_length != content_length)
        return cf_err_set(err, -EBADMSG, "task %s: content length %llu differs from %llu", task_id,
                          (unsigned long long)content_length,
                          (unsigned long long)t->content_length);
    sched_peer *p = t ? sched_peer_find(t, h) : NULL;
    uint64_t task_cost = 0, peer_cost = 0;
    if (!p) { /* a new (host, task) pair: within the memory bounds? */
        uint64_t n = t ? t->n_pieces
                       : proto_piece_count(content_length, proto_piece_size_for(content_length));
        task_cost = t ? 0 : task_state_cost(s, n);
        peer_cost = peer_state_cost(n);
        /* (too many pieces: task_new refuses it with its own message) */
        int rc = n > PROTO_MAX_PIECES
                     ? 0
                     : check_state_budget(s, h, task_id, task_cost + peer_cost, err);
        if (rc) return rc;
    }
    if (!t) {
        t = task_new(s, task_id, content_length, now_ms, err);
        if (!t) return err && err->code ? err->code : -ENOMEM;
        t->state_bytes = task_cost;
        t->creator = h;
        s->state_bytes += task_cost;
        h->state_bytes += task_cost;
    }
    s->st.registrations++;
    if (!p) {
        p = peer_new(s, t, h, now_ms);
        if (!p) {
            if (t->n_peers == 0) {
                if (t->creator == h) h->state_bytes -= t->state_bytes;
                sched_map_del(&s->tasks, t->id);
                s->st.tasks--;
                task_free(s, t);
            }
            return cf_err_set(err, -ENOMEM, "out of memory");
        }
        s->state_bytes += peer_cost;
        h->state_bytes += peer_cost;
    }
    if (task_out) *task_out = t;
    sched_schedule(s, p, now_ms, 1);
    return 0;
}

/* True when none of p's parents holds (or is fetching from the origin) a piece p lacks. */
static int parents_dry(const sched_peer *p)
{
    for (unsigned j = 0; j < p->n_parents; j++) {
        const sched_peer *q = p->parents[j];
        if (q->n_grants) return 0;
        for (uint32_t w = 0; w < p->task->n_words; w++)
            if (q->bits[w] & ~p->bits[w]) return 0;
    }
    return 1;
}

static int check_runs(const sched_task *t, const struct sched_run *runs, size_t n, cf_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (runs[i].count == 0 || runs[i].start >= t->n_pieces ||
            runs[i].count > t->n_pieces - runs[i].start)
            return cf_err_set(err, -ERANGE, "task %s: piece run %u+%u outside %u pieces", t->id,
                              runs[i].start, runs[i].count, t->n_pieces);
    }
    return 0;
}

int sched_report_pieces(sched *s, sched_host *h, const char *task_id, const struct sched_run *runs,
                        size_t n_runs, const char *parent_id, uint64_t now_ms, cf_err *err)
{
    sched_task *t = sched_task_find(s, task_id);
    sched_peer *p = t ? sched_peer_find(t, h) : NULL;
    if (!p)
        return cf_err_set(err, -ENOENT, "task %s: not registered by this host",
                          task_id ? task_id : "?");
    int rc = check_runs(t, runs, n_runs, err);
    if (rc) return rc;
    int from_origin = !parent_id || !parent_id[0];
    /* parent_id == own host id: pieces it already held (re-announce after a scheduler
     * restart or a move): no origin fetch, no throughput sample */
    int resync = parent_id && strcmp(parent_id, h->id) == 0;
    uint32_t n_new = 0;
    int new_in_mesh = 0, had_grants = p->n_grants > 0;
    for (size_t r = 0; r < n_runs; r++) {
        for (uint32_t i = runs[r].start; i < runs[r].start + runs[r].count; i++) {
            if (from_origin) sched_origin_piece_done(s, p, i, now_ms);
            if (peer_has(p, i)) continue;
            p->bits[i >> 6] |= 1ull << (i & 63);
            if (p->have++ == 0) sched_source_add(t, p);
            n_new++;
            if (t->holders[i]++ == 0) {
                t->pieces_in_mesh++;
                new_in_mesh = 1;
            }
        }
    }
    if (!from_origin && !resync && n_new) {
        sched_host *ph = sched_host_find(s, parent_id);
        uint64_t since =
            p->last_report_ms > p->parents_since_ms ? p->last_report_ms : p->parents_since_ms;
        if (ph && now_ms > since) {
            double bytes = (double)n_new * t->piece_size;
            double dt = (double)(now_ms - since);
            sched_host_record_cost(ph, (uint32_t)(dt * MIB / bytes), bytes * 1000.0 / dt);
        }
    }
    if (resync && n_new) {
        s->last_resync_ms = now_ms;
        /* a young task being re-announced: no grants until the other holders re-announced */
        if (now_ms - t->created_ms < s->cfg.recovery_hold_ms && !t->in_hold_list)
            sched_origin_hold(s, t, t->created_ms + s->cfg.recovery_hold_ms);
    }
    p->last_report_ms = now_ms;
    if (p->have == t->n_pieces) {
        set_waiting(p, 0);
        sched_set_parents(s, p, NULL, 0, now_ms);
    } else if (had_grants && p->n_grants == 0 && !p->stalled) {
        /* its window is done: hand it the next orphan pieces, keep its parents */
        size_t n = sched_origin_grant(s, p, now_ms);
        if (n) {
            struct sched_decision d = {
                .peer = p, .grant = s->runs, .n_grant = n, .stall_ms = s->cfg.stall_ms};
            sched_emit(s, &d);
        }
    } else if (n_new && !p->n_grants && !p->waiting && parents_dry(p))
        sched_schedule(s, p, now_ms, 1); /* its parents have nothing more for it */
    if ((new_in_mesh || p->have == t->n_pieces) && t->n_waiting) sched_wake_waiters(s, t, now_ms);
    return 0;
}

int sched_task_finished(sched *s, sched_host *h, const char *task_id, uint64_t now_ms, cf_err *err)
{
    sched_task *t = sched_task_find(s, task_id);
    sched_peer *p = t ? sched_peer_find(t, h) : NULL;
    if (!p)
        return cf_err_set(err, -ENOENT, "task %s: not registered by this host",
                          task_id ? task_id : "?");
    if (p->have != t->n_pieces)
        return cf_err_set(err, -EBADMSG, "task %s: finished with %u of %u pieces reported", task_id,
                          p->have, t->n_pieces);
    p->finished = 1;
    set_waiting(p, 0);
    sched_set_parents(s, p, NULL, 0, now_ms);
    if (t->n_waiting) sched_wake_waiters(s, t, now_ms);
    return 0;
}

int sched_leave_task(sched *s, sched_host *h, const char *task_id, uint64_t now_ms)
{
    sched_task *t = sched_task_find(s, task_id);
    sched_peer *p = t ? sched_peer_find(t, h) : NULL;
    if (!p) return -ENOENT;
    sched_peer_remove(s, p, now_ms);
    return 0;
}

/* Adds the parent's hash to the child's blocklist (oldest entry dropped when full). */
static void block_parent(sched_peer *p, uint64_t ph)
{
    for (unsigned i = 0; i < p->n_bad; i++)
        if (p->bad[i] == ph) return;
    if (p->n_bad == SCHED_MAX_BAD) {
        memmove(p->bad, p->bad + 1, (SCHED_MAX_BAD - 1) * sizeof(p->bad[0]));
        p->n_bad--;
    }
    p->bad[p->n_bad++] = ph;
}

int sched_bad_parent(sched *s, sched_host *h, const char *task_id, const char *parent_id, int lied,
                     uint64_t now_ms)
{
    sched_task *t = sched_task_find(s, task_id);
    sched_peer *p = t ? sched_peer_find(t, h) : NULL;
    if (!p || !parent_id) return -ENOENT;
    s->st.bad_parent_reports++;
    uint64_t ph = sched_hash(parent_id);
    int known = 0, assigned = 0;
    for (unsigned i = 0; i < p->n_bad; i++) known |= p->bad[i] == ph;
    for (unsigned i = 0; i < SCHED_ASSIGNED_RING; i++) assigned |= p->assigned[i] == ph;
    sched_host *parent = sched_host_find(s, parent_id);
    if (!assigned) {
        /* anyone can name any host: a report about a parent this core never gave the child
         * counts nothing against that host; the child may still avoid it */
        s->st.bad_parent_unassigned++;
        parent = NULL;
    }
    if (!lied) {
        if (parent && parent != h) sched_host_add_failure(s, parent, now_ms);
    } else if (!known) {
        block_parent(p, ph);
        if (parent && parent != h) sched_host_note_bad(s, parent, h, t, now_ms);
    }
    /* drop the edge if it is one of p's parents, then reschedule p */
    for (unsigned j = 0; j < p->n_parents; j++) {
        if (strcmp(p->parents[j]->host->id, parent_id) != 0) continue;
        if (p->parents[j]->host->reserved) p->parents[j]->host->reserved--;
        p->parents[j] = p->parents[--p->n_parents];
        break;
    }
    sched_schedule(s, p, now_ms, 1);
    return 0;
}

void sched_tick(sched *s, uint64_t now_ms)
{
    sched_hosts_expire(s, now_ms);
    sched_origin_release_holds(s, now_ms);
    sched_origin_check_stalls(s, now_ms);
}

static void free_task_cb(void *arg, void *val)
{
    sched_task *t = val;
    for (uint32_t i = 0; i < t->n_peers; i++) {
        free(t->peers[i]->bits);
        free(t->peers[i]);
    }
    t->in_grant_list = 0;
    t->in_hold_list = 0;
    task_free(arg, t);
}

static void free_host_cb(void *arg, void *val)
{
    (void)arg;
    sched_host *h = val;
    free(h->id);
    free(h->addr);
    free(h->idc);
    free(h->zone);
    free(h->rack);
    free(h);
}

void sched_free(sched *s)
{
    if (!s) return;
    sched_map_foreach(&s->tasks, free_task_cb, s);
    sched_map_free(&s->tasks);
    sched_map_foreach(&s->hosts, free_host_cb, NULL);
    sched_map_free(&s->hosts);
    sched_bans_free(s);
    free(s->runs);
    free(s->unusable);
    free(s);
}

/* ---- accessors and views ---- */

const char *sched_task_id(const sched_task *t)
{
    return t->id;
}
uint64_t sched_task_length(const sched_task *t)
{
    return t->content_length;
}
uint32_t sched_task_piece_size(const sched_task *t)
{
    return t->piece_size;
}
uint32_t sched_task_piece_count(const sched_task *t)
{
    return t->n_pieces;
}

int sched_task_set_digests(sched_task *t, const uint8_t *digests, size_t len,
                           const sched_host *publisher)
{
    if (!t) return -ENOENT;
    if (len != (size_t)t->n_pieces * 32 || !digests) return -EINVAL;
    if (publisher && t->discredited_publisher && publisher->id_hash == t->discredited_publisher)
        return -EPERM;
    if (t->digests) return memcmp(t->digests, digests, len) == 0 ? 0 : -EEXIST;
    t->digests = malloc(len ? len : 1);
    if (!t->digests) return -ENOMEM;
    memcpy(t->digests, digests, len);
    t->digests_publisher = publisher ? publisher->id_hash : 0;
    return 0;
}

int sched_task_discredit_digests(sched_task *t)
{
    if (!t || !t->digests) return 0;
    free(t->digests);
    t->digests = NULL;
    t->discredited_publisher = t->digests_publisher;
    t->digests_publisher = 0;
    return 1;
}

const uint8_t *sched_task_digests(const sched_task *t)
{
    return t->digests;
}

sched_peer *sched_find_peer(sched *s, sched_host *h, const char *task_id)
{
    sched_task *t = sched_task_find(s, task_id);
    return t && h ? sched_peer_find(t, h) : NULL;
}

sched_host *sched_peer_host(const sched_peer *p)
{
    return p->host;
}
sched_task *sched_peer_task(const sched_peer *p)
{
    return p->task;
}
uint32_t sched_peer_have(const sched_peer *p)
{
    return p->have;
}

void sched_peer_bitmap(const sched_peer *p, uint8_t *out, size_t out_len)
{
    size_t nb = ((size_t)p->task->n_pieces + 7) / 8;
    if (out_len < nb) nb = out_len;
    for (size_t i = 0; i < nb; i++) out[i] = (uint8_t)(p->bits[i / 8] >> (8 * (i % 8)));
}

void sched_stats_get(const sched *s, struct sched_stats *out)
{
    *out = s->st;
}

struct tforeach {
    void (*fn)(void *, const sched_task *);
    void *arg;
};

static void tforeach_cb(void *arg, void *val)
{
    struct tforeach *c = arg;
    c->fn(c->arg, val);
}

void sched_foreach_task(sched *s, void (*fn)(void *arg, const sched_task *t), void *arg)
{
    struct tforeach c = {fn, arg};
    sched_map_foreach(&s->tasks, tforeach_cb, &c);
}

void sched_task_foreach_peer(const sched_task *t, void (*fn)(void *arg, const sched_peer *p),
                             void *arg)
{
    for (uint32_t i = 0; i < t->n_peers; i++) fn(arg, t->peers[i]);
}

void sched_peer_view_get(const sched_peer *p, struct sched_peer_view *v)
{
    memset(v, 0, sizeof(*v));
    v->host_id = p->host->id;
    v->have = p->have;
    v->grants = p->n_grants;
    v->n_parents = p->n_parents;
    for (unsigned i = 0; i < p->n_parents; i++) v->parents[i] = p->parents[i]->host->id;
    v->waiting = p->waiting;
    v->finished = p->finished || p->have == p->task->n_pieces;
    v->stalled = p->stalled;
}

void sched_task_view_get(const sched_task *t, struct sched_task_view *v)
{
    v->id = t->id;
    v->content_length = t->content_length;
    v->piece_size = t->piece_size;
    v->piece_count = t->n_pieces;
    v->peers = t->n_peers;
    v->pieces_in_mesh = t->pieces_in_mesh;
    v->pieces_granted = t->pieces_granted;
    v->has_digests = t->digests != NULL;
}
