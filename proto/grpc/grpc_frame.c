/* gRPC length-prefixed message framing and grpc-message percent-encoding. */
#include "grpc_frame.h"

#include <errno.h>
#include <string.h>

#include "cf/grpc.h"

void cf_grpc_reader_init(cf_grpc_reader *r, size_t max)
{
    memset(r, 0, sizeof(*r));
    r->max = max;
}

void cf_grpc_reader_free(cf_grpc_reader *r)
{
    cf_buf_free(&r->msg);
    if (r->budget) *r->budget += r->charged;
    r->charged = 0;
}

/* The prefix is complete: check it and size the buffer. */
static int take_prefix(cf_grpc_reader *r, cf_err *err)
{
    uint32_t len = (uint32_t)r->hdr[1] << 24 | (uint32_t)r->hdr[2] << 16 |
                   (uint32_t)r->hdr[3] << 8 | r->hdr[4];
    if (r->hdr[0] == 1)
        return cf_err_set(err, -ENOTSUP,
                          "compressed request message, but this server accepts no grpc-encoding");
    if (r->hdr[0] != 0)
        return cf_err_set(err, -EBADMSG, "message flag byte 0x%02x is neither 0 nor 1", r->hdr[0]);
    if (len > r->max)
        return cf_err_set(err, -EMSGSIZE, "request message of %u bytes exceeds the limit of %zu",
                          len, r->max);
    if (r->budget && len > *r->budget)
        return cf_err_set(err, -EMSGSIZE,
                          "request message of %u bytes: the connection's other pending requests "
                          "leave only %zu bytes of its request memory",
                          len, *r->budget);
    if (r->budget) {
        *r->budget -= len;
        r->charged = len;
    }
    r->want = len;
    if (cf_buf_reserve(&r->msg, len) < 0)
        return cf_err_set(err, -ENOMEM, "no memory for a %u-byte request message", len);
    if (len == 0) r->complete = 1;
    return 0;
}

int cf_grpc_reader_feed(cf_grpc_reader *r, const uint8_t *p, size_t n, cf_err *err)
{
    while (n > 0) {
        if (r->complete)
            return cf_err_set(err, -EBADMSG,
                              "more than one request message (only unary and server-streaming "
                              "methods are served)");
        if (r->hdr_len < CF_GRPC_PREFIX_LEN) {
            size_t k = CF_GRPC_PREFIX_LEN - r->hdr_len;
            if (k > n) k = n;
            memcpy(r->hdr + r->hdr_len, p, k);
            r->hdr_len += (unsigned)k;
            p += k;
            n -= k;
            if (r->hdr_len == CF_GRPC_PREFIX_LEN) {
                int rc = take_prefix(r, err);
                if (rc < 0) return rc;
            }
            continue;
        }
        size_t k = r->want - r->msg.len;
        if (k > n) k = n;
        /* Cannot fail: take_prefix reserved `want` bytes. */
        if (cf_buf_append(&r->msg, p, k) < 0)
            return cf_err_set(err, -ENOMEM, "no memory for the request message");
        p += k;
        n -= k;
        if (r->msg.len == r->want) r->complete = 1;
    }
    return 0;
}

int cf_grpc_reader_end(cf_grpc_reader *r, const uint8_t **msg, size_t *len, cf_err *err)
{
    if (r->hdr_len == 0) {
        *msg = (const uint8_t *)"";
        *len = 0;
        return 0;
    }
    if (!r->complete) {
        if (r->hdr_len < CF_GRPC_PREFIX_LEN)
            return cf_err_set(err, -EBADMSG, "request body ends inside a message prefix");
        return cf_err_set(err, -EBADMSG, "request body ends after %zu of %zu message bytes",
                          r->msg.len, r->want);
    }
    *msg = r->msg.data ? r->msg.data : (const uint8_t *)"";
    *len = r->msg.len;
    return 0;
}

void cf_grpc_prefix_encode(uint8_t out[CF_GRPC_PREFIX_LEN], uint32_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

int cf_grpc_status_of_errno(int e)
{
    switch (e) {
    case -EMSGSIZE:
        return CF_GRPC_RESOURCE_EXHAUSTED;
    case -ENOTSUP:
        return CF_GRPC_UNIMPLEMENTED;
    default:
        return CF_GRPC_INTERNAL;
    }
}

int cf_grpc_percent_encode(cf_buf *out, const char *s, size_t max_in)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strnlen(s, max_in);
    if (cf_buf_reserve(out, n * 3 + 1) < 0) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c >= 0x20 && c <= 0x7e && c != '%') {
            out->data[out->len++] = c;
        } else {
            out->data[out->len++] = '%';
            out->data[out->len++] = (uint8_t)hex[c >> 4];
            out->data[out->len++] = (uint8_t)hex[c & 15];
        }
    }
    out->data[out->len++] = 0;
    return 0;
}
