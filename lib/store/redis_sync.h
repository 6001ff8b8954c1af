/* A blocking connection to the registry's Redis, for the tools (`hostreg
 * ls`) and the tests: the address of --redis as hr_redis_url_parse gives it,
 * through Sentinel when it names one. The daemon and the gateway never block:
 * they use conn.h. */
#ifndef HR_REDIS_SYNC_H
#define HR_REDIS_SYNC_H

#include "redis_url.h"

#include <stddef.h>

struct redisContext;

/* Asks the sentinels of `a` in turn for the address of the master `a->master`
 * and writes it to a->host and a->port. HR_OK, or HR_E_UNAVAILABLE with the
 * reason in err (no sentinel answered, or none named a master). Each sentinel
 * gets `timeout_ms` to answer. */
int hr_sentinel_resolve_sync(struct hr_redis_addr *a, int timeout_ms, char *err, size_t errlen);

/* Connects (through Sentinel when `a` names one, then checking with ROLE
 * that the node is the master), authenticates and selects the database.
 * The context has `timeout_ms` as its command timeout. NULL with the reason
 * in err. */
struct redisContext *hr_redis_connect_sync(const struct hr_redis_addr *a, int timeout_ms, char *err,
                                           size_t errlen);

#endif
