/* chunkfly-mount's life cycle: the image (dedicated mode) checked before mounting, stale mount
 * cleaned, FUSE served until SIGTERM / PUT /api/v1/daemon/exit, the API, prefetch. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static void stop_prefetch_visit(const char *name, const rafs_image *img,
                                const mount_blob_cache *cache, void *owner, void *ctx)
{
    (void)name, (void)img, (void)cache, (void)ctx;
    instance_stop_prefetch(owner);
}

/* ---- run ----------------------------------------------------------------------------------- */

int mount_tool_run(const struct mount_tool_opts *o)
{
    int code = 1, rc;
    cf_err err = {0};
    mount_fs *fs = NULL;
    struct mount_api *api = NULL;
    bool shared = !o->bootstrap;

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
    struct mount_fs_mount_opts mo = {.allow_other = o->allow_other, .max_threads = o->threads};
    if ((rc = mount_fs_mount(fs, o->mountpoint, &mo, &err))) {
        say("%s", cf_err_str(&err, rc));
        goto out;
    }
    cf_info("mounted %s at %s", shared ? "a shared root" : o->bootstrap, o->mountpoint);
    if (inst) instance_start_prefetch(inst);
    /* 4. the API, once the filesystem is up (its state is RUNNING from the first request) */
    if (o->apisock) {
        struct mount_api_info ai = {.id = o->id,
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
