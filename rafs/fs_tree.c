/* The builder's in-memory filesystem tree: dirents (rafs_node) pointing at refcounted inodes,
 * so hard links are several dirents sharing one inode. A hash of (parent, name) makes path
 * lookups O(1), which matters for tar input where every entry is looked up by path. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rafs/builder.h"
#include "rafs/reader.h"

static uint64_t node_hash(const struct rafs_node *parent, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)parent;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h ^ (h >> 29);
}

struct rafs_inode *rafs_inode_new(void)
{
    struct rafs_inode *ino = calloc(1, sizeof(struct rafs_inode));
    if (ino) ino->refs = 1;
    return ino;
}

void rafs_inode_put(struct rafs_inode *ino)
{
    if (!ino || --ino->refs > 0) return;
    for (size_t i = 0; i < ino->nxattrs; i++) {
        free(ino->xattrs[i].name);
        free(ino->xattrs[i].value);
    }
    free(ino->xattrs);
    free(ino->symlink);
    free(ino->chunks);
    free(ino);
}

int rafs_inode_set_xattr(struct rafs_inode *ino, const char *name, const void *value, size_t len,
                         cf_err *err)
{
    static const char *const ok[] = {"user.", "trusted.", "security."};
    int allowed =
        !strcmp(name, "system.posix_acl_access") || !strcmp(name, "system.posix_acl_default");
    for (size_t i = 0; i < 3 && !allowed; i++)
        if (!strncmp(name, ok[i], strlen(ok[i])) && name[strlen(ok[i])]) allowed = 1;
    if (!allowed)
        return cf_err_set(err, -EINVAL,
                          "xattr '%s': unsupported name prefix (RAFS v6 stores only user., "
                          "trusted., security. and POSIX ACLs)",
                          name);
    if (strlen(name) > 255 + 9 || len > 65535)
        return cf_err_set(err, -EINVAL, "xattr '%s': name or value (%zu bytes) too long", name,
                          len);
    for (size_t i = 0; i < ino->nxattrs; i++) {
        if (!strcmp(ino->xattrs[i].name, name)) {
            uint8_t *v = malloc(len ? len : 1);
            if (!v) return -ENOMEM;
            if (len) memcpy(v, value, len);
            free(ino->xattrs[i].value);
            ino->xattrs[i].value = v;
            ino->xattrs[i].value_len = len;
            return 0;
        }
    }
    struct rafs_xattr *nx = realloc(ino->xattrs, (ino->nxattrs + 1) * sizeof(*nx));
    if (!nx) return -ENOMEM;
    ino->xattrs = nx;
    struct rafs_xattr *x = &nx[ino->nxattrs];
    x->name = strdup(name);
    x->value = malloc(len ? len : 1);
    if (!x->name || !x->value) {
        free(x->name);
        free(x->value);
        return -ENOMEM;
    }
    if (len) memcpy(x->value, value, len);
    x->value_len = len;
    ino->nxattrs++;
    return 0;
}

static int hash_grow(struct rafs_tree *t)
{
    size_t ncap = t->hash_cap ? t->hash_cap * 2 : 1024;
    struct rafs_node **nh = calloc(ncap, sizeof(*nh));
    if (!nh) return -ENOMEM;
    for (size_t i = 0; i < t->hash_cap; i++) {
        struct rafs_node *n = t->hash[i];
        while (n) {
            struct rafs_node *next = n->hnext;
            size_t b = node_hash(n->parent, n->name) & (ncap - 1);
            n->hnext = nh[b];
            nh[b] = n;
            n = next;
        }
    }
    free(t->hash);
    t->hash = nh;
    t->hash_cap = ncap;
    return 0;
}

static void hash_unlink(struct rafs_tree *t, struct rafs_node *n)
{
    size_t b = node_hash(n->parent, n->name) & (t->hash_cap - 1);
    for (struct rafs_node **pp = &t->hash[b]; *pp; pp = &(*pp)->hnext) {
        if (*pp == n) {
            *pp = n->hnext;
            t->hash_used--;
            return;
        }
    }
}

int rafs_tree_init(struct rafs_tree *t)
{
    memset(t, 0, sizeof(*t));
    t->root = calloc(1, sizeof(*t->root));
    struct rafs_inode *ino = rafs_inode_new();
    if (!t->root || !ino || !(t->root->name = strdup(""))) {
        free(t->root);
        free(ino);
        return -ENOMEM;
    }
    ino->mode = S_IFDIR | 0755;
    t->root->inode = ino;
    t->nodes = 1;
    return hash_grow(t);
}

struct rafs_node *rafs_tree_child(struct rafs_tree *t, struct rafs_node *dir, const char *name)
{
    size_t b = node_hash(dir, name) & (t->hash_cap - 1);
    for (struct rafs_node *n = t->hash[b]; n; n = n->hnext)
        if (n->parent == dir && !strcmp(n->name, name)) return n;
    return NULL;
}

static struct rafs_node *node_new(struct rafs_tree *t, struct rafs_node *dir, const char *name,
                                  size_t len, struct rafs_inode *ino)
{
    if (t->hash_used >= t->hash_cap && hash_grow(t)) return NULL;
    if (dir->nchildren == dir->cap) {
        size_t nc = dir->cap ? dir->cap * 2 : 4;
        struct rafs_node **v = realloc(dir->children, nc * sizeof(*v));
        if (!v) return NULL;
        dir->children = v;
        dir->cap = nc;
    }
    struct rafs_node *n = calloc(1, sizeof(*n));
    if (!n || !(n->name = strndup(name, len))) {
        free(n);
        return NULL;
    }
    n->parent = dir;
    n->inode = ino;
    ino->refs++;
    dir->children[dir->nchildren++] = n;
    size_t b = node_hash(dir, n->name) & (t->hash_cap - 1);
    n->hnext = t->hash[b];
    t->hash[b] = n;
    t->hash_used++;
    t->nodes++;
    return n;
}

static void node_free_rec(struct rafs_tree *t, struct rafs_node *n)
{
    for (size_t i = 0; i < n->nchildren; i++) {
        hash_unlink(t, n->children[i]);
        node_free_rec(t, n->children[i]);
    }
    free(n->children);
    rafs_inode_put(n->inode);
    free(n->name);
    t->nodes--;
    free(n);
}

void rafs_tree_remove(struct rafs_tree *t, struct rafs_node *n)
{
    struct rafs_node *p = n->parent;
    if (!p) return;
    for (size_t i = 0; i < p->nchildren; i++) {
        if (p->children[i] == n) {
            memmove(&p->children[i], &p->children[i + 1],
                    (p->nchildren - i - 1) * sizeof(*p->children));
            p->nchildren--;
            break;
        }
    }
    hash_unlink(t, n);
    node_free_rec(t, n);
}

void rafs_tree_clear_dir(struct rafs_tree *t, struct rafs_node *dir)
{
    while (dir->nchildren) rafs_tree_remove(t, dir->children[dir->nchildren - 1]);
}

void rafs_tree_free(struct rafs_tree *t)
{
    if (t->root) node_free_rec(t, t->root);
    free(t->hash);
    memset(t, 0, sizeof(*t));
}

/* Next path component of *p: skips '/', '.' components; returns length, 0 at the end. */
static size_t next_comp(const char **p, const char **comp)
{
    for (;;) {
        while (**p == '/') (*p)++;
        const char *s = *p;
        while (**p && **p != '/') (*p)++;
        size_t len = (size_t)(*p - s);
        if (len == 1 && s[0] == '.') continue;
        *comp = s;
        return len;
    }
}

