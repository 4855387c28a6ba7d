/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 *
 * Two deployments on one cluster stay apart (`--deployment NAME`,
 * include/kchat/deployment.h, docs/operations.md). On an in-process mock
 * cluster (both deployments' topics made by the test: the mock cluster
 * creates none on request), or the real Kafka of `make check-kafka`, two `kchat
 * serve` with the changelog on, each of its own deployment (names unique to
 * the run, so that nothing left on a shared cluster by another program can
 * be read), each with its own data directory:
 *
 * test_same_ids_apart: the same user id registers in both (a shared data set
 *    or directory would answer ALREADY_EXISTS); each password logs in only
 *    where it was set; a session of one is UNAUTHENTICATED in the other; a
 *    friend request in one for a user who exists only in the other is
 *    USER_NOT_FOUND; a room and its messages in one are not in the other.
 *    Each deployment's topics are its own (`NAME.login-request`,
 *    `NAME.kchat-changelog`, ...), created with the partition count asked
 *    for, and each answer is on its own deployment's response topic only.
 * test_bad_name_refused: `--deployment` with a dot, or longer than 40
 *    characters, exits 2 with a message naming the rule.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sys/wait.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "support/kassert.h"
#include "support/kclient.h"
#include "support/mockfault.h"

#define PARTITIONS 4   /* the suite's Kafka broker is started with 4 */

static kc_proc *g_srv[2];
static kc_client *g_client[2];
static char g_name[2][41];
static rd_kafka_t *g_host;              /* without real Kafka: the mock cluster's */
static rd_kafka_mock_cluster_t *g_mock;
static char g_brokers[512];

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        kc_client_free(g_client[i]);
        g_client[i] = NULL;
        if (g_srv[i] != NULL)
            kc_proc_stop_clean(g_srv[i], 30);
        kc_proc_free(g_srv[i]);
        g_srv[i] = NULL;
    }
    kc_mock_cluster_free(g_mock, g_host);
    g_mock = NULL;
    g_host = NULL;
    return 0;
}

/* On the mock cluster, every topic of deployment @p name: the request and
 * response topics of PROTOCOL.md and kchat's own, prefixed `name.`. */
static void topics_create(const char *name)
{
    static const char *const own[] = {"chat-events", "kchat-dlq", "kchat-internal",
                                      "kchat-directory", "kchat-changelog", "kchat-rooms",
                                      "kchat-presence"};
    char topic[128];

    for (int i = 0; i < KC_OP_COUNT + KC_OP_V11_COUNT; i++)   /* operations 1-13 */
        for (int resp = 0; resp < 2; resp++) {
            snprintf(topic, sizeof(topic), "%s.%s-%s", name,
                     i < KC_OP_COUNT ? kc_ops[i] : kc_ops_v11[i - KC_OP_COUNT],
                     resp ? "response" : "request");
            assert_int_equal(rd_kafka_mock_topic_create(g_mock, topic, PARTITIONS, 3), 0);
        }
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        snprintf(topic, sizeof(topic), "%s.%s", name, own[i]);
        assert_int_equal(rd_kafka_mock_topic_create(g_mock, topic, PARTITIONS, 3), 0);
    }
    snprintf(topic, sizeof(topic), "%s.kchat-meta", name);   /* one partition */
    assert_int_equal(rd_kafka_mock_topic_create(g_mock, topic, 1, 3), 0);
}

/* Deployments "blue-<run>" and "green-<run>" on the suite's broker, each
 * with a serve process and a client. */
static void deployments_up(void)
{
    static const char *const colour[2] = {"blue", "green"};
    char run[65];
    const char *brokers;

    kc_uid(run, sizeof(run), "d");
    for (int i = 0; i < 2; i++) {
        snprintf(g_name[i], sizeof(g_name[i]), "%s-%.24s", colour[i], run);
        for (char *p = g_name[i]; *p; p++)   /* uids may hold other characters */
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
                *p = '_';
    }
    if (kc_test_brokers() != NULL) {   /* real Kafka: serve creates the topics */
        snprintf(g_brokers, sizeof(g_brokers), "%s", kc_test_brokers());
    } else {
        /* librdkafka's mock cluster creates no topic on request: make both
         * deployments' here (what `kchat broker` does for the default one) */
        g_mock = kc_mock_cluster_new(3, 3, &g_host);
        snprintf(g_brokers, sizeof(g_brokers), "%s", rd_kafka_mock_cluster_bootstraps(g_mock));
        for (int d = 0; d < 2; d++)
            topics_create(g_name[d]);
    }
    brokers = g_brokers;
    for (int i = 0; i < 2; i++) {
        char *data, name[32];
        const char *extra[] = {"--deployment", g_name[i], NULL};

        snprintf(name, sizeof(name), "%s-serve", colour[i]);
        data = kc_tmppath(name);
        g_srv[i] = kc_serve_start(name, data, brokers, PARTITIONS, extra);
        assert_non_null(g_srv[i]);
        free(data);
        g_client[i] = kc_client_new_in(brokers, KC_FROM_END, g_name[i]);
        assert_non_null(g_client[i]);
    }
}

