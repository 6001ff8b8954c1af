/* hostreg on Redis topologies other than one Redis, with real servers started
 * here: a master, its replica and three sentinels (redis-server FILE
 * --sentinel) on free loopback ports. hostregd and the gateway are given a
 * redis-sentinel:// URL and must follow a failover by themselves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "wire.h"

#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MASTER "mm"

struct sentinel_setup {
    struct h_redis master, replica, sentinel[3];
    char url[256];
    const char *pass; /* the data nodes' password, or NULL */
};

static struct sentinel_setup S;

/* A connection to a data node, authenticated when it has a password. */
static redisContext *data_connect(int port)
{
    redisContext *c = h_redis_connect(port);
    if (S.pass)
        freeReplyObject(redisCommand(c, "AUTH %s", S.pass));
    return c;
}

/* A field of `SENTINEL master <name>` (a flat list of names and values) as
 * an integer, or -1. */
static long long sentinel_field(int port, const char *field)
{
    redisContext *c = h_redis_connect(port);
    redisReply *r = redisCommand(c, "SENTINEL master %s", MASTER);
    long long v = -1;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, field) == 0)
            v = atoll(r->element[i + 1]->str);
    freeReplyObject(r);
    redisFree(c);
    return v;
}

/* ROLE's first element ("master", "slave"), or "" when the node does not
 * answer. The string is static. */
static const char *role_of(int port)
{
    static char role[16];
    role[0] = '\0';
    struct timeval tv = {0, 300000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && !c->err && S.pass)
        freeReplyObject(redisCommand(c, "AUTH %s", S.pass));
    redisReply *r = c && !c->err ? redisCommand(c, "ROLE") : NULL;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        r->element[0]->type == REDIS_REPLY_STRING)
        snprintf(role, sizeof(role), "%s", r->element[0]->str);
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
    return role;
}

/* Calls of `cmd` (e.g. "evalsha") in INFO commandstats of the node, 0 when
 * it has none. */
static long long command_calls(int port, const char *cmd)
{
    redisContext *c = data_connect(port);
    redisReply *r = redisCommand(c, "INFO commandstats");
    long long calls = 0;
    char needle[64];
    snprintf(needle, sizeof(needle), "cmdstat_%s:calls=", cmd);
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, needle) : NULL;
    if (p)
        calls = atoll(p + strlen(needle));
    freeReplyObject(r);
    redisFree(c);
    return calls;
}

/* A master, a replica in sync with it, and three sentinels that know both
 * and each other (a failover needs them all to have met). */
static void sentinel_setup_start(const char *pass)
{
    memset(&S, 0, sizeof(S));
    S.pass = pass;
    const char *margs[] = {"--requirepass", pass, "--masterauth", pass, NULL};
    assert_int_equal(h_redis_start(&S.master, 0, pass ? margs : NULL), 0);
    char mport[16];
    snprintf(mport, sizeof(mport), "%d", S.master.port);
    const char *rargs[] = {"--replicaof", "127.0.0.1",    mport, "--requirepass",
                           pass,          "--masterauth", pass,  NULL};
    if (!pass)
        rargs[3] = NULL;
    assert_int_equal(h_redis_start(&S.replica, 0, rargs), 0);
    uint64_t deadline = h_now_ms() + 15000;
    while (strcmp(role_of(S.replica.port), "slave") != 0 && h_now_ms() < deadline)
        usleep(20000);
    /* In sync: the master counts it among its connected replicas. */
    for (;;) {
        redisContext *c = data_connect(S.master.port);
        redisReply *r = redisCommand(c, "INFO replication");
        bool synced = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "state=online");
        freeReplyObject(r);
        redisFree(c);
        if (synced)
            break;
        assert_true(h_now_ms() < deadline);
        usleep(20000); /* Redis tells nobody when a replica is in sync */
    }
    int len = snprintf(S.url, sizeof(S.url), "redis-sentinel://%s%s%s", pass ? ":" : "",
                       pass ? pass : "", pass ? "@" : "");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(h_sentinel_start(&S.sentinel[i], MASTER, S.master.port, 2, pass), 0);
        len += snprintf(S.url + len, sizeof(S.url) - (size_t)len, "%s127.0.0.1:%d", i ? "," : "",
                        S.sentinel[i].port);
    }
    snprintf(S.url + len, sizeof(S.url) - (size_t)len, "/%s", MASTER);
    for (int i = 0; i < 3; i++)
        while (sentinel_field(S.sentinel[i].port, "num-other-sentinels") != 2 ||
               sentinel_field(S.sentinel[i].port, "num-slaves") != 1) {
            assert_true(h_now_ms() < deadline + 30000);
            usleep(50000); /* sentinels find each other by hello messages, every 2 s */
        }
}

