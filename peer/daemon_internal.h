/* Internal structures of the peer daemon, shared by its .c files (one per concern). */
#ifndef PEER_DAEMON_INTERNAL_H
#define PEER_DAEMON_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cf/error.h"
#include "peer/daemon.h"
#include "peer/piece_store.h"
#include "peer/token_bucket.h"
#include "proto/conn.h"
#include "proto/msg.h"
#include "proto/piece.h"
#include "proto/registry_client.h"
#include "proto/rendezvous.h"

#define TASK_MAX_PARENTS 16

struct peer_metrics {
    uint64_t bytes_from_parents, bytes_from_origin, bytes_served_peers, bytes_served_local;
    uint64_t pieces_from_parents, pieces_from_origin, pieces_served;
    uint64_t local_reads, local_read_hits, local_read_errors;
    uint64_t piece_failures, origin_failures, digest_mismatches, bans, parent_timeouts;
    uint64_t upload_busy, upload_refused, bad_frames, tasks_completed, tasks_failed;
    uint64_t blobs_verified, blob_mismatches;
};

/* A cached registry client per (host, credentials). */
struct origin_client {
    struct origin_client *next;
    char *key; /* host "\n" credentials */
    proto_registry *reg;
};

/* ---- scheduler links (sched_client.c) ---- */
struct sched_link {
    peer_daemon *d;
    int idx;
    char addr[PROTO_MAX_ADDR_LEN + 1];
    proto_conn *c;
    int ready; /* handshake done + announced */
    int connecting;
    proto_sched_health health;
    uint64_t hb_seq, hb_acked;
};

/* ---- parent connections (parent_conn.c) ---- */
struct preq {
    struct preq *next;
    uint64_t req_id;
    struct task *t;
    uint32_t piece;
    int tp; /* index in t->parents */
    uint64_t deadline_ms;
};

struct pconn {
    struct pconn *next;
    peer_daemon *d;
    char addr[PROTO_MAX_ADDR_LEN + 1];
    char host_id[PROTO_MAX_ID_LEN + 1];
    proto_conn *c;
    int ready;
    int n_inflight;
    struct preq *reqs;
    uint64_t busy_until_ms;
};

/* ---- tasks (download_task.c) ---- */
enum task_state {
    T_SIZING,      /* learning length (cache or origin HEAD) */
    T_REGISTERING, /* waiting for REGISTER_ANSWER */
    T_OPENING,     /* creating the cache entry */
    T_RUNNING,     /* fetching pieces */
    T_VERIFYING,   /* whole-blob sha256 */
    T_DONE,        /* complete and verified: seeding */
    T_FAILED,
};

struct tparent {
    char host_id[PROTO_MAX_ID_LEN + 1];
    char addr[PROTO_MAX_ADDR_LEN + 1];
    uint8_t *bits; /* what it holds (from CANDIDATES / AVAIL / AVAIL_UPDATE) */
    struct pconn *pc;
    int banned;             /* served bad bytes: never again for this task */
    int subscribed;         /* AVAIL_QUERY sent on pc */
    uint64_t down_until_ms; /* timeouts/refusals: skip for a while */
    uint32_t served;
};

struct local_read;

struct task {
    struct task *next;
    peer_daemon *d;
    char id[PROTO_TASK_ID_LEN + 1];
    uint8_t digest[32];
    char origin[PROTO_MAX_ORIGIN_LEN + 1];
    char registry[256], repo[256];
    int scheme;  /* enum proto_registry_scheme from an "http://"/"https://" origin, 0 = default */
    char *creds; /* opaque, never logged */
    struct origin_client *oc;
    enum task_state state;
    int work_refs; /* thread-pool jobs referencing the task */
    int dead;      /* removed from the list; freed when work_refs == 0 */
    int whole;     /* download every piece (prefetch / first read) */
    uint64_t length;
    uint32_t piece_size, piece_count, n_have, n_inflight, n_origin_inflight;
    uint8_t *have, *inflight, *granted;
    int16_t *source;  /* per piece: parent index that served it, -1 origin/own */
    uint8_t *digests; /* per-piece sha256 list (piece_count*32), NULL until known */
    int digests_from_sched;
    int sched_has_digests;
    int origin_mode;     /* fetch whatever is needed from the origin */
    int origin_no_sched; /* origin_mode only because the scheduler went away */
    int sched_idx;       /* scheduler link registered on, -1 none */
    int registered;
    int finished_sent;
    int restarts;
    int seed; /* already complete when the task was created */
    struct tparent parents[TASK_MAX_PARENTS];
    int n_parents;
    uint64_t created_ms, last_progress_ms, reask_at_ms, register_deadline_ms, digests_poll_ms;
    peer_blob_ref *ref;
    struct local_read *readers;
    struct local_read *prefetchers; /* prefetch requests waiting for the length */
    uint64_t from_parents, from_origin;
    int fail_code; /* proto_error_code once failed */
    char fail_msg[256];
};

