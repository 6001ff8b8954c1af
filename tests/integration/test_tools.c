/* The hostreg tools against real processes and real files: decode on the
 * protocol document's examples, dump and tshark on a capture this test
 * writes, the host library and bench against a real hostregd and Redis. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "harness.h"
#include "hostreg_host.h"
#include "keys.h"
#include "wire.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <jansson.h>
#include <pcap/pcap.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
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
    /* bench sends thousands of datagrams a second, for as many hosts, from one
     * address. */
    static const char *const args[] = {"--source-rate", "0", "--source-hosts", "0", NULL};
    if (h_redis_start(&redis, 0, NULL) != 0 || h_daemon_start(&daemon_, redis.port, args) != 0)
        return -1;
    rc = h_redis_connect(redis.port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int status = h_daemon_stop(&daemon_);
    redisFree(rc);
    h_redis_stop(&redis, false, true);
    return status == 0 ? 0 : -1;
}

/* --- decode --- */

static void test_tools_decode_protocol_examples(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/docs/PROTOCOL.md", h_source_dir());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[2048], hex[2048] = "", name[128] = "";
    int checked = 0, refused = 0;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "name: ", 6))
            snprintf(name, sizeof(name), "%.100s", line + 6);
        else if (!strncmp(line, "hex: ", 5))
            snprintf(hex, sizeof(hex), "%.2000s", line + 5);
        else if (!strncmp(line, "expect: ", 8)) {
            hex[strcspn(hex, "\n")] = name[strcspn(name, "\n")] = '\0';
            char *out;
            int st = h_run(&out, "%s/hostreg decode --json %s", h_bin_dir(), hex);
            json_error_t e;
            json_t *j = json_loads(out, 0, &e);
            if (!j)
                fail_msg("%s: decode printed no JSON: %s", name, out);
            const char *verdict = json_string_value(json_object_get(j, "verdict"));
            const char *want_err = strstr(line, "error=");
            if (want_err) {
                char want[64];
                sscanf(want_err + 6, "%63s", want);
                const char *reason = json_string_value(json_object_get(j, "reason"));
                if (!reason || strcmp(reason, want) != 0 || st != 1)
                    fail_msg("%s: reason %s (exit %d), want %s", name, reason ? reason : "none", st,
                             want);
                refused++;
            } else {
                /* The documented fields come back as documented. */
                char want_seq[32] = "";
                const char *s = strstr(line, "seq=");
                if (s)
                    sscanf(s + 4, "%31[0-9]", want_seq);
                /* hostreg decode gives hostregd's verdict: an ack is no
                 * request, so it is dropped, its fields shown all the same. */
                bool ack = strstr(line, "type=ack") != NULL;
                const char *reason = json_string_value(json_object_get(j, "reason"));
                if (ack ? strcmp(verdict, "dropped") != 0 || !reason ||
                              strcmp(reason, "bad_type") != 0 || st != 1
                        : strcmp(verdict, "valid") != 0 || st != 0)
                    fail_msg("%s: verdict %s (exit %d)", name, verdict, st);
                if (want_seq[0] &&
                    strcmp(json_string_value(json_object_get(j, "seq")), want_seq) != 0)
                    fail_msg("%s: seq %s, want %s", name,
                             json_string_value(json_object_get(j, "seq")), want_seq);
            }
            json_decref(j);
            free(out);
            checked++;
        }
    }
    fclose(f);
    assert_true(checked >= 12);
    assert_true(refused >= 6);

    /* The same datagram as base64 and as xxd -p lines on stdin. */
    char *out;
    assert_int_equal(h_run(&out, "printf 'SFIBAwAICRoEaG9zdA==' | %s/hostreg decode", h_bin_dir()),
                     0);
    assert_non_null(strstr(out, "leave"));
    free(out);
    assert_int_equal(h_run(&out, "printf 'hello' | %s/hostreg decode", h_bin_dir()), 1);
    assert_non_null(strstr(out, "unreadable"));
    free(out);
}

/* --- the timestamp window of signed frames --- */

/* The master key of docs/PROTOCOL.md 1.2's worked example, id 7. */
static const char doc_master[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char doc_host[] = "550e8400-e29b-41d4-a716-446655440000";

/* A key file (mode 600) holding `line`, at path (a mkstemp template). */
static void write_key_file(char *path, const char *line)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, 0600), 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "%s\n", line);
    fclose(f);
}

