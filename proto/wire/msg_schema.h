/* Internal: the table that describes every message body (keys, kinds, limits), shared by the
 * generic encoder, decoder and validator in msg_codec.c. Not installed. */
#ifndef PROTO_MSG_SCHEMA_H
#define PROTO_MSG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

enum field_kind {
    FK_STR,     /* const char *; max = byte limit; required => non-empty */
    FK_TASK,    /* const char * task id (always required) */
    FK_U8,      /* uint8_t,  max = largest value (0 = type max) */
    FK_U16,     /* uint16_t */
    FK_U32,     /* uint32_t */
    FK_U64,     /* uint64_t */
    FK_BOOL,    /* bool */
    FK_BIN,     /* const uint8_t * at off, size_t length at off2; max = byte limit */
    FK_RUNS,    /* const proto_piece_run * at off, size_t count at off2; flat u32 array */
    FK_STRS,    /* const char *const * at off, size_t count at off2; max = per-string limit */
    FK_MAPS,    /* array of nested structs (sub) at off, size_t count at off2 */
    FK_MAP,     /* nested struct (sub) embedded at off */
    FK_DIGESTS, /* const uint8_t * at off; bin of (uint32_t at off2) * 32 bytes */
};

#define FF_REQ 1u /* required on the wire and in structs */

typedef struct msg_desc msg_desc;

typedef struct field_desc {
    const char *key;
    uint8_t kind;
    uint8_t flags;
    uint16_t off;
    uint16_t off2;
    uint64_t max;        /* FK_STR/FK_BIN/FK_STRS byte limit; ints: value limit (0 = none) */
    uint64_t def;        /* ints: value when absent */
    size_t max_count;    /* FK_RUNS/FK_STRS/FK_MAPS: element limit */
    size_t min_count;    /* FK_RUNS/FK_STRS/FK_MAPS: element minimum */
    const msg_desc *sub; /* FK_MAPS/FK_MAP */
} field_desc;

struct msg_desc {
    uint8_t type;
    const char *name;
    const field_desc *fields;
    size_t nfields;
    size_t size;  /* sizeof the struct */
    bool payload; /* frames of this type carry a raw payload */
    /* Cross-field checks after per-field checks; NULL when none. */
    int (*check)(const void *s, cf_err *err);
};

/* Descriptor for a message type, NULL if unknown. */
const msg_desc *msg_schema_find(uint8_t type);

#endif
