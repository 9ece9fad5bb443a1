/* chunkfly-image create: placeholder until its issue lands; fails clearly. */
#include <stdio.h>

#include "image_cmds.h"

int cmd_create(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "chunkfly-image: 'create' is not implemented yet\n");
    return 1;
}
