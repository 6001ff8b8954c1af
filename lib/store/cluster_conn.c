#include "cluster_conn.h"

#include "clock.h"
#include "cluster.h"
#include "err.h"
#include "layout.h"
#include "log.h"
#include "script.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The router announces its readiness to nobody, so it is looked at this
 * often: the layout read and the masters' maxmemory-policy wait for it, and
 * the store's readiness follows it within this much. */
#define TICK_MS 50
/* A layout read that failed (a master lost meanwhile, say) is tried again
 * after this: often enough to be ready soon after the cluster is. */
#define LAYOUT_RETRY_MS 200

struct hr_cconn {
    struct event_base *base;
    struct hr_cconn_config cfg;
    struct hr_cluster *router;
    struct hr_layout layout; /* the registry's, once read */
    char layout_key[64];
    bool layout_loaded, layout_pending;
    uint64_t layout_next_ms;
    /* Why it will never be ready (a layout of another build, a database
     * other than 0, --redis-wait), "" when nothing says so. */
    char refused[300];
    bool router_was_ready, was_ready;
    /* The masters' maxmemory-policy, read each time the router becomes
     * ready: replies still expected, and what they said so far. */
    int policy_pending, policy_evicts, policy_unknown;
    int evicting;
    char sha[HR_NSCRIPTS][41];
    struct event *tick_ev;
    const char **argv; /* scratch for sending */
    size_t *argvlen;
    int argvcap;
    bool freeing;
    struct hr_cconn_stats stats;
};

