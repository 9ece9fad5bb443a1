/* Builder unit tests: the in-memory tree, the chunk table, the blob writer's byte layout
 * (chunks, ci array + header, reverse-tar headers, TOC, blob id) checked by independent
 * parsing in this file, and bootstraps read back through the reader API. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cf/buf.h"
#include "cf/digest.h"
#include "cf/hex.h"
#include "rafs/blob.h"
#include "rafs/builder.h"
#include "rafs/reader.h"

static struct rafs_inode *mk(uint32_t mode)
{
    struct rafs_inode *i = rafs_inode_new();
    assert_non_null(i);
    i->mode = mode;
    return i;
}

static void add(struct rafs_tree *t, const char *path, struct rafs_inode *ino)
{
    cf_err err = {0};
    assert_int_equal(rafs_tree_add(t, path, ino, NULL, &err), 0);
    rafs_inode_put(ino);
}

static void test_tree_paths(void **state)
{
    (void)state;
    struct rafs_tree t;
    assert_int_equal(rafs_tree_init(&t), 0);
    add(&t, "./a/b/c.txt", mk(S_IFREG | 0644)); /* implicit parents */
    struct rafs_node *b = rafs_tree_lookup(&t, "/a/b");
    assert_non_null(b);
    assert_true(S_ISDIR(b->inode->mode));
    assert_non_null(rafs_tree_lookup(&t, "a//b/./c.txt"));
    /* a directory entry for an existing directory keeps its children */
    struct rafs_inode *d = mk(S_IFDIR | 0700);
    d->uid = 7;
    add(&t, "a/b/", d);
    b = rafs_tree_lookup(&t, "a/b");
    assert_int_equal(b->inode->uid, 7);
    assert_int_equal(b->nchildren, 1);
    /* a file replacing a directory drops the subtree */
    add(&t, "a/b", mk(S_IFREG | 0600));
    assert_null(rafs_tree_lookup(&t, "a/b/c.txt"));
    /* hard link: one inode, two dirents */
    struct rafs_node *f = rafs_tree_lookup(&t, "a/b");
    f->inode->refs++;
    add(&t, "a/link", f->inode);
    assert_int_equal(rafs_tree_lookup(&t, "a/link")->inode->refs, 2);
    rafs_tree_remove(&t, rafs_tree_lookup(&t, "a/b"));
    assert_int_equal(rafs_tree_lookup(&t, "a/link")->inode->refs, 1);
    /* bad paths */
    cf_err err = {0};
    struct rafs_inode *x = mk(S_IFREG);
    assert_int_equal(rafs_tree_add(&t, "a/../etc", x, NULL, &err), -EINVAL);
    assert_int_equal(rafs_tree_add(&t, "a/link/x", x, NULL, &err), -ENOTDIR);
    rafs_inode_put(x);
    /* depth is bounded (every tree walk is recursive) */
    cf_buf deep = {0};
    for (int i = 0; i < RAFS_TREE_MAX_DEPTH + 1; i++) cf_buf_append(&deep, "d/", 2);
    cf_buf_append(&deep, "", 1);
    x = mk(S_IFREG);
    assert_int_equal(rafs_tree_add(&t, (const char *)deep.data, x, NULL, &err), -ELOOP);
    rafs_inode_put(x);
    cf_buf_free(&deep);
    rafs_tree_clear_dir(&t, t.root);
    assert_int_equal(t.root->nchildren, 0);
    assert_int_equal(t.nodes, 1);
    rafs_tree_free(&t);
}

static void test_xattr_prefixes(void **state)
{
    (void)state;
    struct rafs_inode *i = mk(S_IFREG);
    cf_err err = {0};
    assert_int_equal(rafs_inode_set_xattr(i, "user.a", "1", 1, &err), 0);
    assert_int_equal(rafs_inode_set_xattr(i, "security.capability", "12", 2, &err), 0);
    assert_int_equal(rafs_inode_set_xattr(i, "system.posix_acl_access", "", 0, &err), 0);
    assert_int_equal(rafs_inode_set_xattr(i, "user.a", "22", 2, &err), 0); /* replaces */
    assert_int_equal(i->nxattrs, 3);
    assert_int_equal(rafs_inode_set_xattr(i, "com.apple.quarantine", "x", 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "com.apple.quarantine"));
    assert_int_equal(rafs_inode_set_xattr(i, "user.", "x", 1, &err), -EINVAL);
    rafs_inode_put(i);
}

