/* containerd hosts.toml files for the peer's registry mirror (client/containerd_hosts.h). */
#include "client/containerd_hosts.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/registry_client.h"

/* Largest hosts.toml we read to decide whether it is ours: ours are < 1 KiB. */
#define HOSTS_READ_MAX (64 * 1024)

/* host without the port */
static size_t host_name_len(const char *h)
{
    if (h[0] == '[') return (size_t)(strchr(h, ']') - h) + 1;
    const char *c = strchr(h, ':');
    return c ? (size_t)(c - h) : strlen(h);
}

static int is_loopback(const char *h)
{
    size_t n = host_name_len(h);
    if (n == 9 && strncasecmp(h, "localhost", 9) == 0) return 1;
    if (n == 5 && strncmp(h, "[::1]", 5) == 0) return 1;
    if (n < 4 || strncmp(h, "127.", 4) != 0) return 0;
    /* 127.a.b.c: four numeric labels */
    int dots = 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i] == '.')
            dots++;
        else if (!isdigit((unsigned char)h[i]))
            return 0;
    }
    return dots == 3;
}

/* strips "http://" / "https://"; *scheme = "http", "https" or NULL */
static const char *strip_scheme(const char *s, const char **scheme)
{
    *scheme = NULL;
    if (strncasecmp(s, "http://", 7) == 0) {
        *scheme = "http";
        return s + 7;
    }
    if (strncasecmp(s, "https://", 8) == 0) {
        *scheme = "https";
        return s + 8;
    }
    return s;
}

int client_hosts_registry_parse(const char *arg, client_hosts_registry *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!arg || !arg[0]) return cf_err_set(err, -EINVAL, "empty registry host");
    const char *scheme;
    const char *h = strip_scheme(arg, &scheme);
    size_t n = strlen(h);
    if (strcmp(h, CLIENT_HOSTS_ALL) == 0)
        return cf_err_set(err, -EINVAL,
                          "registry \"%s\": use --all for the _default entry (every registry)",
                          arg);
    if (proto_registry_check_host(h, n) < 0)
        return cf_err_set(err, -EINVAL,
                          "registry \"%.300s\": not a registry host as in an image reference "
                          "(HOST or HOST:PORT, e.g. docker.io, ghcr.io, 10.0.0.5:5000; no path, "
                          "no spaces)",
                          arg);
    memcpy(out->dir, h, n + 1);
    int hub = strcasecmp(h, "docker.io") == 0 || strcasecmp(h, "index.docker.io") == 0;
    /* the peer's origin rule for mirror_upstreams entries without a scheme is the same */
    const char *dflt = !hub && is_loopback(h) ? "http" : "https";
    if (!scheme) scheme = dflt;
    /* containerd looks for docker.io/ (its name for Docker Hub); the API host differs */
    if (hub) strcpy(out->dir, "docker.io");
    snprintf(out->server, sizeof(out->server), "%s://%s", scheme, hub ? "registry-1.docker.io" : h);
    snprintf(out->upstream, sizeof(out->upstream), "%s%s%s", strcmp(scheme, dflt) ? scheme : "",
             strcmp(scheme, dflt) ? "://" : "", out->dir);
    return 0;
}

void client_hosts_registry_all(client_hosts_registry *out)
{
    memset(out, 0, sizeof(*out));
    strcpy(out->dir, CLIENT_HOSTS_ALL);
}

int client_hosts_mirror_parse(const char *arg, char *out, size_t size, cf_err *err)
{
    if (!arg || !arg[0]) return cf_err_set(err, -EINVAL, "empty mirror URL");
    const char *scheme;
    const char *h = strip_scheme(arg, &scheme);
    size_t n = strlen(h);
    if (n && h[n - 1] == '/') n--;
    if (memchr(h, '@', n))
        return cf_err_set(err, -EINVAL,
                          "mirror \"%.300s\": no user info in the URL (containerd sends the "
                          "registry's credentials to the mirror itself)",
                          arg);
    if (memchr(h, '/', n) || memchr(h, '?', n) || memchr(h, '#', n))
        return cf_err_set(err, -EINVAL,
                          "mirror \"%.300s\": the peer serves /v2/ at its root: give "
                          "http://HOST:PORT without a path",
                          arg);
    if (proto_registry_check_host(h, n) < 0)
        return cf_err_set(err, -EINVAL,
                          "mirror \"%.300s\": want http://HOST:PORT (the peer's mirror_listen, "
                          "default " CLIENT_HOSTS_DEFAULT_MIRROR ")",
                          arg);
    int w = snprintf(out, size, "%s://%.*s", scheme ? scheme : "http", (int)n, h);
    if (w < 0 || (size_t)w >= size) return cf_err_set(err, -ENAMETOOLONG, "mirror URL too long");
    return 0;
}

