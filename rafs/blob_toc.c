/* The reverse-tar tail of Nydus blobs: the last 512-byte GNU tar header names "rafs.blob.toc",
 * whose 128-byte entries precede it and locate blob.meta, blob.meta.header, blob.digest and
 * image.boot (nydus-format.md §3.2, §3.5). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cf/digest.h"
#include "rafs/compressor.h"
#include "reader_priv.h"

/* Octal (NUL/space terminated, leading spaces allowed) or GNU base-256 numeric field. */
static int tar_number(const uint8_t *f, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (f[0] & 0x80) {
        if (f[0] != 0x80) return -1; /* negative or too large */
        for (size_t i = 1; i < n; i++) {
            if (v >> 56) return -1;
            v = (v << 8) | f[i];
        }
        *out = v;
        return 0;
    }
    size_t i = 0;
    while (i < n && f[i] == ' ') i++;
    size_t digits = 0;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
        if (v >> 60) return -1;
        v = (v << 3) | (uint64_t)(f[i] - '0');
    }
    if (!digits) return -1;
    for (; i < n; i++)
        if (f[i] != 0 && f[i] != ' ') return -1;
    *out = v;
    return 0;
}

/* Validates a tar header; returns its member name (NUL-terminated copy) and size. */
static int tar_header(const uint8_t *h, char name[101], uint64_t *size, cf_err *err)
{
    if (memcmp(h + 257, "ustar", 5) != 0)
        return cf_err_set(err, -EBADMSG,
                          "blob tail: last 512 bytes are not a tar header (no ustar magic)");
    uint64_t sum = 0, want;
    for (size_t i = 0; i < RAFS_TAR_BLOCK; i++) sum += (i >= 148 && i < 156) ? ' ' : h[i];
    if (tar_number(h + 148, 8, &want) || want != sum)
        return cf_err_set(err, -EBADMSG, "blob tail: tar header checksum mismatch");
    if (h[156] != '0' && h[156] != 0)
        return cf_err_set(err, -EBADMSG, "blob tail: tar member type '%c' is not a regular file",
                          h[156]);
    if (tar_number(h + 124, 12, size))
        return cf_err_set(err, -EBADMSG, "blob tail: bad tar size field");
    memcpy(name, h, 100);
    name[100] = 0;
    return 0;
}

