/* The registry mirror's request parsing (peer/mirror_request.h): targets, Range, upstream choice,
 * basic credentials, the path sent upstream. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mirror_request.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_targets(void **state)
{
    (void)state;
    struct mirror_target t;
    const char *why = NULL;
    assert_int_equal(mirror_parse_target("/v2/", &t, &why), 0);
    assert_int_equal(t.kind, MIRROR_V2_ROOT);
    assert_int_equal(mirror_parse_target("/v2", &t, &why), 0);
    assert_int_equal(t.kind, MIRROR_V2_ROOT);
    assert_int_equal(
        mirror_parse_target("/v2/library/busybox/blobs/sha256:" D64 "?ns=docker.io", &t, &why), 0);
    assert_int_equal(t.kind, MIRROR_BLOB);
    assert_string_equal(t.name, "library/busybox");
    assert_string_equal(t.ref, "sha256:" D64);
    assert_string_equal(t.ns, "docker.io");
    assert_string_equal(t.abs_host, "");
    /* a repository may contain "blobs": the last component decides */
    assert_int_equal(mirror_parse_target("/v2/a/blobs/b/manifests/v1.0", &t, &why), 0);
    assert_int_equal(t.kind, MIRROR_MANIFEST);
    assert_string_equal(t.name, "a/blobs/b");
    assert_string_equal(t.ref, "v1.0");
    assert_int_equal(
        mirror_parse_target("http://127.0.0.1:5000/v2/x/manifests/sha256:" D64, &t, &why), 0);
    assert_string_equal(t.abs_host, "127.0.0.1:5000");
    assert_string_equal(t.path, "/v2/x/manifests/sha256:" D64);
    assert_int_equal(mirror_parse_target("/v2/x/tags/list?n=5", &t, &why), 0);
    assert_int_equal(t.kind, MIRROR_OTHER);
    assert_int_equal(mirror_parse_target("/v2/x/blobs/uploads/abc", &t, &why), 0);
    assert_int_equal(t.kind, MIRROR_OTHER);
    /* refused */
    assert_int_equal(mirror_parse_target("/etc/passwd", &t, &why), 404);
    assert_int_equal(mirror_parse_target("/v2/../x", &t, &why), 400);
    assert_int_equal(mirror_parse_target("/v2/a/./b/blobs/sha256:" D64, &t, &why), 400);
    assert_int_equal(mirror_parse_target("/v2//a", &t, &why), 400);
    assert_int_equal(mirror_parse_target("/v2/a%2fb/blobs/sha256:" D64, &t, &why), 400);
    assert_int_equal(mirror_parse_target("/v2/A/blobs/sha256:" D64, &t, &why), 400);
    assert_int_equal(mirror_parse_target("/v2/a/blobs/sha256:abc", &t, &why), 400);
    assert_int_equal(mirror_parse_target("/v2/a/blobs/sha512:" D64, &t, &why), 400);
    assert_int_equal(mirror_parse_target("/v2/a/manifests/-bad", &t, &why), 400);
    assert_int_equal(mirror_parse_target("/v2/?ns=a/b", &t, &why), 400);
    assert_int_equal(mirror_parse_target("http://a b/v2/", &t, &why), 400);
    assert_int_equal(mirror_parse_target("*", &t, &why), 400);
    assert_non_null(why);
}

static void test_ranges(void **state)
{
    (void)state;
    uint64_t a = 0, b = 0;
    const char *why;
    assert_int_equal(mirror_parse_range(NULL, &a, &b, &why), 0);
    assert_int_equal(mirror_parse_range("bytes=0-99", &a, &b, &why), 1);
    assert_true(a == 0 && b == 99);
    assert_int_equal(mirror_parse_range("bytes=100-", &a, &b, &why), 1);
    assert_true(a == 100 && b == UINT64_MAX);
    assert_int_equal(mirror_parse_range(" bytes = 5-5 ", &a, &b, &why), 400); /* space before = */
    assert_int_equal(mirror_parse_range("bytes= 5-5 ", &a, &b, &why), 1);
    assert_int_equal(mirror_parse_range("bytes=5-4", &a, &b, &why), 416);
    assert_int_equal(mirror_parse_range("bytes=-5", &a, &b, &why), 416);
    assert_int_equal(mirror_parse_range("bytes=1-2,4-5", &a, &b, &why), 400);
    assert_int_equal(mirror_parse_range("items=1-2", &a, &b, &why), 400);
    assert_int_equal(mirror_parse_range("bytes=x-", &a, &b, &why), 400);
    assert_int_equal(mirror_parse_range("bytes=1-2x", &a, &b, &why), 400);
    assert_int_equal(mirror_parse_range("bytes=99999999999999999999-", &a, &b, &why), 416);
    assert_int_equal(mirror_parse_range("bytes=9223372036854775807-", &a, &b, &why), 1);
    assert_int_equal(mirror_parse_range("bytes=9223372036854775808-", &a, &b, &why), 416);
}

