#include "cluster.h"

#include "clock.h"
#include "err.h"
#include "log.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Refresh backoff after trouble (a lost master, a MOVED, a failed refresh):
 * the first refresh comes quickly, so a reshard or a failover costs little,
 * and at most one a second while the cluster stays broken, as conn.c
 * reconnects. */
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
/* While all is well, the map is read again this often: a failover or a
 * reshard that none of our commands ran into is seen within 2 s, and
 * CLUSTER SLOTS and CLUSTER INFO cost one round trip. */
#define REFRESH_PERIOD_MS 2000
/* Redirections followed per command: a slot moves once per reshard step, and
 * a map that bounces a command around more often than this is broken. */
#define MAX_REDIRECTS 5
/* TRYAGAIN comes while a slot's keys are being migrated: a short pause lets
 * the migration of a few keys end. */
#define TRYAGAIN_DELAY_MS 25
/* Nodes ever known (they are kept until the cluster is freed): Redis Cluster
 * is designed for up to about 1000 nodes. */
#define NODES_MAX 1024
#define NO_NODE UINT16_MAX

enum kind {
    K_USER,  /* a caller's command */
    K_AUTH,  /* the connection's AUTH */
    K_SLOTS, /* CLUSTER SLOTS of a refresh */
    K_INFO,  /* CLUSTER INFO of a refresh */
};

/* One command, with its own copy of the arguments (one allocation). While
 * sent it is in its node's in-flight list (oldest first, answered in that
 * order); while waiting after TRYAGAIN it is in the cluster's delayed list. */
struct cmd {
    struct cmd *prev, *next;
    struct node *node; /* where it was sent last */
    uint64_t at_ms;    /* sent, or (delayed) due */
    hr_cluster_cb *cb;
    void *arg;
    const char *why; /* set when its connection is dropped: what the caller is told */
    enum kind kind;
    int slot; /* -1: sent to a node, not routed by slot (until a redirection names one) */
    int redirects;
    bool asking;  /* sent behind ASKING (after ASK) */
    uint64_t gen; /* refresh commands: the refresh they belong to */
    int argc;
    const char **argv;
    size_t *argvlen;
};

struct node {
    struct hr_cluster *cl;
    char host[256];
    int port;
    char name[272];        /* host:port */
    uint16_t idx;          /* in cl->nodes */
    int master;            /* index in cl->masters, -1 when not a master of the map */
    redisAsyncContext *ac; /* NULL while down */
    bool connected;        /* connected and authenticated */
    uint64_t connect_started_ms;
    struct cmd head;        /* sentinel of the in-flight list */
    size_t inflight;        /* callers' commands in it */
    uint64_t last_reply_ms; /* its last reply of any kind (or its connect): progress */
    char auth_error[160];   /* AUTH's refusal, what the calls behind it are told */
};

struct hr_cluster {
    struct event_base *base;
    struct hr_cluster_config cfg;
    struct node **nodes; /* every node ever known: seeds, map entries, redirections */
    size_t nnodes, capnodes;
    uint16_t owner[HR_CLUSTER_SLOTS]; /* node index per slot, NO_NODE when none */
    uint16_t next[HR_CLUSTER_SLOTS];  /* a CLUSTER SLOTS reply being read */
    uint16_t masters[NODES_MAX];      /* node indexes, in the order of their first slot */
    size_t nmasters;
    bool map_loaded;
    bool state_ok;  /* the last CLUSTER INFO said cluster_state:ok */
    char state[16]; /* its cluster_state, "unknown" before */
    bool ready;
    char reason[600];
    /* The refresh: one at a time; its generation tells its replies from a
     * late one of an abandoned refresh; another is due when `again` is set. */
    bool refreshing, again;
    uint64_t refresh_gen;
    size_t refresh_next; /* the node to ask first next time */
    char refresh_error[512];
    uint32_t backoff_ms;
    uint64_t refresh_due_ms;
    struct event *refresh_ev, *tick_ev, *delay_ev;
    struct cmd delayed; /* sentinel: commands waiting after TRYAGAIN, due time order */
    bool freeing;
    struct hr_cluster_stats stats;
};

/* --- slots --- */

/* CRC16 as Redis Cluster specifies it (XMODEM: polynomial 0x1021, initial
 * value 0, no reflection, no final xor), bit by bit: keys are short. */
