/* The piece policy (see piece_policy.h): pure decisions over a task's piece maps and parents. */
#include "piece_policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a parent is skipped after each kind of failure (ms). */
#define DOWN_BUSY_MS        200
#define DOWN_UNREACHABLE_MS 1000
#define DOWN_LOST_MS        3000
#define DOWN_BAD_REPLY_MS   5000
#define DOWN_TIMEOUT_MS     10000

static size_t nbytes(uint32_t count)
{
    size_t n = proto_bitmap_nbytes(count);
    return n ? n : 1;
}

int pp_task_init(pp_task *t, uint32_t count)
{
    if (count > PROTO_MAX_PIECES) return -EINVAL;
    if (t->have && t->piece_count == count) return 0; /* grants and parents stay */
    free(t->have);
    free(t->granted);
    free(t->requests);
    free(t->since);
    free(t->source);
    t->piece_count = count;
    t->have = calloc(1, nbytes(count));
    t->granted = calloc(1, nbytes(count));
    t->requests = calloc(count ? count : 1, 1);
    t->since = calloc(count ? count : 1, sizeof(uint64_t));
    t->source = malloc((count ? count : 1) * sizeof(int16_t));
    if (!t->have || !t->granted || !t->requests || !t->since || !t->source) {
        pp_task_free(t);
        return -ENOMEM;
    }
    for (int i = 0; i < t->n_parents; i++) { /* what they held is stated in other pieces */
        pp_parent *pa = &t->parents[i];
        free(pa->bits);
        pa->requests = 0;
        if (!(pa->bits = calloc(1, nbytes(count)))) {
            pp_task_free(t);
            return -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < count; i++) t->source[i] = PP_ORIGIN;
    t->n_have = t->n_requests = t->n_origin_requests = t->n_pieces_requested = t->n_pending = 0;
    t->n_run_held = 0;
    return 0;
}

void pp_task_free(pp_task *t)
{
    free(t->have);
    free(t->granted);
    free(t->requests);
    free(t->since);
    free(t->source);
    t->have = t->granted = t->requests = NULL;
    t->since = NULL;
    t->source = NULL;
    for (int i = 0; i < t->n_parents; i++) {
        free(t->parents[i].bits);
        t->parents[i].bits = NULL;
    }
    free(t->banned_ids);
    t->banned_ids = NULL;
    t->n_banned_ids = 0;
}

void pp_task_reset_pieces(pp_task *t)
{
    if (!t->have) return;
    memset(t->have, 0, nbytes(t->piece_count));
    memset(t->granted, 0, nbytes(t->piece_count));
    memset(t->requests, 0, t->piece_count ? t->piece_count : 1);
    for (uint32_t i = 0; i < t->piece_count; i++) t->source[i] = PP_ORIGIN;
    for (int i = 0; i < t->n_parents; i++) t->parents[i].requests = 0;
    t->n_have = t->n_requests = t->n_origin_requests = t->n_pieces_requested = t->n_pending = 0;
    t->n_run_held = 0;
}

void pp_load_have(pp_task *t, const uint8_t *bits)
{
    if (!t->have) return;
    memcpy(t->have, bits, proto_bitmap_nbytes(t->piece_count));
    /* bits past piece_count must stay clear */
    for (uint32_t i = t->piece_count; i < proto_bitmap_nbytes(t->piece_count) * 8; i++)
        proto_bit_clear(t->have, i);
    t->n_have = proto_bits_count(t->have, t->piece_count);
    for (uint32_t i = 0; i < t->piece_count; i++) {
        t->source[i] = PP_ORIGIN;
        if (proto_bit_get(t->have, i)) proto_bit_clear(t->granted, i);
    }
    t->n_pending = 0;
    for (uint32_t i = 0; i < t->piece_count; i++)
        t->n_pending += t->requests[i] && !proto_bit_get(t->have, i);
}

/* ---- choosing ---- */

int pp_globally_banned(const pp_liars *liars, const char *host_id)
{
    if (!liars) return 0;
    for (const pp_liar *l = liars->head; l; l = l->next)
        if (strcmp(l->host_id, host_id) == 0) return l->tasks >= liars->ban_after;
    return 0;
}

static int parent_usable(const pp_parent *pa, const pp_env *env)
{
    return !pa->banned && pa->down_until_ms <= env->now_ms && pa->bits &&
           !pp_globally_banned(env->liars, pa->host_id);
}

/* The least loaded usable parent holding `piece` other than `except`, or -1. */
static int pick_parent(const pp_task *t, uint32_t piece, const pp_env *env, int except)
{
    if (t->hold_parents) return -1;
    int best = -1, best_load = 1 << 30;
    for (int i = 0; i < t->n_parents; i++) {
        const pp_parent *pa = &t->parents[i];
        if (i == except || !parent_usable(pa, env) || !proto_bit_get(pa->bits, piece)) continue;
        int load = env->conn_load ? env->conn_load(env->ctx, pa) : (int)pa->requests;
        if (load < 0 || load >= (int)env->lim->per_parent_in_flight) continue;
        if (load < best_load) {
            best = i;
            best_load = load;
        }
    }
    return best;
}

static int origin_allowed(const pp_task *t, uint32_t piece, const pp_env *env)
{
    return env->origin_known && (t->origin_mode || proto_bit_get(t->granted, piece)) &&
           t->n_origin_requests - t->n_run_held < env->lim->origin_in_flight;
}

/* A source for a piece nobody fetches yet: a parent first, else the origin when allowed. */
static int choose(const pp_task *t, uint32_t piece, const pp_env *env, pp_pick *out)
{
    int tp = pick_parent(t, piece, env, -2);
    if (tp < 0 && !origin_allowed(t, piece, env)) return 0;
    out->piece = piece;
    out->parent = tp >= 0 ? tp : PP_ORIGIN;
    return 1;
}

static int wanted(const pp_task *t, uint32_t p)
{
    return !proto_bit_get(t->have, p) && t->requests[p] == 0;
}

static int holders(const pp_task *t, uint32_t p, const pp_env *env)
{
    int n = 0;
    for (int i = 0; i < t->n_parents; i++) {
        const pp_parent *pa = &t->parents[i];
        n += pa->bits && !pa->banned && proto_bit_get(pa->bits, p) &&
             !pp_globally_banned(env->liars, pa->host_id);
    }
    return n;
}

/* End game: every missing piece is requested. A piece with one request outstanding may be asked
 * of a second parent, so the last pieces do not wait for the slowest parent. Parents only: the
 * origin is never asked twice. */
static int end_game(const pp_task *t, const pp_env *env, pp_pick *out)
{
    if (t->hold_parents || t->n_have + t->n_pending < t->piece_count) return 0;
    for (uint32_t p = 0; p < t->piece_count; p++) {
        if (proto_bit_get(t->have, p) || t->requests[p] != 1) continue;
        if (env->now_ms - t->since[p] < env->lim->end_game_after_ms) continue;
        /* the first request's parent is not recorded per piece: any parent that has no
         * request of ours outstanding cannot be the one serving it */
        for (int i = 0; i < t->n_parents; i++) {
            const pp_parent *pa = &t->parents[i];
            if (pa->requests || !parent_usable(pa, env) || !proto_bit_get(pa->bits, p)) continue;
            int load = env->conn_load ? env->conn_load(env->ctx, pa) : 0;
            if (load < 0 || load >= (int)env->lim->per_parent_in_flight) continue;
            out->piece = p;
            out->parent = i;
            return 1;
        }
    }
    return 0;
}

static int next_pick(pp_task *t, const pp_want *wants, size_t n_wants, const pp_env *env,
                     pp_pick *out);

static uint64_t next_rand(uint64_t *s)
{
    /* splitmix64: any seed, 0 included */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A granted piece no parent holds, from the origin, within origin_in_flight but beyond
 * pieces_in_flight: the mesh waits for these first copies, so requests to parents (which a node
 * that knows its parents' pieces always has) must not hold them back. */
static int granted_from_origin(const pp_task *t, const pp_env *env, pp_pick *out)
{
    if (!env->origin_known || t->n_origin_requests - t->n_run_held >= env->lim->origin_in_flight)
        return 0;
    for (uint32_t p = 0; p < t->piece_count; p++) {
        if (!proto_bit_get(t->granted, p) || !wanted(t, p) || holders(t, p, env)) continue;
        out->piece = p;
        out->parent = PP_ORIGIN;
        return 1;
    }
    return 0;
}

int pp_next(pp_task *t, const pp_want *wants, size_t n_wants, const pp_env *env, pp_pick *out)
{
    out->at_ms = env->now_ms;
    return next_pick(t, wants, n_wants, env, out);
}

static int next_pick(pp_task *t, const pp_want *wants, size_t n_wants, const pp_env *env,
                     pp_pick *out)
{
    if (!t->have || t->n_have == t->piece_count) return 0;
    if (t->n_requests - t->n_run_held >= env->lim->pieces_in_flight)
        return t->whole && granted_from_origin(t, env, out);
    /* 1. what readers wait for, in their order; when the task fetches the whole blob anyway,
     * only each reader's next pieces_in_flight missing ones: beyond them rarest first serves it
     * as well and keeps nodes that all read the blob in order from all taking the same pieces
     * (the pieces few hold would never spread: every uplink but the first holders' idle) */
    for (size_t w = 0; w < n_wants; w++) {
        uint32_t last = wants[w].last < t->piece_count ? wants[w].last : t->piece_count - 1;
        uint32_t urgent = 0;
        for (uint32_t p = wants[w].first; p <= last && p < t->piece_count; p++) {
            if (proto_bit_get(t->have, p)) continue;
            if (t->whole && urgent++ >= env->lim->pieces_in_flight) break;
            if (wanted(t, p) && choose(t, p, env, out)) return 1;
        }
    }
    if (!t->whole) return 0;
    /* 2. origin grants (other peers wait for them), in order */
    for (uint32_t p = 0; p < t->piece_count; p++)
        if (proto_bit_get(t->granted, p) && wanted(t, p) && choose(t, p, env, out)) return 1;
    /* 3. the least loaded parent that holds a piece we lack, its rarest such piece (ties: the
     * rarer piece). Parent first: requests spread over every parent holding something new, not
     * all onto the few holding the rarest pieces (with pieces_in_flight filled there, the
     * other parents' uplinks would sit idle while their pieces wait) */
    if (!t->hold_parents) {
        int load[PP_MAX_PARENTS] = {0}, rare[PP_MAX_PARENTS] = {0}; /* all set below */
        uint32_t ties[PP_MAX_PARENTS];
        uint32_t piece[PP_MAX_PARENTS];
        int any = 0;
        for (int i = 0; i < t->n_parents; i++) {
            const pp_parent *pa = &t->parents[i];
            load[i] = -1;
            rare[i] = 1 << 30;
            ties[i] = 0;
            if (!parent_usable(pa, env)) continue;
            int l = env->conn_load ? env->conn_load(env->ctx, pa) : (int)pa->requests;
            if (l < 0 || l >= (int)env->lim->per_parent_in_flight) continue;
            load[i] = l;
            any = 1;
        }
        for (uint32_t p = 0; any && p < t->piece_count; p++) {
            if (!wanted(t, p)) continue;
            int n = -1; /* holders, counted once per piece when some open parent has it */
            for (int i = 0; i < t->n_parents; i++) {
                if (load[i] < 0 || !proto_bit_get(t->parents[i].bits, p)) continue;
                if (n < 0) n = holders(t, p, env);
                if (n < rare[i]) {
                    rare[i] = n;
                    piece[i] = p;
                    ties[i] = 1;
                } else if (n == rare[i] && t->rng && next_rand(&t->rng) % ++ties[i] == 0) {
                    piece[i] = p; /* reservoir sampling: each tie equally likely */
                }
            }
        }
        int best_tp = -1;
        for (int i = 0; i < t->n_parents; i++) {
            if (load[i] < 0 || rare[i] == 1 << 30) continue;
            if (best_tp < 0 || load[i] < load[best_tp] ||
                (load[i] == load[best_tp] && rare[i] < rare[best_tp]))
                best_tp = i;
        }
        if (best_tp >= 0) {
            out->piece = piece[best_tp];
            out->parent = best_tp;
            return 1;
        }
    }
    /* 4. origin mode: everything else, in order */
    if (t->origin_mode)
        for (uint32_t p = 0; p < t->piece_count; p++)
            if (wanted(t, p) && choose(t, p, env, out)) return 1;
    /* 5. end game */
    return end_game(t, env, out);
}

void pp_request_started(pp_task *t, const pp_pick *p)
{
    if (p->piece >= t->piece_count) return;
    if (t->requests[p->piece]++ == 0) {
        t->since[p->piece] = p->at_ms;
        t->n_pieces_requested++;
        if (!proto_bit_get(t->have, p->piece)) t->n_pending++;
    }
    t->n_requests++;
    if (p->parent == PP_ORIGIN)
        t->n_origin_requests++;
    else if (p->parent >= 0 && p->parent < t->n_parents)
        t->parents[p->parent].requests++;
}

void pp_request_ended(pp_task *t, uint32_t piece, int parent)
{
    if (!t->requests || piece >= t->piece_count || t->requests[piece] == 0) return;
    if (--t->requests[piece] == 0) {
        t->n_pieces_requested--;
        if (!proto_bit_get(t->have, piece)) t->n_pending--;
    }
    t->n_requests--;
    if (parent == PP_ORIGIN) {
        if (t->n_origin_requests) t->n_origin_requests--;
    } else if (parent >= 0 && parent < t->n_parents && t->parents[parent].requests) {
        t->parents[parent].requests--;
    }
}

uint32_t pp_origin_run(const pp_task *t, uint32_t first, uint32_t max)
{
    uint32_t n = 0;
    if (!t->have || first >= t->piece_count) return 0;
    for (uint32_t p = first; p < t->piece_count && n < max; p++, n++) {
        if (p != first && (!(t->origin_mode || proto_bit_get(t->granted, p)) ||
                           proto_bit_get(t->have, p) || t->requests[p]))
            break;
    }
    return n;
}

void pp_origin_run_started(pp_task *t, uint32_t first, uint32_t n, uint64_t at_ms)
{
    if (!t->have || n == 0 || first >= t->piece_count || n > t->piece_count - first) return;
    for (uint32_t i = 0; i < n; i++) {
        pp_pick p = {.piece = first + i, .parent = PP_ORIGIN, .at_ms = at_ms};
        pp_request_started(t, &p);
    }
    t->n_run_held += n - 1;
}

void pp_origin_run_piece_ended(pp_task *t, uint32_t piece, int run_ended)
{
    if (!t->requests || piece >= t->piece_count || t->requests[piece] == 0) return;
    pp_request_ended(t, piece, PP_ORIGIN);
    if (!run_ended && t->n_run_held) t->n_run_held--;
}

int pp_piece_stored(pp_task *t, uint32_t piece, int parent)
{
    if (!t->have || piece >= t->piece_count) return -ERANGE;
    if (proto_bit_get(t->have, piece)) return 0;
    proto_bit_set(t->have, piece);
    t->n_have++;
    if (t->requests[piece]) t->n_pending--;
    proto_bit_clear(t->granted, piece);
    t->source[piece] = (int16_t)(parent >= 0 && parent < t->n_parents ? parent : PP_ORIGIN);
    if (parent >= 0 && parent < t->n_parents) t->parents[parent].served++;
    return 1;
}

void pp_piece_lost(pp_task *t, uint32_t piece)
{
    if (!t->have || piece >= t->piece_count || !proto_bit_get(t->have, piece)) return;
    proto_bit_clear(t->have, piece);
    t->n_have--;
    if (t->requests[piece]) t->n_pending++;
    t->source[piece] = PP_ORIGIN;
}

void pp_count_waiting(const pp_task *t, const pp_liars *liars, pp_waiting *out)
{
    if (!t->have) return;
    out->missing += t->piece_count - t->n_have;
    out->requests_origin += t->n_origin_requests;
    out->requests_parents +=
        t->n_requests > t->n_origin_requests ? t->n_requests - t->n_origin_requests : 0;
    pp_env env = {.liars = liars};
    for (uint32_t p = 0; p < t->piece_count; p++) {
        if (!wanted(t, p)) continue;
        if (holders(t, p, &env) > 0) {
            out->waiting_parent++;
        } else {
            out->waiting_origin++;
            out->waiting_origin_mine += t->origin_mode || proto_bit_get(t->granted, p);
        }
    }
}

int pp_wants_parents(const pp_task *t, const pp_liars *liars)
{
    if (!t->have || t->n_have == t->piece_count) return 0;
    if (t->n_requests == 0) return 1;
    if (t->origin_mode || !t->whole) return 0;
    pp_env env = {.liars = liars};
    for (uint32_t p = 0; p < t->piece_count; p++)
        if (!proto_bit_get(t->have, p) && !proto_bit_get(t->granted, p) && !holders(t, p, &env))
            return 1;
    return 0;
}

/* ---- judging parents ---- */

static void skip(pp_parent *pa, uint64_t until)
{
    if (pa->down_until_ms < until) pa->down_until_ms = until; /* never shorten a longer skip */
}

/* A report starts an episode that lasts as long as the skip it caused. */
static int report(pp_parent *pa, int reason, uint64_t now)
{
    if (now < pa->reported_until_ms) return 0;
    pa->reported_until_ms = pa->down_until_ms;
    return reason;
}

int pp_request_failed(pp_task *t, int parent, uint32_t piece, enum pp_failure why, uint64_t now)
{
    if (parent < 0 || parent >= t->n_parents) return 0;
    pp_parent *pa = &t->parents[parent];
    switch (why) {
    case PP_FAIL_BUSY:
        skip(pa, now + DOWN_BUSY_MS);
        return 0;
    case PP_FAIL_NOT_HELD:
        if (pa->bits && piece < t->piece_count) proto_bit_clear(pa->bits, piece);
        return 0;
    case PP_FAIL_UNKNOWN_TASK:
        if (pa->bits) memset(pa->bits, 0, nbytes(t->piece_count));
        return 0;
    case PP_FAIL_TIMEOUT:
        skip(pa, now + DOWN_TIMEOUT_MS);
        pa->subscribed = 0;
        return report(pa, PROTO_BAD_PARENT_TIMEOUT, now);
    case PP_FAIL_LOST:
        skip(pa, now + DOWN_LOST_MS);
        pa->subscribed = 0;
        return report(pa, PROTO_BAD_PARENT_REFUSED, now);
    case PP_FAIL_BAD_REPLY:
        skip(pa, now + DOWN_BAD_REPLY_MS);
        return report(pa, PROTO_BAD_PARENT_OTHER, now);
    }
    return 0;
}

void pp_parent_unreachable(pp_task *t, int parent, uint64_t now)
{
    if (parent >= 0 && parent < t->n_parents) skip(&t->parents[parent], now + DOWN_UNREACHABLE_MS);
}

static pp_liar *liar_find(const pp_liars *liars, const char *host_id)
{
    for (pp_liar *l = liars->head; l; l = l->next)
        if (strcmp(l->host_id, host_id) == 0) return l;
    return NULL;
}

int pp_usable_parents(const pp_task *t, const pp_liars *liars)
{
    int n = 0;
    for (int i = 0; i < t->n_parents; i++)
        n += !t->parents[i].banned && !pp_globally_banned(liars, t->parents[i].host_id);
    return n;
}

unsigned pp_parent_lied(pp_task *t, pp_liars *liars, int parent, int origin_known)
{
    if (parent < 0 || parent >= t->n_parents) return 0;
    pp_parent *pa = &t->parents[parent];
    if (pa->banned) return 0;
    unsigned r = PP_LIE_NEW_BAN;
    pa->banned = 1;
    pp_liar *l = liar_find(liars, pa->host_id);
    if (!l && (l = calloc(1, sizeof(*l)))) {
        snprintf(l->host_id, sizeof(l->host_id), "%s", pa->host_id);
        l->next = liars->head;
        liars->head = l;
    }
    if (l && ++l->tasks == liars->ban_after) r |= PP_LIE_GLOBAL_BAN;
    /* the only parents left lied: waiting for the mesh would only wait for them */
    if (!pp_usable_parents(t, liars) && !t->origin_mode && origin_known) {
        t->origin_mode = 1;
        r |= PP_LIE_TO_ORIGIN;
    }
    return r;
}

void pp_liars_free(pp_liars *liars)
{
    while (liars->head) {
        pp_liar *l = liars->head;
        liars->head = l->next;
        free(l);
    }
}

/* ---- what parents hold ---- */

int pp_add_candidate(pp_task *t, const char *host_id, const char *addr, const uint8_t *bits,
                     size_t bits_len, uint64_t now)
{
    size_t nb = proto_bitmap_nbytes(t->piece_count);
    if (bits_len != nb) return -EINVAL;
    int k = -1;
    for (int i = 0; i < t->n_parents && k < 0; i++)
        if (strcmp(t->parents[i].host_id, host_id) == 0) k = i;
    if (k < 0)
        for (size_t i = 0; i < t->n_banned_ids; i++)
            if (strcmp(t->banned_ids[i], host_id) == 0) return -EACCES;
    if (k >= 0 && strcmp(t->parents[k].addr, addr) != 0) {
        snprintf(t->parents[k].addr, sizeof(t->parents[k].addr), "%s", addr);
        t->parents[k].conn = NULL;
        t->parents[k].subscribed = 0;
    }
    if (k < 0 && t->n_parents == PP_MAX_PARENTS) {
        /* reuse the slot of a parent that is banned or down and serves nothing in flight,
         * whose served pieces are not blamed on it any more (verification needs source) */
        for (int i = 0; i < t->n_parents && k < 0; i++) {
            pp_parent *pa = &t->parents[i];
            if (!(pa->banned || pa->down_until_ms > now) || pa->requests) continue;
            int busy = 0;
            for (uint32_t p = 0; p < t->piece_count && !busy; p++) busy = t->source[p] == i;
            if (busy) continue;
            if (pa->banned) { /* its ban outlives the slot */
                void *nb2 = realloc(t->banned_ids, (t->n_banned_ids + 1) * sizeof(*t->banned_ids));
                if (!nb2) return -ENOMEM;
                t->banned_ids = nb2;
                snprintf(t->banned_ids[t->n_banned_ids++], sizeof(*t->banned_ids), "%s",
                         pa->host_id);
            }
            free(pa->bits);
            memset(pa, 0, sizeof(*pa));
            k = i;
        }
        if (k < 0) return -ENOSPC;
    } else if (k < 0) {
        k = t->n_parents++;
        memset(&t->parents[k], 0, sizeof(t->parents[k]));
    }
    pp_parent *pa = &t->parents[k];
    if (!pa->host_id[0]) {
        snprintf(pa->host_id, sizeof(pa->host_id), "%s", host_id);
        snprintf(pa->addr, sizeof(pa->addr), "%s", addr);
    }
    if (!pa->bits && !(pa->bits = calloc(1, nb ? nb : 1))) return -ENOMEM;
    for (size_t b = 0; b < nb; b++) pa->bits[b] |= bits[b];
    pa->down_until_ms = 0;
    return k;
}

int pp_parent_avail(pp_task *t, int parent, const uint8_t *bits, size_t len,
                    const proto_piece_run *runs, size_t n_runs)
{
    if (parent < 0 || parent >= t->n_parents) return -EINVAL;
    pp_parent *pa = &t->parents[parent];
    size_t nb = proto_bitmap_nbytes(t->piece_count);
    if (!pa->bits) return -EINVAL;
    if (bits && len != nb) return -EINVAL;
    for (size_t i = 0; i < n_runs; i++)
        if (runs[i].start >= t->piece_count || runs[i].count > t->piece_count - runs[i].start)
            return -ERANGE;
    if (bits) memcpy(pa->bits, bits, nb);
    for (size_t i = 0; i < n_runs; i++)
        for (uint32_t k = 0; k < runs[i].count; k++) proto_bit_set(pa->bits, runs[i].start + k);
    return 0;
}

int pp_grant(pp_task *t, const proto_piece_run *runs, size_t n_runs)
{
    if (!t->granted) return -ERANGE;
    for (size_t i = 0; i < n_runs; i++)
        if (runs[i].start >= t->piece_count || runs[i].count > t->piece_count - runs[i].start)
            return -ERANGE;
    for (size_t i = 0; i < n_runs; i++)
        for (uint32_t k = 0; k < runs[i].count; k++) proto_bit_set(t->granted, runs[i].start + k);
    return 0;
}

void pp_clear_grants(pp_task *t)
{
    if (t->granted) memset(t->granted, 0, nbytes(t->piece_count));
}
