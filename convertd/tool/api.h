/* chunkfly-convertd's HTTP API on proto_http (docs/convertd.md): POST /api/v1/conversions
 * (the API, Harbor's webhook, docker-registry's notifications), GET /api/v1/conversions,
 * GET /api/v1/health, GET /metrics. Loop thread only; queue writes go to the thread pool. */
#ifndef CONVERTD_API_H
#define CONVERTD_API_H

#include <uv.h>

#include "cf/error.h"
#include "convertd/job_queue.h"

typedef struct cvd_api cvd_api;

typedef struct cvd_api_opts {
    cvd_queue *queue;
    const char *host; /* listen address */
    int port;
    const char *auth_header;     /* the Authorization value every POST must carry; NULL/"" =
                                    POSTs only from loopback */
    const char *suffix;          /* target tag suffix ("-nydus") */
    const char *target_registry; /* NULL/"" = the source's registry */
} cvd_api_opts;

/* Listens. Strings in o must outlive the API. */
int cvd_api_start(uv_loop_t *loop, const cvd_api_opts *o, cvd_api **out, cf_err *err);
/* The bound port. */
int cvd_api_port(const cvd_api *a);
/* Thread-safe: a job changed (the queue's notify); answers waiting sync requests. */
void cvd_api_job_changed(void *api);
/* Closes the server (waiting requests are dropped); frees once the loop ran the closes. */
void cvd_api_stop(cvd_api *a);

#endif
