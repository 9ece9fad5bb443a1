/* proto_http server: http_parser driven from libuv reads, one request at a time per connection.
 *
 * Flow per connection: read -> append to `pending` -> http_parser_execute until a message is
 * complete -> pause the parser, stop reading, call the handler -> when the response ends,
 * resume parsing what is left in `pending`, then read again. So a client can have at most one
 * read buffer of unparsed bytes in our memory, whatever it pipelines. Idle connections hold no
 * buffers (one server-wide read buffer is shared: libuv calls alloc and read back to back). */
#include "proto/http_server.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <http_parser.h>

#include "cf/buf.h"
#include "cf/log.h"
#include "cf/uv_poll.h"

#define READ_BUF_SIZE  65536
#define FILE_CHUNK     65536
#define MAX_HEADERS    64
#define SENDFILE_SLICE (4u << 20) /* per writable event, so one response cannot hog the loop */

struct route {
    char *method;
    char *path;
    size_t path_len;
    int prefix;
    proto_http_handler handler;
    void *arg;
};

typedef struct conn conn;

struct proto_http_res {
    conn *c;
    int status;
    int started; /* status line sent */
    int chunked;
    int is_head;
    cf_buf headers; /* "Name: value\r\n"... */
    void (*abort_cb)(proto_http_res *r, void *arg);
    void *abort_arg;
};

struct conn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
    } io;
    uv_timer_t timer;
    proto_http_server *srv;
    conn *prev, *next;
    http_parser parser;
    cf_buf pending; /* received, not yet parsed */
    size_t pend_off;
    /* request being parsed */
    cf_buf hdr;     /* url NUL name NUL value NUL ... */
    size_t url_end; /* 0 until the url is terminated */
    size_t hoff[MAX_HEADERS][2];
    size_t n_headers;
    int in_value; /* last header callback was a value */
    size_t field_start, value_start;
    size_t header_bytes;
    cf_buf body;
    int err_status; /* our own limit violation: 413/431 */
    int keep_alive;
    /* response */
    proto_http_res res;
    int busy;        /* a request was dispatched, its response has not ended */
    int close_after; /* close once writes drain */
    int in_process;
    int in_dispatch;
    int closing;
    int handles_open;
    int ops_pending; /* writes + file reads in flight */
    int reading;
    /* Output queued behind a sendfile region (proto_http_sendfile): written in order once
     * the uv_writes before it completed. Empty in the common case: writes go to libuv. */
    struct wreq *q_head, *q_tail;
    int writes_inflight; /* uv_writes not completed */
    int pumping;
    int finish_queued; /* conn_finish waits for the queue */
    uv_poll_t *poll;   /* writability of a dup of the socket (poll_fd), for sendfile */
    int poll_fd;
    int poll_active;
    int from_loopback; /* peer address is loopback / unix socket */
    uint8_t src[16];   /* IP of a TCP client (IPv4 as ::ffff:a.b.c.d), for max_per_source */
    int has_src;
};

struct proto_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;
    int port;
    struct proto_http_limits lim;
    struct route *routes;
    size_t n_routes;
    conn *conns;
    struct proto_http_stats st;
    int closing;
    int listener_open;
    void (*close_cb)(void *);
    void *close_arg;
    char readbuf[READ_BUF_SIZE];
    int readbuf_busy;
};

struct wreq {
    uv_write_t req;
    conn *c;
    proto_http_done_cb done;
    void *arg;
    struct wreq *next; /* in conn's queue */
    int fd;            /* >= 0: a sendfile region (owned dup), no data */
    uint64_t off, left;
    size_t len;
    char data[];
};

struct file_op {
    uv_fs_t fs;
    conn *c;
    int fd;
    uint64_t off, left;
    proto_http_done_cb done;
    void *arg;
    char *buf;
};

static void conn_close(conn *c);
static void conn_process(conn *c);
static void conn_start_reading(conn *c);
static void server_maybe_free(proto_http_server *s);

void proto_http_limits_default(struct proto_http_limits *l)
{
    l->max_header_bytes = 8192;
    l->max_body_bytes = 65536;
    l->max_connections = 1024;
    l->idle_timeout_ms = 30000;
    l->max_per_source = 64;
}

const char *proto_http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 416:
        return "Range Not Satisfiable";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 300   ? "OK"
               : status < 400 ? "Redirect"
               : status < 500 ? "Error"
                              : "Server Error";
    }
}

