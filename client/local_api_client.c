/* Blocking local-API client (client/include/client/local_api_client.h). */
#include "client/local_api_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cf/buf.h"
#include "cf/file_io.h"
#include "proto/error_code.h"
#include "proto/frame.h"
#include "proto/handshake.h"
#include "proto/msg.h"

#define DEFAULT_IDLE_TIMEOUT_MS 300000
#define DEFAULT_MAX_PAYLOAD     (4u << 20)

struct client_local {
    int fd;
    int idle_timeout_ms;
    uint32_t max_payload; /* what we accept (announced in HELLO) */
    uint64_t next_req;
    uint32_t last_peer_code;
    bool broken;        /* a reply was cut or invalid: the stream is out of sync */
    bool unverified_ok; /* LOCAL_READ "uv" (client_local_opts) */
    bool accept_fd;     /* LOCAL_READ "fd" (client_local_opts) */
    int rx_fd;          /* descriptor that came with the last frame (SCM_RIGHTS), -1 = none */
    char node_id[64];
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    uint8_t *body;    /* PROTO_MAX_BODY */
    uint8_t *payload; /* max_payload */
};

/* ---- raw I/O ---------------------------------------------------------------------------- */

static int wait_fd(client_local *c, short events, cf_err *err)
{
    struct pollfd p = {.fd = c->fd, .events = events};
    for (;;) {
        int r = poll(&p, 1, c->idle_timeout_ms);
        if (r > 0) return 0;
        if (r == 0)
            return cf_err_set(err, -ETIMEDOUT, "peer daemon at %s sent nothing for %d ms (stalled)",
                              c->path, c->idle_timeout_ms);
        if (errno != EINTR) return cf_err_set(err, -errno, "poll: %s", strerror(errno));
    }
}

/* A descriptor that came with the bytes just read: kept for the LOCAL_FILE it belongs to (the
 * kernel delivers it with that frame's first bytes, never merged into earlier data); one we
 * did not ask for, or a second one, is closed. */
static void take_fds(client_local *c, struct msghdr *mh)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (c->accept_fd && c->rx_fd < 0)
                c->rx_fd = fd;
            else
                close(fd);
        }
    }
}

static int read_full(client_local *c, void *buf, size_t len, cf_err *err)
{
    uint8_t *p = buf;
    while (len) {
        int r = wait_fd(c, POLLIN, err);
        if (r) return r;
        struct iovec iov = {.iov_base = p, .iov_len = len};
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(4 * sizeof(int))];
        } ctl;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        mh.msg_control = ctl.b;
        mh.msg_controllen = sizeof(ctl.b);
        ssize_t n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
        if (n > 0 && mh.msg_controllen > 0) take_fds(c, &mh);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n == 0) {
            return cf_err_set(err, -ECONNRESET, "peer daemon at %s closed the connection", c->path);
        } else if (errno != EINTR && errno != EAGAIN) {
            return cf_err_set(err, -errno, "reading from peer daemon at %s: %s", c->path,
                              strerror(errno));
        }
    }
    return 0;
}

static int write_full(client_local *c, const void *buf, size_t len, cf_err *err)
{
    const uint8_t *p = buf;
    while (len) {
        int r = wait_fd(c, POLLOUT, err);
        if (r) return r;
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
            return cf_err_set(err, -errno, "writing to peer daemon at %s: %s", c->path,
                              strerror(errno));
        }
    }
    return 0;
}

static int send_msg(client_local *c, const proto_msg *m, cf_err *err)
{
    cf_buf b = {0};
    int r = proto_msg_encode_frame(m, 0, &b, err);
    if (r == 0) r = write_full(c, b.data, b.len, err);
    cf_buf_free(&b);
    if (r) c->broken = true;
    return r;
}

/* One frame: header validated, body decoded into *m (caller frees), payload in c->payload.
 * Returns 0 or a negative errno; on error the connection is marked broken. */
