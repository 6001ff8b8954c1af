#include "store.h"

#include "err.h"
#include "log.h"
#include "lua_scripts.h"

#include <errno.h>
#include <stdarg.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    SCRIPT_REQUESTS,
    SCRIPT_CLAIM,
    SCRIPT_SWEEP,
    SCRIPT_LIST,
    SCRIPT_COUNT,
    NSCRIPTS,
    PLAIN = -1, /* not a script: a plain command (PING) */
};

static const struct {
    const char *name;
    const char *body;
} scripts[NSCRIPTS] = {
    {"requests", HR_LUA_REQUESTS}, {"claim", HR_LUA_CLAIM}, {"sweep", HR_LUA_SWEEP},
    {"list", HR_LUA_LIST},         {"count", HR_LUA_COUNT},
};

/* Reconnect backoff: quick first retries so a Redis restart costs well under
 * a second, capped at 1 s so service is back within ~1 s of Redis. */
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000

/* Requests coalesced into one script call: what one receive batch of the
 * daemon brings (it reads up to 8 x 64 datagrams per wake-up); more would
 * hold Redis longer per call for no gain. */
#define BATCH_MAX 128

struct cmd;
/* Turns a reply into the callers' callbacks; `reply` is NULL when the command
 * failed (connection lost, timed out, error reply). */
typedef void cmd_handler(struct cmd *c, redisReply *reply);

/* A request waiting in a batch. */
struct slot {
    hr_store_cb *cb;
    void *arg;
};

/* One command in flight. Commands on one connection are answered in order,
 * so the list is oldest-first and the timeout check looks at its head only.
 * Its arguments are copied into it (so that it can be sent again, as EVAL,
 * after NOSCRIPT); the buffers grow as needed and stay with the command when
 * it is recycled, so a warm store does not allocate per request. */
struct cmd {
    struct cmd *prev, *next;
    struct hr_store *st;
    int script;  /* index into scripts, or PLAIN */
    int retried; /* already re-sent with EVAL after NOSCRIPT */
    uint64_t sent_ms;
    cmd_handler *handle;
    union {
        hr_store_claim_cb *claim;
        hr_store_list_cb *list;
        hr_store_count_cb *count;
        hr_store_ping_cb *ping;
    } cb;
    void *arg;
    int argc, argcap, failed;
    size_t *argoff, *argvlen; /* argument i is buf[argoff[i]], argvlen[i] bytes */
    char *buf;
    size_t used, bufcap;
    struct slot *slots; /* SCRIPT_REQUESTS: one per request, in order */
    int nslots, slotcap;
};

