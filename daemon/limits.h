/* Abuse limits of the UDP front end, in fixed memory: a token bucket per
 * source (an IPv4 address, or an IPv6 /64: one machine or one site), and
 * pacing of error acks per host. Tables have a fixed number of slots; a new
 * source takes the least recently used slot of its probe window, so a flood
 * of spoofed sources costs evictions, never memory. Owned by one loop. */
#ifndef HR_LIMITS_H
#define HR_LIMITS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct hr_limits;

/* rate: datagrams per second per source (0: no per-source limit); burst:
 * bucket size; error_gap_ms: at most one error ack per host per this long. */
struct hr_limits *hr_limits_new(uint32_t rate, uint32_t burst, uint32_t error_gap_ms);
void hr_limits_free(struct hr_limits *l);

/* Takes a token for a datagram from `sa`; false when its bucket is empty. */
bool hr_limits_source(struct hr_limits *l, const struct sockaddr *sa, uint64_t now_ms);

/* True when an error ack (retry-later, unknown host, invalid) may go to this
 * host now, and then records it. */
bool hr_limits_host_error(struct hr_limits *l, const char *host_id, uint64_t now_ms);

#endif
