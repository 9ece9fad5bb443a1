/* Test server for grpc_echo.sh: proto_grpc on a unix socket with the methods
 *   /test.Echo/Unary   echo the request
 *   /test.Echo/Stream  request "N [SIZE]": N messages ("0", "1", ... or SIZE bytes each); a
 *                      send refused with -ENOBUFS ends the call RESOURCE_EXHAUSTED
 *   /test.Echo/Fail    request "CODE": that status, a message with non-ASCII and '%'
 *   /test.Echo/Slow    finishes from a 200 ms timer (echo), or sees the client gone
 *   /test.Echo/Stats   "slow_gone=G slow_epipe=E slow_done=D"
 *   /test.Echo/Header  the value of the request header named by the request ("" if absent:
 *                      NOT_FOUND)
 * Usage: grpc_echo_server SOCKET [MAX_CONNS [MAX_MESSAGE]]. Prints "ready" once listening;
 * SIGTERM closes the server (Slow calls still pending finish later, gone) and exits 0 once
 * every handle is closed, printing the Slow counters. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cf/grpc.h"

struct slow {
    uv_timer_t timer;
    cf_grpc_call *call;
    uint8_t *req;
    size_t len;
    struct slow *prev, *next;
};

static uv_loop_t *loop;
static cf_grpc_server *srv;
static uv_signal_t sigterm;
static struct slow *slows;
static unsigned slow_gone, slow_epipe, slow_done;

static void on_unary(cf_grpc_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    int rc = cf_grpc_call_send(call, req, len);
    cf_grpc_call_finish(call, rc == 0 ? CF_GRPC_OK : CF_GRPC_INTERNAL,
                        rc == 0 ? NULL : strerror(-rc));
}

static void on_stream(cf_grpc_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    char text[64];
    unsigned long n = 0, size = 0;
    snprintf(text, sizeof(text), "%.*s", (int)(len < 63 ? len : 63), (const char *)req);
    if (sscanf(text, "%lu %lu", &n, &size) < 1) {
        cf_grpc_call_finish(call, CF_GRPC_INVALID_ARGUMENT, "want \"N [SIZE]\"");
        return;
    }
    uint8_t *big = size ? calloc(1, size) : NULL;
    for (unsigned long i = 0; i < n; i++) {
        char num[32];
        int k = snprintf(num, sizeof(num), "%lu", i);
        int rc = big ? cf_grpc_call_send(call, big, size)
                     : cf_grpc_call_send(call, (const uint8_t *)num, (size_t)k);
        if (rc < 0) {
            char m[96];
            snprintf(m, sizeof(m), "send %lu refused: %s", i, strerror(-rc));
            cf_grpc_call_finish(call,
                                rc == -ENOBUFS ? CF_GRPC_RESOURCE_EXHAUSTED : CF_GRPC_INTERNAL, m);
            free(big);
            return;
        }
    }
    free(big);
    cf_grpc_call_finish(call, CF_GRPC_OK, NULL);
}

static void on_fail(cf_grpc_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    char text[16], m[128];
    snprintf(text, sizeof(text), "%.*s", (int)(len < 15 ? len : 15), (const char *)req);
    int code = atoi(text);
    snprintf(m, sizeof(m), "échec 100%% voulu: code %d\n(fin)", code);
    cf_grpc_call_finish(call, code, m);
}

static void slow_closed(uv_handle_t *h)
{
    struct slow *s = h->data;
    free(s->req);
    free(s);
}

static void slow_end(struct slow *s, int status, const char *msg)
{
    cf_grpc_call_finish(s->call, status, msg);
    if (s->prev)
        s->prev->next = s->next;
    else
        slows = s->next;
    if (s->next) s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->timer, slow_closed);
}

static void slow_fire(uv_timer_t *t)
{
    struct slow *s = t->data;
    if (cf_grpc_call_gone(s->call)) {
        slow_gone++;
        if (cf_grpc_call_send(s->call, s->req, s->len) == -EPIPE) slow_epipe++;
        slow_end(s, CF_GRPC_CANCELLED, "client gone");
        return;
    }
    slow_done++;
    int rc = cf_grpc_call_send(s->call, s->req, s->len);
    slow_end(s, rc == 0 ? CF_GRPC_OK : CF_GRPC_INTERNAL, rc == 0 ? NULL : strerror(-rc));
}

static void on_slow(cf_grpc_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    struct slow *s = calloc(1, sizeof(*s));
    if (!s || !(s->req = malloc(len ? len : 1))) {
        free(s);
        cf_grpc_call_finish(call, CF_GRPC_RESOURCE_EXHAUSTED, "no memory");
        return;
    }
    memcpy(s->req, req, len);
    s->len = len;
    s->call = call;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->next = slows;
    if (slows) slows->prev = s;
    slows = s;
    uv_timer_start(&s->timer, slow_fire, 200, 0);
}

static void on_stats(cf_grpc_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    (void)req;
    (void)len;
    char m[96];
    int k = snprintf(m, sizeof(m), "slow_gone=%u slow_epipe=%u slow_done=%u", slow_gone, slow_epipe,
                     slow_done);
    cf_grpc_call_send(call, (const uint8_t *)m, (size_t)k);
    cf_grpc_call_finish(call, CF_GRPC_OK, NULL);
}

static void on_header(cf_grpc_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    char name[128];
    snprintf(name, sizeof(name), "%.*s", (int)(len < 127 ? len : 127), (const char *)req);
    const char *v = cf_grpc_call_header(call, name);
    if (!v) {
        cf_grpc_call_finish(call, CF_GRPC_NOT_FOUND, name);
        return;
    }
    cf_grpc_call_send(call, (const uint8_t *)v, strlen(v));
    cf_grpc_call_finish(call, CF_GRPC_OK, NULL);
}

static void on_closed(void *arg)
{
    (void)arg;
    srv = NULL;
}

/* Slow calls still pending are left to their timers: they must stay valid after the server is
 * closed, and see themselves gone. */
