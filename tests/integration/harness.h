/* Integration test harness: starts real redis-server, hostregd and
 * hostreg-gateway processes on free loopback ports, talks to them over real
 * sockets (UDP, and HTTP/1.1 over raw TCP), and stops them. Every wait is
 * bounded by a deadline and ends on an answer (a PONG, an ack, a 200), not on
 * a sleep. Binaries come from $HOSTREG_BIN_DIR and $HOSTREG_REDIS_SERVER,
 * which ctest sets. Every process started here that is still running when the
 * test program exits is killed then, so a failed assertion leaks none. */
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
/* Starts a Redis Sentinel (redis-server FILE --sentinel) on a free port,
 * monitoring the master `master` at 127.0.0.1:master_port with `quorum`
 * (and `auth_pass`, unless NULL, as the data nodes' password), and
 * quick to act (down after 2 s of silence: less would fail over a healthy
 * master on a loaded test machine). Waits until it answers for the
 * master. 0 or -1. Stop it with h_redis_stop. */
int h_sentinel_start(struct h_redis *r, const char *master, int master_port, int quorum,
                     const char *auth_pass);
/* SIGTERM (or SIGKILL when `kill9`) and wait; keeps dir unless `cleanup`. */
void h_redis_stop(struct h_redis *r, bool kill9, bool cleanup);
/* A synchronous connection for assertions; aborts the test on failure. */
redisContext *h_redis_connect(int port);

struct h_daemon {
    pid_t pid;
    int port; /* UDP */
};

/* Starts hostregd on a free UDP port against redis on `redis_port` (0: no
 * --redis, the extra flags give it), with
 * extra flags (NULL-terminated), and waits until it acks a request (which
 * needs its Redis connection up). 0 or -1. */
int h_daemon_start(struct h_daemon *d, int redis_port, const char *const *extra);
/* Starts hostregd on d->port without waiting (for a daemon that answers no
 * unsigned probe); the caller awaits its first ack itself. 0 or -1. */
int h_daemon_spawn(struct h_daemon *d, int redis_port, const char *const *extra);

/* h_daemon_start with the daemon's stderr written to `log_path` (created or
 * truncated) instead of the test's, for a test that reads its log lines
 * (the counters SIGUSR1 logs). 0 or -1. */
int h_daemon_start_logged(struct h_daemon *d, int redis_port, const char *const *extra,
                          const char *log_path);
/* h_daemon_spawn with the daemon's stderr written to `log_path`. */
int h_daemon_spawn_logged(struct h_daemon *d, int redis_port, const char *const *extra,
                          const char *log_path);
/* Sends SIGUSR1 and waits (3 s at most) for the daemon's `nth` stats line in
 * its log at `log_path`: the whole log (malloc'd), or NULL. */
char *h_daemon_stats(const struct h_daemon *d, const char *log_path, int nth);
/* Counter `name` of the last stats line in `log` (0 for a dropped_<reason>
 * counter not shown, which means 0), or -1 when there is no stats line. */
long long h_stats_counter(const char *log, const char *name);
/* The same from the last stats line of worker `worker` (each worker logs one
 * line per SIGUSR1, "stats worker=N: ..."), or -1 when it has none. */
long long h_stats_worker_counter(const char *log, int worker, const char *name);

/* Waits (10 s at most) until the daemon on d->port acks ok, as h_daemon_start
 * does. 0, or -1 when it did not or has exited. */
int h_daemon_await(const struct h_daemon *d);

/* Starts hostregd again on d->port (after h_daemon_stop), waiting as above. */
int h_daemon_restart(struct h_daemon *d, int redis_port, const char *const *extra);
/* Sends SIGTERM and returns the exit status (as waitpid's WEXITSTATUS), or
 * -1 when it did not exit within 5 s (then it is killed). */
int h_daemon_stop(struct h_daemon *d);
bool h_process_alive(pid_t pid);