static uint16_t crc16(const unsigned char *p, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = crc & 0x8000 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int hr_cluster_keyslot(const char *key, size_t len)
{
    if (len == 0)
        return 0;
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t after = len - (size_t)(open - key) - 1;
        const char *close = after ? memchr(open + 1, '}', after) : NULL;
        if (close && close > open + 1) { /* an empty tag "{}" hashes the whole key */
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    return crc16((const unsigned char *)key, len) & (HR_CLUSTER_SLOTS - 1);
}

/* --- commands --- */

static struct cmd *cmd_new(int argc, const char **argv, const size_t *argvlen)
{
    size_t n = (size_t)argc, data = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        if (len > SIZE_MAX / 4 - data)
            return NULL;
        data += len + 1;
    }
    /* struct cmd, then the lengths, the pointers and the bytes: each array
     * starts on a multiple of 8 bytes. */
    struct cmd *k = calloc(1, sizeof(*k) + n * (sizeof(size_t) + sizeof(char *)) + data);
    if (!k)
        return NULL;
    k->argvlen = (size_t *)(k + 1);
    k->argv = (const char **)(k->argvlen + n);
    char *p = (char *)(k->argv + n);
    for (size_t i = 0; i < n; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        memcpy(p, argv[i], len);
        p[len] = '\0';
        k->argv[i] = p;
        k->argvlen[i] = len;
        p += len + 1;
    }
    k->argc = argc;
    k->slot = -1;
    k->prev = k->next = k;
    return k;
}

static void list_append(struct cmd *head, struct cmd *k)
{
    k->prev = head->prev;
    k->next = head;
    head->prev->next = k;
    head->prev = k;
}

static void list_unlink(struct cmd *k)
{
    k->prev->next = k->next;
    k->next->prev = k->prev;
    k->prev = k->next = k;
}

static void untrack(struct cmd *k)
{
    list_unlink(k);
    if (k->kind == K_USER)
        k->node->inflight--;
}

/* --- readiness --- */

static void update_ready(struct hr_cluster *cl)
{
    bool was = cl->ready;
    cl->ready = false;
    if (!cl->map_loaded) {
        snprintf(cl->reason, sizeof(cl->reason), "no slot map yet%s%s",
                 cl->refresh_error[0] ? ": " : "", cl->refresh_error);
    } else {
        int s = 0;
        while (s < HR_CLUSTER_SLOTS && cl->owner[s] != NO_NODE &&
               cl->nodes[cl->owner[s]]->connected)
            s++;
        if (s < HR_CLUSTER_SLOTS) {
            int e = s;
            while (e + 1 < HR_CLUSTER_SLOTS && cl->owner[e + 1] == cl->owner[s])
                e++;
            char range[32];
            snprintf(range, sizeof(range), e > s ? "slots %d-%d" : "slot %d", s, e);
            if (cl->owner[s] == NO_NODE)
                snprintf(cl->reason, sizeof(cl->reason), "%s %s no master", range,
                         e > s ? "have" : "has");
            else
                snprintf(cl->reason, sizeof(cl->reason), "%s: master %s not connected", range,
                         cl->nodes[cl->owner[s]]->name);
        } else if (!cl->state_ok) {
            snprintf(cl->reason, sizeof(cl->reason), "cluster_state:%s", cl->state);
        } else {
            cl->ready = true;
            cl->reason[0] = '\0';
        }
    }
    if (was && !cl->ready)
        HR_LOG_LIMITED(HR_LOG_WARN, "redis cluster: not ready: %s", cl->reason);
    else if (!was && cl->ready)
        HR_LOG_LIMITED(HR_LOG_INFO, "redis cluster: ready, %zu masters", cl->nmasters);
}

/* --- refresh scheduling --- */

static void schedule_refresh(struct hr_cluster *cl, uint32_t ms)
{
    if (cl->freeing)
        return;
    uint64_t due = hr_mono_ms() + ms;
    if (evtimer_pending(cl->refresh_ev, NULL) && cl->refresh_due_ms <= due)
        return; /* one is due sooner already */
    cl->refresh_due_ms = due;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(cl->refresh_ev, &tv);
}

/* Something changed (a master lost, a MOVED, CLUSTERDOWN): the map is read
 * again after the current backoff, or right after the refresh under way. */
static void refresh_soon(struct hr_cluster *cl)
{
    if (cl->freeing)
        return;
    if (cl->refreshing)
        cl->again = true;
    else
        schedule_refresh(cl, cl->backoff_ms);
}

static void backoff_grow(struct hr_cluster *cl)
{
    cl->backoff_ms = cl->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : cl->backoff_ms * 2;
}

/* --- nodes and connections --- */

/* The node host:port, created when new; NULL when out of memory or when
 * NODES_MAX are known. */
static struct node *node_get(struct hr_cluster *cl, const char *host, size_t hostlen, int port)
{
    for (size_t i = 0; i < cl->nnodes; i++) {
        struct node *n = cl->nodes[i];
        if (n->port == port && strlen(n->host) == hostlen && memcmp(n->host, host, hostlen) == 0)
            return n;
    }
    if (cl->nnodes >= NODES_MAX || hostlen == 0 || hostlen >= sizeof(cl->nodes[0]->host)) {
        HR_LOG_LIMITED(HR_LOG_ERROR, "redis cluster: cannot add node %.*s:%d", (int)hostlen, host,
                       port);
        return NULL;
    }
    if (cl->nnodes == cl->capnodes) {
        size_t cap = cl->capnodes ? cl->capnodes * 2 : 8;
        struct node **v = realloc(cl->nodes, cap * sizeof(*v));
        if (!v)
            return NULL;
        cl->nodes = v;
        cl->capnodes = cap;
    }
    struct node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->cl = cl;
    memcpy(n->host, host, hostlen);
    n->port = port;
    snprintf(n->name, sizeof(n->name), "%s:%d", n->host, port);
    n->idx = (uint16_t)cl->nnodes;
    n->master = -1;
    n->head.prev = n->head.next = &n->head;
    cl->nodes[cl->nnodes++] = n;
    return n;
}

/* The connection is gone (lost, refused, or dropped by us): the node stops
 * counting as connected, and losing a master's means the map is read again. */
static void node_down(struct node *n)
{
    struct hr_cluster *cl = n->cl;
    n->ac = NULL;
    n->connected = false;
    if (cl->freeing)
        return;
    if (n->master >= 0)
        refresh_soon(cl);
    update_ready(cl);
}

/* Drops n's connection: every call in flight on it fails with `why` (by
 * hiredis calling back with no reply: now, or, inside a callback of this
 * very connection, right after that callback). */
static void drop_node(struct node *n, const char *why)
{
    redisAsyncContext *ac = n->ac;
    if (!ac)
        return;
    for (struct cmd *k = n->head.next; k != &n->head; k = k->next)
        if (!k->why)
            k->why = why;
    node_down(n);
    redisAsyncFree(ac);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

/* Hands k to n's connection (behind ASKING after an ASK); on success it is
 * at the tail of n's in-flight list. */
static int send_cmd(struct node *n, struct cmd *k)
{
    if (!n->ac)
        return HR_E_UNAVAILABLE;
    /* The ASKING and the command go out back to back on one connection:
     * ASKING applies to the very next command. Its reply is of no use (an
     * error shows in the command's own reply), hence no callback. */
    if (k->asking && redisAsyncCommand(n->ac, NULL, NULL, "ASKING") != REDIS_OK)
        return HR_E_UNAVAILABLE;
    if (redisAsyncCommandArgv(n->ac, on_reply, k, k->argc, k->argv, k->argvlen) != REDIS_OK) {
        if (k->asking) /* a lone ASKING would apply to whatever comes next */
            drop_node(n, "connection lost");
        return HR_E_UNAVAILABLE;
    }
    k->node = n;
    k->why = NULL;
    k->at_ms = hr_mono_ms();
    list_append(&n->head, k);
    if (k->kind == K_USER)
        n->inflight++;
    return HR_OK;
}

static int send_internal(struct node *n, enum kind kind, uint64_t gen, int argc, const char **argv)
{
    struct cmd *k = cmd_new(argc, argv, NULL);
    if (!k)
        return HR_E_NOMEM;
    k->kind = kind;
    k->gen = gen;
    int rc = send_cmd(n, k);
    if (rc != HR_OK)
        free(k);
    return rc;
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct node *n = ac->data;
    if (n->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis fails the calls in flight and frees the context after
         * this callback. */
        HR_LOG_LIMITED(HR_LOG_WARN, "redis cluster: cannot connect to %s: %s", n->name,
                       ac->errstr ? ac->errstr : "error");
        for (struct cmd *k = n->head.next; k != &n->head; k = k->next)
            if (!k->why)
                k->why = "cannot connect";
        node_down(n);
        return;
    }
    if (!n->cl->cfg.pass[0]) {
        n->connected = true;
        n->last_reply_ms = hr_mono_ms();
        update_ready(n->cl);
    }
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct node *n = cac->data;
    if (n->ac != cac)
        return; /* dropped by us, or lost and seen by a call's callback already */
    HR_LOG_LIMITED(HR_LOG_WARN, "redis cluster: lost %s: %s", n->name,
                   status == REDIS_OK || !cac->errstr ? "closed" : cac->errstr);
    node_down(n);
}

/* Starts connecting to n, with AUTH first when there is a password (the
 * commands sent meanwhile wait in hiredis's buffer, behind it). */
static int connect_node(struct node *n)
{
    struct hr_cluster *cl = n->cl;
    redisAsyncContext *ac = redisAsyncConnect(n->host, n->port);
    cl->stats.connects++;
    if (!ac)
        return HR_E_NOMEM;
    if (ac->err) {
        HR_LOG_LIMITED(HR_LOG_WARN, "redis cluster: cannot connect to %s: %s", n->name, ac->errstr);
        redisAsyncFree(ac);
        return HR_E_UNAVAILABLE;
    }
    ac->data = n;
    n->ac = ac;
    n->connected = false;
    n->connect_started_ms = hr_mono_ms();
    redisLibeventAttach(ac, cl->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (cl->cfg.pass[0]) {
        const char *user[] = {"AUTH", cl->cfg.user, cl->cfg.pass};
        const char *plain[] = {"AUTH", cl->cfg.pass};
        int rc = cl->cfg.user[0] ? send_internal(n, K_AUTH, 0, 3, user)
                                 : send_internal(n, K_AUTH, 0, 2, plain);
        if (rc != HR_OK) {
            drop_node(n, "out of memory");
            return rc;
        }
    }
    return HR_OK;
}

static void on_auth(struct node *n, redisAsyncContext *ac, const char *error)
{
    struct hr_cluster *cl = n->cl;
    if (cl->freeing || n->ac != ac)
        return; /* the connection is gone already */
    if (error) {
        HR_LOG_LIMITED(HR_LOG_ERROR, "redis cluster: %s refused AUTH: %.200s", n->name, error);
        snprintf(n->auth_error, sizeof(n->auth_error), "AUTH refused: %.120s", error);
        drop_node(n, n->auth_error); /* the calls fail right after this callback */
        return;
    }
    n->connected = true;
    n->last_reply_ms = hr_mono_ms();
    update_ready(cl);
}

/* --- the slot map --- */

static void refresh_failed(struct hr_cluster *cl, struct node *n, const char *error)
{
    cl->refreshing = false;
    cl->again = false;
    cl->stats.refresh_failures++;
    snprintf(cl->refresh_error, sizeof(cl->refresh_error), "%s%s%.200s", n ? n->name : "",
             n ? ": " : "", error);
    HR_LOG_LIMITED(HR_LOG_WARN, "redis cluster: cannot read the slot map: %s", cl->refresh_error);
    if (n) /* ask another node next time */
        cl->refresh_next = ((size_t)n->idx + 1) % cl->nnodes;
    update_ready(cl);
    backoff_grow(cl);
    schedule_refresh(cl, cl->backoff_ms);
}

/* Reads a CLUSTER SLOTS reply into cl->next: [[start, end, [host, port,
 * id, ...], replicas...], ...]. A null or empty host means the node that
 * answered (Redis 7 says so when it does not know its own address); "?" an
 * unknown one (its slots stay without master). 0, or -1 when malformed. */
static int parse_slots(struct hr_cluster *cl, const struct node *from, const redisReply *r)
{
    for (size_t s = 0; s < HR_CLUSTER_SLOTS; s++)
        cl->next[s] = NO_NODE;
    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY)
            return -1;
        long long start = e->element[0]->integer, end = e->element[1]->integer;
        const redisReply *m = e->element[2];
        if (start < 0 || end < start || end >= HR_CLUSTER_SLOTS || m->elements < 2 ||
            (m->element[0]->type != REDIS_REPLY_STRING && m->element[0]->type != REDIS_REPLY_NIL) ||
            m->element[1]->type != REDIS_REPLY_INTEGER || m->element[1]->integer <= 0 ||
            m->element[1]->integer > 65535)
            return -1;
        const char *host = m->element[0]->str;
        size_t hostlen = m->element[0]->type == REDIS_REPLY_STRING ? m->element[0]->len : 0;
        if (hostlen == 1 && host[0] == '?')
            continue;
        if (hostlen == 0) {
            host = from->host;
            hostlen = strlen(from->host);
        }
        struct node *n = node_get(cl, host, hostlen, (int)m->element[1]->integer);
        if (!n)
            return -1;
        for (long long s = start; s <= end; s++)
            cl->next[s] = n->idx;
    }
    return 0;
}

/* Makes n a master of the map, at the end of the list, when it is not one. */
static void add_master(struct hr_cluster *cl, struct node *n)
{
    if (n->master < 0) {
        n->master = (int)cl->nmasters;
        cl->masters[cl->nmasters++] = n->idx;
    }
}

/* cl->next becomes the map; every master of it gets a connection. */
static void apply_map(struct hr_cluster *cl, const struct node *from)
{
    size_t before = cl->nmasters;
    uint16_t old[NODES_MAX];
    memcpy(old, cl->masters, before * sizeof(old[0]));
    memcpy(cl->owner, cl->next, sizeof(cl->owner));
    cl->map_loaded = true;
    for (size_t i = 0; i < cl->nnodes; i++)
        cl->nodes[i]->master = -1;
    cl->nmasters = 0;
    for (size_t s = 0; s < HR_CLUSTER_SLOTS; s++)
        if (cl->owner[s] != NO_NODE)
            add_master(cl, cl->nodes[cl->owner[s]]);
    for (size_t i = 0; i < cl->nmasters; i++) {
        struct node *n = cl->nodes[cl->masters[i]];
        if (!n->ac)
            connect_node(n); /* a failure shows in the readiness */
    }
    if (before != cl->nmasters || memcmp(old, cl->masters, before * sizeof(old[0])) != 0)
        HR_LOG(HR_LOG_INFO, "redis cluster: slot map from %s: %zu masters", from->name,
               cl->nmasters);
}

static void on_slots(struct hr_cluster *cl, struct node *n, uint64_t gen, const redisReply *reply,
                     const char *error)
{
    if (cl->freeing || !cl->refreshing || gen != cl->refresh_gen)
        return;
    if (error || parse_slots(cl, n, reply) != 0) {
        refresh_failed(cl, n, error ? error : "unexpected CLUSTER SLOTS reply");
        return;
    }
    apply_map(cl, n);
    cl->stats.refreshes++;
    /* The refresh ends with the CLUSTER INFO sent behind it. */
}

static void on_info(struct hr_cluster *cl, struct node *n, uint64_t gen, const redisReply *reply,
                    const char *error)
{
    if (cl->freeing || !cl->refreshing || gen != cl->refresh_gen)
        return;
    const char *p = !error && reply->type == REDIS_REPLY_STRING && reply->str
                        ? strstr(reply->str, "cluster_state:")
                        : NULL;
    if (!p) {
        refresh_failed(cl, n, error ? error : "unexpected CLUSTER INFO reply");
        return;
    }
    p += strlen("cluster_state:");
    snprintf(cl->state, sizeof(cl->state), "%.*s", (int)strcspn(p, "\r\n"), p);
    cl->state_ok = strcmp(cl->state, "ok") == 0;
    cl->refreshing = false;
    cl->refresh_error[0] = '\0';
    update_ready(cl);
    if (cl->ready)
        cl->backoff_ms = BACKOFF_MIN_MS;
    else
        backoff_grow(cl);
    bool again = cl->again;
    cl->again = false;
    if (again || !cl->ready)
        schedule_refresh(cl, cl->backoff_ms);
    else
        schedule_refresh(cl, REFRESH_PERIOD_MS);
}

/* Asks a node for CLUSTER SLOTS and CLUSTER INFO: a connected one when there
 * is one (the first from refresh_next on), else the first that can be
 * connected to. */
static void refresh_start(struct hr_cluster *cl)
{
    if (cl->freeing || cl->refreshing)
        return;
    struct node *pick = NULL;
    for (size_t i = 0; i < cl->nnodes && !pick; i++) {
        struct node *n = cl->nodes[(cl->refresh_next + i) % cl->nnodes];
        if (n->ac && n->connected)
            pick = n;
    }
    for (size_t i = 0; i < cl->nnodes && !pick; i++) {
        struct node *n = cl->nodes[(cl->refresh_next + i) % cl->nnodes];
        if (n->ac || connect_node(n) == HR_OK)
            pick = n;
    }
    if (!pick) {
        refresh_failed(cl, NULL, "no node reachable");
        return;
    }
    cl->refreshing = true;
    cl->again = false;
    uint64_t gen = ++cl->refresh_gen;
    const char *slots[] = {"CLUSTER", "SLOTS"}, *info[] = {"CLUSTER", "INFO"};
    if (send_internal(pick, K_SLOTS, gen, 2, slots) != HR_OK) {
        refresh_failed(cl, pick, "cannot send CLUSTER SLOTS");
        return;
    }
    if (send_internal(pick, K_INFO, gen, 2, info) != HR_OK)
        drop_node(pick, "out of memory"); /* fails the CLUSTER SLOTS, and so the refresh */
}

static void on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    refresh_start(arg);
}

