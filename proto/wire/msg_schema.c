/* The schema of every message body: keys, kinds and limits (docs/protocol.md mirrors it), plus
 * the cross-field rules that one field alone cannot express. */
#include "msg_schema.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/msg.h"
#include "proto/piece.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define F(st, k, kd, m, fl, mx)                                                                    \
    {                                                                                              \
        .key = (k), .kind = (kd), .flags = (fl), .off = offsetof(st, m), .max = (mx)               \
    }
#define FD(st, k, kd, m, fl, mx, d)                                                                \
    {                                                                                              \
        .key = (k), .kind = (kd), .flags = (fl), .off = offsetof(st, m), .max = (mx), .def = (d)   \
    }
#define FN(st, k, kd, m, n, fl, mx, lo, hi, s)                                                     \
    {                                                                                              \
        .key = (k), .kind = (kd), .flags = (fl), .off = offsetof(st, m), .off2 = offsetof(st, n),  \
        .max = (mx), .min_count = (lo), .max_count = (hi), .sub = (s)                              \
    }
#define TASK(st)  F(st, "t", FK_TASK, task_id, FF_REQ, PROTO_TASK_ID_LEN)
#define REQID(st) F(st, "r", FK_U64, req_id, FF_REQ, 0)
#define DESC(ty, nm, st, flds, pl, chk)                                                            \
    {                                                                                              \
        .type = (ty), .name = (nm), .fields = (flds), .nfields = ARRAY_LEN(flds),                  \
        .size = sizeof(st), .payload = (pl), .check = (chk)                                        \
    }

/* ---- cross-field checks ---- */

static int check_hello(const void *p, cf_err *err)
{
    const proto_hello *h = p;
    if (h->version == 0) return cf_err_set(err, -EINVAL, "HELLO: version 0");
    if (h->min_version > h->version)
        return cf_err_set(err, -EINVAL, "HELLO: min_version %u > version %u", h->min_version,
                          h->version);
    if (h->max_payload > PROTO_MAX_PAYLOAD)
        return cf_err_set(err, -EINVAL, "HELLO: max_payload %u over %u", h->max_payload,
                          PROTO_MAX_PAYLOAD);
    return 0;
}

static int check_announce(const void *p, cf_err *err)
{
    const proto_announce_host *a = p;
    if (a->upload_port == 0) return cf_err_set(err, -EINVAL, "ANNOUNCE_HOST: upload port 0");
    return 0;
}

static int check_layout(const char *what, uint64_t cl, uint32_t ps, uint32_t pc, cf_err *err)
{
    if (proto_piece_size_check(ps) < 0)
        return cf_err_set(err, -EINVAL, "%s: piece size %u is not a power of two in [%u, %u]", what,
                          ps, PROTO_MIN_PIECE_SIZE, PROTO_MAX_PIECE_SIZE);
    uint64_t want = proto_piece_count(cl, ps);
    if (want > PROTO_MAX_PIECES)
        return cf_err_set(err, -EINVAL, "%s: %llu pieces exceed the limit %u", what,
                          (unsigned long long)want, PROTO_MAX_PIECES);
    if (want != pc)
        return cf_err_set(err, -EINVAL,
                          "%s: piece count %u does not match content length %llu / piece size %u "
                          "(%llu)",
                          what, pc, (unsigned long long)cl, ps, (unsigned long long)want);
    return 0;
}

static int check_register_answer(const void *p, cf_err *err)
{
    const proto_register_answer *a = p;
    return check_layout("REGISTER_ANSWER", a->content_length, a->piece_size, a->piece_count, err);
}

static int check_digest_list(const void *p, cf_err *err)
{
    const proto_digest_list *l = p;
    if (proto_piece_size_check(l->piece_size) < 0)
        return cf_err_set(err, -EINVAL, "digest list: bad piece size %u", l->piece_size);
    if (l->piece_count == 0 || l->piece_count > PROTO_MAX_DIGEST_PIECES)
        return cf_err_set(err, -EINVAL, "digest list: piece count %u not in 1..%u", l->piece_count,
                          PROTO_MAX_DIGEST_PIECES);
    if (l->digests == NULL) return cf_err_set(err, -EINVAL, "digest list: no digests");
    return 0;
}

