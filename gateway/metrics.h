/* The gateway's counters and their Prometheus text rendering: requests by
 * endpoint and status code, a latency histogram per endpoint. The registry's
 * own numbers (hosts by region and status, Redis errors) are passed in at
 * render time. Single-threaded: owned by the gateway's event loop. */
#ifndef HR_METRICS_H
#define HR_METRICS_H

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

enum hr_endpoint {
    HR_EP_HEARTBEAT,
    HR_EP_STATUS,
    HR_EP_FIND,
    HR_EP_HOSTS,
    HR_EP_HEALTHZ,
    HR_EP_READYZ,
    HR_EP_METRICS,
    HR_EP_PREFLIGHT,
    HR_EP_OTHER,
    HR_EP_COUNT
};

#define HR_METRICS_CODES 12
#define HR_METRICS_BUCKETS 12

struct hr_metrics {
    uint64_t requests[HR_EP_COUNT][HR_METRICS_CODES];
    uint64_t latency[HR_EP_COUNT][HR_METRICS_BUCKETS]; /* per bucket, not cumulative */
    double latency_sum[HR_EP_COUNT];
    uint64_t latency_count[HR_EP_COUNT];
};

const char *hr_endpoint_name(enum hr_endpoint ep);

/* Counts one answered request. */
void hr_metrics_record(struct hr_metrics *m, enum hr_endpoint ep, int code, double seconds);

/* Appends every metric in the text exposition format 0.0.4. */
void hr_metrics_render(const struct hr_metrics *m, struct evbuffer *out);

#endif
