/* chunkfly-convertd: the conversion service (docs/convertd.md). An acceld-compatible HTTP API
 * and webhook receiver (Harbor, docker-registry notifications) in front of a durable LMDB job
 * queue; worker threads convert with client_convert(). */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api.h"
#include "cf/config.h"
#include "cf/file_io.h"
#include "cf/log.h"
#include "convertd/job_queue.h"
#include "convertd/workers.h"

#define DEF_LISTEN   "127.0.0.1:2077"
#define DEF_WORK_DIR "/var/lib/chunkfly/convertd"
#define DEF_SUFFIX   "-nydus"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: chunkfly-convertd [options]\n"
        "The conversion service: converts OCI images into Nydus images (as `chunkfly convert`)\n"
        "when asked through its acceld-compatible API, Harbor's PUSH_ARTIFACT webhook or\n"
        "docker-registry's notifications; jobs are kept in a durable queue (docs/convertd.md).\n"
        "  --config FILE          config file (key = value; keys as the long options with _,\n"
        "                         e.g. listen, auth_header, workers, work_dir, target_suffix)\n"
        "  --listen HOST:PORT     HTTP API (default " DEF_LISTEN ")\n"
        "  --auth-header VALUE    the Authorization header every POST must carry (prefer the\n"
        "                         config file: a flag shows in ps); unset: POSTs from this host\n"
        "                         only\n"
        "  --auth-header-file F   the same, read from file F (trailing newline dropped): a\n"
        "                         systemd credential or a Kubernetes Secret\n"
        "  --workers N            conversions at the same time (default 2)\n"
        "  --work-dir DIR         layer files, caches and the queue (default " DEF_WORK_DIR ")\n"
        "  --db-dir DIR           the LMDB job queue (default WORK_DIR/queue)\n"
        "  --target-suffix S      target tag = source tag + S (default " DEF_SUFFIX "); sources\n"
        "                         whose tag ends with S are targets and never converted\n"
        "  --target-registry HOST[:PORT]  push targets there (default: the source's registry)\n"
        "  --docker-config FILE   registry credentials (default $DOCKER_CONFIG/config.json or\n"
        "                         ~/.docker/config.json)\n"
        "  --plain-http HOST:PORT speak http to this registry (repeatable; loopback registries\n"
        "                         always are)\n"
        "  --platform OS/ARCH     only this platform of an index (default: every platform)\n"
        "  --max-queue N          jobs queued or running at most (default 1000; more: 503)\n"
        "  --max-attempts N       attempts per job (crashes and transient errors; default 5)\n"
        "  --retry-backoff DUR    first retry delay, doubling up to 60 s (default 2s)\n"
        "  --log-level L          trace|debug|info|warn|error (default info)\n"
        "  --version, --help\n"
        "API: POST /api/v1/conversions[?sync=true] {\"src\": REF, \"target\": REF?} (or a Harbor\n"
        "webhook, or registry notifications), GET /api/v1/conversions, GET /api/v1/health,\n"
        "GET /metrics.\n");
}

static const char *const keys[] = {
    "listen",        "auth_header",     "auth_header_file", "workers",    "work_dir", "db_dir",
    "target_suffix", "target_registry", "docker_config",    "plain_http", "platform", "max_queue",
    "max_attempts",  "retry_backoff",   "log_level",        NULL};

typedef struct app {
    uv_loop_t *loop;
    pthread_mutex_t mu; /* guards api against the workers' notify */
    cvd_api *api;
    uv_signal_t sigterm, sigint;
    cvd_queue *queue;
    int stopping;
} app;

static void app_notify(void *ctx)
{
    app *a = ctx;
    pthread_mutex_lock(&a->mu);
    if (a->api) cvd_api_job_changed(a->api);
    pthread_mutex_unlock(&a->mu);
}

static void stop(app *a)
{
    if (a->stopping) return;
    a->stopping = 1;
    cf_info("stopping: running conversions finish, queued jobs wait for the next start");
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    pthread_mutex_lock(&a->mu);
    cvd_api *api = a->api;
    a->api = NULL;
    pthread_mutex_unlock(&a->mu);
    if (api) cvd_api_stop(api);
    cvd_queue_stop(a->queue);
}

static void on_signal(uv_signal_t *s, int sig)
{
    (void)sig;
    stop(s->data);
}

