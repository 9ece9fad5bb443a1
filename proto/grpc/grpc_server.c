/* proto_grpc server object and its unix-socket transport: a libuv pipe listener, one
 * cf_grpc_conn per accepted connection, reads fed to nghttp2 and its output written back.
 *
 * Output is bounded twice: handlers' messages wait in the calls' queues (at most
 * CF_GRPC_MAX_QUEUED per connection, see grpc_internal.h), and HTTP/2 bytes handed to libuv
 * but not yet written are at most about WRITE_HIGH per connection: past it we stop producing
 * output and stop reading (so a client that does not read cannot make us queue PING acks or
 * window updates either) until the socket drains. */
#include "grpc_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "cf/log.h"

#define WRITE_HIGH (1u << 20)

struct cf_grpc_sock {
    uv_pipe_t pipe;
    cf_grpc_server *srv;
    cf_grpc_conn *gc;
    struct cf_grpc_sock *prev, *next;
    size_t inflight; /* bytes in uv_writes not completed */
    int reading;
    int closing;
    int drain_close; /* connection error: close once the output is written */
    int listed;      /* counted in srv->socks (refused connections are not) */
};

struct wreq {
    uv_write_t req;
    struct cf_grpc_sock *sk;
    size_t len;
    uint8_t data[];
};

/* ---- server object ---- */

static void maybe_done(cf_grpc_server *srv)
{
    if (!srv->closing || srv->handles_open > 0) return;
    void (*done)(void *) = srv->done;
    void *arg = srv->done_arg;
    for (size_t i = 0; i < srv->n_routes; i++) free(srv->routes[i].path);
    free(srv->routes);
    free(srv);
    if (done) done(arg);
}

int cf_grpc_server_new(uv_loop_t *loop, const cf_grpc_limits *lim, cf_grpc_server **out,
                       cf_err *err)
{
    if (!loop || !out)
        return cf_err_set(err, -EINVAL, "cf_grpc_server_new: loop and out are required");
    cf_grpc_server *srv = calloc(1, sizeof(*srv));
    if (!srv) return cf_err_set(err, -ENOMEM, "no memory for the gRPC server");
    srv->loop = loop;
    if (lim) srv->lim = *lim;
    if (!srv->lim.max_message) srv->lim.max_message = CF_GRPC_DEF_MAX_MESSAGE;
    if (srv->lim.max_message > UINT32_MAX)
        srv->lim.max_message = UINT32_MAX; /* the prefix cannot announce more */
    if (!srv->lim.max_conns) srv->lim.max_conns = CF_GRPC_DEF_MAX_CONNS;
    if (!srv->lim.max_streams_per_conn) srv->lim.max_streams_per_conn = CF_GRPC_DEF_MAX_STREAMS;
    if (!srv->lim.max_header_bytes) srv->lim.max_header_bytes = CF_GRPC_DEF_MAX_HEADER;
    if (srv->lim.max_header_bytes > UINT32_MAX) srv->lim.max_header_bytes = UINT32_MAX;
    srv->max_queued = CF_GRPC_MAX_QUEUED;
    srv->req_budget = srv->lim.max_message > CF_GRPC_CONN_REQ_BUDGET ? srv->lim.max_message
                                                                     : CF_GRPC_CONN_REQ_BUDGET;
    int rc = uv_pipe_init(loop, &srv->listener, 0);
    if (rc < 0) {
        free(srv);
        return cf_err_set(err, rc, "uv_pipe_init: %s", uv_strerror(rc));
    }
    srv->listener.data = srv;
    srv->handles_open = 1;
    *out = srv;
    return 0;
}

const struct cf_grpc_route *cf_grpc_server_route(const cf_grpc_server *srv, const char *path,
                                                 size_t len)
{
    for (size_t i = 0; path && i < srv->n_routes; i++)
        if (strlen(srv->routes[i].path) == len && memcmp(srv->routes[i].path, path, len) == 0)
            return &srv->routes[i];
    return NULL;
}

