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
