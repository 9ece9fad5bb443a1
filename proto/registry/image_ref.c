/* Image references and the name grammar of the OCI distribution spec.
 *   reference  := [host[:port]/]path[:tag][@digest]
 *   path       := component ('/' component)*, component := [a-z0-9]+ (sep [a-z0-9]+)*,
 *                 sep := '.' | '_' | '__' | '-'+
 *   tag        := [A-Za-z0-9_][A-Za-z0-9._-]{0,127}
 * Only sha256 digests are accepted (they are put into URLs, so validation is strict). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cf/hex.h"
#include "proto/registry_client.h"

#define REPO_MAX 255

int proto_registry_check_digest(const char *d)
{
    if (!d || strncmp(d, "sha256:", 7) != 0) return -EINVAL;
    if (strlen(d + 7) != 64 || !cf_hex_is_lower(d + 7, 64)) return -EINVAL;
    return 0;
}

static int is_lower_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int proto_registry_check_repo(const char *repo)
{
    if (!repo) return -EINVAL;
    size_t n = strlen(repo);
    if (n == 0 || n > REPO_MAX) return -EINVAL;
    size_t i = 0;
    for (;;) {
        /* one component */
        if (i >= n || !is_lower_alnum((unsigned char)repo[i])) return -EINVAL;
        while (i < n && is_lower_alnum((unsigned char)repo[i])) i++;
        while (i < n && repo[i] != '/') {
            /* separator then more alnum */
            if (repo[i] == '.') {
                i++;
            } else if (repo[i] == '_') {
                i++;
                if (i < n && repo[i] == '_') i++;
            } else if (repo[i] == '-') {
                while (i < n && repo[i] == '-') i++;
            } else {
                return -EINVAL;
            }
            if (i >= n || !is_lower_alnum((unsigned char)repo[i])) return -EINVAL;
            while (i < n && is_lower_alnum((unsigned char)repo[i])) i++;
        }
        if (i == n) return 0;
        i++; /* '/' */
    }
}

int proto_registry_check_tag(const char *tag)
{
    if (!tag) return -EINVAL;
    size_t n = strlen(tag);
    if (n == 0 || n > 128) return -EINVAL;
    if (!(isalnum((unsigned char)tag[0]) || tag[0] == '_')) return -EINVAL;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)tag[i];
        if (!(isalnum(c) || c == '_' || c == '.' || c == '-')) return -EINVAL;
    }
    return 0;
}

/* Labels (not "a..b", "-a", nor a label over 63) keep the host usable as a path component
 * (client/containerd_hosts.c makes a directory of it) as well as in a URL. */
int proto_registry_check_host(const char *h, size_t n)
{
    if (!h || n == 0 || n > 255) return -EINVAL; /* fits proto_image_ref.registry */
    size_t i = 0;
    if (h[0] == '[') {
        const char *rb = memchr(h, ']', n);
        if (!rb || rb == h + 1) return -EINVAL;
        for (const char *p = h + 1; p < rb; p++)
            if (!(isxdigit((unsigned char)*p) || *p == ':' || *p == '.')) return -EINVAL;
        i = (size_t)(rb - h) + 1;
    } else {
        for (;;) {
            size_t start = i;
            while (i < n && (isalnum((unsigned char)h[i]) || h[i] == '-')) i++;
            size_t len = i - start;
            if (len == 0 || len > 63 || h[start] == '-' || h[i - 1] == '-') return -EINVAL;
            if (i < n && h[i] == '.') {
                i++;
                continue;
            }
            break;
        }
    }
    if (i == n) return 0;
    if (h[i] != ':' || i + 1 == n || n - i - 1 > 5) return -EINVAL;
    unsigned port = 0;
    for (size_t j = i + 1; j < n; j++) {
        if (!isdigit((unsigned char)h[j])) return -EINVAL;
        port = port * 10 + (unsigned)(h[j] - '0');
    }
    return port >= 1 && port <= 65535 ? 0 : -EINVAL;
}

int proto_image_ref_parse(const char *ref, proto_image_ref *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!ref || !ref[0]) return cf_err_set(err, -EINVAL, "empty image reference");
    size_t n = strlen(ref);
    if (n > 1024) return cf_err_set(err, -EINVAL, "image reference too long (%zu chars)", n);
    char name[1025];
    memcpy(name, ref, n + 1);

    char *at = strchr(name, '@');
    if (at) {
        *at = '\0';
        if (proto_registry_check_digest(at + 1) < 0)
            return cf_err_set(
                err, -EINVAL,
                "image reference \"%.200s\": digest must be sha256:<64 lowercase hex>", ref);
        memcpy(out->digest, at + 1, strlen(at + 1) + 1);
    }
    /* Host part: first component if it looks like one. */
    char *slash = strchr(name, '/');
    char *path = name;
    const char *host = "docker.io";
    size_t hostlen = strlen(host);
    if (slash) {
        size_t fl = (size_t)(slash - name);
        int is_host = memchr(name, '.', fl) || memchr(name, ':', fl) ||
                      (fl == 9 && strncmp(name, "localhost", 9) == 0) || (fl && name[0] == '[');
        if (is_host) {
            if (proto_registry_check_host(name, fl) < 0)
                return cf_err_set(err, -EINVAL, "image reference \"%.200s\": bad registry host",
                                  ref);
            host = name;
            hostlen = fl;
            path = slash + 1;
        }
    }
    /* Tag: after the last ':' of the path (the host part is gone, so no port confusion). */
    char *colon = strrchr(path, ':');
    if (colon) {
        *colon = '\0';
        if (proto_registry_check_tag(colon + 1) < 0)
            return cf_err_set(err, -EINVAL, "image reference \"%.200s\": bad tag \"%.130s\"", ref,
                              colon + 1);
        memcpy(out->tag, colon + 1, strlen(colon + 1) + 1);
    } else if (!at) {
        strcpy(out->tag, "latest");
    }
    int hub = (hostlen == 9 && strncmp(host, "docker.io", 9) == 0) ||
              (hostlen == 15 && strncmp(host, "index.docker.io", 15) == 0);
    int w;
    if (hub)
        w = snprintf(out->repo, sizeof(out->repo), "%s%s", strchr(path, '/') ? "" : "library/",
                     path);
    else
        w = snprintf(out->repo, sizeof(out->repo), "%s", path);
    if (w < 0 || (size_t)w >= sizeof(out->repo) || proto_registry_check_repo(out->repo) < 0)
        return cf_err_set(err, -EINVAL,
                          "image reference \"%.200s\": bad repository name \"%.200s\" (lowercase "
                          "letters, digits and . _ __ - separators, '/' between components)",
                          ref, path);
    if (hub)
        strcpy(out->registry, "registry-1.docker.io");
    else {
        memcpy(out->registry, host, hostlen);
        out->registry[hostlen] = '\0';
    }
    return 0;
}

const char *proto_image_ref_reference(const proto_image_ref *ref)
{
    return ref->digest[0] ? ref->digest : ref->tag;
}
