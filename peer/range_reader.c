/* The blob range reader (range_reader.h): a task watcher that turns piece and state events into
 * spans of bytes at one position, pulled by a front end. */
#include "range_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/log.h"
#include "daemon_internal.h"

struct peer_range_reader {
    struct task_watcher w; /* w.t: the task, NULL once it failed */
    peer_daemon *d;
    char task_id[PROTO_TASK_ID_LEN + 1];
    uint64_t cur, end;
    peer_range_cbs cbs;
    void *arg;
    peer_blob_ref *ref;    /* in-use reference while the cache entry exists */
    struct piece_buf *mem; /* an uncached piece covering cur (full cache) */
    peer_piece_lease lease;
    int leased;
    int opening; /* no callbacks before peer_range_open returns */
    int failed;
    uint32_t code;
    char msg[256];
    int cached;
    int clamp;      /* PEER_RANGE_CLAMP */
    int unverified; /* PEER_RANGE_UNVERIFIED */
    int len_known;
    uint64_t blob_len;
};

static peer_range_reader *of(struct task_watcher *w)
{
    return (peer_range_reader *)((char *)w - offsetof(peer_range_reader, w));
}

static void ready(peer_range_reader *rr)
{
    if (!rr->opening && rr->cbs.on_ready) rr->cbs.on_ready(rr, rr->arg);
}

static void drop_ref(peer_range_reader *rr)
{
    if (rr->ref) peer_store_blob_release(rr->d->store, rr->ref);
    rr->ref = NULL;
}

static void drop_mem(peer_range_reader *rr)
{
    piece_buf_unref(rr->mem);
    rr->mem = NULL;
}

static void fail(peer_range_reader *rr, uint32_t code, const char *msg)
{
    if (rr->failed) return;
    rr->failed = 1;
    rr->code = code;
    snprintf(rr->msg, sizeof(rr->msg), "%s", msg);
    task_unwatch(&rr->w);
    drop_ref(rr);
    drop_mem(rr);
}

static void on_piece(struct task_watcher *w, uint32_t piece, struct piece_buf *mem)
{
    peer_range_reader *rr = of(w);
    struct task *t = w->t;
    if (rr->failed || rr->cur >= rr->end) return;
    if (piece != rr->cur / t->piece_size) {
        /* a verified-only reader waiting on an unverified stored piece learns that the cache is
         * full (it can then never be verified) from any piece kept in memory */
        if (mem && !rr->unverified) ready(rr);
        return;
    }
    if (mem) {
        piece_buf_unref(rr->mem);
        mem->refs++;
        rr->mem = mem;
        /* held here: the task need not fetch it again while we send it */
        uint64_t pend = (uint64_t)(piece + 1) * t->piece_size;
        w->want_off = pend < rr->end ? pend : rr->end;
    }
    ready(rr);
}

static void on_event(struct task_watcher *w, enum task_event ev)
{
    peer_range_reader *rr = of(w);
    switch (ev) {
    case TASK_EV_READABLE:
        if (!rr->ref && w->t) peer_store_blob_acquire(rr->d->store, w->t->digest, &rr->ref);
        break;
    case TASK_EV_RESTART: /* the old entry is gone; a new one comes with READABLE */
        drop_ref(rr);
        drop_mem(rr);
        break;
    case TASK_EV_DONE:
        break;
    case TASK_EV_FAILED: /* the task is valid for this call only: fail() unwatches */
        fail(rr, (uint32_t)w->t->fail_code, w->t->fail_msg);
        break;
    }
    ready(rr);
}

static const struct task_watcher_ops watch_ops = {on_piece, on_event};

int peer_range_open(peer_daemon *d, const char *task_id, const char *origin, const char *creds,
                    uint64_t offset, uint64_t length, unsigned flags, const peer_range_cbs *cbs,
                    void *arg, peer_range_reader **out, cf_err *err)
{
    uint64_t end = offset + length;
    if (end < offset) return cf_err_set(err, -ERANGE, "offset + length overflows");
    struct task *t = task_get(d, task_id, origin, creds, (flags & PEER_RANGE_WHOLE) != 0, err);
    if (!t) return err && err->code ? err->code : -EINVAL;
    if ((flags & PEER_RANGE_PREFETCH) && !t->pp.whole && !t->cache_full) t->pp.whole = 1;
    peer_range_reader *rr = calloc(1, sizeof(*rr));
    if (!rr) return cf_err_set(err, -ENOMEM, "out of memory");
    rr->d = d;
    snprintf(rr->task_id, sizeof(rr->task_id), "%s", task_id);
    rr->cur = offset;
    rr->end = end;
    rr->cbs = *cbs;
    rr->arg = arg;
    rr->cached = t->state == T_DONE;
    rr->clamp = (flags & PEER_RANGE_CLAMP) != 0;
    rr->unverified = (flags & PEER_RANGE_UNVERIFIED) != 0;
    rr->w.ops = &watch_ops;
    rr->w.want_off = offset;
    rr->w.want_end = end;
    rr->opening = 1;
    if (task_readable(t)) peer_store_blob_acquire(d->store, t->digest, &rr->ref);
    task_watch(t, &rr->w); /* may fail the task at once: then rr->failed is set via on_event */
    rr->opening = 0;
    *out = rr;
    return 0;
}

/* Piece p is there but not verified and the reader wants verified bytes: wait for the check
 * (-EAGAIN), or fail when it can never come (the cache is full: nothing more is stored). */
