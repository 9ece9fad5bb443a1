/* Strict parsers for numbers users type on command lines and in config files.
 * All return 0 or -EINVAL (not a number / trailing garbage) / -ERANGE (overflow). */
#ifndef CF_PARSE_NUMBER_H
#define CF_PARSE_NUMBER_H

#include <stdint.h>

/* Decimal, or hex with 0x prefix. */
int cf_parse_u64(const char *s, uint64_t *out);
/* A byte size: number (decimal or 0x) with optional suffix K, M, G, T (powers of 1024; KB/KiB,
 * MB/MiB... accepted too). "64M" = 67108864. */
int cf_parse_size(const char *s, uint64_t *out);
/* A duration in milliseconds: number with suffix ms, s, m, h (a bare number means seconds). */
int cf_parse_duration_ms(const char *s, uint64_t *out);
/* true/false, yes/no, on/off, 1/0. */
int cf_parse_bool(const char *s, int *out);

#endif
