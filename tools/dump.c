#include "dump.h"

#include "config.h"
#include "err.h"
#include "inspect.h"
#include "keyopt.h"
#include "log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dump_config {
    struct hr_common common; /* regions, for the daemon's verdict */
    struct hr_key_opt key;
    char file[512];
    char iface[64];
    uint32_t port;
    uint32_t count; /* stop after this many datagrams; 0: no limit */
    int json;
    int no_window;
};

/* What did not make it to the decoder, by cause. */
enum skip { SKIP_NOT_IP, SKIP_NOT_UDP, SKIP_OTHER_PORT, SKIP_FRAGMENT, SKIP_SNAPLEN, SKIP_N };
static const char *skip_names[SKIP_N] = {"not_ip", "not_udp", "other_port", "ip_fragment",
                                         "capture_truncated"};

struct totals {
    uint64_t datagrams;
    uint64_t by_type[5]; /* heartbeat, status, leave, ack, unknown */
    uint64_t by_err[64];
    uint64_t skipped[SKIP_N];
};

struct dump {
    struct dump_config *cfg;
    struct totals t;
    int linktype;
    pcap_t *pcap;
};

static pcap_t *live_pcap;

static void on_sigint(int sig)
{
    (void)sig;
    if (live_pcap)
        pcap_breakloop(live_pcap);
}

HR_OPT_STRING(set_file, struct dump_config, file)

HR_OPT_STRING(set_iface, struct dump_config, iface)

HR_OPT_U32(set_port, struct dump_config, port, 1u, 65535u, "a port, ")

HR_OPT_U32(set_count, struct dump_config, count, 0u, 4000000000u, "a count, ")

HR_OPT_FLAG(set_json, struct dump_config, json)

HR_OPT_FLAG(set_no_window, struct dump_config, no_window)

static int set_key_file(void *c, const char *v, char *err, size_t errlen)
{
    return hr_key_opt_file(&((struct dump_config *)c)->key, v, err, errlen);
}

static const struct hr_opt options[] = {
    {"key-file", 'k', "FILE", NULL,
     "the registry's key file: check authentication as it would, the timestamp within +/-TTL "
     "of the packet's capture time included",
     set_key_file, NULL},
    {"ttl", 0, "SECONDS", "30", "the registry's --ttl: the timestamp window is +/-TTL",
     hr_common_set_ttl, NULL},
    {"no-time-window", 0, NULL, NULL, "with --key-file: do not check the timestamp", set_no_window,
     NULL},
    {"read", 'r', "FILE", NULL, "read a pcap or pcapng capture ('-' for stdin)", set_file, NULL},
    {"interface", 'i', "IFACE", NULL,
     "capture live on this interface (needs root or "
     "CAP_NET_RAW); Ctrl-C prints the totals",
     set_iface, NULL},
    {"port", 'p', "PORT", "9099", "the daemon's UDP port", set_port, NULL},
    {"count", 'c', "N", "0", "stop after N hostreg datagrams (0: no limit)", set_count, NULL},
    {"json", 'j', NULL, NULL, "one JSON object per datagram, then one with the totals", set_json,
     NULL},
    {"regions", 0, "LIST", "us-east-1,us-west-1,eu-central,local",
     "the daemon's regions, for its verdict", hr_common_set_regions, NULL},
    {"default-region", 0, "REGION", "local", "the daemon's default region",
     hr_common_set_default_region, NULL},
    {0},
};

static void format_time(const struct timeval *tv, char *out, size_t outlen)
{
    struct tm tm;
    time_t s = tv->tv_sec;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outlen - n, ".%06ldZ", (long)tv->tv_usec);
}

static void emit_skip(struct dump *d, enum skip why, const struct timeval *ts, const char *src,
                      const char *dst, const char *detail)
{
    d->t.skipped[why]++;
    /* Traffic that is not ours at all is only counted; damage to what may be
     * ours is said, line by line. */
    if (why == SKIP_NOT_IP || why == SKIP_NOT_UDP || why == SKIP_OTHER_PORT)
        return;
    char when[40];
    format_time(ts, when, sizeof(when));
    if (d->cfg->json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "time", when, "src", src, "dst", dst,
                              "verdict", skip_names[why], "message", detail);
        json_dumpf(o, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(o);
    } else {
        printf("%s %s > %s %s: %s\n", when, src, dst, skip_names[why], detail);
    }
}

