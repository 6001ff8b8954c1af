#include "send.h"

#include "config.h"
#include "hostreg_host.h"
#include "keyopt.h"
#include "log.h"
#include "err.h"
#include "request.h"
#include "wire.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Exit codes: 0 ok ack, 1 any other ack, 2 usage, 3 no ack at all. */
#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define EXIT_NO_ACK 3

struct send_config {
    struct sockaddr_storage server;
    socklen_t server_len;
    struct hr_request req;
    uint32_t timeout_ms;
    uint32_t retries;
    int have_seq;
    struct hr_key_opt key;
};

static int set_key_file(void *c, const char *v, char *err, size_t errlen)
{
    return hr_key_opt_file(&((struct send_config *)c)->key, v, err, errlen);
}

static int set_key_hex(void *c, const char *v, char *err, size_t errlen)
{
    return hr_key_opt_hex(&((struct send_config *)c)->key, v, err, errlen);
}

static int set_key_id(void *c, const char *v, char *err, size_t errlen)
{
    return hr_key_opt_id(&((struct send_config *)c)->key, v, err, errlen);
}

static int set_server(void *c, const char *v, char *err, size_t errlen)
{
    struct send_config *s = c;
    return hr_parse_hostport(v, "127.0.0.1", &s->server, &s->server_len, err, errlen);
}

HR_OPT_STRING(set_host_id, struct send_config, req.host_id)

HR_OPT_STRING(set_room_id, struct send_config, req.room_id)

HR_OPT_STRING(set_region, struct send_config, req.region)

HR_OPT_STATUS(set_status, struct send_config, req.status)

static int set_seq(void *c, const char *v, char *err, size_t errlen)
{
    struct send_config *s = c;
    if (hr_parse_u64(v, &s->req.seq) != 0) {
        snprintf(err, errlen, "want an unsigned 64-bit number");
        return -1;
    }
    s->have_seq = 1;
    return 0;
}

/* Not checked against each other here: the daemon's answer to a bad pair
 * is what an operator testing it wants to see. */
HR_OPT_U32(set_capacity, struct send_config, req.capacity, 1u, HR_CAPACITY_MAX, "")

static int set_available_slots(void *c, const char *v, char *err, size_t errlen)
{
    struct send_config *s = c;
    s->req.slots_given = true;
    return hr_opt_u32(v, 0u, HR_CAPACITY_MAX, "", &s->req.available_slots, err, errlen);
}

HR_OPT_U32(set_timeout, struct send_config, timeout_ms, 1u, 60000u, "milliseconds, ")

HR_OPT_U32(set_retries, struct send_config, retries, 0u, 100u, "")

static const struct hr_opt options[] = {
    {"server", 's', "HOST:PORT", "127.0.0.1:9099", "the hostregd to send to", set_server, NULL},
    {"host-id", 'i', "ID", NULL, "the host: a UUID or 1-64 characters of [A-Za-z0-9._:-]",
     set_host_id, NULL},
    {"room-id", 'R', "ROOM", NULL, "heartbeat: the WebRTC signaling room", set_room_id, NULL},
    {"region", 'g', "REGION", NULL, "heartbeat: the host's region (default: the server's)",
     set_region, NULL},
    {"status", 'S', "STATUS", NULL,
     "idle, busy or allocated (status: required; heartbeat: used if it creates the entry)",
     set_status, NULL},
    {"capacity", 0, "N", "1", "heartbeat: sessions the host can serve at once", set_capacity, NULL},
    {"available-slots", 0, "N", NULL,
     "heartbeat: its free slots now, 0..capacity (default: the capacity; 0: never matched)",
     set_available_slots, NULL},
    {"seq", 0, "N", NULL, "sequence number (default: the clock in microseconds)", set_seq, NULL},
    {"timeout", 't', "MS", "500", "wait for the first ack; doubled at each retry", set_timeout,
     NULL},
    {"key-file", 'k', "FILE", NULL, "sign with the host's key from the registry's key file",
     set_key_file, NULL},
    {"key", 0, "HEX", NULL, "sign with this host key (what hostreg key prints); needs --key-id",
     set_key_hex, NULL},
    {"key-id", 0, "ID", "0", "the key's id (0 with --key-file: its first key)", set_key_id, NULL},
    {"retries", 0, "N", "3", "retransmissions without an ack before giving up", set_retries, NULL},
    {0},
};

