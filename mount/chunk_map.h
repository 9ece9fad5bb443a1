/* Nydus's readiness bitmap for one cached blob (<blob_id>.blob.data.chunk_map, nydus-format.md
 * §6.4): a 4096-byte header (magic, version 1, magic2, all_ready) and one bit per chunk, MSB
 * first, mapped shared so that a bit set here is in the file even if the process is killed
 * the next instant. Bits are only ever set (atomic OR), from any thread (or process sharing
 * the file). Private to mount/. */
#ifndef MOUNT_CHUNK_MAP_H
#define MOUNT_CHUNK_MAP_H

#include <stdbool.h>
#include <stdint.h>

#include "cf/error.h"

struct mount_chunk_map {
    uint8_t *base; /* header + bits */
    uint64_t len;
    uint32_t count;
    uint32_t ready; /* bits set (atomic) */
    bool file;      /* mapped from a file (else anonymous memory) */
};

/* Opens or creates `path` for `count` chunks. An existing file with a wrong size or header is
 * replaced by an empty map, and so is every map when `reset` (its data file was new). `path`
 * NULL: an anonymous in-memory map. */
int mount_chunk_map_open(struct mount_chunk_map *m, const char *path, uint32_t count, bool reset,
                         cf_err *err);
void mount_chunk_map_close(struct mount_chunk_map *m);
bool mount_chunk_map_is_ready(const struct mount_chunk_map *m, uint32_t i);
/* Sets bit i (the caller wrote the chunk's data first); the last bit also sets all_ready. */
void mount_chunk_map_set_ready(struct mount_chunk_map *m, uint32_t i);
static inline bool mount_chunk_map_complete(const struct mount_chunk_map *m)
{
    return __atomic_load_n(&m->ready, __ATOMIC_ACQUIRE) >= m->count;
}

#endif
