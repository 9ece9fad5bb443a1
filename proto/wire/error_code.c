/* errno <-> wire error codes: the table of proto/error_code.h. */
#include "proto/error_code.h"

#include <errno.h>

#include "proto/msg.h"

uint32_t proto_error_from_errno(int rc, uint32_t fallback)
{
    switch (rc) {
    case -EINVAL:
        return PROTO_E_BAD_MESSAGE;
    case -ENOENT:
        return PROTO_E_NOT_FOUND;
    case -EACCES:
    case -EPERM:
        return PROTO_E_AUTH;
    case -ENOSPC:
    case -EDQUOT:
        return PROTO_E_NO_SPACE;
    case -ERANGE:
        return PROTO_E_RANGE;
    case -EBADMSG:
        return PROTO_E_DIGEST_MISMATCH;
    case -EBUSY:
    case -EAGAIN:
        return PROTO_E_BUSY;
    case -ESHUTDOWN:
        return PROTO_E_SHUTDOWN;
    case -EREMOTEIO:
        return PROTO_E_ORIGIN;
    case -EPROTONOSUPPORT:
        return PROTO_E_VERSION;
    case -ENOMEM:
    case -EIO:
        return PROTO_E_INTERNAL;
    default:
        return fallback;
    }
}

int proto_error_to_errno(uint32_t code)
{
    switch (code) {
    case PROTO_E_UNKNOWN_TASK:
    case PROTO_E_NOT_FOUND:
        return -ENOENT;
    case PROTO_E_RANGE:
        return -ERANGE;
    case PROTO_E_AUTH:
        return -EACCES;
    case PROTO_E_ORIGIN:
        return -EREMOTEIO;
    case PROTO_E_NO_SPACE:
        return -ENOSPC;
    case PROTO_E_BUSY:
        return -EBUSY;
    case PROTO_E_DIGEST_MISMATCH:
        return -EBADMSG;
    case PROTO_E_SHUTDOWN:
        return -ESHUTDOWN;
    case PROTO_E_VERSION:
        return -EPROTONOSUPPORT;
    case PROTO_E_IDENTITY:
        return -EPERM;
    default:
        return -EPROTO;
    }
}

const char *proto_error_code_name(uint32_t code)
{
    static const char *const names[] = {
        "?",         "VERSION", "BAD_MESSAGE",     "UNEXPECTED", "UNKNOWN_HOST", "UNKNOWN_TASK",
        "NOT_FOUND", "BUSY",    "DIGEST_MISMATCH", "MISMATCH",   "ORIGIN",       "AUTH",
        "NO_SPACE",  "RANGE",   "INTERNAL",        "SHUTDOWN",   "IDENTITY"};
    return code < sizeof(names) / sizeof(names[0]) ? names[code] : "UNKNOWN_CODE";
}
