/* proto_conn: incremental frame reader, write queue with back-pressure and sendfile regions,
 * idle timeout, on top of a libuv TCP or unix stream (contract in conn.h). */
#include "proto/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "cf/buf.h"
#include "cf/log.h"
#include "cf/uv_poll.h"

#define SCRATCH_LEN        (64u << 10) /* per-thread read buffer */
#define DIRECT_READ_MIN    4096u       /* frame rest at least this big: read straight into it */
#define FRAME_MIN_CAP      (16u << 10) /* first allocation for a partial frame */
#define SENDFILE_SLICE     (1u << 20)  /* per writable event, so one upload cannot hog the loop */
#define DEF_HIGH_WATERMARK (4u << 20)
#define DEF_MAX_QUEUED     (64u << 20)

typedef struct wq_item {
    struct wq_item *next;
    uv_write_t req; /* used while this item's buf is being written (only the head is) */
    uint8_t *buf;   /* header + body (+ copied payload) */
    size_t len;
    bool buf_done;
    int fd; /* file region after buf, -1 = none; owned (dup) */
    uint64_t off;
    uint64_t flen;
    uint64_t fsent;
} wq_item;

struct proto_conn {
    uv_loop_t *loop;
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    uv_timer_t idle;
    /* Rarely needed handles are allocated on first use, so an idle conn stays small. */
    uv_timer_t *kick; /* deferred processing of buffered bytes after resume */
    uv_poll_t *poll;  /* writability of a dup of the socket fd, for sendfile */
    int poll_fd;
    bool poll_active;
    bool write_busy;

    proto_conn_cbs cbs;
    void *data;
    uint32_t idle_ms;
    size_t high, low, max_queued;
    uint32_t max_payload, peer_max_payload;
    uint32_t max_body; /* receive limit on a frame's msgpack body (small before HELLO) */

    /* reader: reads land in the per-thread scratch buffer; complete frames are dispatched from
     * there in place, only the unconsumed part of a partial frame is kept per conn */
    uint8_t hdr[PROTO_FRAME_HEADER_LEN];
    size_t hdr_have;
    bool in_frame; /* cur is decoded and validated, body + payload pending */
    proto_frame_header cur;
    uint8_t *frame; /* received part of body + payload; NULL until bytes must be kept */
    size_t frame_len, frame_have, frame_cap; /* frame_cap grows with the data, to frame_len */
    cf_buf backlog; /* bytes read but not processed because reading was paused */
    bool reading, read_paused;

    /* writer */
    wq_item *head, *tail;
    size_t queued;
    bool congested;

    bool pumping; /* pump() is on the stack: callbacks it triggers must not re-enter it */
    bool connected, closing, flush_close;
    int open_handles;
    int close_status;
    char *reason; /* set when closing; NULL = default text */
    char peer_name[64];
};

static void pump(proto_conn *c);
static void start_reading(proto_conn *c);

/* One read buffer per thread, shared by all conns of the thread's loop(s): libuv calls alloc_cb,
 * read(2) and read_cb back to back for one stream, and on_frame never runs another conn's reader
 * synchronously (resume goes through a timer), so no two conns use it at once. Allocated on the
 * first read, freed with the thread's last conn. */
static _Thread_local uint8_t *tl_scratch;
static _Thread_local size_t tl_conns;
/* Bytes held in partial frames by all conns of the process, and the cap on them: a flood of
 * half-sent frames over many connections must not grow the process without bound. */
static _Atomic size_t g_input_held;
static _Atomic size_t g_input_budget = PROTO_CONN_DEF_INPUT_BUDGET;

static void conn_free(proto_conn *c)
{
    free(c);
    if (--tl_conns == 0) {
        free(tl_scratch);
        tl_scratch = NULL;
    }
}

static const char *reason_text(const proto_conn *c)
{
    return c->reason ? c->reason : c->close_status ? uv_strerror(c->close_status) : "closed";
}

