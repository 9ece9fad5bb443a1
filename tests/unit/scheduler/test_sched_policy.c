/* Scheduling core: piece size rule, parent selection, origin protection, failure handling.
 * Time is injected (every call takes now_ms), decisions are recorded through sched_ops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/piece.h"
#include "sched/sched.h"

#define TASK  "sha256:0000000000000000000000000000000000000000000000000000000000000001"
#define TASK2 "sha256:0000000000000000000000000000000000000000000000000000000000000002"
#define TASK3 "sha256:0000000000000000000000000000000000000000000000000000000000000003"
#define MIB   (1ull << 20)

struct rec {
    char host[32];
    char parents[8][32];
    size_t n_parents;
    struct sched_run grant[64];
    size_t n_grant;
    uint32_t wait_ms;
};

static struct rec recs[4096];
static size_t n_recs;

static void on_decide(void *ctx, const struct sched_decision *d)
{
    (void)ctx;
    assert_true(n_recs < 4096);
    struct rec *r = &recs[n_recs++];
    memset(r, 0, sizeof(*r));
    snprintf(r->host, sizeof(r->host), "%s", sched_host_id(sched_peer_host(d->peer)));
    r->n_parents = d->n_parents;
    for (size_t i = 0; i < d->n_parents; i++)
        snprintf(r->parents[i], 32, "%s", sched_host_id(sched_peer_host(d->parents[i])));
    r->n_grant = d->n_grant;
    for (size_t i = 0; i < d->n_grant && i < 64; i++) r->grant[i] = d->grant[i];
    r->wait_ms = d->wait_ms;
}

static sched *new_sched(const struct sched_config *cfg)
{
    n_recs = 0;
    struct sched_ops ops = {.decide = on_decide};
    sched *s = sched_new(cfg, &ops);
    assert_non_null(s);
    return s;
}

static sched_host *host(sched *s, int i, const char *idc, uint32_t slots, uint64_t now)
{
    char id[32], addr[32];
    snprintf(id, sizeof(id), "h%d", i);
    snprintf(addr, sizeof(addr), "127.0.0.%d:4005", i + 1);
    struct sched_host_info info = {
        .host_id = id, .addr = addr, .idc = idc, .zone = "z", .rack = "r", .upload_slots = slots};
    sched_host *h = NULL;
    assert_int_equal(sched_host_announce(s, &info, now, &h), 0);
    return h;
}

static struct rec *last_for(const char *h)
{
    for (size_t i = n_recs; i-- > 0;)
        if (strcmp(recs[i].host, h) == 0) return &recs[i];
    return NULL;
}

static void report(sched *s, sched_host *h, const char *task, uint32_t start, uint32_t count,
                   const char *parent, uint64_t now)
{
    struct sched_run r = {start, count};
    cf_err err = {0};
    assert_int_equal(sched_report_pieces(s, h, task, &r, 1, parent, now, &err), 0);
}

/* The piece size a task gets when it is registered (the scheduler decides it for the swarm). */
static uint32_t registered_piece_size(uint64_t len)
{
    sched *s = new_sched(NULL);
    sched_host *h = host(s, 0, "", 4, 0);
    cf_err err = {0};
    assert_int_equal(sched_register(s, h, TASK, len, 0, NULL, &err), 0);
    sched_task *t = sched_task_find(s, TASK);
    assert_non_null(t);
    uint32_t ps = sched_task_piece_size(t);
    sched_free(s);
    return ps;
}

static void test_piece_size_rule(void **st)
{
    (void)st;
    /* Registration applies the one rule (proto_piece_size_for, proto/piece.h; its boundaries
     * are tested in tests/unit/proto/test_piece_rules.c): the same table as ever. */
    assert_int_equal(registered_piece_size(0), MIB);
    assert_int_equal(registered_piece_size(4096), MIB);
    assert_int_equal(registered_piece_size(1ull << 30), MIB);
    assert_int_equal(registered_piece_size((1ull << 30) + 1), 2 * MIB);
    assert_int_equal(registered_piece_size(4ull << 30), 2 * MIB);
    assert_int_equal(registered_piece_size(100ull << 30), 4 * MIB);
    /* > 1M pieces of 4 MiB: grows */
    assert_int_equal(registered_piece_size(8ull << 40), 8 * MIB);
    uint64_t lens[] = {0, 4096, 1ull << 30, (1ull << 30) + 1, 4ull << 30, 100ull << 30, 8ull << 40};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
        assert_int_equal(registered_piece_size(lens[i]), proto_piece_size_for(lens[i]));
    /* unrepresentable sizes are refused at registration */
    sched *s = new_sched(NULL);
    sched_host *h = host(s, 0, "", 4, 0);
    cf_err err = {0};
    assert_int_equal(sched_register(s, h, TASK, UINT64_MAX, 0, NULL, &err), -EMSGSIZE);
    assert_null(sched_task_find(s, TASK));
    /* content length must agree once the task exists */
    assert_int_equal(sched_register(s, h, TASK, 64 * MIB, 0, NULL, &err), 0);
    sched_host *h2 = host(s, 1, "", 4, 0);
    assert_int_equal(sched_register(s, h2, TASK, 65 * MIB, 0, NULL, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "content length"));
    sched_free(s);
}

/* 20 peers register one 64-piece task at once: every piece granted exactly once. */
static void test_flash_crowd_grants_once(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    sched_host *h[20];
    for (int i = 0; i < 20; i++) h[i] = host(s, i, "dc1", 8, 0);
    cf_err err = {0};
    for (int i = 0; i < 20; i++)
        assert_int_equal(sched_register(s, h[i], TASK, 64 * MIB, 0, NULL, &err), 0);
    int granted[64] = {0};
    int granted_peers = 0, with_parents = 0, waiting = 0;
    for (size_t i = 0; i < n_recs; i++) {
        if (recs[i].n_grant) granted_peers++;
        if (recs[i].n_parents) with_parents++;
        if (recs[i].wait_ms) waiting++;
        for (size_t r = 0; r < recs[i].n_grant; r++)
            for (uint32_t p = recs[i].grant[r].start;
                 p < recs[i].grant[r].start + recs[i].grant[r].count; p++)
                granted[p]++;
        /* nobody is its own parent */
        for (size_t j = 0; j < recs[i].n_parents; j++)
            assert_string_not_equal(recs[i].parents[j], recs[i].host);
    }
    for (int p = 0; p < 64; p++) assert_int_equal(granted[p], 1);
    assert_int_equal(granted_peers, 8); /* origin_peers default */
    assert_int_equal(n_recs, 20);
    assert_int_equal(with_parents + granted_peers >= 20 - waiting, 1);
    assert_true(with_parents >= 10); /* the rest are told where the pieces will appear */
    struct sched_stats ss;
    sched_stats_get(s, &ss);
    assert_int_equal(ss.grants_pieces, 64);
    sched_free(s);
}

