/* Unit tests for the registry backend's construction and arguments (no network: nothing here
 * sends a request): missing host/repo, bad auth, unreadable CA files, blob ids, set_auth, and a
 * proxy's health checker starting and stopping with the backend. The reads themselves are
 * tested against real servers (tests/integration/mount/backend_*.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mount/backend.h"

#define ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct mount_backend_config reg(void)
{
    struct mount_backend_config c = {.type = MOUNT_BACKEND_REGISTRY,
                                     .host = "127.0.0.1:9",
                                     .repo = "lib/app",
                                     .scheme = "http",
                                     .timeout_s = 1,
                                     .connect_timeout_s = 1};
    c.proxy.fallback = true;
    c.proxy.check_interval = 1;
    return c;
}

static void expect_new_fails(const struct mount_backend_config *c, int code, const char *needle)
{
    mount_backend *b = (mount_backend *)1;
    cf_err err = {0};
    int rc = mount_backend_new(c, &b, &err);
    if (rc != code) fail_msg("rc %d (%s), want %d", rc, err.msg, code);
    assert_null(b);
    if (!strstr(err.msg, needle)) fail_msg("\"%s\" lacks \"%s\"", err.msg, needle);
}

static void test_new_errors(void **state)
{
    (void)state;
    struct mount_backend_config c = reg();
    c.host = NULL;
    expect_new_fails(&c, -EINVAL, "device.backend.config.host is not set");
    c = reg();
    c.repo = NULL;
    expect_new_fails(&c, -EINVAL, "device.backend.config.repo is not set");
    c = reg();
    c.repo = "Not A Repo";
    expect_new_fails(&c, -EINVAL, "not a repository name");
    c = reg();
    c.auth = "@@@";
    expect_new_fails(&c, -EINVAL, "auth is not base64 of user:password");
    c.auth = "YWxpY2U="; /* "alice": no ':' */
    expect_new_fails(&c, -EINVAL, "auth is not base64 of user:password");
    c = reg();
    char *cas[] = {"/nonexistent-cf/ca.pem", NULL};
    c.ca_cert_files = cas;
    expect_new_fails(&c, -ENOENT, "/nonexistent-cf/ca.pem");
}

static void test_open_and_auth(void **state)
{
    (void)state;
    struct mount_backend_config c = reg();
    c.auth = "YWxpY2U6czNjcmV0";
    mount_backend *b = NULL;
    cf_err err = {0};
    assert_int_equal(mount_backend_new(&c, &b, &err), 0);
    rafs_blob_source *s = NULL;
    assert_int_equal(mount_backend_open_blob(b, "sha256:" ID, 0, &s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not 64 lowercase hex"));
    /* opening sends nothing: the registry at 127.0.0.1:9 is never asked */
    assert_int_equal(mount_backend_open_blob(b, ID, 4096, &s, &err), 0);
    rafs_blob_source_close(s);
    assert_int_equal(mount_backend_set_auth(b, "", &err), -EINVAL);
    assert_int_equal(mount_backend_set_auth(b, "bm8tY29sb24=", &err), -EINVAL);
    assert_int_equal(mount_backend_set_auth(b, "Ym9iOnB3", &err), 0); /* bob:pw */
    struct mount_backend_stats st;
    mount_backend_stats(b, &st);
    assert_int_equal(st.proxy_healthy, -1);
    assert_int_equal(st.requests, 0);
    mount_backend_free(b);
}

static void test_proxy_lifecycle(void **state)
{
    (void)state;
    struct mount_backend_config c = reg();
    c.proxy.url = "unix:/nonexistent-cf/peer.sock";
    mount_backend *b = NULL;
    cf_err err = {0};
    assert_int_equal(mount_backend_new(&c, &b, &err), 0);
    struct mount_backend_stats st;
    mount_backend_stats(b, &st);
    assert_int_equal(st.proxy_healthy, 1); /* trusted until it fails, as nydusd */
    mount_backend_free(b);                 /* stops the checker thread at once */
    c.proxy.url = "http://127.0.0.1:9";
    assert_int_equal(mount_backend_new(&c, &b, &err), 0);
    mount_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_errors),
        cmocka_unit_test(test_open_and_auth),
        cmocka_unit_test(test_proxy_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
