/* hostreg on a Redis Cluster, with real servers started here: three masters
 * (redis-server --cluster-enabled, joined by redis-cli --cluster create) with
 * a password. hostregd is given one node's URL (it finds out at connect that
 * the node is a cluster node) and hostreg-gateway two nodes as seeds
 * (redis://h1:p1,h2:p2). Heartbeats over UDP and HTTP, status updates, finds,
 * lists and counts (the gateway's and `hostreg ls`), each checked against the
 * nodes themselves; a reshard of 1,000 slots while heartbeats keep coming;
 * a master killed. The tests share the cluster and run in order; the last
 * one kills a node. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "layout.h"
#include "script.h"
#include "wire.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PASS "cluster-secret"
#define PREFIX "hr:"

static struct h_cluster C;
static struct h_daemon D;
static struct h_gateway G;
static char url_one[128], url_seeds[192], dlog[192];
static redisContext *N[3]; /* a connection to each node, for the checks */
static bool node_alive[3] = {true, true, true};
static struct hr_layout L;

static void read_layout(void);

static const char *bin_dir(void)
{
    const char *d = getenv("HOSTREG_BIN_DIR");
    return d && *d ? d : "build/bin";
}

static int group_setup(void **state)
{
    (void)state;
    /* Nodes call a silent peer failing after 3 s: quick enough for the
     * killed master's test, slow enough for a loaded machine. */
    const char *extra[] = {"--cluster-node-timeout", "3000", NULL};
    if (h_cluster_start(&C, 3, PASS, extra) != 0)
        return -1;
    for (int i = 0; i < 3; i++)
        N[i] = h_cluster_connect(&C, i);
    snprintf(url_one, sizeof(url_one), "redis://:%s@127.0.0.1:%d", PASS, C.node[0].port);
    snprintf(url_seeds, sizeof(url_seeds), "redis://:%s@127.0.0.1:%d,127.0.0.1:%d", PASS,
             C.node[1].port, C.node[2].port);
    snprintf(dlog, sizeof(dlog), "%s/hostregd.log", C.node[0].dir);
    /* One source address speaks for every test host; entries outlive the
     * whole run. */
    const char *dargs[] = {"--redis", url_one, "--source-rate", "0", "--source-hosts",
                           "0",       "--ttl", "300",           NULL};
    if (h_daemon_start_logged(&D, 0, dargs, dlog) != 0) {
        h_show_log(dlog);
        return -1;
    }
    const char *gargs[] = {
        "--redis", url_seeds, "--source-hosts", "0", "--list-cache-ms", "0", "--ttl", "300", NULL};
    if (h_gateway_start(&G, 0, gargs, NULL) != 0)
        return -1;
    read_layout();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int bad = 0;
    if (D.pid > 0 && h_daemon_stop(&D) != 0)
        bad = 1;
    if (G.pid > 0 && h_gateway_stop(&G) != 0)
        bad = 1;
    for (int i = 0; i < 3; i++)
        if (N[i])
            redisFree(N[i]);
    h_cluster_stop(&C);
    return bad ? -1 : 0;
}

/* --- the nodes themselves --- */

/* A command on the node that owns its key: each node is asked in turn until
 * one answers something else than MOVED, and an ASK (a slot being migrated)
 * is followed with ASKING (the check does not go through the code under
 * test). The reply, and the node in *node. */
static redisReply *node_cmd(int *node, const char *fmt, ...)
{
    for (int i = 0; i < 3; i++) {
        if (!node_alive[i])
            continue;
        va_list ap;
        va_start(ap, fmt);
        redisReply *r = redisvCommand(N[i], fmt, ap);
        va_end(ap);
        assert_non_null(r);
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "MOVED ", 6) == 0) {
            freeReplyObject(r);
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "ASK ", 4) == 0) {
            const char *colon = strrchr(r->str, ':');
            int port = colon ? atoi(colon + 1) : 0, to = -1;
            for (int k = 0; k < 3; k++)
                if (C.node[k].port == port)
                    to = k;
            assert_true(to >= 0);
            freeReplyObject(r);
            freeReplyObject(redisCommand(N[to], "ASKING"));
            va_start(ap, fmt);
            r = redisvCommand(N[to], fmt, ap);
            va_end(ap);
            assert_non_null(r);
            i = to;
        }
        if (node)
            *node = i;
        return r;
    }
    fail_msg("no node owns the key of '%s'", fmt);
    return NULL;
}

static void read_layout(void)
{
    redisReply *r = node_cmd(NULL, "GET %slayout", PREFIX);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(hr_layout_parse(r->str, PREFIX, &L), 0);
    freeReplyObject(r);
}

