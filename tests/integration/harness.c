#define _GNU_SOURCE
#include "harness.h"

#include "layout.h"
#include "script.h"

#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int h_free_port(int type)
{
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* Every child started and not reaped yet, killed at exit: a failed cmocka
 * assertion jumps past the test's own stop calls, and a child left running
 * would keep ctest waiting on its output pipe until the test's timeout. */
#define MAX_CHILDREN 64
static pid_t children[MAX_CHILDREN];

static void kill_children(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
}

static void track(pid_t pid)
{
    static bool registered;
    if (!registered) {
        atexit(kill_children);
        registered = true;
    }
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
}

/* Called once a child is reaped, so its pid is never killed again. */
static void forget(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid)
            children[i] = 0;
}

/* Starts argv[0] with `env` ("NAME=value" list, or NULL) added to the
 * environment, after removing every HOSTREG_* variable when `env` is not
 * NULL. Its stderr goes to `log_fd` when >= 0; otherwise it stays the test's,
 * so a failing test shows the daemon's log lines beside its own. */
static pid_t spawn_with(const char *const *argv, const char *const *env, int log_fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (env) {
            extern char **environ;
            char names[64][128];
            int n = 0;
            /* hostreg's own variables, and the original service's names
             * the gateway also reads (config.h: hr_opts_aliases). */
            static const char *const legacy[] = {"PORT", "REDIS_URL", "HOST_SECRET",
                                                 "HOST_SECRET_PREVIOUS", "SIGNALING_PUBLIC_URL"};
            for (char **e = environ; *e && n < 64; e++) {
                size_t len = strcspn(*e, "=");
                bool drop = strncmp(*e, "HOSTREG_", 8) == 0;
                for (size_t k = 0; k < sizeof(legacy) / sizeof(legacy[0]); k++)
                    drop |= strlen(legacy[k]) == len && strncmp(*e, legacy[k], len) == 0;
                if (drop)
                    snprintf(names[n++], sizeof(names[0]), "%.*s", (int)len, *e);
            }
            for (int i = 0; i < n; i++)
                unsetenv(names[i]);
            for (int i = 0; env[i]; i++)
                putenv((char *)env[i]); /* the child execs before the list could change */
        }
        if (log_fd >= 0 && dup2(log_fd, STDERR_FILENO) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (pid > 0)
        track(pid);
    return pid;
}

static pid_t spawn(const char *const *argv)
{
    return spawn_with(argv, NULL, -1);
}

bool h_process_alive(pid_t pid)
{
    int status;
    if (pid <= 0)
        return false;
    if (waitpid(pid, &status, WNOHANG) == 0)
        return true;
    forget(pid);
    return false;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

int h_redis_start(struct h_redis *r, int port, const char *const *extra)
{
    char portstr[16], logpath[192];
    const char *argv[32];
    int n = 0;
    if (port == 0)
        port = h_free_port(SOCK_STREAM);
    if (!r->dir[0]) {
        snprintf(r->dir, sizeof(r->dir), "/tmp/hostreg-test-redis-XXXXXX");
        if (!mkdtemp(r->dir))
            return -1;
    }
    snprintf(portstr, sizeof(portstr), "%d", port);
    snprintf(logpath, sizeof(logpath), "%s/redis.log", r->dir);
    argv[n++] = env_or("HOSTREG_REDIS_SERVER", "/usr/bin/redis-server");
    argv[n++] = "--port";
    argv[n++] = portstr;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--dir";
    argv[n++] = r->dir;
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--logfile";
    argv[n++] = logpath;
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    r->port = port;
    r->pid = spawn(argv);
    if (r->pid < 0)
        return -1;
    uint64_t deadline = h_now_ms() + 10000;
    while (h_now_ms() < deadline) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        if (c && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            /* LOADING while it replays the AOF: not ready yet. NOAUTH: up,
             * with a password (requirepass). */
            bool ok =
                rep && ((rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0) ||
                        (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOAUTH", 6) == 0));
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c) {
            redisFree(c);
        }
        if (!h_process_alive(r->pid))
            return -1;
        usleep(10000); /* polling a process that has no way to tell us it is up */
    }
    return -1;
}

int h_sentinel_start(struct h_redis *r, const char *master, int master_port, int quorum,
                     const char *auth_pass)
{
    char conf[192];
    int port = h_free_port(SOCK_STREAM);
    snprintf(r->dir, sizeof(r->dir), "/tmp/hostreg-test-sentinel-XXXXXX");
    if (!mkdtemp(r->dir))
        return -1;
    snprintf(conf, sizeof(conf), "%s/sentinel.conf", r->dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        return -1;
    /* Quick to act, for a test: a master silent for 2 s is down. */
    fprintf(f,
            "port %d\nbind 127.0.0.1\ndir %s\nlogfile %s/sentinel.log\n"
            "sentinel monitor %s 127.0.0.1 %d %d\n"
            "sentinel down-after-milliseconds %s 2000\n"
            "sentinel failover-timeout %s 5000\n"
            "sentinel parallel-syncs %s 1\n",
            port, r->dir, r->dir, master, master_port, quorum, master, master, master);
    if (auth_pass)
        fprintf(f, "sentinel auth-pass %s %s\n", master, auth_pass);
    fclose(f);
    const char *argv[] = {env_or("HOSTREG_REDIS_SERVER", "/usr/bin/redis-server"), conf,
                          "--sentinel", NULL};
    r->port = port;
    r->pid = spawn(argv);
    if (r->pid < 0)
        return -1;
    uint64_t deadline = h_now_ms() + 10000;
    while (h_now_ms() < deadline) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        redisReply *rep =
            c && !c->err ? redisCommand(c, "SENTINEL get-master-addr-by-name %s", master) : NULL;
        bool ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2;
        if (rep)
            freeReplyObject(rep);
        if (c)
            redisFree(c);
        if (ok)
            return 0;
        if (!h_process_alive(r->pid))
            return -1;
        usleep(10000); /* polling a process that has no way to tell us it is up */
    }
    return -1;
}

void h_redis_stop(struct h_redis *r, bool kill9, bool cleanup)
{
    if (r->pid > 0) {
        kill(r->pid, kill9 ? SIGKILL : SIGTERM);
        waitpid(r->pid, NULL, 0);
        forget(r->pid);
        r->pid = 0;
    }
    if (cleanup && r->dir[0]) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", r->dir);
        r->dir[0] = '\0';
    }
}

redisContext *h_redis_connect(int port)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        fprintf(stderr, "cannot connect to redis on %d\n", port);
        abort();
    }
    return c;
}

