/* Directory source: walks a tree (sorted names, no symlink following, same order every run),
 * keeping hard links (one inode per (dev, ino)), xattrs, devices, fifos and sockets. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cf/log.h"
#include "rafs/builder.h"

#define MAX_DEPTH 1024

struct hl {
    dev_t dev;
    ino_t ino;
    struct rafs_inode *inode;
};

struct walk {
    struct rafs_tree *t;
    rafs_blob_writer *w;
    struct rafs_progress *pr;
    struct hl *links; /* open-addressing hash of hard-linked source inodes */
    size_t nlinks, cap;
    char path[PATH_MAX]; /* source path of the current entry */
    char rel[PATH_MAX];  /* path inside the image */
};

static size_t hl_slot(const struct walk *wk, dev_t dev, ino_t ino)
{
    uint64_t h = ((uint64_t)dev * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)ino * 0xC2B2AE3D27D4EB4Full);
    return (size_t)(h ^ (h >> 31)) & (wk->cap - 1);
}

static struct rafs_inode *hl_get(const struct walk *wk, dev_t dev, ino_t ino)
{
    if (!wk->cap) return NULL;
    for (size_t i = hl_slot(wk, dev, ino); wk->links[i].inode; i = (i + 1) & (wk->cap - 1))
        if (wk->links[i].dev == dev && wk->links[i].ino == ino) return wk->links[i].inode;
    return NULL;
}

/* The walk keeps no reference: the tree holds the inode for as long as the walk runs. */
static int hl_put(struct walk *wk, dev_t dev, ino_t ino, struct rafs_inode *inode)
{
    if ((wk->nlinks + 1) * 2 > wk->cap) {
        struct walk old = *wk;
        wk->cap = wk->cap ? wk->cap * 2 : 256;
        wk->links = calloc(wk->cap, sizeof(*wk->links));
        if (!wk->links) {
            *wk = old;
            return -ENOMEM;
        }
        wk->nlinks = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.links[i].inode)
                hl_put(wk, old.links[i].dev, old.links[i].ino, old.links[i].inode);
        free(old.links);
    }
    size_t i = hl_slot(wk, dev, ino);
    while (wk->links[i].inode) i = (i + 1) & (wk->cap - 1);
    wk->links[i] = (struct hl){dev, ino, inode};
    wk->nlinks++;
    return 0;
}

static int read_xattrs(const char *path, struct rafs_inode *ino, cf_err *err)
{
    ssize_t n = llistxattr(path, NULL, 0);
    if (n < 0) return (errno == ENOTSUP) ? 0 : cf_err_set(err, -errno, "listxattr '%s'", path);
    if (n == 0) return 0;
    char *names = malloc((size_t)n);
    if (!names) return -ENOMEM;
    n = llistxattr(path, names, (size_t)n);
    int rc = n < 0 ? cf_err_set(err, -errno, "listxattr '%s'", path) : 0;
    for (ssize_t off = 0; !rc && off < n; off += (ssize_t)strlen(names + off) + 1) {
        const char *nm = names + off;
        ssize_t vl = lgetxattr(path, nm, NULL, 0);
        if (vl < 0) {
            rc = cf_err_set(err, -errno, "getxattr '%s' %s", path, nm);
            break;
        }
        char *v = malloc(vl ? (size_t)vl : 1);
        if (!v) {
            rc = -ENOMEM;
            break;
        }
        vl = lgetxattr(path, nm, v, (size_t)vl);
        if (vl < 0)
            rc = cf_err_set(err, -errno, "getxattr '%s' %s", path, nm);
        else {
            cf_err xe = {0};
            rc = rafs_inode_set_xattr(ino, nm, v, (size_t)vl, &xe);
            if (rc == -EINVAL) {
                cf_warn("'%s': %s; xattr skipped", path, xe.msg);
                rc = 0;
            } else if (rc) {
                rc = cf_err_set(err, rc, "'%s': %s", path, cf_err_str(&xe, rc));
            }
        }
        free(v);
    }
    free(names);
    return rc;
}

