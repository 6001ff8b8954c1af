#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#include "server.h"

#include "clock.h"
#include "datagram.h"
#include "limits.h"
#include "log.h"
#include "store.h"
#include "wire.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Datagrams per recvmmsg/sendmmsg call: enough to amortise the system call,
 * small enough that the buffers stay in cache (64 x 1.5 KiB). */
#define BATCH 64
/* Receive batches per readable event, so Redis replies and timers get their
 * turn even under a flood. */
#define BATCHES_PER_EVENT 8
/* Receive buffer per datagram: larger than HR_WIRE_MAX so an oversized
 * datagram is seen as too big rather than silently cut. */
#define RXBUF 1536
#define ACKBUF 64 /* an ack is at most ~35 bytes */

/* A request handed to the store, waiting for its outcome. */
struct pending {
    struct pending *next; /* free list */
    struct hr_server *srv;
    struct sockaddr_storage peer;
    socklen_t peerlen;
    uint64_t seq;
    uint16_t req_len;
    char host_id[HR_ID_MAX + 1]; /* for the per-host pacing of error acks */
};

struct hr_server {
    struct event_base *base;
    struct hr_store *store;
    struct hr_server_config cfg;
    int fd;
    struct event *read_ev;
    struct event *flush_ev;

    /* receive batch */
    uint8_t rx[BATCH][RXBUF];
    struct iovec rx_iov[BATCH];
    struct mmsghdr rx_msg[BATCH];
    struct sockaddr_storage rx_addr[BATCH];
    /* each datagram's kernel receive time (SO_TIMESTAMPNS) */
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } rx_ctl[BATCH];

    /* ack batch, flushed once per loop iteration or when full */
    uint8_t tx[BATCH][ACKBUF];
    struct iovec tx_iov[BATCH];
    struct mmsghdr tx_msg[BATCH];
    struct sockaddr_storage tx_addr[BATCH];
    unsigned ntx;

    struct pending *free_pending;
    size_t npending;
    void (*drain_done)(void *);
    void *drain_arg;

    struct hr_limits *limits;
    double err_tokens; /* error-ack token bucket */
    struct timespec err_last;

    struct hr_server_stats stats;
};

static void flush_acks(struct hr_server *srv)
{
    unsigned off = 0;
    while (off < srv->ntx) {
        int n = sendmmsg(srv->fd, srv->tx_msg + off, srv->ntx - off, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                /* A full socket buffer: the rest would fail too; the hosts
                 * retransmit. Count and move on. */
                srv->stats.ack_send_failed += srv->ntx - off;
                HR_LOG_LIMITED(HR_LOG_WARN, "sendmmsg: %s (%u acks dropped)", strerror(errno),
                               srv->ntx - off);
                break;
            }
            /* This one ack cannot go (sendmmsg fails on the first message it
             * cannot send, an address the kernel refuses): drop it alone, so
             * one peer cannot silence the others of its batch. */
            char addr[HR_ADDRSTRLEN];
            srv->stats.ack_send_failed++;
            HR_LOG_LIMITED(
                HR_LOG_WARN, "sendmmsg to %s: %s (ack dropped)",
                hr_addr_str(addr, sizeof(addr), (const struct sockaddr *)&srv->tx_addr[off]),
                strerror(errno));
            off++;
            continue;
        }
        for (int i = 0; i < n; i++)
            srv->stats.bytes_out += srv->tx_msg[off + (unsigned)i].msg_len;
        off += (unsigned)n;
    }
    srv->ntx = 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_acks(arg);
}

/* Returns true when an error ack may go out now (global token bucket). */
static bool error_ack_allowed(struct hr_server *srv)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    double dt = (double)(now.tv_sec - srv->err_last.tv_sec) +
                (double)(now.tv_nsec - srv->err_last.tv_nsec) / 1e9;
    srv->err_last = now;
    srv->err_tokens += dt * srv->cfg.error_ack_rate;
    if (srv->err_tokens > srv->cfg.error_ack_rate)
        srv->err_tokens = srv->cfg.error_ack_rate;
    if (srv->err_tokens < 1.0)
        return false;
    srv->err_tokens -= 1.0;
    return true;
}

/* Error acks are paced twice: per host (a host retransmitting into a Redis
 * outage hears "retry later" once a second, not once a datagram) and in all
 * (a flood of bad requests cannot turn us into a sender). Except the answer
 * to a request refused for overload (Redis behind its latency budget, or
 * too much in flight): every request is answered, ok or retry later, so
 * that a host under overload knows to back off rather than guess from
 * silence; such an ack is never larger than its request. */
