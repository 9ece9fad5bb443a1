/* Piece store on a full disk: the cache directory is a real 4 MiB tmpfs mounted for each test
 * (needs root; the test is skipped, with a message, where mounting is not permitted).
 *  - Filled with unpinned blobs, a new blob still gets written: the least-recently-used blobs
 *    are evicted to make room, the newest survive, everything left reads back correctly.
 *  - With everything pinned, the write fails with -ENOSPC and a clear message, nothing is
 *    evicted, the store stays usable (reads, flush, unpin then write), and after a reopen the
 *    index matches the data files.
 *  - When even the index commit of a flush finds no room, the flush evicts an unused blob and
 *    commits again (an LMDB reader in another process pins old pages so the commit must grow
 *    the index file). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "store_test_util.h"

#define PS   (64u << 10)
#define BLOB (8 * PS) /* 512 KiB: eight of them do not fit in the 4 MiB tmpfs */
#define MAXB 24

typedef struct fx {
    char *mnt;      /* the tmpfs mount point */
    char dir[4200]; /* the cache directory in it */
    test_blob b[MAXB];
} fx;

static int mount_tmpfs(const char *dir)
{
    return mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0700") ? -errno : 0;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->mnt = make_tmpdir();
    if (!f->mnt || mount_tmpfs(f->mnt)) {
        fprintf(stderr, "mount tmpfs on %s: %s\n", f->mnt ? f->mnt : "?", strerror(errno));
        if (f->mnt) rmdir(f->mnt);
        free(f->mnt);
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "%s/cache", f->mnt);
    for (int i = 0; i < MAXB; i++) test_blob_make(&f->b[i], 100 + (uint32_t)i, BLOB - 7 * i);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (umount2(f->mnt, MNT_DETACH)) fprintf(stderr, "umount %s: %s\n", f->mnt, strerror(errno));
    rmdir(f->mnt);
    free(f->mnt);
    for (int i = 0; i < MAXB; i++) free(f->b[i].data);
    free(f);
    return 0;
}

static uint32_t npieces(const test_blob *b)
{
    return (uint32_t)proto_piece_count(b->len, PS);
}

/* Every piece the bitmap claims reads back with the right bytes, and the bitmap agrees with
 * what reads see; returns the number of pieces present (-1 if the blob is unknown). */
static int check_blob(peer_store *s, const test_blob *b)
{
    uint8_t bits[8];
    uint32_t count = 0;
    if (peer_store_bitmap(s, b->digest, bits, sizeof(bits), &count)) return -1;
    assert_int_equal(count, npieces(b));
    uint8_t *buf = malloc(PS);
    int present = 0;
    for (uint32_t p = 0; p < count; p++) {
        uint32_t len = proto_piece_len(b->len, PS, p);
        int rc = peer_store_read(s, b->digest, (uint64_t)p * PS, buf, len, NULL, 0, NULL, NULL);
        if (proto_bit_get(bits, p)) {
            assert_int_equal(rc, 0);
            assert_memory_equal(buf, b->data + (uint64_t)p * PS, len);
            present++;
        } else {
            assert_int_equal(rc, -ENODATA);
        }
    }
    free(buf);
    return present;
}

static int write_blob(peer_store *s, const test_blob *b, cf_err *e)
{
    for (uint32_t p = 0; p < npieces(b); p++) {
        int rc = peer_store_write_piece(s, b->digest, p, b->data + (uint64_t)p * PS,
                                        proto_piece_len(b->len, PS, p), e);
        if (rc) return rc;
    }
    return 0;
}

