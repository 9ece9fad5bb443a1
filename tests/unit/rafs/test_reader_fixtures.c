/* RAFS v6 reader against real nydus-written files: the v2.2 bootstrap and its data blob, the
 * zran blob.meta cache file, the ref-type TOC meta blob, RAFS v5 bootstraps, and hand-patched
 * variants of the bootstrap (symlink, whiteout, hard link, xattrs). Skips (77) without
 * fixtures. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cf/digest.h"
#include "cf/file_io.h"
#include "cf/hex.h"
#include "rafs/blob.h"
#include "rafs/reader.h"
#include "rafs_variants.h"
#include "test_env.h"

#define BLOB_ID "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"

static char boot_path[4096], blob_path[4096], blob_dir[4096];

static rafs_image *open_fixture(void)
{
    rafs_image *img = NULL;
    cf_err err = {0};
    int rc = rafs_image_open(boot_path, &img, &err);
    if (rc) fail_msg("open: %s", err.msg);
    return img;
}

static uint8_t *load(const char *path, size_t *len)
{
    uint8_t *d = NULL;
    assert_int_equal(cf_read_file(path, 1 << 30, &d, len, NULL), 0);
    return d;
}

static void test_superblock_and_blob_table(void **state)
{
    (void)state;
    rafs_image *img = open_fixture();
    const struct rafs_super_info *sb = rafs_image_super(img);
    assert_int_equal(sb->chunk_size, 0x100000);
    assert_int_equal(sb->compressor, RAFS_COMP_ZSTD);
    assert_int_equal(sb->digester, RAFS_DIGEST_BLAKE3);
    assert_int_equal(sb->flags, 0x194);
    assert_int_equal(sb->inos, 3);
    assert_int_equal(sb->root_nid, 128);
    assert_int_equal(sb->meta_blkaddr, 2);
    assert_int_equal(sb->chunk_table_count, 2);
    assert_int_equal(rafs_image_prefetch_count(img), 0);
    assert_int_equal(rafs_image_blob_count(img), 1);
    assert_null(rafs_image_blob(img, 1));
    const struct rafs_blob_info *bi = rafs_image_blob(img, 0);
    assert_string_equal(bi->id, BLOB_ID);
    assert_int_equal(bi->chunk_count, 2);
    assert_int_equal(bi->features, 0x70000021);
    assert_int_equal(bi->compressed_size, 14554);
    assert_int_equal(bi->uncompressed_size, 0x9000);
    assert_int_equal(bi->toc_size, 0x400);
    assert_true(bi->has_toc_digest);
    assert_int_equal(bi->ci_offset, 0x207a);
    assert_int_equal(bi->ci_compressed_size, 0x20);
    assert_int_equal(bi->dev_blocks, 9);
    assert_int_equal(bi->dev_mapped_blkaddr, 0x200);
    char feat[256];
    rafs_blob_features_str(bi->features, feat, sizeof(feat));
    assert_string_equal(feat, "aligned inlined-chunk-digest tar-header blob-toc cap-tar-toc");
    rafs_image_close(img);
}

static void test_lookup_stat_readdir(void **state)
{
    (void)state;
    rafs_image *img = open_fixture();
    uint64_t nid;
    struct rafs_stat st;
    cf_err err = {0};
    assert_int_equal(rafs_lookup(img, "/", &nid, NULL), 0);
    assert_int_equal(nid, 128);
    assert_int_equal(rafs_lookup(img, "/lib.rs", &nid, NULL), 0);
    assert_int_equal(nid, 133);
    assert_int_equal(rafs_stat(img, nid, &st, NULL), 0);
    assert_int_equal(st.mode, 0100644);
    assert_int_equal(st.size, 16931);
    assert_int_equal(st.nlink, 1);
    assert_int_equal(st.mtime, 0x63f23c61);
    assert_int_equal(st.i_ino, 2);
    assert_int_equal(st.ino, 133);
    assert_int_equal(rafs_lookup(img, "sync_io.rs", &nid, NULL), 0);
    assert_int_equal(nid, 136);
    assert_int_equal(rafs_stat(img, nid, &st, NULL), 0);
    assert_int_equal(st.size, 13400);
    assert_int_equal(rafs_lookup(img, "/./lib.rs", &nid, NULL), 0);
    assert_int_equal(rafs_lookup(img, "/../sync_io.rs", &nid, NULL), 0);
    assert_int_equal(nid, 136);
    assert_int_equal(rafs_lookup(img, "/nope", &nid, &err), -ENOENT);
    assert_true(strstr(err.msg, "/nope") != NULL);
    assert_int_equal(rafs_lookup(img, "/lib.rs/x", &nid, NULL), -ENOTDIR);
    assert_int_equal(rafs_lookup(img, "/a", &nid, NULL), -ENOENT);
    assert_int_equal(rafs_lookup(img, "/zzz", &nid, NULL), -ENOENT);
    assert_int_equal(rafs_stat(img, 128, &st, NULL), 0);
    assert_int_equal(st.mode, 040755);
    assert_int_equal(st.size, 67);
    assert_int_equal(st.nlink, 2);

    rafs_dir_iter it;
    struct rafs_dirent de;
    static const char *names[] = {".", "..", "lib.rs", "sync_io.rs"};
    static const uint64_t nids[] = {128, 128, 133, 136};
    static const uint8_t types[] = {2, 2, 1, 1};
    assert_int_equal(rafs_dir_open(img, 128, &it, NULL), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rafs_dir_next(&it, &de, NULL), 1);
        assert_string_equal(de.name, names[i]);
        assert_int_equal(de.nid, nids[i]);
        assert_int_equal(de.file_type, types[i]);
    }
    assert_int_equal(rafs_dir_next(&it, &de, NULL), 0);
    assert_int_equal(rafs_dir_open(img, 133, &it, NULL), -ENOTDIR);
    /* xattr-less fixture */
    size_t len = 99;
    assert_int_equal(rafs_listxattr(img, 133, NULL, 0, &len, NULL), 0);
    assert_int_equal(len, 0);
    assert_int_equal(rafs_getxattr(img, 133, "user.x", NULL, 0, &len, NULL), -ENODATA);
    char buf[8];
    assert_int_equal(rafs_readlink(img, 133, buf, sizeof(buf), &len, NULL), -EINVAL);
    rafs_image_close(img);
}