struct hr_store {
    struct event_base *base;
    struct hr_store_config cfg;
    redisAsyncContext *ac; /* NULL while down */
    bool ready;
    int setup_pending; /* setup replies still expected after connect */
    uint64_t connect_started_ms;
    uint64_t last_sweep_ms;
    uint32_t backoff_ms;
    char sha[NSCRIPTS][41];
    struct event *reconnect_ev;
    struct event *tick_ev;
    struct cmd head; /* sentinel of the in-flight list */
    size_t inflight;
    struct cmd *freelist; /* recycled cmds: no malloc per request once warm */
    struct cmd *open;     /* the batch being filled, sent at the end of this loop turn */
    struct cmd *failed;   /* batches that could not be sent, answered by flush_ev */
    struct event *flush_ev;
    const char **argv; /* scratch for sending */
    size_t *argvlen;
    int argvcap;
    struct hr_store_stats stats;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Strict whole-string number in [min, max] (no sign, no space): 0 or -1. */
static int strict_num(const char *s, size_t len, long min, long max, int *out)
{
    long v = 0;
    if (len == 0 || len > 6)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int hr_redis_url_parse(const char *url, struct hr_redis_addr *out, char *err, size_t errlen)
{
    struct hr_redis_addr a;
    memset(&a, 0, sizeof(a));
    a.port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        const char *q = strchr(p, '?');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0 || p[0] != '/' || len >= sizeof(a.path)) {
            snprintf(err, errlen, "bad unix socket path in '%s' (want unix:///path)", url);
            return HR_E_CONFIG;
        }
        memcpy(a.path, p, len);
        if (q && (strncmp(q, "?db=", 4) != 0 || strict_num(q + 4, strlen(q + 4), 0, 15, &a.db))) {
            snprintf(err, errlen, "bad '%s' in '%s' (want ?db=0..15)", q, url);
            return HR_E_CONFIG;
        }
        *out = a;
        return HR_OK;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "'%s' is not a Redis URL (redis://host:port[/db] or unix:///path)",
                 url);
        return HR_E_CONFIG;
    }
    const char *p = url + 8;
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p); /* end of the authority */
    /* user:pass@ comes before the path: the last '@' of the authority. */
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : 0;
        const char *pw = colon ? colon + 1 : p;
        size_t plen = (size_t)(at - pw);
        if (ulen >= sizeof(a.user) || plen >= sizeof(a.pass)) {
            snprintf(err, errlen, "Redis user or password too long");
            return HR_E_CONFIG;
        }
        memcpy(a.user, p, ulen);
        memcpy(a.pass, pw, plen);
        p = at + 1;
    }
    const char *colon = NULL;
    if (*p == '[') { /* [::1]:6379 */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb || (rb + 1 < end && rb[1] != ':')) {
            snprintf(err, errlen, "bad IPv6 address in '%s' (want [addr]:port)", url);
            return HR_E_CONFIG;
        }
        if ((size_t)(rb - p - 1) >= sizeof(a.host))
            goto badhost;
        memcpy(a.host, p + 1, (size_t)(rb - p - 1));
        colon = rb + 1 < end ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        const char *he = colon ? colon : end;
        if ((size_t)(he - p) >= sizeof(a.host))
            goto badhost;
        memcpy(a.host, p, (size_t)(he - p));
    }
    if (a.host[0] == '\0')
        goto badhost;
    if (colon && strict_num(colon + 1, (size_t)(end - colon - 1), 1, 65535, &a.port)) {
        snprintf(err, errlen, "bad port in '%s' (1-65535)", url);
        return HR_E_CONFIG;
    }
    if (slash && slash[1] && strict_num(slash + 1, strlen(slash + 1), 0, 15, &a.db)) {
        snprintf(err, errlen, "bad database number in '%s' (0-15)", url);
        return HR_E_CONFIG;
    }
    *out = a;
    return HR_OK;
badhost:
    snprintf(err, errlen, "bad or missing host in '%s'", url);
    return HR_E_CONFIG;
}

const char *hr_store_script(const char *name)
{
    for (int i = 0; i < NSCRIPTS; i++)
        if (strcmp(scripts[i].name, name) == 0)
            return scripts[i].body;
    return NULL;
}

int hr_store_host_key(const struct hr_store_config *cfg, const char *host_id, char *out,
                      size_t outlen)
{
    int n = snprintf(out, outlen, "%sh:%s", cfg->prefix, host_id);
    return n < 0 || (size_t)n >= outlen ? HR_E_BUFFER : HR_OK;
}

static void connect_redis(struct hr_store *st);
static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

static void schedule_reconnect(struct hr_store *st)
{
    if (evtimer_pending(st->reconnect_ev, NULL))
        return;
    struct timeval tv = {st->backoff_ms / 1000, (st->backoff_ms % 1000) * 1000};
    evtimer_add(st->reconnect_ev, &tv);
    st->backoff_ms = st->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : st->backoff_ms * 2;
}

/* Drops the connection now: every command in flight is answered RETRY_LATER
 * by hiredis calling its callback with no reply. Not for use inside a hiredis
 * callback (hiredis defers the free there, and we do not need it to). */
static void drop_connection(struct hr_store *st, bool reconnect)
{
    redisAsyncContext *ac = st->ac;
    st->ac = NULL;
    st->ready = false;
    if (ac)
        redisAsyncFree(ac);
    if (reconnect)
        schedule_reconnect(st);
}

static void cmd_unlink(struct cmd *c)
{
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->prev = c->next = c;
}

static void cmd_append(struct hr_store *st, struct cmd *c)
{
    c->prev = st->head.prev;
    c->next = &st->head;
    st->head.prev->next = c;
    st->head.prev = c;
}