/* --- replies and redirections --- */

static void delay_cmd(struct hr_cluster *cl, struct cmd *k)
{
    k->at_ms = hr_mono_ms() + TRYAGAIN_DELAY_MS;
    list_append(&cl->delayed, k);
    if (!evtimer_pending(cl->delay_ev, NULL)) {
        struct timeval tv = {0, TRYAGAIN_DELAY_MS * 1000};
        evtimer_add(cl->delay_ev, &tv);
    }
}

bool hr_cluster_parse_redirect(const char *p, int *slot, const char **host, size_t *hostlen,
                               int *port)
{
    char *end;
    long s = strtol(p, &end, 10);
    if (end == p || *end != ' ' || s < 0 || s >= HR_CLUSTER_SLOTS)
        return false;
    const char *addr = end + 1, *colon = strrchr(addr, ':');
    if (!colon)
        return false;
    long pt = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || pt <= 0 || pt > 65535)
        return false;
    if (colon - addr == 1 && addr[0] == '?') /* an unknown endpoint */
        return false;
    *slot = (int)s;
    *host = addr;
    *hostlen = (size_t)(colon - addr);
    *port = (int)pt;
    return true;
}

/* The node a MOVED or ASK reply (past its first word) names, created when
 * new, with its slot; NULL when the reply cannot be read. */
