/* What a datagram says and what hostregd would make of it: shared by
 * `hostreg decode` and `hostreg dump`, so both give the daemon's own verdict
 * (hr_datagram_judge, the very function hostregd calls). */
#ifndef HR_TOOLS_INSPECT_H
#define HR_TOOLS_INSPECT_H

#include "datagram.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct hr_inspect {
    struct hr_verdict v; /* hostregd's verdict; for a reply, the codec's (ACCEPT or DROP) */
    size_t len;
    bool reply; /* judged as an ack from the registry, not as a request to it */
};

/* Judges one datagram as hostregd would (lib/protocol/datagram.c) under
 * `ctx` (its keys NULL: open; its now_s the unix second hostregd would have
 * read it at, 0: no timestamp window). With `reply` it is an ack from the
 * registry instead: only decoded, and valid when it is a readable ack. An ack
 * judged as a request is dropped (bad_type), and its fields are decoded for
 * showing all the same. */
void hr_inspect(const uint8_t *buf, size_t len, const struct hr_datagram_ctx *ctx, bool reply,
                struct hr_inspect *out);

/* "valid", "invalid" or "dropped" (hr_verdict_name). */
const char *hr_inspect_verdict(const struct hr_inspect *r);

/* One line of fields and verdict, no newline: "heartbeat seq=.. host=.. ... valid". */
void hr_inspect_print(FILE *out, const struct hr_inspect *r);

/* The same as a JSON object (new reference). */
json_t *hr_inspect_json(const struct hr_inspect *r);

/* Datagram text forms: hex (any whitespace, optional 0x, ':' separators) or
 * base64. Returns the byte count, or -1 when the text is neither. */
long hr_parse_datagram_text(const char *text, uint8_t *out, size_t cap);

#endif