/* --- the registry's keys, read through storage layout 3 --- */

long long h_redis_now_ms(redisContext *c)
{
    redisReply *r = redisCommand(c, "TIME");
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        abort();
    long long ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

/* The layout under `prefix`, or false when there is none. */
static bool layout_of(redisContext *c, const char *prefix, struct hr_layout *l)
{
    char err[256];
    int rc = hr_layout_read_sync(c, prefix, l, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "harness: %s\n", err);
        abort();
    }
    return rc == 1;
}

void h_bucket_key(redisContext *c, const char *prefix, const char *id, const char *suffix,
                  char *out, size_t cap)
{
    struct hr_layout l;
    char stored[HR_LAYOUT_ID_MAX], tag[16];
    if (!layout_of(c, prefix, &l)) {
        snprintf(out, cap, "%s{no-layout}%s", prefix, suffix);
        return;
    }
    size_t n = hr_layout_id_pack(id, stored);
    snprintf(tag, sizeof(tag), "%u", hr_layout_bucket(&l, stored, n));
    hr_layout_key(out, cap, prefix, tag, suffix);
}

bool h_host_get(redisContext *c, const char *prefix, const char *id, struct h_host *h)
{
    memset(h, 0, sizeof(*h));
    h->lease = -1;
    h->expiry = -1;
    char e[160], cl[160], stored[HR_LAYOUT_ID_MAX];
    size_t n = hr_layout_id_pack(id, stored);
    h_bucket_key(c, prefix, id, "e", e, sizeof(e));
    h_bucket_key(c, prefix, id, "c", cl, sizeof(cl));
    redisReply *v = redisCommand(c, "HGET %s %b", e, stored, n);
    redisReply *lease = redisCommand(c, "ZSCORE %s %b", cl, stored, n);
    if (!v || !lease)
        abort();
    h->lease = lease->type == REDIS_REPLY_STRING ? atoll(lease->str) : -1;
    struct hr_layout_entry en;
    if (v->type == REDIS_REPLY_STRING && hr_layout_entry_parse(v->str, v->len, &en) == 0) {
        snprintf(h->hseq, sizeof(h->hseq), "%" PRIu64, en.hseq);
        snprintf(h->sseq, sizeof(h->sseq), "%" PRIu64, en.sseq);
        snprintf(h->status, sizeof(h->status), "%s", en.status);
        snprintf(h->region, sizeof(h->region), "%s", en.region);
        snprintf(h->room, sizeof(h->room), "%s", en.room);
        h->expiry = en.expiry_ms;
        snprintf(h->slots, sizeof(h->slots), "%" PRIu32 " %" PRIu32 " %" PRIu32, en.capacity,
                 en.free, en.reported);
        h->live = h->expiry > h_redis_now_ms(c);
    }
    freeReplyObject(v);
    freeReplyObject(lease);
    return h->live;
}

/* A layout-1 key name "<prefix><kind><rest>" (the prefix ends at its first
 * ':'): the prefix into pfx and the rest, or NULL when it is not of `kind`. */
static const char *old_key(const char *key, const char *kind, char *pfx, size_t cap)
{
    const char *colon = strchr(key, ':');
    size_t plen = colon ? (size_t)(colon - key) + 1 : 0;
    if (!colon || plen >= cap || strncmp(key + plen, kind, strlen(kind)) != 0)
        return NULL;
    memcpy(pfx, key, plen);
    pfx[plen] = '\0';
    return key + plen + strlen(kind);
}

