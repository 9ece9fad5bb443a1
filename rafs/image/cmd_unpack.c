/* chunkfly-image unpack: write the filesystem of a RAFS image as a PAX tar (nydus-image CLI). */
#include <getopt.h>
#include <stdio.h>

#include "image_cli.h"
#include "image_cmds.h"
#include "rafs/builder.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: chunkfly-image unpack --bootstrap <FILE> (--blob <FILE> | -D <DIR>) "
               "--output <TAR>\n"
               "  -B, --bootstrap <FILE>   bootstrap (may also be given as the only argument)\n"
               "  -b, --blob <FILE>        data blob (single-blob images)\n"
               "  -D, --blob-dir <DIR>     directory of blobs named by blob id\n"
               "  -o, --output <TAR>       output tar (PAX)\n"
               "  -l, --log-level <LEVEL>  trace, debug, info, warn, error\n");
}

int cmd_unpack(int argc, char **argv)
{
    static const struct option lo[] = {{"bootstrap", required_argument, 0, 'B'},
                                       {"blob", required_argument, 0, 'b'},
                                       {"blob-dir", required_argument, 0, 'D'},
                                       {"output", required_argument, 0, 'o'},
                                       {"log-level", required_argument, 0, 'l'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *boot = NULL, *blob = NULL, *dir = NULL, *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "B:b:D:o:l:h", lo, NULL)) != -1) {
        switch (c) {
        case 'B':
            boot = optarg;
            break;
        case 'b':
            blob = optarg;
            break;
        case 'D':
            dir = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'l':
            if (image_set_log_level(optarg)) return 1;
            break;
        default:
            return image_usage_exit(usage, c);
        }
    }
    if (!boot && optind == argc - 1) boot = argv[optind++];
    if (!boot || !out || optind != argc || (!blob && !dir)) {
        return image_usage_error("unpack", usage,
                                 "--bootstrap, --output and --blob or --blob-dir are required");
    }
    cf_err err = {0};
    int rc = rafs_unpack(boot, blob, dir, out, &err);
    if (rc) {
        fprintf(stderr, "chunkfly-image unpack: %s\n", cf_err_str(&err, rc));
        return 1;
    }
    return 0;
}
