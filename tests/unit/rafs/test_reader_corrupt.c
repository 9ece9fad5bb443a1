/* Malformed input never crashes, hangs or over-allocates the RAFS reader: truncation at every
 * length and single-bit flips at every bit of the real v6 bootstrap and of its data blob, plus
 * targeted huge counts / offsets past EOF. Fields the format pins down must reject every flip;
 * the rest must at least be read safely (run this under the Sanitize build). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cf/file_io.h"
#include "rafs/blob.h"
#include "rafs/reader.h"
#include "rafs_variants.h"
#include "test_env.h"

#define BLOB_ID   "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"
#define BLOB_SIZE 14554u

static uint8_t *boot, *blob;
static size_t boot_len, blob_len;

/* ---- bootstrap ------------------------------------------------------------------------- */

struct ex_ctx {
    const rafs_image *img;
    cf_err *err;
};

static int xa_cb(const char *n, const void *v, size_t l, void *c)
{
    (void)v;
    (void)c;
    assert_true(strlen(n) > 0 && l < 65536);
    return 0;
}

static int ex_cb(const struct rafs_walk_entry *e, void *arg)
{
    struct ex_ctx *x = arg;
    char buf[RAFS_PATH_MAX];
    size_t len;
    uint64_t nid;
    int rc = rafs_xattr_foreach(x->img, e->nid, xa_cb, NULL, x->err);
    if (!rc) rc = rafs_listxattr(x->img, e->nid, buf, sizeof(buf), &len, x->err);
    if (!rc && (e->st->mode & S_IFMT) == S_IFLNK)
        rc = rafs_readlink(x->img, e->nid, buf, sizeof(buf), &len, x->err);
    if (!rc && (e->st->mode & S_IFMT) == S_IFREG) {
        struct rafs_chunk_ref *refs;
        size_t n;
        rc = rafs_file_map(x->img, e->nid, 0, UINT64_MAX, &refs, &n, x->err);
        if (!rc) free(refs);
    }
    if (!rc && e->depth == 1)
        rc = rafs_lookup_child(x->img, e->parent_nid, e->name, strlen(e->name), &nid, x->err);
    return rc;
}

/* Opens a (possibly corrupt) bootstrap and reads everything reachable. Returns 0 when the
 * whole image was accepted, else the first error; error messages must be set. */
static int exercise(const uint8_t *d, size_t len)
{
    rafs_image *img;
    cf_err err = {0};
    int rc = rafs_image_open_buf(d, len, &img, &err);
    if (rc) {
        assert_true(rc < 0);
        assert_true(err.msg[0] != 0);
        return rc;
    }
    struct ex_ctx x = {img, &err};
    cf_err_clear(&err);
    rc = rafs_walk(img, ex_cb, &x, &err);
    if (rc) assert_true(err.msg[0] != 0);
    uint64_t nid;
    rafs_lookup(img, "/lib.rs", &nid, NULL);
    rafs_lookup(img, "/sync_io.rs/x", &nid, NULL);
    for (uint32_t i = 0; i < rafs_image_prefetch_count(img); i++)
        rafs_stat(img, rafs_image_prefetch_nid(img, i), &(struct rafs_stat){0}, NULL);
    rafs_image_close(img);
    return rc;
}

static void test_bootstrap_truncation(void **state)
{
    (void)state;
    assert_int_equal(exercise(boot, boot_len), 0);
    for (size_t len = 0; len < boot_len; len++) assert_true(exercise(boot, len) < 0);
}

struct field {
    size_t off, len;
    const char *name;
};

/* Fields where the format (nydus-format.md §2.2-2.5, nydusd's checks) leaves no freedom:
 * any single-bit flip must be refused when the image is opened and walked. */