int client_hosts_render(const client_hosts_registry *r, const char *mirror, char **out, cf_err *err)
{
    /* hosts and URLs were validated (no quotes, newlines or backslashes): no TOML escaping */
    char what[1200];
    int w;
    if (r->server[0])
        w = snprintf(what, sizeof(what),
                     "# Pulls from %s go to the node's chunkfly-peer registry mirror first;\n"
                     "# containerd falls back to the server when the mirror fails or answers 404.\n"
                     "# The peer must list %s in its mirror_upstreams.\n"
                     "server = \"%s\"\n",
                     r->dir, r->dir, r->server);
    else
        w = snprintf(what, sizeof(what), "%s",
                     "# Pulls from every registry without a directory of its own here go to the\n"
                     "# node's chunkfly-peer registry mirror first; containerd falls back to the\n"
                     "# registry itself when the mirror fails or answers 404. The peer must list\n"
                     "# each such registry in its mirror_upstreams.\n");
    if (w < 0 || (size_t)w >= sizeof(what)) return cf_err_set(err, -EINVAL, "registry too long");
    char *s = NULL;
    w = asprintf(&s,
                 CLIENT_HOSTS_MARKER
                 " (docs/mirror.md).\n"
                 "# chunkfly rewrites this file while the line above is here: delete that line to\n"
                 "# keep your own edits.\n"
                 "%s\n"
                 "[host.\"%s\"]\n"
                 "  capabilities = [\"pull\", \"resolve\"]\n",
                 what, mirror);
    if (w < 0) return cf_err_set(err, -ENOMEM, "out of memory");
    *out = s;
    return 0;
}

int client_hosts_is_ours(const char *text, size_t len)
{
    static const size_t ml = sizeof(CLIENT_HOSTS_MARKER) - 1;
    size_t i = 0;
    while (i < len) {
        if (len - i >= ml && memcmp(text + i, CLIENT_HOSTS_MARKER, ml) == 0) return 1;
        const char *nl = memchr(text + i, '\n', len - i);
        if (!nl) break;
        i = (size_t)(nl - text) + 1;
    }
    return 0;
}

/* ---- files ---- */

static int mkdir_p(const char *path, cf_err *err)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf)) return cf_err_set(err, -ENAMETOOLONG, "bad directory path");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return cf_err_set(err, -errno, "cannot create directory %s: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0) return cf_err_set(err, -errno, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return cf_err_set(err, -ENOTDIR, "%s is not a directory", path);
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int r = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return r;
}

/* text -> dir/name through dir/.name.XXXXXX, fsync, rename, fsync(dir) */
static int write_atomic(const char *dir, const char *path, const char *text, cf_err *err)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s/.hosts.toml.XXXXXX", dir) >= (int)sizeof(tmp))
        return cf_err_set(err, -ENAMETOOLONG, "path too long: %s", dir);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return cf_err_set(err, -errno, "cannot create a file in %s: %s", dir, strerror(errno));
    int r = fchmod(fd, 0644) != 0 ? -errno : 0;
    if (!r) r = write_all(fd, text, strlen(text));
    if (!r && fsync(fd) != 0) r = -errno;
    if (close(fd) != 0 && !r) r = -errno;
    if (!r && rename(tmp, path) != 0) r = -errno;
    if (r) {
        unlink(tmp);
        return cf_err_set(err, r, "writing %s: %s", path, strerror(-r));
    }
    r = fsync_dir(dir);
    if (r) return cf_err_set(err, r, "fsync %s: %s", dir, strerror(-r));
    return 0;
}

/* a copy of src at dst (dst must not exist), for file systems without hard links */
static int copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return -errno;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = -errno;
        close(in);
        return e;
    }
    char buf[16384];
    int r = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) r = -errno;
        if (n <= 0) break;
        r = write_all(out, buf, (size_t)n);
        if (r) break;
    }
    if (!r && fsync(out) != 0) r = -errno;
    if (close(out) != 0 && !r) r = -errno;
    close(in);
    if (r) unlink(dst);
    return r;
}