static void set_reason(proto_conn *c, int status, const char *reason)
{
    c->close_status = status;
    if (reason && reason == c->reason) return;
    free(c->reason);
    /* NULL (no reason, or out of memory): reason_text() derives one from the status */
    c->reason = reason ? strndup(reason, 191) : NULL;
}

/* ---- closing ---- */

static void item_free(wq_item *it)
{
    if (it->fd >= 0) close(it->fd);
    free(it->buf);
    free(it);
}

static void finish(proto_conn *c)
{
    if (c->cbs.on_close) c->cbs.on_close(c, c->close_status, reason_text(c));
    while (c->head) {
        wq_item *n = c->head->next;
        item_free(c->head);
        c->head = n;
    }
    if (c->poll_fd >= 0) close(c->poll_fd);
    g_input_held -= c->frame_cap;
    free(c->frame);
    cf_buf_free(&c->backlog);
    free(c->kick);
    free(c->poll);
    free(c->reason);
    conn_free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    proto_conn *c = h->data;
    if (--c->open_handles == 0) finish(c);
}

static void close_handle(proto_conn *c, uv_handle_t *h)
{
    c->open_handles++;
    uv_close(h, on_handle_closed);
}

void proto_conn_close(proto_conn *c, int status, const char *reason)
{
    if (c->closing) return;
    c->closing = true;
    set_reason(c, status, reason);
    c->open_handles++; /* hold: handles may close synchronously-looking in any order */
    close_handle(c, &c->io.h);
    close_handle(c, (uv_handle_t *)&c->idle);
    if (c->kick) close_handle(c, (uv_handle_t *)c->kick);
    if (c->poll) close_handle(c, (uv_handle_t *)c->poll);
    c->open_handles--; /* close callbacks always run later, from the loop */
}

void proto_conn_close_after_flush(proto_conn *c, int status, const char *reason)
{
    if (c->closing || c->flush_close) return;
    c->flush_close = true;
    set_reason(c, status, reason);
    if (c->reading) uv_read_stop(&c->io.s);
    c->reading = false;
    c->read_paused = true;
    pump(c);
}

static void fail(proto_conn *c, int status, const char *reason)
{
    proto_conn_close(c, status, reason);
}

/* ---- timers ---- */

static void on_idle(uv_timer_t *t)
{
    proto_conn *c = t->data;
    fail(c, -ETIMEDOUT, "idle timeout");
}

static void touch(proto_conn *c)
{
    if (c->idle_ms && !c->closing) uv_timer_start(&c->idle, on_idle, c->idle_ms, 0);
}

/* ---- reader ---- */

/* Makes room for `need` more bytes of the partial frame (need <= frame_len - frame_have). Grows
 * geometrically with what actually arrived, so a peer announcing a large frame and stalling
 * holds little; the last step ends at exactly body + payload. */
static int frame_reserve(proto_conn *c, size_t need)
{
    size_t want = c->frame_have + need;
    if (want <= c->frame_cap) return 0;
    size_t cap = c->frame_cap ? c->frame_cap * 2 : FRAME_MIN_CAP;
    if (cap < want) cap = want;
    if (cap > c->frame_len) cap = c->frame_len;
    size_t budget = g_input_budget, grow = cap - c->frame_cap;
    if (budget && atomic_fetch_add(&g_input_held, grow) + grow > budget) {
        g_input_held -= grow;
        return -ENOBUFS;
    }
    uint8_t *p = realloc(c->frame, cap);
    if (!p) {
        g_input_held -= grow;
        return -ENOMEM;
    }
    if (!budget) g_input_held += grow; /* still counted, for proto_conn_input_held */
    c->frame = p;
    c->frame_cap = cap;
    return 0;
}

/* f: body + payload of the current frame, either c->frame or bytes of the caller's buffer. The
 * reader is reset first (on_frame may pause, close or send); c->frame is freed after. */
static void dispatch(proto_conn *c, const uint8_t *f)
{
    uint8_t *owned = c->frame;
    proto_frame_header h = c->cur;
    c->frame = NULL;
    g_input_held -= c->frame_cap;
    c->frame_cap = c->frame_have = 0;
    c->in_frame = false;
    c->hdr_have = 0;
    c->cbs.on_frame(c, &h, f, f + h.body_len);
    free(owned);
}

