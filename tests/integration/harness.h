/* Integration test harness: starts real redis-server and hostregd processes
 * on free loopback ports, talks to them over real sockets, and stops them.
 * Every wait is bounded by a deadline and ends on an answer (a PONG, an
 * ack), not on a sleep. Binaries come from $HOSTREG_BIN_DIR and
 * $HOSTREG_REDIS_SERVER, which ctest sets. */
#ifndef HR_HARNESS_H
#define HR_HARNESS_H

#include "request.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct h_redis {
    pid_t pid;
    int port;
    char dir[128]; /* its working directory (AOF), removed by h_redis_stop */
};

/* Starts redis-server on `port` (0: a free one) and waits until it answers
 * PING. Extra arguments (NULL-terminated list) are passed on. 0 or -1. */
int h_redis_start(struct h_redis *r, int port, const char *const *extra);
/* SIGTERM (or SIGKILL when `kill9`) and wait; keeps dir unless `cleanup`. */
void h_redis_stop(struct h_redis *r, bool kill9, bool cleanup);
/* A synchronous connection for assertions; aborts the test on failure. */
redisContext *h_redis_connect(int port);

struct h_daemon {
    pid_t pid;
    int port; /* UDP */
};

/* Starts hostregd on a free UDP port against redis on `redis_port`, with
 * extra flags (NULL-terminated), and waits until it acks a request (which
 * needs its Redis connection up). 0 or -1. */
int h_daemon_start(struct h_daemon *d, int redis_port, const char *const *extra);
/* Sends SIGTERM and returns the exit status (as waitpid's WEXITSTATUS), or
 * -1 when it did not exit within 5 s (then it is killed). */
int h_daemon_stop(struct h_daemon *d);
bool h_process_alive(pid_t pid);

/* A UDP client socket connected to the daemon. */
int h_udp_socket(int port);

/* Sends `req` on `fd` and waits for the ack with its seq, retransmitting
 * every `timeout_ms` up to `tries` times. Returns 0 with *ack filled, or -1. */
int h_request(int fd, const struct hr_request *req, struct hr_ack *ack, int timeout_ms, int tries);

/* Shorthand: a fresh socket, one request, default timing. */
int h_send(int port, const struct hr_request *req, struct hr_ack *ack);

/* Builders. seq 0 picks the next value of a process-wide increasing counter. */
struct hr_request h_heartbeat(const char *host, const char *room, const char *region,
                              enum hr_status status, uint64_t seq);
struct hr_request h_status(const char *host, enum hr_status status, uint64_t seq);
struct hr_request h_leave(const char *host, uint64_t seq);
uint64_t h_next_seq(void);

/* Monotonic milliseconds. */
uint64_t h_now_ms(void);
/* A free TCP or UDP loopback port (SOCK_STREAM / SOCK_DGRAM). */
int h_free_port(int type);

/* A Redis reply helper: the command's integer reply (aborts on others). */
long long h_redis_int(redisContext *c, const char *fmt, ...);

#endif
