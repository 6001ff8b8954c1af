/* hostreg-gateway: the HTTP/JSON front end. Configuration, signals and the
 * event loop; the endpoints are in gateway.c, the rules and the Redis work in
 * libhostreg, shared with hostregd. */
#include "config.h"
#include "err.h"
#include "gateway.h"
#include "log.h"
#include "sdnotify.h"
#include "store.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_listen(void *c, const char *v, char *err, size_t errlen)
{
    struct hr_gateway_config *g = c;
    const char *colon = strrchr(v, ':');
    uint32_t port;
    if (!colon || hr_parse_u32(colon + 1, 0, 65535, &port) != 0) {
        snprintf(err, errlen, "want HOST:PORT");
        return -1;
    }
    size_t hlen = (size_t)(colon - v);
    if (v[0] == '[' && hlen >= 2 && v[hlen - 1] == ']') { /* [::1]:8080 */
        v++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(g->listen_host)) {
        snprintf(err, errlen, "want HOST:PORT");
        return -1;
    }
    memcpy(g->listen_host, v, hlen);
    g->listen_host[hlen] = '\0';
    g->listen_port = (uint16_t)port;
    return 0;
}

/* The original's PORT: every interface, that port. */
static int set_port_only(void *c, const char *v, char *err, size_t errlen)
{
    struct hr_gateway_config *g = c;
    uint32_t port;
    if (hr_parse_u32(v, 1, 65535, &port) != 0) {
        snprintf(err, errlen, "want a port number, 1-65535");
        return -1;
    }
    snprintf(g->listen_host, sizeof(g->listen_host), "0.0.0.0");
    g->listen_port = (uint16_t)port;
    return 0;
}

/* --ice-servers: the JSON itself, or @FILE holding it. */
static int set_ice_servers(void *c, const char *v, char *err, size_t errlen)
{
    struct hr_gateway_config *g = c;
    char *text = NULL;
    if (v[0] == '@') {
        FILE *f = fopen(v + 1, "r");
        size_t cap = 0, n = 0;
        if (!f) {
            snprintf(err, errlen, "cannot read %s: %s", v + 1, strerror(errno));
            return -1;
        }
        for (;;) {
            if (n + 4096 + 1 > cap) {
                char *t = realloc(text, cap = 2 * cap + 8192);
                if (!t)
                    break;
                text = t;
            }
            size_t got = fread(text + n, 1, cap - n - 1, f);
            n += got;
            if (got == 0 || n > 1 << 20)
                break;
        }
        fclose(f);
        if (!text || n > 1 << 20) {
            free(text);
            snprintf(err, errlen, "%s: unreadable or over 1 MiB", v + 1);
            return -1;
        }
        text[n] = '\0';
    }
    json_t *a;
    int rc = hr_ice_parse_static(text ? text : v, &a, err, errlen);
    free(text);
    if (rc != 0)
        return -1;
    json_decref(g->ice.extra);
    g->ice.extra = json_array_size(a) ? a : NULL;
    if (!g->ice.extra)
        json_decref(a);
    return 0;
}

static int set_access_log(void *c, const char *v, char *err, size_t errlen)
{
    struct hr_gateway_config *g = c;
    static const char *const modes[] = {"off", "errors", "all"};
    for (int i = 0; i < 3; i++)
        if (strcmp(v, modes[i]) == 0) {
            g->access_log = i;
            return 0;
        }
    snprintf(err, errlen, "want off, errors or all");
    return -1;
}

HR_OPT_STRING(set_signaling, struct hr_gateway_config, signaling_url)
HR_OPT_STRING(set_stun, struct hr_gateway_config, ice.stun)
HR_OPT_STRING(set_turn, struct hr_gateway_config, ice.turn)
HR_OPT_STRING(set_turn_secret, struct hr_gateway_config, ice.turn_secret)
HR_OPT_STRING(set_cors, struct hr_gateway_config, cors_origins)
HR_OPT_STRING(set_secret, struct hr_gateway_config, host_secret)
HR_OPT_STRING(set_secret_prev, struct hr_gateway_config, host_secret_previous)
/* 0: no cap. */
HR_OPT_U32(set_source_hosts, struct hr_gateway_config, source_hosts, 0u, 100000000u, "hosts, ")

