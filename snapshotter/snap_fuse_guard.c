/* EIO for the readers of a dead FUSE daemon's connection (see snap_fuse_guard.h). */
#include "snap_fuse_guard.h"

#include <dirent.h>
#include <errno.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cf/log.h"

/* Debian 12's headers predate it; the number is the kernel's (include/uapi/linux/fuse.h). */
#define NOTIFY_RESEND 7
/* Requests carry at most max_write bytes (read-only here: no writes) plus headers; the kernel
 * wants read buffers of at least 8 KiB. */
#define BUF_SIZE (1024 * 1024 + 4096)

int snap_fuse_guard_grab(int pidfd, pid_t pid)
{
    char dir[64], path[320], target[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return -errno;
    struct dirent *de;
    int fd = -ENOENT;
    while (fd == -ENOENT && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0) continue;
        target[n] = 0;
        if (strcmp(target, "/dev/fuse")) continue;
        fd = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(de->d_name), 0);
        if (fd < 0) fd = -errno;
    }
    closedir(d);
    return fd;
}

static void *serve_eio(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(BUF_SIZE);
    unsigned long answered = 0;
    struct fuse_out_header resend = {.len = sizeof(resend), .error = NOTIFY_RESEND, .unique = 0};
    if (write(fd, &resend, sizeof(resend)) < 0)
        cf_warn("FUSE guard: the kernel refused to resend the dead daemon's requests (%s): "
                "those readers get an error when the mount goes",
                strerror(errno));
    while (buf) {
        ssize_t n = read(fd, buf, BUF_SIZE);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < (ssize_t)sizeof(struct fuse_in_header))
            break; /* ENODEV: the old mount is gone, nobody can ask anymore */
        const struct fuse_in_header *in = (const void *)buf;
        if (in->opcode == FUSE_FORGET || in->opcode == FUSE_BATCH_FORGET ||
            in->opcode == FUSE_INTERRUPT)
            continue; /* no answer expected */
        struct fuse_out_header out = {.len = sizeof(out), .error = -EIO, .unique = in->unique};
        if (write(fd, &out, sizeof(out)) < 0 && errno == ENODEV) break;
        answered++;
    }
    cf_info("FUSE guard: the dead daemon's mount is gone (%lu requests answered EIO)", answered);
    free(buf);
    close(fd);
    return NULL;
}

void snap_fuse_guard_start(int fd)
{
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, serve_eio, (void *)(intptr_t)fd) != 0) {
        cf_warn("FUSE guard: no thread: readers of the dead mount get ENOTCONN");
        close(fd);
    }
    pthread_attr_destroy(&a);
}
