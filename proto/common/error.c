/* cf_err: an error code plus a message the user can act on. */
#include "cf/error.h"

#include <stdio.h>
#include <string.h>

int cf_err_vset(cf_err *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    }
    return code;
}

int cf_err_set(cf_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cf_err_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int cf_err_wrap(cf_err *err, int code, const char *fmt, ...)
{
    if (!err) return code;
    if (err->code == 0) err->code = code;
    char prefix[CF_ERR_MSG_MAX], old[CF_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    if (old[0])
        snprintf(err->msg, sizeof(err->msg), "%.200s: %.300s", prefix, old);
    else
        snprintf(err->msg, sizeof(err->msg), "%.300s: %.200s", prefix, strerror(-err->code));
    return err->code;
}

void cf_err_clear(cf_err *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

const char *cf_err_str(const cf_err *err, int code)
{
    if (err && err->msg[0]) return err->msg;
    return strerror(code < 0 ? -code : code);
}
