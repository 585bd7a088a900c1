/* json.c: generic JSON <-> protobuf-c conversion by walking the message descriptors. */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define MEMBER(msg, off) ((void *) ((char *) (msg) + (off)))
#define CMEMBER(msg, off) ((const void *) ((const char *) (msg) + (off)))

/* The state of one conversion: where the error goes and the path of the current field. */
typedef struct conv {
        char *err;
        size_t errlen;
        char path[512];
        size_t path_len;
} conv;

static bool fail(conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool
fail(conv *c, const char *fmt, ...)
{
        char msg[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (c->path_len > 0) {
                snprintf(c->err, c->errlen, "%s: %s", c->path, msg);
        } else {
                snprintf(c->err, c->errlen, "%s", msg);
        }
        return false;
}

/* Appends ".name" (or "name" at the top) to the path; returns the length to restore. */
static size_t
path_push_name(conv *c, const char *name)
{
        size_t old = c->path_len;
        int n = snprintf(c->path + old, sizeof(c->path) - old, "%s%s", old > 0 ? "." : "", name);

        if (n > 0) {
                c->path_len
                    = old + (size_t) n < sizeof(c->path) ? old + (size_t) n : sizeof(c->path) - 1;
        }
        return old;
}

static size_t
path_push_index(conv *c, size_t index)
{
        size_t old = c->path_len;
        int n = snprintf(c->path + old, sizeof(c->path) - old, "[%zu]", index);

        if (n > 0) {
                c->path_len
                    = old + (size_t) n < sizeof(c->path) ? old + (size_t) n : sizeof(c->path) - 1;
        }
        return old;
}

static void
path_pop(conv *c, size_t old)
{
        c->path_len = old;
        c->path[old] = '\0';
}

static const char *
json_kind(const json_t *v)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
        case JSON_REAL:
                return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a bool";
        case JSON_NULL:
                return "null";
        }
        return "a value";
}

void
cli_json_camel_name(const char *name, char *buf, size_t len)
{
        size_t o = 0;
        bool upper = false;

        if (len == 0) {
                return;
        }
        for (const char *p = name; *p != '\0' && o + 1 < len; p++) {
                if (*p == '_') {
                        upper = true;
                        continue;
                }
                buf[o++] = upper && *p >= 'a' && *p <= 'z' ? (char) (*p - 'a' + 'A') : *p;
                upper = false;
        }
        buf[o] = '\0';
}

/* --- base64 --- */

static const char b64_alphabet[]
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
cli_base64_encode(const uint8_t *data, size_t len)
{
        char *out = rpc_xmalloc((len + 2) / 3 * 4 + 1);
        size_t o = 0;
        size_t i = 0;

        for (; i + 3 <= len; i += 3) {
                uint32_t v = (uint32_t) data[i] << 16 | (uint32_t) data[i + 1] << 8 | data[i + 2];
                out[o++] = b64_alphabet[v >> 18 & 63];
                out[o++] = b64_alphabet[v >> 12 & 63];
                out[o++] = b64_alphabet[v >> 6 & 63];
                out[o++] = b64_alphabet[v & 63];
        }
        if (len - i == 1) {
                uint32_t v = (uint32_t) data[i] << 16;
                out[o++] = b64_alphabet[v >> 18 & 63];
                out[o++] = b64_alphabet[v >> 12 & 63];
                out[o++] = '=';
                out[o++] = '=';
        } else if (len - i == 2) {
                uint32_t v = (uint32_t) data[i] << 16 | (uint32_t) data[i + 1] << 8;
                out[o++] = b64_alphabet[v >> 18 & 63];
                out[o++] = b64_alphabet[v >> 12 & 63];
                out[o++] = b64_alphabet[v >> 6 & 63];
                out[o++] = '=';
        }
        out[o] = '\0';
        return out;
}

static int
b64_value(char ch)
{
        if (ch >= 'A' && ch <= 'Z') {
                return ch - 'A';
        }
        if (ch >= 'a' && ch <= 'z') {
                return ch - 'a' + 26;
        }
        if (ch >= '0' && ch <= '9') {
                return ch - '0' + 52;
        }
        if (ch == '+' || ch == '-') {
                return 62;
        }
        if (ch == '/' || ch == '_') {
                return 63;
        }
        return -1;
}

