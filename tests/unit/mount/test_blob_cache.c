/* The chunk cache of chunkfly-mount (mount/blob_cache.h) over an image built here with
 * rafs_create (4 KiB chunks, zstd): reads equal the source, a second cache over the same
 * work_dir never touches the backend, adjacent chunks are merged up to amplify_io, independent
 * runs are fetched concurrently, one chunk wanted by 8 threads is fetched once, a corrupt chunk
 * is EIO + not cached + fetched again on retry, and kill -9 at random moments never leaves a
 * ready bit over wrong data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cf/file_io.h"
#include "cf/log.h"
#include "mount/blob_cache.h"
#include "rafs/blob.h"
#include "rafs/builder.h"

#define CS 4096u

static char base[256], blob_path[512];
static rafs_image *img;
static const struct rafs_blob_info *bi;
static uint8_t *content_a, *content_c;
#define LEN_A 40000u /* 10 chunks of random data (stored raw) */
#define LEN_C 30000u /* text: compressed chunks */

/* ---- a backend that counts, delays and can be pointed at another file ---------------------- */
struct tsrc {
    rafs_blob_source base;
    rafs_blob_source *inner;
    struct tctx *ctx;
};
struct tctx {
    const char *path;
    int delay_ms;
    int reads, opens; /* atomic */
};

static ssize_t tsrc_pread(const rafs_blob_source *s, void *buf, size_t len, uint64_t off)
{
    struct tsrc *t = s->ctx;
    __atomic_add_fetch(&t->ctx->reads, 1, __ATOMIC_SEQ_CST);
    if (t->ctx->delay_ms) usleep((useconds_t)t->ctx->delay_ms * 1000);
    return rafs_blob_source_pread(t->inner, buf, len, off);
}
static int tsrc_size(const rafs_blob_source *s, uint64_t *out)
{
    struct tsrc *t = s->ctx;
    return rafs_blob_source_size(t->inner, out);
}
static void tsrc_close(rafs_blob_source *s)
{
    struct tsrc *t = s->ctx;
    rafs_blob_source_close(t->inner);
    free(t);
}
static const struct rafs_blob_source_ops tsrc_ops = {tsrc_pread, tsrc_size, tsrc_close};

static int open_fn(void *vctx, const struct rafs_blob_info *b, rafs_blob_source **out, cf_err *err)
{
    (void)b;
    struct tctx *ctx = vctx;
    struct tsrc *t = calloc(1, sizeof(*t));
    if (!t) return -ENOMEM;
    int rc = rafs_blob_source_open_path(ctx->path, &t->inner, err);
    if (rc) {
        free(t);
        return rc;
    }
    t->ctx = ctx;
    t->base.ops = &tsrc_ops;
    t->base.ctx = t;
    __atomic_add_fetch(&ctx->opens, 1, __ATOMIC_SEQ_CST);
    *out = &t->base;
    return 0;
}

static mount_blob_cache *new_cache(const char *wd_name, struct tctx *ctx, uint64_t amplify)
{
    char wd[512];
    snprintf(wd, sizeof(wd), "%s/%s", base, wd_name);
    struct mount_blob_cache_opts o = {
        .work_dir = wd, .amplify_io = amplify, .open_blob = open_fn, .open_ctx = ctx};
    mount_blob_cache *c = NULL;
    cf_err err = {0};
    int rc = mount_blob_cache_new(img, &o, &c, &err);
    if (rc) fprintf(stderr, "mount_blob_cache_new: %s\n", err.msg);
    assert_int_equal(rc, 0);
    return c;
}

static uint64_t nid_of(const char *path)
{
    uint64_t nid;
    assert_int_equal(rafs_lookup(img, path, &nid, NULL), 0);
    return nid;
}

static void write_file(const char *name, const void *data, size_t len)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/src/%s", base, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(cf_write_full(fd, data, len), 0);
    close(fd);
}

