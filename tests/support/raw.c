/* Raw HTTP over a socket for attacker-style tests (raw.h). */
#include "raw.h"

#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "kassert.h"

kc_proc *kr_dev_start(const char *name, const char *const *extra, char *base, size_t size,
                      int *port)
{
    char lbl[64];
    char *url_file, *data, *url;
    const char *args[64] = {"dev", "--http", "127.0.0.1:0", "--pwhash-ops", "1",
                            "--pwhash-mem", "8192", "--url-file", NULL, "--data", NULL};
    size_t n = 11;
    kc_proc *p;

    snprintf(lbl, sizeof(lbl), "%s.url", name);
    url_file = kc_tmppath(lbl);
    snprintf(lbl, sizeof(lbl), "%s-data", name);
    data = kc_tmppath(lbl);
    args[8] = url_file;
    args[10] = data;
    for (size_t i = 0; extra && extra[i] && n < sizeof(args) / sizeof(args[0]) - 1; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    p = kc_proc_start(name, args, url_file, 90);
    url = p ? kc_read_file(url_file, NULL) : NULL;
    if (p && (url == NULL || sscanf(url, "http://127.0.0.1:%d/", port) != 1)) {
        kc_proc_stop(p, SIGTERM, 10, NULL);
        kc_proc_free(p);
        p = NULL;
    }
    if (p) {
        url[strcspn(url, "\n")] = '\0';
        if (url[0] && url[strlen(url) - 1] == '/')
            url[strlen(url) - 1] = '\0';
        snprintf(base, size, "%s", url);
    }
    free(url);
    free(url_file);
    free(data);
    return p;
}

int kr_connect(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval tv = {0, 100000};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

size_t kr_read(int fd, char *out, size_t size, int timeout_ms, bool *closed)
{
    int64_t end = kc_now_ms() + timeout_ms;
    size_t got = 0;

    if (closed)
        *closed = false;
    while (got + 1 < size && kc_now_ms() < end) {
        ssize_t n = recv(fd, out + got, size - 1 - got, 0);
        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            if (closed)
                *closed = true;
            break;
        }
    }
    out[got] = '\0';
    return got;
}

size_t kr_exchange(int port, const char *req, size_t len, char *out, size_t size,
                   int timeout_ms, bool *closed)
{
    int fd = kr_connect(port);
    size_t sent = 0, got;

    out[0] = '\0';
    if (closed)
        *closed = false;
    if (fd < 0)
        return 0;
    while (sent < len) {
        ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    got = kr_read(fd, out, size, timeout_ms, closed);
    close(fd);
    return got;
}

int kr_status(const char *resp)
{
    int code = 0;

    if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1)
        return 0;
    return code;
}

int kr_answers(const char *resp)
{
    int n = 0;

    /* a status line follows the previous answer's body directly */
    for (const char *p = resp; (p = strstr(p, "HTTP/1.")) != NULL; p++)
        n++;
    return n;
}

bool kr_header(const char *resp, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    const char *end = strstr(resp, "\r\n\r\n");

    for (const char *p = strstr(resp, "\r\n"); p && (!end || p < end); p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (!strncasecmp(line, name, nlen) && line[nlen] == ':') {
            const char *v = line + nlen + 1, *e = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            snprintf(out, size, "%.*s", (int)(e ? e - v : (ptrdiff_t)strlen(v)), v);
            return true;
        }
    }
    return false;
}

kh_resp *kr_signup_login(kh_browser *b, kc_user *u, const char *tag, const char *base)
{
    kh_resp *r;

    kc_user_init(u, tag);
    kh_browser_init(b, tag, base);
    r = kh_do(b, "POST", "/api/users",
              json_pack("{ss ss ss ss}", "userId", u->id, "userPw", u->pw, "email", u->email,
                        "userName", u->name));
    if (r->status != 201)
        return r;
    kh_resp_free(r);
    return kh_do(b, "POST", "/api/login", json_pack("{ss ss}", "userId", u->id, "userPw", u->pw));
}

int kr_dev_stop(kc_proc *dev)
{
    bool clean = dev == NULL || kc_proc_stop_clean(dev, 20);

    kc_proc_free(dev);
    return clean ? 0 : -1;
}

void kr_user_new_at(kr_user *u, const char *tag, const char *base, const char *file, int line)
{
    kh_resp *r = kr_signup_login(&u->b, &u->u, tag, base);
    long status = r->status;

    kh_resp_free(r);
    if (status != 200)
        kc_failf_at(file, line, "sign-up and login of %s: %ld", u->u.id, status);
}

void kr_room_of_two_at(kr_user *a, const kr_user *b, char *room, size_t size,
                       const char *file, int line)
{
    kh_browser *ab = &a->b;
    kh_resp *r = kh_do(ab, "POST", "/api/friends", json_pack("{s:[s]}", "friendId", b->u.id));
    long status = r->status;

    kh_resp_free(r);
    if (status != 200)
        kc_failf_at(file, line, "%s adds friend %s: %ld", a->u.id, b->u.id, status);
    r = kh_do(ab, "POST", "/api/rooms", json_pack("{s:[s]}", "friendId", b->u.id));
    status = r->status;
    if (status == 201 && kc_str(r->json, "roomId") != NULL)
        snprintf(room, size, "%s", kc_str(r->json, "roomId"));
    kh_resp_free(r);
    if (status != 201)
        kc_failf_at(file, line, "%s creates a room with %s: %ld", a->u.id, b->u.id, status);
}

void kr_cookie_line(const kh_browser *b, char *out, size_t size)
{
    const char *v = kh_cookie_get(b, "kchat_session");

    if (v)
        snprintf(out, size, "kchat_session=%s", v);
    else if (size)
        out[0] = '\0';
}
