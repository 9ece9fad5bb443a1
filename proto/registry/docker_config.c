/* Credentials from a docker config.json ("auths" section only; credential helpers are not run,
 * as that would mean executing programs named by the file). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cf/base64.h"
#include "cf/file_io.h"
#include "cf/log.h"
#include "proto/registry_auth.h"

#define CONFIG_MAX   (1u << 20)
#define AUTH_B64_MAX 8192

static int is_docker_hub(const char *h, size_t n)
{
    static const char *const names[] = {"docker.io", "index.docker.io", "registry-1.docker.io"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == n && strncasecmp(h, names[i], n) == 0) return 1;
    return 0;
}

/* Does the auths key ("https://host:port/v1/", "host:port") name `host`? */
static int key_matches(const char *key, const char *host)
{
    const char *k = key;
    if (strncasecmp(k, "https://", 8) == 0)
        k += 8;
    else if (strncasecmp(k, "http://", 7) == 0)
        k += 7;
    size_t kl = strcspn(k, "/");
    size_t hl = strlen(host);
    if (kl == hl && strncasecmp(k, host, kl) == 0) return 1;
    return is_docker_hub(k, kl) && is_docker_hub(host, hl);
}

static int set_pair(const char *u, size_t ul, const char *p, size_t pl, char **user, char **pass)
{
    *user = strndup(u, ul);
    *pass = strndup(p, pl);
    if (!*user || !*pass) {
        free(*user);
        free(*pass);
        *user = *pass = NULL;
        return -ENOMEM;
    }
    return 0;
}

static int entry_creds(json_t *ent, const char *key, char **user, char **pass, cf_err *err)
{
    if (!json_is_object(ent))
        return cf_err_set(err, -EBADMSG, "docker config: auths.\"%.100s\" is not an object", key);
    json_t *a = json_object_get(ent, "auth");
    if (json_is_string(a) && json_string_length(a) > 0) {
        size_t al = json_string_length(a);
        if (al > AUTH_B64_MAX)
            return cf_err_set(err, -EBADMSG, "docker config: auths.\"%.100s\".auth too long", key);
        unsigned char *dec = malloc(cf_base64_decoded_max(al));
        if (!dec) return cf_err_set(err, -ENOMEM, "out of memory");
        ssize_t dl = cf_base64_decode(json_string_value(a), al, dec, cf_base64_decoded_max(al));
        if (dl < 0) {
            free(dec);
            return cf_err_set(err, -EBADMSG,
                              "docker config: auths.\"%.100s\".auth is not valid base64", key);
        }
        unsigned char *colon = memchr(dec, ':', (size_t)dl);
        if (!colon || colon == dec || memchr(dec, '\0', (size_t)dl)) {
            explicit_bzero(dec, (size_t)dl);
            free(dec);
            return cf_err_set(err, -EBADMSG,
                              "docker config: auths.\"%.100s\".auth is not base64 of user:password",
                              key);
        }
        size_t ul = (size_t)(colon - dec);
        int rc = set_pair((char *)dec, ul, (char *)colon + 1, (size_t)dl - ul - 1, user, pass);
        explicit_bzero(dec, (size_t)dl);
        free(dec);
        return rc < 0 ? cf_err_set(err, rc, "out of memory") : 0;
    }
    json_t *u = json_object_get(ent, "username"), *p = json_object_get(ent, "password");
    if (json_is_string(u) && json_is_string(p) && json_string_length(u) > 0) {
        if (memchr(json_string_value(u), '\0', json_string_length(u)) ||
            memchr(json_string_value(p), '\0', json_string_length(p)))
            return cf_err_set(err, -EBADMSG, "docker config: auths.\"%.100s\": NUL in credentials",
                              key);
        int rc = set_pair(json_string_value(u), json_string_length(u), json_string_value(p),
                          json_string_length(p), user, pass);
        return rc < 0 ? cf_err_set(err, rc, "out of memory") : 0;
    }
    if (json_object_get(ent, "identitytoken"))
        cf_warn("docker config: auths.\"%.100s\" holds only an identity token (not supported)",
                key);
    return -ENOENT;
}

int proto_docker_config_parse(const char *json, size_t len, const char *host, char **user,
                              char **pass, cf_err *err)
{
    *user = *pass = NULL;
    if (len > CONFIG_MAX)
        return cf_err_set(err, -EBADMSG, "docker config: too large (%zu bytes)", len);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root)
        return cf_err_set(err, -EBADMSG, "docker config: not JSON (line %d: %s)", jerr.line,
                          jerr.text);
    int rc = -ENOENT;
    if (!json_is_object(root)) {
        rc = cf_err_set(err, -EBADMSG, "docker config: top level is not an object");
        goto out;
    }
    json_t *auths = json_object_get(root, "auths");
    if (auths && !json_is_object(auths)) {
        rc = cf_err_set(err, -EBADMSG, "docker config: \"auths\" is not an object");
        goto out;
    }
    const char *key;
    json_t *ent;
    if (auths) {
        /* Exact key first ("host:port"), then any URL-shaped key naming the host. */
        ent = json_object_get(auths, host);
        if (ent) {
            rc = entry_creds(ent, host, user, pass, err);
            if (rc != -ENOENT) goto out;
        }
        json_object_foreach(auths, key, ent)
        {
            if (!key_matches(key, host)) continue;
            rc = entry_creds(ent, key, user, pass, err);
            if (rc != -ENOENT) goto out;
        }
    }
    json_t *helpers = json_object_get(root, "credHelpers");
    if (json_object_get(root, "credsStore") ||
        (json_is_object(helpers) && json_object_size(helpers)))
        cf_warn("docker config: credential helpers (credsStore/credHelpers) are not supported; "
                "no credentials for %s",
                host);
    rc = -ENOENT;
out:
    json_decref(root);
    return rc;
}

int proto_docker_config_load(const char *path, const char *host, char **user, char **pass,
                             cf_err *err)
{
    char buf[4096];
    const char *p = path;
    int explicit = path != NULL;
    *user = *pass = NULL;
    if (!p) {
        const char *dir = getenv("DOCKER_CONFIG");
        const char *home = getenv("HOME");
        int n;
        if (dir && dir[0])
            n = snprintf(buf, sizeof(buf), "%s/config.json", dir);
        else if (home && home[0])
            n = snprintf(buf, sizeof(buf), "%s/.docker/config.json", home);
        else
            return 1;
        if (n < 0 || (size_t)n >= sizeof(buf)) return 1;
        p = buf;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    cf_err lerr = {0};
    int rc = cf_read_file(p, CONFIG_MAX, &data, &len, &lerr);
    if (rc == -ENOENT && !explicit) return 1;
    if (rc < 0) return cf_err_set(err, rc, "docker config %s: %s", p, cf_err_str(&lerr, rc));
    rc = proto_docker_config_parse((const char *)data, len, host, user, pass, err);
    free(data);
    if (rc == -ENOENT) return 1;
    if (rc < 0) cf_err_wrap(err, rc, "%s", p);
    return rc;
}
