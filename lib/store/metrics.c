#include "metrics.h"

#include "config.h"
#include "request.h"
#include "store.h"

#include <stdio.h>

/* Upper bounds in seconds: from a loopback Redis round trip to a timeout. */
static const double bounds[HR_METRICS_BUCKETS - 1] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};

void hr_metrics_family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void hr_metrics_sample(struct evbuffer *out, const char *name, const char *labels, uint64_t value)
{
    if (labels)
        evbuffer_add_printf(out, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
    else
        evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)value);
}

void hr_histogram_observe(struct hr_histogram *h, double seconds)
{
    int bi = HR_METRICS_BUCKETS - 1;
    for (int i = 0; i < HR_METRICS_BUCKETS - 1; i++)
        if (seconds <= bounds[i]) {
            bi = i;
            break;
        }
    h->count[bi]++;
    h->sum += seconds;
    h->total++;
}

void hr_histogram_add(struct hr_histogram *a, const struct hr_histogram *b)
{
    for (int i = 0; i < HR_METRICS_BUCKETS; i++)
        a->count[i] += b->count[i];
    a->sum += b->sum;
    a->total += b->total;
}

void hr_metrics_histogram(struct evbuffer *out, const char *name, const char *labels,
                          const struct hr_histogram *h)
{
    if (!h->total)
        return;
    const char *sep = labels ? "," : "";
    labels = labels ? labels : "";
    uint64_t cum = 0;
    for (int b = 0; b < HR_METRICS_BUCKETS; b++) {
        cum += h->count[b];
        if (b < HR_METRICS_BUCKETS - 1)
            evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                                bounds[b], (unsigned long long)cum);
        else
            evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                                (unsigned long long)cum);
    }
    evbuffer_add_printf(out, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, h->sum, name,
                        labels, (unsigned long long)h->total);
}

void hr_metrics_build_info(struct evbuffer *out)
{
    char labels[128];
    hr_metrics_family(out, "hostreg_build_info", "gauge",
                      "Always 1; the labels say which build runs (git revision: \"\" when not "
                      "built from a checkout).");
    snprintf(labels, sizeof(labels), "version=\"%s\",revision=\"%s\"", hr_version_number(),
             hr_version_revision());
    hr_metrics_sample(out, "hostreg_build_info", labels, 1);
}

void hr_metrics_store(struct evbuffer *out, const struct hr_store *st)
{
    struct hr_store_stats s;
    hr_store_get_stats(st, &s);
    static const struct {
        const char *name, *type, *help;
    } f[] = {
        {"hostreg_redis_errors_total", "counter", "Redis error replies."},
        {"hostreg_redis_timeouts_total", "counter",
         "Redis connections reset after no reply of any kind for --redis-timeout."},
        {"hostreg_redis_refused_behind_total", "counter",
         "Requests and finds refused at once because Redis was further behind than "
         "--redis-latency-budget."},
        {"hostreg_redis_connects_total", "counter", "Redis connection attempts."},
        {"hostreg_redis_up", "gauge", "Whether Redis is connected and ready."},
        {"hostreg_redis_inflight", "gauge", "Redis commands waiting for an answer."},
        {"hostreg_redis_writes_refused", "gauge",
         "Whether Redis refused the last write (READONLY, OOM, MISCONF) and took none since."},
        {"hostreg_redis_evicting", "gauge",
         "Whether Redis's maxmemory-policy deletes keys (hosts) at its maxmemory; 0 when "
         "noeviction or not known."},
    };
    const uint64_t v[] = {s.redis_errors,
                          s.timeouts,
                          s.refused_behind,
                          s.reconnects,
                          hr_store_ready(st) ? 1 : 0,
                          hr_store_inflight(st),
                          hr_store_writes_refused(st) ? 1 : 0,
                          hr_store_evicting(st) == 1 ? 1 : 0};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        hr_metrics_family(out, f[i].name, f[i].type, f[i].help);
        hr_metrics_sample(out, f[i].name, NULL, v[i]);
    }
    hr_metrics_redis_latency(out, &s.call_seconds);
}

void hr_metrics_redis_latency(struct evbuffer *out, const struct hr_histogram *h)
{
    hr_metrics_family(out, "hostreg_redis_call_duration_seconds", "histogram",
                      "Time from sending a Redis call (a script: a batch of requests, a claim, "
                      "...) to its reply, redirections and retries included.");
    hr_metrics_histogram(out, "hostreg_redis_call_duration_seconds", NULL, h);
}

void hr_metrics_hosts(struct evbuffer *out, const char *const *regions, size_t nregions,
                      const uint64_t *counts)
{
    hr_metrics_family(out, "hostreg_hosts", "gauge", "Live hosts by region and status.");
    for (size_t i = 0; i < nregions; i++)
        for (size_t s = 0; s < HR_NSTATUSES; s++) {
            char labels[128];
            snprintf(labels, sizeof(labels), "region=\"%s\",status=\"%s\"", regions[i],
                     hr_status_name_at(s));
            hr_metrics_sample(out, "hostreg_hosts", labels, counts[HR_NSTATUSES * i + s]);
        }
}

/* --- the HTTP front end's requests --- */

/* The status codes the gateway answers; anything else is counted as "other". */
static const int codes[HR_METRICS_CODES] = {200, 204, 400, 401, 403, 404, 405,
                                            413, 429, 500, 503, 504, 0};

static const char *names[HR_EP_COUNT] = {"heartbeat", "status", "find",    "hosts",
                                         "healthz",   "readyz", "metrics", "preflight",
                                         "dashboard", "other"};

const char *hr_endpoint_name(enum hr_endpoint ep)
{
    return ep < HR_EP_COUNT ? names[ep] : "other";
}

void hr_metrics_record(struct hr_metrics *m, enum hr_endpoint ep, int code, double seconds)
{
    int ci = HR_METRICS_CODES - 1;
    for (int i = 0; i < HR_METRICS_CODES - 1; i++)
        if (codes[i] == code)
            ci = i;
    m->requests[ep][ci]++;
    hr_histogram_observe(&m->latency[ep], seconds);
}

void hr_metrics_render(const struct hr_metrics *m, struct evbuffer *out)
{
    char labels[96];
    hr_metrics_family(out, "hostreg_http_requests_total", "counter",
                      "HTTP requests answered, by endpoint and status code.");
    for (int e = 0; e < HR_EP_COUNT; e++)
        for (int c = 0; c < HR_METRICS_CODES; c++)
            if (m->requests[e][c]) {
                if (codes[c])
                    snprintf(labels, sizeof(labels), "endpoint=\"%s\",code=\"%d\"", names[e],
                             codes[c]);
                else
                    snprintf(labels, sizeof(labels), "endpoint=\"%s\",code=\"other\"", names[e]);
                hr_metrics_sample(out, "hostreg_http_requests_total", labels, m->requests[e][c]);
            }
    hr_metrics_family(out, "hostreg_http_request_duration_seconds", "histogram",
                      "Time from request to answer.");
    for (int e = 0; e < HR_EP_COUNT; e++) {
        snprintf(labels, sizeof(labels), "endpoint=\"%s\"", names[e]);
        hr_metrics_histogram(out, "hostreg_http_request_duration_seconds", labels, &m->latency[e]);
    }
}
