#include "wire.h"

#include "err.h"
#include "hostreg.pb-c.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

/* protobuf-c allocates while unpacking; a bump arena keeps decoding free of
 * malloc and bounded. Worst case for a HR_WIRE_MAX payload: ~256 two-byte
 * fields, each costing protobuf-c a scanned-member record (slabs that double)
 * and, when unknown, a copy with its bookkeeping: well under 32 KiB. One
 * arena per thread, reused by every decode. */
#define ARENA_SIZE (32 * 1024)
struct arena {
    uint8_t *buf;
    size_t cap, used;
};

static void *arena_alloc(void *data, size_t size)
{
    struct arena *a = data;
    size_t off = (a->used + 15) & ~(size_t)15;
    if (off > a->cap || size > a->cap - off)
        return NULL; /* protobuf-c then fails the unpack cleanly */
    a->used = off + size;
    return a->buf + off;
}

static void arena_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

int hr_wire_parse_header(const uint8_t *buf, size_t len, struct hr_frame *f)
{
    memset(f, 0, sizeof(*f));
    if (len > HR_WIRE_MAX)
        return HR_E_TOO_BIG;
    /* Magic first, even on a short datagram, so stray traffic is reported as
     * "not ours" rather than as a damaged frame of ours. */
    if (len >= 1 && buf[0] != HR_WIRE_MAGIC0)
        return HR_E_MAGIC;
    if (len >= 2 && buf[1] != HR_WIRE_MAGIC1)
        return HR_E_MAGIC;
    if (len < HR_WIRE_HDR)
        return HR_E_TRUNCATED;
    f->version = buf[2];
    f->type = buf[3];
    f->flags = buf[4];
    if (f->version != HR_WIRE_VERSION)
        return HR_E_VERSION;
    if (f->type != HR_MSG_HEARTBEAT && f->type != HR_MSG_STATUS && f->type != HR_MSG_LEAVE &&
        f->type != HR_MSG_ACK)
        return HR_E_TYPE;
    if (f->flags & ~HR_WIRE_FLAG_AUTH)
        return HR_E_FLAGS;
    size_t off = HR_WIRE_HDR, end = len;
    if (f->flags & HR_WIRE_FLAG_AUTH) {
        if (len < HR_WIRE_HDR + HR_WIRE_AUTH_HDR + HR_WIRE_TAG)
            return HR_E_TRUNCATED;
        f->key_id = buf[off];
        f->timestamp = (uint32_t)buf[off + 1] << 24 | (uint32_t)buf[off + 2] << 16 |
                       (uint32_t)buf[off + 3] << 8 | buf[off + 4];
        off += HR_WIRE_AUTH_HDR;
        end -= HR_WIRE_TAG;
        f->tag = buf + end;
    }
    f->payload = buf + off;
    f->payload_len = end - off;
    return HR_OK;
}

static int take_str(char *dst, size_t cap, const ProtobufCBinaryData *src, int err)
{
    /* A zero byte would cut the text short for every reader after us. */
    if (src->len >= cap || (src->len && memchr(src->data, 0, src->len)))
        return err;
    if (src->len)
        memcpy(dst, src->data, src->len);
    dst[src->len] = '\0';
    return HR_OK;
}

/* Copies a UUID (16 bytes, formatted) or text host into req->host_id. */
static int take_host(int which_uuid, const ProtobufCBinaryData *uuid,
                     const ProtobufCBinaryData *name, int is_set, struct hr_frame *f)
{
    if (!is_set)
        return HR_OK; /* left empty: hr_request_check says HR_E_HOST_ID */
    if (which_uuid) {
        if (uuid->len != 16)
            return HR_E_HOST_ID;
        hr_uuid_format(uuid->data, f->req.host_id);
        f->uuid_host = 1;
        return HR_OK;
    }
    return take_str(f->req.host_id, sizeof(f->req.host_id), name, HR_E_HOST_ID);
}

