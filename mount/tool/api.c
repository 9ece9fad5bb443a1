/* chunkfly-mount's API (api.h): routes, JSON answers, the unix socket listener. */
#include "api.h"
#include "api_body.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "cf/log.h"
#include "instance.h"
#include "mount_tool.h"
#include "proto/http_server.h"

struct mount_api {
    mount_fs *fs;
    struct mount_api_info info;
    char *sock_path;
    int listen_fd;
    uv_loop_t loop;
    uv_poll_t poll;
    uv_async_t stop;
    proto_http_server *srv;
    proto_http_server *msrv; /* Prometheus /metrics on TCP, or NULL */
    bool polling;
    pthread_t th;
};

/* ---- answers ------------------------------------------------------------------------------- */

static void reply_json(proto_http_res *res, int status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!s) {
        proto_http_respond(res, 500, "application/json", "{}", 2);
        return;
    }
    proto_http_respond(res, status, "application/json", s, strlen(s));
    free(s);
}

static void reply_err(proto_http_res *res, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_err(proto_http_res *res, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_json(res, status, json_pack("{s:s, s:s}", "code", code, "message", msg));
}

static void reply_204(proto_http_res *res)
{
    proto_http_respond(res, 204, NULL, NULL, 0);
}

/* The image a request names with ?id=/<name> or ?mountpoint=/<name> ("" = dedicated image or
 * all). Returns 0, or -ENOENT/-EINVAL after answering. */
static int query_name(proto_http_res *res, const proto_http_req *req, const char *key,
                      bool required, char *out, size_t cap)
{
    char v[512];
    int n = proto_http_query_get(req->query, key, v, sizeof(v));
    if (n == -ENOENT && !required) {
        out[0] = 0;
        return 0;
    }
    if (n < 0) {
        reply_err(res, 400, "InvalidArgument", "query parameter %s=/<name> %s", key,
                  n == -ENOENT ? "is required" : "is malformed");
        return -EINVAL;
    }
    const char *name = v;
    while (*name == '/') name++;
    snprintf(out, cap, "%s", name);
    return 0;
}

/* ---- finding images ------------------------------------------------------------------------ */

struct find {
    const char *name;
    const rafs_image *img;
    const mount_blob_cache *cache;
    struct instance *inst;
    unsigned count;
};

static void find_visit(const char *name, const rafs_image *img, const mount_blob_cache *cache,
                       void *owner, void *ctx)
{
    struct find *f = ctx;
    f->count++;
    if (f->name && strcmp(f->name, name)) return;
    f->img = img;
    f->cache = cache;
    f->inst = owner;
}

/* ---- handlers ------------------------------------------------------------------------------ */

static json_t *version_json(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "package_ver", CHUNKFLY_VERSION, "git_commit",
                     CHUNKFLY_GIT_COMMIT, "build_time", __DATE__ " " __TIME__, "profile", "release",
                     "rustc", "none (chunkfly-mount is C)");
}

static void collect_backend(const char *name, const rafs_image *img, const mount_blob_cache *cache,
                            void *owner, void *ctx)
{
    (void)img, (void)cache;
    json_object_set_new(ctx, name[0] ? name : "/",
                        json_pack("{s:s}", "bootstrap", instance_bootstrap(owner)));
}

static void h_daemon(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req;
    struct mount_api *a = arg;
    json_t *mounts = json_object();
    mount_fs_foreach(a->fs, collect_backend, mounts);
    json_t *o = json_pack("{s:s, s:o, s:s, s:o}", "id", a->info.id ? a->info.id : "", "version",
                          version_json(), "state", "RUNNING", "backend_collection", mounts);
    json_object_set_new(o, "supervisor",
                        a->info.supervisor ? json_string(a->info.supervisor) : json_null());
    reply_json(res, 200, o);
}

static void h_exit(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req, (void)arg;
    reply_204(res);
    kill(getpid(), SIGTERM); /* the signal thread unmounts and ends the daemon */
}

