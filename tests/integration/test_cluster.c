/* The Redis Cluster router (lib/store/cluster.h) against a real cluster
 * started here: three masters (redis-server --cluster-enabled, joined by
 * redis-cli --cluster create) with a password, driven by a libevent loop in
 * this process. Hash slots as Redis computes them, routing to the owner of
 * each key, a reshard under load, a paused and then a killed master. The
 * tests share the cluster and run in order; the last one kills a node. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cluster.h"
#include "err.h"
#include "harness.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PASS "cluster-secret"
#define TIMEOUT_MS 1000 /* the router's command timeout */

static struct h_cluster C;

static int group_setup(void **state)
{
    (void)state;
    /* Nodes call a silent peer failing after 3 s: longer than the pause of
     * the timeout test, short enough for a test. */
    const char *extra[] = {"--cluster-node-timeout", "3000", NULL};
    return h_cluster_start(&C, 3, PASS, extra);
}

static int group_teardown(void **state)
{
    (void)state;
    h_cluster_stop(&C);
    return 0;
}

/* --- the loop --- */

static bool is_ready(void *arg)
{
    return hr_cluster_ready(arg);
}

static bool is_not_ready(void *arg)
{
    return !hr_cluster_ready(arg);
}

/* Runs the loop until done(arg) or `ms` have passed: whether done(arg).
 * Each turn ends on an event, and the router's tick (every TIMEOUT_MS / 4)
 * is one, so the deadline is kept. */
static bool run_until(struct event_base *base, bool (*done)(void *), void *arg, int ms)
{
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    while (!done(arg)) {
        if (h_now_ms() >= deadline)
            return false;
        event_base_loop(base, EVLOOP_ONCE);
    }
    return true;
}

/* Runs the loop for `ms`. */
static void run_for(struct event_base *base, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* A router with node 0 as its only seed (it learns the others from it),
 * ready, with a command timeout of `timeout_ms`. */
static struct hr_cluster *router_new_timeout(struct event_base *base, uint32_t timeout_ms)
{
    struct hr_cluster_config cfg = {.nseeds = 1, .timeout_ms = timeout_ms};
    snprintf(cfg.seed[0].host, sizeof(cfg.seed[0].host), "127.0.0.1");
    cfg.seed[0].port = C.node[0].port;
    snprintf(cfg.pass, sizeof(cfg.pass), "%s", PASS);
    char err[256];
    struct hr_cluster *cl = hr_cluster_new(base, &cfg, err, sizeof(err));
    if (!cl)
        print_message("hr_cluster_new: %s\n", err);
    assert_non_null(cl);
    if (!run_until(base, is_ready, cl, 10000))
        print_message("not ready: %s\n", hr_cluster_not_ready_reason(cl));
    assert_true(hr_cluster_ready(cl));
    assert_string_equal(hr_cluster_not_ready_reason(cl), "");
    assert_int_equal(hr_cluster_nmasters(cl), 3);
    return cl;
}

static struct hr_cluster *router_new(struct event_base *base)
{
    return router_new_timeout(base, TIMEOUT_MS);
}

/* The router's index of cluster node i (a master). */
static size_t master_index_of(const struct hr_cluster *cl, int i)
{
    char name[32];
    snprintf(name, sizeof(name), "127.0.0.1:%d", C.node[i].port);
    for (size_t m = 0; m < hr_cluster_nmasters(cl); m++)
        if (strcmp(hr_cluster_master_name(cl, m), name) == 0)
            return m;
    fail_msg("node %d (%s) is not a master of the router's map", i, name);
    return 0;
}

/* One call's outcome. */
struct result {
    int calls; /* exactly 1 once answered */
    bool ok;   /* a reply that is not an error */
    int type;  /* the reply's */
    long long integer;
    char value[32]; /* a string or status reply; an array's elements joined by ',' */
    char error[128];
};

static size_t answered;

static void on_result(void *arg, redisReply *reply, const char *error)
{
    struct result *r = arg;
    r->calls++;
    answered++;
    r->ok = reply != NULL;
    r->type = reply ? reply->type : 0;
    if (reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS))
        snprintf(r->value, sizeof(r->value), "%s", reply->str);
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        r->integer = reply->integer;
    for (size_t i = 0; reply && reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        size_t len = strlen(r->value);
        const redisReply *e = reply->element[i];
        snprintf(r->value + len, sizeof(r->value) - len, "%s%s", i ? "," : "",
                 e->type == REDIS_REPLY_STRING ? e->str : "nil");
    }
    snprintf(r->error, sizeof(r->error), "%s", error ? error : "");
}

