/* libFuzzer target: frame parsing plus every message decoder.
 * Input: a byte stream of frames (as on a socket). Each parsed frame's body is decoded as its own
 * type and, to reach every decoder whatever the type byte says, as every known type too.
 * Anything decoded must validate, re-encode within limits and decode again to the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cf/buf.h"
#include "proto/frame.h"
#include "proto/handshake.h"
#include "proto/msg.h"
#include "proto/piece.h"

static void check_decoded(const proto_msg *m, uint32_t payload_len)
{
    if (proto_msg_validate(m, NULL) != 0) abort();
    cf_buf b = {0}, b2 = {0};
    if (proto_msg_encode_frame(m, payload_len, &b, NULL) != 0) abort();
    proto_frame_header h;
    const uint8_t *body, *payload;
    size_t flen;
    if (proto_frame_header_decode(b.data, 0, &h, NULL) != 0) abort();
    body = b.data + PROTO_FRAME_HEADER_LEN;
    proto_msg d;
    if (proto_msg_decode(m->type, body, h.body_len, payload_len, &d, NULL) != 0) abort();
    if (proto_msg_encode_frame(&d, payload_len, &b2, NULL) != 0) abort();
    if (b.len != b2.len || memcmp(b.data, b2.data, b.len) != 0) abort();
    (void)payload;
    (void)flen;
    /* exercise helpers on decoded data */
    switch (m->type) {
    case PROTO_MSG_AVAIL: {
        proto_bitmap bm;
        if (proto_bitmap_from_bytes(&bm, m->u.avail.piece_count, m->u.avail.bits,
                                    m->u.avail.bits_len, NULL) != 0)
            abort();
        proto_piece_run *runs;
        size_t n;
        if (proto_bitmap_delta(NULL, &bm, &runs, &n) == 0) free(runs);
        proto_bitmap_free(&bm);
        break;
    }
    case PROTO_MSG_AVAIL_UPDATE: {
        proto_bitmap bm;
        if (proto_bitmap_init(&bm, 4096) == 0) {
            proto_bitmap_apply_runs(&bm, m->u.avail_update.runs, m->u.avail_update.n_runs, NULL);
            proto_bitmap_free(&bm);
        }
        break;
    }
    case PROTO_MSG_HELLO: {
        proto_hello ours;
        proto_hello_init(&ours, "fuzz", PROTO_ROLE_SCHEDULER, 0, 0);
        uint32_t v, mp;
        proto_handshake_check(&ours, &m->u.hello, &v, &mp, NULL);
        break;
    }
    case PROTO_MSG_DIGESTS:
    case PROTO_MSG_DIGESTS_PUBLISH:
        proto_digest_list_check(&m->u.digests, m->u.digests.task_id, m->u.digests.piece_size,
                                (uint64_t)m->u.digests.piece_count * m->u.digests.piece_size, NULL);
        break;
    }
    proto_msg_free(&d);
    cf_buf_free(&b);
    cf_buf_free(&b2);
}

static void decode_as(uint8_t type, const uint8_t *body, size_t len, uint32_t payload_len)
{
    proto_msg m;
    cf_err err;
    if (proto_msg_decode(type, body, len, payload_len, &m, &err) == 0) {
        check_decoded(&m, payload_len);
        proto_msg_free(&m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    for (int frames = 0; frames < 16 && off < size; frames++) {
        proto_frame_header h;
        const uint8_t *body, *payload;
        size_t flen;
        cf_err err;
        int r =
            proto_frame_parse(data + off, size - off, 1u << 20, &h, &body, &payload, &flen, &err);
        if (r != 0) {
            /* not a frame: still feed the rest to the decoders as a raw body */
            if (size - off <= PROTO_MAX_BODY && size - off > 0) {
                uint8_t t = data[off];
                decode_as(t, data + off + 1, size - off - 1, 0);
            }
            break;
        }
        decode_as(h.type, body, h.body_len, h.payload_len);
        for (unsigned t = 1; t < 0x50; t++)
            if (proto_msg_type_known((uint8_t)t) && t != h.type)
                decode_as((uint8_t)t, body, h.body_len, 0);
        off += flen;
    }
    return 0;
}
