/* daemon_client: a small blocking local-API client for the daemon tests (the real CLI is
 * `chunkfly`, client/). Speaks the framing of docs/protocol.md over the unix socket.
 *
 *   daemon_client SOCK read TASK ORIGIN OFFSET LENGTH OUT [CREDS]   bytes to OUT ("-" = stdout);
 *                                    verified bytes only unless DAEMON_CLIENT_UV=1 (cut-through);
 *                                    DAEMON_CLIENT_FD=1 takes the file's descriptor (LOCAL_FILE)
 *   daemon_client SOCK prefetch TASK ORIGIN
 *   daemon_client SOCK stat TASK | pin TASK | unpin TASK | list
 *
 * Exit 0 on success, 3 when the daemon answered ERROR (printed as "error CODE: MESSAGE"),
 * 1 on local/transport failures. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cf/buf.h"
#include "cf/file_io.h"
#include "proto/frame.h"
#include "proto/handshake.h"
#include "proto/msg.h"

static int fd = -1;

static int write_all(int f, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(f, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int rx_fd = -1; /* a descriptor that came with the last bytes read (SCM_RIGHTS) */

static int read_all(void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        struct iovec iov = {.iov_base = b, .iov_len = n};
        union {
            struct cmsghdr h;
            char c[CMSG_SPACE(sizeof(int))];
        } ctl;
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = ctl.c,
                            .msg_controllen = sizeof(ctl.c)};
        ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        struct cmsghdr *cm = r > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
        if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            if (rx_fd >= 0) close(rx_fd);
            memcpy(&rx_fd, CMSG_DATA(cm), sizeof(int));
        }
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static void send_msg(const proto_msg *m)
{
    cf_buf b = {0};
    cf_err err = {0};
    int rc = proto_msg_encode_frame(m, 0, &b, &err);
    if (rc || write_all(fd, b.data, b.len)) {
        fprintf(stderr, "daemon_client: send: %s\n", rc ? cf_err_str(&err, rc) : strerror(errno));
        exit(1);
    }
    cf_buf_free(&b);
}

static uint8_t *payload_buf;

/* Reads one frame; returns the decoded message (caller frees), payload in payload_buf. */
static void recv_msg(proto_msg *m, uint32_t *plen)
{
    uint8_t hdr[PROTO_FRAME_HEADER_LEN];
    proto_frame_header h;
    cf_err err = {0};
    if (read_all(hdr, sizeof(hdr))) {
        fprintf(stderr, "daemon_client: connection closed by the daemon\n");
        exit(1);
    }
    if (proto_frame_header_decode(hdr, 0, &h, &err)) {
        fprintf(stderr, "daemon_client: bad frame: %s\n", err.msg);
        exit(1);
    }
    uint8_t *body = malloc(h.body_len + 1);
    free(payload_buf);
    payload_buf = malloc(h.payload_len + 1);
    if (!body || !payload_buf || read_all(body, h.body_len) ||
        read_all(payload_buf, h.payload_len)) {
        fprintf(stderr, "daemon_client: short frame\n");
        exit(1);
    }
    int rc = proto_msg_decode(h.type, body, h.body_len, h.payload_len, m, &err);
    free(body);
    if (rc) {
        fprintf(stderr, "daemon_client: undecodable %s: %s\n", proto_msg_type_name(h.type),
                cf_err_str(&err, rc));
        exit(1);
    }
    *plen = h.payload_len;
}

static int copy_to_stdout(int in, uint64_t off, uint64_t len)
{
    uint8_t buf[1 << 16];
    while (len) {
        size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
        int rc = cf_pread_full(in, buf, n, off);
        if (rc) return rc;
        if (write_all(1, buf, n)) return -errno;
        off += n;
        len -= n;
    }
    return 0;
}

static void check_error(proto_msg *m)
{
    if (m->type != PROTO_MSG_ERROR) return;
    printf("error %u: %s\n", m->u.error.code, m->u.error.message);
    fflush(stdout);
    exit(3);
}