static int teardown_each(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        h_redis_stop(&S.sentinel[i], false, true);
    h_redis_stop(&S.replica, false, true);
    h_redis_stop(&S.master, false, true);
    return 0;
}

/* One heartbeat of `host` on `fd`, one try of `timeout_ms`: its result, or
 * -1 without an answer. */
static int heartbeat_once(int fd, const char *host, int timeout_ms)
{
    struct hr_request r = h_heartbeat(host, "room-s", "local", HR_STATUS_IDLE, 0);
    struct hr_ack ack;
    if (h_request(fd, &r, &ack, timeout_ms, 1) != 0)
        return -1;
    return (int)ack.result;
}

/* The master is killed: the sentinels promote the replica, and hostregd and
 * the gateway follow by themselves (no restart): heartbeats are acked ok
 * again, /readyz is 503 while there is no master and 200 after, and
 * `hostreg ls` finds the new master through the sentinels. The old master,
 * back as a replica, gets no writes from either. */
static void test_topology_sentinel_failover(void **state)
{
    (void)state;
    sentinel_setup_start(NULL);
    const char *args[] = {"--redis", S.url, "--prefix", "st:", NULL};
    struct h_daemon d;
    assert_int_equal(h_daemon_start(&d, 0, args), 0);
    struct h_gateway gw;
    assert_int_equal(h_gateway_start(&gw, 0, args, NULL), 0);
    int fd = h_udp_socket(d.port);
    assert_int_equal(heartbeat_once(fd, "sentinel-before", 1000), HR_RESULT_OK);
    redisContext *m = h_redis_connect(S.master.port);
    assert_int_equal(h_redis_int(m, "EXISTS st:h:sentinel-before"), 1);
    redisFree(m);

    /* The master dies. */
    uint64_t t0 = h_now_ms();
    h_redis_stop(&S.master, true, false);
    bool saw_503 = false;
    uint64_t acked_at = 0, ready_at = 0;
    while ((!acked_at || !ready_at) && h_now_ms() - t0 < 20000) {
        if (!acked_at && heartbeat_once(fd, "sentinel-after", 100) == HR_RESULT_OK)
            acked_at = h_now_ms();
        struct h_http_resp r;
        int code = h_http(gw.port, "GET", "/readyz", NULL, NULL, &r);
        h_http_free(&r);
        if (code == 503 && !ready_at)
            saw_503 = true;
        if (code == 200 && saw_503 && !ready_at)
            ready_at = h_now_ms();
    }
    print_message("# failover: heartbeats acked ok again %llu ms after the master died, "
                  "/readyz 200 again after %llu ms\n",
                  (unsigned long long)(acked_at - t0), (unsigned long long)(ready_at - t0));
    assert_true(acked_at > 0);
    assert_true(acked_at - t0 < 10000);
    assert_true(saw_503);
    assert_true(ready_at > 0);
    assert_string_equal(role_of(S.replica.port), "master");
    redisContext *r = h_redis_connect(S.replica.port);
    assert_int_equal(h_redis_int(r, "EXISTS st:h:sentinel-after"), 1);
    struct h_http_resp hr;
    assert_int_equal(h_http(gw.port, "POST", "/api/host/heartbeat",
                            "Content-Type: application/json\r\n",
                            "{\"hostId\":\"sentinel-http\",\"roomId\":\"room-h\",\"region\":"
                            "\"local\"}",
                            &hr),
                     200);
    h_http_free(&hr);
    assert_int_equal(h_redis_int(r, "EXISTS st:h:sentinel-http"), 1);
    /* `hostreg ls` finds the new master through the sentinels too. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/hostreg ls --redis '%s' --prefix st: --regions local",
             getenv("HOSTREG_BIN_DIR") ? getenv("HOSTREG_BIN_DIR") : "build/bin", S.url);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(out, "sentinel-after"));
    assert_non_null(strstr(out, "sentinel-http"));

    /* The old master comes back (empty: no persistence) and the sentinels
     * make it a replica of the new one. Neither program writes to it. */
    assert_int_equal(h_redis_start(&S.master, S.master.port, NULL), 0);
    uint64_t deadline = h_now_ms() + 30000;
    while (strcmp(role_of(S.master.port), "slave") != 0) {
        assert_true(h_now_ms() < deadline);
        usleep(50000); /* the sentinels reconfigure it on their own schedule */
    }
    for (int i = 0; i < 20; i++)
        assert_int_equal(heartbeat_once(fd, "sentinel-later", 1000), HR_RESULT_OK);
    assert_int_equal(h_http(gw.port, "POST", "/api/host/heartbeat",
                            "Content-Type: application/json\r\n",
                            "{\"hostId\":\"sentinel-http2\",\"roomId\":\"room-h\",\"region\":"
                            "\"local\"}",
                            &hr),
                     200);
    h_http_free(&hr);
    assert_int_equal(h_redis_int(r, "EXISTS st:h:sentinel-http2"), 1);
    assert_int_equal(command_calls(S.master.port, "evalsha"), 0);
    assert_int_equal(command_calls(S.master.port, "eval"), 0);
    redisFree(r);
    assert_true(h_process_alive(d.pid));
    close(fd);
    assert_int_equal(h_daemon_stop(&d), 0);
    assert_int_equal(h_gateway_stop(&gw), 0);
}

