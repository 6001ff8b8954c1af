#include "inspect.h"

#include "err.h"

#include <ctype.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <string.h>

void hr_inspect(const uint8_t *buf, size_t len, const struct hr_rules *rules,
                const struct hr_keyring *keys, struct hr_inspect *out)
{
    memset(out, 0, sizeof(*out));
    out->len = len;
    out->err = hr_wire_parse_header(buf, len, &out->f);
    if (out->err != HR_OK)
        return;
    out->header_ok = 1;
    if (keys && out->f.type != HR_MSG_ACK) {
        const struct hr_key *k = hr_keys_find(keys, out->f.key_id);
        char host[HR_ID_MAX + 1] = "";
        uint8_t key[HR_KEY_LEN];
        if (!(out->f.flags & HR_WIRE_FLAG_AUTH) || !k ||
            (k->mode == HR_KEY_MASTER && hr_wire_peek_host(&out->f, host) != HR_OK)) {
            out->err = HR_E_AUTH;
            return;
        }
        hr_keys_host_key(k, host, key);
        out->err = hr_wire_verify(buf, len, &out->f, key);
        if (out->err != HR_OK)
            return;
    }
    out->err = hr_wire_decode_payload(&out->f);
    if (out->err == HR_E_DECODE)
        return;
    out->payload_ok = 1;
    if (out->err != HR_OK || out->f.type == HR_MSG_ACK)
        return;
    /* Check a copy: the fields are printed as they travelled. */
    struct hr_request req = out->f.req;
    out->err = hr_request_check(&req, rules);
}

const char *hr_inspect_verdict(const struct hr_inspect *r)
{
    if (r->err == HR_OK)
        return "valid";
    return r->err < HR_E_HOST_ID ? "dropped" : "invalid";
}

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

void hr_inspect_print(FILE *out, const struct hr_inspect *r)
{
    const struct hr_frame *f = &r->f;
    if (!r->header_ok) {
        fprintf(out, "? len=%zu", r->len);
    } else {
        fprintf(out, "%s", hr_msg_type_name((enum hr_msg_type)f->type));
        if (f->flags & HR_WIRE_FLAG_AUTH)
            fprintf(out, " key=%u ts=%" PRIu32, f->key_id, f->timestamp);
        if (r->payload_ok && f->type == HR_MSG_ACK) {
            fprintf(out, " seq=%" PRIu64 " result=%s", f->ack.seq, hr_result_name(f->ack.result));
            if (f->ack.ttl)
                fprintf(out, " ttl=%" PRIu32, f->ack.ttl);
            if (f->ack.interval)
                fprintf(out, " interval=%" PRIu32, f->ack.interval);
            if (f->ack.reason)
                fprintf(out, " reason=%s", hr_errname((int)f->ack.reason));
        } else if (r->payload_ok) {
            const struct hr_request *q = &f->req;
            fprintf(out, " seq=%" PRIu64 " host=%s%s", q->seq, or_dash(q->host_id),
                    f->uuid_host ? "(uuid)" : "");
            if (f->type == HR_MSG_HEARTBEAT)
                fprintf(out, " room=%s region=%s", or_dash(q->room_id), or_dash(q->region));
            if (f->type != HR_MSG_LEAVE)
                fprintf(out, " status=%s",
                        q->status == HR_STATUS_NONE ? "-" : hr_status_name(q->status));
        }
        fprintf(out, " len=%zu", r->len);
    }
    if (r->err == HR_OK)
        fprintf(out, " valid");
    else
        fprintf(out, " %s: %s (%s)", hr_inspect_verdict(r), hr_errname(r->err),
                hr_strerror(r->err));
}

json_t *hr_inspect_json(const struct hr_inspect *r)
{
    const struct hr_frame *f = &r->f;
    json_t *o = json_object();
    json_object_set_new(o, "len", json_integer((json_int_t)r->len));
    if (r->header_ok) {
        json_object_set_new(o, "type", json_string(hr_msg_type_name((enum hr_msg_type)f->type)));
        json_object_set_new(o, "version", json_integer(f->version));
        if (f->flags & HR_WIRE_FLAG_AUTH) {
            json_object_set_new(o, "key_id", json_integer(f->key_id));
            json_object_set_new(o, "timestamp", json_integer(f->timestamp));
        }
    }
    if (r->payload_ok && f->type == HR_MSG_ACK) {
        /* As strings: a 64-bit seq does not survive a JSON double. */
        char seq[24];
        snprintf(seq, sizeof(seq), "%" PRIu64, f->ack.seq);
        json_object_set_new(o, "seq", json_string(seq));
        json_object_set_new(o, "result", json_string(hr_result_name(f->ack.result)));
        json_object_set_new(o, "ttl", json_integer(f->ack.ttl));
        json_object_set_new(o, "interval", json_integer(f->ack.interval));
        if (f->ack.reason)
            json_object_set_new(o, "reason", json_string(hr_errname((int)f->ack.reason)));
    } else if (r->payload_ok) {
        const struct hr_request *q = &f->req;
        char seq[24];
        snprintf(seq, sizeof(seq), "%" PRIu64, q->seq);
        json_object_set_new(o, "seq", json_string(seq));
        json_object_set_new(o, "hostId", json_string(q->host_id));
        json_object_set_new(o, "hostIdIsUuid", json_boolean(f->uuid_host));
        if (f->type == HR_MSG_HEARTBEAT) {
            json_object_set_new(o, "roomId", json_string(q->room_id));
            json_object_set_new(o, "region", json_string(q->region));
        }
        if (f->type != HR_MSG_LEAVE)
            json_object_set_new(
                o, "status",
                q->status == HR_STATUS_NONE ? json_null() : json_string(hr_status_name(q->status)));
    }
    json_object_set_new(o, "verdict", json_string(hr_inspect_verdict(r)));
    if (r->err != HR_OK) {
        json_object_set_new(o, "reason", json_string(hr_errname(r->err)));
        json_object_set_new(o, "message", json_string(hr_strerror(r->err)));
    }
    return o;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
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
        int v = hexval((unsigned char)*p);
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
