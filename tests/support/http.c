/* A small libcurl HTTP and SSE client for the gateway tests (http.h). */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "kclient.h"

/* Bodies larger than this are cut (a test never expects one). */
#define KH_MAX_BODY (16u * 1024u * 1024u)

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        fprintf(stderr, "http: curl_global_init failed\n");
        abort();
    }
}

static void curl_init(void)
{
    pthread_once(&g_curl_once, curl_init_once);
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d == NULL)
        abort();
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* A growable byte buffer, always NUL-terminated. */
typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* ======================================================================== */
/* Browsers and cookies                                                     */
/* ======================================================================== */

void kh_browser_init(kh_browser *b, const char *name, const char *base)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->name, sizeof(b->name), "%s", name ? name : "browser");
    kh_browser_set_base(b, base);
}

void kh_browser_set_base(kh_browser *b, const char *base)
{
    snprintf(b->base, sizeof(b->base), "%s", base ? base : "");
    size_t l = strlen(b->base);
    while (l > 0 && b->base[l - 1] == '/')
        b->base[--l] = '\0';
}

const char *kh_cookie_get(const kh_browser *b, const char *name)
{
    for (size_t i = 0; i < b->cookie_cnt; i++)
        if (strcmp(b->cookies[i].name, name) == 0)
            return b->cookies[i].value;
    return NULL;
}

