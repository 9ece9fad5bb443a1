/* libFuzzer target: stateful sequences of mesh messages against a real chunkfly-peer upload
 * server (peer/upload_server.c, its access checks and the store behind it), over a loopback TCP
 * connection per input. One daemon per process (a temporary cache, no scheduler, no mirror, no
 * HTTP), started once, holding:
 *   blob A: 3 pieces of 64 KiB, complete and verified, recorded from "127.0.0.1:1/fuzz/a" (no
 *           registry listens there: its anonymous check cannot succeed, so A is private);
 *   blob B: 1 of 3 pieces written, not verified.
 * Each input is a sequence of steps, each built from a few input bytes:
 *   [op][a][b][c]  op % 8: 0 HELLO (id "fuzz-rogue" / "fuzz-trusted" (the trust group) / empty,
 *                          role, versions), 1 AVAIL_QUERY, 2 PIECE_REQUEST, 3 ACCESS (origin and
 *                          token picked by a, b), 4 an unexpected message (PIECE_DATA, AVAIL,
 *                          ERROR, REGISTER_TASK), 5 raw bytes (a = length, taken from the input),
 *                          6 send what is queued and run the daemon's loop, 7 stop the sequence;
 *   task (b % 3): A, B, or an id nobody holds; piece numbers from c.
 * The client reads every reply and checks: frames parse; no PIECE_DATA and no AVAIL with a held
 * piece of A reach a connection whose HELLO did not name the trust group (A is private and the
 * registry cannot vouch for anyone). Then the connection closes (sometimes while checks are still
 * in flight) and the daemon's loop runs until it let go of it. Memory errors and leaks of the
 * daemon's per-connection state surface through ASan/LSan. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "cf/buf.h"
#include "cf/digest.h"
#include "cf/log.h"
#include "peer/daemon.h"
#include "peer/piece_store.h"
#include "proto/frame.h"
#include "proto/handshake.h"
#include "proto/msg.h"
#include "proto/piece.h"

#define PIECE  (64u << 10)
#define PIECES 3

static uv_loop_t loop;
static peer_daemon *daemon_;
static int port;
static char task_a[PROTO_TASK_ID_LEN + 1], task_b[PROTO_TASK_ID_LEN + 1];
static const char *task_none =
    "sha256:0000000000000000000000000000000000000000000000000000000000000001";

static void die(const char *what, const cf_err *e, int rc)
{
    fprintf(stderr, "fuzz_upload_sequence setup: %s: %s\n", what, cf_err_str(e, rc));
    abort();
}

/* A blob of `pieces` x PIECE bytes (pattern `seed`), of which `written` pieces are stored. */
static void put_blob(peer_store *s, uint8_t seed, uint32_t written, int verify, const char *origin,
                     char id[PROTO_TASK_ID_LEN + 1])
{
    static uint8_t data[PIECES * PIECE];
    for (size_t i = 0; i < sizeof(data); i++) data[i] = (uint8_t)(seed + i * 7);
    uint8_t dg[32];
    cf_err e = {0};
    int rc;
    if (cf_sha256(data, sizeof(data), dg)) abort();
    proto_task_id_from_digest(dg, id);
    peer_blob_info bi;
    if ((rc = peer_store_blob_open(s, dg, sizeof(data), PIECE, origin, &bi, &e)))
        die("blob open", &e, rc);
    for (uint32_t p = 0; p < written; p++)
        if ((rc = peer_store_write_piece(s, dg, p, data + (size_t)p * PIECE, PIECE, &e)))
            die("write piece", &e, rc);
    if (verify && (rc = peer_store_mark_verified(s, dg, &e))) die("mark verified", &e, rc);
    if ((rc = peer_store_flush(s, &e))) die("flush", &e, rc);
}

