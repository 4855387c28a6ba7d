/* The operations' test fixture (fixture.h): a backend without Kafka. Test
 * programs include this file (it is not a test program of its own). */
#include <ftw.h>
#include <sodium.h>
#include <unistd.h>

#include "fixture.h"
#include "kchat/error.h"

/* ---- setup and teardown ---- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void store_open(const char *dir, const char *name, kchat_store **out)
{
    kchat_store_opts o = {.map_size = (size_t)64 << 20, .no_sync = true};
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(kchat_store_open(path, &o, out), KCHAT_OK);
}

int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("KCHAT_TEST_TMP");
    kchat_backend *be;

    assert_non_null(f);
    assert_true(sodium_init() >= 0);
    snprintf(f->dir, sizeof(f->dir), "%s/kchat-ops.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));

    assert_int_equal(kchat_config_init(&f->cfg), KCHAT_OK);
    free(f->cfg.data_dir);
    assert_non_null(f->cfg.data_dir = strdup(f->dir));
    f->cfg.partitions = FX_PARTITIONS;
    f->cfg.workers = 1;
    f->cfg.pwhash_ops = crypto_pwhash_OPSLIMIT_MIN;   /* Argon2 at its cheapest */
    f->cfg.pwhash_mem = crypto_pwhash_MEMLIMIT_MIN;

    be = &f->be;
    be->cfg = &f->cfg;
    be->partitions = FX_PARTITIONS;
    be->n_workers = 1;
    be->workers = &f->w;
    be->events_fmt = KCHAT_FMT_JSON;
    assert_int_equal(crypto_pwhash_str(be->dummy_hash, "not a password", 14,
                                       (unsigned long long)f->cfg.pwhash_ops,
                                       (size_t)f->cfg.pwhash_mem), 0);
    assert_non_null(be->shards = calloc(FX_PARTITIONS, sizeof(*be->shards)));
    for (uint32_t p = 0; p < FX_PARTITIONS; p++) {
        char name[32];

        be->shards[p].id = p;
        assert_int_equal(pthread_mutex_init(&be->shards[p].lock, NULL), 0);
        snprintf(name, sizeof(name), "shard-%04u", p);
        store_open(f->dir, name, &be->shards[p].store);
    }
    store_open(f->dir, "directory", &be->directory);
    f->now_ms = kchat__now_ms();
    f->fmt = KCHAT_FMT_JSON;
    *state = f;
    return 0;
}

static void recs_clear(struct fx *f)
{
    for (size_t i = 0; i < f->n_recs; i++)
        kchat__out_rec_release(&f->recs[i]);
    f->n_recs = 0;
}

int fx_teardown(void **state)
{
    struct fx *f = *state;

    recs_clear(f);
    free(f->recs);
    for (size_t i = 0; i < f->n_held; i++)
        free(f->held[i].value);
    free(f->held);
    for (size_t i = 0; i < f->n_kept; i++)
        free(f->kept[i]);
    free(f->kept);
    for (size_t i = 0; i < f->w.n_out; i++)
        kchat__out_rec_release(&f->w.out[i]);
    free(f->w.out);
    kchat__acks_free(&f->w);   /* a command applied noted its source for an ack */
    for (uint32_t p = 0; p < FX_PARTITIONS; p++) {
        kchat_store_close(f->be.shards[p].store);
        pthread_mutex_destroy(&f->be.shards[p].lock);
        free(f->be.shards[p].cmds);
        free(f->be.shards[p].links);
        kchat__presence_release(&f->be.shards[p]);
    }
    free(f->be.shards);
    kchat_store_close(f->be.directory);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    kchat_config_release(&f->cfg);
    free(f);
    return 0;
}

/* ---- after a commit: what the producer's worker flush (src/actors/producer.c) does ---- */

/* Move the worker's records into f->recs; apply directory records and room
 * summaries to the replica; queue internal commands. */
