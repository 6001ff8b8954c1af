#include "inspect.h"

#include "err.h"
#include "parse.h"

#include <ctype.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <string.h>

void hr_inspect(const uint8_t *buf, size_t len, const struct hr_datagram_ctx *ctx, bool reply,
                struct hr_inspect *out)
{
    memset(out, 0, sizeof(*out));
    out->len = len;
    out->reply = reply;
    struct hr_verdict *v = &out->v;
    if (!reply) {
        hr_datagram_judge(buf, len, ctx, v);
        /* Shown, not judged: the fields of an ack sent the wrong way. */
        if (v->header_ok && v->frame.type == HR_MSG_ACK)
            v->payload_ok = hr_wire_decode_payload(&v->frame) == HR_OK;
        return;
    }
    if ((v->reason = hr_wire_parse_header(buf, len, &v->frame)) == HR_OK) {
        v->header_ok = true;
        v->reason = hr_wire_decode_payload(&v->frame);
        v->payload_ok = v->reason != HR_E_DECODE;
    }
    if (v->reason == HR_OK && v->frame.type != HR_MSG_ACK)
        v->reason = HR_E_TYPE; /* a request where an ack belongs */
    v->kind = v->reason == HR_OK ? HR_VERDICT_ACCEPT : HR_VERDICT_DROP;
}

const char *hr_inspect_verdict(const struct hr_inspect *r)
{
    return hr_verdict_name(&r->v);
}

static const char unanswered[] = ", not answered: the ack would be larger than the datagram";

/* Why it was refused, in words. */
static const char *message(const struct hr_inspect *r)
{
    if (!r->reply && r->v.header_ok && r->v.frame.type == HR_MSG_ACK)
        return "an ack: hostregd sends these, and drops any it receives";
    if (r->v.stale)
        return "timestamp outside +/-TTL of the time judged at: stale, or a clock off";
    return hr_strerror(r->v.reason);
}

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

void hr_inspect_print(FILE *out, const struct hr_inspect *r)
{
    const struct hr_frame *f = &r->v.frame;
    if (!r->v.header_ok) {
        fprintf(out, "? len=%zu", r->len);
    } else {
        fprintf(out, "%s", hr_msg_type_name((enum hr_msg_type)f->type));
        if (f->flags & HR_WIRE_FLAG_AUTH)
            fprintf(out, " key=%u ts=%" PRIu32, f->key_id, f->timestamp);
        if (r->v.payload_ok && f->type == HR_MSG_ACK) {
            fprintf(out, " seq=%" PRIu64 " result=%s", f->ack.seq, hr_result_name(f->ack.result));
            if (f->ack.ttl)
                fprintf(out, " ttl=%" PRIu32, f->ack.ttl);
            if (f->ack.interval)
                fprintf(out, " interval=%" PRIu32, f->ack.interval);
            if (f->ack.reason)
                fprintf(out, " reason=%s", hr_errname((int)f->ack.reason));
        } else if (r->v.payload_ok) {
            const struct hr_request *q = &f->req;
            fprintf(out, " seq=%" PRIu64 " host=%s%s", q->seq, or_dash(q->host_id),
                    f->uuid_host ? "(uuid)" : "");
            if (f->type == HR_MSG_HEARTBEAT)
                fprintf(out, " room=%s region=%s", or_dash(q->room_id), or_dash(q->region));
            /* As sent: absent fields (capacity 1, every slot free) are not
             * shown. */
            if (q->capacity)
                fprintf(out, " capacity=%" PRIu32, q->capacity);
            if (q->slots_given)
                fprintf(out, " available_slots=%" PRIu32, q->available_slots);
            if (f->type != HR_MSG_LEAVE)
                fprintf(out, " status=%s",
                        q->status == HR_STATUS_NONE ? "-" : hr_status_name(q->status));
        }
        fprintf(out, " len=%zu", r->len);
    }
    if (r->v.kind == HR_VERDICT_ACCEPT)
        fprintf(out, " valid");
    else
        fprintf(out, " %s: %s (%s)%s", hr_inspect_verdict(r), hr_errname(r->v.reason), message(r),
                r->v.kind == HR_VERDICT_INVALID && !r->v.answered ? unanswered : "");
}

