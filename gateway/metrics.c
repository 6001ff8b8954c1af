#include "metrics.h"

/* The status codes the gateway answers; anything else is counted as "other". */
static const int codes[HR_METRICS_CODES] = {200, 204, 400, 401, 403, 404,
                                            405, 413, 500, 503, 504, 0};
/* Upper bounds in seconds: from a loopback Redis round trip to a timeout. */
static const double bounds[HR_METRICS_BUCKETS - 1] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1.0};

static const char *names[HR_EP_COUNT] = {"heartbeat", "status",  "find",      "hosts", "healthz",
                                         "readyz",    "metrics", "preflight", "other"};

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
    int bi = HR_METRICS_BUCKETS - 1;
    for (int i = 0; i < HR_METRICS_BUCKETS - 1; i++)
        if (seconds <= bounds[i]) {
            bi = i;
            break;
        }
    m->requests[ep][ci]++;
    m->latency[ep][bi]++;
    m->latency_sum[ep] += seconds;
    m->latency_count[ep]++;
}

void hr_metrics_render(const struct hr_metrics *m, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP hostreg_http_requests_total HTTP requests answered, by "
                             "endpoint and status code.\n"
                             "# TYPE hostreg_http_requests_total counter\n");
    for (int e = 0; e < HR_EP_COUNT; e++)
        for (int c = 0; c < HR_METRICS_CODES; c++)
            if (m->requests[e][c]) {
                if (codes[c])
                    evbuffer_add_printf(out,
                                        "hostreg_http_requests_total{endpoint=\"%s\",code=\"%d\"} "
                                        "%llu\n",
                                        names[e], codes[c], (unsigned long long)m->requests[e][c]);
                else
                    evbuffer_add_printf(
                        out, "hostreg_http_requests_total{endpoint=\"%s\",code=\"other\"} %llu\n",
                        names[e], (unsigned long long)m->requests[e][c]);
            }
    evbuffer_add_printf(out, "# HELP hostreg_http_request_duration_seconds Time from request "
                             "to answer.\n"
                             "# TYPE hostreg_http_request_duration_seconds histogram\n");
    for (int e = 0; e < HR_EP_COUNT; e++) {
        if (!m->latency_count[e])
            continue;
        uint64_t cum = 0;
        for (int b = 0; b < HR_METRICS_BUCKETS; b++) {
            cum += m->latency[e][b];
            if (b < HR_METRICS_BUCKETS - 1)
                evbuffer_add_printf(out,
                                    "hostreg_http_request_duration_seconds_bucket{endpoint=\"%s\","
                                    "le=\"%g\"} %llu\n",
                                    names[e], bounds[b], (unsigned long long)cum);
            else
                evbuffer_add_printf(out,
                                    "hostreg_http_request_duration_seconds_bucket{endpoint=\"%s\","
                                    "le=\"+Inf\"} %llu\n",
                                    names[e], (unsigned long long)cum);
        }
        evbuffer_add_printf(out,
                            "hostreg_http_request_duration_seconds_sum{endpoint=\"%s\"} %.6f\n"
                            "hostreg_http_request_duration_seconds_count{endpoint=\"%s\"} %llu\n",
                            names[e], m->latency_sum[e], names[e],
                            (unsigned long long)m->latency_count[e]);
    }
}
