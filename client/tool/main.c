/* chunkfly: the user command line of a Chunkfly node (docs/cli.md). One file per subcommand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/log.h"
#include "cli.h"
#include "client/local_api_client.h"

static const char usage[] =
    "usage: chunkfly COMMAND [options]\n"
    "\n"
    "Talks to the node's chunkfly-peer daemon over its local API socket.\n"
    "\n"
    "commands:\n"
    "  get REGISTRY/REPO@sha256:DIGEST -o FILE   download a blob through the peer mesh\n"
    "  status                                    the peer's cache in a table\n"
    "  pin sha256:DIGEST / unpin sha256:DIGEST   keep a cached blob from eviction / release it\n"
    "  init containerd --registry HOST...        send containerd's pulls through the peer's\n"
    "                                            registry mirror (writes hosts.toml files)\n"
    "  convert SOURCE TARGET                     convert an OCI image into a Nydus image,\n"
    "                                            registry to registry (no daemon needed)\n"
    "  check SOURCE TARGET                       check a converted image against its source\n"
    "\n"
    "Run `chunkfly COMMAND --help` for a command's options. The socket defaults to\n"
    "$CHUNKFLY_PEER_SOCKET, else " CLIENT_DEFAULT_SOCKET " (--peer SOCKET overrides).\n"
    "  --help, --version\n";

const char *cli_default_socket(void)
{
    const char *s = getenv("CHUNKFLY_PEER_SOCKET");
    return s && *s ? s : CLIENT_DEFAULT_SOCKET;
}

int cli_connect(const char *socket_path, int idle_timeout_ms, client_local **out)
{
    client_local_opts co = {.idle_timeout_ms = idle_timeout_ms};
    return cli_connect_opts(socket_path, &co, out);
}

int cli_connect_opts(const char *socket_path, const client_local_opts *co, client_local **out)
{
    cf_err err = {0};
    int code = client_local_connect(socket_path, co, out, &err);
    if (!code) return 0;
    fprintf(stderr, "chunkfly: %s\n", cf_err_str(&err, code));
    if (code == -ENOENT || code == -ECONNREFUSED)
        fprintf(stderr,
                "chunkfly: is the peer daemon running? Start it with\n"
                "  chunkfly-peer --api-socket %s --cache-dir DIR --listen IP:PORT "
                "--scheduler HOST:PORT\n"
                "or point chunkfly at its socket with --peer SOCKET.\n",
                socket_path);
    else if (code == -EACCES)
        fprintf(stderr, "chunkfly: no permission to use %s (run as the daemon's user or root)\n",
                socket_path);
    return code;
}

int main(int argc, char **argv)
{
    cf_log_set_ident("chunkfly");
    cf_log_set_level(CF_LOG_WARN);
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("chunkfly %s\n", CHUNKFLY_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "get")) return cmd_get(argc - 1, argv + 1);
    if (!strcmp(cmd, "status")) return cmd_status(argc - 1, argv + 1);
    if (!strcmp(cmd, "pin")) return cmd_pin(argc - 1, argv + 1, 1);
    if (!strcmp(cmd, "unpin")) return cmd_pin(argc - 1, argv + 1, 0);
    if (!strcmp(cmd, "init")) return cmd_init(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 1, argv + 1);
    if (!strcmp(cmd, "check")) return cmd_check(argc - 1, argv + 1);
    fprintf(stderr,
            "chunkfly: unknown command '%s' (commands: get, status, pin, unpin, init, convert, "
            "check)\n",
            cmd);
    return CLI_EXIT_USAGE;
}
