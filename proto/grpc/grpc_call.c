/* One gRPC connection: an nghttp2 server session, its calls (streams), handler dispatch and the
 * response side (headers, length-prefixed DATA through a data provider, trailers).
 *
 * A call is referenced by its stream (until nghttp2 closes it or the connection is freed) and
 * by its handler (from dispatch to cf_grpc_call_finish); it is freed when both let go. It stays
 * in its connection's list until freed, so calls whose client went away but whose handler still
 * runs count against the connection's stream limit (a client cannot pile up work by opening and
 * resetting streams). */
#include "grpc_frame.h"
#include "grpc_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

#include "cf/buf.h"
#include "cf/log.h"

#define OUT_COALESCE (64u << 10) /* output handed to the transport in pieces up to this */
#define GRPC_MSG_MAX 2048u       /* grpc-message input bytes sent (headers are bounded) */

struct chunk {
    struct chunk *next;
    size_t len;
    uint8_t data[];
};
/* What a queued message costs besides its bytes, so many tiny messages count for what they
 * hold in memory (malloc's own overhead included, roughly). */
#define CHUNK_EXTRA (sizeof(struct chunk) + 16)
#define QUEUE_COST  (CHUNK_EXTRA + CF_GRPC_PREFIX_LEN)

struct cf_grpc_call {
    cf_grpc_conn *conn; /* NULL once the connection is freed */
    cf_grpc_call *prev, *next;
    int32_t stream_id;
    int refs;         /* stream + handler */
    int stream_open;  /* nghttp2 still has the stream */
    int gone;         /* the client reset the stream or the connection closed before finish */
    int dispatched;   /* the handler was called */
    int finished;     /* cf_grpc_call_finish was called */
    int answered;     /* an error response went out before dispatch: ignore the request body */
    int remote_ended; /* the client sent END_STREAM */
    int rst_after;    /* reset the stream once our END_STREAM is sent (client still sending) */
    int resp_started; /* response HEADERS with a data provider submitted */
    int deferred;     /* the data provider is waiting for cf_grpc_call_send / finish */
    int method_ok, type_ok;
    int accepted; /* request headers valid and the method known: the body is read */
    size_t header_bytes;
    char *path;
    cf_buf headers; /* request headers but pseudo ones: "name\0value\0"... */
    cf_grpc_reader rd;
    struct chunk *q_head, *q_tail;
    size_t q_off;  /* bytes of q_head already framed */
    size_t queued; /* bytes in the queue, with each chunk's header (QUEUE_COST) */
    int status;
    cf_buf message; /* percent-encoded grpc-message, NUL-terminated; empty = none */
};

struct cf_grpc_conn {
    cf_grpc_server *srv;
    nghttp2_session *s;
    struct cf_grpc_conn_ops ops;
    void *ctx;
    cf_grpc_call *calls; /* every call of this connection not yet freed */
    unsigned n_calls;
    size_t queued;     /* sum of the calls' queued bytes */
    size_t req_budget; /* request bytes the calls' readers may still take */
    int in_recv;       /* inside nghttp2_session_mem_recv: no output now, the caller flushes */
    cf_buf out;
};

/* ---- calls ---- */

static void queue_free(cf_grpc_call *call)
{
    struct chunk *ch = call->q_head;
    while (ch) {
        struct chunk *n = ch->next;
        free(ch);
        ch = n;
    }
    if (call->conn) call->conn->queued -= call->queued;
    call->q_head = call->q_tail = NULL;
    call->q_off = call->queued = 0;
}

static void call_unref(cf_grpc_call *call)
{
    if (--call->refs > 0) return;
    queue_free(call);
    cf_grpc_conn *c = call->conn;
    if (c) {
        if (call->prev)
            call->prev->next = call->next;
        else
            c->calls = call->next;
        if (call->next) call->next->prev = call->prev;
        c->n_calls--;
    }
    cf_grpc_reader_free(&call->rd);
    cf_buf_free(&call->message);
    cf_buf_free(&call->headers);
    free(call->path);
    free(call);
}

static void kick(cf_grpc_conn *c)
{
    if (!c->in_recv && c->ops.kick) c->ops.kick(c->ctx);
}

#define NV_STATIC(n, v)                                                                            \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1,                              \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                           \
    }

/* grpc-status (+ grpc-message) into nv[0..]; returns the count. `num` holds the digits. */
static size_t status_nv(nghttp2_nv *nv, char num[12], const cf_grpc_call *call)
{
    size_t n = 0;
    int len = snprintf(num, 12, "%d", call->status);
    nv[n++] = (nghttp2_nv){(uint8_t *)"grpc-status", (uint8_t *)num, 11, (size_t)len,
                           NGHTTP2_NV_FLAG_NO_COPY_NAME};
    if (call->message.len > 1)
        nv[n++] = (nghttp2_nv){(uint8_t *)"grpc-message", call->message.data, 12,
                               call->message.len - 1, NGHTTP2_NV_FLAG_NO_COPY_NAME};
    return n;
}

