#include "conn.h"

#include "clock.h"
#include "err.h"
#include "layout.h"
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
    struct hr_redis_addr addr; /* cfg.redis, with the master a sentinel named */
    struct hr_layout layout;   /* the registry's, read at connect */
    redisAsyncContext *ac;     /* NULL while down */
    /* Sentinel (addr.master set): the sentinel being asked for the master
     * (NULL when none), which one to ask next and how many were asked in this
     * round; the subscription to +switch-master on one of them, and its
     * retry timer. */
    redisAsyncContext *sac;
    int sentinel_next, sentinel_asked;
    redisAsyncContext *sub;
    int sub_next;
    struct event *sub_ev;
    struct event *resolve_ev; /* drop the connection and ask the sentinels again */
    bool ready;
    int setup_pending;        /* setup replies still expected after connect */
    bool setup_failed;        /* a setup command was refused: closing, the rest is moot */
    bool stopped;             /* a Redis Cluster node: never connects again */
    int evicting;             /* hr_conn_evicting(): 1, 0, or -1 not known */
    bool policy_unknown_said; /* "cannot read maxmemory-policy" logged already */
    uint64_t connect_started_ms;
    uint32_t backoff_ms;
    char sha[HR_NSCRIPTS][41];
    struct event *reconnect_ev;
    struct event *tick_ev;
    struct hr_conn_call head; /* sentinel of the in-flight list */
    uint64_t last_reply_ms;   /* the last reply of any kind (or the connect): progress */
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
    redisAsyncContext *ac = c->ac, *sac = c->sac;
    c->ac = c->sac = NULL;
    c->ready = false;
    if (ac)
        redisAsyncFree(ac);
    if (sac)
        redisAsyncFree(sac);
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
static void on_wait(redisAsyncContext *ac, void *r, void *privdata);

/* A deep copy of a reply that outlives hiredis's (freeReplyObject frees
 * it), or NULL when out of memory. */
static redisReply *reply_copy(const redisReply *r)
{
    redisReply *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->type = r->type;
    o->integer = r->integer;
    if (r->str) {
        if (!(o->str = malloc(r->len + 1))) {
            free(o);
            return NULL;
        }
        memcpy(o->str, r->str, r->len);
        o->str[r->len] = '\0';
        o->len = r->len;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements) {
        if (!(o->element = calloc(r->elements, sizeof(*o->element)))) {
            freeReplyObject(o);
            return NULL;
        }
        o->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++)
            if (!(o->element[i] = reply_copy(r->element[i]))) {
                freeReplyObject(o);
                return NULL;
            }
    }
    return o;
}

/* How long a WAIT may take (ms, at least 1). */
static unsigned wait_ms(const struct hr_conn *c)
{
    uint32_t ms = c->cfg.wait_ms ? c->cfg.wait_ms : c->cfg.timeout_ms / 2;
    return ms ? ms : 1;
}

/* Whether a script writes: all but the list and the count. */
static bool writes(int script)
{
    return script != HR_CONN_PLAIN && script != HR_SCRIPT_LIST && script != HR_SCRIPT_COUNT;
}

/* Hands `k` to hiredis; on success it is at the tail of the in-flight list.
 * A script's keys go in KEYS (numkeys), so that a Redis Cluster could route
 * it; plain commands are their args. */
