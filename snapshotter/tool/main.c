/* chunkfly-snapshotter: containerd's proxy snapshotter for Nydus images (and ordinary ones). */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "cf/config.h"
#include "cf/grpc.h"
#include "cf/log.h"
#include "proto/http_server.h"
#include "service.h"

#define DEF_ADDRESS  "/run/chunkfly/snapshotter.sock"
#define DEF_ROOT     "/var/lib/chunkfly/snapshotter"
#define SUPERVISE_MS 500

static void usage(FILE *f)
{
    fprintf(
        f, "usage: chunkfly-snapshotter [options]\n"
           "containerd's proxy snapshotter \"chunkfly\": Nydus images start lazily over a shared\n"
           "chunkfly-mount (data layers are never downloaded, only the bootstrap layer is\n"
           "unpacked); ordinary images work as with the overlayfs snapshotter.\n"
           "  --config FILE         config file (key = value; keys as the long options, e.g.\n"
           "                        address, root, peer, mount_bin, fs_driver, plain_http,\n"
           "                        docker_config, metrics_listen, log_level)\n"
           "  --address SOCKET      gRPC socket for containerd (default " DEF_ADDRESS ")\n"
           "  --root DIR            state: snapshots, LMDB, blob cache (default " DEF_ROOT ")\n"
           "  --peer SOCKET         read blobs through the local chunkfly-peer (its API socket),\n"
           "                        the registry as fallback\n"
           "  --mount-bin PATH      chunkfly-mount to run (default: next to this binary, or PATH)\n"
           "  --fs-driver D         fuse (default: one shared FUSE chunkfly-mount) or erofs (the\n"
           "                        kernel's EROFS per image over FUSE-served blob files)\n"
           "  --plain-http HOST:PORT  speak http to this registry (repeatable)\n"
           "  --docker-config FILE  registry credentials (default $DOCKER_CONFIG/config.json or\n"
           "                        ~/.docker/config.json)\n"
           "  --metrics-listen HOST:PORT  Prometheus GET /metrics\n"
           "  --log-level L         trace|debug|info|warn|error (default info)\n"
           "  --version, --help\n"
           "containerd config (1.6): [proxy_plugins.chunkfly] type = \"snapshot\"\n"
           "  address = \"" DEF_ADDRESS "\"   (see docs/snapshotter.md)\n");
}

static const char *const keys[] = {"address",   "root",       "peer",          "mount_bin",
                                   "fs_driver", "plain_http", "docker_config", "metrics_listen",
                                   "log_level", NULL};

typedef struct app {
    uv_loop_t *loop;
    snap_core *core;
    cf_grpc_server *grpc;
    proto_http_server *metrics;
    uv_timer_t timer;
    uv_signal_t sigterm, sigint;
    uv_work_t check;
    int checking, stopping;
} app;

static void check_run(uv_work_t *w)
{
    app *a = w->data;
    cf_err e = {0};
    int rc = snap_core_check_mountd(a->core, &e);
    if (rc < 0)
        cf_error("restarting chunkfly-mount: %s", cf_err_str(&e, rc));
    else if (rc == 1)
        cf_info("chunkfly-mount restarted, images re-attached");
}

static void check_done(uv_work_t *w, int status)
{
    (void)status;
    ((app *)w->data)->checking = 0;
}

static void on_timer(uv_timer_t *t)
{
    app *a = t->data;
    if (a->checking || a->stopping) return;
    a->checking = 1;
    a->check.data = a;
    if (uv_queue_work(a->loop, &a->check, check_run, check_done)) a->checking = 0;
}

