/* chunkfly-peer configuration: defaults, flags-as-keys, and refusal of bad values/unknown keys. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
}

static void test_refusals(void **state)
{
    (void)state;
    struct peer_daemon_opts o;
    cf_err err = {0};
    assert_int_equal(load("uplaod_slots = 4\n", &o, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "uplaod_slots"));
    cf_err_clear(&err);
    assert_int_equal(load("scheduler = sched.example:8002\n", &o, &err), -EINVAL);
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
