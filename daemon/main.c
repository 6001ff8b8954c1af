/* hostregd: the UDP registry daemon. Configuration, signals and the event
 * loop; the work is in server.c (UDP) and the library's store (Redis). */
#include "config.h"
#include "err.h"
#include "log.h"
#include "server.h"
#include "store.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct daemon_config {
    struct hr_common common; /* first: the shared setters expect it there */
    struct sockaddr_storage listen;
    socklen_t listen_len;
    uint32_t error_ack_rate;
};

static int set_listen(void *c, const char *v, char *err, size_t errlen)
{
    struct daemon_config *d = c;
    return hr_parse_hostport(v, "127.0.0.1", &d->listen, &d->listen_len, err, errlen);
}

static int set_error_ack_rate(void *c, const char *v, char *err, size_t errlen)
{
    struct daemon_config *d = c;
    if (hr_parse_u32(v, 1, 10000000, &d->error_ack_rate) != 0) {
        snprintf(err, errlen, "want 1-10000000 per second");
        return -1;
    }
    return 0;
}

static const struct hr_opt options[] = {
    {"listen", 'L', "HOST:PORT", "127.0.0.1:9099", "UDP address to receive datagrams on",
     set_listen, NULL},
    HR_COMMON_OPTS,
    /* Error acks cost the same as good ones; under a flood of bad or
     * unanswerable requests they are the first thing to shed. */
    {"error-ack-rate", 0, "N", "1000", "error acks (invalid, retry-later, ...) per second at most",
     set_error_ack_rate, NULL},
    {0},
};

struct app {
    struct event_base *base;
    struct hr_store *store;
    struct hr_server *server;
    struct event *drain_timer;
    int stopping;
};

static void log_stats(struct app *app)
{
    const struct hr_server_stats *s = hr_server_get_stats(app->server);
    const struct hr_store_stats *r = hr_store_get_stats(app->store);
    char drops[512] = "";
    size_t o = 0;
    for (int i = 1; i < HR_SERVER_DROP_REASONS; i++)
        if (s->dropped[i] && o < sizeof(drops))
            o += (size_t)snprintf(drops + o, sizeof(drops) - o, " dropped_%s=%llu", hr_errname(i),
                                  (unsigned long long)s->dropped[i]);
    HR_LOG(HR_LOG_INFO,
           "stats: received=%llu bytes_in=%llu bytes_out=%llu invalid=%llu acked_ok=%llu "
           "acked_duplicate=%llu acked_unknown_host=%llu acked_invalid=%llu "
           "acked_retry_later=%llu ack_send_failed=%llu ack_suppressed=%llu "
           "error_acks_limited=%llu%s redis_submitted=%llu redis_errors=%llu "
           "redis_timeouts=%llu redis_connects=%llu redis_inflight=%zu redis_ready=%d",
           (unsigned long long)s->received, (unsigned long long)s->bytes_in,
           (unsigned long long)s->bytes_out, (unsigned long long)s->invalid,
           (unsigned long long)s->acked[HR_RESULT_OK],
           (unsigned long long)s->acked[HR_RESULT_DUPLICATE],
           (unsigned long long)s->acked[HR_RESULT_UNKNOWN_HOST],
           (unsigned long long)s->acked[HR_RESULT_INVALID],
           (unsigned long long)s->acked[HR_RESULT_RETRY_LATER],
           (unsigned long long)s->ack_send_failed, (unsigned long long)s->ack_suppressed,
           (unsigned long long)s->error_acks_limited, drops, (unsigned long long)r->submitted,
           (unsigned long long)r->redis_errors, (unsigned long long)r->timeouts,
           (unsigned long long)r->reconnects, hr_store_inflight(app->store),
           hr_store_ready(app->store));
}

static void on_drained(void *arg)
{
    struct app *app = arg;
    event_base_loopexit(app->base, NULL);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct app *app = arg;
    HR_LOG(HR_LOG_WARN, "shutdown: %zu requests still unanswered by Redis, giving up on them",
           hr_store_inflight(app->store));
    event_base_loopexit(app->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct app *app = arg;
    if (sig == SIGUSR1) {
        log_stats(app);
        return;
    }
    if (app->stopping++) {
        HR_LOG(HR_LOG_WARN, "second signal: exiting now");
        event_base_loopexit(app->base, NULL);
        return;
    }
    HR_LOG(HR_LOG_INFO, "signal %d: no longer reading, finishing %zu requests in flight", (int)sig,
           hr_store_inflight(app->store));
    /* Bounded: after twice the Redis timeout, the store has failed them all. */
    struct timeval tv = {2, 0};
    evtimer_add(app->drain_timer, &tv);
    hr_server_drain(app->server, on_drained, app);
}

int main(int argc, char **argv)
{
    struct daemon_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    int idx = hr_opts_parse(options, &cfg, argc, argv, "hostregd [options]",
                            "The hostreg UDP daemon: hosts register, refresh, change status and "
                            "leave with protobuf datagrams;\nevery request is stored in Redis "
                            "before it is acknowledged. SIGUSR1 logs the counters.");
    char err[256];
    if (idx != argc) {
        fprintf(stderr, "error: unexpected argument '%s'\n", argv[idx]);
        return 2;
    }
    if (hr_common_finish(&cfg.common, err, sizeof(err)) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    struct app app = {0};
    int rc = 1;
    struct event *sigs[3] = {0};
    app.base = event_base_new();
    if (!app.base) {
        fprintf(stderr, "error: cannot create the event loop\n");
        return 1;
    }
    app.store = hr_store_new(app.base, &cfg.common.store, err, sizeof(err));
    if (!app.store) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    struct hr_server_config scfg = {
        .listen = cfg.listen,
        .listen_len = cfg.listen_len,
        .ttl_s = cfg.common.ttl_s,
        .interval_s = cfg.common.interval_s,
        .error_ack_rate = cfg.error_ack_rate,
        .rules = &cfg.common.rules,
    };
    app.server = hr_server_new(app.base, app.store, &scfg, err, sizeof(err));
    if (!app.server) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    app.drain_timer = evtimer_new(app.base, on_drain_timeout, &app);
    int signums[3] = {SIGTERM, SIGINT, SIGUSR1};
    for (int i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(app.base, signums[i], on_signal, &app);
        if (!sigs[i] || event_add(sigs[i], NULL) != 0) {
            fprintf(stderr, "error: cannot install signal handlers\n");
            goto out;
        }
    }
    struct sockaddr_storage bound;
    socklen_t blen;
    char addr[HR_ADDRSTRLEN];
    hr_server_local_addr(app.server, &bound, &blen);
    HR_LOG(HR_LOG_INFO, "hostregd listening on udp %s, ttl %us, interval %us, default region %s",
           hr_addr_str(addr, sizeof(addr), (struct sockaddr *)&bound), cfg.common.ttl_s,
           cfg.common.interval_s, cfg.common.default_region);
    event_base_dispatch(app.base);
    log_stats(&app);
    HR_LOG(HR_LOG_INFO, "hostregd stopped");
    rc = 0;
out:
    for (int i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (app.drain_timer)
        event_free(app.drain_timer);
    /* Store first: its last callbacks queue acks on the server, which the
     * server then flushes as it goes. */
    hr_store_free(app.store);
    hr_server_free(app.server);
    event_base_free(app.base);
    return rc;
}
