/**
 * @file kassert.h
 * @brief cmocka assertions over kclient.h checks. Include after <cmocka.h>.
 *
 * KC_CHECK() fails with a sentence of the test's and the server logs. The
 * other macros evaluate a response expression once, checks it with the
 * matching kc_check_*() (which prints the body and the server log tails on a
 * mismatch), releases the response and then asserts, so a failure names the
 * test file's line.
 */
#ifndef KCHAT_TESTS_KASSERT_H
#define KCHAT_TESTS_KASSERT_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kclient.h"   /* beside this file: tests/support/ needs no -Itests */

/** The response expression @p expr is a success for @p user (NULL: any). */
#define KC_EXPECT_OK(expr, user)                                               \
    do {                                                                       \
        json_t *kc_r_ = (expr);                                                \
        bool kc_ok_ = kc_check_ok(kc_r_, (user));                              \
        json_decref(kc_r_);                                                    \
        assert_true(kc_ok_);                                                   \
    } while (0)

/** The response expression @p expr is error @p code for @p user (NULL: any). */
#define KC_EXPECT_ERR(expr, user, code)                                        \
    do {                                                                       \
        json_t *kc_r_ = (expr);                                                \
        bool kc_ok_ = kc_check_err(kc_r_, (user), (code));                     \
        json_decref(kc_r_);                                                    \
        assert_true(kc_ok_);                                                   \
    } while (0)

/** Field @p field of @p obj is the string @p want. */
#define KC_ASSERT_STR(obj, field, want)                                        \
    do {                                                                       \
        const char *kc_s_ = kc_str((obj), (field));                            \
        if (kc_s_ == NULL || strcmp(kc_s_, (want)) != 0)                       \
            fprintf(stderr, "field %s: want \"%s\" in %s\n", (field), (want),  \
                    kc_dumps(obj));                                            \
        assert_non_null(kc_s_);                                                \
        assert_string_equal(kc_s_, (want));                                    \
    } while (0)

/** Field @p field of @p obj is the integer @p want. */
#define KC_ASSERT_INT(obj, field, want)                                        \
    do {                                                                       \
        json_t *kc_v_ = json_object_get((obj), (field));                       \
        if (!json_is_integer(kc_v_) || json_integer_value(kc_v_) != (want))    \
            fprintf(stderr, "field %s: want %lld in %s\n", (field),            \
                    (long long)(want), kc_dumps(obj));                         \
        assert_true(json_is_integer(kc_v_));                                   \
        assert_int_equal(json_integer_value(kc_v_), (want));                   \
    } while (0)

/* Print why (printf-style) and the tail of every server log, then fail the
 * test at @p file:@p line. */
static inline void kc_failf_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static inline void kc_failf_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    kc_diag_dump();
    _fail(file, line);
    abort();    /* _fail() does not return */
}

/** Fail the test, saying why (printf-style) with the server logs, unless
 *  @p cond holds. */
#define KC_CHECK(cond, ...)                                                    \
    do {                                                                       \
        if (!(cond))                                                           \
            kc_failf_at(__FILE__, __LINE__, __VA_ARGS__);                      \
    } while (0)

#endif /* KCHAT_TESTS_KASSERT_H */