const char *h_entry_field(redisContext *c, const char *key, const char *field)
{
    static char out[128]; /* longer than any field: ids and rooms are 64 at most */
    char pfx[64];
    struct h_host h;
    out[0] = '\0';
    const char *id = old_key(key, "h:", pfx, sizeof(pfx));
    if (!id || !h_host_get(c, pfx, id, &h))
        return out;
    if (strcmp(field, "hseq") == 0)
        snprintf(out, sizeof(out), "%s", h.hseq);
    else if (strcmp(field, "sseq") == 0)
        snprintf(out, sizeof(out), "%s", h.sseq);
    else if (strcmp(field, "status") == 0)
        snprintf(out, sizeof(out), "%s", h.status);
    else if (strcmp(field, "region") == 0)
        snprintf(out, sizeof(out), "%s", h.region);
    else if (strcmp(field, "room") == 0)
        snprintf(out, sizeof(out), "%s", h.room);
    else if (strcmp(field, "lease") == 0 && h.lease >= 0 && strcmp(h.status, "busy") == 0)
        snprintf(out, sizeof(out), "%lld", h.lease);
    else if (strcmp(field, "slots") == 0)
        snprintf(out, sizeof(out), "%s", h.slots);
    return out;
}

long long h_bucket_keys(redisContext *c, const char *prefix)
{
    redisReply *r = redisCommand(c, "KEYS %s*", prefix);
    if (!r || r->type != REDIS_REPLY_ARRAY)
        abort();
    long long n = 0;
    for (size_t i = 0; i < r->elements; i++)
        n += strstr(r->element[i]->str, "{r.") == NULL;
    freeReplyObject(r);
    return n;
}

long long h_hosts_count(redisContext *c, const char *prefix, const char *region, const char *status)
{
    struct hr_layout l;
    if (!layout_of(c, prefix, &l))
        return 0;
    const char *regions[1] = {region};
    long long n = 0;
    size_t col = 0;
    while (col < HR_NSTATUSES && strcmp(hr_status_name_at(col), status) != 0)
        col++;
    if (col == HR_NSTATUSES)
        abort();
    struct hr_script_args a = {0};
    for (uint32_t b0 = 0; b0 < l.buckets; b0 += 256) {
        hr_script_args_reset(&a);
        hr_script_count_args(&a, &l, b0, l.buckets - b0 < 256 ? l.buckets - b0 : 256, regions, 1);
        redisReply *r = hr_script_eval(c, HR_SCRIPT_COUNT, &a);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != HR_NSTATUSES)
            abort();
        n += r->element[col]->integer;
        freeReplyObject(r);
    }
    hr_script_args_free(&a);
    return n;
}

const char *h_source_dir(void)
{
    const char *d = getenv("HOSTREG_SOURCE_DIR");
    return d && *d ? d : ".";
}

long long h_zscore(redisContext *c, const char *key, const char *member)
{
    /* Layout 1's indexes and claims set, answered from layout 2: an index
     * "<prefix>i:<region>:<status>" held a live host of that region and
     * status scored by its expiry, "<prefix>claims" a claimed host scored by
     * its lease's end. */
    char pfx[64], region[80];
    struct h_host h;
    const char *rest = old_key(key, "i:", pfx, sizeof(pfx));
    const char *colon = rest ? strrchr(rest, ':') : NULL;
    if (colon && (size_t)(colon - rest) < sizeof(region)) {
        memcpy(region, rest, (size_t)(colon - rest));
        region[colon - rest] = '\0';
        if (!h_host_get(c, pfx, member, &h) || strcmp(h.region, region) != 0 ||
            strcmp(h.status, colon + 1) != 0)
            return -1;
        return h.expiry;
    }
    if (old_key(key, "claims", pfx, sizeof(pfx))) {
        h_host_get(c, pfx, member, &h);
        return h.lease;
    }
    redisReply *r = redisCommand(c, "ZSCORE %s %s", key, member);
    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
        fprintf(stderr, "redis: ZSCORE %s %s: %s\n", key, member,
                r && r->type == REDIS_REPLY_ERROR ? r->str : "no or another reply");
        abort();
    }
    long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
    freeReplyObject(r);
    return v;
}

long long h_redis_int(redisContext *c, const char *fmt, ...)
{
    char cmd[512], key[400], pfx[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    /* Layout 1's key names, answered from layout 2 (h_zscore says how). */
    const char *id;
    struct h_host h;
    if (sscanf(cmd, "EXISTS %399s", key) == 1 && (id = old_key(key, "h:", pfx, sizeof(pfx))))
        return h_host_get(c, pfx, id, &h);
    if (sscanf(cmd, "PTTL %399s", key) == 1 && (id = old_key(key, "h:", pfx, sizeof(pfx))))
        return h_host_get(c, pfx, id, &h) ? h.expiry - h_redis_now_ms(c) : -2;
    if (sscanf(cmd, "EXISTS %399s", key) == 1 && (id = old_key(key, "t:", pfx, sizeof(pfx)))) {
        char t[160];
        h_bucket_key(c, pfx, id, "t", t, sizeof(t));
        char stored[HR_LAYOUT_ID_MAX];
        size_t n = hr_layout_id_pack(id, stored);
        redisReply *v = redisCommand(c, "HGET %s %b", t, stored, n);
        const char *sp = v && v->type == REDIS_REPLY_STRING ? strchr(v->str, ' ') : NULL;
        long long live = sp && atoll(sp + 1) > h_redis_now_ms(c);
        freeReplyObject(v);
        return live;
    }
    const char *rest;
    if ((sscanf(cmd, "EXISTS %399s", key) == 1 || sscanf(cmd, "ZCARD %399s", key) == 1) &&
        (rest = old_key(key, "i:", pfx, sizeof(pfx))) && strrchr(rest, ':')) {
        char region[80];
        const char *colon = strrchr(rest, ':');
        snprintf(region, sizeof(region), "%.*s", (int)(colon - rest), rest);
        long long n = h_hosts_count(c, pfx, region, colon + 1);
        return strncmp(cmd, "EXISTS", 6) == 0 ? n > 0 : n;
    }
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        fprintf(stderr, "redis: '%s' did not answer an integer (%s)\n", fmt,
                r && r->type == REDIS_REPLY_ERROR ? r->str : "other reply");
        abort();
    }
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

int h_udp_socket_from(int port, uint32_t src)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src)};
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&from, sizeof(from)) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        abort();
    return fd;
}