static void on_metrics(proto_http_res *res, const proto_http_req *req, void *arg)
{
    (void)req;
    app *a = arg;
    snap_core_stats s;
    snap_core_get_stats(a->core, &s);
    char body[1600];
    int n = snprintf(
        body, sizeof(body),
        "# HELP chunkfly_snapshotter_snapshots Snapshots stored.\n"
        "# TYPE chunkfly_snapshotter_snapshots gauge\n"
        "chunkfly_snapshotter_snapshots %llu\n"
        "# HELP chunkfly_snapshotter_images_mounted Nydus images attached to chunkfly-mount.\n"
        "# TYPE chunkfly_snapshotter_images_mounted gauge\n"
        "chunkfly_snapshotter_images_mounted %llu\n"
        "# HELP chunkfly_snapshotter_mount_seconds Time to attach an image (sum and count).\n"
        "# TYPE chunkfly_snapshotter_mount_seconds summary\n"
        "chunkfly_snapshotter_mount_seconds_sum %.6f\n"
        "chunkfly_snapshotter_mount_seconds_count %llu\n"
        "# HELP chunkfly_snapshotter_mount_errors_total Image attach failures.\n"
        "# TYPE chunkfly_snapshotter_mount_errors_total counter\n"
        "chunkfly_snapshotter_mount_errors_total %llu\n"
        "# HELP chunkfly_snapshotter_mountd_restarts_total chunkfly-mount (re)starts.\n"
        "# TYPE chunkfly_snapshotter_mountd_restarts_total counter\n"
        "chunkfly_snapshotter_mountd_restarts_total %llu\n"
        "# HELP chunkfly_snapshotter_errors_total Failed snapshot operations.\n"
        "# TYPE chunkfly_snapshotter_errors_total counter\n"
        "chunkfly_snapshotter_errors_total %llu\n",
        (unsigned long long)s.snapshots, (unsigned long long)s.images_attached,
        (double)s.attach_ns_total / 1e9, (unsigned long long)s.attach_total,
        (unsigned long long)s.attach_errors, (unsigned long long)s.mountd_restarts,
        (unsigned long long)s.errors);
    proto_http_respond(res, 200, "text/plain; version=0.0.4", body,
                       n < (int)sizeof(body) ? (size_t)n : sizeof(body) - 1);
}

static void stop(app *a)
{
    if (a->stopping) return;
    a->stopping = 1;
    cf_info("stopping (chunkfly-mount keeps running: containers keep reading)");
    uv_timer_stop(&a->timer);
    uv_close((uv_handle_t *)&a->timer, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    cf_grpc_server_close(a->grpc, NULL, NULL);
    a->grpc = NULL;
    if (a->metrics) proto_http_server_close(a->metrics, NULL, NULL);
    a->metrics = NULL;
}

static void on_signal(uv_signal_t *s, int sig)
{
    (void)sig;
    stop(s->data);
}

static int fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "chunkfly-snapshotter: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 2;
}

/* Default chunkfly-mount: the one installed beside this binary, else from PATH. */
static char *find_mount_bin(const char *opt)
{
    char buf[PATH_MAX];
    if (opt) return realpath(opt, NULL);
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 32);
    if (n > 0) {
        buf[n] = 0;
        char *slash = strrchr(buf, '/');
        if (slash) {
            strcpy(slash + 1, "chunkfly-mount");
            if (access(buf, X_OK) == 0) return strdup(buf);
        }
    }
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        snprintf(buf, sizeof(buf), "%.*s/chunkfly-mount", (int)len, path);
        if (len && access(buf, X_OK) == 0) return strdup(buf);
        path = end ? end + 1 : NULL;
    }
    return NULL;
}

static int mkdir_parent(const char *path)
{
    char *d = strdup(path), *s = d ? strrchr(d, '/') : NULL;
    if (s && s != d) {
        *s = 0;
        for (char *p = d + 1; *p; p++)
            if (*p == '/') {
                *p = 0;
                mkdir(d, 0755);
                *p = '/';
            }
        mkdir(d, 0755);
    }
    free(d);
    return 0;
}

