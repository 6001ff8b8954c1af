#define _GNU_SOURCE
#include "harness.h"

#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* Starts argv[0]; its stderr stays the test's, so a failing test shows the
 * daemon's log lines beside its own. */
static pid_t spawn(const char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

bool h_process_alive(pid_t pid)
{
    int status;
    return pid > 0 && waitpid(pid, &status, WNOHANG) == 0;
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
            /* LOADING while it replays the AOF: not ready yet. */
            bool ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
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

void h_redis_stop(struct h_redis *r, bool kill9, bool cleanup)
{
    if (r->pid > 0) {
        kill(r->pid, kill9 ? SIGKILL : SIGTERM);
        waitpid(r->pid, NULL, 0);
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

long long h_redis_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
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

int h_udp_socket(int port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        abort();
    return fd;
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
            struct hr_frame f;
            if (n <= 0 || hr_wire_decode(in, (size_t)n, &f) != 0 || f.type != HR_MSG_ACK ||
                f.ack.seq != req->seq)
                continue;
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

int h_daemon_start(struct h_daemon *d, int redis_port, const char *const *extra)
{
    char bin[256], listen[64], redis[64];
    const char *argv[40];
    int n = 0;
    d->port = h_free_port(SOCK_DGRAM);
    snprintf(bin, sizeof(bin), "%s/hostregd", env_or("HOSTREG_BIN_DIR", "build/bin"));
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", d->port);
    snprintf(redis, sizeof(redis), "redis://127.0.0.1:%d", redis_port);
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--redis";
    argv[n++] = redis;
    for (int i = 0; extra && extra[i] && n < 38; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    d->pid = spawn(argv);
    if (d->pid < 0)
        return -1;
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

int h_daemon_stop(struct h_daemon *d)
{
    int status = 0;
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    uint64_t deadline = h_now_ms() + 5000;
    while (h_now_ms() < deadline) {
        pid_t p = waitpid(d->pid, &status, WNOHANG);
        if (p == d->pid) {
            d->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(5000);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    return -1;
}
