/* Unit tests of the wire codec (lib/protocol/wire.c): round trips, the examples of
 * docs/PROTOCOL.md (argv[1]), every frame error, the ack's no-amplification
 * rule, and a deterministic fuzz run over random and mutated datagrams. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "err.h"
#include "request.h"
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* 16 characters of the id set; four of them make a hostId at its limit. */
#define S16 "0123456789abcdef"
#define ID64 S16 S16 S16 S16
#define REGION64 "r-23456789abcdef" S16 S16 S16 /* HR_REGION_MAX */

#define UUID_LOWER "550e8400-e29b-41d4-a716-446655440000"
#define SEQ_CLOCK UINT64_C(1795861519981196) /* a clock in microseconds */
#define SEQ_2P53 ((UINT64_C(1) << 53) + 1)   /* the first integer a double cannot hold */

static const char *protocol_path; /* argv[1] */

/* Datagrams under test are copied to the end of this array, so that a read
 * past their end runs into the redzone AddressSanitizer puts after globals. */
static uint8_t tail_buf[HR_WIRE_MAX + 64];

static const uint8_t *at_tail(const uint8_t *d, size_t len)
{
    assert_true(len <= sizeof(tail_buf));
    uint8_t *p = tail_buf + sizeof(tail_buf) - len;
    if (len)
        memmove(p, d, len);
    return p;
}

static int decode_at_tail(const uint8_t *d, size_t len, struct hr_frame *f)
{
    return hr_wire_decode(at_tail(d, len), len, f);
}

static struct hr_request make_req(enum hr_msg_type type, uint64_t seq, const char *host,
                                  const char *room, const char *region, enum hr_status status)
{
    struct hr_request r;
    memset(&r, 0, sizeof(r));
    r.type = type;
    r.seq = seq;
    snprintf(r.host_id, sizeof(r.host_id), "%s", host);
    snprintf(r.room_id, sizeof(r.room_id), "%s", room);
    snprintf(r.region, sizeof(r.region), "%s", region);
    r.status = status;
    return r;
}

static bool is_uuid_text(const char *s)
{
    uint8_t raw[16];
    return hr_uuid_parse(s, strlen(s), raw);
}

/* The hostId a decoder gives back: a UUID in lower-case canonical form. */
static void expected_host(const char *host, char out[HR_ID_MAX + 1])
{
    uint8_t raw[16];
    if (hr_uuid_parse(host, strlen(host), raw))
        hr_uuid_format(raw, out);
    else
        snprintf(out, HR_ID_MAX + 1, "%s", host);
}

/* Hand-built protobuf, for payloads the encoder refuses to produce. */
struct pb {
    uint8_t b[HR_WIRE_MAX + 64];
    size_t n;
};

static void pb_frame(struct pb *p, uint8_t type)
{
    const uint8_t hdr[HR_WIRE_HDR] = {HR_WIRE_MAGIC0, HR_WIRE_MAGIC1, HR_WIRE_VERSION, type, 0};
    memcpy(p->b, hdr, sizeof(hdr));
    p->n = sizeof(hdr);
}

