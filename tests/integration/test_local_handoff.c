/*
 * Commands handed in memory between shards of one process (src/actors/
 * local.c): `kchat serve` on the embedded broker, bob in another shard
 * than alice's room, bob's chat sends travel as commands to the room's
 * shard. With local commands (the default) the room's shard applies the
 * command handed in memory (kchat_commands_local_total counts each send),
 * none is produced to Kafka (kchat_commands_memory_only_total) and none
 * comes twice, and the acknowledgements come back in memory, so that none
 * is sent again; with --no-local-commands every command comes through
 * Kafka and none is local. Either way every send is answered
 * with the next seq and the room's history holds each once. Once the
 * answers are delivered and nothing else commits, an upkeep transaction of
 * its own deletes them from the outbox (kchat_upkeep_commits_total).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/http.h"
#include "support/kclient.h"

#define PARTITIONS 4
#define SENDS 20

static kc_proc *g_srv;
static kc_client *g_c;

static int teardown(void **state)
{
    (void)state;
    kc_release(&g_c, &g_srv);
    return 0;
}

/* The value of metric @p name at @p base once it reaches @p want, within 10 s. */
static double metric_reaches(const char *base, const char *name, double want)
{
    double v = -1;

    for (int64_t until = kc_now_ms() + 10000; kc_now_ms() < until; kc_sleep_ms(50))
        if (kh_metric(base, name, &v) && v >= want)
            break;
    return v;
}

static void run(const char *tag, bool local)
{
    char *data = kc_tmppath(tag), addr[64], base[80], room[72];
    const char *extra[] = {"--metrics-http", addr, local ? NULL : "--no-local-commands", NULL};
    kc_user alice, bob;
    json_t *hist;
    int tries = 0;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", kc_free_port());
    snprintf(base, sizeof(base), "http://%s", addr);
    g_srv = kc_serve_start(tag, data, KC_EMBEDDED, PARTITIONS, extra);
    assert_non_null(g_srv);
    g_c = kc_client_new(kc_proc_bootstrap(g_srv), KC_FROM_END);
    assert_non_null(g_c);
    assert_true(kc_user_new(g_c, &alice, "local"));
    do
        assert_true(kc_user_new(g_c, &bob, "local"));
    while (++tries < 32 &&
           kc_partition_for(bob.id, PARTITIONS) == kc_partition_for(alice.id, PARTITIONS));
    assert_int_not_equal(kc_partition_for(bob.id, PARTITIONS),
                         kc_partition_for(alice.id, PARTITIONS));
    {
        const char *friends[] = {bob.id, NULL};
        assert_true(kc_add_friends(g_c, &alice, friends));
        assert_true(kc_create_room(g_c, &alice, friends, "local", room));
    }
    for (int i = 0; i < SENDS; i++)
        assert_int_equal(kc_chat(g_c, &bob, room, "through the room's shard", NULL), i + 1);
    hist = kc_history_all(g_c, &alice, room);
    assert_non_null(hist);
    assert_int_equal(json_array_size(hist), SENDS);
    json_decref(hist);
    if (local) {
        double dup = -1, resends = -1;

        /* every send's command applied from memory, none produced to Kafka,
         * and acknowledged in memory: after the 2 s a source waits for an
         * ack, nothing was sent again */
        assert_true(metric_reaches(base, "kchat_commands_local_total", SENDS) >= SENDS);
        assert_true(metric_reaches(base, "kchat_commands_memory_only_total", SENDS) >= SENDS);
        assert_true(metric_reaches(base, "kchat_command_acks_local_total", 1) >= 1);
        kc_sleep_ms(2500);
        assert_true(kh_metric(base, "kchat_duplicate_commands_total", &dup));
        assert_true(dup == 0);
        assert_true(kh_metric(base, "kchat_command_resends_total", &resends));
        assert_true(resends == 0);
    } else {
        double v = -1;

        assert_true(metric_reaches(base, "kchat_commands_total", SENDS) >= SENDS);
        assert_true(kh_metric(base, "kchat_commands_local_total", &v));
        assert_true(v == 0);
    }
    assert_true(metric_reaches(base, "kchat_upkeep_commits_total", 1) >= 1);
    assert_true(kc_proc_stop_clean(g_srv, 20));
    free(data);
}

static void test_local_commands_on(void **state)
{
    (void)state;
    run("local-on", true);
}

static void test_local_commands_off(void **state)
{
    (void)state;
    run("local-off", false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_local_commands_on, teardown),
        cmocka_unit_test_teardown(test_local_commands_off, teardown),
    };
    return cmocka_run_group_tests_name("local hand-off", tests, NULL, NULL);
}
