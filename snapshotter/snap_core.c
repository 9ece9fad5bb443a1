/* The snapshot model on overlayfs, and Nydus images over the shared chunkfly-mount.
 *
 * Layout under the root: db/ (LMDB), snapshots/<id>/{fs,work}, mnt/ (chunkfly-mount's FUSE
 * mount: one directory per attached image, named by its bootstrap snapshot's id), cache/ (the
 * blob cache, Nydus blobcache layout), mount.{sock,pid,log}. */
#include "snapshotter/snap_core.h"

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cf/log.h"
#include "snap_mountd.h"
#include "snap_nydus.h"
#include "snap_peer.h"
#include "snap_store.h"

struct snap_core {
    pthread_mutex_t mu;
    char *root, *snapdir;
    snap_store st;
    snap_mountd md;
    snap_nydus_opts nyd;
    int supervise;
    char *mount_bin;
    int erofs;          /* one chunkfly-mount erofs per image (ed) instead of the shared FUSE one */
    uint64_t *attached; /* FUSE: bootstrap snapshot ids attached in the shared chunkfly-mount */
    size_t n_attached, cap_attached;
    struct img_daemon {
        uint64_t id; /* the bootstrap snapshot's */
        snap_mountd md;
    } * ed;
    size_t n_ed, cap_ed;
    uint64_t *pin_pending; /* with a peer: images whose blobs are not all pinned yet */
    size_t n_pin_pending, cap_pin_pending;
    unsigned ticks;
    struct auth_sent {
        uint64_t id, hash; /* FNV-1a of the credentials last handed to chunkfly-mount */
    } * auths;
    size_t n_auths, cap_auths;
    snap_core_stats stats;
};

/* ---- small helpers ---- */

void snap_rec_free(snap_rec *r)
{
    if (!r) return;
    free(r->name);
    free(r->parent);
    for (size_t i = 0; i < r->n_labels; i++) {
        free(r->labels[i].k);
        free(r->labels[i].v);
    }
    free(r->labels);
    memset(r, 0, sizeof(*r));
}

void snap_recs_free(snap_rec *r, size_t n)
{
    for (size_t i = 0; i < n; i++) snap_rec_free(&r[i]);
    free(r);
}

const char *snap_rec_label(const snap_rec *r, const char *key)
{
    for (size_t i = 0; i < r->n_labels; i++)
        if (!strcmp(r->labels[i].k, key)) return r->labels[i].v;
    return NULL;
}

void snap_mount_free(snap_mount *m)
{
    free(m->source);
    for (size_t i = 0; i < m->n_options; i++) free(m->options[i]);
    memset(m, 0, sizeof(*m));
}

/* Counters are read by /metrics on the event loop without the core's lock. */
#define STAT_ADD(c, f, n) __atomic_fetch_add(&(c)->stats.f, (n), __ATOMIC_RELAXED)

static int nomem(cf_err *err)
{
    return cf_err_set(err, -ENOMEM, "out of memory");
}

/* Sets (or replaces) one label; v == NULL deletes it. */
static int label_set(snap_rec *r, const char *k, const char *v)
{
    for (size_t i = 0; i < r->n_labels; i++) {
        if (strcmp(r->labels[i].k, k)) continue;
        if (!v) {
            free(r->labels[i].k);
            free(r->labels[i].v);
            r->labels[i] = r->labels[--r->n_labels];
            return 0;
        }
        char *nv = strdup(v);
        if (!nv) return -ENOMEM;
        free(r->labels[i].v);
        r->labels[i].v = nv;
        return 0;
    }
    if (!v) return 0;
    snap_kv *a = realloc(r->labels, (r->n_labels + 1) * sizeof(*a));
    if (!a) return -ENOMEM;
    r->labels = a;
    a[r->n_labels].k = strdup(k);
    a[r->n_labels].v = strdup(v);
    if (!a[r->n_labels].k || !a[r->n_labels].v) {
        free(a[r->n_labels].k);
        free(a[r->n_labels].v);
        return -ENOMEM;
    }
    r->n_labels++;
    return 0;
}

/* containerd limits labels (4 KiB each, 32 KiB in all); we hold it to the same bound before
 * storing anything a client sent. */
static int check_labels(const snap_kv *l, size_t n, cf_err *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(l[i].k) + strlen(l[i].v);
        if (!l[i].k[0] || len > 4096)
            return cf_err_set(err, -EINVAL, "label %.64s: empty key or longer than 4096 bytes",
                              l[i].k);
        total += len;
    }
    if (total > 32768 || n > 512)
        return cf_err_set(err, -EINVAL, "labels too large (%zu labels, %zu bytes; at most 32 KiB)",
                          n, total);
    return 0;
}

static int check_key(const char *what, const char *k, cf_err *err)
{
    size_t n = strlen(k);
    if (!n || n > 4096)
        return cf_err_set(err, -EINVAL, "%s: empty or longer than 4096 bytes", what);
    return 0;
}

static void now(int64_t *s, int32_t *ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *s = ts.tv_sec;
    *ns = (int32_t)ts.tv_nsec;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static char *snap_path(const snap_core *c, uint64_t id, const char *sub)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%llu%s%s", c->snapdir, (unsigned long long)id, sub ? "/" : "",
                 sub ? sub : "") < 0)
        return NULL;
    return p;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

/* rm -rf that stays on its file system (never descends into a mount left inside). */
static void rm_tree(const char *path)
{
    nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static __thread int64_t du_size, du_inodes;
static int du_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path;
    (void)flag;
    (void)ftw;
    du_size += (int64_t)sb->st_blocks * 512;
    du_inodes++;
    return 0;
}