static int setup(void **state)
{
    (void)state;
    cf_log_set_level(CF_LOG_OFF);
    snprintf(base, sizeof(base), "/tmp/test_blob_cache.XXXXXX");
    assert_non_null(mkdtemp(base));
    char p[512];
    snprintf(p, sizeof(p), "%s/src", base);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/blobs", base);
    mkdir(p, 0755);
    content_a = malloc(LEN_A);
    content_c = malloc(LEN_C);
    srand(42);
    for (size_t i = 0; i < LEN_A; i++) content_a[i] = (uint8_t)rand();
    for (size_t i = 0; i < LEN_C; i++) content_c[i] = (uint8_t)('a' + (i * 7 + i / 100) % 26);
    write_file("a", content_a, LEN_A);
    write_file("dup-a", content_a, LEN_A); /* every chunk shared with a */
    write_file("c", content_c, LEN_C);
    write_file("tiny", "hello", 5);

    struct rafs_create_opts o = {0};
    char src[512], boot[512], blobs[512];
    snprintf(src, sizeof(src), "%s/src", base);
    snprintf(boot, sizeof(boot), "%s/boot", base);
    snprintf(blobs, sizeof(blobs), "%s/blobs", base);
    o.source = src;
    o.source_is_dir = 1;
    o.bootstrap = boot;
    o.blob_dir = blobs;
    o.blob_opts.chunk_size = CS;
    o.blob_opts.compressor = RAFS_COMP_ZSTD;
    o.blob_opts.digester = RAFS_DIGEST_BLAKE3;
    o.blob_opts.zstd_level = 3;
    struct rafs_create_result *res = calloc(1, sizeof(*res));
    cf_err err = {0};
    int rc = rafs_create(&o, res, &err);
    if (rc) fprintf(stderr, "rafs_create: %s\n", err.msg);
    assert_int_equal(rc, 0);
    free(res);
    assert_int_equal(rafs_image_open(boot, &img, &err), 0);
    assert_int_equal(rafs_image_blob_count(img), 1);
    bi = rafs_image_blob(img, 0);
    snprintf(blob_path, sizeof(blob_path), "%s/blobs/%s", base, bi->id);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rafs_image_close(img);
    free(content_a);
    free(content_c);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void read_all(mount_blob_cache *c, const char *path, const uint8_t *want, size_t len,
                     size_t piece)
{
    uint64_t nid = nid_of(path);
    uint8_t *got = malloc(len + piece);
    size_t off = 0;
    while (off < len + 1) {
        size_t n = 0;
        cf_err err = {0};
        int rc = mount_blob_cache_read_file(c, nid, off, got + off, piece, &n, &err);
        if (rc) fprintf(stderr, "read %s at %zu: %s\n", path, off, err.msg);
        assert_int_equal(rc, 0);
        if (n == 0) break;
        off += n;
    }
    assert_int_equal(off, len);
    assert_memory_equal(got, want, len);
    free(got);
}

/* Every bit set in the chunk_map file describes correct bytes in .blob.data; returns the number
 * of ready chunks seen (of the files a and c). */
static unsigned check_ready_bits_correct(const char *wd_name)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/%s/%s.blob.data.chunk_map", base, wd_name, bi->id);
    uint8_t *map;
    size_t maplen;
    int rc = cf_read_file(p, 1 << 20, &map, &maplen, NULL);
    if (rc == -ENOENT) return 0; /* killed before it created the map */
    assert_int_equal(rc, 0);
    if (maplen == 0) { /* killed between create and truncate */
        free(map);
        return 0;
    }
    assert_int_equal(maplen, 4096 + (bi->chunk_count + 7) / 8);
    snprintf(p, sizeof(p), "%s/%s/%s.blob.data", base, wd_name, bi->id);
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    unsigned ready = 0;
    const char *names[2] = {"/a", "/c"};
    const uint8_t *want[2] = {content_a, content_c};
    size_t lens[2] = {LEN_A, LEN_C};
    for (int f = 0; f < 2; f++) {
        struct rafs_chunk_ref *refs;
        size_t n;
        assert_int_equal(rafs_file_map(img, nid_of(names[f]), 0, lens[f], &refs, &n, NULL), 0);
        for (size_t i = 0; i < n; i++) {
            uint32_t ci = refs[i].ci_index;
            if (!((map[4096 + (ci >> 3)] >> (7 - (ci & 7))) & 1)) continue;
            uint8_t buf[CS];
            assert_int_equal(
                cf_pread_full(fd, buf, refs[i].uncompressed_size, refs[i].uncompressed_offset), 0);
            assert_memory_equal(buf, want[f] + refs[i].file_offset, refs[i].uncompressed_size);
            ready++;
        }
        free(refs);
    }
    close(fd);
    free(map);
    return ready;
}

