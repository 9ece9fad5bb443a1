/* chunkfly-image check: validate a RAFS v6 bootstrap (every inode, directory, xattr, symlink
 * and chunk index reachable from the root) and, with -D, every chunk of every data blob
 * (ci array, TOC, blob.digest, decompression and digest), like `nydus-image check`. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cf/file_io.h"
#include "cf/hex.h"
#include "cf/log.h"
#include "image_cli.h"
#include "image_cmds.h"
#include "rafs/blob.h"
#include "rafs/compressor.h"
#include "rafs/reader.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: chunkfly-image check [OPTIONS] BOOTSTRAP\n"
               "       chunkfly-image check -B BOOTSTRAP [OPTIONS]   (deprecated form)\n\n"
               "Validate RAFS v6 filesystem metadata; with --blob-dir also read and verify every\n"
               "chunk of every data blob.\n\n"
               "Options:\n"
               "  -B, --bootstrap FILE    bootstrap to check (deprecated, give it as argument)\n"
               "  -D, --blob-dir DIR      directory holding the data blobs, named by blob id\n"
               "  -J, --output-json FILE  write a JSON summary to FILE\n"
               "  -v, --verbose           list every file checked (stderr)\n"
               "  -l, --log-level LEVEL   trace|debug|info|warn|error (default warn)\n"
               "  -h, --help              this help\n");
}

struct check_ctx {
    const rafs_image *img;
    int verbose;
    uint64_t files, dirs, symlinks, others, chunks_refd, bytes;
    uint64_t warnings;
    /* hard links: references per nid for nlink check */
    uint64_t *ref_nids;
    size_t nrefs, cap;
    cf_err *err;
};

static int nid_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int xattr_noop(const char *n, const void *v, size_t l, void *c)
{
    (void)n, (void)v, (void)l, (void)c;
    return 0;
}

static int check_entry(const struct rafs_walk_entry *e, void *arg)
{
    struct check_ctx *c = arg;
    const struct rafs_stat *st = e->st;
    int rc = rafs_xattr_foreach(c->img, e->nid, xattr_noop, NULL, c->err);
    if (rc) return cf_err_wrap(c->err, rc, "/%s: xattrs", e->path);
    switch (st->mode & S_IFMT) {
    case S_IFDIR:
        c->dirs++;
        break;
    case S_IFLNK: {
        char buf[RAFS_PATH_MAX];
        size_t len;
        c->symlinks++;
        rc = rafs_readlink(c->img, e->nid, buf, sizeof(buf), &len, c->err);
        if (rc) return cf_err_wrap(c->err, rc, "/%s", e->path);
        break;
    }
    case S_IFREG: {
        uint64_t n;
        c->files++;
        c->bytes += st->size;
        rc = rafs_file_chunk_count(c->img, e->nid, &n, c->err);
        for (uint64_t i = 0; !rc && i < n; i++) {
            struct rafs_chunk_ref ref;
            rc = rafs_file_chunk(c->img, e->nid, i, &ref, c->err);
        }
        if (rc) return cf_err_wrap(c->err, rc, "/%s", e->path);
        c->chunks_refd += n;
        if (c->nrefs == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 256;
            uint64_t *p = realloc(c->ref_nids, ncap * sizeof(*p));
            if (!p) return cf_err_set(c->err, -ENOMEM, "out of memory");
            c->ref_nids = p;
            c->cap = ncap;
        }
        c->ref_nids[c->nrefs++] = e->nid;
        break;
    }
    default:
        c->others++;
    }
    if (c->verbose)
        fprintf(stderr, "  /%s nid %llu mode 0%o size %llu\n", e->path, (unsigned long long)e->nid,
                st->mode, (unsigned long long)st->size);
    return 0;
}

/* Hard-link counts: nydus-image writes nlink = number of dirents for regular files. A
 * mismatch is reported as a warning (the kernel does not care). */
static void check_nlinks(struct check_ctx *c)
{
    if (c->nrefs == 0) return; /* qsort(NULL, 0) is undefined */
    qsort(c->ref_nids, c->nrefs, sizeof(uint64_t), nid_cmp);
    for (size_t i = 0; i < c->nrefs;) {
        size_t j = i;
        while (j < c->nrefs && c->ref_nids[j] == c->ref_nids[i]) j++;
        struct rafs_stat st;
        if (rafs_stat(c->img, c->ref_nids[i], &st, NULL) == 0 && st.nlink != j - i) {
            cf_warn("inode nid %llu: nlink %u but %zu directory entries",
                    (unsigned long long)c->ref_nids[i], st.nlink, j - i);
            c->warnings++;
        }
        i = j;
    }
}