/* One origin peer per task, grants of up to 64 pieces: the setting of the grant tests. */
static sched *grant_sched(void)
{
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.origin_peers = 1;
    cfg.grant_window = 64;
    return new_sched(&cfg);
}

/* A granted peer that makes no progress for stall_ms loses its grant to another peer. */
static void test_stalled_grant_moves(void **st)
{
    (void)st;
    sched *s = grant_sched();
    sched_host *a = host(s, 0, "", 4, 0), *b = host(s, 1, "", 4, 0);
    cf_err err = {0};
    assert_int_equal(sched_register(s, a, TASK, 8 * MIB, 0, NULL, &err), 0);
    assert_int_equal(last_for("h0")->n_grant, 1);
    assert_int_equal(sched_register(s, b, TASK, 8 * MIB, 0, NULL, &err), 0);
    assert_int_equal(last_for("h1")->n_grant, 0);
    assert_int_equal(last_for("h1")->n_parents, 1); /* a, cut-through */
    /* a makes progress on piece 0 at t=3s, then stops */
    report(s, a, TASK, 0, 1, "", 3000);
    sched_host_heartbeat(s, a, UINT32_MAX, 7000);
    sched_host_heartbeat(s, b, UINT32_MAX, 7000);
    n_recs = 0;
    sched_tick(s, 7000); /* 4 s since progress: not yet */
    assert_int_equal(n_recs, 0);
    sched_tick(s, 8001); /* > 5 s */
    struct rec *r = last_for("h1");
    assert_non_null(r);
    assert_int_equal(r->n_grant, 1);
    assert_int_equal(r->grant[0].start, 1); /* piece 0 is in the mesh already */
    assert_int_equal(r->grant[0].count, 7);
    struct sched_stats ss;
    sched_stats_get(s, &ss);
    assert_int_equal(ss.grants_moved, 7);
    sched_free(s);
}

/* On a slow origin link shared by several fetchers each one's pieces come seconds apart: the
 * stall limit follows the task's origin pace (3x one fetcher's wait, here 18 s), not the bare
 * 5 s, which moved honest grants and fetched their pieces twice (32 nodes at 25 Mbit/s). */
static void test_stall_limit_follows_origin_pace(void **st)
{
    (void)st;
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.origin_peers = 2;
    cfg.grant_window = 64;
    sched *s = new_sched(&cfg);
    sched_host *a = host(s, 0, "", 4, 0), *b = host(s, 1, "", 4, 0), *c = host(s, 2, "", 4, 0);
    sched_host *all[] = {a, b, c};
    cf_err err = {0};
    assert_int_equal(sched_register(s, a, TASK, 32 * MIB, 0, NULL, &err), 0);
    assert_int_equal(sched_register(s, b, TASK, 32 * MIB, 0, NULL, &err), 0);
    struct rec *ra = last_for("h0"), *rb = last_for("h1");
    assert_int_equal(ra->n_grant, 1);
    assert_int_equal(rb->n_grant, 1);
    uint32_t a0 = ra->grant[0].start, b0 = rb->grant[0].start;
    assert_int_equal(sched_register(s, c, TASK, 32 * MIB, 0, NULL, &err), 0);
    assert_int_equal(last_for("h2")->n_grant, 0); /* origin_peers = 2 hold grants */
    /* one origin piece every 1.5 s, the two fetchers in turn: 3 s between a fetcher's pieces
     * (1.5 s for a's first), so the limit grows toward 3 x 3 s (8 s by the end of this) */
    uint64_t now = 0;
    for (uint32_t k = 0; k < 5; k++) {
        report(s, a, TASK, a0 + k, 1, "", now += 1500);
        report(s, b, TASK, b0 + k, 1, "", now += 1500);
        for (int i = 0; i < 3; i++) sched_host_heartbeat(s, all[i], UINT32_MAX, now);
        sched_tick(s, now);
    }
    /* now = 15 s; a's last piece at 13.5 s. b goes on, a stops: at 21 s, 7.5 s later (over
     * the bare 5 s stall_ms), its grants stay: the task's waits say a fetcher may need 8 s */
    n_recs = 0;
    for (uint32_t k = 5; k < 7; k++) {
        report(s, b, TASK, b0 + k, 1, "", now += 3000);
        for (int i = 0; i < 3; i++) sched_host_heartbeat(s, all[i], UINT32_MAX, now);
        sched_tick(s, now); /* 18 s (a silent 4.5 s), 21 s (7.5 s) */
        struct sched_stats ss;
        sched_stats_get(s, &ss);
        assert_int_equal(ss.grants_moved, 0);
    }
    /* 23 s: 9.5 s without a piece, over the limit (b's slower pieces do not lengthen it) */
    now += 2000;
    for (int i = 0; i < 3; i++) sched_host_heartbeat(s, all[i], UINT32_MAX, now);
    sched_tick(s, now);
    struct sched_stats ss;
    sched_stats_get(s, &ss);
    assert_true(ss.grants_moved > 0);
    sched_free(s);
}

/* A host whose origin pieces keep landing in another task is busy, not stuck: its grants in a
 * task without recent progress stay (moving them fetched its in-flight pieces twice); once it
 * stops everywhere, they move. */
static void test_busy_host_keeps_grants(void **st)
{
    (void)st;
    sched *s = grant_sched();
    sched_host *a = host(s, 0, "", 4, 0), *b = host(s, 1, "", 4, 0);
    cf_err err = {0};
    assert_int_equal(sched_register(s, a, TASK, 8 * MIB, 0, NULL, &err), 0);
    assert_int_equal(sched_register(s, a, TASK2, 8 * MIB, 0, NULL, &err), 0);
    assert_int_equal(sched_register(s, b, TASK, 8 * MIB, 0, NULL, &err), 0);
    report(s, a, TASK, 0, 1, "", 1000);
    report(s, a, TASK2, 0, 1, "", 6500); /* busy in TASK2 */
    sched_host_heartbeat(s, a, UINT32_MAX, 8000);
    sched_host_heartbeat(s, b, UINT32_MAX, 8000);
    n_recs = 0;
    sched_tick(s, 8000); /* 7 s without progress in TASK, 1.5 s since TASK2's */
    assert_null(last_for("h1"));
    struct sched_stats ss;
    sched_stats_get(s, &ss);
    assert_int_equal(ss.grants_moved, 0);
    sched_host_heartbeat(s, a, UINT32_MAX, 12000);
    sched_host_heartbeat(s, b, UINT32_MAX, 12000);
    sched_tick(s, 12000); /* 5.5 s since any origin piece of a */
    struct rec *r = last_for("h1");
    assert_non_null(r);
    assert_int_equal(r->n_grant, 1);
    assert_int_equal(r->grant[0].start, 1);
    sched_free(s);
}

