/* proto_tls: loading the mesh certificate, key and CA into one SSL_CTX (contract in tls.h). */
#include "proto/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/msg.h"

struct proto_tls {
    SSL_CTX *ctx;
    char identity[PROTO_MAX_ID_LEN + 1];
};

/* The last OpenSSL error of this thread as text (queue cleared), or `def`. */
static const char *ssl_err_text(char *buf, size_t len, const char *def)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0) last = e;
    if (!last) return def;
    const char *r = ERR_reason_error_string(last);
    if (r)
        snprintf(buf, len, "%s", r);
    else
        ERR_error_string_n(last, buf, len);
    return buf;
}

static int check_readable(const char *key, const char *path, cf_err *err)
{
    if (access(path, R_OK) == 0) return 0;
    int e = errno;
    return cf_err_set(err, -e, "%s %s: cannot read: %s", key, path, strerror(e));
}

int proto_tls_config_check(const char *cert, const char *key, const char *ca, int *on, cf_err *err)
{
    const char *names[3] = {"tls_cert", "tls_key", "tls_ca"};
    const char *vals[3] = {cert, key, ca};
    int set = 0;
    for (int i = 0; i < 3; i++) set += vals[i] && *vals[i];
    *on = set == 3;
    if (set == 0 || set == 3) return 0;
    char missing[64] = "";
    for (int i = 0; i < 3; i++)
        if (!vals[i] || !*vals[i])
            snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), "%s%s",
                     *missing ? " and " : "", names[i]);
    return cf_err_set(err, -EINVAL,
                      "TLS needs tls_cert, tls_key and tls_ca together: %s %s missing", missing,
                      set == 2 ? "is" : "are");
}

static int printable(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] <= 0x20 || p[i] >= 0x7f) return 0;
    return 1;
}

static int copy_id(const unsigned char *p, int n, char *out, size_t len)
{
    if (n <= 0 || (size_t)n >= len || !printable(p, (size_t)n)) return -EBADMSG;
    memcpy(out, p, (size_t)n);
    out[n] = 0;
    return 0;
}

int proto_tls_cert_identity(const void *x509, char *out, size_t len)
{
    X509 *x = (X509 *)x509;
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (names) {
        int r = -ENOENT;
        for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
            if (g->type != GEN_DNS) continue;
            r = copy_id(ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName), out,
                        len);
            break;
        }
        GENERAL_NAMES_free(names);
        if (r != -ENOENT) return r;
    }
    const X509_NAME *subj = X509_get_subject_name(x);
    int idx = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
    if (idx < 0) return -ENOENT;
    const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    return copy_id(ASN1_STRING_get0_data(cn), ASN1_STRING_length(cn), out, len);
}

int proto_tls_new(const char *cert, const char *key, const char *ca, proto_tls **out, cf_err *err)
{
    int on;
    int rc = proto_tls_config_check(cert, key, ca, &on, err);
    if (rc) return rc;
    if (!on) return cf_err_set(err, -EINVAL, "TLS needs tls_cert, tls_key and tls_ca");
    if ((rc = check_readable("tls_cert", cert, err)) ||
        (rc = check_readable("tls_key", key, err)) || (rc = check_readable("tls_ca", ca, err)))
        return rc;
    proto_tls *t = calloc(1, sizeof(*t));
    if (!t) return cf_err_set(err, -ENOMEM, "out of memory");
    char eb[256];
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_method());
    if (!t->ctx) {
        free(t);
        return cf_err_set(err, -ENOMEM, "TLS context: %s",
                          ssl_err_text(eb, sizeof(eb), "out of memory"));
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    /* forward-secret AEAD suites only for 1.2; 1.3 suites are all AEAD */
    SSL_CTX_set_cipher_list(t->ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
    /* AES-128-GCM first: as strong as needed here and faster than the default AES-256 */
    SSL_CTX_set_ciphersuites(t->ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                     "TLS_CHACHA20_POLY1305_SHA256");
    SSL_CTX_set_num_tickets(t->ctx, 0); /* connections are long-lived: no resumption */
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
    /* server: a client certificate is required; client: the server's is verified */
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if (SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1) {
        rc = cf_err_set(err, -EBADMSG, "tls_cert %s: not a PEM certificate (%s)", cert,
                        ssl_err_text(eb, sizeof(eb), "unknown error"));
    } else if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            rc = cf_err_set(err, -EINVAL, "tls_key %s does not belong to tls_cert %s", key, cert);
        else
            rc = cf_err_set(err, -EBADMSG, "tls_key %s: not an unencrypted PEM private key (%s)",
                            key, ssl_err_text(eb, sizeof(eb), "unknown error"));
    } else if (SSL_CTX_check_private_key(t->ctx) != 1) {
        rc = cf_err_set(err, -EINVAL, "tls_key %s does not belong to tls_cert %s (%s)", key, cert,
                        ssl_err_text(eb, sizeof(eb), "mismatch"));
    } else if (SSL_CTX_load_verify_locations(t->ctx, ca, NULL) != 1) {
        rc = cf_err_set(err, -EBADMSG, "tls_ca %s: no PEM CA certificate (%s)", ca,
                        ssl_err_text(eb, sizeof(eb), "unknown error"));
    } else {
        X509 *own = SSL_CTX_get0_certificate(t->ctx);
        int ir = own ? proto_tls_cert_identity(own, t->identity, sizeof(t->identity)) : -ENOENT;
        if (ir)
            rc = cf_err_set(err, -EINVAL,
                            "tls_cert %s: %s (a DNS subjectAltName or CN of 1..%d printable "
                            "characters is the node's identity)",
                            cert, ir == -ENOENT ? "no DNS subjectAltName nor CN" : "bad identity",
                            PROTO_MAX_ID_LEN);
    }
    ERR_clear_error();
    if (rc) {
        proto_tls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

const char *const proto_tls_config_keys[] = {"tls_cert", "tls_key", "tls_ca", NULL};

int proto_tls_from_config(const cf_config *c, proto_tls **out, cf_err *err)
{
    const char *cert = cf_config_get(c, "tls_cert"), *key = cf_config_get(c, "tls_key"),
               *ca = cf_config_get(c, "tls_ca");
    int on;
    *out = NULL;
    int rc = proto_tls_config_check(cert, key, ca, &on, err);
    if (rc || !on) return rc;
    return proto_tls_new(cert, key, ca, out, err);
}

void proto_tls_free(proto_tls *t)
{
    if (!t) return;
    SSL_CTX_free(t->ctx);
    free(t);
}

const char *proto_tls_identity(const proto_tls *t)
{
    return t->identity;
}

void *proto_tls_ssl_ctx(const proto_tls *t)
{
    return t->ctx;
}
