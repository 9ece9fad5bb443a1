/* /metrics (Prometheus text) and /status JSON for chunkfly-scheduler. */
#include "sched/sched_status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/buf.h"

struct sched_status {
    sched_server *srv;
    proto_http_server *http;
    int allow_remote; /* /status* to non-local clients (they list task digests and holders) */
};

static void json_str(cf_buf *b, const char *s)
{
    cf_buf_append(b, "\"", 1);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            cf_buf_append(b, e, 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            cf_buf_printf(b, "\\u%04x", ch);
        } else {
            cf_buf_append(b, s, 1);
        }
    }
    cf_buf_append(b, "\"", 1);
}

/* ---- /metrics ---- */

static void metric(cf_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    cf_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                  (unsigned long long)v);
}

static void handle_metrics(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req;
    struct sched_status *c = arg;
    struct sched_stats st;
    struct sched_server_stats ss;
    struct proto_http_stats hs;
    sched_stats_get(sched_server_core(c->srv), &st);
    sched_server_stats_get(c->srv, &ss);
    proto_http_stats_get(c->http, &hs);
    cf_buf b = {0};
    metric(&b, "chunkfly_scheduler_hosts", "gauge", "Announced hosts.", st.hosts);
    metric(&b, "chunkfly_scheduler_tasks", "gauge", "Tasks with at least one peer.", st.tasks);
    metric(&b, "chunkfly_scheduler_peers", "gauge", "(host, task) pairs.", st.peers);
    metric(&b, "chunkfly_scheduler_registrations_total", "counter", "REGISTER_TASK handled.",
           st.registrations);
    metric(&b, "chunkfly_scheduler_decisions_total", "counter", "Decisions sent to peers.",
           st.decisions);
    metric(&b, "chunkfly_scheduler_candidates_total", "counter", "CANDIDATES answers.",
           st.candidates_sent);
    metric(&b, "chunkfly_scheduler_waits_total", "counter", "WAIT answers.", st.waits);
    metric(&b, "chunkfly_scheduler_origin_grants_total", "counter",
           "Pieces granted for back-to-source fetch.", st.grants_pieces);
    metric(&b, "chunkfly_scheduler_origin_grants_moved_total", "counter",
           "Pieces re-granted after a stall or a departure.", st.grants_moved);
    metric(&b, "chunkfly_scheduler_origin_grant_holds_total", "counter",
           "Tasks whose origin grants were held while holders re-announced (recovery).",
           st.grant_holds);
    metric(&b, "chunkfly_scheduler_origin_unsolicited_total", "counter",
           "Pieces reported from the origin without a grant.", st.origin_unsolicited);
    metric(&b, "chunkfly_scheduler_bad_parent_reports_total", "counter", "BAD_PARENT reports.",
           st.bad_parent_reports);
    metric(
        &b, "chunkfly_scheduler_bad_parent_unassigned_total", "counter",
        "BAD_PARENT reports about a host the scheduler never assigned to the reporter (ignored).",
        st.bad_parent_unassigned);
    metric(&b, "chunkfly_scheduler_bans_total", "counter", "Cluster-wide parent bans.", st.bans);
    metric(&b, "chunkfly_scheduler_hosts_expired_total", "counter",
           "Hosts removed after missed heartbeats.", st.hosts_expired);
    metric(&b, "chunkfly_scheduler_outliers_dropped_total", "counter",
           "Candidates dropped as slow outliers.", st.outliers_dropped);
    metric(&b, "chunkfly_scheduler_connections", "gauge", "Open mesh connections.", ss.conns_open);
    metric(&b, "chunkfly_scheduler_connections_accepted_total", "counter",
           "Mesh connections accepted.", ss.conns_accepted);
    metric(&b, "chunkfly_scheduler_connections_rejected_total", "counter",
           "Mesh connections over the limit.", ss.conns_rejected);
    metric(&b, "chunkfly_scheduler_handshake_failures_total", "counter",
           "Refused or missing handshakes.", ss.handshakes_failed + ss.handshake_timeouts);
    metric(&b, "chunkfly_scheduler_digest_lists_discredited_total", "counter",
           "Digest lists dropped because a peer's origin bytes disagreed with them.",
           ss.digest_lists_discredited);
    metric(&b, "chunkfly_scheduler_idle_closed_total", "counter",
           "Connections closed for idleness.", ss.idle_closed);
    metric(&b, "chunkfly_scheduler_identity_refused_total", "counter",
           "ANNOUNCE_HOST refused: host id differs from the TLS certificate.", ss.identity_refused);
    metric(&b, "chunkfly_scheduler_frames_in_total", "counter", "Frames received.", ss.frames_in);
    metric(&b, "chunkfly_scheduler_frames_bad_total", "counter", "Undecodable frames.",
           ss.frames_bad);
    metric(&b, "chunkfly_scheduler_frames_out_total", "counter", "Frames sent.", ss.frames_out);
    cf_buf_printf(&b, "# HELP chunkfly_scheduler_decision_seconds Time to handle a message that "
                      "needs a decision.\n# TYPE chunkfly_scheduler_decision_seconds histogram\n");
    uint64_t cum = 0;
    for (unsigned i = 0; i < SCHED_LAT_BUCKETS; i++) {
        cum += ss.lat_bucket[i];
        if (i < SCHED_LAT_BUCKETS - 1)
            cf_buf_printf(&b, "chunkfly_scheduler_decision_seconds_bucket{le=\"%g\"} %llu\n",
                          sched_lat_bounds_us[i] / 1e6, (unsigned long long)cum);
        else
            cf_buf_printf(&b, "chunkfly_scheduler_decision_seconds_bucket{le=\"+Inf\"} %llu\n",
                          (unsigned long long)cum);
    }
    cf_buf_printf(&b, "chunkfly_scheduler_decision_seconds_sum %g\n", ss.lat_sum_us / 1e6);
    cf_buf_printf(&b, "chunkfly_scheduler_decision_seconds_count %llu\n",
                  (unsigned long long)ss.lat_count);
    metric(&b, "chunkfly_http_requests_total", "counter", "HTTP requests.", hs.requests);
    metric(&b, "chunkfly_http_bad_requests_total", "counter", "Malformed HTTP requests.",
           hs.bad_requests);
    proto_http_respond(res, 200, "text/plain; version=0.0.4", b.data, b.len);
    cf_buf_free(&b);
}

