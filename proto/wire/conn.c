/* proto_conn: incremental frame reader, write queue with back-pressure and sendfile regions,
 * idle timeout, optional mutual TLS through memory BIOs, on top of a libuv TCP or unix stream
 * (contract in conn.h). */
#include "proto/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cf/buf.h"
#include "cf/bufpool.h"
#include "cf/log.h"
#include "cf/uv_poll.h"

#define SCRATCH_LEN        (64u << 10) /* per-thread read buffer */
#define DIRECT_READ_MIN    4096u       /* frame rest at least this big: read straight into it */
#define FRAME_MIN_CAP      (16u << 10) /* first allocation for a partial frame */
#define POOLED_FRAME_MIN   (64u << 10) /* pooled_frames: frames this big come from the pool */
#define SENDFILE_SLICE     (1u << 20)  /* per writable event, so one upload cannot hog the loop */
#define DEF_HIGH_WATERMARK (4u << 20)
/* A queued descriptor counts as this many bytes towards back-pressure: a frame of ~40 bytes
 * holding an open file would otherwise let a reader that never reads pile up ~100,000 of them
 * (and the process's file limit) before the queue looks congested. */
#define PASS_FD_WEIGHT (64u << 10)
#define DEF_MAX_QUEUED (64u << 20)
/* Plaintext encrypted per step (4 records): every buffer of the TLS path stays below malloc's
 * mmap threshold and is reused, where larger ones cost page faults and TLB flushes per step. */
#define TLS_STEP         (64u << 10)
#define TLS_INFLIGHT_MAX (1u << 20) /* ciphertext handed to libuv before waiting */
/* File region bytes read per thread-pool job (below the peer's 128 KiB mmap threshold). */
#define TLS_FREAD (120u << 10)

typedef struct wq_item {
    struct wq_item *next;
    uv_write_t req; /* used while this item's buf is being written (only the head is) */
    uint8_t *buf;   /* header + body (+ copied payload) */
    size_t len;
    size_t bsent; /* TLS: bytes of buf already encrypted */
    bool buf_done;
    int fd;       /* file region after buf, -1 = none; owned (dup) */
    int pass_fd;  /* descriptor passed with buf (SCM_RIGHTS), -1 = none; owned */
    size_t psent; /* bytes of buf sent by sendmsg (pass_fd items) */
    uint64_t off;
    uint64_t flen;
    uint64_t fsent;
    uint64_t fread; /* TLS: bytes of the region read into c->fbuf so far */
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
    bool pooled_frames;                      /* opts.pooled_frames */
    bool frame_pooled;    /* c->frame is a cf_bufpool buffer of the whole frame */
    uint8_t *dispatching; /* the frame buffer on_frame runs on, until taken or released */
    bool dispatching_pooled;
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

    /* TLS (ssl NULL = plain). Ciphertext goes socket -> net_in -> SSL and SSL -> net_out ->
     * uv_write, so libuv does all the I/O. */
    SSL *ssl;
    BIO *net_in, *net_out; /* owned by ssl */
    bool tls_server, tls_ready, tls_sniffed;
    bool tls_failed; /* fatal TLS error: only the alert is still sent */
    /* file regions under TLS are read in the thread pool (a cold page must not stall the loop):
     * one read at a time into fbuf, then encrypted from there */
    uv_fs_t *fsreq;
    bool fs_busy;
    uint8_t *fbuf;
    size_t fbuf_len, fbuf_off;
    int tls_writes;      /* ciphertext uv_writes in flight */
    size_t tls_inflight; /* their bytes */
    char *peer_id;       /* identity of the verified peer certificate */
};

/* One ciphertext write: OpenSSL output, and the plaintext bytes of the queue it carries (counted
 * out of c->queued when written, so back-pressure follows the socket). */