static void test_full_disk_evicts_lru(void **state)
{
    fx *f = *state;
    peer_store *s = open_store(f->dir, 0, 0); /* no quota: only the disk limits */
    assert_non_null(s);
    cf_err e = {0};
    peer_store_stats st = {0};
    int n = 0;
    /* Write blobs, oldest first, until the disk has been full at least twice over. */
    for (; n < MAXB && st.evictions < 3; n++) {
        test_blob *b = &f->b[n];
        assert_int_equal(peer_store_blob_open(s, b->digest, b->len, PS, NULL, NULL, &e), 0);
        int rc = write_blob(s, b, &e);
        if (rc) fail_msg("blob %d: %s", n, cf_err_str(&e, rc));
        assert_int_equal(peer_store_flush(s, &e), 0);
        assert_int_equal(peer_store_verify(s, b->digest, &e), 0);
        peer_store_stats_get(s, &st);
        usleep(2000); /* distinct last-access times: the LRU order is the write order */
    }
    assert_true(st.evictions >= 3); /* the disk did fill up */
    assert_true(n < MAXB);
    /* The evicted ones are exactly the oldest; the rest, with the newest, are complete. */
    uint64_t gone = st.evictions, used = 0;
    for (int i = 0; i < n; i++) {
        peer_blob_info info;
        int rc = peer_store_blob_info(s, f->b[i].digest, &info);
        if ((uint64_t)i < gone) {
            assert_int_equal(rc, -ENOENT);
        } else {
            assert_int_equal(rc, 0);
            assert_true(info.complete && info.verified);
            assert_int_equal(check_blob(s, &f->b[i]), (int)npieces(&f->b[i]));
            used += f->b[i].len;
        }
    }
    assert_int_equal(st.bytes_used, used);
    assert_int_equal(st.bytes_pending, 0);
    peer_store_close(s);

    /* After a restart the index agrees. */
    s = open_store(f->dir, 0, 0);
    assert_non_null(s);
    for (int i = (int)gone; i < n; i++) {
        assert_int_equal(check_blob(s, &f->b[i]), (int)npieces(&f->b[i]));
        assert_int_equal(peer_store_verify(s, f->b[i].digest, &e), 0);
    }
    peer_store_stats_get(s, &st);
    assert_int_equal(st.blobs, (uint64_t)(n - (int)gone));
    assert_int_equal(st.bytes_used, used);
    peer_store_close(s);
}

static void test_full_disk_all_pinned(void **state)
{
    fx *f = *state;
    peer_store *s = open_store(f->dir, 0, 0);
    assert_non_null(s);
    cf_err e = {0};
    int n = 0, rc = 0;
    /* Pinned blobs until a write fails. */
    for (; n < MAXB; n++) {
        test_blob *b = &f->b[n];
        assert_int_equal(peer_store_blob_open(s, b->digest, b->len, PS, NULL, NULL, &e), 0);
        assert_int_equal(peer_store_pin(s, b->digest, &e), 0);
        rc = write_blob(s, b, &e);
        if (rc) break;
        assert_int_equal(peer_store_flush(s, &e), 0);
    }
    assert_true(n < MAXB && n > 1);
    assert_int_equal(rc, -ENOSPC);
    assert_non_null(strstr(e.msg, "no space"));
    assert_non_null(strstr(e.msg, f->dir));
    assert_non_null(strstr(e.msg, "pinned or in use"));
    peer_store_stats st;
    peer_store_stats_get(s, &st);
    assert_int_equal(st.evictions, 0);

    /* Still usable: the full blobs read back, the partial one keeps what it got, a flush
     * works, a repeated write fails the same way without side effects. */
    for (int i = 0; i < n; i++) assert_int_equal(check_blob(s, &f->b[i]), (int)npieces(&f->b[i]));
    test_blob *last = &f->b[n];
    int partial = check_blob(s, last);
    assert_true(partial >= 0 && partial < (int)npieces(last));
    uint32_t p = (uint32_t)partial; /* written in order: the first missing piece */
    assert_int_equal(peer_store_flush(s, &e), 0);
    assert_int_equal(peer_store_write_piece(s, last->digest, p, last->data + (uint64_t)p * PS,
                                            proto_piece_len(last->len, PS, p), &e),
                     -ENOSPC);
    assert_int_equal(check_blob(s, last), partial);

    /* Unpinning the oldest makes room: it is evicted, the write goes through. */
    assert_int_equal(peer_store_unpin(s, f->b[0].digest, &e), 0);
    rc = write_blob(s, last, &e);
    if (rc) fail_msg("after unpin: %s", cf_err_str(&e, rc));
    assert_int_equal(peer_store_flush(s, &e), 0);
    assert_int_equal(peer_store_verify(s, last->digest, &e), 0);
    peer_store_stats_get(s, &st);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(check_blob(s, &f->b[0]), -1);
    peer_store_close(s);

    /* Reopen: the index is consistent with the data files. */
    s = open_store(f->dir, 0, 0);
    assert_non_null(s);
    uint64_t used = 0;
    assert_int_equal(check_blob(s, &f->b[0]), -1);
    for (int i = 1; i <= n; i++) {
        peer_blob_info info;
        assert_int_equal(peer_store_blob_info(s, f->b[i].digest, &info), 0);
        assert_int_equal(info.pin_count, 1);
        assert_int_equal(check_blob(s, &f->b[i]), (int)npieces(&f->b[i]));
        assert_int_equal(peer_store_verify(s, f->b[i].digest, &e), 0);
        used += f->b[i].len;
    }
    peer_store_stats_get(s, &st);
    assert_int_equal(st.blobs, (uint64_t)n);
    assert_int_equal(st.bytes_used, used);
    peer_store_close(s);
}

