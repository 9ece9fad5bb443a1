/* HELLO handshake: version range negotiation and payload limits. */
#include "proto/handshake.h"

#include <string.h>

#include "proto/frame.h"

void proto_hello_init(proto_hello *h, const char *node_id, proto_role role, uint64_t caps,
                      uint32_t max_payload)
{
    memset(h, 0, sizeof(*h));
    h->version = PROTO_VERSION;
    h->min_version = PROTO_MIN_VERSION;
    h->node_id = node_id;
    h->role = (uint8_t)role;
    h->caps = caps;
    h->max_payload = max_payload > PROTO_MAX_PAYLOAD ? PROTO_MAX_PAYLOAD : max_payload;
}

int proto_handshake_check(const proto_hello *ours, const proto_hello *theirs, uint32_t *version,
                          uint32_t *peer_max_payload, cf_err *err)
{
    const char *who = theirs->node_id && *theirs->node_id ? theirs->node_id : "?";
    if (theirs->version == 0 || theirs->min_version > theirs->version)
        return cf_err_set(err, -EBADMSG, "peer '%s' sent an invalid version range %u..%u", who,
                          theirs->min_version, theirs->version);
    if (theirs->min_version > ours->version || ours->min_version > theirs->version)
        return cf_err_set(err, -EPROTONOSUPPORT,
                          "incompatible protocol version: peer '%s' speaks %u..%u, we speak %u..%u",
                          who, theirs->min_version, theirs->version, ours->min_version,
                          ours->version);
    if (version) *version = theirs->version < ours->version ? theirs->version : ours->version;
    if (peer_max_payload) {
        uint32_t mp = theirs->max_payload;
        *peer_max_payload = (mp == 0 || mp > PROTO_MAX_PAYLOAD) ? PROTO_MAX_PAYLOAD : mp;
    }
    return 0;
}

void proto_handshake_refusal(proto_msg *out, const cf_err *err)
{
    memset(out, 0, sizeof(*out));
    out->type = PROTO_MSG_ERROR;
    out->u.error.code = PROTO_E_VERSION;
    out->u.error.message = err && err->msg[0] ? err->msg : "incompatible protocol version";
}
