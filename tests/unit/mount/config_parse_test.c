/* Unit tests for mount_config_parse: the JSON nydus-snapshotter writes (every key of the
 * contract, runtime-contracts.md §1), nydusd's defaults, and each error naming its key. */
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

#include "mount/config.h"

/* What the snapshotter writes for a registry image behind the local peer: every key of its
 * Go structs (config/daemonconfig/{daemonconfig,fuse}.go), including those it always sends
 * (readahead, proxy.fallback, digest_validate, fs_prefetch.enable/prefetch_all). */
static const char full_json[] =
    "{\n"
    "  \"device\": {\n"
    "    \"id\": \"/42\",\n"
    "    \"backend\": {\n"
    "      \"type\": \"registry\",\n"
    "      \"config\": {\n"
    "        \"readahead\": false,\n"
    "        \"readahead_sec\": 10,\n"
    "        \"host\": \"127.0.0.1:5000\",\n"
    "        \"repo\": \"library/busybox\",\n"
    "        \"auth\": \"YWxpY2U6czNjcmV0\",\n"
    "        \"registry_token\": \"tok-123\",\n"
    "        \"blob_url_scheme\": \"http\",\n"
    "        \"blob_redirected_host\": \"blobs.example\",\n"
    "        \"scheme\": \"http\",\n"
    "        \"skip_verify\": true,\n"
    "        \"ca_cert_files\": [\"/etc/ssl/a.pem\", \"/etc/ssl/b.pem\"],\n"
    "        \"proxy\": {\n"
    "          \"url\": \"unix:/run/chunkfly/peer.sock\",\n"
    "          \"fallback\": true,\n"
    "          \"ping_url\": \"http://127.0.0.1:65001/v2/\",\n"
    "          \"check_interval\": 3,\n"
    "          \"use_http\": true\n"
    "        },\n"
    "        \"timeout\": 7,\n"
    "        \"connect_timeout\": 3,\n"
    "        \"retry_limit\": 2\n"
    "      }\n"
    "    },\n"
    "    \"cache\": {\n"
    "      \"type\": \"blobcache\",\n"
    "      \"compressed\": true,\n"
    "      \"config\": {\"work_dir\": \"/var/lib/nydus/cache\", \"disable_indexed_map\": true}\n"
    "    }\n"
    "  },\n"
    "  \"mode\": \"cached\",\n"
    "  \"digest_validate\": true,\n"
    "  \"iostats_files\": true,\n"
    "  \"enable_xattr\": true,\n"
    "  \"access_pattern\": true,\n"
    "  \"latest_read_files\": true,\n"
    "  \"amplify_io\": 524288,\n"
    "  \"fs_prefetch\": {\"enable\": true, \"prefetch_all\": false, \"threads_count\": 4,\n"
    "                  \"merging_size\": 131072, \"bandwidth_rate\": 1048576,\n"
    "                  \"stream_prefetch\": false},\n"
    "  \"warmup\": 1,\n"
    "  \"id_mapping\": [0, 100000, 65536]\n"
    "}\n";

/* The snapshotter with everything at its zero value: omitempty drops most keys, the rest
 * arrive as false/"" (e.g. an empty proxy object with fallback false). */
static const char minimal_json[] =
    "{\"device\":{\"backend\":{\"type\":\"registry\",\"config\":{\"readahead\":false,"
    "\"host\":\"r.example:443\",\"repo\":\"a/b\",\"proxy\":{\"fallback\":false}}},"
    "\"cache\":{\"type\":\"\",\"config\":{\"work_dir\":\"\",\"disable_indexed_map\":false}}},"
    "\"mode\":\"direct\",\"digest_validate\":false,"
    "\"fs_prefetch\":{\"enable\":false,\"prefetch_all\":false}}";

static struct mount_config *parse_ok(const char *json)
{
    struct mount_config *c = NULL;
    cf_err err = {0};
    int rc = mount_config_parse(json, strlen(json), &c, &err);
    if (rc) fail_msg("parse failed (%d): %s", rc, err.msg);
    assert_non_null(c);
    return c;
}

