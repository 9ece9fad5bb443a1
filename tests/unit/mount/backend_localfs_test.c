/* Unit tests for the localfs backend through the dispatcher (mount/backend.h): <dir>/<id>,
 * alt_dirs in order, blob_file, ranged reads and sizes, counters, and the errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "mount/backend.h"

#define ID_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ID_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define ID_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static char root[64], d1[80], d2[80], d3[80];

static void put(const char *dir, const char *name, const char *data)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(data, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/cf_localfs_XXXXXX");
    if (!mkdtemp(root)) return -1;
    snprintf(d1, sizeof(d1), "%s/d1", root);
    snprintf(d2, sizeof(d2), "%s/d2", root);
    snprintf(d3, sizeof(d3), "%s/d3", root);
    mkdir(d1, 0755);
    mkdir(d2, 0755);
    mkdir(d3, 0755);
    put(d1, ID_A, "hello, blob A");
    put(d2, ID_A, "shadowed copy");
    put(d3, ID_B, "blob B in the second alt dir");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : -1;
}

static mount_backend *new_backend(char *dir, char **alt, char *blob_file)
{
    struct mount_backend_config cfg = {
        .type = MOUNT_BACKEND_LOCALFS, .dir = dir, .alt_dirs = alt, .blob_file = blob_file};
    mount_backend *b = NULL;
    cf_err err = {0};
    int rc = mount_backend_new(&cfg, &b, &err);
    if (rc) fail_msg("mount_backend_new: %d %s", rc, err.msg);
    return b;
}

static void test_dirs(void **state)
{
    (void)state;
    char *alt[] = {d2, d3, NULL};
    mount_backend *b = new_backend(d1, alt, NULL);
    rafs_blob_source *s = NULL;
    cf_err err = {0};
    char buf[64];

    /* <dir>/<id> wins over the alt_dirs */
    assert_int_equal(mount_backend_open_blob(b, ID_A, 13, &s, &err), 0);
    uint64_t size = 0;
    assert_int_equal(rafs_blob_source_size(s, &size), 0);
    assert_int_equal(size, 13);
    assert_int_equal(rafs_blob_source_pread(s, buf, 5, 7), 5);
    assert_memory_equal(buf, "blob ", 5);
    /* a short count only at the end, 0 past it */
    assert_int_equal(rafs_blob_source_pread(s, buf, 64, 10), 3);
    assert_int_equal(rafs_blob_source_pread(s, buf, 64, 13), 0);
    rafs_blob_source_close(s);

    /* found in the second alt dir */
    assert_int_equal(mount_backend_open_blob(b, ID_B, 0, &s, &err), 0);
    assert_int_equal(rafs_blob_source_read_full(s, buf, 6, 0), 0);
    assert_memory_equal(buf, "blob B", 6);
    rafs_blob_source_close(s);

    struct mount_backend_stats st;
    mount_backend_stats(b, &st);
    assert_int_equal(st.bytes_from_localfs, 5 + 3 + 6);
    assert_int_equal(st.bytes_from_registry, 0);
    assert_int_equal(st.requests, 4);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.proxy_healthy, -1);

    /* errors name the blob and where it was looked for */
    assert_int_equal(mount_backend_open_blob(b, ID_C, 0, &s, &err), -ENOENT);
    assert_null(s);
    assert_non_null(strstr(err.msg, ID_C));
    assert_non_null(strstr(err.msg, "2 alt_dirs"));
    assert_int_equal(mount_backend_open_blob(b, "../../etc/passwd", 0, &s, &err), -EINVAL);
    assert_int_equal(mount_backend_open_blob(b, ID_A "0", 0, &s, &err), -EINVAL);
    assert_int_equal(
        mount_backend_open_blob(
            b, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0, &s, &err),
        -EINVAL);
    /* a copy shorter than the blob table says */
    assert_int_equal(mount_backend_open_blob(b, ID_A, 14, &s, &err), -EIO);
    assert_non_null(strstr(err.msg, "truncated"));
    /* credentials make no sense here */
    assert_int_equal(mount_backend_set_auth(b, "YTpi", &err), -EINVAL);
    mount_backend_free(b);
}

static void test_blob_file(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", d3, ID_B);
    mount_backend *b = new_backend(NULL, NULL, path);
    rafs_blob_source *s = NULL;
    cf_err err = {0};
    char buf[8];
    /* nydusd's blob_file serves whatever id is asked */
    assert_int_equal(mount_backend_open_blob(b, ID_C, 0, &s, &err), 0);
    assert_int_equal(rafs_blob_source_read_full(s, buf, 6, 0), 0);
    assert_memory_equal(buf, "blob B", 6);
    rafs_blob_source_close(s);
    mount_backend_free(b);

    snprintf(path, sizeof(path), "%s/missing", root);
    b = new_backend(NULL, NULL, path);
    assert_int_equal(mount_backend_open_blob(b, ID_A, 0, &s, &err), -ENOENT);
    assert_non_null(strstr(err.msg, path));
    mount_backend_free(b);

    /* neither dir nor blob_file */
    struct mount_backend_config cfg = {.type = MOUNT_BACKEND_LOCALFS};
    assert_int_equal(mount_backend_new(&cfg, &b, &err), -EINVAL);
    assert_null(b);
    assert_non_null(strstr(err.msg, "dir"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dirs),
        cmocka_unit_test(test_blob_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