static const struct field strict_boot[] = {
    {1024, 4, "sb magic"},
    {1028, 4, "sb checksum"},
    {1036, 1, "sb blkszbits"},
    {1037, 1, "sb extslots"},
    {1068, 4, "sb xattr_blkaddr"},
    {1104, 4, "sb feature_incompat"},
    {1108, 2, "sb u1"},
    {1110, 2, "sb extra_devices"},
    {1112, 2, "sb devt_slotoff"},
    {1160, 8, "ext blob_table_offset"},
    {1168, 4, "ext blob_table_size"},
    {1172, 4, "ext chunk_size"},
    {1184, 8, "ext chunk_table_size"},
    {1200, 4, "ext prefetch_table_size"},
    {1408, 64, "devslot tag"},
    {1472, 4, "devslot blocks"},
    {4096, 64, "blob id"},
    {4160, 4, "blob index"},
    {4164, 4, "blob chunk_size"},
    {4168, 4, "blob chunk_count"},
    {4192, 8, "blob uncompressed_size"},
    {4224, 8, "blob ci_uncompressed_size"},
    {0x3000, 2, "root i_format"},
    {0x3040, 8, "dirent '.' nid"},
    {0x3048, 2, "dirent '.' nameoff"},
    {0x304a, 1, "dirent '.' type"},
    {0x3060, 2, "dirent 'lib.rs' nameoff"},
    {0x30a0, 2, "lib.rs i_format"},
    {0x30a8, 8, "lib.rs i_size"},
    {0x30e0, 8, "lib.rs chunk index"},
    {0x3108, 8, "sync_io.rs i_size"},
    {0x3140, 8, "sync_io.rs chunk index"},
    {0x4020, 4, "chunk table blob_index"},
    {0x402c, 4, "chunk table uncompressed_size"},
    {0x4038, 8, "chunk table uncompressed_offset"},
    {0x4048, 4, "chunk table ci index"},
};

static void test_bootstrap_bit_flips(void **state)
{
    (void)state;
    uint8_t *d = malloc(boot_len);
    size_t accepted = 0, total = 0;
    memcpy(d, boot, boot_len);
    for (size_t i = 0; i < boot_len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            d[i] ^= (uint8_t)(1u << bit);
            int rc = exercise(d, boot_len);
            d[i] ^= (uint8_t)(1u << bit);
            total++;
            if (rc == 0) {
                accepted++;
                for (size_t f = 0; f < sizeof(strict_boot) / sizeof(strict_boot[0]); f++)
                    if (i >= strict_boot[f].off && i < strict_boot[f].off + strict_boot[f].len)
                        fail_msg("flip of bit %d at offset %zu (%s) was accepted", bit, i,
                                 strict_boot[f].name);
            }
        }
    }
    print_message("bootstrap bit flips: %zu of %zu accepted (padding, names, times, ids...)\n",
                  accepted, total);
    free(d);
}

static void put32(uint8_t *p, uint32_t v)
{
    rv_put32(p, v);
}

static void put64(uint8_t *p, uint64_t v)
{
    rv_put64(p, v);
}

static void expect_reject(void (*patch)(uint8_t *), const char *what, int want)
{
    uint8_t *d = malloc(boot_len);
    memcpy(d, boot, boot_len);
    patch(d);
    rafs_image *img;
    cf_err err = {0};
    int rc = rafs_image_open_buf(d, boot_len, &img, &err);
    if (rc == 0) {
        rc = rafs_walk(img, ex_cb, &(struct ex_ctx){img, &err}, &err);
        rafs_image_close(img);
    }
    if (rc == 0) fail_msg("%s: accepted", what);
    if (want && rc != want) fail_msg("%s: got %d (%s), want %d", what, rc, err.msg, want);
    print_message("%-36s -> %s\n", what, err.msg);
    free(d);
}

static void p_ct_huge(uint8_t *d)
{
    put64(d + 1152 + 32, 80ull * 0x0333333333333333ull);
}
static void p_ct_off(uint8_t *d)
{
    put64(d + 1152 + 24, 0xfffffffffffff000ull);
}
static void p_pf_huge(uint8_t *d)
{
    put32(d + 1152 + 48, 0xfffffffc), put64(d + 1152 + 40, 4096);
}
static void p_pf_nid(uint8_t *d)
{
    /* one prefetch entry (in the unused meta block) naming a nid far past EOF */
    put64(d + 1152 + 40, 0x2000), put32(d + 1152 + 48, 4), put32(d + 0x2000, 0xfffffff0);
}
static void p_chunks_huge(uint8_t *d)
{
    put32(d + 4096 + 72, 0xffffffff);
}
static void p_ndev_max(uint8_t *d)
{
    d[1110] = 0xfe;
}
static void p_root_nid(uint8_t *d)
{
    d[1038] = 0xff, d[1039] = 0xff;
}
static void p_dir_size(uint8_t *d)
{
    put64(d + 0x3008, 0x7fffffffffffffffull);
}
static void p_dir_plain_far(uint8_t *d)
{
    d[0x3000] = 0x01, put32(d + 0x3010, 0xfffffff0);
}
static void p_file_size(uint8_t *d)
{
    put64(d + 0x30a8, 1ull << 62);
}
static void p_dirent_nid(uint8_t *d)
{
    put64(d + 0x3058, 0x7fffffffffffffffull);
}
static void p_nameoff(uint8_t *d)
{
    d[0x3048] = 0xff, d[0x3049] = 0x0f;
}
static void p_xattr_count(uint8_t *d)
{
    d[0x30a2] = 0xff, d[0x30a3] = 0xff;
}
static void p_chunk_dev(uint8_t *d)
{
    d[0x30e2] = 0x07;
}
static void p_chunk_ci(uint8_t *d)
{
    d[0x30e3] = 0xff;
}
static void p_chunk_hole(uint8_t *d)
{
    put32(d + 0x30e4, 0xffffffff);
}
static void p_loop(uint8_t *d)
{
    rv_loop(d, RV_SIZE);
}
static void p_self_loop(uint8_t *d)
{
    /* "sync_io.rs" as a directory that is... the root's own "." entry again */
    rv_put64(d + RV_DIRENTS + 36, 128), d[RV_DIRENTS + 46] = 2;
}
static void p_compressed_layout(uint8_t *d)
{
    d[0x30a0] = 0x03;
}
static void p_unsorted(uint8_t *d)
{
    /* swap the names "lib.rs"/"sync_i" prefixes: entries no longer sorted */
    memcpy(d + RV_DIRENTS + 48 + 3, "zib.rs", 6);
}