static void test_chunk_table(void **state)
{
    (void)state;
    struct rafs_chunk_table ct = {0};
    for (uint32_t i = 0; i < 5000; i++) {
        struct rafs_chunk c = {0};
        memcpy(c.digest, &i, sizeof(i));
        c.blob_index = i % 3;
        c.uncompressed_size = 4096;
        uint32_t idx;
        assert_int_equal(rafs_chunk_table_add(&ct, &c, &idx), 0);
        assert_int_equal(idx, i);
    }
    uint8_t d[32] = {0};
    uint32_t k = 4242;
    memcpy(d, &k, sizeof(k));
    assert_int_equal(rafs_chunk_table_find(&ct, d, 4242 % 3, 4096), 4242);
    assert_int_equal(rafs_chunk_table_find(&ct, d, (4242 + 1) % 3, 4096), -1);
    assert_int_equal(rafs_chunk_table_find(&ct, d, 4242 % 3, 8192), -1);
    rafs_chunk_table_free(&ct);
}

/* ---- a whole build into memory files ---- */
struct built {
    uint8_t *blob;
    size_t blob_len;
    cf_buf boot;
    struct rafs_blob_result res;
    int blob_fd;
};

static void feed(rafs_blob_writer *w, struct rafs_tree *t, const char *path, const uint8_t *data,
                 size_t len)
{
    cf_err err = {0};
    struct rafs_inode *ino = mk(S_IFREG | 0644);
    assert_int_equal(rafs_blob_writer_begin_file(w, ino, len, &err), 0);
    size_t off = 0;
    for (;;) {
        void *buf;
        size_t avail;
        assert_int_equal(rafs_blob_writer_buf(w, &buf, &avail, &err), 0);
        if (!avail) break;
        if (avail > 1000) avail = 1000; /* odd-sized writes */
        memcpy(buf, data + off, avail);
        assert_int_equal(rafs_blob_writer_advance(w, avail, &err), 0);
        off += avail;
    }
    assert_int_equal(rafs_blob_writer_end_file(w, &err), 0);
    add(t, path, ino);
}

static uint8_t *pattern(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len ? len : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (i % 3) ? (uint8_t)(x >> 24) : (uint8_t)'a' + (uint8_t)(i % 7);
    }
    return p;
}

static void build(struct built *b, enum rafs_compressor comp, int toc, unsigned threads)
{
    memset(b, 0, sizeof(*b));
    struct rafs_tree t;
    struct rafs_chunk_table ct = {0};
    assert_int_equal(rafs_tree_init(&t), 0);
    b->blob_fd = memfd_create("blob", 0);
    assert_true(b->blob_fd >= 0);
    struct rafs_blob_opts o = {.chunk_size = 0x10000,
                               .compressor = comp,
                               .digester = RAFS_DIGEST_BLAKE3,
                               .zstd_level = 3,
                               .blob_toc = toc,
                               .threads = threads};
    rafs_blob_writer *w;
    cf_err err = {0};
    assert_int_equal(rafs_blob_writer_new(&o, b->blob_fd, -1, 0, &ct, &w, &err), 0);
    uint8_t *p1 = pattern(200000, 1), *zero = calloc(1, 0x30000);
    feed(w, &t, "dir/one", p1, 200000);
    feed(w, &t, "dir/same-as-one", p1, 200000); /* dedup: no new chunks */
    feed(w, &t, "zeros", zero, 0x30000);        /* three identical zero chunks */
    feed(w, &t, "empty", zero, 0);
    feed(w, &t, "-dash", p1, 10);
    for (int i = 0; i < 300; i++) { /* several dirent blocks */
        char name[64];
        snprintf(name, sizeof(name), "big/entry-with-a-rather-long-name-%03d", i);
        add(&t, name, mk(S_IFLNK | 0777));
        struct rafs_node *n = rafs_tree_lookup(&t, name);
        n->inode->symlink = strdup("target");
        n->inode->size = 6;
    }
    assert_int_equal(rafs_blob_writer_finish(w, NULL, 0, &b->res, &err), 0);
    struct rafs_boot_blob bb = {.chunk_count = b->res.chunk_count,
                                .features = b->res.features,
                                .compressor = comp,
                                .ci_compressor = b->res.ci_compressor,
                                .digester = RAFS_DIGEST_BLAKE3,
                                .compressed_size = b->res.blob_size,
                                .uncompressed_size = b->res.uncompressed_size,
                                .toc_size = b->res.toc_size,
                                .ci_offset = b->res.ci_offset,
                                .ci_compressed_size = b->res.ci_compressed_size,
                                .ci_uncompressed_size = b->res.ci_uncompressed_size};
    memcpy(bb.id, b->res.blob_id, sizeof(bb.id));
    memcpy(bb.toc_digest, b->res.toc_digest, 32);
    const char *pf[] = {"/dir", "/missing", NULL};
    struct rafs_boot_opts bo = {.chunk_size = 0x10000,
                                .compressor = comp,
                                .digester = RAFS_DIGEST_BLAKE3,
                                .inlined_chunk_digest = toc,
                                .blobs = &bb,
                                .nblobs = 1,
                                .prefetch = pf};
    assert_int_equal(rafs_bootstrap_build(&t, &ct, &bo, &b->boot, &err), 0);
    rafs_blob_writer_free(w);
    rafs_chunk_table_free(&ct);
    rafs_tree_free(&t);
    free(p1);
    free(zero);
    b->blob_len = (size_t)lseek(b->blob_fd, 0, SEEK_END);
    b->blob = malloc(b->blob_len);
    assert_int_equal(pread(b->blob_fd, b->blob, b->blob_len, 0), (ssize_t)b->blob_len);
}

