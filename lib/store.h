/* The registry in Redis: the one place where requests become state. Each
 * operation is one atomic Lua script (EVALSHA, with EVAL when Redis has lost
 * the script), sent over one hiredis async connection on the caller's
 * libevent base. The store owns that connection: it reconnects with backoff,
 * enforces its own command timeout (hiredis 0.14 has none) and bounds the
 * work in flight. The daemon and the gateway both call hr_store_submit(). */
#ifndef HR_STORE_H
#define HR_STORE_H

#include "request.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct hr_store;

#define HR_REDIS_URL_MAX 256

/* Where Redis is: redis://[[user]:pass@]host[:port][/db] or unix:///path[?db=N]. */
struct hr_redis_addr {
    char host[256]; /* empty for a unix socket */
    int port;
    char path[108]; /* unix socket path */
    int db;
    char user[64];
    char pass[128];
};

/* Parses a Redis URL. Returns HR_OK, or HR_E_CONFIG with the reason in err. */
int hr_redis_url_parse(const char *url, struct hr_redis_addr *out, char *err, size_t errlen);

struct hr_store_config {
    struct hr_redis_addr redis;
    char prefix[32];       /* key prefix, so several registries can share one Redis */
    uint32_t ttl_ms;       /* entry lifetime without a heartbeat */
    uint32_t timeout_ms;   /* a command not answered by then counts as failed */
    uint32_t max_inflight; /* commands waiting for Redis; beyond: HR_E_OVERLOAD */
};

struct hr_store_stats {
    uint64_t submitted, ok, duplicate, unknown_host;
    uint64_t failed; /* answered RETRY_LATER after submission */
    uint64_t redis_errors, timeouts, reconnects, noscript;
};

/* Called exactly once per accepted submission, with the outcome:
 * HR_RESULT_OK, _DUPLICATE, _UNKNOWN_HOST, or _RETRY_LATER when Redis failed,
 * timed out, or the store is being freed. It may call hr_store_submit(). */
typedef void hr_store_cb(void *arg, enum hr_result result);

/* Creates the store and starts connecting; it never blocks. Returns NULL with
 * a reason in err when `cfg` is unusable. */
struct hr_store *hr_store_new(struct event_base *base, const struct hr_store_config *cfg, char *err,
                              size_t errlen);

/* Fails everything in flight (each callback gets RETRY_LATER) and closes the
 * connection. hr_store_free(NULL) does nothing. */
void hr_store_free(struct hr_store *st);

/* Applies a request that passed hr_request_check(). Returns HR_OK when `cb`
 * will be called later, or, with nothing sent and `cb` never called:
 * HR_E_UNAVAILABLE (not connected to Redis) or HR_E_OVERLOAD (max_inflight). */
int hr_store_submit(struct hr_store *st, const struct hr_request *req, hr_store_cb *cb, void *arg);

/* True while connected with the scripts loaded. */
bool hr_store_ready(const struct hr_store *st);

size_t hr_store_inflight(const struct hr_store *st);
const struct hr_store_stats *hr_store_get_stats(const struct hr_store *st);

/* The Redis key of a host's entry, "<prefix>h:<hostId>". */
int hr_store_host_key(const struct hr_store_config *cfg, const char *host_id, char *out,
                      size_t outlen);

#endif
