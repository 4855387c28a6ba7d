/* Presence (PROTOCOL.md §6): who is online, kept by each user's shard from
 * what gateways say on kchat-presence (include/kchat/presence.h), and the
 * `presence` events to the user's followers.
 *
 * In memory, per shard, on its worker: which gateway lists which of the
 * shard's users (the pair's last mention) and each gateway's last beat, by
 * the worker's wall clock (the transaction's now_ms: a clock stepped
 * forward can end pairs early, which the next beat mends within
 * KCHAT_PRESENCE_BEAT_MS). In the store, per user: `online` and `lastSeen` in the user
 * record, published with the profile to the directory (user-search-friend
 * reads them there). A user is online while some pair names them. The
 * stored flag is compared with the pairs on every change, so a batch
 * applied again after a failed commit makes the same decisions; a user
 * whose pairs went while no commit followed stays in `check` until one did.
 *
 * After an acquisition (or a start) the pairs are empty; the gateways' beats
 * fill them within KCHAT_PRESENCE_BEAT_MS. Once KCHAT_PRESENCE_DEAD_MS has
 * passed, every user stored online that no pair names is set offline: their
 * streams closed, or their gateway died, while the shard had no owner.
 *
 * Followers: user-add-friend records the follower in the followed user's
 * shard (table FOLLOWERS: userId -> sorted array of follower ids), locally
 * or by a `follow` command.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "ops.h"
#include "presence.h"
#include "replicas.h"
#include "kchat/error.h"
#include "kchat/kafka.h"
#include "kchat/presence.h"

#define SWEEP_EVERY_MS 1000      /* stale pairs and dead gateways looked for this often */
#define STALE_RECORD_MS 60000    /* an online or offline record older than this is ignored */