bool
cli_base64_decode(const char *text, uint8_t **ret_data, size_t *ret_len)
{
        size_t len = strlen(text);
        size_t pad = 0;
        uint8_t *out;
        size_t o = 0;
        uint32_t acc = 0;
        int bits = 0;

        while (len > 0 && text[len - 1] == '=' && pad < 2) {
                len--;
                pad++;
        }
        if (pad > 0 && (len + pad) % 4 != 0) {
                return false;
        }
        if (len % 4 == 1) {
                return false;
        }
        out = len > 0 ? rpc_xmalloc(len / 4 * 3 + 3) : NULL;
        for (size_t i = 0; i < len; i++) {
                int v = b64_value(text[i]);
                if (v < 0) {
                        free(out);
                        return false;
                }
                acc = acc << 6 | (uint32_t) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (uint8_t) (acc >> bits & 0xff);
                }
        }
        *ret_data = out;
        *ret_len = o;
        return true;
}

/* --- JSON -> message --- */

static bool to_message(
    conv *c, const ProtobufCMessageDescriptor *desc, const json_t *obj, ProtobufCMessage **ret_msg);

/* Reads an integer in [min, max] from a JSON number or a decimal string. */
static bool
get_i64(conv *c, const json_t *v, int64_t min, int64_t max, const char *type, int64_t *ret)
{
        long long x;

        if (json_is_integer(v)) {
                x = json_integer_value(v);
        } else if (json_is_real(v)) {
                double d = json_real_value(v);
                if (!isfinite(d) || d != floor(d)) {
                        return fail(c, "expected an integer, got %g", d);
                }
                if (d < -9223372036854775808.0 || d >= 9223372036854775808.0) {
                        return fail(c, "%g is out of range for %s", d, type);
                }
                x = (long long) d;
        } else if (json_is_string(v)) {
                const char *s = json_string_value(v);
                char *end;
                errno = 0;
                x = strtoll(s, &end, 10);
                if (end == s || *end != '\0' || (*s != '-' && (*s < '0' || *s > '9'))) {
                        return fail(c, "expected an integer, got \"%s\"", s);
                }
                if (errno == ERANGE) {
                        return fail(c, "%s is out of range for %s", s, type);
                }
        } else {
                return fail(c, "expected an integer, got %s", json_kind(v));
        }
        if (x < min || x > max) {
                return fail(c, "%lld is out of range for %s", x, type);
        }
        *ret = x;
        return true;
}

/* Reads an unsigned integer up to max from a JSON number or a decimal string. */
static bool
get_u64(conv *c, const json_t *v, uint64_t max, const char *type, uint64_t *ret)
{
        unsigned long long x;

        if (json_is_integer(v)) {
                long long s = json_integer_value(v);
                if (s < 0) {
                        return fail(c, "%lld is out of range for %s", s, type);
                }
                x = (unsigned long long) s;
        } else if (json_is_real(v)) {
                double d = json_real_value(v);
                if (!isfinite(d) || d != floor(d)) {
                        return fail(c, "expected an integer, got %g", d);
                }
                if (d < 0 || d >= 18446744073709551616.0) {
                        return fail(c, "%g is out of range for %s", d, type);
                }
                x = (unsigned long long) d;
        } else if (json_is_string(v)) {
                const char *s = json_string_value(v);
                char *end;
                if (*s == '-' && s[1] >= '0' && s[1] <= '9') {
                        return fail(c, "%s is out of range for %s", s, type);
                }
                if (*s < '0' || *s > '9') {
                        return fail(c, "expected an integer, got \"%s\"", s);
                }
                errno = 0;
                x = strtoull(s, &end, 10);
                if (*end != '\0') {
                        return fail(c, "expected an integer, got \"%s\"", s);
                }
                if (errno == ERANGE) {
                        return fail(c, "%s is out of range for %s", s, type);
                }
        } else {
                return fail(c, "expected an integer, got %s", json_kind(v));
        }
        if (x > max) {
                return fail(c, "%llu is out of range for %s", x, type);
        }
        *ret = x;
        return true;
}

