/* Abuse limits of the front ends (hostregd and hostreg-gateway), in fixed memory: a token bucket
 * per source (an IPv4 address, or an IPv6 /64: one machine or one site), a cap on the hosts one
 * source speaks for, and pacing of error acks per host. Tables have a fixed number of slots; a new
 * source takes the least recently used slot of its probe window, so a flood of spoofed sources
 * costs evictions, never memory. Slots and host hashes come from SipHash-2-4 under a 128-bit key
 * drawn at start, so nobody outside can choose addresses or hostIds that collide (to escape the cap
 * on hosts, or to crowd one slot). Owned by one loop. */
#ifndef HR_LIMITS_H
#define HR_LIMITS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct hr_limits;

struct hr_limits_config {
    uint32_t rate;         /* datagrams per second per source (0: no limit) */
    uint32_t burst;        /* bucket size */
    uint32_t error_gap_ms; /* at most one error ack per host per this long (0: no limit) */
    uint32_t source_hosts; /* distinct hosts per source within a window (0: no cap) */
    uint32_t window_ms;    /* that window: the entry TTL (a host not heard from is gone) */
    /* 0: the hash key is 128 random bits (getrandom), as it must be in
     * service. Tests set a seed instead, from which the key follows, to get
     * the same slots and estimates every run. */
    uint64_t seed;
};

/* NULL when out of memory, or when no random key can be had (getrandom
 * failed); a guessable key is never used instead. */
struct hr_limits *hr_limits_new(const struct hr_limits_config *cfg);
void hr_limits_free(struct hr_limits *l);

/* Takes a token for a datagram from `sa`; false when its bucket is empty. */
bool hr_limits_source(struct hr_limits *l, const struct sockaddr *sa, uint64_t now_ms);

/* Records that `sa` spoke for `host_id` (a heartbeat), and returns whether
 * the hosts it spoke for in the last one to two windows, this one included,
 * are within the cap: when not, the host may refresh an entry it has but not
 * create one. Exact up to 16 hosts per window, then a HyperLogLog estimate
 * (256 registers: about 6.5% standard error). Hosts that went quiet still
 * count for one to two windows. */
bool hr_limits_source_hosts(struct hr_limits *l, const struct sockaddr *sa, const char *host_id,
                            uint64_t now_ms);

/* True when an error ack (retry-later, unknown host, invalid) may go to this
 * host now, and then records it. */
bool hr_limits_host_error(struct hr_limits *l, const char *host_id, uint64_t now_ms);

#endif
