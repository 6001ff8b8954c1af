#include "redis_sync.h"

#include "cluster.h"
#include "err.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/time.h>
#include <unistd.h>

static struct timeval tv_of(int ms)
{
    return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

int hr_sentinel_resolve_sync(struct hr_redis_addr *a, int timeout_ms, char *err, size_t errlen)
{
    snprintf(err, errlen, "no sentinel given");
    for (int i = 0; i < a->nsentinels; i++) {
        const char *host = a->sentinel[i].host;
        int port = a->sentinel[i].port;
        redisContext *c = redisConnectWithTimeout(host, port, tv_of(timeout_ms));
        if (!c || c->err) {
            snprintf(err, errlen, "sentinel %s:%d: %s", host, port,
                     c ? c->errstr : "out of memory");
            redisFree(c);
            continue;
        }
        redisSetTimeout(c, tv_of(timeout_ms));
        redisReply *r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", a->master);
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            r->element[1]->type == REDIS_REPLY_STRING && r->element[0]->len < sizeof(a->host)) {
            int p = atoi(r->element[1]->str);
            if (p > 0 && p <= 65535) {
                snprintf(a->host, sizeof(a->host), "%s", r->element[0]->str);
                a->port = p;
                freeReplyObject(r);
                redisFree(c);
                return HR_OK;
            }
        }
        snprintf(err, errlen, "sentinel %s:%d names no master '%s'%s%.200s", host, port, a->master,
                 r && r->type == REDIS_REPLY_ERROR ? ": " : "",
                 r && r->type == REDIS_REPLY_ERROR ? r->str
                 : !r                              ? c->errstr
                                                   : "");
        freeReplyObject(r);
        redisFree(c);
    }
    return HR_E_UNAVAILABLE;
}

struct redisContext *hr_redis_connect_sync(const struct hr_redis_addr *addr, int timeout_ms,
                                           char *err, size_t errlen)
{
    struct hr_redis_addr a = *addr;
    if (a.master[0] && hr_sentinel_resolve_sync(&a, timeout_ms, err, errlen) != HR_OK)
        return NULL;
    redisContext *c = a.path[0] ? redisConnectUnixWithTimeout(a.path, tv_of(timeout_ms))
                                : redisConnectWithTimeout(a.host, a.port, tv_of(timeout_ms));
    if (!c || c->err) {
        snprintf(err, errlen, "cannot connect to Redis: %s", c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv_of(timeout_ms));
    redisReply *r = NULL;
    if (a.pass[0])
        r = a.user[0] ? redisCommand(c, "AUTH %s %s", a.user, a.pass)
                      : redisCommand(c, "AUTH %s", a.pass);
    if (a.pass[0] && (!r || r->type == REDIS_REPLY_ERROR)) {
        snprintf(err, errlen, "Redis AUTH failed: %s", r ? r->str : c->errstr);
        goto fail;
    }
    freeReplyObject(r);
    r = NULL;
    if (a.db && (!(r = redisCommand(c, "SELECT %d", a.db)) || r->type == REDIS_REPLY_ERROR)) {
        snprintf(err, errlen, "Redis SELECT failed: %s", r ? r->str : c->errstr);
        goto fail;
    }
    freeReplyObject(r);
    r = NULL;
    if (a.master[0]) {
        /* A sentinel may name a master that has just become a replica. */
        r = redisCommand(c, "ROLE");
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
            r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "master")) {
            snprintf(err, errlen,
                     "%s:%d, named master of '%s' by Sentinel, is not a master%s%.200s", a.host,
                     a.port, a.master, r && r->type == REDIS_REPLY_ERROR ? ": " : "",
                     r && r->type == REDIS_REPLY_ERROR ? r->str : "");
            goto fail;
        }
        freeReplyObject(r);
    }
    return c;
fail:
    freeReplyObject(r);
    redisFree(c);
    return NULL;
}