static void on_sigterm(uv_signal_t *h, int sig)
{
    (void)sig;
    cf_grpc_server_close(srv, on_closed, NULL);
    uv_close((uv_handle_t *)h, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SOCKET [MAX_CONNS [MAX_MESSAGE]]\n", argv[0]);
        return 2;
    }
    cf_grpc_limits lim = {0};
    if (argc > 2) lim.max_conns = (unsigned)atoi(argv[2]);
    if (argc > 3) lim.max_message = (size_t)strtoull(argv[3], NULL, 10);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an EPIPE, see cf/grpc.h */
    loop = uv_default_loop();
    cf_err err = {0};
    static const struct {
        const char *path;
        cf_grpc_handler fn;
    } methods[] = {{"/test.Echo/Unary", on_unary}, {"/test.Echo/Stream", on_stream},
                   {"/test.Echo/Fail", on_fail},   {"/test.Echo/Slow", on_slow},
                   {"/test.Echo/Stats", on_stats}, {"/test.Echo/Header", on_header}};
    if (cf_grpc_server_new(loop, &lim, &srv, &err) < 0) {
        fprintf(stderr, "grpc_echo_server: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (cf_grpc_server_add(srv, methods[i].path, methods[i].fn, NULL, &err) < 0) {
            fprintf(stderr, "grpc_echo_server: %s\n", err.msg);
            return 1;
        }
    if (cf_grpc_server_listen_unix(srv, argv[1], 0600, &err) < 0) {
        fprintf(stderr, "grpc_echo_server: %s\n", err.msg);
        return 1;
    }
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_sigterm, SIGTERM);
    printf("ready\n");
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    fprintf(stderr, "exit: slow_gone=%u slow_epipe=%u slow_done=%u\n", slow_gone, slow_epipe,
            slow_done);
    int rc = uv_loop_close(loop);
    if (rc != 0 || srv) {
        fprintf(stderr, "grpc_echo_server: handles left open at exit\n");
        return 1;
    }
    return 0;
}