static int feed_file(struct walk *wk, struct rafs_inode *ino, uint64_t size, cf_err *err)
{
    int fd = open(wk->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return cf_err_set(err, -errno, "opening '%s': %s", wk->path, strerror(errno));
    int rc = rafs_blob_writer_begin_file(wk->w, ino, size, err);
    while (!rc) {
        void *buf;
        size_t avail;
        if ((rc = rafs_blob_writer_buf(wk->w, &buf, &avail, err)) || !avail) break;
        ssize_t n = read(fd, buf, avail);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = cf_err_set(err, -errno, "reading '%s': %s", wk->path, strerror(errno));
        } else if (n == 0) {
            rafs_blob_writer_end_file(wk->w, NULL);
            rc = cf_err_set(err, -EIO, "'%s' shrank while being read", wk->path);
        } else {
            rc = rafs_blob_writer_advance(wk->w, (size_t)n, err);
            if (wk->pr) {
                wk->pr->bytes += (uint64_t)n;
                rafs_progress_tick(wk->pr, 0);
            }
        }
    }
    if (!rc) rc = rafs_blob_writer_end_file(wk->w, err);
    close(fd);
    return rc;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int fill_inode(struct walk *wk, const struct stat *st, struct rafs_inode *ino, cf_err *err)
{
    ino->mode = st->st_mode;
    ino->uid = st->st_uid;
    ino->gid = st->st_gid;
    ino->mtime = (uint64_t)st->st_mtim.tv_sec;
    ino->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
    if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
        ino->rdev = rafs_encode_dev(major(st->st_rdev), minor(st->st_rdev));
    if (S_ISLNK(st->st_mode)) {
        char tgt[PATH_MAX];
        ssize_t n = readlink(wk->path, tgt, sizeof(tgt) - 1);
        if (n < 0) return cf_err_set(err, -errno, "readlink '%s'", wk->path);
        tgt[n] = 0;
        if (!(ino->symlink = strdup(tgt))) return -ENOMEM;
        ino->size = (uint64_t)n;
    }
    return read_xattrs(wk->path, ino, err);
}

static int walk_dir(struct walk *wk, struct rafs_node *dir, unsigned depth, cf_err *err)
{
    if (depth > MAX_DEPTH) return cf_err_set(err, -ELOOP, "'%s': nested too deep", wk->path);
    DIR *d = opendir(wk->path);
    if (!d) return cf_err_set(err, -errno, "opening directory '%s': %s", wk->path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **v = realloc(names, cap * sizeof(*v));
            if (!v) {
                rc = -ENOMEM;
                break;
            }
            names = v;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (!rc && n > 1) qsort(names, n, sizeof(*names), name_cmp);
    size_t plen = strlen(wk->path), rlen = strlen(wk->rel);
    for (size_t i = 0; !rc && i < n; i++) {
        if (plen + strlen(names[i]) + 2 >= sizeof(wk->path) ||
            rlen + strlen(names[i]) + 2 >= sizeof(wk->rel)) {
            rc = cf_err_set(err, -ENAMETOOLONG, "'%s/%s': path too long", wk->path, names[i]);
            break;
        }
        snprintf(wk->path + plen, sizeof(wk->path) - plen, "/%s", names[i]);
        snprintf(wk->rel + rlen, sizeof(wk->rel) - rlen, "/%s", names[i]);
        struct stat st;
        if (lstat(wk->path, &st)) {
            rc = cf_err_set(err, -errno, "stat '%s': %s", wk->path, strerror(errno));
            break;
        }
        struct rafs_inode *ino = NULL;
        if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) ino = hl_get(wk, st.st_dev, st.st_ino);
        struct rafs_node *node;
        if (ino) {
            rc = rafs_tree_add(wk->t, wk->rel, ino, &node, err);
        } else {
            if (!(ino = rafs_inode_new())) {
                rc = -ENOMEM;
                break;
            }
            rc = fill_inode(wk, &st, ino, err);
            if (!rc && S_ISREG(st.st_mode)) rc = feed_file(wk, ino, (uint64_t)st.st_size, err);
            if (!rc) rc = rafs_tree_add(wk->t, wk->rel, ino, &node, err);
            if (!rc && !S_ISDIR(st.st_mode) && st.st_nlink > 1)
                rc = hl_put(wk, st.st_dev, st.st_ino, ino);
            rafs_inode_put(ino);
        }
        if (wk->pr) wk->pr->entries++;
        if (!rc && S_ISDIR(st.st_mode)) rc = walk_dir(wk, node, depth + 1, err);
        wk->path[plen] = 0;
        wk->rel[rlen] = 0;
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    (void)dir;
    return rc;
}

int rafs_dir_source_read(const char *path, struct rafs_tree *t, rafs_blob_writer *w,
                         struct rafs_progress *pr, cf_err *err)
{
    struct walk *wk = calloc(1, sizeof(*wk));
    if (!wk) return -ENOMEM;
    wk->t = t;
    wk->w = w;
    wk->pr = pr;
    int rc = 0;
    struct stat st;
    if (strlen(path) >= sizeof(wk->path))
        rc = cf_err_set(err, -ENAMETOOLONG, "source path too long");
    else if (stat(path, &st))
        rc = cf_err_set(err, -errno, "source '%s': %s", path, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        rc = cf_err_set(err, -ENOTDIR, "source '%s' is not a directory", path);
    if (!rc) {
        snprintf(wk->path, sizeof(wk->path), "%s", path);
        size_t l = strlen(wk->path);
        while (l > 1 && wk->path[l - 1] == '/') wk->path[--l] = 0;
        rc = fill_inode(wk, &st, t->root->inode, err);
        if (!rc) rc = walk_dir(wk, t->root, 0, err);
    }
    free(wk->links);
    free(wk);
    return rc;
}
