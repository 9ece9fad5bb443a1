/* The one configuration file format of every Chunkfly daemon (documented in docs/config.md):
 *
 *   # comment
 *   key = value            ; whitespace around key and value is trimmed
 *   [section]              ; later keys are named "section.key"
 *   scheduler = 127.0.0.1:8002
 *   scheduler = 127.0.0.2:8002   ; a key may repeat (list values)
 *
 * Values may be quoted with "..." to keep leading/trailing spaces. Command-line flags override
 * file values through cf_config_set(). Unknown keys are an error (cf_config_check_keys) so a
 * typo never silently falls back to a default. */
#ifndef CF_CONFIG_H
#define CF_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "cf/error.h"

typedef struct cf_config cf_config;

cf_config *cf_config_new(void); /* NULL on ENOMEM */
void cf_config_free(cf_config *c);

/* Parses a file into c (appending). Errors name the file and line. */
int cf_config_load(cf_config *c, const char *path, cf_err *err);
int cf_config_load_string(cf_config *c, const char *text, const char *origin, cf_err *err);

/* Replace every value of key with one value (flags override files). */
int cf_config_set(cf_config *c, const char *key, const char *value);
/* Add one more value to a list key. */
int cf_config_add(cf_config *c, const char *key, const char *value);

/* Last value of key, or NULL. Strings stay owned by c. */
const char *cf_config_get(const cf_config *c, const char *key);
size_t cf_config_count(const cf_config *c, const char *key);
const char *cf_config_get_nth(const cf_config *c, const char *key, size_t i);

/* Typed getters: *out = def when the key is absent; -EINVAL with a message naming the key
 * when the value does not parse. */
int cf_config_get_u64(const cf_config *c, const char *key, uint64_t def, uint64_t *out,
                      cf_err *err);
int cf_config_get_size(const cf_config *c, const char *key, uint64_t def, uint64_t *out,
                       cf_err *err);
int cf_config_get_duration_ms(const cf_config *c, const char *key, uint64_t def, uint64_t *out,
                              cf_err *err);
int cf_config_get_bool(const cf_config *c, const char *key, int def, int *out, cf_err *err);

/* Command-line flags (collected in their own cf_config) over a file's values: each of `keys`
 * (NULL-terminated) given as a flag replaces the file's values, except `list_key` (may be
 * NULL), whose flag values are added to the file's. Returns 0 or -ENOMEM. */
int cf_config_override(cf_config *c, const cf_config *flags, const char *const *keys,
                       const char *list_key);

/* Walks a list value ("a, b c,d": entries separated by commas, spaces or tabs): returns the next
 * entry (not NUL-terminated, *len bytes) and moves *cursor past it, or NULL at the end. */
const char *cf_config_list_next(const char **cursor, size_t *len);

/* -EINVAL naming the first key not in the NULL-terminated `allowed` list. */
int cf_config_check_keys(const cf_config *c, const char *const *allowed, cf_err *err);

#endif
