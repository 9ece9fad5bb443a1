/* The FUSE low-level filesystem over RAFS images (see mount/fuse_fs.h). Stateless node ids:
 * a node id encodes (attach slot, nid), so lookup counts and forget need no bookkeeping. */
#define FUSE_USE_VERSION 312
#include "mount/fuse_fs.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cf/log.h"
#include "rafs/reader.h"

#define MAX_SLOTS     255u
#define SLOT_SHIFT    56
#define NID_MASK      ((1ull << SLOT_SHIFT) - 1)
#define DEFAULT_TTL_S 86400.0
#define NAME_MAX_LEN  255
#define MAX_REQUEST   (512u << 10) /* bytes of one read request: see op_init */

struct inst {
    char *name; /* NULL = free slot; "" in dedicated mode */
    rafs_image *img;
    mount_blob_cache *cache;
    mount_fs_release_fn release;
    void *owner;
    uint64_t root_nid;
};

static void inst_free(struct inst *in)
{
    mount_blob_cache_free(in->cache);
    rafs_image_close(in->img);
    if (in->release) in->release(in->owner);
    free(in->name);
}

struct mount_fs {
    struct mount_fs_opts o;
    double ttl;
    pthread_rwlock_t lock; /* slots: readers = requests, writer = attach/detach */
    struct inst slots[MAX_SLOTS];
    unsigned next_slot; /* where the search for a free slot starts */
    struct fuse_session *se;
    char *mountpoint;
    bool mounted;
    pthread_mutex_t run_mu; /* run_thread, running */
    pthread_t run_thread;
    bool running;
    unsigned max_threads;
    unsigned read_ahead_kb;
    time_t start_time;
};

/* ---- node ids ------------------------------------------------------------------------------ */

static fuse_ino_t node_of(const mount_fs *fs, unsigned slot, uint64_t nid)
{
    if (!fs->o.shared && nid == fs->slots[slot].root_nid) return FUSE_ROOT_ID;
    return ((uint64_t)slot << SLOT_SHIFT) | (nid + 2);
}

/* Resolves a node id under the read lock (the caller unlocks). 0 and *in = NULL for the
 * shared root; -ESTALE for a node of a detached image. */
static int resolve(mount_fs *fs, fuse_ino_t ino, struct inst **in, uint64_t *nid)
{
    *in = NULL;
    if (ino == FUSE_ROOT_ID) {
        if (fs->o.shared) return 0;
        if (!fs->slots[0].name) return -ESTALE;
        *in = &fs->slots[0];
        *nid = fs->slots[0].root_nid;
        return 0;
    }
    unsigned slot = (unsigned)(ino >> SLOT_SHIFT);
    if (slot >= MAX_SLOTS || !fs->slots[slot].name || (ino & NID_MASK) < 2) return -ESTALE;
    *in = &fs->slots[slot];
    *nid = (ino & NID_MASK) - 2;
    return 0;
}

static int slot_of(const mount_fs *fs, const struct inst *in)
{
    return (int)(in - fs->slots);
}

/* ---- attributes ------------------------------------------------------------------------------ */

static int stat_of(mount_fs *fs, struct inst *in, uint64_t nid, struct stat *st)
{
    struct rafs_stat rs;
    cf_err err = {0};
    int rc = rafs_stat(in->img, nid, &rs, &err);
    if (rc) {
        cf_warn("image %s: nid %llu: %s", in->name, (unsigned long long)nid, err.msg);
        return rc == -ENOMEM ? -ENOMEM : -EIO;
    }
    memset(st, 0, sizeof(*st));
    st->st_ino = rs.ino;
    st->st_mode = rs.mode;
    st->st_nlink = rs.nlink;
    st->st_uid = rs.uid;
    st->st_gid = rs.gid;
    st->st_size = (off_t)rs.size;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((rs.size + 511) / 512);
    if (S_ISCHR(rs.mode) || S_ISBLK(rs.mode))
        st->st_rdev = makedev(rafs_rdev_major(rs.rdev), rafs_rdev_minor(rs.rdev));
    st->st_mtim.tv_sec = (time_t)rs.mtime;
    st->st_mtim.tv_nsec = rs.mtime_nsec;
    st->st_atim = st->st_mtim;
    st->st_ctim = st->st_mtim;
    (void)fs;
    return 0;
}

/* attributes of a node that is not in an image: times are the daemon's start */
static void synthetic_stat(const mount_fs *fs, fuse_ino_t ino, mode_t mode, nlink_t nlink,
                           struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_mode = mode;
    st->st_nlink = nlink;
    st->st_blksize = 4096;
    st->st_mtim.tv_sec = fs->start_time;
    st->st_atim = st->st_ctim = st->st_mtim;
}

static void shared_root_stat(const mount_fs *fs, struct stat *st)
{
    synthetic_stat(fs, FUSE_ROOT_ID, S_IFDIR | 0755, 2, st);
}

static int fill_entry(mount_fs *fs, struct inst *in, uint64_t nid, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    int rc = stat_of(fs, in, nid, &e->attr);
    if (rc) return rc;
    e->ino = node_of(fs, (unsigned)slot_of(fs, in), nid);
    e->generation = 1;
    e->attr_timeout = fs->ttl;
    e->entry_timeout = fs->ttl;
    return 0;
}

