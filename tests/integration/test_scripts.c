/* The Lua scripts (lib/store/lua/) run directly through EVAL against a real
 * redis-server, called only through the argument builders and reply readers
 * of lib/script.h, as the store calls them.
 *
 * A. The interface: every result code of HR_SCRIPT_RESULTS produced by the
 *    real script and read back by hr_script_result; the reply layouts of
 *    list, claim, count and sweep; and no position, result or name written
 *    into a script by hand (a static check of the .lua files in lib/store/lua/).
 * B. The rules, where they live: heartbeats, status updates, leaves and
 *    their sequence numbers and tombstones, the host cap, claims, lists.
 *
 * Every test starts from an empty Redis (FLUSHALL); every key a script
 * writes is under PREFIX. Waits for something time-based (an entry's TTL, a
 * lease) poll Redis with a deadline and use TTLs of a few ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "harness.h"
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

#define PREFIX "sc:" /* not the default hr:, so a key name written by hand shows */
#define REGIONS "local,eu-central,us-east-1"
#define TTL_MS 60000u   /* long enough that nothing expires unless a test wants it */
#define LEASE_MS 60000u /* the same for claims */
#define SHORT_MS 3u     /* a TTL or lease a test waits out */
#define WAIT_MS 2000    /* the longest a poll waits for one of those */
/* Two readings of one expiry (the script's clock, then TIME + PTTL here, or a
 * PTTL some calls later) differ by the time the calls between take. */
#define SLACK_MS 50

/* NULL-terminated region lists. */
#define REGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* The tables of script.h, by name, for this test. */
enum {
#define RES_(name, code, result, reason) R_##name = code,
    HR_SCRIPT_RESULTS(RES_)
#undef RES_
};
#define KEY_ENUM_(name, text) K_##name,
#define KEY_NAME_(name, text) text,
enum { HR_SCRIPT_KEYS(KEY_ENUM_) NKEYS };
static const char *const key_names[NKEYS] = {HR_SCRIPT_KEYS(KEY_NAME_)};
#undef KEY_ENUM_
#undef KEY_NAME_

/* --- Redis and key helpers --- */

/* One of a few rotating buffers: what it holds is valid for the next 15
 * calls, enough for the arguments of one assertion. */
static char *scratch(void)
{
    static char bufs[16][512];
    static unsigned n;
    return bufs[n++ % 16];
}

static const char *hkey(const char *id)
{
    char *b = scratch();
    snprintf(b, 512, "%s%s%s", PREFIX, key_names[K_HOST], id);
    return b;
}

static const char *tkey(const char *id)
{
    char *b = scratch();
    snprintf(b, 512, "%s%s%s", PREFIX, key_names[K_TOMB], id);
    return b;
}

static const char *ikey(const char *region, enum hr_status status)
{
    char *b = scratch();
    snprintf(b, 512, "%s%s%s:%s", PREFIX, key_names[K_INDEX], region, hr_status_name(status));
    return b;
}

static const char *claims_key(void)
{
    char *b = scratch();
    snprintf(b, 512, "%s%s", PREFIX, key_names[K_CLAIMS]);
    return b;
}

static void flush(void)
{
    redisReply *r = redisCommand(rc, "FLUSHALL");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

static int fresh(void **state)
{
    (void)state;
    flush();
    return 0;
}

/* A string value, or "" when the key is not there. */
static const char *get(const char *key)
{
    char *b = scratch();
    redisReply *r = redisCommand(rc, "GET %s", key);
    assert_non_null(r);
    assert_true(r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL);
    snprintf(b, 512, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return b;
}

/* A host's entry string (entry.lua), "" when it has none. */
static const char *entry(const char *id)
{
    return get(hkey(id));
}

/* A field of a host's entry ("hseq", "sseq", "status", "region", "room",
 * "lease"), "" when not there. */
static const char *field(const char *id, const char *name)
{
    char *b = scratch();
    snprintf(b, 512, "%s", h_entry_field(rc, hkey(id), name));
    return b;
}

static bool exists(const char *key)
{
    return h_redis_int(rc, "EXISTS %s", key) == 1;
}

static long long pttl(const char *key)
{
    return h_redis_int(rc, "PTTL %s", key);
}

/* Redis's clock, in ms: the one the scripts read. */
static long long redis_now_ms(void)
{
    redisReply *r = redisCommand(rc, "TIME");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    long long ms =
        strtoll(r->element[0]->str, NULL, 10) * 1000 + strtoll(r->element[1]->str, NULL, 10) / 1000;
    freeReplyObject(r);
    return ms;
}

/* When the key expires, in ms on Redis's clock (what an index scores). */
static long long expiry_of(const char *key)
{
    long long left = pttl(key);
    assert_true(left > 0);
    return redis_now_ms() + left;
}

static void assert_near(long long got, long long want, long long slack)
{
    if (got < want - slack || got > want + slack)
        fail_msg("%lld is not within %lld of %lld", got, slack, want);
}

/* Polls until the key is gone (its TTL ran out), WAIT_MS at most. */
static void await_gone(const char *key)
{
    uint64_t deadline = h_now_ms() + WAIT_MS;
    while (exists(key))
        if (h_now_ms() > deadline)
            fail_msg("%s still there after %d ms", key, WAIT_MS);
}

/* Polls until Redis's clock is past `ms`, WAIT_MS at most. */
static void await_redis_time(long long ms)
{
    uint64_t deadline = h_now_ms() + WAIT_MS;
    while (redis_now_ms() <= ms)
        if (h_now_ms() > deadline)
            fail_msg("Redis's clock did not pass %lld within %d ms", ms, WAIT_MS);
}

/* Every key in Redis is under PREFIX; returns how many there are. */
static size_t keys_under_prefix(void)
{
    redisReply *r = redisCommand(rc, "KEYS *");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < r->elements; i++)
        if (strncmp(r->element[i]->str, PREFIX, strlen(PREFIX)) != 0)
            fail_msg("key %s is not under the prefix %s", r->element[i]->str, PREFIX);
    size_t n = r->elements;
    freeReplyObject(r);
    return n;
}

/* --- the scripts, through lib/script.h --- */

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
 * heartbeat; NULL: none is). The reply, checked to be n integers. */