static void pb_varint(struct pb *p, uint64_t v)
{
    do {
        assert_true(p->n < sizeof(p->b));
        p->b[p->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
}

static void pb_uint(struct pb *p, unsigned field, uint64_t v)
{
    pb_varint(p, (uint64_t)field << 3);
    pb_varint(p, v);
}

static void pb_bytes(struct pb *p, unsigned field, uint8_t fill, size_t len)
{
    pb_varint(p, (uint64_t)field << 3 | 2);
    pb_varint(p, len);
    assert_true(p->n + len <= sizeof(p->b));
    memset(p->b + p->n, fill, len);
    p->n += len;
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                                */

static const char *const rt_hosts[] = {
    UUID_LOWER,
    "550E8400-E29B-41D4-A716-446655440000", /* upper case: still 16 bytes */
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "sim-host-1-1a2b3c4d",
    "550e8400-e29b-41d4-a716-44665544000g", /* UUID-shaped, not a UUID: text */
    "550e8400e29b41d4a716446655440000",     /* no dashes: text */
    "h",
    "A.b_c:d-9",
    ID64,
};

static const uint64_t rt_seqs[] = {0, 1, 127, 128, SEQ_2P53, SEQ_CLOCK, UINT64_MAX};

static const char *const rt_rooms[] = {"room-abc", "r", ID64};
static const char *const rt_regions[] = {"", "us-east-1", "local", REGION64};
static const enum hr_status rt_statuses[] = {HR_STATUS_NONE, HR_STATUS_IDLE, HR_STATUS_BUSY};

static void check_round_trip(const struct hr_request *in)
{
    uint8_t buf[HR_WIRE_MAX];
    struct hr_frame f;
    char want_host[HR_ID_MAX + 1];

    size_t n = hr_wire_encode_request(in, buf, sizeof(buf));
    assert_true(n > HR_WIRE_HDR);
    assert_int_equal(decode_at_tail(buf, n, &f), HR_OK);
    assert_int_equal(f.version, HR_WIRE_VERSION);
    assert_int_equal(f.type, in->type);
    assert_int_equal(f.flags, 0);
    assert_null(f.tag);
    assert_int_equal(f.payload_len, n - HR_WIRE_HDR);
    assert_int_equal(f.req.type, in->type);
    assert_int_equal(f.req.seq, in->seq);
    expected_host(in->host_id, want_host);
    assert_string_equal(f.req.host_id, want_host);
    assert_int_equal(f.uuid_host, is_uuid_text(in->host_id));
    if (in->type == HR_MSG_HEARTBEAT) {
        assert_string_equal(f.req.room_id, in->room_id);
        assert_string_equal(f.req.region, in->region);
    } else {
        assert_string_equal(f.req.room_id, ""); /* not part of the message */
        assert_string_equal(f.req.region, "");
    }
    assert_int_equal(f.req.status, in->type == HR_MSG_LEAVE ? HR_STATUS_NONE : in->status);
}

static void test_wire_request_round_trip(void **state)
{
    (void)state;
    size_t k = 0;
    for (size_t h = 0; h < ARRAY_LEN(rt_hosts); h++) {
        for (size_t s = 0; s < ARRAY_LEN(rt_seqs); s++) {
            for (size_t st = 0; st < ARRAY_LEN(rt_statuses); st++, k++) {
                const char *room = rt_rooms[k % ARRAY_LEN(rt_rooms)];
                const char *region = rt_regions[k % ARRAY_LEN(rt_regions)];
                struct hr_request r = make_req(HR_MSG_HEARTBEAT, rt_seqs[s], rt_hosts[h], room,
                                               region, rt_statuses[st]);
                check_round_trip(&r);
                r = make_req(HR_MSG_STATUS, rt_seqs[s], rt_hosts[h], "", "", rt_statuses[st]);
                check_round_trip(&r);
            }
            struct hr_request r =
                make_req(HR_MSG_LEAVE, rt_seqs[s], rt_hosts[h], "", "", HR_STATUS_NONE);
            check_round_trip(&r);
        }
    }
}

/* A UUID travels as its 16 raw bytes, anything else as text. */
static void test_wire_uuid_host_travels_as_16_bytes(void **state)
{
    (void)state;
    static const uint8_t raw[16] = {0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4,
                                    0xa7, 0x16, 0x44, 0x66, 0x55, 0x44, 0x00, 0x00};
    uint8_t a[HR_WIRE_MAX], b[HR_WIRE_MAX];
    struct hr_request r = make_req(HR_MSG_LEAVE, 1, UUID_LOWER, "", "", HR_STATUS_NONE);
    size_t na = hr_wire_encode_request(&r, a, sizeof(a));
    /* header, seq field (08 01), host_uuid field (12 10) and the bytes */
    assert_int_equal(na, HR_WIRE_HDR + 2 + 2 + 16);
    assert_int_equal(a[HR_WIRE_HDR + 2], 0x12);
    assert_int_equal(a[HR_WIRE_HDR + 3], 16);
    assert_memory_equal(a + HR_WIRE_HDR + 4, raw, 16);

    /* The same length of text that is not a UUID goes as host_id (field 3). */
    r = make_req(HR_MSG_LEAVE, 1, "550e8400-e29b-41d4-a716-44665544000g", "", "", HR_STATUS_NONE);
    size_t nb = hr_wire_encode_request(&r, b, sizeof(b));
    assert_int_equal(nb, na + HR_UUID_LEN - 16);
    assert_int_equal(b[HR_WIRE_HDR + 2], 0x1a);

    struct hr_frame f;
    assert_int_equal(decode_at_tail(b, nb, &f), HR_OK);
    assert_int_equal(f.uuid_host, 0);
}

static void test_wire_encode_request_respects_cap(void **state)
{
    (void)state;
    uint8_t buf[HR_WIRE_MAX + 16];
    struct hr_request r =
        make_req(HR_MSG_HEARTBEAT, UINT64_MAX, ID64, ID64, REGION64, HR_STATUS_BUSY);
    r.capacity = HR_CAPACITY_MAX;
    r.available_slots = HR_CAPACITY_MAX - 1;
    r.slots_given = true;
    size_t full = hr_wire_encode_request(&r, buf, sizeof(buf));
    /* the largest request there is (docs/PROTOCOL.md, section 8) */
    assert_int_equal(full, 224);
    for (size_t cap = 0; cap <= full + 2; cap++) {
        memset(buf, 0xa5, sizeof(buf));
        size_t n = hr_wire_encode_request(&r, buf, cap);
        assert_int_equal(n, cap < full ? 0 : full);
        for (size_t i = cap; i < sizeof(buf); i++)
            assert_int_equal(buf[i], 0xa5); /* nothing written past cap */
    }
    /* Only requests have an encoding here. */
    r.type = HR_MSG_ACK;
    assert_int_equal(hr_wire_encode_request(&r, buf, sizeof(buf)), 0);
    r.type = (enum hr_msg_type)0;
    assert_int_equal(hr_wire_encode_request(&r, buf, sizeof(buf)), 0);
}

static void test_wire_ack_round_trip(void **state)
{
    (void)state;
    static const uint32_t u32s[] = {0, 1, 20, 30, 86400, UINT32_MAX};
    static const uint32_t reasons[] = {0, HR_E_HOST_ID, HR_E_REGION, HR_E_UNAVAILABLE, UINT32_MAX};
    uint8_t buf[HR_WIRE_MAX];
    for (int res = HR_RESULT_NONE; res <= HR_RESULT_UNAUTHORIZED; res++) {
        for (size_t s = 0; s < ARRAY_LEN(rt_seqs); s++) {
            for (size_t t = 0; t < ARRAY_LEN(u32s); t++) {
                for (size_t q = 0; q < ARRAY_LEN(reasons); q++) {
                    struct hr_ack a = {rt_seqs[s], (enum hr_result)res, u32s[t],
                                       u32s[ARRAY_LEN(u32s) - 1 - t], reasons[q]};
                    size_t n = hr_wire_encode_ack(&a, buf, sizeof(buf));
                    assert_true(n >= HR_WIRE_HDR && n <= 36); /* 36: the largest ack */
                    struct hr_frame f;
                    assert_int_equal(decode_at_tail(buf, n, &f), HR_OK);
                    assert_int_equal(f.type, HR_MSG_ACK);
                    assert_int_equal(f.ack.seq, a.seq);
                    assert_int_equal(f.ack.result, a.result);
                    assert_int_equal(f.ack.ttl, a.ttl);
                    assert_int_equal(f.ack.interval, a.interval);
                    assert_int_equal(f.ack.reason, a.reason);
                }
            }
        }
    }
}

/* The common case of the contract: UUID host, 8-char room, us-east-1. */
static void test_wire_heartbeat_uuid_fits_64_bytes(void **state)
{
    (void)state;
    static const uint64_t seqs[] = {SEQ_CLOCK, SEQ_2P53, UINT64_MAX};
    uint8_t buf[HR_WIRE_MAX];
    for (size_t s = 0; s < ARRAY_LEN(seqs); s++) {
        for (size_t st = 0; st < ARRAY_LEN(rt_statuses); st++) {
            struct hr_request r = make_req(HR_MSG_HEARTBEAT, seqs[s], UUID_LOWER, "room-abc",
                                           "us-east-1", rt_statuses[st]);
            size_t n = hr_wire_encode_request(&r, buf, sizeof(buf));
            assert_true(n > 0);
            assert_true(n <= 64);
        }
    }
    struct hr_request r =
        make_req(HR_MSG_HEARTBEAT, SEQ_CLOCK, UUID_LOWER, "room-abc", "us-east-1", 0);
    assert_int_equal(hr_wire_encode_request(&r, buf, sizeof(buf)), 53); /* as documented */
}

/* ------------------------------------------------------------------------ */
/* Acks never amplify                                                         */

static size_t ack_size(struct hr_ack a)
{
    uint8_t buf[HR_WIRE_MAX];
    return hr_wire_encode_ack(&a, buf, sizeof(buf));
}

static void test_wire_ack_degrades_within_limit(void **state)
{
    (void)state;
    static const struct hr_ack acks[] = {
        {SEQ_CLOCK, HR_RESULT_OK, 30, 20, 0},
        {SEQ_CLOCK, HR_RESULT_INVALID, 30, 20, HR_E_REGION},
        {UINT64_MAX, HR_RESULT_RETRY_LATER, UINT32_MAX, UINT32_MAX, UINT32_MAX},
        {0, HR_RESULT_OK, 30, 20, 0},
        {1, HR_RESULT_DUPLICATE, 30, 0, 0},
        {7, HR_RESULT_INVALID, 30, 20, HR_E_HOST_ID},
        {SEQ_2P53, HR_RESULT_UNKNOWN_HOST, 86400, 57600, 0},
        {SEQ_CLOCK, HR_RESULT_RETRY_LATER, 0, 0, HR_E_OVERLOAD},
    };
    uint8_t buf[128];
    for (size_t i = 0; i < ARRAY_LEN(acks); i++) {
        struct hr_ack a = acks[i];
        size_t full = ack_size(a);
        struct hr_ack no_ti = a;
        no_ti.ttl = no_ti.interval = 0;
        size_t mid = ack_size(no_ti);
        struct hr_ack bare = no_ti;
        bare.reason = 0;
        size_t min = ack_size(bare);
        assert_true(min <= mid && mid <= full);
        for (size_t limit = 0; limit <= 64; limit++) {
            memset(buf, 0xa5, sizeof(buf));
            size_t n = hr_wire_encode_ack(&a, buf, limit);
            size_t want = full <= limit ? full : mid <= limit ? mid : min <= limit ? min : 0;
            assert_int_equal(n, want);
            assert_true(n <= limit);
            for (size_t j = limit; j < sizeof(buf); j++)
                assert_int_equal(buf[j], 0xa5); /* nothing written past the limit */
            if (n == 0)
                continue;
            struct hr_frame f;
            assert_int_equal(decode_at_tail(buf, n, &f), HR_OK);
            assert_int_equal(f.type, HR_MSG_ACK);
            assert_int_equal(f.ack.seq, a.seq);
            assert_int_equal(f.ack.result, a.result);
            /* ttl and interval go together, and before the reason */
            bool ti_kept = f.ack.ttl == a.ttl && f.ack.interval == a.interval;
            assert_true(ti_kept || (f.ack.ttl == 0 && f.ack.interval == 0));
            assert_true(f.ack.reason == a.reason || f.ack.reason == 0);
            if (ti_kept && (a.ttl || a.interval))
                assert_int_equal(f.ack.reason, a.reason);
        }
    }
}

/* Any request that names a host is larger than the smallest ack to it. */
static void test_wire_ack_fits_every_request(void **state)
{
    (void)state;
    static const enum hr_msg_type types[] = {HR_MSG_HEARTBEAT, HR_MSG_STATUS, HR_MSG_LEAVE};
    uint8_t req[HR_WIRE_MAX], ack[HR_WIRE_MAX];
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        for (size_t h = 0; h < ARRAY_LEN(rt_hosts); h++) {
            for (size_t s = 0; s < ARRAY_LEN(rt_seqs); s++) {
                struct hr_request r = make_req(types[t], rt_seqs[s], rt_hosts[h], "", "", 0);
                size_t n = hr_wire_encode_request(&r, req, sizeof(req));
                assert_true(n > 0);
                for (int res = HR_RESULT_OK; res <= HR_RESULT_UNAUTHORIZED; res++) {
                    struct hr_ack a = {r.seq, (enum hr_result)res, 30, 20, HR_E_HOST_ID};
                    size_t m = hr_wire_encode_ack(&a, ack, n);
                    assert_true(m > 0);
                    assert_true(m < n);
                }
            }
        }
    }
    /* A frame without a host (5 bytes) is too small for any answer. */
    struct hr_ack a = {0, HR_RESULT_INVALID, 30, 20, HR_E_HOST_ID};
    assert_int_equal(hr_wire_encode_ack(&a, ack, HR_WIRE_HDR), 0);
}

/* ------------------------------------------------------------------------ */
/* Frame errors                                                               */

struct frame_case {
    const char *name;
    uint8_t bytes[16];
    size_t len;
    int want;
};

static const struct frame_case frame_cases[] = {
    {"empty datagram", {0}, 0, HR_E_TRUNCATED},
    {"1 byte, first magic byte", {0x48}, 1, HR_E_TRUNCATED},
    {"1 byte, not magic", {0x00}, 1, HR_E_MAGIC},
    {"2 bytes, magic only", {0x48, 0x52}, 2, HR_E_TRUNCATED},
    {"2 bytes, wrong second byte", {0x48, 0x00}, 2, HR_E_MAGIC},
    {"4 bytes", {0x48, 0x52, 0x01, 0x01}, 4, HR_E_TRUNCATED},
    {"wrong first magic byte", {0x49, 0x52, 0x01, 0x01, 0x00, 0x08, 0x01}, 7, HR_E_MAGIC},
    {"wrong second magic byte", {0x48, 0x53, 0x01, 0x01, 0x00, 0x08, 0x01}, 7, HR_E_MAGIC},
    {"magic swapped", {0x52, 0x48, 0x01, 0x01, 0x00}, 5, HR_E_MAGIC},
    {"lower-case magic", {0x68, 0x72, 0x01, 0x01, 0x00}, 5, HR_E_MAGIC},
    {"version 0", {0x48, 0x52, 0x00, 0x01, 0x00}, 5, HR_E_VERSION},
    {"version 2", {0x48, 0x52, 0x02, 0x01, 0x00}, 5, HR_E_VERSION},
    {"version 255", {0x48, 0x52, 0xff, 0x01, 0x00}, 5, HR_E_VERSION},
    {"version before type", {0x48, 0x52, 0x02, 0x00, 0xff}, 5, HR_E_VERSION},
    {"type 0", {0x48, 0x52, 0x01, 0x00, 0x00}, 5, HR_E_TYPE},
    {"type 4", {0x48, 0x52, 0x01, 0x04, 0x00}, 5, HR_E_TYPE},
    {"type 0x80", {0x48, 0x52, 0x01, 0x80, 0x00}, 5, HR_E_TYPE},
    {"type 0x82", {0x48, 0x52, 0x01, 0x82, 0x00}, 5, HR_E_TYPE},
    {"type 0xff", {0x48, 0x52, 0x01, 0xff, 0x00}, 5, HR_E_TYPE},
    {"type before flags", {0x48, 0x52, 0x01, 0x04, 0xfe}, 5, HR_E_TYPE},
    {"flag bit 1", {0x48, 0x52, 0x01, 0x01, 0x02}, 5, HR_E_FLAGS},
    {"flag bit 7", {0x48, 0x52, 0x01, 0x02, 0x80}, 5, HR_E_FLAGS},
    {"all flags", {0x48, 0x52, 0x01, 0x03, 0xff}, 5, HR_E_FLAGS},
    {"auth and a reserved flag", {0x48, 0x52, 0x01, 0x81, 0x03}, 5, HR_E_FLAGS},
    {"auth flag, header only", {0x48, 0x52, 0x01, 0x01, 0x01}, 5, HR_E_TRUNCATED},
};

static void test_wire_frame_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(frame_cases); i++) {
        const struct frame_case *c = &frame_cases[i];
        struct hr_frame f;
        int rc = decode_at_tail(c->bytes, c->len, &f);
        if (rc != c->want)
            fail_msg("%s: got %s, want %s", c->name, hr_errname(rc), hr_errname(c->want));
        /* parse_header alone gives the same verdict */
        assert_int_equal(hr_wire_parse_header(at_tail(c->bytes, c->len), c->len, &f), c->want);
    }
}

