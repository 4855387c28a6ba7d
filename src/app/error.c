/* The single table of error names and messages (see include/kchat/error.h). */
#include "kchat/error.h"

const char *kchat_strerror(int err)
{
    switch (err) {
#define KCHAT__ERR_MSG(name, value, msg) case KCHAT_##name: return msg;
    KCHAT_ERRNO_MAP(KCHAT__ERR_MSG)
#undef KCHAT__ERR_MSG
    }
    return "unknown error";
}

const char *kchat_errname(int err)
{
    switch (err) {
#define KCHAT__ERR_NAME(name, value, msg) case KCHAT_##name: return #name;
    KCHAT_ERRNO_MAP(KCHAT__ERR_NAME)
#undef KCHAT__ERR_NAME
    }
    return "EUNKNOWN";
}
