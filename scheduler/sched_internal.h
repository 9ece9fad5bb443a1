/* Private structures of the scheduling core, shared by its .c files only. */
#ifndef SCHED_INTERNAL_H
#define SCHED_INTERNAL_H

#include <stdint.h>

#include "sched/sched.h"

/* --- sched_map.c: string-keyed hash map (chained, power-of-two buckets) --- */
struct sched_map_ent {
    struct sched_map_ent *next;
    uint64_t hash;
    const char *key; /* owned by the value */
    void *val;
};
struct sched_map {
    struct sched_map_ent **b;
    size_t nb, n;
};
uint64_t sched_hash(const char *s);
void *sched_map_get(const struct sched_map *m, const char *key);
int sched_map_put(struct sched_map *m, const char *key, void *val); /* key must be absent */
void *sched_map_del(struct sched_map *m, const char *key);
void sched_map_free(struct sched_map *m);
void sched_map_foreach(const struct sched_map *m, void (*fn)(void *arg, void *val), void *arg);

#define COST_WINDOW         16
#define SCHED_ASSIGNED_RING 16

struct sched_host {
    char *id;
    uint64_t id_hash; /* sched_hash(id): blocklist checks without rehashing */
    char *addr;
    char *idc, *zone, *rack;
    uint32_t upload_slots;
    uint32_t reserved;      /* children currently assigned to this host's peers */
    uint32_t reported_free; /* from heartbeats, UINT32_MAX unknown */
    uint64_t upload_bw;
    uint64_t last_seen_ms;
    uint64_t origin_progress_ms; /* an origin piece landed here, in any task */
    uint32_t failures;           /* decays: halved every minute */
    uint64_t failures_decay_ms;
    /* piece times as a parent, ms per MiB */
    uint32_t cost[COST_WINDOW];
    uint32_t n_cost, cost_pos;
    double tput_bps;       /* EWMA bytes/s as a parent */
    uint64_t bad_tasks[8]; /* hashes of distinct tasks where a child reported it bad */
    uint32_t n_bad_tasks;
    uint64_t bad_reporters[8]; /* hashes of distinct hosts that reported it bad */
    uint32_t n_bad_reporters;
    sched_peer *peers; /* list via peer->hnext */
    uint32_t n_peers;
    uint64_t state_bytes; /* its peers' bitmaps + the tasks it created (while it is in them) */
    void *conn;
    uint64_t ban_until_ms; /* copy of its cluster-wide ban (struct ban), 0 = none */
    int dying;             /* leaving: never selected */
};

struct sched_peer {
    sched_host *host;
    sched_task *task;
    uint64_t *bits; /* have-bitmap, task->n_words words */
    uint32_t have;
    uint32_t idx;     /* index in task->peers */
    uint32_t src_idx; /* index in task->src, UINT32_MAX when not a source */
    sched_peer *hnext, *hprev;
    sched_peer *parents[SCHED_MAX_CANDIDATES];
    uint8_t n_parents;
    uint8_t n_bad;
    uint8_t waiting, finished, stalled;
    uint64_t bad[SCHED_MAX_BAD]; /* hashes of blocklisted parent host ids */
    /* hashes of the last parents this core assigned to the peer: only reports about those
     * count against a parent (anyone can name any host in a BAD_PARENT) */
    uint64_t assigned[SCHED_ASSIGNED_RING];
    uint8_t assigned_pos;
    uint32_t n_grants; /* pieces granted and not yet reported */
    uint64_t grant_progress_ms;
    uint64_t last_report_ms;
    uint64_t parents_since_ms;
};

struct sched_task {
    char id[80];
    uint64_t content_length;
    uint32_t piece_size, n_pieces, n_words;
    sched_peer **peers;
    uint32_t n_peers, cap_peers;
    sched_peer **src; /* peers holding pieces or grants: the only possible parents */
    uint32_t n_src, cap_src;
    uint32_t *holders;       /* per piece: peers holding it */
    sched_peer **grant;      /* per piece * origin_per_piece: granted peer or NULL */
    uint32_t pieces_in_mesh; /* pieces with holders > 0 */
    uint32_t pieces_granted; /* pieces with at least one grant */
    uint32_t granted_peers;  /* peers with n_grants > 0 */
    /* ms a fetcher waits for its next origin piece in this task (since its grant or its last
     * origin piece), a moving average over the task's fetchers (0 = no piece yet): the stall
     * limit follows it once origin_gaps >= 4 */
    uint64_t origin_gap_ms;
    uint32_t origin_gaps;
    uint64_t max_upload_bw; /* fastest announced uplink of a peer it ever had (bytes/s) */
    uint32_t n_waiting;
    uint32_t waiter_cursor;
    uint8_t *digests;
    uint64_t digests_publisher;     /* id hash of the host whose list is stored */
    uint64_t discredited_publisher; /* id hash of a host whose list the origin contradicted */
    uint64_t state_bytes;           /* per-piece arrays of the task (task_state_cost) */
    sched_host *creator;            /* charged for state_bytes while it has a peer in the task */
    sched_task *gnext, *gprev;      /* list of tasks with live grants (for the stall check) */
    int in_grant_list;
    uint64_t created_ms;
    uint64_t hold_until_ms;    /* no origin grants before this (recovery after a move) */
    sched_task *hnext, *hprev; /* list of held tasks */
    int in_hold_list;
};