static void du(const char *path, int64_t *size, int64_t *inodes)
{
    du_size = du_inodes = 0;
    nftw(path, du_entry, 32, FTW_PHYS | FTW_MOUNT);
    *size = du_size;
    *inodes = du_inodes;
}

static int is_attached(const snap_core *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_attached; i++)
        if (c->attached[i] == id) return 1;
    return 0;
}

static int add_attached(snap_core *c, uint64_t id)
{
    if (is_attached(c, id)) return 0;
    if (c->n_attached == c->cap_attached) {
        size_t cap = c->cap_attached ? c->cap_attached * 2 : 16;
        uint64_t *a = realloc(c->attached, cap * sizeof(*a));
        if (!a) return -ENOMEM;
        c->attached = a;
        c->cap_attached = cap;
    }
    c->attached[c->n_attached++] = id;
    __atomic_store_n(&c->stats.images_attached, c->n_attached, __ATOMIC_RELAXED);
    return 0;
}

static void del_attached(snap_core *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_attached; i++)
        if (c->attached[i] == id) {
            c->attached[i] = c->attached[--c->n_attached];
            __atomic_store_n(&c->stats.images_attached, c->n_attached, __ATOMIC_RELAXED);
            return;
        }
}

/* ---- Nydus images in the shared mount ---- */

/* ---- pins in the local peer ---- */

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

static int blobs_of(snap_core *c, uint64_t id, char ***ids, size_t *n)
{
    char *boot = snap_path(c, id, "fs/image/image.boot");
    if (!boot) return -ENOMEM;
    int rc = snap_nydus_blob_ids(boot, ids, n, NULL);
    free(boot);
    return rc;
}

static void pin_forget(snap_core *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_pin_pending; i++)
        if (c->pin_pending[i] == id) {
            c->pin_pending[i] = c->pin_pending[--c->n_pin_pending];
            return;
        }
}

/* Pins image id's blobs; remembers the image for a retry while some are not in the peer yet
 * (its blobs enter the peer's cache as containers read them). */
static void pin_image(snap_core *c, uint64_t id)
{
    char **ids;
    size_t n, missing = 0;
    if (!c->nyd.peer_socket || blobs_of(c, id, &ids, &n)) return;
    cf_err e = {0};
    int rc = snap_peer_pin(c->nyd.peer_socket, ids, n, 1, &missing, &e);
    free_ids(ids, n);
    if (rc) cf_debug("image %llu: %s", (unsigned long long)id, cf_err_str(&e, rc));
    pin_forget(c, id);
    if (!rc && !missing) return;
    if (c->n_pin_pending == c->cap_pin_pending) {
        size_t cap = c->cap_pin_pending ? 2 * c->cap_pin_pending : 8;
        uint64_t *a = realloc(c->pin_pending, cap * sizeof(*a));
        if (!a) return;
        c->pin_pending = a;
        c->cap_pin_pending = cap;
    }
    c->pin_pending[c->n_pin_pending++] = id;
}

static void unpin_blobs(snap_core *c, char **ids, size_t n)
{
    size_t missing;
    cf_err e = {0};
    if (!c->nyd.peer_socket) return;
    int rc = snap_peer_pin(c->nyd.peer_socket, ids, n, 0, &missing, &e);
    if (rc) cf_warn("unpinning blobs in the peer: %s", cf_err_str(&e, rc));
}

/* ---- registry credentials, renewed in chunkfly-mount when docker config.json changes ---- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct auth_sent *auth_find(snap_core *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_auths; i++)
        if (c->auths[i].id == id) return &c->auths[i];
    return NULL;
}

static void auth_note(snap_core *c, uint64_t id, uint64_t hash)
{
    struct auth_sent *a = auth_find(c, id);
    if (!a) {
        if (c->n_auths == c->cap_auths) {
            size_t cap = c->cap_auths ? 2 * c->cap_auths : 8;
            struct auth_sent *n = realloc(c->auths, cap * sizeof(*n));
            if (!n) return;
            c->auths = n;
            c->cap_auths = cap;
        }
        a = &c->auths[c->n_auths++];
        a->id = id;
    }
    a->hash = hash;
}

static snap_mountd *image_daemon(snap_core *c, uint64_t id);

/* Hands renewed credentials to the daemons of attached images. Caller holds the lock. */
static void renew_auth(snap_core *c)
{
    MDB_txn *txn;
    snap_rec *all;
    size_t n;
    if (snap_store_begin(&c->st, 0, &txn, NULL)) return;
    int rc = snap_store_all(&c->st, txn, &all, &n, NULL);
    mdb_txn_abort(txn);
    if (rc) return;
    for (size_t i = 0; i < n; i++) {
        struct auth_sent *a = auth_find(c, all[i].id);
        char *b64 = NULL;
        if (!a || snap_nydus_auth(&c->nyd, &all[i], &b64, NULL) || !b64) continue;
        uint64_t h = fnv1a(b64);
        snap_mountd *d = image_daemon(c, all[i].id);
        char name[32];
        snprintf(name, sizeof(name), "%llu", (unsigned long long)all[i].id);
        cf_err e = {0};
        if (h != a->hash && d) {
            rc = snap_mountd_set_auth(d, c->erofs ? "" : name, b64, &e);
            if (rc)
                cf_warn("image %s: %s", name, cf_err_str(&e, rc));
            else {
                a->hash = h;
                cf_info("image %s: renewed registry credentials", name);
            }
        }
        explicit_bzero(b64, strlen(b64));
        free(b64);
    }
    snap_recs_free(all, n);
}

/* ---- EROFS mode: one daemon per image ---- */

