#include "store.h"

#include "clock.h"
#include "cluster.h"
#include "cluster_conn.h"
#include "conn.h"
#include "err.h"
#include "layout.h"
#include "log.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "parse.h"

/* Requests coalesced into one script call: what one receive batch of the
 * daemon brings (it reads up to 8 x 64 datagrams per wake-up); more would
 * hold Redis longer per call for no gain. */
#define BATCH_MAX 128

/* Due claims and expired entries a sweep call handles at most, over all its
 * buckets: a batch at a time, so that one call never holds Redis long (after
 * a mass expiry the backlog drains over the next sweeps). */
#define SWEEP_MAX 1000

/* The key the readiness probe names, after the prefix: never created (the
 * probe is SET ... XX, see hr_store_probe). */
#define PROBE_KEY "readyz"

/* Buckets per list, count and sweep call: enough to make a call worth its
 * round trip, few enough that one call never holds Redis long. On a Redis
 * Cluster a call takes one bucket (its keys must be of one slot). */
#define FANOUT 256

/* Calls of one list, count or sweep in flight at once: enough to keep the
 * connections busy, few enough that a registry of many buckets on a
 * cluster (a call each) does not flood Redis or max_inflight. */
#define FAN_WINDOW 16

/* A find tries this many buckets of a region's summary at most before it
 * goes on to the next region: each try that finds the bucket empty also
 * removes it from the summary, so this bound is met only when the summary
 * was very stale. */
#define FIND_TRIES 16

/* Every this many sweeps, the sweep reports every bucket's summary state,
 * which repairs a summary change lost with a process that died. */
#define SWEEP_STATE_EVERY 10
/* How long a WAIT (--redis-wait) may hold the connection when the
 * configuration does not say (ms). */
#define WAIT_MS 250
/* Sweep ticks skipped in a row at most while Redis is behind its budget. */
#define SWEEP_PUT_OFF_MAX 10
/* Each bucket's expired entries are removed once in this long (ms), about,
 * TRIM_STEP buckets a call (a call reads its buckets whole: about 2 ms of
 * Redis for 16 buckets of 64 hosts). */
#define TRIM_PASS_MS 60000
#define TRIM_STEP 16

/* Claims remembered with the bucket they were sent to, for
 * hr_store_release: the most recent ones (a release comes within a request
 * timeout of its claim). A find sends up to FIND_TRIES claims per region,
 * so this holds the last few hundred finds even when they miss. */
#define RECENT_CLAIMS 4096
/* Any-region mode: how often the known regions are read again (and the
 * ones this program saw marked seen), and how long a region nobody names
 * keeps its place under --max-regions (a region with a live host is named
 * by a heartbeat every TTL at least). */
#define REGIONS_REFRESH_MS 5000
#define REGION_STALE_MS (3600 * 1000)
#define REGION_INDEX 512 /* open addressing over the known regions: twice HR_REGIONS_MAX */
_Static_assert(REGION_INDEX >= 2 * HR_REGIONS_MAX, "the region index has room");

struct claim_op;
struct fan_op;
struct probe_op;

struct cmd;
/* Turns a reply into the callers' callbacks; `reply` is NULL when the call
 * failed (connection lost, timed out, error reply). */
typedef void cmd_handler(struct cmd *c, redisReply *reply);

/* A request waiting in a batch. */
struct slot {
    hr_store_cb *cb;
    void *arg;
};

/* One script call. Its arguments stay with it when it is recycled, so a warm
 * store does not allocate per request. */
struct cmd {
    struct hr_conn_call call; /* first: the connection hands it back */
    struct hr_store *st;
    struct timespec sent; /* for the latency histogram (stats.call_seconds) */
    struct cmd *link;     /* free list, or the list of batches that failed to send */
    cmd_handler *handle;
    union {
        hr_store_probe_cb *probe;
        hr_store_release_cb *release;
    } cb;
    void *arg;
    struct claim_op *claim; /* a find's step */
    struct fan_op *fan;     /* a list's, a count's or a sweep's part */
    struct probe_op *pop;   /* on a cluster: a readiness probe's part (one per master) */
    struct hr_script_args args;
    struct slot *slots; /* HR_SCRIPT_REQUESTS: one per request, in order */
    int nslots, slotcap;
    uint32_t buckets[BATCH_MAX]; /* HR_SCRIPT_REQUESTS: the batch's buckets */
    int nbuckets;
};

/* A find, step by step: for each region in turn, a random bucket from the
 * region's summary (SRANDMEMBER), then a claim in that bucket. */
struct claim_op {
    struct hr_store *st;
    hr_store_claim_cb *cb;
    void *arg;
    struct hr_claim_query q; /* its strings point into `text` */
    char text[HR_REGIONS_MAX * (HR_REGION_MAX + 1) + 2 * (HR_ID_MAX + 1) + 40];
    size_t region;  /* the region being tried */
    int tries;      /* buckets tried in it */
    bool cancelled; /* released before it ended: no further step */
    bool starting;  /* inside hr_store_claim: a failure is returned, not called back */
    int start_err;
    uint32_t bucket; /* of the claim in flight */
    struct claim_op *next;
};

/* A list, a count or a sweep over every bucket: `step` buckets a call,
 * FAN_WINDOW calls in flight at most, each answer merged as it comes, and
 * the caller answered when the last is in. Its query is a copy (the parts
 * are built as they go out). */
struct fan_op {
    struct hr_store *st;
    int script; /* HR_SCRIPT_LIST, _COUNT or _SWEEP */
    hr_store_list_cb *list;
    hr_store_count_cb *count;
    void *arg;
    uint32_t next, step; /* the first bucket not sent yet; buckets a call */
    uint32_t nbuckets;   /* the layout's, when it started */
    int pending, failed;
    struct hr_list_query q; /* list: the query; count: its regions; strings in `text` */
    char text[HR_REGIONS_MAX * (HR_REGION_MAX + 1)];
    bool state;                 /* sweep: report every summary state (SWEEP_STATE_EVERY) */
    uint32_t trim_from, trim_n; /* sweep: the FANOUT chunks whose expired entries go */
    struct hr_host_info *hosts;
    size_t nhosts;
    uint64_t counts[HR_NSTATUSES * HR_REGIONS_MAX];
    uint64_t returned; /* sweep: hosts returned to idle */
};

/* A readiness probe on a cluster: one SET ... XX per master. */
struct probe_op {
    hr_store_probe_cb *cb;
    void *arg;
    int pending;
    bool failed;
    char refused[240]; /* the first master's refusal or failure */
};

/* Any-region mode: a heartbeat of a region this store does not know yet
 * waits for the region's admission (regions.lua). */
struct parked {
    struct hr_request req;
    unsigned flags;
    hr_store_cb *cb;
    void *arg;
    struct parked *next;
};
struct admission {
    char region[HR_REGION_MAX + 1];
    struct parked *head, **tail;
    struct admission *next;
};

/* The regions the registry knows, as last read (any-region mode). */
struct known_regions {
    char name[HR_REGIONS_MAX][HR_REGION_MAX + 1];
    bool seen[HR_REGIONS_MAX]; /* named by a heartbeat here since the last refresh */
    size_t n;
    int16_t index[REGION_INDEX]; /* slot -> name + 1; 0: empty */
};

