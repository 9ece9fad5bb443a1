/* Unit tests for the registry auth parsers: WWW-Authenticate challenges (well-formed, odd and
 * malformed) and token server JSON answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/registry_auth.h"

static int parse(const char *s, proto_auth_challenge *c)
{
    cf_err err = {0};
    int rc = proto_auth_parse_challenge(s, strlen(s), c, &err);
    if (rc < 0) assert_true(err.msg[0] != '\0');
    return rc;
}

static void test_challenge_bearer(void **state)
{
    (void)state;
    proto_auth_challenge c;
    assert_int_equal(
        parse("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io"
              "\",scope=\"repository:library/busybox:pull\"",
              &c),
        0);
    assert_int_equal(c.scheme, PROTO_AUTH_BEARER);
    assert_string_equal(c.realm, "https://auth.docker.io/token");
    assert_string_equal(c.service, "registry.docker.io");
    assert_string_equal(c.scope, "repository:library/busybox:pull");
    /* docker-registry 2.8's form, case-insensitive names, blanks, error param */
    assert_int_equal(
        parse("bearer  REALM=\"http://127.0.0.1:5004/token\" , Service=\"test-registry\","
              "error=\"insufficient_scope\"",
              &c),
        0);
    assert_string_equal(c.realm, "http://127.0.0.1:5004/token");
    assert_string_equal(c.service, "test-registry");
    assert_string_equal(c.scope, "");
    assert_string_equal(c.error, "insufficient_scope");
    /* bare (unquoted) values and quoted escapes */
    assert_int_equal(parse("Bearer realm=http://a/t,service=s\\x", &c), 0);
    assert_string_equal(c.realm, "http://a/t");
    assert_int_equal(parse("Bearer realm=\"http://a/\\\"q\\\"\",service=\"x\"", &c), 0);
    assert_string_equal(c.realm, "http://a/\"q\"");
    /* several scopes in one scope parameter */
    assert_int_equal(
        parse("Bearer realm=\"http://a/t\",scope=\"repository:a:pull repository:b:pull\"", &c), 0);
    assert_string_equal(c.scope, "repository:a:pull repository:b:pull");
}

static void test_challenge_basic_and_multi(void **state)
{
    (void)state;
    proto_auth_challenge c;
    assert_int_equal(parse("Basic realm=\"basic-realm\"", &c), 0);
    assert_int_equal(c.scheme, PROTO_AUTH_BASIC);
    assert_string_equal(c.realm, "basic-realm");
    assert_int_equal(parse("Basic", &c), 0);
    assert_int_equal(c.scheme, PROTO_AUTH_BASIC);
    /* Bearer wins over Basic, in either order; unknown schemes are skipped */
    assert_int_equal(parse("Basic realm=\"x\", Bearer realm=\"http://t/\",service=\"s\"", &c), 0);
    assert_int_equal(c.scheme, PROTO_AUTH_BEARER);
    assert_string_equal(c.service, "s");
    assert_int_equal(parse("Negotiate abc=, Bearer realm=\"http://t/\", Basic realm=\"y\"", &c), 0);
    assert_int_equal(c.scheme, PROTO_AUTH_BEARER);
    assert_int_equal(parse("Digest realm=\"d\", nonce=\"n\", Basic realm=\"b\"", &c), 0);
    assert_int_equal(c.scheme, PROTO_AUTH_BASIC);
    assert_string_equal(c.realm, "b");
}

static void test_challenge_malformed(void **state)
{
    (void)state;
    proto_auth_challenge c;
    cf_err err = {0};
    assert_int_equal(proto_auth_parse_challenge("", 0, &c, &err), -EBADMSG);
    assert_int_equal(proto_auth_parse_challenge(NULL, 5, &c, NULL), -EBADMSG);
    assert_int_equal(parse("Bearer realm=\"http://unterminated", &c), -EBADMSG);
    assert_int_equal(parse("Bearer service=\"s\"", &c), -EBADMSG); /* no realm */
    assert_int_equal(parse("Bearer realm=\"file:///etc/passwd\"", &c), -EBADMSG);
    assert_int_equal(parse("Bearer realm=\"ftp://x/\"", &c), -EBADMSG);
    assert_int_equal(parse("Bearer realm=\"http://a/\x01\"", &c), -EBADMSG);
    assert_int_equal(parse("Bearer realm=\"http://a/\\", &c), -EBADMSG);
    assert_int_equal(parse("Bearer realm=\"http://a/\"x\"", &c), -EBADMSG);
    assert_int_equal(parse("=", &c), -EBADMSG);
    assert_int_equal(parse("Negotiate", &c), -ENOTSUP);
    assert_int_equal(parse("Digest realm=\"x\"", &c), -ENOTSUP);
    /* over-long values are refused, not truncated */
    char big[3000] = "Bearer realm=\"http://a/";
    memset(big + strlen(big), 'a', 1500);
    strcat(big, "\"");
    assert_int_equal(parse(big, &c), -EBADMSG);
    char huge[10000];
    memset(huge, ' ', sizeof(huge));
    assert_int_equal(proto_auth_parse_challenge(huge, sizeof(huge), &c, &err), -EBADMSG);
    /* not NUL-terminated: only len bytes are read */
    const char *s = "Bearer realm=\"http://a/t\"JUNK";
    assert_int_equal(proto_auth_parse_challenge(s, strlen(s) - 4, &c, &err), 0);
    assert_string_equal(c.realm, "http://a/t");
}

