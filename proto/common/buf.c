/* Growable byte buffer. */
#include "cf/buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cf_buf_reserve(cf_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len) return -ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int cf_buf_append(cf_buf *b, const void *data, size_t len)
{
    if (len == 0) return 0;
    int rc = cf_buf_reserve(b, len);
    if (rc) return rc;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int cf_buf_append_zeros(cf_buf *b, size_t len)
{
    if (len == 0) return 0;
    int rc = cf_buf_reserve(b, len);
    if (rc) return rc;
    memset(b->data + b->len, 0, len);
    b->len += len;
    return 0;
}

int cf_buf_printf(cf_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return -EINVAL;
    int rc = cf_buf_reserve(b, (size_t)n + 1);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n; /* the NUL stays after len, so data is a C string */
    return 0;
}

void cf_buf_reset(cf_buf *b)
{
    b->len = 0;
}

void cf_buf_free(cf_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

uint8_t *cf_buf_steal(cf_buf *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
