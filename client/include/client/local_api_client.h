/* Blocking client of the peer daemon's local API (docs/protocol.md "Local API"): one unix-socket
 * connection to chunkfly-peer, the HELLO handshake, then one request at a time.
 *
 * Used by the `chunkfly` command line and the FUSE reader. Plain blocking sockets, no event loop.
 *
 * Every reply is validated before use: frame header (magic, version, sizes against our limits),
 * body (proto_msg_decode), the message type expected for the request, the echoed request id,
 * data offsets (each LOCAL_DATA frame must continue exactly where the previous one ended, and
 * never go past the requested range). Anything else is -EBADMSG with a message naming what was
 * wrong, and the connection is no longer usable (client_local_close it).
 *
 * Errors (negative errno, message in err):
 *   connecting:  -ENOENT (no socket file), -ECONNREFUSED (nobody listens), -EACCES, -ENAMETOOLONG
 *   handshake:   -EPROTONOSUPPORT (version refused), -EBADMSG
 *   the peer's ERROR answer, mapped from its code: UNKNOWN_TASK/NOT_FOUND -ENOENT, RANGE -ERANGE,
 *   AUTH -EACCES, ORIGIN -EREMOTEIO, NO_SPACE -ENOSPC, BUSY -EBUSY, DIGEST_MISMATCH -EBADMSG,
 *   SHUTDOWN -ESHUTDOWN, others -EPROTO; the message is "peer: <its text> (<CODE>)" and
 *   client_local_last_peer_code() returns the raw code.
 *   -ETIMEDOUT    nothing arrived for opts.idle_timeout_ms
 *   -ECONNRESET / -EPIPE   the daemon closed the connection
 *   any negative value returned by a data callback is passed through (the connection is then
 *   closed, as the rest of the answer is still in flight).
 *
 * Threads: a client_local is used by one thread at a time; separate clients are independent.
 * Ownership: client_local_connect allocates, client_local_close frees (also after errors).
 * Strings passed in are borrowed for the duration of the call. */
#ifndef CLIENT_LOCAL_API_CLIENT_H
#define CLIENT_LOCAL_API_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

#define CLIENT_DEFAULT_SOCKET "/run/chunkfly/peer.sock"

typedef struct client_local client_local;

typedef struct client_local_opts {
    /* Fail with -ETIMEDOUT when the daemon sends nothing for this long during a request
     * (0 = 300 s: a mesh download may legitimately wait for parents). */
    int idle_timeout_ms;
    /* Largest LOCAL_DATA payload we accept, announced in HELLO (0 = 4 MiB). */
    uint32_t max_payload;
    /* Node id sent in HELLO (NULL = "chunkfly-client-<pid>"). */
    const char *node_id;
    /* Reads may return bytes the daemon has not verified yet (LOCAL_READ "uv": cut-through,
     * lowest latency). Only for a caller that checks every byte itself (the FUSE reader checks
     * each chunk's digest); false = the daemon sends verified bytes only. */
    bool unverified_ok;
    /* Reads may be answered with a read-only descriptor of the daemon's file once the blob is
     * complete and verified (LOCAL_READ "fd", LOCAL_FILE): the bytes are then copied from it
     * here (client_file_fn, or read into the client_data_fn) instead of through the socket. */
    bool accept_fd;
} client_local_opts;

/* One cached blob as the daemon reports it. */
typedef struct client_entry {
    char task_id[72]; /* "sha256:<64 hex>" */
    uint64_t content_length;
    uint32_t piece_size;
    uint32_t piece_count;
    uint32_t pieces_have;
    bool pinned;
    bool complete;
} client_entry;

/* A parent of a download task (host id and piece-server address as the scheduler gave them). */
typedef struct client_parent {
    char host_id[129];
    char addr[263];
    uint32_t served; /* pieces it served for this task */
    bool banned;     /* served bad bytes: never asked again for this task */
    bool down;       /* timed out / refused: skipped for a while */
} client_parent;

/* One download task of the daemon (running, or finished and seeding). */
typedef struct client_task {
    char task_id[72];
    char state[17];          /* "running", "done", "failed", ... (as the daemon names it) */
    uint64_t content_length; /* 0 = not known yet */
    uint32_t piece_count;
    uint32_t pieces_have;
    uint64_t from_parents, from_origin; /* bytes fetched from each */
    bool origin_mode;                   /* fetching from the origin */
    uint32_t readers;                   /* local reads waiting on it */
    char error[1025];                   /* why it failed, "" otherwise */
    client_parent *parents;             /* n_parents entries, inside the tasks allocation */
    size_t n_parents;
} client_task;