/* Consumes bytes; stops early when paused or closing and keeps the rest in the backlog. */
static void feed(proto_conn *c, const uint8_t *p, size_t len)
{
    while (!c->closing && !c->read_paused) {
        if (!c->in_frame) {
            if (len == 0) break;
            size_t take = PROTO_FRAME_HEADER_LEN - c->hdr_have;
            if (take > len) take = len;
            memcpy(c->hdr + c->hdr_have, p, take);
            c->hdr_have += take, p += take, len -= take;
            if (c->hdr_have < PROTO_FRAME_HEADER_LEN) break;
            cf_err err = {0};
            int r = proto_frame_header_decode(c->hdr, c->max_payload, &c->cur, &err);
            if (r < 0) {
                cf_warn("connection %s: %s", c->peer_name, err.msg);
                fail(c, r, err.msg);
                return;
            }
            if (c->cur.body_len > c->max_body) {
                char msg[128];
                snprintf(msg, sizeof(msg), "frame body of %u bytes over this connection's limit %u",
                         c->cur.body_len, c->max_body);
                cf_warn("connection %s: %s", c->peer_name, msg);
                fail(c, -EMSGSIZE, msg);
                return;
            }
            c->in_frame = true;
            c->frame_len = (size_t)c->cur.body_len + c->cur.payload_len;
            c->frame_have = 0;
        }
        if (!c->frame && len >= c->frame_len) {
            /* the whole frame is in this buffer (the common case): no copy */
            const uint8_t *f = p;
            p += c->frame_len, len -= c->frame_len;
            dispatch(c, f);
            continue;
        }
        if (len == 0) break;
        size_t take = c->frame_len - c->frame_have;
        if (take > len) take = len;
        int rr = frame_reserve(c, take);
        if (rr < 0) {
            fail(c, rr,
                 rr == -ENOBUFS ? "input budget exhausted (too many partial frames held)"
                                : "out of memory for a frame");
            return;
        }
        memcpy(c->frame + c->frame_have, p, take);
        c->frame_have += take, p += take, len -= take;
        if (c->frame_have == c->frame_len) dispatch(c, c->frame);
    }
    if (len > 0 && !c->closing && cf_buf_append(&c->backlog, p, len) < 0)
        fail(c, -ENOMEM, "out of memory buffering input");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    proto_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(NULL, 0); /* = UV_ENOBUFS in on_read */
    /* Large remainder of a frame: read straight into the frame, no copy. */
    if (c->in_frame && c->frame_len - c->frame_have >= DIRECT_READ_MIN) {
        size_t rest = c->frame_len - c->frame_have;
        /* on failure the scratch buffer is used: feed() then reports the error */
        if (frame_reserve(c, rest < SCRATCH_LEN ? rest : SCRATCH_LEN) == 0) {
            size_t n = c->frame_cap - c->frame_have;
            *buf = uv_buf_init((char *)c->frame + c->frame_have,
                               n > UINT32_MAX ? UINT32_MAX : (unsigned)n);
            return;
        }
    }
    if (!tl_scratch && !(tl_scratch = malloc(SCRATCH_LEN))) return;
    *buf = uv_buf_init((char *)tl_scratch, SCRATCH_LEN);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    proto_conn *c = s->data;
    if (c->closing) return;
    if (nread == UV_EOF) {
        if (c->in_frame || c->hdr_have)
            fail(c, -EPIPE, "connection closed inside a frame");
        else
            fail(c, 0, "closed by peer");
        return;
    }
    if (nread == UV_ENOBUFS) {
        fail(c, -ENOMEM, "out of memory for a read buffer");
        return;
    }
    if (nread < 0) {
        fail(c, (int)nread, uv_strerror((int)nread));
        return;
    }
    if (nread == 0) return;
    touch(c);
    if (buf->base != (char *)tl_scratch) { /* read straight into c->frame */
        c->frame_have += (size_t)nread;
        if (c->frame_have == c->frame_len) dispatch(c, c->frame);
        return;
    }
    feed(c, tl_scratch, (size_t)nread);
}

