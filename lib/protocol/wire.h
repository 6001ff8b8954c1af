/* The hostreg datagram codec: bytes in, a decoded frame and a verdict out.
 * No sockets and no allocation on the heap (protobuf-c unpacks into an arena
 * on the stack), so the daemon, the tools, the tests and the fuzzers all
 * drive the same code. The byte layout is specified in docs/PROTOCOL.md. */
#ifndef HR_WIRE_H
#define HR_WIRE_H

#include "request.h"

#include <stddef.h>
#include <stdint.h>

#define HR_WIRE_MAGIC0 0x48 /* 'H' */
#define HR_WIRE_MAGIC1 0x52 /* 'R' */
#define HR_WIRE_VERSION 1
#define HR_WIRE_HDR 5 /* magic(2) version(1) type(1) flags(1) */

/* Flag bit 0: an authentication block follows the header (key id and
 * timestamp) and a tag ends the frame. Other bits are reserved and must be 0. */
#define HR_WIRE_FLAG_AUTH 0x01
#define HR_WIRE_AUTH_HDR 5 /* key_id(1) timestamp(4, big-endian unix seconds) */
#define HR_WIRE_TAG 16     /* HMAC-SHA256 truncated to 128 bits */

/* The largest datagram we read: a heartbeat with every field at its limit
 * and authentication is about 210 bytes; anything far above that is not a
 * hostreg frame, and a bound keeps the unpack arena small and fixed. */
#define HR_WIRE_MAX 512

struct hr_frame {
    uint8_t version;
    uint8_t type; /* enum hr_msg_type */
    uint8_t flags;
    uint8_t key_id;         /* when flags & HR_WIRE_FLAG_AUTH */
    uint32_t timestamp;     /* when flags & HR_WIRE_FLAG_AUTH */
    const uint8_t *tag;     /* points into the datagram; NULL without auth */
    const uint8_t *payload; /* points into the datagram */
    size_t payload_len;
    int uuid_host;         /* the hostId travelled as 16 raw bytes */
    struct hr_request req; /* requests, after hr_wire_decode_payload */
    struct hr_ack ack;     /* acks, after hr_wire_decode_payload */
};

/* Reads the fixed header (and the auth block) of buf[0..len). Returns HR_OK
 * with `f` filled and the payload located but not unpacked, or HR_E_TOO_BIG,
 * HR_E_TRUNCATED, HR_E_MAGIC, HR_E_VERSION, HR_E_TYPE or HR_E_FLAGS.
 * `f` points into `buf`, which must outlive it. An authenticating daemon
 * checks the tag between this call and the next. */
int hr_wire_parse_header(const uint8_t *buf, size_t len, struct hr_frame *f);

/* Unpacks the payload of a parsed frame into f->req or f->ack. Returns HR_OK,
 * HR_E_DECODE when protobuf-c refuses it, or HR_E_HOST_ID / HR_E_ROOM_ID /
 * HR_E_REGION when a string does not fit its field (the rules themselves are
 * hr_request_check's). */
int hr_wire_decode_payload(struct hr_frame *f);

/* Both of the above. */
int hr_wire_decode(const uint8_t *buf, size_t len, struct hr_frame *f);

/* Encodes a request (type, seq, host, and the fields of its type) without
 * authentication. A hostId in UUID form travels as 16 bytes. Returns the frame
 * length, or 0 when it does not fit in `cap` or a text field is not
 * NUL-terminated within its array. */
size_t hr_wire_encode_request(const struct hr_request *req, uint8_t *buf, size_t cap);

/* As hr_wire_encode_request, authenticated: flag bit 0, the key id and
 * timestamp after the header, and HMAC-SHA256(key, every byte before the tag)
 * truncated to HR_WIRE_TAG bytes at the end. `key` is the host's key
 * (keys.h: hr_keys_host_key). */
size_t hr_wire_encode_request_auth(const struct hr_request *req, const uint8_t key[32],
                                   uint8_t key_id, uint32_t timestamp, uint8_t *buf, size_t cap);

/* Checks a parsed authenticated frame's tag against `key`, in constant time.
 * HR_OK or HR_E_AUTH (also for a frame without the flag). Call it before
 * hr_wire_decode_payload: nothing of an unauthenticated payload is unpacked. */
int hr_wire_verify(const uint8_t *buf, size_t len, const struct hr_frame *f, const uint8_t key[32]);

/* The hostId of a parsed request frame, read from its payload without
 * unpacking it (the last host field wins, as in protobuf), in canonical form:
 * what a per-host key is derived from. HR_OK, or HR_E_HOST_ID when there is
 * none or it breaks the id rule, HR_E_DECODE when the payload is malformed. */
int hr_wire_peek_host(const struct hr_frame *f, char out[HR_ID_MAX + 1]);

/* Encodes an ack in at most `limit` bytes (the size of the request it answers:
 * an ack never amplifies). When the full ack does not fit it drops, in order,
 * ttl and interval, then reason; returns 0 when even seq and result do not fit. */
size_t hr_wire_encode_ack(const struct hr_ack *ack, uint8_t *buf, size_t limit);

#endif
