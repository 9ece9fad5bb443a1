/* Blob chunk compression-info ("ci") arrays, v1 (16 B) and v2 (24 B) entries, with their
 * 4 KiB header (magic at both ends) and ZRAN/BATCH context tables; loaded from a data blob,
 * from a TOC'd meta blob, or from an on-disk blob.meta cache file (nydus-format.md §3.3-3.4,
 * §6.4). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rafs/compressor.h"
#include "reader_priv.h"

#define ZRAN_CTX_SIZE 40u

void rafs_blob_meta_free(struct rafs_blob_meta *m)
{
    if (!m) return;
    free(m->ci);
    free(m->digests);
    free(m->ctx);
    free(m);
}

static uint64_t ci_entry_size(uint32_t features)
{
    return (features & RAFS_BLOB_CHUNK_INFO_V2) ? 24 : 16;
}

int rafs_ci_header_parse(const void *hdr4096, struct rafs_ci_header_info *out, cf_err *err)
{
    struct rafs_ci_header h;
    memcpy(&h, hdr4096, sizeof(h));
    if (rafs_le32(h.s_magic) != RAFS_CI_MAGIC || rafs_le32(h.s_magic2) != RAFS_CI_MAGIC)
        return cf_err_set(err, -EBADMSG, "ci header: bad magic 0x%08x/0x%08x (expected 0x%08x)",
                          rafs_le32(h.s_magic), rafs_le32(h.s_magic2), RAFS_CI_MAGIC);
    memset(out, 0, sizeof(*out));
    out->features = rafs_le32(h.s_features);
    uint32_t c = rafs_le32(h.s_ci_compressor);
    out->entries = rafs_le32(h.s_ci_entries);
    out->ci_offset = rafs_le64(h.s_ci_offset);
    out->ci_compressed_size = rafs_le64(h.s_ci_compressed_size);
    out->ci_uncompressed_size = rafs_le64(h.s_ci_uncompressed_size);
    out->zran_offset = rafs_le64(h.s_ci_zran_offset);
    out->zran_size = rafs_le64(h.s_ci_zran_size);
    out->zran_count = rafs_le32(h.s_ci_zran_count);
    if (c > RAFS_COMP_ZSTD)
        return cf_err_set(err, -EBADMSG, "ci header: unknown ci compressor %u", c);
    out->ci_compressor = (enum rafs_compressor)c;
    if (out->features & (RAFS_BLOB_INCOMPAT_RESERVED_MASK | RAFS_BLOB_V5_NO_EXT_BLOB_TABLE))
        return cf_err_set(err, -EBADMSG, "ci header: unknown incompatible features 0x%08x",
                          out->features);
    if (out->entries > (1u << 24))
        return cf_err_set(err, -EBADMSG, "ci header: %u entries > 2^24", out->entries);
    if (out->ci_uncompressed_size > RAFS_CI_MAX_SIZE)
        return cf_err_set(err, -EBADMSG, "ci header: ci size %llu over the %llu-byte limit",
                          (unsigned long long)out->ci_uncompressed_size,
                          (unsigned long long)RAFS_CI_MAX_SIZE);
    if (out->ci_compressed_size > out->ci_uncompressed_size ||
        (c == RAFS_COMP_NONE && out->ci_compressed_size != out->ci_uncompressed_size))
        return cf_err_set(err, -EBADMSG,
                          "ci header: compressed size %llu vs uncompressed %llu "
                          "(compressor %u)",
                          (unsigned long long)out->ci_compressed_size,
                          (unsigned long long)out->ci_uncompressed_size, c);
    uint64_t need = (uint64_t)out->entries * ci_entry_size(out->features);
    int ctx = (out->features & (RAFS_BLOB_ZRAN | RAFS_BLOB_BATCH)) != 0;
    if (ctx) {
        if (!(out->features & RAFS_BLOB_CHUNK_INFO_V2))
            return cf_err_set(err, -EBADMSG, "ci header: ZRAN/BATCH without chunk-info v2");
        uint64_t end;
        if (out->zran_offset != need || !rafs_add_ok(out->zran_offset, out->zran_size, &end) ||
            end != out->ci_uncompressed_size ||
            (uint64_t)out->zran_count * ZRAN_CTX_SIZE > out->zran_size)
            return cf_err_set(err, -EBADMSG,
                              "ci header: context table at %llu (+%llu, %u records) inconsistent "
                              "with %u entries / %llu bytes",
                              (unsigned long long)out->zran_offset,
                              (unsigned long long)out->zran_size, out->zran_count, out->entries,
                              (unsigned long long)out->ci_uncompressed_size);
    } else if (out->zran_offset || out->zran_size || out->zran_count) {
        return cf_err_set(err, -EBADMSG, "ci header: context table fields set without ZRAN/BATCH");
    } else if (out->ci_uncompressed_size != need) {
        return cf_err_set(err, -EBADMSG, "ci header: %llu bytes for %u entries of %llu bytes",
                          (unsigned long long)out->ci_uncompressed_size, out->entries,
                          (unsigned long long)ci_entry_size(out->features));
    }
    return 0;
}

int rafs_blob_meta_decode(const struct rafs_ci_header_info *hdr, const void *ci, size_t len,
                          uint64_t data_end, uint64_t uncompressed_size,
                          struct rafs_blob_meta **out, cf_err *err)
{
    if (len != hdr->ci_uncompressed_size)
        return cf_err_set(err, -EBADMSG, "ci array: %zu bytes, header says %llu", len,
                          (unsigned long long)hdr->ci_uncompressed_size);
    /* callers may hand in headers not checked by rafs_ci_header_parse: re-check the extents */
    uint64_t need = (uint64_t)hdr->entries * ci_entry_size(hdr->features), zend;
    if (hdr->entries > (1u << 24) || need > len ||
        ((hdr->features & (RAFS_BLOB_ZRAN | RAFS_BLOB_BATCH)) &&
         (!rafs_add_ok(hdr->zran_offset, hdr->zran_size, &zend) || zend > len ||
          hdr->zran_offset < need || (uint64_t)hdr->zran_count * ZRAN_CTX_SIZE > hdr->zran_size)))
        return cf_err_set(err, -EBADMSG, "ci array: header extents do not fit %zu bytes", len);
    struct rafs_blob_meta *m = calloc(1, sizeof(*m));
    if (!m) return cf_err_set(err, -ENOMEM, "out of memory");
    m->hdr = *hdr;
    m->count = hdr->entries;
    int v2 = (hdr->features & RAFS_BLOB_CHUNK_INFO_V2) != 0;
    int zran = (hdr->features & RAFS_BLOB_ZRAN) != 0,
        batch = (hdr->features & RAFS_BLOB_BATCH) != 0;
    size_t esz = v2 ? 24 : 16;
    const uint8_t *p = ci;
    int rc = 0;
    if (m->count && !(m->ci = calloc(m->count, sizeof(*m->ci)))) {
        rc = cf_err_set(err, -ENOMEM, "out of memory for %u ci entries", m->count);
        goto fail;
    }
    uint64_t prev_end = 0;
    for (uint32_t i = 0; i < m->count; i++) {
        struct rafs_ci *c = &m->ci[i];
        uint64_t u = rafs_get64(p + i * esz), cw = rafs_get64(p + i * esz + 8);
        if (v2) {
            c->uncompressed_offset = rafs_ci_v2_uncomp_offset(u);
            c->uncompressed_size = rafs_ci_v2_uncomp_size(u);
            c->flags = rafs_ci_v2_flags(u);
            c->compressed_offset = rafs_ci_v2_comp_offset(cw);
            c->compressed_size = rafs_ci_v2_comp_size(cw);
            c->data = rafs_get64(p + i * esz + 16);
            if (c->flags & ~0x1Fu) {
                rc = cf_err_set(err, -EBADMSG, "ci entry %u: unknown flags 0x%02x", i, c->flags);
                goto fail;
            }
        } else {
            if (u & 0xFF) {
                rc = cf_err_set(err, -EBADMSG, "ci entry %u: reserved bits set in 0x%016llx", i,
                                (unsigned long long)u);
                goto fail;
            }
            c->uncompressed_offset = rafs_ci_v1_uncomp_offset(u);
            c->uncompressed_size = rafs_ci_v1_uncomp_size(u);
            c->compressed_offset = rafs_ci_v1_comp_offset(cw);
            c->compressed_size = rafs_ci_v1_comp_size(cw);
            if (c->compressed_size != c->uncompressed_size) c->flags |= RAFS_CI_V2_COMPRESSED;
        }
        int is_zran = (c->flags & RAFS_CI_V2_ZRAN) != 0,
            is_batch = (c->flags & RAFS_CI_V2_BATCH) != 0;
        if ((is_zran && !zran) || (is_batch && !batch)) {
            rc = cf_err_set(err, -EBADMSG, "ci entry %u: ZRAN/BATCH flag without blob feature", i);
            goto fail;
        }
        if ((is_zran || is_batch) && (c->data >> 32) >= hdr->zran_count) {
            rc = cf_err_set(err, -EBADMSG, "ci entry %u: context index %llu >= %u", i,
                            (unsigned long long)(c->data >> 32), hdr->zran_count);
            goto fail;
        }
        if (c->uncompressed_size > RAFS_MAX_CHUNK_SIZE ||
            c->uncompressed_offset % RAFS_BLOCK_SIZE) {
            rc = cf_err_set(err, -EBADMSG,
                            "ci entry %u: uncompressed offset 0x%llx size 0x%x invalid", i,
                            (unsigned long long)c->uncompressed_offset, c->uncompressed_size);
            goto fail;
        }
        if (c->uncompressed_offset < prev_end) {
            rc = cf_err_set(err, -EBADMSG,
                            "ci entry %u: uncompressed offset 0x%llx overlaps the previous chunk "
                            "(ends 0x%llx)",
                            i, (unsigned long long)c->uncompressed_offset,
                            (unsigned long long)prev_end);
            goto fail;
        }
        prev_end = c->uncompressed_offset + c->uncompressed_size;
        if (uncompressed_size && prev_end > uncompressed_size) {
            rc = cf_err_set(err, -EBADMSG,
                            "ci entry %u: ends at 0x%llx past blob uncompressed size 0x%llx", i,
                            (unsigned long long)prev_end, (unsigned long long)uncompressed_size);
            goto fail;
        }
        if (!is_zran && !is_batch && !(c->flags & (RAFS_CI_V2_COMPRESSED | RAFS_CI_V2_ENCRYPTED)) &&
            c->compressed_size != c->uncompressed_size) {
            rc = cf_err_set(err, -EBADMSG, "ci entry %u: uncompressed chunk with sizes %u != %u", i,
                            c->compressed_size, c->uncompressed_size);
            goto fail;
        }
        if (!is_zran && data_end &&
            !rafs_range_ok(c->compressed_offset, c->compressed_size, data_end)) {
            rc = cf_err_set(err, -EBADMSG,
                            "ci entry %u: compressed extent [0x%llx, +0x%x) past chunk data end "
                            "0x%llx",
                            i, (unsigned long long)c->compressed_offset, c->compressed_size,
                            (unsigned long long)data_end);
            goto fail;
        }
    }
    if (zran || batch) {
        if (hdr->zran_size && !(m->ctx = malloc(hdr->zran_size))) {
            rc = cf_err_set(err, -ENOMEM, "out of memory for contexts");
            goto fail;
        }
        if (hdr->zran_size) memcpy(m->ctx, p + hdr->zran_offset, hdr->zran_size);
        if (zran) {
            /* each context's dictionary must lie inside the context area (offsets are taken
             * relative to either the context area or the whole ci data) */
            for (uint32_t i = 0; i < hdr->zran_count; i++) {
                const uint8_t *z = m->ctx + (size_t)i * ZRAN_CTX_SIZE;
                uint64_t doff = rafs_get64(z + 16);
                uint32_t dsz = rafs_get32(z + 32);
                if (!rafs_range_ok(doff, dsz, hdr->zran_size) &&
                    !(doff >= hdr->zran_offset &&
                      rafs_range_ok(doff, dsz, hdr->zran_offset + hdr->zran_size))) {
                    rc = cf_err_set(err, -EBADMSG,
                                    "zran context %u: dictionary [%llu, +%u) outside the context "
                                    "area",
                                    i, (unsigned long long)doff, dsz);
                    goto fail;
                }
            }
        }
    }
    *out = m;
    return 0;