static int run(int argc, char **argv, cf_config *cfg, cf_config *flags)
{
    enum {
        O_CONFIG = 256,
        O_ADDRESS,
        O_ROOT,
        O_PEER,
        O_MOUNT_BIN,
        O_FS_DRIVER,
        O_PLAIN_HTTP,
        O_DOCKER_CONFIG,
        O_METRICS,
        O_LOG_LEVEL,
        O_VERSION,
        O_HELP
    };
    static const struct option lo[] = {{"config", required_argument, NULL, O_CONFIG},
                                       {"address", required_argument, NULL, O_ADDRESS},
                                       {"root", required_argument, NULL, O_ROOT},
                                       {"peer", required_argument, NULL, O_PEER},
                                       {"mount-bin", required_argument, NULL, O_MOUNT_BIN},
                                       {"fs-driver", required_argument, NULL, O_FS_DRIVER},
                                       {"plain-http", required_argument, NULL, O_PLAIN_HTTP},
                                       {"docker-config", required_argument, NULL, O_DOCKER_CONFIG},
                                       {"metrics-listen", required_argument, NULL, O_METRICS},
                                       {"log-level", required_argument, NULL, O_LOG_LEVEL},
                                       {"version", no_argument, NULL, O_VERSION},
                                       {"help", no_argument, NULL, O_HELP},
                                       {NULL, 0, NULL, 0}};
    const char *config_file = NULL;
    int ret = 2;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        const char *k = NULL;
        switch (opt) {
        case O_CONFIG:
            config_file = optarg;
            continue;
        case O_ADDRESS:
            k = "address";
            break;
        case O_ROOT:
            k = "root";
            break;
        case O_PEER:
            k = "peer";
            break;
        case O_MOUNT_BIN:
            k = "mount_bin";
            break;
        case O_FS_DRIVER:
            k = "fs_driver";
            break;
        case O_PLAIN_HTTP:
            cf_config_add(flags, "plain_http", optarg);
            continue;
        case O_DOCKER_CONFIG:
            k = "docker_config";
            break;
        case O_METRICS:
            k = "metrics_listen";
            break;
        case O_LOG_LEVEL:
            k = "log_level";
            break;
        case O_VERSION:
            printf("chunkfly-snapshotter %s\n", CHUNKFLY_VERSION);
            return 0;
        case 'h':
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        cf_config_set(flags, k, optarg);
    }
    if (optind < argc) return fail("unexpected argument '%s'%s (see --help)", argv[optind], "");
    cf_err err = {0};
    if (config_file && cf_config_load(cfg, config_file, &err)) return fail("%s%s", err.msg, "");
    if (cf_config_check_keys(cfg, keys, &err)) return fail("%s%s", err.msg, "");
    /* Flags override the file; plain_http from both adds up. */
    if (cf_config_override(cfg, flags, keys, "plain_http"))
        return fail("%s%s", "out of memory", "");
    const char *lvl = cf_config_get(cfg, "log_level");
    enum cf_log_level level = CF_LOG_INFO;
    if (lvl && cf_log_parse_level(lvl, &level)) return fail("unknown log level '%s'%s", lvl, "");
    cf_log_set_level(level);
    cf_log_set_ident("snapshotter");
    const char *drv = cf_config_get(cfg, "fs_driver");
    if (drv && strcmp(drv, "fuse") && strcmp(drv, "erofs"))
        return fail("fs_driver '%s'%s: expected fuse or erofs", drv, "");
    const char *address = cf_config_get(cfg, "address");
    const char *root = cf_config_get(cfg, "root");
    address = address ? address : DEF_ADDRESS;
    root = root ? root : DEF_ROOT;
    char *mount_bin = find_mount_bin(cf_config_get(cfg, "mount_bin"));
    if (!mount_bin)
        return fail("chunkfly-mount not found%s%s: install it beside chunkfly-snapshotter or "
                    "give --mount-bin",
                    cf_config_get(cfg, "mount_bin") ? " at " : "",
                    cf_config_get(cfg, "mount_bin") ? cf_config_get(cfg, "mount_bin") : "");
    size_t nplain = cf_config_count(cfg, "plain_http");
    const char **plain = calloc(nplain + 1, sizeof(*plain));
    for (size_t i = 0; plain && i < nplain; i++) plain[i] = cf_config_get_nth(cfg, "plain_http", i);
    signal(SIGPIPE, SIG_IGN);
    mkdir_parent(root);
    mkdir_parent(address);

    app a = {0};
    a.loop = uv_default_loop();
    snap_core_opts co = {.root = root,
                         .mount_bin = mount_bin,
                         .fs_driver = drv ? drv : "fuse",
                         .peer_socket = cf_config_get(cfg, "peer"),
                         .docker_config = cf_config_get(cfg, "docker_config"),
                         .plain_http = plain,
                         .supervise = 1};
    int rc = snap_core_open(&co, &a.core, &err);
    if (rc) {
        ret = fail("%s%s", cf_err_str(&err, rc), "");
        goto out;
    }
    /* A restart finds its snapshots in LMDB; images that running containers use are
     * re-attached (or found still attached in the surviving chunkfly-mount). */
    rc = snap_core_recover(a.core, &err);
    if (rc) cf_warn("recovery: %s", cf_err_str(&err, rc));
    rc = cf_grpc_server_new(a.loop, NULL, &a.grpc, &err);
    if (!rc) rc = snap_service_register(a.grpc, a.core, &err);
    if (!rc) rc = cf_grpc_server_listen_unix(a.grpc, address, 0600, &err);
    if (rc) {
        ret = fail("%s%s", cf_err_str(&err, rc), "");
        goto out;
    }
    const char *ml = cf_config_get(cfg, "metrics_listen");
    if (ml) {
        char host[256];
        const char *colon = strrchr(ml, ':');
        int port = colon ? atoi(colon + 1) : 0;
        if (!colon || !colon[1] || port < 0 || port > 65535 ||
            (size_t)(colon - ml) >= sizeof(host)) {
            ret = fail("metrics_listen '%s'%s: expected HOST:PORT", ml, "");
            goto out;
        }
        snprintf(host, sizeof(host), "%.*s", (int)(colon - ml), ml);
        rc = proto_http_server_new(a.loop, NULL, &a.metrics);
        if (!rc) rc = proto_http_route(a.metrics, "GET", "/metrics", on_metrics, &a);
        if (!rc) rc = proto_http_listen(a.metrics, host, port, &err);
        if (rc) {
            ret = fail("metrics on %s: %s", ml, cf_err_str(&err, rc));
            goto out;
        }
    }
    uv_timer_init(a.loop, &a.timer);
    a.timer.data = &a;
    uv_timer_start(&a.timer, on_timer, SUPERVISE_MS, SUPERVISE_MS);
    uv_signal_init(a.loop, &a.sigterm);
    uv_signal_init(a.loop, &a.sigint);
    a.sigterm.data = a.sigint.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    cf_info("serving containerd's snapshots API on %s (root %s, chunkfly-mount %s%s%s)", address,
            root, mount_bin, co.peer_socket ? ", through the peer at " : "",
            co.peer_socket ? co.peer_socket : "");
    uv_run(a.loop, UV_RUN_DEFAULT);
    ret = 0;
out:
    if (a.grpc || a.metrics) {
        a.stopping = 1;
        if (a.grpc) cf_grpc_server_close(a.grpc, NULL, NULL);
        if (a.metrics) proto_http_server_close(a.metrics, NULL, NULL);
        uv_run(a.loop, UV_RUN_DEFAULT);
    }
    snap_core_close(a.core);
    uv_loop_close(a.loop);
    free(plain);
    free(mount_bin);
    return ret;
}

/* The two configs are freed here, whatever path run() returns by (--help, errors...). */
int main(int argc, char **argv)
{
    cf_config *cfg = cf_config_new(), *flags = cf_config_new();
    int rc = cfg && flags ? run(argc, argv, cfg, flags) : fail("%s%s", "out of memory", "");
    cf_config_free(cfg);
    cf_config_free(flags);
    return rc;
}