static int recv_msg(client_local *c, proto_msg *m, uint32_t *payload_len, cf_err *err)
{
    uint8_t hb[PROTO_FRAME_HEADER_LEN];
    proto_frame_header h = {0};
    int r = read_full(c, hb, sizeof(hb), err);
    if (r == 0) r = proto_frame_header_decode(hb, c->max_payload, &h, err);
    if (r == 0) r = read_full(c, c->body, h.body_len, err);
    if (r == 0 && h.payload_len) r = read_full(c, c->payload, h.payload_len, err);
    if (r == 0) {
        r = proto_msg_decode(h.type, c->body, h.body_len, h.payload_len, m, err);
        if (r == -ENOTSUP) r = cf_err_set(err, -EBADMSG, "unknown message type 0x%02x", h.type);
    }
    if (c->rx_fd >= 0 && (r || m->type != PROTO_MSG_LOCAL_FILE)) {
        close(c->rx_fd); /* came with a frame that carries none */
        c->rx_fd = -1;
    }
    if (r) {
        c->broken = true;
        if (r == -EBADMSG || r == -EPROTO || r == -EMSGSIZE)
            cf_err_wrap(err, r, "invalid reply from peer daemon at %s", c->path);
        return r;
    }
    *payload_len = h.payload_len;
    return 0;
}

static int peer_error(client_local *c, const proto_error *e, cf_err *err)
{
    c->last_peer_code = e->code;
    return cf_err_set(err, proto_error_to_errno(e->code), "peer: %s (%s)",
                      e->message[0] ? e->message : "request refused",
                      proto_error_code_name(e->code));
}

static int unexpected(client_local *c, const proto_msg *m, const char *wanted, cf_err *err)
{
    c->broken = true;
    return cf_err_set(err, -EBADMSG, "invalid reply from peer daemon at %s: got %s, expected %s",
                      c->path, proto_msg_type_name(m->type), wanted);
}

/* Receives the answer to request `req`: an ERROR for it, or a message of type `want`.
 * An ERROR without request id (r = 0) is a connection-level refusal and also ends the wait. */
static int recv_answer(client_local *c, uint64_t req, uint8_t want, proto_msg *m, uint32_t *plen,
                       cf_err *err)
{
    int r = recv_msg(c, m, plen, err);
    if (r) return r;
    if (m->type == PROTO_MSG_ERROR) {
        if (m->u.error.req_id != req && m->u.error.req_id != 0) {
            r = cf_err_set(err, -EBADMSG,
                           "invalid reply from peer daemon at %s: ERROR for request %llu, "
                           "expected %llu",
                           c->path, (unsigned long long)m->u.error.req_id, (unsigned long long)req);
            c->broken = true;
        } else {
            r = peer_error(c, &m->u.error, err);
            if (m->u.error.req_id == 0) c->broken = true;
        }
        proto_msg_free(m);
        return r;
    }
    /* a read we let take a descriptor may be answered with the file */
    bool file_ok = want == PROTO_MSG_LOCAL_DATA && c->accept_fd && m->type == PROTO_MSG_LOCAL_FILE;
    if (m->type != want && !file_ok) {
        r = unexpected(c, m, proto_msg_type_name(want), err);
        proto_msg_free(m);
        return r;
    }
    return 0;
}

static int check_req(client_local *c, proto_msg *m, uint64_t got, uint64_t req, cf_err *err)
{
    if (got == req) return 0;
    c->broken = true;
    int r = cf_err_set(
        err, -EBADMSG, "invalid reply from peer daemon at %s: %s for request %llu, expected %llu",
        c->path, proto_msg_type_name(m->type), (unsigned long long)got, (unsigned long long)req);
    proto_msg_free(m);
    return r;
}

static int usable(client_local *c, cf_err *err)
{
    if (!c) return cf_err_set(err, -EINVAL, "no client");
    if (c->broken)
        return cf_err_set(err, -ENOTCONN,
                          "connection to peer daemon at %s is out of sync after an error; "
                          "reconnect",
                          c->path);
    c->last_peer_code = 0;
    return 0;
}

/* ---- connect + handshake ---------------------------------------------------------------- */