static void test_full(void **state)
{
    (void)state;
    struct mount_config *c = parse_ok(full_json);
    assert_string_equal(c->id, "/42");
    const struct mount_backend_config *b = &c->backend;
    assert_int_equal(b->type, MOUNT_BACKEND_REGISTRY);
    assert_string_equal(b->host, "127.0.0.1:5000");
    assert_string_equal(b->repo, "library/busybox");
    assert_string_equal(b->scheme, "http");
    assert_string_equal(b->auth, "YWxpY2U6czNjcmV0");
    assert_string_equal(b->registry_token, "tok-123");
    assert_true(b->skip_verify);
    assert_string_equal(b->ca_cert_files[0], "/etc/ssl/a.pem");
    assert_string_equal(b->ca_cert_files[1], "/etc/ssl/b.pem");
    assert_null(b->ca_cert_files[2]);
    assert_int_equal(b->timeout_s, 7);
    assert_int_equal(b->connect_timeout_s, 3);
    assert_int_equal(b->retry_limit, 2);
    assert_string_equal(b->proxy.url, "unix:/run/chunkfly/peer.sock");
    assert_true(b->proxy.fallback);
    assert_string_equal(b->proxy.ping_url, "http://127.0.0.1:65001/v2/");
    assert_int_equal(b->proxy.check_interval, 3);
    assert_true(b->proxy.use_http);
    assert_null(b->dir);
    assert_true(c->cache.enabled);
    assert_string_equal(c->cache.work_dir, "/var/lib/nydus/cache");
    assert_true(c->cache.compressed);
    assert_true(c->cache.disable_indexed_map);
    assert_string_equal(c->mode, "cached");
    assert_true(c->digest_validate);
    assert_true(c->iostats_files && c->access_pattern && c->latest_read_files);
    assert_true(c->enable_xattr);
    assert_int_equal(c->amplify_io, 524288);
    assert_true(c->prefetch.enable);
    assert_false(c->prefetch.prefetch_all);
    assert_int_equal(c->prefetch.threads_count, 4);
    assert_int_equal(c->prefetch.merging_size, 131072);
    assert_int_equal(c->prefetch.bandwidth_rate, 1048576);
    assert_true(c->has_id_mapping);
    assert_int_equal(c->id_mapping[1], 100000);
    assert_int_equal(c->id_mapping[2], 65536);
    mount_config_free(c);
}

static void test_defaults(void **state)
{
    (void)state;
    struct mount_config *c = parse_ok(minimal_json);
    const struct mount_backend_config *b = &c->backend;
    assert_int_equal(b->type, MOUNT_BACKEND_REGISTRY);
    assert_string_equal(b->scheme, "https");
    assert_int_equal(b->timeout_s, 5);
    assert_int_equal(b->connect_timeout_s, 5);
    assert_int_equal(b->retry_limit, 0);
    assert_null(b->proxy.url);
    assert_false(b->proxy.fallback); /* as sent */
    assert_int_equal(b->proxy.check_interval, 5);
    assert_null(b->auth);
    assert_null(b->registry_token);
    assert_null(b->ca_cert_files);
    assert_false(c->cache.enabled);
    assert_string_equal(c->cache.work_dir, ".");
    assert_string_equal(c->mode, "direct");
    assert_true(c->enable_xattr);
    assert_int_equal(c->amplify_io, 1 << 20);
    assert_false(c->prefetch.enable);
    assert_int_equal(c->prefetch.threads_count, 8);
    assert_int_equal(c->prefetch.merging_size, 1 << 20);
    assert_false(c->has_id_mapping);
    mount_config_free(c);

    /* proxy absent: nydusd's fallback default (true); fs_prefetch without prefetch_all: true */
    c = parse_ok("{\"device\":{\"backend\":{\"type\":\"registry\",\"config\":{\"host\":\"h\","
                 "\"repo\":\"r\"}}},\"fs_prefetch\":{\"enable\":true}}");
    assert_true(c->backend.proxy.fallback);
    assert_true(c->prefetch.prefetch_all);
    assert_null(c->id);
    mount_config_free(c);

    /* "" is "not given" for every string, enumerated ones included */
    c = parse_ok("{\"mode\":\"\",\"device\":{\"backend\":{\"type\":\"registry\",\"config\":"
                 "{\"host\":\"h\",\"repo\":\"r\",\"scheme\":\"\",\"auth\":\"\"}}}}");
    assert_string_equal(c->backend.scheme, "https");
    assert_string_equal(c->mode, "direct");
    assert_null(c->backend.auth);
    mount_config_free(c);
}

