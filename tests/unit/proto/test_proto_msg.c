/* Frames and messages: header codec and limits, a round trip of every message type, unknown keys
 * ignored, wrong types / missing keys / truncation / oversize rejected, handshake refusal,
 * digest-list binding. Set PROTO_WRITE_CORPUS=<dir> to also write every sample frame there
 * (seeds for tests/fuzz/proto/corpus/fuzz_frame). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <msgpack.h>

#include "cf/buf.h"
#include "cf/digest.h"
#include "msg_samples.h"
#include "proto/frame.h"
#include "proto/handshake.h"
#include "proto/msg.h"

static void test_frame_header(void **state)
{
    (void)state;
    proto_frame_header h, g;
    uint8_t raw[PROTO_FRAME_HEADER_LEN];
    proto_frame_header_init(&h, PROTO_MSG_PIECE_DATA, 0x8001, 1234, 4u << 20);
    proto_frame_header_encode(&h, raw);
    /* little-endian layout, magic bytes "CFW1" */
    assert_memory_equal(raw, "CFW1", 4);
    assert_int_equal(raw[4], PROTO_FRAME_VERSION);
    assert_int_equal(raw[5], PROTO_MSG_PIECE_DATA);
    assert_int_equal(raw[6], 0x01);
    assert_int_equal(raw[7], 0x80);
    assert_int_equal(raw[8], 1234 & 0xff);
    assert_int_equal(raw[9], 1234 >> 8);
    assert_int_equal(raw[15], 0);
    assert_int_equal(raw[14], 0x40);
    assert_int_equal(proto_frame_header_decode(raw, 0, &g, NULL), 0);
    assert_memory_equal(&h, &g, sizeof(h));

    cf_err err = {0};
    /* payload over a tighter connection limit */
    assert_int_equal(proto_frame_header_decode(raw, 1u << 20, &g, &err), -EMSGSIZE);
    assert_non_null(strstr(err.msg, "payload"));
    /* bad magic, version, body size, global payload cap */
    uint8_t bad[PROTO_FRAME_HEADER_LEN];
    memcpy(bad, raw, sizeof(bad));
    bad[0] = 'X';
    assert_int_equal(proto_frame_header_decode(bad, 0, &g, NULL), -EBADMSG);
    memcpy(bad, raw, sizeof(bad));
    bad[4] = 2;
    assert_int_equal(proto_frame_header_decode(bad, 0, &g, &err), -EPROTO);
    proto_frame_header_init(&h, 1, 0, PROTO_MAX_BODY + 1, 0);
    proto_frame_header_encode(&h, bad);
    assert_int_equal(proto_frame_header_decode(bad, 0, &g, NULL), -EMSGSIZE);
    proto_frame_header_init(&h, 1, 0, PROTO_MAX_BODY, PROTO_MAX_PAYLOAD + 1);
    proto_frame_header_encode(&h, bad);
    assert_int_equal(proto_frame_header_decode(bad, 0, &g, NULL), -EMSGSIZE);
    /* limits above the global cap are clamped */
    assert_int_equal(proto_frame_header_decode(bad, UINT32_MAX, &g, NULL), -EMSGSIZE);
    proto_frame_header_init(&h, 1, 0, PROTO_MAX_BODY, PROTO_MAX_PAYLOAD);
    proto_frame_header_encode(&h, bad);
    assert_int_equal(proto_frame_header_decode(bad, 0, &g, NULL), 0);
}

static void test_frame_parse_partial(void **state)
{
    (void)state;
    proto_msg m;
    sample_msg(PROTO_MSG_PIECE_DATA, &m);
    cf_buf b = {0};
    assert_int_equal(proto_msg_encode_frame(&m, 5, &b, NULL), 0);
    assert_int_equal(cf_buf_append(&b, "HELLO", 5), 0);
    proto_frame_header h;
    const uint8_t *body, *payload;
    size_t flen;
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(proto_frame_parse(b.data, n, 0, &h, &body, &payload, &flen, NULL),
                         -EAGAIN);
    assert_int_equal(proto_frame_parse(b.data, b.len, 0, &h, &body, &payload, &flen, NULL), 0);
    assert_int_equal(flen, b.len);
    assert_memory_equal(payload, "HELLO", 5);
    cf_buf_free(&b);
}

