/* Bodies of POST /api/v1/conversions (request.h): the API, Harbor's webhook, docker-registry's
 * notifications. Every field is checked before use; nothing is trusted. */
#include "convertd/request.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/oci_model.h"
#include "proto/registry_client.h"

/* jansson nests at most this deep anyway (JSON_PARSER_MAX_DEPTH 2048); our shapes need 5. */
static int add_item(cvd_request *r, size_t *cap, const char *src, const char *tgt, cf_err *err)
{
    if (r->n_items == CVD_REQUEST_MAX_ITEMS)
        return cf_err_set(err, -E2BIG, "more than %d sources in one request",
                          CVD_REQUEST_MAX_ITEMS);
    /* one trigger may name a source twice (a registry retrying a batch): keep it once */
    for (size_t i = 0; i < r->n_items; i++)
        if (!strcmp(r->items[i].source, src) && !strcmp(r->items[i].target, tgt ? tgt : ""))
            return 0;
    if (r->n_items == *cap) {
        size_t n = *cap ? *cap * 2 : 4;
        cvd_request_item *p = realloc(r->items, n * sizeof(*p));
        if (!p) return cf_err_set(err, -ENOMEM, "out of memory");
        r->items = p;
        *cap = n;
    }
    cvd_request_item *it = &r->items[r->n_items++];
    snprintf(it->source, sizeof(it->source), "%s", src);
    snprintf(it->target, sizeof(it->target), "%s", tgt ? tgt : "");
    return 0;
}

/* A reference given by a client: a string, short enough, parsing as an image reference; with
 * need_tag, naming a tag (webhook sources: the tag is what the target's name derives from). */
static int check_ref(const json_t *v, const char *what, int need_tag, const char **out, cf_err *err)
{
    const char *s = json_string_value(v);
    if (!s) return cf_err_set(err, -EBADMSG, "%s: expected a string", what);
    if (strlen(s) != json_string_length(v))
        return cf_err_set(err, -EBADMSG, "%s: contains a NUL byte", what);
    if (strlen(s) >= CVD_REF_MAX)
        return cf_err_set(err, -EBADMSG, "%s: longer than %d bytes", what, CVD_REF_MAX - 1);
    proto_image_ref ref;
    cf_err e = {0};
    if (proto_image_ref_parse(s, &ref, &e) < 0)
        return cf_err_set(err, -EBADMSG, "%s \"%s\": %s", what, s, e.msg);
    if (need_tag && !ref.tag[0])
        return cf_err_set(err, -EBADMSG, "%s \"%s\": names no tag", what, s);
    *out = s;
    return 0;
}

static int parse_api(const json_t *j, cvd_request *r, size_t *cap, cf_err *err)
{
    const char *src = NULL, *tgt = NULL;
    int rc = check_ref(json_object_get(j, "src"), "\"src\"", 0, &src, err);
    if (rc < 0) return rc;
    const json_t *t = json_object_get(j, "target");
    if (t && !json_is_null(t)) {
        if ((rc = check_ref(t, "\"target\"", 1, &tgt, err)) < 0) return rc;
        proto_image_ref tr;
        proto_image_ref_parse(tgt, &tr, NULL);
        if (tr.digest[0])
            return cf_err_set(err, -EBADMSG, "\"target\" \"%s\": give a tag, not a digest", tgt);
    }
    r->kind = CVD_REQ_API;
    return add_item(r, cap, src, tgt, err);
}

static int parse_harbor(const json_t *j, cvd_request *r, size_t *cap, cf_err *err)
{
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return cf_err_set(err, -EBADMSG, "\"type\": expected a string");
    r->kind = CVD_REQ_HARBOR;
    if (strcmp(type, "PUSH_ARTIFACT")) {
        r->ignored++; /* deletions, scans, quota...: nothing to convert */
        return 0;
    }
    const json_t *ed = json_object_get(j, "event_data");
    if (!json_is_object(ed)) return cf_err_set(err, -EBADMSG, "\"event_data\": expected an object");
    const json_t *res = json_object_get(ed, "resources");
    if (!json_is_array(res))
        return cf_err_set(err, -EBADMSG, "\"event_data.resources\": expected an array");
    if (json_array_size(res) > CVD_REQUEST_MAX_EVENTS)
        return cf_err_set(err, -E2BIG, "more than %d resources", CVD_REQUEST_MAX_EVENTS);
    size_t i;
    const json_t *it;
    json_array_foreach(res, i, it)
    {
        char what[64];
        snprintf(what, sizeof(what), "\"event_data.resources[%zu].resource_url\"", i);
        if (!json_is_object(it))
            return cf_err_set(err, -EBADMSG, "\"event_data.resources[%zu]\": expected an object",
                              i);
        const char *src = NULL;
        int rc = check_ref(json_object_get(it, "resource_url"), what, 0, &src, err);
        if (rc < 0) return rc;
        proto_image_ref ref;
        proto_image_ref_parse(src, &ref, NULL);
        if (!ref.tag[0]) { /* pushed by digest: no tag to name a target after */
            r->ignored++;
            continue;
        }
        if ((rc = add_item(r, cap, src, NULL, err)) < 0) return rc;
    }
    return 0;
}

static int is_manifest_type(const char *mt)
{
    return !strcmp(mt, PROTO_OCI_MT_MANIFEST) || !strcmp(mt, PROTO_OCI_MT_INDEX) ||
           !strcmp(mt, PROTO_DOCKER_MT_MANIFEST) || !strcmp(mt, PROTO_DOCKER_MT_LIST);
}