/* heartbeat-uuid signed with the documented master key 7 at `ts`. */
static size_t doc_signed_heartbeat(uint32_t ts, uint8_t *buf, size_t cap)
{
    struct hr_key k = {.id = 7, .mode = HR_KEY_MASTER};
    assert_int_equal(hr_keys_parse_hex(doc_master, k.secret), 0);
    uint8_t key[HR_KEY_LEN];
    hr_keys_host_key(&k, doc_host, key);
    struct hr_request hb = h_heartbeat(doc_host, "room-abc", "us-east-1", HR_STATUS_NONE, 4242);
    size_t n = hr_wire_encode_request_auth(&hb, key, 7, ts, buf, cap);
    assert_true(n > 0);
    return n;
}

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* `hostreg decode` with args on hex: its JSON verdict, reason and stale flag. */
static int decode_json(const char *args, const char *hex, char *verdict, char *reason, bool *stale)
{
    char *out;
    int st = h_run(&out, "%s/hostreg decode --json %s %s", h_bin_dir(), args, hex);
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    if (!j)
        fail_msg("decode %s printed no JSON: %s", args, out);
    const char *v = json_string_value(json_object_get(j, "verdict"));
    const char *r = json_string_value(json_object_get(j, "reason"));
    snprintf(verdict, 32, "%s", v ? v : "");
    snprintf(reason, 32, "%s", r ? r : "");
    *stale = json_is_true(json_object_get(j, "stale"));
    json_decref(j);
    free(out);
    return st;
}

/* decode gives hostregd's verdict now: a frame signed an hour ago is stale
 * (bad_auth) within the window, valid by its tag without it; --ttl widens the
 * window; a frame signed now is valid. The documented heartbeat-auth tag is
 * checked against the documented key; a wrong key is bad_auth, not stale. */
static void test_tools_decode_time_window(void **state)
{
    (void)state;
    char kf[] = "/tmp/hostreg-test-keys-XXXXXX", wrong[] = "/tmp/hostreg-test-keys-XXXXXX";
    char line[128], args[256], verdict[32], reason[32];
    bool stale;
    snprintf(line, sizeof(line), "7 master %s", doc_master);
    write_key_file(kf, line);
    snprintf(line, sizeof(line), "7 deployment %s", doc_master);
    write_key_file(wrong, line);

    uint8_t buf[HR_WIRE_MAX];
    char hex[2 * HR_WIRE_MAX + 1];
    uint32_t now = (uint32_t)time(NULL);
    to_hex(buf, doc_signed_heartbeat(now - 3600, buf, sizeof(buf)), hex);
    snprintf(args, sizeof(args), "-k %s", kf);
    assert_int_equal(decode_json(args, hex, verdict, reason, &stale), 1);
    assert_string_equal(verdict, "dropped");
    assert_string_equal(reason, "bad_auth");
    assert_true(stale);
    snprintf(args, sizeof(args), "-k %s --no-time-window", kf);
    assert_int_equal(decode_json(args, hex, verdict, reason, &stale), 0);
    assert_string_equal(verdict, "valid");
    snprintf(args, sizeof(args), "-k %s --ttl 7200", kf);
    assert_int_equal(decode_json(args, hex, verdict, reason, &stale), 0);
    assert_string_equal(verdict, "valid");
    /* Without keys the block is not checked, as in an open hostregd. */
    assert_int_equal(decode_json("", hex, verdict, reason, &stale), 0);

    to_hex(buf, doc_signed_heartbeat(now, buf, sizeof(buf)), hex);
    snprintf(args, sizeof(args), "-k %s", kf);
    assert_int_equal(decode_json(args, hex, verdict, reason, &stale), 0);
    assert_string_equal(verdict, "valid");

    /* The document's signed example, under the document's key. */
    char path[512], doc_line[2048] = "";
    snprintf(path, sizeof(path), "%s/docs/PROTOCOL.md", h_source_dir());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    bool in_auth = false;
    while (fgets(doc_line, sizeof(doc_line), f)) {
        if (!strcmp(doc_line, "name: heartbeat-auth\n"))
            in_auth = true;
        else if (in_auth && !strncmp(doc_line, "hex: ", 5))
            break;
    }
    fclose(f);
    assert_true(in_auth);
    char *doc_hex = doc_line + 5;
    doc_hex[strcspn(doc_hex, "\n")] = '\0';
    snprintf(args, sizeof(args), "-k %s --no-time-window", kf);
    assert_int_equal(decode_json(args, doc_hex, verdict, reason, &stale), 0);
    assert_string_equal(verdict, "valid");
    snprintf(args, sizeof(args), "-k %s", kf);
    assert_int_equal(decode_json(args, doc_hex, verdict, reason, &stale), 1);
    assert_true(stale);
    /* The master secret used as a deployment key: another K, a wrong tag. */
    snprintf(args, sizeof(args), "-k %s --no-time-window", wrong);
    assert_int_equal(decode_json(args, doc_hex, verdict, reason, &stale), 1);
    assert_string_equal(reason, "bad_auth");
    assert_false(stale);

    unlink(kf);
    unlink(wrong);
}

/* --- decode and hostregd agree --- */

/* One corpus datagram and what each side made of it. */
struct corpus_case {
    char name[128];
    uint8_t bytes[HR_WIRE_MAX * 2];
    size_t len;
};

/* The fuzz corpus of the datagram codec, every non-empty file (a datagram
 * cannot be empty, and decode reads none): *n of them, malloc'd. */
static struct corpus_case *read_corpus(size_t *n)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/fuzz_wire", h_source_dir());
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct corpus_case *cases = calloc(256, sizeof(*cases));
    struct dirent *e;
    *n = 0;
    while ((e = readdir(d)) && *n < 256) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        struct corpus_case *c = &cases[*n];
        c->len = fread(c->bytes, 1, sizeof(c->bytes), f);
        fclose(f);
        snprintf(c->name, sizeof(c->name), "%.100s", e->d_name);
        if (c->len > 0)
            (*n)++;
    }
    closedir(d);
    return cases;
}

