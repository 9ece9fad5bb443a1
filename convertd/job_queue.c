/* The durable job queue of chunkfly-convertd (job_queue.h): LMDB + an in-memory copy. */
#include "convertd/job_queue.h"

#include <jansson.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cf/file_io.h"
#include "cf/log.h"

#define MAP_SIZE (256ull << 20) /* virtual; jobs are < 2 KiB each and bounded in number */

struct cvd_queue {
    cvd_queue_opts o;
    MDB_env *env;
    MDB_dbi dbi;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cvd_job *jobs; /* by id, ascending */
    size_t n, cap;
    uint64_t next_id;
    int stopped;
    cvd_queue_stats st;
};

const char *cvd_job_status_name(enum cvd_job_status s)
{
    switch (s) {
    case CVD_QUEUED:
        return "QUEUED";
    case CVD_PROCESSING:
        return "PROCESSING";
    case CVD_COMPLETED:
        return "COMPLETED";
    case CVD_FAILED:
        return "FAILED";
    }
    return "?";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int mdb_err(cf_err *err, int rc, const char *what)
{
    int code = rc == MDB_MAP_FULL ? -ENOSPC : (rc > 0 && rc < 200) ? -rc : -EIO;
    return cf_err_set(err, code, "job queue: %s: %s", what, mdb_strerror(rc));
}

static void key_of(uint64_t id, uint8_t k[8])
{
    for (int i = 7; i >= 0; i--, id >>= 8) k[i] = (uint8_t)id;
}

/* ---- records: compact JSON, so `mdb_dump` shows them and fields can be added ---- */
static char *encode(const cvd_job *j)
{
    json_t *o =
        json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:f}", "id",
                  (json_int_t)j->id, "source", j->source, "target", j->target, "status",
                  cvd_job_status_name(j->status), "reason", j->reason, "digest", j->digest,
                  "created_ms", (json_int_t)j->created_ms, "started_ms", (json_int_t)j->started_ms,
                  "finished_ms", (json_int_t)j->finished_ms, "next_try_ms",
                  (json_int_t)j->next_try_ms, "attempts", (int)j->attempts, "seconds", j->seconds);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static int decode(const MDB_val *v, cvd_job *j)
{
    memset(j, 0, sizeof(*j));
    json_t *o = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    if (!o) return -EBADMSG;
    const char *src = json_string_value(json_object_get(o, "source"));
    const char *tgt = json_string_value(json_object_get(o, "target"));
    const char *st = json_string_value(json_object_get(o, "status"));
    const char *rs = json_string_value(json_object_get(o, "reason"));
    const char *dg = json_string_value(json_object_get(o, "digest"));
    json_int_t id = json_integer_value(json_object_get(o, "id"));
    int rc = -EBADMSG;
    if (!src || !tgt || !st || id <= 0 || strlen(src) >= sizeof(j->source) ||
        strlen(tgt) >= sizeof(j->target))
        goto out;
    j->id = (uint64_t)id;
    snprintf(j->source, sizeof(j->source), "%s", src);
    snprintf(j->target, sizeof(j->target), "%s", tgt);
    snprintf(j->reason, sizeof(j->reason), "%s", rs ? rs : "");
    snprintf(j->digest, sizeof(j->digest), "%s", dg ? dg : "");
    enum cvd_job_status all[] = {CVD_QUEUED, CVD_PROCESSING, CVD_COMPLETED, CVD_FAILED};
    for (int i = 0; i < 4; i++)
        if (!strcmp(st, cvd_job_status_name(all[i]))) {
            j->status = all[i];
            rc = 0;
        }
    j->created_ms = json_integer_value(json_object_get(o, "created_ms"));
    j->started_ms = json_integer_value(json_object_get(o, "started_ms"));
    j->finished_ms = json_integer_value(json_object_get(o, "finished_ms"));
    j->next_try_ms = json_integer_value(json_object_get(o, "next_try_ms"));
    json_int_t a = json_integer_value(json_object_get(o, "attempts"));
    j->attempts = a > 0 && a < 1000000 ? (unsigned)a : 0;
    j->seconds = json_number_value(json_object_get(o, "seconds"));
out:
    json_decref(o);
    return rc;
}

