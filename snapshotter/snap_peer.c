/* Pinning an image's blobs in the local peer through its local API (client library). */
#include "snap_peer.h"

#include <stdio.h>

#include "cf/log.h"
#include "client/local_api_client.h"

int snap_peer_pin(const char *socket, char *const *ids, size_t n, int pin, size_t *missing,
                  cf_err *err)
{
    *missing = 0;
    if (!n) return 0;
    client_local *c;
    client_local_opts o = {.idle_timeout_ms = 5000, .node_id = "chunkfly-snapshotter"};
    int rc = client_local_connect(socket, &o, &c, err);
    if (rc) return rc;
    for (size_t i = 0; i < n && !rc; i++) {
        char task[80];
        cf_err e = {0};
        snprintf(task, sizeof(task), "sha256:%s", ids[i]);
        int r = pin ? client_local_pin(c, task, &e) : client_local_unpin(c, task, &e);
        if (r == -ENOENT)
            (*missing)++;
        else if (r)
            rc = cf_err_set(err, r, "%s %s in the peer: %s", pin ? "pinning" : "unpinning", task,
                            cf_err_str(&e, r));
    }
    client_local_close(c);
    return rc;
}
