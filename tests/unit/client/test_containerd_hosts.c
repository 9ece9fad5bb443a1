/* Unit tests for client/containerd_hosts.c: registry hosts and mirror URLs, the hosts.toml
 * text, the marker, and the reading of containerd's config for config_path. The file
 * operations are covered by tests/integration/client/init_containerd.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "client/containerd_hosts.h"

static void reg_ok(const char *arg, const char *dir, const char *server, const char *upstream)
{
    client_hosts_registry r;
    cf_err err = {0};
    int rc = client_hosts_registry_parse(arg, &r, &err);
    if (rc) fail_msg("%s: %s", arg, err.msg);
    assert_string_equal(r.dir, dir);
    assert_string_equal(r.server, server);
    assert_string_equal(r.upstream, upstream);
}

static void test_registry_good(void **state)
{
    (void)state;
    reg_ok("docker.io", "docker.io", "https://registry-1.docker.io", "docker.io");
    reg_ok("index.docker.io", "docker.io", "https://registry-1.docker.io", "docker.io");
    reg_ok("ghcr.io", "ghcr.io", "https://ghcr.io", "ghcr.io");
    reg_ok("10.0.0.5:5000", "10.0.0.5:5000", "https://10.0.0.5:5000", "10.0.0.5:5000");
    reg_ok("http://10.0.0.5:5000", "10.0.0.5:5000", "http://10.0.0.5:5000", "http://10.0.0.5:5000");
    reg_ok("127.0.0.9:5000", "127.0.0.9:5000", "http://127.0.0.9:5000", "127.0.0.9:5000");
    reg_ok("https://127.0.0.9:5000", "127.0.0.9:5000", "https://127.0.0.9:5000",
           "https://127.0.0.9:5000");
    reg_ok("localhost:5000", "localhost:5000", "http://localhost:5000", "localhost:5000");
    reg_ok("[::1]:5000", "[::1]:5000", "http://[::1]:5000", "[::1]:5000");
    reg_ok("[fd00::1]:5000", "[fd00::1]:5000", "https://[fd00::1]:5000", "[fd00::1]:5000");
    reg_ok("127.example.com", "127.example.com", "https://127.example.com", "127.example.com");
    reg_ok("a-b.c-d.example", "a-b.c-d.example", "https://a-b.c-d.example", "a-b.c-d.example");
    reg_ok("myregistry", "myregistry", "https://myregistry", "myregistry");
}

static void test_registry_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "..",
        ".",
        "../x",
        "a/b",
        "/etc",
        "a b",
        "a\"b",
        "a\\b",
        "a\nb",
        "_default",
        "a..b",
        ".a",
        "a.",
        "-a",
        "a-",
        "a.-b",
        "h:",
        "h:0",
        "h:65536",
        "h:123456",
        "h:1a",
        "[",
        "[]",
        "[::1",
        "[g::1]",
        "[::1]x",
        "http://",
        "https://../",
        "ftp://x",
        "a_b",
        "x:5000/y",
        "a@b",
        "h:5000:1",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
        NULL};
    for (int i = 0; bad[i]; i++) {
        client_hosts_registry r;
        cf_err err = {0};
        if (client_hosts_registry_parse(bad[i], &r, &err) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_true(err.msg[0] != 0);
    }
    client_hosts_registry r;
    assert_int_equal(client_hosts_registry_parse(NULL, &r, NULL), -EINVAL);
}

static void test_mirror(void **state)
{
    (void)state;
    char out[320];
    cf_err err = {0};
    assert_int_equal(client_hosts_mirror_parse("http://127.0.0.1:65001", out, sizeof(out), &err),
                     0);
    assert_string_equal(out, "http://127.0.0.1:65001");
    assert_int_equal(client_hosts_mirror_parse("127.0.0.11:5555/", out, sizeof(out), &err), 0);
    assert_string_equal(out, "http://127.0.0.11:5555");
    assert_int_equal(client_hosts_mirror_parse("https://mirror.local", out, sizeof(out), &err), 0);
    assert_string_equal(out, "https://mirror.local");
    static const char *const bad[] = {"",
                                      "http://",
                                      "http://h:1/v2",
                                      "http://h:1//",
                                      "ftp://h",
                                      "http://u@h:1",
                                      "http://h:1?x",
                                      "http://h:1#x",
                                      "http://a\"b",
                                      "http://h:0",
                                      NULL};
    for (int i = 0; bad[i]; i++)
        if (client_hosts_mirror_parse(bad[i], out, sizeof(out), &err) != -EINVAL)
            fail_msg("accepted mirror \"%s\"", bad[i]);
    assert_int_equal(client_hosts_mirror_parse("http://h:1", out, 8, &err), -ENAMETOOLONG);
}

static void test_render_and_marker(void **state)
{
    (void)state;
    client_hosts_registry r;
    assert_int_equal(client_hosts_registry_parse("docker.io", &r, NULL), 0);
    char *t = NULL;
    assert_int_equal(client_hosts_render(&r, "http://127.0.0.1:65001", &t, NULL), 0);
    assert_true(strncmp(t, CLIENT_HOSTS_MARKER, strlen(CLIENT_HOSTS_MARKER)) == 0);
    assert_non_null(strstr(t, "\nserver = \"https://registry-1.docker.io\"\n"));
    assert_non_null(strstr(t, "\n[host.\"http://127.0.0.1:65001\"]\n"
                              "  capabilities = [\"pull\", \"resolve\"]\n"));
    /* TOML: the top-level server key must come before the first table */
    assert_true(strstr(t, "server =") < strstr(t, "[host."));
    assert_int_equal(client_hosts_is_ours(t, strlen(t)), 1);
    free(t);

    client_hosts_registry_all(&r);
    assert_string_equal(r.dir, "_default");
    assert_int_equal(client_hosts_render(&r, "http://10.0.0.1:65001", &t, NULL), 0);
    assert_null(strstr(t, "server"));
    assert_non_null(strstr(t, "[host.\"http://10.0.0.1:65001\"]"));
    free(t);

    static const char ours_later[] = "# my notes\n" CLIENT_HOSTS_MARKER " (x)\nserver = \"a\"\n";
    assert_int_equal(client_hosts_is_ours(ours_later, strlen(ours_later)), 1);
    static const char indented[] = "  " CLIENT_HOSTS_MARKER "\n";
    assert_int_equal(client_hosts_is_ours(indented, strlen(indented)), 0);
    static const char cut[] = "# chunkfly: written by";
    assert_int_equal(client_hosts_is_ours(cut, strlen(cut)), 0);
    assert_int_equal(client_hosts_is_ours("", 0), 0);
}