/* encode -> parse -> decode -> encode again gives the same bytes */
static void test_roundtrip_all(void **state)
{
    (void)state;
    const char *corpus = getenv("PROTO_WRITE_CORPUS");
    for (size_t i = 0; i < N_SAMPLE_TYPES; i++) {
        proto_msg m, d;
        uint8_t t = sample_types[i];
        sample_msg(t, &m);
        cf_err err = {0};
        cf_buf b = {0}, b2 = {0};
        uint32_t pl = proto_msg_type_has_payload(t) ? 3 : 0;
        int r = proto_msg_encode_frame(&m, pl, &b, &err);
        if (r) fail_msg("%s: encode: %s", proto_msg_type_name(t), err.msg);
        if (pl) cf_buf_append(&b, "abc", 3);
        proto_frame_header h;
        const uint8_t *body, *payload;
        size_t flen;
        assert_int_equal(proto_frame_parse(b.data, b.len, 0, &h, &body, &payload, &flen, NULL), 0);
        assert_int_equal(h.type, t);
        r = proto_msg_decode(h.type, body, h.body_len, h.payload_len, &d, &err);
        if (r) fail_msg("%s: decode: %s", proto_msg_type_name(t), err.msg);
        assert_int_equal(d.type, t);
        assert_int_equal(proto_msg_encode_frame(&d, pl, &b2, &err), 0);
        if (pl) cf_buf_append(&b2, "abc", 3);
        assert_int_equal(b.len, b2.len);
        assert_memory_equal(b.data, b2.data, b.len);
        if (corpus) {
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", corpus, proto_msg_type_name(t));
            FILE *f = fopen(path, "wb");
            if (f) {
                fwrite(b.data, 1, b.len, f);
                fclose(f);
            }
        }
        proto_msg_free(&d);
        cf_buf_free(&b);
        cf_buf_free(&b2);
    }
}