static struct img_daemon *ed_find(snap_core *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_ed; i++)
        if (c->ed[i].id == id) return &c->ed[i];
    return NULL;
}

static char *ed_dir(const snap_core *c, uint64_t id)
{
    char *p = NULL;
    if (asprintf(&p, "%s/erofs/%llu", c->root, (unsigned long long)id) < 0) return NULL;
    return p;
}

/* Stops and forgets the daemon of image id; rm: also deletes its directory (kept after a
 * failed start: its log tells why). */
static void ed_drop(snap_core *c, uint64_t id, int rm)
{
    struct img_daemon *e = ed_find(c, id);
    if (!e) return;
    snap_mountd_stop(&e->md);
    if (rm) rm_tree(e->md.dir);
    snap_mountd_fini(&e->md);
    *e = c->ed[--c->n_ed];
    __atomic_store_n(&c->stats.images_attached, c->n_ed, __ATOMIC_RELAXED);
}

static int write_file(const char *path, const char *text, cf_err *err)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0) return nomem(err);
    FILE *f = fopen(tmp, "we");
    int rc = 0;
    if (!f || fputs(text, f) < 0) rc = -errno;
    if (f && fclose(f) != 0 && !rc) rc = -errno;
    if (!rc && rename(tmp, path) != 0) rc = -errno;
    if (rc) {
        unlink(tmp);
        cf_err_set(err, rc, "writing %s: %s", path, strerror(-rc));
    }
    free(tmp);
    return rc;
}

static int attach_erofs(snap_core *c, uint64_t id, const char *bootstrap, const char *config,
                        cf_err *err)
{
    struct img_daemon *e = ed_find(c, id);
    if (!e) {
        if (c->n_ed == c->cap_ed) {
            size_t cap = c->cap_ed ? c->cap_ed * 2 : 8;
            struct img_daemon *a = realloc(c->ed, cap * sizeof(*a));
            if (!a) return nomem(err);
            c->ed = a;
            c->cap_ed = cap;
        }
        char *dir = ed_dir(c, id), *parent = NULL;
        if (!dir || asprintf(&parent, "%s/erofs", c->root) < 0) {
            free(dir);
            return nomem(err);
        }
        mkdir(parent, 0700);
        free(parent);
        int rc = snap_mountd_init(&c->ed[c->n_ed].md, c->mount_bin, dir, bootstrap, err);
        free(dir);
        if (rc) return rc;
        c->ed[c->n_ed].id = id;
        e = &c->ed[c->n_ed++];
        __atomic_store_n(&c->stats.images_attached, c->n_ed, __ATOMIC_RELAXED);
        mkdir(e->md.dir, 0700);
    }
    int rc = write_file(e->md.config_file, config, err);
    if (!rc) rc = snap_mountd_ensure(&e->md, err);
    if (rc < 0) {
        ed_drop(c, id, 0);
        return rc;
    }
    return 0;
}

/* The directory standing for an attached image (an overlay lower directory). */
static char *image_dir(const snap_core *c, uint64_t id)
{
    char *p = NULL;
    if (c->erofs) {
        char *d = ed_dir(c, id);
        if (d && asprintf(&p, "%s/mnt", d) < 0) p = NULL;
        free(d);
    } else if (asprintf(&p, "%s/%llu", c->md.mnt, (unsigned long long)id) < 0) {
        p = NULL;
    }
    return p;
}

static int image_alive(snap_core *c, uint64_t id)
{
    if (c->erofs) {
        struct img_daemon *e = ed_find(c, id);
        return e && snap_mountd_alive(&e->md);
    }
    return is_attached(c, id) && snap_mountd_alive(&c->md);
}

/* The daemon serving image id, NULL when not attached. */
static snap_mountd *image_daemon(snap_core *c, uint64_t id)
{
    if (c->erofs) {
        struct img_daemon *e = ed_find(c, id);
        return e ? &e->md : NULL;
    }
    return is_attached(c, id) ? &c->md : NULL;
}

static int attach(snap_core *c, const snap_rec *boot, cf_err *err)
{
    if (image_alive(c, boot->id)) return 0;
    int rc = 0;
    char *bootstrap = snap_path(c, boot->id, "fs/image/image.boot");
    char *config = NULL;
    char name[32];
    snprintf(name, sizeof(name), "%llu", (unsigned long long)boot->id);
    uint64_t t0 = mono_ns();
    if (!bootstrap) {
        rc = nomem(err);
        goto out;
    }
    if (access(bootstrap, R_OK) != 0) {
        rc = cf_err_set(err, -EINVAL,
                        "Nydus bootstrap layer (snapshot %s) has no image/image.boot: the layer "
                        "is not a Nydus bootstrap",
                        boot->name);
        goto out;
    }
    /* Read it here, so a bad bootstrap is InvalidArgument with the reader's reason in both
     * modes, before any daemon starts. Its blob ids are what pins and cache cleanup need. */
    char **ids = NULL;
    size_t nids = 0;
    rc = snap_nydus_blob_ids(bootstrap, &ids, &nids, err);
    free_ids(ids, nids);
    if (rc) {
        rc = cf_err_wrap(err, -EINVAL, "bootstrap layer (snapshot %s)", boot->name);
        goto out;
    }
    rc = snap_nydus_config(&c->nyd, boot, &config, err);
    if (rc) goto out;
    if (c->erofs) {
        rc = attach_erofs(c, boot->id, bootstrap, config, err);
        goto out;
    }
    rc = snap_mountd_ensure(&c->md, err);
    if (rc < 0) goto out;
    if (rc == 1) { /* a new daemon: nothing is attached in it yet */
        c->n_attached = 0;
        __atomic_store_n(&c->stats.images_attached, 0, __ATOMIC_RELAXED);
        STAT_ADD(c, mountd_restarts, 1);
    }
    rc = snap_mountd_attach(&c->md, name, bootstrap, config, err);
    if (rc == -EEXIST) /* an adopted daemon still holds it */
        rc = 0;
    if (!rc) rc = add_attached(c, boot->id) ? nomem(err) : 0;
out:
    STAT_ADD(c, attach_total, 1);
    STAT_ADD(c, attach_ns_total, mono_ns() - t0);
    if (rc) {
        STAT_ADD(c, attach_errors, 1);
        cf_err_wrap(err, rc, "mounting the Nydus image of snapshot %s", boot->name);
    } else {
        cf_info("attached image %s (snapshot %s) in %.1f ms", name, boot->name,
                (double)(mono_ns() - t0) / 1e6);
        pin_image(c, boot->id);
        char *b64 = NULL;
        snap_nydus_auth(&c->nyd, boot, &b64, NULL);
        auth_note(c, boot->id, fnv1a(b64));
        if (b64) explicit_bzero(b64, strlen(b64));
        free(b64);
    }
    free(bootstrap);
    free(config);
    return rc;
}

