/* Task -> scheduler mapping as the scheduler fleet relies on it (proto_rendezvous_pick):
 * deterministic, even, minimal movement when a scheduler leaves, unhealthy ones skipped, and
 * equal to an independent SHA-256(task_id || addr) computation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cf/digest.h"
#include "proto/msg.h"
#include "proto/rendezvous.h"

#define N_TASKS 10000

static const char *addrs[5] = {"10.0.0.1:8002", "10.0.0.2:8002", "10.0.0.3:8002", "10.0.0.4:8002",
                               "[fd00::5]:8002"};

static void task_id(int i, char out[PROTO_TASK_ID_LEN + 1])
{
    uint8_t d[32];
    char seed[32];
    snprintf(seed, sizeof(seed), "blob-%d", i);
    assert_int_equal(cf_sha256(seed, strlen(seed), d), 0);
    proto_task_id_from_digest(d, out);
}

static int independent_pick(const char *tid, size_t n)
{
    uint8_t best[32] = {0};
    int bi = -1;
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        int l = snprintf(buf, sizeof(buf), "%s%s", tid, addrs[i]);
        uint8_t d[32];
        assert_int_equal(cf_sha256(buf, (size_t)l, d), 0);
        if (bi < 0 || memcmp(d, best, 32) > 0) {
            memcpy(best, d, 32);
            bi = (int)i;
        }
    }
    return bi;
}

static void test_even_and_independent(void **st)
{
    (void)st;
    int count[5] = {0};
    for (int i = 0; i < N_TASKS; i++) {
        char tid[PROTO_TASK_ID_LEN + 1];
        task_id(i, tid);
        int p = proto_rendezvous_pick(tid, addrs, NULL, 5, NULL);
        assert_true(p >= 0 && p < 5);
        assert_int_equal(p, proto_rendezvous_pick(tid, addrs, NULL, 5, NULL));
        assert_int_equal(p, independent_pick(tid, 5));
        count[p]++;
    }
    for (int i = 0; i < 5; i++) {
        /* 2000 expected; +-10% is > 4 sigma for a binomial(10000, 0.2) */
        assert_true(count[i] > 1800 && count[i] < 2200);
    }
}

static void test_minimal_movement_and_health(void **st)
{
    (void)st;
    proto_sched_health h[5];
    for (int i = 0; i < 5; i++) proto_sched_health_init(&h[i]);
    proto_sched_health_connect_failed(&h[2], 1000); /* scheduler 2 is down */
    int moved = 0, owned_by_2 = 0;
    for (int i = 0; i < N_TASKS; i++) {
        char tid[PROTO_TASK_ID_LEN + 1];
        task_id(i, tid);
        int before = proto_rendezvous_pick(tid, addrs, NULL, 5, NULL);
        int after = proto_rendezvous_pick(tid, addrs, h, 5, NULL);
        assert_int_not_equal(after, 2);
        if (before == 2)
            owned_by_2++;
        else
            assert_int_equal(before, after); /* only scheduler 2's tasks move */
        if (before != after) moved++;
    }
    assert_int_equal(moved, owned_by_2);
    /* it comes back after a successful connect: the same tasks return */
    proto_sched_health_connect_ok(&h[2]);
    char tid[PROTO_TASK_ID_LEN + 1];
    task_id(1, tid);
    assert_int_equal(proto_rendezvous_pick(tid, addrs, h, 5, NULL),
                     proto_rendezvous_pick(tid, addrs, NULL, 5, NULL));
    /* nobody reachable */
    for (int i = 0; i < 5; i++) proto_sched_health_connect_failed(&h[i], 1000);
    assert_int_equal(proto_rendezvous_pick(tid, addrs, h, 5, NULL), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_even_and_independent),
        cmocka_unit_test(test_minimal_movement_and_health),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
