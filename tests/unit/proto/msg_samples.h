/* One filled-in sample of every message type (static data, nothing to free), shared by the
 * message tests and the fuzz corpus writer. */
#ifndef PROTO_TEST_MSG_SAMPLES_H
#define PROTO_TEST_MSG_SAMPLES_H

#include <string.h>

#include "proto/msg.h"

static const uint8_t sample_types[] = {
    PROTO_MSG_HELLO,         PROTO_MSG_ERROR,
    PROTO_MSG_ANNOUNCE_HOST, PROTO_MSG_REGISTER_TASK,
    PROTO_MSG_PIECE_REPORT,  PROTO_MSG_TASK_FINISHED,
    PROTO_MSG_TASK_FAILED,   PROTO_MSG_BAD_PARENT,
    PROTO_MSG_LEAVE_TASK,    PROTO_MSG_LEAVE_HOST,
    PROTO_MSG_HEARTBEAT,     PROTO_MSG_DIGESTS_PUBLISH,
    PROTO_MSG_DIGESTS_FETCH, PROTO_MSG_REGISTER_ANSWER,
    PROTO_MSG_CANDIDATES,    PROTO_MSG_BACK_TO_SOURCE,
    PROTO_MSG_WAIT,          PROTO_MSG_HEARTBEAT_REPLY,
    PROTO_MSG_DIGESTS,       PROTO_MSG_DIGESTS_ACK,
    PROTO_MSG_AVAIL_QUERY,   PROTO_MSG_AVAIL,
    PROTO_MSG_AVAIL_UPDATE,  PROTO_MSG_PIECE_REQUEST,
    PROTO_MSG_PIECE_DATA,    PROTO_MSG_LOCAL_READ,
    PROTO_MSG_LOCAL_DATA,    PROTO_MSG_LOCAL_PREFETCH,
    PROTO_MSG_LOCAL_STAT,    PROTO_MSG_LOCAL_STAT_REPLY,
    PROTO_MSG_LOCAL_PIN,     PROTO_MSG_LOCAL_UNPIN,
    PROTO_MSG_LOCAL_LIST,    PROTO_MSG_LOCAL_LIST_REPLY,
    PROTO_MSG_LOCAL_OK,      PROTO_MSG_ACCESS,
    PROTO_MSG_ACCESS_OK,     PROTO_MSG_LOCAL_FILE,
};
#define N_SAMPLE_TYPES (sizeof(sample_types) / sizeof(sample_types[0]))

#define SAMPLE_TASK  "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SAMPLE_TASK2 "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static const char *const sample_addrs[] = {"10.0.0.7", "fd00::7"};
static const proto_piece_run sample_runs[] = {{0, 3}, {10, 1}, {4000, 96}};
static uint8_t sample_bits_a[2] = {0x0f, 0x01}; /* 9 pieces: 0-3, 8 */
static uint8_t sample_bits_b[2] = {0xf0, 0x00};
static const proto_candidate sample_cands[] = {
    {.host_id = "10.0.0.8-node8", .addr = "10.0.0.8:4005", .bits = sample_bits_a, .bits_len = 2},
    {.host_id = "10.0.0.9-node9", .addr = "[fd00::9]:4005", .bits = sample_bits_b, .bits_len = 2},
};
static uint8_t sample_digests[3 * 32];
static const proto_local_entry sample_entries[] = {
    {.task_id = SAMPLE_TASK,
     .content_length = 9000000,
     .piece_size = 4u << 20,
     .piece_count = 3,
     .pieces_have = 2,
     .pinned = true},
    {.task_id = SAMPLE_TASK2,
     .content_length = 100,
     .piece_size = 1u << 20,
     .piece_count = 1,
     .pieces_have = 1,
     .complete = true},
};

static const proto_local_parent sample_parents[] = {
    {.host_id = "10.0.0.8-node8", .addr = "10.0.0.8:4005", .served = 2},
    {.host_id = "10.0.0.9-node9", .addr = "[fd00::9]:4005", .banned = true},
};
static const proto_local_task_info sample_tasks[] = {
    {.task_id = SAMPLE_TASK,
     .state = "running",
     .content_length = 9000000,
     .piece_count = 3,
     .pieces_have = 2,
     .from_parents = 8u << 20,
     .readers = 1,
     .parents = sample_parents,
     .n_parents = 2},
    {.task_id = SAMPLE_TASK2, .state = "failed", .error = "origin: HTTP 404"},
};

