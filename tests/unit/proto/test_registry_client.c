/* Unit tests for the registry client's argument checking and option handling (no network:
 * every case here fails or finishes before a request would be sent). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>

#include "proto/registry_client.h"

#define DG "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int sink(void *ctx, const void *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    return 0;
}

static void test_new_bad_host(void **state)
{
    (void)state;
    proto_registry_opts o = {.docker_config = ""};
    proto_registry *r = (proto_registry *)1;
    cf_err err = {0};
    const char *bad[] = {"", "http://h", "h/x", "h?x", "h#x", "u@h", "h x", "h\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(proto_registry_new(bad[i], &o, &r, &err), -EINVAL);
        assert_null(r);
        assert_non_null(strstr(err.msg, "host[:port]"));
    }
    assert_int_equal(proto_registry_new(NULL, &o, &r, NULL), -EINVAL);
    char big[300];
    memset(big, 'h', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(proto_registry_new(big, &o, &r, NULL), -EINVAL);
}

static void test_new_config_errors(void **state)
{
    (void)state;
    proto_registry *r;
    cf_err err = {0};
    proto_registry_opts o = {.docker_config = "/nonexistent-cf/config.json"};
    assert_int_equal(proto_registry_new("h:1", &o, &r, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent-cf/config.json"));
    char path[] = "/tmp/cfreg.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"auths\":{\"h:1\":{\"auth\":\"@@\"}}}", 31), 31);
    close(fd);
    o.docker_config = path;
    cf_err_clear(&err);
    assert_int_equal(proto_registry_new("h:1", &o, &r, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, path));
    /* an entry for another host is fine: anonymous */
    assert_int_equal(proto_registry_new("other:1", &o, &r, &err), 0);
    proto_registry_free(r);
    /* explicit credentials win: the broken file is not read */
    o.username = "u";
    assert_int_equal(proto_registry_new("h:1", &o, &r, &err), 0);
    assert_string_equal(proto_registry_host(r), "h:1");
    proto_registry_free(r);
    unlink(path);
    /* extra CA files are read at creation: a missing one is named */
    const char *const cas[] = {"/nonexistent-cf/ca.pem", NULL};
    proto_registry_opts o2 = {.docker_config = "", .extra_ca_files = cas};
    cf_err_clear(&err);
    assert_int_equal(proto_registry_new("h:1", &o2, &r, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent-cf/ca.pem"));
    /* a readable one (any PEM text), with a proxy and a static token: accepted */
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    close(fd);
    const char *const cas2[] = {path, NULL};
    proto_registry_opts o3 = {.docker_config = "",
                              .extra_ca_files = cas2,
                              .proxy = "http://127.0.0.1:9",
                              .bearer_token = "tok"};
    assert_int_equal(proto_registry_new("h:1", &o3, &r, &err), 0);
    proto_registry_free(r);
    unlink(path);
}

/* Which errors a caller may retry later: the transport classes, never a final answer. */
static void test_error_transient(void **state)
{
    (void)state;
    const int yes[] = {-ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH,
                       -EPIPE,     -EIO,          -EAGAIN};
    const int no[] = {0, -EACCES, -ENOENT, -ERANGE, -EBADMSG, -EPROTO, -EFBIG, -EINVAL, -ENOMEM};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(proto_registry_error_transient(yes[i]));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(proto_registry_error_transient(no[i]));
}

static void test_args(void **state)
{
    (void)state;
    proto_registry_opts o = {.scheme = PROTO_REGISTRY_SCHEME_HTTP, .docker_config = ""};
    proto_registry *r;
    cf_err err = {0};
    assert_int_equal(proto_registry_new("127.0.0.1:9", &o, &r, &err), 0);
    uint64_t n = 7, size;
    assert_int_equal(proto_registry_blob_get(r, "Bad", DG, 0, 0, 0, sink, NULL, &n, &err), -EINVAL);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err.msg, "bad repository name"));
    assert_int_equal(proto_registry_blob_get(r, "a", "sha256:12", 0, 0, 0, sink, NULL, NULL, &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "bad digest"));
    assert_int_equal(proto_registry_blob_get(r, "a", "md5:00", 0, 0, 0, sink, NULL, NULL, &err),
                     -EINVAL);
    assert_int_equal(proto_registry_blob_get(r, "a", DG, 0, 0, 0, NULL, NULL, NULL, &err), -EINVAL);
    /* verify needs a whole-blob read; unknown flags are refused */
    assert_int_equal(
        proto_registry_blob_get(r, "a", DG, 1, 0, PROTO_REGISTRY_VERIFY, sink, NULL, NULL, &err),
        -EINVAL);
    assert_int_equal(
        proto_registry_blob_get(r, "a", DG, 0, 5, PROTO_REGISTRY_VERIFY, sink, NULL, NULL, &err),
        -EINVAL);
    assert_int_equal(proto_registry_blob_get(r, "a", DG, 0, 0, 0x80, sink, NULL, NULL, &err),
                     -EINVAL);
    assert_int_equal(
        proto_registry_blob_get(r, "a", DG, UINT64_MAX - 2, 10, 0, sink, NULL, NULL, &err),
        -EINVAL);
    assert_int_equal(proto_registry_blob_size(r, "a/../b", DG, &size, &err), -EINVAL);
    assert_int_equal(proto_registry_blob_get_fd(r, "a", "x", 0, 0, 0, 1, 0, NULL, &err), -EINVAL);
    proto_manifest m = {0};
    assert_int_equal(proto_registry_manifest_get(r, "a", "bad tag", &m, &err), -EINVAL);
    assert_int_equal(proto_registry_manifest_get(r, "a", "sha256:zz", &m, &err), -EINVAL);
    assert_int_equal(proto_registry_manifest_get(r, "a", NULL, &m, &err), -EINVAL);
    assert_null(m.body);
    proto_manifest_free(&m);
    proto_manifest_free(NULL);
    proto_registry_free(r);
    proto_registry_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_bad_host),
        cmocka_unit_test(test_new_config_errors),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_error_transient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