/* A UDP client socket connected to the daemon. */
int h_udp_socket(int port);
/* The same from another loopback source address (127.0.0.0/8, host order):
 * a different source, as far as the daemon's limits go. */
int h_udp_socket_from(int port, uint32_t src);

/* Sends `req` on `fd` and waits for the ack with its seq, retransmitting
 * every `timeout_ms` up to `tries` times. Returns 0 with *ack filled, or -1.
 * Any other datagram that arrives meanwhile is set aside and counted. */
int h_request(int fd, const struct hr_request *req, struct hr_ack *ack, int timeout_ms, int tries);
/* How many datagrams h_request has set aside since the program started (not
 * a readable ack, or the ack of another seq), over all sockets and threads. A
 * test that sends one request on a fresh socket and finds this unchanged knows
 * that the first datagram to come back was the ack of that request's seq. */
unsigned long h_request_discarded(void);

/* Shorthand: a fresh socket, one request, default timing. */
int h_send(int port, const struct hr_request *req, struct hr_ack *ack);

/* Builders. seq 0 picks the next value of a process-wide increasing counter. */
struct hr_request h_heartbeat(const char *host, const char *room, const char *region,
                              enum hr_status status, uint64_t seq);
struct hr_request h_status(const char *host, enum hr_status status, uint64_t seq);
struct hr_request h_leave(const char *host, uint64_t seq);
uint64_t h_next_seq(void);

/* Garbage datagrams, the same every run (xorshift64 from a fixed seed):
 * random lengths below H_GARBAGE_MAX (some over the protocol's HR_WIRE_MAX),
 * random bytes, and every second one behind a valid header (magic, version,
 * a request type, no flags) so that the payload decoder gets its share.
 * Start from a zeroed struct h_garbage. */
#define H_GARBAGE_MAX 600
struct h_garbage {
    uint64_t x; /* the generator's state; 0: not started */
    uint64_t n; /* datagrams made so far */
};
/* The next one into buf (H_GARBAGE_MAX bytes); returns its length (maybe 0). */
size_t h_garbage_next(struct h_garbage *g, uint8_t *buf);

/* The source tree ($HOSTREG_SOURCE_DIR, which ctest sets; "." without). */
const char *h_source_dir(void);
/* A service manager's notification socket (sd_notify(3)): a datagram socket
 * bound to a fresh path, which is also put in NOTIFY_SOCKET for the programs
 * the test starts next (h_notify_close removes both). Its fd, or -1. */
int h_notify_open(void);
void h_notify_close(int fd);
/* The next notification, waiting up to timeout_ms (0: only one already
 * there): its text into buf, or -1 when none came. */
int h_notify_recv(int fd, char *buf, size_t cap, int timeout_ms);

/* Starts argv[0] (a path) with argv, its stdout and stderr written to
 * `log_path` (NULL: the test's); returns its pid (-1 on failure). Stop it
 * with kill() and h_child_wait(). */
pid_t h_spawn(const char *const *argv, const char *log_path);

/* Where the programs are: $HOSTREG_BIN_DIR, else build/bin. */
const char *h_bin_dir(void);
/* Runs a shell command; returns its exit status (-1: killed) and its stdout
 * (malloc'd, NUL-terminated) in *out. */
int h_run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic milliseconds. */
uint64_t h_now_ms(void);
/* A free TCP or UDP loopback port (SOCK_STREAM / SOCK_DGRAM). */
int h_free_port(int type);

/* The registry's keys, read through storage layout 3 (lib/store/layout.h):
 * the tests name what they check in layout 1's terms, "<prefix>h:<id>" for a
 * host's entry, "<prefix>i:<region>:<status>" for an index,
 * "<prefix>t:<id>" for a tombstone and "<prefix>claims", and these helpers
 * answer from the real keys (the prefix is everything up to its first ':').
 * A host whose entry expired is not there, as layout 1's key would not be. */
