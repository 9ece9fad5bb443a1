/* chunkfly-image inspect: print RAFS v6 metadata as JSON (request mode -R "stats" | "ls" |
 * "blobs" | "prefetch" | "stat PATH", or one request per stdin line), and --manifest: the canonical
 * tree listing of tests/lib/tree_manifest.py, so tests can diff our view with the kernel's. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cf/buf.h"
#include "cf/digest.h"
#include "cf/hex.h"
#include "cf/log.h"
#include "image_cli.h"
#include "image_cmds.h"
#include "rafs/blob.h"
#include "rafs/compressor.h"
#include "rafs/reader.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: chunkfly-image inspect [OPTIONS] BOOTSTRAP\n\n"
            "Print RAFS v6 metadata as JSON.\n\n"
            "Options:\n"
            "  -B, --bootstrap FILE    bootstrap (alternative to the argument)\n"
            "  -R, --request REQ       one request: stats | ls | blobs | prefetch | stat PATH\n"
            "                          (without -R: one request per line on stdin)\n"
            "  --manifest              print the tree as tests/lib/tree_manifest.py does\n"
            "  --no-content            with --manifest: no content digests (default without -D)\n"
            "  -D, --blob-dir DIR      with --manifest: read file content from the blobs in DIR\n"
            "  -l, --log-level LEVEL   trace|debug|info|warn|error\n"
            "  -h, --help              this help\n");
}

/* ---- request mode ----------------------------------------------------------------------- */

struct stats_ctx {
    uint64_t files, dirs, symlinks, devices, fifos, sockets, bytes, chunks, hardlinks;
    const rafs_image *img;
};

static int stats_cb(const struct rafs_walk_entry *e, void *arg)
{
    struct stats_ctx *s = arg;
    switch (e->st->mode & S_IFMT) {
    case S_IFREG: {
        uint64_t n = 0;
        s->files++;
        s->bytes += e->st->size;
        if (rafs_file_chunk_count(s->img, e->nid, &n, NULL) == 0) s->chunks += n;
        if (e->st->nlink > 1) s->hardlinks++;
        break;
    }
    case S_IFDIR:
        s->dirs++;
        break;
    case S_IFLNK:
        s->symlinks++;
        break;
    case S_IFCHR:
    case S_IFBLK:
        s->devices++;
        break;
    case S_IFIFO:
        s->fifos++;
        break;
    default:
        s->sockets++;
    }
    return 0;
}

struct path_ctx {
    uint64_t nid;
    char *path;
};

static int path_cb(const struct rafs_walk_entry *e, void *arg)
{
    struct path_ctx *p = arg;
    if (e->nid != p->nid) return 0;
    p->path = malloc(strlen(e->path) + 2);
    if (!p->path) return -ENOMEM;
    sprintf(p->path, "/%s", e->path);
    return 1; /* stop */
}

static json_t *req_stats(const rafs_image *img, cf_err *err)
{
    const struct rafs_super_info *sb = rafs_image_super(img);
    struct stats_ctx s = {.img = img};
    int rc = rafs_walk(img, stats_cb, &s, err);
    if (rc) return NULL;
    char flags[32];
    snprintf(flags, sizeof(flags), "0x%llx", (unsigned long long)sb->flags);
    return json_pack("{s:s,s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                     "version", "6", "inodes_count", (json_int_t)sb->inos, "flags", flags,
                     "compressor", rafs_compressor_name(sb->compressor), "digester",
                     sb->digester == RAFS_DIGEST_SHA256 ? "sha256" : "blake3", "chunk_size",
                     (json_int_t)sb->chunk_size, "blobs", (json_int_t)sb->blob_count, "files",
                     (json_int_t)s.files, "dirs", (json_int_t)s.dirs, "symlinks",
                     (json_int_t)s.symlinks, "devices", (json_int_t)s.devices, "fifos",
                     (json_int_t)s.fifos, "sockets", (json_int_t)s.sockets, "total_file_size",
                     (json_int_t)s.bytes, "file_chunks", (json_int_t)s.chunks, "prefetch_entries",
                     (json_int_t)sb->prefetch_count, "bootstrap_size",
                     (json_int_t)sb->bootstrap_size);
}

