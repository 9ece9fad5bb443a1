/* localfs backend: blobs are files, <dir>/<blob_id> (then each alt_dir in order), or one
 * explicit blob_file serving every blob id (as nydusd's localfs). Reads are pread(2) through
 * rafs's file source, wrapped to count bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_internal.h"

struct be_localfs {
    char *blob_file; /* NULL unless configured */
    char **dirs;     /* dir, then alt_dirs; NULL-terminated */
    size_t n_dirs;
};

struct counted_source {
    rafs_blob_source src; /* first: close() frees the whole struct */
    rafs_blob_source *file;
    mount_backend *b;
};

static ssize_t counted_pread(const rafs_blob_source *src, void *buf, size_t len, uint64_t off)
{
    const struct counted_source *s = src->ctx;
    be_count(&s->b->st.requests, 1);
    ssize_t n = rafs_blob_source_pread(s->file, buf, len, off);
    if (n < 0)
        be_count(&s->b->st.errors, 1);
    else
        be_count(&s->b->st.bytes_from_localfs, (uint64_t)n);
    return n;
}

static int counted_size(const rafs_blob_source *src, uint64_t *out)
{
    const struct counted_source *s = src->ctx;
    return rafs_blob_source_size(s->file, out);
}

static void counted_close(rafs_blob_source *src)
{
    struct counted_source *s = src->ctx;
    rafs_blob_source_close(s->file);
    free(s);
}

static const struct rafs_blob_source_ops counted_ops = {counted_pread, counted_size, counted_close};

void be_localfs_free(struct be_localfs *l)
{
    if (!l) return;
    free(l->blob_file);
    for (size_t i = 0; i < l->n_dirs; i++) free(l->dirs[i]);
    free(l->dirs);
    free(l);
}

int be_localfs_new(const struct mount_backend_config *cfg, struct be_localfs **out, cf_err *err)
{
    *out = NULL;
    if (!cfg->blob_file && !cfg->dir)
        return cf_err_set(err, -EINVAL,
                          "localfs backend: neither device.backend.config.dir nor "
                          "blob_file is set (where are the blobs?)");
    struct be_localfs *l = calloc(1, sizeof(*l));
    if (!l) return cf_err_set(err, -ENOMEM, "out of memory");
    size_t n = cfg->dir ? 1 : 0;
    for (size_t i = 0; cfg->alt_dirs && cfg->alt_dirs[i]; i++) n++;
    l->dirs = calloc(n + 1, sizeof(*l->dirs));
    if (!l->dirs || (cfg->blob_file && !(l->blob_file = strdup(cfg->blob_file)))) goto nomem;
    if (cfg->dir) {
        if (!(l->dirs[l->n_dirs] = strdup(cfg->dir))) goto nomem;
        l->n_dirs++;
    }
    for (size_t i = 0; cfg->alt_dirs && cfg->alt_dirs[i]; i++) {
        if (!(l->dirs[l->n_dirs] = strdup(cfg->alt_dirs[i]))) goto nomem;
        l->n_dirs++;
    }
    *out = l;
    return 0;
nomem:
    be_localfs_free(l);
    return cf_err_set(err, -ENOMEM, "out of memory");
}

/* Opens the first existing candidate; -ENOENT when none exists. */
static int open_file(const struct be_localfs *l, const char *blob_id, rafs_blob_source **file,
                     char *path, size_t path_cap, cf_err *err)
{
    if (l->blob_file) {
        snprintf(path, path_cap, "%s", l->blob_file);
        return rafs_blob_source_open_path(l->blob_file, file, err);
    }
    for (size_t i = 0; i < l->n_dirs; i++) {
        const char *d = l->dirs[i];
        size_t dl = strlen(d);
        int w = snprintf(path, path_cap, "%s%s%s", d, dl && d[dl - 1] == '/' ? "" : "/", blob_id);
        if (w < 0 || (size_t)w >= path_cap)
            return cf_err_set(err, -ENAMETOOLONG, "localfs backend: %s: path too long", d);
        int rc = rafs_blob_source_open_path(path, file, err);
        if (rc != -ENOENT) return rc;
    }
    if (l->n_dirs == 1)
        return cf_err_set(err, -ENOENT, "localfs backend: blob %s not found in %s", blob_id,
                          l->dirs[0]);
    return cf_err_set(err, -ENOENT,
                      "localfs backend: blob %s not found in %s nor in its %zu "
                      "alt_dirs",
                      blob_id, l->dirs[0], l->n_dirs - 1);
}

int be_localfs_open(mount_backend *b, const char *blob_id, uint64_t size, rafs_blob_source **out,
                    cf_err *err)
{
    *out = NULL;
    int rc = be_check_blob_id(blob_id, "localfs", err);
    if (rc) return rc;
    char path[4096];
    rafs_blob_source *file = NULL;
    rc = open_file(b->localfs, blob_id, &file, path, sizeof(path), err);
    if (rc) return rc;
    uint64_t have = 0;
    rc = rafs_blob_source_size(file, &have);
    if (rc == 0 && size && have < size)
        rc = cf_err_set(err, -EIO,
                        "localfs backend: %s is %llu bytes but blob %s has %llu "
                        "(truncated copy?)",
                        path, (unsigned long long)have, blob_id, (unsigned long long)size);
    else if (rc)
        rc = cf_err_set(err, rc, "localfs backend: %s: %s", path, strerror(-rc));
    struct counted_source *s = rc ? NULL : calloc(1, sizeof(*s));
    if (!rc && !s) rc = cf_err_set(err, -ENOMEM, "out of memory");
    if (rc) {
        rafs_blob_source_close(file);
        return rc;
    }
    s->src.ops = &counted_ops;
    s->src.ctx = s;
    s->file = file;
    s->b = b;
    *out = &s->src;
    return 0;
}