/* ---- replies (rc: 0 or a negative errno) ---------------------------------------------------- */

static void reply_entry(fuse_req_t req, int rc, const struct fuse_entry_param *e)
{
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, e);
}

static void reply_attr(fuse_req_t req, int rc, const struct stat *st, double ttl)
{
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, st, ttl);
}

/* replies n bytes of buf (or the error) and frees buf */
static void reply_data(fuse_req_t req, int rc, char *buf, size_t n)
{
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_buf(req, buf, n);
    free(buf);
}

/* Replies the bytes of extents e[0..n) of the cache files (or the error). libfuse splices them
 * from the files into /dev/fuse when it can (FUSE_CAP_SPLICE_WRITE: no copy through our
 * memory) and reads them into a buffer otherwise (small replies, a pipe it cannot grow). */
static void reply_extents(fuse_req_t req, int rc, const struct mount_blob_extent *e, size_t n)
{
    if (rc || !n) {
        if (rc)
            fuse_reply_err(req, -rc);
        else
            fuse_reply_buf(req, NULL, 0);
        return;
    }
    struct fuse_bufvec *bv = malloc(sizeof(*bv) + (n - 1) * sizeof(bv->buf[0]));
    if (!bv) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    *bv = (struct fuse_bufvec){.count = n};
    for (size_t i = 0; i < n; i++)
        bv->buf[i] = (struct fuse_buf){.size = e[i].len,
                                       .flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK,
                                       .fd = e[i].fd,
                                       .pos = (off_t)e[i].offset};
    fuse_reply_data(req, bv, 0);
    free(bv);
}

/* ---- requests -------------------------------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    /* the image never changes: let the kernel cache symlinks and run lookups in parallel */
    if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
    /* Read replies are spliced from the cache files (reply_extents): no copy through our
     * memory (about 40% less daemon CPU per MiB read here). libfuse splices only when the reply
     * fits its pipe, and without CAP_SYS_RESOURCE a pipe holds at most pipe-max-size (1 MiB by
     * default): 1 MiB requests + header would always fall back to copying. The request size
     * follows max_write (max_pages), which a read-only filesystem has no other use for. */
    if (conn->capable & FUSE_CAP_SPLICE_WRITE) {
        conn->want |= FUSE_CAP_SPLICE_WRITE;
        if (conn->max_write > MAX_REQUEST) conn->max_write = MAX_REQUEST;
    }
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    mount_fs *fs = fuse_req_userdata(req);
    struct fuse_entry_param e;
    struct inst *in;
    uint64_t pnid = 0, nid;
    size_t len = strlen(name);
    pthread_rwlock_rdlock(&fs->lock);
    int rc = resolve(fs, parent, &in, &pnid);
    if (rc) goto out;
    if (!in) { /* shared root: an attached image's name */
        rc = -ENOENT;
        for (unsigned i = 0; i < MAX_SLOTS; i++) {
            if (fs->slots[i].name && !strcmp(fs->slots[i].name, name)) {
                rc = fill_entry(fs, &fs->slots[i], fs->slots[i].root_nid, &e);
                break;
            }
        }
        if (rc == -ENOENT) {
            /* images come and go here: no negative caching */
            memset(&e, 0, sizeof(e));
            rc = 0;
        }
        goto out;
    }
    if (len > NAME_MAX_LEN) {
        rc = -ENAMETOOLONG;
        goto out;
    }
    cf_err err = {0};
    rc = rafs_lookup_child(in->img, pnid, name, len, &nid, &err);
    if (rc == -ENOENT) {
        memset(&e, 0, sizeof(e)); /* ino 0: a cacheable "no such name" */
        e.entry_timeout = fs->ttl;
        rc = 0;
    } else if (rc == -ENOTDIR) {
        /* keep */
    } else if (rc) {
        cf_warn("image %s: lookup in nid %llu: %s", in->name, (unsigned long long)pnid, err.msg);
        rc = -EIO;
    } else {
        rc = fill_entry(fs, in, nid, &e);
    }
