/* hostregd: the UDP registry daemon. Configuration, signals and the event
 * loop; the work is in server.c (UDP) and the library's store (Redis). */
#include "config.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "parse.h"
#include "sdnotify.h"
#include "server.h"
#include "store.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct daemon_config {
    struct hr_common common; /* first: the shared setters expect it there */
    struct sockaddr_storage listen;
    socklen_t listen_len;
    uint32_t error_ack_rate;
    uint32_t workers;
    int reuseport; /* share the address with other processes on purpose */
    uint32_t source_rate, source_burst, error_gap_ms, source_hosts;
    struct hr_keyring keys;
    char metrics_host[64]; /* --metrics-listen; "" for none */
    uint16_t metrics_port;
};

static int set_key_file(void *c, const char *v, char *err, size_t errlen)
{
    return hr_keys_load_owned(&((struct daemon_config *)c)->keys, v, err, errlen) == HR_OK ? 0 : -1;
}

static int set_listen(void *c, const char *v, char *err, size_t errlen)
{
    struct daemon_config *d = c;
    return hr_parse_hostport(v, "127.0.0.1", &d->listen, &d->listen_len, err, errlen);
}

static int set_metrics_listen(void *c, const char *v, char *err, size_t errlen)
{
    struct daemon_config *d = c;
    const char *colon = strrchr(v, ':');
    uint32_t port;
    if (!v[0]) {
        d->metrics_host[0] = '\0';
        return 0;
    }
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof(d->metrics_host) ||
        hr_parse_u32(colon + 1, 1, 65535, &port) != 0) {
        snprintf(err, errlen, "want HOST:PORT");
        return -1;
    }
    size_t hlen = (size_t)(colon - v);
    if (v[0] == '[' && hlen >= 2 && v[hlen - 1] == ']') { /* [::1]:9100 */
        v++;
        hlen -= 2;
    }
    memcpy(d->metrics_host, v, hlen);
    d->metrics_host[hlen] = '\0';
    d->metrics_port = (uint16_t)port;
    return 0;
}

HR_OPT_U32(set_error_ack_rate, struct daemon_config, error_ack_rate, 1u, 10000000u,
           "error acks per second, ")
HR_OPT_U32(set_source_rate, struct daemon_config, source_rate, 0u, 10000000u,
           "datagrams per second, ")
HR_OPT_U32(set_source_burst, struct daemon_config, source_burst, 1u, 10000000u, "datagrams, ")
HR_OPT_U32(set_error_gap, struct daemon_config, error_gap_ms, 0u, 600000u, "milliseconds, ")
HR_OPT_U32(set_source_hosts, struct daemon_config, source_hosts, 0u, 100000000u, "hosts, ")
HR_OPT_U32(set_workers, struct daemon_config, workers, 1u, 64u, "")
HR_OPT_FLAG(set_reuseport, struct daemon_config, reuseport)

static const struct hr_opt options[] = {
    {"listen", 'L', "HOST:PORT", "127.0.0.1:9099", "UDP address to receive datagrams on",
     set_listen, NULL},
    HR_COMMON_OPTS,
    /* Error acks cost the same as good ones; under a flood of bad or
     * unanswerable requests they are the first thing to shed. */
    {"error-ack-rate", 0, "N", "1000", "error acks (invalid, retry-later, ...) per second at most",
     set_error_ack_rate, NULL},
    /* One loop saturates a core; more only pay with cores (and Redis) to spare. */
    /* A host sends one datagram every 20 s; even thousands of hosts behind one
     * NAT address stay far below 1,000/s, while one flooding address cannot
     * take more than its share. */
    {"source-rate", 0, "N", "1000",
     "datagrams per second from one source (an IPv4 address or IPv6 /64); 0: unlimited",
     set_source_rate, NULL},
    {"source-burst", 0, "N", "2000", "datagrams a source may send at once", set_source_burst, NULL},
    /* Home machines have a host or two per address, a NAT of a provider or a
     * rack of game servers hundreds; one address inventing hostIds stops here,
     * long before --max-hosts. */
    {"source-hosts", 0, "N", "1000",
     "hosts one source (IPv4 address or IPv6 /64) may speak for; beyond, it refreshes them "
     "but adds none (per worker; 0: no cap)",
     set_source_hosts, NULL},
    {"error-ack-gap", 0, "MS", "1000", "at most one error ack per host this often (0: no limit)",
     set_error_gap, NULL},
    {"key-file", 'k', "FILE", "",
     "datagram keys (mode 600): only frames signed with one of them are accepted; "
     "none: open",
     set_key_file, NULL},
    {"workers", 'w', "N", "1",
     "event loops, each with its own SO_REUSEPORT socket and Redis connection", set_workers, NULL},
    {"metrics-listen", 0, "HOST:PORT", "",
     "serve GET /metrics (Prometheus), /healthz and /readyz over HTTP there; none by default",
     set_metrics_listen, NULL},
    {"reuseport", 0, NULL, NULL,
     "share the address with other processes bound with it (without: an address in use is an "
     "error)",
     set_reuseport, NULL},
    {0},
};

