/* A Redis Cluster client on the hiredis 0.14 async API, which has none: it
 * loads the slot map (CLUSTER SLOTS) from a seed or any known node, keeps one
 * async connection per master on the caller's libevent base, sends each
 * command to the master of its hash slot and follows MOVED, ASK and TRYAGAIN
 * (a bounded number of times per command). It owns its connections and its
 * copies of the commands it is given, never the callers' state. Nothing here
 * blocks (but a seed given by host name is resolved by getaddrinfo, as
 * hiredis does it). The store's cluster connection (cluster_conn.h) is its
 * user. */
#ifndef HR_CLUSTER_H
#define HR_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redisReply;
struct hr_cluster;

#define HR_CLUSTER_SLOTS 16384
#define HR_CLUSTER_SEEDS_MAX 8

/* The hash slot of a key, as Redis computes it: CRC16 (XMODEM) of the hash
 * tag (what lies between the first '{' and the next '}', when that is not
 * empty) or else of the whole key, mod 16384. */
int hr_cluster_keyslot(const char *key, size_t len);

/* A MOVED or ASK error past its first word ("3999 127.0.0.1:6381"): the
 * slot, the node's host (hostlen 0: the node that answered, which named no
 * endpoint) and port. False for anything else, an unknown endpoint ("?")
 * included. Shared by the router and the blocking client (redis_sync.c). */
bool hr_cluster_parse_redirect(const char *p, int *slot, const char **host, size_t *hostlen,
                               int *port);

struct hr_cluster_config {
    /* Where to ask for the slot map first; any node of the cluster will do,
     * the others are learned from it. */
    struct {
        char host[256];
        int port;
    } seed[HR_CLUSTER_SEEDS_MAX];
    int nseeds;
    char user[64];  /* "" for AUTH <pass> alone */
    char pass[128]; /* "" for no AUTH */
    /* A node with calls in flight that answers nothing at all for this long
     * has its connection dropped (failing every call in flight on it), and so
     * does a connect that takes longer. */
    uint32_t timeout_ms;
};

struct hr_cluster_stats {
    uint64_t moved;            /* MOVED replies (each followed unless over the redirect bound) */
    uint64_t ask;              /* ASK replies (likewise) */
    uint64_t tryagain;         /* TRYAGAIN replies: the command is sent again after a pause */
    uint64_t refreshes;        /* slot maps loaded (CLUSTER SLOTS answered) */
    uint64_t refresh_failures; /* CLUSTER SLOTS or CLUSTER INFO not answered, or refused */
    uint64_t timeouts;         /* connections dropped for a command or a connect too slow */
    uint64_t connects;         /* connection attempts */
    uint64_t errors;           /* error replies handed to callers (NOSCRIPT not counted) */
    uint64_t lost;             /* calls failed with no reply: outcome unknown */
};

/* The outcome of a call: `reply` is the reply, valid only during the
 * callback, or NULL when the call failed; `error` is then Redis's error text
 * for an error reply (also valid only during the callback), or why there is
 * no reply ("connection lost", "timed out", "cannot connect", "AUTH refused:
 * ...", "closed"): the outcome of a write is then unknown, and it is never
 * sent again. The
 * callback may send more calls, but must not free the cluster. */
typedef void hr_cluster_cb(void *arg, struct redisReply *reply, const char *error);

/* Creates the client and starts loading the slot map; never blocks. NULL
 * with a reason in err when `cfg` is unusable (no seed, a bad port, a zero
 * timeout) or memory is short. */
struct hr_cluster *hr_cluster_new(struct event_base *base, const struct hr_cluster_config *cfg,
                                  char *err, size_t errlen);

/* Fails every call in flight or waiting to be sent again (each callback gets
 * NULL, exactly once, before this returns) and closes every connection.
 * Never from inside a callback of this cluster. hr_cluster_free(NULL) does
 * nothing. */
void hr_cluster_free(struct hr_cluster *cl);

/* Sends the command argv[0..argc) (argvlen NULL: strlen of each) to the
 * master of `slot`, copying it (the caller's buffers may go right after).
 * HR_OK: `cb` will run exactly once, later. HR_E_UNAVAILABLE (no slot map
 * yet, no master for the slot, or no connection to it; hiredis refused),
 * HR_E_NOMEM, or HR_E_CONFIG (slot out of range, argc < 1): nothing is sent
 * and `cb` never runs. */
int hr_cluster_send(struct hr_cluster *cl, int slot, int argc, const char **argv,
                    const size_t *argvlen, hr_cluster_cb *cb, void *arg);

/* The masters of the current slot map, indexed 0..nmasters-1 in the order of
 * their first slot. The indexes hold until the map changes, which happens
 * only inside this module's callbacks: a caller that groups work per master
 * and sends it within one callback (or one turn of its own) sees one map. */
size_t hr_cluster_nmasters(const struct hr_cluster *cl);

/* Whether master `master_index` owns `slot` in the current map (false for an
 * index or a slot out of range). */
bool hr_cluster_owns(const struct hr_cluster *cl, size_t master_index, int slot);

/* The index of the master of `slot` into *index: true, or false when the
 * slot has none (or is out of range). */
bool hr_cluster_master_of(const struct hr_cluster *cl, int slot, size_t *index);

/* "host:port" of master `master_index`, or NULL for an index out of range;
 * valid as long as the cluster. */
const char *hr_cluster_master_name(const struct hr_cluster *cl, size_t master_index);

/* hr_cluster_send to master `master_index` itself (a fan-out), with the
 * same contract; HR_E_UNAVAILABLE also for an index out of range. A MOVED or
 * ASK reply is followed as for any command. */
int hr_cluster_send_node(struct hr_cluster *cl, size_t master_index, int argc, const char **argv,
                         const size_t *argvlen, hr_cluster_cb *cb, void *arg);

/* How long the oldest call in flight on the connection to the master of
 * `slot` has waited (ms, hr_mono_ms clock), 0 when none (or no master): how
 * far behind that node is, for admission. */
uint64_t hr_cluster_backlog_ms(const struct hr_cluster *cl, int slot, uint64_t now_ms);

/* The same for the master furthest behind. */
uint64_t hr_cluster_backlog_max_ms(const struct hr_cluster *cl, uint64_t now_ms);

/* The callers' calls in flight on master `master_index`'s connection (0 for
 * an index out of range). */
size_t hr_cluster_inflight(const struct hr_cluster *cl, size_t master_index);

/* True when the slot map is loaded, each of the 16384 slots has a master
 * with a connection up (authenticated), and the last CLUSTER INFO said
 * cluster_state:ok. */
bool hr_cluster_ready(const struct hr_cluster *cl);

/* Why the cluster is not ready, for a readiness endpoint and the logs ("slots
 * 0-5460: master 127.0.0.1:7000 not connected", "slot 5461 has no master",
 * "cluster_state:fail", "no slot map yet: ..."), or "" when it is. Valid
 * until the next turn of the event loop. */
const char *hr_cluster_not_ready_reason(const struct hr_cluster *cl);

/* Asks for the slot map again soon (after the current backoff, or right
 * after the refresh under way): for a caller that learned something the
 * router cannot see, such as a write refused READONLY by a master that has
 * just become a replica. */
void hr_cluster_refresh(struct hr_cluster *cl);

const struct hr_cluster_stats *hr_cluster_get_stats(const struct hr_cluster *cl);

#endif
