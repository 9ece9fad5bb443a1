/* chunkfly-peer configuration: defaults, flags-as-keys, and refusal of bad values/unknown keys. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "peer/daemon.h"

static int load(const char *text, struct peer_daemon_opts *o, cf_err *err)
{
    cf_config *c = cf_config_new();
    assert_non_null(c);
    int rc = cf_config_load_string(c, text, "test", err);
    if (!rc) rc = peer_daemon_opts_load(o, c, err);
    /* strings point into c: keep only numbers after freeing */
    cf_config_free(c);
    return rc;
}

static void test_defaults(void **state)
{
    (void)state;
    struct peer_daemon_opts o;
    cf_err err = {0};
    assert_int_equal(load("", &o, &err), 0);
    assert_int_equal(o.n_schedulers, 0);
    assert_int_equal(o.upload_slots, 16);
    assert_int_equal(o.pieces_in_flight, 8);
    assert_int_equal(o.small_blob, 4u << 20);
    assert_int_equal(o.piece_timeout_ms, 10000);
    assert_int_equal(o.mesh_stall_ms, 10000);
    assert_int_equal(o.quota_high, 0);
    assert_int_equal(o.fetch_whole_blob, 1);
    assert_int_equal(o.origin_timeout_ms, 8000);
    assert_int_equal(o.seed_cached, 64);
    assert_int_equal(o.timing.heartbeat_interval_ms, 2000);
    assert_int_equal(o.sched_resolve_interval_ms, 30000);
}

static void test_values(void **state)
{
    (void)state;
    struct peer_daemon_opts o;
    cf_err err = {0};
    assert_int_equal(load("scheduler = 127.0.0.1:8002\nscheduler = 127.0.0.2:8002\n"
                          "quota = 10G\nquota_low = 8G\nupload_bandwidth = 50M\n"
                          "piece_timeout = 500ms\n[timing]\nheartbeat_interval = 1s\n",
                          &o, &err),
                     0);
    assert_int_equal(o.n_schedulers, 2);
    assert_int_equal(o.quota_high, 10ull << 30);
    assert_int_equal(o.quota_low, 8ull << 30);
    assert_int_equal(o.upload_bw, 50u << 20);
    assert_int_equal(o.piece_timeout_ms, 500);
    assert_int_equal(o.timing.heartbeat_interval_ms, 1000);
    /* names (a headless Service) beside numeric entries, IPv6 too */
    assert_int_equal(load("scheduler = chunkfly-scheduler.chunkfly.svc:8002\n"
                          "scheduler = [::1]:8002\nscheduler = 10.0.0.5:8002\n"
                          "scheduler_resolve_interval = 5s\n",
                          &o, &err),
                     0);
    assert_int_equal(o.n_schedulers, 3);
    assert_int_equal(o.sched_resolve_interval_ms, 5000);
    char host[256], port[8];
    assert_int_equal(
        peer_sched_entry_parse("sched-1.example:8002", host, sizeof(host), port, sizeof(port)), 1);
    assert_string_equal(host, "sched-1.example");
    assert_string_equal(port, "8002");
    assert_int_equal(peer_sched_entry_parse("10.0.0.5:8002", NULL, 0, NULL, 0), 0);
}

static void test_refusals(void **state)
{
    (void)state;
    struct peer_daemon_opts o;
    cf_err err = {0};
    assert_int_equal(load("uplaod_slots = 4\n", &o, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "uplaod_slots"));
    cf_err_clear(&err);
    /* a scheduler entry: ip:port or name:port, nothing else */
    const char *bad[] = {
        "sched.example", "sched example:8002", "sched.example:0",   "sched.example:99999",
        "-sched:8002",   "10.0.0.300:8002",    "sched.example:80a", ":8002",
        "[::1]8002"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char cfg[128];
        snprintf(cfg, sizeof(cfg), "scheduler = %s\n", bad[i]);
        cf_err_clear(&err);
        assert_int_equal(load(cfg, &o, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "expected ip:port or name:port"));
    }
    assert_int_equal(load("scheduler_resolve_interval = 0\n", &o, &err), -EINVAL);
    assert_int_equal(load("upload_slots = 0\n", &o, &err), -EINVAL);
    assert_int_equal(load("pieces_in_flight = lots\n", &o, &err), -EINVAL);
    assert_int_equal(load("quota = 1G\nquota_low = 2G\n", &o, &err), -EINVAL);
    assert_int_equal(load("piece_timeout = 0\n", &o, &err), -EINVAL);
    /* mesh TLS: all three keys or none, the message names the missing ones */
    assert_int_equal(load("tls_cert = /c.pem\ntls_ca = /ca.pem\n", &o, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "tls_key is missing"));
    assert_int_equal(load("tls_key = /k.pem\n", &o, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "tls_cert and tls_ca are missing"));
    assert_int_equal(
        load("tls_cert = /c\ntls_key = /k\ntls_ca = /a\ninput_budget = 64M\n", &o, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