out:
    pthread_rwlock_unlock(&fs->lock);
    reply_entry(req, rc, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    mount_fs *fs = fuse_req_userdata(req);
    struct stat st;
    struct inst *in;
    uint64_t nid = 0;
    pthread_rwlock_rdlock(&fs->lock);
    int rc = resolve(fs, ino, &in, &nid);
    if (!rc) {
        if (in)
            rc = stat_of(fs, in, nid, &st);
        else
            shared_root_stat(fs, &st);
    }
    pthread_rwlock_unlock(&fs->lock);
    reply_attr(req, rc, &st, fs->ttl);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    mount_fs *fs = fuse_req_userdata(req);
    struct inst *in;
    uint64_t nid = 0;
    char buf[RAFS_PATH_MAX + 1];
    size_t len = 0;
    pthread_rwlock_rdlock(&fs->lock);
    int rc = resolve(fs, ino, &in, &nid);
    if (!rc && !in) rc = -EINVAL;
    if (!rc) {
        cf_err err = {0};
        rc = rafs_readlink(in->img, nid, buf, sizeof(buf) - 1, &len, &err);
        if (rc && rc != -EINVAL) {
            cf_warn("image %s: readlink nid %llu: %s", in->name, (unsigned long long)nid, err.msg);
            rc = -EIO;
        }
    }
    pthread_rwlock_unlock(&fs->lock);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    buf[len] = 0;
    fuse_reply_readlink(req, buf);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    mount_fs *fs = fuse_req_userdata(req);
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    struct inst *in;
    uint64_t nid = 0;
    pthread_rwlock_rdlock(&fs->lock);
    int rc = resolve(fs, ino, &in, &nid);
    pthread_rwlock_unlock(&fs->lock);
    if (!rc && !in) rc = -EISDIR;
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->keep_cache = 1; /* immutable: pages stay valid across opens */
    fi->noflush = 1;
    fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)fi;
    mount_fs *fs = fuse_req_userdata(req);
    struct inst *in;
    uint64_t nid = 0;
    struct mount_blob_extent *ext = NULL;
    size_t n = 0, total = 0;
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    pthread_rwlock_rdlock(&fs->lock);
    int rc = resolve(fs, ino, &in, &nid);
    if (!rc && !in) rc = -EISDIR;
    if (!rc) {
        cf_err err = {0};
        rc = mount_blob_cache_map_file(in->cache, nid, (uint64_t)off, size, &ext, &n, &total, &err);
        if (rc) {
            cf_warn("image %s: read nid %llu at %lld+%zu: %s", in->name, (unsigned long long)nid,
                    (long long)off, size, cf_err_str(&err, rc));
            rc = rc == -ENOMEM || rc == -EISDIR ? rc : -EIO;
        }
    }
    /* under the lock: the extents' fds are the cache's, which a detach closes */
    reply_extents(req, rc, ext, n);
    pthread_rwlock_unlock(&fs->lock);
    free(ext);
}

/* A directory's entries, copied at opendir (readdir offsets index this array). */
struct dirsnap {
    size_t n;
    struct dent {
        uint64_t nid;
        uint32_t name_off;
        uint16_t name_len;
        uint8_t type; /* DT_* */
    } * e;
    char *names;
};

static void dirsnap_free(struct dirsnap *d)
{
    if (!d) return;
    free(d->e);
    free(d->names);
    free(d);
}

static uint8_t dt_of(uint8_t erofs_ft)
{
    static const uint8_t map[] = {DT_UNKNOWN, DT_REG,  DT_DIR,  DT_CHR,
                                  DT_BLK,     DT_FIFO, DT_SOCK, DT_LNK};
    return erofs_ft < sizeof(map) ? map[erofs_ft] : DT_UNKNOWN;
}

static int dirsnap_add(struct dirsnap *d, size_t *cap, size_t *ncap, size_t *nlen, uint64_t nid,
                       uint8_t type, const char *name, size_t len)
{
    if (d->n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        struct dent *ne = realloc(d->e, c * sizeof(*ne));
        if (!ne) return -ENOMEM;
        d->e = ne;
        *cap = c;
    }
    if (*nlen + len + 1 > *ncap) {
        size_t c = (*ncap ? *ncap * 2 : 4096) + len + 1;
        char *nn = realloc(d->names, c);
        if (!nn) return -ENOMEM;
        d->names = nn;
        *ncap = c;
    }
    memcpy(d->names + *nlen, name, len);
    d->names[*nlen + len] = 0;
    d->e[d->n++] = (struct dent){nid, (uint32_t)*nlen, (uint16_t)len, type};
    *nlen += len + 1;
    return 0;
}

/* replies the open of directory snapshot d (or the error, freeing d) */
static void reply_opendir(fuse_req_t req, int rc, struct dirsnap *d, struct fuse_file_info *fi)
{
    if (rc < 0) {
        dirsnap_free(d);
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)d;
    if (fuse_reply_open(req, fi) == -ENOENT) dirsnap_free(d); /* interrupted */
}

