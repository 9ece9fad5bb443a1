/* The peer daemon's download timings, shared by the daemon (peer_daemon.c, download_task.c) and
 * the mesh simulator (scheduler/sim/flow_sim.c), which must run the policy on the same clock.
 * Values in milliseconds unless named otherwise. */
#ifndef PEER_DOWNLOAD_TIMING_H
#define PEER_DOWNLOAD_TIMING_H

/* The daemon's housekeeping tick (task sweeps, re-registration, stalls). */
#define PEER_TICK_MS 250
/* End game only for requests outstanding this long: a 1 MiB piece takes ~0.1 s at 100 Mbit/s
 * (~0.4 s queued behind per_parent_in_flight others), so 2 s means a stalled parent, not a
 * busy one; earlier duplicates cost bandwidth the swarm needs (no cancel message). */
#define PEER_END_GAME_AFTER_MS 2000
/* Bytes one origin request may fetch for a whole-blob download (an origin run, piece_policy.h):
 * docker-registry answers 256 Range GETs of 1 MiB in 2.0 s on loopback and the same 256 MiB in
 * one GET in 0.43 s; 32 MiB cuts the per-request cost to a few percent and still lets a run that
 * fails be asked again soon. */
#define PEER_ORIGIN_RUN_BYTES (32u << 20)
/* Pieces of piece_size (> 0) in one origin run: at least one. */
static inline unsigned peer_origin_run_pieces(unsigned piece_size)
{
    return PEER_ORIGIN_RUN_BYTES / piece_size ? PEER_ORIGIN_RUN_BYTES / piece_size : 1;
}
/* Re-register a task this long after candidates arrived or a registration was sent... */
#define PEER_REASK_MS 2000
/* ...and this soon when its parents ran out or its scheduler went away. */
#define PEER_REASK_SOON_MS 1000

#endif