/* keeps path as path.bak (path.bak.N, N = 1.., when taken); fills bak */
static int backup(const char *path, char *bak, size_t size, cf_err *err)
{
    for (int i = 0; i < 1000; i++) {
        int w = i ? snprintf(bak, size, "%s.bak.%d", path, i) : snprintf(bak, size, "%s.bak", path);
        if (w < 0 || (size_t)w >= size) return cf_err_set(err, -ENAMETOOLONG, "path too long");
        int r = link(path, bak) == 0 ? 0 : -errno;
        if (r == -EEXIST) continue;
        if (r == -EPERM || r == -ENOTSUP || r == -EOPNOTSUPP || r == -EMLINK) {
            r = copy_file(path, bak);
            if (r == -EEXIST) continue;
        }
        if (r) return cf_err_set(err, r, "cannot keep %s as %s: %s", path, bak, strerror(-r));
        return 0;
    }
    return cf_err_set(err, -EEXIST, "%s.bak .. .bak.999 all exist: clean them up", path);
}

/* reads a regular file of at most HOSTS_READ_MAX bytes: 0 and *text (malloc'd), 1 when it is
 * not a regular file or too big (never ours), negative errno */
static int read_small(const char *path, char **text, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return errno == ELOOP ? 1 : -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > HOSTS_READ_MAX) {
        close(fd);
        return 1;
    }
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = -errno;
            free(b);
            close(fd);
            return e;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    close(fd);
    b[got] = 0;
    *text = b;
    *len = got;
    return 0;
}

int client_hosts_install(const char *config_path, const client_hosts_registry *r, const char *text,
                         int force, int dry_run, client_hosts_result *res, cf_err *err)
{
    memset(res, 0, sizeof(*res));
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s/%s", config_path, r->dir) >= (int)sizeof(dir) ||
        snprintf(res->path, sizeof(res->path), "%s/hosts.toml", dir) >= (int)sizeof(res->path))
        return cf_err_set(err, -ENAMETOOLONG, "config path too long: %s", config_path);

    char *old = NULL;
    size_t oldlen = 0;
    struct stat st;
    int exists = lstat(res->path, &st) == 0;
    if (!exists && errno != ENOENT)
        return cf_err_set(err, -errno, "%s: %s", res->path, strerror(errno));
    if (!exists) {
        res->action = CLIENT_HOSTS_CREATED;
    } else {
        int rr = read_small(res->path, &old, &oldlen);
        if (rr < 0) return cf_err_set(err, rr, "reading %s: %s", res->path, strerror(-rr));
        if (rr == 0 && client_hosts_is_ours(old, oldlen))
            res->action = oldlen == strlen(text) && memcmp(old, text, oldlen) == 0
                              ? CLIENT_HOSTS_UNCHANGED
                              : CLIENT_HOSTS_UPDATED;
        else
            res->action = force ? CLIENT_HOSTS_REPLACED : CLIENT_HOSTS_REFUSED;
        free(old);
        /* a symlink or directory in the way is replaced only by force, and only a regular
         * file can be kept by a hard link: say so instead of guessing */
        if (res->action == CLIENT_HOSTS_REPLACED && !S_ISREG(st.st_mode))
            return cf_err_set(err, -EEXIST,
                              "%s is not a regular file (a link or directory): move it away "
                              "yourself",
                              res->path);
    }
    if (dry_run || res->action == CLIENT_HOSTS_UNCHANGED || res->action == CLIENT_HOSTS_REFUSED) {
        if (dry_run && res->action == CLIENT_HOSTS_REPLACED)
            snprintf(res->backup, sizeof(res->backup), "%s.bak", res->path);
        return 0;
    }
    int rc = mkdir_p(dir, err);
    if (rc) return rc;
    if (res->action == CLIENT_HOSTS_REPLACED) {
        rc = backup(res->path, res->backup, sizeof(res->backup), err);
        if (rc) return rc;
    }
    return write_atomic(dir, res->path, text, err);
}

/* ---- containerd's config.toml ---- */

/* a TOML key or table path without spaces and quotes: plugins.io.containerd.grpc.v1.cri.registry
 * (quoted segments keep their dots; good enough to recognise the tables we look for) */
static void norm_key(const char *s, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '"' || c == '\'') continue;
        out[o++] = c;
    }
    out[o] = 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0 && (a == b || s[a - b - 1] == '.');
}