int proto_http_server_new(uv_loop_t *loop, const struct proto_http_limits *limits,
                          proto_http_server **out)
{
    proto_http_server *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    s->loop = loop;
    proto_http_limits_default(&s->lim);
    if (limits) {
        if (limits->max_header_bytes) s->lim.max_header_bytes = limits->max_header_bytes;
        s->lim.max_body_bytes = limits->max_body_bytes;
        if (limits->max_connections) s->lim.max_connections = limits->max_connections;
        if (limits->idle_timeout_ms) s->lim.idle_timeout_ms = limits->idle_timeout_ms;
        if (limits->max_per_source) s->lim.max_per_source = limits->max_per_source;
    }
    *out = s;
    return 0;
}

int proto_http_route(proto_http_server *s, const char *method, const char *path,
                     proto_http_handler handler, void *arg)
{
    if (!s || !method || !path || path[0] != '/' || !handler) return -EINVAL;
    struct route *nr = realloc(s->routes, (s->n_routes + 1) * sizeof(*nr));
    if (!nr) return -ENOMEM;
    s->routes = nr;
    struct route *r = &nr[s->n_routes];
    r->method = strdup(method);
    r->path = strdup(path);
    if (!r->method || !r->path) {
        free(r->method);
        free(r->path);
        return -ENOMEM;
    }
    r->path_len = strlen(path);
    r->prefix = r->path[r->path_len - 1] == '*';
    if (r->prefix) r->path_len--;
    r->handler = handler;
    r->arg = arg;
    s->n_routes++;
    return 0;
}

void proto_http_stats_get(const proto_http_server *s, struct proto_http_stats *out)
{
    *out = s->st;
}

int proto_http_port(const proto_http_server *s)
{
    return s->listening ? s->port : 0;
}

/* ---- connection lifetime ---- */

static void conn_free(conn *c)
{
    proto_http_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->st.connections_open--;
    while (c->q_head) {
        struct wreq *w = c->q_head;
        c->q_head = w->next;
        if (w->fd >= 0) close(w->fd);
        free(w);
    }
    cf_buf_free(&c->pending);
    cf_buf_free(&c->hdr);
    cf_buf_free(&c->body);
    cf_buf_free(&c->res.headers);
    free(c);
    server_maybe_free(s);
}

static void conn_maybe_free(conn *c)
{
    if (c->closing && c->handles_open == 0 && c->ops_pending == 0) conn_free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    c->handles_open--;
    conn_maybe_free(c);
}

static void on_poll_closed(uv_handle_t *h)
{
    conn *c = h->data;
    close(c->poll_fd);
    free(h);
    c->handles_open--;
    conn_maybe_free(c);
}

static void conn_close(conn *c)
{
    if (c->closing) return;
    c->closing = 1;
    if (c->busy) {
        c->busy = 0;
        if (c->res.abort_cb) c->res.abort_cb(&c->res, c->res.abort_arg);
    }
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->io.stream, on_handle_closed);
    if (c->poll) uv_close((uv_handle_t *)c->poll, on_poll_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    conn *c = req->data;
    free(req);
    c->ops_pending--;
    conn_close(c);
    conn_maybe_free(c);
}

/* Close after everything queued was written (a FIN, not an RST, so the client reads it). */
static void conn_finish(conn *c)
{
    if (c->closing) return;
    uv_read_stop(&c->io.stream);
    c->reading = 0;
    c->close_after = 1;
    if (c->q_head) { /* after the queue: conn_pump calls us again */
        c->finish_queued = 1;
        return;
    }
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req || uv_shutdown(req, &c->io.stream, on_shutdown) != 0) {
        free(req);
        conn_close(c);
        return;
    }
    req->data = c;
    c->ops_pending++;
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    /* the application is preparing an answer */
    if (c->busy && c->ops_pending == 0 && !c->q_head) return;
    c->srv->st.idle_timeouts++;
    conn_close(c);
}

static void timer_restart(conn *c)
{
    if (!c->closing) uv_timer_start(&c->timer, on_timer, c->srv->lim.idle_timeout_ms, 0);
}

/* ---- writing ---- */

static void conn_pump(conn *c);

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    conn *c = w->c;
    c->ops_pending--;
    c->writes_inflight--;
    if (!c->closing) {
        if (status < 0) {
            conn_close(c);
        } else {
            timer_restart(c);
            if (w->done) w->done(&c->res, 0, w->arg);
            if (c->q_head && !c->writes_inflight) conn_pump(c);
        }
    }
    free(w);
    conn_maybe_free(c);
}

static int uv_write_wreq(conn *c, struct wreq *w)
{
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, &c->io.stream, &buf, 1, on_write);
    if (rc < 0) return rc;
    c->ops_pending++;
    c->writes_inflight++;
    return 0;
}

