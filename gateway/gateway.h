/* hostreg-gateway's HTTP front end: the JSON endpoints of the original
 * service, turned into the same library calls the UDP daemon makes
 * (hr_request_check, hr_store_*). Owns the evhttp server and the per-request
 * state; not the event base or the store. Every request ends in exactly one
 * JSON answer. */
#ifndef HR_GATEWAY_H
#define HR_GATEWAY_H

#include "cidr.h"
#include "config.h"
#include "ice.h"

#include <stdint.h>

struct event_base;
struct hr_store;
struct hr_gateway;

/* --access-log: no line per answer, one per 4xx and 5xx (the default), or
 * one per answer. */
enum { HR_ACCESS_LOG_OFF, HR_ACCESS_LOG_ERRORS, HR_ACCESS_LOG_ALL };

struct hr_gateway_config {
    struct hr_common common; /* first: the shared setters expect it there */
    char listen_host[256];
    uint16_t listen_port;
    uint32_t claim_lease_s;
    char signaling_url[512];
    struct hr_ice_config ice;
    char cors_origins[1024]; /* "*" or a comma-separated list of origins */
    char host_secret[256];
    char host_secret_previous[256];
    uint32_t http_timeout_s;
    int access_log; /* HR_ACCESS_LOG_*: which answers get a log line */
    uint32_t list_limit;
    uint32_t list_cache_ms;      /* GET /api/hosts answers are reused this long; 0: never */
    uint32_t source_hosts;       /* hosts one client address may create (0: no cap) */
    struct hr_cidrs trust_proxy; /* proxies whose X-Forwarded-For names the client */
};

/* Binds and starts serving. NULL with a reason in err. */
struct hr_gateway *hr_gateway_new(struct event_base *base, struct hr_store *store,
                                  const struct hr_gateway_config *cfg, char *err, size_t errlen);

/* Closes every connection; requests still waiting for Redis are dropped. */
void hr_gateway_free(struct hr_gateway *gw);

/* Closes the listening socket: new connections are refused, the open ones
 * are still served (the first step of a clean shutdown). */
void hr_gateway_stop_accepting(struct hr_gateway *gw);

/* From now on every request is answered 503 without touching the store, so
 * that the store can be freed while the answers already owed are still being
 * written out (the last step of a clean shutdown). */
void hr_gateway_close(struct hr_gateway *gw);

/* Requests accepted and not answered yet (they wait for Redis). */
size_t hr_gateway_pending(const struct hr_gateway *gw);

/* The bound port (for --listen with port 0); -1 once it stopped accepting. */
int hr_gateway_port(const struct hr_gateway *gw);

#endif
