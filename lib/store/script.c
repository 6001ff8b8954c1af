#include "script.h"

#include "err.h"
#include "layout.h"
#include "parse.h"
#include "lua_scripts.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    const char *body;
} scripts[HR_NSCRIPTS] = {
#define HR_SCRIPT_ROW_(name, file) {file, HR_LUA_##name},
    HR_SCRIPTS(HR_SCRIPT_ROW_)
#undef HR_SCRIPT_ROW_
};

static const char *const ops[] = {
#define HR_SCRIPT_OP_TEXT_(name, text) text,
    HR_SCRIPT_OPS(HR_SCRIPT_OP_TEXT_)
#undef HR_SCRIPT_OP_TEXT_
};

static const char *const keys[] = {
#define HR_SCRIPT_KEY_TEXT_(name, text) text,
    HR_SCRIPT_KEYS(HR_SCRIPT_KEY_TEXT_)
#undef HR_SCRIPT_KEY_TEXT_
};

static const char *const bkeys[] = {
#define HR_SCRIPT_BKEY_TEXT_(name, text) text,
    HR_SCRIPT_BUCKET_KEYS(HR_SCRIPT_BKEY_TEXT_)
#undef HR_SCRIPT_BKEY_TEXT_
};

static const struct {
    long long code;
    enum hr_result result;
    int reason;
} results[] = {
#define HR_SCRIPT_RES_(name, code, result, reason) {code, result, reason},
    HR_SCRIPT_RESULTS(HR_SCRIPT_RES_)
#undef HR_SCRIPT_RES_
};

const char *hr_script_key(enum hr_script_key k)
{
    return keys[k];
}

const char *hr_script_bkey(enum hr_script_bkey k)
{
    return bkeys[k];
}

const char *hr_script_op(enum hr_script_op op)
{
    return ops[op];
}

const char *hr_script_name(enum hr_script_id id)
{
    return id < HR_NSCRIPTS ? scripts[id].name : NULL;
}

const char *hr_script_body(enum hr_script_id id)
{
    return id < HR_NSCRIPTS ? scripts[id].body : NULL;
}

int hr_script_find(const char *name)
{
    for (int i = 0; i < HR_NSCRIPTS; i++)
        if (strcmp(scripts[i].name, name) == 0)
            return i;
    return -1;
}

/* --- arguments --- */

/* Grows an array of `size`-byte elements to hold `need`: 0, or -1 (then it
 * is unchanged). */
static int grow(void **p, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return 0;
    int n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, (size_t)n * size);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Copies s[0..len) into the buffer: its offset, or (size_t)-1 on failure. */
static size_t store_bytes(struct hr_script_args *a, const char *s, size_t len)
{
    if (a->used + len > a->cap) {
        size_t n = a->cap ? a->cap : 1024;
        while (n < a->used + len)
            n *= 2;
        char *b = realloc(a->buf, n);
        if (!b)
            return (size_t)-1;
        a->buf = b;
        a->cap = n;
    }
    if (len)
        memcpy(a->buf + a->used, s, len);
    a->used += len;
    return a->used - len;
}

/* Appends to ARGV (`key` false) or KEYS. */
static void args_add(struct hr_script_args *a, const char *s, size_t len, bool key)
{
    if (a->failed)
        return;
    size_t **off = key ? &a->koff : &a->off, **lens = key ? &a->klen : &a->len;
    int *n = key ? &a->nkeys : &a->argc, *capp = key ? &a->keycap : &a->argcap;
    /* off and len share one capacity: grow both before counting it. */
    int cap = *capp;
    if (grow((void **)off, &cap, *n + 1, sizeof(**off)) ||
        grow((void **)lens, capp, *n + 1, sizeof(**lens))) {
        a->failed = 1;
        return;
    }
    size_t at = store_bytes(a, s, len);
    if (at == (size_t)-1) {
        a->failed = 1;
        return;
    }
    (*off)[*n] = at;
    (*lens)[(*n)++] = len;
}