/* One event loop with its own socket (SO_REUSEPORT), store and Redis
 * connection, on a thread of its own. */
struct app;

struct worker {
    struct app *app;
    int id;
    struct event_base *base;
    struct hr_store *store;
    struct hr_server *server;
    struct event *drain_timer;
    struct event *ready_timer; /* until Redis first answers: then redis_ready, and gone */
    atomic_int redis_ready;
    pthread_t thread;
    int started;
};

/* One worker's counters, copied on its own thread for the metrics server. */
struct snap {
    struct hr_server_stats s;
    struct hr_store_stats r;
    size_t inflight;
    int ready; /* connected to Redis, and the last write was not refused */
};

/* GET /metrics and /readyz waiting for a round of snapshots. */
#define METRICS_WAITING_MAX 64

struct app {
    struct event_base *base; /* the main thread's: signals, and the metrics server */
    struct worker *workers;
    uint32_t nworkers;
    int stopping;
    /* --metrics-listen: a round asks every worker for its counters
     * (event_base_once on its loop); the last to answer wakes the main loop
     * (snap_done), which answers every request that waited for the round. */
    struct evhttp *http;
    struct event *snap_done;
    pthread_mutex_t mu;
    uint32_t snap_pending; /* workers yet to answer this round; 0: none under way */
    struct snap *snaps;
    struct evhttp_request *waiting[METRICS_WAITING_MAX];
    size_t nwaiting;
    struct event *notify_timer; /* until every worker's Redis answered: then READY=1 */
};

static void log_stats(const struct worker *w)
{
    const struct hr_server_stats *s = hr_server_get_stats(w->server);
    struct hr_store_stats st, *r = &st;
    hr_store_get_stats(w->store, &st);
    char drops[512] = "";
    size_t o = 0;
    for (int i = 1; i < HR_SERVER_DROP_REASONS; i++)
        if (s->dropped[i] && o < sizeof(drops))
            o += (size_t)snprintf(drops + o, sizeof(drops) - o, " dropped_%s=%llu", hr_errname(i),
                                  (unsigned long long)s->dropped[i]);
    HR_LOG(HR_LOG_INFO,
           "stats worker=%d: received=%llu bytes_in=%llu bytes_out=%llu invalid=%llu "
           "acked_ok=%llu acked_duplicate=%llu acked_unknown_host=%llu acked_invalid=%llu "
           "acked_retry_later=%llu ack_send_failed=%llu ack_suppressed=%llu "
           "error_acks_limited=%llu auth_stale=%llu rate_limited=%llu source_hosts_over=%llu "
           "source_port_zero=%llu "
           "refused_full=%llu refused_source_full=%llu refused_behind=%llu refused_late=%llu%s "
           "redis_calls=%llu "
           "redis_errors=%llu "
           "redis_timeouts=%llu redis_connects=%llu redis_inflight=%zu redis_ready=%d "
           "redis_evicting=%d redis_moved=%llu redis_ask=%llu redis_tryagain=%llu",
           w->id, (unsigned long long)s->received, (unsigned long long)s->bytes_in,
           (unsigned long long)s->bytes_out, (unsigned long long)s->invalid,
           (unsigned long long)s->acked[HR_RESULT_OK],
           (unsigned long long)s->acked[HR_RESULT_DUPLICATE],
           (unsigned long long)s->acked[HR_RESULT_UNKNOWN_HOST],
           (unsigned long long)s->acked[HR_RESULT_INVALID],
           (unsigned long long)s->acked[HR_RESULT_RETRY_LATER],
           (unsigned long long)s->ack_send_failed, (unsigned long long)s->ack_suppressed,
           (unsigned long long)s->error_acks_limited, (unsigned long long)s->auth_stale,
           (unsigned long long)s->rate_limited, (unsigned long long)s->source_hosts_over,
           (unsigned long long)s->source_port_zero, (unsigned long long)r->full,
           (unsigned long long)r->source_full, (unsigned long long)r->refused_behind,
           (unsigned long long)s->refused_late, drops, (unsigned long long)r->submitted,
           (unsigned long long)r->redis_errors, (unsigned long long)r->timeouts,
           (unsigned long long)r->reconnects, hr_store_inflight(w->store),
           /* Ready: connected, and the last write was not refused. */
           hr_store_ready(w->store) && !hr_store_writes_refused(w->store),
           hr_store_evicting(w->store), (unsigned long long)r->moved, (unsigned long long)r->ask,
           (unsigned long long)r->tryagain);
}