static redisReply *requests(const struct hr_request *reqs, const bool *refresh, size_t n,
                            uint32_t ttl_ms, uint32_t max_hosts)
{
    struct hr_script_args a = {0};
    hr_script_requests_header(&a, PREFIX, ttl_ms, max_hosts, REGIONS);
    for (size_t i = 0; i < n; i++)
        hr_script_requests_add(&a, &reqs[i], refresh && refresh[i]);
    redisReply *r = eval(HR_SCRIPT_REQUESTS, &a);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(r->element[i]->type, REDIS_REPLY_INTEGER);
    return r;
}

static redisReply *call1(struct hr_request req, uint32_t ttl_ms, uint32_t max_hosts,
                         bool refresh_only)
{
    return requests(&req, &refresh_only, 1, ttl_ms, max_hosts);
}

/* One request: its result code. */
static long long run_with(struct hr_request req, uint32_t ttl_ms, uint32_t max_hosts,
                          bool refresh_only)
{
    redisReply *r = call1(req, ttl_ms, max_hosts, refresh_only);
    long long code = r->element[0]->integer;
    freeReplyObject(r);
    return code;
}

/* One request with the default TTL and no cap. */
static long long run(struct hr_request req)
{
    return run_with(req, TTL_MS, 0, false);
}

/* A claim: 1 with *h filled, 0 when no host fitted. */
static int claim(const char *host, uint32_t lease_ms, const char *const *regions,
                 struct hr_host_info *h)
{
    struct hr_claim_query q = {.host_id = host, .lease_ms = lease_ms};
    for (; regions[q.nregions]; q.nregions++)
        q.regions[q.nregions] = regions[q.nregions];
    struct hr_script_args a = {0};
    hr_script_claim_args(&a, PREFIX, &q);
    redisReply *r = eval(HR_SCRIPT_CLAIM, &a);
    int got = hr_script_claimed(r, h);
    freeReplyObject(r);
    assert_int_not_equal(got, -1);
    return got;
}

/* A list: up to `cap` hosts into out, how many. */
static size_t list(enum hr_status status, uint32_t limit, const char *const *regions,
                   struct hr_host_info *out, size_t cap)
{
    struct hr_list_query q = {.status = status, .limit = limit};
    for (; regions[q.nregions]; q.nregions++)
        q.regions[q.nregions] = regions[q.nregions];
    struct hr_script_args a = {0};
    hr_script_list_args(&a, PREFIX, &q);
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

/* A count: HR_NSTATUSES integers per region into out. */
static void count(const char *const *regions, long long *out)
{
    size_t n = 0;
    while (regions[n])
        n++;
    struct hr_script_args a = {0};
    hr_script_count_args(&a, PREFIX, regions, n);
    redisReply *r = eval(HR_SCRIPT_COUNT, &a);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, n * HR_NSTATUSES);
    for (size_t i = 0; i < r->elements; i++) {
        assert_int_equal(r->element[i]->type, REDIS_REPLY_INTEGER);
        out[i] = r->element[i]->integer;
    }
    freeReplyObject(r);
}

