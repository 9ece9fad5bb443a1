/* Hosts: announcements, heartbeats and expiry, failure counters, cluster-wide bans, and the
 * per-host piece-time window used by parent selection. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cf/log.h"
#include "sched_internal.h"

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static void host_free(sched_host *h)
{
    free(h->id);
    free(h->addr);
    free(h->idc);
    free(h->zone);
    free(h->rack);
    free(h);
}

static int set_str(char **dst, const char *src)
{
    char *n = dup_or_empty(src);
    if (!n) return -ENOMEM;
    free(*dst);
    *dst = n;
    return 0;
}

int sched_host_announce(sched *s, const struct sched_host_info *info, uint64_t now_ms,
                        sched_host **out)
{
    if (!info || !info->host_id || !info->host_id[0] || !info->addr) return -EINVAL;
    sched_host *h = sched_map_get(&s->hosts, info->host_id);
    int fresh = !h;
    if (fresh) {
        h = calloc(1, sizeof(*h));
        if (!h || !(h->id = strdup(info->host_id))) {
            free(h);
            return -ENOMEM;
        }
        h->id_hash = sched_hash(h->id);
        h->reported_free = UINT32_MAX;
        h->failures_decay_ms = now_ms;
        struct ban *b = sched_map_get(&s->bans, h->id); /* bans survive reconnects */
        h->ban_until_ms = b ? b->until_ms : 0;
    }
    if (set_str(&h->addr, info->addr) || set_str(&h->idc, info->idc) ||
        set_str(&h->zone, info->zone) || set_str(&h->rack, info->rack)) {
        if (fresh) host_free(h);
        return -ENOMEM;
    }
    h->upload_slots = info->upload_slots;
    h->upload_bw = info->upload_bw;
    h->last_seen_ms = now_ms;
    if (fresh) {
        if (sched_map_put(&s->hosts, h->id, h)) {
            host_free(h);
            return -ENOMEM;
        }
        s->st.hosts++;
        cf_debug("host %s announced (%s, %u slots)", h->id, h->addr, h->upload_slots);
    }
    *out = h;
    return 0;
}

sched_host *sched_host_find(sched *s, const char *host_id)
{
    return host_id ? sched_map_get(&s->hosts, host_id) : NULL;
}

void sched_host_heartbeat(sched *s, sched_host *h, uint32_t free_slots, uint64_t now_ms)
{
    (void)s;
    h->last_seen_ms = now_ms;
    h->reported_free = free_slots;
}

void sched_host_leave(sched *s, sched_host *h, uint64_t now_ms)
{
    h->dying = 1;
    s->n_dying++;
    if (h->conn && s->ops.host_gone) s->ops.host_gone(s->ops.ctx, h);
    h->conn = NULL;
    while (h->peers) sched_peer_remove(s, h->peers, now_ms);
    s->n_dying--;
    sched_map_del(&s->hosts, h->id);
    s->st.hosts--;
    host_free(h);
}

void sched_host_set_conn(sched_host *h, void *conn)
{
    h->conn = conn;
}

void *sched_host_conn(const sched_host *h)
{
    return h->conn;
}

const char *sched_host_id(const sched_host *h)
{
    return h->id;
}

const char *sched_host_addr(const sched_host *h)
{
    return h->addr;
}

int sched_host_banned(const sched *s, const char *host_id, uint64_t now_ms)
{
    struct ban *b = sched_map_get(&s->bans, host_id);
    return b && b->until_ms > now_ms;
}

void sched_host_add_failure(sched *s, sched_host *h, uint64_t now_ms)
{
    (void)s;
    h->failures++;
    if (!h->failures_decay_ms) h->failures_decay_ms = now_ms;
}

void sched_host_record_cost(sched_host *h, uint32_t ms_per_mib, double bps)
{
    h->cost[h->cost_pos] = ms_per_mib;
    h->cost_pos = (h->cost_pos + 1) % COST_WINDOW;
    if (h->n_cost < COST_WINDOW) h->n_cost++;
    h->tput_bps = h->tput_bps == 0 ? bps : 0.7 * h->tput_bps + 0.3 * bps;
}

double sched_host_mean_cost(const sched_host *h)
{
    if (!h->n_cost) return 0;
    double sum = 0;
    for (uint32_t i = 0; i < h->n_cost; i++) sum += h->cost[i];
    return sum / h->n_cost;
}

void sched_host_view_get(const sched_host *h, struct sched_host_view *v)
{
    v->id = h->id;
    v->addr = h->addr;
    v->idc = h->idc;
    v->zone = h->zone;
    v->rack = h->rack;
    v->upload_slots = h->upload_slots;
    v->reserved = h->reserved;
    v->failures = h->failures;
    v->peers = h->n_peers;
    v->last_seen_ms = h->last_seen_ms;
    v->tput_bps = (uint64_t)h->tput_bps;
    v->piece_ms = sched_host_mean_cost(h);
}

struct expire_ctx {
    sched *s;
    uint64_t now, limit;
    sched_host **dead;
    size_t n, cap;
    struct ban **old_bans;
    size_t nb, capb;
};