fail:
    rafs_blob_meta_free(m);
    return rc;
}

static int check_against_table(const struct rafs_ci_header_info *h, const struct rafs_blob_info *bi,
                               int check_offset, cf_err *err)
{
    /* INLINED_FS_META describes the per-layer blob object; a merged bootstrap's table drops it
     * (nydus-image merge records 0x70000021 for a 0x70000023 blob), so it is not compared. */
    uint32_t mask = ~(uint32_t)RAFS_BLOB_INLINED_FS_META;
    if ((h->features & mask) != (bi->features & mask) || h->entries != bi->chunk_count ||
        h->ci_compressor != bi->ci_compressor || (check_offset && h->ci_offset != bi->ci_offset) ||
        h->ci_uncompressed_size != bi->ci_uncompressed_size ||
        (check_offset && h->ci_compressed_size != bi->ci_compressed_size))
        return cf_err_set(
            err, -EBADMSG,
            "blob %s: ci header (features 0x%08x, %u entries, compressor %u, offset "
            "%llu, sizes %llu/%llu) differs from the blob table (0x%08x, %u, %u, "
            "%llu, %llu/%llu)",
            bi->id, h->features, h->entries, h->ci_compressor, (unsigned long long)h->ci_offset,
            (unsigned long long)h->ci_compressed_size, (unsigned long long)h->ci_uncompressed_size,
            bi->features, bi->chunk_count, bi->ci_compressor, (unsigned long long)bi->ci_offset,
            (unsigned long long)bi->ci_compressed_size,
            (unsigned long long)bi->ci_uncompressed_size);
    return 0;
}

