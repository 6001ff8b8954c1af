/* bench reference: the raw UDP ceiling. Receives datagrams in batches,
 * decodes each and answers with a real 20-byte ok ack, batched, on one
 * thread: hostregd as it would be if storing cost nothing.
 *   hostreg-bench-udp-echo PORT */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "wire.h"

#define BATCH 64

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int sz = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("bind");
        return 1;
    }
    static unsigned char in[BATCH][1536], ack[BATCH][64];
    struct sockaddr_in peer[BATCH];
    struct iovec riov[BATCH], siov[BATCH];
    struct mmsghdr rm[BATCH], sm[BATCH];
    for (int i = 0; i < BATCH; i++) {
        riov[i] = (struct iovec){in[i], sizeof(in[i])};
        rm[i].msg_hdr = (struct msghdr){.msg_name = &peer[i], .msg_iov = &riov[i], .msg_iovlen = 1};
    }
    for (;;) {
        for (int i = 0; i < BATCH; i++)
            rm[i].msg_hdr.msg_namelen = sizeof(peer[i]);
        int n = recvmmsg(fd, rm, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            struct hr_frame f;
            struct hr_ack ok = {0, HR_RESULT_OK, 30, 20, 0};
            if (hr_wire_decode(in[i], rm[i].msg_len, &f) == 0)
                ok.seq = f.req.seq;
            siov[i] = (struct iovec){ack[i], hr_wire_encode_ack(&ok, ack[i], sizeof(ack[i]))};
            sm[i].msg_hdr = (struct msghdr){.msg_name = &peer[i],
                                            .msg_namelen = rm[i].msg_hdr.msg_namelen,
                                            .msg_iov = &siov[i],
                                            .msg_iovlen = 1};
        }
        sendmmsg(fd, sm, (unsigned)n, 0);
    }
}
