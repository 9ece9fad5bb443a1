/* chunkfly-mount's life cycle: the image (dedicated mode) checked before mounting, stale mount
 * cleaned, FUSE served until SIGTERM / PUT /api/v1/daemon/exit, the API, prefetch. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "api.h"
#include "cf/log.h"
#include "instance.h"
#include "mount/fuse_fs.h"
#include "mount_tool.h"

static bool say_stderr; /* with --log-file, errors are shown on stderr as well */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (say_stderr) fprintf(stderr, "chunkfly-mount: %s\n", msg);
    cf_error("%s", msg);
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

struct find_img {
    const rafs_image *img;
    const mount_blob_cache *cache;
};

static void find_first(const char *name, const rafs_image *img, const mount_blob_cache *cache,
                       void *owner, void *ctx)
{
    (void)name, (void)owner;
    struct find_img *f = ctx;
    if (!f->img) {
        f->img = img;
        f->cache = cache;
    }
}

static void stop_prefetch_visit(const char *name, const rafs_image *img,
                                const mount_blob_cache *cache, void *owner, void *ctx)
{
    (void)name, (void)img, (void)cache, (void)ctx;
    instance_stop_prefetch(owner);
}

/* ---- kernel-EROFS mode ------------------------------------------------------------------------
 * The kernel mounts the bootstrap itself; each data blob is a `device=` file: a blob complete in
 * the cache as its plain .blob.data, else a file of our blob-device FUSE filesystem, mounted in
 * a private directory and served on a thread of its own. */

static void *loop_main(void *arg)
{
    mount_fs_run(arg);
    return NULL;
}

/* Detaches what a killed erofs-mode daemon left: its dead blob-device FUSE mounts (fsname
 * chunkfly-dev, statfs fails) and, at `mountpoint`, an EROFS mount over them. */
static void clean_stale_erofs(const char *mountpoint)
{
    FILE *f = fopen("/proc/self/mounts", "re");
    char line[8192], real[4096];
    if (!f) return;
    bool mp_erofs = false;
    if (!realpath(mountpoint, real)) real[0] = 0;
    while (fgets(line, sizeof(line), f)) {
        char *dev = strtok(line, " "), *mp = strtok(NULL, " "), *type = strtok(NULL, " ");
        if (!dev || !mp || !type) continue;
        if (real[0] && !strcmp(mp, real)) mp_erofs = !strcmp(type, "erofs");
        if (!strcmp(dev, "chunkfly-dev") && !strncmp(type, "fuse", 4) && !strchr(mp, '\\')) {
            struct statvfs sv;
            if (statvfs(mp, &sv) < 0 && (errno == ENOTCONN || errno == ECONNABORTED) &&
                umount2(mp, MNT_DETACH) == 0) {
                cf_warn("%s: cleaned a dead blob-device mount of a previous daemon", mp);
                rmdir(mp);
            }
        }
    }
    fclose(f);
    if (mp_erofs && umount2(mountpoint, MNT_DETACH) == 0)
        cf_warn("%s: detached the EROFS mount of a previous daemon", mountpoint);
}

