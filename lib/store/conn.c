#include "conn.h"

#include "clock.h"
#include "err.h"
#include "log.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Reconnect backoff: quick first retries so a Redis restart costs well under
 * a second, capped at 1 s so service is back within ~1 s of Redis. */
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000

struct hr_conn {
    struct event_base *base;
    struct hr_conn_config cfg;
    redisAsyncContext *ac; /* NULL while down */
    bool ready;
    int setup_pending;        /* setup replies still expected after connect */
    bool setup_failed;        /* a setup command was refused: closing, the rest is moot */
    int evicting;             /* hr_conn_evicting(): 1, 0, or -1 not known */
    bool policy_unknown_said; /* "cannot read maxmemory-policy" logged already */
    uint64_t connect_started_ms;
    uint32_t backoff_ms;
    char sha[HR_NSCRIPTS][41];
    struct event *reconnect_ev;
    struct event *tick_ev;
    struct hr_conn_call head; /* sentinel of the in-flight list */
    const char **argv;        /* scratch for sending */
    size_t *argvlen;
    int argvcap;
    struct hr_conn_stats stats;
};

static void schedule_reconnect(struct hr_conn *c)
{
    if (evtimer_pending(c->reconnect_ev, NULL))
        return;
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    evtimer_add(c->reconnect_ev, &tv);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

/* Drops the connection now: every call in flight fails, by hiredis calling
 * its callback with no reply. Not for use inside a hiredis callback (hiredis
 * defers the free there, and we do not need it to). */
static void drop_connection(struct hr_conn *c, bool reconnect)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    c->ready = false;
    if (ac)
        redisAsyncFree(ac);
    if (reconnect)
        schedule_reconnect(c);
}

static void call_unlink(struct hr_conn_call *k)
{
    k->prev->next = k->next;
    k->next->prev = k->prev;
    k->prev = k->next = k;
}

static void call_append(struct hr_conn *c, struct hr_conn_call *k)
{
    k->prev = c->head.prev;
    k->next = &c->head;
    c->head.prev->next = k;
    c->head.prev = k;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

/* Hands `k` to hiredis; on success it is at the tail of the in-flight list.
 * Scripts get no declared keys: they build key names from the prefix (a
 * single Redis, not a cluster). */
static int send_call(struct hr_conn *c, struct hr_conn_call *k)
{
    const struct hr_script_args *a = k->args;
    int n = 0, need = a->argc + 3;
    if (need > c->argvcap) {
        const char **v = realloc(c->argv, (size_t)need * sizeof(*v));
        if (v)
            c->argv = v;
        size_t *l = v ? realloc(c->argvlen, (size_t)need * sizeof(*l)) : NULL;
        if (!l)
            return HR_E_NOMEM;
        c->argvlen = l;
        c->argvcap = need;
    }
    if (k->script != HR_CONN_PLAIN) {
        c->argv[n++] = k->retried ? "EVAL" : "EVALSHA";
        c->argv[n++] = k->retried ? hr_script_body(k->script) : c->sha[k->script];
        c->argv[n++] = "0";
        for (int i = 0; i < n; i++)
            c->argvlen[i] = strlen(c->argv[i]);
    }
    for (int i = 0; i < a->argc; i++, n++)
        c->argv[n] = hr_script_arg(a, i, &c->argvlen[n]);
    if (!c->ac || redisAsyncCommandArgv(c->ac, on_reply, k, n, c->argv, c->argvlen) != REDIS_OK)
        return HR_E_UNAVAILABLE;
    k->sent_ms = hr_mono_ms();
    call_append(c, k);
    return HR_OK;
}

int hr_conn_send(struct hr_conn *c, struct hr_conn_call *k)
{
    if (!c->ready || !c->ac)
        return HR_E_UNAVAILABLE;
    if (k->args->failed)
        return HR_E_NOMEM;
    k->conn = c;
    k->retried = 0;
    return send_call(c, k);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct hr_conn_call *k = privdata;
    struct hr_conn *c = k->conn;
    redisReply *reply = r;

    k->error = NULL;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        /* Redis restarted or SCRIPT FLUSH: send the body once with EVAL,
         * which also caches it again for the EVALSHAs after it. */
        if (k->script != HR_CONN_PLAIN && !k->retried && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            c->stats.noscript++;
            k->retried = 1;
            call_unlink(k);
            if (send_call(c, k) == HR_OK)
                return;
            call_append(c, k); /* unlinked again below */
        } else {
            c->stats.errors++;
            HR_LOG_LIMITED(HR_LOG_ERROR, "redis: %s failed: %.200s",
                           k->script == HR_CONN_PLAIN ? "command" : hr_script_name(k->script),
                           reply->str);
        }
        k->error = reply->str; /* hiredis frees it after this callback */
        reply = NULL;
    }
    /* reply NULL here also means the connection was lost or freed: the
     * outcome is unknown, so the caller is told it failed. */
    call_unlink(k);
    k->done(k, reply);
}