static bool
get_double(conv *c, const json_t *v, bool is_float, double *ret)
{
        double d;

        if (json_is_number(v)) {
                d = json_number_value(v);
        } else if (json_is_string(v)) {
                const char *s = json_string_value(v);
                char *end;
                if (strcmp(s, "NaN") == 0) {
                        d = NAN;
                } else if (strcmp(s, "Infinity") == 0) {
                        d = INFINITY;
                } else if (strcmp(s, "-Infinity") == 0) {
                        d = -INFINITY;
                } else {
                        errno = 0;
                        d = strtod(s, &end);
                        if (end == s || *end != '\0' || !isfinite(d)) {
                                return fail(c, "expected a number, got \"%s\"", s);
                        }
                        if (errno == ERANGE && fabs(d) > 1.0) {
                                return fail(c, "%s is out of range for double", s);
                        }
                }
        } else {
                return fail(c, "expected a number, got %s", json_kind(v));
        }
        if (is_float && isfinite(d) && fabs(d) > FLT_MAX) {
                return fail(c, "%g is out of range for float", d);
        }
        *ret = d;
        return true;
}

/* Converts one JSON value to a single (non-repeated) value of field f's type and stores it
 * at dst, which points to the member or to an element of a repeated array. Nothing is
 * written on failure. */
static bool
set_value(conv *c, const ProtobufCFieldDescriptor *f, const json_t *v, void *dst)
{
        int64_t i;
        uint64_t u;
        double d;

        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
                if (!get_i64(c, v, INT32_MIN, INT32_MAX, "int32", &i)) {
                        return false;
                }
                *(int32_t *) dst = (int32_t) i;
                return true;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
                if (!get_i64(c, v, INT64_MIN, INT64_MAX, "int64", &i)) {
                        return false;
                }
                *(int64_t *) dst = i;
                return true;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                if (!get_u64(c, v, UINT32_MAX, "uint32", &u)) {
                        return false;
                }
                *(uint32_t *) dst = (uint32_t) u;
                return true;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                if (!get_u64(c, v, UINT64_MAX, "uint64", &u)) {
                        return false;
                }
                *(uint64_t *) dst = u;
                return true;
        case PROTOBUF_C_TYPE_FLOAT:
                if (!get_double(c, v, true, &d)) {
                        return false;
                }
                *(float *) dst = (float) d;
                return true;
        case PROTOBUF_C_TYPE_DOUBLE:
                if (!get_double(c, v, false, &d)) {
                        return false;
                }
                *(double *) dst = d;
                return true;
        case PROTOBUF_C_TYPE_BOOL:
                if (!json_is_boolean(v)) {
                        return fail(c, "expected true or false, got %s", json_kind(v));
                }
                *(protobuf_c_boolean *) dst = json_is_true(v);
                return true;
        case PROTOBUF_C_TYPE_ENUM: {
                const ProtobufCEnumDescriptor *ed = f->descriptor;
                if (json_is_string(v)) {
                        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(
                            ed, json_string_value(v));
                        if (ev == NULL) {
                                return fail(c, "\"%s\" is not a value of %s", json_string_value(v),
                                    ed->name);
                        }
                        *(int *) dst = ev->value;
                        return true;
                }
                if (!json_is_number(v)) {
                        return fail(
                            c, "expected a %s name or number, got %s", ed->name, json_kind(v));
                }
                if (!get_i64(c, v, INT32_MIN, INT32_MAX, "an enum", &i)) {
                        return false;
                }
                *(int *) dst = (int) i;
                return true;
        }
        case PROTOBUF_C_TYPE_STRING:
                if (!json_is_string(v)) {
                        return fail(c, "expected a string, got %s", json_kind(v));
                }
                *(char **) dst = rpc_xstrdup(json_string_value(v));
                return true;
        case PROTOBUF_C_TYPE_BYTES: {
                ProtobufCBinaryData *bd = dst;
                uint8_t *data;
                size_t len;
                if (!json_is_string(v)) {
                        return fail(c, "expected base64 bytes in a string, got %s", json_kind(v));
                }
                if (!cli_base64_decode(json_string_value(v), &data, &len)) {
                        return fail(c, "not valid base64");
                }
                bd->data = data;
                bd->len = len;
                return true;
        }
        case PROTOBUF_C_TYPE_MESSAGE:
                return to_message(c, f->descriptor, v, (ProtobufCMessage **) dst);
        }
        return fail(c, "unsupported field type %d", (int) f->type);
}

