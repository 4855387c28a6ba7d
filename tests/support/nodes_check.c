/*
 * The checks of a world after its streams: see nodes.h ("The checks").
 * Moved from tests/integration/test_multinode.c. Each check prints what is
 * wrong (at most SHOW_MAX lines of a kind) and returns false.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nodes.h"

#define SHOW_MAX 8   /* diagnostics printed per kind of problem */

/* Element @p i of a string array, "" when absent. */
static const char *str_at(const json_t *arr, size_t i)
{
    const char *s = json_string_value(json_array_get(arr, i));
    return s != NULL ? s : "";
}

/* @p arr holds exactly the ids of the NULL-terminated @p expect, each once.
 * Silent, unlike kc_check_id_set(): polling loops call it. */
static bool same_ids(const json_t *arr, const char *const *expect)
{
    size_t n = 0;
    while (expect[n] != NULL)
        n++;
    if (!json_is_array(arr) || json_array_size(arr) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        size_t found = 0;
        for (size_t j = 0; j < n; j++)
            found += strcmp(str_at(arr, j), expect[i]) == 0;
        if (found != 1)
            return false;
    }
    return true;
}


/* One line about a request that was answered wrongly. */
static void show_req(const struct nd_world *w, const struct nd_req *q, int shard)
{
    char again[64] = "";
    if (q->mismatch)
        snprintf(again, sizeof(again), ", then %s seq %lld", q->code2, (long long)q->seq2);
    fprintf(stderr, "  %s of user %d (shard %d)%s%s: %s seq %lld%s\n", q->cid, q->user, shard,
            q->room >= 0 ? " to room " : "", q->room >= 0 ? w->room[q->room] : "",
            q->ok ? "ok" : q->code, (long long)q->seq, again);
}

/* Every request answered, with one success, the same on every repeat. */
static bool check_answers(struct nd_world *w, const struct nd_req *q, int n, const char *what)
{
    int sent = 0, open = 0, failed = 0, mismatched = 0, incomplete = 0, shown = 0;
    int open_by_shard[ND_PARTITIONS] = {0}, failed_by_shard[ND_PARTITIONS] = {0};
    for (int i = 0; i < n; i++) {
        int shard = kc_partition_for(w->u[q[i].user].id, ND_PARTITIONS);
        sent += q[i].sent_ms != 0;
        open += !q[i].answered;
        open_by_shard[shard] += !q[i].answered;
        failed += q[i].answered && !q[i].ok;
        failed_by_shard[shard] += q[i].answered && !q[i].ok;
        mismatched += q[i].mismatch;
        incomplete += q[i].incomplete;
        if (((q[i].answered && !q[i].ok) || q[i].mismatch) && shown++ < SHOW_MAX)
            show_req(w, &q[i], shard);
    }
    fprintf(stderr, "%s: %d %s sent, %d unanswered (by key shard %d/%d/%d/%d), %d failed "
            "(%d/%d/%d/%d), %d answered differently twice, %d lacking a room\n",
            nd_case_name(), sent, what, open, open_by_shard[0], open_by_shard[1],
            open_by_shard[2], open_by_shard[3], failed, failed_by_shard[0], failed_by_shard[1],
            failed_by_shard[2], failed_by_shard[3], mismatched, incomplete);
    return sent == n && open == 0 && failed == 0 && mismatched == 0 && incomplete == 0;
}

/* Index the acknowledged sends of room @p r by seq; false on a repeat. */
static bool index_room(struct nd_world *w, int r)
{
    bool ok = true;
    w->acked[r] = 0;
    memset(w->by_seq[r], -1, sizeof(w->by_seq[r]));
    for (int i = 0; i < w->nsend; i++) {
        const struct nd_req *q = &w->send[i];
        if (q->room != r || !q->ok)
            continue;
        w->acked[r]++;
        if (q->seq < 1 || q->seq > ND_MAX_SENDS || w->by_seq[r][q->seq] >= 0) {
            fprintf(stderr, "  room %d: send %d acknowledged with seq %lld, %s\n", r, i,
                    (long long)q->seq, q->seq < 1 || q->seq > ND_MAX_SENDS ? "out of range"
                                                                       : "given twice");
            ok = false;
            continue;
        }
        w->by_seq[r][q->seq] = i;
    }
    return ok;
}

