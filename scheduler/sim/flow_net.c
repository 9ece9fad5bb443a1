/* flow_net: flow-level network model (flow_net.h). */
#include "flow_net.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct link {
    double cap;
    int *flows; /* flow ids */
    int n, cap_flows;
    /* progressive filling scratch */
    double rem;
    int unfrozen;
    uint32_t ver;
};

struct heap_ent {
    double share;
    int link;
    uint32_t ver;
};

struct fnet {
    enum fnet_model model;
    struct fnet_ops ops;
    int n_nodes, n_links; /* links: 2i = node i up, 2i+1 = node i down, 2n = origin up */
    struct link *links;
    fnet_flow *flows;
    int n_flows, cap;
    int *free_ids;
    int n_free;
    size_t live;
    struct heap_ent *heap; /* max-min scratch */
    size_t heap_n, heap_cap;
    int *touched; /* links with flows (max-min) */
};

static int up_link(const fnet *net, int src)
{
    return src == FNET_ORIGIN ? 2 * net->n_nodes : 2 * src;
}

static int down_link(int dst)
{
    return 2 * dst + 1;
}

fnet *fnet_new(int n, const double *up, const double *down, double origin_up, enum fnet_model m,
               const struct fnet_ops *ops)
{
    fnet *net = calloc(1, sizeof(*net));
    if (!net) return NULL;
    net->model = m;
    net->ops = *ops;
    net->n_nodes = n;
    net->n_links = 2 * n + 1;
    net->links = calloc((size_t)net->n_links, sizeof(*net->links));
    net->touched = calloc((size_t)net->n_links, sizeof(*net->touched));
    if (!net->links || !net->touched) {
        fnet_free(net);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        net->links[2 * i].cap = up[i];
        net->links[2 * i + 1].cap = down[i];
    }
    net->links[2 * n].cap = origin_up;
    return net;
}

void fnet_free(fnet *net)
{
    if (!net) return;
    if (net->links)
        for (int i = 0; i < net->n_links; i++) free(net->links[i].flows);
    free(net->links);
    free(net->touched);
    free(net->flows);
    free(net->free_ids);
    free(net->heap);
    free(net);
}

fnet_flow *fnet_get(fnet *net, int id)
{
    return &net->flows[id];
}

size_t fnet_live(const fnet *net)
{
    return net->live;
}

int fnet_ids(const fnet *net)
{
    return net->n_flows;
}

void fnet_advance(fnet *net, int id, uint64_t now)
{
    fnet_flow *f = &net->flows[id];
    if (now <= f->t_last) return;
    if (f->rate > 0) {
        f->done += f->rate * (double)(now - f->t_last) / 1e6;
        if (f->done > f->size) f->done = f->size;
        if (net->ops.on_bytes) net->ops.on_bytes(net->ops.ctx, f, f->t_last, now);
    }
    f->t_last = now;
}

uint64_t fnet_eta(const fnet *net, int id)
{
    const fnet_flow *f = &net->flows[id];
    double left = f->mark - f->done;
    if (left <= 0) return f->t_last;
    if (f->rate <= 0) return UINT64_MAX;
    /* rounded up, so the flow has really reached its mark when the event fires */
    return f->t_last + (uint64_t)ceil(left / f->rate * 1e6);
}

static int link_add(struct link *l, int id)
{
    if (l->n == l->cap_flows) {
        int nc = l->cap_flows ? 2 * l->cap_flows : 8;
        int *nf = realloc(l->flows, (size_t)nc * sizeof(*nf));
        if (!nf) return -ENOMEM;
        l->flows = nf;
        l->cap_flows = nc;
    }
    l->flows[l->n] = id;
    return l->n++;
}

static void set_rate(fnet *net, int id, double rate, uint64_t now)
{
    fnet_flow *f = &net->flows[id];
    if (f->rate == rate) return;
    fnet_advance(net, id, now);
    f->rate = rate;
    f->ver++;
    net->ops.on_rate(net->ops.ctx, id, f, now);
}

/* FNET_FAIR: the flows on the two links a change touched. */
static void fair_link(fnet *net, int li, uint64_t now)
{
    struct link *l = &net->links[li];
    for (int i = 0; i < l->n; i++) {
        int id = l->flows[i];
        fnet_flow *f = &net->flows[id];
        const struct link *u = &net->links[up_link(net, f->src)];
        const struct link *d = &net->links[down_link(f->dst)];
        double a = u->cap / u->n, b = d->cap / d->n;
        set_rate(net, id, a < b ? a : b, now);
    }
}

static int heap_push(fnet *net, double share, int link, uint32_t ver)
{
    if (net->heap_n == net->heap_cap) {
        size_t nc = net->heap_cap ? 2 * net->heap_cap : 256;
        struct heap_ent *nh = realloc(net->heap, nc * sizeof(*nh));
        if (!nh) return -ENOMEM;
        net->heap = nh;
        net->heap_cap = nc;
    }
    size_t i = net->heap_n++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (net->heap[p].share <= share) break;
        net->heap[i] = net->heap[p];
        i = p;
    }
    net->heap[i] = (struct heap_ent){share, link, ver};
    return 0;
}

