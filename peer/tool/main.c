/* chunkfly-peer: the node daemon (docs/peer.md). Parses flags and the config file, runs the
 * daemon on one libuv loop until SIGTERM/SIGINT. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cf/config.h"
#include "cf/log.h"
#include "peer/daemon.h"
#include "proto/registry_client.h"

static const char usage[] =
    "usage: chunkfly-peer [options]\n"
    "\n"
    "The Chunkfly node daemon: caches blob pieces, shares them with other peers (mesh), fetches\n"
    "them from parents or the origin registry, and serves local readers on a unix socket.\n"
    "\n"
    "  --config FILE          config file (key = value; flags override it)\n"
    "  --listen HOST:PORT     upload server, mesh protocol      [listen, default 127.0.0.1:4100]\n"
    "  --scheduler HOST:PORT  a scheduler; repeat for several   [scheduler, none = origin only]\n"
    "                         (a name stands for all its addresses, re-resolved every\n"
    "                         scheduler_resolve_interval, 30s)\n"
    "  --cache-dir DIR        piece cache                       [cache_dir, /var/cache/chunkfly]\n"
    "  --api-socket PATH      local API                [api_socket, /run/chunkfly/peer.sock]\n"
    "  --http HOST:PORT       /metrics, /healthz, /status       [http, default none]\n"
    "  --quota SIZE           cache quota, e.g. 10G; evicts down to quota_low (90%) [quota]\n"
    "  --log-level LEVEL      trace|debug|info|warn|error|off   [log_level, default info]\n"
    "  --host-id ID           id announced to schedulers        [host_id, peer-<listen>]\n"
    "  --set KEY=VALUE        any config key, e.g. --set small_blob=1M\n"
    "  --help, --version\n"
    "\n"
    "Other keys (docs/peer.md): advertise, quota_low, upload_slots (16),\n"
    "upload_max_connections (256), upload_bandwidth (0 = unlimited), upload_piece_timeout (30s),\n"
    "pieces_in_flight (8), per_parent_in_flight (4), origin_in_flight (4), piece_timeout (10s),\n"
    "register_timeout (3s), mesh_stall (10s), small_blob (4M), ban_after_lies (3),\n"
    "origin_plain_http (false), plain_http (HOST[:PORT] list), origin_timeout (8s), "
    "docker_config,\n"
    "local_max_connections (64), seed_cached (64), fetch_whole_blob (true), status_remote "
    "(false),\n"
    "timing.*.\n"
    "Local API callers (docs/security.md): root and the daemon's uid always; api_allow_uids,\n"
    "api_allow_gids (default: the socket's group); api_node_credentials (true).\n"
    "Registry mirror (docs/mirror.md): mirror_listen (127.0.0.1:65001, \"\" = off),\n"
    "mirror_upstreams (allow-list, e.g. \"docker.io, http://127.0.0.1:5000\"),\n"
    "mirror_default_upstream, mirror_max_connections (256).\n"
    "Mesh TLS (docs/security.md): tls_cert, tls_key, tls_ca (PEM; all three or none): mutual\n"
    "TLS on the upload port and to parents and schedulers; host_id defaults to the cert's name.\n";

struct app {
    peer_daemon *d;
    uv_signal_t sigterm, sigint, sighup;
    int stopping;
};

/* SIGHUP: reload the mesh certificate, key and CA (rotation without dropping transfers). */
static void on_sighup(uv_signal_t *sig, int signum)
{
    struct app *a = sig->data;
    (void)signum;
    cf_err err = {0};
    if (peer_daemon_reload_tls(a->d, &err))
        cf_error("SIGHUP: TLS files not reloaded, the old ones stay in use: %s", err.msg);
    else
        cf_info("SIGHUP: TLS files reloaded (new connections use them)");
}

static void on_signal(uv_signal_t *sig, int signum)
{
    struct app *a = sig->data;
    if (a->stopping) return;
    a->stopping = 1;
    cf_info("signal %d: shutting down", signum);
    peer_daemon_stop(a->d);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sighup, NULL);
}

enum {
    O_CONFIG = 256,
    O_LISTEN,
    O_SCHED,
    O_CACHE,
    O_API,
    O_HTTP,
    O_QUOTA,
    O_LOG,
    O_HOSTID,
    O_SET,
    O_HELP,
    O_VERSION
};

