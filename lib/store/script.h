/* The interface between the store and its Lua scripts (lib/store/lua/), written
 * once: each script's arguments, the per-request stride of a batch, the ops,
 * the result codes, the reply layouts and the key names; the statuses come
 * from request.h (HR_STATUSES). The C side compiles these tables; the build
 * runs lib/store/script_gen.c, which prints every entry as a Lua constant in front
 * of every script (the names are listed there), so the two sides cannot
 * disagree. Adding a field to a request is one X(...) line in
 * HR_SCRIPT_REQ_FIELDS plus the code that fills it (hr_script_requests_add)
 * and the Lua that reads it (ARGV[i + REQ_<FIELD>]).
 *
 * This module also builds each script's arguments and reads its replies, for
 * the asynchronous store (store.c) and the synchronous tools alike (`hostreg
 * ls`, the benches, the tests). It owns nothing but what a struct
 * hr_script_args holds. */
#ifndef HR_SCRIPT_H
#define HR_SCRIPT_H

#include "request.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct redisReply;
struct redisContext;

/* The scripts: X(NAME, "file name in lib/store/lua/ without .lua"). */
#define HR_SCRIPTS(X)                                                                              \
    X(REQUESTS, "requests")                                                                        \
    X(CLAIM, "claim")                                                                              \
    X(SWEEP, "sweep")                                                                              \
    X(LIST, "list")                                                                                \
    X(COUNT, "count")                                                                              \
    X(RELEASE, "release")                                                                          \
    X(SUMMARY, "summary")                                                                          \
    X(REGIONS, "regions")

/* Storage layout 3 (docs/design/layout-v2.md). A host lives in one bucket
 * (layout.h: hr_layout_bucket), and every key of a bucket is
 * "<prefix>{<bucket>}<text>", one hash slot: X(NAME, "text"). A script that
 * works on buckets takes each bucket's keys in KEYS, HR_SCRIPT_BKEYS of
 * them in this order, bucket after bucket. */
#define HR_SCRIPT_BUCKET_KEYS(X)                                                                   \
    X(ENTRIES, "e") /* hash: hostId -> "<hseq> <sseq> <s> <region> <room> <expiry>" (entry.lua) */ \
    X(IDLE, "i")    /* zset, scores 0: "<region> <hostId>" for each idle host */                   \
    X(CLAIMS, "c")  /* zset: claimed hostId -> the end of its claim's lease, ms */                 \
    X(TOMBS, "t")   /* hash: hostId -> "<seq of its leave> <expiry ms>" */                         \
    X(REGIONS, "m") /* hash: region -> summary epoch (odd: listed in the region's summary) */

/* Other key names: X(NAME, "text"). A claim's id is "<prefix>{<bucket>}k<id>"
 * in the bucket it claimed from; a region's summary of the buckets that may
 * hold idle hosts is "<prefix>{r.<region>}s" (a set of bucket numbers) with
 * "<prefix>{r.<region>}h" (bucket -> the epoch of its last change). */
#define HR_SCRIPT_KEYS(X)                                                                          \
    X(CLAIM, "k")                                                                                  \
    X(SUMMARY_SET, "s")                                                                            \
    X(SUMMARY_EPOCHS, "h")

/* Every script's arguments (ARGV) in order: X(SCRIPT, NAME). A list that
 * ends in REGIONS takes one region per argument from there on. */
#define HR_SCRIPT_REQUESTS_ARGS(X)                                                                 \
    X(REQUESTS, TTL)        /* entry lifetime, ms */                                               \
    X(REQUESTS, BUCKET_CAP) /* live hosts per bucket at most, 0: no cap */
/* ... then HR_SCRIPT_REQ_STRIDE arguments per request, in this order. */
#define HR_SCRIPT_REQ_FIELDS(X)                                                                    \
    X(REQ, OP)     /* HR_SCRIPT_OPS */                                                             \
    X(REQ, SEQ)    /* base 36, no leading zeros (layout.h); "0": unordered (HTTP) */               \
    X(REQ, HOST)   /* stored hostId (layout.h: hr_layout_id_pack) */                               \
    X(REQ, ROOM)   /* heartbeat */                                                                 \
    X(REQ, REGION) /* heartbeat */                                                                 \
    X(REQ, STATUS) /* heartbeat (the status it creates the entry with) and status update */        \
    X(REQ, SLOTS)  /* heartbeat: "<capacity>.<available slots>", "" for 1 of 1 */                  \
    X(REQ, BUCKET) /* which bucket's keys, from 0, in KEYS */
