/* proto_conn: a framed libuv stream (TCP or unix socket) shared by the scheduler and the peer
 * daemon.
 *
 * Reading: bytes are assembled into frames incrementally (any split), each header is validated
 * (magic, version, body and payload <= the connection's receive limits) BEFORE
 * anything is allocated for it; a bad header closes the connection with -EBADMSG/-EPROTO/
 * -EMSGSIZE. Complete frames go to on_frame. Body decoding is left to the caller
 * (proto_msg_decode), so the conn never rejects a frame for an unknown type.
 *
 * Writing: a queue of frames (copied bytes) and file regions (sent with sendfile(2) when the
 * socket is writable, correct for non-blocking sockets: partial sends and EAGAIN resume later).
 * Back-pressure: proto_conn_queued() counts unsent bytes; above opts.high_watermark
 * proto_conn_congested() is true and producers should pause; on_drain fires once the queue falls
 * to opts.low_watermark. A send that would push the queue past opts.max_queued fails with
 * -ENOBUFS (nothing queued) unless the queue is empty.
 *
 * TLS (opts.tls): the same frames inside mutual TLS (proto/tls.h), driven through memory BIOs so
 * libuv keeps doing all socket I/O. Accepted conns are TLS servers requiring a client
 * certificate; connected conns are clients (proto_conn_open: opts.tls_server chooses). on_connect
 * fires, and frames flow, only once the handshake has succeeded; a failed handshake ends in
 * on_close(-EPROTO or -EACCES, reason) with the cause ("plaintext connection refused", "no
 * client certificate", "its certificate is not accepted: ..."). File regions cannot use
 * sendfile under TLS: they are read in the libuv thread pool (120 KiB per job, one at a time per
 * conn, so a cold page never stalls the loop) and encrypted in 64 KiB steps. Without opts.tls
 * nothing changes (sendfile, direct reads).
 *
 * Idle timeout: with opts.idle_timeout_ms > 0 the connection closes with -ETIMEDOUT after that
 * long without any byte read or written.
 *
 * Memory: an idle conn owns no read buffer (about 0.8 KiB in all). Reads use a 64 KiB buffer
 * shared per thread; complete frames are passed to on_frame from it in place. Only a partial
 * frame is kept per conn, in a buffer growing with the bytes received up to exactly body +
 * payload and freed after on_frame; bytes read while paused are kept until resumed.
 *
 * Threads: everything runs on the loop thread; no call may come from another thread.
 * Lifetime: a conn is created by connect/accept/open, always ends with exactly one on_close
 * (also when connecting fails), and is freed right after on_close returns; do not touch it
 * afterwards. Callbacks may call any proto_conn function, including proto_conn_close. */
#ifndef PROTO_CONN_H
#define PROTO_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "cf/error.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "proto/tls.h"

typedef struct proto_conn proto_conn;

typedef struct proto_conn_cbs {
    /* One complete frame. h is validated; body (h->body_len bytes) and payload
     * (h->payload_len bytes) are valid only during the call. Required. */
    void (*on_frame)(proto_conn *c, const proto_frame_header *h, const uint8_t *body,
                     const uint8_t *payload);
    /* Outgoing connection established (connect_* only). Optional. Sends queued before it are
     * kept and flushed once connected. */
    void (*on_connect)(proto_conn *c);
    /* Queue fell to the low watermark after having been congested. Optional. */
    void (*on_drain)(proto_conn *c);
    /* Final callback, exactly once. status 0 = proto_conn_close(c, 0, ...) or the other side
     * closed cleanly at a frame boundary; otherwise a negative errno (connect failure,
     * -ECONNRESET, -ETIMEDOUT idle, -EBADMSG/-EPROTO/-EMSGSIZE bad frame, -EPIPE EOF inside a
     * frame, -EIO file region could not be read). reason: a short human text (never NULL),
     * valid during the call. Optional. */
    void (*on_close)(proto_conn *c, int status, const char *reason);
} proto_conn_cbs;