static int set_trust_proxy(void *c, const char *v, char *err, size_t errlen)
{
    return hr_cidrs_parse(v, &((struct hr_gateway_config *)c)->trust_proxy, err, errlen);
}

HR_OPT_U32(set_lease, struct hr_gateway_config, claim_lease_s, 1u, 86400u, "seconds, ")
HR_OPT_U32(set_turn_ttl, struct hr_gateway_config, ice.turn_ttl_s, 60u, 604800u, "seconds, ")
HR_OPT_U32(set_http_timeout, struct hr_gateway_config, http_timeout_s, 1u, 3600u, "seconds, ")
HR_OPT_U32(set_list_limit, struct hr_gateway_config, list_limit, 1u, 1000000u, "a count, ")
/* Up to a minute: an older list is more misleading than useful. */
HR_OPT_U32(set_list_cache, struct hr_gateway_config, list_cache_ms, 0u, 60000u, "milliseconds, ")

/* The original service's signalingUrl when none is configured. */
#define DEFAULT_SIGNALING "ws://localhost:3002"

static const struct hr_opt options[] = {
    {"listen", 'L', "HOST:PORT", "127.0.0.1:8080", "HTTP address to serve on", set_listen,
     "HOSTREG_HTTP_LISTEN"},
    HR_COMMON_OPTS,
    {"claim-lease", 0, "SECONDS", "60",
     "a claimed host the host does not confirm busy within this returns to idle", set_lease, NULL},
    {"signaling-url", 0, "URL", DEFAULT_SIGNALING, "signalingUrl handed to matched clients",
     set_signaling, NULL},
    {"stun", 0, "URLS", "stun:stun.l.google.com:19302", "comma-separated STUN URLs for clients",
     set_stun, NULL},
    {"turn", 0, "URLS", "", "comma-separated TURN URLs for clients", set_turn, NULL},
    {"turn-secret", 0, "SECRET", "",
     "coturn static-auth-secret: clients get REST API credentials (prefer the environment)",
     set_turn_secret, NULL},
    {"turn-ttl", 0, "SECONDS", "86400", "lifetime of TURN credentials", set_turn_ttl, NULL},
    {"ice-servers", 0, "JSON|@FILE", NULL,
     "static RTCIceServer entries sent after the others (a TURN provider's fixed credentials), "
     "as a JSON array or @ a file holding one",
     set_ice_servers, NULL},
    {"cors-origins", 0, "LIST", "*", "origins allowed to read answers: * or a comma-separated list",
     set_cors, NULL},
    {"host-secret", 0, "SECRET", "",
     "Bearer secret the host endpoints require; empty: open (prefer the environment)", set_secret,
     NULL},
    {"host-secret-previous", 0, "SECRET", "", "a second accepted secret, during rotation",
     set_secret_prev, NULL},
    {"http-timeout", 0, "SECONDS", "10", "an HTTP connection idle this long is closed",
     set_http_timeout, NULL},
    {"access-log", 0, "MODE", "errors",
     "a log line (info level) per answer: off, errors (4xx and 5xx) or all", set_access_log, NULL},
    {"list-limit", 0, "N", "1000", "most hosts GET /api/hosts returns", set_list_limit, NULL},
    /* 1 s: a list is a few ms of Redis at 1,000 hosts, so a flood of anonymous
     * list calls could starve heartbeats and finds; a host list a second old is
     * as good as a fresh one to a person or a lobby page (ttl is whole seconds). */
    {"list-cache-ms", 0, "MS", "1000",
     "GET /api/hosts answers reused this long, per filter; 0: no cache", set_list_cache, NULL},
    /* As hostregd's: one client rarely speaks for more than a few hosts; a
     * NAT or a test rig that really does raises it. */
    {"source-hosts", 0, "N", "1000",
     "hosts one client address may register (0: no cap); beyond, 429 for a new host",
     set_source_hosts, NULL},
    {"trust-proxy", 0, "CIDRS", "",
     "proxies (addresses or ranges, comma-separated) whose X-Forwarded-For names the client",
     set_trust_proxy, NULL},
    {0},
};

