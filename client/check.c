/* client_check (client/convert.h): a converted Nydus image against its source image. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>

#include "cf/digest.h"
#include "cf/file_io.h"
#include "cf/hex.h"
#include "client/convert.h"
#include "convert_priv.h"
#include "proto/registry_client.h"
#include "rafs/builder.h"
#include "rafs/reader.h"

#define CHECK_PATH_CAP 4096
#define DIFFS_SHOWN    20

struct chk {
    const client_check_opts *o;
    client_check_result *res;
    proto_image_ref sref, tref;
    proto_registry *src, *dst;
    char dir[CHECK_PATH_CAP];
};

static void say(struct chk *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct chk *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    client_conv_vsay(c->o->progress, c->o->progress_ctx, NULL, fmt, ap);
    va_end(ap);
}

/* A problem with the target: counted, the first few reported. */
static void problem(struct chk *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct chk *c, const char *fmt, ...)
{
    if (c->res->problems++ >= DIFFS_SHOWN) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    say(c, "PROBLEM: %s", line);
}

static int fetch_to(proto_registry *r, const char *repo, const char *digest, const char *path,
                    cf_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return cf_err_set(err, -errno, "%s: %s", path, strerror(errno));
    int rc =
        proto_registry_blob_get_fd(r, repo, digest, 0, 0, PROTO_REGISTRY_VERIFY, fd, 0, NULL, err);
    close(fd);
    return rc;
}

/* ---- trees: path -> {t type, m mode bits, u, g, s size, h content sha256, l symlink target,
 * r rdev, x {xattr: hex value}, k hard-link group} as a jansson object (a hash map). Names are
 * bytes, not necessarily UTF-8: keys and names go in with the *_nocheck setters. ---- */

/* "./a/b/" -> "a/b"; "" for the root. */
static void norm_path(const char *in, char *out, size_t cap)
{
    while (in[0] == '.' && in[1] == '/') in += 2;
    while (in[0] == '/') in++;
    if (strcmp(in, ".") == 0) in = "";
    snprintf(out, cap, "%s", in);
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/') out[--n] = '\0';
}

/* Removes path and everything below it (children_only: only below it). */
static void tree_remove(json_t *tree, const char *path, int children_only)
{
    size_t n = strlen(path);
    const char *key;
    json_t *v;
    void *tmp;
    if (!children_only) json_object_del(tree, path);
    json_object_foreach_safe(tree, tmp, key, v)
    {
        if (n == 0 || (strncmp(key, path, n) == 0 && key[n] == '/')) json_object_del(tree, key);
    }
}

/* Parent directories a tar did not list exist as the builder and runtimes create them. */
static void tree_parents(json_t *tree, const char *path)
{
    char p[CHECK_PATH_CAP];
    snprintf(p, sizeof(p), "%s", path);
    for (char *s = strrchr(p, '/'); s; s = strrchr(p, '/')) {
        *s = '\0';
        if (json_object_get(tree, p)) break;
        json_object_set_new_nocheck(
            tree, p, json_pack("{s:s, s:i, s:i, s:i}", "t", "d", "m", 0755, "u", 0, "g", 0));
    }
}

static const char *type_of(mode_t ft)
{
    switch (ft) {
    case AE_IFDIR:
        return "d";
    case AE_IFLNK:
        return "l";
    case AE_IFCHR:
        return "c";
    case AE_IFBLK:
        return "b";
    case AE_IFIFO:
        return "p";
    case AE_IFSOCK:
        return "s";
    default:
        return "f";
    }
}

