/* conf.c: the topology file: INI sections naming each service's address, database and settings. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rpc.h"

#define CONF_MAX_LINE 4096
#define CONF_MAX_ENTRIES 4096

typedef struct conf_entry {
        char *section;
        char *key;
        char *value;
} conf_entry;

struct rpc_conf {
        conf_entry *entries;
        size_t n;
        const char **sections; /* distinct, in first-seen order */
        size_t n_sections;
};

rpc_conf *
rpc_conf_new(void)
{
        return rpc_xcalloc(1, sizeof(rpc_conf));
}

static char *
trim(char *s)
{
        char *end;

        while (*s == ' ' || *s == '\t' || *s == '\r') {
                s++;
        }
        end = s + strlen(s);
        while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) {
                *--end = '\0';
        }
        return s;
}

static bool
name_valid(const char *s)
{
        if (*s == '\0') {
                return false;
        }
        for (; *s != '\0'; s++) {
                if (!isalnum((unsigned char) *s) && *s != '_' && *s != '-' && *s != '.') {
                        return false;
                }
        }
        return true;
}

static void
add_section(rpc_conf *conf, const char *section)
{
        for (size_t i = 0; i < conf->n_sections; i++) {
                if (strcmp(conf->sections[i], section) == 0) {
                        return;
                }
        }
        conf->sections = rpc_xrealloc(conf->sections, (conf->n_sections + 1) * sizeof(char *));
        conf->sections[conf->n_sections++] = rpc_xstrdup(section);
}

void
rpc_conf_set(rpc_conf *conf, const char *section, const char *key, const char *value)
{
        add_section(conf, section);
        for (size_t i = 0; i < conf->n; i++) {
                conf_entry *e = &conf->entries[i];
                if (strcmp(e->section, section) == 0 && strcmp(e->key, key) == 0) {
                        free(e->value);
                        e->value = rpc_xstrdup(value);
                        return;
                }
        }
        conf->entries = rpc_xrealloc(conf->entries, (conf->n + 1) * sizeof(conf_entry));
        conf->entries[conf->n++] = (conf_entry) {
                .section = rpc_xstrdup(section),
                .key = rpc_xstrdup(key),
                .value = rpc_xstrdup(value),
        };
}

rpc_status
rpc_conf_parse(const char *text, size_t len, rpc_conf **ret_conf, char *errbuf, size_t errlen)
{
        rpc_conf *conf = rpc_conf_new();
        char section[256] = "defaults";
        char line[CONF_MAX_LINE];
        size_t pos = 0;
        int lineno = 0;

        while (pos < len) {
                size_t start = pos;
                while (pos < len && text[pos] != '\n') {
                        pos++;
                }
                size_t n = pos - start;
                pos++; /* the newline */
                lineno++;
                if (n >= sizeof(line)) {
                        snprintf(errbuf, errlen, "line %d: longer than %d bytes", lineno,
                            CONF_MAX_LINE - 1);
                        goto fail;
                }
                memcpy(line, text + start, n);
                line[n] = '\0';
                if (memchr(line, '\0', n) != NULL) {
                        snprintf(errbuf, errlen, "line %d: holds a NUL byte", lineno);
                        goto fail;
                }
                char *s = trim(line);
                if (*s == '\0' || *s == '#' || *s == ';') {
                        continue;
                }
                if (*s == '[') {
                        char *close = strchr(s, ']');
                        if (close == NULL || *trim(close + 1) != '\0') {
                                snprintf(
                                    errbuf, errlen, "line %d: malformed section header", lineno);
                                goto fail;
                        }
                        *close = '\0';
                        char *name = trim(s + 1);
                        if (!name_valid(name) || strlen(name) >= sizeof(section)) {
                                snprintf(errbuf, errlen, "line %d: invalid section name", lineno);
                                goto fail;
                        }
                        snprintf(section, sizeof(section), "%s", name);
                        add_section(conf, section);
                        continue;
                }
                char *eq = strchr(s, '=');
                if (eq == NULL) {
                        snprintf(errbuf, errlen, "line %d: expected 'key = value'", lineno);
                        goto fail;
                }
                *eq = '\0';
                char *key = trim(s);
                char *value = trim(eq + 1);
                if (!name_valid(key)) {
                        snprintf(errbuf, errlen, "line %d: invalid key", lineno);
                        goto fail;
                }
                if (conf->n >= CONF_MAX_ENTRIES) {
                        snprintf(errbuf, errlen, "line %d: more than %d entries", lineno,
                            CONF_MAX_ENTRIES);
                        goto fail;
                }
                rpc_conf_set(conf, section, key, value);
        }
        *ret_conf = conf;
        return RPC_OK;
fail:
        rpc_conf_free(conf);
        return RPC_INVALID_ARGUMENT;
}