/* "." and ".." of a synthetic directory (the shared root, the blob-device root) */
static int dirsnap_add_dots(struct dirsnap *d, size_t *cap, size_t *ncap, size_t *nlen)
{
    int rc = dirsnap_add(d, cap, ncap, nlen, FUSE_ROOT_ID, DT_DIR, ".", 1);
    if (!rc) rc = dirsnap_add(d, cap, ncap, nlen, FUSE_ROOT_ID, DT_DIR, "..", 2);
    return rc;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    mount_fs *fs = fuse_req_userdata(req);
    struct inst *in;
    uint64_t nid = 0;
    struct dirsnap *d = calloc(1, sizeof(*d));
    size_t cap = 0, ncap = 0, nlen = 0;
    if (!d) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_rwlock_rdlock(&fs->lock);
    int rc = resolve(fs, ino, &in, &nid);
    if (!rc && !in) { /* shared root */
        rc = dirsnap_add_dots(d, &cap, &ncap, &nlen);
        for (unsigned i = 0; i < MAX_SLOTS && !rc; i++)
            if (fs->slots[i].name)
                rc = dirsnap_add(d, &cap, &ncap, &nlen, fs->slots[i].root_nid | (1ull << 63),
                                 DT_DIR, fs->slots[i].name, strlen(fs->slots[i].name));
    } else if (!rc) {
        rafs_dir_iter it;
        struct rafs_dirent de;
        cf_err err = {0};
        rc = rafs_dir_open(in->img, nid, &it, &err);
        while (!rc && (rc = rafs_dir_next(&it, &de, &err)) == 1)
            rc = dirsnap_add(d, &cap, &ncap, &nlen, de.nid, dt_of(de.file_type), de.name,
                             de.name_len);
        if (rc < 0 && rc != -ENOTDIR && rc != -ENOMEM) {
            cf_warn("image %s: directory nid %llu: %s", in->name, (unsigned long long)nid, err.msg);
            rc = -EIO;
        }
    }
    pthread_rwlock_unlock(&fs->lock);
    if (in) { /* immutable directories: the kernel may cache their listing */
        fi->cache_readdir = 1;
        fi->keep_cache = 1;
    }
    reply_opendir(req, rc, d, fi);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    dirsnap_free((struct dirsnap *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* a readdir entry: inode number and type only; returns its size (> room: it did not fit) */
static size_t add_plain_direntry(fuse_req_t req, char *buf, size_t room, const char *name,
                                 fuse_ino_t ino, uint8_t type, size_t i)
{
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_ino = ino;
    st.st_mode = (mode_t)type << 12;
    return fuse_add_direntry(req, buf, room, name, &st, (off_t)(i + 1));
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi, bool plus)
{
    mount_fs *fs = fuse_req_userdata(req);
    struct dirsnap *d = (struct dirsnap *)(uintptr_t)fi->fh;
    char *buf = malloc(size ? size : 1);
    size_t pos = 0;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    struct inst *in = NULL;
    uint64_t dnid = 0;
    pthread_rwlock_rdlock(&fs->lock);
    int rc = resolve(fs, ino, &in, &dnid);
    for (size_t i = off < 0 ? 0 : (size_t)off; !rc && i < d->n; i++) {
        const struct dent *de = &d->e[i];
        const char *name = d->names + de->name_off;
        bool dot = !strcmp(name, ".") || !strcmp(name, "..");
        size_t need;
        if (plus) {
            struct fuse_entry_param e;
            memset(&e, 0, sizeof(e));
            if (dot) {
                e.attr.st_ino = in ? de->nid : FUSE_ROOT_ID;
                e.attr.st_mode = S_IFDIR;
            } else if (!in) { /* shared root: an image */
                unsigned s;
                for (s = 0; s < MAX_SLOTS; s++)
                    if (fs->slots[s].name && !strcmp(fs->slots[s].name, name)) break;
                if (s == MAX_SLOTS) continue; /* detached since opendir */
                if ((rc = fill_entry(fs, &fs->slots[s], fs->slots[s].root_nid, &e))) break;
            } else if ((rc = fill_entry(fs, in, de->nid, &e))) {
                break;
            }
            need = fuse_add_direntry_plus(req, buf + pos, size - pos, name, &e, (off_t)(i + 1));
        } else {
            need = add_plain_direntry(req, buf + pos, size - pos, name, in ? de->nid : FUSE_ROOT_ID,
                                      de->type, i);
        }
        if (need > size - pos) break;
        pos += need;
    }
    pthread_rwlock_unlock(&fs->lock);
    reply_data(req, pos ? 0 : rc, buf, pos);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, true);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    mount_fs *fs = fuse_req_userdata(req);
    struct statvfs sv;
    memset(&sv, 0, sizeof(sv));
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    sv.f_namemax = NAME_MAX_LEN;
    sv.f_flag = ST_RDONLY;
    struct inst *in;
    uint64_t nid = 0;
    pthread_rwlock_rdlock(&fs->lock);
    if (!resolve(fs, ino, &in, &nid) && in) {
        const struct rafs_super_info *sb = rafs_image_super(in->img);
        uint64_t bytes = sb->bootstrap_size;
        for (uint32_t i = 0; i < rafs_image_blob_count(in->img); i++)
            bytes += rafs_image_blob(in->img, i)->uncompressed_size;
        sv.f_blocks = (bytes + 4095) / 4096;
        sv.f_files = sb->inos;
    }
    pthread_rwlock_unlock(&fs->lock);
    fuse_reply_statfs(req, &sv);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
    (void)ino;
    fuse_reply_err(req, (mask & W_OK) ? EROFS : 0); /* the kernel checks modes itself */
}

static int xattr_common(fuse_req_t req, fuse_ino_t ino, struct inst **in, uint64_t *nid)
{
    mount_fs *fs = fuse_req_userdata(req);
    int rc = resolve(fs, ino, in, nid);
    if (!rc && !*in) rc = -ENODATA;
    return rc;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    mount_fs *fs = fuse_req_userdata(req);
    struct inst *in;
    uint64_t nid = 0;
    size_t len = 0;
    char *buf = NULL;
    pthread_rwlock_rdlock(&fs->lock);
    int rc = xattr_common(req, ino, &in, &nid);
    if (!rc && !fs->o.enable_xattr) rc = -ENODATA;
    if (!rc && size && !(buf = malloc(size))) rc = -ENOMEM;
    if (!rc) {
        cf_err err = {0};
        rc = rafs_getxattr(in->img, nid, name, buf, size, &len, &err);
        if (rc && rc != -ENODATA && rc != -ERANGE && rc != -ENOMEM) {
            cf_warn("image %s: getxattr nid %llu: %s", in->name, (unsigned long long)nid, err.msg);
            rc = -EIO;
        }
    }
    pthread_rwlock_unlock(&fs->lock);
    if (rc)
        fuse_reply_err(req, -rc);
    else if (!size)
        fuse_reply_xattr(req, len);
    else
        fuse_reply_buf(req, buf, len);
    free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    mount_fs *fs = fuse_req_userdata(req);
    struct inst *in;
    uint64_t nid = 0;
    size_t len = 0;
    char *buf = NULL;
    pthread_rwlock_rdlock(&fs->lock);
    int rc = xattr_common(req, ino, &in, &nid);
    if (rc == -ENODATA || (!rc && !fs->o.enable_xattr)) {
        rc = 0;
        in = NULL; /* nothing to list */
    }
    if (!rc && size && !(buf = malloc(size))) rc = -ENOMEM;
    if (!rc && in) {
        cf_err err = {0};
        rc = rafs_listxattr(in->img, nid, buf, size, &len, &err);
        if (rc && rc != -ERANGE && rc != -ENOMEM) {
            cf_warn("image %s: listxattr nid %llu: %s", in->name, (unsigned long long)nid, err.msg);
            rc = -EIO;
        }
    }
    pthread_rwlock_unlock(&fs->lock);
    if (rc)
        fuse_reply_err(req, -rc);
    else if (!size)
        fuse_reply_xattr(req, len);
    else
        fuse_reply_buf(req, buf, len);
    free(buf);
}

/* Every modifying request: the image is read-only (the mount is "ro" too, so the VFS normally
 * refuses these before they get here). */
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    (void)ino, (void)attr, (void)to_set, (void)fi;
    fuse_reply_err(req, EROFS);
}
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    (void)parent, (void)name, (void)mode, (void)rdev;
    fuse_reply_err(req, EROFS);
}
static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    (void)parent, (void)name, (void)mode;
    fuse_reply_err(req, EROFS);
}
static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    (void)parent, (void)name;
    fuse_reply_err(req, EROFS);
}
static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    (void)link, (void)parent, (void)name;
    fuse_reply_err(req, EROFS);
}
static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    (void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
    fuse_reply_err(req, EROFS);
}
static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    (void)ino, (void)newparent, (void)newname;
    fuse_reply_err(req, EROFS);
}
static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    (void)ino, (void)name, (void)value, (void)size, (void)flags;
    fuse_reply_err(req, EROFS);
}
static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    (void)ino, (void)name;
    fuse_reply_err(req, EROFS);
}
static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    (void)parent, (void)name, (void)mode, (void)fi;
    fuse_reply_err(req, EROFS);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .open = op_open,
    .read = op_read,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .access = op_access,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
    .create = op_create,
};

