/* Private to proto/registry: the client object and the single-exchange HTTP engine. */
#ifndef PROTO_REGISTRY_INTERNAL_H
#define PROTO_REGISTRY_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <curl/curl.h>

#include "cf/buf.h"
#include "cf/digest.h"
#include "proto/registry_auth.h"
#include "proto/registry_client.h"

#define REG_POOL_MAX      8  /* idle curl handles kept for keep-alive reuse */
#define REG_TOKENS_MAX    64 /* cached bearer tokens (one per scope) */
#define REG_REDIRECTS_MAX 5
#define REG_ORIGIN_MAX    320

struct reg_token {
    struct reg_token *next;
    char *scope;
    char *token;
    double expires_at; /* monotonic seconds */
};

/* A token fetch in progress: other threads needing the same scope wait for it. */
struct reg_flight {
    struct reg_flight *next;
    const char *scope;
};

struct proto_registry {
    char host[256];
    char origin[REG_ORIGIN_MAX]; /* "http://127.0.0.1:5000" as reg_url_origin() writes it */
    char base[REG_ORIGIN_MAX];   /* "http://127.0.0.1:5000" as given, for building URLs */
    char *username, *password;   /* NULL when anonymous */
    long connect_timeout_ms, stall_timeout_ms, low_speed_bytes, total_timeout_ms;
    int max_retries;
    long retry_base_ms, retry_budget_ms;
    int insecure_tls;
    int http_configured; /* scheme HTTP chosen by configuration: credentials may go over it */
    char *insecure_key;  /* the setting named in a refusal (opts.insecure_key) */
    char *ca_file, *user_agent;
    char *bearer_token; /* static token (opts.bearer_token), NULL = none */
    char *proxy;        /* opts.proxy, NULL = none */
    char *ca_pem;       /* system bundle + opts.extra_ca_files, NULL = none */
    size_t ca_pem_len;

    pthread_mutex_t lock;        /* guards everything below */
    enum proto_auth_scheme auth; /* learned from the first 401 */
    int bearer_refused;          /* the static bearer token got a 401: stop sending it */
    char realm[1024], service[256];
    struct reg_token *tokens;
    struct reg_flight *flights;
    pthread_cond_t flight_done;
    CURL *idle[REG_POOL_MAX];
    int n_idle;
};

/* Request body of a POST/PUT/PATCH (replayable, so retries and redirects can resend it). */
enum reg_body_kind { REG_BODY_NONE = 0, REG_BODY_MEM = 1, REG_BODY_FD = 2 };

struct reg_req {
    const char *method;      /* "GET", "HEAD", "POST", "PUT", "PATCH" or "DELETE" */
    const char *url;         /* first URL; redirects are followed from it */
    const char *auth_origin; /* credentials go only to URLs of this origin (NULL: nowhere) */
    const char *basic_user, *basic_pass;
    const char *bearer;
    int bearer_anon;    /* bearer was issued without credentials: may go over plain http */
    const char *accept; /* Accept header value or NULL */
    long total_timeout_ms;
    /* GET body window in blob coordinates: [start, start+len), len 0 = to the end. */
    uint64_t start, len;
    /* Body sink: a bounded buffer (restarted on retry) or a stream callback (resumed). */
    cf_buf *buf;
    size_t buf_max;
    proto_registry_write_fn fn;
    void *ctx;
    cf_digest_ctx *hash; /* updated with every delivered byte, may be NULL */
    /* Upload body (POST/PUT/PATCH): memory or [body_off, body_off+body_len) of body_fd read
     * with pread. NONE sends an empty body (Content-Length: 0). */
    enum reg_body_kind body_kind;
    const void *body_mem;
    int body_fd;
    uint64_t body_off, body_len;
    const char *content_type;  /* Content-Type header of the body, or NULL */
    const char *content_range; /* Content-Range header value (chunked PATCH), or NULL */
};

struct reg_resp {
    long status;
    char content_type[128];
    char docker_digest[80];
    char content_range[80];
    char www_auth[4096];
    int64_t content_length; /* -1 unknown */
    long retry_after_s;     /* Retry-After (delta-seconds form) of the last answer, -1 none */
    uint64_t delivered;     /* body bytes handed to the sink, over all attempts */
    char location[4096];    /* Location header of the last answer ("" none) */
    int link_next;          /* the last answer's Link header has rel="next" (pagination) */
    char err_body[2048];    /* start of a non-2xx body, NUL-terminated */
    size_t err_len;
};

