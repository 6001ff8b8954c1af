/* The Lua scripts (lib/store/lua/) run directly through EVAL against a real
 * redis-server, called only through the argument builders and reply readers
 * of lib/store/script.h, as the store calls them, on storage layout 2
 * (docs/design/layout-v2.md: per-bucket keys, per-region summaries).
 *
 * A. The interface: every result code of HR_SCRIPT_RESULTS produced by the
 *    real script and read back by hr_script_result; the reply layouts of
 *    requests, list, claim, count, sweep and release (each followed by the
 *    summary changes it made); and no position, result or name written into
 *    a script by hand (a static check of the .lua files in lib/store/lua/).
 * B. The rules, where they live: heartbeats, status updates, leaves and
 *    their sequence numbers and tombstones, the host cap (per bucket),
 *    claims, lists, and the region summaries that finds start from.
 *
 * Every test starts from an empty Redis (FLUSHALL) holding only the layout
 * key of the test's registry (one bucket unless the test makes more);
 * every key a script writes is under PREFIX. The helpers apply the summary
 * changes a script reports with summary.lua, as the store does, and a find
 * ("any idle host of these regions") goes through the summary as the
 * store's does. Waits for something time-based (an entry's TTL, a lease)
 * poll Redis with a deadline and use TTLs of a few ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "harness.h"
#include "layout.h"
#include "script.h"

#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct h_redis redis;
static redisContext *rc;
static struct hr_rules rules;
static struct hr_layout L; /* the test registry's layout, also in Redis at <PREFIX>layout */

#define PREFIX "sc:" /* not the default hr:, so a key name written by hand shows */
#define REGIONS "local,eu-central,us-east-1"
#define TTL_MS 60000u   /* long enough that nothing expires unless a test wants it */
#define LEASE_MS 60000u /* the same for claims */
#define SHORT_MS 3u     /* a TTL or lease a test waits out */
#define WAIT_MS 2000    /* the longest a poll waits for one of those */
#define BATCH_MAX 64    /* requests per call in these tests */

/* NULL-terminated region lists. */
#define REGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* The tables of script.h, by name, for this test. */
enum {
#define RES_(name, code, result, reason) R_##name = code,
    HR_SCRIPT_RESULTS(RES_)
#undef RES_
};
#define E_ HR_SCRIPT_BKEY_ENTRIES
#define I_ HR_SCRIPT_BKEY_IDLE
#define C_ HR_SCRIPT_BKEY_CLAIMS
#define T_ HR_SCRIPT_BKEY_TOMBS
#define M_ HR_SCRIPT_BKEY_REGIONS

/* --- Redis and key helpers --- */

/* One of a few rotating buffers: what it holds is valid for the next 31
 * calls, enough for the arguments of one assertion. */
static char *scratch(void)
{
    static char bufs[32][512];
    static unsigned n;
    return bufs[n++ % 32];
}

static void write_layout(void)
{
    char v[96];
    hr_layout_format(&L, v, sizeof(v));
    redisReply *r = redisCommand(rc, "SET %s" HR_LAYOUT_KEY " %s", PREFIX, v);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

/* Empties Redis but for the layout key (the harness's readers need it). */
static void flush(void)
{
    redisReply *r = redisCommand(rc, "FLUSHALL");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    write_layout();
}

/* A new, empty registry of `buckets` buckets (and a new random seed). */
static void layout(uint32_t buckets)
{
    assert_int_equal(hr_layout_new(&L, PREFIX, buckets), 0);
    flush();
}

static int fresh(void **state)
{
    (void)state;
    layout(1);
    return 0;
}

/* A hostId as the scripts store it (layout.h: a UUID as 16 bytes). */
struct sid {
    char b[HR_LAYOUT_ID_MAX];
    size_t n;
};
static struct sid sid(const char *id)
{
    struct sid s;
    s.n = hr_layout_id_pack(id, s.b);
    return s;
}

static uint32_t bucket_of(const char *id)
{
    struct sid s = sid(id);
    return hr_layout_bucket(&L, s.b, s.n);
}

/* "<stem>-<n>" for the first n that falls into bucket b, into out. */
static void id_in(char *out, size_t cap, const char *stem, uint32_t b)
{
    for (int n = 0; n < 100000; n++) {
        snprintf(out, cap, "%s-%d", stem, n);
        if (bucket_of(out) == b)
            return;
    }
    fail_msg("no %s-<n> in bucket %" PRIu32, stem, b);
}

/* Bucket b's key k ("<prefix>{b}e"...), and the key of a host's bucket. */
static const char *bkey(uint32_t b, enum hr_script_bkey k)
{
    char *out = scratch(), tag[16];
    snprintf(tag, sizeof(tag), "%" PRIu32, b);
    hr_layout_key(out, 512, PREFIX, tag, hr_script_bkey(k));
    return out;
}

static const char *hkey(const char *id, enum hr_script_bkey k)
{
    return bkey(bucket_of(id), k);
}

/* A region's summary keys: the set of its buckets, and their epochs. */
static const char *skey(const char *region, enum hr_script_key k)
{
    char *out = scratch(), tag[48];
    snprintf(tag, sizeof(tag), "r.%s", region);
    hr_layout_key(out, 512, PREFIX, tag, hr_script_key(k));
    return out;
}

/* A string reply as text ("" for nil); aborts the test on other types. */
static const char *text_of(redisReply *r, const char *what)
{
    char *b = scratch();
    if (!r)
        fail_msg("%s: %s", what, rc->errstr);
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)
        fail_msg("%s: %s", what, r->type == REDIS_REPLY_ERROR ? r->str : "not a string");
    snprintf(b, 512, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return b;
}

static long long num_of(const char *s)
{
    return *s ? strtoll(s, NULL, 10) : -1;
}

/* A host's field in its bucket's hash (entries, tombstones), "" when none. */
static const char *hget(const char *id, enum hr_script_bkey k)
{
    struct sid s = sid(id);
    const char *key = hkey(id, k);
    return text_of(redisCommand(rc, "HGET %s %b", key, s.b, s.n), key);
}

/* A host's score in its bucket's sorted set (expiries, claims), -1 when none. */
static long long zscore(const char *id, enum hr_script_bkey k)
{
    struct sid s = sid(id);
    const char *key = hkey(id, k);
    return num_of(text_of(redisCommand(rc, "ZSCORE %s %b", key, s.b, s.n), key));
}

/* Sets a host's score in its bucket's sorted set (XX: it has one). */
static void set_score(const char *id, enum hr_script_bkey k, long long score)
{
    struct sid s = sid(id);
    redisReply *r = redisCommand(rc, "ZADD %s XX CH %lld %b", hkey(id, k), score, s.b, s.n);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
}

/* The entry string the scripts keep for a host (entry.lua), live or not;
 * "" when it has none. */
static const char *entry(const char *id)
{
    /* Without its expiry (the last field), which tests read with expiry(). */
    char *v = scratch();
    snprintf(v, 512, "%s", hget(id, E_));
    char *sp = strrchr(v, ' ');
    if (sp)
        *sp = '\0';
    return v;
}

/* The expiry of a host's entry (its last field), ms on Redis's clock; the
 * end of its claim's lease (its bucket's c); -1 when none. */
static long long expiry(const char *id)
{
    const char *v = hget(id, E_);
    struct hr_layout_entry e;
    if (!*v)
        return -1;
    assert_int_equal(hr_layout_entry_parse(v, strlen(v), &e), 0);
    return e.expiry_ms;
}

static long long lease(const char *id)
{
    return zscore(id, C_);
}

/* Shortens (or moves) an entry's expiry, which is what readers check. */
static void set_expiry(const char *id, long long ms)
{
    char v[512];
    snprintf(v, sizeof(v), "%s", hget(id, E_));
    char *sp = strrchr(v, ' ');
    assert_non_null(sp);
    char e36[HR_LAYOUT_SEQ_MAX];
    hr_layout_seq_format((uint64_t)ms, e36);
    snprintf(sp, sizeof(v) - (size_t)(sp - v), " %s", e36);
    struct sid s = sid(id);
    redisReply *r = redisCommand(rc, "HSET %s %b %s", hkey(id, E_), s.b, s.n, v);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    freeReplyObject(r);
}

/* True when the host is a member of its bucket's idle set for `region`. */
static bool idle_in(const char *region, const char *id)
{
    struct sid s = sid(id);
    char m[HR_REGION_MAX + 2 + HR_LAYOUT_ID_MAX];
    size_t n = (size_t)snprintf(m, sizeof(m), "%s ", region);
    memcpy(m + n, s.b, s.n);
    const char *key = hkey(id, I_);
    return *text_of(redisCommand(rc, "ZSCORE %s %b", key, m, n + s.n), key) != '\0';
}

/* The seq of a host's tombstone ("<seq> <expiry>", the seq in base 36), in
 * decimal; "" when none. */
static const char *tomb_seq(const char *id)
{
    char *b = scratch();
    const char *v = hget(id, T_);
    uint64_t seq;
    b[0] = '\0';
    if (*v) {
        assert_int_equal(hr_layout_seq_parse(v, strcspn(v, " "), &seq), 0);
        snprintf(b, 512, "%" PRIu64, seq);
    }
    return b;
}

static long long tomb_expiry(const char *id)
{
    const char *sp = strchr(hget(id, T_), ' ');
    return sp ? strtoll(sp + 1, NULL, 10) : -1;
}

/* A live host (harness: read through the layout key), and a field of it
 * ("hseq", "sseq", "status", "region", "room"; "" when not live). */
static bool live(const char *id)
{
    struct h_host h;
    return h_host_get(rc, PREFIX, id, &h);
}

static const char *field(const char *id, const char *name)
{
    char *b = scratch();
    struct h_host h;
    b[0] = '\0';
    if (!h_host_get(rc, PREFIX, id, &h))
        return b;
    const char *v = strcmp(name, "hseq") == 0     ? h.hseq
                    : strcmp(name, "sseq") == 0   ? h.sseq
                    : strcmp(name, "status") == 0 ? h.status
                    : strcmp(name, "region") == 0 ? h.region
                    : strcmp(name, "room") == 0   ? h.room
                                                  : NULL;
    if (!v)
        fail_msg("no field %s", name);
    snprintf(b, 512, "%s", v);
    return b;
}

/* Redis's clock, in ms: the one the scripts read. */
static long long redis_now_ms(void)
{
    return h_redis_now_ms(rc);
}

/* Polls until Redis's clock is past `ms`, WAIT_MS at most. */
static void await_redis_time(long long ms)
{
    uint64_t deadline = h_now_ms() + WAIT_MS;
    while (redis_now_ms() <= ms)
        if (h_now_ms() > deadline)
            fail_msg("Redis's clock did not pass %lld within %d ms", ms, WAIT_MS);
}

/* Polls until the host's entry expired (not live), WAIT_MS at most. */
static void await_expired(const char *id)
{
    uint64_t deadline = h_now_ms() + WAIT_MS;
    while (live(id))
        if (h_now_ms() > deadline)
            fail_msg("%s still live after %d ms", id, WAIT_MS);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys in Redis are exactly `want` (NULL-terminated, any order). */
static void assert_keys(const char *const *want)
{
    redisReply *r = redisCommand(rc, "KEYS *");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    size_t n = 0, nw = 0;
    while (want[nw])
        nw++;
    const char **got = calloc(r->elements + 1, sizeof(*got)), **w = calloc(nw + 1, sizeof(*w));
    assert_non_null(got);
    assert_non_null(w);
    for (size_t i = 0; i < r->elements; i++)
        got[n++] = r->element[i]->str;
    memcpy(w, want, nw * sizeof(*w));
    qsort(got, n, sizeof(*got), cmp_str);
    qsort(w, nw, sizeof(*w), cmp_str);
    bool same = n == nw;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(got[i], w[i]) == 0;
    if (!same) {
        char msg[2048] = "";
        size_t used = 0;
        for (size_t i = 0; i < n && used < sizeof(msg); i++)
            used += (size_t)snprintf(msg + used, sizeof(msg) - used, " %s", got[i]);
        if (used < sizeof(msg))
            used += (size_t)snprintf(msg + used, sizeof(msg) - used, "; want");
        for (size_t i = 0; i < nw && used < sizeof(msg); i++)
            used += (size_t)snprintf(msg + used, sizeof(msg) - used, " %s", w[i]);
        fail_msg("keys:%s", msg);
    }
    free(got);
    free(w);
    freeReplyObject(r);
}

/* --- the region summaries --- */

/* The summary changes the last bucket script reported (after its own
 * reply), as hr_script_change read them. The helpers apply them with
 * summary.lua unless `hold_changes` (a test that applies them itself). */
#define MAX_CHANGES 256
static struct hr_summary_change changes[MAX_CHANGES];
static size_t nchanges;
static bool hold_changes;

/* Runs a script with the arguments and frees them: the reply (never an
 * error), the caller's to free. */
static redisReply *eval(enum hr_script_id id, struct hr_script_args *a)
{
    assert_false(a->failed);
    redisReply *r = hr_script_eval(rc, id, a);
    hr_script_args_free(a);
    if (!r)
        fail_msg("%s: %s", hr_script_name(id), rc->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", hr_script_name(id), r->str);
    return r;
}

/* Applies changes with summary.lua, one call per region (as the store
 * does): how many it applied. */
static long long summary_apply(const struct hr_summary_change *ch, size_t n)
{
    bool done[MAX_CHANGES] = {false};
    long long applied = 0;
    assert_true(n <= MAX_CHANGES);
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        struct hr_script_args a = {0};
        hr_script_summary_args(&a, &L, ch[i].region);
        for (size_t j = i; j < n; j++)
            if (!done[j] && strcmp(ch[j].region, ch[i].region) == 0) {
                hr_script_summary_add(&a, ch[j].op, ch[j].epoch, ch[j].bucket);
                done[j] = true;
            }
        redisReply *r = eval(HR_SCRIPT_SUMMARY, &a);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        applied += r->integer;
        freeReplyObject(r);
    }
    return applied;
}

/* One change, built by hand. */
static struct hr_summary_change change(char op, const char *epoch, uint32_t b, const char *region)
{
    struct hr_summary_change ch = {.op = op, .bucket = b};
    snprintf(ch.epoch, sizeof(ch.epoch), "%s", epoch);
    snprintf(ch.region, sizeof(ch.region), "%s", region);
    return ch;
}

/* Reads the elements of a bucket script's reply from `from` on: each must
 * be a summary change. */
static void take_changes(const redisReply *r, size_t from)
{
    nchanges = 0;
    for (size_t i = from; i < r->elements; i++) {
        assert_true(nchanges < MAX_CHANGES);
        if (!hr_script_change(r->element[i], &changes[nchanges]))
            fail_msg("reply element %zu is no summary change (type %d, '%s')", i,
                     r->element[i]->type,
                     r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->str : "");
        nchanges++;
    }
    if (!hold_changes)
        summary_apply(changes, nchanges);
}

/* The changes last reported, as "<op> <epoch> <bucket> <region>" sorted and
 * joined with ", " ("" for none). */
static const char *reported(void)
{
    char *out = scratch(), line[MAX_CHANGES][96];
    const char *p[MAX_CHANGES];
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < nchanges; i++) {
        snprintf(line[i], sizeof(line[i]), "%c %s %" PRIu32 " %s", changes[i].op, changes[i].epoch,
                 changes[i].bucket, changes[i].region);
        p[i] = line[i];
    }
    qsort(p, nchanges, sizeof(p[0]), cmp_str);
    for (size_t i = 0; i < nchanges && used < 512; i++)
        used += (size_t)snprintf(out + used, 512 - used, "%s%s", i ? ", " : "", p[i]);
    return out;
}

/* A change as reported() writes it. */
static const char *change_text(char op, int epoch, uint32_t b, const char *region)
{
    char *out = scratch();
    snprintf(out, 512, "%c %d %" PRIu32 " %s", op, epoch, b, region);
    return out;
}

/* Is bucket b in the region's summary; its epoch there (-1: none). */
static bool listed(const char *region, uint32_t b)
{
    const char *key = skey(region, HR_SCRIPT_KEY_SUMMARY_SET);
    redisReply *r = redisCommand(rc, "SISMEMBER %s %" PRIu32, key, b);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    bool in = r->integer == 1;
    freeReplyObject(r);
    return in;
}

static long long summary_size(const char *region)
{
    return h_redis_int(rc, "SCARD %s", skey(region, HR_SCRIPT_KEY_SUMMARY_SET));
}

static long long summary_epoch(const char *region, uint32_t b)
{
    const char *key = skey(region, HR_SCRIPT_KEY_SUMMARY_EPOCHS);
    return num_of(text_of(redisCommand(rc, "HGET %s %" PRIu32, key, b), key));
}

/* The bucket's own epoch for the region (its m hash), -1 when none. */
static long long bucket_epoch(uint32_t b, const char *region)
{
    const char *key = bkey(b, M_);
    return num_of(text_of(redisCommand(rc, "HGET %s %s", key, region), key));
}

/* --- the scripts, through lib/store/script.h --- */

/* Requests as the store gets them: checked by hr_request_check. */
static struct hr_request checked(struct hr_request r)
{
    assert_int_equal(hr_request_check(&r, &rules), HR_OK);
    return r;
}

static struct hr_request heartbeat(const char *id, const char *room, const char *region,
                                   enum hr_status status, uint64_t seq)
{
    struct hr_request r = {.type = HR_MSG_HEARTBEAT, .seq = seq, .status = status};
    snprintf(r.host_id, sizeof(r.host_id), "%s", id);
    snprintf(r.room_id, sizeof(r.room_id), "%s", room);
    snprintf(r.region, sizeof(r.region), "%s", region);
    return checked(r);
}

/* A heartbeat from room-1 in region local. */
static struct hr_request beat(const char *id, enum hr_status status, uint64_t seq)
{
    return heartbeat(id, "room-1", "local", status, seq);
}

static struct hr_request status_update(const char *id, enum hr_status status, uint64_t seq)
{
    struct hr_request r = {.type = HR_MSG_STATUS, .seq = seq, .status = status};
    snprintf(r.host_id, sizeof(r.host_id), "%s", id);
    return checked(r);
}

static struct hr_request leave(const char *id, uint64_t seq)
{
    struct hr_request r = {.type = HR_MSG_LEAVE, .seq = seq};
    snprintf(r.host_id, sizeof(r.host_id), "%s", id);
    return checked(r);
}

/* One requests call of n requests (refresh[i]: request i as a refresh-only
 * heartbeat; NULL: none is), at most `bucket_cap` live hosts per bucket (0:
 * no cap). The reply: n elements (not checked), then summary changes (read
 * and applied). *nb: the buckets the batch met. */
static redisReply *requests_any(const struct hr_request *reqs, const bool *refresh, size_t n,
                                uint32_t ttl_ms, uint32_t bucket_cap, int *nb)
{
    struct hr_script_args a = {0};
    uint32_t buckets[BATCH_MAX];
    int nbuckets = 0;
    assert_true(n <= BATCH_MAX);
    hr_script_requests_header(&a, ttl_ms, bucket_cap);
    for (size_t i = 0; i < n; i++)
        hr_script_requests_add(&a, &L, &reqs[i], refresh && refresh[i], buckets, &nbuckets);
    /* The keys of each bucket met, once, in the order met. */
    assert_int_equal(a.nkeys, nbuckets * HR_SCRIPT_BKEYS);
    for (int g = 0; g < nbuckets; g++)
        for (int k = 0; k < HR_SCRIPT_BKEYS; k++) {
            size_t len;
            const char *key = hr_script_key_at(&a, g * HR_SCRIPT_BKEYS + k, &len);
            const char *want = bkey(buckets[g], (enum hr_script_bkey)k);
            if (len != strlen(want) || memcmp(key, want, len) != 0)
                fail_msg("key %d of bucket %" PRIu32 " is %.*s, want %s", k, buckets[g], (int)len,
                         key, want);
        }
    if (nb)
        *nb = nbuckets;
    redisReply *r = eval(HR_SCRIPT_REQUESTS, &a);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(r->elements >= n);
    take_changes(r, n);
    return r;
}

/* The same, each of the n first elements a result code. */
static redisReply *requests(const struct hr_request *reqs, const bool *refresh, size_t n,
                            uint32_t ttl_ms, uint32_t bucket_cap)
{
    redisReply *r = requests_any(reqs, refresh, n, ttl_ms, bucket_cap, NULL);
    for (size_t i = 0; i < n; i++)
        if (r->element[i]->type != REDIS_REPLY_INTEGER)
            fail_msg("request %zu: %s", i,
                     r->element[i]->type == REDIS_REPLY_ERROR ? r->element[i]->str
                                                              : "not an integer");
    return r;
}

static redisReply *call1(struct hr_request req, uint32_t ttl_ms, uint32_t bucket_cap,
                         bool refresh_only)
{
    return requests(&req, &refresh_only, 1, ttl_ms, bucket_cap);
}

/* One request: its result code. */
static long long run_with(struct hr_request req, uint32_t ttl_ms, uint32_t bucket_cap,
                          bool refresh_only)
{
    redisReply *r = call1(req, ttl_ms, bucket_cap, refresh_only);
    long long code = r->element[0]->integer;
    freeReplyObject(r);
    return code;
}

/* One request with the default TTL and no cap. */
static long long run(struct hr_request req)
{
    return run_with(req, TTL_MS, 0, false);
}

/* A claim call in bucket b: the reply, checked to be HR_SCRIPT_CLAIMED_N
 * elements and summary changes (read and applied). */
static redisReply *claim_call(uint32_t b, const struct hr_claim_query *q)
{
    struct hr_script_args a = {0};
    hr_script_claim_args(&a, &L, b, q);
    redisReply *r = eval(HR_SCRIPT_CLAIM, &a);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(r->elements >= HR_SCRIPT_CLAIMED_N);
    for (size_t i = 0; i < HR_SCRIPT_CLAIMED_N; i++)
        assert_int_equal(r->element[i]->type, REDIS_REPLY_STRING);
    take_changes(r, HR_SCRIPT_CLAIMED_N);
    return r;
}

/* A claim in bucket b, of `host` or of any idle host of `regions` (in the
 * order given), with claim id `claim_id` (NULL: none): 1 with *h filled, 0
 * when no host fitted. */
static int claim_in(uint32_t b, const char *host, uint32_t lease_ms, const char *const *regions,
                    const char *claim_id, struct hr_host_info *h)
{
    struct hr_claim_query q = {.host_id = host, .lease_ms = lease_ms, .claim_id = claim_id};
    for (; regions[q.nregions]; q.nregions++)
        q.regions[q.nregions] = regions[q.nregions];
    redisReply *r = claim_call(b, &q);
    int got = hr_script_claimed(r, h);
    freeReplyObject(r);
    assert_int_not_equal(got, -1);
    return got;
}

/* A bucket of the region's summary at random (SRANDMEMBER), false for none. */
static bool summary_pick(const char *region, uint32_t *b)
{
    const char *key = skey(region, HR_SCRIPT_KEY_SUMMARY_SET);
    const char *v = text_of(redisCommand(rc, "SRANDMEMBER %s", key), key);
    if (!*v)
        return false;
    *b = (uint32_t)strtoul(v, NULL, 10);
    assert_true(*b < L.buckets);
    return true;
}

/* Read-only: a bucket that holds a live idle host of `region` in its idle
 * set, or -1. */
static long long bucket_with_idle(const char *region)
{
    char lo[48], hi[48];
    snprintf(lo, sizeof(lo), "[%s ", region);
    snprintf(hi, sizeof(hi), "(%s!", region);
    long long now = redis_now_ms(), found = -1;
    for (uint32_t b = 0; b < L.buckets && found < 0; b++) {
        redisReply *m = redisCommand(rc, "ZRANGEBYLEX %s %s %s", bkey(b, I_), lo, hi);
        assert_non_null(m);
        assert_int_equal(m->type, REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < m->elements && found < 0; i++) {
            const char *id = m->element[i]->str + strlen(region) + 1;
            size_t n = m->element[i]->len - strlen(region) - 1;
            const char *e = bkey(b, E_);
            const char *v = text_of(redisCommand(rc, "HGET %s %b", e, id, n), e);
            struct hr_layout_entry en;
            if (hr_layout_entry_parse(v, strlen(v), &en) == 0 && en.expiry_ms > now &&
                strcmp(en.status, "idle") == 0 && strcmp(en.region, region) == 0)
                found = b;
        }
        freeReplyObject(m);
    }
    return found;
}

/* A find as the store makes one: region by region, a bucket from the
 * region's summary, then a claim of one of its idle hosts there (a bucket
 * with none drops out of the summary by the change its claim reports).
 * When it finds nothing, no bucket may hold an idle host of those regions:
 * the summary never hides one. */
static int find(uint32_t lease_ms, const char *const *regions, struct hr_host_info *h)
{
    for (size_t i = 0; regions[i]; i++) {
        uint32_t b;
        for (uint32_t tries = 0; summary_pick(regions[i], &b); tries++) {
            if (tries > 2 * L.buckets + 4)
                fail_msg("the summary of %s keeps listing bucket %" PRIu32
                         ", where claims find no idle host",
                         regions[i], b);
            if (claim_in(b, NULL, lease_ms, (const char *const[]){regions[i], NULL}, NULL, h))
                return 1;
        }
    }
    for (size_t i = 0; regions[i]; i++) {
        long long b = bucket_with_idle(regions[i]);
        if (b >= 0)
            fail_msg("bucket %lld holds an idle host of %s, and the summary does not list it", b,
                     regions[i]);
    }
    return 0;
}

/* A claim as the store sends it: of a host, in its bucket; of any idle
 * host, a find. 1 with *h filled, 0 when no host fitted. */
static int claim(const char *host, uint32_t lease_ms, const char *const *regions,
                 struct hr_host_info *h)
{
    if (host)
        return claim_in(bucket_of(host), host, lease_ms, regions, NULL, h);
    return find(lease_ms, regions, h);
}

/* A list over every bucket: up to `cap` hosts into out, how many. */
static size_t list(enum hr_status status, uint32_t limit, const char *const *regions,
                   struct hr_host_info *out, size_t cap)
{
    struct hr_list_query q = {.status = status, .limit = limit};
    for (; regions[q.nregions]; q.nregions++)
        q.regions[q.nregions] = regions[q.nregions];
    struct hr_script_args a = {0};
    hr_script_list_args(&a, &L, 0, L.buckets, &q);
    assert_int_equal(a.nkeys, (int)L.buckets * HR_SCRIPT_BKEYS);
    redisReply *r = eval(HR_SCRIPT_LIST, &a);
    long n = hr_script_nlisted(r);
    assert_true(n >= 0 && (size_t)n <= cap);
    for (long i = 0; i < n; i++)
        hr_script_listed(r, (size_t)i, &out[i]);
    freeReplyObject(r);
    return (size_t)n;
}

/* The position of a status in HR_STATUSES (a count reply's order). */
static size_t slot(enum hr_status s)
{
    static const enum hr_status order[] = {
#define ORDER_(name, num, text) HR_STATUS_##name,
        HR_STATUSES(ORDER_)
#undef ORDER_
    };
    for (size_t i = 0; i < HR_NSTATUSES; i++)
        if (order[i] == s)
            return i;
    fail_msg("status %d is not in HR_STATUSES", (int)s);
    return 0;
}

/* A count over every bucket: HR_NSTATUSES integers per region into out. */
static void count(const char *const *regions, long long *out)
{
    size_t n = 0;
    while (regions[n])
        n++;
    struct hr_script_args a = {0};
    hr_script_count_args(&a, &L, 0, L.buckets, regions, n);
    redisReply *r = eval(HR_SCRIPT_COUNT, &a);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, n * HR_NSTATUSES);
    for (size_t i = 0; i < r->elements; i++) {
        assert_int_equal(r->element[i]->type, REDIS_REPLY_INTEGER);
        out[i] = r->element[i]->integer;
    }
    freeReplyObject(r);
}