/* A fresh command from the free list, or NULL with the reason in *err. */
static struct cmd *cmd_new(struct hr_store *st, int script, cmd_handler *handle, void *arg,
                           int *err)
{
    if (!st->ready || !st->ac) {
        *err = HR_E_UNAVAILABLE;
        return NULL;
    }
    if (st->inflight >= st->cfg.max_inflight) {
        *err = HR_E_OVERLOAD;
        return NULL;
    }
    struct cmd *c = st->freelist;
    if (c)
        st->freelist = c->next;
    else if (!(c = calloc(1, sizeof(*c)))) {
        *err = HR_E_NOMEM;
        return NULL;
    }
    c->st = st;
    c->script = script;
    c->retried = 0;
    c->handle = handle;
    c->arg = arg;
    c->argc = c->failed = 0;
    c->used = 0;
    c->nslots = 0;
    return c;
}

static void cmd_recycle(struct hr_store *st, struct cmd *c)
{
    c->next = st->freelist;
    st->freelist = c;
}

static void cmd_destroy(struct cmd *c)
{
    free(c->argoff);
    free(c->argvlen);
    free(c->buf);
    free(c->slots);
    free(c);
}

static int grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, (size_t)n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Grows two parallel arrays that share one capacity. */
static int grow2(void **a, size_t ea, void **b, size_t eb, int *cap, int need)
{
    int c = *cap;
    if (grow(a, &c, need, ea) != 0)
        return -1;
    return grow(b, cap, need, eb); /* same old capacity, same need: same new size */
}

/* Appends one argument (copied). A failure marks the command failed. */
static void cmd_arg(struct cmd *c, const char *s, size_t len)
{
    if (grow2((void **)&c->argoff, sizeof(*c->argoff), (void **)&c->argvlen, sizeof(*c->argvlen),
              &c->argcap, c->argc + 1)) {
        c->failed = 1;
        return;
    }
    if (c->used + len > c->bufcap) {
        size_t n = c->bufcap ? c->bufcap : 1024;
        while (n < c->used + len)
            n *= 2;
        char *b = realloc(c->buf, n);
        if (!b) {
            c->failed = 1;
            return;
        }
        c->buf = b;
        c->bufcap = n;
    }
    memcpy(c->buf + c->used, s, len);
    c->argoff[c->argc] = c->used;
    c->argvlen[c->argc++] = len;
    c->used += len;
}

static void cmd_str(struct cmd *c, const char *s)
{
    cmd_arg(c, s, strlen(s));
}

static void cmd_fmt(struct cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cmd_fmt(struct cmd *c, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        c->failed = 1;
        return;
    }
    cmd_arg(c, tmp, (size_t)n);
}

/* Sends c; on success c is at the tail of the in-flight list. Scripts get no
 * declared keys: they build key names from the prefix (a single Redis, not a
 * cluster). */
static int cmd_send(struct hr_store *st, struct cmd *c)
{
    int n = 0;
    if (grow2((void **)&st->argv, sizeof(*st->argv), (void **)&st->argvlen, sizeof(*st->argvlen),
              &st->argvcap, c->argc + 3))
        return HR_E_NOMEM;
    if (c->script != PLAIN) {
        st->argv[n++] = c->retried ? "EVAL" : "EVALSHA";
        st->argv[n++] = c->retried ? scripts[c->script].body : st->sha[c->script];
        st->argv[n++] = "0";
        for (int i = 0; i < 3; i++)
            st->argvlen[i] = strlen(st->argv[i]);
    }
    for (int i = 0; i < c->argc; i++, n++) {
        st->argv[n] = c->buf + c->argoff[i];
        st->argvlen[n] = c->argvlen[i];
    }
    if (!st->ac || redisAsyncCommandArgv(st->ac, on_reply, c, n, st->argv, st->argvlen) != REDIS_OK)
        return HR_E_UNAVAILABLE;
    c->sent_ms = now_ms();
    cmd_append(st, c);
    return HR_OK;
}