static void emit(struct dump *d, const struct timeval *ts, const char *src, const char *dst,
                 int to_server, const uint8_t *payload, size_t len)
{
    struct hr_inspect r;
    /* What goes to the registry is judged as hostregd does; what comes from
     * it is an ack. The timestamp window is checked against the capture time,
     * which is when hostregd saw the datagram, however late the capture is
     * read. */
    const struct hr_datagram_ctx ctx = {
        &d->cfg->common.rules, d->cfg->key.loaded ? &d->cfg->key.kr : NULL, d->cfg->common.ttl_s,
        d->cfg->no_window ? 0 : (int64_t)ts->tv_sec};
    hr_inspect(payload, len, &ctx, !to_server, &r);
    d->t.datagrams++;
    const struct hr_verdict *v = &r.v;
    int ti = !v->header_ok ? 4 : v->frame.type == HR_MSG_ACK ? 3 : v->frame.type - 1;
    d->t.by_type[ti >= 0 && ti < 5 ? ti : 4]++;
    int why = v->kind == HR_VERDICT_ACCEPT ? 0 : v->reason;
    d->t.by_err[why > 0 && why < 64 ? why : 0]++;
    char when[40];
    format_time(ts, when, sizeof(when));
    const char *dir = to_server ? "request" : "reply";
    if (d->cfg->json) {
        json_t *o = hr_inspect_json(&r);
        json_object_set_new(o, "time", json_string(when));
        json_object_set_new(o, "src", json_string(src));
        json_object_set_new(o, "dst", json_string(dst));
        json_object_set_new(o, "direction", json_string(dir));
        json_dumpf(o, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(o);
    } else {
        printf("%s %s > %s %s ", when, src, dst, dir);
        hr_inspect_print(stdout, &r);
        putchar('\n');
    }
    if (d->cfg->count && d->t.datagrams >= d->cfg->count)
        pcap_breakloop(d->pcap);
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *pkt)
{
    struct dump *d = (struct dump *)user;
    size_t cap = h->caplen, off = 0;
    int ethertype = -1;
    char src[HR_ADDRSTRLEN] = "?", dst[HR_ADDRSTRLEN] = "?";

    /* Link layer to the IP header. */
    switch (d->linktype) {
    case DLT_EN10MB:
        if (cap < 14)
            goto not_ip;
        ethertype = be16(pkt + 12);
        off = 14;
        while ((ethertype == 0x8100 || ethertype == 0x88a8) && cap >= off + 4) { /* VLAN tags */
            ethertype = be16(pkt + off + 2);
            off += 4;
        }
        break;
    case DLT_NULL:
    case DLT_LOOP: {
        if (cap < 4)
            goto not_ip;
        uint32_t fam;
        memcpy(&fam, pkt, 4);
        if (d->linktype == DLT_LOOP)
            fam = ntohl(fam);
        /* BSD AF_INET6 values differ by system: 24, 28 or 30. */
        ethertype = fam == 2 ? 0x0800 : (fam == 24 || fam == 28 || fam == 30) ? 0x86dd : -1;
        off = 4;
        break;
    }
    case DLT_LINUX_SLL:
        if (cap < 16)
            goto not_ip;
        ethertype = be16(pkt + 14);
        off = 16;
        break;
#ifdef DLT_LINUX_SLL2
    case DLT_LINUX_SLL2:
        if (cap < 20)
            goto not_ip;
        ethertype = be16(pkt);
        off = 20;
        break;
#endif
    case DLT_RAW:
#ifdef DLT_IPV4
    case DLT_IPV4:
    case DLT_IPV6:
#endif
        if (cap < 1)
            goto not_ip;
        ethertype = (pkt[0] >> 4) == 6 ? 0x86dd : 0x0800;
        break;
    default:
        goto not_ip;
    }

    const uint8_t *ip = pkt + off;
    size_t iplen = cap - off;
    const uint8_t *udp;
    size_t udpcap;
    int fragment = 0; /* 1: first of several, 2: a later one */
    if (ethertype == 0x0800) {
        if (iplen < 20 || (ip[0] >> 4) != 4)
            goto not_ip;
        size_t ihl = (size_t)(ip[0] & 15) * 4;
        uint16_t frag = be16(ip + 6);
        char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, ip + 12, a, sizeof(a));
        inet_ntop(AF_INET, ip + 16, b, sizeof(b));
        snprintf(src, sizeof(src), "%s", a);
        snprintf(dst, sizeof(dst), "%s", b);
        if (ip[9] != 17) {
            d->t.skipped[SKIP_NOT_UDP]++;
            return;
        }
        if (frag & 0x1fff)
            fragment = 2;
        else if (frag & 0x2000)
            fragment = 1;
        if (ihl < 20 || iplen < ihl)
            goto snaplen;
        udp = ip + ihl;
        udpcap = iplen - ihl;
    } else if (ethertype == 0x86dd) {
        if (iplen < 40 || (ip[0] >> 4) != 6)
            goto not_ip;
        char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, ip + 8, a, sizeof(a));
        inet_ntop(AF_INET6, ip + 24, b, sizeof(b));
        snprintf(src, sizeof(src), "[%s]", a);
        snprintf(dst, sizeof(dst), "[%s]", b);
        int next = ip[6];
        size_t p = 40;
        /* Extension headers: hop-by-hop, routing, destination options, fragment. */
        while (next == 0 || next == 43 || next == 60 || next == 44) {
            if (iplen < p + 8)
                goto snaplen;
            if (next == 44) {
                uint16_t fo = be16(ip + p + 2);
                fragment = (fo & 0xfff8) ? 2 : (fo & 1) ? 1 : 0;
                next = ip[p];
                p += 8;
            } else {
                next = ip[p];
                p += 8 + (size_t)ip[p + 1] * 8;
            }
        }
        if (next != 17) {
            d->t.skipped[SKIP_NOT_UDP]++;
            return;
        }
        if (iplen < p)
            goto snaplen;
        udp = ip + p;
        udpcap = iplen - p;
    } else {
        goto not_ip;
    }

    if (fragment == 2) {
        /* No UDP header in a later fragment: it cannot be matched to a port. */
        emit_skip(d, SKIP_FRAGMENT, &h->ts, src, dst,
                  "a later IP fragment (datagrams are not reassembled)");
        return;
    }
    if (udpcap < 8)
        goto snaplen;
    uint16_t sport = be16(udp), dport = be16(udp + 2), ulen = be16(udp + 4);
    if (sport != d->cfg->port && dport != d->cfg->port) {
        d->t.skipped[SKIP_OTHER_PORT]++;
        return;
    }
    char s2[HR_ADDRSTRLEN + 8], d2[HR_ADDRSTRLEN + 8];
    snprintf(s2, sizeof(s2), "%s:%u", src, sport);
    snprintf(d2, sizeof(d2), "%s:%u", dst, dport);
    if (fragment == 1) {
        emit_skip(d, SKIP_FRAGMENT, &h->ts, s2, d2,
                  "first IP fragment of a larger datagram (not reassembled)");
        return;
    }
    if (ulen < 8) {
        emit_skip(d, SKIP_SNAPLEN, &h->ts, s2, d2, "bad UDP length");
        return;
    }
    size_t plen = (size_t)ulen - 8;
    if (udpcap - 8 < plen) {
        char msg[96];
        snprintf(msg, sizeof(msg), "capture holds %zu of %zu payload bytes (snap length)",
                 udpcap - 8, plen);
        emit_skip(d, SKIP_SNAPLEN, &h->ts, s2, d2, msg);
        return;
    }
    emit(d, &h->ts, s2, d2, dport == d->cfg->port, udp + 8, plen);
    return;