static void start_reading(proto_conn *c)
{
    if (c->reading || c->read_paused || c->closing || !c->connected) return;
    int r = uv_read_start(&c->io.s, on_alloc, on_read);
    if (r < 0) {
        fail(c, r, "cannot start reading");
        return;
    }
    c->reading = true;
}

static void on_kick(uv_timer_t *t)
{
    proto_conn *c = t->data;
    if (c->closing || c->read_paused) return;
    if (c->backlog.len) {
        cf_buf local = c->backlog;
        memset(&c->backlog, 0, sizeof(c->backlog));
        feed(c, local.data, local.len);
        cf_buf_free(&local);
    }
    if (!c->backlog.len) start_reading(c);
}

void proto_conn_pause_read(proto_conn *c)
{
    if (c->closing) return;
    c->read_paused = true;
    if (c->reading) uv_read_stop(&c->io.s);
    c->reading = false;
}

int proto_conn_resume_read(proto_conn *c)
{
    if (c->closing) return -ENOTCONN;
    if (c->flush_close) return -ENOTCONN;
    if (!c->kick) {
        c->kick = malloc(sizeof(*c->kick));
        if (!c->kick) return -ENOMEM;
        uv_timer_init(c->loop, c->kick);
        c->kick->data = c;
    }
    c->read_paused = false;
    /* buffered bytes first, from the loop (never re-entering the caller's callback) */
    return uv_timer_start(c->kick, on_kick, 0, 0);
}

/* ---- writer ---- */

static void account_sub(proto_conn *c, size_t n)
{
    c->queued -= n;
    if (c->congested && c->queued <= c->low) {
        c->congested = false;
        if (c->cbs.on_drain && !c->closing) c->cbs.on_drain(c);
    }
}

static void pop_head(proto_conn *c)
{
    wq_item *it = c->head;
    c->head = it->next;
    if (!c->head) c->tail = NULL;
    item_free(it);
}

static void on_write(uv_write_t *req, int status)
{
    proto_conn *c = req->data; /* req is c->head's: items are freed only after this runs */
    c->write_busy = false;
    if (c->closing) return;
    if (status < 0) {
        fail(c, status, uv_strerror(status));
        return;
    }
    touch(c);
    c->head->buf_done = true;
    account_sub(c, c->head->len);
    pump(c);
}

static void on_writable(uv_poll_t *p, int status, int events)
{
    proto_conn *c = p->data;
    (void)events;
    uv_poll_stop(p);
    c->poll_active = false;
    if (c->closing) return;
    if (status < 0) {
        fail(c, status, uv_strerror(status));
        return;
    }
    pump(c);
}

static int wait_writable(proto_conn *c)
{
    if (!c->poll) {
        int r = cf_uv_poll_dup(c->loop, &c->io.h, &c->poll, &c->poll_fd);
        if (r < 0) return r;
        c->poll->data = c;
    }
    if (c->poll_active) return 0;
    int r = uv_poll_start(c->poll, UV_WRITABLE, on_writable);
    if (r == 0) c->poll_active = true;
    return r;
}

/* Sends a slice of the head item's file region. Returns 1 when the region is complete, 0 when
 * waiting for writability, negative errno on failure. */
static int send_file_slice(proto_conn *c, wq_item *it)
{
    uv_os_fd_t sock;
    int r = uv_fileno(&c->io.h, &sock);
    if (r < 0) return r;
    uint64_t budget = SENDFILE_SLICE;
    while (it->fsent < it->flen && budget > 0) {
        uint64_t left = it->flen - it->fsent;
        size_t n = (size_t)(left < budget ? left : budget);
        off_t off = (off_t)(it->off + it->fsent);
        ssize_t w = sendfile(sock, it->fd, &off, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return -errno;
        }
        if (w == 0) return -EIO; /* file shorter than announced: the frame cannot complete */
        it->fsent += (uint64_t)w;
        budget -= (uint64_t)w < budget ? (uint64_t)w : budget;
        account_sub(c, (size_t)w);
        if (c->closing) return -ECANCELED;
    }
    if (it->fsent > 0) touch(c);
    if (it->fsent == it->flen) return 1;
    r = wait_writable(c);
    return r < 0 ? r : 0;
}

