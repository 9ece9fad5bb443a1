/* Base64 encoding and decoding (cf/base64.h). */
#include <errno.h>
#include <stdint.h>

#include "cf/base64.h"

static int value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

ssize_t cf_base64_decode(const char *in, size_t in_len, uint8_t *out, size_t out_cap)
{
    size_t pad = 0;
    while (in_len > 0 && in[in_len - 1] == '=' && pad < 3) {
        in_len--;
        pad++;
    }
    /* One leftover character carries 6 bits, never a byte; padding must fill the group. */
    if (pad > 2 || in_len % 4 == 1 || (pad && (in_len + pad) % 4 != 0)) return -EINVAL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < in_len; i++) {
        int v = value((unsigned char)in[i]);
        if (v < 0) return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= out_cap) return -ENOSPC;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (ssize_t)o;
}

ssize_t cf_base64_encode(const uint8_t *in, size_t in_len, char *out, size_t out_cap)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (in_len > (SIZE_MAX - 3) / 4 * 3 - 3 || out_cap < cf_base64_encoded_size(in_len))
        return -ENOSPC;
    size_t o = 0;
    for (size_t i = 0; i < in_len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < in_len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < in_len) v |= in[i + 2];
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = i + 1 < in_len ? abc[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < in_len ? abc[v & 63] : '=';
    }
    out[o] = '\0';
    return (ssize_t)o;
}