typedef struct proto_conn_opts {
    uint32_t max_payload;     /* receive limit; 0 = PROTO_MAX_PAYLOAD (also the clamp) */
    uint32_t max_body;        /* receive limit on bodies; 0 = PROTO_MAX_BODY (also the clamp).
                               * Servers keep it small until HELLO (an unauthenticated
                               * stranger may make a connection hold only that much). */
    uint32_t idle_timeout_ms; /* 0 = no idle timeout */
    size_t high_watermark;    /* 0 = 4 MiB */
    size_t low_watermark;     /* 0 = high_watermark / 4 */
    size_t max_queued;        /* 0 = 64 MiB */
    proto_tls *tls;           /* NULL = plain; else mutual TLS with this context (borrowed:
                               * it must outlive the create call only) */
    bool tls_server;          /* proto_conn_open only: TLS server (else client) role */
    /* connect_tcp only: local address (port 0) to connect from; NULL = the kernel's choice */
    const struct sockaddr *source;
    /* Frames of 64 KiB and more are received into a cf_bufpool buffer of their whole size,
     * taken at once when their header arrives (counted in the input budget at that size), and
     * on_frame may keep it (proto_conn_take_frame): no copy, no page faults per frame. For
     * connections whose large frames we asked for (a parent's pieces); elsewhere a stranger
     * announcing large frames would make the conn hold their full size. */
    bool pooled_frames;
} proto_conn_opts;

/* Outgoing TCP connection to addr (sockaddr_in/in6). On immediate failure returns a negative
 * errno and creates nothing; otherwise *out is set and on_connect or on_close follows.
 * opts may be NULL (defaults); cbs is copied; data is the user pointer (proto_conn_data). */
int proto_conn_connect_tcp(uv_loop_t *loop, const struct sockaddr *addr,
                           const proto_conn_opts *opts, const proto_conn_cbs *cbs, void *data,
                           proto_conn **out);
/* Outgoing unix-socket connection (local API). Same contract. */
int proto_conn_connect_pipe(uv_loop_t *loop, const char *path, const proto_conn_opts *opts,
                            const proto_conn_cbs *cbs, void *data, proto_conn **out);
/* Accepts one pending connection from a listening uv_tcp_t or uv_pipe_t (call from its
 * connection callback). Returns 0 or a negative errno (nothing created). */
int proto_conn_accept(uv_stream_t *server, const proto_conn_opts *opts, const proto_conn_cbs *cbs,
                      void *data, proto_conn **out);
/* Wraps an already connected socket fd (TCP or AF_UNIX, e.g. a socketpair). The conn owns fd
 * from then on (closes it), also on failure. */
int proto_conn_open(uv_loop_t *loop, int fd, const proto_conn_opts *opts, const proto_conn_cbs *cbs,
                    void *data, proto_conn **out);

/* Queues one frame: copies header, body and payload. Returns 0, -ENOBUFS (queue full),
 * -EMSGSIZE (body > PROTO_MAX_BODY or payload > the peer's limit), -ENOTCONN (closing),
 * -ENOMEM. */
int proto_conn_send_raw(proto_conn *c, uint8_t type, uint16_t flags, const void *body,
                        size_t body_len, const void *payload, size_t payload_len);
/* Encodes m (proto_msg_encode_body) and queues it with a copied payload (may be NULL/0).
 * Errors as above plus encoder errors (-EINVAL with err message). */
int proto_conn_send(proto_conn *c, const proto_msg *m, const void *payload, size_t payload_len,
                    cf_err *err);
/* Queues an ERROR message (req_id 0 / task_id NULL when not about one request or task;
 * message is copied). Errors as proto_conn_send. */
int proto_conn_send_error(proto_conn *c, uint32_t code, uint64_t req_id, const char *task_id,
                          const char *message);
/* Encodes m and queues it with `len` payload bytes taken from file fd at `offset`, sent with
 * sendfile(2). fd is dup()ed (the caller may close its fd at once). If the file yields fewer
 * bytes than len when sent, the frame cannot be completed: the connection closes with -EIO.
 * Errors as proto_conn_send plus -errno from dup. */
int proto_conn_send_file(proto_conn *c, const proto_msg *m, int fd, uint64_t offset, uint32_t len,
                         cf_err *err);
