/* The piece policy of one download task: which piece to fetch next and from whom (parents'
 * bitmaps, rarest first, streaming readers first, origin grants, end game), and how parents are
 * judged (refusals, timeouts, lies, bans). It is the decision core of download_task.c and
 * knows nothing of libuv, sockets, the cache or the scheduler connection: time comes in as
 * `now_ms`, connection load through a callback, results go out as picks and return values. The
 * unit tests (tests/unit/peer/test_piece_policy.c) and, later, the simulator link it as it is.
 *
 * Ownership: a pp_task owns its bitmaps and its parents' bitmaps (pp_task_free). `conn` in a
 * parent is the caller's opaque pointer, never dereferenced here. Functions taking untrusted
 * input (runs, bitmaps from the network) check every index and length and return -ERANGE /
 * -EINVAL without changing anything. Not thread-safe: one task is used by one thread. */
#ifndef PEER_PIECE_POLICY_H
#define PEER_PIECE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "proto/msg.h"
#include "proto/piece.h"

#define PP_MAX_PARENTS 16
#define PP_ORIGIN      (-1) /* pick.parent / source: the origin (or our own cache) */

typedef struct pp_parent {
    char host_id[PROTO_MAX_ID_LEN + 1];
    char addr[PROTO_MAX_ADDR_LEN + 1];
    uint8_t *bits;              /* what it holds (CANDIDATES / AVAIL / AVAIL_UPDATE), owned */
    int banned;                 /* served bad bytes: never again for this task */
    uint64_t down_until_ms;     /* refusals / timeouts: skipped until then */
    uint64_t reported_until_ms; /* a bad-parent report covers failures until then (episode) */
    uint32_t served;            /* pieces it gave us */
    uint32_t requests;          /* this task's requests outstanding on it */
    void *conn;                 /* caller's connection, opaque */
    int subscribed;             /* caller's: availability updates asked on conn */
    int access;                 /* caller's: private-blob proof state with this parent */
    uint64_t access_req;        /* caller's: its ACCESS request id */
} pp_parent;

typedef struct pp_limits {
    uint32_t pieces_in_flight;     /* requests at once for the task (parents + origin) */
    uint32_t per_parent_in_flight; /* requests at once on one parent connection */
    uint32_t origin_in_flight;     /* origin fetches at once */
    /* End game: a piece is asked of a second parent only once its request is this old (0 = at
     * once). Without a cancel message the second copy always costs a piece of bandwidth, so
     * it is spent only on requests that look stalled. */
    uint32_t end_game_after_ms;
} pp_limits;

/* Hosts that served bad bytes, counted in tasks (one record per host for the daemon). */
typedef struct pp_liar {
    struct pp_liar *next;
    char host_id[PROTO_MAX_ID_LEN + 1];
    uint32_t tasks;
} pp_liar;

typedef struct pp_liars {
    pp_liar *head;
    uint32_t ban_after; /* lies in this many tasks: banned for every task */
} pp_liars;

typedef struct pp_task {
    uint32_t piece_count;
    uint8_t *have;     /* stored pieces */
    uint8_t *granted;  /* origin grants from the scheduler, not yet stored */
    uint8_t *requests; /* per piece: requests outstanding (0..2; 2 only in the end game) */
    uint64_t *since;   /* per piece: when its first outstanding request started (ms) */
    int16_t *source;   /* per piece: the parent that served it, PP_ORIGIN otherwise */
    uint32_t n_have, n_requests, n_origin_requests, n_pieces_requested;
    uint32_t n_pending; /* missing pieces with a request outstanding (end game: + n_have == all) */
    /* pieces of origin runs that do not count against the budgets: a run of k outstanding
     * pieces is one request (one HTTP Range GET streaming them), so all but one are held */
    uint32_t n_run_held;
    char (*banned_ids)[PROTO_MAX_ID_LEN + 1]; /* banned hosts whose slot was reused, owned */
    size_t n_banned_ids;
    pp_parent parents[PP_MAX_PARENTS];
    int n_parents;
    int origin_mode;  /* whatever no parent has comes from the origin */
    int hold_parents; /* a digest list is on its way: take nothing from parents until it is in */
    int whole;        /* fetch every piece (else only what readers want) */
    /* random tie-break between equally rare pieces, so nodes that learn of the same new
     * pieces at once take different ones and can trade them; the caller seeds it per node
     * (0: no draws, the lowest index wins) */
    uint64_t rng;
} pp_task;

