/* The registry's connection to a Redis Cluster: the slot router (cluster.h)
 * with what conn.h does for one Redis. It reads (or, the first time, writes)
 * the layout key before it calls itself ready, runs scripts by EVALSHA and
 * sends a script's body with EVAL to a node that lacks it (NOSCRIPT), reads
 * each master's maxmemory-policy, and says why it is not ready. It owns the
 * router, never the calls it is given (struct hr_conn_call, shared with
 * conn.h). The store (store.h) is its one user: it gives each call keys of
 * one hash slot, which is where the call goes. */
#ifndef HR_CLUSTER_CONN_H
#define HR_CLUSTER_CONN_H

#include "conn.h"
#include "layout.h"
#include "redis_url.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct hr_cluster;
struct hr_cconn;

struct hr_cconn_config {
    /* The seeds: redis.seed[0..nseeds), or redis.host:port when nseeds is 0;
     * the user and password are every node's. */
    struct hr_redis_addr redis;
    uint32_t timeout_ms; /* a command unanswered by then drops its node's connection */
    /* Not supported on a cluster yet: with either, the connection says so
     * and is never ready (a database other than 0 does not exist there;
     * WAIT would have to follow each write to its node). */
    uint32_t wait_replicas;
    /* The registry's layout should it have none yet, as conn.h's. */
    struct hr_layout layout;
};

struct hr_cconn_stats {
    uint64_t noscript; /* scripts sent again with EVAL */
};

/* Creates the connection and starts reading the slot map; never blocks.
 * NULL with a reason in err when `cfg` is unusable. */
struct hr_cconn *hr_cconn_new(struct event_base *base, const struct hr_cconn_config *cfg, char *err,
                              size_t errlen);

/* Fails every call in flight (each `done` gets NULL, before this returns)
 * and closes every connection. Never from inside a call's `done`.
 * hr_cconn_free(NULL) does nothing. */
void hr_cconn_free(struct hr_cconn *cc);

/* Sends `call` (as hr_conn_send: the caller fills script, args, done and
 * arg, and keeps them until `done`) to the master of its hash slot: the
 * slot of its first key (a script's first KEYS, a plain command's first
 * argument after the command's name; a plain command without one goes to
 * the first master). Every key of a script call must be of that slot.
 * MOVED, ASK and TRYAGAIN are followed (cluster.h). HR_OK: `done` will run
 * exactly once, later, with `call->error` set as conn.h says, or with the
 * router's reason when there was no reply ("timed out", ...).
 * HR_E_UNAVAILABLE (not ready) or HR_E_NOMEM: nothing sent, `done` never
 * runs. */
int hr_cconn_send(struct hr_cconn *cc, struct hr_conn_call *call);

/* The same to master `master` (0..hr_cluster_nmasters of the router). */
int hr_cconn_send_node(struct hr_cconn *cc, struct hr_conn_call *call, size_t master);

/* True when the router is ready (every slot has a connected master, and the
 * cluster says cluster_state:ok) and the layout has been read. */
bool hr_cconn_ready(const struct hr_cconn *cc);

/* Why it is not ready ("slots 0-5460: master 10.0.0.1:7000 not connected",
 * "cluster_state:fail", "reading the layout key", ...), "" when it is. Valid
 * until the next turn of the event loop. */
const char *hr_cconn_not_ready_reason(const struct hr_cconn *cc);

/* The registry's layout as read (valid while ready). */
const struct hr_layout *hr_cconn_layout(const struct hr_cconn *cc);

/* 1 when a master's maxmemory-policy evicts keys, 0 when every master's is
 * noeviction, -1 when not known (not read yet, or CONFIG refused). */
int hr_cconn_evicting(const struct hr_cconn *cc);

/* The router, for its map (masters, owners of slots) and its counters. */
struct hr_cluster *hr_cconn_router(const struct hr_cconn *cc);

const struct hr_cconn_stats *hr_cconn_get_stats(const struct hr_cconn *cc);

#endif