/* the TOML string value at v (n bytes): "..." or '...' (no escapes interpreted) */
static int string_value(const char *v, size_t n, char *out, size_t size)
{
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    if (n < 2 || (*v != '"' && *v != '\'')) return -1;
    const char *end = memchr(v + 1, *v, n - 1);
    if (!end) return -1;
    size_t len = (size_t)(end - v - 1);
    if (len >= size) return -1;
    memcpy(out, v + 1, len);
    out[len] = 0;
    return 0;
}

static void trim_slashes(char *s)
{
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/') s[--n] = 0;
}

/* config_path lists dir (':'-separated entries; the same directory under another spelling,
 * e.g. through a symlink, counts too) */
static int lists_dir(const char *value, const char *dir)
{
    char want[PATH_MAX], want_real[PATH_MAX];
    snprintf(want, sizeof(want), "%s", dir);
    trim_slashes(want);
    int have_real = realpath(want, want_real) != NULL;
    const char *p = value;
    for (;;) {
        const char *c = strchr(p, ':');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        char e[PATH_MAX], er[PATH_MAX];
        if (n && n < sizeof(e)) {
            memcpy(e, p, n);
            e[n] = 0;
            trim_slashes(e);
            if (strcmp(e, want) == 0) return 1;
            if (have_real && realpath(e, er) && strcmp(er, want_real) == 0) return 1;
        }
        if (!c) return 0;
        p = c + 1;
    }
}

void client_hosts_config_check(const char *text, size_t len, const char *dir, client_hosts_cfg *out)
{
    memset(out, 0, sizeof(*out));
    char table[512] = "";
    int plugins = 0;
    int found = 0;
    size_t i = 0;
    while (i < len) {
        const char *line = text + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t n = nl ? (size_t)(nl - line) : len - i;
        i += n + 1;
        while (n && (*line == ' ' || *line == '\t')) line++, n--;
        while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) n--;
        if (n == 0 || line[0] == '#') continue;
        if (line[0] == '[') {
            const char *e = memchr(line, ']', n);
            size_t a = n > 1 && line[1] == '[' ? 2 : 1;
            if (!e || (size_t)(e - line) < a) continue;
            norm_key(line + a, (size_t)(e - line) - a, table, sizeof(table));
            if (strncmp(table, "plugins", 7) == 0) plugins = 1;
            if (strstr(table, "cri") && strstr(table, ".registry.mirrors")) out->has_mirrors = 1;
            continue;
        }
        const char *eq = memchr(line, '=', n);
        if (!eq) continue;
        char key[256], full[800];
        norm_key(line, (size_t)(eq - line), key, sizeof(key));
        if (table[0])
            snprintf(full, sizeof(full), "%s.%s", table, key);
        else
            snprintf(full, sizeof(full), "%s", key);
        const char *v = eq + 1;
        size_t vn = n - (size_t)(v - line);
        if (strcmp(full, "version") == 0) {
            while (vn && (*v == ' ' || *v == '\t')) v++, vn--;
            if (vn && isdigit((unsigned char)*v)) out->version = *v - '0';
            continue;
        }
        if (strncmp(full, "plugins", 7) == 0) plugins = 1;
        if (!strstr(full, "cri")) continue;
        if (strstr(full, ".registry.mirrors")) out->has_mirrors = 1;
        if (!ends_with(full, "registry.config_path")) continue;
        char val[sizeof(out->value)];
        if (string_value(v, vn, val, sizeof(val)) != 0) continue;
        memcpy(out->value, val, sizeof(val));
        found = 1;
    }
    /* no version and no plugin settings (an empty file): the block may start with version 2 */
    if (out->version == 0 && !plugins) out->version = 2, out->needs_version = 1;
    /* containerd 2.x (config version 3) moved the registry settings to the images plugin;
     * version 1 (containerd's reading of a config without `version`) names plugins by id */
    snprintf(out->table, sizeof(out->table), "%s",
             out->version >= 3   ? "plugins.\"io.containerd.cri.v1.images\".registry"
             : out->version == 2 ? "plugins.\"io.containerd.grpc.v1.cri\".registry"
                                 : "plugins.cri.registry");
    if (out->version == 0) out->version = 1;
    if (!found || !out->value[0])
        out->state = CLIENT_HOSTS_CFG_MISSING;
    else
        out->state = lists_dir(out->value, dir) ? CLIENT_HOSTS_CFG_OK : CLIENT_HOSTS_CFG_OTHER;
}