/* Sends `c` to the daemon, then a probe heartbeat of seq `probe_seq`, and
 * waits for the probe's ack: the daemon reads both in order from one socket
 * and answers in order, so whatever came before the probe's ack is all the
 * answer `c` gets. Fills *ack and returns 1 when there was one, 0 for none. */
static int daemon_answer(int fd, const struct corpus_case *c, uint64_t probe_seq,
                         struct hr_ack *ack)
{
    struct hr_request probe =
        h_heartbeat("verdict-probe", "room-probe", "local", HR_STATUS_IDLE, probe_seq);
    uint8_t out[HR_WIRE_MAX], in[HR_WIRE_MAX + 1];
    size_t plen = hr_wire_encode_request(&probe, out, sizeof(out));
    assert_true(plen > 0);
    assert_int_equal(send(fd, c->bytes, c->len, 0), (ssize_t)c->len);
    assert_int_equal(send(fd, out, plen, 0), (ssize_t)plen);
    int answers = 0;
    for (uint64_t end = h_now_ms() + 5000; h_now_ms() < end;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, in, sizeof(in), 0);
        struct hr_frame f;
        assert_true(n > 0);
        assert_int_equal(hr_wire_decode(in, (size_t)n, &f), HR_OK);
        assert_int_equal(f.type, HR_MSG_ACK);
        if (f.ack.seq == probe_seq && f.ack.result == HR_RESULT_OK && answers <= 1)
            return answers;
        *ack = f.ack;
        if (++answers > 1)
            fail_msg("%s: more than one answer", c->name);
    }
    fail_msg("%s: no ack for the probe after it", c->name);
    return -1;
}

/* Every datagram of the codec's fuzz corpus, sent to a real hostregd and
 * given to `hostreg decode`: the same verdict. Valid: acked with the
 * request's seq and a registry outcome; invalid: acked INVALID with decode's
 * reason when the ack fits, silence otherwise; dropped: silence, and the
 * daemon's dropped_<reason> counter counts it. Without keys: the signed
 * frames of the corpus carry fixed timestamps that an authenticating daemon,
 * and decode with --key-file, would refuse as stale. */
static void test_tools_decode_agrees_with_daemon(void **state)
{
    (void)state;
    static const char *const args[] = {"--source-rate",
                                       "0",
                                       "--source-hosts",
                                       "0",
                                       "--error-ack-rate",
                                       "1000000",
                                       "--error-ack-gap",
                                       "0",
                                       NULL};
    const char *log_path = "/tmp/hostreg-test-verdict.log";
    struct h_daemon d;
    assert_int_equal(h_daemon_start_logged(&d, redis.port, args, log_path), 0);
    size_t n;
    struct corpus_case *cases = read_corpus(&n);
    assert_true(n >= 20);

    /* decode's verdicts: one JSON line per datagram, in order. */
    char hexfile[] = "/tmp/hostreg-test-verdict-XXXXXX";
    int hfd = mkstemp(hexfile);
    assert_true(hfd >= 0);
    FILE *hf = fdopen(hfd, "w");
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < cases[i].len; k++)
            fprintf(hf, "%02x", cases[i].bytes[k]);
        fputc('\n', hf);
    }
    fclose(hf);
    char *out;
    h_run(&out, "%s/hostreg decode --lines --json < %s", h_bin_dir(), hexfile);
    unlink(hexfile);

    long long dropped[64] = {0}, invalid = 0;
    char *line = out;
    int fd = h_udp_socket(d.port);
    for (size_t i = 0; i < n; i++) {
        const struct corpus_case *c = &cases[i];
        char *eol = strchr(line, '\n');
        assert_non_null(eol);
        *eol = '\0';
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        if (!j)
            fail_msg("%s: decode printed no JSON: %s", c->name, line);
        line = eol + 1;
        const char *verdict = json_string_value(json_object_get(j, "verdict"));
        const char *reason = json_string_value(json_object_get(j, "reason"));
        bool answered = json_is_true(json_object_get(j, "answered"));
        assert_non_null(verdict);

        struct hr_ack ack = {0};
        int got = daemon_answer(fd, c, (1ull << 62) + i, &ack);
        if (strcmp(verdict, "valid") == 0) {
            const char *seq = json_string_value(json_object_get(j, "seq"));
            char want[24];
            if (got != 1)
                fail_msg("%s: decode says valid, the daemon did not answer", c->name);
            snprintf(want, sizeof(want), "%llu", (unsigned long long)ack.seq);
            if (strcmp(seq, want) != 0 ||
                (ack.result != HR_RESULT_OK && ack.result != HR_RESULT_DUPLICATE &&
                 ack.result != HR_RESULT_UNKNOWN_HOST))
                fail_msg("%s: valid, but the daemon answered seq %s result %s", c->name, want,
                         hr_result_name(ack.result));
        } else if (strcmp(verdict, "invalid") == 0) {
            invalid++;
            if (got != (answered ? 1 : 0))
                fail_msg("%s: invalid (%s), answered %d, the daemon sent %d acks", c->name, reason,
                         answered, got);
            if (got && (ack.result != HR_RESULT_INVALID ||
                        strcmp(hr_errname((int)ack.reason), reason) != 0))
                fail_msg("%s: invalid (%s), the daemon answered %s reason %s", c->name, reason,
                         hr_result_name(ack.result), hr_errname((int)ack.reason));
        } else {
            assert_string_equal(verdict, "dropped");
            if (got != 0)
                fail_msg("%s: dropped (%s), the daemon answered %s", c->name, reason,
                         hr_result_name(ack.result));
            int r;
            for (r = 1; r < 64 && strcmp(hr_errname(r), reason) != 0; r++)
                ;
            assert_true(r < 64);
            dropped[r]++;
        }
        json_decref(j);
    }
    close(fd);
    free(out);
    free(cases);

    /* The daemon counted each silence for decode's reason. */
    char *log = h_daemon_stats(&d, log_path, 1);
    assert_non_null(log);
    for (int r = 1; r < 16; r++) {
        char name[64];
        snprintf(name, sizeof(name), "dropped_%s", hr_errname(r));
        if (h_stats_counter(log, name) != dropped[r])
            fail_msg("%s: daemon %lld, decode %lld", name, h_stats_counter(log, name), dropped[r]);
    }
    assert_int_equal(h_stats_counter(log, "invalid"), invalid);
    free(log);
    assert_int_equal(h_daemon_stop(&d), 0);
    unlink(log_path);
}

