/* proto_conn over real sockets on one libuv loop: frames split at every byte boundary, the HELLO
 * handshake and its refusal over TCP, a large transfer with back-pressure (pausing reader,
 * watermarks, on_drain, -ENOBUFS), file regions sent with sendfile (including a receiver too
 * slow for one sendfile call and a file shorter than announced), oversized frames and the idle
 * timeout. The same transfers again over mutual TLS, with its identities and its refusals
 * (plaintext client, certificates of another CA, TLS client to a plain server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "cf/buf.h"
#include "cf/bufpool.h"
#include "msg_samples.h"
#include "proto/conn.h"
#include "proto/handshake.h"
#include "proto/tls.h"
#include "tls_test_certs.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

typedef struct endpoint {
    proto_conn *c;
    cf_buf frames; /* received frames re-serialised: header + body + payload */
    size_t nframes;
    uint64_t payload_bytes;
    bool closed;
    int status;
    char reason[256];
    int drains;
    bool connected;
    /* handshake */
    bool do_handshake;
    proto_hello hello;
    uint32_t last_error_code;
    /* pattern check of large payloads */
    bool check_pattern;
    uint32_t next_seq;
    int pattern_errors;
    /* producer */
    uint32_t to_send, sent;
    size_t payload_len;
    bool saw_congested;
    size_t max_seen_queue;
    int file_fd;     /* > 0: produce() queues file regions of this fd instead of copies */
    size_t pause_at; /* pause reading when this many frames have arrived (0 = never) */
} endpoint;

static void on_frame(proto_conn *c, const proto_frame_header *h, const uint8_t *body,
                     const uint8_t *payload)
{
    endpoint *e = proto_conn_data(c);
    e->nframes++;
    e->payload_bytes += h->payload_len;
    if (e->check_pattern) {
        proto_msg m;
        assert_int_equal(proto_msg_decode(h->type, body, h->body_len, h->payload_len, &m, NULL), 0);
        assert_int_equal(m.type, PROTO_MSG_PIECE_DATA);
        if (m.u.piece_data.piece != e->next_seq) e->pattern_errors++;
        for (uint32_t i = 0; i < h->payload_len; i += 4093)
            if (payload[i] != (uint8_t)(e->next_seq * 31 + i)) {
                e->pattern_errors++;
                break;
            }
        e->next_seq++;
        proto_msg_free(&m);
        return;
    }
    if (e->pause_at && e->nframes == e->pause_at) proto_conn_pause_read(c);
    uint8_t hdr[PROTO_FRAME_HEADER_LEN];
    proto_frame_header_encode(h, hdr);
    cf_buf_append(&e->frames, hdr, sizeof(hdr));
    cf_buf_append(&e->frames, body, h->body_len);
    cf_buf_append(&e->frames, payload, h->payload_len);
    if (e->do_handshake) {
        proto_msg m;
        cf_err err = {0};
        if (proto_msg_decode(h->type, body, h->body_len, h->payload_len, &m, &err) < 0) {
            proto_conn_close(c, -EBADMSG, err.msg);
            return;
        }
        if (m.type == PROTO_MSG_HELLO && e->hello.role == PROTO_ROLE_SCHEDULER) {
            uint32_t v;
            if (proto_handshake_check(&e->hello, &m.u.hello, &v, NULL, &err) < 0) {
                proto_msg refusal;
                proto_handshake_refusal(&refusal, &err);
                proto_conn_send(c, &refusal, NULL, 0, NULL);
                proto_conn_close_after_flush(c, -EPROTONOSUPPORT, err.msg);
            } else {
                proto_msg reply = {.type = PROTO_MSG_HELLO};
                reply.u.hello = e->hello;
                assert_int_equal(proto_conn_send(c, &reply, NULL, 0, NULL), 0);
            }
        } else if (m.type == PROTO_MSG_ERROR) {
            e->last_error_code = m.u.error.code;
        }
        proto_msg_free(&m);
    }
}

static void on_close(proto_conn *c, int status, const char *reason)
{
    endpoint *e = proto_conn_data(c);
    e->closed = true;
    e->status = status;
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
    e->c = NULL;
}

static void on_connect(proto_conn *c)
{
    endpoint *e = proto_conn_data(c);
    e->connected = true;
}

static void produce(endpoint *e);

static void on_drain(proto_conn *c)
{
    endpoint *e = proto_conn_data(c);
    e->drains++;
    produce(e);
}

static const proto_conn_cbs cbs = {
    .on_frame = on_frame, .on_close = on_close, .on_connect = on_connect, .on_drain = on_drain};

static void run_until(uv_loop_t *loop, bool *flag, int max_iter)
{
    for (int i = 0; i < max_iter && !*flag; i++) uv_run(loop, UV_RUN_ONCE);
    assert_true(*flag);
}

static void spin(uv_loop_t *loop, int n)
{
    for (int i = 0; i < n; i++) uv_run(loop, UV_RUN_NOWAIT);
}

static void drain_loop(uv_loop_t *loop)
{
    for (int i = 0; i < 100 && uv_run(loop, UV_RUN_NOWAIT); i++) {
    }
}

/* ---- 1. byte-boundary splits over a socketpair (raw writer -> proto_conn) ---- */

static void build_stream(cf_buf *b)
{
    proto_msg m;
    sample_msg(PROTO_MSG_HELLO, &m);
    assert_int_equal(proto_msg_encode_frame(&m, 0, b, NULL), 0);
    sample_msg(PROTO_MSG_PIECE_DATA, &m);
    assert_int_equal(proto_msg_encode_frame(&m, 40, b, NULL), 0);
    for (int i = 0; i < 40; i++) cf_buf_append(b, &(uint8_t){(uint8_t)i}, 1);
    sample_msg(PROTO_MSG_CANDIDATES, &m);
    assert_int_equal(proto_msg_encode_frame(&m, 0, b, NULL), 0);
    sample_msg(PROTO_MSG_LOCAL_OK, &m);
    assert_int_equal(proto_msg_encode_frame(&m, 0, b, NULL), 0);
}

