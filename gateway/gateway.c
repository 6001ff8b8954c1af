#include "gateway.h"

#include "clock.h"
#include "body.h"
#include "cidr.h"
#include "err.h"
#include "limits.h"
#include "listcache.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>
#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

/* Filters the list cache keeps at once. The ones real clients use are a
 * handful (all regions or one, all statuses or one, the default limit): the
 * default configuration has 5 x 3 of them. A flood of distinct limits
 * replaces the least recently used slot instead of growing memory: at most
 * this many filters' answers (two bodies each) are held. */
#define LIST_CACHE_SLOTS 64

/* Request bytes one connection may have read but not yet parsed. evhttp
 * parses a keep-alive connection's next request only once the answer to the
 * previous one is written out, yet keeps reading meanwhile (to notice a
 * close): a client that pipelined requests and never read the answers made it
 * buffer everything it sent (480 MiB in 2 s over loopback). At this many
 * bytes the gateway stops reading the socket until evhttp has parsed some, so
 * the client's further requests wait in the kernel and then in the client.
 * It holds the largest request evhttp waits for whole (a body of up to
 * EVHTTP_MAX_BODY) twice over, so that no request is cut and a well-behaved
 * pipelining client has a backlog ready. */
#define CONN_INPUT_MAX (256 * 1024)
/* Bodies evhttp reads at most: ours, and a margin over it so that a body a
 * little too large gets our JSON 413 naming the limit; beyond it evhttp
 * answers 413 itself (its HTML) and closes, having read nothing of it. */
#define EVHTTP_MAX_BODY (HR_GATEWAY_MAX_BODY + 16384)
/* A line evhttp could parse ends well within this: header lines are cut at
 * 8 KiB, and a body (EVHTTP_MAX_BODY at most) is followed by the next request line or
 * a chunk's CRLF. evhttp reads a chunk-size line with no limit, though: one
 * without an end would have it wait forever with reading stopped (no read
 * timeout runs while reading is off), so a connection that has this much
 * without a newline while evhttp reads a request is dropped. */
#define CONN_LINE_MAX (128 * 1024)
_Static_assert(CONN_INPUT_MAX >= CONN_LINE_MAX && CONN_LINE_MAX >= EVHTTP_MAX_BODY + 8192 + 4096,
               "a whole request, then a line, fit in what a connection may hold");

struct hr_gateway {
    struct event_base *base;
    struct hr_store *store;
    struct hr_gateway_config cfg;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct hr_metrics metrics;
    size_t pending;
    /* Secrets are compared as HMACs under a key drawn at start: equal-length,
     * constant-time digests, whatever the length of what a client sends. */
    EVP_MAC_CTX *mac; /* HMAC-SHA256 keyed with a random key drawn at start */
    unsigned char secret_mac[2][32];
    int nsecrets;
    uint32_t rid_prefix, rid_next; /* generated request ids: random, then a count */
    char heartbeat_ok[48];         /* {"success":true,"ttl":N}: the same every time */
    size_t heartbeat_ok_len;
    bool closing;             /* the store is going away: answer 503, touch nothing */
    struct hr_limits *limits; /* --source-hosts, per client address; NULL: no cap */

    /* Accepting paused after accept() failed (on_accept_error). */
    struct event *accept_ev;       /* turns the listener back on */
    uint64_t accept_errors;        /* failed accept() calls, for /metrics */
    unsigned long accept_unlogged; /* failed since the last log line */
    struct timespec accept_logged; /* when that line was written */
    struct hr_listcache *lists;    /* GET /api/hosts answers; NULL: --list-cache-ms 0 */
    uint32_t claim_next;           /* claim ids: rid_prefix, then this count */
    struct release *releases;      /* claims whose answer was lost, to undo */
    struct event *release_ev;      /* tries them again while Redis is away */
    struct hr_gateway *next;       /* in `gateways` */
};

/* One HTTP request from arrival to its one answer. */
struct call {
    struct hr_gateway *gw;
    struct evhttp_request *req;
    enum hr_endpoint ep;
    struct timespec start;
    char rid[HR_ID_MAX + 1];
    int authorized;    /* presented a valid host secret */
    char claim_id[17]; /* POST /api/match/find: its claim, to undo if the answer is lost */
    /* GET /api/hosts through the cache: queued on `slot` until its list is back. */
    struct hr_listcache_waiter wait;
    struct hr_listcache_slot *slot;
};

static double elapsed_s(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    default:
        return "OTHER";
    }
}

/* CORS as the original service did it (any origin by default); with a list,
 * only those origins are told they may read the answer. */
static void cors_headers(struct call *c, struct evkeyvalq *out)
{
    const char *origins = c->gw->cfg.cors_origins;
    const char *origin = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Origin");
    if (strcmp(origins, "*") == 0) {
        evhttp_add_header(out, "Access-Control-Allow-Origin", "*");
    } else if (origin) {
        size_t olen = strlen(origin);
        for (const char *p = origins; *p;) {
            p += strspn(p, " \t"); /* "http://a, http://b" */
            size_t n = strcspn(p, ",");
            size_t m = n;
            while (m && (p[m - 1] == ' ' || p[m - 1] == '\t'))
                m--;
            if (m == olen && strncmp(p, origin, m) == 0) {
                evhttp_add_header(out, "Access-Control-Allow-Origin", origin);
                break;
            }
            p += n;
            if (*p == ',')
                p++;
        }
        evhttp_add_header(out, "Vary", "Origin");
    }
    evhttp_add_header(out, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
}

/* Sends the answer, counts it, logs it and frees the call. */
static void finish(struct call *c, int code, const char *type, const void *body, size_t len,
                   bool retry_after)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(c->req);
    if (type)
        evhttp_add_header(out, "Content-Type", type);
    evhttp_add_header(out, "X-Request-Id", c->rid);
    if (retry_after)
        evhttp_add_header(out, "Retry-After", "1");
    cors_headers(c, out);
    struct evbuffer *b = evbuffer_new();
    if (b && body)
        evbuffer_add(b, body, len);

    double secs = elapsed_s(&c->start);
    int mode = c->gw->cfg.access_log;
    if (hr_log_level >= HR_LOG_INFO &&
        (mode == HR_ACCESS_LOG_ALL || (mode == HR_ACCESS_LOG_ERRORS && code >= 400))) {
        char peer[HR_ADDRSTRLEN] = "?", path[160];
        struct evhttp_connection *con = evhttp_request_get_connection(c->req);
        if (con) {
            char *addr = NULL;
            ev_uint16_t port = 0;
            evhttp_connection_get_peer(con, &addr, &port);
            snprintf(peer, sizeof(peer), "%s:%u", addr ? addr : "?", port);
        }
        const char *uri = evhttp_request_get_uri(c->req);
        hr_log_escape(path, sizeof(path), uri, strlen(uri) > 120 ? 120 : strlen(uri));
        if (code >= 400)
            HR_LOG_LIMITED(HR_LOG_INFO, "http %s %s %d %.2fms peer=%s rid=%s",
                           method_name(evhttp_request_get_command(c->req)), path, code, secs * 1000,
                           peer, c->rid);
        else
            HR_LOG(HR_LOG_INFO, "http %s %s %d %.2fms peer=%s rid=%s",
                   method_name(evhttp_request_get_command(c->req)), path, code, secs * 1000, peer,
                   c->rid);
    }
    hr_metrics_record(&c->gw->metrics, c->ep, code, secs);
    evhttp_send_reply(c->req, code, reason_phrase(code), b);
    if (b)
        evbuffer_free(b);
    free(c);
}

