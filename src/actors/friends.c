/* Friends: a directed, sorted list per user, kept in the user's shard, and
 * the reverse, who follows a user, in that user's shard (presence.c).
 * Existence of the other users is checked against the directory replica,
 * and so are a friend's presence fields. */
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "ops.h"
#include "presence.h"
#include "replicas.h"
#include "kchat/error.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The stored friend list of @p user_id (a new array, empty when none). */
static json_t *friends_get(kchat_txn *t, const char *user_id)
{
    json_t *v = kchat__get_json(t, KCHAT_TBL_FRIENDS, user_id, strlen(user_id));
    if (v != NULL && json_is_array(v))
        return v;
    json_decref(v);
    return json_array();
}

bool kchat__friend_ids_ok(struct ctx *c, const char *what, int *rc)
{
    const kchat_request *r = c->req;

    *rc = KCHAT_OK;
    for (size_t i = 0; i < r->n_friends; i++)
        if (!strcmp(r->friend_ids[i], r->user_id)) {
            *rc = kchat__reply_err(c, KCHAT_WIRE_BAD_REQUEST,
                                   "friendId must not contain your own userId.");
            return false;
        }
    for (size_t i = 0; i < r->n_friends; i++) {
        json_t *d = kchat__directory_get(c->be, r->friend_ids[i]);
        if (d == NULL) {
            *rc = kchat__reply_err(c, KCHAT_WIRE_USER_NOT_FOUND, "No user %s; no %s.",
                                   r->friend_ids[i], what);
            return false;
        }
        json_decref(d);
    }
    return true;
}

bool kchat__is_friend(kchat_txn *t, const char *user_id, const char *friend_id)
{
    json_t *list = friends_get(t, user_id), *v;
    size_t i;
    bool found = false;

    json_array_foreach(list, i, v)
        if (!strcmp(json_string_value(v), friend_id)) {
            found = true;
            break;
        }
    json_decref(list);
    return found;
}

int kchat__op_add_friend(struct ctx *c)
{
    const kchat_request *r = c->req;
    json_t *list, *v, *added;
    const char **ids;
    size_t n, i;
    int rc;

    if (!kchat__session_ok(c, &rc) || !kchat__friend_ids_ok(c, "friend was added", &rc))
        return rc;
    list = friends_get(c->txn, r->user_id);
    for (i = 0; i < r->n_friends; i++) {
        size_t j;
        bool have = false;
        json_array_foreach(list, j, v)
            if (!strcmp(json_string_value(v), r->friend_ids[i])) {
                have = true;
                break;
            }
        if (!have) {
            json_array_append_new(list, json_string(r->friend_ids[i]));
            /* the friend's shard learns who follows them (presence.c) */
            if ((rc = kchat__follow(c, r->user_id, r->friend_ids[i])) != KCHAT_OK) {
                json_decref(list);
                return rc;
            }
        }
    }
    /* keep the stored list sorted, so search answers need no sort */
    n = json_array_size(list);
    ids = malloc((n ? n : 1) * sizeof(*ids));
    if (ids == NULL) {
        json_decref(list);
        return KCHAT_ENOMEM;
    }
    json_array_foreach(list, i, v)
        ids[i] = json_string_value(v);
    qsort(ids, n, sizeof(*ids), cmp_str);
    {
        json_t *sorted = json_array();
        for (i = 0; i < n; i++)
            json_array_append_new(sorted, json_string(ids[i]));
        free(ids);
        json_decref(list);
        list = sorted;
    }
    rc = kchat__put_json(c->txn, KCHAT_TBL_FRIENDS, r->user_id, strlen(r->user_id), list);
    json_decref(list);
    if (rc != KCHAT_OK)
        return rc;
    added = json_array();
    for (i = 0; i < r->n_friends; i++)
        json_array_append_new(added, json_string(r->friend_ids[i]));
    return kchat__reply_ok(c, json_pack("{s:o}", "friendId", added));
}

int kchat__op_search_friend(struct ctx *c)
{
    json_t *list, *out, *v;
    size_t i;
    int rc;

    if (!kchat__session_ok(c, &rc))
        return rc;
    list = friends_get(c->txn, c->user_id);
    out = json_array();
    json_array_foreach(list, i, v) {
        const char *id = json_string_value(v);
        json_t *d = kchat__directory_get(c->be, id);
        json_t *seen = json_object_get(d, "lastSeen");

        json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:b, s:s}", "userId", id,
            "userName", d ? json_string_value(json_object_get(d, "userName")) : "",
            "userStatus", d ? json_string_value(json_object_get(d, "userStatus")) : "",
            "online", json_is_true(json_object_get(d, "online")),
            "lastSeen", json_is_string(seen) ? json_string_value(seen) : ""));
        json_decref(d);
    }
    json_decref(list);
    return kchat__reply_ok(c, json_pack("{s:o}", "friend", out));
}