static void test_chunk_mapping(void **state)
{
    (void)state;
    rafs_image *img = open_fixture();
    struct rafs_chunk_ref *refs;
    size_t n;
    uint64_t count;
    assert_int_equal(rafs_file_chunk_count(img, 133, &count, NULL), 0);
    assert_int_equal(count, 1);
    assert_int_equal(rafs_file_map(img, 133, 0, UINT64_MAX, &refs, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(refs[0].blob_index, 0);
    assert_string_equal(refs[0].blob_id, BLOB_ID);
    assert_int_equal(refs[0].ci_index, 0);
    assert_int_equal(refs[0].file_offset, 0);
    assert_int_equal(refs[0].compressed_offset, 0);
    assert_int_equal(refs[0].compressed_size, 0x12dc);
    assert_int_equal(refs[0].uncompressed_offset, 0);
    assert_int_equal(refs[0].uncompressed_size, 16931);
    assert_true(refs[0].compressed);
    assert_true(refs[0].has_digest);
    free(refs);
    assert_int_equal(rafs_file_map(img, 136, 100, 10, &refs, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(refs[0].ci_index, 1);
    assert_int_equal(refs[0].compressed_offset, 0x12dc);
    assert_int_equal(refs[0].compressed_size, 0xb9e);
    assert_int_equal(refs[0].uncompressed_offset, 0x5000);
    assert_int_equal(refs[0].uncompressed_size, 13400);
    free(refs);
    assert_int_equal(rafs_file_map(img, 136, 13400, 10, &refs, &n, NULL), 0);
    assert_int_equal(n, 0);
    assert_null(refs);
    assert_int_equal(rafs_file_map(img, 128, 0, 10, &refs, &n, NULL), -EISDIR);
    rafs_image_close(img);
}

/* lib.rs and sync_io.rs content through the API: every chunk's BLAKE3 digest (from the
 * nydus-written chunk table) must match the decompressed data */
static void test_file_content(void **state)
{
    (void)state;
    rafs_image *img = open_fixture();
    rafs_blob_set *bf;
    cf_err err = {0};
    if (rafs_blob_set_open_dir(img, blob_dir, &bf, &err)) fail_msg("%s", err.msg);
    static const struct {
        const char *path;
        uint64_t size;
    } files[] = {{"/lib.rs", 16931}, {"/sync_io.rs", 13400}};
    for (int i = 0; i < 2; i++) {
        uint64_t nid;
        assert_int_equal(rafs_lookup(img, files[i].path, &nid, NULL), 0);
        uint8_t *all = malloc(files[i].size + 100), part[777];
        size_t got;
        int rc = rafs_file_read(img, bf, nid, 0, all, files[i].size + 100, &got, &err);
        if (rc) fail_msg("%s", err.msg);
        assert_int_equal(got, files[i].size);
        assert_memory_equal(all, "// Copyright", 12);
        /* reading at odd offsets gives the same bytes */
        for (uint64_t off = 0; off < files[i].size; off += 4001) {
            assert_int_equal(rafs_file_read(img, bf, nid, off, part, sizeof(part), &got, NULL), 0);
            size_t want = files[i].size - off < sizeof(part) ? files[i].size - off : sizeof(part);
            assert_int_equal(got, want);
            assert_memory_equal(part, all + off, got);
        }
        assert_int_equal(rafs_file_read(img, bf, nid, files[i].size, part, 10, &got, NULL), 0);
        assert_int_equal(got, 0);
        free(all);
    }
    rafs_blob_set_close(bf);
    rafs_image_close(img);
}

/* The FUSE reader reads from many threads at once: 8 threads read random ranges of both files
 * through one blob set and must all get the bytes of a single-threaded read. Once with the
 * local-file set (one fd, concurrent preads), once with memory sources put into a new set. */
struct mt_ctx {
    const rafs_image *img;
    const rafs_blob_set *set;
    const uint8_t *want[2];
    uint64_t nid[2], size[2];
    unsigned seed;
    int failures;
};

static void *mt_reader(void *arg)
{
    struct mt_ctx *c = arg;
    uint8_t buf[9000];
    unsigned r = c->seed;
    for (int i = 0; i < 300; i++) {
        r = r * 1103515245u + 12345u;
        int f = (r >> 16) & 1;
        uint64_t off = (r >> 3) % c->size[f];
        size_t len = 1 + (r >> 7) % sizeof(buf), got = 0;
        if (rafs_file_read(c->img, c->set, c->nid[f], off, buf, len, &got, NULL) != 0) {
            c->failures++;
            continue;
        }
        size_t want = c->size[f] - off < len ? (size_t)(c->size[f] - off) : len;
        if (got != want || memcmp(buf, c->want[f] + off, got) != 0) c->failures++;
    }
    return NULL;
}

static void run_mt(const rafs_image *img, const rafs_blob_set *set, uint8_t *want[2],
                   const uint64_t nid[2], const uint64_t size[2])
{
    pthread_t th[8];
    struct mt_ctx c[8];
    for (int t = 0; t < 8; t++) {
        c[t] = (struct mt_ctx){.img = img, .set = set, .seed = 77u + (unsigned)t};
        for (int f = 0; f < 2; f++) {
            c[t].want[f] = want[f];
            c[t].nid[f] = nid[f];
            c[t].size[f] = size[f];
        }
        assert_int_equal(pthread_create(&th[t], NULL, mt_reader, &c[t]), 0);
    }
    for (int t = 0; t < 8; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_int_equal(c[t].failures, 0);
    }
}

static void test_file_read_threads(void **state)
{
    (void)state;
    rafs_image *img = open_fixture();
    rafs_blob_set *files, *mem;
    cf_err err = {0};
    if (rafs_blob_set_open_dir(img, blob_dir, &files, &err)) fail_msg("%s", err.msg);
    uint64_t nid[2];
    uint64_t size[2] = {16931, 13400};
    uint8_t *want[2];
    assert_int_equal(rafs_lookup(img, "/lib.rs", &nid[0], NULL), 0);
    assert_int_equal(rafs_lookup(img, "/sync_io.rs", &nid[1], NULL), 0);
    for (int f = 0; f < 2; f++) {
        size_t got;
        want[f] = malloc(size[f]);
        assert_int_equal(rafs_file_read(img, files, nid[f], 0, want[f], size[f], &got, NULL), 0);
        assert_int_equal(got, size[f]);
    }
    run_mt(img, files, want, nid, size);
    /* the same blob as a memory source that owns its buffer, in a set filled by hand */
    size_t blen;
    uint8_t *bytes = load(blob_path, &blen);
    rafs_blob_source *src;
    assert_int_equal(rafs_blob_set_new(img, &mem, NULL), 0);
    assert_null(rafs_blob_set_get(mem, 0));
    size_t got;
    uint8_t one;
    assert_int_equal(rafs_file_read(img, mem, nid[0], 0, &one, 1, &got, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "not open"));
    assert_int_equal(rafs_blob_source_from_mem(bytes, blen, true, &src, NULL), 0);
    assert_int_equal(rafs_blob_set_put(mem, 0, src, NULL), 0);
    assert_ptr_equal(rafs_blob_set_get(mem, 0), src);
    assert_null(rafs_blob_set_get(mem, 1));
    /* out of range: refused, and the source is closed (no leak) */
    assert_int_equal(rafs_blob_source_from_mem(NULL, 0, false, &src, NULL), 0);
    assert_int_equal(rafs_blob_set_put(mem, 1, src, &err), -EINVAL);
    run_mt(img, mem, want, nid, size);
    free(want[0]);
    free(want[1]);
    rafs_blob_set_close(mem);
    rafs_blob_set_close(files);
    rafs_image_close(img);
}

static rafs_blob_source *open_blob(const char *path)
{
    rafs_blob_source *src = NULL;
    cf_err err = {0};
    if (rafs_blob_source_open_path(path, &src, &err)) fail_msg("%s", err.msg);
    return src;
}

static void test_blob_toc_ci_digests(void **state)
{
    (void)state;
    rafs_image *img = open_fixture();
    const struct rafs_blob_info *bi = rafs_image_blob(img, 0);
    cf_err err = {0};
    rafs_blob_source *src = open_blob(blob_path);
    uint64_t size;
    assert_int_equal(rafs_blob_source_size(src, &size), 0);
    assert_int_equal(size, 14554);
    struct rafs_blob_toc toc;
    if (rafs_blob_toc_read(src, &toc, &err)) fail_msg("%s", err.msg);
    assert_int_equal(toc.count, 4);
    assert_int_equal(toc.size, 0x400);
    assert_int_equal(toc.offset, 0x34da);
    assert_string_equal(toc.items[0].name, "image.blob");
    assert_string_equal(toc.items[1].name, "blob.meta");
    assert_string_equal(toc.items[2].name, "blob.meta.header");
    assert_string_equal(toc.items[3].name, "blob.digest");
    assert_int_equal(rafs_blob_toc_verify(&toc, bi, NULL), 0);
    assert_null(rafs_blob_toc_find(&toc, "image.boot"));
    uint8_t *boot;
    size_t blen;
    assert_int_equal(rafs_blob_read_bootstrap(src, &toc, &boot, &blen, NULL), -ENOENT);

    struct rafs_blob_meta *m;
    if (rafs_blob_meta_load(src, bi, &m, &err)) fail_msg("%s", err.msg);
    assert_int_equal(m->count, 2);
    assert_int_equal(m->ci[0].uncompressed_offset, 0);
    assert_int_equal(m->ci[0].uncompressed_size, 0x4223);
    assert_int_equal(m->ci[0].compressed_offset, 0);
    assert_int_equal(m->ci[0].compressed_size, 0x12dc);
    assert_int_equal(m->ci[1].uncompressed_offset, 0x5000);
    assert_int_equal(m->ci[1].uncompressed_size, 0x3458);
    assert_int_equal(m->ci[1].compressed_offset, 0x12dc);
    assert_int_equal(m->ci[1].compressed_size, 0xb9e);
    if (rafs_blob_meta_load_digests(src, &toc, m, &err)) fail_msg("%s", err.msg);
    /* uncompressed-space lookups: [0,0x4223) chunk 0, gap to 0x5000, [0x5000,0x8458) chunk 1 */
    uint32_t first, cnt;
    rafs_blob_meta_find(m, 0, 1, &first, &cnt);
    assert_true(first == 0 && cnt == 1);
    rafs_blob_meta_find(m, 0x4222, 2, &first, &cnt);
    assert_true(first == 0 && cnt == 1);
    rafs_blob_meta_find(m, 0x4223, 0xddd, &first, &cnt);
    assert_true(first == 1 && cnt == 0);
    rafs_blob_meta_find(m, 0x4000, 0x1001, &first, &cnt);
    assert_true(first == 0 && cnt == 2);
    rafs_blob_meta_find(m, 0x8457, 100, &first, &cnt);
    assert_true(first == 1 && cnt == 1);
    rafs_blob_meta_find(m, 0x8458, 100, &first, &cnt);
    assert_int_equal(cnt, 0);
    rafs_blob_meta_find(m, 0, UINT64_MAX, &first, &cnt);
    assert_true(first == 0 && cnt == 2);
    /* blob.digest agrees with the bootstrap chunk table */
    struct rafs_chunk_ref r0, r1;
    assert_int_equal(rafs_file_chunk(img, 133, 0, &r0, NULL), 0);
    assert_int_equal(rafs_file_chunk(img, 136, 0, &r1, NULL), 0);
    assert_memory_equal(m->digests[0], r0.digest, 32);
    assert_memory_equal(m->digests[1], r1.digest, 32);

    /* a chunk read verifies; a flipped data byte is caught by the digest or the codec */
    uint8_t *out = malloc(r0.uncompressed_size), *raw = malloc(r0.compressed_size);
    assert_int_equal(rafs_chunk_read(src, &r0, bi->compressor, bi->digester, out, NULL), 0);
    assert_int_equal(rafs_blob_source_read_full(src, raw, r0.compressed_size, r0.compressed_offset),
                     0);
    raw[r0.compressed_size / 2] ^= 0x10;
    assert_int_equal(rafs_chunk_decode(raw, &r0, bi->compressor, bi->digester, out, &err),
                     -EBADMSG);
    assert_true(err.msg[0] != 0);
    struct rafs_chunk_ref bad = r0;
    bad.digest[0] ^= 1;
    assert_int_equal(rafs_chunk_read(src, &bad, bi->compressor, bi->digester, out, &err), -EBADMSG);
    assert_true(strstr(err.msg, "digest mismatch") != NULL);
    free(out);
    free(raw);

    /* with the ci array attached, a bootstrap without chunk table still maps */
    if (rafs_image_attach_blob_meta(img, 0, m, &err)) fail_msg("%s", err.msg);
    rafs_blob_source_close(src);
    rafs_image_close(img);
}

static void test_chunk_info_from_ci_only(void **state)
{
    (void)state;
    size_t len;
    uint8_t *d = load(boot_path, &len);
    /* drop the chunk table from the ext superblock: chunks resolve through ci + blob.digest */
    rv_put64(d + 1152 + 24, 0);
    rv_put64(d + 1152 + 32, 0);
    rafs_image *img;
    cf_err err = {0};
    assert_int_equal(rafs_image_open_buf(d, len, &img, NULL), 0);
    struct rafs_chunk_ref r;
    assert_int_equal(rafs_file_chunk(img, 133, 0, &r, &err), -ENODATA);
    rafs_blob_source *src = open_blob(blob_path);
    struct rafs_blob_toc toc;
    struct rafs_blob_meta *m;
    assert_int_equal(rafs_blob_toc_read(src, &toc, NULL), 0);
    assert_int_equal(rafs_blob_meta_load(src, rafs_image_blob(img, 0), &m, NULL), 0);
    assert_int_equal(rafs_blob_meta_load_digests(src, &toc, m, NULL), 0);
    assert_int_equal(rafs_image_attach_blob_meta(img, 0, m, NULL), 0);
    assert_int_equal(rafs_file_chunk(img, 136, 0, &r, &err), 0);
    assert_int_equal(r.compressed_offset, 0x12dc);
    assert_true(r.compressed && r.has_digest);
    uint8_t *out = malloc(r.uncompressed_size);
    assert_int_equal(rafs_chunk_read(src, &r, RAFS_COMP_ZSTD, RAFS_DIGEST_BLAKE3, out, NULL), 0);
    free(out);
    rafs_blob_source_close(src);
    rafs_image_close(img);
    free(d);
}

static void test_zran_blob_meta_cache(void **state)
{
    (void)state;
    char path[4096];
    CF_REQUIRE_FIXTURE(
        "zran/233c72f2b6b698c07021c4da367cfe2dff4f049efbaa885ca0ff760ea297865a.blob.meta", path);
    size_t len;
    uint8_t *d = load(path, &len);
    struct rafs_blob_meta *m;
    cf_err err = {0};
    if (rafs_blob_meta_parse_cache(d, len, NULL, &m, &err)) fail_msg("%s", err.msg);
    assert_int_equal(m->count, 163);
    assert_int_equal(m->hdr.features, 0x0f);
    assert_int_equal(m->hdr.zran_count, 21);
    assert_int_equal(m->hdr.zran_offset, 163 * 24);
    assert_non_null(m->ctx);
    for (uint32_t i = 0; i < m->count; i++) assert_true(m->ci[i].flags & 0x02); /* ZRAN */
    rafs_blob_meta_free(m);
    /* wrong size / header damage are refused */
    assert_int_equal(rafs_blob_meta_parse_cache(d, len - 4096, NULL, &m, NULL), -EBADMSG);
    d[len - 4] ^= 1;
    assert_int_equal(rafs_blob_meta_parse_cache(d, len, NULL, &m, &err), -EBADMSG);
    assert_true(strstr(err.msg, "magic") != NULL);
    free(d);
}

static void test_toc_meta_blob_inline_bootstrap(void **state)
{
    (void)state;
    char path[4096];
    CF_REQUIRE_FIXTURE("toc/2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca",
                       path);
    rafs_blob_source *src = open_blob(path);
    struct rafs_blob_toc toc;
    cf_err err = {0};
    if (rafs_blob_toc_read(src, &toc, &err)) fail_msg("%s", err.msg);
    assert_int_equal(toc.count, 4);
    assert_non_null(rafs_blob_toc_find(&toc, "image.boot"));
    assert_int_equal(rafs_blob_toc_find(&toc, "image.boot")->compressor, RAFS_COMP_ZSTD);
    struct rafs_blob_meta *m;
    if (rafs_blob_meta_load_toc(src, &toc, NULL, &m, &err)) fail_msg("%s", err.msg);
    assert_int_equal(m->count, 3);
    uint8_t *boot;
    size_t blen;
    if (rafs_blob_read_bootstrap(src, &toc, &boot, &blen, &err)) fail_msg("%s", err.msg);
    assert_int_equal(blen, 20480);
    rafs_image *img;
    if (rafs_image_open_buf(boot, blen, &img, &err)) fail_msg("%s", err.msg);
    const struct rafs_blob_info *bi = rafs_image_blob(img, 0);
    assert_int_equal(bi->chunk_count, 3);
    assert_int_equal(m->count, bi->chunk_count);
    assert_int_equal(rafs_image_attach_blob_meta(img, 0, m, NULL), 0);
    uint64_t root = rafs_image_super(img)->root_nid;
    struct rafs_stat rst;
    assert_int_equal(rafs_stat(img, root, &rst, NULL), 0);
    assert_int_equal(rst.mode & S_IFMT, S_IFDIR);
    rafs_image_close(img);
    free(boot);
    rafs_blob_source_close(src);
}

static void test_v5_recognised(void **state)
{
    (void)state;
    static const char *names[] = {"v5/sha256-nocompress-repeatable",
                                  "v5/blake3-lz4_block-non_repeatable"};
    static const uint64_t flags[] = {0x9, 0x5};
    for (int i = 0; i < 2; i++) {
        char path[4096];
        CF_REQUIRE_FIXTURE(names[i], path);
        size_t len;
        uint8_t *d = load(path, &len);
        assert_int_equal(rafs_detect_version(d, len, NULL), 5);
        struct rafs_v5_info v;
        assert_int_equal(rafs_v5_probe(d, len, &v, NULL), 0);
        assert_int_equal(v.flags, flags[i]);
        assert_int_equal(v.inodes_count, 51);
        assert_int_equal(v.chunk_size, 0x100000);
        assert_int_equal(v.blob_count, 1);
        assert_string_equal(v.first_blob_id,
                            "7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00");
        rafs_image *img;
        cf_err err = {0};
        assert_int_equal(rafs_image_open(path, &img, &err), -ENOTSUP);
        assert_true(strstr(err.msg, "RAFS v5") != NULL);
        free(d);
    }
}

static rafs_image *open_variant(int (*patch)(uint8_t *, size_t))
{
    size_t len;
    uint8_t *d = load(boot_path, &len);
    assert_int_equal(patch(d, len), 0);
    rafs_image *img;
    cf_err err = {0};
    if (rafs_image_open_buf(d, len, &img, &err)) fail_msg("%s", err.msg);
    free(d);
    return img;
}

static int count_cb(const struct rafs_walk_entry *e, void *c)
{
    (void)e;
    (*(int *)c)++;
    return 0;
}

static void test_variant_symlink_whiteout_hardlink(void **state)
{
    (void)state;
    rafs_image *img = open_variant(rv_symlink);
    struct rafs_stat st;
    char buf[64];
    size_t len;
    int n = 0;
    assert_int_equal(rafs_stat(img, 136, &st, NULL), 0);
    assert_int_equal(st.mode, 0120777);
    assert_int_equal(rafs_readlink(img, 136, buf, sizeof(buf), &len, NULL), 0);
    assert_int_equal(len, 6);
    assert_string_equal(buf, "lib.rs");
    assert_int_equal(rafs_readlink(img, 136, buf, 3, &len, NULL), -ERANGE);
    assert_int_equal(rafs_walk(img, count_cb, &n, NULL), 0);
    assert_int_equal(n, 3);
    rafs_image_close(img);

    img = open_variant(rv_whiteout);
    assert_int_equal(rafs_stat(img, 136, &st, NULL), 0);
    assert_int_equal(st.mode, 020000);
    assert_int_equal(st.rdev, 0);
    assert_int_equal(rafs_rdev_major(0x1234567), 0x345);
    assert_int_equal(rafs_rdev_minor(0x1234567), 0x1267);
    n = 0;
    assert_int_equal(rafs_walk(img, count_cb, &n, NULL), 0);
    rafs_image_close(img);

    img = open_variant(rv_hardlink);
    uint64_t a, b;
    assert_int_equal(rafs_lookup(img, "/lib.rs", &a, NULL), 0);
    assert_int_equal(rafs_lookup(img, "/sync_io.rs", &b, NULL), 0);
    assert_int_equal(a, b);
    assert_int_equal(rafs_stat(img, a, &st, NULL), 0);
    assert_int_equal(st.nlink, 2);
    n = 0;
    assert_int_equal(rafs_walk(img, count_cb, &n, NULL), 0);
    assert_int_equal(n, 3);
    rafs_image_close(img);
}

static int patch_fifo(uint8_t *b, size_t len)
{
    return rv_special(b, len, 'p');
}

static void test_variant_compact_fifo(void **state)
{
    (void)state;
    rafs_image *img = open_variant(rv_compact);
    struct rafs_stat st;
    assert_int_equal(rafs_stat(img, 133, &st, NULL), 0);
    assert_int_equal(st.extended, 0);
    assert_int_equal(st.mode, 0100600);
    assert_int_equal(st.uid, 1000);
    assert_int_equal(st.gid, 100);
    assert_int_equal(st.nlink, 1);
    assert_int_equal(st.size, 16931);
    assert_int_equal(st.mtime, 0); /* superblock build time */
    struct rafs_chunk_ref r;
    assert_int_equal(rafs_file_chunk(img, 133, 0, &r, NULL), 0);
    assert_int_equal(r.compressed_size, 0x12dc);
    rafs_image_close(img);
    img = open_variant(patch_fifo);
    assert_int_equal(rafs_stat(img, 136, &st, NULL), 0);
    assert_int_equal(st.mode, 010640);
    int n = 0;
    assert_int_equal(rafs_walk(img, count_cb, &n, NULL), 0);
    assert_int_equal(n, 3);
    rafs_image_close(img);
}

static int patch_xattr_acl(uint8_t *b, size_t len)
{
    return rv_xattr(b, len, 1);
}

static void test_variant_xattrs(void **state)
{
    (void)state;
    rafs_image *img = open_variant(patch_xattr_acl);
    char list[256], val[32];
    size_t len;
    assert_int_equal(rafs_listxattr(img, 128, NULL, 0, &len, NULL), 0);
    assert_true(len < sizeof(list));
    assert_int_equal(rafs_listxattr(img, 128, list, 5, &len, NULL), -ERANGE);
    assert_int_equal(rafs_listxattr(img, 128, list, sizeof(list), &len, NULL), 0);
    static const char want[] = "user.foo\0trusted.overlay.opaque\0security.test\0"
                               "system.posix_acl_access";
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(list, want, sizeof(want));
    assert_int_equal(rafs_getxattr(img, 128, "user.foo", val, sizeof(val), &len, NULL), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(val, "bar", 3);
    assert_int_equal(
        rafs_getxattr(img, 128, "trusted.overlay.opaque", val, sizeof(val), &len, NULL), 0);
    assert_int_equal(len, 1);
    assert_int_equal(val[0], 'y');
    assert_int_equal(rafs_getxattr(img, 128, "security.test", val, 2, &len, NULL), -ERANGE);
    assert_int_equal(len, 4);
    assert_int_equal(rafs_getxattr(img, 128, "system.posix_acl_access", NULL, 0, &len, NULL), 0);
    assert_int_equal(len, 12);
    assert_int_equal(rafs_getxattr(img, 128, "user.nope", val, sizeof(val), &len, NULL), -ENODATA);
    /* the tree still reads with the dirents in a separate block */
    uint64_t nid;
    assert_int_equal(rafs_lookup(img, "/sync_io.rs", &nid, NULL), 0);
    assert_int_equal(nid, 136);
    rafs_image_close(img);
}

static void test_variant_loops(void **state)
{
    (void)state;
    size_t len;
    uint8_t *d = load(boot_path, &len);
    assert_int_equal(rv_loop(d, len), 0);
    rafs_image *img;
    cf_err err = {0};
    int n = 0;
    assert_int_equal(rafs_image_open_buf(d, len, &img, NULL), 0);
    assert_int_equal(rafs_walk(img, count_cb, &n, &err), -ELOOP);
    assert_true(strstr(err.msg, "reached twice") != NULL);
    /* lookups through the loop terminate (each step is one bounded lookup) */
    uint64_t nid;
    assert_int_equal(rafs_lookup(img, "/sync_io.rs/sync_io.rs/sync_io.rs/lib.rs", &nid, NULL), 0);
    assert_int_equal(nid, 133);
    rafs_image_close(img);
    free(d);

    d = load(boot_path, &len);
    assert_int_equal(rv_bad_dot(d, len), 0);
    assert_int_equal(rafs_image_open_buf(d, len, &img, NULL), 0);
    assert_int_equal(rafs_walk(img, count_cb, &n, &err), -EBADMSG);
    assert_true(strstr(err.msg, "'.'") != NULL);
    rafs_image_close(img);
    free(d);
}

int main(void)
{
    CF_REQUIRE_FIXTURE("v6/rafs-v6-2.2.boot", boot_path);
    CF_REQUIRE_FIXTURE("v6/" BLOB_ID, blob_path);
    snprintf(blob_dir, sizeof(blob_dir), "%s", blob_path);
    *strrchr(blob_dir, '/') = 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_superblock_and_blob_table),
        cmocka_unit_test(test_lookup_stat_readdir),
        cmocka_unit_test(test_chunk_mapping),
        cmocka_unit_test(test_file_content),
        cmocka_unit_test(test_file_read_threads),
        cmocka_unit_test(test_blob_toc_ci_digests),
        cmocka_unit_test(test_chunk_info_from_ci_only),
        cmocka_unit_test(test_zran_blob_meta_cache),
        cmocka_unit_test(test_toc_meta_blob_inline_bootstrap),
        cmocka_unit_test(test_v5_recognised),
        cmocka_unit_test(test_variant_symlink_whiteout_hardlink),
        cmocka_unit_test(test_variant_compact_fifo),
        cmocka_unit_test(test_variant_xattrs),
        cmocka_unit_test(test_variant_loops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
