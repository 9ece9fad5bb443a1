/* The per-blob download state machine (docs/peer.md, "Downloading"):
 *
 *   SIZING -> (REGISTERING) -> OPENING -> RUNNING -> VERIFYING -> DONE (seeding)
 *                                            ^            |
 *                                            +-- mismatch-+   any step -> FAILED
 *
 * SIZING learns the blob length from the cache or an origin HEAD (thread pool). Blobs up to
 * small_blob, and every blob when no scheduler answers, go straight to the origin; otherwise the
 * task registers with its rendezvous scheduler, whose answer fixes the piece size. RUNNING keeps
 * up to pieces_in_flight pieces moving: pieces local readers wait for first (in order), then
 * origin grants, then the rest rarest-first among the parents; each piece is fetched once per
 * node at a time (inflight bitmap), whatever the number of readers. Bytes are checked against
 * the per-piece digest list when one is known, written in the thread pool, reported to the
 * scheduler, announced to subscribed children and handed to waiting readers (cut-through).
 * When all pieces are written the whole blob is hashed; a match marks it verified and publishes
 * the digest list, a mismatch purges it, finds the parent that served the first bad piece (by
 * comparing parent-served pieces with the origin) and bans it, then starts again. Origin
 * fetches and registry clients live in back_to_source.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/digest.h"
#include "cf/hex.h"
#include "cf/log.h"
#include "daemon_internal.h"
#include "proto/piece.h"

#define MAX_RESTARTS 3

static inline int bit_get(const uint8_t *b, uint32_t i)
{
    return (b[i >> 3] >> (i & 7)) & 1;
}
static inline void bit_set(uint8_t *b, uint32_t i)
{
    b[i >> 3] |= (uint8_t)(1u << (i & 7));
}
static inline void bit_clr(uint8_t *b, uint32_t i)
{
    b[i >> 3] &= (uint8_t) ~(1u << (i & 7));
}

bool task_has_piece(const struct task *t, uint32_t piece)
{
    return t->have && piece < t->piece_count && bit_get(t->have, piece);
}

struct task *task_find(peer_daemon *d, const char *id)
{
    for (struct task *t = d->tasks; t; t = t->next)
        if (strcmp(t->id, id) == 0) return t;
    return NULL;
}

/* ---- lifetime ---- */

static void task_free(struct task *t)
{
    free(t->have);
    free(t->inflight);
    free(t->granted);
    free(t->source);
    free(t->digests);
    for (int i = 0; i < t->n_parents; i++) free(t->parents[i].bits);
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
    pconn_forget_task(d, t);
    if (t->ref) {
        peer_store_blob_release(d->store, t->ref);
        t->ref = NULL;
    }
}

static void task_maybe_free(struct task *t)
{
    if (t->dead && t->work_refs == 0) task_free(t);
}

/* A finished task whose blob left the cache (evicted, purged): leave the mesh and forget it, so
 * the next read starts a fresh download. Returns 1 when it was dropped. */
static int task_drop_if_gone(struct task *t)
{
    peer_blob_info bi;
    if (t->state != T_DONE || t->dead) return 0;
    if (peer_store_blob_info(t->d->store, t->digest, &bi) == 0 && bi.complete) return 0;
    cf_info("task %s: blob left the cache, leaving the mesh", t->id);
    if (t->registered && t->sched_idx >= 0) {
        proto_msg m = {.type = PROTO_MSG_LEAVE_TASK};
        m.u.leave_task.task_id = t->id;
        sched_client_send(t->d, t->sched_idx, &m);
    }
    local_reads_fail(t, PROTO_E_NOT_FOUND, "blob left the cache during the read, retry");
    task_unlink(t);
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
    local_reads_fail(t, code, t->fail_msg);
    if (t->registered && t->sched_idx >= 0) {
        proto_msg m = {.type = PROTO_MSG_TASK_FAILED};
        m.u.task_failed.task_id = t->id;
        m.u.task_failed.code = code;
        m.u.task_failed.message = t->fail_msg;
        sched_client_send(t->d, t->sched_idx, &m);
    }
    task_unlink(t);
    task_maybe_free(t);
}

static uint32_t errno_to_code(int rc)
{
    switch (rc) {
    case -EACCES:
        return PROTO_E_AUTH;
    case -ENOSPC:
        return PROTO_E_NO_SPACE;
    case -ERANGE:
        return PROTO_E_RANGE;
    case -EBADMSG:
        return PROTO_E_DIGEST_MISMATCH;
    case -ENOENT:
        return PROTO_E_NOT_FOUND;
    case -ENOMEM:
    case -EIO:
        return PROTO_E_INTERNAL;
    default:
        return PROTO_E_ORIGIN;
    }
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

static void task_open(struct task *t);
static int task_alloc_maps(struct task *t, uint32_t count);
static void task_register(struct task *t);

static void size_job_free(struct size_job *j)
{
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
        task_fail(t, errno_to_code(j->rc), "%s", cf_err_str(&j->err, j->rc));
        size_job_free(j);
        return;
    }
    t->oc = j->oc;
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
        t->piece_size = PROTO_PIECE_SIZE_SMALL;
        task_open(t);
        return;
    }
    if (d->o.n_schedulers == 0 || (t->length <= d->o.small_blob && !t->seed)) {
        t->origin_mode = 1;
        if (!t->piece_size) t->piece_size = proto_piece_size_for(t->length);
        task_open(t);
        return;
    }
    if (t->seed) { /* serve it at once; the registration announces it to the mesh */
        task_open(t);
        return;
    }
    task_register(t);
}