/* A sweep over every bucket (max in all; `state`: report every region's
 * summary state), expired entries removed too: how many hosts it returned
 * to idle. */
static long long sweep_with(uint32_t max, bool state)
{
    struct hr_script_args a = {0};
    hr_script_sweep_args(&a, &L, 0, L.buckets, max, state, true);
    redisReply *r = eval(HR_SCRIPT_SWEEP, &a);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(r->elements >= 1);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_INTEGER);
    long long n = r->element[0]->integer;
    take_changes(r, 1);
    freeReplyObject(r);
    return n;
}

static long long sweep(uint32_t max)
{
    return sweep_with(max, false);
}

/* Sweeps (max 1) until one host comes back: polls while the lease runs
 * out, WAIT_MS at most. */
static void await_swept(void)
{
    uint64_t deadline = h_now_ms() + WAIT_MS;
    long long n;
    while ((n = sweep(1)) == 0)
        if (h_now_ms() > deadline)
            fail_msg("no claim swept within %d ms", WAIT_MS);
    assert_int_equal(n, 1);
}

static const struct hr_host_info *find_listed(const struct hr_host_info *hs, size_t n,
                                              const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(hs[i].host_id, id) == 0)
            return &hs[i];
    return NULL;
}

/* The entry string the scripts write, without its expiry: "<hseq> <sseq>
 * <status letter> <region> <room>", the seqs in base 36. */
static const char *entry_text(uint64_t hseq, uint64_t sseq, enum hr_status status,
                              const char *region, const char *room)
{
    char *b = scratch(), h[HR_LAYOUT_SEQ_MAX], s[HR_LAYOUT_SEQ_MAX];
    hr_layout_seq_format(hseq, h);
    hr_layout_seq_format(sseq, s);
    snprintf(b, 512, "%s %s %c %s %s", h, s, hr_status_name(status)[0], region, room);
    return b;
}
/* ===================== A. the interface ===================== */

/* --- A1. result codes --- */

static redisReply *drive_applied(void)
{
    return call1(beat("new-host", HR_STATUS_IDLE, 1), TTL_MS, 0, false);
}

static redisReply *drive_duplicate(void)
{
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 5)), R_APPLIED);
    return call1(beat("h", HR_STATUS_IDLE, 5), TTL_MS, 0, false);
}

static redisReply *drive_unknown_host(void)
{
    return call1(status_update("absent", HR_STATUS_BUSY, 1), TTL_MS, 0, false);
}

/* The cap is per bucket: the test registry has one. */
static redisReply *drive_full(void)
{
    assert_int_equal(run_with(beat("first", HR_STATUS_IDLE, 1), TTL_MS, 1, false), R_APPLIED);
    return call1(beat("second", HR_STATUS_IDLE, 1), TTL_MS, 1, false);
}

static redisReply *drive_source_full(void)
{
    return call1(beat("new-host", HR_STATUS_IDLE, 1), TTL_MS, 0, true);
}

/* A request that makes the script answer each result code, by the code's
 * name in HR_SCRIPT_RESULTS. */
static const struct {
    const char *name;
    redisReply *(*drive)(void);
} result_drivers[] = {
    {"APPLIED", drive_applied},           {"DUPLICATE", drive_duplicate},
    {"UNKNOWN_HOST", drive_unknown_host}, {"FULL", drive_full},
    {"SOURCE_FULL", drive_source_full},
};
#define NDRIVERS (sizeof(result_drivers) / sizeof(result_drivers[0]))

static const struct {
    const char *name;
    long long code;
    enum hr_result result;
    int reason;
} result_rows[] = {
#define ROW_(name, code, result, reason) {#name, code, result, reason},
    HR_SCRIPT_RESULTS(ROW_)
#undef ROW_
};
#define NROWS (sizeof(result_rows) / sizeof(result_rows[0]))

/* Every row of HR_SCRIPT_RESULTS, produced by the real script and read by
 * hr_script_result as the row's ack result and reason. A row added without
 * a request here that produces it fails. */