static client_local *client_alloc(const char *name, const client_local_opts *opts, cf_err *err)
{
    client_local *c = calloc(1, sizeof(*c));
    if (!c) {
        cf_err_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    c->fd = -1;
    c->rx_fd = -1;
    snprintf(c->path, sizeof(c->path), "%s", name);
    c->idle_timeout_ms =
        opts && opts->idle_timeout_ms > 0 ? opts->idle_timeout_ms : DEFAULT_IDLE_TIMEOUT_MS;
    c->max_payload = opts && opts->max_payload ? opts->max_payload : DEFAULT_MAX_PAYLOAD;
    c->unverified_ok = opts && opts->unverified_ok;
    c->accept_fd = opts && opts->accept_fd;
    if (c->max_payload > PROTO_MAX_PAYLOAD) c->max_payload = PROTO_MAX_PAYLOAD;
    if (opts && opts->node_id)
        snprintf(c->node_id, sizeof(c->node_id), "%s", opts->node_id);
    else
        snprintf(c->node_id, sizeof(c->node_id), "chunkfly-client-%ld", (long)getpid());
    c->next_req = 1;
    c->body = malloc(PROTO_MAX_BODY);
    c->payload = malloc(c->max_payload);
    if (!c->body || !c->payload) {
        client_local_close(c);
        cf_err_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    return c;
}

/* HELLO as a local client, the daemon's HELLO back (checked: versions, role peer). */
static int handshake(client_local *c, cf_err *err)
{
    proto_msg hello = {.type = PROTO_MSG_HELLO};
    proto_hello_init(&hello.u.hello, c->node_id, PROTO_ROLE_LOCAL_CLIENT, 0, c->max_payload);
    int r = send_msg(c, &hello, err);
    if (r) return r;
    proto_msg m;
    uint32_t plen;
    r = recv_msg(c, &m, &plen, err);
    if (r) return r;
    if (m.type == PROTO_MSG_ERROR) {
        r = peer_error(c, &m.u.error, err);
        cf_err_wrap(err, r, "peer daemon at %s refused the handshake", c->path);
        proto_msg_free(&m);
        return r;
    }
    if (m.type != PROTO_MSG_HELLO) {
        r = unexpected(c, &m, "HELLO", err);
        proto_msg_free(&m);
        return r;
    }
    r = proto_handshake_check(&hello.u.hello, &m.u.hello, NULL, NULL, err);
    if (r == 0 && m.u.hello.role != PROTO_ROLE_PEER)
        r = cf_err_set(err, -EBADMSG, "%s answers as role %u, not as a peer daemon", c->path,
                       m.u.hello.role);
    proto_msg_free(&m);
    if (r) cf_err_wrap(err, r, "handshake with %s", c->path);
    return r;
}

int client_local_connect(const char *socket_path, const client_local_opts *opts, client_local **out,
                         cf_err *err)
{
    *out = NULL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!socket_path || !*socket_path) return cf_err_set(err, -EINVAL, "empty socket path");
    if (strlen(socket_path) >= sizeof(sa.sun_path))
        return cf_err_set(err, -ENAMETOOLONG, "socket path too long (max %zu bytes): %s",
                          sizeof(sa.sun_path) - 1, socket_path);
    strcpy(sa.sun_path, socket_path);
    client_local *c = client_alloc(socket_path, opts, err);
    if (!c) return -ENOMEM;
    int r;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        r = cf_err_set(err, -errno, "socket: %s", strerror(errno));
    } else if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        r = cf_err_set(err, -errno, "cannot connect to peer daemon at %s: %s", socket_path,
                       strerror(errno));
    } else {
        r = handshake(c, err);
    }
    if (r) {
        client_local_close(c);
        return r;
    }
    *out = c;
    return 0;
}

int client_local_open_fd(int fd, const char *name, const client_local_opts *opts,
                         client_local **out, cf_err *err)
{
    *out = NULL;
    client_local *c = client_alloc(name && *name ? name : "fd", opts, err);
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->fd = fd;
    int r = handshake(c, err);
    if (r) {
        client_local_close(c);
        return r;
    }
    *out = c;
    return 0;
}

void client_local_close(client_local *c)
{
    if (!c) return;
    if (c->fd >= 0) close(c->fd);
    if (c->rx_fd >= 0) close(c->rx_fd);
    free(c->body);
    free(c->payload);
    free(c);
}

