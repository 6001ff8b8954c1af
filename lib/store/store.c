#include "store.h"

#include "conn.h"
#include "err.h"
#include "log.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Requests coalesced into one script call: what one receive batch of the
 * daemon brings (it reads up to 8 x 64 datagrams per wake-up); more would
 * hold Redis longer per call for no gain. */
#define BATCH_MAX 128

/* Unconfirmed claims returned to idle per sweep call: a batch at a time, so
 * that one call never holds Redis long. */
#define SWEEP_MAX 1000

/* The key the readiness probe names, after the prefix: never created (the
 * probe is SET ... XX, see hr_store_probe). */
#define PROBE_KEY "readyz"

/* The key naming the storage layout, after the prefix (conn.h, HR_LAYOUT). */
#define LAYOUT_KEY "layout"

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
    struct cmd *link; /* free list, or the list of batches that failed to send */
    cmd_handler *handle;
    union {
        hr_store_claim_cb *claim;
        hr_store_list_cb *list;
        hr_store_count_cb *count;
        hr_store_probe_cb *probe;
        hr_store_release_cb *release;
    } cb;
    void *arg;
    struct hr_script_args args;
    struct slot *slots; /* HR_SCRIPT_REQUESTS: one per request, in order */
    int nslots, slotcap;
};

struct hr_store {
    struct event_base *base;
    struct hr_store_config cfg;
    struct hr_conn *conn;
    size_t inflight;      /* requests and calls sent or promised an answer */
    struct cmd *freelist; /* recycled cmds: no malloc per request once warm */
    struct cmd *open;     /* the batch being filled, sent at the end of this loop turn */
    struct cmd *failed;   /* batches that could not be sent, answered by flush_ev */
    struct event *flush_ev;
    struct event *sweep_ev;
    struct hr_store_stats stats; /* the connection's counters are added on reading */
    uint64_t bad_replies;        /* requests replies of the wrong shape */
    uint64_t request_errors;     /* single requests that failed in Redis */
    uint64_t rng;                /* claims' picks (hr_store_claim); never 0 */
    char refused[160];           /* hr_store_writes_refused(); "" when not known to */
};

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
        if (!st->refused[0])
            HR_LOG(HR_LOG_WARN, "redis: refuses writes: %.200s", err);
        snprintf(st->refused, sizeof(st->refused), "%s", err);
    }
}

/* Connected with the scripts loaded (and not being freed). */
static bool ready(const struct hr_store *st)
{
    return st->conn && hr_conn_ready(st->conn);
}

int hr_store_host_key(const struct hr_store_config *cfg, const char *host_id, char *out,
                      size_t outlen)
{
    int n =
        snprintf(out, outlen, "%s%s%s", cfg->prefix, hr_script_key(HR_SCRIPT_KEY_HOST), host_id);
    return n < 0 || (size_t)n >= outlen ? HR_E_BUFFER : HR_OK;
}

/* The work one call counts for in `inflight`. */
static size_t weight(const struct cmd *c)
{
    return c->nslots ? (size_t)c->nslots : 1;
}

static void on_done(struct hr_conn_call *call, redisReply *reply);

/* A fresh call from the free list, or NULL with the reason in *err.
 * `script`: an enum hr_script_id, or HR_CONN_PLAIN. */
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
    struct cmd *c = st->freelist;
    if (c)
        st->freelist = c->link;
    else if (!(c = calloc(1, sizeof(*c)))) {
        *err = HR_E_NOMEM;
        return NULL;
    }
    c->st = st;
    c->call.script = script;
    c->call.args = &c->args;
    c->call.done = on_done;
    c->handle = handle;
    c->arg = arg;
    hr_script_args_reset(&c->args);
    c->nslots = 0;
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
    int rc = hr_conn_send(st->conn, &c->call);
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
    st->inflight -= weight(c);
    if (call->error)
        note_write(st, call->error);
    c->handle(c, reply);
    cmd_recycle(st, c);
}

