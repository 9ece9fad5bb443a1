/* flow_net: the flow-level network model of the mesh simulator (`chunkfly-sched-sim flow`).
 *
 * Nodes 0..n-1 each have an uplink and a downlink of fixed capacity (bytes/s); the origin
 * (FNET_ORIGIN) has an uplink only. A flow moves `size` bytes from a source's uplink to a
 * destination's downlink; its rate is set by the flows sharing those two links:
 *
 *   FNET_MAXMIN  max-min fair over every link (progressive filling), recomputed for all flows
 *                whenever a flow starts or ends: what TCP flows through shaped links converge
 *                to. O(flows log links) per change, so meant for meshes up to a few hundred nodes.
 *   FNET_FAIR    per-link fair share: rate = min(up / flows on the uplink, down / flows on the
 *                downlink), recomputed only for the flows on the two links touched. Never above
 *                the max-min rate (capacity a flow cannot use on one side is not handed to the
 *                others), so it errs slow; O(flows on those two links) per change.
 *
 * Not modelled: TCP slow start and loss, queueing delay, the core of the network (only the
 * access links limit), per-request overheads. Time is in microseconds of the caller's virtual
 * clock. A flow reaches "marks" (byte counts set by the caller, e.g. piece boundaries); the
 * model reports, through on_rate, every flow whose rate changed so the caller re-schedules its
 * next mark (fnet_eta). Single-threaded; the model owns its flows (ids are reused after
 * fnet_finish). Errors: -ENOMEM. */
#ifndef FLOW_NET_H
#define FLOW_NET_H

#include <stddef.h>
#include <stdint.h>

#define FNET_ORIGIN (-1)

enum fnet_model { FNET_MAXMIN, FNET_FAIR };

typedef struct fnet_flow {
    int src, dst;      /* node index or FNET_ORIGIN (src only) */
    double size, done; /* bytes */
    double mark;       /* next byte count the caller wants to hear about */
    double rate;       /* bytes/s now */
    uint64_t t_last;   /* done is exact at this time (us) */
    uint32_t ver;      /* bumped on every rate change: stale events compare it */
    int up_pos, down_pos, live, frozen;
    void *user;
} fnet_flow;

typedef struct fnet fnet;

struct fnet_ops {
    /* Flow f's rate changed at `now` (re-schedule its mark). */
    void (*on_rate)(void *ctx, int id, fnet_flow *f, uint64_t now);
    /* Optional: f moved bytes at a constant rate from t0 to t1 (us), for per-second figures. */
    void (*on_bytes)(void *ctx, const fnet_flow *f, uint64_t t0, uint64_t t1);
    void *ctx;
};

/* up/down: n capacities in bytes/s (copied). NULL on ENOMEM. */
fnet *fnet_new(int n, const double *up, const double *down, double origin_up, enum fnet_model m,
               const struct fnet_ops *ops);
void fnet_free(fnet *net);
/* Starts a flow of size bytes; its first mark is `mark`. Returns its id (>= 0) or -ENOMEM. */
int fnet_start(fnet *net, int src, int dst, double size, double mark, void *user, uint64_t now);
fnet_flow *fnet_get(fnet *net, int id);
/* Brings f->done up to now (call before reading done or moving the mark). */
void fnet_advance(fnet *net, int id, uint64_t now);
/* When flow id reaches its mark at the current rate (UINT64_MAX when its rate is 0). */
uint64_t fnet_eta(const fnet *net, int id);
/* Ends the flow (rates of the others are recomputed). */
void fnet_finish(fnet *net, int id, uint64_t now);
size_t fnet_live(const fnet *net);
/* Ids handed out so far (every id < this is valid for fnet_get; check f->live). */
int fnet_ids(const fnet *net);

#endif
