#include "script.h"

#include "err.h"
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

static void args_add(struct hr_script_args *a, const char *s, size_t len)
{
    if (a->failed)
        return;
    /* off and len share one capacity: grow both before counting it. */
    int cap = a->argcap;
    if (grow((void **)&a->off, &cap, a->argc + 1, sizeof(*a->off)) ||
        grow((void **)&a->len, &a->argcap, a->argc + 1, sizeof(*a->len))) {
        a->failed = 1;
        return;
    }
    if (a->used + len > a->cap) {
        size_t n = a->cap ? a->cap : 1024;
        while (n < a->used + len)
            n *= 2;
        char *b = realloc(a->buf, n);
        if (!b) {
            a->failed = 1;
            return;
        }
        a->buf = b;
        a->cap = n;
    }
    if (len)
        memcpy(a->buf + a->used, s, len);
    a->off[a->argc] = a->used;
    a->len[a->argc++] = len;
    a->used += len;
}

void hr_script_args_reset(struct hr_script_args *a)
{
    a->argc = a->failed = 0;
    a->used = 0;
}

void hr_script_args_free(struct hr_script_args *a)
{
    free(a->off);
    free(a->len);
    free(a->buf);
    memset(a, 0, sizeof(*a));
}

void hr_script_args_str(struct hr_script_args *a, const char *s)
{
    args_add(a, s, strlen(s));
}

void hr_script_args_u64(struct hr_script_args *a, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
    args_add(a, tmp, (size_t)n);
}

/* Appends n strings: a script's fixed arguments (filled by position from
 * the table), or its regions. */
static void add_all(struct hr_script_args *a, const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hr_script_args_str(a, v[i]);
}

void hr_script_requests_header(struct hr_script_args *a, const char *prefix, uint32_t ttl_ms,
                               uint32_t max_hosts, const char *regions)
{
    const char *f[HR_SCRIPT_REQUESTS_NARGS];
    char ttl[16], max[16];
    snprintf(ttl, sizeof(ttl), "%" PRIu32, ttl_ms);
    snprintf(max, sizeof(max), "%" PRIu32, max_hosts);
    f[HR_SCRIPT_REQUESTS_PREFIX] = prefix;
    f[HR_SCRIPT_REQUESTS_TTL] = ttl;
    f[HR_SCRIPT_REQUESTS_MAX_HOSTS] = max;
    f[HR_SCRIPT_REQUESTS_REGIONS] = regions;
    add_all(a, f, HR_SCRIPT_REQUESTS_NARGS);
}

void hr_script_requests_add(struct hr_script_args *a, const struct hr_request *req,
                            bool refresh_only)
{
    const char *f[HR_SCRIPT_REQ_STRIDE];
    /* Decimal: the scripts compare them as strings (length, then bytes),
     * exactly, where Lua's doubles would round those above 2^53. */
    char seq[24];
    snprintf(seq, sizeof(seq), "%" PRIu64, req->seq);
    enum hr_script_op op = req->type == HR_MSG_STATUS  ? HR_SCRIPT_OP_STATUS
                           : req->type == HR_MSG_LEAVE ? HR_SCRIPT_OP_LEAVE
                           : refresh_only              ? HR_SCRIPT_OP_REFRESH
                                                       : HR_SCRIPT_OP_HEARTBEAT;
    f[HR_SCRIPT_REQ_OP] = ops[op];
    f[HR_SCRIPT_REQ_SEQ] = seq;
    f[HR_SCRIPT_REQ_HOST] = req->host_id;
    f[HR_SCRIPT_REQ_ROOM] = req->room_id;
    f[HR_SCRIPT_REQ_REGION] = req->region;
    f[HR_SCRIPT_REQ_STATUS] = hr_status_name(req->status);
    add_all(a, f, HR_SCRIPT_REQ_STRIDE);
}

void hr_script_claim_args(struct hr_script_args *a, const char *prefix,
                          const struct hr_claim_query *q)
{
    const char *f[HR_SCRIPT_CLAIM_REGIONS];
    char lease[16], pick[16];
    snprintf(lease, sizeof(lease), "%" PRIu32, q->lease_ms);
    snprintf(pick, sizeof(pick), "%" PRIu32, q->pick & 0x7fffffffu);
    f[HR_SCRIPT_CLAIM_PREFIX] = prefix;
    f[HR_SCRIPT_CLAIM_LEASE] = lease;
    f[HR_SCRIPT_CLAIM_HOST] = q->host_id ? q->host_id : "";
    f[HR_SCRIPT_CLAIM_PICK] = pick;
    f[HR_SCRIPT_CLAIM_ID] = q->claim_id ? q->claim_id : "";
    add_all(a, f, HR_SCRIPT_CLAIM_REGIONS);
    add_all(a, q->regions, q->nregions);
}

