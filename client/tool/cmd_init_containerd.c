/* chunkfly init containerd: point containerd's registry hosts (hosts.toml) at the node's
 * chunkfly-peer mirror, registry kept as fallback (docs/mirror.md). The work is in
 * client/containerd_hosts.c; this file parses options and tells the user what happened. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client/containerd_hosts.h"

#define MAX_REGISTRIES 64

static const char usage[] =
    "usage: chunkfly init containerd [--registry HOST]... [--all] [options]\n"
    "\n"
    "Writes CONFIG_PATH/HOST/hosts.toml for each registry so containerd pulls through the\n"
    "node's chunkfly-peer registry mirror first and falls back to the registry itself. A file\n"
    "is written only when it is absent or was written by chunkfly (it carries the marker line\n"
    "\"" CLIENT_HOSTS_MARKER "\"); any other file is left alone, the\n"
    "block is printed for you to merge, and the exit status is 1 (--force replaces it and keeps\n"
    "the old one as hosts.toml.bak). containerd's own config is only read: when it lacks the\n"
    "config_path setting these files need, the lines to add are printed.\n"
    "\n"
    "  --registry HOST           a registry as in image references: docker.io, ghcr.io,\n"
    "                            10.0.0.5:5000 (repeatable; http://HOST for a plain-http\n"
    "                            registry, the default for loopback hosts)\n"
    "  --all                     also write _default/hosts.toml: every registry without a\n"
    "                            directory of its own\n"
    "  --config-path DIR         containerd's hosts directory (default " CLIENT_HOSTS_DEFAULT_DIR
    ")\n"
    "  --mirror URL              the peer's mirror (default " CLIENT_HOSTS_DEFAULT_MIRROR ",\n"
    "                            the peer's default mirror_listen)\n"
    "  --containerd-config FILE  containerd's config to check for config_path\n"
    "                            (default " CLIENT_HOSTS_DEFAULT_CONFIG ")\n"
    "  --dry-run                 print what would be written, change nothing (same exit status)\n"
    "  --force                   replace files chunkfly did not write (keeping a .bak)\n"
    "  -h, --help\n"
    "\n"
    "Example: chunkfly init containerd --registry docker.io --registry ghcr.io\n"
    "The peer must allow those upstreams: mirror_upstreams = docker.io, ghcr.io.\n"
    "Exit status: 0 every file in place, 1 a file was refused or could not be written, 2 usage.\n";

static void print_block(const char *text)
{
    fputs(text, stdout);
    if (text[0] && text[strlen(text) - 1] != '\n') putchar('\n');
}

/* dir as an absolute path (for the config_path hint) */
static void absolute_dir(const char *dir, char *out, size_t size)
{
    char rp[PATH_MAX], cwd[PATH_MAX];
    if (realpath(dir, rp))
        snprintf(out, size, "%s", rp);
    else if (dir[0] != '/' && getcwd(cwd, sizeof(cwd)) &&
             snprintf(out, size, "%s/%s", cwd, dir) < (int)size)
        return;
    else
        snprintf(out, size, "%s", dir);
}

