/* Test tool: mount(2) directly, because util-linux `mount` cannot mount a regular-file EROFS
 * image with a regular-file `device=` (it loops the primary; see test-environment.md §6).
 * Usage: rawmount SOURCE TARGET FSTYPE [DATA]   (read-only)
 *        rawmount -u TARGET                      (lazy unmount) */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "-u") == 0) {
        if (umount2(argv[2], MNT_DETACH) != 0) {
            fprintf(stderr, "rawmount: umount %s: %s\n", argv[2], strerror(errno));
            return 1;
        }
        return 0;
    }
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: rawmount SOURCE TARGET FSTYPE [DATA] | rawmount -u TARGET\n");
        return 2;
    }
    if (mount(argv[1], argv[2], argv[3], MS_RDONLY, argc == 5 ? argv[4] : NULL) != 0) {
        fprintf(stderr, "rawmount: mount %s on %s (%s, %s): %s\n", argv[1], argv[2], argv[3],
                argc == 5 ? argv[4] : "", strerror(errno));
        return errno == ENODEV || errno == EPERM ? 77 : 1;
    }
    return 0;
}