static void take_out(struct fx *f)
{
    struct worker *w = &f->w;

    kchat__room_summaries_write_through(&f->be, w->out, w->n_out);
    for (size_t i = 0; i < w->n_out; i++) {
        struct out_rec *r = &w->out[i];

        if (!strcmp(r->topic, KCHAT_TOPIC_DIRECTORY)) {
            json_t *e = json_loadb(r->value, r->value_len, 0, NULL);
            assert_non_null(e);
            assert_int_equal(kchat__directory_apply(&f->be, e), KCHAT_OK);
            json_decref(e);
        }
        if (r->kind == OUT_COMMAND) {
            struct fx_cmd *c;

            assert_string_equal(r->topic, KCHAT_TOPIC_INTERNAL);
            assert_int_equal(r->partition, (int32_t)r->target);
            assert_int_not_equal(r->target, r->shard);
            if (f->n_held == f->cap_held) {
                f->cap_held = f->cap_held ? 2 * f->cap_held : 16;
                assert_non_null(f->held = realloc(f->held, f->cap_held * sizeof(*f->held)));
            }
            c = &f->held[f->n_held++];
            c->source = r->shard;
            c->target = r->target;
            c->cseq = r->cseq;
            assert_non_null(c->value = strndup(r->value, r->value_len));
        }
        if (f->n_recs == f->cap_recs) {
            f->cap_recs = f->cap_recs ? 2 * f->cap_recs : 64;
            assert_non_null(f->recs = realloc(f->recs, f->cap_recs * sizeof(*f->recs)));
        }
        f->recs[f->n_recs++] = *r;   /* ownership moves */
    }
    w->n_out = 0;
}

/* Run internal command @p j in the open transaction of @p c, as the
 * backend does once the command is known to be the next one of its stream;
 * @p userbuf holds the acting user. KCHAT_EDECODE for a command that does
 * not decode (the backend dead-letters it). */
static int command_dispatch(struct ctx *c, const json_t *j, char userbuf[66])
{
    if (!kchat__command_open(c, j, userbuf))
        return KCHAT_EDECODE;
    return kchat__command_dispatch(c, j);
}

/* Apply one internal command in its target shard (the fixture delivers
 * each once and in order, so its stream seq must be the next one). */
static void apply_command(struct fx *f, const struct fx_cmd *cmd)
{
    struct shard *sh = &f->be.shards[cmd->target];
    struct ctx c = {.be = &f->be, .w = &f->w, .sh = sh, .req = &f->w.req,
                    .now_ms = f->now_ms, .user_id = ""};
    uint64_t applied = 0;
    char userbuf[66];
    json_t *j;

    assert_int_equal(kchat_txn_begin(sh->store, true, &c.txn), KCHAT_OK);
    assert_int_equal(kchat_store_cmdseq_get(c.txn, KCHAT_CMDSEQ_APPLIED, cmd->source, &applied),
                     KCHAT_OK);
    if (cmd->cseq <= applied) {
        f->n_duplicates++;
        kchat_txn_abort(c.txn);
        return;
    }
    assert_int_equal(cmd->cseq, applied + 1);
    assert_non_null(j = json_loads(cmd->value, 0, NULL));
    assert_int_equal(command_dispatch(&c, j, userbuf), KCHAT_OK);
    json_decref(j);
    assert_int_equal(kchat_store_cmdseq_set(c.txn, KCHAT_CMDSEQ_APPLIED, cmd->source, cmd->cseq),
                     KCHAT_OK);
    assert_int_equal(kchat_txn_commit(c.txn), KCHAT_OK);
    take_out(f);
}

int fx_command(struct fx *f, uint32_t target, const char *json)
{
    struct shard *sh = &f->be.shards[target];
    struct ctx c = {.be = &f->be, .w = &f->w, .sh = sh, .req = &f->w.req,
                    .now_ms = f->now_ms, .user_id = ""};
    char userbuf[66];
    json_t *j;
    int rc;

    recs_clear(f);
    assert_non_null(j = json_loads(json, 0, NULL));
    assert_int_equal(kchat_txn_begin(sh->store, true, &c.txn), KCHAT_OK);
    rc = command_dispatch(&c, j, userbuf);
    json_decref(j);
    if (rc != KCHAT_OK) {
        kchat_txn_abort(c.txn);
        for (size_t i = 0; i < f->w.n_out; i++)
            kchat__out_rec_release(&f->w.out[i]);
        f->w.n_out = 0;
        return rc;
    }
    assert_int_equal(kchat_txn_commit(c.txn), KCHAT_OK);
    take_out(f);
    if (!f->hold_commands)
        fx_deliver(f);
    return KCHAT_OK;
}

