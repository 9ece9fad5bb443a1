/* The local API on the unix socket (docs/peer.md, "Local API"; messages in docs/protocol.md §3):
 * LOCAL_READ answers with LOCAL_DATA frames as soon as the pieces covering the next bytes are
 * present (cut-through, in order), sent with sendfile from the data file and paced by the
 * client's socket (on_drain); LOCAL_PREFETCH starts a whole-blob download and answers LOCAL_OK
 * once the task runs; STAT, PIN, UNPIN and LIST answer from the cache (LIST also with the
 * download tasks and their parents). Every failure is an
 * ERROR frame carrying the request id and a message the caller can show. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf/log.h"
#include "daemon_internal.h"

#define LOCAL_CHUNK   (1u << 20) /* LOCAL_DATA payload per frame */
#define HELLO_TIMEOUT 10000

struct lconn {
    struct lconn *next;
    peer_daemon *d;
    proto_conn *c;
    int hello_done;
    int closed;
    int jobs; /* thread-pool jobs holding this lconn */
    uint32_t peer_mp;
    uint64_t accepted_ms;
    struct local_read *reads;
};

static int send_msg(struct lconn *lc, const proto_msg *m)
{
    if (lc->closed) return -ENOTCONN;
    return proto_conn_send(lc->c, m, NULL, 0, NULL);
}

static void send_error(struct lconn *lc, uint32_t code, uint64_t req_id, const char *task_id,
                       const char *msg)
{
    if (!lc->closed) proto_conn_send_error(lc->c, code, req_id, task_id, msg);
}

static void send_ok(struct lconn *lc, uint64_t req_id)
{
    proto_msg m = {.type = PROTO_MSG_LOCAL_OK};
    m.u.local_ok.req_id = req_id;
    send_msg(lc, &m);
}

static void read_unlink(struct local_read *r)
{
    struct task *t = r->t;
    struct local_read **head = r->prefetch ? &t->prefetchers : &t->readers;
    for (struct local_read **pp = head; *pp; pp = &(*pp)->next_t)
        if (*pp == r) {
            *pp = r->next_t;
            break;
        }
    for (struct local_read **pp = &r->lc->reads; *pp; pp = &(*pp)->next_c)
        if (*pp == r) {
            *pp = r->next_c;
            break;
        }
    peer_store_blob_release(r->lc->d->store, r->ref);
    free(r);
}

void local_reads_drop_refs(struct task *t)
{
    for (struct local_read *r = t->readers; r; r = r->next_t) {
        peer_store_blob_release(t->d->store, r->ref);
        r->ref = NULL;
    }
}

/* Serves what is present; returns 1 when the read is finished (and freed). */
static int serve_read(struct local_read *r)
{
    struct task *t = r->t;
    struct lconn *lc = r->lc;
    peer_daemon *d = lc->d;
    if (!t->have || t->state == T_OPENING || t->state == T_SIZING || t->state == T_REGISTERING)
        return 0;
    /* keep the blob from eviction until this read ends; -ENOENT (evicted or purged before we
     * got here) leaves ref NULL: the task fetches again or task_drop_if_gone fails the read */
    if (!r->ref) peer_store_blob_acquire(d->store, t->digest, &r->ref);
    if (r->end > t->length) {
        char msg[160];
        snprintf(msg, sizeof(msg), "range ends at %llu, past the blob's %llu bytes",
                 (unsigned long long)r->end, (unsigned long long)t->length);
        d->m.local_read_errors++;
        send_error(lc, PROTO_E_RANGE, r->req_id, t->id, msg);
        read_unlink(r);
        return 1;
    }
    if (r->cur == r->end) { /* empty read */
        proto_msg m = {.type = PROTO_MSG_LOCAL_DATA};
        m.u.local_data.req_id = r->req_id;
        m.u.local_data.offset = r->cur;
        m.u.local_data.last = true;
        send_msg(lc, &m);
        read_unlink(r);
        return 1;
    }
    uint32_t mp = lc->peer_mp < LOCAL_CHUNK ? lc->peer_mp : LOCAL_CHUNK;
    while (r->cur < r->end && !proto_conn_congested(lc->c)) {
        uint32_t p = (uint32_t)(r->cur / t->piece_size);
        if (!task_has_piece(t, p)) break;
        peer_piece_lease lease;
        int rc = peer_store_lease_piece(d->store, t->digest, p, &lease, NULL);
        if (rc) break; /* evicted/purged under us: the task fetches it again */
        uint64_t pend = lease.offset + lease.length;
        if (pend > r->end) pend = r->end;
        uint64_t n = pend - r->cur;
        if (n > mp) n = mp;
        proto_msg m = {.type = PROTO_MSG_LOCAL_DATA};
        m.u.local_data.req_id = r->req_id;
        m.u.local_data.offset = r->cur;
        m.u.local_data.last = r->cur + n == r->end;
        cf_err err = {0};
        rc = proto_conn_send_file(lc->c, &m, lease.fd, r->cur, (uint32_t)n, &err);
        peer_store_lease_release(d->store, &lease);
        if (rc) {
            cf_warn("local API: read of %s: %s", t->id, cf_err_str(&err, rc));
            proto_conn_close(lc->c, rc, "cannot send data");
            return 0;
        }
        r->cur += n;
        d->m.bytes_served_local += n;
    }
    if (r->cur == r->end) {
        read_unlink(r);
        return 1;
    }
    return 0;
}

