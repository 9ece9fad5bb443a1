/* Test tool: prints "<hex>" of a file's BLAKE3 or SHA-256, streamed in odd-sized reads, so
 * scripts can compare our digests with b3sum/sha256sum. Usage: digest_file blake3|sha256 FILE */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cf/digest.h"
#include "cf/hex.h"

int main(int argc, char **argv)
{
    enum cf_digest_algo algo;
    if (argc != 3 || cf_digest_algo_parse(argv[1], &algo)) {
        fprintf(stderr, "usage: digest_file blake3|sha256 FILE\n");
        return 2;
    }
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) {
        perror(argv[2]);
        return 1;
    }
    cf_digest_ctx ctx;
    cf_digest_init(&ctx, algo);
    static unsigned char buf[70001];
    size_t step = 1;
    for (;;) {
        ssize_t n = read(fd, buf, step);
        if (n < 0) {
            perror("read");
            cf_digest_abort(&ctx);
            return 1;
        }
        if (n == 0) break;
        cf_digest_update(&ctx, buf, (size_t)n);
        step = step * 3 % sizeof(buf) + 1;
    }
    close(fd);
    uint8_t d[32];
    char h[65];
    cf_digest_final(&ctx, d);
    cf_hex_encode(d, 32, h);
    printf("%s\n", h);
    return 0;
}
