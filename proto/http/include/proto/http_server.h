/* proto_http: the project's one small HTTP/1.1 server (Debian's http_parser on libuv streams).
 *
 * Used by chunkfly-scheduler (/metrics, /status), the peer daemon (/metrics, health) and later a
 * registry-mirror endpoint, so it supports: exact-path and prefix routes, GET/HEAD (HEAD runs the
 * GET handler and drops the body), keep-alive with sequential requests on one connection
 * (pipelined requests wait in the socket, not in memory), asynchronous responses, streamed
 * response bodies with back-pressure, and file regions (read through the libuv thread pool, or
 * sent with sendfile(2)).
 *
 * Limits (struct proto_http_limits) bound what a client can make us hold: header bytes, body
 * bytes, simultaneous connections and idle time. A violation answers 400/413/431/503 (when
 * still possible) and closes the connection.
 *
 * Threads: every function must be called on the loop's thread. Nothing blocks. Writes use
 * write(2) through libuv: the process must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)).
 * Errors: functions return 0 or a negative errno (-EINVAL bad argument, -ENOMEM, -EPIPE the
 * connection is gone, -EALREADY the response was already started/finished, or a libuv code). */
#ifndef PROTO_HTTP_SERVER_H
#define PROTO_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cf/error.h"

typedef struct proto_http_server proto_http_server;
/* One in-progress response. Valid from the handler call until proto_http_end() returns (or
 * the abort callback ran). Owned by the server. */
typedef struct proto_http_res proto_http_res;

struct proto_http_limits {
    size_t max_header_bytes;  /* request line + headers; default 8 KiB */
    size_t max_body_bytes;    /* request body; default 64 KiB */
    unsigned max_connections; /* further connections are closed at once; default 1024 */
    uint64_t idle_timeout_ms; /* no complete request / no write progress; default 30 s */
    /* TCP connections from one IP address (unix sockets are not counted); further ones are
     * closed at once, so one slow-client flood cannot take every slot (e.g. from a kubelet's
     * /healthz probe). Default 64; never more than max_connections. */
    unsigned max_per_source;
};

struct proto_http_header {
    const char *name;
    const char *value;
};

/* A parsed request; every string is NUL-terminated and owned by the server, valid during the
 * handler call only (copy what an asynchronous response needs). */
typedef struct proto_http_req {
    const char *method; /* "GET", "HEAD", ... */
    const char *target; /* raw request target, e.g. "/status/task?id=ab" */
    const char *path;   /* path part, e.g. "/status/task" (not percent-decoded) */
    const char *query;  /* query string without '?', "" when absent */
    const struct proto_http_header *headers;
    size_t n_headers;
    const uint8_t *body;
    size_t body_len;
    int is_head; /* HEAD request: body writes are dropped automatically */
    /* The client is on this host: a loopback address (127.0.0.0/8, ::1, ::ffff:127.x) or a
     * unix socket. Handlers serving what strangers must not read check it. */
    int from_loopback;
} proto_http_req;

/* 1 when sa is a loopback address (or AF_UNIX), else 0. */
int proto_http_addr_is_loopback(const struct sockaddr *sa);

/* For endpoints that list what strangers must not read (task digests, holders): when the
 * client is not local and allow_remote is 0, answers 403 with a JSON error naming `setting`
 * (the config key that opens it) and returns 1; otherwise returns 0 and answers nothing. */
int proto_http_refuse_remote(proto_http_res *res, const proto_http_req *req, int allow_remote,
                             const char *setting);

typedef void (*proto_http_handler)(proto_http_res *res, const proto_http_req *req, void *arg);
/* Completion of proto_http_write / proto_http_send_file: status 0 or negative errno. */
typedef void (*proto_http_done_cb)(proto_http_res *res, int status, void *arg);

/* Fills *l with the defaults listed above. */
void proto_http_limits_default(struct proto_http_limits *l);

/* Creates a server on `loop` (limits may be NULL for defaults). *out owned by the caller;
 * release with proto_http_server_close(). Returns 0 or -ENOMEM. */
int proto_http_server_new(uv_loop_t *loop, const struct proto_http_limits *limits,
                          proto_http_server **out);

/* Routes `method` + `path`. A path ending in '*' matches every path with that prefix. GET
 * routes also answer HEAD. Unknown paths get 404, a known path with another method 405.
 * Returns 0, -EINVAL or -ENOMEM. */
int proto_http_route(proto_http_server *s, const char *method, const char *path,
                     proto_http_handler handler, void *arg);

/* Listens on host:port (numeric IPv4/IPv6; port 0 picks a free one). Returns 0 or a negative
 * errno with a message in err. */