#define HR_SCRIPT_CLAIM_ARGS(X)                                                                    \
    X(CLAIM, LEASE) /* ms until an unconfirmed claim returns to idle */                            \
    X(CLAIM, HOST)  /* the stored hostId wanted, "" for any idle one */                            \
    X(CLAIM, PICK)  /* a random number below 2^31: which of the bucket's idle hosts */             \
    X(CLAIM, ID)    /* the claim's id ([0-9a-f]; "" for none, else KEYS has the claim key last) */ \
    X(CLAIM, REGIONS)
#define HR_SCRIPT_LIST_ARGS(X)                                                                     \
    X(LIST, STATUS) /* a status name, "" for every status */                                       \
    X(LIST, LIMIT)                                                                                 \
    X(LIST, REGIONS)
#define HR_SCRIPT_COUNT_ARGS(X) X(COUNT, REGIONS)
#define HR_SCRIPT_SWEEP_ARGS(X)                                                                    \
    X(SWEEP, MAX)   /* claims returned to idle and expired entries removed, in all, at most */     \
    X(SWEEP, STATE) /* "1": report every region's summary state, not only changes */               \
    X(SWEEP, TRIM)  /* "1": also remove expired entries (reads each bucket whole) */
#define HR_SCRIPT_RELEASE_ARGS(X)                                                                  \
    X(RELEASE, ID)    /* the claim id to undo (KEYS: the bucket's, then the claim key) */          \
    X(RELEASE, LEASE) /* ms a released id is remembered: a late claim with it then takes nothing   \
                       */
/* regions.lua (any-region mode): KEYS the registry's regions,
 * "<prefix>regions" (hr_script_regions_args). */
#define HR_SCRIPT_REGIONS_ARGS(X)                                                                  \
    X(REGIONS, MAX)   /* regions the registry may know at most */                                  \
    X(REGIONS, STALE) /* ms unseen after which a region makes room for a new one */                \
    X(REGIONS, REGIONS)
/* summary.lua: KEYS the region's summary set and epochs; ARGV triples. */
#define HR_SCRIPT_SUMMARY_FIELDS(X)                                                                \
    X(SUM, OP)    /* "a": the bucket may hold idle hosts of the region, "d": it holds none */      \
    X(SUM, EPOCH) /* the bucket's epoch for the region: an older one changes nothing */            \
    X(SUM, BUCKET)

/* Request ops: X(NAME, "text"). */
#define HR_SCRIPT_OPS(X)                                                                           \
    X(HEARTBEAT, "h")                                                                              \
    X(REFRESH, "r") /* a heartbeat that may refresh its entry but not create it */                 \
    X(STATUS, "s")                                                                                 \
    X(LEAVE, "l")

/* The requests script answers one integer per request: X(NAME, code,
 * enum hr_result, hr_err reason). */
#define HR_SCRIPT_RESULTS(X)                                                                       \
    X(APPLIED, 1, HR_RESULT_OK, HR_OK)                                                             \
    X(DUPLICATE, 2, HR_RESULT_DUPLICATE, HR_OK) /* seq not newer: nothing changed */               \
    X(UNKNOWN_HOST, 3, HR_RESULT_UNKNOWN_HOST, HR_OK)                                              \
    X(FULL, 4, HR_RESULT_RETRY_LATER, HR_E_FULL) /* a new host in a bucket at BUCKET_CAP */        \
    X(SOURCE_FULL, 5, HR_RESULT_RETRY_LATER, HR_E_SOURCE_FULL) /* a new host in a REFRESH */

/* Replies, flat arrays. Every script that changes buckets appends, after
 * its own reply, the summary changes it made: strings "<op> <epoch>
 * <bucket> <region>" (HR_SCRIPT_SUMMARY_FIELDS's op), for the store to
 * apply with summary.lua. The requests script answers one element per
 * request first; a claim HR_SCRIPT_CLAIMED_N elements (ID "" when no host
 * fitted); a sweep and a release one integer (hosts returned to idle); a
 * list HR_SCRIPT_LISTED_STRIDE elements per host; a count one integer per
 * region and status (the statuses of HR_STATUSES in order, for each
 * region), summed over its buckets. */