static int check_digests_fetch(const void *p, cf_err *err)
{
    const proto_digests_fetch *f = p;
    if (proto_piece_size_check(f->piece_size) < 0)
        return cf_err_set(err, -EINVAL, "DIGESTS_FETCH: bad piece size %u", f->piece_size);
    return 0;
}

static int check_bits(const char *what, uint32_t pc, const uint8_t *bits, size_t len, cf_err *err)
{
    if (pc > PROTO_MAX_PIECES)
        return cf_err_set(err, -EINVAL, "%s: piece count %u over %u", what, pc, PROTO_MAX_PIECES);
    if (len != proto_bitmap_nbytes(pc))
        return cf_err_set(err, -EINVAL, "%s: bitmap has %zu bytes, %u pieces need %zu", what, len,
                          pc, proto_bitmap_nbytes(pc));
    if (len > 0 && bits == NULL) return cf_err_set(err, -EINVAL, "%s: bitmap missing", what);
    if ((pc & 7u) && (bits[len - 1] >> (pc & 7u)) != 0)
        return cf_err_set(err, -EINVAL, "%s: bitmap bits set past piece %u", what, pc);
    return 0;
}

static int check_candidates(const void *p, cf_err *err)
{
    const proto_candidates *c = p;
    for (size_t i = 0; i < c->n_candidates; i++) {
        int r = check_bits("CANDIDATES", c->piece_count, c->candidates[i].bits,
                           c->candidates[i].bits_len, err);
        if (r < 0) return cf_err_wrap(err, r, "candidate %zu", i);
    }
    return 0;
}

static int check_avail(const void *p, cf_err *err)
{
    const proto_avail *a = p;
    return check_bits("AVAIL", a->piece_count, a->bits, a->bits_len, err);
}

/* ---- tables ---- */

