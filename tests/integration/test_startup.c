/*
 * Start-up refusals and the command line of `kchat serve`: a data directory
 * made for another partition count, bad options and config files. Each must
 * stop the process with a clear message and a non-zero exit, before
 * anything is consumed. (Request topics that are not co-partitioned:
 * tests/regress/0009-co-partition-checked-after-create.c.)
 */
#include <setjmp.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/http.h"
#include "support/kclient.h"

/* Run kchat with @p args (shell words), bounded; returns its output. */
static char *run_kchat(const char *args, int *status)
{
    char cmd[4096];

    snprintf(cmd, sizeof(cmd), "timeout 60 %s %s 2>&1", kc_bin(), args);
    return kc_run_capture(cmd, NULL, status);
}

static void assert_output_has(const char *out, const char *needle)
{
    if (out == NULL || strstr(out, needle) == NULL) {
        fprintf(stderr, "expected \"%s\" in:\n%s\n", needle, out ? out : "(no output)");
        fail();
    }
}

/* A data directory remembers its shard count. */
static void test_refuses_data_dir_of_other_partition_count(void **state)
{
    char *data = kc_tmppath("shards-data"), args[1024], *out;
    kc_proc *p = kc_serve_start("shards4", data, KC_EMBEDDED, 4, NULL);
    int status = 0;

    (void)state;
    assert_non_null(p);
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    kc_proc_free(p);
    snprintf(args, sizeof(args), "serve --data %s --partitions 8 --pwhash-ops 1 "
             "--pwhash-mem 8192", data);
    out = run_kchat(args, &status);
    assert_true(status != 0 && status != 124);
    assert_output_has(out, "holds 4 shards");
    free(out);
    free(data);
}

static void test_help_lists_every_option(void **state)
{
    static const char *const names[] = {
        "--brokers", "--data", "--bootstrap-file", "--group-id", "--events-format",
        "--partitions", "--replication", "--embedded-brokers", "--workers", "--ring-capacity",
        "--max-batch", "--linger-ms", "--map-size-mb", "--pwhash-ops", "--pwhash-mem",
        "--session-idle", "--session-check", "--config", "-X",
    };
    int status = -1;
    char *out = run_kchat("serve --help", &status);

    (void)state;
    assert_int_equal(status, 0);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_output_has(out, names[i]);
    free(out);
}

static void test_bad_options(void **state)
{
    char *conf = kc_tmppath("bad.conf"), args[1024], *out;
    FILE *f;
    int status = 0;

    (void)state;
    out = run_kchat("serve --no-such-option", &status);
    assert_int_equal(status, 2);
    assert_output_has(out, "unknown option --no-such-option");
    free(out);
    out = run_kchat("serve --partitions zero", &status);
    assert_int_equal(status, 2);
    assert_output_has(out, "partitions");
    free(out);
    out = run_kchat("serve -X not-a-property=1 --data /nonexistent", &status);
    assert_true(status != 0 && status != 124);
    free(out);
    f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f, "partitions = 4\nthis line is wrong\n");
    fclose(f);
    snprintf(args, sizeof(args), "serve --config %s", conf);
    out = run_kchat(args, &status);
    assert_int_equal(status, 2);
    assert_output_has(out, ":2:");
    free(out);
    out = run_kchat("frobnicate", &status);
    assert_int_equal(status, 2);
    free(out);
    free(conf);
}

/* kchat serve --metrics-http: health, readiness and Prometheus metrics that
 * count what the backend did. */
