/* OCI distribution (Docker registry v2) client: blobs and manifests over libcurl.
 *
 * Used by the peer daemon for back-to-source fetches, by image conversion and the FUSE reader.
 *
 * Model: one `proto_registry` per registry host ("127.0.0.1:5000", "registry-1.docker.io").
 * It holds the options, the credentials, the learned auth scheme and a token cache, plus a small
 * pool of idle curl handles so keep-alive connections are reused across calls.
 *
 * Threads: a `proto_registry` is SHARED and thread-safe: any number of threads (e.g. libuv's
 * thread pool) may call the fetch functions on one object at the same time; the token cache
 * and the handle pool are guarded by an internal mutex, and each call uses its own curl handle.
 * Every call BLOCKS (network I/O): never call it on an event-loop thread, use uv_queue_work.
 * curl runs with CURLOPT_NOSIGNAL (no signal handlers touched); daemons should still ignore
 * SIGPIPE, as any networked process should.
 * proto_registry_free() must not race with calls on the same object.
 * The first proto_registry_new() initialises libcurl (curl_global_init, once, thread-safe via
 * pthread_once); proto_registry_global_cleanup() is optional at process exit.
 *
 * Errors: functions return 0 or a negative errno and fill `err` (may be NULL) with a message
 * naming the registry and what went wrong, e.g.
 *   "registry 127.0.0.1:5002: authentication failed for user alice (HTTP 401)".
 *   -EINVAL    bad argument (malformed digest, repository name, reference)
 *   -EACCES    authentication failed / access denied (HTTP 401/403; also token server refusal)
 *   -EPERM     credentials would go over plain http to a registry or token server that is not
 *              loopback nor configured as plain http (see proto_registry_opts.scheme)
 *   -ENOENT    blob or manifest unknown (HTTP 404)
 *   -ERANGE    range not satisfiable (HTTP 416, incl. docker-registry's lying Content-Length)
 *   -EBADMSG   malformed answer (bad Content-Range, bad token JSON) or digest mismatch (verify)
 *   -ECONNREFUSED (or the connect errno) / -EHOSTUNREACH (name not resolved) / -ETIMEDOUT
 *              origin unreachable or stalled, after retries; -EIO other transport failures
 *   -EPROTO    TLS failure (the message says so), unexpected HTTP status, too many redirects
 *   -EFBIG     manifest or token answer over its size cap
 *   -EAGAIN    still HTTP 429/5xx after retries
 *   -ENOMEM    allocation failure
 *   any negative value returned by the caller's write callback is passed through.
 *
 * Auth: anonymous, basic (user:pass), and the bearer token flow (401 WWW-Authenticate: Bearer
 * realm,service,scope -> GET realm?service&scope with basic credentials if any -> "token" or
 * "access_token"; cached per scope until expires_in, default 60 s; one fetch per scope at a
 * time, concurrent callers wait for it). Credentials come from the
 * options or from a docker config.json (see docker_config.h).
 *
 * Redirects are followed by this library (not curl), at most 5; the Authorization header is only
 * sent to the registry's own scheme://host:port, never to a redirect target on another origin
 * (blob storage gets a bare request, as the pre-signed URL carries its own authorisation).
 *
 * Retries: connect errors, timeouts, dropped connections, HTTP 5xx and 429 are retried with
 * exponential backoff (retry_base_ms doubling, capped) while the retry budget lasts; a retry of
 * a partly delivered body resumes with a Range request, so callers never see bytes twice.
 * 4xx answers (auth, not found, range) are never retried.
 *
 * Push (uploads, cross-repository mounts, manifest PUT) is in registry_push.h, on the same
 * client object.
 *
 * Ranges: `Range: bytes=A-B` (B inclusive). A registry that ignores Range and answers 200 with
 * the whole blob (a cold pull-through cache) is tolerated: bytes before A are skipped and the
 * transfer stops after B, so the caller receives exactly the range.
 */
#ifndef PROTO_REGISTRY_CLIENT_H
#define PROTO_REGISTRY_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Scheme choice. AUTO: plain http for loopback hosts ("localhost", 127.0.0.0/8, "[::1]"),
 * https for everything else (what docker/containerd do for "insecure" loopback registries).
 * Tests pass HTTP explicitly. */