/* Reads containerd's config and prints the config_path setting when it is missing. */
static void check_containerd_config(const char *cfg_path, const char *dir)
{
    FILE *f = fopen(cfg_path, "rb");
    if (!f && errno != ENOENT) {
        printf("\nCould not read containerd's config %s (%s): make sure its CRI registry\n"
               "config_path includes %s.\n",
               cfg_path, strerror(errno), dir);
        return;
    }
    client_hosts_cfg c;
    if (!f) {
        printf("\ncontainerd's config %s does not exist, and containerd's CRI reads hosts.toml\n"
               "files only from the directories its config names. Create it with:\n\n"
               "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
               "  config_path = \"%s\"\n\n"
               "then restart containerd (systemctl restart containerd).\n",
               cfg_path, dir);
    } else {
        /* the config is small; 4 MiB is far beyond any real one */
        size_t cap = 4u << 20, len = 0;
        char *text = malloc(cap);
        if (!text) {
            fclose(f);
            fprintf(stderr, "chunkfly init containerd: out of memory\n");
            return;
        }
        len = fread(text, 1, cap, f);
        fclose(f);
        client_hosts_config_check(text, len, dir, &c);
        free(text);
        switch (c.state) {
        case CLIENT_HOSTS_CFG_OK:
            printf("\ncontainerd's config %s already reads hosts.toml files from %s.\n", cfg_path,
                   dir);
            break;
        case CLIENT_HOSTS_CFG_MISSING:
            printf("\ncontainerd's config %s has no registry config_path, so containerd's CRI\n"
                   "ignores these files. Add (chunkfly does not edit that file; if the table\n"
                   "exists already, add only the config_path line to it):\n\n"
                   "%s[%s]\n  config_path = \"%s\"\n\n"
                   "then restart containerd (systemctl restart containerd).\n",
                   cfg_path, c.needs_version ? "version = 2\n\n" : "", c.table, dir);
            break;
        case CLIENT_HOSTS_CFG_OTHER:
            printf("\ncontainerd's config %s sets config_path = \"%s\", which does not include\n"
                   "%s: run this again with --config-path set to that directory, or make it\n"
                   "config_path = \"%s:%s\" under [%s] and restart containerd.\n",
                   cfg_path, c.value, dir, c.value, dir, c.table);
            break;
        }
        if (c.has_mirrors)
            printf("Note: it also has registry.mirrors tables; containerd refuses them together\n"
                   "with config_path: move those mirrors to hosts.toml files and delete them.\n");
    }
    printf("ctr does not read that setting: use `ctr images pull --hosts-dir %s ...`.\n", dir);
}

int cmd_init(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *o = argc < 2 ? stderr : stdout;
        fputs("usage: chunkfly init containerd [options]   (see chunkfly init containerd --help)\n",
              o);
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "containerd") != 0) {
        fprintf(stderr,
                "chunkfly init: cannot set up '%s': only `chunkfly init containerd` exists; for\n"
                "CRI-O, podman, skopeo and Docker see the registries.conf and daemon.json\n"
                "examples in docs/mirror.md\n",
                argv[1]);
        return CLI_EXIT_USAGE;
    }
    return cmd_init_containerd(argc - 1, argv + 1);
}