/* Host `id`'s entry as stored (layout.h: hr_layout_entry_parse) into out,
 * read from its bucket's hash on the node that holds it (*node): true when
 * there is one. */
static bool entry_of(const char *id, char *out, size_t cap, int *node)
{
    char stored[HR_LAYOUT_ID_MAX], key[64], tag[16];
    size_t n = hr_layout_id_pack(id, stored);
    snprintf(tag, sizeof(tag), "%u", (unsigned)hr_layout_bucket(&L, stored, n));
    hr_layout_key(key, sizeof(key), PREFIX, tag, "e");
    redisReply *r = node_cmd(node, "HGET %s %b", key, stored, n);
    bool found = r->type == REDIS_REPLY_STRING;
    if (found)
        snprintf(out, cap, "%s", r->str);
    else
        assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    return found;
}

/* The status of an entry, by name. */
static const char *entry_status(const char *entry, char *out, size_t cap)
{
    struct hr_layout_entry e;
    snprintf(out, cap, "%s", hr_layout_entry_parse(entry, strlen(entry), &e) == 0 ? e.status : "");
    return out;
}

/* --- many requests at once, over one UDP socket --- */

/* Sends n requests (seqs filled here, consecutive) without waiting, then
 * collects their acks, sending again every 300 ms what is unanswered or
 * answered retry_later, 20 rounds at most. res[i]: the last ack's result,
 * or -1 when none came. Returns how many got no ack at all. */
static int burst(int port, struct hr_request *reqs, int n, int *res, unsigned long *retries)
{
    int fd = h_udp_socket(port);
    uint64_t seq0 = h_next_seq();
    for (int i = 1; i < n; i++)
        h_next_seq();
    for (int i = 0; i < n; i++) {
        reqs[i].seq = seq0 + (uint64_t)i;
        res[i] = -1;
    }
    int unanswered = n;
    for (int round = 0; round < 20; round++) {
        int pending = 0;
        for (int i = 0; i < n; i++) {
            if (res[i] != -1 && res[i] != HR_RESULT_RETRY_LATER)
                continue;
            if (round > 0 && retries)
                (*retries)++;
            uint8_t out[HR_WIRE_MAX];
            size_t len = hr_wire_encode_request(&reqs[i], out, sizeof(out));
            assert_true(len > 0);
            assert_true(send(fd, out, len, 0) == (ssize_t)len);
            pending++;
        }
        if (!pending)
            break;
        uint64_t deadline = h_now_ms() + 300;
        while (pending > 0) {
            uint64_t now = h_now_ms();
            if (now >= deadline)
                break;
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, (int)(deadline - now)) <= 0)
                break;
            uint8_t in[HR_WIRE_MAX + 1];
            ssize_t got = recv(fd, in, sizeof(in), 0);
            struct hr_frame f;
            if (got <= 0 || hr_wire_decode(in, (size_t)got, &f) != 0 || f.type != HR_MSG_ACK ||
                f.ack.seq < seq0 || f.ack.seq >= seq0 + (uint64_t)n)
                continue;
            int i = (int)(f.ack.seq - seq0);
            if (res[i] == -1 || res[i] == HR_RESULT_RETRY_LATER) {
                res[i] = (int)f.ack.result;
                if (res[i] != HR_RESULT_RETRY_LATER)
                    pending--;
            }
        }
    }
    close(fd);
    unanswered = 0;
    for (int i = 0; i < n; i++)
        unanswered += res[i] == -1;
    return unanswered;
}

/* n heartbeats of hosts "<prefix><first + i>", all acked ok. */
static void register_udp(const char *prefix, int first, int n, const char *region)
{
    struct hr_request *reqs = calloc((size_t)n, sizeof(*reqs));
    int *res = calloc((size_t)n, sizeof(*res));
    assert_true(reqs && res);
    for (int i = 0; i < n; i++) {
        char host[32], room[32];
        snprintf(host, sizeof(host), "%s%d", prefix, first + i);
        snprintf(room, sizeof(room), "room-%s%d", prefix, first + i);
        reqs[i] = h_heartbeat(host, room, region, HR_STATUS_IDLE, 1);
    }
    assert_int_equal(burst(D.port, reqs, n, res, NULL), 0);
    for (int i = 0; i < n; i++)
        if (res[i] != HR_RESULT_OK)
            fail_msg("heartbeat of %s: result %d", reqs[i].host_id, res[i]);
    free(reqs);
    free(res);
}

/* --- HTTP --- */