static int free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
        getsockname(fd, (struct sockaddr *)&a, &l))
        abort();
    close(fd);
    return ntohs(a.sin_port);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* as chunkfly-peer's main: a peer that hangs up is an error code */
    cf_log_set_level(CF_LOG_ERROR);
    static char dir[] = "/tmp/cf-fuzz-upload.XXXXXX", cache[96], sock[96], listen[32];
    if (!mkdtemp(dir)) abort();
    snprintf(cache, sizeof(cache), "%s/cache", dir);
    snprintf(sock, sizeof(sock), "%s/api.sock", dir);
    peer_store_opts so = {.dir = cache};
    peer_store *s;
    cf_err e = {0};
    int rc = peer_store_open(&so, &s, &e);
    if (rc) die("store", &e, rc);
    put_blob(s, 1, PIECES, 1, "127.0.0.1:1/fuzz/a", task_a);
    put_blob(s, 2, 1, 0, "127.0.0.1:1/fuzz/b", task_b);
    peer_store_close(s);

    static cf_config *c; /* kept for the process: o's strings may point into it */
    c = cf_config_new();
    struct peer_daemon_opts o;
    if (!c || (rc = peer_daemon_opts_load(&o, c, &e))) die("options", &e, rc ? rc : -ENOMEM);
    port = free_tcp_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    o.listen = listen;
    o.cache_dir = cache;
    o.api_socket = sock;
    o.http = NULL;
    o.mirror_listen = "";
    o.docker_config = "";
    o.origin_timeout_ms = 500;
    o.private_peers = "fuzz-trusted";
    o.seed_cached = 0;
    uv_loop_init(&loop);
    if ((rc = peer_daemon_new(&loop, &o, &daemon_, &e))) die("daemon", &e, rc);
}

struct client {
    int fd;
    cf_buf out;
    uint8_t in[1 << 20];
    size_t in_len;
    int trusted; /* the first HELLO (the one the server takes) named the trust group */
    int hello_sent;
};

static void check_replies(struct client *k)
{
    size_t off = 0;
    for (;;) {
        proto_frame_header h;
        const uint8_t *body, *payload;
        size_t flen;
        cf_err e = {0};
        int rc = proto_frame_parse(k->in + off, k->in_len - off, 0, &h, &body, &payload, &flen, &e);
        if (rc == -EAGAIN) break;
        if (rc) abort(); /* the daemon sent a malformed frame */
        proto_msg m;
        if (proto_msg_decode(h.type, body, h.body_len, h.payload_len, &m, &e) != 0) {
            off += flen;
            continue;
        }
        if (!k->trusted) {
            if (h.type == PROTO_MSG_PIECE_DATA && !strcmp(m.u.piece_data.task_id, task_a))
                abort(); /* a piece of the private blob to a stranger */
            if (h.type == PROTO_MSG_AVAIL && !strcmp(m.u.avail.task_id, task_a))
                for (uint32_t i = 0; i < proto_bitmap_nbytes(m.u.avail.piece_count); i++)
                    if (m.u.avail.bits[i]) abort(); /* it told a stranger what it holds */
        }
        proto_msg_free(&m);
        off += flen;
    }
    memmove(k->in, k->in + off, k->in_len - off);
    k->in_len -= off;
}

/* Sends what is queued (as far as the socket takes it), runs the loop, reads the replies.
 * Returns 0 while the connection is open. */
static int pump(struct client *k, int rounds)
{
    int open = 1;
    for (int r = 0; r < rounds && open; r++) {
        if (k->out.len) {
            ssize_t n = send(k->fd, k->out.data, k->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                memmove(k->out.data, k->out.data + n, k->out.len - (size_t)n);
                k->out.len -= (size_t)n;
            } else if (n < 0 && errno != EAGAIN) {
                k->out.len = 0;
            }
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        struct pollfd p = {.fd = k->fd, .events = POLLIN};
        if (poll(&p, 1, 1) > 0) {
            if (k->in_len == sizeof(k->in)) k->in_len = 0; /* more than a big frame: drop */
            ssize_t n = recv(k->fd, k->in + k->in_len, sizeof(k->in) - k->in_len, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN)) open = 0;
            if (n > 0) {
                k->in_len += (size_t)n;
                check_replies(k);
            }
        }
    }
    return open ? 0 : -1;
}

/* 0 when queued; -1 when the message is outside its limits (nothing queued) */
static int queue(struct client *k, const proto_msg *m, uint32_t payload_len, const void *payload)
{
    cf_err e = {0};
    size_t before = k->out.len;
    if (proto_msg_encode_frame(m, payload_len, &k->out, &e) ||
        (payload_len && cf_buf_append(&k->out, payload, payload_len))) {
        k->out.len = before;
        return -1;
    }
    return 0;
}