int main(int argc, char **argv)
{
    cf_log_set_ident("peer");
    static const struct option longopts[] = {{"config", required_argument, 0, O_CONFIG},
                                             {"listen", required_argument, 0, O_LISTEN},
                                             {"scheduler", required_argument, 0, O_SCHED},
                                             {"cache-dir", required_argument, 0, O_CACHE},
                                             {"api-socket", required_argument, 0, O_API},
                                             {"http", required_argument, 0, O_HTTP},
                                             {"quota", required_argument, 0, O_QUOTA},
                                             {"log-level", required_argument, 0, O_LOG},
                                             {"host-id", required_argument, 0, O_HOSTID},
                                             {"set", required_argument, 0, O_SET},
                                             {"help", no_argument, 0, O_HELP},
                                             {"version", no_argument, 0, O_VERSION},
                                             {0, 0, 0, 0}};
    /* first pass: --config, --help, --version */
    const char *config_file = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == O_CONFIG)
            config_file = optarg;
        else if (c == O_HELP) {
            fputs(usage, stdout);
            return 0;
        } else if (c == O_VERSION) {
#ifdef CHUNKFLY_FAULTS
            printf("chunkfly-peer %s (test faults compiled in)\n", CHUNKFLY_VERSION);
#else
            printf("chunkfly-peer %s\n", CHUNKFLY_VERSION);
#endif
            return 0;
        } else if (c == '?') {
            fprintf(stderr, "chunkfly-peer: unknown or incomplete option '%s'\n%s",
                    argv[optind - 1], usage);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chunkfly-peer: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    cf_config *cfg = cf_config_new();
    if (!cfg) return 1;
    cf_err err = {0};
    int rc = 0;
    if (config_file && (rc = cf_config_load(cfg, config_file, &err))) {
        fprintf(stderr, "chunkfly-peer: %s\n", cf_err_str(&err, rc));
        cf_config_free(cfg);
        return 2;
    }
    int sched_flags = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        const char *key = NULL;
        switch (c) {
        case O_LISTEN:
            key = "listen";
            break;
        case O_CACHE:
            key = "cache_dir";
            break;
        case O_API:
            key = "api_socket";
            break;
        case O_HTTP:
            key = "http";
            break;
        case O_QUOTA:
            key = "quota";
            break;
        case O_LOG:
            key = "log_level";
            break;
        case O_HOSTID:
            key = "host_id";
            break;
        case O_SCHED:
            /* the command line's list replaces the file's */
            rc = sched_flags++ ? cf_config_add(cfg, "scheduler", optarg)
                               : cf_config_set(cfg, "scheduler", optarg);
            break;
        case O_SET: {
            char *eq = strchr(optarg, '=');
            if (!eq) {
                fprintf(stderr, "chunkfly-peer: --set %s: expected KEY=VALUE\n", optarg);
                cf_config_free(cfg);
                return 2;
            }
            *eq = 0;
            rc = cf_config_set(cfg, optarg, eq + 1);
            *eq = '=';
            break;
        }
        default:
            break;
        }
        if (key) rc = cf_config_set(cfg, key, optarg);
        if (rc) {
            fprintf(stderr, "chunkfly-peer: out of memory\n");
            cf_config_free(cfg);
            return 1;
        }
    }
    const char *lvl = cf_config_get(cfg, "log_level");
    if (lvl) {
        enum cf_log_level l;
        if (cf_log_parse_level(lvl, &l)) {
            fprintf(stderr, "chunkfly-peer: bad log level '%s'\n", lvl);
            cf_config_free(cfg);
            return 2;
        }
        cf_log_set_level(l);
    }
    struct peer_daemon_opts o;
    rc = peer_daemon_opts_load(&o, cfg, &err);
    if (rc) {
        fprintf(stderr, "chunkfly-peer: %s\n", cf_err_str(&err, rc));
        cf_config_free(cfg);
        return 2;
    }
    /* registry fetches and disk I/O share the pool: more threads than libuv's default 4 */
    setenv("UV_THREADPOOL_SIZE", getenv("UV_THREADPOOL_SIZE") ? getenv("UV_THREADPOOL_SIZE") : "16",
           1);
    signal(SIGPIPE, SIG_IGN);
    /* piece buffers (1-16 MiB) always come from mmap and go back to the kernel when freed (a
     * fixed threshold stops glibc from raising it and keeping them in the heap), and few arenas
     * for the pool threads: keeps the steady-state RSS small */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_ARENA_MAX, 2);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct app a = {0};
    rc = peer_daemon_new(&loop, &o, &a.d, &err);
    if (rc) {
        fprintf(stderr, "chunkfly-peer: %s\n", cf_err_str(&err, rc));
        uv_loop_close(&loop);
        cf_config_free(cfg);
        return 1;
    }
    uv_signal_init(&loop, &a.sigterm);
    uv_signal_init(&loop, &a.sigint);
    uv_signal_init(&loop, &a.sighup);
    a.sigterm.data = a.sigint.data = a.sighup.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sighup, on_sighup, SIGHUP);
    uv_run(&loop, UV_RUN_DEFAULT);
    peer_daemon_free(a.d);
    rc = uv_loop_close(&loop);
    if (rc) cf_warn("loop closed with handles open: %s", uv_strerror(rc));
    cf_config_free(cfg);
    proto_registry_global_cleanup();
    cf_info("stopped");
    return 0;
}
