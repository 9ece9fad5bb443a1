/* convertd/job_queue.c: single flight, the bound, crash recovery on reopen, retries with
 * backoff then FAILED, completion persisted. A real LMDB in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "convertd/job_queue.h"

static char dir[64];
static int notified;

static void on_notify(void *ctx)
{
    (void)ctx;
    __atomic_add_fetch(&notified, 1, __ATOMIC_RELAXED);
}

static cvd_queue *open_q(unsigned max_active, unsigned max_attempts)
{
    cvd_queue_opts o = {.db_dir = dir,
                        .max_active = max_active,
                        .max_attempts = max_attempts,
                        .backoff_ms = 50,
                        .backoff_max_ms = 120,
                        .notify = on_notify};
    cvd_queue *q = NULL;
    cf_err e = {0};
    assert_int_equal(cvd_queue_open(&o, &q, &e), 0);
    return q;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cvdq.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

static void single_flight_and_bound(void **state)
{
    (void)state;
    cvd_queue *q = open_q(2, 3);
    uint64_t a, a2, b, c;
    int joined;
    cf_err e = {0};
    assert_int_equal(cvd_queue_submit(q, "h/a:1", "h/a:1-nydus", &a, &joined, &e), 0);
    assert_int_equal(joined, 0);
    assert_int_equal(cvd_queue_submit(q, "h/a:1", "h/a:1-nydus", &a2, &joined, &e), 0);
    assert_int_equal(joined, 1);
    assert_int_equal(a, a2);
    /* another target of the same source is another job */
    assert_int_equal(cvd_queue_submit(q, "h/a:1", "h/other:x", &b, &joined, &e), 0);
    assert_int_equal(joined, 0);
    assert_int_not_equal(a, b);
    assert_int_equal(cvd_queue_submit(q, "h/c:1", "h/c:1-nydus", &c, &joined, &e), -EAGAIN);
    assert_true(strstr(e.msg, "full") != NULL);
    assert_true(notified >= 2);
    cvd_queue_stats st;
    cvd_queue_stats_get(q, &st);
    assert_int_equal(st.queued, 2);
    cvd_queue_close(q);
}

static void recovery_retry_fail(void **state)
{
    (void)state;
    cvd_queue *q = open_q(10, 2);
    uint64_t id;
    int joined;
    cf_err e = {0};
    assert_int_equal(cvd_queue_submit(q, "h/a:1", "h/a:1-nydus", &id, &joined, &e), 0);
    cvd_job j;
    assert_int_equal(cvd_queue_take(q, &j, &e), 0);
    assert_int_equal(j.id, id);
    assert_int_equal(j.status, CVD_PROCESSING);
    assert_int_equal(j.attempts, 1);
    /* "crash": the process goes away with the job PROCESSING */
    cvd_queue_close(q);
    q = open_q(10, 2);
    assert_int_equal(cvd_queue_get(q, id, &j), 0);
    assert_int_equal(j.status, CVD_QUEUED);
    assert_int_equal(j.attempts, 1);
    assert_true(strstr(j.reason, "interrupted") != NULL);
    cvd_queue_stats st;
    cvd_queue_stats_get(q, &st);
    assert_int_equal(st.recovered, 1);
    /* taken again after the backoff */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(cvd_queue_take(q, &j, &e), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(waited > 0.02);
    assert_int_equal(j.attempts, 2);
    /* a transient failure with no attempt left: FAILED with the reason */
    assert_int_equal(cvd_queue_finish(q, id, -ECONNREFUSED, 1, NULL, "registry down", 0.5, &e), 0);
    assert_int_equal(cvd_queue_get(q, id, &j), 0);
    assert_int_equal(j.status, CVD_FAILED);
    assert_string_equal(j.reason, "registry down");
    assert_true(j.finished_ms > 0);
    cvd_queue_stats_get(q, &st);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.running, 0);
    cvd_queue_close(q);
    /* a failed job is listed after a restart too, and is not taken again */
    q = open_q(10, 2);
    cvd_job *all;
    size_t n;
    assert_int_equal(cvd_queue_list(q, &all, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(all[0].status, CVD_FAILED);
    free(all);
    cvd_queue_close(q);
}

static void retry_then_complete(void **state)
{
    (void)state;
    cvd_queue *q = open_q(10, 5);
    uint64_t id, id2;
    int joined;
    cf_err e = {0};
    assert_int_equal(cvd_queue_submit(q, "h/b:1", "h/b:1-nydus", &id, &joined, &e), 0);
    cvd_job j;
    assert_int_equal(cvd_queue_take(q, &j, &e), 0);
    assert_int_equal(cvd_queue_finish(q, id, -EAGAIN, 1, NULL, "503", 0.1, &e), 0);
    assert_int_equal(cvd_queue_get(q, id, &j), 0);
    assert_int_equal(j.status, CVD_QUEUED);
    /* a retry waiting in backoff still joins triggers */
    assert_int_equal(cvd_queue_submit(q, "h/b:1", "h/b:1-nydus", &id2, &joined, &e), 0);
    assert_int_equal(joined, 1);
    assert_int_equal(cvd_queue_take(q, &j, &e), 0);
    assert_int_equal(j.attempts, 2);
    assert_int_equal(cvd_queue_finish(q, id, 0, 0, "sha256:abc", NULL, 0.2, &e), 0);
    cvd_queue_stats st;
    cvd_queue_stats_get(q, &st);
    assert_int_equal(st.done, 1);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.seconds_count, 2);
    /* a final error fails at once, whatever attempts remain */
    uint64_t id3;
    assert_int_equal(cvd_queue_submit(q, "h/c:1", "h/c:1-nydus", &id3, &joined, &e), 0);
    assert_int_equal(cvd_queue_take(q, &j, &e), 0);
    assert_int_equal(cvd_queue_finish(q, id3, -EACCES, 0, NULL, "denied", 0.1, &e), 0);
    assert_int_equal(cvd_queue_get(q, id3, &j), 0);
    assert_int_equal(j.status, CVD_FAILED);
    /* finishing a job that is not running is refused */
    assert_int_equal(cvd_queue_finish(q, id3, 0, 0, NULL, NULL, 0, &e), -ENOENT);
    cvd_queue_close(q);
    q = open_q(10, 5);
    assert_int_equal(cvd_queue_get(q, id, &j), 0);
    assert_int_equal(j.status, CVD_COMPLETED);
    assert_string_equal(j.digest, "sha256:abc");
    /* ids keep growing across restarts */
    uint64_t id4;
    assert_int_equal(cvd_queue_submit(q, "h/d:1", "h/d:1-nydus", &id4, &joined, &e), 0);
    assert_true(id4 > id3);
    cvd_queue_stop(q);
    assert_int_equal(cvd_queue_take(q, &j, &e), -ECANCELED);
    cvd_queue_close(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(single_flight_and_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(recovery_retry_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_then_complete, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
