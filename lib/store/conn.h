/* The registry's connection to Redis: one hiredis async connection on the
 * caller's libevent base, with what hiredis 0.14 leaves to its user. It
 * connects and reconnects with backoff, authenticates, selects the database
 * and loads the scripts (script.h) before it calls itself ready; it runs
 * scripts by EVALSHA and sends a script's body again with EVAL when Redis has
 * lost it (NOSCRIPT); and it drops a connection that has calls in flight
 * and has answered nothing at all for too long (a slow Redis is not a dead
 * one: hr_conn_backlog_ms tells the store how far behind it is). At each
 * connect it also reads Redis's maxmemory-policy and warns when Redis may
 * evict (hr_conn_evicting). It owns the
 * hiredis context, never the calls it is given. The store (store.h) is its
 * one user. */
#ifndef HR_CONN_H
#define HR_CONN_H

#include "layout.h"
#include "redis_url.h"
#include "script.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redisReply;
struct hr_conn;
struct hr_cconn;

struct hr_conn_config {
    struct hr_redis_addr redis;
    uint32_t timeout_ms; /* no reply of any kind for this long, calls in flight: reset */
    /* Replicas that must have a write before it counts as done (WAIT after
     * each write script), 0 for none; WAIT gives up after wait_ms (0:
     * timeout_ms / 2), and the write then fails. A WAIT holds every call
     * behind it on the connection, so the store bounds it by its latency
     * budget. */
    uint32_t wait_replicas;
    uint32_t wait_ms;
    /* The registry's layout should it have none yet (its prefix, its bucket
     * count and a fresh seed): read at each connect from
     * "<prefix>layout", written from this when absent. Buckets 0: no
     * layout (the connection never reads it). */
    struct hr_layout layout;
    char layout_key[64]; /* the connection's own */
    /* Called (from inside the connection's callbacks: the connection may not
     * be freed there) when the node turns out to be a Redis Cluster node;
     * the connection then stops, never ready, and the caller goes through
     * the cluster instead (cluster_conn.h). NULL: such a node is refused,
     * with a log line, and the connection stays down. */
    void (*on_cluster)(void *arg);
    void *on_cluster_arg;
};

struct hr_conn_stats {
    uint64_t errors;         /* error replies (NOSCRIPT retried once, not counted) */
    uint64_t timeouts;       /* connections dropped for a command or a connect that took too long */
    uint64_t connects;       /* connection attempts */
    uint64_t noscript;       /* scripts sent again with EVAL */
    uint64_t not_replicated; /* writes that fewer than wait_replicas replicas confirmed */
};

struct hr_conn_call;

/* The outcome of a call: `reply` is the reply, valid only during the
 * callback, or NULL when the call failed (an error reply, the connection
 * lost or timed out, or the connection freed): the outcome is unknown. After
 * an error reply `call->error` is Redis's message (valid only during the
 * callback), else NULL. The callback may send more calls, but must not free
 * the connection. */
typedef void hr_conn_done(struct hr_conn_call *call, struct redisReply *reply);

/* One call, embedded in the caller's own state. The caller fills the first
 * four fields and keeps the call and its args unchanged until `done` runs
 * (they are sent again after NOSCRIPT); the rest belongs to the connection. */
struct hr_conn_call {
    int script; /* an enum hr_script_id, or HR_CONN_PLAIN: args are a whole command */
    const struct hr_script_args *args;
    hr_conn_done *done;
    void *arg;

    struct hr_conn_call *prev, *next; /* in flight, oldest first */
    struct hr_conn *conn;
    uint64_t sent_ms;
    int retried;       /* sent again with EVAL after NOSCRIPT */
    const char *error; /* during `done`: the error reply's message, else NULL */
    /* With wait_replicas: WAITs sent and not answered yet, and the script's
     * reply (a copy, or NULL when it failed) kept until the last one is. */
    int waits;
    bool replied;
    struct redisReply *kept;
    char kept_error[200];
    /* On a Redis Cluster (cluster_conn.h, which shares this struct): the
     * connection, and the slot the call went to (-1: master `master`). */
    struct hr_cconn *cconn;
    int slot;
    size_t master;
};
#define HR_CONN_PLAIN (-1)

/* Creates the connection and starts connecting; never blocks. NULL with a
 * reason in err when `cfg` is unusable. */
struct hr_conn *hr_conn_new(struct event_base *base, const struct hr_conn_config *cfg, char *err,
                            size_t errlen);

/* Fails every call in flight (each `done` gets NULL) and closes the
 * connection. hr_conn_free(NULL) does nothing. */
void hr_conn_free(struct hr_conn *c);

/* Sends `call`. HR_OK: `done` will run exactly once, later. HR_E_UNAVAILABLE
 * (not ready, or hiredis refused) or HR_E_NOMEM: nothing sent and `done`
 * never runs. */
int hr_conn_send(struct hr_conn *c, struct hr_conn_call *call);

/* Tells the connection that Redis refused a write as a replica (READONLY).
 * Behind Sentinel it drops the connection and asks the sentinels for the
 * master again; on a single Redis it does nothing (hr_store_probe reports
 * it). */
void hr_conn_readonly(struct hr_conn *c);

/* The registry's layout as read at the last connect (valid while ready). */
const struct hr_layout *hr_conn_layout(const struct hr_conn *c);

/* True while connected with the scripts loaded. */
bool hr_conn_ready(const struct hr_conn *c);

/* How long the oldest call in flight has waited (ms, hr_mono_ms clock), 0
 * when none: how far behind Redis is, for admission. */
uint64_t hr_conn_backlog_ms(const struct hr_conn *c, uint64_t now_ms);

/* Whether Redis's maxmemory-policy, read at the last connect, evicts keys
 * (anything but noeviction): 1 yes, 0 no, -1 not known (not connected yet,
 * or CONFIG GET refused by an ACL or renamed). */
int hr_conn_evicting(const struct hr_conn *c);

const struct hr_conn_stats *hr_conn_get_stats(const struct hr_conn *c);

#endif