static int send_call(struct hr_conn *c, struct hr_conn_call *k)
{
    char nkeys[16];
    int n = hr_script_call_argv(k->args, k->script, k->retried,
                                k->script >= 0 ? c->sha[k->script] : NULL, nkeys, &c->argv,
                                &c->argvlen, &c->argvcap);
    if (n < 0)
        return HR_E_NOMEM;
    if (!c->ac || redisAsyncCommandArgv(c->ac, on_reply, k, n, c->argv, c->argvlen) != REDIS_OK)
        return HR_E_UNAVAILABLE;
    /* Replies come in order: this WAIT answers once the script's writes
     * (and everything before them) reached the replicas, or gives up. */
    if (c->cfg.wait_replicas && writes(k->script) &&
        redisAsyncCommand(c->ac, on_wait, k, "WAIT %u %u", c->cfg.wait_replicas, wait_ms(c)) ==
            REDIS_OK)
        k->waits++;
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
    k->waits = 0;
    k->replied = false;
    k->kept = NULL;
    return send_call(c, k);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct hr_conn_call *k = privdata;
    struct hr_conn *c = k->conn;
    redisReply *reply = r;

    if (reply)
        c->last_reply_ms = hr_mono_ms();
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
            if (strstr(reply->str, "READONLY"))
                hr_conn_readonly(c);
            HR_LOG_LIMITED(HR_LOG_ERROR, "redis: %s failed: %.200s",
                           k->script == HR_CONN_PLAIN ? "command" : hr_script_name(k->script),
                           reply->str);
        }
        k->error = reply->str; /* hiredis frees it after this callback */
        reply = NULL;
    }
    /* reply NULL here also means the connection was lost or freed: the
     * outcome is unknown, so the caller is told it failed. */
    if (k->waits > 0) { /* answered when the last WAIT is */
        k->replied = true;
        k->kept = reply ? reply_copy(reply) : NULL;
        if (reply && !k->kept)
            snprintf(k->kept_error, sizeof(k->kept_error), "out of memory");
        else if (k->error)
            snprintf(k->kept_error, sizeof(k->kept_error), "%s", k->error);
        else
            k->kept_error[0] = '\0';
        return;
    }
    call_unlink(k);
    k->done(k, reply);
}

/* The answer to the WAIT after a write script: the number of replicas that
 * have it. The call is done with the script's reply when enough do, and
 * failed (its outcome unknown: written on the master only) otherwise. */
static void on_wait(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct hr_conn_call *k = privdata;
    struct hr_conn *c = k->conn;
    redisReply *reply = r;
    if (reply)
        c->last_reply_ms = hr_mono_ms();
    if (--k->waits > 0 || !k->replied)
        return; /* the WAIT of a send that NOSCRIPT made moot */
    redisReply *kept = k->kept;
    k->kept = NULL;
    k->error = k->kept_error[0] ? k->kept_error : NULL;
    if (kept && !reply) { /* the connection was lost: the outcome is unknown */
        k->error = NULL;
        freeReplyObject(kept);
        kept = NULL;
    } else if (kept && (reply->type != REDIS_REPLY_INTEGER ||
                        reply->integer < (long long)c->cfg.wait_replicas)) {
        c->stats.not_replicated++;
        HR_LOG_LIMITED(HR_LOG_WARN,
                       "redis: a write reached %lld of the %u replicas it must reach within "
                       "%u ms: failed",
                       reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0LL,
                       c->cfg.wait_replicas, wait_ms(c));
        snprintf(k->kept_error, sizeof(k->kept_error),
                 "NOREPLICAS the write was not confirmed by enough replicas");
        k->error = k->kept_error;
        freeReplyObject(kept);
        kept = NULL;
    }
    call_unlink(k);
    k->done(k, kept);
    if (kept)
        freeReplyObject(kept);
}

/* What a setup reply answers, besides a script's id (SCRIPT LOAD). */
#define SETUP_PLAIN (-1)   /* AUTH, SELECT */
#define SETUP_ROLE (-2)    /* ROLE: is the node Sentinel named still the master? */
#define SETUP_CLUSTER (-3) /* INFO cluster: is it a Redis Cluster node? */
#define SETUP_LAYOUT (-4)  /* GET <layout key>: are the keys laid out as this build expects? */

