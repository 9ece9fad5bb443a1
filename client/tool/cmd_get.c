/* chunkfly get: download one blob through the local peer daemon, check its sha256, and only
 * then give it its final name (written to FILE.part, renamed after the digest matched). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf/digest.h"
#include "cf/file_io.h"
#include "cf/hex.h"
#include "cli.h"
#include "client/local_api_client.h"
#include "proto/msg.h"
#include "proto/registry_auth.h"
#include "proto/registry_client.h"

static const char usage[] =
    "usage: chunkfly get [options] REGISTRY/REPO@sha256:DIGEST -o FILE\n"
    "\n"
    "Downloads a blob through the node's peer daemon (from the peer mesh, or from the registry\n"
    "when no peer has it), writes it to FILE.part, checks its sha256 and renames it to FILE.\n"
    "Credentials for REGISTRY are read from the docker config.json and handed to the daemon\n"
    "with the request.\n"
    "\n"
    "  -o, --output FILE      where to store the blob (required)\n"
    "  --peer SOCKET          the daemon's local API socket\n"
    "                         (default $CHUNKFLY_PEER_SOCKET, else " CLIENT_DEFAULT_SOCKET ")\n"
    "  --plain-http           the registry speaks plain http (default: http for loopback\n"
    "                         registries, https otherwise)\n"
    "  --docker-config FILE   credentials file (default $DOCKER_CONFIG/config.json, else\n"
    "                         ~/.docker/config.json)\n"
    "  --no-credentials       send no credentials\n"
    "  --timeout SECONDS      give up when the daemon sends nothing for this long (300)\n"
    "  --verified-only        ask the daemon for bytes it has verified only (default: bytes as\n"
    "                         they arrive, which this command checks itself: FILE gets its name\n"
    "                         only after the sha256 matched; on a mismatch it reads the blob\n"
    "                         again, verified bytes only)\n"
    "  -q, --quiet            no progress output\n"
    "  -h, --help\n"
    "\n"
    "Progress goes to stderr: a bar on a terminal, a line every 5 s otherwise.\n"
    "Exit status: 0 blob stored and verified, 1 failure, 2 usage error.\n";

static char part_path[PATH_MAX];

static void on_signal(int sig)
{
    /* async-signal-safe: never leave a half-written .part behind */
    if (part_path[0]) unlink(part_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Why cut-through by default: a blob nobody has verified yet (no per-piece digest list, e.g.
 * the first download from the registry) is verified-readable only once the daemon has it whole
 * and hashed, which would put the whole download, then the daemon's check, then the transfer
 * here in a row. This command hashes every byte itself before the file gets its name, so it may
 * take bytes as they arrive; only a lying parent can make that hash fail where the daemon's own
 * checks recover, hence the verified-only second read. */

/* The sha256 runs on a second thread that follows the writer through the file (page cache),
 * so hashing overlaps receiving and writing instead of adding to them. */
struct tail_hash {
    int fd; /* read-only, on FILE.part */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t avail, hashed; /* written by the receiver / hashed so far */
    int done, err;
    cf_digest_ctx sha;
};

#define HASH_BLOCK (1u << 20)

static void *tail_hash_main(void *arg)
{
    struct tail_hash *h = arg;
    uint8_t *buf = malloc(HASH_BLOCK);
    if (!buf) h->err = -ENOMEM;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        while (h->hashed == h->avail && !h->done) pthread_cond_wait(&h->cv, &h->mu);
        uint64_t target = h->avail;
        int done = h->done;
        pthread_mutex_unlock(&h->mu);
        while (!h->err && h->hashed < target) {
            size_t want =
                target - h->hashed < HASH_BLOCK ? (size_t)(target - h->hashed) : HASH_BLOCK;
            ssize_t n = pread(h->fd, buf, want, (off_t)h->hashed);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                h->err = n < 0 ? -errno : -EIO;
                break;
            }
            cf_digest_update(&h->sha, buf, (size_t)n);
            h->hashed += (uint64_t)n;
        }
        if (h->err || (done && h->hashed >= target)) break;
    }
    free(buf);
    return NULL;
}

struct get_ctx {
    int fd;
    uint64_t written;
    struct tail_hash *hash;
    cli_progress prog;
};

/* len more bytes are in FILE.part: the hash thread may read them */
static void advance(struct get_ctx *g, uint64_t len)
{
    g->written += len;
    pthread_mutex_lock(&g->hash->mu);
    g->hash->avail = g->written;
    pthread_cond_signal(&g->hash->cv);
    pthread_mutex_unlock(&g->hash->mu);
    cli_progress_update(&g->prog, g->written);
}

static int on_data(void *ctx, uint64_t offset, const void *data, size_t len)
{
    struct get_ctx *g = ctx;
    (void)offset; /* the client guarantees order: offset == g->written */
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t n = write(g->fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        left -= (size_t)n;
    }
    advance(g, len);
    return 0;
}