static int fail(const char *fmt, const char *x, const char *y)
{
    fprintf(stderr, "chunkfly-convertd: ");
    fprintf(stderr, fmt, x, y);
    fprintf(stderr, "\n");
    return 2;
}

static int run(int argc, char **argv, cf_config *cfg, cf_config *flags)
{
    static const struct option lo[] = {{"config", required_argument, NULL, 'c'},
                                       {"listen", required_argument, NULL, 1},
                                       {"auth-header", required_argument, NULL, 1},
                                       {"auth-header-file", required_argument, NULL, 1},
                                       {"workers", required_argument, NULL, 1},
                                       {"work-dir", required_argument, NULL, 1},
                                       {"db-dir", required_argument, NULL, 1},
                                       {"target-suffix", required_argument, NULL, 1},
                                       {"target-registry", required_argument, NULL, 1},
                                       {"docker-config", required_argument, NULL, 1},
                                       {"plain-http", required_argument, NULL, 1},
                                       {"platform", required_argument, NULL, 1},
                                       {"max-queue", required_argument, NULL, 1},
                                       {"max-attempts", required_argument, NULL, 1},
                                       {"retry-backoff", required_argument, NULL, 1},
                                       {"log-level", required_argument, NULL, 1},
                                       {"version", no_argument, NULL, 'V'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    const char *config_file = NULL;
    int opt, idx;
    while ((opt = getopt_long(argc, argv, "h", lo, &idx)) != -1) {
        if (opt == 'c') {
            config_file = optarg;
        } else if (opt == 'V') {
            printf("chunkfly-convertd %s\n", CHUNKFLY_VERSION);
            return 0;
        } else if (opt == 'h') {
            usage(stdout);
            return 0;
        } else if (opt == 1) {
            char key[32];
            snprintf(key, sizeof(key), "%s", lo[idx].name);
            for (char *p = key; *p; p++)
                if (*p == '-') *p = '_';
            if (!strcmp(key, "plain_http"))
                cf_config_add(flags, key, optarg);
            else
                cf_config_set(flags, key, optarg);
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) return fail("unexpected argument '%s'%s (see --help)", argv[optind], "");
    cf_err err = {0};
    if (config_file && cf_config_load(cfg, config_file, &err)) return fail("%s%s", err.msg, "");
    if (cf_config_check_keys(cfg, keys, &err)) return fail("%s%s", err.msg, "");
    /* flags override the file; plain_http from both adds up */
    if (cf_config_override(cfg, flags, keys, "plain_http"))
        return fail("%s%s", "out of memory", "");
    const char *lvl = cf_config_get(cfg, "log_level");
    enum cf_log_level level = CF_LOG_INFO;
    if (lvl && cf_log_parse_level(lvl, &level)) return fail("unknown log level '%s'%s", lvl, "");
    cf_log_set_level(level);
    cf_log_set_ident("convertd");
    uint64_t workers, max_queue, max_attempts, backoff_ms;
    if (cf_config_get_u64(cfg, "workers", 2, &workers, &err) ||
        cf_config_get_u64(cfg, "max_queue", 1000, &max_queue, &err) ||
        cf_config_get_u64(cfg, "max_attempts", 5, &max_attempts, &err) ||
        cf_config_get_duration_ms(cfg, "retry_backoff", 2000, &backoff_ms, &err))
        return fail("%s%s", err.msg, "");
    if (workers < 1 || workers > 64) return fail("workers: 1 .. 64%s%s", "", "");
    if (max_queue < 1 || max_queue > 100000) return fail("max_queue: 1 .. 100000%s%s", "", "");
    if (max_attempts < 1 || max_attempts > 100) return fail("max_attempts: 1 .. 100%s%s", "", "");
    if (backoff_ms < 1) return fail("retry_backoff: more than 0%s%s", "", "");
    const char *listen = cf_config_get(cfg, "listen");
    listen = listen ? listen : DEF_LISTEN;
    char host[256];
    const char *colon = strrchr(listen, ':');
    int port = colon ? atoi(colon + 1) : -1;
    if (!colon || !colon[1] || port < 0 || port > 65535 || colon == listen ||
        (size_t)(colon - listen) >= sizeof(host))
        return fail("listen '%s'%s: expected HOST:PORT", listen, "");
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [v6]:port */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    const char *work_dir = cf_config_get(cfg, "work_dir");
    work_dir = work_dir ? work_dir : DEF_WORK_DIR;
    char db_dir[4096];
    if (cf_config_get(cfg, "db_dir"))
        snprintf(db_dir, sizeof(db_dir), "%s", cf_config_get(cfg, "db_dir"));
    else
        snprintf(db_dir, sizeof(db_dir), "%s/queue", work_dir);
    const char *suffix = cf_config_get(cfg, "target_suffix");
    suffix = suffix ? suffix : DEF_SUFFIX;
    if (!suffix[0] || strlen(suffix) > 32)
        return fail("target_suffix '%s'%s: 1 to 32 characters", suffix, "");
    const char *auth = cf_config_get(cfg, "auth_header");
    const char *auth_file = cf_config_get(cfg, "auth_header_file");
    char *auth_buf = NULL;
    if (auth && auth_file)
        return fail("give auth_header or auth_header_file, not both%s%s", "", "");
    if (auth_file) {
        uint8_t *b;
        size_t n;
        if (cf_read_file(auth_file, 4096, &b, &n, &err) < 0)
            return fail("auth_header_file: %s%s", err.msg, "");
        while (n && (b[n - 1] == '\n' || b[n - 1] == '\r')) n--;
        auth_buf = strndup((const char *)b, n);
        free(b);
        if (!auth_buf || strlen(auth_buf) != n || !n)
            return fail("auth_header_file %s: empty or not text%s", auth_file, "");
        auth = auth_buf;
    }
    size_t nplain = cf_config_count(cfg, "plain_http");
    const char **plain = calloc(nplain + 1, sizeof(*plain));
    if (!plain) return fail("%s%s", "out of memory", "");
    for (size_t i = 0; i < nplain; i++) plain[i] = cf_config_get_nth(cfg, "plain_http", i);
    signal(SIGPIPE, SIG_IGN);

    int ret = 1;
    app a = {0};
    pthread_mutex_init(&a.mu, NULL);
    a.loop = uv_default_loop();
    cvd_workers *ws = NULL;
    cvd_queue_opts qo = {.db_dir = db_dir,
                         .max_active = (unsigned)max_queue,
                         .max_attempts = (unsigned)max_attempts,
                         .backoff_ms = backoff_ms,
                         .notify = app_notify,
                         .notify_ctx = &a};
    int rc = cvd_queue_open(&qo, &a.queue, &err);
    if (rc < 0) {
        fprintf(stderr, "chunkfly-convertd: %s\n", cf_err_str(&err, rc));
        goto out;
    }
    cvd_api_opts ao = {.queue = a.queue,
                       .host = host,
                       .port = port,
                       .auth_header = auth,
                       .suffix = suffix,
                       .target_registry = cf_config_get(cfg, "target_registry")};
    cvd_api *api;
    if ((rc = cvd_api_start(a.loop, &ao, &api, &err)) < 0) {
        fprintf(stderr, "chunkfly-convertd: listen %s: %s\n", listen, cf_err_str(&err, rc));
        goto out;
    }
    pthread_mutex_lock(&a.mu);
    a.api = api;
    pthread_mutex_unlock(&a.mu);
    cvd_workers_opts wo = {.queue = a.queue,
                           .n = (unsigned)workers,
                           .work_dir = work_dir,
                           .docker_config = cf_config_get(cfg, "docker_config"),
                           .plain_http = plain,
                           .platform = cf_config_get(cfg, "platform")};
    if ((rc = cvd_workers_start(&wo, &ws, &err)) < 0) {
        fprintf(stderr, "chunkfly-convertd: %s\n", cf_err_str(&err, rc));
        stop(&a);
        uv_run(a.loop, UV_RUN_DEFAULT);
        goto out;
    }
    uv_signal_init(a.loop, &a.sigterm);
    uv_signal_init(a.loop, &a.sigint);
    a.sigterm.data = a.sigint.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    if (!auth || !auth[0])
        cf_warn("no auth_header configured: POSTs are accepted from this host only");
    cf_info("listening on %s:%d (%u workers, work dir %s, queue %s, target suffix %s)", host,
            cvd_api_port(api), (unsigned)workers, work_dir, db_dir, suffix);
    uv_run(a.loop, UV_RUN_DEFAULT);
    cvd_workers_join(ws); /* after stop(): the queue is stopped, running conversions end */
    ret = 0;
out:
    cvd_queue_close(a.queue);
    uv_loop_close(a.loop);
    pthread_mutex_destroy(&a.mu);
    free(plain);
    free(auth_buf);
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
