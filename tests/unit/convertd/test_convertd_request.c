/* convertd/request.c: the three body shapes, what is ignored, what is refused; the target rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "convertd/request.h"

static int parse(const char *body, cvd_request *r, cf_err *e)
{
    memset(e, 0, sizeof(*e));
    return cvd_request_parse(body, strlen(body), r, e);
}

static void api_body(void **state)
{
    (void)state;
    cvd_request r;
    cf_err e;
    assert_int_equal(parse("{\"src\": \"127.0.0.1:5000/a/b:v1\"}", &r, &e), 0);
    assert_int_equal(r.kind, CVD_REQ_API);
    assert_int_equal(r.n_items, 1);
    assert_string_equal(r.items[0].source, "127.0.0.1:5000/a/b:v1");
    assert_string_equal(r.items[0].target, "");
    cvd_request_free(&r);
    assert_int_equal(parse("{\"src\": \"h:1/a:v1\", \"target\": \"h:2/c:x\"}", &r, &e), 0);
    assert_string_equal(r.items[0].target, "h:2/c:x");
    cvd_request_free(&r);
    /* wrong types, bad references, a digest as target, duplicates keys */
    const char *bad[] = {"{\"src\": 5}",
                         "{\"src\": \"h:1/UPPER:v1\"}",
                         "{\"src\": \"h:1/a:v1\", \"target\": 7}",
                         "{\"src\": \"h:1/a:v1\", \"target\": \"h:1/a@sha256:"
                         "0000000000000000000000000000000000000000000000000000000000000000\"}",
                         "{\"src\": \"h:1/a:v1\", \"src\": \"h:1/a:v2\"}",
                         "[1]",
                         "{}",
                         "nope",
                         "{\"src\": \"h:1/a\\u0000b:v1\"}",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(parse(bad[i], &r, &e), -EBADMSG);
        assert_true(e.msg[0] != 0);
        assert_null(r.items);
    }
}

static void harbor_body(void **state)
{
    (void)state;
    cvd_request r;
    cf_err e;
    assert_int_equal(parse("{\"type\": \"PUSH_ARTIFACT\", \"event_data\": {\"resources\": ["
                           "{\"resource_url\": \"harbor.local/p/app:v1\"},"
                           "{\"resource_url\": \"harbor.local/p/app:v1\"},"
                           "{\"resource_url\": \"harbor.local/p/app:v2\", \"digest\": 1}]}}",
                           &r, &e),
                     0);
    assert_int_equal(r.kind, CVD_REQ_HARBOR);
    assert_int_equal(r.n_items, 2); /* the repeated one once */
    assert_string_equal(r.items[1].source, "harbor.local/p/app:v2");
    cvd_request_free(&r);
    assert_int_equal(parse("{\"type\": \"DELETE_ARTIFACT\"}", &r, &e), 0);
    assert_int_equal(r.n_items, 0);
    assert_int_equal(r.ignored, 1);
    cvd_request_free(&r);
    assert_int_equal(
        parse("{\"type\": \"PUSH_ARTIFACT\", \"event_data\": {\"resources\": 3}}", &r, &e),
        -EBADMSG);
    assert_int_equal(parse("{\"type\": \"PUSH_ARTIFACT\", \"event_data\": {\"resources\": ["
                           "{\"resource_url\": \"harbor.local/p/app@sha256:"
                           "0000000000000000000000000000000000000000000000000000000000000000\"}]}}",
                           &r, &e),
                     0); /* pushed by digest: nothing to name a target after, ignored */
    assert_int_equal(r.n_items, 0);
    assert_int_equal(r.ignored, 1);
    cvd_request_free(&r);
    /* more sources than a request may hold */
    char big[20000] = "{\"type\": \"PUSH_ARTIFACT\", \"event_data\": {\"resources\": [";
    for (int i = 0; i < CVD_REQUEST_MAX_ITEMS + 1; i++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), "%s{\"resource_url\": \"h/a:t%d\"}",
                 i ? "," : "", i);
    strcat(big, "]}}");
    assert_int_equal(parse(big, &r, &e), -E2BIG);
}