typedef struct tls_wr {
    uv_write_t req; /* first: the callback gets it */
    proto_conn *c;
    size_t plain, len;
    bool pooled; /* TLS_WR_CAP bytes of data: back to the thread's pool when written */
    struct tls_wr *next_free;
    char data[];
} tls_wr;
/* Ciphertext of one TLS_STEP (records add 22 bytes per 16 KiB) and handshake flights fit. */
#define TLS_WR_CAP  (TLS_STEP + 8192)
#define TLS_WR_POOL 24 /* buffers kept per thread (1.7 MiB at most) */

static void pump(proto_conn *c);
static void pump_run_tls(proto_conn *c);
static void start_reading(proto_conn *c);
static void tls_input(proto_conn *c, const uint8_t *p, size_t n);
static void tls_drain(proto_conn *c);
static void tls_handshake(proto_conn *c);

/* One read buffer per thread, shared by all conns of the thread's loop(s): libuv calls alloc_cb,
 * read(2) and read_cb back to back for one stream, and on_frame never runs another conn's reader
 * synchronously (resume goes through a timer), so no two conns use it at once. Allocated on the
 * first read, freed with the thread's last conn. */
static _Thread_local uint8_t *tl_scratch;
static _Thread_local size_t tl_conns;
/* Reused ciphertext buffers: a fresh allocation per step costs page faults (the peer returns
 * freed memory to the kernel at once). */
static _Thread_local tls_wr *tl_wr_pool;
static _Thread_local unsigned tl_wr_pooled;
/* Bytes held in partial frames by all conns of the process, and the cap on them: a flood of
 * half-sent frames over many connections must not grow the process without bound. */
static _Atomic size_t g_input_held;
static _Atomic size_t g_input_budget = PROTO_CONN_DEF_INPUT_BUDGET;

static void conn_free(proto_conn *c)
{
    SSL_free(c->ssl);
    free(c->peer_id);
    free(c);
    if (--tl_conns == 0) {
        free(tl_scratch);
        tl_scratch = NULL;
        while (tl_wr_pool) {
            tls_wr *w = tl_wr_pool;
            tl_wr_pool = w->next_free;
            free(w);
        }
        tl_wr_pooled = 0;
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
    if (it->pass_fd >= 0) close(it->pass_fd);
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
    if (c->frame_pooled)
        cf_bufpool_put(c->frame);
    else
        free(c->frame);
    cf_buf_free(&c->backlog);
    free(c->kick);
    free(c->poll);
    free(c->fsreq);
    free(c->fbuf);
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
    if (c->pooled_frames && !c->frame && c->frame_len >= POOLED_FRAME_MIN) {
        /* a frame we asked for (pooled_frames): the whole of it at once, from the pool */
        size_t budget = g_input_budget, grow = c->frame_len;
        if (budget && atomic_fetch_add(&g_input_held, grow) + grow > budget) {
            g_input_held -= grow;
            return -ENOBUFS;
        }
        uint8_t *p = cf_bufpool_get(c->frame_len);
        if (!p) {
            g_input_held -= grow;
            return -ENOMEM;
        }
        if (!budget) g_input_held += grow;
        c->frame = p;
        c->frame_cap = c->frame_len; /* what may be read into it, not its size */
        c->frame_pooled = true;
        return 0;
    }
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
    bool pooled = c->frame_pooled;
    proto_frame_header h = c->cur;
    c->frame = NULL;
    c->frame_pooled = false;
    g_input_held -= c->frame_cap;
    c->frame_cap = c->frame_have = 0;
    c->in_frame = false;
    c->hdr_have = 0;
    c->dispatching = pooled ? owned : NULL; /* proto_conn_take_frame may take it */
    c->dispatching_pooled = pooled;
    c->cbs.on_frame(c, &h, f, f + h.body_len);
    if (pooled) {
        cf_bufpool_put(c->dispatching);
    } else {
        free(owned);
    }
    c->dispatching = NULL;
}

void *proto_conn_take_frame(proto_conn *c)
{
    void *p = c->dispatching;
    c->dispatching = NULL;
    return p;
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
    if (!c->ssl && c->in_frame && c->frame_len - c->frame_have >= DIRECT_READ_MIN) {
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
    if (nread == UV_EOF && c->ssl && c->tls_server && !c->tls_sniffed) {
        fail(c, 0, "closed before the TLS handshake"); /* a port probe: not a refusal */
        return;
    }
    if (nread == UV_EOF && c->ssl && !c->tls_ready) {
        char msg[192];
        snprintf(msg, sizeof(msg),
                 "TLS handshake with %s: connection closed by the other side (plain TCP there, "
                 "or it refused our certificate)",
                 c->peer_name);
        if (c->tls_server)
            cf_warn("%s", msg);
        else
            cf_debug("%s", msg);
        fail(c, -EPROTO, msg);
        return;
    }
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
    if (c->ssl) {
        tls_input(c, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
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
    /* then plaintext OpenSSL still holds from before the pause */
    if (!c->backlog.len && c->ssl && c->tls_ready) tls_drain(c);
    if (!c->backlog.len && !c->closing && !c->read_paused) start_reading(c);
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

/* Sends the head item's frame with its descriptor attached to the first bytes (libuv's own
 * handle passing takes uv handles only). Runs only with nothing else in flight, so the frame
 * stays in order. Returns 1 when sent, 0 when waiting for writability, negative errno. */
static int send_with_fd(proto_conn *c, wq_item *it)
{
    uv_os_fd_t sock;
    int r = uv_fileno(&c->io.h, &sock);
    if (r < 0) return r;
    while (it->psent < it->len) {
        struct iovec iov = {.iov_base = it->buf + it->psent, .iov_len = it->len - it->psent};
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(sizeof(int))];
        } ctl;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (it->psent == 0) {
            memset(&ctl, 0, sizeof(ctl));
            mh.msg_control = ctl.b;
            mh.msg_controllen = sizeof(ctl.b);
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &it->pass_fd, sizeof(int));
        }
        ssize_t w = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                r = wait_writable(c);
                return r < 0 ? r : 0;
            }
            return -errno;
        }
        it->psent += (size_t)w; /* the descriptor went with the first of these bytes */
    }
    touch(c);
    it->buf_done = true;
    account_sub(c, it->len + PASS_FD_WEIGHT);
    return 1;
}