/* Runs the queue until it must wait (a uv_write in flight, or the socket not writable). */
static void pump_run(proto_conn *c)
{
    while (!c->closing && c->connected && !c->write_busy && !c->poll_active && c->head) {
        wq_item *it = c->head;
        if (!it->buf_done) {
            uv_buf_t b = uv_buf_init((char *)it->buf, (unsigned)it->len);
            it->req.data = c;
            int r = uv_write(&it->req, &c->io.s, &b, 1, on_write);
            if (r < 0) {
                fail(c, r, uv_strerror(r));
                return;
            }
            c->write_busy = true;
            return;
        }
        if (it->fd >= 0 && it->fsent < it->flen) {
            int r = send_file_slice(c, it);
            if (r == -ECANCELED) return;
            if (r < 0) {
                char msg[128];
                snprintf(msg, sizeof(msg), "sendfile: %s", strerror(-r));
                fail(c, r, msg);
                return;
            }
            if (r == 0) return;
        }
        pop_head(c);
    }
    if (!c->closing && c->flush_close && !c->head && !c->write_busy)
        proto_conn_close(c, c->close_status, c->reason);
}

static void pump(proto_conn *c)
{
    /* on_drain (fired from inside pump_run) may queue more frames and call back in here; the
     * running pump_run picks them up, so never nest (the head item could be freed under it). */
    if (c->pumping) return;
    c->pumping = true;
    pump_run(c);
    c->pumping = false;
}

static int enqueue(proto_conn *c, cf_buf *frame, int fd, uint64_t off, uint64_t flen)
{
    wq_item *it = calloc(1, sizeof(*it));
    if (!it) return -ENOMEM;
    it->buf = cf_buf_steal(frame, &it->len);
    it->fd = fd;
    it->off = off;
    it->flen = flen;
    if (c->tail)
        c->tail->next = it;
    else
        c->head = it;
    c->tail = it;
    c->queued += it->len + (size_t)flen;
    if (!c->congested && c->queued > c->high) c->congested = true;
    pump(c);
    return 0;
}

static int admit(proto_conn *c, size_t total)
{
    if (c->closing || c->flush_close) return -ENOTCONN;
    if (c->queued > 0 && (c->queued + total > c->max_queued || c->queued + total < total))
        return -ENOBUFS;
    return 0;
}

int proto_conn_send_raw(proto_conn *c, uint8_t type, uint16_t flags, const void *body,
                        size_t body_len, const void *payload, size_t payload_len)
{
    if (body_len > PROTO_MAX_BODY || payload_len > c->peer_max_payload) return -EMSGSIZE;
    int r = admit(c, PROTO_FRAME_HEADER_LEN + body_len + payload_len);
    if (r < 0) return r;
    cf_buf b = {0};
    proto_frame_header h;
    proto_frame_header_init(&h, type, flags, (uint32_t)body_len, (uint32_t)payload_len);
    if (cf_buf_reserve(&b, PROTO_FRAME_HEADER_LEN + body_len + payload_len) < 0) return -ENOMEM;
    proto_frame_header_encode(&h, b.data);
    b.len = PROTO_FRAME_HEADER_LEN;
    if (body_len) cf_buf_append(&b, body, body_len); /* reserved: cannot fail */
    if (payload_len) cf_buf_append(&b, payload, payload_len);
    r = enqueue(c, &b, -1, 0, 0);
    cf_buf_free(&b);
    return r;
}

