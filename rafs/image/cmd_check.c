/* chunkfly-image check: placeholder until its issue lands; fails clearly. */
#include <stdio.h>

#include "image_cmds.h"

int cmd_check(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "chunkfly-image: 'check' is not implemented yet\n");
    return 1;
}
