/* The daemon object: options, start-up (cache, listeners), the housekeeping tick, shutdown. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cf/log.h"
#include "cf/parse_number.h"
#include "access_check.h"
#include "daemon_internal.h"
#include "download_timing.h"
#include "proto/handshake.h"
#include "proto/http_server.h"

const char *const peer_daemon_config_keys[] = {"listen",
                                               "advertise",
                                               "scheduler",
                                               "scheduler_resolve_interval",
                                               "cache_dir",
                                               "api_socket",
                                               "http",
                                               "host_id",
                                               "quota",
                                               "quota_low",
                                               "log_level",
                                               "upload_slots",
                                               "upload_max_connections",
                                               "upload_bandwidth",
                                               "upload_piece_timeout",
                                               "pieces_in_flight",
                                               "per_parent_in_flight",
                                               "origin_in_flight",
                                               "piece_timeout",
                                               "register_timeout",
                                               "mesh_stall",
                                               "small_blob",
                                               "ban_after_lies",
                                               "origin_plain_http",
                                               "docker_config",
                                               "origin_timeout",
                                               "local_max_connections",
                                               "api_allow_uids",
                                               "api_allow_gids",
                                               "api_node_credentials",
                                               "plain_http",
                                               "seed_cached",
                                               "fetch_whole_blob",
                                               "status_remote",
                                               "mirror_listen",
                                               "mirror_upstreams",
                                               "mirror_default_upstream",
                                               "mirror_max_connections",
                                               "input_budget",
                                               "tls_cert",
                                               "tls_key",
                                               "tls_ca",
                                               "private_peers",
                                               "timing.heartbeat_interval",
                                               "timing.heartbeat_miss_limit",
                                               "timing.back_to_source_stall",
                                               "timing.idle_timeout",
                                               "timing.scheduler_retry",
                                               NULL};

static int get_u32(const cf_config *c, const char *key, uint32_t def, uint32_t min, uint32_t max,
                   uint32_t *out, cf_err *err)
{
    uint64_t v;
    int rc = cf_config_get_u64(c, key, def, &v, err);
    if (rc) return rc;
    if (v < min || v > max)
        return cf_err_set(err, -EINVAL, "%s: %llu is outside %u..%u", key, (unsigned long long)v,
                          min, max);
    *out = (uint32_t)v;
    return 0;
}

static int get_ms(const cf_config *c, const char *key, uint32_t def, uint32_t *out, cf_err *err)
{
    uint64_t v;
    int rc = cf_config_get_duration_ms(c, key, def, &v, err);
    if (rc) return rc;
    if (v == 0 || v > 86400000u) return cf_err_set(err, -EINVAL, "%s: must be 1ms..24h", key);
    *out = (uint32_t)v;
    return 0;
}

int peer_daemon_opts_load(struct peer_daemon_opts *o, const cf_config *c, cf_err *err)
{
    memset(o, 0, sizeof(*o));
    int rc = cf_config_check_keys(c, peer_daemon_config_keys, err);
    if (rc) return rc;
    o->listen = cf_config_get(c, "listen");
    if (!o->listen) o->listen = "127.0.0.1:4100";
    o->advertise = cf_config_get(c, "advertise");
    o->n_schedulers = cf_config_count(c, "scheduler");
    if (o->n_schedulers > PEER_MAX_SCHEDULERS)
        return cf_err_set(err, -EINVAL, "at most %d schedulers", PEER_MAX_SCHEDULERS);
    for (size_t i = 0; i < o->n_schedulers; i++) {
        o->schedulers[i] = cf_config_get_nth(c, "scheduler", i);
        if (peer_sched_entry_parse(o->schedulers[i], NULL, 0, NULL, 0) < 0)
            return cf_err_set(err, -EINVAL, "scheduler '%s': expected ip:port or name:port",
                              o->schedulers[i]);
    }
    if (!rc)
        rc = get_ms(c, "scheduler_resolve_interval", 30000, &o->sched_resolve_interval_ms, err);
    o->cache_dir = cf_config_get(c, "cache_dir");
    if (!o->cache_dir) o->cache_dir = "/var/cache/chunkfly";
    o->api_socket = cf_config_get(c, "api_socket");
    if (!o->api_socket) o->api_socket = "/run/chunkfly/peer.sock";
    o->http = cf_config_get(c, "http");
    o->host_id = cf_config_get(c, "host_id");
    if (!rc) rc = cf_config_get_size(c, "quota", 0, &o->quota_high, err);
    if (!rc) rc = cf_config_get_size(c, "quota_low", 0, &o->quota_low, err);
    if (!rc && o->quota_low > o->quota_high && o->quota_high)
        rc = cf_err_set(err, -EINVAL, "quota_low must not exceed quota");
    if (!rc) rc = get_u32(c, "upload_slots", 16, 1, 4096, &o->upload_slots, err);
    if (!rc) rc = get_u32(c, "upload_max_connections", 256, 1, 65536, &o->upload_max_conns, err);
    if (!rc) rc = cf_config_get_size(c, "upload_bandwidth", 0, &o->upload_bw, err);
    if (!rc) rc = get_ms(c, "upload_piece_timeout", 30000, &o->upload_piece_timeout_ms, err);
    if (!rc) rc = get_u32(c, "pieces_in_flight", 8, 1, 256, &o->pieces_in_flight, err);
    if (!rc) rc = get_u32(c, "per_parent_in_flight", 4, 1, 64, &o->per_parent_in_flight, err);
    if (!rc) rc = get_u32(c, "origin_in_flight", 4, 1, 64, &o->origin_in_flight, err);
    if (!rc) rc = get_ms(c, "piece_timeout", 10000, &o->piece_timeout_ms, err);
    if (!rc) rc = get_ms(c, "register_timeout", 3000, &o->register_timeout_ms, err);
    if (!rc) rc = get_ms(c, "mesh_stall", 10000, &o->mesh_stall_ms, err);
    if (!rc) rc = cf_config_get_size(c, "small_blob", 4u << 20, &o->small_blob, err);
    if (!rc) rc = get_u32(c, "ban_after_lies", 3, 1, 1000, &o->ban_after_lies, err);
    if (!rc) rc = cf_config_get_bool(c, "origin_plain_http", 0, &o->origin_plain_http, err);
    o->docker_config = cf_config_get(c, "docker_config");
    if (!rc) rc = get_ms(c, "origin_timeout", 8000, &o->origin_timeout_ms, err);
    if (!rc) rc = get_u32(c, "local_max_connections", 64, 1, 65536, &o->local_max_conns, err);
    o->api_allow_uids = cf_config_get(c, "api_allow_uids");
    o->api_allow_gids = cf_config_get(c, "api_allow_gids");
    if (!rc) rc = cf_config_get_bool(c, "api_node_credentials", 1, &o->api_node_creds, err);
    o->plain_http = cf_config_get(c, "plain_http");
    if (!rc) rc = get_u32(c, "seed_cached", 64, 0, 100000, &o->seed_cached, err);
    if (!rc) rc = cf_config_get_bool(c, "fetch_whole_blob", 1, &o->fetch_whole_blob, err);
    if (!rc) rc = cf_config_get_bool(c, "status_remote", 0, &o->status_remote, err);
    o->mirror_listen = cf_config_get(c, "mirror_listen");
    o->mirror_listen_set = o->mirror_listen != NULL;
    if (!o->mirror_listen) o->mirror_listen = "127.0.0.1:65001";
    o->mirror_upstreams = cf_config_get(c, "mirror_upstreams");
    if (!o->mirror_upstreams) o->mirror_upstreams = "";
    o->mirror_default_upstream = cf_config_get(c, "mirror_default_upstream");
    if (!rc) rc = get_u32(c, "mirror_max_connections", 256, 1, 65536, &o->mirror_max_conns, err);
    if (!rc) rc = cf_config_get_size(c, "input_budget", 256u << 20, &o->input_budget, err);
    if (!rc && o->input_budget < (32u << 20))
        rc = cf_err_set(err, -EINVAL, "input_budget must be at least 32M (two largest frames)");
    if (!rc) rc = proto_timing_load(&o->timing, c, err);
    o->tls_cert = cf_config_get(c, "tls_cert");
    o->tls_key = cf_config_get(c, "tls_key");
    o->tls_ca = cf_config_get(c, "tls_ca");
    o->private_peers = cf_config_get(c, "private_peers");
    int tls_on;
    if (!rc) rc = proto_tls_config_check(o->tls_cert, o->tls_key, o->tls_ca, &tls_on, err);
    return rc;
}

uint64_t pd_now(peer_daemon *d)
{
    return uv_now(d->loop);
}

int pd_serve_hello(peer_daemon *d, proto_conn *c, const proto_msg *m, uint64_t caps,
                   uint32_t *peer_max_payload)
{
    if (m->type != PROTO_MSG_HELLO) {
        proto_conn_send_error(c, PROTO_E_UNEXPECTED, 0, NULL, "HELLO expected first");
        proto_conn_close_after_flush(c, -EPROTO, "no HELLO");
        return -EPROTO;
    }
    /* over TLS the HELLO's id must be the one the certificate proves */
    const char *cert_id = proto_conn_peer_identity(c);
    if (proto_conn_is_tls(c) && (!cert_id || strcmp(cert_id, m->u.hello.node_id) != 0)) {
        char msg[PROTO_MAX_ID_LEN * 2 + 80];
        snprintf(msg, sizeof(msg), "HELLO id '%s' differs from the certificate identity '%s'",
                 m->u.hello.node_id, cert_id ? cert_id : "?");
        cf_warn("connection %s: %s", proto_conn_peer_name(c), msg);
        proto_conn_send_error(c, PROTO_E_IDENTITY, 0, NULL, msg);
        proto_conn_close_after_flush(c, -EPERM, msg);
        return -EPERM;
    }
    proto_hello ours;
    proto_hello_init(&ours, d->host_id, PROTO_ROLE_PEER, caps, 4096);
    uint32_t ver, pmax;
    cf_err err = {0};
    int rc = proto_handshake_check(&ours, &m->u.hello, &ver, &pmax, &err);
    if (rc) {
        proto_msg r;
        proto_handshake_refusal(&r, &err);
        proto_conn_send(c, &r, NULL, 0, NULL);
        proto_conn_close_after_flush(c, rc, "handshake refused");
        return rc;
    }
    proto_conn_set_peer_max_payload(c, pmax);
    proto_msg r = {.type = PROTO_MSG_HELLO};
    r.u.hello = ours;
    proto_conn_send(c, &r, NULL, 0, NULL);
    *peer_max_payload = pmax;
    return 0;
}

