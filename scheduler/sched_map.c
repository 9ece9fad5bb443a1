/* String-keyed hash map for hosts, tasks and bans: chained buckets, doubled at load 1. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sched_internal.h"

uint64_t sched_hash(const char *s)
{
    /* FNV-1a, then a murmur finaliser: task ids share the "sha256:" prefix. */
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

void *sched_map_get(const struct sched_map *m, const char *key)
{
    if (!m->nb) return NULL;
    uint64_t h = sched_hash(key);
    for (struct sched_map_ent *e = m->b[h & (m->nb - 1)]; e; e = e->next)
        if (e->hash == h && strcmp(e->key, key) == 0) return e->val;
    return NULL;
}

static int grow(struct sched_map *m)
{
    size_t nb = m->nb ? m->nb * 2 : 64;
    struct sched_map_ent **b = calloc(nb, sizeof(*b));
    if (!b) return -ENOMEM;
    for (size_t i = 0; i < m->nb; i++) {
        struct sched_map_ent *e = m->b[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

int sched_map_put(struct sched_map *m, const char *key, void *val)
{
    if (m->n >= m->nb && grow(m)) return -ENOMEM;
    struct sched_map_ent *e = malloc(sizeof(*e));
    if (!e) return -ENOMEM;
    e->hash = sched_hash(key);
    e->key = key;
    e->val = val;
    e->next = m->b[e->hash & (m->nb - 1)];
    m->b[e->hash & (m->nb - 1)] = e;
    m->n++;
    return 0;
}

void *sched_map_del(struct sched_map *m, const char *key)
{
    if (!m->nb) return NULL;
    uint64_t h = sched_hash(key);
    for (struct sched_map_ent **pp = &m->b[h & (m->nb - 1)]; *pp; pp = &(*pp)->next) {
        struct sched_map_ent *e = *pp;
        if (e->hash == h && strcmp(e->key, key) == 0) {
            void *v = e->val;
            *pp = e->next;
            free(e);
            m->n--;
            return v;
        }
    }
    return NULL;
}

void sched_map_foreach(const struct sched_map *m, void (*fn)(void *arg, void *val), void *arg)
{
    for (size_t i = 0; i < m->nb; i++) {
        struct sched_map_ent *e = m->b[i], *next;
        for (; e; e = next) {
            next = e->next; /* fn may delete e */
            fn(arg, e->val);
        }
    }
}

void sched_map_free(struct sched_map *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        struct sched_map_ent *e = m->b[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(m->b);
    memset(m, 0, sizeof(*m));
}
