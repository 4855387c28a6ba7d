/*
 * bench/sse_pidstat.c - the RSS and CPU readings of the event-stream
 * benchmark (bench/sse.c): the gateway's processes (--pid) from
 * /proc/PID/status and /proc/PID/stat, and this process's own CPU time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sse.h"

/* kB of VmRSS (or VmHWM) of process pid, -1 when unknown. */
static long pid_status_kb(long pid, const char *field)
{
    char path[64], line[256];
    size_t flen = strlen(field);
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, field, flen) && line[flen] == ':') {
            kb = strtol(line + flen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* kB of VmRSS (or VmHWM) summed over the --pid processes, -1 when unknown
 * (no --pid, or one of them unreadable). Runs on the parent. */
long proc_status_kb(const char *field)
{
    long sum = 0, kb;

    if (opt.npids == 0)
        return -1;
    for (int i = 0; i < opt.npids; i++) {
        if ((kb = pid_status_kb(opt.pids[i], field)) < 0)
            return -1;
        sum += kb;
    }
    return sum;
}

/* utime + stime of process pid in seconds, -1 when unknown. */
static double pid_cpu_s(long pid)
{
    char path[64], buf[2048], *p;
    unsigned long ut, st;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if ((p = strrchr(buf, ')')) == NULL)
        return -1;
    /* fields after ")": state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* utime + stime summed over the --pid processes in seconds, -1 when
 * unknown. Runs on the parent. */
double proc_cpu_s(void)
{
    double sum = 0, s;

    if (opt.npids == 0)
        return -1;
    for (int i = 0; i < opt.npids; i++) {
        if ((s = pid_cpu_s(opt.pids[i])) < 0)
            return -1;
        sum += s;
    }
    return sum;
}

double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}