/* Data nodes with a password (the URL's; the sentinels are asked without
 * one): the daemon authenticates before it checks the node's ROLE, and
 * `hostreg ls` too. */
static void test_topology_sentinel_password(void **state)
{
    (void)state;
    sentinel_setup_start("s3cret-pw");
    const char *args[] = {"--redis", S.url, "--prefix", "sp:", NULL};
    struct h_daemon d;
    assert_int_equal(h_daemon_start(&d, 0, args), 0); /* waits for an ok ack */
    int fd = h_udp_socket(d.port);
    assert_int_equal(heartbeat_once(fd, "sentinel-pw", 1000), HR_RESULT_OK);
    close(fd);
    redisContext *m = data_connect(S.master.port);
    assert_int_equal(h_redis_int(m, "EXISTS sp:h:sentinel-pw"), 1);
    redisFree(m);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/hostreg ls --redis '%s' --prefix sp: --regions local",
             getenv("HOSTREG_BIN_DIR") ? getenv("HOSTREG_BIN_DIR") : "build/bin", S.url);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(out, "sentinel-pw"));
    assert_int_equal(h_daemon_stop(&d), 0);
}

/* --redis-wait 1: a heartbeat is acked ok only once the replica has it (so
 * a failover to that replica keeps it). With the replica stopped, no
 * heartbeat is acked ok (retry later instead), and once it runs again they
 * are. */
static void test_topology_redis_wait(void **state)
{
    (void)state;
    memset(&S, 0, sizeof(S));
    assert_int_equal(h_redis_start(&S.master, 0, NULL), 0);
    char mport[16];
    snprintf(mport, sizeof(mport), "%d", S.master.port);
    const char *rargs[] = {"--replicaof", "127.0.0.1", mport, NULL};
    assert_int_equal(h_redis_start(&S.replica, 0, rargs), 0);
    /* WAIT gets 1 s, so that a replica slowed by a loaded machine (not
     * stopped) still confirms in time. */
    const char *args[] = {
        "--redis-wait", "1", "--redis-wait-timeout", "1000", "--redis-timeout", "2000", "--prefix",
        "rw:",          NULL};
    struct h_daemon d;
    /* Started once the replica is in sync: until then every write fails. */
    assert_int_equal(h_daemon_start(&d, S.master.port, args), 0);
    int fd = h_udp_socket(d.port);
    redisContext *r = h_redis_connect(S.replica.port);
    for (int i = 0; i < 20; i++) {
        char host[32];
        snprintf(host, sizeof(host), "wait-%d", i);
        assert_int_equal(heartbeat_once(fd, host, 3000), HR_RESULT_OK);
        /* Acked, so on the replica already: no waiting here. */
        assert_int_equal(h_redis_int(r, "EXISTS rw:h:%s", host), 1);
    }
    redisFree(r);

    kill(S.replica.pid, SIGSTOP);
    int res = heartbeat_once(fd, "wait-stopped", 4000);
    print_message("# replica stopped: heartbeat answered %d (retry later is %d)\n", res,
                  HR_RESULT_RETRY_LATER);
    assert_int_equal(res, HR_RESULT_RETRY_LATER);
    kill(S.replica.pid, SIGCONT);
    uint64_t deadline = h_now_ms() + 10000;
    while (heartbeat_once(fd, "wait-resumed", 3000) != HR_RESULT_OK)
        assert_true(h_now_ms() < deadline);
    close(fd);
    assert_int_equal(h_daemon_stop(&d), 0);
}

/* A lone Redis Cluster node that serves no slot (a cluster not created
 * yet): the gateway sees that the node is a cluster node, goes through the
 * cluster's slot map, and is never ready: /readyz answers 503 naming the
 * slots without a master, instead of 200 while every call would fail. */
