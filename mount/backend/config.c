/* nydusd's v1 JSON config (mount/config.h): a strict walk over the keys nydusd and
 * nydus-snapshotter know. Each object level lists its keys; anything else is an error naming its
 * JSON path, so a typo never silently falls back to a default. Defaults are nydusd's
 * (api/src/config.rs): timeouts 5 s, retry_limit 0, proxy.fallback true, check_interval 5 s,
 * scheme https, mode direct, amplify_io 1 MiB, fs_prefetch threads 8, merging_size 1 MiB,
 * prefetch_all true (applies only with enable), work_dir ".". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cf/file_io.h"
#include "mount/config.h"
#include "proto/registry_client.h"

#define CONFIG_FILE_MAX (1u << 20) /* a real config is a few hundred bytes */
#define PATH_MAX_LEN    160
#define LIST_MAX        64 /* alt_dirs, ca_cert_files */

/* A key or string value as it may appear in a message: at most 64 bytes, control bytes as '?'
 * (the input is untrusted and ends up in logs). */
static const char *printable(const char *s, char out[72])
{
    size_t n = strnlen(s, 65), take = n > 64 ? 64 : n;
    for (size_t i = 0; i < take; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    memcpy(out + take, n > 64 ? "...\0" : "\0", n > 64 ? 4 : 1);
    return out;
}

static void join(char out[PATH_MAX_LEN], const char *path, const char *key)
{
    char k[72];
    snprintf(out, PATH_MAX_LEN, "%s%s%s", path, *path ? "." : "", printable(key, k));
}

/* -EINVAL with "config: PATH.KEY = "VALUE"WHY" */
static int bad_value(const char *path, const char *key, const char *value, const char *why,
                     cf_err *err)
{
    char p[PATH_MAX_LEN], sv[72];
    join(p, path, key);
    return cf_err_set(err, -EINVAL, "config: %s = \"%s\"%s", p, printable(value, sv), why);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static int wrong_type(const char *path, const char *key, const json_t *v, const char *want,
                      cf_err *err)
{
    char p[PATH_MAX_LEN];
    join(p, path, key);
    return cf_err_set(err, -EINVAL, "config: %s must be %s, not %s", p, want, type_name(v));
}

/* Every key of `obj` must be in `known` (NULL-terminated). */
static int check_keys(const json_t *obj, const char *path, const char *const *known, cf_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i = 0;
        while (known[i] && strcmp(known[i], key) != 0) i++;
        if (!known[i]) {
            char p[PATH_MAX_LEN];
            join(p, path, key);
            return cf_err_set(err, -EINVAL,
                              "config: %s: unknown key (neither nydusd nor chunkfly-mount knows "
                              "it; check its spelling)",
                              p);
        }
    }
    return 0;
}

/* A member, or NULL when absent or null (null is taken as "not given", as nydusd's Option). */
static json_t *member(const json_t *obj, const char *key)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_null(v) ? NULL : v;
}

static int get_obj(const json_t *obj, const char *path, const char *key, json_t **out, cf_err *err)
{
    json_t *v = member(obj, key);
    *out = NULL;
    if (!v) return 0;
    if (!json_is_object(v)) return wrong_type(path, key, v, "an object", err);
    *out = v;
    return 0;
}