/* ---- /status ---- */

struct list_ctx {
    cf_buf *b;
    unsigned n, limit;
    int truncated;
    uint64_t now;
};

static void host_json(void *arg, const sched_host *h)
{
    struct list_ctx *x = arg;
    if (x->n >= x->limit) {
        x->truncated = 1;
        return;
    }
    struct sched_host_view v;
    sched_host_view_get(h, &v);
    cf_buf *b = x->b;
    if (x->n++) cf_buf_append(b, ",", 1);
    cf_buf_append(b, "{\"id\":", 6);
    json_str(b, v.id);
    cf_buf_append(b, ",\"addr\":", 8);
    json_str(b, v.addr);
    cf_buf_append(b, ",\"idc\":", 7);
    json_str(b, v.idc);
    cf_buf_append(b, ",\"zone\":", 8);
    json_str(b, v.zone);
    cf_buf_append(b, ",\"rack\":", 8);
    json_str(b, v.rack);
    cf_buf_printf(b,
                  ",\"upload_slots\":%u,\"reserved\":%u,\"failures\":%u,\"peers\":%u,"
                  "\"silent_ms\":%llu,\"tput_bps\":%llu,\"piece_ms_per_mib\":%.1f}",
                  v.upload_slots, v.reserved, v.failures, v.peers,
                  (unsigned long long)(x->now > v.last_seen_ms ? x->now - v.last_seen_ms : 0),
                  (unsigned long long)v.tput_bps, v.piece_ms);
}

static void task_json_head(cf_buf *b, const sched_task *t)
{
    struct sched_task_view v;
    sched_task_view_get(t, &v);
    cf_buf_append(b, "{\"id\":", 6);
    json_str(b, v.id);
    cf_buf_printf(b,
                  ",\"content_length\":%llu,\"piece_size\":%u,\"piece_count\":%u,\"peers\":%u,"
                  "\"pieces_in_mesh\":%u,\"pieces_granted\":%u,\"digests\":%s",
                  (unsigned long long)v.content_length, v.piece_size, v.piece_count, v.peers,
                  v.pieces_in_mesh, v.pieces_granted, v.has_digests ? "true" : "false");
}

static void task_json(void *arg, const sched_task *t)
{
    struct list_ctx *x = arg;
    if (x->n >= x->limit) {
        x->truncated = 1;
        return;
    }
    if (x->n++) cf_buf_append(x->b, ",", 1);
    task_json_head(x->b, t);
    cf_buf_append(x->b, "}", 1);
}

static unsigned parse_limit(const proto_http_req *req)
{
    char v[16];
    if (proto_http_query_get(req->query, "limit", v, sizeof(v)) <= 0) return 1000;
    unsigned long l = strtoul(v, NULL, 10);
    return l == 0 || l > 1000000 ? 1000 : (unsigned)l;
}

