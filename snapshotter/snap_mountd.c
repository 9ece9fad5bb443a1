/* Starting, adopting and talking to the shared chunkfly-mount. Blocking: thread pool only. */
#include "snap_mountd.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cf/log.h"
#include "snap_fuse_guard.h"

extern char **environ;

#define START_WAIT_MS 10000 /* nydus-snapshotter's bound for the API socket to appear */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

int snap_mountd_init(snap_mountd *d, const char *bin, const char *dir, const char *bootstrap,
                     cf_err *err)
{
    memset(d, 0, sizeof(*d));
    d->pidfd = -1;
    d->fuse_fd = -1;
    d->erofs = bootstrap != NULL;
    d->bin = strdup(bin);
    d->dir = strdup(dir);
    d->mnt = join(dir, "mnt");
    d->sock = join(dir, "mount.sock");
    d->pidfile = join(dir, "mount.pid");
    d->log = join(dir, "mount.log");
    d->config_file = join(dir, "config.json");
    d->bootstrap = bootstrap ? strdup(bootstrap) : NULL;
    if (!d->bin || !d->dir || !d->mnt || !d->sock || !d->pidfile || !d->log || !d->config_file ||
        (bootstrap && !d->bootstrap)) {
        snap_mountd_fini(d);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

void snap_mountd_fini(snap_mountd *d)
{
    if (d->fuse_fd >= 0) close(d->fuse_fd);
    if (d->pidfd >= 0) close(d->pidfd);
    free(d->bin);
    free(d->dir);
    free(d->config_file);
    free(d->bootstrap);
    free(d->mnt);
    free(d->sock);
    free(d->pidfile);
    free(d->log);
    memset(d, 0, sizeof(*d));
    d->pidfd = -1;
}

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void guard(snap_mountd *d);

static void forget(snap_mountd *d)
{
    /* The daemon is gone: its FUSE connection (kept by our duplicate) answers EIO from now. */
    if (d->fuse_fd >= 0) snap_fuse_guard_start(d->fuse_fd);
    d->fuse_fd = -1;
    if (d->pidfd >= 0) close(d->pidfd);
    d->pidfd = -1;
    if (d->is_child && d->pid > 0) waitpid(d->pid, NULL, WNOHANG);
    d->pid = 0;
    d->is_child = 0;
}

int snap_mountd_alive(snap_mountd *d)
{
    if (d->pid <= 0 || d->pidfd < 0) return 0;
    if (d->is_child) {
        int st;
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == d->pid) {
            cf_warn("chunkfly-mount (pid %d) exited (%s %d)", (int)d->pid,
                    WIFSIGNALED(st) ? "signal" : "status",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            d->is_child = 0;
            forget(d);
            return 0;
        }
    }
    struct timespec ts = {0, 0};
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(d->pidfd, &rs);
    /* A pidfd turns readable when the process exits (zombie included: PID 1 may not reap). */
    if (pselect(d->pidfd + 1, &rs, NULL, NULL, &ts, NULL) > 0) {
        cf_warn("chunkfly-mount (pid %d) is gone", (int)d->pid);
        forget(d);
        return 0;
    }
    return 1;
}

/* ---- the API over the unix socket (libcurl) ---- */

typedef struct body {
    char buf[2048];
    size_t len;
} body;

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    body *b = arg;
    size_t len = sz * n, room = sizeof(b->buf) - 1 - b->len;
    memcpy(b->buf + b->len, p, len < room ? len : room);
    b->len += len < room ? len : room;
    b->buf[b->len] = 0;
    return len;
}

/* Returns the HTTP status (>0) or a negative errno; *resp holds the (truncated) body. */
static long api_call(snap_mountd *d, const char *method, const char *path, const char *json,
                     long timeout_ms, body *resp, cf_err *err)
{
    CURL *h = curl_easy_init();
    if (!h) return cf_err_set(err, -ENOMEM, "out of memory");
    char url[512];
    snprintf(url, sizeof(url), "http://localhost%s", path);
    struct curl_slist *hdr = NULL;
    resp->len = 0;
    resp->buf[0] = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, d->sock);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    if (json) {
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
    }
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK)
        return cf_err_set(err, -ECONNREFUSED, "chunkfly-mount API %s %s: %s", method, path,
                          curl_easy_strerror(rc));
    return status;
}

