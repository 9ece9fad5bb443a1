/* cf_buf: a growable byte buffer (the one small container everything shares).
 * Owns its memory; cf_buf_free() releases it. Growth failures return -ENOMEM and leave the
 * buffer unchanged. A zero-initialised cf_buf is a valid empty buffer. */
#ifndef CF_BUF_H
#define CF_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct cf_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} cf_buf;

int cf_buf_reserve(cf_buf *b, size_t extra);
int cf_buf_append(cf_buf *b, const void *data, size_t len);
/* Appends `len` zero bytes. */
int cf_buf_append_zeros(cf_buf *b, size_t len);
int cf_buf_printf(cf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cf_buf_reset(cf_buf *b); /* len = 0, keeps memory */
void cf_buf_free(cf_buf *b);
/* Hands the memory to the caller (free() it); the buffer becomes empty. */
uint8_t *cf_buf_steal(cf_buf *b, size_t *len);

#endif