static void test_wire_auth_flag_short_frame_is_truncated(void **state)
{
    (void)state;
    uint8_t buf[HR_WIRE_HDR + HR_WIRE_AUTH_HDR + HR_WIRE_TAG];
    memset(buf, 0, sizeof(buf));
    const uint8_t hdr[HR_WIRE_HDR] = {0x48, 0x52, 0x01, 0x01, HR_WIRE_FLAG_AUTH};
    memcpy(buf, hdr, sizeof(hdr));
    struct hr_frame f;
    for (size_t len = HR_WIRE_HDR; len < sizeof(buf); len++)
        assert_int_equal(decode_at_tail(buf, len, &f), HR_E_TRUNCATED);
    /* 26 bytes: header, block and tag around an empty payload */
    assert_int_equal(hr_wire_parse_header(at_tail(buf, sizeof(buf)), sizeof(buf), &f), HR_OK);
    assert_int_equal(f.payload_len, 0);
}

static void test_wire_too_big(void **state)
{
    (void)state;
    static uint8_t big[HR_WIRE_MAX + 1];
    struct hr_request r = make_req(HR_MSG_LEAVE, 1, "h", "", "", 0);
    size_t n = hr_wire_encode_request(&r, big, sizeof(big));
    assert_true(n > 0);
    struct hr_frame f;
    /* A valid start does not help, and size is checked before anything else. */
    assert_int_equal(decode_at_tail(big, sizeof(big), &f), HR_E_TOO_BIG);
    big[0] = 0;
    assert_int_equal(decode_at_tail(big, sizeof(big), &f), HR_E_TOO_BIG);
    big[0] = HR_WIRE_MAGIC0;
    /* HR_WIRE_MAX itself is allowed. */
    assert_int_equal(hr_wire_parse_header(at_tail(big, HR_WIRE_MAX), HR_WIRE_MAX, &f), HR_OK);
    assert_int_equal(f.payload_len, HR_WIRE_MAX - HR_WIRE_HDR);
}