/* The API's error text: {"code","message"} -> message. */
static const char *api_message(const body *b)
{
    static __thread char msg[512];
    json_t *j = json_loadb(b->buf, b->len, 0, NULL);
    const char *m = j ? json_string_value(json_object_get(j, "message")) : NULL;
    snprintf(msg, sizeof(msg), "%.500s", m ? m : b->buf);
    json_decref(j);
    return msg;
}

#define EROFS_MAGIC 0xE0F5E1E2u

/* Ready: the API says RUNNING and, in EROFS mode, the kernel's EROFS mount is in place. */
static int api_running(snap_mountd *d)
{
    body b;
    long st = api_call(d, "GET", "/api/v1/daemon", NULL, 2000, &b, NULL);
    if (st != 200 || !strstr(b.buf, "RUNNING")) return 0;
    struct statfs sf;
    return !d->erofs || (statfs(d->mnt, &sf) == 0 && (uint32_t)sf.f_type == EROFS_MAGIC);
}

static int is_chunkfly_mount(pid_t pid)
{
    char path[64], cmd[4096];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    size_t n = fread(cmd, 1, sizeof(cmd) - 1, f);
    fclose(f);
    cmd[n] = 0;
    return strstr(cmd, "chunkfly-mount") != NULL;
}

static int try_adopt(snap_mountd *d)
{
    FILE *f = fopen(d->pidfile, "re");
    if (!f) return 0;
    int pid = 0;
    if (fscanf(f, "%d", &pid) != 1) pid = 0;
    fclose(f);
    if (pid <= 1 || !is_chunkfly_mount(pid)) return 0;
    int fd = pidfd_open_(pid);
    if (fd < 0) return 0;
    d->pid = pid;
    d->pidfd = fd;
    d->is_child = 0;
    if (!snap_mountd_alive(d) || !api_running(d)) {
        forget(d);
        return 0;
    }
    guard(d);
    cf_info("adopted chunkfly-mount (pid %d)", pid);
    return 1;
}

static void log_tail(const char *path, char *out, size_t cap)
{
    out[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)cap - 1 ? end - (off_t)cap + 1 : 0;
    ssize_t n = pread(fd, out, cap - 1, from);
    close(fd);
    out[n > 0 ? n : 0] = 0;
    for (char *p = out; *p; p++)
        if (*p == '\n' && p[1]) *p = ' ';
}

int snap_mountd_ensure(snap_mountd *d, cf_err *err)
{
    if (snap_mountd_alive(d)) return 0;
    if (try_adopt(d)) return 0;
    /* A dead daemon leaves its FUSE mount behind (ENOTCONN): detach it so the new one can
     * mount there; containers still holding the old one get errors, never a hang. */
    if (umount2(d->mnt, MNT_DETACH) == 0) cf_info("detached the dead mount at %s", d->mnt);
    if (d->erofs) mkdir(d->dir, 0700);
    if (mkdir(d->mnt, 0755) != 0 && errno != EEXIST)
        return cf_err_set(err, -errno, "creating %s: %s", d->mnt, strerror(errno));
    unlink(d->sock);

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    /* Its own session: a kill of the snapshotter (or its process group) leaves it running. */
    posix_spawnattr_setflags(&at,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    /* clang-format off */
    char *fuse_argv[] = {d->bin, "fuse", "--mountpoint", d->mnt, "--apisock", d->sock,
                         "--id", "chunkfly-snapshotter", "--thread-num", "8", NULL};
    char *erofs_argv[] = {d->bin, "erofs", "--mountpoint", d->mnt, "--apisock", d->sock,
                          "--bootstrap", d->bootstrap, "--config", d->config_file,
                          "--id", d->dir, NULL};
    /* clang-format on */
    char **argv = d->erofs ? erofs_argv : fuse_argv;
    pid_t pid;
    int rc = posix_spawn(&pid, d->bin, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc) return cf_err_set(err, -rc, "starting %s: %s", d->bin, strerror(rc));
    d->pid = pid;
    d->is_child = 1;
    d->pidfd = pidfd_open_(pid);
    FILE *f = fopen(d->pidfile, "we");
    if (f) {
        fprintf(f, "%d\n", (int)pid);
        fclose(f);
    }
    /* polled every 10 ms: the daemon is usually up within tens of ms */
    for (int waited = 0; waited < START_WAIT_MS; waited += 10) {
        if (!snap_mountd_alive(d)) {
            char tail[400];
            log_tail(d->log, tail, sizeof(tail));
            return cf_err_set(err, -EIO, "chunkfly-mount exited at start (log %s: %s)", d->log,
                              tail);
        }
        if (access(d->sock, F_OK) == 0 && api_running(d)) {
            guard(d);
            cf_info("started chunkfly-mount (pid %d) on %s", (int)pid, d->mnt);
            return 1;
        }
        usleep(10 * 1000);
    }
    kill(pid, SIGKILL);
    snap_mountd_alive(d);
    return cf_err_set(err, -ETIMEDOUT, "chunkfly-mount did not answer on %s within %d s (log %s)",
                      d->sock, START_WAIT_MS / 1000, d->log);
}

/* FUSE mode: keep the connection alive past the daemon (snap_fuse_guard.h). */
static void guard(snap_mountd *d)
{
    if (d->erofs || d->fuse_fd >= 0) return;
    int fd = snap_fuse_guard_grab(d->pidfd, d->pid);
    if (fd >= 0)
        d->fuse_fd = fd;
    else
        cf_warn("cannot hold chunkfly-mount's FUSE connection (%s): if it dies, its readers "
                "get ENOTCONN instead of EIO",
                strerror(-fd));
}

void snap_mountd_stop(snap_mountd *d)
{
    if (d->fuse_fd >= 0) close(d->fuse_fd); /* a clean stop ends the connection */
    d->fuse_fd = -1;
    if (!snap_mountd_alive(d)) return;
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 100 && snap_mountd_alive(d); i++) usleep(50 * 1000);
    if (snap_mountd_alive(d)) {
        cf_warn("chunkfly-mount (pid %d) ignored SIGTERM for 5 s: killing it", (int)d->pid);
        kill(d->pid, SIGKILL);
        for (int i = 0; i < 100 && snap_mountd_alive(d); i++) usleep(10 * 1000);
    }
    umount2(d->mnt, MNT_DETACH); /* a daemon killed hard leaves its mount behind */
    unlink(d->pidfile);
}

