/* Checks shared by the fuzz harnesses: what a request accepted by
 * hr_request_check must look like, whichever front end (UDP or HTTP) built
 * it, and what the gateway's body reading (gateway/body.h) must make of a
 * body, worked out from the JSON alone. Each failed check aborts (fuzz.h,
 * CHECK). */
#ifndef HR_FUZZ_COMMON_H
#define HR_FUZZ_COMMON_H

#include "request.h"
#include "wire.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The contract's default rules (hr_rules_default), filled on first use. */
const struct hr_rules *fuzz_default_rules(void);

/* The most a deployment can configure: HR_REGIONS_MAX regions of
 * HR_REGION_MAX characters ("r00-" then padding), the last one the default. */
const struct hr_rules *fuzz_full_rules(void);

/* True when s[0..cap) holds a NUL. */
bool fuzz_terminated(const char *s, size_t cap);

/* Same type, seq, room, region, status and hostId; with `exact_host` false a
 * UUID hostId may differ in case (it travels as 16 bytes and comes back in
 * lower case: docs/PROTOCOL.md 2.6). */
bool fuzz_same_request(const struct hr_request *a, const struct hr_request *b, bool exact_host);

/* Encodes `req` (hr_wire_encode_request), decodes that again into `out` and
 * requires the same fields. Returns the encoding's length, the bytes in buf. */
size_t fuzz_round_trip(const struct hr_request *req, bool exact_host, uint8_t *buf, size_t cap,
                       struct hr_frame *out);

/* What hr_request_check promises about a request it accepted under `rules`:
 * a canonical valid hostId, a valid room, a configured region and a status of
 * idle or busy where the type needs them; checking it again changes nothing;
 * and it travels on the wire and comes back identical and still valid (the
 * gateway and the daemon accept the same requests). */
void fuzz_check_accepted(const struct hr_request *r, const struct hr_rules *rules);

/* True when `name` is one of the configured regions. */
bool fuzz_region_configured(const struct hr_rules *rules, const char *name);

/* --- what the gateway must make of a request body (gateway/body.h) --- */

/* The body as the contract describes what the gateway takes: a JSON object
 * with no duplicate keys and no \u0000 in a string (jansson's default), an
 * empty body being {} when `empty_ok`. NULL when it is not one, and then the
 * gateway must refuse it. The caller frees the result. */
json_t *fuzz_json_object(const uint8_t *data, size_t size, bool empty_ok);

/* String field `key` of `o` as a request can hold it: "" when absent or null
 * (NULL then when `required`), its characters when it is a string of fewer
 * than `cap` bytes; NULL for anything else. */
const char *fuzz_json_field(json_t *o, const char *key, bool required, size_t cap);

/* The request of `type` (a heartbeat or a status update) that body `o` asks
 * for, unchecked, in `out`: false when a field its type needs is missing or
 * no request can hold it (another type, too long, a status other than
 * "idle", "busy" or ""), which the gateway refuses before the rules. */
bool fuzz_json_request(json_t *o, enum hr_msg_type type, struct hr_request *out);

/* What every hr_body_* answer must be: 0, 400 or 413, 413 exactly when the
 * body is over HR_GATEWAY_MAX_BODY, and a refusal says why in a terminated,
 * non-empty err[errlen]. True when the body was within the limit, so that
 * what it holds decides. */
bool fuzz_check_body_verdict(int code, size_t size, const char *err, size_t errlen);

/* Reads body data[size] as the gateway reads a request of `type` (heartbeat:
 * hr_body_heartbeat, status update: hr_body_status) under `rules`, into `got`,
 * and checks the verdict against `want`, the request the body asks for
 * (fuzz_json_request; NULL when there is none): refused without one; with
 * one, hr_request_check decides, and so does the daemon for the same request
 * sent as a datagram (encoded before the check); a request refused by a rule
 * is answered 400 with that rule's message, an accepted one is `want` checked
 * (fuzz_check_accepted holds). Returns the code. */
int fuzz_check_request_body(enum hr_msg_type type, const uint8_t *data, size_t size,
                            const struct hr_rules *rules, const struct hr_request *want,
                            struct hr_request *got);

#endif