static void collect_dead(void *arg, void *val)
{
    struct expire_ctx *x = arg;
    sched_host *h = val;
    /* halve failure counts every minute so old trouble is forgiven */
    if (h->failures && x->now - h->failures_decay_ms >= 60000) {
        h->failures /= 2;
        h->failures_decay_ms = x->now;
    }
    if (x->now > h->last_seen_ms && x->now - h->last_seen_ms > x->limit) {
        if (x->n == x->cap) {
            size_t nc = x->cap ? x->cap * 2 : 16;
            sched_host **nd = realloc(x->dead, nc * sizeof(*nd));
            if (!nd) return; /* try again next tick */
            x->dead = nd;
            x->cap = nc;
        }
        x->dead[x->n++] = h;
    }
}

static void collect_bans(void *arg, void *val)
{
    struct expire_ctx *x = arg;
    struct ban *b = val;
    if (b->until_ms > x->now) return;
    if (x->nb == x->capb) {
        size_t nc = x->capb ? x->capb * 2 : 8;
        struct ban **nd = realloc(x->old_bans, nc * sizeof(*nd));
        if (!nd) return;
        x->old_bans = nd;
        x->capb = nc;
    }
    x->old_bans[x->nb++] = b;
}

void sched_hosts_expire(sched *s, uint64_t now_ms)
{
    struct expire_ctx x = {
        .s = s, .now = now_ms, .limit = (uint64_t)s->cfg.heartbeat_ms * s->cfg.heartbeat_misses};
    sched_map_foreach(&s->hosts, collect_dead, &x);
    for (size_t i = 0; i < x.n; i++) {
        cf_info("host %s: no heartbeat for %llu ms, removing it and its %u peers", x.dead[i]->id,
                (unsigned long long)(now_ms - x.dead[i]->last_seen_ms), x.dead[i]->n_peers);
        s->st.hosts_expired++;
        sched_host_leave(s, x.dead[i], now_ms);
    }
    free(x.dead);
    sched_map_foreach(&s->bans, collect_bans, &x);
    for (size_t i = 0; i < x.nb; i++) {
        sched_map_del(&s->bans, x.old_bans[i]->id);
        free(x.old_bans[i]->id);
        free(x.old_bans[i]);
    }
    free(x.old_bans);
}

/* Child host `reporter` says `parent` served it garbage or nothing in task t. A ban needs
 * reports in ban_after_tasks distinct tasks from ban_min_reporters distinct hosts, so one lying
 * child cannot ban a host on its own. */
void sched_host_note_bad(sched *s, sched_host *parent, const sched_host *reporter,
                         const sched_task *t, uint64_t now_ms)
{
    sched_host_add_failure(s, parent, now_ms);
    uint64_t th = sched_hash(t->id), rh = sched_hash(reporter->id);
    int new_task = 1, new_rep = 1;
    for (uint32_t i = 0; i < parent->n_bad_tasks; i++) new_task &= parent->bad_tasks[i] != th;
    for (uint32_t i = 0; i < parent->n_bad_reporters; i++)
        new_rep &= parent->bad_reporters[i] != rh;
    if (new_task && parent->n_bad_tasks < 8) parent->bad_tasks[parent->n_bad_tasks++] = th;
    if (new_rep && parent->n_bad_reporters < 8)
        parent->bad_reporters[parent->n_bad_reporters++] = rh;
    if (parent->n_bad_tasks < s->cfg.ban_after_tasks ||
        parent->n_bad_reporters < s->cfg.ban_min_reporters)
        return;
    struct ban *b = sched_map_get(&s->bans, parent->id);
    int fresh = !b;
    if (!b) {
        b = calloc(1, sizeof(*b));
        if (!b || !(b->id = strdup(parent->id)) || sched_map_put(&s->bans, b->id, b)) {
            if (b) free(b->id);
            free(b);
            return;
        }
        s->st.bans++;
        cf_warn("host %s: reported bad in %u tasks by %u hosts, banned as a parent for %u s",
                parent->id, parent->n_bad_tasks, parent->n_bad_reporters, s->cfg.ban_ms / 1000);
    }
    b->until_ms = now_ms + s->cfg.ban_ms;
    parent->ban_until_ms = b->until_ms;
    if (fresh) sched_origin_parent_shunned(s, parent, now_ms);
}

static void ban_free(void *arg, void *val)
{
    (void)arg;
    struct ban *b = val;
    free(b->id);
    free(b);
}

void sched_bans_free(sched *s)
{
    sched_map_foreach(&s->bans, ban_free, NULL);
    sched_map_free(&s->bans);
}

struct foreach_ctx {
    void (*fn)(void *, const sched_host *);
    void *arg;
};

static void foreach_host(void *arg, void *val)
{
    struct foreach_ctx *c = arg;
    c->fn(c->arg, val);
}

void sched_foreach_host(sched *s, void (*fn)(void *arg, const sched_host *h), void *arg)
{
    struct foreach_ctx c = {fn, arg};
    sched_map_foreach(&s->hosts, foreach_host, &c);
}