/* Connects to the daemon's socket and does the handshake. opts may be NULL. */
int client_local_connect(const char *socket_path, const client_local_opts *opts, client_local **out,
                         cf_err *err);
/* Same over an already connected stream socket (a socketpair, an inherited fd): the client owns
 * fd from then on and closes it, also on failure. `name` labels it in messages. */
int client_local_open_fd(int fd, const char *name, const client_local_opts *opts,
                         client_local **out, cf_err *err);
/* Closes and frees (NULL is a no-op). */
void client_local_close(client_local *c);

/* The ERROR code (proto_error_code) of the last refused request, 0 if none. */
uint32_t client_local_last_peer_code(const client_local *c);

/* Receives read data in blob order. `offset` is the blob offset of data[0]. Return 0 to go on
 * or a negative errno to abort. */
typedef int (*client_data_fn)(void *ctx, uint64_t offset, const void *data, size_t len);

/* Reads [offset, offset+length) of blob `task_id` ("sha256:<hex>") through the daemon, which
 * fetches what it lacks from the mesh or from `origin` ("registry/repo@sha256:<hex>", optionally
 * prefixed "http://" for a plain-http registry) with `credentials` ("user:password", may be NULL;
 * sent to the daemon only, never logged). The range must lie within the blob (the daemon
 * answers RANGE otherwise: learn the length with client_local_start or client_local_stat).
 * Data goes to fn in order; *delivered (may be NULL) = bytes delivered, also on failure. */
int client_local_read(client_local *c, const char *task_id, const char *origin,
                      const char *credentials, uint64_t offset, uint64_t length, client_data_fn fn,
                      void *ctx, uint64_t *delivered, cf_err *err);

/* Receives the rest of a read as a file (only with opts.accept_fd): `len` bytes of `fd` at
 * `file_offset` are the blob's bytes at `offset`. fd is the library's, valid during the call
 * (read-only; do not close it). Return 0 or a negative errno to abort. */
typedef int (*client_file_fn)(void *ctx, uint64_t offset, int fd, uint64_t file_offset,
                              uint64_t len);

/* client_local_read with file_fn for a read answered with a descriptor (NULL: its bytes are
 * read from the file into fn in blocks, as if they had come over the socket). */
int client_local_read_ex(client_local *c, const char *task_id, const char *origin,
                         const char *credentials, uint64_t offset, uint64_t length,
                         client_data_fn fn, client_file_fn file_fn, void *ctx, uint64_t *delivered,
                         cf_err *err);

/* Same, writing the data to fd with pwrite at fd_offset + (blob offset - offset) (a descriptor
 * answer: copied in the kernel, copy_file_range). */
int client_local_read_fd(client_local *c, const char *task_id, const char *origin,
                         const char *credentials, uint64_t offset, uint64_t length, int fd,
                         uint64_t fd_offset, uint64_t *delivered, cf_err *err);

/* Asks the daemon to fetch [offset, offset+length) in the background (length 0 = to the end).
 * Returns once accepted (LOCAL_OK). */
int client_local_prefetch(client_local *c, const char *task_id, const char *origin,
                          const char *credentials, uint64_t offset, uint64_t length, cf_err *err);

/* Starts a whole-blob download in the daemon (LOCAL_PREFETCH of everything) and returns the
 * blob's cache entry (length, piece size, pieces held) once the daemon knows them: the way to
 * learn a blob's length before reading it. Same arguments as client_local_read. */
int client_local_start(client_local *c, const char *task_id, const char *origin,
                       const char *credentials, client_entry *out, cf_err *err);

/* The daemon's cache entry for task_id; -ENOENT when it holds nothing for it. */
int client_local_stat(client_local *c, const char *task_id, client_entry *out, cf_err *err);

/* Pin (never evicted) / unpin a cached blob. */
int client_local_pin(client_local *c, const char *task_id, cf_err *err);
int client_local_unpin(client_local *c, const char *task_id, cf_err *err);

/* Every cached blob. *entries is malloc'd (free() it; NULL when *n == 0). */
int client_local_list(client_local *c, client_entry **entries, size_t *n, cf_err *err);

/* Every cached blob (as client_local_list) and, when tasks is not NULL, the daemon's download
 * tasks with their parents: *tasks is one malloc'd block holding the parents too (free() it;
 * NULL when *n_tasks == 0). A daemon too old to report tasks gives *n_tasks = 0. */
int client_local_status(client_local *c, client_entry **entries, size_t *n, client_task **tasks,
                        size_t *n_tasks, cf_err *err);

#endif
