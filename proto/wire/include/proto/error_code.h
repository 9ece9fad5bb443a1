/* The one mapping between errno values (what our functions return) and the wire error codes
 * (enum proto_error_code in proto/msg.h, carried by ERROR frames). Every sender of an ERROR
 * derives its code here and every receiver turns a code back into an errno here, so a failure
 * means the same thing on both sides of the local API and the mesh.
 *
 *   errno                                    wire code          back to errno
 *   -EINVAL                                  BAD_MESSAGE        -EPROTO
 *   -ENOENT                                  NOT_FOUND          -ENOENT (UNKNOWN_TASK too)
 *   -EACCES, -EPERM                          AUTH               -EACCES
 *   -ENOSPC, -EDQUOT                         NO_SPACE           -ENOSPC
 *   -ERANGE                                  RANGE              -ERANGE
 *   -EBADMSG                                 DIGEST_MISMATCH    -EBADMSG
 *   -EBUSY, -EAGAIN                          BUSY               -EBUSY
 *   -ESHUTDOWN                               SHUTDOWN           -ESHUTDOWN
 *   -EREMOTEIO                               ORIGIN             -EREMOTEIO
 *   -EPROTONOSUPPORT                         VERSION            -EPROTONOSUPPORT
 *   -ENOMEM, -EIO                            INTERNAL           -EPROTO
 *   anything else                            the caller's fallback
 * Pure functions, thread-safe. */
#ifndef PROTO_ERROR_CODE_H
#define PROTO_ERROR_CODE_H

#include <stdint.h>

/* Wire code for a negative errno; `fallback` for errnos the table does not list (e.g. a task
 * whose origin fetch failed passes PROTO_E_ORIGIN, the local API PROTO_E_INTERNAL). */
uint32_t proto_error_from_errno(int rc, uint32_t fallback);
/* Negative errno for a wire code (-EPROTO for codes without a closer errno). */
int proto_error_to_errno(uint32_t code);
/* "NOT_FOUND", ... ("UNKNOWN_CODE" past the table). Never NULL. */
const char *proto_error_code_name(uint32_t code);

#endif