/* ---- REGISTERING ---- */

static void task_register(struct task *t)
{
    peer_daemon *d = t->d;
    t->state = T_REGISTERING;
    t->register_deadline_ms = pd_now(d) + d->o.register_timeout_ms;
    if (sched_client_register(d, t) != 0) {
        cf_info("task %s: no scheduler reachable, fetching from the origin", t->id);
        t->origin_mode = 1;
        if (!t->piece_size) t->piece_size = proto_piece_size_for(t->length);
        task_open(t);
    }
}

static void resync_with_sched(struct task *t)
{
    /* (re-)registered: tell the scheduler what we already hold (parent = ourselves) */
    if (!t->registered || !t->have) return;
    proto_bitmap b = {.bits = t->have, .nbits = t->piece_count};
    proto_piece_run *runs = NULL;
    size_t n = 0;
    if (proto_bitmap_delta(NULL, &b, &runs, &n) == 0 && n) {
        proto_msg m = {.type = PROTO_MSG_PIECE_REPORT};
        m.u.piece_report.task_id = t->id;
        m.u.piece_report.runs = runs;
        m.u.piece_report.n_runs = n;
        m.u.piece_report.parent_id = t->d->host_id;
        sched_client_send(t->d, t->sched_idx, &m);
    }
    free(runs);
    if (t->state == T_DONE) {
        proto_msg m = {.type = PROTO_MSG_TASK_FINISHED};
        m.u.task_finished.task_id = t->id;
        m.u.task_finished.content_length = t->length;
        m.u.task_finished.verified = true;
        sched_client_send(t->d, t->sched_idx, &m);
        t->finished_sent = 1;
    }
    if (t->state == T_DONE && t->digests && !t->sched_has_digests) {
        proto_msg m = {.type = PROTO_MSG_DIGESTS_PUBLISH};
        m.u.digests.task_id = t->id;
        m.u.digests.piece_size = t->piece_size;
        m.u.digests.piece_count = t->piece_count;
        m.u.digests.digests = t->digests;
        sched_client_send(t->d, t->sched_idx, &m);
    } else if (t->sched_has_digests && !t->digests && t->state != T_DONE) {
        proto_msg m = {.type = PROTO_MSG_DIGESTS_FETCH};
        m.u.digests_fetch.task_id = t->id;
        m.u.digests_fetch.piece_size = t->piece_size;
        sched_client_send(t->d, t->sched_idx, &m);
    }
}

void task_on_register_answer(struct task *t, const proto_register_answer *a)
{
    cf_err err = {0};
    uint32_t count;
    if (a->content_length != t->length ||
        proto_piece_layout(a->content_length, a->piece_size, &count, &err) ||
        count != a->piece_count || proto_piece_size_check(a->piece_size)) {
        cf_warn("task %s: scheduler answer does not fit (length %llu/%llu, piece size %u): "
                "using the origin",
                t->id, (unsigned long long)a->content_length, (unsigned long long)t->length,
                a->piece_size);
        t->registered = 0;
        if (t->state == T_REGISTERING) {
            t->origin_mode = 1;
            if (!t->piece_size) t->piece_size = proto_piece_size_for(t->length);
            task_open(t);
        }
        return;
    }
    t->registered = 1;
    t->sched_has_digests = a->has_digests;
    if (t->state == T_REGISTERING) {
        if (t->piece_size && t->piece_size != a->piece_size && !t->seed)
            cf_info("task %s: cached piece size %u differs from the scheduler's %u: refetching",
                    t->id, t->piece_size, a->piece_size);
        t->piece_size = a->piece_size;
        if (task_alloc_maps(t, a->piece_count)) {
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
        t->origin_mode = 1;
        task_pump(t);
        return;
    }
    if (t->origin_no_sched) { /* a scheduler is back: it decides about the origin again */
        t->origin_no_sched = 0;
        t->origin_mode = 0;
        t->last_progress_ms = pd_now(t->d);
    }
    resync_with_sched(t);
    task_pump(t);
}

void task_on_sched_error(struct task *t, const proto_error *e)
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
        t->origin_mode = 1;
        if (!t->piece_size) t->piece_size = proto_piece_size_for(t->length);
        task_open(t);
    } else if (e->code == PROTO_E_UNKNOWN_TASK && t->registered) {
        /* the scheduler forgot the task (restart, expiry): register again soon */
        t->registered = 0;
        t->reask_at_ms = pd_now(t->d) + 200;
    }
}