static size_t
elem_size(ProtobufCType type)
{
        switch (type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                return 4;
        case PROTOBUF_C_TYPE_FLOAT:
                return sizeof(float);
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                return 8;
        case PROTOBUF_C_TYPE_DOUBLE:
                return sizeof(double);
        case PROTOBUF_C_TYPE_BOOL:
                return sizeof(protobuf_c_boolean);
        case PROTOBUF_C_TYPE_ENUM:
                return sizeof(int);
        case PROTOBUF_C_TYPE_STRING:
                return sizeof(char *);
        case PROTOBUF_C_TYPE_BYTES:
                return sizeof(ProtobufCBinaryData);
        case PROTOBUF_C_TYPE_MESSAGE:
                return sizeof(ProtobufCMessage *);
        }
        return 0;
}

/* A map field is a repeated message whose type is a generated "...Entry" with key = 1 and
 * value = 2. */
static bool
is_map_entry(const ProtobufCMessageDescriptor *d)
{
        size_t n = strlen(d->short_name);

        return d->n_fields == 2 && n > 5 && strcmp(d->short_name + n - 5, "Entry") == 0
            && strcmp(d->fields[0].name, "key") == 0 && d->fields[0].id == 1
            && strcmp(d->fields[1].name, "value") == 0 && d->fields[1].id == 2;
}

/* Builds one map entry from a JSON object member. */
static bool
map_entry(conv *c, const ProtobufCMessageDescriptor *ed, const char *key, const json_t *val,
    ProtobufCMessage **ret)
{
        const ProtobufCFieldDescriptor *kf = &ed->fields[0];
        const ProtobufCFieldDescriptor *vf = &ed->fields[1];
        ProtobufCMessage *m = rpc_xcalloc(1, ed->sizeof_message);
        json_t *jkey;
        bool ok;

        ed->message_init(m);
        if (kf->type == PROTOBUF_C_TYPE_BOOL) {
                if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0) {
                        protobuf_c_message_free_unpacked(m, NULL);
                        return fail(c, "map key \"%s\" is not true or false", key);
                }
                jkey = json_boolean(strcmp(key, "true") == 0);
        } else {
                jkey = json_string(key);
        }
        ok = set_value(c, kf, jkey, MEMBER(m, kf->offset));
        json_decref(jkey);
        if (ok && !json_is_null(val)) {
                ok = set_value(c, vf, val, MEMBER(m, vf->offset));
        }
        if (!ok) {
                protobuf_c_message_free_unpacked(m, NULL);
                return false;
        }
        *ret = m;
        return true;
}

static bool
set_repeated(conv *c, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, const json_t *v)
{
        size_t *count = MEMBER(msg, f->quantifier_offset);
        void **arr = MEMBER(msg, f->offset);
        size_t esize = elem_size(f->type);

        if (f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(f->descriptor)
            && json_is_object(v)) {
                size_t n = json_object_size(v);
                if (n == 0) {
                        return true;
                }
                *arr = rpc_xcalloc(n, esize);
                *count = 0;
                for (void *it = json_object_iter((json_t *) v); it != NULL;
                     it = json_object_iter_next((json_t *) v, it)) {
                        const char *key = json_object_iter_key(it);
                        const json_t *val = json_object_iter_value(it);
                        size_t old = path_push_name(c, key);
                        bool ok = map_entry(
                            c, f->descriptor, key, val, (ProtobufCMessage **) *arr + *count);
                        path_pop(c, old);
                        if (!ok) {
                                return false;
                        }
                        (*count)++;
                }
                return true;
        }
        if (!json_is_array(v)) {
                return fail(c, "expected an array, got %s", json_kind(v));
        }
        size_t n = json_array_size(v);
        if (n == 0) {
                return true;
        }
        *arr = rpc_xcalloc(n, esize);
        *count = 0;
        for (size_t i = 0; i < n; i++) {
                const json_t *e = json_array_get(v, i);
                size_t old = path_push_index(c, i);
                bool ok;
                if (json_is_null(e)) {
                        ok = fail(c, "null is not allowed in an array");
                } else {
                        ok = set_value(c, f, e, (char *) *arr + i * esize);
                }
                path_pop(c, old);
                if (!ok) {
                        return false;
                }
                (*count)++;
        }
        return true;
}

static const ProtobufCFieldDescriptor *
find_field(const ProtobufCMessageDescriptor *desc, const char *key)
{
        const ProtobufCFieldDescriptor *f
            = protobuf_c_message_descriptor_get_field_by_name(desc, key);
        char camel[256];

        if (f != NULL) {
                return f;
        }
        for (unsigned i = 0; i < desc->n_fields; i++) {
                cli_json_camel_name(desc->fields[i].name, camel, sizeof(camel));
                if (strcmp(camel, key) == 0) {
                        return &desc->fields[i];
                }
        }
        return NULL;
}

