/* chunkfly-mount's life cycle: config + image + cache checked before mounting, stale mount
 * cleaned, FUSE served until SIGTERM, background prefetch. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cf/log.h"
#include "mount/blob_cache.h"
#include "mount/fuse_fs.h"
#include "mount_tool.h"
#include "rafs/reader.h"
#ifdef CHUNKFLY_MOUNT_BACKEND
#include "mount/backend.h"
#include "mount/config.h"
#endif

/* Where blob bytes come from: the config's backend, or --blob-dir. */
struct blobs {
    const char *dir;
#ifdef CHUNKFLY_MOUNT_BACKEND
    mount_backend *backend;
#endif
};

static int open_blob(void *ctx, const struct rafs_blob_info *bi, rafs_blob_source **out,
                     cf_err *err)
{
    struct blobs *b = ctx;
    if (b->dir) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof(path), "%s/%s", b->dir, bi->id);
        return rafs_blob_source_open_path(path, out, err);
    }
#ifdef CHUNKFLY_MOUNT_BACKEND
    if (b->backend) return mount_backend_open_blob(b->backend, bi->id, bi->compressed_size, out, err);
#endif
    return cf_err_set(err, -ENOENT, "blob %s: no backend configured", bi->id);
}

static bool say_stderr; /* with --log-file, errors are shown on stderr as well */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* to the terminal (or the snapshotter's captured stderr) and to the log file if any */
    if (say_stderr) fprintf(stderr, "chunkfly-mount: %s\n", msg);
    cf_error("%s", msg);
}

/* ---- prefetch ------------------------------------------------------------------------------ */

struct prefetch {
    const rafs_image *img;
    mount_blob_cache *cache;
    uint64_t *nids;
    size_t n;
    int stop;      /* atomic */
    uint64_t rate; /* backend bytes/s, 0 = unlimited (fs_prefetch.bandwidth_rate) */
    pthread_t th;
    bool running;
};

struct subtree {
    const char *prefix; /* "a/b" without leading '/'; "" = everything */
    uint64_t **nids;
    size_t *n, *cap;
};

static int add_nid(uint64_t **nids, size_t *n, size_t *cap, uint64_t nid)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        uint64_t *nn = realloc(*nids, c * sizeof(*nn));
        if (!nn) return -ENOMEM;
        *nids = nn;
        *cap = c;
    }
    (*nids)[(*n)++] = nid;
    return 0;
}

static int subtree_fn(const struct rafs_walk_entry *e, void *ctx)
{
    struct subtree *s = ctx;
    size_t pl = strlen(s->prefix);
    if ((e->st->mode & S_IFMT) != S_IFREG) return 0;
    if (pl && (strncmp(e->path, s->prefix, pl) || e->path[pl] != '/')) return 0;
    return add_nid(s->nids, s->n, s->cap, e->nid);
}

