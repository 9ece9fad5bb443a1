/* sched_status: the scheduler's HTTP endpoints on a proto_http server.
 *
 *   GET /metrics             Prometheus text format (gauges, counters, latency histogram)
 *   GET /status              JSON: {"hosts":[...],"tasks":[...]} (at most ?limit=N each,
 *                            default 1000, "truncated":true when cut)
 *   GET /status/task?id=ID   JSON: one task and its swarm (peers, bitmap counts, parents)
 *   GET /healthz             "ok"
 * /status* are served to local clients only unless sched_status_allow_remote.
 *
 * Loop thread only. */
#ifndef SCHED_STATUS_H
#define SCHED_STATUS_H

#include "cf/buf.h"
#include "proto/http_server.h"
#include "sched/sched_server.h"

typedef struct sched_status sched_status;

/* Registers the routes above on http; *out holds their context (free it with
 * sched_status_free after the http server closed). Returns 0 or -ENOMEM. */
int sched_status_new(proto_http_server *http, sched_server *srv, sched_status **out);
void sched_status_free(sched_status *st);
/* /status and /status/task answer 403 to clients not on this host unless allowed (they name
 * every task's digest and its holders). */
void sched_status_allow_remote(sched_status *st, int allow);

/* Appends the JSON of /status/task for task_id to out. Returns 0, -ENOENT, -ENOMEM. */
int sched_status_task_json(sched_server *srv, const char *task_id, cf_buf *out);

#endif
