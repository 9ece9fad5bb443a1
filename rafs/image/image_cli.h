/* Command-line helpers shared by the chunkfly-image subcommands (usage / argument errors,
 * log level, BOOTSTRAP argument, prefetch list on stdin, nydus-image style --output-json), so
 * each command keeps only its own options. */
#ifndef CHUNKFLY_IMAGE_CLI_H
#define CHUNKFLY_IMAGE_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "cf/log.h"

/* Prints a command's usage text to f. */
typedef void (*image_usage_fn)(FILE *f);

/* Ends option parsing on -h (usage to stdout, returns 0) or on a getopt error (any other opt:
 * usage to stderr, returns 1). The result is the command's exit code. */
int image_usage_exit(image_usage_fn usage, int opt);
/* Prints "chunkfly-image CMD: <message>", then usage to stderr; returns 1 (the exit code). */
int image_usage_error(const char *cmd, image_usage_fn usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Parses --log-level into *lvl without applying it (check / inspect apply it after parsing);
 * prints "chunkfly-image CMD: bad log level" and returns -1 when invalid. */
int image_parse_log_level(const char *cmd, const char *s, enum cf_log_level *lvl);
/* Parses --prefetch-policy (fs, none) into *fs; prints the problem and returns -1 when not
 * supported. */
int image_parse_prefetch_policy(const char *cmd, const char *s, int *fs);
/* Prints "chunkfly-image CMD: OPTION is not supported"; returns 1 (the exit code). */
int image_unsupported(const char *cmd, const char *option);
/* Takes BOOTSTRAP from -B (*bootstrap, may be NULL) or the only argument left at optind.
 * Returns 0, or prints the problem and usage and returns 1 (the exit code). */
int image_bootstrap_arg(const char *cmd, image_usage_fn usage, int argc, char **argv,
                        const char **bootstrap);

/* Parses and applies --log-level; prints an error and returns -1 when invalid. */
int image_set_log_level(const char *s);
/* Reads absolute paths, one per line, until EOF; *out is a NULL-terminated array. */
int image_read_prefetch(FILE *f, char ***out);
void image_free_prefetch(char **list);
/* Writes {"version", "bootstrap", "blobs", "external_bootstrap", "external_blobs", "trace",
 * "fs_version", "compressor"} pretty-printed to path. Returns 0 or -1 (message printed). */
int image_write_json(const char *path, const char *bootstrap, const char *const *blobs,
                     size_t nblobs, const char *compressor);

#endif
