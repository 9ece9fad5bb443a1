/* chunkfly convert: an OCI/Docker image in a registry -> a Nydus image in a registry, as
 * `nydusify convert` (docs/convert.md). Thin: the work is client_convert (client/convert.c). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf/log.h"
#include "cf/parse_number.h"
#include "cli.h"
#include "client/convert.h"

static const char usage[] =
    "usage: chunkfly convert [options] SOURCE TARGET\n"
    "       (or --source SOURCE --target TARGET, as nydusify)\n"
    "\n"
    "Converts the image SOURCE (OCI or Docker) into a Nydus RAFS v6 image pushed as TARGET,\n"
    "packaged as nydusify does. An index: every platform converted and an index pushed last. Layers converted before\n"
    "(same source layer and options, recorded in the work dir) are not rebuilt; blobs the target\n"
    "has are not pushed again. The manifest is pushed last: a failed run publishes nothing.\n"
    "\n"
    "  --platform OS/ARCH[/VARIANT]  only this platform of an index (one Nydus manifest, or\n"
    "                                with --merge-platform an index of it)\n"
    "  --all-platforms               every platform of an index (the default)\n"
    "  --merge-platform              the target index lists the original manifests too, the\n"
    "                                Nydus ones marked (artifactType, os.features)\n"
    "  --source-insecure             don't verify the source registry's TLS certificate\n"
    "  --target-insecure             same for the target (loopback registries are plain http)\n"
    "  --docker-config FILE          credentials (default $DOCKER_CONFIG/config.json, else\n"
    "                                ~/.docker/config.json)\n"
    "  --work-dir DIR                layer files and the conversion cache (default ./tmp)\n"
    "  --compressor ALGO             zstd (default), lz4_block, none\n"
    "  --chunk-size SIZE             power of two, 0x1000 .. 0x1000000 (default 0x100000)\n"
    "  --fs-version 6                the only one made\n"
    "  --workers N                   layers converted at the same time (default 2)\n"
    "  --log-level LEVEL             error, warn (default), info, debug\n"
    "  -q, --quiet                   no progress lines\n"
    "  -h, --help\n"
    "\n"
    "Not yet: --oci, --with-referrer, --chunk-dict,\n"
    "--prefetch-patterns (refused). Prints TARGET@DIGEST on stdout; progress and the summary\n"
    "go to stderr. Exit status: 0 converted, 1 failure, 2 usage error.\n";

static void on_progress(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

enum {
    OPT_PLATFORM = 256,
    OPT_SRC_INSECURE,
    OPT_DST_INSECURE,
    OPT_DOCKER_CONFIG,
    OPT_WORK_DIR,
    OPT_COMPRESSOR,
    OPT_CHUNK_SIZE,
    OPT_FS_VERSION,
    OPT_SOURCE,
    OPT_TARGET,
    OPT_LOG_LEVEL,
    OPT_WORKERS,
    OPT_ALL_PLATFORMS,
    OPT_MERGE_PLATFORM,
    OPT_NOT_YET,
};

int cmd_convert(int argc, char **argv)
{
    static const struct option opts[] = {
        {"platform", required_argument, 0, OPT_PLATFORM},
        {"source-insecure", no_argument, 0, OPT_SRC_INSECURE},
        {"target-insecure", no_argument, 0, OPT_DST_INSECURE},
        {"docker-config", required_argument, 0, OPT_DOCKER_CONFIG},
        {"work-dir", required_argument, 0, OPT_WORK_DIR},
        {"compressor", required_argument, 0, OPT_COMPRESSOR},
        {"chunk-size", required_argument, 0, OPT_CHUNK_SIZE},
        {"fs-version", required_argument, 0, OPT_FS_VERSION},
        {"source", required_argument, 0, OPT_SOURCE},
        {"target", required_argument, 0, OPT_TARGET},
        {"log-level", required_argument, 0, OPT_LOG_LEVEL},
        {"workers", required_argument, 0, OPT_WORKERS},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"all-platforms", no_argument, 0, OPT_ALL_PLATFORMS},
        {"merge-platform", no_argument, 0, OPT_MERGE_PLATFORM},
        {"oci", no_argument, 0, OPT_NOT_YET},
        {"with-referrer", no_argument, 0, OPT_NOT_YET},
        {"chunk-dict", required_argument, 0, OPT_NOT_YET},
        {"prefetch-patterns", no_argument, 0, OPT_NOT_YET},
        {0, 0, 0, 0},
    };
    client_convert_opts o = {.work_dir = "./tmp", .progress = on_progress};
    int quiet = 0, all_platforms = 0;
    optind = 1;
    for (int ch; (ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1;) {
        switch (ch) {
        case OPT_PLATFORM:
            o.platform = optarg;
            break;
        case OPT_ALL_PLATFORMS:
            all_platforms = 1;
            break;
        case OPT_MERGE_PLATFORM:
            o.merge_platform = 1;
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
        case OPT_COMPRESSOR:
            o.compressor = optarg;
            break;
        case OPT_SOURCE:
            o.source = optarg;
            break;
        case OPT_TARGET:
            o.target = optarg;
            break;
        case OPT_CHUNK_SIZE: {
            uint64_t v;
            if (cf_parse_u64(optarg, &v) || v > (16u << 20)) {
                fprintf(stderr, "chunkfly convert: --chunk-size '%s' is not a size\n", optarg);
                return CLI_EXIT_USAGE;
            }
            o.chunk_size = (uint32_t)v;
            break;
        }
        case OPT_WORKERS: {
            uint64_t v;
            if (cf_parse_u64(optarg, &v) || v < 1 || v > 16) {
                fprintf(stderr, "chunkfly convert: --workers '%s': 1 .. 16\n", optarg);
                return CLI_EXIT_USAGE;
            }
            o.workers = (unsigned)v;
            break;
        }
        case OPT_FS_VERSION:
            if (strcmp(optarg, "6") != 0) {
                fprintf(stderr, "chunkfly convert: --fs-version %s: only RAFS v6 is made\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_LOG_LEVEL: {
            enum cf_log_level lv;
            if (cf_log_parse_level(optarg, &lv)) {
                fprintf(stderr, "chunkfly convert: --log-level '%s'?\n", optarg);
                return CLI_EXIT_USAGE;
            }
            cf_log_set_level(lv);
            break;
        }
        case OPT_NOT_YET:
            fprintf(stderr,
                    "chunkfly convert: %s is not implemented yet (issue 12); convert one "
                    "platform with --platform\n",
                    argv[optind - 1]);
            return CLI_EXIT_USAGE;
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
    if (!o.source && optind < argc) o.source = argv[optind++];
    if (!o.target && optind < argc) o.target = argv[optind++];
    if (!o.source || !o.target || optind != argc) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (all_platforms && o.platform) {
        fprintf(stderr, "chunkfly convert: --all-platforms and --platform exclude each other\n");
        return CLI_EXIT_USAGE;
    }
    if (quiet) o.progress = NULL;
    signal(SIGPIPE, SIG_IGN);
    client_convert_result r;
    cf_err err = {0};
    int rc = client_convert(&o, &r, &err);
    if (rc < 0) {
        fprintf(stderr, "chunkfly convert: %s\n", cf_err_str(&err, rc));
        fprintf(stderr,
                "chunkfly convert: nothing published for %s (its manifest was not pushed)\n",
                o.target);
        return CLI_EXIT_FAIL;
    }
    char s[32], t[32], p[32];
    cli_fmt_bytes(r.source_bytes, s, sizeof(s));
    cli_fmt_bytes(r.target_bytes, t, sizeof(t));
    cli_fmt_bytes(r.pushed_bytes, p, sizeof(p));
    if (!quiet)
        fprintf(stderr,
                "converted %s -> %s@%s in %.1f s: %u platform%s, %u layers (%u built, %u converted before), "
                "source %s, target %s; blobs pushed %u (%s), already there %u, mounted %u\n",
                o.source, o.target, r.manifest_digest, r.seconds, r.platforms,
                r.platforms == 1 ? "" : "s", r.layers, r.built, r.cached, s, t,
                r.blobs_pushed, p, r.blobs_present, r.blobs_mounted);
    printf("%s@%s\n", o.target, r.manifest_digest);
    return 0;
}