/* Runs the queue until it must wait (a uv_write in flight, or the socket not writable). */
static void pump_run(proto_conn *c)
{
    while (!c->closing && c->connected && !c->write_busy && !c->poll_active && c->head) {
        wq_item *it = c->head;
        if (!it->buf_done && it->pass_fd >= 0) {
            int r = send_with_fd(c, it);
            if (r == 0) return;
            if (r < 0) {
                char msg[128];
                snprintf(msg, sizeof(msg), "sendmsg: %s", strerror(-r));
                fail(c, r, msg);
                return;
            }
            if (c->closing) return;
        }
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
    if (c->ssl)
        pump_run_tls(c);
    else
        pump_run(c);
    c->pumping = false;
}

/* Queues frame (taken), then a file region (fd >= 0) or with a descriptor to pass (pass_fd >= 0);
 * fd and pass_fd become the item's. */
static int enqueue(proto_conn *c, cf_buf *frame, int fd, uint64_t off, uint64_t flen, int pass_fd)
{
    wq_item *it = calloc(1, sizeof(*it));
    if (!it) return -ENOMEM;
    it->buf = cf_buf_steal(frame, &it->len);
    it->fd = fd;
    it->pass_fd = pass_fd;
    it->off = off;
    it->flen = flen;
    if (c->tail)
        c->tail->next = it;
    else
        c->head = it;
    c->tail = it;
    c->queued += it->len + (size_t)flen + (pass_fd >= 0 ? PASS_FD_WEIGHT : 0);
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
    r = enqueue(c, &b, -1, 0, 0, -1);
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
    if (r == 0 && (r = enqueue(c, &b, -1, 0, 0, -1)) < 0) cf_err_set(err, r, "out of memory");
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
    if (r == 0 && (r = enqueue(c, &b, dfd, offset, len, -1)) < 0) {
        cf_err_set(err, r, "out of memory");
        if (dfd >= 0) close(dfd);
    }
    cf_buf_free(&b);
    return r;
}

int proto_conn_send_fd(proto_conn *c, const proto_msg *m, int fd, cf_err *err)
{
    if (c->ssl || c->io.h.type != UV_NAMED_PIPE)
        return cf_err_set(err, -ENOTSUP, "descriptors pass over plain unix sockets only");
    cf_buf b = {0};
    int r = encode(c, m, 0, &b, err);
    if (r == 0 && (r = admit(c, b.len + PASS_FD_WEIGHT)) < 0)
        cf_err_set(err, r, "write queue full");
    int dfd = -1;
    if (r == 0) {
        dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dfd < 0) r = cf_err_set(err, -errno, "dup: %s", strerror(errno));
    }
    /* queued like any frame; pump_run sends it with the descriptor when it is the head */
    if (r == 0 && (r = enqueue(c, &b, -1, 0, 0, dfd)) < 0) {
        cf_err_set(err, r, "out of memory");
        close(dfd);
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

/* ---- TLS ---- */

/* The reason of the last OpenSSL error of this thread (queue cleared), or NULL. */
static unsigned long tls_last_error(void)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0) last = e;
    return last;
}

