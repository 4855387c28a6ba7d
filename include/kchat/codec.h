/**
 * @file codec.h
 * @brief Wire codec: PROTOCOL.md bodies from bytes to values and back.
 *
 * The codec is pure: bytes in, structs out. It knows the protocol's
 * operations, topics, error codes, field names and limits (PROTOCOL.md
 * sections 1 to 3 and 5), and nothing about Kafka, LMDB or sessions.
 *
 * Three layers, each usable alone:
 *  - **Names**: operations and their topics, wire error codes, content types.
 *  - **Values**: kchat_codec_decode() and kchat_codec_encode() turn a JSON
 *    document or a msgpack object into a jansson value (`json_t`) and back.
 *    Both formats map onto the same value model, so an actor builds one
 *    `json_t` response and encodes it in whatever format the request used.
 *  - **Requests**: kchat_request_parse() decodes and fully validates one
 *    request body into a flat, fixed-size #kchat_request.
 *
 * @section codec_values The value model
 * A decoded value is any JSON value: object, array, string, integer, real,
 * true, false or null. msgpack maps onto it as follows:
 *
 * | msgpack              | jansson     |
 * | -------------------- | ----------- |
 * | str                  | string      |
 * | positive/negative int| integer     |
 * | float 32/64          | real        |
 * | true/false           | true/false  |
 * | nil                  | null        |
 * | array                | array       |
 * | map with str keys    | object      |
 *
 * Both decoders reject, with #KCHAT_EDECODE:
 *  - malformed or truncated input, and any bytes after the one value;
 *  - a string or map key that is not strict UTF-8 (kchat_utf8_valid()),
 *    or that holds U+0000 (raw in msgpack, `\u0000` in JSON);
 *  - containers nested deeper than #KCHAT_MAX_DEPTH;
 *  - an object with the same key twice (two readers of one body must never
 *    disagree on which value counts);
 *  - an integer outside int64 (JSON digits too large, msgpack uint64 above
 *    INT64_MAX);
 *  - msgpack only: bin and ext objects, the reserved byte 0xc1, map keys that
 *    are not str, and floats that are NaN or infinite (JSON cannot hold them).
 *
 * @section codec_caveats Caveats
 *  - Every function here is thread-safe: the codec has no state. It uses
 *    jansson, whose values must not be shared between threads without a lock
 *    while anyone modifies them (reference counts are not atomic in every
 *    build).
 *  - The codec allocates with malloc() (buffers handed to the caller) and
 *    through jansson's allocator (values).
 *  - msgpack is decoded by the codec itself, not by msgpack-c's unpacker:
 *    that unpacker allocates room for every element an array header claims
 *    before reading one, so the 5-byte record `dd ff ff ff ff` makes it ask
 *    for 128 GiB (an abort under AddressSanitizer). Encoding uses
 *    msgpack-c's packer.
 */
#ifndef KCHAT_CODEC_H
#define KCHAT_CODEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kchat/error.h"

/** @name Limits (PROTOCOL.md section 2)
 * @{ */
/** Largest record value, in bytes, that kchat_request_parse() accepts. */
#define KCHAT_MAX_VALUE (64 * 1024)
/** Most distinct ids in a `friendId` list. */
#define KCHAT_MAX_FRIENDS 100
/** Deepest container nesting the codec decodes or encodes; a top-level
 *  object or array is depth 1. */
#define KCHAT_MAX_DEPTH 32
/** @} */

/* ------------------------------------------------------------------------ */
/** @name Names
 * @{ */

/** Body encoding of a record, chosen by its `content-type` header. */
typedef enum kchat_fmt {
    KCHAT_FMT_JSON = 0,    /**< `application/json`, the default */
    KCHAT_FMT_MSGPACK = 1  /**< `application/msgpack` */
} kchat_fmt;

/** Error codes of the wire protocol (PROTOCOL.md section 5). */
typedef enum kchat_wire_err {
    KCHAT_WIRE_OK = 0,           /**< success: `errorCode` is "" */
    KCHAT_WIRE_BAD_REQUEST,      /**< the body breaks section 2 or 3 */
    KCHAT_WIRE_UNAUTHENTICATED,  /**< missing, unknown or revoked session */
    KCHAT_WIRE_BAD_CREDENTIALS,  /**< unknown user or wrong password */
    KCHAT_WIRE_ALREADY_EXISTS,   /**< user id taken */
    KCHAT_WIRE_USER_NOT_FOUND,   /**< no such user */
    KCHAT_WIRE_NOT_A_FRIEND,     /**< room participant is no friend */
    KCHAT_WIRE_ROOM_NOT_FOUND,   /**< no such room */
    KCHAT_WIRE_NOT_A_MEMBER,     /**< writer or reader not in the room */
    KCHAT_WIRE_TOO_LARGE,        /**< record value over #KCHAT_MAX_VALUE */
    KCHAT_WIRE_INTERNAL          /**< the server failed */
} kchat_wire_err;

