/* Prometheus text exposition (format 0.0.4), written once for every program:
 * metric families, counters, gauges and latency histograms; the registry's
 * own numbers (the store's Redis counters, live hosts by region and status);
 * and the HTTP front end's counters (requests by endpoint and status code,
 * a latency histogram per endpoint). Appends to a caller's evbuffer. Not
 * thread-safe: each struct belongs to one event loop. */
#ifndef HR_METRICS_H
#define HR_METRICS_H

#include "histogram.h"

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

struct hr_store;

/* "# HELP name help" and "# TYPE name type" ("counter", "gauge", "histogram"). */
void hr_metrics_family(struct evbuffer *out, const char *name, const char *type, const char *help);

/* One sample: name{labels} value; labels is 'a="b",c="d"' or NULL. */
void hr_metrics_sample(struct evbuffer *out, const char *name, const char *labels, uint64_t value);

/* hostreg_redis_call_duration_seconds (the store's stats.call_seconds),
 * family lines included. */
void hr_metrics_redis_latency(struct evbuffer *out, const struct hr_histogram *h);
/* Its _bucket, _sum and _count samples (no family lines); nothing when empty. */
void hr_metrics_histogram(struct evbuffer *out, const char *name, const char *labels,
                          const struct hr_histogram *h);

/* The store's Redis counters and gauges: hostreg_redis_{errors,timeouts,
 * connects}_total, hostreg_redis_up, hostreg_redis_inflight,
 * hostreg_redis_writes_refused, hostreg_redis_evicting. */
void hr_metrics_store(struct evbuffer *out, const struct hr_store *st);

/* hostreg_build_info{version,revision} 1. */
void hr_metrics_build_info(struct evbuffer *out);

/* hostreg_hosts{region,status}: counts as hr_store_count answers them. */
void hr_metrics_hosts(struct evbuffer *out, const char *const *regions, size_t nregions,
                      const uint64_t *counts);

/* --- the HTTP front end's requests --- */

enum hr_endpoint {
    HR_EP_HEARTBEAT,
    HR_EP_STATUS,
    HR_EP_FIND,
    HR_EP_HOSTS,
    HR_EP_HEALTHZ,
    HR_EP_READYZ,
    HR_EP_METRICS,
    HR_EP_PREFLIGHT,
    HR_EP_DASHBOARD,
    HR_EP_OTHER,
    HR_EP_COUNT
};

#define HR_METRICS_CODES 13

struct hr_metrics {
    uint64_t requests[HR_EP_COUNT][HR_METRICS_CODES];
    struct hr_histogram latency[HR_EP_COUNT];
};

const char *hr_endpoint_name(enum hr_endpoint ep);

/* Counts one answered request. */
void hr_metrics_record(struct hr_metrics *m, enum hr_endpoint ep, int code, double seconds);

/* Appends hostreg_http_requests_total and hostreg_http_request_duration_seconds. */
void hr_metrics_render(const struct hr_metrics *m, struct evbuffer *out);

#endif