/* A sweep: how many hosts it returned to idle. */
static long long sweep(uint32_t max)
{
    struct hr_script_args a = {0};
    hr_script_sweep_args(&a, PREFIX, max);
    redisReply *r = eval(HR_SCRIPT_SWEEP, &a);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
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

/* The entry string the scripts write: "<hseq> <sseq> <status> <region> <room>". */
static const char *entry_text(uint64_t hseq, uint64_t sseq, enum hr_status status,
                              const char *region, const char *room)
{
    char *b = scratch();
    snprintf(b, 512, "%" PRIu64 " %" PRIu64 " %s %s %s", hseq, sseq, hr_status_name(status), region,
             room);
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
    assert_false(exists(hkey("c")));
    assert_false(exists(hkey("d")));
    assert_false(exists(hkey("a")));
}

/* --- A2. reply layouts --- */

static void test_scripts_replies_list_claim_count_sweep(void **state)
{
    (void)state;
    struct hr_host_info hs[4], got;
    long long n[2 * HR_NSTATUSES];
    const size_t idle = slot(HR_STATUS_IDLE), busy = slot(HR_STATUS_BUSY);
    /* The host under test in the second region counted, two busy ones in
     * the first: counts of 0, 2, 1, 0, which regions or statuses in another
     * order would not give. */
    assert_int_equal(run(heartbeat("host-1", "room-9", "eu-central", HR_STATUS_IDLE, 1)),
                     R_APPLIED);
    assert_int_equal(run(heartbeat("other", "room-2", "local", HR_STATUS_BUSY, 1)), R_APPLIED);
    assert_int_equal(run(heartbeat("other-2", "room-2", "local", HR_STATUS_BUSY, 1)), R_APPLIED);

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

    /* A lease of a few ms: the sweep below waits it out. */
    assert_int_equal(claim(NULL, SHORT_MS, REGS("eu-central"), &got), 1);
    assert_string_equal(got.host_id, "host-1");
    assert_string_equal(got.room_id, "room-9");
    assert_string_equal(got.region, "eu-central");
    /* Nothing left to claim: the empty reply. */
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

    await_swept();
    assert_int_equal(sweep(10), 0);
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
#define OP_TEXT_(name, text) {text, "an op of HR_SCRIPT_OPS (OP_" #name ")"},
static const struct {
    const char *text, *what;
} table_texts[] = {HR_STATUSES(STATUS_TEXT_) HR_SCRIPT_KEYS(KEY_TEXT_) HR_SCRIPT_OPS(OP_TEXT_)};
#undef STATUS_TEXT_
#undef KEY_TEXT_
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
        {"redis.call('DEL', pfx .. 'h:' .. id)", true},
        {"local t = pfx .. 't:' .. id", true},
        {"local i = pfx .. 'i:' .. r", true},
        {"local k = pfx .. 'claims'", true},
        {"if op == 'l' then", true},
        {"if op == \"s\" then", true},
        {"local x = 'r'", true},
        {"local k = pfx .. KEY_HOST .. id", false},
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
        fail_msg("Lua that should take its numbers and names from lib/script.h:%s", report);
}

/* ===================== B. the rules ===================== */

/* --- heartbeats --- */

/* A new host's entry: the given status, both seqs from the heartbeat, the
 * TTL, and a member of its region's index for that status scored by the
 * entry's expiry; nothing outside the prefix. */
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
        enum hr_status other = st == HR_STATUS_IDLE ? HR_STATUS_BUSY : HR_STATUS_IDLE;
        assert_int_equal(run(heartbeat("host-1", "room-1", "eu-central", st, cases[i].seq)),
                         R_APPLIED);
        assert_string_equal(entry("host-1"),
                            entry_text(cases[i].seq, cases[i].seq, st, "eu-central", "room-1"));
        long long left = pttl(hkey("host-1"));
        assert_true(left > (long long)TTL_MS - 1000 && left <= (long long)TTL_MS);
        assert_near(h_zscore(rc, ikey("eu-central", st), "host-1"), expiry_of(hkey("host-1")),
                    SLACK_MS);
        assert_int_equal(h_zscore(rc, ikey("eu-central", other), "host-1"), -1);
        assert_int_equal(keys_under_prefix(), 2);
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
        assert_near(h_zscore(rc, ikey("local", cases[i].created), "h"), expiry_of(hkey("h")),
                    SLACK_MS);
        assert_int_equal(h_zscore(rc, ikey("local", cases[i].later), "h"), -1);
    }
}

/* A heartbeat of a known host refreshes its TTL and its index score, and
 * takes its room. */
static void test_scripts_heartbeat_refreshes(void **state)
{
    (void)state;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(h_redis_int(rc, "PEXPIRE %s 5000", hkey("h")), 1);
    assert_int_equal(run(heartbeat("h", "room-2", "local", HR_STATUS_IDLE, 2)), R_APPLIED);
    assert_true(pttl(hkey("h")) > (long long)TTL_MS - 1000);
    assert_near(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h"), expiry_of(hkey("h")), SLACK_MS);
    assert_string_equal(entry("h"), entry_text(2, 1, HR_STATUS_IDLE, "local", "room-2"));
}

/* A heartbeat from another region moves the host's index member there. */
static void test_scripts_heartbeat_moves_region(void **state)
{
    (void)state;
    const enum hr_status statuses[] = {HR_STATUS_IDLE, HR_STATUS_BUSY};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        flush();
        enum hr_status st = statuses[i];
        assert_int_equal(run(heartbeat("h", "room-1", "local", st, 1)), R_APPLIED);
        assert_int_equal(run(heartbeat("h", "room-1", "us-east-1", st, 2)), R_APPLIED);
        assert_int_equal(h_zscore(rc, ikey("local", st), "h"), -1);
        assert_near(h_zscore(rc, ikey("us-east-1", st), "h"), expiry_of(hkey("h")), SLACK_MS);
        assert_string_equal(field("h", "region"), "us-east-1");
        assert_string_equal(field("h", "status"), hr_status_name(st));
    }
}