struct h_host {
    bool live;
    char hseq[24], sseq[24], status[16], region[80], room[80]; /* seqs in decimal */
    long long expiry, lease;                                   /* ms; -1: none */
    char slots[40];                                            /* "<capacity> <free> <reported>" */
};
/* Host `id` of the registry under `prefix`: true when it is live. */
bool h_host_get(redisContext *c, const char *prefix, const char *id, struct h_host *h);
/* The key "<prefix>{<bucket of id>}<suffix>" (script.h's bucket keys). */
void h_bucket_key(redisContext *c, const char *prefix, const char *id, const char *suffix,
                  char *out, size_t cap);
/* The keys under `prefix` that hosts' writes make (buckets, the layout
 * key), not the regions' summaries, which follow a host's first write a
 * moment after its ack: a test that counts keys around a request counts
 * these. */
long long h_bucket_keys(redisContext *c, const char *prefix);
/* Live hosts of a region with a status (count.lua over every bucket). */
long long h_hosts_count(redisContext *c, const char *prefix, const char *region,
                        const char *status);
/* Redis's clock, ms. */
long long h_redis_now_ms(redisContext *c);

/* A field of the host's entry named by layout 1's key `key` ("hseq",
 * "sseq", "status", "region", "room", or "lease": the end of an unconfirmed
 * claim); "" when the host or the field is not there. The string is the
 * harness's, valid until the next call. */
const char *h_entry_field(redisContext *c, const char *key, const char *field);
/* The score `member` had in layout 1's sorted set `key` (an index: the
 * expiry of the member's entry in ms; the claims set: the end of its lease),
 * or -1 when it is not a member. Other keys: their real ZSCORE. */
long long h_zscore(redisContext *c, const char *key, const char *member);

/* A Redis reply helper: the command's integer reply (aborts on others).
 * EXISTS and PTTL of "<prefix>h:<id>", EXISTS of "<prefix>t:<id>", and
 * EXISTS and ZCARD of "<prefix>i:<region>:<status>" are answered from
 * layout 3 (see h_entry_field). */
long long h_redis_int(redisContext *c, const char *fmt, ...);

/* --- Redis Cluster --- */

#define H_CLUSTER_MAX 6

struct h_cluster {
    int n;
    struct h_redis node[H_CLUSTER_MAX];
    char pass[64]; /* every node's requirepass and masterauth, "" for none */
};

/* Starts n (1 to H_CLUSTER_MAX) redis-servers with --cluster-enabled yes
 * --cluster-config-file nodes.conf on free loopback ports (the cluster bus on
 * a free port of its own; `extra`, NULL-terminated or NULL, is passed to
 * each), joins them as n masters with `redis-cli --cluster create ...
 * --cluster-replicas 0 --cluster-yes` ($HOSTREG_REDIS_CLI) and waits (30 s
 * at most) until every node reports cluster_state:ok. `pass` (or NULL)
 * becomes every node's requirepass and masterauth. 0, or -1 with the nodes
 * stopped (and redis-cli's output shown). */
int h_cluster_start(struct h_cluster *c, int n, const char *pass, const char *const *extra);
/* Stops every node still running (SIGTERM) and removes their directories. */
void h_cluster_stop(struct h_cluster *c);
/* A synchronous connection to node i, authenticated; aborts on failure. */
redisContext *h_cluster_connect(const struct h_cluster *c, int i);
/* Starts redis-cli with `args` (NULL-terminated), the cluster's password in
 * REDISCLI_AUTH, its stdout and stderr written to `log_path`, and returns at
 * once: its pid, or -1. Reap it with h_child_wait. */
pid_t h_cluster_cli_spawn(const struct h_cluster *c, const char *const *args, const char *log_path);
/* The exit status of child `pid` (its exit code, or 128 + the signal that
 * killed it) once it has exited, waiting for it when `block`; -1 while it
 * runs (not `block`) or when it is not a child. */
int h_child_wait(pid_t pid, bool block);
/* Prints the file at `path` to stderr (a child's log, when a test fails). */
void h_show_log(const char *path);