static void h_mount_post(proto_http_res *res, const proto_http_req *req, void *arg)
{
    struct mount_api *a = arg;
    char name[512];
    if (query_name(res, req, "mountpoint", true, name, sizeof(name))) return;
    if (!a->info.shared) {
        reply_err(res, 409, "Conflict",
                  "this daemon was started with --bootstrap (dedicated mode) and serves one "
                  "image; start it without --bootstrap to attach images");
        return;
    }
    struct mount_api_mount_body b;
    cf_err perr = {0};
    int prc = mount_api_parse_mount_body(req->body, req->body_len, &b, &perr);
    if (prc) {
        reply_err(res, prc == -ENOMEM ? 500 : 400,
                  prc == -ENOTSUP ? "Unsupported" : "InvalidArgument", "%s",
                  cf_err_str(&perr, prc));
    } else if (!b.config && !a->info.blob_dir) {
        reply_err(res, 400, "InvalidArgument",
                  "body: \"config\" (nydusd JSON as a string) is missing");
    } else if (!name[0] || strchr(name, '/')) {
        reply_err(res, 400, "InvalidArgument", "mountpoint must be /<name> (one component)");
    } else {
        struct instance_params p = {.bootstrap = b.source,
                                    .config_json = b.config,
                                    .blob_dir = a->info.blob_dir,
                                    .cache_dir = a->info.cache_dir,
                                    .prefetch = (const char *const *)b.prefetch,
                                    .nprefetch = b.nprefetch};
        rafs_image *img;
        mount_blob_cache *cache;
        struct instance *inst;
        cf_err err = {0};
        int rc = instance_open(&p, &img, &cache, &inst, &err);
        if (!rc) {
            rc = mount_fs_attach(a->fs, name, img, cache, instance_release, inst, &err);
            if (!rc) {
                cf_info("attached %s at /%s", b.source, name);
                struct find f = {.name = name};
                mount_fs_foreach(a->fs, find_visit, &f);
                if (f.inst) instance_start_prefetch(f.inst);
            }
        }
        if (rc == 0)
            reply_204(res);
        else
            reply_err(res,
                      rc == -EEXIST   ? 409
                      : rc == -ENOMEM ? 500
                                      : 400,
                      rc == -EEXIST ? "AlreadyExists" : "InvalidArgument", "%s",
                      cf_err_str(&err, rc));
    }
    mount_api_mount_body_free(&b);
}

static void h_mount_delete(proto_http_res *res, const proto_http_req *req, void *arg)
{
    struct mount_api *a = arg;
    char name[512];
    if (query_name(res, req, "mountpoint", true, name, sizeof(name))) return;
    if (!a->info.shared) {
        reply_err(res, 409, "Conflict",
                  "dedicated mode: the image is detached by stopping "
                  "the daemon (SIGTERM or PUT /api/v1/daemon/exit)");
        return;
    }
    struct find f = {.name = name};
    mount_fs_foreach(a->fs, find_visit, &f);
    if (!f.inst) {
        reply_err(res, 404, "NotFound", "/%s is not mounted", name);
        return;
    }
    instance_stop_prefetch(f.inst); /* before its cache goes */
    cf_err err = {0};
    int rc = mount_fs_detach(a->fs, name, &err);
    if (rc)
        reply_err(res, 404, "NotFound", "%s", cf_err_str(&err, rc));
    else {
        cf_info("detached /%s", name);
        reply_204(res);
    }
}

static void h_mount_put(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req, (void)arg;
    reply_err(res, 501, "Unsupported",
              "remounting (PUT /api/v1/mount) is not supported: DELETE "
              "then POST");
}