static void test_roundtrip_fields(void **state)
{
    (void)state;
    proto_msg m, d;
    cf_buf b = {0};
    sample_msg(PROTO_MSG_ANNOUNCE_HOST, &m);
    assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
    assert_int_equal(proto_msg_decode(m.type, b.data, b.len, 0, &d, NULL), 0);
    const proto_announce_host *a = &d.u.announce_host;
    assert_string_equal(a->host_id, "10.0.0.7-node7");
    assert_int_equal(a->n_addrs, 2);
    assert_string_equal(a->addrs[1], "fd00::7");
    assert_int_equal(a->upload_port, 4005);
    assert_int_equal(a->upload_bw, 125000000);
    assert_int_equal(a->free_disk, 50ull << 30);
    assert_string_equal(a->rack, "r17");
    proto_msg_free(&d);

    /* optional strings absent -> "" ; defaults for absent ints */
    cf_buf_reset(&b);
    sample_msg(PROTO_MSG_BAD_PARENT, &m);
    m.u.bad_parent.piece = PROTO_NO_PIECE;
    assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
    assert_int_equal(proto_msg_decode(m.type, b.data, b.len, 0, &d, NULL), 0);
    assert_int_equal(d.u.bad_parent.piece, PROTO_NO_PIECE);
    proto_msg_free(&d);

    cf_buf_reset(&b);
    sample_msg(PROTO_MSG_ANNOUNCE_HOST, &m);
    m.u.announce_host.idc = NULL;
    m.u.announce_host.hostname = "";
    assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
    assert_int_equal(proto_msg_decode(m.type, b.data, b.len, 0, &d, NULL), 0);
    assert_non_null(d.u.announce_host.idc);
    assert_string_equal(d.u.announce_host.idc, "");
    assert_string_equal(d.u.announce_host.hostname, "");
    proto_msg_free(&d);

    cf_buf_reset(&b);
    sample_msg(PROTO_MSG_CANDIDATES, &m);
    assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
    assert_int_equal(proto_msg_decode(m.type, b.data, b.len, 0, &d, NULL), 0);
    assert_int_equal(d.u.candidates.n_candidates, 2);
    assert_string_equal(d.u.candidates.candidates[1].addr, "[fd00::9]:4005");
    assert_int_equal(d.u.candidates.candidates[0].bits_len, 2);
    assert_int_equal(d.u.candidates.candidates[0].bits[0], 0x0f);
    proto_msg_free(&d);

    cf_buf_reset(&b);
    sample_msg(PROTO_MSG_LOCAL_LIST_REPLY, &m);
    assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
    assert_int_equal(proto_msg_decode(m.type, b.data, b.len, 0, &d, NULL), 0);
    assert_int_equal(d.u.local_list_reply.n_entries, 2);
    assert_true(d.u.local_list_reply.entries[0].pinned);
    assert_true(d.u.local_list_reply.entries[1].complete);
    assert_int_equal(d.u.local_list_reply.entries[0].content_length, 9000000);
    assert_int_equal(d.u.local_list_reply.n_tasks, 2);
    const proto_local_task_info *tk = d.u.local_list_reply.tasks;
    assert_string_equal(tk[0].task_id, SAMPLE_TASK);
    assert_string_equal(tk[0].state, "running");
    assert_int_equal(tk[0].content_length, 9000000);
    assert_int_equal(tk[0].pieces_have, 2);
    assert_int_equal(tk[0].from_parents, 8u << 20);
    assert_int_equal(tk[0].from_origin, 0);
    assert_int_equal(tk[0].readers, 1);
    assert_string_equal(tk[0].error, "");
    assert_int_equal(tk[0].n_parents, 2);
    assert_string_equal(tk[0].parents[0].addr, "10.0.0.8:4005");
    assert_int_equal(tk[0].parents[0].served, 2);
    assert_false(tk[0].parents[0].banned);
    assert_string_equal(tk[0].parents[1].host_id, "10.0.0.9-node9");
    assert_true(tk[0].parents[1].banned);
    assert_string_equal(tk[1].state, "failed");
    assert_string_equal(tk[1].error, "origin: HTTP 404");
    assert_int_equal(tk[1].n_parents, 0);
    proto_msg_free(&d);

    /* LOCAL_READ "uv": absent = verified bytes only (older clients), set = cut-through ok */
    cf_buf_reset(&b);
    sample_msg(PROTO_MSG_LOCAL_READ, &m);
    assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
    assert_int_equal(proto_msg_decode(m.type, b.data, b.len, 0, &d, NULL), 0);
    assert_false(d.u.local_read.unverified_ok);
    proto_msg_free(&d);
    cf_buf_reset(&b);
    m.u.local_read.unverified_ok = true;
    assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
    assert_int_equal(proto_msg_decode(m.type, b.data, b.len, 0, &d, NULL), 0);
    assert_true(d.u.local_read.unverified_ok);
    assert_int_equal(d.u.local_read.length, 1u << 20);
    /* "fd" as set in the sample; absent = LOCAL_DATA frames only (older clients) */
    assert_true(d.u.local_read.accept_fd);
    proto_msg_free(&d);
    cf_buf_reset(&b);
    m.u.local_read.accept_fd = false;
    assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
    assert_int_equal(proto_msg_decode(m.type, b.data, b.len, 0, &d, NULL), 0);
    assert_false(d.u.local_read.accept_fd);
    proto_msg_free(&d);

    /* LOCAL_FILE: every key required */
    cf_buf_reset(&b);
    sample_msg(PROTO_MSG_LOCAL_FILE, &m);
    assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
    assert_int_equal(proto_msg_decode(m.type, b.data, b.len, 0, &d, NULL), 0);
    assert_int_equal(d.u.local_file.req_id, 5);
    assert_int_equal(d.u.local_file.offset, 4096);
    assert_int_equal(d.u.local_file.length, 1u << 20);
    assert_int_equal(d.u.local_file.file_offset, 4096);
    proto_msg_free(&d);

    /* empty list is fine */
    cf_buf_reset(&b);
    sample_msg(PROTO_MSG_LOCAL_LIST_REPLY, &m);
    m.u.local_list_reply.n_entries = 0;
    m.u.local_list_reply.entries = NULL;
    m.u.local_list_reply.n_tasks = 0;
    m.u.local_list_reply.tasks = NULL;
    assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
    assert_int_equal(proto_msg_decode(m.type, b.data, b.len, 0, &d, NULL), 0);
    assert_int_equal(d.u.local_list_reply.n_entries, 0);
    assert_int_equal(d.u.local_list_reply.n_tasks, 0);
    proto_msg_free(&d);
    cf_buf_free(&b);
}

/* ---- hand-made bodies ---- */

typedef struct mp {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} mp;