static void test_bootstrap_targeted(void **state)
{
    (void)state;
    expect_reject(p_ct_huge, "chunk table size huge", -EBADMSG);
    expect_reject(p_ct_off, "chunk table offset past EOF", -EBADMSG);
    expect_reject(p_pf_huge, "prefetch table size huge", -EBADMSG);
    expect_reject(p_pf_nid, "prefetch nid past EOF", -EBADMSG);
    expect_reject(p_chunks_huge, "blob chunk count 2^32-1", -EBADMSG);
    expect_reject(p_ndev_max, "extra_devices 254", -EBADMSG);
    expect_reject(p_root_nid, "root nid 65535", -EBADMSG);
    expect_reject(p_dir_size, "root dir size 2^63", -EBADMSG);
    expect_reject(p_dir_plain_far, "dir blocks past EOF", -EBADMSG);
    expect_reject(p_file_size, "file size 2^62", -EBADMSG);
    expect_reject(p_dirent_nid, "dirent nid 2^63", -EBADMSG);
    expect_reject(p_nameoff, "dirent nameoff past block", -EBADMSG);
    expect_reject(p_xattr_count, "xattr icount 65535", -EBADMSG);
    expect_reject(p_chunk_dev, "chunk device 7 of 1", -EBADMSG);
    expect_reject(p_chunk_ci, "chunk ci index 0xff0000", -EBADMSG);
    expect_reject(p_chunk_hole, "chunk hole", -EBADMSG);
    expect_reject(p_loop, "directory loop to root", -ELOOP);
    expect_reject(p_self_loop, "directory entry = root", -ELOOP);
    expect_reject(p_compressed_layout, "EROFS compressed layout", -ENOTSUP);
    expect_reject(p_unsorted, "unsorted dirents", -EBADMSG);
}

/* ---- data blob ------------------------------------------------------------------------- */

static rafs_image *img_for_blob;

/* The whole blob pipeline of `check -D`: TOC + digest, every TOC item's SHA-256, the tar
 * chain + image.blob digest, the ci array, blob.digest, and every chunk with its digest.
 * `size` is what the caller made the blob's size: the source must report it. */
static int blob_pipeline(const rafs_blob_source *src, uint64_t size)
{
    const struct rafs_blob_info *bi = rafs_image_blob(img_for_blob, 0);
    struct rafs_blob_toc toc;
    struct rafs_blob_meta *m = NULL;
    cf_err err = {0};
    uint8_t *buf = NULL;
    uint64_t got_size;
    assert_int_equal(rafs_blob_source_size(src, &got_size), 0);
    assert_int_equal(got_size, size);
    int rc = rafs_blob_toc_read(src, &toc, &err);
    if (!rc) rc = rafs_blob_toc_verify(&toc, bi, &err);
    for (uint32_t i = 0; !rc && i < toc.count; i++) {
        uint8_t *c;
        size_t l;
        if (!strcmp(toc.items[i].name, "image.blob")) continue;
        rc = rafs_blob_toc_read_item(src, &toc.items[i], 1 << 20, &c, &l, &err);
        if (!rc) free(c);
    }
    if (!rc && (rc = rafs_blob_tar_verify(src, &toc, &err)) > 0) rc = 0;
    if (!rc) rc = rafs_blob_meta_load(src, bi, &m, &err);
    if (!rc) rc = rafs_blob_meta_load_digests(src, &toc, m, &err);
    if (!rc) buf = malloc(RAFS_MAX_CHUNK_SIZE);
    for (uint32_t i = 0; !rc && i < m->count; i++) {
        struct rafs_chunk_ref r = {.blob_id = bi->id, .ci_index = i, .has_digest = 1};
        r.compressed_offset = m->ci[i].compressed_offset;
        r.compressed_size = m->ci[i].compressed_size;
        r.uncompressed_size = m->ci[i].uncompressed_size;
        r.compressed = (m->ci[i].flags & 1) != 0;
        memcpy(r.digest, m->digests[i], 32);
        rc = rafs_chunk_read(src, &r, bi->compressor, bi->digester, buf, &err);
    }
    if (rc) assert_true(err.msg[0] != 0);
    free(buf);
    rafs_blob_meta_free(m);
    return rc;
}

