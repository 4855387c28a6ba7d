/* kchat: the command line. `kchat serve` runs the backend, `kchat broker`
 * runs the embedded broker alone, `kchat config-doc` prints
 * docs/configuration.md. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "kchat/auth.h"
#include "kchat/backend.h"
#include "kchat/config.h"
#include "kchat/deployment.h"
#include "kchat/error.h"
#include "kchat/ops_http.h"
#include "kchat/gateway.h"
#include "kchat/topics.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kchat COMMAND [options]\n\n"
            "commands:\n"
            "  serve        the backend: Kafka requests in, responses and chat-events out;\n"
            "               with no --brokers it starts an embedded broker in-process\n"
            "  broker       only the embedded broker, in the foreground until SIGINT/SIGTERM\n"
            "  gateway      the HTTP gateway (API, event streams, chat page) for --brokers\n"
            "  dev          embedded broker + backend + gateway in one process: open the\n"
            "               printed URL in a browser\n"
            "  keygen FILE  write a new deployment secret to FILE (mode 0600) for\n"
            "               --secret-file (docs/security.md)\n"
            "  config-doc   print the configuration reference (docs/configuration.md)\n\n"
            "`kchat COMMAND --help` lists the options of a command.\n");
}

/* Write @p line to @p path atomically (temporary file, then rename). */
static int write_bootstrap_file(const char *path, const char *line)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if ((f = fopen(tmp, "w")) == NULL)
        return KCHAT_EIO;
    fprintf(f, "%s\n", line);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return KCHAT_EIO;
    }
    return KCHAT_OK;
}

/* Block the stop signals in every thread (they inherit the mask) so the main
 * thread alone takes them with sigwait(). */