/* Sends a command built with cmd_new/cmd_arg, or recycles it and says why not. */
static int cmd_submit(struct hr_store *st, struct cmd *c)
{
    if (c->failed) {
        cmd_recycle(st, c);
        return HR_E_NOMEM;
    }
    if (cmd_send(st, c) != HR_OK) {
        cmd_recycle(st, c);
        return HR_E_UNAVAILABLE;
    }
    st->inflight += c->nslots ? (size_t)c->nslots : 1;
    st->stats.submitted++;
    return HR_OK;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct cmd *c = privdata;
    struct hr_store *st = c->st;
    redisReply *reply = r;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        /* Redis restarted or SCRIPT FLUSH: send the body once with EVAL,
         * which also caches it again for the EVALSHAs after it. */
        if (c->script != PLAIN && !c->retried && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            st->stats.noscript++;
            c->retried = 1;
            cmd_unlink(c);
            if (cmd_send(st, c) == HR_OK)
                return;
            cmd_append(st, c); /* unlinked again below */
        } else {
            st->stats.redis_errors++;
            HR_LOG_LIMITED(HR_LOG_ERROR, "redis: %s failed: %.200s",
                           c->script == PLAIN ? "command" : scripts[c->script].name, reply->str);
        }
        reply = NULL;
    }
    /* reply NULL here also means the connection was lost or freed: the
     * outcome is unknown, so the caller is told to retry. */
    cmd_unlink(c);
    st->inflight -= c->nslots ? (size_t)c->nslots : 1;
    c->handle(c, reply);
    cmd_recycle(st, c);
}

/* Each request of a batch gets its own answer, in order. */
static void handle_requests(struct cmd *c, redisReply *reply)
{
    struct hr_store *st = c->st;
    if (reply && (reply->type != REDIS_REPLY_ARRAY || reply->elements != (size_t)c->nslots)) {
        st->stats.redis_errors++;
        HR_LOG_LIMITED(HR_LOG_ERROR, "redis: unexpected requests reply (type %d)", reply->type);
        reply = NULL;
    }
    for (int i = 0; i < c->nslots; i++) {
        enum hr_result res = HR_RESULT_RETRY_LATER;
        int reason = HR_E_UNAVAILABLE;
        redisReply *e = reply ? reply->element[i] : NULL;
        if (e && e->type == REDIS_REPLY_INTEGER && e->integer >= HR_RESULT_OK &&
            e->integer <= HR_RESULT_UNKNOWN_HOST) {
            res = (enum hr_result)e->integer;
            reason = HR_OK;
        } else if (e && e->type == REDIS_REPLY_INTEGER && e->integer == 4) {
            reason = HR_E_FULL;
            st->stats.full++;
        } else if (e && e->type == REDIS_REPLY_INTEGER && e->integer == 5) {
            reason = HR_E_SOURCE_FULL;
            st->stats.source_full++;
        }
        switch (res) {
        case HR_RESULT_OK:
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
            break;
        }
        c->slots[i].cb(c->slots[i].arg, res, reason);
    }
}

/* Sets a batch aside to be answered RETRY_LATER by answer_failed(). */
static void park_failed(struct hr_store *st, struct cmd *c)
{
    c->next = st->failed;
    st->failed = c;
}

