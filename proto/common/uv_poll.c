/* cf_uv_poll_dup (cf/uv_poll.h). */
#include "cf/uv_poll.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int cf_uv_poll_dup(uv_loop_t *loop, uv_handle_t *stream, uv_poll_t **poll, int *fd)
{
    uv_os_fd_t sfd;
    int r = uv_fileno(stream, &sfd);
    if (r < 0) return r;
    uv_poll_t *p = malloc(sizeof(*p));
    if (!p) return -ENOMEM;
    int d = fcntl(sfd, F_DUPFD_CLOEXEC, 0);
    if (d < 0) {
        r = -errno;
        free(p);
        return r;
    }
    r = uv_poll_init(loop, p, d);
    if (r < 0) {
        free(p);
        close(d);
        return r;
    }
    p->data = NULL;
    *poll = p;
    *fd = d;
    return 0;
}
