/* OCI / Docker image documents and the Nydus view of a manifest (include/proto/oci_model.h).
 * Everything here parses untrusted registry bytes: each field's type, length and count is
 * checked before use, and the result holds only copies (no jansson objects escape). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/hex.h"
#include "proto/oci_model.h"

#define SIZE_MAX_OK (1ull << 62)

static int copy_str(char *dst, size_t size, json_t *v, const char *what, int required,
                    cf_err *err)
{
    dst[0] = '\0';
    if (!v) return required ? cf_err_set(err, -EBADMSG, "%s missing", what) : 0;
    if (!json_is_string(v)) return cf_err_set(err, -EBADMSG, "%s is not a string", what);
    size_t n = json_string_length(v);
    if (n >= size) return cf_err_set(err, -EBADMSG, "%s longer than %zu bytes", what, size - 1);
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
    if (strlen(dst) != n) return cf_err_set(err, -EBADMSG, "%s holds a NUL byte", what);
    return 0;
}

static int check_digest(const char *d, const char *what, cf_err *err)
{
    const char *colon = strchr(d, ':');
    if (!colon || colon == d)
        return cf_err_set(err, -EBADMSG, "%s: \"%.80s\" is not a digest", what, d);
    if ((size_t)(colon - d) != 6 || strncmp(d, "sha256", 6) != 0)
        return cf_err_set(err, -ENOTSUP, "%s: digest algorithm \"%.*s\" is not supported (only "
                          "sha256)", what, (int)(colon - d < 16 ? colon - d : 16), d);
    if (strlen(colon + 1) != 64 || !cf_hex_is_lower(colon + 1, 64))
        return cf_err_set(err, -EBADMSG, "%s: \"%.80s\" is not sha256:<64 lowercase hex>", what,
                          d);
    return 0;
}

static void kv_free(proto_oci_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

static int parse_annotations(json_t *o, const char *what, proto_oci_kv **out, size_t *n_out,
                             cf_err *err)
{
    *out = NULL;
    *n_out = 0;
    if (!o) return 0;
    if (!json_is_object(o)) return cf_err_set(err, -EBADMSG, "%s.annotations is not an object", what);
    size_t n = json_object_size(o);
    if (n == 0) return 0;
    if (n > PROTO_OCI_MAX_ANNOTATIONS)
        return cf_err_set(err, -EBADMSG, "%s: %zu annotations (at most %d)", what, n,
                          PROTO_OCI_MAX_ANNOTATIONS);
    proto_oci_kv *kv = calloc(n, sizeof(*kv));
    if (!kv) return cf_err_set(err, -ENOMEM, "out of memory");
    size_t i = 0;
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(o, key, val) {
        if (i >= n) break;
        size_t kl = strlen(key); /* jansson keys are NUL-free unless JSON_ALLOW_NUL */
        if (!json_is_string(val)) {
            rc = cf_err_set(err, -EBADMSG, "%s: annotation \"%.80s\" is not a string", what, key);
            break;
        }
        size_t vl = json_string_length(val);
        if (kl > PROTO_OCI_MAX_STRING || vl > PROTO_OCI_MAX_STRING) {
            rc = cf_err_set(err, -EBADMSG, "%s: annotation \"%.80s\" over %d bytes", what, key,
                            PROTO_OCI_MAX_STRING);
            break;
        }
        kv[i].key = strndup(key, kl);
        kv[i].value = strndup(json_string_value(val), vl);
        i++;
        if (!kv[i - 1].key || !kv[i - 1].value) {
            rc = cf_err_set(err, -ENOMEM, "out of memory");
            break;
        }
    }
    if (rc < 0) {
        kv_free(kv, i);
        return rc;
    }
    *out = kv;
    *n_out = i;
    return 0;
}

