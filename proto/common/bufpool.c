/* cf_bufpool (cf/bufpool.h): a small best-fit free list of large buffers behind one mutex.
 * Each buffer carries its capacity in a header in front of the pointer handed out. */
#include "cf/bufpool.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define HDR        64u         /* keeps the data 64-byte aligned (malloc gives 16) */
#define ROUND      (64u << 10) /* capacities are multiples of this: fewer distinct sizes */
#define MAX_POOLED 64

struct hdr {
    size_t cap;
    struct hdr *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct hdr *free_list;
static size_t held, n_held;

static struct hdr *hdr_of(const void *p)
{
    return (struct hdr *)((uint8_t *)p - HDR);
}

void *cf_bufpool_get(size_t len)
{
    if (len == 0) len = 1;
    if (len > SIZE_MAX - HDR - ROUND) return NULL;
    pthread_mutex_lock(&lock);
    struct hdr **best = NULL;
    for (struct hdr **pp = &free_list; *pp; pp = &(*pp)->next) {
        size_t c = (*pp)->cap;
        if (c >= len && c / 2 <= len && (!best || c < (*best)->cap)) best = pp;
    }
    if (best) {
        struct hdr *h = *best;
        *best = h->next;
        held -= h->cap;
        n_held--;
        pthread_mutex_unlock(&lock);
        return (uint8_t *)h + HDR;
    }
    pthread_mutex_unlock(&lock);
    size_t cap = (len + ROUND - 1) / ROUND * ROUND;
    void *m = NULL;
    if (posix_memalign(&m, HDR, HDR + cap)) return NULL;
    struct hdr *h = m;
    h->cap = cap;
    h->next = NULL;
    return (uint8_t *)h + HDR;
}

size_t cf_bufpool_cap(const void *p)
{
    return hdr_of(p)->cap;
}

void cf_bufpool_put(void *p)
{
    if (!p) return;
    struct hdr *h = hdr_of(p);
    pthread_mutex_lock(&lock);
    if (held + h->cap <= CF_BUFPOOL_MAX_BYTES && n_held < MAX_POOLED) {
        h->next = free_list;
        free_list = h;
        held += h->cap;
        n_held++;
        h = NULL;
    }
    pthread_mutex_unlock(&lock);
    free(h);
}

void cf_bufpool_trim(void)
{
    pthread_mutex_lock(&lock);
    struct hdr *l = free_list;
    free_list = NULL;
    held = n_held = 0;
    pthread_mutex_unlock(&lock);
    while (l) {
        struct hdr *n = l->next;
        free(l);
        l = n;
    }
}

size_t cf_bufpool_held(void)
{
    pthread_mutex_lock(&lock);
    size_t n = held;
    pthread_mutex_unlock(&lock);
    return n;
}