static void mp_init(mp *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

static void mp_str(mp *p, const char *s)
{
    msgpack_pack_str(&p->pk, strlen(s));
    msgpack_pack_str_body(&p->pk, s, strlen(s));
}

static int mp_decode(mp *p, uint8_t type, proto_msg *out, cf_err *err)
{
    return proto_msg_decode(type, (const uint8_t *)p->sb.data, p->sb.size, 0, out, err);
}

static void test_unknown_keys_ignored(void **state)
{
    (void)state;
    mp p;
    mp_init(&p);
    msgpack_pack_map(&p.pk, 6);
    mp_str(&p, "zz_future");
    msgpack_pack_map(&p.pk, 1); /* nested map value */
    mp_str(&p, "x");
    msgpack_pack_array(&p.pk, 2);
    msgpack_pack_double(&p.pk, 1.5);
    msgpack_pack_nil(&p.pk);
    mp_str(&p, "t");
    mp_str(&p, SAMPLE_TASK);
    mp_str(&p, "neg");
    msgpack_pack_int64(&p.pk, -5);
    mp_str(&p, "ms");
    msgpack_pack_uint32(&p.pk, 250);
    mp_str(&p, "blob");
    msgpack_pack_bin(&p.pk, 3);
    msgpack_pack_bin_body(&p.pk, "\0\1\2", 3);
    mp_str(&p, "ext");
    msgpack_pack_ext(&p.pk, 2, 7);
    msgpack_pack_ext_body(&p.pk, "ab", 2);
    proto_msg m;
    cf_err err = {0};
    int r = mp_decode(&p, PROTO_MSG_WAIT, &m, &err);
    if (r) fail_msg("decode: %s", err.msg);
    assert_string_equal(m.u.wait.task_id, SAMPLE_TASK);
    assert_int_equal(m.u.wait.retry_after_ms, 250);
    proto_msg_free(&m);
    msgpack_sbuffer_destroy(&p.sb);
}

/* Unknown keys inside nested maps (candidate, list entry) are ignored as well. */
static void test_unknown_keys_nested(void **state)
{
    (void)state;
    mp p;
    mp_init(&p);
    msgpack_pack_map(&p.pk, 3);
    mp_str(&p, "r");
    msgpack_pack_uint8(&p.pk, 4);
    mp_str(&p, "e");
    msgpack_pack_array(&p.pk, 1);
    msgpack_pack_map(&p.pk, 6);
    mp_str(&p, "t");
    mp_str(&p, SAMPLE_TASK);
    mp_str(&p, "cl");
    msgpack_pack_uint32(&p.pk, 100);
    mp_str(&p, "ps");
    msgpack_pack_uint32(&p.pk, 1u << 20);
    mp_str(&p, "pc");
    msgpack_pack_uint32(&p.pk, 1);
    mp_str(&p, "hv");
    msgpack_pack_uint32(&p.pk, 1);
    mp_str(&p, "future");
    msgpack_pack_array(&p.pk, 1);
    mp_str(&p, "x");
    mp_str(&p, "more");
    msgpack_pack_true(&p.pk);
    proto_msg m;
    cf_err err = {0};
    int r = mp_decode(&p, PROTO_MSG_LOCAL_LIST_REPLY, &m, &err);
    if (r) fail_msg("decode: %s", err.msg);
    assert_int_equal(m.u.local_list_reply.n_entries, 1);
    assert_int_equal(m.u.local_list_reply.entries[0].content_length, 100);
    assert_false(m.u.local_list_reply.entries[0].pinned);
    assert_int_equal(m.u.local_list_reply.n_tasks, 0); /* "tk" absent (older daemon) */
    assert_null(m.u.local_list_reply.tasks);
    proto_msg_free(&m);
    msgpack_sbuffer_destroy(&p.sb);
}

/* The exact bytes of one message, so other implementations can check themselves. */
static void test_golden_bytes(void **state)
{
    (void)state;
    proto_msg m = {.type = PROTO_MSG_WAIT};
    m.u.wait = (proto_wait){.task_id = SAMPLE_TASK, .retry_after_ms = 300};
    cf_buf b = {0};
    assert_int_equal(proto_msg_encode_frame(&m, 0, &b, NULL), 0);
    /* header: "CFW1", version 1, type 0x23, flags 0, body_len 82, payload_len 0 */
    static const uint8_t hdr[16] = {'C', 'F', 'W', '1', 1, 0x23, 0, 0, 82, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(b.len, 16 + 82);
    assert_memory_equal(b.data, hdr, 16);
    /* body: fixmap(2) "t" str8(71) <task> "ms" uint16(300) */
    static const uint8_t head[] = {0x82, 0xa1, 't', 0xd9, 71};
    assert_memory_equal(b.data + 16, head, sizeof(head));
    assert_memory_equal(b.data + 21, SAMPLE_TASK, 71);
    static const uint8_t tail[] = {0xa2, 'm', 's', 0xcd, 0x01, 0x2c};
    assert_memory_equal(b.data + 92, tail, sizeof(tail));
    cf_buf_free(&b);
}

/* Builds WAIT with "t" = given task and "ms" packed by fn. */
static int wait_with(void (*pack_ms)(msgpack_packer *), const char *task, cf_err *err)
{
    mp p;
    mp_init(&p);
    msgpack_pack_map(&p.pk, 2);
    mp_str(&p, "t");
    mp_str(&p, task);
    mp_str(&p, "ms");
    pack_ms(&p.pk);
    proto_msg m;
    int r = mp_decode(&p, PROTO_MSG_WAIT, &m, err);
    if (r == 0) proto_msg_free(&m);
    msgpack_sbuffer_destroy(&p.sb);
    return r;
}

static void ms_ok(msgpack_packer *pk)
{
    msgpack_pack_uint32(pk, 1);
}
static void ms_str(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 1), msgpack_pack_str_body(pk, "1", 1);
}
static void ms_neg(msgpack_packer *pk)
{
    msgpack_pack_int32(pk, -1);
}
static void ms_big(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, 1ull << 32);
}
static void ms_bool(msgpack_packer *pk)
{
    msgpack_pack_true(pk);
}
static void ms_float(msgpack_packer *pk)
{
    msgpack_pack_double(pk, 1.0);
}
static void ms_nil(msgpack_packer *pk)
{
    msgpack_pack_nil(pk);
}
static void ms_arr(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 0);
}

