/*
 * Regression 0001 (fixed by 4ecf639): a user's state lives in the shard
 * that murmur2 of the record key picks, but kchat applied a request in
 * whatever partition it was produced to. A record placed by another
 * partitioner (librdkafka's default consistent_random, a client's own
 * choice) read and wrote a shard that does not own its user: a user could
 * be registered a second time there, and a real user's session was unknown
 * there. Such a record is now answered BAD_REQUEST naming the partitioner,
 * and changes nothing.
 *
 * The test produces a registration to the partition after the one murmur2
 * gives its key: BAD_REQUEST mentioning murmur2; then the same registration
 * through the murmur2 partitioner succeeds (nothing was created before), and
 * a second one is ALREADY_EXISTS.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"

#define PARTITIONS 4

static kc_proc *g_srv;
static kc_client *g_c;

static int teardown(void **state)
{
    (void)state;
    kc_release(&g_c, &g_srv);
    return 0;
}

/* A user-add of @p u produced to @p partition: the decoded answer. */
static json_t *register_in(const kc_user *u, int32_t partition)
{
    char cid[72];
    json_t *body = json_pack("{ss ss ss ss}", "userId", u->id, "userPw", u->pw, "email",
                             u->email, "userName", u->name);
    char *text = json_dumps(body, JSON_COMPACT);
    const kc_record *r;

    snprintf(cid, sizeof(cid), "wrong-part-%d-%lld", (int)getpid(), (long long)kc_wall_ms());
    const kc_header h[] = {
        { KC_HDR_CID, cid, strlen(cid) },
        { KC_HDR_CTYPE, KC_CT_JSON, strlen(KC_CT_JSON) },
    };
    assert_true(kc_send_raw(g_c, "user-add-request", partition, u->id, strlen(u->id), text,
                            strlen(text), h, 2));
    free(text);
    json_decref(body);
    r = kc_wait_cid(g_c, "user-add", cid, KC_CALL_TIMEOUT_MS);
    if (r == NULL)
        fail_msg("no answer to a registration produced to partition %d", (int)partition);
    return json_incref(r->body);
}

static void test_record_in_wrong_partition(void **state)
{
    char *data = kc_tmppath("wrong-part-data");
    kc_user u;
    int32_t right, wrong;
    json_t *r;
    const char *msg;

    (void)state;
    kc_rm_rf(data);
    g_srv = kc_serve_start("wrong-part", data, NULL, PARTITIONS, NULL);
    assert_non_null(g_srv);
    g_c = kc_client_new(kc_proc_bootstrap(g_srv), KC_FROM_END);
    assert_non_null(g_c);

    kc_user_init(&u, "wpart");
    right = kc_partition_for(u.id, PARTITIONS);
    wrong = (right + 1) % PARTITIONS;
    r = register_in(&u, wrong);
    msg = kc_str(r, "errorMessage");
    if (!kc_check_err(r, u.id, "BAD_REQUEST") || msg == NULL || strstr(msg, "murmur2") == NULL)
        fail_msg("a registration in partition %d (murmur2: %d) was answered %s", (int)wrong,
                 (int)right, kc_dumps(r));
    json_decref(r);

    /* nothing was created by it: the right shard registers the user once */
    assert_true(kc_user_register(g_c, &u));
    KC_EXPECT_ERR(kc_call(g_c, "user-add", u.id, NULL,
                          json_pack("{ss ss ss ss}", "userId", u.id, "userPw", u.pw, "email",
                                    u.email, "userName", u.name)),
                  u.id, "ALREADY_EXISTS");
    kc_client_free(g_c);   /* its brokers die with this embedded server */
    g_c = NULL;
    assert_true(kc_proc_stop_clean(g_srv, 20));
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_record_in_wrong_partition, teardown),
    };
    return cmocka_run_group_tests_name("0001 record in the wrong partition", tests, NULL, NULL);
}
