/* LMDB store of snapshot records, encoded with the Record message of snapshots.proto. */
#include "snap_store.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "snapshots.pb-c.h"

#define MAP_SIZE (1ull << 30) /* virtual: LMDB grows the file as needed */

static int mdb_err(cf_err *err, int rc, const char *what)
{
    int code = rc == MDB_NOTFOUND ? -ENOENT : rc == MDB_MAP_FULL ? -ENOSPC : -EIO;
    if (rc > 0 && rc < 200) code = -rc; /* LMDB passes errno values through */
    return cf_err_set(err, code, "snapshot store: %s: %s", what, mdb_strerror(rc));
}

int snap_store_open(snap_store *s, const char *dir, cf_err *err)
{
    memset(s, 0, sizeof(*s));
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return cf_err_set(err, -errno, "creating %s: %s", dir, strerror(errno));
    int rc = mdb_env_create(&s->env);
    if (rc) return mdb_err(err, rc, "create");
    mdb_env_set_maxdbs(s->env, 4);
    mdb_env_set_mapsize(s->env, MAP_SIZE);
    /* Default sync mode: a committed snapshot survives a power cut (containerd trusts it). */
    rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600);
    if (rc) {
        mdb_env_close(s->env);
        s->env = NULL;
        return mdb_err(err, rc, dir);
    }
    MDB_txn *txn;
    rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (!rc) rc = mdb_dbi_open(txn, "snapshots", MDB_CREATE, &s->snaps);
    if (!rc) rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
    if (!rc)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc) {
        mdb_env_close(s->env);
        s->env = NULL;
        return mdb_err(err, rc, "opening tables");
    }
    return 0;
}

void snap_store_close(snap_store *s)
{
    if (s->env) mdb_env_close(s->env);
    s->env = NULL;
}

int snap_store_begin(snap_store *s, int write, MDB_txn **txn, cf_err *err)
{
    int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, txn);
    return rc ? mdb_err(err, rc, "begin") : 0;
}

int snap_store_commit(MDB_txn *txn, cf_err *err)
{
    int rc = mdb_txn_commit(txn);
    return rc ? mdb_err(err, rc, "commit") : 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static int decode(const MDB_val *v, snap_rec *out, cf_err *err)
{
    memset(out, 0, sizeof(*out));
    Cfsnap__Record *pr = cfsnap__record__unpack(NULL, v->mv_size, v->mv_data);
    if (!pr || !pr->info) goto bad;
    Cfsnap__Info *in = pr->info;
    out->id = pr->id;
    out->size = pr->size;
    out->inodes = pr->inodes;
    out->kind = in->kind;
    out->name = dup_or_empty(in->name);
    out->parent = dup_or_empty(in->parent);
    if (in->created_at) {
        out->created_s = in->created_at->seconds;
        out->created_ns = in->created_at->nanos;
    }
    if (in->updated_at) {
        out->updated_s = in->updated_at->seconds;
        out->updated_ns = in->updated_at->nanos;
    }
    if (in->n_labels) {
        out->labels = calloc(in->n_labels, sizeof(*out->labels));
        if (!out->labels) goto nomem;
        for (size_t i = 0; i < in->n_labels; i++) {
            out->labels[i].k = dup_or_empty(in->labels[i]->key);
            out->labels[i].v = dup_or_empty(in->labels[i]->value);
            out->n_labels++;
            if (!out->labels[i].k || !out->labels[i].v) goto nomem;
        }
    }
    cfsnap__record__free_unpacked(pr, NULL);
    if (!out->name || !out->parent) {
        snap_rec_free(out);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
nomem:
    cfsnap__record__free_unpacked(pr, NULL);
    snap_rec_free(out);
    return cf_err_set(err, -ENOMEM, "out of memory");
bad:
    if (pr) cfsnap__record__free_unpacked(pr, NULL);
    return cf_err_set(err, -EBADMSG, "snapshot store: a record does not decode (%zu bytes)",
                      v->mv_size);
}

int snap_store_get(snap_store *s, MDB_txn *txn, const char *name, snap_rec *out, cf_err *err)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, s->snaps, &k, &v);
    if (rc == MDB_NOTFOUND) return cf_err_set(err, -ENOENT, "snapshot %s does not exist", name);
    if (rc) return mdb_err(err, rc, "get");
    return decode(&v, out, err);
}

