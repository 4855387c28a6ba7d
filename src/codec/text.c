/*
 * Text helpers of the protocol: ids, strict UTF-8, ISO-8601 timestamps.
 * All locale-independent.
 */
#include "kchat/codec.h"

#define ID_MAX_LEN 64

static bool is_id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

bool kchat_valid_id(const void *s, size_t len)
{
    const unsigned char *p = s;
    if (!p || len == 0 || len > ID_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_id_char(p[i]))
            return false;
    }
    return true;
}

/*
 * The length of the well-formed UTF-8 sequence at p (left > 0 bytes
 * available), or 0 if there is none. Unicode table 3-7: the second byte's
 * range depends on the first, which excludes overlong forms (E0 80..9F,
 * F0 80..8F), surrogates (ED A0..BF) and code points above U+10FFFF
 * (F4 90..BF, F5..FF); C0 and C1 only start overlong forms.
 */
static size_t utf8_sequence_len(const unsigned char *p, size_t left)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        if (p[0] == 0xe0)
            lo = 0xa0;
        else if (p[0] == 0xed)
            hi = 0x9f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        if (p[0] == 0xf0)
            lo = 0x90;
        else if (p[0] == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (left < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    }
    return n;
}

bool kchat_utf8_valid(const void *s, size_t len)
{
    const unsigned char *p = s;
    if (!p)
        return len == 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence_len(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* ---- ISO-8601 ---------------------------------------------------------- */

#define MS_PER_DAY INT64_C(86400000)
/* 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: four-digit years. */
#define ISO_MIN_MS INT64_C(-62167219200000)
#define ISO_MAX_MS INT64_C(253402300799999)

/*
 * Year, month and day of the proleptic Gregorian calendar for a count of
 * days since 1970-01-01 (Howard Hinnant's civil_from_days, exact for any
 * day in the clamped range).
 */
static void civil_from_days(int64_t days, int64_t *year, unsigned *month, unsigned *day)
{
    days += 719468; /* days from 0000-03-01 to 1970-01-01 */
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned doe = (unsigned)(days - era * 146097);                        /* [0, 146096] */
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  /* [0, 399] */
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                /* [0, 365] */
    unsigned mp = (5 * doy + 2) / 153;                                     /* [0, 11], March = 0 */

    *day = doy - (153 * mp + 2) / 5 + 1;
    *month = mp < 10 ? mp + 3 : mp - 9;
    *year = (int64_t)yoe + era * 400 + (*month <= 2);
}

/* Writes v as exactly width decimal digits, zero-padded; returns the end. */
static char *put_digits(char *p, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

void kchat_iso8601(int64_t unix_ms, char out[25])
{
    if (unix_ms < ISO_MIN_MS)
        unix_ms = ISO_MIN_MS;
    if (unix_ms > ISO_MAX_MS)
        unix_ms = ISO_MAX_MS;

    /* Floor division, so times before 1970 fall on the right day. */
    int64_t days = unix_ms / MS_PER_DAY;
    int64_t ms_of_day = unix_ms % MS_PER_DAY;
    if (ms_of_day < 0) {
        days--;
        ms_of_day += MS_PER_DAY;
    }

    int64_t year;
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);
    unsigned ms = (unsigned)ms_of_day;

    char *p = out;
    p = put_digits(p, (unsigned)year, 4);
    *p++ = '-';
    p = put_digits(p, month, 2);
    *p++ = '-';
    p = put_digits(p, day, 2);
    *p++ = 'T';
    p = put_digits(p, ms / 3600000, 2);
    *p++ = ':';
    p = put_digits(p, ms / 60000 % 60, 2);
    *p++ = ':';
    p = put_digits(p, ms / 1000 % 60, 2);
    *p++ = '.';
    p = put_digits(p, ms % 1000, 3);
    *p++ = 'Z';
    *p = '\0';
}