enum proto_registry_scheme {
    PROTO_REGISTRY_SCHEME_AUTO = 0,
    PROTO_REGISTRY_SCHEME_HTTPS = 1,
    PROTO_REGISTRY_SCHEME_HTTP = 2,
};

/* Options. Zero-initialise (`proto_registry_opts o = {0};`): every 0 means "default".
 * Strings are copied by proto_registry_new(); the caller keeps ownership. */
typedef struct proto_registry_opts {
    /* Credentials over plain http: credentials (Basic, the static bearer_token, a token issued
     * for credentials, a raw request's own) go over http only to a loopback host, or, when the
     * registry was configured for http (scheme HTTP, http_not_configured 0), to its own host
     * (any port, so a token server beside it). Anything else (a non-loopback http registry
     * reached with AUTO, an http token realm elsewhere) fails with -EPERM before a byte of them
     * is sent, naming the registry and insecure_key. Choosing HTTP explicitly is how the tools
     * configure an insecure registry (convertd's and the snapshotter's plain_http list, the
     * mount's scheme, the peer's plain_http / origin_plain_http, --plain-http). */
    enum proto_registry_scheme scheme;
    /* 1 = scheme HTTP was asked for by a request, not configured (the peer's "http://" origin
     * prefix from a local caller): credentials then go over http to loopback hosts only. */
    int http_not_configured;
    /* The setting that configures plain-http registries, named in the -EPERM message
     * (NULL = "plain_http"). */
    const char *insecure_key;
    /* Basic credentials. When both NULL, credentials are looked up in the docker config. */
    const char *username;
    const char *password;
    /* docker config.json: NULL = $DOCKER_CONFIG/config.json, else ~/.docker/config.json (a
     * missing file is not an error); an explicit path must exist; "" = don't read one. */
    const char *docker_config;
    long connect_timeout_ms; /* default 5000 */
    /* Abort a transfer that moves fewer than low_speed_bytes per second for stall_timeout_ms
     * (default 10000 ms, 1 byte/s): catches hung servers without limiting big blob downloads. */
    long stall_timeout_ms;
    long low_speed_bytes;
    long total_timeout_ms; /* whole-request cap; default 0 = none for blobs, 30 s otherwise */
    int max_retries;       /* default 4; -1 = no retries */
    long retry_base_ms;    /* first backoff, default 200 ms, doubling, capped at 2 s */
    /* No retry starts unless it can complete its connect phase within this budget from the
     * first attempt; default 10000 ms, so an unreachable origin fails within ~10 s. */
    long retry_budget_ms;
    int insecure_tls;       /* 1 = don't verify TLS certificates (test setups only) */
    const char *ca_file;    /* extra CA bundle for https, NULL = system default */
    const char *user_agent; /* default "chunkfly/<version>" */
    /* A static bearer token (nydusd's registry_token), sent as "Authorization: Bearer" until
     * the registry refuses it (401); the usual flow (challenge, token server with the basic
     * credentials, if any) takes over from then on. A secret: never logged. NULL = none. */
    const char *bearer_token;
    /* HTTP forward proxy for every request of this client, "http://HOST:PORT": requests for
     * an http registry go to it in absolute form ("GET http://registry/v2/..."), those for an
     * https registry through CONNECT. NULL = none (proxies from the environment then apply,
     * except for loopback registries). */
    const char *proxy;
    /* PEM files trusted in addition to the system CA store (nydusd's ca_cert_files), read once
     * by proto_registry_new (-ENOENT/-EACCES naming the file). NULL-terminated, may be NULL. */
    const char *const *extra_ca_files;
} proto_registry_opts;

typedef struct proto_registry proto_registry;

/* Creates a client for `host` ("host", "host:port", "[v6]:port"; no scheme, no path). Reads the
 * docker config (see opts.docker_config) for credentials of `host` unless username/password are
 * given. Returns 0 and *out (free with proto_registry_free), or -EINVAL (bad host), -EBADMSG
 * (malformed docker config), -ENOENT (explicit config path missing), -ENOMEM, -EIO (libcurl
 * initialisation). */