struct rafs_node *rafs_tree_lookup(struct rafs_tree *t, const char *path)
{
    struct rafs_node *n = t->root;
    const char *p = path, *c;
    size_t len;
    char name[256];
    while ((len = next_comp(&p, &c)) > 0) {
        if (len > 255 || !S_ISDIR(n->inode->mode)) return NULL;
        memcpy(name, c, len);
        name[len] = 0;
        if (!(n = rafs_tree_child(t, n, name))) return NULL;
    }
    return n;
}

int rafs_tree_add(struct rafs_tree *t, const char *path, struct rafs_inode *ino,
                  struct rafs_node **out, cf_err *err)
{
    struct rafs_node *dir = t->root;
    const char *p = path, *c;
    size_t len = next_comp(&p, &c);
    char name[256];
    if (len == 0) { /* the root itself: take the attributes, keep children */
        if (!S_ISDIR(ino->mode))
            return cf_err_set(err, -EINVAL, "'%s': the root must be a directory", path);
        ino->refs++;
        rafs_inode_put(t->root->inode);
        t->root->inode = ino;
        if (out) *out = t->root;
        return 0;
    }
    unsigned depth = 0;
    for (;;) {
        if (len > 255) return cf_err_set(err, -ENAMETOOLONG, "'%s': name longer than 255", path);
        if (++depth > RAFS_TREE_MAX_DEPTH) /* bounds every recursion over the tree */
            return cf_err_set(err, -ELOOP, "'%.200s...': nested deeper than %u directories", path,
                              RAFS_TREE_MAX_DEPTH);
        if (len == 2 && c[0] == '.' && c[1] == '.')
            return cf_err_set(err, -EINVAL, "'%s': '..' in path", path);
        memcpy(name, c, len);
        name[len] = 0;
        const char *rest = p, *c2;
        size_t len2 = next_comp(&rest, &c2);
        struct rafs_node *n = rafs_tree_child(t, dir, name);
        if (len2 == 0) { /* last component */
            if (n) {
                if (S_ISDIR(n->inode->mode) && S_ISDIR(ino->mode)) {
                    ino->refs++;
                    rafs_inode_put(n->inode);
                    n->inode = ino;
                    if (out) *out = n;
                    return 0;
                }
                rafs_tree_remove(t, n);
            }
            if (!(n = node_new(t, dir, name, len, ino))) return -ENOMEM;
            if (out) *out = n;
            return 0;
        }
        if (!n) {
            struct rafs_inode *d = rafs_inode_new();
            if (!d) return -ENOMEM;
            d->mode = S_IFDIR | 0755;
            n = node_new(t, dir, name, len, d);
            rafs_inode_put(d);
            if (!n) return -ENOMEM;
        } else if (!S_ISDIR(n->inode->mode)) {
            return cf_err_set(err, -ENOTDIR, "'%s': parent '%s' is not a directory", path, name);
        }
        dir = n;
        p = rest;
        c = c2;
        len = len2;
    }
}