static int token(const char *json, char **t, long *ttl)
{
    cf_err err = {0};
    int rc = proto_auth_parse_token(json, strlen(json), t, ttl, &err);
    if (rc < 0) assert_true(err.msg[0] != '\0');
    return rc;
}

static void test_token_json(void **state)
{
    (void)state;
    char *t;
    long ttl;
    assert_int_equal(token("{\"token\":\"abc.def\",\"expires_in\":300}", &t, &ttl), 0);
    assert_string_equal(t, "abc.def");
    assert_int_equal(ttl, 300);
    free(t);
    assert_int_equal(token("{\"access_token\":\"x\"}", &t, &ttl), 0); /* OAuth2 name */
    assert_string_equal(t, "x");
    assert_int_equal(ttl, PROTO_TOKEN_DEFAULT_TTL_S);
    free(t);
    assert_int_equal(token("{\"token\":\"\",\"access_token\":\"y\",\"expires_in\":0}", &t, &ttl),
                     0);
    assert_string_equal(t, "y");
    assert_int_equal(ttl, PROTO_TOKEN_DEFAULT_TTL_S); /* < 1: default */
    free(t);
    assert_int_equal(token("{\"token\":\"z\",\"expires_in\":\"300\"}", &t, &ttl), 0);
    assert_int_equal(ttl, PROTO_TOKEN_DEFAULT_TTL_S); /* not an integer: default */
    free(t);
    assert_int_equal(token("{\"token\":\"z\",\"expires_in\":99999999999}", &t, &ttl), 0);
    assert_int_equal(ttl, 86400 * 365); /* capped */
    free(t);
}

static void test_token_json_malformed(void **state)
{
    (void)state;
    char *t = (char *)1;
    long ttl;
    assert_int_equal(token("", &t, &ttl), -EBADMSG);
    assert_null(t);
    assert_int_equal(token("{", &t, &ttl), -EBADMSG);
    assert_int_equal(token("[]", &t, &ttl), -EBADMSG);
    assert_int_equal(token("{\"token\":5}", &t, &ttl), -EBADMSG);
    assert_int_equal(token("{\"tok\":\"a\"}", &t, &ttl), -EBADMSG);
    assert_int_equal(token("{\"token\":\"a\",\"token\":\"b\"}", &t, &ttl), -EBADMSG); /* dup */
    /* header injection attempts */
    assert_int_equal(token("{\"token\":\"a\\r\\nX-Evil: 1\"}", &t, &ttl), -EBADMSG);
    assert_int_equal(token("{\"token\":\"a b\"}", &t, &ttl), -EBADMSG);
    assert_int_equal(token("{\"token\":\"a\\u0000b\"}", &t, &ttl), -EBADMSG);
    assert_int_equal(token("{\"token\":\"\\u00e9\"}", &t, &ttl), -EBADMSG);
    /* too long */
    size_t n = PROTO_TOKEN_MAX + 100;
    char *big = malloc(n + 32);
    assert_non_null(big);
    strcpy(big, "{\"token\":\"");
    memset(big + 10, 'a', n);
    strcpy(big + 10 + n, "\"}");
    assert_int_equal(token(big, &t, &ttl), -EBADMSG);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_challenge_bearer),
        cmocka_unit_test(test_challenge_basic_and_multi),
        cmocka_unit_test(test_challenge_malformed),
        cmocka_unit_test(test_token_json),
        cmocka_unit_test(test_token_json_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
