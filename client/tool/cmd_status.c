/* chunkfly status: the peer daemon's cache, download tasks and their parents (local API
 * LOCAL_LIST) as tables, and with --http its transfer counters (GET /metrics). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cf/buf.h"
#include "cli.h"
#include "client/local_api_client.h"

static const char usage[] =
    "usage: chunkfly status [options]\n"
    "\n"
    "Shows what the node's peer daemon caches (every blob, its size, pieces held, pin state)\n"
    "and its download tasks: state, progress, bytes from parents and from the origin, and\n"
    "the parents with their addresses (banned ones marked). All over the local API socket.\n"
    "With --http also its transfer counters (GET /metrics, lines starting with chunkfly_).\n"
    "\n"
    "  --peer SOCKET      the daemon's local API socket\n"
    "                     (default $CHUNKFLY_PEER_SOCKET, else " CLIENT_DEFAULT_SOCKET ")\n"
    "  --http HOST:PORT   the daemon's HTTP endpoint (its --http flag)\n"
    "  --raw              for scripts: one line per blob, tab-separated: digest, length,\n"
    "                     piece size, pieces held, piece count, complete (0/1), pinned (0/1)\n"
    "  --raw-tasks        for scripts: one line per task parent (a task without parents has\n"
    "                     one line with '-' parent fields), tab-separated: digest, state,\n"
    "                     pieces held, piece count, bytes from parents, bytes from origin,\n"
    "                     parent host id, parent address, parent state (ok/down/banned)\n"
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

static const char *parent_state(const client_parent *p)
{
    return p->banned ? "banned" : p->down ? "down" : "ok";
}

static void print_tasks(const client_task *t, size_t n)
{
    printf("\ntasks: %zu\n", n);
    if (n)
        printf("%-23s %-11s %16s %12s %12s  %s\n", "BLOB", "STATE", "PIECES", "FROM PARENTS",
               "FROM ORIGIN", "PARENT (ADDRESS, PIECES SERVED)");
    for (size_t i = 0; i < n; i++) {
        char shortid[24], pieces[32], fp[32], fo[32];
        snprintf(shortid, sizeof(shortid), "%.23s", t[i].task_id);
        if (t[i].piece_count)
            snprintf(pieces, sizeof(pieces), "%u/%u %3u%%", t[i].pieces_have, t[i].piece_count,
                     (unsigned)((uint64_t)t[i].pieces_have * 100 / t[i].piece_count));
        else
            snprintf(pieces, sizeof(pieces), "-");
        cli_fmt_bytes(t[i].from_parents, fp, sizeof(fp));
        cli_fmt_bytes(t[i].from_origin, fo, sizeof(fo));
        printf("%-23s %-11s %16s %12s %12s  ", shortid, t[i].state, pieces, fp, fo);
        if (!t[i].n_parents) printf("%s", t[i].origin_mode ? "- (origin)" : "-");
        for (size_t k = 0; k < t[i].n_parents; k++) {
            const client_parent *p = &t[i].parents[k];
            if (k) printf("\n%-23s %-11s %16s %12s %12s  ", "", "", "", "", "");
            printf("%s (%s, %u)%s%s", p->host_id, p->addr, p->served, p->banned ? " BANNED" : "",
                   p->down ? " down" : "");
        }
        printf("\n");
        if (t[i].error[0]) printf("%-23s error: %s\n", "", t[i].error);
    }
}

static void print_tasks_raw(const client_task *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *pre = t[i].task_id;
        char line[512];
        snprintf(line, sizeof(line), "%s\t%s\t%u\t%u\t%llu\t%llu", pre, t[i].state,
                 t[i].pieces_have, t[i].piece_count, (unsigned long long)t[i].from_parents,
                 (unsigned long long)t[i].from_origin);
        if (!t[i].n_parents) printf("%s\t-\t-\t-\n", line);
        for (size_t k = 0; k < t[i].n_parents; k++)
            printf("%s\t%s\t%s\t%s\n", line, t[i].parents[k].host_id, t[i].parents[k].addr,
                   parent_state(&t[i].parents[k]));
    }
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
    int raw = 0, raw_tasks = 0;
    static const struct option opts[] = {
        {"peer", required_argument, 0, 'p'}, {"http", required_argument, 0, 'H'},
        {"raw", no_argument, 0, 'r'},        {"raw-tasks", no_argument, 0, 'T'},
        {"help", no_argument, 0, 'h'},       {0, 0, 0, 0}};
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
        case 'T':
            raw_tasks = 1;
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
    int r = cli_connect(sock, 10000, &c);
    if (r) return CLI_EXIT_FAIL;
    client_entry *v;
    client_task *tasks;
    size_t n, n_tasks;
    r = client_local_status(c, &v, &n, &tasks, &n_tasks, &err);
    client_local_close(c);
    if (r) {
        fprintf(stderr, "chunkfly status: listing the cache of %s: %s\n", sock,
                cf_err_str(&err, r));
        return CLI_EXIT_FAIL;
    }
    if (raw || raw_tasks) {
        for (size_t i = 0; raw && i < n; i++)
            printf("%s\t%llu\t%u\t%u\t%u\t%d\t%d\n", v[i].task_id,
                   (unsigned long long)v[i].content_length, v[i].piece_size, v[i].pieces_have,
                   v[i].piece_count, v[i].complete, v[i].pinned);
        if (raw_tasks) print_tasks_raw(tasks, n_tasks);
        free(v);
        free(tasks);
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
    print_tasks(tasks, n_tasks);
    free(tasks);
    if (http) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        print_metrics(http);
        curl_global_cleanup();
    }
    return 0;
}