struct hr_store {
    struct event_base *base;
    struct hr_store_config cfg;
    /* Where calls go: one Redis (conn.h), or a Redis Cluster (cluster_conn.h)
     * when the URL names several nodes or its node turns out to be one
     * (switch_ev then replaces the first by the second). */
    struct hr_conn *conn;
    struct hr_cconn *cc;
    struct event *switch_ev;
    struct hr_layout new_layout; /* the layout a registry without one gets */
    struct hr_conn_stats before; /* the first connection's counters, once replaced */
    size_t inflight;             /* requests and calls sent or promised an answer */
    struct cmd *freelist;        /* recycled cmds: no malloc per request once warm */
    struct cmd *open;            /* the batch being filled, sent at the end of this loop turn */
    struct cmd *failed;          /* batches that could not be sent, answered by flush_ev */
    struct event *flush_ev;
    struct event *sweep_ev;
    struct hr_store_stats stats; /* the connection's counters are added on reading */
    uint64_t bad_replies;        /* requests replies of the wrong shape */
    uint64_t request_errors;     /* single requests that failed in Redis */
    uint64_t rng;                /* claims' picks (hr_store_claim); never 0 */
    char refused[160];           /* hr_store_writes_refused(); "" when not known to */
    struct claim_op *claims;     /* finds under way */
    struct {
        char id[33];
        uint32_t bucket;
    } recent[RECENT_CLAIMS]; /* claims sent, with their bucket */
    size_t recent_next;
    unsigned sweeps;
    struct fan_op *sweep; /* the sweep under way, or NULL */
    uint32_t trim_at;     /* the first FANOUT chunk whose expired entries the next round removes */
    unsigned sweeps_put_off;      /* sweep ticks skipped in a row while Redis was behind */
    bool cap_warned;              /* bucket_cap's warning logged */
    struct known_regions *known;  /* any-region mode, else NULL */
    struct admission *admissions; /* new regions waiting for regions.lua */
    struct event *regions_ev;     /* reads the known regions again */
    bool regions_refreshing;
    bool regions_loaded; /* read once at least */
};

static const struct hr_layout *layout(const struct hr_store *st)
{
    return st->cc ? hr_cconn_layout(st->cc) : hr_conn_layout(st->conn);
}

/* Whether an error from Redis, or from a script (which quotes it, after
 * "SET <key>: " from entry.lua or before " script: ..."), says that Redis
 * refuses every write for now, not that this one write was wrong: a replica
 * (READONLY), maxmemory reached with noeviction (OOM), or stop-writes-on-
 * bgsave-error after a failed save (MISCONF). */
static bool refuses_writes(const char *err)
{
    static const char *const codes[] = {"READONLY ", "OOM ", "MISCONF "};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        size_t n = strlen(codes[i]);
        if (strncmp(err, codes[i], n) == 0)
            return true;
        for (const char *p = err; (p = strstr(p, codes[i])); p += n)
            if (p > err && (p[-1] == ' ' || p[-1] == '-'))
                return true;
    }
    return false;
}

/* Learns from the outcome of a write: `err` is Redis's error for it, or NULL
 * when Redis took it. Errors that do not refuse every write change nothing. */
static void note_write(struct hr_store *st, const char *err)
{
    if (!err) {
        if (st->refused[0])
            HR_LOG(HR_LOG_INFO, "redis: takes writes again");
        st->refused[0] = '\0';
    } else if (refuses_writes(err)) {
        if (strstr(err, "READONLY") && st->conn)
            hr_conn_readonly(st->conn); /* behind Sentinel: find the master again */
        /* (on a cluster, cluster_conn.c has asked for the slot map again) */
        if (!st->refused[0])
            HR_LOG(HR_LOG_WARN, "redis: refuses writes: %.200s", err);
        snprintf(st->refused, sizeof(st->refused), "%s", err);
    }
}

/* Connected with the scripts loaded (and not being freed); on a cluster,
 * every slot served and the layout read. */
static bool ready(const struct hr_store *st)
{
    if (st->cc)
        return hr_cconn_ready(st->cc);
    return st->conn && hr_conn_ready(st->conn);
}

/* Latency-bounded admission: whether Redis is further behind than the
 * budget (its oldest call in flight older): on a cluster the master of
 * `slot`, or with -1 (a find, a sweep: calls to several nodes) the master
 * furthest behind. A Redis that answers slowly keeps its connection; what
 * it cannot take in time is refused at once, so that every request is
 * answered and what is accepted is answered within about the budget. */
static bool behind(const struct hr_store *st, int slot)
{
    if (!st->cfg.budget_ms)
        return false;
    uint64_t now = hr_mono_ms();
    if (st->cc) {
        const struct hr_cluster *cl = hr_cconn_router(st->cc);
        return (slot >= 0 ? hr_cluster_backlog_ms(cl, slot, now)
                          : hr_cluster_backlog_max_ms(cl, now)) > st->cfg.budget_ms;
    }
    return st->conn && hr_conn_backlog_ms(st->conn, now) > st->cfg.budget_ms;
}

/* The hash slot of a request's bucket, on a cluster; -1 otherwise. */
static int request_slot(const struct hr_store *st, const struct hr_request *req)
{
    if (!st->cc || !st->cfg.budget_ms)
        return -1;
    char stored[HR_LAYOUT_ID_MAX], tag[16];
    size_t n = hr_layout_id_pack(req->host_id, stored);
    int len = snprintf(tag, sizeof(tag), "{%" PRIu32 "}", hr_layout_bucket(layout(st), stored, n));
    return hr_cluster_keyslot(tag, (size_t)len);
}

/* Sends a call where the store's calls go (hr_conn_send's contract). */
static int transport_send(struct hr_store *st, struct hr_conn_call *call)
{
    clock_gettime(CLOCK_MONOTONIC, &((struct cmd *)call)->sent);
    if (st->cc)
        return hr_cconn_send(st->cc, call);
    if (st->conn)
        return hr_conn_send(st->conn, call);
    return HR_E_UNAVAILABLE;
}

/* The work one call counts for in `inflight`. */
static size_t weight(const struct cmd *c)
{
    return c->nslots ? (size_t)c->nslots : 1;
}

static void on_done(struct hr_conn_call *call, redisReply *reply);

/* A call from the free list, or a new one, set up for `script` (an enum
 * hr_script_id, or HR_CONN_PLAIN); NULL when out of memory. */
static struct cmd *cmd_get(struct hr_store *st, int script, cmd_handler *handle, void *arg)
{
    struct cmd *c = st->freelist;
    if (c)
        st->freelist = c->link;
    else if (!(c = calloc(1, sizeof(*c))))
        return NULL;
    c->st = st;
    c->call.script = script;
    c->call.args = &c->args;
    c->call.done = on_done;
    c->handle = handle;
    c->arg = arg;
    c->claim = NULL;
    c->fan = NULL;
    c->pop = NULL;
    hr_script_args_reset(&c->args);
    c->nslots = 0;
    c->nbuckets = 0;
    return c;
}

/* A fresh call, or NULL with the reason in *err: not ready, overload, or
 * out of memory. */
static struct cmd *cmd_new(struct hr_store *st, int script, cmd_handler *handle, void *arg,
                           int *err)
{
    if (!ready(st)) {
        *err = HR_E_UNAVAILABLE;
        return NULL;
    }
    if (st->inflight >= st->cfg.max_inflight) {
        *err = HR_E_OVERLOAD;
        return NULL;
    }
    struct cmd *c = cmd_get(st, script, handle, arg);
    if (!c)
        *err = HR_E_NOMEM;
    return c;
}

static void cmd_recycle(struct hr_store *st, struct cmd *c)
{
    c->link = st->freelist;
    st->freelist = c;
}

static void cmd_destroy(struct cmd *c)
{
    hr_script_args_free(&c->args);
    free(c->slots);
    free(c);
}

/* Sends a call built with cmd_new, or recycles it and says why not. */
static int cmd_submit(struct hr_store *st, struct cmd *c)
{
    int rc = transport_send(st, &c->call);
    if (rc != HR_OK) {
        cmd_recycle(st, c);
        return rc;
    }
    st->inflight += weight(c);
    st->stats.submitted++;
    return HR_OK;
}

static void on_done(struct hr_conn_call *call, redisReply *reply)
{
    struct cmd *c = (struct cmd *)call;
    struct hr_store *st = c->st;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    hr_histogram_observe(&st->stats.call_seconds,
                         (double)(now.tv_sec - c->sent.tv_sec) +
                             (double)(now.tv_nsec - c->sent.tv_nsec) / 1e9);
    st->inflight -= weight(c);
    if (call->error)
        note_write(st, call->error);
    c->handle(c, reply);
    cmd_recycle(st, c);
}

static void handle_nothing(struct cmd *c, redisReply *reply)
{
    (void)c, (void)reply;
}

/* Applies the summary changes a bucket script reported, reply->element[from]
 * on: one summary.lua call per region. A change that cannot be sent now is
 * lost, and the sweep's periodic report of every state repairs it. */