rpc_status
rpc_conf_load(const char *path, rpc_conf **ret_conf, char *errbuf, size_t errlen)
{
        FILE *f = fopen(path, "rb");
        char *text = NULL;
        size_t len = 0;
        size_t cap = 0;
        char chunk[4096];
        size_t n;
        rpc_status st;

        if (f == NULL) {
                snprintf(errbuf, errlen, "cannot read %s: %s", path, strerror(errno));
                return RPC_NOT_FOUND;
        }
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
                if (len + n > 4 * 1024 * 1024) {
                        fclose(f);
                        free(text);
                        snprintf(errbuf, errlen, "%s: larger than 4 MiB", path);
                        return RPC_INVALID_ARGUMENT;
                }
                if (len + n > cap) {
                        cap = (len + n) * 2;
                        text = rpc_xrealloc(text, cap);
                }
                memcpy(text + len, chunk, n);
                len += n;
        }
        fclose(f);
        char inner[512];
        st = rpc_conf_parse(text != NULL ? text : "", len, ret_conf, inner, sizeof(inner));
        if (st != RPC_OK) {
                snprintf(errbuf, errlen, "%s: %s", path, inner);
        }
        free(text);
        return st;
}

static const char *
lookup(const rpc_conf *conf, const char *section, const char *key)
{
        for (size_t i = 0; i < conf->n; i++) {
                const conf_entry *e = &conf->entries[i];
                if (strcmp(e->section, section) == 0 && strcmp(e->key, key) == 0) {
                        return e->value;
                }
        }
        return NULL;
}

const char *
rpc_conf_get(const rpc_conf *conf, const char *section, const char *key)
{
        const char *v;

        if (conf == NULL) {
                return NULL;
        }
        v = lookup(conf, section, key);
        if (v == NULL) {
                v = lookup(conf, "defaults", key);
        }
        return v;
}

int64_t
rpc_conf_get_int(const rpc_conf *conf, const char *section, const char *key, int64_t def)
{
        const char *v = rpc_conf_get(conf, section, key);
        char *end = NULL;
        long long x;

        if (v == NULL || *v == '\0') {
                return def;
        }
        errno = 0;
        x = strtoll(v, &end, 10);
        if (errno != 0 || *end != '\0') {
                return def;
        }
        return x;
}

rpc_status
rpc_conf_set_arg(rpc_conf *conf, const char *arg)
{
        const char *dot = strchr(arg, '.');
        const char *eq = strchr(arg, '=');
        char section[256];
        char key[256];

        if (dot == NULL || eq == NULL || dot > eq || dot == arg || eq == dot + 1) {
                return RPC_INVALID_ARGUMENT;
        }
        if ((size_t) (dot - arg) >= sizeof(section) || (size_t) (eq - dot - 1) >= sizeof(key)) {
                return RPC_INVALID_ARGUMENT;
        }
        memcpy(section, arg, (size_t) (dot - arg));
        section[dot - arg] = '\0';
        memcpy(key, dot + 1, (size_t) (eq - dot - 1));
        key[eq - dot - 1] = '\0';
        if (!name_valid(section) || !name_valid(key)) {
                return RPC_INVALID_ARGUMENT;
        }
        rpc_conf_set(conf, section, key, eq + 1);
        return RPC_OK;
}

size_t
rpc_conf_sections(const rpc_conf *conf, const char ***ret_names)
{
        *ret_names = conf->sections;
        return conf->n_sections;
}

void
rpc_conf_free(rpc_conf *conf)
{
        if (conf == NULL) {
                return;
        }
        for (size_t i = 0; i < conf->n; i++) {
                free(conf->entries[i].section);
                free(conf->entries[i].key);
                free(conf->entries[i].value);
        }
        for (size_t i = 0; i < conf->n_sections; i++) {
                free((char *) conf->sections[i]);
        }
        free(conf->entries);
        free(conf->sections);
        free(conf);
}

const char *
rpc_conf_default_path(void)
{
        const char *env = getenv("MERCATO_CONF");
        return env != NULL && *env != '\0' ? env : "deploy/local.conf";
}