static void on_writable(uv_poll_t *p, int status, int events)
{
    (void)events;
    conn *c = p->data;
    uv_poll_stop(p);
    c->poll_active = 0;
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_pump(c);
}

static int wait_writable(conn *c)
{
    if (!c->poll) {
        int r = cf_uv_poll_dup(c->srv->loop, (uv_handle_t *)&c->io.stream, &c->poll, &c->poll_fd);
        if (r < 0) return r;
        c->poll->data = c;
        c->handles_open++;
    }
    int r = uv_poll_start(c->poll, UV_WRITABLE, on_writable);
    if (r == 0) c->poll_active = 1;
    return r;
}

/* Sends some of a sendfile region: 1 = all sent, 0 = waiting for writability, or a negative
 * errno (-EIO: the file is shorter than the region). */
static int sendfile_some(conn *c, struct wreq *w)
{
    uv_os_fd_t sock;
    int r = uv_fileno((uv_handle_t *)&c->io.stream, &sock);
    if (r < 0) return r;
    uint64_t budget = SENDFILE_SLICE, sent = 0;
    while (w->left > 0 && budget > 0) {
        size_t n = (size_t)(w->left < budget ? w->left : budget);
        off_t off = (off_t)w->off;
        ssize_t k = sendfile(sock, w->fd, &off, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return -errno;
        }
        if (k == 0) return -EIO;
        w->off += (uint64_t)k;
        w->left -= (uint64_t)k;
        budget -= (uint64_t)k;
        sent += (uint64_t)k;
    }
    if (sent) timer_restart(c);
    if (w->left == 0) return 1;
    r = wait_writable(c);
    return r < 0 ? r : 0;
}

/* Runs the queue in order until it must wait: a sendfile region starts once the writes
 * before it completed (the kernel has their bytes) and waits for writability when the socket
 * is full, so the client's pace holds back the response, never our memory. */
static void conn_pump(conn *c)
{
    if (c->pumping) return; /* a done callback queued more: the running loop takes it */
    c->pumping = 1;
    while (c->q_head && !c->closing && !c->poll_active) {
        struct wreq *w = c->q_head;
        if (w->fd < 0) {
            if (!(c->q_head = w->next)) c->q_tail = NULL;
            int rc = uv_write_wreq(c, w);
            if (rc < 0) {
                free(w);
                conn_close(c);
            }
            continue;
        }
        if (c->writes_inflight) break; /* on_write pumps again */
        int rc = sendfile_some(c, w);
        if (rc < 0) {
            cf_debug("http: sendfile: %s", strerror(-rc));
            conn_close(c);
            break;
        }
        if (rc == 0) break;
        if (!(c->q_head = w->next)) c->q_tail = NULL;
        close(w->fd);
        if (w->done) w->done(&c->res, 0, w->arg);
        free(w);
    }
    c->pumping = 0;
    if (!c->q_head && c->finish_queued && !c->closing) {
        c->finish_queued = 0;
        conn_finish(c);
    }
}

/* Sends w now (nothing queued: straight to libuv) or after what is queued. */
static int conn_submit(conn *c, struct wreq *w)
{
    if (!c->q_head && w->fd < 0) return uv_write_wreq(c, w);
    w->next = NULL;
    if (c->q_tail)
        c->q_tail->next = w;
    else
        c->q_head = w;
    c->q_tail = w;
    conn_pump(c);
    return 0;
}

/* Queues the concatenation of up to three pieces. */
static int conn_write3(conn *c, const void *a, size_t al, const void *b, size_t bl, const void *d,
                       size_t dl, proto_http_done_cb done, void *arg)
{
    if (c->closing) return -EPIPE;
    struct wreq *w = malloc(sizeof(*w) + al + bl + dl);
    if (!w) return -ENOMEM;
    w->c = c;
    w->done = done;
    w->arg = arg;
    w->next = NULL;
    w->fd = -1;
    w->len = al + bl + dl;
    if (al) memcpy(w->data, a, al);
    if (bl) memcpy(w->data + al, b, bl);
    if (dl) memcpy(w->data + al + bl, d, dl);
    int rc = conn_submit(c, w);
    if (rc < 0) free(w);
    return rc;
}

int proto_http_set_header(proto_http_res *r, const char *name, const char *value)
{
    if (!r || !name || !value || !name[0]) return -EINVAL;
    if (r->started) return -EALREADY;
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return -EINVAL;
    return cf_buf_printf(&r->headers, "%s: %s\r\n", name, value);
}