static void apply_changes(struct hr_store *st, const redisReply *reply, size_t from)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    /* One call per region: the regions, in the order they first appear, are
     * few (HR_REGIONS_MAX at most are configured); the changes may be many
     * (a sweep's report covers every bucket of its range). */
    char regions[HR_REGIONS_MAX][HR_REGION_MAX + 1];
    size_t nregions = 0;
    for (size_t i = from; i < reply->elements; i++) {
        struct hr_summary_change ch;
        if (!hr_script_change(reply->element[i], &ch))
            continue;
        size_t r = 0;
        while (r < nregions && strcmp(regions[r], ch.region) != 0)
            r++;
        if (r < nregions)
            continue;
        if (nregions == HR_REGIONS_MAX)
            break; /* not a configured region: the sweep tells it again */
        memcpy(regions[nregions++], ch.region, strlen(ch.region) + 1);
    }
    for (size_t r = 0; r < nregions; r++) {
        int err;
        struct cmd *c = cmd_new(st, HR_SCRIPT_SUMMARY, handle_nothing, NULL, &err);
        if (!c)
            return;
        hr_script_summary_args(&c->args, layout(st), regions[r]);
        for (size_t i = from; i < reply->elements; i++) {
            struct hr_summary_change ch;
            if (hr_script_change(reply->element[i], &ch) && strcmp(ch.region, regions[r]) == 0)
                hr_script_summary_add(&c->args, ch.op, ch.epoch, ch.bucket);
        }
        cmd_submit(st, c);
    }
}

/* Each request of a batch gets its own answer, in order. */
static void handle_requests(struct cmd *c, redisReply *reply)
{
    struct hr_store *st = c->st;
    if (reply && (reply->type != REDIS_REPLY_ARRAY || reply->elements < (size_t)c->nslots)) {
        st->bad_replies++;
        HR_LOG_LIMITED(HR_LOG_ERROR, "redis: unexpected requests reply (type %d)", reply->type);
        reply = NULL;
    }
    for (int i = 0; i < c->nslots; i++) {
        enum hr_result res;
        int reason;
        const redisReply *e = reply ? reply->element[i] : NULL;
        if (!e || !hr_script_result(e, &res, &reason)) {
            res = HR_RESULT_RETRY_LATER;
            reason = HR_E_UNAVAILABLE;
        }
        /* One request failed in Redis (a key of the wrong type, named in the
         * message), the others of its batch did not. */
        if (e && e->type == REDIS_REPLY_ERROR) {
            st->request_errors++;
            HR_LOG_LIMITED(HR_LOG_ERROR, "redis: a request failed: %.300s", e->str);
            note_write(st, e->str);
        }
        switch (res) {
        case HR_RESULT_OK:
            note_write(st, NULL); /* an ok is a write done */
            st->stats.ok++;
            break;
        case HR_RESULT_DUPLICATE:
            st->stats.duplicate++;
            break;
        case HR_RESULT_UNKNOWN_HOST:
            st->stats.unknown_host++;
            break;
        default:
            st->stats.failed++;
            st->stats.full += reason == HR_E_FULL;
            st->stats.source_full += reason == HR_E_SOURCE_FULL;
            break;
        }
        c->slots[i].cb(c->slots[i].arg, res, reason);
    }
    apply_changes(st, reply, (size_t)c->nslots);
}

/* Sets a batch aside to be answered RETRY_LATER by answer_failed(). */
static void park_failed(struct hr_store *st, struct cmd *c)
{
    c->link = st->failed;
    st->failed = c;
}

/* Answers RETRY_LATER to every request of the batches that could not be sent. */
static void answer_failed(struct hr_store *st)
{
    struct cmd *c;
    while ((c = st->failed)) {
        st->failed = c->link;
        st->inflight -= (size_t)c->nslots;
        c->handle(c, NULL);
        cmd_recycle(st, c);
    }
}

/* Sends a batch, or parks it to be answered RETRY_LATER from the flush
 * event. Its requests stay counted in `inflight` either way. */
static void send_batch(struct hr_store *st, struct cmd *c)
{
    if (transport_send(st, &c->call) == HR_OK) {
        st->stats.submitted++;
        return;
    }
    park_failed(st, c);
    event_active(st->flush_ev, EV_TIMEOUT, 0);
}

/* The hash slot of group g of a batch's buckets (from its first key). */
static int group_slot(const struct cmd *c, int g)
{
    size_t len;
    const char *key = hr_script_key_at(&c->args, g * HR_SCRIPT_BKEYS, &len);
    return hr_cluster_keyslot(key, len);
}

/* The bucket group (its place in KEYS) of request i of a batch. */
static int request_group(const struct cmd *c, int i)
{
    size_t len;
    const char *v = hr_script_arg(
        &c->args, HR_SCRIPT_REQUESTS_NARGS + i * HR_SCRIPT_REQ_STRIDE + HR_SCRIPT_REQ_BUCKET, &len);
    int g = 0;
    for (size_t j = 0; j < len; j++) /* written by hr_script_requests_add: digits */
        g = g * 10 + (v[j] - '0');
    return g;
}

/* On a Redis Cluster a script call's keys must all be of one hash slot
 * (Redis 7 refuses declared keys of several slots with CROSSSLOT, whatever
 * the script's flags), so a batch whose buckets fall in several slots goes
 * as one call per slot: each with the keys of its buckets and its requests
 * in their order, each answering its own callers. When a part cannot be
 * made (out of memory), the whole batch is answered RETRY_LATER. */
static void split_batch(struct hr_store *st, struct cmd *c)
{
    int slot[BATCH_MAX], req_slot[BATCH_MAX], part_of[BATCH_MAX];
    int nparts = 0, part_slot[BATCH_MAX];
    for (int g = 0; g < c->nbuckets; g++)
        slot[g] = group_slot(c, g);
    for (int i = 0; i < c->nslots; i++) {
        req_slot[i] = slot[request_group(c, i)];
        int p = 0;
        while (p < nparts && part_slot[p] != req_slot[i])
            p++;
        if (p == nparts)
            part_slot[nparts++] = req_slot[i];
        part_of[i] = p;
    }
    if (nparts == 1) {
        send_batch(st, c);
        return;
    }
    struct cmd *part[BATCH_MAX];
    int made = 0;
    bool ok = true;
    while (ok && made < nparts) {
        int n = 0;
        for (int i = 0; i < c->nslots; i++)
            n += part_of[i] == made;
        struct cmd *s = cmd_get(st, HR_SCRIPT_REQUESTS, handle_requests, NULL);
        if (!s) {
            ok = false;
            break;
        }
        part[made++] = s;
        if (s->slotcap < n) {
            struct slot *v = realloc(s->slots, (size_t)n * sizeof(*v));
            if (!v) {
                ok = false;
                break;
            }
            s->slots = v;
            s->slotcap = n;
        }
    }
    if (!ok) {
        /* Nothing sent yet: the batch as it is fails, and the parts made go
         * back to the free list. */
        for (int p = 0; p < made; p++)
            cmd_recycle(st, part[p]);
        park_failed(st, c);
        event_active(st->flush_ev, EV_TIMEOUT, 0);
        return;
    }
    size_t len;
    for (int p = 0; p < nparts; p++)
        for (int a = 0; a < HR_SCRIPT_REQUESTS_NARGS; a++) {
            const char *v = hr_script_arg(&c->args, a, &len);
            hr_script_args_mem(&part[p]->args, v, len);
        }
    for (int i = 0; i < c->nslots; i++) {
        struct cmd *s = part[part_of[i]];
        uint32_t b = c->buckets[request_group(c, i)];
        int g = 0;
        while (g < s->nbuckets && s->buckets[g] != b)
            g++;
        if (g == s->nbuckets) {
            s->buckets[s->nbuckets++] = b;
            hr_layout_bucket_keys(layout(st), b, &s->args);
        }
        int first = HR_SCRIPT_REQUESTS_NARGS + i * HR_SCRIPT_REQ_STRIDE;
        for (int f = 0; f < HR_SCRIPT_REQ_STRIDE; f++) {
            if (f == HR_SCRIPT_REQ_BUCKET) {
                hr_script_args_u64(&s->args, (uint64_t)g);
            } else {
                const char *v = hr_script_arg(&c->args, first + f, &len);
                hr_script_args_mem(&s->args, v, len);
            }
        }
        s->slots[s->nslots++] = c->slots[i];
    }
    c->nslots = 0; /* its requests are the parts' now */
    cmd_recycle(st, c);
    for (int p = 0; p < nparts; p++)
        send_batch(st, part[p]);
}