/* ---- local API (local_api.c) ---- */
struct lconn;
struct local_read {
    struct local_read *next_t; /* in task->readers */
    struct local_read *next_c; /* in lconn->reads */
    struct lconn *lc;
    struct task *t;
    uint64_t req_id, cur, end;
    int prefetch;
    /* In-use reference held from the moment the blob's cache entry exists until the read ends
     * (done, error, disconnect): a finished task holds none, so without it quota eviction
     * could remove the blob under a slow reader. Released by read_unlink only. */
    peer_blob_ref *ref;
};

struct upconn; /* upload_server.c */

struct lie_record {
    struct lie_record *next;
    char host_id[PROTO_MAX_ID_LEN + 1];
    uint32_t tasks;
};

struct peer_daemon {
    uv_loop_t *loop;
    struct peer_daemon_opts o;
    char host_id[PROTO_MAX_ID_LEN + 1];
    char adv_ip[64];
    uint16_t adv_port;
    peer_store *store;
    int stopping;
    /* upload server */
    uv_tcp_t up_listen;
    struct upconn *upconns;
    uint32_t n_upconns, slots_used;
    peer_token_bucket bucket;
    uv_timer_t bucket_timer;
    int bucket_timer_on;
    int faults_corrupt; /* test fault: flip bytes of served pieces */
    /* local API */
    uv_pipe_t api_listen;
    int api_listening;
    struct lconn *lconns;
    uint32_t n_lconns;
    /* http */
    struct proto_http_server *http;
    /* schedulers */
    struct sched_link sched[PEER_MAX_SCHEDULERS];
    const char *sched_addrs[PEER_MAX_SCHEDULERS];
    proto_sched_health sched_health[PEER_MAX_SCHEDULERS];
    uv_timer_t hb_timer;
    /* parents */
    struct pconn *pconns;
    uint64_t next_req_id;
    /* tasks */
    struct task *tasks;
    uint32_t n_tasks;
    uv_timer_t tick_timer; /* timeouts, stalls, store flush */
    int flush_running;
    struct origin_client *origins;
    struct lie_record *liars;
    struct peer_metrics m;
    uv_signal_t sigpipe_dummy;
};

/* peer_daemon.c */
uint64_t pd_now(peer_daemon *d);
int pd_queue_work(peer_daemon *d, void *job, void (*work)(void *job),
                  void (*done)(void *job, int cancelled));
/* The accepting side of the HELLO handshake on c (local API, upload server): m, the first frame,
 * must be a HELLO (else ERROR UNEXPECTED and close after flush: -EPROTO); it is checked against
 * ours (host id, role peer, caps, 4096-byte payload limit) and answered with our HELLO, or
 * refused (ERROR VERSION, close after flush: the check's error). On 0 the handshake is done and
 * *peer_max_payload is what we may send. m stays the caller's to free. */
int pd_serve_hello(peer_daemon *d, proto_conn *c, const proto_msg *m, uint64_t caps,
                   uint32_t *peer_max_payload);

/* token_bucket.c lives in its own header. */

/* upload_server.c */
int upload_server_start(peer_daemon *d, cf_err *err);
void upload_server_stop(peer_daemon *d);
void upload_notify_piece(peer_daemon *d, const struct task *t, uint32_t piece);
void upload_tick(peer_daemon *d);

/* sched_client.c */
void sched_client_init(peer_daemon *d);
void sched_client_stop(peer_daemon *d);
/* Registers (or re-registers) t with its rendezvous scheduler. Returns 0 when a scheduler was
 * chosen (answer follows), -ENOENT when none is configured/healthy. */
int sched_client_register(peer_daemon *d, struct task *t);
int sched_client_send(peer_daemon *d, int idx, const proto_msg *m);
void sched_client_report(peer_daemon *d, struct task *t, uint32_t start, uint32_t count,
                         const char *parent_id);