/* ---- blob devices (kernel-EROFS mode) ---------------------------------------------------------
 * Node ids: 1 = the root directory, 2 + i = blob i of the image in slot 0. */

static int dev_blob(mount_fs *fs, fuse_ino_t ino, struct inst **in, uint32_t *blob)
{
    *in = fs->slots[0].name ? &fs->slots[0] : NULL;
    if (!*in) return -ESTALE;
    if (ino < 2 || ino - 2 >= rafs_image_blob_count((*in)->img)) return -ENOENT;
    *blob = (uint32_t)(ino - 2);
    return 0;
}

static void dev_stat(mount_fs *fs, struct inst *in, fuse_ino_t ino, struct stat *st)
{
    if (ino == FUSE_ROOT_ID) {
        synthetic_stat(fs, ino, S_IFDIR | 0555, 2, st);
        return;
    }
    const struct rafs_blob_info *bi = rafs_image_blob(in->img, (uint32_t)(ino - 2));
    synthetic_stat(fs, ino, S_IFREG | 0444, 1, st);
    st->st_size = (off_t)bi->uncompressed_size;
    st->st_blocks = (blkcnt_t)((bi->uncompressed_size + 511) / 512);
}

static void dev_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    mount_fs *fs = fuse_req_userdata(req);
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    int rc = parent == FUSE_ROOT_ID ? 0 : -ENOTDIR;
    pthread_rwlock_rdlock(&fs->lock);
    struct inst *in = fs->slots[0].name ? &fs->slots[0] : NULL;
    if (!rc && !in) rc = -ESTALE;
    for (uint32_t i = 0; !rc && i < rafs_image_blob_count(in->img); i++) {
        if (strcmp(rafs_image_blob(in->img, i)->id, name)) continue;
        e.ino = 2 + i;
        e.generation = 1;
        e.attr_timeout = e.entry_timeout = fs->ttl;
        dev_stat(fs, in, e.ino, &e.attr);
        break;
    }
    pthread_rwlock_unlock(&fs->lock);
    if (!rc && !e.ino) rc = -ENOENT;
    reply_entry(req, rc, &e);
}