/* Sends the open batch. Its requests were all promised an answer, so when it
 * cannot be sent each is answered RETRY_LATER, from the flush event: never
 * inside hr_store_submit(), whose caller may still use `arg` when it returns. */
static void flush_batch(struct hr_store *st)
{
    struct cmd *c = st->open;
    if (!c)
        return;
    st->open = NULL;
    if (c->nslots == 0) { /* opened, then its first request did not fit */
        cmd_recycle(st, c);
        return;
    }
    if (st->cc)
        split_batch(st, c);
    else
        send_batch(st, c);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    flush_batch(arg);
    answer_failed(arg);
}

/* The host cap, bucket by bucket (a script sees one bucket at a time): a
 * bucket's share of max_hosts, plus three standard deviations of the number
 * of hosts a bucket gets (Poisson, the hash spreads them), so that a bucket
 * does not refuse hosts long before the registry holds max_hosts. The
 * registry then holds at most about max_hosts, and at most
 * buckets * bucket_cap: exact with one bucket, a few percent over with many
 * buckets and a large cap, far over when max_hosts is not much more than
 * the bucket count (the store warns once). 0: no cap. */
static uint32_t bucket_cap(uint32_t max_hosts, uint32_t buckets)
{
    if (!max_hosts || buckets <= 1)
        return max_hosts;
    double mean = (double)max_hosts / buckets;
    double cap = ceil(mean + 3 * sqrt(mean) + 1);
    return cap > max_hosts ? max_hosts : (uint32_t)cap;
}

/* Requests of one event-loop turn go to Redis as one script call: the daemon's
 * receive batch costs one round trip and one script invocation instead of one
 * per datagram, and a lone request still leaves at the end of its turn. */
/* --- any-region mode: the known regions, and admitting new ones --- */

static uint32_t region_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* The index of a known region, or -1. */
static int region_find(const struct known_regions *k, const char *name)
{
    for (uint32_t i = region_hash(name) % REGION_INDEX;; i = (i + 1) % REGION_INDEX) {
        int at = k->index[i] - 1;
        if (at < 0)
            return -1;
        if (strcmp(k->name[at], name) == 0)
            return at;
    }
}

static void region_add(struct known_regions *k, const char *name)
{
    if (k->n == HR_REGIONS_MAX || strlen(name) > HR_REGION_MAX || region_find(k, name) >= 0)
        return;
    memcpy(k->name[k->n], name, strlen(name) + 1);
    k->seen[k->n] = false;
    uint32_t i = region_hash(name) % REGION_INDEX;
    while (k->index[i])
        i = (i + 1) % REGION_INDEX;
    k->index[i] = (int16_t)(++k->n);
}

/* Reads regions.lua's reply: the known regions after the `given` flags.
 * The regions this store knew and the reply left out (another program
 * pruned them) stay until the next refresh: they cost a find nothing. */
static void regions_take(struct hr_store *st, const redisReply *reply, size_t given)
{
    for (size_t i = given; i < reply->elements; i++)
        if (reply->element[i]->type == REDIS_REPLY_STRING)
            region_add(st->known, reply->element[i]->str);
}

static void admission_end(struct hr_store *st, struct admission *ad, bool admitted, int err);

static void handle_admission(struct cmd *c, redisReply *reply)
{
    struct hr_store *st = c->st;
    struct admission *ad = c->arg;
    bool ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
              reply->element[0]->type == REDIS_REPLY_INTEGER;
    if (ok) {
        regions_take(st, reply, 1);
        if (reply->element[0]->integer == 1)
            region_add(st->known, ad->region);
        else
            HR_LOG_LIMITED(HR_LOG_WARN,
                           "region '%s' refused: the registry knows %" PRIu32
                           " regions already (--max-regions)",
                           ad->region, st->cfg.max_regions);
    }
    admission_end(st, ad, ok && reply->element[0]->integer == 1,
                  ok ? HR_E_REGIONS_FULL : HR_E_UNAVAILABLE);
}

/* Submits (admitted) or answers (refused: `err`) the heartbeats that waited
 * for region ad->region, and forgets the admission. */
static void admission_end(struct hr_store *st, struct admission *ad, bool admitted, int err)
{
    for (struct admission **p = &st->admissions; *p; p = &(*p)->next)
        if (*p == ad) {
            *p = ad->next;
            break;
        }
    struct parked *w = ad->head;
    free(ad);
    while (w) {
        struct parked *next = w->next;
        st->inflight--;
        int rc = admitted ? hr_store_submit(st, &w->req, w->flags, w->cb, w->arg) : err;
        if (rc != HR_OK)
            w->cb(w->arg, rc == HR_E_REGIONS_FULL ? HR_RESULT_INVALID : HR_RESULT_RETRY_LATER, rc);
        free(w);
        w = next;
    }
}

/* Parks a heartbeat of a region this store does not know, sending the
 * region's admission unless one is under way. */
static int park_for_region(struct hr_store *st, const struct hr_request *req, unsigned flags,
                           hr_store_cb *cb, void *arg)
{
    struct admission *ad = st->admissions;
    while (ad && strcmp(ad->region, req->region) != 0)
        ad = ad->next;
    struct parked *w = calloc(1, sizeof(*w));
    if (!w)
        return HR_E_NOMEM;
    *w = (struct parked){*req, flags, cb, arg, NULL};
    if (!ad) {
        int err;
        if (!(ad = calloc(1, sizeof(*ad)))) {
            free(w);
            return HR_E_NOMEM;
        }
        struct cmd *c = cmd_new(st, HR_SCRIPT_REGIONS, handle_admission, ad, &err);
        if (!c) {
            free(ad);
            free(w);
            return err;
        }
        memcpy(ad->region, req->region, strlen(req->region) + 1);
        ad->tail = &ad->head;
        hr_script_regions_args(&c->args, st->cfg.prefix, st->cfg.max_regions, REGION_STALE_MS);
        hr_script_args_str(&c->args, req->region);
        if ((err = cmd_submit(st, c)) != HR_OK) {
            free(ad);
            free(w);
            return err;
        }
        ad->next = st->admissions;
        st->admissions = ad;
    }
    *ad->tail = w;
    ad->tail = &w->next;
    st->inflight++;
    return HR_OK;
}

static void handle_regions(struct cmd *c, redisReply *reply)
{
    struct hr_store *st = c->st;
    st->regions_refreshing = false;
    if (reply && reply->type == REDIS_REPLY_ARRAY) {
        regions_take(st, reply, (size_t)c->nbuckets);
        st->regions_loaded = true;
    }
}

/* Reads the known regions again, marking seen those that heartbeats here
 * named since the last time: every REGIONS_REFRESH_MS once read, and soon
 * after start until then (a find naming no region needs them). */
static void on_regions(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_store *st = arg;
    int err;
    uint32_t next = st->regions_loaded ? REGIONS_REFRESH_MS : 100;
    struct timeval tv = {next / 1000, (next % 1000) * 1000};
    event_add(st->regions_ev, &tv);
    if (st->regions_refreshing || !ready(st))
        return;
    struct cmd *c = cmd_new(st, HR_SCRIPT_REGIONS, handle_regions, NULL, &err);
    if (!c)
        return;
    hr_script_regions_args(&c->args, st->cfg.prefix, st->cfg.max_regions, REGION_STALE_MS);
    int seen = 0;
    for (size_t i = 0; i < st->known->n; i++)
        if (st->known->seen[i]) {
            st->known->seen[i] = false;
            hr_script_args_str(&c->args, st->known->name[i]);
            seen++;
        }
    c->nbuckets = seen; /* the reply's flags come first */
    if (cmd_submit(st, c) == HR_OK)
        st->regions_refreshing = true;
}

size_t hr_store_regions(const struct hr_store *st, const char *out[HR_REGIONS_MAX])
{
    if (!st->known)
        return 0;
    for (size_t i = 0; i < st->known->n; i++)
        out[i] = st->known->name[i];
    return st->known->n;
}

