/* Levelled logging to stderr (or a file), shared by all tools and daemons.
 * Thread-safe: each message is written with a single write(2). */
#ifndef CF_LOG_H
#define CF_LOG_H

enum cf_log_level {
    CF_LOG_TRACE,
    CF_LOG_DEBUG,
    CF_LOG_INFO,
    CF_LOG_WARN,
    CF_LOG_ERROR,
    CF_LOG_OFF
};

void cf_log_set_level(enum cf_log_level level);
enum cf_log_level cf_log_get_level(void);
/* Parses "trace|debug|info|warn|error|off" (case-insensitive). Returns 0 or -EINVAL. */
int cf_log_parse_level(const char *s, enum cf_log_level *out);
/* Send log lines to `fd` instead of stderr (the caller keeps ownership of fd). */
void cf_log_set_fd(int fd);
/* Prefix every line with a component name, e.g. "peer" (string must outlive logging). */
void cf_log_set_ident(const char *ident);

void cf_log(enum cf_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define cf_trace(...) cf_log(CF_LOG_TRACE, __VA_ARGS__)
#define cf_debug(...) cf_log(CF_LOG_DEBUG, __VA_ARGS__)
#define cf_info(...)  cf_log(CF_LOG_INFO, __VA_ARGS__)
#define cf_warn(...)  cf_log(CF_LOG_WARN, __VA_ARGS__)
#define cf_error(...) cf_log(CF_LOG_ERROR, __VA_ARGS__)

#endif