void fx_presence(struct fx *f, uint32_t shard, const char *json)
{
    struct shard *sh = &f->be.shards[shard];
    struct ctx c = {.be = &f->be, .w = &f->w, .sh = sh, .req = &f->w.req,
                    .now_ms = f->now_ms, .user_id = ""};
    rd_kafka_message_t m = {.payload = (void *)json, .len = json ? strlen(json) : 0,
                            .partition = (int32_t)shard};

    recs_clear(f);
    assert_int_equal(kchat_txn_begin(sh->store, true, &c.txn), KCHAT_OK);
    if (json != NULL)
        assert_int_equal(kchat__presence_apply(&c, &m), KCHAT_OK);
    assert_int_equal(kchat__presence_sweep(&c), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(c.txn), KCHAT_OK);
    kchat__presence_committed(sh);
    take_out(f);
    if (!f->hold_commands)
        fx_deliver(f);
}

void fx_presence_sweep(struct fx *f, uint32_t shard)
{
    fx_presence(f, shard, NULL);
}

void fx_deliver(struct fx *f)
{
    while (f->n_held > 0) {
        struct fx_cmd cmd = f->held[0];

        memmove(f->held, f->held + 1, (f->n_held - 1) * sizeof(*f->held));
        f->n_held--;
        apply_command(f, &cmd);
        free(cmd.value);
    }
}

/* ---- requests: what apply_request() in src/actors/batch.c does ---- */

json_t *fx_answer(const struct fx *f, kchat_op op)
{
    const char *topic = kchat_op_response_topic(op);
    const struct out_rec *found = NULL;

    for (size_t i = 0; i < f->n_recs; i++) {
        const struct out_rec *r = &f->recs[i];
        size_t tl = strlen(r->topic);

        if (tl > 9 && !strcmp(r->topic + tl - 9, "-response")) {
            assert_string_equal(r->topic, topic);
            if (found != NULL)
                fail_msg("two answers to one %s", kchat_op_request_topic(op));
            found = r;
        }
    }
    return found ? fx_decode(found) : NULL;
}

json_t *fx_call_raw(struct fx *f, kchat_op op, const char *key, const char *session,
                    kchat_fmt fmt, const void *value, size_t len)
{
    uint32_t s = fx_shard_of(f, key);
    struct shard *sh = &f->be.shards[s];
    struct ctx c = {.be = &f->be, .w = &f->w, .sh = sh, .req = &f->w.req, .op = op,
                    .fmt = fmt, .now_ms = f->now_ms, .user_id = key};
    char errmsg[256] = "";
    kchat_wire_err werr;
    json_t *ans;
    int rc;

    recs_clear(f);
    assert_true(kchat_valid_id(key, strlen(key)));
    assert_in_range(op, 0, KCHAT_OP__COUNT - 1);
    if (f->cid != NULL) {
        assert_in_range(strlen(f->cid), 1, 64);
        memcpy(c.cid, f->cid, strlen(f->cid));
        c.cid_len = strlen(f->cid);
    }
    if (session != NULL) {
        c.session = session;
        c.session_len = strlen(session);
    }
    assert_int_equal(kchat_txn_begin(sh->store, true, &c.txn), KCHAT_OK);
    werr = kchat_request_parse(op, fmt, key, strlen(key), value ? value : "", len, c.req,
                               errmsg, sizeof(errmsg));
    if (werr != KCHAT_WIRE_OK) {
        rc = kchat__reply_err(&c, werr, "%s", errmsg[0] ? errmsg : "The request is invalid.");
    } else {
        c.user_id = c.req->user_id;
        rc = kchat__op_dispatch(&c);
    }
    if (rc != KCHAT_OK)
        kchat_txn_abort(c.txn);
    assert_int_equal(rc, KCHAT_OK);
    assert_int_equal(kchat_txn_commit(c.txn), KCHAT_OK);
    take_out(f);
    if (!f->hold_commands)
        fx_deliver(f);

    ans = fx_answer(f, op);
    if (ans == NULL) {
        assert_true(f->n_held > 0);   /* only a held command may keep it */
        return NULL;
    }
    for (size_t i = 0; i < f->n_recs; i++) {
        const struct out_rec *r = &f->recs[i];
        char *h;

        if (strcmp(r->topic, kchat_op_response_topic(op)) != 0)
            continue;
        assert_int_equal(r->kind, OUT_REPLY);
        assert_int_equal(r->partition, -1);
        assert_int_equal(r->key_len, strlen(key));
        assert_memory_equal(r->key, key, r->key_len);
        h = fx_header(r, KCHAT_HDR_CID);
        if (f->cid == NULL)
            assert_null(h);
        else
            assert_string_equal(h, f->cid);
        free(h);
        h = fx_header(r, KCHAT_HDR_CTYPE);
        assert_non_null(h);
        assert_string_equal(h, kchat_fmt_content_type(fmt));
        free(h);
    }
    return ans;
}