/* Decompresses a stored ci array and decodes it. */
static int decode_stored(const struct rafs_ci_header_info *h, const uint8_t *stored, size_t slen,
                         uint64_t data_end, uint64_t usize, struct rafs_blob_meta **out,
                         cf_err *err)
{
    if (h->features & RAFS_BLOB_ENCRYPTED)
        return cf_err_set(err, -ENOTSUP, "encrypted ci arrays are not supported");
    if (h->ci_compressor == RAFS_COMP_NONE)
        return rafs_blob_meta_decode(h, stored, slen, data_end, usize, out, err);
    uint8_t *plain = malloc(h->ci_uncompressed_size ? h->ci_uncompressed_size : 1);
    if (!plain) return cf_err_set(err, -ENOMEM, "out of memory for ci array");
    int rc = rafs_decompress(h->ci_compressor, stored, slen, plain, h->ci_uncompressed_size, err);
    if (rc)
        rc = cf_err_wrap(err, rc, "ci array");
    else
        rc = rafs_blob_meta_decode(h, plain, h->ci_uncompressed_size, data_end, usize, out, err);
    free(plain);
    return rc;
}

int rafs_blob_meta_load(const rafs_blob_source *src, const struct rafs_blob_info *bi,
                        struct rafs_blob_meta **out, cf_err *err)
{
    uint64_t total, blob_size;
    int rc = rafs_blob_source_size(src, &blob_size);
    if (rc) return cf_err_set(err, rc, "blob %s: size: %s", bi->id, cf_err_str(NULL, rc));
    if (bi->ci_compressed_size > RAFS_CI_MAX_SIZE)
        return cf_err_set(err, -EBADMSG, "blob %s: ci array of %llu bytes over the limit", bi->id,
                          (unsigned long long)bi->ci_compressed_size);
    if (!rafs_add_ok(bi->ci_compressed_size, RAFS_CI_HEADER_SIZE, &total) ||
        !rafs_range_ok(bi->ci_offset, total, blob_size))
        return cf_err_set(
            err, -EBADMSG, "blob %s: ci array at %llu (+%llu + 4096 header) past blob end %llu",
            bi->id, (unsigned long long)bi->ci_offset, (unsigned long long)bi->ci_compressed_size,
            (unsigned long long)blob_size);
    uint8_t *buf = malloc(total);
    if (!buf) return cf_err_set(err, -ENOMEM, "out of memory for ci array");
    struct rafs_ci_header_info h;
    rc = rafs_blob_source_read_full(src, buf, total, bi->ci_offset);
    if (rc) {
        rc = cf_err_set(err, rc, "blob %s: reading ci array: %s", bi->id, cf_err_str(NULL, rc));
        goto out;
    }
    rc = rafs_ci_header_parse(buf + bi->ci_compressed_size, &h, err);
    if (rc) {
        rc = cf_err_wrap(err, rc, "blob %s", bi->id);
        goto out;
    }
    if ((rc = check_against_table(&h, bi, 1, err))) goto out;
    uint64_t data_end = 0;
    if (!(bi->features & (RAFS_BLOB_ZRAN | RAFS_BLOB_SEPARATE))) {
        data_end = bi->ci_offset;
        if (bi->features & RAFS_BLOB_HAS_TAR_HEADER) {
            if (data_end < RAFS_TAR_BLOCK) {
                rc = cf_err_set(err, -EBADMSG,
                                "blob %s: ci offset %llu leaves no room for a tar header", bi->id,
                                (unsigned long long)data_end);
                goto out;
            }
            data_end -= RAFS_TAR_BLOCK;
        }
    }
    rc = decode_stored(&h, buf, bi->ci_compressed_size, data_end, bi->uncompressed_size, out, err);
    if (rc) rc = cf_err_wrap(err, rc, "blob %s", bi->id);
out:
    free(buf);
    return rc;
}

