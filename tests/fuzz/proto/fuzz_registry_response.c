/* libFuzzer target for the registry client's response handling (registry_internal.h): the
 * header lines of one or more responses (status line, Content-Type, Location, Link,
 * Content-Range, WWW-Authenticate, Retry-After...) and a body cut to a requested window, fed
 * to the same callbacks curl calls; then what they learned goes through the functions that use
 * it (Content-Range start, Location resolution, the origin credentials are scoped to, the
 * challenge parser).
 *
 * Input: 4 bytes window start (LE), 4 bytes window length (0 = to the end), 1 byte body split
 * size; then header lines up to an empty line; the rest is the body.
 * Checked: bytes handed to the sink are exactly the window's bytes of the body (a 206 body
 * starts at its Content-Range, a 200 body at 0), never more than asked, and the counters
 * agree. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cf/buf.h"
#include "registry_internal.h"

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9) return 0;
    uint64_t start = le32(data) & 0xfffff, len = le32(data + 4) & 0xfffff;
    size_t split = 1 + data[8] % 97;
    const char *p = (const char *)data + 9, *end = (const char *)data + size;
    cf_buf buf = {0};
    struct reg_req q = {
        .method = "GET", .start = start, .len = len, .buf = &buf, .buf_max = 1u << 20};
    struct reg_resp s = {.retry_after_s = -1, .content_length = -1};
    struct reg_xfer x = {.q = &q, .s = &s};
    /* headers: one callback per line, as curl calls it (line ending included) */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        int blank = n <= 2 && (n == 1 || p[0] == '\r');
        char *line = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
        if (!line) abort();
        memcpy(line, p, n);
        if (reg_header_cb(line, 1, n, &x) != n) abort();
        free(line);
        p += n;
        if (blank) break;
    }
    if (s.retry_after_s < -1 || s.retry_after_s > 1000000) abort();
    /* body, in pieces */
    const char *body = p;
    size_t body_len = (size_t)(end - p);
    while (p < end && !x.fail_rc && !x.complete) {
        size_t n = (size_t)(end - p) < split ? (size_t)(end - p) : split;
        char *chunk = malloc(n);
        if (!chunk) abort();
        memcpy(chunk, p, n);
        size_t r = reg_write_cb(chunk, 1, n, &x);
        free(chunk);
        if (r != n) break;
        p += n;
    }
    if (s.status >= 200 && s.status < 300) {
        if (s.delivered != buf.len) abort();
        if (len && s.delivered > len) abort();
        /* the bytes are the window's: a 200 body is the whole blob, a 206 starts at start */
        uint64_t at = s.status == 206 ? 0 : start;
        if (buf.len &&
            (at > body_len || buf.len > body_len - at || memcmp(buf.data, body + at, buf.len) != 0))
            abort();
    } else if (buf.len || s.err_len >= sizeof(s.err_body) || s.err_body[s.err_len]) {
        abort();
    }
    /* what the headers said, used as the client uses it */
    uint64_t cs;
    if (reg_content_range_start(s.content_range, &cs) == 0 && s.status == 206 && buf.len &&
        cs != start)
        abort();
    char url[4096], origin[REG_ORIGIN_MAX], shown[4096];
    if (s.location[0] &&
        reg_location_url("http://127.0.0.1:5000", s.location, url, sizeof(url)) == 0) {
        if (strlen(url) >= sizeof(url)) abort();
        if (reg_url_origin(url, origin, sizeof(origin)) == 0 && strlen(origin) >= sizeof(origin))
            abort();
        (void)reg_url_is_loopback(url);
        reg_url_for_msg(url, shown, sizeof(shown));
        if (strchr(shown, '?')) abort(); /* query strings may hold pre-signed secrets */
    }
    if (s.www_auth[0]) {
        proto_auth_challenge ch;
        (void)proto_auth_parse_challenge(s.www_auth, strlen(s.www_auth), &ch, NULL);
    }
    cf_buf_free(&buf);
    return 0;
}