/* ---- thread-pool jobs ---- */

struct pd_work {
    uv_work_t req;
    void *job;
    void (*work)(void *job);
    void (*done)(void *job, int cancelled);
};

static void work_cb(uv_work_t *req)
{
    struct pd_work *w = req->data;
    w->work(w->job);
}

static void after_cb(uv_work_t *req, int status)
{
    struct pd_work *w = req->data;
    w->done(w->job, status == UV_ECANCELED);
    free(w);
}

int pd_queue_work(peer_daemon *d, void *job, void (*work)(void *job),
                  void (*done)(void *job, int cancelled))
{
    struct pd_work *w = calloc(1, sizeof(*w));
    if (!w) return -ENOMEM;
    w->job = job;
    w->work = work;
    w->done = done;
    w->req.data = w;
    int rc = uv_queue_work(d->loop, &w->req, work_cb, after_cb);
    if (rc) free(w);
    return rc;
}

/* Background work: a thread of its own at a lower CPU priority, finished on the loop through
 * an async handle (which keeps the loop running until then, like pool work). */
#define BACKGROUND_NICE 10

struct pd_bg {
    uv_async_t async;
    uv_thread_t th;
    void *job;
    void (*work)(void *job);
    void (*done)(void *job, int cancelled);
};

static void bg_main(void *arg)
{
    struct pd_bg *b = arg;
    /* this thread only: Linux nice values are per thread */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), BACKGROUND_NICE);
    b->work(b->job);
    uv_async_send(&b->async);
}