int hr_store_submit(struct hr_store *st, const struct hr_request *req, unsigned flags,
                    hr_store_cb *cb, void *arg)
{
    int err;
    if (!ready(st))
        return HR_E_UNAVAILABLE;
    if (st->known && req->type == HR_MSG_HEARTBEAT) {
        int at = region_find(st->known, req->region);
        if (at < 0) {
            if (st->inflight >= st->cfg.max_inflight)
                return HR_E_OVERLOAD;
            return park_for_region(st, req, flags, cb, arg);
        }
        st->known->seen[at] = true;
    }
    if (st->inflight >= st->cfg.max_inflight || behind(st, request_slot(st, req))) {
        st->stats.refused_behind += st->inflight < st->cfg.max_inflight;
        return HR_E_OVERLOAD;
    }
    struct cmd *c = st->open;
    if (!c) {
        if (!(c = cmd_new(st, HR_SCRIPT_REQUESTS, handle_requests, NULL, &err)))
            return err;
        uint32_t nb = layout(st)->buckets, cap = bucket_cap(st->cfg.max_hosts, nb);
        if (!st->cap_warned && st->cfg.max_hosts && nb > 1 && st->cfg.max_hosts / nb < 64) {
            st->cap_warned = true;
            HR_LOG(HR_LOG_WARN,
                   "--max-hosts %" PRIu32 " over %" PRIu32 " buckets: at most %" PRIu32
                   " hosts a bucket, so the registry may hold up to %" PRIu64
                   " (the cap is applied per bucket; fewer buckets make it closer)",
                   st->cfg.max_hosts, nb, cap, (uint64_t)cap * nb);
        }
        hr_script_requests_header(&c->args, st->cfg.ttl_ms, cap);
        st->open = c;
        event_active(st->flush_ev, EV_TIMEOUT, 0);
    }
    if (c->nslots == c->slotcap) {
        int n = c->slotcap ? 2 * c->slotcap : 16;
        struct slot *s = realloc(c->slots, (size_t)n * sizeof(*s));
        if (!s)
            return HR_E_NOMEM;
        c->slots = s;
        c->slotcap = n;
    }
    hr_script_requests_add(&c->args, layout(st), req, flags & HR_STORE_NO_CREATE, c->buckets,
                           &c->nbuckets);
    c->slots[c->nslots++] = (struct slot){cb, arg};
    st->inflight++;
    if (c->nslots == BATCH_MAX)
        flush_batch(st);
    return HR_OK;
}

static void claim_end(struct claim_op *op, int err, const struct hr_host_info *h)
{
    struct hr_store *st = op->st;
    if (op->starting) {
        op->start_err = err != HR_OK ? err : HR_E_UNAVAILABLE;
        return;
    }
    for (struct claim_op **p = &st->claims; *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            break;
        }
    op->cb(op->arg, err, h);
    free(op);
}

static void claim_next(struct claim_op *op);

/* A claim's answer from one bucket: a host, or none there. */
static void handle_claim(struct cmd *c, redisReply *reply)
{
    struct claim_op *op = c->claim;
    struct hr_host_info h;
    int got = hr_script_claimed(reply, &h);
    if (got >= 0)
        apply_changes(c->st, reply, HR_SCRIPT_CLAIMED_N);
    if (got < 0)
        claim_end(op, HR_E_UNAVAILABLE, NULL);
    else if (got > 0)
        claim_end(op, HR_OK, &h);
    else if (op->q.host_id || op->cancelled)
        claim_end(op, HR_OK, NULL);
    else {
        op->tries++;
        claim_next(op);
    }
}

/* Sends the claim of op's query in bucket `b`, for region q.regions[region]
 * (every region when a host is wanted). */
static void claim_in(struct claim_op *op, uint32_t b)
{
    struct hr_store *st = op->st;
    int err;
    struct cmd *c = cmd_new(st, HR_SCRIPT_CLAIM, handle_claim, NULL, &err);
    if (!c) {
        claim_end(op, err == HR_E_OVERLOAD ? HR_E_UNAVAILABLE : HR_E_UNAVAILABLE, NULL);
        return;
    }
    c->claim = op;
    op->bucket = b;
    /* Which idle host: uniform among the bucket's (claim.lua). xorshift64*:
     * fast, and seeded from the kernel so nobody can predict the next one. */
    struct hr_claim_query pq = op->q;
    st->rng ^= st->rng >> 12, st->rng ^= st->rng << 25, st->rng ^= st->rng >> 27;
    pq.pick = (uint32_t)((st->rng * 0x2545f4914f6cdd1dULL) >> 33);
    if (!pq.host_id) {
        pq.regions[0] = op->q.regions[op->region];
        pq.nregions = 1;
    }
    hr_script_claim_args(&c->args, layout(st), b, &pq);
    if (pq.claim_id) {
        size_t i = st->recent_next++ % RECENT_CLAIMS;
        snprintf(st->recent[i].id, sizeof(st->recent[i].id), "%s", pq.claim_id);
        st->recent[i].bucket = b;
    }
    if (cmd_submit(st, c) != HR_OK)
        claim_end(op, HR_E_UNAVAILABLE, NULL);
}

/* SRANDMEMBER's answer: a bucket of the region that may hold idle hosts. */
static void handle_pick(struct cmd *c, redisReply *reply)
{
    struct claim_op *op = c->claim;
    uint32_t b;
    if (!reply) {
        claim_end(op, HR_E_UNAVAILABLE, NULL);
    } else if (op->cancelled) {
        claim_end(op, HR_OK, NULL);
    } else if (reply->type == REDIS_REPLY_STRING &&
               hr_parse_u32(reply->str, 0, layout(c->st)->buckets - 1, &b) == 0) {
        claim_in(op, b);
    } else { /* none: the next region */
        op->region++;
        op->tries = 0;
        claim_next(op);
    }
}

/* The next step of a find: a bucket of the current region, or the next
 * region, or the end (no idle host). */
static void claim_next(struct claim_op *op)
{
    struct hr_store *st = op->st;
    if (op->tries >= FIND_TRIES) {
        op->region++;
        op->tries = 0;
    }
    if (op->region >= op->q.nregions || op->cancelled) {
        claim_end(op, HR_OK, NULL);
        return;
    }
    int err;
    struct cmd *c = cmd_new(st, HR_CONN_PLAIN, handle_pick, NULL, &err);
    if (!c) {
        claim_end(op, HR_E_UNAVAILABLE, NULL);
        return;
    }
    c->claim = op;
    char tag[HR_REGION_MAX + 8], key[128];
    snprintf(tag, sizeof(tag), "r.%s", op->q.regions[op->region]);
    hr_layout_key(key, sizeof(key), st->cfg.prefix, tag, hr_script_key(HR_SCRIPT_KEY_SUMMARY_SET));
    hr_script_args_str(&c->args, "SRANDMEMBER");
    hr_script_args_str(&c->args, key);
    if (cmd_submit(st, c) != HR_OK)
        claim_end(op, HR_E_UNAVAILABLE, NULL);
}

/* Copies s into op->text at *at: the copy, or NULL when it does not fit. */
static const char *op_copy(struct claim_op *op, size_t *at, const char *s)
{
    size_t n = strlen(s) + 1;
    if (*at + n > sizeof(op->text))
        return NULL;
    memcpy(op->text + *at, s, n);
    *at += n;
    return op->text + *at - n;
}

int hr_store_claim(struct hr_store *st, const struct hr_claim_query *q, hr_store_claim_cb *cb,
                   void *arg)
{
    if (!ready(st))
        return HR_E_UNAVAILABLE;
    if (st->inflight >= st->cfg.max_inflight || behind(st, -1)) {
        st->stats.refused_behind += st->inflight < st->cfg.max_inflight;
        return HR_E_OVERLOAD;
    }
    struct claim_op *op = calloc(1, sizeof(*op));
    if (!op)
        return HR_E_NOMEM;
    op->st = st;
    op->cb = cb;
    op->arg = arg;
    op->q = *q;
    size_t at = 0;
    bool fits = true;
    for (size_t i = 0; i < q->nregions; i++)
        fits &= (op->q.regions[i] = op_copy(op, &at, q->regions[i])) != NULL;
    if (q->host_id)
        fits &= (op->q.host_id = op_copy(op, &at, q->host_id)) != NULL;
    if (q->claim_id)
        fits &= (op->q.claim_id = op_copy(op, &at, q->claim_id)) != NULL;
    if (!fits) {
        free(op);
        return HR_E_NOMEM;
    }
    op->next = st->claims;
    st->claims = op;
    /* Answered from the event loop, never inside this call: a first step
     * that cannot be sent is this call's error. */
    op->starting = true;
    if (q->host_id) {
        char id[HR_LAYOUT_ID_MAX];
        size_t n = hr_layout_id_pack(q->host_id, id);
        claim_in(op, hr_layout_bucket(layout(st), id, n));
    } else {
        claim_next(op);
    }
    op->starting = false;
    if (op->start_err) {
        int err = op->start_err;
        st->claims = op->next; /* still first: nothing ran in between */
        free(op);
        return err;
    }
    return HR_OK;
}