/**
 * @brief The protocol name of a wire error code, for the `errorCode` field.
 * @param[in] e a wire error code.
 * @return a static string: "" for #KCHAT_WIRE_OK, "BAD_REQUEST" for
 *         #KCHAT_WIRE_BAD_REQUEST and so on; "INTERNAL" for a value outside
 *         the enum, so a response always carries a code clients know.
 * @note The string is never freed.
 * @locality any thread
 */
const char *kchat_wire_err_name(kchat_wire_err e);

/** The ten operations, in the order of PROTOCOL.md section 3, rows 1 to 10. */
typedef enum kchat_op {
    KCHAT_OP_USER_ADD = 0,   /**< user-add */
    KCHAT_OP_LOGIN,          /**< login */
    KCHAT_OP_LOGOUT,         /**< logout */
    KCHAT_OP_STATUS,         /**< user-status-change */
    KCHAT_OP_ADD_FRIEND,     /**< user-add-friend */
    KCHAT_OP_SEARCH_FRIEND,  /**< user-search-friend */
    KCHAT_OP_ADD_ROOM,       /**< user-add-room */
    KCHAT_OP_SEARCH_ROOM,    /**< user-search-room */
    KCHAT_OP_ADD_CHAT,       /**< user-add-chat */
    KCHAT_OP_HISTORY,        /**< room-history */
    KCHAT_OP_ROOM_READ,      /**< room-read (v1.1) */
    KCHAT_OP_ROOM_INVITE,    /**< room-invite (v1.1) */
    KCHAT_OP_ROOM_LEAVE,     /**< room-leave (v1.1) */
    KCHAT_OP__COUNT          /**< number of operations, not an operation */
} kchat_op;

/**
 * @brief The request topic of an operation in this process's deployment,
 *        e.g. "user-add-request" (include/kchat/deployment.h).
 * @param[in] op an operation.
 * @return a static string, or NULL if @p op is outside the enum.
 * @locality any thread
 */
const char *kchat_op_request_topic(kchat_op op);

/**
 * @brief The response topic of an operation in this process's deployment,
 *        e.g. "user-add-response".
 * @param[in] op an operation.
 * @return a static string, or NULL if @p op is outside the enum.
 * @locality any thread
 */
const char *kchat_op_response_topic(kchat_op op);

/**
 * @brief The operation whose request topic (in this process's deployment)
 *        is @p topic.
 * @param[in] topic a NUL-terminated topic name; compared exactly
 *            (case-sensitive, as Kafka topic names are).
 * @param[out] out the operation; untouched on error.
 * @return #KCHAT_OK, or #KCHAT_ENOTFOUND if @p topic is NULL or no request
 *         topic (a response topic is not one), or #KCHAT_EINVAL if @p out
 *         is NULL.
 * @locality any thread
 */
KCHAT_MUST_CHECK
int kchat_op_from_request_topic(const char *topic, kchat_op *out);

/**
 * @brief The body format named by a `content-type` header value.
 *
 * The media type is matched case-insensitively after trimming spaces and
 * tabs; parameters after a `;` (such as `; charset=utf-8`) are ignored.
 * Accepted: `application/json`, `application/msgpack` and
 * `application/x-msgpack`. A missing header (@p ct NULL or @p len 0) or one
 * holding only blanks means JSON, the protocol's default.
 *
 * @param[in] ct the header value; need not be NUL-terminated.
 * @param[in] len its length in bytes.
 * @param[out] out the format; untouched on error.
 * @return #KCHAT_OK, #KCHAT_EDECODE for any other media type, or
 *         #KCHAT_EINVAL if @p out is NULL.
 * @locality any thread
 */
KCHAT_MUST_CHECK
int kchat_fmt_from_content_type(const void *ct, size_t len, kchat_fmt *out);

/**
 * @brief The `content-type` header value for a format.
 * @return "application/json" or "application/msgpack" (a static string), or
 *         NULL if @p f is outside the enum.
 * @locality any thread
 */
