/* hostregd against a real redis-server, over real UDP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "keys.h"
#include "wire.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct h_redis redis;
static struct h_daemon daemon_;
static redisContext *rc;

static int setup(void **state)
{
    (void)state;
    if (h_redis_start(&redis, 0, NULL) != 0)
        return -1;
    if (h_daemon_start(&daemon_, redis.port, NULL) != 0)
        return -1;
    rc = h_redis_connect(redis.port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* SIGTERM: the daemon finishes what it has and exits 0. */
    int status = h_daemon_stop(&daemon_);
    redisFree(rc);
    h_redis_stop(&redis, false, true);
    return status == 0 ? 0 : -1;
}

/* One request on a fresh socket, answered: the first datagram to come back
 * is its ack, which carries its seq (h_request sets aside any other, and
 * nothing was set aside). */
static struct hr_ack send_ok(const struct hr_request *req)
{
    struct hr_ack ack;
    unsigned long discarded = h_request_discarded();
    assert_int_equal(h_send(daemon_.port, req, &ack), 0);
    assert_int_equal(h_request_discarded(), discarded);
    return ack;
}

static long long redis_now_ms(void)
{
    redisReply *r = redisCommand(rc, "TIME");
    assert_non_null(r);
    long long ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

static void test_daemon_register_stores_entry(void **state)
{
    (void)state;
    /* Upper case on purpose: the key must use the canonical lower-case form. */
    struct hr_request hb = h_heartbeat("6F9619FF-8B86-D011-B42D-00C04FC964FF", "room-abc12",
                                       "us-east-1", HR_STATUS_NONE, 0);
    struct hr_ack ack = send_ok(&hb);
    assert_int_equal(ack.result, HR_RESULT_OK);
    assert_int_equal(ack.ttl, 30);
    assert_int_equal(ack.interval, 20);

    const char *key = "hr:h:6f9619ff-8b86-d011-b42d-00c04fc964ff";
    assert_string_equal(h_entry_field(rc, key, "room"), "room-abc12");
    assert_string_equal(h_entry_field(rc, key, "region"), "us-east-1");
    assert_string_equal(h_entry_field(rc, key, "status"), "idle");
    long long ttl = h_redis_int(rc, "PTTL %s", key);
    assert_true(ttl > 28000 && ttl <= 30000);

    long long now = redis_now_ms();
    long long score = h_zscore(rc, "hr:i:us-east-1:idle", "6f9619ff-8b86-d011-b42d-00c04fc964ff");
    assert_true(score > now + 28000 && score <= now + 30000);

    /* A heartbeat with no region lands in the default one. */
    hb = h_heartbeat("host-default-region", "r1", "", HR_STATUS_NONE, 0);
    assert_int_equal(send_ok(&hb).result, HR_RESULT_OK);
    assert_string_equal(h_entry_field(rc, "hr:h:host-default-region", "region"), "local");
    assert_true(h_zscore(rc, "hr:i:local:idle", "host-default-region") > 0);
}

static void test_daemon_busy_survives_idle_heartbeats(void **state)
{
    (void)state;
    const char *host = "host-busy-1";
    struct hr_request r = h_heartbeat(host, "room1", "eu-central", HR_STATUS_IDLE, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    r = h_status(host, HR_STATUS_BUSY, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    for (int i = 0; i < 3; i++) {
        /* What every client of the original service sends. */
        r = h_heartbeat(host, "room1", "eu-central", HR_STATUS_IDLE, 0);
        assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    }
    assert_string_equal(h_entry_field(rc, "hr:h:host-busy-1", "status"), "busy");
    assert_true(h_zscore(rc, "hr:i:eu-central:busy", host) > 0);
    assert_int_equal(h_zscore(rc, "hr:i:eu-central:idle", host), -1);

    /* And back to idle with a status update. */
    r = h_status(host, HR_STATUS_IDLE, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_string_equal(h_entry_field(rc, "hr:h:host-busy-1", "status"), "idle");
    assert_true(h_zscore(rc, "hr:i:eu-central:idle", host) > 0);
    assert_int_equal(h_zscore(rc, "hr:i:eu-central:busy", host), -1);
}

static void test_daemon_heartbeat_creating_busy_entry(void **state)
{
    (void)state;
    struct hr_request r = h_heartbeat("host-born-busy", "room1", "local", HR_STATUS_BUSY, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_string_equal(h_entry_field(rc, "hr:h:host-born-busy", "status"), "busy");
}

static void test_daemon_older_seq_changes_nothing(void **state)
{
    (void)state;
    const char *host = "host-seq-1";
    uint64_t base = h_next_seq() + 1000;
    h_next_seq();
    struct hr_request r = h_heartbeat(host, "roomA", "local", HR_STATUS_NONE, base + 10);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    long long ttl_before = h_redis_int(rc, "PTTL hr:h:%s", host);

    /* Older heartbeat: duplicate, the room does not change. */
    r = h_heartbeat(host, "roomB", "local", HR_STATUS_NONE, base + 5);
    struct hr_ack ack = send_ok(&r);
    assert_int_equal(ack.result, HR_RESULT_DUPLICATE);
    /* Every ack with room for them carries the TTL and interval
     * (docs/PROTOCOL.md), whatever its result. */
    assert_int_equal(ack.ttl, 30);
    assert_int_equal(ack.interval, 20);
    assert_string_equal(h_entry_field(rc, "hr:h:host-seq-1", "room"), "roomA");
    /* ...nor was the TTL refreshed (it can only have gone down). */
    assert_true(h_redis_int(rc, "PTTL hr:h:%s", host) <= ttl_before);

    /* The same datagram again (a retransmission): duplicate, still acked. */
    r = h_heartbeat(host, "roomA", "local", HR_STATUS_NONE, base + 10);
    assert_int_equal(send_ok(&r).result, HR_RESULT_DUPLICATE);

    /* Status updates are ordered among themselves. */
    r = h_status(host, HR_STATUS_BUSY, base + 20);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    r = h_status(host, HR_STATUS_IDLE, base + 15); /* late: sent before the busy */
    assert_int_equal(send_ok(&r).result, HR_RESULT_DUPLICATE);
    assert_string_equal(h_entry_field(rc, "hr:h:host-seq-1", "status"), "busy");

    /* A heartbeat newer than everything does not undo the status either,
     * and a status update older than that heartbeat but newer than the last
     * status update still applies (heartbeats and status updates are
     * ordered separately, so a reordered pair loses neither). */
    r = h_heartbeat(host, "roomA", "local", HR_STATUS_IDLE, base + 40);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    r = h_status(host, HR_STATUS_IDLE, base + 30);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_string_equal(h_entry_field(rc, "hr:h:host-seq-1", "status"), "idle");
}

static void test_daemon_status_unknown_host(void **state)
{
    (void)state;
    struct hr_request r = h_status("host-never-seen", HR_STATUS_BUSY, 0);
    struct hr_ack ack = send_ok(&r);
    assert_int_equal(ack.result, HR_RESULT_UNKNOWN_HOST);
    assert_int_equal(h_redis_int(rc, "EXISTS hr:h:host-never-seen"), 0);
    assert_int_equal(h_zscore(rc, "hr:i:local:busy", "host-never-seen"), -1);
}

static void test_daemon_leave_removes_entry(void **state)
{
    (void)state;
    const char *host = "host-leave-1";
    uint64_t s1 = h_next_seq(), s2 = h_next_seq(), s3 = h_next_seq(), s4 = h_next_seq();
    struct hr_request r = h_heartbeat(host, "room1", "us-west-1", HR_STATUS_NONE, s1);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_true(h_zscore(rc, "hr:i:us-west-1:idle", host) > 0);

    r = h_leave(host, s3);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_int_equal(h_redis_int(rc, "EXISTS hr:h:%s", host), 0);
    assert_int_equal(h_zscore(rc, "hr:i:us-west-1:idle", host), -1);

    /* A heartbeat sent before the leave but delivered after it does not
     * bring the host back. */
    r = h_heartbeat(host, "room1", "us-west-1", HR_STATUS_NONE, s2);
    assert_int_equal(send_ok(&r).result, HR_RESULT_DUPLICATE);
    assert_int_equal(h_redis_int(rc, "EXISTS hr:h:%s", host), 0);

    /* The host starting again (newer seq) registers normally. */
    r = h_heartbeat(host, "room1", "us-west-1", HR_STATUS_NONE, s4);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_int_equal(h_redis_int(rc, "EXISTS hr:h:%s", host), 1);

    /* Leaving a host that is not there is fine (the goal state holds). */
    r = h_leave("host-not-there", 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
}

/* A leave applies only when it is newer than both the last heartbeat and the
 * last status update applied: older than either, it was sent before the host
 * was last heard from and arrives late, so it is a duplicate and the host
 * stays. One host per case: the leave's seq (15) between the two seqs, either
 * way round. */
static void test_daemon_leave_older_than_either_seq_is_duplicate(void **state)
{
    (void)state;
    static const struct {
        const char *host;
        uint64_t heartbeats[2], busy; /* seqs (0: none); a creation sets both */
        const char *hseq, *sseq;
    } cases[] = {
        {"host-leave-between-1", {10, 0}, 20, "10", "20"},
        {"host-leave-between-2", {5, 20}, 10, "20", "10"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *host = cases[i].host;
        char key[64];
        snprintf(key, sizeof(key), "hr:h:%s", host);
        struct hr_request r =
            h_heartbeat(host, "room1", "local", HR_STATUS_NONE, cases[i].heartbeats[0]);
        assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
        r = h_status(host, HR_STATUS_BUSY, cases[i].busy);
        assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
        if (cases[i].heartbeats[1]) {
            r = h_heartbeat(host, "room1", "local", HR_STATUS_NONE, cases[i].heartbeats[1]);
            assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
        }
        assert_string_equal(h_entry_field(rc, key, "hseq"), cases[i].hseq);
        assert_string_equal(h_entry_field(rc, key, "sseq"), cases[i].sseq);

        r = h_leave(host, 15);
        print_message("%s: hseq %s, sseq %s, leave 15\n", host, cases[i].hseq, cases[i].sseq);
        assert_int_equal(send_ok(&r).result, HR_RESULT_DUPLICATE);
        assert_string_equal(h_entry_field(rc, key, "status"), "busy");
        assert_true(h_zscore(rc, "hr:i:local:busy", host) > 0);
        assert_int_equal(h_redis_int(rc, "EXISTS hr:t:%s", host), 0);

        /* Newer than both: applied. */
        r = h_leave(host, 25);
        assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
        assert_int_equal(h_redis_int(rc, "EXISTS %s", key), 0);
        assert_int_equal(h_zscore(rc, "hr:i:local:busy", host), -1);
    }
}

/* A status update does not extend the entry's life: its TTL and its index
 * score (the entry's expiry) stay what the last heartbeat made them, whether
 * the status changes or not. */
static void test_daemon_status_update_keeps_ttl(void **state)
{
    (void)state;
    const char *host = "host-keep-ttl";
    struct hr_request r = h_heartbeat(host, "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    long long expiry = h_zscore(rc, "hr:i:local:idle", host);
    assert_true(expiry > 0);
    /* Waiting on time itself: poll Redis until half a second of the TTL
     * (30 s) has run out, so that a refresh would show. */
    long long pttl;
    uint64_t deadline = h_now_ms() + 5000;
    while ((pttl = h_redis_int(rc, "PTTL hr:h:%s", host)) > 29500) {
        assert_true(h_now_ms() < deadline);
        usleep(20 * 1000);
    }

    r = h_status(host, HR_STATUS_BUSY, 0); /* a change: the entry moves index */
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_string_equal(h_entry_field(rc, "hr:h:host-keep-ttl", "status"), "busy");
    long long after = h_redis_int(rc, "PTTL hr:h:%s", host);
    printf("# PTTL %lld ms before the status update, %lld after\n", pttl, after);
    assert_true(after > 0);
    assert_true(after <= pttl); /* it can only have gone down */
    /* The new index's score is the same expiry (the script computes it from
     * its own clock and the PTTL: a millisecond or two either way). */
    long long moved = h_zscore(rc, "hr:i:local:busy", host);
    assert_true(moved >= expiry - 5 && moved <= expiry + 5);
    assert_int_equal(h_zscore(rc, "hr:i:local:idle", host), -1);

    r = h_status(host, HR_STATUS_BUSY, 0); /* no change: the entry is rewritten */
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_true(h_redis_int(rc, "PTTL hr:h:%s", host) <= after);
    assert_int_equal(h_zscore(rc, "hr:i:local:busy", host), moved);
}

/* Status `allocated` over UDP: a status update sets it, a heartbeat that
 * creates the entry can too, and neither is in the idle index (never
 * matched). */
static void test_daemon_allocated_status(void **state)
{
    (void)state;
    struct hr_request r = h_heartbeat("host-alloc", "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    r = h_status("host-alloc", HR_STATUS_ALLOCATED, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_string_equal(h_entry_field(rc, "hr:h:host-alloc", "status"), "allocated");
    assert_int_equal(h_zscore(rc, "hr:i:local:idle", "host-alloc"), -1);
    r = h_heartbeat("host-born-alloc", "room2", "local", HR_STATUS_ALLOCATED, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_string_equal(h_entry_field(rc, "hr:h:host-born-alloc", "status"), "allocated");
    assert_int_equal(h_zscore(rc, "hr:i:local:idle", "host-born-alloc"), -1);
}

/* The signals an operator sends by habit (HUP, USR2; USR1 logs the
 * counters) never stop the daemon: it logs that it has nothing to reload,
 * and still answers. */
/* Type=notify (sd_notify): READY=1 only once the socket is bound and Redis
 * answered, never before (the daemon runs and answers retry_later while
 * its Redis is down, and has said nothing); STOPPING=1 at SIGTERM. */
static void test_daemon_sd_notify(void **state)
{
    (void)state;
    int nfd = h_notify_open();
    assert_true(nfd >= 0);
    int rport = h_free_port(SOCK_STREAM);
    struct h_daemon d2 = {.port = h_free_port(SOCK_DGRAM)};
    assert_int_equal(h_daemon_spawn(&d2, rport, NULL), 0);
    unsetenv("NOTIFY_SOCKET"); /* for what the test starts next */
    /* Up, not ready: it answers, retry later. */
    int fd = h_udp_socket(d2.port);
    struct hr_request probe = h_leave("notify-probe", 0);
    struct hr_ack ack;
    int answered = -1;
    for (uint64_t end = h_now_ms() + 10000; answered != 0 && h_now_ms() < end;)
        answered = h_request(fd, &probe, &ack, 100, 1);
    close(fd);
    assert_int_equal(answered, 0);
    assert_int_equal(ack.result, HR_RESULT_RETRY_LATER);
    char msg[256];
    assert_int_equal(h_notify_recv(nfd, msg, sizeof(msg), 0), -1); /* nothing said yet */
    /* Redis comes: READY. */
    struct h_redis r2 = {0};
    assert_int_equal(h_redis_start(&r2, rport, NULL), 0);
    assert_int_equal(h_notify_recv(nfd, msg, sizeof(msg), 15000), 0);
    assert_non_null(strstr(msg, "READY=1"));
    assert_int_equal(h_daemon_await(&d2), 0);
    kill(d2.pid, SIGTERM);
    assert_int_equal(h_notify_recv(nfd, msg, sizeof(msg), 5000), 0);
    assert_non_null(strstr(msg, "STOPPING=1"));
    assert_int_equal(h_daemon_stop(&d2), 0);
    h_notify_close(nfd);
    h_redis_stop(&r2, false, true);
}

static void test_daemon_habitual_signals(void **state)
{
    (void)state;
    char log_path[64];
    snprintf(log_path, sizeof(log_path), "/tmp/hostreg-sig-%d.log", (int)getpid());
    struct h_daemon d2 = {.port = h_free_port(SOCK_DGRAM)};
    assert_int_equal(h_daemon_start_logged(&d2, redis.port, NULL, log_path), 0);
    int sigs[] = {SIGHUP, SIGUSR2};
    for (size_t i = 0; i < 2; i++) {
        kill(d2.pid, sigs[i]);
        char line[64];
        snprintf(line, sizeof(line), "signal %d: nothing to reload", sigs[i]);
        for (uint64_t end = h_now_ms() + 5000; !h_file_contains(log_path, line);) {
            assert_true(h_now_ms() < end);
            usleep(10000); /* the log is a file: polled */
        }
        assert_true(h_process_alive(d2.pid));
    }
    struct hr_request r = h_heartbeat("host-after-signals", "room1", "local", HR_STATUS_NONE, 0);
    struct hr_ack ack;
    assert_int_equal(h_send(d2.port, &r, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_OK);
    assert_int_equal(h_daemon_stop(&d2), 0);
    unlink(log_path);
}

/* --metrics-listen: GET /metrics is the Prometheus text of the counters
 * SIGUSR1 logs (summed over the workers, with # HELP and # TYPE, counters
 * named _total), GET /healthz 200, GET /readyz 200 while Redis takes writes;
 * promtool, when installed, finds nothing to say against the text. */
static void test_daemon_metrics_endpoint(void **state)
{
    (void)state;
    int mport = h_free_port(SOCK_STREAM);
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", mport);
    const char *args[] = {"--metrics-listen", listen, "--workers", "2", NULL};
    struct h_daemon d2 = {.port = h_free_port(SOCK_DGRAM)};
    assert_int_equal(h_daemon_start(&d2, redis.port, args), 0);
    for (int i = 0; i < 3; i++) {
        char host[32];
        snprintf(host, sizeof(host), "metrics-host-%d", i);
        struct hr_request r = h_heartbeat(host, "room1", "local", HR_STATUS_NONE, 0);
        struct hr_ack ack;
        assert_int_equal(h_send(d2.port, &r, &ack), 0);
        assert_int_equal(ack.result, HR_RESULT_OK);
    }
    struct h_http_resp r;
    assert_int_equal(h_http(mport, "GET", "/metrics", NULL, NULL, &r), 200);
    const char *ok = strstr(r.body, "\nhostreg_udp_acks_total{result=\"ok\"} ");
    assert_non_null(ok);
    /* The start-up probe and these three, at least. */
    assert_true(atoll(ok + strlen("\nhostreg_udp_acks_total{result=\"ok\"} ")) >= 3);
    assert_non_null(strstr(r.body, "# TYPE hostreg_udp_received_total counter\n"));
    assert_non_null(strstr(r.body, "\nhostreg_redis_up 1\n"));
    assert_non_null(strstr(r.body, "\nhostreg_build_info{version=\"0."));
    /* The Redis latency histogram: every call the three heartbeats made. */
    assert_non_null(strstr(r.body, "# TYPE hostreg_redis_call_duration_seconds histogram\n"));
    const char *cnt = strstr(r.body, "\nhostreg_redis_call_duration_seconds_count{} ");
    assert_non_null(cnt);
    assert_true(atoll(cnt + strlen("\nhostreg_redis_call_duration_seconds_count{} ")) >= 3);
    assert_non_null(strstr(r.body, "\nhostreg_redis_call_duration_seconds_bucket{le=\"+Inf\"} "));
    char path[64];
    snprintf(path, sizeof(path), "/tmp/hostreg-metrics-%d.txt", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fwrite(r.body, 1, r.body_len, f);
    fclose(f);
    h_http_free(&r);
    char cmd[160];
    snprintf(cmd, sizeof(cmd),
             "command -v promtool >/dev/null 2>&1 || exit 0; "
             "promtool check metrics < %s",
             path);
    assert_int_equal(system(cmd), 0);
    unlink(path);
    assert_int_equal(h_http(mport, "GET", "/healthz", NULL, NULL, &r), 200);
    h_http_free(&r);
    assert_int_equal(h_http(mport, "GET", "/readyz", NULL, NULL, &r), 200);
    h_http_free(&r);
    assert_int_equal(h_http(mport, "GET", "/nope", NULL, NULL, &r), 404);
    h_http_free(&r);
    assert_int_equal(h_daemon_stop(&d2), 0);
}

/* A heartbeat naming another region moves the host: out of the old region's
 * index, into the new one's, under the status it has. */
static void test_daemon_region_change_moves_index(void **state)
{
    (void)state;
    const char *host = "host-moving";
    struct hr_request r = h_heartbeat(host, "room1", "us-east-1", HR_STATUS_NONE, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_true(h_zscore(rc, "hr:i:us-east-1:idle", host) > 0);

    r = h_heartbeat(host, "room1", "eu-central", HR_STATUS_NONE, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_string_equal(h_entry_field(rc, "hr:h:host-moving", "region"), "eu-central");
    assert_int_equal(h_zscore(rc, "hr:i:us-east-1:idle", host), -1);
    assert_true(h_zscore(rc, "hr:i:eu-central:idle", host) > 0);

    /* Busy, it moves between the busy indexes. */
    r = h_status(host, HR_STATUS_BUSY, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    r = h_heartbeat(host, "room1", "us-west-1", HR_STATUS_IDLE, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_string_equal(h_entry_field(rc, "hr:h:host-moving", "region"), "us-west-1");
    assert_int_equal(h_zscore(rc, "hr:i:eu-central:busy", host), -1);
    assert_int_equal(h_zscore(rc, "hr:i:eu-central:idle", host), -1);
    assert_true(h_zscore(rc, "hr:i:us-west-1:busy", host) > 0);
    assert_int_equal(h_zscore(rc, "hr:i:us-west-1:idle", host), -1);
}

static void test_daemon_invalid_requests_change_nothing(void **state)
{
    (void)state;
    long long before = h_bucket_keys(rc, "");
    static const struct {
        const char *host, *room, *region;
        int type, status;
        int reason;
    } cases[] = {
        {"host-x", "room1", "mars", HR_MSG_HEARTBEAT, HR_STATUS_NONE, 18 /* bad_region */},
        {"host x", "room1", "local", HR_MSG_HEARTBEAT, HR_STATUS_NONE, 16 /* bad_host_id */},
        {"host-x", "room/1", "local", HR_MSG_HEARTBEAT, HR_STATUS_NONE, 17 /* bad_room_id */},
        {"host-x", "", "local", HR_MSG_HEARTBEAT, HR_STATUS_NONE, 17},
        {"", "room1", "local", HR_MSG_HEARTBEAT, HR_STATUS_NONE, 16},
        {"host-x", "room1", "local", HR_MSG_HEARTBEAT, 7, 19 /* bad_status */},
        {"host-x", NULL, NULL, HR_MSG_STATUS, HR_STATUS_NONE, 19},
        {"host@x", NULL, NULL, HR_MSG_LEAVE, HR_STATUS_NONE, 16},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hr_request r;
        memset(&r, 0, sizeof(r));
        r.type = (enum hr_msg_type)cases[i].type;
        r.seq = h_next_seq();
        snprintf(r.host_id, sizeof(r.host_id), "%s", cases[i].host);
        snprintf(r.room_id, sizeof(r.room_id), "%s", cases[i].room ? cases[i].room : "");
        snprintf(r.region, sizeof(r.region), "%s", cases[i].region ? cases[i].region : "");
        r.status = (enum hr_status)cases[i].status;
        struct hr_ack ack = send_ok(&r);
        assert_int_equal(ack.result, HR_RESULT_INVALID);
        assert_int_equal(ack.reason, cases[i].reason);
    }
    assert_int_equal(h_bucket_keys(rc, ""), before);
}

static void test_daemon_ack_never_larger_than_request(void **state)
{
    (void)state;
    int fd = h_udp_socket(daemon_.port);
    /* The smallest requests there are: a leave and a bad status update with a
     * one-character host and seq 1 (unordered would be 0, smaller still). */
    struct hr_request reqs[] = {h_leave("a", 1), h_status("b", HR_STATUS_NONE, 1),
                                h_status("c", HR_STATUS_BUSY, 1)};
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        uint8_t out[HR_WIRE_MAX], in[HR_WIRE_MAX];
        size_t len = hr_wire_encode_request(&reqs[i], out, sizeof(out));
        assert_true(len > 0);
        assert_int_equal(send(fd, out, len, 0), (ssize_t)len);
        struct pollfd p = {fd, POLLIN, 0};
        assert_int_equal(poll(&p, 1, 2000), 1);
        ssize_t n = recv(fd, in, sizeof(in), 0);
        assert_true(n > 0);
        assert_true((size_t)n <= len);
        struct hr_frame f;
        assert_int_equal(hr_wire_decode(in, (size_t)n, &f), 0);
        assert_int_equal(f.type, HR_MSG_ACK);
        assert_int_equal(f.ack.seq, 1);
    }
    close(fd);
}

/* Sends a heartbeat of `host` on `fd` (connected to the daemon) and reads
 * acks until its own, which the daemon sends only after handling every
 * datagram sent on `fd` before it (one socket, one worker, read in order;
 * one Redis connection, answered in order). Sent once: a loss would be a
 * failure anyway. Counts the datagram in *sent and each ack read in *acks. */
static void await_probe(int fd, const char *host, long long *sent, long long *acks)
{
    struct hr_request r = h_heartbeat(host, "room1", "local", HR_STATUS_NONE, 0);
    uint8_t out[HR_WIRE_MAX], in[HR_WIRE_MAX + 1];
    size_t len = hr_wire_encode_request(&r, out, sizeof(out));
    assert_true(len > 0);
    assert_int_equal(send(fd, out, len, 0), (ssize_t)len);
    ++*sent;
    for (uint64_t deadline = h_now_ms() + 5000;;) {
        uint64_t now = h_now_ms();
        struct pollfd p = {fd, POLLIN, 0};
        if (now >= deadline || poll(&p, 1, (int)(deadline - now)) != 1)
            fail_msg("no ack for the probe seq=%llu", (unsigned long long)r.seq);
        ssize_t n = recv(fd, in, sizeof(in), 0);
        assert_true(n > 0);
        ++*acks;
        struct hr_frame f;
        if (hr_wire_decode(in, (size_t)n, &f) == 0 && f.type == HR_MSG_ACK && f.ack.seq == r.seq) {
            assert_int_equal(f.ack.result, HR_RESULT_OK);
            return;
        }
    }
}

/* The sum of the dropped_<reason> counters of the last stats line in `log`,
 * whatever the reasons (one not known here counts too). */
static long long dropped_sum(const char *log)
{
    const char *line = NULL;
    for (const char *p = log; (p = strstr(p, "stats worker=")); p++)
        line = p;
    assert_non_null(line);
    const char *eol = strchr(line, '\n');
    long long sum = 0;
    for (const char *p = line; (p = strstr(p, " dropped_")) && (!eol || p < eol); p++) {
        const char *eq = strchr(p, '=');
        assert_non_null(eq);
        sum += strtoll(eq + 1, NULL, 10);
    }
    return sum;
}

/* The counters read from two stats lines: what changed in between. */
static long long delta(const char *before, const char *after, const char *name)
{
    long long a = h_stats_counter(before, name), b = h_stats_counter(after, name);
    assert_true(a >= 0 && b >= a);
    return b - a;
}

/* 10,000 datagrams of random bytes, half with a valid header: the daemon
 * survives them, stores nothing, and decodes every one. Its per-source
 * limits are off (with them on, one source sending this fast had most of
 * its datagrams refused before the decoder ever saw them, and the probes
 * below would be refused too) and so is the pacing of error acks, so each
 * datagram ends either dropped by the decoder with its reason or answered,
 * and the counters account for all of them. */
static void test_daemon_random_datagrams(void **state)
{
    (void)state;
    enum { FLOOD = 10000, CHUNK = 100 };
    const char *args[] = {/* the per-source limits off: every datagram is read */
                          "--source-rate", "0", "--source-hosts", "0",
                          /* error acks unpaced: every datagram that earns an answer gets it */
                          "--error-ack-rate", "10000000", "--error-ack-gap", "0",
                          /* its own keys */
                          "--prefix", "rd:", NULL};
    char log_path[] = "/tmp/hostreg-test-random-log-XXXXXX";
    int lfd = mkstemp(log_path);
    assert_true(lfd >= 0);
    close(lfd);
    struct h_daemon d2;
    assert_int_equal(h_daemon_start_logged(&d2, redis.port, args, log_path), 0);
    /* From here on, only this test's datagrams: the harness's readiness
     * probes were answered, so counted, before this line. */
    char *before = h_daemon_stats(&d2, log_path, 1);
    assert_non_null(before);

    const char *host = "host-flood-witness";
    long long sent = 0, acks = 0;
    int fd = h_udp_socket(d2.port);
    await_probe(fd, host, &sent, &acks);
    long long keys = h_bucket_keys(rc, "rd:");

    struct h_garbage g = {0};
    uint8_t buf[H_GARBAGE_MAX];
    for (int i = 0; i < FLOOD; i++) {
        size_t len = h_garbage_next(&g, buf);
        /* ECONNREFUSED would mean the daemon is gone. */
        assert_int_equal(send(fd, buf, len, 0), (ssize_t)len);
        sent++;
        /* A probe every CHUNK datagrams: no more in flight than the
         * daemon's socket buffer holds, so none is lost before it is read,
         * and the acks so far are read before ours can overflow. */
        if ((i + 1) % CHUNK == 0)
            await_probe(fd, host, &sent, &acks);
    }
    close(fd);
    assert_true(h_process_alive(d2.pid));
    assert_int_equal(h_bucket_keys(rc, "rd:"), keys);

    char *after = h_daemon_stats(&d2, log_path, 2);
    assert_non_null(after);
    long long received = delta(before, after, "received");
    long long dropped = dropped_sum(after) - dropped_sum(before);
    long long invalid = delta(before, after, "invalid");
    long long suppressed = delta(before, after, "ack_suppressed");
    long long acked = 0;
    static const char *const results[] = {"acked_ok", "acked_duplicate", "acked_unknown_host",
                                          "acked_invalid", "acked_retry_later"};
    for (size_t i = 0; i < sizeof(results) / sizeof(results[0]); i++)
        acked += delta(before, after, results[i]);
    printf("# %d random datagrams and %lld probes: %lld dropped by the decoder, %lld invalid "
           "(answered), %lld acks (%lld of them ok), %lld suppressed\n",
           FLOOD, sent - FLOOD, dropped, invalid, acked, delta(before, after, "acked_ok"),
           suppressed);
    /* All read, none refused unread. */
    assert_int_equal(delta(before, after, "rate_limited"), 0);
    assert_int_equal(received, sent);
    /* Each one decoded to its end: dropped with a reason, or answered (an
     * invalid one too: acked_invalid, or suppressed when even the ack would
     * be larger than it). No error ack was held back, and every ack counted
     * reached us. */
    assert_int_equal(delta(before, after, "error_acks_limited"), 0);
    assert_int_equal(dropped + acked + suppressed, sent);
    assert_true(invalid <= delta(before, after, "acked_invalid") + suppressed);
    assert_true(dropped > 0 && invalid > 0);
    assert_int_equal(acks, acked);
    free(before);
    free(after);
    assert_int_equal(h_daemon_stop(&d2), 0);
    unlink(log_path);
}

/* Starts a daemon of the test's own on the shared Redis, its log (for the
 * counters SIGUSR1 writes) at a fresh path put in log_path: the caller
 * removes it. */
static void start_logged(struct h_daemon *d, const char *const *args, char log_path[64])
{
    snprintf(log_path, 64, "/tmp/hostreg-test-daemon-log-XXXXXX");
    int fd = mkstemp(log_path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(h_daemon_start_logged(d, redis.port, args, log_path), 0);
}

/* Sends the `n` datagrams bad[i] (lens[i] bytes each), then `probe` (an
 * encoded request whose seq is `probe_seq`), all on one socket, and asserts
 * that the first datagram to come back is the probe's ack. One worker reads a
 * socket's datagrams in order and answers a broken one at once if at all,
 * while the probe's ack waits for Redis: so none of `bad` was answered. */
static void assert_unanswered(int port, const uint8_t *const *bad, const size_t *lens, size_t n,
                              const uint8_t *probe, size_t probe_len, uint64_t probe_seq)
{
    int fd = h_udp_socket(port);
    uint8_t in[HR_WIRE_MAX + 1];
    for (size_t i = 0; i < n; i++)
        assert_int_equal(send(fd, bad[i], lens[i], 0), (ssize_t)lens[i]);
    assert_int_equal(send(fd, probe, probe_len, 0), (ssize_t)probe_len);
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 3000), 1);
    ssize_t got = recv(fd, in, sizeof(in), 0);
    assert_true(got > 0);
    struct hr_frame f;
    assert_int_equal(hr_wire_decode(in, (size_t)got, &f), 0);
    assert_int_equal(f.type, HR_MSG_ACK);
    assert_int_equal(f.ack.seq, probe_seq);
    close(fd);
}

/* A datagram that is not a readable hostreg frame gets no answer at all (so
 * a spoofed source cannot make the daemon send anything to its victim), and
 * is counted under its reason. */
/* A datagram from UDP source port 0 among 30 real heartbeats: all 30 are
 * acked (before, the ack to port 0 failed sendmmsg with EINVAL and took the
 * acks of its whole batch with it), it is not answered or stored, and it is
 * counted. Port 0 takes a raw socket: root, as CI runs; skipped otherwise. */
static void test_daemon_source_port_zero(void **state)
{
    (void)state;
    enum { N = 30 };
    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    if (raw < 0) {
        print_message("skipped: no raw socket (%s); run as root to test port 0\n", strerror(errno));
        skip();
    }
    struct h_daemon d2;
    const char *args[] = {"--prefix", "pz:", NULL};
    char log_path[64];
    start_logged(&d2, args, log_path);

    /* UDP header (source port 0, no checksum: allowed over IPv4) and a
     * heartbeat the daemon would otherwise store and ack. */
    uint8_t pkt[8 + HR_WIRE_MAX];
    struct hr_request ghost = h_heartbeat("port0-ghost", "room1", "local", HR_STATUS_NONE, 0);
    size_t n = hr_wire_encode_request(&ghost, pkt + 8, HR_WIRE_MAX);
    assert_true(n > 0);
    uint16_t dport = htons((uint16_t)d2.port), ulen = htons((uint16_t)(8 + n));
    memset(pkt, 0, 8);
    memcpy(pkt + 2, &dport, 2);
    memcpy(pkt + 4, &ulen, 2);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(sendto(raw, pkt, 8 + n, 0, (struct sockaddr *)&dst, sizeof(dst)),
                     (ssize_t)(8 + n));
    close(raw);

    /* At once after it, so that they share its receive batch and its acks'. */
    int fd = h_udp_socket(d2.port);
    uint64_t seqs[N];
    for (int i = 0; i < N; i++) {
        char host[32];
        snprintf(host, sizeof(host), "port0-peer-%d", i);
        struct hr_request r = h_heartbeat(host, "room1", "local", HR_STATUS_NONE, 0);
        uint8_t buf[HR_WIRE_MAX];
        size_t len = hr_wire_encode_request(&r, buf, sizeof(buf));
        seqs[i] = r.seq;
        assert_int_equal(send(fd, buf, len, 0), (ssize_t)len);
    }
    int acked = 0;
    bool got[N] = {false};
    for (uint64_t end = h_now_ms() + 5000; acked < N && h_now_ms() < end;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) != 1)
            continue;
        uint8_t in[HR_WIRE_MAX + 1];
        ssize_t len = recv(fd, in, sizeof(in), 0);
        struct hr_frame f;
        assert_true(len > 0);
        assert_int_equal(hr_wire_decode(in, (size_t)len, &f), 0);
        for (int i = 0; i < N; i++)
            if (f.ack.seq == seqs[i] && !got[i] && f.ack.result == HR_RESULT_OK) {
                got[i] = true;
                acked++;
            }
    }
    close(fd);
    assert_int_equal(acked, N);
    assert_int_equal(h_redis_int(rc, "EXISTS pz:h:port0-ghost"), 0);
    char *log = h_daemon_stats(&d2, log_path, 1);
    assert_non_null(log);
    assert_int_equal(h_stats_counter(log, "source_port_zero"), 1);
    assert_int_equal(h_stats_counter(log, "ack_send_failed"), 0);
    free(log);
    assert_int_equal(h_daemon_stop(&d2), 0);
    unlink(log_path);
}

/* A key of the wrong type at one region's index (written by something else):
 * a new host of that region is told to retry later and the daemon's log
 * names the key; a new host of another region sent in the same batch is
 * stored and acked ok (before, the whole batch failed). */
static void test_daemon_wrong_type_key_fails_one_request(void **state)
{
    (void)state;
    struct h_daemon d2;
    const char *args[] = {"--prefix", "wt:", NULL};
    char log_path[64];
    start_logged(&d2, args, log_path);
    /* The idle index of wt-east's bucket, and a local host in another bucket. */
    char idle[160], other[160], local_id[32];
    h_bucket_key(rc, "wt:", "wt-east", "i", idle, sizeof(idle));
    for (int i = 0;; i++) {
        snprintf(local_id, sizeof(local_id), "wt-local-%d", i);
        h_bucket_key(rc, "wt:", local_id, "i", other, sizeof(other));
        if (strcmp(other, idle) != 0)
            break;
    }
    h_redis_int(rc, "APPEND %s not-a-sorted-set", idle);
    int fd = h_udp_socket(d2.port);
    struct hr_request east = h_heartbeat("wt-east", "room1", "us-east-1", HR_STATUS_NONE, 0);
    struct hr_request local = h_heartbeat(local_id, "room1", "local", HR_STATUS_NONE, 0);
    uint8_t buf[HR_WIRE_MAX];
    size_t len = hr_wire_encode_request(&east, buf, sizeof(buf));
    assert_int_equal(send(fd, buf, len, 0), (ssize_t)len);
    len = hr_wire_encode_request(&local, buf, sizeof(buf));
    assert_int_equal(send(fd, buf, len, 0), (ssize_t)len);
    /* Both answered, each for itself (sent once: error acks are paced per
     * host, so a retransmission of east's would go unanswered). */
    enum hr_result got_east = HR_RESULT_NONE, got_local = HR_RESULT_NONE;
    for (uint64_t end = h_now_ms() + 5000; (!got_east || !got_local) && h_now_ms() < end;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) != 1)
            continue;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        struct hr_frame f;
        assert_true(n > 0);
        assert_int_equal(hr_wire_decode(buf, (size_t)n, &f), 0);
        if (f.ack.seq == east.seq)
            got_east = f.ack.result;
        else if (f.ack.seq == local.seq)
            got_local = f.ack.result;
    }
    close(fd);
    assert_int_equal(got_local, HR_RESULT_OK);
    assert_int_equal(got_east, HR_RESULT_RETRY_LATER);
    assert_int_equal(h_redis_int(rc, "EXISTS wt:h:%s", local_id), 1);
    /* Nothing of east's written: its retransmission is a new try, not a
     * duplicate of a half-written one. */
    assert_int_equal(h_redis_int(rc, "EXISTS wt:h:wt-east"), 0);
    char *log = h_daemon_stats(&d2, log_path, 1);
    assert_non_null(log);
    if (!strstr(log, idle) || !strstr(log, "WRONGTYPE"))
        fail_msg("the log does not name the key:\n%s", log);
    free(log);
    assert_int_equal(h_daemon_stop(&d2), 0);
    unlink(log_path);
    h_redis_int(rc, "DEL %s", idle);
}

/* The daemon's redis_ready says whether Redis takes its writes, not only
 * whether it answers: 0 after a heartbeat refused by a replica (READONLY),
 * 1 again after one taken. And an evicting Redis is warned about at start
 * and shown as redis_evicting=1. */
static void test_daemon_redis_ready_reflects_refused_writes(void **state)
{
    (void)state;
    struct h_redis r2 = {0};
    const char *extra[] = {"--maxmemory-policy", "allkeys-lru", NULL};
    assert_int_equal(h_redis_start(&r2, 0, extra), 0);
    struct h_daemon d2;
    char log_path[] = "/tmp/hostreg-test-ready-XXXXXX";
    int lfd = mkstemp(log_path);
    assert_true(lfd >= 0);
    close(lfd);
    assert_int_equal(h_daemon_start_logged(&d2, r2.port, NULL, log_path), 0);
    char *log = h_daemon_stats(&d2, log_path, 1);
    assert_non_null(log);
    assert_non_null(strstr(log, "maxmemory-policy is allkeys-lru, not noeviction"));
    assert_int_equal(h_stats_counter(log, "redis_ready"), 1);
    assert_int_equal(h_stats_counter(log, "redis_evicting"), 1);
    free(log);

    redisContext *c = h_redis_connect(r2.port);
    redisReply *rep = redisCommand(c, "REPLICAOF 127.0.0.1 %d", redis.port);
    assert_true(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    struct hr_ack ack;
    struct hr_request hb = h_heartbeat("ro-daemon", "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(h_send(d2.port, &hb, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_RETRY_LATER);
    log = h_daemon_stats(&d2, log_path, 2);
    assert_non_null(log);
    assert_int_equal(h_stats_counter(log, "redis_ready"), 0);
    free(log);

    rep = redisCommand(c, "REPLICAOF NO ONE");
    assert_true(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    redisFree(c);
    hb = h_heartbeat("ro-daemon", "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(h_send(d2.port, &hb, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_OK);
    log = h_daemon_stats(&d2, log_path, 3);
    assert_non_null(log);
    assert_int_equal(h_stats_counter(log, "redis_ready"), 1);
    free(log);
    assert_int_equal(h_daemon_stop(&d2), 0);
    unlink(log_path);
    h_redis_stop(&r2, false, true);
}

static void test_daemon_unreadable_frames_get_no_answer(void **state)
{
    (void)state;
    static const struct {
        const char *counter; /* dropped_<reason> */
        size_t len;          /* 0: the good frame's length; beyond it, filler */
        int at;              /* the byte of the good frame changed, or -1 */
        uint8_t to;
    } cases[] = {
        {"dropped_bad_magic", 0, 0, 'X'},
        {"dropped_bad_version", 0, 2, HR_WIRE_VERSION + 1},
        {"dropped_bad_type", 0, 3, 9},
        {"dropped_bad_type", 0, 3, HR_MSG_ACK}, /* an ack sent to the daemon */
        {"dropped_bad_flags", 0, 4, 0x02},      /* a reserved bit */
        {"dropped_truncated", HR_WIRE_HDR - 1, -1, 0},
        /* The auth flag, and no room for the auth block and the tag. */
        {"dropped_truncated", HR_WIRE_HDR + HR_WIRE_AUTH_HDR + HR_WIRE_TAG - 1, 4,
         HR_WIRE_FLAG_AUTH},
        {"dropped_too_big", HR_WIRE_MAX + 1, -1, 0},
        {"dropped_too_big", 2000, -1, 0}, /* larger than the daemon's receive buffer */
        {"dropped_bad_payload", HR_WIRE_HDR + 1, HR_WIRE_HDR, 0xff}, /* ends inside a varint */
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    static const char *const counters[] = {
        "dropped_bad_magic", "dropped_truncated", "dropped_bad_version", "dropped_bad_type",
        "dropped_bad_flags", "dropped_too_big",   "dropped_bad_payload"};
    enum { R = sizeof(counters) / sizeof(counters[0]) };
    struct h_daemon d2;
    const char *args[] = {"--prefix", "uf:", NULL};
    char log_path[64];
    start_logged(&d2, args, log_path);
    char *log = h_daemon_stats(&d2, log_path, 1);
    assert_non_null(log);
    long long before[R], received = h_stats_counter(log, "received"),
                         invalid = h_stats_counter(log, "invalid");
    for (int k = 0; k < R; k++)
        before[k] = h_stats_counter(log, counters[k]);
    free(log);

    struct hr_request hb = h_heartbeat("host-unreadable", "room1", "local", HR_STATUS_NONE, 0);
    uint8_t good[HR_WIRE_MAX];
    size_t glen = hr_wire_encode_request(&hb, good, sizeof(good));
    assert_true(glen >= HR_WIRE_HDR + HR_WIRE_AUTH_HDR + HR_WIRE_TAG);
    static uint8_t frames[N][2000];
    const uint8_t *bad[N];
    size_t lens[N];
    for (size_t i = 0; i < N; i++) {
        memset(frames[i], 'x', sizeof(frames[i]));
        memcpy(frames[i], good, glen);
        if (cases[i].at >= 0)
            frames[i][cases[i].at] = cases[i].to;
        bad[i] = frames[i];
        lens[i] = cases[i].len ? cases[i].len : glen;
    }
    /* The good frame itself is the probe, after all of them. */
    assert_unanswered(d2.port, bad, lens, N, good, glen, hb.seq);
    assert_int_equal(h_redis_int(rc, "EXISTS uf:h:host-unreadable"), 1);

    log = h_daemon_stats(&d2, log_path, 2);
    assert_non_null(log);
    /* Every one was read (the silence is the daemon's, not a lost datagram),
     * none was taken for a readable request that breaks a rule, and each is
     * counted under its reason. */
    assert_int_equal(h_stats_counter(log, "received") - received, N + 1);
    assert_int_equal(h_stats_counter(log, "invalid"), invalid);
    for (int k = 0; k < R; k++) {
        long long want = 0;
        for (size_t i = 0; i < N; i++)
            want += strcmp(cases[i].counter, counters[k]) == 0;
        long long now = h_stats_counter(log, counters[k]);
        if (now - before[k] != want)
            fail_msg("%s went from %lld to %lld, want +%lld", counters[k], before[k], now, want);
    }
    free(log);
    assert_int_equal(h_daemon_stop(&d2), 0);
    unlink(log_path);
}

static void test_daemon_entry_expires_with_short_ttl(void **state)
{
    (void)state;
    struct h_daemon d2;
    const char *args[] = {"--ttl", "2", "--prefix", "t2:", NULL};
    assert_int_equal(h_daemon_start(&d2, redis.port, args), 0);
    struct hr_request r = h_heartbeat("host-short-ttl", "room1", "local", HR_STATUS_NONE, 0);
    struct hr_ack ack;
    assert_int_equal(h_send(d2.port, &r, &ack), 0);
    uint64_t acked = h_now_ms();
    assert_int_equal(ack.result, HR_RESULT_OK);
    assert_int_equal(ack.ttl, 2);
    assert_int_equal(ack.interval, 1);
    assert_int_equal(h_redis_int(rc, "EXISTS t2:h:host-short-ttl"), 1);

    /* Waiting on time itself: poll Redis until the entry is gone. */
    uint64_t gone = 0;
    while (h_now_ms() < acked + 3500) {
        if (h_redis_int(rc, "EXISTS t2:h:host-short-ttl") == 0) {
            gone = h_now_ms();
            break;
        }
        usleep(20000);
    }
    assert_true(gone != 0);
    assert_true(gone - acked >= 1500); /* not early either */
    assert_true(gone - acked <= 3000);
    /* The index never returns an expired host to a reader asking for live ones. */
    redisReply *rep = redisCommand(rc, "ZRANGEBYSCORE t2:i:local:idle %lld +inf", redis_now_ms());
    assert_non_null(rep);
    assert_int_equal(rep->elements, 0);
    freeReplyObject(rep);
    assert_int_equal(h_daemon_stop(&d2), 0);
}

static void test_daemon_survives_redis_restart(void **state)
{
    (void)state;
    struct h_redis r2 = {0};
    struct h_daemon d2;
    assert_int_equal(h_redis_start(&r2, 0, NULL), 0);
    assert_int_equal(h_daemon_start(&d2, r2.port, NULL), 0);
    struct hr_request r = h_heartbeat("host-restart", "room1", "local", HR_STATUS_NONE, 0);
    struct hr_ack ack;
    assert_int_equal(h_send(d2.port, &r, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_OK);

    h_redis_stop(&r2, false, false);
    r = h_heartbeat("host-restart", "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(h_send(d2.port, &r, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_RETRY_LATER);
    assert_int_equal(ack.reason, 32 /* unavailable */);
    assert_true(h_process_alive(d2.pid));

    assert_int_equal(h_redis_start(&r2, r2.port, NULL), 0);
    uint64_t back = h_now_ms(), ok_at = 0;
    int fd = h_udp_socket(d2.port);
    while (h_now_ms() < back + 5000) {
        r = h_heartbeat("host-restart", "room1", "local", HR_STATUS_NONE, 0);
        if (h_request(fd, &r, &ack, 200, 1) == 0 && ack.result == HR_RESULT_OK) {
            ok_at = h_now_ms();
            break;
        }
        /* Retry-later acks pace this loop; without an ack h_request waited 200 ms. */
        usleep(10000);
    }
    close(fd);
    assert_true(ok_at != 0);
    printf("# daemon back to ok %llu ms after Redis answered again\n",
           (unsigned long long)(ok_at - back));
    redisContext *c2 = h_redis_connect(r2.port);
    assert_int_equal(h_redis_int(c2, "EXISTS hr:h:host-restart"), 1);
    redisFree(c2);
    assert_int_equal(h_daemon_stop(&d2), 0);
    h_redis_stop(&r2, false, true);
}

static void test_daemon_workers_share_the_port(void **state)
{
    (void)state;
    struct h_daemon d2;
    const char *args[] = {"--workers", "2", NULL};
    char log_path[64];
    start_logged(&d2, args, log_path);
    /* Distinct source ports: the kernel spreads them over both workers (by
     * a hash of the addresses and ports: all 40 on one worker would be a
     * chance of 2 in 2^40). */
    for (int i = 0; i < 40; i++) {
        char host[32];
        snprintf(host, sizeof(host), "host-worker-%d", i);
        struct hr_request r = h_heartbeat(host, "room1", "local", HR_STATUS_NONE, 0);
        struct hr_ack ack;
        assert_int_equal(h_send(d2.port, &r, &ack), 0);
        assert_int_equal(ack.result, HR_RESULT_OK);
        assert_int_equal(h_redis_int(rc, "EXISTS hr:h:%s", host), 1);
    }
    /* Each worker logs its own line: both read requests and acked them. */
    char *log = h_daemon_stats(&d2, log_path, 2);
    assert_non_null(log);
    long long acked = 0;
    for (int w = 0; w < 2; w++) {
        long long received = h_stats_worker_counter(log, w, "received");
        long long ok = h_stats_worker_counter(log, w, "acked_ok");
        printf("# worker %d: received %lld, acked ok %lld\n", w, received, ok);
        assert_true(received > 0);
        assert_true(ok > 0);
        acked += ok;
    }
    assert_true(acked >= 40); /* and the harness's readiness probes */
    free(log);

    /* A second hostregd on the same address, with workers of its own, is
     * refused (its SO_REUSEPORT sockets would have shared the port and taken
     * a part of the datagrams); with --reuseport it shares on purpose.
     * `timeout` ends one that runs: status 124. */
    const char *bin = getenv("HOSTREG_BIN_DIR");
    static const struct {
        const char *flag;
        int status;
    } second[] = {{"", 1}, {"--reuseport", 124}};
    for (size_t i = 0; i < 2; i++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd),
                 "timeout 3 %s/hostregd --listen 127.0.0.1:%d --workers 2 --redis "
                 "redis://127.0.0.1:%d --prefix rp: %s 2>/dev/null",
                 bin ? bin : "build/bin", d2.port, redis.port, second[i].flag);
        int st = system(cmd);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != second[i].status)
            fail_msg("a second hostregd %s: status %d, want %d", second[i].flag,
                     WIFEXITED(st) ? WEXITSTATUS(st) : -1, second[i].status);
    }

    assert_int_equal(h_daemon_stop(&d2), 0);
    unlink(log_path);
}

/* --- authenticated datagrams --- */

#define KEY1 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define KEY2 "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static void write_keys(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
}

/* Signs r as a host holding key `id` of the file above (per-host for id 2). */
static size_t sign(const struct hr_request *r, uint8_t id, int64_t skew, uint8_t *buf)
{
    struct hr_key k = {.id = id, .mode = id == 2 ? HR_KEY_MASTER : HR_KEY_DEPLOYMENT};
    uint8_t key[HR_KEY_LEN];
    hr_keys_parse_hex(id == 2 ? KEY2 : KEY1, k.secret);
    hr_keys_host_key(&k, r->host_id, key);
    return hr_wire_encode_request_auth(r, key, id, (uint32_t)(time(NULL) + skew), buf, HR_WIRE_MAX);
}

/* Sends `bad`, then a good probe signed with key `probe_id` on the same
 * socket, and asserts that the first answer is the probe's: `bad` got none. */
static void assert_silent(int port, const uint8_t *bad, size_t badlen, uint8_t probe_id)
{
    struct hr_request probe = h_heartbeat("auth-probe", "room1", "local", HR_STATUS_NONE, 0);
    uint8_t pb[HR_WIRE_MAX];
    size_t plen = sign(&probe, probe_id, 0, pb);
    assert_unanswered(port, &bad, &badlen, 1, pb, plen, probe.seq);
}

/* Sends r signed and awaits its ack, resending while the daemon starts. */
static struct hr_ack send_signed(int port, const struct hr_request *r, uint8_t id)
{
    uint8_t buf[HR_WIRE_MAX], in[HR_WIRE_MAX];
    size_t len = sign(r, id, 0, buf);
    int fd = h_udp_socket(port);
    struct hr_frame f;
    bool answered = false;
    uint64_t deadline = h_now_ms() + 5000;
    /* Resent until answered with something other than retry-later: the
     * daemon is not bound yet (the port refuses us) or not connected to
     * Redis yet (retry-later, at most one a second per host). */
    while (!answered && h_now_ms() < deadline) {
        send(fd, buf, len, 0);
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) != 1)
            continue;
        ssize_t n = recv(fd, in, sizeof(in), 0);
        if (n <= 0) {
            usleep(20000); /* the port refused us: nobody there yet */
            continue;
        }
        assert_true((size_t)n <= len); /* no amplification */
        assert_int_equal(hr_wire_decode(in, (size_t)n, &f), 0);
        assert_int_equal(f.ack.seq, r->seq);
        answered = f.ack.result != HR_RESULT_RETRY_LATER;
    }
    assert_true(answered);
    close(fd);
    return f.ack;
}

static void test_daemon_authenticated_datagrams(void **state)
{
    (void)state;
    char path[] = "/tmp/hostreg-test-keys-XXXXXX";
    int kfd = mkstemp(path);
    assert_true(kfd >= 0);
    close(kfd);
    write_keys(path, "1 deployment " KEY1 "\n2 master " KEY2 "\n");
    struct h_daemon d2;
    const char *args[] = {"--key-file", path, "--prefix", "au:", NULL};
    char log_path[] = "/tmp/hostreg-test-auth-log-XXXXXX";
    int lfd = mkstemp(log_path);
    assert_true(lfd >= 0);
    close(lfd);
    /* The harness's readiness probe is unsigned and must go unanswered: the
     * first signed request below is what waits for the daemon. */
    d2.port = h_free_port(SOCK_DGRAM);
    assert_int_equal(h_daemon_spawn_logged(&d2, redis.port, args, log_path), 0);
    struct hr_request r = h_heartbeat("host-deploy", "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(send_signed(d2.port, &r, 1).result, HR_RESULT_OK);
    assert_int_equal(h_redis_int(rc, "EXISTS au:h:host-deploy"), 1);

    /* A master key: each host signs with its own derived key. */
    r = h_heartbeat("host-master", "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(send_signed(d2.port, &r, 2).result, HR_RESULT_OK);

    /* Unsigned: silence, and nothing stored. */
    uint8_t buf[HR_WIRE_MAX];
    r = h_heartbeat("host-unsigned", "room1", "local", HR_STATUS_NONE, 0);
    size_t len = hr_wire_encode_request(&r, buf, sizeof(buf));
    assert_silent(d2.port, buf, len, 1);
    assert_int_equal(h_redis_int(rc, "EXISTS au:h:host-unsigned"), 0);

    /* host-master's own key cannot speak for host-deploy. */
    struct hr_request forged = h_status("host-deploy", HR_STATUS_BUSY, 0);
    struct hr_key mk = {.id = 2, .mode = HR_KEY_MASTER};
    uint8_t hk[HR_KEY_LEN];
    hr_keys_parse_hex(KEY2, mk.secret);
    hr_keys_host_key(&mk, "host-master", hk);
    len = hr_wire_encode_request_auth(&forged, hk, 2, (uint32_t)time(NULL), buf, sizeof(buf));
    assert_silent(d2.port, buf, len, 1);
    assert_string_equal(h_entry_field(rc, "au:h:host-deploy", "status"), "idle");

    /* A replay from outside the ±TTL window, on either side of it (a
     * timestamp from the future is no fresher), an unknown key id, a
     * flipped bit. */
    r = h_heartbeat("host-stale", "room1", "local", HR_STATUS_NONE, 0);
    len = sign(&r, 1, -3600, buf);
    assert_silent(d2.port, buf, len, 1);
    len = sign(&r, 1, 3600, buf);
    assert_silent(d2.port, buf, len, 1);
    len = sign(&r, 1, 0, buf);
    buf[5] = 9; /* key id 9: not in the file */
    assert_silent(d2.port, buf, len, 1);
    len = sign(&r, 1, 0, buf);
    buf[len - 20] ^= 1;
    assert_silent(d2.port, buf, len, 1);
    /* A tag cut short: the last 16 bytes, taken as the tag, do not verify. */
    len = sign(&r, 1, 0, buf);
    assert_silent(d2.port, buf, len - 4, 1);
    assert_int_equal(h_redis_int(rc, "EXISTS au:h:host-stale"), 0);
    /* Each refusal counted: unsigned, another host's key, stale twice,
     * unknown key id, bad tag, short tag (assert_silent saw that none of
     * them was answered). */
    char *log = h_daemon_stats(&d2, log_path, 1);
    assert_non_null(log);
    assert_int_equal(h_stats_counter(log, "dropped_bad_auth"), 7);
    assert_int_equal(h_stats_counter(log, "auth_stale"), 2);
    assert_int_equal(h_stats_counter(log, "invalid"), 0);
    free(log);
    assert_int_equal(h_daemon_stop(&d2), 0);
    unlink(log_path);

    /* Rotation: key 1 retired from the file, key 2 still accepted. */
    write_keys(path, "2 master " KEY2 "\n");
    assert_int_equal(h_daemon_spawn(&d2, redis.port, args), 0);
    r = h_heartbeat("host-master", "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(send_signed(d2.port, &r, 2).result, HR_RESULT_OK);
    r = h_heartbeat("host-deploy", "room1", "local", HR_STATUS_NONE, 0);
    len = sign(&r, 1, 0, buf);
    assert_silent(d2.port, buf, len, 2);
    assert_int_equal(h_daemon_stop(&d2), 0);
    unlink(path);
}

static void test_daemon_source_rate_limit(void **state)
{
    (void)state;
    struct h_daemon d2;
    const char *args[] = {"--source-rate", "100", "--source-burst", "50", "--prefix", "rl:", NULL};
    assert_int_equal(h_daemon_start(&d2, redis.port, args), 0);
    int fd = h_udp_socket(d2.port);
    uint64_t t0 = h_now_ms();
    for (int i = 0; i < 500; i++) {
        char host[32];
        uint8_t buf[HR_WIRE_MAX];
        snprintf(host, sizeof(host), "host-flood-%d", i);
        struct hr_request r = h_heartbeat(host, "room1", "local", HR_STATUS_NONE, 0);
        size_t len = hr_wire_encode_request(&r, buf, sizeof(buf));
        assert_int_equal(send(fd, buf, len, 0), (ssize_t)len);
    }
    close(fd);
    /* Acked once the bucket has a token again, and after every earlier
     * datagram was handled. */
    struct hr_request probe = h_heartbeat("host-flood-probe", "room1", "local", HR_STATUS_NONE, 0);
    struct hr_ack ack;
    assert_int_equal(h_send(d2.port, &probe, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_OK);
    uint64_t elapsed = h_now_ms() - t0;
    long long stored = 0;
    for (int i = 0; i < 500; i++) {
        char host[32];
        struct h_host h;
        snprintf(host, sizeof(host), "host-flood-%d", i);
        stored += h_host_get(rc, "rl:", host, &h);
    }
    printf("# 500 datagrams in a burst, burst 50, 100/s: %lld stored in %llu ms\n", stored,
           (unsigned long long)elapsed);
    assert_true(stored >= 45); /* the harness's readiness probes took a token or two */
    assert_true(stored <= 50 + (long long)(elapsed / 10) + 2);
    assert_int_equal(h_daemon_stop(&d2), 0);
}

static void test_daemon_max_hosts(void **state)
{
    (void)state;
    struct h_daemon d2;
    /* One bucket: the cap is per bucket (ceil(max-hosts / buckets)). */
    const char *args[] = {"--max-hosts", "3", "--prefix", "mx:", "--buckets", "1", NULL};
    assert_int_equal(h_daemon_start(&d2, redis.port, args), 0);
    static const char *hosts[] = {"host-cap-1", "host-cap-2", "host-cap-3", "host-cap-4"};
    struct hr_ack ack;
    for (int i = 0; i < 3; i++) {
        struct hr_request r = h_heartbeat(hosts[i], "room1", "local", HR_STATUS_NONE, 0);
        assert_int_equal(h_send(d2.port, &r, &ack), 0);
        assert_int_equal(ack.result, HR_RESULT_OK);
    }
    /* A fourth host: told to retry later, the registry is full. */
    struct hr_request r = h_heartbeat(hosts[3], "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(h_send(d2.port, &r, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_RETRY_LATER);
    assert_int_equal(ack.reason, 34 /* full */);
    assert_int_equal(h_redis_int(rc, "EXISTS mx:h:host-cap-4"), 0);
    /* Hosts already in keep refreshing, and a leave makes room. */
    r = h_heartbeat(hosts[0], "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(h_send(d2.port, &r, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_OK);
    r = h_leave(hosts[1], 0);
    assert_int_equal(h_send(d2.port, &r, &ack), 0);
    r = h_heartbeat(hosts[3], "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(h_send(d2.port, &r, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_OK);
    assert_int_equal(h_daemon_stop(&d2), 0);
}

/* Sequence numbers compare exactly, whatever their number of digits and
 * above 2^53 (where Lua's doubles would round), up to 2^64 - 1. */
static void test_daemon_seq_order_exact(void **state)
{
    (void)state;
    static const struct {
        uint64_t seq;
        enum hr_result want;
    } steps[] = {
        {9, HR_RESULT_OK},
        {10, HR_RESULT_OK}, /* more digits: newer */
        {9, HR_RESULT_DUPLICATE},
        {9007199254740992ULL, HR_RESULT_OK}, /* 2^53 */
        {9007199254740993ULL, HR_RESULT_OK}, /* 2^53 + 1: a double cannot tell them apart */
        {9007199254740992ULL, HR_RESULT_DUPLICATE},
        {18446744073709551615ULL, HR_RESULT_OK},
        {18446744073709551614ULL, HR_RESULT_DUPLICATE},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct hr_request r =
            h_heartbeat("host-seq-exact", "room1", "local", HR_STATUS_NONE, steps[i].seq);
        /* send_ok: the ack echoes the seq exactly, 2^64 - 1 included. */
        struct hr_ack ack = send_ok(&r);
        assert_int_equal(ack.result, steps[i].want);
    }
    assert_string_equal(h_entry_field(rc, "hr:h:host-seq-exact", "hseq"), "18446744073709551615");
}

/* An entry in the hash layout of older builds reads as absent and the next
 * heartbeat replaces it (an upgrade needs no migration step). */
static void test_daemon_replaces_old_layout(void **state)
{
    (void)state;
    assert_int_equal(h_redis_int(rc, "HSET hr:h:host-old-layout room r region local status busy"),
                     3);
    struct hr_request r = h_heartbeat("host-old-layout", "room2", "local", HR_STATUS_NONE, 0);
    assert_int_equal(send_ok(&r).result, HR_RESULT_OK);
    assert_string_equal(h_entry_field(rc, "hr:h:host-old-layout", "room"), "room2");
    assert_string_equal(h_entry_field(rc, "hr:h:host-old-layout", "status"), "idle");
}

/* One source address cannot fill the registry: past --source-hosts it keeps
 * refreshing the hosts it has and gets no new one; other sources are not
 * affected. */
static void test_daemon_source_hosts_cap(void **state)
{
    (void)state;
    struct h_daemon d2;
    const char *args[] = {"--source-hosts", "3", "--prefix", "sc:", NULL};
    assert_int_equal(h_daemon_start(&d2, redis.port, args), 0);
    int fd = h_udp_socket(d2.port), other = h_udp_socket_from(d2.port, 0x7f000003);
    struct hr_ack ack;
    struct hr_request r;
    for (int i = 0; i < 3; i++) {
        char host[32];
        snprintf(host, sizeof(host), "host-src-%d", i);
        r = h_heartbeat(host, "room1", "local", HR_STATUS_NONE, 0);
        assert_int_equal(h_request(fd, &r, &ack, 200, 10), 0);
        assert_int_equal(ack.result, HR_RESULT_OK);
    }
    r = h_heartbeat("host-src-3", "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(h_request(fd, &r, &ack, 200, 10), 0);
    assert_int_equal(ack.result, HR_RESULT_RETRY_LATER);
    assert_int_equal(ack.reason, 35 /* source_full */);
    assert_int_equal(h_redis_int(rc, "EXISTS sc:h:host-src-3"), 0);
    /* Its hosts keep refreshing, status updates work. */
    r = h_heartbeat("host-src-0", "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(h_request(fd, &r, &ack, 200, 10), 0);
    assert_int_equal(ack.result, HR_RESULT_OK);
    r = h_status("host-src-1", HR_STATUS_BUSY, 0);
    assert_int_equal(h_request(fd, &r, &ack, 200, 10), 0);
    assert_int_equal(ack.result, HR_RESULT_OK);
    /* Another source registers the same new host. */
    r = h_heartbeat("host-src-3", "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(h_request(other, &r, &ack, 200, 10), 0);
    assert_int_equal(ack.result, HR_RESULT_OK);
    assert_int_equal(h_redis_int(rc, "EXISTS sc:h:host-src-3"), 1);
    close(fd);
    close(other);
    assert_int_equal(h_daemon_stop(&d2), 0);
}

/* Hosts that died free their places when their entries expire, even though
 * nothing has removed their entries yet (refused creations write
 * nothing). */
static void test_daemon_max_hosts_frees_expired(void **state)
{
    (void)state;
    struct h_daemon d2;
    const char *args[] = {"--max-hosts", "2",         "--ttl", "1", "--prefix",
                          "mxe:",        "--buckets", "1",     NULL};
    assert_int_equal(h_daemon_start(&d2, redis.port, args), 0);
    struct hr_ack ack;
    struct hr_request r;
    for (int i = 0; i < 2; i++) {
        char host[32];
        snprintf(host, sizeof(host), "host-gone-%d", i);
        r = h_heartbeat(host, "room1", "local", HR_STATUS_NONE, 0);
        assert_int_equal(h_send(d2.port, &r, &ack), 0);
        assert_int_equal(ack.result, HR_RESULT_OK);
    }
    r = h_heartbeat("host-new", "room1", "local", HR_STATUS_NONE, 0);
    assert_int_equal(h_send(d2.port, &r, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_RETRY_LATER);
    assert_int_equal(ack.reason, 34 /* full */);
    /* Both entries expire after their 1 s TTL; nothing has removed them
     * yet (their bucket's hash still holds both): the cap counts live hosts
     * only. */
    uint64_t deadline = h_now_ms() + 5000;
    while (h_redis_int(rc, "EXISTS mxe:h:host-gone-0") +
               h_redis_int(rc, "EXISTS mxe:h:host-gone-1") >
           0) {
        assert_true(h_now_ms() < deadline);
        usleep(20 * 1000); /* polling Redis for the expiry */
    }
    assert_int_equal(h_redis_int(rc, "HLEN mxe:{0}e"), 2);
    assert_int_equal(h_send(d2.port, &r, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_OK);
    assert_int_equal(h_daemon_stop(&d2), 0);
}

int main(int argc, char **argv)
{
    /* One test, or those matching a pattern ('*' and '?'): test_x 'test_x_y*' */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_daemon_register_stores_entry),
        cmocka_unit_test(test_daemon_busy_survives_idle_heartbeats),
        cmocka_unit_test(test_daemon_heartbeat_creating_busy_entry),
        cmocka_unit_test(test_daemon_older_seq_changes_nothing),
        cmocka_unit_test(test_daemon_status_unknown_host),
        cmocka_unit_test(test_daemon_leave_removes_entry),
        cmocka_unit_test(test_daemon_leave_older_than_either_seq_is_duplicate),
        cmocka_unit_test(test_daemon_status_update_keeps_ttl),
        cmocka_unit_test(test_daemon_allocated_status),
        cmocka_unit_test(test_daemon_sd_notify),
        cmocka_unit_test(test_daemon_habitual_signals),
        cmocka_unit_test(test_daemon_metrics_endpoint),
        cmocka_unit_test(test_daemon_region_change_moves_index),
        cmocka_unit_test(test_daemon_invalid_requests_change_nothing),
        cmocka_unit_test(test_daemon_ack_never_larger_than_request),
        cmocka_unit_test(test_daemon_random_datagrams),
        cmocka_unit_test(test_daemon_unreadable_frames_get_no_answer),
        cmocka_unit_test(test_daemon_source_port_zero),
        cmocka_unit_test(test_daemon_wrong_type_key_fails_one_request),
        cmocka_unit_test(test_daemon_entry_expires_with_short_ttl),
        cmocka_unit_test(test_daemon_survives_redis_restart),
        cmocka_unit_test(test_daemon_workers_share_the_port),
        cmocka_unit_test(test_daemon_authenticated_datagrams),
        cmocka_unit_test(test_daemon_source_rate_limit),
        cmocka_unit_test(test_daemon_max_hosts),
        cmocka_unit_test(test_daemon_max_hosts_frees_expired),
        cmocka_unit_test(test_daemon_source_hosts_cap),
        cmocka_unit_test(test_daemon_seq_order_exact),
        cmocka_unit_test(test_daemon_replaces_old_layout),
        cmocka_unit_test(test_daemon_redis_ready_reflects_refused_writes),
    };
    return cmocka_run_group_tests_name("daemon", tests, setup, teardown);
}