static int get_bool(const json_t *obj, const char *path, const char *key, bool *out, cf_err *err)
{
    json_t *v = member(obj, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return wrong_type(path, key, v, "true or false", err);
    *out = json_is_true(v);
    return 0;
}

static int get_uint(const json_t *obj, const char *path, const char *key, uint64_t max,
                    uint64_t *out, cf_err *err)
{
    json_t *v = member(obj, key);
    if (!v) return 0;
    if (!json_is_integer(v)) return wrong_type(path, key, v, "an integer", err);
    json_int_t n = json_integer_value(v);
    if (n < 0 || (uint64_t)n > max) {
        char p[PATH_MAX_LEN];
        join(p, path, key);
        return cf_err_set(err, -EINVAL, "config: %s = %lld is out of range (0..%llu)", p,
                          (long long)n, (unsigned long long)max);
    }
    *out = (uint64_t)n;
    return 0;
}

static int get_u32(const json_t *obj, const char *path, const char *key, uint32_t *out, cf_err *err)
{
    uint64_t v = *out;
    int rc = get_uint(obj, path, key, UINT32_MAX, &v, err);
    *out = (uint32_t)v;
    return rc;
}

/* A string; "" counts as not given (the snapshotter's Go structs cannot omit some). */
static int get_str(const json_t *obj, const char *path, const char *key, char **out, cf_err *err)
{
    json_t *v = member(obj, key);
    if (!v) return 0;
    if (!json_is_string(v)) return wrong_type(path, key, v, "a string", err);
    if (json_string_length(v) == 0) return 0;
    char *s = strdup(json_string_value(v));
    if (!s) return cf_err_set(err, -ENOMEM, "out of memory");
    free(*out);
    *out = s;
    return 0;
}

/* An array of non-empty strings into a NULL-terminated list (NULL when empty). */
static int get_strv(const json_t *obj, const char *path, const char *key, char ***out, cf_err *err)
{
    json_t *v = member(obj, key);
    if (!v) return 0;
    if (!json_is_array(v)) return wrong_type(path, key, v, "an array of strings", err);
    size_t n = json_array_size(v);
    char p[PATH_MAX_LEN];
    join(p, path, key);
    if (n > LIST_MAX)
        return cf_err_set(err, -EINVAL, "config: %s has %zu entries (at most %d)", p, n, LIST_MAX);
    if (n == 0) return 0;
    char **l = calloc(n + 1, sizeof(*l));
    if (!l) return cf_err_set(err, -ENOMEM, "out of memory");
    *out = l; /* freed by the caller's mount_config_free on any error */
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return cf_err_set(err, -EINVAL, "config: %s[%zu] must be a string, not %s", p, i,
                              type_name(e));
        if (json_string_length(e) == 0)
            return cf_err_set(err, -EINVAL, "config: %s[%zu] is empty", p, i);
        if (!(l[i] = strdup(json_string_value(e))))
            return cf_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

/* A string that must be one of `allowed` (NULL-terminated); *out stays NULL when absent. */
static int get_enum(const json_t *obj, const char *path, const char *key,
                    const char *const *allowed, const char **out, cf_err *err)
{
    json_t *v = member(obj, key);
    if (!v) return 0;
    if (!json_is_string(v)) return wrong_type(path, key, v, "a string", err);
    const char *s = json_string_value(v);
    if (!s[0]) return 0; /* "" = not given, as for every string */
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(allowed[i], s) == 0) {
            *out = allowed[i];
            return 0;
        }
    char p[PATH_MAX_LEN], sv[72], list[128] = "";
    join(p, path, key);
    for (size_t i = 0; allowed[i]; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%s\"%s\"", i ? ", " : "", allowed[i]);
    }
    return cf_err_set(err, -EINVAL, "config: %s = \"%s\" is not valid (one of %s)", p,
                      printable(s, sv), list);
}

/* ---- levels ----------------------------------------------------------------------------- */

static int parse_proxy(const json_t *o, const char *path, struct mount_proxy_config *p, cf_err *err)
{
    static const char *const keys[] = {"url",
                                       "ping_url",
                                       "fallback",
                                       "check_interval",
                                       "use_http",
                                       "check_pause_elapsed",
                                       "dragonfly_scheduler_endpoint",
                                       NULL};
    int rc = check_keys(o, path, keys, err);
    uint64_t interval = p->check_interval, pause = 0;
    char *sched = NULL;
    if (!rc) rc = get_str(o, path, "url", &p->url, err);
    if (!rc) rc = get_str(o, path, "ping_url", &p->ping_url, err);
    if (!rc) rc = get_bool(o, path, "fallback", &p->fallback, err);
    if (!rc) rc = get_uint(o, path, "check_interval", 86400, &interval, err);
    if (!rc) rc = get_bool(o, path, "use_http", &p->use_http, err);
    if (!rc) rc = get_uint(o, path, "check_pause_elapsed", UINT32_MAX, &pause, err);
    if (!rc) rc = get_str(o, path, "dragonfly_scheduler_endpoint", &sched, err);
    free(sched);
    if (rc) return rc;
    /* nydusd: an interval of 0 would spin the health checker; take it as the default. */
    p->check_interval = interval ? (uint32_t)interval : 5;
    if (p->url) {
        const char *u = p->url;
        int ok = 0;
        if (strncmp(u, "unix:", 5) == 0)
            ok = u[5] == '/' || (strncmp(u + 5, "//", 2) == 0 && u[7] == '/');
        else if (strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0)
            ok = u[strcspn(u, ":") + 3] != 0 && !strpbrk(u, " \r\n\t");
        if (!ok)
            return bad_value(path, "url", u,
                             ": expected http://HOST:PORT (a forward proxy) or unix:/PATH (the "
                             "local chunkfly-peer's socket)",
                             err);
    }
    if (p->ping_url && strncmp(p->ping_url, "http://", 7) != 0 &&
        strncmp(p->ping_url, "https://", 8) != 0)
        return bad_value(path, "ping_url", p->ping_url, ": expected an http(s) URL", err);
    return 0;
}