struct count {
    size_t n;
};

static bool all_answered(void *arg)
{
    return answered >= ((struct count *)arg)->n;
}

static int slot_of(const char *key)
{
    return hr_cluster_keyslot(key, strlen(key));
}

/* Sends `argv` for `key` (its slot) with on_result. */
static int send_key(struct hr_cluster *cl, const char *key, int argc, const char **argv,
                    struct result *r)
{
    return hr_cluster_send(cl, slot_of(key), argc, argv, NULL, on_result, r);
}

/* --- slots --- */

/* Values CLUSTER KEYSLOT gives (Redis 7.0), and the hash tag rules. */
static void test_cluster_keyslot_known(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        int slot;
    } known[] = {
        {"foo", 12182},
        {"hello", 866},
        {"123456789", 12739}, /* CRC16 XMODEM of it: 0x31c3 */
        {"", 0},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        assert_int_equal(hr_cluster_keyslot(known[i].key, strlen(known[i].key)), known[i].slot);
#define SLOT(s) hr_cluster_keyslot(s, strlen(s))
    assert_int_equal(SLOT("{user1000}.following"), SLOT("{user1000}.followers"));
    assert_int_equal(SLOT("{user1000}.following"), SLOT("user1000"));
    assert_int_equal(SLOT("foo{bar}{zap}"), SLOT("bar"));  /* the first tag */
    assert_int_equal(SLOT("foo{{bar}}zap"), SLOT("{bar")); /* up to the first '}' */
    assert_int_equal(SLOT("{foo}"), SLOT("foo"));
    assert_int_not_equal(SLOT("{}foo"), SLOT("")); /* an empty tag: the whole key */
    assert_int_not_equal(SLOT("foo{"), SLOT(""));  /* no closing brace: the whole key */
#undef SLOT
    /* Binary keys: the length counts, not a NUL. */
    assert_int_not_equal(hr_cluster_keyslot("a\0b", 3), hr_cluster_keyslot("a", 1));
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

/* Random keys (binary bytes, braces among them, hash tags and empty tags)
 * hash to the slot CLUSTER KEYSLOT gives for each. */
static void test_cluster_keyslot_matches_redis(void **state)
{
    (void)state;
    enum { N = 3000 };
    static char keys[N][48];
    static size_t lens[N];
    uint64_t x = 0x2545f4914f6cdd1dULL;
    redisContext *c = h_cluster_connect(&C, 0);
    for (int i = 0; i < N; i++) {
        size_t len = xorshift(&x) % sizeof(keys[i]);
        for (size_t j = 0; j < len; j++) {
            uint64_t v = xorshift(&x);
            /* One byte in four a brace, so tags of every shape occur. */
            keys[i][j] = v % 4 == 0 ? "{}"[(v >> 8) % 2] : (char)(v >> 16);
        }
        lens[i] = len;
        redisAppendCommand(c, "CLUSTER KEYSLOT %b", keys[i], len);
    }
    int tagged = 0;
    for (int i = 0; i < N; i++) {
        redisReply *r;
        assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        assert_int_equal(hr_cluster_keyslot(keys[i], lens[i]), r->integer);
        freeReplyObject(r);
        const char *open = memchr(keys[i], '{', lens[i]);
        tagged += open && memchr(open, '}', lens[i] - (size_t)(open - keys[i])) != NULL;
    }
    print_message("# %d random keys (%d with braces around something) match CLUSTER KEYSLOT\n", N,
                  tagged);
    redisFree(c);
}

/* --- routing --- */

/* 3,000 SETs of distinct keys through the router all succeed, and each key
 * is then on the master that owns its slot, and only there: asked directly
 * (a plain connection, no READONLY), that node has it and every other node
 * answers MOVED. Every master gets keys. */
static void test_cluster_routes_by_slot(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct event_base *base = event_base_new();
    struct hr_cluster *cl = router_new(base);
    static struct result res[N];
    memset(res, 0, sizeof(res));
    answered = 0;
    uint64_t t0 = h_now_ms();
    for (int i = 0; i < N; i++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "route:%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        const char *argv[] = {"SET", key, val}; /* copied by the router */
        assert_int_equal(send_key(cl, key, 3, argv, &res[i]), HR_OK);
    }
    struct count want = {N};
    assert_true(run_until(base, all_answered, &want, 20000));
    uint64_t ms = h_now_ms() - t0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(res[i].calls, 1);
        if (!res[i].ok)
            fail_msg("SET route:%d failed: %s", i, res[i].error);
        assert_string_equal(res[i].value, "OK");
    }
    for (size_t m = 0; m < hr_cluster_nmasters(cl); m++)
        assert_int_equal(hr_cluster_inflight(cl, m), 0);

    redisContext *node[3];
    int per_node[3] = {0};
    for (int j = 0; j < 3; j++)
        node[j] = h_cluster_connect(&C, j);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < 3; j++)
            redisAppendCommand(node[j], "EXISTS route:%d", i);
    for (int i = 0; i < N; i++) {
        int holder = -1;
        for (int j = 0; j < 3; j++) {
            redisReply *r;
            assert_int_equal(redisGetReply(node[j], (void **)&r), REDIS_OK);
            if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
                assert_int_equal(holder, -1);
                holder = j;
            } else {
                assert_int_equal(r->type, REDIS_REPLY_ERROR);
                assert_memory_equal(r->str, "MOVED ", 6);
            }
            freeReplyObject(r);
        }
        assert_int_not_equal(holder, -1);
        char key[32];
        snprintf(key, sizeof(key), "route:%d", i);
        assert_true(hr_cluster_owns(cl, master_index_of(cl, holder), slot_of(key)));
        per_node[holder]++;
    }
    /* The same counts by a fan-out: DBSIZE on each master. */
    struct result dbsize[3];
    memset(dbsize, 0, sizeof(dbsize));
    answered = 0;
    const char *dbsize_argv[] = {"DBSIZE"};
    for (size_t m = 0; m < 3; m++)
        assert_int_equal(hr_cluster_send_node(cl, m, 1, dbsize_argv, NULL, on_result, &dbsize[m]),
                         HR_OK);
    want.n = 3;
    assert_true(run_until(base, all_answered, &want, 5000));
    for (int j = 0; j < 3; j++)
        assert_int_equal(dbsize[master_index_of(cl, j)].integer, per_node[j]);
    /* A command sent to a node that does not own its key follows the MOVED. */
    size_t owner, other;
    assert_true(hr_cluster_master_of(cl, slot_of("route:7"), &owner));
    other = (owner + 1) % 3;
    uint64_t moved = hr_cluster_get_stats(cl)->moved;
    struct result r7 = {0};
    answered = 0;
    const char *get7[] = {"GET", "route:7"};
    assert_int_equal(hr_cluster_send_node(cl, other, 2, get7, NULL, on_result, &r7), HR_OK);
    want.n = 1;
    assert_true(run_until(base, all_answered, &want, 5000));
    assert_string_equal(r7.value, "v7");
    assert_int_equal(hr_cluster_get_stats(cl)->moved, moved + 1);
    print_message("# %d SETs in %llu ms; keys per master: %d, %d, %d\n", N, (unsigned long long)ms,
                  per_node[0], per_node[1], per_node[2]);
    for (int j = 0; j < 3; j++) {
        assert_true(per_node[j] > 0);
        redisFree(node[j]);
    }
    hr_cluster_free(cl);
    event_base_free(base);
}

