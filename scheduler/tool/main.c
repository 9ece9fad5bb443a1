/* chunkfly-scheduler: the mesh scheduler daemon (policy: docs/scheduler.md). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cf/config.h"
#include "cf/log.h"
#include "proto/conn.h"
#include "proto/http_server.h"
#include "proto/timing.h"
#include "sched/sched_server.h"
#include "sched/sched_status.h"

static const char usage[] =
    "usage: chunkfly-scheduler [options]\n"
    "\n"
    "Schedules pieces of blobs between chunkfly peer daemons: answers registrations with a\n"
    "piece size, candidate parents, back-to-source grants or 'wait'. All state is soft.\n"
    "\n"
    "  --config FILE        config file (key = value; flags override it)\n"
    "  --listen HOST:PORT   mesh protocol listener            [listen, default 127.0.0.1:8002]\n"
    "  --http HOST:PORT     /metrics, /status, /healthz       [http, default 127.0.0.1:8003]\n"
    "  --log-level LEVEL    trace|debug|info|warn|error|off   [log_level, default info]\n"
    "  --node-id ID         id sent in the handshake          [node_id]\n"
    "  --set KEY=VALUE      any config key, e.g. --set timing.idle_timeout=5s\n"
    "  --help, --version\n"
    "\n"
    "Policy keys: max_candidates (4), origin_per_piece (1), origin_peers (8), grant_window (16),\n"
    "ban_after_tasks (3), max_connections (65536), input_budget (64M), max_tasks_per_host\n"
    "(4096), host_state_budget (16M), state_budget (256M), status_remote (false: /status\n"
    "only to clients on this host), handshake_timeout (10s),\n"
    "http_max_connections (256), http_idle_timeout (30s), recovery_window (5s),\n"
    "recovery_hold (500ms); tls_cert, tls_key, tls_ca (PEM files, all three or none: the mesh\n"
    "listener then requires mutual TLS and binds host ids to certificates), check_source\n"
    "(true: with TLS an announced address must be the connection's source); timing.* keys: "
    "heartbeat_interval\n"
    "(2s), heartbeat_miss_limit (3), back_to_source_stall (5s), idle_timeout (60s).\n";

static const char *const own_keys[] = {"listen",
                                       "http",
                                       "log_level",
                                       "node_id",
                                       "recovery_window",
                                       "recovery_hold",
                                       "max_candidates",
                                       "origin_per_piece",
                                       "origin_peers",
                                       "grant_window",
                                       "ban_after_tasks",
                                       "max_connections",
                                       "input_budget",
                                       "status_remote",
                                       "max_tasks_per_host",
                                       "host_state_budget",
                                       "state_budget",
                                       "handshake_timeout",
                                       "http_max_connections",
                                       "http_idle_timeout",
                                       "tls_cert",
                                       "tls_key",
                                       "tls_ca",
                                       "check_source",
                                       NULL};

struct app {
    uv_loop_t *loop;
    sched_server *srv;
    proto_http_server *http;
    sched_status *status;
    uv_signal_t sigterm, sigint, sighup;
    int stopping;
    const cf_config *cfg; /* kept for SIGHUP */
    proto_tls **tls;      /* main's mesh TLS context (NULL = plain) */
};

/* SIGHUP: reload tls_cert/tls_key/tls_ca for new connections; open ones keep theirs. */
static void on_sighup(uv_signal_t *sig, int signum)
{
    struct app *a = sig->data;
    (void)signum;
    if (!*a->tls) return;
    proto_tls *t = NULL;
    cf_err err = {0};
    if (proto_tls_from_config(a->cfg, &t, &err) || !t) {
        cf_error("SIGHUP: TLS files not reloaded, the old ones stay in use: %s", err.msg);
        return;
    }
    sched_server_set_tls(a->srv, t);
    proto_tls_free(*a->tls); /* open conns hold their own reference to the old context */
    *a->tls = t;
    cf_info("SIGHUP: TLS files reloaded (new connections use them)");
}