/* --- a capture written by the test --- */

static size_t ip4_udp(uint8_t *pkt, const char *src, const char *dst, uint16_t sport,
                      uint16_t dport, const uint8_t *payload, size_t plen, uint16_t frag)
{
    memset(pkt, 0, 14);
    pkt[12] = 0x08; /* ethertype IPv4 */
    uint8_t *ip = pkt + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    uint16_t tot = (uint16_t)(20 + 8 + plen);
    ip[2] = (uint8_t)(tot >> 8);
    ip[3] = (uint8_t)tot;
    ip[6] = (uint8_t)(frag >> 8);
    ip[7] = (uint8_t)frag;
    ip[8] = 64;
    ip[9] = 17;
    inet_pton(AF_INET, src, ip + 12);
    inet_pton(AF_INET, dst, ip + 16);
    uint8_t *udp = ip + 20;
    udp[0] = (uint8_t)(sport >> 8), udp[1] = (uint8_t)sport;
    udp[2] = (uint8_t)(dport >> 8), udp[3] = (uint8_t)dport;
    udp[4] = (uint8_t)((8 + plen) >> 8), udp[5] = (uint8_t)(8 + plen);
    udp[6] = udp[7] = 0;
    memcpy(udp + 8, payload, plen);
    return 14 + 20 + 8 + plen;
}

static size_t ip6_udp(uint8_t *pkt, uint16_t sport, uint16_t dport, const uint8_t *payload,
                      size_t plen)
{
    memset(pkt, 0, 14 + 40);
    pkt[12] = 0x86, pkt[13] = 0xdd;
    uint8_t *ip = pkt + 14;
    ip[0] = 0x60;
    ip[4] = (uint8_t)((8 + plen) >> 8), ip[5] = (uint8_t)(8 + plen);
    ip[6] = 17;
    ip[7] = 64;
    inet_pton(AF_INET6, "::1", ip + 8);
    inet_pton(AF_INET6, "::1", ip + 24);
    uint8_t *udp = ip + 40;
    udp[0] = (uint8_t)(sport >> 8), udp[1] = (uint8_t)sport;
    udp[2] = (uint8_t)(dport >> 8), udp[3] = (uint8_t)dport;
    udp[4] = (uint8_t)((8 + plen) >> 8), udp[5] = (uint8_t)(8 + plen);
    udp[6] = udp[7] = 0;
    memcpy(udp + 8, payload, plen);
    return 14 + 40 + 8 + plen;
}

static void put(pcap_dumper_t *d, const uint8_t *pkt, size_t len, size_t caplen, int i)
{
    struct pcap_pkthdr h = {{1795000000 + i, 0}, (bpf_u_int32)caplen, (bpf_u_int32)len};
    pcap_dump((u_char *)d, &h, pkt);
}

/* valid heartbeat + its ack, garbage, a packet cut by the snap length, an
 * IPv6 status update, a later IP fragment, other UDP traffic and TCP. */
