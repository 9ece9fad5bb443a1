/* The per-blob download state machine, the core of the peer (docs/peer.md, "Downloading"):
 *
 *   SIZING -> (REGISTERING) -> OPENING -> RUNNING -> VERIFYING -> DONE (seeding)
 *                                            ^            |
 *                                            +-- mismatch-+   any step -> FAILED
 *
 * SIZING learns the blob length from the cache or an origin HEAD (thread pool). Blobs up to
 * small_blob, and every blob when no scheduler answers, go straight to the origin; otherwise the
 * task registers with its rendezvous scheduler, whose answer fixes the piece size. RUNNING keeps
 * pieces moving as the piece policy (piece_policy.c) decides: what watchers wait for first, then
 * origin grants, then rarest first, then the end game. Bytes are checked against the per-piece
 * digest list when one is known, written in the thread pool, reported to the scheduler and
 * announced to watchers and piece listeners, who never are called by name: front ends (local
 * API, upload server, mirror) register through task_watch() / tasks_listen_pieces(). Pieces come
 * from parent connections (parent_conn.c) and the origin (back_to_source.c), which report back
 * through handlers registered here. When all pieces are written the whole blob is hashed; a
 * match marks it verified and publishes the digest list, a mismatch purges it, finds the parent
 * that served the first bad piece (by comparing parent-served pieces with the origin) and bans
 * it, then starts again. A piece the cache cannot store (full disk, after eviction) goes to the
 * watchers from memory and the background download stops. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/bufpool.h"
#include "cf/digest.h"
#include "cf/hex.h"
#include "cf/log.h"
#include "daemon_internal.h"
#include "download_timing.h"
#include "proto/error_code.h"
#include "proto/piece.h"

#define MAX_RESTARTS 3
#define MAX_WANTS    64 /* watcher ranges handed to the policy per pump */

static void task_pump(struct task *t);
static void task_open(struct task *t);
static void task_register(struct task *t);
static void start_verify(struct task *t);

bool task_has_piece(const struct task *t, uint32_t piece)
{
    return t->pp.have && piece < t->pp.piece_count && proto_bit_get(t->pp.have, piece);
}

bool task_piece_verified(const struct task *t, uint32_t piece)
{
    if (t->state == T_DONE) return true;
    return t->checked && piece < t->pp.piece_count && proto_bit_get(t->checked, piece);
}

void task_want_verified(struct task *t)
{
    if (t->pp.whole || t->cache_full || t->state != T_RUNNING) return;
    t->pp.whole = 1;
    task_pump(t);
}

bool task_readable(const struct task *t)
{
    return t->pp.have && (t->state == T_RUNNING || t->state == T_VERIFYING || t->state == T_DONE);
}

struct task *task_find(peer_daemon *d, const char *id)
{
    for (struct task *t = d->tasks; t; t = t->next)
        if (strcmp(t->id, id) == 0) return t;
    return NULL;
}

/* ---- watchers and listeners ---- */

void piece_buf_unref(struct piece_buf *b)
{
    if (b && --b->refs == 0) {
        cf_bufpool_put(b->base);
        free(b);
    }
}

void task_watch(struct task *t, struct task_watcher *w)
{
    w->t = t;
    w->next = NULL;
    struct task_watcher **pp = &t->watchers;
    while (*pp) pp = &(*pp)->next;
    *pp = w;
    task_pump(t);
}

void task_unwatch(struct task_watcher *w)
{
    struct task *t = w->t;
    if (!t) return;
    for (struct task_watcher **pp = &t->watchers; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    w->t = NULL;
    w->next = NULL;
}

void task_wants_changed(struct task *t)
{
    task_pump(t);
}

void tasks_listen_pieces(peer_daemon *d, struct piece_listener *l)
{
    l->next = d->piece_listeners;
    d->piece_listeners = l;
}

/* Watchers may unwatch themselves (and only themselves) from their callbacks. */
static void notify_event(struct task *t, enum task_event ev)
{
    struct task_watcher *next;
    for (struct task_watcher *w = t->watchers; w; w = next) {
        next = w->next;
        if (ev == TASK_EV_FAILED) { /* off the list; w->t stays valid for the call */
            t->watchers = next;
            w->next = NULL;
        }
        w->ops->on_event(w, ev);
    }
}

static void notify_piece(struct task *t, uint32_t piece, struct piece_buf *mem)
{
    struct task_watcher *next;
    for (struct task_watcher *w = t->watchers; w; w = next) {
        next = w->next;
        w->ops->on_piece(w, piece, mem);
    }
    if (mem) return; /* not in the cache: nothing to offer other peers */
    for (struct piece_listener *l = t->d->piece_listeners; l; l = l->next)
        l->on_piece(l, t->id, piece);
}

/* ---- lifetime ---- */

static void task_free(struct task *t)
{
    origin_client_put(t->d, t->oc);
    pp_task_free(&t->pp);
    free(t->digests);
    free(t->checked);
    if (t->creds) {
        memset(t->creds, 0, strlen(t->creds));
        free(t->creds);
    }
    free(t);
}

static void task_unlink(struct task *t)
{
    peer_daemon *d = t->d;
    if (t->dead) return;
    t->dead = 1;
    for (struct task **pp = &d->tasks; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            d->n_tasks--;
            break;
        }
    }
    pconn_forget_owner(d, t);
    if (t->ref) {
        peer_store_blob_release(d->store, t->ref);
        t->ref = NULL;
    }
}

static void task_maybe_free(struct task *t)
{
    if (t->dead && t->work_refs == 0) task_free(t);
}

static void send_to_sched(struct task *t, const proto_msg *m)
{
    if (t->sched_idx >= 0) sched_client_send(t->d, t->sched_idx, m);
}

static void leave_sched(struct task *t)
{
    if (!t->registered) return;
    proto_msg m = {.type = PROTO_MSG_LEAVE_TASK};
    m.u.leave_task.task_id = t->id;
    send_to_sched(t, &m);
}

/* A finished task whose blob left the cache (evicted, purged): leave the mesh and forget it, so
 * the next read starts a fresh download. Returns 1 when it was dropped. */
static int task_drop_if_gone(struct task *t)
{
    peer_blob_info bi;
    if (t->state != T_DONE || t->dead) return 0;
    if (peer_store_blob_info(t->d->store, t->digest, &bi) == 0 && bi.complete) return 0;
    cf_info("task %s: blob left the cache, leaving the mesh", t->id);
    leave_sched(t);
    t->fail_code = PROTO_E_NOT_FOUND;
    snprintf(t->fail_msg, sizeof(t->fail_msg), "blob left the cache during the read, retry");
    task_unlink(t);
    notify_event(t, TASK_EV_FAILED);
    task_maybe_free(t);
    return 1;
}

static void task_fail(struct task *t, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void task_fail(struct task *t, uint32_t code, const char *fmt, ...)
{
    if (t->dead) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->fail_msg, sizeof(t->fail_msg), fmt, ap);
    va_end(ap);
    t->fail_code = (int)code;
    t->state = T_FAILED;
    t->d->m.tasks_failed++;
    cf_warn("task %s: failed: %s", t->id, t->fail_msg);
    if (t->registered) {
        proto_msg m = {.type = PROTO_MSG_TASK_FAILED};
        m.u.task_failed.task_id = t->id;
        m.u.task_failed.code = code;
        m.u.task_failed.message = t->fail_msg;
        send_to_sched(t, &m);
    }
    task_unlink(t);
    notify_event(t, TASK_EV_FAILED);
    task_maybe_free(t);
}

/* Task failures caused by the origin or the cache; what the table does not name is the
 * origin's doing. */
static uint32_t fail_code(int rc)
{
    return proto_error_from_errno(rc, PROTO_E_ORIGIN);
}

static void go_origin(struct task *t)
{
    t->pp.origin_mode = 1;
    if (!t->piece_size) t->piece_size = proto_piece_size_for(t->length);
    task_open(t);
}

/* ---- SIZING ---- */

struct size_job {
    struct task *t;
    int rc;
    cf_err err;
    peer_blob_info info;
    int cached;
    uint64_t length;
    struct origin_client *oc;
    peer_daemon *d; /* the task may be freed before the job (task_fail) */
    /* snapshot: task_get may fill in the task's origin meanwhile (loop thread) */
    char registry[256], repo[256];
    char *creds;
    int scheme;
    int origin_from_cache;
};

static void size_work(void *p)
{
    struct size_job *j = p;
    struct task *t = j->t;
    peer_daemon *d = t->d;
    if (peer_store_blob_info(d->store, t->digest, &j->info) == 0) {
        j->cached = 1;
        j->length = j->info.length;
        if (j->info.complete && j->info.verified) return;
    }
    if (!j->registry[0] && j->cached && j->info.origin[0]) {
        /* no origin in the request: the one recorded with the cached blob */
        proto_image_ref ref;
        if (origin_parse(j->info.origin, &ref, &j->scheme, NULL) == 0) {
            snprintf(j->registry, sizeof(j->registry), "%s", ref.registry);
            snprintf(j->repo, sizeof(j->repo), "%s", ref.repo);
            j->origin_from_cache = 1;
        }
    }
    if (!j->registry[0]) {
        if (!j->cached)
            j->rc = cf_err_set(&j->err, -ENOENT, "blob %s is not cached and no origin was given",
                               t->id);
        return;
    }
    j->rc = origin_client_get(d, j->registry, j->scheme, j->creds, &j->oc, &j->err);
    if (j->rc || j->cached) {
        if (j->cached) j->rc = 0;
        return;
    }
    j->rc = proto_registry_blob_size(j->oc->reg, j->repo, t->id, &j->length, &j->err);
}

static void size_job_free(struct size_job *j)
{
    origin_client_put(j->d, j->oc);
    if (j->creds) {
        memset(j->creds, 0, strlen(j->creds));
        free(j->creds);
    }
    free(j);
}

