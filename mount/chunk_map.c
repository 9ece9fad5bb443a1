/* The blobcache chunk_map file: create, validate, map, set bits (see chunk_map.h). */
#include "chunk_map.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf/file_io.h"
#include "rafs/ondisk.h"

#define MAP_HDR 4096u

static void put32(uint8_t *p, uint32_t v)
{
    v = rafs_le32(v);
    memcpy(p, &v, 4);
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return rafs_le32(v);
}

static uint32_t popcount_bits(const uint8_t *bits, uint32_t count)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < count / 8; i++) n += (uint32_t)__builtin_popcount(bits[i]);
    for (uint32_t i = count & ~7u; i < count; i++) n += (bits[i >> 3] >> (7 - (i & 7))) & 1;
    return n;
}

int mount_chunk_map_open(struct mount_chunk_map *m, const char *path, uint32_t count, bool reset,
                         cf_err *err)
{
    memset(m, 0, sizeof(*m));
    m->count = count;
    m->len = MAP_HDR + ((uint64_t)count + 7) / 8;
    if (!path) {
        m->base = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m->base == MAP_FAILED) {
            m->base = NULL;
            return cf_err_set(err, -ENOMEM, "chunk map: out of memory");
        }
        return 0;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return cf_err_set(err, -errno, "%s: %s", path, strerror(errno));
    struct stat st;
    uint8_t hdr[16];
    int rc = 0;
    bool fresh = reset;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
    } else if ((uint64_t)st.st_size != m->len) {
        fresh = true;
    } else if (!fresh && (rc = cf_pread_full(fd, hdr, sizeof(hdr), 0)) == 0) {
        fresh = get32(hdr) != RAFS_CHUNK_MAP_MAGIC || get32(hdr + 8) != RAFS_CHUNK_MAP_MAGIC2;
    }
    if (!rc && fresh) {
        /* Empty the map first, then give it its size: no stale bit survives. */
        uint8_t h[MAP_HDR] = {0};
        put32(h, RAFS_CHUNK_MAP_MAGIC);
        put32(h + 4, 1);
        put32(h + 8, RAFS_CHUNK_MAP_MAGIC2);
        if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)m->len) < 0)
            rc = -errno;
        else
            rc = cf_pwrite_full(fd, h, sizeof(h), 0);
    }
    if (rc) {
        close(fd);
        return cf_err_set(err, rc, "chunk map %s: %s", path, strerror(-rc));
    }
    m->base = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    rc = m->base == MAP_FAILED ? -errno : 0;
    close(fd);
    if (rc) {
        m->base = NULL;
        return cf_err_set(err, rc, "chunk map %s: mmap: %s", path, strerror(-rc));
    }
    m->file = true;
    if (get32(m->base + 12) == RAFS_CHUNK_MAP_ALL_READY)
        m->ready = count; /* written by us or nydusd once every chunk was in */
    else
        m->ready = popcount_bits(m->base + MAP_HDR, count);
    return 0;
}

void mount_chunk_map_close(struct mount_chunk_map *m)
{
    if (m->base) munmap(m->base, m->len);
    m->base = NULL;
}

bool mount_chunk_map_is_ready(const struct mount_chunk_map *m, uint32_t i)
{
    if (i >= m->count) return false;
    if (mount_chunk_map_complete(m)) return true;
    uint8_t b = __atomic_load_n(&m->base[MAP_HDR + (i >> 3)], __ATOMIC_ACQUIRE);
    return (b >> (7 - (i & 7))) & 1;
}

void mount_chunk_map_set_ready(struct mount_chunk_map *m, uint32_t i)
{
    if (i >= m->count) return;
    uint8_t bit = (uint8_t)(0x80u >> (i & 7));
    uint8_t old = __atomic_fetch_or(&m->base[MAP_HDR + (i >> 3)], bit, __ATOMIC_RELEASE);
    if (old & bit) return;
    if (__atomic_add_fetch(&m->ready, 1, __ATOMIC_ACQ_REL) == m->count) {
        uint32_t v = rafs_le32(RAFS_CHUNK_MAP_ALL_READY);
        __atomic_store((uint32_t *)(void *)(m->base + 12), &v, __ATOMIC_RELEASE);
    }
}