/* Reads and verifies every chunk of one blob file. */
static int check_blob(const rafs_image *img, uint32_t idx, const char *dir, int verbose,
                      cf_err *err)
{
    const struct rafs_blob_info *bi = rafs_image_blob(img, idx);
    char path[4096];
    struct rafs_blob_meta *m = NULL;
    uint8_t *buf = NULL;
    rafs_blob_source *src;
    uint64_t size;
    snprintf(path, sizeof(path), "%s/%s", dir, bi->id);
    int rc = rafs_blob_source_open_path(path, &src, NULL);
    if (rc)
        return cf_err_set(err, rc, "data blob %s: %s", path,
                          rc == -EINVAL ? "not a regular file" : cf_err_str(NULL, rc));
    if ((rc = rafs_blob_source_size(src, &size))) {
        rc = cf_err_set(err, rc, "data blob %s: %s", path, cf_err_str(NULL, rc));
        goto out;
    }
    struct rafs_blob_toc toc;
    int have_toc = 0;
    if (bi->features & RAFS_BLOB_HAS_TOC) {
        if ((rc = rafs_blob_toc_read(src, &toc, err)) ||
            (rc = rafs_blob_toc_verify(&toc, bi, err))) {
            rc = cf_err_wrap(err, rc, "data blob %s", bi->id);
            goto out;
        }
        have_toc = 1;
    }
    if (bi->compressed_size && size != bi->compressed_size) {
        /* An inline-meta layer blob (nydus-image --blob-inline-meta) records its size before
         * the embedded bootstrap, and merge keeps that value: accept exactly that case. */
        const struct rafs_toc_item *boot =
            have_toc ? rafs_blob_toc_find(&toc, RAFS_TOC_NAME_BOOT) : NULL;
        if (!boot || boot->compressed_offset != bi->compressed_size ||
            size <= bi->compressed_size) {
            rc =
                cf_err_set(err, -EBADMSG, "data blob %s: file is %llu bytes, blob table says %llu",
                           path, (unsigned long long)size, (unsigned long long)bi->compressed_size);
            goto out;
        }
    }
    if (have_toc) {
        /* every tail member named in the TOC must read back with its SHA-256 */
        for (uint32_t t = 0; t < toc.count; t++) {
            const struct rafs_toc_item *it = &toc.items[t];
            uint8_t *content = NULL;
            size_t clen = 0;
            if (!strcmp(it->name, RAFS_TOC_NAME_BLOB)) continue; /* checked by the tar walk */
            rc = rafs_blob_toc_read_item(src, it, RAFS_BOOTSTRAP_MAX_SIZE, &content, &clen, err);
            free(content);
            if (rc) {
                rc = cf_err_wrap(err, rc, "data blob %s", bi->id);
                goto out;
            }
        }
    }
    if (bi->features & RAFS_BLOB_HAS_TAR_HEADER) {
        rc = rafs_blob_tar_verify(src, have_toc ? &toc : NULL, err);
        if (rc < 0) {
            rc = cf_err_wrap(err, rc, "data blob %s", bi->id);
            goto out;
        }
        rc = 0;
    }
    if (bi->ci_compressed_size || bi->ci_uncompressed_size) {
        if ((rc = rafs_blob_meta_load(src, bi, &m, err))) goto out;
        if (have_toc && rafs_blob_toc_find(&toc, RAFS_TOC_NAME_DIGEST) &&
            (rc = rafs_blob_meta_load_digests(src, &toc, m, err))) {
            rc = cf_err_wrap(err, rc, "data blob %s", bi->id);
            goto out;
        }
    } else if (bi->chunk_count) {
        /* no ci array (old builders): the chunks are still verified file by file below */
        cf_info("data blob %s has no ci array; verifying its chunks through the files", bi->id);
    }
    if (!(buf = malloc(RAFS_MAX_CHUNK_SIZE))) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; m && i < m->count; i++) {
        const struct rafs_ci *ci = &m->ci[i];
        struct rafs_chunk_ref ref = {0};
        ref.blob_index = idx;
        ref.blob_id = bi->id;
        ref.ci_index = i;
        ref.compressed_offset = ci->compressed_offset;
        ref.compressed_size = ci->compressed_size;
        ref.uncompressed_offset = ci->uncompressed_offset;
        ref.uncompressed_size = ci->uncompressed_size;
        ref.compressed = (ci->flags & RAFS_CI_V2_COMPRESSED) != 0;
        if (ci->flags & RAFS_CI_V2_ENCRYPTED) ref.flags |= RAFS_CHUNK_ENCRYPTED;
        if (ci->flags & RAFS_CI_V2_BATCH) ref.flags |= RAFS_CHUNK_BATCH;
        if (ci->flags & RAFS_CI_V2_ZRAN) {
            rc = cf_err_set(err, -ENOTSUP, "data blob %s: zran chunks cannot be verified", bi->id);
            goto out;
        }
        /* digests from blob.digest; without it decompression is still checked here and the
         * chunk-table digests are checked per file below */
        if (m->digests) {
            ref.has_digest = 1;
            memcpy(ref.digest, m->digests[i], 32);
        }
        rc = rafs_chunk_read(src, &ref, bi->compressor, bi->digester, buf, err);
        if (rc) {
            rc = cf_err_wrap(err, rc, "data blob %s", bi->id);
            goto out;
        }
    }
    if (verbose)
        fprintf(stderr, "  blob %s: %u chunks read and verified\n", bi->id, m ? m->count : 0);
