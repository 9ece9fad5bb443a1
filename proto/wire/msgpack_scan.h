/* Internal: bounds check of untrusted msgpack before msgpack-c unpacks it (msgpack_scan.c). */
#ifndef PROTO_MSGPACK_SCAN_H
#define PROTO_MSGPACK_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

#define MSGPACK_SCAN_MAX_DEPTH   8
#define MSGPACK_SCAN_MAX_OBJECTS 300000u

/* 0 when p[0..len) is exactly one well-formed msgpack object within the limits, else -EBADMSG
 * (message in err). */
int msgpack_scan(const uint8_t *p, size_t len, cf_err *err);

#endif
