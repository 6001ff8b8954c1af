/* The request-body parsing of gateway/gateway.c, mirrored for the JSON fuzz
 * harnesses. gateway.c keeps it in static functions that answer through
 * evhttp (read_json, get_str, get_status), so the harnesses cannot call it;
 * these copies make the same library calls in the same order, with the same
 * flags and limits, and return -1 where gateway.c sends its 4xx answer.
 *
 * KEEP IN SYNC with gateway/gateway.c: a change there to how a body or a
 * field is read must be made here too, or the fuzzers test something else. */
#ifndef HR_FUZZ_GW_BODY_H
#define HR_FUZZ_GW_BODY_H

#include "request.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gateway.c read_json: the body as a JSON object (the caller owns it), or
 * NULL where the gateway answers 413 (over HR_GATEWAY_MAX_BODY) or 400 (empty
 * unless `empty_ok`, invalid JSON, duplicate keys, not an object). An empty
 * body is {} when `empty_ok`. */
json_t *gw_read_json(const uint8_t *body, size_t len, bool empty_ok);

/* gateway.c get_str: string field `key` of `o` into dst[cap]. 0 (dst is ""
 * when the field is absent or null and not required), or -1 where the gateway
 * answers 400: missing and required, not a string, cap or more bytes long, or
 * a \u0000 inside. */
int gw_get_str(json_t *o, const char *key, bool required, char *dst, size_t cap);

/* gateway.c get_status: the "status" field; absent is HR_STATUS_NONE
 * (unless required), anything but "idle" or "busy" is -1. */
int gw_get_status(json_t *o, bool required, enum hr_status *out);

#endif
