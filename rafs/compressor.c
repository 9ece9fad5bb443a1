/* zstd / lz4_block / none chunk codecs, strict about sizes so corrupt blobs fail cleanly. */
#include "rafs/compressor.h"

#include <lz4.h>
#include <string.h>
#include <zstd.h>

static const char *const names[] = {"none", "lz4_block", "gzip", "zstd"};

const char *rafs_compressor_name(enum rafs_compressor c)
{
    return (unsigned)c < 4 ? names[c] : "unknown";
}

int rafs_compressor_parse(const char *name, enum rafs_compressor *out)
{
    for (unsigned i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum rafs_compressor)i;
            return 0;
        }
    }
    return -EINVAL;
}

uint64_t rafs_compressor_flag(enum rafs_compressor c)
{
    switch (c) {
    case RAFS_COMP_NONE:
        return RAFS_FLAG_COMPRESSION_NONE;
    case RAFS_COMP_LZ4_BLOCK:
        return RAFS_FLAG_COMPRESSION_LZ4;
    case RAFS_COMP_GZIP:
        return RAFS_FLAG_COMPRESSION_GZIP;
    case RAFS_COMP_ZSTD:
        return RAFS_FLAG_COMPRESSION_ZSTD;
    }
    return 0;
}

int rafs_compressor_from_flags(uint64_t flags, enum rafs_compressor *out)
{
    switch (flags & RAFS_FLAG_COMPRESSION_MASK) {
    case RAFS_FLAG_COMPRESSION_NONE:
        *out = RAFS_COMP_NONE;
        return 0;
    case RAFS_FLAG_COMPRESSION_LZ4:
        *out = RAFS_COMP_LZ4_BLOCK;
        return 0;
    case RAFS_FLAG_COMPRESSION_GZIP:
        *out = RAFS_COMP_GZIP;
        return 0;
    case RAFS_FLAG_COMPRESSION_ZSTD:
        *out = RAFS_COMP_ZSTD;
        return 0;
    default:
        return -EBADMSG;
    }
}

size_t rafs_compress_bound(enum rafs_compressor c, size_t len)
{
    switch (c) {
    case RAFS_COMP_ZSTD:
        return ZSTD_compressBound(len);
    case RAFS_COMP_LZ4_BLOCK:
        return (size_t)LZ4_compressBound((int)len);
    default:
        return len;
    }
}

int rafs_compress(enum rafs_compressor c, int level, const void *src, size_t len, void *dst,
                  size_t dst_cap, size_t *out_len)
{
    switch (c) {
    case RAFS_COMP_NONE:
        if (dst_cap < len) return -ENOSPC;
        memcpy(dst, src, len);
        *out_len = len;
        return 0;
    case RAFS_COMP_ZSTD: {
        size_t n = ZSTD_compress(dst, dst_cap, src, len, level);
        if (ZSTD_isError(n)) return -ENOSPC;
        *out_len = n;
        return 0;
    }
    case RAFS_COMP_LZ4_BLOCK: {
        if (len > (size_t)LZ4_MAX_INPUT_SIZE) return -EINVAL;
        int n = LZ4_compress_default(src, dst, (int)len,
                                     (int)(dst_cap > INT32_MAX ? INT32_MAX : dst_cap));
        if (n <= 0) return -ENOSPC;
        *out_len = (size_t)n;
        return 0;
    }
    default:
        return -ENOTSUP;
    }
}

int rafs_decompress(enum rafs_compressor c, const void *src, size_t src_len, void *dst,
                    size_t dst_len, cf_err *err)
{
    switch (c) {
    case RAFS_COMP_NONE:
        if (src_len != dst_len)
            return cf_err_set(err, -EBADMSG, "uncompressed chunk is %zu bytes, expected %zu",
                              src_len, dst_len);
        memcpy(dst, src, dst_len);
        return 0;
    case RAFS_COMP_ZSTD: {
        size_t n = ZSTD_decompress(dst, dst_len, src, src_len);
        if (ZSTD_isError(n)) return cf_err_set(err, -EBADMSG, "zstd: %s", ZSTD_getErrorName(n));
        if (n != dst_len)
            return cf_err_set(err, -EBADMSG, "zstd chunk inflated to %zu bytes, expected %zu", n,
                              dst_len);
        return 0;
    }
    case RAFS_COMP_LZ4_BLOCK: {
        if (src_len > INT32_MAX || dst_len > INT32_MAX)
            return cf_err_set(err, -EBADMSG, "lz4 chunk too large");
        int n = LZ4_decompress_safe(src, dst, (int)src_len, (int)dst_len);
        if (n < 0 || (size_t)n != dst_len)
            return cf_err_set(err, -EBADMSG, "lz4_block chunk is corrupt (got %d of %zu bytes)", n,
                              dst_len);
        return 0;
    }
    default:
        return cf_err_set(err, -ENOTSUP, "%s chunks are not supported", rafs_compressor_name(c));
    }
}
