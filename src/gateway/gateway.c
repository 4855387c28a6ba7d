/*
 * The gateway's life cycle (include/kchat/gateway.h): start (libevent, the
 * listening socket, the Kafka clients, the loop and Kafka threads), the loop
 * thread and its three events (hand-off, stop, tick), readiness, and stop.
 * The Kafka side is in kafka.c, the HTTP side in http.c and the files it
 * dispatches to.
 */
#include "gateway/gateway_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/listener.h>
#include <event2/thread.h>
#include <sodium.h>

#include "kchat/error.h"

double kchat__gw_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the loop thread ---- */

/* The queue has items (kchat__gw_push()).
 * @locality loop thread (libevent callback) */
static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kchat__gw_drain(arg);
}

/* kchat_gateway_stop() asks the loop to end: hand over what was queued,
 * answer every call, end every stream, say so on kchat-presence, leave the
 * loop (kchat_gateway_stop() then flushes the producer).
 * @locality loop thread (libevent callback) */
static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    kchat_gateway *gw = arg;

    (void)fd;
    (void)what;
    kchat__gw_drain(gw);
    kchat__gw_shutdown_http(gw);
    kchat__gw_presence_stop(gw);   /* offline for whoever is left, then gone */
    event_base_loopbreak(gw->base);
}

/* Every 2 s: keep-alive comments on idle streams.
 * @locality loop thread (libevent timer callback) */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kchat__gw_streams_tick(arg);
}

/* @locality the loop thread (pthread_create() by kchat_gateway_start()) */
static void *loop_main(void *arg)
{
    kchat_gateway *gw = arg;

    event_base_loop(gw->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* ---- the listening socket ---- */

#define ACCEPT_PAUSE_MS 100

/* Accept connections again after a pause.
 * @locality loop thread (libevent timer callback) */
static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evconnlistener_enable(arg);
}

/* accept() failed (out of descriptors, most likely): pause accepting for
 * ACCEPT_PAUSE_MS instead of retrying at once, and log once a second.
 * @locality loop thread (evconnlistener error callback) */
static void accept_error(struct evconnlistener *lev, void *arg)
{
    static atomic_long last_log;
    struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
    long now = (long)time(NULL);
    int err = EVUTIL_SOCKET_ERROR();

    (void)arg;
    if (atomic_exchange(&last_log, now) != now)
        fprintf(stderr, "kchat gateway: cannot accept connections: %s; pausing accepts for "
                        "%d ms\n", evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS);
    evconnlistener_disable(lev);
    event_base_once(evconnlistener_get_base(lev), -1, EV_TIMEOUT, accept_resume, lev, &pause);
}

/* Raise the descriptor limit to its hard limit and keep the stream cap
 * below it, with room for Kafka sockets, files and ordinary calls.
 * @locality the owner, in kchat_gateway_start() */
static void fit_descriptor_limit(kchat_gateway *gw)
{
    struct rlimit rl;
    long room;

    gw->sse_max_total = gw->cfg->sse_max_total;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    room = rl.rlim_cur == RLIM_INFINITY ? (long)gw->sse_max_total + 512 : (long)rl.rlim_cur;
    room -= 512;
    if (room < 16)
        room = 16;
    if (room < gw->sse_max_total) {
        fprintf(stderr, "kchat gateway: %ld open files allowed: at most %ld event streams "
                        "(not %d)\n", (long)rl.rlim_cur, room, gw->sse_max_total);
        gw->sse_max_total = (int)room;
    }
}

/* Split @p http ("host:port", "[v6]:port", ":port") into @p host (the
 * wildcard for an empty host) and @p port.
 * @return KCHAT_OK; KCHAT_ECONFIG (not host:port).
 * @locality any thread */
static KCHAT_MUST_CHECK int parse_http(const char *http, char host[256], uint16_t *port,
                                       char *errstr, size_t len)
{
    const char *colon = strrchr(http, ':');
    size_t hl;
    long p;
    char *end;

    if (colon == NULL || (size_t)(colon - http) >= 256)
        goto err_form;
    hl = (size_t)(colon - http);
    memcpy(host, http, hl);
    host[hl] = '\0';
    p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || p < 0 || p > 65535)
        goto err_form;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    if (host[0] == '\0')
        snprintf(host, 256, "0.0.0.0");
    *port = (uint16_t)p;
    return KCHAT_OK;
err_form:
    snprintf(errstr, len, "http must be host:port, got \"%s\"", http);
    return KCHAT_ECONFIG;
}