static void queue_ack(struct hr_server *srv, const struct sockaddr_storage *peer, socklen_t peerlen,
                      uint64_t seq, enum hr_result result, uint32_t reason, size_t req_len,
                      const char *host_id)
{
    bool overload = result == HR_RESULT_RETRY_LATER && reason == HR_E_OVERLOAD;
    if (result != HR_RESULT_OK && result != HR_RESULT_DUPLICATE && !overload &&
        ((host_id && host_id[0] &&
          !hr_limits_host_error(srv->limits, host_id, hr_mono_coarse_ms())) ||
         !error_ack_allowed(srv))) {
        srv->stats.error_acks_limited++;
        return;
    }
    if (srv->ntx == BATCH)
        flush_acks(srv);
    struct hr_ack ack = {seq, result, srv->cfg.ttl_s, srv->cfg.interval_s, reason};
    unsigned i = srv->ntx;
    /* Never more bytes back than came in: no use as a reflector. */
    size_t n = hr_wire_encode_ack(&ack, srv->tx[i], req_len < ACKBUF ? req_len : ACKBUF);
    if (n == 0) {
        srv->stats.ack_suppressed++;
        return;
    }
    srv->stats.acked[result]++;
    memcpy(&srv->tx_addr[i], peer, peerlen);
    srv->tx_iov[i].iov_len = n;
    srv->tx_msg[i].msg_hdr.msg_namelen = peerlen;
    srv->ntx++;
    if (srv->ntx == 1)
        event_active(srv->flush_ev, EV_WRITE, 0);
}

static void on_stored(void *arg, enum hr_result result, int reason)
{
    struct pending *p = arg;
    struct hr_server *srv = p->srv;
    queue_ack(srv, &p->peer, p->peerlen, p->seq, result,
              result == HR_RESULT_RETRY_LATER || result == HR_RESULT_INVALID ? (uint32_t)reason : 0,
              p->req_len, p->host_id);
    p->next = srv->free_pending;
    srv->free_pending = p;
    srv->npending--;
    if (srv->drain_done && srv->npending == 0) {
        flush_acks(srv);
        void (*done)(void *) = srv->drain_done;
        srv->drain_done = NULL;
        done(srv->drain_arg);
    }
}

static void handle(struct hr_server *srv, const uint8_t *buf, size_t len,
                   const struct sockaddr_storage *peer, socklen_t peerlen, uint64_t now_ms,
                   int64_t now_s, bool late)
{
    struct hr_verdict v;
    char addr[HR_ADDRSTRLEN];
    const struct hr_datagram_ctx ctx = {srv->cfg.rules, srv->cfg.keys, srv->cfg.ttl_s, now_s};
    hr_datagram_judge(buf, len, &ctx, &v);
    if (v.kind == HR_VERDICT_DROP) {
        /* Not a frame we read: no answer at all, so a spoofed source cannot
         * make us send anything to a victim. */
        srv->stats.dropped[v.reason < HR_SERVER_DROP_REASONS ? v.reason : 0]++;
        srv->stats.auth_stale += v.stale;
        if (hr_log_level >= HR_LOG_DEBUG) {
            char esc[64];
            HR_LOG_LIMITED(HR_LOG_DEBUG, "drop %s from %s (%zu bytes: %s)", hr_errname(v.reason),
                           hr_addr_str(addr, sizeof(addr), (const struct sockaddr *)peer), len,
                           hr_log_escape(esc, sizeof(esc), buf, len < 16 ? len : 16));
        }
        return;
    }
    if (v.kind == HR_VERDICT_INVALID) {
        srv->stats.invalid++;
        HR_LOG_LIMITED(HR_LOG_INFO, "invalid %s seq=%llu from %s: %s",
                       hr_msg_type_name(v.frame.req.type), (unsigned long long)v.frame.req.seq,
                       hr_addr_str(addr, sizeof(addr), (const struct sockaddr *)peer),
                       hr_strerror(v.reason));
        queue_ack(srv, peer, peerlen, v.frame.req.seq, HR_RESULT_INVALID, (uint32_t)v.reason, len,
                  NULL);
        return;
    }
    const struct hr_request *req = &v.req;
    if (late) {
        /* The daemon is behind on its own socket: shed before any Redis work,
         * so that what it reads next is answered in time. */
        srv->stats.refused_late++;
        queue_ack(srv, peer, peerlen, req->seq, HR_RESULT_RETRY_LATER, HR_E_OVERLOAD, len,
                  req->host_id);
        return;
    }
    struct pending *p = srv->free_pending;
    if (p)
        srv->free_pending = p->next;
    else if (!(p = malloc(sizeof(*p)))) {
        queue_ack(srv, peer, peerlen, req->seq, HR_RESULT_RETRY_LATER, HR_E_NOMEM, len, NULL);
        return;
    }
    p->srv = srv;
    memcpy(&p->peer, peer, peerlen);
    p->peerlen = peerlen;
    p->seq = req->seq;
    p->req_len = (uint16_t)len;
    memcpy(p->host_id, req->host_id, sizeof(p->host_id));
    /* A source over its cap of hosts keeps the ones it has, gets no new one. */
    unsigned flags = 0;
    if (req->type == HR_MSG_HEARTBEAT &&
        !hr_limits_source_hosts(srv->limits, (const struct sockaddr *)peer, req->host_id, now_ms)) {
        srv->stats.source_hosts_over++;
        flags = HR_STORE_NO_CREATE;
    }
    int rc = hr_store_submit(srv->store, req, flags, on_stored, p);
    if (rc != HR_OK) {
        p->next = srv->free_pending;
        srv->free_pending = p;
        queue_ack(srv, peer, peerlen, req->seq, HR_RESULT_RETRY_LATER, (uint32_t)rc, len,
                  req->host_id);
        return;
    }
    srv->npending++;
}