uint32_t client_local_last_peer_code(const client_local *c)
{
    return c ? c->last_peer_code : 0;
}

/* ---- requests ---------------------------------------------------------------------------- */

static int check_task(const char *task_id, cf_err *err)
{
    if (!task_id || proto_task_id_check(task_id) != 0)
        return cf_err_set(err, -EINVAL, "invalid blob digest '%s' (want sha256:<64 hex>)",
                          task_id ? task_id : "(null)");
    return 0;
}

/* A LOCAL_FILE answer without a file_fn: the file's bytes go to fn in blocks. */
static int file_to_fn(client_local *c, client_data_fn fn, void *ctx, uint64_t at, int fd,
                      uint64_t foff, uint64_t len)
{
    while (len) {
        size_t n = len < c->max_payload ? (size_t)len : c->max_payload;
        int r = cf_pread_full(fd, c->payload, n, foff);
        if (r) return r == -ENODATA ? -EIO : r;
        if ((r = fn(ctx, at, c->payload, n))) return r;
        at += n;
        foff += n;
        len -= n;
    }
    return 0;
}

int client_local_read_ex(client_local *c, const char *task_id, const char *origin,
                         const char *credentials, uint64_t offset, uint64_t length,
                         client_data_fn fn, client_file_fn file_fn, void *ctx, uint64_t *delivered,
                         cf_err *err)
{
    uint64_t got = 0;
    if (delivered) *delivered = 0;
    int r = usable(c, err);
    if (r || (r = check_task(task_id, err))) return r;
    if (length == 0) return 0;
    if (offset > UINT64_MAX - length)
        return cf_err_set(err, -ERANGE, "read range %llu+%llu overflows",
                          (unsigned long long)offset, (unsigned long long)length);
    uint64_t end = offset + length;
    uint64_t req = c->next_req++;
    proto_msg q = {.type = PROTO_MSG_LOCAL_READ};
    q.u.local_read = (proto_local_read){.req_id = req,
                                        .task_id = task_id,
                                        .origin = origin ? origin : "",
                                        .credentials = credentials,
                                        .offset = offset,
                                        .length = length,
                                        .unverified_ok = c->unverified_ok,
                                        .accept_fd = c->accept_fd};
    r = send_msg(c, &q, err);
    if (r) return r;
    for (;;) {
        proto_msg m;
        uint32_t plen;
        r = recv_answer(c, req, PROTO_MSG_LOCAL_DATA, &m, &plen, err);
        if (r) break;
        if (m.type == PROTO_MSG_LOCAL_FILE) {
            proto_local_file f = m.u.local_file;
            if ((r = check_req(c, &m, f.req_id, req, err))) break;
            proto_msg_free(&m);
            int fd = c->rx_fd;
            c->rx_fd = -1;
            if (fd < 0 || f.offset != offset + got || f.length != end - f.offset) {
                if (fd >= 0) close(fd);
                c->broken = true;
                r = cf_err_set(err, -EBADMSG,
                               "invalid reply from peer daemon at %s: a file for %llu bytes at "
                               "blob offset %llu%s, expected the rest of [%llu, %llu) from %llu",
                               c->path, (unsigned long long)f.length, (unsigned long long)f.offset,
                               fd < 0 ? " without its descriptor" : "", (unsigned long long)offset,
                               (unsigned long long)end, (unsigned long long)(offset + got));
                break;
            }
            /* the read ends here: the connection stays in step whatever the copy does */
            r = file_fn ? file_fn(ctx, f.offset, fd, f.file_offset, f.length)
                        : file_to_fn(c, fn, ctx, f.offset, fd, f.file_offset, f.length);
            close(fd);
            if (r == 0) got += f.length;
            break;
        }
        if ((r = check_req(c, &m, m.u.local_data.req_id, req, err))) break;
        uint64_t at = m.u.local_data.offset;
        bool last = m.u.local_data.last;
        proto_msg_free(&m);
        if (at != offset + got || plen > end - at) {
            c->broken = true;
            r = cf_err_set(err, -EBADMSG,
                           "invalid reply from peer daemon at %s: %u bytes at blob offset %llu, "
                           "expected data at %llu within [%llu, %llu)",
                           c->path, plen, (unsigned long long)at,
                           (unsigned long long)(offset + got), (unsigned long long)offset,
                           (unsigned long long)end);
            break;
        }
        if (plen) {
            r = fn(ctx, at, c->payload, plen);
            if (r) {
                /* the rest of the answer is still coming: this connection is unusable */
                c->broken = true;
                break;
            }
            got += plen;
        }
        if (last) {
            if (offset + got != end) {
                c->broken = true;
                r = cf_err_set(err, -EBADMSG,
                               "peer daemon at %s ended the read after %llu of %llu bytes", c->path,
                               (unsigned long long)got, (unsigned long long)length);
            }
            break;
        }
        if (offset + got == end) {
            /* everything arrived but no frame said "end": the protocol requires it */
            c->broken = true;
            r = cf_err_set(err, -EBADMSG,
                           "invalid reply from peer daemon at %s: all %llu bytes arrived but "
                           "no frame was marked last",
                           c->path, (unsigned long long)length);
            break;
        }
    }
    if (delivered) *delivered = got;
    return r;
}