static int parse_backend_config(const json_t *o, const char *path, struct mount_backend_config *b,
                                cf_err *err)
{
    /* One key set for every backend type: nydus-snapshotter serialises a single Go struct
     * holding all of them (e.g. "readahead" always arrives, also for registry). */
    static const char *const keys[] = {
        /* localfs */
        "blob_file", "dir", "alt_dirs", "readahead", "readahead_sec",
        /* registry */
        "scheme", "host", "repo", "auth", "registry_token", "skip_verify", "ca_cert_files",
        "timeout", "connect_timeout", "retry_limit", "proxy", "blob_url_scheme",
        "blob_redirected_host",
        /* oss / s3 (accepted so their configs parse; the type itself is refused) */
        "endpoint", "access_key_id", "access_key_secret", "bucket_name", "object_prefix", "region",
        NULL};
    static const char *const schemes[] = {"http", "https", NULL};
    int rc = check_keys(o, path, keys, err);
    if (rc) return rc;
    bool readahead = false;
    uint64_t u = 0;
    const char *scheme = NULL, *blob_scheme = NULL;
    char *ignored = NULL;
    json_t *proxy = NULL;
    char p[PATH_MAX_LEN];
    if (!rc) rc = get_str(o, path, "blob_file", &b->blob_file, err);
    if (!rc) rc = get_str(o, path, "dir", &b->dir, err);
    if (!rc) rc = get_strv(o, path, "alt_dirs", &b->alt_dirs, err);
    if (!rc) rc = get_bool(o, path, "readahead", &readahead, err);
    if (!rc) rc = get_uint(o, path, "readahead_sec", UINT32_MAX, &u, err);
    if (!rc) rc = get_enum(o, path, "scheme", schemes, &scheme, err);
    if (!rc) rc = get_str(o, path, "host", &b->host, err);
    if (!rc) rc = get_str(o, path, "repo", &b->repo, err);
    if (!rc) rc = get_str(o, path, "auth", &b->auth, err);
    if (!rc) rc = get_str(o, path, "registry_token", &b->registry_token, err);
    if (!rc) rc = get_bool(o, path, "skip_verify", &b->skip_verify, err);
    if (!rc) rc = get_strv(o, path, "ca_cert_files", &b->ca_cert_files, err);
    if (!rc) rc = get_u32(o, path, "timeout", &b->timeout_s, err);
    if (!rc) rc = get_u32(o, path, "connect_timeout", &b->connect_timeout_s, err);
    if (!rc) rc = get_uint(o, path, "retry_limit", 255, &u, err); /* nydusd: u8 */
    if (!rc) b->retry_limit = (uint32_t)u;
    if (!rc) rc = get_obj(o, path, "proxy", &proxy, err);
    if (!rc)
        rc = get_enum(o, path, "blob_url_scheme", (const char *const[]){"http", "https", NULL},
                      &blob_scheme, err);
    if (!rc) rc = get_str(o, path, "blob_redirected_host", &ignored, err);
    for (const char *const *k =
             (const char *const[]){"endpoint", "access_key_id", "access_key_secret", "bucket_name",
                                   "object_prefix", "region", NULL};
         !rc && *k; k++) {
        rc = get_str(o, path, *k, &ignored, err);
        if (ignored) explicit_bzero(ignored, strlen(ignored)); /* may be a secret */
    }
    if (ignored) {
        explicit_bzero(ignored, strlen(ignored));
        free(ignored);
    }
    if (rc) return rc;
    if (scheme && !(b->scheme = strdup(scheme))) return cf_err_set(err, -ENOMEM, "out of memory");
    /* nydusd applies 5 s when the key is absent; the snapshotter omits zeros (omitempty), so
     * 0 means "default" here too. */
    if (!b->timeout_s) b->timeout_s = 5;
    if (!b->connect_timeout_s) b->connect_timeout_s = 5;
    if (b->host && (strpbrk(b->host, "/ \t\r\n?#@") || strstr(b->host, "://")))
        return bad_value(path, "host", b->host,
                         ": expected HOST[:PORT], no scheme or path (the scheme goes in "
                         "\"scheme\")",
                         err);
    if (b->repo && proto_registry_check_repo(b->repo) != 0)
        return bad_value(path, "repo", b->repo,
                         " is not a repository name (e.g. \"library/busybox\")", err);
    if (proxy) {
        join(p, path, "proxy");
        rc = parse_proxy(proxy, p, &b->proxy, err);
    }
    return rc;
}