void hr_script_args_reset(struct hr_script_args *a)
{
    a->argc = a->nkeys = a->failed = 0;
    a->used = 0;
}

void hr_script_args_free(struct hr_script_args *a)
{
    free(a->off);
    free(a->len);
    free(a->koff);
    free(a->klen);
    free(a->buf);
    memset(a, 0, sizeof(*a));
}

void hr_script_args_str(struct hr_script_args *a, const char *s)
{
    args_add(a, s, strlen(s), false);
}

void hr_script_args_mem(struct hr_script_args *a, const char *s, size_t len)
{
    args_add(a, s, len, false);
}

void hr_script_args_key(struct hr_script_args *a, const char *s, size_t len)
{
    args_add(a, s, len, true);
}

void hr_script_args_u64(struct hr_script_args *a, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
    args_add(a, tmp, (size_t)n, false);
}

/* Appends n strings: a script's fixed arguments (filled by position from
 * the table), or its regions. */
static void add_all(struct hr_script_args *a, const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hr_script_args_str(a, v[i]);
}

void hr_script_requests_header(struct hr_script_args *a, uint32_t ttl_ms, uint32_t bucket_cap)
{
    const char *f[HR_SCRIPT_REQUESTS_NARGS];
    char ttl[16], cap[16];
    snprintf(ttl, sizeof(ttl), "%" PRIu32, ttl_ms);
    snprintf(cap, sizeof(cap), "%" PRIu32, bucket_cap);
    f[HR_SCRIPT_REQUESTS_TTL] = ttl;
    f[HR_SCRIPT_REQUESTS_BUCKET_CAP] = cap;
    add_all(a, f, HR_SCRIPT_REQUESTS_NARGS);
}

void hr_script_requests_add(struct hr_script_args *a, const struct hr_layout *l,
                            const struct hr_request *req, bool refresh_only, uint32_t *buckets,
                            int *nbuckets)
{
    char id[HR_LAYOUT_ID_MAX];
    size_t idlen = hr_layout_id_pack(req->host_id, id);
    uint32_t b = hr_layout_bucket(l, id, idlen);
    int g = 0;
    while (g < *nbuckets && buckets[g] != b)
        g++;
    if (g == *nbuckets) {
        buckets[(*nbuckets)++] = b;
        hr_layout_bucket_keys(l, b, a);
    }
    /* Base 36 (layout.h): the scripts compare them exactly (entry.lua:
     * newer), where Lua's doubles would round those above 2^53. */
    char seq[HR_LAYOUT_SEQ_MAX], group[16];
    hr_layout_seq_format(req->seq, seq);
    snprintf(group, sizeof(group), "%d", g);
    enum hr_script_op op = req->type == HR_MSG_STATUS  ? HR_SCRIPT_OP_STATUS
                           : req->type == HR_MSG_LEAVE ? HR_SCRIPT_OP_LEAVE
                           : refresh_only              ? HR_SCRIPT_OP_REFRESH
                                                       : HR_SCRIPT_OP_HEARTBEAT;
    for (int f = 0; f < HR_SCRIPT_REQ_STRIDE; f++) {
        switch (f) {
        case HR_SCRIPT_REQ_OP:
            hr_script_args_str(a, ops[op]);
            break;
        case HR_SCRIPT_REQ_SEQ:
            hr_script_args_str(a, seq);
            break;
        case HR_SCRIPT_REQ_HOST:
            hr_script_args_mem(a, id, idlen);
            break;
        case HR_SCRIPT_REQ_ROOM:
            hr_script_args_str(a, req->room_id);
            break;
        case HR_SCRIPT_REQ_REGION:
            hr_script_args_str(a, req->region);
            break;
        case HR_SCRIPT_REQ_STATUS:
            hr_script_args_str(a, hr_status_name(req->status));
            break;
        case HR_SCRIPT_REQ_SLOTS: {
            /* As hr_request_check leaves them; a request that did not go
             * through it takes the same defaults. */
            char slots[24] = "";
            uint32_t cap = req->capacity ? req->capacity : 1;
            uint32_t avail = req->slots_given ? req->available_slots : cap;
            if (req->type == HR_MSG_HEARTBEAT && (cap != 1 || avail != 1))
                snprintf(slots, sizeof(slots), "%" PRIu32 ".%" PRIu32, cap, avail);
            hr_script_args_str(a, slots);
            break;
        }
        case HR_SCRIPT_REQ_BUCKET:
            hr_script_args_str(a, group);
            break;
        }
    }
}

