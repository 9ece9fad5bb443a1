/* piece_bench: loopback piece-serving throughput of a chunkfly-peer vs a plain sendfile loop,
 * for tests/bench/bench_p2p.sh (not a test; prints figures).
 *
 *   piece_bench peer --addr IP:PORT --task sha256:HEX --socket PATH [--inflight N] [--rounds R]
 *                    [--tls-cert F --tls-key F --tls-ca F]
 *       Connects to the peer's upload server as a peer (HELLO), requests every piece of the
 *       blob (PIECE_REQUEST, N in flight), checks each PIECE_DATA (request id, piece number,
 *       length) and discards the bytes. Length and piece size come from LOCAL_STAT on --socket.
 *       With --tls-*: over mutual TLS (a peer with tls_* set; the HELLO id is the cert's).
 *   piece_bench sendfile --file PATH --bind IP [--chunk BYTES] [--rounds R]
 *       Baseline: a thread accepts one loopback connection and sendfile()s the file to it in
 *       --chunk pieces (default 4 MiB); the main thread reads and discards.
 * Output, one line: "<mode> bytes=B seconds=S mib_s=M". Exit 0 on success. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cf/buf.h"
#include "client/local_api_client.h"
#include "proto/conn.h"
#include "proto/frame.h"
#include "proto/handshake.h"
#include "proto/msg.h"
#include "proto/piece.h"
#include "proto/tls.h"

#include <openssl/ssl.h>

static proto_tls *g_tls; /* --tls-*: the peer connection runs inside TLS */
static SSL *g_ssl;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, const char *a)
{
    fprintf(stderr, "piece_bench: ");
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    exit(1);
}

