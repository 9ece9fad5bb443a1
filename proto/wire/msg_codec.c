/* Generic msgpack codec driven by the schema tables (msg_schema.c): one encoder, one decoder and
 * one validator for every message, so the three can never disagree about a key or a limit. */
#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "msg_schema.h"
#include "msgpack_scan.h"
#include "proto/frame.h"
#include "proto/msg.h"

/* ---- arena: every allocation of a decoded message, freed together ---- */

struct proto_arena {
    struct proto_arena *next;
    max_align_t data[];
};

static void *arena_alloc(struct proto_arena **a, size_t size)
{
    if (size > (size_t)PROTO_MAX_BODY * 32) return NULL; /* never reached with scanned input */
    struct proto_arena *blk = calloc(1, sizeof(*blk) + size);
    if (!blk) return NULL;
    blk->next = *a;
    *a = blk;
    return blk->data;
}

static void arena_free(struct proto_arena *a)
{
    while (a) {
        struct proto_arena *n = a->next;
        free(a);
        a = n;
    }
}

void proto_msg_free(proto_msg *m)
{
    if (!m) return;
    arena_free(m->arena_);
    m->arena_ = NULL;
}

/* ---- validation (structs, both before encoding and after decoding) ---- */

#define AT(T, base, off)  (*(T *)((uint8_t *)(base) + (off)))
#define CAT(T, base, off) (*(T const *)((const uint8_t *)(base) + (off)))

static int check_str(const msg_desc *d, const field_desc *f, const char *v, cf_err *err)
{
    if (!v || !*v) {
        if (f->flags & FF_REQ)
            return cf_err_set(err, -EINVAL, "%s: key '%s' missing or empty", d->name, f->key);
        return 0;
    }
    size_t n = strnlen(v, (size_t)f->max + 1);
    if (n > f->max)
        return cf_err_set(err, -EINVAL, "%s: key '%s' longer than %llu bytes", d->name, f->key,
                          (unsigned long long)f->max);
    return 0;
}

static int check_runs(const msg_desc *d, const field_desc *f, const proto_piece_run *runs, size_t n,
                      cf_err *err)
{
    if (n < f->min_count || n > f->max_count)
        return cf_err_set(err, -EINVAL, "%s: key '%s' has %zu runs, allowed %zu..%zu", d->name,
                          f->key, n, f->min_count, f->max_count);
    if (n && !runs) return cf_err_set(err, -EINVAL, "%s: key '%s' NULL runs", d->name, f->key);
    for (size_t i = 0; i < n; i++) {
        if (runs[i].count == 0 || (uint64_t)runs[i].start + runs[i].count > PROTO_MAX_PIECES)
            return cf_err_set(err, -EINVAL, "%s: key '%s' run %zu (%u+%u) empty or past %u",
                              d->name, f->key, i, runs[i].start, runs[i].count, PROTO_MAX_PIECES);
    }
    return 0;
}