const char *kchat_fmt_content_type(kchat_fmt f);

/** @} */
/* ------------------------------------------------------------------------ */
/** @name Values
 * @{ */

/**
 * @brief Decode one JSON or msgpack value.
 *
 * The whole buffer must be exactly one value (JSON allows whitespace around
 * it). See @ref codec_values for what is rejected.
 *
 * @param[in] f the format of @p buf.
 * @param[in] buf the bytes; never read past @p len, need not be
 *            NUL-terminated, may be NULL when @p len is 0.
 * @param[in] len the number of bytes.
 * @param[out] out on success, a new reference to the value; set to NULL on
 *             error.
 * @return
 *  - #KCHAT_OK;
 *  - #KCHAT_EDECODE if the bytes are not one acceptable value (an empty
 *    buffer included);
 *  - #KCHAT_ENOMEM if an allocation failed;
 *  - #KCHAT_EINVAL if @p f is unknown, @p out is NULL, or @p buf is NULL
 *    with a non-zero @p len.
 * @note The caller owns the value and releases it with json_decref().
 *       Recursion is bounded by #KCHAT_MAX_DEPTH for msgpack; jansson's
 *       JSON parser bounds its own at 2048 levels before the codec's depth
 *       check runs.
 * @locality any thread
 */
KCHAT_MUST_CHECK
int kchat_codec_decode(kchat_fmt f, const void *buf, size_t len, json_t **out);

/**
 * @brief Encode a value as compact JSON or as msgpack.
 *
 * JSON output is compact (no spaces), UTF-8, with non-ASCII characters
 * written as themselves, reals with 17 significant digits (exact round
 * trip), and object keys in insertion order. msgpack output uses the
 * smallest encoding of each map, array, str and int; every real is a
 * float 64.
 *
 * Anything this function produces, kchat_codec_decode() accepts in the same
 * format and returns as a value equal (json_equal()) to @p v. To keep that
 * promise it refuses, with #KCHAT_EINVAL, a value nested deeper than
 * #KCHAT_MAX_DEPTH (a cycle counts as infinitely deep) and a string or key
 * that is not UTF-8 or holds U+0000 (jansson's `_nocheck` setters allow
 * both).
 *
 * @param[in] f the output format.
 * @param[in] v the value; not modified, its reference is not taken.
 * @param[out] out on success, a malloc()ed buffer of @p *out_len bytes
 *             (not NUL-terminated); set to NULL on error.
 * @param[out] out_len the number of bytes in @p *out; 0 on error.
 * @return #KCHAT_OK, #KCHAT_ENOMEM, or #KCHAT_EINVAL (unknown @p f, a NULL
 *         argument, or a value refused above).
 * @note The caller owns @p *out and releases it with free().
 * @locality any thread, as long as no other thread modifies @p v meanwhile
 */
KCHAT_MUST_CHECK
int kchat_codec_encode(kchat_fmt f, const json_t *v, char **out, size_t *out_len);

/**
 * @brief Append a string member to an encoded object: from @p enc, the
 *   encoding of an object by kchat_codec_encode() in format @p f, make the
 *   encoding of that object with @p key = @p value added after its last
 *   member, byte for byte what kchat_codec_encode() gives for it. One
 *   event is so encoded once for all its recipients, each copy naming its
 *   own (src/actors/reply.c).
 *
 * @param[in] enc, len the object's encoding; only its first and last bytes
 *            are looked at (it is trusted to come from kchat_codec_encode();
 *            @p key must not be one of its members already).
 * @param[out] out on success a malloc()ed buffer of @p *out_len bytes.
 * @return #KCHAT_OK, #KCHAT_ENOMEM, or #KCHAT_EINVAL (@p enc does not
 *         begin and end as an object does in @p f, an object of 2^32 - 1
 *         members already, or @p key or @p value refused as by
 *         kchat_codec_encode()).
 * @note The caller owns @p *out and releases it with free().
 * @locality any thread
 */
KCHAT_MUST_CHECK
int kchat_codec_add_member(kchat_fmt f, const char *enc, size_t len, const char *key,
                           const char *value, char **out, size_t *out_len);

