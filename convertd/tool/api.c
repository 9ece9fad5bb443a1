/* chunkfly-convertd's HTTP API (api.h). */
#include "api.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cf/digest.h"
#include "cf/log.h"
#include "convertd/request.h"
#include "proto/http_server.h"

#define BODY_MAX (1u << 20)

/* A POST whose jobs are being submitted (thread pool), then, with ?sync=true, waiting for them
 * to finish. `res` becomes NULL when the client goes away. */
struct pending {
    cvd_api *a;
    cvd_queue *q; /* a's queue: submit_work must not touch a (it may be gone) */
    proto_http_res *res;
    int sync;
    cvd_request rq;
    char (*targets)[CVD_REF_MAX]; /* per item; "" = skipped (the source is a target) */
    uint64_t *ids;
    int *joined;
    size_t n_jobs;
    int rc;
    cf_err err;
    uv_work_t work;
    struct pending *next; /* in a->waiting */
};

struct cvd_api {
    uv_loop_t *loop;
    cvd_api_opts o;
    proto_http_server *srv;
    uv_async_t async;
    struct pending *waiting;
    uint8_t auth_hash[CF_DIGEST_LEN];
    uint64_t unauthorized, bad_requests, requests_ok;
};

static void reply_json(proto_http_res *res, int status, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!s) {
        proto_http_respond(res, 500, "application/json", "{}", 2);
        return;
    }
    proto_http_respond(res, status, "application/json", s, strlen(s));
    free(s);
}

