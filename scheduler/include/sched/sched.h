/* sched: the scheduling core of chunkfly-scheduler (policy in docs/scheduler.md).
 *
 * Pure state machine, no I/O: the server (sched_server.h) feeds it decoded messages and a
 * clock, and it answers through sched_ops callbacks (candidate parents, back-to-source grants,
 * "wait"). Everything is soft state rebuilt from peer announcements after a restart.
 *
 * Objects: a host (one peer daemon), a task (one blob, id "sha256:<hex>") and a peer (one host
 * downloading or serving one task). The core owns all three; pointers handed to callbacks are
 * valid during the callback only unless stated otherwise.
 *
 * Time: every entry point takes `now_ms` (any monotonic millisecond clock), so tests inject
 * time. Threads: one thread at a time (the server calls it from its libuv loop only).
 * Errors: 0 or a negative errno; -EINVAL invalid argument, -ENOENT unknown host/task,
 * -EMSGSIZE content length/piece layout out of range, -EBADMSG mismatching task facts,
 * -ENOMEM. */
#ifndef SCHED_SCHED_H
#define SCHED_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

#define SCHED_MAX_CANDIDATES 8 /* hard cap on K */
#define SCHED_MAX_BAD        8 /* parents a peer may blocklist per task (oldest dropped) */

typedef struct sched sched;
typedef struct sched_host sched_host;
typedef struct sched_task sched_task;
typedef struct sched_peer sched_peer;

struct sched_config {
    unsigned max_candidates;     /* K parents per answer (default 4, <= SCHED_MAX_CANDIDATES) */
    unsigned origin_per_piece;   /* M peers fetching one piece from the origin (default 1) */
    unsigned origin_peers;       /* peers of one task holding grants at once (default 8) */
    unsigned grant_window;       /* pieces per grant (default 16) */
    uint32_t stall_ms;           /* grant moves after no origin progress this long (5000) */
    uint32_t heartbeat_ms;       /* expected heartbeat interval (2000) */
    unsigned heartbeat_misses;   /* host expires after this many missed beats (3) */
    unsigned ban_after_tasks;    /* bad-parent reports in this many tasks ban a host (3) */
    unsigned ban_min_reporters;  /* ...from at least this many distinct hosts (2) */
    uint32_t ban_ms;             /* how long a cluster-wide ban lasts (600000) */
    uint32_t wait_retry_ms;      /* retry hint in WAIT answers (1000) */
    unsigned sample_limit;       /* candidates scored per decision (64) */
    unsigned waiters_per_event;  /* waiting peers rescheduled per new piece event (16) */
    uint32_t recovery_window_ms; /* after a re-announce ("resync") report, for this long... */
    uint32_t recovery_hold_ms;   /* ...new tasks hold origin grants this long (5000 / 500) */
    /* Memory bounds (the per-piece state of a task grows with its content length, which the
     * registering host chooses): registrations over them fail with -ENOSPC. */
    unsigned max_tasks_per_host; /* tasks one host may be registered in (4096) */
    uint64_t host_state_budget;  /* per-piece state one host may cause (16 MiB: 1.4M pieces) */
    uint64_t state_budget;       /* per-piece state of all tasks (256 MiB) */
};
void sched_config_default(struct sched_config *c);

/* Facts about a host, from ANNOUNCE_HOST. Strings are copied. */
struct sched_host_info {
    const char *host_id;
    const char *addr;              /* "ip:port" of its piece server */
    const char *idc, *zone, *rack; /* location labels, may be NULL/"" */
    uint32_t upload_slots;
    uint64_t upload_bw; /* bytes/s, 0 = unknown */
};

struct sched_run {
    uint32_t start, count;
};

/* What the core decided for one peer. Arrays are owned by the core, valid during the call. */
struct sched_decision {
    sched_peer *peer;           /* the child */
    sched_peer *const *parents; /* candidate parents, best first */
    size_t n_parents;
    const struct sched_run *grant; /* pieces newly granted for origin fetch */
    size_t n_grant;
    uint32_t stall_ms; /* in grants: no progress this long moves the grant */
    uint32_t wait_ms;  /* > 0: nothing to do now, the core will push parents */
};

