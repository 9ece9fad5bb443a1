/* Helpers for cmocka unit tests: where the fixtures and binaries are. */
#ifndef CF_TEST_ENV_H
#define CF_TEST_ENV_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Path of a Nydus fixture ("v6/rafs-v6-2.2.boot") under $CHUNKFLY_FIXTURES/nydus, written to
 * buf. Returns 1 when the file exists, else 0. */
static inline int cf_test_fixture(const char *rel, char *buf, size_t len)
{
    const char *root = getenv("CHUNKFLY_FIXTURES");
    if (!root) root = "../shared/fixtures";
    snprintf(buf, len, "%s/nydus/%s", root, rel);
    struct stat st;
    return stat(buf, &st) == 0;
}

/* Exit with 77 (ctest SKIP) and a visible reason when a fixture is absent. */
#define CF_REQUIRE_FIXTURE(rel, buf)                                                               \
    do {                                                                                           \
        if (!cf_test_fixture((rel), (buf), sizeof(buf))) {                                         \
            fprintf(stderr, "SKIP: Nydus fixture %s not found (set CHUNKFLY_FIXTURES)\n", (buf));  \
            exit(77);                                                                              \
        }                                                                                          \
    } while (0)

#endif
