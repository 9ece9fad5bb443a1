/* Blob sources (rafs/blob_source.h): the memory and local-file sources (reads, EOF, sizes,
 * ownership of buffers and fds, errors naming the path), the checked helpers, and a source of
 * our own whose errors reach the reader's callers unchanged. No fixtures needed. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cf/digest.h"
#include "cf/file_io.h"
#include "rafs/blob.h"
#include "rafs/blob_source.h"

static uint8_t pattern[10000];

static void fill_pattern(void)
{
    for (size_t i = 0; i < sizeof(pattern); i++) pattern[i] = (uint8_t)(i * 7 + i / 251);
}

/* What every source must do with the pattern as its content. */
static void check_reads(const rafs_blob_source *src)
{
    uint8_t buf[600];
    uint64_t size = 1;
    assert_int_equal(rafs_blob_source_size(src, &size), 0);
    assert_int_equal(size, sizeof(pattern));
    assert_int_equal(rafs_blob_source_pread(src, buf, 600, 0), 600);
    assert_memory_equal(buf, pattern, 600);
    assert_int_equal(rafs_blob_source_pread(src, buf, 600, 4321), 600);
    assert_memory_equal(buf, pattern + 4321, 600);
    /* short only at the end; 0 at and past the end */
    assert_int_equal(rafs_blob_source_pread(src, buf, 600, sizeof(pattern) - 100), 100);
    assert_memory_equal(buf, pattern + sizeof(pattern) - 100, 100);
    assert_int_equal(rafs_blob_source_pread(src, buf, 600, sizeof(pattern)), 0);
    assert_int_equal(rafs_blob_source_pread(src, buf, 600, UINT64_MAX - 10), 0);
    assert_int_equal(rafs_blob_source_pread(src, buf, 600, (uint64_t)INT64_MAX - 10), 0);
    assert_int_equal(rafs_blob_source_pread(src, buf, 0, 5), 0);
    /* read_full: exact or -ENODATA */
    assert_int_equal(rafs_blob_source_read_full(src, buf, 512, sizeof(pattern) - 512), 0);
    assert_memory_equal(buf, pattern + sizeof(pattern) - 512, 512);
    assert_int_equal(rafs_blob_source_read_full(src, buf, 512, sizeof(pattern) - 511), -ENODATA);
    assert_int_equal(rafs_blob_source_read_full(src, buf, 1, sizeof(pattern)), -ENODATA);
    assert_int_equal(rafs_blob_source_read_full(src, buf, 0, sizeof(pattern) + 9), 0);
}

static void test_mem_source(void **state)
{
    (void)state;
    rafs_blob_source *src;
    assert_int_equal(rafs_blob_source_from_mem(pattern, sizeof(pattern), false, &src, NULL), 0);
    check_reads(src);
    rafs_blob_source_close(src);
    /* owned: close frees the buffer (ASan's leak check would see it otherwise) */
    uint8_t *copy = malloc(sizeof(pattern));
    assert_non_null(copy);
    memcpy(copy, pattern, sizeof(pattern));
    assert_int_equal(rafs_blob_source_from_mem(copy, sizeof(pattern), true, &src, NULL), 0);
    check_reads(src);
    rafs_blob_source_close(src);
    /* empty */
    uint64_t size = 1;
    uint8_t b;
    assert_int_equal(rafs_blob_source_from_mem(NULL, 0, false, &src, NULL), 0);
    assert_int_equal(rafs_blob_source_size(src, &size), 0);
    assert_int_equal(size, 0);
    assert_int_equal(rafs_blob_source_pread(src, &b, 1, 0), 0);
    rafs_blob_source_close(src);
    cf_err err = {0};
    assert_int_equal(rafs_blob_source_from_mem(NULL, 1, false, &src, &err), -EINVAL);
    assert_true(err.msg[0] != 0);
    rafs_blob_source_close(NULL); /* NULL-safe */
}

