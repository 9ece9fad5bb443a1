/* Parsers for the registry auth exchange: the WWW-Authenticate challenge (RFC 7235 syntax,
 * as sent by docker distribution and Docker Hub) and the token server's JSON answer.
 * Every copy is bounds-checked; input need not be NUL-terminated. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "proto/registry_auth.h"

#define CHALLENGE_MAX  8192 /* longer header values are refused */
#define TOKEN_JSON_MAX (1u << 20)

struct cursor {
    const char *p, *end;
};

static int is_tchar(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
}

/* Reads a token; returns its length (0 when none). */
static size_t read_token(struct cursor *c, const char **start)
{
    *start = c->p;
    while (c->p < c->end && is_tchar((unsigned char)*c->p)) c->p++;
    return (size_t)(c->p - *start);
}

/* Reads a quoted-string or a bare value into out (NUL-terminated). Returns 0, -EBADMSG
 * (unterminated quote, control character) or -E2BIG (does not fit). */
static int read_value(struct cursor *c, char *out, size_t cap)
{
    size_t n = 0;
    if (c->p < c->end && *c->p == '"') {
        c->p++;
        for (;;) {
            if (c->p >= c->end) return -EBADMSG;
            char ch = *c->p++;
            if (ch == '"') break;
            if (ch == '\\') {
                if (c->p >= c->end) return -EBADMSG;
                ch = *c->p++;
            }
            if ((unsigned char)ch < 0x20 || ch == 0x7f) return -EBADMSG;
            if (n + 1 >= cap) return -E2BIG;
            out[n++] = ch;
        }
    } else {
        /* Bare value: lenient (realms are sometimes unquoted URLs), up to ',' or blank. */
        while (c->p < c->end && *c->p != ',' && *c->p != ' ' && *c->p != '\t') {
            char ch = *c->p++;
            if ((unsigned char)ch < 0x20 || ch == 0x7f || ch == '"') return -EBADMSG;
            if (n + 1 >= cap) return -E2BIG;
            out[n++] = ch;
        }
    }
    out[n] = '\0';
    return 0;
}