static int encode(proto_conn *c, const proto_msg *m, size_t payload_len, cf_buf *b, cf_err *err)
{
    if (payload_len > c->peer_max_payload)
        return cf_err_set(err, -EMSGSIZE, "payload of %zu bytes over the peer's limit %u",
                          payload_len, c->peer_max_payload);
    int r = admit(c, PROTO_FRAME_HEADER_LEN + payload_len);
    if (r < 0) return cf_err_set(err, r, r == -ENOBUFS ? "write queue full" : "connection closing");
    return proto_msg_encode_frame(m, (uint32_t)payload_len, b, err);
}

int proto_conn_send(proto_conn *c, const proto_msg *m, const void *payload, size_t payload_len,
                    cf_err *err)
{
    cf_buf b = {0};
    int r = encode(c, m, payload_len, &b, err);
    if (r == 0 && payload_len && cf_buf_append(&b, payload, payload_len) < 0)
        r = cf_err_set(err, -ENOMEM, "out of memory");
    if (r == 0 && (r = admit(c, b.len)) < 0) cf_err_set(err, r, "write queue full");
    if (r == 0 && (r = enqueue(c, &b, -1, 0, 0)) < 0) cf_err_set(err, r, "out of memory");
    cf_buf_free(&b);
    return r;
}

int proto_conn_send_error(proto_conn *c, uint32_t code, uint64_t req_id, const char *task_id,
                          const char *message)
{
    proto_msg m = {.type = PROTO_MSG_ERROR};
    m.u.error.code = code;
    m.u.error.message = message;
    m.u.error.req_id = req_id;
    m.u.error.task_id = task_id;
    return proto_conn_send(c, &m, NULL, 0, NULL);
}

int proto_conn_send_file(proto_conn *c, const proto_msg *m, int fd, uint64_t offset, uint32_t len,
                         cf_err *err)
{
    cf_buf b = {0};
    int r = encode(c, m, len, &b, err);
    if (r == 0 && (r = admit(c, b.len + len)) < 0) cf_err_set(err, r, "write queue full");
    int dfd = -1;
    if (r == 0 && len > 0) {
        dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dfd < 0) r = cf_err_set(err, -errno, "dup: %s", strerror(errno));
    }
    if (r == 0 && (r = enqueue(c, &b, dfd, offset, len)) < 0) {
        cf_err_set(err, r, "out of memory");
        if (dfd >= 0) close(dfd);
    }
    cf_buf_free(&b);
    return r;
}

size_t proto_conn_queued(const proto_conn *c)
{
    return c->queued;
}

bool proto_conn_congested(const proto_conn *c)
{
    return c->congested;
}

/* ---- setup ---- */

static proto_conn *conn_alloc(uv_loop_t *loop, const proto_conn_opts *opts,
                              const proto_conn_cbs *cbs, void *data)
{
    proto_conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    tl_conns++;
    c->loop = loop;
    c->cbs = *cbs;
    c->data = data;
    c->poll_fd = -1;
    proto_conn_opts o = opts ? *opts : (proto_conn_opts){0};
    c->max_payload =
        o.max_payload && o.max_payload < PROTO_MAX_PAYLOAD ? o.max_payload : PROTO_MAX_PAYLOAD;
    c->peer_max_payload = PROTO_MAX_PAYLOAD;
    c->max_body = o.max_body && o.max_body < PROTO_MAX_BODY ? o.max_body : PROTO_MAX_BODY;
    c->idle_ms = o.idle_timeout_ms;
    c->high = o.high_watermark ? o.high_watermark : DEF_HIGH_WATERMARK;
    c->low = o.low_watermark && o.low_watermark < c->high ? o.low_watermark : c->high / 4;
    c->max_queued = o.max_queued ? o.max_queued : DEF_MAX_QUEUED;
    snprintf(c->peer_name, sizeof(c->peer_name), "?");
    return c;
}

/* io must be initialised; sets up the timers. On failure closes io and returns the error
 * (the conn is then freed from the loop without on_close). */
static int conn_init_rest(proto_conn *c)
{
    c->io.h.data = c;
    uv_timer_init(c->loop, &c->idle);
    c->idle.data = c;
    return 0;
}