static int parse_device(const json_t *dev, struct mount_config *c, cf_err *err)
{
    static const char *const dkeys[] = {"id", "backend", "cache", "external_backends", NULL};
    static const char *const bkeys[] = {"type", "config", NULL};
    static const char *const ckeys[] = {"type", "compressed", "validate", "config", NULL};
    static const char *const cckeys[] = {"work_dir",          "disable_indexed_map",
                                         "enable_encryption", "enable_convergent_encryption",
                                         "encryption_key",    NULL};
    static const char *const btypes[] = {"registry", "localfs", "oss", "s3", "localdisk", NULL};
    static const char *const ctypes[] = {"blobcache",  "filecache", "fscache",
                                         "dummycache", "",          NULL};
    json_t *backend = NULL, *cache = NULL, *bcfg = NULL, *ccfg = NULL;
    int rc = check_keys(dev, "device", dkeys, err);
    if (!rc) rc = get_str(dev, "device", "id", &c->id, err);
    if (!rc) rc = get_obj(dev, "device", "backend", &backend, err);
    if (!rc) rc = get_obj(dev, "device", "cache", &cache, err);
    json_t *ext = member(dev, "external_backends");
    if (!rc && ext && !json_is_array(ext))
        rc = wrong_type("device", "external_backends", ext, "an array", err);
    if (!rc && ext && json_array_size(ext) > 0)
        rc = cf_err_set(err, -ENOTSUP,
                        "config: device.external_backends: external backends "
                        "are not supported by chunkfly-mount");
    if (rc) return rc;
    if (!backend)
        return cf_err_set(err, -EINVAL,
                          "config: device.backend is missing (its \"type\" says "
                          "where blobs come from: registry or localfs)");

    const char *btype = NULL;
    rc = check_keys(backend, "device.backend", bkeys, err);
    if (!rc) rc = get_enum(backend, "device.backend", "type", btypes, &btype, err);
    if (!rc) rc = get_obj(backend, "device.backend", "config", &bcfg, err);
    if (!rc && bcfg) rc = parse_backend_config(bcfg, "device.backend.config", &c->backend, err);
    if (rc) return rc;
    if (!btype)
        return cf_err_set(err, -EINVAL,
                          "config: device.backend.type is missing (registry or "
                          "localfs)");
    if (strcmp(btype, "registry") == 0)
        c->backend.type = MOUNT_BACKEND_REGISTRY;
    else if (strcmp(btype, "localfs") == 0)
        c->backend.type = MOUNT_BACKEND_LOCALFS;
    else
        return cf_err_set(err, -ENOTSUP,
                          "config: device.backend.type = \"%s\" is not supported "
                          "by chunkfly-mount (registry or localfs)",
                          btype);

    if (!cache) return 0;
    const char *ctype = NULL;
    bool enc = false, conv = false;
    char *key = NULL;
    rc = check_keys(cache, "device.cache", ckeys, err);
    if (!rc) rc = get_enum(cache, "device.cache", "type", ctypes, &ctype, err);
    if (!rc) rc = get_bool(cache, "device.cache", "compressed", &c->cache.compressed, err);
    bool validate = false; /* accepted: chunks are always verified */
    if (!rc) rc = get_bool(cache, "device.cache", "validate", &validate, err);
    if (!rc) rc = get_obj(cache, "device.cache", "config", &ccfg, err);
    if (!rc && ccfg) rc = check_keys(ccfg, "device.cache.config", cckeys, err);
    if (!rc) rc = get_str(ccfg, "device.cache.config", "work_dir", &c->cache.work_dir, err);
    if (!rc)
        rc = get_bool(ccfg, "device.cache.config", "disable_indexed_map",
                      &c->cache.disable_indexed_map, err);
    if (!rc) rc = get_bool(ccfg, "device.cache.config", "enable_encryption", &enc, err);
    if (!rc) rc = get_bool(ccfg, "device.cache.config", "enable_convergent_encryption", &conv, err);
    if (!rc) rc = get_str(ccfg, "device.cache.config", "encryption_key", &key, err);
    if (key) {
        explicit_bzero(key, strlen(key));
        free(key);
    }
    if (rc) return rc;
    if (enc || conv)
        return cf_err_set(err, -ENOTSUP,
                          "config: device.cache.config.enable_encryption: an "
                          "encrypted cache is not supported by chunkfly-mount");
    if (ctype && strcmp(ctype, "fscache") == 0)
        return cf_err_set(err, -ENOTSUP,
                          "config: device.cache.type = \"fscache\" is not "
                          "supported (use \"blobcache\"; fscache is for nydusd's fscache mode)");
    c->cache.enabled =
        ctype && (strcmp(ctype, "blobcache") == 0 || strcmp(ctype, "filecache") == 0);
    return 0;
}