static const field_desc f_hello[] = {
    F(proto_hello, "v", FK_U32, version, FF_REQ, 0),
    F(proto_hello, "mv", FK_U32, min_version, FF_REQ, 0),
    F(proto_hello, "id", FK_STR, node_id, FF_REQ, PROTO_MAX_ID_LEN),
    F(proto_hello, "ro", FK_U8, role, FF_REQ, 0),
    F(proto_hello, "c", FK_U64, caps, 0, 0),
    F(proto_hello, "mp", FK_U32, max_payload, 0, 0),
};
static const field_desc f_error[] = {
    F(proto_error, "c", FK_U32, code, FF_REQ, 0),
    F(proto_error, "m", FK_STR, message, 0, PROTO_MAX_TEXT_LEN),
    F(proto_error, "t", FK_STR, task_id, 0, PROTO_TASK_ID_LEN),
    F(proto_error, "r", FK_U64, req_id, 0, 0),
};
static const field_desc f_announce[] = {
    F(proto_announce_host, "id", FK_STR, host_id, FF_REQ, PROTO_MAX_ID_LEN),
    F(proto_announce_host, "hn", FK_STR, hostname, 0, PROTO_MAX_LABEL_LEN),
    FN(proto_announce_host, "a", FK_STRS, addrs, n_addrs, FF_REQ, PROTO_MAX_ADDR_LEN, 1,
       PROTO_MAX_ADDRS, NULL),
    F(proto_announce_host, "up", FK_U16, upload_port, FF_REQ, 0),
    F(proto_announce_host, "us", FK_U32, upload_slots, FF_REQ, 0),
    F(proto_announce_host, "bw", FK_U64, upload_bw, 0, 0),
    F(proto_announce_host, "fd", FK_U64, free_disk, FF_REQ, 0),
    F(proto_announce_host, "idc", FK_STR, idc, 0, PROTO_MAX_LABEL_LEN),
    F(proto_announce_host, "zn", FK_STR, zone, 0, PROTO_MAX_LABEL_LEN),
    F(proto_announce_host, "rk", FK_STR, rack, 0, PROTO_MAX_LABEL_LEN),
};
static const field_desc f_register_task[] = {
    TASK(proto_register_task),
    F(proto_register_task, "cl", FK_U64, content_length, FF_REQ, 0),
    F(proto_register_task, "o", FK_STR, origin, FF_REQ, PROTO_MAX_ORIGIN_LEN),
    F(proto_register_task, "rs", FK_BOOL, resync, 0, 0),
};
static const field_desc f_piece_report[] = {
    TASK(proto_piece_report),
    FN(proto_piece_report, "p", FK_RUNS, runs, n_runs, FF_REQ, 0, 1, PROTO_MAX_RUNS, NULL),
    F(proto_piece_report, "pa", FK_STR, parent_id, 0, PROTO_MAX_ID_LEN),
};
static const field_desc f_finished[] = {
    TASK(proto_task_finished),
    F(proto_task_finished, "cl", FK_U64, content_length, FF_REQ, 0),
    F(proto_task_finished, "vf", FK_BOOL, verified, 0, 0),
};
static const field_desc f_failed[] = {
    TASK(proto_task_failed),
    F(proto_task_failed, "c", FK_U32, code, FF_REQ, 0),
    F(proto_task_failed, "m", FK_STR, message, 0, PROTO_MAX_TEXT_LEN),
};
static const field_desc f_bad_parent[] = {
    TASK(proto_bad_parent),
    F(proto_bad_parent, "pa", FK_STR, parent_id, FF_REQ, PROTO_MAX_ID_LEN),
    F(proto_bad_parent, "rs", FK_U8, reason, FF_REQ, 0),
    FD(proto_bad_parent, "pn", FK_U32, piece, 0, 0, PROTO_NO_PIECE),
};
static const field_desc f_leave_task[] = {TASK(proto_leave_task)};
static const field_desc f_leave_host[] = {
    F(proto_leave_host, "id", FK_STR, host_id, FF_REQ, PROTO_MAX_ID_LEN),
};
static const field_desc f_heartbeat[] = {
    F(proto_heartbeat, "id", FK_STR, host_id, FF_REQ, PROTO_MAX_ID_LEN),
    F(proto_heartbeat, "s", FK_U64, seq, FF_REQ, 0),
    F(proto_heartbeat, "fd", FK_U64, free_disk, 0, 0),
    F(proto_heartbeat, "fs", FK_U32, free_slots, 0, 0),
};
static const field_desc f_heartbeat_reply[] = {
    F(proto_heartbeat_reply, "s", FK_U64, seq, FF_REQ, 0),
};
static const field_desc f_digest_list[] = {
    TASK(proto_digest_list),
    F(proto_digest_list, "ps", FK_U32, piece_size, FF_REQ, 0),
    F(proto_digest_list, "pc", FK_U32, piece_count, FF_REQ, PROTO_MAX_DIGEST_PIECES),
    /* bin of piece_count * 32 bytes (no separate length member) */
    {.key = "d",
     .kind = FK_DIGESTS,
     .flags = FF_REQ,
     .off = offsetof(proto_digest_list, digests),
     .off2 = offsetof(proto_digest_list, piece_count),
     .max = (uint64_t)PROTO_MAX_DIGEST_PIECES * 32},
};
static const field_desc f_digests_fetch[] = {
    TASK(proto_digests_fetch),
    F(proto_digests_fetch, "ps", FK_U32, piece_size, FF_REQ, 0),
};
static const field_desc f_digests_ack[] = {TASK(proto_digests_ack)};
static const field_desc f_register_answer[] = {
    TASK(proto_register_answer),
    F(proto_register_answer, "ps", FK_U32, piece_size, FF_REQ, 0),
    F(proto_register_answer, "cl", FK_U64, content_length, FF_REQ, 0),
    F(proto_register_answer, "pc", FK_U32, piece_count, FF_REQ, PROTO_MAX_PIECES),
    F(proto_register_answer, "dg", FK_BOOL, has_digests, 0, 0),
};
static const field_desc f_candidate[] = {
    F(proto_candidate, "id", FK_STR, host_id, FF_REQ, PROTO_MAX_ID_LEN),
    F(proto_candidate, "a", FK_STR, addr, FF_REQ, PROTO_MAX_ADDR_LEN),
    FN(proto_candidate, "b", FK_BIN, bits, bits_len, FF_REQ, PROTO_MAX_PIECES / 8, 0, 0, NULL),
};
static const msg_desc d_candidate = DESC(0, "candidate", proto_candidate, f_candidate, false, NULL);
static const field_desc f_candidates[] = {
    TASK(proto_candidates),
    F(proto_candidates, "pc", FK_U32, piece_count, FF_REQ, PROTO_MAX_PIECES),
    FN(proto_candidates, "c", FK_MAPS, candidates, n_candidates, FF_REQ, 0, 1, PROTO_MAX_CANDIDATES,
       &d_candidate),
};
static const field_desc f_b2s[] = {
    TASK(proto_back_to_source),
    FN(proto_back_to_source, "p", FK_RUNS, runs, n_runs, FF_REQ, 0, 1, PROTO_MAX_RUNS, NULL),
    F(proto_back_to_source, "st", FK_U32, stall_ms, 0, 0),
};
static const field_desc f_wait[] = {
    TASK(proto_wait),
    F(proto_wait, "ms", FK_U32, retry_after_ms, FF_REQ, 0),
};
static const field_desc f_avail_query[] = {
    TASK(proto_avail_query),
    F(proto_avail_query, "sub", FK_BOOL, subscribe, 0, 0),
};
static const field_desc f_avail[] = {
    TASK(proto_avail),
    F(proto_avail, "pc", FK_U32, piece_count, FF_REQ, PROTO_MAX_PIECES),
    FN(proto_avail, "b", FK_BIN, bits, bits_len, FF_REQ, PROTO_MAX_PIECES / 8, 0, 0, NULL),
};
static const field_desc f_avail_update[] = {
    TASK(proto_avail_update),
    FN(proto_avail_update, "p", FK_RUNS, runs, n_runs, FF_REQ, 0, 1, PROTO_MAX_RUNS, NULL),
};
static const field_desc f_piece_request[] = {
    REQID(proto_piece_request),
    TASK(proto_piece_request),
    F(proto_piece_request, "pn", FK_U32, piece, FF_REQ, PROTO_MAX_PIECES - 1),
};
static const field_desc f_piece_data[] = {
    REQID(proto_piece_data),
    TASK(proto_piece_data),
    F(proto_piece_data, "pn", FK_U32, piece, FF_REQ, PROTO_MAX_PIECES - 1),
};
static const field_desc f_access[] = {
    REQID(proto_access),
    TASK(proto_access),
    F(proto_access, "o", FK_STR, repo_ref, FF_REQ, PROTO_MAX_REPO_REF_LEN),
    F(proto_access, "tk", FK_STR, token, FF_REQ, PROTO_MAX_TOKEN_LEN),
};
static const field_desc f_access_ok[] = {
    REQID(proto_access_ok),
    TASK(proto_access_ok),
};
static int check_access(const void *p, cf_err *err)
{
    const proto_access *a = p;
    const char *slash = strchr(a->repo_ref, '/');
    if (!slash || slash == a->repo_ref || !slash[1])
        return cf_err_set(err, -EINVAL, "ACCESS: \"o\" is not registry/repository");
    if (!a->token[0]) return cf_err_set(err, -EINVAL, "ACCESS: empty token");
    return 0;
}
static const field_desc f_local_read[] = {
    REQID(proto_local_read),
    TASK(proto_local_read),
    F(proto_local_read, "o", FK_STR, origin, FF_REQ, PROTO_MAX_ORIGIN_LEN),
    F(proto_local_read, "cr", FK_STR, credentials, 0, PROTO_MAX_CRED_LEN),
    F(proto_local_read, "off", FK_U64, offset, FF_REQ, 0),
    F(proto_local_read, "len", FK_U64, length, FF_REQ, 0),
    F(proto_local_read, "uv", FK_BOOL, unverified_ok, 0, 0),
    F(proto_local_read, "fd", FK_BOOL, accept_fd, 0, 0),
};
static const field_desc f_local_data[] = {
    REQID(proto_local_data),
    F(proto_local_data, "off", FK_U64, offset, FF_REQ, 0),
    F(proto_local_data, "end", FK_BOOL, last, 0, 0),
};
static const field_desc f_local_task[] = {
    REQID(proto_local_task),
    TASK(proto_local_task),
};
static const field_desc f_local_entry[] = {
    TASK(proto_local_entry),
    F(proto_local_entry, "cl", FK_U64, content_length, FF_REQ, 0),
    F(proto_local_entry, "ps", FK_U32, piece_size, FF_REQ, 0),
    F(proto_local_entry, "pc", FK_U32, piece_count, FF_REQ, PROTO_MAX_PIECES),
    F(proto_local_entry, "hv", FK_U32, pieces_have, FF_REQ, PROTO_MAX_PIECES),
    F(proto_local_entry, "pin", FK_BOOL, pinned, 0, 0),
    F(proto_local_entry, "ok", FK_BOOL, complete, 0, 0),
};
static int check_local_entry(const void *p, cf_err *err)
{
    const proto_local_entry *e = p;
    if (e->pieces_have > e->piece_count)
        return cf_err_set(err, -EINVAL, "entry %s: has %u of %u pieces", e->task_id, e->pieces_have,
                          e->piece_count);
    return 0;
}
static const msg_desc d_local_entry =
    DESC(0, "entry", proto_local_entry, f_local_entry, false, check_local_entry);