static void signals_block(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int parse_config(kchat_config *cfg, int argc, char **argv, const char *command)
{
    char errstr[512] = "";
    int rc = kchat_config_init(cfg);

    if (rc != KCHAT_OK) {
        fprintf(stderr, "kchat: %s\n", kchat_strerror(rc));
        return 2;
    }
    rc = kchat_config_parse_args(cfg, argc, argv, 2, errstr, sizeof(errstr));
    if (rc == 1) {
        kchat_config_usage(stdout, command);
        return 0;
    }
    if (rc != KCHAT_OK) {
        fprintf(stderr, "kchat %s: %s\n", command, errstr[0] ? errstr : kchat_strerror(rc));
        return 2;
    }
    if (kchat_deployment_set(cfg->deployment) != KCHAT_OK) {
        fprintf(stderr, "kchat %s: --deployment %s: 1 to %d letters, digits, _ or -\n",
                command, cfg->deployment, KCHAT_DEPLOYMENT_MAX);
        return 2;
    }
    return -1;
}

/* The backend the ops server of serve reports on: NULL until its start
 * (which waits for the first assignment and takes its shards over) returns,
 * so /readyz answers 503 during it. */
static _Atomic(kchat_backend *) serve_backend;

/* /metrics of serve (nothing until the backend runs).
 * @locality the ops HTTP server's thread */
static void serve_metrics(void *arg, FILE *out)
{
    /* arg: the backend of `kchat dev` (kchat_gateway_set_metrics()) */
    kchat_backend *be = arg != NULL ? arg : atomic_load(&serve_backend);

    if (be != NULL)
        kchat_backend_metrics(be, out);
}

/* /readyz of serve: 503 while it starts or takes shards over.
 * @locality the ops HTTP server's thread */
static bool serve_ready(void *arg)
{
    kchat_backend *be = atomic_load(&serve_backend);

    (void)arg;
    return be != NULL && kchat_backend_ready(be);
}

static int cmd_serve(int argc, char **argv)
{
    kchat_config cfg;
    kchat_backend *be = NULL;
    kchat_backend_stats st;
    kchat_ops_http *ops = NULL;
    char errstr[512] = "", line[512];
    sigset_t set;
    int sig = 0, rc;

    if ((rc = parse_config(&cfg, argc, argv, "serve")) >= 0)
        goto out_release;
    signals_block(&set);
    /* The ops server first: /healthz answers and /readyz says 503 while the
     * backend starts (with a changelog, restoring the shards it is given). */
    if (cfg.metrics_http[0] &&
        kchat_ops_http_start(cfg.metrics_http, serve_metrics, serve_ready, NULL, &ops, errstr,
                             sizeof(errstr)) != KCHAT_OK) {
        fprintf(stderr, "kchat serve: %s\n", errstr);
        rc = 1;
        goto out_release;
    }
    if (kchat_backend_start(&cfg, &be, errstr, sizeof(errstr)) != KCHAT_OK) {
        fprintf(stderr, "kchat serve: %s\n", errstr);
        kchat_ops_http_stop(ops);
        rc = 1;
        goto out_release;
    }
    atomic_store(&serve_backend, be);
    if (cfg.brokers[0] == '\0')
        printf("embedded broker: %s\n", kchat_backend_bootstraps(be));
    printf("kchat serve: consuming from %s, data in %s, librdkafka %s\n",
           kchat_backend_bootstraps(be), cfg.data_dir, rd_kafka_version_str());
    if (ops)
        printf("kchat serve: metrics on http://%s/metrics\n", cfg.metrics_http);
    fflush(stdout);
    if (cfg.bootstrap_file[0] &&
        write_bootstrap_file(cfg.bootstrap_file, kchat_backend_bootstraps(be)) != KCHAT_OK)
        fprintf(stderr, "kchat serve: cannot write %s: %s\n", cfg.bootstrap_file,
                strerror(errno));
    sigwait(&set, &sig);
    fprintf(stderr, "kchat serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    kchat_ops_http_stop(ops);
    atomic_store(&serve_backend, NULL);
    kchat_backend_stop(be, &st);
    kchat_backend_stats_line(&st, line, sizeof(line));
    fprintf(stderr, "kchat serve: stopped: %s\n", line);
    rc = 0;
out_release:
    kchat_config_release(&cfg);
    return rc;
}

static int cmd_broker(int argc, char **argv)
{
    kchat_config cfg;
    kchat_embedded *e = NULL;
    char errstr[512] = "";
    sigset_t set;
    int sig = 0, rc;

    if ((rc = parse_config(&cfg, argc, argv, "broker")) >= 0)
        goto out_release;
    signals_block(&set);
    if (kchat_embedded_start(cfg.embedded_brokers, cfg.partitions, &e, errstr,
                             sizeof(errstr)) != KCHAT_OK) {
        fprintf(stderr, "kchat broker: %s\n", errstr);
        rc = 1;
        goto out_release;
    }
    printf("embedded broker: %s\n", kchat_embedded_bootstraps(e));
    fflush(stdout);
    if (cfg.bootstrap_file[0] &&
        write_bootstrap_file(cfg.bootstrap_file, kchat_embedded_bootstraps(e)) != KCHAT_OK)
        fprintf(stderr, "kchat broker: cannot write %s: %s\n", cfg.bootstrap_file,
                strerror(errno));
    sigwait(&set, &sig);
    kchat_embedded_stop(e);
    rc = 0;
out_release:
    kchat_config_release(&cfg);
    return rc;
}

/* Print the gateway's URL and write --url-file once it is ready. */
static int gateway_announce(kchat_gateway *gw, const kchat_config *cfg, const char *command)
{
    printf("gateway: open %s\n", kchat_gateway_url(gw));
    fflush(stdout);
    if (cfg->url_file[0] && write_bootstrap_file(cfg->url_file, kchat_gateway_url(gw)) != KCHAT_OK) {
        fprintf(stderr, "kchat %s: cannot write %s: %s\n", command, cfg->url_file,
                strerror(errno));
        return -1;
    }
    return 0;
}

/* Wait until @p gw is ready, or until a signal of @p set arrives.
 * @return true when ready, false when a signal came first. */
static bool gateway_wait_ready_or_signal(kchat_gateway *gw, const sigset_t *set)
{
    for (;;) {
        struct timespec ts = {0, 200 * 1000000L};
        if (kchat_gateway_wait_ready(gw, 0) == KCHAT_OK)
            return true;
        if (sigtimedwait(set, NULL, &ts) > 0)
            return false;
    }
}

/* ---- `kchat gateway --gateway-processes N` ---- */

/* Seconds the processes get to stop after SIGTERM before SIGKILL. */
#define PROCS_STOP_S 30

/* Describe wait() status @p st in @p buf. */
static const char *exit_str(int st, char *buf, size_t size)
{
    if (WIFEXITED(st))
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, size, "was killed by signal %d", WTERMSIG(st));
    else
        snprintf(buf, size, "ended (wait status %d)", st);
    return buf;
}

/* One process of a gateway that runs as several: a whole gateway accepting
 * on listening socket @p fd, which writes one byte to @p ready_fd once it is
 * ready and stops cleanly at SIGTERM or SIGINT (also sent when the parent
 * dies).
 * @return its exit status: 0 after a clean stop, 1 when it could not start.
 * @locality the child, right after fork() (no other thread yet) */
static int gateway_child(const kchat_config *cfg, int index, int fd, int ready_fd,
                         const sigset_t *set)
{
    kchat_gateway *gw = NULL;
    char errstr[512] = "";
    int sig = 0;

    if (kchat_gateway_start_on(cfg, cfg->brokers, fd, index, &gw, errstr, sizeof(errstr)) !=
        KCHAT_OK) {
        fprintf(stderr, "kchat gateway [%d]: %s\n", index, errstr);
        return 1;
    }
    if (!gateway_wait_ready_or_signal(gw, set))
        goto out_stop;
    if (write(ready_fd, "r", 1) != 1)
        fprintf(stderr, "kchat gateway [%d]: cannot tell the parent: %s\n", index,
                strerror(errno));
    close(ready_fd);
    ready_fd = -1;
    sigwait(set, &sig);
out_stop:
    fprintf(stderr, "kchat gateway [%d]: stopping\n", index);
    if (ready_fd >= 0)
        close(ready_fd);
    kchat_gateway_stop(gw);
    return 0;
}

/* Collect every process of @p pids that ended (WNOHANG), log how, and clear
 * its slot. @return how many ended other than with status 0. */
static int procs_reap(pid_t *pids, int n)
{
    char how[64];
    int st, bad = 0;
    pid_t pid;

    while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
        for (int i = 0; i < n; i++)
            if (pids[i] == pid) {
                pids[i] = 0;
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                    fprintf(stderr, "kchat gateway: process %d (pid %ld) %s\n", i, (long)pid,
                            exit_str(st, how, sizeof(how)));
                    bad++;
                }
            }
    return bad;
}