/* The blob in an unlinked temporary file, read through a local file source that owns it. */
static rafs_blob_source *tmp_blob(int *fd_out)
{
    char path[] = "/tmp/cf_rafs_blobXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(cf_pwrite_full(fd, blob, blob_len, 0), 0);
    rafs_blob_source *src;
    assert_int_equal(rafs_blob_source_from_fd(fd, true, &src, NULL), 0);
    if (fd_out) *fd_out = fd;
    return src;
}

static void test_blob_truncation(void **state)
{
    (void)state;
    int fd;
    rafs_blob_source *src = tmp_blob(&fd);
    assert_int_equal(blob_pipeline(src, blob_len), 0);
    for (size_t len = blob_len; len-- > 0;) {
        assert_int_equal(ftruncate(fd, (off_t)len), 0);
        assert_true(blob_pipeline(src, len) < 0);
    }
    rafs_blob_source_close(src);
    /* the same through memory sources holding every prefix */
    for (size_t len = blob_len; len-- > 0;) {
        assert_int_equal(rafs_blob_source_from_mem(blob, len, false, &src, NULL), 0);
        assert_true(blob_pipeline(src, len) < 0);
        rafs_blob_source_close(src);
    }
}

/* A numeric tar field may end in NUL or space: flipping 0x00 <-> 0x20 there keeps the header
 * equivalent. Every other flip anywhere in the blob must be detected. */
static int tar_equivalent(size_t off, uint8_t orig, int bit)
{
    static const size_t hdrs[] = {0x1e7a, 0x309a, 0x32da, 0x36da};
    for (size_t h = 0; h < 4; h++) {
        if (off < hdrs[h] || off >= hdrs[h] + 512) continue;
        size_t f = off - hdrs[h];
        if (f >= 100 && f < 156 && bit == 5 && (orig == 0 || orig == 0x20)) return 1;
        if (f >= 100 && f < 156 && bit == 4 && orig == '0') return 1; /* leading 0 -> space */
        /* mode/uid/gid are all zero bytes in nydus headers and are not interpreted */
        if (f >= 100 && f < 124) return 1;
        /* linkname, uname, gname, devmajor/minor, prefix: not interpreted */
        if (f >= 157 && f != 257 && !(f > 257 && f < 262)) return 1;
    }
    return 0;
}

/* Through a memory source over a copy of the blob, flipped in place (the source reads the
 * live buffer). */
static void test_blob_bit_flips(void **state)
{
    (void)state;
    uint8_t *copy = malloc(blob_len);
    assert_non_null(copy);
    memcpy(copy, blob, blob_len);
    rafs_blob_source *src;
    assert_int_equal(rafs_blob_source_from_mem(copy, blob_len, true, &src, NULL), 0);
    size_t accepted = 0;
    for (size_t i = 0; i < blob_len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            copy[i] = blob[i] ^ (uint8_t)(1u << bit);
            int rc = blob_pipeline(src, blob_len);
            copy[i] = blob[i];
            if (rc == 0) {
                accepted++;
                if (!tar_equivalent(i, blob[i], bit))
                    fail_msg("blob flip of bit %d at offset 0x%zx went unnoticed", bit, i);
            }
        }
    }
    print_message("blob bit flips: %zu of %zu accepted (all in uninterpreted tar fields)\n",
                  accepted, blob_len * 8);
    rafs_blob_source_close(src); /* frees copy */
}