/* Write "http://HOST:PORT/" of listening socket @p fd to @p url (the
 * wildcard shown as 127.0.0.1).
 * @return KCHAT_OK; KCHAT_EIO (getsockname failed).
 * @locality any thread */
static KCHAT_MUST_CHECK int url_of(int fd, char *url, size_t size, char *errstr, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char shown[INET6_ADDRSTRLEN];

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(errstr, len, "getsockname: %s", strerror(errno));
        return KCHAT_EIO;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, shown, sizeof(shown));
        snprintf(url, size, "http://[%s]:%u/", shown, ntohs(s6->sin6_port));
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        if (s4->sin_addr.s_addr == htonl(INADDR_ANY))
            snprintf(shown, sizeof(shown), "127.0.0.1");
        else
            inet_ntop(AF_INET, &s4->sin_addr, shown, sizeof(shown));
        snprintf(url, size, "http://%s:%u/", shown, ntohs(s4->sin_port));
    }
    return KCHAT_OK;
}

/* One listening socket on @p host : @p port, non-blocking and
 * close-on-exec, with SO_REUSEPORT when @p shared (one per process of a
 * gateway that runs as several), in *@p fd. Its backlog is SOMAXCONN, not
 * the 128 evhttp_bind_socket() asks for: a burst of connections (streams
 * reopening after a restart) overflowed that while the loop was busy, and
 * every connection dropped so waited a second for its SYN to be sent again
 * (regression 0059).
 * @return KCHAT_OK; KCHAT_EIO (cannot resolve, bind or listen).
 * @locality any thread */
static KCHAT_MUST_CHECK int listen_socket(const char *host, uint16_t port, bool shared, int *fd,
                                          char *errstr, size_t len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai;
    char service[8];
    int one = 1, s, gai;

    snprintf(service, sizeof(service), "%u", port);
    if ((gai = getaddrinfo(host, service, &hints, &ai)) != 0) {
        snprintf(errstr, len, "cannot resolve %s: %s", host, gai_strerror(gai));
        return KCHAT_EIO;
    }
    s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (s < 0)
        goto err_free;
    if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (shared && setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        bind(s, ai->ai_addr, ai->ai_addrlen) != 0 || listen(s, SOMAXCONN) != 0)
        goto err_close;
    freeaddrinfo(ai);
    *fd = s;
    return KCHAT_OK;
err_close:
    gai = errno;
    close(s);
    errno = gai;
err_free:
    snprintf(errstr, len, "cannot listen on %s:%u: %s", host, port, strerror(errno));
    freeaddrinfo(ai);
    return KCHAT_EIO;
}

/* The port listening socket @p fd is bound to; 0 when unknown.
 * @locality any thread */
static uint16_t bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return 0;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

int kchat_gateway_listen(const char *http, int n, int *fds, char *url, size_t url_size,
                         char *errstr, size_t errstr_size)
{
    char host[256];
    uint16_t port;
    int rc, i;

    if (n < 1) {
        snprintf(errstr, errstr_size, "at least one listening socket");
        return KCHAT_EINVAL;
    }
    if ((rc = parse_http(http, host, &port, errstr, errstr_size)) != KCHAT_OK)
        return rc;
    if ((rc = listen_socket(host, port, true, &fds[0], errstr, errstr_size)) != KCHAT_OK)
        return rc;
    i = 1;
    if ((rc = url_of(fds[0], url, url_size, errstr, errstr_size)) != KCHAT_OK)
        goto err_close;
    if (port == 0 && (port = bound_port(fds[0])) == 0) {   /* the others take its port */
        snprintf(errstr, errstr_size, "getsockname: %s", strerror(errno));
        rc = KCHAT_EIO;
        goto err_close;
    }
    for (; i < n; i++)
        if ((rc = listen_socket(host, port, true, &fds[i], errstr, errstr_size)) != KCHAT_OK)
            goto err_close;
    return KCHAT_OK;
err_close:
    while (i-- > 0)
        close(fds[i]);
    return rc;
}

/* Listen on cfg->http, or on @p listen_fd when the caller made it (taken
 * over: closed on failure), and set gw->url to the address actually bound.
 * @return KCHAT_OK; KCHAT_ECONFIG (not host:port), KCHAT_EIO.
 * @locality the owner, before the loop thread starts */
