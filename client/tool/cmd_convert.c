/* chunkfly convert: an OCI/Docker image in a registry -> a Nydus image in a registry, as
 * `nydusify convert` (docs/convert.md). Thin: the work is client_convert (client/convert.c). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cf/log.h"
#include "cf/parse_number.h"
#include "cli.h"
#include "client/convert.h"
#include "rafs/builder.h"

static const char usage[] =
    "usage: chunkfly convert [options] SOURCE TARGET\n"
    "       (or --source SOURCE --target TARGET, as nydusify)\n"
    "       chunkfly convert --all REGISTRY [--repo-filter RE] [--shard I/N] [--dry-run] "
    "[options]\n"
    "\n"
    "Converts the image SOURCE (OCI or Docker) into a Nydus RAFS v6 image pushed as TARGET,\n"
    "packaged as nydusify does; an index: every platform, then an index. Layers converted\n"
    "before (same source layer and options, recorded in the work dir) are not rebuilt; blobs the\n"
    "target has are not pushed again. The manifest (the index) is pushed last: a failed run\n"
    "publishes nothing.\n"
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
    "  --prefetch-patterns           read the bootstrap's prefetch list from stdin: absolute\n"
    "                                paths, one per line (default: \"/\", the whole image)\n"
    "  --with-referrer               the Nydus manifest's subject is the source manifest\n"
    "                                (OCI referrers API)\n"
    "  --oci                         Docker media types become OCI ones in the target (by\n"
    "                                default a Docker source gives a Docker target)\n"
    "  --chunk-dict bootstrap:registry:REF | bootstrap:local:PATH | bootstrap:PATH\n"
    "                                chunks of that Nydus image (or bootstrap file, whose\n"
    "                                blobs the target repository holds) are not stored again;\n"
    "                                the dictionary blobs used become layers of TARGET\n"
    "  --log-level LEVEL             error, warn (default), info, debug\n"
    "\n"
    "  --all REGISTRY                every tag of every repository (the catalog) not converted\n"
    "                                yet, each to the same repository, tag + the suffix; prints\n"
    "                                a table (source, target, status, seconds) on stdout\n"
    "  --repo-filter RE              only repositories matching RE (extended regex, unanchored)\n"
    "  --shard I/N                   only the refs of shard I of N (sha256 of \"repo:tag\" mod N)\n"
    "  --target-suffix SUFFIX        target tag suffix (default -nydus); such tags are skipped\n"
    "  --dry-run                     with --all: list what would be converted, convert nothing\n"
    "  -q, --quiet                   no progress lines\n"
    "  -h, --help\n"
    "\n"
    "Prints TARGET@DIGEST on stdout; progress and the summary\n"
    "go to stderr. Exit status: 0 converted, 1 failure, 2 usage error.\n";

/* on a terminal, a status line of the layers in flight is redrawn in place (on_status); a
 * progress line replaces it and it comes back at the next step or tick */
static int status_shown;

static void on_progress(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "%s%s\n", status_shown ? "\r\033[K" : "", line);
    status_shown = 0;
}

static void on_status(void *ctx, const char *line)
{
    (void)ctx;
    if (line) {
        /* cut to the terminal's width: a wrapped line could not be redrawn in place */
        struct winsize ws;
        int w = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 ? ws.ws_col - 1 : 79;
        fprintf(stderr, "\r\033[K%.*s", w, line);
        status_shown = 1;
    } else if (status_shown) {
        fputs("\r\033[K", stderr);
        status_shown = 0;
    }
    fflush(stderr);
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
    OPT_ALL,
    OPT_REPO_FILTER,
    OPT_SHARD,
    OPT_SUFFIX,
    OPT_DRY_RUN,
    OPT_PREFETCH,
    OPT_REFERRER,
    OPT_OCI,
    OPT_CHUNK_DICT,
};

/* `--all`: the refs of the registry (client_convert_all_list), each not done converted with
 * the options of `o`, one table row each. 0 when none failed. */
