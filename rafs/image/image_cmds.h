/* Entry points of the chunkfly-image subcommands; argv[0] is the subcommand name.
 * Each returns the process exit code (0 ok, 1 error, 2 inconsistent inputs for merge). */
#ifndef CHUNKFLY_IMAGE_CMDS_H
#define CHUNKFLY_IMAGE_CMDS_H

int cmd_create(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_unpack(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_inspect(int argc, char **argv);

#endif