static void test_ci_header_fields(void **state)
{
    (void)state;
    const uint8_t *h = blob + 0x209a;
    struct rafs_ci_header_info hi;
    assert_int_equal(rafs_ci_header_parse(h, &hi, NULL), 0);
    uint8_t c[4096];
    /* magic, features, compressor, entries, offset, sizes, zran fields, magic2 */
    for (size_t i = 0; i < 4096; i++) {
        if (i >= 60 && i < 4092) continue;
        for (int bit = 0; bit < 8; bit++) {
            memcpy(c, h, sizeof(c));
            c[i] ^= (uint8_t)(1u << bit);
            struct rafs_blob_meta *m = NULL;
            cf_err err = {0};
            if (rafs_ci_header_parse(c, &hi, &err) == 0) {
                /* header-valid variants must then disagree with the blob table */
                const struct rafs_blob_info *bi = rafs_image_blob(img_for_blob, 0);
                int same = hi.features == bi->features && hi.entries == bi->chunk_count &&
                           hi.ci_offset == bi->ci_offset &&
                           hi.ci_compressed_size == bi->ci_compressed_size &&
                           hi.ci_uncompressed_size == bi->ci_uncompressed_size &&
                           hi.ci_compressor == bi->ci_compressor;
                if (same) fail_msg("ci header flip bit %d at %zu unnoticed", bit, i);
                if (hi.ci_uncompressed_size <= 1024 && hi.ci_compressor == RAFS_COMP_NONE) {
                    uint8_t ci[1024] = {0};
                    if (rafs_blob_meta_decode(&hi, ci, hi.ci_uncompressed_size, 0x1e7a, 0x9000, &m,
                                              NULL) == 0)
                        rafs_blob_meta_free(m);
                }
            } else {
                assert_true(err.msg[0] != 0);
            }
        }
    }
}

static void test_toc_tail_fuzzish(void **state)
{
    (void)state;
    /* TOC parse on every suffix of the blob (tails shorter than the real one included) */
    for (size_t k = 0; k <= blob_len && k <= 4096; k++) {
        struct rafs_blob_toc toc;
        cf_err err = {0};
        int rc = rafs_blob_toc_parse(blob + blob_len - k, k, blob_len, &toc, &err);
        if (k < 1024)
            assert_true(rc < 0 && err.msg[0]);
        else
            assert_int_equal(rc, 0);
    }
}

/* Regression (found by fuzz_toc): an uncompressed TOC entry whose two sizes differ must not
 * be read past its buffer. The 2.2-era "image.blob" entry is exactly that (7802 / 36864). */
static void test_toc_item_size_mismatch(void **state)
{
    (void)state;
    rafs_blob_source *src = tmp_blob(NULL);
    struct rafs_blob_toc toc;
    assert_int_equal(rafs_blob_toc_read(src, &toc, NULL), 0);
    const struct rafs_toc_item *it = rafs_blob_toc_find(&toc, "image.blob");
    assert_non_null(it);
    assert_int_equal(it->compressor, RAFS_COMP_NONE);
    assert_true(it->compressed_size != it->uncompressed_size);
    uint8_t *out = NULL;
    size_t len = 0;
    cf_err err = {0};
    assert_int_equal(rafs_blob_toc_read_item(src, it, 1 << 20, &out, &len, &err), -EBADMSG);
    assert_null(out);
    assert_true(strstr(err.msg, "sizes") != NULL);
    rafs_blob_source_close(src);
}

int main(void)
{
    char bp[4096], dp[4096];
    CF_REQUIRE_FIXTURE("v6/rafs-v6-2.2.boot", bp);
    CF_REQUIRE_FIXTURE("v6/" BLOB_ID, dp);
    if (cf_read_file(bp, 1 << 20, &boot, &boot_len, NULL) ||
        cf_read_file(dp, 1 << 20, &blob, &blob_len, NULL) || boot_len != RV_SIZE ||
        blob_len != BLOB_SIZE) {
        fprintf(stderr, "fixtures unreadable or not the expected files\n");
        return 1;
    }
    if (rafs_image_open_buf(boot, boot_len, &img_for_blob, NULL)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bootstrap_truncation),   cmocka_unit_test(test_bootstrap_targeted),
        cmocka_unit_test(test_bootstrap_bit_flips),    cmocka_unit_test(test_blob_truncation),
        cmocka_unit_test(test_ci_header_fields),       cmocka_unit_test(test_toc_tail_fuzzish),
        cmocka_unit_test(test_toc_item_size_mismatch), cmocka_unit_test(test_blob_bit_flips),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rafs_image_close(img_for_blob);
    free(boot);
    free(blob);
    return rc;
}