void sched_client_bad_parent(peer_daemon *d, struct task *t, const char *parent_id, uint8_t reason,
                             uint32_t piece);

/* parent_conn.c */
struct pconn *pconn_get(peer_daemon *d, const char *addr, const char *host_id);
int pconn_request(struct pconn *pc, struct task *t, int tp, uint32_t piece);
void pconn_subscribe(struct pconn *pc, struct task *t);
void pconn_forget_task(peer_daemon *d, struct task *t);
void pconn_check_timeouts(peer_daemon *d);
void pconn_close_all(peer_daemon *d);

/* download_task.c */
struct task *task_find(peer_daemon *d, const char *id);
/* Finds or starts the task. origin may be "" when the blob is already cached. Returns NULL
 * with err set when the request cannot start. */
struct task *task_get(peer_daemon *d, const char *id, const char *origin, const char *creds,
                      int whole, cf_err *err);
void task_pump(struct task *t);
void task_on_register_answer(struct task *t, const proto_register_answer *a);
void task_on_candidates(struct task *t, const proto_candidates *c);
void task_on_back_to_source(struct task *t, const proto_back_to_source *b);
void task_on_wait(struct task *t, uint32_t ms);
void task_on_digests(struct task *t, const proto_digest_list *l);
void task_on_sched_error(struct task *t, const proto_error *e);
void task_on_sched_lost(struct task *t);
/* Piece bytes arrived from parent tp (payload copied by the callee). */
void task_on_piece_data(struct task *t, int tp, uint32_t piece, const uint8_t *data, uint32_t len);
void task_on_piece_failed(struct task *t, int tp, uint32_t piece, int code);
void task_on_parent_avail(struct task *t, int tp, const uint8_t *bits, size_t len,
                          const proto_piece_run *runs, size_t n_runs);
void task_tick(peer_daemon *d);
void tasks_stop(peer_daemon *d);
void tasks_free(peer_daemon *d);
bool task_has_piece(const struct task *t, uint32_t piece);
/* "[http://|https://]registry/repo[@digest]": the scheme prefix picks http/https for this
 * origin (0 = the daemon's default). 0 or -EINVAL. */
int origin_parse(const char *origin, proto_image_ref *ref, int *scheme, cf_err *err);
int origin_client_get(peer_daemon *d, const char *registry, int scheme, const char *creds,
                      struct origin_client **out, cf_err *err); /* [blocking] */

/* One piece on its way into the cache (from a parent or the origin), processed in the pool by
 * task_piece_write_work (digest check when a list is known, then peer_store_write_piece) and
 * finished on the loop by task_piece_write_done. */
struct piece_job {
    struct task *t;
    uint32_t piece, len;
    int tp; /* -1 origin */
    uint8_t *data;
    uint8_t expect[32];
    int has_expect;
    int rc;
    cf_err err;
    /* origin */
    size_t got;
    proto_registry *reg;
    char repo[256];
};

void task_piece_write_work(void *job);
void task_piece_write_done(void *job, int cancelled);
void task_piece_job_free(struct piece_job *j);

/* back_to_source.c */
/* Queues an origin Range GET of `piece` (thread pool); the caller marks it in flight.
 * 0, -ENOENT (no origin known), -ENOMEM. */
int bts_fetch_piece(struct task *t, uint32_t piece);
/* [blocking] 0 when the origin's bytes [off, off+len) hash to expect, -EBADMSG when not, other
 * negative errno when the origin could not tell. */
int bts_piece_matches(proto_registry *reg, const char *repo, const char *task_id, uint64_t off,
                      uint32_t len, const uint8_t expect[32]);

/* local_api.c */
int local_api_start(peer_daemon *d, cf_err *err);
void local_api_stop(peer_daemon *d);
void local_api_tick(peer_daemon *d);
/* Task progress: serve waiting readers. */
void local_reads_pump(struct task *t);
/* Task failed (code = proto_error_code). */
void local_reads_fail(struct task *t, uint32_t code, const char *msg);
/* Prefetch accepted (task running). */
void local_prefetch_ready(struct task *t);
/* The task's cache entry was purged and is re-created: readers drop their references to the
 * old entry and take new ones when they next serve bytes. */
void local_reads_drop_refs(struct task *t);

/* peer_metrics.c */
int peer_http_start(peer_daemon *d, cf_err *err);
void peer_http_stop(peer_daemon *d);

#endif