/* Heartbeats are ordered by seq, compared exactly on 64 bits: one not newer
 * than the last applied changes nothing (not the entry, its TTL, or its
 * index score). */
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
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        flush();
        char before[512];
        assert_int_equal(run(heartbeat("h", "room-a", "local", HR_STATUS_IDLE, cases[i].stored)),
                         R_APPLIED);
        /* A shorter TTL, so a refresh would show. */
        assert_int_equal(h_redis_int(rc, "PEXPIRE %s 5000", hkey("h")), 1);
        snprintf(before, sizeof(before), "%s", entry("h"));
        long long score = h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h");
        long long got =
            run(heartbeat("h", "room-b", "us-east-1", HR_STATUS_IDLE, cases[i].incoming));
        if (got != cases[i].want)
            fail_msg("stored %" PRIu64 ", incoming %" PRIu64 ": %lld, want %lld", cases[i].stored,
                     cases[i].incoming, got, cases[i].want);
        if (got == R_DUPLICATE) {
            assert_string_equal(entry("h"), before);
            assert_true(pttl(hkey("h")) <= 5000);
            assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h"), score);
            assert_int_equal(h_zscore(rc, ikey("us-east-1", HR_STATUS_IDLE), "h"), -1);
        } else {
            assert_string_equal(entry("h"), entry_text(cases[i].incoming, cases[i].stored,
                                                       HR_STATUS_IDLE, "us-east-1", "room-b"));
            assert_true(pttl(hkey("h")) > 5000);
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
 * the update writes nothing. */
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
            await_gone(hkey("h"));
        }
        assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 10)), R_UNKNOWN_HOST);
        assert_false(exists(hkey("h")));
        assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_BUSY), "h"), -1);
    }
}

/* A status update moves the index member to the new status's index with the
 * same score (the entry's expiry), and records its seq. */
static void test_scripts_status_moves_index(void **state)
{
    (void)state;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    long long score = h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h");
    assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 2)), R_APPLIED);
    assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h"), -1);
    assert_near(h_zscore(rc, ikey("local", HR_STATUS_BUSY), "h"), score, SLACK_MS);
    assert_string_equal(entry("h"), entry_text(1, 2, HR_STATUS_BUSY, "local", "room-1"));
    assert_int_equal(run(status_update("h", HR_STATUS_IDLE, 3)), R_APPLIED);
    assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_BUSY), "h"), -1);
    assert_near(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h"), score, SLACK_MS);
    assert_string_equal(entry("h"), entry_text(1, 3, HR_STATUS_IDLE, "local", "room-1"));
}

/* A status update does not extend the TTL, whether it changes the status or
 * not; a moved index member is scored by the entry's expiry as it is. */
static void test_scripts_status_keeps_ttl(void **state)
{
    (void)state;
    const enum hr_status to[] = {HR_STATUS_BUSY, HR_STATUS_IDLE};
    for (size_t i = 0; i < sizeof(to) / sizeof(to[0]); i++) {
        flush();
        assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
        assert_int_equal(h_redis_int(rc, "PEXPIRE %s 5000", hkey("h")), 1);
        assert_int_equal(run(status_update("h", to[i], 2)), R_APPLIED);
        long long left = pttl(hkey("h"));
        assert_true(left > 0 && left <= 5000);
        assert_string_equal(field("h", "sseq"), "2");
        if (to[i] != HR_STATUS_IDLE)
            assert_near(h_zscore(rc, ikey("local", to[i]), "h"), expiry_of(hkey("h")), SLACK_MS);
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
    assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_BUSY), "h"), -1);
    /* Unordered: applied, the stored seq kept. */
    assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 0)), R_APPLIED);
    assert_string_equal(entry("h"), entry_text(30, 25, HR_STATUS_BUSY, "local", "room-1"));
    /* Nor is a heartbeat ordered against the status seq: 35 < 40 applies. */
    assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 40)), R_APPLIED);
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 35)), R_APPLIED);
    assert_string_equal(entry("h"), entry_text(35, 40, HR_STATUS_BUSY, "local", "room-1"));
}

/* A claim is the host's to settle. Its `busy` (ordered or not) confirms it:
 * the lease and the claims member are gone, the session runs, and its `idle`
 * after that ends it. Its `idle` before confirming changes only the seq: the
 * claim stands (busy, leased, not findable) until the lease runs out, so a
 * host that keeps saying idle cannot drop its client and win the next find. */
static void test_scripts_status_settles_claim(void **state)
{
    (void)state;
    static const uint64_t busy_seq[] = {2, 0}; /* ordered, unordered */
    struct hr_host_info got, hs[2];
    for (size_t i = 0; i < 2; i++) {
        flush();
        assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
        assert_int_equal(claim("h", SHORT_MS, REGS("local"), &got), 1);
        long long lease = strtoll(field("h", "lease"), NULL, 10);
        assert_true(lease > 0);
        assert_int_equal(run(status_update("h", HR_STATUS_BUSY, busy_seq[i])), R_APPLIED);
        assert_string_equal(field("h", "lease"), "");
        assert_string_equal(field("h", "status"), "busy");
        assert_int_equal(h_zscore(rc, claims_key(), "h"), -1);
        assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local"), hs, 2), 1);
        assert_int_equal(hs[0].status, HR_STATUS_BUSY);
        assert_false(hs[0].claimed);
        await_redis_time(lease);
        assert_int_equal(sweep(10), 0);
        assert_string_equal(field("h", "status"), "busy");
        /* Confirmed: the host's idle ends the session. */
        assert_int_equal(run(status_update("h", HR_STATUS_IDLE, busy_seq[i] ? 3 : 0)), R_APPLIED);
        assert_string_equal(field("h", "status"), "idle");
    }

    /* An idle before the host confirmed: applied (its seq recorded), and the
     * claim stands until its lease ends. */
    flush();
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim("h", SHORT_MS, REGS("local"), &got), 1);
    long long lease = strtoll(field("h", "lease"), NULL, 10);
    assert_int_equal(run(status_update("h", HR_STATUS_IDLE, 2)), R_APPLIED);
    assert_string_equal(field("h", "sseq"), "2");
    assert_string_equal(field("h", "status"), "busy");
    assert_int_equal(strtoll(field("h", "lease"), NULL, 10), lease);
    assert_true(h_zscore(rc, claims_key(), "h") > 0);
    assert_int_equal(claim(NULL, SHORT_MS, REGS("local"), &got), 0);
    assert_int_equal(run(status_update("h", HR_STATUS_IDLE, 2)), R_DUPLICATE);
    await_redis_time(lease);
    assert_int_equal(sweep(10), 1);
    assert_string_equal(field("h", "status"), "idle");
    assert_int_equal(claim(NULL, SHORT_MS, REGS("local"), &got), 1);
}