static void sample_msg(uint8_t type, proto_msg *m)
{
    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < sizeof(sample_digests); i++) sample_digests[i] = (uint8_t)(i * 7);
    m->type = type;
    switch (type) {
    case PROTO_MSG_HELLO:
        m->u.hello = (proto_hello){.version = 1,
                                   .min_version = 1,
                                   .node_id = "10.0.0.7-node7",
                                   .role = PROTO_ROLE_PEER,
                                   .caps = 3,
                                   .max_payload = 4u << 20};
        break;
    case PROTO_MSG_ERROR:
        m->u.error = (proto_error){.code = PROTO_E_BUSY,
                                   .message = "no upload slot",
                                   .task_id = SAMPLE_TASK,
                                   .req_id = 77};
        break;
    case PROTO_MSG_ANNOUNCE_HOST:
        m->u.announce_host = (proto_announce_host){.host_id = "10.0.0.7-node7",
                                                   .hostname = "node7",
                                                   .addrs = sample_addrs,
                                                   .n_addrs = 2,
                                                   .upload_port = 4005,
                                                   .upload_slots = 200,
                                                   .upload_bw = 125000000,
                                                   .free_disk = 50ull << 30,
                                                   .idc = "dc1",
                                                   .zone = "z2",
                                                   .rack = "r17"};
        break;
    case PROTO_MSG_REGISTER_TASK:
        m->u.register_task = (proto_register_task){.task_id = SAMPLE_TASK,
                                                   .content_length = 9000000,
                                                   .origin = "registry.example/repo@" SAMPLE_TASK};
        break;
    case PROTO_MSG_PIECE_REPORT:
        m->u.piece_report = (proto_piece_report){.task_id = SAMPLE_TASK,
                                                 .runs = sample_runs,
                                                 .n_runs = 3,
                                                 .parent_id = "10.0.0.8-node8"};
        break;
    case PROTO_MSG_TASK_FINISHED:
        m->u.task_finished = (proto_task_finished){
            .task_id = SAMPLE_TASK, .content_length = 9000000, .verified = true};
        break;
    case PROTO_MSG_TASK_FAILED:
        m->u.task_failed = (proto_task_failed){
            .task_id = SAMPLE_TASK, .code = PROTO_E_ORIGIN, .message = "registry: 503"};
        break;
    case PROTO_MSG_BAD_PARENT:
        m->u.bad_parent = (proto_bad_parent){.task_id = SAMPLE_TASK,
                                             .parent_id = "10.0.0.8-node8",
                                             .reason = PROTO_BAD_PARENT_DIGEST_MISMATCH,
                                             .piece = 2};
        break;
    case PROTO_MSG_LEAVE_TASK:
        m->u.leave_task.task_id = SAMPLE_TASK;
        break;
    case PROTO_MSG_LEAVE_HOST:
        m->u.leave_host.host_id = "10.0.0.7-node7";
        break;
    case PROTO_MSG_HEARTBEAT:
        m->u.heartbeat = (proto_heartbeat){.host_id = "10.0.0.7-node7",
                                           .seq = 123456789012ull,
                                           .free_disk = 1ull << 40,
                                           .free_slots = 199};
        break;
    case PROTO_MSG_DIGESTS_PUBLISH:
    case PROTO_MSG_DIGESTS:
        m->u.digests = (proto_digest_list){.task_id = SAMPLE_TASK,
                                           .piece_size = 4u << 20,
                                           .piece_count = 3,
                                           .digests = sample_digests};
        break;
    case PROTO_MSG_DIGESTS_FETCH:
        m->u.digests_fetch = (proto_digests_fetch){.task_id = SAMPLE_TASK, .piece_size = 4u << 20};
        break;
    case PROTO_MSG_REGISTER_ANSWER:
        m->u.register_answer = (proto_register_answer){.task_id = SAMPLE_TASK,
                                                       .piece_size = 4u << 20,
                                                       .content_length = 9000000,
                                                       .piece_count = 3,
                                                       .has_digests = true};
        break;
    case PROTO_MSG_CANDIDATES:
        m->u.candidates = (proto_candidates){.task_id = SAMPLE_TASK,
                                             .piece_count = 9,
                                             .candidates = sample_cands,
                                             .n_candidates = 2};
        break;
    case PROTO_MSG_BACK_TO_SOURCE:
        m->u.back_to_source = (proto_back_to_source){
            .task_id = SAMPLE_TASK, .runs = sample_runs, .n_runs = 2, .stall_ms = 5000};
        break;
    case PROTO_MSG_WAIT:
        m->u.wait = (proto_wait){.task_id = SAMPLE_TASK, .retry_after_ms = 250};
        break;
    case PROTO_MSG_HEARTBEAT_REPLY:
        m->u.heartbeat_reply.seq = 123456789012ull;
        break;
    case PROTO_MSG_DIGESTS_ACK:
        m->u.digests_ack.task_id = SAMPLE_TASK;
        break;
    case PROTO_MSG_AVAIL_QUERY:
        m->u.avail_query = (proto_avail_query){.task_id = SAMPLE_TASK, .subscribe = true};
        break;
    case PROTO_MSG_AVAIL:
        m->u.avail = (proto_avail){
            .task_id = SAMPLE_TASK, .piece_count = 9, .bits = sample_bits_a, .bits_len = 2};
        break;
    case PROTO_MSG_AVAIL_UPDATE:
        m->u.avail_update =
            (proto_avail_update){.task_id = SAMPLE_TASK, .runs = sample_runs, .n_runs = 1};
        break;
    case PROTO_MSG_PIECE_REQUEST:
        m->u.piece_request = (proto_piece_request){.req_id = 9, .task_id = SAMPLE_TASK, .piece = 2};
        break;
    case PROTO_MSG_PIECE_DATA:
        m->u.piece_data = (proto_piece_data){.req_id = 9, .task_id = SAMPLE_TASK, .piece = 2};
        break;
    case PROTO_MSG_ACCESS:
        m->u.access = (proto_access){.req_id = 11,
                                     .task_id = SAMPLE_TASK,
                                     .repo_ref = "registry.example/team/app",
                                     .token = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"};
        break;
    case PROTO_MSG_ACCESS_OK:
        m->u.access_ok = (proto_access_ok){.req_id = 11, .task_id = SAMPLE_TASK};
        break;
    case PROTO_MSG_LOCAL_READ:
    case PROTO_MSG_LOCAL_PREFETCH:
        m->u.local_read = (proto_local_read){.req_id = 5,
                                             .task_id = SAMPLE_TASK,
                                             .origin = "registry.example/repo@" SAMPLE_TASK,
                                             .credentials = "Basic dXNlcjpwYXNz",
                                             .offset = 4096,
                                             .length = 1u << 20,
                                             .accept_fd = true};
        break;
    case PROTO_MSG_LOCAL_DATA:
        m->u.local_data = (proto_local_data){.req_id = 5, .offset = 4096, .last = true};
        break;
    case PROTO_MSG_LOCAL_STAT:
    case PROTO_MSG_LOCAL_PIN:
    case PROTO_MSG_LOCAL_UNPIN:
        m->u.local_task = (proto_local_task){.req_id = 6, .task_id = SAMPLE_TASK};
        break;
    case PROTO_MSG_LOCAL_STAT_REPLY:
        m->u.local_stat_reply = (proto_local_stat_reply){.req_id = 6, .entry = sample_entries[0]};
        break;
    case PROTO_MSG_LOCAL_LIST:
        m->u.local_list.req_id = 8;
        break;
    case PROTO_MSG_LOCAL_LIST_REPLY:
        m->u.local_list_reply = (proto_local_list_reply){.req_id = 8,
                                                         .entries = sample_entries,
                                                         .n_entries = 2,
                                                         .tasks = sample_tasks,
                                                         .n_tasks = 2};
        break;
    case PROTO_MSG_LOCAL_OK:
        m->u.local_ok.req_id = 6;
        break;
    case PROTO_MSG_LOCAL_FILE:
        m->u.local_file = (proto_local_file){
            .req_id = 5, .offset = 4096, .length = 1u << 20, .file_offset = 4096};
        break;
    }
}

#endif