/* Applies one tar (a source layer with whiteouts, or the unpacked target) to tree. */
static int tree_apply_tar(json_t *tree, const char *path, int whiteouts, uint64_t *entries,
                          cf_err *err)
{
    struct archive *a = archive_read_new();
    if (!a) return cf_err_set(err, -ENOMEM, "out of memory");
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    int rc = 0;
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        rc = cf_err_set(err, -EIO, "reading %s: %s", path, archive_error_string(a));
        archive_read_free(a);
        return rc;
    }
    struct archive_entry *e;
    static __thread uint8_t buf[1 << 16];
    char p[CHECK_PATH_CAP], q[CHECK_PATH_CAP];
    for (;;) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) {
            rc = cf_err_set(err, -EBADMSG, "reading %s: %s", path, archive_error_string(a));
            break;
        }
        const char *name = archive_entry_pathname(e);
        if (!name) {
            rc = cf_err_set(err, -EBADMSG, "%s: an entry without a usable name", path);
            break;
        }
        norm_path(name, p, sizeof(p));
        if (!p[0]) continue; /* the root comes from the runtime, not the layers */
        (*entries)++;
        const char *base = strrchr(p, '/');
        base = base ? base + 1 : p;
        if (whiteouts && strncmp(base, ".wh.", 4) == 0) {
            size_t dl = (size_t)(base - p);
            snprintf(q, sizeof(q), "%.*s", dl ? (int)dl - 1 : 0, p);
            if (strcmp(base, ".wh..wh..opq") == 0) {
                tree_remove(tree, q, 1);
            } else {
                char w[2 * CHECK_PATH_CAP + 2];
                snprintf(w, sizeof(w), "%s%s%s", q, q[0] ? "/" : "", base + 4);
                tree_remove(tree, w, 0);
            }
            continue;
        }
        const char *hl = archive_entry_hardlink(e);
        json_t *ent;
        if (hl) {
            norm_path(hl, q, sizeof(q));
            json_t *t = json_object_get(tree, q);
            if (!t) {
                rc = cf_err_set(err, -EBADMSG, "%s: %s is a hard link to missing %s", path, p, q);
                break;
            }
            if (!json_object_get(t, "k")) json_object_set_new(t, "k", json_string_nocheck(q));
            ent = json_deep_copy(t);
        } else {
            mode_t ft = archive_entry_filetype(e);
            ent = json_pack(
                "{s:s, s:i, s:I, s:I}", "t", type_of(ft), "m", (int)(archive_entry_perm(e) & 07777),
                "u", (json_int_t)archive_entry_uid(e), "g", (json_int_t)archive_entry_gid(e));
            if (!ent) {
                rc = cf_err_set(err, -ENOMEM, "out of memory");
                break;
            }
            if (ft == AE_IFLNK) {
                const char *sl = archive_entry_symlink(e);
                json_object_set_new(ent, "l", json_string_nocheck(sl ? sl : ""));
            } else if (ft == AE_IFCHR || ft == AE_IFBLK) {
                json_object_set_new(ent, "r",
                                    json_pack("[I,I]", (json_int_t)archive_entry_rdevmajor(e),
                                              (json_int_t)archive_entry_rdevminor(e)));
            } else if (ft == AE_IFREG) {
                cf_digest_ctx h;
                if (cf_digest_init(&h, CF_DIGEST_SHA256) < 0) {
                    json_decref(ent);
                    rc = cf_err_set(err, -ENOMEM, "out of memory");
                    break;
                }
                uint64_t size = 0;
                for (;;) {
                    la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
                    if (n < 0) {
                        rc = cf_err_set(err, -EBADMSG, "%s: %s: %s", path, p,
                                        archive_error_string(a));
                        break;
                    }
                    if (n == 0) break;
                    cf_digest_update(&h, buf, (size_t)n);
                    size += (uint64_t)n;
                }
                uint8_t md[CF_DIGEST_LEN];
                char hex[2 * CF_DIGEST_LEN + 1];
                if (rc < 0) {
                    cf_digest_abort(&h);
                    json_decref(ent);
                    break;
                }
                cf_digest_final(&h, md);
                cf_hex_encode(md, sizeof(md), hex);
                json_object_set_new(ent, "s", json_integer((json_int_t)size));
                json_object_set_new(ent, "h", json_string(hex));
            }
            const char *xn;
            const void *xv;
            size_t xl;
            if (archive_entry_xattr_reset(e) > 0) {
                json_t *x = json_object();
                while (archive_entry_xattr_next(e, &xn, &xv, &xl) == ARCHIVE_OK) {
                    char *hx = malloc(2 * xl + 1);
                    if (!hx) break;
                    cf_hex_encode(xv, xl, hx);
                    hx[2 * xl] = '\0';
                    json_object_set_new_nocheck(x, xn, json_string(hx));
                    free(hx);
                }
                json_object_set_new(ent, "x", x);
            }
        }
        json_t *old = json_object_get(tree, p);
        /* A directory over a directory keeps its children (tar semantics); anything else
         * replaces the old entry and what was below it. */
        if (old && !(strcmp(json_string_value(json_object_get(old, "t")), "d") == 0 &&
                     strcmp(json_string_value(json_object_get(ent, "t")), "d") == 0))
            tree_remove(tree, p, 0);
        tree_parents(tree, p);
        json_object_set_new_nocheck(tree, p, ent);
    }
    archive_read_free(a);
    return rc;
}