int proto_http_start(proto_http_res *r, int status, const char *content_type,
                     int64_t content_length)
{
    if (!r || status < 100 || status > 999) return -EINVAL;
    if (r->started) return -EALREADY;
    conn *c = r->c;
    if (content_type && strpbrk(content_type, "\r\n")) return -EINVAL;
    cf_buf h = {0};
    int rc = cf_buf_printf(&h, "HTTP/1.1 %d %s\r\n", status, proto_http_reason(status));
    if (!rc && content_type) rc = cf_buf_printf(&h, "Content-Type: %s\r\n", content_type);
    if (!rc && content_length >= 0)
        rc = cf_buf_printf(&h, "Content-Length: %lld\r\n", (long long)content_length);
    else if (!rc)
        rc = cf_buf_printf(&h, "Transfer-Encoding: chunked\r\n");
    if (!rc && !c->keep_alive) rc = cf_buf_printf(&h, "Connection: close\r\n");
    if (!rc) rc = cf_buf_append(&h, r->headers.data, r->headers.len);
    if (!rc) rc = cf_buf_append(&h, "\r\n", 2);
    if (!rc) rc = conn_write3(c, h.data, h.len, NULL, 0, NULL, 0, NULL, NULL);
    cf_buf_free(&h);
    if (rc) return rc;
    r->started = 1;
    r->status = status;
    r->chunked = content_length < 0 && !r->is_head;
    return 0;
}

/* The checks before a piece of the body: <0 the error; 1 nothing to send (HEAD, or len 0),
 * `done` already called; 0 go on. */
static int body_start(proto_http_res *r, uint64_t len, proto_http_done_cb done, void *arg)
{
    if (!r->started) return -EINVAL;
    if (r->c->closing) return -EPIPE;
    if (r->is_head || len == 0) {
        if (done) done(r, 0, arg);
        return 1;
    }
    return 0;
}

int proto_http_write(proto_http_res *r, const void *data, size_t len, proto_http_done_cb done,
                     void *arg)
{
    if (!r || (!data && len)) return -EINVAL;
    int rc = body_start(r, len, done, arg);
    if (rc) return rc < 0 ? rc : 0;
    conn *c = r->c;
    if (r->chunked) {
        char pre[24];
        int n = snprintf(pre, sizeof(pre), "%zx\r\n", len);
        return conn_write3(c, pre, (size_t)n, data, len, "\r\n", 2, done, arg);
    }
    return conn_write3(c, data, len, NULL, 0, NULL, 0, done, arg);
}

static void file_op_next(struct file_op *op);

static void file_op_finish(struct file_op *op, int status)
{
    conn *c = op->c;
    if (!c->closing && op->done) op->done(&c->res, status, op->arg);
    free(op->buf);
    free(op);
}

static void on_file_chunk_written(proto_http_res *r, int status, void *arg)
{
    (void)r;
    struct file_op *op = arg;
    if (status < 0) {
        file_op_finish(op, status);
        return;
    }
    file_op_next(op);
}

static void on_file_read(uv_fs_t *req)
{
    struct file_op *op = req->data;
    conn *c = op->c;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    c->ops_pending--;
    if (c->closing) {
        free(op->buf);
        free(op);
        conn_maybe_free(c);
        return;
    }
    if (n <= 0) {
        file_op_finish(op, n < 0 ? (int)n : -EIO);
        return;
    }
    op->off += (uint64_t)n;
    op->left -= (uint64_t)n;
    int rc = proto_http_write(&c->res, op->buf, (size_t)n, on_file_chunk_written, op);
    if (rc < 0) file_op_finish(op, rc);
}

static void file_op_next(struct file_op *op)
{
    conn *c = op->c;
    if (op->left == 0 || c->closing) {
        file_op_finish(op, c->closing ? -EPIPE : 0);
        return;
    }
    size_t want = op->left < FILE_CHUNK ? (size_t)op->left : FILE_CHUNK;
    uv_buf_t b = uv_buf_init(op->buf, (unsigned)want);
    op->fs.data = op;
    int rc = uv_fs_read(c->srv->loop, &op->fs, op->fd, &b, 1, (int64_t)op->off, on_file_read);
    if (rc < 0) {
        file_op_finish(op, rc);
        return;
    }
    c->ops_pending++;
}

