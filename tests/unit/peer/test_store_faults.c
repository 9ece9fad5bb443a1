/* Piece store durability under a failing fdatasync (test-only fault CHUNKFLY_FAULT_FSYNC_FAIL,
 * built into peer_store_faults with CHUNKFLY_FAULTS=1): a failed sync of one blob costs only
 * that blob's unsynced pieces (dropped, counted in pieces_dropped); the other blobs of the same
 * flush are durable after it (checked by reopening after a process that never flushed again);
 * rewritten pieces become durable at a later flush; verify of another blob is not blocked. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "cf/hex.h"
#include "store_test_util.h"

#define PS     (64u << 10)
#define NBLOBS 3
#define FAILED 1 /* index of the blob whose fdatasync fails */

typedef struct fx {
    char *dir;
    test_blob b[NBLOBS];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->dir = make_tmpdir();
    for (int i = 0; i < NBLOBS; i++)
        test_blob_make(&f->b[i], 40 + (uint32_t)i, 3 * PS + 100 * i + 1);
    unsetenv("CHUNKFLY_FAULT_FSYNC_FAIL");
    unsetenv("CHUNKFLY_FAULT_FSYNC_FAIL_COUNT");
    *state = f;
    return f->dir ? 0 : -1;
}

static int teardown(void **state)
{
    fx *f = *state;
    unsetenv("CHUNKFLY_FAULT_FSYNC_FAIL");
    unsetenv("CHUNKFLY_FAULT_FSYNC_FAIL_COUNT");
    rm_rf(f->dir);
    free(f->dir);
    for (int i = 0; i < NBLOBS; i++) free(f->b[i].data);
    free(f);
    return 0;
}

static uint32_t npieces(const test_blob *b)
{
    return (uint32_t)proto_piece_count(b->len, PS);
}

static int write_blob(peer_store *s, const test_blob *b)
{
    for (uint32_t p = 0; p < npieces(b); p++)
        if (write_piece_of(s, b, PS, p)) return -1;
    return 0;
}

/* Pieces set in the blob's written bitmap (-1 when the blob is unknown). */
static int bits_set(peer_store *s, const test_blob *b)
{
    uint8_t bits[64];
    uint32_t count = 0;
    if (peer_store_bitmap(s, b->digest, bits, sizeof(bits), &count)) return -1;
    return (int)proto_bits_count(bits, count);
}

static void hex_prefix(const test_blob *b, char *out, size_t n)
{
    char hex[65];
    cf_hex_encode(b->digest, 32, hex);
    snprintf(out, n, "%.*s", (int)(n - 1), hex);
}

/* The child writes all blobs, flushes once with the fault armed on one blob, and exits without
 * closing (no further flush): what the parent then finds durable came from that one flush. */
static int child_flush_once(fx *f, const char *dir, int failed)
{
    peer_store *s = open_store(dir, 0, 0);
    if (!s) return 10;
    for (int i = 0; i < NBLOBS; i++) {
        if (peer_store_blob_open(s, f->b[i].digest, f->b[i].len, PS, NULL, NULL, NULL)) return 11;
        if (write_blob(s, &f->b[i])) return 12;
    }
    char prefix[13];
    hex_prefix(&f->b[failed], prefix, sizeof(prefix));
    setenv("CHUNKFLY_FAULT_FSYNC_FAIL", prefix, 1);
    cf_err e = {0};
    int rc = peer_store_flush(s, &e);
    if (rc != -EIO) return 13;
    if (!strstr(e.msg, prefix)) return 14; /* names the blob */
    peer_store_stats st;
    peer_store_stats_get(s, &st);
    if (st.pieces_dropped != npieces(&f->b[failed])) return 15;
    if (bits_set(s, &f->b[failed]) != 0) return 16; /* dropped from the bitmap */
    for (int i = 0; i < NBLOBS; i++) {
        peer_blob_info info;
        if (peer_store_blob_info(s, f->b[i].digest, &info)) return 17;
        uint32_t want = i == failed ? 0 : npieces(&f->b[i]);
        if (info.pieces_written != want || info.pieces_durable != want) return 18;
    }
    uint64_t used = 0;
    for (int i = 0; i < NBLOBS; i++) used += i == failed ? 0 : f->b[i].len;
    if (st.bytes_used != used || st.bytes_pending != 0) return 19;
    /* A dropped piece is absent: reads are refused, nothing stale is served. */
    uint8_t buf[16];
    if (peer_store_read(s, f->b[failed].digest, 0, buf, sizeof(buf), NULL, 0, NULL, NULL) !=
        -ENODATA)
        return 20;
    _exit(0); /* no close: no final flush */
}

