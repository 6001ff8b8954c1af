#define _GNU_SOURCE /* sendmmsg, recvmmsg */
#include "bench.h"

#include "config.h"
#include "keyopt.h"
#include "err.h"
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
/* Send times are kept in a ring indexed by sequence number: room for every
 * request that can be outstanding (4 M: 4 s at 1 M/s). */
#define RING_BITS 22
#define RING (1u << RING_BITS)

/* Latency histogram, log-linear: 10 us steps to 1 ms, 100 us to 10 ms, 1 ms
 * to 100 ms, 10 ms to 1 s; one overflow bucket. Percentiles from counts, not
 * from a sorted array of every sample. */
#define HIST_BUCKETS (100 + 90 + 90 + 90 + 1)

struct bench_config {
    struct sockaddr_storage server;
    socklen_t server_len;
    uint32_t hosts, rate, duration_s, window, status_pct, drain_ms;
    int json;
    struct hr_key_opt key;
};

static int set_key_file(void *c, const char *v, char *err, size_t errlen)
{
    return hr_key_opt_file(&((struct bench_config *)c)->key, v, err, errlen);
}

static int set_key_id(void *c, const char *v, char *err, size_t errlen)
{
    return hr_key_opt_id(&((struct bench_config *)c)->key, v, err, errlen);
}

struct bench {
    struct bench_config *cfg;
    int fd;
    uint64_t seq_base;
    _Atomic uint64_t *sent_ns; /* by seq & (RING-1); 0: not outstanding */
    atomic_uint_fast64_t sent, acked, outstanding;
    atomic_int sending_done, stop;
    uint64_t by_result[8];
    uint64_t unmatched, send_errors;
    uint64_t hist[HIST_BUCKETS], hist_ok[HIST_BUCKETS]; /* every ack; the ok ones */
    uint64_t max_ns, max_ok_ns;
    double send_seconds;
    uint64_t behind; /* batches sent late: the generator could not keep up */
};

static int set_server(void *c, const char *v, char *err, size_t errlen)
{
    struct bench_config *b = c;
    return hr_parse_hostport(v, "127.0.0.1", &b->server, &b->server_len, err, errlen);
}

HR_OPT_U32(set_hosts, struct bench_config, hosts, 1u, 100000000u, "")
HR_OPT_U32(set_rate, struct bench_config, rate, 0u, 10000000u, "")
HR_OPT_U32(set_duration, struct bench_config, duration_s, 1u, 3600u, "seconds, ")
HR_OPT_U32(set_window, struct bench_config, window, 0u, RING / 2, "")
HR_OPT_U32(set_status, struct bench_config, status_pct, 0u, 100u, "a percentage, ")
HR_OPT_U32(set_drain, struct bench_config, drain_ms, 10u, 60000u, "milliseconds, ")
HR_OPT_FLAG(set_json, struct bench_config, json)

static const struct hr_opt options[] = {
    {"server", 's', "HOST:PORT", "127.0.0.1:9099", "the hostregd to load", set_server, NULL},
    {"hosts", 'n', "N", "1000", "simulated hosts (distinct UUIDs; the first round registers them)",
     set_hosts, NULL},
    {"rate", 'R', "PER_SECOND", "10000", "datagrams per second; 0: as fast as the window allows",
     set_rate, NULL},
    {"duration", 'd', "SECONDS", "5", "how long to send", set_duration, NULL},
    {"window", 'w', "N", "0",
     "most requests in flight (0: unlimited with --rate, 2048 with --rate 0)", set_window, NULL},
    {"status-percent", 0, "P", "5", "share of status updates (idle/busy) among the datagrams",
     set_status, NULL},
    {"drain", 0, "MS", "1000", "after sending, wait this long for the last acks", set_drain, NULL},
    {"key-file", 'k', "FILE", NULL,
     "sign every datagram with its host's key from the registry's key file", set_key_file, NULL},
    {"key-id", 0, "ID", "0", "which key of the file (0: the first)", set_key_id, NULL},
    {"json", 'j', NULL, NULL, "one JSON object with every figure", set_json, NULL},
    {0},
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int bucket(uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (us < 1000)
        return (int)(us / 10);
    if (us < 10000)
        return 100 + (int)((us - 1000) / 100);
    if (us < 100000)
        return 190 + (int)((us - 10000) / 1000);
    if (us < 1000000)
        return 280 + (int)((us - 100000) / 10000);
    return HIST_BUCKETS - 1;
}

/* Upper bound of a bucket, in microseconds. */
static double bucket_top_us(int b)
{
    if (b < 100)
        return (b + 1) * 10.0;
    if (b < 190)
        return 1000 + (b - 100 + 1) * 100.0;
    if (b < 280)
        return 10000 + (b - 190 + 1) * 1000.0;
    if (b < 370)
        return 100000 + (b - 280 + 1) * 10000.0;
    return 1e9;
}

static double hist_percentile_ms(const uint64_t *hist, uint64_t max_ns, double p)
{
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++)
        total += hist[i];
    if (!total)
        return 0;
    uint64_t want = (uint64_t)(p * (double)total + 0.999999);
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= want)
            return i == HIST_BUCKETS - 1 ? (double)max_ns / 1e6 : bucket_top_us(i) / 1000.0;
    }
    return (double)max_ns / 1e6;
}

