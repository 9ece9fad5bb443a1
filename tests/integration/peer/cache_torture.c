/* cache_torture: drives the peer piece store for the crash test (peer_cache_crash.sh).
 *
 *   cache_torture write  DIR SEED MAX_MS   write pieces of a fixed set of deterministic blobs in
 *                                          a seeded random order, with reads, leases, flushes,
 *                                          verifies, purges and quota evictions, until MAX_MS
 *                                          passed (it is meant to be killed with -9 before)
 *   cache_torture fsck   DIR               reopen (recovery) and check every present piece's
 *                                          bytes and the index's consistency; exit 1 on damage
 *   cache_torture finish DIR               download every blob of the set completely, verify
 *                                          each with peer_store_verify, print "<hex> <path>"
 *
 * Blob i of the set has length BLOB_BASE + i * BLOB_STEP + 4097 * i, content byte j =
 * blob_byte(i, j), digest = its SHA-256. Nothing in the store is trusted by fsck except
 * through these rules. */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cf/digest.h"
#include "cf/hex.h"
#include "cf/log.h"
#include "peer/piece_store.h"

#define NBLOBS    6
#define PS        (64u << 10)
#define BLOB_BASE (5u << 20)
#define BLOB_STEP (1300u << 10)
#define QUOTA_HI  (24ull << 20)
#define QUOTA_LO  (16ull << 20)

static uint8_t blob_byte(uint32_t seed, uint64_t i)
{
    uint64_t x = (i / 8 + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)(seed + 1) << 32 | seed);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (uint8_t)(x >> (8 * (i % 8)));
}

static uint64_t blob_len(uint32_t i)
{
    return BLOB_BASE + (uint64_t)i * BLOB_STEP + 4097u * i;
}

static void fill(uint32_t blob, uint64_t off, uint8_t *buf, size_t n)
{
    size_t k = 0;
    for (; k < n && (off + k) % 8; k++) buf[k] = blob_byte(blob, off + k);
    for (; k + 8 <= n; k += 8) {
        uint64_t x =
            ((off + k) / 8 + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)(blob + 1) << 32 | blob);
        x ^= x >> 31;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 29;
        for (int j = 0; j < 8; j++) buf[k + j] = (uint8_t)(x >> (8 * j));
    }
    for (; k < n; k++) buf[k] = blob_byte(blob, off + k);
}

static uint8_t digests[NBLOBS][32];

static void compute_digests(void)
{
    uint8_t *buf = malloc(PS);
    for (uint32_t i = 0; i < NBLOBS; i++) {
        cf_digest_ctx c;
        cf_digest_init(&c, CF_DIGEST_SHA256);
        for (uint64_t off = 0; off < blob_len(i); off += PS) {
            size_t n = blob_len(i) - off < PS ? (size_t)(blob_len(i) - off) : PS;
            fill(i, off, buf, n);
            cf_digest_update(&c, buf, n);
        }
        cf_digest_final(&c, digests[i]);
    }
    free(buf);
}

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static peer_store *open_cache(const char *dir, int quota)
{
    peer_store_opts o = {0};
    o.dir = dir;
    if (quota) {
        o.quota_high = QUOTA_HI;
        o.quota_low = QUOTA_LO;
    }
    o.map_size = 64ull << 20;
    o.flush_pieces = 8; /* many small batches: many crash windows */
    o.flush_delay_ms = 20;
    o.max_open_files = 2;
    peer_store *s;
    cf_err e = {0};
    int rc = peer_store_open(&o, &s, &e);
    if (rc) {
        fprintf(stderr, "cache_torture: open %s: %s\n", dir, cf_err_str(&e, rc));
        return NULL;
    }
    return s;
}