static int parse_platform(json_t *p, const char *what, proto_oci_platform *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(p)) return cf_err_set(err, -EBADMSG, "%s.platform is not an object", what);
    char w[96];
    int rc;
    snprintf(w, sizeof(w), "%s.platform.os", what);
    if ((rc = copy_str(out->os, sizeof(out->os), json_object_get(p, "os"), w, 1, err)) < 0)
        return rc;
    snprintf(w, sizeof(w), "%s.platform.architecture", what);
    if ((rc = copy_str(out->arch, sizeof(out->arch), json_object_get(p, "architecture"), w, 1,
                       err)) < 0)
        return rc;
    snprintf(w, sizeof(w), "%s.platform.variant", what);
    if ((rc = copy_str(out->variant, sizeof(out->variant), json_object_get(p, "variant"), w, 0,
                       err)) < 0)
        return rc;
    snprintf(w, sizeof(w), "%s.platform.os.version", what);
    if ((rc = copy_str(out->os_version, sizeof(out->os_version),
                       json_object_get(p, "os.version"), w, 0, err)) < 0)
        return rc;
    json_t *f = json_object_get(p, "os.features");
    if (f) {
        if (!json_is_array(f) || json_array_size(f) > PROTO_OCI_MAX_ANNOTATIONS)
            return cf_err_set(err, -EBADMSG, "%s.platform.os.features is not a short array",
                              what);
        size_t i;
        json_t *e;
        json_array_foreach(f, i, e) {
            if (!json_is_string(e))
                return cf_err_set(err, -EBADMSG, "%s.platform.os.features[%zu] is not a string",
                                  what, i);
            if (strcmp(json_string_value(e), PROTO_NYDUS_OS_FEATURE) == 0) out->nydus_feature = 1;
        }
    }
    return 0;
}

static void desc_free(proto_oci_desc *d)
{
    kv_free(d->annotations, d->n_annotations);
    d->annotations = NULL;
    d->n_annotations = 0;
}

static int parse_desc(json_t *o, const char *what, proto_oci_desc *d, cf_err *err)
{
    memset(d, 0, sizeof(*d));
    if (!json_is_object(o)) return cf_err_set(err, -EBADMSG, "%s is not an object", what);
    char w[96];
    int rc;
    snprintf(w, sizeof(w), "%s.mediaType", what);
    if ((rc = copy_str(d->media_type, sizeof(d->media_type), json_object_get(o, "mediaType"), w,
                       1, err)) < 0)
        return rc;
    snprintf(w, sizeof(w), "%s.digest", what);
    json_t *dg = json_object_get(o, "digest");
    if (dg && json_is_string(dg) && json_string_length(dg) >= sizeof(d->digest) &&
        strncmp(json_string_value(dg), "sha256:", 7) != 0)
        return check_digest(json_string_value(dg), w, err); /* names the algorithm */
    if ((rc = copy_str(d->digest, sizeof(d->digest), dg, w, 1, err)) < 0) return rc;
    if ((rc = check_digest(d->digest, w, err)) < 0) return rc;
    json_t *sz = json_object_get(o, "size");
    if (!json_is_integer(sz) || json_integer_value(sz) < 0 ||
        (unsigned long long)json_integer_value(sz) > SIZE_MAX_OK)
        return cf_err_set(err, -EBADMSG, "%s.size missing or not an integer in [0, 2^62]", what);
    d->size = (uint64_t)json_integer_value(sz);
    snprintf(w, sizeof(w), "%s.artifactType", what);
    if ((rc = copy_str(d->artifact_type, sizeof(d->artifact_type),
                       json_object_get(o, "artifactType"), w, 0, err)) < 0)
        return rc;
    json_t *p = json_object_get(o, "platform");
    if (p) {
        if ((rc = parse_platform(p, what, &d->platform, err)) < 0) return rc;
        d->has_platform = 1;
    }
    return parse_annotations(json_object_get(o, "annotations"), what, &d->annotations,
                             &d->n_annotations, err);
}

const char *proto_oci_desc_annotation(const proto_oci_desc *d, const char *key)
{
    if (!d || !key) return NULL;
    for (size_t i = 0; i < d->n_annotations; i++)
        if (strcmp(d->annotations[i].key, key) == 0) return d->annotations[i].value;
    return NULL;
}

