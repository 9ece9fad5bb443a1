/* Quota: high -> low watermark eviction in LRU order; pinned, acquired and leased blobs are
 * never evicted; last-access updates are batched (no commit per read) yet persist. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "store_test_util.h"

#define PS   (64u << 10)
#define BLOB (2 * PS) /* every blob here: 2 pieces */

static void nap(void)
{
    struct timespec ts = {0, 3 * 1000 * 1000}; /* last access has ms resolution */
    nanosleep(&ts, NULL);
}

static int exists(peer_store *s, const test_blob *b)
{
    peer_blob_info info;
    return peer_store_blob_info(s, b->digest, &info) == 0;
}

static void add_blob(peer_store *s, const test_blob *b)
{
    assert_int_equal(peer_store_blob_open(s, b->digest, b->len, PS, NULL, NULL, NULL), 0);
    peer_blob_ref *ref;
    assert_int_equal(peer_store_blob_acquire(s, b->digest, &ref), 0); /* as a downloader does */
    assert_int_equal(write_piece_of(s, b, PS, 0), 0);
    assert_int_equal(write_piece_of(s, b, PS, 1), 0);
    peer_store_blob_release(s, ref);
    nap();
}

static void test_lru_order(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    /* high: 3.5 blobs, low: 2 blobs. */
    peer_store *s = open_store(dir, 3 * BLOB + BLOB / 2, 2 * BLOB);
    assert_non_null(s);
    test_blob b[5];
    for (int i = 0; i < 5; i++) test_blob_make(&b[i], 100 + i, BLOB);
    add_blob(s, &b[0]);
    add_blob(s, &b[1]);
    add_blob(s, &b[2]);
    /* Touch b0 (read) and b1 (lease): now b2 is the least recently used. */
    uint8_t x;
    assert_int_equal(peer_store_read(s, b[0].digest, 5, &x, 1, NULL, 0, NULL, NULL), 0);
    nap();
    peer_piece_lease l;
    assert_int_equal(peer_store_lease_piece(s, b[1].digest, 0, &l, NULL), 0);
    peer_store_lease_release(s, &l);
    nap();
    peer_store_stats st;
    peer_store_stats_get(s, &st);
    assert_int_equal(st.evictions, 0);
    /* b3 pushes usage to 4 blobs > high: evict LRU down to low (2 blobs): b2, then b0. */
    add_blob(s, &b[3]);
    assert_false(exists(s, &b[2]));
    assert_false(exists(s, &b[0]));
    assert_true(exists(s, &b[1]));
    assert_true(exists(s, &b[3]));
    peer_store_stats_get(s, &st);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(st.bytes_evicted, 2 * BLOB);
    assert_int_equal(st.bytes_used, 2 * BLOB);
    assert_int_equal(peer_store_flush(s, NULL), 0);

    /* Access order survives a restart (batched last-access times are flushed by close). */
    assert_int_equal(peer_store_read(s, b[1].digest, 0, &x, 1, NULL, 0, NULL, NULL), 0);
    peer_store_stats_get(s, &st);
    assert_int_equal(st.blobs_atime_dirty, 1); /* a read commits nothing by itself */
    peer_store_close(s);
    s = open_store(dir, 3 * BLOB + BLOB / 2, 2 * BLOB);
    assert_non_null(s);
    add_blob(s, &b[0]);
    add_blob(s, &b[4]); /* 4 blobs: evict b3 (oldest) and b1 */
    assert_false(exists(s, &b[3]));
    assert_false(exists(s, &b[1]));
    assert_true(exists(s, &b[0]));
    assert_true(exists(s, &b[4]));
    peer_store_close(s);
    rm_rf(dir);
    free(dir);
    for (int i = 0; i < 5; i++) free(b[i].data);
}