static void size_done(void *p, int cancelled)
{
    struct size_job *j = p;
    struct task *t = j->t;
    t->work_refs--;
    if (t->dead || cancelled || t->d->stopping) {
        size_job_free(j);
        task_maybe_free(t);
        return;
    }
    if (j->rc) {
        task_fail(t, fail_code(j->rc), "%s", cf_err_str(&j->err, j->rc));
        size_job_free(j);
        return;
    }
    t->oc = j->oc;
    j->oc = NULL; /* the task's reference now */
    t->length = j->length;
    if (j->origin_from_cache && !t->registry[0]) {
        snprintf(t->origin, sizeof(t->origin), "%s", j->info.origin);
        snprintf(t->registry, sizeof(t->registry), "%s", j->registry);
        snprintf(t->repo, sizeof(t->repo), "%s", j->repo);
        t->scheme = j->scheme;
    }
    if (j->cached) t->piece_size = j->info.piece_size;
    t->seed = j->cached && j->info.complete && j->info.verified;
    size_job_free(j);
    peer_daemon *d = t->d;
    if (t->length == 0) {
        t->piece_size = proto_piece_size_for(0);
        task_open(t);
        return;
    }
    if (d->o.n_schedulers == 0 || (t->length <= d->o.small_blob && !t->seed)) {
        go_origin(t);
        return;
    }
    if (t->seed) { /* serve it at once; the registration announces it to the mesh */
        task_open(t);
        return;
    }
    task_register(t);
}

/* ---- REGISTERING ---- */

static int register_now(struct task *t)
{
    return sched_client_register(t->d, t->id, t->length, t->origin[0] ? t->origin : t->id,
                                 t->ever_registered, &t->sched_idx);
}

static void task_register(struct task *t)
{
    peer_daemon *d = t->d;
    t->state = T_REGISTERING;
    t->registered = 0;
    t->register_deadline_ms = pd_now(d) + d->o.register_timeout_ms;
    if (register_now(t) != 0) {
        cf_info("task %s: no scheduler reachable, fetching from the origin", t->id);
        t->sched_idx = -1;
        go_origin(t);
    }
}

/* Complete and verified: tell the scheduler, and publish our digest list if it has none. */
static void announce_finished(struct task *t)
{
    proto_msg m = {.type = PROTO_MSG_TASK_FINISHED};
    m.u.task_finished.task_id = t->id;
    m.u.task_finished.content_length = t->length;
    m.u.task_finished.verified = true;
    send_to_sched(t, &m);
    t->finished_sent = 1;
#ifdef CHUNKFLY_FAULTS
    if (t->d->faults_no_publish) return; /* a liar whose children have no list to check */
#endif
    if (t->digests && !t->sched_has_digests) {
        proto_msg pm = {.type = PROTO_MSG_DIGESTS_PUBLISH};
        pm.u.digests.task_id = t->id;
        pm.u.digests.piece_size = t->piece_size;
        pm.u.digests.piece_count = t->pp.piece_count;
        pm.u.digests.digests = t->digests;
        send_to_sched(t, &pm);
    }
}

static void resync_with_sched(struct task *t)
{
    /* (re-)registered: tell the scheduler what we already hold (parent = ourselves) */
    if (!t->registered || !t->pp.have) return;
    proto_bitmap b = {.bits = t->pp.have, .nbits = t->pp.piece_count};
    proto_piece_run *runs = NULL;
    size_t n = 0;
    if (proto_bitmap_delta(NULL, &b, &runs, &n) == 0 && n) {
        proto_msg m = {.type = PROTO_MSG_PIECE_REPORT};
        m.u.piece_report.task_id = t->id;
        m.u.piece_report.runs = runs;
        m.u.piece_report.n_runs = n;
        m.u.piece_report.parent_id = t->d->host_id;
        send_to_sched(t, &m);
    }
    free(runs);
    if (t->state == T_DONE) {
        announce_finished(t);
    } else if (t->sched_has_digests && !t->digests) {
        proto_msg m = {.type = PROTO_MSG_DIGESTS_FETCH};
        m.u.digests_fetch.task_id = t->id;
        m.u.digests_fetch.piece_size = t->piece_size;
        send_to_sched(t, &m);
    }
}

static void on_register_answer(struct task *t, const proto_register_answer *a)
{
    cf_err err = {0};
    uint32_t count;
    if (a->content_length != t->length ||
        proto_piece_layout(a->content_length, a->piece_size, &count, &err) ||
        count != a->piece_count) {
        cf_warn("task %s: scheduler answer does not fit (length %llu/%llu, piece size %u): "
                "using the origin",
                t->id, (unsigned long long)a->content_length, (unsigned long long)t->length,
                a->piece_size);
        t->registered = 0;
        if (t->state == T_REGISTERING) go_origin(t);
        return;
    }
    t->registered = 1;
    t->ever_registered = 1;
    t->sched_has_digests = a->has_digests;
    if (t->state == T_REGISTERING) {
        if (t->piece_size && t->piece_size != a->piece_size && !t->seed)
            cf_info("task %s: cached piece size %u differs from the scheduler's %u: refetching",
                    t->id, t->piece_size, a->piece_size);
        t->piece_size = a->piece_size;
        if (pp_task_init(&t->pp, a->piece_count)) {
            task_fail(t, PROTO_E_INTERNAL, "out of memory");
            return;
        }
        task_open(t);
        return;
    }
    if (t->piece_size != a->piece_size) {
        cf_warn("task %s: scheduler piece size %u differs from ours %u: origin only", t->id,
                a->piece_size, t->piece_size);
        t->registered = 0;
        t->pp.origin_mode = 1;
        task_pump(t);
        return;
    }
    if (t->origin_no_sched) { /* a scheduler is back: it decides about the origin again */
        t->origin_no_sched = 0;
        t->pp.origin_mode = 0;
        t->last_progress_ms = pd_now(t->d);
    }
    resync_with_sched(t);
    task_pump(t);
}

static void on_sched_error(struct task *t, const proto_error *e)
{
    if (e->code == PROTO_E_NOT_FOUND) { /* DIGESTS_FETCH before anyone published a list */
        cf_debug("task %s: scheduler: %s", t->id, e->message);
        if (t->sched_has_digests && !t->digests) { /* gone meanwhile: stop holding parents */
            t->sched_has_digests = 0;
            task_pump(t);
        }
        return;
    }
    cf_info("task %s: scheduler error %u: %s", t->id, e->code, e->message);
    if (t->state == T_REGISTERING) {
        go_origin(t);
    } else if (e->code == PROTO_E_UNKNOWN_TASK && t->registered) {
        /* the scheduler forgot the task (restart, expiry): register again soon */
        t->registered = 0;
        t->reask_at_ms = pd_now(t->d) + 200;
    }
}

static void on_sched_lost(struct task *t)
{
    t->registered = 0;
    t->sched_idx = -1;
    pp_clear_grants(&t->pp);
    t->reask_at_ms = pd_now(t->d) + PEER_REASK_SOON_MS; /* re-register (maybe elsewhere) soon */
    if (t->state == T_REGISTERING) {
        if (register_now(t) == 0) return; /* another scheduler */
        t->sched_idx = -1;
        go_origin(t);
    } else if (t->state == T_RUNNING && !t->pp.origin_mode) {
        /* No scheduler grants any more. With usable parents, keep taking pieces from them: a
         * scheduler connection lost on a congested link (heartbeats late) says nothing about
         * the mesh, and going to the origin at once multiplied its egress. The mesh-stall
         * check sends the task to the origin if the parents stop delivering. Without parents,
         * what is missing comes from the origin until a scheduler answers again. */
        t->origin_no_sched = 1;
        if (pp_usable_parents(&t->pp, &t->d->liars) > 0) {
            cf_info("task %s: scheduler lost, going on with the parents we have", t->id);
            t->last_progress_ms = pd_now(t->d);
        } else {
            cf_info("task %s: scheduler lost, missing pieces come from the origin", t->id);
            t->pp.origin_mode = 1;
        }
        task_pump(t);
    }
}

/* ---- OPENING ---- */

struct open_job {
    struct task *t;
    int rc;
    cf_err err;
    peer_blob_info info;
    uint8_t *have;
    uint8_t *digests;
    char origin[PROTO_MAX_ORIGIN_LEN + 1]; /* snapshot (see size_job) */
};

static void open_work(void *p)
{
    struct open_job *j = p;
    struct task *t = j->t;
    peer_store *s = t->d->store;
    j->rc =
        peer_store_blob_open(s, t->digest, t->length, t->piece_size, j->origin, &j->info, &j->err);
    if (j->rc == -EEXIST) {
        /* cached with another piece size: the scheduler's size wins, refetch */
        cf_err_clear(&j->err);
        j->rc = peer_store_purge(s, t->digest, &j->err);
        if (!j->rc)
            j->rc = peer_store_blob_open(s, t->digest, t->length, t->piece_size, j->origin,
                                         &j->info, &j->err);
    }
    if (j->rc) return;
    size_t nb = proto_bitmap_nbytes(j->info.piece_count);
    j->have = calloc(1, nb ? nb : 1);
    if (!j->have) {
        j->rc = -ENOMEM;
        return;
    }
    uint32_t pc = j->info.piece_count;
    j->rc = peer_store_bitmap(s, t->digest, j->have, nb ? nb : 1, &pc);
    if (j->info.has_piece_digests) {
        enum cf_digest_algo algo;
        uint32_t cnt = 0;
        if (peer_store_get_piece_digests(s, t->digest, &algo, &j->digests, &cnt, NULL) == 0 &&
            (algo != CF_DIGEST_SHA256 || cnt != j->info.piece_count)) {
            free(j->digests);
            j->digests = NULL;
        }
    }
}