int proto_http_listen(proto_http_server *s, const char *host, int port, cf_err *err);
/* Serves an already connected stream socket (TCP or AF_UNIX; e.g. socket activation, tests,
 * fuzzing). The server owns fd from then on, also on failure after -EBADF checks.
 * Returns 0, -EBADF (not a socket), -ENOMEM or a libuv error. */
int proto_http_adopt_fd(proto_http_server *s, int fd);

/* The bound port after proto_http_listen (0 when not listening). */
int proto_http_port(const proto_http_server *s);

/* Closes the listener and every connection (in-progress responses get their abort callback),
 * then frees the server once libuv released every handle; `cb` (may be NULL) runs then. */
void proto_http_server_close(proto_http_server *s, void (*cb)(void *arg), void *arg);

/* Counters for /metrics. */
struct proto_http_stats {
    uint64_t requests;
    uint64_t bad_requests; /* 4xx sent by the server itself (parse errors, limits) */
    uint64_t connections_accepted;
    uint64_t connections_rejected; /* over max_connections or max_per_source */
    uint64_t idle_timeouts;
    unsigned connections_open;
};
void proto_http_stats_get(const proto_http_server *s, struct proto_http_stats *out);

/* --- responding (any time after the handler was called, until proto_http_end) --- */

/* Adds a response header (before the response starts). Name/value are copied; CR/LF are
 * rejected (-EINVAL). Content-Length, Connection and Transfer-Encoding are set by the server. */
int proto_http_set_header(proto_http_res *r, const char *name, const char *value);

/* Whole response in one call (body copied); ends the response. content_type may be NULL. */
int proto_http_respond(proto_http_res *r, int status, const char *content_type, const void *body,
                       size_t len);

/* Streams a response: status line + headers now; content_length < 0 means chunked encoding.
 * Then any number of proto_http_write/proto_http_send_file, then proto_http_end. */
int proto_http_start(proto_http_res *r, int status, const char *content_type,
                     int64_t content_length);
/* Queues `len` bytes (copied). `done` (may be NULL) runs when the kernel took them: wait for it
 * before writing more to apply back-pressure. */
int proto_http_write(proto_http_res *r, const void *data, size_t len, proto_http_done_cb done,
                     void *arg);
/* Sends bytes [off, off+len) of `fd` (the caller keeps fd open until `done`), reading 64 KiB
 * at a time in the thread pool. `done` (may be NULL) runs after the last byte was written or
 * on error (-EIO short file, -EPIPE connection gone). */
int proto_http_send_file(proto_http_res *r, int fd, uint64_t off, uint64_t len,
                         proto_http_done_cb done, void *arg);
/* Sends bytes [off, off+len) of `fd` with sendfile(2), zero-copy, from the loop thread (use it
 * for files whose pages are likely cached: a read from disk blocks the loop meanwhile). fd is
 * dup()ed: the caller may close it (or release what kept it valid) at once, but the bytes must
 * stay in place until `done`. Ordered with the response's other writes; while the socket is full
 * the region waits for writability, so nothing of it is buffered in memory. `done` (may be NULL)
 * runs once the kernel took the last byte, possibly before this function returns; a file
 * shorter than the region or a sendfile error closes the connection (the abort callback runs).
 * Returns 0, -EINVAL, -EPIPE, -ENOMEM, or the dup's errno (e.g. -EMFILE). */
int proto_http_sendfile(proto_http_res *r, int fd, uint64_t off, uint64_t len,
                        proto_http_done_cb done, void *arg);
/* Finishes the response (terminating chunk if chunked). The handle is invalid afterwards. */
int proto_http_end(proto_http_res *r);

/* Abandons a started response whose body cannot be finished (e.g. its source failed after the
 * Content-Length was sent): the connection is closed at once, so the client sees a short body;
 * no abort callback runs. The handle is invalid afterwards. */
void proto_http_abort(proto_http_res *r);

/* Called if the connection dies before proto_http_end (then the handle is invalid after the
 * callback returns). Replaces any earlier callback. */
void proto_http_on_abort(proto_http_res *r, void (*cb)(proto_http_res *r, void *arg), void *arg);

/* Request helpers. */
/* Case-insensitive header lookup; NULL when absent. */
const char *proto_http_header_get(const proto_http_req *req, const char *name);
/* Percent-decodes query parameter `key` into out (NUL-terminated). Returns the decoded length,
 * -ENOENT when absent, -ENOSPC when it does not fit, -EINVAL on bad %-escapes. */
int proto_http_query_get(const char *query, const char *key, char *out, size_t out_size);

/* "OK", "Not Found", ... for a status code. */
const char *proto_http_reason(int status);

#endif