/* The UDP port of an IPv4 or IPv6 source; -1 for another family. */
static int source_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return -1;
}

/* How long a datagram waited in the socket's queue (ms), from the kernel's
 * receive timestamp; 0 when it has none. */
static int64_t queued_ms(struct msghdr *h, const struct timespec *now)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec t;
            memcpy(&t, CMSG_DATA(c), sizeof(t));
            return (int64_t)(now->tv_sec - t.tv_sec) * 1000 +
                   (int64_t)(now->tv_nsec - t.tv_nsec) / 1000000;
        }
    return 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct hr_server *srv = arg;
    for (int b = 0; b < BATCHES_PER_EVENT; b++) {
        for (unsigned i = 0; i < BATCH; i++) {
            srv->rx_msg[i].msg_hdr.msg_namelen = sizeof(srv->rx_addr[i]);
            srv->rx_msg[i].msg_hdr.msg_flags = 0;
            srv->rx_msg[i].msg_hdr.msg_control = srv->rx_ctl[i].buf;
            srv->rx_msg[i].msg_hdr.msg_controllen = sizeof(srv->rx_ctl[i].buf);
        }
        int n = recvmmsg(fd, srv->rx_msg, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                HR_LOG_LIMITED(HR_LOG_ERROR, "recvmmsg: %s", strerror(errno));
            return;
        }
        uint64_t now = hr_mono_coarse_ms();
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        for (int i = 0; i < n; i++) {
            struct mmsghdr *m = &srv->rx_msg[i];
            srv->stats.received++;
            srv->stats.bytes_in += m->msg_len;
            /* Source port 0 cannot be answered (the kernel refuses to send
             * there) and no real host sends from it: dropped unread. */
            if (source_port(&srv->rx_addr[i]) == 0) {
                srv->stats.source_port_zero++;
                continue;
            }
            /* Before any work at all: an empty bucket costs one table lookup. */
            if (!hr_limits_source(srv->limits, (struct sockaddr *)&srv->rx_addr[i], now)) {
                srv->stats.rate_limited++;
                continue;
            }
            /* A datagram cut to RXBUF (MSG_TRUNC) is longer than
             * HR_WIRE_MAX: judged too big like any other. */
            bool late = srv->cfg.queue_budget_ms &&
                        queued_ms(&m->msg_hdr, &wall) > (int64_t)srv->cfg.queue_budget_ms;
            handle(srv, srv->rx[i], m->msg_len, &srv->rx_addr[i], m->msg_hdr.msg_namelen, now,
                   (int64_t)wall.tv_sec, late);
        }
        if (n < BATCH)
            return;
    }
}