/* ---- document loading and kind ---- */

static int load(const void *body, size_t len, json_t **root, cf_err *err)
{
    *root = NULL;
    if (!body && len) return cf_err_set(err, -EINVAL, "no document");
    if (len > PROTO_OCI_DOC_MAX)
        return cf_err_set(err, -EFBIG, "document of %zu bytes (at most %u)", len,
                          PROTO_OCI_DOC_MAX);
    json_error_t jerr;
    json_t *r = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!r)
        return cf_err_set(err, -EBADMSG, "not JSON: %s at line %d column %d", jerr.text,
                          jerr.line, jerr.column);
    if (!json_is_object(r)) {
        json_decref(r);
        return cf_err_set(err, -EBADMSG, "not a JSON object");
    }
    *root = r;
    return 0;
}

static int media_kind(const char *mt, enum proto_oci_kind *kind, int *docker)
{
    struct { const char *mt; enum proto_oci_kind k; int docker; } t[] = {
        {PROTO_OCI_MT_MANIFEST, PROTO_OCI_KIND_MANIFEST, 0},
        {PROTO_DOCKER_MT_MANIFEST, PROTO_OCI_KIND_MANIFEST, 1},
        {PROTO_OCI_MT_INDEX, PROTO_OCI_KIND_INDEX, 0},
        {PROTO_DOCKER_MT_LIST, PROTO_OCI_KIND_INDEX, 1},
    };
    size_t n = strcspn(mt, "; \t");
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (strlen(t[i].mt) == n && strncmp(mt, t[i].mt, n) == 0) {
            *kind = t[i].k;
            *docker = t[i].docker;
            return 1;
        }
    }
    return 0;
}

/* Kind from the body's mediaType, the content type, then the shape. */
static int kind_of(json_t *root, const char *content_type, enum proto_oci_kind *kind,
                   int *docker, char *mt_out, size_t mt_size, cf_err *err)
{
    json_t *sv = json_object_get(root, "schemaVersion");
    if (json_is_integer(sv) && json_integer_value(sv) == 1)
        return cf_err_set(err, -ENOTSUP,
                          "Docker schema 1 manifests are not supported (push the image again "
                          "with a current client)");
    if (sv && (!json_is_integer(sv) || json_integer_value(sv) != 2))
        return cf_err_set(err, -EBADMSG, "schemaVersion is not 2");
    int rc = copy_str(mt_out, mt_size, json_object_get(root, "mediaType"), "mediaType", 0, err);
    if (rc < 0) return rc;
    *docker = 0;
    if (mt_out[0]) {
        if (media_kind(mt_out, kind, docker)) return 0;
        if (strstr(mt_out, "distribution.manifest.v1"))
            return cf_err_set(err, -ENOTSUP, "Docker schema 1 manifests are not supported");
        return cf_err_set(err, -EMEDIUMTYPE, "media type \"%s\" is neither an image manifest "
                          "nor an index", mt_out);
    }
    if (content_type && media_kind(content_type, kind, docker)) {
        size_t n = strcspn(content_type, "; \t");
        if (n >= mt_size) n = mt_size - 1;
        memcpy(mt_out, content_type, n);
        mt_out[n] = '\0';
        return 0;
    }
    int has_m = json_object_get(root, "manifests") != NULL;
    int has_l = json_object_get(root, "layers") != NULL || json_object_get(root, "config");
    if (has_m == has_l)
        return cf_err_set(err, -EBADMSG, "neither an image manifest nor an index (no mediaType, "
                          "ambiguous shape)");
    *kind = has_m ? PROTO_OCI_KIND_INDEX : PROTO_OCI_KIND_MANIFEST;
    snprintf(mt_out, mt_size, "%s", has_m ? PROTO_OCI_MT_INDEX : PROTO_OCI_MT_MANIFEST);
    return 0;
}

