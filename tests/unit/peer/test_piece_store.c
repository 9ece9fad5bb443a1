/* Piece store: create/write/read/bitmap, refusal of missing pieces, leases, whole-blob
 * verification (match and mismatch purge), per-piece digest lists, persistence across
 * restarts (incl. unflushed pieces lost by a crashed process), recovery of orphan files, and
 * concurrent use from several threads. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "cf/hex.h"
#include "store_test_util.h"

#define PS (64u << 10) /* piece size used by these tests */

typedef struct fx {
    char *dir;
    peer_store *s;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->dir = make_tmpdir();
    f->s = open_store(f->dir, 0, 0);
    *state = f;
    return f->s ? 0 : -1;
}

static int teardown(void **state)
{
    fx *f = *state;
    peer_store_close(f->s);
    rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void data_path(const fx *f, const uint8_t *digest, char *out, size_t n)
{
    char hex[65];
    cf_hex_encode(digest, 32, hex);
    snprintf(out, n, "%s/data/%.2s/%s", f->dir, hex, hex);
}

static void test_create_write_read(void **state)
{
    fx *f = *state;
    test_blob b;
    test_blob_make(&b, 1, 3 * PS + 1000); /* 4 pieces, last one short */
    peer_blob_info info;
    cf_err e = {0};
    assert_int_equal(peer_store_blob_open(f->s, b.digest, b.len, PS, "reg/repo", &info, &e), 0);
    assert_int_equal(info.piece_count, 4);
    assert_int_equal(info.pieces_written, 0);
    assert_string_equal(info.origin, "reg/repo");

    /* The data file is preallocated sparse to the blob length. */
    char path[4200];
    data_path(f, b.digest, path, sizeof(path));
    struct stat fst;
    assert_int_equal(stat(path, &fst), 0);
    assert_int_equal(fst.st_size, b.len);
    assert_true((uint64_t)fst.st_blocks * 512 < b.len);

    assert_int_equal(write_piece_of(f->s, &b, PS, 0), 0);
    assert_int_equal(write_piece_of(f->s, &b, PS, 2), 0);
    assert_int_equal(write_piece_of(f->s, &b, PS, 2), 0); /* idempotent */
    /* wrong length / out of range */
    assert_int_equal(peer_store_write_piece(f->s, b.digest, 3, b.data + 3 * PS, PS, &e), -EINVAL);
    assert_int_equal(peer_store_write_piece(f->s, b.digest, 4, b.data, 1000, &e), -EINVAL);

    uint8_t bits[1];
    uint32_t count;
    assert_int_equal(peer_store_bitmap(f->s, b.digest, bits, 1, &count), 0);
    assert_int_equal(count, 4);
    assert_int_equal(bits[0], 0x05);
    assert_int_equal(peer_store_bitmap(f->s, b.digest, bits, 0, &count), -ERANGE);

    uint8_t *buf = malloc(2 * PS);
    assert_int_equal(peer_store_read(f->s, b.digest, 100, buf, PS - 100, NULL, 0, NULL, &e), 0);
    assert_memory_equal(buf, b.data + 100, PS - 100);
    assert_int_equal(peer_store_read(f->s, b.digest, 2 * PS + 5, buf, 77, NULL, 0, NULL, &e), 0);
    assert_memory_equal(buf, b.data + 2 * PS + 5, 77);

    /* Ranges touching missing pieces are refused and the missing pieces named. */
    uint32_t miss[4];
    size_t nm;
    assert_int_equal(peer_store_read(f->s, b.digest, PS - 10, buf, 20, miss, 4, &nm, &e), -ENODATA);
    assert_int_equal(nm, 1);
    assert_int_equal(miss[0], 1);
    assert_non_null(strstr(e.msg, "not present"));
    assert_int_equal(
        peer_store_read(f->s, b.digest, 0, buf, b.len > 2 * PS ? 2 * PS : 0, miss, 1, &nm, &e),
        -ENODATA);
    assert_int_equal(peer_store_read(f->s, b.digest, 2 * PS, buf, PS + 1000, miss, 4, &nm, &e),
                     -ENODATA);
    assert_int_equal(nm, 1);
    assert_int_equal(miss[0], 3);
    /* Past the end. */
    assert_int_equal(peer_store_read(f->s, b.digest, b.len - 1, buf, 2, NULL, 0, NULL, &e),
                     -EINVAL);

    /* Lease: fd + offset give the piece bytes (what sendfile would send). */
    peer_piece_lease l;
    assert_int_equal(peer_store_lease_piece(f->s, b.digest, 2, &l, &e), 0);
    assert_int_equal(l.offset, 2 * PS);
    assert_int_equal(l.length, PS);
    assert_int_equal(pread(l.fd, buf, l.length, (off_t)l.offset), PS);
    assert_memory_equal(buf, b.data + 2 * PS, PS);
    assert_int_equal(peer_store_blob_info(f->s, b.digest, &info), 0);
    assert_int_equal(info.in_use, 1);
    peer_store_lease_release(f->s, &l);
    assert_int_equal(peer_store_lease_piece(f->s, b.digest, 1, &l, &e), -ENODATA);
    assert_int_equal(peer_store_lease_piece(f->s, b.digest, 9, &l, &e), -EINVAL);

    /* Same digest, other length or piece size: refused; piece size 0 = use the cached one. */
    assert_int_equal(peer_store_blob_open(f->s, b.digest, b.len + 1, PS, NULL, NULL, &e), -EEXIST);
    assert_int_equal(peer_store_blob_open(f->s, b.digest, b.len, 2 * PS, NULL, NULL, &e), -EEXIST);
    assert_int_equal(peer_store_blob_open(f->s, b.digest, b.len, 0, NULL, &info, &e), 0);
    assert_int_equal(info.piece_size, PS);
    assert_int_equal(info.pieces_written, 2);
    assert_string_equal(info.origin, "reg/repo");
    /* Unknown blob. */
    uint8_t other[32] = {1};
    assert_int_equal(peer_store_write_piece(f->s, other, 0, buf, 10, &e), -ENOENT);
    assert_int_equal(peer_store_read(f->s, other, 0, buf, 1, NULL, 0, NULL, &e), -ENOENT);
    /* Bad piece size: the limits are proto_piece_size_check's (a power of two, 64 KiB..16 MiB). */
    assert_int_equal(peer_store_blob_open(f->s, other, 100, 1000, NULL, NULL, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "power of two"));
    assert_int_equal(peer_store_blob_open(f->s, other, 100, 4096, NULL, NULL, &e), -EINVAL);
    assert_int_equal(peer_store_blob_open(f->s, other, 100, 3 * PS, NULL, NULL, &e), -EINVAL);
    assert_int_equal(peer_store_blob_open(f->s, other, 100, 32u << 20, NULL, NULL, &e), -EINVAL);
    assert_int_equal(peer_store_blob_info(f->s, other, &info), -ENOENT);

    peer_store_stats st;
    peer_store_stats_get(f->s, &st);
    assert_int_equal(st.blobs, 1);
    assert_int_equal(st.bytes_used, 2 * PS);
    assert_int_equal(st.bytes_pending, 2 * PS);
    assert_int_equal(st.read_hits, 2);
    assert_int_equal(st.read_misses, 3);
    assert_int_equal(peer_store_flush(f->s, &e), 0);
    peer_store_stats_get(f->s, &st);
    assert_int_equal(st.bytes_pending, 0);
    assert_int_equal(peer_store_blob_info(f->s, b.digest, &info), 0);
    assert_int_equal(info.pieces_durable, 2);
    free(buf);
    free(b.data);
}

static void test_empty_blob(void **state)
{
    fx *f = *state;
    test_blob b;
    test_blob_make(&b, 9, 0);
    peer_blob_info info;
    assert_int_equal(peer_store_blob_open(f->s, b.digest, 0, 0, NULL, &info, NULL), 0);
    assert_int_equal(info.piece_count, 0);
    assert_true(info.complete);
    assert_int_equal(peer_store_verify(f->s, b.digest, NULL), 0);
    free(b.data);
}

/* piece_size 0 applies the one rule (proto_piece_size_for), for small and (sparse) big blobs. */
static void test_default_piece_size(void **state)
{
    fx *f = *state;
    uint64_t lens[] = {1, 3u << 20, (1ull << 30) + 1, (4ull << 30) + 1};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        uint8_t d[32] = {0xd0, (uint8_t)i};
        peer_blob_info info;
        cf_err e = {0};
        assert_int_equal(peer_store_blob_open(f->s, d, lens[i], 0, NULL, &info, &e), 0);
        assert_int_equal(info.piece_size, proto_piece_size_for(lens[i]));
        assert_int_equal(info.piece_count, proto_piece_count(lens[i], info.piece_size));
    }
    peer_blob_info info;
    uint8_t d[32] = {0xd0, 3};
    assert_int_equal(peer_store_blob_info(f->s, d, &info), 0);
    assert_int_equal(info.piece_size, 4u << 20);
}