void kh_cookie_set(kh_browser *b, const char *name, const char *value)
{
    for (size_t i = 0; i < b->cookie_cnt; i++) {
        if (strcmp(b->cookies[i].name, name) != 0)
            continue;
        if (value == NULL) {
            b->cookies[i] = b->cookies[--b->cookie_cnt];
        } else {
            snprintf(b->cookies[i].value, sizeof(b->cookies[i].value), "%s", value);
        }
        return;
    }
    if (value == NULL || b->cookie_cnt >= KH_MAX_COOKIES)
        return;
    kh_cookie *c = &b->cookies[b->cookie_cnt++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    snprintf(c->value, sizeof(c->value), "%s", value);
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

/* Attribute @p attr of a Set-Cookie value: its value (malloc'd, "" when it has
 * none) or NULL when absent. */
static char *cookie_attr(const char *sc, const char *attr)
{
    const char *p = strchr(sc, ';');
    while (p != NULL) {
        const char *seg = p + 1;
        const char *end = strchr(seg, ';');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        const char *eq = memchr(seg, '=', n);
        const char *nm = seg;
        size_t nn = eq ? (size_t)(eq - seg) : n;
        trim(&nm, &nn);
        if (nn == strlen(attr) && strncasecmp(nm, attr, nn) == 0) {
            if (eq == NULL)
                return xstrndup("", 0);
            const char *v = eq + 1;
            size_t vn = n - (size_t)(v - seg);
            trim(&v, &vn);
            return xstrndup(v, vn);
        }
        p = end;
    }
    return NULL;
}

bool kh_cookie_has_attr(const char *sc, const char *attr, const char *value)
{
    if (sc == NULL)
        return false;
    char *v = cookie_attr(sc, attr);
    bool ok = v != NULL && (value == NULL || strcasecmp(v, value) == 0);
    free(v);
    return ok;
}

/* Name and value of a Set-Cookie value (malloc'd), false when malformed. */
static bool cookie_pair(const char *sc, char **name, char **value)
{
    const char *end = strchr(sc, ';');
    size_t n = end ? (size_t)(end - sc) : strlen(sc);
    const char *eq = memchr(sc, '=', n);
    if (eq == NULL)
        return false;
    const char *nm = sc, *v = eq + 1;
    size_t nn = (size_t)(eq - sc), vn = n - nn - 1;
    trim(&nm, &nn);
    trim(&v, &vn);
    if (vn >= 2 && v[0] == '"' && v[vn - 1] == '"') {
        v++;
        vn -= 2;
    }
    *name = xstrndup(nm, nn);
    *value = xstrndup(v, vn);
    return true;
}

bool kh_cookie_is_clearing(const char *sc)
{
    char *name = NULL, *value = NULL;
    if (sc == NULL || !cookie_pair(sc, &name, &value))
        return false;
    bool clearing = value[0] == '\0';
    char *ma = cookie_attr(sc, "Max-Age");
    if (ma != NULL && ma[0] != '\0' && strtoll(ma, NULL, 10) <= 0)
        clearing = true;
    char *ex = cookie_attr(sc, "Expires");
    if (ex != NULL && ex[0] != '\0') {
        time_t t = curl_getdate(ex, NULL);
        if (t != (time_t)-1 && t < time(NULL))
            clearing = true;
    }
    free(ma);
    free(ex);
    free(name);
    free(value);
    return clearing;
}

static void jar_update(kh_browser *b, const kh_resp *r)
{
    for (size_t i = 0; i < r->header_cnt; i++) {
        if (strcasecmp(r->headers[i].name, "Set-Cookie") != 0)
            continue;
        char *name = NULL, *value = NULL;
        if (!cookie_pair(r->headers[i].value, &name, &value))
            continue;
        kh_cookie_set(b, name, kh_cookie_is_clearing(r->headers[i].value) ? NULL : value);
        free(name);
        free(value);
    }
}

static void cookie_header(const kh_browser *b, buf *out)
{
    for (size_t i = 0; i < b->cookie_cnt; i++) {
        if (i > 0)
            buf_add(out, "; ", 2);
        buf_add(out, b->cookies[i].name, strlen(b->cookies[i].name));
        buf_add(out, "=", 1);
        buf_add(out, b->cookies[i].value, strlen(b->cookies[i].value));
    }
}

/* ======================================================================== */
/* Requests                                                                 */
/* ======================================================================== */

typedef struct req_ctx {
    kh_resp *r;
    buf body;
    size_t hdr_cap;
} req_ctx;

static void headers_clear(kh_resp *r)
{
    for (size_t i = 0; i < r->header_cnt; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    r->header_cnt = 0;
}

static size_t req_header_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    req_ctx *c = ud;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        headers_clear(c->r);        /* a new response (after a 100 Continue) */
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (colon == NULL)
        return n;
    const char *nm = data, *v = colon + 1;
    size_t nn = (size_t)(colon - data), vn = n - nn - 1;
    trim(&nm, &nn);
    trim(&v, &vn);
    if (c->r->header_cnt == c->hdr_cap) {
        c->hdr_cap = c->hdr_cap ? 2 * c->hdr_cap : 16;
        kh_header *h = realloc(c->r->headers, c->hdr_cap * sizeof(*h));
        if (h == NULL)
            abort();
        c->r->headers = h;
    }
    c->r->headers[c->r->header_cnt].name = xstrndup(nm, nn);
    c->r->headers[c->r->header_cnt].value = xstrndup(v, vn);
    c->r->header_cnt++;
    return n;
}

static size_t req_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    req_ctx *c = ud;
    size_t n = size * nmemb;
    if (c->body.len + n > KH_MAX_BODY)
        return 0;
    buf_add(&c->body, data, n);
    return n;
}

kh_resp *kh_request(kh_browser *b, const kh_req *req)
{
    curl_init();
    kh_resp *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    char *json_text = NULL;
    const void *body = NULL;
    size_t body_len = 0;
    bool has_body = false;
    if (req->raw != NULL) {
        body = req->raw;
        body_len = req->raw_len;
        has_body = true;
    } else if (req->json != NULL) {
        json_text = json_dumps(req->json, JSON_COMPACT | JSON_ENCODE_ANY);
        if (json_text == NULL)
            abort();
        body = json_text;
        body_len = strlen(json_text);
        has_body = true;
    } else if (req->empty_body) {
        body = "";
        has_body = true;
    }
    const char *method = req->method ? req->method : (has_body ? "POST" : "GET");
    snprintf(r->what, sizeof(r->what), "%s %s%s (%s)", method, b->base,
             req->path ? req->path : "/", b->name);

    char url[1024];
    snprintf(url, sizeof(url), "%s%s", b->base, req->path ? req->path : "/");
    CURL *h = curl_easy_init();
    if (h == NULL)
        abort();
    req_ctx ctx = { .r = r };
    struct curl_slist *hl = NULL;
    char line[1024];
    /* a browser never sends Expect: 100-continue */
    hl = curl_slist_append(hl, "Expect:");
    const char *ctype = req->ctype;
    if (ctype == NULL)
        ctype = has_body ? "application/json" : "";
    if (ctype[0] != '\0') {
        snprintf(line, sizeof(line), "Content-Type: %s", ctype);
        hl = curl_slist_append(hl, line);
    } else {
        hl = curl_slist_append(hl, "Content-Type:");
    }
    for (size_t i = 0; req->headers != NULL && req->headers[i] != NULL; i++)
        hl = curl_slist_append(hl, req->headers[i]);
    buf cookies = { 0 };
    if (!req->no_cookie && b->cookie_cnt > 0) {
        cookie_header(b, &cookies);
        curl_easy_setopt(h, CURLOPT_COOKIE, cookies.p);
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (has_body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, req_header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &ctx);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, req_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &ctx);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(req->timeout_ms > 0 ? req->timeout_ms
                                                                        : KH_TIMEOUT_MS));
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");

    int64_t t0 = kc_now_ms();
    CURLcode rc = curl_easy_perform(h);
    r->elapsed_ms = kc_now_ms() - t0;
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        snprintf(r->error, sizeof(r->error), "%.100s%s%.140s", curl_easy_strerror(rc),
                 errbuf[0] ? ": " : "", errbuf);
        /* an answer that was fully read before the connection broke still counts */
        r->status = status;
    } else {
        r->status = status;
    }
    r->body = ctx.body.p ? ctx.body.p : xstrndup("", 0);
    r->body_len = ctx.body.len;
    if (r->body_len > 0)
        r->json = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, NULL);
    if (!req->keep_jar)
        jar_update(b, r);
    curl_slist_free_all(hl);
    free(cookies.p);
    curl_easy_cleanup(h);
    free(json_text);
    return r;
}