static int is_bootstrap(const snap_rec *r)
{
    const char *v = snap_rec_label(r, SNAP_LABEL_NYDUS_BOOTSTRAP);
    return r->kind == SNAP_COMMITTED && v && !strcmp(v, "true");
}

static int is_remote_layer(const snap_kv *l, size_t n, const char **target)
{
    const char *blob = NULL;
    *target = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(l[i].k, SNAP_LABEL_REF))
            *target = l[i].v;
        else if (!strcmp(l[i].k, SNAP_LABEL_NYDUS_BLOB))
            blob = l[i].v;
    }
    return *target && (*target)[0] && blob && !strcmp(blob, "true");
}

/* ---- mounts ---- */

static int add_opt(snap_mount *m, const char *fmt, const char *arg)
{
    if (m->n_options == SNAP_MAX_OPTS) return -E2BIG;
    char *s = NULL;
    if (asprintf(&s, fmt, arg) < 0) return -ENOMEM;
    m->options[m->n_options++] = s;
    return 0;
}

/* The mounts of snapshot r: overlay of its parents' directories (a Nydus image's RAFS instance
 * stands for its bootstrap layer and every layer below it). */
static int build_mounts(snap_core *c, MDB_txn *txn, const snap_rec *r, snap_mount *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    char *lowers = NULL;
    size_t llen = 0, nlow = 0;
    int rc = 0;
    char *parent = r->parent && r->parent[0] ? strdup(r->parent) : NULL;
    if (r->parent && r->parent[0] && !parent) return nomem(err);
    for (int depth = 0; parent; depth++) {
        snap_rec p;
        if (depth > 4096) {
            rc = cf_err_set(err, -ELOOP, "snapshot %s: parent chain too long", r->name);
            break;
        }
        rc = snap_store_get(&c->st, txn, parent, &p, err);
        free(parent);
        parent = NULL;
        if (rc) break;
        char *dir = NULL;
        int stop = 0;
        if (is_bootstrap(&p)) {
            rc = attach(c, &p, err);
            if (!rc) dir = image_dir(c, p.id);
            stop = 1; /* the RAFS tree already holds every layer below */
        } else {
            dir = snap_path(c, p.id, "fs");
        }
        if (!rc && !dir) rc = nomem(err);
        if (!rc) {
            size_t dl = strlen(dir);
            char *nl = realloc(lowers, llen + dl + 2);
            if (!nl) {
                rc = nomem(err);
            } else {
                lowers = nl;
                if (llen) lowers[llen++] = ':';
                memcpy(lowers + llen, dir, dl + 1);
                llen += dl;
                nlow++;
            }
        }
        free(dir);
        if (!rc && !stop && p.parent && p.parent[0] && !(parent = strdup(p.parent)))
            rc = nomem(err);
        snap_rec_free(&p);
        if (rc || stop) break;
    }
    free(parent);
    if (rc) {
        free(lowers);
        return rc;
    }
    char *fs = snap_path(c, r->id, "fs"), *work = snap_path(c, r->id, "work");
    if (!fs || !work) {
        rc = nomem(err);
        goto done;
    }
    if (r->kind == SNAP_ACTIVE && nlow == 0) {
        snprintf(out->type, sizeof(out->type), "bind");
        out->source = strdup(fs);
        rc = add_opt(out, "%s", "rw");
        if (!rc) rc = add_opt(out, "%s", "rbind");
    } else if (r->kind == SNAP_ACTIVE) {
        snprintf(out->type, sizeof(out->type), "overlay");
        out->source = strdup("overlay");
        rc = add_opt(out, "workdir=%s", work);
        if (!rc) rc = add_opt(out, "upperdir=%s", fs);
        if (!rc) rc = add_opt(out, "lowerdir=%s", lowers);
        if (!rc && access("/sys/module/overlay/parameters/index", F_OK) == 0)
            rc = add_opt(out, "%s", "index=off");
    } else if (nlow <= 1) { /* view of nothing or of one directory: a read-only bind */
        snprintf(out->type, sizeof(out->type), "bind");
        out->source = strdup(nlow ? lowers : fs);
        rc = add_opt(out, "%s", "ro");
        if (!rc) rc = add_opt(out, "%s", "rbind");
    } else {
        snprintf(out->type, sizeof(out->type), "overlay");
        out->source = strdup("overlay");
        rc = add_opt(out, "lowerdir=%s", lowers);
    }
    if (!rc && !out->source) rc = -ENOMEM;
    if (rc) {
        snap_mount_free(out);
        rc = rc == -E2BIG ? cf_err_set(err, rc, "too many mount options") : nomem(err);
    }
done:
    free(fs);
    free(work);
    free(lowers);
    return rc;
}

