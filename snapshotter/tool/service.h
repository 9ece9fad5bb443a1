/* containerd's snapshots v1 gRPC service over snap_core: each call's request is decoded on the
 * loop, the core runs in the thread pool, the answer is encoded and sent from the loop. */
#ifndef SNAP_SERVICE_H
#define SNAP_SERVICE_H

#include "cf/grpc.h"
#include "snapshotter/snap_core.h"

/* Registers the ten methods of /containerd.services.snapshots.v1.Snapshots/. */
int snap_service_register(cf_grpc_server *srv, snap_core *core, cf_err *err);

/* The gRPC status for a core error (the one errno map of the snapshotter). */
int snap_service_status(int rc);

#endif
