/* chunkfly-mount --image: reference -> manifest -> Nydus bootstrap on disk (image_pull.h). */
#include "image_pull.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf/base64.h"
#include "cf/file_io.h"
#include "cf/log.h"
#include "proto/oci_model.h"
#include "proto/registry_auth.h"
#include "proto/registry_client.h"

#define MAX_TAR_ENTRIES 8192
#define MAX_SKIPPED     (4ull << 30) /* bytes of *.blob.meta entries read past */

void image_pulled_clear(struct image_pulled *p)
{
    if (p->auth_b64) {
        explicit_bzero(p->auth_b64, strlen(p->auth_b64));
        free(p->auth_b64);
    }
    memset(p, 0, sizeof(*p));
}

/* docker config credentials for host as base64 "user:pass" (nydusd's "auth"); NULL if none. */
static int load_auth(const char *host, char **out, cf_err *err)
{
    char *user = NULL, *pass = NULL;
    *out = NULL;
    int rc = proto_docker_config_load(NULL, host, &user, &pass, err);
    if (rc != 0) return rc < 0 ? cf_err_wrap(err, rc, "docker config") : 0;
    size_t ul = strlen(user), pl = strlen(pass), n = ul + 1 + pl;
    char *plain = malloc(n + 1), *b64 = malloc(cf_base64_encoded_size(n));
    if (plain && b64) {
        memcpy(plain, user, ul);
        plain[ul] = ':';
        memcpy(plain + ul + 1, pass, pl + 1);
        cf_base64_encode((const uint8_t *)plain, n, b64, cf_base64_encoded_size(n));
        *out = b64;
        b64 = NULL;
    }
    if (plain) explicit_bzero(plain, n);
    explicit_bzero(user, ul);
    explicit_bzero(pass, pl);
    free(plain);
    free(b64);
    free(user);
    free(pass);
    return *out ? 0 : cf_err_set(err, -ENOMEM, "out of memory");
}

/* The image manifest for `reference`, following one index level to the platform's entry. */
static int fetch_manifest(proto_registry *r, const char *repo, const char *reference,
                          const char *platform, proto_oci_manifest *m, char digest[72],
                          cf_err *err)
{
    proto_manifest raw = {0};
    int rc = proto_registry_manifest_get(r, repo, reference, &raw, err);
    if (rc) return rc;
    enum proto_oci_kind kind;
    rc = proto_oci_kind_of(raw.body, raw.len, raw.media_type, &kind, err);
    if (rc == 0 && kind == PROTO_OCI_KIND_INDEX) {
        proto_oci_index ix;
        proto_oci_platform want, *wp = NULL;
        const proto_oci_desc *d = NULL;
        if (platform && (rc = proto_oci_platform_parse(platform, &want, err))) goto out;
        if (platform) wp = &want;
        if ((rc = proto_oci_index_parse(raw.body, raw.len, raw.media_type, &ix, err))) {
            cf_err_wrap(err, rc, "index %s", raw.digest);
            goto out;
        }
        rc = proto_oci_index_select(&ix, wp, PROTO_OCI_SELECT_NYDUS, &d, err);
        char sel[72] = "";
        if (rc == 0) snprintf(sel, sizeof(sel), "%s", d->digest);
        proto_oci_index_free(&ix);
        if (rc) goto out;
        cf_info("index %s: manifest %s for this platform", raw.digest, sel);
        proto_manifest_free(&raw);
        if ((rc = proto_registry_manifest_get(r, repo, sel, &raw, err))) return rc;
    }
    if (rc == 0) {
        rc = proto_oci_manifest_parse(raw.body, raw.len, raw.media_type, m, err);
        if (rc == -EMEDIUMTYPE) cf_err_wrap(err, rc, "manifest %s (an index in an index?)", raw.digest);
        else if (rc) cf_err_wrap(err, rc, "manifest %s", raw.digest);
        snprintf(digest, 72, "%s", raw.digest);
    }
out:
    proto_manifest_free(&raw);
    return rc;
}

/* Entry name without "./" prefixes; NULL when absolute or holding a ".." component. */
static const char *entry_name(const char *p)
{
    if (!p || p[0] == '/') return NULL;
    while (p[0] == '.' && p[1] == '/') p += 2;
    for (const char *c = p; *c;) {
        size_t n = strcspn(c, "/");
        if (n == 2 && c[0] == '.' && c[1] == '.') return NULL;
        c += n;
        if (*c) c++;
    }
    return p;
}