int rafs_blob_toc_parse(const void *tail, size_t tail_len, uint64_t blob_size,
                        struct rafs_blob_toc *out, cf_err *err)
{
    const uint8_t *t = tail;
    char name[101];
    uint64_t size;
    memset(out, 0, sizeof(*out));
    if (tail_len > blob_size)
        return cf_err_set(err, -EINVAL, "blob tail of %zu bytes > blob size %llu", tail_len,
                          (unsigned long long)blob_size);
    if (tail_len < RAFS_TAR_BLOCK)
        return cf_err_set(err, -EBADMSG, "blob of %llu bytes too small for a TOC",
                          (unsigned long long)blob_size);
    const uint8_t *h = t + tail_len - RAFS_TAR_BLOCK;
    int rc = tar_header(h, name, &size, err);
    if (rc) return rc;
    if (strcmp(name, RAFS_TOC_NAME_TOC) != 0)
        return cf_err_set(err, -ENOENT, "blob tail: last tar member is '%s', not %s", name,
                          RAFS_TOC_NAME_TOC);
    if (size == 0 || size % RAFS_TOC_ENTRY_SIZE || size + RAFS_TAR_BLOCK > RAFS_TOC_MAX_SIZE)
        return cf_err_set(err, -EBADMSG, "TOC: size %llu not a non-zero multiple of 128 below %u",
                          (unsigned long long)size, RAFS_TOC_MAX_SIZE);
    if (size + RAFS_TAR_BLOCK > tail_len)
        return cf_err_set(err, -EBADMSG, "TOC: %llu bytes of entries do not fit the %zu-byte tail",
                          (unsigned long long)size, tail_len);
    const uint8_t *e = h - size;
    out->count = (uint32_t)(size / RAFS_TOC_ENTRY_SIZE);
    out->offset = blob_size - RAFS_TAR_BLOCK - size;
    out->size = (uint32_t)(size + RAFS_TAR_BLOCK);
    if ((rc = cf_sha256(e, out->size, out->digest)))
        return cf_err_set(err, rc, "TOC: sha256 failed");
    for (uint32_t i = 0; i < out->count; i++) {
        struct rafs_toc_entry te;
        struct rafs_toc_item *it = &out->items[i];
        memcpy(&te, e + (size_t)i * RAFS_TOC_ENTRY_SIZE, sizeof(te));
        it->flags = rafs_le32(te.flags);
        memcpy(it->name, te.name, 16);
        it->name[16] = 0;
        size_t nl = strlen(it->name);
        for (size_t j = nl; j < 16; j++)
            if (te.name[j])
                return cf_err_set(err, -EBADMSG, "TOC entry %u: name not NUL padded", i);
        if (nl == 0) return cf_err_set(err, -EBADMSG, "TOC entry %u: empty name", i);
        for (size_t j = 0; j < nl; j++)
            if ((uint8_t)it->name[j] < 0x21 || (uint8_t)it->name[j] > 0x7e)
                return cf_err_set(err, -EBADMSG, "TOC entry %u: name not printable ASCII", i);
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(out->items[j].name, it->name))
                return cf_err_set(err, -EBADMSG, "TOC: duplicate entry '%s'", it->name);
        memcpy(it->digest, te.uncompressed_digest, 32);
        it->compressed_offset = rafs_le64(te.compressed_offset);
        it->compressed_size = rafs_le64(te.compressed_size);
        it->uncompressed_size = rafs_le64(te.uncompressed_size);
        switch (it->flags) {
        case RAFS_TOC_FLAG_NONE:
            it->compressor = RAFS_COMP_NONE;
            break;
        case RAFS_TOC_FLAG_ZSTD:
            it->compressor = RAFS_COMP_ZSTD;
            break;
        case RAFS_TOC_FLAG_LZ4_BLOCK:
            it->compressor = RAFS_COMP_LZ4_BLOCK;
            break;
        default:
            return cf_err_set(err, -EBADMSG,
                              "TOC entry '%s': flags 0x%x (need exactly one of "
                              "none/zstd/lz4_block)",
                              it->name, it->flags);
        }
        /* image.blob of 2.2-era builders holds the end of data in compressed_offset: its
         * extent is not meaningful, every other entry must lie before the TOC */
        if (strcmp(it->name, RAFS_TOC_NAME_BLOB) == 0) continue;
        if (!rafs_range_ok(it->compressed_offset, it->compressed_size, out->offset))
            return cf_err_set(
                err, -EBADMSG, "TOC entry '%s': extent [%llu, +%llu) not before the TOC at %llu",
                it->name, (unsigned long long)it->compressed_offset,
                (unsigned long long)it->compressed_size, (unsigned long long)out->offset);
        if (it->compressor == RAFS_COMP_NONE && it->compressed_size != it->uncompressed_size)
            return cf_err_set(err, -EBADMSG, "TOC entry '%s': uncompressed but sizes %llu != %llu",
                              it->name, (unsigned long long)it->compressed_size,
                              (unsigned long long)it->uncompressed_size);
    }
    return 0;
}

int rafs_blob_toc_read(const rafs_blob_source *src, struct rafs_blob_toc *out, cf_err *err)
{
    uint8_t buf[RAFS_TOC_MAX_SIZE];
    uint64_t blob_size;
    int rc = rafs_blob_source_size(src, &blob_size);
    if (rc) return cf_err_set(err, rc, "blob size: %s", cf_err_str(NULL, rc));
    size_t n = blob_size < RAFS_TOC_MAX_SIZE ? (size_t)blob_size : RAFS_TOC_MAX_SIZE;
    rc = rafs_blob_source_read_full(src, buf, n, blob_size - n);
    if (rc) return cf_err_set(err, rc, "reading blob tail: %s", cf_err_str(NULL, rc));
    return rafs_blob_toc_parse(buf, n, blob_size, out, err);
}