static void test_wire_payload_garbage_is_decode_error(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        uint8_t bytes[16];
        size_t len;
    } garbage[] = {
        {"unfinished key varint", {0xff}, 1},
        {"key without value", {0x08}, 1},
        {"wire type 7", {0x0f, 0x00}, 2},
        {"length past the end", {0x1a, 0x05, 0x61}, 3},
        {"group", {0x0b, 0x0c}, 2},
        {"field number 0", {0x00, 0x00}, 2},
        {"varint of 11 bytes",
         {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
         12},
        {"seq sent length-delimited", {0x0a, 0x01, 0x00}, 3},
    };
    static const uint8_t types[] = {HR_MSG_HEARTBEAT, HR_MSG_STATUS, HR_MSG_LEAVE, HR_MSG_ACK};
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        for (size_t i = 0; i < ARRAY_LEN(garbage); i++) {
            struct pb p;
            pb_frame(&p, types[t]);
            memcpy(p.b + p.n, garbage[i].bytes, garbage[i].len);
            p.n += garbage[i].len;
            struct hr_frame f;
            int rc = decode_at_tail(p.b, p.n, &f);
            if (rc != HR_E_DECODE)
                fail_msg("type 0x%02x, %s: got %s", types[t], garbage[i].name, hr_errname(rc));
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Request errors found by the codec                                          */

static void test_wire_host_id_limits(void **state)
{
    (void)state;
    static const uint8_t types[] = {HR_MSG_HEARTBEAT, HR_MSG_STATUS, HR_MSG_LEAVE};
    static const struct {
        unsigned field; /* 2: host_uuid, 3: host_id */
        size_t len;
        int want;
    } cases[] = {
        {3, 64, HR_OK},        {3, 65, HR_E_HOST_ID}, {3, 200, HR_E_HOST_ID}, {2, 16, HR_OK},
        {2, 15, HR_E_HOST_ID}, {2, 17, HR_E_HOST_ID}, {2, 0, HR_E_HOST_ID},   {2, 36, HR_E_HOST_ID},
    };
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
            struct pb p;
            pb_frame(&p, types[t]);
            pb_uint(&p, 1, 42);
            pb_bytes(&p, cases[i].field, 'a', cases[i].len);
            if (types[t] == HR_MSG_HEARTBEAT)
                pb_bytes(&p, 4, 'r', 8);
            struct hr_frame f;
            int rc = decode_at_tail(p.b, p.n, &f);
            if (rc != cases[i].want)
                fail_msg("type %u, field %u of %zu bytes: got %s", types[t], cases[i].field,
                         cases[i].len, hr_errname(rc));
            /* The seq is known, so the INVALID ack can echo it. */
            assert_int_equal(f.req.seq, 42);
            if (rc == HR_OK && cases[i].field == 2)
                assert_string_equal(f.req.host_id, "61616161-6161-6161-6161-616161616161");
        }
    }
}

static void test_wire_room_and_region_limits(void **state)
{
    (void)state;
    static const struct {
        size_t room, region;
        int want;
    } cases[] = {
        {64, 64, HR_OK},
        {65, 9, HR_E_ROOM_ID},
        {8, 65, HR_E_REGION},
        {300, 100, HR_E_ROOM_ID},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct pb p;
        pb_frame(&p, HR_MSG_HEARTBEAT);
        pb_uint(&p, 1, 9);
        pb_bytes(&p, 3, 'h', 4);
        pb_bytes(&p, 4, 'r', cases[i].room);
        pb_bytes(&p, 5, 'g', cases[i].region);
        struct hr_frame f;
        assert_int_equal(decode_at_tail(p.b, p.n, &f), cases[i].want);
        assert_int_equal(f.req.seq, 9);
    }
}