/* Answers RETRY_LATER to every request of the batches that could not be sent. */
static void answer_failed(struct hr_store *st)
{
    struct cmd *c;
    while ((c = st->failed)) {
        st->failed = c->next;
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
    if (!c->failed && cmd_send(st, c) == HR_OK) {
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
    if (!st->ready || !st->ac)
        return HR_E_UNAVAILABLE;
    if (st->inflight >= st->cfg.max_inflight)
        return HR_E_OVERLOAD;
    struct cmd *c = st->open;
    if (!c) {
        if (!(c = cmd_new(st, SCRIPT_REQUESTS, handle_requests, NULL, &err)))
            return err;
        cmd_str(c, st->cfg.prefix);
        cmd_fmt(c, "%" PRIu32, st->cfg.ttl_ms);
        cmd_fmt(c, "%" PRIu32, st->cfg.max_hosts);
        cmd_str(c, st->cfg.regions);
        st->open = c;
        event_active(st->flush_ev, EV_TIMEOUT, 0);
    }
    if (grow((void **)&c->slots, &c->slotcap, c->nslots + 1, sizeof(*c->slots)))
        return HR_E_NOMEM;
    cmd_str(c, req->type == HR_MSG_HEARTBEAT ? (flags & HR_STORE_NO_CREATE ? "r" : "h")
               : req->type == HR_MSG_STATUS  ? "s"
                                             : "l");
    /* Decimal: the scripts compare them as strings (length, then bytes),
     * exactly, where Lua's doubles would round those above 2^53. */
    cmd_fmt(c, "%" PRIu64, req->seq);
    cmd_str(c, req->host_id);
    cmd_str(c, req->room_id);
    cmd_str(c, req->region);
    cmd_str(c, hr_status_name(req->status));
    c->slots[c->nslots++] = (struct slot){cb, arg};
    st->inflight++;
    if (c->nslots == BATCH_MAX)
        flush_batch(st);
    return HR_OK;
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

static void handle_claim(struct cmd *c, redisReply *reply)
{
    struct hr_host_info h;
    if (!reply || reply->type != REDIS_REPLY_ARRAY ||
        (reply->elements != 0 && reply->elements != 3)) {
        c->cb.claim(c->arg, HR_E_UNAVAILABLE, NULL);
        return;
    }
    if (reply->elements == 0) {
        c->cb.claim(c->arg, HR_OK, NULL);
        return;
    }
    memset(&h, 0, sizeof(h));
    copy_str(h.host_id, sizeof(h.host_id), reply->element[0]);
    copy_str(h.room_id, sizeof(h.room_id), reply->element[1]);
    copy_str(h.region, sizeof(h.region), reply->element[2]);
    h.status = HR_STATUS_BUSY;
    h.claimed = true;
    c->cb.claim(c->arg, HR_OK, &h);
}

int hr_store_claim(struct hr_store *st, const struct hr_claim_query *q, hr_store_claim_cb *cb,
                   void *arg)
{
    int err;
    struct cmd *c = cmd_new(st, SCRIPT_CLAIM, handle_claim, arg, &err);
    if (!c)
        return err;
    c->cb.claim = cb;
    cmd_str(c, st->cfg.prefix);
    cmd_fmt(c, "%" PRIu32, q->lease_ms);
    cmd_str(c, q->host_id ? q->host_id : "");
    for (size_t i = 0; i < q->nregions; i++)
        cmd_str(c, q->regions[i]);
    return cmd_submit(st, c);
}

static void handle_list(struct cmd *c, redisReply *reply)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements % 6) {
        c->cb.list(c->arg, HR_E_UNAVAILABLE, NULL, 0);
        return;
    }
    size_t n = reply->elements / 6;
    struct hr_host_info *hosts = n ? calloc(n, sizeof(*hosts)) : NULL;
    if (n && !hosts) {
        c->cb.list(c->arg, HR_E_NOMEM, NULL, 0);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        redisReply **e = reply->element + 6 * i;
        char status[8];
        copy_str(hosts[i].host_id, sizeof(hosts[i].host_id), e[0]);
        copy_str(hosts[i].room_id, sizeof(hosts[i].room_id), e[1]);
        copy_str(hosts[i].region, sizeof(hosts[i].region), e[2]);
        copy_str(status, sizeof(status), e[3]);
        hosts[i].status = hr_status_parse(status, strlen(status));
        hosts[i].ttl_ms = e[4]->type == REDIS_REPLY_INTEGER ? e[4]->integer : 0;
        hosts[i].claimed = e[5]->type == REDIS_REPLY_INTEGER && e[5]->integer == 1;
    }
    c->cb.list(c->arg, HR_OK, hosts, n);
    free(hosts);
}

int hr_store_list(struct hr_store *st, const struct hr_list_query *q, hr_store_list_cb *cb,
                  void *arg)
{
    int err;
    struct cmd *c = cmd_new(st, SCRIPT_LIST, handle_list, arg, &err);
    if (!c)
        return err;
    c->cb.list = cb;
    cmd_str(c, st->cfg.prefix);
    cmd_str(c, q->status == HR_STATUS_NONE ? "" : hr_status_name(q->status));
    cmd_fmt(c, "%" PRIu32, q->limit);
    for (size_t i = 0; i < q->nregions; i++)
        cmd_str(c, q->regions[i]);
    return cmd_submit(st, c);
}

static void handle_count(struct cmd *c, redisReply *reply)
{
    uint64_t counts[2 * HR_REGIONS_MAX];
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 ||
        reply->elements > 2 * HR_REGIONS_MAX) {
        c->cb.count(c->arg, HR_E_UNAVAILABLE, NULL, 0);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++)
        counts[i] = reply->element[i]->type == REDIS_REPLY_INTEGER
                        ? (uint64_t)reply->element[i]->integer
                        : 0;
    c->cb.count(c->arg, HR_OK, counts, reply->elements / 2);
}

