/* peer_daemon: the chunkfly-peer node daemon (docs/peer.md).
 *
 * One libuv loop holds: the upload server (mesh TCP, pieces sent with sendfile), the scheduler
 * client (rendezvous over the configured schedulers, heartbeats, health), the per-blob download
 * tasks (parents in parallel, back to source through proto_registry in the thread pool), the
 * local API (unix socket) and the HTTP endpoint (/metrics, /healthz, /status). Disk I/O, digests
 * and registry fetches run in the libuv thread pool; the loop never blocks.
 *
 * Threads: every function here must be called on the loop thread.
 * Errors: 0 or a negative errno, with a message in err. */
#ifndef PEER_DAEMON_H
#define PEER_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cf/config.h"
#include "cf/error.h"
#include "proto/timing.h"

#define PEER_MAX_SCHEDULERS 16

struct peer_daemon_opts {
    const char *listen;    /* upload server "ip:port" (mesh), required */
    const char *advertise; /* address announced to schedulers; NULL = listen */
    /* "ip:port" / "[ip6]:port", used as written, or "name:port": every A/AAAA record of the
     * name, resolved at start and every sched_resolve_interval_ms. The scheduler table is the
     * union (at most PEER_MAX_SCHEDULERS addresses). */
    const char *schedulers[PEER_MAX_SCHEDULERS];
    size_t n_schedulers;                /* 0 = no mesh: everything from the origin */
    uint32_t sched_resolve_interval_ms; /* re-resolution of scheduler names (30 s) */
    const char *cache_dir;              /* required */
    const char *api_socket;             /* unix socket path of the local API */
    const char *http;                   /* "ip:port" for /metrics, /healthz, /status; NULL = none */
    const char *host_id;                /* NULL = "peer-<listen>" */
    uint64_t quota_high;                /* bytes, 0 = none */
    uint64_t quota_low;                 /* 0 = 90% of quota_high */
    /* upload */
    uint32_t upload_slots;            /* concurrent piece uploads (16) */
    uint32_t upload_max_conns;        /* mesh connections accepted (256) */
    uint64_t upload_bw;               /* bytes/s, 0 = unlimited */
    uint32_t upload_piece_timeout_ms; /* a piece not drained by then closes the conn (30 s) */
    /* download */
    uint32_t pieces_in_flight;     /* per task, from parents and origin together (8) */
    uint32_t per_parent_in_flight; /* per parent connection (4) */
    uint32_t origin_in_flight;     /* per task from the origin (4) */
    uint32_t piece_timeout_ms;     /* per-parent piece request timeout (10 s) */
    uint32_t register_timeout_ms;  /* no REGISTER_ANSWER by then -> origin (3 s) */
    uint32_t mesh_stall_ms;        /* no progress from the mesh this long -> origin (10 s) */
    uint64_t small_blob;           /* blobs up to this size skip the mesh (4 MiB) */
    uint32_t ban_after_lies;       /* lying in this many tasks bans a parent for all (3) */
    /* origin */
    int origin_plain_http;     /* 1 = http, 0 = auto (loopback http, else https) */
    const char *docker_config; /* NULL = default lookup, "" = none */
    /* registries configured as plain http ("insecure"): HOST[:PORT] list, comma or space
     * separated; spoken to over http and the only non-loopback ones that may get credentials
     * over it (NULL = none) */
    const char *plain_http;
    uint32_t origin_timeout_ms; /* stall / retry budget of origin requests (8 s) */
    /* local API */
    uint32_t local_max_conns; /* (64) */
    /* callers allowed besides root and the daemon's own uid: uids / groups (numbers or names,
     * comma or space separated); gids NULL = the socket's group, "" = none */
    const char *api_allow_uids, *api_allow_gids;
    int api_node_creds; /* a caller without credentials may use the node's for private blobs (1) */
    uint32_t seed_cached; /* complete cached blobs announced at start-up (64) */
    int fetch_whole_blob; /* a read also fetches the rest of the blob in the background (1) */
    int status_remote;    /* /status to non-local clients too (0: it lists task digests) */
    /* registry mirror (docs/mirror.md) */
    const char *mirror_listen;           /* "ip:port", "" = off (127.0.0.1:65001) */
    int mirror_listen_set;               /* given in the config: a bind failure is fatal */
    const char *mirror_upstreams;        /* allow-list, comma separated ("" = none) */
    const char *mirror_default_upstream; /* when the request names none (NULL = none) */
    uint32_t mirror_max_conns;           /* (256) */
    uint64_t input_budget; /* bytes all mesh conns may hold in partial frames (256 MiB) */
    /* mesh TLS: all three PEM paths or none. When set, the upload server requires mutual TLS,
     * parent and scheduler connections use it, and host_id defaults to the certificate's
     * identity (first DNS SAN, else CN). */
    const char *tls_cert, *tls_key, *tls_ca;
    /* host ids (comma separated globs) served private blobs without a proof: the trust group
     * for registries without token auth. Only proven with mesh TLS. NULL/"" = none. */
    const char *private_peers;
    proto_timing timing;
};

/* A `scheduler` entry: "ip:port" / "[ip6]:port" (returns 0) or "name:port" with a DNS-style
 * name (returns 1; host and port filled when given, hostsz >= 256, portsz >= 6); -EINVAL
 * otherwise. */
int peer_sched_entry_parse(const char *entry, char *host, size_t hostsz, char *port, size_t portsz);

/* Config keys accepted by peer_daemon_opts_load (NULL-terminated, timing.* included). */
extern const char *const peer_daemon_config_keys[];

/* Defaults, then the config values. Strings point into c (keep it alive). */
int peer_daemon_opts_load(struct peer_daemon_opts *o, const cf_config *c, cf_err *err);

typedef struct peer_daemon peer_daemon;

/* Opens the cache (blocking, before the loop runs), binds every listener. */
int peer_daemon_new(uv_loop_t *loop, const struct peer_daemon_opts *o, peer_daemon **out,
                    cf_err *err);
/* Stops accepting, closes every connection, says LEAVE_HOST to the schedulers; pending thread
 * pool work finishes. uv_run() then returns; call peer_daemon_free() afterwards. */
void peer_daemon_stop(peer_daemon *d);
/* Loads tls_cert/tls_key/tls_ca again (SIGHUP): connections made from now on use the new
 * certificate and CA, open ones keep theirs (transfers are not dropped). On error the current
 * context stays. No-op (0) without TLS. The identity must not change: -EINVAL otherwise. */
int peer_daemon_reload_tls(peer_daemon *d, cf_err *err);
/* Flushes and closes the cache, frees everything. Only after uv_run() returned. */
void peer_daemon_free(peer_daemon *d);

#endif