static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct hr_conn *c = ac->data;
    redisReply *reply = r;
    intptr_t what = (intptr_t)privdata; /* script id, SETUP_PLAIN or SETUP_ROLE */
    if (!reply || c->ac != ac || c->stopped)
        return; /* lost, or a cluster node left: the replies behind are moot */
    if (what == SETUP_CLUSTER) {
        /* On a cluster node the calls must go to the master of their keys'
         * slots, which this connection does not do: it stops, and its
         * owner goes through the cluster (cluster_conn.h). Without an
         * owner that can, or behind Sentinel or on a unix socket (a
         * cluster's nodes are known by TCP address), the node is never
         * ready. INFO refused (an ACL without +info): not known, go on. */
        if (reply->type == REDIS_REPLY_STRING && strstr(reply->str, "cluster_enabled:1")) {
            bool follow = c->cfg.on_cluster && !c->addr.master[0] && !c->addr.path[0];
            if (follow)
                HR_LOG(HR_LOG_INFO,
                       "redis: %s:%d is a Redis Cluster node: going through the cluster's "
                       "slot map, with it as the seed",
                       c->addr.host, c->addr.port);
            else
                HR_LOG_LIMITED(HR_LOG_ERROR, "redis: %s",
                               "the server is a Redis Cluster node: hostreg reaches a cluster "
                               "by the TCP address of a node (redis://host:port), not behind "
                               "Sentinel or on a unix socket");
            c->ready = false;
            c->setup_failed = true;
            c->stopped = follow;
            redisAsyncDisconnect(ac);
            if (follow)
                c->cfg.on_cluster(c->cfg.on_cluster_arg);
            return;
        }
    } else if (what == SETUP_LAYOUT && reply->type == REDIS_REPLY_NIL) {
        /* A registry without a layout yet: this program's becomes it unless
         * another program's got there first (NX), and the GET after it says
         * which one did. */
        char value[96];
        hr_layout_format(&c->cfg.layout, value, sizeof(value));
        redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)SETUP_PLAIN, "SET %s %s NX",
                          c->cfg.layout_key, value);
        redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)SETUP_LAYOUT, "GET %s",
                          c->cfg.layout_key);
        c->setup_pending += 2;
    } else if (what == SETUP_LAYOUT && reply->type == REDIS_REPLY_STRING) {
        if (hr_layout_parse(reply->str, c->cfg.layout.prefix, &c->layout) != 0) {
            /* Written by a build with another layout: reading its keys as
             * ours would take its hosts for absent ones and write over
             * them. */
            HR_LOG_LIMITED(HR_LOG_ERROR,
                           "redis: %s is '%.40s': the registry is in another storage layout, "
                           "and this build reads layout " HR_LAYOUT_VERSION
                           " only; run the build that wrote it, or another --prefix",
                           c->cfg.layout_key, reply->str);
            c->ready = false;
            c->setup_failed = true;
            redisAsyncDisconnect(ac);
            return;
        }
    } else if (reply->type == REDIS_REPLY_ERROR) {
        HR_LOG_LIMITED(HR_LOG_ERROR, "redis: setup failed: %.200s", reply->str);
        /* Inside a hiredis callback: ask for a clean close; the disconnect
         * callback then schedules the reconnect. */
        c->ready = false;
        c->setup_failed = true;
        redisAsyncDisconnect(ac);
        return;
    }
    if (what == SETUP_ROLE && (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
                               reply->element[0]->type != REDIS_REPLY_STRING ||
                               strcmp(reply->element[0]->str, "master") != 0)) {
        /* The sentinel's answer is already out of date (a failover under
         * way, or a master demoted and not yet noticed): ask again. */
        HR_LOG_LIMITED(HR_LOG_WARN,
                       "redis: %s:%d, named master of '%s' by Sentinel, is not a master "
                       "(role %.20s): asking the sentinels again",
                       c->addr.host, c->addr.port, c->addr.master,
                       reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                               reply->element[0]->type == REDIS_REPLY_STRING
                           ? reply->element[0]->str
                           : "unknown");
        c->ready = false;
        c->setup_failed = true;
        redisAsyncDisconnect(ac);
        return;
    }
    if (what >= 0 && reply->type == REDIS_REPLY_STRING && reply->len == 40)
        memcpy(c->sha[what], reply->str, 41);
    if (--c->setup_pending == 0) {
        c->ready = true;
        c->last_reply_ms = hr_mono_ms();
        c->backoff_ms = BACKOFF_MIN_MS;
        if (c->addr.path[0])
            HR_LOG(HR_LOG_INFO, "redis: connected to unix:%s db %d, scripts loaded", c->addr.path,
                   c->addr.db);
        else if (c->addr.master[0])
            HR_LOG(HR_LOG_INFO,
                   "redis: connected to %s:%d db %d, master '%s' by Sentinel, "
                   "scripts loaded",
                   c->addr.host, c->addr.port, c->addr.db, c->addr.master);
        else
            HR_LOG(HR_LOG_INFO, "redis: connected to %s:%d db %d, scripts loaded", c->addr.host,
                   c->addr.port, c->addr.db);
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
    const struct hr_redis_addr *a = &c->addr;
    if (a->pass[0]) {
        if (a->user[0])
            redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)SETUP_PLAIN, "AUTH %s %s",
                              a->user, a->pass);
        else
            redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)SETUP_PLAIN, "AUTH %s",
                              a->pass);
        c->setup_pending++;
    }
    if (a->db) {
        redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)SETUP_PLAIN, "SELECT %d", a->db);
        c->setup_pending++;
    }
    if (a->master[0]) { /* after AUTH: a Redis with a password answers nothing before it */
        redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)SETUP_ROLE, "ROLE");
        c->setup_pending++;
    }
    redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)SETUP_CLUSTER, "INFO cluster");
    c->setup_pending++;
    if (c->cfg.layout.buckets) {
        redisAsyncCommand(ac, on_setup_reply, (void *)(intptr_t)SETUP_LAYOUT, "GET %s",
                          c->cfg.layout_key);
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
    c->ac = NULL;
    c->ready = false;
    if (c->stopped)
        return;
    if (status != REDIS_OK)
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: connection lost: %s (reconnecting)", cac->errstr);
    schedule_reconnect(c);
}