int hr_wire_decode_payload(struct hr_frame *f)
{
    static _Thread_local uint8_t mem[ARENA_SIZE] __attribute__((aligned(16)));
    struct arena a = {mem, sizeof(mem), 0};
    ProtobufCAllocator alloc = {arena_alloc, arena_free, &a};
    struct hr_request *r = &f->req;
    int rc = HR_OK;

    memset(r, 0, sizeof(*r));
    memset(&f->ack, 0, sizeof(f->ack));
    r->type = (enum hr_msg_type)f->type;
    switch (f->type) {
    case HR_MSG_HEARTBEAT: {
        Hostreg__Heartbeat *m = hostreg__heartbeat__unpack(&alloc, f->payload_len, f->payload);
        if (!m)
            return HR_E_DECODE;
        r->seq = m->seq;
        r->status = (enum hr_status)m->status;
        r->capacity = m->capacity;
        r->slots_given = m->slots_case == HOSTREG__HEARTBEAT__SLOTS_AVAILABLE_SLOTS;
        r->available_slots = r->slots_given ? m->available_slots : 0;
        rc = take_host(m->host_case == HOSTREG__HEARTBEAT__HOST_HOST_UUID, &m->host_uuid,
                       &m->host_id, m->host_case != HOSTREG__HEARTBEAT__HOST__NOT_SET, f);
        if (rc == HR_OK)
            rc = take_str(r->room_id, sizeof(r->room_id), &m->room_id, HR_E_ROOM_ID);
        if (rc == HR_OK)
            rc = take_str(r->region, sizeof(r->region), &m->region, HR_E_REGION);
        break;
    }
    case HR_MSG_STATUS: {
        Hostreg__StatusUpdate *m =
            hostreg__status_update__unpack(&alloc, f->payload_len, f->payload);
        if (!m)
            return HR_E_DECODE;
        r->seq = m->seq;
        r->status = (enum hr_status)m->status;
        rc = take_host(m->host_case == HOSTREG__STATUS_UPDATE__HOST_HOST_UUID, &m->host_uuid,
                       &m->host_id, m->host_case != HOSTREG__STATUS_UPDATE__HOST__NOT_SET, f);
        break;
    }
    case HR_MSG_LEAVE: {
        Hostreg__Leave *m = hostreg__leave__unpack(&alloc, f->payload_len, f->payload);
        if (!m)
            return HR_E_DECODE;
        r->seq = m->seq;
        rc = take_host(m->host_case == HOSTREG__LEAVE__HOST_HOST_UUID, &m->host_uuid, &m->host_id,
                       m->host_case != HOSTREG__LEAVE__HOST__NOT_SET, f);
        break;
    }
    case HR_MSG_ACK: {
        Hostreg__Ack *m = hostreg__ack__unpack(&alloc, f->payload_len, f->payload);
        if (!m)
            return HR_E_DECODE;
        f->ack.seq = m->seq;
        f->ack.result = (enum hr_result)m->result;
        f->ack.ttl = m->ttl;
        f->ack.interval = m->interval;
        f->ack.reason = m->reason;
        break;
    }
    default:
        return HR_E_TYPE;
    }
    /* Nothing to free: the arena dies with this frame. */
    return rc;
}

int hr_wire_decode(const uint8_t *buf, size_t len, struct hr_frame *f)
{
    int rc = hr_wire_parse_header(buf, len, f);
    return rc == HR_OK ? hr_wire_decode_payload(f) : rc;
}

static size_t put_header(uint8_t *buf, size_t cap, uint8_t type)
{
    if (cap < HR_WIRE_HDR)
        return 0;
    buf[0] = HR_WIRE_MAGIC0;
    buf[1] = HR_WIRE_MAGIC1;
    buf[2] = HR_WIRE_VERSION;
    buf[3] = type;
    buf[4] = 0;
    return HR_WIRE_HDR;
}