/* The localfs template nydus-snapshotter ships (misc/snapshotter/nydusd-config-localfs.json). */
static void test_localfs(void **state)
{
    (void)state;
    struct mount_config *c = parse_ok(
        "{\"device\":{\"backend\":{\"type\":\"localfs\",\"config\":{\"dir\":"
        "\"/var/lib/containerd/io.containerd.snapshotter.v1.nydus/cache/\"}},\"cache\":{\"type\":"
        "\"blobcache\"}},\"mode\":\"direct\",\"digest_validate\":false,\"iostats_files\":false,"
        "\"enable_xattr\":true,\"amplify_io\":1048576,\"fs_prefetch\":{\"enable\":true,"
        "\"threads_count\":2}}");
    assert_int_equal(c->backend.type, MOUNT_BACKEND_LOCALFS);
    assert_string_equal(c->backend.dir,
                        "/var/lib/containerd/io.containerd.snapshotter.v1.nydus/cache/");
    assert_true(c->cache.enabled);
    assert_int_equal(c->prefetch.threads_count, 2);
    mount_config_free(c);

    c = parse_ok("{\"device\":{\"backend\":{\"type\":\"localfs\",\"config\":{\"blob_file\":"
                 "\"/b/x\",\"alt_dirs\":[\"/a1\",\"/a2\"],\"dir\":\"/d\"}}}}");
    assert_string_equal(c->backend.blob_file, "/b/x");
    assert_string_equal(c->backend.alt_dirs[0], "/a1");
    assert_string_equal(c->backend.alt_dirs[1], "/a2");
    assert_null(c->backend.alt_dirs[2]);
    mount_config_free(c);
}

