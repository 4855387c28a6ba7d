/* Users: register, login, logout, status; and the session check every other
 * operation starts with. A user and its sessions live in the user's shard. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "ops.h"
#include "logins.h"
#include "replicas.h"
#include "kchat/error.h"

#define SESSION_BYTES 16             /* 128 random bits, sent as 32 hex digits */
#define SESSION_REFRESH_MS 60000     /* last-use stamp is rewritten at most this often */

json_t *kchat__user_get(kchat_txn *t, const char *user_id)
{
    return kchat__get_json(t, KCHAT_TBL_USERS, user_id, strlen(user_id));
}

json_t *kchat__user_public(const json_t *s)
{
    return json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O}",
                     "userId", json_object_get(s, "userId"),
                     "email", json_object_get(s, "email"),
                     "userName", json_object_get(s, "userName"),
                     "userStatus", json_object_get(s, "userStatus"),
                     "joinDate", json_object_get(s, "joinDate"),
                     "loginDate", json_object_get(s, "loginDate"),
                     "logoutDate", json_object_get(s, "logoutDate"));
}

/* @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int user_put(struct ctx *c, const json_t *user)
{
    const char *id = json_string_value(json_object_get(user, "userId"));
    return kchat__put_json(c->txn, KCHAT_TBL_USERS, id, strlen(id), user);
}

static json_t *now_string(struct ctx *c)
{
    char ts[25];
    kchat_iso8601(c->now_ms, ts);
    return json_string(ts);
}

void kchat__session_key(const char *sid, size_t len, char out[KCHAT__SESSION_KEY_LEN + 1])
{
    unsigned char h[32];

    crypto_generichash(h, sizeof(h), (const unsigned char *)sid, len, NULL, 0);
    out[0] = 'h';
    sodium_bin2hex(out + 1, KCHAT__SESSION_KEY_LEN, h, sizeof(h));
}

struct rekey_list {
    struct rekey_key {
        char k[128];
        size_t len;
    } *keys;
    size_t n, cap;
};

/* Collect the keys that are not hashes (an older kchat's session ids).
 * @locality the thread running the scan */
static int rekey_collect(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    struct rekey_list *l = arg;

    (void)v;
    (void)vl;
    if ((kl == KCHAT__SESSION_KEY_LEN && ((const char *)k)[0] == 'h') || kl > 128)
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct rekey_key *nk = realloc(l->keys, cap * sizeof(*nk));
        if (nk == NULL)
            return KCHAT_ENOMEM;
        l->keys = nk;
        l->cap = cap;
    }
    memcpy(l->keys[l->n].k, k, kl);
    l->keys[l->n++].len = kl;
    return 0;
}

int kchat__sessions_rekey(struct shard *sh, size_t *moved)
{
    struct rekey_list l = {0};
    kchat_txn *t;
    int rc;

    *moved = 0;
    if ((rc = kchat_txn_begin(sh->store, true, &t)) != KCHAT_OK)
        return rc;
    rc = kchat_txn_scan(t, KCHAT_TBL_SESSIONS, NULL, 0, false, rekey_collect, &l);
    for (size_t i = 0; rc == KCHAT_OK && i < l.n; i++) {
        const struct rekey_key *old = &l.keys[i];
        char key[KCHAT__SESSION_KEY_LEN + 1];
        json_t *s = kchat__get_json(t, KCHAT_TBL_SESSIONS, old->k, old->len);

        kchat__session_key(old->k, old->len, key);
        if (s != NULL)   /* a damaged record is dropped: it was no valid session */
            rc = kchat__put_json(t, KCHAT_TBL_SESSIONS, key, strlen(key), s);
        json_decref(s);
        if (rc == KCHAT_OK)
            rc = kchat_txn_del(t, KCHAT_TBL_SESSIONS, old->k, old->len);
    }
    free(l.keys);
    if (rc != KCHAT_OK || l.n == 0) {
        kchat_txn_abort(t);
        return rc;
    }
    if ((rc = kchat_txn_commit(t)) == KCHAT_OK)
        *moved = l.n;
    return rc;
}