/**
 * @brief Append a member given as JSON text to an encoded object: from
 *   @p enc, the encoding of an object by kchat_codec_encode() in format
 *   @p f, make the encoding of that object with @p key = the value of
 *   @p json added after its last member. A room-history answer so carries
 *   its stored messages without decoding them (src/actors/chat.c).
 *
 * In JSON the text is put in as it is: it is trusted to be one compact JSON
 * value as kchat writes them (kchat_codec_encode(), or jansson's
 * `JSON_COMPACT` dump), and is not checked beyond being non-empty. In
 * msgpack it is decoded (kchat_codec_decode()) and encoded, so a text that
 * does not decode is refused there.
 *
 * @param[in] enc, len the object's encoding; only its first and last bytes
 *            are looked at, as by kchat_codec_add_member().
 * @param[in] key the new member's name (not one of the object's already).
 * @param[in] json, json_len the new member's value as JSON text.
 * @param[out] out on success a malloc()ed buffer of @p *out_len bytes.
 * @return #KCHAT_OK, #KCHAT_ENOMEM, #KCHAT_EINVAL (@p enc does not begin
 *         and end as an object does in @p f, an empty @p json, a @p key
 *         refused as by kchat_codec_encode(), or an unknown @p f), or in
 *         msgpack #KCHAT_EDECODE (@p json does not decode).
 * @note The caller owns @p *out and releases it with free().
 * @locality any thread
 */
KCHAT_MUST_CHECK
int kchat_codec_add_json_member(kchat_fmt f, const char *enc, size_t len, const char *key,
                                const char *json, size_t json_len, char **out,
                                size_t *out_len);

/** @} */
/* ------------------------------------------------------------------------ */
/** @name Text helpers
 * @{ */

/**
 * @brief Whether @p s is a protocol id: 1 to 64 bytes of `[A-Za-z0-9_.-]`.
 *
 * Applies to `userId`, `writerId`, `roomId` and each `friendId`.
 * @param[in] s the bytes; need not be NUL-terminated; NULL gives false.
 * @param[in] len their number.
 * @locality any thread
 */
bool kchat_valid_id(const void *s, size_t len);

/**
 * @brief Whether @p s is strict UTF-8.
 *
 * Strict per the Unicode Standard's table 3-7 (well-formed UTF-8 byte
 * sequences): no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence. U+0000
 * is valid UTF-8 and accepted here; the decoders reject it separately.
 * @param[in] s the bytes; may be NULL when @p len is 0 (the empty string is
 *            valid); NULL with a non-zero @p len gives false.
 * @param[in] len their number.
 * @locality any thread
 */
bool kchat_utf8_valid(const void *s, size_t len);

/**
 * @brief Format a time as ISO-8601 UTC with milliseconds.
 *
 * Writes e.g. "2026-11-23T06:00:00.123Z": always 24 characters and a NUL.
 * Times before 0000-01-01T00:00:00.000Z or after 9999-12-31T23:59:59.999Z
 * are clamped to those bounds so the width never changes. Uses the
 * proleptic Gregorian calendar; no leap seconds, no time-zone database.
 * @param[in] unix_ms milliseconds since 1970-01-01T00:00:00Z; may be
 *            negative.
 * @param[out] out at least 25 bytes.
 * @locality any thread (no gmtime(), no locale)
 */
void kchat_iso8601(int64_t unix_ms, char out[25]);

/** @} */
/* ------------------------------------------------------------------------ */
/** @name Requests
 * @{ */

/**
 * A validated request body (PROTOCOL.md sections 2 and 3).
 *
 * Every string is a NUL-terminated copy whose content met its limit; each
 * array is sized for its limit plus the NUL. Fields the operation does not
 * carry are empty strings, zero or false. The struct holds no pointers: it
 * may be copied, stored or freed with the memory that holds it.
 */
typedef struct kchat_request {
    kchat_op op;               /**< the operation parsed for */

    /** @name Identity */
    char user_id[65];          /**< `userId`, or `writerId` for user-add-chat;
                                    always a valid id on success */

    /** @name user-add, login */
    char user_pw[129];         /**< `userPw`, 8..128 bytes */
    char email[255];           /**< `email`, 3..254 bytes with an `@` */
    char user_name[65];        /**< `userName`, 1..64 bytes, no control chars */

    /** @name user-status-change */
    char user_status[257];     /**< `userStatus` (or `status`), 0..256 bytes */

    /** @name Rooms and chat */
    char room_id[65];          /**< `roomId` (user-add-chat, room-history,
                                    room-read, room-invite, room-leave) */
    char room_name[129];       /**< `roomName`, 0..128 bytes (user-add-room) */
    bool has_room_name;        /**< whether the body carried `roomName` */
    char message[4097];        /**< `message`, 1..4096 bytes */
    size_t message_len;        /**< strlen(message) */
    char client_msg_id[65];    /**< `clientMsgId`, 0..64 bytes; "" = none */

    /** @name room-read */
    int64_t read_seq;          /**< `readSeq`, >= 0 */

    /** @name Friends (user-add-friend, user-add-room, room-invite) */
    char friend_ids[KCHAT_MAX_FRIENDS][65]; /**< valid ids, de-duplicated,
                                                 in first-seen order */
    size_t n_friends;          /**< 1..#KCHAT_MAX_FRIENDS for those ops */

    /** @name room-history */
    int64_t before_seq;        /**< `beforeSeq`, >= 1 when present */
    bool has_before_seq;       /**< whether the body carried `beforeSeq` */
    int limit;                 /**< 1..100, default 50 (set for every op) */
} kchat_request;

