/* registry_fetch: a thin test CLI over proto_registry (blob ranges, HEAD, manifests).
 *   registry_fetch [--plain-http] [--config FILE | --no-config] [--user U:P] [--verify]
 *                  [--head | --manifest] [--range A-B | --range A-] [--threads N] [--repeat N]
 *                  [--pause MS (between repeats)] [--abort-after N] [--mem (needs --range A-B)]
 *                  [--connect-timeout MS] [--stall-timeout MS] [--retries N] [-v] -o FILE REF
 * REF is host[:port]/repo@sha256:... for blobs (and --head), or host/repo:tag|@digest for
 * --manifest. --head prints the blob size; --manifest writes the body to FILE and prints
 * "<media type> <digest>". --threads N splits the blob (or range) into N parts fetched in
 * parallel through ONE shared client into FILE (exercises thread safety and pwrite at offsets).
 * --abort-after N uses the callback API with a sink that fails with ECANCELED once it holds at
 * least N bytes; the delivered count is printed.
 * Errors: one line "registry_fetch: <message> [ERRNO_NAME]" on stderr, exit 1. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf/log.h"
#include "proto/registry_client.h"

static void usage(void)
{
    fprintf(
        stderr,
        "usage: registry_fetch [--plain-http|--https [--ca-file F] [--insecure-tls]] "
        "[--config FILE|--no-config] "
        "[--user U:P] [--verify] [--head|--manifest] [--range A-B] [--threads N] "
        "[--repeat N] [--pause MS] [--connect-timeout MS] [--stall-timeout MS] [--retries N] [-v] "
        "-o FILE REF\n");
    exit(2);
}

static int die(int rc, const cf_err *err)
{
    const char *name = strerrorname_np(-rc);
    fprintf(stderr, "registry_fetch: %s [%s]\n", cf_err_str(err, rc), name ? name : "?");
    return 1;
}

struct part {
    proto_registry *r;
    const proto_image_ref *ref;
    uint64_t off, len;
    int fd;
    uint64_t fd_off;
    int rc;
    cf_err err;
};

static void *part_main(void *arg)
{
    struct part *p = arg;
    uint64_t got = 0;
    p->rc = proto_registry_blob_get_fd(p->r, p->ref->repo, p->ref->digest, p->off, p->len, 0, p->fd,
                                       p->fd_off, &got, &p->err);
    if (p->rc == 0 && got != p->len)
        p->rc = cf_err_set(&p->err, -EIO, "part at %" PRIu64 ": got %" PRIu64 " of %" PRIu64,
                           p->off, got, p->len);
    return NULL;
}

/* Writes to fd, then fails with -ECANCELED once `limit` bytes were taken. */
struct counting_sink {
    int fd;
    uint64_t taken, limit;
};

static int counting_write(void *ctx, const void *data, size_t len)
{
    struct counting_sink *k = ctx;
    if (k->taken >= k->limit) return -ECANCELED;
    if (write(k->fd, data, len) != (ssize_t)len) return -EIO;
    k->taken += len;
    return 0;
}

int main(int argc, char **argv)
{
    proto_registry_opts o = {0};
    const char *out = NULL, *refstr = NULL, *range = NULL;
    char *user = NULL;
    int head = 0, manifest = 0, verify = 0, threads = 1, repeat = 1, pause_ms = 0;
    uint64_t abort_after = 0;
    int mem = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), ""))
        if (!strcmp(a, "--plain-http"))
            o.scheme = PROTO_REGISTRY_SCHEME_HTTP;
        else if (!strcmp(a, "--https"))
            o.scheme = PROTO_REGISTRY_SCHEME_HTTPS;
        else if (!strcmp(a, "--ca-file"))
            o.ca_file = NEXT();
        else if (!strcmp(a, "--insecure-tls"))
            o.insecure_tls = 1;
        else if (!strcmp(a, "--config"))
            o.docker_config = NEXT();
        else if (!strcmp(a, "--no-config"))
            o.docker_config = "";
        else if (!strcmp(a, "--user"))
            user = strdup(NEXT());
        else if (!strcmp(a, "--head"))
            head = 1;
        else if (!strcmp(a, "--manifest"))
            manifest = 1;
        else if (!strcmp(a, "--verify"))
            verify = 1;
        else if (!strcmp(a, "--range"))
            range = NEXT();
        else if (!strcmp(a, "--threads"))
            threads = atoi(NEXT());
        else if (!strcmp(a, "--repeat"))
            repeat = atoi(NEXT());
        else if (!strcmp(a, "--mem"))
            mem = 1;
        else if (!strcmp(a, "--abort-after"))
            abort_after = strtoull(NEXT(), NULL, 10);
        else if (!strcmp(a, "--pause"))
            pause_ms = atoi(NEXT());
        else if (!strcmp(a, "--connect-timeout"))
            o.connect_timeout_ms = atol(NEXT());
        else if (!strcmp(a, "--stall-timeout"))
            o.stall_timeout_ms = atol(NEXT());
        else if (!strcmp(a, "--retries"))
            o.max_retries = atoi(NEXT());
        else if (!strcmp(a, "-v"))
            cf_log_set_level(CF_LOG_DEBUG);
        else if (!strcmp(a, "-o"))
            out = NEXT();
        else if (a[0] == '-')
            usage();
        else
            refstr = a;