static json_t *req_ls(const rafs_image *img, cf_err *err)
{
    rafs_dir_iter it;
    struct rafs_dirent de;
    json_t *a = json_array();
    int rc = rafs_dir_open(img, rafs_image_super(img)->root_nid, &it, err);
    while (!rc && (rc = rafs_dir_next(&it, &de, err)) == 1) {
        struct rafs_stat st;
        rc = 0;
        if (!strcmp(de.name, ".") || !strcmp(de.name, "..")) continue;
        if ((rc = rafs_stat(img, de.nid, &st, err))) break;
        json_array_append_new(a, json_pack("{s:s,s:I,s:I,s:I}", "name", de.name, "inode",
                                           (json_int_t)de.nid, "mode", (json_int_t)st.mode, "size",
                                           (json_int_t)st.size));
    }
    if (rc < 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

static json_t *req_blobs(const rafs_image *img)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < rafs_image_blob_count(img); i++) {
        const struct rafs_blob_info *b = rafs_image_blob(img, i);
        char feat[512], fhex[16], toc[65];
        rafs_blob_features_str(b->features, feat, sizeof(feat));
        snprintf(fhex, sizeof(fhex), "0x%08x", b->features);
        cf_hex_encode(b->toc_digest, 32, toc);
        json_array_append_new(
            a,
            json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s}",
                      "blob_id", b->id, "blob_index", (json_int_t)i, "compressed_size",
                      (json_int_t)b->compressed_size, "uncompressed_size",
                      (json_int_t)b->uncompressed_size, "chunk_size", (json_int_t)b->chunk_size,
                      "chunk_count", (json_int_t)b->chunk_count, "compressor",
                      rafs_compressor_name(b->compressor), "digester",
                      b->digester == RAFS_DIGEST_SHA256 ? "sha256" : "blake3", "features", fhex,
                      "features_str", feat, "ci_compressor", rafs_compressor_name(b->ci_compressor),
                      "ci_offset", (json_int_t)b->ci_offset, "ci_compressed_size",
                      (json_int_t)b->ci_compressed_size, "ci_uncompressed_size",
                      (json_int_t)b->ci_uncompressed_size, "blob_toc_size", (json_int_t)b->toc_size,
                      "blob_toc_digest", b->has_toc_digest ? toc : ""));
    }
    return a;
}

static json_t *req_prefetch(const rafs_image *img, cf_err *err)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < rafs_image_prefetch_count(img); i++) {
        struct path_ctx p = {.nid = rafs_image_prefetch_nid(img, i)};
        int rc = p.nid == rafs_image_super(img)->root_nid ? 0 : rafs_walk(img, path_cb, &p, err);
        if (rc < 0) {
            json_decref(a);
            return NULL;
        }
        json_array_append_new(
            a, json_pack("{s:I,s:s}", "inode", (json_int_t)p.nid, "path",
                         p.nid == rafs_image_super(img)->root_nid ? "/" : (p.path ? p.path : "")));
        free(p.path);
    }
    return a;
}

/* "stat PATH": one inode and its chunks, resolved with the same lookup a mount uses */
static json_t *req_stat(const rafs_image *img, const char *path, cf_err *err)
{
    uint64_t nid;
    struct rafs_stat st;
    if (rafs_lookup(img, path, &nid, err) || rafs_stat(img, nid, &st, err)) return NULL;
    json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "path", path, "inode",
                          (json_int_t)nid, "mode", (json_int_t)st.mode, "size", (json_int_t)st.size,
                          "uid", (json_int_t)st.uid, "gid", (json_int_t)st.gid, "nlink",
                          (json_int_t)st.nlink, "mtime", (json_int_t)st.mtime, "rdev",
                          (json_int_t)st.rdev, "i_ino", (json_int_t)st.i_ino);
    if ((st.mode & S_IFMT) == S_IFREG) {
        struct rafs_chunk_ref *refs;
        size_t n;
        if (rafs_file_map(img, nid, 0, UINT64_MAX, &refs, &n, err)) {
            json_decref(o);
            return NULL;
        }
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++) {
            char d[65];
            cf_hex_encode(refs[i].digest, 32, d);
            json_array_append_new(
                a, json_pack("{s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:s}", "blob_index",
                             (json_int_t)refs[i].blob_index, "blob_id", refs[i].blob_id, "ci_index",
                             (json_int_t)refs[i].ci_index, "file_offset",
                             (json_int_t)refs[i].file_offset, "compressed_offset",
                             (json_int_t)refs[i].compressed_offset, "compressed_size",
                             (json_int_t)refs[i].compressed_size, "uncompressed_offset",
                             (json_int_t)refs[i].uncompressed_offset, "uncompressed_size",
                             (json_int_t)refs[i].uncompressed_size, "compressed",
                             refs[i].compressed, "digest", refs[i].has_digest ? d : ""));
        }
        free(refs);
        json_object_set_new(o, "chunks", a);
    }
    return o;
}