#define HR_SCRIPT_CLAIMED_FIELDS(X)                                                                \
    X(CLAIMED, ID)                                                                                 \
    X(CLAIMED, ROOM)                                                                               \
    X(CLAIMED, REGION)
#define HR_SCRIPT_LISTED_FIELDS(X)                                                                 \
    X(LISTED, ID)                                                                                  \
    X(LISTED, ROOM)                                                                                \
    X(LISTED, REGION)                                                                              \
    X(LISTED, STATUS)                                                                              \
    X(LISTED, TTL)     /* ms left */                                                               \
    X(LISTED, CLAIMED) /* 1: busy by a client's claim the host has not confirmed yet */            \
    X(LISTED, CAPACITY)                                                                            \
    X(LISTED, FREE) /* slots a find may still take */

/* C names of the tables above: HR_SCRIPT_<SCRIPT>, HR_SCRIPT_KEY_<NAME>,
 * HR_SCRIPT_OP_<NAME> and HR_SCRIPT_RES_<NAME>; argument and field positions
 * HR_SCRIPT_<SCRIPT>_<NAME> count from 0 (Lua's ARGV from 1: the generated
 * constants add 1), with HR_SCRIPT_<SCRIPT>_NARGS, HR_SCRIPT_REQ_STRIDE,
 * HR_SCRIPT_CLAIMED_N and HR_SCRIPT_LISTED_STRIDE after the last. */
#define HR_SCRIPT_POS_(s, n) HR_SCRIPT_##s##_##n,
enum hr_script_id {
#define HR_SCRIPT_ID_(name, file) HR_SCRIPT_##name,
    HR_SCRIPTS(HR_SCRIPT_ID_) HR_NSCRIPTS
#undef HR_SCRIPT_ID_
};
enum { HR_SCRIPT_REQUESTS_ARGS(HR_SCRIPT_POS_) HR_SCRIPT_REQUESTS_NARGS };
enum { HR_SCRIPT_REQ_FIELDS(HR_SCRIPT_POS_) HR_SCRIPT_REQ_STRIDE };
enum { HR_SCRIPT_CLAIM_ARGS(HR_SCRIPT_POS_) HR_SCRIPT_CLAIM_NARGS };
enum { HR_SCRIPT_LIST_ARGS(HR_SCRIPT_POS_) HR_SCRIPT_LIST_NARGS };
enum { HR_SCRIPT_COUNT_ARGS(HR_SCRIPT_POS_) HR_SCRIPT_COUNT_NARGS };
enum { HR_SCRIPT_SWEEP_ARGS(HR_SCRIPT_POS_) HR_SCRIPT_SWEEP_NARGS };
enum { HR_SCRIPT_RELEASE_ARGS(HR_SCRIPT_POS_) HR_SCRIPT_RELEASE_NARGS };
enum { HR_SCRIPT_REGIONS_ARGS(HR_SCRIPT_POS_) HR_SCRIPT_REGIONS_NARGS };
enum { HR_SCRIPT_SUMMARY_FIELDS(HR_SCRIPT_POS_) HR_SCRIPT_SUM_STRIDE };
enum { HR_SCRIPT_CLAIMED_FIELDS(HR_SCRIPT_POS_) HR_SCRIPT_CLAIMED_N };
enum { HR_SCRIPT_LISTED_FIELDS(HR_SCRIPT_POS_) HR_SCRIPT_LISTED_STRIDE };
#undef HR_SCRIPT_POS_
enum hr_script_key {
#define HR_SCRIPT_KEY_(name, text) HR_SCRIPT_KEY_##name,
    HR_SCRIPT_KEYS(HR_SCRIPT_KEY_)
#undef HR_SCRIPT_KEY_
};
enum hr_script_bkey {
#define HR_SCRIPT_BKEY_(name, text) HR_SCRIPT_BKEY_##name,
    HR_SCRIPT_BUCKET_KEYS(HR_SCRIPT_BKEY_) HR_SCRIPT_BKEYS
#undef HR_SCRIPT_BKEY_
};
enum hr_script_op {
#define HR_SCRIPT_OP_(name, text) HR_SCRIPT_OP_##name,
    HR_SCRIPT_OPS(HR_SCRIPT_OP_)
#undef HR_SCRIPT_OP_
};
enum hr_script_res {
#define HR_SCRIPT_RES_(name, code, result, reason) HR_SCRIPT_RES_##name = code,
    HR_SCRIPT_RESULTS(HR_SCRIPT_RES_)
#undef HR_SCRIPT_RES_
};

