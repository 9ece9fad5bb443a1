/* gRPC message framing (internal to proto_grpc; the unit test and fuzzer include it too).
 *
 * On the wire every message is a 5-byte prefix (flag byte, then a big-endian 32-bit length)
 * followed by the message bytes, cut into HTTP/2 DATA frames at arbitrary places. We advertise
 * no grpc-encoding, so a message with the compressed flag set is refused. */
#ifndef CF_GRPC_FRAME_H
#define CF_GRPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "cf/buf.h"
#include "cf/error.h"

#define CF_GRPC_PREFIX_LEN 5

/* Incremental reader of the one request message of a call. */
typedef struct cf_grpc_reader {
    size_t max;                      /* largest accepted message */
    uint8_t hdr[CF_GRPC_PREFIX_LEN]; /* prefix bytes seen so far */
    unsigned hdr_len;
    size_t want; /* announced length, once the prefix is complete */
    cf_buf msg;
    int complete;   /* the message is whole */
    size_t *budget; /* optional: bytes the owner lets all its readers hold together */
    size_t charged; /* taken from *budget, given back by cf_grpc_reader_free */
} cf_grpc_reader;

void cf_grpc_reader_init(cf_grpc_reader *r, size_t max);
/* Feeds the next body bytes. Errors (the message says why):
 * -EMSGSIZE  announced length over `max`, or over what is left of *budget (answer
 *            RESOURCE_EXHAUSTED), checked on the prefix, before any allocation;
 * -ENOTSUP   compressed flag set (UNIMPLEMENTED: no grpc-encoding is accepted);
 * -EBADMSG   a flag byte other than 0/1, or bytes after the first message (INTERNAL);
 * -ENOMEM. */
int cf_grpc_reader_feed(cf_grpc_reader *r, const uint8_t *p, size_t n, cf_err *err);
/* The body ended: returns the message (valid until cf_grpc_reader_free). An empty body is a
 * zero-length message. -EBADMSG if the body stopped inside a prefix or a message. */
int cf_grpc_reader_end(cf_grpc_reader *r, const uint8_t **msg, size_t *len, cf_err *err);
void cf_grpc_reader_free(cf_grpc_reader *r);

/* Writes the prefix of an uncompressed message of `len` bytes. */
void cf_grpc_prefix_encode(uint8_t out[CF_GRPC_PREFIX_LEN], uint32_t len);

/* The gRPC status for an error of cf_grpc_reader_*: RESOURCE_EXHAUSTED, UNIMPLEMENTED or
 * INTERNAL. */
int cf_grpc_status_of_errno(int e);

/* Appends `s` percent-encoded as grpc-message wants it: bytes outside 0x20..0x7E and '%'
 * become %XX (upper-case hex). At most `max_in` input bytes are encoded (longer messages are
 * cut: headers are bounded by the peer). Appends a NUL (not counted in out->len's meaning:
 * out->len includes it). Returns 0 or -ENOMEM. */
int cf_grpc_percent_encode(cf_buf *out, const char *s, size_t max_in);

#endif
