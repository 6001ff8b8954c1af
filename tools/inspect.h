/* What a datagram says and what hostregd would make of it: shared by
 * `hostreg decode` and `hostreg dump`, so both give the daemon's own verdict
 * (the same codec and rules, lib/wire.c and lib/request.c). */
#ifndef HR_TOOLS_INSPECT_H
#define HR_TOOLS_INSPECT_H

#include "keys.h"
#include "request.h"
#include "wire.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct hr_inspect {
    int err;        /* HR_OK: valid; else the hr_err the daemon would give */
    int header_ok;  /* the fixed header was readable (type and flags are known) */
    int payload_ok; /* the payload decoded (fields are known) */
    size_t len;
    struct hr_frame f; /* as decoded, before the rules normalise anything */
};

/* Decodes and judges one datagram against `rules`, and with `keys` (may be
 * NULL: open registry) its authentication as hostregd --key-file would,
 * except the timestamp window (captures are read after the fact). */
void hr_inspect(const uint8_t *buf, size_t len, const struct hr_rules *rules,
                const struct hr_keyring *keys, struct hr_inspect *out);

/* "refused (dropped, no answer)" for frame errors, "refused (answered invalid)"
 * for rule errors, "valid" otherwise. */
const char *hr_inspect_verdict(const struct hr_inspect *r);

/* One line of fields and verdict, no newline: "heartbeat seq=.. host=.. ... valid". */
void hr_inspect_print(FILE *out, const struct hr_inspect *r);

/* The same as a JSON object (new reference). */
json_t *hr_inspect_json(const struct hr_inspect *r);

/* Datagram text forms: hex (any whitespace, optional 0x, ':' separators) or
 * base64. Returns the byte count, or -1 when the text is neither. */
long hr_parse_datagram_text(const char *text, uint8_t *out, size_t cap);

#endif