int h_udp_socket(int port)
{
    return h_udp_socket_from(port, INADDR_LOOPBACK);
}

static atomic_ulong discarded; /* h_request_discarded */

unsigned long h_request_discarded(void)
{
    return atomic_load(&discarded);
}

int h_request(int fd, const struct hr_request *req, struct hr_ack *ack, int timeout_ms, int tries)
{
    uint8_t out[HR_WIRE_MAX], in[HR_WIRE_MAX + 1];
    size_t len = hr_wire_encode_request(req, out, sizeof(out));
    if (len == 0)
        return -1;
    for (int t = 0; t < tries; t++) {
        if (send(fd, out, len, 0) < 0 && errno != ECONNREFUSED)
            return -1;
        uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
        for (;;) {
            uint64_t now = h_now_ms();
            if (now >= deadline)
                break;
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, (int)(deadline - now)) <= 0)
                break;
            ssize_t n = recv(fd, in, sizeof(in), 0);
            if (n <= 0)
                continue; /* an ICMP error (nobody on the port yet): no datagram */
            struct hr_frame f;
            if (hr_wire_decode(in, (size_t)n, &f) != 0 || f.type != HR_MSG_ACK ||
                f.ack.seq != req->seq) {
                atomic_fetch_add(&discarded, 1);
                continue;
            }
            *ack = f.ack;
            return 0;
        }
    }
    return -1;
}

int h_send(int port, const struct hr_request *req, struct hr_ack *ack)
{
    int fd = h_udp_socket(port);
    int rc = h_request(fd, req, ack, 500, 4);
    close(fd);
    return rc;
}

uint64_t h_next_seq(void)
{
    /* Starts at the clock in microseconds, as real hosts do, then counts up. */
    static uint64_t seq;
    if (!seq) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seq = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    }
    return ++seq;
}

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

struct hr_request h_heartbeat(const char *host, const char *room, const char *region,
                              enum hr_status status, uint64_t seq)
{
    struct hr_request r;
    memset(&r, 0, sizeof(r));
    r.type = HR_MSG_HEARTBEAT;
    r.seq = seq ? seq : h_next_seq();
    copy(r.host_id, sizeof(r.host_id), host);
    copy(r.room_id, sizeof(r.room_id), room);
    copy(r.region, sizeof(r.region), region);
    r.status = status;
    return r;
}

struct hr_request h_status(const char *host, enum hr_status status, uint64_t seq)
{
    struct hr_request r;
    memset(&r, 0, sizeof(r));
    r.type = HR_MSG_STATUS;
    r.seq = seq ? seq : h_next_seq();
    copy(r.host_id, sizeof(r.host_id), host);
    r.status = status;
    return r;
}

struct hr_request h_leave(const char *host, uint64_t seq)
{
    struct hr_request r;
    memset(&r, 0, sizeof(r));
    r.type = HR_MSG_LEAVE;
    r.seq = seq ? seq : h_next_seq();
    copy(r.host_id, sizeof(r.host_id), host);
    return r;
}

size_t h_garbage_next(struct h_garbage *g, uint8_t *buf)
{
    uint64_t x = g->x ? g->x : 0x9e3779b97f4a7c15ULL; /* any non-zero seed */
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t len = (size_t)(x % H_GARBAGE_MAX);
    for (size_t j = 0; j < len; j++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[j] = (uint8_t)x;
    }
    if (g->n % 2 && len >= HR_WIRE_HDR) {
        buf[0] = HR_WIRE_MAGIC0;
        buf[1] = HR_WIRE_MAGIC1;
        buf[2] = HR_WIRE_VERSION;
        buf[3] = (uint8_t)(HR_MSG_HEARTBEAT + g->n % 3); /* heartbeat, status, leave */
        buf[4] = 0;
    }
    g->x = x;
    g->n++;
    return len;
}

int h_daemon_start(struct h_daemon *d, int redis_port, const char *const *extra)
{
    d->port = h_free_port(SOCK_DGRAM);
    return h_daemon_restart(d, redis_port, extra);
}

int h_daemon_restart(struct h_daemon *d, int redis_port, const char *const *extra)
{
    if (h_daemon_spawn(d, redis_port, extra) != 0)
        return -1;
    return h_daemon_await(d);
}