static int wait_verified(peer_range_reader *rr, struct task *t, uint32_t p)
{
    if (t->cache_full) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "cache full: piece %u cannot be verified (no digest list), so it is not served "
                 "unverified; free cache space or read with unverified cut-through",
                 p);
        fail(rr, PROTO_E_NO_SPACE, msg);
        return -ENOSPC;
    }
    task_want_verified(t);
    return -EAGAIN;
}

int peer_range_next(peer_range_reader *rr, uint32_t max, peer_range_span *span)
{
    struct task *t = rr->w.t;
    if (rr->failed || !t) return -EIO;
    if (!task_readable(t)) return -EAGAIN;
    if (!rr->ref) peer_store_blob_acquire(rr->d->store, t->digest, &rr->ref);
    rr->blob_len = t->length;
    rr->len_known = 1;
    if (rr->clamp && rr->end > t->length && (rr->cur < t->length || rr->cur == 0)) {
        rr->end = t->length;
        rr->w.want_end = t->length;
    }
    if (rr->end > t->length) {
        char msg[160];
        snprintf(msg, sizeof(msg), "range ends at %llu, past the blob's %llu bytes",
                 (unsigned long long)rr->end, (unsigned long long)t->length);
        fail(rr, PROTO_E_RANGE, msg);
        return -ERANGE;
    }
    if (rr->cur == rr->end) return 1;
    if (max == 0) return -EAGAIN;
    uint32_t p = (uint32_t)(rr->cur / t->piece_size);
    uint64_t pstart = (uint64_t)p * t->piece_size;
    uint64_t pend = pstart + proto_piece_len(t->length, t->piece_size, p);
    if (pend > rr->end) pend = rr->end;
    uint64_t n = pend - rr->cur;
    if (n > max) n = max;
    memset(span, 0, sizeof(*span));
    span->offset = rr->cur;
    span->length = (uint32_t)n;
    span->last = rr->cur + n == rr->end;
    if (task_has_piece(t, p)) {
        if (!rr->unverified && !task_piece_verified(t, p)) return wait_verified(rr, t, p);
        if (rr->leased) peer_store_lease_release(rr->d->store, &rr->lease);
        rr->leased = 0;
        int rc = peer_store_lease_piece(rr->d->store, t->digest, p, &rr->lease, NULL);
        if (rc == -ENODATA) task_piece_missing(t, p); /* dropped by a failed sync */
        if (rc) return -EAGAIN; /* evicted or purged under us: the task fetches it again */
        rr->leased = 1;
        span->fd = rr->lease.fd;
        span->file_offset = rr->cur; /* data files are laid out at blob offsets */
        return 0;
    }
    if (rr->mem && rr->mem->piece == p) {
        if (!rr->unverified && !rr->mem->verified) return wait_verified(rr, t, p);
        span->fd = -1;
        span->data = rr->mem->data + (rr->cur - pstart);
        return 0;
    }
    return -EAGAIN;
}

int peer_range_take_file(peer_range_reader *rr, peer_range_span *span, int *fd, uint64_t *length)
{
    struct task *t = rr->w.t;
    if (!t || t->state != T_DONE || span->fd < 0 || span->offset != rr->cur) return -EAGAIN;
    /* reopened through /proc: a read-only description of the same inode (the store's own fd
     * is read-write); procfs only, no disk I/O on the loop */
    char path[40];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", span->fd);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0) return -errno;
    *fd = f;
    *length = rr->end - rr->cur;
    span->length = 0; /* consumed below as a whole */
    peer_range_consume(rr, span);
    rr->cur = rr->end;
    if (rr->w.want_off < rr->cur) rr->w.want_off = rr->cur;
    return 0;
}

void peer_range_consume(peer_range_reader *rr, peer_range_span *span)
{
    rr->cur += span->length;
    if (rr->leased) peer_store_lease_release(rr->d->store, &rr->lease);
    rr->leased = 0;
    struct task *t = rr->w.t;
    if (rr->mem && t && rr->cur >= (uint64_t)(rr->mem->piece + 1) * t->piece_size) drop_mem(rr);
    if (!rr->mem && rr->w.want_off < rr->cur) rr->w.want_off = rr->cur;
    if (!rr->mem && t && t->cache_full) task_wants_changed(t); /* next piece, now */
}

uint32_t peer_range_error(const peer_range_reader *rr, const char **msg)
{
    *msg = rr->msg;
    return rr->code;
}

int peer_range_was_cached(const peer_range_reader *rr)
{
    return rr->cached;
}

int peer_range_blob_length(const peer_range_reader *rr, uint64_t *len)
{
    if (rr->len_known) {
        *len = rr->blob_len;
        return 0;
    }
    return rr->failed || !rr->w.t ? -EIO : -EAGAIN;
}

uint64_t peer_range_task_progress_ms(const peer_range_reader *rr)
{
    return rr && rr->w.t && rr->w.t->state == T_RUNNING ? rr->w.t->last_progress_ms : 0;
}

const char *peer_range_task_id(const peer_range_reader *rr)
{
    return rr->task_id;
}

void peer_range_close(peer_range_reader *rr)
{
    if (!rr) return;
    task_unwatch(&rr->w);
    if (rr->leased) peer_store_lease_release(rr->d->store, &rr->lease);
    drop_ref(rr);
    drop_mem(rr);
    free(rr);
}