static void dev_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    mount_fs *fs = fuse_req_userdata(req);
    struct stat st;
    struct inst *in;
    uint32_t blob;
    pthread_rwlock_rdlock(&fs->lock);
    int rc =
        ino == FUSE_ROOT_ID ? (fs->slots[0].name ? 0 : -ESTALE) : dev_blob(fs, ino, &in, &blob);
    if (!rc) dev_stat(fs, &fs->slots[0], ino, &st);
    pthread_rwlock_unlock(&fs->lock);
    reply_attr(req, rc, &st, fs->ttl);
}

static void dev_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if ((fi->flags & O_ACCMODE) != O_RDONLY) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (ino == FUSE_ROOT_ID) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

static void dev_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)fi;
    mount_fs *fs = fuse_req_userdata(req);
    struct inst *in;
    uint32_t blob = 0;
    struct mount_blob_extent e = {-1, 0, 0};
    pthread_rwlock_rdlock(&fs->lock);
    int rc = off < 0 ? -EINVAL : dev_blob(fs, ino, &in, &blob);
    if (!rc) {
        cf_err err = {0};
        rc = mount_blob_cache_map_blob(in->cache, blob, (uint64_t)off, size, &e, &err);
        if (rc) {
            cf_warn("image %s: blob device %u at %lld+%zu: %s", in->name, blob, (long long)off,
                    size, cf_err_str(&err, rc));
            rc = rc == -ENOMEM ? rc : -EIO;
        }
    }
    reply_extents(req, rc, &e, e.len ? 1 : 0); /* under the lock, as op_read */
    pthread_rwlock_unlock(&fs->lock);
}

static void dev_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    mount_fs *fs = fuse_req_userdata(req);
    if (ino != FUSE_ROOT_ID) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    struct dirsnap *d = calloc(1, sizeof(*d));
    size_t cap = 0, ncap = 0, nlen = 0;
    int rc = d ? 0 : -ENOMEM;
    pthread_rwlock_rdlock(&fs->lock);
    if (!rc) rc = dirsnap_add_dots(d, &cap, &ncap, &nlen);
    struct inst *in = fs->slots[0].name ? &fs->slots[0] : NULL;
    for (uint32_t i = 0; !rc && in && i < rafs_image_blob_count(in->img); i++) {
        const char *id = rafs_image_blob(in->img, i)->id;
        rc = dirsnap_add(d, &cap, &ncap, &nlen, 2 + i, DT_REG, id, strlen(id));
    }
    pthread_rwlock_unlock(&fs->lock);
    reply_opendir(req, rc, d, fi);
}

static void dev_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
    (void)ino;
    struct dirsnap *d = (struct dirsnap *)(uintptr_t)fi->fh;
    char *buf = malloc(size ? size : 1);
    size_t pos = 0;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    for (size_t i = off < 0 ? 0 : (size_t)off; i < d->n; i++) {
        size_t need = add_plain_direntry(req, buf + pos, size - pos, d->names + d->e[i].name_off,
                                         d->e[i].nid, d->e[i].type, i);
        if (need > size - pos) break;
        pos += need;
    }
    reply_data(req, 0, buf, pos);
}

static const struct fuse_lowlevel_ops dev_ops = {
    .init = op_init,
    .lookup = dev_lookup,
    .getattr = dev_getattr,
    .open = dev_open,
    .read = dev_read,
    .opendir = dev_opendir,
    .readdir = dev_readdir,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .access = op_access,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .create = op_create,
};

/* ---- life cycle ------------------------------------------------------------------------------ */

int mount_fs_new(const struct mount_fs_opts *o, mount_fs **out, cf_err *err)
{
    mount_fs *fs = calloc(1, sizeof(*fs));
    if (!fs) return cf_err_set(err, -ENOMEM, "out of memory");
    fs->o = *o;
    fs->ttl = o->timeout_s > 0 ? o->timeout_s : DEFAULT_TTL_S;
    fs->start_time = time(NULL);
    pthread_rwlock_init(&fs->lock, NULL);
    pthread_mutex_init(&fs->run_mu, NULL);
    *out = fs;
    return 0;
}

static bool valid_name(const char *name)
{
    if (!name) return false;
    size_t len = strlen(name);
    return len && len <= NAME_MAX_LEN && !strchr(name, '/') && strcmp(name, ".") &&
           strcmp(name, "..");
}