/* Commits job j (put) or its deletion; under q->mu. */
static int store(cvd_queue *q, const cvd_job *put, const uint64_t *del, size_t ndel, cf_err *err)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(q->env, NULL, 0, &txn);
    if (rc) return mdb_err(err, rc, "begin");
    uint8_t k[8];
    MDB_val kv = {8, k};
    if (put) {
        char *s = encode(put);
        if (!s) {
            mdb_txn_abort(txn);
            return cf_err_set(err, -ENOMEM, "out of memory");
        }
        key_of(put->id, k);
        MDB_val v = {strlen(s), s};
        rc = mdb_put(txn, q->dbi, &kv, &v, 0);
        free(s);
    }
    for (size_t i = 0; !rc && i < ndel; i++) {
        key_of(del[i], k);
        rc = mdb_del(txn, q->dbi, &kv, NULL);
        if (rc == MDB_NOTFOUND) rc = 0;
    }
    if (rc) {
        mdb_txn_abort(txn);
        return mdb_err(err, rc, "write");
    }
    rc = mdb_txn_commit(txn);
    return rc ? mdb_err(err, rc, "commit") : 0;
}

static cvd_job *find(cvd_queue *q, uint64_t id)
{
    size_t lo = 0, hi = q->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (q->jobs[mid].id == id) return &q->jobs[mid];
        if (q->jobs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int append(cvd_queue *q, const cvd_job *j)
{
    if (q->n == q->cap) {
        size_t c = q->cap ? q->cap * 2 : 64;
        cvd_job *p = realloc(q->jobs, c * sizeof(*p));
        if (!p) return -ENOMEM;
        q->jobs = p;
        q->cap = c;
    }
    q->jobs[q->n++] = *j;
    return 0;
}

static uint64_t backoff(const cvd_queue *q, unsigned attempts)
{
    uint64_t b = q->o.backoff_ms;
    for (unsigned i = 1; i < attempts && b < q->o.backoff_max_ms; i++) b *= 2;
    return b < q->o.backoff_max_ms ? b : q->o.backoff_max_ms;
}

static int is_active(const cvd_job *j)
{
    return j->status == CVD_QUEUED || j->status == CVD_PROCESSING;
}

/* Drops finished jobs past their listing time, and the oldest beyond max_finished; under mu.
 * A failed deletion is only logged: the rows are dropped again next time. */
static void prune(cvd_queue *q)
{
    int64_t limit = now_ms() - (int64_t)q->o.keep_seconds * 1000;
    size_t finished = 0;
    for (size_t i = 0; i < q->n; i++) finished += !is_active(&q->jobs[i]);
    uint64_t del[64];
    size_t nd = 0, w = 0;
    for (size_t i = 0; i < q->n; i++) {
        cvd_job *j = &q->jobs[i];
        int drop =
            !is_active(j) && nd < 64 && (j->finished_ms < limit || finished > q->o.max_finished);
        if (drop) {
            del[nd++] = j->id;
            finished--;
        } else {
            q->jobs[w++] = *j;
        }
    }
    if (!nd) return;
    q->n = w;
    cf_err e = {0};
    if (store(q, NULL, del, nd, &e) < 0) cf_warn("%s", e.msg);
}

int cvd_queue_open(const cvd_queue_opts *o, cvd_queue **out, cf_err *err)
{
    *out = NULL;
    cvd_queue *q = calloc(1, sizeof(*q));
    if (!q) return cf_err_set(err, -ENOMEM, "out of memory");
    q->o = *o;
    if (!q->o.max_active) q->o.max_active = 1000;
    if (!q->o.max_attempts) q->o.max_attempts = 5;
    if (!q->o.backoff_ms) q->o.backoff_ms = 2000;
    if (!q->o.backoff_max_ms) q->o.backoff_max_ms = 60000;
    if (!q->o.keep_seconds) q->o.keep_seconds = 24 * 3600;
    if (!q->o.max_finished) q->o.max_finished = 1000;
    q->next_id = 1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc;
    if (cf_mkdir_p(o->db_dir, 0700) < 0) {
        rc = cf_err_set(err, -errno, "job queue %s: %s", o->db_dir, strerror(errno));
        goto fail;
    }
    if ((rc = mdb_env_create(&q->env))) {
        rc = mdb_err(err, rc, "create");
        goto fail;
    }
    mdb_env_set_mapsize(q->env, MAP_SIZE);
    mdb_env_set_maxdbs(q->env, 2);
    if ((rc = mdb_env_open(q->env, o->db_dir, MDB_NOTLS, 0600))) {
        rc = mdb_err(err, rc, o->db_dir);
        goto fail;
    }
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    if ((rc = mdb_txn_begin(q->env, NULL, 0, &txn))) {
        rc = mdb_err(err, rc, "begin");
        goto fail;
    }
    rc = mdb_dbi_open(txn, "jobs", MDB_CREATE, &q->dbi);
    if (!rc) rc = mdb_cursor_open(txn, q->dbi, &cur);
    MDB_val k, v;
    int mrc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (!rc && mrc == 0) {
        cvd_job j;
        if (decode(&v, &j) == 0) {
            if (append(q, &j) < 0) {
                rc = ENOMEM;
                break;
            }
            if (j.id >= q->next_id) q->next_id = j.id + 1;
        } else {
            cf_warn("job queue: a record of %zu bytes does not decode; ignored", v.mv_size);
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur) mdb_cursor_close(cur);
    if (!rc && mrc != MDB_NOTFOUND) rc = mrc;
    if (!rc)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc) {
        rc = rc == ENOMEM ? cf_err_set(err, -ENOMEM, "out of memory") : mdb_err(err, rc, "load");
        goto fail;
    }
    /* Jobs that were running when the process died: one attempt spent, retried after the
     * backoff (or failed when none remain). */
    int64_t now = now_ms();
    for (size_t i = 0; i < q->n; i++) {
        cvd_job *j = &q->jobs[i];
        if (j->status != CVD_PROCESSING) continue;
        q->st.recovered++;
        if (j->attempts >= q->o.max_attempts) {
            j->status = CVD_FAILED;
            j->finished_ms = now;
            snprintf(j->reason, sizeof(j->reason),
                     "interrupted %u times (the service stopped while converting)", j->attempts);
        } else {
            j->status = CVD_QUEUED;
            j->next_try_ms = now + (int64_t)backoff(q, j->attempts);
            snprintf(j->reason, sizeof(j->reason), "attempt %u interrupted (service restart)",
                     j->attempts);
        }
        cf_info("job %llu (%s): was running at the last stop: %s", (unsigned long long)j->id,
                j->source, j->status == CVD_FAILED ? "failed" : "queued again");
        if ((rc = store(q, j, NULL, 0, err)) < 0) goto fail;
    }
    prune(q);
    *out = q;
    return 0;
fail:
    if (q->env) mdb_env_close(q->env);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->jobs);
    free(q);
    return rc;
}

void cvd_queue_stop(cvd_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->stopped = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void cvd_queue_close(cvd_queue *q)
{
    if (!q) return;
    mdb_env_close(q->env);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->jobs);
    free(q);
}

static void notify(cvd_queue *q)
{
    if (q->o.notify) q->o.notify(q->o.notify_ctx);
}

static int add_job(cvd_queue *q, cvd_job *j, cf_err *err)
{
    j->id = q->next_id;
    j->created_ms = now_ms();
    int rc = store(q, j, NULL, 0, err);
    if (rc < 0) return rc;
    if (append(q, j) < 0) return cf_err_set(err, -ENOMEM, "out of memory");
    q->next_id++;
    return 0;
}

int cvd_queue_submit(cvd_queue *q, const char *source, const char *target, uint64_t *id,
                     int *joined, cf_err *err)
{
    if (strlen(source) >= CVD_REF_MAX || strlen(target) >= CVD_REF_MAX)
        return cf_err_set(err, -EINVAL, "reference too long");
    pthread_mutex_lock(&q->mu);
    size_t active = 0;
    *joined = 0;
    for (size_t i = 0; i < q->n; i++) {
        cvd_job *j = &q->jobs[i];
        if (!is_active(j)) continue;
        active++;
        if (!strcmp(j->source, source) && !strcmp(j->target, target)) {
            *id = j->id;
            *joined = 1;
            pthread_mutex_unlock(&q->mu);
            return 0;
        }
    }
    int rc;
    if (active >= q->o.max_active) {
        rc = cf_err_set(err, -EAGAIN, "the queue is full (%u jobs queued or running)",
                        q->o.max_active);
    } else {
        cvd_job j = {0};
        snprintf(j.source, sizeof(j.source), "%s", source);
        snprintf(j.target, sizeof(j.target), "%s", target);
        j.status = CVD_QUEUED;
        rc = add_job(q, &j, err);
        if (rc == 0) {
            *id = j.id;
            pthread_cond_signal(&q->cv);
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (rc == 0) notify(q);
    return rc;
}

int cvd_queue_take(cvd_queue *q, cvd_job *job, cf_err *err)
{
    pthread_mutex_lock(&q->mu);
    for (;;) {
        if (q->stopped) {
            pthread_mutex_unlock(&q->mu);
            return cf_err_set(err, -ECANCELED, "stopping");
        }
        int64_t now = now_ms(), next = INT64_MAX;
        cvd_job *pick = NULL;
        for (size_t i = 0; i < q->n; i++) { /* oldest due job first */
            cvd_job *j = &q->jobs[i];
            if (j->status != CVD_QUEUED) continue;
            if (j->next_try_ms <= now) {
                pick = j;
                break;
            }
            if (j->next_try_ms < next) next = j->next_try_ms;
        }
        if (pick) {
            cvd_job c = *pick;
            c.status = CVD_PROCESSING;
            c.attempts++;
            c.started_ms = now;
            int rc = store(q, &c, NULL, 0, err);
            if (rc < 0) {
                pthread_mutex_unlock(&q->mu);
                return rc;
            }
            *pick = c;
            *job = c;
            q->st.running++;
            pthread_mutex_unlock(&q->mu);
            notify(q);
            return 0;
        }
        if (next == INT64_MAX) {
            pthread_cond_wait(&q->cv, &q->mu);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait = next - now;
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&q->cv, &q->mu, &ts);
        }
    }
}

int cvd_queue_finish(cvd_queue *q, uint64_t id, int rc, int transient, const char *digest,
                     const char *reason, double seconds, cf_err *err)
{
    pthread_mutex_lock(&q->mu);
    cvd_job *j = find(q, id);
    if (!j || j->status != CVD_PROCESSING) {
        pthread_mutex_unlock(&q->mu);
        return cf_err_set(err, -ENOENT, "job %llu is not running", (unsigned long long)id);
    }
    cvd_job c = *j;
    int64_t now = now_ms();
    c.seconds = seconds;
    snprintf(c.reason, sizeof(c.reason), "%s", reason ? reason : "");
    int retry = 0;
    if (rc == 0) {
        c.status = CVD_COMPLETED;
        snprintf(c.digest, sizeof(c.digest), "%s", digest ? digest : "");
    } else if (transient && c.attempts < q->o.max_attempts) {
        c.status = CVD_QUEUED;
        c.next_try_ms = now + (int64_t)backoff(q, c.attempts);
        retry = 1;
    } else {
        c.status = CVD_FAILED;
    }
    if (c.status != CVD_QUEUED) c.finished_ms = now;
    int src = store(q, &c, NULL, 0, err);
    if (src == 0) {
        *j = c;
        q->st.running--;
        q->st.seconds_sum += seconds;
        q->st.seconds_count++;
        if (retry)
            q->st.retries++;
        else if (rc == 0)
            q->st.done++;
        else
            q->st.failed++;
        if (retry) pthread_cond_signal(&q->cv);
        if (!retry) prune(q);
    }
    pthread_mutex_unlock(&q->mu);
    if (src == 0) notify(q);
    return src;
}

int cvd_queue_get(cvd_queue *q, uint64_t id, cvd_job *out)
{
    pthread_mutex_lock(&q->mu);
    cvd_job *j = find(q, id);
    if (j) *out = *j;
    pthread_mutex_unlock(&q->mu);
    return j ? 0 : -ENOENT;
}

int cvd_queue_list(cvd_queue *q, cvd_job **jobs, size_t *n)
{
    pthread_mutex_lock(&q->mu);
    *n = q->n;
    *jobs = malloc((q->n ? q->n : 1) * sizeof(**jobs));
    if (*jobs) memcpy(*jobs, q->jobs, q->n * sizeof(**jobs));
    pthread_mutex_unlock(&q->mu);
    return *jobs ? 0 : -ENOMEM;
}

void cvd_queue_stats_get(cvd_queue *q, cvd_queue_stats *out)
{
    pthread_mutex_lock(&q->mu);
    *out = q->st;
    out->queued = 0;
    for (size_t i = 0; i < q->n; i++) out->queued += q->jobs[i].status == CVD_QUEUED;
    pthread_mutex_unlock(&q->mu);
}