/* One history entry at position @p j is the send acknowledged with seq j+1. */
static bool check_entry(struct nd_world *w, int r, size_t j, const json_t *m, int *seen)
{
    char text[96], cmid[32];
    const char *got = kc_str(m, "clientMsgId");
    int64_t seq = kc_int(m, "seq", -1);
    int i = got != NULL && strncmp(got, "m-", 2) == 0 ? atoi(got + 2) : -1;

    if (seq != (int64_t)j + 1 || i < 0 || i >= w->nsend || w->send[i].room != r) {
        fprintf(stderr, "  room %d: entry %zu is %s\n", r, j, kc_dumps(m));
        return false;
    }
    const struct nd_req *q = &w->send[i];
    nd_chat_text(w, i, text, sizeof(text));
    nd_chat_cmid(i, cmid, sizeof(cmid));
    if (seen[i]++ || !q->ok || q->seq != seq ||
        strcmp(nd_str_of(m, "writerId"), w->u[q->user].id) != 0 ||
        strcmp(nd_str_of(m, "message"), text) != 0) {
        fprintf(stderr, "  room %d: seq %lld holds send %d (%s, answered %s seq %lld, %d times "
                "in the history): %s\n", r, (long long)seq, i, cmid, q->ok ? "ok" : q->code,
                (long long)q->seq, seen[i], kc_dumps(m));
        return false;
    }
    return true;
}

/* One writer's acknowledged sends to room @p r have rising seqs in the order
 * they were sent (protocol.md §7, order per user). */
static bool check_writer_order(const struct nd_world *w, int r)
{
    for (int u = 0; u < ND_USERS; u++) {
        int64_t last = 0;
        for (int i = 0; i < w->nsend; i++) {
            const struct nd_req *q = &w->send[i];
            if (q->room != r || q->user != u || !q->ok)
                continue;
            if (q->seq <= last) {
                fprintf(stderr, "  room %d: writer %d's send %d got seq %lld after seq %lld\n", r,
                        u, i, (long long)q->seq, (long long)last);
                return false;
            }
            last = q->seq;
        }
    }
    return true;
}

/* Room @p r's history, read by a member of another shard: exactly the
 * acknowledged sends, each once at its seq, seqs 1..n. */
static bool check_room(struct nd_world *w, int r)
{
    static int seen[ND_MAX_SENDS];
    int reader = (r + 1) % ND_USERS;
    bool ok = index_room(w, r) && check_writer_order(w, r);
    json_t *h = kc_history_all(w->c, &w->u[reader], w->room[r]);

    if (h == NULL)
        return false;
    if (json_array_size(h) != (size_t)w->acked[r]) {
        fprintf(stderr, "  room %d (%s): history holds %zu messages, %d sends were "
                "acknowledged\n", r, w->room[r], json_array_size(h), w->acked[r]);
        ok = false;
    }
    memset(seen, 0, sizeof(seen));
    int bad = 0;
    for (size_t j = 0; j < json_array_size(h); j++)
        if (!check_entry(w, r, j, json_array_get(h, j), seen) && ++bad >= SHOW_MAX)
            break;
    json_decref(h);
    return ok && bad == 0;
}

/* @p rooms (one user's list) names the world's rooms exactly, each with its
 * name, the 8 participants and lastSeq = its acknowledged sends. */
static bool room_list_right(const struct nd_world *w, const json_t *rooms, char *why, size_t size)
{
    const char *ids[ND_USERS + 1];
    for (int i = 0; i < ND_USERS; i++)
        ids[i] = w->u[i].id;
    ids[ND_USERS] = NULL;
    if (json_array_size(rooms) != ND_ROOMS || !nd_lists_every_room(w, rooms)) {
        snprintf(why, size, "not the %d rooms: %s", ND_ROOMS, kc_dumps(rooms));
        return false;
    }
    for (size_t j = 0; j < ND_ROOMS; j++) {
        const json_t *e = json_array_get(rooms, j);
        int r = 0;
        while (r < ND_ROOMS && strcmp(nd_str_of(e, "roomId"), w->room[r]) != 0)
            r++;
        char name[16];
        snprintf(name, sizeof(name), "room %d", r);
        if (kc_int(e, "lastSeq", -1) != w->acked[r] ||
            strcmp(nd_str_of(e, "roomName"), name) != 0 ||
            strcmp(str_at(json_object_get(e, "participants"), 0),
                   w->u[r].id) != 0) {
            snprintf(why, size, "room %d should have lastSeq %d: %s", r, w->acked[r],
                     kc_dumps(e));
            return false;
        }
        if (!same_ids(json_object_get(e, "participants"), ids)) {
            snprintf(why, size, "room %d participants: %s", r, kc_dumps(e));
            return false;
        }
    }
    return true;
}

/* Every user's room list (with the session of the start) is right, within
 * ND_SETTLE_MS: a room of another shard's lastSeq comes through kchat-rooms. */