static int http_json(const char *method, const char *path, const char *body, json_t **out)
{
    struct h_http_resp r;
    int code = h_http(G.port, method, path, NULL, body, &r);
    *out = code > 0 && r.body_len ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    h_http_free(&r);
    return code;
}

static void http_heartbeat(const char *host, const char *region)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"hostId\":\"%s\",\"roomId\":\"room-%s\",\"region\":\"%s\"}",
             host, host, region);
    json_t *j;
    assert_int_equal(http_json("POST", "/api/host/heartbeat", body, &j), 200);
    json_decref(j);
}

static void http_status(const char *host, const char *status, int want)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"hostId\":\"%s\",\"status\":\"%s\"}", host, status);
    json_t *j;
    assert_int_equal(http_json("POST", "/api/host/status", body, &j), want);
    json_decref(j);
}

/* The value of one series in the gateway's /metrics, or -1. */
static double metric(const char *series)
{
    struct h_http_resp r;
    assert_int_equal(h_http(G.port, "GET", "/metrics", NULL, NULL, &r), 200);
    double v = -1;
    size_t n = strlen(series);
    for (const char *l = r.body; l && *l;) {
        if (strncmp(l, series, n) == 0 && l[n] == ' ')
            v = strtod(l + n + 1, NULL);
        l = strchr(l, '\n');
        if (l)
            l++;
    }
    h_http_free(&r);
    return v;
}