/* Hard-link groups named by their smallest present member; groups of one are no groups. */
static void tree_norm_links(json_t *tree)
{
    json_t *min = json_object(), *count = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(tree, key, v)
    {
        const char *k = json_string_value(json_object_get(v, "k"));
        if (!k) continue;
        const char *m = json_string_value(json_object_get(min, k));
        if (!m || strcmp(key, m) < 0) json_object_set_new_nocheck(min, k, json_string_nocheck(key));
        json_object_set_new_nocheck(
            count, k, json_integer(json_integer_value(json_object_get(count, k)) + 1));
    }
    json_object_foreach(tree, key, v)
    {
        const char *k = json_string_value(json_object_get(v, "k"));
        if (!k) continue;
        if (json_integer_value(json_object_get(count, k)) < 2)
            json_object_del(v, "k");
        else
            json_object_set(v, "k", json_object_get(min, k));
    }
    json_decref(min);
    json_decref(count);
}

static void compare_trees(struct chk *c, json_t *want, json_t *got)
{
    const char *key;
    json_t *v;
    json_object_foreach(want, key, v)
    {
        json_t *g = json_object_get(got, key);
        if (!g) {
            problem(c, "%s: in the source, missing in the target", key);
            continue;
        }
        if (!json_equal(v, g)) {
            char *a = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
            char *b = json_dumps(g, JSON_COMPACT | JSON_SORT_KEYS);
            problem(c, "%s differs: source %s, target %s", key, a ? a : "?", b ? b : "?");
            free(a);
            free(b);
        }
    }
    json_object_foreach(got, key, v)
    {
        if (!json_object_get(want, key)) problem(c, "%s: in the target only", key);
    }
}

/* ---- the target's structure ---- */
static int check_structure(struct chk *c, const proto_oci_manifest *m, const proto_nydus_view *v,
                           const char *boot_diff, cf_err *err)
{
    for (size_t i = 0; i < m->n_layers; i++) {
        const proto_oci_desc *d = &m->layers[i];
        if (d == v->bootstrap) {
            if (i + 1 != m->n_layers) problem(c, "the bootstrap layer is not the last layer");
            const char *bv = proto_oci_desc_annotation(d, PROTO_NYDUS_ANN_BOOTSTRAP);
            const char *fv = proto_oci_desc_annotation(d, PROTO_NYDUS_ANN_FS_VER);
            if (!bv || strcmp(bv, "true"))
                problem(c, "bootstrap layer: no nydus-bootstrap \"true\"");
            if (!fv || strcmp(fv, "6"))
                problem(c, "bootstrap layer: nydus-fs-version is not \"6\"");
            if (strcmp(d->media_type, PROTO_OCI_MT_LAYER_GZIP) &&
                strcmp(d->media_type, PROTO_DOCKER_MT_LAYER_GZIP))
                problem(c, "bootstrap layer: media type %s", d->media_type);
            continue;
        }
        const char *bv = proto_oci_desc_annotation(d, PROTO_NYDUS_ANN_BLOB);
        if (strcmp(d->media_type, PROTO_NYDUS_MT_BLOB) || !bv || strcmp(bv, "true"))
            problem(c, "layer %zu (%s): not a Nydus blob layer (media type %s, nydus-blob %s)",
                    i + 1, d->digest, d->media_type, bv ? bv : "absent");
    }
    struct mem_cap cb = {.max = 4u << 20};
    int rc =
        proto_registry_blob_get(c->dst, c->tref.repo, m->config.digest, 0, 0, PROTO_REGISTRY_VERIFY,
                                client_conv_mem_cap_write, &cb, NULL, err);
    if (rc < 0) {
        cf_buf_free(&cb.b);
        return cf_err_wrap(err, rc, "target config");
    }
    proto_oci_config cfg = {0};
    rc = proto_oci_config_parse(cb.b.data, cb.b.len, &cfg, err);
    cf_buf_free(&cb.b);
    if (rc < 0) return cf_err_wrap(err, rc, "target config");
    if (cfg.n_diff_ids != m->n_layers) {
        problem(c, "config: %zu diff_ids for %zu layers", cfg.n_diff_ids, m->n_layers);
    } else {
        for (size_t i = 0; i + 1 < m->n_layers; i++)
            if (strcmp(cfg.diff_ids[i], m->layers[i].digest))
                problem(c, "config: diff_id %zu is %s, the blob is %s", i + 1, cfg.diff_ids[i],
                        m->layers[i].digest);
        if (strcmp(cfg.diff_ids[m->n_layers - 1], boot_diff))
            problem(c, "config: the last diff_id %s is not the bootstrap tar's %s",
                    cfg.diff_ids[m->n_layers - 1], boot_diff);
    }
    proto_oci_config_free(&cfg);
    return 0;
}