/* The original deployment's environment (docs: README, "Replacing the
 * original service"): honoured when hostreg's own flag and variable are
 * absent. */
static const struct hr_opt_alias aliases[] = {
    {"listen", "PORT", set_port_only},
    {"redis", "REDIS_URL", NULL},
    {"host-secret", "HOST_SECRET", NULL},
    {"host-secret-previous", "HOST_SECRET_PREVIOUS", NULL},
    {"signaling-url", "SIGNALING_PUBLIC_URL", NULL},
    {0},
};

struct app {
    struct event_base *base;
    struct hr_store *store;
    struct hr_gateway *gw;
    struct event *wait_ev;
    struct event *ready_ev; /* until Redis first answers: then READY=1 to systemd */
    int stopping;
    int waited_ms;
};

/* READY=1 (Type=notify) once the socket is bound (before this runs) and
 * Redis answered (the store connected, scripts loaded, layout read). */
static void on_ready_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct app *app = arg;
    if (!hr_store_ready(app->store))
        return;
    event_del(app->ready_ev);
    hr_sd_notify("READY=1\nSTATUS=serving");
    HR_LOG(HR_LOG_INFO, "ready: Redis answered");
}

/* Shutdown: the first signal closes the listening socket, then this waits
 * (up to 2 s) for the answers already owed to clients; a second signal stops
 * waiting. */