static void registry_body(void **state)
{
    (void)state;
    cvd_request r;
    cf_err e;
    const char *body =
        "{\"events\": ["
        "{\"action\": \"push\", \"target\": {\"mediaType\": "
        "\"application/vnd.oci.image.layer.v1.tar+gzip\", \"repository\": \"a/b\"}, \"request\": "
        "{\"host\": \"127.0.0.1:5000\"}},"
        "{\"action\": \"pull\", \"target\": {\"mediaType\": "
        "\"application/vnd.oci.image.manifest.v1+json\", \"repository\": \"a/b\", \"tag\": "
        "\"v1\"}},"
        "{\"action\": \"push\", \"target\": {\"mediaType\": "
        "\"application/vnd.oci.image.manifest.v1+json\", \"repository\": \"a/b\"}},"
        "{\"action\": \"push\", \"target\": {\"mediaType\": "
        "\"application/vnd.docker.distribution.manifest.v2+json\", \"repository\": \"a/b\", "
        "\"tag\": \"v1\", \"digest\": \"sha256:00\"}, \"request\": {\"host\": \"127.0.0.1:5000\", "
        "\"method\": \"PUT\"}}]}";
    assert_int_equal(parse(body, &r, &e), 0);
    assert_int_equal(r.kind, CVD_REQ_REGISTRY);
    assert_int_equal(r.n_items, 1);
    assert_int_equal(r.ignored, 3); /* a blob push, a pull, a push by digest */
    assert_string_equal(r.items[0].source, "127.0.0.1:5000/a/b:v1");
    cvd_request_free(&r);
    /* a manifest push with a tag but a hostile host or repository is refused, not guessed */
    assert_int_equal(parse("{\"events\": [{\"action\": \"push\", \"target\": {\"mediaType\": "
                           "\"application/vnd.oci.image.manifest.v1+json\", \"repository\": "
                           "\"a/b\", \"tag\": \"v1\"}, \"request\": {\"host\": \"x/y\"}}]}",
                           &r, &e),
                     -EBADMSG);
    assert_int_equal(parse("{\"events\": [{\"action\": \"push\", \"target\": {\"mediaType\": "
                           "\"application/vnd.oci.image.manifest.v1+json\", \"repository\": "
                           "\"../b\", \"tag\": \"v1\"}, \"request\": {\"host\": \"h\"}}]}",
                           &r, &e),
                     -EBADMSG);
    assert_int_equal(parse("{\"events\": [{\"action\": 1}]}", &r, &e), -EBADMSG);
    assert_int_equal(parse("{\"events\": {}}", &r, &e), -EBADMSG);
}

static void target_rule(void **state)
{
    (void)state;
    char t[CVD_REF_MAX];
    assert_int_equal(cvd_target_for("127.0.0.1:5000/a/b:v1", "-nydus", NULL, t, sizeof(t), NULL),
                     0);
    assert_string_equal(t, "127.0.0.1:5000/a/b:v1-nydus");
    assert_int_equal(
        cvd_target_for("127.0.0.1:5000/a/b:v1", "-nydus", "reg:6000", t, sizeof(t), NULL), 0);
    assert_string_equal(t, "reg:6000/a/b:v1-nydus");
    assert_int_equal(
        cvd_target_for("127.0.0.1:5000/a/b:v1-nydus", "-nydus", NULL, t, sizeof(t), NULL), 1);
    assert_int_equal(
        cvd_target_for("127.0.0.1:5000/a/b@sha256:"
                       "0000000000000000000000000000000000000000000000000000000000000000",
                       "-nydus", NULL, t, sizeof(t), NULL),
        -EINVAL);
    char longtag[200];
    memset(longtag, 'x', 128);
    longtag[128] = 0;
    char ref[300];
    snprintf(ref, sizeof(ref), "h:1/a:%s", longtag);
    assert_int_equal(cvd_target_for(ref, "-nydus", NULL, t, sizeof(t), NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(api_body),
        cmocka_unit_test(harbor_body),
        cmocka_unit_test(registry_body),
        cmocka_unit_test(target_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