static void test_wrong_types_rejected(void **state)
{
    (void)state;
    cf_err err = {0};
    assert_int_equal(wait_with(ms_ok, SAMPLE_TASK, &err), 0);
    assert_int_equal(wait_with(ms_str, SAMPLE_TASK, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "'ms'"));
    assert_int_equal(wait_with(ms_neg, SAMPLE_TASK, &err), -EBADMSG);
    assert_int_equal(wait_with(ms_big, SAMPLE_TASK, &err), -EBADMSG);
    assert_int_equal(wait_with(ms_bool, SAMPLE_TASK, &err), -EBADMSG);
    assert_int_equal(wait_with(ms_float, SAMPLE_TASK, &err), -EBADMSG);
    assert_int_equal(wait_with(ms_nil, SAMPLE_TASK, &err), -EBADMSG);
    assert_int_equal(wait_with(ms_arr, SAMPLE_TASK, &err), -EBADMSG);
    /* bad task ids */
    assert_int_equal(wait_with(ms_ok, "sha256:0123", &err), -EBADMSG);
    assert_int_equal(
        wait_with(ms_ok, "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
                  &err),
        -EBADMSG);
    assert_int_equal(
        wait_with(ms_ok, "sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                  &err),
        -EBADMSG);

    /* not a map, missing key, duplicate key, non-string key, trailing bytes, NUL in string */
    proto_msg m;
    mp p;
    mp_init(&p);
    msgpack_pack_array(&p.pk, 0);
    assert_int_equal(mp_decode(&p, PROTO_MSG_WAIT, &m, &err), -EBADMSG);
    msgpack_sbuffer_destroy(&p.sb);

    mp_init(&p);
    msgpack_pack_map(&p.pk, 1);
    mp_str(&p, "t");
    mp_str(&p, SAMPLE_TASK);
    assert_int_equal(mp_decode(&p, PROTO_MSG_WAIT, &m, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "'ms' missing"));
    msgpack_pack_nil(&p.pk); /* trailing byte */
    assert_int_equal(mp_decode(&p, PROTO_MSG_LEAVE_TASK, &m, &err), -EBADMSG);
    msgpack_sbuffer_destroy(&p.sb);

    mp_init(&p);
    msgpack_pack_map(&p.pk, 2);
    mp_str(&p, "t");
    mp_str(&p, SAMPLE_TASK);
    mp_str(&p, "t");
    mp_str(&p, SAMPLE_TASK);
    assert_int_equal(mp_decode(&p, PROTO_MSG_LEAVE_TASK, &m, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "repeated"));
    msgpack_sbuffer_destroy(&p.sb);

    mp_init(&p);
    msgpack_pack_map(&p.pk, 2);
    msgpack_pack_uint8(&p.pk, 1);
    msgpack_pack_uint8(&p.pk, 1);
    mp_str(&p, "t");
    mp_str(&p, SAMPLE_TASK);
    assert_int_equal(mp_decode(&p, PROTO_MSG_LEAVE_TASK, &m, &err), -EBADMSG);
    msgpack_sbuffer_destroy(&p.sb);

    mp_init(&p);
    msgpack_pack_map(&p.pk, 1);
    mp_str(&p, "id");
    msgpack_pack_str(&p.pk, 3);
    msgpack_pack_str_body(&p.pk, "a\0b", 3);
    assert_int_equal(mp_decode(&p, PROTO_MSG_LEAVE_HOST, &m, &err), -EBADMSG);
    msgpack_sbuffer_destroy(&p.sb);

    /* runs: odd count, zero-length run, run past the piece limit */
    const uint32_t bad_runs[][3] = {{1, 0, 0}, {0, 0, 2}, {PROTO_MAX_PIECES - 1, 2, 2}};
    for (int k = 0; k < 3; k++) {
        mp_init(&p);
        msgpack_pack_map(&p.pk, 2);
        mp_str(&p, "t");
        mp_str(&p, SAMPLE_TASK);
        mp_str(&p, "p");
        uint32_t n = bad_runs[k][2] ? 2 : 1;
        msgpack_pack_array(&p.pk, n);
        for (uint32_t j = 0; j < n; j++) msgpack_pack_uint32(&p.pk, bad_runs[k][j]);
        assert_int_equal(mp_decode(&p, PROTO_MSG_AVAIL_UPDATE, &m, &err), -EBADMSG);
        msgpack_sbuffer_destroy(&p.sb);
    }

    /* payload on a payload-less type; unknown type */
    uint8_t body[] = {0x80};
    assert_int_equal(proto_msg_decode(PROTO_MSG_WAIT, body, 1, 5, &m, &err), -EBADMSG);
    assert_int_equal(proto_msg_decode(0x7f, body, 1, 0, &m, &err), -ENOTSUP);
    assert_int_equal(proto_msg_decode(PROTO_MSG_WAIT, body, 0, 0, &m, &err), -EBADMSG);
}

static void test_cross_field_rules(void **state)
{
    (void)state;
    proto_msg m;
    cf_buf b = {0};
    cf_err err = {0};
    /* bitmap length must match piece count */
    sample_msg(PROTO_MSG_AVAIL, &m);
    m.u.avail.piece_count = 17;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    /* bits past the piece count */
    sample_msg(PROTO_MSG_AVAIL, &m);
    static uint8_t bits[2] = {0, 0x02};
    m.u.avail.bits = bits; /* piece 9 of 9 */
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    /* register answer: count consistent, power-of-two piece size */
    sample_msg(PROTO_MSG_REGISTER_ANSWER, &m);
    m.u.register_answer.piece_count = 4;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    sample_msg(PROTO_MSG_REGISTER_ANSWER, &m);
    m.u.register_answer.piece_size = 3u << 20;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    /* hello min > version */
    sample_msg(PROTO_MSG_HELLO, &m);
    m.u.hello.min_version = 2;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    /* list reply tasks: pieces held <= piece count, parents bounded, state required */
    proto_local_task_info tk = sample_tasks[0];
    sample_msg(PROTO_MSG_LOCAL_LIST_REPLY, &m);
    m.u.local_list_reply.tasks = &tk;
    m.u.local_list_reply.n_tasks = 1;
    tk.pieces_have = 4;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    tk = sample_tasks[0];
    tk.n_parents = PROTO_MAX_TASK_PARENTS + 1;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    tk = sample_tasks[0];
    tk.state = "";
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    tk = sample_tasks[0];
    m.u.local_list_reply.n_tasks = PROTO_MAX_LIST_TASKS + 1;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    /* too long strings, too many addresses, NULL required */
    sample_msg(PROTO_MSG_LEAVE_HOST, &m);
    char big[PROTO_MAX_ID_LEN + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    m.u.leave_host.host_id = big;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    m.u.leave_host.host_id = NULL;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    sample_msg(PROTO_MSG_ANNOUNCE_HOST, &m);
    m.u.announce_host.n_addrs = 0;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    assert_int_equal(b.len, 0); /* nothing appended on error */
    /* ACCESS: "o" is registry/repository, the token is not empty and bounded */
    sample_msg(PROTO_MSG_ACCESS, &m);
    m.u.access.repo_ref = "registry.example";
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    m.u.access.repo_ref = "/repo";
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    m.u.access.repo_ref = "registry.example/";
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    sample_msg(PROTO_MSG_ACCESS, &m);
    m.u.access.token = "";
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    m.u.access.token = NULL;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    static char tok[PROTO_MAX_TOKEN_LEN + 2];
    memset(tok, 'a', sizeof(tok) - 1);
    m.u.access.token = tok;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    tok[PROTO_MAX_TOKEN_LEN] = 0; /* exactly the limit */
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), 0);
    b.len = 0;
    sample_msg(PROTO_MSG_ACCESS, &m);
    m.u.access.task_id = "sha256:short";
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EINVAL);
    /* payload only on payload types */
    sample_msg(PROTO_MSG_WAIT, &m);
    assert_int_equal(proto_msg_encode_frame(&m, 1, &b, &err), -EINVAL);
    cf_buf_free(&b);
}

