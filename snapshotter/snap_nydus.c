/* Nydus specifics of the snapshotter: image reference -> nydusd config, blob ids, cache. */
#include "snap_nydus.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf/base64.h"
#include "cf/log.h"
#include "proto/registry_auth.h"
#include "proto/registry_client.h"
#include "rafs/reader.h"

int snap_nydus_opts_init(snap_nydus_opts *o, const snap_core_opts *co, const char *cache_dir,
                         cf_err *err)
{
    memset(o, 0, sizeof(*o));
    size_t n = 0;
    while (co->plain_http && co->plain_http[n]) n++;
    o->plain_http = calloc(n + 1, sizeof(char *));
    o->cache_dir = strdup(cache_dir);
    o->peer_socket = co->peer_socket ? strdup(co->peer_socket) : NULL;
    o->docker_config = co->docker_config ? strdup(co->docker_config) : NULL;
    int bad = !o->plain_http || !o->cache_dir || (co->peer_socket && !o->peer_socket) ||
              (co->docker_config && !o->docker_config);
    for (size_t i = 0; i < n && !bad; i++) bad = !(o->plain_http[i] = strdup(co->plain_http[i]));
    if (bad) {
        snap_nydus_opts_fini(o);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

void snap_nydus_opts_fini(snap_nydus_opts *o)
{
    for (size_t i = 0; o->plain_http && o->plain_http[i]; i++) free(o->plain_http[i]);
    free(o->plain_http);
    free(o->cache_dir);
    free(o->peer_socket);
    free(o->docker_config);
    memset(o, 0, sizeof(*o));
}

static int plain(const snap_nydus_opts *o, const char *host)
{
    for (size_t i = 0; o->plain_http[i]; i++)
        if (!strcmp(o->plain_http[i], host)) return 1;
    return 0;
}

/* *out: base64 "user:pass" from docker config.json for ir's registry, or NULL. */
static int auth_for(const snap_nydus_opts *o, const proto_image_ref *ir, const char *ref,
                    char **out)
{
    *out = NULL;
    char *user = NULL, *pass = NULL;
    cf_err e = {0};
    int dc = proto_docker_config_load(o->docker_config, ir->registry, &user, &pass, &e);
    if (dc < 0) cf_warn("docker config: %s (pulling %s anonymously)", cf_err_str(&e, dc), ref);
    int rc = 0;
    if (dc == 0) {
        size_t ul = strlen(user), pl = strlen(pass);
        size_t b64cap = cf_base64_encoded_size(ul + pl + 1);
        char *cred = malloc(ul + pl + 2), *b64 = malloc(b64cap);
        if (cred && b64) {
            memcpy(cred, user, ul);
            cred[ul] = ':';
            memcpy(cred + ul + 1, pass, pl + 1);
            if (cf_base64_encode((const uint8_t *)cred, ul + pl + 1, b64, b64cap) >= 0) {
                *out = b64;
                b64 = NULL;
            }
        } else {
            rc = -ENOMEM;
        }
        if (cred) explicit_bzero(cred, ul + pl + 1);
        free(cred);
        free(b64);
    }
    if (pass) explicit_bzero(pass, strlen(pass));
    free(user);
    free(pass);
    return rc;
}

static const char *image_ref(const snap_rec *boot)
{
    const char *ref = snap_rec_label(boot, SNAP_LABEL_STARGZ_REF);
    if (!ref || !ref[0]) ref = snap_rec_label(boot, SNAP_LABEL_CRI_REF);
    return ref && ref[0] ? ref : NULL;
}

int snap_nydus_auth(const snap_nydus_opts *o, const snap_rec *boot, char **out, cf_err *err)
{
    *out = NULL;
    const char *ref = image_ref(boot);
    proto_image_ref ir;
    if (!ref) return cf_err_set(err, -EINVAL, "no image reference label");
    int rc = proto_image_ref_parse(ref, &ir, err);
    if (!rc) rc = auth_for(o, &ir, ref, out);
    return rc;
}

int snap_nydus_config(const snap_nydus_opts *o, const snap_rec *boot, char **out, cf_err *err)
{
    *out = NULL;
    const char *ref = image_ref(boot);
    if (!ref)
        return cf_err_set(err, -EINVAL,
                          "the Nydus image has no reference label (%s or %s): pull it with "
                          "`ctr-remote images rpull` or through CRI, which tell the snapshotter "
                          "where its blobs are",
                          SNAP_LABEL_STARGZ_REF, SNAP_LABEL_CRI_REF);
    proto_image_ref ir;
    int rc = proto_image_ref_parse(ref, &ir, err);
    if (rc) return cf_err_wrap(err, rc, "image reference label %s", ref);
    json_t *bcfg =
        json_pack("{s:s, s:s, s:s, s:i, s:i}", "host", ir.registry, "repo", ir.repo, "scheme",
                  plain(o, ir.registry) ? "http" : "https", "timeout", 30, "connect_timeout", 10);
    char *auth = NULL;
    if (bcfg && !(rc = auth_for(o, &ir, ref, &auth)) && auth)
        json_object_set_new(bcfg, "auth", json_string(auth));
    if (auth) explicit_bzero(auth, strlen(auth));
    free(auth);
    if (rc) {
        json_decref(bcfg);
        return cf_err_set(err, rc, "out of memory");
    }
    if (bcfg && o->peer_socket) {
        char url[4200];
        snprintf(url, sizeof(url), "unix:%s", o->peer_socket);
        json_object_set_new(bcfg, "proxy", json_pack("{s:s, s:b}", "url", url, "fallback", 1));
    }
    json_t *cfg = bcfg ? json_pack("{s:{s:{s:s, s:o}, s:{s:s, s:{s:s}}}, s:s, s:b, s:b}", "device",
                                   "backend", "type", "registry", "config", bcfg, "cache", "type",
                                   "blobcache", "config", "work_dir", o->cache_dir, "mode",
                                   "direct", "digest_validate", 1, "enable_xattr", 1)
                       : NULL;
    *out = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
    json_decref(cfg);
    return *out ? 0 : cf_err_set(err, -ENOMEM, "out of memory");
}

static const char *kv_get(const snap_kv *l, size_t n, const char *a, const char *b)
{
    for (size_t i = 0; i < n; i++)
        if (l[i].v[0] && (!strcmp(l[i].k, a) || !strcmp(l[i].k, b))) return l[i].v;
    return NULL;
}

int snap_nydus_check_blob(const snap_nydus_opts *o, const snap_kv *labels, size_t n, cf_err *err)
{
    const char *ref = kv_get(labels, n, SNAP_LABEL_STARGZ_REF, SNAP_LABEL_CRI_REF);
    const char *digest = kv_get(labels, n, SNAP_LABEL_STARGZ_DIGEST, SNAP_LABEL_CRI_DIGEST);
    proto_image_ref ir;
    if (!ref || !digest || proto_image_ref_parse(ref, &ir, NULL) ||
        proto_registry_check_digest(digest))
        return 0;
    proto_registry_opts ro = {.scheme = plain(o, ir.registry) ? PROTO_REGISTRY_SCHEME_HTTP
                                                              : PROTO_REGISTRY_SCHEME_HTTPS,
                              .docker_config = o->docker_config,
                              .connect_timeout_ms = 3000,
                              .total_timeout_ms = 5000,
                              .max_retries = -1};
    proto_registry *r;
    cf_err e = {0};
    uint64_t size;
    int rc = proto_registry_new(ir.registry, &ro, &r, &e);
    if (!rc) {
        rc = proto_registry_blob_size(r, ir.repo, digest, &size, &e);
        proto_registry_free(r);
    }
    if (rc == -ENOENT)
        return cf_err_set(err, -ENOENT,
                          "image %s: its Nydus data blob %s is not in the registry (%s)", ref,
                          digest, cf_err_str(&e, rc));
    if (rc) cf_warn("image %s: cannot check blob %s: %s", ref, digest, cf_err_str(&e, rc));
    return 0;
}

int snap_nydus_blob_ids(const char *bootstrap, char ***ids, size_t *n, cf_err *err)
{
    *ids = NULL;
    *n = 0;
    rafs_image *img;
    if (access(bootstrap, F_OK) != 0) return -ENOENT;
    int rc = rafs_image_open(bootstrap, &img, err);
    if (rc) return rc;
    uint32_t cnt = rafs_image_blob_count(img);
    char **a = calloc(cnt ? cnt : 1, sizeof(*a));
    if (!a) {
        rafs_image_close(img);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < cnt; i++) {
        const struct rafs_blob_info *bi = rafs_image_blob(img, i);
        if (bi && !(a[*n] = strdup(bi->id))) {
            rc = cf_err_set(err, -ENOMEM, "out of memory");
            break;
        }
        if (bi) (*n)++;
    }
    rafs_image_close(img);
    if (rc) {
        for (size_t i = 0; i < *n; i++) free(a[i]);
        free(a);
        *n = 0;
        return rc;
    }
    *ids = a;
    return 0;
}

void snap_nydus_drop_cache(const snap_nydus_opts *o, const char *blob_id)
{
    DIR *d = opendir(o->cache_dir);
    if (!d) return;
    size_t idl = strlen(blob_id);
    struct dirent *de;
    while ((de = readdir(d))) {
        /* "<id>" itself and "<id>.<suffix>" files of the blobcache layout */
        if (strncmp(de->d_name, blob_id, idl) || (de->d_name[idl] && de->d_name[idl] != '.'))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0) cf_info("cache: removed %s", de->d_name);
    }
    closedir(d);
}