static void test_failed_sync_costs_only_its_blob(void **state)
{
    fx *f = *state;
    /* Each blob in turn is the one that fails, in a cache of its own, so whatever order the
     * flush visits the blobs in, a failure before and after the others is covered. */
    char dir[4200];
    peer_store *s = NULL;
    const int order[NBLOBS] = {0, 2, FAILED}; /* FAILED last: the test goes on with it */
    for (int k = 0; k < NBLOBS; k++) {
        int failed = order[k];
        snprintf(dir, sizeof(dir), "%s/round%d", f->dir, failed);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) _exit(child_flush_once(f, dir, failed));
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);

        /* Reopen: the other blobs are durable from that one flush; the failed one has
         * nothing. */
        s = open_store(dir, 0, 0);
        assert_non_null(s);
        for (int i = 0; i < NBLOBS; i++) {
            peer_blob_info info;
            assert_int_equal(peer_store_blob_info(s, f->b[i].digest, &info), 0);
            uint32_t want = i == failed ? 0 : npieces(&f->b[i]);
            assert_int_equal(bits_set(s, &f->b[i]), want);
            assert_int_equal(info.pieces_durable, want);
            if (i != failed) assert_int_equal(peer_store_verify(s, f->b[i].digest, NULL), 0);
        }
        if (k < NBLOBS - 1) peer_store_close(s);
    }
    peer_store_stats st;
    peer_store_stats_get(s, &st);
    assert_int_equal(st.pieces_dropped, 0); /* counted since open */

    /* The same fault again, failing twice (COUNT=2), now with "sha256:" and the full digest. */
    char hex[65], spec[80];
    cf_hex_encode(f->b[FAILED].digest, 32, hex);
    snprintf(spec, sizeof(spec), "sha256:%s", hex);
    setenv("CHUNKFLY_FAULT_FSYNC_FAIL", spec, 1);
    setenv("CHUNKFLY_FAULT_FSYNC_FAIL_COUNT", "2", 1);
    uint32_t n = npieces(&f->b[FAILED]);
    cf_err e = {0};
    for (int round = 1; round <= 2; round++) {
        assert_int_equal(write_blob(s, &f->b[FAILED]), 0);
        assert_int_equal(bits_set(s, &f->b[FAILED]), n); /* written: readable until the flush */
        assert_int_equal(peer_store_flush(s, &e), -EIO);
        assert_non_null(strstr(e.msg, hex));
        peer_store_stats_get(s, &st);
        assert_int_equal(st.pieces_dropped, round * n);
        assert_int_equal(bits_set(s, &f->b[FAILED]), 0);
    }
    /* Nothing pending now: a flush succeeds without consuming anything. */
    assert_int_equal(peer_store_flush(s, &e), 0);
    /* Rewritten, the pieces become durable at the next flush (the fault is used up). */
    assert_int_equal(write_blob(s, &f->b[FAILED]), 0);
    assert_int_equal(peer_store_flush(s, &e), 0);
    peer_blob_info info;
    assert_int_equal(peer_store_blob_info(s, f->b[FAILED].digest, &info), 0);
    assert_int_equal(info.pieces_durable, n);
    peer_store_stats_get(s, &st);
    assert_int_equal(st.pieces_dropped, 2 * n);
    assert_int_equal(st.bytes_pending, 0);
    peer_store_close(s);

    /* And after a restart everything is there and correct. */
    s = open_store(dir, 0, 0);
    assert_non_null(s);
    for (int i = 0; i < NBLOBS; i++) {
        assert_int_equal(bits_set(s, &f->b[i]), npieces(&f->b[i]));
        assert_int_equal(peer_store_verify(s, f->b[i].digest, &e), 0);
    }
    peer_store_close(s);
}

/* Verifying one blob is not blocked by another blob's failed fdatasync in the same flush; the
 * blob verified is flushed and checked, the other loses its unsynced pieces. */
static void test_verify_despite_other_blob_failure(void **state)
{
    fx *f = *state;
    peer_store *s = open_store(f->dir, 0, 0);
    assert_non_null(s);
    test_blob *a = &f->b[0], *b = &f->b[FAILED];
    assert_int_equal(peer_store_blob_open(s, a->digest, a->len, PS, NULL, NULL, NULL), 0);
    assert_int_equal(peer_store_blob_open(s, b->digest, b->len, PS, NULL, NULL, NULL), 0);
    assert_int_equal(write_blob(s, a), 0);
    assert_int_equal(write_piece_of(s, b, PS, 1), 0);
    char prefix[9];
    hex_prefix(b, prefix, sizeof(prefix));
    setenv("CHUNKFLY_FAULT_FSYNC_FAIL", prefix, 1);
    cf_err e = {0};
    assert_int_equal(peer_store_verify(s, a->digest, &e), 0);
    peer_blob_info info;
    assert_int_equal(peer_store_blob_info(s, a->digest, &info), 0);
    assert_true(info.verified);
    assert_int_equal(info.pieces_durable, npieces(a));
    assert_int_equal(bits_set(s, b), 0);
    peer_store_stats st;
    peer_store_stats_get(s, &st);
    assert_int_equal(st.pieces_dropped, 1);

    /* The failed blob's own verify is refused while its pieces are missing, and works once
     * they are written again (the fault is used up). */
    assert_int_equal(peer_store_verify(s, b->digest, &e), -ENODATA);
    assert_int_equal(write_blob(s, b), 0);
    assert_int_equal(peer_store_verify(s, b->digest, &e), 0);
    /* Unsetting re-arms (seen at the next sync): the same prefix fails once more. */
    unsetenv("CHUNKFLY_FAULT_FSYNC_FAIL");
    test_blob *c = &f->b[2];
    assert_int_equal(peer_store_blob_open(s, c->digest, c->len, PS, NULL, NULL, NULL), 0);
    assert_int_equal(write_piece_of(s, c, PS, 0), 0);
    assert_int_equal(peer_store_flush(s, &e), 0);
    setenv("CHUNKFLY_FAULT_FSYNC_FAIL", prefix, 1);
    /* a purged and re-created blob of that digest is hit as well */
    assert_int_equal(peer_store_purge(s, b->digest, &e), 0);
    assert_int_equal(peer_store_blob_open(s, b->digest, b->len, PS, NULL, NULL, NULL), 0);
    assert_int_equal(write_piece_of(s, b, PS, 0), 0);
    assert_int_equal(write_piece_of(s, c, PS, 1), 0);
    assert_int_equal(peer_store_flush(s, &e), -EIO);
    assert_int_equal(bits_set(s, b), 0);
    assert_int_equal(bits_set(s, c), 2);
    assert_int_equal(peer_store_blob_info(s, c->digest, &info), 0);
    assert_int_equal(info.pieces_durable, 2);
    peer_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_failed_sync_costs_only_its_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_despite_other_blob_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
