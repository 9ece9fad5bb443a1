/* Scheduler load generator (not a test; see docs/benchmarks.md).
 *
 *   bench_scheduler --echo-server IP:PORT
 *       baseline: a server on the same proto/ code (proto_conn + proto_msg decode/encode) that
 *       answers REGISTER_TASK with REGISTER_ANSWER + a fixed 4-parent CANDIDATES and ignores
 *       reports: the same I/O and codec work as the scheduler, without any scheduling.
 *
 *   bench_scheduler --target IP:PORT [--hosts 10000] [--tasks 100] [--per-host 10]
 *       [--pieces 256] [--window 512] [--report-s 5] [--report-ms 1000] [--pid PID]
 *       H simulated hosts (one connection each) announce, then register --per-host random tasks
 *       each (at most --window registrations in flight); the register -> first decision time
 *       is measured per registration. Then every (host, task) pair sends one PIECE_REPORT per
 *       --report-ms for --report-s seconds. With --pid, the target's RSS is sampled to give
 *       bytes per (host, task) pair. Prints key=value lines. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <uv.h>

#include "cf/log.h"
#include "proto/conn.h"
#include "proto/handshake.h"
#include "proto/msg.h"
#include "proto/piece.h"

static uv_loop_t *loop;

/* ------------------------------------------------------------------ echo server */

static proto_hello echo_hello;

static void echo_send(proto_conn *c, const proto_msg *m)
{
    cf_err err = {0};
    if (proto_conn_send(c, m, NULL, 0, &err) && proto_conn_queued(c) > (64u << 20))
        proto_conn_close(c, -ENOBUFS, "queue full");
}

static void echo_frame(proto_conn *c, const proto_frame_header *h, const uint8_t *body,
                       const uint8_t *payload)
{
    (void)payload;
    proto_msg m;
    cf_err err = {0};
    if (proto_msg_decode(h->type, body, h->body_len, h->payload_len, &m, &err)) {
        proto_conn_close(c, -EBADMSG, "bad frame");
        return;
    }
    if (m.type == PROTO_MSG_HELLO) {
        proto_msg r = {.type = PROTO_MSG_HELLO};
        r.u.hello = echo_hello;
        echo_send(c, &r);
    } else if (m.type == PROTO_MSG_REGISTER_TASK) {
        uint32_t ps = 1u << 20;
        uint64_t pc64 = proto_piece_count(m.u.register_task.content_length, ps);
        uint32_t pc = pc64 > 4096 ? 4096 : (uint32_t)pc64;
        proto_msg a = {.type = PROTO_MSG_REGISTER_ANSWER};
        a.u.register_answer.task_id = m.u.register_task.task_id;
        a.u.register_answer.piece_size = ps;
        a.u.register_answer.content_length = (uint64_t)pc * ps;
        a.u.register_answer.piece_count = pc;
        echo_send(c, &a);
        static uint8_t bits[4][512];
        proto_candidate cands[4];
        for (int i = 0; i < 4; i++) {
            cands[i].host_id = "echo-parent";
            cands[i].addr = "127.0.0.1:4005";
            cands[i].bits = bits[i];
            cands[i].bits_len = proto_bitmap_nbytes(pc);
        }
        proto_msg cm = {.type = PROTO_MSG_CANDIDATES};
        cm.u.candidates.task_id = m.u.register_task.task_id;
        cm.u.candidates.piece_count = pc;
        cm.u.candidates.candidates = cands;
        cm.u.candidates.n_candidates = 4;
        echo_send(c, &cm);
    } else if (m.type == PROTO_MSG_HEARTBEAT) {
        proto_msg r = {.type = PROTO_MSG_HEARTBEAT_REPLY};
        r.u.heartbeat_reply.seq = m.u.heartbeat.seq;
        echo_send(c, &r);
    }
    proto_msg_free(&m);
}

static void echo_on_conn(uv_stream_t *ls, int status)
{
    if (status < 0) return;
    proto_conn *c;
    proto_conn_cbs cbs = {.on_frame = echo_frame};
    proto_conn_opts o = {.max_payload = 1};
    proto_conn_accept(ls, &o, &cbs, NULL, &c);
}

static int run_echo(const char *addr)
{
    struct sockaddr_storage ss;
    if (proto_addr_parse(addr, &ss)) return 2;
    proto_hello_init(&echo_hello, "echo", PROTO_ROLE_SCHEDULER, 0, 1);
    uv_tcp_t ls;
    uv_tcp_init(loop, &ls);
    if (uv_tcp_bind(&ls, (struct sockaddr *)&ss, 0) ||
        uv_listen((uv_stream_t *)&ls, 4096, echo_on_conn)) {
        fprintf(stderr, "echo: cannot listen on %s\n", addr);
        return 1;
    }
    fprintf(stderr, "echo server on %s\n", addr);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}

