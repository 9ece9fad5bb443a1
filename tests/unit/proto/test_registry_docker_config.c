/* Unit tests for docker config.json credential lookup: key forms, both credential forms,
 * Docker Hub aliases, and malformed documents; plus file loading via $DOCKER_CONFIG/$HOME. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "proto/registry_auth.h"

static int lookup(const char *json, const char *host, char **u, char **p)
{
    cf_err err = {0};
    int rc = proto_docker_config_parse(json, strlen(json), host, u, p, &err);
    if (rc < 0 && rc != -ENOENT) assert_true(err.msg[0] != '\0');
    if (rc != 0) {
        assert_null(*u);
        assert_null(*p);
    }
    return rc;
}

static void expect(const char *json, const char *host, const char *user, const char *pass)
{
    char *u, *p;
    int rc = lookup(json, host, &u, &p);
    if (rc) fail_msg("%s in %s: rc %d", host, json, rc);
    assert_string_equal(u, user);
    assert_string_equal(p, pass);
    free(u);
    free(p);
}

static void test_config_good(void **state)
{
    (void)state;
    /* base64("alice:s3cret") */
    expect("{\"auths\":{\"127.0.0.1:5000\":{\"auth\":\"YWxpY2U6czNjcmV0\"}}}", "127.0.0.1:5000",
           "alice", "s3cret");
    /* password containing ':' (split at the first one), unpadded base64 of "a:b:c" */
    expect("{\"auths\":{\"h\":{\"auth\":\"YTpiOmM\"}}}", "h", "a", "b:c");
    expect("{\"auths\":{\"h:1\":{\"username\":\"bob\",\"password\":\"pw\"}}}", "h:1", "bob", "pw");
    expect("{\"auths\":{\"https://h:1/v2/\":{\"auth\":\"YTpi\"}}}", "h:1", "a", "b");
    expect("{\"auths\":{\"http://H:1\":{\"auth\":\"YTpi\"}}}", "h:1", "a", "b");
    expect("{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"YTpi\"}}}",
           "registry-1.docker.io", "a", "b");
    /* an empty "auth" falls back to username/password */
    expect("{\"auths\":{\"h\":{\"auth\":\"\",\"username\":\"u\",\"password\":\"\"}}}", "h", "u",
           "");
    /* the exact key wins over a URL-shaped one */
    expect("{\"auths\":{\"https://h/\":{\"auth\":\"eDp5\"},\"h\":{\"auth\":\"YTpi\"}}}", "h", "a",
           "b");
}

static void test_config_absent(void **state)
{
    (void)state;
    char *u, *p;
    assert_int_equal(lookup("{}", "h", &u, &p), -ENOENT);
    assert_int_equal(lookup("{\"auths\":{}}", "h", &u, &p), -ENOENT);
    assert_int_equal(lookup("{\"auths\":{\"h:2\":{\"auth\":\"YTpi\"}}}", "h:1", &u, &p), -ENOENT);
    assert_int_equal(lookup("{\"auths\":{\"hh\":{\"auth\":\"YTpi\"}}}", "h", &u, &p), -ENOENT);
    assert_int_equal(lookup("{\"auths\":{\"h\":{}}}", "h", &u, &p), -ENOENT);
    assert_int_equal(lookup("{\"auths\":{\"h\":{\"identitytoken\":\"x\"}}}", "h", &u, &p), -ENOENT);
    assert_int_equal(lookup("{\"credsStore\":\"desktop\"}", "h", &u, &p), -ENOENT);
}

static void test_config_malformed(void **state)
{
    (void)state;
    char *u, *p;
    assert_int_equal(lookup("", "h", &u, &p), -EBADMSG);
    assert_int_equal(lookup("{\"auths\":", "h", &u, &p), -EBADMSG);
    assert_int_equal(lookup("[]", "h", &u, &p), -EBADMSG);
    assert_int_equal(lookup("{\"auths\":[]}", "h", &u, &p), -EBADMSG);
    assert_int_equal(lookup("{\"auths\":{\"h\":5}}", "h", &u, &p), -EBADMSG);
    assert_int_equal(lookup("{\"auths\":{\"h\":{\"auth\":\"!!!!\"}}}", "h", &u, &p), -EBADMSG);
    assert_int_equal(lookup("{\"auths\":{\"h\":{\"auth\":\"YQ\"}}}", "h", &u, &p), -EBADMSG);
    assert_int_equal(lookup("{\"auths\":{\"h\":{\"auth\":\"YWJj\"}}}", "h", &u, &p), -EBADMSG);
    assert_int_equal(lookup("{\"auths\":{\"h\":{\"auth\":\"OmI=\"}}}", "h", &u, &p), -EBADMSG);
    assert_int_equal(lookup("{\"auths\":{\"h\":{\"auth\":\"YQ==\"}}}", "h", &u, &p), -EBADMSG);
    assert_int_equal(lookup("{\"auths\":{\"h\":{\"auth\":\"Y\"}}}", "h", &u, &p), -EBADMSG);
    /* base64 of "a\0:b" */
    assert_int_equal(lookup("{\"auths\":{\"h\":{\"auth\":\"YQA6Yg==\"}}}", "h", &u, &p), -EBADMSG);
    assert_int_equal(
        lookup("{\"auths\":{\"h\":{\"username\":\"a\\u0000b\",\"password\":\"p\"}}}", "h", &u, &p),
        -EBADMSG);
}

static void test_config_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/cfdc.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"auths\":{\"r:1\":{\"auth\":\"YTpi\"}}}", f);
    fclose(f);
    char *u = NULL, *p = NULL;
    cf_err err = {0};
    setenv("DOCKER_CONFIG", dir, 1);
    assert_int_equal(proto_docker_config_load(NULL, "r:1", &u, &p, &err), 0);
    assert_string_equal(u, "a");
    free(u);
    free(p);
    assert_int_equal(proto_docker_config_load(NULL, "other", &u, &p, &err), 1);
    assert_int_equal(proto_docker_config_load(path, "r:1", &u, &p, &err), 0);
    free(u);
    free(p);
    setenv("DOCKER_CONFIG", "/nonexistent-cf", 1);
    assert_int_equal(proto_docker_config_load(NULL, "r:1", &u, &p, &err), 1); /* default: quiet */
    unsetenv("DOCKER_CONFIG");
    setenv("HOME", "/nonexistent-cf", 1);
    assert_int_equal(proto_docker_config_load(NULL, "r:1", &u, &p, &err), 1);
    assert_int_equal(proto_docker_config_load("/nonexistent-cf/c.json", "r:1", &u, &p, &err),
                     -ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent-cf/c.json"));
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_good),
        cmocka_unit_test(test_config_absent),
        cmocka_unit_test(test_config_malformed),
        cmocka_unit_test(test_config_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