/* Answers with `body` (a reference is taken). */
static void reply_json(struct call *c, int code, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!s) {
        static const char oom[] = "{\"success\":false,\"error\":\"out of memory\"}";
        finish(c, 500, "application/json", oom, sizeof(oom) - 1, false);
        return;
    }
    finish(c, code, "application/json", s, strlen(s), code == 503 || code == 429);
    free(s);
}

static void reply_error(struct call *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_error(struct call *c, int code, const char *fmt, ...)
{
    char msg[HR_BODY_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *body = json_pack("{s:b,s:s}", "success", 0, "error", msg);
    /* The original service's matchmaking clients look for found/message. */
    if (body && c->ep == HR_EP_FIND) {
        json_object_set_new(body, "found", json_false());
        json_object_set_new(body, "message", json_string(msg));
    }
    reply_json(c, code, body);
}

static void reply_unavailable(struct call *c)
{
    reply_error(c, 503, "registry unavailable, retry later");
}

/* The message for a rule broken, naming the configured regions when that is
 * what was wrong. */
static void reply_rule(struct call *c, int err)
{
    char msg[HR_BODY_ERR_MAX];
    hr_body_rule_message(&c->gw->cfg.common.rules, err, msg, sizeof(msg));
    reply_error(c, 400, "%s", msg);
}

/* --- request bodies (body.c reads them) --- */

/* The request body as one block of bytes for hr_body_*. evhttp has read all
 * of it (up to its own cap, 4 * HR_GATEWAY_MAX_BODY), so making it
 * contiguous costs at most one copy; NULL when it is empty. */
static const void *body_of(struct call *c, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    *len = evbuffer_get_length(in);
    return evbuffer_pullup(in, -1);
}

/* HMAC-SHA256 of `s` under the gateway's key: the context keeps its key, so
 * each request only re-initialises it (no digest fetch, no allocation). */
static int mac_of(struct hr_gateway *gw, const char *s, unsigned char out[32])
{
    size_t n = 0;
    if (EVP_MAC_init(gw->mac, NULL, 0, NULL) != 1 ||
        EVP_MAC_update(gw->mac, (const unsigned char *)s, strlen(s)) != 1 ||
        EVP_MAC_final(gw->mac, out, &n, 32) != 1 || n != 32)
        return -1;
    return 0;
}

/* True when s holds a control character (below 0x20, or DEL). No secret has
 * one (RFC 6750's b64token has none either): it is a client that mangled its
 * header, or an attempt at what a proxy or a log might make of such bytes. */
static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* Bearer secret check for the host endpoints: 0 when it may proceed,
 * -1 after answering 401 (missing or malformed, then nothing is compared) or
 * 403 (wrong secret). A NUL in the header arrives here as 0x01
 * (nul_to_control), a control character like any other. */
static int check_secret(struct call *c, bool answer)
{
    struct hr_gateway *gw = c->gw;
    if (gw->nsecrets == 0)
        return 0;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Authorization");
    const char *malformed = NULL;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7])
        malformed = "missing or malformed Authorization header (want: Bearer <secret>)";
    else if (has_control(h + 7))
        malformed = "malformed Authorization header: control character in the secret";
    if (malformed) {
        if (answer) {
            evhttp_add_header(evhttp_request_get_output_headers(c->req), "WWW-Authenticate",
                              "Bearer");
            reply_error(c, 401, "%s", malformed);
        }
        return -1;
    }
    unsigned char mac[32];
    if (mac_of(gw, h + 7, mac) != 0) {
        reply_error(c, 500, "cannot check the secret");
        return -1;
    }
    int ok = 0;
    for (int i = 0; i < gw->nsecrets; i++)
        ok |= CRYPTO_memcmp(mac, gw->secret_mac[i], sizeof(mac)) == 0;
    if (ok) {
        c->authorized = 1;
        return 0;
    }
    if (answer)
        reply_error(c, 403, "wrong secret");
    return -1;
}

/* --- host endpoints --- */

static const char status_ok[] = "{\"success\":true}";

/* Every region a list, a count or a find naming none goes through: the
 * configured ones, or in any-region mode the default and those the registry
 * knows (the store's, which only grows while the gateway runs: a region's
 * place in this list is stable). */
static size_t all_regions(const struct hr_gateway *gw, const char *out[HR_REGIONS_MAX])
{
    const struct hr_rules *rules = &gw->cfg.common.rules;
    if (!rules->any)
        return hr_rules_names(rules, out);
    const char *known[HR_REGIONS_MAX];
    size_t n = hr_store_regions(gw->store, known), m = 0;
    out[m++] = rules->regions[rules->default_region];
    for (size_t i = 0; i < n && m < HR_REGIONS_MAX; i++)
        if (strcmp(known[i], out[0]) != 0)
            out[m++] = known[i];
    return m;
}

/* The place of `region` in all_regions(), or -1. */
static int region_index(const struct hr_gateway *gw, const char *region)
{
    const char *all[HR_REGIONS_MAX];
    size_t n = all_regions(gw, all);
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i], region) == 0)
            return (int)i;
    return -1;
}

static void reply_refused(struct call *c, int code, const char *err,
                          const struct hr_body_issues *issues);

static void on_stored(void *arg, enum hr_result result, int reason)
{
    struct call *c = arg;
    c->gw->pending--;
    switch (result) {
    case HR_RESULT_OK:
    case HR_RESULT_DUPLICATE:
        if (c->ep == HR_EP_HEARTBEAT)
            finish(c, 200, "application/json", c->gw->heartbeat_ok, c->gw->heartbeat_ok_len, false);
        else
            finish(c, 200, "application/json", status_ok, sizeof(status_ok) - 1, false);
        break;
    case HR_RESULT_UNKNOWN_HOST:
        reply_error(c, 404, "unknown or expired host (send a heartbeat first)");
        break;
    case HR_RESULT_INVALID: { /* any-region mode: one region too many */
        struct hr_body_issues is = {.n = 1};
        snprintf(is.at[0].path, sizeof(is.at[0].path), "region");
        snprintf(is.at[0].code, sizeof(is.at[0].code), "custom");
        snprintf(is.at[0].message, sizeof(is.at[0].message), "%s", hr_strerror(reason));
        reply_refused(c, 400, is.at[0].message, &is);
        break;
    }
    default:
        if (reason == HR_E_FULL)
            reply_error(c, 503, "%s", hr_strerror(HR_E_FULL));
        else if (reason == HR_E_SOURCE_FULL)
            reply_error(c, 429, "%s (--source-hosts)", hr_strerror(HR_E_SOURCE_FULL));
        else
            reply_unavailable(c);
        break;
    }
}

/* Whether the client of `c` may create one more host: the cap on the hosts
 * one client address speaks for (--source-hosts), as hostregd applies it to
 * a source address. The address is the peer's, or behind a trusted proxy
 * (--trust-proxy) the one its X-Forwarded-For names. */