static void built_free(struct built *b)
{
    free(b->blob);
    cf_buf_free(&b->boot);
    close(b->blob_fd);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return rafs_le64(v);
}

/* Independent parse of a reverse-tar header: returns the size, checks name and checksum. */
static uint64_t tar_hdr(const uint8_t *h, const char *name)
{
    assert_string_equal((const char *)h, name);
    assert_memory_equal(h + 257, "ustar  \0", 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += (i >= 148 && i < 156) ? ' ' : h[i];
    assert_int_equal(strtoul((const char *)h + 148, NULL, 8), sum);
    return strtoull((const char *)h + 124, NULL, 8);
}

static void test_blob_layout_toc(void **state)
{
    (void)state;
    struct built b;
    build(&b, RAFS_COMP_ZSTD, 1, 2);
    /* one 200000-byte file = 4 chunks (3 x 64 KiB + 3392), zeros = 1 chunk, "-dash" = 1 */
    assert_int_equal(b.res.chunk_count, 6);
    /* found again, stored once: same-as-one's 4 chunks and 2 of the 3 zero chunks */
    assert_int_equal(b.res.dedup_chunks, 6);
    assert_int_equal(b.res.dedup_bytes, 200000 + 2 * 0x10000);
    assert_int_equal(b.res.features, 0x70000021);
    /* walk the tail backwards as the snapshotter does */
    const uint8_t *end = b.blob + b.blob_len;
    uint64_t tocsz = tar_hdr(end - 512, "rafs.blob.toc");
    assert_int_equal(tocsz, 4 * 128);
    assert_int_equal(b.res.toc_size, tocsz + 512);
    uint8_t d[32];
    cf_sha256(end - 512 - tocsz, tocsz + 512, d);
    assert_memory_equal(d, b.res.toc_digest, 32);
    const uint8_t *toc = end - 512 - tocsz;
    const char *names[] = {"image.blob", "blob.meta", "blob.meta.header", "blob.digest"};
    for (int i = 0; i < 4; i++) { /* 16-byte name field, NUL padded (not terminated if 16) */
        char nm[17] = {0};
        memcpy(nm, toc + 128 * i + 8, 16);
        assert_string_equal(nm, names[i]);
    }
    uint64_t doff = le64(toc + 3 * 128 + 56), dlen = le64(toc + 3 * 128 + 64);
    assert_int_equal(dlen, 32 * 6);
    assert_int_equal(tar_hdr(b.blob + doff + dlen, "blob.digest"), dlen);
    /* ci header magic at both ends, entries */
    const uint8_t *h = b.blob + b.res.ci_offset + b.res.ci_compressed_size;
    uint32_t m1, m2, n;
    memcpy(&m1, h, 4);
    memcpy(&m2, h + 4092, 4);
    memcpy(&n, h + 12, 4);
    assert_int_equal(m1, RAFS_CI_MAGIC);
    assert_int_equal(m2, RAFS_CI_MAGIC);
    assert_int_equal(n, 6);
    assert_int_equal(tar_hdr(h + 4096, "blob.meta"), b.res.ci_compressed_size + 4096);
    assert_int_equal(tar_hdr(b.blob + b.res.data_size, "image.blob"), b.res.data_size);
    /* blob id = sha256 of everything but the blob.digest bytes (nydus-format.md §3.6) */
    uint8_t *x = malloc(b.blob_len - dlen);
    memcpy(x, b.blob, doff);
    memcpy(x + doff, b.blob + doff + dlen, b.blob_len - doff - dlen);
    cf_sha256(x, b.blob_len - dlen, d);
    char hex[65];
    cf_hex_encode(d, 32, hex);
    assert_string_equal(hex, b.res.blob_id);
    free(x);
    /* the OCI digest, hashed on the way (the convert pushes with it): every byte of the file */
    cf_sha256(b.blob, b.blob_len, d);
    assert_memory_equal(d, b.res.file_sha256, 32);
    assert_int_equal(b.res.blob_size, b.blob_len);
    assert_int_equal(b.res.uncompressed_size % 4096, 0);
    built_free(&b);
}

static void test_blob_plain_id_is_file_sha256(void **state)
{
    (void)state;
    struct built b;
    build(&b, RAFS_COMP_LZ4_BLOCK, 0, 0);
    assert_int_equal(b.res.features, 0x40000001);
    uint8_t d[32];
    char hex[65];
    cf_sha256(b.blob, b.blob_len, d);
    cf_hex_encode(d, 32, hex);
    assert_string_equal(hex, b.res.blob_id);
    assert_memory_equal(d, b.res.file_sha256, 32);
    /* plain blob ends with the ci header */
    uint32_t m;
    memcpy(&m, b.blob + b.blob_len - 4096, 4);
    assert_int_equal(m, RAFS_CI_MAGIC);
    built_free(&b);
}

static void test_bootstrap_reads_back(void **state)
{
    (void)state;
    for (int comp = 0; comp < 3; comp++) {
        enum rafs_compressor c = comp == 0   ? RAFS_COMP_ZSTD
                                 : comp == 1 ? RAFS_COMP_LZ4_BLOCK
                                             : RAFS_COMP_NONE;
        struct built b;
        build(&b, c, 1, comp == 2 ? 0 : 2);
        assert_int_equal(b.boot.len % 4096, 0);
        rafs_image *img;
        cf_err err = {0};
        assert_int_equal(rafs_image_open_buf(b.boot.data, b.boot.len, &img, &err), 0);
        const struct rafs_super_info *sb = rafs_image_super(img);
        assert_int_equal(sb->root_nid, 128);
        assert_int_equal(sb->chunk_size, 0x10000);
        assert_int_equal(rafs_image_prefetch_count(img), 1); /* "/missing" ignored */
        uint64_t nid, nid2;
        assert_int_equal(rafs_lookup(img, "/dir/one", &nid, &err), 0);
        assert_int_equal(rafs_image_prefetch_nid(img, 0) != 0, 1);
        /* dedup: same chunk addresses for the identical file */
        assert_int_equal(rafs_lookup(img, "/dir/same-as-one", &nid2, &err), 0);
        struct rafs_chunk_ref r1, r2;
        rafs_blob_source *src;
        assert_int_equal(rafs_blob_source_from_fd(b.blob_fd, false, &src, &err), 0);
        for (uint64_t i = 0; i < 4; i++) {
            assert_int_equal(rafs_file_chunk(img, nid, i, &r1, &err), 0);
            assert_int_equal(rafs_file_chunk(img, nid2, i, &r2, &err), 0);
            assert_int_equal(r1.uncompressed_offset, r2.uncompressed_offset);
            assert_int_equal(r1.uncompressed_offset % 4096, 0);
            uint8_t *buf = malloc(r1.uncompressed_size);
            assert_int_equal(rafs_chunk_read(src, &r1, c, RAFS_DIGEST_BLAKE3, buf, &err), 0);
            uint8_t *want = pattern(200000, 1);
            assert_memory_equal(buf, want + i * 0x10000, r1.uncompressed_size);
            free(want);
            free(buf);
        }
        rafs_blob_source_close(src);
        /* sorted dirents incl. "." and "..": "-dash" (0x2d) sorts before "." */
        rafs_dir_iter it;
        struct rafs_dirent de;
        assert_int_equal(rafs_dir_open(img, sb->root_nid, &it, &err), 0);
        assert_int_equal(rafs_dir_next(&it, &de, &err), 1);
        assert_string_equal(de.name, "-dash");
        assert_int_equal(rafs_dir_next(&it, &de, &err), 1);
        assert_string_equal(de.name, ".");
        /* the 300-entry directory spans several blocks, all entries found */
        uint64_t big;
        assert_int_equal(rafs_lookup(img, "/big", &big, &err), 0);
        assert_int_equal(rafs_dir_open(img, big, &it, &err), 0);
        int count = 0, rc;
        while ((rc = rafs_dir_next(&it, &de, &err)) == 1) count++;
        assert_int_equal(rc, 0);
        assert_int_equal(count, 302);
        assert_int_equal(rafs_lookup(img, "/big/entry-with-a-rather-long-name-299", &nid, &err), 0);
        char tgt[16];
        size_t tl;
        assert_int_equal(rafs_readlink(img, nid, tgt, sizeof(tgt), &tl, &err), 0);
        assert_int_equal(tl, 6);
        assert_memory_equal(tgt, "target", 6);
        rafs_image_close(img);
        built_free(&b);
    }
}

/* a file of n bytes of pattern seed under dir */
static void write_file(const char *dir, const char *name, size_t n, int seed)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t *p = pattern(n, seed);
    assert_int_equal(fwrite(p, 1, n, f), n);
    free(p);
    fclose(f);
}