static void add_stats(json_t *o, const struct mount_blob_cache_stats *s)
{
    json_object_set_new(o, "data_read", json_integer((json_int_t)s->bytes_read));
    json_object_set_new(o, "backend_reads", json_integer((json_int_t)s->backend_reads));
    json_object_set_new(o, "backend_bytes", json_integer((json_int_t)s->backend_bytes));
    json_object_set_new(o, "backend_errors", json_integer((json_int_t)s->backend_errors));
    json_object_set_new(o, "chunks_fetched", json_integer((json_int_t)s->chunks_fetched));
    json_object_set_new(o, "chunks_verified", json_integer((json_int_t)s->chunks_fetched));
    json_object_set_new(o, "chunks_from_cache", json_integer((json_int_t)s->chunks_hit));
    json_object_set_new(o, "chunks_waited", json_integer((json_int_t)s->chunks_waited));
    json_object_set_new(o, "verify_failures", json_integer((json_int_t)s->verify_failures));
    json_object_set_new(o, "reads", json_integer((json_int_t)s->reads));
    json_object_set_new(o, "read_latency_us_avg",
                        json_integer(s->reads ? (json_int_t)(s->read_ns / s->reads / 1000) : 0));
    json_object_set_new(o, "chunks_ready", json_integer((json_int_t)s->chunks_ready));
    json_object_set_new(o, "chunks_total", json_integer((json_int_t)s->chunks_total));
}

struct sum {
    struct mount_blob_cache_stats s;
};
static void sum_visit(const char *name, const rafs_image *img, const mount_blob_cache *cache,
                      void *owner, void *ctx)
{
    (void)name, (void)img, (void)owner;
    struct sum *sum = ctx;
    struct mount_blob_cache_stats s;
    mount_blob_cache_get_stats(cache, &s);
    uint64_t *d = (uint64_t *)&sum->s, *x = (uint64_t *)&s;
    for (size_t i = 0; i < sizeof(s) / sizeof(uint64_t); i++) d[i] += x[i];
}

static void h_metrics(proto_http_res *res, const proto_http_req *req, void *arg)
{
    struct mount_api *a = arg;
    char name[512];
    if (query_name(res, req, "id", false, name, sizeof(name))) return;
    struct mount_blob_cache_stats s;
    if (name[0]) {
        struct find f = {.name = name};
        mount_fs_foreach(a->fs, find_visit, &f);
        if (!f.cache) {
            reply_err(res, 404, "NotFound", "/%s is not mounted", name);
            return;
        }
        mount_blob_cache_get_stats(f.cache, &s);
    } else {
        struct sum sum = {{0}};
        mount_fs_foreach(a->fs, sum_visit, &sum);
        s = sum.s;
    }
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(name[0] ? name : "/"));
    add_stats(o, &s);
    reply_json(res, 200, o);
}

static void h_metrics_blobcache(proto_http_res *res, const proto_http_req *req, void *arg)
{
    struct mount_api *a = arg;
    char name[512];
    if (query_name(res, req, "id", false, name, sizeof(name))) return;
    struct find f = {.name = name[0] || a->info.shared ? name : ""};
    mount_fs_foreach(a->fs, find_visit, &f);
    if (!f.cache) {
        reply_err(res, 404, "NotFound", "/%s is not mounted", name);
        return;
    }
    json_t *files = json_array();
    for (uint32_t i = 0; i < rafs_image_blob_count(f.img); i++) {
        const char *p = mount_blob_cache_data_path(f.cache, i);
        if (!p) continue;
        char map[4200];
        snprintf(map, sizeof(map), "%s.chunk_map", p);
        json_array_append_new(files, json_string(p));
        json_array_append_new(files, json_string(map));
    }
    struct mount_blob_cache_stats s;
    mount_blob_cache_get_stats(f.cache, &s);
    json_t *o = json_pack("{s:s, s:o}", "id", name[0] ? name : "/", "underlying_files", files);
    add_stats(o, &s);
    reply_json(res, 200, o);
}

static void h_metrics_backend(proto_http_res *res, const proto_http_req *req, void *arg)
{
    struct mount_api *a = arg;
    char name[512];
    if (query_name(res, req, "id", false, name, sizeof(name))) return;
    struct find f = {.name = name[0] || a->info.shared ? name : ""};
    mount_fs_foreach(a->fs, find_visit, &f);
    if (!f.inst) {
        reply_err(res, 404, "NotFound", "/%s is not mounted", name);
        return;
    }
    struct instance_backend_stats b;
    json_t *o = json_object();
    if (instance_backend_stats(f.inst, &b)) {
        json_object_set_new(o, "bytes_from_proxy", json_integer((json_int_t)b.bytes_from_proxy));
        json_object_set_new(o, "bytes_from_registry",
                            json_integer((json_int_t)b.bytes_from_registry));
        json_object_set_new(o, "bytes_from_localfs",
                            json_integer((json_int_t)b.bytes_from_localfs));
        json_object_set_new(o, "requests", json_integer((json_int_t)b.requests));
        json_object_set_new(o, "errors", json_integer((json_int_t)b.errors));
        json_object_set_new(o, "fallbacks", json_integer((json_int_t)b.fallbacks));
        json_object_set_new(o, "proxy_healthy", json_integer(b.proxy_healthy));
    }
    reply_json(res, 200, o);
}

