/* Writability of a libuv stream without touching the stream (for sendfile on its socket). */
#ifndef CF_UV_POLL_H
#define CF_UV_POLL_H

#include <uv.h>

/* A uv_poll_t (not started; data is NULL) on a close-on-exec dup of the socket under `stream`:
 * epoll watches the dup beside libuv's own registration of the original fd. Loop thread only.
 * Returns 0 with *poll (malloc'd: uv_close it, then free it) and *fd (close it once the poll is
 * closed), or a negative errno (UV_* or -errno) with *poll and *fd untouched. */
int cf_uv_poll_dup(uv_loop_t *loop, uv_handle_t *stream, uv_poll_t **poll, int *fd);

#endif
