/* Base64 decoding (cf/base64.h). */
#include <errno.h>

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
