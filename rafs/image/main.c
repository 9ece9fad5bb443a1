/* chunkfly-image: build, merge, unpack, check and inspect Nydus RAFS v6 images.
 * The command line mirrors nydus-image; each subcommand lives in its own cmd_<name>.c. */
#include <stdio.h>
#include <string.h>

#include "image_cmds.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} cmds[] = {
    {"create", cmd_create, "build a RAFS v6 bootstrap and data blob from a tar or directory"},
    {"merge", cmd_merge, "merge per-layer bootstraps into one (applies whiteouts)"},
    {"unpack", cmd_unpack, "write the filesystem of an image as a tar"},
    {"check", cmd_check, "validate a bootstrap (and with -D, every chunk of its blobs)"},
    {"inspect", cmd_inspect, "print image metadata as JSON (stats, ls, blobs, prefetch)"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: chunkfly-image [-l LEVEL] <command> [options]\n\n"
               "Nydus RAFS v6 image builder and checker, command-line compatible with "
               "nydus-image.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].summary);
    fprintf(f, "\nOptions:\n  -h, --help     this help\n  -V, --version  print the version\n"
               "\nRun 'chunkfly-image <command> --help' for the options of a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf("chunkfly-image %s (RAFS v6, nydus-image compatible)\n", CHUNKFLY_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "chunkfly-image: unknown command '%s' (see --help)\n", argv[1]);
    return 1;
}