/* `json` fails with `code` and a message containing `needle`. */
static void expect_err(const char *json, int code, const char *needle)
{
    struct mount_config *c = (struct mount_config *)1;
    cf_err err = {0};
    int rc = mount_config_parse(json, strlen(json), &c, &err);
    if (rc != code) fail_msg("%s: rc %d (%s), want %d", json, rc, err.msg, code);
    assert_null(c);
    if (!strstr(err.msg, needle)) fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

#define REG(cfg) "{\"device\":{\"backend\":{\"type\":\"registry\",\"config\":{" cfg "}}}}"

static void test_errors(void **state)
{
    (void)state;
    /* unknown keys, at each level, with the JSON path */
    expect_err(REG("\"hots\":\"h\""), -EINVAL, "device.backend.config.hots: unknown key");
    expect_err("{\"devic\":{}}", -EINVAL, "devic: unknown key");
    expect_err(REG("\"proxy\":{\"uri\":\"x\"}"), -EINVAL,
               "device.backend.config.proxy.uri: unknown key");
    expect_err("{\"device\":{\"backend\":{\"type\":\"localfs\"},\"cache\":{\"config\":{\"workdir\""
               ":\"/x\"}}}}",
               -EINVAL, "device.cache.config.workdir: unknown key");
    expect_err("{\"device\":{\"backend\":{\"type\":\"localfs\",\"config\":{\"dir\":\"/d\"},"
               "\"x\":1}}}",
               -EINVAL, "device.backend.x: unknown key");
    expect_err("{\"fs_prefetch\":{\"threads\":1},\"device\":{}}", -EINVAL,
               "fs_prefetch.threads: unknown key");
    /* control bytes in a key are not echoed raw */
    expect_err("{\"a\\u0001b\":1}", -EINVAL, "a?b: unknown key");
    /* wrong types */
    expect_err(REG("\"timeout\":\"5\""), -EINVAL,
               "device.backend.config.timeout must be an integer, not a string");
    expect_err(REG("\"timeout\":5.5"), -EINVAL, "timeout must be an integer");
    expect_err(REG("\"skip_verify\":1"), -EINVAL, "skip_verify must be true or false");
    expect_err(REG("\"ca_cert_files\":\"/a\""), -EINVAL, "ca_cert_files must be an array");
    expect_err(REG("\"ca_cert_files\":[1]"), -EINVAL, "ca_cert_files[0] must be a string");
    expect_err(REG("\"proxy\":\"unix:/x\""), -EINVAL, "proxy must be an object");
    expect_err("{\"device\":{\"backend\":\"registry\"}}", -EINVAL,
               "device.backend must be an object");
    expect_err("{\"device\":{\"backend\":{\"type\":\"localfs\"}},\"amplify_io\":true}", -EINVAL,
               "amplify_io must be an integer, not a boolean");
    /* impossible values */
    expect_err(REG("\"retry_limit\":300"), -EINVAL, "retry_limit = 300 is out of range");
    expect_err(REG("\"timeout\":-1"), -EINVAL, "timeout = -1 is out of range");
    expect_err(REG("\"scheme\":\"ftp\""), -EINVAL, "scheme = \"ftp\" is not valid");
    expect_err(REG("\"host\":\"http://r:5000\""), -EINVAL, "device.backend.config.host");
    expect_err(REG("\"repo\":\"Bad Repo\""), -EINVAL, "device.backend.config.repo");
    expect_err(REG("\"proxy\":{\"url\":\"127.0.0.1:65001\"}"), -EINVAL,
               "device.backend.config.proxy.url");
    expect_err(REG("\"proxy\":{\"url\":\"unix:relative.sock\"}"), -EINVAL, "proxy.url");
    expect_err(REG("\"proxy\":{\"ping_url\":\"/v2/\"}"), -EINVAL, "proxy.ping_url");
    expect_err("{\"mode\":\"fast\",\"device\":{}}", -EINVAL, "mode = \"fast\" is not valid");
    expect_err("{\"id_mapping\":[1,2],\"device\":{}}", -EINVAL, "id_mapping");
    expect_err("{\"device\":{\"backend\":{\"type\":\"ipfs\"}}}", -EINVAL,
               "device.backend.type = \"ipfs\"");
    expect_err("{\"device\":{\"backend\":{\"type\":\"localfs\"},\"cache\":{\"type\":\"ram\"}}}",
               -EINVAL, "device.cache.type");
    /* missing essentials */
    expect_err("{}", -EINVAL, "device is missing");
    expect_err("{\"device\":{}}", -EINVAL, "device.backend is missing");
    expect_err("{\"device\":{\"backend\":{}}}", -EINVAL, "device.backend.type is missing");
    /* not served by us */
    expect_err("{\"device\":{\"backend\":{\"type\":\"oss\",\"config\":{\"endpoint\":\"e\","
               "\"access_key_id\":\"k\",\"access_key_secret\":\"s\",\"bucket_name\":\"b\","
               "\"object_prefix\":\"p\"}}}}",
               -ENOTSUP, "\"oss\" is not supported");
    expect_err("{\"device\":{\"backend\":{\"type\":\"s3\",\"config\":{\"region\":\"r\"}}}}",
               -ENOTSUP, "\"s3\" is not supported");
    expect_err("{\"device\":{\"backend\":{\"type\":\"localfs\"},\"cache\":{\"type\":\"fscache\"}}}",
               -ENOTSUP, "fscache");
    expect_err("{\"device\":{\"backend\":{\"type\":\"localfs\"},\"cache\":{\"type\":\"blobcache\","
               "\"config\":{\"enable_encryption\":true}}}}",
               -ENOTSUP, "encrypted cache");
    expect_err("{\"version\":2,\"backend\":{}}", -ENOTSUP, "v1 config");
    /* not JSON, not an object, duplicates */
    expect_err("{\"device\":\n  {,}}", -EBADMSG, "line 2");
    expect_err("", -EBADMSG, "not valid JSON");
    expect_err("[1]", -EINVAL, "top level must be a JSON object");
    expect_err("{\"mode\":\"direct\",\"mode\":\"cached\"}", -EBADMSG, "duplicate");
}

static void test_load(void **state)
{
    (void)state;
    char path[] = "/tmp/cf_config_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, full_json, strlen(full_json)), (ssize_t)strlen(full_json));
    close(fd);
    struct mount_config *c = NULL;
    cf_err err = {0};
    assert_int_equal(mount_config_load(path, &c, &err), 0);
    assert_string_equal(c->backend.repo, "library/busybox");
    mount_config_free(c);
    /* a bad file names the file */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"x\":1}", 7), 7);
    close(fd);
    assert_int_equal(mount_config_load(path, &c, &err), -EINVAL);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "x: unknown key"));
    unlink(path);
    assert_int_equal(mount_config_load(path, &c, &err), -ENOENT);
    assert_non_null(strstr(err.msg, path));
    mount_config_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),    cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_localfs), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