/* --- hostreg-gateway --- */

struct h_gateway {
    pid_t pid;
    int port;     /* HTTP, on 127.0.0.1 */
    char log[64]; /* its stderr, a file: shown and removed by h_gateway_stop */
};

/* Starts hostreg-gateway on a free TCP port against redis on `redis_port`,
 * with extra flags (NULL-terminated) and extra environment ("NAME=value",
 * NULL-terminated, or NULL). HOSTREG_* variables of the test's own
 * environment are not passed on, so only what the test names configures it.
 * Waits (10 s at most) until GET /readyz answers 200. 0, or -1 (then the
 * process is stopped and its log shown). */
int h_gateway_start(struct h_gateway *g, int redis_port, const char *const *extra_args,
                    const char *const *env);
/* The same without waiting for /readyz (for a gateway that is not to become
 * ready): 0 once the process is started, or -1. */
int h_gateway_spawn(struct h_gateway *g, int redis_port, const char *const *extra_args,
                    const char *const *env);
/* hostreg-gateway with neither --listen nor --redis: its environment (`env`)
 * names them; `port` is where the caller expects it (g->port). */
int h_gateway_spawn_bare(struct h_gateway *g, int port, const char *const *extra_args,
                         const char *const *env);
/* Sends SIGTERM and waits (5 s at most, then SIGKILL). Copies the gateway's
 * log to stderr and removes it. Returns the exit status (0 for a clean
 * exit), 128+signal when killed by a signal, -1 when it had to be killed, and
 * -2 when it exited 0 but its log holds a sanitizer report. Does nothing and
 * returns 0 when it is not running (pid 0). */
int h_gateway_stop(struct h_gateway *g);
/* The same for a gateway told to stop already: waits, sends nothing. */
int h_gateway_wait(struct h_gateway *g);
/* True when the gateway's log so far contains `needle`. */
bool h_gateway_log_contains(const struct h_gateway *g, const char *needle);
/* Whether the file at `path` (a log) holds `needle`; false when unreadable. */
bool h_file_contains(const char *path, const char *needle);

/* --- a small blocking HTTP/1.1 client --- */

/* One answer. Free with h_http_free (also after a failed request). */
struct h_http_resp {
    int status;      /* 0 when no complete answer came */
    char *headers;   /* the header lines after the status line, raw, "Name: value\r\n"... */
    char *body;      /* NUL-terminated, body_len bytes before the NUL */
    size_t body_len; /* checked against Content-Length when the answer has one */
};
void h_http_free(struct h_http_resp *r);

/* The value of header `name` (case-insensitive; the first if repeated) into
 * out, or NULL when the answer has no such header. */
const char *h_http_header(const struct h_http_resp *r, const char *name, char *out, size_t outlen);

/* A request's bytes (malloc'd, NUL-terminated, *len without the NUL):
 * request line, Host, Connection: close, the extra `headers` ("Name:
 * value\r\n" lines, or NULL), Content-Length when `body` is not NULL, body. */
char *h_http_format(int port, const char *method, const char *path, const char *headers,
                    const char *body, size_t *len);

/* One request on a fresh connection, read to EOF (5 s at most). Returns the
 * status code, or -1 when no complete answer came. */
int h_http(int port, const char *method, const char *path, const char *headers, const char *body,
           struct h_http_resp *out);
/* The same with arbitrary bytes, for malformed requests. A server that
 * answers and closes before taking everything is fine (the answer counts). */
int h_http_raw(int port, const void *req, size_t len, struct h_http_resp *out);

/* n requests at once: n non-blocking connections, every request sent as its
 * socket allows, then poll until each is answered (read to EOF) or until
 * `timeout_ms`. reqs[i] are raw bytes of lens[i] (NULL lens: strlen). Fills
 * out[0..n) and returns how many got a complete answer. */
size_t h_http_many(int port, size_t n, const char *const *reqs, const size_t *lens,
                   struct h_http_resp *out, int timeout_ms);

#endif