int rafs_blob_meta_parse_cache(const void *buf, size_t len, const struct rafs_blob_info *bi,
                               struct rafs_blob_meta **out, cf_err *err)
{
    struct rafs_ci_header_info h;
    if (len < RAFS_CI_HEADER_SIZE || len % RAFS_BLOCK_SIZE)
        return cf_err_set(err, -EBADMSG,
                          "blob.meta file: size %zu is not a multiple of 4096 >= 4096", len);
    const uint8_t *p = buf;
    int rc = rafs_ci_header_parse(p + len - RAFS_CI_HEADER_SIZE, &h, err);
    if (rc) return cf_err_wrap(err, rc, "blob.meta file");
    uint64_t want =
        ((h.ci_uncompressed_size + RAFS_BLOCK_SIZE - 1) & ~(uint64_t)(RAFS_BLOCK_SIZE - 1)) +
        RAFS_CI_HEADER_SIZE;
    if (want != len)
        return cf_err_set(
            err, -EBADMSG, "blob.meta file: %zu bytes, expected round_up(%llu, 4096) + 4096 = %llu",
            len, (unsigned long long)h.ci_uncompressed_size, (unsigned long long)want);
    if (bi && (rc = check_against_table(&h, bi, 0, err))) return rc;
    /* the cache holds the ci array already decompressed */
    rc = rafs_blob_meta_decode(&h, p, h.ci_uncompressed_size, 0, bi ? bi->uncompressed_size : 0,
                               out, err);
    if (rc) return cf_err_wrap(err, rc, "blob.meta file");
    return 0;
}

