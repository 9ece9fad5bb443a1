/* The snapshots v1 service: protobuf decode/encode around snap_core calls. */
#include "service.h"

#include <stdlib.h>
#include <string.h>

#include "cf/log.h"
#include "snapshots.pb-c.h"

#define SERVICE    "/containerd.services.snapshots.v1.Snapshots/"
#define LIST_BATCH 100 /* infos per streamed List message */

enum method {
    M_PREPARE,
    M_VIEW,
    M_MOUNTS,
    M_COMMIT,
    M_REMOVE,
    M_STAT,
    M_UPDATE,
    M_LIST,
    M_USAGE,
    M_CLEANUP,
    M_COUNT
};

static const struct {
    const char *name;
    const ProtobufCMessageDescriptor *req;
} methods[M_COUNT] = {
    [M_PREPARE] = {"Prepare", &cfsnap__prepare_snapshot_request__descriptor},
    [M_VIEW] = {"View", &cfsnap__prepare_snapshot_request__descriptor},
    [M_MOUNTS] = {"Mounts", &cfsnap__key_request__descriptor},
    [M_COMMIT] = {"Commit", &cfsnap__commit_snapshot_request__descriptor},
    [M_REMOVE] = {"Remove", &cfsnap__key_request__descriptor},
    [M_STAT] = {"Stat", &cfsnap__key_request__descriptor},
    [M_UPDATE] = {"Update", &cfsnap__update_snapshot_request__descriptor},
    [M_LIST] = {"List", &cfsnap__list_snapshots_request__descriptor},
    [M_USAGE] = {"Usage", &cfsnap__key_request__descriptor},
    [M_CLEANUP] = {"Cleanup", &cfsnap__cleanup_request__descriptor},
};

int snap_service_status(int rc)
{
    switch (rc) {
    case 0:
        return CF_GRPC_OK;
    case -ENOENT:
        return CF_GRPC_NOT_FOUND;
    case -EEXIST:
        return CF_GRPC_ALREADY_EXISTS;
    case -EINVAL:
    case -EBADMSG:
    case -ENAMETOOLONG:
        return CF_GRPC_INVALID_ARGUMENT;
    case -EBUSY:
    case -ENOTEMPTY:
        return CF_GRPC_FAILED_PRECONDITION;
    case -ENOSPC:
    case -ENOMEM:
        return CF_GRPC_RESOURCE_EXHAUSTED;
    case -ECONNREFUSED:
    case -ETIMEDOUT:
    case -EAGAIN:
        return CF_GRPC_UNAVAILABLE;
    default:
        return CF_GRPC_UNKNOWN;
    }
}

typedef struct work {
    uv_work_t req;
    enum method m;
    snap_core *core;
    cf_grpc_call *call;
    ProtobufCMessage *in;
    int rc;
    cf_err err;
    snap_mount mount;
    snap_rec rec;
    snap_rec *list;
    size_t n;
    int64_t size, inodes;
} work;

typedef struct method_arg {
    snap_core *core;
    enum method m;
} method_arg;

static method_arg args[M_COUNT];

/* The map entries of every request type share one layout (key, value): copy pointers. */
typedef struct kv_entry {
    ProtobufCMessage base;
    char *key, *value;
} kv_entry;

static snap_kv *labels_of(void *const *entries, size_t n)
{
    snap_kv *l = calloc(n ? n : 1, sizeof(*l));
    for (size_t i = 0; l && i < n; i++) {
        const kv_entry *e = entries[i];
        l[i].k = e->key ? e->key : "";
        l[i].v = e->value ? e->value : "";
    }
    return l;
}