static void write_all(peer_store *s, const test_blob *b, uint32_t ps)
{
    for (uint32_t p = 0; p < proto_piece_count(b->len, ps); p++)
        assert_int_equal(write_piece_of(s, b, ps, p), 0);
}

static void test_verify_ok_and_mismatch_purge(void **state)
{
    fx *f = *state;
    test_blob b;
    test_blob_make(&b, 2, 5 * PS + 3);
    cf_err e = {0};
    assert_int_equal(peer_store_blob_open(f->s, b.digest, b.len, PS, NULL, NULL, &e), 0);
    assert_int_equal(write_piece_of(f->s, &b, PS, 0), 0);
    assert_int_equal(peer_store_verify(f->s, b.digest, &e), -ENODATA); /* incomplete */
    write_all(f->s, &b, PS);
    assert_int_equal(peer_store_verify(f->s, b.digest, &e), 0);
    peer_blob_info info;
    assert_int_equal(peer_store_blob_info(f->s, b.digest, &info), 0);
    assert_true(info.verified);
    assert_int_equal(info.pieces_durable, 6); /* verify flushes first */

    /* A blob whose bytes do not hash to its digest: purged, file gone. */
    test_blob bad;
    test_blob_make(&bad, 3, 2 * PS);
    bad.digest[0] ^= 0xff;
    assert_int_equal(peer_store_blob_open(f->s, bad.digest, bad.len, PS, NULL, NULL, &e), 0);
    write_all(f->s, &bad, PS);
    char path[4200];
    data_path(f, bad.digest, path, sizeof(path));
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(peer_store_verify(f->s, bad.digest, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "purged"));
    assert_int_equal(peer_store_blob_info(f->s, bad.digest, &info), -ENOENT);
    assert_int_equal(access(path, F_OK), -1);
    peer_store_stats st;
    peer_store_stats_get(f->s, &st);
    assert_int_equal(st.purges, 1);
    assert_int_equal(st.bytes_used, b.len);

    /* mark_verified for streaming hashers. */
    test_blob c;
    test_blob_make(&c, 4, PS);
    assert_int_equal(peer_store_blob_open(f->s, c.digest, c.len, PS, NULL, NULL, &e), 0);
    assert_int_equal(peer_store_mark_verified(f->s, c.digest, &e), -ENODATA);
    write_all(f->s, &c, PS);
    assert_int_equal(peer_store_mark_verified(f->s, c.digest, &e), 0);
    assert_int_equal(peer_store_blob_info(f->s, c.digest, &info), 0);
    assert_true(info.verified);
    free(b.data);
    free(bad.data);
    free(c.data);
}