static void reply_err(proto_http_res *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_err(proto_http_res *res, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_json(res, status, json_pack("{s:s}", "error", msg));
}

static void iso_time(int64_t ms, char out[32])
{
    if (ms <= 0) {
        out[0] = 0;
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *job_json(const cvd_job *j)
{
    char c[32], s[32], f[32];
    iso_time(j->created_ms, c);
    iso_time(j->started_ms, s);
    iso_time(j->finished_ms, f);
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "id", (json_int_t)j->id,
                     "source", j->source, "target", j->target, "status",
                     cvd_job_status_name(j->status), "reason", j->reason, "digest", j->digest,
                     "created", c, "started", s, "finished", f, "attempts", (int)j->attempts);
}

/* ---- POST /api/v1/conversions ---- */

/* The Authorization header equals the configured value; compared as SHA-256 digests with
 * CRYPTO_memcmp, so neither the length nor a prefix of the secret shows in the timing. */
static int authorized(cvd_api *a, const proto_http_req *req)
{
    if (!a->o.auth_header || !a->o.auth_header[0]) return req->from_loopback;
    const char *h = proto_http_header_get(req, "Authorization");
    uint8_t got[CF_DIGEST_LEN];
    if (cf_sha256(h ? h : "", h ? strlen(h) : 0, got) < 0) return 0;
    return h && CRYPTO_memcmp(got, a->auth_hash, sizeof(got)) == 0;
}

static void pending_free(struct pending *p)
{
    cvd_request_free(&p->rq);
    free(p->targets);
    free(p->ids);
    free(p->joined);
    free(p);
}

static void on_abort(proto_http_res *res, void *arg)
{
    (void)res;
    ((struct pending *)arg)->res = NULL;
}

/* Thread pool: the LMDB commits of the new jobs. */
static void submit_work(uv_work_t *w)
{
    struct pending *p = w->data;
    for (size_t i = 0; i < p->rq.n_items; i++) {
        p->ids[i] = 0;
        if (!p->targets[i][0]) continue;
        int rc = cvd_queue_submit(p->q, p->rq.items[i].source, p->targets[i], &p->ids[i],
                                  &p->joined[i], &p->err);
        if (rc < 0) {
            p->rc = rc;
            return;
        }
        p->n_jobs++;
    }
}

/* All of p's jobs finished? Fills the answer's task list. */
static int pending_state(struct pending *p, json_t *tasks, int *all_done, int *all_ok)
{
    *all_done = *all_ok = 1;
    for (size_t i = 0; i < p->rq.n_items; i++) {
        if (!p->ids[i]) {
            if (tasks)
                json_array_append_new(tasks,
                                      json_pack("{s:s, s:s}", "source", p->rq.items[i].source,
                                                "skipped", "the source is a target (tag suffix)"));
            continue;
        }
        cvd_job j;
        if (cvd_queue_get(p->q, p->ids[i], &j) < 0) continue; /* pruned: long done */
        if (j.status == CVD_QUEUED || j.status == CVD_PROCESSING) *all_done = 0;
        if (j.status == CVD_FAILED) *all_ok = 0;
        if (tasks) {
            json_t *o = job_json(&j);
            json_object_set_new(o, "joined", json_boolean(p->joined[i]));
            json_array_append_new(tasks, o);
        }
    }
    return 0;
}

static void answer(struct pending *p, int status)
{
    json_t *tasks = json_array();
    int done, ok;
    pending_state(p, tasks, &done, &ok);
    reply_json(p->res, status,
               json_pack("{s:o, s:I}", "tasks", tasks, "ignored", (json_int_t)p->rq.ignored));
}

static void check_waiting(cvd_api *a)
{
    struct pending **pp = &a->waiting;
    while (*pp) {
        struct pending *p = *pp;
        int done = 1, ok = 1;
        if (p->res) pending_state(p, NULL, &done, &ok);
        if (p->res && !done) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        if (p->res) answer(p, ok ? 200 : 500);
        pending_free(p);
    }
}

static void submit_done(uv_work_t *w, int status)
{
    struct pending *p = w->data;
    cvd_api *a = p->a;
    if (!p->res || status == UV_ECANCELED) {
        pending_free(p);
        return;
    }
    if (p->rc == -EAGAIN) {
        proto_http_set_header(p->res, "Retry-After", "30");
        reply_err(p->res, 503, "%s", p->err.msg);
        pending_free(p);
        return;
    }
    if (p->rc < 0) {
        reply_err(p->res, 500, "%s", cf_err_str(&p->err, p->rc));
        pending_free(p);
        return;
    }
    for (size_t i = 0; i < p->rq.n_items; i++)
        if (p->ids[i])
            cf_info("job %llu: %s %s -> %s", (unsigned long long)p->ids[i],
                    p->joined[i] ? "joined by a trigger for" : "queued:", p->rq.items[i].source,
                    p->targets[i]);
    a->requests_ok++;
    if (!p->sync) {
        answer(p, 200);
        pending_free(p);
        return;
    }
    p->next = a->waiting;
    a->waiting = p;
    check_waiting(a);
}

static void h_post(proto_http_res *res, const proto_http_req *req, void *arg)
{
    cvd_api *a = arg;
    if (!authorized(a, req)) {
        a->unauthorized++;
        reply_err(res, 401, "%s",
                  a->o.auth_header && a->o.auth_header[0]
                      ? "the Authorization header is missing or wrong"
                      : "no auth_header configured: POSTs are taken from this host only");
        return;
    }
    struct pending *p = calloc(1, sizeof(*p));
    if (!p) {
        reply_err(res, 500, "out of memory");
        return;
    }
    p->a = a;
    p->q = a->o.queue;
    char sync[16];
    p->sync = proto_http_query_get(req->query, "sync", sync, sizeof(sync)) > 0 &&
              (!strcmp(sync, "true") || !strcmp(sync, "1"));
    cf_err e = {0};
    int rc = cvd_request_parse(req->body, req->body_len, &p->rq, &e);
    if (rc < 0) {
        a->bad_requests++;
        reply_err(res, rc == -E2BIG ? 413 : rc == -ENOMEM ? 500 : 400, "%s", e.msg);
        pending_free(p);
        return;
    }
    size_t n = p->rq.n_items;
    p->targets = calloc(n ? n : 1, sizeof(*p->targets));
    p->ids = calloc(n ? n : 1, sizeof(*p->ids));
    p->joined = calloc(n ? n : 1, sizeof(*p->joined));
    if (!p->targets || !p->ids || !p->joined) {
        reply_err(res, 500, "out of memory");
        pending_free(p);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const cvd_request_item *it = &p->rq.items[i];
        if (it->target[0]) {
            snprintf(p->targets[i], CVD_REF_MAX, "%s", it->target);
            continue;
        }
        rc = cvd_target_for(it->source, a->o.suffix, a->o.target_registry, p->targets[i],
                            CVD_REF_MAX, &e);
        if (rc < 0) {
            a->bad_requests++;
            reply_err(res, 400, "%s", e.msg);
            pending_free(p);
            return;
        }
        if (rc == 1) { /* a target pushed (by us, usually): never converted again */
            p->targets[i][0] = 0;
            cf_debug("%s: a conversion target (tag suffix %s): skipped", it->source, a->o.suffix);
        }
    }
    p->res = res;
    proto_http_on_abort(res, on_abort, p);
    p->work.data = p;
    rc = uv_queue_work(a->loop, &p->work, submit_work, submit_done);
    if (rc < 0) {
        reply_err(res, 500, "%s", uv_strerror(rc));
        pending_free(p);
    }
}

/* ---- GET ---- */

static void h_list(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req;
    cvd_api *a = arg;
    cvd_job *jobs;
    size_t n;
    if (cvd_queue_list(a->o.queue, &jobs, &n) < 0) {
        reply_err(res, 500, "out of memory");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) json_array_append_new(arr, job_json(&jobs[i]));
    free(jobs);
    reply_json(res, 200, arr);
}

static void h_health(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req;
    (void)arg;
    proto_http_respond(res, 200, "text/plain", "Ok", 2);
}

static void h_metrics(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req;
    cvd_api *a = arg;
    cvd_queue_stats s;
    cvd_queue_stats_get(a->o.queue, &s);
    char body[2400];
    int n = snprintf(
        body, sizeof(body),
        "# HELP chunkfly_convertd_jobs_queued Jobs waiting (including retries in backoff).\n"
        "# TYPE chunkfly_convertd_jobs_queued gauge\n"
        "chunkfly_convertd_jobs_queued %llu\n"
        "# HELP chunkfly_convertd_jobs_running Jobs being converted.\n"
        "# TYPE chunkfly_convertd_jobs_running gauge\n"
        "chunkfly_convertd_jobs_running %llu\n"
        "# HELP chunkfly_convertd_jobs_done_total Jobs completed since start.\n"
        "# TYPE chunkfly_convertd_jobs_done_total counter\n"
        "chunkfly_convertd_jobs_done_total %llu\n"
        "# HELP chunkfly_convertd_jobs_failed_total Jobs failed for good since start.\n"
        "# TYPE chunkfly_convertd_jobs_failed_total counter\n"
        "chunkfly_convertd_jobs_failed_total %llu\n"
        "# HELP chunkfly_convertd_job_retries_total Attempts that failed transiently and were "
        "queued again.\n"
        "# TYPE chunkfly_convertd_job_retries_total counter\n"
        "chunkfly_convertd_job_retries_total %llu\n"
        "# HELP chunkfly_convertd_jobs_recovered_total Jobs found running at start (a crash) "
        "and queued again.\n"
        "# TYPE chunkfly_convertd_jobs_recovered_total counter\n"
        "chunkfly_convertd_jobs_recovered_total %llu\n"
        "# HELP chunkfly_convertd_job_seconds Time per conversion attempt.\n"
        "# TYPE chunkfly_convertd_job_seconds summary\n"
        "chunkfly_convertd_job_seconds_sum %.6f\n"
        "chunkfly_convertd_job_seconds_count %llu\n"
        "# HELP chunkfly_convertd_requests_unauthorized_total POSTs refused (401).\n"
        "# TYPE chunkfly_convertd_requests_unauthorized_total counter\n"
        "chunkfly_convertd_requests_unauthorized_total %llu\n"
        "# HELP chunkfly_convertd_requests_bad_total POSTs with a malformed body (400/413).\n"
        "# TYPE chunkfly_convertd_requests_bad_total counter\n"
        "chunkfly_convertd_requests_bad_total %llu\n",
        (unsigned long long)s.queued, (unsigned long long)s.running, (unsigned long long)s.done,
        (unsigned long long)s.failed, (unsigned long long)s.retries,
        (unsigned long long)s.recovered, s.seconds_sum, (unsigned long long)s.seconds_count,
        (unsigned long long)a->unauthorized, (unsigned long long)a->bad_requests);
    proto_http_respond(res, 200, "text/plain; version=0.0.4", body,
                       n < (int)sizeof(body) ? (size_t)n : sizeof(body) - 1);
}

/* ---- lifecycle ---- */

static void on_async(uv_async_t *h)
{
    check_waiting(h->data);
}

void cvd_api_job_changed(void *api)
{
    uv_async_send(&((cvd_api *)api)->async);
}

int cvd_api_start(uv_loop_t *loop, const cvd_api_opts *o, cvd_api **out, cf_err *err)
{
    cvd_api *a = calloc(1, sizeof(*a));
    if (!a) return cf_err_set(err, -ENOMEM, "out of memory");
    a->loop = loop;
    a->o = *o;
    if (o->auth_header && o->auth_header[0])
        cf_sha256(o->auth_header, strlen(o->auth_header), a->auth_hash);
    struct proto_http_limits lim;
    proto_http_limits_default(&lim);
    lim.max_body_bytes = BODY_MAX;
    int rc = proto_http_server_new(loop, &lim, &a->srv);
    if (rc < 0) {
        free(a);
        return cf_err_set(err, rc, "http server: %s", strerror(-rc));
    }
    if (!rc) rc = proto_http_route(a->srv, "POST", "/api/v1/conversions", h_post, a);
    if (!rc) rc = proto_http_route(a->srv, "GET", "/api/v1/conversions", h_list, a);
    if (!rc) rc = proto_http_route(a->srv, "GET", "/api/v1/health", h_health, a);
    if (!rc) rc = proto_http_route(a->srv, "GET", "/metrics", h_metrics, a);
    if (!rc) rc = proto_http_listen(a->srv, o->host, o->port, err);
    if (rc < 0) {
        proto_http_server_close(a->srv, NULL, NULL);
        free(a);
        return rc;
    }
    uv_async_init(loop, &a->async, on_async);
    a->async.data = a;
    *out = a;
    return 0;
}

int cvd_api_port(const cvd_api *a)
{
    return proto_http_port(a->srv);
}

static void on_async_closed(uv_handle_t *h)
{
    cvd_api *a = h->data;
    while (a->waiting) {
        struct pending *p = a->waiting;
        a->waiting = p->next;
        pending_free(p);
    }
    free(a);
}

void cvd_api_stop(cvd_api *a)
{
    /* the server's close aborts the waiting responses (their res becomes NULL) */
    proto_http_server_close(a->srv, NULL, NULL);
    uv_close((uv_handle_t *)&a->async, on_async_closed);
}