static void test_serve_metrics_http(void **state)
{
    char *data = kc_tmppath("metrics-data"), addr[64], base[80];
    const char *extra[] = {"--metrics-http", addr, NULL};
    kh_browser b;
    kh_resp *r;
    kc_proc *p = NULL;

    (void)state;
    /* a free port (20000 + pid % 20000 was taken once: "cannot listen") */
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", kc_free_port());
    snprintf(base, sizeof(base), "http://%s", addr);
    p = kc_serve_start("metrics", data, KC_EMBEDDED, 2, extra);
    assert_non_null(p);
    kh_browser_init(&b, "ops", base);
    r = kh_do(&b, "GET", "/healthz", NULL);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    r = kh_do(&b, "GET", "/readyz", NULL);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    r = kh_do(&b, "GET", "/metrics", NULL);
    assert_int_equal(r->status, 200);
    assert_non_null(strstr(r->body, "# TYPE kchat_requests_total counter"));
    assert_non_null(strstr(r->body, "kchat_commit_seconds_bucket{le=\"+Inf\"}"));
    assert_non_null(strstr(r->body, "kchat_worker_stall_seconds"));
    kh_resp_free(r);
    /* a registration passes through every stage of the backend once */
    {
        static const char *const stages[] = {"read", "apply", "commit", "release", "ack"};
        kc_client *c = kc_client_new(kc_proc_bootstrap(p), KC_FROM_END);
        kc_user u;

        assert_non_null(c);
        assert_true(kc_user_new(c, &u, "stages"));
        for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++) {
            char name[96];
            double n = -1;
            int64_t until = kc_now_ms() + 5000;

            snprintf(name, sizeof(name), "kchat_stage_seconds_count{stage=\"%s\"}", stages[i]);
            /* ack: Kafka's acknowledgement may come after the answer was read */
            while (kh_metric(base, name, &n) && n < 1 && kc_now_ms() < until)
                kc_sleep_ms(50);
            if (n < 1)
                fprintf(stderr, "%s = %g after a registration and a login\n", name, n);
            assert_true(n >= 1);
        }
        /* and the workers were busy for a while (their sum: which worker
         * owns the user's shard does not matter here) */
        {
            double busy = 0, one;
            char name[96];

            for (int w = 0; w < 64; w++) {
                snprintf(name, sizeof(name), "kchat_worker_busy_seconds_total{worker=\"%d\"}", w);
                if (!kh_metric(base, name, &one) || one < 0)   /* no such worker */
                    break;
                busy += one;
            }
            if (busy <= 0)
                fprintf(stderr, "kchat_worker_busy_seconds_total: %g after a registration\n",
                        busy);
            assert_true(busy > 0);
        }
        kc_client_free(c);
    }
    r = kh_do(&b, "GET", "/nope", NULL);
    assert_int_equal(r->status, 404);
    kh_resp_free(r);
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, NULL), 0);
    kc_proc_free(p);
    free(data);
}

/* The ops server of serve answers before the backend has started: /healthz
 * 200, /readyz 503 until it serves (with a changelog the start includes
 * restoring the shards it is given). A broker that refuses connections
 * holds the start until it gives up. */
static void test_serve_not_ready_while_starting(void **state)
{
    char *data = kc_tmppath("unready-data"), addr[64], base[80];
    const char *args[] = {"serve", "--brokers", "127.0.0.1:1", "--data", data,
                          "--metrics-http", addr, NULL};
    kh_browser b;
    kh_resp *r = NULL;
    kc_proc *p;
    int port = kc_free_port();

    (void)state;
    assert_true(port > 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    snprintf(base, sizeof(base), "http://%s", addr);
    p = kc_proc_start("unready", args, NULL, 0);
    assert_non_null(p);
    kh_browser_init(&b, "ops", base);
    for (int i = 0; i < 100; i++) {   /* the listener starts first */
        r = kh_do(&b, "GET", "/healthz", NULL);
        if (r->status == 200)
            break;
        kh_resp_free(r);
        r = NULL;
        kc_sleep_ms(50);
    }
    assert_non_null(r);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    r = kh_do(&b, "GET", "/readyz", NULL);
    assert_int_equal(r->status, 503);
    kh_resp_free(r);
    kc_proc_stop(p, SIGKILL, 10, NULL);
    kc_proc_free(p);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refuses_data_dir_of_other_partition_count),
        cmocka_unit_test(test_help_lists_every_option),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_serve_metrics_http),
        cmocka_unit_test(test_serve_not_ready_while_starting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