/* `hostreg ls --json` with `args`: its document (the caller's). */
static json_t *ls_json(const char *url, const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/hostreg ls --json --redis '%s' %s", bin_dir(), url, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_error_t e;
    json_t *j = json_loadf(p, 0, &e);
    int status = pclose(p);
    if (!j || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: status %d, %s", cmd, status, j ? "" : e.text);
    return j;
}

static long long ls_total(json_t *doc, const char *region, const char *status)
{
    json_t *r = json_object_get(json_object_get(doc, "regions"), region);
    return json_integer_value(json_object_get(r, status));
}

/* --- the tests --- */

/* Hosts register over UDP (in bursts: the daemon's batches hold requests of
 * many slots) and over HTTP, update their status both ways; every entry is
 * in its bucket's hash on the node that owns the bucket's slot, with the
 * status sent, and each master holds some of them. */
static void test_cstore_heartbeats_and_status(void **state)
{
    (void)state;
    enum { NU = 300, NH = 60, BUSY_U = 50, BUSY_H = 10 };
    uint64_t t0 = h_now_ms();
    register_udp("u-", 0, NU, "local");
    for (int i = 0; i < NH; i++) {
        char host[32];
        snprintf(host, sizeof(host), "w-%d", i);
        http_heartbeat(host, "local");
    }
    /* Status updates: UDP in a burst, HTTP one by one. */
    struct hr_request reqs[BUSY_U];
    int res[BUSY_U];
    for (int i = 0; i < BUSY_U; i++) {
        char host[32];
        snprintf(host, sizeof(host), "u-%d", i);
        reqs[i] = h_status(host, HR_STATUS_BUSY, 1);
    }
    assert_int_equal(burst(D.port, reqs, BUSY_U, res, NULL), 0);
    for (int i = 0; i < BUSY_U; i++)
        assert_int_equal(res[i], HR_RESULT_OK);
    for (int i = 0; i < BUSY_H; i++) {
        char host[32];
        snprintf(host, sizeof(host), "w-%d", i);
        http_status(host, "busy", 200);
    }
    http_status("nobody-here", "busy", 404);
    struct hr_ack ack;
    struct hr_request unknown = h_status("nobody-either", HR_STATUS_BUSY, 0);
    assert_int_equal(h_send(D.port, &unknown, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_UNKNOWN_HOST);
    uint64_t took = h_now_ms() - t0;

    int per_node[3] = {0};
    for (int i = 0; i < NU + NH; i++) {
        char host[32], entry[256], st[16];
        int node;
        if (i < NU)
            snprintf(host, sizeof(host), "u-%d", i);
        else
            snprintf(host, sizeof(host), "w-%d", i - NU);
        if (!entry_of(host, entry, sizeof(entry), &node))
            fail_msg("%s: no entry on any node", host);
        bool busy = (i < NU && i < BUSY_U) || (i >= NU && i - NU < BUSY_H);
        assert_string_equal(entry_status(entry, st, sizeof(st)), busy ? "busy" : "idle");
        per_node[node]++;
    }
    print_message("# %d hosts over UDP and %d over HTTP, %d status updates, in %llu ms; "
                  "entries per master: %d, %d, %d (layout: %u buckets)\n",
                  NU, NH, BUSY_U + BUSY_H, (unsigned long long)took, per_node[0], per_node[1],
                  per_node[2], (unsigned)L.buckets);
    for (int i = 0; i < 3; i++)
        assert_true(per_node[i] > 0);
}

/* Lists and counts go over every bucket on every master: the gateway's list
 * (with a status filter), its metrics and `hostreg ls` (through one node's
 * URL and through several seeds) all count what the first test registered. */
static void test_cstore_list_and_count(void **state)
{
    (void)state;
    json_t *j;
    assert_int_equal(http_json("GET", "/api/hosts?region=local&limit=1000", NULL, &j), 200);
    assert_int_equal(json_array_size(j), 360);
    json_decref(j);
    assert_int_equal(http_json("GET", "/api/hosts?region=local&status=busy", NULL, &j), 200);
    assert_int_equal(json_array_size(j), 60);
    json_decref(j);
    assert_int_equal(metric("hostreg_hosts{region=\"local\",status=\"idle\"}"), 300);
    assert_int_equal(metric("hostreg_hosts{region=\"local\",status=\"busy\"}"), 60);
    json_t *doc = ls_json(url_one, "--region local");
    assert_int_equal(ls_total(doc, "local", "idle"), 300);
    assert_int_equal(ls_total(doc, "local", "busy"), 60);
    assert_int_equal(json_array_size(json_object_get(doc, "hosts")), 360);
    json_decref(doc);
    doc = ls_json(url_seeds, "--status busy");
    assert_int_equal(ls_total(doc, "local", "busy"), 60);
    assert_int_equal(json_array_size(json_object_get(doc, "hosts")), 60);
    json_decref(doc);
}

/* Finds: a region's idle hosts, in buckets on every master, are each found
 * once (the region's summary on one node, the claims on the buckets'), and
 * "no host" comes only once none is left. */
static void test_cstore_find(void **state)
{
    (void)state;
    enum { NF = 40 };
    register_udp("f-", 0, NF, "eu-central");
    bool seen[NF] = {false};
    int per_node[3] = {0};
    for (int i = 0; i < NF; i++) {
        json_t *j;
        int code = http_json("POST", "/api/match/find", "{\"region\":\"eu-central\"}", &j);
        if (code != 200)
            fail_msg("find %d of %d: %d", i + 1, NF, code);
        const char *room = json_string_value(json_object_get(j, "roomId"));
        int k;
        assert_non_null(room);
        assert_int_equal(sscanf(room, "room-f-%d", &k), 1);
        assert_true(k >= 0 && k < NF);
        assert_false(seen[k]);
        seen[k] = true;
        json_decref(j);
        char host[32], entry[256], st[16];
        int node;
        snprintf(host, sizeof(host), "f-%d", k);
        assert_true(entry_of(host, entry, sizeof(entry), &node));
        assert_string_equal(entry_status(entry, st, sizeof(st)), "busy");
        per_node[node]++;
    }
    json_t *j;
    assert_int_equal(http_json("POST", "/api/match/find", "{\"region\":\"eu-central\"}", &j), 404);
    json_decref(j);
    print_message("# %d finds, each host once, claimed on the masters: %d, %d, %d; then 404\n", NF,
                  per_node[0], per_node[1], per_node[2]);
    for (int i = 0; i < 3; i++)
        assert_true(per_node[i] > 0);
}

static void node_id(int i, char *out, size_t cap);

/* The daemon's counter `name`, from a stats line asked for now. */
static long long daemon_counter(const char *name)
{
    static int asked;
    char *text = h_daemon_stats(&D, dlog, ++asked);
    assert_non_null(text);
    long long v = h_stats_counter(text, name);
    free(text);
    return v;
}

/* --- one bucket's slot moved by hand --- */

static void node_ok(int i, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(N[i], fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("node %d: %s", i, r->str);
    freeReplyObject(r);
}

static struct {
    int src, dst, other, slot;
    char dst_id[64];
    unsigned delay_us;
} MG;

/* Moves every key of MG.slot from MG.src to MG.dst, as redis-cli does
 * during a slot's migration (after MG.delay_us; a thread of its own, with a
 * connection of its own). */
static void *migrate_keys(void *arg)
{
    (void)arg;
    usleep(MG.delay_us);
    redisContext *src = h_cluster_connect(&C, MG.src);
    redisReply *keys = redisCommand(src, "CLUSTER GETKEYSINSLOT %d 1000", MG.slot);
    if (keys && keys->type == REDIS_REPLY_ARRAY && keys->elements) {
        const char *argv[1100];
        size_t lens[1100];
        int n = 0;
        char port[16];
        snprintf(port, sizeof(port), "%d", C.node[MG.dst].port);
        const char *head[] = {"MIGRATE", "127.0.0.1", port, "", "0", "5000", "AUTH", PASS, "KEYS"};
        for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++, n++)
            argv[n] = head[i], lens[n] = strlen(head[i]);
        for (size_t i = 0; i < keys->elements && n < 1100; i++, n++)
            argv[n] = keys->element[i]->str, lens[n] = keys->element[i]->len;
        redisReply *m = redisCommandArgv(src, n, argv, lens);
        if (!m || m->type == REDIS_REPLY_ERROR)
            fprintf(stderr, "MIGRATE: %s\n", m ? m->str : src->errstr);
        freeReplyObject(m);
    }
    freeReplyObject(keys);
    redisFree(src);
    return NULL;
}

/* Sends heartbeats of `id` (room `room`) until one is answered otherwise
 * than retry_later (5 s at most): that result, and how many retry_later
 * came first in *later. */
static int heartbeat_until(const char *id, const char *room, int *later)
{
    struct hr_ack ack;
    *later = 0;
    for (uint64_t t0 = h_now_ms(); h_now_ms() - t0 < 5000; (*later)++) {
        struct hr_request hb = h_heartbeat(id, room, "local", HR_STATUS_IDLE, 0);
        assert_int_equal(h_send(D.port, &hb, &ack), 0);
        if (ack.result != HR_RESULT_RETRY_LATER)
            return (int)ack.result;
    }
    return HR_RESULT_RETRY_LATER;
}

/* One bucket's slot moved by hand, the way redis-cli does it, with the
 * daemon's calls at each step. While the slot is migrating and its keys are
 * all still on the source, Redis runs a script there, but the script sees
 * that its slot is moving and answers TRYAGAIN before it writes anything
 * (entry.lua: slot_moving): the call is sent again after a pause, a few
 * times, then the host is answered retry_later with its entry untouched.
 * When the keys move while a call waits, the call is sent again, meets ASK
 * and is applied on the target; once the slot is the target's, MOVED. */
static void test_cstore_slot_migrating_by_hand(void **state)
{
    (void)state;
    /* Three hosts of one bucket: one idle, one that leaves (a tombstone),
     * one claimed (a claim): each of the bucket's keys then exists, so Redis
     * itself runs the script on the source. */
    char ids[3][32];
    uint32_t bucket = 0;
    {
        static uint32_t seen[4096];
        static int hits[4096];
        int found = -1;
        for (int i = 0; i < 4096 && found < 0; i++) {
            char id[32], stored[HR_LAYOUT_ID_MAX];
            snprintf(id, sizeof(id), "mig-%d", i);
            seen[i] = hr_layout_bucket(&L, stored, hr_layout_id_pack(id, stored));
            hits[i] = 0;
            for (int j = 0; j < i; j++)
                if (seen[j] == seen[i] && ++hits[j] == 2)
                    found = j;
        }
        assert_true(found >= 0);
        bucket = seen[found];
        int k = 0;
        for (int i = found; k < 3; i++)
            if (seen[i] == bucket)
                snprintf(ids[k++], sizeof(ids[0]), "mig-%d", i);
    }
    struct hr_ack ack;
    for (int i = 0; i < 3; i++) {
        struct hr_request hb = h_heartbeat(ids[i], "room-mig", "local", HR_STATUS_IDLE, 0);
        assert_int_equal(h_send(D.port, &hb, &ack), 0);
        assert_int_equal(ack.result, HR_RESULT_OK);
    }
    struct hr_request lv = h_leave(ids[1], 0);
    assert_int_equal(h_send(D.port, &lv, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_OK);
    char body[128];
    snprintf(body, sizeof(body), "{\"hostId\":\"%s\"}", ids[2]);
    json_t *j;
    assert_int_equal(http_json("POST", "/api/match/find", body, &j), 200);
    json_decref(j);

    char tag[16], key[64], entry[256], before[256];
    snprintf(tag, sizeof(tag), "%u", (unsigned)bucket);
#define SUFFIX_(name, text) text,
    const char *suffixes[] = {HR_SCRIPT_BUCKET_KEYS(SUFFIX_)};
#undef SUFFIX_
    for (int i = 0; i < HR_SCRIPT_BKEYS; i++) {
        hr_layout_key(key, sizeof(key), PREFIX, tag, suffixes[i]);
        redisReply *r = node_cmd(&MG.src, "EXISTS %s", key);
        assert_int_equal(r->integer, 1);
        freeReplyObject(r);
    }
    {
        redisReply *r = redisCommand(N[MG.src], "CLUSTER KEYSLOT %s", key);
        MG.slot = (int)r->integer;
        freeReplyObject(r);
    }
    MG.dst = (MG.src + 1) % 3;
    MG.other = (MG.src + 2) % 3;
    char src_id[64];
    node_id(MG.src, src_id, sizeof(src_id));
    node_id(MG.dst, MG.dst_id, sizeof(MG.dst_id));
    assert_true(entry_of(ids[0], before, sizeof(before), NULL));

    /* Migrating, no key moved yet: retry_later, and nothing written. */
    long long tryagain0 = daemon_counter("redis_tryagain");
    node_ok(MG.dst, "CLUSTER SETSLOT %d IMPORTING %s", MG.slot, src_id);
    node_ok(MG.src, "CLUSTER SETSLOT %d MIGRATING %s", MG.slot, MG.dst_id);
    struct hr_request hb = h_heartbeat(ids[0], "room-mig-2", "local", HR_STATUS_IDLE, 0);
    uint64_t t0 = h_now_ms();
    assert_int_equal(h_send(D.port, &hb, &ack), 0);
    uint64_t took = h_now_ms() - t0;
    assert_int_equal(ack.result, HR_RESULT_RETRY_LATER);
    assert_true(entry_of(ids[0], entry, sizeof(entry), NULL));
    assert_string_equal(entry, before);
    long long tryagain1 = daemon_counter("redis_tryagain");
    assert_true(tryagain1 - tryagain0 >= 2);

    /* The keys move while the next call waits: TRYAGAIN, then ASK, and it is
     * applied on the target. */
    long long ask1 = daemon_counter("redis_ask");
    MG.delay_us = 30000;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, migrate_keys, NULL), 0);
    int later_ask;
    int res = heartbeat_until(ids[0], "room-mig-3", &later_ask);
    pthread_join(th, NULL);
    assert_int_equal(res, HR_RESULT_OK);
    int node;
    assert_true(entry_of(ids[0], entry, sizeof(entry), &node));
    assert_int_equal(node, MG.dst); /* read there (node_cmd: no MOVED yet either way) */
    assert_non_null(strstr(entry, "room-mig-3"));
    long long ask2 = daemon_counter("redis_ask"), tryagain2 = daemon_counter("redis_tryagain");
    assert_true(ask2 > ask1);

    /* The slot is the target's: MOVED. */
    long long moved2 = daemon_counter("redis_moved");
    int order[3] = {MG.dst, MG.src, MG.other};
    for (int k = 0; k < 3; k++)
        node_ok(order[k], "CLUSTER SETSLOT %d NODE %s", MG.slot, MG.dst_id);
    int later_moved;
    assert_int_equal(heartbeat_until(ids[0], "room-mig-4", &later_moved), HR_RESULT_OK);
    assert_true(entry_of(ids[0], entry, sizeof(entry), &node));
    assert_int_equal(node, MG.dst);
    assert_non_null(strstr(entry, "room-mig-4"));
    long long moved3 = daemon_counter("redis_moved");
    assert_true(moved3 > moved2);
    print_message("# slot %d (bucket %u) migrating, keys on the source: retry_later after %llu "
                  "ms and %lld TRYAGAIN, entry untouched; keys moved during the next call: ok "
                  "on the target (%d retry_later first, %lld TRYAGAIN, %lld ASK); slot given: "
                  "ok by MOVED (%lld)\n",
                  MG.slot, (unsigned)bucket, (unsigned long long)took, tryagain1 - tryagain0,
                  later_ask, tryagain2 - tryagain1, ask2 - ask1, moved3 - moved2);
}

/* --- a reshard under load --- */

#define LOAD_BATCH 64
#define LOAD_MAX 100000
/* A pause between rounds: a steady load of a few thousand heartbeats a
 * second that lasts through the whole reshard. */
#define LOAD_PAUSE_US 10000

static struct {
    atomic_bool stop;
    int nhosts;           /* hosts sent so far: "load-<i>" */
    uint64_t last_ms;     /* when the last round ended */
    unsigned char *acked; /* acked ok (or duplicate: applied before) */
    unsigned long retry_later, retries, unanswered, other;
} LD;

/* Rounds of LOAD_BATCH new hosts' heartbeats, each round waiting for its
 * acks, until told to stop. */
static void *load_thread(void *arg)
{
    (void)arg;
    struct hr_request reqs[LOAD_BATCH];
    int res[LOAD_BATCH];
    while (!atomic_load(&LD.stop) && LD.nhosts + LOAD_BATCH <= LOAD_MAX) {
        int first = LD.nhosts;
        for (int i = 0; i < LOAD_BATCH; i++) {
            char host[32];
            snprintf(host, sizeof(host), "load-%d", first + i);
            reqs[i] = h_heartbeat(host, "room-load", "us-west-1", HR_STATUS_IDLE, 1);
        }
        LD.unanswered += (unsigned long)burst(D.port, reqs, LOAD_BATCH, res, &LD.retries);
        for (int i = 0; i < LOAD_BATCH; i++) {
            if (res[i] == HR_RESULT_OK || res[i] == HR_RESULT_DUPLICATE)
                LD.acked[first + i] = 1;
            else if (res[i] == HR_RESULT_RETRY_LATER)
                LD.retry_later++;
            else if (res[i] != -1)
                LD.other++;
        }
        LD.nhosts += LOAD_BATCH;
        LD.last_ms = h_now_ms();
        usleep(LOAD_PAUSE_US);
    }
    return NULL;
}

static void node_id(int i, char *out, size_t cap)
{
    redisReply *r = redisCommand(N[i], "CLUSTER MYID");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    snprintf(out, cap, "%s", r->str);
    freeReplyObject(r);
}

/* Slots a node owns, by CLUSTER NODES's line for it ("myself"). */
static int slots_of(int i)
{
    redisReply *r = redisCommand(N[i], "CLUSTER NODES");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    int slots = 0;
    for (char *line = strtok(r->str, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, "myself"))
            continue;
        char *p = line;
        for (int f = 0; f < 8 && p; f++) /* the slot ranges start at field 9 */
            p = strchr(p + 1, ' ');
        while (p && *p) {
            int a, b;
            p++;
            if (sscanf(p, "%d-%d", &a, &b) == 2)
                slots += b - a + 1;
            else if (sscanf(p, "%d", &a) == 1)
                slots++;
            p = strchr(p, ' ');
        }
    }
    freeReplyObject(r);
    return slots;
}

