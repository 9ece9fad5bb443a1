/* libFuzzer: open a bootstrap from bytes, walk the whole tree and read every inode's xattrs,
 * symlink target and chunk map, as a mount would. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rafs/reader.h"

static int visit(const struct rafs_walk_entry *e, void *arg)
{
    const rafs_image *img = arg;
    char buf[RAFS_PATH_MAX];
    size_t len;
    uint64_t nid;
    rafs_listxattr(img, e->nid, buf, sizeof(buf), &len, NULL);
    rafs_getxattr(img, e->nid, "user.foo", buf, sizeof(buf), &len, NULL);
    if ((e->st->mode & S_IFMT) == S_IFLNK) rafs_readlink(img, e->nid, buf, sizeof(buf), &len, NULL);
    if ((e->st->mode & S_IFMT) == S_IFREG) {
        struct rafs_chunk_ref *refs;
        size_t n;
        if (rafs_file_map(img, e->nid, 0, UINT64_MAX, &refs, &n, NULL) == 0) free(refs);
    }
    rafs_lookup_child(img, e->parent_nid, e->name, strlen(e->name), &nid, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rafs_image *img;
    struct rafs_v5_info v5;
    if (rafs_detect_version(data, size, NULL) == 5) rafs_v5_probe(data, size, &v5, NULL);
    if (rafs_image_open_buf(data, size, &img, NULL)) return 0;
    rafs_walk(img, visit, img, NULL);
    uint64_t nid;
    rafs_lookup(img, "/a/b/../c", &nid, NULL);
    for (uint32_t i = 0; i < rafs_image_prefetch_count(img); i++) {
        struct rafs_stat st;
        rafs_stat(img, rafs_image_prefetch_nid(img, i), &st, NULL);
    }
    rafs_image_close(img);
    return 0;
}
