/* Listing a registry: the catalog of repositories (GET /v2/_catalog) and a repository's tags
 * (GET /v2/<repo>/tags/list), both paginated with `?n=&last=` (what `chunkfly convert --all`
 * walks).
 *
 * Same model as registry_client.h: calls on one shared `proto_registry`, blocking,
 * thread-safe; bearer tokens are asked for "registry:catalog:*" (catalog) and
 * "repository:REPO:pull" (tags). Pages are requested until one comes back shorter than the page
 * size; each page must continue after the previous one (names strictly increasing, as the
 * distribution spec orders them), else -EBADMSG: a registry cannot make us loop.
 *
 * The parsers take untrusted bytes and check every field: a JSON object of at most
 * PROTO_REGISTRY_LIST_DOC_MAX bytes; "repositories" an array of repository names
 * (proto_registry_check_repo); "name" the repository asked for and "tags" an array of tags
 * (proto_registry_check_tag) or null (a repository without tags); at most
 * PROTO_REGISTRY_LIST_MAX names in a list. Errors: 0 or a negative errno with `err` saying
 * what: -EBADMSG (not JSON, a wrong type, a bad name, over a cap, a page out of order),
 * -EFBIG (document too large), -ENOMEM; the calls add the errors of registry_client.h.
 * Ownership: a proto_name_list owns its strings; free it with proto_name_list_free (safe on a
 * zeroed list; leaves it zeroed). */
#ifndef PROTO_REGISTRY_CATALOG_H
#define PROTO_REGISTRY_CATALOG_H

#include <stddef.h>

#include "cf/error.h"
#include "proto/registry_client.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PROTO_REGISTRY_LIST_DOC_MAX (4u << 20) /* one page's answer */
#define PROTO_REGISTRY_LIST_MAX     100000     /* names in a whole listing */
#define PROTO_REGISTRY_PAGE         100        /* ?n= asked for */

typedef struct proto_name_list {
    size_t n;
    char **names; /* in the registry's order */
} proto_name_list;

void proto_name_list_free(proto_name_list *l);

/* One catalog page {"repositories": [...]}: its names appended to *out. */
int proto_registry_catalog_parse(const void *body, size_t len, proto_name_list *out, cf_err *err);
/* One tags page {"name": repo, "tags": [...] | null}: its tags appended to *out; "name" must
 * equal repo. */
int proto_registry_tags_parse(const void *body, size_t len, const char *repo, proto_name_list *out,
                              cf_err *err);

/* [blocking] Every repository of the registry (all pages). -EACCES when the registry does not
 * let this user list its catalog. */
int proto_registry_catalog(proto_registry *r, proto_name_list *out, cf_err *err);
/* [blocking] Every tag of repo (all pages). -ENOENT when the repository is unknown. */
int proto_registry_tags(proto_registry *r, const char *repo, proto_name_list *out, cf_err *err);

#ifdef __cplusplus
}
#endif

#endif
