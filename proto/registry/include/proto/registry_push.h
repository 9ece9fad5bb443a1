/* OCI distribution push: blob existence, cross-repository mount, blob uploads (monolithic from
 * a file, chunked from a stream whose digest is known only at the end) and manifest PUT.
 *
 * Same model as registry_client.h: calls on one shared `proto_registry`, blocking, thread-safe,
 * 0 or a negative errno with `err` naming the registry, the repository and what failed. Push
 * calls ask the token server for "repository:REPO:pull,push" (plus "repository:FROM:pull" for
 * a mount); a token without push gives -EACCES ("denied"). Uploads never hold a blob whole in
 * memory: a file is sent with pread, a stream is cut into chunks of at most `chunk_size` bytes
 * (one chunk buffered at a time). Retries (5xx, 429, transport errors) resend the current
 * request's body from its start; a failed upload leaves nothing published (the registry drops
 * the unfinished upload session). Extra errors beyond registry_client.h:
 *   -EBADMSG  the registry refused the digest (DIGEST_INVALID) or a manifest (MANIFEST_INVALID,
 *             MANIFEST_BLOB_UNKNOWN: a blob it names is missing)
 *   -EPROTO   an upload answer without a Location header */
#ifndef PROTO_REGISTRY_PUSH_H
#define PROTO_REGISTRY_PUSH_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"
#include "proto/registry_client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* HEAD /v2/<repo>/blobs/<digest> with push rights (so the answer is the one the pusher sees).
 * Returns 1 (present; *size set when size != NULL), 0 (absent) or a negative errno. */
int proto_registry_blob_exists(proto_registry *r, const char *repo, const char *digest,
                               uint64_t *size, cf_err *err);

/* POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from_repo>. Returns 1 when the registry
 * mounted the blob (201), 0 when it could not (it then opened an upload session, which is
 * cancelled here: the caller uploads as usual), or a negative errno. */
int proto_registry_blob_mount(proto_registry *r, const char *repo, const char *digest,
                              const char *from_repo, cf_err *err);

/* Monolithic upload of `size` bytes of `fd` from `offset` (pread; the fd's position is left
 * alone): POST, then PUT ?digest=. `digest` must be the bytes' sha256 ("sha256:<hex>"); the
 * registry checks it (-EBADMSG when it differs). Skips nothing: call blob_exists first. */
int proto_registry_blob_push_fd(proto_registry *r, const char *repo, int fd, uint64_t offset,
                                uint64_t size, const char *digest, cf_err *err);

/* Fills buf with up to cap bytes; *got = 0 means end of stream. 0 or a negative errno (which
 * aborts the upload and is returned). */
typedef int (*proto_registry_read_fn)(void *ctx, void *buf, size_t cap, size_t *got);

/* Chunked upload of a stream: POST, PATCH per chunk of at most chunk_size bytes (0 = 4 MiB;
 * at most 64 MiB), PUT ?digest= with the sha256 computed on the way. Writes the digest into
 * digest_out (72 bytes) and the byte count into *size_out (may be NULL). */
int proto_registry_blob_push_stream(proto_registry *r, const char *repo, proto_registry_read_fn fn,
                                    void *ctx, size_t chunk_size, char digest_out[72],
                                    uint64_t *size_out, cf_err *err);

/* PUT /v2/<repo>/manifests/<reference> (a tag, or the body's own digest) with Content-Type
 * media_type. digest_out (72 bytes, may be NULL) gets the body's sha256. */
int proto_registry_manifest_put(proto_registry *r, const char *repo, const char *reference,
                                const char *media_type, const void *body, size_t len,
                                char digest_out[72], cf_err *err);

#ifdef __cplusplus
}
#endif

#endif