/* Buckets a list, count or sweep call takes: FANOUT, or one on a cluster. */
static uint32_t fan_step(const struct hr_store *st)
{
    return st->cc ? 1 : FANOUT;
}

static cmd_handler handle_list, handle_count, handle_sweep;

/* Whether the sweep's next call removes expired entries (sweep.lua reads
 * each of its buckets whole for that): only in the round's slice of chunks. */
static bool sweep_trims(const struct fan_op *f)
{
    uint32_t chunks = (f->nbuckets + FANOUT - 1) / FANOUT;
    return (f->next / FANOUT + chunks - f->trim_from) % chunks < f->trim_n;
}

/* Sends parts of f until FAN_WINDOW are in flight or every bucket has gone
 * (a list stops once it has its limit). HR_OK, or the error of a part that
 * could not be sent: f is then failed, and sends no more. */
static int fan_send(struct fan_op *f)
{
    struct hr_store *st = f->st;
    cmd_handler *handle = f->script == HR_SCRIPT_LIST    ? handle_list
                          : f->script == HR_SCRIPT_COUNT ? handle_count
                                                         : handle_sweep;
    bool more = true;
    /* A sweep is background work: one call at a time on a single Redis, so
     * that requests wait behind one of its calls at most; a few on a cluster,
     * where each call is one bucket and they spread over the masters. */
    int window = f->script != HR_SCRIPT_SWEEP ? FAN_WINDOW : st->cc ? 4 : 1;
    while (!f->failed && f->pending < window &&
           (more = f->next < f->nbuckets && !(f->list && f->nhosts >= f->q.limit)) && ready(st)) {
        /* A sweep call that trims reads each of its buckets whole: fewer of
         * them a call, so that none holds Redis long. */
        bool trim = f->script == HR_SCRIPT_SWEEP && sweep_trims(f);
        uint32_t step = trim && f->step > TRIM_STEP ? TRIM_STEP : f->step;
        uint32_t n = f->nbuckets - f->next < step ? f->nbuckets - f->next : step;
        int err;
        struct cmd *c = cmd_new(st, f->script, handle, NULL, &err);
        if (!c) {
            f->failed = 1;
            return err;
        }
        c->fan = f;
        if (f->script == HR_SCRIPT_LIST)
            hr_script_list_args(&c->args, layout(st), f->next, n, &f->q);
        else if (f->script == HR_SCRIPT_COUNT)
            hr_script_count_args(&c->args, layout(st), f->next, n, f->q.regions, f->q.nregions);
        else
            hr_script_sweep_args(&c->args, layout(st), f->next, n, SWEEP_MAX, f->state, trim);
        int rc = cmd_submit(st, c);
        if (rc != HR_OK) {
            f->failed = 1;
            return rc;
        }
        f->next += n;
        f->pending++;
    }
    if (more && !f->failed && f->pending < window)
        f->failed = 1; /* the store is being freed, or lost Redis: the rest is not read */
    return HR_OK;
}

/* The end of a list, a count or a sweep: the caller's answer. */
static void fan_end(struct fan_op *f)
{
    struct hr_store *st = f->st;
    if (f->list)
        f->list(f->arg, f->failed ? HR_E_UNAVAILABLE : HR_OK, f->failed ? NULL : f->hosts,
                f->failed ? 0 : f->nhosts);
    else if (f->count)
        f->count(f->arg, f->failed ? HR_E_UNAVAILABLE : HR_OK, f->failed ? NULL : f->counts,
                 f->q.nregions);
    else {
        if (f->returned)
            HR_LOG(HR_LOG_INFO, "claims: %llu unconfirmed claims returned to idle",
                   (unsigned long long)f->returned);
        if (st->sweep == f) {
            st->sweep = NULL;
            /* The next round trims the next slice; a round that failed
             * leaves its slice to the next one. */
            if (!f->failed)
                st->trim_at = f->trim_from + f->trim_n;
        }
    }
    free(f->hosts);
    free(f);
}

/* A part is in: the next ones go, and the last one ends f. */
static void fan_done(struct fan_op *f)
{
    f->pending--;
    fan_send(f);
    if (f->pending == 0)
        fan_end(f);
}

static void handle_list(struct cmd *c, redisReply *reply)
{
    struct fan_op *f = c->fan;
    long n = hr_script_nlisted(reply);
    if (n < 0) {
        f->failed = 1;
    } else if (!f->failed) {
        size_t room = f->q.limit > f->nhosts ? f->q.limit - f->nhosts : 0;
        size_t take = (size_t)n < room ? (size_t)n : room;
        struct hr_host_info *h =
            take ? realloc(f->hosts, (f->nhosts + take) * sizeof(*h)) : f->hosts;
        if (take && !h) {
            f->failed = 1;
        } else {
            f->hosts = h;
            for (size_t i = 0; i < take; i++)
                hr_script_listed(reply, i, &f->hosts[f->nhosts + i]);
            f->nhosts += take;
        }
    }
    fan_done(f);
}

static void handle_count(struct cmd *c, redisReply *reply)
{
    struct fan_op *f = c->fan;
    if (!reply || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != f->q.nregions * HR_NSTATUSES) {
        f->failed = 1;
    } else {
        for (size_t i = 0; i < reply->elements; i++)
            if (reply->element[i]->type == REDIS_REPLY_INTEGER)
                f->counts[i] += (uint64_t)reply->element[i]->integer;
    }
    fan_done(f);
}

static void handle_sweep(struct cmd *c, redisReply *reply)
{
    struct fan_op *f = c->fan;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER) {
        if (reply->element[0]->integer > 0)
            f->returned += (uint64_t)reply->element[0]->integer;
        apply_changes(c->st, reply, 1);
    }
    fan_done(f);
}

/* A new fan-out of `script` with its regions copied into it; NULL when out
 * of memory or when they do not fit. */
static struct fan_op *fan_new(struct hr_store *st, int script, const char *const *regions,
                              size_t nregions)
{
    if (nregions > HR_REGIONS_MAX)
        return NULL;
    struct fan_op *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->st = st;
    f->script = script;
    f->step = fan_step(st);
    f->nbuckets = layout(st)->buckets;
    size_t at = 0;
    for (size_t i = 0; i < nregions; i++) {
        size_t n = strlen(regions[i]) + 1;
        if (at + n > sizeof(f->text)) {
            free(f);
            return NULL;
        }
        memcpy(f->text + at, regions[i], n);
        f->q.regions[i] = f->text + at;
        at += n;
    }
    f->q.nregions = nregions;
    return f;
}

/* Sends the first parts of f. HR_OK: the answer comes later. Otherwise
 * nothing was sent, f is freed and the caller never called back. */
static int fan_start(struct fan_op *f)
{
    int rc = fan_send(f);
    if (f->pending > 0)
        return HR_OK; /* a later part that failed is in the answer */
    free(f);
    return rc != HR_OK ? rc : HR_E_UNAVAILABLE;
}

int hr_store_list(struct hr_store *st, const struct hr_list_query *q, hr_store_list_cb *cb,
                  void *arg)
{
    if (!ready(st))
        return HR_E_UNAVAILABLE;
    struct fan_op *f = fan_new(st, HR_SCRIPT_LIST, q->regions, q->nregions);
    if (!f)
        return HR_E_NOMEM;
    f->list = cb;
    f->arg = arg;
    f->q.status = q->status;
    f->q.limit = q->limit;
    return fan_start(f);
}

