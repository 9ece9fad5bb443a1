/* Frame header encoding and validation (layout in frame.h / docs/protocol.md). */
#include "proto/frame.h"

#include <errno.h>
#include <string.h>

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void proto_frame_header_init(proto_frame_header *h, uint8_t type, uint16_t flags, uint32_t body_len,
                             uint32_t payload_len)
{
    h->magic = PROTO_MAGIC;
    h->version = PROTO_FRAME_VERSION;
    h->type = type;
    h->flags = flags;
    h->body_len = body_len;
    h->payload_len = payload_len;
}

void proto_frame_header_encode(const proto_frame_header *h, uint8_t out[PROTO_FRAME_HEADER_LEN])
{
    put_le32(out, h->magic);
    out[4] = h->version;
    out[5] = h->type;
    put_le16(out + 6, h->flags);
    put_le32(out + 8, h->body_len);
    put_le32(out + 12, h->payload_len);
}

int proto_frame_header_decode(const uint8_t in[PROTO_FRAME_HEADER_LEN], uint32_t max_payload,
                              proto_frame_header *h, cf_err *err)
{
    if (max_payload == 0 || max_payload > PROTO_MAX_PAYLOAD) max_payload = PROTO_MAX_PAYLOAD;
    h->magic = get_le32(in);
    h->version = in[4];
    h->type = in[5];
    h->flags = get_le16(in + 6);
    h->body_len = get_le32(in + 8);
    h->payload_len = get_le32(in + 12);
    if (h->magic != PROTO_MAGIC)
        return cf_err_set(err, -EBADMSG, "frame: bad magic 0x%08x (not a Chunkfly peer?)",
                          h->magic);
    if (h->version != PROTO_FRAME_VERSION)
        return cf_err_set(err, -EPROTO, "frame: unsupported frame version %u (we speak %u)",
                          h->version, PROTO_FRAME_VERSION);
    if (h->body_len > PROTO_MAX_BODY)
        return cf_err_set(err, -EMSGSIZE, "frame type 0x%02x: body of %u bytes over %u", h->type,
                          h->body_len, PROTO_MAX_BODY);
    if (h->payload_len > max_payload)
        return cf_err_set(err, -EMSGSIZE, "frame type 0x%02x: payload of %u bytes over %u", h->type,
                          h->payload_len, max_payload);
    return 0;
}

int proto_frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload, proto_frame_header *h,
                      const uint8_t **body, const uint8_t **payload, size_t *frame_len, cf_err *err)
{
    if (len < PROTO_FRAME_HEADER_LEN) return -EAGAIN;
    int r = proto_frame_header_decode(buf, max_payload, h, err);
    if (r < 0) return r;
    size_t total = (size_t)PROTO_FRAME_HEADER_LEN + h->body_len + h->payload_len;
    if (len < total) return -EAGAIN;
    *body = buf + PROTO_FRAME_HEADER_LEN;
    *payload = *body + h->body_len;
    *frame_len = total;
    return 0;
}