static int validate_struct(const msg_desc *d, const void *s, cf_err *err)
{
    for (size_t i = 0; i < d->nfields; i++) {
        const field_desc *f = &d->fields[i];
        int r = 0;
        uint64_t v = 0;
        switch (f->kind) {
        case FK_STR:
            r = check_str(d, f, CAT(const char *, s, f->off), err);
            break;
        case FK_TASK: {
            const char *t = CAT(const char *, s, f->off);
            if (!t || proto_task_id_check(t) < 0)
                r = cf_err_set(err, -EINVAL, "%s: key '%s' is not a task id \"sha256:<64 hex>\"",
                               d->name, f->key);
            break;
        }
        case FK_U8:
            v = CAT(uint8_t, s, f->off);
            goto num;
        case FK_U16:
            v = CAT(uint16_t, s, f->off);
            goto num;
        case FK_U32:
            v = CAT(uint32_t, s, f->off);
            goto num;
        case FK_U64:
            v = CAT(uint64_t, s, f->off);
        num:
            if (f->max && v > f->max)
                r = cf_err_set(err, -EINVAL, "%s: key '%s' = %llu over %llu", d->name, f->key,
                               (unsigned long long)v, (unsigned long long)f->max);
            break;
        case FK_BOOL:
            break;
        case FK_BIN: {
            size_t n = CAT(size_t, s, f->off2);
            if (n > f->max || (n && !CAT(const uint8_t *, s, f->off)))
                r = cf_err_set(err, -EINVAL, "%s: key '%s' %zu bytes (max %llu) or NULL", d->name,
                               f->key, n, (unsigned long long)f->max);
            break;
        }
        case FK_DIGESTS: {
            uint64_t n = (uint64_t)CAT(uint32_t, s, f->off2) * 32;
            if (n > f->max || (n && !CAT(const uint8_t *, s, f->off)))
                r = cf_err_set(err, -EINVAL, "%s: key '%s' %llu bytes (max %llu) or NULL", d->name,
                               f->key, (unsigned long long)n, (unsigned long long)f->max);
            break;
        }
        case FK_RUNS:
            r = check_runs(d, f, CAT(const proto_piece_run *, s, f->off), CAT(size_t, s, f->off2),
                           err);
            break;
        case FK_STRS: {
            const char *const *a = CAT(const char *const *, s, f->off);
            size_t n = CAT(size_t, s, f->off2);
            if (n < f->min_count || n > f->max_count || (n && !a)) {
                r = cf_err_set(err, -EINVAL, "%s: key '%s' has %zu entries, allowed %zu..%zu",
                               d->name, f->key, n, f->min_count, f->max_count);
                break;
            }
            field_desc one = *f;
            one.flags = FF_REQ;
            for (size_t k = 0; k < n && r == 0; k++) r = check_str(d, &one, a[k], err);
            break;
        }
        case FK_MAPS: {
            const uint8_t *a = CAT(const uint8_t *, s, f->off);
            size_t n = CAT(size_t, s, f->off2);
            if (n < f->min_count || n > f->max_count || (n && !a)) {
                r = cf_err_set(err, -EINVAL, "%s: key '%s' has %zu entries, allowed %zu..%zu",
                               d->name, f->key, n, f->min_count, f->max_count);
                break;
            }
            for (size_t k = 0; k < n && r == 0; k++) {
                r = validate_struct(f->sub, a + k * f->sub->size, err);
                if (r < 0) r = cf_err_wrap(err, r, "%s: key '%s' entry %zu", d->name, f->key, k);
            }
            break;
        }
        case FK_MAP:
            r = validate_struct(f->sub, (const uint8_t *)s + f->off, err);
            if (r < 0) r = cf_err_wrap(err, r, "%s: key '%s'", d->name, f->key);
            break;
        default:
            r = cf_err_set(err, -EINVAL, "%s: bad schema", d->name);
        }
        if (r < 0) return r;
    }
    return d->check ? d->check(s, err) : 0;
}

int proto_msg_validate(const proto_msg *m, cf_err *err)
{
    if (!m) return cf_err_set(err, -EINVAL, "NULL message");
    const msg_desc *d = msg_schema_find(m->type);
    if (!d) return cf_err_set(err, -EINVAL, "unknown message type 0x%02x", m->type);
    return validate_struct(d, &m->u, err);
}

/* ---- encoder ---- */

typedef struct enc_ctx {
    cf_buf *out;
    size_t start;
    int error; /* -ENOMEM / -EMSGSIZE */
} enc_ctx;