static int run_request(const rafs_image *img, const char *req)
{
    cf_err err = {0};
    json_t *o = NULL;
    if (!strcmp(req, "stats"))
        o = req_stats(img, &err);
    else if (!strcmp(req, "ls"))
        o = req_ls(img, &err);
    else if (!strcmp(req, "blobs"))
        o = req_blobs(img);
    else if (!strcmp(req, "prefetch"))
        o = req_prefetch(img, &err);
    else if (!strncmp(req, "stat ", 5))
        o = req_stat(img, req + 5, &err);
    else {
        fprintf(stderr,
                "chunkfly-image inspect: unsupported request '%s' (stats, ls, blobs, "
                "prefetch, stat PATH)\n",
                req);
        return 1;
    }
    if (!o) {
        fprintf(stderr, "chunkfly-image inspect: %s: %s\n", req, cf_err_str(&err, -EBADMSG));
        return 1;
    }
    char *s = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    if (!s) return 1;
    printf("%s\n", s);
    free(s);
    return 0;
}

/* ---- manifest --------------------------------------------------------------------------- */

struct mf_entry {
    char *path; /* "." for the root */
    uint64_t nid;
    struct rafs_stat st;
    char *extra;  /* content digest / link target / major:minor / "-" */
    char *xattrs; /* "name=hex;..." or "-" */
    const char *link;
};

struct mf_ctx {
    const rafs_image *img;
    const rafs_blob_set *blobs;
    int content;
    struct mf_entry *v;
    size_t n, cap;
    uint8_t *buf;
    cf_err *err;
};

struct xa {
    char *name;
    char *hex;
};

static int xa_cmp(const void *a, const void *b)
{
    return strcmp(((const struct xa *)a)->name, ((const struct xa *)b)->name);
}

struct xa_list {
    struct xa *v;
    size_t n, cap;
};

static int xa_collect(const char *name, const void *value, size_t len, void *arg)
{
    struct xa_list *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        struct xa *p = realloc(l->v, nc * sizeof(*p));
        if (!p) return -ENOMEM;
        l->v = p;
        l->cap = nc;
    }
    char *hex = malloc(len * 2 + 1);
    char *nm = strdup(name);
    if (!hex || !nm) {
        free(hex);
        free(nm);
        return -ENOMEM;
    }
    cf_hex_encode(value, len, hex);
    l->v[l->n++] = (struct xa){nm, hex}; /* the list owns nm and hex now */
    // cppcheck-suppress memleak
    return 0;
}

static char *xattr_string(const rafs_image *img, uint64_t nid, cf_err *err, int *rc)
{
    struct xa_list l = {0};
    cf_buf b = {0};
    *rc = rafs_xattr_foreach(img, nid, xa_collect, &l, err);
    if (!*rc && l.n) {
        qsort(l.v, l.n, sizeof(*l.v), xa_cmp);
        for (size_t i = 0; i < l.n && !*rc; i++)
            *rc = cf_buf_printf(&b, "%s%s=%s", i ? ";" : "", l.v[i].name, l.v[i].hex);
    } else if (!*rc) {
        *rc = cf_buf_printf(&b, "-");
    }
    for (size_t i = 0; i < l.n; i++) {
        free(l.v[i].name);
        free(l.v[i].hex);
    }
    free(l.v);
    if (*rc) {
        cf_buf_free(&b);
        return NULL;
    }
    if (cf_buf_append(&b, "", 1)) {
        cf_buf_free(&b);
        *rc = -ENOMEM;
        return NULL;
    }
    return (char *)cf_buf_steal(&b, NULL);
}