int proto_registry_new(const char *host, const proto_registry_opts *opts, proto_registry **out,
                       cf_err *err);
void proto_registry_free(proto_registry *r);

/* The "host:port" this client talks to (owned by r). */
const char *proto_registry_host(const proto_registry *r);
/* 1 when this client speaks plain http (SCHEME_HTTP, or AUTO for a loopback host), else 0. */
int proto_registry_plain_http(const proto_registry *r);

/* Optional at process exit, after every client is freed (calls curl_global_cleanup). */
void proto_registry_global_cleanup(void);

/* Receives body bytes in order. Return 0 to continue or a negative errno to abort the transfer
 * (that value is returned by the fetch function). Called on the calling thread. */
typedef int (*proto_registry_write_fn)(void *ctx, const void *data, size_t len);

/* Fetch flags. */
#define PROTO_REGISTRY_VERIFY 0x1u /* whole-blob GET only: sha256 of the body must equal digest */

/* HEAD /v2/<repo>/blobs/<digest>: the blob size. -ENOENT if unknown. */
int proto_registry_blob_size(proto_registry *r, const char *repo, const char *digest,
                             uint64_t *size, cf_err *err);

/* [blocking] The bearer token the registry's token server gives this client's credentials for
 * `repository:<repo>:pull`, as sent to the registry (from the token cache while it lasts, a
 * new one once its expires_in has passed), after a HEAD of digest in repo with it. Used as a
 * proof of access shown to other nodes (docs/security.md): it never returns a password, and
 * fails with -ENOTSUP when the registry does not use token authentication (Basic, or none).
 * *token is malloc'd (wipe and free it). Other errors as proto_registry_blob_size. */
int proto_registry_pull_token(proto_registry *r, const char *repo, const char *digest, char **token,
                              cf_err *err);

/* GET /v2/<repo>/blobs/<digest>, streamed into `fn`, never buffered whole in memory.
 * offset == 0 && length == 0: whole blob (no Range header).
 * length == 0 otherwise: from offset to the end. Else bytes [offset, offset+length).
 * A range that extends past the blob end delivers the bytes that exist (*delivered tells how
 * many; may be NULL); a range starting at or past the end fails with -ERANGE.
 * flags: PROTO_REGISTRY_VERIFY (only with offset == 0 && length == 0, else -EINVAL).
 * digest: "sha256:<64 lowercase hex>" (other algorithms: -EINVAL). */
int proto_registry_blob_get(proto_registry *r, const char *repo, const char *digest,
                            uint64_t offset, uint64_t length, unsigned flags,
                            proto_registry_write_fn fn, void *ctx, uint64_t *delivered,
                            cf_err *err);

/* Same, writing the bytes to `fd` at `fd_offset` onward with pwrite (the fd's file position is
 * untouched, so several threads may fill different parts of one file). */
int proto_registry_blob_get_fd(proto_registry *r, const char *repo, const char *digest,
                               uint64_t offset, uint64_t length, unsigned flags, int fd,
                               uint64_t fd_offset, uint64_t *delivered, cf_err *err);

/* Same, into memory: bytes [offset, offset+length) land in buf (length > 0 bytes, caller-owned);
 * *got (may be NULL) says how many arrived (fewer only when the blob ends first). */
int proto_registry_blob_read(proto_registry *r, const char *repo, const char *digest,
                             uint64_t offset, size_t length, void *buf, size_t *got, cf_err *err);

/* A fetched manifest. Free with proto_manifest_free (safe on a zeroed struct). */
typedef struct proto_manifest {
    uint8_t *body; /* malloc'd, NUL-terminated (not counted in len) */
    size_t len;
    char media_type[128]; /* from Content-Type, else the body's "mediaType", else "" */
    char digest[72];      /* "sha256:<hex>" computed over the body */
} proto_manifest;

#define PROTO_MANIFEST_MAX (4u << 20) /* larger manifests are refused (-EFBIG) */

/* GET /v2/<repo>/manifests/<reference> with Accept for OCI manifest + index and Docker v2
 * manifest + manifest list. reference: a tag or "sha256:<hex>"; when it is a digest the body's
 * sha256 must match (-EBADMSG otherwise). */
