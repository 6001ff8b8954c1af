#include "layout.h"

#include "parse.h"
#include "script.h"
#include "siphash.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int hr_layout_new(struct hr_layout *l, const char *prefix, uint32_t buckets)
{
    if (buckets == 0 || buckets > HR_LAYOUT_BUCKETS_MAX || (buckets & (buckets - 1)))
        return -1;
    memset(l, 0, sizeof(*l));
    snprintf(l->prefix, sizeof(l->prefix), "%s", prefix);
    l->buckets = buckets;
    /* The seed keeps anyone from choosing hostIds that all fall into one
     * bucket (one bucket's host cap, one node's load). */
    if (getrandom(l->seed, sizeof(l->seed), 0) != (ssize_t)sizeof(l->seed))
        for (size_t i = 0; i < sizeof(l->seed); i++) /* no getrandom: still varied */
            l->seed[i] = (uint8_t)((uintptr_t)l >> (i % 8) ^ (uintptr_t)&i ^ i * 131u);
    return 0;
}

void hr_layout_format(const struct hr_layout *l, char *out, size_t cap)
{
    char hex[33];
    for (size_t i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", l->seed[i]);
    snprintf(out, cap, HR_LAYOUT_VERSION " %" PRIu32 " %s", l->buckets, hex);
}

int hr_layout_parse(const char *value, const char *prefix, struct hr_layout *l)
{
    struct hr_layout t;
    memset(&t, 0, sizeof(t));
    size_t vlen = strlen(HR_LAYOUT_VERSION);
    if (strncmp(value, HR_LAYOUT_VERSION " ", vlen + 1) != 0)
        return -1;
    const char *p = value + vlen + 1, *sp = strchr(p, ' ');
    char num[8];
    uint32_t b;
    if (!sp || (size_t)(sp - p) >= sizeof(num))
        return -1;
    memcpy(num, p, (size_t)(sp - p));
    num[sp - p] = '\0';
    if (hr_parse_u32(num, 1, HR_LAYOUT_BUCKETS_MAX, &b) != 0 || (b & (b - 1)) ||
        strlen(sp + 1) != 32)
        return -1;
    for (size_t i = 0; i < 16; i++) {
        int hi = hr_hex_digit(sp[1 + 2 * i]), lo = hr_hex_digit(sp[2 + 2 * i]);
        if (hi < 0 || lo < 0)
            return -1;
        t.seed[i] = (uint8_t)(hi << 4 | lo);
    }
    t.buckets = b;
    snprintf(t.prefix, sizeof(t.prefix), "%s", prefix);
    *l = t;
    return 0;
}

size_t hr_layout_id_pack(const char *id, char *out)
{
    size_t len = strlen(id);
    uint8_t u[16];
    if (len == HR_UUID_LEN && hr_uuid_parse(id, len, u)) {
        memcpy(out, u, 16);
        return 16;
    }
    if (len > HR_ID_MAX)
        len = HR_ID_MAX;
    memcpy(out, id, len);
    if (len == 16)
        out[len++] = '~';
    return len;
}

void hr_layout_id_unpack(const char *stored, size_t len, char *out, size_t cap)
{
    if (len == 16 && cap > HR_UUID_LEN) {
        char text[HR_UUID_LEN + 1];
        hr_uuid_format((const uint8_t *)stored, text);
        memcpy(out, text, HR_UUID_LEN + 1);
        return;
    }
    if (len == 17 && stored[16] == '~')
        len = 16;
    if (len >= cap)
        len = cap - 1;
    memcpy(out, stored, len);
    out[len] = '\0';
}

size_t hr_layout_seq_format(uint64_t seq, char *out)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char rev[HR_LAYOUT_SEQ_MAX];
    size_t n = 0;
    do {
        rev[n++] = digits[seq % 36];
        seq /= 36;
    } while (seq);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '\0';
    return n;
}

int hr_layout_seq_parse(const char *s, size_t len, uint64_t *seq)
{
    if (len == 0 || len >= HR_LAYOUT_SEQ_MAX || (len > 1 && s[0] == '0'))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned d;
        if (s[i] >= '0' && s[i] <= '9')
            d = (unsigned)(s[i] - '0');
        else if (s[i] >= 'a' && s[i] <= 'z')
            d = (unsigned)(s[i] - 'a') + 10;
        else
            return -1;
        if (v > (UINT64_MAX - d) / 36)
            return -1;
        v = v * 36 + d;
    }
    *seq = v;
    return 0;
}