static void test_oversized_body(void **state)
{
    (void)state;
    /* 32 candidates x 512 KiB bitmaps: the encoder refuses a body over 1 MiB */
    uint32_t pc = PROTO_MAX_PIECES;
    size_t nb = proto_bitmap_nbytes(pc);
    uint8_t *bits = calloc(1, nb);
    proto_candidate cands[4];
    for (int i = 0; i < 4; i++)
        cands[i] =
            (proto_candidate){.host_id = "h", .addr = "1.2.3.4:5", .bits = bits, .bits_len = nb};
    proto_msg m = {.type = PROTO_MSG_CANDIDATES};
    m.u.candidates = (proto_candidates){
        .task_id = SAMPLE_TASK, .piece_count = pc, .candidates = cands, .n_candidates = 4};
    cf_buf b = {0};
    cf_err err = {0};
    assert_int_equal(cf_buf_append(&b, "xy", 2), 0);
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), -EMSGSIZE);
    assert_int_equal(b.len, 2);
    assert_int_equal(proto_msg_encode_frame(&m, 0, &b, &err), -EMSGSIZE);
    assert_int_equal(b.len, 2);
    /* one fits */
    m.u.candidates.n_candidates = 1;
    assert_int_equal(proto_msg_encode_body(&m, &b, &err), 0);
    free(bits);
    cf_buf_free(&b);

    /* decoder: body over 1 MiB */
    proto_msg d;
    uint8_t *huge = calloc(1, PROTO_MAX_BODY + 1);
    assert_int_equal(proto_msg_decode(PROTO_MSG_WAIT, huge, PROTO_MAX_BODY + 1, 0, &d, NULL),
                     -EBADMSG);
    free(huge);
    /* an array header claiming 2^32-1 elements in a few bytes is refused before allocation */
    uint8_t lie[] = {0x81, 0xa1, 't', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x00};
    assert_int_equal(proto_msg_decode(PROTO_MSG_LEAVE_TASK, lie, sizeof(lie), 0, &d, NULL),
                     -EBADMSG);
    uint8_t liemap[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 't'};
    assert_int_equal(proto_msg_decode(PROTO_MSG_LEAVE_TASK, liemap, sizeof(liemap), 0, &d, NULL),
                     -EBADMSG);
    /* deep nesting inside an unknown key */
    uint8_t deep[64];
    size_t n = 0;
    deep[n++] = 0x81;
    deep[n++] = 0xa1;
    deep[n++] = 'z';
    for (int i = 0; i < 40; i++) deep[n++] = 0x91;
    deep[n++] = 0xc0;
    assert_int_equal(proto_msg_decode(PROTO_MSG_LEAVE_TASK, deep, n, 0, &d, NULL), -EBADMSG);
}