static struct node *redirect_target(struct hr_cluster *cl, const struct node *from, const char *p,
                                    int *slot)
{
    const char *host;
    size_t hostlen;
    int port;
    if (!hr_cluster_parse_redirect(p, slot, &host, &hostlen, &port))
        return NULL;
    if (hostlen == 0) /* the endpoint of the node that answered */
        return node_get(cl, from->host, strlen(from->host), port);
    return node_get(cl, host, hostlen, port);
}

/* An error reply to a caller's command: MOVED, ASK and TRYAGAIN mean that
 * the command was not run, so it is sent again where (or when) the reply
 * says, at most MAX_REDIRECTS times. True when it was (k is still in use),
 * false when the caller is to get the error. */
static bool redirect(struct hr_cluster *cl, struct node *from, struct cmd *k, const char *e)
{
    bool moved = strncmp(e, "MOVED ", 6) == 0, ask = strncmp(e, "ASK ", 4) == 0,
         tryagain = strncmp(e, "TRYAGAIN", 8) == 0;
    cl->stats.moved += moved;
    cl->stats.ask += ask;
    cl->stats.tryagain += tryagain;
    if (strncmp(e, "CLUSTERDOWN", 11) == 0)
        refresh_soon(cl);
    if (!moved && !ask && !tryagain)
        return false;
    if (++k->redirects > MAX_REDIRECTS) {
        HR_LOG_LIMITED(HR_LOG_WARN, "redis cluster: %d redirections, giving up: %.200s",
                       MAX_REDIRECTS, e);
        return false;
    }
    if (tryagain) {
        delay_cmd(cl, k);
        return true;
    }
    int slot;
    struct node *to = redirect_target(cl, from, e + (moved ? 6 : 4), &slot);
    if (!to || (!to->ac && connect_node(to) != HR_OK))
        return false;
    if (moved) {
        /* The slot is to's now; the rest of the map may have changed too. */
        cl->owner[slot] = to->idx;
        add_master(cl, to);
        refresh_soon(cl);
        update_ready(cl);
    }
    k->slot = slot;
    k->asking = ask;
    return send_cmd(to, k) == HR_OK;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct cmd *k = privdata;
    struct node *n = k->node;
    struct hr_cluster *cl = n->cl;
    redisReply *reply = r;
    const char *error = NULL;
    untrack(k);
    if (reply)
        n->last_reply_ms = hr_mono_ms();
    if (!reply) {
        /* The connection is gone and with it the outcome. When hiredis
         * dropped it (an error, or the server closed it), this is the first
         * we hear of it. */
        error = k->why ? k->why : "connection lost";
        if (n->ac == ac && !cl->freeing) {
            HR_LOG_LIMITED(HR_LOG_WARN, "redis cluster: lost %s: %s", n->name,
                           ac->err && ac->errstr ? ac->errstr : error);
            node_down(n);
        }
    } else if (reply->type == REDIS_REPLY_ERROR) {
        error = reply->str;
    }
    switch (k->kind) {
    case K_USER:
        if (reply && error && !cl->freeing && redirect(cl, n, k, error))
            return; /* sent again: k lives on */
        if (reply && error && strncmp(error, "NOSCRIPT", 8) != 0) {
            /* (NOSCRIPT is the caller's to handle, by sending the script's
             * body: no failure to count or log.) */
            cl->stats.errors++;
            HR_LOG_LIMITED(HR_LOG_ERROR, "redis cluster: %s: command failed: %.200s", n->name,
                           error);
        } else if (!reply) {
            cl->stats.lost++;
        }
        k->cb(k->arg, error ? NULL : reply, error);
        break;
    case K_AUTH:
        on_auth(n, ac, error);
        break;
    case K_SLOTS:
        on_slots(cl, n, k->gen, reply, error);
        break;
    case K_INFO:
        on_info(cl, n, k->gen, reply, error);
        break;
    }
    free(k);
}

