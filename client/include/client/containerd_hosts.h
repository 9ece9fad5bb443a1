/* containerd registry host files for `chunkfly init containerd` (docs/mirror.md): one
 * `<config_path>/<registry>/hosts.toml` per registry, sending pulls to the node's chunkfly-peer
 * registry mirror first with the registry itself kept as containerd's fallback
 * (../shared/docs/runtime-contracts.md §2), plus a read-only check of containerd's own config
 * for the `config_path` setting those files need. The user's containerd config is never written.
 *
 * Files are ours when they carry CLIENT_HOSTS_MARKER at the start of a line: those are
 * rewritten freely; anything else is left alone unless the caller forces it (the old file is
 * then kept as hosts.toml.bak). Writes are atomic (a temp file in the same directory, fsync,
 * rename, fsync of the directory): containerd reads the file on every pull and never sees half
 * of one.
 *
 * Errors: 0 or a negative errno with a message in the optional cf_err (-EINVAL for a bad host or
 * URL, the errno of a failed file operation with the path in the message).
 * Threads: no global state; every function may be called from any thread.
 * Strings passed in are borrowed for the call. */
#ifndef CLIENT_CONTAINERD_HOSTS_H
#define CLIENT_CONTAINERD_HOSTS_H

#include <stddef.h>

#include "cf/error.h"

#define CLIENT_HOSTS_MARKER         "# chunkfly: written by `chunkfly init containerd`"
#define CLIENT_HOSTS_DEFAULT_DIR    "/etc/containerd/certs.d"
#define CLIENT_HOSTS_DEFAULT_CONFIG "/etc/containerd/config.toml"
/* the peer's default mirror_listen (docs/mirror.md) */
#define CLIENT_HOSTS_DEFAULT_MIRROR "http://127.0.0.1:65001"
/* the directory containerd (1.6+) uses for a registry without a directory of its own */
#define CLIENT_HOSTS_ALL "_default"

/* One registry as containerd sees it. */
typedef struct client_hosts_registry {
    /* directory name under config_path: "docker.io", "10.0.0.5:5000", "_default" */
    char dir[264];
    /* the upstream: "https://registry-1.docker.io"; "" for _default (containerd then uses the
     * host of the image reference itself) */
    char server[280];
    /* the entry for the peer's mirror_upstreams: dir, with the scheme when it is not the
     * peer's default for that host */
    char upstream[280];
} client_hosts_registry;

/* "[http://|https://]HOST[:PORT]" as it appears in image references ("docker.io",
 * "ghcr.io", "10.0.0.5:5000", "[fd00::1]:5000"). HOST is a DNS name (labels of letters, digits
 * and inner '-', no empty label) or a bracketed IPv6 address; anything else (path separators,
 * "..", spaces, quotes, "_default": use client_hosts_registry_all) is -EINVAL. The server is
 * https://HOST, http:// for loopback hosts (localhost, 127.0.0.0/8, [::1]), as the peer's origin
 * rule; an explicit scheme wins; docker.io means https://registry-1.docker.io. */
int client_hosts_registry_parse(const char *arg, client_hosts_registry *out, cf_err *err);
/* The _default entry (every registry without its own directory). */
void client_hosts_registry_all(client_hosts_registry *out);

/* The mirror's base URL: "[http://|https://]HOST[:PORT][/]" (no scheme = http), normalized to
 * "scheme://HOST[:PORT]" in out (size >= 300 is always enough). -EINVAL (with the reason) for a
 * path, query, user info or a bad host. */
int client_hosts_mirror_parse(const char *arg, char *out, size_t size, cf_err *err);

/* The hosts.toml text for a registry and a mirror URL (from client_hosts_mirror_parse):
 * CLIENT_HOSTS_MARKER, a comment, `server` (none for _default), the mirror with capabilities
 * pull + resolve. *out is malloc'd (caller frees). -ENOMEM. */
int client_hosts_render(const client_hosts_registry *r, const char *mirror, char **out,
                        cf_err *err);

/* 1 when text (len bytes) has CLIENT_HOSTS_MARKER at the start of a line, else 0. */
int client_hosts_is_ours(const char *text, size_t len);

typedef enum client_hosts_action {
    CLIENT_HOSTS_CREATED,   /* there was no file */
    CLIENT_HOSTS_UNCHANGED, /* ours, same text: nothing written */
    CLIENT_HOSTS_UPDATED,   /* ours, other text: replaced */
    CLIENT_HOSTS_REPLACED,  /* not ours, force: replaced, the old one kept as backup */
    CLIENT_HOSTS_REFUSED,   /* not ours (or not a regular file), no force: left alone */
} client_hosts_action;

typedef struct client_hosts_result {
    client_hosts_action action;
    char path[4096];   /* <config_path>/<dir>/hosts.toml */
    char backup[4128]; /* REPLACED: where the old file went ("<path>.bak", or .bak.N when taken) */
} client_hosts_result;

/* Installs text as <config_path>/<r->dir>/hosts.toml (creating the directories, mode 0755; the
 * file is 0644). force: a file that is not ours is replaced and kept as a backup (a hard link,
 * so the old name never disappears; a copy where links are not possible). dry_run: decides the
 * action and fills res, changes nothing. Returns 0 with res->action (REFUSED is not an error),
 * or a negative errno with the failed operation and path in err. */
int client_hosts_install(const char *config_path, const client_hosts_registry *r, const char *text,
                         int force, int dry_run, client_hosts_result *res, cf_err *err);

/* What containerd's config (its TOML text) says about the hosts directory dir. */
typedef enum client_hosts_cfg_state {
    CLIENT_HOSTS_CFG_MISSING, /* no CRI registry config_path: containerd (CRI) ignores hosts.toml */
    CLIENT_HOSTS_CFG_OTHER,   /* config_path is set but names other directories */
    CLIENT_HOSTS_CFG_OK,      /* config_path lists dir */
} client_hosts_cfg_state;

typedef struct client_hosts_cfg {
    client_hosts_cfg_state state;
    int version;       /* the config's `version` (1 when absent, as containerd reads it;
                        * 2 when the file sets nothing under plugins: then needs_version) */
    int needs_version; /* the block to add must start with `version = 2` */
    int has_mirrors;   /* the old `registry.mirrors` tables are present: containerd refuses them
                        * together with config_path */
    char value[1024];  /* OTHER/OK: the config_path value as written */
    char table[128];   /* the TOML table that holds config_path for this version (1 plugins.cri,
                        * 2 plugins."io.containerd.grpc.v1.cri", 3 the images plugin) */
} client_hosts_cfg;

/* A line-based reading of containerd's config.toml (tables, `key = "string"` and dotted keys;
 * enough for the one setting, not a TOML parser). config_path may be a ':'-separated list;
 * entries are compared to dir without trailing '/'. Never fails: text may be anything. */
void client_hosts_config_check(const char *text, size_t len, const char *dir,
                               client_hosts_cfg *out);

#endif
