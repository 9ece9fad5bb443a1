/* Task ids ("sha256:<hex>") and per-piece digest lists bound to their task. */
#include <errno.h>
#include <string.h>

#include "cf/digest.h"
#include "cf/hex.h"
#include "proto/msg.h"

int proto_task_id_check(const char *task_id)
{
    if (!task_id || strnlen(task_id, PROTO_TASK_ID_LEN + 1) != PROTO_TASK_ID_LEN) return -EINVAL;
    if (memcmp(task_id, "sha256:", 7) != 0) return -EINVAL;
    return cf_hex_is_lower(task_id + 7, 64) ? 0 : -EINVAL;
}

void proto_task_id_from_digest(const uint8_t digest[32], char out[PROTO_TASK_ID_LEN + 1])
{
    memcpy(out, "sha256:", 7);
    cf_hex_encode(digest, 32, out + 7);
}

int proto_task_id_to_digest(const char *task_id, uint8_t digest[32])
{
    if (proto_task_id_check(task_id) < 0) return -EINVAL;
    return cf_hex_decode(task_id + 7, 64, digest, 32);
}

int proto_digest_list_check(const proto_digest_list *l, const char *task_id, uint32_t piece_size,
                            uint64_t content_length, cf_err *err)
{
    if (!l->task_id || !task_id || strcmp(l->task_id, task_id) != 0)
        return cf_err_set(err, -EBADMSG, "digest list is for task %s, not %s",
                          l->task_id ? l->task_id : "(none)", task_id ? task_id : "(none)");
    if (l->piece_size != piece_size)
        return cf_err_set(err, -EBADMSG, "digest list for %s uses piece size %u, task uses %u",
                          task_id, l->piece_size, piece_size);
    uint64_t want = proto_piece_count(content_length, piece_size);
    if (l->piece_count != want)
        return cf_err_set(err, -EBADMSG, "digest list for %s has %u pieces, %llu bytes need %llu",
                          task_id, l->piece_count, (unsigned long long)content_length,
                          (unsigned long long)want);
    if (!l->digests) return cf_err_set(err, -EBADMSG, "digest list for %s is empty", task_id);
    return 0;
}

int proto_digest_list_verify_piece(const proto_digest_list *l, uint32_t piece, const void *data,
                                   size_t len)
{
    if (piece >= l->piece_count || !l->digests) return -ERANGE;
    uint8_t d[CF_DIGEST_LEN];
    int r = cf_sha256(data, len, d);
    if (r < 0) return r;
    return memcmp(d, l->digests + (size_t)piece * 32, 32) == 0 ? 0 : -EBADMSG;
}
