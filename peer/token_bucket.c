/* Upload bandwidth limiter (contract in peer/token_bucket.h). */
#include "peer/token_bucket.h"

static void refill(peer_token_bucket *b, uint64_t now_ms)
{
    if (now_ms <= b->last_ms) return;
    uint64_t dt = now_ms - b->last_ms;
    b->last_ms = now_ms;
    /* dt * rate can overflow only after centuries at absurd rates: clamp anyway */
    uint64_t add = dt > UINT64_MAX / (b->rate ? b->rate : 1) ? UINT64_MAX : dt * b->rate / 1000;
    if (add > (uint64_t)INT64_MAX) add = (uint64_t)INT64_MAX;
    int64_t nb =
        b->balance + (int64_t)(add > (uint64_t)(INT64_MAX - (b->balance > 0 ? b->balance : 0))
                                   ? (uint64_t)INT64_MAX / 2
                                   : add);
    b->balance = nb > b->burst ? b->burst : nb;
}

void peer_token_bucket_init(peer_token_bucket *b, uint64_t rate, uint64_t burst, uint64_t now_ms)
{
    b->rate = rate;
    b->burst = burst > (uint64_t)INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)burst;
    b->balance = b->burst;
    b->last_ms = now_ms;
}

bool peer_token_bucket_take(peer_token_bucket *b, uint64_t n, uint64_t now_ms)
{
    if (!b->rate) return true;
    refill(b, now_ms);
    if (b->balance <= 0) return false;
    if (n > (uint64_t)INT64_MAX / 2) n = (uint64_t)INT64_MAX / 2;
    b->balance -= (int64_t)n;
    return true;
}

uint64_t peer_token_bucket_wait_ms(peer_token_bucket *b, uint64_t now_ms)
{
    if (!b->rate) return 0;
    refill(b, now_ms);
    if (b->balance > 0) return 0;
    uint64_t debt = (uint64_t)(-b->balance) + 1;
    return debt * 1000 / b->rate + 1;
}
