/* Shared bits of the `chunkfly` subcommands (one file per subcommand, docs/cli.md). */
#ifndef CHUNKFLY_CLI_H
#define CHUNKFLY_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "cf/error.h"
#include "client/local_api_client.h"

/* Exit codes: 0 ok, 1 failure, 2 usage error. */
#define CLI_EXIT_FAIL  1
#define CLI_EXIT_USAGE 2

int cmd_get(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_pin(int argc, char **argv, int pin);
/* `chunkfly init TARGET`: only containerd (cmd_init_containerd.c). */
int cmd_init(int argc, char **argv);
int cmd_init_containerd(int argc, char **argv);
/* `chunkfly convert SOURCE TARGET` (cmd_convert.c, docs/convert.md) */
int cmd_convert(int argc, char **argv);
/* `chunkfly check SOURCE TARGET` (cmd_check.c) */
int cmd_check(int argc, char **argv);

/* Default socket: $CHUNKFLY_PEER_SOCKET, else /run/chunkfly/peer.sock. */
const char *cli_default_socket(void);
/* Connects to the peer daemon's local API (client_local_connect with idle_timeout_ms); on
 * failure prints the error with a hint on how to start the daemon and returns it (negative). */
int cli_connect(const char *socket_path, int idle_timeout_ms, client_local **out);
/* Same with all of the connection's options. */
int cli_connect_opts(const char *socket_path, const client_local_opts *co, client_local **out);
/* "12.3 MiB" */
void cli_fmt_bytes(uint64_t n, char *out, size_t size);

/* Progress display on stderr: a redrawn bar on a terminal, a line every few seconds otherwise,
 * nothing when quiet. total 0 = unknown. */
typedef struct cli_progress {
    int mode; /* 0 quiet, 1 lines, 2 bar */
    uint64_t total;
    uint64_t done;
    double start, last_draw;
    int drawn;
} cli_progress;

void cli_progress_init(cli_progress *p, int quiet, uint64_t total);
void cli_progress_update(cli_progress *p, uint64_t done);
/* Clears the bar (ends the line). */
void cli_progress_end(cli_progress *p);
double cli_now(void);

#endif