/* The text of a key name ("k"), of a bucket key ("e") and of an op ("h"). */
const char *hr_script_key(enum hr_script_key k);
const char *hr_script_bkey(enum hr_script_bkey k);
const char *hr_script_op(enum hr_script_op op);

/* The name ("requests") and the body (the generated constants, entry.lua and
 * the script) of a script; hr_script_find gives the id of a name, or -1. */
const char *hr_script_name(enum hr_script_id id);
const char *hr_script_body(enum hr_script_id id);
int hr_script_find(const char *name);

/* --- arguments --- */

/* A script call's arguments, copied into one growable buffer: a call can be
 * sent again (as EVAL after NOSCRIPT), and a reset one allocates nothing
 * more. A failed allocation marks it `failed`, and later appends do
 * nothing; the caller checks `failed` once before sending. Zero it to start,
 * hr_script_args_free it at the end. */
struct hr_script_args {
    int argc, argcap, failed;
    size_t *off, *len; /* argument i is buf[off[i]], len[i] bytes */
    int nkeys, keycap;
    size_t *koff, *klen; /* key i is buf[koff[i]], klen[i] bytes */
    char *buf;
    size_t used, cap;
};

void hr_script_args_reset(struct hr_script_args *a);
void hr_script_args_free(struct hr_script_args *a);
void hr_script_args_str(struct hr_script_args *a, const char *s);
void hr_script_args_mem(struct hr_script_args *a, const char *s, size_t len);
void hr_script_args_u64(struct hr_script_args *a, uint64_t v);
void hr_script_args_key(struct hr_script_args *a, const char *s, size_t len);
/* Argument i and key i (not NUL-terminated) and their length. */
static inline const char *hr_script_arg(const struct hr_script_args *a, int i, size_t *len)
{
    *len = a->len[i];
    return a->buf + a->off[i];
}
static inline const char *hr_script_key_at(const struct hr_script_args *a, int i, size_t *len)
{
    *len = a->klen[i];
    return a->buf + a->koff[i];
}

struct hr_layout;

/* The header of a batch of requests, then one call of
 * hr_script_requests_add per request (a request checked by
 * hr_request_check). `bucket_cap`: live hosts per bucket at most, 0 for no
 * cap. `refresh_only`: a heartbeat that may refresh its host's entry but
 * not create one (HR_SCRIPT_RES_SOURCE_FULL instead). The batch's buckets
 * are buckets[0..*nbuckets) (the caller's array, room for one per request):
 * a request of a bucket the batch has not met yet adds that bucket's keys. */
void hr_script_requests_header(struct hr_script_args *a, uint32_t ttl_ms, uint32_t bucket_cap);
void hr_script_requests_add(struct hr_script_args *a, const struct hr_layout *l,
                            const struct hr_request *req, bool refresh_only, uint32_t *buckets,
                            int *nbuckets);

/* A host as the registry holds it (claim and list answers). */
struct hr_host_info {
    char host_id[HR_ID_MAX + 1];
    char room_id[HR_ID_MAX + 1];
    char region[HR_REGION_MAX + 1];
    enum hr_status status;
    int64_t ttl_ms;
    bool claimed; /* busy by a client's claim that the host has not confirmed yet */
    uint32_t capacity, available_slots; /* slots, and those a find may still take */
};

/* Regions in order of preference, as pointers into the caller's storage. */
struct hr_claim_query {
    const char *regions[HR_REGIONS_MAX];
    size_t nregions;
    const char *host_id;  /* a specific host, or NULL for any idle one */
    uint32_t lease_ms;    /* unconfirmed claims return to idle after this */
    uint32_t pick;        /* uniform random below 2^31 (the store draws it): which idle host */
    const char *claim_id; /* 1-32 of [0-9a-f] to be able to release it, or NULL */
};

struct hr_list_query {
    const char *regions[HR_REGIONS_MAX];
    size_t nregions;
    enum hr_status status; /* HR_STATUS_NONE: every status */
    uint32_t limit;
};

/* A claim in bucket `bucket`: of q->host_id (whose bucket it must be), or of
 * any idle host of q->regions (the store asks one region at a time). */
