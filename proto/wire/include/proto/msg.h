/* Chunkfly protocol messages: typed structs and their msgpack codec (docs/protocol.md lists
 * every type number and key).
 *
 * Bodies are msgpack maps with short string keys. Decoders of untrusted bytes check every type
 * and length, IGNORE unknown keys (forward compatibility), reject missing required keys, wrong
 * types, over-long strings and over-large arrays with -EBADMSG and a message naming the key.
 * The body must be exactly one msgpack object (trailing bytes = -EBADMSG).
 *
 * Ownership:
 *  - Encoding: the caller builds a proto_msg whose pointers it owns (borrowed by the encoder,
 *    nothing is freed). Unused optional strings may be NULL (encoded as absent).
 *  - Decoding: proto_msg_decode() allocates every string/array of the result in an arena owned
 *    by the proto_msg; proto_msg_free() releases it all. Decoded strings are NUL-terminated and
 *    contain no NUL byte; optional absent strings decode as "" (never NULL).
 * Thread-safety: no global state; a proto_msg may be used by one thread at a time. */
#ifndef PROTO_MSG_H
#define PROTO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cf/buf.h"
#include "cf/error.h"
#include "proto/piece.h"

/* Message types (frame header byte 5). Numbers are wire ABI: never renumber. */
typedef enum proto_msg_type {
    /* any direction */
    PROTO_MSG_HELLO = 0x01, /* handshake, first frame on every connection (handshake.h) */
    PROTO_MSG_ERROR = 0x02, /* error answer; may close the connection */

    /* peer -> scheduler */
    PROTO_MSG_ANNOUNCE_HOST = 0x10,
    PROTO_MSG_REGISTER_TASK = 0x11,
    PROTO_MSG_PIECE_REPORT = 0x12,
    PROTO_MSG_TASK_FINISHED = 0x13,
    PROTO_MSG_TASK_FAILED = 0x14,
    PROTO_MSG_BAD_PARENT = 0x15,
    PROTO_MSG_LEAVE_TASK = 0x16,
    PROTO_MSG_LEAVE_HOST = 0x17,
    PROTO_MSG_HEARTBEAT = 0x18,
    PROTO_MSG_DIGESTS_PUBLISH = 0x19, /* body: proto_digest_list */
    PROTO_MSG_DIGESTS_FETCH = 0x1a,

    /* scheduler -> peer */
    PROTO_MSG_REGISTER_ANSWER = 0x20,
    PROTO_MSG_CANDIDATES = 0x21,
    PROTO_MSG_BACK_TO_SOURCE = 0x22,
    PROTO_MSG_WAIT = 0x23,
    PROTO_MSG_HEARTBEAT_REPLY = 0x24,
    PROTO_MSG_DIGESTS = 0x25,     /* answer to DIGESTS_FETCH; body: proto_digest_list */
    PROTO_MSG_DIGESTS_ACK = 0x26, /* answer to an accepted DIGESTS_PUBLISH */

    /* peer <-> peer */
    PROTO_MSG_AVAIL_QUERY = 0x30,  /* ask for a task's bitmap (+ optional updates) */
    PROTO_MSG_AVAIL = 0x31,        /* full bitmap */
    PROTO_MSG_AVAIL_UPDATE = 0x32, /* newly available pieces (runs) */
    PROTO_MSG_PIECE_REQUEST = 0x33,
    PROTO_MSG_PIECE_DATA = 0x34, /* raw payload = the whole piece */
    PROTO_MSG_ACCESS = 0x35,     /* proof that the requester may read a private blob */
    PROTO_MSG_ACCESS_OK = 0x36,  /* the proof was accepted (a refusal is ERROR AUTH) */

    /* local consumer <-> peer daemon (unix socket) */
    PROTO_MSG_LOCAL_READ = 0x40,
    PROTO_MSG_LOCAL_DATA = 0x41, /* raw payload = data; several frames per read */
    PROTO_MSG_LOCAL_PREFETCH = 0x42,
    PROTO_MSG_LOCAL_STAT = 0x43,
    PROTO_MSG_LOCAL_STAT_REPLY = 0x44,
    PROTO_MSG_LOCAL_PIN = 0x45,
    PROTO_MSG_LOCAL_UNPIN = 0x46,
    PROTO_MSG_LOCAL_LIST = 0x47,
    PROTO_MSG_LOCAL_LIST_REPLY = 0x48,
    PROTO_MSG_LOCAL_OK = 0x49, /* answer to PREFETCH (accepted), PIN, UNPIN */
    /* answer to a LOCAL_READ with "fd": the blob's data file itself, read-only (SCM_RIGHTS) */
    PROTO_MSG_LOCAL_FILE = 0x4a,
} proto_msg_type;