static struct heap_ent heap_pop(fnet *net)
{
    struct heap_ent top = net->heap[0], last = net->heap[--net->heap_n];
    size_t i = 0, n = net->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && net->heap[c + 1].share < net->heap[c].share) c++;
        if (net->heap[c].share >= last.share) break;
        net->heap[i] = net->heap[c];
        i = c;
    }
    if (n) net->heap[i] = last;
    return top;
}

/* FNET_MAXMIN: progressive filling over every link with flows. The link with the smallest
 * fair share (remaining capacity / unfrozen flows) fixes its flows at that share; their other
 * link loses that much capacity; repeat. Heap entries go stale when a link changes (ver). */
static void maxmin(fnet *net, uint64_t now)
{
    int nt = 0;
    net->heap_n = 0;
    for (int li = 0; li < net->n_links; li++) {
        struct link *l = &net->links[li];
        if (!l->n) continue;
        l->rem = l->cap;
        l->unfrozen = l->n;
        l->ver++;
        net->touched[nt++] = li;
        if (heap_push(net, l->rem / l->unfrozen, li, l->ver)) return; /* rates stay as they are */
    }
    for (int i = 0; i < net->n_flows; i++) net->flows[i].frozen = 0;
    while (net->heap_n) {
        struct heap_ent e = heap_pop(net);
        struct link *l = &net->links[e.link];
        if (e.ver != l->ver || !l->unfrozen) continue;
        double share = l->rem / l->unfrozen;
        if (share < 0) share = 0;
        for (int i = 0; i < l->n; i++) {
            int id = l->flows[i];
            fnet_flow *f = &net->flows[id];
            if (f->frozen) continue;
            f->frozen = 1;
            int other = up_link(net, f->src) == e.link ? down_link(f->dst) : up_link(net, f->src);
            struct link *o = &net->links[other];
            o->rem -= share;
            o->unfrozen--;
            o->ver++;
            if (o->unfrozen) heap_push(net, (o->rem > 0 ? o->rem : 0) / o->unfrozen, other, o->ver);
            set_rate(net, id, share, now);
        }
        l->unfrozen = 0;
        l->ver++;
    }
}

static void recompute(fnet *net, int src, int dst, uint64_t now)
{
    if (net->model == FNET_MAXMIN) {
        maxmin(net, now);
    } else {
        fair_link(net, up_link(net, src), now);
        fair_link(net, down_link(dst), now);
    }
}

int fnet_start(fnet *net, int src, int dst, double size, double mark, void *user, uint64_t now)
{
    int id;
    if (net->n_free) {
        id = net->free_ids[--net->n_free];
    } else {
        if (net->n_flows == net->cap) {
            int nc = net->cap ? 2 * net->cap : 256;
            fnet_flow *nf = realloc(net->flows, (size_t)nc * sizeof(*nf));
            int *nfree = realloc(net->free_ids, (size_t)nc * sizeof(*nfree));
            if (nf) net->flows = nf;
            if (nfree) net->free_ids = nfree;
            if (!nf || !nfree) return -ENOMEM;
            net->cap = nc;
        }
        id = net->n_flows++;
        net->flows[id].ver = 0;
    }
    fnet_flow *f = &net->flows[id];
    uint32_t ver = f->ver + 1;
    *f = (fnet_flow){.src = src,
                     .dst = dst,
                     .size = size,
                     .mark = mark,
                     .t_last = now,
                     .ver = ver,
                     .live = 1,
                     .user = user};
    int up = link_add(&net->links[up_link(net, src)], id);
    if (up < 0) return up;
    int down = link_add(&net->links[down_link(dst)], id);
    if (down < 0) {
        net->links[up_link(net, src)].n--;
        return down;
    }
    f->up_pos = up;
    f->down_pos = down;
    net->live++;
    recompute(net, src, dst, now);
    return id;
}

void fnet_finish(fnet *net, int id, uint64_t now)
{
    fnet_advance(net, id, now);
    fnet_flow *f = &net->flows[id];
    int src = f->src, dst = f->dst;
    int ul = up_link(net, src), dl = down_link(dst);
    /* swap-remove from both links, fixing the moved flows' positions */
    struct link *u = &net->links[ul];
    int last = u->flows[--u->n];
    if (f->up_pos != u->n) {
        u->flows[f->up_pos] = last;
        net->flows[last].up_pos = f->up_pos;
    }
    struct link *d = &net->links[dl];
    last = d->flows[--d->n];
    if (f->down_pos != d->n) {
        d->flows[f->down_pos] = last;
        net->flows[last].down_pos = f->down_pos;
    }
    f->live = 0;
    f->rate = 0;
    f->ver++;
    f->user = NULL;
    net->live--;
    net->free_ids[net->n_free++] = id;
    recompute(net, src, dst, now);
}