static void handle_status(proto_http_res *res, const proto_http_req *req, void *arg)
{
    struct sched_status *c = arg;
    if (proto_http_refuse_remote(res, req, c->allow_remote, "status_remote")) return;
    sched *core = sched_server_core(c->srv);
    cf_buf b = {0};
    struct list_ctx x = {.b = &b, .limit = parse_limit(req), .now = sched_server_now_ms(c->srv)};
    struct sched_stats st;
    sched_stats_get(core, &st);
    cf_buf_printf(&b, "{\"hosts_total\":%llu,\"tasks_total\":%llu,\"peers_total\":%llu,\"hosts\":[",
                  (unsigned long long)st.hosts, (unsigned long long)st.tasks,
                  (unsigned long long)st.peers);
    sched_foreach_host(core, host_json, &x);
    int trunc = x.truncated;
    cf_buf_append(&b, "],\"tasks\":[", 11);
    x.n = 0;
    x.truncated = 0;
    sched_foreach_task(core, task_json, &x);
    cf_buf_printf(&b, "],\"truncated\":%s}\n", trunc || x.truncated ? "true" : "false");
    proto_http_respond(res, 200, "application/json", b.data, b.len);
    cf_buf_free(&b);
}

struct peer_ctx {
    cf_buf *b;
    unsigned n;
};

static void peer_json(void *arg, const sched_peer *p)
{
    struct peer_ctx *x = arg;
    struct sched_peer_view v;
    sched_peer_view_get(p, &v);
    cf_buf *b = x->b;
    if (x->n++) cf_buf_append(b, ",", 1);
    cf_buf_append(b, "{\"host\":", 8);
    json_str(b, v.host_id);
    cf_buf_printf(b,
                  ",\"have\":%u,\"grants\":%u,\"waiting\":%s,\"finished\":%s,\"stalled\":%s,"
                  "\"parents\":[",
                  v.have, v.grants, v.waiting ? "true" : "false", v.finished ? "true" : "false",
                  v.stalled ? "true" : "false");
    for (uint32_t i = 0; i < v.n_parents; i++) {
        if (i) cf_buf_append(b, ",", 1);
        json_str(b, v.parents[i]);
    }
    cf_buf_append(b, "]}", 2);
}

int sched_status_task_json(sched_server *srv, const char *task_id, cf_buf *out)
{
    sched_task *t = sched_task_find(sched_server_core(srv), task_id);
    if (!t) return -ENOENT;
    task_json_head(out, t);
    cf_buf_append(out, ",\"swarm\":[", 10);
    struct peer_ctx x = {.b = out};
    sched_task_foreach_peer(t, peer_json, &x);
    return cf_buf_append(out, "]}\n", 3);
}

static void handle_task(proto_http_res *res, const proto_http_req *req, void *arg)
{
    struct sched_status *c = arg;
    if (proto_http_refuse_remote(res, req, c->allow_remote, "status_remote")) return;
    char id[160];
    int n = proto_http_query_get(req->query, "id", id, sizeof(id));
    if (n <= 0) {
        const char *msg = "{\"error\":\"missing or invalid ?id=<task id>\"}\n";
        proto_http_respond(res, 400, "application/json", msg, strlen(msg));
        return;
    }
    cf_buf b = {0};
    int rc = sched_status_task_json(c->srv, id, &b);
    if (rc == -ENOENT) {
        cf_buf_reset(&b);
        cf_buf_append(&b, "{\"error\":\"unknown task\",\"id\":", 29);
        json_str(&b, id);
        cf_buf_append(&b, "}\n", 2);
        proto_http_respond(res, 404, "application/json", b.data, b.len);
    } else {
        proto_http_respond(res, 200, "application/json", b.data, b.len);
    }
    cf_buf_free(&b);
}

static void handle_health(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req;
    (void)arg;
    proto_http_respond(res, 200, "text/plain", "ok\n", 3);
}

void sched_status_allow_remote(sched_status *st, int allow)
{
    st->allow_remote = allow;
}

int sched_status_new(proto_http_server *http, sched_server *srv, sched_status **out)
{
    struct sched_status *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    *out = c;
    c->srv = srv;
    c->http = http;
    int rc = proto_http_route(http, "GET", "/metrics", handle_metrics, c);
    if (!rc) rc = proto_http_route(http, "GET", "/status", handle_status, c);
    if (!rc) rc = proto_http_route(http, "GET", "/status/task", handle_task, c);
    if (!rc) rc = proto_http_route(http, "GET", "/healthz", handle_health, c);
    return rc;
}

void sched_status_free(sched_status *st)
{
    free(st);
}
