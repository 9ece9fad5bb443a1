/* The piece bitmap (bit order: proto/piece.h) with run-length deltas. */
#include "proto/piece.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t proto_bitmap_nbytes(uint32_t nbits)
{
    return ((size_t)nbits + 7) / 8;
}

int proto_bitmap_init(proto_bitmap *b, uint32_t nbits)
{
    b->bits = NULL;
    b->nbits = 0;
    if (nbits > PROTO_MAX_PIECES) return -EINVAL;
    uint8_t *p = calloc(1, proto_bitmap_nbytes(nbits) + 1);
    if (!p) return -ENOMEM;
    b->bits = p;
    b->nbits = nbits;
    return 0;
}

void proto_bitmap_free(proto_bitmap *b)
{
    free(b->bits);
    b->bits = NULL;
    b->nbits = 0;
}

int proto_bitmap_from_bytes(proto_bitmap *b, uint32_t nbits, const uint8_t *bytes, size_t len,
                            cf_err *err)
{
    if (nbits > PROTO_MAX_PIECES)
        return cf_err_set(err, -EINVAL, "bitmap: %u pieces over %u", nbits, PROTO_MAX_PIECES);
    size_t want = proto_bitmap_nbytes(nbits);
    if (len != want)
        return cf_err_set(err, -EBADMSG, "bitmap: %zu bytes for %u pieces (want %zu)", len, nbits,
                          want);
    if ((nbits & 7u) && (bytes[len - 1] >> (nbits & 7u)) != 0)
        return cf_err_set(err, -EBADMSG, "bitmap: bits set past piece %u", nbits);
    int r = proto_bitmap_init(b, nbits);
    if (r < 0) return cf_err_set(err, r, "bitmap: out of memory");
    if (len) memcpy(b->bits, bytes, len);
    return 0;
}

int proto_bitmap_set(proto_bitmap *b, uint32_t i)
{
    if (i >= b->nbits) return -ERANGE;
    proto_bit_set(b->bits, i);
    return 0;
}

int proto_bitmap_clear(proto_bitmap *b, uint32_t i)
{
    if (i >= b->nbits) return -ERANGE;
    proto_bit_clear(b->bits, i);
    return 0;
}

bool proto_bitmap_test(const proto_bitmap *b, uint32_t i)
{
    return i < b->nbits && proto_bit_get(b->bits, i);
}

uint32_t proto_bitmap_count(const proto_bitmap *b)
{
    return proto_bits_count(b->bits, b->nbits);
}

bool proto_bitmap_full(const proto_bitmap *b)
{
    return proto_bitmap_count(b) == b->nbits;
}

uint32_t proto_bitmap_next_clear(const proto_bitmap *b, uint32_t from)
{
    for (uint32_t i = from; i < b->nbits; i++) {
        if ((i % 8) == 0 && b->bits[i / 8] == 0xff && i + 8 <= b->nbits) {
            i += 7; /* skip full bytes */
            continue;
        }
        if (!proto_bitmap_test(b, i)) return i;
    }
    return UINT32_MAX;
}

int proto_bitmap_or(proto_bitmap *dst, const proto_bitmap *src)
{
    if (dst->nbits != src->nbits) return -EINVAL;
    size_t nb = proto_bitmap_nbytes(dst->nbits);
    for (size_t i = 0; i < nb; i++) dst->bits[i] |= src->bits[i];
    return 0;
}

int proto_bitmap_delta(const proto_bitmap *before, const proto_bitmap *now, proto_piece_run **runs,
                       size_t *n_runs)
{
    *runs = NULL;
    *n_runs = 0;
    if (before && before->nbits != now->nbits) return -EINVAL;
    size_t cap = 0, n = 0;
    proto_piece_run *out = NULL;
    uint32_t i = 0;
    while (i < now->nbits) {
        bool in = proto_bitmap_test(now, i) && !(before && proto_bitmap_test(before, i));
        if (!in) {
            i++;
            continue;
        }
        uint32_t start = i;
        while (i < now->nbits && proto_bitmap_test(now, i) &&
               !(before && proto_bitmap_test(before, i)))
            i++;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            proto_piece_run *p = realloc(out, nc * sizeof(*p));
            if (!p) {
                free(out);
                return -ENOMEM;
            }
            out = p;
            cap = nc;
        }
        out[n].start = start;
        out[n].count = i - start;
        n++;
    }
    *runs = out;
    *n_runs = n;
    return 0;
}

int proto_bitmap_apply_runs(proto_bitmap *b, const proto_piece_run *runs, size_t n_runs,
                            cf_err *err)
{
    for (size_t k = 0; k < n_runs; k++) {
        if (runs[k].count == 0 || (uint64_t)runs[k].start + runs[k].count > b->nbits)
            return cf_err_set(err, -ERANGE, "run %zu (%u+%u) empty or past piece count %u", k,
                              runs[k].start, runs[k].count, b->nbits);
    }
    for (size_t k = 0; k < n_runs; k++)
        for (uint32_t i = 0; i < runs[k].count; i++) proto_bitmap_set(b, runs[k].start + i);
    return 0;
}

uint64_t proto_runs_total(const proto_piece_run *runs, size_t n_runs)
{
    uint64_t t = 0;
    for (size_t k = 0; k < n_runs; k++) t += runs[k].count;
    return t;
}