static void h_inflight(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req, (void)arg;
    reply_204(res); /* no per-request tracking yet: "nothing in flight" is nydusd's 204 */
}

static void h_config_put(proto_http_res *res, const proto_http_req *req, void *arg)
{
    struct mount_api *a = arg;
    char name[512];
    if (query_name(res, req, "id", false, name, sizeof(name))) return;
    char *auth;
    cf_err perr = {0};
    int prc = mount_api_parse_config_body(req->body, req->body_len, &auth, &perr);
    if (prc) {
        reply_err(res, prc == -ENOMEM ? 500 : 400, "InvalidArgument", "%s", cf_err_str(&perr, prc));
        return;
    }
    struct find f = {.name = name[0] || a->info.shared ? name : ""};
    mount_fs_foreach(a->fs, find_visit, &f);
    cf_err err = {0};
    int rc = f.inst ? instance_set_auth(f.inst, auth, &err) : -ENOENT;
    free(auth);
    if (rc == -ENOENT)
        reply_err(res, 404, "NotFound", "/%s is not mounted", name);
    else if (rc)
        reply_err(res, 400, "InvalidArgument", "%s", cf_err_str(&err, rc));
    else
        reply_204(res);
}

static void h_unknown(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)arg;
    static const char *const known[] = {"/api/v1/daemon",
                                        "/api/v1/daemon/exit",
                                        "/api/v1/mount",
                                        "/api/v1/metrics",
                                        "/api/v1/metrics/blobcache",
                                        "/api/v1/metrics/backend",
                                        "/api/v1/metrics/inflight",
                                        "/api/v1/config",
                                        "/api/v2/daemon"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (!strcmp(req->path, known[i])) {
            reply_err(res, 405, "MethodNotAllowed", "%s %s is not supported", req->method,
                      req->path);
            return;
        }
    reply_err(res, 404, "NotFound", "no such API endpoint: %s %s", req->method, req->path);
}

/* ---- Prometheus ---------------------------------------------------------------------------- */

struct prom {
    char *buf;
    size_t len, cap;
};