/* --- a reshard under load --- */

/* The load: SETs of new keys and GETs of keys acked already, WINDOW in
 * flight at all times, every key in a slot of the master the slots move
 * from (so that a good part of the load runs into the moving slots). */
#define WINDOW 32
#define LOAD_KEYS (1 << 21)

static struct load {
    struct hr_cluster *cl;
    bool from_slot[HR_CLUSTER_SLOTS]; /* owned by the source master at the start */
    int next_key;
    uint8_t *acked;  /* per key: its SET was acked */
    int *acked_list; /* the keys acked, in order */
    int nacked;
    size_t inflight;
    unsigned long sets, gets, failures, refused;
    char first_failure[256];
    bool stopping;
    uint64_t x;
    pid_t child;
    int child_status; /* -1 while it runs */
} L;

static void load_next(void);

static void on_load(void *arg, redisReply *reply, const char *error)
{
    intptr_t v = (intptr_t)arg;
    int key = (int)(v >> 1);
    bool get = v & 1;
    L.inflight--;
    char want[32];
    snprintf(want, sizeof(want), "v%d", key);
    bool ok = get ? reply && reply->type == REDIS_REPLY_STRING && strcmp(reply->str, want) == 0
                  : reply && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "OK") == 0;
    if (!ok) {
        if (!L.failures++)
            snprintf(L.first_failure, sizeof(L.first_failure), "%s load:%d: %s",
                     get ? "GET" : "SET", key,
                     error   ? error
                     : reply ? "unexpected reply"
                             : "no reply");
    } else if (!get) {
        L.acked[key] = 1;
        L.acked_list[L.nacked++] = key;
    }
    load_next();
}