int hr_store_count(struct hr_store *st, const char *const *regions, size_t nregions,
                   hr_store_count_cb *cb, void *arg)
{
    int err;
    struct cmd *c = cmd_new(st, SCRIPT_COUNT, handle_count, arg, &err);
    if (!c)
        return err;
    c->cb.count = cb;
    cmd_str(c, st->cfg.prefix);
    for (size_t i = 0; i < nregions; i++)
        cmd_str(c, regions[i]);
    return cmd_submit(st, c);
}

static void handle_ping(struct cmd *c, redisReply *reply)
{
    bool ok = reply && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
    c->cb.ping(c->arg, ok ? HR_OK : HR_E_UNAVAILABLE);
}

int hr_store_ping(struct hr_store *st, hr_store_ping_cb *cb, void *arg)
{
    int err;
    struct cmd *c = cmd_new(st, PLAIN, handle_ping, arg, &err);
    if (!c)
        return err;
    c->cb.ping = cb;
    cmd_str(c, "PING");
    return cmd_submit(st, c);
}

static void handle_sweep(struct cmd *c, redisReply *reply)
{
    (void)c;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        HR_LOG(HR_LOG_INFO, "claims: %lld unconfirmed claims returned to idle", reply->integer);
}

/* Hosts whose claim lease ended unconfirmed go back to idle; a batch at a
 * time so that one call never holds Redis long. */
static void sweep(struct hr_store *st)
{
    int err;
    struct cmd *c = cmd_new(st, SCRIPT_SWEEP, handle_sweep, NULL, &err);
    if (!c)
        return;
    cmd_str(c, st->cfg.prefix);
    cmd_str(c, "1000");
    cmd_submit(st, c);
}

static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct hr_store *st = ac->data;
    redisReply *reply = r;
    intptr_t what = (intptr_t)privdata; /* script index, or -1 for AUTH/SELECT */
    if (!reply || st->ac != ac)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        HR_LOG_LIMITED(HR_LOG_ERROR, "redis: setup failed: %.200s", reply->str);
        /* Inside a hiredis callback: ask for a clean close; the disconnect
         * callback then schedules the reconnect. */
        st->ready = false;
        redisAsyncDisconnect(ac);
        return;
    }
    if (what >= 0 && reply->type == REDIS_REPLY_STRING && reply->len == 40)
        memcpy(st->sha[what], reply->str, 41);
    if (--st->setup_pending == 0) {
        st->ready = true;
        st->backoff_ms = BACKOFF_MIN_MS;
        if (st->cfg.redis.path[0])
            HR_LOG(HR_LOG_INFO, "redis: connected to unix:%s db %d, scripts loaded",
                   st->cfg.redis.path, st->cfg.redis.db);
        else
            HR_LOG(HR_LOG_INFO, "redis: connected to %s:%d db %d, scripts loaded",
                   st->cfg.redis.host, st->cfg.redis.port, st->cfg.redis.db);
    }
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct hr_store *st = ac->data;
    if (st->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: connect failed: %s (retrying)", ac->errstr);
        st->ac = NULL;
        schedule_reconnect(st);
        return;
    }
    st->setup_pending = 0;
    const struct hr_redis_addr *a = &st->cfg.redis;
    if (a->pass[0]) {
        if (a->user[0])
            redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)-1, "AUTH %s %s", a->user,
                              a->pass);
        else
            redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)-1, "AUTH %s", a->pass);
        st->setup_pending++;
    }
    if (a->db) {
        redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)-1, "SELECT %d", a->db);
        st->setup_pending++;
    }
    for (intptr_t i = 0; i < NSCRIPTS; i++) {
        redisAsyncCommand(ac, on_setup_reply, (void *)i, "SCRIPT LOAD %s", scripts[i].body);
        st->setup_pending++;
    }
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct hr_store *st = cac->data;
    if (st->ac != cac)
        return; /* we dropped it ourselves */
    if (status != REDIS_OK)
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: connection lost: %s (reconnecting)", cac->errstr);
    st->ac = NULL;
    st->ready = false;
    schedule_reconnect(st);
}