static const field_desc f_local_stat_reply[] = {
    REQID(proto_local_stat_reply),
    {.key = "e",
     .kind = FK_MAP,
     .flags = FF_REQ,
     .off = offsetof(proto_local_stat_reply, entry),
     .sub = &d_local_entry},
};
static const field_desc f_local_list[] = {REQID(proto_local_list)};
static const field_desc f_local_parent[] = {
    F(proto_local_parent, "id", FK_STR, host_id, FF_REQ, PROTO_MAX_ID_LEN),
    F(proto_local_parent, "a", FK_STR, addr, FF_REQ, PROTO_MAX_ADDR_LEN),
    F(proto_local_parent, "sv", FK_U32, served, 0, 0),
    F(proto_local_parent, "ban", FK_BOOL, banned, 0, 0),
    F(proto_local_parent, "dn", FK_BOOL, down, 0, 0),
};
static const msg_desc d_local_parent =
    DESC(0, "parent", proto_local_parent, f_local_parent, false, NULL);
static const field_desc f_local_task_info[] = {
    TASK(proto_local_task_info),
    F(proto_local_task_info, "st", FK_STR, state, FF_REQ, PROTO_MAX_STATE_LEN),
    F(proto_local_task_info, "cl", FK_U64, content_length, 0, 0),
    F(proto_local_task_info, "pc", FK_U32, piece_count, 0, PROTO_MAX_PIECES),
    F(proto_local_task_info, "hv", FK_U32, pieces_have, 0, PROTO_MAX_PIECES),
    F(proto_local_task_info, "fp", FK_U64, from_parents, 0, 0),
    F(proto_local_task_info, "fo", FK_U64, from_origin, 0, 0),
    F(proto_local_task_info, "om", FK_BOOL, origin_mode, 0, 0),
    F(proto_local_task_info, "rd", FK_U32, readers, 0, 0),
    F(proto_local_task_info, "er", FK_STR, error, 0, PROTO_MAX_TEXT_LEN),
    FN(proto_local_task_info, "pa", FK_MAPS, parents, n_parents, 0, 0, 0, PROTO_MAX_TASK_PARENTS,
       &d_local_parent),
};
static int check_local_task_info(const void *p, cf_err *err)
{
    const proto_local_task_info *t = p;
    if (t->pieces_have > t->piece_count)
        return cf_err_set(err, -EINVAL, "task %s: has %u of %u pieces", t->task_id, t->pieces_have,
                          t->piece_count);
    return 0;
}
static const msg_desc d_local_task_info =
    DESC(0, "task", proto_local_task_info, f_local_task_info, false, check_local_task_info);