/* "<capacity>.<free>.<reported>", decimal, into e: 0, or -1. */
static int parse_slots(const char *s, size_t len, struct hr_layout_entry *e)
{
    uint32_t *dst[3] = {&e->capacity, &e->free, &e->reported};
    size_t k = 0, digits = 0;
    uint64_t v = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (digits == 0 || k == 3)
                return -1;
            *dst[k++] = (uint32_t)v;
            v = 0;
            digits = 0;
        } else if (s[i] >= '0' && s[i] <= '9' && digits < 9) {
            v = v * 10 + (uint64_t)(s[i] - '0');
            digits++;
        } else
            return -1;
    }
    return k == 3 ? 0 : -1;
}

int hr_layout_entry_parse(const char *v, size_t len, struct hr_layout_entry *e)
{
    /* Six fields separated by single spaces. */
    const char *f[6];
    size_t fl[6], n = 0, at = 0;
    for (size_t i = 0; i <= len && n < 6; i++) {
        if (i == len || v[i] == ' ') {
            f[n] = v + at;
            fl[n++] = i - at;
            at = i + 1;
        }
    }
    if (n != 6 || at != len + 1 || fl[2] == 0 || fl[3] == 0 || fl[3] >= sizeof(e->region) ||
        fl[4] == 0 || fl[4] >= sizeof(e->room))
        return -1;
    e->capacity = e->free = e->reported = 1;
    if (fl[2] > 1 && parse_slots(f[2] + 1, fl[2] - 1, e) != 0)
        return -1;
    uint64_t exp;
    if (hr_layout_seq_parse(f[0], fl[0], &e->hseq) != 0 ||
        hr_layout_seq_parse(f[1], fl[1], &e->sseq) != 0 ||
        hr_layout_seq_parse(f[5], fl[5], &exp) != 0 || exp > INT64_MAX)
        return -1;
    e->expiry_ms = (int64_t)exp;
    e->status = NULL;
    for (size_t i = 0; i < HR_NSTATUSES; i++)
        if (hr_status_name_at(i)[0] == f[2][0])
            e->status = hr_status_name_at(i);
    if (!e->status)
        return -1;
    memcpy(e->region, f[3], fl[3]);
    e->region[fl[3]] = '\0';
    memcpy(e->room, f[4], fl[4]);
    e->room[fl[4]] = '\0';
    return 0;
}

uint32_t hr_layout_bucket(const struct hr_layout *l, const char *stored, size_t len)
{
    struct hr_siphash_key k = hr_siphash_key_from_bytes(l->seed);
    return (uint32_t)(hr_siphash(&k, stored, len) & (l->buckets - 1));
}

void hr_layout_key(char *out, size_t cap, const char *prefix, const char *tag, const char *suffix)
{
    snprintf(out, cap, "%s{%s}%s", prefix, tag, suffix);
}

void hr_layout_bucket_keys(const struct hr_layout *l, uint32_t b, struct hr_script_args *a)
{
    char tag[16], key[64];
    snprintf(tag, sizeof(tag), "%" PRIu32, b);
    for (int k = 0; k < HR_SCRIPT_BKEYS; k++) {
        hr_layout_key(key, sizeof(key), l->prefix, tag, hr_script_bkey((enum hr_script_bkey)k));
        hr_script_args_key(a, key, strlen(key));
    }
}

int hr_layout_read_sync(redisContext *c, const char *prefix, struct hr_layout *l, char *err,
                        size_t errlen)
{
    redisReply *r = redisCommand(c, "GET %s" HR_LAYOUT_KEY, prefix);
    int rc = -1;
    if (!r)
        snprintf(err, errlen, "cannot read %s" HR_LAYOUT_KEY ": %s", prefix, c->errstr);
    else if (r->type == REDIS_REPLY_NIL)
        rc = 0;
    else if (r->type != REDIS_REPLY_STRING)
        snprintf(err, errlen, "cannot read %s" HR_LAYOUT_KEY ": %s", prefix,
                 r->type == REDIS_REPLY_ERROR ? r->str : "not a string");
    else if (hr_layout_parse(r->str, prefix, l) != 0)
        snprintf(err, errlen,
                 "%s" HR_LAYOUT_KEY " is '%.40s': not storage layout " HR_LAYOUT_VERSION
                 ", which this build reads",
                 prefix, r->str);
    else
        rc = 1;
    freeReplyObject(r);
    return rc;
}