/* image/image.boot out of the bootstrap layer (regular file, bounded). */
int client_conv_extract_boot(const char *tgz, const char *out, cf_err *err)
{
    struct archive *a = archive_read_new();
    if (!a) return cf_err_set(err, -ENOMEM, "out of memory");
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    int rc = -ENOENT, fd = -1;
    struct archive_entry *e;
    if (archive_read_open_filename(a, tgz, 1 << 16) != ARCHIVE_OK) {
        rc = cf_err_set(err, -EBADMSG, "bootstrap layer: %s", archive_error_string(a));
        goto out;
    }
    int r;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        char p[CHECK_PATH_CAP];
        norm_path(archive_entry_pathname(e) ? archive_entry_pathname(e) : "", p, sizeof(p));
        if (strcmp(p, "image/image.boot") && strcmp(p, "image.boot")) continue;
        if (archive_entry_filetype(e) != AE_IFREG ||
            archive_entry_size(e) > (la_int64_t)RAFS_BOOTSTRAP_MAX_SIZE_BUILDER) {
            rc = cf_err_set(err, -EBADMSG, "bootstrap layer: %s is not a regular file", p);
            goto out;
        }
        fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = cf_err_set(err, -errno, "%s: %s", out, strerror(errno));
            goto out;
        }
        rc = archive_read_data_into_fd(a, fd) == ARCHIVE_OK
                 ? 0
                 : cf_err_set(err, -EBADMSG, "bootstrap layer: %s", archive_error_string(a));
        goto out;
    }
    if (r != ARCHIVE_EOF)
        rc = cf_err_set(err, -EBADMSG, "bootstrap layer: %s", archive_error_string(a));
    else
        rc = cf_err_set(err, -ENOENT, "bootstrap layer: no image/image.boot in it");
out:
    if (fd >= 0) close(fd);
    archive_read_free(a);
    return rc;
}

/* One image: the target's manifest for `plat` (NULL: the host's, for an index) against the
 * source's manifest of the same platform. */
