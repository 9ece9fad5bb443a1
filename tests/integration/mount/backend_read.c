/* Test driver for chunkfly-mount's blob backends: loads a nydusd config, opens one blob and
 * reads it through mount/backend.h, then prints what a test checks.
 *
 *   backend_read [options] CONFIG BLOB_ID
 *     --size N          blob size as a blob table would give it (default: learn it)
 *     --range OFF:LEN   read only this range (default: the whole blob)
 *     --chunk N         read in pieces of N bytes (default 1 MiB)
 *     --compare FILE    every piece must equal FILE's bytes at the same offset
 *     --threads N       N threads each read --reads random pieces (with --compare)
 *     --reads N         per thread (default 64)
 *     --auth B64        mount_backend_set_auth(B64) before reading
 *     --step BYTES:F    once BYTES are read, create F.ready and wait for F to exist (the
 *                       script kills/starts servers meanwhile); may repeat. A read that fails
 *                       while a step is pending takes that step at once and is retried after
 *                       it (the script brings the server back)
 *
 * Prints "sha256 <hex>" and "bytes <n>" lines (sequential mode), "max_read_ms <ms>" (the slowest
 * piece), "resume_ms <ms>" (the first piece after each step), and a stats line. Exit 0, 1 on a read
 * error (after "error <errno name> after <ms> ms" on stdout), 2 on bad usage/setup. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cf/digest.h"
#include "cf/file_io.h"
#include "cf/hex.h"
#include "mount/backend.h"

#define MAX_STEPS 8

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *errname(int e)
{
    switch (e) {
    case ENOENT:
        return "ENOENT";
    case EACCES:
        return "EACCES";
    case ETIMEDOUT:
        return "ETIMEDOUT";
    case ECONNREFUSED:
        return "ECONNREFUSED";
    case EIO:
        return "EIO";
    case ERANGE:
        return "ERANGE";
    case EPROTO:
        return "EPROTO";
    case EAGAIN:
        return "EAGAIN";
    case EHOSTUNREACH:
        return "EHOSTUNREACH";
    default:
        return strerror(e);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: backend_read [--size N] [--range OFF:LEN] [--chunk N] [--compare F] "
                    "[--threads N] [--reads N] [--auth B64] [--step BYTES:FILE]... CONFIG "
                    "BLOB_ID\n");
    exit(2);
}

/* Signals F.ready, then waits until the script creates F. */
static void wait_step(const char *f)
{
    char ready[4096];
    snprintf(ready, sizeof(ready), "%s.ready", f);
    close(open(ready, O_CREAT | O_WRONLY, 0644));
    while (access(f, F_OK) != 0) usleep(20000);
}

struct shared {
    rafs_blob_source *src;
    const uint8_t *ref;
    uint64_t size;
    size_t chunk;
    int reads;
    unsigned seed;
    int failed;
};

