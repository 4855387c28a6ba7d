/*
 * The deployment this process serves and its topic names
 * (include/kchat/deployment.h).
 *
 * The default deployment's names are string literals; another deployment's
 * are built once, by kchat_deployment_set(), into static buffers that are
 * read-only afterwards.
 */
#include <stdio.h>
#include <string.h>

#include "kchat/codec.h"
#include "kchat/deployment.h"
#include "names_int.h"

/* Longest unprefixed topic name, with room to spare. */
#define PLAIN_MAX 48
#define NAME_MAX_ (KCHAT_DEPLOYMENT_MAX + 1 + PLAIN_MAX + 1)

static const char *const plain[KCHAT_T__COUNT] = {
    [KCHAT_T_EVENTS] = "chat-events",       [KCHAT_T_DLQ] = "kchat-dlq",
    [KCHAT_T_INTERNAL] = "kchat-internal",  [KCHAT_T_DIRECTORY] = "kchat-directory",
    [KCHAT_T_CHANGELOG] = "kchat-changelog", [KCHAT_T_META] = "kchat-meta",
    [KCHAT_T_ROOMS] = "kchat-rooms",        [KCHAT_T_PRESENCE] = "kchat-presence",
};

static char name[KCHAT_DEPLOYMENT_MAX + 1] = KCHAT_DEPLOYMENT_DEFAULT;
static bool prefixed;   /* a deployment other than the default */
static char topics[KCHAT_T__COUNT][NAME_MAX_];
static char requests[KCHAT_OP__COUNT][NAME_MAX_];
static char responses[KCHAT_OP__COUNT][NAME_MAX_];

static bool name_ok(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return n > 0 && n <= KCHAT_DEPLOYMENT_MAX;
}

int kchat_deployment_set(const char *s)
{
    if (s == NULL || !name_ok(s))
        return KCHAT_EINVAL;
    snprintf(name, sizeof(name), "%s", s);
    prefixed = strcmp(s, KCHAT_DEPLOYMENT_DEFAULT) != 0;
    if (!prefixed)
        return KCHAT_OK;
    for (int t = 0; t < KCHAT_T__COUNT; t++)
        snprintf(topics[t], sizeof(topics[t]), "%s.%s", s, plain[t]);
    for (int op = 0; op < KCHAT_OP__COUNT; op++) {
        snprintf(requests[op], sizeof(requests[op]), "%s.%s", s,
                 kchat__op_plain_topic((kchat_op)op, false));
        snprintf(responses[op], sizeof(responses[op]), "%s.%s", s,
                 kchat__op_plain_topic((kchat_op)op, true));
    }
    return KCHAT_OK;
}

const char *kchat_deployment_name(void)
{
    return name;
}

const char *kchat_topic(kchat_topic_id t)
{
    if ((unsigned)t >= KCHAT_T__COUNT)
        return NULL;
    return prefixed ? topics[t] : plain[t];
}

const char *kchat__op_topic(kchat_op op, bool response)
{
    if ((unsigned)op >= KCHAT_OP__COUNT)
        return NULL;
    if (!prefixed)
        return kchat__op_plain_topic(op, response);
    return response ? responses[op] : requests[op];
}

char *kchat_deployment_topic_name(const char *plain_name, char *out, size_t size)
{
    int n = prefixed ? snprintf(out, size, "%s.%s", name, plain_name)
                     : snprintf(out, size, "%s", plain_name);

    return n >= 0 && (size_t)n < size ? out : NULL;
}
