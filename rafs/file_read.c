/* File content of a RAFS image from local blob files: map the range to chunks, read and
 * verify each chunk, copy the wanted bytes. Used by check/inspect and by unpack-style tools. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reader_priv.h"

struct rafs_blob_files {
    uint32_t count;
    int *fds;
    uint64_t *sizes;
};

void rafs_blob_files_close(rafs_blob_files *bf)
{
    if (!bf) return;
    for (uint32_t i = 0; i < bf->count; i++)
        if (bf->fds[i] >= 0) close(bf->fds[i]);
    free(bf->fds);
    free(bf->sizes);
    free(bf);
}

int rafs_blob_files_open_dir(const rafs_image *img, const char *dir, rafs_blob_files **out,
                             cf_err *err)
{
    uint32_t n = rafs_image_blob_count(img);
    rafs_blob_files *bf = calloc(1, sizeof(*bf));
    if (!bf) return cf_err_set(err, -ENOMEM, "out of memory");
    bf->fds = malloc(sizeof(int) * (n ? n : 1));
    bf->sizes = calloc(n ? n : 1, sizeof(uint64_t));
    if (!bf->fds || !bf->sizes) {
        rafs_blob_files_close(bf);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < n; i++) bf->fds[i] = -1;
    bf->count = n;
    for (uint32_t i = 0; i < n; i++) {
        const struct rafs_blob_info *bi = rafs_image_blob(img, i);
        char path[4096];
        struct stat st;
        if (strchr(bi->id, '/') || !strcmp(bi->id, ".") || !strcmp(bi->id, "..")) {
            rafs_blob_files_close(bf);
            return cf_err_set(err, -EBADMSG, "blob id '%s' cannot be a file name", bi->id);
        }
        snprintf(path, sizeof(path), "%s/%s", dir, bi->id);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            int e = fd < 0 ? -errno : -EINVAL;
            if (fd >= 0) close(fd);
            rafs_blob_files_close(bf);
            return cf_err_set(err, e, "data blob %s: %s", path,
                              e == -EINVAL ? "not a regular file" : cf_err_str(NULL, e));
        }
        bf->fds[i] = fd;
        bf->sizes[i] = (uint64_t)st.st_size;
    }
    *out = bf;
    return 0;
}

int rafs_blob_files_fd(const rafs_blob_files *bf, uint32_t idx)
{
    return idx < bf->count ? bf->fds[idx] : -1;
}

uint64_t rafs_blob_files_size(const rafs_blob_files *bf, uint32_t idx)
{
    return idx < bf->count ? bf->sizes[idx] : 0;
}

int rafs_file_read(const rafs_image *img, const rafs_blob_files *bf, uint64_t nid, uint64_t offset,
                   void *buf, size_t len, size_t *nread, cf_err *err)
{
    struct rafs_stat st;
    uint64_t count;
    *nread = 0;
    int rc = rafs_stat(img, nid, &st, err);
    if (rc) return rc;
    if ((rc = rafs_file_chunk_count(img, nid, &count, err))) return rc;
    if (offset >= st.size || len == 0) return 0;
    if (len > st.size - offset) len = (size_t)(st.size - offset);
    uint64_t cs = img->sb.chunk_size;
    uint8_t *chunk = NULL;
    size_t done = 0;
    while (done < len) {
        uint64_t pos = offset + done, idx = pos / cs;
        struct rafs_chunk_ref ref;
        if ((rc = rafs_file_chunk(img, nid, idx, &ref, err))) break;
        const struct rafs_blob_info *bi = &img->blobs[ref.blob_index];
        int fd = rafs_blob_files_fd(bf, ref.blob_index);
        if (fd < 0) {
            rc = cf_err_set(err, -ENOENT, "blob %s not open", bi->id);
            break;
        }
        if (!chunk && !(chunk = malloc(cs))) {
            rc = cf_err_set(err, -ENOMEM, "out of memory");
            break;
        }
        if ((rc = rafs_chunk_read(fd, &ref, bi->compressor, bi->digester, chunk, err))) break;
        uint64_t in = pos - ref.file_offset;
        size_t n = (size_t)(ref.uncompressed_size - in);
        if (n > len - done) n = len - done;
        memcpy((uint8_t *)buf + done, chunk + in, n);
        done += n;
    }
    free(chunk);
    *nread = done;
    return rc;
}
