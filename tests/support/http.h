/**
 * @file http.h
 * @brief A small libcurl HTTP and Server-Sent-Events client for testing the
 *        kchat gateway (PROTOCOL.md §8) as a browser would use it.
 *
 *  - **Browsers** (`kh_browser`): a base URL plus a cookie jar. Every response's
 *    `Set-Cookie` headers update the jar (a cookie with `Max-Age<=0`, an
 *    `Expires` in the past or an empty value is removed), and every request
 *    sends the jar's cookies, as one browser profile would. Copy the struct to
 *    give a second "tab" the same cookies, or change `base` to talk to another
 *    gateway with the same cookies.
 *  - **Requests** (`kh_request`, `kh_do`): any method, path, JSON or raw body,
 *    any Content-Type (or none); the answer's status, headers, raw body and
 *    the body decoded as JSON. Every call is bounded (default 15 s).
 *  - **SSE** (`kh_sse_*`): `GET /api/events` read by a background thread that
 *    parses the stream (event, id, data, comment lines) into an append-only
 *    list; waiting functions scan it with a bound.
 *
 * Every function prints nothing on success; on a transport error the
 * response's `status` is 0 and `error` says why.
 */
#ifndef KCHAT_TESTS_HTTP_H
#define KCHAT_TESTS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/** Default bound of one request. */
#define KH_TIMEOUT_MS 15000
/** Cookies a jar holds at most. */
#define KH_MAX_COOKIES 8

/** One cookie of a jar. */
typedef struct kh_cookie {
    char name[64];
    char value[512];
} kh_cookie;

/** A simulated browser profile: where it talks to and its cookies. */
typedef struct kh_browser {
    char name[32];                    /**< label for diagnostics */
    char base[256];                   /**< e.g. `http://127.0.0.1:4123` (no trailing slash) */
    kh_cookie cookies[KH_MAX_COOKIES];
    size_t cookie_cnt;
} kh_browser;

/** @brief An empty jar talking to @p base (a trailing '/' is dropped). */
void kh_browser_init(kh_browser *b, const char *name, const char *base);

/** @brief Point @p b at another gateway, keeping its cookies. */
void kh_browser_set_base(kh_browser *b, const char *base);

/** @brief Value of cookie @p name in the jar, or NULL. */
const char *kh_cookie_get(const kh_browser *b, const char *name);

/** @brief Set (or, with @p value NULL, remove) a cookie in the jar. */
void kh_cookie_set(kh_browser *b, const char *name, const char *value);

/** One response header. */
typedef struct kh_header {
    char *name;
    char *value;
} kh_header;

/** A request for kh_request(). Zero-initialise, then set what you need. */
typedef struct kh_req {
    const char *method;            /**< NULL: "GET", or "POST" when a body is set */
    const char *path;              /**< appended to the browser's base, e.g. "/api/users" */
    const json_t *json;            /**< body: this value as compact JSON */
    const void *raw;               /**< body: these bytes verbatim (wins over @c json) */
    size_t raw_len;
    bool empty_body;               /**< send a zero-length body */
    const char *ctype;             /**< Content-Type; NULL: application/json when there is a
                                        body, none otherwise; "": send no Content-Type at all */
    const char *const *headers;    /**< extra header lines ("Name: value"), NULL-terminated */
    bool no_cookie;                /**< send no cookie at all */
    bool keep_jar;                 /**< do not update the jar from the answer */
    int timeout_ms;                /**< 0: KH_TIMEOUT_MS */
} kh_req;

/** An answer. */
typedef struct kh_resp {
    long status;                   /**< HTTP status; 0 when the transfer failed */
    char error[256];               /**< why the transfer failed ("" otherwise) */
    kh_header *headers;            /**< headers of the final response, in order */
    size_t header_cnt;
    char *body;                    /**< NUL-terminated copy of the body */
    size_t body_len;
    json_t *json;                  /**< the body decoded as JSON, NULL when it is not JSON */
    int64_t elapsed_ms;            /**< wall time of the call */
    char what[320];                /**< "METHOD path" for diagnostics */
} kh_resp;

/** @brief Make a request; never NULL. Free with kh_resp_free(). */
kh_resp *kh_request(kh_browser *b, const kh_req *req);

/**
 * @brief Shorthand: @p method @p path with body @p body (stolen; NULL = no
 *        body) as `application/json`.
 */
kh_resp *kh_do(kh_browser *b, const char *method, const char *path, json_t *body);

void kh_resp_free(kh_resp *r);

/**
 * @brief Sample @p name of `GET @p base/metrics` (a line `name value`).
 * @param[out] value the value, -1 when the page has no such line.
 * @return false (after kh_resp_dump()) when the page was not answered 200.
 */
bool kh_metric(const char *base, const char *name, double *value);

/** @brief Value of the @p nth (0-based) header @p name (any case), or NULL. */
const char *kh_header_get(const kh_resp *r, const char *name, size_t nth);

/** @brief How many headers called @p name (any case) the answer has. */
size_t kh_header_count(const kh_resp *r, const char *name);

/**
 * @brief The `Set-Cookie` header of the answer that sets cookie @p name, or
 *        NULL. (The last one when there are several.)
 */