/* Each request of a batch gets its own answer, in order. */
static void handle_requests(struct cmd *c, redisReply *reply)
{
    struct hr_store *st = c->st;
    if (reply && (reply->type != REDIS_REPLY_ARRAY || reply->elements != (size_t)c->nslots)) {
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
    /* Its requests stay counted in `inflight` either way. */
    if (hr_conn_send(st->conn, &c->call) == HR_OK) {
        st->stats.submitted++;
        return;
    }
    park_failed(st, c);
    event_active(st->flush_ev, EV_TIMEOUT, 0);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    flush_batch(arg);
    answer_failed(arg);
}

/* Requests of one event-loop turn go to Redis as one script call: the daemon's
 * receive batch costs one round trip and one script invocation instead of one
 * per datagram, and a lone request still leaves at the end of its turn. */
int hr_store_submit(struct hr_store *st, const struct hr_request *req, unsigned flags,
                    hr_store_cb *cb, void *arg)
{
    int err;
    if (!ready(st))
        return HR_E_UNAVAILABLE;
    if (st->inflight >= st->cfg.max_inflight)
        return HR_E_OVERLOAD;
    struct cmd *c = st->open;
    if (!c) {
        if (!(c = cmd_new(st, HR_SCRIPT_REQUESTS, handle_requests, NULL, &err)))
            return err;
        hr_script_requests_header(&c->args, st->cfg.prefix, st->cfg.ttl_ms, st->cfg.max_hosts,
                                  st->cfg.regions);
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
    hr_script_requests_add(&c->args, req, flags & HR_STORE_NO_CREATE);
    c->slots[c->nslots++] = (struct slot){cb, arg};
    st->inflight++;
    if (c->nslots == BATCH_MAX)
        flush_batch(st);
    return HR_OK;
}

static void handle_claim(struct cmd *c, redisReply *reply)
{
    struct hr_host_info h;
    int got = hr_script_claimed(reply, &h);
    if (got < 0)
        c->cb.claim(c->arg, HR_E_UNAVAILABLE, NULL);
    else
        c->cb.claim(c->arg, HR_OK, got ? &h : NULL);
}

int hr_store_claim(struct hr_store *st, const struct hr_claim_query *q, hr_store_claim_cb *cb,
                   void *arg)
{
    int err;
    struct cmd *c = cmd_new(st, HR_SCRIPT_CLAIM, handle_claim, arg, &err);
    if (!c)
        return err;
    c->cb.claim = cb;
    /* Which idle host: uniform among a region's (claim.lua). xorshift64*:
     * fast, and seeded from the kernel so nobody can predict the next one. */
    struct hr_claim_query pq = *q;
    st->rng ^= st->rng >> 12, st->rng ^= st->rng << 25, st->rng ^= st->rng >> 27;
    pq.pick = (uint32_t)((st->rng * 0x2545f4914f6cdd1dULL) >> 33);
    hr_script_claim_args(&c->args, st->cfg.prefix, &pq);
    return cmd_submit(st, c);
}

static void handle_list(struct cmd *c, redisReply *reply)
{
    long n = hr_script_nlisted(reply);
    if (n < 0) {
        c->cb.list(c->arg, HR_E_UNAVAILABLE, NULL, 0);
        return;
    }
    struct hr_host_info *hosts = n ? calloc((size_t)n, sizeof(*hosts)) : NULL;
    if (n && !hosts) {
        c->cb.list(c->arg, HR_E_NOMEM, NULL, 0);
        return;
    }
    for (long i = 0; i < n; i++)
        hr_script_listed(reply, (size_t)i, &hosts[i]);
    c->cb.list(c->arg, HR_OK, hosts, (size_t)n);
    free(hosts);
}

int hr_store_list(struct hr_store *st, const struct hr_list_query *q, hr_store_list_cb *cb,
                  void *arg)
{
    int err;
    struct cmd *c = cmd_new(st, HR_SCRIPT_LIST, handle_list, arg, &err);
    if (!c)
        return err;
    c->cb.list = cb;
    hr_script_list_args(&c->args, st->cfg.prefix, q);
    return cmd_submit(st, c);
}

static void handle_count(struct cmd *c, redisReply *reply)
{
    uint64_t counts[HR_NSTATUSES * HR_REGIONS_MAX];
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements % HR_NSTATUSES ||
        reply->elements > HR_NSTATUSES * HR_REGIONS_MAX) {
        c->cb.count(c->arg, HR_E_UNAVAILABLE, NULL, 0);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++)
        counts[i] = reply->element[i]->type == REDIS_REPLY_INTEGER
                        ? (uint64_t)reply->element[i]->integer
                        : 0;
    c->cb.count(c->arg, HR_OK, counts, reply->elements / HR_NSTATUSES);
}

int hr_store_count(struct hr_store *st, const char *const *regions, size_t nregions,
                   hr_store_count_cb *cb, void *arg)
{
    int err;
    struct cmd *c = cmd_new(st, HR_SCRIPT_COUNT, handle_count, arg, &err);
    if (!c)
        return err;
    c->cb.count = cb;
    hr_script_count_args(&c->args, st->cfg.prefix, regions, nregions);
    return cmd_submit(st, c);
}

static void handle_release(struct cmd *c, redisReply *reply)
{
    bool ok = reply && reply->type == REDIS_REPLY_INTEGER;
    if (ok && reply->integer == 1)
        HR_LOG(HR_LOG_INFO, "claims: a claim whose answer was lost returned its host to idle");
    c->cb.release(c->arg, ok ? HR_OK : HR_E_UNAVAILABLE);
}

int hr_store_release(struct hr_store *st, const char *claim_id, uint32_t lease_ms,
                     hr_store_release_cb *cb, void *arg)
{
    int err;
    struct cmd *c = cmd_new(st, HR_SCRIPT_RELEASE, handle_release, arg, &err);
    if (!c)
        return err;
    c->cb.release = cb;
    hr_script_release_args(&c->args, st->cfg.prefix, claim_id, lease_ms);
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
int hr_store_probe(struct hr_store *st, hr_store_probe_cb *cb, void *arg)
{
    int err;
    struct cmd *c = cmd_new(st, HR_CONN_PLAIN, handle_probe, arg, &err);
    if (!c)
        return err;
    c->cb.probe = cb;
    char key[sizeof(st->cfg.prefix) + sizeof(PROBE_KEY)];
    snprintf(key, sizeof(key), "%s%s", st->cfg.prefix, PROBE_KEY);
    hr_script_args_str(&c->args, "SET");
    hr_script_args_str(&c->args, key);
    hr_script_args_str(&c->args, "");
    hr_script_args_str(&c->args, "XX");
    hr_script_args_str(&c->args, "PX");
    hr_script_args_str(&c->args, "1");
    return cmd_submit(st, c);
}

static void handle_sweep(struct cmd *c, redisReply *reply)
{
    (void)c;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        HR_LOG(HR_LOG_INFO, "claims: %lld unconfirmed claims returned to idle", reply->integer);
}

/* Hosts whose claim lease ended unconfirmed go back to idle. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_store *st = arg;
    int err;
    struct cmd *c = cmd_new(st, HR_SCRIPT_SWEEP, handle_sweep, NULL, &err);
    if (!c)
        return;
    hr_script_sweep_args(&c->args, st->cfg.prefix, SWEEP_MAX);
    cmd_submit(st, c);
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
    struct hr_conn_config cc = {
        .redis = cfg->redis, .timeout_ms = cfg->timeout_ms, .wait_replicas = cfg->wait_replicas};
    snprintf(cc.layout_key, sizeof(cc.layout_key), "%s%s", cfg->prefix, LAYOUT_KEY);
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
    st->conn = NULL;
    if (st->open) {
        park_failed(st, st->open);
        st->open = NULL;
    }
    hr_conn_free(conn); /* fails each call in flight */
    answer_failed(st);
    if (st->flush_ev)
        event_free(st->flush_ev);
    if (st->sweep_ev)
        event_free(st->sweep_ev);
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
    return st->conn ? hr_conn_evicting(st->conn) : -1;
}

size_t hr_store_inflight(const struct hr_store *st)
{
    return st->inflight;
}

void hr_store_get_stats(const struct hr_store *st, struct hr_store_stats *out)
{
    *out = st->stats;
    if (!st->conn)
        return;
    const struct hr_conn_stats *cs = hr_conn_get_stats(st->conn);
    out->redis_errors = cs->errors + cs->not_replicated + st->bad_replies + st->request_errors;
    out->timeouts = cs->timeouts;
    out->reconnects = cs->connects;
    out->noscript = cs->noscript;
}
