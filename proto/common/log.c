/* Levelled logging; one write(2) per line so concurrent threads do not interleave. */
#include "cf/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = CF_LOG_INFO;
static _Atomic int g_fd = STDERR_FILENO;
static const char *g_ident = "chunkfly";

static const char *const names[] = {"trace", "debug", "info", "warn", "error", "off"};

void cf_log_set_level(enum cf_log_level level)
{
    g_level = (int)level;
}

enum cf_log_level cf_log_get_level(void)
{
    return (enum cf_log_level)g_level;
}

int cf_log_parse_level(const char *s, enum cf_log_level *out)
{
    for (int i = 0; i <= CF_LOG_OFF; i++) {
        if (s && strcasecmp(s, names[i]) == 0) {
            *out = (enum cf_log_level)i;
            return 0;
        }
    }
    if (s && strcasecmp(s, "warning") == 0) {
        *out = CF_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

void cf_log_set_fd(int fd)
{
    g_fd = fd;
}

void cf_log_set_ident(const char *ident)
{
    g_ident = ident;
}

void cf_log(enum cf_log_level level, const char *fmt, ...)
{
    if ((int)level < g_level || level >= CF_LOG_OFF) return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, g_ident, names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2) len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(g_fd, line, len);
    (void)w;
}
