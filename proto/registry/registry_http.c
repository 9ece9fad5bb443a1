/* One registry HTTP exchange over libcurl: redirects (followed here, not by curl, so that the
 * Authorization header never leaves the registry's origin), retries with exponential backoff,
 * resumption of streamed bodies, and tolerance of servers that ignore Range (200 + whole blob)
 * or send a 416 whose Content-Length lies (docker-registry 2.8). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cf/log.h"
#include "registry_internal.h"

double reg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int reg_url_origin(const char *url, char *out, size_t cap)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = -EINVAL;
    if (!u) return -ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) goto out;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) goto out;
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) goto out;
    int n = snprintf(out, cap, "%s://%s:%s", scheme, host, port);
    if (n < 0 || (size_t)n >= cap) goto out;
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

int reg_location_url(const char *base, const char *loc, char *out, size_t cap)
{
    int n;
    if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0)
        n = snprintf(out, cap, "%s", loc);
    else
        n = snprintf(out, cap, "%s%s%s", base, loc[0] == '/' ? "" : "/", loc);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int reg_url_is_loopback(const char *url)
{
    char o[REG_ORIGIN_MAX];
    if (reg_url_origin(url, o, sizeof(o)) < 0) return 0;
    const char *h = strstr(o, "://") + 3;
    return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0 ||
           strncmp(h, "[::1]:", 6) == 0;
}

/* The host of an origin "scheme://host:port" (as reg_url_origin writes it), without the port:
 * [start, *len). */
static const char *origin_host(const char *o, size_t *len)
{
    const char *h = strstr(o, "://");
    h = h ? h + 3 : o;
    const char *colon = strrchr(h, ':');
    *len = colon ? (size_t)(colon - h) : strlen(h);
    return h;
}

int reg_creds_allowed(const proto_registry *r, const char *url, cf_err *err)
{
    char o[REG_ORIGIN_MAX], shown[512];
    if (reg_url_origin(url, o, sizeof(o)) < 0) return 0;
    if (strncmp(o, "http://", 7) != 0 || reg_url_is_loopback(url)) return 1;
    size_t hl, rl;
    const char *h = origin_host(o, &hl), *rh = origin_host(r->origin, &rl);
    if (r->http_configured && hl == rl && strncmp(h, rh, hl) == 0) return 1;
    reg_url_for_msg(url, shown, sizeof(shown));
    cf_err_set(err, -EPERM,
               "registry %s: refusing to send credentials over plain http to %s (unencrypted, "
               "they go only to loopback hosts and to a registry configured as plain http, and "
               "its own host: add %s to %s, or use https)",
               r->host, shown, r->host, r->insecure_key);
    return 0;
}

void reg_url_for_msg(const char *url, char *out, size_t cap)
{
    size_t n = strcspn(url, "?#");
    if (n >= cap) n = cap - 1;
    memcpy(out, url, n);
    out[n] = '\0';
}

CURL *reg_handle_get(proto_registry *r)
{
    CURL *h = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->n_idle > 0) h = r->idle[--r->n_idle];
    pthread_mutex_unlock(&r->lock);
    return h ? h : curl_easy_init();
}

void reg_handle_put(proto_registry *r, CURL *h)
{
    if (!h) return;
    curl_easy_reset(h); /* keeps the connection cache: the next request reuses keep-alive */
    pthread_mutex_lock(&r->lock);
    if (r->n_idle < REG_POOL_MAX) {
        r->idle[r->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    if (h) curl_easy_cleanup(h);
}

static void copy_hdr_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t')) v++, n--;
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) n--;
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

size_t reg_header_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    struct reg_xfer *x = ud;
    size_t n = size * nmemb;
    struct reg_resp *s = x->s;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new response (after 100-continue, or the only one): reset what we learned. */
        const char *sp = memchr(data, ' ', n);
        s->status = 0;
        if (sp && (size_t)(sp - data) + 4 <= n) {
            long code = 0;
            for (int i = 1; i <= 3; i++) {
                char c = sp[i];
                if (c < '0' || c > '9') {
                    code = 0;
                    break;
                }
                code = code * 10 + (c - '0');
            }
            s->status = code;
        }
        s->content_type[0] = s->docker_digest[0] = s->content_range[0] = s->www_auth[0] = '\0';
        s->location[0] = '\0';
        s->link_next = 0;
        s->retry_after_s = -1;
        s->err_len = 0;
        s->err_body[0] = '\0';
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon) return n;
    size_t nl = (size_t)(colon - data);
    const char *v = colon + 1;
    size_t vl = n - nl - 1;
