/* libFuzzer target: the local-API client (client/local_api_client.c) against an arbitrary
 * daemon. Input = the bytes the "daemon" sends on a socketpair; the client does the handshake,
 * then stat, list, a read, a prefetch and a pin (stopping once the connection is out of sync).
 * Whatever arrives, the client must fail cleanly (no crash, leak, hang or out-of-range write),
 * and a read must never deliver bytes outside the range it asked for, or out of order. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/local_api_client.h"

#define TASK     "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define READ_OFF 1000u
#define READ_LEN 3000u

struct feed {
    int fd;
    const uint8_t *data;
    size_t len;
};

static void *feeder(void *arg)
{
    struct feed *f = arg;
    size_t off = 0;
    while (off < f->len) {
        ssize_t n = send(f->fd, f->data + off, f->len - off, MSG_NOSIGNAL);
        if (n <= 0) break; /* the client closed: it gave up */
        off += (size_t)n;
    }
    shutdown(f->fd, SHUT_WR);
    /* drain the client's requests so it never blocks on a full buffer */
    char buf[4096];
    while (recv(f->fd, buf, sizeof(buf), 0) > 0) {
    }
    return NULL;
}

struct sink {
    uint64_t next;
};

static int on_data(void *ctx, uint64_t offset, const void *data, size_t len)
{
    struct sink *s = ctx;
    if (offset != s->next || offset < READ_OFF || len > READ_OFF + READ_LEN - offset) abort();
    volatile uint8_t x = 0;
    for (size_t i = 0; i < len; i++) x ^= ((const uint8_t *)data)[i];
    (void)x;
    s->next += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    struct feed f = {.fd = sv[1], .data = data, .len = size};
    pthread_t th;
    if (pthread_create(&th, NULL, feeder, &f) != 0) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    client_local_opts o = {.idle_timeout_ms = 2000, .max_payload = 1u << 20, .node_id = "fuzz"};
    client_local *c;
    cf_err err = {0};
    if (client_local_open_fd(sv[0], "fuzz", &o, &c, &err) == 0) {
        client_entry e;
        client_entry *v = NULL;
        size_t n = 0;
        struct sink s = {.next = READ_OFF};
        uint64_t got = 0;
        int r = client_local_stat(c, TASK, &e, &err);
        if (r != -ENOTCONN && client_local_list(c, &v, &n, &err) == 0) free(v);
        client_task *tk = NULL;
        size_t nt = 0;
        if (client_local_status(c, &v, &n, &tk, &nt, &err) == 0) {
            for (size_t i = 0; i < nt; i++) /* parents must lie in the block */
                if (tk[i].n_parents && !tk[i].parents) abort();
            free(v);
            free(tk);
        }
        r = client_local_read(c, TASK, "127.0.0.1:5000/a/b@" TASK, "u:p", READ_OFF, READ_LEN,
                              on_data, &s, &got, &err);
        if (got != s.next - READ_OFF) abort();
        if (r == 0 && got != READ_LEN) abort();
        client_local_prefetch(c, TASK, "127.0.0.1:5000/a/b@" TASK, NULL, 0, 0, &err);
        client_local_pin(c, TASK, &err);
        client_local_close(c);
    }
    pthread_join(th, NULL);
    close(sv[1]);
    return 0;
}