static void test_scripts_results_every_code(void **state)
{
    (void)state;
    for (size_t i = 0; i < NROWS; i++) {
        size_t d = 0;
        while (d < NDRIVERS && strcmp(result_drivers[d].name, result_rows[i].name) != 0)
            d++;
        if (d == NDRIVERS)
            fail_msg("result %s (%lld) has no request in this test that produces it",
                     result_rows[i].name, result_rows[i].code);
        flush();
        redisReply *r = result_drivers[d].drive();
        const redisReply *e = r->element[0];
        if (e->integer != result_rows[i].code)
            fail_msg("%s: the script answered %lld, the table says %lld", result_rows[i].name,
                     e->integer, result_rows[i].code);
        enum hr_result res = HR_RESULT_NONE;
        int reason = -1;
        assert_true(hr_script_result(e, &res, &reason));
        assert_int_equal(res, result_rows[i].result);
        assert_int_equal(reason, result_rows[i].reason);
        freeReplyObject(r);
    }
    /* No driver for a row that is gone. */
    for (size_t d = 0; d < NDRIVERS; d++) {
        size_t i = 0;
        while (i < NROWS && strcmp(result_drivers[d].name, result_rows[i].name) != 0)
            i++;
        if (i == NROWS)
            fail_msg("no result %s in HR_SCRIPT_RESULTS", result_drivers[d].name);
    }
    /* What is not a code of the table is no result: codes distinct, and one
     * past the largest (and 0) read as none. */
    long long max = 0;
    for (size_t i = 0; i < NROWS; i++) {
        for (size_t j = i + 1; j < NROWS; j++)
            assert_int_not_equal(result_rows[i].code, result_rows[j].code);
        if (result_rows[i].code > max)
            max = result_rows[i].code;
    }
    const long long others[] = {0, max + 1, -1};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        redisReply e = {.type = REDIS_REPLY_INTEGER, .integer = others[i]};
        enum hr_result res;
        int reason;
        assert_false(hr_script_result(&e, &res, &reason));
    }
    redisReply s = {.type = REDIS_REPLY_STRING, .str = "1", .len = 1};
    enum hr_result res;
    int reason;
    assert_false(hr_script_result(&s, &res, &reason));
}

/* A batch answers one result per request, in the requests' order. */
static void test_scripts_results_batch_in_order(void **state)
{
    (void)state;
    const struct hr_request reqs[] = {
        beat("a", HR_STATUS_IDLE, 1),          /* new: applied */
        beat("a", HR_STATUS_IDLE, 1),          /* same seq: duplicate */
        status_update("b", HR_STATUS_BUSY, 1), /* no such host */
        beat("c", HR_STATUS_IDLE, 1),          /* refresh only, new */
        beat("d", HR_STATUS_IDLE, 1),          /* the cap (1) is reached */
        status_update("a", HR_STATUS_BUSY, 2), /* applied */
        beat("a", HR_STATUS_IDLE, 3),          /* applied (a known host at the cap) */
        leave("a", 4),                         /* applied */
        leave("a", 4),                         /* duplicate (the tombstone) */
    };
    const bool refresh[] = {false, false, false, true, false, false, false, false, false};
    const long long want[] = {R_APPLIED, R_DUPLICATE, R_UNKNOWN_HOST, R_SOURCE_FULL, R_FULL,
                              R_APPLIED, R_APPLIED,   R_APPLIED,      R_DUPLICATE};
    size_t n = sizeof(reqs) / sizeof(reqs[0]);
    redisReply *r = requests(reqs, refresh, n, TTL_MS, 1);
    for (size_t i = 0; i < n; i++)
        if (r->element[i]->integer != want[i])
            fail_msg("request %zu: %lld, want %lld", i, r->element[i]->integer, want[i]);
    freeReplyObject(r);
    /* Refused hosts left nothing; the one that left has gone. */
    static const char *const gone[] = {"c", "d", "a"};
    for (size_t i = 0; i < 3; i++) {
        assert_false(live(gone[i]));
        assert_string_equal(entry(gone[i]), "");
        assert_int_equal(expiry(gone[i]), -1);
        assert_false(idle_in("local", gone[i]));
    }
    /* a was idle for a while within the batch, then busy, then gone: a
     * bucket's summary state is worked out once, at the end of the call, so
     * nothing changed. */
    assert_string_equal(reported(), "");
    assert_false(listed("local", 0));
}

/* --- A2. reply layouts --- */
/* --- A2. reply layouts --- */

/* Four buckets: list, count and sweep fan out over all of them. */
static void test_scripts_replies_list_claim_count_sweep(void **state)
{
    (void)state;
    struct hr_host_info hs[4], got;
    long long n[2 * HR_NSTATUSES];
    const size_t idle = slot(HR_STATUS_IDLE), busy = slot(HR_STATUS_BUSY);
    layout(4);
    /* The host under test in the second region counted, two busy ones in
     * the first: counts of 0, 2, 1, 0, which regions or statuses in another
     * order would not give. */
    assert_int_equal(run(heartbeat("host-1", "room-9", "eu-central", HR_STATUS_IDLE, 1)),
                     R_APPLIED);
    const uint32_t b = bucket_of("host-1");
    /* The requests reply: one element per request, then the change. */
    assert_string_equal(reported(), change_text('a', 1, b, "eu-central"));
    assert_int_equal(run(heartbeat("other", "room-2", "local", HR_STATUS_BUSY, 1)), R_APPLIED);
    assert_int_equal(run(heartbeat("other-2", "room-2", "local", HR_STATUS_BUSY, 1)), R_APPLIED);
    assert_string_equal(reported(), "");

    count(REGS("local", "eu-central"), n);
    assert_int_equal(n[0 * HR_NSTATUSES + idle], 0);
    assert_int_equal(n[0 * HR_NSTATUSES + busy], 2);
    assert_int_equal(n[1 * HR_NSTATUSES + idle], 1);
    assert_int_equal(n[1 * HR_NSTATUSES + busy], 0);

    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("eu-central"), hs, 4), 1);
    assert_string_equal(hs[0].host_id, "host-1");
    assert_string_equal(hs[0].room_id, "room-9");
    assert_string_equal(hs[0].region, "eu-central");
    assert_int_equal(hs[0].status, HR_STATUS_IDLE);
    assert_true(hs[0].ttl_ms > 0 && hs[0].ttl_ms <= (int64_t)TTL_MS);
    assert_false(hs[0].claimed);

    /* A lease the sweep below waits out, long enough not to end before the
     * claims right after it (a claim first returns its bucket's lapsed
     * claims to idle). */
    assert_int_equal(claim(NULL, 300, REGS("eu-central"), &got), 1);
    assert_string_equal(got.host_id, "host-1");
    assert_string_equal(got.room_id, "room-9");
    assert_string_equal(got.region, "eu-central");
    /* The claim reply: its HR_SCRIPT_CLAIMED_N elements, then the change. */
    assert_string_equal(reported(), change_text('d', 2, b, "eu-central"));
    /* Nothing left to claim: the empty reply, HR_SCRIPT_CLAIMED_N elements
     * with an empty ID, then the bucket's state for the region told again
     * (the same epoch: a summary that lost the change stops sending finds
     * here). */
    struct hr_claim_query q = {.regions = {"eu-central"}, .nregions = 1, .lease_ms = LEASE_MS};
    redisReply *r = claim_call(b, &q);
    assert_int_equal(r->elements, HR_SCRIPT_CLAIMED_N + 1);
    assert_int_equal(r->element[HR_SCRIPT_CLAIMED_ID]->len, 0);
    assert_string_equal(r->element[HR_SCRIPT_CLAIMED_N]->str, change_text('d', 2, b, "eu-central"));
    assert_int_equal(hr_script_claimed(r, &got), 0);
    freeReplyObject(r);
    assert_int_equal(claim(NULL, LEASE_MS, REGS("eu-central"), &got), 0);

    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("eu-central"), hs, 4), 1);
    assert_string_equal(hs[0].host_id, "host-1");
    assert_int_equal(hs[0].status, HR_STATUS_BUSY);
    assert_true(hs[0].claimed);

    count(REGS("local", "eu-central"), n);
    assert_int_equal(n[0 * HR_NSTATUSES + idle], 0);
    assert_int_equal(n[0 * HR_NSTATUSES + busy], 2);
    assert_int_equal(n[1 * HR_NSTATUSES + idle], 0);
    assert_int_equal(n[1 * HR_NSTATUSES + busy], 1);

    /* The sweep reply: the number returned to idle, then the change. */
    await_swept();
    assert_string_equal(reported(), change_text('a', 3, b, "eu-central"));
    assert_int_equal(sweep(10), 0);
    assert_string_equal(reported(), "");
    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("eu-central"), hs, 4), 1);
    assert_int_equal(hs[0].status, HR_STATUS_IDLE);
    assert_false(hs[0].claimed);
    count(REGS("local", "eu-central"), n);
    assert_int_equal(n[0 * HR_NSTATUSES + busy], 2);
    assert_int_equal(n[1 * HR_NSTATUSES + idle], 1);
    assert_int_equal(n[1 * HR_NSTATUSES + busy], 0);
}

/* --- A3. the scripts take their numbers and names from the tables --- */

/* Texts a script must take from the generated constants, not spell. */
#define STATUS_TEXT_(name, num, text) {text, "a status of HR_STATUSES (STATUS_" #name ")"},
#define KEY_TEXT_(name, text) {text, "a key name of HR_SCRIPT_KEYS (KEY_" #name ")"},
#define BKEY_TEXT_(name, text) {text, "a bucket key of HR_SCRIPT_BUCKET_KEYS (BKEY_" #name ")"},
#define OP_TEXT_(name, text) {text, "an op of HR_SCRIPT_OPS (OP_" #name ")"},
static const struct {
    const char *text, *what;
} table_texts[] = {HR_STATUSES(STATUS_TEXT_) HR_SCRIPT_KEYS(KEY_TEXT_)
                       HR_SCRIPT_BUCKET_KEYS(BKEY_TEXT_) HR_SCRIPT_OPS(OP_TEXT_)};
#undef STATUS_TEXT_
#undef KEY_TEXT_
#undef BKEY_TEXT_
#undef OP_TEXT_

static bool ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* What on one line of Lua should come from the tables: an ARGV position
 * written as a number, a `return` of a number, or a quoted status, key name
 * or op. Comments (from "--" outside a string) do not count. Returns false
 * for a clean line, else true with the reason in msg. */
static bool lua_line_problem(const char *line, char *msg, size_t cap)
{
    for (const char *p = line; *p; p++) {
        if (p[0] == '-' && p[1] == '-')
            return false;
        if (*p == '\'' || *p == '"') {
            const char q = *p++, *s = p;
            while (*p && *p != q)
                p += p[0] == '\\' && p[1] ? 2 : 1;
            size_t len = (size_t)(p - s);
            for (size_t i = 0; i < sizeof(table_texts) / sizeof(table_texts[0]); i++)
                if (strlen(table_texts[i].text) == len &&
                    memcmp(s, table_texts[i].text, len) == 0) {
                    snprintf(msg, cap, "%c%.*s%c is %s", q, (int)len, s, q, table_texts[i].what);
                    return true;
                }
            if (!*p)
                return false;
            continue;
        }
        if (p != line && ident_char(p[-1]))
            continue;
        if (strncmp(p, "ARGV", 4) == 0) {
            const char *s = skip_spaces(p + 4);
            if (*s == '[' && isdigit((unsigned char)*skip_spaces(s + 1))) {
                snprintf(msg, cap, "an ARGV position written as a number (HR_SCRIPT_*_ARGS)");
                return true;
            }
        }
        if (strncmp(p, "return", 6) == 0 && !ident_char(p[6]) &&
            isdigit((unsigned char)*skip_spaces(p + 6))) {
            snprintf(msg, cap, "a number returned (a result code: RES_*, HR_SCRIPT_RESULTS)");
            return true;
        }
    }
    return false;
}

/* The check itself, on lines it must and must not flag. */
static void test_scripts_lua_check_flags_literals(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        bool flagged;
    } cases[] = {
        {"local x = ARGV[2]", true},
        {"local x = ARGV[ 3 ]", true},
        {"local x=ARGV [1]", true},
        {"local x = ARGV[i + REQ_OP]", false},
        {"local x = ARGV[CLAIM_LEASE]", false},
        {"local x = myARGV[1]", false},
        {"  return 1", true},
        {"if x then return 2 end", true},
        {"if x then return  5 end", true},
        {"return RES_APPLIED", false},
        {"return n", false},
        {"return out", false},
        {"local n = 0", false},
        {"e.status = 'busy'", true},
        {"e.status = \"idle\"", true},
        {"if e.status ~= 'idle' then return nil end", true},
        {"local e = tag .. 'e'", true},
        {"call('ZADD', pfx .. '{' .. b .. '}' .. 'i', 0, m)", true},
        {"local i = tag .. 'i'", true},
        {"local c = tag .. \"c\"", true},
        {"local t, m = tag .. 't', tag .. 'm'", true},
        {"local key = tag .. 'k' .. claim_id", true},
        {"local s = KEYS[1]:gsub('h$', 's')", true},
        {"if op == 'l' then", true},
        {"if op == \"s\" then", true},
        {"local x = 'r'", true},
        {"local key = tag .. KEY_CLAIM .. claim_id", false},
        {"local e = KEYS[base + BKEY_ENTRIES]", false},
        {"local k = {e = KEYS[1], x = KEYS[2]}", false},
        {"local o = (has and 'a' or 'd') .. ' '", false},
        {"local s = 'idle-ish' .. 'xbusy'", false},
        {"redis.call('SET', key, v, 'PX', px)", false},
        {"redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. now)", false},
        {"local UNORDERED = '0'", false},
        {"-- returns 1 when e.status == 'idle'", false},
        {"  -- ARGV[1] is the prefix", false},
        {"local n = 0 -- return 1, 'busy', ARGV[2]", false},
        {"local s = '--' .. 'busy'", true},
        {"local s = 'a\\'b' .. 'idle'", true},
        {"local s = 'return 1 ARGV[1]'", false},
        {"local s = 'unterminated", false},
    };
    char msg[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (lua_line_problem(cases[i].line, msg, sizeof(msg)) != cases[i].flagged)
            fail_msg("%s: %s", cases[i].line, cases[i].flagged ? "not flagged" : msg);
}

/* The .lua files in lib/store/lua/: no line spells what the tables give it. Every script of
 * HR_SCRIPTS and entry.lua must be among them. */
static void test_scripts_lua_takes_numbers_from_tables(void **state)
{
    (void)state;
    char dir[4096], path[4600], msg[256], report[8192] = "";
    size_t used = 0, found = 0;
    bool seen[HR_NSCRIPTS + 1] = {false}; /* the scripts, then entry.lua */
    snprintf(dir, sizeof(dir), "%s/lib/store/lua", h_source_dir());
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s", dir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".lua") != 0)
            continue;
        int id = 0;
        while (id < HR_NSCRIPTS &&
               (strlen(hr_script_name((enum hr_script_id)id)) != len - 4 ||
                strncmp(hr_script_name((enum hr_script_id)id), de->d_name, len - 4) != 0))
            id++;
        if (id < HR_NSCRIPTS || strcmp(de->d_name, "entry.lua") == 0)
            seen[id] = true;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        found++;
        char *line = NULL;
        size_t cap = 0;
        for (int no = 1; getline(&line, &cap, f) != -1; no++) {
            line[strcspn(line, "\n")] = '\0';
            if (lua_line_problem(line, msg, sizeof(msg)) && used < sizeof(report))
                used += (size_t)snprintf(report + used, sizeof(report) - used,
                                         "\n  lib/store/lua/%s:%d: %s\n      %s", de->d_name, no,
                                         msg, line);
        }
        free(line);
        fclose(f);
    }
    closedir(d);
    for (int i = 0; i <= HR_NSCRIPTS; i++)
        if (!seen[i])
            fail_msg("%s/%s.lua is missing", dir,
                     i < HR_NSCRIPTS ? hr_script_name((enum hr_script_id)i) : "entry");
    assert_true(found >= HR_NSCRIPTS + 1);
    if (used)
        fail_msg("Lua that should take its numbers and names from lib/store/script.h:%s", report);
}

/* ===================== B. the rules ===================== */
/* --- heartbeats --- */

/* A new host's entry: the given status, both seqs from the heartbeat, the
 * TTL (its bucket's expiry), a member of its bucket's idle set for its
 * region when it is idle (and then the bucket in the region's summary);
 * nothing else, and nothing outside the prefix. */