/* The claim key of `claim_id` in bucket `b`. */
static void claim_key(struct hr_script_args *a, const struct hr_layout *l, uint32_t b,
                      const char *claim_id)
{
    char tag[16], suffix[48], key[96];
    snprintf(tag, sizeof(tag), "%" PRIu32, b);
    snprintf(suffix, sizeof(suffix), "%s%.32s", keys[HR_SCRIPT_KEY_CLAIM], claim_id);
    hr_layout_key(key, sizeof(key), l->prefix, tag, suffix);
    hr_script_args_key(a, key, strlen(key));
}

void hr_script_claim_args(struct hr_script_args *a, const struct hr_layout *l, uint32_t bucket,
                          const struct hr_claim_query *q)
{
    char lease[16], pick[16], id[HR_LAYOUT_ID_MAX];
    size_t idlen = q->host_id ? hr_layout_id_pack(q->host_id, id) : 0;
    hr_layout_bucket_keys(l, bucket, a);
    if (q->claim_id && q->claim_id[0])
        claim_key(a, l, bucket, q->claim_id);
    snprintf(lease, sizeof(lease), "%" PRIu32, q->lease_ms);
    snprintf(pick, sizeof(pick), "%" PRIu32, q->pick & 0x7fffffffu);
    _Static_assert(HR_SCRIPT_CLAIM_LEASE == 0 && HR_SCRIPT_CLAIM_HOST == 1 &&
                       HR_SCRIPT_CLAIM_PICK == 2 && HR_SCRIPT_CLAIM_ID == 3 &&
                       HR_SCRIPT_CLAIM_REGIONS == 4,
                   "claim: lease, host, pick, id, then the regions");
    hr_script_args_str(a, lease);
    hr_script_args_mem(a, id, idlen);
    hr_script_args_str(a, pick);
    hr_script_args_str(a, q->claim_id ? q->claim_id : "");
    add_all(a, q->regions, q->nregions);
}

void hr_script_list_args(struct hr_script_args *a, const struct hr_layout *l, uint32_t first,
                         uint32_t n, const struct hr_list_query *q)
{
    const char *f[HR_SCRIPT_LIST_REGIONS];
    char limit[16];
    for (uint32_t b = first; b < first + n; b++)
        hr_layout_bucket_keys(l, b, a);
    snprintf(limit, sizeof(limit), "%" PRIu32, q->limit);
    f[HR_SCRIPT_LIST_STATUS] = q->status == HR_STATUS_NONE ? "" : hr_status_name(q->status);
    f[HR_SCRIPT_LIST_LIMIT] = limit;
    add_all(a, f, HR_SCRIPT_LIST_REGIONS);
    add_all(a, q->regions, q->nregions);
}

void hr_script_count_args(struct hr_script_args *a, const struct hr_layout *l, uint32_t first,
                          uint32_t n, const char *const *regions, size_t nregions)
{
    _Static_assert(HR_SCRIPT_COUNT_REGIONS == 0, "count: the regions only");
    for (uint32_t b = first; b < first + n; b++)
        hr_layout_bucket_keys(l, b, a);
    add_all(a, regions, nregions);
}

