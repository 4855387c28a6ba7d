/*
 * Regression 0011 (fixed by e7198a3): a histogram written without labels
 * printed `name_sum{} 0.1` and `name_count{} 3`: empty braces, which the
 * Prometheus text format's grammar does not have (a label set, when
 * present, holds at least one label). Seen on the gateway's /metrics once
 * `kchat dev` showed the backend's histograms there.
 *
 * A unit test of kchat_hist_write() (src/app/metrics.c): without labels
 * (NULL or "") no `{}` and plain `name_sum VALUE` / `name_count VALUE`
 * lines; with labels, the labels on every line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/metrics.h"

static const double bounds[] = {0.001, 0.01, 0.1};

/* kchat_hist_write() of @p h into a malloc'd string. */
static char *written(const kchat_hist *h, const char *labels)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    assert_non_null(out);
    kchat_hist_write(out, "kc_test_seconds", "A test histogram.", labels, h);
    assert_int_equal(fclose(out), 0);
    assert_non_null(text);
    return text;
}

static void test_histogram_without_labels(void **state)
{
    kchat_hist h = {.bounds = bounds, .n_bounds = 3};
    const char *const no_labels[] = {NULL, ""};

    (void)state;
    kchat_hist_observe(&h, 0.005);
    kchat_hist_observe(&h, 0.05);
    kchat_hist_observe(&h, 0.5);
    for (size_t i = 0; i < 2; i++) {
        char *text = written(&h, no_labels[i]);
        if (strstr(text, "{}") != NULL)
            fail_msg("empty braces in:\n%s", text);
        assert_non_null(strstr(text, "\nkc_test_seconds_sum 0.555000\n"));
        assert_non_null(strstr(text, "\nkc_test_seconds_count 3\n"));
        assert_non_null(strstr(text, "\nkc_test_seconds_bucket{le=\"+Inf\"} 3\n"));
        free(text);
    }
}

static void test_histogram_with_labels(void **state)
{
    kchat_hist h = {.bounds = bounds, .n_bounds = 3};
    char *text;

    (void)state;
    kchat_hist_observe(&h, 0.05);
    text = written(&h, "route=\"/api/login\"");
    assert_null(strstr(text, "{}"));
    assert_non_null(strstr(text, "\nkc_test_seconds_sum{route=\"/api/login\"} 0.050000\n"));
    assert_non_null(strstr(text, "\nkc_test_seconds_count{route=\"/api/login\"} 1\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram_without_labels),
        cmocka_unit_test(test_histogram_with_labels),
    };
    return cmocka_run_group_tests_name("0011 histogram without labels prints {}", tests, NULL,
                                       NULL);
}