static void test_topology_cluster_without_slots_not_ready(void **state)
{
    (void)state;
    memset(&S, 0, sizeof(S));
    /* The cluster bus on a free port of its own: the default, port + 10000,
     * is past 65535 for a free port above 55535, and Redis then refuses to
     * start. */
    char bus[16];
    snprintf(bus, sizeof(bus), "%d", h_free_port(SOCK_STREAM));
    const char *cargs[] = {"--cluster-enabled", "yes", "--cluster-port", bus, NULL};
    assert_int_equal(h_redis_start(&S.master, 0, cargs), 0);
    struct h_gateway gw;
    assert_int_equal(h_gateway_spawn(&gw, S.master.port, NULL, NULL), 0);
    uint64_t deadline = h_now_ms() + 10000;
    while (!h_gateway_log_contains(&gw, "is a Redis Cluster node")) {
        assert_true(h_now_ms() < deadline);
        usleep(20000); /* the log is a file: nothing to wait on */
    }
    struct h_http_resp r;
    for (;;) { /* the slot map is read a moment after */
        assert_int_equal(h_http(gw.port, "GET", "/readyz", NULL, NULL, &r), 503);
        if (strstr(r.body, "slots 0-16383 have no master"))
            break;
        h_http_free(&r);
        assert_true(h_now_ms() < deadline);
        usleep(20000);
    }
    print_message("# a cluster node without slots: /readyz 503 %s\n", r.body);
    h_http_free(&r);
    assert_int_equal(h_gateway_stop(&gw), 0);
}

/* Keys of another storage layout under the prefix (the layout key says so,
 * here a layout 3 of some later build): the daemon and the gateway never
 * take them for theirs. With the key gone (a registry drained), they make
 * the registry theirs and run. */
static void test_topology_other_layout_refused(void **state)
{
    (void)state;
    memset(&S, 0, sizeof(S));
    assert_int_equal(h_redis_start(&S.master, 0, NULL), 0);
    redisContext *c = h_redis_connect(S.master.port);
    freeReplyObject(redisCommand(c, "SET ol:layout 3"));
    const char *args[] = {"--prefix", "ol:", NULL};
    struct h_gateway gw;
    assert_int_equal(h_gateway_spawn(&gw, S.master.port, args, NULL), 0);
    uint64_t deadline = h_now_ms() + 10000;
    while (!h_gateway_log_contains(&gw, "another storage layout")) {
        assert_true(h_now_ms() < deadline);
        usleep(20000); /* the log is a file: nothing to wait on */
    }
    struct h_http_resp r;
    assert_int_equal(h_http(gw.port, "GET", "/readyz", NULL, NULL, &r), 503);
    h_http_free(&r);
    struct h_daemon d = {.port = h_free_port(SOCK_DGRAM)};
    assert_int_equal(h_daemon_spawn(&d, S.master.port, args), 0);
    int fd = h_udp_socket(d.port);
    struct hr_request hb = h_heartbeat("layout-host", "room-s", "local", HR_STATUS_IDLE, 0);
    struct hr_ack ack;
    assert_int_equal(h_request(fd, &hb, &ack, 300, 10), 0); /* it may not be listening yet */
    assert_int_equal(ack.result, HR_RESULT_RETRY_LATER);
    redisReply *keys = redisCommand(c, "KEYS ol:*"); /* nothing written but the key */
    assert_int_equal(keys->elements, 1);
    freeReplyObject(keys);
    /* No layout: this build's is written, and they run. */
    freeReplyObject(redisCommand(c, "DEL ol:layout"));
    deadline = h_now_ms() + 10000;
    while (heartbeat_once(fd, "layout-host", 300) != HR_RESULT_OK)
        assert_true(h_now_ms() < deadline);
    close(fd);
    redisFree(c);
    assert_int_equal(h_daemon_stop(&d), 0);
    assert_int_equal(h_gateway_stop(&gw), 0);
}

/* Moving from layout 1, as docs/OPERATIONS.md says ("drain and restart"): a
 * registry that a layout 1 build left (a string key per host with its TTL,
 * index sorted sets scored by expiry, the claims set, a tombstone). The new
 * programs start on it without a step of their own: they write their layout
 * key and never read the old keys as theirs (a find misses the old hosts
 * until they send a heartbeat, the window the document names); hosts
 * register again with their next heartbeat; the old keys with a TTL keep it
 * (they expire by themselves), and the documented command removes the rest,
 * leaving the new registry whole. */