static int read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len && g_ssl) {
        int n = SSL_read(g_ssl, p, len > (1u << 30) ? 1 << 30 : (int)len);
        if (n <= 0) return -ECONNRESET;
        p += n;
        len -= (size_t)n;
    }
    while (len) {
        ssize_t n = recv(fd, p, len, 0);
        if (n == 0) return -ECONNRESET;
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len && g_ssl) {
        int n = SSL_write(g_ssl, p, len > (1u << 30) ? 1 << 30 : (int)len);
        if (n <= 0) return -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_msg(int fd, const proto_msg *m)
{
    cf_buf b = {0};
    cf_err err = {0};
    int r = proto_msg_encode_frame(m, 0, &b, &err);
    if (r == 0) r = write_full(fd, b.data, b.len);
    cf_buf_free(&b);
    return r;
}

/* One frame into *m (caller frees); payload into pay (cap bytes). */
static int recv_msg(int fd, proto_msg *m, uint8_t *body, uint8_t *pay, uint32_t cap, uint32_t *plen)
{
    uint8_t hb[PROTO_FRAME_HEADER_LEN];
    proto_frame_header h = {0};
    cf_err err = {0};
    int r = read_full(fd, hb, sizeof(hb));
    if (r == 0) r = proto_frame_header_decode(hb, cap, &h, &err);
    if (r == 0) r = read_full(fd, body, h.body_len);
    if (r == 0 && h.payload_len) r = read_full(fd, pay, h.payload_len);
    if (r == 0) r = proto_msg_decode(h.type, body, h.body_len, h.payload_len, m, &err);
    if (r) fprintf(stderr, "piece_bench: bad frame: %s\n", cf_err_str(&err, r));
    *plen = h.payload_len;
    return r;
}

static double bench_peer(const char *addr, const char *task, const char *sockpath,
                         unsigned inflight, uint64_t *bytes)
{
    cf_err err = {0};
    client_local *lc;
    client_entry e;
    if (client_local_connect(sockpath, NULL, &lc, &err) != 0 ||
        client_local_stat(lc, task, &e, &err) != 0)
        die("local stat: %s", cf_err_str(&err, err.code));
    client_local_close(lc);
    if (!e.complete) die("%s is not complete in the peer's cache", task);

    struct sockaddr_storage ss;
    if (proto_addr_parse(addr, &ss) != 0) die("bad --addr %s", addr);
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sizeof(ss)) != 0)
        die("connect %s failed", addr);
    int one = 1; /* requests are small: never hold them back (Nagle) */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (g_tls) {
        g_ssl = SSL_new(proto_tls_ssl_ctx(g_tls));
        if (!g_ssl || SSL_set_fd(g_ssl, fd) != 1 || SSL_connect(g_ssl) != 1)
            die("%s", "TLS handshake failed");
    }
    uint8_t *body = malloc(PROTO_MAX_BODY), *pay = malloc(PROTO_MAX_PAYLOAD);
    if (!body || !pay) die("%s", "out of memory");
    proto_msg hello = {.type = PROTO_MSG_HELLO};
    char id[64];
    snprintf(id, sizeof(id), "piece-bench-%d", (int)getpid());
    if (g_tls) snprintf(id, sizeof(id), "%s", proto_tls_identity(g_tls));
    proto_hello_init(&hello.u.hello, id, PROTO_ROLE_PEER, PROTO_CAP_DIGEST_LIST, 0);
    proto_msg m;
    uint32_t plen;
    if (send_msg(fd, &hello) || recv_msg(fd, &m, body, pay, PROTO_MAX_PAYLOAD, &plen))
        die("%s", "handshake failed");
    if (m.type != PROTO_MSG_HELLO) die("handshake answered with %s", proto_msg_type_name(m.type));
    proto_msg_free(&m);

    uint32_t n = e.piece_count, next = 0, done = 0, out = 0;
    uint64_t got = 0;
    double t0 = now();
    while (done < n) {
        while (out < inflight && next < n) {
            proto_msg q = {.type = PROTO_MSG_PIECE_REQUEST};
            q.u.piece_request =
                (proto_piece_request){.req_id = next + 1, .task_id = task, .piece = next};
            if (send_msg(fd, &q)) die("%s", "send failed");
            next++;
            out++;
        }
        if (recv_msg(fd, &m, body, pay, PROTO_MAX_PAYLOAD, &plen)) die("%s", "receive failed");
        if (m.type == PROTO_MSG_PIECE_DATA) {
            uint32_t pn = m.u.piece_data.piece;
            if (m.u.piece_data.req_id != (uint64_t)pn + 1 || pn >= n ||
                plen != proto_piece_len(e.content_length, e.piece_size, pn) ||
                strcmp(m.u.piece_data.task_id, task) != 0)
                die("%s", "PIECE_DATA does not match the request");
            got += plen;
            done++;
            out--;
        } else if (m.type == PROTO_MSG_ERROR) {
            char msg[64];
            snprintf(msg, sizeof(msg), "code %u", m.u.error.code);
            die("peer refused a piece: %s", msg);
        } else if (m.type != PROTO_MSG_AVAIL && m.type != PROTO_MSG_AVAIL_UPDATE) {
            die("unexpected %s", proto_msg_type_name(m.type));
        }
        proto_msg_free(&m);
    }
    double el = now() - t0;
    SSL_free(g_ssl);
    g_ssl = NULL;
    close(fd);
    free(body);
    free(pay);
    *bytes = got;
    return el;
}

struct sf_server {
    int lfd, file_fd;
    off_t size;
    size_t chunk;
};

static void *sf_serve(void *arg)
{
    struct sf_server *s = arg;
    int c = accept(s->lfd, NULL, NULL);
    if (c < 0) return NULL;
    off_t off = 0;
    while (off < s->size) {
        size_t want = (size_t)(s->size - off) < s->chunk ? (size_t)(s->size - off) : s->chunk;
        ssize_t n = sendfile(c, s->file_fd, &off, want);
        if (n <= 0 && errno != EINTR) break;
    }
    close(c);
    return NULL;
}