static void on_wait(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct app *app = arg;
    app->waited_ms += 10;
    if (hr_gateway_pending(app->gw) == 0 || app->waited_ms >= 2000)
        event_base_loopexit(app->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct app *app = arg;
    if (sig == SIGHUP || sig == SIGUSR1 || sig == SIGUSR2) {
        /* Sent by habit (log rotation, reload, counters): never fatal. */
        HR_LOG(HR_LOG_INFO,
               "signal %d: nothing to reload in this build, counters are at /metrics; still "
               "running",
               (int)sig);
        return;
    }
    if (app->stopping++) {
        event_base_loopexit(app->base, NULL);
        return;
    }
    hr_sd_notify("STOPPING=1");
    HR_LOG(HR_LOG_INFO, "signal %d: finishing %zu requests in flight", (int)sig,
           hr_gateway_pending(app->gw));
    hr_gateway_stop_accepting(app->gw);
    struct timeval tv = {0, 10000};
    event_add(app->wait_ev, &tv);
}

int main(int argc, char **argv)
{
    struct hr_gateway_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    hr_opts_aliases(aliases);
    hr_opts_parse_only(
        options, &cfg, argc, argv, "hostreg-gateway [options]",
        "The hostreg HTTP gateway: the JSON endpoints of the original service (host heartbeat\n"
        "and status, matchmaking, host list) plus /healthz, /readyz and /metrics, over the same\n"
        "rules and Redis scripts as hostregd. Secrets: HOSTREG_HOST_SECRET and\n"
        "HOSTREG_HOST_SECRET_PREVIOUS. The original service's PORT, REDIS_URL, HOST_SECRET,\n"
        "HOST_SECRET_PREVIOUS and SIGNALING_PUBLIC_URL are read when hostreg's own are absent.");
    char err[256];
    /* A deployment that set the original's secret never runs open, whatever
     * else says otherwise (an empty HOSTREG_HOST_SECRET, say). */
    const char *legacy_secret = getenv("HOST_SECRET");
    if (legacy_secret && legacy_secret[0] && !cfg.host_secret[0]) {
        fprintf(stderr,
                "error: HOST_SECRET is set, but the host secret from %s is empty: refusing to "
                "run with the host endpoints open (give the secret, or unset HOST_SECRET)\n",
                hr_opts_source(options, "host-secret"));
        json_decref(cfg.ice.extra);
        return 2;
    }
    if (hr_common_finish(&cfg.common, err, sizeof(err)) != 0) {
        fprintf(stderr, "error: %s\n", err);
        json_decref(cfg.ice.extra);
        return 2;
    }
    /* Unconfirmed claims go back to idle about a second after their lease. */
    cfg.common.store.sweep_ms = 1000;
    signal(SIGPIPE, SIG_IGN);

    struct app app = {0};
    struct event *sigs[5] = {0};
    int rc = 1;
    app.base = event_base_new();
    if (!app.base)
        return 1;
    app.store = hr_store_new(app.base, &cfg.common.store, err, sizeof(err));
    if (!app.store) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    app.gw = hr_gateway_new(app.base, app.store, &cfg, err, sizeof(err));
    if (!app.gw) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    app.wait_ev = event_new(app.base, -1, EV_PERSIST, on_wait, &app);
    app.ready_ev = event_new(app.base, -1, EV_PERSIST, on_ready_check, &app);
    struct timeval every = {0, 20000};
    if (!app.wait_ev || !app.ready_ev || event_add(app.ready_ev, &every) != 0)
        goto out;
    int signums[5] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
    for (int i = 0; i < 5; i++) {
        sigs[i] = evsignal_new(app.base, signums[i], on_signal, &app);
        if (!sigs[i] || event_add(sigs[i], NULL) != 0)
            goto out;
    }
    if (!cfg.host_secret[0])
        HR_LOG(HR_LOG_WARN, "no HOSTREG_HOST_SECRET: the host endpoints are open to anyone");
    if (strcmp(hr_opts_source(options, "signaling-url"), "default") == 0)
        HR_LOG(HR_LOG_WARN,
               "no --signaling-url (HOSTREG_SIGNALING_URL or SIGNALING_PUBLIC_URL): matched "
               "clients are told " DEFAULT_SIGNALING ", the original service's default");
    /* Where each setting a deployment of the original may give came from
     * (never the values: two are secrets, and a Redis URL may hold one). */
    HR_LOG(HR_LOG_INFO,
           "settings: listen from %s, redis from %s, host secret %sfrom %s, previous host secret "
           "from %s, signaling URL from %s",
           hr_opts_source(options, "listen"), hr_opts_source(options, "redis"),
           cfg.host_secret[0] ? "" : "(none) ", hr_opts_source(options, "host-secret"),
           hr_opts_source(options, "host-secret-previous"),
           hr_opts_source(options, "signaling-url"));
    HR_LOG(HR_LOG_INFO, "hostreg-gateway listening on http://%s:%d, ttl %us, claim lease %us",
           cfg.listen_host, hr_gateway_port(app.gw), cfg.common.ttl_s, cfg.claim_lease_s);
    event_base_dispatch(app.base);
    HR_LOG(HR_LOG_INFO, "hostreg-gateway stopped");
    rc = 0;
out:
    for (int i = 0; i < 5; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (app.wait_ev)
        event_free(app.wait_ev);
    if (app.ready_ev)
        event_free(app.ready_ev);
    /* Store first: requests still waiting on Redis get their 503 while the
     * HTTP server can still send it, and a few more turns of the loop write
     * those answers out before the connections close. */
    if (app.gw)
        hr_gateway_close(app.gw);
    hr_store_free(app.store);
    for (int i = 0; app.gw && i < 4; i++)
        event_base_loop(app.base, EVLOOP_NONBLOCK);
    hr_gateway_free(app.gw);
    event_base_free(app.base);
    json_decref(cfg.ice.extra);
    return rc;
}
