/* Strict number, size, duration and boolean parsing. */
#include "cf/parse_number.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <strings.h>

/* Parses the leading unsigned number of s; *end points past it. */
static int parse_prefix(const char *s, uint64_t *out, const char **end)
{
    if (!s || !isdigit((unsigned char)s[0])) return -EINVAL;
    int base = (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10;
    if (base == 16 && !isxdigit((unsigned char)s[2])) return -EINVAL;
    errno = 0;
    char *e;
    unsigned long long v = strtoull(s, &e, base);
    if (errno == ERANGE) return -ERANGE;
    *out = v;
    *end = e;
    return 0;
}

int cf_parse_u64(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t v;
    int rc = parse_prefix(s, &v, &end);
    if (rc) return rc;
    if (*end) return -EINVAL;
    *out = v;
    return 0;
}

int cf_parse_size(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t v;
    int rc = parse_prefix(s, &v, &end);
    if (rc) return rc;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case '\0':
        break;
    case 'B':
        shift = 0;
        end++;
        break;
    case 'K':
        shift = 10;
        end++;
        break;
    case 'M':
        shift = 20;
        end++;
        break;
    case 'G':
        shift = 30;
        end++;
        break;
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        return -EINVAL;
    }
    if (shift) {
        if (*end == 'i' || *end == 'I') end++;
        if (*end == 'B' || *end == 'b') end++;
    }
    if (*end) return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift)) return -ERANGE;
    *out = v << shift;
    return 0;
}

int cf_parse_duration_ms(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t v;
    int rc = parse_prefix(s, &v, &end);
    if (rc) return rc;
    uint64_t mul;
    if (*end == '\0' || strcasecmp(end, "s") == 0)
        mul = 1000;
    else if (strcasecmp(end, "ms") == 0)
        mul = 1;
    else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "min") == 0)
        mul = 60000;
    else if (strcasecmp(end, "h") == 0)
        mul = 3600000;
    else
        return -EINVAL;
    if (v > UINT64_MAX / mul) return -ERANGE;
    *out = v * mul;
    return 0;
}

int cf_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = 0, 0;
    }
    return -EINVAL;
}
