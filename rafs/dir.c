/* RAFS v6 directories: EROFS dirent blocks (12-byte dirents, names packed after them, sorted
 * bytewise), iteration, binary-search lookup, path resolution and the whole-tree walk with
 * loop detection (nydus-format.md §2.8). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "reader_priv.h"

#define DIRENT_SIZE ((uint32_t)sizeof(struct erofs_dirent))

static int iter_block(rafs_dir_iter *it, uint64_t blk, const uint8_t **p, uint32_t *l)
{
    uint64_t nblocks = it->size / RAFS_BLOCK_SIZE + (it->size % RAFS_BLOCK_SIZE != 0);
    uint64_t rem = it->size - blk * RAFS_BLOCK_SIZE;
    if (blk >= nblocks) return -EINVAL;
    *l = rem < RAFS_BLOCK_SIZE ? (uint32_t)rem : RAFS_BLOCK_SIZE;
    if (it->layout == EROFS_INODE_FLAT_INLINE && blk == nblocks - 1)
        *p = it->img->data + it->tail_off;
    else
        *p = it->img->data + ((uint64_t)it->i_u + blk) * RAFS_BLOCK_SIZE;
    return 0;
}

/* Loads block `blk` and validates its first nameoff; returns the entry count. */
static int load_block(rafs_dir_iter *it, uint64_t blk, cf_err *err)
{
    const uint8_t *p;
    uint32_t l;
    if (iter_block(it, blk, &p, &l))
        return cf_err_set(err, -EINVAL, "dir nid %llu: no block %llu", (unsigned long long)it->nid,
                          (unsigned long long)blk);
    if (l < DIRENT_SIZE + 1)
        return cf_err_set(err, -EBADMSG, "dir nid %llu block %llu: %u bytes cannot hold a dirent",
                          (unsigned long long)it->nid, (unsigned long long)blk, l);
    uint32_t off0 = rafs_get16(p + 8);
    if (off0 < DIRENT_SIZE || off0 % DIRENT_SIZE || off0 >= l)
        return cf_err_set(err, -EBADMSG,
                          "dir nid %llu block %llu: first name offset %u invalid (block has %u "
                          "bytes)",
                          (unsigned long long)it->nid, (unsigned long long)blk, off0, l);
    it->bp = p;
    it->blen = l;
    it->blk = blk;
    it->nentries = off0 / DIRENT_SIZE;
    it->entry = 0;
    return 0;
}

/* Entry i of the loaded block: validated name extent. */
static int block_entry(const rafs_dir_iter *it, uint32_t i, struct rafs_dirent *out, cf_err *err)
{
    const uint8_t *d = it->bp + (size_t)i * DIRENT_SIZE;
    uint32_t noff = rafs_get16(d + 8);
    uint32_t nend = i + 1 < it->nentries ? rafs_get16(d + DIRENT_SIZE + 8) : it->blen;
    if (noff < it->nentries * DIRENT_SIZE || nend > it->blen || nend <= noff)
        return cf_err_set(err, -EBADMSG,
                          "dir nid %llu block %llu dirent %u: name offsets %u..%u invalid",
                          (unsigned long long)it->nid, (unsigned long long)it->blk, i, noff, nend);
    uint32_t nlen = nend - noff;
    if (i + 1 == it->nentries) {
        /* the last name runs to the end of the valid data, zero padded */
        const uint8_t *z = memchr(it->bp + noff, 0, nlen);
        if (z) nlen = (uint32_t)(z - (it->bp + noff));
    }
    if (nlen == 0 || nlen > EROFS_NAME_LEN)
        return cf_err_set(err, -EBADMSG, "dir nid %llu block %llu dirent %u: name length %u",
                          (unsigned long long)it->nid, (unsigned long long)it->blk, i, nlen);
    const uint8_t *name = it->bp + noff;
    if (memchr(name, 0, nlen) || memchr(name, '/', nlen))
        return cf_err_set(err, -EBADMSG,
                          "dir nid %llu block %llu dirent %u: name contains NUL or '/'",
                          (unsigned long long)it->nid, (unsigned long long)it->blk, i);
    out->nid = rafs_get64(d);
    out->file_type = d[10];
    if (out->file_type >= EROFS_FT_MAX)
        return cf_err_set(err, -EBADMSG, "dir nid %llu: dirent '%.*s' has file type %u",
                          (unsigned long long)it->nid, (int)nlen, (const char *)name,
                          out->file_type);
    out->name_len = (uint16_t)nlen;
    memcpy(out->name, name, nlen);
    out->name[nlen] = 0;
    return 0;
}

int rafs_dir_open(const rafs_image *img, uint64_t nid, rafs_dir_iter *it, cf_err *err)
{
    struct rafs_inode ino;
    int rc = rafs_inode_read(img, nid, &ino, err);
    if (rc) return rc;
    if ((ino.st.mode & S_IFMT) != S_IFDIR)
        return cf_err_set(err, -ENOTDIR, "inode nid %llu is not a directory",
                          (unsigned long long)nid);
    memset(it, 0, sizeof(*it));
    it->img = img;
    it->nid = nid;
    it->size = ino.st.size;
    it->i_u = ino.i_u;
    it->layout = ino.st.layout;
    it->tail_off = ino.off + ino.isize + ino.xattr_size;
    return 0;
}