void local_reads_pump(struct task *t)
{
    struct local_read *next;
    for (struct local_read *r = t->readers; r; r = next) {
        next = r->next_t;
        serve_read(r);
    }
}

void local_reads_fail(struct task *t, uint32_t code, const char *msg)
{
    while (t->readers) {
        struct local_read *r = t->readers;
        r->lc->d->m.local_read_errors++;
        send_error(r->lc, code, r->req_id, t->id, msg);
        read_unlink(r);
    }
    while (t->prefetchers) {
        struct local_read *r = t->prefetchers;
        send_error(r->lc, code, r->req_id, t->id, msg);
        read_unlink(r);
    }
}

void local_prefetch_ready(struct task *t)
{
    while (t->prefetchers) {
        struct local_read *r = t->prefetchers;
        send_ok(r->lc, r->req_id);
        read_unlink(r);
    }
}

static uint32_t err_code(int rc)
{
    switch (rc) {
    case -EINVAL:
        return PROTO_E_BAD_MESSAGE;
    case -ENOENT:
        return PROTO_E_UNKNOWN_TASK;
    case -ESHUTDOWN:
        return PROTO_E_SHUTDOWN;
    case -ENOSPC:
        return PROTO_E_NO_SPACE;
    default:
        return PROTO_E_INTERNAL;
    }
}

static void handle_read(struct lconn *lc, const proto_local_read *q, int prefetch)
{
    peer_daemon *d = lc->d;
    cf_err err = {0};
    uint64_t end = q->offset + q->length;
    if (end < q->offset) {
        send_error(lc, PROTO_E_RANGE, q->req_id, q->task_id, "offset + length overflows");
        return;
    }
    if (!prefetch) d->m.local_reads++;
    struct task *t = task_get(d, q->task_id, q->origin, q->credentials, 1, &err);
    if (t && prefetch && !t->whole) { /* a prefetch always wants the whole blob */
        t->whole = 1;
        task_pump(t);
    }
    if (!t) {
        if (!prefetch) d->m.local_read_errors++;
        send_error(lc, err_code(err.code), q->req_id, q->task_id, cf_err_str(&err, err.code));
        return;
    }
    if (!prefetch && t->state == T_DONE) d->m.local_read_hits++;
    struct local_read *r = calloc(1, sizeof(*r));
    if (!r) {
        send_error(lc, PROTO_E_INTERNAL, q->req_id, q->task_id, "out of memory");
        return;
    }
    r->lc = lc;
    r->t = t;
    r->req_id = q->req_id;
    r->cur = q->offset;
    r->end = end;
    r->prefetch = prefetch;
    r->next_c = lc->reads;
    lc->reads = r;
    if (prefetch) {
        r->next_t = t->prefetchers;
        t->prefetchers = r;
        if (t->state == T_RUNNING || t->state == T_VERIFYING || t->state == T_DONE)
            local_prefetch_ready(t);
        return;
    }
    /* append: earlier readers keep their priority */
    struct local_read **pp = &t->readers;
    while (*pp) pp = &(*pp)->next_t;
    *pp = r;
    if (!serve_read(r)) task_pump(t);
}

static void entry_from_info(const peer_blob_info *bi, char *id, proto_local_entry *e)
{
    proto_task_id_from_digest(bi->digest, id);
    e->task_id = id;
    e->content_length = bi->length;
    e->piece_size = bi->piece_size;
    e->piece_count = bi->piece_count;
    e->pieces_have = bi->pieces_written;
    e->pinned = bi->pin_count > 0;
    e->complete = bi->complete && bi->verified;
}

