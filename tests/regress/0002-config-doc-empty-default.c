/*
 * Regression 0002 (fixed by 4ecf639): `kchat config-doc`, which generates
 * docs/configuration.md, printed an empty default as an empty code span,
 * "| `brokers` | string | `` | ...": Markdown shows that as two stray
 * backticks. An empty default is now written "(empty)".
 *
 * Runs `kchat config-doc`: no "``" anywhere; the brokers row (default "")
 * says (empty).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/kclient.h"

static void test_config_doc_empty_default(void **state)
{
    char cmd[4096], *out, *span;
    int status = -1;

    (void)state;
    snprintf(cmd, sizeof(cmd), "timeout 30 %s config-doc", kc_bin());
    out = kc_run_capture(cmd, NULL, &status);
    assert_non_null(out);
    assert_int_equal(status, 0);
    if ((span = strstr(out, "``")) != NULL) {
        while (span > out && span[-1] != '\n')
            span--;
        fail_msg("an empty code span in the generated table: %.*s", (int)strcspn(span, "\n"),
                 span);
    }
    assert_non_null(strstr(out, "| `brokers` | string | (empty) |"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_doc_empty_default),
    };
    return cmocka_run_group_tests_name("0002 config-doc prints an empty default as ``", tests,
                                       NULL, NULL);
}
