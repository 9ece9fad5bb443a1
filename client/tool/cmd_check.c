/* chunkfly check SOURCE TARGET: the converted Nydus image TARGET against its source image
 * (docs/convert.md). Thin: the work is client_check (client/check.c). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cf/log.h"
#include "cli.h"
#include "client/convert.h"

static const char usage[] =
    "usage: chunkfly check [options] SOURCE TARGET\n"
    "\n"
    "Checks that TARGET is a well-formed Nydus image of SOURCE: its manifest, annotations and\n"
    "config; every blob of its bootstrap present and every chunk's digest; its filesystem tree\n"
    "equal to SOURCE's layers applied in order (content, modes, owners, xattrs, links).\n"
    "\n"
    "  --platform OS/ARCH[/VARIANT]  only this platform of an index (default: every one)\n"
    "  --source-insecure, --target-insecure, --docker-config FILE   as for convert\n"
    "  --work-dir DIR                where fetched files go while checking (default ./tmp)\n"
    "  -q, --quiet                   only the problems and the result\n"
    "  -h, --help\n"
    "\n"
    "Exit status: 0 the images match, 1 a problem (listed on stderr) or failure, 2 usage.\n";

static void on_progress(void *ctx, const char *line)
{
    int quiet = *(int *)ctx;
    if (!quiet || strncmp(line, "PROBLEM", 7) == 0) fprintf(stderr, "%s\n", line);
}

enum { OPT_PLATFORM = 256, OPT_SRC_INSECURE, OPT_DST_INSECURE, OPT_DOCKER_CONFIG, OPT_WORK_DIR };

int cmd_check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"platform", required_argument, 0, OPT_PLATFORM},
        {"source-insecure", no_argument, 0, OPT_SRC_INSECURE},
        {"target-insecure", no_argument, 0, OPT_DST_INSECURE},
        {"docker-config", required_argument, 0, OPT_DOCKER_CONFIG},
        {"work-dir", required_argument, 0, OPT_WORK_DIR},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int quiet = 0;
    client_check_opts o = {.work_dir = "./tmp", .progress = on_progress, .progress_ctx = &quiet};
    optind = 1;
    for (int ch; (ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1;) {
        switch (ch) {
        case OPT_PLATFORM:
            o.platform = optarg;
            break;
        case OPT_SRC_INSECURE:
            o.source_insecure = 1;
            break;
        case OPT_DST_INSECURE:
            o.target_insecure = 1;
            break;
        case OPT_DOCKER_CONFIG:
            o.docker_config = optarg;
            break;
        case OPT_WORK_DIR:
            o.work_dir = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    o.source = argv[optind];
    o.target = argv[optind + 1];
    signal(SIGPIPE, SIG_IGN);
    client_check_result r;
    cf_err err = {0};
    int rc = client_check(&o, &r, &err);
    if (rc < 0) {
        fprintf(stderr, "chunkfly check: %s\n", cf_err_str(&err, rc));
        return CLI_EXIT_FAIL;
    }
    fprintf(stderr, "check passed: %s is a Nydus image of %s (%u blobs, %llu entries, %.1f s)\n",
            o.target, o.source, r.blobs, (unsigned long long)r.entries, r.seconds);
    return 0;
}