static void handle_stat(struct lconn *lc, const proto_local_task *q)
{
    peer_blob_info bi;
    uint8_t digest[32];
    proto_task_id_to_digest(q->task_id, digest);
    if (peer_store_blob_info(lc->d->store, digest, &bi)) {
        send_error(lc, PROTO_E_UNKNOWN_TASK, q->req_id, q->task_id, "blob not in the cache");
        return;
    }
    char id[PROTO_TASK_ID_LEN + 1];
    proto_msg m = {.type = PROTO_MSG_LOCAL_STAT_REPLY};
    m.u.local_stat_reply.req_id = q->req_id;
    entry_from_info(&bi, id, &m.u.local_stat_reply.entry);
    send_msg(lc, &m);
}

static const char *task_state_name(enum task_state st)
{
    switch (st) {
    case T_SIZING:
        return "sizing";
    case T_REGISTERING:
        return "registering";
    case T_OPENING:
        return "opening";
    case T_RUNNING:
        return "running";
    case T_VERIFYING:
        return "verifying";
    case T_DONE:
        return "done";
    case T_FAILED:
        return "failed";
    }
    return "unknown";
}

/* The daemon's tasks for LOCAL_LIST_REPLY "tk". Strings point into the tasks (valid until the
 * loop runs again); *parents is one array shared by all, freed with *out by the caller. */
static int tasks_snapshot(peer_daemon *d, proto_local_task_info **out, size_t *n,
                          proto_local_parent **parents)
{
    size_t cnt = 0, np = 0;
    for (struct task *t = d->tasks; t && cnt < PROTO_MAX_LIST_TASKS; t = t->next) {
        cnt++;
        np += (size_t)t->n_parents;
    }
    *out = calloc(cnt ? cnt : 1, sizeof(**out));
    *parents = calloc(np ? np : 1, sizeof(**parents));
    if (!*out || !*parents) {
        free(*out);
        free(*parents);
        return -ENOMEM;
    }
    uint64_t now = pd_now(d);
    size_t i = 0, k = 0;
    for (struct task *t = d->tasks; t && i < cnt; t = t->next, i++) {
        proto_local_task_info *e = &(*out)[i];
        e->task_id = t->id;
        e->state = task_state_name(t->state);
        e->content_length = t->length;
        if (t->have) { /* piece_count is only meaningful once the maps exist */
            e->piece_count = t->piece_count;
            e->pieces_have = t->n_have;
        }
        e->from_parents = t->from_parents;
        e->from_origin = t->from_origin;
        e->origin_mode = t->origin_mode;
        for (struct local_read *r = t->readers; r; r = r->next_t) e->readers++;
        if (t->state == T_FAILED) e->error = t->fail_msg;
        e->parents = &(*parents)[k];
        for (int j = 0; j < t->n_parents; j++) {
            const struct tparent *tp = &t->parents[j];
            if (!tp->host_id[0] || !tp->addr[0]) continue; /* both required on the wire */
            proto_local_parent *p = &(*parents)[k++];
            p->host_id = tp->host_id;
            p->addr = tp->addr;
            p->served = tp->served;
            p->banned = tp->banned;
            p->down = tp->down_until_ms > now;
            e->n_parents++;
        }
    }
    *n = cnt;
    return 0;
}