static void connect_node(struct hr_conn *c)
{
    const struct hr_redis_addr *a = &c->addr;
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

/* --- Sentinel --- */

static void ask_sentinel(struct hr_conn *c);

/* The next sentinel, or, once each was asked in this round, a reconnect
 * after the backoff (which starts a new round). */
static void ask_next_sentinel(struct hr_conn *c)
{
    c->sac = NULL;
    if (c->sentinel_asked >= c->addr.nsentinels) {
        schedule_reconnect(c);
        return;
    }
    ask_sentinel(c);
}

/* The answer to SENTINEL get-master-addr-by-name: [ip, port], or nil when the
 * sentinel knows no such master. */
static void on_master_addr(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    struct hr_conn *c = ac->data;
    redisReply *reply = r;
    if (c->sac != ac)
        return;
    int port = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING &&
        reply->element[0]->len < sizeof(c->addr.host))
        port = atoi(reply->element[1]->str);
    redisAsyncDisconnect(ac); /* done with it: freed after this callback */
    int i = (c->sentinel_next + c->addr.nsentinels - 1) % c->addr.nsentinels;
    if (port <= 0 || port > 65535) {
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: sentinel %s:%d names no master '%s'%s%.200s",
                       c->addr.sentinel[i].host, c->addr.sentinel[i].port, c->addr.master,
                       reply && reply->type == REDIS_REPLY_ERROR ? ": " : "",
                       reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        ask_next_sentinel(c);
        return;
    }
    c->sac = NULL;
    if (strcmp(c->addr.host, reply->element[0]->str) != 0 || c->addr.port != port)
        HR_LOG(HR_LOG_INFO, "redis: sentinel %s:%d names %s:%d master of '%s'",
               c->addr.sentinel[i].host, c->addr.sentinel[i].port, reply->element[0]->str, port,
               c->addr.master);
    snprintf(c->addr.host, sizeof(c->addr.host), "%s", reply->element[0]->str);
    c->addr.port = port;
    connect_node(c);
}

static void on_sentinel_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct hr_conn *c = ac->data;
    if (c->sac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: sentinel: connect failed: %s", ac->errstr);
        ask_next_sentinel(c);
        return;
    }
    redisAsyncCommand(ac, on_master_addr, NULL, "SENTINEL get-master-addr-by-name %s",
                      c->addr.master);
}

static void on_sentinel_disconnect(const redisAsyncContext *cac, int status)
{
    struct hr_conn *c = cac->data;
    (void)status;
    if (c->sac == cac) /* lost before it answered */
        ask_next_sentinel(c);
}

/* Asks the next sentinel for the master's address (on_master_addr then
 * connects to it). */
