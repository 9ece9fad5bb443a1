/* chunkfly-mount --image (tool-internal): from an image reference to the image's bootstrap on
 * disk and the registry its blobs come from.
 *
 * Resolves REF (docker's defaults), reads credentials from the docker config.json
 * ($DOCKER_CONFIG, else ~/.docker), fetches the manifest (an index or manifest list is followed
 * to the platform's manifest, a Nydus one preferred), checks it is a Nydus RAFS v6 image
 * (proto_nydus_view), fetches the bootstrap layer verified against its digest and extracts
 * image/image.boot (size-capped, only the entries a Nydus bootstrap layer holds) to
 * <work_dir>/<layer digest hex>.image.boot, written atomically. A file already there is reused
 * and nothing but the manifest is fetched.
 * Blocking (network). Errors: 0 or a negative errno with `err` naming the image and the step. */
#ifndef MOUNT_IMAGE_PULL_H
#define MOUNT_IMAGE_PULL_H

#include <stdbool.h>

#include "cf/error.h"

#define IMAGE_BOOT_TGZ_MAX (512ull << 20) /* bootstrap layer (compressed) */
#define IMAGE_BOOT_MAX     (2ull << 30)   /* image.boot */

struct image_pull_opts {
    const char *ref;
    const char *work_dir; /* created if missing */
    const char *platform; /* "os/arch[/variant]", NULL = this host's */
    bool plain_http;      /* else https, http for loopback registries */
};

struct image_pulled {
    char bootstrap[4096]; /* the extracted image.boot */
    char host[256];       /* registry API host[:port] */
    char repo[256];
    bool plain_http;
    char *auth_b64; /* base64 "user:pass" from the docker config, or NULL; secret, owned */
    char manifest_digest[72];
    bool cached; /* the bootstrap was already extracted: not fetched */
};

int image_pull(const struct image_pull_opts *o, struct image_pulled *out, cf_err *err);
/* Extracts image/image.boot (or a legacy root-level image.boot) of the gzip tar read from
 * tgz_fd (from its current position) into out_fd. Refused (-EBADMSG): not a gzip tar, an entry
 * other than the directories "image"/".", image.boot and image/<hex>.blob.meta files (links,
 * devices, absolute or ".." names included), two image.boot entries, none, over 8192 entries;
 * -EFBIG: image.boot over IMAGE_BOOT_MAX. Exposed for the fuzzer. */
int image_extract_boot(int tgz_fd, int out_fd, cf_err *err);
/* Frees (and wipes) what out owns. */
void image_pulled_clear(struct image_pulled *p);

#endif