static void bg_closed(uv_handle_t *h)
{
    free(h->data);
}

static void bg_finished(uv_async_t *a)
{
    struct pd_bg *b = a->data;
    uv_thread_join(&b->th);
    b->done(b->job, 0);
    uv_close((uv_handle_t *)&b->async, bg_closed);
}

int pd_queue_background(peer_daemon *d, void *job, void (*work)(void *job),
                        void (*done)(void *job, int cancelled))
{
    struct pd_bg *b = calloc(1, sizeof(*b));
    if (b && uv_async_init(d->loop, &b->async, bg_finished) == 0) {
        b->async.data = b;
        b->job = job;
        b->work = work;
        b->done = done;
        if (uv_thread_create(&b->th, bg_main, b) == 0) return 0;
        uv_close((uv_handle_t *)&b->async, bg_closed);
        b = NULL;
    }
    free(b);
    return pd_queue_work(d, job, work, done); /* no thread: the pool does it */
}

/* ---- housekeeping ---- */

static void flush_work(void *job)
{
    peer_daemon *d = job;
    cf_err err = {0};
    int rc = peer_store_flush(d->store, &err);
    if (rc) cf_warn("cache flush: %s", cf_err_str(&err, rc));
}

/* Pieces the store dropped after a failed sync are no longer held: the tasks learn it here and
 * fetch them again (else readers would wait for them forever). */