/* Keeps WINDOW commands in flight until told to stop. */
static void load_next(void)
{
    while (!L.stopping && L.inflight < WINDOW) {
        char key[32], val[32];
        /* Half GETs; only GETs once the keys run out. */
        bool get = L.nacked > 0 && (xorshift(&L.x) % 2 || L.next_key >= LOAD_KEYS - 64);
        int k;
        if (get) {
            k = L.acked_list[xorshift(&L.x) % (uint64_t)L.nacked];
        } else {
            do { /* the next key in a slot of the source */
                k = L.next_key++;
                snprintf(key, sizeof(key), "load:%d", k);
            } while (!L.from_slot[slot_of(key)]); /* a third of them are */
        }
        snprintf(key, sizeof(key), "load:%d", k);
        snprintf(val, sizeof(val), "v%d", k);
        const char *set[] = {"SET", key, val}, *getv[] = {"GET", key};
        int rc = hr_cluster_send(L.cl, slot_of(key), get ? 2 : 3, get ? getv : set, NULL, on_load,
                                 (void *)(((intptr_t)k << 1) | get));
        if (rc != HR_OK) {
            /* Refused at once: no connection to the slot's master. Counted
             * as a failure; the loop goes on so the test ends. */
            L.refused++;
            if (!L.failures++)
                snprintf(L.first_failure, sizeof(L.first_failure), "%s load:%d refused: %s",
                         get ? "GET" : "SET", k, hr_strerror(rc));
            return;
        }
        L.inflight++;
        get ? L.gets++ : L.sets++;
    }
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (L.child_status < 0)
        L.child_status = h_child_wait(L.child, false);
}

static bool load_done(void *arg)
{
    (void)arg;
    return L.child_status >= 0;
}

static bool load_drained(void *arg)
{
    (void)arg;
    return L.inflight == 0;
}

/* The CLUSTER MYID of node i, into out. */
static void node_id(int i, char *out, size_t outlen)
{
    redisContext *c = h_cluster_connect(&C, i);
    redisReply *r = redisCommand(c, "CLUSTER MYID");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    snprintf(out, outlen, "%s", r->str);
    freeReplyObject(r);
    redisFree(c);
}

/* 1,000 slots move from node 0 to node 1 (redis-cli --cluster reshard, a
 * child process) while SETs and GETs keep going through the router: no
 * command fails, every SET acked is read back with its value afterwards,
 * the router met MOVED and/or ASK on the way, and its map ends with the
 * slots on node 1. */
