/* Helpers for the directory replica's tests: see replica.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "replica.h"

static const char caught_up[] = "read kchat-directory and kchat-rooms to their end: ";

long kc_replica_read_at_start(const kc_proc *p)
{
    size_t len;
    char *log = kc_read_file(kc_proc_log(p), &len);
    const char *at = log, *last = NULL;
    long n = -1;

    assert_non_null(log);
    while ((at = strstr(at, caught_up)) != NULL)
        last = at++;
    if (last != NULL)
        n = strtol(last + sizeof(caught_up) - 1, NULL, 10);
    free(log);
    return n;
}

void kc_expect_friend_status(kc_client *c, const kc_user *a, const kc_user *b,
                             const char *want)
{
    json_t *r = kc_call(c, "user-search-friend", a->id, a->session,
                        json_pack("{ss}", "userId", a->id));
    assert_true(kc_check_ok(r, a->id));
    json_t *friends = json_object_get(r, "friend");
    json_t *first = json_array_get(friends, 0);
    const char *status = json_string_value(json_object_get(first, "userStatus"));
    if (json_array_size(friends) != 1 || status == NULL || strcmp(status, want) != 0) {
        char *text = json_dumps(friends, JSON_COMPACT);
        fprintf(stderr, "%s's friends: %s (want %s with status %s)\n", a->id,
                text ? text : "?", b->id, want);
        free(text);
    }
    assert_int_equal(json_array_size(friends), 1);
    assert_non_null(status);
    assert_string_equal(status, want);
    json_decref(r);
}

void kc_friends_up(kc_friends *f, const char *name, int partitions, bool mock,
                   const char *data_dir, const char *const *extra, const char *prefix)
{
    char broker[64], a[32], b[32];

    memset(f, 0, sizeof(*f));
    snprintf(broker, sizeof(broker), "%s-broker", name);
    f->broker = mock ? kc_mock_broker_start(broker, partitions)
                     : kc_broker_start(broker, partitions);
    assert_non_null(f->broker);
    snprintf(f->brokers, sizeof(f->brokers), "%s", kc_proc_bootstrap(f->broker));
    f->srv = kc_serve_start(name, data_dir, f->brokers, partitions, extra);
    assert_non_null(f->srv);
    f->c = kc_client_new(f->brokers, KC_FROM_END);
    assert_non_null(f->c);
    snprintf(a, sizeof(a), "%sa", prefix);
    snprintf(b, sizeof(b), "%sb", prefix);
    assert_true(kc_user_in_shard(f->c, &f->a, a, 0, partitions));
    assert_true(kc_user_in_shard(f->c, &f->b, b, 1, partitions));
    const char *follow[] = { f->b.id, NULL };
    assert_true(kc_add_friends(f->c, &f->a, follow));
}

void kc_friends_stop_server(kc_friends *f, int wait_ms)
{
    assert_true(kc_proc_stop_clean(f->srv, 60));
    kc_proc_free(f->srv);
    f->srv = NULL;
    if (wait_ms > 0)
        kc_sleep_ms(wait_ms);
}

void kc_friends_down(kc_friends *f)
{
    kc_client_free(f->c);
    f->c = NULL;
    kc_proc_free(f->srv);
    f->srv = NULL;
    kc_proc_free(f->broker);
    f->broker = NULL;
}