static void test_piece_digests(void **state)
{
    fx *f = *state;
    test_blob b;
    test_blob_make(&b, 5, 3 * PS + 17);
    uint32_t n = 4;
    uint8_t list[4 * 32];
    for (uint32_t p = 0; p < n; p++)
        cf_sha256(b.data + (uint64_t)p * PS, proto_piece_len(b.len, PS, p), list + p * 32);
    cf_err e = {0};
    assert_int_equal(peer_store_blob_open(f->s, b.digest, b.len, PS, NULL, NULL, &e), 0);
    uint8_t *out;
    uint32_t cnt;
    enum cf_digest_algo algo;
    assert_int_equal(peer_store_get_piece_digests(f->s, b.digest, &algo, &out, &cnt, &e), -ENODATA);
    assert_int_equal(peer_store_set_piece_digests(f->s, b.digest, CF_DIGEST_SHA256, list, 3, &e),
                     -EINVAL);
    assert_int_equal(peer_store_set_piece_digests(f->s, b.digest, CF_DIGEST_SHA256, list, n, &e),
                     0);
    assert_int_equal(peer_store_get_piece_digests(f->s, b.digest, &algo, &out, &cnt, &e), 0);
    assert_int_equal(cnt, n);
    assert_int_equal(algo, CF_DIGEST_SHA256);
    assert_memory_equal(out, list, sizeof(list));
    free(out);
    uint8_t one[32];
    assert_int_equal(peer_store_get_piece_digest(f->s, b.digest, 3, &algo, one, &e), 0);
    assert_memory_equal(one, list + 3 * 32, 32);
    assert_int_equal(peer_store_get_piece_digest(f->s, b.digest, 4, &algo, one, &e), -EINVAL);

    /* Writes are now checked against the list. */
    uint8_t *corrupt = malloc(PS);
    memcpy(corrupt, b.data + PS, PS);
    corrupt[100] ^= 1;
    assert_int_equal(peer_store_write_piece(f->s, b.digest, 1, corrupt, PS, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "piece 1"));
    peer_blob_info info;
    assert_int_equal(peer_store_blob_info(f->s, b.digest, &info), 0);
    assert_int_equal(info.pieces_written, 0);
    assert_true(info.has_piece_digests);
    write_all(f->s, &b, PS);
    assert_int_equal(peer_store_verify(f->s, b.digest, &e), 0);

    /* The list survives a restart. */
    peer_store_close(f->s);
    f->s = open_store(f->dir, 0, 0);
    assert_non_null(f->s);
    assert_int_equal(peer_store_get_piece_digests(f->s, b.digest, &algo, &out, &cnt, &e), 0);
    assert_memory_equal(out, list, sizeof(list));
    free(out);
    /* Purge drops it. */
    assert_int_equal(peer_store_purge(f->s, b.digest, &e), 0);
    assert_int_equal(peer_store_get_piece_digests(f->s, b.digest, &algo, &out, &cnt, &e), -ENOENT);
    free(corrupt);
    free(b.data);
}

