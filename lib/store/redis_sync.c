#include "redis_sync.h"

#include "err.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/time.h>

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