static void reconcile_dropped(peer_daemon *d)
{
    peer_store_stats st;
    peer_store_stats_get(d->store, &st);
    if (st.pieces_dropped == d->pieces_dropped_seen) return;
    d->pieces_dropped_seen = st.pieces_dropped;
    tasks_resync_with_store(d);
}

static void flush_done(void *job, int cancelled)
{
    (void)cancelled;
    peer_daemon *d = job;
    d->flush_running = 0;
    if (!d->stopping) reconcile_dropped(d);
}

static void on_tick(uv_timer_t *tm)
{
    peer_daemon *d = tm->data;
    if (d->stopping) return;
    pconn_check_timeouts(d);
    upload_tick(d);
    local_api_tick(d);
    mirror_tick(d);
    reconcile_dropped(d); /* automatic flushes run inside piece writes */
    task_tick(d);
    /* a quiet store must not keep written pieces pending (peer_store_opts.flush_delay_ms) */
    if (!d->flush_running) {
        peer_store_stats st;
        peer_store_stats_get(d->store, &st);
        if (st.bytes_pending && pd_queue_work(d, d, flush_work, flush_done) == 0)
            d->flush_running = 1;
    }
}

static int by_recent(const void *a, const void *b)
{
    const peer_blob_info *x = a, *y = b;
    return x->last_access_ms < y->last_access_ms   ? 1
           : x->last_access_ms > y->last_access_ms ? -1
                                                   : 0;
}

/* After a restart, the complete blobs of the cache rejoin the mesh as seeds (most recently used
 * first, at most seed_cached): the swarm is rebuilt without waiting for local reads. */