int hr_store_count(struct hr_store *st, const char *const *regions, size_t nregions,
                   hr_store_count_cb *cb, void *arg)
{
    if (!ready(st))
        return HR_E_UNAVAILABLE;
    if (nregions > HR_REGIONS_MAX)
        return HR_E_CONFIG;
    struct fan_op *f = fan_new(st, HR_SCRIPT_COUNT, regions, nregions);
    if (!f)
        return HR_E_NOMEM;
    f->count = cb;
    f->arg = arg;
    return fan_start(f);
}

static void handle_release(struct cmd *c, redisReply *reply)
{
    bool ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
              reply->element[0]->type == REDIS_REPLY_INTEGER;
    if (ok && reply->element[0]->integer == 1)
        HR_LOG(HR_LOG_INFO, "claims: a claim whose answer was lost returned its host to idle");
    if (ok)
        apply_changes(c->st, reply, 1);
    c->cb.release(c->arg, ok ? HR_OK : HR_E_UNAVAILABLE);
}

static void handle_release_none(struct cmd *c, redisReply *reply)
{
    c->cb.release(c->arg, reply ? HR_OK : HR_E_UNAVAILABLE);
}

int hr_store_release(struct hr_store *st, const char *claim_id, uint32_t lease_ms,
                     hr_store_release_cb *cb, void *arg)
{
    /* A find still under way takes no further step; the bucket its claim
     * went to (in flight, or done) is the one to undo it in. */
    for (struct claim_op *op = st->claims; op; op = op->next)
        if (op->q.claim_id && strcmp(op->q.claim_id, claim_id) == 0)
            op->cancelled = true;
    bool found = false;
    uint32_t bucket = 0;
    /* Newest first: a find's last claim is the one that may have taken a
     * host (the ones before it found none). */
    for (size_t k = 1; k <= RECENT_CLAIMS && !found; k++) {
        size_t i = (st->recent_next - k) % RECENT_CLAIMS;
        if (strcmp(st->recent[i].id, claim_id) == 0) {
            found = true;
            bucket = st->recent[i].bucket;
        }
    }
    int err;
    struct cmd *c =
        cmd_new(st, found ? HR_SCRIPT_RELEASE : HR_CONN_PLAIN, handle_release, arg, &err);
    if (!c)
        return err;
    c->cb.release = cb;
    if (found) {
        hr_script_release_args(&c->args, layout(st), bucket, claim_id, lease_ms);
    } else {
        /* Never sent to any bucket: nothing to undo. A PING keeps the
         * answer asynchronous, as the caller expects. */
        c->handle = handle_release_none;
        hr_script_args_str(&c->args, "PING");
    }
    return cmd_submit(st, c);
}

static void handle_probe(struct cmd *c, redisReply *reply)
{
    struct hr_store *st = c->st;
    if (reply) {
        note_write(st, NULL);
        c->cb.probe(c->arg, HR_OK, NULL);
    } else {
        /* on_done has noted a refusal already; any other error refuses the
         * write too (an ACL without +set, say), so it is said as well. */
        c->cb.probe(c->arg, HR_E_UNAVAILABLE, c->call.error);
    }
}

/* Readiness is "Redis takes writes now", since writes are the registry's
 * whole job, and a PING is answered by a replica (READONLY), by a Redis at
 * its maxmemory with noeviction (OOM) and one that failed to save with
 * stop-writes-on-bgsave-error (MISCONF) alike. Remembering the errors of
 * earlier writes would be stale (none yet, or the last one long ago), so
 * each probe asks: SET <prefix>readyz "" XX PX 1. Redis refuses it in all
 * three cases before looking at the key (the checks go by the command's
 * write and deny-oom flags), and when it takes it, XX on a key that does
 * not exist writes nothing: no data, no AOF entry, nothing replicated; so it
 * costs what a PING costs. Were the key ever created by someone, PX 1 makes
 * that the last write. SET on a key under the prefix is in the documented
 * ACL already. */
static void probe_args(struct cmd *c, const char *key)
{
    hr_script_args_str(&c->args, "SET");
    hr_script_args_str(&c->args, key);
    hr_script_args_str(&c->args, "");
    hr_script_args_str(&c->args, "XX");
    hr_script_args_str(&c->args, "PX");
    hr_script_args_str(&c->args, "1");
}

/* One master's answer to a cluster probe; the last one answers the caller. */
static void handle_probe_part(struct cmd *c, redisReply *reply)
{
    struct hr_store *st = c->st;
    struct probe_op *p = c->pop;
    if (!reply && !p->failed) {
        size_t m;
        const char *name = st->cc && hr_cluster_master_of(hr_cconn_router(st->cc), c->call.slot, &m)
                               ? hr_cluster_master_name(hr_cconn_router(st->cc), m)
                               : NULL;
        p->failed = true;
        snprintf(p->refused, sizeof(p->refused), "master %s: %.200s", name ? name : "?",
                 c->call.error ? c->call.error : "no answer");
    }
    if (--p->pending > 0)
        return;
    if (!p->failed)
        note_write(st, NULL);
    p->cb(p->arg, p->failed ? HR_E_UNAVAILABLE : HR_OK, p->failed ? p->refused : NULL);
    free(p);
}

/* On a cluster, every master must take writes: the probe goes to each, on a
 * key of a slot it owns ("<prefix>readyz{<n>}", the first n that fits: a
 * few tries, each master owning its share of the 16384 slots). */
static int probe_cluster(struct hr_store *st, hr_store_probe_cb *cb, void *arg)
{
    struct hr_cluster *router = hr_cconn_router(st->cc);
    size_t nmasters = hr_cluster_nmasters(router);
    struct probe_op *p = calloc(1, sizeof(*p));
    if (!p)
        return HR_E_NOMEM;
    p->cb = cb;
    p->arg = arg;
    int rc = HR_OK;
    for (size_t m = 0; m < nmasters && rc == HR_OK; m++) {
        char key[sizeof(st->cfg.prefix) + sizeof(PROBE_KEY) + 16];
        bool found = false;
        for (unsigned n = 0; n < 1000000 && !found; n++) {
            int len = snprintf(key, sizeof(key), "%s%s{%u}", st->cfg.prefix, PROBE_KEY, n);
            found = hr_cluster_owns(router, m, hr_cluster_keyslot(key, (size_t)len));
        }
        if (!found)
            continue; /* a master of no slot: nothing to probe there */
        struct cmd *c = cmd_new(st, HR_CONN_PLAIN, handle_probe_part, NULL, &rc);
        if (!c)
            break;
        c->pop = p;
        probe_args(c, key);
        if ((rc = cmd_submit(st, c)) == HR_OK)
            p->pending++;
    }
    if (p->pending > 0) {
        if (rc != HR_OK && !p->failed) { /* the masters asked answer; the rest is a failure */
            p->failed = true;
            snprintf(p->refused, sizeof(p->refused), "cannot probe every master");
        }
        return HR_OK;
    }
    free(p);
    return rc != HR_OK ? rc : HR_E_UNAVAILABLE;
}

int hr_store_probe(struct hr_store *st, hr_store_probe_cb *cb, void *arg)
{
    if (st->cc && ready(st))
        return probe_cluster(st, cb, arg);
    int err;
    struct cmd *c = cmd_new(st, HR_CONN_PLAIN, handle_probe, arg, &err);
    if (!c)
        return err;
    c->cb.probe = cb;
    char key[sizeof(st->cfg.prefix) + sizeof(PROBE_KEY)];
    snprintf(key, sizeof(key), "%s%s", st->cfg.prefix, PROBE_KEY);
    probe_args(c, key);
    return cmd_submit(st, c);
}

/* Hosts whose claim lease ended unconfirmed go back to idle, what expired
 * goes (one sweep at a time: a slow one is not doubled). */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_store *st = arg;
    if (!ready(st) || st->sweep)
        return;
    /* A sweep can wait while Redis is behind (it changes memory and lapsed
     * claims, not answers), though not for ever. */
    if (behind(st, -1) && st->sweeps_put_off++ < SWEEP_PUT_OFF_MAX)
        return;
    st->sweeps_put_off = 0;
    struct fan_op *f = fan_new(st, HR_SCRIPT_SWEEP, NULL, 0);
    if (!f)
        return;
    f->state = st->sweeps++ % SWEEP_STATE_EVERY == 0;
    /* Expired entries go in a slice of the buckets a round, the next slice
     * the next round, so that every bucket has its turn once per
     * TRIM_PASS_MS whatever the bucket count, at a cost per round that grows
     * with the bucket count only as much as that takes. Readers never see
     * an expired host meanwhile: this is memory, not answers. */
    uint32_t chunks = (f->nbuckets + FANOUT - 1) / FANOUT;
    uint64_t n = ((uint64_t)chunks * st->cfg.sweep_ms + TRIM_PASS_MS - 1) / TRIM_PASS_MS;
    f->trim_from = st->trim_at % chunks;
    f->trim_n = n < 1 ? 1 : n > chunks ? chunks : (uint32_t)n;
    st->sweep = f;
    if (fan_start(f) != HR_OK)
        st->sweep = NULL; /* freed */
}

