/* libFuzzer target: the peer cache's LMDB blob records (peer/cache_index.c). They are our own
 * bytes, but a damaged or foreign index must give a clean error, never a wild read. Every
 * pointer a successful decode hands out is read in full so ASan sees any overrun, and the
 * record must re-encode to no more bytes than it came from. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "cache_index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    peer_rec r;
    cf_err err = {0};
    if (peer_rec_decode(data, size, &r, &err) != 0) return 0;
    volatile uint8_t sink = 0;
    for (uint32_t i = 0; i < r.bitmap_len; i++) sink ^= r.bitmap[i];
    for (uint16_t i = 0; i < r.origin_len; i++) sink ^= (uint8_t)r.origin[i];
    (void)sink;
    if (peer_rec_size(&r) > size) abort();
    return 0;
}
