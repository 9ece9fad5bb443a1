/* registry_push: a thin test CLI over the push half of proto_registry (registry_push.h).
 *   registry_push [--plain-http] [--no-config] [--user U:P] [--chunk N] [--retries N] CMD ...
 *     exists REG/REPO@DIGEST            prints "present SIZE" or "absent"
 *     mount  REG/REPO@DIGEST FROM_REPO  prints "mounted" or "not-mounted"
 *     push   FILE REG/REPO DIGEST       monolithic upload from the file (pread)
 *     stream FILE REG/REPO              chunked upload reading FILE ("-" = stdin) with read();
 *                                       prints "DIGEST SIZE"
 *     manifest FILE REG/REPO:TAG|@DIGEST MEDIA_TYPE   prints the digest
 * Errors: one line "registry_push: <message> [ERRNO_NAME]" on stderr, exit 1. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf/file_io.h"
#include "proto/registry_push.h"

static void usage(void)
{
    fprintf(stderr, "usage: registry_push [--plain-http] [--no-config] [--user U:P] [--chunk N] "
                    "[--retries N] exists|mount|push|stream|manifest ARGS...\n");
    exit(2);
}

static int die(int rc, const cf_err *err)
{
    const char *name = strerrorname_np(-rc);
    fprintf(stderr, "registry_push: %s [%s]\n", cf_err_str(err, rc), name ? name : "?");
    return 1;
}

static int read_fd(void *ctx, void *buf, size_t cap, size_t *got)
{
    ssize_t n;
    do n = read(*(int *)ctx, buf, cap);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    *got = (size_t)n;
    return 0;
}

int main(int argc, char **argv)
{
    proto_registry_opts o = {0};
    size_t chunk = 0;
    char *user = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if (strcmp(argv[i], "--plain-http") == 0)
            o.scheme = PROTO_REGISTRY_SCHEME_HTTP;
        else if (strcmp(argv[i], "--no-config") == 0)
            o.docker_config = "";
        else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
            user = argv[++i];
        else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc)
            chunk = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--retries") == 0 && i + 1 < argc)
            o.max_retries = atoi(argv[++i]);
        else
            usage();
    }
    if (user) {
        char *c = strchr(user, ':');
        if (!c) usage();
        *c = '\0';
        o.username = user;
        o.password = c + 1;
    }
    if (i >= argc) usage();
    const char *cmd = argv[i++];
    int nargs = argc - i;
    const char *refarg = NULL;
    if (strcmp(cmd, "exists") == 0 && nargs == 1)
        refarg = argv[i];
    else if (strcmp(cmd, "mount") == 0 && nargs == 2)
        refarg = argv[i];
    else if (strcmp(cmd, "push") == 0 && nargs == 3)
        refarg = argv[i + 1];
    else if (strcmp(cmd, "stream") == 0 && nargs == 2)
        refarg = argv[i + 1];
    else if (strcmp(cmd, "manifest") == 0 && nargs == 3)
        refarg = argv[i + 1];
    else
        usage();
    cf_err err = {0};
    proto_image_ref ref;
    int rc = proto_image_ref_parse(refarg, &ref, &err);
    if (rc < 0) return die(rc, &err);
    proto_registry *r = NULL;
    rc = proto_registry_new(ref.registry, &o, &r, &err);
    if (rc < 0) return die(rc, &err);
    int fd = -1;
    if (strcmp(cmd, "exists") == 0) {
        uint64_t size = 0;
        rc = proto_registry_blob_exists(r, ref.repo, ref.digest, &size, &err);
        if (rc >= 0) printf(rc ? "present %" PRIu64 "\n" : "absent\n", size);
    } else if (strcmp(cmd, "mount") == 0) {
        rc = proto_registry_blob_mount(r, ref.repo, ref.digest, argv[i + 1], &err);
        if (rc >= 0) printf("%s\n", rc ? "mounted" : "not-mounted");
    } else if (strcmp(cmd, "push") == 0) {
        struct stat st;
        fd = open(argv[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
            rc = cf_err_set(&err, -errno, "%s: %s", argv[i], strerror(errno));
        else
            rc = proto_registry_blob_push_fd(r, ref.repo, fd, 0, (uint64_t)st.st_size, argv[i + 2],
                                             &err);
    } else if (strcmp(cmd, "stream") == 0) {
        fd = strcmp(argv[i], "-") == 0 ? dup(0) : open(argv[i], O_RDONLY | O_CLOEXEC);
        char digest[72];
        uint64_t size = 0;
        if (fd < 0)
            rc = cf_err_set(&err, -errno, "%s: %s", argv[i], strerror(errno));
        else
            rc = proto_registry_blob_push_stream(r, ref.repo, read_fd, &fd, chunk, digest, &size,
                                                 &err);
        if (rc >= 0) printf("%s %" PRIu64 "\n", digest, size);
    } else {
        uint8_t *body = NULL;
        size_t len = 0;
        char digest[72];
        rc = cf_read_file(argv[i], 4u << 20, &body, &len, &err);
        if (rc >= 0)
            rc = proto_registry_manifest_put(r, ref.repo, proto_image_ref_reference(&ref),
                                             argv[i + 2], body, len, digest, &err);
        if (rc >= 0) printf("%s\n", digest);
        free(body);
    }
    if (fd >= 0) close(fd);
    proto_registry_free(r);
    proto_registry_global_cleanup();
    return rc < 0 ? die(rc, &err) : 0;
}