static int run_one(struct chk *c, const char *plat, cf_err *err)
{
    proto_oci_manifest tm = {0}, sm = {0};
    proto_nydus_view v = {0};
    rafs_image *img = NULL;
    json_t *want = json_object(), *got = json_object();
    char tdig[72], sdig[72], path[2 * CHECK_PATH_CAP], boot[CHECK_PATH_CAP + 100];
    char blobs[CHECK_PATH_CAP + 100], tar[CHECK_PATH_CAP + 100], boot_diff[72];
    int rc;
    if (!want || !got) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    rc = client_conv_resolve(c->dst, &c->tref, plat, PROTO_OCI_SELECT_NYDUS, &tm, tdig, NULL, err);
    if (rc < 0) goto out;
    rc = proto_nydus_view_get(&tm, &v, err);
    if (rc < 0) {
        cf_err_wrap(err, rc, "target %s", c->o->target);
        goto out;
    }
    if (v.fs_version != 6) problem(c, "manifest: the bootstrap layer has no fs version 6");
    snprintf(path, sizeof(path), "%s/bootstrap.tar.gz", c->dir);
    snprintf(boot, sizeof(boot), "%s/image.boot", c->dir);
    if ((rc = fetch_to(c->dst, c->tref.repo, v.bootstrap->digest, path, err)) < 0 ||
        (rc = client_conv_gunzip_sha256(path, boot_diff, err)) < 0 ||
        (rc = client_conv_extract_boot(path, boot, err)) < 0)
        goto out;
    rc = check_structure(c, &tm, &v, boot_diff, err);
    if (rc < 0) goto out;

    /* every blob of the bootstrap's table: a layer of the manifest, present, fetched */
    rc = rafs_image_open(boot, &img, err);
    if (rc < 0) {
        cf_err_wrap(err, rc, "target bootstrap");
        goto out;
    }
    snprintf(blobs, sizeof(blobs), "%s/blobs", c->dir);
    if (cf_mkdir_p(blobs, 0700) < 0) {
        rc = cf_err_set(err, -errno, "%s: %s", blobs, strerror(errno));
        goto out;
    }
    for (uint32_t i = 0; i < rafs_image_blob_count(img); i++) {
        const char *id = rafs_image_blob(img, i)->id;
        char d[80];
        snprintf(d, sizeof(d), "sha256:%s", id);
        int listed = 0;
        for (size_t j = 0; j < v.n_blobs; j++) listed |= strcmp(v.blobs[j]->digest, d) == 0;
        if (!listed) problem(c, "bootstrap blob %s is not a layer of the manifest", id);
        snprintf(path, sizeof(path), "%s/%s", blobs, id);
        rc = fetch_to(c->dst, c->tref.repo, d, path, err);
        if (rc < 0) {
            cf_err_wrap(err, rc, "blob %u of the bootstrap", i);
            goto out;
        }
        c->res->blobs++;
    }
    say(c, "target %s: structure checked, %u blobs fetched and digest-checked", tdig,
        c->res->blobs);
    /* the target's tree: unpack reads every chunk and checks its digest */
    snprintf(tar, sizeof(tar), "%s/target.tar", c->dir);
    rc = rafs_unpack(boot, NULL, blobs, tar, err);
    if (rc < 0) {
        cf_err_wrap(err, rc, "unpacking the target (every chunk is digest-checked)");
        goto out;
    }
    uint64_t n = 0;
    rc = tree_apply_tar(got, tar, 0, &n, err);
    if (rc < 0) goto out;
    c->res->entries += json_object_size(got);

    /* the source's tree: its layers applied in order, whiteouts included */
    rc = client_conv_resolve(c->src, &c->sref, plat, 0, &sm, sdig, NULL, err);
    if (rc < 0) goto out;
    snprintf(path, sizeof(path), "%s/layer", c->dir);
    for (size_t i = 0; i < sm.n_layers; i++) {
        if ((rc = fetch_to(c->src, c->sref.repo, sm.layers[i].digest, path, err)) < 0 ||
            (rc = tree_apply_tar(want, path, 1, &n, err)) < 0) {
            cf_err_wrap(err, rc, "source layer %zu", i + 1);
            goto out;
        }
    }
    unlink(path);
    tree_norm_links(want);
    tree_norm_links(got);
    compare_trees(c, want, got);
    say(c, "trees compared: source %s (%zu layers), target %zu entries", sdig, sm.n_layers,
        json_object_size(got));
out:
    /* the fetched files are only needed during the check */
    for (uint32_t i = 0; img && i < rafs_image_blob_count(img); i++) {
        snprintf(path, sizeof(path), "%s/blobs/%s", c->dir, rafs_image_blob(img, i)->id);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/target.tar", c->dir);
    unlink(path);
    rafs_image_close(img);
    json_decref(want);
    json_decref(got);
    proto_nydus_view_free(&v);
    proto_oci_manifest_free(&tm);
    proto_oci_manifest_free(&sm);
    return rc;
}

/* A target index is checked platform by platform: each Nydus manifest it lists (in an index
 * merged with the originals, the marked ones) against the source's manifest of its platform. */
static int run(struct chk *c, cf_err *err)
{
    if (c->o->platform) return run_one(c, c->o->platform, err);
    proto_manifest top = {0};
    proto_oci_index ix = {0};
    enum proto_oci_kind kind = PROTO_OCI_KIND_MANIFEST;
    int rc = proto_registry_manifest_get(c->dst, c->tref.repo, proto_image_ref_reference(&c->tref),
                                         &top, err);
    if (rc == 0) rc = proto_oci_kind_of(top.body, top.len, top.media_type, &kind, err);
    if (rc == 0 && kind != PROTO_OCI_KIND_INDEX) rc = run_one(c, NULL, err);
    if (rc < 0 || kind != PROTO_OCI_KIND_INDEX) goto out;
    rc = proto_oci_index_parse(top.body, top.len, top.media_type, &ix, err);
    if (rc < 0) {
        cf_err_wrap(err, rc, "target %s", c->o->target);
        goto out;
    }
    size_t marked = 0, plain = 0, done = 0;
    for (size_t i = 0; i < ix.n_manifests; i++) {
        const proto_oci_desc *d = &ix.manifests[i];
        int mk =
            d->platform.nydus_feature || strcmp(d->artifact_type, PROTO_NYDUS_ARTIFACT_TYPE) == 0;
        if (mk && !(d->platform.nydus_feature &&
                    strcmp(d->artifact_type, PROTO_NYDUS_ARTIFACT_TYPE) == 0))
            problem(c,
                    "index entry %s: marked Nydus by %s only (we write artifactType and "
                    "os.features)",
                    d->digest, d->platform.nydus_feature ? "os.features" : "artifactType");
        marked += mk;
        plain += !mk;
    }
    for (size_t i = 0; i < ix.n_manifests; i++) {
        const proto_oci_desc *d = &ix.manifests[i];
        int mk =
            d->platform.nydus_feature || strcmp(d->artifact_type, PROTO_NYDUS_ARTIFACT_TYPE) == 0;
        if ((marked && !mk) || strcmp(d->platform.os, "unknown") == 0) continue;
        if (!d->has_platform) {
            problem(c, "index entry %s has no platform", d->digest);
            continue;
        }
        char plat[128];
        proto_oci_platform_str(&d->platform, plat, sizeof(plat));
        say(c, "platform %s: %.19s", plat, d->digest);
        rc = run_one(c, plat, err);
        if (rc < 0) {
            cf_err_wrap(err, rc, "platform %s", plat);
            goto out;
        }
        done++;
    }
    if (marked && marked != plain)
        problem(c, "merged index: %zu Nydus manifests for %zu original ones", marked, plain);
    if (done == 0) problem(c, "the target index lists no Nydus manifest");
    say(c, "index: %zu platform%s checked%s", done, done == 1 ? "" : "s",
        marked ? " (merged with the original manifests)" : "");
out:
    proto_oci_index_free(&ix);
    proto_manifest_free(&top);
    return rc;
}

int client_check(const client_check_opts *o, client_check_result *res, cf_err *err)
{
    memset(res, 0, sizeof(*res));
    double t0 = client_conv_now();
    struct chk c = {.o = o, .res = res};
    if (!o->source || !o->target || !o->work_dir || !o->work_dir[0])
        return cf_err_set(err, -EINVAL, "check needs a source, a target and a work dir");
    int rc;
    if ((rc = proto_image_ref_parse(o->source, &c.sref, err)) < 0)
        return cf_err_wrap(err, rc, "source");
    if ((rc = proto_image_ref_parse(o->target, &c.tref, err)) < 0)
        return cf_err_wrap(err, rc, "target");
    if (strlen(o->work_dir) > CHECK_PATH_CAP - 300)
        return cf_err_set(err, -ENAMETOOLONG, "work dir %s: too long", o->work_dir);
    snprintf(c.dir, sizeof(c.dir), "%s/check", o->work_dir);
    if (cf_mkdir_p(c.dir, 0700) < 0)
        return cf_err_set(err, -errno, "work dir %s: %s", c.dir, strerror(errno));
    proto_registry_opts so = {.docker_config = o->docker_config,
                              .insecure_tls = o->source_insecure};
    proto_registry_opts to = {.docker_config = o->docker_config,
                              .insecure_tls = o->target_insecure};
    if ((rc = proto_registry_new(c.sref.registry, &so, &c.src, err)) < 0) return rc;
    if ((rc = proto_registry_new(c.tref.registry, &to, &c.dst, err)) < 0) {
        proto_registry_free(c.src);
        return rc;
    }
    rc = run(&c, err);
    proto_registry_free(c.src);
    proto_registry_free(c.dst);
    res->seconds = client_conv_now() - t0;
    if (rc == 0 && res->problems)
        rc = cf_err_set(err, -EBADMSG, "%s does not match %s: %u problem%s", o->target, o->source,
                        res->problems, res->problems == 1 ? "" : "s");
    return rc;
}