static bool is_blob_meta(const char *name)
{
    /* image/<64 hex>.blob.meta: the ci arrays nydusify adds (we read them from the blobs) */
    size_t n = strlen(name);
    return n == 6 + 64 + 10 && !strncmp(name, "image/", 6) && !strcmp(name + 70, ".blob.meta") &&
           strspn(name + 6, "0123456789abcdef") == 64;
}

int image_extract_boot(int tgz_fd, int out_fd, cf_err *err)
{
    struct archive *a = archive_read_new();
    if (!a) return cf_err_set(err, -ENOMEM, "out of memory");
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_gnutar(a);
    int rc = 0, found = 0;
    uint64_t skipped = 0;
    char *buf = NULL;
    if (archive_read_open_fd(a, tgz_fd, 1 << 20) != ARCHIVE_OK) {
        rc = cf_err_set(err, -EBADMSG, "bootstrap layer: not a gzip tar: %s",
                        archive_error_string(a));
        goto out;
    }
    if (!(buf = malloc(1 << 20))) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    struct archive_entry *e;
    for (int n = 0;; n++) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = cf_err_set(err, -EBADMSG, "bootstrap layer: %s", archive_error_string(a));
            goto out;
        }
        if (n >= MAX_TAR_ENTRIES) {
            rc = cf_err_set(err, -EBADMSG, "bootstrap layer: more than %d entries",
                            MAX_TAR_ENTRIES);
            goto out;
        }
        const char *raw = archive_entry_pathname(e), *name = entry_name(raw);
        mode_t type = archive_entry_filetype(e);
        bool dir_ok = name && type == AE_IFDIR &&
                      (!strcmp(name, "") || !strcmp(name, ".") || !strcmp(name, "image") ||
                       !strcmp(name, "image/"));
        bool boot = name && type == AE_IFREG && !archive_entry_hardlink(e) &&
                    (!strcmp(name, "image/image.boot") || !strcmp(name, "image.boot"));
        bool meta = name && type == AE_IFREG && !archive_entry_hardlink(e) && is_blob_meta(name);
        if (!dir_ok && !boot && !meta) {
            rc = cf_err_set(err, -EBADMSG,
                            "bootstrap layer: unexpected entry \"%.200s\" (a Nydus bootstrap "
                            "layer holds image/image.boot only)",
                            raw ? raw : "(no name)");
            goto out;
        }
        if (meta) {
            skipped += (uint64_t)archive_entry_size(e);
            if (skipped > MAX_SKIPPED) {
                rc = cf_err_set(err, -EFBIG, "bootstrap layer: blob.meta entries too large");
                goto out;
            }
            continue; /* archive_read_next_header skips the data */
        }
        if (!boot) continue;
        if (found++) {
            rc = cf_err_set(err, -EBADMSG, "bootstrap layer: two image.boot entries");
            goto out;
        }
        int64_t size = archive_entry_size(e);
        if (size <= 0 || (uint64_t)size > IMAGE_BOOT_MAX) {
            rc = cf_err_set(err, -EFBIG, "bootstrap layer: image.boot of %lld bytes (1..%llu)",
                            (long long)size, IMAGE_BOOT_MAX);
            goto out;
        }
        uint64_t got = 0;
        for (;;) {
            la_ssize_t k = archive_read_data(a, buf, 1 << 20);
            if (k == 0) break;
            if (k < 0) {
                rc = cf_err_set(err, -EBADMSG, "bootstrap layer: %s", archive_error_string(a));
                goto out;
            }
            got += (uint64_t)k;
            if (got > (uint64_t)size) {
                rc = cf_err_set(err, -EBADMSG, "bootstrap layer: image.boot longer than its header");
                goto out;
            }
            if ((rc = cf_write_full(out_fd, buf, (size_t)k))) {
                rc = cf_err_set(err, rc, "writing the bootstrap: %s", strerror(-rc));
                goto out;
            }
        }
        if (got != (uint64_t)size) {
            rc = cf_err_set(err, -EBADMSG, "bootstrap layer: image.boot truncated");
            goto out;
        }
    }
    if (!found) rc = cf_err_set(err, -EBADMSG, "bootstrap layer: no image/image.boot in it");
out:
    free(buf);
    archive_read_free(a);
    return rc;
}

