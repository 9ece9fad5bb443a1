/* Rendezvous (highest random weight) scheduler choice and scheduler health tracking. */
#include "proto/rendezvous.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cf/digest.h"

static proto_timing effective(const proto_timing *t)
{
    proto_timing d;
    if (t) return *t;
    proto_timing_defaults(&d);
    return d;
}

void proto_sched_health_init(proto_sched_health *h)
{
    memset(h, 0, sizeof(*h));
}

void proto_sched_health_connect_ok(proto_sched_health *h)
{
    h->connect_failed = false;
    h->missed = 0;
    h->down_since_ms = 0;
}

void proto_sched_health_connect_failed(proto_sched_health *h, uint64_t now_ms)
{
    if (!h->connect_failed) h->down_since_ms = now_ms;
    h->connect_failed = true;
}

void proto_sched_health_missed(proto_sched_health *h, uint64_t now_ms, const proto_timing *t)
{
    proto_timing e = effective(t);
    if (h->missed < UINT32_MAX) h->missed++;
    if (h->missed == e.heartbeat_miss_limit && !h->connect_failed) h->down_since_ms = now_ms;
}

void proto_sched_health_reply(proto_sched_health *h)
{
    h->missed = 0;
    h->connect_failed = false;
    h->down_since_ms = 0;
}

bool proto_sched_health_ok(const proto_sched_health *h, const proto_timing *t)
{
    proto_timing e = effective(t);
    return !h->connect_failed && h->missed < e.heartbeat_miss_limit;
}

bool proto_sched_health_retry_due(const proto_sched_health *h, uint64_t now_ms,
                                  const proto_timing *t)
{
    proto_timing e = effective(t);
    if (proto_sched_health_ok(h, t)) return false;
    return now_ms >= h->down_since_ms && now_ms - h->down_since_ms >= e.sched_retry_ms;
}

int proto_rendezvous_score(const char *task_id, const char *addr, uint8_t out[32])
{
    cf_digest_ctx ctx;
    int r = cf_digest_init(&ctx, CF_DIGEST_SHA256);
    if (r < 0) return r;
    cf_digest_update(&ctx, task_id, strlen(task_id));
    cf_digest_update(&ctx, addr, strlen(addr));
    cf_digest_final(&ctx, out);
    return 0;
}

int proto_rendezvous_pick(const char *task_id, const char *const *addrs,
                          const proto_sched_health *health, size_t n, const proto_timing *t)
{
    if (!task_id || (n && !addrs)) return -EINVAL;
    int best = -ENOENT;
    uint8_t best_score[32];
    for (size_t i = 0; i < n && i <= (size_t)INT32_MAX; i++) {
        if (!addrs[i]) return -EINVAL;
        if (health && !proto_sched_health_ok(&health[i], t)) continue;
        uint8_t s[32];
        int r = proto_rendezvous_score(task_id, addrs[i], s);
        if (r < 0) return r;
        /* memcmp on the digests = comparison as 256-bit big-endian numbers */
        if (best < 0 || memcmp(s, best_score, 32) > 0) {
            best = (int)i;
            memcpy(best_score, s, 32);
        }
    }
    return best;
}