/* Sends the commands whose TRYAGAIN pause is over to the node that said
 * TRYAGAIN (behind ASKING again when they went there after an ASK). */
static void on_delay_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_cluster *cl = arg;
    uint64_t now = hr_mono_ms();
    while (cl->delayed.next != &cl->delayed && cl->delayed.next->at_ms <= now) {
        struct cmd *k = cl->delayed.next;
        list_unlink(k);
        if (send_cmd(k->node, k) != HR_OK) { /* not run: TRYAGAIN said so */
            cl->stats.errors++;
            k->cb(k->arg, NULL, "node unavailable after TRYAGAIN");
            free(k);
        }
    }
    if (cl->delayed.next != &cl->delayed) {
        uint64_t ms = cl->delayed.next->at_ms - now;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        evtimer_add(cl->delay_ev, &tv);
    }
}

/* The command timeout hiredis 0.14 lacks, as conn.c has it: one periodic
 * tick for every node. A node with calls in flight that has answered
 * nothing at all for timeout_ms is stuck (paused, the network gone) and its
 * connection is dropped with everything on it; a slow node that still
 * answers is not (hr_cluster_backlog_ms tells the caller how far behind it
 * is). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct hr_cluster *cl = arg;
    uint64_t now = hr_mono_ms(), limit = cl->cfg.timeout_ms;
    for (size_t i = 0; i < cl->nnodes; i++) {
        struct node *n = cl->nodes[i];
        if (!n->ac)
            continue;
        const struct cmd *oldest = n->head.next;
        bool slow_connect = !n->connected && now - n->connect_started_ms > limit;
        bool slow_cmd =
            oldest != &n->head && now - oldest->at_ms > limit && now - n->last_reply_ms > limit;
        if (!slow_connect && !slow_cmd)
            continue;
        HR_LOG_LIMITED(HR_LOG_WARN,
                       "redis cluster: %s: no reply of any kind for %" PRIu32 " ms%s, dropping the "
                       "connection (%zu calls in flight)",
                       n->name, cl->cfg.timeout_ms, slow_cmd ? "" : " while connecting",
                       n->inflight);
        cl->stats.timeouts++;
        drop_node(n, "timed out");
    }
}

/* --- public --- */