static void test_scripts_heartbeat_creates_entry(void **state)
{
    (void)state;
    static const struct {
        enum hr_status status;
        uint64_t seq;
    } cases[] = {
        {HR_STATUS_IDLE, 7},
        {HR_STATUS_BUSY, 7},
        {HR_STATUS_IDLE, UINT64_MAX},
        {HR_STATUS_BUSY, 0}, /* unordered */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        flush();
        enum hr_status st = cases[i].status;
        long long t0 = redis_now_ms();
        assert_int_equal(run(heartbeat("host-1", "room-1", "eu-central", st, cases[i].seq)),
                         R_APPLIED);
        long long t1 = redis_now_ms();
        assert_string_equal(entry("host-1"),
                            entry_text(cases[i].seq, cases[i].seq, st, "eu-central", "room-1"));
        long long exp = expiry("host-1");
        assert_true(exp >= t0 + (long long)TTL_MS && exp <= t1 + (long long)TTL_MS);
        assert_true(live("host-1"));
        assert_int_equal(idle_in("eu-central", "host-1"), st == HR_STATUS_IDLE);
        assert_false(idle_in("local", "host-1"));
        assert_int_equal(lease("host-1"), -1);
        if (st == HR_STATUS_IDLE) {
            assert_string_equal(reported(), change_text('a', 1, 0, "eu-central"));
            assert_true(listed("eu-central", 0));
            assert_keys(REGS(PREFIX "layout", PREFIX "{0}e", PREFIX "{0}i", PREFIX "{0}m",
                             PREFIX "{r.eu-central}s", PREFIX "{r.eu-central}h"));
        } else {
            assert_string_equal(reported(), "");
            assert_keys(REGS(PREFIX "layout", PREFIX "{0}e"));
        }
    }
}

/* Once the entry exists, a heartbeat never changes its status (only a
 * status update or a claim does), whatever status it carries. */
static void test_scripts_heartbeat_keeps_status(void **state)
{
    (void)state;
    static const struct {
        enum hr_status created, later;
    } cases[] = {
        {HR_STATUS_BUSY, HR_STATUS_IDLE},
        {HR_STATUS_IDLE, HR_STATUS_BUSY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        flush();
        assert_int_equal(run(beat("h", cases[i].created, 1)), R_APPLIED);
        assert_int_equal(run(beat("h", cases[i].later, 2)), R_APPLIED);
        assert_string_equal(entry("h"), entry_text(2, 1, cases[i].created, "local", "room-1"));
        assert_int_equal(idle_in("local", "h"), cases[i].created == HR_STATUS_IDLE);
        assert_string_equal(reported(), "");
        assert_int_equal(listed("local", 0), cases[i].created == HR_STATUS_IDLE);
    }
}

/* A heartbeat of a known host refreshes its expiry and takes its room. */
static void test_scripts_heartbeat_refreshes(void **state)
{
    (void)state;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    set_expiry("h", redis_now_ms() + 5000);
    long long t0 = redis_now_ms();
    assert_int_equal(run(heartbeat("h", "room-2", "local", HR_STATUS_IDLE, 2)), R_APPLIED);
    assert_true(expiry("h") >= t0 + (long long)TTL_MS);
    assert_true(idle_in("local", "h"));
    assert_string_equal(entry("h"), entry_text(2, 1, HR_STATUS_IDLE, "local", "room-2"));
}

/* A heartbeat from another region moves the host's idle member there (and
 * its bucket from one region's summary to the other's); a busy host has
 * none to move. */
static void test_scripts_heartbeat_moves_region(void **state)
{
    (void)state;
    const enum hr_status statuses[] = {HR_STATUS_IDLE, HR_STATUS_BUSY};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        flush();
        enum hr_status st = statuses[i];
        assert_int_equal(run(heartbeat("h", "room-1", "local", st, 1)), R_APPLIED);
        long long exp = expiry("h");
        assert_int_equal(run(heartbeat("h", "room-1", "us-east-1", st, 2)), R_APPLIED);
        assert_false(idle_in("local", "h"));
        assert_int_equal(idle_in("us-east-1", "h"), st == HR_STATUS_IDLE);
        assert_true(expiry("h") >= exp);
        assert_string_equal(field("h", "region"), "us-east-1");
        assert_string_equal(field("h", "status"), hr_status_name(st));
        if (st == HR_STATUS_IDLE) {
            char want[256];
            snprintf(want, sizeof(want), "%s, %s", change_text('a', 1, 0, "us-east-1"),
                     change_text('d', 2, 0, "local"));
            assert_string_equal(reported(), want);
        } else {
            assert_string_equal(reported(), "");
        }
        assert_false(listed("local", 0));
        assert_int_equal(listed("us-east-1", 0), st == HR_STATUS_IDLE);
    }
}

/* Heartbeats are ordered by seq, compared exactly on 64 bits: one not newer
 * than the last applied changes nothing (not the entry, its expiry, or its
 * idle member). */
static void test_scripts_heartbeat_seq_order(void **state)
{
    (void)state;
    static const struct {
        uint64_t stored, incoming;
        long long want;
    } cases[] = {
        {10, 10, R_DUPLICATE},
        {10, 9, R_DUPLICATE},
        {10, 11, R_APPLIED},
        {99, 100, R_APPLIED}, /* longer is larger */
        {100, 99, R_DUPLICATE},
        {100, 1, R_DUPLICATE},
        {18446744073709551614u, 18446744073709551615u, R_APPLIED},
        {18446744073709551615u, 18446744073709551614u, R_DUPLICATE},
        {18446744073709551615u, 18446744073709551615u, R_DUPLICATE},
        /* Doubles round these two to one number. */
        {9007199254740992u, 9007199254740993u, R_APPLIED},
        {9007199254740993u, 9007199254740992u, R_DUPLICATE},
        {9007199254740993u, 9007199254740993u, R_DUPLICATE},
        /* Base 36 as stored (layout.h): a digit below a letter, one length
         * below the next, and past ten characters (beyond what a double
         * holds) the high part, then the low ten. */
        {9, 10, R_APPLIED}, /* "9", "a" */
        {10, 9, R_DUPLICATE},
        {35, 36, R_APPLIED},                                 /* "z", "10" */
        {3656158440062975u, 3656158440062976u, R_APPLIED},   /* 36^10 - 1, 36^10 */
        {3656158440062981u, 3656158440062980u, R_DUPLICATE}, /* low ten differ */
        {3656158440062980u, 3656158440062981u, R_APPLIED},
        {7312316880125951u, 7312316880125952u, R_APPLIED}, /* "1zzzzzzzzzz", "20000000000" */
        {7312316880125952u, 7312316880125951u, R_DUPLICATE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        flush();
        char before[512];
        assert_int_equal(run(heartbeat("h", "room-a", "local", HR_STATUS_IDLE, cases[i].stored)),
                         R_APPLIED);
        /* A shorter expiry, so a refresh would show. */
        long long shorter = redis_now_ms() + 5000;
        set_expiry("h", shorter);
        snprintf(before, sizeof(before), "%s", entry("h"));
        long long got =
            run(heartbeat("h", "room-b", "us-east-1", HR_STATUS_IDLE, cases[i].incoming));
        if (got != cases[i].want)
            fail_msg("stored %" PRIu64 ", incoming %" PRIu64 ": %lld, want %lld", cases[i].stored,
                     cases[i].incoming, got, cases[i].want);
        if (got == R_DUPLICATE) {
            assert_string_equal(entry("h"), before);
            assert_int_equal(expiry("h"), shorter);
            assert_true(idle_in("local", "h"));
            assert_false(idle_in("us-east-1", "h"));
            assert_string_equal(reported(), "");
        } else {
            assert_string_equal(entry("h"), entry_text(cases[i].incoming, cases[i].stored,
                                                       HR_STATUS_IDLE, "us-east-1", "room-b"));
            assert_true(expiry("h") > shorter);
            assert_true(idle_in("us-east-1", "h"));
        }
    }
}

/* seq 0 (unordered, HTTP) always applies and leaves the stored seqs alone. */
static void test_scripts_heartbeat_unordered(void **state)
{
    (void)state;
    assert_int_equal(run(heartbeat("h", "room-a", "local", HR_STATUS_IDLE, 5)), R_APPLIED);
    assert_int_equal(run(heartbeat("h", "room-b", "local", HR_STATUS_IDLE, 0)), R_APPLIED);
    assert_string_equal(entry("h"), entry_text(5, 5, HR_STATUS_IDLE, "local", "room-b"));
    assert_int_equal(run(heartbeat("h", "room-c", "local", HR_STATUS_IDLE, 0)), R_APPLIED);
    assert_string_equal(entry("h"), entry_text(5, 5, HR_STATUS_IDLE, "local", "room-c"));
    /* The stored seq still orders what comes next. */
    assert_int_equal(run(heartbeat("h", "room-d", "local", HR_STATUS_IDLE, 5)), R_DUPLICATE);
    assert_int_equal(run(heartbeat("h", "room-d", "local", HR_STATUS_IDLE, 6)), R_APPLIED);
    assert_string_equal(entry("h"), entry_text(6, 5, HR_STATUS_IDLE, "local", "room-d"));
    /* A host created unordered: any seq is newer than its 0. */
    assert_int_equal(run(beat("u", HR_STATUS_IDLE, 0)), R_APPLIED);
    assert_string_equal(entry("u"), entry_text(0, 0, HR_STATUS_IDLE, "local", "room-1"));
    assert_int_equal(run(beat("u", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_string_equal(field("u", "hseq"), "1");
}

/* --- status updates --- */

/* Only for a live entry: a host never seen, gone, or expired is unknown, and
 * the update writes nothing (what is left of an expired entry goes). */
static void test_scripts_status_unknown_host(void **state)
{
    (void)state;
    enum { NEVER, LEFT, EXPIRED };
    for (int c = NEVER; c <= EXPIRED; c++) {
        flush();
        if (c == LEFT) {
            assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
            assert_int_equal(run(leave("h", 2)), R_APPLIED);
        } else if (c == EXPIRED) {
            assert_int_equal(run_with(beat("h", HR_STATUS_IDLE, 1), SHORT_MS, 0, false), R_APPLIED);
            await_expired("h");
            assert_string_equal(entry("h"), entry_text(1, 1, HR_STATUS_IDLE, "local", "room-1"));
        }
        assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 10)), R_UNKNOWN_HOST);
        assert_false(live("h"));
        assert_string_equal(entry("h"), "");
        assert_int_equal(expiry("h"), -1);
        assert_false(idle_in("local", "h"));
        assert_false(listed("local", 0));
    }
}

/* A status update moves the host in or out of its bucket's idle set, keeps
 * the entry's expiry, and records its seq. */
static void test_scripts_status_moves_index(void **state)
{
    (void)state;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    long long exp = expiry("h");
    assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 2)), R_APPLIED);
    assert_false(idle_in("local", "h"));
    assert_int_equal(expiry("h"), exp);
    assert_string_equal(entry("h"), entry_text(1, 2, HR_STATUS_BUSY, "local", "room-1"));
    assert_string_equal(reported(), change_text('d', 2, 0, "local"));
    assert_int_equal(run(status_update("h", HR_STATUS_IDLE, 3)), R_APPLIED);
    assert_true(idle_in("local", "h"));
    assert_int_equal(expiry("h"), exp);
    assert_string_equal(entry("h"), entry_text(1, 3, HR_STATUS_IDLE, "local", "room-1"));
    assert_string_equal(reported(), change_text('a', 3, 0, "local"));
}

/* A status update does not extend the expiry, whether it changes the status
 * or not. */
static void test_scripts_status_keeps_ttl(void **state)
{
    (void)state;
    const enum hr_status to[] = {HR_STATUS_BUSY, HR_STATUS_IDLE};
    for (size_t i = 0; i < sizeof(to) / sizeof(to[0]); i++) {
        flush();
        assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
        long long shorter = redis_now_ms() + 5000;
        set_expiry("h", shorter);
        assert_int_equal(run(status_update("h", to[i], 2)), R_APPLIED);
        assert_int_equal(expiry("h"), shorter);
        assert_string_equal(field("h", "sseq"), "2");
        assert_string_equal(field("h", "status"), hr_status_name(to[i]));
    }
}

/* Status updates are ordered among themselves, not against heartbeats. */
static void test_scripts_status_seq_order(void **state)
{
    (void)state;
    char before[512];
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 10)), R_APPLIED);
    assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 20)), R_APPLIED);
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 30)), R_APPLIED);
    /* Lower than the heartbeat's 30, newer than the status's 20: applied. */
    assert_int_equal(run(status_update("h", HR_STATUS_IDLE, 25)), R_APPLIED);
    assert_string_equal(entry("h"), entry_text(30, 25, HR_STATUS_IDLE, "local", "room-1"));
    /* Not newer than 25: nothing changes. */
    snprintf(before, sizeof(before), "%s", entry("h"));
    assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 25)), R_DUPLICATE);
    assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 24)), R_DUPLICATE);
    assert_string_equal(entry("h"), before);
    assert_true(idle_in("local", "h"));
    /* Unordered: applied, the stored seq kept. */
    assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 0)), R_APPLIED);
    assert_string_equal(entry("h"), entry_text(30, 25, HR_STATUS_BUSY, "local", "room-1"));
    /* Nor is a heartbeat ordered against the status seq: 35 < 40 applies. */
    assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 40)), R_APPLIED);
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 35)), R_APPLIED);
    assert_string_equal(entry("h"), entry_text(35, 40, HR_STATUS_BUSY, "local", "room-1"));
}

/* A claim is the host's to settle. Its `busy` (ordered or not) confirms it:
 * the lease (its bucket's claims member) is gone, the session runs, and its
 * `idle` after that ends it. Its `idle` before confirming changes only the
 * seq: the claim stands (busy, leased, not findable) until the lease runs
 * out, so a host that keeps saying idle cannot drop its client and win the
 * next find. */
static void test_scripts_status_settles_claim(void **state)
{
    (void)state;
    static const uint64_t busy_seq[] = {2, 0}; /* ordered, unordered */
    struct hr_host_info got, hs[2];
    for (size_t i = 0; i < 2; i++) {
        flush();
        assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
        assert_int_equal(claim("h", SHORT_MS, REGS("local"), &got), 1);
        long long ends = lease("h");
        assert_true(ends > 0);
        assert_int_equal(run(status_update("h", HR_STATUS_BUSY, busy_seq[i])), R_APPLIED);
        assert_int_equal(lease("h"), -1);
        assert_string_equal(field("h", "status"), "busy");
        assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local"), hs, 2), 1);
        assert_int_equal(hs[0].status, HR_STATUS_BUSY);
        assert_false(hs[0].claimed);
        await_redis_time(ends);
        assert_int_equal(sweep(10), 0);
        assert_string_equal(field("h", "status"), "busy");
        /* Confirmed: the host's idle ends the session. */
        assert_int_equal(run(status_update("h", HR_STATUS_IDLE, busy_seq[i] ? 3 : 0)), R_APPLIED);
        assert_string_equal(field("h", "status"), "idle");
        assert_true(idle_in("local", "h"));
        assert_true(listed("local", 0));
    }

    /* An idle before the host confirmed: applied (its seq recorded), and the
     * claim stands until its lease ends. */
    flush();
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim("h", SHORT_MS, REGS("local"), &got), 1);
    long long ends = lease("h");
    assert_int_equal(run(status_update("h", HR_STATUS_IDLE, 2)), R_APPLIED);
    assert_string_equal(field("h", "sseq"), "2");
    assert_string_equal(field("h", "status"), "busy");
    assert_int_equal(lease("h"), ends);
    assert_false(idle_in("local", "h"));
    assert_string_equal(reported(), "");
    assert_int_equal(claim(NULL, SHORT_MS, REGS("local"), &got), 0);
    assert_int_equal(run(status_update("h", HR_STATUS_IDLE, 2)), R_DUPLICATE);
    await_redis_time(ends);
    assert_int_equal(sweep(10), 1);
    assert_string_equal(field("h", "status"), "idle");
    assert_int_equal(claim(NULL, SHORT_MS, REGS("local"), &got), 1);
}

/* Claims choose uniformly among a bucket's idle hosts of a region: over
 * many claims of 8 hosts with random picks (each host put back idle by its
 * own busy then idle), a chi-square test at p = 0.001 (14.07 at p = 0.05,
 * 24.32 at 0.001 for 7 degrees of freedom) does not reject uniformity, and
 * no host is favoured for being the freshest. One bucket: the pick among
 * buckets is SRANDMEMBER's. */
