/* chunkfly-image create: build a RAFS v6 bootstrap + data blob from a tar or a directory,
 * with the nydus-image command line (nydus-format.md §7.1/§7.2). */
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf/digest.h"
#include "cf/log.h"
#include "cf/parse_number.h"
#include "image_cmds.h"
#include "image_cli.h"
#include "rafs/builder.h"
#include "rafs/compressor.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: chunkfly-image create [OPTIONS] SOURCE\n"
        "Build a RAFS v6 (Nydus) bootstrap and data blob from SOURCE (a tar file, FIFO or\n"
        "/dev/stdin for tar-rafs; a directory for dir-rafs).\n\n"
        "Options:\n"
        "  -t, --type <TYPE>            source type: tar-rafs, dir-rafs (alias directory)\n"
        "                               [default: dir-rafs] (alias --source-type)\n"
        "  -B, --bootstrap <FILE>       write the bootstrap (RAFS metadata) to FILE\n"
        "  -b, --blob <FILE>            write the data blob to FILE (may be a FIFO)\n"
        "  -D, --blob-dir <DIR>         write the blob (and bootstrap) into DIR, named by digest\n"
        "      --blob-cache-dir <DIR>   also write <blob_id>.blob.data and <blob_id>.blob.meta\n"
        "      --blob-id <ID>           use ID as the blob id instead of its digest\n"
        "      --blob-inline-meta       embed the bootstrap in the blob (alias "
        "--inline-bootstrap)\n"
        "      --features <LIST>        blob features: blob-toc\n"
        "  -v, --fs-version <VER>       RAFS version: 6 [default: 6] (5 is not supported)\n"
        "      --chunk-size <SIZE>      chunk size, power of two 0x1000..0x1000000 [default: "
        "0x100000]\n"
        "      --compressor <ALGO>      none, lz4_block, zstd [default: zstd]\n"
        "      --digester <ALGO>        blake3, sha256 [default: blake3]\n"
        "      --whiteout-spec <SPEC>   oci, overlayfs, none [default: oci]\n"
        "      --prefetch-policy <P>    fs (absolute paths on stdin), none [default: none]\n"
        "      --chunk-dict <DICT>      bootstrap=PATH or PATH: chunks of that bootstrap are\n"
        "                               not stored again, its blobs are referenced instead\n"
        "      --aligned-chunk          accepted (RAFS v6 chunks are always 4 KiB aligned)\n"
        "      --batch-size <SIZE>      0 only (batch chunks are not supported) [default: 0]\n"
        "  -E, --encrypt                encrypt chunks (not supported)\n"
        "      --threads <N>            compression threads [default: online CPUs]\n"
        "  -J, --output-json <FILE>     write a JSON summary (bootstrap, blobs...) to FILE\n"
        "  -l, --log-level <LEVEL>      trace, debug, info, warn, error [default: info]\n"
        "  -h, --help                   print this help\n");
}

enum {
    OPT_CACHE_DIR = 256,
    OPT_BLOB_ID,
    OPT_INLINE,
    OPT_FEATURES,
    OPT_CHUNK_SIZE,
    OPT_COMPRESSOR,
    OPT_DIGESTER,
    OPT_WHITEOUT,
    OPT_PREFETCH,
    OPT_ALIGNED,
    OPT_BATCH,
    OPT_THREADS,
    OPT_CHUNK_DICT,
    OPT_PARENT,
    OPT_REPEATABLE,
};

