/* Identifiers, written once: the character set of hostIds, roomIds and
 * region names, UUIDs in text and as 16 bytes, and the one stored form of a
 * hostId. The wire codec, the request rules, the gateway, the keys and the
 * host library all call these. No I/O, no allocation. */
#ifndef HR_ID_H
#define HR_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HR_ID_MAX 64   /* hostId and roomId, in characters (the original service's limit) */
#define HR_UUID_LEN 36 /* "550e8400-e29b-41d4-a716-446655440000" */

/* True when s[0..len) is 1..HR_ID_MAX characters of [A-Za-z0-9._:-]. */
bool hr_id_valid(const char *s, size_t len);

/* The hostId s[0..len) in its one stored form, into out: a UUID (either
 * case, with its four dashes) in lower case, any other valid id as it is.
 * "550E8400-..." and "550e8400-..." are one host with one key, one entry
 * and one per-host signing key. Returns true, or false when s breaks the id
 * rule (then out is ""). `out` may be `s` itself. */
bool hr_id_canon(const char *s, size_t len, char out[HR_ID_MAX + 1]);

/* UUID text <-> 16 bytes. hr_uuid_parse accepts either case, with the four
 * dashes, and returns false for anything else; hr_uuid_format writes lower
 * case, the stored form of a hostId sent as 16 bytes. */
bool hr_uuid_parse(const char *s, size_t len, uint8_t out[16]);
void hr_uuid_format(const uint8_t in[16], char out[HR_UUID_LEN + 1]);

#endif