/* Limits enforced by encoder and decoder (bytes exclude the NUL). */
#define PROTO_MAX_ID_LEN        128   /* node / host ids */
#define PROTO_MAX_ADDR_LEN      262   /* "host:port", "[v6]:port", unix path */
#define PROTO_MAX_LABEL_LEN     128   /* idc / zone / rack / hostname */
#define PROTO_MAX_ORIGIN_LEN    2048  /* origin reference */
#define PROTO_MAX_CRED_LEN      8192  /* credentials (opaque, never logged) */
#define PROTO_MAX_TEXT_LEN      1024  /* error / failure messages */
#define PROTO_MAX_ADDRS         16    /* addresses per host */
#define PROTO_MAX_CANDIDATES    32    /* parents per CANDIDATES message */
#define PROTO_MAX_RUNS          65536 /* runs per message */
#define PROTO_MAX_LIST_ENTRIES  4096  /* LOCAL_LIST_REPLY entries */
#define PROTO_MAX_LIST_TASKS    1024  /* LOCAL_LIST_REPLY tasks */
#define PROTO_MAX_TASK_PARENTS  64    /* parents per LOCAL_LIST_REPLY task */
#define PROTO_MAX_STATE_LEN     16    /* task state name */
#define PROTO_MAX_DIGEST_PIECES 32000 /* 32-byte digests per list, fits PROTO_MAX_BODY */
#define PROTO_MAX_REPO_REF_LEN  512   /* ACCESS "registry/repository" */
#define PROTO_MAX_TOKEN_LEN     8192  /* ACCESS bearer token (a secret, never logged) */

/* Task id: "sha256:" + 64 lowercase hex = the blob's digest. */
#define PROTO_TASK_ID_LEN 71
#define PROTO_NO_PIECE    UINT32_MAX

/* Error codes carried in PROTO_MSG_ERROR / TASK_FAILED (wire ABI). */
typedef enum proto_error_code {
    PROTO_E_VERSION = 1,      /* incompatible protocol version (handshake refused) */
    PROTO_E_BAD_MESSAGE = 2,  /* undecodable / invalid frame or body */
    PROTO_E_UNEXPECTED = 3,   /* valid message not allowed here / now */
    PROTO_E_UNKNOWN_HOST = 4, /* host not announced */
    PROTO_E_UNKNOWN_TASK = 5, /* task not registered / not held */
    PROTO_E_NOT_FOUND = 6,    /* piece / digest list not available */
    PROTO_E_BUSY = 7,         /* no upload slot / overloaded, retry later */
    PROTO_E_DIGEST_MISMATCH = 8,
    PROTO_E_MISMATCH = 9, /* piece size / content length / task disagree */
    PROTO_E_ORIGIN = 10,  /* origin (registry) failed */
    PROTO_E_AUTH = 11,    /* origin refused credentials; mesh: a private blob without proof */
    PROTO_E_NO_SPACE = 12,
    PROTO_E_RANGE = 13, /* offset/length/piece outside the blob */
    PROTO_E_INTERNAL = 14,
    PROTO_E_SHUTDOWN = 15, /* sender is going away */
    PROTO_E_IDENTITY = 16, /* id not the one the connection's TLS certificate proves */
} proto_error_code;