static void test_cluster_reshard_under_load(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    /* The programs' default: a source node busy migrating keys on a loaded
     * machine can answer nothing for over a second, and is not dead. */
    struct hr_cluster *cl = router_new_timeout(base, 5000);
    memset(&L, 0, sizeof(L));
    L.cl = cl;
    L.x = 0x9e3779b97f4a7c15ULL;
    L.child_status = -1;
    L.acked = calloc(LOAD_KEYS, 1);
    L.acked_list = calloc(LOAD_KEYS, sizeof(int));
    assert_true(L.acked && L.acked_list);
    size_t from = master_index_of(cl, 0), to = master_index_of(cl, 1);
    int from_before = 0, to_before = 0;
    for (int s = 0; s < HR_CLUSTER_SLOTS; s++) {
        L.from_slot[s] = hr_cluster_owns(cl, from, s);
        from_before += L.from_slot[s];
        to_before += hr_cluster_owns(cl, to, s);
    }

    char from_id[64], to_id[64], seed[32], log[192];
    node_id(0, from_id, sizeof(from_id));
    node_id(1, to_id, sizeof(to_id));
    snprintf(seed, sizeof(seed), "127.0.0.1:%d", C.node[0].port);
    snprintf(log, sizeof(log), "%s/reshard.log", C.node[0].dir);
    struct event *chld = evsignal_new(base, SIGCHLD, on_sigchld, NULL);
    assert_int_equal(evsignal_add(chld, NULL), 0);

    uint64_t t0 = h_now_ms();
    load_next();
    const char *args[] = {"--cluster", "reshard",       seed,  "--cluster-from",
                          from_id,     "--cluster-to",  to_id, "--cluster-slots",
                          "1000",      "--cluster-yes", NULL};
    L.child = h_cluster_cli_spawn(&C, args, log);
    assert_true(L.child > 0);
    bool done = run_until(base, load_done, NULL, 40000);
    uint64_t reshard_ms = h_now_ms() - t0;
    L.stopping = true;
    assert_true(run_until(base, load_drained, NULL, 10000));
    event_free(chld);
    if (!done || L.child_status != 0) {
        h_show_log(log);
        fail_msg("redis-cli --cluster reshard: %s (status %d)", done ? "failed" : "still running",
                 L.child_status);
    }
    const struct hr_cluster_stats *st = hr_cluster_get_stats(cl);
    print_message("# reshard of 1000 slots under load: %llu ms, %lu SETs (%d acked), %lu GETs, "
                  "%lu failed; MOVED %llu, ASK %llu, TRYAGAIN %llu, map refreshes %llu\n",
                  (unsigned long long)reshard_ms, L.sets, L.nacked, L.gets, L.failures,
                  (unsigned long long)st->moved, (unsigned long long)st->ask,
                  (unsigned long long)st->tryagain, (unsigned long long)st->refreshes);
    if (L.failures)
        fail_msg("%lu commands failed (%lu refused), the first: %s", L.failures, L.refused,
                 L.first_failure);
    assert_true(L.nacked > 0 && L.gets > 0);
    assert_true(st->moved + st->ask > 0);

    /* Every acked SET reads back, through the router. */
    struct result *res = calloc((size_t)L.nacked, sizeof(*res));
    assert_non_null(res);
    answered = 0;
    for (int i = 0; i < L.nacked; i++) {
        char key[32];
        int k = L.acked_list[i];
        snprintf(key, sizeof(key), "load:%d", k);
        const char *argv[] = {"GET", key};
        assert_int_equal(send_key(cl, key, 2, argv, &res[i]), HR_OK);
    }
    struct count want = {(size_t)L.nacked};
    assert_true(run_until(base, all_answered, &want, 20000));
    for (int i = 0; i < L.nacked; i++) {
        int k = L.acked_list[i];
        char val[32];
        snprintf(val, sizeof(val), "v%d", k);
        if (!res[i].ok)
            fail_msg("GET load:%d after the reshard: %s", k, res[i].error);
        assert_string_equal(res[i].value, val);
    }
    /* The map, read again by now (the GETs above met MOVED, or the periodic
     * refresh ran), has the 1000 slots on node 1. */
    assert_true(run_until(base, is_ready, cl, 10000));
    from = master_index_of(cl, 0), to = master_index_of(cl, 1);
    int from_after = 0, to_after = 0;
    for (int s = 0; s < HR_CLUSTER_SLOTS; s++) {
        from_after += hr_cluster_owns(cl, from, s);
        to_after += hr_cluster_owns(cl, to, s);
    }
    print_message("# slots of node 0: %d -> %d, of node 1: %d -> %d\n", from_before, from_after,
                  to_before, to_after);
    assert_int_equal(from_after, from_before - 1000);
    assert_int_equal(to_after, to_before + 1000);
    free(res);
    free(L.acked);
    free(L.acked_list);
    hr_cluster_free(cl);
    event_base_free(base);
}

/* --- one slot moved by hand: ASK, TRYAGAIN, MOVED, one at a time --- */

static struct {
    redisContext *src;
    int dst_port;
} M;

/* MIGRATE of one key from the source to the destination, as redis-cli does. */
static void migrate_key(const char *key)
{
    redisReply *r = redisCommand(M.src, "MIGRATE 127.0.0.1 %d %s 0 5000 AUTH %s KEYS %s",
                                 M.dst_port, "", PASS, key); /* "": no single key */
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("MIGRATE %s: %s", key, r->str);
    freeReplyObject(r);
}

static void on_migrate_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    migrate_key(arg);
}