static int enc_write(void *data, const char *buf, size_t len)
{
    enc_ctx *e = data;
    if (e->error) return -1;
    if (e->out->len - e->start + len > PROTO_MAX_BODY) {
        e->error = -EMSGSIZE;
        return -1;
    }
    if (cf_buf_append(e->out, buf, len) < 0) {
        e->error = -ENOMEM;
        return -1;
    }
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static bool field_present(const field_desc *f, const void *s)
{
    if (f->kind == FK_STR) {
        const char *v = CAT(const char *, s, f->off);
        return v && *v;
    }
    return true;
}

static void pack_struct(msgpack_packer *pk, const msg_desc *d, const void *s)
{
    size_t n = 0;
    for (size_t i = 0; i < d->nfields; i++) n += field_present(&d->fields[i], s);
    msgpack_pack_map(pk, n);
    for (size_t i = 0; i < d->nfields; i++) {
        const field_desc *f = &d->fields[i];
        if (!field_present(f, s)) continue;
        pack_str(pk, f->key);
        switch (f->kind) {
        case FK_STR:
        case FK_TASK:
            pack_str(pk, CAT(const char *, s, f->off));
            break;
        case FK_U8:
            msgpack_pack_uint8(pk, CAT(uint8_t, s, f->off));
            break;
        case FK_U16:
            msgpack_pack_uint16(pk, CAT(uint16_t, s, f->off));
            break;
        case FK_U32:
            msgpack_pack_uint32(pk, CAT(uint32_t, s, f->off));
            break;
        case FK_U64:
            msgpack_pack_uint64(pk, CAT(uint64_t, s, f->off));
            break;
        case FK_BOOL:
            if (CAT(bool, s, f->off))
                msgpack_pack_true(pk);
            else
                msgpack_pack_false(pk);
            break;
        case FK_BIN:
        case FK_DIGESTS: {
            size_t len = f->kind == FK_BIN ? CAT(size_t, s, f->off2)
                                           : (size_t)CAT(uint32_t, s, f->off2) * 32;
            msgpack_pack_bin(pk, len);
            if (len) msgpack_pack_bin_body(pk, CAT(const uint8_t *, s, f->off), len);
            break;
        }
        case FK_RUNS: {
            const proto_piece_run *r = CAT(const proto_piece_run *, s, f->off);
            size_t cnt = CAT(size_t, s, f->off2);
            msgpack_pack_array(pk, 2 * cnt);
            for (size_t k = 0; k < cnt; k++) {
                msgpack_pack_uint32(pk, r[k].start);
                msgpack_pack_uint32(pk, r[k].count);
            }
            break;
        }
        case FK_STRS: {
            const char *const *a = CAT(const char *const *, s, f->off);
            size_t cnt = CAT(size_t, s, f->off2);
            msgpack_pack_array(pk, cnt);
            for (size_t k = 0; k < cnt; k++) pack_str(pk, a[k]);
            break;
        }
        case FK_MAPS: {
            const uint8_t *a = CAT(const uint8_t *, s, f->off);
            size_t cnt = CAT(size_t, s, f->off2);
            msgpack_pack_array(pk, cnt);
            for (size_t k = 0; k < cnt; k++) pack_struct(pk, f->sub, a + k * f->sub->size);
            break;
        }
        case FK_MAP:
            pack_struct(pk, f->sub, (const uint8_t *)s + f->off);
            break;
        }
    }
}

int proto_msg_encode_body(const proto_msg *m, cf_buf *out, cf_err *err)
{
    int r = proto_msg_validate(m, err);
    if (r < 0) return r;
    const msg_desc *d = msg_schema_find(m->type);
    enc_ctx e = {.out = out, .start = out->len};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &e, enc_write);
    pack_struct(&pk, d, &m->u);
    if (e.error) {
        out->len = e.start;
        if (e.error == -EMSGSIZE)
            return cf_err_set(err, -EMSGSIZE, "%s: body larger than %u bytes", d->name,
                              PROTO_MAX_BODY);
        return cf_err_set(err, e.error, "%s: out of memory encoding", d->name);
    }
    return 0;
}