struct sched {
    struct sched_config cfg;
    struct sched_ops ops;
    struct sched_map hosts, tasks, bans; /* bans: host id -> struct ban */
    sched_task *grant_tasks;
    sched_task *held_tasks;
    uint64_t last_resync_ms; /* last re-registration or report of pieces a peer already held
                              * (0 = never) */
    struct sched_stats st;
    uint64_t state_bytes; /* all tasks' per-piece arrays and peers' bitmaps */
    uint64_t rng;
    /* scratch for decisions */
    struct sched_run *runs;
    size_t runs_cap;
    uint32_t n_dying;      /* hosts inside sched_host_leave */
    sched_peer **unusable; /* origin_guard.c: sources a child cannot use */
    size_t unusable_cap;
};

struct ban {
    char *id;
    uint64_t until_ms;
};

/* sched_task.c */
sched_peer *sched_peer_find(sched_task *t, sched_host *h);
void sched_peer_remove(sched *s, sched_peer *p, uint64_t now_ms);
void sched_schedule(sched *s, sched_peer *p, uint64_t now_ms, int allow_wait);
void sched_wake_waiters(sched *s, sched_task *t, uint64_t now_ms);
void sched_source_add(sched_task *t, sched_peer *p);
void sched_reparent_children(sched *s, sched_peer *gone, uint64_t now_ms);
uint64_t sched_rand(sched *s);
void sched_emit(sched *s, const struct sched_decision *d);

static inline int peer_has(const sched_peer *p, uint32_t i)
{
    return (int)((p->bits[i >> 6] >> (i & 63)) & 1);
}

/* parent_select.c */
size_t sched_select_parents(sched *s, sched_peer *child, uint64_t now_ms, sched_peer **out,
                            size_t k);
void sched_set_parents(sched *s, sched_peer *child, sched_peer *const *parents, size_t n,
                       uint64_t now_ms);
int sched_is_blocked(const sched_peer *child, const sched_host *parent);
/* Nobody may use h as a parent now: leaving or banned cluster-wide. */
static inline int sched_host_shunned(const sched_host *h, uint64_t now_ms)
{
    return h->dying || h->ban_until_ms > now_ms;
}

/* origin_guard.c */
/* Grants up to grant_window orphan pieces to p; fills s->runs; returns the run count. */
size_t sched_origin_grant(sched *s, sched_peer *p, uint64_t now_ms);
/* p reported piece i from the origin. */
void sched_origin_piece_done(sched *s, sched_peer *p, uint32_t i, uint64_t now_ms);
/* Drops every grant of p (leave, stall); returns pieces freed. */
uint32_t sched_origin_release(sched *s, sched_peer *p);
/* Re-grants orphan, ungranted pieces of t to other peers (after a release). */
void sched_origin_regrant(sched *s, sched_task *t, sched_peer *except, uint64_t now_ms);
void sched_origin_check_stalls(sched *s, uint64_t now_ms);
/* parent became unusable for everybody (banned): move its children, rescheduling its tasks'
 * waiters (their pieces may have no usable holder any more). */
void sched_origin_parent_shunned(sched *s, sched_host *parent, uint64_t now_ms);
/* Recovery hold (see sched_config.recovery_*): start / end-of-hold processing. */
void sched_origin_hold(sched *s, sched_task *t, uint64_t until_ms);
void sched_origin_release_holds(sched *s, uint64_t now_ms);

/* sched_host.c */
void sched_hosts_expire(sched *s, uint64_t now_ms);
void sched_host_note_bad(sched *s, sched_host *parent, const sched_host *reporter,
                         const sched_task *t, uint64_t now_ms);
void sched_bans_free(sched *s);
void sched_host_record_cost(sched_host *h, uint32_t ms_per_mib, double bps);
double sched_host_mean_cost(const sched_host *h);
void sched_host_add_failure(sched *s, sched_host *h, uint64_t now_ms);

#endif
