/* cf_bufpool: reused large buffers (piece-sized, 64 KiB and up) for the hot paths of a daemon.
 *
 * Why: a large malloc() comes from mmap and its pages fault in on first touch, and free()
 * unmaps it again (the peer fixes glibc's mmap threshold so idle memory goes back to the
 * kernel). Per 1 MiB piece that is 256 page faults plus a TLB shootdown, more than the copy
 * itself costs; under a hypervisor much more. Pooled buffers stay mapped and warm while
 * transfers run; cf_bufpool_trim() gives them back when the process goes idle.
 *
 * One pool per process, at most CF_BUFPOOL_MAX_BYTES held. Thread-safe (one mutex). Buffers
 * from cf_bufpool_get() are released with cf_bufpool_put() only (never free()). */
#ifndef CF_BUFPOOL_H
#define CF_BUFPOOL_H

#include <stddef.h>

#define CF_BUFPOOL_MAX_BYTES ((size_t)64 << 20) /* memory kept for reuse, all sizes together */

/* A buffer of at least len bytes (len > 0), uninitialised: a pooled one when one fits (between
 * len and 2 * len), else a new allocation. NULL when out of memory. */
void *cf_bufpool_get(size_t len);
/* The usable size of a buffer from cf_bufpool_get (>= the len asked for). */
size_t cf_bufpool_cap(const void *p);
/* Gives the buffer back (kept for reuse while the pool has room, else freed). NULL is a no-op. */
void cf_bufpool_put(void *p);
/* Frees every pooled buffer (buffers handed out are not affected). */
void cf_bufpool_trim(void);
/* Bytes held in the pool now (for tests and metrics). */
size_t cf_bufpool_held(void);

#endif