/* Roles announced in HELLO. */
typedef enum proto_role {
    PROTO_ROLE_PEER = 1,
    PROTO_ROLE_SCHEDULER = 2,
    PROTO_ROLE_LOCAL_CLIENT = 3,
} proto_role;

/* Capability bits in HELLO (unknown bits are ignored). */
#define PROTO_CAP_DIGEST_LIST (1ull << 0) /* speaks DIGESTS_* */
#define PROTO_CAP_AVAIL_PUSH  (1ull << 1) /* sends AVAIL_UPDATE to subscribers */

/* Bad parent reasons (wire ABI). */
typedef enum proto_bad_parent_reason {
    PROTO_BAD_PARENT_TIMEOUT = 1,
    PROTO_BAD_PARENT_REFUSED = 2,
    PROTO_BAD_PARENT_DIGEST_MISMATCH = 3,
    PROTO_BAD_PARENT_OTHER = 4,
} proto_bad_parent_reason;

/* Keys in quotes are the msgpack map keys. [opt] = optional on the wire. */

typedef struct proto_hello {
    uint32_t version;     /* "v"  highest protocol version spoken */
    uint32_t min_version; /* "mv" lowest protocol version accepted (<= version) */
    const char *node_id;  /* "id" 1..PROTO_MAX_ID_LEN */
    uint8_t role;         /* "ro" proto_role */
    uint64_t caps;        /* "c"  [opt, 0] PROTO_CAP_* */
    uint32_t max_payload; /* "mp" [opt, 0 = PROTO_MAX_PAYLOAD] largest payload I accept */
} proto_hello;

typedef struct proto_error {
    uint32_t code;       /* "c"  proto_error_code (unknown codes are kept as-is) */
    const char *message; /* "m"  [opt] human readable, <= PROTO_MAX_TEXT_LEN */
    const char *task_id; /* "t"  [opt] task the error is about ("" / NULL = none) */
    uint64_t req_id;     /* "r"  [opt, 0] request answered (peer/local requests) */
} proto_error;

typedef struct proto_announce_host {
    const char *host_id;      /* "id"  1..PROTO_MAX_ID_LEN */
    const char *hostname;     /* "hn"  [opt] */
    const char *const *addrs; /* "a"   1..PROTO_MAX_ADDRS IP literals, each <= MAX_ADDR_LEN */
    size_t n_addrs;
    uint16_t upload_port;  /* "up"  TCP port of the piece server (1..65535) */
    uint32_t upload_slots; /* "us"  concurrent uploads offered */
    uint64_t upload_bw;    /* "bw"  [opt, 0 = unlimited] bytes/s */
    uint64_t free_disk;    /* "fd"  bytes */
    const char *idc;       /* "idc" [opt] location labels, <= PROTO_MAX_LABEL_LEN */
    const char *zone;      /* "zn"  [opt] */
    const char *rack;      /* "rk"  [opt] */
} proto_announce_host;

typedef struct proto_register_task {
    const char *task_id;     /* "t"  PROTO_TASK_ID_LEN, validated */
    uint64_t content_length; /* "cl" blob size in bytes */
    const char *origin;      /* "o"  "registry.example/repo@sha256:..." 1..MAX_ORIGIN_LEN */
    bool resync;             /* "rs" [opt, false] this host registered the task with a scheduler
                              * before (a scheduler restart or a move): hold origin grants while
                              * the other holders re-announce */
} proto_register_task;

typedef struct proto_register_answer {
    const char *task_id;     /* "t" */
    uint32_t piece_size;     /* "ps" authoritative piece size (proto_piece_size_check) */
    uint64_t content_length; /* "cl" */
    uint32_t piece_count;    /* "pc" must equal proto_piece_count(cl, ps) */
    bool has_digests;        /* "dg" [opt, false] a digest list can be fetched */
} proto_register_answer;