/* Claims choose uniformly among a region's idle hosts: over many claims of
 * 8 hosts with random picks (each host put back idle by its own busy then
 * idle), a chi-square test at p = 0.001 (14.07 at p = 0.05, 24.32 at 0.001
 * for 7 degrees of freedom) does not reject uniformity, and no host is
 * favoured for being the freshest. */
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
        struct hr_script_args a = {0};
        hr_script_claim_args(&a, PREFIX, &q);
        redisReply *r = eval(HR_SCRIPT_CLAIM, &a);
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

/* A leave deletes the entry, its index member and its claim, and keeps a
 * tombstone with its seq for one TTL. */
static void test_scripts_leave_deletes(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat("other", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim("h", LEASE_MS, REGS("local"), &got), 1);
    assert_true(h_zscore(rc, claims_key(), "h") > 0);
    assert_int_equal(run(leave("h", 5)), R_APPLIED);
    assert_false(exists(hkey("h")));
    assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_BUSY), "h"), -1);
    assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h"), -1);
    assert_int_equal(h_zscore(rc, claims_key(), "h"), -1);
    assert_string_equal(get(tkey("h")), "5");
    long long left = pttl(tkey("h"));
    assert_true(left > 0 && left <= (long long)TTL_MS);
    /* The other host is untouched. */
    assert_string_equal(entry("other"), entry_text(1, 1, HR_STATUS_IDLE, "local", "room-1"));
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
            assert_false(exists(tkey("h")));
        } else {
            assert_false(exists(hkey("h")));
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
            assert_false(exists(hkey("h")));
            assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h"), -1);
            /* A retransmitted leave is a duplicate too. */
            assert_int_equal(run(leave("h", 20)), R_DUPLICATE);
        } else {
            assert_string_equal(entry("h"), entry_text(21, 21, HR_STATUS_IDLE, "local", "room-1"));
            assert_true(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h") > 0);
        }
    }
}

/* A leave of a host that is not there is applied and writes nothing. */
static void test_scripts_leave_absent_writes_nothing(void **state)
{
    (void)state;
    assert_int_equal(run(leave("nobody", 5)), R_APPLIED);
    assert_false(exists(tkey("nobody")));
    assert_int_equal(run(leave("nobody", 0)), R_APPLIED);
    assert_int_equal(keys_under_prefix(), 0);
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
    assert_false(exists(hkey("h")));
    assert_string_equal(get(tkey("h")), "100");
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 60)), R_DUPLICATE);
    assert_false(exists(hkey("h")));
}

/* Tombstones of older builds were zero-padded; they compare by value. */
static void test_scripts_leave_reads_padded_tombstone(void **state)
{
    (void)state;
    redisReply *r = redisCommand(rc, "SET %s 00000000000000000020", tkey("h"));
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 15)), R_DUPLICATE);
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 20)), R_DUPLICATE);
    assert_false(exists(hkey("h")));
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 21)), R_APPLIED);
}

/* --- the host cap --- */

/* MAX_HOSTS counts live entries only: index members whose expiry has passed
 * (hosts expired, or written by hand) do not hold the cap shut; a known host
 * refreshes at the cap; 0 is no cap. */
static void test_scripts_max_hosts_counts_live_only(void **state)
{
    (void)state;
    assert_int_equal(run(beat("live", HR_STATUS_IDLE, 1)), R_APPLIED);
    /* A host that expired, its index member left behind... */
    assert_int_equal(run_with(beat("gone", HR_STATUS_BUSY, 1), SHORT_MS, 0, false), R_APPLIED);
    await_gone(hkey("gone"));
    assert_true(h_zscore(rc, ikey("local", HR_STATUS_BUSY), "gone") > 0);
    /* ... and stale members in every index counted. */
    static const char *const regions[] = {"local", "eu-central", "us-east-1"};
    for (size_t i = 0; i < 3; i++) {
        h_redis_int(rc, "ZADD %s 1000 stale-idle", ikey(regions[i], HR_STATUS_IDLE));
        h_redis_int(rc, "ZADD %s 1000 stale-busy", ikey(regions[i], HR_STATUS_BUSY));
    }
    /* One live host: a cap of 2 lets one more in, and no other. */
    assert_int_equal(run_with(beat("second", HR_STATUS_IDLE, 1), TTL_MS, 2, false), R_APPLIED);
    assert_int_equal(run_with(beat("third", HR_STATUS_IDLE, 1), TTL_MS, 2, false), R_FULL);
    assert_false(exists(hkey("third")));
    assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "third"), -1);
    assert_int_equal(run_with(beat("live", HR_STATUS_IDLE, 2), TTL_MS, 2, false), R_APPLIED);
    assert_int_equal(run_with(beat("third", HR_STATUS_IDLE, 1), TTL_MS, 0, false), R_APPLIED);
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
    assert_string_equal(entry("busy-1"), entry_text(1, 1, HR_STATUS_BUSY, "local", "room-1"));
}