/* What the codec passes on, the rules refuse: the rest of the INVALID path. */
static void test_wire_decoded_request_meets_the_rules(void **state)
{
    (void)state;
    struct hr_rules rules;
    hr_rules_default(&rules);
    static const struct {
        struct hr_request req;
        int want;
    } cases[] = {
        {{HR_MSG_HEARTBEAT, 1, UUID_LOWER, "room-abc", "", HR_STATUS_NONE, 0, 0, false}, HR_OK},
        {{HR_MSG_HEARTBEAT, 1, "a b", "room-abc", "", HR_STATUS_NONE, 0, 0, false}, HR_E_HOST_ID},
        {{HR_MSG_HEARTBEAT, 1, "", "room-abc", "", HR_STATUS_NONE, 0, 0, false}, HR_E_HOST_ID},
        {{HR_MSG_HEARTBEAT, 1, "h", "", "", HR_STATUS_NONE, 0, 0, false}, HR_E_ROOM_ID},
        {{HR_MSG_HEARTBEAT, 1, "h", "room/1", "", HR_STATUS_NONE, 0, 0, false}, HR_E_ROOM_ID},
        {{HR_MSG_HEARTBEAT, 1, "h", "room-abc", "mars-1", HR_STATUS_NONE, 0, 0, false},
         HR_E_REGION},
        {{HR_MSG_STATUS, 1, "h", "", "", HR_STATUS_NONE, 0, 0, false}, HR_E_STATUS},
        {{HR_MSG_STATUS, 1, "h", "", "", HR_STATUS_BUSY, 0, 0, false}, HR_OK},
        {{HR_MSG_LEAVE, 0, "h", "", "", HR_STATUS_NONE, 0, 0, false}, HR_OK},
        {{HR_MSG_HEARTBEAT, 1, "h", "room-abc", "", HR_STATUS_NONE, 4, 0, true}, HR_OK},
        {{HR_MSG_HEARTBEAT, 1, "h", "room-abc", "", HR_STATUS_NONE, 4, 5, true}, HR_E_SLOTS},
        {{HR_MSG_HEARTBEAT, 1, "h", "room-abc", "", HR_STATUS_NONE, 0, 2, true}, HR_E_SLOTS},
        {{HR_MSG_HEARTBEAT, 1, "h", "room-abc", "", HR_STATUS_NONE, 65536, 1, true}, HR_E_CAPACITY},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint8_t buf[HR_WIRE_MAX];
        struct hr_frame f;
        size_t n = hr_wire_encode_request(&cases[i].req, buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(decode_at_tail(buf, n, &f), HR_OK);
        assert_int_equal(hr_request_check(&f.req, &rules), cases[i].want);
    }
    /* A heartbeat without region takes the default, without status idle. */
    struct hr_request r = make_req(HR_MSG_HEARTBEAT, 1, "h", "room-abc", "", HR_STATUS_NONE);
    uint8_t buf[HR_WIRE_MAX];
    struct hr_frame f;
    assert_int_equal(decode_at_tail(buf, hr_wire_encode_request(&r, buf, sizeof(buf)), &f), HR_OK);
    assert_int_equal(hr_request_check(&f.req, &rules), HR_OK);
    assert_string_equal(f.req.region, "local");
    assert_int_equal(f.req.status, HR_STATUS_IDLE);
    /* ... capacity 1 with its slot free, and sends no slot field at all. */
    assert_int_equal(f.req.capacity, 1);
    assert_true(f.req.slots_given);
    assert_int_equal(f.req.available_slots, 1);
    size_t plain = hr_wire_encode_request(&r, buf, sizeof(buf));
    r.capacity = 1;
    r.slots_given = true;
    r.available_slots = 1;
    assert_int_equal(hr_wire_encode_request(&r, buf, sizeof(buf)), plain);

    /* Slots cross the wire; 0 free slots is not "absent". */
    r.capacity = 4;
    r.available_slots = 0;
    assert_int_equal(decode_at_tail(buf, hr_wire_encode_request(&r, buf, sizeof(buf)), &f), HR_OK);
    assert_int_equal(f.req.capacity, 4);
    assert_true(f.req.slots_given);
    assert_int_equal(f.req.available_slots, 0);
    assert_int_equal(hr_request_check(&f.req, &rules), HR_OK);
    assert_int_equal(f.req.available_slots, 0);
    r.slots_given = false;
    assert_int_equal(decode_at_tail(buf, hr_wire_encode_request(&r, buf, sizeof(buf)), &f), HR_OK);
    assert_false(f.req.slots_given);
    assert_int_equal(hr_request_check(&f.req, &rules), HR_OK);
    assert_int_equal(f.req.available_slots, 4);

    /* A status the enum does not know passes the codec, not the rules. */
    struct pb p;
    pb_frame(&p, HR_MSG_HEARTBEAT);
    pb_uint(&p, 1, 3);
    pb_bytes(&p, 3, 'h', 1);
    pb_bytes(&p, 4, 'r', 1);
    pb_uint(&p, 6, 7);
    assert_int_equal(decode_at_tail(p.b, p.n, &f), HR_OK);
    assert_int_equal(hr_request_check(&f.req, &rules), HR_E_STATUS);
}

/* Old readers skip fields they do not know. */
static void test_wire_unknown_fields_are_skipped(void **state)
{
    (void)state;
    struct pb p;
    pb_frame(&p, HR_MSG_LEAVE);
    pb_uint(&p, 1, 5);
    pb_uint(&p, 15, 1);
    pb_bytes(&p, 3, 'h', 2);
    pb_bytes(&p, 99, 'x', 20);
    pb_uint(&p, 100000, UINT64_MAX);
    struct hr_frame f;
    assert_int_equal(decode_at_tail(p.b, p.n, &f), HR_OK);
    assert_int_equal(f.req.seq, 5);
    assert_string_equal(f.req.host_id, "hh");
}

/* ------------------------------------------------------------------------ */
/* Authentication block                                                       */

/* Bugs once found: a small decode arena dropped frames with many (unknown)
 * fields, and a zero byte inside a text field cut the id short instead of
 * refusing it (two wire ids for one host, and the charset check skipped). */
static size_t frame_with(uint8_t type, const uint8_t *payload, size_t plen, uint8_t *out)
{
    memcpy(out, "HR\x01", 3);
    out[3] = type;
    out[4] = 0;
    memcpy(out + 5, payload, plen);
    return 5 + plen;
}

static void test_wire_many_unknown_fields_decode(void **state)
{
    (void)state;
    uint8_t p[HR_WIRE_MAX], buf[HR_WIRE_MAX];
    size_t n = 0;
    p[n++] = 0x1a; /* host_id */
    p[n++] = 4;
    memcpy(p + n, "host", 4);
    n += 4;
    p[n++] = 0x22; /* room_id */
    p[n++] = 2;
    memcpy(p + n, "r1", 2);
    n += 2;
    while (n + 2 <= HR_WIRE_MAX - HR_WIRE_HDR) { /* unknown field 15, varint 1 */
        p[n++] = 0x78;
        p[n++] = 0x01;
    }
    struct hr_frame f;
    size_t len = frame_with(HR_MSG_HEARTBEAT, p, n, buf);
    assert_int_equal(len, HR_WIRE_MAX - (HR_WIRE_MAX - HR_WIRE_HDR) % 2);
    assert_int_equal(hr_wire_decode(buf, len, &f), HR_OK);
    assert_string_equal(f.req.host_id, "host");
    assert_string_equal(f.req.room_id, "r1");
}

static void test_wire_zero_byte_in_text_is_refused(void **state)
{
    (void)state;
    static const struct {
        uint8_t payload[24];
        size_t len;
        int want;
    } cases[] = {
        {{0x1a, 7, 'a', 'b', 'c', 0, 'd', 'e', 'f', 0x22, 1, 'r'}, 12, HR_E_HOST_ID},
        {{0x1a, 1, 'h', 0x22, 3, 'r', 0, 'x'}, 8, HR_E_ROOM_ID},
        {{0x1a, 1, 'h', 0x22, 1, 'r', 0x2a, 4, 'l', 'o', 0, 'l'}, 12, HR_E_REGION},
        {{0x1a, 1, 0}, 3, HR_E_HOST_ID},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[64];
        struct hr_frame f;
        size_t len = frame_with(HR_MSG_HEARTBEAT, cases[i].payload, cases[i].len, buf);
        assert_int_equal(hr_wire_decode(buf, len, &f), cases[i].want);
    }
}

static void test_wire_encode_refuses_unterminated_text(void **state)
{
    (void)state;
    struct hr_request r;
    uint8_t buf[HR_WIRE_MAX];
    memset(&r, 0, sizeof(r));
    r.type = HR_MSG_HEARTBEAT;
    strcpy(r.host_id, "h");
    memset(r.room_id, 'r', sizeof(r.room_id)); /* no NUL anywhere */
    assert_int_equal(hr_wire_encode_request(&r, buf, sizeof(buf)), 0);
    r.room_id[HR_ID_MAX] = '\0';
    assert_true(hr_wire_encode_request(&r, buf, sizeof(buf)) > 0);
}

static void test_wire_auth_frame_parses(void **state)
{
    (void)state;
    uint8_t plain[HR_WIRE_MAX], buf[HR_WIRE_MAX];
    struct hr_request r =
        make_req(HR_MSG_HEARTBEAT, SEQ_CLOCK, UUID_LOWER, "room-abc", "us-east-1", HR_STATUS_BUSY);
    size_t n = hr_wire_encode_request(&r, plain, sizeof(plain));
    assert_true(n > 0);
    size_t plen = n - HR_WIRE_HDR;

    memcpy(buf, plain, HR_WIRE_HDR);
    buf[4] = HR_WIRE_FLAG_AUTH;
    buf[5] = 0xc3;                                                 /* key id */
    memcpy(buf + 6, (const uint8_t[]){0xfe, 0x2a, 0x1c, 0x80}, 4); /* timestamp */
    memcpy(buf + 10, plain + HR_WIRE_HDR, plen);
    for (size_t i = 0; i < HR_WIRE_TAG; i++)
        buf[10 + plen + i] = (uint8_t)(0xa0 + i);
    size_t len = 10 + plen + HR_WIRE_TAG;
    assert_int_equal(len, n + HR_WIRE_AUTH_HDR + HR_WIRE_TAG);

    const uint8_t *d = at_tail(buf, len);
    struct hr_frame f;
    assert_int_equal(hr_wire_parse_header(d, len, &f), HR_OK);
    assert_int_equal(f.flags, HR_WIRE_FLAG_AUTH);
    assert_int_equal(f.key_id, 0xc3);
    assert_int_equal(f.timestamp, 0xfe2a1c80u);
    assert_ptr_equal(f.tag, d + len - HR_WIRE_TAG);
    assert_int_equal(f.tag[0], 0xa0);
    assert_int_equal(f.tag[15], 0xaf);
    assert_ptr_equal(f.payload, d + HR_WIRE_HDR + HR_WIRE_AUTH_HDR);
    assert_int_equal(f.payload_len, plen);
    assert_memory_equal(f.payload, plain + HR_WIRE_HDR, plen);

    assert_int_equal(hr_wire_decode_payload(&f), HR_OK);
    assert_int_equal(f.req.seq, SEQ_CLOCK);
    assert_string_equal(f.req.host_id, UUID_LOWER);
    assert_string_equal(f.req.room_id, "room-abc");
    assert_string_equal(f.req.region, "us-east-1");
    assert_int_equal(f.req.status, HR_STATUS_BUSY);

    /* Without the flag the same bytes are the plain frame: no tag. */
    assert_int_equal(decode_at_tail(plain, n, &f), HR_OK);
    assert_null(f.tag);
    assert_int_equal(f.key_id, 0);
    assert_int_equal(f.timestamp, 0);
}

/* ------------------------------------------------------------------------ */
/* The examples of docs/PROTOCOL.md                                           */

#define EX_MIN 12

struct example {
    char name[64];
    uint8_t bytes[HR_WIRE_MAX + 16];
    size_t len;
    bool have_name, have_hex, have_expect;
    char expect[2048];
    int line;
};

/* Strict unsigned decimal: the whole string, no sign, no overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static int hexdigit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* "48 52 01": two lower-case hex digits per byte, single spaces. */
static bool parse_hex(const char *s, struct example *ex)
{
    ex->len = 0;
    while (*s) {
        int hi = hexdigit(s[0]), lo = hi < 0 ? -1 : hexdigit(s[1]);
        if (lo < 0 || ex->len == sizeof(ex->bytes))
            return false;
        ex->bytes[ex->len++] = (uint8_t)(hi << 4 | lo);
        s += 2;
        if (*s == ' ' && s[1])
            s++;
        else if (*s)
            return false;
    }
    return true;
}

struct kv {
    char key[32];
    char val[HR_ID_MAX * 2];
    bool used;
};

static size_t split_expect(const struct example *ex, struct kv *kv, size_t cap)
{
    char tmp[sizeof(ex->expect)];
    size_t n = 0;
    snprintf(tmp, sizeof(tmp), "%s", ex->expect);
    for (char *save = NULL, *tok = strtok_r(tmp, " ", &save); tok;
         tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || n == cap || (size_t)(eq - tok) >= sizeof(kv[n].key) ||
            strlen(eq + 1) >= sizeof(kv[n].val))
            fail_msg("line %d (%s): bad expect token '%s'", ex->line, ex->name, tok);
        memcpy(kv[n].key, tok, (size_t)(eq - tok));
        kv[n].key[eq - tok] = '\0';
        snprintf(kv[n].val, sizeof(kv[n].val), "%s", eq + 1);
        kv[n].used = false;
        for (size_t i = 0; i < n; i++)
            if (strcmp(kv[i].key, kv[n].key) == 0)
                fail_msg("line %d (%s): '%s' given twice", ex->line, ex->name, kv[n].key);
        n++;
    }
    return n;
}

