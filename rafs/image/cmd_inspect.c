/* chunkfly-image inspect: placeholder until its issue lands; fails clearly. */
#include <stdio.h>

#include "image_cmds.h"

int cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "chunkfly-image: 'inspect' is not implemented yet\n");
    return 1;
}
