/* Chunk (de)compression as Nydus does it: zstd frames, raw LZ4 blocks (no frame, no size
 * prefix), or none. Thread-safe: no shared state (zstd contexts are per call or per caller). */
#ifndef RAFS_COMPRESSOR_H
#define RAFS_COMPRESSOR_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"
#include "rafs/ondisk.h"

const char *rafs_compressor_name(enum rafs_compressor c); /* "none","lz4_block","gzip","zstd" */
int rafs_compressor_parse(const char *name, enum rafs_compressor *out); /* 0 or -EINVAL */
/* RAFS_FLAG_COMPRESSION_* superblock bit for a compressor, and back (-EBADMSG when flags do
 * not hold exactly one compression bit). */
uint64_t rafs_compressor_flag(enum rafs_compressor c);
int rafs_compressor_from_flags(uint64_t flags, enum rafs_compressor *out);

/* Upper bound of compressed size for `len` input bytes. */
size_t rafs_compress_bound(enum rafs_compressor c, size_t len);

/* Compresses src into dst (capacity dst_cap >= rafs_compress_bound). *out_len receives the
 * compressed size. Returns 0, or -ENOSPC when the output would not fit, -ENOTSUP for gzip.
 * `level` applies to zstd (Nydus uses 3). */
int rafs_compress(enum rafs_compressor c, int level, const void *src, size_t len, void *dst,
                  size_t dst_cap, size_t *out_len);

/* Decompresses exactly `dst_len` bytes (the known uncompressed size) from src. Any other
 * outcome (short output, trailing garbage, corrupt input) is -EBADMSG with a message. */
int rafs_decompress(enum rafs_compressor c, const void *src, size_t src_len, void *dst,
                    size_t dst_len, cf_err *err);

#endif