static bool source_may_create(struct call *c, const struct hr_request *r)
{
    struct hr_gateway *gw = c->gw;
    struct evhttp_connection *con = evhttp_request_get_connection(c->req);
    char *peer = NULL;
    ev_uint16_t port = 0;
    if (!gw->limits || !con)
        return true;
    evhttp_connection_get_peer(con, &peer, &port);
    char client[INET6_ADDRSTRLEN];
    const char *xff =
        evhttp_find_header(evhttp_request_get_input_headers(c->req), "X-Forwarded-For");
    hr_cidrs_client(&gw->cfg.trust_proxy, peer ? peer : "", xff, client, sizeof(client));
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, client, &v4->sin_addr) == 1)
        v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, client, &v6->sin6_addr) == 1)
        v6->sin6_family = AF_INET6;
    else
        return true; /* not an address (a unix socket): no cap to apply */
    return hr_limits_source_hosts(gw->limits, (const struct sockaddr *)&ss, r->host_id,
                                  hr_mono_coarse_ms());
}

/* The same checked request and the same store call as hostregd's. */
static void submit(struct call *c, const struct hr_request *r)
{
    /* Over its cap a client refreshes the hosts it has, creates none. */
    unsigned flags =
        r->type == HR_MSG_HEARTBEAT && !source_may_create(c, r) ? HR_STORE_NO_CREATE : 0;
    if (hr_store_submit(c->gw->store, r, flags, on_stored, c) != HR_OK) {
        reply_unavailable(c);
        return;
    }
    c->gw->pending++;
}

/* A heartbeat or a status update: the secret, the body (body.c), the store. */
/* A body's bad fields, as the original answers them: 400
 * {"success":false,"error":"Validation failed","issues":[{"path","message",
 * "code"}...]}, one issue per field. Other refusals (not JSON, too large) are
 * one message. */
static void reply_refused(struct call *c, int code, const char *err,
                          const struct hr_body_issues *issues)
{
    if (code != 400 || issues->n == 0) {
        reply_error(c, code, "%s", err);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < issues->n; i++)
        json_array_append_new(list,
                              json_pack("{s:s,s:s,s:s}", "path", issues->at[i].path, "message",
                                        issues->at[i].message, "code", issues->at[i].code));
    json_t *body =
        json_pack("{s:b,s:s,s:o}", "success", 0, "error", "Validation failed", "issues", list);
    /* The original service's matchmaking clients look for found/message. */
    if (body && c->ep == HR_EP_FIND) {
        json_object_set_new(body, "found", json_false());
        json_object_set_new(body, "message", json_string(err));
    }
    reply_json(c, code, body);
}

static void host_request(struct call *c,
                         int (*read)(const void *body, size_t len, const struct hr_rules *rules,
                                     struct hr_request *out, char *err, size_t errlen,
                                     struct hr_body_issues *issues))
{
    if (check_secret(c, true) != 0)
        return;
    struct hr_request r;
    struct hr_body_issues issues;
    char err[HR_BODY_ERR_MAX];
    size_t len;
    const void *body = body_of(c, &len);
    int code = read(body, len, &c->gw->cfg.common.rules, &r, err, sizeof(err), &issues);
    if (code != 0)
        reply_refused(c, code, err, &issues);
    else
        submit(c, &r);
}

static void h_heartbeat(struct call *c)
{
    host_request(c, hr_body_heartbeat);
}

static void h_status(struct call *c)
{
    host_request(c, hr_body_status);
}

/* --- client endpoints --- */

/* --- claims whose answer was lost --- */

/* A claim to undo: the find was answered 503 (Redis too slow, or gone), but
 * the claim script may have run, or may still run, and would leave its host
 * busy for the whole lease. Retried until Redis has done it or the lease is
 * over (then the sweep frees the host anyway). */
struct release {
    struct release *next;
    struct hr_gateway *gw;
    char id[17];
    uint64_t until_ms; /* monotonic: the claim's lease is over by then */
    bool in_flight;
};

/* Retry cadence while Redis is away: the host is findable again within about
 * this long after Redis answers again. */
#define RELEASE_RETRY_MS 200

static void release_unlink(struct release *r)
{
    for (struct release **p = &r->gw->releases; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            break;
        }
    free(r);
}

static void on_released(void *arg, int err)
{
    struct release *r = arg;
    r->in_flight = false;
    if (err == HR_OK || hr_mono_ms() >= r->until_ms)
        release_unlink(r);
}

/* Sends every release not in flight; the timer comes back while any is left. */
static void on_release_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_gateway *gw = arg;
    uint64_t now = hr_mono_ms();
    for (struct release *r = gw->releases, *next; r; r = next) {
        next = r->next;
        if (r->in_flight)
            continue;
        if (now >= r->until_ms) {
            release_unlink(r);
            continue;
        }
        if (!gw->closing && hr_store_release(gw->store, r->id, gw->cfg.claim_lease_s * 1000,
                                             on_released, r) == HR_OK)
            r->in_flight = true;
    }
    if (gw->releases) {
        struct timeval tv = {0, RELEASE_RETRY_MS * 1000};
        event_add(gw->release_ev, &tv);
    }
}

static void undo_claim(struct call *c)
{
    struct hr_gateway *gw = c->gw;
    struct release *r = calloc(1, sizeof(*r));
    if (!r) /* the sweep frees the host when the lease ends */
        return;
    r->gw = gw;
    snprintf(r->id, sizeof(r->id), "%s", c->claim_id);
    r->until_ms = hr_mono_ms() + (uint64_t)gw->cfg.claim_lease_s * 1000;
    r->next = gw->releases;
    gw->releases = r;
    /* Now (Redis may be back already), and again every RELEASE_RETRY_MS. */
    event_active(gw->release_ev, EV_TIMEOUT, 0);
}

static void on_claimed(void *arg, int err, const struct hr_host_info *h)
{
    struct call *c = arg;
    struct hr_gateway *gw = c->gw;
    gw->pending--;
    if (err != HR_OK) {
        undo_claim(c);
        reply_unavailable(c);
        return;
    }
    if (!h) {
        reply_error(c, 404, "no idle host available");
        return;
    }
    json_t *ice = hr_ice_servers(&gw->cfg.ice, h->room_id, time(NULL));
    reply_json(c, 200,
               json_pack("{s:b,s:b,s:s,s:s,s:s,s:o}", "success", 1, "found", 1, "roomId",
                         h->room_id, "region", h->region, "signalingUrl", gw->cfg.signaling_url,
                         "iceServers", ice ? ice : json_array()));
}

static void h_find(struct call *c)
{
    struct hr_gateway *gw = c->gw;
    struct hr_find_body f;
    char err[HR_BODY_ERR_MAX];
    size_t len;
    const void *body = body_of(c, &len);
    struct hr_body_issues issues;
    int code = hr_body_find(body, len, &gw->cfg.common.rules, &f, err, sizeof(err), &issues);
    if (code != 0) {
        reply_refused(c, code, err, &issues);
        return;
    }
    f.query.lease_ms = gw->cfg.claim_lease_s * 1000;
    /* Unique across gateways and restarts (a random prefix drawn at start). */
    snprintf(c->claim_id, sizeof(c->claim_id), "%08" PRIx32 "%08" PRIx32, gw->rid_prefix,
             gw->claim_next++);
    f.query.claim_id = c->claim_id;
    if (f.any_other) { /* after the default region, every other one the registry knows */
        const char *all[HR_REGIONS_MAX];
        size_t n = all_regions(gw, all);
        for (size_t i = 1; i < n; i++)
            f.query.regions[f.query.nregions++] = all[i];
    }
    /* f.query points into f: hr_store_claim has copied what it needs on return. */
    if (hr_store_claim(gw->store, &f.query, on_claimed, c) != HR_OK)
        reply_unavailable(c);
    else
        gw->pending++;
}

