/**
 * @file metrics.h
 * @brief Lock-free histograms and Prometheus text output, shared by the
 *        backend and the gateway.
 *
 * A histogram has fixed upper bounds chosen at definition; observing is one
 * relaxed atomic add per bucket, count and sum, safe from any thread.
 */
#ifndef KCHAT_METRICS_H
#define KCHAT_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/** Most finite buckets of a histogram (the +Inf bucket is extra). */
#define KCHAT_HIST_MAX_BUCKETS 24

/** A cumulative histogram in the Prometheus sense. Zero-initialise the
 *  counters; set @c bounds (ascending, static storage) and @c n_bounds. */
typedef struct kchat_hist {
    const double *bounds;                              /**< upper bounds, ascending */
    size_t n_bounds;                                   /**< <= KCHAT_HIST_MAX_BUCKETS */
    atomic_uint_fast64_t buckets[KCHAT_HIST_MAX_BUCKETS + 1]; /**< per bucket, not cumulative */
    atomic_uint_fast64_t count;                        /**< observations */
    atomic_uint_fast64_t sum_micro;                    /**< sum of values x 1e6 */
} kchat_hist;

/** @brief Record one value (relaxed atomic adds: never blocks).
 *  @locality any thread */
void kchat_hist_observe(kchat_hist *h, double value);

/**
 * @brief Write @p h as Prometheus text: `name_bucket{le="..."}`, `name_sum`,
 *        `name_count`, preceded by HELP and TYPE lines.
 * @param[in] labels extra labels without braces (e.g. `route="/api/login"`),
 *            or NULL; HELP/TYPE are written only when @p help is not NULL.
 * @note Reads the counters one by one while others may still add to them,
 *       so a line can be a little behind the one before it; errors writing
 *       to @p out are left in its error indicator (ferror()).
 * @locality any thread (the caller owns @p out)
 */
void kchat_hist_write(FILE *out, const char *name, const char *help, const char *labels,
                      const kchat_hist *h);

/** @brief Write one counter or gauge with HELP and TYPE lines; errors are
 *  left in @p out's error indicator.
 *  @locality any thread (the caller owns @p out) */
void kchat_metric_write(FILE *out, const char *name, const char *type, const char *help,
                        double value);

#endif /* KCHAT_METRICS_H */