static void test_read_then_second_cache_reads_nothing(void **state)
{
    (void)state;
    struct tctx ctx = {.path = blob_path};
    mount_blob_cache *c = new_cache("w-reuse", &ctx, 0);
    read_all(c, "/a", content_a, LEN_A, 3000);
    read_all(c, "/dup-a", content_a, LEN_A, 65536);
    read_all(c, "/c", content_c, LEN_C, 7);
    read_all(c, "/tiny", (const uint8_t *)"hello", 5, 100);
    struct mount_blob_cache_stats st;
    mount_blob_cache_get_stats(c, &st);
    assert_int_equal(st.chunks_fetched, bi->chunk_count); /* dup-a fetched nothing new */
    assert_int_equal(st.chunks_ready, bi->chunk_count);
    assert_int_equal(st.verify_failures, 0);
    assert_int_equal(mount_blob_cache_blob_complete(c, 0), 1);
    mount_blob_cache_free(c);
    assert_int_equal(check_ready_bits_correct("w-reuse"), 10 + 8);

    struct tctx ctx2 = {.path = blob_path};
    c = new_cache("w-reuse", &ctx2, 0);
    read_all(c, "/c", content_c, LEN_C, 1000);
    read_all(c, "/a", content_a, LEN_A, 4096);
    uint8_t buf[100];
    size_t n;
    assert_int_equal(mount_blob_cache_read_blob(c, 0, 0, buf, sizeof(buf), &n, NULL), 0);
    assert_int_equal(n, sizeof(buf));
    assert_int_equal(ctx2.opens, 0); /* the backend was never even opened */
    assert_int_equal(ctx2.reads, 0);
    mount_blob_cache_free(c);
}

