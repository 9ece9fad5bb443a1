/* The blob range reader: bytes [offset, offset+length) of one blob, handed to a front end (local
 * API, registry mirror) as they become available, in order. By default only verified bytes: a
 * piece checked against the blob's digest list on arrival, else once the whole blob's sha256
 * matched. With PEER_RANGE_UNVERIFIED, cut-through: from the cache as soon as the covering
 * piece is stored (while the rest still downloads, for a consumer that checks the bytes
 * itself), or from memory when the cache is full. The consumer pulls (peer_range_next) when it can
 * send and is told (on_ready) when it should try again, so a slow consumer holds back only itself.
 * Transport neutral: it knows no socket and no message format.
 *
 * Ownership: the front end owns the reader until peer_range_close(), which may be called at any
 * time, also from the callbacks. While the blob's cache entry exists the reader holds an in-use
 * reference on it, so quota eviction never removes a blob under a slow reader. Loop thread
 * only. */
#ifndef PEER_RANGE_READER_H
#define PEER_RANGE_READER_H

#include <stdint.h>

#include "cf/error.h"

typedef struct peer_daemon peer_daemon;
typedef struct peer_range_reader peer_range_reader;

typedef struct peer_range_cbs {
    /* More may be available (or the reader failed): call peer_range_next(). */
    void (*on_ready)(peer_range_reader *rr, void *arg);
} peer_range_cbs;

/* One span of bytes at the reader's position, valid until peer_range_consume(). Either from the
 * cache (fd >= 0: `length` bytes of fd at `file_offset`, e.g. for sendfile) or from memory
 * (fd < 0: `data`). */
typedef struct peer_range_span {
    uint64_t offset; /* blob offset (the reader's position) */
    uint32_t length;
    int fd;
    uint64_t file_offset;
    const uint8_t *data;
    int last; /* the span ends the range */
} peer_range_span;

#define PEER_RANGE_WHOLE    1u /* also download the rest of the blob (fetch_whole_blob permitting) */
#define PEER_RANGE_PREFETCH 2u /* download the whole blob, whatever fetch_whole_blob says */
/* The range ends at the blob's end at most: length may reach past it (UINT64_MAX - offset = "to
 * the end", for a reader that does not know the length yet, e.g. an HTTP GET without Range). An
 * offset at or past the end of a non-empty blob still fails (PROTO_E_RANGE). */
#define PEER_RANGE_CLAMP 4u
/* Cut-through: stored pieces are handed out before they are verified. Without it a read waits
 * for verification (the task then fetches the whole blob when no digest list can verify the
 * piece), and fails with PROTO_E_NO_SPACE when the cache is full and the bytes can never be
 * verified. */
#define PEER_RANGE_UNVERIFIED 8u

/* Starts reading task_id (sha256:<hex>) through its download task (started if needed; origin
 * "[http[s]://]registry/repo" may be "" for a cached blob; creds "user:password" or NULL).
 * length 0 is allowed: the read finishes once the blob's cache entry is open (a prefetch).
 * Returns 0, or a negative errno with a message (bad id or origin, shutting down, no memory). */
int peer_range_open(peer_daemon *d, const char *task_id, const char *origin, const char *creds,
                    uint64_t offset, uint64_t length, unsigned flags, const peer_range_cbs *cbs,
                    void *arg, peer_range_reader **out, cf_err *err);

/* The next span, at most max bytes: 0 = *span filled; 1 = the range is complete; -EAGAIN = not
 * yet (on_ready follows); another negative errno = the read failed, with the wire code and
 * message from peer_range_error(). */
int peer_range_next(peer_range_reader *rr, uint32_t max, peer_range_span *span);
/* The rest of the range as the data file, for a front end that hands a descriptor to its
 * consumer instead of copying bytes. span: what peer_range_next just returned (0). Only for a
 * blob that is complete and verified, whose file nothing rewrites any more (eviction unlinks
 * it, so a descriptor keeps the bytes): opens the file again read-only (its own open file
 * description: the consumer can neither write the cache nor move the daemon's offset) into *fd
 * (the caller closes it); the bytes from span->offset to the range's end, *length of them, lie
 * at the same offset in it (data files are laid out at blob offsets). The span is consumed and
 * the reader is at the range's end. -EAGAIN: not complete and verified (yet), or the span is
 * from memory; another negative errno: the file could not be opened. On either, nothing
 * changed: go on with the span. Loop thread. */
int peer_range_take_file(peer_range_reader *rr, peer_range_span *span, int *fd, uint64_t *length);
/* The consumer took the span (all of it): the position advances, the cache lease is released. */
void peer_range_consume(peer_range_reader *rr, peer_range_span *span);
/* Why the read failed: a PROTO_E_* code and a message for the user. */
uint32_t peer_range_error(const peer_range_reader *rr, const char **msg);
/* 1 when the blob was already complete and verified when the read started (a cache hit). */
int peer_range_was_cached(const peer_range_reader *rr);
/* The blob's length, known once peer_range_next() returned something other than -EAGAIN (the
 * cache entry was open; also after a range failure, for the length in a 416 answer): 0 and *len,
 * else -EAGAIN (not yet) or -EIO (failed before the length was known). */
int peer_range_blob_length(const peer_range_reader *rr, uint64_t *len);
const char *peer_range_task_id(const peer_range_reader *rr);
/* When the blob's task last stored a piece (daemon clock, ms); 0 when there is no running
 * task (failed, or served from a complete cache entry). A front end waiting for its first
 * bytes uses it to tell a slow mesh (pieces still landing) from a stuck one. */
uint64_t peer_range_task_progress_ms(const peer_range_reader *rr);
void peer_range_close(peer_range_reader *rr);

#endif