static void prom_add(struct prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void prom_add(struct prom *p, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(p->buf ? p->buf + p->len : NULL, p->buf ? p->cap - p->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (p->buf && p->len + (size_t)n < p->cap) {
            p->len += (size_t)n;
            return;
        }
        size_t cap = (p->cap ? p->cap * 2 : 4096) + (size_t)n;
        char *nb = realloc(p->buf, cap);
        if (!nb) return;
        p->buf = nb;
        p->cap = cap;
    }
}

static void prom_visit(const char *name, const rafs_image *img, const mount_blob_cache *cache,
                       void *owner, void *ctx)
{
    (void)img;
    struct prom *p = ctx;
    struct mount_blob_cache_stats s;
    mount_blob_cache_get_stats(cache, &s);
    char label[300];
    snprintf(label, sizeof(label), "{image=\"/%s\"}", name);
    prom_add(p, "chunkfly_mount_bytes_read_total%s %llu\n", label,
             (unsigned long long)s.bytes_read);
    prom_add(p, "chunkfly_mount_chunks_fetched_total%s %llu\n", label,
             (unsigned long long)s.chunks_fetched);
    prom_add(p, "chunkfly_mount_chunks_verified_total%s %llu\n", label,
             (unsigned long long)s.chunks_fetched);
    prom_add(p, "chunkfly_mount_chunks_from_cache_total%s %llu\n", label,
             (unsigned long long)s.chunks_hit);
    prom_add(p, "chunkfly_mount_verify_failures_total%s %llu\n", label,
             (unsigned long long)s.verify_failures);
    prom_add(p, "chunkfly_mount_backend_bytes_total%s %llu\n", label,
             (unsigned long long)s.backend_bytes);
    prom_add(p, "chunkfly_mount_backend_errors_total%s %llu\n", label,
             (unsigned long long)s.backend_errors);
    prom_add(p, "chunkfly_mount_read_seconds_sum%s %.6f\n", label, (double)s.read_ns / 1e9);
    prom_add(p, "chunkfly_mount_read_seconds_count%s %llu\n", label, (unsigned long long)s.reads);
    prom_add(p, "chunkfly_mount_chunks_ready%s %llu\n", label, (unsigned long long)s.chunks_ready);
    struct instance_backend_stats b;
    if (instance_backend_stats(owner, &b)) {
        prom_add(p, "chunkfly_mount_backend_fallbacks_total%s %llu\n", label, b.fallbacks);
        prom_add(p, "chunkfly_mount_backend_proxy_bytes_total%s %llu\n", label, b.bytes_from_proxy);
        prom_add(p, "chunkfly_mount_backend_registry_bytes_total%s %llu\n", label,
                 b.bytes_from_registry);
    }
}

static void h_prometheus(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req;
    struct mount_api *a = arg;
    struct prom p = {0};
    prom_add(&p, "# chunkfly-mount metrics, one series per attached image\n");
    mount_fs_foreach(a->fs, prom_visit, &p);
    proto_http_respond(res, 200, "text/plain; version=0.0.4", p.buf ? p.buf : "", p.len);
    free(p.buf);
}

/* ---- the unix socket and the loop thread ----------------------------------------------------- */

static void on_listen(uv_poll_t *h, int status, int events)
{
    struct mount_api *a = h->data;
    if (status < 0 || !(events & UV_READABLE)) return;
    for (;;) {
        int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        if (proto_http_adopt_fd(a->srv, fd) < 0) cf_warn("api: cannot serve a connection");
    }
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_stop(uv_async_t *h)
{
    struct mount_api *a = h->data;
    if (a->srv) proto_http_server_close(a->srv, NULL, NULL);
    if (a->msrv) proto_http_server_close(a->msrv, NULL, NULL);
    a->srv = a->msrv = NULL;
    if (a->polling) uv_close((uv_handle_t *)&a->poll, on_closed);
    uv_close((uv_handle_t *)&a->stop, on_closed);
}

static void *api_main(void *arg)
{
    struct mount_api *a = arg;
    uv_run(&a->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void api_free(struct mount_api *a)
{
    if (a->listen_fd >= 0) close(a->listen_fd);
    free(a->sock_path);
    free(a);
}

static int open_unix(struct mount_api *a, const char *sock, cf_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof(sa.sun_path))
        return cf_err_set(err, -ENAMETOOLONG, "--apisock %s: path too long for a unix socket",
                          sock);
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    if (!(a->sock_path = strdup(sock))) return cf_err_set(err, -ENOMEM, "out of memory");
    a->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct stat st;
    if (lstat(sock, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(sock); /* left by a dead daemon */
    if (a->listen_fd < 0 || bind(a->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(a->listen_fd, 128) < 0)
        return cf_err_set(err, -errno, "--apisock %s: %s", sock, strerror(errno));
    return 0;
}

static void close_all(struct mount_api *a)
{
    if (a->srv) proto_http_server_close(a->srv, NULL, NULL);
    if (a->msrv) proto_http_server_close(a->msrv, NULL, NULL);
    a->srv = a->msrv = NULL;
    if (a->polling) uv_close((uv_handle_t *)&a->poll, on_closed);
    uv_close((uv_handle_t *)&a->stop, on_closed);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    uv_loop_close(&a->loop);
}

int mount_api_start(const char *sock, mount_fs *fs, const struct mount_api_info *info,
                    struct mount_api **out, cf_err *err)
{
    struct mount_api *a = calloc(1, sizeof(*a));
    if (!a) return cf_err_set(err, -ENOMEM, "out of memory");
    a->fs = fs;
    a->info = *info;
    a->listen_fd = -1;
    int rc = sock ? open_unix(a, sock, err) : 0;
    if (rc || uv_loop_init(&a->loop) < 0) {
        if (!rc) rc = cf_err_set(err, -ENOMEM, "api: event loop");
        api_free(a);
        return rc;
    }
    uv_async_init(&a->loop, &a->stop, on_stop);
    a->stop.data = a;
    /* Idle connections stay open (the snapshotter's liveness check). */
    struct proto_http_limits lim;
    proto_http_limits_default(&lim);
    lim.idle_timeout_ms = UINT64_MAX;
    lim.max_body_bytes = 1u << 20;
    if (sock && (rc = proto_http_server_new(&a->loop, &lim, &a->srv))) {
        rc = cf_err_set(err, rc, "api: server");
        goto fail;
    }
    struct {
        const char *m, *p;
        proto_http_handler h;
    } routes[] = {
        {"GET", "/api/v1/daemon", h_daemon},
        {"GET", "/api/v2/daemon", h_daemon},
        {"PUT", "/api/v1/daemon/exit", h_exit},
        {"POST", "/api/v1/mount", h_mount_post},
        {"PUT", "/api/v1/mount", h_mount_put},
        {"DELETE", "/api/v1/mount", h_mount_delete},
        {"GET", "/api/v1/metrics", h_metrics},
        {"GET", "/api/v1/metrics/blobcache", h_metrics_blobcache},
        {"GET", "/api/v1/metrics/backend", h_metrics_backend},
        {"GET", "/api/v1/metrics/inflight", h_inflight},
        {"PUT", "/api/v1/config", h_config_put},
        {"GET", "/*", h_unknown},
        {"PUT", "/*", h_unknown},
        {"POST", "/*", h_unknown},
        {"DELETE", "/*", h_unknown},
        {"PATCH", "/*", h_unknown},
    };
    for (size_t i = 0; a->srv && i < sizeof(routes) / sizeof(routes[0]); i++)
        proto_http_route(a->srv, routes[i].m, routes[i].p, routes[i].h, a);
    if (sock) {
        uv_poll_init(&a->loop, &a->poll, a->listen_fd);
        a->poll.data = a;
        a->polling = true;
        uv_poll_start(&a->poll, UV_READABLE, on_listen);
    }
    if (info->metrics_listen) {
        /* its own server: the API (which attaches and detaches images) never goes on TCP */
        char host[256];
        const char *colon = strrchr(info->metrics_listen, ':');
        int port = colon ? atoi(colon + 1) : 0;
        size_t hl = colon ? (size_t)(colon - info->metrics_listen) : 0;
        if (!colon || hl == 0 || hl >= sizeof(host) || port <= 0 || port > 65535) {
            rc = cf_err_set(err, -EINVAL, "--metrics-listen %s: expected HOST:PORT",
                            info->metrics_listen);
            goto fail;
        }
        memcpy(host, info->metrics_listen, hl);
        host[hl] = 0;
        if ((rc = proto_http_server_new(&a->loop, NULL, &a->msrv))) {
            rc = cf_err_set(err, rc, "metrics: server");
            goto fail;
        }
        proto_http_route(a->msrv, "GET", "/metrics", h_prometheus, a);
        if ((rc = proto_http_listen(a->msrv, host, port, err))) {
            cf_err_wrap(err, rc, "--metrics-listen %s", info->metrics_listen);
            goto fail;
        }
    }
    if (pthread_create(&a->th, NULL, api_main, a)) {
        rc = cf_err_set(err, -EAGAIN, "api: cannot start its thread");
        goto fail;
    }
    if (sock) cf_info("API on %s", sock);
    if (info->metrics_listen)
        cf_info("Prometheus metrics on http://%s/metrics", info->metrics_listen);
    *out = a;
    return 0;
fail:
    close_all(a);
    if (a->sock_path) unlink(a->sock_path);
    api_free(a);
    return rc;
}

void mount_api_stop(struct mount_api *a)
{
    if (!a) return;
    uv_async_send(&a->stop);
    pthread_join(a->th, NULL);
    uv_loop_close(&a->loop);
    if (a->sock_path) unlink(a->sock_path);
    api_free(a);
}
