/* Credentials never go over plain http except to loopback or a registry configured as plain
 * http (proto_registry_opts.scheme / http_not_configured). A small HTTP server on 127.0.0.1 plays
 * the registry and its token server; the client reaches "registry.example" (a non-loopback name)
 * through it as a forward proxy (opts.proxy: absolute-form requests), so no DNS is involved.
 * The server records whether any request carried an Authorization header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto/registry_client.h"

#define DG "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct {
    int fd, port;
    volatile int stop;
    pthread_t th;
    pthread_mutex_t lock;
    char challenge[256]; /* WWW-Authenticate of a 401 */
    int requests, with_auth;
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void answer(int c)
{
    char req[8192];
    size_t n = 0;
    while (n < sizeof(req) - 1) {
        ssize_t k = read(c, req + n, sizeof(req) - 1 - n);
        if (k <= 0) return;
        n += (size_t)k;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n")) break;
    }
    int auth = strcasestr(req, "\nAuthorization:") != NULL;
    int head = strncmp(req, "HEAD ", 5) == 0;
    char out[1024];
    pthread_mutex_lock(&srv.lock);
    srv.requests++;
    srv.with_auth += auth;
    if (strstr(req, "/token"))
        snprintf(out, sizeof(out),
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n"
                 "Connection: close\r\n\r\n{\"token\":\"tok-1\"}");
    else if (auth)
        snprintf(out, sizeof(out),
                 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n%s",
                 head ? "" : "hello");
    else
        snprintf(out, sizeof(out),
                 "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: %s\r\nContent-Length: 0\r\n"
                 "Connection: close\r\n\r\n",
                 srv.challenge);
    pthread_mutex_unlock(&srv.lock);
    ssize_t w = write(c, out, strlen(out));
    (void)w;
}

