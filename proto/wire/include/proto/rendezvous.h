/* Scheduler choice by rendezvous (highest random weight) hashing, and scheduler health.
 *
 * For a task, every peer picks, among the configured schedulers that it considers healthy, the
 * one with the highest score = SHA-256(task_id || scheduler_address) (the bytes of both strings,
 * no separator, no NUL), the 32-byte digests compared as big-endian unsigned numbers (memcmp).
 * Ties (never seen in practice) go to the lower index. So all peers with the same scheduler list
 * agree, tasks spread evenly, and removing a scheduler only moves the tasks it owned.
 *
 * A scheduler counts as unhealthy only after a failed connect or PROTO_HEARTBEAT_MISS_LIMIT
 * consecutive missed heartbeat replies; it becomes a candidate again after a successful connect
 * or reply, and may be retried (proto_sched_health_retry_due) after timing.sched_retry_ms.
 * Pure functions / plain structs; not thread-safe per struct. */
#ifndef PROTO_RENDEZVOUS_H
#define PROTO_RENDEZVOUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/timing.h"

typedef struct proto_sched_health {
    uint32_t missed;        /* consecutive heartbeats without reply */
    bool connect_failed;    /* the last connect attempt failed */
    uint64_t down_since_ms; /* when it became unhealthy (caller's clock, e.g. uv_now) */
} proto_sched_health;

/* A zeroed struct is healthy. */
void proto_sched_health_init(proto_sched_health *h);
void proto_sched_health_connect_ok(proto_sched_health *h);
void proto_sched_health_connect_failed(proto_sched_health *h, uint64_t now_ms);
/* A heartbeat interval passed without a reply to the previous beat. */
void proto_sched_health_missed(proto_sched_health *h, uint64_t now_ms, const proto_timing *t);
void proto_sched_health_reply(proto_sched_health *h);
/* t may be NULL (defaults). */
bool proto_sched_health_ok(const proto_sched_health *h, const proto_timing *t);
/* Unhealthy and down for at least t->sched_retry_ms. */
bool proto_sched_health_retry_due(const proto_sched_health *h, uint64_t now_ms,
                                  const proto_timing *t);

/* score = SHA-256(task_id || addr). Returns 0 or -ENOMEM. */
int proto_rendezvous_score(const char *task_id, const char *addr, uint8_t out[32]);

/* Index (>= 0) of the chosen scheduler among addrs[0..n), skipping those whose health (when
 * health != NULL) is not ok. Returns -ENOENT when none is eligible, -EINVAL on NULL args,
 * -ENOMEM. */
int proto_rendezvous_pick(const char *task_id, const char *const *addrs,
                          const proto_sched_health *health, size_t n, const proto_timing *t);

#endif