static const char *pick_task(uint8_t b)
{
    return b % 3 == 0 ? task_a : b % 3 == 1 ? task_b : task_none;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!daemon_) setup();
    struct client *k = calloc(1, sizeof(*k));
    if (!k) return 0;
    k->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (k->fd < 0 || connect(k->fd, (struct sockaddr *)&a, sizeof(a))) abort();
    static const char *const ids[] = {"fuzz-rogue", "fuzz-trusted", ""};
    static const char *const origins[] = {"127.0.0.1:1/fuzz/a", "127.0.0.1:1/other/repo",
                                          "evil.example:5000/fuzz/a", "x"};
    static const char *const tokens[] = {"token", "", "eyJhbGciOiJub25lIn0.e30."};
    static uint8_t junk[PIECE];
    size_t i = 0;
    int stop = 0;
    while (!stop && i + 4 <= size) {
        uint8_t op = data[i], x = data[i + 1], y = data[i + 2], z = data[i + 3];
        i += 4;
        proto_msg m;
        memset(&m, 0, sizeof(m));
        switch (op % 8) {
        case 0:
            m.type = PROTO_MSG_HELLO;
            m.u.hello.version = x & 1 ? PROTO_VERSION : (uint32_t)x;
            m.u.hello.min_version = x & 2 ? PROTO_MIN_VERSION : (uint32_t)y;
            m.u.hello.node_id = ids[y % 3];
            m.u.hello.role = z % 4;
            m.u.hello.max_payload = z & 0x80 ? 0 : (uint32_t)z << 12;
            if (queue(k, &m, 0, NULL) == 0 && !k->hello_sent) {
                k->trusted = y % 3 == 1; /* later HELLOs change nothing */
                k->hello_sent = 1;
            }
            break;
        case 1:
            m.type = PROTO_MSG_AVAIL_QUERY;
            m.u.avail_query.task_id = pick_task(y);
            m.u.avail_query.subscribe = z & 1;
            queue(k, &m, 0, NULL);
            break;
        case 2:
            m.type = PROTO_MSG_PIECE_REQUEST;
            m.u.piece_request.req_id = x;
            m.u.piece_request.task_id = pick_task(y);
            m.u.piece_request.piece = z < 250 ? z % (PIECES + 1) : UINT32_MAX - z;
            queue(k, &m, 0, NULL);
            break;
        case 3:
            m.type = PROTO_MSG_ACCESS;
            m.u.access.req_id = x;
            m.u.access.task_id = pick_task(y);
            m.u.access.repo_ref = origins[x % 4];
            m.u.access.token = tokens[z % 3];
            queue(k, &m, 0, NULL);
            break;
        case 4:
            if (x % 4 == 0) {
                m.type = PROTO_MSG_PIECE_DATA;
                m.u.piece_data.req_id = y;
                m.u.piece_data.task_id = pick_task(y);
                m.u.piece_data.piece = z % PIECES;
                queue(k, &m, PIECE, junk);
            } else if (x % 4 == 1) {
                m.type = PROTO_MSG_ERROR;
                m.u.error.code = z;
                m.u.error.message = "fuzz";
                queue(k, &m, 0, NULL);
            } else {
                m.type = PROTO_MSG_REGISTER_TASK;
                m.u.register_task.task_id = pick_task(y);
                m.u.register_task.content_length = (uint64_t)z << 30;
                m.u.register_task.origin = "127.0.0.1:1/fuzz/a";
                queue(k, &m, 0, NULL);
            }
            break;
        case 5: {
            /* raw bytes may hold a HELLO of their own: no identity is assumed from then on */
            if (!k->hello_sent) k->hello_sent = k->trusted = 1;
            size_t n = x;
            if (n > size - i) n = size - i;
            cf_buf_append(&k->out, data + i, n);
            i += n;
            break;
        }
        case 6:
            if (pump(k, 1 + x % 8)) stop = 1;
            break;
        default:
            stop = 1;
        }
    }
    pump(k, 4);
    if (size && data[size - 1] & 1) shutdown(k->fd, SHUT_WR); /* half-close, then drain */
    pump(k, 2);
    close(k->fd);
    /* the daemon notices the close and drops the connection's state */
    for (int r = 0; r < 4; r++) uv_run(&loop, UV_RUN_NOWAIT);
    cf_buf_free(&k->out);
    free(k);
    return 0;
}