static void handle_list(struct lconn *lc, uint64_t req_id)
{
    peer_blob_info *all = NULL;
    size_t n = 0;
    if (peer_store_list(lc->d->store, &all, &n)) {
        send_error(lc, PROTO_E_INTERNAL, req_id, NULL, "cannot list the cache");
        return;
    }
    if (n > PROTO_MAX_LIST_ENTRIES) n = PROTO_MAX_LIST_ENTRIES;
    proto_local_entry *e = calloc(n ? n : 1, sizeof(*e));
    char(*ids)[PROTO_TASK_ID_LEN + 1] = calloc(n ? n : 1, sizeof(*ids));
    proto_local_task_info *tasks = NULL;
    proto_local_parent *parents = NULL;
    size_t n_tasks = 0;
    if (!e || !ids || tasks_snapshot(lc->d, &tasks, &n_tasks, &parents)) {
        free(e);
        free(ids);
        free(all);
        send_error(lc, PROTO_E_INTERNAL, req_id, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) entry_from_info(&all[i], ids[i], &e[i]);
    proto_msg m = {.type = PROTO_MSG_LOCAL_LIST_REPLY};
    m.u.local_list_reply.req_id = req_id;
    m.u.local_list_reply.entries = e;
    m.u.local_list_reply.n_entries = n;
    m.u.local_list_reply.tasks = tasks;
    m.u.local_list_reply.n_tasks = n_tasks;
    cf_err err = {0};
    int rc;
    /* over the body limit (thousands of blobs/tasks): send fewer tasks, then fewer blobs */
    for (;;) {
        cf_err_clear(&err);
        rc = lc->closed ? 0 : proto_conn_send(lc->c, &m, NULL, 0, &err);
        if (rc == -EINVAL && m.u.local_list_reply.n_tasks) { /* a task we cannot describe */
            cf_warn("local API: list without tasks: %s", cf_err_str(&err, rc));
            m.u.local_list_reply.n_tasks = 0;
            continue;
        }
        if (rc != -EMSGSIZE) break;
        if (m.u.local_list_reply.n_tasks)
            m.u.local_list_reply.n_tasks /= 2;
        else if (m.u.local_list_reply.n_entries)
            m.u.local_list_reply.n_entries /= 2;
        else
            break;
    }
    if (rc) send_error(lc, PROTO_E_INTERNAL, req_id, NULL, cf_err_str(&err, rc));
    free(e);
    free(ids);
    free(all);
    free(tasks);
    free(parents);
}

struct pin_job {
    struct lconn *lc;
    uint64_t req_id;
    uint8_t digest[32];
    char task_id[PROTO_TASK_ID_LEN + 1];
    int unpin, rc;
    cf_err err;
};

static void pin_work(void *p)
{
    struct pin_job *j = p;
    peer_store *s = j->lc->d->store;
    j->rc =
        j->unpin ? peer_store_unpin(s, j->digest, &j->err) : peer_store_pin(s, j->digest, &j->err);
}

static void lconn_maybe_free(struct lconn *lc)
{
    if (lc->closed && lc->jobs == 0) free(lc);
}

static void pin_done(void *p, int cancelled)
{
    struct pin_job *j = p;
    struct lconn *lc = j->lc;
    lc->jobs--;
    if (!lc->closed && !cancelled) {
        if (j->rc == 0)
            send_ok(lc, j->req_id);
        else
            send_error(lc, j->rc == -ENOENT ? PROTO_E_UNKNOWN_TASK : PROTO_E_UNEXPECTED, j->req_id,
                       j->task_id, cf_err_str(&j->err, j->rc));
    }
    free(j);
    lconn_maybe_free(lc);
}

static void handle_pin(struct lconn *lc, const proto_local_task *q, int unpin)
{
    struct pin_job *j = calloc(1, sizeof(*j));
    if (!j) {
        send_error(lc, PROTO_E_INTERNAL, q->req_id, q->task_id, "out of memory");
        return;
    }
    j->lc = lc;
    j->req_id = q->req_id;
    j->unpin = unpin;
    snprintf(j->task_id, sizeof(j->task_id), "%s", q->task_id);
    proto_task_id_to_digest(q->task_id, j->digest);
    lc->jobs++;
    if (pd_queue_work(lc->d, j, pin_work, pin_done)) {
        lc->jobs--;
        free(j);
        send_error(lc, PROTO_E_INTERNAL, q->req_id, q->task_id, "cannot queue work");
    }
}

static void on_frame(proto_conn *c, const proto_frame_header *h, const uint8_t *body,
                     const uint8_t *payload)
{
    (void)payload;
    struct lconn *lc = proto_conn_data(c);
    peer_daemon *d = lc->d;
    proto_msg m;
    cf_err err = {0};
    int rc = proto_msg_decode(h->type, body, h->body_len, h->payload_len, &m, &err);
    if (rc) {
        d->m.bad_frames++;
        send_error(lc, rc == -ENOTSUP ? PROTO_E_UNEXPECTED : PROTO_E_BAD_MESSAGE, 0, NULL,
                   cf_err_str(&err, rc));
        if (rc != -ENOTSUP) proto_conn_close_after_flush(c, -EBADMSG, "bad frame");
        return;
    }
    if (!lc->hello_done) {
        uint32_t pmax;
        if (pd_serve_hello(d, c, &m, 0, &pmax) == 0) {
            lc->peer_mp = pmax;
            lc->hello_done = 1;
        }
        proto_msg_free(&m);
        return;
    }
    switch (m.type) {
    case PROTO_MSG_LOCAL_READ:
        handle_read(lc, &m.u.local_read, 0);
        break;
    case PROTO_MSG_LOCAL_PREFETCH:
        handle_read(lc, &m.u.local_prefetch, 1);
        break;
    case PROTO_MSG_LOCAL_STAT:
        handle_stat(lc, &m.u.local_task);
        break;
    case PROTO_MSG_LOCAL_PIN:
        handle_pin(lc, &m.u.local_task, 0);
        break;
    case PROTO_MSG_LOCAL_UNPIN:
        handle_pin(lc, &m.u.local_task, 1);
        break;
    case PROTO_MSG_LOCAL_LIST:
        handle_list(lc, m.u.local_list.req_id);
        break;
    default:
        send_error(lc, PROTO_E_UNEXPECTED, 0, NULL, "message not handled on the local API");
        break;
    }
    proto_msg_free(&m);
}

static void on_drain(proto_conn *c)
{
    struct lconn *lc = proto_conn_data(c);
    struct local_read *next;
    for (struct local_read *r = lc->reads; r; r = next) {
        next = r->next_c;
        if (!r->prefetch) serve_read(r);
    }
}

static void on_close(proto_conn *c, int status, const char *reason)
{
    (void)status;
    (void)reason;
    struct lconn *lc = proto_conn_data(c);
    peer_daemon *d = lc->d;
    while (lc->reads) read_unlink(lc->reads);
    for (struct lconn **pp = &d->lconns; *pp; pp = &(*pp)->next)
        if (*pp == lc) {
            *pp = lc->next;
            break;
        }
    d->n_lconns--;
    lc->closed = 1;
    lconn_maybe_free(lc);
}

static void on_connection(uv_stream_t *server, int status)
{
    peer_daemon *d = server->data;
    if (status < 0 || d->stopping) return;
    struct lconn *lc = calloc(1, sizeof(*lc));
    if (!lc) return;
    lc->d = d;
    lc->peer_mp = PROTO_MAX_PAYLOAD;
    lc->accepted_ms = pd_now(d);
    proto_conn_opts co = {.idle_timeout_ms = d->o.timing.idle_timeout_ms,
                          .high_watermark = 2u << 20,
                          .max_payload = 4096};
    proto_conn_cbs cbs = {.on_frame = on_frame, .on_drain = on_drain, .on_close = on_close};
    if (proto_conn_accept(server, &co, &cbs, lc, &lc->c)) {
        free(lc);
        return;
    }
    lc->next = d->lconns;
    d->lconns = lc;
    d->n_lconns++;
    if (d->n_lconns > d->o.local_max_conns) {
        send_error(lc, PROTO_E_BUSY, 0, NULL, "too many local connections");
        proto_conn_close_after_flush(lc->c, -EBUSY, "too many connections");
    }
}

static int mkdir_parent(const char *path)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = 0;
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(dir, 0755);
        *p = '/';
    }
    if (mkdir(dir, 0755) && errno != EEXIST) return -errno;
    return 0;
}