static int parse_prefetch(const json_t *o, struct mount_prefetch_config *p, cf_err *err)
{
    static const char *const keys[] = {"enable",
                                       "prefetch_all",
                                       "threads_count",
                                       "merging_size",
                                       "bandwidth_rate",
                                       "stream_prefetch",
                                       NULL};
    const char *path = "fs_prefetch";
    bool stream = false;
    uint64_t threads = p->threads_count, merging = p->merging_size, rate = p->bandwidth_rate;
    int rc = check_keys(o, path, keys, err);
    if (!rc) rc = get_bool(o, path, "enable", &p->enable, err);
    if (!rc) rc = get_bool(o, path, "prefetch_all", &p->prefetch_all, err);
    if (!rc) rc = get_uint(o, path, "threads_count", 1024, &threads, err);
    if (!rc) rc = get_uint(o, path, "merging_size", 1ull << 30, &merging, err);
    if (!rc) rc = get_uint(o, path, "bandwidth_rate", UINT32_MAX, &rate, err); /* nydusd: u32 */
    if (!rc) rc = get_bool(o, path, "stream_prefetch", &stream, err);
    if (rc) return rc;
    /* The snapshotter omits zeros (omitempty): 0 means nydusd's default. */
    p->threads_count = threads ? (uint32_t)threads : 8;
    p->merging_size = merging ? merging : 1u << 20;
    p->bandwidth_rate = rate;
    return 0;
}