static void write_capture(const char *path)
{
    pcap_t *p = pcap_open_dead(DLT_EN10MB, 65535);
    pcap_dumper_t *d = pcap_dump_open(p, path);
    assert_non_null(d);
    uint8_t pkt[1024], dgram[HR_WIRE_MAX];
    struct hr_request hb = h_heartbeat("550e8400-e29b-41d4-a716-446655440000", "room-cap1",
                                       "eu-central", HR_STATUS_NONE, 1001);
    hb.capacity = 4;
    hb.available_slots = 2;
    hb.slots_given = true;
    size_t n = hr_wire_encode_request(&hb, dgram, sizeof(dgram));
    size_t len = ip4_udp(pkt, "10.1.1.1", "10.1.1.2", 40000, 9099, dgram, n, 0);
    put(d, pkt, len, len, 0);
    struct hr_ack ack = {1001, HR_RESULT_OK, 30, 20, 0};
    n = hr_wire_encode_ack(&ack, dgram, sizeof(dgram));
    len = ip4_udp(pkt, "10.1.1.2", "10.1.1.1", 9099, 40000, dgram, n, 0);
    put(d, pkt, len, len, 1);
    len = ip4_udp(pkt, "10.1.1.3", "10.1.1.2", 40001, 9099, (const uint8_t *)"hello", 5, 0);
    put(d, pkt, len, len, 2);
    n = hr_wire_encode_request(&hb, dgram, sizeof(dgram));
    len = ip4_udp(pkt, "10.1.1.4", "10.1.1.2", 40002, 9099, dgram, n, 0);
    put(d, pkt, len, len - 10, 3); /* snap length cut the payload */
    struct hr_request st = h_status("host-v6", HR_STATUS_BUSY, 1002);
    n = hr_wire_encode_request(&st, dgram, sizeof(dgram));
    len = ip6_udp(pkt, 40003, 9099, dgram, n);
    put(d, pkt, len, len, 4);
    len = ip4_udp(pkt, "10.1.1.5", "10.1.1.2", 40004, 9099, dgram, n, 185); /* offset != 0 */
    put(d, pkt, len, len, 5);
    len = ip4_udp(pkt, "10.1.1.6", "10.1.1.2", 40005, 53, dgram, n, 0);
    put(d, pkt, len, len, 6);
    len = ip4_udp(pkt, "10.1.1.7", "10.1.1.2", 40006, 9099, dgram, n, 0);
    pkt[14 + 9] = 6; /* TCP */
    put(d, pkt, len, len, 7);
    pcap_dump_close(d);
    pcap_close(p);
}

static void test_tools_dump_capture(void **state)
{
    (void)state;
    char path[] = "/tmp/hostreg-test-capture-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_capture(path);
    char *out;
    assert_int_equal(h_run(&out, "%s/hostreg dump -r %s", h_bin_dir(), path), 0);
    static const char *want[] = {
        "10.1.1.1:40000 > 10.1.1.2:9099 request heartbeat seq=1001 "
        "host=550e8400-e29b-41d4-a716-446655440000(uuid) room=room-cap1 region=eu-central "
        "capacity=4 available_slots=2",
        "10.1.1.2:9099 > 10.1.1.1:40000 reply ack seq=1001 result=ok ttl=30 interval=20",
        "10.1.1.3:40001 > 10.1.1.2:9099 request ? len=5 dropped: bad_magic",
        "10.1.1.4:40002 > 10.1.1.2:9099 capture_truncated",
        "[::1]:40003 > [::1]:9099 request status seq=1002 host=host-v6 status=busy",
        "10.1.1.5 > 10.1.1.2 ip_fragment",
        "totals: 4 hostreg datagrams",
        "by type: heartbeat=1 status=1 ack=1 unreadable=1",
        "by verdict: valid=3 bad_magic=1",
        "not decoded: not_udp=1 other_port=1 ip_fragment=1 capture_truncated=1",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(out, want[i]))
            fail_msg("dump output lacks '%s':\n%s", want[i], out);
    free(out);

    assert_int_equal(h_run(&out, "%s/hostreg dump --json -r %s | tail -n 1", h_bin_dir(), path), 0);
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    assert_non_null(j);
    json_t *t = json_object_get(j, "totals");
    assert_int_equal(json_integer_value(json_object_get(t, "datagrams")), 4);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(t, "by_verdict"), "bad_magic")), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(t, "skipped"), "capture_truncated")), 1);
    json_decref(j);
    free(out);

    /* tshark with the Lua dissector shows the decoded fields. */
    assert_int_equal(h_run(&out,
                           "tshark -X lua_script:%s/tools/wireshark/hostreg.lua -r %s -T fields "
                           "-E separator=, -e hostreg.type -e hostreg.seq -e hostreg.host_uuid -e "
                           "hostreg.host_id -e hostreg.room_id -e hostreg.region -e hostreg.status "
                           "-e hostreg.result -e hostreg.capacity -e hostreg.available_slots "
                           "2>/dev/null",
                           h_source_dir(), path),
                     0);
    static const char *fields[] = {
        "0x01,1001,550e8400-e29b-41d4-a716-446655440000,,room-cap1,eu-central,,,4,2",
        "0x81,1001,,,,,,1,,",
        "0x02,1002,,host-v6,,,2,,,",
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (!strstr(out, fields[i]))
            fail_msg("tshark output lacks '%s':\n%s", fields[i], out);
    free(out);
    unlink(path);
}