int proto_http_send_file(proto_http_res *r, int fd, uint64_t off, uint64_t len,
                         proto_http_done_cb done, void *arg)
{
    if (!r || fd < 0 || off > INT64_MAX || len > INT64_MAX - off) return -EINVAL;
    if (!r->started) return -EINVAL;
    if (r->c->closing) return -EPIPE;
    if (r->is_head || len == 0) {
        if (done) done(r, 0, arg);
        return 0;
    }
    struct file_op *op = calloc(1, sizeof(*op));
    if (!op) return -ENOMEM;
    op->buf = malloc(FILE_CHUNK);
    if (!op->buf) {
        free(op);
        return -ENOMEM;
    }
    op->c = r->c;
    op->fd = fd;
    op->off = off;
    op->left = len;
    op->done = done;
    op->arg = arg;
    file_op_next(op);
    return 0;
}

int proto_http_sendfile(proto_http_res *r, int fd, uint64_t off, uint64_t len,
                        proto_http_done_cb done, void *arg)
{
    if (!r || fd < 0 || off > INT64_MAX || len > INT64_MAX - off) return -EINVAL;
    int rc = body_start(r, len, done, arg);
    if (rc) return rc < 0 ? rc : 0;
    conn *c = r->c;
    struct wreq *w = calloc(1, sizeof(*w));
    if (!w) return -ENOMEM;
    w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (w->fd < 0) {
        int e = -errno;
        free(w);
        return e;
    }
    w->c = c;
    w->off = off;
    w->left = len;
    if (r->chunked) { /* the chunk's size line, the region, then its CRLF with `done` */
        char pre[24];
        int n = snprintf(pre, sizeof(pre), "%llx\r\n", (unsigned long long)len);
        rc = conn_write3(c, pre, (size_t)n, NULL, 0, NULL, 0, NULL, NULL);
        if (!rc) rc = conn_submit(c, w);
        if (!rc) return conn_write3(c, "\r\n", 2, NULL, 0, NULL, 0, done, arg);
    } else {
        w->done = done;
        w->arg = arg;
        rc = conn_submit(c, w);
    }
    if (rc) {
        close(w->fd);
        free(w);
    }
    return rc;
}

static void request_reset(conn *c)
{
    cf_buf_free(&c->hdr);
    cf_buf_free(&c->body);
    c->url_end = 0;
    c->n_headers = 0;
    c->in_value = 0;
    c->field_start = c->value_start = 0;
    c->header_bytes = 0;
    c->err_status = 0;
}

int proto_http_end(proto_http_res *r)
{
    if (!r || !r->started) return -EINVAL;
    conn *c = r->c;
    if (!c->busy) return -EALREADY;
    int rc = 0;
    if (r->chunked && !c->closing)
        rc = conn_write3(c, "0\r\n\r\n", 5, NULL, 0, NULL, 0, NULL, NULL);
    c->busy = 0;
    cf_buf_free(&r->headers);
    r->abort_cb = NULL;
    if (c->closing) return -EPIPE;
    if (rc < 0 || !c->keep_alive || c->srv->closing) {
        conn_finish(c);
        return rc;
    }
    if (!c->in_dispatch) request_reset(c); /* else dispatch() frees it after the handler */
    timer_restart(c);
    if (!c->in_process) conn_process(c);
    return 0;
}

int proto_http_respond(proto_http_res *r, int status, const char *content_type, const void *body,
                       size_t len)
{
    int rc = proto_http_start(r, status, content_type, (int64_t)len);
    if (rc) return rc;
    if (len && !r->is_head) {
        rc = conn_write3(r->c, body, len, NULL, 0, NULL, 0, NULL, NULL);
        if (rc) {
            conn_close(r->c);
            return rc;
        }
    }
    return proto_http_end(r);
}

void proto_http_abort(proto_http_res *r)
{
    if (!r) return;
    r->abort_cb = NULL;
    cf_buf_free(&r->headers);
    conn_close(r->c);
}

void proto_http_on_abort(proto_http_res *r, void (*cb)(proto_http_res *r, void *arg), void *arg)
{
    r->abort_cb = cb;
    r->abort_arg = arg;
}

/* ---- request parsing ---- */

static int limit_bytes(conn *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes > c->srv->lim.max_header_bytes) {
        c->err_status = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    conn *c = p->data;
    request_reset(c);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    return (limit_bytes(c, len) || cf_buf_append(&c->hdr, at, len)) ? -1 : 0;
}

static int end_url(conn *c)
{
    if (c->url_end) return 0;
    if (cf_buf_append(&c->hdr, "", 1)) return -1;
    c->url_end = c->hdr.len;
    return 0;
}

