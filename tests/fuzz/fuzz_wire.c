/* Fuzz harness for the datagram codec (lib/protocol/wire.c) and the request rules
 * (lib/protocol/request.c), the path every UDP datagram takes in hostregd:
 *
 *   - hr_wire_decode's verdict follows the check order of docs/PROTOCOL.md 1.1;
 *   - a decoded request re-encodes (hr_wire_encode_request), decodes again to
 *     the same fields, and that encoding is a fixed point;
 *   - hr_request_check with the default rules returns a request-rule verdict,
 *     and a request it accepts is valid, stays the same when checked again and
 *     survives a round trip;
 *   - hr_wire_peek_host (which picks an authenticating daemon's key) names the
 *     same host the full decode does, and a request signed with
 *     hr_wire_encode_request_auth verifies, decodes the same, and stops
 *     verifying when any bit changes;
 *   - for an ack, hr_wire_encode_ack with every limit 0..64 never writes past
 *     the limit, drops fields exactly in the documented order, and what it
 *     writes decodes to the same seq and result;
 *   - hr_datagram_judge, the verdict hostregd acts on (and the tools show),
 *     is the one the steps above give: dropped for a frame error, an ack or
 *     a payload that does not unpack, invalid for a field or a rule, valid
 *     with the checked request otherwise; open, and with a deployment key
 *     (unsigned or wrongly signed frames dropped as bad_auth).
 *
 * Any inconsistency aborts. */
#include "fuzz.h"

#include "common.h"
#include "datagram.h"
#include "err.h"
#include "request.h"
#include "wire.h"

#include <stdbool.h>
#include <string.h>

/* The key of the harness's own signed frames: any fixed value will do. */
static const uint8_t KEY[32] = {0x68, 0x6f, 0x73, 0x74, 0x72, 0x65, 0x67, 0x2d, 0x66, 0x75, 0x7a,
                                0x7a, 0x2d, 0x6b, 0x65, 0x79, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10};

static bool is_request_type(uint8_t t)
{
    return t == HR_MSG_HEARTBEAT || t == HR_MSG_STATUS || t == HR_MSG_LEAVE;
}

/* The verdict docs/PROTOCOL.md 1.1 gives for the frame part (steps 1-7), or
 * HR_OK when the frame part is fine and the payload decides. */
static int expected_frame_verdict(const uint8_t *d, size_t n)
{
    if (n > HR_WIRE_MAX)
        return HR_E_TOO_BIG;
    if ((n >= 1 && d[0] != HR_WIRE_MAGIC0) || (n >= 2 && d[1] != HR_WIRE_MAGIC1))
        return HR_E_MAGIC;
    if (n < HR_WIRE_HDR)
        return HR_E_TRUNCATED;
    if (d[2] != HR_WIRE_VERSION)
        return HR_E_VERSION;
    if (!is_request_type(d[3]) && d[3] != HR_MSG_ACK)
        return HR_E_TYPE;
    if (d[4] & ~HR_WIRE_FLAG_AUTH)
        return HR_E_FLAGS;
    if ((d[4] & HR_WIRE_FLAG_AUTH) && n < HR_WIRE_HDR + HR_WIRE_AUTH_HDR + HR_WIRE_TAG)
        return HR_E_TRUNCATED;
    return HR_OK;
}

/* The signed form of a decoded request: verifies with the key, not with
 * another, not after any one-bit change, and carries the same request. */