int proto_registry_manifest_get(proto_registry *r, const char *repo, const char *reference,
                                proto_manifest *out, cf_err *err);
void proto_manifest_free(proto_manifest *m);

/* ---- pass-through requests (the peer's registry mirror proxies manifests and other /v2/
 * paths with them) ---- */
typedef struct proto_registry_raw_req {
    const char *method; /* "GET" or "HEAD" */
    const char *path;   /* "/v2/...", query included; no CR, LF, space or '#' */
    const char *accept; /* Accept header value to send, or NULL */
    /* The caller's credentials, sent as given (no token flow of our own: a 401 with its
     * WWW-Authenticate is the answer), only to the registry's own scheme://host:port, never
     * to a redirect target elsewhere. At most one of bearer and username; NULL = anonymous.
     * The client object's own credentials (options, docker config) are never used. */
    const char *bearer;
    const char *username, *password;
    size_t max_body; /* 2xx bodies larger than this fail with -EFBIG; 0 = PROTO_MANIFEST_MAX */
} proto_registry_raw_req;

/* The answer, whatever its status. Free with proto_registry_raw_free (safe on a zeroed one). */
typedef struct proto_registry_raw {
    long status;
    char content_type[128];
    char docker_digest[80];
    char www_authenticate[4096]; /* "" when absent */
    int64_t content_length;      /* the header's value (HEAD), -1 unknown */
    uint8_t *body;               /* 2xx: the body; other statuses: its first 2 KiB */
    size_t len;
} proto_registry_raw;

/* [blocking] One pass-through GET/HEAD (redirects followed, retries as for every request).
 * Returns 0 with any HTTP status in out->status, or a negative errno (-EINVAL bad request,
 * transport failure, -EFBIG) with err set. */
int proto_registry_raw_get(proto_registry *r, const proto_registry_raw_req *q,
                           proto_registry_raw *out, cf_err *err);
void proto_registry_raw_free(proto_registry_raw *raw);

/* Validation helpers (also used by the tools). Return 0 or -EINVAL. */
/* 1 when an error of this library may pass if the request is made again later (the transport
 * classes of the table above: unreachable, stalled, reset, other transport failures, 429/5xx
 * after retries); 0 for answers that are final (auth, not found, range, malformed, TLS). */
int proto_registry_error_transient(int rc);
int proto_registry_check_digest(const char *digest); /* sha256:<64 lowercase hex> */
int proto_registry_check_repo(const char *repo);     /* OCI repository name grammar */
int proto_registry_check_tag(const char *tag);       /* [A-Za-z0-9_][A-Za-z0-9._-]{0,127} */
/* The n bytes at h (not NUL-terminated) as the host of an image reference: HOST[:PORT] with
 * HOST dotted DNS labels (letters, digits, inner '-', 1..63 bytes each; IPv4 and "localhost"
 * fit) or "[v6]", PORT 1..65535; 255 bytes at most. Never "." or "..", so safe as a path
 * component. */
int proto_registry_check_host(const char *h, size_t n);

/* ---- image references (image_ref.c) ----
 * "[host[:port]/]path[:tag][@sha256:<hex>]". Default-registry rules (as docker):
 *  - the first '/'-component is a host when it contains '.' or ':' or is "localhost";
 *    otherwise the host is "docker.io" and a single-component path gets "library/" in front;
 *  - proto_image_ref.registry is the API host: "docker.io" maps to "registry-1.docker.io";
 *  - no tag and no digest means tag "latest"; with a digest the tag is kept but not used.
 * The repository must be lowercase (the OCI grammar). */
typedef struct proto_image_ref {
    char registry[256]; /* API host[:port], e.g. "127.0.0.1:5000", "registry-1.docker.io" */
    char repo[256];     /* e.g. "library/busybox" */
    char tag[129];      /* "" when only a digest was given */
    char digest[72];    /* "" when none */
} proto_image_ref;

/* Returns 0 or -EINVAL with a message naming the problem. */
int proto_image_ref_parse(const char *ref, proto_image_ref *out, cf_err *err);
/* The reference to use for a manifest GET: digest if set, else tag. */
const char *proto_image_ref_reference(const proto_image_ref *ref);

#ifdef __cplusplus
}
#endif

#endif