int proto_msg_encode_frame(const proto_msg *m, uint32_t payload_len, cf_buf *out, cf_err *err)
{
    if (!m) return cf_err_set(err, -EINVAL, "NULL message");
    if (payload_len && !proto_msg_type_has_payload(m->type))
        return cf_err_set(err, -EINVAL, "%s frames carry no payload", proto_msg_type_name(m->type));
    if (payload_len > PROTO_MAX_PAYLOAD)
        return cf_err_set(err, -EINVAL, "payload %u over %u", payload_len, PROTO_MAX_PAYLOAD);
    size_t start = out->len;
    int r = cf_buf_append_zeros(out, PROTO_FRAME_HEADER_LEN);
    if (r < 0) return cf_err_set(err, r, "out of memory");
    r = proto_msg_encode_body(m, out, err);
    if (r < 0) {
        out->len = start;
        return r;
    }
    proto_frame_header h;
    proto_frame_header_init(&h, m->type, 0, (uint32_t)(out->len - start - PROTO_FRAME_HEADER_LEN),
                            payload_len);
    proto_frame_header_encode(&h, out->data + start);
    return 0;
}

/* ---- decoder ---- */

typedef struct dec_ctx {
    struct proto_arena **arena;
    cf_err *err;
} dec_ctx;

static int dec_fail(dec_ctx *c, const msg_desc *d, const field_desc *f, const char *what)
{
    return cf_err_set(c->err, -EBADMSG, "%s: key '%s': %s", d->name, f->key, what);
}

static int dec_str(dec_ctx *c, const msg_desc *d, const field_desc *f, const msgpack_object *o,
                   uint64_t max, const char **out)
{
    if (o->type != MSGPACK_OBJECT_STR) return dec_fail(c, d, f, "expected a string");
    uint32_t n = o->via.str.size;
    if (n > max) return dec_fail(c, d, f, "string too long");
    if (n && memchr(o->via.str.ptr, 0, n)) return dec_fail(c, d, f, "string contains NUL");
    char *s = arena_alloc(c->arena, (size_t)n + 1);
    if (!s) return cf_err_set(c->err, -ENOMEM, "out of memory");
    if (n) memcpy(s, o->via.str.ptr, n);
    s[n] = 0;
    *out = s;
    return 0;
}

static int dec_uint(dec_ctx *c, const msg_desc *d, const field_desc *f, const msgpack_object *o,
                    uint64_t type_max, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dec_fail(c, d, f, "expected an unsigned integer");
    if (o->via.u64 > type_max) return dec_fail(c, d, f, "integer out of range");
    *v = o->via.u64;
    return 0;
}

static int dec_array(dec_ctx *c, const msg_desc *d, const field_desc *f, const msgpack_object *o,
                     size_t lo, size_t hi)
{
    if (o->type != MSGPACK_OBJECT_ARRAY) return dec_fail(c, d, f, "expected an array");
    if (o->via.array.size < lo || o->via.array.size > hi)
        return dec_fail(c, d, f, "array size out of range");
    return 0;
}

static int decode_map(dec_ctx *c, const msg_desc *d, const msgpack_object *o, void *s);