static int convert_all(client_convert_opts *o, const client_convert_all_opts *ao, int dry_run,
                       int quiet)
{
    client_convert_ref *refs = NULL;
    size_t n = 0;
    cf_err err = {0};
    int rc = client_convert_all_list(ao, &refs, &n, &err);
    if (rc < 0) {
        fprintf(stderr, "chunkfly convert --all: %s\n", cf_err_str(&err, rc));
        if (rc == -EACCES)
            fprintf(stderr,
                    "chunkfly convert --all: the docker config's credentials for %s must allow "
                    "listing the catalog (token scope registry:catalog:*), pull and push\n",
                    ao->registry);
        return CLI_EXIT_FAIL;
    }
    size_t todo = 0;
    for (size_t i = 0; i < n; i++) todo += !refs[i].done;
    if (!quiet)
        fprintf(stderr, "%s: %zu refs in shard %u/%u, %zu to convert\n", ao->registry, n, ao->shard,
                ao->shards ? ao->shards : 1, todo);
    printf("%-50s %-56s %-13s %s\n", "SOURCE", "TARGET", "STATUS", "SECONDS");
    fflush(stdout);
    unsigned converted = 0, skipped = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        char src[600], dst[600];
        snprintf(src, sizeof(src), "%s/%s:%s", ao->registry, refs[i].repo, refs[i].tag);
        snprintf(dst, sizeof(dst), "%s/%s:%s", ao->registry, refs[i].repo, refs[i].target_tag);
        const char *status;
        double secs = 0;
        if (refs[i].done) {
            status = "skipped";
            skipped++;
        } else if (dry_run) {
            status = "to-convert";
        } else {
            client_convert_result r;
            cf_err e = {0};
            o->source = src;
            o->target = dst;
            int crc = client_convert(o, &r, &e);
            secs = r.seconds;
            if (crc < 0) {
                fprintf(stderr, "chunkfly convert: %s: %s\n", src, cf_err_str(&e, crc));
                status = "failed";
                failed++;
            } else {
                status = "converted";
                converted++;
            }
        }
        printf("%-50s %-56s %-13s %.1f\n", src, dst, status, secs);
        fflush(stdout);
    }
    free(refs);
    if (!quiet)
        fprintf(stderr, "%s: %u converted, %u skipped (converted before), %u failed%s\n",
                ao->registry, converted, skipped, failed, dry_run ? " (dry run)" : "");
    return failed ? CLI_EXIT_FAIL : 0;
}

