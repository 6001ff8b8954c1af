/* The registry in Redis: the one place where requests become state. Each
 * operation is one atomic Lua script (script.h) sent over the store's
 * connection (conn.h, which reconnects, reloads scripts and times commands
 * out), or, on a Redis Cluster, through the cluster's (cluster_conn.h), each
 * call to the master of its keys' slot. The store batches the requests of one event-loop turn into
 * one script call, bounds the work in flight, sweeps unconfirmed claims and turns replies into the
 * callers' callbacks. The daemon and the gateway both call hr_store_submit(). */
#ifndef HR_STORE_H
#define HR_STORE_H

#include "histogram.h"
#include "redis_url.h"
#include "request.h"
#include "script.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct hr_store;

struct hr_store_config {
    struct hr_redis_addr redis;
    char prefix[32];     /* key prefix, so several registries can share one Redis */
    uint32_t ttl_ms;     /* entry lifetime without a heartbeat */
    uint32_t timeout_ms; /* no reply at all for this long, commands in flight: reset */
    /* Latency-bounded admission: while the oldest command in flight (on the
     * node a request goes to) is older than this, new requests, finds and
     * sweeps are refused HR_E_OVERLOAD at once; 0: no bound. */
    uint32_t budget_ms;
    uint32_t wait_replicas; /* replicas that must confirm a write before it is done */
    uint32_t wait_ms;       /* how long such a WAIT may take; 0: 250 ms */
    uint32_t max_inflight;  /* commands waiting for Redis; beyond: HR_E_OVERLOAD */
    uint32_t sweep_ms;      /* return unconfirmed claims to idle this often; 0: never */
    uint32_t max_hosts;     /* live hosts at most; a new one beyond: retry later, full */
    uint32_t buckets;       /* of a registry this store creates (layout.h); 0: 1024 */
    char regions[HR_REGIONS_MAX * (HR_REGION_MAX + 1)]; /* comma-separated, to count them */
    /* Any-region mode (--regions '*'): the store admits each region the
     * first time a heartbeat names it, up to max_regions known to the whole
     * registry (its "<prefix>regions" set), and refuses heartbeats of a new
     * region beyond that: HR_RESULT_INVALID, HR_E_REGIONS_FULL. */
    bool any_region;
    uint32_t max_regions; /* 0: HR_REGIONS_MAX */
};

struct hr_store_stats {
    uint64_t submitted, ok, duplicate, unknown_host;
    uint64_t failed; /* answered RETRY_LATER after submission */
    uint64_t redis_errors, timeouts, reconnects, noscript;
    uint64_t full;        /* new hosts refused: --max-hosts */
    uint64_t source_full; /* new hosts refused: HR_STORE_NO_CREATE (--source-hosts) */
    /* On a Redis Cluster: calls redirected by MOVED and ASK, and sent again
     * after TRYAGAIN (a slot being migrated). */
    uint64_t moved, ask, tryagain;
    /* Requests and finds refused HR_E_OVERLOAD because Redis was further
     * behind than budget_ms (latency-bounded admission). */
    uint64_t refused_behind;
    /* Each call's time from sending to its reply (or failure), redirections
     * and retries included. */
    struct hr_histogram call_seconds;
};

/* Called exactly once per accepted submission, with the outcome:
 * HR_RESULT_OK, _DUPLICATE, _UNKNOWN_HOST, _INVALID with `reason`
 * HR_E_REGIONS_FULL (any-region mode: a new region beyond max_regions), or
 * _RETRY_LATER with `reason` HR_E_FULL (the host cap), HR_E_SOURCE_FULL
 * (HR_STORE_NO_CREATE) or HR_E_UNAVAILABLE (Redis failed, timed out, or the
 * store is being freed). Like every callback of the store it may submit
 * more work, but must not call hr_store_free(). */
typedef void hr_store_cb(void *arg, enum hr_result result, int reason);

/* Creates the store and starts connecting; it never blocks. Returns NULL with
 * a reason in err when `cfg` is unusable. */
struct hr_store *hr_store_new(struct event_base *base, const struct hr_store_config *cfg, char *err,
                              size_t errlen);

/* Fails everything in flight (each callback gets RETRY_LATER) and closes the
 * connection. hr_store_free(NULL) does nothing. */
void hr_store_free(struct hr_store *st);

/* A heartbeat with this flag refreshes its host's entry but does not create
 * one: RETRY_LATER with reason HR_E_SOURCE_FULL instead (the daemon's cap on
 * the hosts of one source address). */
#define HR_STORE_NO_CREATE 1u