bool hr_redis_is_cluster_sync(struct redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO cluster");
    bool yes = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_enabled:1");
    freeReplyObject(r);
    return yes;
}

/* --- a blocking Redis Cluster client --- */

/* Redirections and TRYAGAIN pauses per command: a slot moves once per
 * reshard step, and a TRYAGAIN lasts as long as one slot's migration. */
#define SYNC_REDIRECTS 16
#define SYNC_TRYAGAIN_US 25000
/* Nodes known at most (the map's masters, and nodes named by redirections). */
#define SYNC_NODES_MAX 1024

struct sync_node {
    char host[256];
    int port;
    redisContext *c; /* NULL until used */
};

struct hr_sync_cluster {
    struct hr_redis_addr addr; /* user and password */
    int timeout_ms;
    struct sync_node *nodes;
    size_t nnodes;
    uint16_t owner[HR_CLUSTER_SLOTS];
};

static struct sync_node *sync_node_get(struct hr_sync_cluster *sc, const char *host, size_t hostlen,
                                       int port)
{
    for (size_t i = 0; i < sc->nnodes; i++)
        if (sc->nodes[i].port == port && strlen(sc->nodes[i].host) == hostlen &&
            memcmp(sc->nodes[i].host, host, hostlen) == 0)
            return &sc->nodes[i];
    if (sc->nnodes == SYNC_NODES_MAX || hostlen == 0 || hostlen >= sizeof(sc->nodes[0].host))
        return NULL;
    struct sync_node *n = &sc->nodes[sc->nnodes++];
    memcpy(n->host, host, hostlen);
    n->host[hostlen] = '\0';
    n->port = port;
    n->c = NULL;
    return n;
}

/* n's connection, opened (and authenticated) when needed; NULL with the
 * reason in err. */
static redisContext *sync_node_conn(struct hr_sync_cluster *sc, struct sync_node *n, char *err,
                                    size_t errlen)
{
    if (n->c)
        return n->c;
    struct hr_redis_addr a = sc->addr;
    snprintf(a.host, sizeof(a.host), "%s", n->host);
    a.port = n->port;
    a.path[0] = a.master[0] = '\0';
    a.nseeds = 0;
    a.db = 0;
    char why[256];
    if (!(n->c = hr_redis_connect_sync(&a, sc->timeout_ms, why, sizeof(why))))
        snprintf(err, errlen, "%s:%d: %s", n->host, n->port, why);
    return n->c;
}

/* CLUSTER SLOTS of `from` into sc->owner: 0, or -1 with the reason in err. */
static int sync_read_map(struct hr_sync_cluster *sc, struct sync_node *from, char *err,
                         size_t errlen)
{
    redisContext *c = sync_node_conn(sc, from, err, errlen);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "CLUSTER SLOTS");
    int rc = -1;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "%s:%d: CLUSTER SLOTS: %s", from->host, from->port,
                 !r                             ? c->errstr
                 : r->type == REDIS_REPLY_ERROR ? r->str
                                                : "unexpected reply");
        goto out;
    }
    for (size_t s = 0; s < HR_CLUSTER_SLOTS; s++)
        sc->owner[s] = UINT16_MAX;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        long long start = e->element[0]->integer, end = e->element[1]->integer;
        const redisReply *h = e->element[2]->element[0];
        /* A null or empty host: the node that answered (Redis 7 says so
         * when it does not know its own address). */
        const char *host = h->type == REDIS_REPLY_STRING && h->len ? h->str : from->host;
        if (strcmp(host, "?") == 0 || start < 0 || end >= HR_CLUSTER_SLOTS || end < start)
            continue;
        struct sync_node *n =
            sync_node_get(sc, host, strlen(host), (int)e->element[2]->element[1]->integer);
        for (long long s = start; n && s <= end; s++)
            sc->owner[s] = (uint16_t)(n - sc->nodes);
    }
    rc = 0;