static void test_pinned_and_in_use_kept(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    peer_store *s = open_store(dir, 3 * BLOB + BLOB / 2, BLOB);
    assert_non_null(s);
    test_blob b[5];
    for (int i = 0; i < 5; i++) test_blob_make(&b[i], 200 + i, BLOB);
    add_blob(s, &b[0]);
    add_blob(s, &b[1]);
    add_blob(s, &b[2]);
    /* b2 pinned, b0 acquired, b1 leased: none of them may go, whatever their age. */
    assert_int_equal(peer_store_pin(s, b[2].digest, NULL), 0);
    peer_blob_ref *ref0, *ref4;
    assert_int_equal(peer_store_blob_acquire(s, b[0].digest, &ref0), 0);
    peer_piece_lease l;
    assert_int_equal(peer_store_lease_piece(s, b[1].digest, 1, &l, NULL), 0);
    /* b4 crosses the high watermark while being downloaded (acquired): nothing evictable. */
    assert_int_equal(peer_store_blob_open(s, b[4].digest, b[4].len, PS, NULL, NULL, NULL), 0);
    assert_int_equal(peer_store_blob_acquire(s, b[4].digest, &ref4), 0);
    assert_int_equal(write_piece_of(s, &b[4], PS, 0), 0);
    assert_int_equal(write_piece_of(s, &b[4], PS, 1), 0);
    assert_true(exists(s, &b[0]) && exists(s, &b[1]) && exists(s, &b[2]) && exists(s, &b[4]));
    assert_int_equal(peer_store_evict(s, 0, NULL), 0);
    /* Download done: b4 is the only candidate, although it is the newest. */
    peer_store_blob_release(s, ref4);
    assert_int_equal(peer_store_evict(s, UINT64_MAX, NULL), 1);
    assert_false(exists(s, &b[4]));
    assert_true(exists(s, &b[0]) && exists(s, &b[1]) && exists(s, &b[2]));
    peer_store_stats st;
    peer_store_stats_get(s, &st);
    assert_int_equal(st.bytes_used, 3 * BLOB);

    uint8_t buf[16];
    assert_int_equal(pread(l.fd, buf, 16, (off_t)l.offset), 16);
    assert_memory_equal(buf, b[1].data + PS, 16);
    peer_store_lease_release(s, &l);
    assert_int_equal(peer_store_evict(s, 0, NULL), 1);
    assert_false(exists(s, &b[1]));
    /* Release b0: evictable. Unpin b2: evictable. */
    peer_store_blob_release(s, ref0);
    assert_int_equal(peer_store_evict(s, 0, NULL), 1);
    assert_false(exists(s, &b[0]));
    assert_int_equal(peer_store_evict(s, 0, NULL), 0);
    assert_int_equal(peer_store_unpin(s, b[2].digest, NULL), 0);
    assert_int_equal(peer_store_unpin(s, b[2].digest, NULL), -EINVAL);
    assert_int_equal(peer_store_evict(s, 0, NULL), 1);
    assert_false(exists(s, &b[2]));
    peer_store_stats_get(s, &st);
    assert_int_equal(st.bytes_used, 0);

    /* Purge is not eviction: it removes a leased blob; the lease keeps reading the bytes. */
    add_blob(s, &b[3]);
    assert_int_equal(peer_store_lease_piece(s, b[3].digest, 0, &l, NULL), 0);
    assert_int_equal(peer_store_purge(s, b[3].digest, NULL), 0);
    assert_false(exists(s, &b[3]));
    assert_int_equal(pread(l.fd, buf, 16, (off_t)l.offset), 16);
    assert_memory_equal(buf, b[3].data, 16);
    peer_store_lease_release(s, &l);

    /* A reference names one blob instance: purge and re-create, then release the old one. */
    add_blob(s, &b[3]);
    peer_blob_ref *old;
    assert_int_equal(peer_store_blob_acquire(s, b[3].digest, &old), 0);
    assert_int_equal(peer_store_purge(s, b[3].digest, NULL), 0);
    add_blob(s, &b[3]);
    peer_store_blob_release(s, old);
    peer_blob_info info;
    assert_int_equal(peer_store_blob_info(s, b[3].digest, &info), 0);
    assert_int_equal(info.in_use, 0);
    assert_int_equal(info.pieces_written, 2);

    /* Pins persist across restarts. */
    add_blob(s, &b[3]);
    assert_int_equal(peer_store_pin(s, b[3].digest, NULL), 0);
    peer_store_close(s);
    s = open_store(dir, 3 * BLOB + BLOB / 2, BLOB);
    assert_int_equal(peer_store_evict(s, 0, NULL), 0);
    assert_true(exists(s, &b[3]));
    peer_store_close(s);
    rm_rf(dir);
    free(dir);
    for (int i = 0; i < 5; i++) free(b[i].data);
}

/* A quota lowered between runs is enforced at open. */
static void test_evict_on_open(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    peer_store *s = open_store(dir, 0, 0);
    test_blob b[3];
    for (int i = 0; i < 3; i++) {
        test_blob_make(&b[i], 300 + i, BLOB);
        add_blob(s, &b[i]);
    }
    peer_store_close(s);
    s = open_store(dir, 2 * BLOB, BLOB);
    assert_non_null(s);
    assert_false(exists(s, &b[0]));
    assert_false(exists(s, &b[1]));
    assert_true(exists(s, &b[2]));
    peer_store_close(s);
    rm_rf(dir);
    free(dir);
    for (int i = 0; i < 3; i++) free(b[i].data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_pinned_and_in_use_kept),
        cmocka_unit_test(test_evict_on_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