static double bench_sendfile(const char *file, const char *bind_ip, size_t chunk, uint64_t *bytes)
{
    struct sf_server s = {.chunk = chunk};
    s.file_fd = open(file, O_RDONLY);
    struct stat st;
    if (s.file_fd < 0 || fstat(s.file_fd, &st) != 0) die("cannot open %s", file);
    s.size = st.st_size;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, bind_ip, &sa.sin_addr) != 1) die("bad --bind %s", bind_ip);
    s.lfd = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t sl = sizeof(sa);
    if (bind(s.lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(s.lfd, 1) != 0 ||
        getsockname(s.lfd, (struct sockaddr *)&sa, &sl) != 0)
        die("cannot listen on %s", bind_ip);
    pthread_t th;
    pthread_create(&th, NULL, sf_serve, &s);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    double t0 = now();
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) die("%s", "connect failed");
    size_t bufsz = 1u << 20;
    uint8_t *buf = malloc(bufsz);
    uint64_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, bufsz, 0);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            die("%s", "recv failed");
        }
        got += (uint64_t)n;
    }
    double el = now() - t0;
    pthread_join(th, NULL);
    close(fd);
    close(s.lfd);
    close(s.file_fd);
    free(buf);
    if (got != (uint64_t)s.size) die("%s", "short transfer");
    *bytes = got;
    return el;
}

int main(int argc, char **argv)
{
    if (argc < 2) die("%s", "usage: piece_bench peer|sendfile [options] (see the source header)");
    const char *mode = argv[1];
    const char *addr = NULL, *task = NULL, *sock = NULL, *file = NULL, *bind_ip = "127.0.0.1";
    unsigned inflight = 8, rounds = 3;
    size_t chunk = 4u << 20;
    static const struct option opts[] = {
        {"addr", required_argument, 0, 'a'},     {"task", required_argument, 0, 't'},
        {"socket", required_argument, 0, 's'},   {"file", required_argument, 0, 'f'},
        {"bind", required_argument, 0, 'b'},     {"inflight", required_argument, 0, 'i'},
        {"rounds", required_argument, 0, 'r'},   {"chunk", required_argument, 0, 'c'},
        {"tls-cert", required_argument, 0, 'C'}, {"tls-key", required_argument, 0, 'K'},
        {"tls-ca", required_argument, 0, 'A'},   {0, 0, 0, 0}};
    const char *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'a':
            addr = optarg;
            break;
        case 't':
            task = optarg;
            break;
        case 's':
            sock = optarg;
            break;
        case 'f':
            file = optarg;
            break;
        case 'b':
            bind_ip = optarg;
            break;
        case 'i':
            inflight = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            rounds = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'c':
            chunk = strtoul(optarg, NULL, 10);
            break;
        case 'C':
            tls_cert = optarg;
            break;
        case 'K':
            tls_key = optarg;
            break;
        case 'A':
            tls_ca = optarg;
            break;
        default:
            return 2;
        }
    }
    if (!inflight || !rounds || !chunk) die("%s", "--inflight, --rounds, --chunk must be > 0");
    if (tls_cert || tls_key || tls_ca) {
        cf_err terr = {0};
        if (proto_tls_new(tls_cert, tls_key, tls_ca, &g_tls, &terr)) die("%s", terr.msg);
    }
    /* best of R rounds: the first may still pull pages into the cache */
    double best = 0;
    uint64_t bytes = 0;
    for (unsigned i = 0; i < rounds; i++) {
        double el;
        if (!strcmp(mode, "peer")) {
            if (!addr || !task || !sock) die("%s", "peer needs --addr, --task, --socket");
            el = bench_peer(addr, task, sock, inflight, &bytes);
        } else if (!strcmp(mode, "sendfile")) {
            if (!file) die("%s", "sendfile needs --file");
            el = bench_sendfile(file, bind_ip, chunk, &bytes);
        } else {
            die("unknown mode %s", mode);
            return 2;
        }
        if (i == 0 || el < best) best = el;
    }
    printf("%s%s bytes=%llu seconds=%.4f mib_s=%.1f\n", mode, g_tls ? "-tls" : "",
           (unsigned long long)bytes, best, (double)bytes / 1048576.0 / best);
    proto_tls_free(g_tls);
    return 0;
}