void hr_script_claim_args(struct hr_script_args *a, const struct hr_layout *l, uint32_t bucket,
                          const struct hr_claim_query *q);
/* List, count and sweep take buckets first..first+n-1. */
void hr_script_list_args(struct hr_script_args *a, const struct hr_layout *l, uint32_t first,
                         uint32_t n, const struct hr_list_query *q);
void hr_script_count_args(struct hr_script_args *a, const struct hr_layout *l, uint32_t first,
                          uint32_t n, const char *const *regions, size_t nregions);
void hr_script_sweep_args(struct hr_script_args *a, const struct hr_layout *l, uint32_t first,
                          uint32_t n, uint32_t max, bool state, bool trim);
void hr_script_release_args(struct hr_script_args *a, const struct hr_layout *l, uint32_t bucket,
                            const char *claim_id, uint32_t lease_ms);
/* Any-region mode: the registry's regions, admitting or marking seen
 * `regions` (n of them; each then added with hr_script_args_str). */
#define HR_SCRIPT_REGIONS_KEY "regions"
void hr_script_regions_args(struct hr_script_args *a, const char *prefix, uint32_t max,
                            uint32_t stale_ms);
/* A summary update of `region`, then one hr_script_summary_add per change. */
void hr_script_summary_args(struct hr_script_args *a, const struct hr_layout *l,
                            const char *region);
void hr_script_summary_add(struct hr_script_args *a, char op, const char *epoch, uint32_t bucket);

/* --- replies --- */

/* One element of a requests reply as the ack's result and reason (HR_OK, or
 * the hr_err of a RETRY_LATER). False for an element that is no result code
 * (then the caller answers RETRY_LATER, HR_E_UNAVAILABLE). */
bool hr_script_result(const struct redisReply *e, enum hr_result *result, int *reason);

/* A summary change a script reported (an element after its own reply):
 * true with the fields filled (epoch as decimal text), false for an element
 * of another shape. */
struct hr_summary_change {
    char op; /* 'a' or 'd' */
    char epoch[24];
    uint32_t bucket;
    char region[HR_REGION_MAX + 1];
};
bool hr_script_change(const struct redisReply *e, struct hr_summary_change *ch);

/* A claim reply: 1 with *h filled, 0 when no host fitted, -1 for a reply of
 * another shape. Summary changes follow its HR_SCRIPT_CLAIMED_N elements. */
int hr_script_claimed(const struct redisReply *r, struct hr_host_info *h);

/* The number of hosts in a list reply, or -1 for a reply of another shape;
 * hr_script_listed fills host i (< that number). */
long hr_script_nlisted(const struct redisReply *r);
void hr_script_listed(const struct redisReply *r, size_t i, struct hr_host_info *h);

/* For tools and tests that call the bucket scripts themselves: applies the
 * summary changes of reply r (its elements from `from` on) with
 * summary.lua, synchronously, as the store does. The number applied, or -1
 * when Redis failed. */
int hr_script_apply_changes(struct redisContext *c, const struct hr_layout *l,
                            const struct redisReply *r, size_t from);

/* A script call as a command, EVAL <body> <numkeys> <keys> <args>, into
 * argv and lens (room for a->nkeys + a->argc + 3 each, pointing into the
 * script's body, `a` and the caller's `nkeys`); returns their count. */
int hr_script_command(enum hr_script_id id, const struct hr_script_args *a, const char **argv,
                      size_t *lens, char nkeys[16]);

/* The whole command of a call, into *argv and *argvlen (grown as needed,
 * *cap their room; argument pointers into `a` and `nkeys`, the caller's
 * scratch): EVALSHA sha numkeys keys... args..., EVAL body ... when `eval`
 * (after NOSCRIPT), or the args alone when `script` is negative (a plain
 * command). The number of arguments, or -1 when out of memory. */
int hr_script_call_argv(const struct hr_script_args *a, int script, bool eval, const char *sha,
                        char nkeys[16], const char ***argv, size_t **argvlen, int *cap);

/* A synchronous call for tools and tests: EVAL of the script's body with
 * the arguments. The reply is the caller's to free (NULL: c->errstr). */
struct redisReply *hr_script_eval(struct redisContext *c, enum hr_script_id id,
                                  const struct hr_script_args *a);

#endif
