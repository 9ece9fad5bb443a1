/* chunkfly-convertd's workers: threads that take jobs from the queue and convert them with
 * client_convert() (client/convert.h), one job per worker at a time.
 *
 * Each worker has its own work dir <work_dir>/worker-<i> (client_convert allows one conversion
 * per work dir: its lock). Before converting, a worker asks the target registry whether the
 * target already is this source converted (its manifest's
 * containerd.io/snapshot/nydus-source-digest equals the source manifest's digest, the host
 * platform's for an index): then the job completes with reason "already converted" and nothing
 * is pulled or pushed. Errors of client_convert that may pass later (registry unreachable, 5xx;
 * proto_registry_error_transient) retry the job with backoff; the others fail it.
 *
 * Threads: cvd_workers_start starts n threads; cvd_workers_join waits for them after
 * cvd_queue_stop (a running conversion finishes first). */
#ifndef CONVERTD_WORKERS_H
#define CONVERTD_WORKERS_H

#include "cf/error.h"
#include "convertd/job_queue.h"

typedef struct cvd_workers_opts {
    cvd_queue *queue;
    unsigned n;                    /* threads; 0 = 2 */
    const char *work_dir;          /* required */
    const char *docker_config;     /* NULL = the default docker config */
    const char *const *plain_http; /* hosts spoken to over http (NULL-terminated), may be NULL */
    const char *platform;          /* for an index; NULL = this host's */
    unsigned convert_workers;      /* client_convert's layer workers; 0 = its default */
    unsigned threads;              /* builder threads per layer; 0 = one per core */
} cvd_workers_opts;

typedef struct cvd_workers cvd_workers;

/* Strings in o must outlive the workers. Returns 0 or a negative errno (thread creation). */
int cvd_workers_start(const cvd_workers_opts *o, cvd_workers **out, cf_err *err);
void cvd_workers_join(cvd_workers *w);

/* [blocking] 1 when `target` exists and its nydus-source-digest annotation is `source`'s
 * manifest digest; 0 when not (no target, other source, not a Nydus image); negative errno
 * when the registries could not be asked. */
int cvd_already_converted(const char *source, const char *target, const cvd_workers_opts *o,
                          cf_err *err);

#endif