static tls_wr *wr_get(size_t n)
{
    if (n > TLS_WR_CAP) {
        tls_wr *w = malloc(sizeof(*w) + n);
        if (w) w->pooled = false;
        return w;
    }
    tls_wr *w = tl_wr_pool;
    if (w) {
        tl_wr_pool = w->next_free;
        tl_wr_pooled--;
        return w;
    }
    if ((w = malloc(sizeof(*w) + TLS_WR_CAP))) w->pooled = true;
    return w;
}

static void wr_put(tls_wr *w)
{
    if (!w->pooled || tl_wr_pooled >= TLS_WR_POOL) {
        free(w);
        return;
    }
    w->next_free = tl_wr_pool;
    tl_wr_pool = w;
    tl_wr_pooled++;
}

static void on_tls_write(uv_write_t *req, int status)
{
    tls_wr *w = (tls_wr *)req;
    proto_conn *c = w->c;
    size_t plain = w->plain;
    c->tls_writes--;
    c->tls_inflight -= w->len;
    wr_put(w);
    if (c->closing) return;
    if (status < 0) {
        fail(c, status, uv_strerror(status));
        return;
    }
    touch(c);
    if (plain) account_sub(c, plain);
    if (!c->closing) pump(c);
}

/* Hands what OpenSSL wrote to net_out (handshake messages, records carrying `plain` queued
 * bytes, alerts) to libuv. Returns 0 or a negative errno (the conn is then failing). */
static int tls_flush(proto_conn *c, size_t plain)
{
    size_t n = BIO_ctrl_pending(c->net_out);
    if (n == 0) {
        if (plain) account_sub(c, plain);
        return 0;
    }
    if (n > INT_MAX) n = INT_MAX; /* cannot happen: at most one queue item at a time */
    tls_wr *w = wr_get(n);
    if (!w) {
        fail(c, -ENOMEM, "out of memory for TLS output");
        return -ENOMEM;
    }
    int got = BIO_read(c->net_out, w->data, (int)n);
    w->c = c;
    w->plain = plain;
    w->len = got > 0 ? (size_t)got : 0;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int r = uv_write(&w->req, &c->io.s, &b, 1, on_tls_write);
    if (r < 0) {
        wr_put(w);
        fail(c, r, uv_strerror(r));
        return r;
    }
    c->tls_writes++;
    c->tls_inflight += w->len;
    return 0;
}

/* A fatal TLS error: sends the alert OpenSSL queued (so the other side learns why), then closes
 * with status and msg. Queued frames are dropped. */