/* These run on the worker's own thread (event_base_once from the main one),
 * so the worker's state is only ever touched by its thread. */
static void on_worker_stats(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    log_stats(arg);
}

static void on_drained(void *arg)
{
    struct worker *w = arg;
    event_base_loopexit(w->base, NULL);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    HR_LOG(HR_LOG_WARN, "shutdown: %zu requests still unanswered by Redis, giving up on them",
           hr_store_inflight(w->store));
    event_base_loopexit(w->base, NULL);
}

static void on_worker_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    /* Bounded: what Redis has not answered in 2 s is given up on. */
    struct timeval tv = {2, 0};
    evtimer_add(w->drain_timer, &tv);
    hr_server_drain(w->server, on_drained, w);
}

/* Ends a worker's loop from inside it: a loopbreak from outside before the
 * loop has started would be forgotten when it starts. */
static void on_worker_break(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    event_base_loopbreak(w->base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct app *app = arg;
    if (sig == SIGUSR1) {
        for (uint32_t i = 0; i < app->nworkers; i++)
            event_base_once(app->workers[i].base, -1, EV_TIMEOUT, on_worker_stats, &app->workers[i],
                            NULL);
        return;
    }
    if (sig == SIGHUP || sig == SIGUSR2) {
        /* Sent by habit (log rotation, reload): never fatal. */
        HR_LOG(HR_LOG_INFO, "signal %d: nothing to reload in this build; still running", (int)sig);
        return;
    }
    if (app->stopping++)
        return;
    hr_sd_notify("STOPPING=1");
    HR_LOG(HR_LOG_INFO, "signal %d: no longer reading, finishing the requests in flight", (int)sig);
    for (uint32_t i = 0; i < app->nworkers; i++)
        event_base_once(app->workers[i].base, -1, EV_TIMEOUT, on_worker_stop, &app->workers[i],
                        NULL);
}

/* On the worker's loop: whether its store is connected (the scripts
 * loaded, the layout read), once. */
static void on_ready_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    if (!hr_store_ready(w->store))
        return;
    atomic_store(&w->redis_ready, 1);
    event_del(w->ready_timer);
}

/* On the main loop: READY=1 to systemd (Type=notify) once every worker's
 * socket is bound (before this timer starts) and its Redis answered. */