int rafs_blob_toc_verify(const struct rafs_blob_toc *toc, const struct rafs_blob_info *bi,
                         cf_err *err)
{
    if (bi->toc_size && bi->toc_size != toc->size)
        return cf_err_set(err, -EBADMSG, "blob %s: TOC is %u bytes, blob table says %u", bi->id,
                          toc->size, bi->toc_size);
    if (bi->has_toc_digest && memcmp(bi->toc_digest, toc->digest, 32) != 0)
        return cf_err_set(err, -EBADMSG, "blob %s: TOC digest differs from blob table", bi->id);
    return 0;
}

const struct rafs_toc_item *rafs_blob_toc_find(const struct rafs_blob_toc *toc, const char *name)
{
    for (uint32_t i = 0; i < toc->count; i++)
        if (!strcmp(toc->items[i].name, name)) return &toc->items[i];
    return NULL;
}

int rafs_blob_toc_read_item(const rafs_blob_source *src, const struct rafs_toc_item *item,
                            size_t max_len, uint8_t **out, size_t *out_len, cf_err *err)
{
    *out = NULL;
    *out_len = 0;
    if (item->uncompressed_size > max_len)
        return cf_err_set(err, -EFBIG, "TOC entry '%s': %llu bytes over the %zu-byte limit",
                          item->name, (unsigned long long)item->uncompressed_size, max_len);
    size_t clim = rafs_compress_bound(item->compressor, max_len) + 4096;
    if (item->compressed_size > clim)
        return cf_err_set(err, -EBADMSG, "TOC entry '%s': compressed size %llu implausible",
                          item->name, (unsigned long long)item->compressed_size);
    size_t clen = (size_t)item->compressed_size, ulen = (size_t)item->uncompressed_size;
    if (item->compressor == RAFS_COMP_NONE && clen != ulen)
        return cf_err_set(err, -EBADMSG, "TOC entry '%s': uncompressed but sizes %zu != %zu",
                          item->name, clen, ulen);
    uint8_t *c = malloc(clen ? clen : 1), *u = NULL;
    int rc;
    if (!c) return cf_err_set(err, -ENOMEM, "out of memory");
    rc = rafs_blob_source_read_full(src, c, clen, item->compressed_offset);
    if (rc) {
        rc = cf_err_set(err, rc, "TOC entry '%s': read failed: %s", item->name,
                        cf_err_str(NULL, rc));
        goto fail;
    }
    if (item->compressor == RAFS_COMP_NONE) {
        u = c;
        c = NULL;
    } else {
        u = malloc(ulen ? ulen : 1);
        if (!u) {
            rc = cf_err_set(err, -ENOMEM, "out of memory");
            goto fail;
        }
        rc = rafs_decompress(item->compressor, c, clen, u, ulen, err);
        if (rc) {
            rc = cf_err_wrap(err, rc, "TOC entry '%s'", item->name);
            goto fail;
        }
    }
    uint8_t d[32];
    if ((rc = cf_sha256(u, ulen, d))) goto fail;
    if (memcmp(d, item->digest, 32) != 0) {
        rc = cf_err_set(err, -EBADMSG, "TOC entry '%s': sha256 of content does not match",
                        item->name);
        goto fail;
    }
    free(c);
    *out = u;
    *out_len = ulen;
    return 0;
fail:
    free(c);
    free(u);
    return rc;
}

int rafs_blob_read_bootstrap(const rafs_blob_source *src, const struct rafs_blob_toc *toc,
                             uint8_t **out, size_t *out_len, cf_err *err)
{
    const struct rafs_toc_item *it = rafs_blob_toc_find(toc, RAFS_TOC_NAME_BOOT);
    if (!it)
        return cf_err_set(err, -ENOENT, "blob has no inline bootstrap (%s)", RAFS_TOC_NAME_BOOT);
    return rafs_blob_toc_read_item(src, it, RAFS_BOOTSTRAP_MAX_SIZE, out, out_len, err);
}