int client_local_read(client_local *c, const char *task_id, const char *origin,
                      const char *credentials, uint64_t offset, uint64_t length, client_data_fn fn,
                      void *ctx, uint64_t *delivered, cf_err *err)
{
    return client_local_read_ex(c, task_id, origin, credentials, offset, length, fn, NULL, ctx,
                                delivered, err);
}

struct fd_sink {
    int fd;
    uint64_t base; /* blob offset that maps to fd_offset */
    uint64_t fd_offset;
};

static int fd_write(void *ctx, uint64_t offset, const void *data, size_t len)
{
    struct fd_sink *s = ctx;
    const uint8_t *p = data;
    uint64_t pos = s->fd_offset + (offset - s->base);
    while (len) {
        ssize_t n = pwrite(s->fd, p, len, (off_t)pos);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
        pos += (uint64_t)n;
    }
    return 0;
}

static int fd_copy(void *ctx, uint64_t offset, int in, uint64_t in_off, uint64_t len)
{
    struct fd_sink *s = ctx;
    return cf_copy_range(in, in_off, s->fd, s->fd_offset + (offset - s->base), len);
}

int client_local_read_fd(client_local *c, const char *task_id, const char *origin,
                         const char *credentials, uint64_t offset, uint64_t length, int fd,
                         uint64_t fd_offset, uint64_t *delivered, cf_err *err)
{
    struct fd_sink s = {.fd = fd, .base = offset, .fd_offset = fd_offset};
    int r = client_local_read_ex(c, task_id, origin, credentials, offset, length, fd_write, fd_copy,
                                 &s, delivered, err);
    if (r < 0 && err && err->code != r) cf_err_set(err, r, "writing read data: %s", strerror(-r));
    return r;
}

int client_local_prefetch(client_local *c, const char *task_id, const char *origin,
                          const char *credentials, uint64_t offset, uint64_t length, cf_err *err)
{
    int r = usable(c, err);
    if (r || (r = check_task(task_id, err))) return r;
    uint64_t req = c->next_req++;
    proto_msg q = {.type = PROTO_MSG_LOCAL_PREFETCH};
    q.u.local_prefetch = (proto_local_prefetch){.req_id = req,
                                                .task_id = task_id,
                                                .origin = origin ? origin : "",
                                                .credentials = credentials,
                                                .offset = offset,
                                                .length = length};
    if ((r = send_msg(c, &q, err))) return r;
    proto_msg m;
    uint32_t plen;
    if ((r = recv_answer(c, req, PROTO_MSG_LOCAL_OK, &m, &plen, err))) return r;
    r = check_req(c, &m, m.u.local_ok.req_id, req, err);
    if (r == 0) proto_msg_free(&m);
    return r;
}

/* Sends a request about one task (PIN, UNPIN, STAT) and receives its answer of type `answer`
 * into *m (the caller frees it on 0); *req is the request id. */