static int procs_live(const pid_t *pids, int n)
{
    int live = 0;

    for (int i = 0; i < n; i++)
        live += pids[i] != 0;
    return live;
}

/* SIGTERM to every process still running, and wait for them: at most
 * PROCS_STOP_S seconds, then SIGKILL. @return how many ended other than
 * with status 0. */
static int procs_stop(pid_t *pids, int n)
{
    int bad = 0;

    for (int i = 0; i < n; i++)
        if (pids[i] != 0)
            kill(pids[i], SIGTERM);
    for (int t = 0; t < PROCS_STOP_S * 20 && procs_live(pids, n) > 0; t++) {
        bad += procs_reap(pids, n);
        if (procs_live(pids, n) > 0)
            usleep(50 * 1000);
    }
    for (int i = 0; i < n; i++)
        if (pids[i] != 0) {
            fprintf(stderr, "kchat gateway: process %d (pid %ld) did not stop within %d s: "
                            "SIGKILL\n", i, (long)pids[i], PROCS_STOP_S);
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
            bad++;
        }
    return bad;
}

/* What procs_wait_ready() saw. */
enum procs_start { PROCS_READY, PROCS_ONE_ENDED, PROCS_STOP_SIGNAL };

/* Wait until each of the @p n processes wrote its ready byte to @p rfd, one
 * of them ended, or a stop signal came. @locality the parent */
static enum procs_start procs_wait_ready(pid_t *pids, int n, int rfd, const sigset_t *set)
{
    struct timespec now = {0, 0};
    int ready = 0, sig;
    char buf[64];

    while (ready < n) {
        struct pollfd pfd = {.fd = rfd, .events = POLLIN};
        if (poll(&pfd, 1, 200) > 0) {
            ssize_t got = read(rfd, buf, sizeof(buf));
            if (got > 0)
                ready += (int)got;
        }
        while ((sig = sigtimedwait(set, NULL, &now)) > 0) {
            if (sig != SIGCHLD)
                return PROCS_STOP_SIGNAL;
            if (procs_reap(pids, n) > 0 || procs_live(pids, n) < n)
                return PROCS_ONE_ENDED;
        }
    }
    return PROCS_READY;
}

/* `kchat gateway` as cfg->gateway_processes processes on one address: the
 * listening sockets are made here (kchat_gateway_listen()), one child per
 * socket runs a whole gateway (gateway_child()), and this process only
 * watches: it announces the URL once every child is ready, passes SIGTERM
 * and SIGINT on, and stops them all when one of them ends.
 * @return the exit status: 0 after a clean stop, 1 when a process failed.
 * @locality the main thread, before any other thread exists (it forks) */
