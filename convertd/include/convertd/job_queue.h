/* chunkfly-convertd's durable job queue (docs/convertd.md, "The queue's guarantees").
 *
 * Every job lives in an LMDB database (<db_dir>/data.mdb; key: the job id, 8 bytes big-endian;
 * value: the job as compact JSON) and in memory. Every state change is committed (default LMDB
 * sync: it survives a kill -9 and a power cut) before it is visible to anyone, so:
 *  - a job accepted (cvd_queue_submit returned) survives restarts;
 *  - a job that was PROCESSING when the process died is found PROCESSING at cvd_queue_open and
 *    put back to QUEUED with a backoff (a crash counts as one failed attempt), or FAILED after
 *    max_attempts;
 *  - a conversion that fails with a transient error (registry unreachable, 5xx) is retried the
 *    same way; a final error (auth, not found, malformed image) fails the job at once;
 *  - single flight: a submit for a source (and target) that has a QUEUED or PROCESSING job
 *    joins that job (same id) instead of adding one;
 *  - at most max_active jobs QUEUED + PROCESSING: more submits fail with -EAGAIN;
 *  - finished jobs (COMPLETED, FAILED) are kept `keep_seconds` (24 h) for the task list, and
 *    at most max_finished of them.
 * Backoff: backoff_ms * 2^(attempts-1), capped at backoff_max_ms.
 *
 * Threads: every function is thread-safe (one mutex; LMDB commits happen under it, on the
 * calling thread: never call on an event loop, except cvd_queue_get/list/stats, which only
 * read memory). Workers block in cvd_queue_take. `notify` runs on the thread that changed a
 * job (a worker or a submitter), without the mutex held.
 * Errors: 0 or a negative errno with err set (-EIO/-ENOSPC from LMDB, -ENOMEM, -EAGAIN queue
 * full, -ENOENT unknown id, -ECANCELED queue stopped). */
#ifndef CONVERTD_JOB_QUEUE_H
#define CONVERTD_JOB_QUEUE_H

#include <stdint.h>

#include "cf/error.h"
#include "convertd/request.h"

enum cvd_job_status { CVD_QUEUED = 0, CVD_PROCESSING, CVD_COMPLETED, CVD_FAILED };

typedef struct cvd_job {
    uint64_t id;
    char source[CVD_REF_MAX], target[CVD_REF_MAX];
    enum cvd_job_status status;
    char reason[512];                /* FAILED: why; COMPLETED: "" or "already converted" */
    char digest[72];                 /* COMPLETED: the target manifest's digest, when known */
    int64_t created_ms;              /* unix time, ms */
    int64_t started_ms, finished_ms; /* 0 = not yet */
    int64_t next_try_ms;             /* QUEUED: not taken before this time */
    unsigned attempts;               /* attempts started so far */
    double seconds;                  /* duration of the last attempt */
} cvd_job;

typedef struct cvd_queue_opts {
    const char *db_dir;        /* created if missing */
    unsigned max_active;       /* QUEUED + PROCESSING; 0 = 1000 */
    unsigned max_attempts;     /* 0 = 5 */
    uint64_t backoff_ms;       /* 0 = 2000 */
    uint64_t backoff_max_ms;   /* 0 = 60000 */
    uint64_t keep_seconds;     /* finished jobs listed this long; 0 = 24 h */
    unsigned max_finished;     /* 0 = 1000 */
    void (*notify)(void *ctx); /* a job changed state; may be NULL */
    void *notify_ctx;
} cvd_queue_opts;

typedef struct cvd_queue cvd_queue;

typedef struct cvd_queue_stats {
    uint64_t queued, running;    /* now */
    uint64_t done, failed;       /* since start (attempts that finished the job) */
    uint64_t retries, recovered; /* attempts re-queued; jobs found PROCESSING at open */
    double seconds_sum;          /* over finished attempts (done, failed and retried) */
    uint64_t seconds_count;
} cvd_queue_stats;

/* Opens (creates) the queue and recovers interrupted jobs. *out freed with cvd_queue_close. */
int cvd_queue_open(const cvd_queue_opts *o, cvd_queue **out, cf_err *err);
/* Wakes every worker blocked in cvd_queue_take (they get -ECANCELED); later takes fail too. */
void cvd_queue_stop(cvd_queue *q);
/* After every worker returned. */
void cvd_queue_close(cvd_queue *q);

/* Adds a job for source -> target, or joins the active job of the same source and target
 * (*joined = 1).
 * *id = the job's id. */
int cvd_queue_submit(cvd_queue *q, const char *source, const char *target, uint64_t *id,
                     int *joined, cf_err *err);
/* Blocks until a QUEUED job is due, marks it PROCESSING (attempts + 1, committed) and copies it
 * to *job. -ECANCELED after cvd_queue_stop. */
int cvd_queue_take(cvd_queue *q, cvd_job *job, cf_err *err);
/* Ends the attempt of job `id`: rc 0 -> COMPLETED (digest, reason may be NULL); rc < 0 ->
 * QUEUED again with backoff when `transient` and attempts remain, else FAILED with reason. */
int cvd_queue_finish(cvd_queue *q, uint64_t id, int rc, int transient, const char *digest,
                     const char *reason, double seconds, cf_err *err);

/* A copy of job `id`: 0, or -ENOENT. */
int cvd_queue_get(cvd_queue *q, uint64_t id, cvd_job *out);
/* Every listed job, oldest first: *jobs malloc'd (free it), *n of them. */
int cvd_queue_list(cvd_queue *q, cvd_job **jobs, size_t *n);
void cvd_queue_stats_get(cvd_queue *q, cvd_queue_stats *out);

const char *cvd_job_status_name(enum cvd_job_status s); /* "QUEUED", "PROCESSING", ... */

#endif