const char *kh_set_cookie(const kh_resp *r, const char *name);

/**
 * @brief Whether the `Set-Cookie` value @p sc carries attribute @p attr
 *        (case-insensitive name; with a value when @p value is non-NULL,
 *        compared case-insensitively).
 */
bool kh_cookie_has_attr(const char *sc, const char *attr, const char *value);

/**
 * @brief Whether the `Set-Cookie` value @p sc deletes its cookie: an empty
 *        value, `Max-Age` <= 0, or an `Expires` date in the past.
 */
bool kh_cookie_is_clearing(const char *sc);

/** @brief Print an answer (what, status, headers, body) to stderr. */
void kh_resp_dump(const kh_resp *r, const char *why);

/* ------------------------------------------------------------------------ */
/** @name Server-Sent Events                                                 */
/* ------------------------------------------------------------------------ */

/** One dispatched event. Immutable once listed. */
typedef struct kh_event {
    char *event;        /**< the `event:` field, "message" when there was none */
    char *id;           /**< the `id:` field of this very event, NULL when it had none */
    char *data;         /**< the `data:` lines joined with '\n' */
    json_t *json;       /**< @c data decoded as JSON, or NULL */
    int64_t at_ms;      /**< kc_now_ms() when it was dispatched */
    size_t index;       /**< position in the stream's list */
} kh_event;

/** An open event stream (opaque). */
typedef struct kh_sse kh_sse;

/**
 * @brief `GET path` (normally "/api/events") with the browser's cookies and,
 *        when @p last_event_id is non-NULL, a `Last-Event-ID` header; a
 *        thread reads the stream until kh_sse_close().
 *
 * Returns once the response headers arrived, the transfer failed, or
 * @p timeout_ms passed; see kh_sse_status(). Never NULL.
 */
kh_sse *kh_sse_open(const kh_browser *b, const char *path, const char *last_event_id,
                    int timeout_ms);

/** @brief The status of the answer, 0 while unknown or after a transport error. */
long kh_sse_status(kh_sse *s);

/** @brief The Content-Type of the answer ("" while unknown). Static per stream. */
const char *kh_sse_ctype(kh_sse *s);

/** @brief The body of a non-200 answer so far, decoded as JSON (new ref) or NULL. */
json_t *kh_sse_error_body(kh_sse *s);

/** @brief Whether the transfer has ended (server closed it or it failed). */
bool kh_sse_ended(kh_sse *s);

/** @brief Events dispatched so far. */
size_t kh_sse_count(kh_sse *s);

/** @brief Event number @p i (< kh_sse_count()); the pointer stays valid until close. */
const kh_event *kh_sse_get(kh_sse *s, size_t i);

/** @brief An event predicate; runs without any lock held. */
typedef bool (*kh_event_fn)(const kh_event *e, void *arg);

/**
 * @brief Wait up to @p timeout_ms for an event with index >= @p from that
 *        satisfies @p fn (NULL: any event).
 * @return the event, or NULL on timeout (or when the stream ended first).
 */
const kh_event *kh_sse_wait(kh_sse *s, size_t from, kh_event_fn fn, void *arg,
                            int timeout_ms);

/** @brief kh_event_fn: a `chat` event whose `message` is @p text (a
 *         const char *). */
bool kh_is_chat(const kh_event *e, void *text);

/** @brief How many `chat` events of @p s so far carry message @p text. */
int kh_sse_chats(kh_sse *s, const char *text);

/** @brief Comment lines (starting with ':') seen so far. */
size_t kh_sse_comments(kh_sse *s);

/**
 * @brief Wait up to @p timeout_ms for a comment line that arrives at or after
 *        kc_now_ms() time @p after_ms.
 * @return the arrival time (kc_now_ms() scale), or -1 on timeout.
 */
int64_t kh_sse_wait_comment(kh_sse *s, int64_t after_ms, int timeout_ms);

/** @brief Print the stream's state and every event to stderr. */
void kh_sse_dump(kh_sse *s, const char *why);

/** @brief Stop the reader thread (bounded: about 1 s), close and free. NULL is fine. */
void kh_sse_close(kh_sse *s);

/** @brief Whether @p j (any depth) has an object key called @p key. */
bool kh_json_has_key(const json_t *j, const char *key);

/**
 * @brief Start `kchat dev` on 127.0.0.1 (a port of its choosing) with a
 *   fresh data directory under kc_tmpdir() and cheap password hashing, plus
 *   the arguments @p extra (NULL-terminated, or NULL), and wait (60 s) for
 *   the URL it serves.
 * @param[out] url its base URL, e.g. "http://127.0.0.1:PORT" (malloc'd).
 * @return the process (stop it with kc_proc_stop(), free it with
 *   kc_proc_free()), or NULL after a diagnostic.
 */
struct kc_proc *kh_dev_start(const char *name, const char *const *extra, char **url);

/**
 * @brief Register a new user (id from @p tag, kc_uid()) with POST
 *   /api/users through @p b; its id in @p id (size >= 72).
 * @return true when the answer was 201 (else after kh_resp_dump()).
 */
bool kh_register(kh_browser *b, const char *tag, char *id);

#endif /* KCHAT_TESTS_HTTP_H */