static uint64_t clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void print_ack(const struct hr_ack *a, int retransmitted)
{
    printf("ack seq=%" PRIu64 " result=%s", a->seq, hr_result_name(a->result));
    if (a->ttl)
        printf(" ttl=%" PRIu32, a->ttl);
    if (a->interval)
        printf(" interval=%" PRIu32, a->interval);
    if (a->reason)
        printf(" reason=%s (%s)", hr_errname((int)a->reason), hr_strerror((int)a->reason));
    if (a->result == HR_RESULT_DUPLICATE && retransmitted)
        printf(" (an earlier copy was applied)");
    printf("\n");
}

int hr_cmd_send(int argc, char **argv)
{
    static const char about[] =
        "Sends one request to hostregd and prints its ack on one line. The datagram is\n"
        "retransmitted (same sequence number) until an ack comes or the retries run out.\n"
        "Exit status: 0 ok ack, 1 any other ack, 2 usage error, 3 no ack.\n"
        "TYPE is heartbeat (needs --host-id, --room-id), status (--host-id, --status)\n"
        "or leave (--host-id).";
    struct send_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            hr_opts_parse(options, &cfg, argc, argv,
                          "hostreg send heartbeat|status|leave [options]", about);
        }
        fprintf(stderr, "usage: hostreg send heartbeat|status|leave [options] (try --help)\n");
        return EXIT_USAGE;
    }
    const char *type = argv[1];
    if (!strcmp(type, "heartbeat"))
        cfg.req.type = HR_MSG_HEARTBEAT;
    else if (!strcmp(type, "status"))
        cfg.req.type = HR_MSG_STATUS;
    else if (!strcmp(type, "leave"))
        cfg.req.type = HR_MSG_LEAVE;
    else {
        fprintf(stderr, "error: unknown request type '%s' (heartbeat, status or leave)\n", type);
        return EXIT_USAGE;
    }
    /* EXIT_USAGE is 2, as hr_opts_parse_only exits. */
    hr_opts_parse_only(options, &cfg, argc - 1, argv + 1,
                       "hostreg send heartbeat|status|leave [options]", about);
    if (!cfg.req.host_id[0]) {
        fprintf(stderr, "error: --host-id is required\n");
        return EXIT_USAGE;
    }
    if (cfg.req.type == HR_MSG_HEARTBEAT && !cfg.req.room_id[0]) {
        fprintf(stderr, "error: a heartbeat needs --room-id\n");
        return EXIT_USAGE;
    }
    if (cfg.req.type == HR_MSG_STATUS && cfg.req.status == HR_STATUS_NONE) {
        fprintf(stderr, "error: a status update needs --status idle|busy|allocated\n");
        return EXIT_USAGE;
    }
    /* The clock makes successive invocations' numbers increase without any
     * state kept between them. */
    if (!cfg.have_seq)
        cfg.req.seq = clock_us();

    struct hr_ack ack;
    unsigned attempts = 0;
    char server[HR_ADDRSTRLEN], err[256];
    hr_addr_str(server, sizeof(server), (struct sockaddr *)&cfg.server);
    struct hr_host_auth auth;
    if (hr_key_opt_auth(&cfg.key, cfg.req.host_id, &auth) != 0) {
        fprintf(stderr, "error: no key with --key-id %u\n", cfg.key.key_id);
        return EXIT_USAGE;
    }
    if (hr_host_send_once(server, &cfg.req, &auth, cfg.timeout_ms, cfg.retries, &ack, &attempts,
                          err, sizeof(err)) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return EXIT_NO_ACK;
    }
    print_ack(&ack, attempts > 1);
    /* A duplicate for a retransmission: an earlier copy was applied. */
    return ack.result == HR_RESULT_OK || (ack.result == HR_RESULT_DUPLICATE && attempts > 1)
               ? 0
               : EXIT_REFUSED;
}