static void tls_fail(proto_conn *c, int status, const char *msg)
{
    if (c->closing) return;
    /* a refused client is worth a warning here; for our own outgoing conns the owner logs the
     * reason from on_close */
    if (c->tls_server)
        cf_warn("%s", msg); /* msg names the peer */
    else
        cf_debug("%s", msg);
    /* queued frames are dropped, except a head whose fd a thread-pool read still uses: it is
     * freed with the conn */
    wq_item *keep = c->fs_busy ? c->head : NULL;
    for (wq_item *it = keep ? keep->next : c->head, *next; it; it = next) {
        next = it->next;
        item_free(it);
    }
    c->head = c->tail = keep;
    if (keep) keep->next = NULL;
    c->tls_failed = true;
    c->queued = 0;
    if (c->reading) uv_read_stop(&c->io.s);
    c->reading = false;
    c->read_paused = true;
    c->flush_close = true;
    set_reason(c, status, msg);
    if (tls_flush(c, 0) < 0) return;
    pump(c);
}

/* Turns the error of an SSL call into a reason a user can act on, then tls_fail. */
static void tls_error(proto_conn *c, const char *during)
{
    unsigned long e = tls_last_error();
    int reason = ERR_GET_REASON(e);
    char msg[256];
    int status = -EPROTO;
    if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        status = -EACCES;
        snprintf(msg, sizeof(msg), "TLS %s with %s: no client certificate (this port requires one)",
                 during, c->peer_name);
    } else if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        status = -EACCES;
        snprintf(msg, sizeof(msg), "TLS %s with %s: its certificate is not accepted: %s", during,
                 c->peer_name, X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
    } else {
        const char *why = e ? ERR_reason_error_string(e) : NULL;
        if (!why && !e) why = "connection error";
        char hex[64];
        if (!why) {
            ERR_error_string_n(e, hex, sizeof(hex));
            why = hex;
        }
        /* alerts from the other side: "tlsv1 alert unknown ca", "tlsv13 alert certificate
         * required"... mean it refused us */
        bool alert = strstr(why, "alert") != NULL;
        if (alert) status = -EACCES;
        snprintf(msg, sizeof(msg), "TLS %s with %s: %s%s", during, c->peer_name, why,
                 alert ? " (the other side refused us)" : "");
    }
    tls_fail(c, status, msg);
}

static void tls_handshake(proto_conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            tls_flush(c, 0);
        else
            tls_error(c, "handshake");
        return;
    }
    if (tls_flush(c, 0) < 0) return;
    X509 *x = SSL_get0_peer_certificate(c->ssl);
    char id[PROTO_MAX_ID_LEN + 1];
    if (!x || proto_tls_cert_identity(x, id, sizeof(id)) < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "TLS handshake with %s: its certificate names no usable identity", c->peer_name);
        tls_fail(c, -EACCES, msg);
        return;
    }
    if (!(c->peer_id = strdup(id))) {
        fail(c, -ENOMEM, "out of memory");
        return;
    }
    c->tls_ready = true;
    if (!c->tls_server && c->cbs.on_connect) {
        c->cbs.on_connect(c);
        if (c->closing) return;
    }
    pump(c);
}

/* Decrypts what OpenSSL holds into frames, until it needs more ciphertext, reading is paused
 * or the conn closes. Large frame rests are decrypted straight into the frame buffer. */