/* The cluster connection, seeded by the URL's nodes. */
static struct hr_cconn *cluster_new(struct hr_store *st, char *err, size_t errlen)
{
    struct hr_cconn_config cc = {.redis = st->cfg.redis,
                                 .timeout_ms = st->cfg.timeout_ms,
                                 .wait_replicas = st->cfg.wait_replicas,
                                 .layout = st->new_layout};
    return hr_cconn_new(st->base, &cc, err, errlen);
}

/* The single connection found a Redis Cluster node (inside its callback:
 * it is replaced from the event loop, by on_switch). */
static void on_cluster(void *arg)
{
    struct hr_store *st = arg;
    event_active(st->switch_ev, EV_TIMEOUT, 0);
}

/* Replaces the single connection (never ready: nothing is in flight on it)
 * by the cluster's, with the node as its seed. */
static void on_switch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_store *st = arg;
    if (!st->conn || st->cc)
        return;
    char err[256];
    struct hr_cconn *cc = cluster_new(st, err, sizeof(err));
    if (!cc) {
        HR_LOG(HR_LOG_ERROR, "redis: cannot go through the cluster: %s", err);
        return; /* the connection stays, stopped: never ready */
    }
    st->before = *hr_conn_get_stats(st->conn);
    hr_conn_free(st->conn);
    st->conn = NULL;
    st->cc = cc;
}

struct hr_store *hr_store_new(struct event_base *base, const struct hr_store_config *cfg, char *err,
                              size_t errlen)
{
    if (cfg->ttl_ms == 0 || cfg->timeout_ms == 0 || cfg->max_inflight == 0) {
        snprintf(err, errlen, "ttl, timeout and max in-flight must be positive");
        return NULL;
    }
    struct hr_store *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    st->base = base;
    st->cfg = *cfg;
    if (getrandom(&st->rng, sizeof(st->rng), 0) != (ssize_t)sizeof(st->rng) || !st->rng)
        st->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)st;
    st->flush_ev = event_new(base, -1, 0, on_flush, st);
    if (!st->flush_ev) {
        snprintf(err, errlen, "cannot create events");
        goto fail;
    }
    if (cfg->sweep_ms) {
        struct timeval tv = {cfg->sweep_ms / 1000, (cfg->sweep_ms % 1000) * 1000};
        st->sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, st);
        if (!st->sweep_ev || event_add(st->sweep_ev, &tv) != 0) {
            snprintf(err, errlen, "cannot create timers");
            goto fail;
        }
    }
    if (hr_layout_new(&st->new_layout, cfg->prefix, cfg->buckets ? cfg->buckets : 1024) != 0) {
        snprintf(err, errlen, "buckets must be a power of two from 1 to %d", HR_LAYOUT_BUCKETS_MAX);
        goto fail;
    }
    if (!(st->switch_ev = event_new(base, -1, 0, on_switch, st))) {
        snprintf(err, errlen, "cannot create events");
        goto fail;
    }
    if (cfg->any_region) {
        if (!st->cfg.max_regions || st->cfg.max_regions > HR_REGIONS_MAX)
            st->cfg.max_regions = HR_REGIONS_MAX;
        struct timeval tv = {0, 0};
        if (!(st->known = calloc(1, sizeof(*st->known))) ||
            !(st->regions_ev = event_new(base, -1, 0, on_regions, st)) ||
            event_add(st->regions_ev, &tv) != 0) {
            snprintf(err, errlen, "cannot create timers");
            goto fail;
        }
    }
    if (cfg->redis.nseeds) {
        if (!(st->cc = cluster_new(st, err, errlen)))
            goto fail;
        return st;
    }
    /* A WAIT holds every call behind it on the connection
     * (--redis-wait-timeout), never more than half the timeout. */
    uint32_t wait = cfg->wait_ms ? cfg->wait_ms : WAIT_MS;
    if (wait > cfg->timeout_ms / 2)
        wait = cfg->timeout_ms / 2;
    struct hr_conn_config cc = {.redis = cfg->redis,
                                .timeout_ms = cfg->timeout_ms,
                                .wait_replicas = cfg->wait_replicas,
                                .wait_ms = wait,
                                .layout = st->new_layout,
                                .on_cluster = on_cluster,
                                .on_cluster_arg = st};
    if (!(st->conn = hr_conn_new(base, &cc, err, errlen)))
        goto fail;
    return st;
fail:
    hr_store_free(st);
    return NULL;
}

void hr_store_free(struct hr_store *st)
{
    if (!st)
        return;
    /* Everything promised an answer gets RETRY_LATER. The connection goes
     * first, so that callbacks that submit more are refused (not ready). */
    struct hr_conn *conn = st->conn;
    struct hr_cconn *cc = st->cc;
    st->conn = NULL;
    st->cc = NULL;
    if (st->open) {
        park_failed(st, st->open);
        st->open = NULL;
    }
    hr_conn_free(conn); /* fails each call in flight, ending the finds under way */
    hr_cconn_free(cc);
    answer_failed(st);
    while (st->claims) /* a find between two steps */
        claim_end(st->claims, HR_E_UNAVAILABLE, NULL);
    while (st->admissions) /* their admission failed with the connection, or never ran */
        admission_end(st, st->admissions, false, HR_E_UNAVAILABLE);
    if (st->regions_ev)
        event_free(st->regions_ev);
    free(st->known);
    if (st->flush_ev)
        event_free(st->flush_ev);
    if (st->sweep_ev)
        event_free(st->sweep_ev);
    if (st->switch_ev)
        event_free(st->switch_ev);
    while (st->freelist) {
        struct cmd *c = st->freelist;
        st->freelist = c->link;
        cmd_destroy(c);
    }
    free(st);
}

bool hr_store_ready(const struct hr_store *st)
{
    return ready(st);
}

const char *hr_store_writes_refused(const struct hr_store *st)
{
    return st->refused[0] ? st->refused : NULL;
}

int hr_store_evicting(const struct hr_store *st)
{
    if (st->cc)
        return hr_cconn_evicting(st->cc);
    return st->conn ? hr_conn_evicting(st->conn) : -1;
}

const char *hr_store_not_ready_reason(const struct hr_store *st)
{
    if (st->cc)
        return hr_cconn_not_ready_reason(st->cc);
    return ready(st) ? "" : "not connected";
}

bool hr_store_clustered(const struct hr_store *st)
{
    return st->cc != NULL;
}

size_t hr_store_inflight(const struct hr_store *st)
{
    return st->inflight;
}

void hr_store_get_stats(const struct hr_store *st, struct hr_store_stats *out)
{
    *out = st->stats;
    const struct hr_conn_stats *b = &st->before;
    out->redis_errors = b->errors + b->not_replicated + st->bad_replies + st->request_errors;
    out->timeouts = b->timeouts;
    out->reconnects = b->connects;
    out->noscript = b->noscript;
    if (st->conn) {
        const struct hr_conn_stats *cs = hr_conn_get_stats(st->conn);
        out->redis_errors += cs->errors + cs->not_replicated;
        out->timeouts += cs->timeouts;
        out->reconnects += cs->connects;
        out->noscript += cs->noscript;
    } else if (st->cc) {
        const struct hr_cluster_stats *rs = hr_cluster_get_stats(hr_cconn_router(st->cc));
        out->redis_errors += rs->errors + rs->lost;
        out->timeouts += rs->timeouts;
        out->reconnects += rs->connects;
        out->noscript += hr_cconn_get_stats(st->cc)->noscript;
        out->moved = rs->moved;
        out->ask = rs->ask;
        out->tryagain = rs->tryagain;
    }
}
