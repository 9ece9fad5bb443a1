/* Rendezvous scheduler choice (stable, balanced, minimal movement) and scheduler health;
 * timing defaults and config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cf/config.h"
#include "cf/digest.h"
#include "proto/msg.h"
#include "proto/rendezvous.h"
#include "proto/timing.h"

static void task_id(int i, char out[PROTO_TASK_ID_LEN + 1])
{
    uint8_t d[32];
    char s[32];
    snprintf(s, sizeof(s), "blob-%d", i);
    cf_sha256(s, strlen(s), d);
    proto_task_id_from_digest(d, out);
}

static void test_score_definition(void **state)
{
    (void)state;
    /* score = SHA-256(task || addr), independent implementation via cf_sha256 on the concat */
    const char *t = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const char *a = "10.0.0.1:8002";
    char cat[128];
    snprintf(cat, sizeof(cat), "%s%s", t, a);
    uint8_t want[32], got[32];
    cf_sha256(cat, strlen(cat), want);
    assert_int_equal(proto_rendezvous_score(t, a, got), 0);
    assert_memory_equal(want, got, 32);
    /* pick = max score by memcmp */
    const char *addrs[] = {"10.0.0.1:8002", "10.0.0.2:8002", "10.0.0.3:8002"};
    int best = 0;
    uint8_t bs[32];
    proto_rendezvous_score(t, addrs[0], bs);
    for (int i = 1; i < 3; i++) {
        uint8_t s[32];
        proto_rendezvous_score(t, addrs[i], s);
        if (memcmp(s, bs, 32) > 0) best = i, memcpy(bs, s, 32);
    }
    assert_int_equal(proto_rendezvous_pick(t, addrs, NULL, 3, NULL), best);
}

static void test_balance_and_stability(void **state)
{
    (void)state;
    const char *addrs[] = {"10.0.0.1:8002", "10.0.0.2:8002", "10.0.0.3:8002"};
    int owner[1000];
    int count[3] = {0};
    char t[PROTO_TASK_ID_LEN + 1];
    for (int i = 0; i < 1000; i++) {
        task_id(i, t);
        owner[i] = proto_rendezvous_pick(t, addrs, NULL, 3, NULL);
        assert_in_range(owner[i], 0, 2);
        /* stable: same answer again, and with the list in another order */
        assert_int_equal(proto_rendezvous_pick(t, addrs, NULL, 3, NULL), owner[i]);
        const char *rev[] = {addrs[2], addrs[1], addrs[0]};
        assert_int_equal(proto_rendezvous_pick(t, rev, NULL, 3, NULL), 2 - owner[i]);
        count[owner[i]]++;
    }
    for (int k = 0; k < 3; k++) {
        /* 333 expected; 5 sigma ~ 75 */
        if (count[k] < 260 || count[k] > 410) fail_msg("scheduler %d got %d of 1000", k, count[k]);
    }
    /* scheduler 1 unhealthy: only its tasks move, and they spread over the other two */
    proto_sched_health h[3];
    for (int k = 0; k < 3; k++) proto_sched_health_init(&h[k]);
    proto_sched_health_connect_failed(&h[1], 1000);
    int moved_to[3] = {0};
    for (int i = 0; i < 1000; i++) {
        task_id(i, t);
        int o = proto_rendezvous_pick(t, addrs, h, 3, NULL);
        if (owner[i] != 1)
            assert_int_equal(o, owner[i]);
        else
            moved_to[o]++;
    }
    assert_int_equal(moved_to[1], 0);
    assert_true(moved_to[0] > count[1] / 4 && moved_to[2] > count[1] / 4);
    /* removing it from the list is the same */
    const char *two[] = {addrs[0], addrs[2]};
    for (int i = 0; i < 1000; i++) {
        task_id(i, t);
        int o = proto_rendezvous_pick(t, two, NULL, 2, NULL);
        if (owner[i] == 0) assert_int_equal(o, 0);
        if (owner[i] == 2) assert_int_equal(o, 1);
    }
    /* none healthy / empty */
    proto_sched_health_connect_failed(&h[0], 1000);
    proto_sched_health_connect_failed(&h[2], 1000);
    assert_int_equal(proto_rendezvous_pick(t, addrs, h, 3, NULL), -ENOENT);
    assert_int_equal(proto_rendezvous_pick(t, addrs, NULL, 0, NULL), -ENOENT);
    assert_int_equal(proto_rendezvous_pick(NULL, addrs, NULL, 3, NULL), -EINVAL);
}

static void test_health(void **state)
{
    (void)state;
    proto_timing t;
    proto_timing_defaults(&t);
    proto_sched_health h;
    proto_sched_health_init(&h);
    assert_true(proto_sched_health_ok(&h, NULL));
    proto_sched_health_missed(&h, 100, &t);
    proto_sched_health_missed(&h, 200, &t);
    assert_true(proto_sched_health_ok(&h, &t)); /* 2 missed: still healthy */
    proto_sched_health_reply(&h);
    proto_sched_health_missed(&h, 300, &t);
    proto_sched_health_missed(&h, 400, &t);
    assert_true(proto_sched_health_ok(&h, &t)); /* reply reset the count */
    proto_sched_health_missed(&h, 500, &t);
    assert_false(proto_sched_health_ok(&h, &t)); /* 3 consecutive */
    assert_false(proto_sched_health_retry_due(&h, 500 + t.sched_retry_ms - 1, &t));
    assert_true(proto_sched_health_retry_due(&h, 500 + t.sched_retry_ms, &t));
    proto_sched_health_connect_ok(&h);
    assert_true(proto_sched_health_ok(&h, &t));
    proto_sched_health_connect_failed(&h, 42);
    assert_false(proto_sched_health_ok(&h, &t));
    assert_false(proto_sched_health_retry_due(&h, 43, &t));
    proto_sched_health_reply(&h);
    assert_true(proto_sched_health_ok(&h, &t));
}

static void test_timing(void **state)
{
    (void)state;
    proto_timing t;
    proto_timing_defaults(&t);
    assert_int_equal(t.heartbeat_interval_ms, 2000);
    assert_int_equal(t.heartbeat_miss_limit, 3);
    assert_int_equal(t.b2s_stall_ms, 5000);
    cf_config *c = cf_config_new();
    cf_err err = {0};
    assert_int_equal(cf_config_load_string(c,
                                           "[timing]\nheartbeat_interval = 500ms\n"
                                           "back_to_source_stall = 3s\nheartbeat_miss_limit = 5\n",
                                           "test", &err),
                     0);
    assert_int_equal(cf_config_check_keys(c, proto_timing_config_keys, &err), 0);
    assert_int_equal(proto_timing_load(&t, c, &err), 0);
    assert_int_equal(t.heartbeat_interval_ms, 500);
    assert_int_equal(t.b2s_stall_ms, 3000);
    assert_int_equal(t.heartbeat_miss_limit, 5);
    assert_int_equal(t.idle_timeout_ms, PROTO_IDLE_TIMEOUT_MS);
    assert_int_equal(cf_config_set(c, "timing.heartbeat_miss_limit", "0"), 0);
    assert_int_equal(proto_timing_load(&t, c, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "heartbeat_miss_limit"));
    cf_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_score_definition),
        cmocka_unit_test(test_balance_and_stability),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
