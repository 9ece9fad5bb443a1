/* chunkfly-convertd: what a POST to /api/v1/conversions asks for (docs/convertd.md).
 *
 * One body, three shapes, told apart by their fields:
 *  - the API:      {"src": REF, "target": REF?}  (target absent: derived by the rules)
 *  - Harbor:       {"type": "PUSH_ARTIFACT", "event_data": {"resources": [{"resource_url":
 *                  REF}, ...]}}  (other types are ignored)
 *  - docker-registry notifications (its config's notifications.endpoints): {"events": [{"action":
 *                  "push", "target": {"mediaType", "digest", "repository", "tag"}, "request":
 *                  {"host"}}, ...]}: only manifest (or index) pushes by tag count, the source is
 *                  request.host/repository:tag.
 * Every field is type-checked; references must parse as image references (host, repository,
 * tag grammar); Harbor resources and registry events without a tag (pushes by digest) are
 * ignored. Untrusted bytes: this parser has a
 * libFuzzer target (tests/fuzz/convertd/fuzz_convertd_request.c).
 *
 * Threads: pure functions, any thread. Errors: -EBADMSG (not JSON, wrong shape or type, bad
 * reference; err says which field), -E2BIG (more than CVD_REQUEST_MAX_ITEMS sources or
 * CVD_REQUEST_MAX_EVENTS events), -ENOMEM. */
#ifndef CONVERTD_REQUEST_H
#define CONVERTD_REQUEST_H

#include <stddef.h>

#include "cf/error.h"

#define CVD_REQUEST_MAX_ITEMS  64   /* sources in one request */
#define CVD_REQUEST_MAX_EVENTS 1024 /* registry events in one envelope (it batches) */
#define CVD_REF_MAX            512  /* bytes of a reference, NUL included */

enum cvd_request_kind { CVD_REQ_API = 1, CVD_REQ_HARBOR, CVD_REQ_REGISTRY };

typedef struct cvd_request_item {
    char source[CVD_REF_MAX];
    char target[CVD_REF_MAX]; /* "" = derived from the source by the rules */
} cvd_request_item;

typedef struct cvd_request {
    enum cvd_request_kind kind;
    size_t n_items;
    cvd_request_item *items; /* owned; cvd_request_free */
    size_t ignored;          /* events/resources that trigger nothing (pulls, blob pushes...) */
} cvd_request;

/* Parses `len` bytes at body into *out (zeroed first). On error *out holds nothing. */
int cvd_request_parse(const void *body, size_t len, cvd_request *out, cf_err *err);
void cvd_request_free(cvd_request *r);

/* The rules (docs/convertd.md): the target of `source` is the same repository (on
 * `target_registry` when not NULL/"", else the source's registry) with tag = the source's tag +
 * `suffix`. Returns 0 with out filled, 1 when the source is itself a target (its tag ends with
 * the suffix: nothing to do), or -EINVAL (source not a tag reference, tag too long with the
 * suffix). */
int cvd_target_for(const char *source, const char *suffix, const char *target_registry, char *out,
                   size_t cap, cf_err *err);

#endif
