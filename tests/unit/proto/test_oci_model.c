/* Unit tests for the OCI image model (proto/oci_model.h): manifests (OCI, Docker), indexes and
 * platform selection, configs, the Nydus view and its refusals, and malformed documents. The
 * samples are our own, shaped as nydusify / docker / buildx write them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/oci_model.h"

#define H(c) "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
                       c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define D1 H("1")
#define D2 H("2")
#define D3 H("3")
#define DC H("c")

#define BLOB(d, sz) "{\"mediaType\":\"application/vnd.oci.image.layer.nydus.blob.v1\",\"digest\":\"" \
    d "\",\"size\":" #sz ",\"annotations\":{\"containerd.io/snapshot/nydus-blob\":\"true\"}}"
#define BOOT(d, fsv) "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" \
    d "\",\"size\":552,\"annotations\":{\"containerd.io/snapshot/nydus-bootstrap\":\"true\"," \
    "\"containerd.io/snapshot/nydus-fs-version\":\"" fsv "\"}}"
#define CONFIG "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\"," \
    "\"digest\":\"" DC "\",\"size\":334}"
#define MAN(layers) "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"," \
    CONFIG ",\"layers\":[" layers "]}"

static int parse(const char *json, proto_oci_manifest *m, cf_err *err)
{
    int rc = proto_oci_manifest_parse(json, strlen(json), NULL, m, err);
    if (rc < 0) assert_true(err->msg[0] != '\0');
    return rc;
}

static int view(const char *json, proto_oci_manifest *m, proto_nydus_view *v, cf_err *err)
{
    int rc = parse(json, m, err);
    if (rc < 0) return rc;
    rc = proto_nydus_view_get(m, v, err);
    if (rc < 0) assert_true(err->msg[0] != '\0');
    return rc;
}

static void test_nydus_manifest(void **state)
{
    (void)state;
    proto_oci_manifest m;
    proto_nydus_view v;
    cf_err err = {0};
    assert_int_equal(view(MAN(BLOB(D1, 104131) "," BLOB(D2, 7) "," BOOT(D3, "6")), &m, &v, &err), 0);
    assert_int_equal(m.docker, 0);
    assert_string_equal(m.config.digest, DC);
    assert_int_equal(m.config.size, 334);
    assert_int_equal(m.n_layers, 3);
    assert_int_equal(v.fs_version, 6);
    assert_ptr_equal(v.bootstrap, &m.layers[2]);
    assert_int_equal(v.n_blobs, 2);
    assert_string_equal(v.blobs[0]->digest, D1);
    assert_int_equal(v.blobs[0]->size, 104131);
    assert_string_equal(v.blobs[1]->digest, D2);
    assert_string_equal(proto_oci_desc_annotation(v.bootstrap, PROTO_NYDUS_ANN_BOOTSTRAP), "true");
    assert_null(proto_oci_desc_annotation(v.bootstrap, "nope"));
    proto_nydus_view_free(&v);
    proto_oci_manifest_free(&m);
    proto_oci_manifest_free(&m); /* safe twice */

    /* Docker media types, no fs-version annotation, bootstrap only (external blobs) */
    const char *dk = "{\"schemaVersion\":2,\"mediaType\":"
        "\"application/vnd.docker.distribution.manifest.v2+json\",\"config\":{\"mediaType\":"
        "\"application/vnd.docker.container.image.v1+json\",\"digest\":\"" DC "\",\"size\":1},"
        "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
        "\"digest\":\"" D3 "\",\"size\":9,\"annotations\":{\"containerd.io/snapshot/"
        "nydus-bootstrap\":\"true\"}}]}";
    assert_int_equal(view(dk, &m, &v, &err), 0);
    assert_int_equal(m.docker, 1);
    assert_int_equal(v.fs_version, 0);
    assert_int_equal(v.n_blobs, 0);
    assert_null(v.blobs);
    assert_string_equal(v.bootstrap->digest, D3);
    proto_nydus_view_free(&v);
    proto_oci_manifest_free(&m);

    /* annotations lost: the topmost gzip layer over nydus blob layers */
    const char *lost = MAN(BLOB(D1, 5) ",{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
                           "\"digest\":\"" D3 "\",\"size\":9}");
    assert_int_equal(view(lost, &m, &v, &err), 0);
    assert_ptr_equal(v.bootstrap, &m.layers[1]);
    assert_int_equal(v.n_blobs, 1);
    proto_nydus_view_free(&v);
    proto_oci_manifest_free(&m);
}