/* 1,000 slots move from node 0 to node 1 (redis-cli --cluster reshard, a
 * child) while a thread keeps registering hosts over UDP, waiting for each
 * round's acks: every request is answered, every host acked ok has its entry
 * on the node that owns its bucket afterwards (read there, with one
 * pipelined HGET per host and node), and the daemon met MOVED or ASK on the
 * way. The gateway's count agrees. */
static void test_cstore_reshard_under_load(void **state)
{
    (void)state;
    memset(&LD, 0, sizeof(LD));
    LD.acked = calloc(LOAD_MAX, 1);
    assert_non_null(LD.acked);
    char from[64], to[64], seed[32], log[192];
    node_id(0, from, sizeof(from));
    node_id(1, to, sizeof(to));
    int from_before = slots_of(0), to_before = slots_of(1);
    snprintf(seed, sizeof(seed), "127.0.0.1:%d", C.node[0].port);
    snprintf(log, sizeof(log), "%s/reshard.log", C.node[0].dir);

    long long moved0 = daemon_counter("redis_moved"), ask0 = daemon_counter("redis_ask"),
              tryagain0 = daemon_counter("redis_tryagain");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, load_thread, NULL), 0);
    usleep(200000); /* the load runs before the reshard starts */
    uint64_t t0 = h_now_ms();
    const char *args[] = {"--cluster", "reshard",       seed, "--cluster-from",
                          from,        "--cluster-to",  to,   "--cluster-slots",
                          "1000",      "--cluster-yes", NULL};
    pid_t child = h_cluster_cli_spawn(&C, args, log);
    assert_true(child > 0);
    int status = h_child_wait(child, true);
    uint64_t reshard_end = h_now_ms(), reshard_ms = reshard_end - t0;
    usleep(300000); /* and a little after it */
    atomic_store(&LD.stop, true);
    pthread_join(th, NULL);
    if (status != 0) {
        h_show_log(log);
        fail_msg("redis-cli --cluster reshard: status %d", status);
    }
    assert_true(LD.last_ms > reshard_end); /* the load ran all along */
    assert_int_equal(slots_of(0), from_before - 1000);
    assert_int_equal(slots_of(1), to_before + 1000);

    /* Every acked host on the node that owns its bucket: one pipeline of
     * HGETs per node, each host found on exactly one. */
    int nacked = 0, found = 0;
    unsigned char *where = calloc((size_t)LD.nhosts, 1);
    assert_non_null(where);
    for (int n = 0; n < 3; n++) {
        for (int i = 0; i < LD.nhosts; i++) {
            char host[32], stored[HR_LAYOUT_ID_MAX], key[64], tag[16];
            snprintf(host, sizeof(host), "load-%d", i);
            size_t len = hr_layout_id_pack(host, stored);
            snprintf(tag, sizeof(tag), "%u", (unsigned)hr_layout_bucket(&L, stored, len));
            hr_layout_key(key, sizeof(key), PREFIX, tag, "e");
            redisAppendCommand(N[n], "HGET %s %b", key, stored, len);
        }
        for (int i = 0; i < LD.nhosts; i++) {
            redisReply *r;
            assert_int_equal(redisGetReply(N[n], (void **)&r), REDIS_OK);
            if (r->type == REDIS_REPLY_STRING) {
                assert_int_equal(where[i], 0); /* on one node only */
                where[i] = (unsigned char)(n + 1);
            }
            freeReplyObject(r);
        }
    }
    for (int i = 0; i < LD.nhosts; i++) {
        nacked += LD.acked[i];
        found += where[i] != 0;
        if (LD.acked[i] && !where[i])
            fail_msg("load-%d was acked ok and is on no node", i);
    }
    /* The daemon's counters: SIGUSR1 logs them. */
    long long moved = daemon_counter("redis_moved") - moved0,
              ask = daemon_counter("redis_ask") - ask0,
              tryagain = daemon_counter("redis_tryagain") - tryagain0;
    double counted = metric("hostreg_hosts{region=\"us-west-1\",status=\"idle\"}");
    print_message("# reshard of 1000 slots under load: %llu ms; %d hosts sent, %d acked ok, %d "
                  "in Redis, 0 acked and lost; %lu answered retry_later and sent again (%lu "
                  "retransmissions), %lu never answered; daemon: MOVED %lld, ASK %lld, TRYAGAIN "
                  "%lld; gateway counts %.0f\n",
                  (unsigned long long)reshard_ms, LD.nhosts, nacked, found, LD.retry_later,
                  LD.retries, LD.unanswered, moved, ask, tryagain, counted);
    assert_int_equal(LD.unanswered, 0);
    assert_int_equal(LD.other, 0);
    assert_int_equal(nacked, LD.nhosts); /* retried until ok */
    assert_true(moved + ask > 0);
    assert_int_equal(counted, found);
    free(where);
    free(LD.acked);
}