/* A piece range readers wait for, in priority order (first = most urgent). */
typedef struct pp_want {
    uint32_t first, last; /* inclusive */
} pp_want;

typedef struct pp_env {
    uint64_t now_ms;
    const pp_limits *lim;
    const pp_liars *liars;
    int origin_known; /* the task can fetch from the origin at all */
    /* Requests outstanding on the connection to parent p across all tasks, or -1 when that
     * connection refuses requests now (busy). NULL: the parent's own `requests` count. */
    int (*conn_load)(void *ctx, const pp_parent *p);
    void *ctx;
} pp_env;

typedef struct pp_pick {
    uint32_t piece;
    int parent;     /* index in parents, or PP_ORIGIN */
    uint64_t at_ms; /* env->now_ms of the pp_next call that made it */
} pp_pick;

/* Maps for piece_count pieces. The same count as before keeps everything (grants and parents:
 * scheduler decisions may arrive while the cache entry opens; call pp_task_reset_pieces to
 * forget pieces); another count clears every map and the parents' bitmaps and request counts
 * (parents and their bans stay). 0, -EINVAL (count > PROTO_MAX_PIECES), -ENOMEM. */
int pp_task_init(pp_task *t, uint32_t piece_count);
void pp_task_free(pp_task *t);
/* Forget every stored piece, grant and outstanding request (content purged). */
void pp_task_reset_pieces(pp_task *t);
/* The cache's bitmap of stored pieces (proto_bitmap_nbytes(piece_count) bytes) becomes `have`
 * (sources reset to PP_ORIGIN); grants of held pieces are dropped, other grants kept. Call with
 * no request outstanding. */
void pp_load_have(pp_task *t, const uint8_t *bits);

/* The next piece to fetch and its source, or 0 when nothing should start now (budgets full,
 * nothing wanted, no source). The caller starts it and reports pp_request_started(), or, if it
 * could not, pp_parent_unreachable() / gives up; then asks again. Order: pieces in `wants`
 * (streaming, in order; when whole, only each want's next lim->pieces_in_flight missing
 * pieces), then (when whole) origin grants, then the least loaded parent holding a missing
 * piece and its rarest such piece (ties drawn with t->rng), the rest from the origin in origin
 * mode, and finally the end game: when every missing piece is already requested, a second
 * request for a piece whose request has been outstanding for at least lim->end_game_after_ms,
 * from an idle parent. When pieces_in_flight is full, a whole task still starts a granted
 * piece no parent holds from the origin (within origin_in_flight): others wait for it. */
int pp_next(pp_task *t, const pp_want *wants, size_t n_wants, const pp_env *env, pp_pick *out);
void pp_request_started(pp_task *t, const pp_pick *p);
/* A request ended (data arrived, failed, or its connection closed): the counters drop. */
void pp_request_ended(pp_task *t, uint32_t piece, int parent);
/* The piece is stored. 1 when it is new (source recorded, grant cleared, parent credited), 0
 * when it was already held (a late duplicate), -ERANGE for a bad index. */
int pp_piece_stored(pp_task *t, uint32_t piece, int parent);
/* The cache lost a stored piece (failed sync): fetch it again. */
void pp_piece_lost(pp_task *t, uint32_t piece);

/* Origin runs: one origin request (one HTTP Range GET) for several consecutive pieces, because
 * a registry spends milliseconds of its own per request (docker-registry: ~6 ms, as much as
 * moving a 1 MiB piece on loopback). pp_origin_run: after pp_next picked `first` from the
 * origin, how many pieces from first (at most max, >= 1) one request may fetch: the following
 * ones while missing, not requested and allowed from the origin (origin mode or granted).
 * pp_origin_run_started: the run is requested; it counts as one request in pieces_in_flight and
 * origin_in_flight for as long as any of its pieces is outstanding. pp_origin_run_piece_ended:
 * one of its pieces ended (stored, failed or given up); run_ended = it was the run's last one
 * outstanding. */
uint32_t pp_origin_run(const pp_task *t, uint32_t first, uint32_t max);
void pp_origin_run_started(pp_task *t, uint32_t first, uint32_t n, uint64_t at_ms);
void pp_origin_run_piece_ended(pp_task *t, uint32_t piece, int run_ended);

/* Where a whole-blob task's missing pieces are, for /metrics (issue 14: where the time goes).
 * Pieces not requested are split by whether some parent (not banned) is known to hold them:
 * waiting_parent = a parent has it but no request went out (budgets, parents' load or skips);
 * waiting_origin = no known parent has it, so it waits for an origin fetch (this node's, when
 * granted or in origin mode, else another node's first copy reaching the mesh). */
