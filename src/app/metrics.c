/* Histograms and Prometheus text (include/kchat/metrics.h). */
#include "kchat/metrics.h"

void kchat_hist_observe(kchat_hist *h, double value)
{
    size_t i = 0;

    while (i < h->n_bounds && value > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    if (value > 0)
        atomic_fetch_add_explicit(&h->sum_micro, (uint_fast64_t)(value * 1e6),
                                  memory_order_relaxed);
}

void kchat_hist_write(FILE *out, const char *name, const char *help, const char *labels,
                      const kchat_hist *h)
{
    const char *sep = labels && labels[0] ? "," : "";
    uint64_t cum = 0;

    if (help != NULL)
        fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->n_bounds)
            fprintf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels ? labels : "", sep,
                    h->bounds[i], (unsigned long long)cum);
        else
            fprintf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels ? labels : "", sep,
                    (unsigned long long)cum);
    }
    if (labels && labels[0])
        fprintf(out, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels,
                (double)atomic_load_explicit(&h->sum_micro, memory_order_relaxed) / 1e6, name,
                labels,
                (unsigned long long)atomic_load_explicit(&h->count, memory_order_relaxed));
    else
        fprintf(out, "%s_sum %.6f\n%s_count %llu\n", name,
                (double)atomic_load_explicit(&h->sum_micro, memory_order_relaxed) / 1e6, name,
                (unsigned long long)atomic_load_explicit(&h->count, memory_order_relaxed));
}

void kchat_metric_write(FILE *out, const char *name, const char *type, const char *help,
                        double value)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, value);
}