static void test_nydus_refusals(void **state)
{
    (void)state;
    proto_oci_manifest m;
    proto_nydus_view v;
    cf_err err = {0};
    /* plain OCI image */
    const char *plain = MAN("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
                            "\"digest\":\"" D1 "\",\"size\":5},{\"mediaType\":"
                            "\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" D2
                            "\",\"size\":5}");
    assert_int_equal(view(plain, &m, &v, &err), -EMEDIUMTYPE);
    assert_non_null(strstr(err.msg, "not a Nydus image"));
    assert_null(v.bootstrap);
    proto_oci_manifest_free(&m);
    assert_int_equal(view(MAN(""), &m, &v, &err), -EMEDIUMTYPE);
    proto_oci_manifest_free(&m);
    /* RAFS v5 */
    assert_int_equal(view(MAN(BLOB(D1, 5) "," BOOT(D3, "5")), &m, &v, &err), -ENOTSUP);
    assert_non_null(strstr(err.msg, "RAFS v5"));
    proto_oci_manifest_free(&m);
    assert_int_equal(view(MAN(BLOB(D1, 5) "," BOOT(D3, "7")), &m, &v, &err), -ENOTSUP);
    proto_oci_manifest_free(&m);
    /* zran */
    const char *zran = MAN("{\"mediaType\":\"application/vnd.oci.image.layer.nydus.blob.v1\","
                           "\"digest\":\"" D1 "\",\"size\":5,\"annotations\":{\"containerd.io/"
                           "snapshot/nydus-blob\":\"true\",\"containerd.io/snapshot/nydus-ref\":"
                           "\"" D2 "\"}}," BOOT(D3, "6"));
    assert_int_equal(view(zran, &m, &v, &err), -ENOTSUP);
    assert_non_null(strstr(err.msg, "zran"));
    proto_oci_manifest_free(&m);
    const char *enc = MAN("{\"mediaType\":\"application/vnd.oci.image.layer.nydus.blob.v1\","
                          "\"digest\":\"" D1 "\",\"size\":5,\"annotations\":{\"containerd.io/"
                          "snapshot/nydus-encrypted-blob\":\"true\"}}," BOOT(D3, "6"));
    assert_int_equal(view(enc, &m, &v, &err), -ENOTSUP);
    assert_non_null(strstr(err.msg, "encrypted"));
    proto_oci_manifest_free(&m);
}