int proto_oci_kind_of(const void *body, size_t len, const char *content_type,
                      enum proto_oci_kind *kind, cf_err *err)
{
    json_t *root;
    int rc = load(body, len, &root, err);
    if (rc < 0) return rc;
    char mt[128];
    int docker;
    rc = kind_of(root, content_type, kind, &docker, mt, sizeof(mt), err);
    json_decref(root);
    return rc;
}

/* ---- manifest ---- */

void proto_oci_manifest_free(proto_oci_manifest *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_layers; i++) desc_free(&m->layers[i]);
    free(m->layers);
    desc_free(&m->config);
    desc_free(&m->subject);
    kv_free(m->annotations, m->n_annotations);
    memset(m, 0, sizeof(*m));
}

static int parse_desc_array(json_t *a, const char *what, proto_oci_desc **out, size_t *n_out,
                            cf_err *err)
{
    *out = NULL;
    *n_out = 0;
    if (!json_is_array(a)) return cf_err_set(err, -EBADMSG, "%s missing or not an array", what);
    size_t n = json_array_size(a);
    if (n > PROTO_OCI_MAX_ENTRIES)
        return cf_err_set(err, -EBADMSG, "%s: %zu entries (at most %d)", what, n,
                          PROTO_OCI_MAX_ENTRIES);
    if (n == 0) return 0;
    proto_oci_desc *d = calloc(n, sizeof(*d));
    if (!d) return cf_err_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char w[48];
        snprintf(w, sizeof(w), "%s[%zu]", what, i);
        int rc = parse_desc(json_array_get(a, i), w, &d[i], err);
        if (rc < 0) {
            for (size_t j = 0; j <= i; j++) desc_free(&d[j]);
            free(d);
            return rc;
        }
    }
    *out = d;
    *n_out = n;
    return 0;
}

int proto_oci_manifest_parse(const void *body, size_t len, const char *content_type,
                             proto_oci_manifest *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    json_t *root;
    int rc = load(body, len, &root, err);
    if (rc < 0) return rc;
    enum proto_oci_kind kind;
    rc = kind_of(root, content_type, &kind, &out->docker, out->media_type,
                 sizeof(out->media_type), err);
    if (rc == 0 && kind != PROTO_OCI_KIND_MANIFEST)
        rc = cf_err_set(err, -EMEDIUMTYPE, "an index (%s), not an image manifest",
                        out->media_type);
    if (rc == 0 && !json_object_get(root, "schemaVersion"))
        rc = cf_err_set(err, -EBADMSG, "schemaVersion missing");
    if (rc == 0)
        rc = copy_str(out->artifact_type, sizeof(out->artifact_type),
                      json_object_get(root, "artifactType"), "artifactType", 0, err);
    if (rc == 0) rc = parse_desc(json_object_get(root, "config"), "config", &out->config, err);
    if (rc == 0)
        rc = parse_desc_array(json_object_get(root, "layers"), "layers", &out->layers,
                              &out->n_layers, err);
    json_t *s = json_object_get(root, "subject");
    if (rc == 0 && s) {
        rc = parse_desc(s, "subject", &out->subject, err);
        out->has_subject = rc == 0;
    }
    if (rc == 0)
        rc = parse_annotations(json_object_get(root, "annotations"), "manifest",
                               &out->annotations, &out->n_annotations, err);
    json_decref(root);
    if (rc < 0) proto_oci_manifest_free(out);
    return rc;
}

/* ---- index ---- */

void proto_oci_index_free(proto_oci_index *ix)
{
    if (!ix) return;
    for (size_t i = 0; i < ix->n_manifests; i++) desc_free(&ix->manifests[i]);
    free(ix->manifests);
    kv_free(ix->annotations, ix->n_annotations);
    memset(ix, 0, sizeof(*ix));
}