static KCHAT_MUST_CHECK int bind_http(kchat_gateway *gw, int listen_fd, char *errstr, size_t len)
{
    struct evhttp_bound_socket *bs;
    char host[256];
    uint16_t port;
    int rc;

    if (listen_fd < 0) {
        if ((rc = parse_http(gw->cfg->http, host, &port, errstr, len)) != KCHAT_OK ||
            (rc = listen_socket(host, port, false, &listen_fd, errstr, len)) != KCHAT_OK)
            return rc;
    }
    if ((bs = evhttp_accept_socket_with_handle(gw->http, listen_fd)) == NULL) {
        snprintf(errstr, len, "cannot accept on %s: %s", gw->cfg->http, strerror(errno));
        close(listen_fd);
        return KCHAT_EIO;
    }
    /* Out of descriptors, accept() fails at once and libevent would retry
     * (and log) in a tight loop: pause accepting for a moment instead. */
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(bs), accept_error);
    return url_of(evhttp_bound_socket_get_fd(bs), gw->url, sizeof(gw->url), errstr, len);
}

/* ---- life cycle ---- */

/* libevent's locking, for event_active() from other threads; once per
 * process (pthread_once()). */
static void use_pthreads(void)
{
    evthread_use_pthreads();
}

/* The event base, the HTTP server and the loop's events; false if
 * libevent cannot make one (what was made is left for the stop).
 * @locality the owner, before the loop thread starts */
static bool loop_setup(kchat_gateway *gw)
{
    struct timeval tick = {2, 0};

    if ((gw->base = event_base_new()) == NULL || (gw->http = evhttp_new(gw->base)) == NULL ||
        (gw->notify_ev = event_new(gw->base, -1, 0, notify_cb, gw)) == NULL ||
        (gw->stop_ev = event_new(gw->base, -1, 0, stop_cb, gw)) == NULL ||
        (gw->tick_ev = event_new(gw->base, -1, EV_PERSIST, tick_cb, gw)) == NULL)
        return false;
    event_add(gw->tick_ev, &tick);
    if (kchat__gw_presence_init(gw) != KCHAT_OK)
        return false;
    kchat__gw_http_setup(gw);
    return true;
}

int kchat_gateway_start(const kchat_config *cfg, const char *brokers,
                        kchat_gateway **out, char *errstr, size_t errstr_size)
{
    return kchat_gateway_start_on(cfg, brokers, -1, 0, out, errstr, errstr_size);
}

int kchat_gateway_start_on(const kchat_config *cfg, const char *brokers, int listen_fd,
                           int process, kchat_gateway **out, char *errstr, size_t errstr_size)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    kchat_gateway *gw;
    int rc = KCHAT_ENOMEM, fd;

    *out = NULL;
    pthread_once(&once, use_pthreads);
    if (sodium_init() < 0) {
        snprintf(errstr, errstr_size, "libsodium failed to initialise");
        rc = KCHAT_ECRYPTO;
        goto err_close_fd;
    }
    if ((gw = calloc(1, sizeof(*gw))) == NULL)
        goto err_close_fd;
    gw->cfg = cfg;
    gw->process = process;
    pthread_mutex_init(&gw->lock, NULL);
    pthread_mutex_init(&gw->cu_lock, NULL);
    pthread_cond_init(&gw->ready_cond, NULL);
    gw->next_stream_id = 1;
    if ((gw->brokers = strdup(brokers)) == NULL ||
        (gw->pending = calloc((size_t)cfg->max_pending, sizeof(gw_pending))) == NULL ||
        kchat__gw_catchup_init(gw) != KCHAT_OK)
        goto err_stop;
    gw->n_pending = 0;
    if (cfg->secret_file[0] != '\0' &&
        (rc = kchat_auth_load(cfg->secret_file, &gw->auth, errstr, errstr_size)) != KCHAT_OK)
        goto err_stop;
    if (gw->auth == NULL)
        fprintf(stderr, "kchat gateway: WARNING: no --secret-file: passwords and sessions "
                        "cross Kafka in the clear, and anyone who can write kchat's topics can "
                        "forge answers and events (docs/security.md)\n");
    if ((rc = kchat__gw_guard_new(cfg, &gw->guard, errstr, errstr_size)) != KCHAT_OK)
        goto err_stop;
    rc = KCHAT_ENOMEM;
    snprintf(errstr, errstr_size, "cannot set up libevent");
    if (!loop_setup(gw))
        goto err_stop;
    fit_descriptor_limit(gw);
    if (kchat__gw_streams_init(gw) != KCHAT_OK)
        goto err_stop;
    fd = listen_fd;   /* bind_http() takes it, also when it fails */
    listen_fd = -1;
    if ((rc = bind_http(gw, fd, errstr, errstr_size)) != KCHAT_OK ||
        (rc = kchat__gw_kafka_open(gw, errstr, errstr_size)) != KCHAT_OK)
        goto err_stop;

    rc = KCHAT_ENOMEM;
    snprintf(errstr, errstr_size, "cannot start the gateway threads");
    if (pthread_create(&gw->loop_thread, NULL, loop_main, gw) != 0)
        goto err_stop;
    gw->loop_started = true;
    if (pthread_create(&gw->kafka_thread, NULL, kchat__gw_kafka_main, gw) != 0)
        goto err_stop;
    gw->kafka_started = true;
    errstr[0] = '\0';
    *out = gw;
    return KCHAT_OK;