int rafs_dir_next(rafs_dir_iter *it, struct rafs_dirent *out, cf_err *err)
{
    for (;;) {
        if (it->nentries == 0) {
            if (it->blk * RAFS_BLOCK_SIZE >= it->size) return 0;
            int rc = load_block(it, it->blk, err);
            if (rc) return rc;
        }
        if (it->entry < it->nentries) {
            int rc = block_entry(it, it->entry, out, err);
            if (rc) return rc;
            it->entry++;
            return 1;
        }
        it->blk++;
        it->nentries = 0;
    }
}

static int name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return al < bl ? -1 : al > bl;
}

int rafs_lookup_child(const rafs_image *img, uint64_t dir_nid, const char *name, size_t len,
                      uint64_t *nid, cf_err *err)
{
    rafs_dir_iter it;
    struct rafs_dirent de;
    int rc = rafs_dir_open(img, dir_nid, &it, err);
    if (rc) return rc;
    if (len == 0 || len > EROFS_NAME_LEN)
        return cf_err_set(err, -ENOENT, "no entry of length %zu", len);
    uint64_t nblocks = it.size / RAFS_BLOCK_SIZE + (it.size % RAFS_BLOCK_SIZE != 0);
    /* last block whose first name <= name */
    uint64_t lo = 0, hi = nblocks;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if ((rc = load_block(&it, mid, err)) || (rc = block_entry(&it, 0, &de, err))) return rc;
        if (name_cmp(de.name, de.name_len, name, len) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) return cf_err_set(err, -ENOENT, "'%.*s' not found", (int)len, name);
    if ((rc = load_block(&it, lo - 1, err))) return rc;
    uint32_t l = 0, h = it.nentries;
    while (l < h) {
        uint32_t mid = l + (h - l) / 2;
        if ((rc = block_entry(&it, mid, &de, err))) return rc;
        int c = name_cmp(de.name, de.name_len, name, len);
        if (c == 0) {
            *nid = de.nid;
            return 0;
        }
        if (c < 0)
            l = mid + 1;
        else
            h = mid;
    }
    return cf_err_set(err, -ENOENT, "'%.*s' not found in directory nid %llu", (int)len, name,
                      (unsigned long long)dir_nid);
}

int rafs_lookup(const rafs_image *img, const char *path, uint64_t *nid, cf_err *err)
{
    uint64_t cur = img->sb.root_nid;
    const char *p = path;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        int rc = rafs_lookup_child(img, cur, p, l, &cur, err);
        if (rc)
            return rc == -ENOENT ? cf_err_set(err, -ENOENT, "%s: no such file or directory", path)
                                 : rc;
        p += l;
    }
    *nid = cur;
    return 0;
}

/* ---- whole-tree walk ------------------------------------------------------------------- */

struct nid_set {
    uint64_t *slots; /* 0 = empty; nids stored +1 */
    size_t cap, count;
};

static int nid_set_add(struct nid_set *s, uint64_t nid, int *was_present)
{
    if ((s->count + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        uint64_t *n = calloc(ncap, sizeof(*n));
        if (!n) return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slots[i]) continue;
            size_t h = (size_t)(s->slots[i] * 0x9E3779B97F4A7C15ull) & (ncap - 1);
            while (n[h]) h = (h + 1) & (ncap - 1);
            n[h] = s->slots[i];
        }
        free(s->slots);
        s->slots = n;
        s->cap = ncap;
    }
    uint64_t key = nid + 1;
    size_t h = (size_t)(key * 0x9E3779B97F4A7C15ull) & (s->cap - 1);
    while (s->slots[h]) {
        if (s->slots[h] == key) {
            *was_present = 1;
            return 0;
        }
        h = (h + 1) & (s->cap - 1);
    }
    s->slots[h] = key;
    s->count++;
    *was_present = 0;
    return 0;
}

struct walk_frame {
    rafs_dir_iter it;
    uint64_t parent;
    size_t path_len;
    char prev[EROFS_NAME_LEN + 1];
    uint16_t prev_len;
    int has_prev, seen_dot, seen_dotdot;
};