void hr_script_list_args(struct hr_script_args *a, const char *prefix,
                         const struct hr_list_query *q)
{
    const char *f[HR_SCRIPT_LIST_REGIONS];
    char limit[16];
    snprintf(limit, sizeof(limit), "%" PRIu32, q->limit);
    f[HR_SCRIPT_LIST_PREFIX] = prefix;
    f[HR_SCRIPT_LIST_STATUS] = q->status == HR_STATUS_NONE ? "" : hr_status_name(q->status);
    f[HR_SCRIPT_LIST_LIMIT] = limit;
    add_all(a, f, HR_SCRIPT_LIST_REGIONS);
    add_all(a, q->regions, q->nregions);
}

void hr_script_count_args(struct hr_script_args *a, const char *prefix, const char *const *regions,
                          size_t nregions)
{
    _Static_assert(HR_SCRIPT_COUNT_REGIONS == 1, "count: the prefix, then the regions");
    add_all(a, &prefix, 1);
    add_all(a, regions, nregions);
}

void hr_script_sweep_args(struct hr_script_args *a, const char *prefix, uint32_t max)
{
    const char *f[HR_SCRIPT_SWEEP_NARGS];
    char n[16];
    snprintf(n, sizeof(n), "%" PRIu32, max);
    f[HR_SCRIPT_SWEEP_PREFIX] = prefix;
    f[HR_SCRIPT_SWEEP_MAX] = n;
    add_all(a, f, HR_SCRIPT_SWEEP_NARGS);
}

void hr_script_release_args(struct hr_script_args *a, const char *prefix, const char *claim_id,
                            uint32_t lease_ms)
{
    const char *f[HR_SCRIPT_RELEASE_NARGS];
    char lease[16];
    snprintf(lease, sizeof(lease), "%" PRIu32, lease_ms);
    f[HR_SCRIPT_RELEASE_PREFIX] = prefix;
    f[HR_SCRIPT_RELEASE_ID] = claim_id;
    f[HR_SCRIPT_RELEASE_LEASE] = lease;
    add_all(a, f, HR_SCRIPT_RELEASE_NARGS);
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

int hr_script_claimed(const redisReply *r, struct hr_host_info *h)
{
    if (!r || r->type != REDIS_REPLY_ARRAY ||
        (r->elements != 0 && r->elements != HR_SCRIPT_CLAIMED_N))
        return -1;
    if (r->elements == 0)
        return 0;
    memset(h, 0, sizeof(*h));
    copy_str(h->host_id, sizeof(h->host_id), r->element[HR_SCRIPT_CLAIMED_ID]);
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
    copy_str(h->host_id, sizeof(h->host_id), e[HR_SCRIPT_LISTED_ID]);
    copy_str(h->room_id, sizeof(h->room_id), e[HR_SCRIPT_LISTED_ROOM]);
    copy_str(h->region, sizeof(h->region), e[HR_SCRIPT_LISTED_REGION]);
    copy_str(status, sizeof(status), e[HR_SCRIPT_LISTED_STATUS]);
    h->status = hr_status_parse(status, strlen(status));
    const redisReply *ttl = e[HR_SCRIPT_LISTED_TTL], *claimed = e[HR_SCRIPT_LISTED_CLAIMED];
    h->ttl_ms = ttl->type == REDIS_REPLY_INTEGER ? ttl->integer : 0;
    h->claimed = claimed->type == REDIS_REPLY_INTEGER && claimed->integer == 1;
}

redisReply *hr_script_eval(redisContext *c, enum hr_script_id id, const struct hr_script_args *a)
{
    if (a->failed || id >= HR_NSCRIPTS)
        return NULL;
    size_t n = (size_t)a->argc + 3;
    const char **argv = malloc(n * sizeof(*argv));
    size_t *lens = malloc(n * sizeof(*lens));
    redisReply *r = NULL;
    if (argv && lens) {
        argv[0] = "EVAL", lens[0] = 4;
        argv[1] = scripts[id].body, lens[1] = strlen(scripts[id].body);
        argv[2] = "0", lens[2] = 1;
        for (int i = 0; i < a->argc; i++)
            argv[3 + i] = hr_script_arg(a, i, &lens[3 + i]);
        r = redisCommandArgv(c, (int)n, argv, lens);
    }
    free(argv);
    free(lens);
    return r;
}
