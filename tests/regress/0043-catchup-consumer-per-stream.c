/*
 * Regression 0043 (fixed by this branch's "gateway: shared, capped catch-up
 * readers" commit; issue 12, item 9): every event stream resumed with a
 * Last-Event-ID behind the live position started a Kafka consumer of its own
 * (~7 threads) with no cap, so a burst of resuming browsers (after a gateway
 * restart, say) started hundreds of consumers. Now at most --catchup-max
 * readers run, each serving every resuming stream of one partition.
 * Here 50 streams of 10 users resume at once from the start of their
 * partitions at once (50 threads) with --catchup-max 2: each must get every event it missed (the
 * room and three messages, in order), and the gateway's gauge of catch-up
 * consumers must never have gone above 2. Before the fix there was no such
 * gauge and each stream had its own consumer (50 at once).
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kchat/kafka.h"
#include "support/raw.h"

#define N_USERS 10
#define N_PER_USER 5
#define N_MSGS 3

/* One stream to open from its own thread, so that the catch-ups overlap. */
typedef struct opener {
    pthread_t t;
    const kh_browser *b;
    const char *last_id;
    kh_sse *s;
} opener;

static void *open_main(void *arg)
{
    opener *o = arg;

    o->s = kh_sse_open(o->b, "/api/events", o->last_id, 10000);
    return NULL;
}

/* Closing a stream can take a while (its reader thread notices late):
 * close them all at once too. */
static void *close_main(void *arg)
{
    opener *o = arg;

    kh_sse_close(o->s);
    return NULL;
}

static bool is_last_chat(const kh_event *e, void *arg)
{
    return !strcmp(e->event, "chat") && strstr(e->data, (const char *)arg) != NULL;
}

static void test_resumed_streams_share_capped_readers(void **state)
{
    const char *extra[] = {"--catchup-max", "2", NULL};
    char base[256], path[160], room[72], last_id[N_USERS][32];
    int port = 0;
    kh_browser ub[N_USERS], bb;
    kc_user uu[N_USERS], bu;
    kh_sse *s[N_USERS * N_PER_USER];
    opener op[N_USERS * N_PER_USER];
    json_t *ids = json_array();
    char last_text[] = "missed-2";
    double peak = -1;
    kh_resp *r;
    kc_proc *p = kr_dev_start("r0043", extra, base, sizeof(base), &port);

    (void)state;
    assert_non_null(p);
    r = kr_signup_login(&bb, &bu, "r43b", base);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    for (int i = 0; i < N_USERS; i++) {
        char tag[16];
        snprintf(tag, sizeof(tag), "r43u%d", i);
        r = kr_signup_login(&ub[i], &uu[i], tag, base);
        assert_int_equal(r->status, 200);
        kh_resp_free(r);
        json_array_append_new(ids, json_string(uu[i].id));
        /* dev's chat-events has 8 partitions; -1: from the partition's start */
        snprintf(last_id[i], sizeof(last_id[i]), "%d--1",
                 (int)kchat_partition_for_key(uu[i].id, strlen(uu[i].id), 8));
    }
    r = kh_do(&bb, "POST", "/api/friends", json_pack("{sO}", "friendId", ids));
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    r = kh_do(&bb, "POST", "/api/rooms", json_pack("{sO}", "friendId", ids));
    assert_int_equal(r->status, 201);
    snprintf(room, sizeof(room), "%s", json_string_value(json_object_get(r->json, "roomId")));
    kh_resp_free(r);
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);
    for (int m = 0; m < N_MSGS; m++) {
        char text[32];
        snprintf(text, sizeof(text), "missed-%d", m);
        r = kh_do(&bb, "POST", path, json_pack("{ss}", "message", text));
        assert_int_equal(r->status, 201);
        kh_resp_free(r);
    }
    for (int i = 0; i < N_USERS * N_PER_USER; i++) {
        op[i].b = &ub[i / N_PER_USER];
        op[i].last_id = last_id[i / N_PER_USER];
        assert_int_equal(pthread_create(&op[i].t, NULL, open_main, &op[i]), 0);
    }
    for (int i = 0; i < N_USERS * N_PER_USER; i++) {
        pthread_join(op[i].t, NULL);
        s[i] = op[i].s;
        assert_int_equal(kh_sse_status(s[i]), 200);
    }
    for (int i = 0; i < N_USERS * N_PER_USER; i++) {
        const kh_event *e = kh_sse_wait(s[i], 0, is_last_chat, last_text, 20000);
        int seen = 0, rooms = 0;
        if (e == NULL)
            fail_msg("stream %d of %s did not get what it missed", i, uu[i / N_PER_USER].id);
        for (size_t k = 0; k <= e->index; k++) {
            const kh_event *x = kh_sse_get(s[i], k);
            char want[32];
            if (!strcmp(x->event, "room")) {
                rooms++;
                continue;
            }
            if (strcmp(x->event, "chat"))
                continue;
            snprintf(want, sizeof(want), "missed-%d", seen);
            if (!strstr(x->data, want))
                fail_msg("stream %d: chat event %d is not %s: %s", i, seen, want, x->data);
            seen++;
        }
        assert_int_equal(seen, N_MSGS);
        assert_true(rooms >= 1);
    }
    for (int i = 0; i < N_USERS * N_PER_USER; i++)
        assert_int_equal(pthread_create(&op[i].t, NULL, close_main, &op[i]), 0);
    for (int i = 0; i < N_USERS * N_PER_USER; i++)
        pthread_join(op[i].t, NULL);
    if (!kh_metric(base, "kchat_gateway_catchup_consumers_peak", &peak))
        fail_msg("no kchat_gateway_catchup_consumers_peak on /metrics");
    fprintf(stderr, "r0043: catch-up consumers peaked at %g\n", peak);
    if (peak < 1 || peak > 2)
        fail_msg("catch-up consumers peaked at %g (cap 2)", peak);
    json_decref(ids);
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, NULL), 0);
    kc_proc_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resumed_streams_share_capped_readers),
    };
    return cmocka_run_group_tests_name("0043 a Kafka consumer per resumed stream, no cap", tests,
                                       NULL, NULL);
}