/* The answer of GET /api/hosts; NULL only when out of memory. */
static json_t *hosts_json(const struct hr_host_info *hosts, size_t n, bool ids, uint32_t ttl_s)
{
    json_t *a = json_array();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long now_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    for (size_t i = 0; a && i < n; i++) {
        const struct hr_host_info *h = &hosts[i];
        json_t *o = json_pack(
            "{s:s,s:s,s:s,s:I,s:I,s:I}", "roomId", h->room_id, "region", h->region, "status",
            hr_status_name(h->status), "ttl", (json_int_t)((h->ttl_ms + 999) / 1000), "capacity",
            (json_int_t)h->capacity, "availableSlots", (json_int_t)h->available_slots);
        /* A hostId is what lets someone update a host: only for the hosts' own
         * secret; so is the original's lastHeartbeat (ms since the epoch: an
         * entry expires one TTL after its last heartbeat). */
        if (o && ids) {
            json_object_set_new(o, "hostId", json_string(h->host_id));
            json_object_set_new(o, "lastHeartbeat",
                                json_integer(now_ms + h->ttl_ms - (long long)ttl_s * 1000));
        }
        json_array_append_new(a, o);
    }
    return a;
}

static void on_listed(void *arg, int err, const struct hr_host_info *hosts, size_t n)
{
    struct call *c = arg;
    c->gw->pending--;
    if (err != HR_OK) {
        reply_unavailable(c);
        return;
    }
    reply_json(c, 200, hosts_json(hosts, n, c->authorized, c->gw->cfg.common.ttl_s));
}

/* hosts_json as the text the cache keeps (*len bytes, malloc'd), or NULL. */
static char *hosts_text(const struct hr_host_info *hosts, size_t n, bool ids, uint32_t ttl_s,
                        size_t *len)
{
    json_t *a = hosts_json(hosts, n, ids, ttl_s);
    char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    *len = s ? strlen(s) : 0;
    return s;
}

/* The list of a cache slot is back: `arg` is the call that sent it, the first
 * of the slot's waiters. Both answers are kept, so that an anonymous caller
 * never gets the hostIds an authorized one filled the slot with, and an
 * authorized one never waits for a second list; the one with hostIds only
 * when a secret is configured (else no caller is authorized). Every waiter
 * is answered here: evhttp_send_reply only queues the answer, so no other
 * request reaches the cache meanwhile. */
static void on_cache_listed(void *arg, int err, const struct hr_host_info *hosts, size_t n)
{
    struct call *c = arg;
    struct hr_gateway *gw = c->gw;
    struct hr_listcache_slot *slot = c->slot;
    struct hr_listcache_waiter *w;
    int code = err == HR_OK ? 200 : 503;
    if (code == 200) {
        size_t len[2] = {0, 0};
        uint32_t ttl_s = gw->cfg.common.ttl_s;
        char *anon = hosts_text(hosts, n, false, ttl_s, &len[0]);
        char *ids = gw->nsecrets ? hosts_text(hosts, n, true, ttl_s, &len[1]) : NULL;
        if (anon && (ids || !gw->nsecrets)) {
            w = hr_listcache_fill(slot, anon, len[0], ids, len[1]);
        } else {
            free(anon);
            free(ids);
            code = 500;
            w = hr_listcache_fail(slot);
        }
    } else {
        w = hr_listcache_fail(slot);
    }
    while (w) {
        struct call *wc = (struct call *)((char *)w - offsetof(struct call, wait));
        w = w->next; /* before finish() frees wc */
        gw->pending--;
        if (code == 503) {
            reply_unavailable(wc);
        } else if (code == 500) {
            reply_error(wc, 500, "out of memory");
        } else {
            size_t len;
            const char *body = hr_listcache_body(slot, wc->authorized, &len);
            finish(wc, 200, "application/json", body, len, false);
        }
    }
}

/* GET /api/hosts from the cache, or with a list of its own when the cache
 * cannot take it: 0 when answered or queued, -1 when the caller lists uncached. */
static int hosts_cached(struct call *c, const struct hr_list_query *q, int region)
{
    struct hr_gateway *gw = c->gw;
    struct hr_listcache_key key;
    memset(&key, 0, sizeof(key));
    key.region = region;
    key.status = q->status;
    key.limit = q->limit;
    uint64_t now = (uint64_t)c->start.tv_sec * 1000 + (uint64_t)c->start.tv_nsec / 1000000;
    struct hr_listcache_slot *slot = NULL;
    switch (hr_listcache_get(gw->lists, &key, now, &c->wait, &slot)) {
    case HR_LISTCACHE_HIT: {
        size_t len;
        const char *body = hr_listcache_body(slot, c->authorized, &len);
        if (!body)
            return -1;
        finish(c, 200, "application/json", body, len, false);
        return 0;
    }
    case HR_LISTCACHE_WAIT:
        gw->pending++;
        return 0;
    case HR_LISTCACHE_FETCH:
        c->slot = slot;
        gw->pending++;
        if (hr_store_list(gw->store, q, on_cache_listed, c) != HR_OK)
            on_cache_listed(c, HR_E_UNAVAILABLE, NULL, 0);
        return 0;
    case HR_LISTCACHE_BYPASS:
        break;
    }
    return -1;
}

static void h_hosts(struct call *c)
{
    struct hr_gateway *gw = c->gw;
    const struct hr_rules *rules = &gw->cfg.common.rules;
    struct hr_list_query q = {.status = HR_STATUS_NONE, .limit = gw->cfg.list_limit};
    struct evkeyvalq params;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(c->req));
    TAILQ_INIT(&params);
    /* A %00 would decode into a NUL that ends the value early ("local%00x"
     * read as "local"): refused, like a \u0000 in a JSON body. */
    if (query && strstr(query, "%00")) {
        reply_error(c, 400, "query string must not contain %%00");
        return;
    }
    if (query && evhttp_parse_query_str(query, &params) != 0) {
        reply_error(c, 400, "malformed query string");
        return;
    }
    const char *region = evhttp_find_header(&params, "region");
    const char *status = evhttp_find_header(&params, "status");
    const char *limit = evhttp_find_header(&params, "limit");
    int i = -1; /* the region asked for (its place in all_regions(), the cache's key); -1: all */
    if (region) {
        if (!hr_rules_region_ok(rules, region, strlen(region))) {
            reply_rule(c, HR_E_REGION);
            goto out;
        }
        i = region_index(gw, region);
        /* The store copies the name before this returns (params are freed). */
        q.regions[q.nregions++] = region;
    } else {
        q.nregions = all_regions(gw, q.regions);
    }
    if (status) {
        q.status = hr_status_parse(status, strlen(status));
        if (q.status == HR_STATUS_NONE) {
            reply_rule(c, HR_E_STATUS);
            goto out;
        }
    }
    if (limit && hr_parse_u32(limit, 1, gw->cfg.list_limit, &q.limit) != 0) {
        reply_error(c, 400, "limit must be a whole number from 1 to %u", gw->cfg.list_limit);
        goto out;
    }
    check_secret(c, false); /* only decides whether hostIds are shown */
    /* A region no host ever named (any-region mode) has nothing to cache. */
    if (gw->lists && (i >= 0 || !region) && hosts_cached(c, &q, i) == 0)
        goto out;
    if (hr_store_list(gw->store, &q, on_listed, c) != HR_OK)
        reply_unavailable(c);
    else
        gw->pending++;
