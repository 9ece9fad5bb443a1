/* chunkfly-image merge: placeholder until its issue lands; fails clearly. */
#include <stdio.h>

#include "image_cmds.h"

int cmd_merge(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "chunkfly-image: 'merge' is not implemented yet\n");
    return 1;
}