static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct hr_conn *c = ac->data;
    redisReply *reply = r;
    intptr_t what = (intptr_t)privdata; /* script id, or -1 for AUTH/SELECT */
    if (!reply || c->ac != ac)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        HR_LOG_LIMITED(HR_LOG_ERROR, "redis: setup failed: %.200s", reply->str);
        /* Inside a hiredis callback: ask for a clean close; the disconnect
         * callback then schedules the reconnect. */
        c->ready = false;
        c->setup_failed = true;
        redisAsyncDisconnect(ac);
        return;
    }
    if (what >= 0 && reply->type == REDIS_REPLY_STRING && reply->len == 40)
        memcpy(c->sha[what], reply->str, 41);
    if (--c->setup_pending == 0) {
        c->ready = true;
        c->backoff_ms = BACKOFF_MIN_MS;
        if (c->cfg.redis.path[0])
            HR_LOG(HR_LOG_INFO, "redis: connected to unix:%s db %d, scripts loaded",
                   c->cfg.redis.path, c->cfg.redis.db);
        else
            HR_LOG(HR_LOG_INFO, "redis: connected to %s:%d db %d, scripts loaded",
                   c->cfg.redis.host, c->cfg.redis.port, c->cfg.redis.db);
    }
}

/* The answer to CONFIG GET maxmemory-policy. Redis at its maxmemory with
 * any policy but noeviction makes room by deleting keys, and a host's entry
 * is a key like any other: the host would vanish from the registry while it
 * still sends heartbeats that are acked ok (until its next one recreates it).
 * So say it loudly, once per connection. Not a setup step: a Redis whose
 * ACL refuses CONFIG, or which renamed it, still serves the registry. */
static void on_policy_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    struct hr_conn *c = ac->data;
    redisReply *reply = r;
    if (!reply || c->ac != ac || c->setup_failed)
        return; /* lost, or AUTH refused: that is logged already */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        const char *policy = reply->element[1]->str;
        c->evicting = strcmp(policy, "noeviction") != 0;
        if (c->evicting)
            HR_LOG(HR_LOG_WARN,
                   "redis: maxmemory-policy is %.40s, not noeviction: at its maxmemory Redis "
                   "deletes keys, hosts' entries among them, and hosts vanish from the registry "
                   "without an error",
                   policy);
        return;
    }
    c->evicting = -1;
    if (!c->policy_unknown_said) {
        c->policy_unknown_said = true;
        HR_LOG(HR_LOG_INFO,
               "redis: cannot read maxmemory-policy (%.200s); not checking that Redis does "
               "not evict hosts",
               reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    }
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct hr_conn *c = ac->data;
    if (c->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: connect failed: %s (retrying)", ac->errstr);
        c->ac = NULL;
        schedule_reconnect(c);
        return;
    }
    c->setup_pending = 0;
    c->setup_failed = false;
    c->evicting = -1;
    const struct hr_redis_addr *a = &c->cfg.redis;
    if (a->pass[0]) {
        if (a->user[0])
            redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)-1, "AUTH %s %s", a->user,
                              a->pass);
        else
            redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)-1, "AUTH %s", a->pass);
        c->setup_pending++;
    }
    if (a->db) {
        redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)-1, "SELECT %d", a->db);
        c->setup_pending++;
    }
    /* Before the scripts, so that its answer is in when the connection
     * becomes ready (replies come in order). */
    redisAsyncCommand(ac, on_policy_reply, NULL, "CONFIG GET maxmemory-policy");
    for (intptr_t i = 0; i < HR_NSCRIPTS; i++) {
        redisAsyncCommand(ac, on_setup_reply, (void *)i, "SCRIPT LOAD %s",
                          hr_script_body((enum hr_script_id)i));
        c->setup_pending++;
    }
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct hr_conn *c = cac->data;
    if (c->ac != cac)
        return; /* we dropped it ourselves */
    if (status != REDIS_OK)
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: connection lost: %s (reconnecting)", cac->errstr);
    c->ac = NULL;
    c->ready = false;
    schedule_reconnect(c);
}

