/* gRPC server over HTTP/2 (nghttp2) on a libuv loop: unary and server-streaming methods, the
 * transport containerd uses to reach a proxy snapshotter.
 *
 * Threads: every function here must be called on the loop thread, except where noted. Handlers
 * run on the loop thread; one that needs disk or CPU work hands it to the thread pool and
 * finishes the call later (from the loop thread). Responses are written with write(2) through
 * libuv: the process must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)).
 *
 * Errors: 0 or a negative errno, with an optional cf_err message (see cf/error.h).
 *
 * Bounds (all set before any byte is parsed; NULL limits = the defaults below): connections,
 * concurrent streams per connection, header bytes, request message size. A request over the
 * message limit is answered RESOURCE_EXHAUSTED; a method nobody registered, UNIMPLEMENTED; a
 * stream without `content-type: application/grpc`, HTTP 415.
 *
 * Choices (what a client may notice):
 * - grpc-timeout is ignored: the client enforces its own deadline by resetting the stream, which
 *   a handler sees as cf_grpc_call_gone() (and cf_grpc_call_send returning -EPIPE).
 * - No compression: no grpc-encoding is advertised; a request message with the compressed flag
 *   is answered UNIMPLEMENTED. Responses are never compressed.
 * - Exactly one request message (unary and server-streaming methods): a second one is answered
 *   INTERNAL, a body cut inside a message INTERNAL. The handler runs once the client has ended
 *   its side of the stream.
 * - An answer sent before the request body ended (errors above) is followed by
 *   RST_STREAM(NO_ERROR) so the client stops uploading (RFC 9113 8.1).
 * - Calls whose handler has not finished count against max_streams_per_conn even after the
 *   client reset them (new streams are refused), so resets cannot pile up work.
 * - Response messages wait in memory until HTTP/2 flow control lets them out: at most 16 MiB
 *   per connection (cf_grpc_call_send returns -ENOBUFS past it; a single message can therefore
 *   not exceed 16 MiB). Requests being received hold at most max(16 MiB, max_message) per
 *   connection (past it, RESOURCE_EXHAUSTED for the stream that would exceed it).
 * - HTTP/2 receive windows: 1 MiB per stream, 8 MiB per connection.
 * - Only HTTP/2 with prior knowledge (no TLS, no HTTP/1.1 upgrade): what gRPC clients use over
 *   a unix socket. */
#ifndef CF_GRPC_H
#define CF_GRPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cf/error.h"

/* gRPC status codes (the numbers are the protocol's). */
enum cf_grpc_status {
    CF_GRPC_OK = 0,
    CF_GRPC_CANCELLED = 1,
    CF_GRPC_UNKNOWN = 2,
    CF_GRPC_INVALID_ARGUMENT = 3,
    CF_GRPC_DEADLINE_EXCEEDED = 4,
    CF_GRPC_NOT_FOUND = 5,
    CF_GRPC_ALREADY_EXISTS = 6,
    CF_GRPC_PERMISSION_DENIED = 7,
    CF_GRPC_RESOURCE_EXHAUSTED = 8,
    CF_GRPC_FAILED_PRECONDITION = 9,
    CF_GRPC_ABORTED = 10,
    CF_GRPC_OUT_OF_RANGE = 11,
    CF_GRPC_UNIMPLEMENTED = 12,
    CF_GRPC_INTERNAL = 13,
    CF_GRPC_UNAVAILABLE = 14,
};

typedef struct cf_grpc_limits {
    size_t max_message;            /* request message bytes; default 4 MiB */
    unsigned max_conns;            /* open connections; default 64 */
    unsigned max_streams_per_conn; /* SETTINGS_MAX_CONCURRENT_STREAMS; default 100 */
    size_t max_header_bytes;       /* per stream header block; default 16 KiB */
} cf_grpc_limits;

typedef struct cf_grpc_server cf_grpc_server;
typedef struct cf_grpc_call cf_grpc_call;

/* Called once the request's single message is complete (unary and server-streaming methods
 * both take exactly one request message; an empty body is a zero-length message). `req` is
 * valid only during the call. The handler (or code it hands the call to) must call
 * cf_grpc_call_finish exactly once; until then `call` stays valid even if the client goes
 * away (the response is then dropped). */
typedef void (*cf_grpc_handler)(cf_grpc_call *call, const uint8_t *req, size_t len, void *arg);

int cf_grpc_server_new(uv_loop_t *loop, const cf_grpc_limits *lim, cf_grpc_server **out,
                       cf_err *err);
/* path: "/package.Service/Method" (copied). */
int cf_grpc_server_add(cf_grpc_server *srv, const char *path, cf_grpc_handler fn, void *arg,
                       cf_err *err);
/* Listen on a unix socket (a stale socket file is replaced); `mode` e.g. 0600. */
int cf_grpc_server_listen_unix(cf_grpc_server *srv, const char *path, int mode, cf_err *err);
/* Stop listening, drop every connection, free the server once its handles are closed, then
 * call done(arg) (may be NULL). Calls still unfinished stay valid until they are finished. */
void cf_grpc_server_close(cf_grpc_server *srv, void (*done)(void *), void *arg);

/* Queue one response message (copied). Unary methods send at most one, streaming ones any
 * number. -EPIPE once the client has gone (the call must still be finished); -ENOBUFS when the
 * connection already queues 16 MiB of responses its client has not taken (nothing is queued:
 * retry later, e.g. from a timer, or finish RESOURCE_EXHAUSTED); -EINVAL after finish;
 * -ENOMEM. */
int cf_grpc_call_send(cf_grpc_call *call, const uint8_t *msg, size_t len);
/* End the call with a status and message (message may be NULL; sent percent-encoded as
 * grpc-message). Frees the call once written or dropped. */
void cf_grpc_call_finish(cf_grpc_call *call, int status, const char *message);
/* Nonzero once the client has reset the stream or closed the connection. */
int cf_grpc_call_gone(const cf_grpc_call *call);
/* The request's :path, e.g. for logs. Valid until finish. */
const char *cf_grpc_call_path(const cf_grpc_call *call);
/* The value of the first request header (gRPC metadata) called `name` (case-insensitive, e.g.
 * "containerd-namespace"), or NULL. Pseudo-headers are not kept; binary "-bin" values are
 * returned as sent (base64). Valid until finish. */
const char *cf_grpc_call_header(const cf_grpc_call *call, const char *name);

#endif