/**
 * @brief Decode and validate one request record's body for @p op.
 *
 * Checks, in this order, stopping at the first failure:
 *  1. @p value_len over #KCHAT_MAX_VALUE: #KCHAT_WIRE_TOO_LARGE.
 *  2. The body decodes (kchat_codec_decode()) to an object (a msgpack map).
 *     Exception, for logout only (the original server's form): a value
 *     whose raw bytes are a valid id, in either format, or that decodes to a
 *     string holding a valid id, means `{userId: value}`. Raw id bytes can
 *     never be a JSON object or msgpack map, so nothing valid is shadowed.
 *  3. The operation's fields, in the order listed below. Required fields
 *     must be present with the right type and within the limits of
 *     PROTOCOL.md section 2 (never truncated); unknown fields are ignored;
 *     an optional field given as null counts as absent.
 *  4. The record key equals `userId` (`writerId` for user-add-chat), byte
 *     for byte.
 *
 * Fields per operation (`?` = optional):
 *  - user-add: userId, userPw, email, userName.
 *  - login: userId, userPw.
 *  - logout, user-search-friend, user-search-room: userId.
 *  - user-status-change: userId, userStatus (or `status` when userStatus is
 *    absent; userStatus wins when both are present).
 *  - user-add-friend: userId, friendId; an id equal to userId is rejected
 *    (PROTOCOL.md section 3: "yourself gives BAD_REQUEST").
 *  - user-add-room: userId, friendId, roomName?.
 *  - user-add-chat: roomId, writerId, message, clientMsgId? (0..64 bytes).
 *  - room-history: userId, roomId, beforeSeq? (>= 1), limit? (1..100).
 *
 * `friendId` is a non-empty array of ids. Repeats are folded first, then
 * counted: up to #KCHAT_MAX_FRIENDS *distinct* ids are accepted however many
 * raw entries there are (the record size bounds those).
 *
 * Integers (`beforeSeq`, `limit`) may also be given as reals with an
 * integral value, such as 50.0, since some JSON and msgpack encoders write
 * every number as a float; 50.5 is rejected.
 *
 * @param[in] op the operation, from the record's topic.
 * @param[in] f the body format, from its content-type.
 * @param[in] key the record key; NULL is treated as empty (and so never
 *            matches).
 * @param[in] key_len its length.
 * @param[in] value the record value; NULL is treated as empty.
 * @param[in] value_len its length.
 * @param[out] req filled on success; on failure its contents are
 *             unspecified (partially filled).
 * @param[out] errmsg on failure, one English sentence naming the offending
 *             field, e.g. "userName must be 1 to 64 bytes of UTF-8 without
 *             control characters."; "" on success. Truncated to fit,
 *             always NUL-terminated. Never contains a field's value, so it
 *             never leaks a password. May be NULL when @p errmsg_size is 0.
 * @param[in] errmsg_size the size of @p errmsg; 128 bytes hold every
 *            message.
 * @return #KCHAT_WIRE_OK, #KCHAT_WIRE_TOO_LARGE, #KCHAT_WIRE_BAD_REQUEST,
 *         or #KCHAT_WIRE_INTERNAL if @p op is outside the enum, @p req is
 *         NULL, or memory ran out.
 * @note Allocates only temporarily (the decoded value).
 * @locality any thread
 */
KCHAT_MUST_CHECK
kchat_wire_err kchat_request_parse(kchat_op op, kchat_fmt f, const void *key, size_t key_len,
                                   const void *value, size_t value_len, kchat_request *req,
                                   char *errmsg, size_t errmsg_size);

/** @} */

#endif /* KCHAT_CODEC_H */