static size_t pack(const ProtobufCMessage *m, uint8_t type, uint8_t *buf, size_t cap)
{
    size_t need = protobuf_c_message_get_packed_size(m);
    if (put_header(buf, cap, type) == 0 || need > cap - HR_WIRE_HDR ||
        HR_WIRE_HDR + need > HR_WIRE_MAX)
        return 0;
    return HR_WIRE_HDR + protobuf_c_message_pack(m, buf + HR_WIRE_HDR);
}

/* Text of a fixed field as protobuf bytes; len SIZE_MAX when unterminated. */
static ProtobufCBinaryData text(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    return (ProtobufCBinaryData){n == cap ? SIZE_MAX : n, (uint8_t *)s};
}

size_t hr_wire_encode_request(const struct hr_request *req, uint8_t *buf, size_t cap)
{
    uint8_t uuid[16];
    ProtobufCBinaryData host = text(req->host_id, sizeof(req->host_id));
    ProtobufCBinaryData room = text(req->room_id, sizeof(req->room_id));
    ProtobufCBinaryData region = text(req->region, sizeof(req->region));
    if (host.len == SIZE_MAX || room.len == SIZE_MAX || region.len == SIZE_MAX)
        return 0;
    size_t hlen = host.len;
    int is_uuid = hr_uuid_parse(req->host_id, hlen, uuid);
    ProtobufCBinaryData bin = {16, uuid};

    /* Every request message has the same host oneof: a UUID as 16 bytes,
     * any other id as text, nothing for an empty id. */
#define SET_HOST(m, MSG)                                                                           \
    do {                                                                                           \
        if (is_uuid) {                                                                             \
            (m).host_case = HOSTREG__##MSG##__HOST_HOST_UUID;                                      \
            (m).host_uuid = bin;                                                                   \
        } else if (hlen) {                                                                         \
            (m).host_case = HOSTREG__##MSG##__HOST_HOST_ID;                                        \
            (m).host_id = host;                                                                    \
        }                                                                                          \
    } while (0)
    switch (req->type) {
    case HR_MSG_HEARTBEAT: {
        Hostreg__Heartbeat m = HOSTREG__HEARTBEAT__INIT;
        m.seq = req->seq;
        SET_HOST(m, HEARTBEAT);
        m.room_id = room;
        m.region = region;
        m.status = (Hostreg__Status)req->status;
        /* The defaults (capacity 1, every slot free) are not sent: the
         * datagram most hosts send stays as short as it was. */
        uint32_t capacity = req->capacity ? req->capacity : 1;
        if (capacity != 1)
            m.capacity = capacity;
        if (req->slots_given && req->available_slots != capacity) {
            m.slots_case = HOSTREG__HEARTBEAT__SLOTS_AVAILABLE_SLOTS;
            m.available_slots = req->available_slots;
        }
        return pack(&m.base, HR_MSG_HEARTBEAT, buf, cap);
    }
    case HR_MSG_STATUS: {
        Hostreg__StatusUpdate m = HOSTREG__STATUS_UPDATE__INIT;
        m.seq = req->seq;
        SET_HOST(m, STATUS_UPDATE);
        m.status = (Hostreg__Status)req->status;
        return pack(&m.base, HR_MSG_STATUS, buf, cap);
    }
    case HR_MSG_LEAVE: {
        Hostreg__Leave m = HOSTREG__LEAVE__INIT;
        m.seq = req->seq;
        SET_HOST(m, LEAVE);
        return pack(&m.base, HR_MSG_LEAVE, buf, cap);
    }
    default:
        return 0;
    }
}

size_t hr_wire_encode_ack(const struct hr_ack *ack, uint8_t *buf, size_t limit)
{
    Hostreg__Ack m = HOSTREG__ACK__INIT;
    m.seq = ack->seq;
    m.result = (Hostreg__Result)ack->result;
    m.ttl = ack->ttl;
    m.interval = ack->interval;
    m.reason = ack->reason;
    for (int step = 0; step < 3; step++) {
        if (step == 1)
            m.ttl = m.interval = 0;
        if (step == 2)
            m.reason = 0;
        size_t n = pack(&m.base, HR_MSG_ACK, buf, limit);
        if (n)
            return n;
    }
    return 0;
}