static void test_topology_drain_from_layout1(void **state)
{
    (void)state;
    memset(&S, 0, sizeof(S));
    assert_int_equal(h_redis_start(&S.master, 0, NULL), 0);
    redisContext *c = h_redis_connect(S.master.port);
    static const char *const hosts[] = {"old-host-1", "old-host-2", "old-host-3"};
    long long exp = h_redis_now_ms(c) + 30000;
    for (int i = 0; i < 3; i++) {
        freeReplyObject(
            redisCommand(c, "SET hr:h:%s %s PX 30000", hosts[i], "7 7 idle local room-1"));
        freeReplyObject(redisCommand(c, "ZADD hr:i:local:idle %lld %s", exp, hosts[i]));
    }
    freeReplyObject(redisCommand(c, "ZADD hr:claims %lld old-host-9", exp));
    freeReplyObject(redisCommand(c, "SET hr:t:old-host-8 12 PX 30000"));

    struct h_gateway gw;
    assert_int_equal(h_gateway_start(&gw, S.master.port, NULL, NULL), 0);
    struct h_daemon d;
    assert_int_equal(h_daemon_start(&d, S.master.port, NULL), 0);
    redisReply *r = redisCommand(c, "GET hr:layout");
    assert_true(r && r->type == REDIS_REPLY_STRING && strncmp(r->str, "3 1024 ", 7) == 0);
    freeReplyObject(r);
    /* The old hosts are not the new registry's: the window. */
    struct h_http_resp resp;
    const char *find = "{\"region\":\"local\"}";
    assert_int_equal(h_http(gw.port, "POST", "/api/match/find", NULL, find, &resp), 404);
    h_http_free(&resp);
    /* Their next heartbeats register them. */
    for (int i = 0; i < 3; i++) {
        struct hr_request hb = h_heartbeat(hosts[i], "room-1", "local", HR_STATUS_IDLE, 0);
        struct hr_ack ack;
        assert_int_equal(h_send(d.port, &hb, &ack), 0);
        assert_int_equal(ack.result, HR_RESULT_OK);
    }
    assert_int_equal(h_hosts_count(c, "hr:", "local", "idle"), 3);
    /* The old keys are as layout 1 left them: those with a TTL expire. */
    for (int i = 0; i < 3; i++) {
        r = redisCommand(c, "GET hr:h:%s", hosts[i]);
        assert_true(r && r->type == REDIS_REPLY_STRING);
        assert_string_equal(r->str, "7 7 idle local room-1");
        freeReplyObject(r);
        r = redisCommand(c, "PTTL hr:h:%s", hosts[i]);
        assert_true(r->integer > 0 && r->integer <= 30000);
        freeReplyObject(r);
    }
    r = redisCommand(c, "ZCARD hr:i:local:idle");
    assert_int_equal(r->integer, 3);
    freeReplyObject(r);
    /* The command of docs/OPERATIONS.md removes every layout 1 key. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "redis-cli -p %d --scan --pattern 'hr:[hitc]:*' | xargs -r -d '\\n' redis-cli -p %d "
             "unlink >/dev/null && redis-cli -p %d unlink hr:claims >/dev/null",
             S.master.port, S.master.port, S.master.port);
    assert_int_equal(system(cmd), 0);
    r = redisCommand(c, "KEYS *");
    for (size_t i = 0; i < r->elements; i++) {
        const char *k = r->element[i]->str;
        assert_true(strcmp(k, "hr:layout") == 0 || strncmp(k, "hr:{", 4) == 0);
    }
    freeReplyObject(r);
    /* ... and the new registry is whole: a find takes a re-registered host. */
    assert_int_equal(h_hosts_count(c, "hr:", "local", "idle"), 3);
    assert_int_equal(h_http(gw.port, "POST", "/api/match/find", NULL, find, &resp), 200);
    bool room = strstr(resp.body, "\"room-1\"") != NULL; /* hostIds are not shown to finds */
    h_http_free(&resp);
    assert_true(room);
    redisFree(c);
    assert_int_equal(h_daemon_stop(&d), 0);
    assert_int_equal(h_gateway_stop(&gw), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_topology_sentinel_failover, teardown_each),
        cmocka_unit_test_teardown(test_topology_sentinel_password, teardown_each),
        cmocka_unit_test_teardown(test_topology_redis_wait, teardown_each),
        cmocka_unit_test_teardown(test_topology_cluster_without_slots_not_ready, teardown_each),
        cmocka_unit_test_teardown(test_topology_other_layout_refused, teardown_each),
        cmocka_unit_test_teardown(test_topology_drain_from_layout1, teardown_each),
    };
    return cmocka_run_group_tests_name("topology", tests, NULL, NULL);
}
