/* proto_grpc internals shared by its files, and by the fuzzer: an HTTP/2 gRPC connection
 * (one nghttp2 server session with its calls) that runs over any byte transport. grpc_server.c
 * drives it from a unix socket; tests/fuzz/proto/fuzz_grpc_server.c from memory.
 * Loop thread only, like the public API. */
#ifndef CF_GRPC_INTERNAL_H
#define CF_GRPC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cf/grpc.h"

#define CF_GRPC_DEF_MAX_MESSAGE (4u << 20)
#define CF_GRPC_DEF_MAX_CONNS   64u
#define CF_GRPC_DEF_MAX_STREAMS 100u
#define CF_GRPC_DEF_MAX_HEADER  (16u << 10)
/* Response bytes queued by cf_grpc_call_send and not yet taken by HTTP/2 framing, per
 * connection: past it send returns -ENOBUFS, so a client that stops reading a streaming
 * response cannot make us buffer without bound. */
#define CF_GRPC_MAX_QUEUED (16u << 20)
/* Request bytes all the streams of one connection may hold while their messages arrive
 * (at least max_message): bounds memory to this x max_conns whatever clients upload. Past it a
 * stream is answered RESOURCE_EXHAUSTED rather than held back by withholding WINDOW_UPDATEs:
 * partial messages could then wait on each other forever. */
#define CF_GRPC_CONN_REQ_BUDGET (16u << 20)
/* HTTP/2 receive windows: 1 MiB per stream, 8 MiB per connection, so a 4 MiB request message
 * flows without waiting on a WINDOW_UPDATE round trip per 64 KiB. */
#define CF_GRPC_STREAM_WINDOW (1 << 20)
#define CF_GRPC_CONN_WINDOW   (8 << 20)

struct cf_grpc_route {
    char *path;
    cf_grpc_handler fn;
    void *arg;
};

struct cf_grpc_server {
    uv_loop_t *loop;
    cf_grpc_limits lim;
    size_t max_queued; /* CF_GRPC_MAX_QUEUED (the fuzzer lowers these two) */
    size_t req_budget; /* CF_GRPC_CONN_REQ_BUDGET, at least lim.max_message */
    struct cf_grpc_route *routes;
    size_t n_routes;
    /* transport (grpc_server.c) */
    uv_pipe_t listener;
    struct cf_grpc_sock *socks; /* open socket connections */
    unsigned n_socks;
    int listening;
    int closing;
    unsigned handles_open;
    void (*done)(void *);
    void *done_arg;
    uint8_t readbuf[65536]; /* shared: libuv calls alloc and read back to back */
    int readbuf_busy;
};

typedef struct cf_grpc_conn cf_grpc_conn;

struct cf_grpc_conn_ops {
    /* Takes (copies) `len` output bytes. Returns 0 to go on, 1 to stop producing output until
     * the next cf_grpc_conn_flush (the transport's buffer is full), <0 when the transport is
     * broken (the owner then frees the connection). */
    int (*send)(void *ctx, const uint8_t *data, size_t len);
    /* New output is ready outside cf_grpc_conn_recv (a handler sent or finished later): the
     * owner should call cf_grpc_conn_flush, now or soon. Must not free the connection. */
    void (*kick)(void *ctx);
};

/* A connection over `ops` (ctx is passed back). Queues the server SETTINGS; flush to send. */
int cf_grpc_conn_new(cf_grpc_server *srv, const struct cf_grpc_conn_ops *ops, void *ctx,
                     cf_grpc_conn **out, cf_err *err);
/* Feeds received bytes (handlers run from here). <0: protocol error, close the connection
 * (after a last flush: nghttp2 may have queued a GOAWAY). */
int cf_grpc_conn_recv(cf_grpc_conn *c, const uint8_t *data, size_t len);
/* Hands pending output to ops->send. 0 all sent, 1 stopped by send, <0 error. */
int cf_grpc_conn_flush(cf_grpc_conn *c);
/* Nonzero when neither side has anything more to say (the peer said GOAWAY and all streams
 * ended, or a fatal error): close the transport once output is written. */
int cf_grpc_conn_done(const cf_grpc_conn *c);
/* Frees the session; every call still open becomes gone (its handler must still finish it). */
void cf_grpc_conn_free(cf_grpc_conn *c);

const struct cf_grpc_route *cf_grpc_server_route(const cf_grpc_server *srv, const char *path,
                                                 size_t len);

#endif