static int split_hostport(const char *s, char *host, size_t hsz, int *port)
{
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':') return -EINVAL;
        if ((size_t)(end - s - 1) >= hsz) return -EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= hsz || colon == s) return -EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p < 0 || p > 65535) return -EINVAL;
    *port = (int)p;
    return 0;
}

static void on_closed(void *arg)
{
    (void)arg;
}

static void on_signal(uv_signal_t *sig, int signum)
{
    struct app *a = sig->data;
    if (a->stopping) return;
    a->stopping = 1;
    cf_info("signal %d: shutting down", signum);
    proto_http_server_close(a->http, on_closed, NULL);
    sched_server_close(a->srv, on_closed, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sighup, NULL);
}

static int get_u32(const cf_config *c, const char *key, unsigned def, unsigned *out, cf_err *err)
{
    uint64_t v;
    int rc = cf_config_get_u64(c, key, def, &v, err);
    if (rc) return rc;
    if (v > 1000000)
        return cf_err_set(err, -EINVAL, "%s: %llu is too large", key, (unsigned long long)v);
    *out = (unsigned)v;
    return 0;
}

static int load_opts(const cf_config *c, struct sched_server_opts *o, struct proto_http_limits *hl,
                     cf_err *err)
{
    sched_server_opts_default(o);
    int rc = proto_timing_load(&o->timing, c, err);
    if (!rc)
        rc = get_u32(c, "max_candidates", o->core.max_candidates, &o->core.max_candidates, err);
    if (!rc && (o->core.max_candidates == 0 || o->core.max_candidates > SCHED_MAX_CANDIDATES))
        rc = cf_err_set(err, -EINVAL, "max_candidates must be 1..%d", SCHED_MAX_CANDIDATES);
    if (!rc)
        rc = get_u32(c, "origin_per_piece", o->core.origin_per_piece, &o->core.origin_per_piece,
                     err);
    if (!rc) rc = get_u32(c, "origin_peers", o->core.origin_peers, &o->core.origin_peers, err);
    if (!rc) rc = get_u32(c, "grant_window", o->core.grant_window, &o->core.grant_window, err);
    if (!rc)
        rc = get_u32(c, "ban_after_tasks", o->core.ban_after_tasks, &o->core.ban_after_tasks, err);
    if (!rc) rc = get_u32(c, "max_connections", o->max_connections, &o->max_connections, err);
    if (!rc)
        rc = get_u32(c, "max_tasks_per_host", o->core.max_tasks_per_host,
                     &o->core.max_tasks_per_host, err);
    if (!rc)
        rc = cf_config_get_size(c, "host_state_budget", o->core.host_state_budget,
                                &o->core.host_state_budget, err);
    if (!rc)
        rc =
            cf_config_get_size(c, "state_budget", o->core.state_budget, &o->core.state_budget, err);
    uint64_t ms;
    if (!rc)
        rc = cf_config_get_duration_ms(c, "handshake_timeout", o->handshake_timeout_ms, &ms, err);
    if (!rc) o->handshake_timeout_ms = (uint32_t)(ms > 3600000 ? 3600000 : ms);
    if (!rc) rc = cf_config_get_bool(c, "check_source", 1, &o->check_source, err);
    if (!rc)
        rc = cf_config_get_duration_ms(c, "recovery_window", o->core.recovery_window_ms, &ms, err);
    if (!rc) o->core.recovery_window_ms = (uint32_t)(ms > 3600000 ? 3600000 : ms);
    if (!rc) rc = cf_config_get_duration_ms(c, "recovery_hold", o->core.recovery_hold_ms, &ms, err);
    if (!rc) o->core.recovery_hold_ms = (uint32_t)(ms > 60000 ? 60000 : ms);
    proto_http_limits_default(hl);
    hl->max_connections = 256;
    unsigned hc = hl->max_connections;
    if (!rc) rc = get_u32(c, "http_max_connections", hc, &hc, err);
    hl->max_connections = hc;
    if (!rc) rc = cf_config_get_duration_ms(c, "http_idle_timeout", hl->idle_timeout_ms, &ms, err);
    if (!rc) hl->idle_timeout_ms = ms ? ms : 1;
    if (!rc &&
        (o->core.origin_per_piece == 0 || o->core.origin_peers == 0 || o->core.grant_window == 0))
        rc =
            cf_err_set(err, -EINVAL, "origin_per_piece, origin_peers and grant_window must be > 0");
    o->node_id = cf_config_get(c, "node_id") ? cf_config_get(c, "node_id") : o->node_id;
    return rc;
}

