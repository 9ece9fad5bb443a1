/* The registry mirror's request parsing (mirror_request.h). */
#include "mirror_request.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cf/base64.h"
#include "proto/http_server.h"
#include "proto/registry_client.h"

static int fail(const char **why, const char *msg, int status)
{
    *why = msg;
    return status;
}

/* host[:port] or [v6]:port, letters, digits, '.', '-', ':', '[', ']' only. */
static int host_ok(const char *h, size_t n)
{
    if (n == 0 || n >= MIRROR_HOST_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (!isalnum(ch) && ch != '.' && ch != '-' && ch != ':' && ch != '[' && ch != ']') return 0;
    }
    return 1;
}

static int has_prefix_ci(const char *s, const char *p)
{
    return strncasecmp(s, p, strlen(p)) == 0;
}

int mirror_parse_target(const char *target, struct mirror_target *t, const char **why)
{
    memset(t, 0, sizeof(*t));
    if (!target) return fail(why, "no request target", 400);
    const char *p = target;
    size_t skip = has_prefix_ci(p, "http://") ? 7 : has_prefix_ci(p, "https://") ? 8 : 0;
    if (skip) { /* absolute form (a client using us as its proxy) */
        p += skip;
        size_t n = strcspn(p, "/?#");
        if (!host_ok(p, n)) return fail(why, "bad host in the request target", 400);
        memcpy(t->abs_host, p, n);
        t->abs_host[n] = 0;
        p += n;
    }
    if (*p != '/') return fail(why, "the request target must be a path", 400);
    size_t tlen = strlen(p);
    if (tlen >= sizeof(t->path)) return fail(why, "request target too long", 400);
    memcpy(t->path, p, tlen + 1);
    const char *q = strchr(p, '?');
    size_t plen = q ? (size_t)(q - p) : tlen;
    if (memchr(p, '#', tlen)) return fail(why, "fragment in the request target", 400);
    /* the registry API has no use for escapes, dot segments or empty segments: refuse them
     * rather than decide what an upstream would make of them */
    for (size_t i = 0; i < plen; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '%' || ch == '\\' || ch <= ' ' || ch >= 0x7f)
            return fail(why, "unexpected character in the path", 400);
        if (ch == '/' && i + 1 < plen && p[i + 1] == '/')
            return fail(why, "empty path segment", 400);
        if (ch == '/' && i + 1 < plen && p[i + 1] == '.' &&
            (i + 2 == plen || p[i + 2] == '/' ||
             (p[i + 2] == '.' && (i + 3 == plen || p[i + 3] == '/'))))
            return fail(why, "dot segment in the path", 400);
    }
    if (q) {
        char ns[MIRROR_HOST_MAX];
        int rc = proto_http_query_get(q + 1, "ns", ns, sizeof(ns));
        if (rc >= 0) {
            if (!host_ok(ns, (size_t)rc)) return fail(why, "bad ns parameter", 400);
            memcpy(t->ns, ns, (size_t)rc + 1);
        } else if (rc != -ENOENT) {
            return fail(why, "bad ns parameter", 400);
        }
    }
    if ((plen == 3 && memcmp(p, "/v2", 3) == 0) || (plen == 4 && memcmp(p, "/v2/", 4) == 0)) {
        t->kind = MIRROR_V2_ROOT;
        return 0;
    }
    if (plen < 4 || memcmp(p, "/v2/", 4) != 0) return fail(why, "not a registry API path", 404);
    t->kind = MIRROR_OTHER;
    const char *rest = p + 4, *end = p + plen;
    /* /v2/<name>/blobs/<digest> or /v2/<name>/manifests/<ref>: the last such component */
    static const struct {
        const char *sep;
        enum mirror_kind kind;
    } kinds[] = {{"/blobs/", MIRROR_BLOB}, {"/manifests/", MIRROR_MANIFEST}};
    for (size_t k = 0; k < 2; k++) {
        size_t sl = strlen(kinds[k].sep);
        const char *hit = NULL;
        for (const char *s = rest; s + sl <= end; s++)
            if (memcmp(s, kinds[k].sep, sl) == 0) hit = s;
        if (!hit) continue;
        const char *ref = hit + sl;
        size_t nl = (size_t)(hit - rest), rl = (size_t)(end - ref);
        if (memchr(ref, '/', rl) || rl == 0) continue; /* e.g. blobs/uploads/<id> */
        if (nl == 0 || nl >= sizeof(t->name) || rl >= sizeof(t->ref))
            return fail(why, "repository name or reference too long", 400);
        memcpy(t->name, rest, nl);
        t->name[nl] = 0;
        memcpy(t->ref, ref, rl);
        t->ref[rl] = 0;
        if (proto_registry_check_repo(t->name)) return fail(why, "invalid repository name", 400);
        if (kinds[k].kind == MIRROR_BLOB) {
            if (proto_registry_check_digest(t->ref))
                return fail(why, "invalid or unsupported digest (sha256 only)", 400);
        } else if (strchr(t->ref, ':') ? proto_registry_check_digest(t->ref) != 0
                                       : proto_registry_check_tag(t->ref) != 0) {
            return fail(why, "invalid manifest reference", 400);
        }
        t->kind = kinds[k].kind;
        return 0;
    }
    return 0;
}

/* Decimal up to 2^63 - 1; returns the characters used, 0 on none or overflow. */
static size_t parse_u63(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (i >= 19) return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0 || v > INT64_MAX) return 0;
    *out = v;
    return i;
}

