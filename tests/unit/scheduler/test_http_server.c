/* proto_http server over real sockets: the loop runs in a thread, the test talks to it with
 * plain blocking sockets. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "proto/http_server.h"

static uv_loop_t loop;
static proto_http_server *srv;
static int port;
static pthread_t thr;
static uv_async_t stop_async;
static char file_path[] = "/tmp/cf-http-test-XXXXXX";
static int file_fd = -1;
static unsigned char file_data[300000];
static volatile int aborted;

static void h_hello(proto_http_res *r, const proto_http_req *q, void *a)
{
    (void)q;
    (void)a;
    proto_http_set_header(r, "X-Test", "1");
    proto_http_respond(r, 200, "text/plain", "hello", 5);
}

static void h_echo(proto_http_res *r, const proto_http_req *q, void *a)
{
    (void)a;
    char id[64] = "";
    int n = proto_http_query_get(q->query, "id", id, sizeof(id));
    char body[256];
    int bl = snprintf(body, sizeof(body), "%s|%s|%d|%s", q->path, n >= 0 ? id : "-", n,
                      proto_http_header_get(q, "x-hdr") ? proto_http_header_get(q, "x-hdr") : "");
    if (bl < 0 || (size_t)bl >= sizeof(body)) bl = (int)sizeof(body) - 1; /* truncated */
    proto_http_respond(r, 200, "text/plain", body, (size_t)bl);
}

static void stream_next(proto_http_res *r, int status, void *arg)
{
    intptr_t i = (intptr_t)arg;
    assert_int_equal(status, 0);
    if (i == 3) {
        proto_http_end(r);
        return;
    }
    char part[32];
    int n = snprintf(part, sizeof(part), "part%d;", (int)i);
    proto_http_write(r, part, (size_t)n, stream_next, (void *)(i + 1));
}

static void h_stream(proto_http_res *r, const proto_http_req *q, void *a)
{
    (void)q;
    (void)a;
    proto_http_start(r, 200, "text/plain", -1);
    stream_next(r, 0, (void *)0);
}

static void file_done(proto_http_res *r, int status, void *arg)
{
    (void)arg;
    assert_int_equal(status, 0);
    proto_http_end(r);
}

static void h_file(proto_http_res *r, const proto_http_req *q, void *a)
{
    (void)q;
    (void)a;
    proto_http_start(r, 200, "application/octet-stream", 200000);
    proto_http_send_file(r, file_fd, 100, 200000, file_done, NULL);
}

/* sendfile: "head" + sf_data[50, 50 + SF_LEN) + "tail"; chunked (/sfc) or with a Content-Length;
 * /sfshort asks for bytes past the end of the file. Larger than loopback's socket buffers, so
 * the region has to wait for the client. */
#define SF_OFF  50
#define SF_LEN  (6000000)
#define SF_SIZE (8u << 20)
static char sf_path[] = "/tmp/cf-http-sf-XXXXXX";
static int sf_fd = -1;
static unsigned char *sf_data;
static void sf_tail_done(proto_http_res *r, int status, void *arg)
{
    (void)arg;
    assert_int_equal(status, 0);
    proto_http_end(r);
}

static void sf_done(proto_http_res *r, int status, void *arg)
{
    (void)arg;
    assert_int_equal(status, 0);
    assert_int_equal(proto_http_write(r, "tail", 4, sf_tail_done, NULL), 0);
}

static void h_sf(proto_http_res *r, const proto_http_req *q, void *a)
{
    (void)a;
    int chunked = strcmp(q->path, "/sfc") == 0, shrt = strcmp(q->path, "/sfshort") == 0;
    proto_http_start(r, 200, "application/octet-stream", chunked ? -1 : SF_LEN + 8);
    assert_int_equal(proto_http_write(r, "head", 4, NULL, NULL), 0);
    uint64_t off = shrt ? SF_SIZE - 1000 : SF_OFF;
    assert_int_equal(proto_http_sendfile(r, sf_fd, off, SF_LEN, sf_done, NULL), 0);
}

struct later {
    uv_timer_t t;
    proto_http_res *r;
};

static void on_abort(proto_http_res *r, void *arg)
{
    (void)r;
    struct later *l = arg;
    l->r = NULL;
    aborted++;
}