static void cluster_command(int node, const char *fmt, const char *a, const char *b)
{
    redisContext *c = h_cluster_connect(&C, node);
    redisReply *r = redisCommand(c, fmt, a, b);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("node %d: %s", node, r->str);
    freeReplyObject(r);
    redisFree(c);
}

/* The slot of {mig} moves from its master to another by hand, the way
 * redis-cli does it (IMPORTING, MIGRATING, MIGRATE key by key, SETSLOT
 * NODE), and the router is used at each step: a key gone already is found
 * by ASK (ASKING and the command on the target); a multi-key command while
 * one key is on each side gets TRYAGAIN, is sent again and fails with it
 * after the redirection bound, or succeeds when the migration ends in the
 * meantime; once the slot is the target's, MOVED sends the command there and
 * the router's map follows. */
static void test_cluster_slot_migration_by_hand(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct hr_cluster *cl = router_new(base);
    const struct hr_cluster_stats *st = hr_cluster_get_stats(cl);
    int slot = slot_of("{mig}a");
    size_t m;
    assert_true(hr_cluster_master_of(cl, slot, &m));
    int src = -1, dst, other;
    for (int i = 0; i < 3; i++)
        if (master_index_of(cl, i) == m)
            src = i;
    assert_int_not_equal(src, -1);
    dst = (src + 1) % 3;
    other = (src + 2) % 3;
    char src_id[64], dst_id[64], slotstr[16];
    node_id(src, src_id, sizeof(src_id));
    node_id(dst, dst_id, sizeof(dst_id));
    snprintf(slotstr, sizeof(slotstr), "%d", slot);

    struct result res[4];
    struct count want = {1};
    const char *set_a[] = {"SET", "{mig}a", "1"}, *set_b[] = {"SET", "{mig}b", "2"};
    const char *get_a[] = {"GET", "{mig}a"}, *get_b[] = {"GET", "{mig}b"};
    const char *mget[] = {"MGET", "{mig}a", "{mig}b"};
    memset(res, 0, sizeof(res));
    answered = 0;
    assert_int_equal(hr_cluster_send(cl, slot, 3, set_a, NULL, on_result, &res[0]), HR_OK);
    assert_int_equal(hr_cluster_send(cl, slot, 3, set_b, NULL, on_result, &res[1]), HR_OK);
    want.n = 2;
    assert_true(run_until(base, all_answered, &want, 5000));
    assert_true(res[0].ok && res[1].ok);

    cluster_command(dst, "CLUSTER SETSLOT %s IMPORTING %s", slotstr, src_id);
    cluster_command(src, "CLUSTER SETSLOT %s MIGRATING %s", slotstr, dst_id);
    M.src = h_cluster_connect(&C, src);
    M.dst_port = C.node[dst].port;
    migrate_key("{mig}a");

    /* {mig}a is on the target now: ASK. */
    memset(res, 0, sizeof(res));
    answered = 0;
    uint64_t ask = st->ask;
    assert_int_equal(hr_cluster_send(cl, slot, 2, get_a, NULL, on_result, &res[0]), HR_OK);
    want.n = 1;
    assert_true(run_until(base, all_answered, &want, 5000));
    assert_string_equal(res[0].value, "1");
    assert_int_equal(st->ask, ask + 1);

    /* MGET with one key on each side: TRYAGAIN until the bound. */
    memset(res, 0, sizeof(res));
    answered = 0;
    uint64_t tryagain = st->tryagain, t0 = h_now_ms();
    assert_int_equal(hr_cluster_send(cl, slot, 3, mget, NULL, on_result, &res[0]), HR_OK);
    assert_true(run_until(base, all_answered, &want, 5000));
    uint64_t gave_up_ms = h_now_ms() - t0;
    assert_false(res[0].ok);
    assert_memory_equal(res[0].error, "TRYAGAIN", 8);
    assert_true(st->tryagain - tryagain >= 4); /* 5 redirections: an ASK at most, then TRYAGAIN */

    /* The same while {mig}b follows 30 ms later: sent again, it succeeds. */
    memset(res, 0, sizeof(res));
    answered = 0;
    tryagain = st->tryagain;
    struct event *later = evtimer_new(base, on_migrate_timer, "{mig}b");
    struct timeval tv = {0, 30000};
    evtimer_add(later, &tv);
    assert_int_equal(hr_cluster_send(cl, slot, 3, mget, NULL, on_result, &res[0]), HR_OK);
    assert_true(run_until(base, all_answered, &want, 5000));
    event_free(later);
    if (!res[0].ok)
        fail_msg("MGET during the migration: %s", res[0].error);
    assert_string_equal(res[0].value, "1,2");
    assert_true(st->tryagain > tryagain);
    print_message("# by hand: ASK followed; MGET across the move failed with TRYAGAIN after "
                  "%llu ms, then succeeded after %llu TRYAGAIN\n",
                  (unsigned long long)gave_up_ms, (unsigned long long)(st->tryagain - tryagain));
    redisFree(M.src);

    /* The slot is the target's: MOVED, and the map follows at once. */
    cluster_command(dst, "CLUSTER SETSLOT %s NODE %s", slotstr, dst_id);
    cluster_command(src, "CLUSTER SETSLOT %s NODE %s", slotstr, dst_id);
    cluster_command(other, "CLUSTER SETSLOT %s NODE %s", slotstr, dst_id);
    memset(res, 0, sizeof(res));
    answered = 0;
    uint64_t moved = st->moved;
    assert_int_equal(hr_cluster_send(cl, slot, 2, get_b, NULL, on_result, &res[0]), HR_OK);
    assert_true(run_until(base, all_answered, &want, 5000));
    assert_string_equal(res[0].value, "2");
    assert_int_equal(st->moved, moved + 1);
    assert_true(hr_cluster_master_of(cl, slot, &m));
    assert_int_equal(m, master_index_of(cl, dst));
    hr_cluster_free(cl);
    event_base_free(base);
}