static void ask_sentinel(struct hr_conn *c)
{
    int i = c->sentinel_next;
    c->sentinel_next = (i + 1) % c->addr.nsentinels;
    c->sentinel_asked++;
    c->stats.connects++;
    redisAsyncContext *ac = redisAsyncConnect(c->addr.sentinel[i].host, c->addr.sentinel[i].port);
    if (!ac || ac->err) {
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: sentinel %s:%d: %s", c->addr.sentinel[i].host,
                       c->addr.sentinel[i].port, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        ask_next_sentinel(c);
        return;
    }
    ac->data = c;
    c->sac = ac;
    c->connect_started_ms = hr_mono_ms();
    redisLibeventAttach(ac, c->base);
    redisAsyncSetConnectCallback(ac, on_sentinel_connect);
    redisAsyncSetDisconnectCallback(ac, on_sentinel_disconnect);
}

/* Connects to the Redis of the configuration, asking the sentinels first
 * when it names a master. */
static void connect_redis(struct hr_conn *c)
{
    if (!c->addr.master[0]) {
        connect_node(c);
        return;
    }
    c->sentinel_asked = 0;
    ask_sentinel(c);
}

static void on_resolve(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_conn *c = arg;
    drop_connection(c, false);
    c->backoff_ms = BACKOFF_MIN_MS;
    connect_redis(c);
}

void hr_conn_readonly(struct hr_conn *c)
{
    if (c->addr.master[0] && c->ac && !event_pending(c->resolve_ev, EV_TIMEOUT, NULL)) {
        HR_LOG_LIMITED(HR_LOG_WARN,
                       "redis: %s:%d refuses writes as a replica: asking the "
                       "sentinels for the master again",
                       c->addr.host, c->addr.port);
        event_active(c->resolve_ev, EV_TIMEOUT, 0);
    }
}

/* +switch-master messages, and the subscription's own replies: ["message",
 * "+switch-master", "<name> <old ip> <old port> <new ip> <new port>"]. A
 * failover of our master drops the connection and asks the sentinels again
 * (rather than trusting the message: ROLE checks whoever they name). */
static void on_switch(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    struct hr_conn *c = ac->data;
    redisReply *reply = r;
    if (!reply || c->sub != ac || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[2]->type != REDIS_REPLY_STRING ||
        strcmp(reply->element[0]->str, "message") != 0)
        return;
    const char *m = reply->element[2]->str;
    size_t n = strlen(c->addr.master);
    if (strncmp(m, c->addr.master, n) != 0 || m[n] != ' ')
        return;
    char ip[256];
    int port;
    if (c->ready && sscanf(m + n + 1, "%*s %*d %255s %d", ip, &port) == 2 &&
        strcmp(ip, c->addr.host) == 0 && port == c->addr.port)
        return; /* on the new master already (a READONLY sent us there first) */
    HR_LOG(HR_LOG_WARN, "redis: sentinel: failover of '%s' (%.200s): reconnecting", c->addr.master,
           m + n + 1);
    event_active(c->resolve_ev, EV_TIMEOUT, 0);
}

static void subscribe_later(struct hr_conn *c)
{
    struct timeval tv = {1, 0};
    c->sub = NULL;
    evtimer_add(c->sub_ev, &tv);
}

static void on_sub_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct hr_conn *c = ac->data;
    if (c->sub != ac)
        return;
    if (status != REDIS_OK) {
        subscribe_later(c);
        return;
    }
    redisAsyncCommand(ac, on_switch, NULL, "SUBSCRIBE +switch-master");
}

static void on_sub_disconnect(const redisAsyncContext *cac, int status)
{
    (void)status;
    struct hr_conn *c = cac->data;
    if (c->sub == cac) {
        HR_LOG_LIMITED(HR_LOG_WARN,
                       "redis: lost the subscription to a sentinel: %s (resubscribing)",
                       cac->errstr[0] ? cac->errstr : "closed");
        subscribe_later(c);
    }
}

/* Subscribes to +switch-master on one sentinel, the next one each time the
 * subscription is lost. A failover missed while no subscription stands is
 * still found: by ROLE at the next connect, and by the first READONLY. */