static int content_sha256(struct mf_ctx *c, uint64_t nid, uint64_t size, char out[65])
{
    cf_digest_ctx d;
    uint32_t cs = rafs_image_super(c->img)->chunk_size;
    int rc = cf_digest_init(&d, CF_DIGEST_SHA256);
    if (rc) return rc;
    for (uint64_t off = 0; off < size;) {
        size_t got;
        rc = rafs_file_read(c->img, c->blobs, nid, off, c->buf, cs, &got, c->err);
        if (rc || got == 0) {
            cf_digest_abort(&d);
            return rc ? rc : cf_err_set(c->err, -EIO, "short read");
        }
        cf_digest_update(&d, c->buf, got);
        off += got;
    }
    uint8_t h[32];
    cf_digest_final(&d, h);
    cf_hex_encode(h, 32, out);
    return 0;
}

static int mf_cb(const struct rafs_walk_entry *e, void *arg)
{
    struct mf_ctx *c = arg;
    int rc = 0;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 256;
        struct mf_entry *p = realloc(c->v, nc * sizeof(*p));
        if (!p) return cf_err_set(c->err, -ENOMEM, "out of memory");
        c->v = p;
        c->cap = nc;
    }
    struct mf_entry *m = &c->v[c->n];
    memset(m, 0, sizeof(*m));
    m->path = strdup(e->depth ? e->path : ".");
    m->nid = e->nid;
    m->st = *e->st;
    if (!m->path) return cf_err_set(c->err, -ENOMEM, "out of memory");
    c->n++;
    char small[80];
    const char *extra = "-";
    char *target = NULL;
    switch (e->st->mode & S_IFMT) {
    case S_IFREG:
        if (c->content) {
            if ((rc = content_sha256(c, e->nid, e->st->size, small)))
                return cf_err_wrap(c->err, rc, "/%s", e->path);
            extra = small;
        }
        break;
    case S_IFLNK: {
        size_t len;
        target = malloc(RAFS_PATH_MAX);
        if (!target) return cf_err_set(c->err, -ENOMEM, "out of memory");
        rc = rafs_readlink(c->img, e->nid, target, RAFS_PATH_MAX, &len, c->err);
        if (rc) {
            free(target);
            return cf_err_wrap(c->err, rc, "/%s", e->path);
        }
        extra = target;
        break;
    }
    case S_IFCHR:
    case S_IFBLK:
        snprintf(small, sizeof(small), "%u:%u", rafs_rdev_major(e->st->rdev),
                 rafs_rdev_minor(e->st->rdev));
        extra = small;
        break;
    }
    m->extra = strdup(extra);
    free(target);
    if (!m->extra) return cf_err_set(c->err, -ENOMEM, "out of memory");
    m->xattrs = xattr_string(c->img, e->nid, c->err, &rc);
    if (rc) return cf_err_wrap(c->err, rc, "/%s", e->path);
    return 0;
}

static int by_nid_path(const void *a, const void *b)
{
    const struct mf_entry *x = *(struct mf_entry *const *)a, *y = *(struct mf_entry *const *)b;
    if (x->nid != y->nid) return x->nid < y->nid ? -1 : 1;
    return strcmp(x->path, y->path);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char type_char(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFDIR:
        return 'd';
    case S_IFREG:
        return 'f';
    case S_IFLNK:
        return 'l';
    case S_IFCHR:
        return 'c';
    case S_IFBLK:
        return 'b';
    case S_IFIFO:
        return 'p';
    }
    return 's';
}

