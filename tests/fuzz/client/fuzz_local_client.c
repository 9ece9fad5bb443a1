/* libFuzzer target: the local-API client (client/local_api_client.c) against an arbitrary
 * daemon. Input = the bytes the "daemon" sends on a socketpair; the client does the handshake,
 * then stat, list, a read, a prefetch and a pin (stopping once the connection is out of sync).
 * Whatever arrives, the client must fail cleanly (no crash, leak, hang or out-of-range write),
 * and a read must never deliver bytes outside the range it asked for, or out of order.
 * When the input's length is odd the client takes files (accept_fd) and the feeder sends a
 * descriptor (of a small file) with every byte (each its own segment, so every frame start
 * has one): LOCAL_FILE answers with and without one,
 * descriptors on frames that carry none (to be closed: a leak shows in the fd count). */
#include <dirent.h>
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
    int pass; /* a descriptor to attach to every FD_EVERY bytes, -1 = none */
};

#define FD_EVERY 1u

static void *feeder(void *arg)
{
    struct feed *f = arg;
    size_t off = 0;
    while (off < f->len) {
        size_t want = f->len - off;
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(sizeof(int))];
        } ctl;
        struct iovec iov = {.iov_base = (void *)(f->data + off), .iov_len = want};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (f->pass >= 0) {
            if (iov.iov_len > FD_EVERY) iov.iov_len = FD_EVERY;
            memset(&ctl, 0, sizeof(ctl));
            mh.msg_control = ctl.b;
            mh.msg_controllen = sizeof(ctl.b);
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &f->pass, sizeof(int));
        }
        ssize_t n = sendmsg(f->fd, &mh, MSG_NOSIGNAL);
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

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    int files = size & 1; /* not a byte of the stream: every input stays a valid stream */
    struct feed f = {.fd = sv[1], .data = data, .len = size, .pass = -1};
    if (files) {
        static int file = -1; /* 8 KiB the reads may copy from, made once */
        if (file < 0) {
            char path[] = "/tmp/fuzz_local_clientXXXXXX";
            file = mkstemp(path);
            if (file >= 0) {
                unlink(path);
                static uint8_t z[8192];
                if (write(file, z, sizeof(z)) != (ssize_t)sizeof(z)) abort();
            }
        }
        f.pass = file;
    }
    int fds0 = count_fds();
    pthread_t th;
    if (pthread_create(&th, NULL, feeder, &f) != 0) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    client_local_opts o = {
        .idle_timeout_ms = 2000, .max_payload = 1u << 20, .node_id = "fuzz", .accept_fd = files};
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
    if (count_fds() != fds0 - 2) abort(); /* sv[0..1] closed; a passed descriptor leaked? */
    return 0;
}