static void test_restart_persistence(void **state)
{
    fx *f = *state;
    test_blob a, b;
    test_blob_make(&a, 6, 4 * PS);
    test_blob_make(&b, 7, 2 * PS + 1);
    cf_err e = {0};
    assert_int_equal(peer_store_blob_open(f->s, a.digest, a.len, PS, "origin-a", NULL, &e), 0);
    assert_int_equal(peer_store_blob_open(f->s, b.digest, b.len, PS, "origin-b", NULL, &e), 0);
    write_all(f->s, &a, PS);
    assert_int_equal(peer_store_verify(f->s, a.digest, &e), 0);
    assert_int_equal(peer_store_pin(f->s, a.digest, &e), 0);
    assert_int_equal(write_piece_of(f->s, &b, PS, 1), 0); /* pending: close flushes it */

    /* An orphan data file (create interrupted before the index commit) and a stray dir. */
    uint8_t orphan[32];
    memset(orphan, 0xab, 32);
    char opath[4200];
    data_path(f, orphan, opath, sizeof(opath));
    char odir[4200];
    snprintf(odir, sizeof(odir), "%s/data/ab", f->dir);
    mkdir(odir, 0700);
    int fd = open(opath, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);

    peer_store_close(f->s);
    f->s = open_store(f->dir, 0, 0);
    assert_non_null(f->s);
    assert_int_equal(access(opath, F_OK), -1);

    peer_blob_info info;
    assert_int_equal(peer_store_blob_info(f->s, a.digest, &info), 0);
    assert_true(info.verified);
    assert_true(info.complete);
    assert_int_equal(info.pin_count, 1);
    assert_string_equal(info.origin, "origin-a");
    assert_int_equal(peer_store_blob_info(f->s, b.digest, &info), 0);
    assert_int_equal(info.pieces_written, 1);
    assert_int_equal(info.pieces_durable, 1);
    uint8_t bits[1];
    uint32_t count;
    assert_int_equal(peer_store_bitmap(f->s, b.digest, bits, 1, &count), 0);
    assert_int_equal(bits[0], 0x02);
    uint8_t *buf = malloc(a.len);
    assert_int_equal(peer_store_read(f->s, a.digest, 0, buf, a.len, NULL, 0, NULL, &e), 0);
    assert_memory_equal(buf, a.data, a.len);
    peer_blob_info *list;
    size_t n;
    assert_int_equal(peer_store_list(f->s, &list, &n), 0);
    assert_int_equal(n, 2);
    free(list);
    peer_store_stats st;
    peer_store_stats_get(f->s, &st);
    assert_int_equal(st.bytes_used, a.len + PS);

    /* A process that wrote a piece but died before any flush: the piece is not recorded. */
    peer_store_close(f->s);
    f->s = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        peer_store *cs = open_store(f->dir, 0, 0);
        if (!cs || write_piece_of(cs, &b, PS, 0) || write_piece_of(cs, &b, PS, 2)) _exit(1);
        _exit(0); /* no flush, no close: like kill -9 */
    }
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    f->s = open_store(f->dir, 0, 0);
    assert_non_null(f->s);
    assert_int_equal(peer_store_blob_info(f->s, b.digest, &info), 0);
    assert_int_equal(info.pieces_written, 1);
    assert_int_equal(peer_store_bitmap(f->s, b.digest, bits, 1, &count), 0);
    assert_int_equal(bits[0], 0x02);

    /* Two processes cannot share a cache dir. */
    peer_store_opts o = {.dir = f->dir};
    peer_store *s2 = NULL;
    pid = fork();
    if (pid == 0) _exit(peer_store_open(&o, &s2, &e) == -EBUSY ? 0 : 1);
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);

    /* A data file deleted behind our back: recreated empty, pieces forgotten. */
    peer_store_close(f->s);
    char apath[4200];
    data_path(f, a.digest, apath, sizeof(apath));
    assert_int_equal(unlink(apath), 0);
    f->s = open_store(f->dir, 0, 0);
    assert_non_null(f->s);
    assert_int_equal(peer_store_blob_info(f->s, a.digest, &info), 0);
    assert_int_equal(info.pieces_written, 0);
    assert_false(info.verified);
    assert_int_equal(access(apath, F_OK), 0);
    free(buf);
    free(a.data);
    free(b.data);
}

