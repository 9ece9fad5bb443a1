/* Content digests: SHA-256 (OpenSSL) and BLAKE3-256 behind one streaming interface, as Nydus
 * chunk digests may be either. Contexts are plain values: no allocation, no cleanup needed for
 * BLAKE3; SHA-256 wraps an OpenSSL context that cf_digest_final() releases. */
#ifndef CF_DIGEST_H
#define CF_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "cf/blake3.h"

#define CF_DIGEST_LEN 32

enum cf_digest_algo { CF_DIGEST_BLAKE3 = 0, CF_DIGEST_SHA256 = 1 };

typedef struct cf_digest_ctx {
    enum cf_digest_algo algo;
    union {
        cf_blake3_hasher b3;
        void *sha; /* EVP_MD_CTX * */
    } u;
} cf_digest_ctx;

/* Returns 0 or -ENOMEM (SHA-256 context allocation). */
int cf_digest_init(cf_digest_ctx *ctx, enum cf_digest_algo algo);
void cf_digest_update(cf_digest_ctx *ctx, const void *data, size_t len);
/* Writes 32 bytes and releases the context (also call cf_digest_abort on error paths). */
void cf_digest_final(cf_digest_ctx *ctx, uint8_t out[CF_DIGEST_LEN]);
void cf_digest_abort(cf_digest_ctx *ctx);

/* One-shot helpers. Return 0 or -ENOMEM. */
int cf_digest(enum cf_digest_algo algo, const void *data, size_t len, uint8_t out[CF_DIGEST_LEN]);
int cf_sha256(const void *data, size_t len, uint8_t out[CF_DIGEST_LEN]);

const char *cf_digest_algo_name(enum cf_digest_algo algo);            /* "blake3" / "sha256" */
int cf_digest_algo_parse(const char *name, enum cf_digest_algo *out); /* 0 or -EINVAL */

#endif
