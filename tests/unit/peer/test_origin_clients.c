/* The daemon's cache of registry clients (back_to_source.c): one client per registry, scheme
 * and credentials, at most ORIGIN_CLIENTS_MAX unused ones kept (least recently used evicted),
 * clients in use never evicted, keys that do not hold the credentials. No network: creating a
 * registry client does not connect. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "daemon_internal.h"

#define REG "127.0.0.1:9"

static peer_daemon *new_daemon(void)
{
    peer_daemon *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->o.origin_timeout_ms = 1000;
    d->o.origin_plain_http = 1;
    return d;
}

static struct origin_client *get(peer_daemon *d, int i)
{
    char creds[64];
    snprintf(creds, sizeof(creds), "user%d:secret-password-%d", i, i);
    struct origin_client *oc = NULL;
    cf_err err = {0};
    assert_int_equal(origin_client_get(d, REG, 0, creds, &oc, &err), 0);
    assert_non_null(oc);
    return oc;
}

static int listed(peer_daemon *d, const struct origin_client *oc)
{
    for (struct origin_client *o = d->origins; o; o = o->next)
        if (o == oc) return 1;
    return 0;
}

static void test_shared_and_bounded(void **state)
{
    (void)state;
    peer_daemon *d = new_daemon();
    struct origin_client *a = get(d, 0), *a2 = get(d, 0);
    assert_ptr_equal(a, a2); /* same credentials: one shared client */
    assert_int_equal(origin_clients_count(d), 1);
    origin_client_put(d, a);
    origin_client_put(d, a2);
    /* a mirror passing 200 distinct credentials: the cache stays bounded */
    for (int i = 1; i <= 200; i++) {
        struct origin_client *oc = get(d, i);
        origin_client_put(d, oc);
        assert_true(origin_clients_count(d) <= ORIGIN_CLIENTS_MAX);
    }
    assert_int_equal(origin_clients_count(d), ORIGIN_CLIENTS_MAX);
    /* keys are digests: no credentials kept outside the (wiping) registry client */
    for (struct origin_client *o = d->origins; o; o = o->next)
        assert_null(memmem(o->key, sizeof(o->key), "secret", 6));
    origin_clients_free(d);
    assert_int_equal(origin_clients_count(d), 0);
    free(d);
}

static void test_in_use_never_evicted(void **state)
{
    (void)state;
    peer_daemon *d = new_daemon();
    enum { N = ORIGIN_CLIENTS_MAX + 8 };
    struct origin_client *held[N];
    for (int i = 0; i < N; i++) held[i] = get(d, i);
    /* all in use: over the bound until released, none freed under its holder */
    assert_int_equal(origin_clients_count(d), N);
    for (int i = 0; i < N; i++) assert_true(listed(d, held[i]));
    for (int i = 0; i < N; i++) origin_client_put(d, held[i]);
    assert_int_equal(origin_clients_count(d), ORIGIN_CLIENTS_MAX);
    origin_clients_free(d);
    free(d);
}

static void test_least_recently_used_goes(void **state)
{
    (void)state;
    peer_daemon *d = new_daemon();
    struct origin_client *first = get(d, 0);
    origin_client_put(d, first);
    for (int i = 1; i < ORIGIN_CLIENTS_MAX; i++) origin_client_put(d, get(d, i));
    struct origin_client *second = NULL;
    for (struct origin_client *o = d->origins; o; o = o->next)
        if (o->last_used == first->last_used + 1) second = o;
    assert_non_null(second);
    /* client 0 is used again: client 1 is now the least recently used */
    assert_ptr_equal(get(d, 0), first);
    origin_client_put(d, first);
    origin_client_put(d, get(d, 1000)); /* one more: evicts client 1, keeps client 0 */
    assert_int_equal(origin_clients_count(d), ORIGIN_CLIENTS_MAX);
    assert_true(listed(d, first));
    assert_false(listed(d, second));
    origin_clients_free(d);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_and_bounded),
        cmocka_unit_test(test_in_use_never_evicted),
        cmocka_unit_test(test_least_recently_used_goes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