__attribute__((format(printf, 5, 0)))
static json_t *vcall(struct fx *f, kchat_op op, const char *key, const char *session,
                     const char *json_fmt, va_list ap)
{
    char *text = NULL;
    json_t *ans;

    assert_true(vasprintf(&text, json_fmt, ap) >= 0);
    if (f->fmt == KCHAT_FMT_MSGPACK) {
        json_error_t err;
        json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
        char *buf;
        size_t len;

        if (v == NULL)
            fail_msg("test body is not JSON (%s): %s", err.text, text);
        assert_int_equal(kchat_codec_encode(KCHAT_FMT_MSGPACK, v, &buf, &len), KCHAT_OK);
        json_decref(v);
        ans = fx_call_raw(f, op, key, session, KCHAT_FMT_MSGPACK, buf, len);
        free(buf);
    } else {
        ans = fx_call_raw(f, op, key, session, KCHAT_FMT_JSON, text, strlen(text));
    }
    free(text);
    return ans;
}

json_t *fx_call(struct fx *f, kchat_op op, const char *key, const char *session,
                const char *json_fmt, ...)
{
    va_list ap;
    json_t *ans;

    va_start(ap, json_fmt);
    ans = vcall(f, op, key, session, json_fmt, ap);
    va_end(ap);
    return ans;
}

static void check_common(const json_t *ans, const char *user, const char *code)
{
    assert_non_null(ans);
    if (strcmp(fx_str(ans, "errorCode"), code) != 0) {
        char *s = json_dumps(ans, JSON_SORT_KEYS);
        fail_msg("expected errorCode \"%s\", got %s", code, s);
    }
    assert_string_equal(fx_str(ans, "userId"), user);
    assert_true(json_is_boolean(json_object_get(ans, "isSuccess")));
    assert_int_equal(json_is_true(json_object_get(ans, "isSuccess")), code[0] == '\0');
    if (code[0] == '\0')
        assert_string_equal(fx_str(ans, "errorMessage"), "");
    else
        assert_true(strlen(fx_str(ans, "errorMessage")) > 0);
}

json_t *fx_ok(struct fx *f, kchat_op op, const char *key, const char *session,
              const char *json_fmt, ...)
{
    va_list ap;
    json_t *ans;

    va_start(ap, json_fmt);
    ans = vcall(f, op, key, session, json_fmt, ap);
    va_end(ap);
    check_common(ans, key, "");
    return ans;
}