out:
    free(buf);
    rafs_blob_meta_free(m);
    rafs_blob_source_close(src);
    return rc;
}

/* Every chunk referenced by a file must read back with its digest (covers images whose
 * blob.digest is absent, and cross-checks chunk table vs blob data). */
struct data_ctx {
    const rafs_image *img;
    const rafs_blob_set *blobs;
    uint8_t *buf;
    cf_err *err;
};

static int check_file_data(const struct rafs_walk_entry *e, void *arg)
{
    struct data_ctx *d = arg;
    if ((e->st->mode & S_IFMT) != S_IFREG) return 0;
    uint64_t n;
    int rc = rafs_file_chunk_count(d->img, e->nid, &n, d->err);
    for (uint64_t i = 0; !rc && i < n; i++) {
        struct rafs_chunk_ref ref;
        rc = rafs_file_chunk(d->img, e->nid, i, &ref, d->err);
        if (rc) break;
        const struct rafs_blob_info *bi = rafs_image_blob(d->img, ref.blob_index);
        rc = rafs_chunk_read(rafs_blob_set_get(d->blobs, ref.blob_index), &ref, bi->compressor,
                             bi->digester, d->buf, d->err);
    }
    if (rc) return cf_err_wrap(d->err, rc, "/%s", e->path);
    return 0;
}

static int report_v5(const char *path, const uint8_t *data, size_t len)
{
    struct rafs_v5_info v;
    cf_err err = {0};
    if (rafs_v5_probe(data, len, &v, &err)) {
        fprintf(stderr, "chunkfly-image check: %s: RAFS v5 magic but %s\n", path, err.msg);
        return 1;
    }
    enum rafs_compressor c = RAFS_COMP_NONE;
    rafs_compressor_from_flags(v.flags, &c);
    fprintf(stderr,
            "chunkfly-image check: %s is a RAFS v5 bootstrap (%llu inodes, chunk size 0x%x, "
            "compressor %s, %s, %u blob(s), first %s).\nOnly RAFS v6 (EROFS-compatible) "
            "bootstraps can be checked; RAFS v5 is recognised but its tree is not read. "
            "Rebuild the image with --fs-version 6.\n",
            path, (unsigned long long)v.inodes_count, v.chunk_size, rafs_compressor_name(c),
            (v.flags & RAFS_FLAG_HASH_SHA256) ? "sha256" : "blake3", v.blob_count,
            v.blob_count ? v.first_blob_id : "-");
    return 1;
}

static int write_json(const char *out, const char *bootstrap, const rafs_image *img)
{
    json_t *o = json_object(), *blobs = json_array();
    for (uint32_t i = 0; i < rafs_image_blob_count(img); i++)
        json_array_append_new(blobs, json_string(rafs_image_blob(img, i)->id));
    json_object_set_new(o, "version", json_string("chunkfly-image " CHUNKFLY_VERSION));
    json_object_set_new(o, "bootstrap", json_string(bootstrap));
    json_object_set_new(o, "blobs", blobs);
    json_object_set_new(o, "fs_version", json_string("6"));
    json_object_set_new(o, "compressor",
                        json_string(rafs_compressor_name(rafs_image_super(img)->compressor)));
    int rc = json_dump_file(o, out, JSON_COMPACT);
    json_decref(o);
    if (rc) fprintf(stderr, "chunkfly-image check: cannot write %s\n", out);
    return rc ? 1 : 0;
}