static bool
set_field(conv *c, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, const json_t *v)
{
        const ProtobufCMessageDescriptor *desc = msg->descriptor;

        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                return set_repeated(c, msg, f, v);
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                uint32_t *which = MEMBER(msg, f->quantifier_offset);
                if (*which != 0) {
                        const ProtobufCFieldDescriptor *other
                            = protobuf_c_message_descriptor_get_field(desc, *which);
                        return fail(c, "only one of a oneof may be set (%s is set)",
                            other != NULL ? other->name : "another field");
                }
                if (!set_value(c, f, v, MEMBER(msg, f->offset))) {
                        return false;
                }
                *which = f->id;
                return true;
        }
        if (!set_value(c, f, v, MEMBER(msg, f->offset))) {
                return false;
        }
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING
            && f->type != PROTOBUF_C_TYPE_MESSAGE) {
                *(protobuf_c_boolean *) MEMBER(msg, f->quantifier_offset) = 1;
        }
        return true;
}

static bool
to_message(
    conv *c, const ProtobufCMessageDescriptor *desc, const json_t *obj, ProtobufCMessage **ret_msg)
{
        ProtobufCMessage *msg;
        bool *seen;

        if (!json_is_object(obj)) {
                return fail(c, "expected an object for %s, got %s", desc->name, json_kind(obj));
        }
        msg = rpc_xcalloc(1, desc->sizeof_message);
        desc->message_init(msg);
        seen = rpc_xcalloc(desc->n_fields > 0 ? desc->n_fields : 1, sizeof(*seen));
        for (void *it = json_object_iter((json_t *) obj); it != NULL;
             it = json_object_iter_next((json_t *) obj, it)) {
                const char *key = json_object_iter_key(it);
                const json_t *val = json_object_iter_value(it);
                const ProtobufCFieldDescriptor *f = find_field(desc, key);
                size_t old;
                bool ok;
                if (f == NULL) {
                        fail(c, "unknown field \"%s\" in %s", key, desc->name);
                        goto err;
                }
                if (seen[f - desc->fields]) {
                        fail(c, "field \"%s\" given twice", f->name);
                        goto err;
                }
                seen[f - desc->fields] = true;
                if (json_is_null(val)) {
                        continue;
                }
                old = path_push_name(c, key);
                ok = set_field(c, msg, f, val);
                if (!ok) {
                        goto err;
                }
                path_pop(c, old);
        }
        free(seen);
        *ret_msg = msg;
        return true;
err:
        free(seen);
        protobuf_c_message_free_unpacked(msg, NULL);
        return false;
}

rpc_status
cli_json_to_message(const ProtobufCMessageDescriptor *desc, const json_t *json,
    ProtobufCMessage **ret_msg, char *errbuf, size_t errlen)
{
        conv c = { .err = errbuf, .errlen = errlen };

        return to_message(&c, desc, json, ret_msg) ? RPC_OK : RPC_INVALID_ARGUMENT;
}