static int run_erofs(const struct mount_tool_opts *o, const char *bootstrap, mount_fs *fs,
                     struct sigwatch *sw, cf_err *err)
{
    const char *tmp = getenv("TMPDIR");
    char devdir[4096];
    snprintf(devdir, sizeof(devdir), "%s/chunkfly-mount-dev.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(devdir)) return cf_err_set(err, -errno, "%s: %s", devdir, strerror(errno));
    int rc = 0;
    pthread_t loop;
    bool looping = false, mounted = false;
    struct mount_fs_mount_opts mo = {
        .max_threads = o->threads, .fsname = "chunkfly-dev", .read_ahead_kb = 1024};
    if ((rc = mount_fs_mount(fs, devdir, &mo, err))) goto out;
    if (pthread_create(&loop, NULL, loop_main, fs)) {
        rc = cf_err_set(err, -EAGAIN, "cannot start the blob-device thread");
        goto out;
    }
    looping = true;
    /* the data blobs in blob-table order: EROFS device i+1 = blob i */
    char *data = NULL;
    size_t cap = 0, len = 0;
    struct find_img fi = {0};
    mount_fs_foreach(fs, find_first, &fi);
    bool all_plain = true;
    for (uint32_t i = 0; fi.img && i < rafs_image_blob_count(fi.img); i++) {
        const char *plain = mount_blob_cache_blob_complete(fi.cache, i)
                                ? mount_blob_cache_data_path(fi.cache, i)
                                : NULL;
        if (!plain) all_plain = false;
        char one[4200];
        int n = plain ? snprintf(one, sizeof(one), "%sdevice=%s", len ? "," : "", plain)
                      : snprintf(one, sizeof(one), "%sdevice=%s/%s", len ? "," : "", devdir,
                                 rafs_image_blob(fi.img, i)->id);
        if (len + (size_t)n + 1 > cap) {
            cap = (len + (size_t)n + 1) * 2;
            char *nd = realloc(data, cap);
            if (!nd) {
                free(data);
                rc = cf_err_set(err, -ENOMEM, "out of memory");
                goto out;
            }
            data = nd;
        }
        memcpy(data + len, one, (size_t)n + 1);
        len += (size_t)n;
    }
    /* Every device a plain .blob.data: EROFS reads them with direct I/O (Linux 6.13+), so its
     * own page cache is the only one. Buffered, the kernel reads each cache file through that
     * file's page cache and readahead too: cold random 4 KiB reads ran at 0.08-0.2x native
     * (readahead of the backing file on random reads), 0.8-1.0x with directio. Not with our
     * FUSE devices: FUSE direct reads are not read ahead (cold 1 MiB sequential 0.2x vs 0.5x). */
    int mrc = -1;
    if (all_plain && data) {
        size_t dl = strlen(data);
        char *dio = malloc(dl + sizeof(",directio"));
        if (dio) {
            memcpy(dio, data, dl);
            memcpy(dio + dl, ",directio", sizeof(",directio"));
            mrc = mount(bootstrap, o->mountpoint, "erofs", MS_RDONLY, dio);
            if (mrc == 0) {
                free(data);
                data = dio;
            } else {
                cf_info("kernel EROFS without directio (%s): buffered reads of the cache files",
                        strerror(errno));
                free(dio);
            }
        }
    }
    if (mrc < 0 && mount(bootstrap, o->mountpoint, "erofs", MS_RDONLY, data) < 0) {
        rc = cf_err_set(err, -errno,
                        "kernel EROFS mount of %s at %s failed: %s (needs a kernel that mounts "
                        "EROFS from a regular file: Linux 6.12+)",
                        bootstrap, o->mountpoint, strerror(errno));
        free(data);
        goto out;
    }
    cf_info("EROFS devices: %s", data);
    free(data);
    mounted = true;
    cf_info("mounted %s at %s with the kernel's EROFS (blob devices in %s)", bootstrap,
            o->mountpoint, devdir);
    int sig = 0;
    while (sigwait(&sw->set, &sig) == 0 && sig == SIGUSR1) {
    }
    cf_info("signal %d: unmounting", sig);
out:
    if (mounted && umount2(o->mountpoint, 0) < 0) umount2(o->mountpoint, MNT_DETACH);
    if (looping) {
        mount_fs_stop(fs);
        pthread_join(loop, NULL);
    }
    mount_fs_unmount(fs);
    rmdir(devdir);
    return rc;
}

/* ---- run ----------------------------------------------------------------------------------- */

int mount_tool_run(const struct mount_tool_opts *o)
{
    int code = 1, rc;
    cf_err err = {0};
    mount_fs *fs = NULL;
    struct mount_api *api = NULL;
    bool shared = !o->bootstrap && !o->image;

    say_stderr = o->log_to_file;
    signal(SIGPIPE, SIG_IGN); /* the API writes to sockets */
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
    if (o->erofs && shared) {
        say("erofs mode needs --bootstrap or --image (one image)");
        return 2;
    }
    if (o->image && o->bootstrap) {
        say("--image and --bootstrap exclude each other (the image names its bootstrap)");
        return 2;
    }
    if ((o->platform || o->plain_http) && !o->image) {
        say("--platform and --plain-http go with --image");
        return 2;
    }
    if (shared && !o->apisock) {
        say("without --bootstrap (shared mode) images are attached through the API: give "
            "--apisock SOCK");
        return 2;
    }
    /* 1. the image, its config and backend: every check before anything is mounted */
    rafs_image *img = NULL;
    mount_blob_cache *cache = NULL;
    struct instance *inst = NULL;
    if (!shared) {
        struct instance_params p = {.bootstrap = o->bootstrap,
                                    .image = o->image,
                                    .platform = o->platform,
                                    .plain_http = o->plain_http,
                                    .config_path = o->config,
                                    .blob_dir = o->blob_dir,
                                    .cache_dir = o->cache_dir,
                                    .prefetch = o->prefetch,
                                    .nprefetch = o->nprefetch};
        if ((rc = instance_open(&p, &img, &cache, &inst, &err))) {
            say("%s", cf_err_str(&err, rc));
            goto out;
        }
    }
    /* 2. the mountpoint (a dead mount of a killed daemon is cleaned first) */
    if (o->erofs) clean_stale_erofs(o->mountpoint);
    if ((rc = mount_fs_clean_stale(o->mountpoint, &err)) < 0) {
        say("%s", err.msg);
        goto out;
    }
    struct stat mst;
    if (stat(o->mountpoint, &mst) < 0 || !S_ISDIR(mst.st_mode)) {
        say("mountpoint %s: %s", o->mountpoint, errno ? strerror(errno) : "not a directory");
        goto out;
    }
    /* 3. filesystem, mount */
    struct mount_fs_opts fo = {.shared = shared,
                               .blob_devices = o->erofs,
                               .enable_xattr = inst ? instance_xattr(inst) : true};
    if ((rc = mount_fs_new(&fo, &fs, &err))) {
        say("%s", cf_err_str(&err, rc));
        goto out;
    }
    if (inst) {
        rc = mount_fs_attach(fs, NULL, img, cache, instance_release, inst, &err);
        img = NULL; /* the fs owns them from now on */
        cache = NULL;
        if (rc) {
            inst = NULL;
            say("%s", cf_err_str(&err, rc));
            goto out;
        }
    }
    if (o->erofs) {
        if (inst) instance_start_prefetch(inst);
        struct mount_api_info ai = {
            .id = o->id, .supervisor = o->supervisor, .metrics_listen = o->metrics_listen};
        if ((o->apisock || o->metrics_listen) &&
            (rc = mount_api_start(o->apisock, fs, &ai, &api, &err))) {
            say("%s", cf_err_str(&err, rc));
            goto out;
        }
        if ((rc = run_erofs(o, instance_bootstrap(inst), fs, &sw, &err))) {
            say("%s", cf_err_str(&err, rc));
            goto out;
        }
        code = 0;
        goto out;
    }
    struct mount_fs_mount_opts mo = {
        .allow_other = o->allow_other, .max_threads = o->threads, .read_ahead_kb = 1024};
    if ((rc = mount_fs_mount(fs, o->mountpoint, &mo, &err))) {
        say("%s", cf_err_str(&err, rc));
        goto out;
    }
    cf_info("mounted %s at %s", inst ? instance_bootstrap(inst) : "a shared root", o->mountpoint);
    if (inst) instance_start_prefetch(inst);
    /* 4. the API, once the filesystem is up (its state is RUNNING from the first request) */
    if (o->apisock || o->metrics_listen) {
        struct mount_api_info ai = {.metrics_listen = o->metrics_listen,
                                    .id = o->id,
                                    .supervisor = o->supervisor,
                                    .shared = shared,
                                    .blob_dir = o->blob_dir,
                                    .cache_dir = o->cache_dir};
        if ((rc = mount_api_start(o->apisock, fs, &ai, &api, &err))) {
            say("%s", cf_err_str(&err, rc));
            goto out;
        }
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
    mount_api_stop(api);
    if (fs) mount_fs_foreach(fs, stop_prefetch_visit, NULL);
    mount_fs_free(fs);
    if (img) { /* not attached */
        mount_blob_cache_free(cache);
        rafs_image_close(img);
        instance_release(inst);
    }
    return code;
}