int cmd_init_containerd(int argc, char **argv)
{
    const char *config_path = CLIENT_HOSTS_DEFAULT_DIR, *mirror_arg = CLIENT_HOSTS_DEFAULT_MIRROR;
    const char *ctrd_config = CLIENT_HOSTS_DEFAULT_CONFIG;
    int all = 0, dry = 0, force = 0, nreg = 0;
    static client_hosts_registry regs[MAX_REGISTRIES + 1];
    static const struct option opts[] = {{"registry", required_argument, 0, 'r'},
                                         {"all", no_argument, 0, 'a'},
                                         {"config-path", required_argument, 0, 'c'},
                                         {"mirror", required_argument, 0, 'm'},
                                         {"containerd-config", required_argument, 0, 'C'},
                                         {"dry-run", no_argument, 0, 'n'},
                                         {"force", no_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    cf_err err = {0};
    int ch, r;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'r': {
            client_hosts_registry g;
            r = client_hosts_registry_parse(optarg, &g, &err);
            if (r) {
                fprintf(stderr, "chunkfly init containerd: %s\n", cf_err_str(&err, r));
                return CLI_EXIT_USAGE;
            }
            int dup = 0;
            for (int i = 0; i < nreg; i++) dup |= !strcmp(regs[i].dir, g.dir);
            if (dup) break;
            if (nreg == MAX_REGISTRIES) {
                fprintf(stderr, "chunkfly init containerd: at most %d registries at once\n",
                        MAX_REGISTRIES);
                return CLI_EXIT_USAGE;
            }
            regs[nreg++] = g;
            break;
        }
        case 'a':
            all = 1;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'm':
            mirror_arg = optarg;
            break;
        case 'C':
            ctrd_config = optarg;
            break;
        case 'n':
            dry = 1;
            break;
        case 'f':
            force = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr,
                "chunkfly init containerd: unexpected argument '%s' (registries go with "
                "--registry HOST)\n\n%s",
                argv[optind], usage);
        return CLI_EXIT_USAGE;
    }
    if (!nreg && !all) {
        fprintf(stderr,
                "chunkfly init containerd: name the registries: --registry HOST "
                "(repeatable), or --all for every registry\n\n%s",
                usage);
        return CLI_EXIT_USAGE;
    }
    if (!config_path[0]) {
        fprintf(stderr, "chunkfly init containerd: --config-path is empty\n");
        return CLI_EXIT_USAGE;
    }
    char mirror[320];
    r = client_hosts_mirror_parse(mirror_arg, mirror, sizeof(mirror), &err);
    if (r) {
        fprintf(stderr, "chunkfly init containerd: %s\n", cf_err_str(&err, r));
        return CLI_EXIT_USAGE;
    }
    if (all) client_hosts_registry_all(&regs[nreg++]);

    int status = 0, changed = 0;
    for (int i = 0; i < nreg; i++) {
        char *text = NULL;
        client_hosts_result res;
        r = client_hosts_render(&regs[i], mirror, &text, &err);
        if (!r) r = client_hosts_install(config_path, &regs[i], text, force, dry, &res, &err);
        if (r) {
            fprintf(stderr, "chunkfly init containerd: %s\n", cf_err_str(&err, r));
            free(text);
            status = CLI_EXIT_FAIL;
            continue;
        }
        const char *would = dry ? "would " : "";
        switch (res.action) {
        case CLIENT_HOSTS_CREATED:
            printf("%s%s %s\n", would, dry ? "write" : "wrote", res.path);
            changed = 1;
            break;
        case CLIENT_HOSTS_UNCHANGED:
            printf("%s: up to date\n", res.path);
            break;
        case CLIENT_HOSTS_UPDATED:
            printf("%s%s %s (it was chunkfly's)\n", would, dry ? "update" : "updated", res.path);
            changed = 1;
            break;
        case CLIENT_HOSTS_REPLACED:
            printf("%s%s %s; the old file %s %s\n", would, dry ? "replace" : "replaced", res.path,
                   dry ? "would be kept as" : "is kept as", res.backup);
            changed = 1;
            break;
        case CLIENT_HOSTS_REFUSED:
            fprintf(stderr,
                    "chunkfly init containerd: %s exists and was not written by chunkfly: left\n"
                    "as it is. Merge the block below into it yourself, or run again with --force\n"
                    "(which keeps the old file as hosts.toml.bak):\n",
                    res.path);
            fflush(stderr);
            print_block(text);
            status = CLI_EXIT_FAIL;
            break;
        }
        if (dry && res.action != CLIENT_HOSTS_UNCHANGED && res.action != CLIENT_HOSTS_REFUSED) {
            print_block(text);
            putchar('\n');
        }
        free(text);
    }
    fflush(stdout);

    char absdir[PATH_MAX + 1];
    absolute_dir(config_path, absdir, sizeof(absdir));
    check_containerd_config(ctrd_config, absdir);
    if (changed || dry) {
        int named = 0;
        for (int i = 0; i < nreg; i++) {
            if (!regs[i].server[0]) continue;
            printf("%s%s",
                   named ? ", " : "The peer must allow these upstreams: mirror_upstreams = ",
                   regs[i].upstream);
            named++;
        }
        if (named) printf(" in its config.\n");
        if (all)
            printf("_default sends every registry to the mirror: the peer's mirror_upstreams must\n"
                   "list each one pulled through it (the others get 403 and containerd pulls them\n"
                   "from the registry directly).\n");
    }
    return status;
}