static void check_signed(const struct hr_request *req, const struct hr_frame *f,
                         const uint8_t *plain, size_t plain_len, size_t flip)
{
    uint8_t buf[HR_WIRE_MAX], other[32];
    struct hr_frame a;
    size_t n = hr_wire_encode_request_auth(req, KEY, f->key_id, f->timestamp, buf, sizeof(buf));
    CHECK(n == plain_len + HR_WIRE_AUTH_HDR + HR_WIRE_TAG);
    /* Too small a buffer is refused, not overrun. */
    CHECK(hr_wire_encode_request_auth(req, KEY, f->key_id, f->timestamp, buf, n - 1) == 0);
    CHECK(hr_wire_parse_header(buf, n, &a) == HR_OK);
    CHECK((a.flags & HR_WIRE_FLAG_AUTH) && a.key_id == f->key_id && a.timestamp == f->timestamp);
    CHECK(a.tag == buf + n - HR_WIRE_TAG);
    CHECK(a.payload_len == plain_len - HR_WIRE_HDR);
    CHECK(memcmp(a.payload, plain + HR_WIRE_HDR, a.payload_len) == 0);
    CHECK(hr_wire_verify(buf, n, &a, KEY) == HR_OK);
    memcpy(other, KEY, sizeof(other));
    other[flip % sizeof(other)] ^= 0x80;
    CHECK(hr_wire_verify(buf, n, &a, other) == HR_E_AUTH);

    char peek[HR_ID_MAX + 1];
    int prc = hr_wire_peek_host(&a, peek);
    CHECK(hr_wire_decode_payload(&a) == HR_OK);
    CHECK(fuzz_same_request(&a.req, req, true));
    char canon[HR_ID_MAX + 1];
    if (hr_id_canon(req->host_id, strlen(req->host_id), canon))
        CHECK(prc == HR_OK && strcmp(peek, canon) == 0);
    else
        CHECK(prc == HR_E_HOST_ID);

    /* One changed bit anywhere: the frame no longer parses, or no longer verifies. */
    size_t bit = flip % (n * 8);
    buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    if (hr_wire_parse_header(buf, n, &a) == HR_OK)
        CHECK(hr_wire_verify(buf, n, &a, KEY) == HR_E_AUTH);
}

static void check_request(const uint8_t *data, size_t size, const struct hr_frame *f, int rc)
{
    const struct hr_rules *rules = fuzz_default_rules();
    const struct hr_request *r = &f->req;
    char peek[HR_ID_MAX + 1], canon[HR_ID_MAX + 1];
    int prc = hr_wire_peek_host(f, peek);

    /* Verdicts of the payload step: a protobuf refusal or a field too long. */
    CHECK(rc == HR_OK || rc == HR_E_DECODE || rc == HR_E_HOST_ID || rc == HR_E_ROOM_ID ||
          rc == HR_E_REGION);
    if (rc == HR_E_DECODE)
        return; /* peek reads less strictly than protobuf-c: nothing to compare */
    CHECK(r->type == f->type);
    CHECK(fuzz_terminated(r->host_id, sizeof(r->host_id)));
    if (rc == HR_E_HOST_ID) {
        /* The key lookup must not find a host where the decoder finds none. */
        CHECK(prc == HR_E_HOST_ID);
        return;
    }
    /* The host was read (the room and region come after it): peek must name
     * the same one, or the frame would be verified with another host's key. */
    if (hr_id_canon(r->host_id, strlen(r->host_id), canon))
        CHECK(prc == HR_OK && strcmp(peek, canon) == 0);
    else
        CHECK(prc == HR_E_HOST_ID);
    if (f->uuid_host) {
        uint8_t raw[16];
        char again[HR_UUID_LEN + 1];
        CHECK(hr_uuid_parse(r->host_id, strlen(r->host_id), raw));
        hr_uuid_format(raw, again);
        CHECK(strcmp(again, r->host_id) == 0); /* lower-case canonical */
    }
    if (rc != HR_OK)
        return;
    CHECK(fuzz_terminated(r->room_id, sizeof(r->room_id)));
    CHECK(fuzz_terminated(r->region, sizeof(r->region)));
    if (r->type != HR_MSG_HEARTBEAT)
        CHECK(!r->room_id[0] && !r->region[0]);
    if (r->type == HR_MSG_LEAVE)
        CHECK(r->status == HR_STATUS_NONE);

    /* Re-encoding: the same fields, and a fixed point. */
    uint8_t enc[HR_WIRE_MAX], enc2[HR_WIRE_MAX];
    struct hr_frame g;
    size_t n = fuzz_round_trip(r, false, enc, sizeof(enc), &g);
    CHECK(hr_wire_encode_request(&g.req, enc2, sizeof(enc2)) == n);
    CHECK(memcmp(enc, enc2, n) == 0);
    /* A buffer one byte short is refused, not overrun. */
    CHECK(hr_wire_encode_request(r, enc2, n - 1) == 0);

    check_signed(&g.req, f, enc, n, size ? data[size - 1] * 31u + size : 0);

    /* The rules. */
    struct hr_request c = *r;
    int crc = hr_request_check(&c, rules);
    CHECK(crc == HR_OK || crc == HR_E_HOST_ID || crc == HR_E_ROOM_ID || crc == HR_E_REGION ||
          crc == HR_E_STATUS || crc == HR_E_CAPACITY || crc == HR_E_SLOTS);
    CHECK((crc == HR_E_HOST_ID) == !hr_id_valid(r->host_id, strlen(r->host_id)));
    if (crc != HR_OK)
        return;
    fuzz_check_accepted(&c, rules);
}