static void sockaddr_name(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[64] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        uv_ip4_name(in, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(out, len, "%s:%d", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(in6, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        snprintf(out, len, "[%s]:%d", ip, port);
    } else {
        snprintf(out, len, "unix");
    }
}

static void set_peer_name(proto_conn *c)
{
    if (c->io.h.type != UV_TCP) {
        snprintf(c->peer_name, sizeof(c->peer_name), "unix");
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->io.tcp, (struct sockaddr *)&ss, &len) == 0)
        sockaddr_name((struct sockaddr *)&ss, c->peer_name, sizeof(c->peer_name));
}

static void became_connected(proto_conn *c)
{
    c->connected = true;
    if (c->io.h.type == UV_TCP) uv_tcp_nodelay(&c->io.tcp, 1);
    touch(c);
    start_reading(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    proto_conn *c = req->data;
    free(req); /* libuv always calls this, with UV_ECANCELED when closed before connecting */
    if (c->closing) return;
    if (status < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "connect to %s: %s", c->peer_name, uv_strerror(status));
        fail(c, status, msg);
        return;
    }
    became_connected(c);
    if (c->closing) return;
    if (c->cbs.on_connect) c->cbs.on_connect(c);
    pump(c);
}

static void free_unstarted(uv_handle_t *h)
{
    conn_free(h->data);
}

int proto_conn_connect_tcp(uv_loop_t *loop, const struct sockaddr *addr,
                           const proto_conn_opts *opts, const proto_conn_cbs *cbs, void *data,
                           proto_conn **out)
{
    if (!cbs || !cbs->on_frame || !addr) return -EINVAL;
    proto_conn *c = conn_alloc(loop, opts, cbs, data);
    if (!c) return -ENOMEM;
    uv_connect_t *req = malloc(sizeof(*req));
    if (!req) {
        conn_free(c);
        return -ENOMEM;
    }
    int r = uv_tcp_init(loop, &c->io.tcp);
    if (r < 0) {
        free(req);
        conn_free(c);
        return r;
    }
    conn_init_rest(c);
    sockaddr_name(addr, c->peer_name, sizeof(c->peer_name));
    req->data = c;
    r = uv_tcp_connect(req, &c->io.tcp, addr, on_connect);
    if (r < 0) {
        free(req);
        /* nothing started: release quietly (no on_close for a failed call) */
        c->cbs.on_close = NULL;
        proto_conn_close(c, r, NULL);
        return r;
    }
    touch(c); /* connect timeout = idle timeout */
    *out = c;
    return 0;
}

int proto_conn_connect_pipe(uv_loop_t *loop, const char *path, const proto_conn_opts *opts,
                            const proto_conn_cbs *cbs, void *data, proto_conn **out)
{
    if (!cbs || !cbs->on_frame || !path) return -EINVAL;
    proto_conn *c = conn_alloc(loop, opts, cbs, data);
    if (!c) return -ENOMEM;
    uv_connect_t *req = malloc(sizeof(*req));
    if (!req) {
        conn_free(c);
        return -ENOMEM;
    }
    int r = uv_pipe_init(loop, &c->io.pipe, 0);
    if (r < 0) {
        free(req);
        conn_free(c);
        return r;
    }
    conn_init_rest(c);
    snprintf(c->peer_name, sizeof(c->peer_name), "unix");
    req->data = c;
    uv_pipe_connect(req, &c->io.pipe, path, on_connect);
    touch(c);
    *out = c;
    return 0;
}

int proto_conn_accept(uv_stream_t *server, const proto_conn_opts *opts, const proto_conn_cbs *cbs,
                      void *data, proto_conn **out)
{
    if (!cbs || !cbs->on_frame || !server) return -EINVAL;
    proto_conn *c = conn_alloc(server->loop, opts, cbs, data);
    if (!c) return -ENOMEM;
    int r;
    if (server->type == UV_TCP)
        r = uv_tcp_init(server->loop, &c->io.tcp);
    else if (server->type == UV_NAMED_PIPE)
        r = uv_pipe_init(server->loop, &c->io.pipe, 0);
    else
        r = -EINVAL;
    if (r < 0) {
        conn_free(c);
        return r;
    }
    c->io.h.data = c;
    r = uv_accept(server, &c->io.s);
    if (r < 0) {
        uv_close(&c->io.h, free_unstarted);
        return r;
    }
    conn_init_rest(c);
    set_peer_name(c);
    became_connected(c);
    *out = c;
    return 0;
}

int proto_conn_open(uv_loop_t *loop, int fd, const proto_conn_opts *opts, const proto_conn_cbs *cbs,
                    void *data, proto_conn **out)
{
    if (!cbs || !cbs->on_frame) {
        close(fd);
        return -EINVAL;
    }
    proto_conn *c = conn_alloc(loop, opts, cbs, data);
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    uv_handle_type t = uv_guess_handle(fd);
    int r;
    if (t == UV_TCP) {
        r = uv_tcp_init(loop, &c->io.tcp);
        if (r == 0 && (r = uv_tcp_open(&c->io.tcp, fd)) < 0) {
            c->io.h.data = c;
            close(fd);
            uv_close(&c->io.h, free_unstarted);
            return r;
        }
    } else if (t == UV_NAMED_PIPE) {
        r = uv_pipe_init(loop, &c->io.pipe, 0);
        if (r == 0 && (r = uv_pipe_open(&c->io.pipe, fd)) < 0) {
            c->io.h.data = c;
            close(fd);
            uv_close(&c->io.h, free_unstarted);
            return r;
        }
    } else {
        r = -EINVAL;
    }
    if (r < 0) {
        close(fd);
        conn_free(c);
        return r;
    }
    conn_init_rest(c);
    set_peer_name(c);
    became_connected(c);
    *out = c;
    return 0;
}

void proto_conn_set_max_payload(proto_conn *c, uint32_t max_payload)
{
    c->max_payload =
        max_payload && max_payload < PROTO_MAX_PAYLOAD ? max_payload : PROTO_MAX_PAYLOAD;
}

void proto_conn_set_max_body(proto_conn *c, uint32_t max_body)
{
    c->max_body = max_body && max_body < PROTO_MAX_BODY ? max_body : PROTO_MAX_BODY;
}

void proto_conn_set_input_budget(size_t bytes)
{
    g_input_budget = bytes;
}

size_t proto_conn_input_held(void)
{
    return g_input_held;
}

void proto_conn_set_peer_max_payload(proto_conn *c, uint32_t max_payload)
{
    c->peer_max_payload =
        max_payload && max_payload < PROTO_MAX_PAYLOAD ? max_payload : PROTO_MAX_PAYLOAD;
}

void *proto_conn_data(const proto_conn *c)
{
    return c->data;
}

void proto_conn_set_data(proto_conn *c, void *data)
{
    c->data = data;
}

uv_loop_t *proto_conn_loop(const proto_conn *c)
{
    return c->loop;
}

const char *proto_conn_peer_name(const proto_conn *c)
{
    return c->peer_name;
}

int proto_addr_parse(const char *s, struct sockaddr_storage *out)
{
    if (!s) return -EINVAL;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) return -EINVAL;
    const char *p = colon + 1;
    if (!*p || strlen(p) > 5) return -EINVAL;
    unsigned port = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -EINVAL;
        port = port * 10 + (unsigned)(*p - '0');
    }
    if (port == 0 || port > 65535) return -EINVAL;
    char host[64];
    size_t hl = (size_t)(colon - s);
    memset(out, 0, sizeof(*out));
    if (s[0] == '[') {
        if (hl < 3 || s[hl - 1] != ']' || hl - 2 >= sizeof(host)) return -EINVAL;
        memcpy(host, s + 1, hl - 2);
        host[hl - 2] = 0;
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0 ? 0 : -EINVAL;
    }
    if (hl >= sizeof(host)) return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = 0;
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0 ? 0 : -EINVAL;
}