/* Encodes m (no payload) and queues it with descriptor fd attached (SCM_RIGHTS on its first
 * bytes), in order with the other frames. fd is dup()ed (the caller keeps its own); the receiver
 * gets its own descriptor of the same open file, so pass only what it may read and keep (e.g.
 * a file opened read-only for it). Plain unix-socket conns only: -ENOTSUP over TCP or TLS.
 * A queued descriptor weighs 64 KiB in the queue's accounting (proto_conn_congested,
 * max_queued), so a receiver that does not read cannot make the sender hold many open files.
 * Errors as proto_conn_send plus -errno from dup. */
int proto_conn_send_fd(proto_conn *c, const proto_msg *m, int fd, cf_err *err);

/* Unsent bytes queued (frames + file regions). */
size_t proto_conn_queued(const proto_conn *c);
/* True while the queue is above the high watermark (until on_drain). */
bool proto_conn_congested(const proto_conn *c);

/* Stops / restarts delivering frames (reading from the socket), e.g. while the consumer's own
 * output is congested. resume returns 0 or a negative errno. */
void proto_conn_pause_read(proto_conn *c);
int proto_conn_resume_read(proto_conn *c);

/* Receive payload limit (e.g. after the handshake; clamped to PROTO_MAX_PAYLOAD, 0 = max). */
void proto_conn_set_max_payload(proto_conn *c, uint32_t max_payload);
/* Receive body limit (e.g. raised after the handshake; clamped to PROTO_MAX_BODY, 0 = max). A
 * larger frame header closes the connection with -EMSGSIZE. */
void proto_conn_set_max_body(proto_conn *c, uint32_t max_body);

/* Process-wide cap on the bytes all conns hold in partial frames (default
 * PROTO_CONN_DEF_INPUT_BUDGET; 0 = no cap). A conn whose partial frame would take the total over
 * it is closed with -ENOBUFS ("input budget exhausted"): many half-sent frames cannot grow the
 * process without bound. Any thread; takes effect for later allocations. */
#define PROTO_CONN_DEF_INPUT_BUDGET ((size_t)256 << 20)
void proto_conn_set_input_budget(size_t bytes);
/* Bytes currently held in partial frames, process-wide (for metrics and tests). */
size_t proto_conn_input_held(void);

/* The largest payload the other side accepts (from its HELLO); sends above fail -EMSGSIZE.
 * Default PROTO_MAX_PAYLOAD. */
void proto_conn_set_peer_max_payload(proto_conn *c, uint32_t max_payload);

/* Closes now: queued data is dropped, no more on_frame/on_drain; on_close(status, reason)
 * follows from the loop. Idempotent (later calls are ignored). reason may be NULL. */
void proto_conn_close(proto_conn *c, int status, const char *reason);
/* Stops reading, sends what is queued (e.g. a final ERROR), then closes as proto_conn_close. */
void proto_conn_close_after_flush(proto_conn *c, int status, const char *reason);

/* Inside on_frame only: the frame's buffer when it was received into a pooled one
 * (opts.pooled_frames): body at the returned pointer, payload after the body (the pointers
 * on_frame got). The caller owns it from then on and gives it back with cf_bufpool_put().
 * NULL when the frame is not in a pooled buffer (then body/payload die with the call). */
void *proto_conn_take_frame(proto_conn *c);
void *proto_conn_data(const proto_conn *c);
void proto_conn_set_data(proto_conn *c, void *data);
uv_loop_t *proto_conn_loop(const proto_conn *c);
/* "ip:port" of the other side for TCP, "unix" for unix sockets (for logs). */
const char *proto_conn_peer_name(const proto_conn *c);

/* The other side's identity from its verified certificate (proto/tls.h: first DNS SAN, else
 * CN) once the TLS handshake is done; NULL for plain conns and before the handshake. */
const char *proto_conn_peer_identity(const proto_conn *c);
/* True for a TLS conn (whether or not the handshake is done yet). */
bool proto_conn_is_tls(const proto_conn *c);

/* Parses "ip:port", "[ip6]:port" (numeric only, port 1..65535) into *out.
 * Returns 0 or -EINVAL. */
int proto_addr_parse(const char *s, struct sockaddr_storage *out);

#endif