static void expect_bad(const char *json, int code, const char *needle)
{
    proto_oci_manifest m;
    cf_err err = {0};
    int rc = parse(json, &m, &err);
    if (rc != code) fail_msg("%s: rc %d (%s), want %d", json, rc, err.msg, code);
    if (needle && !strstr(err.msg, needle)) fail_msg("%s: message \"%s\" lacks %s", json, err.msg, needle);
    assert_int_equal(m.n_layers, 0);
    assert_null(m.layers);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_bad("", -EBADMSG, "not JSON");
    expect_bad("[]", -EBADMSG, "object");
    expect_bad("{\"schemaVersion\":1,\"fsLayers\":[]}", -ENOTSUP, "schema 1");
    expect_bad("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
               "\"manifests\":[]}", -EMEDIUMTYPE, "index");
    expect_bad("{\"schemaVersion\":2,\"mediaType\":\"text/plain\"}", -EMEDIUMTYPE, NULL);
    expect_bad("{\"schemaVersion\":3," CONFIG ",\"layers\":[]}", -EBADMSG, "schemaVersion");
    expect_bad("{\"schemaVersion\":2,\"layers\":[]}", -EBADMSG, "config");
    expect_bad("{\"schemaVersion\":2," CONFIG "}", -EBADMSG, "layers");
    expect_bad("{\"schemaVersion\":2," CONFIG ",\"layers\":{}}", -EBADMSG, "layers");
    expect_bad(MAN("{\"mediaType\":\"x\",\"digest\":\"sha256:abc\",\"size\":1}"), -EBADMSG,
               "layers[0].digest");
    expect_bad(MAN("{\"mediaType\":\"x\",\"digest\":\"" H("A") "\",\"size\":1}"), -EBADMSG, NULL);
    expect_bad(MAN("{\"mediaType\":\"x\",\"digest\":\"sha512:" "0123456789abcdef0123456789abcdef"
                   "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
                   "abcdef\",\"size\":1}"), -ENOTSUP, "sha512");
    expect_bad(MAN("{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":-1}"), -EBADMSG, "size");
    expect_bad(MAN("{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":1.5}"), -EBADMSG, "size");
    expect_bad(MAN("{\"mediaType\":\"x\",\"digest\":\"" D1 "\"}"), -EBADMSG, "size");
    expect_bad(MAN("{\"digest\":\"" D1 "\",\"size\":1}"), -EBADMSG, "mediaType");
    expect_bad(MAN("{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":1,\"annotations\":"
                   "{\"a\":1}}"), -EBADMSG, "annotation");
    expect_bad(MAN("{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":1,\"annotations\":[]}"),
               -EBADMSG, "annotations");
    expect_bad(MAN("{\"mediaType\":\"x\\u0000y\",\"digest\":\"" D1 "\",\"size\":1}"), -EBADMSG,
               NULL);
    expect_bad("{\"schemaVersion\":2,\"schemaVersion\":2," CONFIG ",\"layers\":[]}", -EBADMSG,
               "not JSON");
    /* too many layers */
    size_t n = PROTO_OCI_MAX_ENTRIES + 1, one = strlen(BLOB(D1, 1)) + 1;
    char *big = malloc(n * one + 512);
    assert_non_null(big);
    char *p = big + sprintf(big, "{\"schemaVersion\":2," CONFIG ",\"layers\":[");
    for (size_t i = 0; i < n; i++) p += sprintf(p, "%s%s", i ? "," : "", BLOB(D1, 1));
    strcpy(p, "]}");
    expect_bad(big, -EBADMSG, "entries");
    free(big);
    /* over the document cap */
    proto_oci_manifest m;
    cf_err err = {0};
    assert_int_equal(proto_oci_manifest_parse("{}", PROTO_OCI_DOC_MAX + 1u, NULL, &m, &err), -EFBIG);
}

static void test_kind(void **state)
{
    (void)state;
    enum proto_oci_kind k;
    cf_err err = {0};
    const char *noshape = "{\"schemaVersion\":2," CONFIG ",\"layers\":[]}";
    assert_int_equal(proto_oci_kind_of(noshape, strlen(noshape), NULL, &k, &err), 0);
    assert_int_equal(k, PROTO_OCI_KIND_MANIFEST);
    const char *ix = "{\"schemaVersion\":2,\"manifests\":[]}";
    assert_int_equal(proto_oci_kind_of(ix, strlen(ix), NULL, &k, &err), 0);
    assert_int_equal(k, PROTO_OCI_KIND_INDEX);
    /* no mediaType in the body: the Content-Type decides */
    proto_oci_manifest m;
    assert_int_equal(proto_oci_manifest_parse(noshape, strlen(noshape),
                                              PROTO_DOCKER_MT_MANIFEST "; charset=utf-8", &m, &err),
                     0);
    assert_int_equal(m.docker, 1);
    assert_string_equal(m.media_type, PROTO_DOCKER_MT_MANIFEST);
    proto_oci_manifest_free(&m);
    const char *both = "{\"schemaVersion\":2,\"manifests\":[],\"layers\":[]}";
    assert_int_equal(proto_oci_kind_of(both, strlen(both), NULL, &k, &err), -EBADMSG);
}

#define ENTRY(d, plat, extra) "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"," \
    "\"digest\":\"" d "\",\"size\":7,\"platform\":" plat extra "}"

static const proto_oci_desc *pick(const proto_oci_index *ix, const char *want, unsigned flags,
                                  int expect_rc)
{
    proto_oci_platform p;
    cf_err err = {0};
    const proto_oci_desc *d = NULL;
    assert_int_equal(proto_oci_platform_parse(want, &p, &err), 0);
    int rc = proto_oci_index_select(ix, &p, flags, &d, &err);
    if (rc != expect_rc) fail_msg("%s: rc %d (%s)", want, rc, err.msg);
    if (rc == -ENOENT) assert_non_null(strstr(err.msg, want));
    return d;
}

static void test_index(void **state)
{
    (void)state;
    const char *json = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
        "\"manifests\":["
        ENTRY(D1, "{\"os\":\"linux\",\"architecture\":\"amd64\"}", "") ","
        ENTRY(D2, "{\"os\":\"linux\",\"architecture\":\"amd64\",\"os.features\":[\"nydus.remoteimage.v1\"]}", "") ","
        ENTRY(D3, "{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}", "") ","
        ENTRY(DC, "{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}", "") ","
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" H("9")
        "\",\"size\":1,\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}}"
        "]}";
    proto_oci_index ix;
    cf_err err = {0};
    assert_int_equal(proto_oci_index_parse(json, strlen(json), NULL, &ix, &err), 0);
    assert_int_equal(ix.n_manifests, 5);
    assert_int_equal(ix.manifests[1].platform.nydus_feature, 1);
    assert_string_equal(pick(&ix, "linux/amd64", 0, 0)->digest, D1);
    assert_string_equal(pick(&ix, "linux/amd64", PROTO_OCI_SELECT_NYDUS, 0)->digest, D2);
    assert_string_equal(pick(&ix, "linux/arm64", 0, 0)->digest, D3);
    assert_string_equal(pick(&ix, "linux/arm64/v8", 0, 0)->digest, D3);
    assert_string_equal(pick(&ix, "linux/arm/v7", 0, 0)->digest, DC);
    assert_string_equal(pick(&ix, "linux/arm", 0, 0)->digest, DC);
    assert_null(pick(&ix, "linux/arm/v6", 0, -ENOENT));
    assert_null(pick(&ix, "linux/s390x", 0, -ENOENT));
    const proto_oci_desc *d;
    assert_int_equal(proto_oci_index_select(&ix, NULL, 0, &d, &err), 0); /* host: amd64 here */
    proto_oci_index_free(&ix);

    /* artifactType marks the Nydus one (nydusify --merge-platform, newer) */
    const char *art = "{\"schemaVersion\":2,\"manifests\":["
        ENTRY(D1, "{\"os\":\"linux\",\"architecture\":\"amd64\"}", "") ","
        ENTRY(D2, "{\"os\":\"linux\",\"architecture\":\"amd64\"}",
              ",\"artifactType\":\"application/vnd.nydus.image.manifest.v1+json\"") "]}";
    assert_int_equal(proto_oci_index_parse(art, strlen(art), NULL, &ix, &err), 0);
    assert_string_equal(pick(&ix, "linux/amd64", PROTO_OCI_SELECT_NYDUS, 0)->digest, D2);
    proto_oci_index_free(&ix);

    /* a manifest is not an index; Docker list */
    const char *man = MAN("");
    assert_int_equal(proto_oci_index_parse(man, strlen(man), NULL, &ix, &err), -EMEDIUMTYPE);
    const char *list = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution."
        "manifest.list.v2+json\",\"manifests\":[{\"mediaType\":\"application/vnd.docker."
        "distribution.manifest.v2+json\",\"digest\":\"" D1 "\",\"size\":7,\"platform\":{\"os\":"
        "\"linux\",\"architecture\":\"amd64\"}}]}";
    assert_int_equal(proto_oci_index_parse(list, strlen(list), NULL, &ix, &err), 0);
    assert_int_equal(ix.docker, 1);
    assert_string_equal(pick(&ix, "linux/amd64", 0, 0)->digest, D1);
    proto_oci_index_free(&ix);
    const char *badplat = "{\"schemaVersion\":2,\"manifests\":["
        ENTRY(D1, "{\"os\":\"linux\"}", "") "]}";
    assert_int_equal(proto_oci_index_parse(badplat, strlen(badplat), NULL, &ix, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "architecture"));
}

static void test_platform(void **state)
{
    (void)state;
    proto_oci_platform p;
    cf_err err = {0};
    char s[64];
    assert_int_equal(proto_oci_platform_parse("linux/arm64/v8", &p, &err), 0);
    proto_oci_platform_str(&p, s, sizeof(s));
    assert_string_equal(s, "linux/arm64/v8");
    assert_int_equal(proto_oci_platform_parse("linux", &p, &err), -EINVAL);
    assert_int_equal(proto_oci_platform_parse("linux/", &p, &err), -EINVAL);
    assert_int_equal(proto_oci_platform_parse("a/b/c/d", &p, &err), -EINVAL);
    assert_int_equal(proto_oci_platform_parse("Linux/amd64", &p, &err), -EINVAL);
    proto_oci_platform_host(&p);
    assert_string_equal(p.os, "linux");
    assert_true(p.arch[0] != '\0');
}

static void test_config(void **state)
{
    (void)state;
    const char *json = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},\"rootfs\":"
                       "{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\",\"" D2 "\"]},\"history\":[]}";
    proto_oci_config c;
    cf_err err = {0};
    assert_int_equal(proto_oci_config_parse(json, strlen(json), &c, &err), 0);
    assert_string_equal(c.platform.os, "linux");
    assert_string_equal(c.platform.arch, "amd64");
    assert_int_equal(c.n_diff_ids, 2);
    assert_string_equal(c.diff_ids[1], D2);
    proto_oci_config_free(&c);
    const char *bad = "{\"rootfs\":{\"diff_ids\":[\"sha256:x\"]}}";
    assert_int_equal(proto_oci_config_parse(bad, strlen(bad), &c, &err), -EBADMSG);
    assert_int_equal(c.n_diff_ids, 0);
    assert_null(c.diff_ids);
    const char *bad2 = "{\"rootfs\":[]}";
    assert_int_equal(proto_oci_config_parse(bad2, strlen(bad2), &c, &err), -EBADMSG);
    const char *empty = "{}";
    assert_int_equal(proto_oci_config_parse(empty, 2, &c, &err), 0);
    assert_int_equal(c.n_diff_ids, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nydus_manifest), cmocka_unit_test(test_nydus_refusals),
        cmocka_unit_test(test_malformed),      cmocka_unit_test(test_kind),
        cmocka_unit_test(test_index),          cmocka_unit_test(test_platform),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