static void set_status(cf_grpc_call *call, int status, const char *message)
{
    call->status = status;
    cf_buf_reset(&call->message);
    if (message && *message && cf_grpc_percent_encode(&call->message, message, GRPC_MSG_MAX) < 0)
        cf_buf_reset(&call->message); /* no memory: the status alone still goes out */
}

/* A response that is only HEADERS with END_STREAM: the status of a call without messages. */
static void submit_trailers_only(cf_grpc_call *call)
{
    nghttp2_nv nv[4] = {NV_STATIC(":status", "200"), NV_STATIC("content-type", "application/grpc")};
    char num[12];
    size_t n = 2 + status_nv(nv + 2, num, call);
    call->resp_started = 1;
    if (!call->remote_ended) call->rst_after = 1;
    if (nghttp2_submit_response(call->conn->s, call->stream_id, nv, n, NULL) != 0)
        nghttp2_submit_rst_stream(call->conn->s, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
}

/* Answer before dispatch (bad request, limits, unknown method): the body is then ignored. */
static void answer_error(cf_grpc_call *call, int status, const char *message)
{
    call->answered = 1;
    cf_grpc_reader_free(&call->rd);
    cf_debug("grpc: stream %d %s: status %d: %s", call->stream_id, call->path ? call->path : "?",
             status, message);
    set_status(call, status, message);
    submit_trailers_only(call);
}

static void answer_http(cf_grpc_call *call, const char *code)
{
    nghttp2_nv nv[1] = {{(uint8_t *)":status", (uint8_t *)code, 7, 3,
                         NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE}};
    call->answered = 1;
    call->resp_started = 1;
    if (!call->remote_ended) call->rst_after = 1;
    nghttp2_submit_response(call->conn->s, call->stream_id, nv, 1, NULL);
}

static ssize_t read_data(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)stream_id;
    (void)user;
    cf_grpc_call *call = src->ptr;
    size_t done = 0;
    while (done < length && call->q_head) {
        struct chunk *ch = call->q_head;
        size_t k = ch->len - call->q_off;
        if (k > length - done) k = length - done;
        memcpy(buf + done, ch->data + call->q_off, k);
        done += k;
        call->q_off += k;
        call->queued -= k;
        call->conn->queued -= k;
        if (call->q_off == ch->len) {
            call->q_head = ch->next;
            if (!call->q_head) call->q_tail = NULL;
            call->q_off = 0;
            call->queued -= CHUNK_EXTRA;
            call->conn->queued -= CHUNK_EXTRA;
            free(ch);
        }
    }
    if (!call->q_head && call->finished) {
        nghttp2_nv nv[2];
        char num[12];
        size_t n = status_nv(nv, num, call);
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (nghttp2_submit_trailer(s, call->stream_id, nv, n) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        return (ssize_t)done;
    }
    if (done == 0) {
        call->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)done;
}

int cf_grpc_call_send(cf_grpc_call *call, const uint8_t *msg, size_t len)
{
    if (!call || call->finished || (!msg && len)) return -EINVAL;
    cf_grpc_conn *c = call->conn;
    if (call->gone || !c || !call->stream_open) return -EPIPE;
    if (len > UINT32_MAX) return -EMSGSIZE;
    size_t cap = c->srv->max_queued;
    if (c->queued + QUEUE_COST > cap || len > cap - QUEUE_COST - c->queued) return -ENOBUFS;
    struct chunk *ch = malloc(sizeof(*ch) + CF_GRPC_PREFIX_LEN + len);
    if (!ch) return -ENOMEM;
    ch->next = NULL;
    ch->len = CF_GRPC_PREFIX_LEN + len;
    cf_grpc_prefix_encode(ch->data, (uint32_t)len);
    if (len) memcpy(ch->data + CF_GRPC_PREFIX_LEN, msg, len);
    if (!call->resp_started) {
        nghttp2_nv nv[2] = {NV_STATIC(":status", "200"),
                            NV_STATIC("content-type", "application/grpc")};
        nghttp2_data_provider dp = {.source.ptr = call, .read_callback = read_data};
        if (nghttp2_submit_response(c->s, call->stream_id, nv, 2, &dp) != 0) {
            free(ch);
            return -EIO;
        }
        call->resp_started = 1;
    } else if (call->deferred) {
        call->deferred = 0;
        nghttp2_session_resume_data(c->s, call->stream_id);
    }
    if (call->q_tail)
        call->q_tail->next = ch;
    else
        call->q_head = ch;
    call->q_tail = ch;
    call->queued += QUEUE_COST + len;
    c->queued += QUEUE_COST + len;
    kick(c);
    return 0;
}

void cf_grpc_call_finish(cf_grpc_call *call, int status, const char *message)
{
    if (!call || call->finished || !call->dispatched) return;
    call->finished = 1;
    cf_grpc_conn *c = call->conn;
    if (c && call->stream_open && !call->gone) {
        set_status(call, status, message);
        if (!call->resp_started) {
            submit_trailers_only(call);
        } else if (call->deferred) {
            call->deferred = 0;
            nghttp2_session_resume_data(c->s, call->stream_id);
        }
        /* The handler's reference is held across the flush: the transport may close. */
        kick(c);
    }
    call_unref(call);
}

int cf_grpc_call_gone(const cf_grpc_call *call)
{
    return call->gone;
}

const char *cf_grpc_call_header(const cf_grpc_call *call, const char *name)
{
    const char *p = (const char *)call->headers.data, *end = p + call->headers.len;
    while (p && p < end) {
        const char *v = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0) return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

const char *cf_grpc_call_path(const cf_grpc_call *call)
{
    return call->path ? call->path : "";
}

/* ---- nghttp2 callbacks ---- */

static cf_grpc_call *stream_call(nghttp2_session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(s, id);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    cf_grpc_conn *c = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    if (c->n_calls >= c->srv->lim.max_streams_per_conn) {
        /* Streams whose handlers still run after the client reset them count too. */
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    cf_grpc_call *call = calloc(1, sizeof(*call));
    if (!call) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    call->conn = c;
    call->stream_id = f->hd.stream_id;
    call->refs = 1;
    call->stream_open = 1;
    cf_grpc_reader_init(&call->rd, c->srv->lim.max_message);
    call->rd.budget = &c->req_budget;
    call->next = c->calls;
    if (c->calls) c->calls->prev = call;
    c->calls = call;
    c->n_calls++;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, call);
    return 0;
}

static int is_grpc_type(const uint8_t *v, size_t n)
{
    static const char t[] = "application/grpc";
    size_t k = sizeof(t) - 1;
    return n >= k && strncasecmp((const char *)v, t, k) == 0 &&
           (n == k || v[k] == '+' || v[k] == ';');
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    cf_grpc_conn *c = user;
    cf_grpc_call *call = stream_call(s, f->hd.stream_id);
    if (!call) return 0;
    /* RFC 7541's accounting (32 bytes per field), as SETTINGS_MAX_HEADER_LIST_SIZE. */
    call->header_bytes += namelen + valuelen + 32;
    if (call->header_bytes > c->srv->lim.max_header_bytes) {
        cf_debug("grpc: stream %d: header block over %zu bytes: reset", call->stream_id,
                 c->srv->lim.max_header_bytes);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0; /* trailers: nothing we use */
    if (namelen == 5 && memcmp(name, ":path", 5) == 0 && !call->path) {
        call->path = strndup((const char *)value, valuelen);
        if (!call->path) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    } else if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
        call->method_ok = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        call->type_ok = is_grpc_type(value, valuelen);
    }
    /* Kept for cf_grpc_call_header (bounded by max_header_bytes above; nghttp2 has checked
     * that names and values hold no NUL). */
    if (namelen > 0 && name[0] != ':' &&
        (cf_buf_append(&call->headers, name, namelen) < 0 ||
         cf_buf_append_zeros(&call->headers, 1) < 0 ||
         cf_buf_append(&call->headers, value, valuelen) < 0 ||
         cf_buf_append_zeros(&call->headers, 1) < 0))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    /* grpc-timeout is ignored: the client enforces its deadline and resets the stream, which
     * the handler sees as cf_grpc_call_gone(). grpc-encoding: we accept only identity, so a
     * compressed message is refused when it arrives. */
    return 0;
}

static void end_of_request(cf_grpc_conn *c, cf_grpc_call *call)
{
    call->remote_ended = 1;
    if (!call->accepted || call->answered || call->dispatched) return;
    const struct cf_grpc_route *rt = cf_grpc_server_route(c->srv, call->path, strlen(call->path));
    if (!rt) return;
    const uint8_t *msg;
    size_t len;
    cf_err err = {0};
    int rc = cf_grpc_reader_end(&call->rd, &msg, &len, &err);
    if (rc < 0) {
        answer_error(call, cf_grpc_status_of_errno(rc), err.msg);
        return;
    }
    call->dispatched = 1;
    call->refs++; /* the handler's, dropped by cf_grpc_call_finish */
    rt->fn(call, msg, len, rt->arg);
    cf_grpc_reader_free(&call->rd);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    cf_grpc_conn *c = user;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
    cf_grpc_call *call = stream_call(s, f->hd.stream_id);
    if (!call) return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        if (!call->method_ok) {
            answer_http(call, "405");
        } else if (!call->type_ok) {
            answer_http(call, "415");
        } else if (!call->path || !cf_grpc_server_route(c->srv, call->path, strlen(call->path))) {
            char m[256];
            snprintf(m, sizeof(m), "unknown method %.200s", call->path ? call->path : "");
            answer_error(call, CF_GRPC_UNIMPLEMENTED, m);
        } else {
            call->accepted = 1;
        }
    }
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) end_of_request(c, call);
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    (void)user;
    cf_grpc_call *call = stream_call(s, id);
    if (!call || !call->accepted || call->answered || call->dispatched) return 0;
    cf_err err = {0};
    int rc = cf_grpc_reader_feed(&call->rd, data, len, &err);
    if (rc < 0) answer_error(call, cf_grpc_status_of_errno(rc), err.msg);
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    (void)user;
    if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA))
        return 0;
    cf_grpc_call *call = stream_call(s, f->hd.stream_id);
    if (call && call->rst_after && !call->remote_ended) {
        /* We answered early; tell the client to stop sending the body. */
        call->rst_after = 0;
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
    (void)code;
    (void)user;
    cf_grpc_call *call = stream_call(s, id);
    if (!call) return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    call->stream_open = 0;
    if (!call->finished) call->gone = 1;
    queue_free(call);
    call_unref(call);
    return 0;
}

