/* client_convert_all_list (client/convert.h): the refs of a registry to convert. */
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/digest.h"
#include "client/convert.h"
#include "proto/oci_model.h"
#include "proto/registry_catalog.h"
#include "proto/registry_client.h"

#define ANN_SRC_DIG "containerd.io/snapshot/nydus-source-digest"

unsigned client_convert_shard_of(const char *repo, const char *tag, unsigned shards)
{
    char key[400];
    uint8_t md[CF_DIGEST_LEN];
    int n = snprintf(key, sizeof(key), "%s:%s", repo, tag);
    if (shards <= 1 || n < 0 || cf_sha256(key, (size_t)n, md) < 0) return 0;
    uint64_t h = 0;
    for (int i = 0; i < 8; i++) h = h << 8 | md[i];
    return (unsigned)(h % shards);
}

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return b > 0 && a >= b && strcmp(s + a - b, suf) == 0;
}

int client_convert_recorded_source(proto_registry *r, const char *repo, const char *reference,
                                   char out[72], cf_err *err)
{
    out[0] = '\0';
    proto_manifest mf = {0};
    int rc = proto_registry_manifest_get(r, repo, reference, &mf, err);
    if (rc == -ENOENT) return 0; /* no target (or listed, then deleted) */
    if (rc < 0) return rc;
    enum proto_oci_kind kind;
    cf_err ignored = {0};
    const char *v = NULL;
    proto_oci_manifest m = {0};
    proto_oci_index ix = {0};
    /* a target we cannot read is one to convert again, not a failure */
    if (proto_oci_kind_of(mf.body, mf.len, mf.media_type, &kind, &ignored) == 0) {
        const proto_oci_kv *kv = NULL;
        size_t n = 0;
        if (kind == PROTO_OCI_KIND_INDEX &&
            proto_oci_index_parse(mf.body, mf.len, mf.media_type, &ix, &ignored) == 0) {
            kv = ix.annotations;
            n = ix.n_annotations;
        } else if (kind == PROTO_OCI_KIND_MANIFEST &&
                   proto_oci_manifest_parse(mf.body, mf.len, mf.media_type, &m, &ignored) == 0) {
            kv = m.annotations;
            n = m.n_annotations;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(kv[i].key, ANN_SRC_DIG) == 0) v = kv[i].value;
        if (v && proto_registry_check_digest(v) == 0) snprintf(out, 72, "%s", v);
    }
    proto_oci_manifest_free(&m);
    proto_oci_index_free(&ix);
    proto_manifest_free(&mf);
    return 0;
}

int client_convert_source_digest(proto_registry *r, const proto_image_ref *ref,
                                 const char *platform, char out[72], cf_err *err)
{
    proto_manifest top = {0};
    proto_oci_index ix = {0};
    enum proto_oci_kind kind = PROTO_OCI_KIND_MANIFEST;
    int rc = proto_registry_manifest_get(r, ref->repo, proto_image_ref_reference(ref), &top, err);
    if (rc == 0) rc = proto_oci_kind_of(top.body, top.len, top.media_type, &kind, err);
    if (rc == 0 && kind == PROTO_OCI_KIND_INDEX && platform) {
        proto_oci_platform want;
        const proto_oci_desc *d = NULL;
        rc = proto_oci_platform_parse(platform, &want, err);
        if (rc == 0) rc = proto_oci_index_parse(top.body, top.len, top.media_type, &ix, err);
        if (rc == 0) rc = proto_oci_index_select(&ix, &want, 0, &d, err);
        if (rc == 0) snprintf(out, 72, "%s", d->digest);
    } else if (rc == 0) {
        snprintf(out, 72, "%s", top.digest);
    }
    proto_oci_index_free(&ix);
    proto_manifest_free(&top);
    return rc;
}

static int in_list(const proto_name_list *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->names[i], s) == 0) return 1;
    return 0;
}

int client_convert_all_list(const client_convert_all_opts *o, client_convert_ref **out,
                            size_t *nout, cf_err *err)
{
    *out = NULL;
    *nout = 0;
    const char *suffix = o->suffix ? o->suffix : "-nydus";
    unsigned shards = o->shards ? o->shards : 1;
    if (o->shard >= shards)
        return cf_err_set(err, -EINVAL, "shard %u/%u: the index must be below the count", o->shard,
                          shards);
    if (!suffix[0] || strlen(suffix) > 64 ||
        proto_registry_check_tag(suffix[0] == '-' ? suffix + 1 : suffix))
        return cf_err_set(err, -EINVAL, "target suffix \"%s\": want tag characters, like -nydus",
                          suffix);
    regex_t re;
    int have_re = 0;
    if (o->repo_filter) {
        int e = regcomp(&re, o->repo_filter, REG_EXTENDED | REG_NOSUB);
        if (e) {
            char msg[200];
            regerror(e, &re, msg, sizeof(msg));
            return cf_err_set(err, -EINVAL, "--repo-filter '%s': %s", o->repo_filter, msg);
        }
        have_re = 1;
    }
    proto_registry *r = NULL;
    proto_name_list repos = {0}, tags = {0};
    client_convert_ref *list = NULL;
    size_t n = 0, cap = 0;
    proto_registry_opts ro = {.docker_config = o->docker_config, .insecure_tls = o->insecure};
    int rc = proto_registry_new(o->registry, &ro, &r, err);
    if (rc == 0) rc = proto_registry_catalog(r, &repos, err);
    for (size_t i = 0; rc == 0 && i < repos.n; i++) {
        const char *repo = repos.names[i];
        if (have_re && regexec(&re, repo, 0, NULL, 0) != 0) continue;
        proto_name_list_free(&tags);
        rc = proto_registry_tags(r, repo, &tags, err);
        if (rc == -ENOENT) { /* deleted since the catalog was read */
            rc = 0;
            continue;
        }
        for (size_t j = 0; rc == 0 && j < tags.n; j++) {
            const char *tag = tags.names[j];
            if (has_suffix(tag, suffix) || client_convert_shard_of(repo, tag, shards) != o->shard)
                continue;
            if (strlen(tag) + strlen(suffix) > 128) continue; /* no valid target tag */
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 32;
                client_convert_ref *g = realloc(list, nc * sizeof(*g));
                if (!g) {
                    rc = cf_err_set(err, -ENOMEM, "out of memory");
                    break;
                }
                list = g;
                cap = nc;
            }
            client_convert_ref *x = &list[n];
            memset(x, 0, sizeof(*x));
            snprintf(x->repo, sizeof(x->repo), "%s", repo);
            snprintf(x->tag, sizeof(x->tag), "%s", tag);
            snprintf(x->target_tag, sizeof(x->target_tag), "%s%s", tag, suffix);
            proto_manifest mf = {0};
            rc = proto_registry_manifest_get(r, repo, tag, &mf, err);
            if (rc == -ENOENT) { /* deleted since listed */
                rc = 0;
                continue;
            }
            if (rc < 0) break;
            snprintf(x->source_digest, sizeof(x->source_digest), "%s", mf.digest);
            proto_manifest_free(&mf);
            if (in_list(&tags, x->target_tag)) {
                char rec[72];
                rc = client_convert_recorded_source(r, repo, x->target_tag, rec, err);
                x->done = rc == 0 && strcmp(rec, x->source_digest) == 0;
            }
            n++;
        }
    }
    if (have_re) regfree(&re);
    proto_name_list_free(&tags);
    proto_name_list_free(&repos);
    proto_registry_free(r);
    if (rc < 0) {
        free(list);
        return rc;
    }
    *out = list;
    *nout = n;
    return 0;
}