/* dump judges a signed frame's timestamp against the packet's capture time,
 * which is when hostregd saw it, however late the capture is read: the frame
 * captured at its own timestamp is valid, the same frame captured an hour
 * later is stale; without the window both are valid. */
static void test_tools_dump_time_window(void **state)
{
    (void)state;
    char kf[] = "/tmp/hostreg-test-keys-XXXXXX", line[128];
    snprintf(line, sizeof(line), "7 master %s", doc_master);
    write_key_file(kf, line);
    char path[] = "/tmp/hostreg-test-capture-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    pcap_t *p = pcap_open_dead(DLT_EN10MB, 65535);
    pcap_dumper_t *d = pcap_dump_open(p, path);
    assert_non_null(d);
    uint8_t pkt[1024], dgram[HR_WIRE_MAX];
    const uint32_t ts = 1764367488;
    size_t n = doc_signed_heartbeat(ts, dgram, sizeof(dgram));
    size_t len = ip4_udp(pkt, "10.2.2.1", "10.2.2.2", 40000, 9099, dgram, n, 0);
    struct pcap_pkthdr h = {{ts, 250000}, (bpf_u_int32)len, (bpf_u_int32)len};
    pcap_dump((u_char *)d, &h, pkt);
    len = ip4_udp(pkt, "10.2.2.3", "10.2.2.2", 40000, 9099, dgram, n, 0);
    h.ts.tv_sec = ts + 3600;
    pcap_dump((u_char *)d, &h, pkt);
    pcap_dump_close(d);
    pcap_close(p);

    char *out;
    assert_int_equal(h_run(&out, "%s/hostreg dump -k %s -r %s", h_bin_dir(), kf, path), 0);
    static const char *want[] = {
        "10.2.2.1:40000 > 10.2.2.2:9099 request heartbeat key=7 ts=1764367488 seq=4242 "
        "host=550e8400-e29b-41d4-a716-446655440000(uuid)",
        "10.2.2.3:40000 > 10.2.2.2:9099 request heartbeat key=7 ts=1764367488 len=68 dropped: "
        "bad_auth (timestamp outside",
        "by verdict: valid=1 bad_auth=1",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(out, want[i]))
            fail_msg("dump output lacks '%s':\n%s", want[i], out);
    free(out);
    assert_int_equal(
        h_run(&out, "%s/hostreg dump -k %s --no-time-window -r %s", h_bin_dir(), kf, path), 0);
    if (!strstr(out, "by verdict: valid=2"))
        fail_msg("dump --no-time-window:\n%s", out);
    free(out);
    unlink(path);
    unlink(kf);
}

/* --- the host library against the real daemon --- */

struct events {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int registered, confirmed, left, slots_confirmed;
    enum hr_status status;
    uint32_t slots;
};

static void on_host_event(struct hr_host *h, const struct hr_host_event_info *ev, void *arg)
{
    (void)h;
    struct events *e = arg;
    pthread_mutex_lock(&e->mu);
    if (ev->event == HR_HOST_REGISTERED)
        e->registered++;
    if (ev->event == HR_HOST_STATUS_CONFIRMED) {
        e->confirmed++;
        e->status = ev->status;
    }
    if (ev->event == HR_HOST_LEFT)
        e->left++;
    if (ev->event == HR_HOST_SLOTS_CONFIRMED) {
        e->slots_confirmed++;
        e->slots = ev->available_slots;
    }
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* Waits until *counter reaches `want` or `ms` pass; returns the counter. */
static int wait_for(struct events *e, int *counter, int want, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L)
        until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&e->mu);
    while (*counter < want && pthread_cond_timedwait(&e->cv, &e->mu, &until) == 0)
        ;
    int v = *counter;
    pthread_mutex_unlock(&e->mu);
    return v;
}

/* Against a daemon of its own (and its own key prefix), which it stops and
 * starts again: the group's daemon, with its flags, counters and hosts, is
 * the other tests', whatever order they run in. */
/* The host library plays against a registry this test plays: an ack
 * advising a heartbeat interval beyond the TTL (acks are not signed: a
 * forged one) does not stop the heartbeats, which keep coming inside the TTL
 * the ack gave. */
static void test_tools_host_library_ignores_bad_interval(void **state)
{
    (void)state;
    struct sockaddr_in me;
    socklen_t melen = sizeof(me);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&any, sizeof(any)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &melen), 0);
    char server[64], err[256];
    snprintf(server, sizeof(server), "127.0.0.1:%d", ntohs(me.sin_port));
    struct hr_host_config cfg = {.server = server, .room_id = "room-adv", .region = "local"};
    struct hr_host *h = hr_host_start(NULL, &cfg, err, sizeof(err));
    assert_non_null(h);
    /* Its first heartbeat, answered ok with a TTL of 3 s and an interval of
     * 100000 s; then the next heartbeat must come within the 3 s. */
    uint64_t answered = 0, gap = 0;
    int beats = 0;
    for (uint64_t end = h_now_ms() + 8000; beats < 2 && h_now_ms() < end;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) != 1)
            continue;
        uint8_t in[HR_WIRE_MAX + 1], out[HR_WIRE_MAX];
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(fd, in, sizeof(in), 0, (struct sockaddr *)&from, &fl);
        struct hr_frame f;
        if (n <= 0 || hr_wire_decode(in, (size_t)n, &f) != HR_OK || f.type != HR_MSG_HEARTBEAT)
            continue;
        if (++beats == 2) {
            gap = h_now_ms() - answered;
            break;
        }
        struct hr_ack ack = {f.req.seq, HR_RESULT_OK, 3, 100000, 0};
        size_t len = hr_wire_encode_ack(&ack, out, sizeof(out));
        assert_int_equal(sendto(fd, out, len, 0, (struct sockaddr *)&from, fl), (ssize_t)len);
        answered = h_now_ms();
    }
    hr_host_free(h);
    close(fd);
    assert_int_equal(beats, 2);
    if (gap >= 3000)
        fail_msg("the next heartbeat came %llu ms after an ack with a 3 s TTL",
                 (unsigned long long)gap);
}

