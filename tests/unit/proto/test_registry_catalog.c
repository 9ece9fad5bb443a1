/* Unit tests for the catalog and tag list parsers (proto/registry_catalog.h): well-formed pages
 * appended across calls, null tags, and every refusal (types, names, the repository name,
 * NULs inside strings, duplicates, size). Pagination itself runs against a real registry in
 * tests/integration/client/convert_all.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/registry_catalog.h"

static int cat(const char *s, proto_name_list *l)
{
    cf_err err = {0};
    return proto_registry_catalog_parse(s, strlen(s), l, &err);
}

static int tags(const char *s, const char *repo, proto_name_list *l)
{
    cf_err err = {0};
    return proto_registry_tags_parse(s, strlen(s), repo, l, &err);
}

static void test_catalog(void **state)
{
    (void)state;
    proto_name_list l = {0};
    assert_int_equal(cat("{\"repositories\":[\"a\",\"lib/b\"]}", &l), 0);
    assert_int_equal(cat("{\"repositories\":[\"c/d-e_f.g\"]}", &l), 0); /* appended */
    assert_int_equal(l.n, 3);
    assert_string_equal(l.names[0], "a");
    assert_string_equal(l.names[2], "c/d-e_f.g");
    assert_int_equal(cat("{\"repositories\":[]}", &l), 0);
    assert_int_equal(l.n, 3);
    proto_name_list_free(&l);
    assert_null(l.names);
    const char *bad[] = {
        "",
        "[]",
        "null",
        "{}",
        "{\"repositories\":null}",
        "{\"repositories\":\"a\"}",
        "{\"repositories\":[1]}",
        "{\"repositories\":[\"UPPER\"]}",
        "{\"repositories\":[\"\"]}",
        "{\"repositories\":[\"../x\"]}",
        "{\"repositories\":[\"a\\u0000b\"]}",
        "{\"repositories\":[\"a\"],\"repositories\":[\"b\"]}",
        "{\"repositories\":[\"a\"]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        proto_name_list b = {0};
        assert_int_equal(cat(bad[i], &b), -EBADMSG);
        proto_name_list_free(&b);
    }
}

static void test_tags(void **state)
{
    (void)state;
    proto_name_list l = {0};
    assert_int_equal(
        tags("{\"name\":\"lib/app\",\"tags\":[\"v1\",\"latest\",\"v1-nydus\"]}", "lib/app", &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.names[2], "v1-nydus");
    assert_int_equal(tags("{\"name\":\"lib/app\",\"tags\":null}", "lib/app", &l), 0);
    assert_int_equal(l.n, 3);
    proto_name_list_free(&l);
    const char *bad[] = {
        "{\"name\":\"other\",\"tags\":[\"v1\"]}",
        "{\"tags\":[\"v1\"]}",
        "{\"name\":\"lib/app\"}",
        "{\"name\":\"lib/app\",\"tags\":{}}",
        "{\"name\":\"lib/app\",\"tags\":[\"-bad\"]}",
        "{\"name\":\"lib/app\",\"tags\":[\"a/b\"]}",
        "{\"name\":\"lib/app\",\"tags\":[null]}",
        "{\"name\":7,\"tags\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        proto_name_list b = {0};
        assert_int_equal(tags(bad[i], "lib/app", &b), -EBADMSG);
        proto_name_list_free(&b);
    }
}

static void test_size(void **state)
{
    (void)state;
    size_t n = PROTO_REGISTRY_LIST_DOC_MAX + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    proto_name_list l = {0};
    cf_err err = {0};
    assert_int_equal(proto_registry_catalog_parse(big, n, &l, &err), -EFBIG);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_catalog),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