static int pattern_memfd(void)
{
    int fd = memfd_create("blob", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(cf_write_full(fd, pattern, sizeof(pattern)), 0);
    return fd;
}

static void test_fd_source(void **state)
{
    (void)state;
    rafs_blob_source *src;
    cf_err err = {0};
    /* borrowed fd: still open after close */
    int fd = pattern_memfd();
    assert_int_equal(rafs_blob_source_from_fd(fd, false, &src, &err), 0);
    check_reads(src);
    /* the size is the file's size now */
    assert_int_equal(ftruncate(fd, 1000), 0);
    uint64_t size;
    assert_int_equal(rafs_blob_source_size(src, &size), 0);
    assert_int_equal(size, 1000);
    uint8_t buf[64];
    assert_int_equal(rafs_blob_source_pread(src, buf, 64, 990), 10);
    rafs_blob_source_close(src);
    assert_true(fcntl(fd, F_GETFD) >= 0);
    /* owned fd: closed by close (fd numbers may be reused, so check right away) */
    assert_int_equal(rafs_blob_source_from_fd(fd, true, &src, &err), 0);
    rafs_blob_source_close(src);
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    /* not a regular file: refused, the fd stays the caller's */
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(rafs_blob_source_from_fd(p[0], true, &src, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_true(fcntl(p[0], F_GETFD) >= 0);
    close(p[0]);
    close(p[1]);
    assert_int_equal(rafs_blob_source_from_fd(-1, false, &src, &err), -EBADF);
}

static void test_open_path(void **state)
{
    (void)state;
    char dir[] = "/tmp/cf_blob_srcXXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/blob", dir);
    assert_int_equal(cf_write_file_atomic(path, pattern, sizeof(pattern), 0600, NULL), 0);
    rafs_blob_source *src;
    cf_err err = {0};
    assert_int_equal(rafs_blob_source_open_path(path, &src, &err), 0);
    check_reads(src);
    rafs_blob_source_close(src);
    /* errors name the path */
    assert_int_equal(rafs_blob_source_open_path(dir, &src, &err), -EINVAL);
    assert_non_null(strstr(err.msg, dir));
    assert_non_null(strstr(err.msg, "not a regular file"));
    unlink(path);
    assert_int_equal(rafs_blob_source_open_path(path, &src, &err), -ENOENT);
    assert_non_null(strstr(err.msg, path));
    rmdir(dir);
}

/* A source of our own: serves `data` but fails every read at or past `fail_at` with `code`,
 * or (liar) claims to have read more than asked. Counts reads. */
struct test_src {
    const uint8_t *data;
    size_t len;
    uint64_t fail_at;
    int code;
    int liar;
    int reads;
};

static ssize_t t_pread(const rafs_blob_source *src, void *buf, size_t len, uint64_t off)
{
    struct test_src *t = src->ctx;
    t->reads++;
    if (t->liar) return (ssize_t)len + 1;
    if (off + len > t->fail_at) return t->code;
    if (off >= t->len) return 0;
    size_t n = t->len - off < len ? t->len - off : len;
    memcpy(buf, t->data + off, n);
    return (ssize_t)n;
}

static int t_size(const rafs_blob_source *src, uint64_t *out)
{
    struct test_src *t = src->ctx;
    if (t->code == -EHOSTUNREACH) return t->code; /* size itself unknown */
    *out = t->len;
    return 0;
}

static const struct rafs_blob_source_ops t_ops = {t_pread, t_size, NULL};

static void test_custom_source_errors(void **state)
{
    (void)state;
    /* one uncompressed chunk with its SHA-256, at offset 100 of the blob */
    struct rafs_chunk_ref ref = {.blob_id = "b",
                                 .ci_index = 3,
                                 .compressed_offset = 100,
                                 .compressed_size = 4096,
                                 .uncompressed_size = 4096,
                                 .has_digest = 1};
    assert_int_equal(cf_sha256(pattern + 100, 4096, ref.digest), 0);
    struct test_src t = {.data = pattern, .len = sizeof(pattern), .fail_at = UINT64_MAX};
    struct rafs_blob_source src = {&t_ops, &t};
    uint8_t out[4096];
    cf_err err = {0};
    assert_int_equal(rafs_chunk_read(&src, &ref, RAFS_COMP_NONE, RAFS_DIGEST_SHA256, out, &err), 0);
    assert_memory_equal(out, pattern + 100, 4096);
    assert_int_equal(t.reads, 1); /* one ranged read per chunk */
    /* the source's errno reaches the caller, with the chunk named */
    t.fail_at = 0;
    t.code = -ETIMEDOUT;
    assert_int_equal(rafs_chunk_read(&src, &ref, RAFS_COMP_NONE, RAFS_DIGEST_SHA256, out, &err),
                     -ETIMEDOUT);
    assert_non_null(strstr(err.msg, "chunk 3 of blob b"));
    struct rafs_blob_toc toc;
    assert_int_equal(rafs_blob_toc_read(&src, &toc, &err), -ETIMEDOUT);
    assert_non_null(strstr(err.msg, "blob tail"));
    /* a blob that ends early: -ENODATA, "too short" */
    t.fail_at = UINT64_MAX;
    t.len = 2000;
    assert_int_equal(rafs_chunk_read(&src, &ref, RAFS_COMP_NONE, RAFS_DIGEST_SHA256, out, &err),
                     -ENODATA);
    assert_non_null(strstr(err.msg, "too short"));
    /* a size the source cannot tell */
    t.code = -EHOSTUNREACH;
    assert_int_equal(rafs_blob_toc_read(&src, &toc, &err), -EHOSTUNREACH);
    assert_int_equal(rafs_blob_tar_verify(&src, NULL, &err), -EHOSTUNREACH);
    struct rafs_blob_info bi = {.ci_offset = 0, .ci_compressed_size = 16};
    strcpy(bi.id, "b");
    struct rafs_blob_meta *m = NULL;
    assert_int_equal(rafs_blob_meta_load(&src, &bi, &m, &err), -EHOSTUNREACH);
    assert_non_null(strstr(err.msg, "blob b"));
    /* an implementation that returns more than asked is an I/O error, not a buffer overrun */
    t.liar = 1;
    assert_int_equal(rafs_blob_source_pread(&src, out, 10, 0), -EIO);
    assert_int_equal(rafs_chunk_read(&src, &ref, RAFS_COMP_NONE, RAFS_DIGEST_SHA256, out, &err),
                     -EIO);
    rafs_blob_source_close(&src); /* ops->close NULL: nothing to release */
}

int main(void)
{
    fill_pattern();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mem_source),
        cmocka_unit_test(test_fd_source),
        cmocka_unit_test(test_open_path),
        cmocka_unit_test(test_custom_source_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