/* A granted peer that leaves hands its grants on at once; its children get new parents. */
static void test_leave_moves_grant_and_reparents(void **st)
{
    (void)st;
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.origin_peers = 1;
    sched *s = new_sched(&cfg);
    sched_host *a = host(s, 0, "", 4, 0), *b = host(s, 1, "", 4, 0), *c = host(s, 2, "", 4, 0);
    cf_err err = {0};
    assert_int_equal(sched_register(s, a, TASK, 4 * MIB, 0, NULL, &err), 0);
    report(s, a, TASK, 0, 2, "", 100);
    assert_int_equal(sched_register(s, b, TASK, 4 * MIB, 200, NULL, &err), 0);
    report(s, b, TASK, 0, 1, "h0", 300);
    assert_int_equal(sched_register(s, c, TASK, 4 * MIB, 400, NULL, &err), 0);
    struct rec *rc = last_for("h2");
    assert_true(rc->n_parents >= 1);
    n_recs = 0;
    sched_host_leave(s, a, 500);
    /* piece 1 (only a had it) and pieces 2-3 (a's grant) are orphans again: granted anew,
     * and b/c are re-parented away from h0 */
    int regranted = 0;
    for (size_t i = 0; i < n_recs; i++) {
        for (size_t j = 0; j < recs[i].n_parents; j++)
            assert_string_not_equal(recs[i].parents[j], "h0");
        for (size_t r = 0; r < recs[i].n_grant; r++) regranted += recs[i].grant[r].count;
    }
    assert_int_equal(regranted, 3);
    sched_free(s);
}

/* Heartbeats every 2 s; three missed -> host gone, its children get new parents. */
static void test_heartbeat_expiry(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    sched_host *a = host(s, 0, "", 4, 0), *b = host(s, 1, "", 4, 0), *c = host(s, 2, "", 4, 0);
    cf_err err = {0};
    assert_int_equal(sched_register(s, a, TASK, 2 * MIB, 0, NULL, &err), 0);
    report(s, a, TASK, 0, 2, "", 100);
    assert_int_equal(sched_task_finished(s, a, TASK, 100, &err), 0);
    assert_int_equal(sched_register(s, b, TASK, 2 * MIB, 0, NULL, &err), 0);
    report(s, b, TASK, 0, 2, "h0", 300);
    assert_int_equal(sched_register(s, c, TASK, 2 * MIB, 400, NULL, &err), 0);
    assert_int_equal(last_for("h2")->n_parents, 2);
    for (uint64_t t = 2000; t <= 6000; t += 2000) {
        sched_host_heartbeat(s, b, UINT32_MAX, t);
        sched_host_heartbeat(s, c, UINT32_MAX, t);
        sched_tick(s, t);
    }
    assert_non_null(sched_host_find(s, "h0")); /* 6 s silent: exactly 3 missed, still here */
    n_recs = 0;
    sched_host_heartbeat(s, b, UINT32_MAX, 6500);
    sched_host_heartbeat(s, c, UINT32_MAX, 6500);
    sched_tick(s, 6500);
    assert_null(sched_host_find(s, "h0"));
    struct rec *r = last_for("h2");
    assert_non_null(r);
    assert_int_equal(r->n_parents, 1);
    assert_string_equal(r->parents[0], "h1");
    struct sched_stats ss;
    sched_stats_get(s, &ss);
    assert_int_equal(ss.hosts_expired, 1);
    assert_int_equal(ss.hosts, 2);
    sched_free(s);
}

/* Scoring: more useful pieces, free slots and same location win; bad parents never return. */
static void test_selection_scoring(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    cf_err err = {0};
    sched_host *child = host(s, 0, "dc1", 4, 0);
    sched_host *full_far = host(s, 1, "dc2", 4, 0);
    sched_host *half_near = host(s, 2, "dc1", 4, 0);
    sched_host *none = host(s, 3, "dc1", 4, 0);
    sched_host *busy = host(s, 4, "dc1", 1, 0);
    sched_host *full_near = host(s, 5, "dc1", 4, 0);
    sched_host *other = host(s, 6, "dc1", 4, 0);
    assert_int_equal(sched_register(s, full_far, TASK, 16 * MIB, 0, NULL, &err), 0);
    report(s, full_far, TASK, 0, 16, "", 0);
    assert_int_equal(sched_register(s, half_near, TASK, 16 * MIB, 0, NULL, &err), 0);
    report(s, half_near, TASK, 0, 8, "h1", 10);
    assert_int_equal(sched_register(s, full_near, TASK, 16 * MIB, 0, NULL, &err), 0);
    report(s, full_near, TASK, 0, 16, "h1", 10);
    assert_int_equal(sched_register(s, none, TASK, 16 * MIB, 0, NULL, &err), 0);
    assert_int_equal(sched_register(s, busy, TASK, 16 * MIB, 0, NULL, &err), 0);
    report(s, busy, TASK, 0, 16, "h1", 10);
    /* someone else occupies busy's only slot */
    assert_int_equal(sched_register(s, other, TASK, 16 * MIB, 0, NULL, &err), 0);
    struct rec *ro = last_for("h6");
    (void)ro;
    assert_int_equal(sched_register(s, child, TASK, 16 * MIB, 20, NULL, &err), 0);
    struct rec *r = last_for("h0");
    assert_true(r->n_parents >= 2);
    assert_string_equal(r->parents[0], "h5"); /* everything, same idc */
    for (size_t i = 0; i < r->n_parents; i++) {
        assert_string_not_equal(r->parents[i], "h0");
        assert_string_not_equal(r->parents[i], "h3"); /* has nothing */
    }
    /* the child reports h5 bad: never offered again for this task */
    assert_int_equal(sched_bad_parent(s, child, TASK, "h5", 1, 30), 0);
    r = last_for("h0");
    assert_true(r->n_parents >= 1);
    for (size_t i = 0; i < r->n_parents; i++) assert_string_not_equal(r->parents[i], "h5");
    assert_int_equal(sched_register(s, child, TASK, 16 * MIB, 40, NULL, &err), 0);
    r = last_for("h0");
    for (size_t i = 0; i < r->n_parents; i++) assert_string_not_equal(r->parents[i], "h5");
    sched_free(s);
}

/* A parent whose pieces take far longer than the others' is dropped. */
static void test_outlier_dropped(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    cf_err err = {0};
    sched_host *src = host(s, 0, "", 100, 0);
    assert_int_equal(sched_register(s, src, TASK, 64 * MIB, 0, NULL, &err), 0);
    report(s, src, TASK, 0, 64, "", 0);
    /* four parents fetch pieces; h4 ("slow") serves its child at 1/10 the speed */
    sched_host *p[5], *k[5];
    for (int i = 1; i <= 4; i++) {
        p[i] = host(s, i, "", 8, 0);
        assert_int_equal(sched_register(s, p[i], TASK, 64 * MIB, 0, NULL, &err), 0);
        report(s, p[i], TASK, 0, 32, "h0", 10);
    }
    for (int i = 1; i <= 4; i++) {
        k[i] = host(s, 10 + i, "", 8, 0);
        assert_int_equal(sched_register(s, k[i], TASK, 64 * MIB, 100, NULL, &err), 0);
        uint64_t t = 100;
        for (int j = 0; j < 8; j++) {
            t += i == 4 ? 1000 : 100;
            char pid[16];
            snprintf(pid, sizeof(pid), "h%d", i);
            report(s, k[i], TASK, (uint32_t)j, 1, pid, t);
        }
    }
    sched_host *child = host(s, 30, "", 8, 0);
    struct sched_config cfg = *sched_get_config(s);
    (void)cfg;
    assert_int_equal(sched_register(s, child, TASK, 64 * MIB, 20000, NULL, &err), 0);
    struct rec *r = last_for("h30");
    assert_true(r->n_parents >= 3);
    for (size_t i = 0; i < r->n_parents; i++) assert_string_not_equal(r->parents[i], "h4");
    struct sched_stats ss;
    sched_stats_get(s, &ss);
    assert_true(ss.outliers_dropped >= 1);
    sched_free(s);
}