static void on_notify_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct app *app = arg;
    for (uint32_t i = 0; i < app->nworkers; i++)
        if (!atomic_load(&app->workers[i].redis_ready))
            return;
    event_del(app->notify_timer);
    char state[128];
    snprintf(state, sizeof(state), "READY=1\nSTATUS=serving, %u worker%s", app->nworkers,
             app->nworkers == 1 ? "" : "s");
    hr_sd_notify(state);
    HR_LOG(HR_LOG_INFO, "ready: every worker's Redis answered");
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static int worker_start(struct worker *w, const struct daemon_config *cfg, char *err, size_t errlen)
{
    w->base = event_base_new();
    if (!w->base) {
        snprintf(err, errlen, "cannot create an event loop");
        return -1;
    }
    /* The first worker sweeps (storage layout 2): what expired in buckets
     * no heartbeat touches any more is removed there, and lapsed claims
     * return to idle, also when no gateway runs. Every 10 s: readers never
     * see an expired host, so this only bounds memory. */
    struct hr_store_config sc = cfg->common.store;
    sc.sweep_ms = w->id == 0 ? 10000 : 0;
    w->store = hr_store_new(w->base, &sc, err, errlen);
    if (!w->store)
        return -1;
    struct hr_server_config scfg = {
        .listen = cfg->listen,
        .listen_len = cfg->listen_len,
        .ttl_s = cfg->common.ttl_s,
        .interval_s = cfg->common.interval_s,
        .error_ack_rate = cfg->error_ack_rate,
        .rules = &cfg->common.rules,
        .reuseport = cfg->workers > 1 || cfg->reuseport,
        .keys = cfg->keys.n ? &cfg->keys : NULL,
        .source_rate = cfg->source_rate,
        .source_burst = cfg->source_burst,
        .error_gap_ms = cfg->error_gap_ms,
        .source_hosts = cfg->source_hosts,
        .queue_budget_ms = cfg->common.store.budget_ms,
    };
    w->server = hr_server_new(w->base, w->store, &scfg, err, errlen);
    if (!w->server)
        return -1;
    w->drain_timer = evtimer_new(w->base, on_drain_timeout, w);
    w->ready_timer = event_new(w->base, -1, EV_PERSIST, on_ready_check, w);
    struct timeval every = {0, 20000};
    if (!w->drain_timer || !w->ready_timer || event_add(w->ready_timer, &every) != 0 ||
        pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        snprintf(err, errlen, "cannot start the worker thread");
        return -1;
    }
    w->started = 1;
    return 0;
}

/* True (with the reason in err) when another socket holds the address. The
 * workers' sockets share it among themselves with SO_REUSEPORT, which would
 * as silently let a second hostregd (or anything else bound with it) share
 * it and take a part of the hosts' datagrams: a socket bound without it
 * first tells. */
static bool address_taken(const struct daemon_config *cfg, char *err, size_t errlen)
{
    int fd = socket(cfg->listen.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false; /* the workers' own bind says what is wrong */
    bool taken = bind(fd, (const struct sockaddr *)&cfg->listen, cfg->listen_len) != 0 &&
                 errno == EADDRINUSE;
    close(fd);
    if (taken) {
        char addr[HR_ADDRSTRLEN];
        snprintf(err, errlen,
                 "bind %s: address in use (another hostregd? --reuseport shares it on purpose)",
                 hr_addr_str(addr, sizeof(addr), (const struct sockaddr *)&cfg->listen));
    }
    return taken;
}

static void worker_free(struct worker *w)
{
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->ready_timer)
        event_free(w->ready_timer);
    /* Store first: its last callbacks queue acks on the server, which the
     * server then flushes as it goes. */
    hr_store_free(w->store);
    hr_server_free(w->server);
    if (w->base)
        event_base_free(w->base);
}

/* --- --metrics-listen --- */

static void on_worker_snap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    struct app *app = w->app;
    struct snap sn;
    sn.s = *hr_server_get_stats(w->server);
    hr_store_get_stats(w->store, &sn.r);
    sn.inflight = hr_store_inflight(w->store);
    sn.ready = hr_store_ready(w->store) && !hr_store_writes_refused(w->store);
    pthread_mutex_lock(&app->mu);
    app->snaps[w->id] = sn;
    if (--app->snap_pending == 0)
        event_active(app->snap_done, EV_TIMEOUT, 0);
    pthread_mutex_unlock(&app->mu);
}

static void metric_sum(struct evbuffer *b, const char *name, const char *type, const char *help,
                       const char *labels, uint64_t v)
{
    if (help)
        hr_metrics_family(b, name, type, help);
    hr_metrics_sample(b, name, labels, v);
}