int cf_grpc_server_add(cf_grpc_server *srv, const char *path, cf_grpc_handler fn, void *arg,
                       cf_err *err)
{
    if (!srv || !path || path[0] != '/' || !fn)
        return cf_err_set(err, -EINVAL,
                          "gRPC method \"%s\": want \"/package.Service/Method\" "
                          "and a handler",
                          path ? path : "(null)");
    if (cf_grpc_server_route(srv, path, strlen(path)))
        return cf_err_set(err, -EEXIST, "gRPC method %s registered twice", path);
    struct cf_grpc_route *r = realloc(srv->routes, (srv->n_routes + 1) * sizeof(*r));
    if (!r) return cf_err_set(err, -ENOMEM, "no memory for a gRPC route");
    srv->routes = r;
    char *p = strdup(path);
    if (!p) return cf_err_set(err, -ENOMEM, "no memory for a gRPC route");
    struct cf_grpc_route *nr = &srv->routes[srv->n_routes++];
    nr->path = p;
    nr->fn = fn;
    nr->arg = arg;
    return 0;
}

/* ---- connections ---- */

static void sock_flush(struct cf_grpc_sock *sk);

static void on_sock_closed(uv_handle_t *h)
{
    struct cf_grpc_sock *sk = h->data;
    cf_grpc_server *srv = sk->srv;
    cf_grpc_conn_free(sk->gc);
    if (sk->listed) {
        if (sk->prev)
            sk->prev->next = sk->next;
        else
            srv->socks = sk->next;
        if (sk->next) sk->next->prev = sk->prev;
        srv->n_socks--;
    }
    free(sk);
    srv->handles_open--;
    maybe_done(srv);
}

static void sock_close(struct cf_grpc_sock *sk)
{
    if (sk->closing) return;
    sk->closing = 1;
    /* Pending uv_writes are cancelled (their callbacks run first); the session and its calls
     * are let go in on_sock_closed. */
    uv_close((uv_handle_t *)&sk->pipe, on_sock_closed);
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct cf_grpc_sock *sk = w->sk;
    sk->inflight -= w->len;
    free(w);
    if (sk->closing) return;
    if (status < 0) {
        cf_debug("grpc: write: %s", uv_strerror(status));
        sock_close(sk);
        return;
    }
    sock_flush(sk);
}

static int sock_send(void *ctx, const uint8_t *data, size_t len)
{
    struct cf_grpc_sock *sk = ctx;
    if (sk->closing) return -EPIPE;
    struct wreq *w = malloc(sizeof(*w) + len);
    if (!w) return -ENOMEM;
    w->sk = sk;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&sk->pipe, &b, 1, on_write);
    if (rc < 0) {
        free(w);
        return rc;
    }
    sk->inflight += len;
    return sk->inflight >= WRITE_HIGH ? 1 : 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct cf_grpc_sock *sk = h->data;
    cf_grpc_server *srv = sk->srv;
    if (srv->readbuf_busy) {
        buf->base = malloc(sizeof(srv->readbuf));
        buf->len = buf->base ? sizeof(srv->readbuf) : 0;
        return;
    }
    srv->readbuf_busy = 1;
    buf->base = (char *)srv->readbuf;
    buf->len = sizeof(srv->readbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct cf_grpc_sock *sk = st->data;
    cf_grpc_server *srv = sk->srv;
    int rc = 0;
    if (nread > 0) rc = cf_grpc_conn_recv(sk->gc, (const uint8_t *)buf->base, (size_t)nread);
    if (buf->base == (char *)srv->readbuf)
        srv->readbuf_busy = 0;
    else
        free(buf->base);
    if (nread < 0) {
        if (nread != UV_EOF) cf_debug("grpc: read: %s", uv_strerror((int)nread));
        sock_close(sk);
        return;
    }
    /* After a connection error nghttp2 has queued a GOAWAY saying why: write it, then close. */
    if (rc < 0) sk->drain_close = 1;
    sock_flush(sk);
}