static void seed_cached(peer_daemon *d)
{
    peer_blob_info *all = NULL;
    size_t n = 0;
    if (peer_store_list(d->store, &all, &n) || !n) return;
    qsort(all, n, sizeof(*all), by_recent);
    uint32_t seeded = 0;
    for (size_t i = 0; i < n && seeded < d->o.seed_cached; i++) {
        if (!all[i].complete || !all[i].verified) continue;
        char id[PROTO_TASK_ID_LEN + 1];
        proto_task_id_from_digest(all[i].digest, id);
        cf_err err = {0};
        proto_image_ref ref;
        int scheme;
        const char *origin =
            origin_parse(all[i].origin, &ref, &scheme, NULL) == 0 ? all[i].origin : "";
        if (task_get(d, id, origin, NULL, 0, &err))
            seeded++;
        else
            cf_debug("seed %s: %s", id, cf_err_str(&err, err.code));
    }
    free(all);
    if (seeded) cf_info("%u cached blob(s) rejoin the mesh as seeds", seeded);
}

int pd_split_host(const char *hostport, char *ip, size_t ipsz, uint16_t *port)
{
    struct sockaddr_storage ss;
    if (proto_addr_parse(hostport, &ss)) return -EINVAL;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        uv_ip4_name(s4, ip, ipsz);
        *port = ntohs(s4->sin_port);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(s6, ip, ipsz);
        *port = ntohs(s6->sin6_port);
    }
    return 0;
}

int peer_daemon_new(uv_loop_t *loop, const struct peer_daemon_opts *o, peer_daemon **out,
                    cf_err *err)
{
    peer_daemon *d = calloc(1, sizeof(*d));
    if (!d) return cf_err_set(err, -ENOMEM, "out of memory");
    d->loop = loop;
    d->o = *o;
    d->next_req_id = 1;
    if (o->input_budget) proto_conn_set_input_budget(o->input_budget);
    if (o->tls_cert && o->tls_key && o->tls_ca) {
        int rc = proto_tls_new(o->tls_cert, o->tls_key, o->tls_ca, &d->tls, err);
        if (rc) {
            free(d);
            return rc;
        }
    }
    const char *adv = o->advertise ? o->advertise : o->listen;
    if (pd_split_host(adv, d->adv_ip, sizeof(d->adv_ip), &d->adv_port)) {
        proto_tls_free(d->tls);
        free(d);
        return cf_err_set(err, -EINVAL, "listen/advertise '%s': expected numeric ip:port", adv);
    }
    if (o->n_schedulers && (strcmp(d->adv_ip, "0.0.0.0") == 0 || strcmp(d->adv_ip, "::") == 0)) {
        proto_tls_free(d->tls);
        free(d);
        return cf_err_set(err, -EINVAL,
                          "listening on %s: set 'advertise' to the address other peers reach", adv);
    }
    /* with TLS a scheduler checks that the announced IP is the link's source: connect from it
     * (not when 'advertise' names another address, e.g. behind NAT) */
    if (d->tls && !o->advertise && strcmp(d->adv_ip, "0.0.0.0") != 0 &&
        strcmp(d->adv_ip, "::") != 0 &&
        (uv_ip4_addr(d->adv_ip, 0, (struct sockaddr_in *)&d->mesh_src) == 0 ||
         uv_ip6_addr(d->adv_ip, 0, (struct sockaddr_in6 *)&d->mesh_src) == 0))
        d->has_mesh_src = 1;
    if (o->host_id)
        snprintf(d->host_id, sizeof(d->host_id), "%s", o->host_id);
    else if (d->tls) /* the id the scheduler will accept */
        snprintf(d->host_id, sizeof(d->host_id), "%s", proto_tls_identity(d->tls));
    else
        snprintf(d->host_id, sizeof(d->host_id), "peer-%s", adv);
    if (d->tls && strcmp(d->host_id, proto_tls_identity(d->tls)) != 0)
        cf_warn("host_id '%s' differs from the identity '%s' of tls_cert: schedulers and peers "
                "will refuse it",
                d->host_id, proto_tls_identity(d->tls));
#ifdef CHUNKFLY_FAULTS
    const char *f = getenv("CHUNKFLY_FAULT_CORRUPT_UPLOAD");
    d->faults_corrupt = f && strcmp(f, "1") == 0;
    if (d->faults_corrupt) cf_warn("TEST FAULT: this peer corrupts every piece it uploads");
    f = getenv("CHUNKFLY_FAULT_NO_DIGEST_PUBLISH");
    d->faults_no_publish = f && strcmp(f, "1") == 0;
    if (d->faults_no_publish) cf_warn("TEST FAULT: this peer never publishes a digest list");
#endif
    peer_store_opts so = {
        .dir = o->cache_dir, .quota_high = o->quota_high, .quota_low = o->quota_low};
    int rc = peer_store_open(&so, &d->store, err);
    if (rc) {
        proto_tls_free(d->tls);
        free(d);
        return rc;
    }
    peer_token_bucket_init(&d->bucket, o->upload_bw, o->upload_bw ? o->upload_bw / 4 + 1 : 0,
                           uv_now(loop));
    uv_timer_init(loop, &d->tick_timer);
    d->tick_timer.data = d;
    uv_timer_init(loop, &d->bucket_timer);
    d->bucket_timer.data = d;
    /* the core: scheduler client and parent connections report to it */
    rc = tasks_init(d, err);
    if (!rc) rc = peer_access_start(d, err);
    if (!rc) rc = upload_server_start(d, err);
    if (!rc) rc = local_api_start(d, err);
    if (!rc && o->http) rc = peer_http_start(d, err);
    if (!rc) rc = mirror_start(d, err);
    if (rc) {
        peer_daemon_stop(d);
        uv_run(loop, UV_RUN_DEFAULT);
        peer_daemon_free(d);
        return rc;
    }
    uv_timer_start(&d->tick_timer, on_tick, PEER_TICK_MS, PEER_TICK_MS);
    if (o->n_schedulers) seed_cached(d);
    cf_info("peer %s: upload %s%s, local API %s, %zu scheduler(s), cache %s", d->host_id, o->listen,
            d->tls ? " (mutual TLS)" : "", o->api_socket, o->n_schedulers, o->cache_dir);
    *out = d;
    return 0;
}

