/*
 * Helpers for the protocol v1.1 room tests: event scans, the v1.1 calls,
 * users on a chosen partition, bulk registration (rooms.h).
 */
#include "rooms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- events -------------------------------------------------------------- */

struct ev_match {
    const char *user;
    const char *type;
    const char *room;
    const json_t *subset;
};

/* Runs with the client's lock held: json only, no kc_* call on a client. */
static bool match_event(const kc_record *r, void *arg)
{
    const struct ev_match *m = arg;
    if (strcmp(r->topic, KC_TOPIC_EVENTS) != 0 || !kc_record_key_is(r, m->user) ||
        r->body == NULL)
        return false;
    const char *t = kc_str(r->body, "type");
    if (t == NULL || strcmp(t, m->type) != 0)
        return false;
    if (m->room != NULL) {
        const char *rid = kc_str(r->body, "roomId");
        if (rid == NULL || strcmp(rid, m->room) != 0)
            return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m->subset, k, v) {
        if (!json_equal(json_object_get(r->body, k), v))
            return false;
    }
    return true;
}

static bool match_any(const kc_record *r, void *arg)
{
    (void)r;
    (void)arg;
    return true;
}

size_t krm_count_events(kc_client *c, const char *user, const char *type, const char *room,
                        const json_t *subset)
{
    struct ev_match m = { user, type, room, subset };
    return kc_count_records(c, 0, match_event, &m);
}

static void dump_events(kc_client *c, const char *user, const char *room)
{
    size_t n = kc_record_count(c);
    fprintf(stderr, "  events of %s%s%s so far:\n", user, room ? " in " : "", room ? room : "");
    for (size_t i = 0; i < n; i++) {
        const kc_record *r = kc_record_get(c, i);
        if (strcmp(r->topic, KC_TOPIC_EVENTS) != 0 || !kc_record_key_is(r, user))
            continue;
        const char *rid = r->body ? kc_str(r->body, "roomId") : NULL;
        if (room != NULL && (rid == NULL || strcmp(rid, room) != 0))
            continue;
        fprintf(stderr, "    %s\n", r->body ? kc_dumps(r->body) : "(undecodable)");
    }
}

bool krm_wait_events(kc_client *c, const char *user, const char *type, const char *room,
                     const json_t *subset, size_t n, int timeout_ms)
{
    int64_t deadline = kc_now_ms() + timeout_ms;
    for (;;) {
        size_t have = krm_count_events(c, user, type, room, subset);
        if (have >= n)
            return true;
        int64_t left = deadline - kc_now_ms();
        if (left <= 0) {
            fprintf(stderr, "%s got %zu of %zu `%s` events%s%s matching %s within %d ms\n",
                    user, have, n, type, room ? " in " : "", room ? room : "",
                    subset ? kc_dumps(subset) : "{}", timeout_ms);
            dump_events(c, user, room);
            return false;
        }
        /* wake on the next record consumed (any), or after 100 ms */
        kc_wait_record(c, kc_record_count(c), match_any, NULL, left < 100 ? (int)left : 100);
    }
}

json_t *krm_events(kc_client *c, const char *user, const char *type, const char *room,
                   const json_t *subset)
{
    struct ev_match m = { user, type, room, subset };
    json_t *out = json_array();
    size_t n = kc_record_count(c);
    for (size_t i = 0; i < n; i++) {
        const kc_record *r = kc_record_get(c, i);
        if (match_event(r, &m))
            json_array_append(out, r->body);
    }
    return out;
}

/* ---- calls --------------------------------------------------------------- */

json_t *krm_id_array(const char *const *ids)
{
    json_t *a = json_array();
    for (size_t i = 0; ids != NULL && ids[i] != NULL; i++)
        json_array_append_new(a, json_string(ids[i]));
    return a;
}

json_t *krm_read(kc_client *c, const kc_user *u, const char *room, json_int_t read_seq)
{
    return kc_call(c, "room-read", u->id, u->session,
                   json_pack("{ss ss sI}", "userId", u->id, "roomId", room, "readSeq",
                             read_seq));
}