/* Fetches the bootstrap layer (verified), extracts image.boot to `path` atomically. */
static int fetch_bootstrap(proto_registry *r, const char *repo, const proto_oci_desc *d,
                           const char *work_dir, const char *path, cf_err *err)
{
    if (d->size > IMAGE_BOOT_TGZ_MAX)
        return cf_err_set(err, -EFBIG, "bootstrap layer %s: %llu bytes (at most %llu)", d->digest,
                          (unsigned long long)d->size, IMAGE_BOOT_TGZ_MAX);
    char tgz[4200], tmp[4200];
    snprintf(tgz, sizeof(tgz), "%s/.layer.XXXXXX", work_dir);
    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
    int tfd = mkostemp(tgz, O_CLOEXEC), bfd = -1, rc;
    if (tfd < 0) return cf_err_set(err, -errno, "%s: %s", tgz, strerror(errno));
    unlink(tgz); /* anonymous from now on */
    uint64_t got = 0;
    rc = proto_registry_blob_get_fd(r, repo, d->digest, 0, 0, PROTO_REGISTRY_VERIFY, tfd, 0, &got,
                                    err);
    if (rc) {
        cf_err_wrap(err, rc, "bootstrap layer %s", d->digest);
        goto out;
    }
    if (got != d->size) {
        rc = cf_err_set(err, -EBADMSG, "bootstrap layer %s: %llu bytes, the manifest says %llu",
                        d->digest, (unsigned long long)got, (unsigned long long)d->size);
        goto out;
    }
    if (lseek(tfd, 0, SEEK_SET) < 0) {
        rc = cf_err_set(err, -errno, "seek: %s", strerror(errno));
        goto out;
    }
    if ((bfd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        rc = cf_err_set(err, -errno, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if ((rc = image_extract_boot(tfd, bfd, err))) {
        cf_err_wrap(err, rc, "%s", d->digest);
        goto out;
    }
    if (fchmod(bfd, 0444) < 0 || fsync(bfd) < 0 || rename(tmp, path) < 0) {
        rc = cf_err_set(err, -errno, "%s: %s", path, strerror(errno));
        goto out;
    }
    tmp[0] = '\0';
    cf_fsync_parent(path);
out:
    if (bfd >= 0) close(bfd);
    if (tmp[0] && bfd >= 0) unlink(tmp);
    close(tfd);
    return rc;
}

int image_pull(const struct image_pull_opts *o, struct image_pulled *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    proto_image_ref ref;
    int rc = proto_image_ref_parse(o->ref, &ref, err);
    if (rc) return cf_err_wrap(err, rc, "--image %s", o->ref);
    proto_registry_opts ro = {.scheme = o->plain_http ? PROTO_REGISTRY_SCHEME_HTTP
                                                      : PROTO_REGISTRY_SCHEME_AUTO,
                              .user_agent = "chunkfly-mount/" CHUNKFLY_VERSION};
    proto_registry *r = NULL;
    proto_oci_manifest m = {0};
    proto_nydus_view v = {0};
    if ((rc = proto_registry_new(ref.registry, &ro, &r, err))) goto fail;
    if ((rc = fetch_manifest(r, ref.repo, proto_image_ref_reference(&ref), o->platform, &m,
                             out->manifest_digest, err)))
        goto fail;
    if ((rc = proto_nydus_view_get(&m, &v, err))) goto fail;
    if ((rc = cf_mkdir_p(o->work_dir, 0755))) {
        rc = cf_err_set(err, rc, "cache directory %s: %s", o->work_dir, strerror(-rc));
        goto fail;
    }
    snprintf(out->bootstrap, sizeof(out->bootstrap), "%s/%s.image.boot", o->work_dir,
             v.bootstrap->digest + 7);
    struct stat st;
    if (stat(out->bootstrap, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        out->cached = true; /* named by the verified layer digest, written atomically */
    } else if ((rc = fetch_bootstrap(r, ref.repo, v.bootstrap, o->work_dir, out->bootstrap,
                                     err))) {
        goto fail;
    }
    if ((rc = load_auth(ref.registry, &out->auth_b64, err))) goto fail;
    snprintf(out->host, sizeof(out->host), "%s", ref.registry);
    snprintf(out->repo, sizeof(out->repo), "%s", ref.repo);
    out->plain_http = proto_registry_plain_http(r);
    cf_info("image %s: manifest %s, %zu data blob(s), bootstrap %s (%s)", o->ref,
            out->manifest_digest, v.n_blobs, out->bootstrap,
            out->cached ? "already extracted" : "fetched");
    proto_nydus_view_free(&v);
    proto_oci_manifest_free(&m);
    proto_registry_free(r);
    return 0;
fail:
    if (err && !strstr(err->msg, o->ref)) cf_err_wrap(err, rc, "image %s", o->ref);
    proto_nydus_view_free(&v);
    proto_oci_manifest_free(&m);
    proto_registry_free(r);
    image_pulled_clear(out);
    return rc;
}