static void print_entry(const proto_local_entry *e)
{
    printf("%s length=%llu piece_size=%u pieces=%u have=%u pinned=%d complete=%d\n", e->task_id,
           (unsigned long long)e->content_length, e->piece_size, e->piece_count, e->pieces_have,
           e->pinned, e->complete);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: daemon_client SOCK read|prefetch|stat|pin|unpin|list ...\n");
        return 1;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        fprintf(stderr, "daemon_client: connect %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    proto_msg m = {.type = PROTO_MSG_HELLO};
    proto_hello_init(&m.u.hello, "daemon_client", PROTO_ROLE_LOCAL_CLIENT, 0, 0);
    send_msg(&m);
    proto_msg r;
    uint32_t plen;
    recv_msg(&r, &plen);
    check_error(&r);
    proto_msg_free(&r);
    const char *cmd = argv[2];
    if ((!strcmp(cmd, "read") && argc >= 8) || (!strcmp(cmd, "prefetch") && argc >= 5)) {
        int rd = !strcmp(cmd, "read");
        proto_msg q = {.type = rd ? PROTO_MSG_LOCAL_READ : PROTO_MSG_LOCAL_PREFETCH};
        q.u.local_read.req_id = 7;
        q.u.local_read.task_id = argv[3];
        q.u.local_read.origin = argv[4];
        q.u.local_read.offset = rd ? strtoull(argv[5], NULL, 0) : 0;
        q.u.local_read.length = rd ? strtoull(argv[6], NULL, 0) : 0;
        q.u.local_read.credentials = rd && argc > 8 ? argv[8] : NULL;
        /* DAEMON_CLIENT_UV=1: cut-through, unverified bytes ok (LOCAL_READ "uv") */
        const char *uv = getenv("DAEMON_CLIENT_UV");
        q.u.local_read.unverified_ok = rd && uv && !strcmp(uv, "1");
        const char *fdok = getenv("DAEMON_CLIENT_FD");
        q.u.local_read.accept_fd = rd && fdok && !strcmp(fdok, "1");
        send_msg(&q);
        if (!rd) {
            recv_msg(&r, &plen);
            check_error(&r);
            proto_msg_free(&r);
            printf("ok\n");
            return 0;
        }
        int out = strcmp(argv[7], "-") == 0 ? 1 : open(argv[7], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0) {
            perror(argv[7]);
            return 1;
        }
        uint64_t expect = q.u.local_read.offset;
        for (;;) {
            recv_msg(&r, &plen);
            check_error(&r);
            if (r.type == PROTO_MSG_LOCAL_FILE && q.u.local_read.accept_fd) {
                proto_local_file f = r.u.local_file;
                proto_msg_free(&r);
                if (rx_fd < 0 || f.req_id != 7 || f.offset != expect ||
                    f.offset + f.length != q.u.local_read.offset + q.u.local_read.length) {
                    fprintf(stderr, "daemon_client: bad LOCAL_FILE (fd %d, %llu+%llu)\n", rx_fd,
                            (unsigned long long)f.offset, (unsigned long long)f.length);
                    return 1;
                }
                /* a read-only descriptor: writing through it must fail */
                if (write(rx_fd, "x", 1) != -1 || errno != EBADF) {
                    fprintf(stderr, "daemon_client: the passed descriptor is writable\n");
                    return 1;
                }
                int rc = out != 1 ? cf_copy_range(rx_fd, f.file_offset, out,
                                                  f.offset - q.u.local_read.offset, f.length)
                                  : copy_to_stdout(rx_fd, f.file_offset, f.length);
                if (rc) {
                    fprintf(stderr, "daemon_client: copying the file: %s\n", strerror(-rc));
                    return 1;
                }
                fprintf(stderr, "daemon_client: file passed (%llu bytes)\n",
                        (unsigned long long)f.length);
                break;
            }
            if (r.type != PROTO_MSG_LOCAL_DATA || r.u.local_data.req_id != 7 ||
                r.u.local_data.offset != expect) {
                fprintf(stderr, "daemon_client: unexpected %s (offset %llu, want %llu)\n",
                        proto_msg_type_name(r.type), (unsigned long long)r.u.local_data.offset,
                        (unsigned long long)expect);
                return 1;
            }
            if (write_all(out, payload_buf, plen)) {
                perror("write");
                return 1;
            }
            expect += plen;
            int last = r.u.local_data.last;
            proto_msg_free(&r);
            if (last) break;
        }
        if (out != 1) close(out);
        return 0;
    }
    if (argc >= 4 && (!strcmp(cmd, "stat") || !strcmp(cmd, "pin") || !strcmp(cmd, "unpin"))) {
        proto_msg q = {.type = !strcmp(cmd, "stat")  ? PROTO_MSG_LOCAL_STAT
                               : !strcmp(cmd, "pin") ? PROTO_MSG_LOCAL_PIN
                                                     : PROTO_MSG_LOCAL_UNPIN};
        q.u.local_task.req_id = 9;
        q.u.local_task.task_id = argv[3];
        send_msg(&q);
        recv_msg(&r, &plen);
        check_error(&r);
        if (r.type == PROTO_MSG_LOCAL_STAT_REPLY)
            print_entry(&r.u.local_stat_reply.entry);
        else
            printf("ok\n");
        proto_msg_free(&r);
        return 0;
    }
    if (!strcmp(cmd, "list")) {
        proto_msg q = {.type = PROTO_MSG_LOCAL_LIST};
        q.u.local_list.req_id = 11;
        send_msg(&q);
        recv_msg(&r, &plen);
        check_error(&r);
        for (size_t i = 0; i < r.u.local_list_reply.n_entries; i++)
            print_entry(&r.u.local_list_reply.entries[i]);
        proto_msg_free(&r);
        return 0;
    }
    fprintf(stderr, "daemon_client: bad command\n");
    return 1;
}