static void test_tools_host_library(void **state)
{
    (void)state;
    static const char *const args[] = {"--prefix", "hl:", NULL};
    struct h_daemon d;
    assert_int_equal(h_daemon_start(&d, redis.port, args), 0);
    struct events e = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0};
    char server[64], err[256], key[128];
    snprintf(server, sizeof(server), "127.0.0.1:%d", d.port);
    struct hr_host_config cfg = {.server = server,
                                 .room_id = "room-lib",
                                 .region = "us-west-1",
                                 .retry_ms = 100,
                                 .cb = on_host_event,
                                 .cb_arg = &e,
                                 .capacity = 3};
    struct hr_host *h = hr_host_start(NULL, &cfg, err, sizeof(err));
    assert_non_null(h);
    uint8_t uuid[16];
    assert_true(hr_uuid_parse(hr_host_id(h), strlen(hr_host_id(h)), uuid));
    assert_int_equal(uuid[6] >> 4, 4); /* version 4 */
    assert_int_equal(wait_for(&e, &e.registered, 1, 5000), 1);
    snprintf(key, sizeof(key), "hl:h:%s", hr_host_id(h));
    assert_string_equal(h_entry_field(rc, key, "status"), "idle");
    assert_string_equal(h_entry_field(rc, key, "room"), "room-lib");
    assert_string_equal(h_entry_field(rc, key, "slots"), "3 3 3");
    /* Its free slots, reported at once (a heartbeat, acked: the event). */
    assert_int_equal(hr_host_set_available_slots(h, 4), -1); /* over its capacity */
    assert_int_equal(hr_host_set_available_slots(h, 1), 0);
    assert_int_equal(wait_for(&e, &e.slots_confirmed, 1, 5000), 1);
    assert_int_equal(e.slots, 1);
    assert_string_equal(h_entry_field(rc, key, "slots"), "3 1 1");

    /* The daemon goes away; the status change waits and is retransmitted
     * until a daemon is back on the same port. */
    assert_int_equal(h_daemon_stop(&d), 0);
    assert_int_equal(hr_host_set_status(h, HR_STATUS_BUSY), 0);
    assert_int_equal(wait_for(&e, &e.confirmed, 1, 600), 0); /* nobody to confirm it */
    assert_string_equal(h_entry_field(rc, key, "status"), "idle");
    assert_int_equal(h_daemon_restart(&d, redis.port, args), 0);
    assert_int_equal(wait_for(&e, &e.confirmed, 1, 10000), 1);
    assert_int_equal(e.status, HR_STATUS_BUSY);
    assert_string_equal(h_entry_field(rc, key, "status"), "busy");

    /* Leave on free: the entry is gone at once, not after the TTL. */
    hr_host_free(h);
    assert_int_equal(e.left, 1);
    assert_int_equal(h_redis_int(rc, "EXISTS %s", key), 0);
    assert_int_equal(h_daemon_stop(&d), 0);
}

static void test_tools_bench_modest_rate_loses_nothing(void **state)
{
    (void)state;
    char *out;
    int st = h_run(&out,
                   "%s/hostreg bench --server 127.0.0.1:%d --hosts 500 --rate 2000 --duration 2 "
                   "--json",
                   h_bin_dir(), daemon_.port);
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    if (!j)
        fail_msg("bench printed no JSON: %s", out);
    printf("# bench: %s", out);
    assert_int_equal(st, 0);
    json_int_t sent = json_integer_value(json_object_get(j, "sent"));
    assert_true(sent >= 3800 && sent <= 4100);
    assert_int_equal(json_integer_value(json_object_get(j, "acked")), sent);
    assert_int_equal(json_integer_value(json_object_get(j, "lost")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "results"), "ok")) +
            json_integer_value(json_object_get(json_object_get(j, "results"), "duplicate")),
        sent);
    json_decref(j);
    free(out);
    /* The simulated hosts are in the registry. */
    assert_int_equal(h_redis_int(rc, "EXISTS hr:h:b0b0b0b0-0000-4000-8000-000000000000"), 1);
}