/* Regions are tried in the order given; a region not given is not. */
static void test_scripts_claim_regions_in_order(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(heartbeat("l1", "r", "local", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(heartbeat("e1", "r", "eu-central", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(heartbeat("u1", "r", "us-east-1", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim(NULL, LEASE_MS, REGS("eu-central", "local"), &got), 1);
    assert_string_equal(got.host_id, "e1");
    assert_string_equal(got.region, "eu-central");
    assert_int_equal(claim(NULL, LEASE_MS, REGS("eu-central", "local"), &got), 1);
    assert_string_equal(got.host_id, "l1");
    assert_string_equal(got.region, "local");
    assert_int_equal(claim(NULL, LEASE_MS, REGS("eu-central", "local"), &got), 0);
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
        int n = claim("t", LEASE_MS, cases[i].regions, &got);
        if (n != cases[i].want)
            fail_msg("case %zu: claimed %d, want %d", i, n, cases[i].want);
        if (n) {
            assert_string_equal(got.host_id, "t");
            assert_string_equal(field("t", "status"), "busy");
        } else {
            assert_string_equal(entry("t"), before);
        }
        assert_string_equal(entry("other"), entry_text(1, 1, HR_STATUS_IDLE, "local", "room-1"));
    }
}

/* Claims never give the same host twice. */
static void test_scripts_claim_never_twice(void **state)
{
    (void)state;
    enum { N = 8 };
    char ids[N][16];
    bool taken[N] = {false};
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
}

/* The claimed host is busy with a lease (in its entry and the claims set,
 * scored by the lease's end); its index member moves from idle to busy
 * keeping the entry's expiry, which the claim does not extend. */
static void test_scripts_claim_marks_busy_with_lease(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(h_redis_int(rc, "PEXPIRE %s 5000", hkey("h")), 1);
    long long t0 = redis_now_ms();
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 1);
    long long t1 = redis_now_ms();
    assert_string_equal(field("h", "status"), "busy");
    long long lease = strtoll(field("h", "lease"), NULL, 10);
    assert_true(lease >= t0 + (long long)LEASE_MS && lease <= t1 + (long long)LEASE_MS);
    assert_int_equal(h_zscore(rc, claims_key(), "h"), lease);
    assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h"), -1);
    long long left = pttl(hkey("h"));
    assert_true(left > 0 && left <= 5000);
    assert_near(h_zscore(rc, ikey("local", HR_STATUS_BUSY), "h"), expiry_of(hkey("h")), SLACK_MS);
    /* The seqs and the rest of the entry are the host's, untouched. */
    char want[512];
    snprintf(want, sizeof(want), "%s %lld", entry_text(1, 1, HR_STATUS_BUSY, "local", "room-1"),
             lease);
    assert_string_equal(entry("h"), want);
}

/* Sweep: claims whose lease ended unconfirmed return to idle, at most MAX
 * per call; a claim whose lease runs on is left alone. */
static void test_scripts_sweep_returns_lapsed_claims(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(beat("a", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat("b", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(run(beat("c", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim("a", SHORT_MS, REGS("local"), &got), 1);
    assert_int_equal(claim("b", SHORT_MS, REGS("local"), &got), 1);
    assert_int_equal(claim("c", LEASE_MS, REGS("local"), &got), 1);
    await_swept();
    await_swept();
    assert_int_equal(sweep(10), 0);
    static const char *const back[] = {"a", "b"};
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(entry(back[i]), entry_text(1, 1, HR_STATUS_IDLE, "local", "room-1"));
        assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_BUSY), back[i]), -1);
        assert_near(h_zscore(rc, ikey("local", HR_STATUS_IDLE), back[i]), expiry_of(hkey(back[i])),
                    SLACK_MS);
        assert_int_equal(h_zscore(rc, claims_key(), back[i]), -1);
    }
    assert_string_equal(field("c", "status"), "busy");
    assert_true(h_zscore(rc, claims_key(), "c") > 0);
}

/* The entry's own lease decides, not the claims set alone: a claims member
 * that says "due" (left by an older build, or set by hand) for a host whose
 * lease still runs does not return that host to idle. */
static void test_scripts_sweep_checks_the_entry_lease(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim("h", LEASE_MS, REGS("local"), &got), 1);
    const char *before = entry("h");
    char was[512];
    snprintf(was, sizeof(was), "%s", before);
    h_redis_int(rc, "ZADD %s XX 1000 h", claims_key());
    assert_int_equal(sweep(10), 0);
    assert_string_equal(entry("h"), was);
    assert_string_equal(field("h", "status"), "busy");
    assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h"), -1);
}

/* A claim whose claims record is lost (deleted by hand) and whose lease has
 * ended: the sweep cannot see it, the host's next heartbeat frees it (idle,
 * in the idle index, findable), and a heartbeat during the lease does not. */
static void test_scripts_lost_claim_record_freed_by_heartbeat(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim("h", SHORT_MS, REGS("local"), &got), 1);
    long long lease = strtoll(field("h", "lease"), NULL, 10);
    h_redis_int(rc, "ZREM %s h", claims_key());
    await_redis_time(lease);
    assert_int_equal(sweep(10), 0);
    assert_string_equal(field("h", "status"), "busy");
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 2)), R_APPLIED);
    assert_string_equal(field("h", "status"), "idle");
    assert_string_equal(field("h", "lease"), "");
    assert_int_equal(h_zscore(rc, ikey("local", HR_STATUS_BUSY), "h"), -1);
    assert_true(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h") > 0);
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 1);
    /* Within its lease a heartbeat leaves the claim alone. */
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 3)), R_APPLIED);
    assert_string_equal(field("h", "status"), "busy");
    assert_true(h_zscore(rc, claims_key(), "h") > 0);
}