static int name_cmp(const void *a, const void *b)
{
    const struct rafs_node *x = *(struct rafs_node *const *)a, *y = *(struct rafs_node *const *)b;
    return strcmp(x->name, y->name); /* strcmp compares as unsigned char: bytewise */
}

static void sort_rec(struct rafs_node *n)
{
    if (n->nchildren > 1) qsort(n->children, n->nchildren, sizeof(*n->children), name_cmp);
    for (size_t i = 0; i < n->nchildren; i++) sort_rec(n->children[i]);
}

void rafs_tree_sort(struct rafs_tree *t)
{
    sort_rec(t->root);
}

/* ---- chunk table ---- */
static uint32_t digest_slot(const uint8_t d[32], uint32_t blob, uint32_t cap)
{
    uint64_t h;
    memcpy(&h, d, 8);
    h ^= (uint64_t)blob * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h & (cap - 1));
}

static int ct_rehash(struct rafs_chunk_table *t, uint32_t ncap)
{
    uint32_t *h = malloc((size_t)ncap * sizeof(*h));
    if (!h) return -ENOMEM;
    memset(h, 0xff, (size_t)ncap * sizeof(*h));
    for (uint32_t i = 0; i < t->n; i++) {
        uint32_t s = digest_slot(t->v[i].digest, t->v[i].blob_index, ncap);
        while (h[s] != UINT32_MAX) s = (s + 1) & (ncap - 1);
        h[s] = i;
    }
    free(t->hash);
    t->hash = h;
    t->hash_cap = ncap;
    return 0;
}

void rafs_chunk_from_ref(struct rafs_chunk *c, const struct rafs_chunk_ref *r, uint32_t blob_index)
{
    memset(c, 0, sizeof(*c));
    memcpy(c->digest, r->digest, 32);
    c->blob_index = blob_index;
    c->ci_index = r->ci_index;
    c->flags = r->flags & RAFS_CHUNK_COMPRESSED;
    c->compressed_size = r->compressed_size;
    c->uncompressed_size = r->uncompressed_size;
    c->compressed_offset = r->compressed_offset;
    c->uncompressed_offset = r->uncompressed_offset;
    c->file_offset = r->file_offset;
}

int rafs_chunk_table_add(struct rafs_chunk_table *t, const struct rafs_chunk *c, uint32_t *idx)
{
    if (t->n >= (1u << 30)) return -EFBIG;
    if (t->n == t->cap) {
        uint32_t nc = t->cap ? t->cap * 2 : 256;
        struct rafs_chunk *v = realloc(t->v, (size_t)nc * sizeof(*v));
        if (!v) return -ENOMEM;
        t->v = v;
        t->cap = nc;
    }
    if ((uint64_t)(t->n + 1) * 2 > t->hash_cap) {
        int rc = ct_rehash(t, t->hash_cap ? t->hash_cap * 2 : 1024);
        if (rc) return rc;
    }
    t->v[t->n] = *c;
    uint32_t s = digest_slot(c->digest, c->blob_index, t->hash_cap);
    while (t->hash[s] != UINT32_MAX) s = (s + 1) & (t->hash_cap - 1);
    t->hash[s] = t->n;
    if (idx) *idx = t->n;
    t->n++;
    return 0;
}

int64_t rafs_chunk_table_find(const struct rafs_chunk_table *t, const uint8_t digest[32],
                              uint32_t blob_index, uint32_t uncompressed_size)
{
    if (!t->hash_cap) return -1;
    uint32_t s = digest_slot(digest, blob_index, t->hash_cap);
    while (t->hash[s] != UINT32_MAX) {
        const struct rafs_chunk *c = &t->v[t->hash[s]];
        if (c->blob_index == blob_index && c->uncompressed_size == uncompressed_size &&
            !memcmp(c->digest, digest, 32))
            return t->hash[s];
        s = (s + 1) & (t->hash_cap - 1);
    }
    return -1;
}

void rafs_chunk_table_free(struct rafs_chunk_table *t)
{
    free(t->v);
    free(t->hash);
    memset(t, 0, sizeof(*t));
}