/* ---- connection ---- */

int cf_grpc_conn_new(cf_grpc_server *srv, const struct cf_grpc_conn_ops *ops, void *ctx,
                     cf_grpc_conn **out, cf_err *err)
{
    cf_grpc_conn *c = calloc(1, sizeof(*c));
    if (!c) return cf_err_set(err, -ENOMEM, "no memory for a gRPC connection");
    c->srv = srv;
    c->req_budget = srv->req_budget;
    c->ops = *ops;
    c->ctx = ctx;
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        free(c);
        return cf_err_set(err, -ENOMEM, "no memory for nghttp2 callbacks");
    }
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        free(c);
        return cf_err_set(err, -ENOMEM, "no memory for nghttp2 options");
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    /* Streams the peer closed are forgotten at once (no priority tree history kept). */
    nghttp2_option_set_no_closed_streams(opt, 1);
    int rv = nghttp2_session_server_new2(&c->s, cb, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) {
        free(c);
        return cf_err_set(err, -ENOMEM, "nghttp2 session: %s", nghttp2_strerror(rv));
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->lim.max_streams_per_conn},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, CF_GRPC_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)srv->lim.max_header_bytes},
    };
    rv = nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (rv == 0)
        rv = nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, CF_GRPC_CONN_WINDOW);
    if (rv != 0) {
        nghttp2_session_del(c->s);
        free(c);
        return cf_err_set(err, -ENOMEM, "nghttp2 settings: %s", nghttp2_strerror(rv));
    }
    *out = c;
    return 0;
}