/* The SHA1 of a script's body, as Redis names it (EVALSHA), in hex. */
static int script_sha(const char *body, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(body, strlen(body), md, &n, EVP_sha1(), NULL) != 1 || n != 20)
        return -1;
    for (unsigned int i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* The slot of a call's first key, or -1 when it has none. */
static int slot_of(const struct hr_conn_call *k)
{
    const struct hr_script_args *a = k->args;
    size_t len;
    const char *key;
    if (k->script != HR_CONN_PLAIN) {
        if (a->nkeys < 1)
            return -1;
        key = hr_script_key_at(a, 0, &len);
    } else {
        if (a->argc < 2)
            return -1;
        key = hr_script_arg(a, 1, &len);
    }
    return hr_cluster_keyslot(key, len);
}

static void on_reply(void *arg, redisReply *reply, const char *error);

/* Hands k to the router: to the master of k->slot, or, when it is -1, to
 * master k->master. A script goes as EVALSHA, or as EVAL once it has met
 * NOSCRIPT (k->retried). */
static int send_call(struct hr_cconn *cc, struct hr_conn_call *k)
{
    char nkeys[16];
    int n = hr_script_call_argv(k->args, k->script, k->retried,
                                k->script >= 0 ? cc->sha[k->script] : NULL, nkeys, &cc->argv,
                                &cc->argvlen, &cc->argvcap);
    if (n < 0)
        return HR_E_NOMEM;
    /* The router copies the command: the scratch is free again on return. */
    if (k->slot >= 0)
        return hr_cluster_send(cc->router, k->slot, n, cc->argv, cc->argvlen, on_reply, k);
    return hr_cluster_send_node(cc->router, k->master, n, cc->argv, cc->argvlen, on_reply, k);
}

static void on_reply(void *arg, redisReply *reply, const char *error)
{
    struct hr_conn_call *k = arg;
    struct hr_cconn *cc = k->cconn;
    /* A node that lacks the script (restarted, SCRIPT FLUSH, or new to the
     * cluster): its body once with EVAL, which also caches it there for the
     * EVALSHAs after it. NOSCRIPT means nothing ran. */
    if (error && !cc->freeing && k->script != HR_CONN_PLAIN && !k->retried &&
        strncmp(error, "NOSCRIPT", 8) == 0) {
        cc->stats.noscript++;
        k->retried = 1;
        if (send_call(cc, k) == HR_OK)
            return;
    }
    /* A write refused by a master that has just become a replica: the map
     * has changed, whether or not a MOVED has said so yet. */
    if (error && !cc->freeing && strstr(error, "READONLY"))
        hr_cluster_refresh(cc->router);
    k->error = error;
    k->done(k, error ? NULL : reply);
}

static int send_first(struct hr_cconn *cc, struct hr_conn_call *k)
{
    if (!hr_cconn_ready(cc))
        return HR_E_UNAVAILABLE;
    if (k->args->failed)
        return HR_E_NOMEM;
    k->cconn = cc;
    k->retried = 0;
    k->error = NULL;
    return send_call(cc, k);
}

int hr_cconn_send(struct hr_cconn *cc, struct hr_conn_call *k)
{
    k->slot = slot_of(k);
    k->master = 0;
    return send_first(cc, k);
}

int hr_cconn_send_node(struct hr_cconn *cc, struct hr_conn_call *k, size_t master)
{
    k->slot = -1;
    k->master = master;
    return send_first(cc, k);
}

/* --- the layout key --- */

static void layout_failed(struct hr_cconn *cc, const char *error)
{
    cc->layout_pending = false;
    cc->layout_next_ms = hr_mono_ms() + LAYOUT_RETRY_MS;
    HR_LOG_LIMITED(HR_LOG_WARN, "redis cluster: cannot read %s: %.200s (trying again)",
                   cc->layout_key, error);
}

static void layout_get(struct hr_cconn *cc);

static void on_layout_set(void *arg, redisReply *reply, const char *error)
{
    struct hr_cconn *cc = arg;
    (void)reply;
    if (cc->freeing)
        return;
    if (error) {
        layout_failed(cc, error);
        return;
    }
    layout_get(cc); /* whichever program's layout got there first */
}

static void on_layout_get(void *arg, redisReply *reply, const char *error)
{
    struct hr_cconn *cc = arg;
    if (cc->freeing)
        return;
    if (error) {
        layout_failed(cc, error);
        return;
    }
    if (reply->type == REDIS_REPLY_NIL) {
        /* A registry without a layout yet: this program's becomes it unless
         * another program's got there first (NX). */
        char value[96];
        hr_layout_format(&cc->cfg.layout, value, sizeof(value));
        const char *argv[] = {"SET", cc->layout_key, value, "NX"};
        int slot = hr_cluster_keyslot(cc->layout_key, strlen(cc->layout_key));
        if (hr_cluster_send(cc->router, slot, 4, argv, NULL, on_layout_set, cc) != HR_OK)
            layout_failed(cc, "cannot send SET");
        return;
    }
    cc->layout_pending = false;
    if (reply->type != REDIS_REPLY_STRING ||
        hr_layout_parse(reply->str, cc->cfg.layout.prefix, &cc->layout) != 0) {
        /* Written by a build with another layout: reading its keys as ours
         * would take its hosts for absent ones and write over them. */
        snprintf(cc->refused, sizeof(cc->refused),
                 "%s is '%.40s': the registry is in another storage layout, and this build "
                 "reads layout " HR_LAYOUT_VERSION " only",
                 cc->layout_key, reply->type == REDIS_REPLY_STRING ? reply->str : "not a string");
        HR_LOG(HR_LOG_ERROR, "redis cluster: %s; run the build that wrote it, or another --prefix",
               cc->refused);
        return;
    }
    cc->layout_loaded = true;
}

static void layout_get(struct hr_cconn *cc)
{
    const char *argv[] = {"GET", cc->layout_key};
    int slot = hr_cluster_keyslot(cc->layout_key, strlen(cc->layout_key));
    cc->layout_pending = true;
    if (hr_cluster_send(cc->router, slot, 2, argv, NULL, on_layout_get, cc) != HR_OK)
        layout_failed(cc, "cannot send GET");
}

/* --- each master's maxmemory-policy --- */

static void on_policy(void *arg, redisReply *reply, const char *error)
{
    struct hr_cconn *cc = arg;
    if (cc->freeing)
        return;
    if (!error && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        if (strcmp(reply->element[1]->str, "noeviction") != 0) {
            if (!cc->policy_evicts)
                HR_LOG(HR_LOG_WARN,
                       "redis cluster: a master's maxmemory-policy is %.40s, not noeviction: "
                       "at its maxmemory Redis deletes keys, hosts' entries among them, and "
                       "hosts vanish from the registry without an error",
                       reply->element[1]->str);
            cc->policy_evicts++;
        }
    } else {
        cc->policy_unknown++;
    }
    if (--cc->policy_pending == 0)
        cc->evicting = cc->policy_evicts ? 1 : cc->policy_unknown ? -1 : 0;
}

/* Asks every master of the map (a Redis at its maxmemory that evicts would
 * delete hosts without a word: said once per round). */
static void policy_read(struct hr_cconn *cc)
{
    if (cc->policy_pending)
        return;
    cc->policy_evicts = cc->policy_unknown = 0;
    const char *argv[] = {"CONFIG", "GET", "maxmemory-policy"};
    size_t n = hr_cluster_nmasters(cc->router);
    for (size_t m = 0; m < n; m++)
        if (hr_cluster_send_node(cc->router, m, 3, argv, NULL, on_policy, cc) == HR_OK)
            cc->policy_pending++;
}

/* --- readiness --- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_cconn *cc = arg;
    bool router_ready = hr_cluster_ready(cc->router);
    if (router_ready && !cc->refused[0] && !cc->layout_loaded && !cc->layout_pending &&
        hr_mono_ms() >= cc->layout_next_ms)
        layout_get(cc);
    if (router_ready && !cc->router_was_ready)
        policy_read(cc);
    cc->router_was_ready = router_ready;
    bool ready = hr_cconn_ready(cc);
    if (ready && !cc->was_ready)
        HR_LOG(HR_LOG_INFO,
               "redis cluster: ready, %zu masters, layout %" PRIu32 " buckets, scripts by "
               "EVALSHA",
               hr_cluster_nmasters(cc->router), cc->layout.buckets);
    cc->was_ready = ready;
}

struct hr_cconn *hr_cconn_new(struct event_base *base, const struct hr_cconn_config *cfg, char *err,
                              size_t errlen)
{
    struct hr_cconn *cc = calloc(1, sizeof(*cc));
    if (!cc) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cc->base = base;
    cc->cfg = *cfg;
    cc->evicting = -1;
    snprintf(cc->layout_key, sizeof(cc->layout_key), "%s" HR_LAYOUT_KEY, cfg->layout.prefix);
    for (int i = 0; i < HR_NSCRIPTS; i++)
        if (script_sha(hr_script_body((enum hr_script_id)i), cc->sha[i]) != 0) {
            snprintf(err, errlen, "cannot compute the scripts' SHA1");
            goto fail;
        }
    const struct hr_redis_addr *a = &cfg->redis;
    if (a->db)
        snprintf(cc->refused, sizeof(cc->refused),
                 "the URL names database %d, and a Redis Cluster has database 0 only", a->db);
    else if (cfg->wait_replicas)
        snprintf(cc->refused, sizeof(cc->refused),
                 "--redis-wait is not supported on a Redis Cluster yet");
    if (cc->refused[0])
        HR_LOG(HR_LOG_ERROR, "redis cluster: %s: never ready", cc->refused);
    struct hr_cluster_config rc = {.timeout_ms = cfg->timeout_ms};
    if (a->nseeds > HR_CLUSTER_SEEDS_MAX) {
        snprintf(err, errlen, "more than %d seeds", HR_CLUSTER_SEEDS_MAX);
        goto fail;
    }
    rc.nseeds = a->nseeds ? a->nseeds : 1;
    for (int i = 0; i < rc.nseeds; i++) {
        const char *host = a->nseeds ? a->seed[i].host : a->host;
        snprintf(rc.seed[i].host, sizeof(rc.seed[i].host), "%s", host);
        rc.seed[i].port = a->nseeds ? a->seed[i].port : a->port;
    }
    snprintf(rc.user, sizeof(rc.user), "%s", a->user);
    snprintf(rc.pass, sizeof(rc.pass), "%s", a->pass);
    if (!(cc->router = hr_cluster_new(base, &rc, err, errlen)))
        goto fail;
    struct timeval tv = {0, TICK_MS * 1000};
    cc->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, cc);
    if (!cc->tick_ev || event_add(cc->tick_ev, &tv) != 0) {
        snprintf(err, errlen, "cannot create timers");
        goto fail;
    }
    return cc;
fail:
    hr_cconn_free(cc);
    return NULL;
}

void hr_cconn_free(struct hr_cconn *cc)
{
    if (!cc)
        return;
    cc->freeing = true;
    hr_cluster_free(cc->router); /* the calls' callbacks run now */
    if (cc->tick_ev)
        event_free(cc->tick_ev);
    free(cc->argv);
    free(cc->argvlen);
    free(cc);
}

bool hr_cconn_ready(const struct hr_cconn *cc)
{
    return !cc->freeing && !cc->refused[0] && cc->layout_loaded && hr_cluster_ready(cc->router);
}

const char *hr_cconn_not_ready_reason(const struct hr_cconn *cc)
{
    if (cc->refused[0])
        return cc->refused;
    if (!hr_cluster_ready(cc->router))
        return hr_cluster_not_ready_reason(cc->router);
    if (!cc->layout_loaded)
        return "reading the layout key";
    return "";
}

const struct hr_layout *hr_cconn_layout(const struct hr_cconn *cc)
{
    return &cc->layout;
}

int hr_cconn_evicting(const struct hr_cconn *cc)
{
    return cc->evicting;
}

struct hr_cluster *hr_cconn_router(const struct hr_cconn *cc)
{
    return cc->router;
}

const struct hr_cconn_stats *hr_cconn_get_stats(const struct hr_cconn *cc)
{
    return &cc->stats;
}
