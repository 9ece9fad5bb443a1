/* chunkfly-mount: a drop-in for nydusd's FUSE mode. Parses nydusd's command line, opens and
 * checks the image and its cache before anything is mounted, mounts, serves until SIGTERM (or
 * an external umount), unmounts. See docs/mount.md. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf/log.h"
#include "cf/parse_number.h"
#include "mount/blob_cache.h"
#include "mount/fuse_fs.h"
#include "mount_tool.h"
#include "rafs/reader.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: chunkfly-mount [fuse] --mountpoint DIR --bootstrap FILE --config FILE [options]\n"
        "       chunkfly-mount [fuse] --mountpoint DIR --image REF [--config FILE] [options]\n"
        "       chunkfly-mount [fuse] --mountpoint DIR --apisock SOCK [options]   (shared mode)\n"
        "       chunkfly-mount erofs --mountpoint DIR (--bootstrap FILE --config FILE | --image "
        "REF) [options]\n"
        "\n"
        "Mounts a Nydus (RAFS v6) image with FUSE, read-only; file data is fetched chunk by\n"
        "chunk when read, verified and cached (a drop-in for nydusd's FUSE mode). erofs: the\n"
        "kernel's EROFS mounts the bootstrap, data blobs are files served the same way.\n"
        "\n"
        "  --mountpoint DIR      where to mount (must exist)\n"
        "  --bootstrap FILE      the image's RAFS v6 bootstrap (dedicated mode); without it,\n"
        "                        images are attached at /<name> with POST /api/v1/mount\n"
        "  --image REF           REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:...: fetch the\n"
        "                        manifest (auth from docker config.json) and the bootstrap\n"
        "                        layer into the cache directory, read blobs from that registry\n"
        "                        (or the --config backend); an index picks this platform\n"
        "  --platform P          os/arch[/variant] to pick from an image index (--image)\n"
        "  --plain-http          the --image registry speaks http (default: http only for\n"
        "                        localhost/127.x, https otherwise)\n"
        "  --config FILE         nydusd v1 JSON config (backend, cache work_dir, amplify_io...)\n"
        "  --blob-dir DIR        read data blobs from DIR/<blob id> (localfs without a config)\n"
        "  --cache-dir DIR       blob cache directory (overrides the config's work_dir; --image\n"
        "                        default /var/cache/chunkfly-mount, ~/.cache/... for users)\n"
        "  --apisock SOCK        HTTP API on a unix socket (nydusd's API subset)\n"
        "  --id ID               daemon id (shown by the API)\n"
        "  --thread-num N        FUSE worker threads (default 10)\n"
        "  --log-level L         trace|debug|info|warn|error (default info)\n"
        "  --log-file F          log to F instead of stderr\n"
        "  --prefetch-files P... fill these files (absolute paths in the image) in the background\n"
        "  --allow-other         let every user access the mount (FUSE allow_other)\n"
        "  --metrics-listen H:P  Prometheus GET /metrics on TCP (per image counters)\n"
        "  --version, --help\n"
        "Accepted for nydusd compatibility and ignored: --supervisor (shown by the API),\n"
        "--log-rotation-size, --backend-source, --failover-policy, --upgrade, --writable, "
        "--hybrid-mode,\n"
        "--prefetch-all... (see docs/mount.md)\n");
}

static void version(void)
{
    printf("Version: \t%s\n", CHUNKFLY_VERSION);
    printf("Git Commit: \t%s\n", CHUNKFLY_GIT_COMMIT);
    printf("Build Time: \t%s %s\n", __DATE__, __TIME__);
    printf("Profile: \t%s\n", "release");
}

enum {
    OPT_MOUNTPOINT = 256,
    OPT_BOOTSTRAP,
    OPT_CONFIG,
    OPT_BLOB_DIR,
    OPT_CACHE_DIR,
    OPT_APISOCK,
    OPT_ID,
    OPT_THREADS,
    OPT_LOG_LEVEL,
    OPT_LOG_FILE,
    OPT_PREFETCH,
    OPT_ALLOW_OTHER,
    OPT_VERSION,
    OPT_HELP,
    OPT_SUPERVISOR,
    OPT_METRICS,
    OPT_IMAGE,
    OPT_PLATFORM,
    OPT_PLAIN_HTTP,
    OPT_IGNORED_ARG,  /* accepted with a value, ignored */
    OPT_IGNORED_FLAG, /* accepted without a value, ignored */
};