static void connect_redis(struct hr_conn *c)
{
    const struct hr_redis_addr *a = &c->cfg.redis;
    redisAsyncContext *ac =
        a->path[0] ? redisAsyncConnectUnix(a->path) : redisAsyncConnect(a->host, a->port);
    c->stats.connects++;
    if (!ac) {
        schedule_reconnect(c);
        return;
    }
    if (ac->err) {
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: connect failed: %s (retrying)", ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->ready = false;
    c->connect_started_ms = hr_mono_ms();
    redisLibeventAttach(ac, c->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hr_conn *c = arg;
    if (!c->ac)
        connect_redis(c);
}

/* The command timeout hiredis 0.14 lacks: one periodic tick, not a timer per
 * command. Commands on one connection are answered in order, so only the
 * oldest can be late. A call unanswered after timeout_ms means the
 * connection is stuck (Redis paused, network gone): drop it and everything
 * behind it. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hr_conn *c = arg;
    uint64_t now = hr_mono_ms();
    if (!c->ac)
        return;
    if (!c->ready && now - c->connect_started_ms > c->cfg.timeout_ms) {
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: no answer within %" PRIu32 " ms while connecting",
                       c->cfg.timeout_ms);
        c->stats.timeouts++;
        drop_connection(c, true);
        return;
    }
    struct hr_conn_call *oldest = c->head.next;
    if (oldest != &c->head && now - oldest->sent_ms > c->cfg.timeout_ms) {
        size_t n = 0;
        for (struct hr_conn_call *k = oldest; k != &c->head; k = k->next)
            n++;
        HR_LOG_LIMITED(HR_LOG_WARN,
                       "redis: command unanswered after %" PRIu32 " ms, dropping connection "
                       "(%zu calls in flight)",
                       c->cfg.timeout_ms, n);
        c->stats.timeouts++;
        drop_connection(c, true);
    }
}

struct hr_conn *hr_conn_new(struct event_base *base, const struct hr_conn_config *cfg, char *err,
                            size_t errlen)
{
    if (cfg->timeout_ms == 0) {
        snprintf(err, errlen, "the Redis timeout must be positive");
        return NULL;
    }
    struct hr_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->base = base;
    c->cfg = *cfg;
    c->head.next = c->head.prev = &c->head;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->evicting = -1;
    c->reconnect_ev = evtimer_new(base, on_reconnect_timer, c);
    c->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, c);
    uint32_t tick = cfg->timeout_ms / 4 ? cfg->timeout_ms / 4 : 1;
    struct timeval tv = {tick / 1000, (tick % 1000) * 1000};
    if (!c->reconnect_ev || !c->tick_ev || event_add(c->tick_ev, &tv) != 0) {
        snprintf(err, errlen, "cannot create timers");
        hr_conn_free(c);
        return NULL;
    }
    connect_redis(c);
    return c;
}

void hr_conn_free(struct hr_conn *c)
{
    if (!c)
        return;
    drop_connection(c, false);
    if (c->reconnect_ev)
        event_free(c->reconnect_ev);
    if (c->tick_ev)
        event_free(c->tick_ev);
    free(c->argv);
    free(c->argvlen);
    free(c);
}

bool hr_conn_ready(const struct hr_conn *c)
{
    return c->ready;
}

int hr_conn_evicting(const struct hr_conn *c)
{
    return c->evicting;
}

const struct hr_conn_stats *hr_conn_get_stats(const struct hr_conn *c)
{
    return &c->stats;
}
