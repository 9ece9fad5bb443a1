/* chunkfly status: the peer daemon's cache (local API LOCAL_LIST) as a table, and with --http
 * its tasks and parents (GET /status) and transfer counters (GET /metrics). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cf/buf.h"
#include "cli.h"
#include "client/local_api_client.h"

static const char usage[] =
    "usage: chunkfly status [options]\n"
    "\n"
    "Shows what the node's peer daemon caches: every blob, its size, pieces held, pin state.\n"
    "With --http also its download tasks and their parents (GET /status) and its transfer\n"
    "counters (GET /metrics, lines starting with chunkfly_).\n"
    "\n"
    "  --peer SOCKET      the daemon's local API socket\n"
    "                     (default $CHUNKFLY_PEER_SOCKET, else " CLIENT_DEFAULT_SOCKET ")\n"
    "  --http HOST:PORT   the daemon's HTTP endpoint (its --http flag)\n"
    "  --raw              for scripts: one line per blob, tab-separated: digest, length,\n"
    "                     piece size, pieces held, piece count, complete (0/1), pinned (0/1)\n"
    "  -h, --help\n";

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
    cf_buf *b = ud;
    if (b->len + sz * n > (8u << 20)) return 0; /* cap: a status page is small */
    return cf_buf_append(b, p, sz * n) == 0 ? sz * n : 0;
}

static int http_get(const char *hostport, const char *path, cf_buf *out)
{
    char url[512];
    snprintf(url, sizeof(url), "http://%s%s", hostport, path);
    CURL *h = curl_easy_init();
    if (!h) return -1;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "chunkfly status: GET %s: %s\n", url, curl_easy_strerror(rc));
        return -1;
    }
    if (code != 200) {
        fprintf(stderr, "chunkfly status: GET %s: HTTP %ld\n", url, code);
        return -1;
    }
    return 0;
}

static const char *jstr(json_t *o, const char *k1, const char *k2)
{
    json_t *v = json_object_get(o, k1);
    if (!json_is_string(v) && k2) v = json_object_get(o, k2);
    return json_is_string(v) ? json_string_value(v) : "-";
}

/* Tasks and parents from the daemon's /status JSON ({"tasks":[{"id"|"task", "state",
 * "parents":[{"id"|"host", "addr"}...]}...]}); unknown fields are ignored. */
static void print_tasks(const char *hostport)
{
    cf_buf b = {0};
    if (http_get(hostport, "/status", &b) != 0) return;
    json_error_t je;
    json_t *root = json_loadb((const char *)b.data, b.len, 0, &je);
    cf_buf_free(&b);
    json_t *tasks = root ? json_object_get(root, "tasks") : NULL;
    if (!json_is_array(tasks)) {
        fprintf(stderr, "chunkfly status: /status of %s is not JSON with a \"tasks\" array\n",
                hostport);
        json_decref(root);
        return;
    }
    printf("\ntasks: %zu\n", json_array_size(tasks));
    if (json_array_size(tasks)) printf("%-20s %-12s %s\n", "BLOB", "STATE", "PARENTS");
    size_t i;
    json_t *t;
    json_array_foreach(tasks, i, t)
    {
        const char *id = jstr(t, "id", "task");
        char shortid[20];
        snprintf(shortid, sizeof(shortid), "%.19s", id);
        printf("%-20s %-12s ", shortid, jstr(t, "state", NULL));
        json_t *ps = json_object_get(t, "parents");
        size_t j;
        json_t *p;
        if (!json_is_array(ps) || json_array_size(ps) == 0) printf("-");
        json_array_foreach(ps, j, p)
        {
            if (json_is_string(p))
                printf("%s%s", j ? ", " : "", json_string_value(p));
            else
                printf("%s%s (%s)", j ? ", " : "", jstr(p, "id", "host"), jstr(p, "addr", "a"));
        }
        printf("\n");
    }
    json_decref(root);
}

static void print_metrics(const char *hostport)
{
    cf_buf b = {0};
    if (http_get(hostport, "/metrics", &b) != 0) return;
    printf("\nmetrics (%s/metrics):\n", hostport);
    char *save = NULL;
    cf_buf_append(&b, "", 1);
    for (char *line = strtok_r((char *)b.data, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        if (!strncmp(line, "chunkfly_", 9)) printf("  %s\n", line);
    cf_buf_free(&b);
}

int cmd_status(int argc, char **argv)
{
    const char *sock = cli_default_socket(), *http = NULL;
    int raw = 0;
    static const struct option opts[] = {{"peer", required_argument, 0, 'p'},
                                         {"http", required_argument, 0, 'H'},
                                         {"raw", no_argument, 0, 'r'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            sock = optarg;
            break;
        case 'H':
            http = optarg;
            break;
        case 'r':
            raw = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "chunkfly status: unexpected argument '%s'\n\n%s", argv[optind], usage);
        return CLI_EXIT_USAGE;
    }
    cf_err err = {0};
    client_local *c;
    client_local_opts co = {.idle_timeout_ms = 10000};
    int r = client_local_connect(sock, &co, &c, &err);
    if (r) {
        cli_connect_error(sock, r, &err);
        return CLI_EXIT_FAIL;
    }
    client_entry *v;
    size_t n;
    r = client_local_list(c, &v, &n, &err);
    client_local_close(c);
    if (r) {
        fprintf(stderr, "chunkfly status: listing the cache of %s: %s\n", sock,
                cf_err_str(&err, r));
        return CLI_EXIT_FAIL;
    }
    if (raw) {
        for (size_t i = 0; i < n; i++)
            printf("%s\t%llu\t%u\t%u\t%u\t%d\t%d\n", v[i].task_id,
                   (unsigned long long)v[i].content_length, v[i].piece_size, v[i].pieces_have,
                   v[i].piece_count, v[i].complete, v[i].pinned);
        free(v);
        return 0;
    }
    uint64_t held = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        total += v[i].content_length;
        uint64_t h = (uint64_t)v[i].pieces_have * v[i].piece_size;
        held += h > v[i].content_length ? v[i].content_length : h;
    }
    char hb[32], tb[32];
    cli_fmt_bytes(held, hb, sizeof(hb));
    cli_fmt_bytes(total, tb, sizeof(tb));
    printf("peer daemon %s\ncache: %zu blob%s, %s held of %s\n", sock, n, n == 1 ? "" : "s", hb,
           tb);
    if (n) printf("%-71s %10s %9s %15s  %s\n", "BLOB", "SIZE", "PIECE", "PIECES", "STATE");
    for (size_t i = 0; i < n; i++) {
        char size[32], ps[32], pieces[32];
        cli_fmt_bytes(v[i].content_length, size, sizeof(size));
        cli_fmt_bytes(v[i].piece_size, ps, sizeof(ps));
        snprintf(pieces, sizeof(pieces), "%u/%u %3u%%", v[i].pieces_have, v[i].piece_count,
                 v[i].piece_count ? (unsigned)((uint64_t)v[i].pieces_have * 100 / v[i].piece_count)
                                  : 0);
        printf("%-71s %10s %9s %15s  %s%s\n", v[i].task_id, size, ps, pieces,
               v[i].complete ? "complete" : "partial", v[i].pinned ? ", pinned" : "");
    }
    free(v);
    if (!http)
        printf(
            "(download tasks, parents and counters: add --http HOST:PORT, the daemon's --http)\n");
    if (http) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        print_tasks(http);
        print_metrics(http);
        curl_global_cleanup();
    }
    return 0;
}