void hr_script_sweep_args(struct hr_script_args *a, const struct hr_layout *l, uint32_t first,
                          uint32_t n, uint32_t max, bool state, bool trim)
{
    const char *f[HR_SCRIPT_SWEEP_NARGS];
    char m[16];
    for (uint32_t b = first; b < first + n; b++)
        hr_layout_bucket_keys(l, b, a);
    snprintf(m, sizeof(m), "%" PRIu32, max);
    f[HR_SCRIPT_SWEEP_MAX] = m;
    f[HR_SCRIPT_SWEEP_STATE] = state ? "1" : "0";
    f[HR_SCRIPT_SWEEP_TRIM] = trim ? "1" : "0";
    add_all(a, f, HR_SCRIPT_SWEEP_NARGS);
}

void hr_script_release_args(struct hr_script_args *a, const struct hr_layout *l, uint32_t bucket,
                            const char *claim_id, uint32_t lease_ms)
{
    const char *f[HR_SCRIPT_RELEASE_NARGS];
    char lease[16];
    hr_layout_bucket_keys(l, bucket, a);
    claim_key(a, l, bucket, claim_id);
    snprintf(lease, sizeof(lease), "%" PRIu32, lease_ms);
    f[HR_SCRIPT_RELEASE_ID] = claim_id;
    f[HR_SCRIPT_RELEASE_LEASE] = lease;
    add_all(a, f, HR_SCRIPT_RELEASE_NARGS);
}

void hr_script_regions_args(struct hr_script_args *a, const char *prefix, uint32_t max,
                            uint32_t stale_ms)
{
    char key[64];
    snprintf(key, sizeof(key), "%s" HR_SCRIPT_REGIONS_KEY, prefix);
    hr_script_args_key(a, key, strlen(key));
    _Static_assert(HR_SCRIPT_REGIONS_MAX == 0 && HR_SCRIPT_REGIONS_STALE == 1 &&
                       HR_SCRIPT_REGIONS_REGIONS == 2,
                   "regions: max, stale, regions");
    hr_script_args_u64(a, max);
    hr_script_args_u64(a, stale_ms);
}

void hr_script_summary_args(struct hr_script_args *a, const struct hr_layout *l, const char *region)
{
    char tag[HR_REGION_MAX + 8], key[128];
    snprintf(tag, sizeof(tag), "r.%s", region);
    hr_layout_key(key, sizeof(key), l->prefix, tag, keys[HR_SCRIPT_KEY_SUMMARY_SET]);
    hr_script_args_key(a, key, strlen(key));
    hr_layout_key(key, sizeof(key), l->prefix, tag, keys[HR_SCRIPT_KEY_SUMMARY_EPOCHS]);
    hr_script_args_key(a, key, strlen(key));
}

void hr_script_summary_add(struct hr_script_args *a, char op, const char *epoch, uint32_t bucket)
{
    char o[2] = {op, '\0'};
    _Static_assert(HR_SCRIPT_SUM_OP == 0 && HR_SCRIPT_SUM_EPOCH == 1 && HR_SCRIPT_SUM_BUCKET == 2,
                   "summary: op, epoch, bucket");
    hr_script_args_str(a, o);
    hr_script_args_str(a, epoch);
    hr_script_args_u64(a, bucket);
}

/* --- replies --- */

bool hr_script_result(const redisReply *e, enum hr_result *result, int *reason)
{
    if (!e || e->type != REDIS_REPLY_INTEGER)
        return false;
    for (size_t i = 0; i < sizeof(results) / sizeof(results[0]); i++)
        if (results[i].code == e->integer) {
            *result = results[i].result;
            *reason = results[i].reason;
            return true;
        }
    return false;
}

static void copy_str(char *dst, size_t cap, const redisReply *r)
{
    size_t n = 0;
    if (r && r->type == REDIS_REPLY_STRING)
        n = r->len < cap - 1 ? r->len : cap - 1;
    if (n)
        memcpy(dst, r->str, n);
    dst[n] = '\0';
}