/* --- a killed master --- */

/* Node 2 killed: the gateway's /readyz answers 503 naming the slots left
 * without a connected master and the master, and the daemon answers
 * retry_later. */
static void test_cstore_master_killed(void **state)
{
    (void)state;
    json_t *j;
    assert_int_equal(http_json("GET", "/readyz", NULL, &j), 200);
    json_decref(j);
    uint64_t t0 = h_now_ms();
    h_redis_stop(&C.node[2], true, false);
    node_alive[2] = false;
    char name[32], body[600] = "";
    snprintf(name, sizeof(name), "127.0.0.1:%d", C.node[2].port);
    int code = 0;
    while (h_now_ms() - t0 < 10000) {
        struct h_http_resp r;
        code = h_http(G.port, "GET", "/readyz", NULL, NULL, &r);
        snprintf(body, sizeof(body), "%s", r.body ? r.body : "");
        h_http_free(&r);
        if (code == 503)
            break;
        usleep(20000);
    }
    print_message("# killed master: /readyz %d after %llu ms: %s\n", code,
                  (unsigned long long)(h_now_ms() - t0), body);
    assert_int_equal(code, 503);
    /* "slots A-B: master ... not connected", or "slot A: ..." when the first
     * slot without a master stands alone (one moved by hand above). */
    assert_true(strstr(body, "slots ") || strstr(body, "slot "));
    assert_non_null(strstr(body, name));
    assert_non_null(strstr(body, "not connected"));
    struct hr_request hb = h_heartbeat("after-kill", "room-k", "local", HR_STATUS_IDLE, 0);
    struct hr_ack ack;
    assert_int_equal(h_send(D.port, &hb, &ack), 0);
    assert_int_equal(ack.result, HR_RESULT_RETRY_LATER);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cstore_heartbeats_and_status),
        cmocka_unit_test(test_cstore_list_and_count),
        cmocka_unit_test(test_cstore_find),
        cmocka_unit_test(test_cstore_slot_migrating_by_hand),
        cmocka_unit_test(test_cstore_reshard_under_load),
        /* Last: it kills a node. */
        cmocka_unit_test(test_cstore_master_killed),
    };
    return cmocka_run_group_tests_name("cluster_store", tests, group_setup, group_teardown);
}