static void test_split_every_byte(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    endpoint rx = {0};
    assert_int_equal(proto_conn_open(&loop, sv[0], NULL, &cbs, &rx, &rx.c), 0);
    cf_buf stream = {0};
    build_stream(&stream);
    for (size_t k = 1; k < stream.len; k++) {
        assert_int_equal(write(sv[1], stream.data, k), (ssize_t)k);
        spin(&loop, 3); /* the conn sees the partial frame first */
        assert_int_equal(write(sv[1], stream.data + k, stream.len - k), (ssize_t)(stream.len - k));
        for (int i = 0; i < 50 && rx.frames.len < k * 0 + stream.len * k; i++) spin(&loop, 1);
        assert_int_equal(rx.frames.len, stream.len * k);
        assert_memory_equal(rx.frames.data + stream.len * (k - 1), stream.data, stream.len);
    }
    assert_int_equal(rx.nframes, 4 * (stream.len - 1));
    /* both directions: the conn writes, the raw side reads it back byte-exact */
    proto_msg m;
    sample_msg(PROTO_MSG_CANDIDATES, &m);
    assert_int_equal(proto_conn_send(rx.c, &m, NULL, 0, NULL), 0);
    spin(&loop, 3);
    cf_buf want = {0};
    proto_msg_encode_frame(&m, 0, &want, NULL);
    uint8_t got[4096];
    assert_int_equal(read(sv[1], got, sizeof(got)), (ssize_t)want.len);
    assert_memory_equal(got, want.data, want.len);
    /* clean EOF at a frame boundary -> status 0 */
    close(sv[1]);
    run_until(&loop, &rx.closed, 100);
    assert_int_equal(rx.status, 0);
    drain_loop(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
    cf_buf_free(&stream);
    cf_buf_free(&want);
    cf_buf_free(&rx.frames);
}

/* pooled_frames: a large frame arrives in a pooled buffer on_frame may keep (take_frame); one
 * it does not take goes back to the pool; small frames are never pooled. */
typedef struct pooled_rx {
    int n;
    uint8_t *kept; /* frame 0, taken */
    size_t kept_body;
    void *not_taken; /* take_frame's answer for frames 1 and 2 */
    void *small_take;
} pooled_rx;

static void pooled_on_frame(proto_conn *c, const proto_frame_header *h, const uint8_t *body,
                            const uint8_t *payload)
{
    pooled_rx *r = proto_conn_data(c);
    assert_ptr_equal(payload, body + h->body_len);
    if (r->n == 0) {
        r->kept = proto_conn_take_frame(c);
        assert_ptr_equal(r->kept, body);
        assert_null(proto_conn_take_frame(c)); /* taken once */
        r->kept_body = h->body_len;
    } else if (r->n == 1) {
        r->small_take = proto_conn_take_frame(c);
    } else {
        assert_int_equal(payload[h->payload_len - 1], (uint8_t)(h->payload_len - 1));
    }
    r->n++;
}

static void test_pooled_frames(void **state)
{
    (void)state;
    cf_bufpool_trim();
    uv_loop_t loop;
    uv_loop_init(&loop);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pooled_rx r = {0};
    proto_conn_opts o = {.pooled_frames = true};
    proto_conn_cbs pc = {.on_frame = pooled_on_frame};
    proto_conn *c;
    assert_int_equal(proto_conn_open(&loop, sv[0], &o, &pc, &r, &c), 0);
    static const size_t sizes[3] = {200u << 10, 100, 300u << 10};
    for (int f = 0; f < 3; f++) {
        cf_buf b = {0};
        proto_msg m;
        sample_msg(PROTO_MSG_PIECE_DATA, &m);
        assert_int_equal(proto_msg_encode_frame(&m, (uint32_t)sizes[f], &b, NULL), 0);
        for (size_t i = 0; i < sizes[f]; i++) cf_buf_append(&b, &(uint8_t){(uint8_t)i}, 1);
        for (size_t off = 0; off < b.len;) { /* the reader sees it in pieces */
            ssize_t w = write(sv[1], b.data + off, b.len - off < 65536 ? b.len - off : 65536);
            assert_true(w > 0);
            off += (size_t)w;
            spin(&loop, 2);
        }
        cf_buf_free(&b);
        for (int i = 0; i < 50 && r.n <= f; i++) spin(&loop, 1);
        assert_int_equal(r.n, f + 1);
    }
    assert_null(r.small_take); /* 100 bytes: not pooled */
    assert_non_null(r.kept);
    const uint8_t *pl = r.kept + r.kept_body;
    for (size_t i = 0; i < sizes[0]; i++)
        if (pl[i] != (uint8_t)i) fail_msg("taken frame: byte %zu changed", i);
    assert_true(cf_bufpool_held() >= sizes[2]); /* frame 2 went back to the pool */
    cf_bufpool_put(r.kept);
    proto_conn_close(c, 0, "done");
    close(sv[1]);
    drain_loop(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
    cf_bufpool_trim();
}

/* Pausing inside on_frame while more frames sit in the same read: they wait, in order, until
 * resume. */
static void test_pause_mid_buffer(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    endpoint rx = {.pause_at = 1};
    assert_int_equal(proto_conn_open(&loop, sv[0], NULL, &cbs, &rx, &rx.c), 0);
    cf_buf stream = {0};
    build_stream(&stream);
    build_stream(&stream); /* 8 frames in one write */
    assert_int_equal(write(sv[1], stream.data, stream.len), (ssize_t)stream.len);
    spin(&loop, 10);
    assert_int_equal(rx.nframes, 1);
    rx.pause_at = 5;
    assert_int_equal(proto_conn_resume_read(rx.c), 0);
    spin(&loop, 10);
    assert_int_equal(rx.nframes, 5);
    rx.pause_at = 0;
    assert_int_equal(proto_conn_resume_read(rx.c), 0);
    spin(&loop, 10);
    assert_int_equal(rx.nframes, 8);
    assert_int_equal(rx.frames.len, stream.len);
    assert_memory_equal(rx.frames.data, stream.data, stream.len);
    /* reading continues normally afterwards */
    assert_int_equal(write(sv[1], stream.data, stream.len), (ssize_t)stream.len);
    spin(&loop, 10);
    assert_int_equal(rx.nframes, 16);
    close(sv[1]);
    run_until(&loop, &rx.closed, 100);
    assert_int_equal(rx.status, 0);
    drain_loop(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
    cf_buf_free(&stream);
    cf_buf_free(&rx.frames);
}

static void test_bad_frames(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    /* payload above the connection limit: refused from the header alone */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    endpoint rx = {0};
    proto_conn_opts o = {.max_payload = 64 << 10};
    assert_int_equal(proto_conn_open(&loop, sv[0], &o, &cbs, &rx, &rx.c), 0);
    proto_frame_header h;
    uint8_t raw[PROTO_FRAME_HEADER_LEN];
    proto_frame_header_init(&h, PROTO_MSG_PIECE_DATA, 0, 10, (64 << 10) + 1);
    proto_frame_header_encode(&h, raw);
    assert_int_equal(write(sv[1], raw, sizeof(raw)), (ssize_t)sizeof(raw));
    run_until(&loop, &rx.closed, 100);
    assert_int_equal(rx.status, -EMSGSIZE);
    close(sv[1]);

    /* garbage */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    endpoint rx2 = {0};
    assert_int_equal(proto_conn_open(&loop, sv[0], NULL, &cbs, &rx2, &rx2.c), 0);
    assert_int_equal(write(sv[1], "GET / HTTP/1.1\r\n\r\n", 18), 18);
    run_until(&loop, &rx2.closed, 100);
    assert_int_equal(rx2.status, -EBADMSG);
    close(sv[1]);

    /* EOF inside a frame */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    endpoint rx3 = {0};
    assert_int_equal(proto_conn_open(&loop, sv[0], NULL, &cbs, &rx3, &rx3.c), 0);
    proto_frame_header_init(&h, PROTO_MSG_WAIT, 0, 10, 0);
    proto_frame_header_encode(&h, raw);
    assert_int_equal(write(sv[1], raw, sizeof(raw)), (ssize_t)sizeof(raw));
    close(sv[1]);
    run_until(&loop, &rx3.closed, 100);
    assert_int_equal(rx3.status, -EPIPE);

    /* idle timeout */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    endpoint rx4 = {0};
    proto_conn_opts io = {.idle_timeout_ms = 50};
    assert_int_equal(proto_conn_open(&loop, sv[0], &io, &cbs, &rx4, &rx4.c), 0);
    run_until(&loop, &rx4.closed, 1000);
    assert_int_equal(rx4.status, -ETIMEDOUT);
    close(sv[1]);

    drain_loop(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
    cf_buf_free(&rx.frames);
    cf_buf_free(&rx2.frames);
    cf_buf_free(&rx3.frames);
    cf_buf_free(&rx4.frames);
}

/* ---- TCP pair helper ---- */

typedef struct tcp_pair {
    uv_loop_t loop;
    uv_tcp_t server;
    endpoint srv, cli;
    proto_conn_opts srv_opts, cli_opts;
    bool accepted;
    bool socketpair;  /* no listening server */
    bool expect_fail; /* tcp_pair_open: do not wait for the connection (TLS refusals) */
} tcp_pair;

/* Same shape as a TCP pair, over an AF_UNIX socketpair with tiny socket buffers so that
 * sendfile(2) returns partial counts and EAGAIN. */
static void small_pair_open(tcp_pair *p)
{
    uv_loop_init(&p->loop);
    p->socketpair = true;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->srv_opts.tls_server = true;
    int small = 16 << 10;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    assert_int_equal(proto_conn_open(&p->loop, sv[0], &p->srv_opts, &cbs, &p->srv, &p->srv.c), 0);
    assert_int_equal(proto_conn_open(&p->loop, sv[1], &p->cli_opts, &cbs, &p->cli, &p->cli.c), 0);
}

static void on_listen(uv_stream_t *s, int status)
{
    tcp_pair *p = s->data;
    assert_int_equal(status, 0);
    assert_int_equal(proto_conn_accept(s, &p->srv_opts, &cbs, &p->srv, &p->srv.c), 0);
    p->accepted = true;
}

static void tcp_pair_open(tcp_pair *p)
{
    uv_loop_init(&p->loop);
    uv_tcp_init(&p->loop, &p->server);
    p->server.data = p;
    struct sockaddr_storage ss;
    assert_int_equal(proto_addr_parse("127.0.0.1:0", &ss), -EINVAL); /* port 0 refused */
    uv_ip4_addr("127.0.0.1", 0, (struct sockaddr_in *)&ss);
    assert_int_equal(uv_tcp_bind(&p->server, (struct sockaddr *)&ss, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&p->server, 8, on_listen), 0);
    int len = sizeof(ss);
    uv_tcp_getsockname(&p->server, (struct sockaddr *)&ss, &len);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    struct sockaddr_storage dst;
    assert_int_equal(proto_addr_parse(addr, &dst), 0);
    assert_int_equal(proto_conn_connect_tcp(&p->loop, (struct sockaddr *)&dst, &p->cli_opts, &cbs,
                                            &p->cli, &p->cli.c),
                     0);
    assert_string_equal(proto_conn_peer_name(p->cli.c), addr);
    if (p->expect_fail) return;
    run_until(&p->loop, &p->cli.connected, 100);
    run_until(&p->loop, &p->accepted, 100);
}

static void tcp_pair_close(tcp_pair *p)
{
    if (p->cli.c) proto_conn_close(p->cli.c, 0, NULL);
    if (p->srv.c) proto_conn_close(p->srv.c, 0, NULL);
    if (!p->socketpair) uv_close((uv_handle_t *)&p->server, NULL);
    drain_loop(&p->loop);
    assert_true(p->cli.closed && p->srv.closed);
    assert_int_equal(uv_loop_close(&p->loop), 0);
    cf_buf_free(&p->cli.frames);
    cf_buf_free(&p->srv.frames);
}

static void test_handshake_tcp(void **state)
{
    (void)state;
    /* compatible */
    tcp_pair p = {0};
    tcp_pair_open(&p);
    p.srv.do_handshake = p.cli.do_handshake = true;
    proto_hello_init(&p.srv.hello, "sched-1", PROTO_ROLE_SCHEDULER, 0, 0);
    proto_hello_init(&p.cli.hello, "peer-1", PROTO_ROLE_PEER, 0, 0);
    proto_msg m = {.type = PROTO_MSG_HELLO};
    m.u.hello = p.cli.hello;
    assert_int_equal(proto_conn_send(p.cli.c, &m, NULL, 0, NULL), 0);
    for (int i = 0; i < 100 && p.cli.nframes == 0; i++) uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(p.cli.nframes, 1);
    assert_false(p.cli.closed);
    tcp_pair_close(&p);

    /* incompatible: refused with ERROR(PROTO_E_VERSION), then closed */
    tcp_pair q = {0};
    tcp_pair_open(&q);
    q.srv.do_handshake = q.cli.do_handshake = true;
    proto_hello_init(&q.srv.hello, "sched-1", PROTO_ROLE_SCHEDULER, 0, 0);
    proto_hello_init(&q.cli.hello, "peer-9", PROTO_ROLE_PEER, 0, 0);
    q.cli.hello.version = q.cli.hello.min_version = PROTO_VERSION + 8;
    m.u.hello = q.cli.hello;
    assert_int_equal(proto_conn_send(q.cli.c, &m, NULL, 0, NULL), 0);
    run_until(&q.loop, &q.cli.closed, 200);
    assert_int_equal(q.cli.last_error_code, PROTO_E_VERSION);
    assert_int_equal(q.cli.status, 0); /* server closed cleanly after the ERROR */
    assert_true(q.srv.closed);
    assert_int_equal(q.srv.status, -EPROTONOSUPPORT);
    assert_non_null(strstr(q.srv.reason, "incompatible protocol version"));
    tcp_pair_close(&q);
}

/* ---- large payloads with back-pressure ---- */

#define BIG_PAYLOAD (4u << 20)
#define BIG_FRAMES  24

static uint8_t *pattern(uint32_t seq, size_t len)
{
    uint8_t *b = malloc(len);
    for (size_t i = 0; i < len; i++) b[i] = (uint8_t)(seq * 31 + i);
    return b;
}

static void produce(endpoint *e)
{
    while (e->sent < e->to_send && e->c && !proto_conn_congested(e->c)) {
        proto_msg m;
        sample_msg(PROTO_MSG_PIECE_DATA, &m);
        m.u.piece_data.piece = e->sent;
        if (e->file_fd > 0) {
            assert_int_equal(proto_conn_send_file(e->c, &m, e->file_fd,
                                                  (uint64_t)e->sent * e->payload_len,
                                                  (uint32_t)e->payload_len, NULL),
                             0);
        } else {
            uint8_t *b = pattern(e->sent, e->payload_len);
            assert_int_equal(proto_conn_send(e->c, &m, b, e->payload_len, NULL), 0);
            free(b);
        }
        e->sent++;
        if (proto_conn_queued(e->c) > e->max_seen_queue)
            e->max_seen_queue = proto_conn_queued(e->c);
        if (proto_conn_congested(e->c)) e->saw_congested = true;
    }
}

static void on_resume_timer(uv_timer_t *t)
{
    endpoint *e = t->data;
    assert_int_equal(proto_conn_resume_read(e->c), 0);
}

static void backpressure_scenario(proto_tls *srv_tls, proto_tls *cli_tls)
{
    tcp_pair p = {0};
    p.srv_opts = (proto_conn_opts){.high_watermark = 8u << 20,
                                   .low_watermark = 2u << 20,
                                   .max_queued = 16u << 20,
                                   .tls = srv_tls};
    p.cli_opts.tls = cli_tls;
    tcp_pair_open(&p);
    p.cli.check_pattern = true;
    /* the reader stalls for 100 ms so the sender's queue must fill up */
    proto_conn_pause_read(p.cli.c);
    uv_timer_t t;
    uv_timer_init(&p.loop, &t);
    t.data = &p.cli;
    uv_timer_start(&t, on_resume_timer, 100, 0);

    p.srv.to_send = BIG_FRAMES;
    p.srv.payload_len = BIG_PAYLOAD;
    produce(&p.srv);
    assert_true(p.srv.saw_congested);
    assert_true(p.srv.sent < BIG_FRAMES);
    /* above max_queued: refused without queueing */
    proto_msg m;
    sample_msg(PROTO_MSG_PIECE_DATA, &m);
    uint8_t *big = pattern(0, 12u << 20);
    size_t before = proto_conn_queued(p.srv.c);
    assert_int_equal(proto_conn_send(p.srv.c, &m, big, 12u << 20, NULL), -ENOBUFS);
    assert_int_equal(proto_conn_queued(p.srv.c), before);
    /* over the peer's payload limit */
    proto_conn_set_peer_max_payload(p.srv.c, 1u << 20);
    assert_int_equal(proto_conn_send(p.srv.c, &m, big, (1u << 20) + 1, NULL), -EMSGSIZE);
    proto_conn_set_peer_max_payload(p.srv.c, 0);
    free(big);

    for (int i = 0; i < 20000 && p.cli.next_seq < BIG_FRAMES; i++) uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(p.cli.next_seq, BIG_FRAMES);
    assert_int_equal(p.cli.pattern_errors, 0);
    assert_true(p.srv.drains >= 1);
    assert_true(p.srv.max_seen_queue <= (16u << 20));
    assert_int_equal(proto_conn_queued(p.srv.c), 0);
    uv_close((uv_handle_t *)&t, NULL);
    tcp_pair_close(&p);
}

static void test_backpressure(void **state)
{
    (void)state;
    backpressure_scenario(NULL, NULL);
}

/* ---- sendfile ---- */

static void sendfile_scenario(bool small, proto_tls *srv_tls, proto_tls *cli_tls)
{
    char path[] = "/tmp/proto_conn_sendfileXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    const size_t flen = 10u << 20;
    uint8_t *content = malloc(flen);
    for (size_t i = 0; i < flen; i++) content[i] = (uint8_t)((i * 2654435761u) >> 13);
    assert_int_equal(write(fd, content, flen), (ssize_t)flen);

    tcp_pair p = {0};
    p.srv_opts.tls = srv_tls;
    p.cli_opts.tls = cli_tls;
    if (small)
        small_pair_open(&p);
    else
        tcp_pair_open(&p);
    proto_conn_pause_read(p.cli.c); /* slow receiver: sendfile hits EAGAIN and must resume */
    uv_timer_t t;
    uv_timer_init(&p.loop, &t);
    t.data = &p.cli;
    uv_timer_start(&t, on_resume_timer, 50, 0);

    proto_msg m;
    const uint64_t offs[] = {0, (1u << 20) + 3, 6u << 20};
    const uint32_t lens[] = {4u << 20, 4u << 20, 4u << 20};
    for (int i = 0; i < 3; i++) {
        sample_msg(PROTO_MSG_PIECE_DATA, &m);
        m.u.piece_data.piece = (uint32_t)i;
        cf_err err = {0};
        assert_int_equal(proto_conn_send_file(p.srv.c, &m, fd, offs[i], lens[i], &err), 0);
        /* a small framed message between file regions keeps its place in the stream */
        sample_msg(PROTO_MSG_LOCAL_OK, &m);
        assert_int_equal(proto_conn_send(p.srv.c, &m, NULL, 0, NULL), 0);
    }
    close(fd); /* the conn holds its own dup */
    for (int i = 0; i < 20000 && p.cli.nframes < 6; i++) uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(p.cli.nframes, 6);
    const uint8_t *q = p.cli.frames.data;
    for (int i = 0; i < 6; i++) {
        proto_frame_header h;
        assert_int_equal(proto_frame_header_decode(q, 0, &h, NULL), 0);
        if (i % 2 == 0) {
            assert_int_equal(h.type, PROTO_MSG_PIECE_DATA);
            assert_int_equal(h.payload_len, lens[i / 2]);
            assert_memory_equal(q + PROTO_FRAME_HEADER_LEN + h.body_len, content + offs[i / 2],
                                lens[i / 2]);
        } else {
            assert_int_equal(h.type, PROTO_MSG_LOCAL_OK);
        }
        q += PROTO_FRAME_HEADER_LEN + h.body_len + h.payload_len;
    }
    assert_int_equal(proto_conn_queued(p.srv.c), 0);

    /* file shorter than announced: the sender cannot complete the frame and closes (-EIO); the
     * receiver sees EOF inside a frame */
    char path2[] = "/tmp/proto_conn_shortXXXXXX";
    int fd2 = mkstemp(path2);
    assert_true(fd2 >= 0);
    unlink(path2);
    assert_int_equal(write(fd2, content, 1000), 1000);
    sample_msg(PROTO_MSG_PIECE_DATA, &m);
    assert_int_equal(proto_conn_send_file(p.srv.c, &m, fd2, 0, 5000, NULL), 0);
    close(fd2);
    run_until(&p.loop, &p.srv.closed, 200);
    assert_int_equal(p.srv.status, -EIO);
    run_until(&p.loop, &p.cli.closed, 200);
    assert_int_equal(p.cli.status, -EPIPE);
    uv_close((uv_handle_t *)&t, NULL);
    tcp_pair_close(&p);
    free(content);
}

static void test_sendfile_tcp(void **state)
{
    (void)state;
    sendfile_scenario(false, NULL, NULL);
}

static void test_sendfile_small_buffers(void **state)
{
    (void)state;
    sendfile_scenario(true, NULL, NULL);
}

/* Back-pressure with file regions only: on_drain fires from sendfile progress and queues more
 * regions (pump() must not nest then). */
static void drain_file_scenario(proto_tls *srv_tls, proto_tls *cli_tls)
{
    const uint32_t frames = 12, plen = 1u << 20;
    char path[] = "/tmp/proto_conn_drainXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd > 0);
    unlink(path);
    for (uint32_t i = 0; i < frames; i++) {
        uint8_t *b = pattern(i, plen);
        assert_int_equal(write(fd, b, plen), (ssize_t)plen);
        free(b);
    }
    tcp_pair p = {0};
    p.srv_opts = (proto_conn_opts){
        .high_watermark = 3u << 20, .low_watermark = (3u << 20) - 1, .tls = srv_tls};
    p.cli_opts.tls = cli_tls;
    small_pair_open(&p);
    p.cli.check_pattern = true;
    p.srv.file_fd = fd;
    p.srv.to_send = frames;
    p.srv.payload_len = plen;
    produce(&p.srv);
    assert_true(p.srv.saw_congested);
    for (int i = 0; i < 20000 && p.cli.next_seq < frames; i++) uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(p.cli.next_seq, frames);
    assert_int_equal(p.cli.pattern_errors, 0);
    assert_true(p.srv.drains >= 1);
    close(fd);
    tcp_pair_close(&p);
}

static void test_drain_during_sendfile(void **state)
{
    (void)state;
    drain_file_scenario(NULL, NULL);
}

/* ---- descriptor passing (proto_conn_send_fd) ---- */

/* A descriptor queued behind other frames on a full socket arrives exactly with its own frame's
 * first bytes, the stream stays byte-exact around it; TCP conns refuse to pass one. */
static void test_send_fd(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    endpoint tx = {0};
    assert_int_equal(proto_conn_open(&loop, sv[0], NULL, &cbs, &tx, &tx.c), 0);
    char path[] = "/tmp/proto_conn_fdXXXXXX";
    int file = mkstemp(path);
    assert_true(file >= 0);
    unlink(path);
    struct stat want_st;
    assert_int_equal(fstat(file, &want_st), 0);

    cf_buf want = {0};
    proto_msg ok, lf;
    sample_msg(PROTO_MSG_LOCAL_OK, &ok);
    sample_msg(PROTO_MSG_LOCAL_FILE, &lf);
    const int before = 3000, after = 5;
    for (int i = 0; i < before; i++) {
        assert_int_equal(proto_conn_send(tx.c, &ok, NULL, 0, NULL), 0);
        assert_int_equal(proto_msg_encode_frame(&ok, 0, &want, NULL), 0);
    }
    size_t fd_at = want.len;
    assert_int_equal(proto_conn_send_fd(tx.c, &lf, file, NULL), 0);
    assert_int_equal(proto_msg_encode_frame(&lf, 0, &want, NULL), 0);
    for (int i = 0; i < after; i++) {
        assert_int_equal(proto_conn_send(tx.c, &ok, NULL, 0, NULL), 0);
        assert_int_equal(proto_msg_encode_frame(&ok, 0, &want, NULL), 0);
    }
    close(file); /* the conn holds its own copy until sent */
    assert_true(proto_conn_queued(tx.c) > 0);

    /* read in small steps (the writer meets EAGAIN), noting where descriptors come */
    uint8_t *got = malloc(want.len);
    size_t have = 0;
    int nfds = 0, rfd = -1;
    size_t rfd_from = 0, rfd_to = 0; /* the bytes of the read the descriptor came with */
    for (int i = 0; i < 100000 && have < want.len; i++) {
        spin(&loop, 1);
        struct iovec iov = {.iov_base = got + have,
                            .iov_len = want.len - have < 700 ? want.len - have : 700};
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(4 * sizeof(int))];
        } ctl;
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = ctl.b,
                            .msg_controllen = sizeof(ctl.b)};
        ssize_t n = recvmsg(sv[1], &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n <= 0) continue;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            assert_int_equal(cm->cmsg_type, SCM_RIGHTS);
            assert_int_equal(cm->cmsg_len, CMSG_LEN(sizeof(int)));
            memcpy(&rfd, CMSG_DATA(cm), sizeof(int));
            rfd_from = have;
            rfd_to = have + (size_t)n;
            nfds++;
        }
        have += (size_t)n;
    }
    assert_int_equal(have, want.len);
    assert_memory_equal(got, want.data, want.len);
    assert_int_equal(nfds, 1);
    /* with the LOCAL_FILE frame's first byte (a read may also hold bytes before it, never
     * stops short of it: a reader of whole frames gets it with that frame's header) */
    assert_true(rfd_from <= fd_at && fd_at < rfd_to);
    struct stat st;
    assert_int_equal(fstat(rfd, &st), 0);
    assert_true(st.st_ino == want_st.st_ino && st.st_dev == want_st.st_dev);
    close(rfd);
    assert_int_equal(proto_conn_queued(tx.c), 0);
    proto_conn_close(tx.c, 0, NULL);
    close(sv[1]);
    drain_loop(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(got);
    cf_buf_free(&want);
    cf_buf_free(&tx.frames);

    /* over TCP: refused, nothing queued */
    tcp_pair p = {0};
    tcp_pair_open(&p);
    cf_err err = {0};
    assert_int_equal(proto_conn_send_fd(p.cli.c, &lf, 0, &err), -ENOTSUP);
    assert_int_equal(proto_conn_queued(p.cli.c), 0);
    tcp_pair_close(&p);
}

/* ---- unix socket listener + connect_pipe, close_after_flush ---- */

static void on_pipe_listen(uv_stream_t *s, int status)
{
    endpoint *e = s->data;
    assert_int_equal(status, 0);
    assert_int_equal(proto_conn_accept(s, NULL, &cbs, e, &e->c), 0);
    e->connected = true;
}

static void test_pipe(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/proto_conn_%d.sock", (int)getpid());
    unlink(path);
    uv_pipe_t server;
    uv_pipe_init(&loop, &server, 0);
    endpoint srv = {0}, cli = {0};
    server.data = &srv;
    assert_int_equal(uv_pipe_bind(&server, path), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&server, 4, on_pipe_listen), 0);
    /* connect to a missing socket: on_close with an error, exactly once */
    endpoint bad = {0};
    assert_int_equal(
        proto_conn_connect_pipe(&loop, "/tmp/proto_conn_missing.sock", NULL, &cbs, &bad, &bad.c),
        0);
    run_until(&loop, &bad.closed, 100);
    assert_true(bad.status < 0);
    /* frames queued before the connection completes are flushed after it */
    assert_int_equal(proto_conn_connect_pipe(&loop, path, NULL, &cbs, &cli, &cli.c), 0);
    proto_msg m;
    sample_msg(PROTO_MSG_LOCAL_READ, &m);
    assert_int_equal(proto_conn_send(cli.c, &m, NULL, 0, NULL), 0);
    run_until(&loop, &cli.connected, 100);
    for (int i = 0; i < 100 && srv.nframes < 1; i++) uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(srv.nframes, 1);
    /* answer with several LOCAL_DATA frames, then close after flushing */
    for (int i = 0; i < 3; i++) {
        sample_msg(PROTO_MSG_LOCAL_DATA, &m);
        m.u.local_data.last = i == 2;
        assert_int_equal(proto_conn_send(srv.c, &m, "0123456789", 10, NULL), 0);
    }
    proto_conn_close_after_flush(srv.c, 0, "done");
    assert_int_equal(proto_conn_send(srv.c, &m, NULL, 0, NULL), -ENOTCONN);
    run_until(&loop, &cli.closed, 200);
    assert_int_equal(cli.nframes, 3);
    assert_int_equal(cli.payload_bytes, 30);
    assert_int_equal(cli.status, 0);
    run_until(&loop, &srv.closed, 200);
    assert_int_equal(srv.status, 0);
    uv_close((uv_handle_t *)&server, NULL);
    drain_loop(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
    unlink(path);
    cf_buf_free(&srv.frames);
    cf_buf_free(&cli.frames);
}

static void test_addr_parse(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    assert_int_equal(proto_addr_parse("10.1.2.3:8002", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(proto_addr_parse("[fd00::1]:4005", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(proto_addr_parse("10.1.2.3", &ss), -EINVAL);
    assert_int_equal(proto_addr_parse("10.1.2.3:", &ss), -EINVAL);
    assert_int_equal(proto_addr_parse("10.1.2.3:65536", &ss), -EINVAL);
    assert_int_equal(proto_addr_parse("10.1.2.3:8x", &ss), -EINVAL);
    assert_int_equal(proto_addr_parse("host.example:80", &ss), -EINVAL);
    assert_int_equal(proto_addr_parse("fd00::1:80", &ss), -EINVAL);
    assert_int_equal(proto_addr_parse("[]:80", &ss), -EINVAL);
}

/* ---- memory held by idle connections ---- */

/* Heap bytes in use (malloc'd, including mmapped chunks). Meaningless under ASan (its own
 * allocator), where the figures are printed but not checked. */
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static size_t vm_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %zu kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

typedef struct idle_ctx {
    uv_loop_t loop;
    uv_tcp_t server;
    proto_conn **srv, **cli;
    size_t n, accepted, connected, srv_frames, cli_frames, closed;
    int bad_status;
} idle_ctx;

static idle_ctx *idle_g;

static void idle_on_frame(proto_conn *c, const proto_frame_header *h, const uint8_t *body,
                          const uint8_t *payload)
{
    (void)payload;
    if (proto_conn_data(c) == idle_g->srv) { /* server side: answer with the same body */
        idle_g->srv_frames++;
        assert_int_equal(proto_conn_send_raw(c, h->type, 0, body, h->body_len, NULL, 0), 0);
    } else {
        idle_g->cli_frames++;
    }
}

static void idle_on_close(proto_conn *c, int status, const char *reason)
{
    (void)c, (void)reason;
    idle_g->closed++;
    if (status != 0) idle_g->bad_status = status;
}

static void idle_on_connect(proto_conn *c)
{
    (void)c;
    idle_g->connected++;
}

static const proto_conn_cbs idle_cbs = {
    .on_frame = idle_on_frame, .on_close = idle_on_close, .on_connect = idle_on_connect};

static void idle_on_listen(uv_stream_t *s, int status)
{
    idle_ctx *x = s->data;
    assert_int_equal(status, 0);
    assert_true(x->accepted < x->n);
    assert_int_equal(proto_conn_accept(s, NULL, &idle_cbs, x->srv, &x->srv[x->accepted]), 0);
    x->accepted++;
}

/* N loopback TCP connections (N accepted proto_conns + N connecting ones in this process), each
 * with one request/answer exchanged, then idle: heap and RSS growth per proto_conn. The figure in
 * docs/protocol.md (§9) comes from this test in a Release build:
 *   ctest --test-dir build-conn-rel -R test_proto_conn -V | grep 'idle conns' */
static void test_idle_memory(void **state)
{
    (void)state;
    size_t n = 2000;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2 * n + 64) {
        rl.rlim_cur = rl.rlim_max < 2 * n + 64 ? rl.rlim_max : 2 * n + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < 2 * n + 64) n = rl.rlim_cur > 264 ? (rl.rlim_cur - 64) / 2 : 100;
    }
    idle_ctx *x = calloc(1, sizeof(*x));
    idle_g = x;
    x->n = n;
    x->srv = calloc(n, sizeof(*x->srv));
    x->cli = calloc(n, sizeof(*x->cli));
    uv_loop_init(&x->loop);
    uv_tcp_init(&x->loop, &x->server);
    x->server.data = x;
    struct sockaddr_storage ss;
    uv_ip4_addr("127.0.0.1", 0, (struct sockaddr_in *)&ss);
    assert_int_equal(uv_tcp_bind(&x->server, (struct sockaddr *)&ss, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&x->server, 511, idle_on_listen), 0);
    int slen = sizeof(ss);
    uv_tcp_getsockname(&x->server, (struct sockaddr *)&ss, &slen);
    proto_msg m;
    sample_msg(PROTO_MSG_HEARTBEAT, &m);
    cf_buf req = {0};
    assert_int_equal(proto_msg_encode_body(&m, &req, NULL), 0);
    spin(&x->loop, 2);

    malloc_trim(0); /* earlier tests' freed buffers would otherwise absorb the growth in RSS */
    size_t heap0 = heap_in_use(), rss0 = vm_rss_kib();
    for (size_t i = 0; i < n; i += 100) {
        size_t end = i + 100 < n ? i + 100 : n;
        for (size_t k = i; k < end; k++)
            assert_int_equal(proto_conn_connect_tcp(&x->loop, (struct sockaddr *)&ss, NULL,
                                                    &idle_cbs, x->cli, &x->cli[k]),
                             0);
        for (int it = 0; it < 2000 && (x->accepted < end || x->connected < end); it++)
            uv_run(&x->loop, UV_RUN_ONCE);
        assert_int_equal(x->accepted, end);
        assert_int_equal(x->connected, end);
    }
    for (size_t k = 0; k < n; k++)
        assert_int_equal(
            proto_conn_send_raw(x->cli[k], PROTO_MSG_HEARTBEAT, 0, req.data, req.len, NULL, 0), 0);
    for (int it = 0; it < 20000 && x->cli_frames < n; it++) uv_run(&x->loop, UV_RUN_ONCE);
    assert_int_equal(x->srv_frames, n);
    assert_int_equal(x->cli_frames, n);
    spin(&x->loop, 5);
    size_t heap1 = heap_in_use(), rss1 = vm_rss_kib();
    double heap_per = (double)(heap1 - heap0) / (double)(2 * n);
    double rss_per = rss1 > rss0 ? (double)(rss1 - rss0) * 1024.0 / (double)(2 * n) : 0.0;
    printf("idle conns: %zu (x2 ends), heap %.0f B/conn, VmRSS %.0f B/conn (%zu -> %zu KiB)%s\n", n,
           heap_per, rss_per, rss0, rss1, UNDER_ASAN ? " [ASan: not checked]" : "");
    if (!UNDER_ASAN) assert_true(heap_per < 2048);

    for (size_t k = 0; k < n; k++) {
        proto_conn_close(x->cli[k], 0, NULL);
        proto_conn_close(x->srv[k], 0, NULL);
    }
    uv_close((uv_handle_t *)&x->server, NULL);
    drain_loop(&x->loop);
    assert_int_equal(x->closed, 2 * n);
    assert_int_equal(x->bad_status, 0);
    assert_int_equal(uv_loop_close(&x->loop), 0);
    cf_buf_free(&req);
    free(x->srv);
    free(x->cli);
    free(x);
    idle_g = NULL;
}

/* A frame announcing a 16 MiB payload arrives slowly: the conn holds about what arrived (not
 * the announced size), a pause with a partial frame behind a complete one keeps it across
 * resume, the payload is delivered intact, and the frame's memory is released after on_frame. */
static void test_partial_large_frame(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    endpoint rx = {.pause_at = 1};
    assert_int_equal(proto_conn_open(&loop, sv[0], NULL, &cbs, &rx, &rx.c), 0);
    spin(&loop, 2);
    cf_buf first = {0}, big = {0};
    proto_msg m;
    sample_msg(PROTO_MSG_LOCAL_OK, &m);
    assert_int_equal(proto_msg_encode_frame(&m, 0, &first, NULL), 0);
    const uint32_t plen = PROTO_MAX_PAYLOAD;
    sample_msg(PROTO_MSG_PIECE_DATA, &m);
    assert_int_equal(proto_msg_encode_frame(&m, plen, &big, NULL), 0);
    uint8_t *payload = pattern(7, plen);
    cf_buf_append(&big, payload, plen);
    free(payload);

    size_t heap0 = heap_in_use();
    /* one complete frame, then the big frame's header, body and 100 payload bytes in one write:
     * on_frame pauses after the first, the rest waits in the backlog */
    size_t part = big.len - plen + 100;
    cf_buf_append(&first, big.data, part);
    assert_int_equal(write(sv[1], first.data, first.len), (ssize_t)first.len);
    spin(&loop, 5);
    assert_int_equal(rx.nframes, 1);
    rx.pause_at = 0;
    assert_int_equal(proto_conn_resume_read(rx.c), 0);
    spin(&loop, 5);
    assert_int_equal(rx.nframes, 1);
    size_t held = heap_in_use() - heap0;
    printf("partial 16 MiB frame, %zu bytes received: %zu heap bytes held\n", part, held);
    if (!UNDER_ASAN) assert_true(held < (256u << 10));

    /* the rest, in uneven slices (some smaller than a direct read, some larger); non-blocking
     * writer, the reader runs on this thread */
    assert_int_equal(fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK), 0);
    size_t off = part, step = 1000;
    while (off < big.len) {
        size_t n = big.len - off < step ? big.len - off : step;
        ssize_t w = write(sv[1], big.data + off, n);
        if (w > 0) off += (size_t)w;
        spin(&loop, 1);
        step = step < (1u << 20) ? step * 3 : 1000;
    }
    for (int i = 0; i < 1000 && rx.nframes < 2; i++) spin(&loop, 1);
    assert_int_equal(rx.nframes, 2);
    assert_int_equal(rx.payload_bytes, plen);
    size_t first_len = first.len - part;
    assert_int_equal(rx.frames.len, first_len + big.len);
    assert_memory_equal(rx.frames.data + first_len, big.data, big.len);
    cf_buf_free(&rx.frames);
    /* frame released; what remains is the per-thread 64 KiB read buffer (first read after heap0) */
    if (!UNDER_ASAN) assert_true(heap_in_use() < heap0 + (96u << 10));

    close(sv[1]);
    run_until(&loop, &rx.closed, 100);
    assert_int_equal(rx.status, 0);
    drain_loop(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
    cf_buf_free(&first);
    cf_buf_free(&big);
}

/* ---- body limit before HELLO, and the process-wide budget on partial frames ---- */

/* Writes a frame header announcing body_len + payload_len, then `send` bytes of it. */
static void write_partial(int fd, uint32_t body_len, uint32_t payload_len, size_t send)
{
    proto_frame_header h;
    uint8_t raw[PROTO_FRAME_HEADER_LEN];
    proto_frame_header_init(&h, PROTO_MSG_PIECE_DATA, 0, body_len, payload_len);
    proto_frame_header_encode(&h, raw);
    assert_int_equal(write(fd, raw, sizeof(raw)), (ssize_t)sizeof(raw));
    uint8_t *junk = calloc(1, send ? send : 1);
    assert_int_equal(write(fd, junk, send), (ssize_t)send);
    free(junk);
}

static void test_limits_before_hello(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    /* a 2 KiB body on a connection limited to PROTO_PRE_HELLO_MAX_BODY: refused from the header */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    endpoint rx = {0};
    proto_conn_opts o = {.max_body = PROTO_PRE_HELLO_MAX_BODY};
    assert_int_equal(proto_conn_open(&loop, sv[0], &o, &cbs, &rx, &rx.c), 0);
    write_partial(sv[1], 2048, 0, 0);
    run_until(&loop, &rx.closed, 100);
    assert_int_equal(rx.status, -EMSGSIZE);
    assert_non_null(strstr(rx.reason, "over this connection's limit"));
    close(sv[1]);

    /* raised after the handshake: the same frame is delivered */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    endpoint rx2 = {0};
    assert_int_equal(proto_conn_open(&loop, sv[0], &o, &cbs, &rx2, &rx2.c), 0);
    proto_conn_set_max_body(rx2.c, 0);
    write_partial(sv[1], 2048, 0, 2048);
    for (int i = 0; i < 100 && rx2.nframes < 1; i++) uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(rx2.nframes, 1);
    close(sv[1]);
    run_until(&loop, &rx2.closed, 100);
    cf_buf_free(&rx2.frames);

    /* budget: 3 conns each half-send a 200 KiB frame; with a 512 KiB budget the one that
     * would cross it is closed with -ENOBUFS, the others keep their frames and complete */
    proto_conn_set_input_budget(512u << 10);
    size_t held0 = proto_conn_input_held();
    enum { N = 4 };
    int fds[N][2];
    endpoint ep[N];
    memset(ep, 0, sizeof(ep));
    for (int i = 0; i < N; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i]), 0);
        assert_int_equal(proto_conn_open(&loop, fds[i][0], NULL, &cbs, &ep[i], &ep[i].c), 0);
        write_partial(fds[i][1], 16, 200u << 10, 150u << 10);
        spin(&loop, 20);
    }
    int refused = 0;
    for (int i = 0; i < N; i++)
        if (ep[i].closed) {
            refused++;
            assert_int_equal(ep[i].status, -ENOBUFS);
            assert_non_null(strstr(ep[i].reason, "input budget"));
        }
    assert_true(refused >= 1 && refused <= 2);
    assert_true(proto_conn_input_held() - held0 <= (512u << 10));
    /* the survivors complete their frames; then nothing is held */
    for (int i = 0; i < N; i++) {
        if (ep[i].closed) continue;
        size_t rest = 16 + (200u << 10) - (150u << 10);
        uint8_t *junk = calloc(1, rest);
        assert_int_equal(write(fds[i][1], junk, rest), (ssize_t)rest);
        free(junk);
        for (int k = 0; k < 100 && ep[i].nframes < 1; k++) uv_run(&loop, UV_RUN_ONCE);
        assert_int_equal(ep[i].nframes, 1);
    }
    assert_int_equal(proto_conn_input_held(), held0);
    for (int i = 0; i < N; i++) {
        close(fds[i][1]);
        if (!ep[i].closed) run_until(&loop, &ep[i].closed, 100);
        cf_buf_free(&ep[i].frames);
    }
    proto_conn_set_input_budget(PROTO_CONN_DEF_INPUT_BUDGET);
    drain_loop(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- mutual TLS ---- */

static char tls_dir[64];
static proto_tls *tls_a, *tls_b, *tls_rogue;

static proto_tls *tls_load(const char *node, const char *ca)
{
    char crt[128], key[128], cap[128];
    snprintf(crt, sizeof(crt), "%s/%s.crt", tls_dir, node);
    snprintf(key, sizeof(key), "%s/%s.key", tls_dir, node);
    snprintf(cap, sizeof(cap), "%s/%s.crt", tls_dir, ca);
    proto_tls *t = NULL;
    cf_err err = {0};
    int r = proto_tls_new(crt, key, cap, &t, &err);
    if (r) fail_msg("%s", err.msg);
    return t;
}

static int tls_setup(void **state)
{
    (void)state;
    snprintf(tls_dir, sizeof(tls_dir), "/tmp/proto_conn_tls_XXXXXX");
    if (!mkdtemp(tls_dir)) return -1;
    test_ca ca, rogue;
    tc_ca_new(&ca, tls_dir, "mesh-ca");
    tc_ca_new(&rogue, tls_dir, "rogue-ca");
    tc_node(&ca, tls_dir, "a", "ignored-cn", "DNS:node-a,DNS:alias-a");
    tc_node(&ca, tls_dir, "b", "node-b", NULL);               /* no SAN: the CN is the identity */
    tc_node(&rogue, tls_dir, "rogue", "rogue", "DNS:node-a"); /* claims node-a, wrong CA */
    tc_ca_free(&ca);
    tc_ca_free(&rogue);
    tls_a = tls_load("a", "mesh-ca");
    tls_b = tls_load("b", "mesh-ca");
    tls_rogue = tls_load("rogue", "mesh-ca"); /* trusts the mesh, but is not signed by it */
    return 0;
}

static int tls_teardown(void **state)
{
    (void)state;
    proto_tls_free(tls_a);
    proto_tls_free(tls_b);
    proto_tls_free(tls_rogue);
    const char *files[] = {"mesh-ca.crt", "rogue-ca.crt", "a.crt",     "a.key",
                           "b.crt",       "b.key",        "rogue.crt", "rogue.key"};
    char p[128];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", tls_dir, files[i]);
        unlink(p);
    }
    rmdir(tls_dir);
    return 0;
}

static void test_tls_config(void **state)
{
    (void)state;
    int on = -1;
    cf_err err = {0};
    assert_int_equal(proto_tls_config_check(NULL, NULL, NULL, &on, &err), 0);
    assert_int_equal(on, 0);
    assert_int_equal(proto_tls_config_check("c", "k", "a", &on, &err), 0);
    assert_int_equal(on, 1);
    assert_int_equal(proto_tls_config_check("c", NULL, "", &on, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "tls_key and tls_ca are missing"));
    assert_int_equal(proto_tls_config_check(NULL, "k", "a", &on, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "tls_cert is missing"));

    char crt[128], key[128], ca[128];
    snprintf(crt, sizeof(crt), "%s/a.crt", tls_dir);
    snprintf(key, sizeof(key), "%s/b.key", tls_dir);
    snprintf(ca, sizeof(ca), "%s/mesh-ca.crt", tls_dir);
    proto_tls *t = NULL;
    assert_int_equal(proto_tls_new(crt, "/nonexistent/x.key", ca, &t, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "tls_key /nonexistent/x.key: cannot read"));
    assert_int_equal(proto_tls_new(crt, key, ca, &t, &err), -EINVAL); /* b's key, a's cert */
    assert_non_null(strstr(err.msg, "does not belong to tls_cert"));
    assert_int_equal(proto_tls_new(crt, crt, ca, &t, &err), -EBADMSG); /* cert as key */
    assert_non_null(strstr(err.msg, "tls_key"));
    assert_int_equal(proto_tls_new(key, key, ca, &t, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "tls_cert"));
    assert_null(t);
    /* identity: the first DNS SAN, else the CN */
    assert_string_equal(proto_tls_identity(tls_a), "node-a");
    assert_string_equal(proto_tls_identity(tls_b), "node-b");
}

static void test_tls_handshake_frames(void **state)
{
    (void)state;
    tcp_pair p = {0};
    p.srv_opts.tls = tls_a;
    p.cli_opts.tls = tls_b;
    tcp_pair_open(&p);
    assert_true(proto_conn_is_tls(p.cli.c));
    /* the client's on_connect comes after its handshake: the server's identity is known */
    assert_string_equal(proto_conn_peer_identity(p.cli.c), "node-a");
    p.srv.do_handshake = p.cli.do_handshake = true;
    proto_hello_init(&p.srv.hello, "sched-1", PROTO_ROLE_SCHEDULER, 0, 0);
    proto_hello_init(&p.cli.hello, "peer-1", PROTO_ROLE_PEER, 0, 0);
    proto_msg m = {.type = PROTO_MSG_HELLO};
    m.u.hello = p.cli.hello;
    assert_int_equal(proto_conn_send(p.cli.c, &m, NULL, 0, NULL), 0);
    /* and a stream of mixed frames after it */
    cf_buf stream = {0};
    build_stream(&stream);
    for (int i = 0; i < 50; i++) {
        const uint8_t *q = stream.data;
        while (q < stream.data + stream.len) {
            proto_frame_header h;
            assert_int_equal(proto_frame_header_decode(q, 0, &h, NULL), 0);
            assert_int_equal(proto_conn_send_raw(
                                 p.cli.c, h.type, h.flags, q + PROTO_FRAME_HEADER_LEN, h.body_len,
                                 q + PROTO_FRAME_HEADER_LEN + h.body_len, h.payload_len),
                             0);
            q += PROTO_FRAME_HEADER_LEN + h.body_len + h.payload_len;
        }
    }
    /* the server answers every HELLO (the stream holds one) */
    for (int i = 0; i < 400 && (p.cli.nframes < 51 || p.srv.nframes < 201); i++)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(p.cli.nframes, 51);
    assert_int_equal(p.srv.nframes, 201);
    assert_memory_equal(p.srv.frames.data + p.srv.frames.len - stream.len, stream.data, stream.len);
    assert_string_equal(proto_conn_peer_identity(p.srv.c), "node-b");
    assert_false(p.cli.closed || p.srv.closed);
    cf_buf_free(&stream);
    tcp_pair_close(&p);
    assert_int_equal(p.cli.status, 0);
}

static void test_tls_backpressure(void **state)
{
    (void)state;
    backpressure_scenario(tls_a, tls_b);
}

static void test_tls_file_regions(void **state)
{
    (void)state;
    sendfile_scenario(false, tls_a, tls_b);
    sendfile_scenario(true, tls_a, tls_b);
    drain_file_scenario(tls_a, tls_b);

    /* closed while a thread-pool read of a region is in flight: one on_close, nothing leaks */
    char path[] = "/tmp/proto_conn_tlscloseXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(ftruncate(fd, 8u << 20), 0);
    tcp_pair p = {0};
    p.srv_opts.tls = tls_a;
    p.cli_opts.tls = tls_b;
    tcp_pair_open(&p);
    proto_msg m;
    sample_msg(PROTO_MSG_PIECE_DATA, &m);
    for (int i = 0; i < 4; i++)
        assert_int_equal(proto_conn_send_file(p.srv.c, &m, fd, 0, 2u << 20, NULL), 0);
    close(fd);
    spin(&p.loop, 2);
    proto_conn_close(p.srv.c, -ECANCELED, "test");
    run_until(&p.loop, &p.srv.closed, 200);
    assert_int_equal(p.srv.status, -ECANCELED);
    tcp_pair_close(&p);
}

/* Runs one refused connection to its end on both sides. */
static void refused_pair(tcp_pair *p, proto_tls *srv_tls, proto_tls *cli_tls)
{
    p->srv_opts.tls = srv_tls;
    p->cli_opts.tls = cli_tls;
    p->expect_fail = true;
    tcp_pair_open(p);
    proto_msg m;
    sample_msg(PROTO_MSG_HELLO, &m);
    assert_int_equal(proto_conn_send(p->cli.c, &m, NULL, 0, NULL), 0);
    run_until(&p->loop, &p->cli.closed, 400);
    run_until(&p->loop, &p->accepted, 100);
    run_until(&p->loop, &p->srv.closed, 400);
    assert_int_equal(p->srv.nframes, 0); /* nothing got through */
}

static void test_tls_refusals(void **state)
{
    (void)state;
    /* plaintext client on a TLS port */
    tcp_pair p = {0};
    refused_pair(&p, tls_a, NULL);
    assert_int_equal(p.srv.status, -EPROTO);
    assert_non_null(strstr(p.srv.reason, "plaintext connection refused"));
    tcp_pair_close(&p);

    /* TLS client to a plain port: the plain side sees a bad frame, the client a failed handshake */
    tcp_pair q = {0};
    refused_pair(&q, NULL, tls_b);
    assert_true(q.srv.status < 0);
    assert_int_equal(q.cli.status, -EPROTO);
    assert_non_null(strstr(q.cli.reason, "TLS handshake"));
    assert_false(q.cli.connected);
    tcp_pair_close(&q);

    /* client certificate from another CA (claiming the identity node-a) */
    tcp_pair r = {0};
    refused_pair(&r, tls_a, tls_rogue);
    assert_int_equal(r.srv.status, -EACCES);
    assert_non_null(strstr(r.srv.reason, "certificate is not accepted"));
    assert_true(r.cli.status < 0);
    tcp_pair_close(&r);

    /* server certificate from another CA: the client refuses it */
    tcp_pair s2 = {0};
    refused_pair(&s2, tls_rogue, tls_b);
    assert_int_equal(s2.cli.status, -EACCES);
    assert_non_null(strstr(s2.cli.reason, "certificate is not accepted"));
    assert_false(s2.cli.connected);
    assert_true(s2.srv.status < 0);
    tcp_pair_close(&s2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_every_byte),
        cmocka_unit_test(test_pooled_frames),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_pause_mid_buffer),
        cmocka_unit_test(test_handshake_tcp),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_sendfile_tcp),
        cmocka_unit_test(test_sendfile_small_buffers),
        cmocka_unit_test(test_drain_during_sendfile),
        cmocka_unit_test(test_pipe),
        cmocka_unit_test(test_addr_parse),
        cmocka_unit_test(test_idle_memory),
        cmocka_unit_test(test_partial_large_frame),
        cmocka_unit_test(test_limits_before_hello),
        cmocka_unit_test(test_send_fd),
    };
    const struct CMUnitTest tls_tests[] = {
        cmocka_unit_test(test_tls_config),       cmocka_unit_test(test_tls_handshake_frames),
        cmocka_unit_test(test_tls_backpressure), cmocka_unit_test(test_tls_file_regions),
        cmocka_unit_test(test_tls_refusals),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + cmocka_run_group_tests_name("tls", tls_tests, tls_setup, tls_teardown);
}