/* ---- open / close / recover ---- */

int snap_core_open(const snap_core_opts *o, snap_core **out, cf_err *err)
{
    snap_core *c = calloc(1, sizeof(*c));
    if (!c) return nomem(err);
    pthread_mutex_init(&c->mu, NULL);
    c->supervise = o->supervise;
    int rc = 0;
    char *db = NULL, *cache = NULL;
    c->root = strdup(o->root);
    if (!c->root || asprintf(&c->snapdir, "%s/snapshots", o->root) < 0 ||
        asprintf(&db, "%s/db", o->root) < 0 || asprintf(&cache, "%s/cache", o->root) < 0) {
        rc = nomem(err);
        goto fail;
    }
    const char *dirs[] = {c->root, c->snapdir, cache};
    for (size_t i = 0; i < 3; i++)
        if (mkdir(dirs[i], 0700) != 0 && errno != EEXIST) {
            rc = cf_err_set(err, -errno, "creating %s: %s", dirs[i], strerror(errno));
            goto fail;
        }
    rc = snap_store_open(&c->st, db, err);
    if (rc) goto fail;
    c->erofs = o->fs_driver && !strcmp(o->fs_driver, "erofs");
    c->mount_bin = strdup(o->mount_bin);
    if (!c->mount_bin) {
        rc = nomem(err);
        goto fail;
    }
    rc = snap_mountd_init(&c->md, o->mount_bin, o->root, NULL, err);
    if (rc) goto fail;
    rc = snap_nydus_opts_init(&c->nyd, o, cache, err);
    if (rc) goto fail;
    free(db);
    free(cache);
    *out = c;
    return 0;
fail:
    free(db);
    free(cache);
    snap_core_close(c);
    return rc;
}

void snap_core_close(snap_core *c)
{
    if (!c) return;
    snap_store_close(&c->st);
    snap_mountd_fini(&c->md);
    for (size_t i = 0; i < c->n_ed; i++)
        snap_mountd_fini(&c->ed[i].md); /* left running: containers keep reading */
    free(c->ed);
    free(c->pin_pending);
    free(c->auths);
    free(c->mount_bin);
    snap_nydus_opts_fini(&c->nyd);
    free(c->attached);
    free(c->root);
    free(c->snapdir);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Attaches every image that an active or view snapshot stands on. Caller holds the lock. */
static int reattach_used(snap_core *c, cf_err *err)
{
    MDB_txn *txn;
    snap_rec *all;
    size_t n;
    int rc = snap_store_begin(&c->st, 0, &txn, err);
    if (rc) return rc;
    rc = snap_store_all(&c->st, txn, &all, &n, err);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        if (all[i].kind == SNAP_COMMITTED) continue;
        snap_mount m;
        cf_err e = {0};
        int r = build_mounts(c, txn, &all[i], &m, &e); /* attaches its image if any */
        if (r) {
            cf_warn("snapshot %s: %s", all[i].name, cf_err_str(&e, r));
            if (!first) first = r;
        } else {
            snap_mount_free(&m);
        }
    }
    mdb_txn_abort(txn);
    snap_recs_free(all, n);
    (void)first; /* one broken image must not stop the others: logged above */
    return 0;
}