static void test_scripts_claim_uniform(void **state)
{
    (void)state;
    enum { HOSTS = 8, CLAIMS = 1600 };
    int count[HOSTS] = {0};
    for (int i = 0; i < HOSTS; i++) {
        char id[16];
        snprintf(id, sizeof(id), "u%d", i);
        assert_int_equal(run(beat(id, HR_STATUS_IDLE, 1)), R_APPLIED);
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL, seq = 2;
    for (int k = 0; k < CLAIMS; k++) {
        x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
        struct hr_claim_query q = {.regions = {"local"},
                                   .nregions = 1,
                                   .lease_ms = LEASE_MS,
                                   .pick = (uint32_t)((x * 0x2545f4914f6cdd1dULL) >> 33)};
        redisReply *r = claim_call(0, &q);
        struct hr_host_info got;
        assert_int_equal(hr_script_claimed(r, &got), 1);
        freeReplyObject(r);
        int i = atoi(got.host_id + 1);
        assert_true(i >= 0 && i < HOSTS);
        count[i]++;
        /* Back to idle by the host's own busy then idle; the freshest
         * refresh goes to the host just claimed. */
        assert_int_equal(run(status_update(got.host_id, HR_STATUS_BUSY, seq++)), R_APPLIED);
        assert_int_equal(run(status_update(got.host_id, HR_STATUS_IDLE, seq++)), R_APPLIED);
        assert_int_equal(run(beat(got.host_id, HR_STATUS_IDLE, seq++)), R_APPLIED);
    }
    double chi2 = 0, want = (double)CLAIMS / HOSTS;
    for (int i = 0; i < HOSTS; i++)
        chi2 += (count[i] - want) * (count[i] - want) / want;
    print_message("claims per host (of %d): chi-square %.2f\n", CLAIMS, chi2);
    if (chi2 > 24.32)
        fail_msg("claims are not uniform: chi-square %.2f > 24.32 (p = 0.001)", chi2);
}

/* --- leaves --- */

/* A leave deletes the entry, its expiry, its idle member and its claim,
 * and keeps a tombstone with its seq for one TTL. */
static void test_scripts_leave_deletes(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat("other", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim("h", LEASE_MS, REGS("local"), &got), 1);
    assert_true(lease("h") > 0);
    long long t0 = redis_now_ms();
    assert_int_equal(run(leave("h", 5)), R_APPLIED);
    long long t1 = redis_now_ms();
    assert_false(live("h"));
    assert_string_equal(entry("h"), "");
    assert_int_equal(expiry("h"), -1);
    assert_false(idle_in("local", "h"));
    assert_int_equal(lease("h"), -1);
    assert_string_equal(tomb_seq("h"), "5");
    long long ends = tomb_expiry("h");
    assert_true(ends >= t0 + (long long)TTL_MS && ends <= t1 + (long long)TTL_MS);
    /* The other host is untouched. */
    assert_string_equal(entry("other"), entry_text(1, 1, HR_STATUS_IDLE, "local", "room-1"));
    assert_true(idle_in("local", "other"));
    assert_true(listed("local", 0));
}

/* A leave is compared with both stored seqs: not newer than either, it is a
 * duplicate and the entry stays as it was. */
static void test_scripts_leave_compares_both_seqs(void **state)
{
    (void)state;
    static const struct {
        uint64_t hseq, sseq, leave;
        long long want;
    } cases[] = {
        {20, 10, 15, R_DUPLICATE}, /* newer than the status seq only */
        {10, 20, 15, R_DUPLICATE}, /* newer than the heartbeat seq only */
        {20, 10, 20, R_DUPLICATE}, {10, 20, 20, R_DUPLICATE}, {10, 10, 10, R_DUPLICATE},
        {20, 10, 21, R_APPLIED},   {10, 20, 21, R_APPLIED},   {10, 10, 11, R_APPLIED},
        {10, 10, 0, R_APPLIED}, /* unordered */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        flush();
        uint64_t h = cases[i].hseq, s = cases[i].sseq, first = h < s ? h : s;
        char before[512];
        assert_int_equal(run(beat("h", HR_STATUS_IDLE, first)), R_APPLIED);
        if (h > first)
            assert_int_equal(run(beat("h", HR_STATUS_IDLE, h)), R_APPLIED);
        if (s > first)
            assert_int_equal(run(status_update("h", HR_STATUS_BUSY, s)), R_APPLIED);
        snprintf(before, sizeof(before), "%s", entry("h"));
        assert_int_equal(strtoull(field("h", "hseq"), NULL, 10), h);
        assert_int_equal(strtoull(field("h", "sseq"), NULL, 10), s);
        long long got = run(leave("h", cases[i].leave));
        if (got != cases[i].want)
            fail_msg("hseq %" PRIu64 ", sseq %" PRIu64 ", leave %" PRIu64 ": %lld, want %lld", h, s,
                     cases[i].leave, got, cases[i].want);
        if (got == R_DUPLICATE) {
            assert_string_equal(entry("h"), before);
            assert_true(live("h"));
            assert_string_equal(hget("h", T_), "");
        } else {
            assert_false(live("h"));
            assert_string_equal(entry("h"), "");
        }
    }
}

/* The tombstone: a late heartbeat (not newer than the leave) is a duplicate
 * and does not bring the host back; a newer one does. */
static void test_scripts_leave_tombstone_blocks_late_heartbeat(void **state)
{
    (void)state;
    static const struct {
        uint64_t seq;
        long long want;
    } cases[] = {{15, R_DUPLICATE}, {20, R_DUPLICATE}, {1, R_DUPLICATE}, {21, R_APPLIED}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        flush();
        assert_int_equal(run(beat("h", HR_STATUS_IDLE, 10)), R_APPLIED);
        assert_int_equal(run(leave("h", 20)), R_APPLIED);
        assert_int_equal(run(beat("h", HR_STATUS_IDLE, cases[i].seq)), cases[i].want);
        if (cases[i].want == R_DUPLICATE) {
            assert_false(live("h"));
            assert_string_equal(entry("h"), "");
            assert_false(idle_in("local", "h"));
            assert_false(listed("local", 0));
            /* A retransmitted leave is a duplicate too. */
            assert_int_equal(run(leave("h", 20)), R_DUPLICATE);
        } else {
            assert_string_equal(entry("h"), entry_text(21, 21, HR_STATUS_IDLE, "local", "room-1"));
            assert_true(idle_in("local", "h"));
            assert_true(listed("local", 0));
        }
    }
}

/* A leave of a host that is not there is applied and writes nothing. */
static void test_scripts_leave_absent_writes_nothing(void **state)
{
    (void)state;
    assert_int_equal(run(leave("nobody", 5)), R_APPLIED);
    assert_string_equal(hget("nobody", T_), "");
    assert_int_equal(run(leave("nobody", 0)), R_APPLIED);
    assert_keys(REGS(PREFIX "layout"));
}

/* A tombstone is never lowered: a leave of an entry an unordered heartbeat
 * created past it keeps the higher seq. */
static void test_scripts_leave_never_lowers_tombstone(void **state)
{
    (void)state;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 10)), R_APPLIED);
    assert_int_equal(run(leave("h", 100)), R_APPLIED);
    /* Unordered: not checked against the tombstone. */
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 0)), R_APPLIED);
    assert_int_equal(run(leave("h", 50)), R_APPLIED);
    assert_false(live("h"));
    assert_string_equal(tomb_seq("h"), "100");
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 60)), R_DUPLICATE);
    assert_false(live("h"));
}

/* Replaced for layout 2. Layout 1 read zero-padded tombstone keys of older
 * builds; layout 2 has no older tombstones (its "<seq> <expiry>" fields in
 * the bucket's t hash are its own, and a migration copies no tombstones).
 * The nearest rule: a tombstone is read by value from its field, and lasts
 * until its own expiry, which readers check (an expired one not swept yet
 * blocks nothing), and the sweep removes expired tombstones only. */
static void test_scripts_leave_reads_padded_tombstone(void **state)
{
    (void)state;
    char v[48];
    /* Seq 20 is "k" in base 36 (layout.h: hr_layout_seq_format). */
    h_redis_int(rc, "HSET %s h %s", hkey("h", T_), "k 99999999999999");
    snprintf(v, sizeof(v), "k %lld", redis_now_ms() - 1);
    h_redis_int(rc, "HSET %s old %s", hkey("old", T_), v);
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 15)), R_DUPLICATE);
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 20)), R_DUPLICATE);
    assert_false(live("h"));
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 21)), R_APPLIED);
    /* Expired: blocks nothing. */
    assert_int_equal(run(beat("old", HR_STATUS_IDLE, 15)), R_APPLIED);
    assert_string_equal(entry("old"), entry_text(15, 15, HR_STATUS_IDLE, "local", "room-1"));
    /* The sweep removes the expired tombstone, and keeps the other. */
    h_redis_int(rc, "HSET %s gone %s", hkey("gone", T_), "k 1000");
    assert_int_equal(sweep(10), 0);
    assert_string_equal(hget("gone", T_), "");
    assert_string_equal(hget("old", T_), "");
    assert_string_equal(tomb_seq("h"), "20");
}

/* --- the host cap --- */

/* BUCKET_CAP counts live entries only: entries whose expiry has passed
 * (hosts expired, or written by hand, more of them than a call trims),
 * their idle members, and entries with no expiry at all do not hold the
 * cap shut; a known host refreshes at the cap; 0 is no cap. One bucket. */
static void test_scripts_max_hosts_counts_live_only(void **state)
{
    (void)state;
    static const char *const regions[] = {"local", "eu-central", "us-east-1"};
    assert_int_equal(run(beat("live", HR_STATUS_IDLE, 1)), R_APPLIED);
    /* A host that expired, its entry and expiry left behind... */
    assert_int_equal(run_with(beat("gone", HR_STATUS_BUSY, 1), SHORT_MS, 0, false), R_APPLIED);
    await_expired("gone");
    assert_true(expiry("gone") > 0);
    assert_string_equal(entry("gone"), entry_text(1, 1, HR_STATUS_BUSY, "local", "room-1"));
    /* ... and stale ones in every region, more than a call trims. */
    for (int i = 0; i < 20; i++) {
        char id[32], m[64];
        const char *region = regions[i % 3];
        snprintf(id, sizeof(id), "stale-%d", i);
        char v[256];
        snprintf(v, sizeof(v), "%s 1000", entry_text(1, 1, HR_STATUS_IDLE, region, "room-1"));
        h_redis_int(rc, "HSET %s %s %s", bkey(0, E_), id, v);
        snprintf(m, sizeof(m), "%s %s", region, id);
        h_redis_int(rc, "ZADD %s 0 %s", bkey(0, I_), m);
        snprintf(id, sizeof(id), "no-expiry-%d", i);
        h_redis_int(rc, "HSET %s %s %s", bkey(0, E_), id,
                    entry_text(1, 1, HR_STATUS_BUSY, region, "room-1"));
    }
    /* One live host: a cap of 2 lets one more in, and no other. */
    assert_int_equal(run_with(beat("second", HR_STATUS_IDLE, 1), TTL_MS, 2, false), R_APPLIED);
    assert_int_equal(run_with(beat("third", HR_STATUS_IDLE, 1), TTL_MS, 2, false), R_FULL);
    assert_string_equal(entry("third"), "");
    assert_int_equal(expiry("third"), -1);
    assert_false(idle_in("local", "third"));
    assert_int_equal(run_with(beat("live", HR_STATUS_IDLE, 2), TTL_MS, 2, false), R_APPLIED);
    assert_int_equal(run_with(beat("third", HR_STATUS_IDLE, 1), TTL_MS, 0, false), R_APPLIED);
}

/* The cap is per bucket: a bucket at the cap refuses a new host while
 * another bucket takes one, and a batch over several buckets counts each
 * bucket on its own. */
static void test_scripts_max_hosts_per_bucket(void **state)
{
    (void)state;
    char p1[32], q1[32], r1[32], s2[32], t2[32], u3[32];
    layout(4);
    id_in(p1, sizeof(p1), "p", 1);
    id_in(q1, sizeof(q1), "q", 1);
    id_in(r1, sizeof(r1), "r", 1);
    id_in(s2, sizeof(s2), "s", 2);
    id_in(t2, sizeof(t2), "t", 2);
    id_in(u3, sizeof(u3), "u", 3);
    assert_int_equal(run_with(beat(p1, HR_STATUS_IDLE, 1), TTL_MS, 1, false), R_APPLIED);
    assert_int_equal(run_with(beat(q1, HR_STATUS_IDLE, 1), TTL_MS, 1, false), R_FULL);
    assert_int_equal(run_with(beat(s2, HR_STATUS_IDLE, 1), TTL_MS, 1, false), R_APPLIED);
    const struct hr_request reqs[] = {
        beat(q1, HR_STATUS_IDLE, 1), /* bucket 1 holds 1 of 2: applied */
        beat(r1, HR_STATUS_IDLE, 1), /* bucket 1 holds 2 of 2 now: full */
        beat(t2, HR_STATUS_IDLE, 1), /* bucket 2 holds 1 of 2: applied */
        beat(u3, HR_STATUS_IDLE, 1), /* bucket 3 is empty: applied */
        beat(p1, HR_STATUS_IDLE, 2), /* known, at the cap: applied */
    };
    const long long want[] = {R_APPLIED, R_FULL, R_APPLIED, R_APPLIED, R_APPLIED};
    int nb;
    redisReply *r = requests_any(reqs, NULL, 5, TTL_MS, 2, &nb);
    assert_int_equal(nb, 3);
    for (size_t i = 0; i < 5; i++)
        if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer != want[i])
            fail_msg("request %zu: %lld, want %lld", i, r->element[i]->integer, want[i]);
    freeReplyObject(r);
    assert_false(live(r1));
    assert_true(live(q1) && live(t2) && live(u3));
}

/* --- claims --- */

/* Only an idle host is taken, never a busy one, however recent. */
static void test_scripts_claim_takes_idle_only(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(beat("idle-1", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat("busy-1", HR_STATUS_BUSY, 1)), R_APPLIED);
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 1);
    assert_string_equal(got.host_id, "idle-1");
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 0);
    /* Not the store's summary alone: the script itself finds none. */
    assert_int_equal(claim_in(0, NULL, LEASE_MS, REGS("local"), NULL, &got), 0);
    assert_string_equal(entry("busy-1"), entry_text(1, 1, HR_STATUS_BUSY, "local", "room-1"));
    assert_int_equal(lease("busy-1"), -1);
}

/* Regions are tried in the order given to the script; a region not given
 * is not. */
