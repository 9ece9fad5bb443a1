/* Protocol timing defaults, shared by peers and schedulers so both sides agree. Configurable
 * through proto_timing_load() (config keys in section [timing]). */
#ifndef PROTO_TIMING_H
#define PROTO_TIMING_H

#include <stdint.h>

#include "cf/config.h"
#include "cf/error.h"

#define PROTO_HEARTBEAT_INTERVAL_MS 2000u  /* peer -> scheduler heartbeat period */
#define PROTO_HEARTBEAT_MISS_LIMIT  3u     /* missed beats/replies: host gone / scheduler down */
#define PROTO_B2S_STALL_MS          5000u  /* back-to-source grant without progress -> regrant */
#define PROTO_IDLE_TIMEOUT_MS       60000u /* connection with no traffic is closed */
#define PROTO_SCHED_RETRY_MS        10000u /* retry an unhealthy scheduler after this long */

typedef struct proto_timing {
    uint32_t heartbeat_interval_ms;
    uint32_t heartbeat_miss_limit;
    uint32_t b2s_stall_ms;
    uint32_t idle_timeout_ms;
    uint32_t sched_retry_ms;
} proto_timing;

/* The defaults above. */
void proto_timing_defaults(proto_timing *t);

/* Config keys read by proto_timing_load (NULL-terminated; add them to a daemon's allowed keys):
 * timing.heartbeat_interval, timing.heartbeat_miss_limit, timing.back_to_source_stall,
 * timing.idle_timeout, timing.scheduler_retry (durations accept "2s", "500ms"). */
extern const char *const proto_timing_config_keys[];

/* Defaults overridden by config values. Returns 0 or -EINVAL (message names the key; zero
 * values and values over one day are refused). */
int proto_timing_load(proto_timing *t, const cf_config *c, cf_err *err);

#endif
