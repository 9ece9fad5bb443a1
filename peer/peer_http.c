/* The peer's HTTP endpoint on the --http listener, a front end: /metrics (Prometheus text
 * format), /healthz, and /status (JSON: the task snapshot of task_status.c, with parents and
 * progress). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/buf.h"
#include "cf/log.h"
#include "daemon_internal.h"
#include "proto/http_server.h"

static void metric(cf_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    cf_buf_printf(b,
                  "# HELP chunkfly_peer_%s %s\n# TYPE chunkfly_peer_%s %s\nchunkfly_peer_%s %llu\n",
                  name, help, name, type, name, (unsigned long long)v);
}

static void on_metrics(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req;
    peer_daemon *d = arg;
    struct peer_metrics *m = &d->m;
    peer_store_stats st;
    peer_store_stats_get(d->store, &st);
    cf_buf b = {0};
    metric(&b, "bytes_from_parents_total", "counter", "Piece bytes downloaded from parents.",
           m->bytes_from_parents);
    metric(&b, "bytes_from_origin_total", "counter", "Piece bytes downloaded from the origin.",
           m->bytes_from_origin);
    metric(&b, "bytes_served_peers_total", "counter", "Piece bytes uploaded to other peers.",
           m->bytes_served_peers);
    metric(&b, "bytes_served_local_total", "counter", "Bytes returned to local API readers.",
           m->bytes_served_local);
    metric(&b, "pieces_from_parents_total", "counter", "Pieces downloaded from parents.",
           m->pieces_from_parents);
    metric(&b, "pieces_from_origin_total", "counter", "Pieces downloaded from the origin.",
           m->pieces_from_origin);
    metric(&b, "pieces_served_total", "counter", "Pieces uploaded to other peers.",
           m->pieces_served);
    metric(&b, "local_reads_total", "counter", "Local API reads.", m->local_reads);
    metric(&b, "cache_hits_total", "counter", "Local reads of blobs already complete.",
           m->local_read_hits);
    metric(&b, "local_read_errors_total", "counter", "Local reads answered with an error.",
           m->local_read_errors);
    metric(&b, "local_files_passed_total", "counter",
           "Local reads answered with a read-only descriptor of the verified blob's file.",
           m->local_files_passed);
    metric(&b, "local_callers_refused_total", "counter",
           "Local API connections refused: caller uid/gid not allowed.", m->local_callers_refused);
    metric(&b, "local_access_refused_total", "counter",
           "Local reads of a private blob refused: the registry did not accept the caller.",
           m->local_access_refused);
    metric(&b, "piece_failures_total", "counter", "Piece downloads from parents that failed.",
           m->piece_failures);
    metric(&b, "origin_failures_total", "counter", "Origin fetches that failed.",
           m->origin_failures);
    metric(&b, "digest_mismatches_total", "counter",
           "Pieces from parents that failed their digest.", m->digest_mismatches);
    metric(&b, "digest_lists_discredited_total", "counter",
           "Scheduler digest lists dropped because the origin's bytes disagreed with them.",
           m->digest_lists_discredited);
    metric(&b, "bans_total", "counter", "Parents banned for serving bad bytes.", m->bans);
    metric(&b, "parent_timeouts_total", "counter", "Piece requests that timed out.",
           m->parent_timeouts);
    metric(&b, "upload_busy_total", "counter", "Piece requests refused for lack of a slot.",
           m->upload_busy);
    metric(&b, "upload_refused_total", "counter", "Piece requests for pieces not held.",
           m->upload_refused);
    metric(&b, "tls_refused_total", "counter",
           "Mesh connections refused: plaintext, no or foreign certificate, HELLO id not the "
           "certificate's.",
           m->tls_refused);
    metric(&b, "upload_auth_refused_total", "counter",
           "Private-blob requests refused for want of an accepted proof (ERROR AUTH).",
           m->upload_auth_refused);
    metric(&b, "access_proofs_sent_total", "counter", "Pull-token proofs sent to parents.",
           m->access_proofs_sent);
    metric(&b, "access_refused_total", "counter",
           "Parents that refused this node's proof (skipped for the task).", m->access_refused);
    metric(&b, "bad_frames_total", "counter", "Undecodable frames received.", m->bad_frames);
    metric(&b, "tasks_completed_total", "counter", "Blobs downloaded and verified.",
           m->tasks_completed);
    metric(&b, "tasks_failed_total", "counter", "Blob downloads that failed.", m->tasks_failed);
    metric(&b, "blob_mismatches_total", "counter", "Whole blobs that failed their sha256.",
           m->blob_mismatches);
    metric(&b, "upload_connections", "gauge", "Open upload (mesh) connections.", d->n_upconns);
    metric(&b, "upload_slots_used", "gauge", "Pieces being uploaded now.", d->slots_used);
    metric(&b, "upload_slots_idle", "gauge", "Upload slots free now (upload_slots - used).",
           d->o.upload_slots > d->slots_used ? d->o.upload_slots - d->slots_used : 0);
    /* where the running whole-blob downloads' missing pieces are (pp_count_waiting) */
    pp_waiting w = {0};
    for (struct task *t = d->tasks; t; t = t->next)
        if (t->state == T_RUNNING && t->pp.whole && !t->dead)
            pp_count_waiting(&t->pp, &d->liars, &w);
    metric(&b, "pieces_missing", "gauge", "Pieces of running whole-blob downloads not stored yet.",
           w.missing);
    metric(&b, "piece_requests_parents", "gauge", "Piece requests outstanding on parents.",
           w.requests_parents);
    metric(&b, "piece_requests_origin", "gauge", "Pieces being fetched from the origin.",
           w.requests_origin);
    metric(&b, "pieces_waiting_parent", "gauge",
           "Missing pieces a parent holds, not requested yet (budgets, parent load or skips).",
           w.waiting_parent);
    metric(&b, "pieces_waiting_origin", "gauge",
           "Missing pieces no known parent holds, not requested: waiting for an origin fetch.",
           w.waiting_origin);
    metric(&b, "pieces_waiting_origin_mine", "gauge",
           "Of pieces_waiting_origin, those this node may fetch itself (granted, origin mode).",
           w.waiting_origin_mine);
    metric(&b, "mirror_requests_total", "counter", "Registry mirror requests.", m->mirror_requests);
    metric(&b, "mirror_cache_hits_total", "counter", "Mirror blob reads of complete blobs.",
           m->mirror_hits);
    metric(&b, "mirror_errors_total", "counter", "Mirror blob reads that failed.",
           m->mirror_errors);
    metric(&b, "mirror_bytes_total", "counter", "Blob bytes sent by the mirror.", m->mirror_bytes);
    metric(&b, "mirror_manifest_hits_total", "counter",
           "Manifests by digest answered from the mirror's memory.", m->mirror_manifest_hits);
    metric(&b, "local_connections", "gauge", "Open local API connections.", d->n_lconns);
    uint64_t np = 0;
    for (struct pconn *pc = d->pconns; pc; pc = pc->next) np++;
    metric(&b, "parent_connections", "gauge", "Open connections to parents.", np);
    metric(&b, "tasks", "gauge", "Blob tasks in memory.", d->n_tasks);
    uint64_t up = 0;
    for (size_t k = 0; k < d->n_sched_active; k++) up += d->sched[d->sched_order[k]].ready;
    metric(&b, "schedulers", "gauge", "Schedulers in the table (names resolved).",
           d->n_sched_active);
    metric(&b, "schedulers_connected", "gauge", "Scheduler connections ready.", up);
    metric(&b, "cache_bytes", "gauge", "Bytes of cached pieces.", st.bytes_used);
    metric(&b, "cache_blobs", "gauge", "Blobs in the cache.", st.blobs);
    metric(&b, "cache_quota_bytes", "gauge", "Cache quota (high watermark), 0 = none.",
           st.quota_high);
    metric(&b, "cache_evictions_total", "counter", "Blobs evicted for the quota.", st.evictions);
    proto_http_respond(res, 200, "text/plain; version=0.0.4", b.data, b.len);
    cf_buf_free(&b);
}