/* A cached, verified blob comes as the daemon's file: copied in the kernel, in steps so the
 * hash and the progress follow. */
#define FILE_STEP (8u << 20)

static int on_file(void *ctx, uint64_t offset, int fd, uint64_t file_offset, uint64_t len)
{
    struct get_ctx *g = ctx;
    (void)offset; /* in order, as on_data: offset == g->written */
    while (len) {
        uint64_t n = len < FILE_STEP ? len : FILE_STEP;
        int r = cf_copy_range(fd, file_offset, g->fd, g->written, n);
        if (r) return r;
        file_offset += n;
        len -= n;
        advance(g, n);
    }
    return 0;
}

struct get_req {
    const char *sock, *digest, *origin, *creds;
    int timeout_s, quiet, cut_through;
};

/* One download into part_path, hashed as it is written. 0 with the sha256 in d, or a negative
 * errno with err (*connect_failed: the reason is printed already). *got: bytes received. */
static int get_once(const struct get_req *q, uint8_t d[CF_DIGEST_LEN], uint64_t *got, double *el,
                    cf_err *err, int *connect_failed)
{
    client_local *c = NULL;
    client_local_opts co = {.idle_timeout_ms = q->timeout_s * 1000,
                            .unverified_ok = q->cut_through != 0,
                            .accept_fd = true};
    int r = cli_connect_opts(q->sock, &co, &c);
    if (r) {
        *connect_failed = 1;
        return r;
    }
    struct get_ctx g = {.fd = -1};
    g.fd = open(part_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (g.fd < 0) {
        r = cf_err_set(err, -errno, "cannot create %s: %s", part_path, strerror(errno));
        client_local_close(c);
        return r;
    }
    struct tail_hash th = {.fd = open(part_path, O_RDONLY | O_CLOEXEC)};
    pthread_t hasher;
    pthread_mutex_init(&th.mu, NULL);
    pthread_cond_init(&th.cv, NULL);
    cf_digest_init(&th.sha, CF_DIGEST_SHA256);
    if (th.fd < 0 || pthread_create(&hasher, NULL, tail_hash_main, &th) != 0) {
        r = cf_err_set(err, th.fd < 0 ? -errno : -EAGAIN, "cannot start hashing %s: %s", part_path,
                       strerror(th.fd < 0 ? errno : EAGAIN));
        if (th.fd >= 0) close(th.fd);
        cf_digest_abort(&th.sha);
        pthread_mutex_destroy(&th.mu);
        pthread_cond_destroy(&th.cv);
        close(g.fd);
        client_local_close(c);
        return r;
    }
    g.hash = &th;

    /* the daemon starts the download and tells the length; then the whole blob is read */
    client_entry e;
    double t0 = cli_now();
    r = client_local_start(c, q->digest, q->origin, q->creds, &e, err);
    cli_progress_init(&g.prog, q->quiet, r == 0 ? e.content_length : 0);
    if (r == 0)
        r = client_local_read_ex(c, q->digest, q->origin, q->creds, 0, e.content_length, on_data,
                                 on_file, &g, got, err);
    cli_progress_end(&g.prog);
    *el = cli_now() - t0;
    client_local_close(c);
    if (r == 0 && fsync(g.fd) != 0)
        r = cf_err_set(err, -errno, "fsync %s: %s", part_path, strerror(errno));
    if (close(g.fd) != 0 && r == 0)
        r = cf_err_set(err, -errno, "close %s: %s", part_path, strerror(errno));
    pthread_mutex_lock(&th.mu);
    th.done = 1;
    pthread_cond_signal(&th.cv);
    pthread_mutex_unlock(&th.mu);
    pthread_join(hasher, NULL);
    close(th.fd);
    pthread_mutex_destroy(&th.mu);
    pthread_cond_destroy(&th.cv);
    if (r == 0 && th.err)
        r = cf_err_set(err, th.err, "reading %s back to hash it: %s", part_path, strerror(-th.err));
    cf_digest_final(&th.sha, d);
    return r;
}

int cmd_get(int argc, char **argv)
{
    const char *out = NULL, *sock = cli_default_socket(), *dcfg = NULL;
    int plain = 0, nocreds = 0, quiet = 0, timeout_s = 300, verified_only = 0;
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},   {"peer", required_argument, 0, 'p'},
        {"plain-http", no_argument, 0, 'H'},     {"docker-config", required_argument, 0, 'd'},
        {"no-credentials", no_argument, 0, 'n'}, {"timeout", required_argument, 0, 't'},
        {"verified-only", no_argument, 0, 'V'},  {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (ch) {
        case 'o':
            out = optarg;
            break;
        case 'p':
            sock = optarg;
            break;
        case 'H':
            plain = 1;
            break;
        case 'd':
            dcfg = optarg;
            break;
        case 'n':
            nocreds = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'V':
            verified_only = 1;
            break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 86400) {
                fprintf(stderr, "chunkfly get: --timeout wants 1..86400 seconds, not '%s'\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            timeout_s = (int)v;
            break;
        }
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || !out) {
        fprintf(stderr, "chunkfly get: %s\n\n%s",
                optind >= argc      ? "missing the blob reference"
                : optind < argc - 1 ? "one blob reference at a time"
                                    : "missing -o FILE",
                usage);
        return CLI_EXIT_USAGE;
    }
    const char *refs = argv[optind];
    cf_err err = {0};
    proto_image_ref ref;
    int r = proto_image_ref_parse(refs, &ref, &err);
    if (r) {
        fprintf(stderr, "chunkfly get: %s\n", cf_err_str(&err, r));
        return CLI_EXIT_USAGE;
    }
    if (!ref.digest[0] || proto_registry_check_digest(ref.digest) != 0) {
        fprintf(stderr,
                "chunkfly get: '%s' names no blob: give REGISTRY/REPO@sha256:<64 hex digits>\n",
                refs);
        return CLI_EXIT_USAGE;
    }
    if (snprintf(part_path, sizeof(part_path), "%s.part", out) >= (int)sizeof(part_path)) {
        fprintf(stderr, "chunkfly get: output path too long: %s\n", out);
        return CLI_EXIT_USAGE;
    }

    /* origin reference for the daemon; an "http://" prefix asks it for plain http */
    char origin[PROTO_MAX_ORIGIN_LEN + 1];
    snprintf(origin, sizeof(origin), "%s%s/%s@%s", plain ? "http://" : "", ref.registry, ref.repo,
             ref.digest);

    char *user = NULL, *pass = NULL, *creds = NULL;
    if (!nocreds) {
        r = proto_docker_config_load(dcfg, ref.registry, &user, &pass, &err);
        if (r < 0) {
            fprintf(stderr, "chunkfly get: reading credentials: %s\n", cf_err_str(&err, r));
            return CLI_EXIT_FAIL;
        }
        if (r == 0) {
            size_t n = strlen(user) + strlen(pass) + 2;
            creds = malloc(n);
            if (creds) snprintf(creds, n, "%s:%s", user, pass);
            free(user);
            if (pass) {
                memset(pass, 0, strlen(pass));
                free(pass);
            }
            if (!creds) {
                fprintf(stderr, "chunkfly get: out of memory\n");
                return CLI_EXIT_FAIL;
            }
        }
    }

    /* never leave a half-written FILE.part behind */
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    struct get_req q = {.sock = sock,
                        .digest = ref.digest,
                        .origin = origin,
                        .creds = creds,
                        .timeout_s = timeout_s,
                        .quiet = quiet,
                        .cut_through = !verified_only};
    uint8_t d[CF_DIGEST_LEN];
    char hex[CF_DIGEST_LEN * 2 + 1];
    uint64_t got = 0;
    double el = 0;
    for (;;) {
        int connect_failed = 0;
        got = 0;
        r = get_once(&q, d, &got, &el, &err, &connect_failed);
        if (r) {
            unlink(part_path);
            if (!connect_failed)
                fprintf(stderr, "chunkfly get: %s failed after %llu bytes: %s\n", refs,
                        (unsigned long long)got, cf_err_str(&err, r));
            break;
        }
        cf_hex_encode(d, sizeof(d), hex);
        if (strcmp(hex, ref.digest + 7) == 0) break;
        unlink(part_path);
        if (q.cut_through) {
            fprintf(stderr,
                    "chunkfly get: the %llu bytes read as they arrived hash to sha256:%s, not "
                    "%s (a parent may have sent bad bytes; the daemon checks them too): reading "
                    "again, verified bytes only\n",
                    (unsigned long long)got, hex, ref.digest);
            q.cut_through = 0;
            continue;
        }
        fprintf(stderr,
                "chunkfly get: sha256 mismatch for %s: the %llu bytes received hash to "
                "sha256:%s (%s removed)\n",
                refs, (unsigned long long)got, hex, part_path);
        r = -EBADMSG;
        break;
    }
    if (creds) {
        memset(creds, 0, strlen(creds));
        free(creds);
    }
    if (r) return CLI_EXIT_FAIL;
    if (rename(part_path, out) != 0) {
        fprintf(stderr, "chunkfly get: rename %s -> %s: %s\n", part_path, out, strerror(errno));
        unlink(part_path);
        return CLI_EXIT_FAIL;
    }
    part_path[0] = 0;
    if (!quiet) {
        char b[32], rate[32];
        cli_fmt_bytes(got, b, sizeof(b));
        cli_fmt_bytes(el > 0 ? (uint64_t)((double)got / el) : got, rate, sizeof(rate));
        fprintf(stderr, "%s: %s in %.2f s (%s/s), sha256 verified\n", out, b, el, rate);
    }
    return 0;
}