/* ------------------------------------------------------------------ load generator */

struct bhost {
    proto_conn *c;
    int idx, ready;
    char id[24];
    int *tasks;         /* per_host task indices */
    uint64_t *sent_ns;  /* per task slot: registration send time, 0 = answered */
    int next;           /* next slot to register */
    uint32_t *reported; /* per slot: pieces reported so far */
};

static struct {
    struct sockaddr_storage addr;
    int hosts, tasks, per_host, window, report_s, report_ms;
    uint32_t pieces;
    int pid;
    struct bhost *h;
    char (*task_ids)[PROTO_TASK_ID_LEN + 1];
    int ready, outstanding, next_host;
    uint64_t registered, answered, unsolicited, errors, reports;
    uint64_t *lat_ns;
    size_t n_lat;
    uint64_t t_start, t_end, t_ready;
    long rss_ready, rss_registered, rss_reports;
    uv_timer_t pump, report_timer, stop_timer;
    int phase; /* 0 connect, 1 register, 2 report, 3 done */
    uint32_t report_cursor;
} b;

static long rss_kb(int pid)
{
    if (pid <= 0) return 0;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long v = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1) break;
    fclose(f);
    return v;
}

static int slot_of(struct bhost *h, const char *tid)
{
    for (int s = 0; s < b.per_host; s++)
        if (strcmp(b.task_ids[h->tasks[s]], tid) == 0) return s;
    return -1;
}

static void bsend(struct bhost *h, const proto_msg *m)
{
    cf_err err = {0};
    if (proto_conn_send(h->c, m, NULL, 0, &err)) b.errors++;
}

static void pump_registrations(void);

static void on_decision(struct bhost *h, const char *tid)
{
    int s = slot_of(h, tid);
    if (s < 0) return;
    if (!h->sent_ns[s]) {
        b.unsolicited++;
        return;
    }
    b.lat_ns[b.n_lat++] = uv_hrtime() - h->sent_ns[s];
    h->sent_ns[s] = 0;
    b.answered++;
    b.outstanding--;
}

static void start_reports(void);

static void client_frame(proto_conn *c, const proto_frame_header *fh, const uint8_t *body,
                         const uint8_t *payload)
{
    (void)payload;
    struct bhost *h = proto_conn_data(c);
    proto_msg m;
    cf_err err = {0};
    if (proto_msg_decode(fh->type, body, fh->body_len, fh->payload_len, &m, &err)) {
        b.errors++;
        return;
    }
    switch (m.type) {
    case PROTO_MSG_HELLO: {
        const char *addrs[1] = {"127.0.0.1"};
        proto_msg a = {.type = PROTO_MSG_ANNOUNCE_HOST};
        a.u.announce_host.host_id = h->id;
        a.u.announce_host.addrs = addrs;
        a.u.announce_host.n_addrs = 1;
        a.u.announce_host.upload_port = 4005;
        a.u.announce_host.upload_slots = 16;
        a.u.announce_host.free_disk = 1ull << 36;
        a.u.announce_host.idc = (h->idx & 1) ? "dc1" : "dc2";
        bsend(h, &a);
        h->ready = 1;
        if (++b.ready == b.hosts) {
            b.t_ready = uv_hrtime();
            b.rss_ready = rss_kb(b.pid);
            b.phase = 1;
            b.t_start = uv_hrtime();
            pump_registrations();
        }
        break;
    }
    case PROTO_MSG_CANDIDATES:
        on_decision(h, m.u.candidates.task_id);
        break;
    case PROTO_MSG_BACK_TO_SOURCE:
        on_decision(h, m.u.back_to_source.task_id);
        break;
    case PROTO_MSG_WAIT:
        on_decision(h, m.u.wait.task_id);
        break;
    case PROTO_MSG_ERROR:
        b.errors++;
        if (b.errors < 5)
            fprintf(stderr, "bench: ERROR %u: %s\n", m.u.error.code, m.u.error.message);
        break;
    default:
        break;
    }
    proto_msg_free(&m);
    if (b.phase == 1) {
        pump_registrations();
        if (b.answered == (uint64_t)b.hosts * b.per_host) {
            b.t_end = uv_hrtime();
            b.rss_registered = rss_kb(b.pid);
            start_reports();
        }
    }
}