static void later_fire(uv_timer_t *t)
{
    struct later *l = t->data;
    if (l->r) proto_http_respond(l->r, 202, "text/plain", "later", 5);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void h_async(proto_http_res *r, const proto_http_req *q, void *a)
{
    (void)q;
    (void)a;
    struct later *l = calloc(1, sizeof(*l));
    l->r = r;
    proto_http_on_abort(r, on_abort, l);
    uv_timer_init(&loop, &l->t);
    l->t.data = l;
    uv_timer_start(&l->t, later_fire, 200, 0);
}

static void on_stop(uv_async_t *a)
{
    proto_http_server_close(srv, NULL, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

static int setup(void **st)
{
    (void)st;
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    struct proto_http_limits l;
    proto_http_limits_default(&l);
    l.max_header_bytes = 2048;
    l.max_body_bytes = 1000;
    l.max_connections = 8;
    l.idle_timeout_ms = 400;
    l.max_per_source = 6;
    assert_int_equal(proto_http_server_new(&loop, &l, &srv), 0);
    assert_int_equal(proto_http_route(srv, "GET", "/hello", h_hello, NULL), 0);
    assert_int_equal(proto_http_route(srv, "GET", "/echo/*", h_echo, NULL), 0);
    assert_int_equal(proto_http_route(srv, "POST", "/echo/*", h_echo, NULL), 0);
    assert_int_equal(proto_http_route(srv, "GET", "/stream", h_stream, NULL), 0);
    assert_int_equal(proto_http_route(srv, "GET", "/file", h_file, NULL), 0);
    assert_int_equal(proto_http_route(srv, "GET", "/async", h_async, NULL), 0);
    assert_int_equal(proto_http_route(srv, "GET", "/sf", h_sf, NULL), 0);
    assert_int_equal(proto_http_route(srv, "GET", "/sfc", h_sf, NULL), 0);
    assert_int_equal(proto_http_route(srv, "GET", "/sfshort", h_sf, NULL), 0);
    assert_int_equal(proto_http_route(srv, "GET", "nope", h_async, NULL), -EINVAL);
    cf_err err = {0};
    assert_int_equal(proto_http_listen(srv, "127.0.0.1", 0, &err), 0);
    port = proto_http_port(srv);
    assert_true(port > 0);
    file_fd = mkstemp(file_path);
    assert_true(file_fd >= 0);
    for (size_t i = 0; i < sizeof(file_data); i++) file_data[i] = (unsigned char)(i * 7 + i / 251);
    assert_int_equal(write(file_fd, file_data, sizeof(file_data)), (ssize_t)sizeof(file_data));
    sf_fd = mkstemp(sf_path);
    assert_true(sf_fd >= 0);
    sf_data = malloc(SF_SIZE);
    assert_non_null(sf_data);
    for (size_t i = 0; i < SF_SIZE; i++) sf_data[i] = (unsigned char)(i * 13 + i / 4093);
    assert_int_equal(write(sf_fd, sf_data, SF_SIZE), (ssize_t)SF_SIZE);
    uv_async_init(&loop, &stop_async, on_stop);
    pthread_create(&thr, NULL, loop_main, NULL);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    uv_async_send(&stop_async);
    pthread_join(thr, NULL);
    assert_int_equal(uv_loop_close(&loop), 0);
    close(file_fd);
    unlink(file_path);
    close(sf_fd);
    unlink(sf_path);
    free(sf_data);
    return 0;
}

/* Connects from 127.0.0.<from> (0: any source). */
static int dial_from(int from)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (from) {
        struct sockaddr_in b = {.sin_family = AF_INET};
        b.sin_addr.s_addr = htonl(INADDR_LOOPBACK - 1 + (uint32_t)from);
        assert_int_equal(bind(fd, (struct sockaddr *)&b, sizeof(b)), 0);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static int dial(void)
{
    return dial_from(0);
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

/* Reads until the peer closes (or timeout); returns bytes read into buf (NUL-terminated). */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        if (n == cap - 1) break;
    }
    buf[n] = 0;
    return n;
}

static size_t count(const char *hay, const char *needle)
{
    size_t c = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) c++;
    return c;
}

static char buf[1 << 20];

static void test_keepalive_pipelined(void **st)
{
    (void)st;
    int fd = dial();
    const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /echo/a?id=b%20c&x=1 HTTP/1.1\r\nX-Hdr: v\r\n\r\n"
                      "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n";
    send_all(fd, req, strlen(req));
    read_all(fd, buf, sizeof(buf));
    close(fd);
    assert_int_equal(count(buf, "HTTP/1.1 200 OK"), 3);
    assert_non_null(strstr(buf, "X-Test: 1"));
    assert_non_null(strstr(buf, "/echo/a|b c|3|v"));
    assert_non_null(strstr(buf, "Connection: close"));
}

static void test_head_404_405(void **st)
{
    (void)st;
    int fd = dial();
    const char *req = "HEAD /hello HTTP/1.1\r\n\r\nGET /missing HTTP/1.1\r\n\r\n"
                      "DELETE /hello HTTP/1.1\r\nConnection: close\r\n\r\n";
    send_all(fd, req, strlen(req));
    read_all(fd, buf, sizeof(buf));
    close(fd);
    assert_non_null(strstr(buf, "Content-Length: 5\r\n"));
    assert_null(strstr(buf, "hello")); /* HEAD: no body */
    assert_non_null(strstr(buf, "HTTP/1.1 404"));
    assert_non_null(strstr(buf, "HTTP/1.1 405"));
}

static void test_limits(void **st)
{
    (void)st;
    int fd = dial();
    char big[4096];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    char req[8192];
    snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nX-Big: %s\r\n\r\n", big);
    send_all(fd, req, strlen(req));
    read_all(fd, buf, sizeof(buf));
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 431"));

    fd = dial();
    const char *post = "POST /echo/x HTTP/1.1\r\nContent-Length: 5000\r\n\r\n";
    send_all(fd, post, strlen(post));
    read_all(fd, buf, sizeof(buf));
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 413"));

    fd = dial();
    const char *ok = "POST /echo/x HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    send_all(fd, ok, strlen(ok));
    read_all(fd, buf, sizeof(buf));
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));

    fd = dial();
    send_all(fd, "\x16\x03\x01garbage\r\n\r\n", 14);
    read_all(fd, buf, sizeof(buf));
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 400"));
}