kh_resp *kh_do(kh_browser *b, const char *method, const char *path, json_t *body)
{
    kh_req req = { .method = method, .path = path, .json = body };
    kh_resp *r = kh_request(b, &req);
    json_decref(body);
    return r;
}

bool kh_metric(const char *base, const char *name, double *value)
{
    kh_browser b;
    size_t nl = strlen(name);

    *value = -1;
    kh_browser_init(&b, "metrics", base);
    kh_resp *r = kh_do(&b, "GET", "/metrics", NULL);
    bool ok = r->status == 200;
    if (!ok)
        kh_resp_dump(r, "metrics");
    for (const char *p = r->body; ok && p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, nl) == 0 && p[nl] == ' ') {
            *value = strtod(p + nl + 1, NULL);
            break;
        }
    kh_resp_free(r);
    return ok;
}

void kh_resp_free(kh_resp *r)
{
    if (r == NULL)
        return;
    headers_clear(r);
    free(r->headers);
    free(r->body);
    json_decref(r->json);
    free(r);
}

const char *kh_header_get(const kh_resp *r, const char *name, size_t nth)
{
    for (size_t i = 0; i < r->header_cnt; i++)
        if (strcasecmp(r->headers[i].name, name) == 0 && nth-- == 0)
            return r->headers[i].value;
    return NULL;
}

size_t kh_header_count(const kh_resp *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->header_cnt; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            n++;
    return n;
}

const char *kh_set_cookie(const kh_resp *r, const char *name)
{
    const char *found = NULL;
    for (size_t i = 0; i < r->header_cnt; i++) {
        if (strcasecmp(r->headers[i].name, "Set-Cookie") != 0)
            continue;
        char *n = NULL, *v = NULL;
        if (cookie_pair(r->headers[i].value, &n, &v) && strcmp(n, name) == 0)
            found = r->headers[i].value;
        free(n);
        free(v);
    }
    return found;
}