static int gateway_processes(kchat_config *cfg, const sigset_t *stop_set)
{
    int n = cfg->gateway_processes, fds[64], pipefd[2], started = 0, sig = 0, rc = 1, i;
    pid_t pids[64] = {0}, parent = getpid();
    char url[320], errstr[512] = "";
    sigset_t set = *stop_set;

    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (kchat_gateway_listen(cfg->http, n, fds, url, sizeof(url), errstr, sizeof(errstr)) !=
        KCHAT_OK) {
        fprintf(stderr, "kchat gateway: %s\n", errstr);
        return 1;
    }
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        fprintf(stderr, "kchat gateway: pipe: %s\n", strerror(errno));
        goto out_close;
    }
    fflush(stdout);
    fflush(stderr);
    for (i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "kchat gateway: fork: %s\n", strerror(errno));
            break;
        }
        if (pid == 0) {
            close(pipefd[0]);
            for (int j = 0; j < n; j++)
                if (j != i)
                    close(fds[j]);
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(1);
            exit(gateway_child(cfg, i, fds[i], pipefd[1], stop_set));
        }
        pids[i] = pid;
        started++;
    }
    close(pipefd[1]);
    for (int j = 0; j < n; j++)
        close(fds[j]);
    n = started;
    if (started < cfg->gateway_processes)
        goto out_stop;
    fprintf(stderr, "kchat gateway: %d processes listening on %s, waiting for Kafka at %s\n", n,
            url, cfg->brokers);
    switch (procs_wait_ready(pids, n, pipefd[0], &set)) {
    case PROCS_READY:
        break;
    case PROCS_ONE_ENDED:
        goto out_stop;
    case PROCS_STOP_SIGNAL:
        rc = 0;
        goto out_stop;
    }
    printf("gateway: open %s (%d processes)\n", url, n);
    fflush(stdout);
    if (cfg->url_file[0] && write_bootstrap_file(cfg->url_file, url) != KCHAT_OK)
        fprintf(stderr, "kchat gateway: cannot write %s: %s\n", cfg->url_file, strerror(errno));
    for (;;) {
        sigwait(&set, &sig);
        if (sig != SIGCHLD) {
            rc = 0;
            break;
        }
        if (procs_reap(pids, n) > 0 || procs_live(pids, n) < n) {
            fprintf(stderr, "kchat gateway: a process ended; stopping the others\n");
            break;
        }
    }
out_stop:
    fprintf(stderr, "kchat gateway: stopping\n");
    if (procs_stop(pids, n) > 0)
        rc = 1;
    close(pipefd[0]);
    return rc;
out_close:
    for (int j = 0; j < n; j++)
        close(fds[j]);
    return 1;
}

static int cmd_gateway(int argc, char **argv)
{
    kchat_config cfg;
    kchat_gateway *gw = NULL;
    char errstr[512] = "";
    sigset_t set;
    int sig = 0, rc;

    if ((rc = parse_config(&cfg, argc, argv, "gateway")) >= 0)
        goto out_release;
    if (cfg.brokers[0] == '\0') {
        fprintf(stderr, "kchat gateway: --brokers is required (or run `kchat dev`)\n");
        rc = 2;
        goto out_release;
    }
    signals_block(&set);
    if (cfg.gateway_processes > 1) {
        rc = gateway_processes(&cfg, &set);
        goto out_release;
    }
    if (kchat_gateway_start(&cfg, cfg.brokers, &gw, errstr, sizeof(errstr)) != KCHAT_OK) {
        fprintf(stderr, "kchat gateway: %s\n", errstr);
        rc = 1;
        goto out_release;
    }
    fprintf(stderr, "kchat gateway: listening on %s, waiting for Kafka at %s\n",
            kchat_gateway_url(gw), cfg.brokers);
    if (!gateway_wait_ready_or_signal(gw, &set))
        goto out_stop;
    gateway_announce(gw, &cfg, "gateway");
    sigwait(&set, &sig);
out_stop:
    fprintf(stderr, "kchat gateway: stopping\n");
    kchat_gateway_stop(gw);
    rc = 0;
out_release:
    kchat_config_release(&cfg);
    return rc;
}

static int cmd_keygen(int argc, char **argv)
{
    char errstr[512] = "";
    int rc;

    if (argc != 3 || argv[2][0] == '-') {
        fprintf(stderr, "usage: kchat keygen FILE\n"
                        "Writes a new deployment secret (64 hex digits) to FILE, which must not "
                        "exist, with mode 0600.\nGive the same FILE to every `kchat serve` and "
                        "`kchat gateway` of the deployment with --secret-file.\n");
        return 2;
    }
    if ((rc = kchat_auth_keygen(argv[2], errstr, sizeof(errstr))) != KCHAT_OK) {
        fprintf(stderr, "kchat keygen: %s\n", errstr[0] ? errstr : kchat_strerror(rc));
        return 1;
    }
    printf("kchat keygen: wrote a deployment secret to %s\n", argv[2]);
    return 0;
}