static bool same_ack(const struct hr_ack *a, const struct hr_ack *b)
{
    return a->seq == b->seq && a->result == b->result && a->ttl == b->ttl &&
           a->interval == b->interval && a->reason == b->reason;
}

#define ACK_LIMIT_MAX 64
#define CANARY 0xa5

static void check_ack(const struct hr_ack *ack)
{
    uint8_t full[HR_WIRE_MAX];
    struct hr_frame g;

    /* The three forms, largest first: whole, without ttl and interval,
     * without reason as well (docs/PROTOCOL.md section 7). */
    struct hr_ack form[3] = {*ack, *ack, *ack};
    size_t size[3];
    form[1].ttl = form[1].interval = 0;
    form[2].ttl = form[2].interval = form[2].reason = 0;
    for (int i = 0; i < 3; i++) {
        size[i] = hr_wire_encode_ack(&form[i], full, sizeof(full));
        CHECK(size[i] >= HR_WIRE_HDR && size[i] <= ACK_LIMIT_MAX);
        CHECK(hr_wire_decode(full, size[i], &g) == HR_OK);
        CHECK(g.type == HR_MSG_ACK && same_ack(&g.ack, &form[i]));
        CHECK(i == 0 || size[i] <= size[i - 1]);
    }

    /* Every limit: never past it, and the largest form that fits. */
    size_t last = 0;
    for (size_t limit = 0; limit <= ACK_LIMIT_MAX; limit++) {
        uint8_t buf[ACK_LIMIT_MAX + 64];
        memset(buf, CANARY, sizeof(buf));
        size_t n = hr_wire_encode_ack(ack, buf, limit);
        CHECK(n <= limit);
        for (size_t i = limit; i < sizeof(buf); i++)
            CHECK(buf[i] == CANARY);
        int want = limit >= size[0] ? 0 : limit >= size[1] ? 1 : limit >= size[2] ? 2 : -1;
        if (want < 0) {
            CHECK(n == 0);
            continue;
        }
        CHECK(n == size[want]);
        CHECK(n >= last);
        last = n;
        CHECK(hr_wire_decode(buf, n, &g) == HR_OK);
        CHECK(g.type == HR_MSG_ACK && same_ack(&g.ack, &form[want]));
    }
}

/* The verdict the codec and the rules give for data[size] (frame: the frame
 * part's verdict; rc: hr_wire_decode's), with `signed_ok` whether the
 * authentication step passes, against hr_datagram_judge with `keys`. */