static void on_subscribe(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_conn *c = arg;
    int i = c->sub_next;
    c->sub_next = (i + 1) % c->addr.nsentinels;
    redisAsyncContext *ac = redisAsyncConnect(c->addr.sentinel[i].host, c->addr.sentinel[i].port);
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        subscribe_later(c);
        return;
    }
    ac->data = c;
    c->sub = ac;
    redisLibeventAttach(ac, c->base);
    redisAsyncSetConnectCallback(ac, on_sub_connect);
    redisAsyncSetDisconnectCallback(ac, on_sub_disconnect);
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hr_conn *c = arg;
    if (!c->ac && !c->sac && !c->stopped)
        connect_redis(c);
}

/* The command timeout hiredis 0.14 lacks: one periodic tick, not a timer per
 * command. A connection with calls in flight that has had no reply of any
 * kind for timeout_ms is stuck (Redis paused, network gone): drop it and
 * everything on it. A slow Redis that still answers is not stuck, however
 * old its oldest call: admission (hr_conn_backlog_ms) keeps its queue short,
 * and dropping it would lose every answer on the way. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hr_conn *c = arg;
    uint64_t now = hr_mono_ms();
    if (!c->ac && !c->sac)
        return;
    if (!c->ready && now - c->connect_started_ms > c->cfg.timeout_ms) {
        HR_LOG_LIMITED(HR_LOG_WARN, "redis: no answer within %" PRIu32 " ms while connecting",
                       c->cfg.timeout_ms);
        c->stats.timeouts++;
        drop_connection(c, true);
        return;
    }
    struct hr_conn_call *oldest = c->head.next;
    if (oldest != &c->head && now - oldest->sent_ms > c->cfg.timeout_ms &&
        now - c->last_reply_ms > c->cfg.timeout_ms) {
        size_t n = 0;
        for (struct hr_conn_call *k = oldest; k != &c->head; k = k->next)
            n++;
        HR_LOG_LIMITED(HR_LOG_WARN,
                       "redis: no reply of any kind for %" PRIu32 " ms, dropping connection "
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
    c->addr = cfg->redis;
    if (cfg->layout.buckets)
        snprintf(c->cfg.layout_key, sizeof(c->cfg.layout_key), "%s" HR_LAYOUT_KEY,
                 cfg->layout.prefix);
    c->head.next = c->head.prev = &c->head;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->evicting = -1;
    c->reconnect_ev = evtimer_new(base, on_reconnect_timer, c);
    c->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, c);
    c->resolve_ev = event_new(base, -1, 0, on_resolve, c);
    c->sub_ev = evtimer_new(base, on_subscribe, c);
    uint32_t tick = cfg->timeout_ms / 4 ? cfg->timeout_ms / 4 : 1;
    struct timeval tv = {tick / 1000, (tick % 1000) * 1000};
    if (!c->reconnect_ev || !c->tick_ev || !c->resolve_ev || !c->sub_ev ||
        event_add(c->tick_ev, &tv) != 0) {
        snprintf(err, errlen, "cannot create timers");
        hr_conn_free(c);
        return NULL;
    }
    if (c->addr.master[0])
        on_subscribe(-1, 0, c);
    connect_redis(c);
    return c;
}

void hr_conn_free(struct hr_conn *c)
{
    if (!c)
        return;
    drop_connection(c, false);
    if (c->sub) {
        redisAsyncContext *sub = c->sub;
        c->sub = NULL;
        redisAsyncFree(sub);
    }
    if (c->resolve_ev)
        event_free(c->resolve_ev);
    if (c->sub_ev)
        event_free(c->sub_ev);
    if (c->reconnect_ev)
        event_free(c->reconnect_ev);
    if (c->tick_ev)
        event_free(c->tick_ev);
    free(c->argv);
    free(c->argvlen);
    free(c);
}

const struct hr_layout *hr_conn_layout(const struct hr_conn *c)
{
    return &c->layout;
}

uint64_t hr_conn_backlog_ms(const struct hr_conn *c, uint64_t now_ms)
{
    const struct hr_conn_call *oldest = c->head.next;
    return oldest != &c->head && now_ms > oldest->sent_ms ? now_ms - oldest->sent_ms : 0;
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