static int close_value(conn *c)
{
    if (!c->in_value) return 0;
    if (cf_buf_append(&c->hdr, "", 1)) return -1;
    c->hoff[c->n_headers][0] = c->field_start;
    c->hoff[c->n_headers][1] = c->value_start;
    c->n_headers++;
    c->in_value = 0;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (end_url(c) || limit_bytes(c, len)) return -1;
    if (c->in_value) {
        if (close_value(c)) return -1;
        c->field_start = c->hdr.len;
    } else if (c->field_start == 0) {
        c->field_start = c->hdr.len;
    }
    if (c->n_headers >= MAX_HEADERS) {
        c->err_status = 431;
        return -1;
    }
    return cf_buf_append(&c->hdr, at, len) ? -1 : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (limit_bytes(c, len)) return -1;
    if (!c->in_value) {
        if (cf_buf_append(&c->hdr, "", 1)) return -1;
        c->value_start = c->hdr.len;
        c->in_value = 1;
    }
    return cf_buf_append(&c->hdr, at, len) ? -1 : 0;
}

static int on_headers_complete(http_parser *p)
{
    conn *c = p->data;
    if (end_url(c) || close_value(c)) return -1;
    if (p->content_length != ULLONG_MAX && p->content_length > c->srv->lim.max_body_bytes) {
        c->err_status = 413;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (c->body.len + len > c->srv->lim.max_body_bytes) {
        c->err_status = 413;
        return -1;
    }
    return cf_buf_append(&c->body, at, len) ? -1 : 0;
}

static int on_message_complete(http_parser *p)
{
    conn *c = p->data;
    c->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void send_error(conn *c, int status)
{
    char body[96];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, proto_http_reason(status));
    c->keep_alive = 0;
    c->busy = 1;
    c->res.c = c;
    c->res.started = 0;
    c->res.is_head = 0;
    cf_buf_free(&c->res.headers);
    if (proto_http_respond(&c->res, status, "text/plain", body, (size_t)n) < 0) conn_close(c);
}

static void dispatch(conn *c)
{
    proto_http_server *s = c->srv;
    s->st.requests++;
    const char *method = http_method_str((enum http_method)c->parser.method);
    char *target = (char *)c->hdr.data;
    struct proto_http_header hs[MAX_HEADERS];
    for (size_t i = 0; i < c->n_headers; i++) {
        hs[i].name = (char *)c->hdr.data + c->hoff[i][0];
        hs[i].value = (char *)c->hdr.data + c->hoff[i][1];
    }
    /* Split target into path and query in a copy: "/p?q" or absolute "http://h/p?q". */
    size_t tl = strlen(target);
    char *pathbuf = malloc(tl + 2);
    if (!pathbuf) {
        conn_close(c);
        return;
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    const char *path = "/", *query = "";
    char *qbuf = pathbuf;
    if (http_parser_parse_url(target, tl, 0, &u) == 0 && (u.field_set & (1 << UF_PATH))) {
        memcpy(pathbuf, target + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
        pathbuf[u.field_data[UF_PATH].len] = 0;
        path = pathbuf;
        qbuf = pathbuf + u.field_data[UF_PATH].len + 1;
        if (u.field_set & (1 << UF_QUERY)) {
            /* the query starts after the '?' that follows the path: always fits */
            size_t ql = u.field_data[UF_QUERY].len;
            size_t room = tl + 2 - (u.field_data[UF_PATH].len + 1);
            if (ql < room) {
                memcpy(qbuf, target + u.field_data[UF_QUERY].off, ql);
                qbuf[ql] = 0;
                query = qbuf;
            }
        }
    } else {
        free(pathbuf);
        s->st.bad_requests++;
        send_error(c, 400);
        return;
    }
    int is_head = c->parser.method == HTTP_HEAD;
    const char *match_method = is_head ? "GET" : method;
    const struct route *hit = NULL;
    int path_known = 0;
    for (size_t i = 0; i < s->n_routes; i++) {
        const struct route *r = &s->routes[i];
        int pm = r->prefix ? strncmp(path, r->path, r->path_len) == 0 : strcmp(path, r->path) == 0;
        if (!pm) continue;
        path_known = 1;
        if (strcmp(r->method, match_method) == 0 || strcmp(r->method, method) == 0) {
            hit = r;
            break;
        }
    }
    c->busy = 1;
    memset(&c->res, 0, sizeof(c->res));
    c->res.c = c;
    c->res.is_head = is_head;
    if (!hit) {
        free(pathbuf);
        int st = path_known ? 405 : 404;
        char body[64];
        int n = snprintf(body, sizeof(body), "%d %s\n", st, proto_http_reason(st));
        if (proto_http_respond(&c->res, st, "text/plain", body, (size_t)n) < 0) conn_close(c);
        return;
    }
    proto_http_req req = {
        .method = method,
        .target = target,
        .path = path,
        .query = query,
        .headers = hs,
        .n_headers = c->n_headers,
        .body = c->body.data,
        .body_len = c->body.len,
        .is_head = is_head,
        .from_loopback = c->from_loopback,
    };
    uv_timer_stop(&c->timer);
    c->in_dispatch = 1;
    hit->handler(&c->res, &req, hit->arg);
    c->in_dispatch = 0;
    free(pathbuf);
    if (!c->busy) request_reset(c);
}

static void conn_process(conn *c)
{
    c->in_process = 1;
    while (!c->busy && !c->closing && c->pend_off < c->pending.len) {
        size_t n = http_parser_execute(&c->parser, &parser_settings,
                                       (const char *)c->pending.data + c->pend_off,
                                       c->pending.len - c->pend_off);
        c->pend_off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            dispatch(c);
        } else if (e != HPE_OK) {
            c->srv->st.bad_requests++;
            int st = c->err_status ? c->err_status : 400;
            cf_debug("http: bad request (%s), answering %d", http_errno_name(e), st);
            send_error(c, st);
            break;
        }
    }
    c->in_process = 0;
    if (c->closing) return;
    if (c->pend_off >= c->pending.len) {
        cf_buf_free(&c->pending);
        c->pend_off = 0;
        if (!c->reading && !c->close_after) conn_start_reading(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = h->data;
    buf->base = c->srv->readbuf;
    buf->len = READ_BUF_SIZE;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    conn *c = st->data;
    if (n < 0) {
        if (n != UV_EOF) cf_debug("http: read error: %s", uv_strerror((int)n));
        if (c->busy && (c->ops_pending || c->q_head)) {
            /* half-close: let the response finish */
            uv_read_stop(st);
            c->reading = 0;
            c->keep_alive = 0;
            return;
        }
        conn_close(c);
        return;
    }
    if (n == 0) return;
    if (cf_buf_append(&c->pending, buf->base, (size_t)n)) {
        conn_close(c);
        return;
    }
    /* Keep reading while a response is pending, so a client that goes away is noticed (abort
     * callback), but hold at most one read buffer of pipelined bytes. */
    if (!c->busy) conn_process(c);
    if (!c->closing && c->pending.len - c->pend_off >= READ_BUF_SIZE) {
        uv_read_stop(st);
        c->reading = 0;
    }
}

static void conn_start_reading(conn *c)
{
    if (c->reading || c->closing) return;
    if (uv_read_start(&c->io.stream, on_alloc, on_read) == 0) c->reading = 1;
}

int proto_http_addr_is_loopback(const struct sockaddr *sa)
{
    if (!sa) return 0;
    if (sa->sa_family == AF_UNIX) return 1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

int proto_http_refuse_remote(proto_http_res *res, const proto_http_req *req, int allow_remote,
                             const char *setting)
{
    if (req->from_loopback || allow_remote) return 0;
    char body[256]; /* setting is a config key of ours, not client input */
    int n = snprintf(body, sizeof(body),
                     "{\"error\":\"served to clients on this host only (set %s = true to serve "
                     "it to any client that reaches this port)\"}\n",
                     setting);
    if (n < 0 || (size_t)n >= sizeof(body)) n = 0;
    proto_http_respond(res, 403, "application/json", body, (size_t)n);
    return 1;
}

/* Where the client of c's socket fd is (getpeername; unknown counts as remote, no source). */
static void conn_set_source(conn *c, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) return;
    c->from_loopback = proto_http_addr_is_loopback((struct sockaddr *)&ss);
    if (ss.ss_family == AF_INET) {
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(c->src, v4mapped, 12);
        memcpy(c->src + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        c->has_src = 1;
    } else if (ss.ss_family == AF_INET6) {
        memcpy(c->src, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        c->has_src = 1;
    }
}

/* Open connections from c's source address, c included. */
static unsigned source_count(const conn *c)
{
    unsigned n = 0;
    for (const conn *o = c->srv->conns; o; o = o->next)
        n += o->has_src && !o->closing && memcmp(o->src, c->src, 16) == 0;
    return n;
}

static conn *conn_new(proto_http_server *s)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->srv = s;
    uv_timer_init(s->loop, &c->timer);
    c->timer.data = c;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->st.connections_open++;
    return c;
}

/* The stream is open: apply limits, start the idle timer and reading. */
static void conn_begin(conn *c)
{
    proto_http_server *s = c->srv;
    if (s->st.connections_open > s->lim.max_connections || s->closing ||
        (c->has_src && source_count(c) > s->lim.max_per_source)) {
        s->st.connections_rejected++;
        conn_close(c);
        return;
    }
    s->st.connections_accepted++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    timer_restart(c);
    conn_start_reading(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
    proto_http_server *s = ls->data;
    if (status < 0) {
        cf_warn("http: accept failed: %s", uv_strerror(status));
        return;
    }
    conn *c = conn_new(s);
    if (!c) return;
    uv_tcp_init(s->loop, &c->io.tcp);
    c->io.stream.data = c;
    c->handles_open = 2;
    if (uv_accept(ls, &c->io.stream) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->io.tcp, 1);
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->io.tcp, &fd) == 0) conn_set_source(c, fd);
    conn_begin(c);
}

int proto_http_adopt_fd(proto_http_server *s, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -EBADF;
    conn *c = conn_new(s);
    if (!c) return -ENOMEM;
    int rc;
    if (ss.ss_family == AF_UNIX) {
        rc = uv_pipe_init(s->loop, &c->io.pipe, 0);
        if (!rc) rc = uv_pipe_open(&c->io.pipe, fd);
    } else {
        rc = uv_tcp_init(s->loop, &c->io.tcp);
        if (!rc) rc = uv_tcp_open(&c->io.tcp, fd);
    }
    c->io.stream.data = c;
    c->handles_open = 2;
    if (rc) {
        conn_close(c);
        return rc;
    }
    if (ss.ss_family == AF_UNIX)
        c->from_loopback = 1;
    else
        conn_set_source(c, fd);
    conn_begin(c);
    return 0;
}

int proto_http_listen(proto_http_server *s, const char *host, int port, cf_err *err)
{
    struct sockaddr_storage ss;
    if (port < 0 || port > 65535) return cf_err_set(err, -EINVAL, "http: bad port %d", port);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return cf_err_set(err, -EINVAL, "http: '%s' is not a numeric IP address", host);
    int rc = uv_tcp_init(s->loop, &s->listener);
    if (rc) return cf_err_set(err, rc, "http: %s", uv_strerror(rc));
    s->listener.data = s;
    s->listener_open = 1;
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
    if (!rc) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (rc) return cf_err_set(err, rc, "http: listen on %s:%d: %s", host, port, uv_strerror(rc));
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                          : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    s->listening = 1;
    return 0;
}

static void server_maybe_free(proto_http_server *s)
{
    if (!s->closing || s->listener_open || s->conns) return;
    for (size_t i = 0; i < s->n_routes; i++) {
        free(s->routes[i].method);
        free(s->routes[i].path);
    }
    free(s->routes);
    void (*cb)(void *) = s->close_cb;
    void *arg = s->close_arg;
    free(s);
    if (cb) cb(arg);
}

static void on_listener_closed(uv_handle_t *h)
{
    proto_http_server *s = h->data;
    s->listener_open = 0;
    server_maybe_free(s);
}

void proto_http_server_close(proto_http_server *s, void (*cb)(void *arg), void *arg)
{
    if (!s || s->closing) return;
    s->closing = 1;
    s->close_cb = cb;
    s->close_arg = arg;
    s->listening = 0;
    for (conn *c = s->conns; c; c = c->next) conn_close(c);
    if (s->listener_open)
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    else
        server_maybe_free(s);
}

/* ---- request helpers ---- */

const char *proto_http_header_get(const proto_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int proto_http_query_get(const char *query, const char *key, char *out, size_t out_size)
{
    if (!query || !key || !out || out_size == 0) return -EINVAL;
    size_t kl = strlen(key);
    const char *p = query;
    while (*p) {
        const char *end = strchr(p, '&');
        if (!end) end = p + strlen(p);
        if ((size_t)(end - p) >= kl && strncmp(p, key, kl) == 0 &&
            (p + kl == end || p[kl] == '=')) {
            const char *v = p + kl + (p + kl < end ? 1 : 0);
            size_t o = 0;
            while (v < end) {
                char ch = *v++;
                if (ch == '+')
                    ch = ' ';
                else if (ch == '%') {
                    if (end - v < 2) return -EINVAL;
                    int hi = hexval(v[0]), lo = hexval(v[1]);
                    if (hi < 0 || lo < 0) return -EINVAL;
                    ch = (char)(hi * 16 + lo);
                    v += 2;
                }
                if (o + 1 >= out_size) return -ENOSPC;
                out[o++] = ch;
            }
            out[o] = 0;
            return (int)o;
        }
        p = *end ? end + 1 : end;
    }
    return -ENOENT;
}