typedef struct pp_waiting {
    uint32_t missing;             /* pieces not stored */
    uint32_t requests_parents;    /* requests outstanding on parents (end-game duplicates too) */
    uint32_t requests_origin;     /* pieces being fetched from the origin */
    uint32_t waiting_parent;      /* missing, not requested, held by a parent */
    uint32_t waiting_origin;      /* missing, not requested, held by no known parent */
    uint32_t waiting_origin_mine; /* of waiting_origin: granted to this node or origin mode */
} pp_waiting;
/* Adds the task's counts to *out (callers sum over tasks). Nothing for a task without maps. */
void pp_count_waiting(const pp_task *t, const pp_liars *liars, pp_waiting *out);

/* Whether the task should ask the scheduler for parents again (a repeated REGISTER_TASK; the
 * caller rate-limits it): nothing is outstanding (its parents ran out), or, for a whole-blob
 * task not in origin mode, some missing piece is neither granted to it nor held by any parent
 * it knows (its parents ran dry of what it lacks; e.g. an origin grantee knows only the parents
 * it got at registration, when nobody held anything). */
int pp_wants_parents(const pp_task *t, const pp_liars *liars);

/* Why a parent request failed. */
enum pp_failure {
    PP_FAIL_BUSY,         /* no upload slot: try another parent for a moment */
    PP_FAIL_NOT_HELD,     /* it does not have that piece after all */
    PP_FAIL_UNKNOWN_TASK, /* it does not have the blob at all */
    PP_FAIL_TIMEOUT,      /* the connection stalled on a piece */
    PP_FAIL_LOST,         /* connection refused or lost */
    PP_FAIL_BAD_REPLY,    /* answered something else / wrong length */
};
/* Records the failure (skips the parent for a while, never shortening a longer skip; forgets a
 * bit, ...). Returns the PROTO_BAD_PARENT_* reason to report to the scheduler, or 0 when no
 * report is due: busy and not held are never reported, and one report covers the parent's
 * failures until its skip from that report ends (one episode). */
int pp_request_failed(pp_task *t, int parent, uint32_t piece, enum pp_failure why, uint64_t now_ms);
/* The caller could not reach the parent to send a request: skip it for a moment. */
void pp_parent_unreachable(pp_task *t, int parent, uint64_t now_ms);

/* Parent `parent` served bytes that failed their digest: banned for this task, and counted in
 * liars (banned for every task after liars->ban_after tasks). Returns a mask of PP_LIE_*. When
 * no usable parent is left and env->origin_known, the task switches to origin mode. */
#define PP_LIE_NEW_BAN    1u /* banned now (report it; was not banned before) */
#define PP_LIE_GLOBAL_BAN 2u /* this lie made it banned for every task */
#define PP_LIE_TO_ORIGIN  4u /* every parent is banned: origin mode switched on */
unsigned pp_parent_lied(pp_task *t, pp_liars *liars, int parent, int origin_known);
int pp_globally_banned(const pp_liars *liars, const char *host_id);
void pp_liars_free(pp_liars *liars);

/* A candidate parent (scheduler CANDIDATES): finds or adds its slot (reusing the slot of a
 * banned or down parent with nothing outstanding when all are taken; a banned host stays banned
 * for the task even then) and ORs in its bitmap (bits_len must be
 * proto_bitmap_nbytes(piece_count)). The parent's "down" state is cleared. Returns the slot,
 * -EINVAL (bad length), -EACCES (banned in this task), -ENOSPC (no slot), -ENOMEM. A changed
 * address resets conn/subscribed (the caller reconnects). */
int pp_add_candidate(pp_task *t, const char *host_id, const char *addr, const uint8_t *bits,
                     size_t bits_len, uint64_t now_ms);
/* Availability from the parent itself: a whole bitmap (bits, len) and/or runs of new pieces.
 * 0, -EINVAL (bad length), -ERANGE (run past the end; nothing changed). */
int pp_parent_avail(pp_task *t, int parent, const uint8_t *bits, size_t len,
                    const proto_piece_run *runs, size_t n_runs);
/* Parents that are neither banned for the task nor banned globally. */
int pp_usable_parents(const pp_task *t, const pp_liars *liars);
/* Origin grants (BACK_TO_SOURCE runs): 0, or -ERANGE with nothing changed. */
int pp_grant(pp_task *t, const proto_piece_run *runs, size_t n_runs);
void pp_clear_grants(pp_task *t);

#endif
