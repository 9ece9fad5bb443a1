/* Base64 (RFC 4648 §4 alphabet), the one codec for credentials: docker config.json "auth",
 * Authorization: Basic headers, nydusd's config "auth". */
#ifndef CF_BASE64_H
#define CF_BASE64_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Largest decoded size of `in_len` base64 characters: the buffer size to give. */
static inline size_t cf_base64_decoded_max(size_t in_len)
{
    return in_len / 4 * 3 + 2;
}

/* Decodes `in_len` characters of `in` into `out` (`out_cap` bytes; not NUL-terminated).
 * '=' padding is optional (both forms occur in the wild) but, when present, is at most two
 * characters, only at the end, and completes a 4-character group. No whitespace, no URL-safe
 * alphabet. Returns the decoded length, -EINVAL for a malformed input (a character outside the
 * alphabet, misplaced padding, a length no encoder produces), or -ENOSPC when out_cap is too
 * small. Pure function, thread-safe. */
ssize_t cf_base64_decode(const char *in, size_t in_len, uint8_t *out, size_t out_cap);

/* Size of the padded encoding of `in_len` bytes, NUL included: the buffer size to give. */
static inline size_t cf_base64_encoded_size(size_t in_len)
{
    return (in_len + 2) / 3 * 4 + 1;
}

/* Encodes `in_len` bytes with '=' padding into `out` (cf_base64_encoded_size(in_len) bytes at
 * least), NUL-terminated. Returns the encoded length (without the NUL) or -ENOSPC. */
ssize_t cf_base64_encode(const uint8_t *in, size_t in_len, char *out, size_t out_cap);

#endif
