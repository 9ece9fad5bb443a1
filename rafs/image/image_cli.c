/* Command-line helpers shared by the chunkfly-image subcommands. */
#include "image_cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rafs/builder.h"

int image_usage_exit(image_usage_fn usage, int opt)
{
    if (opt == 'h') {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 1;
}

int image_usage_error(const char *cmd, image_usage_fn usage, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "chunkfly-image %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    usage(stderr);
    return 1;
}

int image_parse_log_level(const char *cmd, const char *s, enum cf_log_level *lvl)
{
    if (cf_log_parse_level(s, lvl)) {
        fprintf(stderr, "chunkfly-image %s: bad log level '%s'\n", cmd, s);
        return -1;
    }
    return 0;
}

int image_parse_prefetch_policy(const char *cmd, const char *s, int *fs)
{
    if (!strcmp(s, "fs"))
        *fs = 1;
    else if (!strcmp(s, "none"))
        *fs = 0;
    else {
        fprintf(stderr, "chunkfly-image %s: --prefetch-policy '%s' not supported (fs, none)\n", cmd,
                s);
        return -1;
    }
    return 0;
}

int image_unsupported(const char *cmd, const char *option)
{
    fprintf(stderr, "chunkfly-image %s: %s is not supported\n", cmd, option);
    return 1;
}

int image_bootstrap_arg(const char *cmd, image_usage_fn usage, int argc, char **argv,
                        const char **bootstrap)
{
    if (optind < argc) {
        if (*bootstrap || optind + 1 < argc)
            return image_usage_error(cmd, usage, "exactly one BOOTSTRAP expected");
        *bootstrap = argv[optind];
    }
    if (!*bootstrap) return image_usage_error(cmd, usage, "missing BOOTSTRAP");
    return 0;
}

int image_set_log_level(const char *s)
{
    enum cf_log_level l;
    if (cf_log_parse_level(s, &l)) {
        fprintf(stderr,
                "chunkfly-image: invalid --log-level '%s' (trace, debug, info, warn, error)\n", s);
        return -1;
    }
    cf_log_set_level(l);
    return 0;
}

int image_read_prefetch(FILE *f, char ***out)
{
    cf_err err = {0};
    int rc = rafs_prefetch_read(f, out, &err);
    if (rc < 0) fprintf(stderr, "chunkfly-image: %s\n", cf_err_str(&err, rc));
    return rc < 0 ? -1 : 0;
}

void image_free_prefetch(char **list)
{
    rafs_prefetch_free(list);
}

int image_write_json(const char *path, const char *bootstrap, const char *const *blobs,
                     size_t nblobs, const char *compressor)
{
    json_t *o = json_object(), *b = json_array();
    for (size_t i = 0; i < nblobs; i++) json_array_append_new(b, json_string(blobs[i]));
    json_object_set_new(o, "version", json_string("chunkfly-" CHUNKFLY_VERSION));
    json_object_set_new(o, "bootstrap", json_string(bootstrap ? bootstrap : ""));
    json_object_set_new(o, "blobs", b);
    json_object_set_new(o, "external_bootstrap", json_string(""));
    json_object_set_new(o, "external_blobs", json_array());
    json_object_set_new(o, "trace", json_object());
    json_object_set_new(o, "fs_version", json_string("6"));
    json_object_set_new(o, "compressor", json_string(compressor ? compressor : "zstd"));
    int rc = json_dump_file(o, path, JSON_INDENT(2));
    json_decref(o);
    if (rc) {
        fprintf(stderr, "chunkfly-image: writing --output-json '%s' failed\n", path);
        return -1;
    }
    return 0;
}
