/* key = value config files with [sections] and repeatable keys. */
#include "cf/config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf/file_io.h"
#include "cf/parse_number.h"

struct entry {
    char *key;
    char *value;
};

struct cf_config {
    struct entry *v;
    size_t n, cap;
};

cf_config *cf_config_new(void)
{
    return calloc(1, sizeof(cf_config));
}

void cf_config_free(cf_config *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].key);
        free(c->v[i].value);
    }
    free(c->v);
    free(c);
}

int cf_config_add(cf_config *c, const char *key, const char *value)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct entry *v = realloc(c->v, cap * sizeof(*v));
        if (!v) return -ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    char *k = strdup(key), *val = strdup(value);
    if (!k || !val) {
        free(k);
        free(val);
        return -ENOMEM;
    }
    c->v[c->n].key = k;
    c->v[c->n].value = val;
    c->n++;
    return 0;
}

int cf_config_set(cf_config *c, const char *key, const char *value)
{
    size_t w = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i].key, key) == 0) {
            free(c->v[i].key);
            free(c->v[i].value);
        } else {
            c->v[w++] = c->v[i];
        }
    }
    c->n = w;
    return cf_config_add(c, key, value);
}

const char *cf_config_get(const cf_config *c, const char *key)
{
    for (size_t i = c->n; i > 0; i--)
        if (strcmp(c->v[i - 1].key, key) == 0) return c->v[i - 1].value;
    return NULL;
}

size_t cf_config_count(const cf_config *c, const char *key)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++) n += strcmp(c->v[i].key, key) == 0;
    return n;
}

const char *cf_config_get_nth(const cf_config *c, const char *key, size_t nth)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].key, key) == 0 && nth-- == 0) return c->v[i].value;
    return NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

int cf_config_load_string(cf_config *c, const char *text, const char *origin, cf_err *err)
{
    char *copy = strdup(text);
    if (!copy) return cf_err_set(err, -ENOMEM, "out of memory");
    char section[128] = "";
    int lineno = 0, rc = 0;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#' || *s == ';') continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (!e || e[1] != '\0' || e - s - 1 >= (long)sizeof(section) || e == s + 1) {
                rc = cf_err_set(err, -EINVAL, "%s:%d: bad section header '%s'", origin, lineno, s);
                break;
            }
            *e = '\0';
            snprintf(section, sizeof(section), "%s", trim(s + 1));
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = cf_err_set(err, -EINVAL, "%s:%d: expected 'key = value', got '%s'", origin, lineno,
                            s);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        if (*key == '\0') {
            rc = cf_err_set(err, -EINVAL, "%s:%d: empty key", origin, lineno);
            break;
        }
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = '\0';
            val++;
        }
        char full[512];
        if (section[0])
            snprintf(full, sizeof(full), "%s.%s", section, key);
        else
            snprintf(full, sizeof(full), "%s", key);
        if (cf_config_add(c, full, val)) {
            rc = cf_err_set(err, -ENOMEM, "out of memory");
            break;
        }
    }
    free(copy);
    return rc;
}

int cf_config_load(cf_config *c, const char *path, cf_err *err)
{
    uint8_t *data;
    size_t len;
    int rc = cf_read_file(path, 1 << 20, &data, &len, err);
    if (rc) return rc;
    char *text = malloc(len + 1);
    if (!text) {
        free(data);
        return cf_err_set(err, -ENOMEM, "out of memory");
    }
    memcpy(text, data, len);
    text[len] = '\0';
    free(data);
    if (strlen(text) != len) {
        free(text);
        return cf_err_set(err, -EINVAL, "%s: config file contains a NUL byte", path);
    }
    rc = cf_config_load_string(c, text, path, err);
    free(text);
    return rc;
}

typedef int (*parse_fn)(const char *, uint64_t *);

static int get_num(const cf_config *c, const char *key, uint64_t def, uint64_t *out, cf_err *err,
                   parse_fn fn, const char *what)
{
    const char *v = cf_config_get(c, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (fn(v, out) != 0) return cf_err_set(err, -EINVAL, "%s: '%s' is not a %s", key, v, what);
    return 0;
}

int cf_config_get_u64(const cf_config *c, const char *key, uint64_t def, uint64_t *out, cf_err *err)
{
    return get_num(c, key, def, out, err, cf_parse_u64, "number");
}

int cf_config_get_size(const cf_config *c, const char *key, uint64_t def, uint64_t *out,
                       cf_err *err)
{
    return get_num(c, key, def, out, err, cf_parse_size, "size (e.g. 64M, 10G)");
}

int cf_config_get_duration_ms(const cf_config *c, const char *key, uint64_t def, uint64_t *out,
                              cf_err *err)
{
    return get_num(c, key, def, out, err, cf_parse_duration_ms, "duration (e.g. 500ms, 2s)");
}

int cf_config_get_bool(const cf_config *c, const char *key, int def, int *out, cf_err *err)
{
    const char *v = cf_config_get(c, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (cf_parse_bool(v, out) != 0)
        return cf_err_set(err, -EINVAL, "%s: '%s' is not a boolean (true/false)", key, v);
    return 0;
}

int cf_config_check_keys(const cf_config *c, const char *const *allowed, cf_err *err)
{
    for (size_t i = 0; i < c->n; i++) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, c->v[i].key) == 0) ok = 1;
        if (!ok) return cf_err_set(err, -EINVAL, "unknown configuration key '%s'", c->v[i].key);
    }
    return 0;
}

int cf_config_override(cf_config *c, const cf_config *flags, const char *const *keys,
                       const char *list_key)
{
    for (const char *const *k = keys; *k; k++) {
        size_t n = cf_config_count(flags, *k);
        if (!n) continue;
        int rc = 0;
        if (list_key && strcmp(*k, list_key) == 0)
            for (size_t i = 0; i < n && !rc; i++)
                rc = cf_config_add(c, *k, cf_config_get_nth(flags, *k, i));
        else
            rc = cf_config_set(c, *k, cf_config_get(flags, *k));
        if (rc) return rc;
    }
    return 0;
}

const char *cf_config_list_next(const char **cursor, size_t *len)
{
    const char *p = *cursor ? *cursor : "";
    p += strspn(p, ", \t");
    *len = strcspn(p, ", \t");
    *cursor = p + *len;
    return *len ? p : NULL;
}
