/**
 * @file bench/util.h
 * @brief Small helpers shared by the bench programs (bench/load.c,
 *        bench/echo.c): monotonic time, fatal errors, option parsing,
 *        librdkafka configuration and the bootstrap file.
 *
 * Single-threaded programs only: util_die() exits, nothing here locks.
 */
#ifndef KCHAT_BENCH_UTIL_H
#define KCHAT_BENCH_UTIL_H

#include <stdint.h>
#include <librdkafka/rdkafka.h>

/** Prefix of util_die() messages ("load", "echo"); set it first in main(). */
extern const char *util_prog;

/** @brief CLOCK_MONOTONIC in nanoseconds. */
int64_t util_now_ns(void);

/** @brief CLOCK_MONOTONIC in milliseconds. */
int64_t util_now_ms(void);

/** @brief Print "PROG: message" on stderr and exit(2) (usage/setup failure). */
void util_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/** @brief calloc that dies on failure; a zero count still returns memory. */
void *util_xcalloc(size_t n, size_t size);

/**
 * @brief Parse a decimal integer option in [@p lo, @p hi]; dies naming
 *        @p what when @p s is not one.
 */
long util_parse_long(const char *s, const char *what, long lo, long hi);

/** @brief rd_kafka_conf_set() that dies with librdkafka's reason. */
void util_conf_set(rd_kafka_conf_t *c, const char *key, const char *value);

/**
 * @brief The first line of @p path (a bootstrap list), without its newline.
 * @return a malloc'd string, the caller frees it. Dies when the file cannot
 *         be read or its first line is empty.
 */
char *util_read_bootstrap_file(const char *path);

/** Latency percentiles of a set of samples, in milliseconds. */
typedef struct util_lat {
    long n;                       /**< number of samples */
    double mean, p50, p90, p99, p999, max;
} util_lat;

/**
 * @brief Summarise @p n latency samples (nanoseconds): nearest-rank
 *        percentiles, mean and max. Sorts @p v in place. All zero when n is 0.
 */
util_lat util_lat_summarize(int64_t *v, long n);

#endif /* KCHAT_BENCH_UTIL_H */