/* HMAC-SHA256 of buf[0..len) truncated to the tag. */
static void tag_of(const uint8_t key[32], const uint8_t *buf, size_t len, uint8_t tag[HR_WIRE_TAG])
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), key, 32, buf, len, mac, &maclen);
    memcpy(tag, mac, HR_WIRE_TAG);
}

size_t hr_wire_encode_request_auth(const struct hr_request *req, const uint8_t key[32],
                                   uint8_t key_id, uint32_t timestamp, uint8_t *buf, size_t cap)
{
    uint8_t plain[HR_WIRE_MAX];
    size_t n = hr_wire_encode_request(req, plain, sizeof(plain));
    size_t total = n + HR_WIRE_AUTH_HDR + HR_WIRE_TAG;
    if (n == 0 || total > cap || total > HR_WIRE_MAX)
        return 0;
    memcpy(buf, plain, HR_WIRE_HDR);
    buf[4] = HR_WIRE_FLAG_AUTH;
    buf[5] = key_id;
    buf[6] = (uint8_t)(timestamp >> 24);
    buf[7] = (uint8_t)(timestamp >> 16);
    buf[8] = (uint8_t)(timestamp >> 8);
    buf[9] = (uint8_t)timestamp;
    memcpy(buf + HR_WIRE_HDR + HR_WIRE_AUTH_HDR, plain + HR_WIRE_HDR, n - HR_WIRE_HDR);
    tag_of(key, buf, total - HR_WIRE_TAG, buf + total - HR_WIRE_TAG);
    return total;
}

int hr_wire_verify(const uint8_t *buf, size_t len, const struct hr_frame *f, const uint8_t key[32])
{
    uint8_t tag[HR_WIRE_TAG];
    if (!(f->flags & HR_WIRE_FLAG_AUTH) || !f->tag || len < HR_WIRE_TAG)
        return HR_E_AUTH;
    tag_of(key, buf, len - HR_WIRE_TAG, tag);
    return CRYPTO_memcmp(tag, f->tag, HR_WIRE_TAG) == 0 ? HR_OK : HR_E_AUTH;
}

/* A protobuf varint at *p (< end): 0, or -1 when malformed. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

int hr_wire_peek_host(const struct hr_frame *f, char out[HR_ID_MAX + 1])
{
    const uint8_t *p = f->payload, *end = f->payload + f->payload_len;
    const uint8_t *host = NULL;
    size_t hlen = 0;
    int is_uuid = 0;
    while (p < end) {
        uint64_t key, v;
        if (varint(&p, end, &key) != 0)
            return HR_E_DECODE;
        switch (key & 7) {
        case 0:
            if (varint(&p, end, &v) != 0)
                return HR_E_DECODE;
            break;
        case 1:
            if (end - p < 8)
                return HR_E_DECODE;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return HR_E_DECODE;
            p += 4;
            break;
        case 2:
            if (varint(&p, end, &v) != 0 || v > (uint64_t)(end - p))
                return HR_E_DECODE;
            /* Fields 2 (host_uuid) and 3 (host_id) in every request message. */
            if ((key >> 3) == 2 || (key >> 3) == 3) {
                host = p;
                hlen = (size_t)v;
                is_uuid = (key >> 3) == 2;
            }
            p += v;
            break;
        default:
            return HR_E_DECODE;
        }
    }
    if (!host)
        return HR_E_HOST_ID;
    if (is_uuid) {
        if (hlen != 16)
            return HR_E_HOST_ID;
        hr_uuid_format(host, out);
        return HR_OK;
    }
    return hr_id_canon((const char *)host, hlen, out) ? HR_OK : HR_E_HOST_ID;
}
