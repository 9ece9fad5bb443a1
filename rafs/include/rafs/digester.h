/* Nydus chunk digesters (on-disk enum rafs_digester) mapped onto the shared cf digests. */
#ifndef RAFS_DIGESTER_H
#define RAFS_DIGESTER_H

#include "cf/digest.h"
#include "rafs/ondisk.h"

static inline enum cf_digest_algo rafs_cf_digest_algo(enum rafs_digester d)
{
    return d == RAFS_DIGEST_SHA256 ? CF_DIGEST_SHA256 : CF_DIGEST_BLAKE3;
}

#endif