bool kchat__session_ok(struct ctx *c, int *rc)
{
    const kchat_config *cfg = c->be->cfg;
    char key[KCHAT__SESSION_KEY_LEN + 1];
    json_t *s = NULL;
    const char *owner;
    json_int_t last;

    *rc = KCHAT_OK;
    if (!cfg->session_check)
        return true;
    if (c->session == NULL || c->session_len == 0 || c->session_len > 128)
        goto err_unauthenticated;
    kchat__session_key(c->session, c->session_len, key);
    s = kchat__get_json(c->txn, KCHAT_TBL_SESSIONS, key, strlen(key));
    if (s == NULL)
        goto err_unauthenticated;
    owner = json_string_value(json_object_get(s, "u"));
    last = json_integer_value(json_object_get(s, "t"));
    if (owner == NULL || strcmp(owner, c->user_id) != 0)
        goto err_unauthenticated;
    if (c->now_ms - last > (json_int_t)cfg->session_idle * 1000)
        goto err_unauthenticated;
    if (c->now_ms - last > SESSION_REFRESH_MS) {
        json_object_set_new(s, "t", json_integer(c->now_ms));
        *rc = kchat__put_json(c->txn, KCHAT_TBL_SESSIONS, key, strlen(key), s);
    }
    json_decref(s);
    return *rc == KCHAT_OK;

err_unauthenticated:
    json_decref(s);
    *rc = kchat__reply_err(c, KCHAT_WIRE_UNAUTHENTICATED,
                           "A valid session of user %s is required; log in first.", c->user_id);
    return false;
}

int kchat__op_user_add(struct ctx *c)
{
    const kchat_request *r = c->req;
    char hash[crypto_pwhash_STRBYTES];
    json_t *user, *body;
    int rc;

    if ((user = kchat__user_get(c->txn, r->user_id)) != NULL) {
        json_decref(user);
        return kchat__reply_err(c, KCHAT_WIRE_ALREADY_EXISTS,
                                "The user id %s is already taken.", r->user_id);
    }
    if (crypto_pwhash_str(hash, r->user_pw, strlen(r->user_pw),
                          (unsigned long long)c->be->cfg->pwhash_ops,
                          (size_t)c->be->cfg->pwhash_mem) != 0)
        return kchat__reply_err(c, KCHAT_WIRE_INTERNAL, "The password could not be hashed.");
    user = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:i}",
                     "userId", r->user_id, "email", r->email, "userName", r->user_name,
                     "userStatus", "", "joinDate", now_string(c), "loginDate", "",
                     "logoutDate", "", "pw", hash, "ver", 1);
    sodium_memzero(hash, sizeof(hash));
    if (user == NULL)
        return KCHAT_ENOMEM;
    if ((rc = user_put(c, user)) == KCHAT_OK &&
        (rc = kchat__directory_publish(c, user)) == KCHAT_OK) {
        body = json_pack("{s:o}", "user", kchat__user_public(user));
        rc = body ? kchat__reply_ok(c, body) : KCHAT_ENOMEM;
    }
    json_decref(user);
    return rc;
}