/* Connections that never complete HELLO (slowloris) are closed. */
void local_api_tick(peer_daemon *d)
{
    uint64_t now = pd_now(d);
    for (struct lconn *lc = d->lconns; lc; lc = lc->next)
        if (!lc->hello_done && !lc->closed && now - lc->accepted_ms > HELLO_TIMEOUT)
            proto_conn_close(lc->c, -ETIMEDOUT, "no HELLO in time");
}

int local_api_start(peer_daemon *d, cf_err *err)
{
    const char *path = d->o.api_socket;
    int rc = mkdir_parent(path);
    if (rc) return cf_err_set(err, rc, "api socket %s: cannot create its directory", path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return cf_err_set(err, -EEXIST, "api socket %s exists and is not a socket", path);
        unlink(path); /* stale socket of a previous run (the cache lock proves we are alone) */
    }
    uv_pipe_init(d->loop, &d->api_listen, 0);
    d->api_listen.data = d;
    rc = uv_pipe_bind(&d->api_listen, path);
    if (!rc) rc = uv_listen((uv_stream_t *)&d->api_listen, 64, on_connection);
    if (rc) {
        uv_close((uv_handle_t *)&d->api_listen, NULL);
        return cf_err_set(err, rc, "api socket %s: %s", path, uv_strerror(rc));
    }
    chmod(path, 0660);
    d->api_listening = 1;
    return 0;
}

void local_api_stop(peer_daemon *d)
{
    if (d->api_listening) {
        uv_close((uv_handle_t *)&d->api_listen, NULL);
        d->api_listening = 0;
        unlink(d->o.api_socket);
    }
    for (struct lconn *lc = d->lconns; lc; lc = lc->next) {
        send_error(lc, PROTO_E_SHUTDOWN, 0, NULL, "daemon is shutting down");
        proto_conn_close_after_flush(lc->c, 0, "shutting down");
    }
}
