/* One snapshot of the daemon's download tasks, rendered by the local API (LOCAL_LIST_REPLY "tk")
 * and by the HTTP /status: both show the same facts, taken here once. */
#include <errno.h>
#include <stdlib.h>

#include "daemon_internal.h"

static const char *state_name(enum task_state st)
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

int tasks_snapshot(peer_daemon *d, size_t max, task_status **tasks, size_t *n,
                   task_status_parent **parents, size_t *n_parents)
{
    size_t cnt = 0, np = 0;
    for (struct task *t = d->tasks; t && cnt < max; t = t->next) {
        cnt++;
        np += (size_t)t->pp.n_parents;
    }
    *tasks = calloc(cnt ? cnt : 1, sizeof(**tasks));
    *parents = calloc(np ? np : 1, sizeof(**parents));
    if (!*tasks || !*parents) {
        free(*tasks);
        free(*parents);
        *tasks = NULL;
        *parents = NULL;
        return -ENOMEM;
    }
    uint64_t now = pd_now(d);
    size_t i = 0, k = 0;
    for (struct task *t = d->tasks; t && i < cnt; t = t->next, i++) {
        task_status *e = &(*tasks)[i];
        e->id = t->id;
        e->state = state_name(t->state);
        e->length = t->length;
        e->piece_size = t->piece_size;
        if (t->pp.have) { /* piece counts mean something once the maps exist */
            e->piece_count = t->pp.piece_count;
            e->pieces_have = t->pp.n_have;
            e->in_flight = t->pp.n_requests;
        }
        e->origin_mode = t->pp.origin_mode;
        e->sched_idx = t->sched_idx;
        for (struct task_watcher *w = t->watchers; w; w = w->next) e->readers++;
        e->from_parents = t->from_parents;
        e->from_origin = t->from_origin;
        e->error = t->state == T_FAILED ? t->fail_msg : NULL;
        e->first_parent = k;
        for (int j = 0; j < t->pp.n_parents; j++) {
            const pp_parent *pa = &t->pp.parents[j];
            const struct pconn *pc = pa->conn;
            task_status_parent *p = &(*parents)[k++];
            p->host_id = pa->host_id;
            p->addr = pa->addr;
            p->served = pa->served;
            p->banned = pa->banned;
            p->down = pa->down_until_ms > now;
            p->connected = pc && pc->ready;
            e->n_parents++;
        }
    }
    *n = cnt;
    *n_parents = k;
    return 0;
}
