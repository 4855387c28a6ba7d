/*
 * Raw HTTP over a socket, as an attacker writes it: the bytes go to the
 * gateway exactly as given (no client library fixing framing or headers),
 * and the answer is read as the bytes that come back until the gateway closes
 * the connection or a time limit passes. Also a `kchat dev` starter for
 * these tests. Every call is bounded in time; all on 127.0.0.1.
 */
#ifndef KCHAT_TESTS_RAW_H
#define KCHAT_TESTS_RAW_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"
#include "kclient.h"

/**
 * @brief Start `kchat dev` on 127.0.0.1:0 with a fresh data directory, the
 *        cheap password hash and the NULL-terminated @p extra arguments
 *        (may be NULL).
 * @param[out] base its URL without the trailing '/', @p size bytes.
 * @param[out] port its port.
 * @return the process (stop with kc_proc_stop(), free with kc_proc_free()),
 *         or NULL if it did not start within 90 s.
 */
kc_proc *kr_dev_start(const char *name, const char *const *extra, char *base, size_t size,
                      int *port);

/** @brief A socket connected to 127.0.0.1:@p port with a 100 ms receive
 *         timeout, or -1. The caller closes it. */
int kr_connect(int port);

/**
 * @brief Read from @p fd into @p out (NUL-terminated, at most @p size - 1
 *        bytes) until the peer closes or @p timeout_ms pass.
 * @return the bytes read; *closed (may be NULL): the peer closed (EOF or
 *         reset).
 */
size_t kr_read(int fd, char *out, size_t size, int timeout_ms, bool *closed);

/**
 * @brief Connect, send @p len bytes of @p req, then kr_read() into @p out.
 * @return the bytes read; 0 also when the connection failed.
 */
size_t kr_exchange(int port, const char *req, size_t len, char *out, size_t size,
                   int timeout_ms, bool *closed);

/** @brief The status of the first answer in @p resp ("HTTP/1.1 NNN"), or 0. */
int kr_status(const char *resp);

/** @brief How many answers @p resp holds (status lines "HTTP/1.": the
 *         bodies must not hold that text). */
int kr_answers(const char *resp);

/** @brief The value of header @p name of the first answer in @p resp
 *         (case-insensitive name), copied into @p out; false if absent. */
bool kr_header(const char *resp, const char *name, char *out, size_t size);

/**
 * @brief A new user @p u (kc_user_init(@p tag)) signed up and logged in
 *        through @p b (kh_browser_init() on @p base first).
 * @return the login's answer (free it), its status 200 on success.
 */
kh_resp *kr_signup_login(kh_browser *b, kc_user *u, const char *tag, const char *base);

/** @brief Stop @p dev (from kr_dev_start(); NULL is fine) with
 *         kc_proc_stop_clean() within 20 s and free it.
 *  @return 0 when it stopped cleanly, -1 otherwise: a cmocka group
 *          teardown's result. */
int kr_dev_stop(kc_proc *dev);

/** A browser and the user signed up and logged in through it. */
typedef struct kr_user {
    kh_browser b;
    kc_user u;
} kr_user;

/** @brief Sign up and log in a new user (id from @p tag) on @p base;
 *         fails the test unless the login is 200, naming @p file and
 *         @p line (the caller's, through kr_user_new()). Test thread. */
void kr_user_new_at(kr_user *u, const char *tag, const char *base, const char *file, int line);
#define kr_user_new(u, tag, base) kr_user_new_at((u), (tag), (base), __FILE__, __LINE__)

/** @brief Through the HTTP API: @p a adds @p b as a friend and creates a
 *         room with @p b; its id into @p room. Fails the test unless both
 *         answer as they should, naming the caller's @p file and @p line
 *         (through kr_room_of_two()). Test thread. */
void kr_room_of_two_at(kr_user *a, const kr_user *b, char *room, size_t size,
                       const char *file, int line);
#define kr_room_of_two(a, b, room, size) \
    kr_room_of_two_at((a), (b), (room), (size), __FILE__, __LINE__)

/** @brief "kchat_session=VALUE" of @p b's jar into @p out ("" if none). */
void kr_cookie_line(const kh_browser *b, char *out, size_t size);

#endif
