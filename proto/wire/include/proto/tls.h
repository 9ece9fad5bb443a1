/* proto_tls: the mutual-TLS context of the mesh (peer <-> peer, peer <-> scheduler).
 *
 * One context holds this node's certificate and key and the CA that signs every mesh node. It
 * serves both roles: a proto_conn accepted with it is a TLS server that REQUIRES a client
 * certificate signed by the CA; a proto_conn connected with it is a TLS client that verifies the
 * server's certificate against the same CA. TLS 1.2 minimum, 1.3 preferred; no session tickets.
 *
 * Identity: a node's identity is its certificate's first DNS subjectAltName, else its subject
 * CN (proto_tls_identity for our own, proto_conn_peer_identity for the other side). The
 * scheduler binds host ids to it.
 *
 * Ownership: proto_tls_free may be called while conns made with it are still open (each conn
 * holds its own reference to the OpenSSL context). Threads: create and free on one thread; a
 * context may be used by conns of that thread's loop. Errors: 0 or a negative errno with a
 * message in err naming the file or setting at fault. */
#ifndef PROTO_TLS_H
#define PROTO_TLS_H

#include <stddef.h>

#include "cf/config.h"
#include "cf/error.h"

typedef struct proto_tls proto_tls;

/* Loads cert (PEM, may hold the chain), key (PEM, unencrypted) and ca (PEM bundle). All three are
 * required: -EINVAL naming the missing one, -ENOENT/-EACCES for a file that cannot be read,
 * -EBADMSG for one OpenSSL cannot parse, -EINVAL when key and cert do not match or the cert has
 * no usable identity. */
int proto_tls_new(const char *cert, const char *key, const char *ca, proto_tls **out, cf_err *err);
void proto_tls_free(proto_tls *t);

/* This node's identity from its certificate (never NULL, valid while t lives). */
const char *proto_tls_identity(const proto_tls *t);

/* Checks the three config values together: 0 when none is set (*on = 0) or all are (*on = 1),
 * else -EINVAL naming what is missing. */
int proto_tls_config_check(const char *cert, const char *key, const char *ca, int *on, cf_err *err);

/* The config keys of mesh TLS (NULL-terminated): tls_cert, tls_key, tls_ca. */
extern const char *const proto_tls_config_keys[];
/* From a daemon's config: *out = NULL when no tls_* key is set (plain TCP), else the loaded
 * context (proto_tls_new's errors; a partial set names what is missing). */
int proto_tls_from_config(const cf_config *c, proto_tls **out, cf_err *err);

/* Internal to proto_conn: the OpenSSL SSL_CTX (void * to keep OpenSSL out of users' headers). */
void *proto_tls_ssl_ctx(const proto_tls *t);
/* Identity of an X509 certificate (void * = X509 *) into out: first DNS SAN, else CN. Returns 0,
 * -ENOENT (neither present) or -EBADMSG (empty, too long for out, or with bytes outside
 * printable ASCII). */
int proto_tls_cert_identity(const void *x509, char *out, size_t len);

#endif
