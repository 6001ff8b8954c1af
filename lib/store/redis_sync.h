/* A blocking connection to the registry's Redis, for the tools (`hostreg
 * ls`) and the tests: the address of --redis as hr_redis_url_parse gives it,
 * through Sentinel when it names one, and the nodes of a Redis Cluster. The
 * daemon and the gateway never block: they use conn.h and cluster_conn.h. */
#ifndef HR_REDIS_SYNC_H
#define HR_REDIS_SYNC_H

#include "redis_url.h"

#include <stdbool.h>
#include <stddef.h>

struct redisContext;
struct redisReply;

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

/* Whether the server of `c` is a Redis Cluster node (INFO cluster says
 * cluster_enabled:1); false also when it cannot tell (INFO refused). */
bool hr_redis_is_cluster_sync(struct redisContext *c);

/* A blocking client of a Redis Cluster, for the tools: the slot map read
 * from a seed (CLUSTER SLOTS), a connection per master opened when first
 * needed (authenticated as the URL says), and MOVED, ASK and TRYAGAIN
 * followed. It owns its connections. */
struct hr_sync_cluster;

/* Reads the slot map from the seeds of `a` (a->seed[], or a->host:port when
 * it has none), the first that answers. NULL with the reason in err. */
struct hr_sync_cluster *hr_sync_cluster_connect(const struct hr_redis_addr *a, int timeout_ms,
                                                char *err, size_t errlen);

/* Runs argv[0..argc) (argvlen NULL: strlen of each) on the master of
 * `slot`, following MOVED, ASK and TRYAGAIN a few times: the reply (the
 * caller's to free; maybe an error reply), or NULL with the reason in err. */
struct redisReply *hr_sync_cluster_command(struct hr_sync_cluster *sc, int slot, int argc,
                                           const char **argv, const size_t *argvlen, char *err,
                                           size_t errlen);

void hr_sync_cluster_free(struct hr_sync_cluster *sc);

#endif