/* The value the example states for `key`; fails the test when it is absent. */
static const char *want(const struct example *ex, struct kv *kv, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(kv[i].key, key) == 0) {
            kv[i].used = true;
            return kv[i].val;
        }
    }
    fail_msg("line %d (%s): expect has no '%s'", ex->line, ex->name, key);
    return "";
}

static void expect_str(const struct example *ex, struct kv *kv, size_t n, const char *key,
                       const char *got)
{
    const char *w = want(ex, kv, n, key);
    if (strcmp(w, got) != 0)
        fail_msg("line %d (%s): %s is '%s', the example says '%s'", ex->line, ex->name, key, got,
                 w);
}

static void expect_num(const struct example *ex, struct kv *kv, size_t n, const char *key,
                       uint64_t got)
{
    const char *w = want(ex, kv, n, key);
    uint64_t v;
    if (!parse_u64(w, &v))
        fail_msg("line %d (%s): %s '%s' is not a number", ex->line, ex->name, key, w);
    if (v != got)
        fail_msg("line %d (%s): %s is %" PRIu64 ", the example says %s", ex->line, ex->name, key,
                 got, w);
}

/* Counts of what the examples cover, checked once all are read. */
struct coverage {
    size_t examples;
    bool types[4];  /* heartbeat, status, leave, ack */
    bool errors[8]; /* indexed by frame hr_err 1..7 */
};

static void check_example(const struct example *ex, struct coverage *cov)
{
    struct kv kv[16];
    size_t n = split_expect(ex, kv, ARRAY_LEN(kv));
    struct hr_frame f;
    int rc = decode_at_tail(ex->bytes, ex->len, &f);

    bool is_error = false;
    for (size_t i = 0; i < n; i++)
        is_error |= strcmp(kv[i].key, "error") == 0;
    if (is_error) {
        expect_str(ex, kv, n, "error", hr_errname(rc));
        if (rc > 0 && rc < (int)ARRAY_LEN(cov->errors))
            cov->errors[rc] = true;
    } else if (rc != HR_OK) {
        fail_msg("line %d (%s): decoding fails with %s", ex->line, ex->name, hr_errname(rc));
    } else {
        expect_str(ex, kv, n, "type", hr_msg_type_name((enum hr_msg_type)f.type));
        if (f.flags & HR_WIRE_FLAG_AUTH) {
            expect_num(ex, kv, n, "key_id", f.key_id);
            expect_num(ex, kv, n, "timestamp", f.timestamp);
        }
        uint8_t again[HR_WIRE_MAX];
        size_t m;
        if (f.type == HR_MSG_ACK) {
            cov->types[3] = true;
            expect_num(ex, kv, n, "seq", f.ack.seq);
            expect_str(ex, kv, n, "result", hr_result_name(f.ack.result));
            expect_num(ex, kv, n, "ttl", f.ack.ttl);
            expect_num(ex, kv, n, "interval", f.ack.interval);
            const char *w = want(ex, kv, n, "reason");
            uint64_t v;
            if (parse_u64(w, &v) ? v != f.ack.reason
                                 : strcmp(w, hr_errname((int)f.ack.reason)) != 0)
                fail_msg("line %d (%s): reason is %u (%s), the example says %s", ex->line, ex->name,
                         f.ack.reason, hr_errname((int)f.ack.reason), w);
            m = hr_wire_encode_ack(&f.ack, again, sizeof(again));
        } else {
            cov->types[f.type - HR_MSG_HEARTBEAT] = true;
            expect_num(ex, kv, n, "seq", f.req.seq);
            expect_str(ex, kv, n, "host_id", f.req.host_id);
            expect_str(ex, kv, n, "room_id", f.req.room_id);
            expect_str(ex, kv, n, "region", f.req.region);
            expect_str(ex, kv, n, "status", hr_status_name(f.req.status));
            /* Slots only when the datagram has them. */
            if (f.req.capacity)
                expect_num(ex, kv, n, "capacity", f.req.capacity);
            if (f.req.slots_given)
                expect_num(ex, kv, n, "available_slots", f.req.available_slots);
            m = hr_wire_encode_request(&f.req, again, sizeof(again));
        }
        /* The example is the library's own, canonical encoding. */
        if (m != HR_WIRE_HDR + f.payload_len || memcmp(again, ex->bytes, 4) != 0 ||
            memcmp(again + HR_WIRE_HDR, f.payload, f.payload_len) != 0)
            fail_msg("line %d (%s): re-encoding gives other bytes", ex->line, ex->name);
    }
    for (size_t i = 0; i < n; i++)
        if (!kv[i].used)
            fail_msg("line %d (%s): '%s' does not belong in this expect", ex->line, ex->name,
                     kv[i].key);
    cov->examples++;
}