static void check_verdict(const uint8_t *data, size_t size, int frame, int rc,
                          const struct hr_frame *f, const struct hr_keyring *keys, bool signed_ok)
{
    const struct hr_datagram_ctx ctx = {fuzz_default_rules(), keys, 30, 0};
    struct hr_verdict v;
    hr_datagram_judge(data, size, &ctx, &v);
    CHECK(!v.stale);
    if (frame != HR_OK) {
        CHECK(v.kind == HR_VERDICT_DROP && v.reason == frame && !v.header_ok && !v.answered);
        return;
    }
    CHECK(v.header_ok);
    if (f->type == HR_MSG_ACK) {
        CHECK(v.kind == HR_VERDICT_DROP && v.reason == HR_E_TYPE && !v.payload_ok);
        return;
    }
    if (!signed_ok) {
        CHECK(v.kind == HR_VERDICT_DROP && v.reason == HR_E_AUTH && !v.payload_ok);
        return;
    }
    if (rc == HR_E_DECODE) {
        CHECK(v.kind == HR_VERDICT_DROP && v.reason == HR_E_DECODE && !v.payload_ok);
        return;
    }
    CHECK(v.payload_ok && fuzz_same_request(&v.frame.req, &f->req, true));
    struct hr_request c = f->req;
    int crc = rc == HR_OK ? hr_request_check(&c, ctx.rules) : rc;
    if (crc != HR_OK) {
        uint8_t ack[HR_WIRE_MAX];
        struct hr_ack smallest = {.seq = f->req.seq, .result = HR_RESULT_INVALID};
        CHECK(v.kind == HR_VERDICT_INVALID && v.reason == crc);
        CHECK(v.answered == (hr_wire_encode_ack(&smallest, ack, size) != 0));
        return;
    }
    CHECK(v.kind == HR_VERDICT_ACCEPT && v.reason == HR_OK && v.answered);
    CHECK(fuzz_same_request(&v.req, &c, true));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hr_frame f;
    int rc = hr_wire_decode(data, size, &f);
    int frame = expected_frame_verdict(data, size);

    /* Open, and with KEY as deployment key 1: a frame passes authentication
     * when it is flagged, names key 1, and its tag is KEY's. */
    static struct hr_keyring keys = {.n = 1};
    keys.keys[0].id = 1;
    keys.keys[0].mode = HR_KEY_DEPLOYMENT;
    memcpy(keys.keys[0].secret, KEY, sizeof(KEY));
    bool signed_ok = frame == HR_OK && (f.flags & HR_WIRE_FLAG_AUTH) && f.key_id == 1 &&
                     hr_wire_verify(data, size, &f, KEY) == HR_OK;
    check_verdict(data, size, frame, rc, &f, NULL, true);
    check_verdict(data, size, frame, rc, &f, &keys, signed_ok);

    if (frame != HR_OK) {
        CHECK(rc == frame);
        return 0;
    }

    /* The frame part is fine: the payload is located inside the datagram. */
    CHECK(f.version == HR_WIRE_VERSION && f.type == data[3] && f.flags == data[4]);
    if (f.flags & HR_WIRE_FLAG_AUTH) {
        const size_t off = HR_WIRE_HDR + HR_WIRE_AUTH_HDR;
        CHECK(f.key_id == data[HR_WIRE_HDR]);
        CHECK(f.timestamp == ((uint32_t)data[6] << 24 | (uint32_t)data[7] << 16 |
                              (uint32_t)data[8] << 8 | data[9]));
        CHECK(f.tag == data + size - HR_WIRE_TAG);
        CHECK(f.payload == data + off && f.payload_len == size - off - HR_WIRE_TAG);
        /* Whatever the tag, checking it is safe (it may even be right: the
         * corpus holds frames signed with KEY). */
        int v = hr_wire_verify(data, size, &f, KEY);
        CHECK(v == HR_OK || v == HR_E_AUTH);
    } else {
        CHECK(f.tag == NULL);
        CHECK(f.payload == data + HR_WIRE_HDR && f.payload_len == size - HR_WIRE_HDR);
        CHECK(hr_wire_verify(data, size, &f, KEY) == HR_E_AUTH);
    }

    if (f.type == HR_MSG_ACK) {
        CHECK(rc == HR_OK || rc == HR_E_DECODE);
        if (rc == HR_OK)
            check_ack(&f.ack);
    } else {
        check_request(data, size, &f, rc);
    }
    return 0;
}