static void pump_registrations(void)
{
    /* round-robin over hosts so every connection gets work */
    while (b.outstanding < b.window && b.registered < (uint64_t)b.hosts * b.per_host) {
        struct bhost *h = &b.h[b.next_host];
        b.next_host = (b.next_host + 1) % b.hosts;
        if (h->next >= b.per_host) continue;
        int s = h->next++;
        proto_msg m = {.type = PROTO_MSG_REGISTER_TASK};
        m.u.register_task.task_id = b.task_ids[h->tasks[s]];
        m.u.register_task.content_length = (uint64_t)b.pieces << 20;
        m.u.register_task.origin = "bench.example/blob";
        h->sent_ns[s] = uv_hrtime();
        bsend(h, &m);
        b.registered++;
        b.outstanding++;
    }
}

static void on_report_tick(uv_timer_t *t)
{
    (void)t;
    /* each tick (10 ms) covers 10/report_ms of all pairs: every pair reports once a period */
    uint64_t pairs = (uint64_t)b.hosts * b.per_host;
    uint64_t per_tick = pairs * 10 / (uint64_t)b.report_ms;
    if (per_tick == 0) per_tick = 1;
    for (uint64_t k = 0; k < per_tick; k++) {
        uint32_t pair = b.report_cursor++ % (uint32_t)pairs;
        struct bhost *h = &b.h[pair / b.per_host];
        int s = (int)(pair % b.per_host);
        if (h->reported[s] >= b.pieces) continue;
        proto_piece_run run = {h->reported[s]++, 1};
        char parent[24];
        snprintf(parent, sizeof(parent), "b-%d", (h->idx + 1 + (int)(pair % 7)) % b.hosts);
        proto_msg m = {.type = PROTO_MSG_PIECE_REPORT};
        m.u.piece_report.task_id = b.task_ids[h->tasks[s]];
        m.u.piece_report.runs = &run;
        m.u.piece_report.n_runs = 1;
        m.u.piece_report.parent_id = parent;
        bsend(h, &m);
        b.reports++;
    }
}

static int cmp_u64(const void *a, const void *c)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)c;
    return x < y ? -1 : x > y;
}

static void finish(uv_timer_t *t)
{
    (void)t;
    b.rss_reports = rss_kb(b.pid);
    qsort(b.lat_ns, b.n_lat, sizeof(uint64_t), cmp_u64);
    double secs = (double)(b.t_end - b.t_start) / 1e9;
    uint64_t pairs = (uint64_t)b.hosts * b.per_host;
    printf("hosts=%d\ntasks=%d\npairs=%llu\nregistrations=%llu\nregister_seconds=%.3f\n"
           "decisions_per_s=%.0f\nlat_p50_ms=%.3f\nlat_p99_ms=%.3f\nlat_max_ms=%.3f\n"
           "unsolicited_decisions=%llu\nreports=%llu\nreports_per_s=%.0f\nerrors=%llu\n",
           b.hosts, b.tasks, (unsigned long long)pairs, (unsigned long long)b.answered, secs,
           b.answered / secs, b.n_lat ? b.lat_ns[b.n_lat / 2] / 1e6 : 0,
           b.n_lat ? b.lat_ns[b.n_lat * 99 / 100] / 1e6 : 0,
           b.n_lat ? b.lat_ns[b.n_lat - 1] / 1e6 : 0, (unsigned long long)b.unsolicited,
           (unsigned long long)b.reports, b.reports / (double)b.report_s,
           (unsigned long long)b.errors);
    if (b.pid > 0)
        printf("rss_connected_kb=%ld\nrss_registered_kb=%ld\nrss_after_reports_kb=%ld\n"
               "bytes_per_pair=%.0f\n",
               b.rss_ready, b.rss_registered, b.rss_reports,
               (b.rss_reports - b.rss_ready) * 1024.0 / (double)pairs);
    fflush(stdout);
    for (int i = 0; i < b.hosts; i++) proto_conn_close(b.h[i].c, 0, "bench done");
    uv_close((uv_handle_t *)&b.report_timer, NULL);
    uv_close((uv_handle_t *)&b.stop_timer, NULL);
}

static void start_reports(void)
{
    b.phase = 2;
    uv_timer_init(loop, &b.report_timer);
    uv_timer_init(loop, &b.stop_timer);
    uv_timer_start(&b.report_timer, on_report_tick, 10, 10);
    uv_timer_start(&b.stop_timer, finish, (uint64_t)b.report_s * 1000, 0);
}

static void client_connect(proto_conn *c)
{
    struct bhost *h = proto_conn_data(c);
    proto_hello hello;
    proto_hello_init(&hello, h->id, PROTO_ROLE_PEER, 0, 0);
    proto_msg m = {.type = PROTO_MSG_HELLO};
    m.u.hello = hello;
    bsend(h, &m);
}