json_t *fx_err(struct fx *f, const char *code, kchat_op op, const char *key,
               const char *session, const char *json_fmt, ...)
{
    char *before = fx_state(f), *after;
    va_list ap;
    json_t *ans;

    va_start(ap, json_fmt);
    ans = vcall(f, op, key, session, json_fmt, ap);
    va_end(ap);
    check_common(ans, key, code);
    after = fx_state(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    return ans;
}

/* ---- users, friends, rooms ---- */

uint32_t fx_shard_of(const struct fx *f, const char *id)
{
    return kchat__shard_of(&f->be, id);
}

void fx_id_on_shard(const struct fx *f, const char *prefix, uint32_t shard, char out[65])
{
    for (int i = 0; i < 100000; i++) {
        snprintf(out, 65, "%s%d", prefix, i);
        if (fx_shard_of(f, out) == shard)
            return;
    }
    fail_msg("no id %s... on shard %u", prefix, shard);
}

void fx_register(struct fx *f, const char *id)
{
    json_decref(fx_ok(f, KCHAT_OP_USER_ADD, id, NULL,
                      "{\"userId\":\"%s\",\"userPw\":\"" FX_PASSWORD "\","
                      "\"email\":\"%s@example.com\",\"userName\":\"Name %s\"}", id, id, id));
}

const char *fx_login(struct fx *f, const char *id)
{
    json_t *ans = fx_ok(f, KCHAT_OP_LOGIN, id, NULL,
                        "{\"userId\":\"%s\",\"userPw\":\"" FX_PASSWORD "\"}", id);
    char *s = fx_keep(f, strdup(fx_str(ans, "sessionId")));

    json_decref(ans);
    return s;
}

const char *fx_user(struct fx *f, const char *id)
{
    fx_register(f, id);
    return fx_login(f, id);
}

void fx_befriend(struct fx *f, const char *id, const char *session, const char *friends)
{
    json_decref(fx_ok(f, KCHAT_OP_ADD_FRIEND, id, session,
                      "{\"userId\":\"%s\",\"friendId\":%s}", id, friends));
}

void fx_room(struct fx *f, const char *id, const char *session, const char *friends,
             char room_id[65])
{
    json_t *ans = fx_ok(f, KCHAT_OP_ADD_ROOM, id, session,
                        "{\"userId\":\"%s\",\"friendId\":%s}", id, friends);

    snprintf(room_id, 65, "%s", fx_str(ans, "roomId"));
    json_decref(ans);
}

void fx_cast_make(struct fx *f, struct fx_cast *c, bool with_room)
{
    char friends[160];

    memset(c, 0, sizeof(*c));
    c->home = fx_shard_of(f, "alice");
    c->away = (c->home + 1) % FX_PARTITIONS;
    fx_id_on_shard(f, "bob", c->away, c->bob);
    fx_id_on_shard(f, "carol", c->home, c->carol);
    fx_id_on_shard(f, "dave", c->away, c->dave);
    fx_id_on_shard(f, "eve", c->home, c->eve);
    c->sa = fx_user(f, "alice");
    c->sb = fx_user(f, c->bob);
    c->sc = fx_user(f, c->carol);
    c->sd = fx_user(f, c->dave);
    c->se = fx_user(f, c->eve);
    snprintf(friends, sizeof(friends), "[\"%s\",\"%s\"]", c->bob, c->carol);
    fx_befriend(f, "alice", c->sa, friends);
    if (with_room) {
        fx_room(f, "alice", c->sa, friends, c->room);
        assert_int_equal(fx_shard_of(f, c->room), c->home);
    }
}

/* ---- records ---- */

size_t fx_count(const struct fx *f, const char *topic)
{
    size_t n = 0;

    for (size_t i = 0; i < f->n_recs; i++)
        n += topic == NULL || !strcmp(f->recs[i].topic, topic);
    return n;
}

char *fx_header(const struct out_rec *r, const char *name)
{
    for (size_t i = 0; i < r->n_hdr; i++)
        if (!strcmp(r->hdr[i].name, name))
            return strndup(r->hdr[i].value, r->hdr[i].len);
    return NULL;
}

json_t *fx_decode(const struct out_rec *r)
{
    char *ct = fx_header(r, KCHAT_HDR_CTYPE);
    kchat_fmt fmt = KCHAT_FMT_JSON;
    json_t *v = NULL;

    if (ct != NULL)
        assert_int_equal(kchat_fmt_from_content_type(ct, strlen(ct), &fmt), KCHAT_OK);
    free(ct);
    assert_int_equal(kchat_codec_decode(fmt, r->value, r->value_len, &v), KCHAT_OK);
    return v;
}

json_t *fx_records(const struct fx *f, const char *topic)
{
    json_t *a = json_array();

    for (size_t i = 0; i < f->n_recs; i++)
        if (!strcmp(f->recs[i].topic, topic))
            json_array_append_new(a, fx_decode(&f->recs[i]));
    return a;
}

json_t *fx_events(const struct fx *f, const char *user)
{
    json_t *a = json_array();

    for (size_t i = 0; i < f->n_recs; i++) {
        const struct out_rec *r = &f->recs[i];
        json_t *e;
        char *ct;

        if (strcmp(r->topic, KCHAT_TOPIC_EVENTS) != 0 || r->key_len != strlen(user) ||
            memcmp(r->key, user, r->key_len) != 0)
            continue;
        ct = fx_header(r, KCHAT_HDR_CTYPE);
        assert_non_null(ct);
        assert_string_equal(ct, kchat_fmt_content_type(f->be.events_fmt));
        free(ct);
        e = fx_decode(r);
        assert_string_equal(fx_str(e, "userId"), user);
        json_array_append_new(a, e);
    }
    return a;
}

/* ---- state ---- */

static int dump_one(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    FILE *out = arg;

    for (size_t i = 0; i < kl; i++)
        fprintf(out, "%02x", ((const unsigned char *)k)[i]);
    fputs(" = ", out);
    fwrite(v, 1, vl, out);
    fputc('\n', out);
    return 0;
}

static void dump_table(FILE *out, kchat_store *st, const char *name, kchat_table tb)
{
    kchat_txn *t;

    fprintf(out, "[%s %d]\n", name, (int)tb);
    assert_int_equal(kchat_txn_begin(st, false, &t), KCHAT_OK);
    assert_int_equal(kchat_txn_scan(t, tb, NULL, 0, false, dump_one, out), KCHAT_OK);
    kchat_txn_abort(t);
}

char *fx_state(struct fx *f)
{
    static const kchat_table tables[] = {KCHAT_TBL_USERS, KCHAT_TBL_SESSIONS, KCHAT_TBL_FRIENDS,
                                         KCHAT_TBL_MEMBERS, KCHAT_TBL_ROOMS, KCHAT_TBL_MESSAGES,
                                         KCHAT_TBL_IDEM, KCHAT_TBL_FOLLOWERS};
    char *buf = NULL, name[32];
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    assert_non_null(out);
    for (uint32_t p = 0; p < FX_PARTITIONS; p++) {
        snprintf(name, sizeof(name), "shard %u", p);
        for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
            dump_table(out, f->be.shards[p].store, name, tables[i]);
    }
    dump_table(out, f->be.directory, "directory", KCHAT_TBL_DIRECTORY);
    dump_table(out, f->be.directory, "directory", KCHAT_TBL_ROOMS);
    assert_int_equal(fclose(out), 0);
    return buf;
}

static int count_one(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    ++*(size_t *)arg;
    return 0;
}

size_t fx_rows(struct fx *f, kchat_table tb)
{
    size_t n = 0;

    for (uint32_t p = 0; p < FX_PARTITIONS; p++) {
        kchat_txn *t;

        assert_int_equal(kchat_txn_begin(f->be.shards[p].store, false, &t), KCHAT_OK);
        assert_int_equal(kchat_txn_scan(t, tb, NULL, 0, false, count_one, &n), KCHAT_OK);
        kchat_txn_abort(t);
    }
    return n;
}

json_t *fx_get(struct fx *f, uint32_t shard, kchat_table tb, const void *key, size_t kl)
{
    kchat_txn *t;
    json_t *v;

    assert_int_equal(kchat_txn_begin(f->be.shards[shard].store, false, &t), KCHAT_OK);
    v = kchat__get_json(t, tb, key, kl);
    kchat_txn_abort(t);
    return v;
}

/* ---- assertions ---- */

void fx_assert_json(const json_t *v, const char *expect_fmt, ...)
{
    char *text = NULL;
    json_error_t err;
    json_t *want;
    va_list ap;

    va_start(ap, expect_fmt);
    assert_true(vasprintf(&text, expect_fmt, ap) >= 0);
    va_end(ap);
    if ((want = json_loads(text, JSON_DECODE_ANY, &err)) == NULL)
        fail_msg("expected value is not JSON (%s): %s", err.text, text);
    if (!json_equal(v, want)) {
        char *got = json_dumps(v, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *exp = json_dumps(want, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        fail_msg("JSON differs\n  got:      %s\n  expected: %s", got, exp);
    }
    json_decref(want);
    free(text);
}

void fx_assert_time(const json_t *v, int64_t ms)
{
    char want[25];

    kchat_iso8601(ms, want);
    assert_true(json_is_string(v));
    assert_string_equal(json_string_value(v), want);
}

const char *fx_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    if (s == NULL)
        fail_msg("no string field %s", key);
    return s;
}

json_int_t fx_int(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    if (!json_is_integer(v))
        fail_msg("no integer field %s", key);
    return json_integer_value(v);
}

void *fx_keep(struct fx *f, void *p)
{
    assert_non_null(p);
    assert_non_null(f->kept = realloc(f->kept, (f->n_kept + 1) * sizeof(*f->kept)));
    f->kept[f->n_kept++] = p;
    return p;
}

char *fx_rep(struct fx *f, char ch, size_t n)
{
    char *s = fx_keep(f, malloc(n + 1));

    memset(s, ch, n);
    s[n] = '\0';
    return s;
}