static void run(uv_work_t *req)
{
    work *w = req->data;
    snap_core *c = w->core;
    cf_err *err = &w->err;
    switch (w->m) {
    case M_PREPARE:
    case M_VIEW: {
        Cfsnap__PrepareSnapshotRequest *r = (void *)w->in;
        snap_kv *l = labels_of((void *const *)r->labels, r->n_labels);
        w->rc = !l ? -ENOMEM
                   : snap_core_prepare(c, w->m == M_PREPARE ? SNAP_ACTIVE : SNAP_VIEW, r->key,
                                       r->parent, l, r->n_labels, &w->mount, err);
        free(l);
        break;
    }
    case M_MOUNTS:
        w->rc = snap_core_mounts(c, ((Cfsnap__KeyRequest *)w->in)->key, &w->mount, err);
        break;
    case M_COMMIT: {
        Cfsnap__CommitSnapshotRequest *r = (void *)w->in;
        snap_kv *l = labels_of((void *const *)r->labels, r->n_labels);
        w->rc = !l ? -ENOMEM : snap_core_commit(c, r->name, r->key, l, r->n_labels, err);
        free(l);
        break;
    }
    case M_REMOVE:
        w->rc = snap_core_remove(c, ((Cfsnap__KeyRequest *)w->in)->key, err);
        break;
    case M_STAT:
        w->rc = snap_core_stat(c, ((Cfsnap__KeyRequest *)w->in)->key, &w->rec, err);
        break;
    case M_UPDATE: {
        Cfsnap__UpdateSnapshotRequest *r = (void *)w->in;
        if (!r->info || !r->info->name || !r->info->name[0]) {
            w->rc = cf_err_set(err, -EINVAL, "Update without a snapshot name");
            break;
        }
        snap_kv *l = labels_of((void *const *)r->info->labels, r->info->n_labels);
        size_t np = r->update_mask ? r->update_mask->n_paths : 0;
        w->rc = !l ? -ENOMEM
                   : snap_core_update(c, r->info->name, l, r->info->n_labels,
                                      np ? (const char *const *)r->update_mask->paths : NULL, np,
                                      &w->rec, err);
        free(l);
        break;
    }
    case M_LIST:
        /* containerd checks what Walk returns itself; filters are not applied here. */
        w->rc = snap_core_list(c, &w->list, &w->n, err);
        break;
    case M_USAGE:
        w->rc = snap_core_usage(c, ((Cfsnap__KeyRequest *)w->in)->key, &w->size, &w->inodes, err);
        break;
    case M_CLEANUP:
        w->rc = snap_core_cleanup(c, err);
        break;
    default:
        w->rc = -ENOSYS;
    }
}

static int send_msg(cf_grpc_call *call, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return -ENOMEM;
    protobuf_c_message_pack(m, buf);
    int rc = cf_grpc_call_send(call, buf, len);
    free(buf);
    return rc;
}

static int send_mounts(cf_grpc_call *call, const snap_mount *sm)
{
    Cfsnap__Mount mt = CFSNAP__MOUNT__INIT, *mp = &mt;
    mt.type = (char *)sm->type;
    mt.source = sm->source;
    mt.n_options = sm->n_options;
    mt.options = (char **)sm->options;
    Cfsnap__MountsResponse resp = CFSNAP__MOUNTS_RESPONSE__INIT;
    resp.n_mounts = 1;
    resp.mounts = &mp;
    return send_msg(call, &resp.base);
}

/* Info pointing into r (r must outlive the encoding). Entries in ents/ptrs[n_labels]. */
static void fill_info(Cfsnap__Info *in, Cfsnap__Timestamp *ts, Cfsnap__Info__LabelsEntry *ents,
                      Cfsnap__Info__LabelsEntry **ptrs, const snap_rec *r)
{
    cfsnap__info__init(in);
    cfsnap__timestamp__init(&ts[0]);
    cfsnap__timestamp__init(&ts[1]);
    ts[0].seconds = r->created_s;
    ts[0].nanos = r->created_ns;
    ts[1].seconds = r->updated_s;
    ts[1].nanos = r->updated_ns;
    in->name = r->name;
    in->parent = r->parent;
    in->kind = (Cfsnap__Kind)r->kind;
    in->created_at = &ts[0];
    in->updated_at = &ts[1];
    for (size_t i = 0; i < r->n_labels; i++) {
        cfsnap__info__labels_entry__init(&ents[i]);
        ents[i].key = r->labels[i].k;
        ents[i].value = r->labels[i].v;
        ptrs[i] = &ents[i];
    }
    in->n_labels = r->n_labels;
    in->labels = ptrs;
}

static int send_info(cf_grpc_call *call, const snap_rec *r)
{
    size_t n = r->n_labels ? r->n_labels : 1;
    Cfsnap__Info__LabelsEntry *ents = calloc(n, sizeof(*ents));
    Cfsnap__Info__LabelsEntry **ptrs = calloc(n, sizeof(*ptrs));
    int rc = -ENOMEM;
    if (ents && ptrs) {
        Cfsnap__Info in;
        Cfsnap__Timestamp ts[2];
        fill_info(&in, ts, ents, ptrs, r);
        Cfsnap__InfoResponse resp = CFSNAP__INFO_RESPONSE__INIT;
        resp.info = &in;
        rc = send_msg(call, &resp.base);
    }
    free(ents);
    free(ptrs);
    return rc;
}

