/* The catalog and tag listings (proto/registry_catalog.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "proto/registry_catalog.h"
#include "registry_internal.h"

#define LIST_TIMEOUT_MS 30000

void proto_name_list_free(proto_name_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    l->names = NULL;
    l->n = 0;
}

/* Appends the strings of array a (each checked by check) to out. what names the document. */
static int append_names(json_t *a, int (*check)(const char *), const char *what,
                        proto_name_list *out, cf_err *err)
{
    size_t n = json_array_size(a);
    if (n > PROTO_REGISTRY_LIST_MAX || out->n + n > PROTO_REGISTRY_LIST_MAX)
        return cf_err_set(err, -EBADMSG, "%s: more than %u names", what, PROTO_REGISTRY_LIST_MAX);
    if (n == 0) return 0;
    char **grown = realloc(out->names, (out->n + n) * sizeof(*grown));
    if (!grown) return cf_err_set(err, -ENOMEM, "out of memory");
    out->names = grown;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i);
        const char *v = json_string_value(e);
        /* a NUL inside the JSON string would cut the name: refused */
        if (!v || strlen(v) != json_string_length(e) || check(v) < 0)
            return cf_err_set(err, -EBADMSG, "%s: entry %zu is not a valid name", what, i);
        if (!(out->names[out->n] = strdup(v))) return cf_err_set(err, -ENOMEM, "out of memory");
        out->n++;
    }
    return 0;
}

static json_t *load_object(const void *body, size_t len, const char *what, cf_err *err, int *rc)
{
    if (len > PROTO_REGISTRY_LIST_DOC_MAX) {
        *rc = cf_err_set(err, -EFBIG, "%s: %zu bytes, over %u", what, len,
                         PROTO_REGISTRY_LIST_DOC_MAX);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(j)) {
        *rc = cf_err_set(err, -EBADMSG, "%s: not a JSON object%s%s", what, j ? "" : ": ",
                         j ? "" : je.text);
        json_decref(j);
        return NULL;
    }
    *rc = 0;
    return j;
}

int proto_registry_catalog_parse(const void *body, size_t len, proto_name_list *out, cf_err *err)
{
    int rc;
    json_t *j = load_object(body, len, "catalog", err, &rc);
    if (!j) return rc;
    json_t *a = json_object_get(j, "repositories");
    if (!json_is_array(a))
        rc = cf_err_set(err, -EBADMSG, "catalog: \"repositories\" is not an array");
    else
        rc = append_names(a, proto_registry_check_repo, "catalog", out, err);
    json_decref(j);
    return rc;
}

int proto_registry_tags_parse(const void *body, size_t len, const char *repo, proto_name_list *out,
                              cf_err *err)
{
    int rc;
    json_t *j = load_object(body, len, "tag list", err, &rc);
    if (!j) return rc;
    const char *name = json_string_value(json_object_get(j, "name"));
    json_t *a = json_object_get(j, "tags");
    if (!name || !repo || strcmp(name, repo) != 0)
        rc = cf_err_set(err, -EBADMSG, "tag list: \"name\" is not the repository asked for (%s)",
                        repo ? repo : "");
    else if (json_is_null(a))
        rc = 0; /* a repository whose tags were all deleted */
    else if (!json_is_array(a))
        rc = cf_err_set(err, -EBADMSG, "tag list of %s: \"tags\" is not an array", repo);
    else
        rc = append_names(a, proto_registry_check_tag, "tag list", out, err);
    json_decref(j);
    return rc;
}

/* All pages of a listing: GET path?n=PAGE[&last=L] while the answer says a next page exists
 * (Link rel="next"), each page starting after the last name of the previous one. */
static int list_all(proto_registry *r, const char *path, const char *repo, const char *scope,
                    proto_name_list *out, cf_err *err)
{
    char url[2048], what[320], last[300] = "";
    snprintf(what, sizeof(what), "%s", repo ? "tag list" : "catalog");
    memset(out, 0, sizeof(*out));
    for (;;) {
        int n = snprintf(url, sizeof(url), "%s%s?n=%d%s%s", r->base, path, PROTO_REGISTRY_PAGE,
                         last[0] ? "&last=" : "", last);
        if (n < 0 || (size_t)n >= sizeof(url))
            return cf_err_set(err, -EINVAL, "registry %s: listing URL too long", r->host);
        cf_buf body = {0};
        struct reg_resp s;
        memset(&s, 0, sizeof(s));
        struct reg_req q = {.method = "GET",
                            .url = url,
                            .accept = "application/json",
                            .total_timeout_ms = LIST_TIMEOUT_MS,
                            .buf = &body,
                            .buf_max = PROTO_REGISTRY_LIST_DOC_MAX};
        int rc = reg_request_scope(r, repo ? repo : "(catalog)", scope, &q, &s, err);
        if (rc == 0 && s.status != 200)
            rc = reg_status_error(r, &s, what, repo ? repo : "(catalog)", err);
        size_t before = out->n;
        if (rc == 0) {
            rc = repo ? proto_registry_tags_parse(body.data, body.len, repo, out, err)
                      : proto_registry_catalog_parse(body.data, body.len, out, err);
            if (rc < 0) cf_err_wrap(err, rc, "registry %s", r->host);
        }
        cf_buf_free(&body);
        if (rc == 0 && last[0] && out->n > before && strcmp(out->names[before], last) <= 0)
            rc = cf_err_set(err, -EBADMSG,
                            "registry %s: %s page after \"%s\" starts at \"%s\" (not after it)",
                            r->host, what, last, out->names[before]);
        if (rc < 0) {
            proto_name_list_free(out);
            return rc;
        }
        if (!s.link_next || out->n == before) return 0;
        snprintf(last, sizeof(last), "%s", out->names[out->n - 1]);
    }
}

int proto_registry_catalog(proto_registry *r, proto_name_list *out, cf_err *err)
{
    return list_all(r, "/v2/_catalog", NULL, "registry:catalog:*", out, err);
}

int proto_registry_tags(proto_registry *r, const char *repo, proto_name_list *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    int rc = reg_check_names(r, repo, NULL, err);
    if (rc < 0) return rc;
    char path[320], scope[320];
    snprintf(path, sizeof(path), "/v2/%s/tags/list", repo);
    snprintf(scope, sizeof(scope), "repository:%s:pull", repo);
    return list_all(r, path, repo, scope, out, err);
}