int cf_grpc_conn_recv(cf_grpc_conn *c, const uint8_t *data, size_t len)
{
    c->in_recv = 1;
    ssize_t rv = nghttp2_session_mem_recv(c->s, data, len);
    c->in_recv = 0;
    if (rv < 0) {
        cf_debug("grpc: connection error: %s", nghttp2_strerror((int)rv));
        return -EBADMSG;
    }
    return 0;
}

int cf_grpc_conn_flush(cf_grpc_conn *c)
{
    if (c->in_recv) return 0;
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->s, &d);
        if (n < 0) {
            cf_buf_reset(&c->out);
            return -EIO;
        }
        if (n > 0 && cf_buf_append(&c->out, d, (size_t)n) < 0) {
            cf_buf_reset(&c->out);
            return -ENOMEM;
        }
        if (c->out.len > 0 && (n == 0 || c->out.len >= OUT_COALESCE)) {
            int rc = c->ops.send(c->ctx, c->out.data, c->out.len);
            cf_buf_reset(&c->out);
            if (rc != 0) return rc;
        }
        if (n == 0) return 0;
    }
}

int cf_grpc_conn_done(const cf_grpc_conn *c)
{
    return !nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s);
}

void cf_grpc_conn_free(cf_grpc_conn *c)
{
    if (!c) return;
    cf_grpc_call *call = c->calls;
    while (call) {
        cf_grpc_call *next = call->next;
        queue_free(call);
        cf_grpc_reader_free(&call->rd); /* gives back to c->req_budget, about to go */
        call->rd.budget = NULL;
        call->conn = NULL;
        call->prev = call->next = NULL;
        if (!call->finished) call->gone = 1;
        if (call->stream_open) {
            call->stream_open = 0;
            call_unref(call);
        }
        call = next;
    }
    /* Every queued byte and every budget byte accounted for (checked by the fuzzer). */
    assert(c->queued == 0);
    assert(c->req_budget == c->srv->req_budget);
    nghttp2_session_del(c->s);
    cf_buf_free(&c->out);
    free(c);
}
