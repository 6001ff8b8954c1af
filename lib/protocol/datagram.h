/* What the registry makes of one received datagram, decided once: whether it
 * is a frame it reads (size, magic, version, type, flags), whether it is
 * authenticated as the key set requires, whether its payload decodes, and
 * whether the request keeps the rules; and so whether it is answered at all.
 * hostregd acts on this verdict; `hostreg decode`, `hostreg dump` and the
 * fuzz harness report it. Bytes in, a verdict out: no sockets, no clock, no
 * allocation (docs/PROTOCOL.md 1.1 and 1.2 give the order of the checks). */
#ifndef HR_DATAGRAM_H
#define HR_DATAGRAM_H

#include "keys.h"
#include "request.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum hr_verdict_kind {
    HR_VERDICT_ACCEPT,  /* a valid request: it goes to the store and its outcome is acked */
    HR_VERDICT_INVALID, /* a readable request that breaks a rule: acked INVALID with the reason */
    HR_VERDICT_DROP,    /* not a frame the registry reads: counted, and no answer at all */
};

/* What the verdict depends on besides the bytes. */
struct hr_datagram_ctx {
    const struct hr_rules *rules;
    const struct hr_keyring *keys; /* NULL: an open registry, unauthenticated frames accepted */
    uint32_t ttl_s;                /* an authenticated frame's timestamp: within ±ttl_s of now */
    int64_t now_s;                 /* unix seconds; 0: no timestamp window (a capture read later) */
};

struct hr_verdict {
    enum hr_verdict_kind kind;
    int reason;      /* an hr_err: HR_OK for ACCEPT, else why */
    bool stale;      /* DROP for HR_E_AUTH because of the timestamp window */
    bool answered;   /* an ack goes back: always for ACCEPT; for INVALID when even its smallest
                        form fits in the datagram's size (an ack never amplifies) */
    bool header_ok;  /* the fixed header was readable (frame.type and flags are known) */
    bool payload_ok; /* the payload was unpacked (frame.req holds its fields) */
    struct hr_frame frame; /* as decoded, before the rules normalise anything; points into
                              the datagram, which must outlive it */
    struct hr_request req; /* ACCEPT: the request checked and normalised, for the store */
};

/* Judges buf[0..len) as the registry does when it receives it. */
void hr_datagram_judge(const uint8_t *buf, size_t len, const struct hr_datagram_ctx *ctx,
                       struct hr_verdict *out);

/* "valid", "invalid" or "dropped". */
const char *hr_verdict_name(const struct hr_verdict *v);

#endif