out:
    evhttp_clear_headers(&params);
}

/* The original's GET /api/hosts/ttl: each idle host's hostId and the seconds
 * its entry has left. It names hosts, so it takes the hosts' secret when one
 * is configured (open otherwise, as the original). */
static void on_ttl_listed(void *arg, int err, const struct hr_host_info *hosts, size_t n)
{
    struct call *c = arg;
    c->gw->pending--;
    if (err != HR_OK) {
        reply_unavailable(c);
        return;
    }
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_pack("{s:s,s:I}", "hostId", hosts[i].host_id, "ttlSeconds",
                                           (json_int_t)((hosts[i].ttl_ms + 999) / 1000)));
    reply_json(c, 200, a);
}

static void h_hosts_ttl(struct call *c)
{
    struct hr_gateway *gw = c->gw;
    if (check_secret(c, true) != 0)
        return;
    struct hr_list_query q = {.status = HR_STATUS_IDLE, .limit = gw->cfg.list_limit};
    q.nregions = all_regions(gw, q.regions);
    if (hr_store_list(gw->store, &q, on_ttl_listed, c) != HR_OK)
        reply_unavailable(c);
    else
        gw->pending++;
}

/* --- operations --- */

static void h_healthz(struct call *c)
{
    reply_json(c, 200, json_pack("{s:b,s:s}", "success", 1, "status", "alive"));
}

/* The original service's root: a plain "ok", for probes that expect it. */
static void h_root(struct call *c)
{
    finish(c, 200, "text/plain; charset=utf-8", "ok", 2, false);
}

static void on_probe(void *arg, int err, const char *refused)
{
    struct call *c = arg;
    c->gw->pending--;
    if (err == HR_OK)
        reply_json(c, 200, json_pack("{s:b,s:b}", "success", 1, "ready", 1));
    else if (refused)
        reply_error(c, 503, "redis refuses writes: %.200s", refused);
    else
        reply_error(c, 503, "redis is not answering");
}

/* Ready means Redis takes writes, not only that it answers: a replica or a
 * full Redis answers PING but refuses every heartbeat (hr_store_probe). */
static void h_readyz(struct call *c)
{
    if (hr_store_probe(c->gw->store, on_probe, c) == HR_OK) {
        c->gw->pending++;
        return;
    }
    /* Not ready: on a Redis Cluster the reason names the slots without a
     * master, or the cluster's state. */
    const char *why = hr_store_not_ready_reason(c->gw->store);
    if (hr_store_clustered(c->gw->store) && why[0])
        reply_error(c, 503, "redis cluster is not ready: %.400s", why);
    else
        reply_error(c, 503, "redis is not connected");
}

static void on_counts(void *arg, int err, const uint64_t *counts, size_t n)
{
    struct call *c = arg;
    struct hr_gateway *gw = c->gw;
    gw->pending--;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        reply_error(c, 500, "out of memory");
        return;
    }
    hr_metrics_render(&gw->metrics, b);
    hr_metrics_family(b, "hostreg_http_accept_errors_total", "counter",
                      "Failed accept() calls (out of descriptors); each pauses accepting briefly.");
    hr_metrics_sample(b, "hostreg_http_accept_errors_total", NULL, gw->accept_errors);
    hr_metrics_store(b, gw->store);
    hr_metrics_build_info(b);
    if (err == HR_OK) {
        const char *regions[HR_REGIONS_MAX];
        size_t nregions = all_regions(gw, regions);
        hr_metrics_hosts(b, regions, n < nregions ? n : nregions, counts);
    }
    size_t len = evbuffer_get_length(b);
    finish(c, 200, "text/plain; version=0.0.4", evbuffer_pullup(b, (ev_ssize_t)len), len, false);
    evbuffer_free(b);
}

static void h_metrics(struct call *c)
{
    struct hr_gateway *gw = c->gw;
    const char *regions[HR_REGIONS_MAX];
    size_t nregions = all_regions(gw, regions);
    /* Without Redis the HTTP counters are still worth having. */
    if (hr_store_count(gw->store, regions, nregions, on_counts, c) == HR_OK)
        gw->pending++;
    else {
        gw->pending++;
        on_counts(c, HR_E_UNAVAILABLE, NULL, 0);
    }
}

/* --- the dashboard --- */

extern const unsigned char hr_dashboard_html[];
extern const size_t hr_dashboard_html_len;

/* GET /dashboard: the page (gateway/dashboard.html, compiled in). It loads
 * nothing from elsewhere, and its policy says so. */
static void h_dashboard(struct call *c)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(c->req);
    evhttp_add_header(out, "Content-Security-Policy",
                      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                      "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                      "frame-ancestors 'none'");
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(out, "Cache-Control", "no-cache");
    finish(c, 200, "text/html; charset=utf-8", hr_dashboard_html, hr_dashboard_html_len, false);
}

/* The gateway's own HTTP counters of one endpoint, as the page reads them. */
static json_t *endpoint_json(const struct hr_metrics *m, enum hr_endpoint ep)
{
    uint64_t n = 0;
    for (int i = 0; i < HR_METRICS_CODES; i++)
        n += m->requests[ep][i];
    return json_pack("{s:I,s:f,s:I}", "requests", (json_int_t)n, "seconds", m->latency[ep].sum,
                     "ok", (json_int_t)m->requests[ep][0] /* 200: metrics.c's first code */);
}