/* After option parsing: the --all walk or one conversion. */
static int convert_cmd(client_convert_opts *o, client_convert_all_opts *ao, int argc, char **argv,
                       int quiet, int all_platforms, int dry_run)
{
    if (quiet) o->progress = NULL;
    if (ao->registry) {
        if (o->source || o->target || optind != argc) {
            fputs("chunkfly convert: --all REGISTRY takes no SOURCE or TARGET\n", stderr);
            return CLI_EXIT_USAGE;
        }
        ao->insecure = o->source_insecure || o->target_insecure;
        ao->docker_config = o->docker_config;
        signal(SIGPIPE, SIG_IGN);
        return convert_all(o, ao, dry_run, quiet);
    }
    if (ao->repo_filter || ao->shards || ao->suffix || dry_run) {
        fputs("chunkfly convert: --repo-filter, --shard, --target-suffix and --dry-run go with "
              "--all\n",
              stderr);
        return CLI_EXIT_USAGE;
    }
    if (!o->source && optind < argc) o->source = argv[optind++];
    if (!o->target && optind < argc) o->target = argv[optind++];
    if (!o->source || !o->target || optind != argc) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (all_platforms && o->platform) {
        fprintf(stderr, "chunkfly convert: --all-platforms and --platform exclude each other\n");
        return CLI_EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!quiet && isatty(STDERR_FILENO)) o->status = on_status;
    client_convert_result r;
    cf_err err = {0};
    int rc = client_convert(o, &r, &err);
    if (rc < 0) {
        fprintf(stderr, "chunkfly convert: %s\n", cf_err_str(&err, rc));
        fprintf(stderr,
                "chunkfly convert: nothing published for %s (its manifest was not pushed)\n",
                o->target);
        return CLI_EXIT_FAIL;
    }
    char s[32], t[32], p[32], u[32];
    cli_fmt_bytes(r.source_bytes, s, sizeof(s));
    cli_fmt_bytes(r.target_bytes, t, sizeof(t));
    cli_fmt_bytes(r.pushed_bytes, p, sizeof(p));
    cli_fmt_bytes(r.dedup_bytes, u, sizeof(u));
    if (!quiet)
        fprintf(stderr,
                "converted %s -> %s@%s in %.1f s: %u platform%s, %u layers (%u built, %u "
                "converted before), source %s, target %s; blobs pushed %u (%s), already there "
                "%u, mounted %u; chunks deduplicated %u (%s)\n",
                o->source, o->target, r.manifest_digest, r.seconds, r.platforms,
                r.platforms == 1 ? "" : "s", r.layers, r.built, r.cached, s, t, r.blobs_pushed, p,
                r.blobs_present, r.blobs_mounted, r.dedup_chunks, u);
    if (!quiet && r.dict_chunks) {
        char d[32];
        cli_fmt_bytes(r.dict_bytes, d, sizeof(d));
        fprintf(stderr, "chunk dictionary: %u chunks (%s) not stored again\n", r.dict_chunks, d);
    }
    printf("%s@%s\n", o->target, r.manifest_digest);
    return 0;
}

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
        {"all", required_argument, 0, OPT_ALL},
        {"repo-filter", required_argument, 0, OPT_REPO_FILTER},
        {"shard", required_argument, 0, OPT_SHARD},
        {"target-suffix", required_argument, 0, OPT_SUFFIX},
        {"dry-run", no_argument, 0, OPT_DRY_RUN},
        {"all-platforms", no_argument, 0, OPT_ALL_PLATFORMS},
        {"merge-platform", no_argument, 0, OPT_MERGE_PLATFORM},
        {"oci", no_argument, 0, OPT_OCI},
        {"with-referrer", no_argument, 0, OPT_REFERRER},
        {"chunk-dict", required_argument, 0, OPT_CHUNK_DICT},
        {"prefetch-patterns", no_argument, 0, OPT_PREFETCH},
        {0, 0, 0, 0},
    };
    client_convert_opts o = {.work_dir = "./tmp", .progress = on_progress};
    int quiet = 0, all_platforms = 0, dry_run = 0, prefetch = 0;
    client_convert_all_opts ao = {0};
    optind = 1;
    for (int ch; (ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1;) {
        switch (ch) {
        case OPT_PLATFORM:
            o.platform = optarg;
            break;
        case OPT_ALL:
            ao.registry = optarg;
            break;
        case OPT_REPO_FILTER:
            ao.repo_filter = optarg;
            break;
        case OPT_SUFFIX:
            ao.suffix = optarg;
            break;
        case OPT_DRY_RUN:
            dry_run = 1;
            break;
        case OPT_SHARD: {
            unsigned i, n;
            char end;
            if (sscanf(optarg, "%u/%u%c", &i, &n, &end) != 2 || n < 1 || n > 100000 || i >= n) {
                fprintf(stderr, "chunkfly convert: --shard '%s': want I/N with 0 <= I < N\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            ao.shard = i;
            ao.shards = n;
            break;
        }
        case OPT_ALL_PLATFORMS:
            all_platforms = 1;
            break;
        case OPT_MERGE_PLATFORM:
            o.merge_platform = 1;
            break;
        case OPT_PREFETCH:
            prefetch = 1;
            break;
        case OPT_REFERRER:
            o.with_referrer = 1;
            break;
        case OPT_OCI:
            o.oci = 1;
            break;
        case OPT_CHUNK_DICT:
            o.chunk_dict = optarg;
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
    char **pf = NULL;
    if (prefetch) {
        /* as nydusify --prefetch-patterns: the list is read whole before converting */
        cf_err err = {0};
        int rc = rafs_prefetch_read(stdin, &pf, &err);
        if (rc < 0) {
            fprintf(stderr, "chunkfly convert: --prefetch-patterns: %s\n", cf_err_str(&err, rc));
            return CLI_EXIT_FAIL;
        }
        o.prefetch = (const char *const *)pf;
    }
    int rc = convert_cmd(&o, &ao, argc, argv, quiet, all_platforms, dry_run);
    rafs_prefetch_free(pf);
    return rc;
}