/* Per-attempt state shared by the curl callbacks of one exchange (registry_http.c). */
struct reg_xfer {
    struct reg_req *q;
    struct reg_resp *s;
    int head_seen;       /* first body byte of this response seen */
    uint64_t stream_pos; /* blob position of the next byte arriving */
    int complete;        /* everything wanted was delivered; we aborted the rest */
    int fail_rc;         /* sink or protocol error: stop, no retry */
    char fail_msg[256];
    uint64_t body_pos; /* upload bytes sent by this attempt */
};
/* The response handling of an exchange, pure functions of the bytes the server sent (curl
 * callbacks; the fuzz target fuzz_registry_response feeds them directly). reg_header_cb takes
 * one header line ("HTTP/..." starts a new response) into x->s; reg_write_cb takes body bytes:
 * an error body's start is kept, a 2xx body is cut to the request's window [q->start,
 * q->start+q->len) (206: its Content-Range must start where asked) and delivered to the sink.
 * Both return what curl expects (n to go on; another value stops the transfer, x->fail_rc
 * says why when it is an error). */
size_t reg_header_cb(char *data, size_t size, size_t nmemb, void *xfer);
size_t reg_write_cb(char *data, size_t size, size_t nmemb, void *xfer);
/* "bytes A-B/T" -> A. Returns 0 or -EBADMSG. */
int reg_content_range_start(const char *cr, uint64_t *start);
/* An upload answer's Location (absolute URL or path) as an absolute URL under base: 0, or
 * -ENAMETOOLONG when it does not fit cap. */
int reg_location_url(const char *base, const char *loc, char *out, size_t cap);

double reg_now(void);
/* "scheme://host:port" (lowercase, default port filled in) of url into out. 0 or -EINVAL. */
int reg_url_origin(const char *url, char *out, size_t cap);
/* Whether url's host is localhost, 127.0.0.0/8 or [::1]. */
int reg_url_is_loopback(const char *url);
/* Whether credentials may be sent to url: 1 for https, and over plain http for a loopback host
 * or, when r was configured for http, r's own host (any port: its token server). 0 otherwise,
 * with err naming the registry, the URL and the setting to change. */
int reg_creds_allowed(const proto_registry *r, const char *url, cf_err *err);
/* Copy of url without query/fragment (they may hold pre-signed secrets), for messages. */
void reg_url_for_msg(const char *url, char *out, size_t cap);

CURL *reg_handle_get(proto_registry *r);
void reg_handle_put(proto_registry *r, CURL *h);

/* One logical HTTP exchange: follows redirects (credentials only to q->auth_origin), retries
 * transport errors, 5xx and 429 with backoff, resumes streamed bodies. Returns 0 when a final
 * answer arrived (s->status set: 2xx with the body delivered, or any 4xx/other status; the
 * caller interprets it), or a negative errno with err set (transport failure after retries,
 * sink error, protocol violation). */
int reg_http_do(proto_registry *r, struct reg_req *q, struct reg_resp *s, cf_err *err);

/* reg_http_do with authentication (registry_client.c): anonymous first, then what the 401
 * challenge asks for; bearer tokens are requested for `scope` (one or more space-separated
 * "repository:NAME:ACTIONS" scopes, each sent as its own scope= parameter). */
int reg_request_scope(proto_registry *r, const char *repo, const char *scope, struct reg_req *q,
                      struct reg_resp *s, cf_err *err);
/* The error for a final non-success answer to `what` in `repo` (404 -ENOENT, 401/403 -EACCES,
 * 416 -ERANGE, else -EPROTO), with the registry's error code in the message. */
int reg_status_error(proto_registry *r, const struct reg_resp *s, const char *what,
                     const char *repo, cf_err *err);
/* Validates repo (and digest when not NULL): 0 or -EINVAL with a message. */
int reg_check_names(proto_registry *r, const char *repo, const char *digest, cf_err *err);

#endif