static void test_truncated_and_mutated(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_SAMPLE_TYPES; i++) {
        proto_msg m, d;
        sample_msg(sample_types[i], &m);
        cf_buf b = {0};
        assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
        for (size_t n = 0; n < b.len; n++) {
            int r = proto_msg_decode(m.type, b.data, n, 0, &d, NULL);
            assert_int_not_equal(r, 0);
        }
        /* every single-byte mutation: decode must not crash; success must re-validate */
        for (size_t k = 0; k < b.len; k++) {
            for (int v = 0; v < 256; v += 51) {
                uint8_t save = b.data[k];
                b.data[k] = (uint8_t)v;
                if (proto_msg_decode(m.type, b.data, b.len, 0, &d, NULL) == 0) {
                    assert_int_equal(proto_msg_validate(&d, NULL), 0);
                    proto_msg_free(&d);
                }
                b.data[k] = save;
            }
        }
        cf_buf_free(&b);
    }
}

static void test_handshake(void **state)
{
    (void)state;
    proto_hello ours, theirs;
    proto_hello_init(&ours, "sched-1", PROTO_ROLE_SCHEDULER, 0, 0);
    proto_hello_init(&theirs, "peer-1", PROTO_ROLE_PEER, PROTO_CAP_DIGEST_LIST, 1u << 20);
    uint32_t v = 0, maxp = 0;
    cf_err err = {0};
    assert_int_equal(proto_handshake_check(&ours, &theirs, &v, &maxp, &err), 0);
    assert_int_equal(v, PROTO_VERSION);
    assert_int_equal(maxp, 1u << 20);
    theirs.max_payload = 0;
    assert_int_equal(proto_handshake_check(&ours, &theirs, &v, &maxp, &err), 0);
    assert_int_equal(maxp, PROTO_MAX_PAYLOAD);

    /* newer peer that still accepts our version: negotiated down */
    theirs.version = PROTO_VERSION + 2;
    theirs.min_version = PROTO_VERSION;
    assert_int_equal(proto_handshake_check(&ours, &theirs, &v, NULL, &err), 0);
    assert_int_equal(v, PROTO_VERSION);

    /* peer too new */
    theirs.min_version = PROTO_VERSION + 1;
    assert_int_equal(proto_handshake_check(&ours, &theirs, &v, NULL, &err), -EPROTONOSUPPORT);
    assert_non_null(strstr(err.msg, "incompatible protocol version"));
    assert_non_null(strstr(err.msg, "peer-1"));
    proto_msg refusal;
    proto_handshake_refusal(&refusal, &err);
    assert_int_equal(refusal.type, PROTO_MSG_ERROR);
    assert_int_equal(refusal.u.error.code, PROTO_E_VERSION);
    cf_buf b = {0};
    assert_int_equal(proto_msg_encode_frame(&refusal, 0, &b, NULL), 0);
    cf_buf_free(&b);

    /* peer too old */
    ours.min_version = ours.version = 5;
    theirs.min_version = 1;
    theirs.version = 4;
    assert_int_equal(proto_handshake_check(&ours, &theirs, &v, NULL, &err), -EPROTONOSUPPORT);
    /* inconsistent */
    theirs.min_version = 9;
    assert_int_equal(proto_handshake_check(&ours, &theirs, &v, NULL, &err), -EBADMSG);
}