typedef struct proto_piece_report {
    const char *task_id;         /* "t" */
    const proto_piece_run *runs; /* "p"  flat array [start, count, start, count...] */
    size_t n_runs;               /*      1..PROTO_MAX_RUNS runs */
    const char *parent_id;       /* "pa" [opt] host the pieces came from; "" = origin */
} proto_piece_report;

typedef struct proto_task_finished {
    const char *task_id;     /* "t" */
    uint64_t content_length; /* "cl" */
    bool verified;           /* "vf" [opt, false] whole blob checked against its sha256 */
} proto_task_finished;

typedef struct proto_task_failed {
    const char *task_id; /* "t" */
    uint32_t code;       /* "c"  proto_error_code */
    const char *message; /* "m"  [opt] */
} proto_task_failed;

typedef struct proto_bad_parent {
    const char *task_id;   /* "t" */
    const char *parent_id; /* "pa" host id of the parent */
    uint8_t reason;        /* "rs" proto_bad_parent_reason */
    uint32_t piece;        /* "pn" [opt, PROTO_NO_PIECE] */
} proto_bad_parent;

typedef struct proto_leave_task {
    const char *task_id; /* "t" */
} proto_leave_task;

typedef struct proto_leave_host {
    const char *host_id; /* "id" */
} proto_leave_host;

typedef struct proto_heartbeat {
    const char *host_id; /* "id" */
    uint64_t seq;        /* "s"  echoed by HEARTBEAT_REPLY */
    uint64_t free_disk;  /* "fd" [opt] */
    uint32_t free_slots; /* "fs" [opt] upload slots currently free */
} proto_heartbeat;

typedef struct proto_heartbeat_reply {
    uint64_t seq; /* "s" */
} proto_heartbeat_reply;

/* Per-piece SHA-256 list, bound to the task: accepted only for the matching task id and piece
 * size (proto_digest_list_check). Published by a peer that verified the whole blob. */
typedef struct proto_digest_list {
    const char *task_id;    /* "t" */
    uint32_t piece_size;    /* "ps" */
    uint32_t piece_count;   /* "pc" 1..PROTO_MAX_DIGEST_PIECES */
    const uint8_t *digests; /* "d"  bin, piece_count * 32 bytes, piece order */
} proto_digest_list;

typedef struct proto_digests_fetch {
    const char *task_id; /* "t" */
    uint32_t piece_size; /* "ps" the piece size the asker uses */
} proto_digests_fetch;

typedef struct proto_digests_ack {
    const char *task_id; /* "t" */
} proto_digests_ack;

typedef struct proto_candidate {
    const char *host_id; /* "id" */
    const char *addr;    /* "a"  "ip:port" / "[ip6]:port" of its piece server */
    const uint8_t *bits; /* "b"  bitmap of pieces it holds, proto_bitmap_nbytes(piece_count) */
    size_t bits_len;
} proto_candidate;

typedef struct proto_candidates {
    const char *task_id;               /* "t" */
    uint32_t piece_count;              /* "pc" */
    const proto_candidate *candidates; /* "c"  array of maps, 1..PROTO_MAX_CANDIDATES */
    size_t n_candidates;
} proto_candidates;

typedef struct proto_back_to_source {
    const char *task_id;         /* "t" */
    const proto_piece_run *runs; /* "p"  pieces granted to fetch from origin, 1..MAX_RUNS */
    size_t n_runs;
    uint32_t stall_ms; /* "st" [opt, 0 = default] no progress this long -> regrant */
} proto_back_to_source;

typedef struct proto_wait {
    const char *task_id;     /* "t" */
    uint32_t retry_after_ms; /* "ms" */
} proto_wait;