static bool check_lists(struct nd_world *w)
{
    int64_t deadline = kc_now_ms() + ND_SETTLE_MS;
    char why[768] = "";
    for (int u = 0; u < ND_USERS; u++) {
        for (;;) {
            json_t *r = kc_call(w->c, "user-search-room", w->u[u].id, w->u[u].session,
                                json_pack("{ss}", "userId", w->u[u].id));
            bool answered = r != NULL && json_is_true(json_object_get(r, "isSuccess"));
            bool right = answered && room_list_right(w, json_object_get(r, "rooms"), why,
                                                     sizeof(why));
            if (!answered)
                snprintf(why, sizeof(why), "answer %s", kc_dumps(r));
            json_decref(r);
            if (right)
                break;
            if (!answered || kc_now_ms() >= deadline) {
                fprintf(stderr, "  user %d (shard %d): room list wrong: %s\n", u, u % ND_PARTITIONS,
                        why);
                return false;
            }
            kc_sleep_ms(250);
        }
    }
    return true;
}

/* @p friends (one user's list) is the 7 others, sorted, with name and status. */
static bool friend_list_right(const struct nd_world *w, int u, const json_t *friends)
{
    const char *expect[ND_USERS];
    int n = 0;
    for (int i = 0; i < ND_USERS; i++)
        if (i != u)
            expect[n++] = w->u[i].id;
    expect[n] = NULL;
    json_t *ids = json_array();
    for (size_t j = 0; j < json_array_size(friends); j++)
        json_array_append(ids, json_object_get(json_array_get(friends, j), "userId"));
    bool ok = same_ids(ids, expect);
    json_decref(ids);
    for (size_t j = 0; ok && j < json_array_size(friends); j++) {
        const json_t *f = json_array_get(friends, j);
        const char *id = kc_str(f, "userId");
        int i = 0;
        while (strcmp(w->u[i].id, id) != 0)
            i++;
        ok = strcmp(nd_str_of(f, "userName"), w->u[i].name) == 0 &&
             strcmp(nd_str_of(f, "userStatus"), w->status[i]) == 0 &&
             (j == 0 || strcmp(kc_str(json_array_get(friends, j - 1), "userId"), id) < 0);
    }
    return ok;
}

/* Every user's friend list is right, within ND_SETTLE_MS (statuses of other
 * shards come through the directory replica). */
static bool check_friends(struct nd_world *w)
{
    int64_t deadline = kc_now_ms() + ND_SETTLE_MS;
    for (int u = 0; u < ND_USERS; u++) {
        for (;;) {
            json_t *r = kc_call(w->c, "user-search-friend", w->u[u].id, w->u[u].session,
                                json_pack("{ss}", "userId", w->u[u].id));
            bool answered = r != NULL && json_is_true(json_object_get(r, "isSuccess"));
            bool right = answered && friend_list_right(w, u, json_object_get(r, "friend"));
            if (!right && (!answered || kc_now_ms() >= deadline))
                fprintf(stderr, "  user %d (shard %d): friend list wrong: %s\n", u,
                        u % ND_PARTITIONS, kc_dumps(r));
            json_decref(r);
            if (right)
                break;
            if (!answered || kc_now_ms() >= deadline)
                return false;
            kc_sleep_ms(250);
        }
    }
    return true;
}

/* User @p u got the chat events of room @p r: seqs 1..n, each the message
 * acknowledged with that seq. */
static bool check_chat_events(struct nd_world *w, int u, int r, int64_t deadline)
{
    int64_t left = deadline - kc_now_ms();
    json_t *ev = kc_wait_events(w->c, w->u[u].id, "chat", w->room[r], (size_t)w->acked[r],
                                left > 0 ? (int)left : 0);
    bool ok = json_array_size(ev) == (size_t)w->acked[r];
    if (!ok)
        fprintf(stderr, "  user %d: %zu distinct chat events of room %d, %d acknowledged "
                "sends\n", u, json_array_size(ev), r, w->acked[r]);
    for (size_t j = 0; ok && j < json_array_size(ev); j++) {
        const json_t *e = json_array_get(ev, j);
        int64_t seq = kc_int(e, "seq", -1);
        char cmid[32] = "";
        if (seq >= 1 && seq <= ND_MAX_SENDS && w->by_seq[r][seq] >= 0)
            nd_chat_cmid(w->by_seq[r][seq], cmid, sizeof(cmid));
        ok = cmid[0] != '\0' && strcmp(nd_str_of(e, "clientMsgId"), cmid) == 0;
        if (!ok)
            fprintf(stderr, "  user %d: chat event %s is no acknowledged send (%s)\n", u,
                    kc_dumps(e), cmid);
    }
    json_decref(ev);
    return ok;
}