/* release.lua undoes a claim by its id, in either order: after the claim,
 * the host is idle again; before it, the claim takes nothing; after the host
 * confirmed, nothing changes (the session is real); an id is undone once. */
static long long release(const char *id)
{
    struct hr_script_args a = {0};
    hr_script_release_args(&a, PREFIX, id, LEASE_MS);
    redisReply *r = eval(HR_SCRIPT_RELEASE, &a);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static int claim_with_id(const char *host, const char *id, struct hr_host_info *got)
{
    struct hr_claim_query q = {
        .regions = {"local"}, .nregions = 1, .host_id = host, .lease_ms = LEASE_MS, .claim_id = id};
    struct hr_script_args a = {0};
    hr_script_claim_args(&a, PREFIX, &q);
    redisReply *r = eval(HR_SCRIPT_CLAIM, &a);
    int n = hr_script_claimed(r, got);
    freeReplyObject(r);
    assert_int_not_equal(n, -1);
    return n;
}

static void test_scripts_release_undoes_a_claim(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(beat("h", HR_STATUS_IDLE, 1)), R_APPLIED);
    assert_int_equal(claim_with_id("h", "00ab", &got), 1);
    assert_string_equal(field("h", "status"), "busy");
    assert_int_equal(release("00ab"), 1);
    assert_string_equal(entry("h"), entry_text(1, 1, HR_STATUS_IDLE, "local", "room-1"));
    assert_int_equal(h_zscore(rc, claims_key(), "h"), -1);
    assert_true(h_zscore(rc, ikey("local", HR_STATUS_IDLE), "h") > 0);
    assert_int_equal(release("00ab"), 0); /* once */
    /* Released before it ran: the claim takes nothing, the host stays idle. */
    assert_int_equal(release("00cd"), 0);
    assert_int_equal(claim_with_id("h", "00cd", &got), 0);
    assert_string_equal(field("h", "status"), "idle");
    /* Confirmed by the host first: the release leaves the session alone. */
    assert_int_equal(claim_with_id("h", "00ef", &got), 1);
    assert_int_equal(run(status_update("h", HR_STATUS_BUSY, 2)), R_APPLIED);
    assert_int_equal(release("00ef"), 0);
    assert_string_equal(field("h", "status"), "busy");
}

/* --- a key of the wrong type fails what touches it, and only that --- */

/* A string where a region's idle index belongs: a new host of that region
 * fails, with an error that names the key, while a new host of another
 * region, a known host and the rest of the batch go on; the cap on hosts
 * still counts the other indexes. */
static void test_scripts_wrong_type_fails_its_request_only(void **state)
{
    (void)state;
    assert_int_equal(run(beat("known", HR_STATUS_IDLE, 1)), R_APPLIED);
    const char *bad = ikey("us-east-1", HR_STATUS_IDLE);
    char badkey[128];
    snprintf(badkey, sizeof(badkey), "%s", bad);
    h_redis_int(rc, "APPEND %s not-a-sorted-set", badkey);
    const struct hr_request reqs[] = {
        heartbeat("east-1", "room-1", "us-east-1", HR_STATUS_IDLE, 1),
        beat("local-1", HR_STATUS_IDLE, 1), status_update("known", HR_STATUS_BUSY, 2),
        heartbeat("east-2", "room-1", "us-east-1", HR_STATUS_BUSY, 1), /* a busy index: fine */
    };
    struct hr_script_args a = {0};
    hr_script_requests_header(&a, PREFIX, TTL_MS, 100, REGIONS);
    for (size_t i = 0; i < 4; i++)
        hr_script_requests_add(&a, &reqs[i], false);
    redisReply *r = eval(HR_SCRIPT_REQUESTS, &a);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    enum hr_result res;
    int reason;
    assert_int_equal(r->element[0]->type, REDIS_REPLY_ERROR);
    if (!strstr(r->element[0]->str, badkey) || !strstr(r->element[0]->str, "WRONGTYPE"))
        fail_msg("the error does not name the key: %s", r->element[0]->str);
    assert_false(hr_script_result(r->element[0], &res, &reason));
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(r->element[i]->integer, R_APPLIED);
    freeReplyObject(r);
    assert_string_equal(field("local-1", "status"), "idle");
    assert_string_equal(field("known", "status"), "busy");
    assert_string_equal(field("east-2", "status"), "busy");
    assert_string_equal(get(badkey), "not-a-sorted-set"); /* left for an operator to see */
}