static void test_wire_protocol_examples(void **state)
{
    (void)state;
    static char doc[1 << 18];
    static struct example ex;
    static char names[64][64];
    struct coverage cov;
    memset(&cov, 0, sizeof(cov));

    assert_non_null(protocol_path);
    FILE *fp = fopen(protocol_path, "r");
    if (!fp)
        fail_msg("cannot open %s: %s", protocol_path, strerror(errno));
    size_t len = fread(doc, 1, sizeof(doc) - 1, fp);
    int too_long = !feof(fp);
    fclose(fp);
    assert_false(too_long);
    doc[len] = '\0';

    bool in_block = false;
    int line = 0;
    for (char *l = doc, *next; l && *l; l = next) {
        next = strchr(l, '\n');
        if (next)
            *next++ = '\0';
        line++;
        if (!in_block) {
            if (strcmp(l, "```hostreg-example") == 0) {
                in_block = true;
                memset(&ex, 0, sizeof(ex));
                ex.line = line;
            }
            continue;
        }
        if (strcmp(l, "```") == 0) {
            in_block = false;
            if (!ex.have_name || !ex.have_hex || !ex.have_expect)
                fail_msg("line %d: example without name, hex or expect", ex.line);
            for (size_t i = 0; i < cov.examples && i < ARRAY_LEN(names); i++)
                if (strcmp(names[i], ex.name) == 0)
                    fail_msg("line %d: two examples named %s", ex.line, ex.name);
            if (cov.examples < ARRAY_LEN(names))
                snprintf(names[cov.examples], sizeof(names[0]), "%s", ex.name);
            check_example(&ex, &cov);
        } else if (strncmp(l, "name: ", 6) == 0 && !ex.have_name) {
            snprintf(ex.name, sizeof(ex.name), "%s", l + 6);
            ex.have_name = true;
        } else if ((strcmp(l, "hex:") == 0 || strncmp(l, "hex: ", 5) == 0) && !ex.have_hex) {
            if (!parse_hex(l[4] ? l + 5 : l + 4, &ex))
                fail_msg("line %d (%s): bad hex", line, ex.name);
            ex.have_hex = true;
        } else if (strncmp(l, "expect: ", 8) == 0 && !ex.have_expect) {
            snprintf(ex.expect, sizeof(ex.expect), "%s", l + 8);
            ex.have_expect = true;
        } else {
            fail_msg("line %d: unexpected line in an example: %s", line, l);
        }
    }
    assert_false(in_block);
    if (cov.examples < EX_MIN)
        fail_msg("%s has %zu examples, want at least %d", protocol_path, cov.examples, EX_MIN);
    for (size_t t = 0; t < ARRAY_LEN(cov.types); t++)
        if (!cov.types[t])
            fail_msg("no example of message type %zu", t);
    static const int must[] = {HR_E_MAGIC, HR_E_VERSION,   HR_E_TYPE,
                               HR_E_FLAGS, HR_E_TRUNCATED, HR_E_DECODE};
    for (size_t i = 0; i < ARRAY_LEN(must); i++)
        if (!cov.errors[must[i]])
            fail_msg("no example refused as %s", hr_errname(must[i]));
}

/* ------------------------------------------------------------------------ */
/* Deterministic fuzzing                                                      */

#define FUZZ_RUNS 200000

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: fixed seed, so a failure replays exactly */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

/* Whatever the bytes, the codec answers with a documented code, and what it
 * decodes is well-formed. */
static void check_fuzz_verdict(const uint8_t *d, size_t len, uint64_t iteration)
{
    struct hr_frame f;
    int rc = hr_wire_decode(d, len, &f);
    switch (rc) {
    case HR_OK:
        break;
    case HR_E_TRUNCATED:
    case HR_E_MAGIC:
    case HR_E_VERSION:
    case HR_E_TYPE:
    case HR_E_FLAGS:
    case HR_E_TOO_BIG:
    case HR_E_DECODE:
    case HR_E_HOST_ID:
    case HR_E_ROOM_ID:
    case HR_E_REGION:
        return;
    default:
        fail_msg("iteration %" PRIu64 ": undocumented code %d (%s)", iteration, rc, hr_errname(rc));
    }
    assert_true(len >= HR_WIRE_HDR && len <= HR_WIRE_MAX);
    assert_true(f.payload >= d && f.payload + f.payload_len <= d + len);
    if (f.flags & HR_WIRE_FLAG_AUTH)
        assert_ptr_equal(f.tag, d + len - HR_WIRE_TAG);
    else
        assert_null(f.tag);
    if (f.type == HR_MSG_ACK)
        return;
    assert_true(strnlen(f.req.host_id, sizeof(f.req.host_id)) < sizeof(f.req.host_id));
    assert_true(strnlen(f.req.room_id, sizeof(f.req.room_id)) < sizeof(f.req.room_id));
    assert_true(strnlen(f.req.region, sizeof(f.req.region)) < sizeof(f.req.region));
    if (f.uuid_host)
        assert_true(is_uuid_text(f.req.host_id));
    struct hr_rules rules;
    hr_rules_default(&rules);
    rc = hr_request_check(&f.req, &rules);
    if (rc != HR_OK && rc != HR_E_HOST_ID && rc != HR_E_ROOM_ID && rc != HR_E_REGION &&
        rc != HR_E_STATUS)
        fail_msg("iteration %" PRIu64 ": request check gave %s", iteration, hr_errname(rc));
}