int mount_fs_attach(mount_fs *fs, const char *name, rafs_image *img, mount_blob_cache *cache,
                    mount_fs_release_fn release, void *owner, cf_err *err)
{
    int rc = 0;
    char *copy = NULL;
    if (fs->o.shared ? !valid_name(name) : name != NULL) {
        rc = cf_err_set(err, -EINVAL, "mount name '%s': %s", name ? name : "(none)",
                        fs->o.shared ? "must be one path component (/<name>)"
                                     : "a dedicated daemon serves one image at its root");
        goto fail;
    }
    if (!(copy = strdup(name ? name : ""))) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    pthread_rwlock_wrlock(&fs->lock);
    /* Slots are handed out round-robin: the kernel may still hold node ids of a detached
     * image for a while, and they must not name another image's inodes. */
    unsigned free_slot = MAX_SLOTS;
    for (unsigned k = 0; k < MAX_SLOTS; k++) {
        unsigned i = (fs->next_slot + k) % MAX_SLOTS;
        if (fs->slots[i].name && !strcmp(fs->slots[i].name, copy)) {
            rc = cf_err_set(err, -EEXIST, "%s%s is already mounted", fs->o.shared ? "/" : "",
                            fs->o.shared ? copy : "an image");
            break;
        }
        if (!fs->slots[i].name && free_slot == MAX_SLOTS) free_slot = i;
    }
    if (!rc && free_slot != MAX_SLOTS) fs->next_slot = free_slot + 1;
    if (!rc && (free_slot == MAX_SLOTS || (!fs->o.shared && free_slot != 0)))
        rc = cf_err_set(err, -ENOSPC, "too many images attached (%u)", MAX_SLOTS);
    if (!rc) {
        struct inst *in = &fs->slots[free_slot];
        in->name = copy;
        in->img = img;
        in->cache = cache;
        in->release = release;
        in->owner = owner;
        in->root_nid = rafs_image_super(img)->root_nid;
    }
    pthread_rwlock_unlock(&fs->lock);
    if (rc) goto fail;
    if (fs->o.shared && fs->se)
        fuse_lowlevel_notify_inval_entry(fs->se, FUSE_ROOT_ID, copy, strlen(copy));
    return 0;
fail:
    free(copy);
    mount_blob_cache_free(cache);
    rafs_image_close(img);
    if (release) release(owner);
    return rc;
}

int mount_fs_detach(mount_fs *fs, const char *name, cf_err *err)
{
    const char *want = name ? name : "";
    pthread_rwlock_wrlock(&fs->lock);
    struct inst gone = {0};
    for (unsigned i = 0; i < MAX_SLOTS; i++) {
        if (fs->slots[i].name && !strcmp(fs->slots[i].name, want)) {
            gone = fs->slots[i];
            memset(&fs->slots[i], 0, sizeof(fs->slots[i]));
            break;
        }
    }
    pthread_rwlock_unlock(&fs->lock);
    if (!gone.name) return cf_err_set(err, -ENOENT, "/%s is not mounted", want);
    if (fs->o.shared && fs->se)
        fuse_lowlevel_notify_inval_entry(fs->se, FUSE_ROOT_ID, gone.name, strlen(gone.name));
    inst_free(&gone);
    return 0;
}

void mount_fs_foreach(mount_fs *fs, mount_fs_visit_fn fn, void *ctx)
{
    pthread_rwlock_rdlock(&fs->lock);
    for (unsigned i = 0; i < MAX_SLOTS; i++)
        if (fs->slots[i].name)
            fn(fs->slots[i].name, fs->slots[i].img, fs->slots[i].cache, fs->slots[i].owner, ctx);
    pthread_rwlock_unlock(&fs->lock);
}

/* Is the top mount at `path` a FUSE filesystem? (/proc/self/mounts, octal escapes undone) */
static bool fuse_mounted_at(const char *path)
{
    char real[PATH_MAX], line[3 * PATH_MAX];
    if (!realpath(path, real)) return false;
    FILE *f = fopen("/proc/self/mounts", "re");
    if (!f) return false;
    bool found = false;
    while (fgets(line, sizeof(line), f)) {
        char *dev = strtok(line, " "), *mp = strtok(NULL, " "), *type = strtok(NULL, " ");
        if (!dev || !mp || !type) continue;
        char *w = mp;
        for (char *r = mp; *r; r++) {
            if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] && r[3]) {
                *w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
                r += 3;
            } else {
                *w++ = *r;
            }
        }
        *w = 0;
        if (!strcmp(mp, real)) found = !strncmp(type, "fuse", 4); /* the last one is on top */
    }
    fclose(f);
    return found;
}

int mount_fs_clean_stale(const char *path, cf_err *err)
{
    /* statfs always reaches the FUSE server (stat may be answered from cached attributes):
     * a dead one fails with ENOTCONN. Dead mounts may be stacked: peel them all. */
    int cleaned = 0;
    for (int i = 0; i < 16; i++) {
        struct statvfs sv;
        if (statvfs(path, &sv) == 0) {
            if (fuse_mounted_at(path))
                return cf_err_set(err, -EBUSY,
                                  "%s: a live FUSE filesystem is mounted there (another "
                                  "chunkfly-mount?); unmount it first",
                                  path);
            return cleaned;
        }
        int e = errno;
        if (e == ENOENT) return cf_err_set(err, -ENOENT, "mountpoint %s does not exist", path);
        if (e != ENOTCONN && e != ECONNABORTED) return cleaned;
        if (umount2(path, MNT_DETACH) < 0)
            return cf_err_set(err, -errno,
                              "%s: a dead FUSE mount is left there and cannot be unmounted: %s",
                              path, strerror(errno));
        cf_warn("%s: cleaned a stale FUSE mount left by a previous daemon", path);
        cleaned = 1;
    }
    return cf_err_set(err, -EBUSY, "%s: more than 16 stale mounts stacked", path);
}

