/* One image of chunkfly-mount: config, backend, checks before mounting, prefetch (instance.h). */
#include "instance.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cf/log.h"
#include "image_pull.h"
#include "mount/backend.h"
#include "mount/config.h"

#define PATH_LEN 4096

struct instance {
    char *bootstrap;
    char *blob_dir; /* --blob-dir: DIR/<blob id>, else the backend */
    struct mount_config *cfg;
    mount_backend *backend;
    const rafs_image *img; /* borrowed while attached */
    mount_blob_cache *cache;
    /* prefetch */
    char **prefetch;
    size_t nprefetch;
    uint64_t *nids;
    size_t n;
    int stop; /* atomic */
    pthread_t th;
    bool running;
};

static int open_blob(void *ctx, const struct rafs_blob_info *bi, rafs_blob_source **out,
                     cf_err *err)
{
    struct instance *in = ctx;
    if (in->blob_dir) {
        char path[PATH_LEN];
        snprintf(path, sizeof(path), "%s/%s", in->blob_dir, bi->id);
        return rafs_blob_source_open_path(path, out, err);
    }
    if (in->backend)
        return mount_backend_open_blob(in->backend, bi->id, bi->compressed_size, out, err);
    return cf_err_set(err, -ENOENT, "blob %s: no backend configured", bi->id);
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

void instance_release(void *p)
{
    struct instance *in = p;
    if (!in) return;
    instance_stop_prefetch(in);
    mount_backend_free(in->backend);
    mount_config_free(in->cfg);
    for (size_t i = 0; i < in->nprefetch; i++) free(in->prefetch[i]);
    free(in->prefetch);
    free(in->nids);
    free(in->bootstrap);
    free(in->blob_dir);
    free(in);
}

/* --image without --cache-dir or a config's work_dir: a per-user cache directory */
static void default_work_dir(char *buf, size_t size)
{
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (geteuid() == 0)
        snprintf(buf, size, "/var/cache/chunkfly-mount");
    else if (x && *x)
        snprintf(buf, size, "%s/chunkfly-mount", x);
    else
        snprintf(buf, size, "%s/.cache/chunkfly-mount", h && *h ? h : "/tmp");
}

static int dup_into(char **dst, const char *src)
{
    if (*dst || !src) return 0;
    return (*dst = strdup(src)) ? 0 : -ENOMEM;
}

/* --image: pull the bootstrap into the cache directory; the backend is the config's registry
 * (host and repo filled from the reference when it leaves them out), else a registry backend
 * for the reference, with the docker config's credentials. */
static int open_image(const struct instance_params *p, struct instance *in, cf_err *err)
{
    char defdir[PATH_LEN];
    const char *work_dir = p->cache_dir;
    if (!work_dir && in->cfg && in->cfg->cache.enabled) work_dir = in->cfg->cache.work_dir;
    if (!work_dir) {
        default_work_dir(defdir, sizeof(defdir));
        work_dir = defdir;
    }
    struct image_pull_opts po = {.ref = p->image, .work_dir = work_dir, .platform = p->platform,
                                 .plain_http = p->plain_http};
    struct image_pulled pl;
    int rc = image_pull(&po, &pl, err);
    if (rc) return rc;
    if (!(in->bootstrap = strdup(pl.bootstrap))) rc = -ENOMEM;
    const char *scheme = pl.plain_http ? "http" : "https";
    if (rc == 0 && in->cfg && in->cfg->backend.type == MOUNT_BACKEND_REGISTRY &&
        !in->cfg->backend.host && !in->cfg->backend.repo) {
        struct mount_backend_config *b = &in->cfg->backend;
        if (dup_into(&b->host, pl.host) || dup_into(&b->repo, pl.repo) ||
            dup_into(&b->scheme, scheme) ||
            (!b->registry_token && dup_into(&b->auth, pl.auth_b64)))
            rc = -ENOMEM;
    } else if (rc == 0 && !in->cfg) {
        json_t *bc = json_pack("{s:s, s:s, s:s}", "host", pl.host, "repo", pl.repo, "scheme",
                               scheme);
        if (bc && pl.auth_b64) json_object_set_new(bc, "auth", json_string(pl.auth_b64));
        json_t *root = bc ? json_pack("{s:{s:{s:s, s:o}, s:{s:s, s:{s:s}}}}", "device", "backend",
                                      "type", "registry", "config", bc, "cache", "type",
                                      "blobcache", "config", "work_dir", work_dir)
                          : NULL;
        char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
        rc = text ? mount_config_parse(text, strlen(text), &in->cfg, err) : -ENOMEM;
        if (text) explicit_bzero(text, strlen(text));
        free(text);
        json_decref(root);
    }
    image_pulled_clear(&pl);
    if (rc == -ENOMEM) return cf_err_set(err, rc, "out of memory");
    return rc;
}

int instance_open(const struct instance_params *p, rafs_image **img_out,
                  mount_blob_cache **cache_out, struct instance **out, cf_err *err)
{
    int rc = 0;
    rafs_image *img = NULL;
    struct instance *in = calloc(1, sizeof(*in));
    if (!in || (p->bootstrap && !(in->bootstrap = strdup(p->bootstrap))) ||
        (p->blob_dir && !(in->blob_dir = strdup(p->blob_dir))) ||
        !(in->prefetch = calloc(p->nprefetch + 1, sizeof(char *)))) {
        instance_release(in);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < p->nprefetch; i++) {
        if (!(in->prefetch[i] = strdup(p->prefetch[i]))) {
            instance_release(in);
            return cf_err_set(err, -ENOMEM, "out of memory");
        }
        in->nprefetch++;
    }
    /* 1. config and backend */
    if (p->config_path || p->config_json) {
        rc = p->config_path
                 ? mount_config_load(p->config_path, &in->cfg, err)
                 : mount_config_parse(p->config_json, strlen(p->config_json), &in->cfg, err);
        if (rc) {
            if (p->config_path && !strstr(err ? err->msg : "", p->config_path))
                cf_err_wrap(err, rc, "config %s", p->config_path);
            goto fail;
        }
    }
    if (p->image && (rc = open_image(p, in, err))) goto fail;
    if (in->cfg) {
        if (!in->blob_dir && (rc = mount_backend_new(&in->cfg->backend, &in->backend, err))) {
            cf_err_wrap(err, rc, "backend");
            goto fail;
        }
    } else if (!in->blob_dir) {
        rc = cf_err_set(err, -EINVAL,
                        "no backend: give --config FILE (nydusd JSON) or "
                        "--blob-dir DIR");
        goto fail;
    }
    /* 2. the image */
    const char *boot = in->bootstrap;
    if (is_rafs_v5(boot)) {
        rc = cf_err_set(err, -ENOTSUP,
                        "bootstrap %s: RAFS v5 is not supported by chunkfly-mount, only RAFS v6 "
                        "(rebuild the image as v6: nydus-image --fs-version 6, or chunkfly-image "
                        "create)",
                        boot);
        goto fail;
    }
    if ((rc = rafs_image_open(boot, &img, err))) {
        if (err && !strstr(err->msg, boot))
            cf_err_wrap(err, rc, "bootstrap %s", boot);
        goto fail;
    }
    for (uint32_t i = 0; i < rafs_image_blob_count(img); i++) {
        const struct rafs_blob_info *bi = rafs_image_blob(img, i);
        const char *what = (bi->features & RAFS_BLOB_ZRAN)        ? "zran (OCI-ref, --oci-ref)"
                           : (bi->features & RAFS_BLOB_BATCH)     ? "batch chunks"
                           : (bi->features & RAFS_BLOB_ENCRYPTED) ? "encryption"
                                                                  : NULL;
        if (what) {
            rc = cf_err_set(err, -ENOTSUP,
                            "bootstrap %s: blob %s uses %s, which chunkfly-mount does not "
                            "support",
                            boot, bi->id, what);
            goto fail;
        }
        if (in->blob_dir) {
            char path[PATH_LEN];
            struct stat st;
            snprintf(path, sizeof(path), "%s/%s", in->blob_dir, bi->id);
            if (stat(path, &st) < 0) {
                rc = cf_err_set(err, -errno, "data blob %s: %s", path, strerror(errno));
                goto fail;
            }
        }
    }
    /* 3. the cache */
    const char *work_dir = p->cache_dir;
    if (!work_dir && in->cfg && in->cfg->cache.enabled) work_dir = in->cfg->cache.work_dir;
    struct mount_blob_cache_opts co = {.work_dir = work_dir,
                                       .amplify_io = in->cfg ? in->cfg->amplify_io : 0,
                                       .open_blob = open_blob,
                                       .open_ctx = in};
    if ((rc = mount_blob_cache_new(img, &co, &in->cache, err))) goto fail;
    in->img = img;
    *img_out = img;
    *cache_out = in->cache;
    *out = in;
    cf_info("image %s: %u blobs, cache in %s, blobs from %s", boot,
            rafs_image_blob_count(img), work_dir ? work_dir : "temporary files",
            in->blob_dir ? in->blob_dir : "the config's backend");
    return 0;
fail:
    rafs_image_close(img);
    instance_release(in);
    return rc;
}

bool instance_xattr(const struct instance *in)
{
    return in->cfg ? in->cfg->enable_xattr : true;
}

const char *instance_bootstrap(const struct instance *in)
{
    return in->bootstrap;
}

int instance_set_auth(struct instance *in, const char *auth_b64, cf_err *err)
{
    if (!in->backend) return cf_err_set(err, -ENOTSUP, "this image has no registry backend");
    return mount_backend_set_auth(in->backend, auth_b64, err);
}

bool instance_backend_stats(const struct instance *in, struct instance_backend_stats *out)
{
    if (!in->backend) return false;
    struct mount_backend_stats s;
    mount_backend_stats(in->backend, &s);
    *out = (struct instance_backend_stats){
        s.bytes_from_proxy, s.bytes_from_registry, s.bytes_from_localfs, s.requests,
        s.errors,           s.fallbacks,           s.proxy_healthy};
    return true;
}

/* ---- prefetch ------------------------------------------------------------------------------ */

struct subtree {
    const char *prefix; /* "a/b" without leading '/'; "" = everything */
    struct instance *in;
    size_t *cap;
};

static int add_nid(struct instance *in, size_t *cap, uint64_t nid)
{
    if (in->n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        uint64_t *nn = realloc(in->nids, c * sizeof(*nn));
        if (!nn) return -ENOMEM;
        in->nids = nn;
        *cap = c;
    }
    in->nids[in->n++] = nid;
    return 0;
}

static int subtree_fn(const struct rafs_walk_entry *e, void *ctx)
{
    struct subtree *s = ctx;
    size_t pl = strlen(s->prefix);
    if ((e->st->mode & S_IFMT) != S_IFREG || e->st->size == 0) return 0;
    if (pl && (strncmp(e->path, s->prefix, pl) || e->path[pl] != '/')) return 0;
    return add_nid(s->in, s->cap, e->nid);
}

static int walk_under(struct instance *in, size_t *cap, const char *path)
{
    char pre[RAFS_PATH_MAX];
    while (*path == '/') path++;
    snprintf(pre, sizeof(pre), "%s", path);
    size_t l = strlen(pre);
    while (l && pre[l - 1] == '/') pre[--l] = 0;
    struct subtree s = {pre, in, cap};
    return rafs_walk(in->img, subtree_fn, &s, NULL);
}

/* Files to prefetch, in order: the bootstrap's prefetch table (fs_prefetch.enable), the given
 * paths (a directory = every file under it), then everything (fs_prefetch.prefetch_all).
 * Unknown paths are logged, not fatal (as nydusd). Files may repeat: filling a ready file
 * costs no backend read. */
static int prefetch_list(struct instance *in)
{
    size_t cap = 0;
    int rc = 0;
    bool table = in->cfg && in->cfg->prefetch.enable;
    uint32_t cnt = table ? rafs_image_prefetch_count(in->img) : 0;
    uint64_t root = rafs_image_super(in->img)->root_nid;
    for (size_t i = 0; !rc && i < cnt + in->nprefetch; i++) {
        uint64_t nid;
        struct rafs_stat st;
        const char *path = i < cnt ? NULL : in->prefetch[i - cnt];
        if (path) {
            cf_err err = {0};
            if (rafs_lookup(in->img, path, &nid, &err)) {
                cf_warn("prefetch %s: %s", path, err.msg);
                continue;
            }
        } else {
            nid = rafs_image_prefetch_nid(in->img, (uint32_t)i);
        }
        if (rafs_stat(in->img, nid, &st, NULL)) continue;
        if (S_ISREG(st.mode))
            rc = add_nid(in, &cap, nid);
        else if (S_ISDIR(st.mode) && (path || nid == root))
            rc = walk_under(in, &cap, path ? path : "");
    }
    if (!rc && in->cfg && in->cfg->prefetch.enable && in->cfg->prefetch.prefetch_all)
        rc = walk_under(in, &cap, "");
    return rc;
}

static void *prefetch_main(void *arg)
{
    struct instance *in = arg;
    size_t done = 0, failed = 0;
    uint64_t rate = in->cfg ? in->cfg->prefetch.bandwidth_rate : 0;
    struct mount_blob_cache_stats st0, st;
    struct timespec t0, t;
    mount_blob_cache_get_stats(in->cache, &st0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < in->n && !__atomic_load_n(&in->stop, __ATOMIC_RELAXED); i++) {
        if (rate) { /* pace by the backend bytes fetched so far (on-demand reads count too) */
            mount_blob_cache_get_stats(in->cache, &st);
            clock_gettime(CLOCK_MONOTONIC, &t);
            double el = (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
            double due = (double)(st.backend_bytes - st0.backend_bytes) / (double)rate;
            while (due > el && !__atomic_load_n(&in->stop, __ATOMIC_RELAXED)) {
                usleep(20 * 1000);
                el += 0.02;
            }
        }
        /* on-demand reads first: wait (up to 1 s per file) while some are running */
        for (int w = 0; w < 200 && mount_blob_cache_reads_running(in->cache) &&
                        !__atomic_load_n(&in->stop, __ATOMIC_RELAXED);
             w++)
            usleep(5 * 1000);
        cf_err err = {0};
        if (mount_blob_cache_fill_file(in->cache, in->nids[i], &err)) {
            failed++;
            cf_warn("prefetch of nid %llu: %s", (unsigned long long)in->nids[i], err.msg);
        } else {
            done++;
        }
    }
    cf_info("prefetch of %s: %zu files filled, %zu failed", in->bootstrap, done, failed);
    return NULL;
}

void instance_start_prefetch(struct instance *in)
{
    if (in->running) return;
    if (prefetch_list(in) || !in->n) return;
    if (pthread_create(&in->th, NULL, prefetch_main, in) == 0) in->running = true;
}

void instance_stop_prefetch(struct instance *in)
{
    if (!in->running) return;
    __atomic_store_n(&in->stop, 1, __ATOMIC_RELAXED);
    pthread_join(in->th, NULL);
    in->running = false;
}