/* The same key: a find over several regions takes a host from another
 * region, and fails (naming the key) only when no region had one. */
static void test_scripts_wrong_type_claim_other_regions(void **state)
{
    (void)state;
    struct hr_host_info got;
    assert_int_equal(run(beat("local-1", HR_STATUS_IDLE, 1)), R_APPLIED);
    const char *bad = ikey("us-east-1", HR_STATUS_IDLE);
    char badkey[128];
    snprintf(badkey, sizeof(badkey), "%s", bad);
    h_redis_int(rc, "APPEND %s not-a-sorted-set", badkey);
    assert_int_equal(claim(NULL, LEASE_MS, REGS("us-east-1", "local"), &got), 1);
    assert_string_equal(got.host_id, "local-1");
    /* Nothing left anywhere: the claim is an error, which names the key. */
    struct hr_claim_query q = {
        .regions = {"us-east-1", "local"}, .nregions = 2, .lease_ms = LEASE_MS};
    struct hr_script_args a = {0};
    hr_script_claim_args(&a, PREFIX, &q);
    redisReply *r = hr_script_eval(rc, HR_SCRIPT_CLAIM, &a);
    hr_script_args_free(&a);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    if (!strstr(r->str, badkey))
        fail_msg("the error does not name the key: %s", r->str);
    freeReplyObject(r);
}

/* --- lists, counts and claims read live index members only --- */

/* An index member whose score (the expiry) has passed is never listed,
 * counted or claimed, even when its entry is there. */
static void test_scripts_index_expired_member_unseen(void **state)
{
    (void)state;
    struct hr_host_info hs[4], got;
    long long n[HR_NSTATUSES];
    assert_int_equal(run(beat("live", HR_STATUS_BUSY, 1)), R_APPLIED);
    assert_int_equal(run(beat("ghost", HR_STATUS_IDLE, 1)), R_APPLIED);
    h_redis_int(rc, "ZADD %s XX 1000 ghost", ikey("local", HR_STATUS_IDLE));
    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local"), hs, 4), 1);
    assert_string_equal(hs[0].host_id, "live");
    assert_int_equal(list(HR_STATUS_IDLE, 10, REGS("local"), hs, 4), 0);
    count(REGS("local"), n);
    assert_int_equal(n[slot(HR_STATUS_IDLE)], 0);
    assert_int_equal(n[slot(HR_STATUS_BUSY)], 1);
    assert_int_equal(claim(NULL, LEASE_MS, REGS("local"), &got), 0);
    assert_string_equal(field("ghost", "status"), "idle");
}

/* A host is listed only under the index that matches its entry: members
 * left behind in other indexes do not list it again or as what it is not. */
static void test_scripts_list_matches_entry(void **state)
{
    (void)state;
    struct hr_host_info hs[4];
    assert_int_equal(run(heartbeat("h", "room-1", "eu-central", HR_STATUS_IDLE, 1)), R_APPLIED);
    long long score = h_zscore(rc, ikey("eu-central", HR_STATUS_IDLE), "h");
    h_redis_int(rc, "ZADD %s %lld h", ikey("eu-central", HR_STATUS_BUSY), score);
    h_redis_int(rc, "ZADD %s %lld h", ikey("local", HR_STATUS_IDLE), score);
    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local", "eu-central"), hs, 4), 1);
    assert_string_equal(hs[0].host_id, "h");
    assert_string_equal(hs[0].region, "eu-central");
    assert_int_equal(hs[0].status, HR_STATUS_IDLE);
    assert_int_equal(list(HR_STATUS_BUSY, 10, REGS("local", "eu-central"), hs, 4), 0);
    assert_int_equal(list(HR_STATUS_NONE, 10, REGS("local"), hs, 4), 0);
}

/* The status filter and the limit. */
static void test_scripts_list_status_and_limit(void **state)
{
    (void)state;
    struct hr_host_info hs[8];
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
 * not GET (an ACL; on a Redis Cluster node the key not being local fails the
 * same way), and the list fails instead of answering without the host. */
static void test_scripts_failed_read_is_an_error(void **state)
{
    (void)state;
    assert_int_equal(run(beat("readable", HR_STATUS_IDLE, 1)), R_APPLIED);
    redisReply *r = redisCommand(rc, "ACL SETUSER noget on >pw ~* &* +@all -get");
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisContext *c = h_redis_connect(redis.port);
    r = redisCommand(c, "AUTH noget pw");
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    struct hr_list_query q = {.status = HR_STATUS_NONE, .limit = 10, .nregions = 1};
    q.regions[0] = "local";
    struct hr_script_args a = {0};
    hr_script_list_args(&a, PREFIX, &q);
    r = hr_script_eval(c, HR_SCRIPT_LIST, &a);
    hr_script_args_free(&a);
    assert_non_null(r);
    print_message("list without GET: %s\n", r->type == REDIS_REPLY_ERROR ? r->str : "(no error)");
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "GET"));
    freeReplyObject(r);
    redisFree(c);
    r = redisCommand(rc, "ACL DELUSER noget");
    freeReplyObject(r);
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

#define T(f) cmocka_unit_test_setup(f, fresh)

int main(void)
{
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
    };
    return cmocka_run_group_tests_name("scripts", tests, setup, teardown);
}