void kh_resp_dump(const kh_resp *r, const char *why)
{
    fflush(stdout);
    fprintf(stderr, "---- http: %s\n  %s -> %ld%s%s (%lld ms)\n", why ? why : "", r->what,
            r->status, r->error[0] ? ", " : "", r->error, (long long)r->elapsed_ms);
    for (size_t i = 0; i < r->header_cnt; i++)
        fprintf(stderr, "  < %s: %s\n", r->headers[i].name, r->headers[i].value);
    fprintf(stderr, "  body (%zu bytes): %.*s%s\n", r->body_len,
            (int)(r->body_len > 2000 ? 2000 : r->body_len), r->body,
            r->body_len > 2000 ? "..." : "");
}

bool kh_json_has_key(const json_t *j, const char *key)
{
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            if (strcmp(k, key) == 0 || kh_json_has_key(v, key))
                return true;
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            if (kh_json_has_key(v, key))
                return true;
        }
    }
    return false;
}

/* ======================================================================== */
/* Server-Sent Events                                                       */
/* ======================================================================== */

struct kh_sse {
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_bool stop;

    /* guarded by mu */
    bool headers_done;
    bool ended;
    long status;
    char ctype[128];
    char error[256];
    buf errbody;
    kh_event **events;
    size_t n, cap;
    int64_t *comments;
    size_t comment_n, comment_cap;

    /* reader thread only */
    CURL *h;
    struct curl_slist *hl;
    char errbuf[CURL_ERROR_SIZE];
    char url[1024];
    char *cookie;
    buf line;
    char *cur_event;
    char *cur_id;
    buf cur_data;
    bool cur_has_data;
    bool first_line;
    bool after_cr;
};

static void sse_timedwait(kh_sse *s, int64_t deadline)
{
    int64_t left = deadline - kc_now_ms();
    if (left <= 0)
        return;
    if (left > 200)
        left = 200;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->cv, &s->mu, &ts);
}

static void sse_dispatch(kh_sse *s)
{
    if (!s->cur_has_data) {
        /* per the SSE spec, a block without data is not dispatched */
        free(s->cur_event);
        free(s->cur_id);
        s->cur_event = s->cur_id = NULL;
        s->cur_data.len = 0;
        return;
    }
    kh_event *e = calloc(1, sizeof(*e));
    if (e == NULL)
        abort();
    e->event = s->cur_event ? s->cur_event : xstrndup("message", 7);
    e->id = s->cur_id;
    e->data = xstrndup(s->cur_data.p ? s->cur_data.p : "", s->cur_data.len);
    e->json = json_loads(e->data, JSON_DECODE_ANY, NULL);
    e->at_ms = kc_now_ms();
    s->cur_event = s->cur_id = NULL;
    s->cur_data.len = 0;
    s->cur_has_data = false;
    pthread_mutex_lock(&s->mu);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        kh_event **ev = realloc(s->events, s->cap * sizeof(*ev));
        if (ev == NULL)
            abort();
        s->events = ev;
    }
    e->index = s->n;
    s->events[s->n++] = e;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void sse_line(kh_sse *s, const char *l, size_t n)
{
    if (s->first_line) {
        s->first_line = false;
        if (n >= 3 && memcmp(l, "\xEF\xBB\xBF", 3) == 0) {   /* BOM */
            l += 3;
            n -= 3;
        }
    }
    if (n == 0) {
        sse_dispatch(s);
        return;
    }
    if (l[0] == ':') {
        pthread_mutex_lock(&s->mu);
        if (s->comment_n == s->comment_cap) {
            s->comment_cap = s->comment_cap ? 2 * s->comment_cap : 16;
            int64_t *c = realloc(s->comments, s->comment_cap * sizeof(*c));
            if (c == NULL)
                abort();
            s->comments = c;
        }
        s->comments[s->comment_n++] = kc_now_ms();
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    const char *colon = memchr(l, ':', n);
    size_t fn = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vn = colon ? n - fn - 1 : 0;
    if (vn > 0 && v[0] == ' ') {
        v++;
        vn--;
    }
    if (fn == 5 && memcmp(l, "event", 5) == 0) {
        free(s->cur_event);
        s->cur_event = xstrndup(v, vn);
    } else if (fn == 4 && memcmp(l, "data", 4) == 0) {
        if (s->cur_has_data)
            buf_add(&s->cur_data, "\n", 1);
        buf_add(&s->cur_data, v, vn);
        s->cur_has_data = true;
    } else if (fn == 2 && memcmp(l, "id", 2) == 0) {
        free(s->cur_id);
        s->cur_id = xstrndup(v, vn);
    }
    /* retry and unknown fields are ignored */
}

static size_t sse_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    kh_sse *s = ud;
    size_t n = size * nmemb;
    pthread_mutex_lock(&s->mu);
    long status = s->status;
    if (status != 200) {
        if (s->errbody.len + n <= 1u << 20)
            buf_add(&s->errbody, data, n);
        pthread_mutex_unlock(&s->mu);
        return n;
    }
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        char ch = data[i];
        bool after_cr = s->after_cr;
        s->after_cr = ch == '\r';
        if (ch == '\n' && after_cr)
            continue;       /* "\r\n" is one line end */
        if (ch == '\n' || ch == '\r') {
            sse_line(s, s->line.p ? s->line.p : "", s->line.len);
            s->line.len = 0;
            continue;
        }
        buf_add(&s->line, &ch, 1);
    }
    return n;
}