typedef struct proto_avail_query {
    const char *task_id; /* "t" */
    bool subscribe;      /* "sub" [opt, false] also push AVAIL_UPDATE until LEAVE/close */
} proto_avail_query;

typedef struct proto_avail {
    const char *task_id;  /* "t" */
    uint32_t piece_count; /* "pc" 0..PROTO_MAX_PIECES */
    const uint8_t *bits;  /* "b"  proto_bitmap_nbytes(piece_count) bytes */
    size_t bits_len;
} proto_avail;

typedef struct proto_avail_update {
    const char *task_id;         /* "t" */
    const proto_piece_run *runs; /* "p" newly available pieces, 1..MAX_RUNS */
    size_t n_runs;
} proto_avail_update;

typedef struct proto_piece_request {
    uint64_t req_id;     /* "r" chosen by the requester, echoed */
    const char *task_id; /* "t" */
    uint32_t piece;      /* "pn" piece number (never a byte range) */
} proto_piece_request;

/* Frame payload = the piece bytes; payload_len must equal proto_piece_len() (caller checks). */
typedef struct proto_piece_data {
    uint64_t req_id;     /* "r" */
    const char *task_id; /* "t" */
    uint32_t piece;      /* "pn" */
} proto_piece_data;

/* peer -> parent: a bearer token the registry gives for `repository:REPO:pull` and the
 * "registry/repo" it is for (docs/protocol.md "Private blobs"). Never a password. */
typedef struct proto_access {
    uint64_t req_id;      /* "r" chosen by the requester, echoed in ACCESS_OK / ERROR */
    const char *task_id;  /* "t" */
    const char *repo_ref; /* "o" "registry/repo", 3..PROTO_MAX_REPO_REF_LEN */
    const char *token;    /* "tk" 1..PROTO_MAX_TOKEN_LEN */
} proto_access;

typedef struct proto_access_ok {
    uint64_t req_id;     /* "r" */
    const char *task_id; /* "t" */
} proto_access_ok;

typedef struct proto_local_read {
    uint64_t req_id;         /* "r" */
    const char *task_id;     /* "t" */
    const char *origin;      /* "o"  origin reference used if the blob must be fetched */
    const char *credentials; /* "cr" [opt] opaque registry credentials; never log them */
    uint64_t offset;         /* "off" */
    uint64_t length;         /* "len" bytes (answer may be split over several LOCAL_DATA) */
    /* "uv" [opt, false] unverified cut-through ok: bytes may be sent before the daemon verified
     * them (the caller checks them itself); without it only verified bytes are sent */
    bool unverified_ok;
    /* "fd" [opt, false] the caller (on a unix socket) takes a read-only descriptor of the data
     * file instead of LOCAL_DATA frames once the whole blob is verified (LOCAL_FILE) */
    bool accept_fd;
} proto_local_read;

/* Frame payload = data at `offset`; `last` marks the final frame of the read. */
typedef struct proto_local_data {
    uint64_t req_id; /* "r" */
    uint64_t offset; /* "off" blob offset of this frame's payload */
    bool last;       /* "end" [opt, false] */
} proto_local_data;

/* The rest of a read as a file: `length` bytes of the descriptor passed with this frame
 * (SCM_RIGHTS, read-only, a complete verified blob) at `file_offset` are the blob's bytes at
 * `offset` (the read's position) up to the read's end. Ends the read. */
typedef struct proto_local_file {
    uint64_t req_id;      /* "r" */
    uint64_t offset;      /* "off" */
    uint64_t length;      /* "len" */
    uint64_t file_offset; /* "fo" */
} proto_local_file;

/* Same keys as LOCAL_READ; length 0 = to the end of the blob. */
typedef proto_local_read proto_local_prefetch;

typedef struct proto_local_task {
    uint64_t req_id;     /* "r" */
    const char *task_id; /* "t" */
} proto_local_task;      /* LOCAL_STAT, LOCAL_PIN, LOCAL_UNPIN */