/* A process holding an LMDB read transaction on the index: pages freed after its snapshot
 * cannot be reused, so every further commit needs new pages from the file system. */
static pid_t start_reader(const char *dir, int *release_fd)
{
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Only the pipes: an inherited data-file descriptor would keep an evicted file's
         * blocks allocated. */
        for (int fd = 3; fd < 1024; fd++)
            if (fd != up[1] && fd != down[0]) close(fd);
        char path[4300];
        snprintf(path, sizeof(path), "%s/index", dir);
        MDB_env *env;
        MDB_txn *txn;
        char c = 1;
        if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 4) ||
            mdb_env_open(env, path, MDB_RDONLY | MDB_NOTLS, 0600) ||
            mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
            _exit(2);
        if (write(up[1], &c, 1) != 1) _exit(3);
        (void)!read(down[0], &c, 1); /* until the parent closes its end */
        mdb_txn_abort(txn);
        mdb_env_close(env);
        _exit(0);
    }
    close(up[1]);
    close(down[0]);
    char c = 0;
    assert_int_equal(read(up[0], &c, 1), 1);
    close(up[0]);
    *release_fd = down[1];
    return pid;
}

/* Fills the file system with a file outside the cache. */
static void fill_disk(const char *mnt)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/filler", mnt);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static uint8_t buf[4096];
    while (write(fd, buf, sizeof(buf)) > 0) {
    }
    assert_int_equal(errno, ENOSPC);
    close(fd);
}

/* The disk fills up before a flush, and the index commit itself has no room: the flush evicts
 * an unused blob as a piece write would, then commits; nothing written is lost. */
static void test_full_disk_index_commit(void **state)
{
    fx *f = *state;
    peer_store *s = open_store(f->dir, 0, 0);
    assert_non_null(s);
    cf_err e = {0};
    test_blob *a = &f->b[0], *b = &f->b[1];
    assert_int_equal(peer_store_blob_open(s, a->digest, a->len, PS, NULL, NULL, &e), 0);
    assert_int_equal(write_blob(s, a, &e), 0);
    assert_int_equal(peer_store_verify(s, a->digest, &e), 0);
    usleep(2000);
    assert_int_equal(peer_store_blob_open(s, b->digest, b->len, PS, NULL, NULL, &e), 0);
    assert_int_equal(peer_store_pin(s, b->digest, &e), 0);
    for (uint32_t p = 0; p < 4; p++) assert_int_equal(write_piece_of(s, b, PS, p), 0);

    int release = -1;
    pid_t reader = start_reader(f->dir, &release);
    /* Use up the index pages that are still reusable; from now on commits grow the file. */
    for (int i = 0; i < 40; i++) {
        assert_int_equal(peer_store_pin(s, b->digest, &e), 0);
        assert_int_equal(peer_store_unpin(s, b->digest, &e), 0);
    }
    fill_disk(f->mnt);
    int rc = peer_store_flush(s, &e);
    if (rc) fail_msg("flush on a full disk: %s", cf_err_str(&e, rc));
    peer_store_stats st;
    peer_store_stats_get(s, &st);
    assert_int_equal(st.evictions, 1); /* a, the unused blob */
    assert_int_equal(check_blob(s, a), -1);
    peer_blob_info info;
    assert_int_equal(peer_store_blob_info(s, b->digest, &info), 0);
    assert_int_equal(info.pieces_durable, 4);
    assert_int_equal(check_blob(s, b), 4);

    close(release);
    int status = 0;
    assert_int_equal(waitpid(reader, &status, 0), reader);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    peer_store_close(s);

    /* After a restart: b has its pieces, a is gone (its record was deleted once its data
     * file had freed the disk). */
    s = open_store(f->dir, 0, 0);
    assert_non_null(s);
    assert_int_equal(check_blob(s, b), 4);
    assert_int_equal(check_blob(s, a), -1);
    peer_store_stats_get(s, &st);
    assert_int_equal(st.blobs, 1);
    assert_int_equal(st.bytes_used, 4 * PS);
    peer_store_close(s);
}

int main(void)
{
    /* Mounting needs CAP_SYS_ADMIN: skip visibly (exit 77, ctest "Skipped") without it. */
    char *probe = make_tmpdir();
    if (!probe) return 1;
    int rc = mount_tmpfs(probe);
    if (rc) {
        printf("SKIP: cannot mount a tmpfs for the full-disk test (%s); run as root\n",
               strerror(-rc));
        rmdir(probe);
        free(probe);
        return 77;
    }
    umount2(probe, MNT_DETACH);
    rmdir(probe);
    free(probe);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_disk_evicts_lru, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_all_pinned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_index_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
