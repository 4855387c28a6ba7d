/*
 * Fuzz harness for msgpack request bodies and the codec's hand-written
 * msgpack decoder (src/codec/msgpack.c): every input is read as one msgpack
 * value and as the msgpack body of every operation, with the promises of
 * codec_checks.h.
 *
 * One more check, against msgpack-c's own unpacker: whatever the codec
 * accepts, msgpack-c must read as exactly one object, with no byte left
 * over, that maps to an equal value. msgpack-c runs only on accepted input:
 * on arbitrary bytes its unpacker reserves memory for whatever count a
 * container header claims (see codec.h), which is why the codec does not
 * use it.
 *
 * Built with libFuzzer (clang -fsanitize=fuzzer -DKCHAT_LIBFUZZER, `make
 * fuzz`) or, with gcc, linked to replay_main.c (`make check`). Seeds:
 * tests/fuzz/corpus/msgpack/.
 */
#include <msgpack.h>
#include <stdint.h>

#include "fuzz/codec_checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* msgpack-c's object as a codec value, or NULL for what the codec's value
 * model has no place for (bin, ext, non-str keys, uint64 over INT64_MAX). */
static json_t *from_msgpack_c(const msgpack_object *o)
{
    json_t *v;

    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return o->via.u64 <= INT64_MAX ? json_integer((json_int_t)o->via.u64) : NULL;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR: /* an empty str may come with a NULL ptr */
        return json_stringn_nocheck(o->via.str.size ? o->via.str.ptr : "", o->via.str.size);
    case MSGPACK_OBJECT_ARRAY:
        if ((v = json_array()) == NULL)
            return NULL;
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            json_t *item = from_msgpack_c(&o->via.array.ptr[i]);
            if (item == NULL || json_array_append_new(v, item) != 0) {
                json_decref(v);
                return NULL;
            }
        }
        return v;
    case MSGPACK_OBJECT_MAP:
        if ((v = json_object()) == NULL)
            return NULL;
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            json_t *item;
            if (kv->key.type != MSGPACK_OBJECT_STR ||
                (item = from_msgpack_c(&kv->val)) == NULL ||
                json_object_setn_new_nocheck(v, kv->key.via.str.size ? kv->key.via.str.ptr : "",
                                             kv->key.via.str.size, item) != 0) {
                json_decref(v);
                return NULL;
            }
        }
        return v;
    default:
        return NULL;
    }
}

/* What the codec accepted as @p v, msgpack-c reads the same. */
static void check_against_msgpack_c(const uint8_t *data, size_t size, const json_t *v)
{
    msgpack_unpacked u;
    size_t off = 0;

    msgpack_unpacked_init(&u);
    msgpack_unpack_return rc = msgpack_unpack_next(&u, (const char *)data, size, &off);
    FUZZ_CHECK(rc == MSGPACK_UNPACK_SUCCESS);
    FUZZ_CHECK(off == size);
    json_t *theirs = from_msgpack_c(&u.data);
    FUZZ_CHECK(theirs != NULL);
    FUZZ_CHECK(json_equal(v, theirs));
    json_decref(theirs);
    msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v = fuzz_codec_input(KCHAT_FMT_MSGPACK, data, size);
    if (v != NULL)
        check_against_msgpack_c(data, size, v);
    json_decref(v);
    return 0;
}