typedef struct proto_local_entry {
    const char *task_id;     /* "t" */
    uint64_t content_length; /* "cl" */
    uint32_t piece_size;     /* "ps" */
    uint32_t piece_count;    /* "pc" */
    uint32_t pieces_have;    /* "hv" */
    bool pinned;             /* "pin" [opt] */
    bool complete;           /* "ok"  [opt] */
} proto_local_entry;

typedef struct proto_local_stat_reply {
    uint64_t req_id;         /* "r" */
    proto_local_entry entry; /* "e" map */
} proto_local_stat_reply;

typedef struct proto_local_list {
    uint64_t req_id; /* "r" */
} proto_local_list;

/* A parent of a download task, as the daemon sees it. */
typedef struct proto_local_parent {
    const char *host_id; /* "id" */
    const char *addr;    /* "a"  its piece server "ip:port" */
    uint32_t served;     /* "sv"  [opt, 0] pieces it served us for this task */
    bool banned;         /* "ban" [opt] served bad bytes: never asked again for this task */
    bool down;           /* "dn"  [opt] timed out / refused: skipped for a while */
} proto_local_parent;

/* A download task of the daemon (running, or finished and seeding). */
typedef struct proto_local_task_info {
    const char *task_id;     /* "t" */
    const char *state;       /* "st" "sizing", "registering", "opening", "running", "verifying",
                                "done", "failed" (others may come: show as-is) */
    uint64_t content_length; /* "cl" [opt, 0 = not known yet] */
    uint32_t piece_count;    /* "pc" [opt] */
    uint32_t pieces_have;    /* "hv" [opt] <= piece_count */
    uint64_t from_parents;   /* "fp" [opt] bytes fetched from parents */
    uint64_t from_origin;    /* "fo" [opt] bytes fetched from the origin */
    bool origin_mode;        /* "om" [opt] fetching from the origin (no usable parents) */
    uint32_t readers;        /* "rd" [opt] local reads waiting on the task */
    const char *error;       /* "er" [opt] why it failed */
    const proto_local_parent *parents; /* "pa" [opt] array of maps, 0..PROTO_MAX_TASK_PARENTS */
    size_t n_parents;
} proto_local_task_info;

typedef struct proto_local_list_reply {
    uint64_t req_id;                  /* "r" */
    const proto_local_entry *entries; /* "e" array of maps, 0..PROTO_MAX_LIST_ENTRIES */
    size_t n_entries;
    /* "tk" [opt] array of maps, 0..PROTO_MAX_LIST_TASKS: the daemon's download tasks (added
     * later: older daemons omit it, older clients ignore it). */
    const proto_local_task_info *tasks;
    size_t n_tasks;
} proto_local_list_reply;

typedef struct proto_local_ok {
    uint64_t req_id; /* "r" */
} proto_local_ok;

struct proto_arena;

typedef struct proto_msg {
    uint8_t type; /* proto_msg_type, selects the union member */
    union {
        proto_hello hello;
        proto_error error;
        proto_announce_host announce_host;
        proto_register_task register_task;
        proto_piece_report piece_report;
        proto_task_finished task_finished;
        proto_task_failed task_failed;
        proto_bad_parent bad_parent;
        proto_leave_task leave_task;
        proto_leave_host leave_host;
        proto_heartbeat heartbeat;
        proto_digest_list digests; /* DIGESTS_PUBLISH and DIGESTS */
        proto_digests_fetch digests_fetch;
        proto_register_answer register_answer;
        proto_candidates candidates;
        proto_back_to_source back_to_source;
        proto_wait wait;
        proto_heartbeat_reply heartbeat_reply;
        proto_digests_ack digests_ack;
        proto_avail_query avail_query;
        proto_avail avail;
        proto_avail_update avail_update;
        proto_piece_request piece_request;
        proto_piece_data piece_data;
        proto_access access;
        proto_access_ok access_ok;
        proto_local_read local_read;         /* LOCAL_READ */
        proto_local_prefetch local_prefetch; /* LOCAL_PREFETCH */
        proto_local_data local_data;
        proto_local_task local_task; /* LOCAL_STAT, LOCAL_PIN, LOCAL_UNPIN */
        proto_local_stat_reply local_stat_reply;
        proto_local_list local_list;
        proto_local_list_reply local_list_reply;
        proto_local_ok local_ok;
        proto_local_file local_file;
    } u;
    struct proto_arena *arena_; /* decoder allocations; NULL for caller-built messages */
} proto_msg;