static void test_scripts_claim_regions_in_order(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(heartbeat("l1", "r", "local", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(heartbeat("e1", "r", "eu-central", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(heartbeat("u1", "r", "us-east-1", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim_in(0, NULL, LEASE_MS, REGS("eu-central", "local"), NULL, &got), 1);
    assert_string_equal(got.host_id, "e1");
    assert_string_equal(got.region, "eu-central");
    assert_int_equal(claim_in(0, NULL, LEASE_MS, REGS("eu-central", "local"), NULL, &got), 1);
    assert_string_equal(got.host_id, "l1");
    assert_string_equal(got.region, "local");
    assert_int_equal(claim_in(0, NULL, LEASE_MS, REGS("eu-central", "local"), NULL, &got), 0);
    assert_string_equal(field("u1", "status"), "idle");
    assert_int_equal(claim(NULL, LEASE_MS, REGS("us-east-1"), &got), 1);
    assert_string_equal(got.host_id, "u1");
}

/* A claim of a specific host takes it only when it is idle (and in a region
 * given, when regions are given); never another host instead. */
static void test_scripts_claim_specific_host(void **state)
{
    (void)state;
    enum { IDLE, BUSY, ABSENT, CLAIMED };
    const struct {
        int host;
        const char *const *regions;
        int want;
    } cases[] = {
        {IDLE, REGS("eu-central", "local"), 1},
        {IDLE, REGS(NULL), 1}, /* no regions: any */
        {IDLE, REGS("eu-central"), 0},
        {BUSY, REGS("local"), 0},
        {ABSENT, REGS("local"), 0},
        {CLAIMED, REGS("local"), 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        flush();
        struct hr_host_info got;
        assert_int_equal(run(beat("other", HR_STATUS_IDLE, 1)), R_APPLIED);
        if (cases[i].host != ABSENT)
            assert_int_equal(
                run(beat("t", cases[i].host == BUSY ? HR_STATUS_BUSY : HR_STATUS_IDLE, 1)),
                R_APPLIED);
        if (cases[i].host == CLAIMED)
            assert_int_equal(claim("t", LEASE_MS, REGS("local"), &got), 1);
        char before[512];
        snprintf(before, sizeof(before), "%s", entry("t"));
        long long was = lease("t");
        int n = claim("t", LEASE_MS, cases[i].regions, &got);
        if (n != cases[i].want)
            fail_msg("case %zu: claimed %d, want %d", i, n, cases[i].want);
        if (n) {
            assert_string_equal(got.host_id, "t");
            assert_string_equal(field("t", "status"), "busy");
            assert_true(lease("t") > 0);
        } else {
            assert_string_equal(entry("t"), before);
            assert_int_equal(lease("t"), was);
        }
        assert_string_equal(entry("other"), entry_text(1, 1, HR_STATUS_IDLE, "local", "room-1"));
        assert_int_equal(lease("other"), -1);
    }
}

/* Claims never give the same host twice. Four buckets: the finds go
 * through the regions' summaries. */
static void test_scripts_claim_never_twice(void **state)
{
    (void)state;
    enum { N = 8 };
    char ids[N][16];
    bool taken[N] = {false};
    layout(4);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "host-%d", i);
        assert_int_equal(
            run(heartbeat(ids[i], "r", i % 2 ? "local" : "eu-central", HR_STATUS_IDLE, 1)),
            R_APPLIED);
    }
    struct hr_host_info got;
    for (int c = 0; c < N; c++) {
        assert_int_equal(claim(NULL, LEASE_MS, REGS("local", "eu-central"), &got), 1);
        int i = 0;
        while (i < N && strcmp(ids[i], got.host_id) != 0)
            i++;
        assert_true(i < N);
        if (taken[i])
            fail_msg("%s claimed twice", got.host_id);
        taken[i] = true;
    }
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local", "eu-central"), &got), 0);
    assert_int_equal(summary_size("local"), 0);
    assert_int_equal(summary_size("eu-central"), 0);
}

/* The claimed host is busy with a lease (its bucket's claims member, scored
 * by the lease's end); it leaves the idle set, and its expiry stays as it
 * was: the claim does not extend it. */
static void test_scripts_claim_marks_busy_with_lease(void **state)
{
    (void)state;
    struct hr_host_info got, hs[2];
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    long long shorter = redis_now_ms() + 5000;
    set_expiry("h", shorter);
    long long t0 = redis_now_ms();
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 1);
    long long t1 = redis_now_ms();
    assert_string_equal(field("h", "status"), "busy");
    long long ends = lease("h");
    assert_true(ends >= t0 + (long long)LEASE_MS && ends <= t1 + (long long)LEASE_MS);
    assert_false(idle_in("local", "h"));
    assert_int_equal(expiry("h"), shorter);
    /* The seqs and the rest of the entry are the host's, untouched (the
     * claim is not in the entry), but for its one slot, taken: capacity 1,
     * none free, 1 as the host last reported. */
    assert_string_equal(entry("h"), "1 1 b1.0.1 local room-1");
    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local"), hs, 2), 1);
    assert_true(hs[0].claimed);
}

/* Sweep: claims whose lease ended unconfirmed return to idle, at most MAX
 * per call; a claim whose lease runs on is left alone. */
static void test_scripts_sweep_returns_lapsed_claims(void **state)
{
    (void)state;
    struct hr_host_info got;
    static const char *const back[] = {"a", "b"};
    long long exp[2];
    assert_int_equal(run(beat("a", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat("b", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat("c", HR_STATUS_IDLE, 1)), R_APPLIED);
    for (size_t i = 0; i < 2; i++)
        exp[i] = expiry(back[i]);
    /* Leases long enough that neither ends before the third claim (a
     * claim returns lapsed claims of its bucket to idle first), short
     * enough to wait out. */
    assert_int_equal(claim("a", 300, REGS("local"), &got), 1);
    assert_int_equal(claim("b", 300, REGS("local"), &got), 1);
    assert_int_equal(claim("c", LEASE_MS, REGS("local"), &got), 1);
    assert_false(listed("local", 0));
    await_swept();
    assert_string_equal(reported(), change_text('a', 3, 0, "local"));
    await_swept();
    assert_int_equal(sweep(10), 0);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(entry(back[i]), entry_text(1, 1, HR_STATUS_IDLE, "local", "room-1"));
        assert_true(idle_in("local", back[i]));
        assert_int_equal(lease(back[i]), -1);
        assert_int_equal(expiry(back[i]), exp[i]);
    }
    assert_string_equal(field("c", "status"), "busy");
    assert_true(lease("c") > 0);
    assert_false(idle_in("local", "c"));
    assert_true(listed("local", 0));
}

/* Replaced for layout 2: layout 1 kept a claim's lease in the entry too,
 * and checked a due claims member against it; layout 2 keeps the lease in
 * the bucket's claims set only. The nearest rule: the entry decides what a
 * due claims member does. Only a live entry with a slot taken gets it back;
 * a due member of a host that expired, or of an idle host with every slot
 * free (left behind, or set by hand), is dropped and frees nothing. */
static void test_scripts_sweep_checks_the_entry_lease(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(beat("gone", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim("gone", LEASE_MS, REGS("local"), &got), 1);
    set_expiry("gone", 1000);
    set_score("gone", C_, 1000);
    assert_int_equal(run(beat("idle-h", HR_STATUS_IDLE, 1)), R_APPLIED);
    char was[512];
    snprintf(was, sizeof(was), "%s", entry("idle-h"));
    h_redis_int(rc, "ZADD %s 1000 idle-h", hkey("idle-h", C_));
    assert_int_equal(sweep(10), 0);
    assert_string_equal(reported(), "");
    assert_int_equal(lease("gone"), -1);
    assert_false(idle_in("local", "gone"));
    assert_false(live("gone"));
    assert_int_equal(lease("idle-h"), -1);
    assert_string_equal(entry("idle-h"), was);
    assert_true(idle_in("local", "idle-h"));
    assert_true(listed("local", 0));
}

/* Replaced for layout 2: layout 1 kept the lease in the entry as well as in
 * the claims set, so a claim whose claims record was lost could still be
 * freed; in layout 2 that member is the claim's only record. The nearest
 * rule: a lease that ended before any sweep returned the host is seen by
 * the host's next heartbeat, which frees it (idle, in the idle set, its
 * bucket listed, findable); a heartbeat during the lease does not. */
static void test_scripts_lost_claim_record_freed_by_heartbeat(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim("h", SHORT_MS, REGS("local"), &got), 1);
    long long ends = lease("h");
    await_redis_time(ends);
    assert_string_equal(field("h", "status"), "busy");
    assert_int_equal(lease("h"), ends);
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 2)), R_APPLIED);
    assert_string_equal(field("h", "status"), "idle");
    assert_int_equal(lease("h"), -1);
    assert_true(idle_in("local", "h"));
    assert_string_equal(reported(), change_text('a', 3, 0, "local"));
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 1);
    /* Within its lease a heartbeat leaves the claim alone. */
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 3)), R_APPLIED);
    assert_string_equal(field("h", "status"), "busy");
    assert_true(lease("h") > 0);
    assert_false(idle_in("local", "h"));
}

/* release.lua undoes a claim by its id, in the bucket the claim was sent
 * to, in either order: after the claim, the host is idle again; before it,
 * the claim takes nothing; after the host confirmed, nothing changes (the
 * session is real); an id is undone once. */
static long long release_in(uint32_t b, const char *id)
{
    struct hr_script_args a = {0};
    hr_script_release_args(&a, &L, b, id, LEASE_MS);
    redisReply *r = eval(HR_SCRIPT_RELEASE, &a);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(r->elements >= 1);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_INTEGER);
    long long n = r->element[0]->integer;
    take_changes(r, 1);
    freeReplyObject(r);
    return n;
}

static int claim_with_id(const char *host, const char *id, struct hr_host_info *got)
{
    return claim_in(bucket_of(host), host, LEASE_MS, REGS("local"), id, got);
}

