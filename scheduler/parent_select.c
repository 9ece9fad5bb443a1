/* Parent selection: up to K candidate parents for a child, scored (docs/scheduler.md):
 *
 *   score = 0.35 useful + 0.20 free + 0.20 share + 0.15 locality + 0.10 reliability
 *
 *   useful      pieces the parent has (or holds origin grants for) that the child lacks,
 *               as a fraction of what the child lacks
 *   free        upload slots left after the scheduler's own reservations (and the host's
 *               heartbeat report), as a fraction of its slots
 *   share       the part of the parent's uplink this child would get: its announced
 *               bandwidth relative to the best announced one (else its observed throughput
 *               relative to the best, else 0.5), divided by 1 + the children it is already
 *               listed for. Not the observed throughput alone: a parent serving many children
 *               measures fastest, and rewarding that sent every child to the same two early
 *               parents while the others' uplinks sat idle (docs/benchmarks.md, issue 14)
 *   locality    same idc 0.5, + same zone 0.3, + same rack 0.2
 *   reliability 1 / (1 + recent failures)
 *
 * Filtered out: the child itself and its own host, parents the child reported bad, banned
 * hosts, hosts leaving, hosts without a free slot, parents with nothing useful, and outliers:
 * hosts whose mean piece time is more than 3x the mean of the other candidates (with >= 3
 * measured candidates), or whose last piece took more than 20x their own mean. */
#include <string.h>

#include "sched_internal.h"

int sched_is_blocked(const sched_peer *child, const sched_host *parent)
{
    for (unsigned i = 0; i < child->n_bad; i++)
        if (child->bad[i] == parent->id_hash) return 1;
    return 0;
}

static uint32_t useful_pieces(const sched_peer *parent, const sched_peer *child)
{
    uint32_t n = 0;
    for (uint32_t w = 0; w < child->task->n_words; w++)
        n += (uint32_t)__builtin_popcountll(parent->bits[w] & ~child->bits[w]);
    return n + parent->n_grants;
}

static double locality(const sched_host *a, const sched_host *b)
{
    if (!a->idc[0] || strcmp(a->idc, b->idc) != 0) return 0;
    double l = 0.5;
    if (a->zone[0] && strcmp(a->zone, b->zone) == 0) {
        l += 0.3;
        if (a->rack[0] && strcmp(a->rack, b->rack) == 0) l += 0.2;
    }
    return l;
}

static uint32_t free_slots(const sched_host *h)
{
    uint32_t f = h->upload_slots > h->reserved ? h->upload_slots - h->reserved : 0;
    if (h->reported_free != UINT32_MAX && h->reported_free < f) f = h->reported_free;
    return f;
}

static int last_cost_outlier(const sched_host *h)
{
    if (h->n_cost < 4) return 0;
    uint32_t last = h->cost[(h->cost_pos + COST_WINDOW - 1) % COST_WINDOW];
    double mean = sched_host_mean_cost(h);
    return mean > 0 && last > 20.0 * mean;
}

struct cand {
    sched_peer *p;
    uint32_t useful;
    double mean_cost;
    double score;
};

