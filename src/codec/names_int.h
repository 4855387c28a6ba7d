/*
 * Private to src/codec: the operations' topic names, shared by names.c
 * (the protocol's names) and deployment.c (a deployment's prefixed ones).
 */
#ifndef KCHAT_CODEC_NAMES_INT_H
#define KCHAT_CODEC_NAMES_INT_H

#include <stdbool.h>

#include "kchat/codec.h"

/* The request (or, with @p response, response) topic of @p op as
 * PROTOCOL.md names it; NULL outside the enum.
 * @locality any thread */
const char *kchat__op_plain_topic(kchat_op op, bool response);

/* The same in this process's deployment (include/kchat/deployment.h).
 * @locality any thread */
const char *kchat__op_topic(kchat_op op, bool response);

#endif /* KCHAT_CODEC_NAMES_INT_H */