struct hr_server *hr_server_new(struct event_base *base, struct hr_store *store,
                                const struct hr_server_config *cfg, char *err, size_t errlen)
{
    struct hr_server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->base = base;
    srv->store = store;
    srv->cfg = *cfg;
    srv->fd = -1;
    srv->err_tokens = cfg->error_ack_rate;
    struct hr_limits_config lc = {
        .rate = cfg->source_rate,
        .burst = cfg->source_burst,
        .error_gap_ms = cfg->error_gap_ms,
        .source_hosts = cfg->source_hosts,
        .window_ms = cfg->ttl_s * 1000,
    };
    srv->limits = hr_limits_new(&lc);
    if (!srv->limits) {
        snprintf(err, errlen, "abuse limits: out of memory or no random bytes for the hash key");
        goto fail;
    }
    clock_gettime(CLOCK_MONOTONIC_COARSE, &srv->err_last);
    for (unsigned i = 0; i < BATCH; i++) {
        srv->rx_iov[i] = (struct iovec){srv->rx[i], RXBUF};
        srv->rx_msg[i].msg_hdr = (struct msghdr){.msg_name = &srv->rx_addr[i],
                                                 .msg_namelen = sizeof(srv->rx_addr[i]),
                                                 .msg_iov = &srv->rx_iov[i],
                                                 .msg_iovlen = 1};
        srv->tx_iov[i] = (struct iovec){srv->tx[i], 0};
        srv->tx_msg[i].msg_hdr = (struct msghdr){
            .msg_name = &srv->tx_addr[i], .msg_iov = &srv->tx_iov[i], .msg_iovlen = 1};
    }
    srv->fd = socket(cfg->listen.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (srv->fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        goto fail;
    }
    /* A deep receive buffer absorbs bursts while Redis answers; the kernel
     * caps it at net.core.rmem_max, which is fine. */
    int rcvbuf = 8 << 20;
    setsockopt(srv->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    /* Each datagram's receive time, to tell how long it waited for us. */
    int stamp = 1;
    if (cfg->queue_budget_ms &&
        setsockopt(srv->fd, SOL_SOCKET, SO_TIMESTAMPNS, &stamp, sizeof(stamp)) != 0)
        HR_LOG(HR_LOG_WARN, "SO_TIMESTAMPNS: %s: the queue's age is not bounded", strerror(errno));
    /* Workers each bind the address; the kernel spreads datagrams by source,
     * so one host's requests always reach the same worker, in order. */
    int one = 1;
    if (cfg->reuseport && setsockopt(srv->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        goto fail;
    }
    if (bind(srv->fd, (const struct sockaddr *)&cfg->listen, cfg->listen_len) != 0) {
        char addr[HR_ADDRSTRLEN];
        snprintf(err, errlen, "bind %s: %s",
                 hr_addr_str(addr, sizeof(addr), (const struct sockaddr *)&cfg->listen),
                 strerror(errno));
        goto fail;
    }
    srv->read_ev = event_new(base, srv->fd, EV_READ | EV_PERSIST, on_read, srv);
    srv->flush_ev = event_new(base, -1, 0, on_flush, srv);
    if (!srv->read_ev || !srv->flush_ev || event_add(srv->read_ev, NULL) != 0) {
        snprintf(err, errlen, "cannot create events");
        goto fail;
    }
    return srv;
fail:
    hr_server_free(srv);
    return NULL;
}

void hr_server_free(struct hr_server *srv)
{
    if (!srv)
        return;
    if (srv->ntx)
        flush_acks(srv);
    if (srv->read_ev)
        event_free(srv->read_ev);
    if (srv->flush_ev)
        event_free(srv->flush_ev);
    if (srv->fd >= 0)
        close(srv->fd);
    hr_limits_free(srv->limits);
    while (srv->free_pending) {
        struct pending *p = srv->free_pending;
        srv->free_pending = p->next;
        free(p);
    }
    free(srv);
}

void hr_server_drain(struct hr_server *srv, void (*done)(void *), void *arg)
{
    event_del(srv->read_ev);
    if (srv->npending == 0) {
        flush_acks(srv);
        done(arg);
        return;
    }
    srv->drain_done = done;
    srv->drain_arg = arg;
}

const struct hr_server_stats *hr_server_get_stats(const struct hr_server *srv)
{
    return &srv->stats;
}

int hr_server_local_addr(const struct hr_server *srv, struct sockaddr_storage *out, socklen_t *len)
{
    *len = sizeof(*out);
    return getsockname(srv->fd, (struct sockaddr *)out, len);
}