int peer_daemon_reload_tls(peer_daemon *d, cf_err *err)
{
    if (!d->tls) return 0;
    proto_tls *t = NULL;
    int rc = proto_tls_new(d->o.tls_cert, d->o.tls_key, d->o.tls_ca, &t, err);
    if (rc) return rc;
    if (strcmp(proto_tls_identity(t), proto_tls_identity(d->tls)) != 0) {
        rc = cf_err_set(err, -EINVAL,
                        "new tls_cert names '%s', not '%s': the host id cannot change while "
                        "running (restart the peer)",
                        proto_tls_identity(t), proto_tls_identity(d->tls));
        proto_tls_free(t);
        return rc;
    }
    proto_tls_free(d->tls); /* open conns hold their own reference to the old context */
    d->tls = t;
    return 0;
}

void peer_daemon_stop(peer_daemon *d)
{
    if (d->stopping) return;
    d->stopping = 1;
    uv_timer_stop(&d->tick_timer);
    uv_close((uv_handle_t *)&d->tick_timer, NULL);
    uv_close((uv_handle_t *)&d->bucket_timer, NULL);
    local_api_stop(d);
    upload_server_stop(d);
    peer_http_stop(d);
    mirror_stop(d);
    peer_access_stop(d); /* after every front end that asks it */
    tasks_stop(d);
    pconn_close_all(d);
    sched_client_stop(d);
}

void peer_daemon_free(peer_daemon *d)
{
    if (!d) return;
    tasks_free(d);
    origin_clients_free(d);
    peer_store_close(d->store); /* flushes the index */
    sched_client_free(d);
    proto_tls_free(d->tls);
    free(d);
}