static void test_merge_up_to_amplify(void **state)
{
    (void)state;
    uint8_t *buf = malloc(LEN_A);
    size_t n;
    struct tctx ctx = {.path = blob_path};
    mount_blob_cache *c = new_cache("w-merge1", &ctx, 0);
    assert_int_equal(mount_blob_cache_read_file(c, nid_of("/a"), 0, buf, LEN_A, &n, NULL), 0);
    assert_int_equal(n, LEN_A);
    assert_memory_equal(buf, content_a, LEN_A);
    assert_int_equal(ctx.reads, 1); /* 10 adjacent chunks, one backend read */
    mount_blob_cache_free(c);

    struct tctx ctx2 = {.path = blob_path};
    c = new_cache("w-merge2", &ctx2, 2 * CS); /* random data is stored raw: 4096 B per chunk */
    assert_int_equal(mount_blob_cache_read_file(c, nid_of("/a"), 0, buf, LEN_A, &n, NULL), 0);
    assert_memory_equal(buf, content_a, LEN_A);
    assert_int_equal(ctx2.reads, 5);
    mount_blob_cache_free(c);
    free(buf);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_independent_runs_concurrent(void **state)
{
    (void)state;
    uint8_t *buf = malloc(LEN_A);
    size_t n;
    struct tctx ctx = {.path = blob_path, .delay_ms = 300};
    mount_blob_cache *c = new_cache("w-conc", &ctx, 0);
    uint64_t nid = nid_of("/a");
    assert_int_equal(mount_blob_cache_read_file(c, nid, 5 * CS, buf, 1, &n, NULL), 0);
    assert_int_equal(ctx.reads, 1);
    double t0 = now_s();
    /* chunks 0-4 and 6-9 are missing: two runs, fetched at the same time */
    assert_int_equal(mount_blob_cache_read_file(c, nid, 0, buf, LEN_A, &n, NULL), 0);
    double dt = now_s() - t0;
    assert_memory_equal(buf, content_a, LEN_A);
    assert_int_equal(ctx.reads, 3);
    if (dt >= 0.55) fprintf(stderr, "two runs took %.3f s: not concurrent\n", dt);
    assert_true(dt < 0.55);
    mount_blob_cache_free(c);
    free(buf);
}

struct same_chunk_arg {
    mount_blob_cache *c;
    uint64_t nid;
    int rc;
    uint8_t buf[200];
};
static void *same_chunk_reader(void *p)
{
    struct same_chunk_arg *a = p;
    size_t n;
    a->rc = mount_blob_cache_read_file(a->c, a->nid, 100, a->buf, sizeof(a->buf), &n, NULL);
    return NULL;
}

static void test_same_chunk_fetched_once(void **state)
{
    (void)state;
    struct tctx ctx = {.path = blob_path, .delay_ms = 200};
    mount_blob_cache *c = new_cache("w-same", &ctx, 0);
    struct same_chunk_arg args[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        args[i].c = c;
        args[i].nid = nid_of(i % 2 ? "/a" : "/dup-a"); /* two files, one chunk */
        assert_int_equal(pthread_create(&th[i], NULL, same_chunk_reader, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].rc, 0);
        assert_memory_equal(args[i].buf, content_a + 100, sizeof(args[i].buf));
    }
    assert_int_equal(ctx.reads, 1);
    struct mount_blob_cache_stats st;
    mount_blob_cache_get_stats(c, &st);
    assert_int_equal(st.chunks_fetched, 1);
    mount_blob_cache_free(c);
}

static void flip_byte(uint64_t off)
{
    int fd = open(blob_path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(cf_pread_full(fd, &b, 1, off), 0);
    b ^= 0x5a;
    assert_int_equal(cf_pwrite_full(fd, &b, 1, off), 0);
    close(fd);
}

static void test_corrupt_chunk_eio_not_cached_refetched(void **state)
{
    (void)state;
    const char *files[2] = {"/a", "/c"}; /* a raw chunk and a zstd chunk */
    const uint8_t *want[2] = {content_a, content_c};
    for (int f = 0; f < 2; f++) {
        struct tctx ctx = {.path = blob_path};
        char wd[32];
        snprintf(wd, sizeof(wd), "w-corrupt%d", f);
        mount_blob_cache *c = new_cache(wd, &ctx, 0);
        uint64_t nid = nid_of(files[f]);
        struct rafs_chunk_ref ref;
        assert_int_equal(rafs_file_chunk(img, nid, 3, &ref, NULL), 0);
        uint64_t bad = ref.compressed_offset + ref.compressed_size / 2;
        flip_byte(bad);
        uint8_t buf[CS];
        size_t n = 0;
        cf_err err = {0};
        int rc = mount_blob_cache_read_file(c, nid, 3 * CS + 10, buf, 100, &n, &err);
        assert_int_equal(rc, -EIO);
        assert_non_null(strstr(err.msg, bi->id));
        assert_non_null(strstr(err.msg, "chunk"));
        struct mount_blob_cache_stats st;
        mount_blob_cache_get_stats(c, &st);
        assert_int_equal(st.chunks_ready, 0);
        assert_int_equal(st.verify_failures, 1);
        /* nothing was written: the cache file holds zeros there */
        char p[700];
        snprintf(p, sizeof(p), "%s/%s/%s.blob.data", base, wd, bi->id);
        int fd = open(p, O_RDONLY);
        uint8_t z[CS], zero[CS] = {0};
        assert_int_equal(cf_pread_full(fd, z, ref.uncompressed_size, ref.uncompressed_offset), 0);
        assert_memory_equal(z, zero, ref.uncompressed_size);
        close(fd);
        /* a retry fetches again (and fails again) */
        int reads = ctx.reads;
        assert_int_equal(mount_blob_cache_read_file(c, nid, 3 * CS, buf, 1, &n, NULL), -EIO);
        assert_int_equal(ctx.reads, reads + 1);
        /* neighbours are fine */
        assert_int_equal(mount_blob_cache_read_file(c, nid, 0, buf, 100, &n, NULL), 0);
        assert_memory_equal(buf, want[f], 100);
        /* the backend is repaired: the next read fetches and serves the right bytes */
        flip_byte(bad);
        assert_int_equal(mount_blob_cache_read_file(c, nid, 3 * CS, buf, CS, &n, NULL), 0);
        assert_memory_equal(buf, want[f] + 3 * CS, CS);
        mount_blob_cache_free(c);
    }
}

/* The zero-copy form (what the FUSE server splices from): extents only over verified chunks,
 * their bytes == the file's, adjacent chunks merged; a corrupt chunk gives -EIO and no extent. */
static void test_map_extents_verified(void **state)
{
    (void)state;
    struct tctx ctx = {.path = blob_path};
    mount_blob_cache *c = new_cache("w-map", &ctx, 0);
    struct mount_blob_extent *e = NULL;
    size_t n = 0, total = 0;
    uint64_t nid = nid_of("/a");
    assert_int_equal(mount_blob_cache_map_file(c, nid, 10, 2 * LEN_A, &e, &n, &total, NULL), 0);
    assert_int_equal(total, LEN_A - 10); /* short at EOF */
    assert_int_equal(n, 1);              /* 10 chunks one after another in the blob */
    uint8_t *buf = malloc(LEN_A);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(cf_pread_full(e[i].fd, buf + at, e[i].len, (off_t)e[i].offset), 0);
        at += e[i].len;
    }
    assert_int_equal(at, total);
    assert_memory_equal(buf, content_a + 10, total);
    free(e);
    struct mount_blob_cache_stats st;
    mount_blob_cache_get_stats(c, &st);
    assert_int_equal(st.chunks_fetched, 10); /* mapped = fetched and verified */
    assert_int_equal(mount_blob_cache_map_file(c, nid, LEN_A, 100, &e, &n, &total, NULL), 0);
    assert_int_equal(n, 0);
    assert_int_equal(total, 0);
    free(e);
    struct mount_blob_extent one;
    assert_int_equal(mount_blob_cache_map_blob(c, 0, bi->uncompressed_size, 10, &one, NULL), 0);
    assert_int_equal(one.len, 0);
    mount_blob_cache_free(c);

    struct tctx ctx2 = {.path = blob_path};
    c = new_cache("w-map-bad", &ctx2, 0);
    nid = nid_of("/c");
    struct rafs_chunk_ref ref;
    assert_int_equal(rafs_file_chunk(img, nid, 2, &ref, NULL), 0);
    uint64_t bad = ref.compressed_offset + ref.compressed_size / 2;
    flip_byte(bad);
    e = (struct mount_blob_extent *)&one; /* must be reset */
    assert_int_equal(mount_blob_cache_map_file(c, nid, 0, LEN_C, &e, &n, &total, NULL), -EIO);
    assert_null(e);
    assert_int_equal(n, 0);
    assert_int_equal(mount_blob_cache_map_blob(c, 0, ref.uncompressed_offset, 10, &one, NULL),
                     -EIO);
    assert_int_equal(one.len, 0);
    flip_byte(bad);
    mount_blob_cache_free(c);
    free(buf);
}

static void test_read_blob_address_space(void **state)
{
    (void)state;
    struct tctx ctx = {.path = blob_path};
    mount_blob_cache *c = new_cache("w-blob", &ctx, 0);
    uint64_t size = bi->uncompressed_size;
    uint8_t *all = malloc(size + 7000);
    uint64_t off = 0;
    size_t n;
    while (off < size) {
        assert_int_equal(mount_blob_cache_read_blob(c, 0, off, all + off, 7000, &n, NULL), 0);
        assert_true(n > 0);
        off += n;
    }
    assert_int_equal(off, size);
    assert_int_equal(mount_blob_cache_read_blob(c, 0, size, all, 10, &n, NULL), 0);
    assert_int_equal(n, 0);
    assert_int_equal(mount_blob_cache_read_blob(c, 1, 0, all, 10, &n, NULL), -EINVAL);
    const char *files[2] = {"/a", "/c"};
    const uint8_t *want[2] = {content_a, content_c};
    size_t lens[2] = {LEN_A, LEN_C};
    for (int f = 0; f < 2; f++) {
        struct rafs_chunk_ref *refs;
        size_t k;
        assert_int_equal(rafs_file_map(img, nid_of(files[f]), 0, lens[f], &refs, &k, NULL), 0);
        for (size_t i = 0; i < k; i++)
            assert_memory_equal(all + refs[i].uncompressed_offset, want[f] + refs[i].file_offset,
                                refs[i].uncompressed_size);
        free(refs);
    }
    assert_int_equal(mount_blob_cache_blob_complete(c, 0), 1);
    mount_blob_cache_free(c);
    free(all);
}

/* A child process fills the cache with 4 threads over a slow backend and is killed with
 * SIGKILL at a random moment, several times over the same work_dir; every ready bit must then
 * describe correct data, and a last run completes the cache from where the kills left it. */
struct crash_arg {
    mount_blob_cache *c;
    int which;
};
static void *crash_reader(void *p)
{
    struct crash_arg *a = p;
    static const char *names[4] = {"/a", "/c", "/dup-a", "/c"};
    uint64_t nid;
    if (rafs_lookup(img, names[a->which], &nid, NULL)) return NULL;
    uint8_t buf[CS];
    for (uint64_t off = (uint64_t)a->which * 1000; off < LEN_C; off += 1500) {
        size_t n;
        mount_blob_cache_read_file(a->c, nid, off, buf, 500, &n, NULL);
    }
    return NULL;
}

static void test_kill9_leaves_only_correct_ready_bits(void **state)
{
    (void)state;
    srand((unsigned)time(NULL));
    unsigned last = 0;
    for (int round = 0; round < 6; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct tctx ctx = {.path = blob_path, .delay_ms = 3};
            char wd[512];
            snprintf(wd, sizeof(wd), "%s/w-crash", base);
            struct mount_blob_cache_opts o = {
                .work_dir = wd, .amplify_io = CS, .open_blob = open_fn, .open_ctx = &ctx};
            mount_blob_cache *c;
            if (mount_blob_cache_new(img, &o, &c, NULL)) _exit(3);
            pthread_t th[4];
            struct crash_arg args[4];
            for (int i = 0; i < 4; i++) {
                args[i] = (struct crash_arg){c, i};
                pthread_create(&th[i], NULL, crash_reader, &args[i]);
            }
            for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
            _exit(0);
        }
        usleep((useconds_t)(1000 + rand() % 30000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
        unsigned ready = check_ready_bits_correct("w-crash");
        fprintf(stderr, "round %d: %u chunk uses ready\n", round, ready);
        assert_true(ready >= last); /* bits are never lost */
        last = ready;
    }
    struct tctx ctx = {.path = blob_path};
    mount_blob_cache *c = new_cache("w-crash", &ctx, 0);
    read_all(c, "/a", content_a, LEN_A, 5000);
    read_all(c, "/c", content_c, LEN_C, 5000);
    mount_blob_cache_free(c);
    assert_int_equal(check_ready_bits_correct("w-crash"), 18);
}

static void test_removed_data_file_resets_map(void **state)
{
    (void)state;
    struct tctx ctx = {.path = blob_path};
    mount_blob_cache *c = new_cache("w-gc", &ctx, 0);
    read_all(c, "/c", content_c, LEN_C, 10000);
    mount_blob_cache_free(c);
    char p[700];
    snprintf(p, sizeof(p), "%s/w-gc/%s.blob.data", base, bi->id);
    assert_int_equal(unlink(p), 0); /* GC removed the data but not the map */
    struct tctx ctx2 = {.path = blob_path};
    c = new_cache("w-gc", &ctx2, 0);
    read_all(c, "/c", content_c, LEN_C, 10000);
    assert_true(ctx2.reads > 0);
    mount_blob_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_then_second_cache_reads_nothing),
        cmocka_unit_test(test_merge_up_to_amplify),
        cmocka_unit_test(test_independent_runs_concurrent),
        cmocka_unit_test(test_same_chunk_fetched_once),
        cmocka_unit_test(test_corrupt_chunk_eio_not_cached_refetched),
        cmocka_unit_test(test_read_blob_address_space),
        cmocka_unit_test(test_map_extents_verified),
        cmocka_unit_test(test_kill9_leaves_only_correct_ready_bits),
        cmocka_unit_test(test_removed_data_file_resets_map),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