int mirror_parse_range(const char *hdr, uint64_t *first, uint64_t *last, const char **why)
{
    if (!hdr) return 0;
    while (*hdr == ' ' || *hdr == '\t') hdr++;
    if (!has_prefix_ci(hdr, "bytes=")) return fail(why, "only byte ranges are supported", 400);
    const char *s = hdr + 6;
    while (*s == ' ' || *s == '\t') s++;
    if (strchr(s, ',')) return fail(why, "multiple ranges are not supported", 400);
    if (*s == '-') {
        uint64_t n;
        if (!parse_u63(s + 1, &n)) return fail(why, "malformed range", 400);
        return fail(why, "suffix ranges are not supported", 416);
    }
    uint64_t a, b = UINT64_MAX;
    size_t n = parse_u63(s, &a);
    if (!n) {
        if (*s >= '0' && *s <= '9') return fail(why, "range offset too large", 416);
        return fail(why, "malformed range", 400);
    }
    s += n;
    if (*s++ != '-') return fail(why, "malformed range", 400);
    if (*s >= '0' && *s <= '9') {
        n = parse_u63(s, &b);
        if (!n) return fail(why, "range end too large", 416);
        s += n;
    }
    while (*s == ' ' || *s == '\t') s++;
    if (*s) return fail(why, "malformed range", 400);
    if (b < a) return fail(why, "range ends before it starts", 416);
    *first = a;
    *last = b;
    return 1;
}

static int same_host(const char *a, size_t an, const char *b, size_t bn)
{
    if (an == bn && strncasecmp(a, b, an) == 0) return 1;
    static const char hub[] = "docker.io", api[] = "registry-1.docker.io";
    size_t hl = sizeof(hub) - 1, al = sizeof(api) - 1;
    return ((an == hl && strncasecmp(a, hub, hl) == 0) ||
            (an == al && strncasecmp(a, api, al) == 0)) &&
           ((bn == hl && strncasecmp(b, hub, hl) == 0) ||
            (bn == al && strncasecmp(b, api, al) == 0));
}

int mirror_pick_upstream(const struct mirror_target *t, const char *header, const char *def,
                         const char *allow, char *out, size_t out_size, const char **why)
{
    const char *want = t->abs_host[0]        ? t->abs_host
                       : t->ns[0]            ? t->ns
                       : header && header[0] ? header
                                             : def;
    if (!want || !want[0])
        return fail(why, "no upstream registry given (?ns= or X-Chunkfly-Upstream)", 403);
    size_t wl = strlen(want);
    if (!host_ok(want, wl)) return fail(why, "bad upstream registry name", 400);
    for (const char *s = allow ? allow : ""; *s;) {
        s += strspn(s, ", \t");
        size_t n = strcspn(s, ", \t");
        if (!n) break;
        const char *e = s, *h = s;
        size_t scheme = has_prefix_ci(h, "http://") ? 7 : has_prefix_ci(h, "https://") ? 8 : 0;
        if (scheme > n) scheme = 0;
        h += scheme;
        size_t hl = n - scheme;
        s += n;
        if (!same_host(want, wl, h, hl)) continue;
        const char *api =
            (wl == 9 && strncasecmp(want, "docker.io", 9) == 0) ? "registry-1.docker.io" : want;
        int w = snprintf(out, out_size, "%.*s%s", (int)scheme, e, api);
        if (w < 0 || (size_t)w >= out_size) return fail(why, "upstream name too long", 400);
        return 0;
    }
    return fail(why, "upstream registry not on this mirror's allow-list", 403);
}

int mirror_basic_creds(const char *authorization, char *out, size_t out_size, const char **why)
{
    if (!authorization) return 0;
    while (*authorization == ' ') authorization++;
    if (!has_prefix_ci(authorization, "basic ")) return 0;
    const char *s = authorization + 6;
    while (*s == ' ') s++;
    size_t n = strcspn(s, " ");
    const char *rest = s + n;
    while (*rest == ' ') rest++;
    if (*rest) return fail(why, "bad base64 in Authorization", 400);
    if (out_size == 0) return fail(why, "credentials too long", 400);
    ssize_t dl = cf_base64_decode(s, n, (uint8_t *)out, out_size - 1);
    if (dl == -ENOSPC) return fail(why, "credentials too long", 400);
    if (dl < 0) return fail(why, "bad base64 in Authorization", 400);
    size_t o = (size_t)dl;
    if (memchr(out, 0, o) || memchr(out, '\n', o) || memchr(out, '\r', o))
        return fail(why, "bad credentials", 400);
    out[o] = 0;
    if (!memchr(out, ':', o)) return fail(why, "basic credentials without ':'", 400);
    return 1;
}

int mirror_upstream_path(const struct mirror_target *t, char *out, size_t out_size)
{
    const char *q = strchr(t->path, '?');
    size_t pl = q ? (size_t)(q - t->path) : strlen(t->path);
    if (pl + 1 > out_size) return -ENOSPC;
    memcpy(out, t->path, pl);
    size_t o = pl;
    int first = 1;
    for (const char *s = q ? q + 1 : NULL; s && *s;) {
        size_t n = strcspn(s, "&");
        if (n && !(n >= 3 && strncmp(s, "ns=", 3) == 0) && !(n == 2 && strncmp(s, "ns", 2) == 0)) {
            if (o + n + 2 > out_size) return -ENOSPC;
            out[o++] = first ? '?' : '&';
            memcpy(out + o, s, n);
            o += n;
            first = 0;
        }
        s += n;
        if (*s == '&') s++;
    }
    out[o] = 0;
    return 0;
}
