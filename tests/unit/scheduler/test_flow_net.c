/* flow_net (scheduler/sim/flow_net.h): the mesh simulator's network model. Rates on small
 * cases worked out by hand, and on random ones the max-min property (every flow has a
 * saturated link on which no flow is faster) and capacity conservation. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "flow_net.h"

struct rec {
    int calls;
};

static void on_rate(void *ctx, int id, fnet_flow *f, uint64_t now)
{
    (void)id, (void)f, (void)now;
    ((struct rec *)ctx)->calls++;
}

static fnet *mk(int n, const double *up, const double *down, double origin, enum fnet_model m,
                struct rec *r)
{
    struct fnet_ops ops = {.on_rate = on_rate, .ctx = r};
    fnet *net = fnet_new(n, up, down, origin, m, &ops);
    assert_non_null(net);
    return net;
}

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-6 * ((b) > 1 ? (b) : 1))

static void test_shared_uplink(void **state)
{
    (void)state;
    double up[3] = {100, 100, 100}, down[3] = {100, 100, 100};
    struct rec r = {0};
    fnet *net = mk(3, up, down, 100, FNET_MAXMIN, &r);
    int a = fnet_start(net, 0, 1, 100, 100, NULL, 0);
    assert_true(a >= 0);
    NEAR(fnet_get(net, a)->rate, 100);
    int b = fnet_start(net, 0, 2, 100, 50, NULL, 0);
    NEAR(fnet_get(net, a)->rate, 50);
    NEAR(fnet_get(net, b)->rate, 50);
    assert_int_equal(fnet_eta(net, b), 1000000); /* 50 bytes at 50 B/s */
    fnet_advance(net, b, 1000000);
    NEAR(fnet_get(net, b)->done, 50);
    fnet_finish(net, b, 1000000);
    NEAR(fnet_get(net, a)->rate, 100); /* alone again */
    fnet_advance(net, a, 1500000);
    NEAR(fnet_get(net, a)->done, 100); /* 50 in the first second, 50 in the next half */
    assert_int_equal(fnet_live(net), 1);
    /* the origin's uplink is its own link */
    int o = fnet_start(net, FNET_ORIGIN, 2, 10, 10, NULL, 1500000);
    assert_int_equal(o, b); /* b's id comes back */
    NEAR(fnet_get(net, o)->rate, 100);
    NEAR(fnet_get(net, a)->rate, 100);
    int c = fnet_start(net, 1, 2, 10, 10, NULL, 1500000); /* shares node 2's downlink */
    assert_true(c >= 0 && c != o);
    NEAR(fnet_get(net, o)->rate, 50);
    NEAR(fnet_get(net, c)->rate, 50);
    assert_true(r.calls > 0);
    fnet_free(net);
}

/* One uplink, a slow and a fast downlink: max-min gives the fast flow what the slow one cannot
 * take; the per-link fair share does not (documented: it errs slow). */
static void test_models_differ(void **state)
{
    (void)state;
    double up[3] = {100, 100, 100}, down[3] = {100, 10, 100};
    for (int m = 0; m < 2; m++) {
        struct rec r = {0};
        fnet *net = mk(3, up, down, 100, m ? FNET_FAIR : FNET_MAXMIN, &r);
        int slow = fnet_start(net, 0, 1, 1000, 1000, NULL, 0);
        int fast = fnet_start(net, 0, 2, 1000, 1000, NULL, 0);
        NEAR(fnet_get(net, slow)->rate, 10);
        NEAR(fnet_get(net, fast)->rate, m ? 50 : 90);
        fnet_free(net);
    }
}

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Random starts and finishes; after each, check the allocation: max-min (every flow has a
 * saturated link on which no flow is faster), or, per-link fair, each flow's rate is
 * min(up / flows on it, down / flows on it) although only touched links were recomputed. */
static void check_random(enum fnet_model model)
{
    enum { N = 6, OPS = 400 };
    double up[N], down[N];
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        up[i] = 10 + (double)(rnd(&x) % 90);
        down[i] = 10 + (double)(rnd(&x) % 90);
    }
    struct rec r = {0};
    fnet *net = mk(N, up, down, 70, model, &r);
    int live[256], n_live = 0;
    uint64_t now = 0;
    for (int op = 0; op < OPS; op++) {
        now += 1000;
        if (n_live && (n_live == 256 || rnd(&x) % 3 == 0)) {
            int k = (int)(rnd(&x) % (uint64_t)n_live);
            fnet_finish(net, live[k], now);
            live[k] = live[--n_live];
        } else {
            int src = (int)(rnd(&x) % (N + 1)) - 1, dst = (int)(rnd(&x) % N);
            if (src == dst) continue;
            int id = fnet_start(net, src, dst, 1e9, 1e9, NULL, now);
            assert_true(id >= 0);
            live[n_live++] = id;
        }
        /* per link: load, and the fastest flow on it (link 2i up, 2i+1 down, 2N origin) */
        double load[2 * N + 1] = {0}, maxr[2 * N + 1] = {0};
        int count[2 * N + 1] = {0};
        double cap[2 * N + 1];
        for (int i = 0; i < N; i++) cap[2 * i] = up[i], cap[2 * i + 1] = down[i];
        cap[2 * N] = 70;
        for (int k = 0; k < n_live; k++) {
            const fnet_flow *f = fnet_get(net, live[k]);
            int u = f->src < 0 ? 2 * N : 2 * f->src, d = 2 * f->dst + 1;
            load[u] += f->rate, load[d] += f->rate;
            count[u]++, count[d]++;
            if (f->rate > maxr[u]) maxr[u] = f->rate;
            if (f->rate > maxr[d]) maxr[d] = f->rate;
        }
        for (int l = 0; l < 2 * N + 1; l++) assert_true(load[l] <= cap[l] * (1 + 1e-9));
        for (int k = 0; k < n_live; k++) {
            const fnet_flow *f = fnet_get(net, live[k]);
            int u = f->src < 0 ? 2 * N : 2 * f->src, d = 2 * f->dst + 1;
            int bottleneck = 0;
            for (int j = 0; j < 2; j++) {
                int l = j ? d : u;
                if (load[l] >= cap[l] * (1 - 1e-9) && f->rate >= maxr[l] * (1 - 1e-9))
                    bottleneck = 1;
            }
            assert_true(f->rate > 0);
            if (model == FNET_MAXMIN) {
                assert_true(bottleneck);
            } else {
                double a = cap[u] / count[u], b = cap[d] / count[d];
                NEAR(f->rate, a < b ? a : b);
            }
        }
    }
    assert_int_equal(fnet_live(net), n_live);
    fnet_free(net);
}

static void test_maxmin_property(void **state)
{
    (void)state;
    check_random(FNET_MAXMIN);
}

static void test_fair_property(void **state)
{
    (void)state;
    check_random(FNET_FAIR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_uplink),
        cmocka_unit_test(test_models_differ),
        cmocka_unit_test(test_maxmin_property),
        cmocka_unit_test(test_fair_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