err_stop:
    kchat_gateway_stop(gw);
err_close_fd:
    if (listen_fd >= 0)
        close(listen_fd);
    return rc;
}

int kchat_gateway_wait_ready(kchat_gateway *gw, int timeout_ms)
{
    struct timespec ts;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (timeout_ms >= 0) {
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&gw->lock);
    while (!atomic_load(&gw->ready) && rc == 0)
        rc = timeout_ms < 0 ? pthread_cond_wait(&gw->ready_cond, &gw->lock)
                            : pthread_cond_timedwait(&gw->ready_cond, &gw->lock, &ts);
    pthread_mutex_unlock(&gw->lock);
    return atomic_load(&gw->ready) ? KCHAT_OK : KCHAT_ETIMEDOUT;
}

const char *kchat_gateway_url(const kchat_gateway *gw)
{
    return gw->url;
}

void kchat_gateway_stop(kchat_gateway *gw)
{
    if (gw == NULL)
        return;
    atomic_store(&gw->stopping, true);
    if (gw->loop_started) {
        event_active(gw->stop_ev, EV_READ, 0);
        pthread_join(gw->loop_thread, NULL);
    }
    if (gw->kafka_started)
        pthread_join(gw->kafka_thread, NULL);
    for (int i = 0; i < 100 && atomic_load(&gw->catchups) > 0; i++)
        usleep(50 * 1000);
    /* Closing the consumer and flushing the producer may run error_cb() and
     * dr_msg_cb() on this thread: a failed delivery is still queued, and
     * freed below with the rest of the queue. */
    if (gw->consumer) {
        rd_kafka_consumer_close(gw->consumer);
        rd_kafka_destroy(gw->consumer);
    }
    if (gw->producer) {
        rd_kafka_flush(gw->producer, 2000);
        rd_kafka_destroy(gw->producer);
    }
    if (atomic_load(&gw->catchups) > 0)
        return; /* a catch-up thread is stuck: leak rather than crash */
    kchat__gw_queue_free(gw);
    kchat__gw_catchup_free(gw);
    if (!gw->loop_started && gw->http)
        kchat__gw_shutdown_http(gw);
    if (gw->http)
        evhttp_free(gw->http);
    kchat__gw_deadline_release(gw);
    kchat__gw_presence_free(gw);
    kchat__gw_streams_free(gw);
    if (gw->notify_ev)
        event_free(gw->notify_ev);
    if (gw->stop_ev)
        event_free(gw->stop_ev);
    if (gw->tick_ev)
        event_free(gw->tick_ev);
    if (gw->base)
        event_base_free(gw->base);
    free(gw->pending);
    kchat__gw_guard_free(gw->guard);
    free(gw->events_next);
    free(gw->brokers);
    kchat_auth_free(gw->auth);
    pthread_mutex_destroy(&gw->lock);
    pthread_mutex_destroy(&gw->cu_lock);
    pthread_cond_destroy(&gw->ready_cond);
    free(gw);
}

void kchat_gateway_set_metrics(kchat_gateway *gw, kchat_metrics_fn fn, void *arg)
{
    atomic_store(&gw->metrics_arg, arg);
    atomic_store(&gw->metrics_fn, fn);
}