/* The Prometheus text of the counters SIGUSR1 logs, summed over the workers. */
static void render_metrics(const struct snap *sn, uint32_t n, struct evbuffer *b)
{
    struct snap t;
    memset(&t, 0, sizeof(t));
    int ready = 1;
    for (uint32_t i = 0; i < n; i++) {
        const struct snap *x = &sn[i];
        t.s.received += x->s.received;
        t.s.bytes_in += x->s.bytes_in;
        t.s.bytes_out += x->s.bytes_out;
        t.s.invalid += x->s.invalid;
        for (int k = 0; k < 8; k++)
            t.s.acked[k] += x->s.acked[k];
        for (int k = 0; k < HR_SERVER_DROP_REASONS; k++)
            t.s.dropped[k] += x->s.dropped[k];
        t.s.ack_send_failed += x->s.ack_send_failed;
        t.s.ack_suppressed += x->s.ack_suppressed;
        t.s.error_acks_limited += x->s.error_acks_limited;
        t.s.rate_limited += x->s.rate_limited;
        t.s.source_hosts_over += x->s.source_hosts_over;
        t.s.refused_late += x->s.refused_late;
        t.r.full += x->r.full;
        t.r.source_full += x->r.source_full;
        t.r.refused_behind += x->r.refused_behind;
        t.r.submitted += x->r.submitted;
        t.r.redis_errors += x->r.redis_errors;
        t.r.timeouts += x->r.timeouts;
        t.r.reconnects += x->r.reconnects;
        hr_histogram_add(&t.r.call_seconds, &x->r.call_seconds);
        t.inflight += x->inflight;
        ready &= x->ready;
    }
    metric_sum(b, "hostreg_udp_received_total", "counter", "Datagrams received.", NULL,
               t.s.received);
    metric_sum(b, "hostreg_udp_received_bytes_total", "counter", "Bytes received.", NULL,
               t.s.bytes_in);
    metric_sum(b, "hostreg_udp_sent_bytes_total", "counter", "Bytes of acks sent.", NULL,
               t.s.bytes_out);
    hr_metrics_family(b, "hostreg_udp_acks_total", "counter", "Acks sent, by result.");
    for (int k = HR_RESULT_OK; k <= HR_RESULT_RETRY_LATER; k++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "result=\"%s\"", hr_result_name((enum hr_result)k));
        hr_metrics_sample(b, "hostreg_udp_acks_total", labels, t.s.acked[k]);
    }
    hr_metrics_family(b, "hostreg_udp_dropped_total", "counter",
                      "Datagrams dropped unanswered as unreadable frames, by reason.");
    for (int k = 1; k < HR_SERVER_DROP_REASONS; k++)
        if (t.s.dropped[k]) {
            char labels[64];
            snprintf(labels, sizeof(labels), "reason=\"%s\"", hr_errname(k));
            hr_metrics_sample(b, "hostreg_udp_dropped_total", labels, t.s.dropped[k]);
        }
    metric_sum(b, "hostreg_udp_rate_limited_total", "counter",
               "Datagrams dropped unread: their source was over --source-rate.", NULL,
               t.s.rate_limited);
    metric_sum(b, "hostreg_udp_error_acks_limited_total", "counter",
               "Error acks not sent: paced per host and in all.", NULL, t.s.error_acks_limited);
    metric_sum(b, "hostreg_udp_ack_send_failures_total", "counter",
               "Acks the kernel refused to send.", NULL, t.s.ack_send_failed);
    hr_metrics_family(b, "hostreg_udp_refused_total", "counter",
                      "Requests answered retry_later without being stored, by reason.");
    hr_metrics_sample(b, "hostreg_udp_refused_total", "reason=\"full\"", t.r.full);
    hr_metrics_sample(b, "hostreg_udp_refused_total", "reason=\"source_full\"", t.r.source_full);
    hr_metrics_sample(b, "hostreg_udp_refused_total", "reason=\"redis_behind\"",
                      t.r.refused_behind);
    hr_metrics_sample(b, "hostreg_udp_refused_total", "reason=\"queue_late\"", t.s.refused_late);
    metric_sum(b, "hostreg_redis_calls_total", "counter", "Script calls sent to Redis.", NULL,
               t.r.submitted);
    metric_sum(b, "hostreg_redis_errors_total", "counter", "Redis error replies.", NULL,
               t.r.redis_errors);
    metric_sum(b, "hostreg_redis_timeouts_total", "counter",
               "Redis connections reset after no reply of any kind for --redis-timeout.", NULL,
               t.r.timeouts);
    metric_sum(b, "hostreg_redis_connects_total", "counter", "Redis connection attempts.", NULL,
               t.r.reconnects);
    metric_sum(b, "hostreg_redis_inflight", "gauge", "Requests waiting for Redis.", NULL,
               t.inflight);
    hr_metrics_redis_latency(b, &t.r.call_seconds);
    metric_sum(b, "hostreg_redis_up", "gauge",
               "Whether every worker is connected to Redis and its last write was not refused.",
               NULL, (uint64_t)ready);
    hr_metrics_build_info(b);
}