static int print_manifest(const rafs_image *img, const char *blob_dir, int content)
{
    cf_err err = {0};
    rafs_blob_set *blobs = NULL;
    struct mf_ctx c = {.img = img, .content = content, .err = &err};
    int rc = 0;
    struct mf_entry **byn = NULL;
    char **lines = NULL;
    if (content) {
        rc = rafs_blob_set_open_dir(img, blob_dir, &blobs, &err);
        c.blobs = blobs;
        if (!rc && !(c.buf = malloc(rafs_image_super(img)->chunk_size)))
            rc = cf_err_set(&err, -ENOMEM, "out of memory");
    }
    if (!rc) rc = rafs_walk(img, mf_cb, &c, &err);
    if (!rc) {
        /* hard-link groups: regular files with nlink > 1 name the first path of their nid */
        byn = malloc((c.n ? c.n : 1) * sizeof(*byn));
        lines = calloc(c.n ? c.n : 1, sizeof(*lines));
        if (!byn || !lines) rc = cf_err_set(&err, -ENOMEM, "out of memory");
    }
    if (!rc) {
        for (size_t i = 0; i < c.n; i++) byn[i] = &c.v[i];
        qsort(byn, c.n, sizeof(*byn), by_nid_path);
        for (size_t i = 0; i < c.n;) {
            size_t j = i;
            while (j < c.n && byn[j]->nid == byn[i]->nid) j++;
            for (size_t k = i; k < j; k++)
                byn[k]->link = (type_char(byn[k]->st.mode) == 'f' && byn[k]->st.nlink > 1)
                                   ? byn[i]->path
                                   : "-";
            i = j;
        }
        for (size_t i = 0; i < c.n && !rc; i++) {
            const struct mf_entry *m = &c.v[i];
            char t = type_char(m->st.mode);
            if (asprintf(&lines[i], "%s\t%c\t%o\t%u\t%u\t%llu\t%lld\t%s\t%s\t%s", m->path, t,
                         m->st.mode & 07777, m->st.uid, m->st.gid,
                         t == 'f' ? (unsigned long long)m->st.size : 0ull,
                         (long long)(int64_t)m->st.mtime, m->extra, m->xattrs, m->link) < 0) {
                lines[i] = NULL;
                rc = cf_err_set(&err, -ENOMEM, "out of memory");
            }
        }
    }
    if (!rc) {
        qsort(lines, c.n, sizeof(*lines), str_cmp);
        for (size_t i = 0; i < c.n; i++) printf("%s\n", lines[i]);
    }
    for (size_t i = 0; i < c.n; i++) {
        free(c.v[i].path);
        free(c.v[i].extra);
        free(c.v[i].xattrs);
        if (lines) free(lines[i]);
    }
    free(lines);
    free(byn);
    free(c.v);
    free(c.buf);
    rafs_blob_set_close(blobs);
    if (rc) fprintf(stderr, "chunkfly-image inspect: %s\n", cf_err_str(&err, rc));
    return rc ? 1 : 0;
}

int cmd_inspect(int argc, char **argv)
{
    enum { OPT_MANIFEST = 256, OPT_NO_CONTENT };
    static const struct option opts[] = {{"bootstrap", required_argument, NULL, 'B'},
                                         {"request", required_argument, NULL, 'R'},
                                         {"blob-dir", required_argument, NULL, 'D'},
                                         {"manifest", no_argument, NULL, OPT_MANIFEST},
                                         {"no-content", no_argument, NULL, OPT_NO_CONTENT},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *bootstrap = NULL, *request = NULL, *blob_dir = NULL;
    int manifest = 0, no_content = 0, c;
    enum cf_log_level lvl = CF_LOG_WARN;
    optind = 1;
    while ((c = getopt_long(argc, argv, "B:R:D:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'B':
            bootstrap = optarg;
            break;
        case 'R':
            request = optarg;
            break;
        case 'D':
            blob_dir = optarg;
            break;
        case OPT_MANIFEST:
            manifest = 1;
            break;
        case OPT_NO_CONTENT:
            no_content = 1;
            break;
        case 'l':
            if (image_parse_log_level("inspect", optarg, &lvl)) return 1;
            break;
        default:
            return image_usage_exit(usage, c);
        }
    }
    cf_log_set_level(lvl);
    if (image_bootstrap_arg("inspect", usage, argc, argv, &bootstrap)) return 1;
    cf_err err = {0};
    rafs_image *img = NULL;
    int rc = rafs_image_open(bootstrap, &img, &err);
    if (rc) {
        fprintf(stderr, "chunkfly-image inspect: %s\n", cf_err_str(&err, rc));
        return 1;
    }
    if (manifest) {
        rc = print_manifest(img, blob_dir, blob_dir && !no_content);
    } else if (request) {
        rc = run_request(img, request);
    } else {
        char line[RAFS_PATH_MAX + 16];
        rc = 0;
        while (fgets(line, sizeof(line), stdin)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!line[0]) continue;
            if (!strcmp(line, "exit") || !strcmp(line, "q")) break;
            rc |= run_request(img, line);
        }
    }
    rafs_image_close(img);
    return rc;
}