#define IS(name) (nl == sizeof(name) - 1 && strncasecmp(data, name, nl) == 0)
    if (IS("content-type"))
        copy_hdr_value(s->content_type, sizeof(s->content_type), v, vl);
    else if (IS("docker-content-digest"))
        copy_hdr_value(s->docker_digest, sizeof(s->docker_digest), v, vl);
    else if (IS("location"))
        copy_hdr_value(s->location, sizeof(s->location), v, vl);
    else if (IS("link")) {
        /* pagination (catalog, tags): only whether a next page exists matters */
        for (size_t i = 0; i + 10 <= vl; i++)
            if (strncasecmp(v + i, "rel=\"next\"", 10) == 0) s->link_next = 1;
    } else if (IS("content-range"))
        copy_hdr_value(s->content_range, sizeof(s->content_range), v, vl);
    else if (IS("www-authenticate")) {
        /* Several headers = one list of challenges (RFC 7235); the parser picks Bearer. */
        size_t used = strlen(s->www_auth);
        if (used && used + 2 < sizeof(s->www_auth)) {
            memcpy(s->www_auth + used, ", ", 3);
            used += 2;
        }
        if (used + 1 < sizeof(s->www_auth))
            copy_hdr_value(s->www_auth + used, sizeof(s->www_auth) - used, v, vl);
    } else if (IS("retry-after")) {
        char tmp[32];
        copy_hdr_value(tmp, sizeof(tmp), v, vl);
        long ra = 0;
        const char *p = tmp;
        for (; *p >= '0' && *p <= '9' && ra < 100000; p++) ra = ra * 10 + (*p - '0');
        s->retry_after_s = (p != tmp && *p == '\0') ? ra : -1; /* HTTP-date form: ignored */
    }
#undef IS
    return n;
}

static int fail(struct reg_xfer *x, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct reg_xfer *x, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->fail_msg, sizeof(x->fail_msg), fmt, ap);
    va_end(ap);
    x->fail_rc = rc;
    return rc;
}

int reg_content_range_start(const char *cr, uint64_t *start)
{
    if (strncasecmp(cr, "bytes ", 6) != 0) return -EBADMSG;
    const char *p = cr + 6;
    uint64_t v = 0;
    if (*p < '0' || *p > '9') return -EBADMSG;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10) return -EBADMSG;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (*p != '-') return -EBADMSG;
    *start = v;
    return 0;
}

static int deliver(struct reg_xfer *x, const char *p, size_t n)
{
    struct reg_req *q = x->q;
    if (q->buf) {
        if (q->buf->len + n > q->buf_max)
            return fail(x, -EFBIG, "answer larger than %zu bytes", q->buf_max);
        if (cf_buf_append(q->buf, p, n) < 0) return fail(x, -ENOMEM, "out of memory");
    } else if (q->fn) {
        int rc = q->fn(q->ctx, p, n);
        if (rc < 0) {
            char eb[128];
            return fail(x, rc, "write callback failed: %s", strerror_r(-rc, eb, sizeof(eb)));
        }
    }
    if (q->hash) cf_digest_update(q->hash, p, n);
    x->s->delivered += n;
    return 0;
}

