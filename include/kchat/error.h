/**
 * @file error.h
 * @brief kchat's one error enum.
 *
 * Every kchat function that can fail returns an `int`: `KCHAT_OK` (0) on
 * success or one of the negative `KCHAT_E*` codes below. The codes come from
 * one X-macro, which also generates their names and messages, so
 * kchat_strerror() and kchat_errname() can never disagree with the enum.
 *
 * These are the *internal* errors of the process (storage, Kafka, memory).
 * The error codes of the wire protocol (`BAD_REQUEST`, `UNAUTHENTICATED`, …)
 * are a separate enum, `kchat_wire_err` in codec.h, because they are part of
 * the contract with clients rather than of the implementation.
 */
#ifndef KCHAT_ERROR_H
#define KCHAT_ERROR_H

/** X(name, value, message) for every error code. */
#define KCHAT_ERRNO_MAP(X)                                              \
    X(OK,        0,   "success")                                        \
    X(ENOMEM,   -1,   "out of memory")                                  \
    X(EINVAL,   -2,   "invalid argument")                               \
    X(EIO,      -3,   "input/output error")                             \
    X(ESTORE,   -4,   "storage error")                                  \
    X(EMAPFULL, -5,   "storage map is full")                            \
    X(ENOTFOUND,-6,   "not found")                                      \
    X(EEXIST,   -7,   "already exists")                                 \
    X(EKAFKA,   -8,   "Kafka error")                                    \
    X(EDECODE,  -9,   "data does not decode")                           \
    X(ETOOBIG,  -10,  "data too large")                                 \
    X(EFULL,    -11,  "no room left")                                   \
    X(ECONFIG,  -12,  "invalid configuration")                          \
    X(ECRYPTO,  -13,  "cryptographic operation failed")                 \
    X(ETIMEDOUT,-14,  "timed out")                                      \
    X(ESHUTDOWN,-15,  "shutting down")                                  \
    X(ENOSPC,   -16,  "no space left on device")                        \
    X(EUNSYNCED,-17,  "store written without fsync before the machine restarted")

/**
 * Mark a function whose `int` result is a kchat error code: the caller must
 * look at it (gcc and clang warn when a result is dropped; DEVELOPER=1 makes
 * that an error). gcc does not accept a `(void)` cast as looking: a result
 * that may be ignored on purpose goes through kchat_ignore() with a comment
 * saying why.
 */
#define KCHAT_MUST_CHECK __attribute__((warn_unused_result))

/** @brief Drop an error result on purpose (say why beside the call). */
static inline void kchat_ignore(int err) { (void)err; }

/** The error enum. `KCHAT_OK` is 0; every error is negative. */
typedef enum kchat_err {
#define KCHAT__ERR_ENUM(name, value, msg) KCHAT_##name = (value),
    KCHAT_ERRNO_MAP(KCHAT__ERR_ENUM)
#undef KCHAT__ERR_ENUM
} kchat_err;

/**
 * @brief A human-readable English message for an error code.
 * @param[in] err any `int` returned by a kchat function.
 * @return a static string; "unknown error" for a value outside the enum.
 * @note Thread-safe; the string is never freed.
 */
const char *kchat_strerror(int err);

/**
 * @brief The symbolic name of an error code, e.g. "ESTORE".
 * @return a static string; "EUNKNOWN" for a value outside the enum.
 * @note Thread-safe.
 */
const char *kchat_errname(int err);

#endif /* KCHAT_ERROR_H */