static void tls_drain(proto_conn *c)
{
    while (!c->closing && !c->read_paused) {
        uint8_t *dst = NULL;
        size_t cap = 0;
        bool direct = false;
        if (c->in_frame && c->frame_len - c->frame_have >= DIRECT_READ_MIN) {
            size_t rest = c->frame_len - c->frame_have;
            if (frame_reserve(c, rest < SCRATCH_LEN ? rest : SCRATCH_LEN) == 0) {
                dst = c->frame + c->frame_have;
                cap = c->frame_cap - c->frame_have;
                direct = true;
            }
        }
        if (!direct) {
            if (!tl_scratch && !(tl_scratch = malloc(SCRATCH_LEN))) {
                fail(c, -ENOMEM, "out of memory for a read buffer");
                return;
            }
            dst = tl_scratch;
            cap = SCRATCH_LEN;
        }
        ERR_clear_error();
        int n = SSL_read(c->ssl, dst, cap > INT_MAX ? INT_MAX : (int)cap);
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ) break;
            if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: as a clean EOF */
                if (c->in_frame || c->hdr_have)
                    fail(c, -EPIPE, "connection closed inside a frame");
                else
                    fail(c, 0, "closed by peer");
                return;
            }
            tls_error(c, "connection");
            return;
        }
        if (direct) {
            c->frame_have += (size_t)n;
            if (c->frame_have == c->frame_len) dispatch(c, c->frame);
        } else {
            feed(c, dst, (size_t)n);
        }
    }
    /* reading may make OpenSSL answer (key updates) */
    if (!c->closing && BIO_ctrl_pending(c->net_out)) tls_flush(c, 0);
}

static void tls_input(proto_conn *c, const uint8_t *p, size_t n)
{
    if (c->tls_server && !c->tls_sniffed) {
        c->tls_sniffed = true;
        if (p[0] != 0x16) { /* not a TLS handshake record: a plaintext client */
            char msg[160];
            snprintf(msg, sizeof(msg), "plaintext connection refused: %s must use TLS on this port",
                     c->peer_name);
            cf_warn("%s", msg);
            fail(c, -EPROTO, msg);
            return;
        }
    }
    if (BIO_write(c->net_in, p, (int)n) != (int)n) {
        fail(c, -ENOMEM, "out of memory for TLS input");
        return;
    }
    if (!c->tls_ready) {
        tls_handshake(c);
        if (!c->tls_ready || c->closing) return;
    }
    tls_drain(c);
}

static void on_file_read(uv_fs_t *req)
{
    proto_conn *c = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    c->fs_busy = false;
    c->open_handles--; /* the read held the conn */
    if (c->closing) {
        if (c->open_handles == 0) finish(c);
        return;
    }
    if (c->tls_failed) {
        pump(c);
        return;
    }
    if (r <= 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "reading a file region: %s",
                 r == 0 ? "file shorter than announced" : uv_strerror((int)r));
        fail(c, -EIO, msg);
        return;
    }
    c->head->fread += (uint64_t)r;
    c->fbuf_len = (size_t)r;
    c->fbuf_off = 0;
    pump(c);
}

/* Starts the thread-pool read of the head item's next file bytes into c->fbuf. */
static int tls_read_file(proto_conn *c, wq_item *it)
{
    if (!c->fsreq && !(c->fsreq = malloc(sizeof(*c->fsreq)))) return -ENOMEM;
    if (!c->fbuf && !(c->fbuf = malloc(TLS_FREAD))) return -ENOMEM;
    uint64_t left = it->flen - it->fread;
    uv_buf_t b = uv_buf_init((char *)c->fbuf, left < TLS_FREAD ? (unsigned)left : TLS_FREAD);
    c->fsreq->data = c;
    int r =
        uv_fs_read(c->loop, c->fsreq, it->fd, &b, 1, (int64_t)(it->off + it->fread), on_file_read);
    if (r < 0) return r;
    c->fs_busy = true;
    c->open_handles++; /* the conn is freed only after the read's callback */
    return 0;
}

/* The TLS writer: encrypts queue items (frames and file regions, TLS_STEP bytes at a time) while
 * less than TLS_INFLIGHT_MAX of ciphertext is waiting in libuv. */
