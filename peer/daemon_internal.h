/* Internal structures of the peer daemon, shared by its .c files (one per concern). */
#ifndef PEER_DAEMON_INTERNAL_H
#define PEER_DAEMON_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cf/error.h"
#include "peer/daemon.h"
#include "piece_policy.h"
#include "peer/piece_store.h"
#include "peer/token_bucket.h"
#include "proto/conn.h"
#include "proto/handshake.h"
#include "proto/msg.h"
#include "proto/piece.h"
#include "proto/registry_client.h"
#include "proto/rendezvous.h"

#define PEER_API_ALLOW_MAX   32
#define PEER_API_PRIVATE_MAX 512
#define PEER_API_UNKNOWN_MAX 64

struct peer_metrics {
    uint64_t bytes_from_parents, bytes_from_origin, bytes_served_peers, bytes_served_local;
    uint64_t pieces_from_parents, pieces_from_origin, pieces_served;
    uint64_t local_reads, local_read_hits, local_read_errors;
    uint64_t local_files_passed;    /* reads answered with the data file's descriptor */
    uint64_t local_callers_refused; /* uid/gid not allowed on the local API */
    uint64_t local_access_refused;  /* private blob: the registry did not accept the caller */
    uint64_t piece_failures, origin_failures, digest_mismatches, bans, parent_timeouts;
    uint64_t digest_lists_discredited; /* scheduler lists the origin's bytes contradicted */
    uint64_t upload_busy, upload_refused, bad_frames, tasks_completed, tasks_failed;
    uint64_t blobs_verified, blob_mismatches;
    uint64_t tls_refused; /* upload conns refused in TLS or for a HELLO id not their cert's */
    uint64_t upload_auth_refused; /* private-blob requests answered AUTH (no or a bad proof) */
    uint64_t access_proofs_sent, access_refused; /* as a requester: ACCESS sent / refused */
    uint64_t mirror_requests, mirror_hits, mirror_errors, mirror_bytes, mirror_manifest_hits;
};

/* A cached registry client per (host, credentials). */
/* A shared registry client (back_to_source.c), one per scheme, registry and credentials. The
 * cache holds at most ORIGIN_CLIENTS_MAX unused ones (least recently used evicted first): a
 * mirror passes each client's credentials, so distinct credentials must not grow it forever. */
#define ORIGIN_CLIENTS_MAX 32
struct origin_client {
    struct origin_client *next;
    uint8_t key[32]; /* sha256 of scheme "\n" host "\n" credentials: no secret kept in the key */
    proto_registry *reg;
    unsigned refs;      /* holders (tasks, jobs); 0 = evictable */
    uint64_t last_used; /* origins_clock when last handed out */
};

/* ---- scheduler links (sched_client.c) ---- */
/* A slot of the scheduler table. Tasks name a scheduler by its slot index, which stays put
 * while the address is in the table; a slot is reused only once its connection is gone. */
struct sched_link {
    peer_daemon *d;
    int idx;
    char addr[PROTO_MAX_ADDR_LEN + 1];
    int active;   /* in the table: a rendezvous candidate */
    int retiring; /* left the table, its connection is closing: the slot is not free yet */
    proto_conn *c;
    int ready; /* handshake done + announced */
    int connecting;
    uint64_t hb_seq, hb_acked;
};

/* A `scheduler` entry that is a name: its resolved addresses ("ip:port", "[ip6]:port"). */
struct sched_name {
    peer_daemon *d;
    char host[256], port[8];
    uv_getaddrinfo_t req;
    int busy;         /* req in flight */
    int resolved;     /* resolved at least once */
    int failing;      /* the last attempt failed (warned once per run of failures) */
    uint64_t next_ms; /* next resolution */
    size_t n;         /* addrs[0..n), sorted */
    char (*addrs)[PROTO_MAX_ADDR_LEN + 1];
};