/* SHA-256 of blob bytes [0, len), streamed. */
static int sha256_prefix(const rafs_blob_source *src, uint64_t len, uint8_t out[32], cf_err *err)
{
    cf_digest_ctx d;
    int rc = cf_digest_init(&d, CF_DIGEST_SHA256);
    if (rc) return cf_err_set(err, rc, "sha256 init failed");
    size_t bsz = 1u << 20;
    uint8_t *buf = malloc(bsz);
    if (!buf) {
        cf_digest_abort(&d);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    for (uint64_t off = 0; off < len;) {
        size_t n = len - off < bsz ? (size_t)(len - off) : bsz;
        if ((rc = rafs_blob_source_read_full(src, buf, n, off))) {
            free(buf);
            cf_digest_abort(&d);
            return cf_err_set(err, rc, "reading blob data: %s", cf_err_str(NULL, rc));
        }
        cf_digest_update(&d, buf, n);
        off += n;
    }
    free(buf);
    cf_digest_final(&d, out);
    return 0;
}

int rafs_blob_tar_verify(const rafs_blob_source *src, const struct rafs_blob_toc *toc, cf_err *err)
{
    uint64_t end;
    int members = 0;
    int rc = rafs_blob_source_size(src, &end);
    if (rc) return cf_err_set(err, rc, "blob size: %s", cf_err_str(NULL, rc));
    while (end > 0) {
        uint8_t h[RAFS_TAR_BLOCK];
        char name[101];
        uint64_t size;
        if (members >= 16) return cf_err_set(err, -EBADMSG, "blob tail: more than 16 tar members");
        if (end < RAFS_TAR_BLOCK)
            return cf_err_set(err, -EBADMSG, "blob tail: %llu bytes before the first tar member",
                              (unsigned long long)end);
        uint64_t hoff = end - RAFS_TAR_BLOCK;
        rc = rafs_blob_source_read_full(src, h, sizeof(h), hoff);
        if (rc)
            return cf_err_set(err, rc, "reading tar header at %llu: %s", (unsigned long long)hoff,
                              cf_err_str(NULL, rc));
        if ((rc = tar_header(h, name, &size, err)))
            return cf_err_wrap(err, rc, "tar header at %llu", (unsigned long long)hoff);
        size_t nl = strlen(name);
        if (nl == 0)
            return cf_err_set(err, -EBADMSG, "tar header at %llu: empty name",
                              (unsigned long long)hoff);
        for (size_t i = 0; i < nl; i++)
            if ((uint8_t)name[i] < 0x21 || (uint8_t)name[i] > 0x7e)
                return cf_err_set(err, -EBADMSG, "tar header at %llu: name not printable",
                                  (unsigned long long)hoff);
        if (size > hoff)
            return cf_err_set(err, -EBADMSG,
                              "tar member '%s' at %llu: %llu bytes of data before "
                              "offset %llu",
                              name, (unsigned long long)hoff, (unsigned long long)size,
                              (unsigned long long)hoff);
        uint64_t doff = hoff - size;
        if (toc && strcmp(name, RAFS_TOC_NAME_TOC) != 0) {
            const struct rafs_toc_item *it = rafs_blob_toc_find(toc, name);
            if (!it) return cf_err_set(err, -EBADMSG, "tar member '%s' is not in the TOC", name);
            if (strcmp(name, RAFS_TOC_NAME_BLOB) == 0) {
                uint8_t d[32];
                if ((rc = sha256_prefix(src, end, d, err))) return rc;
                if (memcmp(d, it->digest, 32) != 0)
                    return cf_err_set(err, -EBADMSG,
                                      "chunk data region [0, %llu): sha256 differs "
                                      "from the TOC image.blob digest",
                                      (unsigned long long)end);
            } else if (it->compressed_offset != doff || it->compressed_size > size) {
                /* "blob.meta" holds the ci array and its header, which the TOC lists as
                 * two entries: the TOC entry must start the member and fit in it */
                return cf_err_set(err, -EBADMSG,
                                  "tar member '%s' [%llu, +%llu) does not match its TOC entry "
                                  "[%llu, +%llu)",
                                  name, (unsigned long long)doff, (unsigned long long)size,
                                  (unsigned long long)it->compressed_offset,
                                  (unsigned long long)it->compressed_size);
            }
        }
        members++;
        end = doff;
    }
    return members;
}