static void client_close(proto_conn *c, int status, const char *reason)
{
    struct bhost *h = proto_conn_data(c);
    if (status && b.phase < 3 && b.phase != 2) {
        b.errors++;
        if (b.errors < 5) fprintf(stderr, "bench: %s closed: %s\n", h->id, reason);
    }
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    cf_log_set_level(CF_LOG_WARN);
    loop = uv_default_loop();
    b.hosts = 10000;
    b.tasks = 100;
    b.per_host = 10;
    b.pieces = 256;
    b.window = 512;
    b.report_s = 5;
    b.report_ms = 1000;
    const char *target = NULL;
    static const struct option lo[] = {
        {"echo-server", 1, NULL, 'e'}, {"target", 1, NULL, 't'},   {"hosts", 1, NULL, 'H'},
        {"tasks", 1, NULL, 'T'},       {"per-host", 1, NULL, 'k'}, {"pieces", 1, NULL, 'p'},
        {"window", 1, NULL, 'w'},      {"report-s", 1, NULL, 'r'}, {"report-ms", 1, NULL, 'R'},
        {"pid", 1, NULL, 'P'},         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'e':
            return run_echo(optarg);
        case 't':
            target = optarg;
            break;
        case 'H':
            b.hosts = atoi(optarg);
            break;
        case 'T':
            b.tasks = atoi(optarg);
            break;
        case 'k':
            b.per_host = atoi(optarg);
            break;
        case 'p':
            b.pieces = (uint32_t)atoi(optarg);
            break;
        case 'w':
            b.window = atoi(optarg);
            break;
        case 'r':
            b.report_s = atoi(optarg);
            break;
        case 'R':
            b.report_ms = atoi(optarg);
            break;
        case 'P':
            b.pid = atoi(optarg);
            break;
        default:
            return 2;
        }
    }
    if (!target || proto_addr_parse(target, &b.addr) || b.hosts < 1 || b.tasks < 1 ||
        b.per_host < 1 || b.per_host > b.tasks || b.pieces < 1 || b.pieces > 4096 || b.window < 1 ||
        b.report_ms < 10 || b.report_s < 1) {
        fprintf(stderr, "usage: bench_scheduler --target IP:PORT [--hosts N] [--tasks N] "
                        "[--per-host K] [--pieces P] [--window W] [--report-s S] "
                        "[--report-ms MS] [--pid PID] | --echo-server IP:PORT\n");
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)b.hosts + 64) {
        fprintf(stderr, "bench: open-file limit %llu < %d hosts (ulimit -n)\n",
                (unsigned long long)rl.rlim_cur, b.hosts);
        return 2;
    }
    b.task_ids = calloc((size_t)b.tasks, sizeof(*b.task_ids));
    b.h = calloc((size_t)b.hosts, sizeof(*b.h));
    b.lat_ns = calloc((size_t)b.hosts * b.per_host, sizeof(uint64_t));
    if (!b.task_ids || !b.h || !b.lat_ns) return 1;
    for (int t = 0; t < b.tasks; t++) {
        uint8_t d[32] = {0xbe, 0x0c};
        d[30] = (uint8_t)(t >> 8);
        d[31] = (uint8_t)t;
        proto_task_id_from_digest(d, b.task_ids[t]);
    }
    srand(42);
    for (int i = 0; i < b.hosts; i++) {
        struct bhost *h = &b.h[i];
        h->idx = i;
        snprintf(h->id, sizeof(h->id), "b-%d", i);
        h->tasks = calloc((size_t)b.per_host, sizeof(int));
        h->sent_ns = calloc((size_t)b.per_host, sizeof(uint64_t));
        h->reported = calloc((size_t)b.per_host, sizeof(uint32_t));
        if (!h->tasks || !h->sent_ns || !h->reported) return 1;
        /* k distinct tasks: a random start, consecutive indices */
        int start = rand() % b.tasks;
        for (int s = 0; s < b.per_host; s++) h->tasks[s] = (start + s) % b.tasks;
        proto_conn_cbs cbs = {
            .on_frame = client_frame, .on_connect = client_connect, .on_close = client_close};
        if (proto_conn_connect_tcp(loop, (struct sockaddr *)&b.addr, NULL, &cbs, h, &h->c)) {
            fprintf(stderr, "bench: connect %d failed\n", i);
            return 1;
        }
    }
    uv_run(loop, UV_RUN_DEFAULT);
    return b.errors ? 1 : 0;
}