static void *prefetch_main(void *arg)
{
    struct prefetch *p = arg;
    size_t done = 0, failed = 0;
    struct mount_blob_cache_stats st0, st;
    struct timespec t0, t;
    mount_blob_cache_get_stats(p->cache, &st0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < p->n && !__atomic_load_n(&p->stop, __ATOMIC_RELAXED); i++) {
        if (p->rate) { /* pace by the backend bytes fetched so far (on-demand reads count too) */
            mount_blob_cache_get_stats(p->cache, &st);
            clock_gettime(CLOCK_MONOTONIC, &t);
            double el = (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
            double due = (double)(st.backend_bytes - st0.backend_bytes) / (double)p->rate;
            while (due > el && !__atomic_load_n(&p->stop, __ATOMIC_RELAXED)) {
                usleep(20 * 1000);
                el += 0.02;
            }
        }
        cf_err err = {0};
        if (mount_blob_cache_fill_file(p->cache, p->nids[i], &err)) {
            failed++;
            cf_warn("prefetch of nid %llu: %s", (unsigned long long)p->nids[i], err.msg);
        } else {
            done++;
        }
    }
    cf_info("prefetch: %zu files filled, %zu failed", done, failed);
    return NULL;
}

/* Files to prefetch: the bootstrap's prefetch table (when enabled) and --prefetch-files
 * (a directory means every file under it). Unknown paths are logged, not fatal (nydusd). */
static int prefetch_list(const rafs_image *img, const struct mount_tool_opts *o, bool table,
                         bool all, uint64_t **nids, size_t *n)
{
    size_t cap = 0;
    *nids = NULL;
    *n = 0;
    int rc = 0;
    uint32_t cnt = table ? rafs_image_prefetch_count(img) : 0;
    for (size_t i = 0; !rc && i < cnt + o->nprefetch; i++) {
        uint64_t nid;
        struct rafs_stat st;
        const char *path = i < cnt ? NULL : o->prefetch[i - cnt];
        if (path) {
            cf_err err = {0};
            if (rafs_lookup(img, path, &nid, &err)) {
                cf_warn("--prefetch-files %s: %s", path, err.msg);
                continue;
            }
        } else {
            nid = rafs_image_prefetch_nid(img, (uint32_t)i);
        }
        if (rafs_stat(img, nid, &st, NULL)) continue;
        if (S_ISREG(st.mode)) {
            rc = add_nid(nids, n, &cap, nid);
        } else if (S_ISDIR(st.mode)) {
            /* the table holds nids, not paths: a directory from it means the whole tree when
             * it is the root; other table directories are rare, walked by path when given */
            const char *prefix = path ? path : (nid == rafs_image_super(img)->root_nid ? "" : NULL);
            if (!prefix) continue;
            while (*prefix == '/') prefix++;
            char pre[RAFS_PATH_MAX];
            snprintf(pre, sizeof(pre), "%s", prefix);
            size_t l = strlen(pre);
            while (l && pre[l - 1] == '/') pre[--l] = 0;
            struct subtree s = {pre, nids, n, &cap};
            rc = rafs_walk(img, subtree_fn, &s, NULL);
        }
    }
    if (!rc && all) { /* fs_prefetch.prefetch_all: then everything else */
        struct subtree s = {"", nids, n, &cap};
        rc = rafs_walk(img, subtree_fn, &s, NULL);
    }
    return rc;
}

static bool is_rafs_v5(const char *path)
{
    uint8_t head[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, head, sizeof(head));
    close(fd);
    return n > 0 && rafs_detect_version(head, (size_t)n, NULL) == 5;
}

/* ---- signals: SIGTERM/SIGINT/SIGHUP end the daemon cleanly (unmount, exit 0) ---------------- */

struct sigwatch {
    sigset_t set;
    mount_fs *fs;
    pthread_t th;
    bool running;
};

static void *sig_main(void *arg)
{
    struct sigwatch *w = arg;
    int sig = 0;
    while (sigwait(&w->set, &sig) == 0) {
        if (sig == SIGUSR1) break; /* our own "daemon is done" */
        cf_info("signal %d: unmounting", sig);
        mount_fs_stop(w->fs);
    }
    return NULL;
}

/* ---- run ----------------------------------------------------------------------------------- */

int mount_tool_run(const struct mount_tool_opts *o)
{
    int code = 1, rc;
    cf_err err = {0};
    rafs_image *img = NULL;
    mount_blob_cache *cache = NULL;
    mount_fs *fs = NULL;
    struct blobs blobs = {0};
    struct prefetch pf = {0};
    const char *work_dir = o->cache_dir;
    uint64_t amplify = 0;
    bool xattr = true, table_prefetch = false, prefetch_all = false;
#ifdef CHUNKFLY_MOUNT_BACKEND
    struct mount_config *cfg = NULL;
#endif

    say_stderr = o->log_to_file;
    /* Signals are taken by one thread (sigwait): block them here, before any thread exists,
     * so every thread (libfuse's workers too) inherits the mask. */
    struct sigwatch sw = {0};
    sigemptyset(&sw.set);
    sigaddset(&sw.set, SIGTERM);
    sigaddset(&sw.set, SIGINT);
    sigaddset(&sw.set, SIGHUP);
    sigaddset(&sw.set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sw.set, NULL);
    if (!o->mountpoint) {
        say("--mountpoint is required");
        return 2;
    }
    if (!o->bootstrap) {
        say("--bootstrap is required: shared mode (images attached through --apisock) is not "
            "implemented yet");
        return 2;
    }
    /* 1. config and backend */
    if (o->config) {
#ifdef CHUNKFLY_MOUNT_BACKEND
        if ((rc = mount_config_load(o->config, &cfg, &err))) {
            if (strstr(err.msg, o->config))
                say("%s", err.msg);
            else
                say("config %s: %s", o->config, cf_err_str(&err, rc));
            goto out;
        }
        if (!work_dir && cfg->cache.enabled) work_dir = cfg->cache.work_dir;
        amplify = cfg->amplify_io;
        xattr = cfg->enable_xattr;
        table_prefetch = cfg->prefetch.enable;
        prefetch_all = cfg->prefetch.enable && cfg->prefetch.prefetch_all;
        pf.rate = cfg->prefetch.bandwidth_rate;
        if (!o->blob_dir && (rc = mount_backend_new(&cfg->backend, &blobs.backend, &err))) {
            say("config %s: backend: %s", o->config, cf_err_str(&err, rc));
            goto out;
        }
#else
        if (!o->blob_dir) {
            say("--config %s: this build has no config/backend library: give --blob-dir DIR "
                "(and --cache-dir DIR)", o->config);
            goto out;
        }
#endif
    } else if (!o->blob_dir) {
        say("no backend: give --config FILE (nydusd JSON) or --blob-dir DIR");
        goto out;
    }
    blobs.dir = o->blob_dir;

    /* 2. the image */
    if (is_rafs_v5(o->bootstrap)) {
        say("bootstrap %s: RAFS v5 is not supported by chunkfly-mount, only RAFS v6 (rebuild the "
            "image as v6: nydus-image --fs-version 6, or chunkfly-image create)",
            o->bootstrap);
        goto out;
    }
    if ((rc = rafs_image_open(o->bootstrap, &img, &err))) {
        if (strstr(err.msg, o->bootstrap))
            say("%s", err.msg);
        else
            say("bootstrap %s: %s", o->bootstrap, cf_err_str(&err, rc));
        goto out;
    }
    for (uint32_t i = 0; i < rafs_image_blob_count(img); i++) {
        const struct rafs_blob_info *bi = rafs_image_blob(img, i);
        const char *what = (bi->features & RAFS_BLOB_ZRAN)        ? "zran (OCI-ref, --oci-ref)"
                           : (bi->features & RAFS_BLOB_BATCH)     ? "batch chunks"
                           : (bi->features & RAFS_BLOB_ENCRYPTED) ? "encryption"
                                                                  : NULL;
        if (what) {
            say("bootstrap %s: blob %s uses %s, which chunkfly-mount does not support",
                o->bootstrap, bi->id, what);
            goto out;
        }
        if (blobs.dir) {
            char path[PATH_MAX_LEN];
            struct stat st;
            snprintf(path, sizeof(path), "%s/%s", blobs.dir, bi->id);
            if (stat(path, &st) < 0) {
                say("data blob %s: %s", path, strerror(errno));
                goto out;
            }
        }
    }

    /* 3. the mountpoint (a dead mount of a killed daemon is cleaned first) */
    if ((rc = mount_fs_clean_stale(o->mountpoint, &err)) < 0) {
        say("%s", err.msg);
        goto out;
    }
    struct stat mst;
    if (stat(o->mountpoint, &mst) < 0 || !S_ISDIR(mst.st_mode)) {
        say("mountpoint %s: %s", o->mountpoint, errno ? strerror(errno) : "not a directory");
        goto out;
    }

    /* 4. cache, filesystem, mount */
    struct mount_blob_cache_opts co = {.work_dir = work_dir, .amplify_io = amplify,
                                       .open_blob = open_blob, .open_ctx = &blobs};
    if ((rc = mount_blob_cache_new(img, &co, &cache, &err))) {
        say("cache: %s", cf_err_str(&err, rc));
        goto out;
    }
    struct mount_fs_opts fo = {.shared = false, .enable_xattr = xattr};
    if ((rc = mount_fs_new(&fo, &fs, &err))) {
        say("%s", cf_err_str(&err, rc));
        goto out;
    }
    pf.img = img;
    pf.cache = cache;
    rc = mount_fs_attach(fs, NULL, img, cache, &err); /* fs owns both from now on */
    img = NULL;
    cache = NULL;
    if (rc) {
        say("%s", cf_err_str(&err, rc));
        goto out;
    }
    struct mount_fs_mount_opts mo = {.allow_other = o->allow_other, .max_threads = o->threads};
    if ((rc = mount_fs_mount(fs, o->mountpoint, &mo, &err))) {
        say("%s", cf_err_str(&err, rc));
        goto out;
    }
    cf_info("mounted %s at %s (blobs from %s, cache %s)", o->bootstrap, o->mountpoint,
            blobs.dir ? blobs.dir : "the config's backend", work_dir ? work_dir : "in /tmp");
    if (prefetch_list(pf.img, o, table_prefetch, prefetch_all, &pf.nids, &pf.n) == 0 && pf.n) {
        if (pthread_create(&pf.th, NULL, prefetch_main, &pf) == 0) pf.running = true;
    }
    sw.fs = fs;
    if (pthread_create(&sw.th, NULL, sig_main, &sw) == 0) sw.running = true;
    rc = mount_fs_run(fs);
    cf_info("%s: unmounting (%s)", o->mountpoint, rc ? strerror(-rc) : "stopped");
    code = rc ? 1 : 0;
out:
    if (sw.running) {
        pthread_kill(sw.th, SIGUSR1);
        pthread_join(sw.th, NULL);
    }
    if (pf.running) {
        __atomic_store_n(&pf.stop, 1, __ATOMIC_RELAXED);
        pthread_join(pf.th, NULL);
    }
    free(pf.nids);
    mount_fs_free(fs);
    mount_blob_cache_free(cache);
    rafs_image_close(img);
#ifdef CHUNKFLY_MOUNT_BACKEND
    mount_backend_free(blobs.backend);
    mount_config_free(cfg);
#endif
    return code;
}