/* A call with a JSON body (consumed); -ENOMEM when it cannot be encoded. */
static long api_json(snap_mountd *d, const char *method, const char *path, json_t *j,
                     long timeout_ms, body *resp, cf_err *err)
{
    char *req = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!req) return cf_err_set(err, -ENOMEM, "out of memory");
    long st = api_call(d, method, path, req, timeout_ms, resp, err);
    explicit_bzero(req, strlen(req)); /* may hold credentials */
    free(req);
    return st;
}

int snap_mountd_attach(snap_mountd *d, const char *name, const char *bootstrap,
                       const char *config_json, cf_err *err)
{
    char path[300];
    snprintf(path, sizeof(path), "/api/v1/mount?mountpoint=/%s", name);
    body b;
    long st = api_json(
        d, "POST", path,
        json_pack("{s:s, s:s, s:s}", "fs_type", "rafs", "source", bootstrap, "config", config_json),
        60000, &b, err);
    if (st < 0) return (int)st;
    if (st == 200 || st == 204) return 0;
    if (st == 409) return cf_err_set(err, -EEXIST, "image %s is already attached", name);
    return cf_err_set(err, st == 400 ? -EINVAL : -EIO, "chunkfly-mount refused image %s: %s", name,
                      api_message(&b));
}

int snap_mountd_detach(snap_mountd *d, const char *name, cf_err *err)
{
    char path[300];
    snprintf(path, sizeof(path), "/api/v1/mount?mountpoint=/%s", name);
    body b;
    long st = api_call(d, "DELETE", path, NULL, 30000, &b, err);
    if (st < 0) return (int)st;
    if (st == 200 || st == 204) return 0;
    if (st == 404) return cf_err_set(err, -ENOENT, "image %s is not attached", name);
    return cf_err_set(err, -EIO, "detaching %s: %s", name, api_message(&b));
}

int snap_mountd_set_auth(snap_mountd *d, const char *name, const char *auth_b64, cf_err *err)
{
    char path[300];
    snprintf(path, sizeof(path), "/api/v1/config?id=/%s", name);
    body b;
    long st =
        api_json(d, "PUT", path, json_pack("{s:s}", "registry_auth", auth_b64), 10000, &b, err);
    if (st < 0) return (int)st;
    return st == 200 || st == 204
               ? 0
               : cf_err_set(err, -EIO, "renewing credentials of %s: %s", name, api_message(&b));
}