static const field_desc f_local_list_reply[] = {
    REQID(proto_local_list_reply),
    FN(proto_local_list_reply, "e", FK_MAPS, entries, n_entries, FF_REQ, 0, 0,
       PROTO_MAX_LIST_ENTRIES, &d_local_entry),
    FN(proto_local_list_reply, "tk", FK_MAPS, tasks, n_tasks, 0, 0, 0, PROTO_MAX_LIST_TASKS,
       &d_local_task_info),
};
static const field_desc f_local_ok[] = {REQID(proto_local_ok)};
static const field_desc f_local_file[] = {
    REQID(proto_local_file),
    F(proto_local_file, "off", FK_U64, offset, FF_REQ, 0),
    F(proto_local_file, "len", FK_U64, length, FF_REQ, 0),
    F(proto_local_file, "fo", FK_U64, file_offset, FF_REQ, 0),
};

static const msg_desc descs[] = {
    DESC(PROTO_MSG_HELLO, "HELLO", proto_hello, f_hello, false, check_hello),
    DESC(PROTO_MSG_ERROR, "ERROR", proto_error, f_error, false, NULL),
    DESC(PROTO_MSG_ANNOUNCE_HOST, "ANNOUNCE_HOST", proto_announce_host, f_announce, false,
         check_announce),
    DESC(PROTO_MSG_REGISTER_TASK, "REGISTER_TASK", proto_register_task, f_register_task, false,
         NULL),
    DESC(PROTO_MSG_PIECE_REPORT, "PIECE_REPORT", proto_piece_report, f_piece_report, false, NULL),
    DESC(PROTO_MSG_TASK_FINISHED, "TASK_FINISHED", proto_task_finished, f_finished, false, NULL),
    DESC(PROTO_MSG_TASK_FAILED, "TASK_FAILED", proto_task_failed, f_failed, false, NULL),
    DESC(PROTO_MSG_BAD_PARENT, "BAD_PARENT", proto_bad_parent, f_bad_parent, false, NULL),
    DESC(PROTO_MSG_LEAVE_TASK, "LEAVE_TASK", proto_leave_task, f_leave_task, false, NULL),
    DESC(PROTO_MSG_LEAVE_HOST, "LEAVE_HOST", proto_leave_host, f_leave_host, false, NULL),
    DESC(PROTO_MSG_HEARTBEAT, "HEARTBEAT", proto_heartbeat, f_heartbeat, false, NULL),
    DESC(PROTO_MSG_DIGESTS_PUBLISH, "DIGESTS_PUBLISH", proto_digest_list, f_digest_list, false,
         check_digest_list),
    DESC(PROTO_MSG_DIGESTS_FETCH, "DIGESTS_FETCH", proto_digests_fetch, f_digests_fetch, false,
         check_digests_fetch),
    DESC(PROTO_MSG_REGISTER_ANSWER, "REGISTER_ANSWER", proto_register_answer, f_register_answer,
         false, check_register_answer),
    DESC(PROTO_MSG_CANDIDATES, "CANDIDATES", proto_candidates, f_candidates, false,
         check_candidates),
    DESC(PROTO_MSG_BACK_TO_SOURCE, "BACK_TO_SOURCE", proto_back_to_source, f_b2s, false, NULL),
    DESC(PROTO_MSG_WAIT, "WAIT", proto_wait, f_wait, false, NULL),
    DESC(PROTO_MSG_HEARTBEAT_REPLY, "HEARTBEAT_REPLY", proto_heartbeat_reply, f_heartbeat_reply,
         false, NULL),
    DESC(PROTO_MSG_DIGESTS, "DIGESTS", proto_digest_list, f_digest_list, false, check_digest_list),
    DESC(PROTO_MSG_DIGESTS_ACK, "DIGESTS_ACK", proto_digests_ack, f_digests_ack, false, NULL),
    DESC(PROTO_MSG_AVAIL_QUERY, "AVAIL_QUERY", proto_avail_query, f_avail_query, false, NULL),
    DESC(PROTO_MSG_AVAIL, "AVAIL", proto_avail, f_avail, false, check_avail),
    DESC(PROTO_MSG_AVAIL_UPDATE, "AVAIL_UPDATE", proto_avail_update, f_avail_update, false, NULL),
    DESC(PROTO_MSG_PIECE_REQUEST, "PIECE_REQUEST", proto_piece_request, f_piece_request, false,
         NULL),
    DESC(PROTO_MSG_PIECE_DATA, "PIECE_DATA", proto_piece_data, f_piece_data, true, NULL),
    DESC(PROTO_MSG_ACCESS, "ACCESS", proto_access, f_access, false, check_access),
    DESC(PROTO_MSG_ACCESS_OK, "ACCESS_OK", proto_access_ok, f_access_ok, false, NULL),
    DESC(PROTO_MSG_LOCAL_READ, "LOCAL_READ", proto_local_read, f_local_read, false, NULL),
    DESC(PROTO_MSG_LOCAL_DATA, "LOCAL_DATA", proto_local_data, f_local_data, true, NULL),
    DESC(PROTO_MSG_LOCAL_PREFETCH, "LOCAL_PREFETCH", proto_local_prefetch, f_local_read, false,
         NULL),
    DESC(PROTO_MSG_LOCAL_STAT, "LOCAL_STAT", proto_local_task, f_local_task, false, NULL),
    DESC(PROTO_MSG_LOCAL_STAT_REPLY, "LOCAL_STAT_REPLY", proto_local_stat_reply, f_local_stat_reply,
         false, NULL),
    DESC(PROTO_MSG_LOCAL_PIN, "LOCAL_PIN", proto_local_task, f_local_task, false, NULL),
    DESC(PROTO_MSG_LOCAL_UNPIN, "LOCAL_UNPIN", proto_local_task, f_local_task, false, NULL),
    DESC(PROTO_MSG_LOCAL_LIST, "LOCAL_LIST", proto_local_list, f_local_list, false, NULL),
    DESC(PROTO_MSG_LOCAL_LIST_REPLY, "LOCAL_LIST_REPLY", proto_local_list_reply, f_local_list_reply,
         false, NULL),
    DESC(PROTO_MSG_LOCAL_OK, "LOCAL_OK", proto_local_ok, f_local_ok, false, NULL),
    DESC(PROTO_MSG_LOCAL_FILE, "LOCAL_FILE", proto_local_file, f_local_file, false, NULL),
};

const msg_desc *msg_schema_find(uint8_t type)
{
    for (size_t i = 0; i < ARRAY_LEN(descs); i++)
        if (descs[i].type == type) return &descs[i];
    return NULL;
}

const char *proto_msg_type_name(uint8_t type)
{
    const msg_desc *d = msg_schema_find(type);
    return d ? d->name : "UNKNOWN";
}

bool proto_msg_type_known(uint8_t type)
{
    return msg_schema_find(type) != NULL;
}

bool proto_msg_type_has_payload(uint8_t type)
{
    const msg_desc *d = msg_schema_find(type);
    return d && d->payload;
}
