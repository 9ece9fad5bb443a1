/* Token bucket for upload bandwidth: `rate` bytes per second refill up to `burst`. A sender may
 * take a whole piece when the balance is positive (it may go negative: the debt delays the next
 * piece), so pieces larger than the burst still pass. Pure arithmetic on a caller-supplied
 * millisecond clock; not thread-safe (loop thread). */
#ifndef PEER_TOKEN_BUCKET_H
#define PEER_TOKEN_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

typedef struct peer_token_bucket {
    uint64_t rate;   /* bytes/s; 0 = unlimited */
    int64_t burst;   /* max balance */
    int64_t balance; /* may be negative (debt) */
    uint64_t last_ms;
} peer_token_bucket;

void peer_token_bucket_init(peer_token_bucket *b, uint64_t rate, uint64_t burst, uint64_t now_ms);
/* True when `n` bytes may be sent now (then they are taken). */
bool peer_token_bucket_take(peer_token_bucket *b, uint64_t n, uint64_t now_ms);
/* Milliseconds until take() can succeed again (0 = now). */
uint64_t peer_token_bucket_wait_ms(peer_token_bucket *b, uint64_t now_ms);

#endif