static void reply_text(struct evhttp_request *req, int code, const char *type, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (b)
        evbuffer_add(b, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_send_reply(req, code,
                      code == 200   ? "OK"
                      : code == 503 ? "Service Unavailable"
                                    : "Error",
                      b);
    if (b)
        evbuffer_free(b);
}

static void on_snap_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct app *app = arg;
    struct snap *copy = calloc(app->nworkers, sizeof(*copy));
    pthread_mutex_lock(&app->mu);
    if (copy)
        memcpy(copy, app->snaps, app->nworkers * sizeof(*copy));
    size_t n = app->nwaiting;
    struct evhttp_request *reqs[METRICS_WAITING_MAX];
    memcpy(reqs, app->waiting, n * sizeof(reqs[0]));
    app->nwaiting = 0;
    pthread_mutex_unlock(&app->mu);
    int ready = 1;
    for (uint32_t i = 0; copy && i < app->nworkers; i++)
        ready &= copy[i].ready;
    for (size_t i = 0; i < n; i++) {
        const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(reqs[i]));
        if (!copy) {
            reply_text(reqs[i], 500, "application/json",
                       "{\"success\":false,\"error\":\"out of memory\"}");
        } else if (strcmp(path, "/readyz") == 0) {
            reply_text(reqs[i], ready ? 200 : 503, "application/json",
                       ready ? "{\"success\":true,\"ready\":true}"
                             : "{\"success\":false,\"error\":\"redis is not connected, or refuses "
                               "writes\"}");
        } else {
            struct evbuffer *b = evbuffer_new();
            if (b)
                render_metrics(copy, app->nworkers, b);
            evhttp_add_header(evhttp_request_get_output_headers(reqs[i]), "Content-Type",
                              "text/plain; version=0.0.4");
            evhttp_send_reply(reqs[i], b ? 200 : 500, b ? "OK" : "Error", b);
            if (b)
                evbuffer_free(b);
        }
    }
    free(copy);
}

static void on_metrics_http(struct evhttp_request *req, void *arg)
{
    struct app *app = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || !path) {
        reply_text(req, 405, "application/json", "{\"success\":false,\"error\":\"GET only\"}");
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        reply_text(req, 200, "application/json", "{\"success\":true,\"status\":\"alive\"}");
        return;
    }
    if (strcmp(path, "/metrics") != 0 && strcmp(path, "/readyz") != 0) {
        reply_text(req, 404, "application/json",
                   "{\"success\":false,\"error\":\"unknown path (/metrics, /healthz, /readyz)\"}");
        return;
    }
    pthread_mutex_lock(&app->mu);
    bool start = app->snap_pending == 0, full = app->nwaiting == METRICS_WAITING_MAX;
    if (!full) {
        app->waiting[app->nwaiting++] = req;
        if (start)
            app->snap_pending = app->nworkers;
    }
    pthread_mutex_unlock(&app->mu);
    if (full) {
        reply_text(req, 503, "application/json", "{\"success\":false,\"error\":\"busy\"}");
        return;
    }
    if (!start)
        return;
    uint32_t failed = 0;
    for (uint32_t i = 0; i < app->nworkers; i++)
        failed += event_base_once(app->workers[i].base, -1, EV_TIMEOUT, on_worker_snap,
                                  &app->workers[i], NULL) != 0;
    if (failed) { /* out of memory: those workers' counters stay as last seen */
        pthread_mutex_lock(&app->mu);
        app->snap_pending -= failed;
        if (app->snap_pending == 0)
            event_active(app->snap_done, EV_TIMEOUT, 0);
        pthread_mutex_unlock(&app->mu);
    }
}

static int metrics_start(struct app *app, const struct daemon_config *cfg, char *err, size_t errlen)
{
    app->snaps = calloc(app->nworkers, sizeof(*app->snaps));
    app->http = evhttp_new(app->base);
    app->snap_done = event_new(app->base, -1, 0, on_snap_done, app);
    if (!app->snaps || !app->http || !app->snap_done) {
        snprintf(err, errlen, "metrics server: out of memory");
        return -1;
    }
    evhttp_set_timeout(app->http, 10);
    evhttp_set_gencb(app->http, on_metrics_http, app);
    if (evhttp_bind_socket(app->http, cfg->metrics_host, cfg->metrics_port) != 0) {
        snprintf(err, errlen, "--metrics-listen %s:%u: cannot bind", cfg->metrics_host,
                 cfg->metrics_port);
        return -1;
    }
    HR_LOG(HR_LOG_INFO, "metrics on http://%s:%u/metrics", cfg->metrics_host, cfg->metrics_port);
    return 0;
}