static double percentile_ms(const struct bench *b, double p)
{
    return hist_percentile_ms(b->hist, b->max_ns, p);
}

/* The same over the acks that said ok (under overload, the retry-later ones
 * are fast and would hide how long the accepted requests took). */
static double percentile_ok_ms(const struct bench *b, double p)
{
    return hist_percentile_ms(b->hist_ok, b->max_ok_ns, p);
}

/* Host i: a UUID in a namespace of its own, a room, a region. */
static void host_request(struct hr_request *r, uint32_t i, enum hr_msg_type type,
                         enum hr_status status, uint64_t seq)
{
    static const char *regions[] = {"us-east-1", "us-west-1", "eu-central", "local"};
    memset(r, 0, sizeof(*r));
    r->type = type;
    r->seq = seq;
    snprintf(r->host_id, sizeof(r->host_id), "b0b0b0b0-%04x-4000-8000-%012x", (i >> 16) & 0xffff,
             i & 0xffff);
    if (type == HR_MSG_HEARTBEAT) {
        snprintf(r->room_id, sizeof(r->room_id), "room%08x", i);
        snprintf(r->region, sizeof(r->region), "%s", regions[i % 4]);
    }
    r->status = status;
}

static void *receiver(void *arg)
{
    struct bench *b = arg;
    uint8_t buf[BATCH][128];
    struct iovec iov[BATCH];
    struct mmsghdr msg[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){buf[i], sizeof(buf[i])};
        msg[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    while (!atomic_load(&b->stop)) {
        int n = recvmmsg(b->fd, msg, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue; /* SO_RCVTIMEO: look at the stop flag again */
        uint64_t now = now_ns();
        for (int i = 0; i < n; i++) {
            struct hr_frame f;
            if (hr_wire_decode(buf[i], msg[i].msg_len, &f) != HR_OK || f.type != HR_MSG_ACK) {
                b->unmatched++;
                continue;
            }
            uint64_t t = atomic_exchange(&b->sent_ns[f.ack.seq & (RING - 1)], 0);
            if (!t || f.ack.seq < b->seq_base) {
                b->unmatched++; /* a duplicate ack, or one for a request we gave up on */
                continue;
            }
            uint64_t lat = now > t ? now - t : 0;
            b->hist[bucket(lat)]++;
            if (lat > b->max_ns)
                b->max_ns = lat;
            if (f.ack.result == HR_RESULT_OK) {
                b->hist_ok[bucket(lat)]++;
                if (lat > b->max_ok_ns)
                    b->max_ok_ns = lat;
            }
            b->by_result[f.ack.result < 8 ? f.ack.result : 0]++;
            atomic_fetch_add(&b->acked, 1);
            atomic_fetch_sub(&b->outstanding, 1);
        }
    }
    return NULL;
}

static void run_sender(struct bench *b)
{
    struct bench_config *cfg = b->cfg;
    uint8_t buf[BATCH][HR_WIRE_MAX];
    struct iovec iov[BATCH];
    struct mmsghdr msg[BATCH];
    uint8_t *busy = calloc(cfg->hosts, 1); /* each host's status, to alternate it */
    uint64_t seq = b->seq_base, x = 0x2545F4914F6CDD1DULL, next_host = 0;
    uint64_t start = now_ns(), end = start + (uint64_t)cfg->duration_s * 1000000000u;
    uint32_t window = cfg->window ? cfg->window : cfg->rate ? RING / 2 : 2048;

    for (;;) {
        uint64_t now = now_ns();
        if (now >= end)
            break;
        uint64_t due = cfg->rate ? (uint64_t)((double)(now - start) / 1e9 * cfg->rate) : UINT64_MAX;
        uint64_t sent = atomic_load(&b->sent);
        if (sent >= due) {
            /* Ahead of schedule: sleep until a batch is due (about 0.5 ms of
             * datagrams at high rates). Spinning here would steal the CPU the
             * daemon and Redis need on a small machine. */
            uint64_t k = cfg->rate / 2000 ? cfg->rate / 2000 : 1;
            uint64_t next =
                start + (uint64_t)((double)(sent + (k < BATCH ? k : BATCH)) * 1e9 / cfg->rate);
            if (next > now) {
                struct timespec ts = {(time_t)((next - now) / 1000000000u),
                                      (long)((next - now) % 1000000000u)};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        uint64_t want = due - sent;
        if (want > 4 * BATCH && cfg->rate)
            b->behind++;
        if (want > BATCH)
            want = BATCH;
        uint64_t out = atomic_load(&b->outstanding);
        if (out + want > window) {
            want = out < window ? window - out : 0;
            if (!want) {
                struct timespec ts = {0, 50000}; /* the window is full: let acks come */
                nanosleep(&ts, NULL);
                continue;
            }
        }
        for (unsigned i = 0; i < want; i++) {
            struct hr_request r;
            uint32_t h = (uint32_t)(next_host++ % cfg->hosts);
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* The first round registers every host; then mostly refreshes. */
            if (next_host > cfg->hosts && x % 100 < cfg->status_pct) {
                busy[h] ^= 1;
                host_request(&r, h, HR_MSG_STATUS, busy[h] ? HR_STATUS_BUSY : HR_STATUS_IDLE, seq);
            } else {
                host_request(&r, h, HR_MSG_HEARTBEAT, HR_STATUS_NONE, seq);
            }
            size_t len;
            if (cfg->key.loaded) {
                struct hr_host_auth auth;
                hr_key_opt_auth(&cfg->key, r.host_id, &auth);
                len = hr_wire_encode_request_auth(&r, auth.key, auth.key_id, (uint32_t)time(NULL),
                                                  buf[i], sizeof(buf[i]));
            } else {
                len = hr_wire_encode_request(&r, buf[i], sizeof(buf[i]));
            }
            iov[i] = (struct iovec){buf[i], len};
            msg[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
            atomic_store(&b->sent_ns[seq & (RING - 1)], now_ns());
            seq++;
        }
        atomic_fetch_add(&b->outstanding, want);
        int n = sendmmsg(b->fd, msg, (unsigned)want, 0);
        if (n < 0) {
            b->send_errors++;
            n = 0;
        }
        /* Datagrams the kernel refused were never sent: forget them. */
        for (uint64_t i = (uint64_t)n; i < want; i++)
            atomic_store(&b->sent_ns[(seq - want + i) & (RING - 1)], 0);
        atomic_fetch_sub(&b->outstanding, want - (uint64_t)n);
        if ((uint64_t)n < want)
            seq -= want - (uint64_t)n;
        atomic_fetch_add(&b->sent, (uint64_t)n);
    }
    b->send_seconds = (double)(now_ns() - start) / 1e9;
    free(busy);
}

static void report(const struct bench *b)
{
    const struct bench_config *cfg = b->cfg;
    uint64_t sent = atomic_load(&b->sent), acked = atomic_load(&b->acked);
    uint64_t lost = sent > acked ? sent - acked : 0;
    double rate = b->send_seconds > 0 ? (double)acked / b->send_seconds : 0;
    double target = cfg->rate;
    bool gen_bound = cfg->rate && (double)sent < 0.95 * target * b->send_seconds;
    const char *verdict =
        gen_bound ? "the load generator could not send at the target rate: it was the bottleneck"
        : lost    ? "requests were lost: the daemon (or its socket buffer) was the bottleneck, or "
                    "its per-source limits dropped them (one bench is one source: run the daemon "
                    "with --source-rate 0 --source-hosts 0 to measure it)"
                  : "the generator kept up; every request was acked";
    if (cfg->json) {
        json_t *o = json_pack(
            "{s:I,s:I,s:f,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I},s:I,s:f,s:f,s:{s:f,s:f,s:f,s:f},"
            "s:{s:f,s:f,s:f},s:b,s:s}",
            "hosts", (json_int_t)cfg->hosts, "target_rate", (json_int_t)cfg->rate, "seconds",
            b->send_seconds, "sent", (json_int_t)sent, "acked", (json_int_t)acked, "results", "ok",
            (json_int_t)b->by_result[HR_RESULT_OK], "duplicate",
            (json_int_t)b->by_result[HR_RESULT_DUPLICATE], "unknown_host",
            (json_int_t)b->by_result[HR_RESULT_UNKNOWN_HOST], "invalid",
            (json_int_t)b->by_result[HR_RESULT_INVALID], "retry_later",
            (json_int_t)b->by_result[HR_RESULT_RETRY_LATER], "lost", (json_int_t)lost,
            "acks_per_second", rate, "ok_per_second",
            b->send_seconds > 0 ? (double)b->by_result[HR_RESULT_OK] / b->send_seconds : 0,
            "latency_ms", "p50", percentile_ms(b, 0.5), "p99", percentile_ms(b, 0.99), "p999",
            percentile_ms(b, 0.999), "max", (double)b->max_ns / 1e6, "latency_ok_ms", "p50",
            percentile_ok_ms(b, 0.5), "p99", percentile_ok_ms(b, 0.99), "max",
            (double)b->max_ok_ns / 1e6, "generator_bound", gen_bound, "verdict", verdict);
        json_dumpf(o, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(o);
        return;
    }
    printf("hosts        %u (rate %s, %.1f s)\n", cfg->hosts,
           cfg->rate ? "as given" : "as fast as the window allows", b->send_seconds);
    printf("sent         %" PRIu64 " (%.0f/s%s)\n", sent, (double)sent / b->send_seconds,
           cfg->rate ? "" : ", closed loop");
    printf("acked        %" PRIu64 ": ok %" PRIu64 ", duplicate %" PRIu64 ", unknown_host %" PRIu64
           ", invalid %" PRIu64 ", retry_later %" PRIu64 "\n",
           acked, b->by_result[HR_RESULT_OK], b->by_result[HR_RESULT_DUPLICATE],
           b->by_result[HR_RESULT_UNKNOWN_HOST], b->by_result[HR_RESULT_INVALID],
           b->by_result[HR_RESULT_RETRY_LATER]);
    printf("lost         %" PRIu64 " (%.3f%%)\n", lost,
           sent ? 100.0 * (double)lost / (double)sent : 0);
    printf("throughput   %.0f acks/s\n", rate);
    printf("latency      p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n",
           percentile_ms(b, 0.5), percentile_ms(b, 0.99), percentile_ms(b, 0.999),
           (double)b->max_ns / 1e6);
    printf("ok acks      p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", percentile_ok_ms(b, 0.5),
           percentile_ok_ms(b, 0.99), (double)b->max_ok_ns / 1e6);
    printf("verdict      %s\n", verdict);
}

int hr_cmd_bench(int argc, char **argv)
{
    struct bench_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    hr_opts_parse_only(
        options, &cfg, argc, argv, "hostreg bench [options]",
        "Load generator: simulates --hosts hosts (heartbeats, with --status-percent status\n"
        "updates) against hostregd from one socket, sender and receiver on two threads with\n"
        "sendmmsg/recvmmsg. Reports sent, acked by result, lost (never acked), throughput and\n"
        "ack latency percentiles, and says whether the generator itself was the bottleneck.\n"
        "Exit status: 0 when nothing was lost, 1 otherwise, 2 usage error.");
    struct bench b = {.cfg = &cfg};
    b.sent_ns = calloc(RING, sizeof(*b.sent_ns));
    b.fd = socket(cfg.server.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (!b.sent_ns || b.fd < 0 || connect(b.fd, (struct sockaddr *)&cfg.server, cfg.server_len)) {
        fprintf(stderr, "error: cannot set up: %s\n", strerror(errno));
        return 1;
    }
    int bufsz = 8 << 20;
    setsockopt(b.fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
    setsockopt(b.fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
    struct timeval tv = {0, 100000};
    setsockopt(b.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    /* Sequence numbers from the clock, like real hosts: newer than anything an
     * earlier run left in Redis for the same simulated hosts. */
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    b.seq_base = (uint64_t)rt.tv_sec * 1000000 + (uint64_t)rt.tv_nsec / 1000;

    pthread_t rx;
    if (pthread_create(&rx, NULL, receiver, &b) != 0) {
        fprintf(stderr, "error: cannot start the receiver thread\n");
        return 1;
    }
    run_sender(&b);
    uint64_t deadline = now_ns() + (uint64_t)cfg.drain_ms * 1000000u;
    while (atomic_load(&b.outstanding) && now_ns() < deadline)
        usleep(1000); /* the last acks are in flight; nothing to wait on but time */
    atomic_store(&b.stop, 1);
    pthread_join(rx, NULL);
    report(&b);
    close(b.fd);
    free((void *)b.sent_ns);
    return atomic_load(&b.sent) == atomic_load(&b.acked) ? 0 : 1;
}
