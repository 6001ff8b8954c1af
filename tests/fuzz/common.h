/* Checks shared by the fuzz harnesses: what a request accepted by
 * hr_request_check must look like, whichever front end (UDP or HTTP) built
 * it. Each failed check aborts (fuzz.h, CHECK). */
#ifndef HR_FUZZ_COMMON_H
#define HR_FUZZ_COMMON_H

#include "request.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>

/* The contract's default rules (hr_rules_default), filled on first use. */
const struct hr_rules *fuzz_default_rules(void);

/* The most a deployment can configure: HR_REGIONS_MAX regions of
 * HR_REGION_MAX characters ("r00-" then padding), the last one the default. */
const struct hr_rules *fuzz_full_rules(void);

/* True when s[0..cap) holds a NUL. */
bool fuzz_terminated(const char *s, size_t cap);

/* The canonical form of a hostId (a UUID in lower case), as hr_request_check
 * leaves it; false when the id breaks the id rule. */
bool fuzz_canonical_host(const char *host, char out[HR_ID_MAX + 1]);

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

#endif