static int parse_root(const json_t *root, struct mount_config *c, cf_err *err)
{
    static const char *const keys[] = {
        "device",      "mode",         "digest_validate", "iostats_files",
        "fs_prefetch", "enable_xattr", "access_pattern",  "latest_read_files",
        "amplify_io",  "warmup",       "id_mapping",      "version",
        NULL};
    static const char *const modes[] = {"direct", "cached", NULL};
    if (!json_is_object(root))
        return cf_err_set(err, -EINVAL, "config: the top level must be a JSON object, not %s",
                          type_name(root));
    json_t *ver = member(root, "version");
    if (ver && !(json_is_integer(ver) && json_integer_value(ver) == 1))
        return cf_err_set(err, -ENOTSUP,
                          "config: version: only nydusd's v1 config format is "
                          "supported (the one nydus-snapshotter writes)");
    int rc = check_keys(root, "", keys, err);
    if (rc) return rc;
    json_t *dev = NULL, *pf = NULL;
    const char *mode = NULL;
    uint64_t warmup = 0;
    if (!rc) rc = get_obj(root, "", "device", &dev, err);
    if (!rc) rc = get_enum(root, "", "mode", modes, &mode, err);
    if (!rc) rc = get_bool(root, "", "digest_validate", &c->digest_validate, err);
    if (!rc) rc = get_bool(root, "", "iostats_files", &c->iostats_files, err);
    if (!rc) rc = get_obj(root, "", "fs_prefetch", &pf, err);
    if (!rc) rc = get_bool(root, "", "enable_xattr", &c->enable_xattr, err);
    if (!rc) rc = get_bool(root, "", "access_pattern", &c->access_pattern, err);
    if (!rc) rc = get_bool(root, "", "latest_read_files", &c->latest_read_files, err);
    if (!rc) rc = get_uint(root, "", "amplify_io", 64ull << 20, &c->amplify_io, err);
    if (!rc) rc = get_uint(root, "", "warmup", UINT64_MAX >> 1, &warmup, err);
    json_t *idm = member(root, "id_mapping");
    if (!rc && idm) {
        if (!json_is_array(idm) || json_array_size(idm) != 3)
            return cf_err_set(err, -EINVAL,
                              "config: id_mapping must be an array of 3 integers "
                              "[inside, outside, count]");
        for (size_t i = 0; i < 3; i++) {
            json_t *e = json_array_get(idm, i);
            json_int_t n = json_is_integer(e) ? json_integer_value(e) : -1;
            if (n < 0 || n > UINT32_MAX)
                return cf_err_set(err, -EINVAL,
                                  "config: id_mapping[%zu] must be an integer "
                                  "0..4294967295",
                                  i);
            c->id_mapping[i] = (uint32_t)n;
        }
        c->has_id_mapping = true;
    }
    if (!rc && pf) rc = parse_prefetch(pf, &c->prefetch, err);
    if (rc) return rc;
    if (!(c->mode = strdup(mode ? mode : "direct")))
        return cf_err_set(err, -ENOMEM, "out of memory");
    if (!dev)
        return cf_err_set(err, -EINVAL,
                          "config: device is missing (device.backend says where "
                          "blobs come from)");
    return parse_device(dev, c, err);
}

int mount_config_parse(const char *json, size_t len, struct mount_config **out, cf_err *err)
{
    *out = NULL;
    json_error_t je;
    /* Duplicate keys are refused: which of two values nydusd would take is not worth guessing. */
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return cf_err_set(err, -EBADMSG, "config: not valid JSON at line %d column %d: %s", je.line,
                          je.column, je.text);
    struct mount_config *c = calloc(1, sizeof(*c));
    if (!c) {
        json_decref(root);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    /* nydusd's defaults (api/src/config.rs), overwritten by what the JSON says. */
    c->enable_xattr = true; /* nydusd: false, but the snapshotter omits false and sends true */
    c->amplify_io = 1u << 20;
    c->backend.timeout_s = c->backend.connect_timeout_s = 5;
    c->backend.proxy.fallback = true;
    c->backend.proxy.check_interval = 5;
    c->prefetch.threads_count = 8;
    c->prefetch.merging_size = 1u << 20;
    c->prefetch.prefetch_all = true;
    int rc = parse_root(root, c, err);
    json_decref(root);
    if (!rc && !c->backend.scheme && !(c->backend.scheme = strdup("https")))
        rc = cf_err_set(err, -ENOMEM, "out of memory");
    if (!rc && !c->cache.work_dir && !(c->cache.work_dir = strdup(".")))
        rc = cf_err_set(err, -ENOMEM, "out of memory");
    if (rc) {
        mount_config_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int mount_config_load(const char *path, struct mount_config **out, cf_err *err)
{
    *out = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = cf_read_file(path, CONFIG_FILE_MAX, &data, &len, err);
    if (rc) return cf_err_wrap(err, rc, "config");
    rc = mount_config_parse((const char *)data, len, out, err);
    explicit_bzero(data, len); /* it may hold registry credentials */
    free(data);
    if (rc) return cf_err_wrap(err, rc, "%s", path);
    return 0;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++) free(v[i]);
    free(v);
}

static void free_secret(char *s)
{
    if (s) explicit_bzero(s, strlen(s));
    free(s);
}

void mount_config_free(struct mount_config *c)
{
    if (!c) return;
    struct mount_backend_config *b = &c->backend;
    free(c->id);
    free(b->dir);
    free(b->blob_file);
    free_strv(b->alt_dirs);
    free(b->host);
    free(b->repo);
    free(b->scheme);
    free_secret(b->auth);
    free_secret(b->registry_token);
    free_strv(b->ca_cert_files);
    free(b->proxy.url);
    free(b->proxy.ping_url);
    free(c->cache.work_dir);
    free(c->mode);
    free(c);
}