int rafs_blob_meta_load_toc(const rafs_blob_source *src, const struct rafs_blob_toc *toc,
                            const struct rafs_blob_info *bi, struct rafs_blob_meta **out,
                            cf_err *err)
{
    const struct rafs_toc_item *mi = rafs_blob_toc_find(toc, RAFS_TOC_NAME_META);
    const struct rafs_toc_item *hi = rafs_blob_toc_find(toc, RAFS_TOC_NAME_META_HEADER);
    if (!mi || !hi)
        return cf_err_set(err, -ENOENT, "TOC has no %s / %s entry", RAFS_TOC_NAME_META,
                          RAFS_TOC_NAME_META_HEADER);
    uint8_t *hdr = NULL, *ci = NULL;
    size_t hlen = 0, clen = 0;
    struct rafs_ci_header_info h;
    int rc = rafs_blob_toc_read_item(src, hi, RAFS_CI_HEADER_SIZE, &hdr, &hlen, err);
    if (rc) goto out;
    if (hlen != RAFS_CI_HEADER_SIZE) {
        rc = cf_err_set(err, -EBADMSG, "TOC %s entry is %zu bytes, expected 4096",
                        RAFS_TOC_NAME_META_HEADER, hlen);
        goto out;
    }
    if ((rc = rafs_ci_header_parse(hdr, &h, err))) goto out;
    if (bi && (rc = check_against_table(&h, bi, 0, err))) goto out;
    rc = rafs_blob_toc_read_item(src, mi, RAFS_CI_MAX_SIZE, &ci, &clen, err);
    if (rc) goto out;
    /* the TOC entry's content is the ci array as the header describes it, uncompressed */
    rc = rafs_blob_meta_decode(&h, ci, clen, 0, bi ? bi->uncompressed_size : 0, out, err);
out:
    free(hdr);
    free(ci);
    return rc;
}

int rafs_blob_meta_load_digests(const rafs_blob_source *src, const struct rafs_blob_toc *toc,
                                struct rafs_blob_meta *m, cf_err *err)
{
    const struct rafs_toc_item *it = rafs_blob_toc_find(toc, RAFS_TOC_NAME_DIGEST);
    if (!it) return cf_err_set(err, -ENOENT, "TOC has no %s entry", RAFS_TOC_NAME_DIGEST);
    uint64_t want = (uint64_t)m->count * 32;
    if (it->uncompressed_size != want)
        return cf_err_set(err, -EBADMSG, "%s: %llu bytes for %u chunks (expected %llu)",
                          RAFS_TOC_NAME_DIGEST, (unsigned long long)it->uncompressed_size, m->count,
                          (unsigned long long)want);
    uint8_t *d = NULL;
    size_t len = 0;
    int rc = rafs_blob_toc_read_item(src, it, want, &d, &len, err);
    if (rc) return rc;
    free(m->digests);
    m->digests = (uint8_t(*)[32])d;
    return 0;
}

void rafs_blob_meta_find(const struct rafs_blob_meta *m, uint64_t offset, uint64_t len,
                         uint32_t *first, uint32_t *count)
{
    uint64_t end = offset + len < offset ? UINT64_MAX : offset + len;
    /* first entry whose end is past offset */
    uint32_t lo = 0, hi = m->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct rafs_ci *c = &m->ci[mid];
        if (c->uncompressed_offset + c->uncompressed_size <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t n = 0;
    while (len && lo + n < m->count && m->ci[lo + n].uncompressed_offset < end) n++;
    *first = lo;
    *count = n;
}
