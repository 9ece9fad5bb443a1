/* Command-line helpers shared by create / merge / unpack (log level, prefetch list on stdin,
 * nydus-image style --output-json). */
#ifndef CHUNKFLY_BUILDER_CLI_H
#define CHUNKFLY_BUILDER_CLI_H

#include <stddef.h>
#include <stdio.h>

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
