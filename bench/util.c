/* Helpers shared by the bench programs (bench/util.h). */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *util_prog = "bench";

int64_t util_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t util_now_ms(void)
{
    return util_now_ns() / 1000000LL;
}

void util_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", util_prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

void *util_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        util_die("out of memory");
    return p;
}

long util_parse_long(const char *s, const char *what, long lo, long hi)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        util_die("bad %s '%s' (want %ld..%ld)", what, s, lo, hi);
    return v;
}

void util_conf_set(rd_kafka_conf_t *c, const char *key, const char *value)
{
    char err[512];
    if (rd_kafka_conf_set(c, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK)
        util_die("config %s=%s: %s", key, value, err);
}

char *util_read_bootstrap_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        util_die("cannot open bootstrap file %s: %s", path, strerror(errno));
    char buf[4096];
    if (fgets(buf, sizeof(buf), f) == NULL) {
        fclose(f);
        util_die("bootstrap file %s is empty", path);
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0')
        util_die("bootstrap file %s is empty", path);
    char *s = strdup(buf);
    if (s == NULL)
        util_die("out of memory");
    return s;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest sample with at least p% of samples <= it. */
static double pct_ms(const int64_t *v, long n, double p)
{
    long rank = (long)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1e6;
}

util_lat util_lat_summarize(int64_t *v, long n)
{
    util_lat l = {0};
    if (n <= 0)
        return l;
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += (double)v[i];
    l.n = n;
    l.mean = sum / (double)n / 1e6;
    l.p50 = pct_ms(v, n, 50);
    l.p90 = pct_ms(v, n, 90);
    l.p99 = pct_ms(v, n, 99);
    l.p999 = pct_ms(v, n, 99.9);
    l.max = (double)v[n - 1] / 1e6;
    return l;
}
