/* The reverse-tar tail of Nydus blobs: the last 512-byte GNU tar header names "rafs.blob.toc",
 * whose 128-byte entries precede it and locate blob.meta, blob.meta.header, blob.digest and
 * image.boot (nydus-format.md §3.2, §3.5). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cf/digest.h"
#include "cf/file_io.h"
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

int rafs_blob_toc_read(int fd, uint64_t blob_size, struct rafs_blob_toc *out, cf_err *err)
{
    uint8_t buf[RAFS_TOC_MAX_SIZE];
    size_t n = blob_size < RAFS_TOC_MAX_SIZE ? (size_t)blob_size : RAFS_TOC_MAX_SIZE;
    int rc = cf_pread_full(fd, buf, n, blob_size - n);
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

int rafs_blob_toc_read_item(int fd, const struct rafs_toc_item *item, size_t max_len, uint8_t **out,
                            size_t *out_len, cf_err *err)
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
    uint8_t *c = malloc(clen ? clen : 1), *u = NULL;
    int rc;
    if (!c) return cf_err_set(err, -ENOMEM, "out of memory");
    rc = cf_pread_full(fd, c, clen, item->compressed_offset);
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

int rafs_blob_read_bootstrap(int fd, const struct rafs_blob_toc *toc, uint8_t **out,
                             size_t *out_len, cf_err *err)
{
    const struct rafs_toc_item *it = rafs_blob_toc_find(toc, RAFS_TOC_NAME_BOOT);
    if (!it)
        return cf_err_set(err, -ENOENT, "blob has no inline bootstrap (%s)", RAFS_TOC_NAME_BOOT);
    return rafs_blob_toc_read_item(fd, it, RAFS_BOOTSTRAP_MAX_SIZE, out, out_len, err);
}
