/* Test-only certificates made with the OpenSSL API (no CLI, no files in the repo): a CA and node
 * certificates signed by it, written as PEM into a directory. EC P-256, valid for one day. */
#ifndef TLS_TEST_CERTS_H
#define TLS_TEST_CERTS_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct test_ca {
    EVP_PKEY *key;
    X509 *cert;
} test_ca;

static void tc_write_pem(const char *path, EVP_PKEY *key, X509 *cert)
{
    FILE *f = fopen(path, "w");
    if (!f) abort();
    if (key && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1) abort();
    if (cert && PEM_write_X509(f, cert) != 1) abort();
    fclose(f);
}

static void tc_add_ext(X509 *issuer, X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!e || X509_add_ext(x, e, -1) != 1) abort();
    X509_EXTENSION_free(e);
}

/* cn: subject CN; san: "DNS:a,DNS:b" or NULL; ca: issuer (NULL = self-signed CA). */
static X509 *tc_cert(EVP_PKEY *key, const char *cn, const char *san, const test_ca *ca)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, ca ? X509_get_subject_name(ca->cert) : n);
    if (!ca) {
        tc_add_ext(NULL, x, NID_basic_constraints, "critical,CA:TRUE");
        tc_add_ext(NULL, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        tc_add_ext(ca->cert, x, NID_basic_constraints, "CA:FALSE");
        tc_add_ext(ca->cert, x, NID_ext_key_usage, "serverAuth,clientAuth");
        if (san) tc_add_ext(ca->cert, x, NID_subject_alt_name, san);
    }
    if (X509_sign(x, ca ? ca->key : key, EVP_sha256()) == 0) abort();
    return x;
}

/* A CA; its certificate is written to dir/<name>.crt. */
static void tc_ca_new(test_ca *ca, const char *dir, const char *name)
{
    ca->key = EVP_EC_gen("P-256");
    ca->cert = tc_cert(ca->key, name, NULL, NULL);
    char p[512];
    snprintf(p, sizeof(p), "%s/%s.crt", dir, name);
    tc_write_pem(p, NULL, ca->cert);
}

static void tc_ca_free(test_ca *ca)
{
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
}

/* A node certificate signed by ca: dir/<file>.crt and dir/<file>.key. */
static void tc_node(const test_ca *ca, const char *dir, const char *file, const char *cn,
                    const char *san)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = tc_cert(k, cn, san, ca);
    char p[512];
    snprintf(p, sizeof(p), "%s/%s.crt", dir, file);
    tc_write_pem(p, NULL, x);
    snprintf(p, sizeof(p), "%s/%s.key", dir, file);
    tc_write_pem(p, k, NULL);
    X509_free(x);
    EVP_PKEY_free(k);
}

#endif