int rafs_walk(const rafs_image *img, rafs_walk_fn fn, void *ctx, cf_err *err)
{
    struct nid_set dirs = {0};
    struct walk_frame *stack = NULL;
    char *path = malloc(RAFS_PATH_MAX + 1);
    size_t depth = 0;
    int rc, present;
    struct rafs_stat st;
    struct rafs_walk_entry we;

    size_t stack_cap = 16; /* grows with the depth actually reached */
    stack = calloc(stack_cap, sizeof(*stack));
    if (!path || !stack) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    uint64_t root = img->sb.root_nid;
    path[0] = 0;
    if ((rc = rafs_stat(img, root, &st, err))) goto out;
    if ((rc = nid_set_add(&dirs, root, &present))) goto out;
    we = (struct rafs_walk_entry){.path = path,
                                  .name = path,
                                  .nid = root,
                                  .parent_nid = root,
                                  .file_type = EROFS_FT_DIR,
                                  .st = &st,
                                  .depth = 0};
    if ((rc = fn(&we, ctx))) goto out;
    if ((rc = rafs_dir_open(img, root, &stack[0].it, err))) goto out;
    stack[0].parent = root;
    stack[0].path_len = 0;
    depth = 1;

    while (depth) {
        struct walk_frame *f = &stack[depth - 1];
        struct rafs_dirent de;
        rc = rafs_dir_next(&f->it, &de, err);
        if (rc < 0) goto out;
        if (rc == 0) {
            if (!f->seen_dot || !f->seen_dotdot) {
                rc = cf_err_set(err, -EBADMSG, "directory nid %llu (/%.*s): missing '.' or '..'",
                                (unsigned long long)f->it.nid, (int)f->path_len, path);
                goto out;
            }
            depth--;
            continue;
        }
        if (f->has_prev && name_cmp(f->prev, f->prev_len, de.name, de.name_len) >= 0) {
            rc = cf_err_set(err, -EBADMSG,
                            "directory nid %llu (/%.*s): entries not sorted/unique at '%s'",
                            (unsigned long long)f->it.nid, (int)f->path_len, path, de.name);
            goto out;
        }
        memcpy(f->prev, de.name, de.name_len + 1u);
        f->prev_len = de.name_len;
        f->has_prev = 1;
        if (!strcmp(de.name, ".") || !strcmp(de.name, "..")) {
            int dot = de.name[1] == 0;
            uint64_t want = dot ? f->it.nid : f->parent;
            if (de.file_type != EROFS_FT_DIR) {
                rc = cf_err_set(err, -EBADMSG, "directory nid %llu (/%.*s): '%s' has file type %u",
                                (unsigned long long)f->it.nid, (int)f->path_len, path, de.name,
                                de.file_type);
                goto out;
            }
            if (de.nid != want) {
                rc =
                    cf_err_set(err, -EBADMSG,
                               "directory nid %llu (/%.*s): '%s' points at nid %llu, expected %llu",
                               (unsigned long long)f->it.nid, (int)f->path_len, path, de.name,
                               (unsigned long long)de.nid, (unsigned long long)want);
                goto out;
            }
            if (dot)
                f->seen_dot = 1;
            else
                f->seen_dotdot = 1;
            continue;
        }
        size_t plen = f->path_len + (f->path_len ? 1 : 0) + de.name_len;
        if (plen > RAFS_PATH_MAX) {
            rc = cf_err_set(err, -ENAMETOOLONG, "path under /%.*s longer than %d bytes",
                            (int)f->path_len, path, RAFS_PATH_MAX);
            goto out;
        }
        size_t pos = f->path_len;
        if (pos) path[pos++] = '/';
        memcpy(path + pos, de.name, de.name_len);
        path[plen] = 0;
        if ((rc = rafs_stat(img, de.nid, &st, err))) {
            rc = cf_err_wrap(err, rc, "/%s", path);
            goto out;
        }
        if (rafs_mode_to_ftype(st.mode) != de.file_type) {
            rc = cf_err_set(err, -EBADMSG, "/%s: dirent file type %u does not match inode mode 0%o",
                            path, de.file_type, st.mode);
            goto out;
        }
        int isdir = de.file_type == EROFS_FT_DIR;
        if (isdir) {
            if ((rc = nid_set_add(&dirs, de.nid, &present))) goto out;
            if (present) {
                rc = cf_err_set(err, -ELOOP,
                                "/%s: directory nid %llu reached twice (directory loop or "
                                "directory hard link)",
                                path, (unsigned long long)de.nid);
                goto out;
            }
        }
        we = (struct rafs_walk_entry){.path = path,
                                      .name = path + pos,
                                      .nid = de.nid,
                                      .parent_nid = f->it.nid,
                                      .file_type = de.file_type,
                                      .st = &st,
                                      .depth = (uint32_t)depth};
        if ((rc = fn(&we, ctx))) goto out;
        if (isdir) {
            if (depth > RAFS_MAX_DEPTH - 1) {
                rc = cf_err_set(err, -ELOOP, "/%s: directories nested deeper than %d", path,
                                RAFS_MAX_DEPTH);
                goto out;
            }
            if (depth == stack_cap) {
                struct walk_frame *ns = realloc(stack, stack_cap * 2 * sizeof(*stack));
                if (!ns) {
                    rc = cf_err_set(err, -ENOMEM, "out of memory");
                    goto out;
                }
                stack = ns;
                stack_cap *= 2;
                f = &stack[depth - 1];
            }
            struct walk_frame *nf = &stack[depth];
            memset(nf, 0, sizeof(*nf));
            if ((rc = rafs_dir_open(img, de.nid, &nf->it, err))) goto out;
            nf->parent = f->it.nid;
            nf->path_len = plen;
            depth++;
        }
    }
    rc = 0;
out:
    free(dirs.slots);
    free(stack);
    free(path);
    return rc;
}
