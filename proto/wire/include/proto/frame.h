/* Chunkfly wire frames: every message between peers, schedulers and local consumers travels in
 * one frame (see docs/protocol.md):
 *
 *   offset size  field (little-endian)
 *   0      4     magic        PROTO_MAGIC ("CFW1" as bytes 'C' 'F' 'W' '1')
 *   4      1     version      PROTO_FRAME_VERSION (framing version; the protocol version is
 *                             negotiated by the HELLO handshake, see handshake.h)
 *   5      1     type         proto_msg_type (msg.h)
 *   6      2     flags        none defined yet; senders write 0, receivers ignore unknown bits
 *   8      4     body_len     msgpack body length, <= PROTO_MAX_BODY (1 MiB)
 *   12     4     payload_len  raw payload length, <= PROTO_MAX_PAYLOAD and the connection limit
 *   16     ...   body (a msgpack map), then payload (raw bytes: piece data, read data)
 *
 * Piece bytes travel only as raw payload (so they can be sent with sendfile), never inside the
 * msgpack body. Pure functions, no allocation, thread-safe. */
#ifndef PROTO_FRAME_H
#define PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

#define PROTO_MAGIC            0x31574643u /* bytes 'C','F','W','1' read as LE u32 */
#define PROTO_FRAME_VERSION    1
#define PROTO_FRAME_HEADER_LEN 16
#define PROTO_MAX_BODY         (1u << 20)  /* 1 MiB msgpack body */
#define PROTO_MAX_PAYLOAD      (16u << 20) /* global cap on raw payload (= max piece size) */

typedef struct proto_frame_header {
    uint32_t magic;
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint32_t body_len;
    uint32_t payload_len;
} proto_frame_header;

/* Writes the 16-byte header. Fields are written as given (no validation). */
void proto_frame_header_encode(const proto_frame_header *h, uint8_t out[PROTO_FRAME_HEADER_LEN]);

/* Parses and validates a header from 16 untrusted bytes.
 * `max_payload` is the receiving connection's payload limit (0 = PROTO_MAX_PAYLOAD; values
 * above PROTO_MAX_PAYLOAD are clamped to it).
 * Returns 0, or:
 *   -EBADMSG     wrong magic
 *   -EPROTO      unsupported frame version
 *   -EMSGSIZE    body_len > PROTO_MAX_BODY or payload_len > limit
 * with a message in err. The message type is not checked here (msg.h decides). */
int proto_frame_header_decode(const uint8_t in[PROTO_FRAME_HEADER_LEN], uint32_t max_payload,
                              proto_frame_header *h, cf_err *err);

/* Convenience: fills a header with magic/version for `type`. */
void proto_frame_header_init(proto_frame_header *h, uint8_t type, uint16_t flags, uint32_t body_len,
                             uint32_t payload_len);

/* Parses one complete frame from a contiguous buffer (used by tests and the fuzzer; streams use
 * proto_conn, conn.h). On success *body and *payload point into `buf` (borrowed, no copy) and
 * *frame_len is the total frame size. Returns 0, -EAGAIN when `len` holds less than a whole
 * frame (nothing consumed), or a header error as above. */
int proto_frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload, proto_frame_header *h,
                      const uint8_t **body, const uint8_t **payload, size_t *frame_len,
                      cf_err *err);

#endif