struct hr_cluster *hr_cluster_new(struct event_base *base, const struct hr_cluster_config *cfg,
                                  char *err, size_t errlen)
{
    if (cfg->nseeds < 1 || cfg->nseeds > HR_CLUSTER_SEEDS_MAX) {
        snprintf(err, errlen, "1 to %d seed nodes are needed", HR_CLUSTER_SEEDS_MAX);
        return NULL;
    }
    for (int i = 0; i < cfg->nseeds; i++)
        if (!cfg->seed[i].host[0] || !memchr(cfg->seed[i].host, '\0', sizeof(cfg->seed[i].host)) ||
            cfg->seed[i].port <= 0 || cfg->seed[i].port > 65535) {
            snprintf(err, errlen, "seed %d: a host and a port from 1 to 65535 are needed", i + 1);
            return NULL;
        }
    if (cfg->timeout_ms == 0) {
        snprintf(err, errlen, "the Redis timeout must be positive");
        return NULL;
    }
    struct hr_cluster *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cl->base = base;
    cl->cfg = *cfg;
    cl->cfg.user[sizeof(cl->cfg.user) - 1] = '\0';
    cl->cfg.pass[sizeof(cl->cfg.pass) - 1] = '\0';
    for (size_t s = 0; s < HR_CLUSTER_SLOTS; s++)
        cl->owner[s] = NO_NODE;
    snprintf(cl->state, sizeof(cl->state), "unknown");
    cl->delayed.prev = cl->delayed.next = &cl->delayed;
    cl->backoff_ms = BACKOFF_MIN_MS;
    cl->refresh_ev = evtimer_new(base, on_refresh_timer, cl);
    cl->delay_ev = evtimer_new(base, on_delay_timer, cl);
    cl->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, cl);
    uint32_t tick = cfg->timeout_ms / 4 ? cfg->timeout_ms / 4 : 1;
    struct timeval tv = {tick / 1000, (tick % 1000) * 1000};
    if (!cl->refresh_ev || !cl->delay_ev || !cl->tick_ev || event_add(cl->tick_ev, &tv) != 0) {
        snprintf(err, errlen, "cannot create timers");
        hr_cluster_free(cl);
        return NULL;
    }
    for (int i = 0; i < cfg->nseeds; i++)
        if (!node_get(cl, cfg->seed[i].host, strlen(cfg->seed[i].host), cfg->seed[i].port)) {
            snprintf(err, errlen, "out of memory");
            hr_cluster_free(cl);
            return NULL;
        }
    update_ready(cl);
    refresh_start(cl);
    return cl;
}