static void *random_reader(void *arg)
{
    struct shared *sh = arg;
    unsigned seed = __atomic_fetch_add(&sh->seed, 7919, __ATOMIC_RELAXED);
    uint8_t *buf = malloc(sh->chunk);
    for (int i = 0; buf && i < sh->reads; i++) {
        uint64_t off = (uint64_t)rand_r(&seed) * 4096 % sh->size;
        size_t len = 1 + (size_t)rand_r(&seed) % sh->chunk;
        ssize_t n = rafs_blob_source_pread(sh->src, buf, len, off);
        size_t want = off + len > sh->size ? (size_t)(sh->size - off) : len;
        if (n != (ssize_t)want || memcmp(buf, sh->ref + off, want) != 0) {
            printf("random read %" PRIu64 "+%zu: got %zd, %s\n", off, len, n,
                   n == (ssize_t)want ? "bytes differ" : "wrong count");
            __atomic_store_n(&sh->failed, 1, __ATOMIC_RELAXED);
            break;
        }
    }
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t size = 0, r_off = 0, r_len = 0;
    size_t chunk = 1u << 20;
    const char *compare = NULL, *auth = NULL;
    int threads = 0, reads = 64, n_steps = 0;
    uint64_t step_at[MAX_STEPS];
    const char *step_file[MAX_STEPS];
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (strcmp(o, "--size") == 0)
            size = strtoull(v, NULL, 10);
        else if (strcmp(o, "--range") == 0) {
            if (sscanf(v, "%" SCNu64 ":%" SCNu64, &r_off, &r_len) != 2 || !r_len) usage();
        } else if (strcmp(o, "--chunk") == 0)
            chunk = (size_t)strtoull(v, NULL, 10);
        else if (strcmp(o, "--compare") == 0)
            compare = v;
        else if (strcmp(o, "--threads") == 0)
            threads = atoi(v);
        else if (strcmp(o, "--reads") == 0)
            reads = atoi(v);
        else if (strcmp(o, "--auth") == 0)
            auth = v;
        else if (strcmp(o, "--step") == 0 && n_steps < MAX_STEPS) {
            char *colon = strchr(v, ':');
            if (!colon) usage();
            step_at[n_steps] = strtoull(v, NULL, 10);
            step_file[n_steps++] = colon + 1;
        } else
            usage();
    }
    if (argc - i != 2 || !chunk) usage();
    const char *config = argv[i], *blob_id = argv[i + 1];

    cf_err err = {0};
    struct mount_config *cfg = NULL;
    mount_backend *b = NULL;
    rafs_blob_source *src = NULL;
    if (mount_config_load(config, &cfg, &err) < 0 ||
        mount_backend_new(&cfg->backend, &b, &err) < 0 ||
        (auth && mount_backend_set_auth(b, auth, &err) < 0) ||
        mount_backend_open_blob(b, blob_id, size, &src, &err) < 0) {
        printf("setup error %s: %s\n", errname(-err.code), err.msg);
        mount_backend_free(b);
        mount_config_free(cfg);
        return 2;
    }
    uint8_t *ref = NULL;
    size_t ref_len = 0;
    if (compare && cf_read_file(compare, (size_t)1 << 32, &ref, &ref_len, &err) < 0) {
        printf("setup error: %s\n", err.msg);
        return 2;
    }

    int rc = 0;
    double t0 = now_ms(), max_ms = 0;
    if (threads > 0) {
        if (!ref) usage();
        struct shared sh = {src, ref, ref_len, chunk, reads, 1, 0};
        pthread_t th[64];
        if (threads > 64) threads = 64;
        for (int t = 0; t < threads; t++) pthread_create(&th[t], NULL, random_reader, &sh);
        for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
        rc = sh.failed;
        printf("random %s: %d threads x %d reads\n", rc ? "FAILED" : "ok", threads, reads);
    } else {
        uint64_t total = 0;
        int src_rc = r_len ? 0 : rafs_blob_source_size(src, &total);
        if (src_rc < 0) {
            printf("error %s (size) after %.0f ms\n", errname(-src_rc), now_ms() - t0);
            rc = 1;
        }
        uint64_t off = r_len ? r_off : 0, end = r_len ? r_off + r_len : total;
        uint8_t *buf = malloc(chunk);
        cf_digest_ctx h;
        cf_digest_init(&h, CF_DIGEST_SHA256);
        uint64_t done = 0;
        int step = 0, resumed = 1;
        while (!rc && off < end) {
            while (step < n_steps && done >= step_at[step]) {
                wait_step(step_file[step++]);
                resumed = 0;
            }
            size_t len = end - off < chunk ? (size_t)(end - off) : chunk;
            double a = now_ms();
            ssize_t n = rafs_blob_source_pread(src, buf, len, off);
            double ms = now_ms() - a;
            if (ms > max_ms) max_ms = ms;
            if (!resumed) {
                printf("resume_ms %.0f\n", ms);
                resumed = 1;
            }
            if (n == 0) break; /* the blob ends before the range does */
            if (n < 0) {
                printf("error %s after %.0f ms at offset %" PRIu64 "\n", errname((int)-n), ms, off);
                if (step < n_steps) { /* the next step repairs things: retry after it */
                    wait_step(step_file[step++]);
                    resumed = 0;
                    continue;
                }
                rc = 1;
                break;
            }
            if (ref && (off + (uint64_t)n > ref_len || memcmp(buf, ref + off, (size_t)n) != 0)) {
                printf("bytes differ at %" PRIu64 "+%zd\n", off, n);
                rc = 1;
                break;
            }
            cf_digest_update(&h, buf, (size_t)n);
            off += (uint64_t)n;
            done += (uint64_t)n;
        }
        uint8_t md[32];
        char hex[65];
        cf_digest_final(&h, md);
        cf_hex_encode(md, 32, hex);
        if (!rc) printf("sha256 %s\nbytes %" PRIu64 "\n", hex, done);
        printf("max_read_ms %.0f\n", max_ms);
        free(buf);
    }
    struct mount_backend_stats st;
    mount_backend_stats(b, &st);
    printf("stats proxy=%" PRIu64 " registry=%" PRIu64 " localfs=%" PRIu64 " requests=%" PRIu64
           " errors=%" PRIu64 " fallbacks=%" PRIu64 " healthy=%d\n",
           st.bytes_from_proxy, st.bytes_from_registry, st.bytes_from_localfs, st.requests,
           st.errors, st.fallbacks, st.proxy_healthy);
    rafs_blob_source_close(src);
    mount_backend_free(b);
    mount_config_free(cfg);
    free(ref);
    return rc;
}