size_t sched_select_parents(sched *s, sched_peer *child, uint64_t now_ms, sched_peer **out,
                            size_t k)
{
    sched_task *t = child->task;
    uint32_t missing = t->n_pieces - child->have;
    if (k == 0 || missing == 0 || t->n_src == 0) return 0;
    struct cand c[256];
    unsigned limit = s->cfg.sample_limit < 256 ? s->cfg.sample_limit : 256;
    /* only sources (peers holding pieces or grants) can be parents */
    uint32_t n_scan = t->n_src, start = 0;
    if (n_scan == 0) return 0;
    if (n_scan > limit * 4u) {
        /* big swarm: scan a random window 4x the sample size, keep the first `limit` fits */
        start = (uint32_t)(sched_rand(s) % t->n_src);
        n_scan = limit * 4u;
    }
    size_t n = 0;
    double best_tput = 0, best_bw = 0;
    for (uint32_t k2 = 0; k2 < n_scan && n < limit; k2++) {
        sched_peer *p = t->src[(start + k2) % t->n_src];
        sched_host *h = p->host;
        if (p == child || h == child->host || sched_host_shunned(h, now_ms)) continue;
        if (free_slots(h) == 0) continue;
        uint32_t u = useful_pieces(p, child); /* cheap bit ops before hash lookups */
        if (u == 0) continue;
        if (sched_is_blocked(child, h)) continue;
        if (last_cost_outlier(h)) {
            s->st.outliers_dropped++;
            continue;
        }
        c[n].p = p;
        c[n].useful = u;
        c[n].mean_cost = sched_host_mean_cost(h);
        if (h->tput_bps > best_tput) best_tput = h->tput_bps;
        if ((double)h->upload_bw > best_bw) best_bw = (double)h->upload_bw;
        n++;
    }
    /* swarm-relative outliers: mean piece time > 3x the others' mean */
    unsigned measured = 0;
    double sum = 0;
    for (size_t i = 0; i < n; i++) /* c[0..n) were filled above (cppcheck cannot see it) */
        // cppcheck-suppress uninitvar
        if (c[i].mean_cost > 0) {
            measured++;
            sum += c[i].mean_cost;
        }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (measured >= 3 && c[i].mean_cost > 0) {
            double others = (sum - c[i].mean_cost) / (measured - 1);
            if (c[i].mean_cost > 3.0 * others) {
                s->st.outliers_dropped++;
                continue;
            }
        }
        sched_host *h = c[i].p->host;
        double useful = (double)c[i].useful / missing;
        if (useful > 1) useful = 1;
        double fr = h->upload_slots ? (double)free_slots(h) / h->upload_slots : 0;
        /* "share" (header): announced bandwidth relative to the best announced, else measured
         * throughput relative to the best measured, else neutral 0.5 */
        double speed = 0.5;
        if (best_bw > 0 && h->upload_bw > 0)
            speed = (double)h->upload_bw / best_bw;
        else if (best_tput > 0 && h->tput_bps > 0)
            speed = h->tput_bps / best_tput;
        /* the share of it each child gets: children already listed split it */
        speed /= 1.0 + h->reserved;
        double rel = 1.0 / (1.0 + h->failures);
        c[i].score =
            0.35 * useful + 0.20 * fr + 0.20 * speed + 0.15 * locality(child->host, h) + 0.10 * rel;
        c[m++] = c[i];
    }
    /* partial selection sort: K is tiny */
    size_t got = 0;
    for (; got < k && got < m; got++) {
        size_t best = got;
        for (size_t i = got + 1; i < m; i++)
            if (c[i].score > c[best].score) best = i;
        struct cand tmp = c[got];
        c[got] = c[best];
        c[best] = tmp;
        out[got] = c[got].p;
    }
    return got;
}

void sched_set_parents(sched *s, sched_peer *child, sched_peer *const *parents, size_t n,
                       uint64_t now_ms)
{
    (void)s;
    /* reservations follow the edges: release the old set, reserve the new one */
    for (unsigned i = 0; i < child->n_parents; i++)
        if (child->parents[i]->host->reserved) child->parents[i]->host->reserved--;
    child->n_parents = 0;
    for (size_t i = 0; i < n && i < SCHED_MAX_CANDIDATES; i++) {
        child->parents[child->n_parents++] = parents[i];
        parents[i]->host->reserved++;
        uint64_t hh = parents[i]->host->id_hash;
        int seen = 0;
        for (unsigned k = 0; k < SCHED_ASSIGNED_RING; k++) seen |= child->assigned[k] == hh;
        if (!seen) {
            child->assigned[child->assigned_pos] = hh;
            child->assigned_pos = (uint8_t)((child->assigned_pos + 1) % SCHED_ASSIGNED_RING);
        }
    }
    if (n) child->parents_since_ms = now_ms;
}