static void on_dashboard_counts(void *arg, int err, const uint64_t *counts, size_t n)
{
    struct call *c = arg;
    struct hr_gateway *gw = c->gw;
    gw->pending--;
    if (err != HR_OK) {
        reply_unavailable(c);
        return;
    }
    const char *regions[HR_REGIONS_MAX];
    size_t nregions = all_regions(gw, regions);
    if (n < nregions)
        nregions = n;
    json_t *list = json_array(), *totals = json_object();
    uint64_t all = 0, by_status[HR_NSTATUSES] = {0};
    for (size_t i = 0; list && i < nregions; i++) {
        json_t *r = json_pack("{s:s}", "region", regions[i]);
        for (size_t s = 0; r && s < HR_NSTATUSES; s++) {
            uint64_t v = counts[HR_NSTATUSES * i + s];
            json_object_set_new(r, hr_status_name_at(s), json_integer((json_int_t)v));
            by_status[s] += v;
            all += v;
        }
        json_array_append_new(list, r);
    }
    for (size_t s = 0; totals && s < HR_NSTATUSES; s++)
        json_object_set_new(totals, hr_status_name_at(s), json_integer((json_int_t)by_status[s]));
    json_object_set_new(totals, "all", json_integer((json_int_t)all));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    reply_json(c, 200,
               json_pack("{s:b,s:I,s:o,s:o,s:{s:o,s:o}}", "success", 1, "time_ms",
                         (json_int_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, "regions", list,
                         "totals", totals, "http", "heartbeat",
                         endpoint_json(&gw->metrics, HR_EP_HEARTBEAT), "find",
                         endpoint_json(&gw->metrics, HR_EP_FIND)));
}

/* GET /dashboard/stats: what the page draws, once a second: hosts by region
 * and status (the registry's, counted as for /metrics) and the gateway's
 * heartbeat and find counters. No hostId: open like /metrics. */
static void h_dashboard_stats(struct call *c)
{
    struct hr_gateway *gw = c->gw;
    const char *regions[HR_REGIONS_MAX];
    size_t nregions = all_regions(gw, regions);
    if (hr_store_count(gw->store, regions, nregions, on_dashboard_counts, c) == HR_OK)
        gw->pending++;
    else
        reply_unavailable(c);
}

/* --- routing --- */

static const struct route {
    const char *path;
    enum hr_endpoint ep;
    enum evhttp_cmd_type method;
    void (*handler)(struct call *c);
} routes[] = {
    {"/api/host/heartbeat", HR_EP_HEARTBEAT, EVHTTP_REQ_POST, h_heartbeat},
    {"/api/host/status", HR_EP_STATUS, EVHTTP_REQ_POST, h_status},
    {"/api/match/find", HR_EP_FIND, EVHTTP_REQ_POST, h_find},
    {"/api/hosts", HR_EP_HOSTS, EVHTTP_REQ_GET, h_hosts},
    {"/api/hosts/ttl", HR_EP_HOSTS, EVHTTP_REQ_GET, h_hosts_ttl},
    {"/healthz", HR_EP_HEALTHZ, EVHTTP_REQ_GET, h_healthz},
    {"/health", HR_EP_HEALTHZ, EVHTTP_REQ_GET, h_healthz}, /* the original's name */
    {"/", HR_EP_HEALTHZ, EVHTTP_REQ_GET, h_root},
    {"/readyz", HR_EP_READYZ, EVHTTP_REQ_GET, h_readyz},
    {"/metrics", HR_EP_METRICS, EVHTTP_REQ_GET, h_metrics},
    {"/dashboard", HR_EP_DASHBOARD, EVHTTP_REQ_GET, h_dashboard},
    {"/dashboard/stats", HR_EP_DASHBOARD, EVHTTP_REQ_GET, h_dashboard_stats},
};

static void request_id(struct call *c)
{
    const char *in = evhttp_find_header(evhttp_request_get_input_headers(c->req), "X-Request-Id");
    if (in && hr_id_valid(in, strlen(in))) {
        snprintf(c->rid, sizeof(c->rid), "%s", in);
        return;
    }
    /* Unique per process (a count), and per start (a random prefix). */
    snprintf(c->rid, sizeof(c->rid), "%08" PRIx32 "%08" PRIx32, c->gw->rid_prefix,
             c->gw->rid_next++);
}

static void preflight(struct call *c)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(c->req);
    const char *want = evhttp_find_header(evhttp_request_get_input_headers(c->req),
                                          "Access-Control-Request-Headers");
    evhttp_add_header(out, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    evhttp_add_header(out, "Access-Control-Allow-Headers",
                      want && strlen(want) < 512 ? want
                                                 : "Content-Type, Authorization, X-Request-Id");
    evhttp_add_header(out, "Access-Control-Max-Age", "600");
    finish(c, 204, NULL, NULL, 0, false);
}

/* The problem with the request's framing, as the message of its 400, or NULL
 * when its target is clean and its body has one length only. evhttp has framed it already (by the
 * first Content-Length, or as chunked); a proxy in front that reads the
 * headers another way would see other requests in the same bytes (request
 * smuggling). Refused, as RFC 9112 6.1 and 6.3 allow or require: both
 * framings at once, Content-Lengths that differ, several Transfer-Encoding
 * headers, and any coding but a lone "chunked", the only one read here (with
 * another, evhttp takes the body for the next request, or leaves a coding
 * undone). Equal Content-Lengths are one length (6.3 allows them). */
static const char *framing_error(struct evhttp_request *req)
{
    /* A request line with a control character in its target (a NUL among
     * them, nul_to_control) is no HTTP/1.1 request line (RFC 9112 3.2). */
    const char *target = evhttp_request_get_uri(req);
    if (target && has_control(target))
        return "control character in the request target";
    const char *length = NULL, *coding = NULL;
    const struct evkeyval *h;
    TAILQ_FOREACH(h, evhttp_request_get_input_headers(req), next)
    {
        if (strcasecmp(h->key, "Content-Length") == 0) {
            if (length && strcmp(length, h->value) != 0)
                return "conflicting Content-Length headers";
            length = h->value;
        } else if (strcasecmp(h->key, "Transfer-Encoding") == 0) {
            if (coding)
                return "more than one Transfer-Encoding header";
            coding = h->value;
        }
    }
    if (coding && length)
        return "both Content-Length and Transfer-Encoding";
    if (coding && strcasecmp(coding, "chunked") != 0)
        return "unsupported Transfer-Encoding (only chunked)";
    return NULL;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct hr_gateway *gw = arg;
    struct call *c = calloc(1, sizeof(*c));
    if (!c) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    c->gw = gw;
    c->req = req;
    c->ep = HR_EP_OTHER;
    clock_gettime(CLOCK_MONOTONIC, &c->start);
    request_id(c);

    /* Refused before any handler sees the body, and the connection closed:
     * what follows on it cannot be framed with any certainty. */
    const char *framing = framing_error(req);
    if (framing) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        reply_error(c, 400, "%s", framing);
        return;
    }
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path)
        path = "/";
    const struct route *r = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(routes[i].path, path) == 0)
            r = &routes[i];
    if (m == EVHTTP_REQ_OPTIONS) {
        c->ep = HR_EP_PREFLIGHT;
        preflight(c);
        return;
    }
    if (!r) {
        char esc[96];
        reply_error(c, 404, "no such endpoint: %s",
                    hr_log_escape(esc, sizeof(esc), path, strlen(path) > 64 ? 64 : strlen(path)));
        return;
    }
    c->ep = r->ep;
    if (gw->closing) { /* read during shutdown: the store is gone or going */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        reply_error(c, 503, "shutting down, retry later");
        return;
    }
    /* HEAD wherever GET: evhttp sends the headers and leaves the body out. */
    if (m != r->method && !(m == EVHTTP_REQ_HEAD && r->method == EVHTTP_REQ_GET)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          r->method == EVHTTP_REQ_POST ? "POST, OPTIONS" : "GET, OPTIONS");
        reply_error(c, 405, "%s %s is not allowed, use %s", method_name(m), r->path,
                    method_name(r->method));
        return;
    }
    r->handler(c);
}

/* Turns each NUL byte among the last `n` bytes of `in` (what a read just
 * added; evhttp only ever takes from the front) into 0x01, in place. evhttp
 * 2.1 cuts a header value at its first NUL, so "Bearer <secret>\0junk"
 * would pass as the secret; as 0x01 it is a control character, which
 * check_secret refuses (401) like any other. NUL is valid nowhere in a
 * request line, a header or a JSON body, so no valid request changes. */
static void nul_to_control(struct evbuffer *in, size_t n)
{
    struct evbuffer_ptr at;
    if (evbuffer_ptr_set(in, &at, evbuffer_get_length(in) - n, EVBUFFER_PTR_SET) != 0)
        return;
    while (n > 0) {
        struct evbuffer_iovec v[8];
        int nv = evbuffer_peek(in, (ev_ssize_t)n, &at, v, 8);
        if (nv <= 0)
            return;
        if (nv > 8)
            nv = 8;
        size_t seen = 0;
        for (int i = 0; i < nv && seen < n; i++) {
            size_t m = v[i].iov_len < n - seen ? v[i].iov_len : n - seen;
            unsigned char *p = v[i].iov_base, *end = p + m;
            while ((p = memchr(p, 0, (size_t)(end - p))) != NULL)
                *p++ = 0x01;
            seen += m;
        }
        n -= seen;
        if (n > 0 && evbuffer_ptr_set(in, &at, seen, EVBUFFER_PTR_ADD) != 0)
            return;
    }
}