static size_t sse_header_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    kh_sse *s = ud;
    size_t n = size * nmemb;
    const char *nm = data, *v;
    size_t nn = n;
    trim(&nm, &nn);
    if (nn == 0) {
        long code = 0;
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200) {
            pthread_mutex_lock(&s->mu);
            s->status = code;
            s->headers_done = true;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
        }
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (colon != NULL && (size_t)(colon - data) == 12 && strncasecmp(data, "Content-Type", 12) == 0) {
        v = colon + 1;
        size_t vn = n - 13;
        trim(&v, &vn);
        pthread_mutex_lock(&s->mu);
        snprintf(s->ctype, sizeof(s->ctype), "%.*s", (int)vn, v);
        pthread_mutex_unlock(&s->mu);
    }
    return n;
}

static int sse_progress_cb(void *ud, curl_off_t dlt, curl_off_t dln, curl_off_t ult,
                           curl_off_t uln)
{
    kh_sse *s = ud;
    (void)dlt;
    (void)dln;
    (void)ult;
    (void)uln;
    return atomic_load(&s->stop) ? 1 : 0;
}

static void *sse_main(void *arg)
{
    kh_sse *s = arg;
    CURLcode rc = curl_easy_perform(s->h);
    pthread_mutex_lock(&s->mu);
    s->ended = true;
    if (rc != CURLE_OK && !atomic_load(&s->stop))
        snprintf(s->error, sizeof(s->error), "%.100s%s%.140s", curl_easy_strerror(rc),
                 s->errbuf[0] ? ": " : "", s->errbuf);
    else if (rc == CURLE_OK)
        snprintf(s->error, sizeof(s->error), "the server ended the stream");
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

bool kh_is_chat(const kh_event *e, void *text)
{
    const char *m = e->json ? kc_str(e->json, "message") : NULL;
    return !strcmp(e->event, "chat") && m != NULL && !strcmp(m, text);
}

int kh_sse_chats(kh_sse *s, const char *text)
{
    int n = 0;

    for (size_t i = 0; i < kh_sse_count(s); i++)
        n += kh_is_chat(kh_sse_get(s, i), (void *)text);
    return n;
}

kh_sse *kh_sse_open(const kh_browser *b, const char *path, const char *last_event_id,
                    int timeout_ms)
{
    curl_init();
    kh_sse *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&s->stop, false);
    s->first_line = true;
    snprintf(s->url, sizeof(s->url), "%s%s", b->base, path ? path : "/api/events");

    s->h = curl_easy_init();
    if (s->h == NULL)
        abort();
    char line[1024];
    s->hl = curl_slist_append(s->hl, "Accept: text/event-stream");
    s->hl = curl_slist_append(s->hl, "Cache-Control: no-cache");
    if (last_event_id != NULL) {
        snprintf(line, sizeof(line), "Last-Event-ID: %s", last_event_id);
        s->hl = curl_slist_append(s->hl, line);
    }
    if (b->cookie_cnt > 0) {
        buf c = { 0 };
        cookie_header(b, &c);
        s->cookie = c.p;
        curl_easy_setopt(s->h, CURLOPT_COOKIE, s->cookie);
    }
    curl_easy_setopt(s->h, CURLOPT_URL, s->url);
    curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hl);
    curl_easy_setopt(s->h, CURLOPT_HEADERFUNCTION, sse_header_cb);
    curl_easy_setopt(s->h, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, sse_write_cb);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(s->h, CURLOPT_XFERINFOFUNCTION, sse_progress_cb);
    curl_easy_setopt(s->h, CURLOPT_XFERINFODATA, s);
    curl_easy_setopt(s->h, CURLOPT_ERRORBUFFER, s->errbuf);
    curl_easy_setopt(s->h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(s->h, CURLOPT_PROXY, "");
    curl_easy_setopt(s->h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(s->h, CURLOPT_BUFFERSIZE, 1024L);

    if (pthread_create(&s->thread, NULL, sse_main, s) != 0) {
        snprintf(s->error, sizeof(s->error), "pthread_create: %s", strerror(errno));
        s->ended = true;
        return s;
    }
    s->thread_started = true;
    int64_t deadline = kc_now_ms() + (timeout_ms > 0 ? timeout_ms : KH_TIMEOUT_MS);
    pthread_mutex_lock(&s->mu);
    while (!s->headers_done && !s->ended && kc_now_ms() < deadline)
        sse_timedwait(s, deadline);
    pthread_mutex_unlock(&s->mu);
    return s;
}

long kh_sse_status(kh_sse *s)
{
    pthread_mutex_lock(&s->mu);
    long st = s->status;
    pthread_mutex_unlock(&s->mu);
    return st;
}

const char *kh_sse_ctype(kh_sse *s)
{
    return s->ctype;
}

json_t *kh_sse_error_body(kh_sse *s)
{
    pthread_mutex_lock(&s->mu);
    json_t *j = s->errbody.len ? json_loadb(s->errbody.p, s->errbody.len, 0, NULL) : NULL;
    pthread_mutex_unlock(&s->mu);
    return j;
}

bool kh_sse_ended(kh_sse *s)
{
    pthread_mutex_lock(&s->mu);
    bool e = s->ended;
    pthread_mutex_unlock(&s->mu);
    return e;
}

size_t kh_sse_count(kh_sse *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

const kh_event *kh_sse_get(kh_sse *s, size_t i)
{
    pthread_mutex_lock(&s->mu);
    const kh_event *e = i < s->n ? s->events[i] : NULL;
    pthread_mutex_unlock(&s->mu);
    return e;
}

const kh_event *kh_sse_wait(kh_sse *s, size_t from, kh_event_fn fn, void *arg,
                            int timeout_ms)
{
    int64_t deadline = kc_now_ms() + timeout_ms;
    for (size_t i = from;; i++) {
        pthread_mutex_lock(&s->mu);
        while (i >= s->n && !s->ended && kc_now_ms() < deadline)
            sse_timedwait(s, deadline);
        const kh_event *e = i < s->n ? s->events[i] : NULL;
        pthread_mutex_unlock(&s->mu);
        if (e == NULL)
            return NULL;
        if (fn == NULL || fn(e, arg))
            return e;
    }
}

size_t kh_sse_comments(kh_sse *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->comment_n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int64_t kh_sse_wait_comment(kh_sse *s, int64_t after_ms, int timeout_ms)
{
    int64_t deadline = kc_now_ms() + timeout_ms, found = -1;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (size_t i = 0; i < s->comment_n; i++)
            if (s->comments[i] >= after_ms) {
                found = s->comments[i];
                break;
            }
        if (found >= 0 || s->ended || kc_now_ms() >= deadline)
            break;
        sse_timedwait(s, deadline);
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

void kh_sse_dump(kh_sse *s, const char *why)
{
    fflush(stdout);
    pthread_mutex_lock(&s->mu);
    fprintf(stderr, "---- sse: %s\n  GET %s -> %ld (%s)%s%s%s, %zu events, %zu comments\n",
            why ? why : "", s->url, s->status, s->ctype, s->ended ? ", ended: " : "",
            s->ended ? s->error : "", "", s->n, s->comment_n);
    if (s->errbody.len)
        fprintf(stderr, "  body: %.*s\n", (int)(s->errbody.len > 2000 ? 2000 : s->errbody.len),
                s->errbody.p);
    for (size_t i = 0; i < s->n; i++) {
        const kh_event *e = s->events[i];
        fprintf(stderr, "  [%zu] event=%s id=%s data=%.*s\n", i, e->event,
                e->id ? e->id : "(none)", (int)(strlen(e->data) > 400 ? 400 : strlen(e->data)),
                e->data);
    }
    pthread_mutex_unlock(&s->mu);
}

void kh_sse_close(kh_sse *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stop, true);
    bool joined = true;
    if (s->thread_started) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 5;
        if (pthread_timedjoin_np(s->thread, NULL, &ts) != 0) {
            fprintf(stderr, "http: SSE reader of %s did not stop within 5 s; leaking it\n",
                    s->url);
            pthread_detach(s->thread);
            joined = false;
        }
    }
    if (!joined)
        return;
    curl_easy_cleanup(s->h);
    curl_slist_free_all(s->hl);
    free(s->cookie);
    for (size_t i = 0; i < s->n; i++) {
        kh_event *e = s->events[i];
        free(e->event);
        free(e->id);
        free(e->data);
        json_decref(e->json);
        free(e);
    }
    free(s->events);
    free(s->comments);
    free(s->errbody.p);
    free(s->line.p);
    free(s->cur_event);
    free(s->cur_id);
    free(s->cur_data.p);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

struct kc_proc *kh_dev_start(const char *name, const char *const *extra, char **url)
{
    char dtag[64], utag[64], *data, *urlfile;
    const char *args[32] = {"dev", "--http", "127.0.0.1:0", "--data", NULL, "--url-file", NULL,
                            "--pwhash-ops", "1", "--pwhash-mem", "8192"};
    size_t n = 11;
    kc_proc *p;

    snprintf(dtag, sizeof(dtag), "%s-data", name);
    snprintf(utag, sizeof(utag), "%s.url", name);
    data = kc_tmppath(dtag);
    urlfile = kc_tmppath(utag);
    args[4] = data;
    args[6] = urlfile;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    *url = NULL;
    if ((p = kc_proc_start(name, args, urlfile, 60)) != NULL &&
        (*url = kc_read_file(urlfile, NULL)) != NULL)
        (*url)[strcspn(*url, "\n")] = '\0';
    else if (p != NULL)
        fprintf(stderr, "%s: no URL in %s\n", name, urlfile);
    free(data);
    free(urlfile);
    return p;
}

bool kh_register(kh_browser *b, const char *tag, char *id)
{
    char pw[48];
    kh_resp *r;
    bool ok;

    kc_uid(id, 72, tag);
    kc_new_password(pw, sizeof(pw));
    r = kh_do(b, "POST", "/api/users", json_pack("{s:s, s:s, s:s, s:s}", "userId", id,
                                                 "userPw", pw, "email", "u@example.com",
                                                 "userName", tag));
    ok = r->status == 201;
    if (!ok)
        kh_resp_dump(r, "POST /api/users");
    kh_resp_free(r);
    return ok;
}