struct sched_ops {
    /* Deliver a decision to peer->host (via its connection). Called synchronously from any
     * entry point, including for peers other than the caller's (re-parenting, moved grants). */
    void (*decide)(void *ctx, const struct sched_decision *d);
    /* Optional: host h is being removed by the core itself (heartbeat expiry) while it still
     * has a connection (sched_host_conn); drop every reference to h. */
    void (*host_gone)(void *ctx, sched_host *h);
    void *ctx;
};

/* Creates a core. cfg NULL = defaults. Returns NULL on ENOMEM. */
sched *sched_new(const struct sched_config *cfg, const struct sched_ops *ops);
void sched_free(sched *s);
const struct sched_config *sched_get_config(const sched *s);

/* --- hosts --- */
/* Announce (or re-announce: facts updated, peers kept). *out valid until the host leaves. */
int sched_host_announce(sched *s, const struct sched_host_info *info, uint64_t now_ms,
                        sched_host **out);
sched_host *sched_host_find(sched *s, const char *host_id);
/* Heartbeat: host is alive; free_slots = reported free upload slots (UINT32_MAX unknown). */
void sched_host_heartbeat(sched *s, sched_host *h, uint32_t free_slots, uint64_t now_ms);
/* Host leaves (LEAVE_HOST, connection closed or expiry): its peers leave, children are
 * re-parented and its origin grants move. `h` is freed. */
void sched_host_leave(sched *s, sched_host *h, uint64_t now_ms);
/* Opaque pointer for the server (its connection); NULL when none. */
void sched_host_set_conn(sched_host *h, void *conn);
void *sched_host_conn(const sched_host *h);
const char *sched_host_id(const sched_host *h);
const char *sched_host_addr(const sched_host *h);
int sched_host_banned(const sched *s, const char *host_id, uint64_t now_ms);

/* --- tasks --- */
/* REGISTER_TASK from h. Creates the task on first registration (its piece size is fixed then),
 * or checks content_length against it (-EBADMSG with a message on mismatch). A repeated
 * registration of the same peer asks for a new schedule. Emits one decision for the peer.
 * *task_out (may be NULL) gets the task. */
int sched_register(sched *s, sched_host *h, const char *task_id, uint64_t content_length,
                   uint64_t now_ms, sched_task **task_out, cf_err *err);
/* Call before sched_register when the host says it registered this task with a scheduler
 * before (REGISTER_TASK "rs": this scheduler restarted, or the task moved here). Starts the
 * recovery window, so the task, when this registration creates it, or while it is younger than
 * recovery_hold, holds origin grants for recovery_hold: the first host to come back may hold
 * nothing while others hold pieces they have not re-announced yet. */
void sched_note_reregistration(sched *s, const char *task_id, uint64_t now_ms);
/* PIECE_REPORT: pieces h now holds; parent_id "" or NULL = fetched from the origin. Runs are
 * untrusted: -ERANGE when outside the task. May emit decisions for other peers. */
int sched_report_pieces(sched *s, sched_host *h, const char *task_id, const struct sched_run *runs,
                        size_t n_runs, const char *parent_id, uint64_t now_ms, cf_err *err);
/* TASK_FINISHED: h holds every piece. -EBADMSG when its bitmap is not full. */
int sched_task_finished(sched *s, sched_host *h, const char *task_id, uint64_t now_ms, cf_err *err);
/* TASK_FAILED / LEAVE_TASK: the peer leaves the task (grants move, children re-parented). */
int sched_leave_task(sched *s, sched_host *h, const char *task_id, uint64_t now_ms);
/* BAD_PARENT: the reporter drops parent_id and gets a new decision. With `lied` (wrong bytes,
 * a malformed reply) parent_id is blocklisted for this peer and the report counts towards a
 * cluster-wide ban. Without (timeouts, refusals, lost connections: what an honest parent on a
 * congested link also causes) it only counts as a failure that ranks the parent lower: it may
 * be offered again, and no number of such reports bans it. */
int sched_bad_parent(sched *s, sched_host *h, const char *task_id, const char *parent_id, int lied,
                     uint64_t now_ms);