size_t reg_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    struct reg_xfer *x = ud;
    struct reg_resp *s = x->s;
    struct reg_req *q = x->q;
    size_t n = size * nmemb;
    if (s->status < 200 || s->status >= 300) {
        /* Error/redirect body: keep its start for the message. A 416 from docker-registry
         * announces the blob size as Content-Length but sends 33 bytes and closes: stop here
         * rather than wait for bytes that never come. */
        size_t room = sizeof(s->err_body) - 1 - s->err_len;
        size_t c = n < room ? n : room;
        memcpy(s->err_body + s->err_len, data, c);
        s->err_len += c;
        s->err_body[s->err_len] = '\0';
        return s->status == 416 ? 0 : n;
    }
    uint64_t want = q->start + s->delivered; /* next blob byte the caller needs */
    if (!x->head_seen) {
        x->head_seen = 1;
        if (s->status == 206) {
            uint64_t cs;
            if (reg_content_range_start(s->content_range, &cs) < 0) {
                fail(x, -EBADMSG, "206 answer with unusable Content-Range \"%s\"",
                     s->content_range);
                return 0;
            }
            if (cs != want) {
                fail(x, -EBADMSG, "asked for bytes from %" PRIu64 ", got Content-Range \"%s\"",
                     want, s->content_range);
                return 0;
            }
            x->stream_pos = cs;
        } else {
            x->stream_pos = 0; /* 200: the whole blob, whatever Range said */
            if (want > 0 || q->len)
                cf_debug("server ignored Range (HTTP 200): skipping %" PRIu64 " bytes, keeping %s",
                         want, q->len ? "the range" : "the rest");
        }
    }
    size_t off = 0;
    if (x->stream_pos < want) {
        uint64_t skip = want - x->stream_pos;
        off = skip < n ? (size_t)skip : n;
        x->stream_pos += off;
    }
    if (off == n) return n;
    size_t chunk = n - off;
    if (q->len) {
        uint64_t end = q->start + q->len;
        uint64_t left = end - want;
        if (left == 0) {
            x->complete = 1; /* range done; the server keeps sending the blob: cut it off */
            return 0;
        }
        if (chunk > left) chunk = (size_t)left;
    }
    if (deliver(x, data + off, chunk) < 0) return 0;
    x->stream_pos += chunk;
    if (off + chunk < n) {
        x->complete = 1;
        return 0;
    }
    return n;
}

/* Upload body: memory or pread from the fd, from the start on every attempt. */
static size_t read_cb(char *buf, size_t size, size_t nmemb, void *ud)
{
    struct reg_xfer *x = ud;
    struct reg_req *q = x->q;
    size_t cap = size * nmemb;
    uint64_t left = q->body_len - x->body_pos;
    size_t n = left < cap ? (size_t)left : cap;
    if (n == 0) return 0;
    if (q->body_kind == REG_BODY_MEM) {
        memcpy(buf, (const uint8_t *)q->body_mem + x->body_pos, n);
    } else {
        ssize_t got;
        do got = pread(q->body_fd, buf, n, (off_t)(q->body_off + x->body_pos));
        while (got < 0 && errno == EINTR);
        if (got <= 0) {
            char eb[128];
            fail(x, got < 0 ? -errno : -EIO, "reading the upload body at offset %" PRIu64 ": %s",
                 q->body_off + x->body_pos,
                 got < 0 ? strerror_r(errno, eb, sizeof(eb)) : "file shorter than announced");
            return CURL_READFUNC_ABORT;
        }
        n = (size_t)got;
    }
    x->body_pos += n;
    return n;
}

static int retryable_curl(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static int curl_errno(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
        return -EHOSTUNREACH;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EPROTO;
    default:
        return -EIO;
    }
}