static void test_tools_ls_lists_hosts(void **state)
{
    (void)state;
    struct hr_request r = h_heartbeat("host-ls-1", "room-ls", "eu-central", HR_STATUS_BUSY, 0);
    struct hr_ack ack;
    assert_int_equal(h_send(daemon_.port, &r, &ack), 0);
    char *out;
    assert_int_equal(h_run(&out, "%s/hostreg ls --redis redis://127.0.0.1:%d --region eu-central",
                           h_bin_dir(), redis.port),
                     0);
    assert_non_null(strstr(out, "host-ls-1"));
    assert_non_null(strstr(out, "room-ls"));
    assert_non_null(strstr(out, "busy"));
    free(out);
    assert_int_equal(h_run(&out, "%s/hostreg ls --json --redis redis://127.0.0.1:%d --status busy",
                           h_bin_dir(), redis.port),
                     0);
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    assert_non_null(j);
    json_t *hosts = json_object_get(j, "hosts");
    size_t i;
    json_t *hst;
    int found = 0;
    json_array_foreach(hosts, i, hst)
    {
        assert_string_equal(json_string_value(json_object_get(hst, "status")), "busy");
        if (!strcmp(json_string_value(json_object_get(hst, "hostId")), "host-ls-1"))
            found = 1;
    }
    assert_true(found);
    assert_true(json_integer_value(json_object_get(
                    json_object_get(json_object_get(j, "regions"), "eu-central"), "busy")) >= 1);
    json_decref(j);
    free(out);
}

/* --version on every program: its name, the project's version, and the git
 * revision when built from a checkout; exit 0. */
static void test_tools_version(void **state)
{
    (void)state;
    static const char *const progs[] = {"hostreg", "hostregd", "hostreg-gateway"};
    char *git;
    bool checkout =
        h_run(&git, "git -C '%s' rev-parse --git-dir >/dev/null 2>&1", h_source_dir()) == 0;
    free(git);
    for (size_t i = 0; i < 3; i++) {
        char *out;
        assert_int_equal(h_run(&out, "%s/%s --version", h_bin_dir(), progs[i]), 0);
        char want[64];
        snprintf(want, sizeof(want), "%s 0.", progs[i]);
        if (strncmp(out, want, strlen(want)) != 0 || (checkout && !strstr(out, "(git ")))
            fail_msg("%s --version said '%s'", progs[i], out);
        free(out);
    }
}

/* When stderr is the journal (JOURNAL_STREAM names its device and inode, as
 * systemd sets it), every log line starts with its syslog priority: <4> for
 * a warning, <6> for info. */
static void test_tools_journal_priority(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/hostreg-journal-%d.log", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    char *out;
    /* Redis at port 1: refused, which it logs as a warning and retries. */
    assert_int_equal(h_run(&out,
                           "JOURNAL_STREAM=%llu:%llu %s/hostregd --listen 127.0.0.1:%d "
                           "--redis redis://127.0.0.1:1 2>>%s </dev/null >/dev/null & echo $!",
                           (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
                           h_bin_dir(), h_free_port(SOCK_DGRAM), path),
                     0);
    pid_t pid = (pid_t)atoi(out);
    free(out);
    assert_true(pid > 0);
    char *log = NULL;
    for (uint64_t end = h_now_ms() + 5000;;) { /* the log is a file: polled */
        free(log);
        log = NULL;
        h_run(&log, "cat %s", path);
        if (strstr(log, "listening") && strstr(log, "connect failed"))
            break;
        assert_true(h_now_ms() < end);
        usleep(20000);
    }
    kill(pid, SIGTERM);
    size_t lines = 0;
    for (char *l = log; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
        lines++;
        if (strstr(l, " warn ") && strstr(l, " warn ") < strchr(l, '\n'))
            assert_true(strncmp(l, "<4>", 3) == 0);
        else if (strstr(l, " info ") && strstr(l, " info ") < strchr(l, '\n'))
            assert_true(strncmp(l, "<6>", 3) == 0);
        else
            fail_msg("a line without its level: %.80s", l);
    }
    assert_true(lines >= 2);
    free(log);
    for (uint64_t end = h_now_ms() + 5000; kill(pid, 0) == 0;) { /* gone: exited */
        assert_true(h_now_ms() < end);
        usleep(10000);
    }
    unlink(path);
}

int main(int argc, char **argv)
{
    /* One test, or those matching a pattern ('*' and '?'): test_x 'test_x_y*' */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tools_decode_protocol_examples),
        cmocka_unit_test(test_tools_dump_capture),
        cmocka_unit_test(test_tools_decode_time_window),
        cmocka_unit_test(test_tools_dump_time_window),
        cmocka_unit_test(test_tools_ls_lists_hosts),
        cmocka_unit_test(test_tools_bench_modest_rate_loses_nothing),
        cmocka_unit_test(test_tools_host_library),
        cmocka_unit_test(test_tools_host_library_ignores_bad_interval),
        cmocka_unit_test(test_tools_decode_agrees_with_daemon),
        cmocka_unit_test(test_tools_version),
        cmocka_unit_test(test_tools_journal_priority),
    };
    return cmocka_run_group_tests_name("tools", tests, setup, teardown);
}