/* Called whenever a connection's input changes, synchronously (evhttp's
 * bufferevents do not defer their buffers' callbacks), so `bev` is alive.
 * At CONN_INPUT_MAX the bufferevent has stopped reading (its watermark). While
 * evhttp writes an answer (its read callback NULL, evhttp_write_buffer), that
 * waits for the client: evhttp's write timeout closes the connection
 * --http-timeout after its last progress. While it reads a request, the
 * input must hold a line it can parse, or nothing would ever resume reading,
 * and no read timeout runs while reading is off. */
static void conn_input_cb(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    struct bufferevent *bev = arg;
    size_t len = evbuffer_get_length(in);
    if (info->n_added > 0)
        nul_to_control(in, info->n_added);
    if (info->n_added == 0 || len < CONN_INPUT_MAX)
        return;
    bufferevent_data_cb readcb;
    bufferevent_getcb(bev, &readcb, NULL, NULL, NULL);
    if (!readcb)
        return;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
    if (eol.pos >= 0 && (size_t)eol.pos < CONN_LINE_MAX)
        return;
    /* Not freed here, inside libevent's read: handed to evhttp as a read
     * error after it (deferred, holding a reference to `bev`), which drops
     * the connection as it does any broken one. */
    bufferevent_trigger_event(bev, BEV_EVENT_READING | BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
    HR_LOG_LIMITED(HR_LOG_INFO, "http connection dropped: %zu bytes and no end of line in them",
                   len);
}

/* evhttp answers some requests itself before any handler sees them
 * (evhttp_send_error): a body over EVHTTP_MAX_BODY or a chunk size it cannot
 * read (413), a request line or header it cannot parse (400), and so on,
 * each with an HTML page. Every error answer of the gateway is JSON
 * (CONTRACT.md), so when such a page has just been queued (it ends the
 * output: evhttp closes the connection after it) it is replaced by the same
 * status with a JSON body and a request id. evhttp 2.1 has no hook for its
 * own error pages; its page is this template, whole. */
#define EVHTTP_PAGE_END "</BODY></HTML>\n"
#define EVHTTP_PAGE_START "\r\n\r\n<HTML><HEAD>\n<TITLE>"

/* The JSON body of an answer evhttp gave itself, by status; its length. */
static int evhttp_error_body(int code, char *buf, size_t len)
{
    if (code == 413)
        return snprintf(buf, len,
                        "{\"success\":false,\"error\":\"request body too large: the limit is %d "
                        "bytes\"}",
                        HR_GATEWAY_MAX_BODY);
    return snprintf(buf, len, "{\"success\":false,\"error\":\"%s\"}",
                    code == 400 ? "malformed HTTP request" : "HTTP request refused");
}

static void conn_output_cb(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
    static _Thread_local bool rewriting; /* our own changes call back here */
    struct hr_gateway *gw = arg;
    size_t len = evbuffer_get_length(out), tail = sizeof(EVHTTP_PAGE_END) - 1;
    if (rewriting || info->n_added == 0 || len < tail)
        return;
    char end[sizeof(EVHTTP_PAGE_END)];
    struct evbuffer_ptr at;
    if (evbuffer_ptr_set(out, &at, len - tail, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(out, &at, end, tail) != (ev_ssize_t)tail ||
        memcmp(end, EVHTTP_PAGE_END, tail) != 0)
        return;
    struct evbuffer_ptr page =
        evbuffer_search(out, EVHTTP_PAGE_START, strlen(EVHTTP_PAGE_START), NULL);
    if (page.pos < 0)
        return;
    /* Its status line: the last one before the page. */
    ev_ssize_t start = -1;
    struct evbuffer_ptr p = evbuffer_search(out, "HTTP/1.", 7, NULL);
    while (p.pos >= 0 && p.pos < page.pos) {
        start = p.pos;
        if (evbuffer_ptr_set(out, &p, 1, EVBUFFER_PTR_ADD) != 0)
            break;
        p = evbuffer_search(out, "HTTP/1.", 7, &p);
    }
    char line[16] = "";
    if (start < 0 || evbuffer_ptr_set(out, &at, (size_t)start, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(out, &at, line, 12) != 12)
        return;
    line[12] = '\0';
    int code = atoi(line + 9);
    if (code < 400 || code > 599)
        return;

    char rid[24], body[160], head[512];
    snprintf(rid, sizeof(rid), "%08" PRIx32 "%08" PRIx32, gw->rid_prefix, gw->rid_next++);
    int blen = evhttp_error_body(code, body, sizeof(body));
    int hlen = snprintf(head, sizeof(head),
                        "%.8s %d %s\r\nContent-Type: application/json\r\nContent-Length: "
                        "%d\r\nConnection: close\r\nX-Request-Id: %s\r\n\r\n",
                        line, code, reason_phrase(code), blen, rid);
    rewriting = true;
    struct evbuffer *keep = evbuffer_new();
    if (keep && evbuffer_remove_buffer(out, keep, (size_t)start) == (int)start &&
        evbuffer_drain(out, evbuffer_get_length(out)) == 0) {
        evbuffer_add_buffer(out, keep);
        evbuffer_add(out, head, (size_t)hlen);
        evbuffer_add(out, body, (size_t)blen);
    }
    if (keep)
        evbuffer_free(keep);
    rewriting = false;
    hr_metrics_record(&gw->metrics, HR_EP_OTHER, code, 0);
    HR_LOG_LIMITED(HR_LOG_INFO, "http %d (refused by evhttp before any handler) rid=%s", code, rid);
}

/* evhttp's bufferevent for each accepted connection (evhttp_set_bevcb): the
 * same as evhttp would make, plus a read high-watermark of CONN_INPUT_MAX
 * (evhttp enables and disables reading as it goes but never sets
 * watermarks, so the bound holds for the connection's life) and
 * conn_input_cb. Without BEV_OPT_CLOSE_ON_FREE, as evhttp's own: evhttp
 * closes the socket itself after freeing it. NULL (out of memory) lets
 * evhttp make one, unbounded. */
static struct bufferevent *conn_bufferevent(struct event_base *base, void *arg)
{
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    if (bev && (!evbuffer_add_cb(bufferevent_get_input(bev), conn_input_cb, bev) ||
                !evbuffer_add_cb(bufferevent_get_output(bev), conn_output_cb, arg))) {
        bufferevent_free(bev);
        bev = NULL;
    }
    if (bev)
        bufferevent_setwatermark(bev, EV_READ, 0, CONN_INPUT_MAX);
    return bev;
}

/* --- running out of descriptors --- */

/* How long accepting pauses after accept() fails: the longest a connection
 * waits once descriptors are free again, and at most ten wake-ups a second
 * while they are not. */
#define ACCEPT_PAUSE_MS 100
/* One log line at most this often while accept() keeps failing: the condition
 * lasts, and a line per pause (HR_LOG_LIMITED would let ten a second through)
 * says nothing the count in the next line does not. */
#define ACCEPT_LOG_INTERVAL_S 10

/* The live gateways (main.c makes one), for on_accept_error: libevent hands
 * it the listener's argument, which evhttp has set to its struct evhttp. */
static struct hr_gateway *gateways;

/* accept() failed with something other than "try again": out of descriptors
 * (EMFILE, ENFILE) or of kernel memory. Without this callback libevent 2.1's
 * listener logs and calls accept() again at once, and spins at 100% CPU for as
 * long as the descriptors stay taken. Instead the listener pauses for
 * ACCEPT_PAUSE_MS. Pausing rather than shedding (a spare descriptor freed to
 * accept and close the excess): the waiting connections sit in the kernel's
 * accept queue at no descriptor cost and are served as soon as descriptors
 * free up, so a burst of real clients (a round all finding at once) is
 * answered a little late instead of reset; shedding would serve nobody sooner.
 * Beyond the queue (the listen backlog) the kernel drops SYNs and clients
 * retransmit, as with any full server. Open connections are served meanwhile. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct hr_gateway *gw = gateways;
    while (gw && gw->http != arg)
        gw = gw->next;
    if (!gw)
        return;
    struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
    evconnlistener_disable(lev);
    event_add(gw->accept_ev, &pause);
    gw->accept_errors++;
    gw->accept_unlogged++;
    if (gw->accept_errors == 1 || elapsed_s(&gw->accept_logged) >= ACCEPT_LOG_INTERVAL_S) {
        HR_LOG(HR_LOG_WARN,
               "accept failed: %s (%lu times since the last such line, %" PRIu64
               " in all): new connections wait, tried again every %d ms",
               strerror(err), gw->accept_unlogged, gw->accept_errors, ACCEPT_PAUSE_MS);
        clock_gettime(CLOCK_MONOTONIC, &gw->accept_logged);
        gw->accept_unlogged = 0;
    }
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hr_gateway *gw = arg;
    if (gw->sock) /* not closed meanwhile (shutdown) */
        evconnlistener_enable(evhttp_bound_socket_get_listener(gw->sock));
}

struct hr_gateway *hr_gateway_new(struct event_base *base, struct hr_store *store,
                                  const struct hr_gateway_config *cfg, char *err, size_t errlen)
{
    struct hr_gateway *gw = calloc(1, sizeof(*gw));
    if (!gw) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    gw->base = base;
    gw->store = store;
    gw->cfg = *cfg;
    unsigned char key[32];
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    gw->mac = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    EVP_MAC_free(hmac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (RAND_bytes(key, sizeof(key)) != 1 ||
        RAND_bytes((unsigned char *)&gw->rid_prefix, sizeof(gw->rid_prefix)) != 1) {
        snprintf(err, errlen, "no randomness for the secret key");
        goto fail;
    }
    if (!gw->mac || EVP_MAC_init(gw->mac, key, sizeof(key), params) != 1) {
        snprintf(err, errlen, "cannot set up HMAC-SHA256");
        goto fail;
    }
    OPENSSL_cleanse(key, sizeof(key));
    const char *secrets[2] = {cfg->host_secret, cfg->host_secret_previous};
    for (int i = 0; i < 2; i++) {
        if (secrets[i][0] && mac_of(gw, secrets[i], gw->secret_mac[gw->nsecrets++]) != 0) {
            snprintf(err, errlen, "cannot compute HMAC-SHA256");
            goto fail;
        }
    }
    int n = snprintf(gw->heartbeat_ok, sizeof(gw->heartbeat_ok), "{\"success\":true,\"ttl\":%u}",
                     cfg->common.ttl_s);
    gw->heartbeat_ok_len = (size_t)n;
    gw->http = evhttp_new(base);
    if (!gw->http) {
        snprintf(err, errlen, "cannot create the HTTP server");
        goto fail;
    }
    /* libevent's defaults are unlimited sizes and 50 s timeouts: a few slow
     * or bloated clients could hold memory and sockets for long. Bodies
     * between our 100 KiB and evhttp's cap get our JSON 413; beyond the cap
     * evhttp answers 413 itself and closes. */
    evhttp_set_max_headers_size(gw->http, 8192);
    evhttp_set_max_body_size(gw->http, EVHTTP_MAX_BODY);
    evhttp_set_timeout(gw->http, (int)cfg->http_timeout_s);
    /* These methods reach the router, which answers a wrong one with the
     * contract's JSON 405 and an Allow header; others get evhttp's HTML 501.
     * CONNECT stays out: evhttp reads its target as an authority, not a path,
     * and keeps the connection open after answering it. */
    evhttp_set_allowed_methods(
        gw->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                      EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(gw->http, on_request, gw);
    evhttp_set_bevcb(gw->http, conn_bufferevent, gw);
    gw->sock = evhttp_bind_socket_with_handle(gw->http, cfg->listen_host, cfg->listen_port);
    if (!gw->sock) {
        snprintf(err, errlen, "cannot listen on %s:%u (address in use?)", cfg->listen_host,
                 cfg->listen_port);
        goto fail;
    }
    /* evhttp listens with a backlog of 128: a burst of more simultaneous
     * connects (clients of a round all finding a host at once) overflows the
     * accept queue, and the excess wait for the kernel's 1 s SYN retransmit.
     * A second listen() sets a new backlog (capped by net.core.somaxconn). */
    if (listen(evhttp_bound_socket_get_fd(gw->sock), SOMAXCONN) != 0)
        HR_LOG(HR_LOG_WARN, "cannot raise the listen backlog: %s", strerror(errno));
    if (cfg->source_hosts) {
        struct hr_limits_config lc = {.source_hosts = cfg->source_hosts,
                                      .window_ms = cfg->common.ttl_s * 1000};
        if (!(gw->limits = hr_limits_new(&lc))) {
            snprintf(err, errlen, "out of memory or no random bytes for the limits");
            goto fail;
        }
    }
    gw->accept_ev = evtimer_new(base, on_accept_resume, gw);
    gw->release_ev = evtimer_new(base, on_release_timer, gw);
    if (!gw->accept_ev || !gw->release_ev) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (cfg->list_cache_ms) {
        gw->lists = hr_listcache_new(LIST_CACHE_SLOTS, cfg->list_cache_ms);
        if (!gw->lists) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    gw->next = gateways;
    gateways = gw;
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(gw->sock), on_accept_error);
    return gw;
fail:
    hr_gateway_free(gw);
    return NULL;
}

void hr_gateway_free(struct hr_gateway *gw)
{
    if (!gw)
        return;
    for (struct hr_gateway **p = &gateways; *p; p = &(*p)->next)
        if (*p == gw) {
            *p = gw->next;
            break;
        }
    if (gw->http)
        evhttp_free(gw->http);
    if (gw->accept_ev)
        event_free(gw->accept_ev);
    if (gw->release_ev)
        event_free(gw->release_ev);
    while (gw->releases) /* none in flight: the store is freed first */
        release_unlink(gw->releases);
    hr_limits_free(gw->limits);
    hr_listcache_free(gw->lists);
    EVP_MAC_CTX_free(gw->mac);
    free(gw);
}

void hr_gateway_close(struct hr_gateway *gw)
{
    hr_gateway_stop_accepting(gw);
    gw->closing = true;
}

void hr_gateway_stop_accepting(struct hr_gateway *gw)
{
    if (gw->sock) {
        evhttp_del_accept_socket(gw->http, gw->sock);
        gw->sock = NULL;
    }
    if (gw->accept_ev)
        event_del(gw->accept_ev);
}

size_t hr_gateway_pending(const struct hr_gateway *gw)
{
    return gw->pending;
}

int hr_gateway_port(const struct hr_gateway *gw)
{
    if (!gw->sock)
        return -1;
    evutil_socket_t fd = evhttp_bound_socket_get_fd(gw->sock);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}