/* A host reported bad in 3 different tasks by at least 2 hosts is banned cluster-wide. */
static void test_cluster_ban(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    cf_err err = {0};
    const char *tasks[3] = {TASK, TASK2, TASK3};
    sched_host *liar = host(s, 0, "", 8, 0);
    sched_host *victim = host(s, 1, "", 8, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sched_register(s, liar, tasks[i], 4 * MIB, 0, NULL, &err), 0);
        report(s, liar, tasks[i], 0, 4, "", 0);
    }
    assert_int_equal(sched_host_banned(s, "h0", 1), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sched_register(s, victim, tasks[i], 4 * MIB, 10, NULL, &err), 0);
        assert_int_equal(sched_bad_parent(s, victim, tasks[i], "h0", 1, 20), 0);
    }
    /* one reporter alone cannot ban a host (it may be the liar) */
    assert_int_equal(sched_host_banned(s, "h0", 30), 0);
    sched_host *victim2 = host(s, 3, "", 8, 0);
    assert_int_equal(sched_register(s, victim2, TASK, 4 * MIB, 25, NULL, &err), 0);
    assert_int_equal(sched_bad_parent(s, victim2, TASK, "h0", 1, 25), 0);
    assert_int_equal(sched_host_banned(s, "h0", 30), 1);
    /* a third host never gets the liar as a parent in any task */
    sched_host *other = host(s, 2, "", 8, 0);
    assert_int_equal(sched_register(s, other, TASK2, 4 * MIB, 40, NULL, &err), 0);
    struct rec *r = last_for("h2");
    for (size_t i = 0; i < r->n_parents; i++) assert_string_not_equal(r->parents[i], "h0");
    /* bans end */
    sched_host_heartbeat(s, liar, UINT32_MAX, 600000);
    sched_host_heartbeat(s, victim, UINT32_MAX, 600000);
    sched_host_heartbeat(s, other, UINT32_MAX, 600000);
    sched_host_heartbeat(s, victim2, UINT32_MAX, 600000);
    sched_tick(s, 600100);
    assert_int_equal(sched_host_banned(s, "h0", 600100), 0);
    sched_free(s);
}

/* Timeouts and lost connections are what an honest parent on a congested link causes: from
 * many hosts in many tasks they never ban it, and the reporter may be given it again. */
static void test_slow_parent_not_banned(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    cf_err err = {0};
    const char *tasks[3] = {TASK, TASK2, TASK3};
    sched_host *slow = host(s, 0, "", 8, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sched_register(s, slow, tasks[i], 4 * MIB, 0, NULL, &err), 0);
        report(s, slow, tasks[i], 0, 4, "", 0);
    }
    for (int k = 1; k <= 3; k++) {
        sched_host *c = host(s, k, "", 8, 0);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(sched_register(s, c, tasks[i], 4 * MIB, 10, NULL, &err), 0);
            assert_int_equal(sched_bad_parent(s, c, tasks[i], "h0", 0, 20), 0);
        }
    }
    assert_int_equal(sched_host_banned(s, "h0", 30), 0);
    /* the reporter asks again: the only holder is offered again */
    sched_host *c1 = sched_host_find(s, "h1");
    assert_non_null(c1);
    assert_int_equal(sched_register(s, c1, TASK, 4 * MIB, 40, NULL, &err), 0);
    struct rec *r = last_for("h1");
    int found = 0;
    for (size_t i = 0; i < r->n_parents; i++) found |= !strcmp(r->parents[i], "h0");
    assert_true(found);
    sched_free(s);
}

/* A waiting peer gets parents pushed as soon as a piece appears in the mesh. */
static void test_wait_then_parents(void **st)
{
    (void)st;
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.origin_peers = 1;
    sched *s = new_sched(&cfg);
    cf_err err = {0};
    sched_host *a = host(s, 0, "", 1, 0), *b = host(s, 1, "", 1, 0), *c = host(s, 2, "", 1, 0);
    assert_int_equal(sched_register(s, a, TASK, 4 * MIB, 0, NULL, &err), 0);
    assert_int_equal(sched_register(s, b, TASK, 4 * MIB, 0, NULL, &err), 0);
    assert_int_equal(last_for("h1")->n_parents, 1); /* a's only slot */
    assert_int_equal(sched_register(s, c, TASK, 4 * MIB, 0, NULL, &err), 0);
    assert_true(last_for("h2")->wait_ms > 0); /* a is full, b has nothing */
    report(s, b, TASK, 0, 1, "h0", 100);      /* b now has piece 0 */
    struct rec *r = last_for("h2");
    assert_int_equal(r->wait_ms, 0);
    assert_int_equal(r->n_parents, 1);
    assert_string_equal(r->parents[0], "h1");
    sched_free(s);
}

/* Registering a task that the peer already has fully (after a scheduler restart) makes it a
 * parent right away. */
static void test_reannounce_rebuilds(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    cf_err err = {0};
    sched_host *seed = host(s, 0, "", 4, 0), *leech = host(s, 1, "", 4, 0);
    assert_int_equal(sched_register(s, seed, TASK, 10 * MIB, 0, NULL, &err), 0);
    report(s, seed, TASK, 0, 10, "", 1);
    assert_int_equal(sched_task_finished(s, seed, TASK, 1, &err), 0);
    assert_int_equal(sched_register(s, leech, TASK, 10 * MIB, 2, NULL, &err), 0);
    struct rec *r = last_for("h1");
    assert_int_equal(r->n_grant, 0);
    assert_int_equal(r->n_parents, 1);
    /* bad runs are refused without changing anything */
    struct sched_run bad = {9, 2};
    assert_int_equal(sched_report_pieces(s, leech, TASK, &bad, 1, "h0", 3, &err), -ERANGE);
    struct sched_run zero = {0, 0};
    assert_int_equal(sched_report_pieces(s, leech, TASK, &zero, 1, "h0", 3, &err), -ERANGE);
    assert_int_equal(sched_task_finished(s, leech, TASK, 4, &err), -EBADMSG);
    assert_int_equal(sched_report_pieces(s, leech, TASK2, &zero, 1, "h0", 3, &err), -ENOENT);
    sched_free(s);
}