void hr_cluster_free(struct hr_cluster *cl)
{
    if (!cl)
        return;
    cl->freeing = true;
    for (size_t i = 0; i < cl->nnodes; i++)
        drop_node(cl->nodes[i], "closed"); /* the callbacks run now */
    while (cl->delayed.next != &cl->delayed) {
        struct cmd *k = cl->delayed.next;
        list_unlink(k);
        k->cb(k->arg, NULL, "closed");
        free(k);
    }
    if (cl->refresh_ev)
        event_free(cl->refresh_ev);
    if (cl->delay_ev)
        event_free(cl->delay_ev);
    if (cl->tick_ev)
        event_free(cl->tick_ev);
    for (size_t i = 0; i < cl->nnodes; i++)
        free(cl->nodes[i]);
    free(cl->nodes);
    free(cl);
}

static int submit(struct node *n, int slot, int argc, const char **argv, const size_t *argvlen,
                  hr_cluster_cb *cb, void *arg)
{
    if (!n || !n->ac)
        return HR_E_UNAVAILABLE;
    struct cmd *k = cmd_new(argc, argv, argvlen);
    if (!k)
        return HR_E_NOMEM;
    k->kind = K_USER;
    k->slot = slot;
    k->cb = cb;
    k->arg = arg;
    int rc = send_cmd(n, k);
    if (rc != HR_OK)
        free(k);
    return rc;
}