int proto_oci_index_parse(const void *body, size_t len, const char *content_type,
                          proto_oci_index *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    json_t *root;
    int rc = load(body, len, &root, err);
    if (rc < 0) return rc;
    enum proto_oci_kind kind;
    rc = kind_of(root, content_type, &kind, &out->docker, out->media_type,
                 sizeof(out->media_type), err);
    if (rc == 0 && kind != PROTO_OCI_KIND_INDEX)
        rc = cf_err_set(err, -EMEDIUMTYPE, "an image manifest (%s), not an index",
                        out->media_type);
    if (rc == 0)
        rc = parse_desc_array(json_object_get(root, "manifests"), "manifests", &out->manifests,
                              &out->n_manifests, err);
    if (rc == 0)
        rc = parse_annotations(json_object_get(root, "annotations"), "index", &out->annotations,
                               &out->n_annotations, err);
    json_decref(root);
    if (rc < 0) proto_oci_index_free(out);
    return rc;
}

/* ---- platforms ---- */

void proto_oci_platform_host(proto_oci_platform *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->os, sizeof(out->os), "linux");
    const char *arch = "unknown", *variant = "";
#if defined(__x86_64__)
    arch = "amd64";
#elif defined(__aarch64__)
    arch = "arm64";
#elif defined(__arm__)
    arch = "arm";
    variant = "v7";
#elif defined(__i386__)
    arch = "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    arch = "ppc64le";
#elif defined(__s390x__)
    arch = "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
    arch = "riscv64";
#endif
    snprintf(out->arch, sizeof(out->arch), "%s", arch);
    snprintf(out->variant, sizeof(out->variant), "%s", variant);
}

int proto_oci_platform_parse(const char *s, proto_oci_platform *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!s) return cf_err_set(err, -EINVAL, "no platform");
    const char *p[3] = {s, NULL, NULL};
    size_t n[3] = {0};
    int parts = 1;
    for (const char *c = s;; c++) {
        if (*c == '/' || *c == '\0') {
            n[parts - 1] = (size_t)(c - p[parts - 1]);
            if (*c == '\0') break;
            if (parts == 3) return cf_err_set(err, -EINVAL, "platform \"%.64s\": want os/arch[/variant]", s);
            p[parts++] = c + 1;
        } else if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' ||
                     *c == '-' || *c == '.')) {
            return cf_err_set(err, -EINVAL, "platform \"%.64s\": unexpected character", s);
        }
    }
    if (parts < 2 || n[0] == 0 || n[1] == 0 || (parts == 3 && n[2] == 0) ||
        n[0] >= sizeof(out->os) || n[1] >= sizeof(out->arch) || n[2] >= sizeof(out->variant))
        return cf_err_set(err, -EINVAL, "platform \"%.64s\": want os/arch[/variant]", s);
    memcpy(out->os, p[0], n[0]);
    memcpy(out->arch, p[1], n[1]);
    if (parts == 3) memcpy(out->variant, p[2], n[2]);
    return 0;
}

void proto_oci_platform_str(const proto_oci_platform *p, char *buf, size_t size)
{
    if (!size) return;
    snprintf(buf, size, "%s/%s%s%s", p->os[0] ? p->os : "?", p->arch[0] ? p->arch : "?",
             p->variant[0] ? "/" : "", p->variant);
}

/* 2: exact (variant too), 1: os/arch match and the entry names no variant, 0: no match */
static int platform_score(const proto_oci_platform *have, const proto_oci_platform *want)
{
    if (strcmp(have->os, want->os) != 0 || strcmp(have->arch, want->arch) != 0) return 0;
    const char *hv = have->variant, *wv = want->variant;
    if (strcmp(want->arch, "arm64") == 0) { /* arm64 is v8 unless said otherwise */
        if (!hv[0]) hv = "v8";
        if (!wv[0]) wv = "v8";
    }
    if (!wv[0] || strcmp(hv, wv) == 0) return 2;
    return hv[0] ? 0 : 1;
}

static int is_manifest_type(const char *mt)
{
    return strcmp(mt, PROTO_OCI_MT_MANIFEST) == 0 || strcmp(mt, PROTO_DOCKER_MT_MANIFEST) == 0;
}