int snap_store_put(snap_store *s, MDB_txn *txn, const snap_rec *r, cf_err *err)
{
    Cfsnap__Timestamp cts = CFSNAP__TIMESTAMP__INIT, uts = CFSNAP__TIMESTAMP__INIT;
    cts.seconds = r->created_s;
    cts.nanos = r->created_ns;
    uts.seconds = r->updated_s;
    uts.nanos = r->updated_ns;
    Cfsnap__Info in = CFSNAP__INFO__INIT;
    in.name = r->name;
    in.parent = r->parent ? r->parent : "";
    in.kind = (Cfsnap__Kind)r->kind;
    in.created_at = &cts;
    in.updated_at = &uts;
    Cfsnap__Info__LabelsEntry *ents = NULL, **ptrs = NULL;
    if (r->n_labels) {
        ents = calloc(r->n_labels, sizeof(*ents));
        ptrs = calloc(r->n_labels, sizeof(*ptrs));
        if (!ents || !ptrs) {
            free(ents);
            free(ptrs);
            return cf_err_set(err, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < r->n_labels; i++) {
            cfsnap__info__labels_entry__init(&ents[i]);
            ents[i].key = r->labels[i].k;
            ents[i].value = r->labels[i].v;
            ptrs[i] = &ents[i];
        }
    }
    in.n_labels = r->n_labels;
    in.labels = ptrs;
    Cfsnap__Record pr = CFSNAP__RECORD__INIT;
    pr.id = r->id;
    pr.info = &in;
    pr.size = r->size;
    pr.inodes = r->inodes;
    size_t len = cfsnap__record__get_packed_size(&pr);
    uint8_t *buf = malloc(len ? len : 1);
    int ret = 0;
    if (!buf) {
        ret = cf_err_set(err, -ENOMEM, "out of memory");
    } else {
        cfsnap__record__pack(&pr, buf);
        MDB_val k = {strlen(r->name), r->name}, v = {len, buf};
        int rc = mdb_put(txn, s->snaps, &k, &v, 0);
        if (rc) ret = mdb_err(err, rc, "put");
    }
    free(buf);
    free(ents);
    free(ptrs);
    return ret;
}

int snap_store_del(snap_store *s, MDB_txn *txn, const char *name, cf_err *err)
{
    MDB_val k = {strlen(name), (void *)name};
    int rc = mdb_del(txn, s->snaps, &k, NULL);
    if (rc == MDB_NOTFOUND) return cf_err_set(err, -ENOENT, "snapshot %s does not exist", name);
    return rc ? mdb_err(err, rc, "del") : 0;
}

int snap_store_next_id(snap_store *s, MDB_txn *txn, uint64_t *id, cf_err *err)
{
    MDB_val k = {7, "next_id"}, v;
    uint64_t next = 1;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == 0 && v.mv_size == sizeof(next))
        memcpy(&next, v.mv_data, sizeof(next));
    else if (rc && rc != MDB_NOTFOUND)
        return mdb_err(err, rc, "next id");
    *id = next++;
    v.mv_size = sizeof(next);
    v.mv_data = &next;
    rc = mdb_put(txn, s->meta, &k, &v, 0);
    return rc ? mdb_err(err, rc, "next id") : 0;
}

int snap_store_all(snap_store *s, MDB_txn *txn, snap_rec **out, size_t *n, cf_err *err)
{
    *out = NULL;
    *n = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->snaps, &cur);
    if (rc) return mdb_err(err, rc, "cursor");
    size_t cap = 0;
    snap_rec *a = NULL;
    MDB_val k, v;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            snap_rec *na = realloc(a, cap * sizeof(*a));
            if (!na) {
                ret = cf_err_set(err, -ENOMEM, "out of memory");
                break;
            }
            a = na;
        }
        ret = decode(&v, &a[*n], err);
        if (ret) break;
        (*n)++;
    }
    mdb_cursor_close(cur);
    if (!ret && rc != MDB_NOTFOUND) ret = mdb_err(err, rc, "list");
    if (ret) {
        snap_recs_free(a, *n);
        *n = 0;
        return ret;
    }
    *out = a;
    return 0;
}
