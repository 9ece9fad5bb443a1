/* Reading one chunk from a data blob: read the stored bytes through the blob source, decompress
 * with the blob's compressor when the chunk is flagged compressed, and verify the digest of the
 * uncompressed data (BLAKE3 or SHA-256) so corrupt or substituted blobs are caught
 * (nydus-format.md §3.1). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cf/digest.h"
#include "cf/hex.h"
#include "rafs/compressor.h"
#include "rafs/digester.h"
#include "reader_priv.h"

int rafs_chunk_decode(const void *src, const struct rafs_chunk_ref *ref,
                      enum rafs_compressor compressor, enum rafs_digester digester, void *out,
                      cf_err *err)
{
    const char *id = ref->blob_id ? ref->blob_id : "?";
    if (ref->flags & RAFS_CHUNK_ENCRYPTED)
        return cf_err_set(err, -ENOTSUP, "chunk %u of blob %s: encrypted chunks are not supported",
                          ref->ci_index, id);
    if (ref->flags & RAFS_CHUNK_BATCH)
        return cf_err_set(err, -ENOTSUP, "chunk %u of blob %s: batch chunks are not supported",
                          ref->ci_index, id);
    int rc;
    if (ref->compressed) {
        rc = rafs_decompress(compressor, src, ref->compressed_size, out, ref->uncompressed_size,
                             err);
    } else {
        rc = rafs_decompress(RAFS_COMP_NONE, src, ref->compressed_size, out, ref->uncompressed_size,
                             err);
    }
    if (rc) return cf_err_wrap(err, rc, "chunk %u of blob %s", ref->ci_index, id);
    if (!ref->has_digest) return 0;
    uint8_t d[32];
    rc = cf_digest(rafs_cf_digest_algo(digester), out, ref->uncompressed_size, d);
    if (rc) return cf_err_set(err, rc, "digest failed");
    if (memcmp(d, ref->digest, 32) != 0) {
        char want[65], got[65];
        cf_hex_encode(ref->digest, 32, want);
        cf_hex_encode(d, 32, got);
        return cf_err_set(err, -EBADMSG,
                          "chunk %u of blob %s (compressed offset %llu): digest mismatch: expected "
                          "%s, data hashes to %s",
                          ref->ci_index, id, (unsigned long long)ref->compressed_offset, want, got);
    }
    return 0;
}

int rafs_chunk_read(const rafs_blob_source *src, const struct rafs_chunk_ref *ref,
                    enum rafs_compressor compressor, enum rafs_digester digester, void *out,
                    cf_err *err)
{
    const char *id = ref->blob_id ? ref->blob_id : "?";
    if (ref->compressed_size == 0 || ref->compressed_size > 2 * RAFS_MAX_CHUNK_SIZE ||
        ref->uncompressed_size == 0 || ref->uncompressed_size > RAFS_MAX_CHUNK_SIZE)
        return cf_err_set(err, -EBADMSG, "chunk %u of blob %s: sizes %u/%u out of range",
                          ref->ci_index, id, ref->compressed_size, ref->uncompressed_size);
    uint8_t *buf = malloc(ref->compressed_size);
    if (!buf) return cf_err_set(err, -ENOMEM, "out of memory");
    int rc = rafs_blob_source_read_full(src, buf, ref->compressed_size, ref->compressed_offset);
    if (rc) {
        rc = cf_err_set(err, rc, "chunk %u of blob %s: reading %u bytes at %llu: %s", ref->ci_index,
                        id, ref->compressed_size, (unsigned long long)ref->compressed_offset,
                        rc == -ENODATA ? "blob file too short" : cf_err_str(NULL, rc));
    } else {
        rc = rafs_chunk_decode(buf, ref, compressor, digester, out, err);
    }
    free(buf);
    return rc;
}