static int task_exchange(client_local *c, uint8_t type, const char *task_id, uint8_t answer,
                         uint64_t *req, proto_msg *m, cf_err *err)
{
    int r = usable(c, err);
    if (r || (r = check_task(task_id, err))) return r;
    *req = c->next_req++;
    proto_msg q = {.type = type};
    q.u.local_task = (proto_local_task){.req_id = *req, .task_id = task_id};
    if ((r = send_msg(c, &q, err))) return r;
    uint32_t plen;
    return recv_answer(c, *req, answer, m, &plen, err);
}

static int simple_task_req(client_local *c, uint8_t type, const char *task_id, cf_err *err)
{
    uint64_t req;
    proto_msg m;
    int r = task_exchange(c, type, task_id, PROTO_MSG_LOCAL_OK, &req, &m, err);
    if (r) return r;
    r = check_req(c, &m, m.u.local_ok.req_id, req, err);
    if (r == 0) proto_msg_free(&m);
    return r;
}

int client_local_pin(client_local *c, const char *task_id, cf_err *err)
{
    return simple_task_req(c, PROTO_MSG_LOCAL_PIN, task_id, err);
}

int client_local_unpin(client_local *c, const char *task_id, cf_err *err)
{
    return simple_task_req(c, PROTO_MSG_LOCAL_UNPIN, task_id, err);
}

/* Copies a decoded entry after checking what the decoder cannot know (cross-field rules). */
static int copy_entry(client_local *c, const proto_local_entry *e, client_entry *out, cf_err *err)
{
    bool ok = proto_task_id_check(e->task_id) == 0 && e->pieces_have <= e->piece_count;
    if (ok && e->piece_size) {
        uint64_t pc = (e->content_length + e->piece_size - 1) / e->piece_size;
        ok = pc == e->piece_count;
    } else if (ok) {
        ok = e->piece_count == 0; /* length not known yet */
    }
    if (ok && e->complete) ok = e->pieces_have == e->piece_count;
    if (!ok) {
        c->broken = true;
        return cf_err_set(err, -EBADMSG,
                          "invalid reply from peer daemon at %s: inconsistent entry for %s "
                          "(length %llu, piece size %u, %u/%u pieces%s)",
                          c->path, e->task_id, (unsigned long long)e->content_length, e->piece_size,
                          e->pieces_have, e->piece_count, e->complete ? ", complete" : "");
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->task_id, sizeof(out->task_id), "%s", e->task_id);
    out->content_length = e->content_length;
    out->piece_size = e->piece_size;
    out->piece_count = e->piece_count;
    out->pieces_have = e->pieces_have;
    out->pinned = e->pinned;
    out->complete = e->complete;
    return 0;
}

int client_local_stat(client_local *c, const char *task_id, client_entry *out, cf_err *err)
{
    uint64_t req;
    proto_msg m;
    int r =
        task_exchange(c, PROTO_MSG_LOCAL_STAT, task_id, PROTO_MSG_LOCAL_STAT_REPLY, &req, &m, err);
    if (r) return r;
    if ((r = check_req(c, &m, m.u.local_stat_reply.req_id, req, err))) return r;
    if (strcmp(m.u.local_stat_reply.entry.task_id, task_id) != 0) {
        c->broken = true;
        r = cf_err_set(err, -EBADMSG,
                       "invalid reply from peer daemon at %s: stat of %s answered for %s", c->path,
                       task_id, m.u.local_stat_reply.entry.task_id);
    } else {
        r = copy_entry(c, &m.u.local_stat_reply.entry, out, err);
    }
    proto_msg_free(&m);
    return r;
}