/* `kchat dev` without --secret-file: DATA/secret, made on the first run.
 * @return 0, or the exit status after saying why on stderr */
static int dev_secret(kchat_config *cfg)
{
    char path[4096], errstr[512] = "", *dup;
    int rc;

    if (cfg->secret_file[0] != '\0')
        return 0;
    if (snprintf(path, sizeof(path), "%s/secret", cfg->data_dir) >= (int)sizeof(path)) {
        fprintf(stderr, "kchat dev: --data is too long\n");
        return 2;
    }
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "kchat dev: cannot make %s: %s\n", cfg->data_dir, strerror(errno));
        return 1;
    }
    rc = kchat_auth_keygen(path, errstr, sizeof(errstr));
    if (rc != KCHAT_OK && rc != KCHAT_EEXIST) {
        fprintf(stderr, "kchat dev: %s\n", errstr);
        return 1;
    }
    if ((dup = strdup(path)) == NULL) {
        fprintf(stderr, "kchat dev: %s\n", kchat_strerror(KCHAT_ENOMEM));
        return 1;
    }
    free(cfg->secret_file);
    cfg->secret_file = dup;
    return 0;
}

static int cmd_dev(int argc, char **argv)
{
    kchat_config cfg;
    kchat_backend *be = NULL;
    kchat_gateway *gw = NULL;
    char errstr[512] = "";
    sigset_t set;
    int sig = 0, rc;

    if ((rc = parse_config(&cfg, argc, argv, "dev")) >= 0 || (rc = dev_secret(&cfg)) > 0)
        goto out_release;
    if (cfg.gateway_processes != 1) {
        fprintf(stderr, "kchat dev: --gateway-processes: `kchat dev` is one process; run "
                        "`kchat gateway --gateway-processes N` beside `kchat serve`\n");
        rc = 2;
        goto out_release;
    }
    signals_block(&set);
    if (kchat_backend_start(&cfg, &be, errstr, sizeof(errstr)) != KCHAT_OK) {
        fprintf(stderr, "kchat dev: %s\n", errstr);
        rc = 1;
        goto out_release;
    }
    if (cfg.brokers[0] == '\0')
        printf("embedded broker: %s\n", kchat_backend_bootstraps(be));
    if (kchat_gateway_start(&cfg, kchat_backend_bootstraps(be), &gw, errstr, sizeof(errstr)) !=
        KCHAT_OK) {
        fprintf(stderr, "kchat dev: %s\n", errstr);
        kchat_backend_stop(be, NULL);
        rc = 1;
        goto out_release;
    }
    kchat_gateway_set_metrics(gw, serve_metrics, be);
    if (kchat_gateway_wait_ready(gw, 60000) != KCHAT_OK) {
        fprintf(stderr, "kchat dev: the gateway did not get ready within 60 s\n");
        kchat_gateway_stop(gw);
        kchat_backend_stop(be, NULL);
        rc = 1;
        goto out_release;
    }
    if (cfg.bootstrap_file[0] &&
        write_bootstrap_file(cfg.bootstrap_file, kchat_backend_bootstraps(be)) != KCHAT_OK)
        fprintf(stderr, "kchat dev: cannot write %s: %s\n", cfg.bootstrap_file, strerror(errno));
    printf("kchat dev: data in %s\n", cfg.data_dir);
    gateway_announce(gw, &cfg, "dev");
    sigwait(&set, &sig);
    fprintf(stderr, "kchat dev: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    kchat_gateway_stop(gw);
    kchat_backend_stop(be, NULL);
    rc = 0;
out_release:
    kchat_config_release(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "serve"))
        return cmd_serve(argc, argv);
    if (!strcmp(argv[1], "broker"))
        return cmd_broker(argc, argv);
    if (!strcmp(argv[1], "gateway"))
        return cmd_gateway(argc, argv);
    if (!strcmp(argv[1], "dev"))
        return cmd_dev(argc, argv);
    if (!strcmp(argv[1], "keygen"))
        return cmd_keygen(argc, argv);
    if (!strcmp(argv[1], "config-doc")) {
        kchat_config_markdown(stdout);
        return 0;
    }
    fprintf(stderr, "kchat: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