/* Before any throughput is measured, the announced upload bandwidth breaks the tie. */
static void test_bandwidth_prior(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    cf_err err = {0};
    struct sched_host_info slow = {
        .host_id = "slow", .addr = "10.0.0.1:1", .upload_slots = 4, .upload_bw = 10 << 20};
    struct sched_host_info fast = {
        .host_id = "fast", .addr = "10.0.0.2:1", .upload_slots = 4, .upload_bw = 100 << 20};
    sched_host *a, *b;
    assert_int_equal(sched_host_announce(s, &slow, 0, &a), 0);
    assert_int_equal(sched_host_announce(s, &fast, 0, &b), 0);
    for (int i = 0; i < 2; i++) {
        sched_host *h = i ? b : a;
        assert_int_equal(sched_register(s, h, TASK, 8 * MIB, 0, NULL, &err), 0);
        report(s, h, TASK, 0, 8, "", 0);
    }
    sched_host *c = host(s, 5, "", 4, 0);
    assert_int_equal(sched_register(s, c, TASK, 8 * MIB, 1, NULL, &err), 0);
    struct rec *r = last_for("h5");
    assert_int_equal(r->n_parents, 2);
    assert_string_equal(r->parents[0], "fast");
    sched_free(s);
}

/* Issue 14: the parent score weighs the share of a parent's uplink a child would get, not its
 * observed speed alone: a parent that already serves a child (and measured fast doing it) does
 * not win the next child over an equal parent that serves nobody. */
static void test_share_spreads_children(void **st)
{
    (void)st;
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.max_candidates = 1;
    sched *s = new_sched(&cfg);
    cf_err err = {0};
    sched_host *p1 = host(s, 1, "dc1", 16, 0), *p2 = host(s, 2, "dc1", 16, 0);
    sched_host *c1 = host(s, 3, "dc1", 16, 0), *c2 = host(s, 4, "dc1", 16, 0);
    for (int i = 0; i < 2; i++) {
        sched_host *h = i ? p2 : p1;
        assert_int_equal(sched_register(s, h, TASK, 16 * MIB, 0, NULL, &err), 0);
        report(s, h, TASK, 0, 16, "", 0);
    }
    assert_int_equal(sched_register(s, c1, TASK, 16 * MIB, 10, NULL, &err), 0);
    struct rec *r = last_for("h3");
    assert_int_equal(r->n_parents, 1);
    char first[32];
    snprintf(first, sizeof(first), "%s", r->parents[0]);
    /* c1 takes 4 pieces from it quickly: a throughput sample for that parent only */
    report(s, c1, TASK, 0, 4, first, 60);
    assert_int_equal(sched_register(s, c2, TASK, 16 * MIB, 70, NULL, &err), 0);
    r = last_for("h4");
    assert_int_equal(r->n_parents, 1);
    assert_string_not_equal(r->parents[0], first);
    sched_free(s);
}

/* Issue 14: a peer re-asking while it still holds a grant window gets no further window (peers
 * re-ask every 1-2 s while pieces lack a known holder: windows piled up on whoever re-asked,
 * up to 64 pieces on one 20 Mbit/s node); it gets the next one when it reports this one done. */
static void test_reask_adds_no_window(void **st)
{
    (void)st;
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.origin_peers = 2;
    cfg.grant_window = 4;
    sched *s = new_sched(&cfg);
    cf_err err = {0};
    sched_host *a = host(s, 0, "dc1", 4, 0);
    assert_int_equal(sched_register(s, a, TASK, 64 * MIB, 0, NULL, &err), 0);
    struct rec *r = last_for("h0");
    assert_int_equal(r->n_grant, 1);
    assert_int_equal(r->grant[0].count, 4);
    uint32_t first = r->grant[0].start;
    size_t before = n_recs;
    assert_int_equal(sched_register(s, a, TASK, 64 * MIB, 100, NULL, &err), 0);
    assert_int_equal(n_recs, before + 1);
    assert_int_equal(last_for("h0")->n_grant, 0);
    report(s, a, TASK, first, 3, "", 200);
    assert_int_equal(n_recs, before + 1); /* window not done yet: nothing new */
    report(s, a, TASK, first + 3, 1, "", 300);
    r = last_for("h0");
    assert_int_equal(r->n_grant, 1); /* done: the next window */
    assert_int_equal(r->grant[0].count, 4);
    struct sched_stats ss;
    sched_stats_get(s, &ss);
    assert_int_equal(ss.grants_pieces, 8);
    sched_free(s);
}

/* Issue 14 (mixed links): a host announcing less than half the task's fastest uplink gets no
 * grant window while another peer holds one, so first copies do not wait behind a slow link;
 * with no grant held anywhere it still gets one (nobody else may come). */
static void test_slow_host_no_grant_window(void **st)
{
    (void)st;
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.origin_peers = 2;
    cfg.grant_window = 4;
    sched *s = new_sched(&cfg);
    cf_err err = {0};
    struct sched_host_info fi = {
        .host_id = "fast", .addr = "10.0.0.1:1", .upload_slots = 4, .upload_bw = 100 << 20};
    struct sched_host_info f2i = {
        .host_id = "fast2", .addr = "10.0.0.2:1", .upload_slots = 4, .upload_bw = 100 << 20};
    struct sched_host_info si = {
        .host_id = "slow", .addr = "10.0.0.3:1", .upload_slots = 4, .upload_bw = 20 << 20};
    sched_host *fast, *fast2, *slow;
    assert_int_equal(sched_host_announce(s, &fi, 0, &fast), 0);
    assert_int_equal(sched_host_announce(s, &f2i, 0, &fast2), 0);
    assert_int_equal(sched_host_announce(s, &si, 0, &slow), 0);
    assert_int_equal(sched_register(s, fast, TASK, 16 * MIB, 0, NULL, &err), 0);
    assert_true(last_for("fast")->n_grant > 0);
    assert_int_equal(sched_register(s, slow, TASK, 16 * MIB, 1, NULL, &err), 0);
    struct rec *r = last_for("slow");
    assert_int_equal(r->n_grant, 0);
    assert_true(r->n_parents >= 1); /* told where the pieces will appear: the fast grantee */
    assert_string_equal(r->parents[0], "fast");
    assert_int_equal(sched_register(s, fast2, TASK, 16 * MIB, 2, NULL, &err), 0);
    assert_true(last_for("fast2")->n_grant > 0);
    sched_free(s);

    /* alone, or first: the slow host is granted */
    s = new_sched(&cfg);
    assert_int_equal(sched_host_announce(s, &fi, 0, &fast), 0);
    assert_int_equal(sched_host_announce(s, &si, 0, &slow), 0);
    assert_int_equal(sched_register(s, slow, TASK, 16 * MIB, 0, NULL, &err), 0);
    assert_true(last_for("slow")->n_grant > 0);
    sched_free(s);
}