static void *serve(void *arg)
{
    (void)arg;
    while (!srv.stop) {
        struct pollfd p = {.fd = srv.fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int c = accept(srv.fd, NULL, NULL);
        if (c < 0) continue;
        answer(c);
        close(c);
    }
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    srv.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (srv.fd < 0 || bind(srv.fd, (struct sockaddr *)&a, sizeof(a)) ||
        getsockname(srv.fd, (struct sockaddr *)&a, &l) || listen(srv.fd, 16))
        return -1;
    srv.port = ntohs(a.sin_port);
    return pthread_create(&srv.th, NULL, serve, NULL);
}

static int teardown(void **state)
{
    (void)state;
    srv.stop = 1;
    pthread_join(srv.th, NULL);
    close(srv.fd);
    return 0;
}

static void reset(const char *challenge)
{
    pthread_mutex_lock(&srv.lock);
    snprintf(srv.challenge, sizeof(srv.challenge), "%s", challenge);
    srv.requests = srv.with_auth = 0;
    pthread_mutex_unlock(&srv.lock);
}

/* HEAD of a blob of "registry.example:5000" through the server as proxy. */
static int head(proto_registry_opts *o, const char *host, cf_err *err)
{
    char proxy[64];
    snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d", srv.port);
    o->docker_config = "";
    o->max_retries = -1;
    if (!o->proxy) o->proxy = proxy;
    proto_registry *r = NULL;
    int rc = proto_registry_new(host, o, &r, err);
    if (rc) return rc;
    uint64_t size = 0;
    rc = proto_registry_blob_size(r, "a/b", DG, &size, err);
    if (rc == 0) assert_int_equal(size, 5);
    proto_registry_free(r);
    return rc;
}

/* http asked for by a request (the peer's "http://" origin prefix), not configured: Basic
 * credentials are refused before being sent, with the registry and the setting named. */
static void test_basic_refused_when_not_configured(void **state)
{
    (void)state;
    reset("Basic realm=\"r\"");
    cf_err err = {0};
    proto_registry_opts o = {.scheme = PROTO_REGISTRY_SCHEME_HTTP,
                             .http_not_configured = 1,
                             .insecure_key = "peer plain_http",
                             .username = "alice",
                             .password = "secret"};
    assert_int_equal(head(&o, "registry.example:5000", &err), -EPERM);
    assert_non_null(strstr(err.msg, "registry.example:5000"));
    assert_non_null(strstr(err.msg, "peer plain_http"));
    assert_non_null(strstr(err.msg, "plain http"));
    assert_null(strstr(err.msg, "secret"));
    assert_int_equal(srv.with_auth, 0);
    assert_int_equal(srv.requests, 1); /* the anonymous try only */
}

/* Configured as plain http (scheme HTTP): the operator's choice, credentials go. */
static void test_basic_allowed_when_configured(void **state)
{
    (void)state;
    reset("Basic realm=\"r\"");
    cf_err err = {0};
    proto_registry_opts o = {
        .scheme = PROTO_REGISTRY_SCHEME_HTTP, .username = "alice", .password = "secret"};
    assert_int_equal(head(&o, "registry.example:5000", &err), 0);
    assert_int_equal(srv.with_auth, 1);
}

/* A token realm over http on another host gets no credentials, even for a configured
 * registry; on the registry's own host (another port) it does. */
static void test_token_realm(void **state)
{
    (void)state;
    cf_err err = {0};
    reset("Bearer realm=\"http://auth.example:5001/token\",service=\"s\"");
    proto_registry_opts o = {
        .scheme = PROTO_REGISTRY_SCHEME_HTTP, .username = "alice", .password = "secret"};
    assert_int_equal(head(&o, "registry.example:5000", &err), -EPERM);
    assert_non_null(strstr(err.msg, "http://auth.example:5001/token"));
    assert_int_equal(srv.with_auth, 0);

    reset("Bearer realm=\"http://registry.example:5001/token\",service=\"s\"");
    cf_err_clear(&err);
    proto_registry_opts o2 = {
        .scheme = PROTO_REGISTRY_SCHEME_HTTP, .username = "alice", .password = "secret"};
    assert_int_equal(head(&o2, "registry.example:5000", &err), 0);
    assert_int_equal(srv.with_auth, 2); /* the token request and the HEAD with the token */

    /* not configured either: refused at the token server already */
    reset("Bearer realm=\"http://registry.example:5001/token\",service=\"s\"");
    cf_err_clear(&err);
    proto_registry_opts o3 = {.scheme = PROTO_REGISTRY_SCHEME_HTTP,
                              .http_not_configured = 1,
                              .username = "alice",
                              .password = "secret"};
    assert_int_equal(head(&o3, "registry.example:5000", &err), -EPERM);
    assert_int_equal(srv.with_auth, 0);
}

/* An anonymous token is no secret: it may go over http anywhere. */
static void test_anonymous_token_allowed(void **state)
{
    (void)state;
    cf_err err = {0};
    reset("Bearer realm=\"http://auth.example:5001/token\",service=\"s\"");
    proto_registry_opts o = {.scheme = PROTO_REGISTRY_SCHEME_HTTP, .http_not_configured = 1};
    assert_int_equal(head(&o, "registry.example:5000", &err), 0);
    assert_int_equal(srv.with_auth, 1); /* the HEAD with the anonymous token */
}

/* A configured static bearer token is a stored credential too. */
static void test_static_token_refused(void **state)
{
    (void)state;
    cf_err err = {0};
    reset("Basic realm=\"r\"");
    proto_registry_opts o = {.scheme = PROTO_REGISTRY_SCHEME_HTTP,
                             .http_not_configured = 1,
                             .bearer_token = "static-secret"};
    assert_int_equal(head(&o, "registry.example:5000", &err), -EPERM);
    assert_int_equal(srv.requests, 0);
}

/* Loopback registries keep getting credentials over http, configured or not. */
static void test_loopback_allowed(void **state)
{
    (void)state;
    cf_err err = {0};
    reset("Basic realm=\"r\"");
    char host[64];
    snprintf(host, sizeof(host), "127.0.0.1:%d", srv.port);
    proto_registry_opts o = {.scheme = PROTO_REGISTRY_SCHEME_HTTP,
                             .http_not_configured = 1,
                             .username = "alice",
                             .password = "secret",
                             .proxy = NULL};
    /* direct, no proxy: head() only sets one when none is given, so give a no-op one */
    o.docker_config = "";
    o.max_retries = -1;
    proto_registry *r = NULL;
    assert_int_equal(proto_registry_new(host, &o, &r, &err), 0);
    uint64_t size = 0;
    assert_int_equal(proto_registry_blob_size(r, "a/b", DG, &size, &err), 0);
    proto_registry_free(r);
    assert_int_equal(srv.with_auth, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_refused_when_not_configured),
        cmocka_unit_test(test_basic_allowed_when_configured),
        cmocka_unit_test(test_token_realm),
        cmocka_unit_test(test_anonymous_token_allowed),
        cmocka_unit_test(test_static_token_refused),
        cmocka_unit_test(test_loopback_allowed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