/* A wrong password: never ready, and the reason says why. */
static void test_cluster_wrong_password_not_ready(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct hr_cluster_config cfg = {.nseeds = 1, .timeout_ms = TIMEOUT_MS};
    snprintf(cfg.seed[0].host, sizeof(cfg.seed[0].host), "127.0.0.1");
    cfg.seed[0].port = C.node[0].port;
    snprintf(cfg.pass, sizeof(cfg.pass), "not-the-password");
    char err[256];
    struct hr_cluster *cl = hr_cluster_new(base, &cfg, err, sizeof(err));
    assert_non_null(cl);
    assert_false(run_until(base, is_ready, cl, 1000));
    const char *reason = hr_cluster_not_ready_reason(cl);
    print_message("# wrong password: %s\n", reason);
    assert_non_null(strstr(reason, "no slot map yet"));
    assert_non_null(strstr(reason, "AUTH refused: WRONGPASS"));
    const char *argv[] = {"GET", "x"};
    assert_int_equal(hr_cluster_send(cl, 0, 2, argv, NULL, on_result, NULL), HR_E_UNAVAILABLE);
    hr_cluster_free(cl);
    event_base_free(base);
    /* A configuration without a seed is refused. */
    cfg.nseeds = 0;
    assert_null(hr_cluster_new(base, &cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "seed"));
}

/* --- freeing, a paused master, a killed master --- */

/* Freeing the router fails each call in flight, with one callback each,
 * before hr_cluster_free returns. */
static void test_cluster_free_fails_calls(void **state)
{
    (void)state;
    enum { N = 300 };
    struct event_base *base = event_base_new();
    struct hr_cluster *cl = router_new(base);
    static struct result res[N];
    memset(res, 0, sizeof(res));
    answered = 0;
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof(key), "free:%d", i);
        const char *argv[] = {"GET", key};
        assert_int_equal(send_key(cl, key, 2, argv, &res[i]), HR_OK);
    }
    size_t inflight = 0;
    for (size_t m = 0; m < hr_cluster_nmasters(cl); m++)
        inflight += hr_cluster_inflight(cl, m);
    assert_int_equal(inflight, N);
    hr_cluster_free(cl);
    assert_int_equal(answered, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_false(res[i].ok);
        assert_string_equal(res[i].error, "closed");
    }
    event_base_free(base);
}

/* Node 2 paused (SIGSTOP): calls to its slots fail "timed out" after the
 * timeout, and the router is ready again once it resumes. Then killed
 * (SIGKILL): the calls in flight fail, the router is no longer ready and
 * says which slots have no master, and calls to those slots keep failing,
 * at once or by their callback, never hanging. */