static void test_stream_chunked(void **st)
{
    (void)st;
    int fd = dial();
    const char *req = "GET /stream HTTP/1.1\r\nConnection: close\r\n\r\n";
    send_all(fd, req, strlen(req));
    read_all(fd, buf, sizeof(buf));
    close(fd);
    assert_non_null(strstr(buf, "Transfer-Encoding: chunked"));
    assert_non_null(strstr(buf, "6\r\npart0;\r\n6\r\npart1;\r\n6\r\npart2;\r\n0\r\n\r\n"));
}

static void test_send_file(void **st)
{
    (void)st;
    int fd = dial();
    const char *req = "GET /file HTTP/1.1\r\nConnection: close\r\n\r\n";
    send_all(fd, req, strlen(req));
    size_t n = read_all(fd, buf, sizeof(buf));
    close(fd);
    char *body = strstr(buf, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    assert_int_equal(n - (size_t)(body - buf), 200000);
    assert_memory_equal(body, file_data + 100, 200000);
}

/* sendfile regions between copied writes, keep-alive, and a client slower than the socket: a
 * small receive buffer and a pause before reading make the region wait for writability. */
static void test_sendfile(void **st)
{
    (void)st;
    size_t cap = 3 * SF_LEN;
    char *big = malloc(cap);
    assert_non_null(big);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int rcv = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const char *req = "GET /sf HTTP/1.1\r\n\r\nGET /sfc HTTP/1.1\r\n\r\n"
                      "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n";
    send_all(fd, req, strlen(req));
    usleep(200000); /* less than the idle timeout: waiting for writability is not idleness */
    size_t n = read_all(fd, big, cap);
    close(fd);
    /* 1: Content-Length */
    char *b = strstr(big, "\r\n\r\n");
    assert_non_null(b);
    assert_non_null(strstr(big, "Content-Length: 6000008\r\n"));
    b += 4;
    assert_memory_equal(b, "head", 4);
    assert_memory_equal(b + 4, sf_data + SF_OFF, SF_LEN);
    assert_memory_equal(b + 4 + SF_LEN, "tail", 4);
    b += 8 + SF_LEN;
    /* 2: chunked: "4\r\nhead\r\n" "5b8d80\r\n" region "\r\n" "4\r\ntail\r\n" "0\r\n\r\n" */
    assert_memory_equal(b, "HTTP/1.1 200 OK", 15);
    b = strstr(b, "\r\n\r\n");
    assert_non_null(b);
    b += 4;
    assert_memory_equal(b, "4\r\nhead\r\n5b8d80\r\n", 17);
    b += 17;
    assert_memory_equal(b, sf_data + SF_OFF, SF_LEN);
    b += SF_LEN;
    assert_memory_equal(b, "\r\n4\r\ntail\r\n0\r\n\r\n", 16);
    b += 16;
    /* 3: the next answer on the same connection, intact */
    assert_memory_equal(b, "HTTP/1.1 200 OK", 15);
    assert_non_null(strstr(b, "hello"));
    assert_int_equal(n - (size_t)(strstr(b, "hello") - big), 5);

    /* a file shorter than the region: the connection closes with a short body */
    fd = dial();
    req = "GET /sfshort HTTP/1.1\r\n\r\n";
    send_all(fd, req, strlen(req));
    n = read_all(fd, big, cap);
    close(fd);
    b = strstr(big, "\r\n\r\n");
    assert_non_null(b);
    assert_int_equal(n - (size_t)(b + 4 - big), 4 + 1000);
    assert_memory_equal(b + 8, sf_data + SF_SIZE - 1000, 1000);
    free(big);
}

static void test_async_and_abort(void **st)
{
    (void)st;
    int fd = dial();
    const char *req = "GET /async HTTP/1.1\r\nConnection: close\r\n\r\n";
    send_all(fd, req, strlen(req));
    read_all(fd, buf, sizeof(buf));
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 202"));
    assert_non_null(strstr(buf, "later"));
    /* the client leaves before the answer: the handler hears about it */
    fd = dial();
    send_all(fd, "GET /async HTTP/1.1\r\n\r\n", 23);
    usleep(50000);
    close(fd);
    for (int i = 0; i < 100 && !aborted; i++) usleep(10000);
    assert_int_equal(aborted, 1);
}

static void test_idle_timeout_and_max_conns(void **st)
{
    (void)st;
    /* a connection that never completes a request is closed after the idle timeout */
    int fd = dial();
    send_all(fd, "GET /hel", 8);
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    read_all(fd, buf, sizeof(buf));
    gettimeofday(&t1, NULL);
    close(fd);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    assert_true(ms >= 300 && ms < 2500);
    /* 8 allowed: the 9th is closed at once (from two sources: 6 is the limit per source) */
    int fds[9];
    for (int i = 0; i < 9; i++) fds[i] = dial_from(i < 5 ? 2 : 3);
    usleep(100000);
    char c;
    assert_int_equal(recv(fds[8], &c, 1, 0), 0);
    send_all(fds[0], "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n", 43);
    read_all(fds[0], buf, sizeof(buf));
    assert_non_null(strstr(buf, "hello"));
    for (int i = 0; i < 9; i++) close(fds[i]);
}

/* One source may hold max_per_source (6) connections: a slow-client flood from it leaves slots
 * for everyone else (a /healthz probe from another address is served). */
static void test_max_per_source(void **st)
{
    (void)st;
    struct proto_http_stats st0, st1;
    proto_http_stats_get(srv, &st0); /* counters only: a racy read is fine for a test */
    int fds[7];
    for (int i = 0; i < 7; i++) fds[i] = dial_from(5);
    for (int i = 0; i < 6; i++) send_all(fds[i], "GET /hel", 8); /* never finished */
    /* the 7th is closed at once (nothing sent on it: a close with unread bytes would be a
     * reset instead of an end of stream) */
    char c;
    assert_int_equal(recv(fds[6], &c, 1, 0), 0);
    proto_http_stats_get(srv, &st1);
    assert_true(st1.connections_rejected > st0.connections_rejected); /* not the idle timeout */
    int other = dial_from(6);
    send_all(other, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n", 43);
    read_all(other, buf, sizeof(buf));
    assert_non_null(strstr(buf, "hello"));
    close(other);
    for (int i = 0; i < 7; i++) close(fds[i]);
    usleep(100000);
    /* closed ones no longer count: the source may connect again */
    int again = dial_from(5);
    send_all(again, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n", 43);
    read_all(again, buf, sizeof(buf));
    assert_non_null(strstr(buf, "hello"));
    close(again);
}

static void test_query_get(void **st)
{
    (void)st;
    char out[16];
    assert_int_equal(proto_http_query_get("a=1&id=x%2Fy&b", "id", out, sizeof(out)), 3);
    assert_string_equal(out, "x/y");
    assert_int_equal(proto_http_query_get("a=1&b", "b", out, sizeof(out)), 0);
    assert_int_equal(proto_http_query_get("a=1", "id", out, sizeof(out)), -ENOENT);
    assert_int_equal(proto_http_query_get("id=%G1", "id", out, sizeof(out)), -EINVAL);
    assert_int_equal(proto_http_query_get("id=%4", "id", out, sizeof(out)), -EINVAL);
    assert_int_equal(proto_http_query_get("id=0123456789abcdefXYZ", "id", out, sizeof(out)),
                     -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalive_pipelined),
        cmocka_unit_test(test_head_404_405),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_stream_chunked),
        cmocka_unit_test(test_send_file),
        cmocka_unit_test(test_sendfile),
        cmocka_unit_test(test_async_and_abort),
        cmocka_unit_test(test_max_per_source),
        cmocka_unit_test(test_idle_timeout_and_max_conns),
        cmocka_unit_test(test_query_get),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
