/* libFuzzer target: proto_grpc's connection (nghttp2 server session, calls, framing, limits)
 * fed arbitrary client bytes in memory, no socket. Input: byte 0 flags (bit 0: prepend the
 * client preface and an empty SETTINGS, so the rest reaches the frame layer; bit 1: finish the
 * deferred calls after the connection is freed rather than before; bit 2: the output sink
 * reports "full" now and then), byte 1 the receive chunk size - 1; the rest is what the client
 * sends. Methods: /a echoes (and reads request headers), /s streams three messages, /d finishes
 * later (echo, or the call is gone and send must say -EPIPE). Never crash, leak or hand a handler a
 * message over the limit. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cf/grpc.h"
#include "grpc_internal.h"

#define MAX_MESSAGE  4096
#define MAX_DEFERRED 64

static uv_loop_t loop;
static cf_grpc_server *srv;
static cf_grpc_call *deferred[MAX_DEFERRED];
static size_t n_deferred;
static cf_grpc_conn *conn;
static unsigned sink_calls;
static int sink_pauses;

static void on_echo(cf_grpc_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    if (len > MAX_MESSAGE) abort();
    uint8_t x = 0;
    for (size_t i = 0; i < len; i++) x ^= req[i];
    (void)x;
    if (strcmp(cf_grpc_call_path(call), "/a") != 0) abort();
    /* request metadata: every stored value is a NUL-terminated string */
    static const char *const names[] = {"content-type", "te", "grpc-timeout", "x-t", "zz"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = cf_grpc_call_header(call, names[i]);
        if (v) x ^= (uint8_t)strlen(v);
    }
    cf_grpc_call_send(call, req, len);
    cf_grpc_call_finish(call, len ? CF_GRPC_OK : CF_GRPC_INVALID_ARGUMENT, "100% \xff");
}

static void on_stream(cf_grpc_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) cf_grpc_call_send(call, req, len);
    cf_grpc_call_finish(call, CF_GRPC_OK, NULL);
}

static void on_deferred(cf_grpc_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    (void)req;
    (void)len;
    if (n_deferred == MAX_DEFERRED) {
        cf_grpc_call_finish(call, CF_GRPC_RESOURCE_EXHAUSTED, "busy");
        return;
    }
    deferred[n_deferred++] = call;
}

static void finish_deferred(size_t keep)
{
    while (n_deferred > keep) {
        cf_grpc_call *call = deferred[--n_deferred];
        int rc = cf_grpc_call_send(call, (const uint8_t *)"late", 4);
        if (cf_grpc_call_gone(call) && rc != -EPIPE) abort();
        cf_grpc_call_finish(call, CF_GRPC_OK, NULL);
    }
}

static int sink(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    sink_calls++;
    return sink_pauses && sink_calls % 3 == 0 ? 1 : 0;
}

static void kick(void *ctx)
{
    (void)ctx;
    cf_grpc_conn_flush(conn);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cf_grpc_limits lim = {
        .max_message = MAX_MESSAGE, .max_streams_per_conn = 8, .max_header_bytes = 2048};
    if (uv_loop_init(&loop) != 0 || cf_grpc_server_new(&loop, &lim, &srv, NULL) != 0 ||
        cf_grpc_server_add(srv, "/a", on_echo, NULL, NULL) != 0 ||
        cf_grpc_server_add(srv, "/s", on_stream, NULL, NULL) != 0 ||
        cf_grpc_server_add(srv, "/d", on_deferred, NULL, NULL) != 0)
        abort();
    /* Small enough that a few streams reach them: -ENOBUFS and the request budget get fuzzed. */
    srv->max_queued = 3 * MAX_MESSAGE;
    srv->req_budget = 2 * MAX_MESSAGE;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                     "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    if (size < 2) return 0;
    uint8_t flags = data[0];
    size_t chunk = (size_t)data[1] + 1;
    data += 2;
    size -= 2;
    static const struct cf_grpc_conn_ops ops = {sink, kick};
    sink_calls = 0;
    sink_pauses = flags & 4;
    if (cf_grpc_conn_new(srv, &ops, NULL, &conn, NULL) != 0) return 0;
    int rc = 0;
    if (flags & 1) rc = cf_grpc_conn_recv(conn, preface, sizeof(preface) - 1);
    for (size_t off = 0; rc == 0 && off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        rc = cf_grpc_conn_recv(conn, data + off, n);
        if (cf_grpc_conn_flush(conn) < 0) break;
        finish_deferred(n_deferred / 2); /* some finish while the connection lives */
        if (cf_grpc_conn_done(conn)) break;
    }
    cf_grpc_conn_flush(conn);
    if (flags & 2) {
        cf_grpc_conn_free(conn);
        conn = NULL;
        finish_deferred(0);
    } else {
        finish_deferred(0);
        cf_grpc_conn_flush(conn);
        cf_grpc_conn_free(conn);
        conn = NULL;
    }
    return 0;
}