static client_hosts_cfg cfg(const char *text, const char *dir)
{
    client_hosts_cfg c;
    client_hosts_config_check(text, strlen(text), dir, &c);
    return c;
}

static void test_config_check(void **state)
{
    (void)state;
    const char *d = "/etc/containerd/certs.d";
    client_hosts_cfg c = cfg("", d);
    assert_int_equal(c.state, CLIENT_HOSTS_CFG_MISSING);
    assert_int_equal(c.needs_version, 1);
    assert_string_equal(c.table, "plugins.\"io.containerd.grpc.v1.cri\".registry");

    c = cfg("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
            "  config_path = \"/etc/containerd/certs.d/\"\n",
            d);
    assert_int_equal(c.state, CLIENT_HOSTS_CFG_OK);
    assert_int_equal(c.version, 2);
    assert_int_equal(c.needs_version, 0);

    c = cfg("version = 2\r\n[plugins]\r\n  [plugins.\"io.containerd.grpc.v1.cri\".registry]\r\n"
            "    config_path = '/x:/etc/containerd/certs.d' # comment\r\n",
            d);
    assert_int_equal(c.state, CLIENT_HOSTS_CFG_OK);

    c = cfg("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
            "  config_path = \"/etc/docker/certs.d\"\n"
            "  [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n"
            "    endpoint = [\"https://m\"]\n",
            d);
    assert_int_equal(c.state, CLIENT_HOSTS_CFG_OTHER);
    assert_string_equal(c.value, "/etc/docker/certs.d");
    assert_int_equal(c.has_mirrors, 1);

    /* config_path in a table that is not the CRI registry's does not count */
    c = cfg("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
            "  config_path = \"/etc/containerd/certs.d\"\n[other.registry]\n"
            "  config_path = \"/etc/containerd/certs.d\"\n",
            d);
    assert_int_equal(c.state, CLIENT_HOSTS_CFG_MISSING);
    assert_int_equal(c.needs_version, 0);
    /* commented out */
    c = cfg("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
            "  # config_path = \"/etc/containerd/certs.d\"\n",
            d);
    assert_int_equal(c.state, CLIENT_HOSTS_CFG_MISSING);

    /* version 1 (no version line) names the plugin "cri"; dotted keys */
    c = cfg("[plugins.cri]\n  sandbox_image = \"x\"\n", d);
    assert_int_equal(c.state, CLIENT_HOSTS_CFG_MISSING);
    assert_int_equal(c.version, 1);
    assert_string_equal(c.table, "plugins.cri.registry");
    c = cfg("plugins.cri.registry.config_path = \"/etc/containerd/certs.d\"\n", d);
    assert_int_equal(c.state, CLIENT_HOSTS_CFG_OK);

    c = cfg("version = 3\n", d);
    assert_int_equal(c.version, 3);
    assert_string_equal(c.table, "plugins.\"io.containerd.cri.v1.images\".registry");

    /* junk never crashes and finds nothing */
    static const char junk[] = "[\n]\n=\n[[[\nconfig_path\n\"\n'\0\xff]]]=\"";
    client_hosts_cfg j;
    client_hosts_config_check(junk, sizeof(junk) - 1, d, &j);
    assert_int_equal(j.state, CLIENT_HOSTS_CFG_MISSING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_good), cmocka_unit_test(test_registry_bad),
        cmocka_unit_test(test_mirror),        cmocka_unit_test(test_render_and_marker),
        cmocka_unit_test(test_config_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