/* Early exits free what main owns, so sanitizer builds stay leak-free. */
#define EXIT(code)                                                                                 \
    do {                                                                                           \
        cf_config_free(cfg);                                                                       \
        cf_config_free(flags);                                                                     \
        proto_tls_free(tls);                                                                       \
        return (code);                                                                             \
    } while (0)

int main(int argc, char **argv)
{
    cf_log_set_ident("scheduler");
    cf_config *cfg = cf_config_new();
    cf_config *flags = cf_config_new();
    proto_tls *tls = NULL; /* mesh TLS (tls_* keys), NULL = plain TCP */
    if (!cfg || !flags) EXIT(1);
    const char *config_path = NULL;
    static const struct option lopts[] = {{"config", required_argument, NULL, 'c'},
                                          {"listen", required_argument, NULL, 'l'},
                                          {"http", required_argument, NULL, 'H'},
                                          {"log-level", required_argument, NULL, 'L'},
                                          {"node-id", required_argument, NULL, 'n'},
                                          {"set", required_argument, NULL, 's'},
                                          {"help", no_argument, NULL, 'h'},
                                          {"version", no_argument, NULL, 'V'},
                                          {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config_path = optarg;
            break;
        case 'l':
            cf_config_set(flags, "listen", optarg);
            break;
        case 'H':
            cf_config_set(flags, "http", optarg);
            break;
        case 'L':
            cf_config_set(flags, "log_level", optarg);
            break;
        case 'n':
            cf_config_set(flags, "node_id", optarg);
            break;
        case 's': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                fprintf(stderr, "chunkfly-scheduler: --set needs KEY=VALUE, got '%s'\n", optarg);
                EXIT(2);
            }
            *eq = 0;
            cf_config_set(flags, optarg, eq + 1);
            break;
        }
        case 'h':
            fputs(usage, stdout);
            EXIT(0);
        case 'V':
            printf("chunkfly-scheduler %s\n", CHUNKFLY_VERSION);
            EXIT(0);
        default:
            fputs(usage, stderr);
            EXIT(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chunkfly-scheduler: unexpected argument '%s'\n%s", argv[optind], usage);
        EXIT(2);
    }
    cf_err err = {0};
    if (config_path && cf_config_load(cfg, config_path, &err)) {
        fprintf(stderr, "chunkfly-scheduler: %s\n", err.msg);
        EXIT(2);
    }
    /* flags override the file: copy each flag key over */
    static const char *const flag_keys[] = {"listen", "http", "log_level", "node_id", NULL};
    for (int i = 0; flag_keys[i]; i++)
        if (cf_config_get(flags, flag_keys[i]))
            cf_config_set(cfg, flag_keys[i], cf_config_get(flags, flag_keys[i]));
    /* --set keys: re-parse them from argv order (cf_config has no iteration) */
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lopts, NULL)) != -1)
        if (ch == 's') cf_config_set(cfg, optarg, optarg + strlen(optarg) + 1);
    cf_config_free(flags);
    flags = NULL;

    const char *allowed[64];
    size_t na = 0;
    for (size_t i = 0; own_keys[i]; i++) allowed[na++] = own_keys[i];
    for (size_t i = 0; proto_timing_config_keys[i] && na < 63; i++)
        allowed[na++] = proto_timing_config_keys[i];
    allowed[na] = NULL;
    if (cf_config_check_keys(cfg, allowed, &err)) {
        fprintf(stderr, "chunkfly-scheduler: %s\n", err.msg);
        EXIT(2);
    }
    const char *lvl = cf_config_get(cfg, "log_level");
    enum cf_log_level level = CF_LOG_INFO;
    if (lvl && cf_log_parse_level(lvl, &level)) {
        fprintf(stderr, "chunkfly-scheduler: log_level: unknown level '%s'\n", lvl);
        EXIT(2);
    }
    cf_log_set_level(level);
    struct sched_server_opts o;
    struct proto_http_limits hl;
    uint64_t budget = 64u << 20;
    int status_remote = 0;
    if (load_opts(cfg, &o, &hl, &err) ||
        cf_config_get_size(cfg, "input_budget", budget, &budget, &err) ||
        cf_config_get_bool(cfg, "status_remote", 0, &status_remote, &err)) {
        fprintf(stderr, "chunkfly-scheduler: %s\n", err.msg);
        EXIT(2);
    }
    if (proto_tls_from_config(cfg, &tls, &err)) {
        fprintf(stderr, "chunkfly-scheduler: %s\n", err.msg);
        EXIT(2);
    }
    o.tls = tls;
    if (budget < (2u << 20)) {
        fprintf(stderr, "chunkfly-scheduler: input_budget must be at least 2M\n");
        EXIT(2);
    }
    /* what all peers' connections together may hold in partial frames (bodies <= 1 MiB) */
    proto_conn_set_input_budget(budget);
    const char *listen = cf_config_get(cfg, "listen");
    const char *http = cf_config_get(cfg, "http");
    if (!listen) listen = "127.0.0.1:8002";
    if (!http) http = "127.0.0.1:8003";
    char lhost[128], hhost[128];
    int lport, hport;
    if (split_hostport(listen, lhost, sizeof(lhost), &lport)) {
        fprintf(stderr, "chunkfly-scheduler: listen: '%s' is not HOST:PORT\n", listen);
        EXIT(2);
    }
    if (split_hostport(http, hhost, sizeof(hhost), &hport)) {
        fprintf(stderr, "chunkfly-scheduler: http: '%s' is not HOST:PORT\n", http);
        EXIT(2);
    }
    signal(SIGPIPE, SIG_IGN);
    struct app a = {.loop = uv_default_loop()};
    int rc = sched_server_new(a.loop, &o, &a.srv, &err);
    if (!rc) rc = sched_server_listen(a.srv, lhost, lport, &err);
    if (!rc)
        rc = proto_http_server_new(a.loop, &hl, &a.http) ? cf_err_set(&err, -ENOMEM, "oom") : 0;
    if (!rc) rc = sched_status_new(a.http, a.srv, &a.status);
    if (!rc) sched_status_allow_remote(a.status, status_remote);
    if (!rc) rc = proto_http_listen(a.http, hhost, hport, &err);
    if (rc) {
        fprintf(stderr, "chunkfly-scheduler: %s\n", cf_err_str(&err, rc));
        /* release what was set up (libuv closes handles on the next loop run) */
        if (a.http) proto_http_server_close(a.http, NULL, NULL);
        if (a.srv) sched_server_close(a.srv, NULL, NULL);
        uv_run(a.loop, UV_RUN_DEFAULT);
        sched_status_free(a.status);
        uv_loop_close(a.loop);
        EXIT(1);
    }
    cf_info("mesh listener on %s:%d%s, http on %s:%d", lhost, sched_server_port(a.srv),
            tls ? " (mutual TLS required)" : "", hhost, proto_http_port(a.http));
    uv_signal_init(a.loop, &a.sigterm);
    uv_signal_init(a.loop, &a.sigint);
    uv_signal_init(a.loop, &a.sighup);
    a.sigterm.data = a.sigint.data = a.sighup.data = &a;
    a.cfg = cfg;
    a.tls = &tls;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sighup, on_sighup, SIGHUP);
    uv_run(a.loop, UV_RUN_DEFAULT);
    sched_status_free(a.status);
    uv_loop_close(a.loop);
    cf_info("stopped");
    EXIT(0);
}