/* Applies a request that passed hr_request_check(). Returns HR_OK when `cb`
 * will be called later, or, with nothing sent and `cb` never called:
 * HR_E_UNAVAILABLE (not connected to Redis) or HR_E_OVERLOAD (max_inflight). */
int hr_store_submit(struct hr_store *st, const struct hr_request *req, unsigned flags,
                    hr_store_cb *cb, void *arg);

/* `err` is HR_OK or HR_E_UNAVAILABLE; `host` is NULL when no idle host fits.
 * `host` is valid only during the callback. */
typedef void hr_store_claim_cb(void *arg, int err, const struct hr_host_info *host);

/* Atomically claims one idle host (it becomes busy with a lease). Returns as
 * hr_store_submit does. */
int hr_store_claim(struct hr_store *st, const struct hr_claim_query *q, hr_store_claim_cb *cb,
                   void *arg);

/* `hosts` (n of them) is valid only during the callback. */
typedef void hr_store_list_cb(void *arg, int err, const struct hr_host_info *hosts, size_t n);

/* Lists live hosts from the index, never an expired one. */
int hr_store_list(struct hr_store *st, const struct hr_list_query *q, hr_store_list_cb *cb,
                  void *arg);

/* counts[HR_NSTATUSES * i + s] hosts of regions[i] with the status of
 * HR_STATUSES row s (idle, then busy, ...); valid only during the callback. */
typedef void hr_store_count_cb(void *arg, int err, const uint64_t *counts, size_t nregions);
int hr_store_count(struct hr_store *st, const char *const *regions, size_t nregions,
                   hr_store_count_cb *cb, void *arg);

/* Undoes the claim `claim_id` (hr_claim_query.claim_id) whose answer never
 * reached its client: its host is idle again unless it confirmed the claim
 * meanwhile, and a claim with that id that has not run yet will take nothing
 * (the id is remembered for lease_ms). `err` HR_OK once Redis has done it
 * (whether a host was freed or not), else HR_E_UNAVAILABLE: try again.
 * Returns as hr_store_submit does. */
typedef void hr_store_release_cb(void *arg, int err);
int hr_store_release(struct hr_store *st, const char *claim_id, uint32_t lease_ms,
                     hr_store_release_cb *cb, void *arg);

/* Whether Redis takes writes now, at the cost of a PING (store.c says how).
 * `err` HR_OK: it does. HR_E_UNAVAILABLE: it does not, and `refused` is
 * Redis's reason ("READONLY ...", "OOM ...", "MISCONF ...", valid only during
 * the callback), or NULL when Redis did not answer in time. Returns as
 * hr_store_submit does. */
typedef void hr_store_probe_cb(void *arg, int err, const char *refused);
int hr_store_probe(struct hr_store *st, hr_store_probe_cb *cb, void *arg);

/* True while connected with the scripts loaded (on a Redis Cluster: every
 * slot served by a connected master, cluster_state:ok, the layout read). */
bool hr_store_ready(const struct hr_store *st);

/* Why the store is not ready: "not connected", or on a Redis Cluster the
 * router's reason ("slots 0-5460: master 10.0.0.1:7000 not connected",
 * "cluster_state:fail", ...); "" when it is ready. Valid until the next
 * call into the store. */
const char *hr_store_not_ready_reason(const struct hr_store *st);

/* True when the store goes through a Redis Cluster (the URL named several
 * nodes, or its node turned out to be a cluster node). */
bool hr_store_clustered(const struct hr_store *st);

/* Redis's reason for refusing the last write it refused (READONLY, OOM or
 * MISCONF), as long as no write has been taken since; else NULL. Learned
 * from the writes and probes that happen to run: without them it is not
 * refreshed. Valid until the next call into the store. */
const char *hr_store_writes_refused(const struct hr_store *st);

/* hr_conn_evicting(): 1 when Redis's maxmemory-policy evicts keys, 0 when it
 * is noeviction, -1 when not known. */
int hr_store_evicting(const struct hr_store *st);

/* Any-region mode: the regions the registry knows (every program's
 * admissions, read again every few seconds), into out[0..HR_REGIONS_MAX)
 * as pointers valid until the next call into the store; how many. Without
 * any-region mode, 0. */
size_t hr_store_regions(const struct hr_store *st, const char *out[HR_REGIONS_MAX]);

size_t hr_store_inflight(const struct hr_store *st);
/* The counters so far, the connection's included. */
void hr_store_get_stats(const struct hr_store *st, struct hr_store_stats *out);

#endif