#define CHECK(rc, what)                                                                            \
    do {                                                                                           \
        if (rc) {                                                                                  \
            fprintf(stderr, "cache_torture: %s: %s\n", what, cf_err_str(&e, rc));                  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* The daemon's flush timer: flushes from another thread while pieces are being written. */
static atomic_int stop_flusher;
static void *flusher_main(void *arg)
{
    peer_store *s = arg;
    while (!stop_flusher) {
        cf_err e = {0};
        int rc = peer_store_flush(s, &e);
        if (rc) {
            fprintf(stderr, "cache_torture: background flush: %s\n", cf_err_str(&e, rc));
            exit(1);
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int cmd_write(const char *dir, uint64_t seed, uint64_t max_ms)
{
    rng = seed * 2654435761u + 0x1234567;
    compute_digests();
    peer_store *s = open_cache(dir, 1);
    if (!s) return 1;
    uint8_t *buf = malloc(PS), *rbuf = malloc(PS);
    uint64_t start = now_ms();
    cf_err e = {0};
    pthread_t flusher;
    pthread_create(&flusher, NULL, flusher_main, s);
    printf("ready\n");
    fflush(stdout);
    while (now_ms() - start < max_ms) {
        uint32_t bi = (uint32_t)(rnd() % NBLOBS);
        const uint8_t *d = digests[bi];
        uint64_t len = blob_len(bi);
        int rc = peer_store_blob_open(s, d, len, PS, "torture", NULL, &e);
        CHECK(rc, "blob_open");
        peer_blob_ref *ref;
        if (peer_store_blob_acquire(s, d, &ref)) continue;
        uint32_t np = (uint32_t)((len + PS - 1) / PS);
        /* A burst of random pieces of this blob. */
        for (int k = 0; k < 64; k++) {
            uint32_t p = (uint32_t)(rnd() % np);
            uint64_t off = (uint64_t)p * PS;
            size_t n = len - off < PS ? (size_t)(len - off) : PS;
            fill(bi, off, buf, n);
            rc = peer_store_write_piece(s, d, p, buf, n, &e);
            CHECK(rc, "write_piece");
            /* Read back a random range: succeeds only if its pieces are there. */
            uint64_t roff = rnd() % len;
            size_t rlen = (size_t)(rnd() % PS) + 1;
            if (rlen > len - roff) rlen = (size_t)(len - roff);
            rc = peer_store_read(s, d, roff, rbuf, rlen, NULL, 0, NULL, &e);
            if (rc == 0) {
                fill(bi, roff, buf, rlen);
                if (memcmp(buf, rbuf, rlen)) {
                    fprintf(stderr, "cache_torture: blob %u read at %llu: wrong bytes\n", bi,
                            (unsigned long long)roff);
                    exit(1);
                }
            } else if (rc != -ENODATA) {
                CHECK(rc, "read");
            }
            peer_piece_lease l;
            if (peer_store_lease_piece(s, d, p, &l, NULL) == 0) peer_store_lease_release(s, &l);
        }
        peer_blob_info info;
        if (peer_store_blob_info(s, d, &info) == 0 && info.complete && !info.verified) {
            rc = peer_store_verify(s, d, &e);
            CHECK(rc, "verify");
        }
        peer_store_blob_release(s, ref);
        uint64_t r = rnd() % 16;
        if (r == 0) {
            rc = peer_store_flush(s, &e);
            CHECK(rc, "flush");
        } else if (r == 1) {
            peer_store_purge(s, digests[rnd() % NBLOBS], NULL);
        } else if (r == 2) {
            peer_store_pin(s, d, NULL);
        } else if (r == 3) {
            peer_store_unpin(s, d, NULL);
        }
    }
    stop_flusher = 1;
    pthread_join(flusher, NULL);
    peer_store_close(s);
    free(buf);
    free(rbuf);
    return 0;
}

static int find_blob(const uint8_t *d)
{
    for (int i = 0; i < NBLOBS; i++)
        if (!memcmp(digests[i], d, 32)) return i;
    return -1;
}

static int cmd_fsck(const char *dir)
{
    compute_digests();
    peer_store *s = open_cache(dir, 0);
    if (!s) return 1;
    peer_blob_info *list;
    size_t n;
    int bad = 0;
    cf_err e = {0};
    if (peer_store_list(s, &list, &n)) return 1;
    uint8_t *buf = malloc(PS), *want = malloc(PS);
    uint64_t total = 0, pieces = 0;
    for (size_t i = 0; i < n; i++) {
        peer_blob_info *b = &list[i];
        char hex[65];
        cf_hex_encode(b->digest, 32, hex);
        int bi = find_blob(b->digest);
        if (bi < 0 || b->length != blob_len((uint32_t)bi) || b->piece_size != PS) {
            fprintf(stderr, "fsck: unknown blob %s in the index\n", hex);
            bad++;
            continue;
        }
        if (b->pieces_written != b->pieces_durable) {
            fprintf(stderr, "fsck: blob %d: %u written but %u durable right after open\n", bi,
                    b->pieces_written, b->pieces_durable);
            bad++;
        }
        if (b->verified && !b->complete) {
            fprintf(stderr, "fsck: blob %d: verified but incomplete\n", bi);
            bad++;
        }
        char path[4200];
        snprintf(path, sizeof(path), "%s/data/%.2s/%s", dir, hex, hex);
        struct stat st;
        if (stat(path, &st) || (uint64_t)st.st_size != b->length) {
            fprintf(stderr, "fsck: blob %d: data file %s missing or wrong size\n", bi, path);
            bad++;
        }
        uint8_t bits[(BLOB_BASE + NBLOBS * (BLOB_STEP + 4097u)) / PS / 8 + 8];
        uint32_t count;
        if (peer_store_bitmap(s, b->digest, bits, sizeof(bits), &count)) {
            bad++;
            continue;
        }
        uint32_t cnt = 0;
        for (uint32_t p = 0; p < count; p++) {
            uint64_t off = (uint64_t)p * PS;
            size_t len = b->length - off < PS ? (size_t)(b->length - off) : PS;
            int present = (bits[p / 8] >> (p % 8)) & 1;
            int rc = peer_store_read(s, b->digest, off, buf, len, NULL, 0, NULL, &e);
            if (present != (rc == 0)) {
                fprintf(stderr, "fsck: blob %d piece %u: bitmap %d but read -> %d\n", bi, p,
                        present, rc);
                bad++;
            }
            if (!present) continue;
            cnt++;
            total += len;
            fill((uint32_t)bi, off, want, len);
            if (rc == 0 && memcmp(buf, want, len)) {
                fprintf(stderr, "fsck: blob %d piece %u: recorded present but bytes differ\n", bi,
                        p);
                bad++;
            }
        }
        pieces += cnt;
        if (cnt != b->pieces_written) {
            fprintf(stderr, "fsck: blob %d: bitmap has %u pieces, info says %u\n", bi, cnt,
                    b->pieces_written);
            bad++;
        }
    }
    peer_store_stats st;
    peer_store_stats_get(s, &st);
    if (st.bytes_used != total || st.blobs != n) {
        fprintf(stderr, "fsck: stats say %llu bytes in %llu blobs, pieces sum to %llu in %zu\n",
                (unsigned long long)st.bytes_used, (unsigned long long)st.blobs,
                (unsigned long long)total, n);
        bad++;
    }
    /* No data file without an index entry survives recovery. */
    char ddir[4200];
    snprintf(ddir, sizeof(ddir), "%s/data", dir);
    DIR *d = opendir(ddir);
    size_t files = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char sub[4500];
        snprintf(sub, sizeof(sub), "%s/%s", ddir, de->d_name);
        DIR *d2 = opendir(sub);
        struct dirent *f;
        while (d2 && (f = readdir(d2)))
            if (f->d_name[0] != '.') files++;
        if (d2) closedir(d2);
    }
    if (d) closedir(d);
    if (files != n) {
        fprintf(stderr, "fsck: %zu data files for %zu index entries\n", files, n);
        bad++;
    }
    printf("fsck: %zu blob(s), %llu present piece(s), %llu bytes: %s\n", n,
           (unsigned long long)pieces, (unsigned long long)total, bad ? "DAMAGED" : "ok");
    free(list);
    free(buf);
    free(want);
    peer_store_close(s);
    return bad ? 1 : 0;
}

static int cmd_finish(const char *dir)
{
    compute_digests();
    peer_store *s = open_cache(dir, 0);
    if (!s) return 1;
    uint8_t *buf = malloc(PS);
    cf_err e = {0};
    for (uint32_t bi = 0; bi < NBLOBS; bi++) {
        const uint8_t *d = digests[bi];
        uint64_t len = blob_len(bi);
        int rc = peer_store_blob_open(s, d, len, PS, "torture", NULL, &e);
        CHECK(rc, "blob_open");
        uint32_t np = (uint32_t)((len + PS - 1) / PS);
        for (uint32_t p = 0; p < np; p++) {
            uint64_t off = (uint64_t)p * PS;
            size_t n = len - off < PS ? (size_t)(len - off) : PS;
            fill(bi, off, buf, n);
            rc = peer_store_write_piece(s, d, p, buf, n, &e);
            CHECK(rc, "write_piece");
        }
        rc = peer_store_verify(s, d, &e);
        CHECK(rc, "verify");
        char hex[65];
        cf_hex_encode(d, 32, hex);
        printf("%s %s/data/%.2s/%s\n", hex, dir, hex, hex);
    }
    free(buf);
    peer_store_close(s);
    return 0;
}

int main(int argc, char **argv)
{
    cf_log_set_level(CF_LOG_WARN);
    if (argc == 5 && !strcmp(argv[1], "write"))
        return cmd_write(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    if (argc == 3 && !strcmp(argv[1], "fsck")) return cmd_fsck(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "finish")) return cmd_finish(argv[2]);
    fprintf(stderr, "usage: cache_torture write DIR SEED MAX_MS | fsck DIR | finish DIR\n");
    return 2;
}