static void test_cluster_master_paused_then_killed(void **state)
{
    (void)state;
    enum { N = 200 };
    struct event_base *base = event_base_new();
    struct hr_cluster *cl = router_new(base);
    size_t victim = master_index_of(cl, 2);
    char name[32];
    snprintf(name, sizeof(name), "127.0.0.1:%d", C.node[2].port);
    static char keys[N][32];
    for (int i = 0, k = 0; i < N; k++) { /* keys of the victim's slots */
        snprintf(keys[i], sizeof(keys[i]), "victim:%d", k);
        if (hr_cluster_owns(cl, victim, slot_of(keys[i])))
            i++;
    }
    static struct result res[N];

    /* Paused. */
    memset(res, 0, sizeof(res));
    answered = 0;
    assert_int_equal(kill(C.node[2].pid, SIGSTOP), 0);
    uint64_t t0 = h_now_ms();
    for (int i = 0; i < 20; i++) {
        const char *argv[] = {"GET", keys[i]};
        assert_int_equal(send_key(cl, keys[i], 2, argv, &res[i]), HR_OK);
    }
    struct count want = {20};
    assert_true(run_until(base, all_answered, &want, 3 * TIMEOUT_MS));
    uint64_t failed_ms = h_now_ms() - t0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_false(res[i].ok);
        assert_string_equal(res[i].error, "timed out");
    }
    assert_true(failed_ms >= TIMEOUT_MS);
    assert_true(hr_cluster_get_stats(cl)->timeouts >= 1);
    assert_int_equal(kill(C.node[2].pid, SIGCONT), 0);
    t0 = h_now_ms();
    assert_true(run_until(base, is_ready, cl, 10000));
    print_message("# paused master: 20 calls failed \"timed out\" after %llu ms; ready again "
                  "%llu ms after it resumed\n",
                  (unsigned long long)failed_ms, (unsigned long long)(h_now_ms() - t0));

    /* Killed, with calls in flight (still in the router's buffers: none
     * can have been answered). */
    memset(res, 0, sizeof(res));
    answered = 0;
    for (int i = 0; i < N; i++) {
        const char *argv[] = {"GET", keys[i]};
        assert_int_equal(send_key(cl, keys[i], 2, argv, &res[i]), HR_OK);
    }
    t0 = h_now_ms();
    h_redis_stop(&C.node[2], true, false);
    want.n = N;
    assert_true(run_until(base, all_answered, &want, 3 * TIMEOUT_MS));
    for (int i = 0; i < N; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_false(res[i].ok);
    }
    print_message("# killed master: %d calls in flight failed (\"%s\") within %llu ms\n", N,
                  res[0].error, (unsigned long long)(h_now_ms() - t0));
    assert_true(run_until(base, is_not_ready, cl, 5000));
    const char *reason = hr_cluster_not_ready_reason(cl);
    print_message("# not ready after %llu ms: %s\n", (unsigned long long)(h_now_ms() - t0), reason);
    assert_non_null(strstr(reason, "slots "));
    assert_non_null(strstr(reason, name));

    /* Calls to its slots, for a while: each refused at once or failed by
     * its callback within the timeout. */
    memset(res, 0, sizeof(res));
    answered = 0;
    size_t accepted = 0, refused = 0;
    for (int i = 0; i < 50; i++) {
        const char *argv[] = {"GET", keys[i]};
        if (send_key(cl, keys[i], 2, argv, &res[i]) == HR_OK)
            accepted++;
        else
            refused++;
        run_for(base, 20);
    }
    want.n = accepted;
    assert_true(run_until(base, all_answered, &want, 3 * TIMEOUT_MS));
    for (int i = 0; i < 50; i++)
        assert_false(res[i].ok);
    assert_false(hr_cluster_ready(cl));
    print_message("# then 50 calls to its slots: %zu refused at once, %zu failed by callback; "
                  "still not ready: %s\n",
                  refused, accepted, hr_cluster_not_ready_reason(cl));
    hr_cluster_free(cl);
    event_base_free(base);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_keyslot_known),
        cmocka_unit_test(test_cluster_keyslot_matches_redis),
        cmocka_unit_test(test_cluster_routes_by_slot),
        cmocka_unit_test(test_cluster_reshard_under_load),
        cmocka_unit_test(test_cluster_slot_migration_by_hand),
        cmocka_unit_test(test_cluster_wrong_password_not_ready),
        cmocka_unit_test(test_cluster_free_fails_calls),
        /* Last: it kills a node. */
        cmocka_unit_test(test_cluster_master_paused_then_killed),
    };
    return cmocka_run_group_tests_name("cluster", tests, group_setup, group_teardown);
}