static void create_dir(const char *dir, const char *boot, const char *blob,
                       const struct rafs_chunk_dict *dict, struct rafs_create_result *res)
{
    struct rafs_create_opts o = {
        .source = dir, .source_is_dir = 1, .bootstrap = boot, .blob = blob, .chunk_dict = dict};
    o.blob_opts.chunk_size = 0x10000;
    o.blob_opts.compressor = RAFS_COMP_ZSTD;
    o.blob_opts.digester = RAFS_DIGEST_BLAKE3;
    o.blob_opts.zstd_level = 3;
    o.blob_opts.blob_toc = 1;
    cf_err err = {0};
    int rc = rafs_create(&o, res, &err);
    if (rc) fprintf(stderr, "%s\n", cf_err_str(&err, rc));
    assert_int_equal(rc, 0);
}

/* --chunk-dict: B's copy of A's file points into A's blob (second in B's blob table), B's own
 * file into B's blob; nothing of A's file is stored in B's blob. */
static void test_chunk_dict(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/cftest.dictXXXXXX", a[300], b[300], ab[300], bb[300], blob[300], bl2[300];
    assert_non_null(mkdtemp(tmpl));
    snprintf(a, sizeof(a), "%s/a", tmpl);
    snprintf(b, sizeof(b), "%s/b", tmpl);
    assert_int_equal(mkdir(a, 0755), 0);
    assert_int_equal(mkdir(b, 0755), 0);
    write_file(a, "shared", 200000, 3);
    write_file(b, "copy", 200000, 3);
    write_file(b, "own", 70000, 4);
    snprintf(ab, sizeof(ab), "%s/a.boot", tmpl);
    snprintf(bb, sizeof(bb), "%s/b.boot", tmpl);
    snprintf(blob, sizeof(blob), "%s/a.blob", tmpl);
    snprintf(bl2, sizeof(bl2), "%s/b.blob", tmpl);
    struct rafs_create_result *ra = calloc(1, sizeof(*ra)), *rb = calloc(1, sizeof(*rb));
    create_dir(a, ab, blob, NULL, ra);
    struct rafs_chunk_dict d;
    cf_err err = {0};
    const char *path;
    assert_int_equal(rafs_chunk_dict_arg("bootstrap=/x/y", &path, &err), 0);
    assert_string_equal(path, "/x/y");
    assert_int_equal(rafs_chunk_dict_arg("/x/z", &path, &err), 0);
    assert_string_equal(path, "/x/z");
    assert_int_equal(rafs_chunk_dict_arg("boltdb=/x", &path, &err), -EINVAL);
    assert_int_equal(rafs_chunk_dict_load(ab, &d, &err), 0);
    assert_int_equal(d.nblobs, 1);
    assert_int_equal(d.chunks.n, 4); /* 3 x 64 KiB + the tail */
    assert_int_equal(rafs_chunk_dict_check(&d, 0x10000, RAFS_DIGEST_BLAKE3, "t", &err), 0);
    assert_int_equal(rafs_chunk_dict_check(&d, 0x20000, RAFS_DIGEST_BLAKE3, "t", &err), -EINVAL);
    create_dir(b, bb, bl2, &d, rb);
    assert_int_equal(rb->dict_chunks, 4);
    assert_int_equal(rb->dict_bytes, 200000);
    assert_int_equal(rb->dict_blobs, 1);
    assert_int_equal(rb->blob.chunk_count, 2); /* "own" only */
    rafs_image *img;
    assert_int_equal(rafs_image_open(bb, &img, &err), 0);
    assert_int_equal(rafs_image_blob_count(img), 2);
    assert_string_equal(rafs_image_blob(img, 0)->id, rb->blob_id);
    assert_string_equal(rafs_image_blob(img, 1)->id, ra->blob_id);
    uint64_t nid;
    struct rafs_chunk_ref r;
    assert_int_equal(rafs_lookup(img, "/copy", &nid, &err), 0);
    for (uint64_t i = 0; i < 4; i++) {
        assert_int_equal(rafs_file_chunk(img, nid, i, &r, &err), 0);
        assert_int_equal(r.blob_index, 1);
        assert_int_equal(r.ci_index, i);
    }
    assert_int_equal(rafs_lookup(img, "/own", &nid, &err), 0);
    assert_int_equal(rafs_file_chunk(img, nid, 1, &r, &err), 0);
    assert_int_equal(r.blob_index, 0);
    rafs_image_close(img);
    /* merge with the dictionary: A's blob keeps its id, B's becomes the given digest */
    char out[300];
    snprintf(out, sizeof(out), "%s/m.boot", tmpl);
    const char *srcs[] = {bb},
               *digs[] = {"sha256:"
                          "1111111111111111111111111111111111111111111111111111111111111111"};
    struct rafs_merge_opts mo = {.sources = srcs,
                                 .nsources = 1,
                                 .blob_digests = digs,
                                 .chunk_dict = ab,
                                 .whiteout = RAFS_WHITEOUT_OCI};
    char **ids = NULL;
    size_t nids = 0;
    assert_int_equal(rafs_merge(&mo, out, &ids, &nids, NULL, &err), 0);
    assert_int_equal(nids, 2);
    assert_string_equal(ids[0], digs[0] + 7);
    assert_string_equal(ids[1], ra->blob_id);
    rafs_merge_free_ids(ids, nids);
    mo.chunk_dict = NULL; /* without it: two blobs where one digest is given */
    assert_int_equal(rafs_merge(&mo, out, &ids, &nids, NULL, &err), RAFS_MERGE_INCONSISTENT);
    rafs_chunk_dict_free(&d);
    free(ra);
    free(rb);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpl);
    assert_int_equal(system(cmd), 0);
}

/* the prefetch list of stdin: absolute paths, trimmed; relative ones and empty lines skipped */
static void test_prefetch_read(void **state)
{
    (void)state;
    static char text[] = "/etc\r\n\nrelative\n/usr/bin/x  \n/last";
    FILE *f = fmemopen(text, strlen(text), "r");
    assert_non_null(f);
    char **v = NULL;
    cf_err err = {0};
    assert_int_equal(rafs_prefetch_read(f, &v, &err), 0);
    fclose(f);
    assert_string_equal(v[0], "/etc");
    assert_string_equal(v[1], "/usr/bin/x");
    assert_string_equal(v[2], "/last");
    assert_null(v[3]);
    rafs_prefetch_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_paths),
        cmocka_unit_test(test_xattr_prefixes),
        cmocka_unit_test(test_chunk_table),
        cmocka_unit_test(test_blob_layout_toc),
        cmocka_unit_test(test_blob_plain_id_is_file_sha256),
        cmocka_unit_test(test_bootstrap_reads_back),
        cmocka_unit_test(test_chunk_dict),
        cmocka_unit_test(test_prefetch_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
