/* Address ranges (CIDRs) of trusted proxies, and the client address a
 * request came from: the peer, or behind a trusted proxy the address it put
 * in X-Forwarded-For. Strings in, addresses out: no I/O. */
#ifndef HR_CIDR_H
#define HR_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define HR_CIDRS_MAX 16 /* proxies in front of one gateway: a handful */

struct hr_cidr {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network byte order; 4 bytes used for IPv4 */
    unsigned bits;    /* prefix length */
};

struct hr_cidrs {
    struct hr_cidr c[HR_CIDRS_MAX];
    size_t n;
};

/* Parses "10.0.0.0/8,::1,192.168.1.7" (no length: one address). 0, or -1
 * with the reason in err and `out` unchanged. An empty list is no range. */
int hr_cidrs_parse(const char *list, struct hr_cidrs *out, char *err, size_t errlen);

/* True when the address `text` (IPv4 or IPv6) is in one of the ranges. */
bool hr_cidrs_match(const struct hr_cidrs *c, const char *text);

/* The client's address: `peer` itself, unless it is a trusted proxy and
 * `xff` (an X-Forwarded-For header, or NULL) names others; then, from the
 * right, the first address that is not a trusted proxy (a client can write
 * anything on the left, only what the trusted proxies appended counts).
 * Into out[cap]; false when the header is malformed (then out is `peer`). */
bool hr_cidrs_client(const struct hr_cidrs *c, const char *peer, const char *xff, char *out,
                     size_t cap);

#endif