static void open_done(void *p, int cancelled)
{
    struct open_job *j = p;
    struct task *t = j->t;
    peer_daemon *d = t->d;
    t->work_refs--;
    if (t->dead || cancelled || d->stopping || j->rc) {
        free(j->have);
        free(j->digests);
        /* task_fail frees the task itself once no work holds it: freeing it here too was a
         * double free (a full disk failing the cache open, found by tests/chaos) */
        if (!t->dead && !cancelled && !d->stopping)
            task_fail(t, fail_code(j->rc), "cache: %s", cf_err_str(&j->err, j->rc));
        else
            task_maybe_free(t);
        free(j);
        return;
    }
    if (pp_task_init(&t->pp, j->info.piece_count)) {
        free(j->have);
        free(j->digests);
        free(j);
        task_fail(t, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    /* what the cache holds; grants and parents' bitmaps stay (decisions may arrive while the
     * entry opens) */
    pp_load_have(&t->pp, j->have);
    free(j->have);
    if (j->digests && !t->digests) {
        t->digests = j->digests;
        j->digests = NULL;
    }
    free(j->digests);
    int verified = j->info.verified && j->info.complete;
    free(j);
    if (!t->ref) peer_store_blob_acquire(d->store, t->digest, &t->ref);
    t->last_progress_ms = pd_now(d);
    if (verified) {
        t->state = T_DONE;
        if (t->ref) {
            peer_store_blob_release(d->store, t->ref);
            t->ref = NULL;
        }
        if (d->o.n_schedulers && !t->registered && register_now(t) != 0) t->sched_idx = -1;
    } else {
        t->state = T_RUNNING;
    }
    resync_with_sched(t);
    notify_event(t, TASK_EV_READABLE);
    if (!t->dead) task_pump(t);
}

static void task_open(struct task *t)
{
    t->state = T_OPENING;
    struct open_job *j = calloc(1, sizeof(*j));
    if (!j) {
        task_fail(t, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    j->t = t;
    snprintf(j->origin, sizeof(j->origin), "%s", t->origin);
    t->work_refs++;
    if (pd_queue_work(t->d, j, open_work, open_done)) {
        t->work_refs--;
        free(j);
        task_fail(t, PROTO_E_INTERNAL, "cannot queue work");
    }
}

/* ---- creating ---- */

struct task *task_get(peer_daemon *d, const char *id, const char *origin, const char *creds,
                      int whole, cf_err *err)
{
    if (proto_task_id_check(id)) {
        cf_err_set(err, -EINVAL, "bad task id '%.80s': expected sha256:<64 hex>", id);
        return NULL;
    }
    struct task *t = task_find(d, id);
    if (t && (t->state == T_FAILED || task_drop_if_gone(t))) t = NULL;
    proto_image_ref ref = {0};
    int scheme = 0;
    if (origin && origin[0]) {
        if (origin_parse(origin, &ref, &scheme, err)) return NULL;
        if (ref.digest[0] && strcmp(ref.digest, id) != 0) {
            cf_err_set(err, -EINVAL, "origin %s names another digest than %s", origin, id);
            return NULL;
        }
    }
    if (t) {
        if (whole && !t->pp.whole && d->o.fetch_whole_blob && !t->cache_full) {
            t->pp.whole = 1;
            task_pump(t);
        }
        if (!t->registry[0] && ref.registry[0]) {
            t->scheme = scheme;
            snprintf(t->origin, sizeof(t->origin), "%s", origin);
            snprintf(t->registry, sizeof(t->registry), "%s", ref.registry);
            snprintf(t->repo, sizeof(t->repo), "%s", ref.repo);
        }
        return t;
    }
    if (d->stopping) {
        cf_err_set(err, -ESHUTDOWN, "daemon is shutting down");
        return NULL;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        cf_err_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    t->d = d;
    snprintf(t->id, sizeof(t->id), "%s", id);
    proto_task_id_to_digest(id, t->digest);
    if (origin && origin[0]) {
        t->scheme = scheme;
        snprintf(t->origin, sizeof(t->origin), "%s", origin);
        snprintf(t->registry, sizeof(t->registry), "%s", ref.registry);
        snprintf(t->repo, sizeof(t->repo), "%s", ref.repo);
    }
    if (creds && creds[0]) t->creds = strdup(creds);
    t->pp.whole = whole && d->o.fetch_whole_blob;
    /* each node draws its own ties between equally rare pieces (piece_policy.h) */
    t->pp.rng = 14695981039346656037ull ^ (uint64_t)uv_hrtime();
    for (const char *c = d->host_id; *c; c++)
        t->pp.rng = (t->pp.rng ^ (uint8_t)*c) * 1099511628211ull;
    t->pp.rng |= 1; /* 0 = no draws */
    t->sched_idx = -1;
    t->state = T_SIZING;
    t->created_ms = pd_now(d);
    struct size_job *j = calloc(1, sizeof(*j));
    if (!j) {
        task_free(t);
        cf_err_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    j->t = t;
    j->d = d;
    snprintf(j->registry, sizeof(j->registry), "%s", t->registry);
    snprintf(j->repo, sizeof(j->repo), "%s", t->repo);
    j->scheme = t->scheme;
    if (t->creds && !(j->creds = strdup(t->creds))) {
        free(j);
        task_free(t);
        cf_err_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    t->next = d->tasks;
    d->tasks = t;
    d->n_tasks++;
    t->work_refs++;
    if (pd_queue_work(d, j, size_work, size_done)) {
        t->work_refs--;
        size_job_free(j);
        task_unlink(t);
        task_free(t);
        cf_err_set(err, -ENOMEM, "cannot queue work");
        return NULL;
    }
    return t;
}

/* ---- pieces arriving ---- */

/* One piece on its way into the cache (from a parent or the origin): fetched (origin) and
 * checked against the digest list when one is known, then stored, in the pool; finished on the
 * loop by piece_write_done. */
struct piece_job {
    struct task *t;
    uint32_t piece, len;
    int tp;        /* PP_ORIGIN for the origin */
    int suspect;   /* origin fetch arbitrating parent `suspect`'s mismatch (-1 = none) */
    uint8_t *data; /* the piece's bytes, inside buf */
    void *buf;     /* cf_bufpool buffer (reused: no page faults per piece) */
    uint8_t expect[32];
    int has_expect;
    int rc;
    int store_rc; /* rc came from the cache write: the bytes themselves are good */
    cf_err err;
    proto_registry *reg; /* origin fetches */
    char repo[256];
    struct origin_run *run; /* a piece of an origin run (else NULL) */
    int run_end;            /* ... its last one */
    int skipped;            /* ... not fetched because the run failed before it */
    struct piece_job *next_posted;
};

static void piece_job_free(struct piece_job *j)
{
    if (j) cf_bufpool_put(j->buf);
    free(j);
}

/* frame: a pooled buffer already holding the bytes at data (a parent's frame), else NULL (a
 * buffer is taken from the pool) */
static struct piece_job *piece_job_new(struct task *t, uint32_t piece, int tp, void *frame,
                                       const uint8_t *data)
{
    uint32_t len = proto_piece_len(t->length, t->piece_size, piece);
    struct piece_job *j = calloc(1, sizeof(*j));
    if (j) j->buf = frame ? frame : cf_bufpool_get(len ? len : 1);
    if (!j || !j->buf) {
        cf_bufpool_put(frame);
        free(j);
        return NULL;
    }
    j->data = frame ? (uint8_t *)data : j->buf;
    j->t = t;
    j->piece = piece;
    j->len = len;
    j->tp = tp;
    j->suspect = -1;
    if (t->digests) {
        memcpy(j->expect, t->digests + (size_t)piece * 32, 32);
        j->has_expect = 1;
    }
    return j;
}

static void piece_check_and_store(struct piece_job *j)
{
    struct task *t = j->t;
    if (j->has_expect) {
        uint8_t got[32];
        if (cf_sha256(j->data, j->len, got)) {
            j->rc = -ENOMEM;
            return;
        }
        if (memcmp(got, j->expect, 32) != 0) {
            j->rc = cf_err_set(&j->err, -EBADMSG, "piece %u does not match its digest", j->piece);
            return;
        }
    }
    j->rc = peer_store_write_piece(t->d->store, t->digest, j->piece, j->data, j->len, &j->err);
    j->store_rc = j->rc != 0;
}

static void origin_piece_work(void *p)
{
    struct piece_job *j = p;
    j->rc = bts_get_range(j->reg, j->repo, j->t->id, (uint64_t)j->piece * j->t->piece_size, j->len,
                          j->data, &j->err);
    if (!j->rc) piece_check_and_store(j);
}

static void parent_piece_work(void *p)
{
    piece_check_and_store(p);
}

static void parent_lied(struct task *t, int tp, uint32_t piece)
{
    peer_daemon *d = t->d;
    d->m.digest_mismatches++;
    pp_parent *pa = &t->pp.parents[tp];
    unsigned r = pp_parent_lied(&t->pp, &d->liars, tp, t->registry[0] != 0);
    if (!(r & PP_LIE_NEW_BAN)) return;
    d->m.bans++;
    cf_warn("task %s: parent %s (%s) served bad bytes for piece %u: banned for this task", t->id,
            pa->host_id, pa->addr, piece);
    if (t->registered) {
        proto_msg m = {.type = PROTO_MSG_BAD_PARENT};
        m.u.bad_parent.task_id = t->id;
        m.u.bad_parent.parent_id = pa->host_id;
        m.u.bad_parent.reason = PROTO_BAD_PARENT_DIGEST_MISMATCH;
        m.u.bad_parent.piece = piece;
        send_to_sched(t, &m);
    }
    if (r & PP_LIE_GLOBAL_BAN)
        cf_warn("parent %s lied in %u tasks: banned for every task", pa->host_id,
                d->liars.ban_after);
    if (r & PP_LIE_TO_ORIGIN)
        cf_info("task %s: every parent is banned, going back to source", t->id);
}

static void report_bad_parent(struct task *t, int tp, int reason, uint32_t piece)
{
    if (!reason || !t->registered) return;
    proto_msg m = {.type = PROTO_MSG_BAD_PARENT};
    m.u.bad_parent.task_id = t->id;
    m.u.bad_parent.parent_id = t->pp.parents[tp].host_id;
    m.u.bad_parent.reason = (uint8_t)reason;
    m.u.bad_parent.piece = piece;
    send_to_sched(t, &m);
}

static void piece_stored(struct task *t, uint32_t piece, int src, uint32_t len)
{
    peer_daemon *d = t->d;
    if (pp_piece_stored(&t->pp, piece, src) != 1) return; /* a late duplicate (end game) */
    t->last_progress_ms = pd_now(d);
    if (src >= 0) {
        d->m.bytes_from_parents += len;
        d->m.pieces_from_parents++;
        t->from_parents += len;
    } else {
        d->m.bytes_from_origin += len;
        d->m.pieces_from_origin++;
        t->from_origin += len;
        t->origin_fail_streak = 0;
    }
    if (t->registered) {
        proto_piece_run run = {piece, 1};
        proto_msg m = {.type = PROTO_MSG_PIECE_REPORT};
        m.u.piece_report.task_id = t->id;
        m.u.piece_report.runs = &run;
        m.u.piece_report.n_runs = 1;
        m.u.piece_report.parent_id = src >= 0 ? t->pp.parents[src].host_id : "";
        send_to_sched(t, &m);
    }
    notify_piece(t, piece, NULL);
}

/* The cache cannot take the piece (full even after eviction, or the disk fails): hand the
 * bytes to the watchers from memory and stop fetching what nobody waits for. */
static void piece_uncached(struct task *t, struct piece_job *j)
{
    if (!t->cache_full)
        cf_warn("task %s: %s (%s): serving reads without caching", t->id,
                j->rc == -ENOSPC || j->rc == -EDQUOT ? "cache full" : "cache write failed",
                cf_err_str(&j->err, j->rc));
    t->cache_full = 1;
    t->pp.whole = 0;
    struct piece_buf *b = calloc(1, sizeof(*b));
    if (!b) return;
    b->refs = 1;
    b->piece = j->piece;
    b->len = j->len;
    /* the hash was checked before the write failed: verified if the list is still the task's */
    b->verified =
        j->has_expect && t->digests && !memcmp(t->digests + (size_t)j->piece * 32, j->expect, 32);
    b->data = j->data;
    b->base = j->buf;
    j->data = NULL;
    j->buf = NULL;
    if (j->tp >= 0)
        t->from_parents += j->len;
    else
        t->from_origin += j->len;
    t->last_progress_ms = pd_now(t->d);
    notify_piece(t, j->piece, b);
    piece_buf_unref(b);
}

/* Origin pieces asked again after a transient failure (proto_registry_error_transient) once
 * the origin has served the task. */
#define ORIGIN_PIECE_RETRIES 3

static void piece_write_done(void *p, int cancelled);

/* The origin is authoritative: its bytes disagreeing with the scheduler's digest list mean the
 * list is wrong (its publisher lied or erred), not the download. The list is dropped (pieces
 * are still checked against the blob's sha256 at the end), the scheduler is told so that it
 * drops it too, and the piece is fetched again. */
static void digest_list_discredited(struct task *t, uint32_t piece)
{
    peer_daemon *d = t->d;
    d->m.digest_lists_discredited++;
    cf_warn("task %s: the origin's piece %u disagrees with the scheduler's digest list: list "
            "dropped, the blob is checked by its sha256",
            t->id, piece);
    free(t->digests);
    t->digests = NULL;
    free(t->checked);
    t->checked = NULL;
    t->digests_from_sched = 0;
    t->sched_has_digests = 0;
    t->pp.hold_parents = 0;
    if (t->registered) {
        proto_msg m = {.type = PROTO_MSG_ERROR};
        m.u.error.code = PROTO_E_DIGEST_MISMATCH;
        m.u.error.task_id = t->id;
        m.u.error.message = "origin bytes disagree with the digest list";
        send_to_sched(t, &m);
    }
}

/* A parent's piece disagrees with a digest list that came from the scheduler (someone else's
 * word): before the parent is blamed, the origin says which one is wrong. 1 when the origin
 * fetch was started, 0 when there is no origin to ask (the parent is blamed). */
static int arbitrate_by_origin(struct task *t, uint32_t piece, int suspect)
{
    if (!t->oc || !t->registry[0]) return 0;
    struct piece_job *j = piece_job_new(t, piece, PP_ORIGIN, NULL, NULL);
    if (!j) return 0;
    j->suspect = suspect;
    j->reg = t->oc->reg;
    snprintf(j->repo, sizeof(j->repo), "%s", t->repo);
    t->work_refs++;
    if (pd_queue_work(t->d, j, origin_piece_work, piece_write_done)) {
        t->work_refs--;
        piece_job_free(j);
        return 0;
    }
    pp_pick pk = {.piece = piece, .parent = PP_ORIGIN, .at_ms = pd_now(t->d)};
    pp_request_started(&t->pp, &pk);
    return 1;
}

static void piece_write_done(void *p, int cancelled)
{
    struct piece_job *j = p;
    struct task *t = j->t;
    t->work_refs--;
    if (j->run)
        pp_origin_run_piece_ended(&t->pp, j->piece, j->run_end);
    else
        pp_request_ended(&t->pp, j->piece, j->tp);
    if (t->dead || cancelled || t->d->stopping || t->state != T_RUNNING) {
        piece_job_free(j);
        task_maybe_free(t);
        return;
    }
    if (j->skipped) {
        /* its run failed at an earlier piece (reported there): asked again */
    } else if (j->rc == 0) {
        /* the origin agreed with the list where a parent did not: the parent lied */
        if (j->suspect >= 0 && j->suspect < t->pp.n_parents) parent_lied(t, j->suspect, j->piece);
        if (j->has_expect && t->digests &&
            !memcmp(t->digests + (size_t)j->piece * 32, j->expect, 32) &&
            (t->checked || (t->checked = calloc(1, proto_bitmap_nbytes(t->pp.piece_count) + 1))))
            proto_bit_set(t->checked, j->piece);
        piece_stored(t, j->piece, j->tp, j->len);
    } else if (j->rc == -EBADMSG && j->tp >= 0) {
        if (!t->digests) {
            /* checked against a list dropped meanwhile: nobody to blame, fetch it again */
        } else if (!t->digests_from_sched || !arbitrate_by_origin(t, j->piece, j->tp)) {
            parent_lied(t, j->tp, j->piece);
        }
    } else if (j->rc == -EBADMSG && j->has_expect && t->digests_from_sched) {
        digest_list_discredited(t, j->piece); /* the origin contradicts the list */
    } else if (j->rc == -EBADMSG && j->has_expect && !t->digests) {
        /* an origin piece checked against a list dropped meanwhile: fetch it again */
    } else if (j->store_rc && j->rc != -ENOENT && j->rc != -EINVAL && j->rc != -EBADMSG) {
        piece_uncached(t, j);
    } else if (j->tp < 0 && proto_registry_error_transient(j->rc) && t->from_origin > 0 &&
               t->origin_fail_streak < ORIGIN_PIECE_RETRIES) {
        /* The origin served this task before: a stall or reset under load is taken as
         * passing, the piece is asked again (a new connection). Failing the task here made
         * every waiting client fall back to the registry itself: the origin then sent the
         * whole blob again per client. An origin that keeps failing still fails the task. */
        t->d->m.origin_failures++;
        t->origin_fail_streak++;
        cf_warn("task %s: piece %u from the origin: %s; asking again (%u of %u)", t->id, j->piece,
                cf_err_str(&j->err, j->rc), t->origin_fail_streak, ORIGIN_PIECE_RETRIES);
    } else if (j->tp < 0) {
        t->d->m.origin_failures++;
        int rc = j->rc;
        char msg[CF_ERR_MSG_MAX];
        snprintf(msg, sizeof(msg), "%s", cf_err_str(&j->err, rc));
        piece_job_free(j);
        task_fail(t, fail_code(rc), "origin: %s", msg);
        return;
    } else {
        t->d->m.piece_failures++;
        cf_warn("task %s: piece %u: %s", t->id, j->piece, cf_err_str(&j->err, j->rc));
        if (j->rc == -ENOENT) { /* the cache entry is gone */
            piece_job_free(j);
            task_fail(t, PROTO_E_NOT_FOUND, "cache: cannot store piece: entry removed");
            return;
        }
    }
    piece_job_free(j);
    task_pump(t);
}

/* pconn_handler: bytes from parent tp (kept in their frame buffer, else copied) */
static void on_parent_piece(void *owner, int tp, uint32_t piece, const uint8_t *data, uint32_t len,
                            void *frame)
{
    struct task *t = owner;
    peer_daemon *d = t->d;
    if (t->state != T_RUNNING || piece >= t->pp.piece_count ||
        len != proto_piece_len(t->length, t->piece_size, piece)) {
        if (piece < t->pp.piece_count) pp_request_ended(&t->pp, piece, tp);
        if (t->state == T_RUNNING && piece < t->pp.piece_count) {
            d->m.piece_failures++;
            report_bad_parent(
                t, tp, pp_request_failed(&t->pp, tp, piece, PP_FAIL_BAD_REPLY, pd_now(d)), piece);
            task_pump(t);
        }
        cf_bufpool_put(frame);
        return;
    }
    if (task_has_piece(t, piece)) { /* the end game's other copy came first */
        cf_bufpool_put(frame);
        pp_request_ended(&t->pp, piece, tp);
        task_pump(t);
        return;
    }
    struct piece_job *j = piece_job_new(t, piece, tp, frame, data);
    if (!j) {
        pp_request_ended(&t->pp, piece, tp);
        return;
    }
    if (!frame) memcpy(j->data, data, len);
    t->work_refs++;
    if (pd_queue_work(d, j, parent_piece_work, piece_write_done)) {
        t->work_refs--;
        pp_request_ended(&t->pp, piece, tp);
        piece_job_free(j);
    }
}

/* ---- private blobs: proofs for parents that ask (docs/security.md) ----
 * A parent answers AUTH for a private blob it will not show without proof. The task then gets
 * a pull token for its repository through its own registry client (the caller's credentials,
 * or the node's docker config) and sends it with ACCESS to that parent only: a token goes to
 * a parent that asked for one, never to every candidate. A parent that refuses the proof, or a
 * task that cannot make one, skips that parent for the task (not a ban, not a lie); the
 * download goes on from the other parents or the origin. */
enum { ACC_NONE, ACC_FETCHING, ACC_SENT, ACC_OK, ACC_REFUSED };

struct token_job {
    struct task *t;
    int tp;
    char host_id[PROTO_MAX_ID_LEN + 1];
    char *token;
    int rc;
    cf_err err;
};

static void token_work(void *p)
{
    struct token_job *j = p;
    struct task *t = j->t;
    if (!t->oc) {
        j->rc = cf_err_set(&j->err, -ENOENT, "no registry client for %s", t->id);
        return;
    }
    j->rc = proto_registry_pull_token(t->oc->reg, t->repo, t->id, &j->token, &j->err);
}

static void parent_skip_auth(struct task *t, int tp, const char *why)
{
    pp_parent *pa = &t->pp.parents[tp];
    pa->access = ACC_REFUSED;
    t->d->m.access_refused++;
    cf_info("task %s: parent %s keeps this private blob from us (%s): skipped for this task", t->id,
            pa->host_id, why);
    pp_request_failed(&t->pp, tp, PROTO_NO_PIECE, PP_FAIL_UNKNOWN_TASK, pd_now(t->d));
}

static void token_done(void *p, int cancelled)
{
    struct token_job *j = p;
    struct task *t = j->t;
    peer_daemon *d = t->d;
    t->work_refs--;
    if (!t->dead && !cancelled && !d->stopping && j->tp < t->pp.n_parents &&
        strcmp(t->pp.parents[j->tp].host_id, j->host_id) == 0 &&
        t->pp.parents[j->tp].access == ACC_FETCHING) {
        pp_parent *pa = &t->pp.parents[j->tp];
        pa->down_until_ms = 0;
        char repo_ref[PROTO_MAX_REPO_REF_LEN + 1];
        int n = snprintf(repo_ref, sizeof(repo_ref), "%s/%s", t->registry, t->repo);
        if (j->rc || n < 0 || (size_t)n >= sizeof(repo_ref)) {
            parent_skip_auth(t, j->tp, j->rc ? cf_err_str(&j->err, j->rc) : "name too long");
        } else if (!pa->conn ||
                   pconn_send_access(pa->conn, t->id, pa->access_req = d->next_req_id++, repo_ref,
                                     j->token) != 0) {
            pa->access = ACC_NONE; /* the connection went away: asked again if needed */
        } else {
            pa->access = ACC_SENT;
            d->m.access_proofs_sent++;
        }
        if (t->state == T_RUNNING) task_pump(t);
    }
    if (j->token) {
        explicit_bzero(j->token, strlen(j->token));
        free(j->token);
    }
    free(j);
    task_maybe_free(t);
}

/* Parent tp answered AUTH for this task: send a proof, or skip it. */
static void parent_wants_proof(struct task *t, int tp)
{
    peer_daemon *d = t->d;
    pp_parent *pa = &t->pp.parents[tp];
    switch (pa->access) {
    case ACC_FETCHING:
    case ACC_SENT:
        return; /* answers to requests sent before the proof */
    case ACC_REFUSED:
        pp_request_failed(&t->pp, tp, PROTO_NO_PIECE, PP_FAIL_UNKNOWN_TASK, pd_now(d));
        return;
    default: /* none yet, or an accepted one expired there: a token (a new one if expired) */
        break;
    }
    struct token_job *j = calloc(1, sizeof(*j));
    if (!j) return;
    j->t = t;
    j->tp = tp;
    snprintf(j->host_id, sizeof(j->host_id), "%s", pa->host_id);
    t->work_refs++;
    if (pd_queue_work(d, j, token_work, token_done)) {
        t->work_refs--;
        free(j);
        return;
    }
    pa->access = ACC_FETCHING;
    pa->down_until_ms = UINT64_MAX; /* no requests until the proof is on its way */
}

static int parent_slot(struct task *t, struct pconn *pc)
{
    for (int i = 0; i < t->pp.n_parents; i++)
        if (t->pp.parents[i].conn == pc) return i;
    return -1;
}

static void on_parent_task_error(peer_daemon *d, struct pconn *pc, const char *task_id,
                                 uint64_t req_id, int code, const char *msg)
{
    struct task *t = task_find(d, task_id);
    int tp = t ? parent_slot(t, pc) : -1;
    if (tp < 0 || t->dead) return;
    pp_parent *pa = &t->pp.parents[tp];
    if (req_id && pa->access == ACC_SENT && req_id == pa->access_req) {
        if (code == PROTO_E_BUSY) { /* its checks are busy: ask again in a moment */
            pa->access = ACC_NONE;
            pp_request_failed(&t->pp, tp, PROTO_NO_PIECE, PP_FAIL_BUSY, pd_now(d));
        } else {
            parent_skip_auth(t, tp, msg[0] ? msg : "proof refused");
        }
    } else if (code == PROTO_E_AUTH && !req_id) { /* AVAIL_QUERY refused */
        pa->subscribed = 0;
        parent_wants_proof(t, tp);
    }
    if (t->state == T_RUNNING) task_pump(t);
}

static void on_parent_access_ok(peer_daemon *d, struct pconn *pc, const char *task_id,
                                uint64_t req_id)
{
    struct task *t = task_find(d, task_id);
    int tp = t ? parent_slot(t, pc) : -1;
    if (tp < 0 || t->dead) return;
    pp_parent *pa = &t->pp.parents[tp];
    if (pa->access != ACC_SENT || req_id != pa->access_req) return;
    pa->access = ACC_OK;
    pconn_subscribe(pc, t->id); /* its bits, now that it shows them */
    pa->subscribed = 1;
    if (t->state == T_RUNNING) task_pump(t);
}

static void on_parent_failed(void *owner, int tp, uint32_t piece, int code)
{
    struct task *t = owner;
    peer_daemon *d = t->d;
    if (t->dead) return;
    pp_request_ended(&t->pp, piece, tp);
    if (code == PROTO_E_AUTH) {
        parent_wants_proof(t, tp);
        if (t->state == T_RUNNING) task_pump(t);
        return;
    }
    enum pp_failure why;
    switch (code) {
    case PROTO_E_BUSY:
        d->m.upload_busy++;
        why = PP_FAIL_BUSY;
        break;
    case PROTO_E_NOT_FOUND:
    case PROTO_E_RANGE:
        why = PP_FAIL_NOT_HELD;
        break;
    case PROTO_E_UNKNOWN_TASK:
        why = PP_FAIL_UNKNOWN_TASK;
        break;
    case PROTO_E_MISMATCH:
        d->m.piece_failures++;
        why = PP_FAIL_BAD_REPLY;
        break;
    case -ETIMEDOUT: /* its connection was closed for a stalled piece */
        d->m.piece_failures++;
        why = PP_FAIL_TIMEOUT;
        break;
    default: /* connection lost / refused */
        d->m.piece_failures++;
        why = PP_FAIL_LOST;
        break;
    }
    report_bad_parent(t, tp, pp_request_failed(&t->pp, tp, piece, why, pd_now(d)), piece);
    if (t->state == T_RUNNING) task_pump(t);
}

static void on_parent_avail(peer_daemon *d, struct pconn *pc, const char *task_id,
                            uint32_t piece_count, const uint8_t *bits, size_t bits_len,
                            const proto_piece_run *runs, size_t n_runs)
{
    struct task *t = task_find(d, task_id);
    if (!t || !t->pp.have || (bits && piece_count != t->pp.piece_count)) return;
    for (int i = 0; i < t->pp.n_parents; i++) {
        if (t->pp.parents[i].conn != pc) continue;
        if (pp_parent_avail(&t->pp, i, bits, bits_len, runs, n_runs) == 0 && t->state == T_RUNNING)
            task_pump(t);
        return;
    }
}

static void on_parent_closed(peer_daemon *d, struct pconn *pc)
{
    for (struct task *t = d->tasks; t; t = t->next)
        for (int i = 0; i < t->pp.n_parents; i++)
            if (t->pp.parents[i].conn == pc) {
                t->pp.parents[i].conn = NULL;
                t->pp.parents[i].subscribed = 0;
                /* a proof holds per connection; a refusal holds for the task */
                if (t->pp.parents[i].access == ACC_SENT || t->pp.parents[i].access == ACC_OK)
                    t->pp.parents[i].access = ACC_NONE;
            }
}

/* ---- scheduling pieces ---- */

static int conn_load(void *ctx, const pp_parent *pa)
{
    peer_daemon *d = ctx;
    const struct pconn *pc = pa->conn;
    if (!pc) return 0;
    if (pc->busy_until_ms > pd_now(d)) return -1;
    return pc->n_inflight;
}

/* ---- origin runs: one Range GET streaming consecutive pieces ----
 * The run's pool job stores each piece as its bytes complete (checked like any piece) and
 * posts it to the loop at once (uv_async), where piece_write_done announces it: readers see
 * every piece as soon as it is stored, not when the run ends. */
struct origin_run {
    uv_async_t async;
    uv_mutex_t lock;
    struct piece_job *posted, *posted_tail; /* stored pieces not yet taken by the loop */
    struct task *t;
    proto_registry *reg;
    char repo[256];
    uint32_t n, next; /* jobs[next] is being filled */
    uint32_t got;     /* its bytes so far */
    struct piece_job **jobs;
    cf_err err;
};

static void run_post(struct origin_run *r, struct piece_job *j)
{
    j->run_end = j == r->jobs[r->n - 1];
    uv_mutex_lock(&r->lock);
    j->next_posted = NULL;
    if (r->posted_tail)
        r->posted_tail->next_posted = j;
    else
        r->posted = j;
    r->posted_tail = j;
    uv_mutex_unlock(&r->lock);
    uv_async_send(&r->async);
}

static void run_drain(struct origin_run *r, int cancelled)
{
    uv_mutex_lock(&r->lock);
    struct piece_job *j = r->posted;
    r->posted = r->posted_tail = NULL;
    uv_mutex_unlock(&r->lock);
    while (j) {
        struct piece_job *next = j->next_posted;
        piece_write_done(j, cancelled);
        j = next;
    }
}

static void run_on_async(uv_async_t *a)
{
    run_drain(a->data, 0);
}

static int run_write(void *ctx, const void *data, size_t len)
{
    struct origin_run *r = ctx;
    const uint8_t *p = data;
    while (len) {
        if (r->next >= r->n) return -EMSGSIZE;
        struct piece_job *j = r->jobs[r->next];
        if (!j->buf) {
            if (!(j->buf = cf_bufpool_get(j->len))) return -ENOMEM;
            j->data = j->buf;
        }
        size_t take = j->len - r->got < len ? j->len - r->got : len;
        memcpy(j->data + r->got, p, take);
        r->got += (uint32_t)take, p += take, len -= take;
        if (r->got == j->len) {
            piece_check_and_store(j);
            r->next++;
            r->got = 0;
            run_post(r, j);
        }
    }
    return 0;
}

static void run_work(void *p)
{
    struct origin_run *r = p;
    struct task *t = r->t;
    uint64_t off = (uint64_t)r->jobs[0]->piece * t->piece_size, len = 0, delivered = 0;
    for (uint32_t i = 0; i < r->n; i++) len += r->jobs[i]->len;
    int rc = proto_registry_blob_get(r->reg, r->repo, t->id, off, len, 0, run_write, r, &delivered,
                                     &r->err);
    if (!rc && r->next < r->n)
        rc = cf_err_set(&r->err, -EBADMSG, "origin sent %llu bytes for %llu at offset %llu",
                        (unsigned long long)delivered, (unsigned long long)len,
                        (unsigned long long)off);
    /* the piece the stream broke in carries the error, the rest are asked again */
    for (uint32_t i = r->next; i < r->n; i++) {
        struct piece_job *j = r->jobs[i];
        if (i == r->next) {
            j->rc = rc ? rc : -EIO;
            j->err = r->err;
        } else {
            j->skipped = 1;
        }
        run_post(r, j);
    }
}

static void run_free(uv_handle_t *h)
{
    struct origin_run *r = h->data;
    uv_mutex_destroy(&r->lock);
    free(r->jobs);
    free(r);
}

static void run_done(void *p, int cancelled)
{
    struct origin_run *r = p;
    struct task *t = r->t;
    run_drain(r, cancelled);
    if (cancelled) /* never ran: nothing was posted */
        for (uint32_t i = 0; i < r->n; i++) piece_write_done(r->jobs[i], 1);
    uv_close((uv_handle_t *)&r->async, run_free);
    t->work_refs--;
    task_maybe_free(t);
}

/* Starts an origin run of n pieces from first (n >= 2): 0, or -ENOMEM. */
static int start_origin_run(struct task *t, uint32_t first, uint32_t n, uint64_t at_ms)
{
    peer_daemon *d = t->d;
    struct origin_run *r = calloc(1, sizeof(*r));
    if (!r || !(r->jobs = calloc(n, sizeof(*r->jobs)))) {
        free(r);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct piece_job *j = calloc(1, sizeof(*j));
        if (!j) {
            while (i--) free(r->jobs[i]);
            free(r->jobs);
            free(r);
            return -ENOMEM;
        }
        j->t = t;
        j->piece = first + i;
        j->len = proto_piece_len(t->length, t->piece_size, first + i);
        j->tp = PP_ORIGIN;
        j->suspect = -1;
        j->run = r;
        if (t->digests) {
            memcpy(j->expect, t->digests + (size_t)j->piece * 32, 32);
            j->has_expect = 1;
        }
        r->jobs[i] = j;
    }
    r->t = t;
    r->n = n;
    r->reg = t->oc->reg;
    snprintf(r->repo, sizeof(r->repo), "%s", t->repo);
    uv_mutex_init(&r->lock);
    uv_async_init(d->loop, &r->async, run_on_async);
    r->async.data = r;
    t->work_refs += (int)n + 1;
    if (pd_queue_work(d, r, run_work, run_done)) {
        t->work_refs -= (int)n + 1;
        for (uint32_t i = 0; i < n; i++) free(r->jobs[i]);
        uv_close((uv_handle_t *)&r->async, run_free);
        return -ENOMEM;
    }
    pp_origin_run_started(&t->pp, first, n, at_ms);
    return 0;
}

/* Starts the policy's pick: 0 started, -EAGAIN not now (parent unreachable), other < 0 fatal
 * (the task failed or cannot queue work). */
static int start_pick(struct task *t, const pp_pick *pk)
{
    peer_daemon *d = t->d;
    if (pk->parent >= 0) {
        pp_parent *pa = &t->pp.parents[pk->parent];
        if (!pa->conn) pa->conn = pconn_get(d, pa->addr, pa->host_id);
        struct pconn *pc = pa->conn;
        if (pc && !pa->subscribed) {
            pconn_subscribe(pc, t->id);
            pa->subscribed = 1;
        }
        if (!pc || pconn_request(pc, t, t->id, pk->parent, pk->piece) != 0) {
            pp_parent_unreachable(&t->pp, pk->parent, pd_now(d));
            return -EAGAIN;
        }
        pp_request_started(&t->pp, pk);
        return 0;
    }
    if (!t->oc) return -ENOMEM;
    /* a whole-blob download streams consecutive pieces in one request */
    uint32_t run = t->pp.whole && !t->cache_full
                       ? pp_origin_run(&t->pp, pk->piece, peer_origin_run_pieces(t->piece_size))
                       : 1;
    if (run > 1) return start_origin_run(t, pk->piece, run, pk->at_ms);
    struct piece_job *j = piece_job_new(t, pk->piece, PP_ORIGIN, NULL, NULL);
    if (!j) return -ENOMEM;
    j->reg = t->oc->reg;
    snprintf(j->repo, sizeof(j->repo), "%s", t->repo);
    t->work_refs++;
    if (pd_queue_work(d, j, origin_piece_work, piece_write_done)) {
        t->work_refs--;
        piece_job_free(j);
        return -ENOMEM;
    }
    pp_request_started(&t->pp, pk);
    return 0;
}

static void task_pump(struct task *t)
{
    peer_daemon *d = t->d;
    if (t->state != T_RUNNING || d->stopping || t->dead) return;
    if (t->pp.n_have == t->pp.piece_count) {
        /* end-game duplicates still out are dropped when they arrive (not RUNNING any more) */
        start_verify(t);
        return;
    }
    int origin_known = t->oc && t->registry[0];
    if (t->pp.origin_mode && !origin_known) {
        task_fail(t, PROTO_E_ORIGIN, "blob %s is incomplete and no origin is known", t->id);
        return;
    }
    /* The scheduler holds a per-piece digest list for this task that has not arrived yet: take
     * nothing from parents until it has, so no parent's bytes are accepted (and served to a
     * local reader) unchecked. Origin fetches go on meanwhile. */
    t->pp.hold_parents = t->sched_has_digests && !t->digests;
    pp_want wants[MAX_WANTS];
    size_t nw = 0;
    for (struct task_watcher *w = t->watchers; w && nw < MAX_WANTS; w = w->next) {
        if (w->want_off >= w->want_end || w->want_off >= t->length) continue;
        uint64_t end = w->want_end < t->length ? w->want_end : t->length;
        wants[nw].first = (uint32_t)(w->want_off / t->piece_size);
        wants[nw].last = (uint32_t)((end - 1) / t->piece_size);
        /* nothing is cached now: fetch only the piece each reader can take next */
        if (t->cache_full) wants[nw].last = wants[nw].first;
        nw++;
    }
    pp_limits lim = {d->o.pieces_in_flight, d->o.per_parent_in_flight, d->o.origin_in_flight,
                     PEER_END_GAME_AFTER_MS};
    pp_env env = {.now_ms = pd_now(d),
                  .lim = &lim,
                  .liars = &d->liars,
                  .origin_known = origin_known,
                  .conn_load = conn_load,
                  .ctx = d};
    pp_pick pk;
    /* each failed start marks its parent down, so this ends */
    for (int guard = 0; guard < 4 * PP_MAX_PARENTS + (int)lim.pieces_in_flight; guard++) {
        if (!pp_next(&t->pp, wants, nw, &env, &pk)) break;
        int rc = start_pick(t, &pk);
        if (rc == -EAGAIN) continue;
        if (rc < 0) {
            task_fail(t, PROTO_E_INTERNAL, "cannot start a piece fetch: out of memory");
            return;
        }
    }
}

/* ---- scheduler decisions ---- */

static void on_candidates(struct task *t, const proto_candidates *c)
{
    peer_daemon *d = t->d;
    if (!t->pp.have || c->piece_count != t->pp.piece_count) return;
    int skipped_liars = 0;
    uint64_t now = pd_now(d);
    for (size_t i = 0; i < c->n_candidates; i++) {
        const proto_candidate *cd = &c->candidates[i];
        if (strcmp(cd->host_id, d->host_id) == 0) continue;
        if (pp_globally_banned(&d->liars, cd->host_id)) {
            skipped_liars++;
            continue;
        }
        struct sockaddr_storage ss;
        if (proto_addr_parse(cd->addr, &ss)) continue;
        int slot = pp_add_candidate(&t->pp, cd->host_id, cd->addr, cd->bits, cd->bits_len, now);
        if (slot < 0 || t->pp.parents[slot].subscribed) continue;
        /* its bitmap updates from now on, not only after a first request: a node busy with an
         * origin run or other parents still learns what this one receives */
        pp_parent *pa = &t->pp.parents[slot];
        if (!pa->conn) pa->conn = pconn_get(d, pa->addr, pa->host_id);
        if (pa->conn) {
            pconn_subscribe(pa->conn, t->id);
            pa->subscribed = 1;
        }
    }
    if (!pp_usable_parents(&t->pp, &d->liars) && skipped_liars && !t->pp.origin_mode &&
        t->registry[0]) {
        /* the scheduler only knows liars for this blob: do not wait for them */
        cf_info("task %s: only banned parents offered, going back to source", t->id);
        t->pp.origin_mode = 1;
    }
    t->reask_at_ms = now + PEER_REASK_MS;
    task_pump(t);
}

static void on_back_to_source(struct task *t, const proto_back_to_source *b)
{
    if (pp_grant(&t->pp, b->runs, b->n_runs)) return;
    t->pp.whole = !t->cache_full; /* a grant means others wait for these pieces: fetch them now */
    task_pump(t);
}

static void on_wait(struct task *t, uint32_t ms)
{
    uint64_t at = pd_now(t->d) + (ms < 100 ? 100 : ms > 10000 ? 10000 : ms);
    if (t->reask_at_ms < at) t->reask_at_ms = at;
}

static void on_digests(struct task *t, const proto_digest_list *l)
{
    cf_err err = {0};
    if (t->digests || !t->pp.piece_count) return;
    if (proto_digest_list_check(l, t->id, t->piece_size, t->length, &err)) {
        /* no usable list: parents' pieces are taken unverified, the whole-blob sha256 decides */
        cf_warn("task %s: digest list refused: %s", t->id, cf_err_str(&err, -EBADMSG));
        t->sched_has_digests = 0;
        task_pump(t);
        return;
    }
    uint8_t *copy = malloc((size_t)l->piece_count * 32);
    if (!copy) return;
    memcpy(copy, l->digests, (size_t)l->piece_count * 32);
    t->digests = copy;
    t->digests_from_sched = 1;
    cf_info("task %s: per-piece digest list received, pieces are checked on arrival", t->id);
    task_pump(t); /* parents were held back until the list arrived */
}

/* sched_handler */
static struct task *task_on_link(peer_daemon *d, int idx, const char *task_id)
{
    struct task *t = task_find(d, task_id);
    if (!t || t->sched_idx != idx || t->dead) return NULL;
    return t;
}

static void on_task_msg(peer_daemon *d, int idx, const proto_msg *m)
{
    struct task *t;
    switch (m->type) {
    case PROTO_MSG_REGISTER_ANSWER:
        if ((t = task_on_link(d, idx, m->u.register_answer.task_id)))
            on_register_answer(t, &m->u.register_answer);
        break;
    case PROTO_MSG_CANDIDATES:
        if ((t = task_on_link(d, idx, m->u.candidates.task_id))) on_candidates(t, &m->u.candidates);
        break;
    case PROTO_MSG_BACK_TO_SOURCE:
        if ((t = task_on_link(d, idx, m->u.back_to_source.task_id)))
            on_back_to_source(t, &m->u.back_to_source);
        break;
    case PROTO_MSG_WAIT:
        if ((t = task_on_link(d, idx, m->u.wait.task_id))) on_wait(t, m->u.wait.retry_after_ms);
        break;
    case PROTO_MSG_DIGESTS:
        if ((t = task_on_link(d, idx, m->u.digests.task_id))) on_digests(t, &m->u.digests);
        break;
    case PROTO_MSG_DIGESTS_ACK:
        if ((t = task_on_link(d, idx, m->u.digests_ack.task_id))) {
            t->sched_has_digests = 1;
            cf_info("task %s: per-piece digest list published", t->id);
        }
        break;
    case PROTO_MSG_ERROR:
        if ((t = task_on_link(d, idx, m->u.error.task_id))) on_sched_error(t, &m->u.error);
        break;
    default:
        break;
    }
}

static void on_link_ready(peer_daemon *d, int idx)
{
    for (struct task *t = d->tasks; t; t = t->next)
        if (t->sched_idx == idx && !t->registered) {
            proto_msg m = {.type = PROTO_MSG_REGISTER_TASK};
            m.u.register_task.task_id = t->id;
            m.u.register_task.content_length = t->length;
            m.u.register_task.origin = t->origin[0] ? t->origin : t->id;
            m.u.register_task.resync = t->ever_registered;
            sched_client_send(d, idx, &m);
        }
}

static void on_host_unknown(peer_daemon *d, int idx)
{
    for (struct task *t = d->tasks; t; t = t->next)
        if (t->sched_idx == idx) t->registered = 0;
    on_link_ready(d, idx);
}

static void on_link_lost(peer_daemon *d, int idx)
{
    struct task *next;
    for (struct task *t = d->tasks; t; t = next) {
        next = t->next;
        if (t->sched_idx == idx) on_sched_lost(t);
    }
}

/* Schedulers joined or left: a task whose rendezvous pick changed leaves its scheduler and
 * registers with the new one at once, as every other peer with the same table does (else the
 * swarm of a blob would split over two schedulers). */
static void on_table_changed(peer_daemon *d)
{
    struct task *next;
    for (struct task *t = d->tasks; t; t = next) {
        next = t->next;
        if (t->sched_idx < 0 || t->dead) continue;
        int want = sched_client_pick(d, t->id);
        if (want == t->sched_idx) continue;
        cf_info("task %s: scheduler table changed, moving to %s", t->id,
                want >= 0 ? d->sched[want].addr : "none");
        leave_sched(t);
        enum task_state was = t->state;
        on_sched_lost(t); /* REGISTERING: registers again (or goes to the origin) */
        if (was != T_REGISTERING && want >= 0 && register_now(t) != 0) t->sched_idx = -1;
    }
}

/* ---- VERIFYING ---- */

struct verify_job {
    struct task *t;
    int rc;
    cf_err err;
    uint32_t piece_count, piece_size;
    uint64_t length;
    uint8_t *digests; /* per-piece list: computed, or the known digest of a checked piece */
    uint8_t *checked; /* copy of t->checked (NULL = none) */
    int16_t *source;  /* copy of who served each piece */
    uint32_t culprit_piece;
    int culprit; /* parent index, -1 unknown */
    proto_registry *reg;
    char repo[256];
};

static void verify_work(void *p)
{
    struct verify_job *j = p;
    struct task *t = j->t;
    peer_store *s = t->d->store;
    j->culprit = -1;
    if (!j->digests) j->digests = malloc((size_t)(j->piece_count ? j->piece_count : 1) * 32);
    uint8_t *buf = malloc(j->piece_size);
    cf_digest_ctx whole;
    if (!j->digests || !buf || cf_digest_init(&whole, CF_DIGEST_SHA256)) {
        free(buf);
        j->rc = -ENOMEM;
        return;
    }
    for (uint32_t i = 0; i < j->piece_count; i++) {
        uint32_t len = proto_piece_len(j->length, j->piece_size, i);
        j->rc = peer_store_read(s, t->digest, (uint64_t)i * j->piece_size, buf, len, NULL, 0, NULL,
                                &j->err);
        if (j->rc) {
            cf_digest_abort(&whole);
            free(buf);
            return;
        }
        cf_digest_update(&whole, buf, len);
        /* a piece checked on arrival has its digest already (filled in by start_verify) */
        if (!j->checked || !proto_bit_get(j->checked, i))
            cf_sha256(buf, len, j->digests + (size_t)i * 32);
    }
    free(buf);
    uint8_t got[32];
    cf_digest_final(&whole, got);
    if (memcmp(got, t->digest, 32) == 0) {
        j->rc = peer_store_set_piece_digests(s, t->digest, CF_DIGEST_SHA256, j->digests,
                                             j->piece_count, &j->err);
        if (!j->rc) j->rc = peer_store_mark_verified(s, t->digest, &j->err);
        return;
    }
    char hex[65];
    cf_hex_encode(got, 32, hex);
    j->rc = cf_err_set(&j->err, -EBADMSG, "blob %s: content hashes to sha256:%s", t->id, hex);
    /* find the parent that served the first bad piece: compare parent-served pieces with the
     * origin (only in this rare case) */
    for (uint32_t i = 0; j->reg && i < j->piece_count; i++) {
        if (j->source[i] < 0) continue;
        uint32_t len = proto_piece_len(j->length, j->piece_size, i);
        int rc = bts_piece_matches(j->reg, j->repo, t->id, (uint64_t)i * j->piece_size, len,
                                   j->digests + (size_t)i * 32);
        if (rc == -EBADMSG) {
            j->culprit = j->source[i];
            j->culprit_piece = i;
        }
        if (rc) break;
    }
    peer_store_purge(s, t->digest, NULL);
}

static void verify_job_free(struct verify_job *j)
{
    free(j->digests);
    free(j->checked);
    free(j->source);
    free(j);
}

static void verified(struct task *t, struct verify_job *j)
{
    peer_daemon *d = t->d;
    d->m.blobs_verified++;
    d->m.tasks_completed++;
    free(t->digests);
    t->digests = j->digests;
    j->digests = NULL;
    t->state = T_DONE;
    if (t->ref) {
        peer_store_blob_release(d->store, t->ref);
        t->ref = NULL;
    }
    cf_info("task %s: complete and verified (%llu bytes: %llu from parents, %llu from origin)",
            t->id, (unsigned long long)t->length, (unsigned long long)t->from_parents,
            (unsigned long long)t->from_origin);
    if (t->registered) announce_finished(t);
    notify_event(t, TASK_EV_DONE);
}

static void verify_done(void *p, int cancelled)
{
    struct verify_job *j = p;
    struct task *t = j->t;
    peer_daemon *d = t->d;
    t->work_refs--;
    if (t->dead || cancelled || d->stopping) {
        verify_job_free(j);
        task_maybe_free(t);
        return;
    }
    if (j->rc == 0) {
        verified(t, j);
        verify_job_free(j);
        return;
    }
    /* The cache dropped pieces meanwhile (failed sync): -ENODATA reading one, or -EIO when
     * the sync that fails is the one recording the verification. Fetch them again, a bounded
     * number of times (a disk that keeps failing ends the task). */
    if (j->rc == -ENODATA || (j->rc == -EIO && ++t->restarts <= MAX_RESTARTS)) {
        verify_job_free(j);
        t->state = T_RUNNING;
        tasks_resync_with_store(d);
        task_pump(t);
        return;
    }
    if (j->rc != -EBADMSG) {
        int rc = j->rc;
        char msg[CF_ERR_MSG_MAX];
        snprintf(msg, sizeof(msg), "%s", cf_err_str(&j->err, rc));
        verify_job_free(j);
        task_fail(t, fail_code(rc), "verify: %s", msg);
        return;
    }
    d->m.blob_mismatches++;
    cf_warn("task %s: %s: purged", t->id, cf_err_str(&j->err, j->rc));
    if (j->culprit >= 0 && j->culprit < t->pp.n_parents)
        parent_lied(t, j->culprit, j->culprit_piece);
    verify_job_free(j);
    if (++t->restarts > MAX_RESTARTS || !t->registry[0]) {
        task_fail(t, PROTO_E_DIGEST_MISMATCH, "blob %s: content does not match its digest", t->id);
        return;
    }
    /* start again: the scheduler must forget what we reported */
    leave_sched(t);
    t->registered = 0;
    pp_task_reset_pieces(&t->pp);
    free(t->checked);
    t->checked = NULL;
    if (t->ref) {
        peer_store_blob_release(d->store, t->ref);
        t->ref = NULL;
    }
    notify_event(t, TASK_EV_RESTART);
    if (d->o.n_schedulers && !t->pp.origin_mode)
        task_register(t);
    else
        task_open(t);
}

static void start_verify(struct task *t)
{
    if (t->state != T_RUNNING) return;
    t->state = T_VERIFYING;
    struct verify_job *j = calloc(1, sizeof(*j));
    if (j) j->source = malloc((t->pp.piece_count ? t->pp.piece_count : 1) * sizeof(int16_t));
    if (!j || !j->source) {
        free(j);
        task_fail(t, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    memcpy(j->source, t->pp.source, t->pp.piece_count * sizeof(int16_t));
    j->t = t;
    j->piece_count = t->pp.piece_count;
    j->piece_size = t->piece_size;
    j->length = t->length;
    if (t->checked && t->digests) {
        size_t nb = proto_bitmap_nbytes(t->pp.piece_count) + 1;
        j->checked = malloc(nb);
        j->digests = malloc((size_t)(t->pp.piece_count ? t->pp.piece_count : 1) * 32);
        if (j->checked && j->digests) {
            memcpy(j->checked, t->checked, nb);
            memcpy(j->digests, t->digests, (size_t)t->pp.piece_count * 32);
        } else {
            free(j->checked);
            free(j->digests);
            j->checked = j->digests = NULL;
        }
    }
    if (t->oc) {
        j->reg = t->oc->reg;
        snprintf(j->repo, sizeof(j->repo), "%s", t->repo);
    }
    t->work_refs++;
    /* the bytes are all stored and readable: hashing them waits for spare CPU */
    if (pd_queue_background(t->d, j, verify_work, verify_done)) {
        t->work_refs--;
        verify_job_free(j);
        task_fail(t, PROTO_E_INTERNAL, "cannot queue work");
    }
}

/* ---- the cache lost pieces ---- */

void task_piece_missing(struct task *t, uint32_t piece)
{
    if (!task_has_piece(t, piece) || t->state == T_DONE) return;
    cf_warn("task %s: piece %u is no longer in the cache: fetching it again", t->id, piece);
    pp_piece_lost(&t->pp, piece);
    task_pump(t);
}

void tasks_resync_with_store(peer_daemon *d)
{
    for (struct task *t = d->tasks; t; t = t->next) {
        if (!t->pp.have || t->state != T_RUNNING) continue;
        size_t nb = proto_bitmap_nbytes(t->pp.piece_count);
        uint8_t *bits = calloc(1, nb ? nb : 1);
        uint32_t pc = t->pp.piece_count;
        if (!bits || peer_store_bitmap(d->store, t->digest, bits, nb ? nb : 1, &pc) ||
            pc != t->pp.piece_count) {
            free(bits);
            continue;
        }
        uint32_t lost = 0;
        for (uint32_t i = 0; i < pc; i++)
            if (proto_bit_get(t->pp.have, i) && !proto_bit_get(bits, i)) {
                pp_piece_lost(&t->pp, i);
                lost++;
            }
        free(bits);
        if (lost) {
            cf_warn("task %s: the cache dropped %u piece(s) (failed sync): fetching them again",
                    t->id, lost);
            task_pump(t);
        }
    }
}

/* ---- periodic ---- */

void task_tick(peer_daemon *d)
{
    uint64_t now = pd_now(d);
    struct task *next;
    int busy = 0;
    for (struct task *t = d->tasks; t; t = next) {
        next = t->next;
        busy += t->state != T_DONE && t->state != T_FAILED;
        if (t->state == T_REGISTERING && now >= t->register_deadline_ms) {
            cf_info("task %s: no answer from the scheduler, fetching from the origin", t->id);
            go_origin(t);
            continue;
        }
        if (t->state != T_RUNNING && t->state != T_DONE) continue;
        if (task_drop_if_gone(t)) continue;
        if (t->state == T_RUNNING && t->registered && !t->digests && now >= t->digests_poll_ms) {
            /* a list may have been published since we registered: check every few seconds */
            t->digests_poll_ms = now + 3000;
            proto_msg m = {.type = PROTO_MSG_DIGESTS_FETCH};
            m.u.digests_fetch.task_id = t->id;
            m.u.digests_fetch.piece_size = t->piece_size;
            send_to_sched(t, &m);
        }
        /* (re-)register when the scheduler went away and came back, or parents ran out */
        if (d->o.n_schedulers && !t->registered && now >= t->reask_at_ms &&
            !(t->state == T_RUNNING && t->pp.origin_mode && t->length <= d->o.small_blob)) {
            t->reask_at_ms = now + PEER_REASK_MS;
            if (register_now(t) != 0) t->sched_idx = -1;
        }
        if (t->state != T_RUNNING) continue;
        int wanted = t->watchers || t->pp.whole;
        if (!t->pp.origin_mode && now - t->last_progress_ms > d->o.mesh_stall_ms && wanted) {
            cf_info("task %s: no progress from the mesh for %u ms, going back to source", t->id,
                    d->o.mesh_stall_ms);
            t->pp.origin_mode = 1;
        } else if (t->registered && now >= t->reask_at_ms && wanted &&
                   pp_wants_parents(&t->pp, &d->liars)) {
            /* parents ran out or ran dry: ask again (a repeated REGISTER_TASK = new schedule) */
            t->reask_at_ms = now + PEER_REASK_SOON_MS;
            proto_msg m = {.type = PROTO_MSG_REGISTER_TASK};
            m.u.register_task.task_id = t->id;
            m.u.register_task.content_length = t->length;
            m.u.register_task.origin = t->origin[0] ? t->origin : t->id;
            /* not a re-registration (resync): the scheduler still knows this task; flagged,
             * every re-ask started a recovery hold of every new task for 0.5 s */
            m.u.register_task.resync = 0;
            send_to_sched(t, &m);
        }
        task_pump(t);
    }
    /* no download moving: the piece buffers kept for reuse go back to the kernel (idle RSS) */
    if (!busy) cf_bufpool_trim();
}

/* ---- daemon start and stop ---- */

static const struct pconn_handler pconn_h = {
    .on_piece = on_parent_piece,
    .on_failed = on_parent_failed,
    .on_avail = on_parent_avail,
    .on_closed = on_parent_closed,
    .on_task_error = on_parent_task_error,
    .on_access_ok = on_parent_access_ok,
};

static const struct sched_handler sched_h = {
    .on_link_ready = on_link_ready,
    .on_link_lost = on_link_lost,
    .on_host_unknown = on_host_unknown,
    .on_task_msg = on_task_msg,
    .on_table_changed = on_table_changed,
};

int tasks_init(peer_daemon *d, cf_err *err)
{
    d->liars.ban_after = d->o.ban_after_lies;
    pconn_init(d, &pconn_h);
    return sched_client_init(d, &sched_h, err);
}

void tasks_stop(peer_daemon *d)
{
    for (struct task *t = d->tasks; t; t = t->next) {
        if (t->ref) {
            peer_store_blob_release(d->store, t->ref);
            t->ref = NULL;
        }
    }
}

void tasks_free(peer_daemon *d)
{
    while (d->tasks) {
        struct task *t = d->tasks;
        d->tasks = t->next;
        task_free(t);
    }
    pp_liars_free(&d->liars);
}