static int desc_is_nydus_manifest(const proto_oci_desc *d)
{
    return strcmp(d->artifact_type, PROTO_NYDUS_ARTIFACT_TYPE) == 0 || d->platform.nydus_feature;
}

int proto_oci_index_select(const proto_oci_index *ix, const proto_oci_platform *want,
                           unsigned flags, const proto_oci_desc **out, cf_err *err)
{
    *out = NULL;
    proto_oci_platform host;
    if (!want) {
        proto_oci_platform_host(&host);
        want = &host;
    }
    int best = 0;
    for (size_t i = 0; i < ix->n_manifests; i++) {
        const proto_oci_desc *d = &ix->manifests[i];
        if (!is_manifest_type(d->media_type) || !d->has_platform) continue;
        int s = platform_score(&d->platform, want) * 2;
        if (!s) continue;
        if ((flags & PROTO_OCI_SELECT_NYDUS) && desc_is_nydus_manifest(d)) s++;
        if (s > best) { /* first of equals wins, as containerd's matcher keeps index order */
            best = s;
            *out = d;
        }
    }
    if (*out) return 0;
    char w[64], have[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < ix->n_manifests && used + 40 < sizeof(have); i++) {
        if (!ix->manifests[i].has_platform) continue;
        char ps[96];
        proto_oci_platform_str(&ix->manifests[i].platform, ps, sizeof(ps));
        int k = snprintf(have + used, sizeof(have) - used, "%s%.80s", used ? ", " : "", ps);
        if (k < 0 || (size_t)k >= sizeof(have) - used) break;
        used += (size_t)k;
    }
    proto_oci_platform_str(want, w, sizeof(w));
    return cf_err_set(err, -ENOENT, "no manifest for platform %s in the index (it has: %s)", w,
                      used ? have : "no platform entries");
}

/* ---- config ---- */

void proto_oci_config_free(proto_oci_config *c)
{
    if (!c) return;
    free(c->diff_ids);
    memset(c, 0, sizeof(*c));
}

int proto_oci_config_parse(const void *body, size_t len, proto_oci_config *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    json_t *root;
    int rc = load(body, len, &root, err);
    if (rc < 0) return rc;
    proto_oci_platform *p = &out->platform;
    rc = copy_str(p->os, sizeof(p->os), json_object_get(root, "os"), "config os", 0, err);
    if (rc == 0)
        rc = copy_str(p->arch, sizeof(p->arch), json_object_get(root, "architecture"),
                      "config architecture", 0, err);
    if (rc == 0)
        rc = copy_str(p->variant, sizeof(p->variant), json_object_get(root, "variant"),
                      "config variant", 0, err);
    if (rc == 0)
        rc = copy_str(p->os_version, sizeof(p->os_version), json_object_get(root, "os.version"),
                      "config os.version", 0, err);
    json_t *rootfs = json_object_get(root, "rootfs");
    json_t *ids = json_is_object(rootfs) ? json_object_get(rootfs, "diff_ids") : NULL;
    if (rc == 0 && rootfs && !json_is_object(rootfs))
        rc = cf_err_set(err, -EBADMSG, "config rootfs is not an object");
    if (rc == 0 && ids && (!json_is_array(ids) || json_array_size(ids) > PROTO_OCI_MAX_ENTRIES))
        rc = cf_err_set(err, -EBADMSG, "config rootfs.diff_ids is not an array of at most %d",
                        PROTO_OCI_MAX_ENTRIES);
    if (rc == 0 && ids && json_array_size(ids)) {
        size_t n = json_array_size(ids);
        out->diff_ids = calloc(n, sizeof(*out->diff_ids));
        if (!out->diff_ids) rc = cf_err_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; rc == 0 && i < n; i++) {
            char w[48];
            snprintf(w, sizeof(w), "config rootfs.diff_ids[%zu]", i);
            rc = copy_str(out->diff_ids[i], sizeof(out->diff_ids[i]), json_array_get(ids, i), w,
                          1, err);
            if (rc == 0) rc = check_digest(out->diff_ids[i], w, err);
            if (rc == 0) out->n_diff_ids = i + 1;
        }
    }
    json_decref(root);
    if (rc < 0) proto_oci_config_free(out);
    return rc;
}