int h_daemon_await(const struct h_daemon *d)
{
    /* Ready when it acks: a leave of a host that never existed is harmless
     * and answered ok only once Redis is connected. */
    struct hr_request probe = h_leave("harness-probe", 0);
    int fd = h_udp_socket(d->port);
    uint64_t deadline = h_now_ms() + 10000;
    int rc = -1;
    while (h_now_ms() < deadline && h_process_alive(d->pid)) {
        struct hr_ack ack;
        probe.seq = h_next_seq();
        if (h_request(fd, &probe, &ack, 100, 1) == 0 && ack.result == HR_RESULT_OK) {
            rc = 0;
            break;
        }
    }
    close(fd);
    return rc;
}

/* Starts hostregd on d->port; its stderr goes to log_fd when >= 0. */
static int spawn_daemon(struct h_daemon *d, int redis_port, const char *const *extra, int log_fd)
{
    char bin[256], listen[64], redis[64];
    const char *argv[40];
    int n = 0;
    snprintf(bin, sizeof(bin), "%s/hostregd", env_or("HOSTREG_BIN_DIR", "build/bin"));
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", d->port);
    snprintf(redis, sizeof(redis), "redis://127.0.0.1:%d", redis_port);
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = listen;
    if (redis_port > 0) { /* 0: the extra arguments name it */
        argv[n++] = "--redis";
        argv[n++] = redis;
    }
    for (int i = 0; extra && extra[i] && n < 38; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    d->pid = spawn_with(argv, NULL, log_fd);
    return d->pid < 0 ? -1 : 0;
}

int h_daemon_spawn(struct h_daemon *d, int redis_port, const char *const *extra)
{
    return spawn_daemon(d, redis_port, extra, -1);
}

static char *read_log(const char *path);

int h_daemon_spawn_logged(struct h_daemon *d, int redis_port, const char *const *extra,
                          const char *log_path)
{
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0)
        return -1;
    int rc = spawn_daemon(d, redis_port, extra, log_fd);
    close(log_fd); /* the child has its own copy */
    return rc;
}

int h_daemon_start_logged(struct h_daemon *d, int redis_port, const char *const *extra,
                          const char *log_path)
{
    d->port = h_free_port(SOCK_DGRAM);
    if (h_daemon_spawn_logged(d, redis_port, extra, log_path) != 0)
        return -1;
    return h_daemon_await(d);
}

char *h_daemon_stats(const struct h_daemon *d, const char *log_path, int nth)
{
    if (kill(d->pid, SIGUSR1) != 0)
        return NULL;
    char *log = NULL;
    for (uint64_t end = h_now_ms() + 3000; h_now_ms() < end;) {
        free(log);
        log = read_log(log_path);
        int n = 0;
        for (const char *p = log; p && (p = strstr(p, "stats worker=")); p++)
            n += strchr(p, '\n') != NULL; /* whole lines only */
        if (n >= nth)
            return log;
        usleep(10000); /* a log line has no other way to reach us */
    }
    free(log);
    return NULL;
}

/* Counter `name` of the last stats line in `log` that starts with `tag`. */
static long long line_counter(const char *log, const char *tag, const char *name)
{
    const char *line = NULL;
    for (const char *p = log; p && (p = strstr(p, tag)); p++)
        line = p;
    if (!line)
        return -1;
    char key[64];
    snprintf(key, sizeof(key), " %s=", name);
    const char *v = strstr(line, key);
    const char *eol = strchr(line, '\n');
    if (!v || (eol && v > eol))
        return 0; /* dropped_<reason> counters appear only once non-zero */
    return strtoll(v + strlen(key), NULL, 10);
}

long long h_stats_counter(const char *log, const char *name)
{
    return line_counter(log, "stats worker=", name);
}

long long h_stats_worker_counter(const char *log, int worker, const char *name)
{
    char tag[32];
    snprintf(tag, sizeof(tag), "stats worker=%d:", worker);
    return line_counter(log, tag, name);
}

/* Sends `sig` (none when 0) and waits for the exit: the exit status as
 * h_daemon_stop describes it. */