void task_on_sched_lost(struct task *t)
{
    t->registered = 0;
    t->sched_idx = -1;
    if (t->granted) memset(t->granted, 0, proto_bitmap_nbytes(t->piece_count));
    t->reask_at_ms = pd_now(t->d) + 1000; /* re-register (maybe elsewhere) soon */
    if (t->state == T_REGISTERING) {
        if (sched_client_register(t->d, t) == 0) return; /* another scheduler */
        t->origin_mode = 1;
        if (!t->piece_size) t->piece_size = proto_piece_size_for(t->length);
        task_open(t);
    } else if (t->state == T_RUNNING && !t->origin_mode) {
        /* no scheduler grants any more: what parents do not have comes from the origin until
         * a scheduler answers again */
        cf_info("task %s: scheduler lost, missing pieces come from the origin", t->id);
        t->origin_mode = 1;
        t->origin_no_sched = 1;
        task_pump(t);
    }
}

/* Piece maps sized for `count` pieces. Kept (with grants and parents' bitmaps) when the size
 * does not change: scheduler decisions may arrive while the cache entry is being opened. */
static int task_alloc_maps(struct task *t, uint32_t count)
{
    size_t nb = proto_bitmap_nbytes(count);
    if (t->inflight && t->piece_count == count) return 0;
    free(t->have);
    free(t->inflight);
    free(t->granted);
    free(t->source);
    for (int i = 0; i < t->n_parents; i++) {
        free(t->parents[i].bits);
        t->parents[i].bits = NULL;
    }
    t->piece_count = count;
    t->have = calloc(1, nb ? nb : 1);
    t->inflight = calloc(1, nb ? nb : 1);
    t->granted = calloc(1, nb ? nb : 1);
    t->source = malloc((count ? count : 1) * sizeof(int16_t));
    if (!t->have || !t->inflight || !t->granted || !t->source) return -ENOMEM;
    for (uint32_t i = 0; i < count; i++) t->source[i] = -1;
    return 0;
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
        if (!t->dead && !cancelled && !d->stopping)
            task_fail(t, errno_to_code(j->rc), "cache: %s", cf_err_str(&j->err, j->rc));
        free(j->have);
        free(j->digests);
        free(j);
        task_maybe_free(t);
        return;
    }
    if (task_alloc_maps(t, j->info.piece_count)) {
        free(j->have);
        free(j->digests);
        free(j);
        task_fail(t, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    free(t->have);
    t->have = j->have;
    memset(t->inflight, 0, proto_bitmap_nbytes(t->piece_count));
    t->n_have = 0;
    for (uint32_t i = 0; i < t->piece_count; i++) t->n_have += bit_get(t->have, i);
    if (j->digests && !t->digests) {
        t->digests = j->digests;
        j->digests = NULL;
    }
    free(j->digests);
    int verified = j->info.verified && j->info.complete;
    free(j);
    t->n_inflight = t->n_origin_inflight = 0;
    if (!t->ref) peer_store_blob_acquire(d->store, t->digest, &t->ref);
    t->last_progress_ms = pd_now(d);
    if (verified) {
        t->state = T_DONE;
        if (t->ref) {
            peer_store_blob_release(d->store, t->ref);
            t->ref = NULL;
        }
        if (d->o.n_schedulers && !t->registered) sched_client_register(d, t);
    } else {
        t->state = T_RUNNING;
    }
    resync_with_sched(t);
    local_prefetch_ready(t);
    local_reads_pump(t);
    task_pump(t);
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
        if (whole && !t->whole && d->o.fetch_whole_blob) {
            t->whole = 1;
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
    t->whole = whole && d->o.fetch_whole_blob;
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

static struct lie_record *liar_find(peer_daemon *d, const char *host_id)
{
    for (struct lie_record *l = d->liars; l; l = l->next)
        if (strcmp(l->host_id, host_id) == 0) return l;
    return NULL;
}

static void parent_lied(struct task *t, int tp, uint32_t piece)
{
    peer_daemon *d = t->d;
    struct tparent *pa = &t->parents[tp];
    d->m.digest_mismatches++;
    if (pa->banned) return;
    pa->banned = 1;
    d->m.bans++;
    cf_warn("task %s: parent %s (%s) served bad bytes for piece %u: banned for this task", t->id,
            pa->host_id, pa->addr, piece);
    sched_client_bad_parent(d, t, pa->host_id, PROTO_BAD_PARENT_DIGEST_MISMATCH, piece);
    struct lie_record *l = liar_find(d, pa->host_id);
    if (!l && (l = calloc(1, sizeof(*l)))) {
        snprintf(l->host_id, sizeof(l->host_id), "%s", pa->host_id);
        l->next = d->liars;
        d->liars = l;
    }
    if (l && ++l->tasks == d->o.ban_after_lies)
        cf_warn("parent %s lied in %u tasks: banned for every task", l->host_id, l->tasks);
    /* the only parents left lied: waiting for the mesh would only wait for them */
    int usable = 0;
    for (int i = 0; i < t->n_parents; i++) usable += !t->parents[i].banned;
    if (!usable && !t->origin_mode && t->registry[0]) {
        cf_info("task %s: every parent is banned, going back to source", t->id);
        t->origin_mode = 1;
    }
}

static int parent_globally_banned(peer_daemon *d, const char *host_id)
{
    struct lie_record *l = liar_find(d, host_id);
    return l && l->tasks >= d->o.ban_after_lies;
}

static void start_verify(struct task *t);

static void piece_done(struct task *t, uint32_t piece, int src, uint32_t len)
{
    peer_daemon *d = t->d;
    if (bit_get(t->have, piece)) return;
    bit_set(t->have, piece);
    t->n_have++;
    t->source[piece] = (int16_t)src;
    bit_clr(t->granted, piece);
    t->last_progress_ms = pd_now(d);
    if (src >= 0) {
        d->m.bytes_from_parents += len;
        d->m.pieces_from_parents++;
        t->from_parents += len;
        t->parents[src].served++;
    } else {
        d->m.bytes_from_origin += len;
        d->m.pieces_from_origin++;
        t->from_origin += len;
    }
    sched_client_report(d, t, piece, 1, src >= 0 ? t->parents[src].host_id : "");
    upload_notify_piece(d, t, piece);
    local_reads_pump(t);
}

static void inflight_end(struct task *t, uint32_t piece, int origin)
{
    if (t->inflight && bit_get(t->inflight, piece)) {
        bit_clr(t->inflight, piece);
        t->n_inflight--;
        if (origin) t->n_origin_inflight--;
    }
}

void task_piece_job_free(struct piece_job *j)
{
    free(j->data);
    free(j);
}

void task_piece_write_work(void *p)
{
    struct piece_job *j = p;
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
}

void task_piece_write_done(void *p, int cancelled)
{
    struct piece_job *j = p;
    struct task *t = j->t;
    t->work_refs--;
    inflight_end(t, j->piece, j->tp < 0);
    if (t->dead || cancelled || t->d->stopping || t->state != T_RUNNING) {
        task_piece_job_free(j);
        task_maybe_free(t);
        return;
    }
    if (j->rc == 0) {
        piece_done(t, j->piece, j->tp, j->len);
    } else if (j->rc == -EBADMSG && j->tp >= 0) {
        parent_lied(t, j->tp, j->piece);
    } else if (j->tp < 0) {
        t->d->m.origin_failures++;
        int rc = j->rc;
        char msg[CF_ERR_MSG_MAX];
        snprintf(msg, sizeof(msg), "%s", cf_err_str(&j->err, rc));
        task_piece_job_free(j);
        task_fail(t, errno_to_code(rc), "origin: %s", msg);
        return;
    } else {
        t->d->m.piece_failures++;
        cf_warn("task %s: piece %u: %s", t->id, j->piece, cf_err_str(&j->err, j->rc));
        if (j->rc == -ENOSPC || j->rc == -ENOENT) {
            int rc = j->rc;
            task_piece_job_free(j);
            task_fail(t, errno_to_code(rc), "cache: cannot store piece");
            return;
        }
    }
    task_piece_job_free(j);
    if (t->n_have == t->piece_count)
        start_verify(t);
    else
        task_pump(t);
}

void task_on_piece_data(struct task *t, int tp, uint32_t piece, const uint8_t *data, uint32_t len)
{
    peer_daemon *d = t->d;
    if (t->state != T_RUNNING || piece >= t->piece_count ||
        len != proto_piece_len(t->length, t->piece_size, piece)) {
        if (t->state == T_RUNNING && piece < t->piece_count) {
            inflight_end(t, piece, 0);
            d->m.piece_failures++;
            sched_client_bad_parent(d, t, t->parents[tp].host_id, PROTO_BAD_PARENT_OTHER, piece);
            t->parents[tp].down_until_ms = pd_now(d) + 5000;
            task_pump(t);
        }
        return;
    }
    struct piece_job *j = calloc(1, sizeof(*j));
    uint8_t *copy = j ? malloc(len ? len : 1) : NULL;
    if (!copy) {
        free(j);
        inflight_end(t, piece, 0);
        return;
    }
    memcpy(copy, data, len);
    j->t = t;
    j->piece = piece;
    j->len = len;
    j->tp = tp;
    j->data = copy;
    if (t->digests) {
        memcpy(j->expect, t->digests + (size_t)piece * 32, 32);
        j->has_expect = 1;
    }
    t->work_refs++;
    if (pd_queue_work(d, j, task_piece_write_work, task_piece_write_done)) {
        t->work_refs--;
        inflight_end(t, piece, 0);
        task_piece_job_free(j);
    }
}

void task_on_piece_failed(struct task *t, int tp, uint32_t piece, int code)
{
    peer_daemon *d = t->d;
    if (t->dead) return;
    inflight_end(t, piece, 0);
    struct tparent *pa = &t->parents[tp];
    uint64_t now = pd_now(d);
    switch (code) {
    case PROTO_E_BUSY:
        d->m.upload_busy++;
        pa->down_until_ms = now + 200;
        break;
    case PROTO_E_NOT_FOUND:
    case PROTO_E_RANGE:
        if (pa->bits && piece < t->piece_count) bit_clr(pa->bits, piece);
        break;
    case PROTO_E_UNKNOWN_TASK:
        if (pa->bits) memset(pa->bits, 0, proto_bitmap_nbytes(t->piece_count));
        break;
    case -ETIMEDOUT: /* its connection was closed for a stalled piece */
        d->m.piece_failures++;
        if (pa->down_until_ms <= now) /* one report per episode, not one per request */
            sched_client_bad_parent(d, t, pa->host_id, PROTO_BAD_PARENT_TIMEOUT, piece);
        pa->down_until_ms = now + 10000;
        pa->subscribed = 0;
        break;
    default: /* connection lost / refused */
        d->m.piece_failures++;
        if (pa->down_until_ms <= now)
            sched_client_bad_parent(d, t, pa->host_id, PROTO_BAD_PARENT_REFUSED, piece);
        pa->down_until_ms = now + 3000;
        pa->subscribed = 0;
        break;
    }
    if (t->state == T_RUNNING) task_pump(t);
}

void task_on_parent_avail(struct task *t, int tp, const uint8_t *bits, size_t len,
                          const proto_piece_run *runs, size_t n_runs)
{
    struct tparent *pa = &t->parents[tp];
    size_t nb = proto_bitmap_nbytes(t->piece_count);
    if (!pa->bits) return;
    if (bits) {
        if (len != nb) return;
        memcpy(pa->bits, bits, nb);
    }
    for (size_t i = 0; i < n_runs; i++) {
        if (runs[i].start >= t->piece_count || runs[i].count > t->piece_count - runs[i].start)
            return;
        for (uint32_t k = 0; k < runs[i].count; k++) bit_set(pa->bits, runs[i].start + k);
    }
    if (t->state == T_RUNNING) task_pump(t);
}

/* ---- scheduling pieces ---- */

static int pick_parent(struct task *t, uint32_t piece)
{
    peer_daemon *d = t->d;
    /* The scheduler holds a per-piece digest list for this task that has not arrived yet:
     * take nothing from parents until it has, so no parent's bytes are accepted (and served to
     * a local reader) unchecked. Origin fetches go on meanwhile. */
    if (t->sched_has_digests && !t->digests) return -1;
    uint64_t now = pd_now(d);
    int best = -1, best_load = 1 << 30;
    for (int i = 0; i < t->n_parents; i++) {
        struct tparent *pa = &t->parents[i];
        if (pa->banned || pa->down_until_ms > now || !pa->bits || !bit_get(pa->bits, piece))
            continue;
        if (parent_globally_banned(d, pa->host_id)) continue;
        struct pconn *pc = pa->pc;
        int load = pc ? pc->n_inflight : 0;
        if (pc && pc->busy_until_ms > now) continue;
        if (load >= (int)d->o.per_parent_in_flight) continue;
        if (load < best_load) {
            best = i;
            best_load = load;
        }
    }
    return best;
}

/* 1 dispatched, 0 no source now, <0 error */
static int dispatch(struct task *t, uint32_t piece)
{
    peer_daemon *d = t->d;
    int tp = pick_parent(t, piece);
    if (tp >= 0) {
        struct tparent *pa = &t->parents[tp];
        if (!pa->pc) pa->pc = pconn_get(d, pa->addr, pa->host_id);
        if (pa->pc) {
            if (!pa->subscribed) {
                pconn_subscribe(pa->pc, t);
                pa->subscribed = 1;
            }
            if (pconn_request(pa->pc, t, tp, piece) == 0) {
                bit_set(t->inflight, piece);
                t->n_inflight++;
                return 1;
            }
        }
    }
    if ((t->origin_mode || bit_get(t->granted, piece)) &&
        t->n_origin_inflight < d->o.origin_in_flight) {
        int rc = bts_fetch_piece(t, piece);
        if (rc == 0) {
            bit_set(t->inflight, piece);
            t->n_inflight++;
            t->n_origin_inflight++;
            return 1;
        }
        if (rc == -ENOENT && t->origin_mode) {
            task_fail(t, PROTO_E_ORIGIN, "blob %s is incomplete and no origin is known", t->id);
            return -ENOENT;
        }
    }
    return 0;
}

static int wanted(const struct task *t, uint32_t p)
{
    return !bit_get(t->have, p) && !bit_get(t->inflight, p);
}

void task_pump(struct task *t)
{
    peer_daemon *d = t->d;
    if (t->state != T_RUNNING || d->stopping || t->dead) return;
    if (t->n_have == t->piece_count) {
        if (t->n_inflight == 0) start_verify(t);
        return;
    }
    uint32_t budget = d->o.pieces_in_flight;
    /* 1. readers stream in order */
    for (struct local_read *r = t->readers; r && t->n_inflight < budget; r = r->next_t) {
        if (r->cur >= r->end) continue;
        uint32_t first = (uint32_t)(r->cur / t->piece_size);
        uint32_t last = (uint32_t)((r->end - 1) / t->piece_size);
        for (uint32_t p = first; p <= last && p < t->piece_count && t->n_inflight < budget; p++)
            if (wanted(t, p) && dispatch(t, p) < 0) return;
    }
    if (!t->whole) return;
    /* 2. origin grants (others wait for them), in order */
    for (uint32_t p = 0; p < t->piece_count && t->n_inflight < budget; p++)
        if (bit_get(t->granted, p) && wanted(t, p) && dispatch(t, p) < 0) return;
    /* 3. rarest first among what parents hold */
    while (t->n_inflight < budget) {
        uint32_t best = UINT32_MAX;
        int best_n = 1 << 30;
        for (uint32_t p = 0; p < t->piece_count; p++) {
            if (!wanted(t, p)) continue;
            int n = 0;
            for (int i = 0; i < t->n_parents; i++)
                if (t->parents[i].bits && !t->parents[i].banned && bit_get(t->parents[i].bits, p))
                    n++;
            if (n == 0) continue;
            if (pick_parent(t, p) < 0) continue;
            if (n < best_n) {
                best_n = n;
                best = p;
                if (n == 1) break;
            }
        }
        if (best == UINT32_MAX) break;
        int rc = dispatch(t, best);
        if (rc < 0) return;
        if (rc == 0) break;
    }
    /* 4. origin mode: everything else in order */
    if (t->origin_mode)
        for (uint32_t p = 0; p < t->piece_count && t->n_inflight < budget &&
                             t->n_origin_inflight < d->o.origin_in_flight;
             p++)
            if (wanted(t, p) && dispatch(t, p) < 0) return;
}

/* ---- scheduler decisions ---- */

static int parent_index(struct task *t, const char *host_id, const char *addr)
{
    for (int i = 0; i < t->n_parents; i++)
        if (strcmp(t->parents[i].host_id, host_id) == 0) {
            if (strcmp(t->parents[i].addr, addr) != 0) {
                snprintf(t->parents[i].addr, sizeof(t->parents[i].addr), "%s", addr);
                t->parents[i].pc = NULL;
                t->parents[i].subscribed = 0;
            }
            return i;
        }
    if (t->n_parents == TASK_MAX_PARENTS) {
        /* reuse the slot of a parent that is banned or down and serves nothing in flight */
        for (int i = 0; i < t->n_parents; i++) {
            struct tparent *pa = &t->parents[i];
            if (!(pa->banned || pa->down_until_ms > pd_now(t->d))) continue;
            int busy = 0;
            for (uint32_t p = 0; p < t->piece_count && !busy; p++) busy = t->source[p] == i;
            if (busy) continue;
            free(pa->bits);
            memset(pa, 0, sizeof(*pa));
            snprintf(pa->host_id, sizeof(pa->host_id), "%s", host_id);
            snprintf(pa->addr, sizeof(pa->addr), "%s", addr);
            return i;
        }
        return -1;
    }
    struct tparent *pa = &t->parents[t->n_parents];
    memset(pa, 0, sizeof(*pa));
    snprintf(pa->host_id, sizeof(pa->host_id), "%s", host_id);
    snprintf(pa->addr, sizeof(pa->addr), "%s", addr);
    return t->n_parents++;
}

void task_on_candidates(struct task *t, const proto_candidates *c)
{
    peer_daemon *d = t->d;
    if (!t->have || c->piece_count != t->piece_count) return;
    size_t nb = proto_bitmap_nbytes(t->piece_count);
    int skipped_liars = 0;
    for (size_t i = 0; i < c->n_candidates; i++) {
        const proto_candidate *cd = &c->candidates[i];
        if (strcmp(cd->host_id, d->host_id) == 0 || cd->bits_len != nb) continue;
        if (parent_globally_banned(d, cd->host_id)) {
            skipped_liars++;
            continue;
        }
        struct sockaddr_storage ss;
        if (proto_addr_parse(cd->addr, &ss)) continue;
        int k = parent_index(t, cd->host_id, cd->addr);
        if (k < 0) continue;
        struct tparent *pa = &t->parents[k];
        if (!pa->bits && !(pa->bits = calloc(1, nb ? nb : 1))) continue;
        for (size_t b = 0; b < nb; b++) pa->bits[b] |= cd->bits[b];
        pa->down_until_ms = 0;
    }
    int usable = 0;
    for (int i = 0; i < t->n_parents; i++)
        usable += !t->parents[i].banned && !parent_globally_banned(d, t->parents[i].host_id);
    if (!usable && skipped_liars && !t->origin_mode && t->registry[0]) {
        /* the scheduler only knows liars for this blob: do not wait for them */
        cf_info("task %s: only banned parents offered, going back to source", t->id);
        t->origin_mode = 1;
    }
    t->reask_at_ms = pd_now(d) + 2000;
    task_pump(t);
}

void task_on_back_to_source(struct task *t, const proto_back_to_source *b)
{
    if (!t->granted) return;
    for (size_t i = 0; i < b->n_runs; i++) {
        const proto_piece_run *r = &b->runs[i];
        if (r->start >= t->piece_count || r->count > t->piece_count - r->start) return;
    }
    for (size_t i = 0; i < b->n_runs; i++)
        for (uint32_t k = 0; k < b->runs[i].count; k++) bit_set(t->granted, b->runs[i].start + k);
    t->whole = 1; /* a grant means others wait for these pieces: fetch them now */
    task_pump(t);
}

void task_on_wait(struct task *t, uint32_t ms)
{
    uint64_t at = pd_now(t->d) + (ms < 100 ? 100 : ms > 10000 ? 10000 : ms);
    if (t->reask_at_ms < at) t->reask_at_ms = at;
}

void task_on_digests(struct task *t, const proto_digest_list *l)
{
    cf_err err = {0};
    if (t->digests || !t->piece_count) return;
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

/* ---- VERIFYING ---- */

struct verify_job {
    struct task *t;
    int rc;
    cf_err err;
    uint8_t *digests; /* computed per-piece list */
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
    j->digests = malloc((size_t)(t->piece_count ? t->piece_count : 1) * 32);
    uint8_t *buf = malloc(t->piece_size);
    cf_digest_ctx whole;
    if (!j->digests || !buf || cf_digest_init(&whole, CF_DIGEST_SHA256)) {
        free(buf);
        j->rc = -ENOMEM;
        return;
    }
    for (uint32_t i = 0; i < t->piece_count; i++) {
        uint32_t len = proto_piece_len(t->length, t->piece_size, i);
        j->rc = peer_store_read(s, t->digest, (uint64_t)i * t->piece_size, buf, len, NULL, 0, NULL,
                                &j->err);
        if (j->rc) {
            cf_digest_abort(&whole);
            free(buf);
            return;
        }
        cf_digest_update(&whole, buf, len);
        cf_sha256(buf, len, j->digests + (size_t)i * 32);
    }
    free(buf);
    uint8_t got[32];
    cf_digest_final(&whole, got);
    if (memcmp(got, t->digest, 32) == 0) {
        j->rc = peer_store_set_piece_digests(s, t->digest, CF_DIGEST_SHA256, j->digests,
                                             t->piece_count, &j->err);
        if (!j->rc) j->rc = peer_store_mark_verified(s, t->digest, &j->err);
        return;
    }
    char hex[65];
    cf_hex_encode(got, 32, hex);
    j->rc = cf_err_set(&j->err, -EBADMSG, "blob %s: content hashes to sha256:%s", t->id, hex);
    /* find the parent that served the first bad piece: compare parent-served pieces with the
     * origin (only in this rare case) */
    for (uint32_t i = 0; j->reg && i < t->piece_count; i++) {
        if (j->source[i] < 0) continue;
        uint32_t len = proto_piece_len(t->length, t->piece_size, i);
        int rc = bts_piece_matches(j->reg, j->repo, t->id, (uint64_t)i * t->piece_size, len,
                                   j->digests + (size_t)i * 32);
        if (rc == -EBADMSG) {
            j->culprit = j->source[i];
            j->culprit_piece = i;
        }
        if (rc) break;
    }
    peer_store_purge(s, t->digest, NULL);
}

static void verify_done(void *p, int cancelled)
{
    struct verify_job *j = p;
    struct task *t = j->t;
    peer_daemon *d = t->d;
    t->work_refs--;
    if (t->dead || cancelled || d->stopping) {
        free(j->digests);
        free(j->source);
        free(j);
        task_maybe_free(t);
        return;
    }
    if (j->rc == 0) {
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
        cf_info("task %s: complete and verified (%llu bytes: %llu from parents, %llu from "
                "origin)",
                t->id, (unsigned long long)t->length, (unsigned long long)t->from_parents,
                (unsigned long long)t->from_origin);
        if (t->registered && t->sched_idx >= 0) {
            proto_msg m = {.type = PROTO_MSG_TASK_FINISHED};
            m.u.task_finished.task_id = t->id;
            m.u.task_finished.content_length = t->length;
            m.u.task_finished.verified = true;
            sched_client_send(d, t->sched_idx, &m);
            t->finished_sent = 1;
            if (!t->sched_has_digests) {
                proto_msg pm = {.type = PROTO_MSG_DIGESTS_PUBLISH};
                pm.u.digests.task_id = t->id;
                pm.u.digests.piece_size = t->piece_size;
                pm.u.digests.piece_count = t->piece_count;
                pm.u.digests.digests = t->digests;
                sched_client_send(d, t->sched_idx, &pm);
            }
        }
        local_reads_pump(t);
        free(j->source);
        free(j);
        return;
    }
    if (j->rc != -EBADMSG) {
        int rc = j->rc;
        char msg[CF_ERR_MSG_MAX];
        snprintf(msg, sizeof(msg), "%s", cf_err_str(&j->err, rc));
        free(j->digests);
        free(j->source);
        free(j);
        task_fail(t, errno_to_code(rc), "verify: %s", msg);
        return;
    }
    d->m.blob_mismatches++;
    cf_warn("task %s: %s: purged", t->id, cf_err_str(&j->err, j->rc));
    if (j->culprit >= 0 && j->culprit < t->n_parents) parent_lied(t, j->culprit, j->culprit_piece);
    free(j->digests);
    free(j->source);
    free(j);
    if (++t->restarts > MAX_RESTARTS || !t->registry[0]) {
        task_fail(t, PROTO_E_DIGEST_MISMATCH, "blob %s: content does not match its digest", t->id);
        return;
    }
    /* start again: the scheduler must forget what we reported */
    if (t->registered && t->sched_idx >= 0) {
        proto_msg m = {.type = PROTO_MSG_LEAVE_TASK};
        m.u.leave_task.task_id = t->id;
        sched_client_send(d, t->sched_idx, &m);
    }
    t->registered = 0;
    memset(t->have, 0, proto_bitmap_nbytes(t->piece_count));
    memset(t->granted, 0, proto_bitmap_nbytes(t->piece_count));
    for (uint32_t i = 0; i < t->piece_count; i++) t->source[i] = -1;
    t->n_have = 0;
    if (t->ref) {
        peer_store_blob_release(d->store, t->ref);
        t->ref = NULL;
    }
    local_reads_drop_refs(t);
    if (d->o.n_schedulers && !t->origin_mode)
        task_register(t);
    else
        task_open(t);
}

static void start_verify(struct task *t)
{
    if (t->state != T_RUNNING) return;
    t->state = T_VERIFYING;
    struct verify_job *j = calloc(1, sizeof(*j));
    if (j) j->source = malloc((t->piece_count ? t->piece_count : 1) * sizeof(int16_t));
    if (!j || !j->source) {
        free(j);
        task_fail(t, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    memcpy(j->source, t->source, t->piece_count * sizeof(int16_t));
    j->t = t;
    if (t->oc) {
        j->reg = t->oc->reg;
        snprintf(j->repo, sizeof(j->repo), "%s", t->repo);
    }
    t->work_refs++;
    if (pd_queue_work(t->d, j, verify_work, verify_done)) {
        t->work_refs--;
        free(j->source);
        free(j);
        task_fail(t, PROTO_E_INTERNAL, "cannot queue work");
    }
}

/* ---- periodic ---- */

void task_tick(peer_daemon *d)
{
    uint64_t now = pd_now(d);
    struct task *next;
    for (struct task *t = d->tasks; t; t = next) {
        next = t->next;
        if (t->state == T_REGISTERING && now >= t->register_deadline_ms) {
            cf_info("task %s: no answer from the scheduler, fetching from the origin", t->id);
            t->origin_mode = 1;
            if (!t->piece_size) t->piece_size = proto_piece_size_for(t->length);
            task_open(t);
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
            sched_client_send(d, t->sched_idx, &m);
        }
        /* (re-)register when the scheduler went away and came back, or parents ran out */
        if (d->o.n_schedulers && !t->registered && now >= t->reask_at_ms &&
            !(t->state == T_RUNNING && t->origin_mode && t->length <= d->o.small_blob)) {
            t->reask_at_ms = now + 2000;
            sched_client_register(d, t);
        }
        if (t->state != T_RUNNING) continue;
        if (!t->origin_mode && now - t->last_progress_ms > d->o.mesh_stall_ms &&
            (t->readers || t->whole)) {
            cf_info("task %s: no progress from the mesh for %u ms, going back to source", t->id,
                    d->o.mesh_stall_ms);
            t->origin_mode = 1;
        } else if (t->registered && t->n_inflight == 0 && now >= t->reask_at_ms &&
                   (t->readers || t->whole)) {
            /* parents ran out: ask again (a repeated REGISTER_TASK = new schedule) */
            t->reask_at_ms = now + 1000;
            proto_msg m = {.type = PROTO_MSG_REGISTER_TASK};
            m.u.register_task.task_id = t->id;
            m.u.register_task.content_length = t->length;
            m.u.register_task.origin = t->origin[0] ? t->origin : t->id;
            sched_client_send(d, t->sched_idx, &m);
        }
        task_pump(t);
    }
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
}
