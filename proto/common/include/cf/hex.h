/* Lowercase hex encoding of digests and ids. */
#ifndef CF_HEX_H
#define CF_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*len hex chars plus a NUL into out (size >= 2*len+1). */
void cf_hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes exactly 2*out_len hex chars (either case). Returns 0 or -EINVAL. */
int cf_hex_decode(const char *in, size_t in_len, uint8_t *out, size_t out_len);
/* True when s is exactly n lowercase hex characters. */
int cf_hex_is_lower(const char *s, size_t n);

#endif