static void sock_flush(struct cf_grpc_sock *sk)
{
    if (sk->closing) return;
    /* Past WRITE_HIGH nothing more is produced: on_write calls back here as the socket drains. */
    if (sk->inflight < WRITE_HIGH && cf_grpc_conn_flush(sk->gc) < 0) {
        sock_close(sk);
        return;
    }
    if (sk->drain_close || cf_grpc_conn_done(sk->gc)) {
        /* Nothing more to read: close once our last frames (a GOAWAY) are written. */
        if (sk->reading) uv_read_stop((uv_stream_t *)&sk->pipe);
        sk->reading = 0;
        if (sk->inflight == 0) sock_close(sk);
        return;
    }
    int want = sk->inflight < WRITE_HIGH;
    if (want && !sk->reading) {
        if (uv_read_start((uv_stream_t *)&sk->pipe, on_alloc, on_read) < 0) {
            sock_close(sk);
            return;
        }
        sk->reading = 1;
    } else if (!want && sk->reading) {
        uv_read_stop((uv_stream_t *)&sk->pipe);
        sk->reading = 0;
    }
}

static void sock_kick(void *ctx)
{
    sock_flush(ctx);
}

static void on_connection(uv_stream_t *ls, int status)
{
    cf_grpc_server *srv = ls->data;
    if (status < 0) {
        cf_warn("grpc: accept: %s", uv_strerror(status));
        return;
    }
    struct cf_grpc_sock *sk = calloc(1, sizeof(*sk));
    if (!sk) {
        /* libuv stops accepting until uv_accept is called: without memory we are stuck anyway */
        cf_error("grpc: no memory to accept a connection");
        return;
    }
    sk->srv = srv;
    if (uv_pipe_init(srv->loop, &sk->pipe, 0) < 0) {
        free(sk);
        return;
    }
    sk->pipe.data = sk;
    srv->handles_open++;
    if (uv_accept(ls, (uv_stream_t *)&sk->pipe) < 0) {
        sock_close(sk);
        return;
    }
    if (srv->closing || srv->n_socks >= srv->lim.max_conns) {
        cf_warn("grpc: %u connections open (the limit): closing a new one", srv->n_socks);
        sock_close(sk);
        return;
    }
    static const struct cf_grpc_conn_ops ops = {sock_send, sock_kick};
    cf_err err = {0};
    if (cf_grpc_conn_new(srv, &ops, sk, &sk->gc, &err) < 0) {
        cf_warn("grpc: %s", err.msg);
        sock_close(sk);
        return;
    }
    sk->listed = 1;
    sk->next = srv->socks;
    if (srv->socks) srv->socks->prev = sk;
    srv->socks = sk;
    srv->n_socks++;
    sock_flush(sk); /* our SETTINGS, and start reading */
}

int cf_grpc_server_listen_unix(cf_grpc_server *srv, const char *path, int mode, cf_err *err)
{
    if (srv->listening || srv->closing)
        return cf_err_set(err, -EINVAL, "gRPC server already listening");
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return cf_err_set(err, -EEXIST, "%s exists and is not a socket: not replacing it",
                              path);
        if (unlink(path) < 0)
            return cf_err_set(err, -errno, "removing the stale socket %s: %s", path,
                              strerror(errno));
    }
    int rc = uv_pipe_bind(&srv->listener, path);
    if (rc < 0) return cf_err_set(err, rc, "binding %s: %s", path, uv_strerror(rc));
    if (chmod(path, (mode_t)mode) < 0) {
        rc = -errno;
        unlink(path);
        return cf_err_set(err, rc, "chmod %s: %s", path, strerror(-rc));
    }
    rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection);
    if (rc < 0) {
        unlink(path);
        return cf_err_set(err, rc, "listening on %s: %s", path, uv_strerror(rc));
    }
    srv->listening = 1;
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    cf_grpc_server *srv = h->data;
    srv->handles_open--;
    maybe_done(srv);
}

void cf_grpc_server_close(cf_grpc_server *srv, void (*done)(void *), void *arg)
{
    if (!srv || srv->closing) return;
    srv->closing = 1;
    srv->done = done;
    srv->done_arg = arg;
    /* libuv unlinks the socket file of a bound pipe when it is closed. */
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    for (struct cf_grpc_sock *sk = srv->socks; sk; sk = sk->next) sock_close(sk);
}