snaplen:
    emit_skip(d, SKIP_SNAPLEN, &h->ts, src, dst, "packet cut short by the capture's snap length");
    return;
not_ip:
    d->t.skipped[SKIP_NOT_IP]++;
}

static void print_totals(const struct dump *d)
{
    static const char *types[5] = {"heartbeat", "status", "leave", "ack", "unreadable"};
    const struct totals *t = &d->t;
    if (d->cfg->json) {
        json_t *bt = json_object(), *bv = json_object(), *sk = json_object();
        for (int i = 0; i < 5; i++)
            if (t->by_type[i])
                json_object_set_new(bt, types[i], json_integer((json_int_t)t->by_type[i]));
        for (int i = 0; i < 64; i++)
            if (t->by_err[i])
                json_object_set_new(bv, i ? hr_errname(i) : "valid",
                                    json_integer((json_int_t)t->by_err[i]));
        for (int i = 0; i < SKIP_N; i++)
            if (t->skipped[i])
                json_object_set_new(sk, skip_names[i], json_integer((json_int_t)t->skipped[i]));
        json_t *o =
            json_pack("{s:{s:I,s:o,s:o,s:o}}", "totals", "datagrams", (json_int_t)t->datagrams,
                      "by_type", bt, "by_verdict", bv, "skipped", sk);
        json_dumpf(o, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(o);
        return;
    }
    printf("totals: %llu hostreg datagrams\n", (unsigned long long)t->datagrams);
    printf("  by type:");
    for (int i = 0; i < 5; i++)
        if (t->by_type[i])
            printf(" %s=%llu", types[i], (unsigned long long)t->by_type[i]);
    printf("\n  by verdict:");
    for (int i = 0; i < 64; i++)
        if (t->by_err[i])
            printf(" %s=%llu", i ? hr_errname(i) : "valid", (unsigned long long)t->by_err[i]);
    printf("\n  not decoded:");
    int any = 0;
    for (int i = 0; i < SKIP_N; i++)
        if (t->skipped[i]) {
            printf(" %s=%llu", skip_names[i], (unsigned long long)t->skipped[i]);
            any = 1;
        }
    printf("%s\n", any ? "" : " none");
}

int hr_cmd_dump(int argc, char **argv)
{
    struct dump_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    hr_opts_parse_only(
        options, &cfg, argc, argv, "hostreg dump (-r FILE | -i IFACE) [options]",
        "Prints every hostreg datagram of a capture, one line each: time, source, destination,\n"
        "direction, decoded fields and hostregd's verdict; then totals per message type and\n"
        "verdict. IPv4 and IPv6; Ethernet, loopback, Linux cooked and raw IP link types.\n"
        "Fragments and packets cut by the snap length are reported, not decoded.\n"
        "With --key-file a signed datagram's timestamp must be within +/-TTL of the packet's\n"
        "capture time, as hostregd checks it on receipt (--no-time-window: not checked).\n"
        "Example: hostreg dump -i lo -c 10   or   tcpdump -w x.pcap udp port 9099; hostreg dump -r "
        "x.pcap");
    char err[PCAP_ERRBUF_SIZE + 256];
    if (!cfg.file[0] == !cfg.iface[0]) {
        fprintf(stderr, "error: give exactly one of --read FILE or --interface IFACE\n");
        return 2;
    }
    if (hr_rules_set_regions(&cfg.common.rules, cfg.common.regions_list, cfg.common.default_region,
                             err, sizeof(err)) != HR_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    struct dump d = {.cfg = &cfg};
    char perr[PCAP_ERRBUF_SIZE] = "";
    if (cfg.file[0]) {
        d.pcap = pcap_open_offline(cfg.file, perr);
    } else {
        /* A snap length that holds any hostreg datagram with its headers. */
        d.pcap = pcap_open_live(cfg.iface, 2048, 0, 100, perr);
        if (d.pcap) {
            struct bpf_program prog;
            char filter[128];
            /* Later IP fragments carry no ports: let them through to be reported. */
            snprintf(filter, sizeof(filter), "udp port %u or (ip[6:2] & 0x1fff != 0)", cfg.port);
            if (pcap_compile(d.pcap, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) == 0) {
                pcap_setfilter(d.pcap, &prog);
                pcap_freecode(&prog);
            }
            live_pcap = d.pcap;
            signal(SIGINT, on_sigint);
            signal(SIGTERM, on_sigint);
        }
    }
    if (!d.pcap) {
        fprintf(stderr, "error: %s\n", perr);
        return 1;
    }
    d.linktype = pcap_datalink(d.pcap);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = pcap_loop(d.pcap, -1, on_packet, (u_char *)&d);
    if (rc == -1)
        fprintf(stderr, "error: %s\n", pcap_geterr(d.pcap));
    print_totals(&d);
    pcap_close(d.pcap);
    return rc == -1 ? 1 : 0;
}
