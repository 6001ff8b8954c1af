/* A latency histogram with fixed buckets, from a fast Redis round trip on
 * loopback (0.1 ms) to a timeout (1 s): the store's Redis calls and the
 * gateway's HTTP answers (metrics.h writes them out). No I/O. */
#ifndef HR_HISTOGRAM_H
#define HR_HISTOGRAM_H

#include <stdint.h>

#define HR_METRICS_BUCKETS 14 /* 13 bounds (metrics.c), then +Inf */
struct hr_histogram {
    uint64_t count[HR_METRICS_BUCKETS]; /* per bucket, not cumulative */
    double sum;
    uint64_t total;
};
void hr_histogram_observe(struct hr_histogram *h, double seconds);
/* Adds `b`'s observations to `a` (the daemon sums its workers'). */
void hr_histogram_add(struct hr_histogram *a, const struct hr_histogram *b);

#endif
