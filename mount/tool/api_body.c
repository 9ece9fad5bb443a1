/* chunkfly-mount's API request bodies (api_body.h). */
#include "api_body.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The body as a JSON object, or NULL after setting err. */
static json_t *load_object(const void *body, size_t len, cf_err *err, int *rc)
{
    json_error_t je;
    /* json_loadb refuses a NULL buffer even with len 0: an empty body is just bad JSON */
    json_t *o = json_loadb(body ? (const char *)body : "", body ? len : 0, 0, &je);
    if (json_is_object(o)) return o;
    json_decref(o);
    *rc = cf_err_set(err, -EINVAL, "body: not a JSON object (%s)", je.text);
    return NULL;
}

int mount_api_parse_mount_body(const void *body, size_t len, struct mount_api_mount_body *out,
                               cf_err *err)
{
    memset(out, 0, sizeof(*out));
    int rc = 0;
    json_t *o = load_object(body, len, err, &rc);
    if (!o) return rc;
    const char *source = json_string_value(json_object_get(o, "source"));
    const char *fs_type = json_string_value(json_object_get(o, "fs_type"));
    json_t *jc = json_object_get(o, "config");
    json_t *pf = json_object_get(o, "prefetch_files");
    size_t npf = json_is_array(pf) ? json_array_size(pf) : 0;
    if (!source) {
        rc = cf_err_set(err, -EINVAL, "body: \"source\" (the bootstrap path) is missing");
        goto out;
    }
    if (fs_type && strcmp(fs_type, "rafs")) {
        rc = cf_err_set(err, -ENOTSUP, "fs_type \"%s\": only \"rafs\" is supported", fs_type);
        goto out;
    }
    out->source = strdup(source);
    out->config = json_is_string(jc)   ? strdup(json_string_value(jc))
                  : json_is_object(jc) ? json_dumps(jc, JSON_COMPACT)
                                       : NULL;
    out->prefetch = calloc(npf + 1, sizeof(*out->prefetch));
    if (!out->source || (json_is_string(jc) || json_is_object(jc)) != !!out->config ||
        !out->prefetch) {
        rc = cf_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < npf; i++) {
        const char *p = json_string_value(json_array_get(pf, i));
        if (!p) continue;
        if (!(out->prefetch[out->nprefetch] = strdup(p))) {
            rc = cf_err_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        out->nprefetch++;
    }
out:
    json_decref(o);
    return rc;
}

void mount_api_mount_body_free(struct mount_api_mount_body *b)
{
    if (!b) return;
    for (size_t i = 0; b->prefetch && i < b->nprefetch; i++) free(b->prefetch[i]);
    free(b->prefetch);
    free(b->source);
    free(b->config);
    memset(b, 0, sizeof(*b));
}

int mount_api_parse_config_body(const void *body, size_t len, char **auth, cf_err *err)
{
    *auth = NULL;
    json_error_t je;
    json_t *o = json_loadb(body ? (const char *)body : "", body ? len : 0, 0, &je);
    const char *a = json_string_value(json_object_get(o, "registry_auth"));
    int rc = 0;
    if (!a)
        rc = cf_err_set(err, -EINVAL, "body: {\"registry_auth\": \"<base64>\"} expected");
    else if (!(*auth = strdup(a)))
        rc = cf_err_set(err, -ENOMEM, "out of memory");
    json_decref(o);
    return rc;
}
