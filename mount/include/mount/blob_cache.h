/* The chunk cache of chunkfly-mount: every data blob of one RAFS image, read lazily chunk by
 * chunk from a rafs_blob_source (the backend), verified, and kept in Nydus's blobcache layout
 * under work_dir (../shared/docs/nydus-format.md §6.4):
 *   <blob_id>.blob.data            sparse file of the blob's uncompressed address space: each
 *                                  chunk's bytes at its (4 KiB aligned) uncompressed offset;
 *   <blob_id>.blob.data.chunk_map  4096-byte header + one bit per chunk (MSB first), set once
 *                                  the chunk's bytes are in .blob.data.
 *
 * Reads: mount_blob_cache_read_file() serves a file range (rafs_file_map -> chunks);
 * mount_blob_cache_read_blob() serves any range of one blob's uncompressed address space (what
 * a kernel-EROFS `device=` file needs). Both first make sure every chunk they touch is ready:
 *  - a missing chunk is fetched from the blob's source as its compressed byte range; missing
 *    chunks adjacent in the blob are fetched by one read of at most `amplify_io` bytes (a single
 *    chunk may exceed it); independent ranges of one request are fetched concurrently;
 *  - a chunk another thread is fetching is waited for, not fetched twice;
 *  - every chunk is decompressed and checked against its digest before it is written or
 *    returned, always. A mismatch fails the read with -EIO, logs a line naming blob and chunk,
 *    marks nothing ready; the next read fetches the chunk again. A chunk without a digest in
 *    the image is refused (-EIO): unverified bytes are never served;
 *  - the chunk is marked ready in the chunk_map only after its bytes were written to
 *    .blob.data, so after a crash (kill -9) every bit set describes correct data. (Power loss:
 *    the map and data pages are not fsync'ed; see docs/mount.md.)
 * Chunks already marked ready by an earlier run are served without touching the backend, and a
 * blob's source is opened only when one of its chunks must be fetched.
 *
 * Threads: any number of threads may call the read functions at once. The image must outlive
 * the cache and stay unchanged. Ownership: the cache owns the sources it opens (through
 * opts.open_blob) and closes them in mount_blob_cache_free().
 * Errors: 0 or a negative errno with a message in `cf_err`: -EIO (digest mismatch, chunk
 * without digest, backend failure reported as its own errno when it has one: -ETIMEDOUT,
 * -ENOENT...), -ENOSPC/-EIO writing the cache, -EINVAL bad blob index, -ENOMEM. */
#ifndef MOUNT_BLOB_CACHE_H
#define MOUNT_BLOB_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"
#include "rafs/blob_source.h"
#include "rafs/reader.h"

typedef struct mount_blob_cache mount_blob_cache;

/* Opens the compressed bytes of blob `bi` (called from a reading thread the first time one of
 * the blob's chunks is missing; never twice at once for one blob; retried on the next miss
 * after a failure). The cache owns *out from then on. */
typedef int (*mount_blob_open_fn)(void *ctx, const struct rafs_blob_info *bi,
                                  rafs_blob_source **out, cf_err *err);

struct mount_blob_cache_opts {
    const char *work_dir;   /* cache directory (created); NULL = unnamed temporary files
                             * in $TMPDIR (nothing persists) */
    uint64_t amplify_io;    /* max bytes of one merged backend read; 0 = 1 MiB */
    unsigned fetch_threads; /* concurrent backend reads per request; 0 = 4 */
    mount_blob_open_fn open_blob;
    void *open_ctx;
};

/* Opens/creates the cache files of every blob of `img` (a blob whose .blob.data was removed or
 * whose chunk_map is malformed starts empty). */
int mount_blob_cache_new(const rafs_image *img, const struct mount_blob_cache_opts *o,
                         mount_blob_cache **out, cf_err *err);
void mount_blob_cache_free(mount_blob_cache *c);

/* Reads up to `len` bytes of regular file `nid` at `offset` (short only at EOF: *nread). */
int mount_blob_cache_read_file(mount_blob_cache *c, uint64_t nid, uint64_t offset, void *buf,
                               size_t len, size_t *nread, cf_err *err);
/* Reads up to `len` bytes at `offset` of blob `blob`'s uncompressed address space (short only
 * past uncompressed_size). Bytes between chunks read as zeros. The first call builds an index of
 * the blob's chunks by walking the image's files. */
int mount_blob_cache_read_blob(mount_blob_cache *c, uint32_t blob, uint64_t offset, void *buf,
                               size_t len, size_t *nread, cf_err *err);
/* Where verified bytes lie in the cache: `len` bytes of the cache file `fd` at `offset`. The
 * fd belongs to the cache (valid until mount_blob_cache_free; never close it). */
struct mount_blob_extent {
    int fd;
    uint64_t offset;
    size_t len;
};
/* The zero-copy forms of read_file / read_blob (a FUSE server splices from the cache files):
 * make every chunk the range touches ready (fetched and verified, as the reads do) and say
 * where its bytes are instead of copying them. map_file: *ext (malloc'ed, the caller frees
 * it) gets *n extents in file order, adjacent chunks merged, *total bytes in all (short only
 * at EOF). map_blob: one extent (len 0 past the blob's end). Extents lie inside their files:
 * a cache file cut short outside the daemon gives -EIO, not a short extent. Reading the
 * extents' bytes is the caller's business; ready chunks are never written again. */
int mount_blob_cache_map_file(mount_blob_cache *c, uint64_t nid, uint64_t offset, size_t len,
                              struct mount_blob_extent **ext, size_t *n, size_t *total,
                              cf_err *err);
int mount_blob_cache_map_blob(mount_blob_cache *c, uint32_t blob, uint64_t offset, size_t len,
                              struct mount_blob_extent *ext, cf_err *err);
/* Makes every chunk of regular file `nid` ready without copying it anywhere (prefetch). */
int mount_blob_cache_fill_file(mount_blob_cache *c, uint64_t nid, cf_err *err);
/* Number of read calls (read_file / read_blob) running now: a prefetcher waits while it is
 * not 0, so on-demand reads get the backend first. */
unsigned mount_blob_cache_reads_running(const mount_blob_cache *c);

/* Path of blob `blob`'s .blob.data file (NULL with no work_dir) and whether every chunk of it
 * is ready (then the file may be used directly, e.g. as an EROFS device). */
const char *mount_blob_cache_data_path(const mount_blob_cache *c, uint32_t blob);
int mount_blob_cache_blob_complete(const mount_blob_cache *c, uint32_t blob);

struct mount_blob_cache_stats {
    uint64_t bytes_read;                 /* bytes returned to callers */
    uint64_t backend_reads;              /* range reads sent to sources */
    uint64_t backend_bytes;              /* compressed bytes received from sources */
    uint64_t backend_errors;             /* failed source reads / opens */
    uint64_t chunks_fetched;             /* chunks fetched, verified and cached */
    uint64_t chunks_hit;                 /* chunk uses served from the cache */
    uint64_t chunks_waited;              /* chunk uses that waited for another thread's fetch */
    uint64_t verify_failures;            /* digest mismatches (and chunks without digest) */
    uint64_t reads, read_ns;             /* read/map calls and the time spent in them (latency;
                                          * for map_*: without reading the bytes) */
    uint64_t chunks_ready, chunks_total; /* over all blobs, now */
};
void mount_blob_cache_get_stats(const mount_blob_cache *c, struct mount_blob_cache_stats *out);

#endif
