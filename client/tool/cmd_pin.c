/* chunkfly pin / unpin: keep a cached blob from eviction, or release it again. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "client/local_api_client.h"

static const char usage_fmt[] =
    "usage: chunkfly %s [--peer SOCKET] sha256:DIGEST\n"
    "\n"
    "%s\n"
    "\n"
    "  --peer SOCKET   the daemon's local API socket\n"
    "                  (default $CHUNKFLY_PEER_SOCKET, else " CLIENT_DEFAULT_SOCKET ")\n"
    "  -h, --help\n";

int cmd_pin(int argc, char **argv, int pin)
{
    const char *name = pin ? "pin" : "unpin";
    const char *what =
        pin ? "Pins a blob in the peer daemon's cache: quota eviction never removes it."
            : "Unpins a blob: it becomes evictable again (least recently used first).";
    const char *sock = cli_default_socket();
    static const struct option opts[] = {
        {"peer", required_argument, 0, 'p'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            sock = optarg;
            break;
        case 'h':
            printf(usage_fmt, name, what);
            return 0;
        default:
            fprintf(stderr, usage_fmt, name, what);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, usage_fmt, name, what);
        return CLI_EXIT_USAGE;
    }
    cf_err err = {0};
    client_local *c;
    int r = cli_connect(sock, 10000, &c);
    if (r) return CLI_EXIT_FAIL;
    r = pin ? client_local_pin(c, argv[optind], &err) : client_local_unpin(c, argv[optind], &err);
    client_local_close(c);
    if (r) {
        fprintf(stderr, "chunkfly %s %s: %s\n", name, argv[optind], cf_err_str(&err, r));
        return r == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
    }
    return 0;
}