static int send_list(cf_grpc_call *call, const snap_rec *list, size_t n)
{
    for (size_t at = 0; at < n; at += LIST_BATCH) {
        size_t cnt = n - at < LIST_BATCH ? n - at : LIST_BATCH, nl = 0;
        for (size_t i = 0; i < cnt; i++) nl += list[at + i].n_labels;
        Cfsnap__Info *infos = calloc(cnt, sizeof(*infos));
        Cfsnap__Info **iptrs = calloc(cnt, sizeof(*iptrs));
        Cfsnap__Timestamp *ts = calloc(2 * cnt, sizeof(*ts));
        Cfsnap__Info__LabelsEntry *ents = calloc(nl ? nl : 1, sizeof(*ents));
        Cfsnap__Info__LabelsEntry **eptrs = calloc(nl ? nl : 1, sizeof(*eptrs));
        int rc = -ENOMEM;
        if (infos && iptrs && ts && ents && eptrs) {
            size_t off = 0;
            for (size_t i = 0; i < cnt; i++) {
                fill_info(&infos[i], &ts[2 * i], ents + off, eptrs + off, &list[at + i]);
                off += list[at + i].n_labels;
                iptrs[i] = &infos[i];
            }
            Cfsnap__ListSnapshotsResponse resp = CFSNAP__LIST_SNAPSHOTS_RESPONSE__INIT;
            resp.n_info = cnt;
            resp.info = iptrs;
            rc = send_msg(call, &resp.base);
        }
        free(infos);
        free(iptrs);
        free(ts);
        free(ents);
        free(eptrs);
        if (rc) return rc;
    }
    return 0;
}

static void done(uv_work_t *req, int status)
{
    work *w = req->data;
    int rc = status ? status : w->rc;
    if (!rc) {
        switch (w->m) {
        case M_PREPARE:
        case M_VIEW:
        case M_MOUNTS:
            rc = send_mounts(w->call, &w->mount);
            break;
        case M_STAT:
        case M_UPDATE:
            rc = send_info(w->call, &w->rec);
            break;
        case M_LIST:
            rc = send_list(w->call, w->list, w->n);
            break;
        case M_USAGE: {
            Cfsnap__UsageResponse u = CFSNAP__USAGE_RESPONSE__INIT;
            u.size = w->size;
            u.inodes = w->inodes;
            rc = send_msg(w->call, &u.base);
            break;
        }
        default: {
            Cfsnap__Empty e = CFSNAP__EMPTY__INIT;
            rc = send_msg(w->call, &e.base);
        }
        }
        if (rc == -EPIPE) rc = 0; /* the client went away: nothing to tell it */
        if (rc) cf_err_set(&w->err, rc, "encoding the answer: %s", strerror(-rc));
    }
    if (rc && rc != -EEXIST)
        cf_info("%s: %s", methods[w->m].name, cf_err_str(&w->err, rc));
    else if (rc)
        cf_debug("%s: %s", methods[w->m].name, cf_err_str(&w->err, rc));
    cf_grpc_call_finish(w->call, snap_service_status(rc), rc ? cf_err_str(&w->err, rc) : NULL);
    protobuf_c_message_free_unpacked(w->in, NULL);
    snap_mount_free(&w->mount);
    snap_rec_free(&w->rec);
    snap_recs_free(w->list, w->n);
    free(w);
}

static void handle(cf_grpc_call *call, const uint8_t *req, size_t len, void *arg)
{
    const method_arg *ma = arg;
    ProtobufCMessage *in = protobuf_c_message_unpack(methods[ma->m].req, NULL, len, req);
    if (!in) {
        cf_grpc_call_finish(call, CF_GRPC_INVALID_ARGUMENT,
                            "malformed request: not a snapshots v1 message");
        return;
    }
    work *w = calloc(1, sizeof(*w));
    if (!w) {
        protobuf_c_message_free_unpacked(in, NULL);
        cf_grpc_call_finish(call, CF_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->m = ma->m;
    w->core = ma->core;
    w->call = call;
    w->in = in;
    w->req.data = w;
    int rc = uv_queue_work(uv_default_loop(), &w->req, run, done);
    if (rc) {
        protobuf_c_message_free_unpacked(in, NULL);
        free(w);
        cf_grpc_call_finish(call, CF_GRPC_UNAVAILABLE, uv_strerror(rc));
    }
}

int snap_service_register(cf_grpc_server *srv, snap_core *core, cf_err *err)
{
    for (int m = 0; m < M_COUNT; m++) {
        char path[128];
        snprintf(path, sizeof(path), SERVICE "%s", methods[m].name);
        args[m].core = core;
        args[m].m = (enum method)m;
        int rc = cf_grpc_server_add(srv, path, handle, &args[m], err);
        if (rc) return rc;
    }
    return 0;
}