json_t *hr_inspect_json(const struct hr_inspect *r)
{
    const struct hr_frame *f = &r->v.frame;
    json_t *o = json_object();
    json_object_set_new(o, "len", json_integer((json_int_t)r->len));
    if (r->v.header_ok) {
        json_object_set_new(o, "type", json_string(hr_msg_type_name((enum hr_msg_type)f->type)));
        json_object_set_new(o, "version", json_integer(f->version));
        if (f->flags & HR_WIRE_FLAG_AUTH) {
            json_object_set_new(o, "key_id", json_integer(f->key_id));
            json_object_set_new(o, "timestamp", json_integer(f->timestamp));
        }
    }
    if (r->v.payload_ok && f->type == HR_MSG_ACK) {
        /* As strings: a 64-bit seq does not survive a JSON double. */
        char seq[24];
        snprintf(seq, sizeof(seq), "%" PRIu64, f->ack.seq);
        json_object_set_new(o, "seq", json_string(seq));
        json_object_set_new(o, "result", json_string(hr_result_name(f->ack.result)));
        json_object_set_new(o, "ttl", json_integer(f->ack.ttl));
        json_object_set_new(o, "interval", json_integer(f->ack.interval));
        if (f->ack.reason)
            json_object_set_new(o, "reason", json_string(hr_errname((int)f->ack.reason)));
    } else if (r->v.payload_ok) {
        const struct hr_request *q = &f->req;
        char seq[24];
        snprintf(seq, sizeof(seq), "%" PRIu64, q->seq);
        json_object_set_new(o, "seq", json_string(seq));
        json_object_set_new(o, "hostId", json_string(q->host_id));
        json_object_set_new(o, "hostIdIsUuid", json_boolean(f->uuid_host));
        if (f->type == HR_MSG_HEARTBEAT) {
            json_object_set_new(o, "roomId", json_string(q->room_id));
            json_object_set_new(o, "region", json_string(q->region));
            /* As sent: null for a field the datagram left out. */
            json_object_set_new(o, "capacity",
                                q->capacity ? json_integer(q->capacity) : json_null());
            json_object_set_new(o, "availableSlots",
                                q->slots_given ? json_integer(q->available_slots) : json_null());
        }
        if (f->type != HR_MSG_LEAVE)
            json_object_set_new(
                o, "status",
                q->status == HR_STATUS_NONE ? json_null() : json_string(hr_status_name(q->status)));
    }
    json_object_set_new(o, "verdict", json_string(hr_inspect_verdict(r)));
    if (r->v.kind != HR_VERDICT_ACCEPT) {
        json_object_set_new(o, "reason", json_string(hr_errname(r->v.reason)));
        if (r->v.stale)
            json_object_set_new(o, "stale", json_true());
        json_object_set_new(o, "message", json_string(message(r)));
    }
    if (!r->reply)
        json_object_set_new(o, "answered", json_boolean(r->v.answered));
    return o;
}

long hr_parse_datagram_text(const char *text, uint8_t *out, size_t cap)
{
    /* Hex first: every character a hex digit, white space, ':' or a 0x prefix. */
    size_t n = 0;
    int hi = -1, is_hex = 1;
    for (const char *p = text; *p; p++) {
        if (isspace((unsigned char)*p) || *p == ':')
            continue;
        if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && hi < 0) {
            p++;
            continue;
        }
        int v = hr_hex_digit((unsigned char)*p);
        if (v < 0) {
            is_hex = 0;
            break;
        }
        if (hi < 0) {
            hi = v;
        } else {
            if (n == cap)
                return -1;
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    if (is_hex && hi < 0)
        return (long)n;

    /* Base64, white space ignored. */
    char clean[4 * 1024];
    size_t c = 0;
    for (const char *p = text; *p; p++) {
        if (isspace((unsigned char)*p))
            continue;
        if (!isalnum((unsigned char)*p) && *p != '+' && *p != '/' && *p != '=')
            return -1;
        if (c + 1 >= sizeof(clean))
            return -1;
        clean[c++] = *p;
    }
    if (c == 0 || c % 4)
        return -1;
    uint8_t tmp[3 * sizeof(clean) / 4];
    int len = EVP_DecodeBlock(tmp, (const unsigned char *)clean, (int)c);
    if (len < 0)
        return -1;
    /* EVP_DecodeBlock counts the padding as zero bytes: take them back. */
    if (clean[c - 1] == '=')
        len--;
    if (clean[c - 2] == '=')
        len--;
    if ((size_t)len > cap)
        return -1;
    memcpy(out, tmp, (size_t)len);
    return len;
}