bool hr_script_change(const redisReply *e, struct hr_summary_change *ch)
{
    /* "<a|d> <epoch> <bucket> <region>" */
    if (!e || e->type != REDIS_REPLY_STRING || e->len < 7 ||
        (e->str[0] != 'a' && e->str[0] != 'd') || e->str[1] != ' ')
        return false;
    const char *p = e->str + 2, *end = e->str + e->len;
    const char *sp1 = memchr(p, ' ', (size_t)(end - p));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
    char bucket[16];
    if (!sp2 || sp1 == p || (size_t)(sp1 - p) >= sizeof(ch->epoch) ||
        (size_t)(sp2 - sp1 - 1) >= sizeof(bucket) || (size_t)(end - sp2 - 1) > HR_REGION_MAX ||
        end == sp2 + 1)
        return false;
    memcpy(ch->epoch, p, (size_t)(sp1 - p));
    ch->epoch[sp1 - p] = '\0';
    memcpy(bucket, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    bucket[sp2 - sp1 - 1] = '\0';
    if (hr_parse_u32(bucket, 0, UINT32_MAX, &ch->bucket) != 0)
        return false;
    memcpy(ch->region, sp2 + 1, (size_t)(end - sp2 - 1));
    ch->region[end - sp2 - 1] = '\0';
    ch->op = e->str[0];
    return true;
}

/* A stored hostId in a reply, as text. */
static void copy_id(char *dst, size_t cap, const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_STRING)
        hr_layout_id_unpack(r->str, r->len, dst, cap);
    else
        dst[0] = '\0';
}

int hr_script_claimed(const redisReply *r, struct hr_host_info *h)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < HR_SCRIPT_CLAIMED_N ||
        r->element[HR_SCRIPT_CLAIMED_ID]->type != REDIS_REPLY_STRING)
        return -1;
    if (r->element[HR_SCRIPT_CLAIMED_ID]->len == 0)
        return 0;
    memset(h, 0, sizeof(*h));
    copy_id(h->host_id, sizeof(h->host_id), r->element[HR_SCRIPT_CLAIMED_ID]);
    copy_str(h->room_id, sizeof(h->room_id), r->element[HR_SCRIPT_CLAIMED_ROOM]);
    copy_str(h->region, sizeof(h->region), r->element[HR_SCRIPT_CLAIMED_REGION]);
    h->status = HR_STATUS_BUSY;
    h->claimed = true;
    return 1;
}

long hr_script_nlisted(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % HR_SCRIPT_LISTED_STRIDE)
        return -1;
    return (long)(r->elements / HR_SCRIPT_LISTED_STRIDE);
}

void hr_script_listed(const redisReply *r, size_t i, struct hr_host_info *h)
{
    redisReply **e = r->element + HR_SCRIPT_LISTED_STRIDE * i;
    char status[HR_REGION_MAX + 1];
    memset(h, 0, sizeof(*h));
    copy_id(h->host_id, sizeof(h->host_id), e[HR_SCRIPT_LISTED_ID]);
    copy_str(h->room_id, sizeof(h->room_id), e[HR_SCRIPT_LISTED_ROOM]);
    copy_str(h->region, sizeof(h->region), e[HR_SCRIPT_LISTED_REGION]);
    copy_str(status, sizeof(status), e[HR_SCRIPT_LISTED_STATUS]);
    h->status = hr_status_parse(status, strlen(status));
    const redisReply *ttl = e[HR_SCRIPT_LISTED_TTL], *claimed = e[HR_SCRIPT_LISTED_CLAIMED];
    h->ttl_ms = ttl->type == REDIS_REPLY_INTEGER ? ttl->integer : 0;
    h->claimed = claimed->type == REDIS_REPLY_INTEGER && claimed->integer == 1;
    const redisReply *cap = e[HR_SCRIPT_LISTED_CAPACITY], *slots = e[HR_SCRIPT_LISTED_FREE];
    h->capacity =
        cap->type == REDIS_REPLY_INTEGER && cap->integer > 0 && cap->integer <= HR_CAPACITY_MAX
            ? (uint32_t)cap->integer
            : 1;
    h->available_slots = slots->type == REDIS_REPLY_INTEGER && slots->integer >= 0 &&
                                 slots->integer <= (long long)h->capacity
                             ? (uint32_t)slots->integer
                             : 0;
}