/* Every participant got every chat event and a room event per room. */
static bool check_events(struct nd_world *w)
{
    int64_t deadline = kc_now_ms() + ND_SETTLE_MS;
    for (int u = 0; u < ND_USERS; u++) {
        json_t *rev = kc_wait_events(w->c, w->u[u].id, "room", NULL, ND_ROOMS, 5000);
        bool rooms_ok = json_array_size(rev) == ND_ROOMS && nd_lists_every_room(w, rev);
        if (!rooms_ok)
            fprintf(stderr, "  user %d: room events %s\n", u, kc_dumps(rev));
        json_decref(rev);
        if (!rooms_ok)
            return false;
        for (int r = 0; r < ND_ROOMS; r++)
            if (!check_chat_events(w, u, r, deadline))
                return false;
    }
    return true;
}

void nd_check_world(struct nd_world *w, const char *label)
{
    int64_t t0 = kc_now_ms();
    bool drained = nd_drain(w, ND_DRAIN_MS);
    fprintf(stderr, "%s: checks %s\n", nd_case_name(), label);
    bool sends = check_answers(w, w->send, w->nsend, "chat sends");
    bool probes = check_answers(w, w->probe, w->nprobe, "probes");
    bool rooms = true;
    for (int r = 0; r < ND_ROOMS; r++)
        rooms = check_room(w, r) && rooms;
    bool lists = check_lists(w);
    bool friends = check_friends(w);
    bool events = check_events(w);
    fprintf(stderr, "%s: %s: answers %s, probes %s, histories %s, room lists %s, friend lists "
            "%s, events %s (%lld ms)\n", nd_case_name(), label, sends && drained ? "ok" : "WRONG",
            probes ? "ok" : "WRONG", rooms ? "ok" : "WRONG", lists ? "ok" : "WRONG",
            friends ? "ok" : "WRONG", events ? "ok" : "WRONG", (long long)(kc_now_ms() - t0));
    if (!(drained && sends && probes && rooms && lists && friends && events))
        kc_diag_dump();
    assert_true(drained);
    assert_true(sends);
    assert_true(probes);
    assert_true(rooms);
    assert_true(lists);
    assert_true(friends);
    assert_true(events);
}

/* Counts, for nd_check_event_repeats(), the chat events of the world's
 * rooms that are not the send acknowledged with their (room, seq). Runs
 * with the client's lock held: no kc_* call that takes the client. */
struct contradictions {
    const struct nd_world *w;
    int shown;
};

static bool event_contradicts(const kc_record *r, void *arg)
{
    struct contradictions *x = arg;
    const struct nd_world *w = x->w;
    char cmid[32] = "";
    int room = 0;

    if (strcmp(r->topic, KC_TOPIC_EVENTS) != 0 || r->body == NULL ||
        strcmp(nd_str_of(r->body, "type"), "chat") != 0)
        return false;
    while (room < ND_ROOMS && strcmp(nd_str_of(r->body, "roomId"), w->room[room]) != 0)
        room++;
    if (room == ND_ROOMS)
        return false;   /* a room of another world */
    int64_t seq = kc_int(r->body, "seq", -1);
    int i = seq >= 1 && seq <= ND_MAX_SENDS ? w->by_seq[room][seq] : -1;
    if (i >= 0)
        nd_chat_cmid(i, cmid, sizeof(cmid));
    bool right = i >= 0 && strcmp(nd_str_of(r->body, "clientMsgId"), cmid) == 0 &&
                 strcmp(nd_str_of(r->body, "writerId"), w->u[w->send[i].user].id) == 0;
    if (!right && x->shown++ < SHOW_MAX)
        fprintf(stderr, "  chat event at partition %d offset %lld: room %d seq %lld should be "
                "%s: %s\n", r->partition, (long long)r->offset, room, (long long)seq,
                i >= 0 ? cmid : "no acknowledged send", kc_dumps(r->body));
    return !right;
}

bool nd_check_event_repeats(struct nd_world *w)
{
    struct contradictions x = {w, 0};
    bool indexed = true;
    for (int r = 0; r < ND_ROOMS; r++)
        indexed = index_room(w, r) && indexed;
    size_t bad = kc_count_records(w->c, 0, event_contradicts, &x);
    fprintf(stderr, "%s: %zu chat events (repeats included) contradict the acknowledged "
            "sends\n", nd_case_name(), bad);
    return indexed && bad == 0;
}