out:
    freeReplyObject(r);
    return rc;
}

struct hr_sync_cluster *hr_sync_cluster_connect(const struct hr_redis_addr *a, int timeout_ms,
                                                char *err, size_t errlen)
{
    struct hr_sync_cluster *sc = calloc(1, sizeof(*sc));
    if (sc)
        sc->nodes = calloc(SYNC_NODES_MAX, sizeof(*sc->nodes));
    if (!sc || !sc->nodes) {
        free(sc);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sc->addr = *a;
    sc->timeout_ms = timeout_ms;
    int nseeds = a->nseeds ? a->nseeds : 1;
    for (int i = 0; i < nseeds; i++) {
        const char *host = a->nseeds ? a->seed[i].host : a->host;
        struct sync_node *n =
            sync_node_get(sc, host, strlen(host), a->nseeds ? a->seed[i].port : a->port);
        if (n && sync_read_map(sc, n, err, errlen) == 0)
            return sc;
    }
    hr_sync_cluster_free(sc);
    return NULL;
}

/* "MOVED 3999 127.0.0.1:6381" or "ASK ..." past its first word: the node
 * (created when new), or NULL. */
static struct sync_node *sync_redirect(struct hr_sync_cluster *sc, const struct sync_node *from,
                                       const char *p)
{
    const char *host;
    size_t hostlen;
    int slot, port;
    if (!hr_cluster_parse_redirect(p, &slot, &host, &hostlen, &port))
        return NULL;
    if (hostlen == 0) /* the endpoint of the node that answered */
        return sync_node_get(sc, from->host, strlen(from->host), port);
    return sync_node_get(sc, host, hostlen, port);
}

redisReply *hr_sync_cluster_command(struct hr_sync_cluster *sc, int slot, int argc,
                                    const char **argv, const size_t *argvlen, char *err,
                                    size_t errlen)
{
    if (slot < 0 || slot >= HR_CLUSTER_SLOTS || sc->owner[slot] == UINT16_MAX) {
        snprintf(err, errlen, "slot %d has no master", slot);
        return NULL;
    }
    struct sync_node *n = &sc->nodes[sc->owner[slot]];
    bool asking = false;
    for (int tries = 0; tries <= SYNC_REDIRECTS; tries++) {
        redisContext *c = sync_node_conn(sc, n, err, errlen);
        if (!c)
            return NULL;
        if (asking) {
            redisReply *a = redisCommand(c, "ASKING");
            freeReplyObject(a);
        }
        redisReply *r = redisCommandArgv(c, argc, argv, argvlen);
        if (!r) {
            snprintf(err, errlen, "%s:%d: %s", n->host, n->port, c->errstr);
            redisFree(c);
            n->c = NULL;
            return NULL;
        }
        if (r->type != REDIS_REPLY_ERROR)
            return r;
        bool moved = strncmp(r->str, "MOVED ", 6) == 0, ask = strncmp(r->str, "ASK ", 4) == 0;
        struct sync_node *to = moved || ask ? sync_redirect(sc, n, r->str + (moved ? 6 : 4)) : NULL;
        if (strncmp(r->str, "TRYAGAIN", 8) == 0) {
            freeReplyObject(r);
            usleep(SYNC_TRYAGAIN_US);
            continue;
        }
        if (!to)
            return r; /* the caller's to read */
        if (moved)
            sc->owner[slot] = (uint16_t)(to - sc->nodes);
        freeReplyObject(r);
        n = to;
        asking = ask;
    }
    snprintf(err, errlen, "slot %d: more than %d redirections", slot, SYNC_REDIRECTS);
    return NULL;
}

void hr_sync_cluster_free(struct hr_sync_cluster *sc)
{
    if (!sc)
        return;
    for (size_t i = 0; sc->nodes && i < sc->nnodes; i++)
        redisFree(sc->nodes[i].c);
    free(sc->nodes);
    free(sc);
}