int snap_core_recover(snap_core *c, cf_err *err)
{
    pthread_mutex_lock(&c->mu);
    int rc = reattach_used(c, err);
    /* FUSE mode: the shared daemon is started now rather than by the first container (as
     * nydus-snapshotter's shared daemon is): its start, ~0.2-0.3 s on a loaded node, would
     * otherwise be part of that container's cold start. Failing here is not fatal: the first
     * attach tries again and reports why. */
    if (!rc && !c->erofs) {
        cf_err e = {0};
        int r = snap_mountd_ensure(&c->md, &e);
        if (r < 0) cf_warn("chunkfly-mount not started yet: %s", cf_err_str(&e, r));
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int snap_core_check_mountd(snap_core *c, cf_err *err)
{
    pthread_mutex_lock(&c->mu);
    int restarted = 0, rc = 0;
    if (c->ticks % 60 == 59) /* every ~30 s */
        renew_auth(c);
    if (++c->ticks % 20 == 0) /* every ~10 s */
        for (size_t i = c->n_pin_pending; i-- > 0;) pin_image(c, c->pin_pending[i]);
    for (size_t i = 0; c->erofs && i < c->n_ed; i++) {
        struct img_daemon *e = &c->ed[i];
        if (snap_mountd_alive(&e->md)) continue;
        cf_warn("chunkfly-mount of image %llu died: restarting it", (unsigned long long)e->id);
        int r = snap_mountd_ensure(&e->md, err);
        if (r < 0) {
            rc = r;
            continue;
        }
        STAT_ADD(c, mountd_restarts, 1);
        restarted = 1;
    }
    /* Only a daemon that holds images needs to be running; one is started on first use. */
    if (!c->erofs && c->n_attached && !snap_mountd_alive(&c->md)) {
        cf_warn("chunkfly-mount died with %zu image(s) attached: restarting it", c->n_attached);
        c->n_attached = 0;
        __atomic_store_n(&c->stats.images_attached, 0, __ATOMIC_RELAXED);
        rc = snap_mountd_ensure(&c->md, err);
        if (rc >= 0) {
            STAT_ADD(c, mountd_restarts, 1);
            restarted = 1;
            rc = reattach_used(c, err);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc < 0 ? rc : restarted;
}

void snap_core_get_stats(snap_core *c, snap_core_stats *out)
{
    /* No core lock: the loop must not wait behind a slow attach. LMDB readers never block. */
    uint64_t *dst = (uint64_t *)out, *src = (uint64_t *)&c->stats;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    MDB_txn *txn;
    if (!snap_store_begin(&c->st, 0, &txn, NULL)) {
        MDB_stat ms;
        if (!mdb_stat(txn, c->st.snaps, &ms)) out->snapshots = ms.ms_entries;
        mdb_txn_abort(txn);
    }
}

/* ---- the operations ---- */

static int fill_rec(snap_rec *r, uint64_t id, const char *name, const char *parent, int kind,
                    const snap_kv *labels, size_t n_labels)
{
    memset(r, 0, sizeof(*r));
    r->id = id;
    r->kind = kind;
    r->name = strdup(name);
    r->parent = strdup(parent ? parent : "");
    now(&r->created_s, &r->created_ns);
    r->updated_s = r->created_s;
    r->updated_ns = r->created_ns;
    if (!r->name || !r->parent) return -ENOMEM;
    for (size_t i = 0; i < n_labels; i++)
        if (label_set(r, labels[i].k, labels[i].v)) return -ENOMEM;
    return 0;
}

static int make_dirs(snap_core *c, uint64_t id, int with_work, cf_err *err)
{
    char *d = snap_path(c, id, NULL), *fs = snap_path(c, id, "fs"),
         *work = snap_path(c, id, "work");
    int rc = 0;
    if (!d || !fs || !work)
        rc = nomem(err);
    else if ((mkdir(d, 0700) && errno != EEXIST) || (mkdir(fs, 0755) && errno != EEXIST) ||
             (with_work && mkdir(work, 0700) && errno != EEXIST))
        rc = cf_err_set(err, -errno, "creating snapshot directory %s: %s", d, strerror(errno));
    free(d);
    free(fs);
    free(work);
    return rc;
}

static void remove_dirs(snap_core *c, uint64_t id)
{
    char *d = snap_path(c, id, NULL);
    if (d) rm_tree(d);
    free(d);
}

int snap_core_prepare(snap_core *c, int kind, const char *key, const char *parent,
                      const snap_kv *labels, size_t n_labels, snap_mount *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    int rc = check_key("snapshot key", key, err);
    if (!rc) rc = check_labels(labels, n_labels, err);
    if (rc) return rc;
    const char *t0;
    if (kind == SNAP_ACTIVE && is_remote_layer(labels, n_labels, &t0) &&
        (rc = snap_nydus_check_blob(&c->nyd, labels, n_labels, err)))
        return rc; /* asked before taking the lock: a registry round trip */
    pthread_mutex_lock(&c->mu);
    MDB_txn *txn = NULL;
    snap_rec r = {0}, p = {0};
    uint64_t id = 0;
    int dirs = 0;
    const char *target = NULL;
    rc = snap_store_begin(&c->st, 1, &txn, err);
    if (rc) goto out;
    if (snap_store_get(&c->st, txn, key, &r, NULL) == 0) {
        snap_rec_free(&r);
        rc = cf_err_set(err, -EEXIST, "snapshot %s already exists", key);
        goto out;
    }
    if (parent && parent[0]) {
        rc = snap_store_get(&c->st, txn, parent, &p, err);
        if (rc) goto out;
        if (p.kind != SNAP_COMMITTED) {
            rc = cf_err_set(err, -EINVAL, "parent %s is not a committed snapshot", parent);
            goto out;
        }
    }
    int remote = kind == SNAP_ACTIVE && is_remote_layer(labels, n_labels, &target);
    if (remote) {
        /* A Nydus data layer: its bytes are read lazily through the image's bootstrap, so the
         * layer is committed at once under containerd's target name and nothing downloads. */
        if (snap_store_get(&c->st, txn, target, &r, NULL) == 0) {
            snap_rec_free(&r);
            rc = cf_err_set(err, -EEXIST, "target snapshot %s already exists", target);
            goto out;
        }
        key = target;
    }
    rc = snap_store_next_id(&c->st, txn, &id, err);
    if (rc) goto out;
    if (fill_rec(&r, id, key, parent, remote ? SNAP_COMMITTED : kind, labels, n_labels)) {
        rc = nomem(err);
        goto out;
    }
    rc = make_dirs(c, id, kind == SNAP_ACTIVE && !remote, err);
    if (rc) goto out;
    dirs = 1;
    rc = snap_store_put(&c->st, txn, &r, err);
    if (!rc && !remote) rc = build_mounts(c, txn, &r, out, err);
    if (rc) goto out;
    rc = snap_store_commit(txn, err);
    txn = NULL;
    if (!rc && remote)
        rc = cf_err_set(err, -EEXIST, "target snapshot %s: remote Nydus layer (read lazily)",
                        target);
    dirs = 0;
out:
    if (txn) mdb_txn_abort(txn);
    if (dirs) remove_dirs(c, id);
    if (rc && rc != -EEXIST) STAT_ADD(c, errors, 1);
    if (rc) snap_mount_free(out);
    snap_rec_free(&r);
    snap_rec_free(&p);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int snap_core_mounts(snap_core *c, const char *key, snap_mount *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&c->mu);
    MDB_txn *txn;
    snap_rec r = {0};
    int rc = snap_store_begin(&c->st, 0, &txn, err);
    if (!rc) {
        rc = snap_store_get(&c->st, txn, key, &r, err);
        if (!rc && r.kind == SNAP_COMMITTED)
            rc = cf_err_set(err, -EINVAL, "snapshot %s is committed: it has no mounts", key);
        if (!rc) rc = build_mounts(c, txn, &r, out, err);
        mdb_txn_abort(txn);
    }
    snap_rec_free(&r);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int snap_core_commit(snap_core *c, const char *name, const char *key, const snap_kv *labels,
                     size_t n_labels, cf_err *err)
{
    int rc = check_key("snapshot name", name, err);
    if (!rc) rc = check_labels(labels, n_labels, err);
    if (rc) return rc;
    pthread_mutex_lock(&c->mu);
    MDB_txn *txn = NULL;
    snap_rec r = {0}, x = {0};
    rc = snap_store_begin(&c->st, 1, &txn, err);
    if (!rc) rc = snap_store_get(&c->st, txn, key, &r, err);
    if (rc) goto out;
    if (r.kind != SNAP_ACTIVE) {
        rc =
            cf_err_set(err, -EBUSY, "snapshot %s is not active: only active snapshots commit", key);
        goto out;
    }
    if (snap_store_get(&c->st, txn, name, &x, NULL) == 0) {
        rc = cf_err_set(err, -EEXIST, "snapshot %s already exists", name);
        goto out;
    }
    char *fs = snap_path(c, r.id, "fs");
    if (!fs) {
        rc = nomem(err);
        goto out;
    }
    du(fs, &r.size, &r.inodes);
    free(fs);
    char *nn = strdup(name);
    if (!nn) {
        rc = nomem(err);
        goto out;
    }
    free(r.name);
    r.name = nn;
    r.kind = SNAP_COMMITTED;
    now(&r.updated_s, &r.updated_ns);
    for (size_t i = 0; i < n_labels; i++)
        if (label_set(&r, labels[i].k, labels[i].v)) {
            rc = nomem(err);
            goto out;
        }
    rc = snap_store_del(&c->st, txn, key, err);
    if (!rc) rc = snap_store_put(&c->st, txn, &r, err);
    if (!rc) {
        rc = snap_store_commit(txn, err);
        txn = NULL;
    }
out:
    if (txn) mdb_txn_abort(txn);
    if (rc && rc != -EEXIST) STAT_ADD(c, errors, 1);
    snap_rec_free(&r);
    snap_rec_free(&x);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Blob ids that a Nydus bootstrap layer's image reads (empty for other snapshots). */
static int image_blobs(snap_core *c, const snap_rec *r, char ***ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (!is_bootstrap(r)) return 0;
    char *boot = snap_path(c, r->id, "fs/image/image.boot");
    if (!boot) return -ENOMEM;
    int rc = snap_nydus_blob_ids(boot, ids, n, NULL);
    free(boot);
    return rc == -ENOENT ? 0 : rc;
}

/* Deletes the cache files of the removed image's blobs that no other image reads. */
static void drop_cache(snap_core *c, MDB_txn *txn, char **ids, size_t n, const char *gone)
{
    snap_rec *all = NULL;
    size_t na = 0;
    if (!n || snap_store_all(&c->st, txn, &all, &na, NULL)) return;
    for (size_t i = 0; i < na; i++) {
        if (!is_bootstrap(&all[i]) || !strcmp(all[i].name, gone)) continue;
        char **other;
        size_t no;
        if (image_blobs(c, &all[i], &other, &no)) {
            /* Unknown blob set: keep everything rather than delete what it may read. */
            n = 0;
            break;
        }
        for (size_t j = 0; j < no; j++)
            for (size_t k = 0; k < n; k++)
                if (ids[k] && !strcmp(ids[k], other[j])) {
                    free(ids[k]);
                    ids[k] = NULL;
                }
        free_ids(other, no);
    }
    snap_recs_free(all, na);
    for (size_t k = 0; k < n; k++)
        if (ids[k]) snap_nydus_drop_cache(&c->nyd, ids[k]);
}

int snap_core_remove(snap_core *c, const char *key, cf_err *err)
{
    pthread_mutex_lock(&c->mu);
    MDB_txn *txn = NULL;
    snap_rec r = {0}, *all = NULL;
    size_t n = 0;
    char **ids = NULL;
    size_t nids = 0;
    int rc = snap_store_begin(&c->st, 1, &txn, err);
    if (!rc) rc = snap_store_get(&c->st, txn, key, &r, err);
    if (!rc) rc = snap_store_all(&c->st, txn, &all, &n, err);
    if (rc) goto out;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(all[i].parent, key)) {
            rc = cf_err_set(err, -EBUSY, "snapshot %s has children (e.g. %s): remove them first",
                            key, all[i].name);
            goto out;
        }
    if (image_blobs(c, &r, &ids, &nids) < 0)
        cf_warn("snapshot %s: cannot read its bootstrap's blob table: cache files are kept", key);
    rc = snap_store_del(&c->st, txn, key, err);
    if (rc) goto out;
    if (is_bootstrap(&r) && c->erofs) {
        ed_drop(c, r.id, 1);
    } else if (is_bootstrap(&r) && is_attached(c, r.id)) {
        char name[32];
        cf_err e = {0};
        snprintf(name, sizeof(name), "%llu", (unsigned long long)r.id);
        int d = snap_mountd_detach(&c->md, name, &e);
        if (d && d != -ENOENT) {
            rc = cf_err_set(err, -EBUSY, "image of snapshot %s is still in use: %s", key,
                            cf_err_str(&e, d));
            goto out;
        }
        del_attached(c, r.id);
    }
    if (is_bootstrap(&r)) {
        unpin_blobs(c, ids, nids);
        pin_forget(c, r.id);
    }
    drop_cache(c, txn, ids, nids, key);
    rc = snap_store_commit(txn, err);
    txn = NULL;
    if (!rc) remove_dirs(c, r.id);
out:
    if (txn) mdb_txn_abort(txn);
    if (rc) STAT_ADD(c, errors, 1);
    free_ids(ids, nids);
    snap_rec_free(&r);
    snap_recs_free(all, n);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int snap_core_stat(snap_core *c, const char *key, snap_rec *out, cf_err *err)
{
    pthread_mutex_lock(&c->mu);
    MDB_txn *txn;
    int rc = snap_store_begin(&c->st, 0, &txn, err);
    if (!rc) {
        rc = snap_store_get(&c->st, txn, key, out, err);
        mdb_txn_abort(txn);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int snap_core_update(snap_core *c, const char *key, const snap_kv *labels, size_t n_labels,
                     const char *const *paths, size_t n_paths, snap_rec *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    int rc = check_labels(labels, n_labels, err);
    if (rc) return rc;
    pthread_mutex_lock(&c->mu);
    MDB_txn *txn = NULL;
    snap_rec r = {0};
    rc = snap_store_begin(&c->st, 1, &txn, err);
    if (!rc) rc = snap_store_get(&c->st, txn, key, &r, err);
    if (rc) goto out;
    int replace = n_paths == 0;
    for (size_t i = 0; i < n_paths && !rc; i++) {
        if (!strcmp(paths[i], "labels")) {
            replace = 1;
        } else if (!strncmp(paths[i], "labels.", 7) && paths[i][7]) {
            const char *k = paths[i] + 7, *v = NULL;
            for (size_t j = 0; j < n_labels; j++)
                if (!strcmp(labels[j].k, k)) v = labels[j].v;
            if (label_set(&r, k, v)) rc = nomem(err);
        } else {
            rc = cf_err_set(err, -EINVAL, "cannot update field %s of snapshot %s (only labels)",
                            paths[i], key);
        }
    }
    if (!rc && replace) {
        while (r.n_labels) label_set(&r, r.labels[0].k, NULL);
        for (size_t j = 0; j < n_labels && !rc; j++)
            if (label_set(&r, labels[j].k, labels[j].v)) rc = nomem(err);
    }
    if (!rc) rc = check_labels(r.labels, r.n_labels, err);
    if (rc) goto out;
    now(&r.updated_s, &r.updated_ns);
    rc = snap_store_put(&c->st, txn, &r, err);
    if (!rc) {
        rc = snap_store_commit(txn, err);
        txn = NULL;
    }
    if (!rc) {
        *out = r;
        memset(&r, 0, sizeof(r));
    }
out:
    if (txn) mdb_txn_abort(txn);
    snap_rec_free(&r);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int snap_core_usage(snap_core *c, const char *key, int64_t *size, int64_t *inodes, cf_err *err)
{
    snap_rec r;
    int rc = snap_core_stat(c, key, &r, err);
    if (rc) return rc;
    if (r.kind == SNAP_COMMITTED) {
        *size = r.size;
        *inodes = r.inodes;
    } else {
        /* Measured without the lock: du of a large upper directory must not stall others. */
        char *fs = snap_path(c, r.id, "fs");
        if (!fs) {
            snap_rec_free(&r);
            return nomem(err);
        }
        du(fs, size, inodes);
        free(fs);
    }
    snap_rec_free(&r);
    return 0;
}

int snap_core_list(snap_core *c, snap_rec **out, size_t *n, cf_err *err)
{
    pthread_mutex_lock(&c->mu);
    MDB_txn *txn;
    int rc = snap_store_begin(&c->st, 0, &txn, err);
    if (!rc) {
        rc = snap_store_all(&c->st, txn, out, n, err);
        mdb_txn_abort(txn);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int snap_core_cleanup(snap_core *c, cf_err *err)
{
    pthread_mutex_lock(&c->mu);
    MDB_txn *txn;
    snap_rec *all = NULL;
    size_t n = 0;
    int rc = snap_store_begin(&c->st, 0, &txn, err);
    if (!rc) {
        rc = snap_store_all(&c->st, txn, &all, &n, err);
        mdb_txn_abort(txn);
    }
    if (rc) goto out;
    /* Directories of snapshots that no longer exist (a crash between commit and rm). */
    DIR *d = opendir(c->snapdir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char *end;
        unsigned long long id = strtoull(de->d_name, &end, 10);
        if (de->d_name[0] == '.' || *end) continue;
        int used = 0;
        for (size_t i = 0; i < n && !used; i++) used = all[i].id == id;
        if (!used) {
            char *p = snap_path(c, id, NULL);
            if (p) {
                cf_info("cleanup: removing %s (no snapshot owns it)", p);
                rm_tree(p);
            }
            free(p);
        }
    }
    if (d) closedir(d);
    /* Images attached for snapshots that are gone. */
    for (size_t k = 0; k < c->n_ed;) {
        int used = 0;
        for (size_t i = 0; i < n && !used; i++)
            used = all[i].id == c->ed[k].id && is_bootstrap(&all[i]);
        if (used)
            k++;
        else
            ed_drop(c, c->ed[k].id, 1);
    }
    for (size_t k = 0; k < c->n_attached;) {
        int used = 0;
        for (size_t i = 0; i < n && !used; i++)
            used = all[i].id == c->attached[k] && is_bootstrap(&all[i]);
        if (used) {
            k++;
            continue;
        }
        char name[32];
        snprintf(name, sizeof(name), "%llu", (unsigned long long)c->attached[k]);
        snap_mountd_detach(&c->md, name, NULL);
        del_attached(c, c->attached[k]);
    }
out:
    snap_recs_free(all, n);
    pthread_mutex_unlock(&c->mu);
    return rc;
}