static const struct option long_opts[] = {
    {"mountpoint", required_argument, NULL, OPT_MOUNTPOINT},
    {"bootstrap", required_argument, NULL, OPT_BOOTSTRAP},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"blob-dir", required_argument, NULL, OPT_BLOB_DIR},
    {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
    {"apisock", required_argument, NULL, OPT_APISOCK},
    {"id", required_argument, NULL, OPT_ID},
    {"thread-num", required_argument, NULL, OPT_THREADS},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-file", required_argument, NULL, OPT_LOG_FILE},
    {"prefetch-files", required_argument, NULL, OPT_PREFETCH},
    {"allow-other", no_argument, NULL, OPT_ALLOW_OTHER},
    {"metrics-listen", required_argument, NULL, OPT_METRICS},
    {"image", required_argument, NULL, OPT_IMAGE},
    {"platform", required_argument, NULL, OPT_PLATFORM},
    {"plain-http", no_argument, NULL, OPT_PLAIN_HTTP},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, OPT_HELP},
    /* nydusd flags the snapshotter (or a user) may pass: accepted, no effect here */
    {"supervisor", required_argument, NULL, OPT_SUPERVISOR},
    {"log-rotation-size", required_argument, NULL, OPT_IGNORED_ARG},
    {"backend-source", required_argument, NULL, OPT_IGNORED_ARG},
    {"failover-policy", required_argument, NULL, OPT_IGNORED_ARG},
    {"virtual-mountpoint", required_argument, NULL, OPT_IGNORED_ARG},
    {"sock", required_argument, NULL, OPT_IGNORED_ARG},
    {"rlimit-nofile", required_argument, NULL, OPT_IGNORED_ARG},
    {"upgrade", no_argument, NULL, OPT_IGNORED_FLAG},
    {"writable", no_argument, NULL, OPT_IGNORED_FLAG},
    {"hybrid-mode", no_argument, NULL, OPT_IGNORED_FLAG},
    {"prefetch-all", no_argument, NULL, OPT_IGNORED_FLAG},
    {NULL, 0, NULL, 0},
};

static int fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "chunkfly-mount: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2; /* a usage error */
}

int main(int argc, char **argv)
{
    /* Chunk and read buffers (128 KiB .. a few MiB) are allocated per request: keep them in the
     * heap instead of fresh mmaps, whose page faults cost more than the reads (3x measured). */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    struct mount_tool_opts o = {0};
    enum cf_log_level level = CF_LOG_INFO;
    const char *log_file = NULL;
    size_t nprefetch = 0;
    const char **prefetch = calloc((size_t)argc + 1, sizeof(*prefetch));
    if (!prefetch) return 1;
    /* nydusd's subcommand: `fuse` (default) is ours; the others are not */
    if (argc > 1 && argv[1][0] != '-') {
        if (!strcmp(argv[1], "fuse") || !strcmp(argv[1], "erofs")) {
            o.erofs = !strcmp(argv[1], "erofs");
            argv[1] = argv[0];
            argv++;
            argc--;
        } else {
            free(prefetch);
            return fail("unsupported subcommand '%s'%s (use 'fuse' or 'erofs')", argv[1], "");
        }
    }
    int c, rc = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hV", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_MOUNTPOINT:
            o.mountpoint = optarg;
            break;
        case OPT_BOOTSTRAP:
            o.bootstrap = optarg;
            break;
        case OPT_CONFIG:
            o.config = optarg;
            break;
        case OPT_BLOB_DIR:
            o.blob_dir = optarg;
            break;
        case OPT_CACHE_DIR:
            o.cache_dir = optarg;
            break;
        case OPT_APISOCK:
            o.apisock = optarg;
            break;
        case OPT_ID:
            o.id = optarg;
            break;
        case OPT_THREADS: {
            uint64_t v;
            if (cf_parse_u64(optarg, &v) || v == 0 || v > 1024) {
                free(prefetch);
                return fail("--thread-num %s: expected a number from 1 to 1024%s", optarg, "");
            }
            o.threads = (unsigned)v;
            break;
        }
        case OPT_LOG_LEVEL:
            if (cf_log_parse_level(optarg, &level)) {
                free(prefetch);
                return fail("--log-level %s: expected trace|debug|info|warn|error%s", optarg, "");
            }
            break;
        case OPT_LOG_FILE:
            log_file = optarg;
            break;
        case OPT_PREFETCH:
            /* nydusd takes several values after one --prefetch-files */
            prefetch[nprefetch++] = optarg;
            while (optind < argc && argv[optind][0] != '-') prefetch[nprefetch++] = argv[optind++];
            break;
        case OPT_METRICS:
            o.metrics_listen = optarg;
            break;
        case OPT_IMAGE:
            o.image = optarg;
            break;
        case OPT_PLATFORM:
            o.platform = optarg;
            break;
        case OPT_PLAIN_HTTP:
            o.plain_http = true;
            break;
        case OPT_SUPERVISOR:
            o.supervisor = optarg;
            break;
        case OPT_ALLOW_OTHER:
            o.allow_other = true;
            break;
        case 'V':
        case OPT_VERSION:
            version();
            free(prefetch);
            return 0;
        case 'h':
        case OPT_HELP:
            usage(stdout);
            free(prefetch);
            return 0;
        case OPT_IGNORED_ARG:
        case OPT_IGNORED_FLAG:
            break;
        default:
            free(prefetch);
            fprintf(stderr, "chunkfly-mount: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        free(prefetch);
        fprintf(stderr, "chunkfly-mount: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    o.prefetch = prefetch;
    o.nprefetch = nprefetch;
    cf_log_set_ident("chunkfly-mount");
    cf_log_set_level(level);
    int log_fd = -1;
    if (log_file) {
        log_fd = open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0) {
            free(prefetch);
            return fail("--log-file %s: %s", log_file, strerror(errno));
        }
        cf_log_set_fd(log_fd);
        o.log_to_file = true;
    }
    rc = mount_tool_run(&o);
    free(prefetch);
    if (log_fd >= 0) close(log_fd);
    return rc;
}