/* The answer's errorCode of @p op sent by @p u with @p session to deployment @p d. */
static char *call_code(int d, const char *op, const kc_user *u, const char *session,
                       json_t *body)
{
    json_t *r = kc_call(g_client[d], op, u->id, session, body);
    char *code;

    assert_non_null(r);
    code = strdup(json_is_true(json_object_get(r, "isSuccess")) ? "" :
                  kc_str(r, "errorCode") ? kc_str(r, "errorCode") : "?");
    json_decref(r);
    return code;
}

static void test_same_ids_apart(void **state)
{
    kc_user a, b, only_blue;
    char *code, room[65], topic[128];
    json_t *hist;

    (void)state;
    deployments_up();
    /* each deployment's topics, with the partitions asked for */
    for (int i = 0; i < 2; i++) {
        snprintf(topic, sizeof(topic), "%s.login-request", g_name[i]);
        assert_int_equal(kc_topic_partitions(g_client[i], topic), PARTITIONS);
        snprintf(topic, sizeof(topic), "%s.kchat-changelog", g_name[i]);
        assert_int_equal(kc_topic_partitions(g_client[i], topic), PARTITIONS);
    }

    /* one id, registered in both with different passwords */
    kc_user_init(&a, "same");
    b = a;
    kc_new_password(b.pw, sizeof(b.pw));
    assert_true(kc_user_register(g_client[0], &a));
    assert_true(kc_user_register(g_client[1], &b));   /* not ALREADY_EXISTS */
    assert_true(kc_user_login(g_client[0], &a));
    assert_true(kc_user_login(g_client[1], &b));
    assert_string_not_equal(a.session, b.session);

    /* blue's password does not log in to green */
    code = call_code(1, "login", &a, NULL,
                     json_pack("{s:s, s:s}", "userId", a.id, "userPw", a.pw));
    assert_string_equal(code, "BAD_CREDENTIALS");
    free(code);
    /* blue's session is nothing in green */
    code = call_code(1, "user-status-change", &a, a.session,
                     json_pack("{s:s, s:s}", "userId", a.id, "userStatus", "away"));
    assert_string_equal(code, "UNAUTHENTICATED");
    free(code);

    /* a user of blue only is not found from green */
    assert_true(kc_user_new(g_client[0], &only_blue, "blue-only"));
    code = call_code(1, "user-add-friend", &b, b.session,
                     json_pack("{s:s, s:[s]}", "userId", b.id, "friendId", only_blue.id));
    assert_string_equal(code, "USER_NOT_FOUND");
    free(code);

    /* a room of blue, with messages, is not green's */
    const char *friends[] = {only_blue.id, NULL};
    assert_true(kc_add_friends(g_client[0], &a, friends));
    assert_true(kc_create_room(g_client[0], &a, friends, "blue room", room));
    for (int i = 0; i < 3; i++)
        assert_true(kc_chat(g_client[0], &a, room, "blue", NULL) == i + 1);
    code = call_code(1, "room-history", &b, b.session,
                     json_pack("{s:s, s:s}", "userId", b.id, "roomId", room));
    assert_string_equal(code, "ROOM_NOT_FOUND");
    free(code);
    assert_non_null(hist = kc_history_all(g_client[0], &only_blue, room));
    assert_int_equal(json_array_size(hist), 3);
    json_decref(hist);

    /* every answer on its own deployment's topics only: the clients read
     * only theirs, and each saw its own answers; none of blue's cids is on
     * green's topics */
    for (size_t i = 0; i < kc_record_count(g_client[1]); i++) {
        const kc_record *r = kc_record_get(g_client[1], i);
        assert_true(strncmp(r->topic, g_name[1], strlen(g_name[1])) == 0);
    }
    assert_int_equal(kc_records_containing(g_client[1], only_blue.id, strlen(only_blue.id),
                                           NULL), 1);   /* green's USER_NOT_FOUND answer */
}

static void test_bad_name_refused(void **state)
{
    static const char *const bad[] = {"a.b", "0123456789012345678901234567890123456789x", ""};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char cmd[512], *out;
        int status = 0;

        snprintf(cmd, sizeof(cmd), "%s serve --deployment '%s' 2>&1", kc_bin(), bad[i]);
        out = kc_run_capture(cmd, NULL, &status);
        assert_non_null(out);
        if (status != 2 || strstr(out, "letters, digits") == NULL)
            fprintf(stderr, "--deployment '%s': exit %d: %s\n", bad[i], status, out);
        assert_int_equal(status, 2);
        assert_non_null(strstr(out, "letters, digits"));
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_same_ids_apart, teardown),
        cmocka_unit_test(test_bad_name_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