/* After a restart/failover (peers re-announcing what they hold), a new task holds its origin
 * grants briefly so pieces already in the mesh are not granted again. */
static void test_recovery_hold(void **st)
{
    (void)st;
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.origin_peers = 4; /* the shares counted below (the default was 4 when written) */
    sched *s = new_sched(&cfg);
    cf_err err = {0};
    sched_host *a = host(s, 0, "", 4, 0), *c = host(s, 2, "", 4, 0);
    /* a re-announces a task it holds: the scheduler is recovering */
    assert_int_equal(sched_register(s, a, TASK, 4 * MIB, 100, NULL, &err), 0);
    report(s, a, TASK, 0, 4, "h0", 100);
    /* c registers a task nobody has announced yet: no grant now, WAIT */
    assert_int_equal(sched_register(s, c, TASK2, 8 * MIB, 200, NULL, &err), 0);
    struct rec *r = last_for("h2");
    assert_int_equal(r->n_grant, 0);
    assert_true(r->wait_ms > 0);
    /* a re-announces pieces 0-3 of that task */
    assert_int_equal(sched_register(s, a, TASK2, 8 * MIB, 300, NULL, &err), 0);
    assert_int_equal(last_for("h0")->n_grant, 0);
    report(s, a, TASK2, 0, 4, "h0", 300);
    n_recs = 0;
    sched_host_heartbeat(s, a, UINT32_MAX, 750);
    sched_host_heartbeat(s, c, UINT32_MAX, 750);
    sched_tick(s, 750); /* hold over: only the real orphans 4-7 are granted */
    int granted = 0;
    for (size_t i = 0; i < n_recs; i++)
        for (size_t k = 0; k < recs[i].n_grant; k++) {
            assert_true(recs[i].grant[k].start >= 4);
            granted += (int)recs[i].grant[k].count;
        }
    assert_int_equal(granted, 4);
    struct sched_stats ss;
    sched_stats_get(s, &ss);
    assert_int_equal(ss.grant_holds, 2); /* TASK (young when re-announced) and TASK2 */
    /* without recent re-announces, new tasks are granted at once */
    sched_host *d = host(s, 3, "", 4, 10000);
    assert_int_equal(sched_register(s, d, TASK3, 4 * MIB, 10000, NULL, &err), 0);
    assert_int_equal(last_for("h3")->n_grant, 1);
    sched_free(s);
}

/* A restarted scheduler: the first host to re-register the task holds nothing (its origin
 * fetches were in flight), the holders come back later. Its re-registration ("rs") holds the
 * grants, so the pieces the others re-announce are not granted again; a first registration
 * (no "rs") is granted at once, as before. */
static void test_reregistration_hold(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    cf_err err = {0};
    sched_host *a = host(s, 0, "", 4, 0), *b = host(s, 1, "", 4, 0);
    sched_note_reregistration(s, TASK, 100);
    assert_int_equal(sched_register(s, a, TASK, 8 * MIB, 100, NULL, &err), 0);
    struct rec *r = last_for("h0");
    assert_int_equal(r->n_grant, 0);
    assert_true(r->wait_ms > 0);
    /* b comes back with pieces 0-5 */
    sched_note_reregistration(s, TASK, 300);
    assert_int_equal(sched_register(s, b, TASK, 8 * MIB, 300, NULL, &err), 0);
    report(s, b, TASK, 0, 6, "h1", 300);
    n_recs = 0;
    sched_host_heartbeat(s, a, UINT32_MAX, 700);
    sched_host_heartbeat(s, b, UINT32_MAX, 700);
    sched_tick(s, 700); /* hold over (100 + 500): only pieces 6-7 go to the origin */
    int granted = 0;
    for (size_t i = 0; i < n_recs; i++)
        for (size_t k = 0; k < recs[i].n_grant; k++) {
            assert_true(recs[i].grant[k].start >= 6);
            granted += (int)recs[i].grant[k].count;
        }
    assert_int_equal(granted, 2);
    /* an older task re-registered after its hold: nothing is held again */
    sched_host *c = host(s, 2, "", 4, 20000);
    assert_int_equal(sched_register(s, c, TASK2, 4 * MIB, 20000, NULL, &err), 0);
    assert_int_equal(last_for("h2")->n_grant, 1);
    sched_note_reregistration(s, TASK2, 21000);
    sched_host *e = host(s, 3, "", 4, 21000);
    assert_int_equal(sched_register(s, e, TASK2, 4 * MIB, 21000, NULL, &err), 0);
    struct sched_stats ss;
    sched_stats_get(s, &ss);
    assert_int_equal(ss.grant_holds, 1);
    sched_free(s);
}

static int granted_since(size_t from)
{
    int n = 0;
    for (size_t i = from; i < n_recs; i++)
        for (size_t k = 0; k < recs[i].n_grant; k++) n += (int)recs[i].grant[k].count;
    return n;
}

static int has_parent(const struct rec *r, const char *h)
{
    for (size_t i = 0; i < r->n_parents; i++)
        if (strcmp(r->parents[i], h) == 0) return 1;
    return 0;
}

/* The only holder of every piece is reported bad by a child: that child gets the pieces granted
 * at once instead of WAIT; a child that did not report it still gets it as a parent. */
static void test_bad_holder_not_waited_on(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    cf_err err = {0};
    sched_host *seed = host(s, 0, "", 8, 0), *c = host(s, 1, "", 8, 0), *d = host(s, 2, "", 8, 0);
    assert_int_equal(sched_register(s, seed, TASK, 8 * MIB, 0, NULL, &err), 0);
    report(s, seed, TASK, 0, 8, "", 10);
    assert_int_equal(sched_task_finished(s, seed, TASK, 10, &err), 0);
    assert_int_equal(sched_register(s, c, TASK, 8 * MIB, 20, NULL, &err), 0);
    struct rec *r = last_for("h1");
    assert_int_equal(r->n_grant, 0);
    assert_true(has_parent(r, "h0"));
    n_recs = 0;
    assert_int_equal(sched_bad_parent(s, c, TASK, "h0", 1, 30), 0);
    r = last_for("h1");
    assert_non_null(r);
    assert_int_equal(r->wait_ms, 0); /* never WAIT on a holder it cannot use */
    assert_false(has_parent(r, "h0"));
    assert_int_equal(granted_since(0), 8);
    /* d did not report h0: h0 is still its parent, and nothing is granted to it */
    n_recs = 0;
    assert_int_equal(sched_register(s, d, TASK, 8 * MIB, 40, NULL, &err), 0);
    r = last_for("h2");
    assert_int_equal(r->n_grant, 0);
    assert_int_equal(r->wait_ms, 0);
    assert_true(has_parent(r, "h0"));
    sched_free(s);
}

/* The same while the origin_peers cap is full (the bad holder also holds the task's only
 * grant): the pieces only that child cannot get are still granted to it, and only those. */
