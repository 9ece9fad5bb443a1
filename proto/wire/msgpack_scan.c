/* Pre-scan of untrusted msgpack bytes before msgpack-c unpacks them.
 *
 * Why: msgpack-c allocates `count * sizeof(msgpack_object)` as soon as it reads an array or map
 * header, so a 5-byte body announcing 2^32 elements would make it try to allocate ~100 GiB.
 * This scan walks the bytes iteratively (no recursion), checks that every container's declared
 * element count can fit in the bytes that remain (each element takes >= 1 byte), bounds the
 * nesting depth and the total number of objects, and rejects the reserved byte 0xc1. */
#include "msgpack_scan.h"

#include <errno.h>
#include <string.h>

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

int msgpack_scan(const uint8_t *p, size_t len, cf_err *err)
{
    uint64_t stack[MSGPACK_SCAN_MAX_DEPTH] = {0};
    size_t depth = 0;
    size_t pos = 0;
    size_t objects = 0;
    uint64_t need = 1; /* items still expected at the current level */

    while (need > 0 || depth > 0) {
        if (need == 0) {
            need = stack[--depth];
            continue;
        }
        if (pos >= len) return cf_err_set(err, -EBADMSG, "msgpack: truncated at byte %zu", pos);
        if (++objects > MSGPACK_SCAN_MAX_OBJECTS)
            return cf_err_set(err, -EBADMSG, "msgpack: more than %u objects",
                              MSGPACK_SCAN_MAX_OBJECTS);
        need--;
        uint8_t b = p[pos++];
        size_t rem = len - pos;
        uint64_t skip = 0;  /* payload bytes to skip */
        uint64_t items = 0; /* container elements */
        int container = 0;
        size_t hdr = 0; /* length field size */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b >= 0x80 && b <= 0x8f) {
            items = 2u * (b & 0x0fu), container = 1;
        } else if (b >= 0x90 && b <= 0x9f) {
            items = b & 0x0fu, container = 1;
        } else if (b >= 0xa0 && b <= 0xbf) {
            skip = b & 0x1fu;
        } else {
            switch (b) {
            case 0xc1:
                return cf_err_set(err, -EBADMSG, "msgpack: reserved byte 0xc1 at %zu", pos - 1);
            case 0xc4:
            case 0xd9:
                hdr = 1;
                break;
            case 0xc5:
            case 0xda:
                hdr = 2;
                break;
            case 0xc6:
            case 0xdb:
                hdr = 4;
                break;
            case 0xc7:
                hdr = 1, skip = 1;
                break; /* ext: + type byte */
            case 0xc8:
                hdr = 2, skip = 1;
                break;
            case 0xc9:
                hdr = 4, skip = 1;
                break;
            case 0xca:
                skip = 4;
                break;
            case 0xcb:
                skip = 8;
                break;
            case 0xcc:
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xd4:
                skip = 2;
                break;
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc:
                hdr = 2, container = 1;
                break;
            case 0xdd:
                hdr = 4, container = 1;
                break;
            case 0xde:
                hdr = 2, container = 2;
                break;
            case 0xdf:
                hdr = 4, container = 2;
                break;
            default:
                return cf_err_set(err, -EBADMSG, "msgpack: bad byte 0x%02x", b);
            }
            if (hdr) {
                if (rem < hdr)
                    return cf_err_set(err, -EBADMSG, "msgpack: truncated length at %zu", pos);
                uint64_t n = be(p + pos, hdr);
                pos += hdr, rem -= hdr;
                if (container == 1)
                    items = n;
                else if (container == 2)
                    items = 2 * n, container = 1;
                else
                    skip += n;
            }
        }
        if (container) {
            if (items > rem)
                return cf_err_set(err, -EBADMSG,
                                  "msgpack: container at %zu claims %llu items, %zu bytes left",
                                  pos, (unsigned long long)items, rem);
            if (items > 0) {
                if (depth >= MSGPACK_SCAN_MAX_DEPTH)
                    return cf_err_set(err, -EBADMSG, "msgpack: nesting deeper than %d",
                                      MSGPACK_SCAN_MAX_DEPTH);
                stack[depth++] = need;
                need = items;
            }
        } else {
            if (skip > rem)
                return cf_err_set(err, -EBADMSG, "msgpack: value at %zu runs past the end", pos);
            pos += (size_t)skip;
        }
    }
    if (pos != len)
        return cf_err_set(err, -EBADMSG, "msgpack: %zu trailing bytes after the body", len - pos);
    return 0;
}