json_t *krm_invite(kc_client *c, const kc_user *u, const char *room, const char *const *ids)
{
    return kc_call(c, "room-invite", u->id, u->session,
                   json_pack("{ss ss so}", "userId", u->id, "roomId", room, "friendId",
                             krm_id_array(ids)));
}

json_t *krm_leave(kc_client *c, const kc_user *u, const char *room)
{
    return kc_call(c, "room-leave", u->id, u->session,
                   json_pack("{ss ss}", "userId", u->id, "roomId", room));
}

json_t *krm_history(kc_client *c, const kc_user *u, const char *room)
{
    return kc_call(c, "room-history", u->id, u->session,
                   json_pack("{ss ss si}", "userId", u->id, "roomId", room, "limit", 100));
}

json_t *krm_room_entry(kc_client *c, const kc_user *u, const char *room, bool *found)
{
    *found = false;
    json_t *r = kc_call(c, "user-search-room", u->id, u->session,
                        json_pack("{ss}", "userId", u->id));
    if (!kc_check_ok(r, u->id) || !json_is_array(json_object_get(r, "rooms"))) {
        fprintf(stderr, "user-search-room of %s failed: %s\n", u->id, kc_dumps(r));
        json_decref(r);
        return NULL;
    }
    json_t *entry = NULL, *e;
    size_t i;
    json_array_foreach(json_object_get(r, "rooms"), i, e) {
        const char *rid = kc_str(e, "roomId");
        if (rid != NULL && strcmp(rid, room) == 0) {
            entry = json_incref(e);
            *found = true;
            break;
        }
    }
    json_decref(r);
    return entry;
}

/* ---- users --------------------------------------------------------------- */

bool krm_user_on_partition(kc_client *c, kc_user *u, const char *tag, int partition,
                           int parts)
{
    for (int i = 0; i < 10000; i++) {
        kc_user_init(u, tag);
        if (kc_partition_for(u->id, parts) == partition)
            return kc_user_register(c, u) && kc_user_login(c, u);
    }
    fprintf(stderr, "no id with tag %s hashes to partition %d of %d\n", tag, partition, parts);
    return false;
}

bool krm_register_many(kc_client *c, const kc_user *u, size_t n)
{
    char (*cids)[72] = calloc(n ? n : 1, sizeof(*cids));
    bool ok = cids != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *b = json_pack("{ss ss ss ss}", "userId", u[i].id, "userPw", u[i].pw, "email",
                              u[i].email, "userName", u[i].name);
        ok = kc_send_req(c, "user-add", u[i].id, NULL, NULL, b, cids[i]);
        json_decref(b);
        if (!ok)
            fprintf(stderr, "user-add of %s could not be sent\n", u[i].id);
    }
    for (size_t i = 0; ok && i < n; i++) {
        const kc_record *r = kc_wait_cid(c, "user-add", cids[i], 30000);
        ok = r != NULL && kc_check_ok(r->body, u[i].id);
        if (!ok)
            fprintf(stderr, "user-add of %s (%zu of %zu): %s\n", u[i].id, i + 1, n,
                    r ? kc_dumps(r->body) : "no answer in 30 s");
    }
    free(cids);
    return ok;
}

bool krm_follow_many(kc_client *c, const kc_user *u, const char *const *ids, size_t n)
{
    for (size_t at = 0; at < n; at += 100) {
        json_t *a = json_array();
        for (size_t i = at; i < n && i < at + 100; i++)
            json_array_append_new(a, json_string(ids[i]));
        json_t *r = kc_call(c, "user-add-friend", u->id, u->session,
                            json_pack("{ss so}", "userId", u->id, "friendId", a));
        bool ok = kc_check_ok(r, u->id);
        json_decref(r);
        if (!ok)
            return false;
    }
    return true;
}

bool krm_sorted_ids_are(const json_t *arr, const char *const *want, const char *what)
{
    if (!kc_check_id_set(arr, want, what))
        return false;
    for (size_t i = 1; i < json_array_size(arr); i++) {
        const char *a = json_string_value(json_array_get(arr, i - 1));
        const char *b = json_string_value(json_array_get(arr, i));
        if (strcmp(a, b) >= 0) {
            fprintf(stderr, "%s: not sorted: %s\n", what, kc_dumps(arr));
            return false;
        }
    }
    return true;
}