static int setup(proto_registry *r, CURL *h, struct reg_req *q, const char *url, int with_auth,
                 struct curl_slist **hdrs, struct reg_xfer *x, char *range, size_t range_cap,
                 char *errbuf)
{
    struct reg_resp *s = x->s;
    curl_easy_setopt(h, CURLOPT_URL, url);
    /* Loopback targets never go through an http_proxy from the environment; an explicit
     * proxy carries every request. */
    if (r->proxy)
        curl_easy_setopt(h, CURLOPT_PROXY, r->proxy);
    else if (reg_url_is_loopback(url))
        curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, reg_header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, reg_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, r->low_speed_bytes);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (r->stall_timeout_ms + 999) / 1000);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, q->total_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, r->user_agent);
    if (r->insecure_tls) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (r->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file);
    if (r->ca_pem) {
        struct curl_blob blob = {r->ca_pem, r->ca_pem_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (strcmp(q->method, "HEAD") == 0) curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    int upload = strcmp(q->method, "POST") == 0 || strcmp(q->method, "PUT") == 0 ||
                 strcmp(q->method, "PATCH") == 0;
    if (upload) {
        /* UPLOAD gives a streamed body with a known Content-Length; CUSTOMREQUEST names the
         * method (UPLOAD alone means PUT). */
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, x);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)(q->body_kind == REG_BODY_NONE ? 0 : q->body_len));
    } else if (strcmp(q->method, "DELETE") == 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    /* Range in blob coordinates, resuming after what was already delivered. */
    if (strcmp(q->method, "GET") == 0 && !q->buf) {
        uint64_t from = q->start + s->delivered;
        if (q->len) {
            snprintf(range, range_cap, "%" PRIu64 "-%" PRIu64, from, q->start + q->len - 1);
            curl_easy_setopt(h, CURLOPT_RANGE, range);
        } else if (from > 0) {
            snprintf(range, range_cap, "%" PRIu64 "-", from);
            curl_easy_setopt(h, CURLOPT_RANGE, range);
        }
    }
    struct curl_slist *l = NULL;
    char line[PROTO_TOKEN_MAX + 64];
    if (q->accept) {
        snprintf(line, sizeof(line), "Accept: %s", q->accept);
        if (!(l = curl_slist_append(l, line))) return -ENOMEM;
    }
    if (upload) {
        struct curl_slist *n;
        /* No "Expect: 100-continue" round trip; registries answer at once anyway. */
        if (!(n = curl_slist_append(l, "Expect:"))) goto oom;
        l = n;
        if (q->content_type) {
            snprintf(line, sizeof(line), "Content-Type: %s", q->content_type);
            if (!(n = curl_slist_append(l, line))) goto oom;
            l = n;
        }
        if (q->content_range) {
            snprintf(line, sizeof(line), "Content-Range: %s", q->content_range);
            if (!(n = curl_slist_append(l, line))) goto oom;
            l = n;
        }
    }
    if (with_auth && q->bearer) {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", q->bearer);
        struct curl_slist *n = curl_slist_append(l, line);
        explicit_bzero(line, sizeof(line));
        if (!n) {
            curl_slist_free_all(l);
            return -ENOMEM;
        }
        l = n;
    } else if (with_auth && q->basic_user) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, q->basic_user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, q->basic_pass ? q->basic_pass : "");
    }
    *hdrs = l;
    if (l) curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
    return 0;
oom:
    curl_slist_free_all(l);
    return -ENOMEM;
}

static int is_redirect(long st)
{
    return st == 301 || st == 302 || st == 303 || st == 307 || st == 308;
}

