/* make_variant IN OUT KIND: writes a hand-patched copy of v6/rafs-v6-2.2.boot (see
 * rafs_variants.h); KIND = symlink | whiteout | hardlink | xattr | xattr-acl | loop | bad-dot.
 * Used by integration tests to compare our reader with the kernel on more inode types. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rafs_variants.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: make_variant IN OUT symlink|whiteout|hardlink|xattr|xattr-acl|"
                        "fifo|socket|compact|loop|bad-dot\n");
        return 2;
    }
    static uint8_t b[RV_SIZE + 1];
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    size_t n = fread(b, 1, sizeof(b), f);
    fclose(f);
    const char *k = argv[3];
    int rc = !strcmp(k, "symlink")     ? rv_symlink(b, n)
             : !strcmp(k, "whiteout")  ? rv_whiteout(b, n)
             : !strcmp(k, "hardlink")  ? rv_hardlink(b, n)
             : !strcmp(k, "xattr")     ? rv_xattr(b, n, 0)
             : !strcmp(k, "xattr-acl") ? rv_xattr(b, n, 1)
             : !strcmp(k, "fifo")      ? rv_special(b, n, 'p')
             : !strcmp(k, "socket")    ? rv_special(b, n, 's')
             : !strcmp(k, "compact")   ? rv_compact(b, n)
             : !strcmp(k, "loop")      ? rv_loop(b, n)
             : !strcmp(k, "bad-dot")   ? rv_bad_dot(b, n)
                                       : -2;
    if (rc) {
        fprintf(stderr, "make_variant: %s\n",
                rc == -2 ? "unknown kind" : "input is not the fixture");
        return 1;
    }
    f = fopen(argv[2], "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f)) {
        perror(argv[2]);
        return 1;
    }
    return 0;
}
