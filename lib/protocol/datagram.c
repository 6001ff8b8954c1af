#include "datagram.h"

#include "err.h"

#include <string.h>

/* Authenticated deployments: the frame must carry a known key id, a timestamp
 * within ±TTL of now (a replay window no wider than an entry's life; older
 * replays are also refused by the sequence rule), and a tag made with the
 * host's key. All of it before a byte of the payload is unpacked. `signer`
 * gets the hostId a per-host key was derived for ("" for a deployment key). */
static int authenticate(const uint8_t *buf, size_t len, const struct hr_datagram_ctx *ctx,
                        struct hr_verdict *v, char signer[HR_ID_MAX + 1])
{
    const struct hr_frame *f = &v->frame;
    signer[0] = '\0';
    if (!(f->flags & HR_WIRE_FLAG_AUTH))
        return HR_E_AUTH;
    const struct hr_key *k = hr_keys_find(ctx->keys, f->key_id);
    if (!k)
        return HR_E_AUTH;
    if (ctx->now_s) {
        int64_t skew = ctx->now_s - (int64_t)f->timestamp;
        if (skew > (int64_t)ctx->ttl_s || skew < -(int64_t)ctx->ttl_s) {
            v->stale = true;
            return HR_E_AUTH;
        }
    }
    uint8_t key[HR_KEY_LEN];
    if (k->mode == HR_KEY_MASTER && hr_wire_peek_host(f, signer) != HR_OK)
        return HR_E_AUTH;
    hr_keys_host_key(k, signer, key);
    int rc = hr_wire_verify(buf, len, f, key);
    memset(key, 0, sizeof(key));
    return rc;
}

/* The steps of docs/PROTOCOL.md 1.1 in order: the kind of verdict, with the
 * reason in v->reason. */
static enum hr_verdict_kind judge(const uint8_t *buf, size_t len, const struct hr_datagram_ctx *ctx,
                                  struct hr_verdict *v)
{
    char signer[HR_ID_MAX + 1] = "";
    if ((v->reason = hr_wire_parse_header(buf, len, &v->frame)) != HR_OK)
        return HR_VERDICT_DROP;
    v->header_ok = true;
    /* The registry only reads requests: an ack sent to it is not one. */
    if (v->frame.type == HR_MSG_ACK) {
        v->reason = HR_E_TYPE;
        return HR_VERDICT_DROP;
    }
    if (ctx->keys && (v->reason = authenticate(buf, len, ctx, v, signer)) != HR_OK)
        return HR_VERDICT_DROP;
    if ((v->reason = hr_wire_decode_payload(&v->frame)) == HR_E_DECODE)
        return HR_VERDICT_DROP;
    v->payload_ok = true;
    /* A field too long for the codec (a reason already) or a rule broken:
     * readable, so answered. The request is checked in a copy: the frame
     * keeps the fields as they travelled. */
    v->req = v->frame.req;
    if (v->reason == HR_OK)
        v->reason = hr_request_check(&v->req, ctx->rules);
    /* A per-host key speaks for its host only: the id it was derived from
     * must be the one the request names (the same bytes, read twice). */
    if (v->reason == HR_OK && signer[0] && strcmp(signer, v->req.host_id) != 0) {
        v->reason = HR_E_AUTH;
        return HR_VERDICT_DROP;
    }
    return v->reason == HR_OK ? HR_VERDICT_ACCEPT : HR_VERDICT_INVALID;
}

void hr_datagram_judge(const uint8_t *buf, size_t len, const struct hr_datagram_ctx *ctx,
                       struct hr_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->kind = judge(buf, len, ctx, v);
    if (v->kind == HR_VERDICT_ACCEPT) {
        v->answered = true;
    } else if (v->kind == HR_VERDICT_INVALID) {
        uint8_t ack[HR_WIRE_MAX];
        struct hr_ack smallest = {.seq = v->frame.req.seq, .result = HR_RESULT_INVALID};
        v->answered = hr_wire_encode_ack(&smallest, ack, len) != 0;
    }
}

const char *hr_verdict_name(const struct hr_verdict *v)
{
    switch (v->kind) {
    case HR_VERDICT_ACCEPT:
        return "valid";
    case HR_VERDICT_INVALID:
        return "invalid";
    default:
        return "dropped";
    }
}
