/* The local peer's pins (private to the core): a mounted image's blobs are pinned in the
 * peer's cache (never evicted while a container may read them) and unpinned when the image
 * goes. A blob the peer has not seen yet cannot be pinned: the caller retries later. */
#ifndef SNAP_PEER_H
#define SNAP_PEER_H

#include <stddef.h>

#include "cf/error.h"

/* pin != 0: pin, else unpin, each blob id (hex, no "sha256:"). *missing = ids the peer does
 * not hold yet (pin) or does not know (unpin). Returns 0 or the first connection error. */
int snap_peer_pin(const char *socket, char *const *ids, size_t n, int pin, size_t *missing,
                  cf_err *err);

#endif