/* argv and lens (room for a->nkeys + a->argc + 3) as `verb` `what`
 * <numkeys> <keys> <args>, or the args alone when `verb` is NULL; their
 * count. */
static int fill(const struct hr_script_args *a, const char *verb, const char *what,
                const char **argv, size_t *lens, char nkeys[16])
{
    int n = 0;
    if (verb) {
        snprintf(nkeys, 16, "%d", a->nkeys);
        argv[n] = verb, lens[n] = strlen(verb), n++;
        argv[n] = what, lens[n] = strlen(what), n++;
        argv[n] = nkeys, lens[n] = strlen(nkeys), n++;
        for (int i = 0; i < a->nkeys; i++, n++)
            argv[n] = hr_script_key_at(a, i, &lens[n]);
    }
    for (int i = 0; i < a->argc; i++, n++)
        argv[n] = hr_script_arg(a, i, &lens[n]);
    return n;
}

int hr_script_command(enum hr_script_id id, const struct hr_script_args *a, const char **argv,
                      size_t *lens, char nkeys[16])
{
    return fill(a, "EVAL", scripts[id].body, argv, lens, nkeys);
}

redisReply *hr_script_eval(redisContext *c, enum hr_script_id id, const struct hr_script_args *a)
{
    if (a->failed || id >= HR_NSCRIPTS)
        return NULL;
    size_t n = (size_t)a->nkeys + (size_t)a->argc + 3;
    const char **argv = malloc(n * sizeof(*argv));
    size_t *lens = malloc(n * sizeof(*lens));
    redisReply *r = NULL;
    char nkeys[16];
    if (argv && lens)
        r = redisCommandArgv(c, hr_script_command(id, a, argv, lens, nkeys), argv, lens);
    free(argv);
    free(lens);
    return r;
}

int hr_script_apply_changes(redisContext *c, const struct hr_layout *l, const redisReply *r,
                            size_t from)
{
    int n = 0;
    for (size_t i = from; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        struct hr_summary_change ch;
        if (!hr_script_change(r->element[i], &ch))
            continue;
        struct hr_script_args a = {0};
        hr_script_summary_args(&a, l, ch.region);
        hr_script_summary_add(&a, ch.op, ch.epoch, ch.bucket);
        redisReply *s = hr_script_eval(c, HR_SCRIPT_SUMMARY, &a);
        hr_script_args_free(&a);
        bool ok = s && s->type == REDIS_REPLY_INTEGER;
        freeReplyObject(s);
        if (!ok)
            return -1;
        n++;
    }
    return n;
}

int hr_script_call_argv(const struct hr_script_args *a, int script, bool eval, const char *sha,
                        char nkeys[16], const char ***argv, size_t **argvlen, int *cap)
{
    int need = a->nkeys + a->argc + 3;
    if (need > *cap) {
        const char **v = realloc(*argv, (size_t)need * sizeof(*v));
        if (v)
            *argv = v;
        size_t *l = v ? realloc(*argvlen, (size_t)need * sizeof(*l)) : NULL;
        if (!l)
            return -1;
        *argvlen = l;
        *cap = need;
    }
    if (script < 0)
        return fill(a, NULL, NULL, *argv, *argvlen, nkeys);
    return fill(a, eval ? "EVAL" : "EVALSHA", eval ? scripts[script].body : sha, *argv, *argvlen,
                nkeys);
}