int hr_cluster_send(struct hr_cluster *cl, int slot, int argc, const char **argv,
                    const size_t *argvlen, hr_cluster_cb *cb, void *arg)
{
    if (slot < 0 || slot >= HR_CLUSTER_SLOTS || argc < 1)
        return HR_E_CONFIG;
    if (cl->freeing || !cl->map_loaded || cl->owner[slot] == NO_NODE)
        return HR_E_UNAVAILABLE;
    return submit(cl->nodes[cl->owner[slot]], slot, argc, argv, argvlen, cb, arg);
}

int hr_cluster_send_node(struct hr_cluster *cl, size_t master_index, int argc, const char **argv,
                         const size_t *argvlen, hr_cluster_cb *cb, void *arg)
{
    if (argc < 1)
        return HR_E_CONFIG;
    if (cl->freeing || master_index >= cl->nmasters)
        return HR_E_UNAVAILABLE;
    return submit(cl->nodes[cl->masters[master_index]], -1, argc, argv, argvlen, cb, arg);
}

size_t hr_cluster_nmasters(const struct hr_cluster *cl)
{
    return cl->nmasters;
}

bool hr_cluster_owns(const struct hr_cluster *cl, size_t master_index, int slot)
{
    return master_index < cl->nmasters && slot >= 0 && slot < HR_CLUSTER_SLOTS &&
           cl->owner[slot] == cl->masters[master_index];
}

bool hr_cluster_master_of(const struct hr_cluster *cl, int slot, size_t *index)
{
    if (slot < 0 || slot >= HR_CLUSTER_SLOTS || cl->owner[slot] == NO_NODE)
        return false;
    *index = (size_t)cl->nodes[cl->owner[slot]]->master;
    return true;
}

const char *hr_cluster_master_name(const struct hr_cluster *cl, size_t master_index)
{
    return master_index < cl->nmasters ? cl->nodes[cl->masters[master_index]]->name : NULL;
}

/* How long node n's oldest call in flight has waited, 0 when none. */
static uint64_t node_backlog(const struct node *n, uint64_t now_ms)
{
    const struct cmd *oldest = n->head.next;
    return oldest != &n->head && now_ms > oldest->at_ms ? now_ms - oldest->at_ms : 0;
}

uint64_t hr_cluster_backlog_ms(const struct hr_cluster *cl, int slot, uint64_t now_ms)
{
    if (slot < 0 || slot >= HR_CLUSTER_SLOTS || cl->owner[slot] == NO_NODE)
        return 0;
    return node_backlog(cl->nodes[cl->owner[slot]], now_ms);
}

uint64_t hr_cluster_backlog_max_ms(const struct hr_cluster *cl, uint64_t now_ms)
{
    uint64_t most = 0;
    for (size_t i = 0; i < cl->nmasters; i++) {
        uint64_t b = node_backlog(cl->nodes[cl->masters[i]], now_ms);
        most = b > most ? b : most;
    }
    return most;
}

size_t hr_cluster_inflight(const struct hr_cluster *cl, size_t master_index)
{
    return master_index < cl->nmasters ? cl->nodes[cl->masters[master_index]]->inflight : 0;
}

bool hr_cluster_ready(const struct hr_cluster *cl)
{
    return cl->ready;
}

const char *hr_cluster_not_ready_reason(const struct hr_cluster *cl)
{
    return cl->reason;
}

const struct hr_cluster_stats *hr_cluster_get_stats(const struct hr_cluster *cl)
{
    return &cl->stats;
}

void hr_cluster_refresh(struct hr_cluster *cl)
{
    refresh_soon(cl);
}
