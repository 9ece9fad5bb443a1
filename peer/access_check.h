/* Blob access checks (docs/security.md "Private blobs"): may credential C read blob D through
 * registry/repository O? Blob bytes come from the cache and the mesh, whoever fetched them
 * first, so every front end that hands out bytes (the registry mirror, the upload server, the
 * local API) asks the registry first, for this repository and this digest (access to one
 * repository must not open a blob of another one named through it).
 *
 * One table per daemon: verdicts kept briefly (accepted 60 s, refused 10 s), at most 1024,
 * keyed by a salted SHA-256 of (credential kind, credential, origin, digest), never the
 * credential itself. Checks run in the thread pool (at most 8 at a time: they hold threads that
 * disk I/O and origin fetches need too); callers waiting for the same key share one check.
 *
 * Threads: everything here runs on the daemon's loop thread. Credentials are copied for the
 * check and wiped after it; callers keep ownership of theirs. */
#ifndef PEER_ACCESS_CHECK_H
#define PEER_ACCESS_CHECK_H

#include <stdint.h>

#include "cf/digest.h"
#include "cf/error.h"

typedef struct peer_daemon peer_daemon;

enum peer_access_kind {
    PEER_ACCESS_ANON,   /* no credentials at all: is the blob public? */
    PEER_ACCESS_NODE,   /* the node's own identity (its docker config) */
    PEER_ACCESS_BASIC,  /* secret = "user:password" (through the registry client's token flow) */
    PEER_ACCESS_BEARER, /* secret = a bearer token, sent as is in an HTTP HEAD */
};

typedef struct peer_access_cred {
    enum peer_access_kind kind;
    const char *secret; /* BASIC, BEARER; NULL otherwise */
} peer_access_cred;

enum peer_access_state {
    PEER_ACCESS_UNKNOWN = 0, /* could not tell (registry unreachable, shutting down): msg */
    PEER_ACCESS_OK,
    PEER_ACCESS_REFUSED, /* status 401/403/404 */
};

typedef struct peer_access_verdict {
    enum peer_access_state state;
    int status;           /* REFUSED: the registry's 401, 403 or 404 */
    const char *www_auth; /* REFUSED: its WWW-Authenticate, may be NULL */
    const char *msg;      /* for a user; never names the credential */
} peer_access_verdict;

/* A caller waiting for a verdict: embedded in the caller's request, which must stay alive until
 * done() is called or peer_access_cancel(). done() is called once, on the loop thread; the
 * verdict's strings are valid during the call only. done() may free the request and start
 * other checks. */
typedef struct peer_access_wait peer_access_wait;
struct peer_access_wait {
    peer_access_wait *next; /* internal */
    uint8_t key[CF_DIGEST_LEN];
    int waiting; /* 1 while queued */
    void (*done)(peer_access_wait *w, const peer_access_verdict *v);
};

/* Creates d->access. 0 or -ENOMEM / the getrandom errno. */
int peer_access_start(peer_daemon *d, cf_err *err);
/* Drops the table and its waiters without calling them (call it after the front ends closed:
 * their requests are gone); checks still in the pool free it when the last ends. Safe when
 * never started. */
void peer_access_stop(peer_daemon *d);

/* Asks whether c may read digest ("sha256:<hex>") through origin ("[http(s)://]registry/repo").
 * Returns 1 with *now filled when the table knows (strings valid until the loop runs again),
 * 0 when a check runs (or already ran for the key) and w->done will be called, or a negative
 * errno: -EBUSY (too many checks in flight, or every slot waits), -EINVAL (bad origin),
 * -ENOMEM, -ESHUTDOWN (stopped). */
int peer_access_check(peer_daemon *d, const peer_access_cred *c, const char *origin,
                      const char *digest, peer_access_wait *w, peer_access_verdict *now);
/* Only what the table knows: 1 with *now filled, else 0 (no check started). */
int peer_access_lookup(peer_daemon *d, const peer_access_cred *c, const char *origin,
                       const char *digest, peer_access_verdict *now);
/* w stops waiting (no call of done). Safe when w is not waiting. */
void peer_access_cancel(peer_daemon *d, peer_access_wait *w);

#endif