static void pump_run_tls(proto_conn *c)
{
    while (!c->closing && !c->tls_failed && c->tls_ready && c->head &&
           c->tls_inflight < TLS_INFLIGHT_MAX) {
        wq_item *it = c->head;
        const void *src;
        size_t n;
        if (!it->buf_done) {
            n = it->len - it->bsent < TLS_STEP ? it->len - it->bsent : TLS_STEP;
            src = it->buf + it->bsent;
            it->bsent += n;
            it->buf_done = it->bsent == it->len;
        } else if (it->fd >= 0 && it->fsent < it->flen) {
            if (c->fbuf_off == c->fbuf_len) { /* need more bytes: read them, come back */
                if (c->fs_busy) return;
                int r = tls_read_file(c, it);
                if (r < 0) {
                    char msg[128];
                    snprintf(msg, sizeof(msg), "reading a file region: %s", uv_strerror(r));
                    fail(c, r, msg);
                }
                return;
            }
            n = c->fbuf_len - c->fbuf_off < TLS_STEP ? c->fbuf_len - c->fbuf_off : TLS_STEP;
            src = c->fbuf + c->fbuf_off;
            c->fbuf_off += n;
            it->fsent += n;
        } else {
            pop_head(c);
            /* an idle conn keeps no file buffer */
            if (c->fbuf && (!c->head || c->head->fd < 0)) {
                free(c->fbuf);
                c->fbuf = NULL;
                c->fbuf_len = c->fbuf_off = 0;
            }
            continue;
        }
        ERR_clear_error();
        if (n > 0 && SSL_write(c->ssl, src, (int)n) != (int)n) {
            tls_error(c, "connection");
            return;
        }
        if (tls_flush(c, n) < 0) return;
    }
    if (!c->closing && c->flush_close && (!c->head || c->tls_failed) && c->tls_writes == 0 &&
        !c->fs_busy)
        proto_conn_close(c, c->close_status, c->reason);
}

/* ---- setup ---- */

/* server: the TLS role when opts->tls is set (accept: server, connect: client). */
static proto_conn *conn_alloc(uv_loop_t *loop, const proto_conn_opts *opts,
                              const proto_conn_cbs *cbs, void *data, bool server)
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
    c->pooled_frames = o.pooled_frames;
    c->high = o.high_watermark ? o.high_watermark : DEF_HIGH_WATERMARK;
    c->low = o.low_watermark && o.low_watermark < c->high ? o.low_watermark : c->high / 4;
    c->max_queued = o.max_queued ? o.max_queued : DEF_MAX_QUEUED;
    snprintf(c->peer_name, sizeof(c->peer_name), "?");
    if (o.tls) {
        c->ssl = SSL_new(proto_tls_ssl_ctx(o.tls));
        c->net_in = BIO_new(BIO_s_mem());
        c->net_out = BIO_new(BIO_s_mem());
        if (!c->ssl || !c->net_in || !c->net_out) {
            BIO_free(c->net_in);
            BIO_free(c->net_out);
            c->net_in = c->net_out = NULL;
            conn_free(c);
            return NULL;
        }
        /* an empty memory BIO means "try again later", not EOF */
        BIO_set_mem_eof_return(c->net_in, -1);
        BIO_set_mem_eof_return(c->net_out, -1);
        SSL_set_bio(c->ssl, c->net_in, c->net_out);
        c->tls_server = server;
        if (server)
            SSL_set_accept_state(c->ssl);
        else
            SSL_set_connect_state(c->ssl);
    }
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
    if (c->ssl && !c->tls_server && !c->closing) tls_handshake(c); /* ClientHello */
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
    if (c->closing || c->ssl) return; /* TLS: on_connect once the handshake is done */
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
    proto_conn *c = conn_alloc(loop, opts, cbs, data, false);
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
    r = opts && opts->source ? uv_tcp_bind(&c->io.tcp, opts->source, 0) : 0;
    if (r == 0) r = uv_tcp_connect(req, &c->io.tcp, addr, on_connect);
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
    proto_conn *c = conn_alloc(loop, opts, cbs, data, false);
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
    proto_conn *c = conn_alloc(server->loop, opts, cbs, data, true);
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
    proto_conn *c = conn_alloc(loop, opts, cbs, data, opts && opts->tls_server);
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

const char *proto_conn_peer_identity(const proto_conn *c)
{
    return c->tls_ready ? c->peer_id : NULL;
}

bool proto_conn_is_tls(const proto_conn *c)
{
    return c->ssl != NULL;
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