/* Name for logs ("PIECE_REQUEST"), "UNKNOWN" for unassigned numbers. Static string. */
const char *proto_msg_type_name(uint8_t type);
/* True for known types. */
bool proto_msg_type_known(uint8_t type);
/* True for the types whose frames carry a raw payload (PIECE_DATA, LOCAL_DATA); every other
 * type must have payload_len == 0. */
bool proto_msg_type_has_payload(uint8_t type);

/* Validates a message's fields (same rules as the decoder: required strings present, lengths,
 * task id syntax, counts, bitmap sizes). Returns 0 or -EINVAL with a message. */
int proto_msg_validate(const proto_msg *m, cf_err *err);

/* Appends the msgpack body of m to out. Returns 0, -EINVAL (invalid fields, see validate),
 * -EMSGSIZE (body over PROTO_MAX_BODY; out unchanged), -ENOMEM. */
int proto_msg_encode_body(const proto_msg *m, cf_buf *out, cf_err *err);

/* Appends a frame header + body to out, the header announcing `payload_len` payload bytes that
 * the caller sends right after (or appends itself). payload_len must be 0 for payload-less
 * types (-EINVAL) and <= PROTO_MAX_PAYLOAD. Errors as proto_msg_encode_body. */
int proto_msg_encode_frame(const proto_msg *m, uint32_t payload_len, cf_buf *out, cf_err *err);

/* Decodes an untrusted body of message `type` into *out (zeroed first). `payload_len` is the
 * frame's payload length (checked against proto_msg_type_has_payload).
 * Returns 0 (then call proto_msg_free(out)), or (nothing to free):
 *   -ENOTSUP  unknown message type (receivers may ignore the frame or answer ERROR)
 *   -EBADMSG  malformed body: not a map, wrong type, missing key, bad length/value, trailing
 *             bytes, payload on a payload-less type
 *   -ENOMEM */
int proto_msg_decode(uint8_t type, const uint8_t *body, size_t body_len, uint32_t payload_len,
                     proto_msg *out, cf_err *err);

/* Releases a decoded message's allocations (no-op for caller-built or zeroed messages). */
void proto_msg_free(proto_msg *m);

/* Task ids. check: 0 or -EINVAL. from_digest writes PROTO_TASK_ID_LEN+1 bytes.
 * to_digest: 0 or -EINVAL. */
int proto_task_id_check(const char *task_id);
void proto_task_id_from_digest(const uint8_t digest[32], char out[PROTO_TASK_ID_LEN + 1]);
int proto_task_id_to_digest(const char *task_id, uint8_t digest[32]);

/* Accepts a digest list only for the expected task and piece size, and when piece_count
 * equals proto_piece_count(content_length, piece_size). Returns 0 or -EBADMSG (with a message:
 * which field mismatched). */
int proto_digest_list_check(const proto_digest_list *l, const char *task_id, uint32_t piece_size,
                            uint64_t content_length, cf_err *err);
/* SHA-256 of data equals the list's entry for `piece`? 0, -EBADMSG (mismatch), -ERANGE
 * (piece >= piece_count), -ENOMEM. */
int proto_digest_list_verify_piece(const proto_digest_list *l, uint32_t piece, const void *data,
                                   size_t len);

#endif