int main(int argc, char **argv)
{
    struct daemon_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    hr_opts_parse_only(options, &cfg, argc, argv, "hostregd [options]",
                       "The hostreg UDP daemon: hosts register, refresh, change status and "
                       "leave with protobuf datagrams;\nevery request is stored in Redis "
                       "before it is acknowledged. SIGUSR1 logs the counters.");
    char err[256];
    if (hr_common_finish(&cfg.common, err, sizeof(err)) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* The main thread schedules work on the workers' loops. */
    evthread_use_pthreads();

    struct app app = {0};
    int rc = 1;
    struct event *sigs[5] = {0};
    app.base = event_base_new();
    app.workers = calloc(cfg.workers, sizeof(*app.workers));
    if (!app.base || !app.workers) {
        fprintf(stderr, "error: cannot create the event loop\n");
        goto out;
    }
    int signums[5] = {SIGTERM, SIGINT, SIGUSR1, SIGHUP, SIGUSR2};
    for (int i = 0; i < 5; i++) {
        sigs[i] = evsignal_new(app.base, signums[i], on_signal, &app);
        if (!sigs[i] || event_add(sigs[i], NULL) != 0) {
            fprintf(stderr, "error: cannot install signal handlers\n");
            goto out;
        }
    }
    if (!cfg.reuseport && address_taken(&cfg, err, sizeof(err))) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    pthread_mutex_init(&app.mu, NULL);
    for (app.nworkers = 0; app.nworkers < cfg.workers; app.nworkers++) {
        struct worker *w = &app.workers[app.nworkers];
        w->app = &app;
        w->id = (int)app.nworkers;
        if (worker_start(w, &cfg, err, sizeof(err)) != 0) {
            fprintf(stderr, "error: %s\n", err);
            app.nworkers++;
            goto out;
        }
    }
    if (cfg.metrics_host[0] && metrics_start(&app, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    if (!cfg.keys.n)
        HR_LOG(HR_LOG_WARN, "no --key-file: datagrams are not authenticated, anyone can speak "
                            "for any host");
    else
        HR_LOG(HR_LOG_INFO, "authenticated datagrams only: %zu key%s loaded", cfg.keys.n,
               cfg.keys.n == 1 ? "" : "s");
    struct sockaddr_storage bound;
    socklen_t blen;
    char addr[HR_ADDRSTRLEN];
    hr_server_local_addr(app.workers[0].server, &bound, &blen);
    HR_LOG(HR_LOG_INFO,
           "hostregd listening on udp %s, %u worker%s, ttl %us, interval %us, default region %s",
           hr_addr_str(addr, sizeof(addr), (struct sockaddr *)&bound), cfg.workers,
           cfg.workers > 1 ? "s" : "", cfg.common.ttl_s, cfg.common.interval_s,
           cfg.common.default_region);
    struct timeval every = {0, 20000};
    if (!(app.notify_timer = event_new(app.base, -1, EV_PERSIST, on_notify_check, &app)) ||
        event_add(app.notify_timer, &every) != 0) {
        fprintf(stderr, "error: cannot create timers\n");
        goto out;
    }
    /* The main thread only waits for signals; the workers drain and stop
     * on the first SIGTERM or SIGINT (each within 2 s). */
    while (!app.stopping)
        event_base_loop(app.base, EVLOOP_ONCE);
    for (uint32_t i = 0; i < app.nworkers; i++) {
        pthread_join(app.workers[i].thread, NULL);
        app.workers[i].started = 0;
        log_stats(&app.workers[i]);
    }
    HR_LOG(HR_LOG_INFO, "hostregd stopped");
    rc = 0;
out:
    for (uint32_t i = 0; i < app.nworkers; i++) {
        struct worker *w = &app.workers[i];
        if (w->started) { /* a later worker failed to start: stop this one */
            event_base_once(w->base, -1, EV_TIMEOUT, on_worker_break, w, NULL);
            pthread_join(w->thread, NULL);
        }
        worker_free(w);
    }
    for (int i = 0; i < 5; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (app.http)
        evhttp_free(app.http);
    if (app.snap_done)
        event_free(app.snap_done);
    if (app.notify_timer)
        event_free(app.notify_timer);
    free(app.snaps);
    free(app.workers);
    if (app.base)
        event_base_free(app.base);
    return rc;
}