static void test_wire_fuzz_random_datagrams(void **state)
{
    (void)state;
    static const uint8_t types[] = {HR_MSG_HEARTBEAT, HR_MSG_STATUS, HR_MSG_LEAVE, HR_MSG_ACK};
    static uint8_t d[HR_WIRE_MAX + 16];
    rng_state = UINT64_C(0x9e3779b97f4a7c15);
    for (uint64_t i = 0; i < FUZZ_RUNS; i++) {
        size_t len = rnd_below(i % 8 == 0 ? sizeof(d) : 96);
        for (size_t j = 0; j < len; j++)
            d[j] = (uint8_t)rnd();
        /* Mostly a valid header, so the payload decoder gets its share. */
        if (len >= HR_WIRE_HDR && rnd_below(4) != 0) {
            d[0] = HR_WIRE_MAGIC0;
            d[1] = HR_WIRE_MAGIC1;
            d[2] = HR_WIRE_VERSION;
            d[3] = types[rnd_below(ARRAY_LEN(types))];
            d[4] = rnd_below(4) == 0 ? HR_WIRE_FLAG_AUTH : 0;
        }
        check_fuzz_verdict(at_tail(d, len), len, i);
    }
}

static void test_wire_fuzz_mutated_frames(void **state)
{
    (void)state;
    enum { NSEEDS = 12 };
    static uint8_t seeds[NSEEDS][HR_WIRE_MAX];
    static uint8_t d[HR_WIRE_MAX + 16];
    size_t seed_len[NSEEDS];
    const struct hr_request reqs[] = {
        make_req(HR_MSG_HEARTBEAT, SEQ_CLOCK, UUID_LOWER, "room-abc", "us-east-1", 0),
        make_req(HR_MSG_HEARTBEAT, UINT64_MAX, ID64, ID64, REGION64, HR_STATUS_BUSY),
        make_req(HR_MSG_HEARTBEAT, 0, "sim-host-1-1a2b3c4d", "room-abc", "", HR_STATUS_IDLE),
        make_req(HR_MSG_STATUS, SEQ_CLOCK, UUID_LOWER, "", "", HR_STATUS_BUSY),
        make_req(HR_MSG_STATUS, 1, "sim-host-1-1a2b3c4d", "", "", HR_STATUS_IDLE),
        make_req(HR_MSG_LEAVE, SEQ_2P53, UUID_LOWER, "", "", 0),
        make_req(HR_MSG_LEAVE, 7, "h", "", "", 0),
    };
    const struct hr_ack acks[] = {
        {SEQ_CLOCK, HR_RESULT_OK, 30, 20, 0},
        {UINT64_MAX, HR_RESULT_INVALID, 30, 20, HR_E_REGION},
        {1, HR_RESULT_RETRY_LATER, 0, 0, HR_E_UNAVAILABLE},
    };
    size_t k = 0;
    for (size_t i = 0; i < ARRAY_LEN(reqs); i++, k++)
        seed_len[k] = hr_wire_encode_request(&reqs[i], seeds[k], sizeof(seeds[k]));
    for (size_t i = 0; i < ARRAY_LEN(acks); i++, k++)
        seed_len[k] = hr_wire_encode_ack(&acks[i], seeds[k], sizeof(seeds[k]));
    /* two authenticated frames: the first request and the first ack */
    for (size_t src = 0; src < ARRAY_LEN(reqs) + 1; src += ARRAY_LEN(reqs), k++) {
        memcpy(seeds[k], seeds[src], HR_WIRE_HDR);
        seeds[k][4] = HR_WIRE_FLAG_AUTH;
        memset(seeds[k] + HR_WIRE_HDR, 0x5a, HR_WIRE_AUTH_HDR);
        memcpy(seeds[k] + 10, seeds[src] + HR_WIRE_HDR, seed_len[src] - HR_WIRE_HDR);
        memset(seeds[k] + seed_len[src] + HR_WIRE_AUTH_HDR, 0xee, HR_WIRE_TAG);
        seed_len[k] = seed_len[src] + HR_WIRE_AUTH_HDR + HR_WIRE_TAG;
    }
    assert_int_equal(k, NSEEDS);
    for (size_t i = 0; i < NSEEDS; i++) {
        struct hr_frame f;
        assert_true(seed_len[i] > 0);
        assert_int_equal(decode_at_tail(seeds[i], seed_len[i], &f), HR_OK);
    }

    rng_state = UINT64_C(0x2545f4914f6cdd1d);
    for (uint64_t i = 0; i < FUZZ_RUNS; i++) {
        size_t s = rnd_below(NSEEDS), len = seed_len[s];
        memcpy(d, seeds[s], len);
        for (size_t m = 1 + rnd_below(3); m > 0; m--) {
            switch (rnd_below(6)) {
            case 0: /* bit flip */
            case 1:
                if (len)
                    d[rnd_below(len)] ^= (uint8_t)(1u << rnd_below(8));
                break;
            case 2: /* truncation */
                len = rnd_below(len + 1);
                break;
            case 3: /* a random byte */
                if (len)
                    d[rnd_below(len)] = (uint8_t)rnd();
                break;
            case 4: /* a byte inserted or removed inside the payload */
                if (len > HR_WIRE_HDR && len < sizeof(d)) {
                    size_t at = HR_WIRE_HDR + rnd_below(len - HR_WIRE_HDR);
                    if (rnd() & 1) {
                        memmove(d + at + 1, d + at, len - at);
                        d[at] = (uint8_t)rnd();
                        len++;
                    } else {
                        memmove(d + at, d + at + 1, len - at - 1);
                        len--;
                    }
                }
                break;
            default: /* bytes appended, sometimes past HR_WIRE_MAX */
                for (size_t add = rnd_below(i % 64 == 0 ? sizeof(d) : 24);
                     add > 0 && len < sizeof(d); add--)
                    d[len++] = (uint8_t)rnd();
                break;
            }
        }
        check_fuzz_verdict(at_tail(d, len), len, i);
    }
}

int main(int argc, char **argv)
{
    protocol_path = argc > 1 ? argv[1] : "docs/PROTOCOL.md";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_request_round_trip),
        cmocka_unit_test(test_wire_uuid_host_travels_as_16_bytes),
        cmocka_unit_test(test_wire_encode_request_respects_cap),
        cmocka_unit_test(test_wire_ack_round_trip),
        cmocka_unit_test(test_wire_heartbeat_uuid_fits_64_bytes),
        cmocka_unit_test(test_wire_ack_degrades_within_limit),
        cmocka_unit_test(test_wire_ack_fits_every_request),
        cmocka_unit_test(test_wire_frame_errors),
        cmocka_unit_test(test_wire_auth_flag_short_frame_is_truncated),
        cmocka_unit_test(test_wire_too_big),
        cmocka_unit_test(test_wire_payload_garbage_is_decode_error),
        cmocka_unit_test(test_wire_host_id_limits),
        cmocka_unit_test(test_wire_room_and_region_limits),
        cmocka_unit_test(test_wire_decoded_request_meets_the_rules),
        cmocka_unit_test(test_wire_unknown_fields_are_skipped),
        cmocka_unit_test(test_wire_many_unknown_fields_decode),
        cmocka_unit_test(test_wire_zero_byte_in_text_is_refused),
        cmocka_unit_test(test_wire_encode_refuses_unterminated_text),
        cmocka_unit_test(test_wire_auth_frame_parses),
        cmocka_unit_test(test_wire_protocol_examples),
        cmocka_unit_test(test_wire_fuzz_random_datagrams),
        cmocka_unit_test(test_wire_fuzz_mutated_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