int cmd_check(int argc, char **argv)
{
    static const struct option opts[] = {{"bootstrap", required_argument, NULL, 'B'},
                                         {"blob-dir", required_argument, NULL, 'D'},
                                         {"output-json", required_argument, NULL, 'J'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *bootstrap = NULL, *blob_dir = NULL, *json_out = NULL;
    int verbose = 0, c;
    enum cf_log_level lvl = CF_LOG_WARN;
    optind = 1;
    while ((c = getopt_long(argc, argv, "B:D:J:vl:h", opts, NULL)) != -1) {
        switch (c) {
        case 'B':
            bootstrap = optarg;
            break;
        case 'D':
            blob_dir = optarg;
            break;
        case 'J':
            json_out = optarg;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'l':
            if (image_parse_log_level("check", optarg, &lvl)) return 1;
            break;
        default:
            return image_usage_exit(usage, c);
        }
    }
    cf_log_set_level(lvl);
    if (image_bootstrap_arg("check", usage, argc, argv, &bootstrap)) return 1;

    cf_err err = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = cf_read_file(bootstrap, RAFS_BOOTSTRAP_MAX_SIZE, &data, &len, &err);
    if (rc) {
        fprintf(stderr, "chunkfly-image check: %s: %s\n", bootstrap, cf_err_str(&err, rc));
        return 1;
    }
    if (rafs_detect_version(data, len, NULL) == 5) {
        rc = report_v5(bootstrap, data, len);
        free(data);
        return rc;
    }
    rafs_image *img = NULL;
    rc = rafs_image_open_buf(data, len, &img, &err);
    free(data);
    if (rc) {
        fprintf(stderr, "chunkfly-image check: %s: invalid RAFS v6 bootstrap: %s\n", bootstrap,
                cf_err_str(&err, rc));
        return 1;
    }
    struct check_ctx cc = {.img = img, .verbose = verbose, .err = &err};
    rc = rafs_walk(img, check_entry, &cc, &err);
    if (!rc) check_nlinks(&cc);
    free(cc.ref_nids);
    if (rc) {
        fprintf(stderr, "chunkfly-image check: %s: %s\n", bootstrap, cf_err_str(&err, rc));
        rafs_image_close(img);
        return 1;
    }
    if (blob_dir) {
        for (uint32_t i = 0; !rc && i < rafs_image_blob_count(img); i++)
            rc = check_blob(img, i, blob_dir, verbose, &err);
        rafs_blob_set *blobs = NULL;
        if (!rc) rc = rafs_blob_set_open_dir(img, blob_dir, &blobs, &err);
        if (!rc) {
            struct data_ctx dc = {img, blobs, malloc(RAFS_MAX_CHUNK_SIZE), &err};
            rc = dc.buf ? rafs_walk(img, check_file_data, &dc, &err)
                        : cf_err_set(&err, -ENOMEM, "out of memory");
            free(dc.buf);
        }
        rafs_blob_set_close(blobs);
        if (rc) {
            fprintf(stderr, "chunkfly-image check: %s: %s\n", bootstrap, cf_err_str(&err, rc));
            rafs_image_close(img);
            return 1;
        }
    }
    printf("RAFS filesystem metadata is valid, referenced data blobs: \n");
    for (uint32_t i = 0; i < rafs_image_blob_count(img); i++) {
        const struct rafs_blob_info *bi = rafs_image_blob(img, i);
        char feat[512];
        uint64_t data_size = bi->compressed_size;
        if (bi->ci_offset) {
            data_size = bi->ci_offset;
            if ((bi->features & RAFS_BLOB_HAS_TAR_HEADER) && data_size >= RAFS_TAR_BLOCK)
                data_size -= RAFS_TAR_BLOCK;
        }
        rafs_blob_features_str(bi->features, feat, sizeof(feat));
        printf("\t %u: %s, compressed data size 0x%llx, compressed file size 0x%llx, uncompressed "
               "file size 0x%llx, chunk size 0x%x, chunks: 0x%x, features: %s\n",
               i, bi->id, (unsigned long long)data_size, (unsigned long long)bi->compressed_size,
               (unsigned long long)bi->uncompressed_size, bi->chunk_size, bi->chunk_count, feat);
    }
    if (verbose)
        fprintf(stderr,
                "checked %llu files (%llu bytes, %llu chunk refs), %llu dirs, %llu symlinks, %llu "
                "other%s\n",
                (unsigned long long)cc.files, (unsigned long long)cc.bytes,
                (unsigned long long)cc.chunks_refd, (unsigned long long)cc.dirs,
                (unsigned long long)cc.symlinks, (unsigned long long)cc.others,
                blob_dir ? "; every blob chunk read and verified" : "");
    rc = json_out ? write_json(json_out, bootstrap, img) : 0;
    rafs_image_close(img);
    return rc;
}