sched_task *sched_task_find(sched *s, const char *task_id);
const char *sched_task_id(const sched_task *t);
uint64_t sched_task_length(const sched_task *t);
uint32_t sched_task_piece_size(const sched_task *t);
uint32_t sched_task_piece_count(const sched_task *t);
/* Stores the per-piece digest list (32 bytes * piece_count, copied) if the task has none yet.
 * Returns 0, -ENOENT, -EEXIST (kept the first), -EINVAL (wrong size). */
/* Stores the task's per-piece digest list (len = piece count * 32) published by `publisher`
 * (may be NULL). Returns 0 (also when equal to the stored one), -EEXIST when a different list is
 * stored, -EPERM when publisher's list for this task was discredited, -EINVAL, -ENOMEM. */
int sched_task_set_digests(sched_task *t, const uint8_t *digests, size_t len,
                           const sched_host *publisher);
/* A peer fetching from the origin found bytes that disagree with the list (the origin is
 * authoritative): the list is dropped, so the next host that verifies the whole blob may publish
 * one, and its publisher may not publish this task's list again. Returns 1 when a list was
 * dropped, 0 when there was none. */
int sched_task_discredit_digests(sched_task *t);
const uint8_t *sched_task_digests(const sched_task *t); /* NULL when none */

/* The peer of host h in task task_id, or NULL. */
sched_peer *sched_find_peer(sched *s, sched_host *h, const char *task_id);

/* Peer accessors (for building answers). */
sched_host *sched_peer_host(const sched_peer *p);
sched_task *sched_peer_task(const sched_peer *p);
/* Writes the wire bitmap (LSB-first bytes, ceil(n/8)) into out (size >= that). */
void sched_peer_bitmap(const sched_peer *p, uint8_t *out, size_t out_len);
uint32_t sched_peer_have(const sched_peer *p);

/* Periodic work: expire silent hosts, move stalled grants, end bans. Call every ~250-500 ms. */
void sched_tick(sched *s, uint64_t now_ms);

/* --- observability --- */
struct sched_stats {
    uint64_t hosts, tasks, peers; /* gauges */
    uint64_t registrations, decisions, candidates_sent, waits;
    uint64_t grants_pieces;      /* pieces granted for origin fetch */
    uint64_t grants_moved;       /* pieces re-granted after stall/death */
    uint64_t origin_unsolicited; /* pieces reported from origin without a grant */
    uint64_t bad_parent_reports, bans, hosts_expired, hosts_left;
    uint64_t bad_parent_unassigned; /* reports about hosts never assigned to the reporter */
    uint64_t outliers_dropped;
    uint64_t grant_holds; /* new tasks whose grants waited for re-announces */
};
void sched_stats_get(const sched *s, struct sched_stats *out);

/* Iteration for /status (pointers valid during the callback; do not mutate the core). */
void sched_foreach_host(sched *s, void (*fn)(void *arg, const sched_host *h), void *arg);
void sched_foreach_task(sched *s, void (*fn)(void *arg, const sched_task *t), void *arg);
void sched_task_foreach_peer(const sched_task *t, void (*fn)(void *arg, const sched_peer *p),
                             void *arg);

/* Read-only views for status output. */
struct sched_host_view {
    const char *id, *addr, *idc, *zone, *rack;
    uint32_t upload_slots, reserved, failures, peers;
    uint64_t last_seen_ms, tput_bps;
    double piece_ms; /* mean of recent piece times as a parent, 0 = none */
};
void sched_host_view_get(const sched_host *h, struct sched_host_view *v);
struct sched_peer_view {
    const char *host_id;
    uint32_t have, grants, n_parents;
    const char *parents[SCHED_MAX_CANDIDATES];
    int waiting, finished, stalled;
};
void sched_peer_view_get(const sched_peer *p, struct sched_peer_view *v);
struct sched_task_view {
    const char *id;
    uint64_t content_length;
    uint32_t piece_size, piece_count, peers, pieces_in_mesh, pieces_granted;
    int has_digests;
};
void sched_task_view_get(const sched_task *t, struct sched_task_view *v);

#endif