static int stop_pid(pid_t pid, int sig)
{
    int status = 0;
    if (sig)
        kill(pid, sig);
    uint64_t deadline = h_now_ms() + 5000;
    while (h_now_ms() < deadline) {
        pid_t p = waitpid(pid, &status, WNOHANG);
        if (p == pid) {
            forget(pid);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        if (p < 0) { /* already reaped by h_process_alive: it died on its own */
            forget(pid);
            return -1;
        }
        usleep(5000); /* a process's exit has no other way to reach us here */
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    forget(pid);
    return -1;
}

int h_daemon_stop(struct h_daemon *d)
{
    if (d->pid <= 0)
        return -1;
    int rc = stop_pid(d->pid, SIGTERM);
    d->pid = 0;
    return rc;
}

/* --- hostreg-gateway --- */

/* Starts the gateway; `port` 0: a free port of its own, given with --listen
 * (else the environment names it). */
static int gateway_spawn(struct h_gateway *g, int port, int redis_port,
                         const char *const *extra_args, const char *const *env)
{
    static const char *const no_env[] = {NULL};
    char bin[256], listen[64], redis[64];
    const char *argv[48];
    int n = 0;
    g->pid = 0;
    g->port = port ? port : h_free_port(SOCK_STREAM);
    snprintf(g->log, sizeof(g->log), "/tmp/hostreg-test-gateway-XXXXXX");
    int log_fd = mkstemp(g->log);
    if (g->port < 0 || log_fd < 0) {
        if (log_fd >= 0) {
            close(log_fd);
            unlink(g->log);
        }
        return -1;
    }
    snprintf(bin, sizeof(bin), "%s/hostreg-gateway", env_or("HOSTREG_BIN_DIR", "build/bin"));
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", g->port);
    snprintf(redis, sizeof(redis), "redis://127.0.0.1:%d", redis_port);
    argv[n++] = bin;
    if (!port) {
        argv[n++] = "--listen";
        argv[n++] = listen;
    }
    if (redis_port > 0) { /* 0: the extra arguments name it */
        argv[n++] = "--redis";
        argv[n++] = redis;
    }
    for (int i = 0; extra_args && extra_args[i] && n < 46; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;
    g->pid = spawn_with(argv, env ? env : no_env, log_fd);
    close(log_fd);
    if (g->pid < 0) {
        g->pid = 0;
        return -1;
    }
    return 0;
}

int h_gateway_spawn(struct h_gateway *g, int redis_port, const char *const *extra_args,
                    const char *const *env)
{
    return gateway_spawn(g, 0, redis_port, extra_args, env);
}

int h_gateway_spawn_bare(struct h_gateway *g, int port, const char *const *extra_args,
                         const char *const *env)
{
    return gateway_spawn(g, port, 0, extra_args, env);
}

int h_gateway_start(struct h_gateway *g, int redis_port, const char *const *extra_args,
                    const char *const *env)
{
    if (h_gateway_spawn(g, redis_port, extra_args, env) != 0)
        return -1;
    /* Ready when /readyz says so: it answers 200 only after Redis took its
     * probe, so the listening socket and the Redis connection are both up. */
    uint64_t deadline = h_now_ms() + 10000;
    while (h_now_ms() < deadline && h_process_alive(g->pid)) {
        struct h_http_resp r;
        int code = h_http(g->port, "GET", "/readyz", NULL, NULL, &r);
        h_http_free(&r);
        if (code == 200)
            return 0;
        usleep(10000); /* nothing tells us when it has bound its port */
    }
    fprintf(stderr, "hostreg-gateway on port %d did not become ready\n", g->port);
    h_gateway_stop(g);
    return -1;
}

/* Reads the whole log file (malloc'd, NUL-terminated), or NULL. */
static char *read_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

bool h_file_contains(const char *path, const char *needle)
{
    char *log = read_log(path);
    bool found = log && strstr(log, needle);
    free(log);
    return found;
}

bool h_gateway_log_contains(const struct h_gateway *g, const char *needle)
{
    return h_file_contains(g->log, needle);
}

static int gateway_end(struct h_gateway *g, int sig)
{
    if (g->pid <= 0)
        return 0;
    int rc = stop_pid(g->pid, sig);
    g->pid = 0;
    char *log = read_log(g->log);
    if (log) {
        fprintf(stderr, "---- hostreg-gateway log (port %d, exit %d) ----\n%s---- end ----\n",
                g->port, rc, log);
        /* A sanitizer's exit code can be configured away; its report cannot. */
        if (rc == 0 && (strstr(log, "Sanitizer") || strstr(log, "runtime error:")))
            rc = -2;
        free(log);
    }
    unlink(g->log);
    return rc;
}

int h_gateway_stop(struct h_gateway *g)
{
    return gateway_end(g, SIGTERM);
}

int h_gateway_wait(struct h_gateway *g)
{
    return gateway_end(g, 0);
}

/* --- HTTP client --- */

void h_http_free(struct h_http_resp *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

const char *h_http_header(const struct h_http_resp *r, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            eol = line + strlen(line);
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 &&
            line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            snprintf(out, outlen, "%.*s", (int)(eol - v), v);
            return out;
        }
        line = *eol ? eol + 2 : eol;
    }
    return NULL;
}

char *h_http_format(int port, const char *method, const char *path, const char *headers,
                    const char *body, size_t *len)
{
    size_t blen = body ? strlen(body) : 0;
    size_t cap = strlen(method) + strlen(path) + (headers ? strlen(headers) : 0) + blen + 256;
    char *req = malloc(cap);
    if (!req)
        return NULL;
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s",
                     method, path, port, headers ? headers : "");
    if (body)
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n", blen);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    memcpy(req + n, body ? body : "", blen + 1);
    *len = (size_t)n + blen;
    return req;
}

/* Splits what the server sent (buf, len; NUL-terminated) into out. 0, or -1
 * when it is not a complete HTTP/1.x answer. */
static int parse_response(const char *buf, size_t len, struct h_http_resp *out)
{
    const char *end = strstr(buf, "\r\n\r\n");
    const char *eol = strstr(buf, "\r\n");
    int status = 0;
    if (!end || strncmp(buf, "HTTP/1.", 7) != 0 || sscanf(buf + 8, " %3d", &status) != 1 ||
        status < 100)
        return -1;
    const char *hstart = eol + 2, *bstart = end + 4;
    size_t hlen = (size_t)(bstart - hstart) - 2; /* keep the last line's \r\n */
    out->headers = malloc(hlen + 1);
    out->body_len = len - (size_t)(bstart - buf);
    out->body = malloc(out->body_len + 1);
    if (!out->headers || !out->body)
        return -1;
    memcpy(out->headers, hstart, hlen);
    out->headers[hlen] = '\0';
    memcpy(out->body, bstart, out->body_len);
    out->body[out->body_len] = '\0';
    char cl[32];
    if (h_http_header(out, "Content-Length", cl, sizeof(cl)) &&
        strtoull(cl, NULL, 10) != out->body_len)
        return -1; /* cut short: not a complete answer */
    out->status = status;
    return 0;
}

struct conn {
    int fd;
    const char *req;
    size_t len, sent;
    char *buf;
    size_t used, cap;
    bool done;
};

size_t h_http_many(int port, size_t n, const char *const *reqs, const size_t *lens,
                   struct h_http_resp *out, int timeout_ms)
{
    struct conn *c = calloc(n, sizeof(*c));
    struct pollfd *p = calloc(n, sizeof(*p));
    size_t *idx = calloc(n, sizeof(*idx));
    size_t answered = 0, open = 0;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (size_t i = 0; i < n; i++)
        memset(&out[i], 0, sizeof(out[i]));
    if (!c || !p || !idx)
        goto out;
    for (size_t i = 0; i < n; i++) {
        c[i].req = reqs[i];
        c[i].len = lens ? lens[i] : strlen(reqs[i]);
        c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c[i].fd < 0 ||
            (connect(c[i].fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS))
            c[i].done = true;
        else
            open++;
    }
    uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
    while (open > 0) {
        uint64_t now = h_now_ms();
        if (now >= deadline)
            break;
        nfds_t np = 0;
        for (size_t i = 0; i < n; i++)
            if (!c[i].done) {
                /* POLLOUT also says when a non-blocking connect has finished. */
                p[np] = (struct pollfd){c[i].fd, c[i].sent < c[i].len ? POLLOUT : POLLIN, 0};
                idx[np++] = i;
            }
        if (poll(p, np, (int)(deadline - now)) < 0 && errno != EINTR)
            break;
        for (nfds_t k = 0; k < np; k++) {
            struct conn *x = &c[idx[k]];
            if (!p[k].revents)
                continue;
            if (x->sent < x->len) {
                ssize_t w = send(x->fd, x->req + x->sent, x->len - x->sent, MSG_NOSIGNAL);
                if (w > 0)
                    x->sent += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR)
                    x->sent = x->len; /* refused or reset: read whatever it answered */
                continue;
            }
            if (x->cap - x->used < 4096) {
                size_t cap = x->cap ? 2 * x->cap : 16384;
                char *b = realloc(x->buf, cap);
                if (!b) {
                    x->done = true;
                    open--;
                    continue;
                }
                x->buf = b;
                x->cap = cap;
            }
            ssize_t r = recv(x->fd, x->buf + x->used, x->cap - x->used - 1, 0);
            if (r > 0) {
                x->used += (size_t)r;
                continue;
            }
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            /* EOF, or a reset after the answer (a server that closes without
             * reading all we sent): what arrived is the answer. */
            x->done = true;
            open--;
            if (x->buf) {
                x->buf[x->used] = '\0';
                if (parse_response(x->buf, x->used, &out[idx[k]]) == 0)
                    answered++;
                else
                    h_http_free(&out[idx[k]]);
            }
        }
    }
out:
    for (size_t i = 0; c && i < n; i++) {
        if (c[i].fd >= 0)
            close(c[i].fd);
        free(c[i].buf);
    }
    free(c);
    free(p);
    free(idx);
    return answered;
}

