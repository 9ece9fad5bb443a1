/* chunkfly-image merge: merge per-layer bootstraps into one (nydus-image CLI, §7.1/§7.2).
 * Exit codes: 0 ok, 1 error, 2 inconsistent inputs (differing chunk size/compressor...). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_cli.h"
#include "cf/log.h"
#include "image_cmds.h"
#include "rafs/builder.h"
#include "rafs/compressor.h"

static void usage(FILE *f)
{
    fprintf(
        f, "Usage: chunkfly-image merge [OPTIONS] --bootstrap <OUT> <SOURCE>...\n"
           "Merge per-layer RAFS v6 bootstraps (lowest layer first) into one, applying OCI\n"
           "(.wh.<name>, .wh..wh..opq) and overlayfs whiteouts.\n\n"
           "  -B, --bootstrap <FILE>          output bootstrap\n"
           "      --prefetch-policy <P>       fs (absolute paths on stdin), none [default: none]\n"
           "      --chunk-dict <DICT>         bootstrap=PATH or PATH the layers were built with:\n"
           "                                  its blobs keep their ids\n"
           "      --blob-digests <D1,D2..>    per source: replace the blob id (sha256:hex or hex)\n"
           "      --blob-sizes <S1,S2..>      per source: replace the blob size\n"
           "      --blob-toc-digests <T1..>   per source: replace the blob TOC digest\n"
           "      --blob-toc-sizes <..>       accepted (the TOC size is read from the layers)\n"
           "      --original-blob-ids <..>    accepted\n"
           "  -J, --output-json <FILE>        write a JSON summary (bootstrap, blobs)\n"
           "  -l, --log-level <LEVEL>         trace, debug, info, warn, error\n"
           "  -h, --help                      print this help\n");
}

enum {
    OPT_PREFETCH = 256,
    OPT_DIGESTS,
    OPT_SIZES,
    OPT_TOC_DIGESTS,
    OPT_TOC_SIZES,
    OPT_ORIG,
    OPT_CHUNK_DICT,
    OPT_PARENT,
    OPT_CONFIG
};

/* Splits a comma list into exactly n entries (NULL-padded array). */
static char **split_list(const char *s, size_t n, const char *opt)
{
    char **v = calloc(n + 1, sizeof(*v));
    char *dup = strdup(s), *save = NULL;
    size_t i = 0;
    if (!v || !dup) goto bad;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (i == n) {
            i++;
            break;
        }
        v[i++] = strdup(tok);
    }
    if (i != n) {
        fprintf(stderr, "chunkfly-image merge: %s has %zu entries, expected one per source (%zu)\n",
                opt, i, n);
        goto bad;
    }
    free(dup);
    return v;
bad:
    free(dup);
    image_free_prefetch(v);
    return NULL;
}

int cmd_merge(int argc, char **argv)
{
    static const struct option lo[] = {{"bootstrap", required_argument, 0, 'B'},
                                       {"prefetch-policy", required_argument, 0, OPT_PREFETCH},
                                       {"blob-digests", required_argument, 0, OPT_DIGESTS},
                                       {"blob-sizes", required_argument, 0, OPT_SIZES},
                                       {"blob-toc-digests", required_argument, 0, OPT_TOC_DIGESTS},
                                       {"blob-toc-sizes", required_argument, 0, OPT_TOC_SIZES},
                                       {"original-blob-ids", required_argument, 0, OPT_ORIG},
                                       {"chunk-dict", required_argument, 0, OPT_CHUNK_DICT},
                                       {"parent-bootstrap", required_argument, 0, OPT_PARENT},
                                       {"config", required_argument, 0, 'C'},
                                       {"output-json", required_argument, 0, 'J'},
                                       {"log-level", required_argument, 0, 'l'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *out = NULL, *json = NULL, *digests = NULL, *sizes = NULL, *tocd = NULL;
    int prefetch_fs = 0, c;
    const char *dict_arg = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "B:C:J:l:h", lo, NULL)) != -1) {
        switch (c) {
        case 'B':
            out = optarg;
            break;
        case OPT_PREFETCH:
            if (image_parse_prefetch_policy("merge", optarg, &prefetch_fs)) return 1;
            break;
        case OPT_DIGESTS:
            digests = optarg;
            break;
        case OPT_SIZES:
            sizes = optarg;
            break;
        case OPT_TOC_DIGESTS:
            tocd = optarg;
            break;
        case OPT_TOC_SIZES:
        case OPT_ORIG:
        case 'C':
            break;
        case OPT_CHUNK_DICT:
            dict_arg = optarg;
            break;
        case OPT_PARENT:
            return image_unsupported("merge", "--parent-bootstrap");
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
    size_t n = (size_t)(argc - optind);
    if (!out || !n) {
        return image_usage_error("merge", usage,
                                 "--bootstrap and at least one SOURCE are required");
    }
    struct rafs_merge_opts o = {.sources = (const char *const *)(argv + optind),
                                .nsources = n,
                                .whiteout = RAFS_WHITEOUT_OCI};
    char **dl = NULL, **sl = NULL, **tl = NULL, **pf = NULL;
    int ret = 1;
    if ((digests && !(dl = split_list(digests, n, "--blob-digests"))) ||
        (sizes && !(sl = split_list(sizes, n, "--blob-sizes"))) ||
        (tocd && !(tl = split_list(tocd, n, "--blob-toc-digests"))))
        goto out;
    o.blob_digests = (const char *const *)dl;
    o.blob_sizes = (const char *const *)sl;
    o.blob_toc_digests = (const char *const *)tl;
    if (dict_arg) {
        cf_err derr = {0};
        int drc = rafs_chunk_dict_arg(dict_arg, &o.chunk_dict, &derr);
        if (drc) {
            fprintf(stderr, "chunkfly-image merge: %s\n", cf_err_str(&derr, drc));
            goto out;
        }
    }
    if (prefetch_fs) {
        if (image_read_prefetch(stdin, &pf)) goto out;
        o.prefetch = (const char *const *)pf;
    }
    cf_err err = {0};
    char **ids = NULL;
    size_t nids = 0;
    enum rafs_compressor comp = RAFS_COMP_ZSTD;
    int rc = rafs_merge(&o, out, &ids, &nids, &comp, &err);
    if (rc) {
        fprintf(stderr, "chunkfly-image merge: %s\n", cf_err_str(&err, rc));
        ret = rc == RAFS_MERGE_INCONSISTENT ? 2 : 1;
        goto out;
    }
    cf_info("merged %zu bootstraps into %s, %zu blobs", n, out, nids);
    ret = 0;
    if (json &&
        image_write_json(json, out, (const char *const *)ids, nids, rafs_compressor_name(comp)))
        ret = 1;
    rafs_merge_free_ids(ids, nids);
out:
    image_free_prefetch(dl);
    image_free_prefetch(sl);
    image_free_prefetch(tl);
    image_free_prefetch(pf);
    return ret;
}