#undef NEXT
    }
    if (!refstr || (!out && !head) || threads < 1 || threads > 64 || repeat < 1) usage();
    if (user) {
        char *c = strchr(user, ':');
        if (!c) usage();
        *c = '\0';
        o.username = user;
        o.password = c + 1;
    }
    cf_err err = {0};
    proto_image_ref ref;
    int rc = proto_image_ref_parse(refstr, &ref, &err);
    if (rc < 0) return die(rc, &err);
    proto_registry *r;
    rc = proto_registry_new(ref.registry, &o, &r, &err);
    if (rc < 0) return die(rc, &err);
    int status = 0;
    for (int it = 0; it < repeat && status == 0; it++) {
        if (it > 0 && pause_ms > 0) usleep((useconds_t)pause_ms * 1000);
        if (manifest) {
            proto_manifest m = {0};
            rc =
                proto_registry_manifest_get(r, ref.repo, proto_image_ref_reference(&ref), &m, &err);
            if (rc == 0) {
                int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                if (fd < 0 || write(fd, m.body, m.len) != (ssize_t)m.len)
                    rc = cf_err_set(&err, -errno, "writing %s: %s", out, strerror(errno));
                if (fd >= 0) close(fd);
                if (rc == 0) printf("%s %s\n", m.media_type, m.digest);
            }
            proto_manifest_free(&m);
            if (rc < 0) status = die(rc, &err);
            continue;
        }
        if (!ref.digest[0]) {
            fprintf(stderr, "registry_fetch: blob reference needs @sha256:...\n");
            status = 2;
            break;
        }
        uint64_t a = 0, len = 0;
        if (range) {
            char *end;
            a = strtoull(range, &end, 10);
            if (*end != '-') usage();
            if (end[1]) len = strtoull(end + 1, NULL, 10) - a + 1;
        }
        if (head) {
            uint64_t size;
            rc = proto_registry_blob_size(r, ref.repo, ref.digest, &size, &err);
            if (rc < 0)
                status = die(rc, &err);
            else
                printf("%" PRIu64 "\n", size);
            continue;
        }
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            fprintf(stderr, "registry_fetch: %s: %s\n", out, strerror(errno));
            status = 1;
            break;
        }
        if (mem) { /* proto_registry_blob_read into a malloc'd buffer, then to the file */
            if (!len || len > (256u << 20)) usage();
            void *b = malloc(len);
            size_t got = 0;
            rc = b ? proto_registry_blob_read(r, ref.repo, ref.digest, a, len, b, &got, &err)
                   : -ENOMEM;
            if (rc == 0 && write(fd, b, got) != (ssize_t)got) rc = -errno;
            if (rc < 0) status = die(rc, &err);
            free(b);
        } else if (abort_after) { /* callback path: a sink that gives up after N bytes */
            struct counting_sink k = {fd, 0, abort_after};
            uint64_t got = 0;
            rc = proto_registry_blob_get(r, ref.repo, ref.digest, a, len, 0, counting_write, &k,
                                         &got, &err);
            printf("%" PRIu64 "\n", got);
            if (rc < 0) status = die(rc, &err);
        } else if (threads == 1) {
            uint64_t got = 0;
            rc = proto_registry_blob_get_fd(r, ref.repo, ref.digest, a, len,
                                            verify ? PROTO_REGISTRY_VERIFY : 0, fd, 0, &got, &err);
            if (rc < 0) status = die(rc, &err);
        } else {
            if (!len) { /* split to the end: need the size */
                uint64_t size;
                rc = proto_registry_blob_size(r, ref.repo, ref.digest, &size, &err);
                if (rc < 0 || size <= a) {
                    status = die(rc < 0 ? rc : -ERANGE, &err);
                    close(fd);
                    break;
                }
                len = size - a;
            }
            struct part p[64];
            pthread_t th[64];
            uint64_t step = (len + (uint64_t)threads - 1) / (uint64_t)threads;
            int n = 0;
            for (uint64_t o2 = 0; o2 < len; o2 += step, n++) {
                p[n] = (struct part){r,  &ref, a + o2, o2 + step > len ? len - o2 : step,
                                     fd, o2,   0,      {0}};
                pthread_create(&th[n], NULL, part_main, &p[n]);
            }
            for (int k = 0; k < n; k++) {
                pthread_join(th[k], NULL);
                if (p[k].rc < 0 && status == 0) status = die(p[k].rc, &p[k].err);
            }
        }
        close(fd);
    }
    proto_registry_free(r);
    proto_registry_global_cleanup();
    free(user);
    return status;
}