static void on_healthz(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req;
    peer_daemon *d = arg;
    const char *body = d->stopping ? "stopping\n" : "ok\n";
    proto_http_respond(res, d->stopping ? 503 : 200, "text/plain", body, strlen(body));
}

/* Appends s as a JSON string (ids and addresses come from the network: escape everything). */
static void json_str(cf_buf *b, const char *s)
{
    cf_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            cf_buf_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            cf_buf_printf(b, "\\u%04x", *p);
        else
            cf_buf_append(b, p, 1);
    }
    cf_buf_append(b, "\"", 1);
}

static const char *tf(int b)
{
    return b ? "true" : "false";
}

static void on_status(proto_http_res *res, const proto_http_req *req, void *arg)
{
    peer_daemon *d = arg;
    if (proto_http_refuse_remote(res, req, d->o.status_remote, "status_remote")) return;
    task_status *ts = NULL;
    task_status_parent *tp = NULL;
    size_t nt = 0, np = 0;
    if (tasks_snapshot(d, SIZE_MAX, &ts, &nt, &tp, &np)) {
        const char *body = "out of memory\n";
        proto_http_respond(res, 503, "text/plain", body, strlen(body));
        return;
    }
    cf_buf b = {0};
    cf_buf_printf(&b, "{\"host_id\":");
    json_str(&b, d->host_id);
    cf_buf_printf(&b, ",\"upload\":\"%s:%u\",\"schedulers\":[", d->adv_ip, d->adv_port);
    for (size_t k = 0; k < d->n_sched_active; k++) { /* by address; "slot" = a task's "scheduler" */
        int i = d->sched_order[k];
        cf_buf_printf(&b, "%s{\"addr\":", k ? "," : "");
        json_str(&b, d->sched[i].addr);
        cf_buf_printf(&b, ",\"slot\":%d,\"connected\":%s,\"healthy\":%s}", i, tf(d->sched[i].ready),
                      tf(proto_sched_health_ok(&d->sched_health[i], &d->o.timing)));
    }
    cf_buf_printf(&b, "],\"tasks\":[");
    for (size_t i = 0; i < nt; i++) {
        const task_status *t = &ts[i];
        cf_buf_printf(&b,
                      "%s{\"id\":\"%s\",\"state\":\"%s\",\"length\":%llu,\"piece_size\":%u,"
                      "\"pieces\":%u,\"have\":%u,\"in_flight\":%u,\"origin_mode\":%s,"
                      "\"scheduler\":%d,\"bytes_from_parents\":%llu,\"bytes_from_origin\":%llu,"
                      "\"readers\":%s,",
                      i ? "," : "", t->id, t->state, (unsigned long long)t->length, t->piece_size,
                      t->piece_count, t->pieces_have, t->in_flight, tf(t->origin_mode),
                      t->sched_idx, (unsigned long long)t->from_parents,
                      (unsigned long long)t->from_origin, tf(t->readers > 0));
        if (t->error) {
            cf_buf_printf(&b, "\"error\":");
            json_str(&b, t->error);
            cf_buf_printf(&b, ",");
        }
        cf_buf_printf(&b, "\"parents\":[");
        for (size_t j = 0; j < t->n_parents; j++) {
            const task_status_parent *pa = &tp[t->first_parent + j];
            cf_buf_printf(&b, "%s{\"id\":", j ? "," : "");
            json_str(&b, pa->host_id);
            cf_buf_printf(&b, ",\"addr\":");
            json_str(&b, pa->addr);
            cf_buf_printf(&b, ",\"banned\":%s,\"down\":%s,\"connected\":%s,\"pieces_served\":%u}",
                          tf(pa->banned), tf(pa->down), tf(pa->connected), pa->served);
        }
        cf_buf_printf(&b, "]}");
    }
    cf_buf_printf(&b, "]}\n");
    free(ts);
    free(tp);
    proto_http_respond(res, 200, "application/json", b.data, b.len);
    cf_buf_free(&b);
}

int peer_http_start(peer_daemon *d, cf_err *err)
{
    char ip[64];
    uint16_t port;
    if (pd_split_host(d->o.http, ip, sizeof(ip), &port))
        return cf_err_set(err, -EINVAL, "--http '%s': expected numeric ip:port", d->o.http);
    struct proto_http_limits hl;
    proto_http_limits_default(&hl);
    hl.max_connections = 64;
    int rc = proto_http_server_new(d->loop, &hl, &d->http);
    if (rc) return cf_err_set(err, rc, "http: out of memory");
    rc = proto_http_route(d->http, "GET", "/metrics", on_metrics, d);
    if (!rc) rc = proto_http_route(d->http, "GET", "/healthz", on_healthz, d);
    if (!rc) rc = proto_http_route(d->http, "GET", "/status", on_status, d);
    if (!rc) rc = proto_http_listen(d->http, ip, port, err);
    return rc;
}

void peer_http_stop(peer_daemon *d)
{
    if (d->http) proto_http_server_close(d->http, NULL, NULL);
    d->http = NULL;
}