static int decode_field(dec_ctx *c, const msg_desc *d, const field_desc *f, const msgpack_object *o,
                        void *s, size_t *bin_len)
{
    int r = 0;
    uint64_t v = 0;
    switch (f->kind) {
    case FK_STR:
    case FK_TASK:
        return dec_str(c, d, f, o, f->max, &AT(const char *, s, f->off));
    case FK_U8:
        if ((r = dec_uint(c, d, f, o, UINT8_MAX, &v)) == 0) AT(uint8_t, s, f->off) = (uint8_t)v;
        return r;
    case FK_U16:
        if ((r = dec_uint(c, d, f, o, UINT16_MAX, &v)) == 0) AT(uint16_t, s, f->off) = (uint16_t)v;
        return r;
    case FK_U32:
        if ((r = dec_uint(c, d, f, o, UINT32_MAX, &v)) == 0) AT(uint32_t, s, f->off) = (uint32_t)v;
        return r;
    case FK_U64:
        if ((r = dec_uint(c, d, f, o, UINT64_MAX, &v)) == 0) AT(uint64_t, s, f->off) = v;
        return r;
    case FK_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN) return dec_fail(c, d, f, "expected a boolean");
        AT(bool, s, f->off) = o->via.boolean;
        return 0;
    case FK_BIN:
    case FK_DIGESTS: {
        if (o->type != MSGPACK_OBJECT_BIN) return dec_fail(c, d, f, "expected binary");
        uint32_t n = o->via.bin.size;
        if (n > f->max) return dec_fail(c, d, f, "binary too long");
        uint8_t *b = arena_alloc(c->arena, n ? n : 1);
        if (!b) return cf_err_set(c->err, -ENOMEM, "out of memory");
        if (n) memcpy(b, o->via.bin.ptr, n);
        AT(const uint8_t *, s, f->off) = b;
        if (f->kind == FK_BIN) AT(size_t, s, f->off2) = n;
        *bin_len = n;
        return 0;
    }
    case FK_RUNS: {
        if ((r = dec_array(c, d, f, o, 2 * f->min_count, 2 * f->max_count)) < 0) return r;
        uint32_t n = o->via.array.size;
        if (n % 2) return dec_fail(c, d, f, "odd number of run values");
        proto_piece_run *runs = arena_alloc(c->arena, (n / 2) * sizeof(*runs) + 1);
        if (!runs) return cf_err_set(c->err, -ENOMEM, "out of memory");
        for (uint32_t k = 0; k < n; k++) {
            if ((r = dec_uint(c, d, f, &o->via.array.ptr[k], UINT32_MAX, &v)) < 0) return r;
            if (k % 2)
                runs[k / 2].count = (uint32_t)v;
            else
                runs[k / 2].start = (uint32_t)v;
        }
        AT(const proto_piece_run *, s, f->off) = runs;
        AT(size_t, s, f->off2) = n / 2;
        return 0;
    }
    case FK_STRS: {
        if ((r = dec_array(c, d, f, o, f->min_count, f->max_count)) < 0) return r;
        uint32_t n = o->via.array.size;
        const char **a = arena_alloc(c->arena, n * sizeof(*a) + 1);
        if (!a) return cf_err_set(c->err, -ENOMEM, "out of memory");
        for (uint32_t k = 0; k < n; k++)
            if ((r = dec_str(c, d, f, &o->via.array.ptr[k], f->max, &a[k])) < 0) return r;
        AT(const char *const *, s, f->off) = a;
        AT(size_t, s, f->off2) = n;
        return 0;
    }
    case FK_MAPS: {
        if ((r = dec_array(c, d, f, o, f->min_count, f->max_count)) < 0) return r;
        uint32_t n = o->via.array.size;
        uint8_t *a = arena_alloc(c->arena, n * f->sub->size + 1);
        if (!a) return cf_err_set(c->err, -ENOMEM, "out of memory");
        for (uint32_t k = 0; k < n; k++) {
            if ((r = decode_map(c, f->sub, &o->via.array.ptr[k], a + k * f->sub->size)) < 0)
                return cf_err_wrap(c->err, r, "%s: key '%s' entry %u", d->name, f->key, k);
        }
        AT(const uint8_t *, s, f->off) = a;
        AT(size_t, s, f->off2) = n;
        return 0;
    }
    case FK_MAP:
        r = decode_map(c, f->sub, o, (uint8_t *)s + f->off);
        if (r < 0) return cf_err_wrap(c->err, r, "%s: key '%s'", d->name, f->key);
        return 0;
    }
    return cf_err_set(c->err, -EINVAL, "%s: bad schema", d->name);
}