/* Copies the decoded tasks into one block (tasks, then all parents). */
static int copy_tasks(client_local *c, const proto_local_list_reply *l, client_task **out,
                      cf_err *err)
{
    size_t np = 0;
    for (size_t i = 0; i < l->n_tasks; i++) {
        const proto_local_task_info *t = &l->tasks[i];
        if (proto_task_id_check(t->task_id) != 0) {
            c->broken = true;
            return cf_err_set(err, -EBADMSG,
                              "invalid reply from peer daemon at %s: bad task id in task %zu",
                              c->path, i);
        }
        np += t->n_parents; /* each <= PROTO_MAX_TASK_PARENTS, checked by the decoder */
    }
    client_task *v = calloc(1, l->n_tasks * sizeof(*v) + np * sizeof(client_parent));
    if (!v) return cf_err_set(err, -ENOMEM, "out of memory");
    client_parent *p = (client_parent *)(v + l->n_tasks);
    for (size_t i = 0; i < l->n_tasks; i++) {
        const proto_local_task_info *t = &l->tasks[i];
        client_task *o = &v[i];
        snprintf(o->task_id, sizeof(o->task_id), "%s", t->task_id);
        snprintf(o->state, sizeof(o->state), "%s", t->state);
        snprintf(o->error, sizeof(o->error), "%s", t->error);
        o->content_length = t->content_length;
        o->piece_count = t->piece_count;
        o->pieces_have = t->pieces_have;
        o->from_parents = t->from_parents;
        o->from_origin = t->from_origin;
        o->origin_mode = t->origin_mode;
        o->readers = t->readers;
        o->parents = p;
        o->n_parents = t->n_parents;
        for (size_t k = 0; k < t->n_parents; k++, p++) {
            snprintf(p->host_id, sizeof(p->host_id), "%s", t->parents[k].host_id);
            snprintf(p->addr, sizeof(p->addr), "%s", t->parents[k].addr);
            p->served = t->parents[k].served;
            p->banned = t->parents[k].banned;
            p->down = t->parents[k].down;
        }
    }
    *out = v;
    return 0;
}

int client_local_status(client_local *c, client_entry **entries, size_t *n, client_task **tasks,
                        size_t *n_tasks, cf_err *err)
{
    *entries = NULL;
    *n = 0;
    if (tasks) *tasks = NULL;
    if (n_tasks) *n_tasks = 0;
    int r = usable(c, err);
    if (r) return r;
    uint64_t req = c->next_req++;
    proto_msg q = {.type = PROTO_MSG_LOCAL_LIST};
    q.u.local_list = (proto_local_list){.req_id = req};
    if ((r = send_msg(c, &q, err))) return r;
    proto_msg m;
    uint32_t plen;
    if ((r = recv_answer(c, req, PROTO_MSG_LOCAL_LIST_REPLY, &m, &plen, err))) return r;
    if ((r = check_req(c, &m, m.u.local_list_reply.req_id, req, err))) return r;
    size_t cnt = m.u.local_list_reply.n_entries;
    client_entry *v = NULL;
    client_task *tv = NULL;
    if (cnt) {
        v = calloc(cnt, sizeof(*v));
        if (!v) r = cf_err_set(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; r == 0 && i < cnt; i++)
        r = copy_entry(c, &m.u.local_list_reply.entries[i], &v[i], err);
    size_t tcnt = tasks ? m.u.local_list_reply.n_tasks : 0;
    if (r == 0 && tcnt) r = copy_tasks(c, &m.u.local_list_reply, &tv, err);
    proto_msg_free(&m);
    if (r) {
        free(v);
        return r;
    }
    *entries = v;
    *n = cnt;
    if (tasks) {
        *tasks = tv;
        if (n_tasks) *n_tasks = tcnt;
    }
    return 0;
}

int client_local_list(client_local *c, client_entry **entries, size_t *n, cf_err *err)
{
    return client_local_status(c, entries, n, NULL, NULL, err);
}

int client_local_start(client_local *c, const char *task_id, const char *origin,
                       const char *credentials, client_entry *out, cf_err *err)
{
    int r = client_local_prefetch(c, task_id, origin, credentials, 0, 0, err);
    if (r) return r;
    /* LOCAL_OK comes once the download runs, i.e. the length is known; the cache entry may
     * trail it by a moment */
    for (int i = 0;; i++) {
        r = client_local_stat(c, task_id, out, err);
        if (r == 0 && out->piece_size) return 0;
        if ((r && r != -ENOENT) || i == 100) break;
        usleep(20000);
    }
    return r ? r
             : cf_err_set(err, -EPROTO, "peer daemon at %s accepted %s but reports no length",
                          c->path, task_id);
}
