/* sched_server: the scheduler's mesh listener. Accepts peer daemons over TCP (proto_conn
 * frames, HELLO handshake first), decodes their messages, feeds the scheduling core
 * (sched.h) and sends its decisions back (REGISTER_ANSWER, CANDIDATES, BACK_TO_SOURCE, WAIT,
 * HEARTBEAT_REPLY, DIGESTS, ERROR). One libuv loop, never blocks.
 *
 * A peer's connection closing ends its host at once (its peers leave, grants move, children
 * are re-parented); a host that stays connected but stops heartbeating expires after
 * heartbeat_interval * miss_limit. Undecodable frames get ERROR(BAD_MESSAGE) and the
 * connection is closed; connections that do not complete the handshake within
 * handshake_timeout_ms, or stay silent for idle_timeout_ms, are closed.
 *
 * Threads: loop thread only. Errors: 0 or negative errno (+ message in err). */
#ifndef SCHED_SERVER_H
#define SCHED_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "cf/error.h"
#include "proto/timing.h"
#include "proto/tls.h"
#include "sched/sched.h"

typedef struct sched_server sched_server;

struct sched_server_opts {
    const char *node_id;           /* our HELLO id (copied); default "chunkfly-scheduler" */
    struct sched_config core;      /* policy knobs (sched_config_default) */
    proto_timing timing;           /* heartbeat/stall/idle (proto_timing_defaults) */
    uint32_t tick_ms;              /* core housekeeping period, default 250 */
    uint32_t handshake_timeout_ms; /* default 10000 */
    unsigned max_connections;      /* further ones are closed at once; default 65536 */
    proto_tls *tls;   /* NULL = plain TCP; else every connection must be mutual TLS with it, and a
                       * host id must equal the certificate identity (borrowed: outlives s) */
    int check_source; /* with tls: an announced address must be the connection's source IP
                       * (default 1; 0 for peers behind NAT announcing another address) */
};
void sched_server_opts_default(struct sched_server_opts *o);

/* Decision latency histogram bucket bounds (microseconds); the last bucket is +Inf. */
#define SCHED_LAT_BUCKETS 10
extern const uint32_t sched_lat_bounds_us[SCHED_LAT_BUCKETS - 1];

struct sched_server_stats {
    uint64_t conns_accepted, conns_rejected, conns_open, handshakes_failed;
    uint64_t handshake_timeouts, idle_closed;
    uint64_t digest_lists_discredited; /* dropped after a peer's origin bytes disagreed */
    uint64_t identity_refused;         /* ANNOUNCE_HOST ids differing from the TLS certificate */
    uint64_t frames_in, frames_bad, frames_out, send_failures;
    uint64_t lat_count, lat_sum_us;
    uint64_t lat_bucket[SCHED_LAT_BUCKETS]; /* non-cumulative counts */
};

int sched_server_new(uv_loop_t *loop, const struct sched_server_opts *opts, sched_server **out,
                     cf_err *err);
/* host: numeric IP; port 0 = any free port (see sched_server_port). */
int sched_server_listen(sched_server *s, const char *host, int port, cf_err *err);
int sched_server_port(const sched_server *s);
sched *sched_server_core(sched_server *s);
/* The loop's clock (uv_now) in ms, the time base of the core. */
uint64_t sched_server_now_ms(const sched_server *s);
void sched_server_stats_get(const sched_server *s, struct sched_server_stats *out);
/* Replaces the TLS context for connections accepted from now on (SIGHUP reload); open ones
 * keep theirs. Only when the server was created with one (tls non-NULL, borrowed like opts). */
void sched_server_set_tls(sched_server *s, proto_tls *tls);
/* Closes the listener and every connection, then frees; cb (may be NULL) runs when done. */
void sched_server_close(sched_server *s, void (*cb)(void *arg), void *arg);

#endif
