/* Parsers of untrusted registry-auth bytes, exposed for unit tests and fuzzers:
 * the WWW-Authenticate challenge, the token server's JSON answer, and docker config.json.
 * All are pure functions (thread-safe, no global state), bounds-checked, with size caps. */
#ifndef PROTO_REGISTRY_AUTH_H
#define PROTO_REGISTRY_AUTH_H

#include <stddef.h>

#include "cf/error.h"

#ifdef __cplusplus
extern "C" {
#endif

enum proto_auth_scheme { PROTO_AUTH_NONE = 0, PROTO_AUTH_BASIC, PROTO_AUTH_BEARER };

typedef struct proto_auth_challenge {
    enum proto_auth_scheme scheme;
    char realm[1024];
    char service[256];
    char scope[1024]; /* may be empty */
    char error[64];   /* e.g. "invalid_token", "insufficient_scope"; may be empty */
} proto_auth_challenge;

/* Parses one WWW-Authenticate header value (`len` bytes, need not be NUL-terminated), e.g.
 * `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"`.
 * When the value lists several challenges, Bearer wins over Basic. Scheme names and parameter
 * names are case-insensitive; values may be quoted (with \-escapes) or bare tokens.
 * Returns 0, -ENOTSUP (only unknown schemes), -EBADMSG (malformed, value too long, Bearer
 * without realm, realm not http(s)://). */
int proto_auth_parse_challenge(const char *value, size_t len, proto_auth_challenge *out,
                               cf_err *err);

#define PROTO_TOKEN_MAX           16384 /* longest accepted token */
#define PROTO_TOKEN_DEFAULT_TTL_S 60    /* when expires_in is absent or < 1 */

/* Parses the token server's JSON answer: "token" or else "access_token" (string), optional
 * "expires_in" (seconds). *token is malloc'd (caller frees). Returns 0 or -EBADMSG/-ENOMEM. */
int proto_auth_parse_token(const char *json, size_t len, char **token, long *expires_in_s,
                           cf_err *err);

/* Looks up credentials for `host` ("host[:port]") in a docker config.json document:
 * auths.<key>.auth (base64 of "user:pass") or auths.<key>.username/password, where <key> may
 * carry a scheme and a path ("https://index.docker.io/v1/" matches docker.io and
 * registry-1.docker.io). *user and *pass are malloc'd (caller frees).
 * Returns 0, -ENOENT (no entry for host; credsStore/credHelpers are not supported and log a
 * warning), -EBADMSG (not JSON, bad base64, no ':' in auth), -ENOMEM. */
int proto_docker_config_parse(const char *json, size_t len, const char *host, char **user,
                              char **pass, cf_err *err);

/* Loads `path` (NULL = $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json) and calls
 * proto_docker_config_parse. Returns 0 (found), 1 (no entry for host, or no file at the default
 * location), or a negative errno with err set: -ENOENT (explicit path missing), -EBADMSG,
 * -EFBIG (over 1 MiB), -ENOMEM. */
int proto_docker_config_load(const char *path, const char *host, char **user, char **pass,
                             cf_err *err);

#ifdef __cplusplus
}
#endif

#endif