static void test_bad_holder_cap_full(void **st)
{
    (void)st;
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.origin_peers = 1;
    cfg.grant_window = 4;
    sched *s = new_sched(&cfg);
    cf_err err = {0};
    sched_host *a = host(s, 0, "", 8, 0), *g = host(s, 1, "", 8, 0), *c = host(s, 2, "", 8, 0);
    sched_host *d = host(s, 3, "", 8, 0);
    assert_int_equal(sched_register(s, a, TASK, 8 * MIB, 0, NULL, &err), 0);
    assert_int_equal(last_for("h0")->n_grant, 1);
    report(s, a, TASK, 0, 4, "", 10); /* a holds 0-3 and gets the next window, 4-7 */
    assert_int_equal(last_for("h0")->grant[0].start, 4);
    assert_int_equal(sched_register(s, g, TASK, 8 * MIB, 20, NULL, &err), 0);
    assert_int_equal(last_for("h1")->n_grant, 0);
    assert_true(has_parent(last_for("h1"), "h0"));
    assert_int_equal(sched_register(s, c, TASK, 8 * MIB, 30, NULL, &err), 0);
    assert_int_equal(last_for("h2")->n_grant, 0);
    n_recs = 0;
    assert_int_equal(sched_bad_parent(s, c, TASK, "h0", 1, 40), 0);
    struct rec *r = last_for("h2");
    assert_non_null(r);
    assert_int_equal(r->wait_ms, 0);
    int got = 0;
    for (size_t k = 0; k < r->n_grant; k++) {
        assert_true(r->grant[k].start + r->grant[k].count <= 4); /* 4-7: a's live grant */
        got += (int)r->grant[k].count;
    }
    assert_int_equal(got, 4);
    /* d reported nobody: a is its parent, no grant (pieces 0-3 held, 4-7 granted) */
    assert_int_equal(sched_register(s, d, TASK, 8 * MIB, 50, NULL, &err), 0);
    r = last_for("h3");
    assert_int_equal(r->n_grant, 0);
    assert_true(has_parent(r, "h0"));
    sched_free(s);
}

/* A holder banned cluster-wide: its children are moved away at once and get the orphans granted
 * exactly once; later registrants are never offered it nor told to wait for it. */
static void test_banned_holder_not_waited_on(void **st)
{
    (void)st;
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.ban_after_tasks = 1; /* one report bans (the multi-report rule: test_cluster_ban) */
    cfg.ban_min_reporters = 1;
    cfg.origin_peers = 4; /* the shares counted below (the default was 4 when written) */
    sched *s = new_sched(&cfg);
    cf_err err = {0};
    sched_host *bad = host(s, 0, "", 8, 0), *x = host(s, 1, "", 8, 0), *y = host(s, 2, "", 8, 0);
    sched_host *c = host(s, 3, "", 8, 0), *w = host(s, 4, "", 8, 0);
    assert_int_equal(sched_register(s, bad, TASK, 8 * MIB, 0, NULL, &err), 0);
    report(s, bad, TASK, 0, 8, "", 10);
    assert_int_equal(sched_task_finished(s, bad, TASK, 10, &err), 0);
    assert_int_equal(sched_register(s, bad, TASK2, 4 * MIB, 10, NULL, &err), 0);
    report(s, bad, TASK2, 0, 4, "", 10);
    assert_int_equal(sched_register(s, x, TASK, 8 * MIB, 20, NULL, &err), 0);
    assert_true(has_parent(last_for("h1"), "h0"));
    /* y reports h0 bad in another task: banned */
    assert_int_equal(sched_register(s, y, TASK2, 4 * MIB, 30, NULL, &err), 0);
    n_recs = 0;
    assert_int_equal(sched_bad_parent(s, y, TASK2, "h0", 1, 40), 0);
    assert_int_equal(sched_host_banned(s, "h0", 40), 1);
    struct rec *r = last_for("h1"); /* x was h0's child in TASK: moved at once */
    assert_non_null(r);
    assert_int_equal(r->wait_ms, 0);
    assert_false(has_parent(r, "h0"));
    /* its share of the first copies: 8 pieces over origin_peers (4) fetchers */
    assert_int_equal(r->n_grant, 1);
    assert_int_equal(r->grant[0].start, 0);
    assert_int_equal(r->grant[0].count, 2);
    /* c: x (fetching) as parent and the next share granted, never h0 and never WAIT; nothing
     * granted twice */
    size_t from = n_recs;
    assert_int_equal(sched_register(s, c, TASK, 8 * MIB, 50, NULL, &err), 0);
    r = last_for("h3");
    assert_int_equal(r->wait_ms, 0);
    assert_false(has_parent(r, "h0"));
    assert_true(has_parent(r, "h1"));
    assert_int_equal(granted_since(from), 2);
    assert_int_equal(r->n_grant, 1);
    assert_int_equal(r->grant[0].start, 2);
    /* pieces appearing push parents to waiting peers: never the banned one */
    report(s, x, TASK, 0, 1, "", 60);
    for (size_t i = from; i < n_recs; i++) assert_false(has_parent(&recs[i], "h0"));
    assert_int_equal(sched_register(s, w, TASK, 8 * MIB, 70, NULL, &err), 0);
    assert_false(has_parent(last_for("h4"), "h0"));
    assert_int_equal(last_for("h4")->wait_ms, 0);
    sched_free(s);
}

/* A holder that freezes (heartbeats stop) while a child waits for it: once it expires, the
 * waiting child is scheduled again and the pieces are granted (exactly once, split between the
 * two children: a 4-piece task over origin_peers = 4 fetchers is one piece each per grant). */
static void test_frozen_holder_expires(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    cf_err err = {0};
    sched_host *a = host(s, 0, "", 1, 0), *x = host(s, 1, "", 1, 0), *c = host(s, 2, "", 1, 0);
    assert_int_equal(sched_register(s, a, TASK, 4 * MIB, 0, NULL, &err), 0);
    report(s, a, TASK, 0, 4, "", 100);
    assert_int_equal(sched_task_finished(s, a, TASK, 100, &err), 0);
    assert_int_equal(sched_register(s, x, TASK, 4 * MIB, 200, NULL, &err), 0);
    assert_true(has_parent(last_for("h1"), "h0")); /* a's only slot */
    assert_int_equal(sched_register(s, c, TASK, 4 * MIB, 300, NULL, &err), 0);
    assert_true(last_for("h2")->wait_ms > 0); /* a is busy: wait, do not stampede */
    /* a freezes; x and c keep beating */
    for (uint64_t t = 2000; t <= 6000; t += 2000) {
        sched_host_heartbeat(s, x, UINT32_MAX, t);
        sched_host_heartbeat(s, c, UINT32_MAX, t);
        sched_tick(s, t);
    }
    n_recs = 0;
    sched_host_heartbeat(s, x, UINT32_MAX, 6500);
    sched_host_heartbeat(s, c, UINT32_MAX, 6500);
    sched_tick(s, 6500);
    assert_null(sched_host_find(s, "h0"));
    struct rec *r = last_for("h2");
    assert_non_null(r); /* c was scheduled again, not left waiting */
    assert_int_equal(r->wait_ms, 0);
    assert_true(r->n_grant > 0 || has_parent(r, "h1"));
    /* the orphans' first copies are split (4 pieces over origin_peers = 4 fetchers: one each):
     * x and c each get a different piece now, the others as they ask again */
    assert_int_equal(granted_since(0), 2);
    assert_int_equal(n_recs, 2);
    assert_int_equal(recs[0].n_grant, 1);
    assert_int_equal(recs[1].n_grant, 1);
    assert_int_equal(recs[0].grant[0].count, 1);
    assert_int_equal(recs[1].grant[0].count, 1);
    assert_int_not_equal(recs[0].grant[0].start, recs[1].grant[0].start);
    sched_free(s);
}