static bool gw_id_ok(const char *g)
{
    if (g == NULL || strlen(g) != KCHAT_PRESENCE_GW_LEN)
        return false;
    for (const char *p = g; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* The shard's presence state, fresh after an acquisition.
 * @locality worker that owns @p sh */
static struct presence *state_of(struct shard *sh, int64_t now_ms)
{
    struct presence *ps = &sh->presence;

    if (ps->pairs == NULL || ps->run_id != sh->run_id) {
        json_decref(ps->pairs);
        json_decref(ps->gws);
        json_decref(ps->check);
        ps->pairs = json_object();
        ps->gws = json_object();
        ps->check = json_object();
        ps->run_id = sh->run_id;
        ps->since_ms = now_ms;
        ps->grace_done = false;
        ps->last_sweep_ms = ps->since_ms;
    }
    return ps;
}

void kchat__presence_release(struct shard *sh)
{
    json_decref(sh->presence.pairs);
    json_decref(sh->presence.gws);
    json_decref(sh->presence.check);
    memset(&sh->presence, 0, sizeof(sh->presence));
}

static void pair_key(char *out, size_t size, const char *gw, const char *user)
{
    snprintf(out, size, "%s/%s", gw, user);
}

/* Whether some gateway lists @p user. */
static bool user_listed(const struct presence *ps, const char *user)
{
    const char *gw;
    json_t *v;
    char k[KCHAT_PRESENCE_GW_LEN + 1 + 65];

    json_object_foreach(ps->gws, gw, v) {
        pair_key(k, sizeof(k), gw, user);
        if (json_object_get(ps->pairs, k) != NULL)
            return true;
    }
    return false;
}

/* ---- followers ---- */

int kchat__follower_add(struct ctx *c, const char *user_id, const char *follower)
{
    json_t *list = kchat__get_json(c->txn, KCHAT_TBL_FOLLOWERS, user_id, strlen(user_id));
    size_t i, at;
    json_t *v;
    int rc;

    if (!json_is_array(list)) {
        json_decref(list);
        list = json_array();
    }
    at = json_array_size(list);
    json_array_foreach(list, i, v) {   /* sorted: insert in place */
        int cmp = strcmp(json_string_value(v), follower);
        if (cmp == 0) {
            json_decref(list);
            return KCHAT_OK;
        }
        if (cmp > 0) {
            at = i;
            break;
        }
    }
    json_array_insert_new(list, at, json_string(follower));
    rc = kchat__put_json(c->txn, KCHAT_TBL_FOLLOWERS, user_id, strlen(user_id), list);
    json_decref(list);
    return rc;
}

int kchat__cmd_follow(struct ctx *c, const json_t *cmd)
{
    const char *follower = json_string_value(json_object_get(cmd, "follower"));

    if (follower == NULL || !kchat_valid_id(follower, strlen(follower)))
        return KCHAT_EDECODE;
    return kchat__follower_add(c, c->user_id, follower);
}

/* Friends stored before followers were (a data directory of an older
 * kchat): each shard, once in its life (a mark in its meta, which its
 * changelog carries), tells every followed user's shard of its followers.
 * @locality worker that owns c->sh */
#define META_FOLLOWERS "followers_indexed"

static int friends_collect(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    json_t *pairs = arg, *list = json_loadb(v, vl, 0, NULL), *f;
    char user[65];
    size_t i;

    if (kl == 0 || kl >= sizeof(user) || !json_is_array(list)) {
        json_decref(list);
        return 0;
    }
    memcpy(user, k, kl);
    user[kl] = '\0';
    json_array_foreach(list, i, f)
        if (json_is_string(f))
            json_array_append_new(pairs, json_pack("[s, O]", user, f));
    json_decref(list);
    return 0;
}

KCHAT_MUST_CHECK
static int followers_upgrade(struct ctx *c)
{
    char buf[8];
    json_t *pairs, *p;
    size_t i;
    int rc = kchat_store_meta_get(c->txn, META_FOLLOWERS, buf, sizeof(buf));

    if (rc != KCHAT_ENOTFOUND)
        return rc;   /* done once (KCHAT_OK), or a store error */
    if ((pairs = json_array()) == NULL)
        return KCHAT_ENOMEM;
    rc = kchat_txn_scan(c->txn, KCHAT_TBL_FRIENDS, "", 0, false, friends_collect, pairs);
    if (rc >= 0)
        rc = KCHAT_OK;
    json_array_foreach(pairs, i, p) {
        if (rc != KCHAT_OK)
            break;
        rc = kchat__follow(c, json_string_value(json_array_get(p, 0)),
                           json_string_value(json_array_get(p, 1)));
    }
    if (rc == KCHAT_OK)
        rc = kchat_store_meta_set(c->txn, META_FOLLOWERS, "1");
    if (rc == KCHAT_OK && json_array_size(pairs) > 0)
        fprintf(stderr, "kchat: shard %u: %zu friendships of an older kchat sent to their "
                "followed users' shards\n", c->sh->id, json_array_size(pairs));
    json_decref(pairs);
    return rc;
}

int kchat__follow(struct ctx *c, const char *follower, const char *user_id)
{
    uint32_t target = kchat__shard_of(c->be, user_id);

    if (target == c->sh->id)
        return kchat__follower_add(c, user_id, follower);
    return kchat__command(c, target, user_id, json_pack("{s:s, s:s, s:s}", "op", "follow",
                                                        "userId", user_id,
                                                        "follower", follower));
}

/* ---- a user's stored presence ---- */

/* Set @p user_id's stored presence to @p online (going offline: lastSeen
 * @p at_ms), publish it and tell every follower; nothing when it already
 * is so, or the user is not registered.
 * @locality worker that owns c->sh (the user's shard) */
KCHAT_MUST_CHECK
static int user_set_online(struct ctx *c, const char *user_id, bool online, int64_t at_ms)
{
    json_t *user = kchat__user_get(c->txn, user_id), *followers, *f;
    char ts[25];
    size_t i;
    int rc;

    if (user == NULL)
        return KCHAT_OK;
    if (json_is_true(json_object_get(user, "online")) == online) {
        json_decref(user);
        return KCHAT_OK;
    }
    json_object_set_new(user, "online", json_boolean(online));
    if (!online) {
        kchat_iso8601(at_ms, ts);
        json_object_set_new(user, "lastSeen", json_string(ts));
    } else if (!json_is_string(json_object_get(user, "lastSeen"))) {
        json_object_set_new(user, "lastSeen", json_string(""));
    }
    json_object_set_new(user, "ver",
                        json_integer(json_integer_value(json_object_get(user, "ver")) + 1));
    rc = kchat__put_json(c->txn, KCHAT_TBL_USERS, user_id, strlen(user_id), user);
    if (rc == KCHAT_OK)
        rc = kchat__directory_publish(c, user);
    followers = kchat__get_json(c->txn, KCHAT_TBL_FOLLOWERS, user_id, strlen(user_id));
    json_array_foreach(followers, i, f) {
        if (rc != KCHAT_OK)
            break;
        rc = kchat__event(c, json_string_value(f),
                          json_pack("{s:s, s:s, s:b, s:O}", "type", "presence",
                                    "friendId", user_id, "online", online,
                                    "lastSeen", json_object_get(user, "lastSeen")));
    }
    json_decref(followers);
    json_decref(user);
    if (rc == KCHAT_OK)
        atomic_fetch_add(&c->be->stats.presence_changes, 1);
    return rc;
}

/* Bring @p user's stored presence in line with the pairs.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int user_settle(struct ctx *c, struct presence *ps, const char *user, int64_t at_ms)
{
    return user_set_online(c, user, user_listed(ps, user), at_ms);
}

/* ---- the records ---- */

/* Whether @p user belongs to this shard (a gateway names only those). */
static bool ours(const struct ctx *c, const char *user)
{
    return user != NULL && kchat_valid_id(user, strlen(user)) &&
           kchat__shard_of(c->be, user) == c->sh->id;
}

/* Drop every pair of gateway @p gw; the users it named go to `check`. */
static void gateway_drop(struct presence *ps, const char *gw)
{
    size_t gl = strlen(gw);
    const char *k;
    json_t *v;
    void *tmp;

    json_object_foreach_safe(ps->pairs, tmp, k, v)
        if (!strncmp(k, gw, gl) && k[gl] == '/') {
            json_object_set_new(ps->check, k + gl + 1, json_true());
            json_object_del(ps->pairs, k);
        }
    json_object_del(ps->gws, gw);
}

int kchat__presence_apply(struct ctx *c, const rd_kafka_message_t *m)
{
    struct presence *ps = state_of(c->sh, c->now_ms);
    json_t *rec = json_loadb(m->payload ? m->payload : "", m->len, 0, NULL);
    const char *kind = json_string_value(json_object_get(rec, "kind"));
    const char *gw = json_string_value(json_object_get(rec, "gateway"));
    const char *user = json_string_value(json_object_get(rec, "userId"));
    json_int_t at = json_integer_value(json_object_get(rec, "at"));
    int64_t now = c->now_ms;
    char k[KCHAT_PRESENCE_GW_LEN + 1 + 65];
    int rc = KCHAT_OK;

    if (kind == NULL || !gw_id_ok(gw)) {
        atomic_fetch_add(&c->be->stats.presence_refused, 1);
        json_decref(rec);
        return KCHAT_OK;
    }
    /* The gateway's clock says when a stream closed; never a future time. */
    if (at <= 0 || at > c->now_ms)
        at = c->now_ms;
    /* A user's record older than a minute says nothing the beats since have
     * not said better: a copy replayed onto the topic, or a backlog read
     * late. Beats name their gateway alive only as of their reading. */
    if ((!strcmp(kind, "online") || !strcmp(kind, "offline")) &&
        at < c->now_ms - STALE_RECORD_MS) {
        atomic_fetch_add(&c->be->stats.presence_stale, 1);
        json_decref(rec);
        return KCHAT_OK;
    }
    if (!strcmp(kind, "online") && ours(c, user)) {
        json_object_set_new(ps->gws, gw, json_integer(now));
        pair_key(k, sizeof(k), gw, user);
        json_object_set_new(ps->pairs, k, json_integer(now));
        rc = user_settle(c, ps, user, at);
    } else if (!strcmp(kind, "offline") && ours(c, user)) {
        pair_key(k, sizeof(k), gw, user);
        json_object_del(ps->pairs, k);
        rc = user_settle(c, ps, user, at);
    } else if (!strcmp(kind, "beat")) {
        json_t *users = json_object_get(rec, "users"), *u;
        size_t i;

        json_object_set_new(ps->gws, gw, json_integer(now));
        json_array_foreach(users, i, u) {
            const char *id = json_string_value(u);
            if (rc != KCHAT_OK)
                break;
            if (!ours(c, id))
                continue;
            pair_key(k, sizeof(k), gw, id);
            json_object_set_new(ps->pairs, k, json_integer(now));
            rc = user_settle(c, ps, id, at);
        }
    } else if (!strcmp(kind, "gone")) {
        gateway_drop(ps, gw);
        rc = kchat__presence_settle_checked(c, at);
    } else {
        atomic_fetch_add(&c->be->stats.presence_refused, 1);
    }
    json_decref(rec);
    return rc;
}

int kchat__presence_settle_checked(struct ctx *c, int64_t at_ms)
{
    struct presence *ps = state_of(c->sh, c->now_ms);
    const char *user;
    json_t *v;
    int rc = KCHAT_OK;

    json_object_foreach(ps->check, user, v) {
        if ((rc = user_settle(c, ps, user, at_ms)) != KCHAT_OK)
            break;
    }
    return rc;
}

void kchat__presence_committed(struct shard *sh)
{
    if (sh->presence.check != NULL)
        json_object_clear(sh->presence.check);
}

/* ---- the sweep: dead gateways, stale pairs, the grace after a start ---- */

bool kchat__presence_due(struct shard *sh)
{
    struct presence *ps = &sh->presence;
    int64_t now = kchat__now_ms();
    const char *k;
    json_t *v;

    if (ps->pairs == NULL || ps->run_id != sh->run_id || json_object_size(ps->check) > 0)
        return true;   /* start the clock of the grace; users to settle */
    if (!ps->grace_done)
        return now - ps->since_ms > KCHAT_PRESENCE_DEAD_MS;
    if (now - ps->last_due_ms < SWEEP_EVERY_MS)
        return false;
    ps->last_due_ms = now;
    json_object_foreach(ps->gws, k, v)
        if (now - json_integer_value(v) > KCHAT_PRESENCE_DEAD_MS)
            return true;
    json_object_foreach(ps->pairs, k, v)
        if (now - json_integer_value(v) > KCHAT_PRESENCE_STALE_MS)
            return true;
    return false;
}

/* A user stored online whom no gateway lists, after the grace. */
static int grace_one(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    struct presence *ps = arg;
    json_t *user = json_loadb(v, vl, 0, NULL);
    char id[65];

    if (user != NULL && json_is_true(json_object_get(user, "online")) && kl < sizeof(id)) {
        memcpy(id, k, kl);
        id[kl] = '\0';
        if (!user_listed(ps, id))
            json_object_set_new(ps->check, id, json_true());
    }
    json_decref(user);
    return 0;
}

int kchat__presence_sweep(struct ctx *c)
{
    struct presence *ps = state_of(c->sh, c->now_ms);
    int64_t now = c->now_ms;
    const char *k;
    json_t *v;
    void *tmp;
    int rc;

    /* what is sent here answers no request */
    c->cid_len = 0;
    c->sealed = false;
    if ((rc = followers_upgrade(c)) != KCHAT_OK)   /* a meta read, once done */
        return rc;

    if (now - ps->last_sweep_ms < SWEEP_EVERY_MS)
        return json_object_size(ps->check) ? kchat__presence_settle_checked(c, c->now_ms)
                                           : KCHAT_OK;
    ps->last_sweep_ms = now;
    json_object_foreach_safe(ps->gws, tmp, k, v)
        if (now - json_integer_value(v) > KCHAT_PRESENCE_DEAD_MS) {
            fprintf(stderr, "kchat: shard %u: gateway %s sent no beat for %d s: its users "
                    "are offline\n", c->sh->id, k, KCHAT_PRESENCE_DEAD_MS / 1000);
            gateway_drop(ps, k);
        }
    json_object_foreach_safe(ps->pairs, tmp, k, v)
        if (now - json_integer_value(v) > KCHAT_PRESENCE_STALE_MS) {
            json_object_set_new(ps->check, strchr(k, '/') + 1, json_true());
            json_object_del(ps->pairs, k);
        }
    if (!ps->grace_done && now - ps->since_ms > KCHAT_PRESENCE_DEAD_MS) {
        rc = kchat_txn_scan(c->txn, KCHAT_TBL_USERS, "", 0, false, grace_one, ps);
        if (rc < 0)
            return rc;
        ps->grace_done = true;
    }
    return kchat__presence_settle_checked(c, c->now_ms);
}