int cmd_create(int argc, char **argv)
{
    static const struct option lo[] = {{"type", required_argument, 0, 't'},
                                       {"source-type", required_argument, 0, 't'},
                                       {"bootstrap", required_argument, 0, 'B'},
                                       {"blob", required_argument, 0, 'b'},
                                       {"blob-dir", required_argument, 0, 'D'},
                                       {"blob-cache-dir", required_argument, 0, OPT_CACHE_DIR},
                                       {"blob-id", required_argument, 0, OPT_BLOB_ID},
                                       {"blob-inline-meta", no_argument, 0, OPT_INLINE},
                                       {"inline-bootstrap", no_argument, 0, OPT_INLINE},
                                       {"features", required_argument, 0, OPT_FEATURES},
                                       {"fs-version", required_argument, 0, 'v'},
                                       {"chunk-size", required_argument, 0, OPT_CHUNK_SIZE},
                                       {"compressor", required_argument, 0, OPT_COMPRESSOR},
                                       {"digester", required_argument, 0, OPT_DIGESTER},
                                       {"whiteout-spec", required_argument, 0, OPT_WHITEOUT},
                                       {"prefetch-policy", required_argument, 0, OPT_PREFETCH},
                                       {"aligned-chunk", no_argument, 0, OPT_ALIGNED},
                                       {"batch-size", required_argument, 0, OPT_BATCH},
                                       {"encrypt", no_argument, 0, 'E'},
                                       {"threads", required_argument, 0, OPT_THREADS},
                                       {"chunk-dict", required_argument, 0, OPT_CHUNK_DICT},
                                       {"parent-bootstrap", required_argument, 0, OPT_PARENT},
                                       {"output-json", required_argument, 0, 'J'},
                                       {"log-level", required_argument, 0, 'l'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    struct rafs_create_opts o = {0};
    o.blob_opts.chunk_size = RAFS_DEFAULT_CHUNK_SIZE;
    o.blob_opts.compressor = RAFS_COMP_ZSTD;
    o.blob_opts.digester = RAFS_DIGEST_BLAKE3;
    o.blob_opts.zstd_level = 3;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.blob_opts.threads = ncpu < 1 ? 1 : ncpu > 16 ? 16 : (unsigned)ncpu;
    o.whiteout = RAFS_WHITEOUT_OCI;
    const char *json = NULL, *type = "dir-rafs";
    int prefetch_fs = 0, c;
    const char *dict_arg = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:B:b:D:v:EJ:l:h", lo, NULL)) != -1) {
        uint64_t v;
        switch (c) {
        case 't':
            type = optarg;
            break;
        case 'B':
            o.bootstrap = optarg;
            break;
        case 'b':
            o.blob = optarg;
            break;
        case 'D':
            o.blob_dir = optarg;
            break;
        case OPT_CACHE_DIR:
            o.blob_cache_dir = optarg;
            break;
        case OPT_BLOB_ID:
            o.blob_id = optarg;
            break;
        case OPT_INLINE:
            o.blob_opts.inline_meta = 1;
            break;
        case OPT_FEATURES: {
            char *dup = strdup(optarg), *save = NULL;
            for (char *tok = strtok_r(dup, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
                if (!strcmp(tok, "blob-toc"))
                    o.blob_opts.blob_toc = 1;
                else {
                    fprintf(stderr,
                            "chunkfly-image create: unknown feature '%s' (supported: blob-toc)\n",
                            tok);
                    free(dup);
                    return 1;
                }
            }
            free(dup);
            break;
        }
        case 'v':
            if (!strcmp(optarg, "5")) {
                fprintf(
                    stderr,
                    "chunkfly-image create: RAFS v5 (--fs-version 5) is not supported, use 6\n");
                return 1;
            }
            if (strcmp(optarg, "6")) {
                fprintf(stderr, "chunkfly-image create: invalid --fs-version '%s' (6)\n", optarg);
                return 1;
            }
            break;
        case OPT_CHUNK_SIZE:
            if (cf_parse_u64(optarg, &v) || v < RAFS_MIN_CHUNK_SIZE || v > RAFS_MAX_CHUNK_SIZE ||
                (v & (v - 1))) {
                fprintf(stderr,
                        "chunkfly-image create: --chunk-size '%s' must be a power of two "
                        "between 0x1000 and 0x1000000\n",
                        optarg);
                return 1;
            }
            o.blob_opts.chunk_size = (uint32_t)v;
            break;
        case OPT_COMPRESSOR:
            if (rafs_compressor_parse(optarg, &o.blob_opts.compressor) ||
                o.blob_opts.compressor == RAFS_COMP_GZIP) {
                fprintf(stderr,
                        "chunkfly-image create: --compressor '%s' not supported (none, lz4_block, "
                        "zstd)\n",
                        optarg);
                return 1;
            }
            break;
        case OPT_DIGESTER: {
            enum cf_digest_algo a;
            if (cf_digest_algo_parse(optarg, &a)) {
                fprintf(stderr,
                        "chunkfly-image create: --digester '%s' not supported (blake3, sha256)\n",
                        optarg);
                return 1;
            }
            o.blob_opts.digester = a == CF_DIGEST_SHA256 ? RAFS_DIGEST_SHA256 : RAFS_DIGEST_BLAKE3;
            break;
        }
        case OPT_WHITEOUT:
            if (!strcmp(optarg, "oci"))
                o.whiteout = RAFS_WHITEOUT_OCI;
            else if (!strcmp(optarg, "overlayfs"))
                o.whiteout = RAFS_WHITEOUT_OVERLAYFS;
            else if (!strcmp(optarg, "none"))
                o.whiteout = RAFS_WHITEOUT_NONE;
            else {
                fprintf(stderr,
                        "chunkfly-image create: --whiteout-spec '%s' (oci, overlayfs, none)\n",
                        optarg);
                return 1;
            }
            break;
        case OPT_PREFETCH:
            if (image_parse_prefetch_policy("create", optarg, &prefetch_fs)) return 1;
            break;
        case OPT_ALIGNED:
            break;
        case OPT_BATCH:
            if (cf_parse_u64(optarg, &v) || v != 0) {
                fprintf(stderr,
                        "chunkfly-image create: --batch-size '%s' is not supported (only 0)\n",
                        optarg);
                return 1;
            }
            break;
        case 'E':
            return image_unsupported("create", "--encrypt");
        case OPT_THREADS:
            if (cf_parse_u64(optarg, &v) || v > 64) {
                fprintf(stderr, "chunkfly-image create: --threads '%s' (0..64)\n", optarg);
                return 1;
            }
            o.blob_opts.threads = (unsigned)v;
            break;
        case OPT_CHUNK_DICT:
            dict_arg = optarg;
            break;
        case OPT_PARENT:
            return image_unsupported("create", "--parent-bootstrap");
        case 'J':
            json = optarg;
            break;
        case 'l':
            if (image_set_log_level(optarg)) return 1;
            break;
        default:
            return image_usage_exit(usage, c);
        }
    }
    if (optind != argc - 1) {
        return image_usage_error("create", usage, "exactly one SOURCE is required");
    }
    o.source = argv[optind];
    if (!strcmp(type, "dir-rafs") || !strcmp(type, "directory"))
        o.source_is_dir = 1;
    else if (!strcmp(type, "tar-rafs"))
        o.source_is_dir = 0;
    else {
        fprintf(stderr,
                "chunkfly-image create: --type '%s' is not supported (tar-rafs, dir-rafs)\n", type);
        return 1;
    }
    struct rafs_chunk_dict dict;
    if (dict_arg) {
        const char *path;
        cf_err derr = {0};
        int drc = rafs_chunk_dict_arg(dict_arg, &path, &derr);
        if (drc == 0) drc = rafs_chunk_dict_load(path, &dict, &derr);
        if (drc) {
            fprintf(stderr, "chunkfly-image create: %s\n", cf_err_str(&derr, drc));
            return 1;
        }
        o.chunk_dict = &dict;
    }
    char **pf = NULL;
    if (prefetch_fs) {
        if (!strcmp(o.source, "/dev/stdin") || !strcmp(o.source, "-")) {
            fprintf(stderr, "chunkfly-image create: --prefetch-policy fs reads stdin, which is "
                            "also the SOURCE\n");
            return 1;
        }
        if (image_read_prefetch(stdin, &pf)) return 1;
        o.prefetch = (const char *const *)pf;
    }
    signal(SIGPIPE, SIG_IGN); /* a reader closing the blob FIFO becomes an EPIPE error */
    struct rafs_create_result *res = calloc(1, sizeof(*res));
    cf_err err = {0};
    int rc = res ? rafs_create(&o, res, &err) : -ENOMEM;
    image_free_prefetch(pf);
    if (dict_arg) rafs_chunk_dict_free(&dict);
    if (rc) {
        fprintf(stderr, "chunkfly-image create: %s\n", cf_err_str(&err, rc));
        free(res);
        return 1;
    }
    cf_info("meta blob path: %s", res->bootstrap_path[0] ? res->bootstrap_path : "(inline)");
    cf_info("data blob size: 0x%llx", (unsigned long long)res->blob.blob_size);
    cf_info("data blobs: [\"%s\"]", res->has_blob ? res->blob_id : "");
    cf_info("summary: %llu entries, %llu file bytes, %u chunks, blob %llu bytes",
            (unsigned long long)res->entries, (unsigned long long)res->blob.file_bytes,
            res->blob.chunk_count, (unsigned long long)res->blob.blob_size);
    if (dict_arg)
        cf_info("chunk dict: %u chunks (%llu bytes) not stored again, %u dictionary blobs "
                "referenced",
                res->dict_chunks, (unsigned long long)res->dict_bytes, res->dict_blobs);
    if (json) {
        const char *blobs[1] = {res->blob_id};
        if (image_write_json(json, res->bootstrap_path, blobs, res->has_blob ? 1 : 0,
                             rafs_compressor_name(o.blob_opts.compressor))) {
            free(res);
            return 1;
        }
    }
    free(res);
    return 0;
}