static void test_task_id_and_digests(void **state)
{
    (void)state;
    uint8_t d[32], d2[32];
    for (int i = 0; i < 32; i++) d[i] = (uint8_t)(i * 9);
    char id[PROTO_TASK_ID_LEN + 1];
    proto_task_id_from_digest(d, id);
    assert_int_equal(strlen(id), PROTO_TASK_ID_LEN);
    assert_int_equal(proto_task_id_check(id), 0);
    assert_int_equal(proto_task_id_to_digest(id, d2), 0);
    assert_memory_equal(d, d2, 32);
    assert_int_equal(proto_task_id_check("sha256:"), -EINVAL);
    assert_int_equal(proto_task_id_check(NULL), -EINVAL);

    /* digest list bound to task + piece size + length */
    static const char piece0[] = "piece zero";
    uint8_t digs[2 * 32];
    cf_sha256(piece0, sizeof(piece0), digs);
    memset(digs + 32, 0, 32);
    proto_digest_list l = {
        .task_id = SAMPLE_TASK, .piece_size = 1u << 20, .piece_count = 2, .digests = digs};
    cf_err err = {0};
    assert_int_equal(proto_digest_list_check(&l, SAMPLE_TASK, 1u << 20, (1u << 20) + 1, &err), 0);
    assert_int_equal(proto_digest_list_check(&l, SAMPLE_TASK2, 1u << 20, (1u << 20) + 1, &err),
                     -EBADMSG);
    assert_int_equal(proto_digest_list_check(&l, SAMPLE_TASK, 2u << 20, (1u << 20) + 1, &err),
                     -EBADMSG);
    assert_non_null(strstr(err.msg, "piece size"));
    assert_int_equal(proto_digest_list_check(&l, SAMPLE_TASK, 1u << 20, 3u << 20, &err), -EBADMSG);
    assert_int_equal(proto_digest_list_verify_piece(&l, 0, piece0, sizeof(piece0)), 0);
    assert_int_equal(proto_digest_list_verify_piece(&l, 1, piece0, sizeof(piece0)), -EBADMSG);
    assert_int_equal(proto_digest_list_verify_piece(&l, 2, piece0, sizeof(piece0)), -ERANGE);

    /* digest bin length must equal piece_count * 32 on the wire */
    proto_msg m = {.type = PROTO_MSG_DIGESTS_PUBLISH}, out;
    m.u.digests = l;
    cf_buf b = {0};
    assert_int_equal(proto_msg_encode_body(&m, &b, NULL), 0);
    /* patch "pc" from 2 to 3 (positive fixint) */
    uint8_t *pc = memmem(b.data, b.len, "\xa2pc\x02", 4);
    assert_non_null(pc);
    pc[3] = 3;
    assert_int_equal(proto_msg_decode(m.type, b.data, b.len, 0, &out, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "'d'"));
    cf_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_header),          cmocka_unit_test(test_frame_parse_partial),
        cmocka_unit_test(test_roundtrip_all),         cmocka_unit_test(test_roundtrip_fields),
        cmocka_unit_test(test_unknown_keys_ignored),  cmocka_unit_test(test_unknown_keys_nested),
        cmocka_unit_test(test_golden_bytes),          cmocka_unit_test(test_wrong_types_rejected),
        cmocka_unit_test(test_cross_field_rules),     cmocka_unit_test(test_oversized_body),
        cmocka_unit_test(test_truncated_and_mutated), cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_task_id_and_digests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
