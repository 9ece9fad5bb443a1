/* chunkfly-image unpack: placeholder until its issue lands; fails clearly. */
#include <stdio.h>

#include "image_cmds.h"

int cmd_unpack(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "chunkfly-image: 'unpack' is not implemented yet\n");
    return 1;
}