int proto_auth_parse_challenge(const char *value, size_t len, proto_auth_challenge *out,
                               cf_err *err)
{
    proto_auth_challenge bearer, basic;
    int have_bearer = 0, have_basic = 0;
    memset(out, 0, sizeof(*out));
    if (!value || len == 0) return cf_err_set(err, -EBADMSG, "empty WWW-Authenticate header");
    if (len > CHALLENGE_MAX)
        return cf_err_set(err, -EBADMSG, "WWW-Authenticate header too long (%zu bytes)", len);
    memset(&bearer, 0, sizeof(bearer));
    memset(&basic, 0, sizeof(basic));
    struct cursor c = {value, value + len};
    for (;;) {
        while (c.p < c.end && (*c.p == ' ' || *c.p == '\t' || *c.p == ',')) c.p++;
        if (c.p >= c.end) break;
        const char *s;
        size_t sl = read_token(&c, &s);
        if (sl == 0)
            return cf_err_set(err, -EBADMSG, "WWW-Authenticate: unexpected character '%c'",
                              isprint((unsigned char)*c.p) ? *c.p : '?');
        proto_auth_challenge *cur = NULL;
        if (sl == 6 && strncasecmp(s, "bearer", 6) == 0) {
            cur = &bearer;
            have_bearer = 1;
            cur->scheme = PROTO_AUTH_BEARER;
        } else if (sl == 5 && strncasecmp(s, "basic", 5) == 0) {
            cur = &basic;
            have_basic = 1;
            cur->scheme = PROTO_AUTH_BASIC;
        }
        /* auth-params of this challenge, until a token not followed by '=' (next scheme). */
        for (;;) {
            skip_ws(&c);
            if (c.p >= c.end) break;
            const char *save = c.p, *name;
            size_t nl = read_token(&c, &name);
            if (nl == 0) {
                if (*c.p == ',') {
                    c.p++;
                    continue;
                }
                return cf_err_set(err, -EBADMSG, "WWW-Authenticate: malformed parameter");
            }
            skip_ws(&c);
            if (c.p >= c.end || *c.p != '=') {
                /* token68 ("Basic dXNlcg==") would end in '='; a bare token starts the next
                 * challenge. */
                c.p = save;
                break;
            }
            c.p++;
            skip_ws(&c);
            char tmp[1024], *dst = tmp;
            size_t cap = sizeof(tmp);
            if (cur && nl == 5 && strncasecmp(name, "realm", 5) == 0) {
                dst = cur->realm;
                cap = sizeof(cur->realm);
            } else if (cur && nl == 7 && strncasecmp(name, "service", 7) == 0) {
                dst = cur->service;
                cap = sizeof(cur->service);
            } else if (cur && nl == 5 && strncasecmp(name, "scope", 5) == 0) {
                dst = cur->scope;
                cap = sizeof(cur->scope);
            } else if (cur && nl == 5 && strncasecmp(name, "error", 5) == 0) {
                dst = cur->error;
                cap = sizeof(cur->error);
            }
            int rc = read_value(&c, dst, cap);
            if (rc == -E2BIG)
                return cf_err_set(err, -EBADMSG, "WWW-Authenticate: parameter %.*s too long",
                                  (int)(nl > 32 ? 32 : nl), name);
            if (rc < 0)
                return cf_err_set(err, -EBADMSG, "WWW-Authenticate: malformed value of %.*s",
                                  (int)(nl > 32 ? 32 : nl), name);
            skip_ws(&c);
            if (c.p < c.end && *c.p == ',') c.p++;
        }
    }
    if (have_bearer) {
        if (!bearer.realm[0])
            return cf_err_set(err, -EBADMSG, "WWW-Authenticate: Bearer challenge without realm");
        if (strncasecmp(bearer.realm, "http://", 7) != 0 &&
            strncasecmp(bearer.realm, "https://", 8) != 0)
            return cf_err_set(err, -EBADMSG,
                              "WWW-Authenticate: Bearer realm \"%.200s\" is not an http(s) URL",
                              bearer.realm);
        *out = bearer;
        return 0;
    }
    if (have_basic) {
        *out = basic;
        return 0;
    }
    return cf_err_set(err, -ENOTSUP, "WWW-Authenticate: no Basic or Bearer challenge");
}

static int token_chars_ok(const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f) return 0;
    return 1;
}

int proto_auth_parse_token(const char *json, size_t len, char **token, long *expires_in_s,
                           cf_err *err)
{
    *token = NULL;
    *expires_in_s = PROTO_TOKEN_DEFAULT_TTL_S;
    if (len > TOKEN_JSON_MAX)
        return cf_err_set(err, -EBADMSG, "token answer too large (%zu bytes)", len);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return cf_err_set(err, -EBADMSG, "token answer is not JSON: %s", jerr.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = cf_err_set(err, -EBADMSG, "token answer is not a JSON object");
        goto out;
    }
    json_t *t = json_object_get(root, "token");
    if (!json_is_string(t) || json_string_length(t) == 0) t = json_object_get(root, "access_token");
    if (!json_is_string(t) || json_string_length(t) == 0) {
        rc = cf_err_set(err, -EBADMSG, "token answer has no \"token\" or \"access_token\" string");
        goto out;
    }
    size_t tl = json_string_length(t);
    if (tl > PROTO_TOKEN_MAX) {
        rc = cf_err_set(err, -EBADMSG, "token too long (%zu bytes)", tl);
        goto out;
    }
    /* It goes into an HTTP header: refuse anything that could split or bend it. */
    if (!token_chars_ok(json_string_value(t), tl)) {
        rc = cf_err_set(err, -EBADMSG, "token contains blanks or control characters");
        goto out;
    }
    json_t *e = json_object_get(root, "expires_in");
    if (json_is_integer(e)) {
        json_int_t v = json_integer_value(e);
        if (v >= 1) *expires_in_s = v > 86400 * 365 ? 86400 * 365 : (long)v;
    }
    *token = strndup(json_string_value(t), tl);
    if (!*token) rc = cf_err_set(err, -ENOMEM, "out of memory");
out:
    json_decref(root);
    return rc;
}
