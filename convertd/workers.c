/* chunkfly-convertd's worker threads (workers.h). */
#include "convertd/workers.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cf/file_io.h"
#include "cf/log.h"
#include "client/convert.h"
#include "proto/registry_client.h"

/* what client_convert writes into the target manifest (docs/convert.md, step 6) */

struct worker {
    struct cvd_workers *ws;
    unsigned idx;
    pthread_t th;
    int started;
    char dir[4096];
};

struct cvd_workers {
    cvd_workers_opts o;
    unsigned n;
    struct worker *w;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int registry_for(const cvd_workers_opts *o, const char *host, proto_registry **out,
                        cf_err *err)
{
    proto_registry_opts ro = {.docker_config = o->docker_config};
    for (size_t i = 0; o->plain_http && o->plain_http[i]; i++)
        if (!strcmp(o->plain_http[i], host)) ro.scheme = PROTO_REGISTRY_SCHEME_HTTP;
    return proto_registry_new(host, &ro, out, err);
}

int cvd_already_converted(const char *source, const char *target, const cvd_workers_opts *o,
                          cf_err *err)
{
    proto_image_ref sref, tref;
    int rc = proto_image_ref_parse(source, &sref, err);
    if (rc == 0) rc = proto_image_ref_parse(target, &tref, err);
    if (rc < 0) return rc;
    proto_registry *tr = NULL, *sr = NULL;
    char rec[72] = "", sd[72];
    /* what the target records (a Nydus manifest, or the index of a multi-platform source) */
    if ((rc = registry_for(o, tref.registry, &tr, err)) < 0) goto out;
    rc = client_convert_recorded_source(tr, tref.repo, proto_image_ref_reference(&tref), rec, err);
    if (rc < 0 || !rec[0]) goto out; /* rc 0: nothing there, or something else: convert */
    if ((rc = registry_for(o, sref.registry, &sr, err)) < 0) goto out;
    if ((rc = client_convert_source_digest(sr, &sref, o->platform, sd, err)) < 0) goto out;
    rc = !strcmp(sd, rec);
out:
    proto_registry_free(tr);
    proto_registry_free(sr);
    return rc;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    const cvd_workers_opts *o = &w->ws->o;
    for (;;) {
        cvd_job j;
        cf_err e = {0};
        int rc = cvd_queue_take(o->queue, &j, &e);
        if (rc == -ECANCELED) break;
        if (rc < 0) {
            cf_error("worker %u: %s", w->idx, e.msg);
            struct timespec ts = {1, 0}; /* an LMDB error: don't spin */
            nanosleep(&ts, NULL);
            continue;
        }
        cf_info("job %llu: converting %s -> %s (attempt %u, worker %u)", (unsigned long long)j.id,
                j.source, j.target, j.attempts, w->idx);
        double t0 = mono_s();
        client_convert_result res = {0};
        const char *why = NULL;
        rc = cvd_already_converted(j.source, j.target, o, &e);
        if (rc == 1) {
            why = "already converted";
            rc = 0;
        } else {
            if (rc < 0) /* the conversion itself says what is wrong, if anything */
                cf_debug("job %llu: converted-before check: %s", (unsigned long long)j.id, e.msg);
            cf_err_clear(&e);
            client_convert_opts co = {.source = j.source,
                                      .target = j.target,
                                      .platform = o->platform,
                                      .docker_config = o->docker_config,
                                      .work_dir = w->dir,
                                      .workers = o->convert_workers,
                                      .threads = o->threads};
            rc = client_convert(&co, &res, &e);
        }
        double secs = mono_s() - t0;
        int transient = rc < 0 && proto_registry_error_transient(rc);
        if (rc == 0)
            cf_info("job %llu: %s -> %s %s in %.2f s (%u layers, %u built)",
                    (unsigned long long)j.id, j.source, j.target, why ? why : res.manifest_digest,
                    secs, res.layers, res.built);
        else
            cf_warn("job %llu: %s failed (attempt %u%s): %s", (unsigned long long)j.id, j.source,
                    j.attempts, transient ? ", will retry" : "", cf_err_str(&e, rc));
        char reason[512];
        snprintf(reason, sizeof(reason), "%s", rc < 0 ? cf_err_str(&e, rc) : why ? why : "");
        cf_err fe = {0};
        if (cvd_queue_finish(o->queue, j.id, rc, transient, why ? NULL : res.manifest_digest,
                             reason, secs, &fe) < 0)
            cf_error("job %llu: %s", (unsigned long long)j.id, fe.msg);
    }
    return NULL;
}

int cvd_workers_start(const cvd_workers_opts *o, cvd_workers **out, cf_err *err)
{
    cvd_workers *ws = calloc(1, sizeof(*ws));
    if (!ws) return cf_err_set(err, -ENOMEM, "out of memory");
    ws->o = *o;
    ws->n = o->n ? o->n : 2;
    ws->w = calloc(ws->n, sizeof(*ws->w));
    if (!ws->w) {
        free(ws);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    int rc = 0;
    for (unsigned i = 0; i < ws->n && rc == 0; i++) {
        struct worker *w = &ws->w[i];
        w->ws = ws;
        w->idx = i;
        if ((size_t)snprintf(w->dir, sizeof(w->dir), "%s/worker-%u", o->work_dir, i) >=
            sizeof(w->dir) - 400) {
            rc = cf_err_set(err, -ENAMETOOLONG, "work dir %s: path too long", o->work_dir);
            break;
        }
        if (cf_mkdir_p(w->dir, 0700) < 0) {
            rc = cf_err_set(err, -errno, "work dir %s: %s", w->dir, strerror(errno));
            break;
        }
        int prc = pthread_create(&w->th, NULL, run, w);
        if (prc) {
            rc = cf_err_set(err, -prc, "starting worker %u: %s", i, strerror(prc));
            break;
        }
        w->started = 1;
    }
    if (rc < 0) {
        cvd_queue_stop(o->queue);
        cvd_workers_join(ws);
        return rc;
    }
    *out = ws;
    return 0;
}

void cvd_workers_join(cvd_workers *ws)
{
    if (!ws) return;
    for (unsigned i = 0; i < ws->n; i++)
        if (ws->w[i].started) pthread_join(ws->w[i].th, NULL);
    free(ws->w);
    free(ws);
}
