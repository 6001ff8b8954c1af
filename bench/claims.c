/* bench: claims/s of POST /api/match/find, and whether it depends on how many
 * idle hosts there are. Each round first returns every claimed host to idle
 * (status updates, not timed), then times K claims over C keep-alive connections.
 *   hostreg-bench-claims HTTP_PORT REDIS_PORT PREFIX ROUNDS CLAIMS CONNECTIONS
 * Prints: claims_per_second <x> claims <n> seconds <s> not_found <m> */
#include "layout.h"
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Returns every claimed host to idle with the registry's own rules: status
 * updates busy then idle (requests.lua, unordered, as the gateway sends
 * them), as a host whose session began and ended. Not timed. */
static void reset(redisContext *rc, const char *prefix)
{
    struct hr_layout lay;
    char err[256];
    if (hr_layout_read_sync(rc, prefix, &lay, err, sizeof(err)) != 1)
        return;
    struct hr_script_args a = {0};
    /* Every bucket's claims, pipelined (one round trip, not one a bucket). */
    for (uint32_t b = 0; b < lay.buckets; b++) {
        char tag[16], key[64];
        snprintf(tag, sizeof(tag), "%u", b);
        hr_layout_key(key, sizeof(key), prefix, tag, hr_script_bkey(HR_SCRIPT_BKEY_CLAIMS));
        redisAppendCommand(rc, "ZRANGE %s 0 -1", key);
    }
    redisReply **claimed = calloc(lay.buckets, sizeof(*claimed));
    for (uint32_t b = 0; claimed && b < lay.buckets; b++)
        if (redisGetReply(rc, (void **)&claimed[b]) != REDIS_OK)
            claimed[b] = NULL;
    for (uint32_t b = 0; claimed && b < lay.buckets; b++) {
        redisReply *ids = claimed[b];
        if (!ids || ids->type != REDIS_REPLY_ARRAY || ids->elements == 0) {
            freeReplyObject(ids);
            continue;
        }
        hr_script_args_reset(&a);
        /* ttl: not used by status updates; no cap on hosts. */
        hr_script_requests_header(&a, 30000, 0);
        uint32_t buckets[1];
        int nb = 0;
        for (size_t i = 0; i < ids->elements; i++) {
            /* The host confirms the claim (busy), then its session ends
             * (idle): an idle alone leaves an unconfirmed claim standing. */
            struct hr_request upd = {.type = HR_MSG_STATUS, .status = HR_STATUS_BUSY};
            hr_layout_id_unpack(ids->element[i]->str, ids->element[i]->len, upd.host_id,
                                sizeof(upd.host_id));
            hr_script_requests_add(&a, &lay, &upd, false, buckets, &nb);
            upd.status = HR_STATUS_IDLE;
            hr_script_requests_add(&a, &lay, &upd, false, buckets, &nb);
        }
        redisReply *r = hr_script_eval(rc, HR_SCRIPT_REQUESTS, &a);
        /* The hosts are idle again: the region's summary must say so. */
        hr_script_apply_changes(rc, &lay, r, 2 * ids->elements);
        freeReplyObject(r);
        freeReplyObject(ids);
    }
    free(claimed);
    hr_script_args_free(&a);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("connect");
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s HTTP_PORT REDIS_PORT PREFIX ROUNDS CLAIMS CONNECTIONS\n",
                argv[0]);
        return 2;
    }
    int http = atoi(argv[1]), rounds = atoi(argv[4]), claims = atoi(argv[5]), nconn = atoi(argv[6]);
    redisContext *rc = redisConnect("127.0.0.1", atoi(argv[2]));
    if (!rc || rc->err) {
        fprintf(stderr, "cannot connect to redis\n");
        return 1;
    }
    static const char req[] = "POST /api/match/find HTTP/1.1\r\nHost: b\r\n"
                              "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    int *fds = calloc((size_t)nconn, sizeof(int));
    struct pollfd *pfd = calloc((size_t)nconn, sizeof(*pfd));
    for (int i = 0; i < nconn; i++)
        fds[i] = connect_to(http);
    double total = 0;
    long done_all = 0, not_found = 0;
    char buf[8192];
    for (int r = 0; r < rounds; r++) {
        reset(rc, argv[3]);
        int sent = 0, done = 0;
        double t0 = now();
        for (int i = 0; i < nconn && sent < claims; i++, sent++)
            if (write(fds[i], req, sizeof(req) - 1) < 0)
                return 1;
        while (done < claims) {
            for (int i = 0; i < nconn; i++)
                pfd[i] = (struct pollfd){fds[i], POLLIN, 0};
            if (poll(pfd, (nfds_t)nconn, 5000) <= 0) {
                fprintf(stderr, "timeout waiting for answers\n");
                return 1;
            }
            for (int i = 0; i < nconn; i++) {
                if (!(pfd[i].revents & POLLIN))
                    continue;
                /* One answer per read: small, and each connection has one
                 * request in flight. */
                ssize_t n = read(fds[i], buf, sizeof(buf) - 1);
                if (n <= 0) {
                    fprintf(stderr, "connection closed\n");
                    return 1;
                }
                buf[n] = '\0';
                if (strncmp(buf, "HTTP/1.1 200", 12) != 0)
                    not_found++;
                done++;
                if (sent < claims) {
                    if (write(fds[i], req, sizeof(req) - 1) < 0)
                        return 1;
                    sent++;
                }
            }
        }
        total += now() - t0;
        done_all += done;
    }
    printf("claims_per_second %.0f claims %ld seconds %.3f not_found %ld\n",
           (double)done_all / total, done_all, total, not_found);
    return not_found ? 1 : 0;
}