static void connect_redis(struct hr_store *st)
{
    const struct hr_redis_addr *a = &st->cfg.redis;
    redisAsyncContext *ac =
        a->path[0] ? redisAsyncConnectUnix(a->path) : redisAsyncConnect(a->host, a->port);
    st->stats.reconnects++;
    if (!ac) {
        schedule_reconnect(st);
        return;
    }
    if (ac->err) {
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: connect failed: %s (retrying)", ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect(st);
        return;
    }
    ac->data = st;
    st->ac = ac;
    st->ready = false;
    st->connect_started_ms = now_ms();
    redisLibeventAttach(ac, st->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hr_store *st = arg;
    if (!st->ac)
        connect_redis(st);
}

/* The command timeout hiredis 0.14 lacks: one periodic tick, not a timer per
 * command. A command unanswered after timeout_ms means the connection is
 * stuck (Redis paused, network gone): drop it and everything behind it. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hr_store *st = arg;
    uint64_t now = now_ms();
    if (!st->ac)
        return;
    if (!st->ready && now - st->connect_started_ms > st->cfg.timeout_ms) {
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: no answer within %" PRIu32 " ms while connecting",
                       st->cfg.timeout_ms);
        st->stats.timeouts++;
        drop_connection(st, true);
        return;
    }
    struct cmd *oldest = st->head.next;
    if (st->ready && st->cfg.sweep_ms && now - st->last_sweep_ms >= st->cfg.sweep_ms) {
        st->last_sweep_ms = now;
        sweep(st);
    }
    if (oldest != &st->head && now - oldest->sent_ms > st->cfg.timeout_ms) {
        HR_LOG_LIMITED(HR_LOG_WARN,
                       "redis: command unanswered after %" PRIu32 " ms, dropping connection "
                       "(%zu in flight)",
                       st->cfg.timeout_ms, st->inflight);
        st->stats.timeouts++;
        drop_connection(st, true);
    }
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
    st->head.next = st->head.prev = &st->head;
    st->backoff_ms = BACKOFF_MIN_MS;
    st->reconnect_ev = evtimer_new(base, on_reconnect_timer, st);
    st->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, st);
    st->flush_ev = event_new(base, -1, 0, on_flush, st);
    uint32_t tick = cfg->timeout_ms / 4 ? cfg->timeout_ms / 4 : 1;
    struct timeval tv = {tick / 1000, (tick % 1000) * 1000};
    if (!st->reconnect_ev || !st->tick_ev || !st->flush_ev || event_add(st->tick_ev, &tv) != 0) {
        snprintf(err, errlen, "cannot create timers");
        hr_store_free(st);
        return NULL;
    }
    connect_redis(st);
    return st;
}

void hr_store_free(struct hr_store *st)
{
    if (!st)
        return;
    /* Everything promised an answer gets RETRY_LATER; callbacks that submit
     * more are refused (not ready). */
    st->ready = false;
    if (st->open) {
        park_failed(st, st->open);
        st->open = NULL;
    }
    answer_failed(st);
    drop_connection(st, false);
    if (st->flush_ev)
        event_free(st->flush_ev);
    free(st->argv);
    free(st->argvlen);
    if (st->reconnect_ev)
        event_free(st->reconnect_ev);
    if (st->tick_ev)
        event_free(st->tick_ev);
    while (st->freelist) {
        struct cmd *c = st->freelist;
        st->freelist = c->next;
        cmd_destroy(c);
    }
    free(st);
}

bool hr_store_ready(const struct hr_store *st)
{
    return st->ready;
}

size_t hr_store_inflight(const struct hr_store *st)
{
    return st->inflight;
}

const struct hr_store_stats *hr_store_get_stats(const struct hr_store *st)
{
    return &st->stats;
}
