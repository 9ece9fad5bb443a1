/* libFuzzer target: arbitrary bytes from a client into the proto_http server (request line,
 * headers, bodies, pipelining, limits), through a real socketpair and the real libuv loop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "proto/http_server.h"

static uv_loop_t loop;
static proto_http_server *srv;

static void h_ok(proto_http_res *r, const proto_http_req *q, void *a)
{
    (void)a;
    char id[64];
    int n = proto_http_query_get(q->query, "id", id, sizeof(id));
    const char *h = proto_http_header_get(q, "host");
    char body[256];
    int bl = snprintf(body, sizeof(body), "%s %s %d %zu %s\n", q->method, q->path, n, q->body_len,
                      h ? h : "");
    proto_http_set_header(r, "X-Fuzz", "1");
    if (bl < 0 || (size_t)bl >= sizeof(body)) bl = (int)sizeof(body) - 1; /* truncated */
    proto_http_respond(r, 200, "text/plain", body, (size_t)bl);
}

static void h_stream(proto_http_res *r, const proto_http_req *q, void *a)
{
    (void)q;
    (void)a;
    proto_http_start(r, 200, NULL, -1);
    proto_http_write(r, "abc", 3, NULL, NULL);
    proto_http_end(r);
}

/* a sendfile region between copied writes (its own queue in the server), chunked or not */
static int file_fd = -1;
static void f_done(proto_http_res *r, int status, void *arg)
{
    (void)arg;
    if (status == 0) proto_http_end(r);
}

static void h_file(proto_http_res *r, const proto_http_req *q, void *a)
{
    (void)a;
    int chunked = q->query[0] != 0;
    proto_http_start(r, 200, NULL, chunked ? -1 : 3 + 200000);
    proto_http_write(r, "abc", 3, NULL, NULL);
    if (proto_http_sendfile(r, file_fd, 7, 200000, f_done, NULL)) proto_http_abort(r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    struct proto_http_limits l;
    proto_http_limits_default(&l);
    l.max_header_bytes = 1024;
    l.max_body_bytes = 512;
    proto_http_server_new(&loop, &l, &srv);
    proto_http_route(srv, "GET", "/status", h_ok, NULL);
    proto_http_route(srv, "POST", "/p/*", h_ok, NULL);
    proto_http_route(srv, "GET", "/s", h_stream, NULL);
    proto_http_route(srv, "GET", "/f", h_file, NULL);
    char path[] = "/tmp/cf-fuzz-http-XXXXXX";
    file_fd = mkstemp(path);
    if (file_fd >= 0) {
        unlink(path);
        static char zeros[1 << 16];
        for (int i = 0; i < 4; i++)
            if (write(file_fd, zeros, sizeof(zeros)) != (ssize_t)sizeof(zeros)) break;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char query[128];
    size_t ql = size < sizeof(query) - 1 ? size : sizeof(query) - 1;
    memcpy(query, data, ql);
    query[ql] = 0;
    char out[32];
    proto_http_query_get(query, "id", out, sizeof(out));

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 0;
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    size_t off = 0;
    if (proto_http_adopt_fd(srv, sv[1])) {
        close(sv[0]);
        return 0;
    }
    char buf[65536];
    int closed = 0, shut = 0;
    for (int i = 0; i < 10000 && !closed; i++) {
        if (off < size) {
            ssize_t w = send(sv[0], data + off, size - off, MSG_NOSIGNAL);
            if (w > 0) off += (size_t)w;
        } else if (!shut) {
            shutdown(sv[0], SHUT_WR);
            shut = 1;
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        for (;;) {
            ssize_t r = recv(sv[0], buf, sizeof(buf), 0);
            if (r == 0) closed = 1;
            if (r <= 0) break;
        }
    }
    close(sv[0]);
    /* let the server finish closing its side */
    for (int i = 0; i < 100; i++) {
        struct proto_http_stats st;
        proto_http_stats_get(srv, &st);
        if (st.connections_open == 0) break;
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    return 0;
}