/* Per-piece state grows with the content length a host announces: huge lengths and many tasks
 * hit max_tasks_per_host / host_state_budget / state_budget (-ENOSPC, naming the setting);
 * leaving gives the budget back. */
static void test_state_budgets(void **st)
{
    (void)st;
    struct sched_config cfg;
    sched_config_default(&cfg);
    cfg.max_tasks_per_host = 3;
    cfg.host_state_budget = 16 * MIB;
    cfg.state_budget = 20 * MIB;
    sched *s = new_sched(&cfg);
    sched_host *a = host(s, 0, "", 4, 0), *b = host(s, 1, "", 4, 0);
    cf_err err = {0};
    char id[80];
    /* 1M pieces (4 TiB in 4 MiB pieces) cost 12 MiB: one fits a host's 16 MiB, two do not */
    const uint64_t huge = 4ull << 40;
    snprintf(id, sizeof(id), "sha256:%064x", 100);
    assert_int_equal(sched_register(s, a, id, huge, 0, NULL, &err), 0);
    snprintf(id, sizeof(id), "sha256:%064x", 101);
    assert_int_equal(sched_register(s, a, id, huge, 0, NULL, &err), -ENOSPC);
    assert_non_null(strstr(err.msg, "host_state_budget"));
    assert_null(sched_task_find(s, id)); /* nothing was created */
    /* another host: its own budget fits, the scheduler's 20 MiB does not */
    err = (cf_err){0};
    assert_int_equal(sched_register(s, b, id, huge, 0, NULL, &err), -ENOSPC);
    assert_non_null(strstr(err.msg, "state_budget"));
    /* joining the existing huge task costs b only its bitmap (128 KiB) */
    snprintf(id, sizeof(id), "sha256:%064x", 100);
    assert_int_equal(sched_register(s, b, id, huge, 0, NULL, &err), 0);
    /* task count per host */
    assert_int_equal(sched_register(s, a, TASK, 8 * MIB, 0, NULL, &err), 0);
    assert_int_equal(sched_register(s, a, TASK2, 8 * MIB, 0, NULL, &err), 0);
    err = (cf_err){0};
    snprintf(id, sizeof(id), "sha256:%064x", 102);
    assert_int_equal(sched_register(s, a, id, 8 * MIB, 0, NULL, &err), -ENOSPC);
    assert_non_null(strstr(err.msg, "max_tasks_per_host"));
    /* registering again in a task it is in costs nothing */
    assert_int_equal(sched_register(s, a, TASK, 8 * MIB, 0, NULL, &err), 0);
    /* a leaves: the huge task stays (b is in it), a's budget is free again, b's is not charged
     * for the task a created */
    sched_host_leave(s, a, 100);
    a = host(s, 0, "", 4, 100);
    snprintf(id, sizeof(id), "sha256:%064x", 103);
    err = (cf_err){0};
    assert_int_equal(sched_register(s, a, id, huge, 100, NULL, &err), -ENOSPC); /* 12+12 > 20 */
    assert_non_null(strstr(err.msg, "state_budget"));
    sched_host_leave(s, b, 200); /* the huge task is freed */
    assert_int_equal(sched_register(s, a, id, huge, 200, NULL, &err), 0);
    sched_free(s);
}

/* BAD_PARENT about a host the scheduler never gave the reporter counts nothing against it:
 * two colluding hosts naming an honest one in three tasks do not get it banned (they did, when
 * any named host counted); their own blocklists still avoid it. */
static void test_unassigned_reports_ignored(void **st)
{
    (void)st;
    sched *s = new_sched(NULL);
    cf_err err = {0};
    const char *tasks[3] = {TASK, TASK2, TASK3};
    sched_host *honest = host(s, 0, "", 8, 0);
    sched_host *m1 = host(s, 1, "", 8, 0), *m2 = host(s, 2, "", 8, 0);
    /* the liars register first: they get origin grants, never honest as a parent */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sched_register(s, m1, tasks[i], 4 * MIB, 0, NULL, &err), 0);
        assert_int_equal(sched_register(s, m2, tasks[i], 4 * MIB, 0, NULL, &err), 0);
        assert_int_equal(sched_register(s, honest, tasks[i], 4 * MIB, 0, NULL, &err), 0);
        report(s, honest, tasks[i], 0, 4, "", 0);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sched_bad_parent(s, m1, tasks[i], "h0", 1, 20), 0);
        assert_int_equal(sched_bad_parent(s, m2, tasks[i], "h0", 1, 20), 0);
    }
    assert_int_equal(sched_host_banned(s, "h0", 30), 0);
    struct sched_stats ss;
    sched_stats_get(s, &ss);
    assert_int_equal(ss.bad_parent_unassigned, 6);
    sched_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_piece_size_rule),
        cmocka_unit_test(test_flash_crowd_grants_once),
        cmocka_unit_test(test_stalled_grant_moves),
        cmocka_unit_test(test_busy_host_keeps_grants),
        cmocka_unit_test(test_stall_limit_follows_origin_pace),
        cmocka_unit_test(test_leave_moves_grant_and_reparents),
        cmocka_unit_test(test_heartbeat_expiry),
        cmocka_unit_test(test_selection_scoring),
        cmocka_unit_test(test_outlier_dropped),
        cmocka_unit_test(test_cluster_ban),
        cmocka_unit_test(test_slow_parent_not_banned),
        cmocka_unit_test(test_wait_then_parents),
        cmocka_unit_test(test_reannounce_rebuilds),
        cmocka_unit_test(test_bandwidth_prior),
        cmocka_unit_test(test_share_spreads_children),
        cmocka_unit_test(test_reask_adds_no_window),
        cmocka_unit_test(test_slow_host_no_grant_window),
        cmocka_unit_test(test_recovery_hold),
        cmocka_unit_test(test_reregistration_hold),
        cmocka_unit_test(test_bad_holder_not_waited_on),
        cmocka_unit_test(test_bad_holder_cap_full),
        cmocka_unit_test(test_banned_holder_not_waited_on),
        cmocka_unit_test(test_frozen_holder_expires),
        cmocka_unit_test(test_state_budgets),
        cmocka_unit_test(test_unassigned_reports_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