int mount_fs_mount(mount_fs *fs, const char *mountpoint, const struct mount_fs_mount_opts *o,
                   cf_err *err)
{
    char opts[512];
    snprintf(opts, sizeof(opts), "ro,default_permissions,fsname=%s,subtype=rafs%s",
             o->fsname ? o->fsname : "chunkfly", o->allow_other ? ",allow_other" : "");
    char *argv[] = {"chunkfly-mount", "-o", opts, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    const struct fuse_lowlevel_ops *table = fs->o.blob_devices ? &dev_ops : &ops;
    fs->se = fuse_session_new(&args, table, sizeof(*table), fs);
    fuse_opt_free_args(&args);
    if (!fs->se)
        return cf_err_set(err, -EINVAL, "cannot create the FUSE session (options %s)", opts);
    if (fuse_session_mount(fs->se, mountpoint) != 0) {
        fuse_session_destroy(fs->se);
        fs->se = NULL;
        return cf_err_set(err, -EIO,
                          "cannot mount FUSE at %s (is /dev/fuse there, are we root, "
                          "does the directory exist?)",
                          mountpoint);
    }
    fs->mounted = true;
    fs->max_threads = o->max_threads;
    fs->read_ahead_kb = o->read_ahead_kb;
    fs->mountpoint = strdup(mountpoint);
    return 0;
}

struct ra_job {
    unsigned kb;
    char path[]; /* the mountpoint */
};

/* Sets the mount's read_ahead_kb. stat() of the mount returns only after the kernel processed
 * the INIT reply (which caps readahead at 128 KiB: a value written before would be lowered),
 * and it tells the mount's device, whose bdi is /sys/class/bdi/MAJ:MIN. */
static void *set_read_ahead(void *arg)
{
    struct ra_job *j = arg;
    struct stat st;
    if (stat(j->path, &st) == 0) {
        char p[64];
        snprintf(p, sizeof(p), "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
                 minor(st.st_dev));
        FILE *f = fopen(p, "w");
        if (!f || fprintf(f, "%u\n", j->kb) < 0 || fclose(f) != 0)
            cf_warn("%s: cannot set the mount's readahead to %u KiB in %s", j->path, j->kb, p);
        else
            cf_debug("%s: readahead %u KiB", j->path, j->kb);
        f = NULL;
    }
    free(j);
    return NULL;
}

static void start_read_ahead(mount_fs *fs)
{
    if (!fs->read_ahead_kb || !fs->mountpoint) return;
    size_t n = strlen(fs->mountpoint) + 1;
    struct ra_job *j = malloc(sizeof(*j) + n);
    if (!j) return;
    j->kb = fs->read_ahead_kb;
    memcpy(j->path, fs->mountpoint, n);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, set_read_ahead, j) != 0) free(j);
    pthread_attr_destroy(&a);
}

static void wake_handler(int sig)
{
    (void)sig; /* only interrupts the loop's wait */
}

int mount_fs_run(mount_fs *fs)
{
    if (!fs->se) return -EINVAL;
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (!cfg) return -ENOMEM;
    fuse_loop_cfg_set_clone_fd(cfg, 1);
    if (fs->max_threads) {
        fuse_loop_cfg_set_max_threads(cfg, fs->max_threads);
        fuse_loop_cfg_set_idle_threads(cfg, fs->max_threads);
    }
    /* mount_fs_stop() interrupts libfuse's wait in this thread with SIGUSR2 (no SA_RESTART) */
    struct sigaction sa = {.sa_handler = wake_handler};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    pthread_mutex_lock(&fs->run_mu);
    fs->run_thread = pthread_self();
    fs->running = true;
    pthread_mutex_unlock(&fs->run_mu);
    start_read_ahead(fs);
    int rc = fuse_session_exited(fs->se) ? 0 : fuse_session_loop_mt(fs->se, cfg);
    pthread_mutex_lock(&fs->run_mu);
    fs->running = false;
    pthread_mutex_unlock(&fs->run_mu);
    fuse_loop_cfg_destroy(cfg);
    return rc < 0 ? rc : 0;
}

void mount_fs_stop(mount_fs *fs)
{
    if (!fs->se) return;
    fuse_session_exit(fs->se);
    /* The loop's main thread sleeps on a semaphore that only a signal or a finishing worker
     * wakes: poke it until mount_fs_run() has returned. */
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&fs->run_mu);
        bool running = fs->running;
        if (running) pthread_kill(fs->run_thread, SIGUSR2);
        pthread_mutex_unlock(&fs->run_mu);
        if (!running) return;
        usleep(50 * 1000);
    }
}

void mount_fs_unmount(mount_fs *fs)
{
    if (fs->se && fs->mounted) fuse_session_unmount(fs->se);
    fs->mounted = false;
}

void mount_fs_free(mount_fs *fs)
{
    if (!fs) return;
    if (fs->se) {
        if (fs->mounted) fuse_session_unmount(fs->se);
        fuse_session_destroy(fs->se);
    }
    for (unsigned i = 0; i < MAX_SLOTS; i++) {
        if (fs->slots[i].name) inst_free(&fs->slots[i]);
    }
    pthread_rwlock_destroy(&fs->lock);
    pthread_mutex_destroy(&fs->run_mu);
    free(fs->mountpoint);
    free(fs);
}
