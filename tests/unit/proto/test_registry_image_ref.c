/* Unit tests for image references and the OCI name grammar (repository, tag, digest). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/registry_client.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void check(const char *s, const char *reg, const char *repo, const char *tag,
                  const char *digest)
{
    proto_image_ref r;
    cf_err err = {0};
    int rc = proto_image_ref_parse(s, &r, &err);
    if (rc) fail_msg("%s: %s", s, err.msg);
    assert_string_equal(r.registry, reg);
    assert_string_equal(r.repo, repo);
    assert_string_equal(r.tag, tag);
    assert_string_equal(r.digest, digest);
}

static void test_ref_good(void **state)
{
    (void)state;
    check("busybox", "registry-1.docker.io", "library/busybox", "latest", "");
    check("busybox:1.36", "registry-1.docker.io", "library/busybox", "1.36", "");
    check("docker.io/busybox", "registry-1.docker.io", "library/busybox", "latest", "");
    check("index.docker.io/foo/bar:x", "registry-1.docker.io", "foo/bar", "x", "");
    check("foo/bar", "registry-1.docker.io", "foo/bar", "latest", "");
    check("127.0.0.1:5000/test", "127.0.0.1:5000", "test", "latest", "");
    check("127.0.0.1:5000/test/big:v1", "127.0.0.1:5000", "test/big", "v1", "");
    check("localhost/a", "localhost", "a", "latest", "");
    check("localhost:5000/a/b/c:t", "localhost:5000", "a/b/c", "t", "");
    check("Registry.Example.com/a", "Registry.Example.com", "a", "latest", "");
    check("[::1]:5000/x:y", "[::1]:5000", "x", "y", "");
    check("127.0.0.1:5000/test@sha256:" D64, "127.0.0.1:5000", "test", "", "sha256:" D64);
    check("127.0.0.1:5000/test:v1@sha256:" D64, "127.0.0.1:5000", "test", "v1", "sha256:" D64);
    check("busybox@sha256:" D64, "registry-1.docker.io", "library/busybox", "", "sha256:" D64);
    check("a.b/x__y.z-w--v/q", "a.b", "x__y.z-w--v/q", "latest", "");
    proto_image_ref r;
    assert_int_equal(proto_image_ref_parse("h:1/r@sha256:" D64, &r, NULL), 0);
    assert_string_equal(proto_image_ref_reference(&r), "sha256:" D64);
    assert_int_equal(proto_image_ref_parse("h:1/r:t", &r, NULL), 0);
    assert_string_equal(proto_image_ref_reference(&r), "t");
}

static void bad(const char *s)
{
    proto_image_ref r;
    cf_err err = {0};
    if (proto_image_ref_parse(s, &r, &err) != -EINVAL) fail_msg("accepted: %s", s);
    assert_true(err.msg[0] != '\0');
}

static void test_ref_bad(void **state)
{
    (void)state;
    bad("");
    bad("UPPER");
    bad("docker.io/Foo/bar");
    bad("a//b");
    bad("/a");
    bad("a/");
    bad("a:");
    bad("a:-tag");
    bad("a:t@");
    bad("a@sha256:abc");
    bad("a@sha512:" D64 D64);
    bad("a@sha256:" D64 "0");
    bad("a@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef");
    bad("h:99999/a");
    bad("h:0/a");
    bad("h:/a");
    bad("h:x/a");
    bad("h_x.com/a");
    bad("[::1/a");
    bad("[zz]:1/a");
    bad("a..b");
    bad("a/-b");
    bad("a/b_");
    bad("a/b___c");
    bad("a b");
    bad("h:1/a/../b");
    bad("a..b.com/x"); /* empty label */
    bad("-h.com/x");
    bad("h-.com:5000/x");
    proto_image_ref r;
    assert_int_equal(proto_image_ref_parse(NULL, &r, NULL), -EINVAL);
    char long_tag[300] = "a:";
    memset(long_tag + 2, 't', 129);
    bad(long_tag);
    char long_host[400];
    memset(long_host, 'h', 300);
    strcpy(long_host + 300, ".com/a");
    bad(long_host);
    char long_ref[2000];
    memset(long_ref, 'a', sizeof(long_ref) - 1);
    long_ref[sizeof(long_ref) - 1] = '\0';
    bad(long_ref);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(proto_registry_check_digest("sha256:" D64), 0);
    assert_int_equal(proto_registry_check_digest("sha256:" D64 "/../x"), -EINVAL);
    assert_int_equal(proto_registry_check_digest("sha256:"), -EINVAL);
    assert_int_equal(proto_registry_check_digest(NULL), -EINVAL);
    assert_int_equal(proto_registry_check_host("10.0.0.5:5000", 13), 0);
    assert_int_equal(proto_registry_check_host("[::1]", 5), 0);
    assert_int_equal(proto_registry_check_host("ghcr.io/x", 7), 0); /* only n bytes count */
    assert_int_equal(proto_registry_check_host("..", 2), -EINVAL);
    assert_int_equal(proto_registry_check_host(".", 1), -EINVAL);
    assert_int_equal(proto_registry_check_host("a.", 2), -EINVAL);
    assert_int_equal(proto_registry_check_host("h:", 2), -EINVAL);
    assert_int_equal(proto_registry_check_host("", 0), -EINVAL);
    assert_int_equal(proto_registry_check_repo("a"), 0);
    assert_int_equal(proto_registry_check_repo("a0/b-1/c.d/e__f"), 0);
    assert_int_equal(proto_registry_check_repo("a/../b"), -EINVAL);
    assert_int_equal(proto_registry_check_repo("a?x"), -EINVAL);
    assert_int_equal(proto_registry_check_repo("a%2f"), -EINVAL);
    assert_int_equal(proto_registry_check_repo(""), -EINVAL);
    char r256[257];
    memset(r256, 'a', 256);
    r256[256] = '\0';
    assert_int_equal(proto_registry_check_repo(r256), -EINVAL);
    assert_int_equal(proto_registry_check_tag("v1.2_3-x"), 0);
    assert_int_equal(proto_registry_check_tag("_x"), 0);
    assert_int_equal(proto_registry_check_tag(".x"), -EINVAL);
    assert_int_equal(proto_registry_check_tag("a/b"), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_good),
        cmocka_unit_test(test_ref_bad),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