static void test_upstream(void **state)
{
    (void)state;
    struct mirror_target t;
    const char *why;
    char up[300];
    const char *allow = "docker.io, http://127.0.0.1:5000 quay.io";
    assert_int_equal(mirror_parse_target("/v2/?ns=docker.io", &t, &why), 0);
    assert_int_equal(mirror_pick_upstream(&t, "quay.io", NULL, allow, up, sizeof(up), &why), 0);
    assert_string_equal(up, "registry-1.docker.io"); /* ns wins over the header */
    assert_int_equal(mirror_parse_target("/v2/", &t, &why), 0);
    assert_int_equal(mirror_pick_upstream(&t, "QUAY.IO", NULL, allow, up, sizeof(up), &why), 0);
    assert_string_equal(up, "QUAY.IO");
    assert_int_equal(mirror_pick_upstream(&t, NULL, "127.0.0.1:5000", allow, up, sizeof(up), &why),
                     0);
    assert_string_equal(up, "http://127.0.0.1:5000"); /* the entry's scheme */
    assert_int_equal(mirror_pick_upstream(&t, NULL, NULL, allow, up, sizeof(up), &why), 403);
    assert_int_equal(mirror_pick_upstream(&t, "evil.example", NULL, allow, up, sizeof(up), &why),
                     403);
    assert_int_equal(mirror_pick_upstream(&t, "docker.io", NULL, "", up, sizeof(up), &why), 403);
    assert_int_equal(mirror_pick_upstream(&t, "a/b", NULL, allow, up, sizeof(up), &why), 400);
    assert_int_equal(mirror_parse_target("http://registry-1.docker.io/v2/?ns=quay.io", &t, &why),
                     0);
    assert_int_equal(mirror_pick_upstream(&t, NULL, NULL, allow, up, sizeof(up), &why), 0);
    assert_string_equal(up, "registry-1.docker.io"); /* absolute form first */
}

static void test_creds_and_path(void **state)
{
    (void)state;
    char c[64];
    const char *why;
    assert_int_equal(mirror_basic_creds(NULL, c, sizeof(c), &why), 0);
    assert_int_equal(mirror_basic_creds("Bearer abc", c, sizeof(c), &why), 0);
    assert_int_equal(mirror_basic_creds("Basic YWxpY2U6czNjcmV0", c, sizeof(c), &why), 1);
    assert_string_equal(c, "alice:s3cret");
    assert_int_equal(mirror_basic_creds("basic YWxpY2U=", c, sizeof(c), &why), 400); /* no ':' */
    assert_int_equal(mirror_basic_creds("Basic !!!", c, sizeof(c), &why), 400);
    struct mirror_target t;
    char p[128];
    assert_int_equal(mirror_parse_target("/v2/x/tags/list?ns=a.io&n=5&ns=b&last=z", &t, &why), 0);
    assert_int_equal(mirror_upstream_path(&t, p, sizeof(p)), 0);
    assert_string_equal(p, "/v2/x/tags/list?n=5&last=z");
    assert_int_equal(mirror_parse_target("/v2/x/manifests/v1?ns=a.io", &t, &why), 0);
    assert_int_equal(mirror_upstream_path(&t, p, sizeof(p)), 0);
    assert_string_equal(p, "/v2/x/manifests/v1");
    assert_int_equal(mirror_upstream_path(&t, p, 5), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_upstream),
        cmocka_unit_test(test_creds_and_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