static void test_scripts_release_undoes_a_claim(void **state)
{
    (void)state;
    struct hr_host_info got;
    char h[32], ckey[64];
    layout(4);
    id_in(h, sizeof(h), "h", 3);
    hr_layout_key(ckey, sizeof(ckey), PREFIX, "3", "k00ab");
    assert_int_equal(run(beat(h, HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim_with_id(h, "00ab", &got), 1);
    assert_string_equal(field(h, "status"), "busy");
    /* The claim id's key is in the bucket claimed from... */
    assert_int_equal(h_redis_int(rc, "EXISTS %s", ckey), 1);
    /* ... and a release sent to another bucket finds nothing to undo. */
    assert_int_equal(release_in(1, "00ab"), 0);
    assert_string_equal(field(h, "status"), "busy");
    assert_int_equal(release_in(3, "00ab"), 1);
    assert_string_equal(entry(h), entry_text(1, 1, HR_STATUS_IDLE, "local", "room-1"));
    assert_int_equal(lease(h), -1);
    assert_true(idle_in("local", h));
    assert_string_equal(reported(), change_text('a', 3, 3, "local"));
    assert_true(listed("local", 3));
    assert_int_equal(release_in(3, "00ab"), 0); /* once */
    /* Released before it ran: the claim takes nothing, the host stays idle. */
    assert_int_equal(release_in(3, "00cd"), 0);
    assert_int_equal(claim_with_id(h, "00cd", &got), 0);
    assert_string_equal(field(h, "status"), "idle");
    /* Confirmed by the host first: the release leaves the session alone. */
    assert_int_equal(claim_with_id(h, "00ef", &got), 1);
    assert_int_equal(run(status_update(h, HR_STATUS_BUSY, 2)), R_APPLIED);
    assert_int_equal(release_in(3, "00ef"), 0);
    assert_string_equal(field(h, "status"), "busy");
}

/* --- a key of the wrong type fails what touches it, and only that --- */

/* A string where a bucket's idle set belongs: a new idle host of that
 * bucket fails, with an error that names the key, while a new busy host of
 * the same bucket (which needs no idle set), hosts of other buckets and
 * the rest of the batch go on. */
static void test_scripts_wrong_type_fails_its_request_only(void **state)
{
    (void)state;
    char known[32], local1[32], east1[32], east2[32], badkey[128];
    layout(4);
    id_in(known, sizeof(known), "known", 0);
    id_in(east1, sizeof(east1), "east", 1);
    id_in(east2, sizeof(east2), "eastb", 1);
    id_in(local1, sizeof(local1), "local", 2);
    assert_int_equal(run(beat(known, HR_STATUS_IDLE, 1)), R_APPLIED);
    snprintf(badkey, sizeof(badkey), "%s", bkey(1, I_));
    h_redis_int(rc, "APPEND %s not-a-sorted-set", badkey);
    const struct hr_request reqs[] = {
        heartbeat(east1, "room-1", "us-east-1", HR_STATUS_IDLE, 1), beat(local1, HR_STATUS_IDLE, 1),
        status_update(known, HR_STATUS_BUSY, 2),
        heartbeat(east2, "room-1", "us-east-1", HR_STATUS_BUSY, 1), /* no idle set: fine */
    };
    int nb;
    redisReply *r = requests_any(reqs, NULL, 4, TTL_MS, 100, &nb);
    assert_int_equal(nb, 3);
    enum hr_result res;
    int reason;
    assert_int_equal(r->element[0]->type, REDIS_REPLY_ERROR);
    if (!strstr(r->element[0]->str, badkey) || !strstr(r->element[0]->str, "WRONGTYPE"))
        fail_msg("the error does not name the key: %s", r->element[0]->str);
    assert_false(hr_script_result(r->element[0], &res, &reason));
    for (size_t i = 1; i < 4; i++) {
        assert_int_equal(r->element[i]->type, REDIS_REPLY_INTEGER);
        assert_int_equal(r->element[i]->integer, R_APPLIED);
    }
    freeReplyObject(r);
    assert_false(live(east1));
    assert_string_equal(entry(east1), "");
    assert_string_equal(field(local1, "status"), "idle");
    assert_string_equal(field(known, "status"), "busy");
    assert_string_equal(field(east2, "status"), "busy");
    /* The other buckets' summary changes are reported all the same. */
    assert_true(listed("local", 2));
    assert_false(listed("local", 0));
    const char *bad = badkey;
    assert_string_equal(text_of(redisCommand(rc, "GET %s", bad), bad), "not-a-sorted-set");
}

/* The same key in one bucket: a claim in another bucket takes its host; a
 * claim in that bucket fails, naming the key. And within one bucket, each
 * region on its own: an entry this build cannot read fails the region whose
 * idle member named it, and a claim over several regions takes a host of
 * another region of that bucket; it fails (naming the key) only when no
 * region had one. */
static void test_scripts_wrong_type_claim_other_regions(void **state)
{
    (void)state;
    struct hr_host_info got;
    char local0[32], local2[32], east2[32], badkey[128], entries[128];
    layout(4);
    id_in(local0, sizeof(local0), "local", 0);
    id_in(local2, sizeof(local2), "localb", 2);
    id_in(east2, sizeof(east2), "east", 2);
    assert_int_equal(run(beat(local0, HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat(local2, HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(heartbeat(east2, "room-1", "us-east-1", HR_STATUS_IDLE, 1)), R_APPLIED);
    snprintf(badkey, sizeof(badkey), "%s", bkey(1, I_));
    h_redis_int(rc, "APPEND %s not-a-sorted-set", badkey);
    assert_int_equal(claim_in(0, NULL, LEASE_MS, REGS("us-east-1", "local"), NULL, &got), 1);
    assert_string_equal(got.host_id, local0);
    struct hr_claim_query q = {
        .regions = {"us-east-1", "local"}, .nregions = 2, .lease_ms = LEASE_MS};
    struct hr_script_args a = {0};
    hr_script_claim_args(&a, &L, 1, &q);
    redisReply *r = hr_script_eval(rc, HR_SCRIPT_CLAIM, &a);
    hr_script_args_free(&a);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    if (!strstr(r->str, badkey))
        fail_msg("the error does not name the key: %s", r->str);
    freeReplyObject(r);

    /* Bucket 2: east2's entry garbled. */
    snprintf(entries, sizeof(entries), "%s", bkey(2, E_));
    h_redis_int(rc, "HSET %s %s not-an-entry", entries, east2);
    assert_int_equal(claim_in(2, NULL, LEASE_MS, REGS("us-east-1", "local"), NULL, &got), 1);
    assert_string_equal(got.host_id, local2);
    /* Nothing left but it: the claim is an error, which names the key. */
    memset(&a, 0, sizeof(a));
    hr_script_claim_args(&a, &L, 2, &q);
    r = hr_script_eval(rc, HR_SCRIPT_CLAIM, &a);
    hr_script_args_free(&a);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    if (!strstr(r->str, entries))
        fail_msg("the error does not name the key: %s", r->str);
    freeReplyObject(r);
    /* A region without the broken host is not affected. */
    assert_int_equal(claim_in(2, NULL, LEASE_MS, REGS("local"), NULL, &got), 0);
}

/* --- lists, counts and claims read live entries only --- */

/* An entry whose expiry has passed is never listed, counted or claimed,
 * even when the entry and its idle member are there. */
static void test_scripts_index_expired_member_unseen(void **state)
{
    (void)state;
    struct hr_host_info hs[4], got;
    long long n[HR_NSTATUSES];
    assert_int_equal(run(beat("live", HR_STATUS_BUSY, 1)), R_APPLIED);
    assert_int_equal(run(beat("ghost", HR_STATUS_IDLE, 1)), R_APPLIED);
    set_expiry("ghost", 1000);
    assert_true(idle_in("local", "ghost"));
    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local"), hs, 4), 1);
    assert_string_equal(hs[0].host_id, "live");
    assert_int_equal(list(HR_STATUS_IDLE, 10, REGS("local"), hs, 4), 0);
    count(REGS("local"), n);
    assert_int_equal(n[slot(HR_STATUS_IDLE)], 0);
    assert_int_equal(n[slot(HR_STATUS_BUSY)], 1);
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 0);
    assert_int_equal(lease("ghost"), -1);
    assert_null(strstr(entry("ghost"), "busy"));
    assert_false(listed("local", 0));
}

/* A host is listed only as its entry says: an idle member left behind in
 * another region does not list it there, and a claim in that region does
 * not take it (the member is dropped). */
static void test_scripts_list_matches_entry(void **state)
{
    (void)state;
    struct hr_host_info hs[4], got;
    assert_int_equal(run(heartbeat("h", "room-1", "eu-central", HR_STATUS_IDLE, 1)), R_APPLIED);
    h_redis_int(rc, "ZADD %s 0 %s", bkey(0, I_), "local h");
    assert_true(idle_in("local", "h"));
    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local", "eu-central"), hs, 4), 1);
    assert_string_equal(hs[0].host_id, "h");
    assert_string_equal(hs[0].region, "eu-central");
    assert_int_equal(hs[0].status, HR_STATUS_IDLE);
    assert_int_equal(list(HR_STATUS_BUSY, 10, REGS("local", "eu-central"), hs, 4), 0);
    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local"), hs, 4), 0);
    assert_int_equal(claim_in(0, NULL, LEASE_MS, REGS("local"), NULL, &got), 0);
    assert_false(idle_in("local", "h"));
    assert_true(idle_in("eu-central", "h"));
    assert_string_equal(field("h", "status"), "idle");
    assert_false(listed("local", 0));
}

/* The status filter and the limit, over four buckets. */
static void test_scripts_list_status_and_limit(void **state)
{
    (void)state;
    struct hr_host_info hs[8];
    layout(4);
    assert_int_equal(run(beat("a", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat("b", HR_STATUS_BUSY, 1)), R_APPLIED);
    assert_int_equal(run(heartbeat("c", "room-1", "eu-central", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(list(HR_STATUS_BUSY, 10, REGS("local", "eu-central"), hs, 8), 1);
    assert_string_equal(hs[0].host_id, "b");
    size_t n = list(HR_STATUS_IDLE, 10, REGS("local", "eu-central"), hs, 8);
    assert_int_equal(n, 2);
    assert_non_null(find_listed(hs, n, "a"));
    assert_non_null(find_listed(hs, n, "c"));
    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local", "eu-central"), hs, 8), 3);
    assert_int_equal(list(HR_STATUS_NONE, 2, REGS("local", "eu-central"), hs, 8), 2);
    assert_int_equal(list(HR_STATUS_NONE, 0, REGS("local", "eu-central"), hs, 8), 0);
}

/* A read that fails is an error, never an absent host: here the reader may
 * not HGETALL (an ACL; on a Redis Cluster node the key not being local fails
 * the same way), and the list fails instead of answering without the host. */
static void test_scripts_failed_read_is_an_error(void **state)
{
    (void)state;
    assert_int_equal(run(beat("readable", HR_STATUS_IDLE, 1)), R_APPLIED);
    redisReply *r = redisCommand(rc, "ACL SETUSER nohget on >pw ~* &* +@all -hgetall");
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisContext *c = h_redis_connect(redis.port);
    r = redisCommand(c, "AUTH nohget pw");
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    struct hr_list_query q = {.status = HR_STATUS_NONE, .limit = 10, .nregions = 1};
    q.regions[0] = "local";
    struct hr_script_args a = {0};
    hr_script_list_args(&a, &L, 0, L.buckets, &q);
    r = hr_script_eval(c, HR_SCRIPT_LIST, &a);
    hr_script_args_free(&a);
    assert_non_null(r);
    print_message("list without HGETALL: %s\n",
                  r->type == REDIS_REPLY_ERROR ? r->str : "(no error)");
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "HGETALL"));
    freeReplyObject(r);
    redisFree(c);
    r = redisCommand(rc, "ACL DELUSER nohget");
    freeReplyObject(r);
}

/* --- batches over several buckets --- */

/* One call, many buckets: each request goes to its host's bucket (the keys
 * of each bucket the batch meets, once, and the request's place among
 * them), the replies come in the requests' order, and the summary changes
 * of every bucket come after them. */
static void test_scripts_batch_spans_buckets(void **state)
{
    (void)state;
    enum { N = 24 };
    char ids[N][16];
    struct hr_request reqs[N];
    bool in[2][8] = {{false}};
    static const char *const regions[] = {"local", "eu-central"};
    layout(8);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "m-%d", i);
        reqs[i] = heartbeat(ids[i], "room-1", regions[i % 2], HR_STATUS_IDLE, 1);
        in[i % 2][bucket_of(ids[i])] = true;
    }
    int nb, want_nb = 0;
    redisReply *r = requests_any(reqs, NULL, N, TTL_MS, 0, &nb);
    for (uint32_t b = 0; b < 8; b++)
        want_nb += in[0][b] || in[1][b];
    assert_int_equal(nb, want_nb);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(r->element[i]->integer, R_APPLIED);
    freeReplyObject(r);
    for (int i = 0; i < N; i++) {
        struct sid s = sid(ids[i]);
        for (uint32_t b = 0; b < 8; b++)
            assert_int_equal(h_redis_int(rc, "HEXISTS %s %s", bkey(b, E_), ids[i]),
                             b == bucket_of(ids[i]));
        assert_int_equal(s.n, strlen(ids[i]));
        assert_true(idle_in(regions[i % 2], ids[i]));
    }
    for (int g = 0; g < 2; g++)
        for (uint32_t b = 0; b < 8; b++)
            if (listed(regions[g], b) != in[g][b])
                fail_msg("bucket %" PRIu32 " %s in the summary of %s", b,
                         in[g][b] ? "missing" : "wrongly", regions[g]);

    /* Mixed: local hosts busy, eu-central ones leave, one new idle host. */
    for (int i = 0; i < N; i++)
        reqs[i] = i % 2 ? leave(ids[i], 2) : status_update(ids[i], HR_STATUS_BUSY, 2);
    r = requests(reqs, NULL, N, TTL_MS, 0);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(r->element[i]->integer, R_APPLIED);
    freeReplyObject(r);
    assert_int_equal(run(beat("n-0", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(summary_size("eu-central"), 0);
    assert_int_equal(summary_size("local"), 1);
    assert_true(listed("local", bucket_of("n-0")));
    long long n[2 * HR_NSTATUSES];
    count(REGS("local", "eu-central"), n);
    assert_int_equal(n[slot(HR_STATUS_BUSY)], N / 2);
    assert_int_equal(n[slot(HR_STATUS_IDLE)], 1);
    assert_int_equal(n[HR_NSTATUSES + slot(HR_STATUS_IDLE)], 0);
    assert_int_equal(n[HR_NSTATUSES + slot(HR_STATUS_BUSY)], 0);
}

/* HostIds as layout 2 stores them: a UUID as its 16 bytes, a text id of 16
 * characters with a '~' after it (never one of those bytes), any other as
 * it is; every reply gives the text back. */
static void test_scripts_ids_stored_packed(void **state)
{
    (void)state;
    static const char *const uuid = "0f8e4a2c-3b1d-4c5e-9f6a-7b8c9d0e1f2a",
                             *text16 = "abcdefghijklmnop", *plain = "plain-host";
    struct hr_host_info hs[4], got;
    assert_int_equal(run(beat(uuid, HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat(text16, HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat(plain, HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(h_redis_int(rc, "HLEN %s", bkey(0, E_)), 3);
    struct sid u = sid(uuid);
    assert_int_equal(u.n, 16);
    redisReply *r = redisCommand(rc, "HEXISTS %s %b", bkey(0, E_), u.b, u.n);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    assert_int_equal(h_redis_int(rc, "HEXISTS %s %s~", bkey(0, E_), text16), 1);
    assert_int_equal(h_redis_int(rc, "HEXISTS %s %s", bkey(0, E_), text16), 0);
    assert_int_equal(h_redis_int(rc, "HEXISTS %s %s", bkey(0, E_), plain), 1);
    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local"), hs, 4), 3);
    assert_non_null(find_listed(hs, 3, uuid));
    assert_non_null(find_listed(hs, 3, text16));
    assert_non_null(find_listed(hs, 3, plain));
    assert_int_equal(claim(uuid, LEASE_MS, REGS("local"), &got), 1);
    assert_string_equal(got.host_id, uuid);
    assert_int_equal(claim(text16, LEASE_MS, REGS("local"), &got), 1);
    assert_string_equal(got.host_id, text16);
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 1);
    assert_string_equal(got.host_id, plain);
}

/* --- the region summaries --- */

/* A bucket script reports a change of a bucket's summary state for a region
 * when the bucket's idle hosts of that region go from none to some ('a') or
 * back ('d'), with the next epoch; nothing when they only grow or shrink.
 * Requests, claims, sweeps and expiry each report theirs. */
static void test_scripts_summary_follows_idle_hosts(void **state)
{
    (void)state;
    struct hr_host_info got;
    char a[32], b[32], c[32];
    layout(2);
    id_in(a, sizeof(a), "a", 1);
    id_in(b, sizeof(b), "b", 1);
    id_in(c, sizeof(c), "c", 1);
    /* A first idle host of the region: 'a', epoch 1. */
    assert_int_equal(run(beat(a, HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_string_equal(reported(), change_text('a', 1, 1, "local"));
    assert_true(listed("local", 1));
    assert_int_equal(summary_epoch("local", 1), 1);
    assert_int_equal(bucket_epoch(1, "local"), 1);
    /* A second, and a busy host: nothing. */
    assert_int_equal(run(beat(b, HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_string_equal(reported(), "");
    assert_int_equal(run(heartbeat(c, "room-1", "eu-central", HR_STATUS_BUSY, 1)), R_APPLIED);
    assert_string_equal(reported(), "");
    assert_int_equal(summary_size("eu-central"), 0);
    /* Claimed one after the other: 'd' when the last idle one goes. */
    assert_int_equal(claim(a, LEASE_MS, REGS("local"), &got), 1);
    assert_string_equal(reported(), "");
    assert_int_equal(claim(b, LEASE_MS, REGS("local"), &got), 1);
    assert_string_equal(reported(), change_text('d', 2, 1, "local"));
    assert_false(listed("local", 1));
    assert_int_equal(summary_epoch("local", 1), 2);
    /* Idle again by the host's own status updates: 'a'; its leave: 'd'. */
    assert_int_equal(run(status_update(a, HR_STATUS_BUSY, 2)), R_APPLIED);
    assert_string_equal(reported(), "");
    assert_int_equal(run(status_update(a, HR_STATUS_IDLE, 3)), R_APPLIED);
    assert_string_equal(reported(), change_text('a', 3, 1, "local"));
    assert_int_equal(run(leave(a, 4)), R_APPLIED);
    assert_string_equal(reported(), change_text('d', 4, 1, "local"));
    /* A lapsed claim the sweep returns: 'a'; a find takes it: 'd'. */
    set_score(b, C_, 1000);
    assert_int_equal(sweep(10), 1);
    assert_string_equal(reported(), change_text('a', 5, 1, "local"));
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 1);
    assert_string_equal(got.host_id, b);
    assert_string_equal(reported(), change_text('d', 6, 1, "local"));
    /* An idle host moving region: out of one summary, into the other. */
    assert_int_equal(run(status_update(b, HR_STATUS_BUSY, 2)), R_APPLIED);
    assert_int_equal(run(status_update(b, HR_STATUS_IDLE, 3)), R_APPLIED);
    assert_string_equal(reported(), change_text('a', 7, 1, "local"));
    assert_int_equal(run(heartbeat(b, "room-1", "us-east-1", HR_STATUS_IDLE, 2)), R_APPLIED);
    char want[256];
    snprintf(want, sizeof(want), "%s, %s", change_text('a', 1, 1, "us-east-1"),
             change_text('d', 8, 1, "local"));
    assert_string_equal(reported(), want);
    assert_false(listed("local", 1));
    assert_true(listed("us-east-1", 1));
    /* Expired: the sweep removes it, and reports 'd' (a heartbeat of
     * another host of the bucket does not look for what expired). */
    set_expiry(b, 1000);
    assert_int_equal(run(heartbeat(c, "room-1", "eu-central", HR_STATUS_BUSY, 2)), R_APPLIED);
    assert_string_equal(reported(), "");
    assert_int_equal(sweep(10), 0);
    assert_string_equal(reported(), change_text('d', 2, 1, "us-east-1"));
    assert_int_equal(summary_size("us-east-1"), 0);
    /* Bucket 0 never had an idle host: no epoch anywhere. */
    assert_int_equal(bucket_epoch(0, "local"), -1);
    assert_int_equal(summary_epoch("local", 0), -1);
}

/* The sweep's bound is for the whole call, all its buckets together: after
 * a mass expiry one call must not hold Redis for every bucket's backlog. */
static void test_scripts_sweep_bound_per_call(void **state)
{
    (void)state;
    layout(4);
    char ids[4][5][32];
    for (uint32_t b = 0; b < 4; b++)
        for (int i = 0; i < 5; i++) {
            char stem[16];
            snprintf(stem, sizeof(stem), "sb%u-%d", b, i);
            id_in(ids[b][i], sizeof(ids[b][i]), stem, b);
            assert_int_equal(run(beat(ids[b][i], HR_STATUS_IDLE, 1)), R_APPLIED);
        }
    for (uint32_t b = 0; b < 4; b++) /* all expired (a heartbeat would trim its bucket) */
        for (int i = 0; i < 5; i++)
            set_expiry(ids[b][i], 1000);
    long long left = 0;
    assert_int_equal(sweep(6), 0);
    for (uint32_t b = 0; b < 4; b++)
        left += h_redis_int(rc, "HLEN %s", bkey(b, HR_SCRIPT_BKEY_ENTRIES));
    assert_int_equal(left, 20 - 6);
    for (int i = 0; i < 3; i++)
        sweep(6);
    left = 0;
    for (uint32_t b = 0; b < 4; b++)
        left += h_redis_int(rc, "HLEN %s", bkey(b, HR_SCRIPT_BKEY_ENTRIES));
    assert_int_equal(left, 0);
}

/* A key of the wrong type at one bucket's summary state (its m) keeps back
 * that bucket's changes only: in the same batch another bucket's change is
 * reported and applied; a claim in the broken bucket still answers the host
 * it took; the sweep still answers its count and the other buckets' state. */
static void test_scripts_summary_bad_bucket_isolated(void **state)
{
    (void)state;
    struct hr_host_info got;
    char a[32], b[32];
    layout(4);
    id_in(a, sizeof(a), "a", 1);
    id_in(b, sizeof(b), "b", 2);
    redisReply *r = redisCommand(rc, "SET %s not-a-hash", bkey(1, HR_SCRIPT_BKEY_REGIONS));
    freeReplyObject(r);
    struct hr_request two[2] = {beat(a, HR_STATUS_IDLE, 1), beat(b, HR_STATUS_IDLE, 1)};
    bool refresh[2] = {false, false};
    freeReplyObject(requests(two, refresh, 2, TTL_MS, 0));
    assert_string_equal(reported(), change_text('a', 1, 2, "local"));
    assert_true(listed("local", 2));
    assert_int_equal(claim(a, LEASE_MS, REGS("local"), &got), 1);
    assert_string_equal(got.host_id, a);
    set_score(a, C_, 1000); /* its lease long over: the sweep returns it */
    assert_int_equal(sweep(10), 1);
    r = redisCommand(rc, "DEL %s", bkey(1, HR_SCRIPT_BKEY_REGIONS));
    freeReplyObject(r);
}

/* summary.lua applies a change only when its epoch is newer (as a number)
 * than the bucket's last one; an older one changes nothing, so changes
 * that arrive late or out of order never undo newer ones. A change at the
 * epoch it has (the sweep's report of a state) applies its state again. */
static void test_scripts_summary_ignores_older_epoch(void **state)
{
    (void)state;
    struct hr_summary_change ch[3];
    struct hr_host_info got;
    layout(8);
    ch[0] = change('a', "3", 5, "local");
    assert_int_equal(summary_apply(ch, 1), 1);
    assert_true(listed("local", 5));
    assert_int_equal(summary_epoch("local", 5), 3);
    ch[0] = change('d', "2", 5, "local");
    assert_int_equal(summary_apply(ch, 1), 0);
    assert_true(listed("local", 5));
    assert_int_equal(summary_epoch("local", 5), 3);
    ch[0] = change('d', "4", 5, "local");
    assert_int_equal(summary_apply(ch, 1), 1);
    assert_false(listed("local", 5));
    ch[0] = change('a', "3", 5, "local");
    assert_int_equal(summary_apply(ch, 1), 0);
    assert_false(listed("local", 5));
    /* By number: 10 is newer than 9 (as text it sorts first). */
    ch[0] = change('a', "9", 5, "local");
    ch[1] = change('d', "10", 5, "local");
    assert_int_equal(summary_apply(ch, 2), 2);
    assert_false(listed("local", 5));
    assert_int_equal(summary_epoch("local", 5), 10);
    /* Several in one call, out of order, and each bucket on its own. */
    ch[0] = change('a', "13", 5, "local");
    ch[1] = change('d', "12", 5, "local");
    ch[2] = change('a', "1", 6, "local");
    assert_int_equal(summary_apply(ch, 3), 2);
    assert_true(listed("local", 5));
    assert_true(listed("local", 6));
    assert_int_equal(summary_epoch("local", 5), 13);
    /* The same state again heals a set that lost it. */
    h_redis_int(rc, "SREM %s 5", skey("local", HR_SCRIPT_KEY_SUMMARY_SET));
    ch[0] = change('a', "13", 5, "local");
    assert_int_equal(summary_apply(ch, 1), 0);
    assert_true(listed("local", 5));
    /* Regions apart: the same bucket in another region is another epoch. */
    assert_int_equal(summary_epoch("eu-central", 5), -1);
    assert_false(listed("eu-central", 5));

    /* The scripts' own changes, applied in the wrong order. */
    layout(1);
    hold_changes = true;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(nchanges, 1);
    ch[0] = changes[0];
    assert_int_equal(claim("h", LEASE_MS, REGS("local"), &got), 1);
    assert_int_equal(nchanges, 1);
    ch[1] = changes[0];
    hold_changes = false;
    assert_int_equal(ch[0].op, 'a');
    assert_int_equal(ch[1].op, 'd');
    assert_int_equal(summary_apply(&ch[1], 1), 1);
    assert_int_equal(summary_apply(&ch[0], 1), 0);
    assert_false(listed("local", 0));
    assert_int_equal(run(beat("h2", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_true(listed("local", 0));
}

/* A sweep with `state` reports every region's summary state of every
 * bucket at its epoch, which puts back a change lost on the way (the
 * process that had to apply it died); without, it reports changes only. */
static void test_scripts_summary_sweep_reports_state(void **state)
{
    (void)state;
    struct hr_host_info got;
    char a[32], b[32];
    layout(2);
    id_in(a, sizeof(a), "a", 0);
    id_in(b, sizeof(b), "b", 1);
    assert_int_equal(run(beat(a, HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat(b, HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim(b, LEASE_MS, REGS("local"), &got), 1);
    assert_true(listed("local", 0));
    assert_false(listed("local", 1));
    /* Lost: bucket 0's 'a' and bucket 1's 'd'. */
    h_redis_int(rc, "SREM %s 0", skey("local", HR_SCRIPT_KEY_SUMMARY_SET));
    h_redis_int(rc, "SADD %s 1", skey("local", HR_SCRIPT_KEY_SUMMARY_SET));
    assert_int_equal(sweep(10), 0);
    assert_string_equal(reported(), "");
    assert_false(listed("local", 0));
    assert_int_equal(sweep_with(10, true), 0);
    char want[256];
    snprintf(want, sizeof(want), "%s, %s", change_text('a', 1, 0, "local"),
             change_text('d', 2, 1, "local"));
    assert_string_equal(reported(), want);
    assert_true(listed("local", 0));
    assert_false(listed("local", 1));
    /* Regions a bucket never had an idle host of are not reported. */
    assert_int_equal(summary_size("eu-central"), 0);
    assert_int_equal(h_redis_int(rc, "EXISTS %s", skey("eu-central", HR_SCRIPT_KEY_SUMMARY_EPOCHS)),
                     0);
}

static int setup(void **state)
{
    (void)state;
    char err[128];
    hr_rules_default(&rules);
    if (hr_rules_set_regions(&rules, REGIONS, "local", err, sizeof(err)) != HR_OK)
        return -1;
    if (h_redis_start(&redis, 0, NULL) != 0)
        return -1;
    rc = h_redis_connect(redis.port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    redisFree(rc);
    h_redis_stop(&redis, false, true);
    return 0;
}

/* A heartbeat of a host with `cap` slots, `avail` of them free. */
static struct hr_request slotted(const char *id, uint32_t cap, uint32_t avail, uint64_t seq)
{
    struct hr_request r = {.type = HR_MSG_HEARTBEAT,
                           .seq = seq,
                           .capacity = cap,
                           .available_slots = avail,
                           .slots_given = true};
    snprintf(r.host_id, sizeof(r.host_id), "%s", id);
    snprintf(r.room_id, sizeof(r.room_id), "room-1");
    snprintf(r.region, sizeof(r.region), "local");
    return checked(r);
}

/* A host's slots as stored: "<capacity> <free> <reported>", "" when none. */
static const char *slots_of(const char *id)
{
    char *b = scratch();
    const char *v = hget(id, E_);
    struct hr_layout_entry e;
    b[0] = '\0';
    if (*v) {
        assert_int_equal(hr_layout_entry_parse(v, strlen(v), &e), 0);
        snprintf(b, 512, "%" PRIu32 " %" PRIu32 " %" PRIu32, e.capacity, e.free, e.reported);
    }
    return b;
}

/* A host of capacity 4 serves exactly 4 finds: each takes a slot, the host
 * stays findable (idle, in the index) while one is free, the 4th makes it
 * busy and the 5th find gets nothing. A list shows the free slots. */
static void test_scripts_slots_each_find_takes_one(void **state)
{
    (void)state;
    struct hr_host_info got, hs[2];
    assert_int_equal(run(slotted("multi", 4, 4, 1)), R_APPLIED);
    assert_string_equal(slots_of("multi"), "4 4 4");
    for (uint32_t i = 1; i <= 4; i++) {
        assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 1);
        assert_string_equal(got.host_id, "multi");
        char want[32];
        snprintf(want, sizeof(want), "4 %" PRIu32 " 4", 4 - i);
        assert_string_equal(slots_of("multi"), want);
        assert_int_equal(idle_in("local", "multi"), i < 4);
        assert_string_equal(field("multi", "status"), i < 4 ? "idle" : "busy");
        assert_true(lease("multi") > 0);
    }
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 0);
    assert_false(listed("local", 0));
    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local"), hs, 2), 1);
    assert_int_equal(hs[0].capacity, 4);
    assert_int_equal(hs[0].available_slots, 0);
    assert_true(hs[0].claimed);
}

/* A host that reports no free slot is never matched, idle or not, by a
 * find or by its hostId; its report of a free slot makes it findable. A
 * host of one slot that is busy or allocated is never matched either,
 * whatever its slots say. */
static void test_scripts_slots_none_free_never_matched(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(slotted("full", 2, 0, 1)), R_APPLIED);
    assert_string_equal(field("full", "status"), "idle");
    assert_false(idle_in("local", "full"));
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 0);
    assert_int_equal(claim("full", LEASE_MS, REGS("local"), &got), 0);
    assert_int_equal(run(heartbeat("alloc", "room-1", "local", HR_STATUS_ALLOCATED, 1)), R_APPLIED);
    assert_int_equal(run(slotted("alloc", 3, 3, 2)), R_APPLIED);
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 0);
    assert_int_equal(claim("alloc", LEASE_MS, REGS("local"), &got), 0);
    assert_int_equal(run(slotted("full", 2, 1, 2)), R_APPLIED);
    assert_true(idle_in("local", "full"));
    assert_true(listed("local", 0));
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 1);
    assert_string_equal(got.host_id, "full");
    assert_false(idle_in("local", "full"));
}

/* Within the claim's lease a heartbeat never gives back the slot a find
 * took (the host may not have seen that client yet), though it may take
 * more away; a late heartbeat (older seq) changes nothing. When the lease
 * runs out unconfirmed, the host's last report stands again. */
static void test_scripts_slots_heartbeat_within_lease(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(slotted("h", 2, 2, 1)), R_APPLIED);
    assert_int_equal(claim(NULL, 300, REGS("local"), &got), 1);
    assert_string_equal(slots_of("h"), "2 1 2");
    assert_int_equal(run(slotted("h", 2, 2, 3)), R_APPLIED);
    assert_string_equal(slots_of("h"), "2 1 2"); /* not given back */
    assert_int_equal(run(slotted("h", 2, 0, 2)), R_DUPLICATE);
    assert_string_equal(slots_of("h"), "2 1 2"); /* a late one: nothing */
    assert_int_equal(claim(NULL, 300, REGS("local"), &got), 1);
    assert_string_equal(slots_of("h"), "2 0 2");
    assert_string_equal(field("h", "status"), "busy");
    long long ends = lease("h");
    /* Lowered within the lease: taken at once. */
    assert_int_equal(run(slotted("h", 2, 1, 4)), R_APPLIED);
    assert_string_equal(slots_of("h"), "2 0 1");
    await_redis_time(ends);
    assert_int_equal(sweep(10), 1);
    assert_string_equal(slots_of("h"), "2 1 1");
    assert_string_equal(field("h", "status"), "idle");
    assert_true(idle_in("local", "h"));
    assert_int_equal(lease("h"), -1);
    /* With no lease running, the report stands as it is. */
    assert_int_equal(run(slotted("h", 2, 2, 5)), R_APPLIED);
    assert_string_equal(slots_of("h"), "2 2 2");
}

/* A host's `busy` confirms its claims: the lease ends, the host is busy
 * (never matched) and its free slots are its own report again; its `idle`
 * then makes it findable with them. A release of the latest claim ends the
 * lease as its running out would. */
static void test_scripts_slots_confirm_and_release(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(slotted("h", 3, 3, 1)), R_APPLIED);
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 1);
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 1);
    assert_string_equal(slots_of("h"), "3 1 3");
    assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 2)), R_APPLIED);
    assert_int_equal(lease("h"), -1);
    assert_string_equal(field("h", "status"), "busy");
    assert_string_equal(slots_of("h"), "3 3 3");
    assert_false(idle_in("local", "h"));
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 0);
    assert_int_equal(run(slotted("h", 3, 1, 3)), R_APPLIED); /* two sessions run */
    assert_int_equal(run(status_update("h", HR_STATUS_IDLE, 4)), R_APPLIED);
    assert_true(idle_in("local", "h"));
    assert_string_equal(slots_of("h"), "3 1 1");

    /* A claim with an id, released (its answer never reached the client). */
    struct hr_claim_query q = {
        .regions = {"local"}, .nregions = 1, .lease_ms = LEASE_MS, .claim_id = "c0ffee"};
    struct hr_script_args a = {0};
    hr_script_claim_args(&a, &L, bucket_of("h"), &q);
    redisReply *r = eval(HR_SCRIPT_CLAIM, &a);
    hr_script_args_free(&a);
    assert_int_equal(hr_script_claimed(r, &got), 1);
    freeReplyObject(r);
    assert_string_equal(slots_of("h"), "3 0 1");
    assert_string_equal(field("h", "status"), "busy");
    hr_script_release_args(&a, &L, bucket_of("h"), "c0ffee", LEASE_MS);
    r = eval(HR_SCRIPT_RELEASE, &a);
    hr_script_args_free(&a);
    assert_true(r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1);
    assert_int_equal(r->element[0]->integer, 1);
    freeReplyObject(r);
    assert_string_equal(slots_of("h"), "3 1 1");
    assert_string_equal(field("h", "status"), "idle");
    assert_true(idle_in("local", "h"));
    assert_int_equal(lease("h"), -1);
}

/* Hosts of one free slot (most) keep the short entry of before: no slots
 * field at all. */
static void test_scripts_slots_default_entry_unchanged(void **state)
{
    (void)state;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_string_equal(entry("h"), entry_text(1, 1, HR_STATUS_IDLE, "local", "room-1"));
    assert_int_equal(run(slotted("h", 1, 1, 2)), R_APPLIED);
    assert_string_equal(entry("h"), entry_text(2, 1, HR_STATUS_IDLE, "local", "room-1"));
    assert_int_equal(run(slotted("h", 1, 0, 3)), R_APPLIED);
    assert_string_equal(entry("h"), "3 1 i1.0.0 local room-1");
}

/* regions.lua with `max` and `stale_ms`, for the names given (NULL-ended):
 * the flags as "1 0 ...", then " |" and the regions known, sorted. */
static const char *regions_call(uint32_t max, uint32_t stale_ms, const char *const *names)
{
    struct hr_script_args a = {0};
    hr_script_regions_args(&a, PREFIX, max, stale_ms);
    size_t n = 0;
    for (; names[n]; n++)
        hr_script_args_str(&a, names[n]);
    redisReply *r = eval(HR_SCRIPT_REGIONS, &a);
    hr_script_args_free(&a);
    assert_true(r && r->type == REDIS_REPLY_ARRAY && r->elements >= n);
    char *b = scratch();
    const char *known[16];
    size_t o = 0, k = 0;
    b[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r->element[i]->type, REDIS_REPLY_INTEGER);
        o += (size_t)snprintf(b + o, 512 - o, "%s%lld", i ? " " : "", r->element[i]->integer);
    }
    for (size_t i = n; i < r->elements && k < 16; i++)
        known[k++] = r->element[i]->str;
    qsort(known, k, sizeof(known[0]), cmp_str);
    o += (size_t)snprintf(b + o, 512 - o, " |");
    for (size_t i = 0; i < k; i++)
        o += (size_t)snprintf(b + o, 512 - o, " %s", known[i]);
    freeReplyObject(r);
    return b;
}

/* Any-region mode's registry of regions: new ones are admitted up to the
 * cap, known ones always (and marked seen), one more refused; a region
 * nobody named for `stale` makes room, one named since does not. */
static void test_scripts_regions_capped(void **state)
{
    (void)state;
    assert_string_equal(regions_call(2, 60000, (const char *const[]){"a", "b", NULL}), "1 1 | a b");
    assert_string_equal(regions_call(2, 60000, (const char *const[]){"c", "a", NULL}), "0 1 | a b");
    assert_string_equal(regions_call(2, 60000, (const char *const[]){NULL}), " | a b");
    /* With a short staleness: "b" is marked seen now, "a" ages out. */
    long long t0 = redis_now_ms();
    await_redis_time(t0 + 30);
    assert_string_equal(regions_call(2, 60000, (const char *const[]){"b", NULL}), "1 | a b");
    assert_string_equal(regions_call(2, 20, (const char *const[]){"c", NULL}), "1 | b c");
}

#define T(f) cmocka_unit_test_setup(f, fresh)

int main(int argc, char **argv)
{
    /* One test, or those matching a pattern ('*' and '?'): test_scripts 'test_scripts_claim*' */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        T(test_scripts_results_every_code),
        T(test_scripts_results_batch_in_order),
        T(test_scripts_replies_list_claim_count_sweep),
        T(test_scripts_lua_check_flags_literals),
        T(test_scripts_lua_takes_numbers_from_tables),
        T(test_scripts_heartbeat_creates_entry),
        T(test_scripts_heartbeat_keeps_status),
        T(test_scripts_heartbeat_refreshes),
        T(test_scripts_heartbeat_moves_region),
        T(test_scripts_heartbeat_seq_order),
        T(test_scripts_heartbeat_unordered),
        T(test_scripts_status_unknown_host),
        T(test_scripts_status_moves_index),
        T(test_scripts_status_keeps_ttl),
        T(test_scripts_status_seq_order),
        T(test_scripts_status_settles_claim),
        T(test_scripts_claim_uniform),
        T(test_scripts_leave_deletes),
        T(test_scripts_leave_compares_both_seqs),
        T(test_scripts_leave_tombstone_blocks_late_heartbeat),
        T(test_scripts_leave_absent_writes_nothing),
        T(test_scripts_leave_never_lowers_tombstone),
        T(test_scripts_leave_reads_padded_tombstone),
        T(test_scripts_max_hosts_counts_live_only),
        T(test_scripts_max_hosts_per_bucket),
        T(test_scripts_claim_takes_idle_only),
        T(test_scripts_claim_regions_in_order),
        T(test_scripts_claim_specific_host),
        T(test_scripts_claim_never_twice),
        T(test_scripts_claim_marks_busy_with_lease),
        T(test_scripts_sweep_returns_lapsed_claims),
        T(test_scripts_sweep_checks_the_entry_lease),
        T(test_scripts_lost_claim_record_freed_by_heartbeat),
        T(test_scripts_release_undoes_a_claim),
        T(test_scripts_wrong_type_fails_its_request_only),
        T(test_scripts_wrong_type_claim_other_regions),
        T(test_scripts_index_expired_member_unseen),
        T(test_scripts_list_matches_entry),
        T(test_scripts_list_status_and_limit),
        T(test_scripts_failed_read_is_an_error),
        T(test_scripts_batch_spans_buckets),
        T(test_scripts_ids_stored_packed),
        T(test_scripts_summary_follows_idle_hosts),
        T(test_scripts_summary_ignores_older_epoch),
        T(test_scripts_summary_bad_bucket_isolated),
        T(test_scripts_sweep_bound_per_call),
        T(test_scripts_summary_sweep_reports_state),
        T(test_scripts_slots_each_find_takes_one),
        T(test_scripts_slots_none_free_never_matched),
        T(test_scripts_slots_heartbeat_within_lease),
        T(test_scripts_slots_confirm_and_release),
        T(test_scripts_slots_default_entry_unchanged),
        T(test_scripts_regions_capped),
    };
    return cmocka_run_group_tests_name("scripts", tests, setup, teardown);
}