int h_http_raw(int port, const void *req, size_t len, struct h_http_resp *out)
{
    const char *r = req;
    if (h_http_many(port, 1, &r, &len, out, 5000) != 1)
        return -1;
    return out->status;
}

int h_http(int port, const char *method, const char *path, const char *headers, const char *body,
           struct h_http_resp *out)
{
    size_t len;
    char *req = h_http_format(port, method, path, headers, body, &len);
    memset(out, 0, sizeof(*out));
    if (!req)
        return -1;
    int rc = h_http_raw(port, req, len, out);
    free(req);
    return rc;
}

/* --- Redis Cluster --- */

static void cluster_auth(const struct h_cluster *c, redisContext *rc)
{
    if (c->pass[0])
        freeReplyObject(redisCommand(rc, "AUTH %s", c->pass));
}

redisContext *h_cluster_connect(const struct h_cluster *c, int i)
{
    redisContext *rc = h_redis_connect(c->node[i].port);
    cluster_auth(c, rc);
    return rc;
}

int h_child_wait(pid_t pid, bool block)
{
    int status;
    pid_t r = waitpid(pid, &status, block ? 0 : WNOHANG);
    if (r != pid)
        return -1;
    forget(pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void h_show_log(const char *path)
{
    char *log = read_log(path);
    fprintf(stderr, "--- %s ---\n%s--- end of %s ---\n", path, log ? log : "(none)\n", path);
    free(log);
}

pid_t h_cluster_cli_spawn(const struct h_cluster *c, const char *const *args, const char *log_path)
{
    const char *argv[48];
    int n = 0;
    argv[n++] = env_or("HOSTREG_REDIS_CLI", "/usr/bin/redis-cli");
    for (int i = 0; args[i] && n < 47; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        /* In the environment rather than -a: no warning about a password
         * on the command line in its output. */
        if (c->pass[0])
            setenv("REDISCLI_AUTH", c->pass, 1);
        if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    if (pid > 0)
        track(pid);
    return pid;
}

/* cluster_state of node i's CLUSTER INFO is "ok". */
static bool cluster_state_ok(const struct h_cluster *c, int i)
{
    struct timeval tv = {0, 300000};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", c->node[i].port, tv);
    bool ok = false;
    if (rc && !rc->err) {
        cluster_auth(c, rc);
        redisReply *r = redisCommand(rc, "CLUSTER INFO");
        ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
        if (r)
            freeReplyObject(r);
    }
    if (rc)
        redisFree(rc);
    return ok;
}

int h_cluster_start(struct h_cluster *c, int n, const char *pass, const char *const *extra)
{
    memset(c, 0, sizeof(*c));
    if (n < 1 || n > H_CLUSTER_MAX)
        return -1;
    c->n = n;
    snprintf(c->pass, sizeof(c->pass), "%s", pass ? pass : "");
    /* Every port, client and bus, distinct: the default bus port (port +
     * 10000) is past 65535 for most free ports. */
    int ports[2 * H_CLUSTER_MAX];
    for (int i = 0; i < 2 * n; i++) {
        ports[i] = h_free_port(SOCK_STREAM);
        for (int j = 0; j < i; j++)
            if (ports[j] == ports[i])
                return -1;
        if (ports[i] < 0)
            return -1;
    }
    for (int i = 0; i < n; i++) {
        char bus[16];
        const char *args[40];
        int a = 0;
        snprintf(bus, sizeof(bus), "%d", ports[n + i]);
        args[a++] = "--cluster-enabled";
        args[a++] = "yes";
        args[a++] = "--cluster-config-file";
        args[a++] = "nodes.conf"; /* in the node's own --dir */
        args[a++] = "--cluster-port";
        args[a++] = bus;
        if (c->pass[0]) {
            args[a++] = "--requirepass";
            args[a++] = c->pass;
            args[a++] = "--masterauth";
            args[a++] = c->pass;
        }
        for (int j = 0; extra && extra[j] && a < 39; j++)
            args[a++] = extra[j];
        args[a] = NULL;
        if (h_redis_start(&c->node[i], ports[i], args) != 0) {
            fprintf(stderr, "cluster node %d did not start\n", i);
            goto fail;
        }
    }
    char addrs[H_CLUSTER_MAX][32], log[192];
    const char *args[H_CLUSTER_MAX + 8];
    int a = 0;
    args[a++] = "--cluster";
    args[a++] = "create";
    for (int i = 0; i < n; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%d", c->node[i].port);
        args[a++] = addrs[i];
    }
    args[a++] = "--cluster-replicas";
    args[a++] = "0";
    args[a++] = "--cluster-yes";
    args[a] = NULL;
    snprintf(log, sizeof(log), "%s/cluster-create.log", c->node[0].dir);
    pid_t pid = h_cluster_cli_spawn(c, args, log);
    /* redis-cli waits by itself until the nodes have met, and gives up
     * on its own when they do not. */
    if (pid < 0 || h_child_wait(pid, true) != 0) {
        fprintf(stderr, "redis-cli --cluster create failed\n");
        h_show_log(log);
        goto fail;
    }
    uint64_t deadline = h_now_ms() + 30000;
    for (int i = 0; i < n; i++)
        while (!cluster_state_ok(c, i)) {
            if (h_now_ms() > deadline) {
                fprintf(stderr, "cluster node %d: cluster_state not ok after 30 s\n", i);
                goto fail;
            }
            usleep(20000); /* Redis tells nobody when its cluster state changes */
        }
    return 0;
fail:
    h_cluster_stop(c);
    return -1;
}

void h_cluster_stop(struct h_cluster *c)
{
    for (int i = 0; i < c->n; i++)
        h_redis_stop(&c->node[i], false, true);
}

const char *h_bin_dir(void)
{
    return env_or("HOSTREG_BIN_DIR", "build/bin");
}

int h_run(char **out, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    if (!p)
        abort();
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    if (!buf)
        abort();
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 4096 && !(buf = realloc(buf, cap *= 2)))
            abort();
    }
    buf[len] = '\0';
    int status = pclose(p);
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char notify_path[108];

int h_notify_open(void)
{
    snprintf(notify_path, sizeof(notify_path), "/tmp/hostreg-notify-%d-%llu", (int)getpid(),
             (unsigned long long)h_now_ms());
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", notify_path);
    unlink(notify_path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setenv("NOTIFY_SOCKET", notify_path, 1);
    return fd;
}

void h_notify_close(int fd)
{
    unsetenv("NOTIFY_SOCKET");
    if (fd >= 0)
        close(fd);
    unlink(notify_path);
}

int h_notify_recv(int fd, char *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1)
        return -1;
    ssize_t n = recv(fd, buf, cap - 1, MSG_DONTWAIT);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

pid_t h_spawn(const char *const *argv, const char *log_path)
{
    int fd = -1;
    if (log_path && (fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        if (fd >= 0 && (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0))
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (fd >= 0)
        close(fd);
    if (pid > 0)
        track(pid);
    return pid;
}