/* A string member, or NULL when absent; -EBADMSG when present with another type. */
static int opt_str(const json_t *o, const char *key, const char *what, size_t i, const char **out,
                   cf_err *err)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return cf_err_set(err, -EBADMSG, "\"events[%zu].%s\": expected a string", i, what);
    *out = json_string_value(v);
    return 0;
}

static int parse_registry(const json_t *j, cvd_request *r, size_t *cap, cf_err *err)
{
    const json_t *evs = json_object_get(j, "events");
    if (!json_is_array(evs)) return cf_err_set(err, -EBADMSG, "\"events\": expected an array");
    if (json_array_size(evs) > CVD_REQUEST_MAX_EVENTS)
        return cf_err_set(err, -E2BIG, "more than %d events", CVD_REQUEST_MAX_EVENTS);
    r->kind = CVD_REQ_REGISTRY;
    size_t i;
    const json_t *ev;
    json_array_foreach(evs, i, ev)
    {
        if (!json_is_object(ev))
            return cf_err_set(err, -EBADMSG, "\"events[%zu]\": expected an object", i);
        const json_t *tg = json_object_get(ev, "target"), *rq = json_object_get(ev, "request");
        if (tg && !json_is_object(tg))
            return cf_err_set(err, -EBADMSG, "\"events[%zu].target\": expected an object", i);
        if (rq && !json_is_object(rq))
            return cf_err_set(err, -EBADMSG, "\"events[%zu].request\": expected an object", i);
        const char *action, *mt = NULL, *repo = NULL, *tag = NULL, *host = NULL;
        int rc = opt_str(ev, "action", "action", i, &action, err);
        if (!rc && tg) rc = opt_str(tg, "mediaType", "target.mediaType", i, &mt, err);
        if (!rc && tg) rc = opt_str(tg, "repository", "target.repository", i, &repo, err);
        if (!rc && tg) rc = opt_str(tg, "tag", "target.tag", i, &tag, err);
        if (!rc && rq) rc = opt_str(rq, "host", "request.host", i, &host, err);
        if (rc < 0) return rc;
        /* pulls, mounts, deletes, blob pushes and pushes by digest trigger nothing */
        if (!action || strcmp(action, "push") || !mt || !is_manifest_type(mt) || !tag || !tag[0]) {
            r->ignored++;
            continue;
        }
        if (!repo || proto_registry_check_repo(repo) < 0)
            return cf_err_set(err, -EBADMSG, "\"events[%zu].target.repository\": not a repository",
                              i);
        if (proto_registry_check_tag(tag) < 0)
            return cf_err_set(err, -EBADMSG, "\"events[%zu].target.tag\": not a tag", i);
        if (!host || proto_registry_check_host(host, strlen(host)) < 0)
            return cf_err_set(err, -EBADMSG, "\"events[%zu].request.host\": not a HOST[:PORT]", i);
        char ref[CVD_REF_MAX * 2];
        snprintf(ref, sizeof(ref), "%s/%s:%s", host, repo, tag);
        json_t *s = json_string(ref);
        const char *src = NULL;
        rc = s ? check_ref(s, "the pushed reference", 1, &src, err)
               : cf_err_set(err, -ENOMEM, "out of memory");
        if (rc == 0) rc = add_item(r, cap, src, NULL, err);
        json_decref(s);
        if (rc < 0) return rc;
    }
    return 0;
}

int cvd_request_parse(const void *body, size_t len, cvd_request *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return cf_err_set(err, -EBADMSG, "body is not JSON: %s (byte %d)", je.text, je.position);
    size_t cap = 0;
    int rc;
    if (!json_is_object(j))
        rc = cf_err_set(err, -EBADMSG, "body: expected a JSON object");
    else if (json_object_get(j, "events"))
        rc = parse_registry(j, out, &cap, err);
    else if (json_object_get(j, "type") || json_object_get(j, "event_data"))
        rc = parse_harbor(j, out, &cap, err);
    else if (json_object_get(j, "src"))
        rc = parse_api(j, out, &cap, err);
    else
        rc = cf_err_set(err, -EBADMSG,
                        "body: expected {\"src\": REF}, a Harbor webhook (\"type\") or registry "
                        "notifications (\"events\")");
    json_decref(j);
    if (rc < 0) cvd_request_free(out);
    return rc;
}

void cvd_request_free(cvd_request *r)
{
    free(r->items);
    memset(r, 0, sizeof(*r));
}

int cvd_target_for(const char *source, const char *suffix, const char *target_registry, char *out,
                   size_t cap, cf_err *err)
{
    proto_image_ref ref;
    int rc = proto_image_ref_parse(source, &ref, err);
    if (rc < 0) return rc;
    if (!ref.tag[0] || ref.digest[0])
        return cf_err_set(err, -EINVAL,
                          "%s: give a tag reference (the target's tag is the tag + \"%s\"), or "
                          "a \"target\"",
                          source, suffix);
    size_t tl = strlen(ref.tag), sl = strlen(suffix);
    if (sl && tl >= sl && !strcmp(ref.tag + tl - sl, suffix)) return 1;
    char tag[160];
    snprintf(tag, sizeof(tag), "%s%s", ref.tag, suffix);
    if (proto_registry_check_tag(tag) < 0)
        return cf_err_set(err, -EINVAL, "%s: the target tag %s is not a valid tag", source, tag);
    const char *reg = target_registry && target_registry[0] ? target_registry : ref.registry;
    if ((size_t)snprintf(out, cap, "%s/%s:%s", reg, ref.repo, tag) >= cap)
        return cf_err_set(err, -EINVAL, "%s: the target reference is too long", source);
    return 0;
}
