/* One streaming interface over SHA-256 (OpenSSL EVP) and BLAKE3 (blake3.c). */
#include "cf/digest.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

int cf_digest_init(cf_digest_ctx *ctx, enum cf_digest_algo algo)
{
    ctx->algo = algo;
    if (algo == CF_DIGEST_BLAKE3) {
        cf_blake3_init(&ctx->u.b3);
        return 0;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md) return -ENOMEM;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return -ENOMEM;
    }
    ctx->u.sha = md;
    return 0;
}

void cf_digest_update(cf_digest_ctx *ctx, const void *data, size_t len)
{
    if (ctx->algo == CF_DIGEST_BLAKE3)
        cf_blake3_update(&ctx->u.b3, data, len);
    else
        EVP_DigestUpdate((EVP_MD_CTX *)ctx->u.sha, data, len);
}

void cf_digest_final(cf_digest_ctx *ctx, uint8_t out[CF_DIGEST_LEN])
{
    if (ctx->algo == CF_DIGEST_BLAKE3) {
        cf_blake3_final(&ctx->u.b3, out, CF_DIGEST_LEN);
        return;
    }
    unsigned int n = 0;
    EVP_DigestFinal_ex((EVP_MD_CTX *)ctx->u.sha, out, &n);
    EVP_MD_CTX_free((EVP_MD_CTX *)ctx->u.sha);
    ctx->u.sha = NULL;
}

void cf_digest_abort(cf_digest_ctx *ctx)
{
    if (ctx->algo == CF_DIGEST_SHA256 && ctx->u.sha) {
        EVP_MD_CTX_free((EVP_MD_CTX *)ctx->u.sha);
        ctx->u.sha = NULL;
    }
}

int cf_digest(enum cf_digest_algo algo, const void *data, size_t len, uint8_t out[CF_DIGEST_LEN])
{
    if (algo == CF_DIGEST_BLAKE3) {
        cf_blake3(data, len, out);
        return 0;
    }
    return cf_sha256(data, len, out);
}

int cf_sha256(const void *data, size_t len, uint8_t out[CF_DIGEST_LEN])
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
}

const char *cf_digest_algo_name(enum cf_digest_algo algo)
{
    return algo == CF_DIGEST_BLAKE3 ? "blake3" : "sha256";
}

int cf_digest_algo_parse(const char *name, enum cf_digest_algo *out)
{
    if (strcmp(name, "blake3") == 0)
        *out = CF_DIGEST_BLAKE3;
    else if (strcmp(name, "sha256") == 0)
        *out = CF_DIGEST_SHA256;
    else
        return -EINVAL;
    return 0;
}