rpc_status
cli_json_parse_message(const ProtobufCMessageDescriptor *desc, const char *text,
    ProtobufCMessage **ret_msg, char *errbuf, size_t errlen)
{
        json_error_t jerr;
        json_t *json = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
        rpc_status st;

        if (json == NULL) {
                snprintf(errbuf, errlen, "bad JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                    jerr.column);
                return RPC_INVALID_ARGUMENT;
        }
        st = cli_json_to_message(desc, json, ret_msg, errbuf, errlen);
        json_decref(json);
        return st;
}

/* --- message -> JSON --- */

/* A JSON string from bytes that should be UTF-8; bytes that are not become '?'. */
static json_t *
text_json(const char *s)
{
        json_t *j;
        char *copy;

        if (s == NULL) {
                return json_string("");
        }
        j = json_string(s);
        if (j != NULL) {
                return j;
        }
        copy = rpc_xstrdup(s);
        for (char *p = copy; *p != '\0'; p++) {
                if ((unsigned char) *p >= 0x80) {
                        *p = '?';
                }
        }
        j = json_string(copy);
        free(copy);
        return j;
}

static json_t *
double_json(double d)
{
        if (isnan(d)) {
                return json_string("NaN");
        }
        if (isinf(d)) {
                return json_string(d > 0 ? "Infinity" : "-Infinity");
        }
        return json_real(d);
}

static json_t *
value_json(const ProtobufCFieldDescriptor *f, const void *src)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
                return json_integer(*(const int32_t *) src);
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                return json_integer(*(const uint32_t *) src);
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
                return json_integer(*(const int64_t *) src);
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64: {
                uint64_t u = *(const uint64_t *) src;
                char buf[32];
                if (u <= INT64_MAX) {
                        return json_integer((json_int_t) u);
                }
                snprintf(buf, sizeof(buf), "%" PRIu64, u);
                return json_string(buf);
        }
        case PROTOBUF_C_TYPE_FLOAT:
                return double_json(*(const float *) src);
        case PROTOBUF_C_TYPE_DOUBLE:
                return double_json(*(const double *) src);
        case PROTOBUF_C_TYPE_BOOL:
                return json_boolean(*(const protobuf_c_boolean *) src);
        case PROTOBUF_C_TYPE_ENUM: {
                int v = *(const int *) src;
                const ProtobufCEnumValue *ev
                    = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
                return ev != NULL ? json_string(ev->name) : json_integer(v);
        }
        case PROTOBUF_C_TYPE_STRING:
                return text_json(*(char *const *) src);
        case PROTOBUF_C_TYPE_BYTES: {
                const ProtobufCBinaryData *bd = src;
                char *b64 = cli_base64_encode(bd->data, bd->len);
                json_t *j = json_string(b64);
                free(b64);
                return j;
        }
        case PROTOBUF_C_TYPE_MESSAGE: {
                const ProtobufCMessage *sub = *(ProtobufCMessage *const *) src;
                return sub != NULL ? cli_json_from_message(sub) : json_null();
        }
        }
        return json_null();
}

/* The JSON object key of a map entry's key field. */
static char *
map_key(const ProtobufCMessage *entry)
{
        const ProtobufCFieldDescriptor *kf = &entry->descriptor->fields[0];
        json_t *k = value_json(kf, CMEMBER(entry, kf->offset));
        char *s;

        if (json_is_string(k)) {
                s = rpc_xstrdup(json_string_value(k));
        } else if (json_is_boolean(k)) {
                s = rpc_xstrdup(json_is_true(k) ? "true" : "false");
        } else {
                s = json_dumps(k, JSON_ENCODE_ANY);
        }
        json_decref(k);
        return s;
}

json_t *
cli_json_from_message(const ProtobufCMessage *msg)
{
        const ProtobufCMessageDescriptor *desc = msg->descriptor;
        json_t *obj = json_object();

        for (unsigned i = 0; i < desc->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &desc->fields[i];
                json_t *v;

                if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                        if (*(const uint32_t *) CMEMBER(msg, f->quantifier_offset) != f->id) {
                                continue;
                        }
                        v = value_json(f, CMEMBER(msg, f->offset));
                } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = *(const size_t *) CMEMBER(msg, f->quantifier_offset);
                        const char *arr = *(char *const *) CMEMBER(msg, f->offset);
                        size_t esize = elem_size(f->type);
                        if (f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(f->descriptor)) {
                                v = json_object();
                                for (size_t k = 0; k < n; k++) {
                                        const ProtobufCMessage *e
                                            = ((ProtobufCMessage *const *) arr)[k];
                                        const ProtobufCFieldDescriptor *vf
                                            = &e->descriptor->fields[1];
                                        char *key = map_key(e);
                                        json_object_set_new(
                                            v, key, value_json(vf, CMEMBER(e, vf->offset)));
                                        free(key);
                                }
                        } else {
                                v = json_array();
                                for (size_t k = 0; k < n; k++) {
                                        json_array_append_new(v, value_json(f, arr + k * esize));
                                }
                        }
                } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL
                    && f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE
                    && !*(const protobuf_c_boolean *) CMEMBER(msg, f->quantifier_offset)) {
                        v = json_null();
                } else {
                        v = value_json(f, CMEMBER(msg, f->offset));
                }
                json_object_set_new(obj, f->name, v);
        }
        return obj;
}

char *
cli_json_dump(const json_t *json)
{
        return json_dumps(
            json, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY);
}