/* A failed login: counted against @p budget, then BAD_CREDENTIALS.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int login_failed(struct ctx *c, const char *budget)
{
    kchat__throttle_fail(&c->sh->throttle, c->be->cfg, budget, kchat__throttle_now_ms());
    atomic_fetch_add(&c->be->stats.login_failures, 1);
    return kchat__reply_err(c, KCHAT_WIRE_BAD_CREDENTIALS, "Unknown user or wrong password.");
}

int kchat__op_login(struct ctx *c)
{
    const kchat_request *r = c->req;
    unsigned char raw[SESSION_BYTES];
    char sid[2 * SESSION_BYTES + 1], key[KCHAT__SESSION_KEY_LEN + 1];
    char budget[KCHAT__BUDGET_LEN];
    json_t *user, *sess, *body;
    const char *hash;
    int64_t wait_ms;
    int rc;

    /* The budget: the (id, device) pair's for a device that logged in
     * before, else the id's shared one. A locked budget is refused before
     * anything is hashed: guessing costs the attacker a round trip and the
     * server no Argon2 run. */
    user = kchat__user_get(c->txn, r->user_id);
    kchat__login_budget(c, user, budget);
    wait_ms = kchat__throttle_locked(&c->sh->throttle, budget, kchat__throttle_now_ms());
    if (wait_ms > 0) {
        json_decref(user);
        atomic_fetch_add(&c->be->stats.logins_throttled, 1);
        return kchat__reply_err_with(c, KCHAT_WIRE_BAD_CREDENTIALS,
                                     json_pack("{s:I}", "retryAfterMs", (json_int_t)wait_ms),
                                     "Too many failed login attempts for %s; try again in "
                                     "%lld s.", r->user_id, (long long)(wait_ms + 999) / 1000);
    }
    hash = user ? json_string_value(json_object_get(user, "pw")) : NULL;
    if (hash == NULL) {
        /* Same work as a real check, so timing does not reveal who exists. */
        int same_work = crypto_pwhash_str_verify(c->be->dummy_hash, r->user_pw,
                                                 strlen(r->user_pw));
        (void)same_work;
        json_decref(user);
        return login_failed(c, budget);
    }
    if (crypto_pwhash_str_verify(hash, r->user_pw, strlen(r->user_pw)) != 0) {
        json_decref(user);
        return login_failed(c, budget);
    }
    kchat__throttle_reset(&c->sh->throttle, budget);
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(sid, sizeof(sid), raw, sizeof(raw));
    kchat__session_key(sid, strlen(sid), key);
    sess = json_pack("{s:s, s:I}", "u", r->user_id, "t", (json_int_t)c->now_ms);
    json_object_set_new(user, "loginDate", now_string(c));
    rc = sess == NULL ? KCHAT_ENOMEM : kchat__device_remember(c, user);
    if (rc == KCHAT_OK &&
        (rc = kchat__put_json(c->txn, KCHAT_TBL_SESSIONS, key, strlen(key), sess)) == KCHAT_OK &&
        (rc = user_put(c, user)) == KCHAT_OK) {
        body = json_pack("{s:o, s:s}", "user", kchat__user_public(user), "sessionId", sid);
        rc = body ? kchat__reply_ok(c, body) : KCHAT_ENOMEM;
    }
    json_decref(sess);
    json_decref(user);
    return rc;
}

/* The acting user's record once the session holds; NULL after answering.
 * @locality worker that owns c->sh */
static json_t *user_for_session(struct ctx *c, int *rc)
{
    json_t *user;

    if (!kchat__session_ok(c, rc))
        return NULL;
    if ((user = kchat__user_get(c->txn, c->user_id)) == NULL)
        *rc = kchat__reply_err(c, KCHAT_WIRE_USER_NOT_FOUND, "No user %s.", c->user_id);
    return user;
}

int kchat__op_logout(struct ctx *c)
{
    json_t *user;
    int rc;

    if ((user = user_for_session(c, &rc)) == NULL)
        return rc;
    json_object_set_new(user, "logoutDate", now_string(c));
    rc = user_put(c, user);
    json_decref(user);
    if (rc == KCHAT_OK && c->session_len && c->session_len <= 128) {
        char key[KCHAT__SESSION_KEY_LEN + 1];

        kchat__session_key(c->session, c->session_len, key);
        rc = kchat_txn_del(c->txn, KCHAT_TBL_SESSIONS, key, strlen(key));
        if (rc == KCHAT_ENOTFOUND)   /* session check off and no session given */
            rc = KCHAT_OK;
    }
    return rc == KCHAT_OK ? kchat__reply_ok(c, NULL) : rc;
}

int kchat__op_status(struct ctx *c)
{
    json_t *user;
    int rc;

    if ((user = user_for_session(c, &rc)) == NULL)
        return rc;
    json_object_set_new(user, "userStatus", json_string(c->req->user_status));
    json_object_set_new(user, "ver",
                        json_integer(json_integer_value(json_object_get(user, "ver")) + 1));
    if ((rc = user_put(c, user)) == KCHAT_OK && (rc = kchat__directory_publish(c, user)) == KCHAT_OK)
        rc = kchat__reply_ok(c, json_pack("{s:s}", "userStatus", c->req->user_status));
    json_decref(user);
    return rc;
}