/* ---- parent connections (parent_conn.c): a piece source below the tasks ---- */
struct preq {
    struct preq *next;
    uint64_t req_id;
    void *owner; /* the requesting task, opaque here */
    char task_id[PROTO_TASK_ID_LEN + 1];
    uint32_t piece;
    int tp; /* the owner's parent slot */
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

/* What parent connections report, to whoever registered (download_task.c): they never call a
 * task by name. `code` is a PROTO_E_* from the parent, -ETIMEDOUT (stalled connection closed) or
 * another negative errno (connection lost). on_piece: data is valid during the call; `frame`,
 * when not NULL, is the cf_bufpool buffer holding it, now the handler's (cf_bufpool_put). */
struct pconn_handler {
    void (*on_piece)(void *owner, int tp, uint32_t piece, const uint8_t *data, uint32_t len,
                     void *frame);
    void (*on_failed)(void *owner, int tp, uint32_t piece, int code);
    /* AVAIL (bits) or AVAIL_UPDATE (runs) for task_id from pc */
    void (*on_avail)(peer_daemon *d, struct pconn *pc, const char *task_id, uint32_t piece_count,
                     const uint8_t *bits, size_t bits_len, const proto_piece_run *runs,
                     size_t n_runs);
    void (*on_closed)(peer_daemon *d, struct pconn *pc); /* before pc is freed */
    /* an ERROR naming task_id that answers no piece request (ACCESS, AVAIL_QUERY: req_id 0) */
    void (*on_task_error)(peer_daemon *d, struct pconn *pc, const char *task_id, uint64_t req_id,
                          int code, const char *msg);
    void (*on_access_ok)(peer_daemon *d, struct pconn *pc, const char *task_id, uint64_t req_id);
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

/* Piece bytes kept in memory because the cache could not store them (full disk): handed to
 * the watchers, who keep a reference while they still need the bytes. */
struct piece_buf {
    uint32_t refs;
    uint32_t piece, len;
    int verified;  /* matched the task's digest list on arrival */
    uint8_t *data; /* inside base */
    void *base;    /* cf_bufpool buffer */
};
void piece_buf_unref(struct piece_buf *b);

/* Task watchers: consumers (range readers) register on a task to learn about new pieces and
 * state changes. The task knows them only through these callbacks. */
enum task_event {
    TASK_EV_READABLE, /* the cache entry is open: pieces can be read */
    TASK_EV_RESTART,  /* content purged (bad blob digest): everything is fetched again */
    TASK_EV_DONE,     /* complete and verified */
    TASK_EV_FAILED,   /* failed or gone (t->fail_code, t->fail_msg): the watcher is off the
                       * list already; it must task_unwatch() (clears w->t) in the call and
                       * never touch the task after it returns */
};
struct task_watcher;
struct task_watcher_ops {
    /* Piece `piece` is readable: from the cache, or (mem != NULL) only from memory. */
    void (*on_piece)(struct task_watcher *w, uint32_t piece, struct piece_buf *mem);
    void (*on_event)(struct task_watcher *w, enum task_event ev);
};
struct task_watcher {
    struct task_watcher *next;
    const struct task_watcher_ops *ops;
    struct task *t;
    /* Bytes [want_off, want_end) the watcher waits for: their pieces are fetched first, in
     * watcher order. Updated by the watcher; task_wants_changed() when they grow. */
    uint64_t want_off, want_end;
};

/* Every piece stored by any task (upload server: availability updates to children). */
struct piece_listener {
    struct piece_listener *next;
    void (*on_piece)(struct piece_listener *l, const char *task_id, uint32_t piece);
};

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
    uint64_t length;
    uint32_t piece_size;
    pp_task pp;       /* piece maps, parents, origin mode, whole (piece_policy.h) */
    uint8_t *digests; /* per-piece sha256 list (piece_count*32), NULL until known */
    uint8_t *checked; /* bitmap: pieces whose bytes matched `digests` on arrival (NULL = none):
                       * their digest is not computed a second time when the blob is verified */
    int digests_from_sched;
    int sched_has_digests;
    int origin_no_sched; /* origin mode only because the scheduler went away */
    int sched_idx;       /* scheduler link registered on, -1 none */
    int registered;
    int ever_registered; /* a scheduler answered once: later registrations are re-registrations */
    int finished_sent;
    int restarts;
    int seed;       /* already complete when the task was created */
    int cache_full; /* a piece could not be stored: serve readers from memory, no background */
    uint64_t created_ms, last_progress_ms, reask_at_ms, register_deadline_ms, digests_poll_ms;
    peer_blob_ref *ref;
    struct task_watcher *watchers;
    uint64_t from_parents, from_origin;
    uint32_t origin_fail_streak; /* origin piece failures since its last success */
    int fail_code;               /* proto_error_code once failed */
    char fail_msg[256];
};

struct upconn; /* upload_server.c */

struct peer_daemon {
    uv_loop_t *loop;
    struct peer_daemon_opts o;
    char host_id[PROTO_MAX_ID_LEN + 1];
    char adv_ip[64];
    uint16_t adv_port;
    proto_tls *tls;                   /* mesh TLS, NULL = plain TCP */
    struct sockaddr_storage mesh_src; /* TLS: source of scheduler links (the announced IP) */
    int has_mesh_src;
    peer_store *store;
    int stopping;
    /* upload server */
    uv_tcp_t up_listen;
    struct upconn *upconns;
    uint32_t n_upconns, slots_used;
    peer_token_bucket bucket;
    uv_timer_t bucket_timer;
    int bucket_timer_on;
    int faults_corrupt;                /* test fault: flip bytes of served pieces */
    int faults_no_publish;             /* test fault: never publish a digest list */
    struct piece_listener up_listener; /* availability updates to subscribed children */
    /* local API */
    uv_pipe_t api_listen;
    int api_listening;
    struct lconn *lconns;
    uint32_t n_lconns;
    /* callers allowed (SO_PEERCRED): root, our uid, these uids, these groups (local_api.c) */
    uid_t api_uids[PEER_API_ALLOW_MAX];
    gid_t api_gids[PEER_API_ALLOW_MAX];
    size_t n_api_uids, n_api_gids;
    uint64_t api_refused_log_ms; /* last refused caller logged (at most one line a second) */
    /* blobs seen refused anonymously (private), a ring (local_api.c) */
    struct api_private {
        uint8_t digest[32];
        uint8_t key[32]; /* SHA-256 of the origin checked and the digest */
        uint64_t seen_ms;
    } api_private[PEER_API_PRIVATE_MAX];
    unsigned api_private_n, api_private_next;
    /* origins whose anonymous check could not tell (registry away): held blobs are served
     * without asking again until `until_ms` (local_api.c) */
    struct api_unknown {
        uint8_t key[32];
        uint64_t until_ms;
    } api_unknown[PEER_API_UNKNOWN_MAX];
    unsigned api_unknown_next;
    /* http */
    struct proto_http_server *http;
    /* registry mirror */
    struct proto_http_server *mirror_http;
    struct mreq *mreqs;
    struct mcache_entry *mcache; /* manifests by digest */
    size_t mcache_bytes;
    struct peer_access *access; /* blob access verdicts (access_check.c) */
    /* schedulers */
    struct sched_link sched[PEER_MAX_SCHEDULERS]; /* the table: active slots */
    proto_sched_health sched_health[PEER_MAX_SCHEDULERS];
    size_t n_sched_slots;                 /* slots ever used (high-water mark) */
    int sched_order[PEER_MAX_SCHEDULERS]; /* active slots, by address (strcmp) */
    size_t n_sched_active;
    struct sched_name *sched_names; /* the `scheduler` entries that are names */
    size_t n_sched_names;
    uv_timer_t hb_timer, resolve_timer;
    /* parents */
    struct pconn *pconns;
    uint64_t next_req_id;
    /* tasks */
    struct task *tasks;
    uint32_t n_tasks;
    uv_timer_t tick_timer; /* timeouts, stalls, store flush */
    int flush_running;
    struct origin_client *origins; /* back_to_source.c, under its lock */
    uint32_t n_origins;
    uint64_t origins_clock;
    pp_liars liars;
    struct piece_listener *piece_listeners;
    const struct pconn_handler *pconn_h;
    const struct sched_handler *sched_h;
    uint64_t pieces_dropped_seen; /* peer_store_stats.pieces_dropped already reconciled */
    struct peer_metrics m;
    uv_signal_t sigpipe_dummy;
};

/* peer_daemon.c */
uint64_t pd_now(peer_daemon *d);
int pd_queue_work(peer_daemon *d, void *job, void (*work)(void *job),
                  void (*done)(void *job, int cancelled));
/* Like pd_queue_work, for long CPU-bound work that no reader waits for (hashing a whole blob):
 * a thread of its own at a lower priority (nice +10), so a busy machine serves bytes first. */
int pd_queue_background(peer_daemon *d, void *job, void (*work)(void *job),
                        void (*done)(void *job, int cancelled));
/* "ip:port" (numeric, v4 or v6) into its parts: 0 or -EINVAL. */
int pd_split_host(const char *hostport, char *ip, size_t ipsz, uint16_t *port);
/* The accepting side of the HELLO handshake on c (local API, upload server): m, the first frame,
 * must be a HELLO (else ERROR UNEXPECTED and close after flush: -EPROTO); it is checked against
 * ours (host id, role peer, caps, 4096-byte payload limit) and answered with our HELLO, or
 * refused (ERROR VERSION, close after flush: the check's error). On 0 the handshake is done and
 * *peer_max_payload is what we may send. m stays the caller's to free. */
int pd_serve_hello(peer_daemon *d, proto_conn *c, const proto_msg *m, uint64_t caps,
                   uint32_t *peer_max_payload);

/* token_bucket.c lives in its own header. */

/* upload_server.c (front end) */
int upload_server_start(peer_daemon *d, cf_err *err);
void upload_server_stop(peer_daemon *d);
void upload_tick(peer_daemon *d);

/* sched_client.c (below the tasks: reports through sched_handler) */
struct sched_handler {
    void (*on_link_ready)(peer_daemon *d, int idx); /* connected + announced */
    void (*on_link_lost)(peer_daemon *d, int idx);
    void (*on_host_unknown)(peer_daemon *d, int idx); /* scheduler restarted: re-register */
    /* a task message (REGISTER_ANSWER, CANDIDATES, BACK_TO_SOURCE, WAIT, DIGESTS, DIGESTS_ACK,
     * ERROR with a task id) from link idx */
    void (*on_task_msg)(peer_daemon *d, int idx, const proto_msg *m);
    /* The table changed (addresses joined or left; left ones are no longer candidates but
     * still connected): move every task whose rendezvous pick (sched_client_pick) is no longer
     * its link. The links that left close after this returns. */
    void (*on_table_changed)(peer_daemon *d);
};
/* Numeric entries form the table at once; names are resolved (uv_getaddrinfo, in the thread
 * pool) now and every o.sched_resolve_interval_ms, and the table follows. */
int sched_client_init(peer_daemon *d, const struct sched_handler *h, cf_err *err);
/* The rendezvous scheduler of task_id among the healthy active ones: a slot index, or
 * -ENOENT. */
int sched_client_pick(peer_daemon *d, const char *task_id);
void sched_client_free(peer_daemon *d); /* after sched_client_stop and the loop's end */
void sched_client_stop(peer_daemon *d);
/* Picks the rendezvous scheduler for task_id and registers it there (now, or once connected).
 * resync: a scheduler answered this task before (REGISTER_TASK "rs"). *idx = the link. 0, or
 * -ENOENT when none is configured/healthy. */
int sched_client_register(peer_daemon *d, const char *task_id, uint64_t length, const char *origin,
                          int resync, int *idx);
int sched_client_send(peer_daemon *d, int idx, const proto_msg *m);
int sched_client_link_ready(peer_daemon *d, int idx);

/* parent_conn.c (a piece source below the tasks: reports through pconn_handler) */
void pconn_init(peer_daemon *d, const struct pconn_handler *h);
struct pconn *pconn_get(peer_daemon *d, const char *addr, const char *host_id);
int pconn_request(struct pconn *pc, void *owner, const char *task_id, int tp, uint32_t piece);
void pconn_subscribe(struct pconn *pc, const char *task_id);
/* ACCESS: a pull token as proof for a private blob (sent only to a parent that asked). */
int pconn_send_access(struct pconn *pc, const char *task_id, uint64_t req_id, const char *repo_ref,
                      const char *token);
void pconn_forget_owner(peer_daemon *d, void *owner);
void pconn_check_timeouts(peer_daemon *d);
void pconn_close_all(peer_daemon *d);

/* download_task.c (the core) */
int tasks_init(peer_daemon *d, cf_err *err);
struct task *task_find(peer_daemon *d, const char *id);
/* Finds or starts the task. origin may be "" when the blob is already cached. whole: fetch
 * every piece (prefetch, or a read with fetch_whole_blob). Returns NULL with err set when the
 * request cannot start. */
struct task *task_get(peer_daemon *d, const char *id, const char *origin, const char *creds,
                      int whole, cf_err *err);
bool task_has_piece(const struct task *t, uint32_t piece);
/* The cache entry is open: pieces can be leased (RUNNING, VERIFYING, DONE). */
bool task_readable(const struct task *t);
/* The piece's bytes are verified: checked against the digest list bound to the blob on arrival,
 * or the whole blob's sha256 matched (T_DONE). */
bool task_piece_verified(const struct task *t, uint32_t piece);
/* A reader waits for verified bytes of a piece stored unverified: only the whole-blob check can
 * verify it now, so the task fetches the whole blob (unless the cache is full). */
void task_want_verified(struct task *t);
/* A reader found a piece the task thinks it holds missing from the cache (dropped after a
 * failed sync): the task fetches it again. */
void task_piece_missing(struct task *t, uint32_t piece);
/* Watchers (see struct task_watcher): appended, so earlier ones keep their priority. A watcher
 * added to a readable task gets no READABLE event: check task_readable(). */
void task_watch(struct task *t, struct task_watcher *w);
void task_unwatch(struct task_watcher *w);
void task_wants_changed(struct task *t);
void tasks_listen_pieces(peer_daemon *d, struct piece_listener *l);
/* Pieces the cache dropped (failed sync) are fetched again; called when the store's
 * pieces_dropped counter moved. */
void tasks_resync_with_store(peer_daemon *d);
void task_tick(peer_daemon *d);
void tasks_stop(peer_daemon *d);
void tasks_free(peer_daemon *d);
/* "[http://|https://]registry/repo[@digest]": the scheme prefix picks http/https for this
 * origin (0 = the daemon's default). 0 or -EINVAL. */
int origin_parse(const char *origin, proto_image_ref *ref, int *scheme, cf_err *err);

/* back_to_source.c (a piece source: the origin registry) */
/* [blocking] A reference to the registry client of (registry, scheme, creds): shared, created
 * when missing. Release it with origin_client_put() (any thread). */
int origin_client_get(peer_daemon *d, const char *registry, int scheme, const char *creds,
                      struct origin_client **out, cf_err *err);
/* [blocking] The client without any credentials (the docker config is not read either): the
 * anonymous token flow, what the registry gives anyone. Released with origin_client_put(). */
int origin_client_anon(peer_daemon *d, const char *registry, int scheme, struct origin_client **out,
                       cf_err *err);
void origin_client_put(peer_daemon *d, struct origin_client *oc);
/* Frees every cached client (their credentials and tokens are wiped): daemon teardown. */
void origin_clients_free(peer_daemon *d);
/* Registry clients cached (in use or not), for tests and metrics. */
size_t origin_clients_count(peer_daemon *d);
/* [blocking] Exactly len bytes of the blob at off into buf: 0, or a negative errno (message
 * in err). */
int bts_get_range(proto_registry *reg, const char *repo, const char *task_id, uint64_t off,
                  uint32_t len, uint8_t *buf, cf_err *err);
/* [blocking] 0 when the origin's bytes [off, off+len) hash to expect, -EBADMSG when not, other
 * negative errno when the origin could not tell. */
int bts_piece_matches(proto_registry *reg, const char *repo, const char *task_id, uint64_t off,
                      uint32_t len, const uint8_t expect[32]);

/* task_status.c: one snapshot of the tasks for the local API's LIST and the HTTP /status */
typedef struct task_status {
    const char *id, *state; /* point into the task (valid until the loop runs again) */
    uint64_t length;
    uint32_t piece_size, piece_count, pieces_have, in_flight;
    int origin_mode, sched_idx, readers;
    uint64_t from_parents, from_origin;
    const char *error;              /* failed tasks: the message, else NULL */
    size_t first_parent, n_parents; /* range in the parents array */
} task_status;
typedef struct task_status_parent {
    const char *host_id, *addr;
    uint32_t served;
    int banned, down, connected;
} task_status_parent;
/* Up to max tasks (and all their parents); *tasks and *parents are malloc'ed (caller frees
 * both). 0 or -ENOMEM. */
int tasks_snapshot(peer_daemon *d, size_t max, task_status **tasks, size_t *n,
                   task_status_parent **parents, size_t *n_parents);

/* range_reader.c: bytes of a blob as pieces land (see range_reader.h) */

/* local_api.c (front end) */
int local_api_start(peer_daemon *d, cf_err *err);
void local_api_stop(peer_daemon *d);
void local_api_tick(peer_daemon *d);

/* mirror.c (front end): the registry mirror on mirror_listen (docs/mirror.md) */
int mirror_start(peer_daemon *d, cf_err *err);
void mirror_stop(peer_daemon *d);
void mirror_tick(peer_daemon *d);
int mirror_port(const peer_daemon *d);

/* peer_http.c (front end): /metrics, /healthz, /status */
int peer_http_start(peer_daemon *d, cf_err *err);
void peer_http_stop(peer_daemon *d);

#endif
