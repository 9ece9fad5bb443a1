/* The HELLO handshake. The connecting side sends HELLO first; the accepting side checks it with
 * proto_handshake_check() and answers with its own HELLO, or with ERROR (code PROTO_E_VERSION,
 * the message from err) and closes. The connecting side checks the answer the same way. No other
 * message may precede a successful handshake (receivers answer PROTO_E_UNEXPECTED and close).
 *
 * Versions: each side speaks [min_version, version]. Compatible when the ranges overlap; the
 * connection then uses min(ours.version, theirs.version). Pure functions, thread-safe. */
#ifndef PROTO_HANDSHAKE_H
#define PROTO_HANDSHAKE_H

#include <stdint.h>

#include "cf/error.h"
#include "proto/msg.h"

#define PROTO_VERSION     1 /* protocol version this library speaks */
#define PROTO_MIN_VERSION 1 /* oldest version it still accepts */
/* Body limit servers set on a connection until its HELLO is accepted (a HELLO is < 300 bytes):
 * a stranger cannot make an unauthenticated connection hold more. */
#define PROTO_PRE_HELLO_MAX_BODY 1024

/* Fills a HELLO with this library's versions, node id (borrowed), role, caps and the payload
 * limit the caller accepts (0 = PROTO_MAX_PAYLOAD). */
void proto_hello_init(proto_hello *h, const char *node_id, proto_role role, uint64_t caps,
                      uint32_t max_payload);

/* Checks a received HELLO against ours. On success fills *version (negotiated) and
 * *peer_max_payload (the largest payload we may send them: their limit, 0 mapped to
 * PROTO_MAX_PAYLOAD, clamped to PROTO_MAX_PAYLOAD); either out pointer may be NULL.
 * Returns 0, or -EPROTONOSUPPORT with a message like
 *   "incompatible protocol version: peer 'node-a' speaks 2..3, we speak 1..1"
 * or -EBADMSG when theirs is inconsistent (min_version > version, version 0). */
int proto_handshake_check(const proto_hello *ours, const proto_hello *theirs, uint32_t *version,
                          uint32_t *peer_max_payload, cf_err *err);

/* Builds the ERROR message to send for a refused handshake (borrowed message text). */
void proto_handshake_refusal(proto_msg *out, const cf_err *err);

#endif