/* Nesting is bounded by the schema (message -> entry map), not by the input. */
static int decode_map(dec_ctx *c, const msg_desc *d, const msgpack_object *o, void *s)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return cf_err_set(c->err, -EBADMSG, "%s: body is not a map", d->name);
    uint64_t seen = 0;
    size_t bin_len[64] = {0}; /* schema tables have < 64 fields */
    /* defaults first (keys may come in any order) */
    for (size_t i = 0; i < d->nfields; i++) {
        const field_desc *f = &d->fields[i];
        if (f->def == 0) continue;
        switch (f->kind) {
        case FK_U8:
            AT(uint8_t, s, f->off) = (uint8_t)f->def;
            break;
        case FK_U16:
            AT(uint16_t, s, f->off) = (uint16_t)f->def;
            break;
        case FK_U32:
            AT(uint32_t, s, f->off) = (uint32_t)f->def;
            break;
        case FK_U64:
            AT(uint64_t, s, f->off) = f->def;
            break;
        }
    }
    for (uint32_t k = 0; k < o->via.map.size; k++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[k];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            return cf_err_set(c->err, -EBADMSG, "%s: map key %u is not a string", d->name, k);
        size_t i;
        for (i = 0; i < d->nfields; i++) {
            size_t kl = strlen(d->fields[i].key);
            if (kl == kv->key.via.str.size && !memcmp(kv->key.via.str.ptr, d->fields[i].key, kl))
                break;
        }
        if (i == d->nfields) continue; /* unknown key: ignored (forward compatibility) */
        if (seen & (1ull << i))
            return cf_err_set(c->err, -EBADMSG, "%s: key '%s' repeated", d->name, d->fields[i].key);
        seen |= 1ull << i;
        int r = decode_field(c, d, &d->fields[i], &kv->val, s, &bin_len[i]);
        if (r < 0) return r;
    }
    for (size_t i = 0; i < d->nfields; i++) {
        const field_desc *f = &d->fields[i];
        if (f->kind == FK_STR && !(seen & (1ull << i))) AT(const char *, s, f->off) = "";
        if ((f->flags & FF_REQ) && !(seen & (1ull << i)))
            return cf_err_set(c->err, -EBADMSG, "%s: required key '%s' missing", d->name, f->key);
        if (f->kind == FK_DIGESTS && (seen & (1ull << i)) &&
            bin_len[i] != (uint64_t)AT(uint32_t, s, f->off2) * 32)
            return cf_err_set(c->err, -EBADMSG, "%s: key '%s' has %zu bytes, expected %u * 32",
                              d->name, f->key, bin_len[i], AT(uint32_t, s, f->off2));
    }
    return 0;
}

int proto_msg_decode(uint8_t type, const uint8_t *body, size_t body_len, uint32_t payload_len,
                     proto_msg *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    const msg_desc *d = msg_schema_find(type);
    if (!d) return cf_err_set(err, -ENOTSUP, "unknown message type 0x%02x", type);
    if (payload_len && !d->payload)
        return cf_err_set(err, -EBADMSG, "%s: unexpected %u-byte payload", d->name, payload_len);
    if (body_len > PROTO_MAX_BODY)
        return cf_err_set(err, -EBADMSG, "%s: body of %zu bytes over %u", d->name, body_len,
                          PROTO_MAX_BODY);
    if (!body && body_len) return cf_err_set(err, -EINVAL, "NULL body");
    int r = msgpack_scan(body, body_len, err);
    if (r < 0) return cf_err_wrap(err, r, "%s", d->name);

    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(&u, (const char *)body, body_len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
        msgpack_unpacked_destroy(&u);
        return cf_err_set(err, -ENOMEM, "%s: out of memory unpacking", d->name);
    }
    if (ur != MSGPACK_UNPACK_SUCCESS || off != body_len) {
        msgpack_unpacked_destroy(&u);
        return cf_err_set(err, -EBADMSG, "%s: body is not one msgpack object", d->name);
    }
    struct proto_arena *arena = NULL;
    dec_ctx c = {.arena = &arena, .err = err};
    r = decode_map(&c, d, &u.data, &out->u);
    msgpack_unpacked_destroy(&u);
    if (r == 0) {
        r = validate_struct(d, &out->u, err);
        if (r == -EINVAL) r = -EBADMSG; /* untrusted input: invalid values are a bad message */
    }
    if (r < 0) {
        arena_free(arena);
        memset(out, 0, sizeof(*out));
        return r;
    }
    out->type = type;
    out->arena_ = arena;
    return 0;
}