/* ---- Nydus view ---- */

void proto_nydus_view_free(proto_nydus_view *v)
{
    if (!v) return;
    free(v->blobs);
    memset(v, 0, sizeof(*v));
}

static int is_gzip_layer(const char *mt)
{
    return strcmp(mt, PROTO_OCI_MT_LAYER_GZIP) == 0 || strcmp(mt, PROTO_DOCKER_MT_LAYER_GZIP) == 0;
}

static int is_true(const char *v) { return v && strcmp(v, "true") == 0; }

static int is_blob_layer(const proto_oci_desc *d)
{
    return strcmp(d->media_type, PROTO_NYDUS_MT_BLOB) == 0 ||
           is_true(proto_oci_desc_annotation(d, PROTO_NYDUS_ANN_BLOB));
}

int proto_nydus_view_get(const proto_oci_manifest *m, proto_nydus_view *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    size_t n = m->n_layers, boot = n;
    for (size_t i = n; i-- > 0;) {
        if (is_true(proto_oci_desc_annotation(&m->layers[i], PROTO_NYDUS_ANN_BOOTSTRAP))) {
            boot = i;
            break;
        }
    }
    size_t n_blob = 0;
    for (size_t i = 0; i < n; i++) n_blob += is_blob_layer(&m->layers[i]) && i != boot;
    if (boot == n && n >= 2 && n_blob == n - 1 && is_gzip_layer(m->layers[n - 1].media_type))
        boot = n - 1; /* annotations lost: the topmost gzip layer over Nydus blobs */
    if (boot == n)
        return cf_err_set(err, -EMEDIUMTYPE,
                          "not a Nydus image: no layer is a Nydus bootstrap (annotation %s, or a "
                          "gzip layer on top of %s layers); convert it with nydusify or "
                          "`nerdctl image convert --nydus`",
                          PROTO_NYDUS_ANN_BOOTSTRAP, PROTO_NYDUS_MT_BLOB);
    const proto_oci_desc *b = &m->layers[boot];
    const char *fsv = proto_oci_desc_annotation(b, PROTO_NYDUS_ANN_FS_VER);
    if (!fsv) {
        for (size_t i = 0; i < m->n_annotations; i++)
            if (strcmp(m->annotations[i].key, PROTO_NYDUS_ANN_FS_VER) == 0)
                fsv = m->annotations[i].value;
    }
    if (fsv && strcmp(fsv, "5") == 0)
        return cf_err_set(err, -ENOTSUP, "RAFS v5 images are not supported (fs version 5); "
                          "convert the image with --fs-version 6");
    if (fsv && strcmp(fsv, "6") != 0)
        return cf_err_set(err, -ENOTSUP, "unknown Nydus fs version \"%.16s\" (only 6)", fsv);
    out->fs_version = fsv ? 6 : 0;
    for (size_t i = 0; i < n; i++) {
        if (proto_oci_desc_annotation(&m->layers[i], PROTO_NYDUS_ANN_REF))
            return cf_err_set(err, -ENOTSUP, "zran Nydus images (nydusify --oci-ref: data read "
                              "from the OCI layers) are not supported; layer %zu has %s", i,
                              PROTO_NYDUS_ANN_REF);
        if (is_true(proto_oci_desc_annotation(&m->layers[i], PROTO_NYDUS_ANN_ENCRYPTED)))
            return cf_err_set(err, -ENOTSUP, "encrypted Nydus blobs are not supported (layer %zu)",
                              i);
    }
    if (n_blob) {
        out->blobs = calloc(n_blob, sizeof(*out->blobs));
        if (!out->blobs) return cf_err_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
            if (i != boot && is_blob_layer(&m->layers[i])) out->blobs[out->n_blobs++] = &m->layers[i];
    }
    out->bootstrap = b;
    return 0;
}
