/* Protocol timing defaults and their configuration keys. */
#include "proto/timing.h"

#include <errno.h>
#include <stddef.h>

const char *const proto_timing_config_keys[] = {
    "timing.heartbeat_interval", "timing.heartbeat_miss_limit", "timing.back_to_source_stall",
    "timing.idle_timeout",       "timing.scheduler_retry",      NULL,
};

void proto_timing_defaults(proto_timing *t)
{
    t->heartbeat_interval_ms = PROTO_HEARTBEAT_INTERVAL_MS;
    t->heartbeat_miss_limit = PROTO_HEARTBEAT_MISS_LIMIT;
    t->b2s_stall_ms = PROTO_B2S_STALL_MS;
    t->idle_timeout_ms = PROTO_IDLE_TIMEOUT_MS;
    t->sched_retry_ms = PROTO_SCHED_RETRY_MS;
}

#define DAY_MS (24ull * 3600 * 1000)

static int load_ms(const cf_config *c, const char *key, uint32_t *v, cf_err *err)
{
    uint64_t x;
    int r = cf_config_get_duration_ms(c, key, *v, &x, err);
    if (r < 0) return r;
    if (x == 0 || x > DAY_MS)
        return cf_err_set(err, -EINVAL, "%s: %llu ms is not in 1 ms .. 1 day", key,
                          (unsigned long long)x);
    *v = (uint32_t)x;
    return 0;
}

int proto_timing_load(proto_timing *t, const cf_config *c, cf_err *err)
{
    proto_timing_defaults(t);
    int r;
    if ((r = load_ms(c, "timing.heartbeat_interval", &t->heartbeat_interval_ms, err)) < 0) return r;
    uint64_t miss;
    r = cf_config_get_u64(c, "timing.heartbeat_miss_limit", t->heartbeat_miss_limit, &miss, err);
    if (r < 0) return r;
    if (miss == 0 || miss > 1000)
        return cf_err_set(err, -EINVAL, "timing.heartbeat_miss_limit: %llu is not in 1..1000",
                          (unsigned long long)miss);
    t->heartbeat_miss_limit = (uint32_t)miss;
    if ((r = load_ms(c, "timing.back_to_source_stall", &t->b2s_stall_ms, err)) < 0) return r;
    if ((r = load_ms(c, "timing.idle_timeout", &t->idle_timeout_ms, err)) < 0) return r;
    if ((r = load_ms(c, "timing.scheduler_retry", &t->sched_retry_ms, err)) < 0) return r;
    return 0;
}