/* A full index map is an error naming the fix, and leaves memory and disk consistent. */
static void test_index_map_full(void **state)
{
    fx *f = *state;
    peer_store_close(f->s);
    peer_store_opts o = {.dir = f->dir, .map_size = 256u << 10};
    assert_int_equal(peer_store_open(&o, &f->s, NULL), 0);
    uint32_t n = 4096, ps = PS;
    uint8_t *list = calloc(n, 32);
    cf_err e = {0};
    int rc = 0, i;
    uint8_t d[32] = {0};
    for (i = 0; i < 8 && rc == 0; i++) {
        d[0] = (uint8_t)i;
        assert_int_equal(peer_store_blob_open(f->s, d, (uint64_t)n * ps, ps, NULL, NULL, &e), 0);
        rc = peer_store_set_piece_digests(f->s, d, CF_DIGEST_SHA256, list, n, &e);
    }
    assert_int_equal(rc, -ENOSPC);
    assert_non_null(strstr(e.msg, "map size"));
    peer_blob_info info;
    assert_int_equal(peer_store_blob_info(f->s, d, &info), 0);
    assert_false(info.has_piece_digests);
    /* Still usable: small records fit. */
    uint8_t *buf = calloc(1, ps);
    assert_int_equal(peer_store_write_piece(f->s, d, 0, buf, ps, &e), 0);
    assert_int_equal(peer_store_flush(f->s, &e), 0);
    assert_int_equal(peer_store_purge(f->s, d, &e), 0);
    peer_store_close(f->s);
    f->s = open_store(f->dir, 0, 0);
    assert_non_null(f->s);
    peer_store_stats st;
    peer_store_stats_get(f->s, &st);
    assert_int_equal(st.blobs, (uint64_t)i - 1);
    free(buf);
    free(list);
}

/* Several threads write, flush and read the same blobs concurrently (as pool threads do). */
struct worker {
    peer_store *s;
    test_blob *b;
    uint32_t start, step;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint32_t n = (uint32_t)proto_piece_count(w->b->len, PS);
    uint8_t *buf = malloc(PS);
    for (uint32_t p = w->start; p < n; p += w->step) {
        if (write_piece_of(w->s, w->b, PS, p)) abort();
        if (p % 7 == 0 && peer_store_flush(w->s, NULL)) abort();
        uint32_t len = proto_piece_len(w->b->len, PS, p);
        if (peer_store_read(w->s, w->b->digest, (uint64_t)p * PS, buf, len, NULL, 0, NULL, NULL) ||
            memcmp(buf, w->b->data + (uint64_t)p * PS, len))
            abort();
        peer_piece_lease l;
        if (peer_store_lease_piece(w->s, w->b->digest, p, &l, NULL)) abort();
        peer_store_lease_release(w->s, &l);
    }
    free(buf);
    return NULL;
}

static void test_threads(void **state)
{
    fx *f = *state;
    peer_store_close(f->s);
    peer_store_opts o = {.dir = f->dir, .flush_pieces = 16, .flush_delay_ms = 5};
    assert_int_equal(peer_store_open(&o, &f->s, NULL), 0);
    test_blob b;
    test_blob_make(&b, 11, 400 * PS + 99);
    assert_int_equal(peer_store_blob_open(f->s, b.digest, b.len, PS, NULL, NULL, NULL), 0);
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){f->s, &b, (uint32_t)i, 4};
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    cf_err e = {0};
    assert_int_equal(peer_store_verify(f->s, b.digest, &e), 0);
    peer_store_stats st;
    peer_store_stats_get(f->s, &st);
    assert_int_equal(st.pieces_written, 401);
    assert_int_equal(st.bytes_pending, 0);
    free(b.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_write_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_piece_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_ok_and_mismatch_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_piece_digests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
