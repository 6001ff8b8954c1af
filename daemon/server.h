/* The UDP front end of hostregd: reads datagrams in batches, decodes and
 * checks them with the shared codec and rules, hands valid requests to the
 * store and sends each ack, batched, only once the store has answered.
 * Owns its socket, its events and its counters; not the store or the base. */
#ifndef HR_SERVER_H
#define HR_SERVER_H

#include "err.h"
#include "keys.h"
#include "request.h"

#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct hr_store;
struct hr_server;

/* Reasons a datagram was dropped without an answer, by hr_err code. */
#define HR_SERVER_DROP_REASONS 16

struct hr_server_stats {
    uint64_t received, bytes_in, bytes_out;
    uint64_t dropped[HR_SERVER_DROP_REASONS]; /* index: frame hr_err (1..15) */
    uint64_t invalid;                         /* answered RESULT_INVALID */
    uint64_t acked[8];                        /* index: enum hr_result */
    uint64_t ack_send_failed;                 /* sendmmsg refused (full buffer) */
    uint64_t ack_suppressed;                  /* would have been larger than the request */
    uint64_t error_acks_limited;              /* error acks not sent: rate limit */
    uint64_t auth_stale;                      /* of dropped[HR_E_AUTH]: timestamp outside ±TTL */
    uint64_t rate_limited;                    /* dropped unread: the source's bucket was empty */
    uint64_t source_hosts_over; /* heartbeats sent refresh-only: their source is over its cap */
    uint64_t source_port_zero;  /* dropped unread: from UDP port 0, which cannot be answered */
    /* Answered retry-later (overload) without going to Redis: the datagram had
     * waited longer than queue_budget_ms in the socket's queue. */
    uint64_t refused_late;
};

struct hr_server_config {
    struct sockaddr_storage listen;
    socklen_t listen_len;
    uint32_t ttl_s, interval_s;
    uint32_t error_ack_rate;       /* error acks per second at most, all peers together */
    int reuseport;                 /* SO_REUSEPORT: several workers share the address */
    const struct hr_keyring *keys; /* NULL: open, unauthenticated frames accepted */
    uint32_t source_rate;          /* datagrams/s per source address (0: unlimited) */
    uint32_t source_burst;
    uint32_t error_gap_ms; /* at most one error ack per host this often */
    uint32_t source_hosts; /* hosts one source address may create (0: no cap) */
    /* A request that waited longer than this in the socket's receive queue
     * (the kernel's timestamp) is answered retry-later at once: the daemon
     * itself is behind, and what it still passed to Redis would be answered
     * too late to matter. 0: no bound. */
    uint32_t queue_budget_ms;
    const struct hr_rules *rules;
};

/* Binds the socket and starts reading. NULL with a reason in err when the
 * socket cannot be set up (address in use, ...). */
struct hr_server *hr_server_new(struct event_base *base, struct hr_store *store,
                                const struct hr_server_config *cfg, char *err, size_t errlen);
void hr_server_free(struct hr_server *srv);

/* Stops reading; `done` is called once every request already accepted has
 * been answered (maybe right away). */
void hr_server_drain(struct hr_server *srv, void (*done)(void *), void *arg);

const struct hr_server_stats *hr_server_get_stats(const struct hr_server *srv);

/* The bound address (to learn the port after binding port 0). */
int hr_server_local_addr(const struct hr_server *srv, struct sockaddr_storage *out, socklen_t *len);

#endif
