/* libFuzzer target: proto_conn's stream reassembly over a real socketpair.
 * Input: byte 0 seeds the write splits and the reader's pauses, byte 1 picks the receive limits
 * (bit 0: the 1 KiB pre-HELLO body limit, bit 1: a 64 KiB payload limit, bit 2: a tiny input
 * budget); the rest is the byte stream a peer sends. The conn must deliver frames whose lengths
 * match their headers and stay within the limits, or close with an error; never crash, leak
 * or hold more than the budget. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "proto/conn.h"
#include "proto/handshake.h"
#include "proto/msg.h"

struct state {
    proto_conn *c;
    uint32_t max_body, max_payload;
    uint32_t rng;
    int closed, paused;
    size_t frames;
};

static uint32_t next(struct state *s)
{
    s->rng = s->rng * 1103515245u + 12345u;
    return s->rng >> 16;
}

static void on_frame(proto_conn *c, const proto_frame_header *h, const uint8_t *body,
                     const uint8_t *payload)
{
    struct state *s = proto_conn_data(c);
    if (h->body_len > s->max_body || h->payload_len > s->max_payload) abort();
    /* touch every byte: a wrong length would read out of bounds under ASan */
    uint8_t x = 0;
    for (uint32_t i = 0; i < h->body_len; i++) x ^= body[i];
    for (uint32_t i = 0; i < h->payload_len; i++) x ^= payload[i];
    (void)x;
    proto_msg m;
    if (proto_msg_decode(h->type, body, h->body_len, h->payload_len, &m, NULL) == 0)
        proto_msg_free(&m);
    s->frames++;
    if (next(s) % 4 == 0) {
        proto_conn_pause_read(c);
        s->paused = 1;
    }
}

static void on_close(proto_conn *c, int status, const char *reason)
{
    struct state *s = proto_conn_data(c);
    (void)status;
    (void)reason;
    s->closed = 1;
    s->c = NULL;
}

static void pump(uv_loop_t *loop, struct state *s)
{
    for (int i = 0; i < 4; i++) {
        if (s->paused && s->c) {
            s->paused = 0;
            proto_conn_resume_read(s->c);
        }
        uv_run(loop, UV_RUN_NOWAIT);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1u << 20)) return 0;
    struct state s = {.rng = data[0], .max_body = PROTO_MAX_BODY, .max_payload = PROTO_MAX_PAYLOAD};
    proto_conn_opts o = {0};
    if (data[1] & 1) o.max_body = s.max_body = PROTO_PRE_HELLO_MAX_BODY;
    if (data[1] & 2) o.max_payload = s.max_payload = 64u << 10;
    proto_conn_set_input_budget(data[1] & 4 ? 32u << 10 : PROTO_CONN_DEF_INPUT_BUDGET);
    data += 2, size -= 2;

    uv_loop_t loop;
    if (uv_loop_init(&loop)) return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) abort();
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    static const proto_conn_cbs cbs = {.on_frame = on_frame, .on_close = on_close};
    if (proto_conn_open(&loop, sv[0], &o, &cbs, &s, &s.c)) abort();
    size_t off = 0;
    while (off < size && !s.closed) {
        size_t n = 1 + next(&s) % 4096;
        if (n > size - off) n = size - off;
        ssize_t w = write(sv[1], data + off, n);
        if (w > 0) off += (size_t)w;
        pump(&loop, &s);
        if (w < 0 && errno != EAGAIN) break;
    }
    close(sv[1]);
    for (int i = 0; i < 1000 && !s.closed; i++) pump(&loop, &s);
    if (!s.closed) abort(); /* EOF must always end the conn */
    while (uv_run(&loop, UV_RUN_NOWAIT)) {
    }
    if (uv_loop_close(&loop)) abort();
    if (proto_conn_input_held() != 0) abort(); /* every partial frame released */
    return 0;
}