int reg_http_do(proto_registry *r, struct reg_req *q, struct reg_resp *s, cf_err *err)
{
    char url[8192], shown[512], errbuf[CURL_ERROR_SIZE];
    char range[64];
    const char *first_url = q->url;
    int attempt = 0;
    double t0 = reg_now(), tstart = t0;
    s->delivered = 0;
    s->content_length = -1;
    CURL *h = reg_handle_get(r);
    if (!h) return cf_err_set(err, -ENOMEM, "registry %s: cannot create a curl handle", r->host);
    int rc;
    for (;;) { /* attempts */
        if (strlen(first_url) >= sizeof(url)) {
            rc = cf_err_set(err, -EINVAL, "registry %s: URL too long", r->host);
            goto out;
        }
        strcpy(url, first_url);
        int redirects = 0;
        CURLcode cc;
        struct reg_xfer x;
        double ta = reg_now();
        uint64_t delivered_before = s->delivered;
        if (q->buf) { /* buffered answers restart from scratch */
            cf_buf_reset(q->buf);
            s->delivered = 0;
            delivered_before = 0;
        }
        for (;;) { /* redirects */
            char origin[REG_ORIGIN_MAX];
            int with_auth = q->auth_origin && reg_url_origin(url, origin, sizeof(origin)) == 0 &&
                            strcmp(origin, q->auth_origin) == 0;
            /* stored credentials never go over plain http, unless loopback or configured */
            if (with_auth && (q->basic_user || (q->bearer && !q->bearer_anon)) &&
                !reg_creds_allowed(r, url, err)) {
                rc = -EPERM;
                goto out;
            }
            struct curl_slist *hdrs = NULL;
            memset(&x, 0, sizeof(x));
            x.q = q;
            x.s = s;
            s->status = 0;
            errbuf[0] = '\0';
            curl_easy_reset(h);
            range[0] = '\0';
            rc = setup(r, h, q, url, with_auth, &hdrs, &x, range, sizeof(range), errbuf);
            if (rc < 0) {
                cf_err_set(err, rc, "registry %s: out of memory", r->host);
                goto out;
            }
            reg_url_for_msg(url, shown, sizeof(shown));
            cf_debug("registry %s: %s %s%s%s%s", r->host, q->method, shown,
                     with_auth ? " (with credentials)" : "", range[0] ? " range " : "",
                     range[0] ? range : "");
            cc = curl_easy_perform(h);
            curl_slist_free_all(hdrs);
            if (x.fail_rc) {
                rc = cf_err_set(err, x.fail_rc, "registry %s: %s %s: %s", r->host, q->method, shown,
                                x.fail_msg);
                goto out;
            }
            if (s->status == 0) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &s->status);
            if (!is_redirect(s->status)) break;
            char *loc = NULL;
            curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc);
            if (!loc || !loc[0]) break;
            if (++redirects > REG_REDIRECTS_MAX) {
                rc = cf_err_set(err, -EPROTO, "registry %s: %s %s: more than %d redirects", r->host,
                                q->method, shown, REG_REDIRECTS_MAX);
                goto out;
            }
            if (strlen(loc) >= sizeof(url)) {
                rc = cf_err_set(err, -EPROTO, "registry %s: redirect URL too long", r->host);
                goto out;
            }
            memmove(url, loc, strlen(loc) + 1);
        }
        long st = s->status;
        int ok = (cc == CURLE_OK || (cc == CURLE_WRITE_ERROR && x.complete));
        if (strcmp(q->method, "HEAD") == 0 && ok) {
            curl_off_t cl = -1;
            curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
            s->content_length = cl;
        }
        /* A final non-2xx status is the answer even if its body broke off (416 quirk). */
        if (st >= 300 && st != 429 && st < 500 && !is_redirect(st)) {
            rc = 0;
            goto out;
        }
        if (ok && st >= 200 && st < 300) {
            rc = 0;
            goto out;
        }
        if (ok && is_redirect(st)) {
            rc = cf_err_set(err, -EPROTO, "registry %s: %s %s: HTTP %ld without Location", r->host,
                            q->method, shown, st);
            goto out;
        }
        /* Retry? transport errors that may pass, 5xx, 429. */
        int retry = (!ok && retryable_curl(cc)) || st >= 500 || st == 429;
        if (s->delivered > delivered_before) t0 = reg_now(); /* progress renews the budget */
        double now = reg_now();
        long backoff = r->retry_base_ms << (attempt < 10 ? attempt : 10);
        if (backoff > 2000) backoff = 2000;
        /* A server asking for a pause (429/503 Retry-After) gets it, within the budget. */
        if (ok && s->retry_after_s > 0 && s->retry_after_s * 1000 > backoff)
            backoff = s->retry_after_s * 1000;
        double cost = cc == CURLE_OPERATION_TIMEDOUT ? now - ta : 0; /* a retry may take as long */
        char what[CURL_ERROR_SIZE + 256];
        long os_errno = 0;
        char eb[128];
        if (!ok) {
            curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
            snprintf(what, sizeof(what), "%s%s%s", errbuf[0] ? errbuf : curl_easy_strerror(cc),
                     os_errno ? ": " : "",
                     os_errno ? strerror_r((int)os_errno, eb, sizeof(eb)) : "");
        } else
            snprintf(what, sizeof(what), "HTTP %ld", st);
        if (retry && attempt < r->max_retries &&
            (now - t0) * 1000 + (double)backoff + cost * 1000 <= (double)r->retry_budget_ms) {
            attempt++;
            cf_info("registry %s: %s %s: %s; retry %d/%d in %ld ms", r->host, q->method, shown,
                    what, attempt, r->max_retries, backoff);
            struct timespec ts = {backoff / 1000, (backoff % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
            }
            continue;
        }
        int code = ok ? (st == 429 || st >= 500 ? -EAGAIN : -EPROTO) : curl_errno(cc);
        if (code == -EPROTO && !ok) {
            size_t wl = strlen(what);
            snprintf(what + wl, sizeof(what) - wl,
                     " (TLS: check the registry certificate or the CA file; a plain-http registry "
                     "needs the http scheme)");
        }
        if (!ok && cc == CURLE_COULDNT_CONNECT && os_errno > 0) code = -(int)os_errno;
        rc =
            cf_err_set(err, code, "registry %s: %s %s: %s (%d attempt%s in %.1f s)", r->host,
                       q->method, shown, what, attempt + 1, attempt ? "s" : "", reg_now() - tstart);
        goto out;
    }
out:
    reg_handle_put(r, h);
    return rc;
}

int proto_registry_error_transient(int rc)
{
    return rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -EHOSTUNREACH ||
           rc == -EPIPE || rc == -EIO || rc == -EAGAIN;
}
