/* json.h: generic JSON <-> protobuf-c message conversion, driven by the message descriptors. */
#ifndef MERCATO_CLI_JSON_H
#define MERCATO_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "rpc.h"

/*
 * The mapping follows proto3's JSON form, with two choices of our own for readability:
 * replies print the proto field names (snake_case) and 64-bit integers as JSON numbers.
 *
 * JSON -> message accepts:
 *   - keys written as the proto field name ("user_id") or in lowerCamelCase ("userId");
 *     an unknown key, or one field given twice, is refused;
 *   - integers as JSON numbers (an integral real is fine) or decimal strings, checked
 *     against the field's range;
 *   - bools as true/false; strings as strings; bytes as base64 (standard or URL-safe,
 *     padding optional);
 *   - enums by value name ("ORDER_STATUS_COMPLETED") or by number;
 *   - floats and doubles as numbers or "NaN", "Infinity", "-Infinity";
 *   - nested messages as objects, repeated fields as arrays, maps as objects;
 *   - null for any field: the field keeps its default.
 *
 * message -> JSON prints every field, defaults included: scalars, enums by name (by number
 * when the value has no name), bytes as base64, 64-bit integers as numbers (a uint64 above
 * INT64_MAX as a decimal string), unset message fields as null, repeated fields as arrays,
 * maps as objects. Keys come in field-number order.
 */

/* Converts a JSON value (an object) to a message of type desc. On success *ret_msg owns a
 * message allocated with malloc, to free with protobuf_c_message_free_unpacked(msg, NULL).
 * On failure returns INVALID_ARGUMENT and writes the reason, with the path of the field
 * ("items[1].quantity: ..."), into errbuf; *ret_msg is left unset. */
rpc_status cli_json_to_message(const ProtobufCMessageDescriptor *desc, const json_t *json,
    ProtobufCMessage **ret_msg, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* Parses JSON text and converts it as cli_json_to_message does. A syntax error is
 * INVALID_ARGUMENT too ("bad JSON: ..."). */
rpc_status cli_json_parse_message(const ProtobufCMessageDescriptor *desc, const char *text,
    ProtobufCMessage **ret_msg, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

/* Converts a message to a new JSON object (the caller owns the reference). Never fails
 * short of memory, where jansson's allocation failure aborts. */
json_t *cli_json_from_message(const ProtobufCMessage *msg);

/* Serializes a JSON value as indented text with keys in insertion order; the caller frees
 * the string. */
char *cli_json_dump(const json_t *json);

/* Base64 (RFC 4648, standard alphabet, padded). Returns a malloc'd NUL-terminated string. */
char *cli_base64_encode(const uint8_t *data, size_t len);

/* Decodes base64 in the standard or URL-safe alphabet, padding optional. Returns false on a
 * character outside the alphabet or a bad length; on success *ret_data (malloc'd, may be
 * NULL for empty input) and *ret_len hold the bytes. */
bool cli_base64_decode(const char *text, uint8_t **ret_data, size_t *ret_len);

/* The lowerCamelCase form of a proto field name into buf ("user_id" -> "userId"). */
void cli_json_camel_name(const char *name, char *buf, size_t len);

#endif
